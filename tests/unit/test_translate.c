/* test_translate.c — the OpenAI <-> Anthropic translation, driven by case
 * files under tests/unit/translate/ (one cmocka test per case, named after
 * it). A case NAME is NAME.in.json plus NAME.out.json (the expected JSON,
 * compared structurally), or NAME.err (a substring of the expected error).
 * An optional NAME.note holds a substring the log note must contain. The
 * prefix picks the function:
 *   oa2an-req-   OpenAI request -> Anthropic request (default max_tokens 1000)
 *   an2oa-req-   Anthropic request -> OpenAI request
 *   an2oa-resp-  Anthropic message -> chat.completion (created 1700000000)
 *   oa2an-resp-  chat.completion -> Anthropic message
 *   an2oa-stream-, oa2an-stream-  streams: in {"include_usage":bool,
 *     "events":[[event|null, data], ...]} (data "[DONE]" as a string, else
 *     an object); out {"events":[[event|null, data]...], "result":
 *     "more"|"done"|"error", "usage":{input,cached,cache_write,output,
 *     reasoning?}} (reasoning compared only when the case names it).
 * Run from the repository root (make does); TG_TRANSLATE_CASES overrides
 * the directory. */
/* deps: providers/translate.c providers/translate_stream.c core/pool.c */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "providers/translate.h"

#define MAX_CASES 256

static const char *dir;

static char *path_of(const char *name, const char *ext) {
    size_t n = strlen(dir) + strlen(name) + strlen(ext) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s%s", dir, name, ext);
    return p;
}

static json_t *load(const char *name, const char *ext, int required) {
    char *p = path_of(name, ext);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (j == NULL && required) fail_msg("%s: %s (line %d)", p, je.text, je.line);
    free(p);
    return j;
}

/* The first line of NAME.EXT, or NULL when the file is absent. */
static char *text_file(const char *name, const char *ext) {
    char *p = path_of(name, ext);
    FILE *f = fopen(p, "r");
    free(p);
    if (f == NULL) return NULL;
    static char line[512];
    if (fgets(line, sizeof(line), f) == NULL) line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    return line;
}

static void assert_json_equal(const char *name, json_t *got, json_t *want) {
    if (json_equal(got, want)) return;
    char *g = json_dumps(got, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *w = json_dumps(want, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    /* stderr, not print_error: cmocka cuts long messages. */
    fprintf(stderr, "%s\n--- got:\n%s\n--- want:\n%s\n", name, g ? g : "NULL", w ? w : "NULL");
    free(g);
    free(w);
    fail_msg("%s: output differs from %s.out.json", name, name);
}

static int has_prefix(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

/* --- streams ---------------------------------------------------------------- */

static int collect(void *ud, const char *event, const char *data, size_t len) {
    json_t *o = json_loadb(data, len, 0, NULL);
    assert_non_null(o); /* every emitted event is one JSON object */
    assert_null(memchr(data, '\n', len));
    json_array_append_new(ud, json_pack("[s?o]", event, o));
    return 0;
}

static void run_stream(const char *name, json_t *in, json_t *want) {
    tg_pool_t *pool = tg_pool_create(1024);
    int to_openai = has_prefix(name, "an2oa-");
    tg_tr_stream_t *s =
        tg_tr_stream_new(pool, to_openai, json_is_true(json_object_get(in, "include_usage")), 1700000000);
    json_t *got = json_array();
    tg_usage_t u = {0};
    size_t bytes = 0;
    int rc = TG_TR_MORE;
    char err[256] = "";
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(in, "events"), i, ev) {
        json_t *d = json_array_get(ev, 1);
        char *data = json_is_string(d) ? strdup(json_string_value(d)) : json_dumps(d, JSON_COMPACT);
        rc = tg_tr_stream_event(s, json_string_value(json_array_get(ev, 0)), data, strlen(data), &u, &bytes,
                                collect, got, err, sizeof(err));
        free(data);
        if (rc != TG_TR_MORE) break;
    }
    const char *result = rc == TG_TR_DONE ? "done" : rc == TG_TR_ERROR ? "error" : "more";
    json_t *usage = json_pack("{s:I,s:I,s:I,s:I}", "input", (json_int_t)u.input_tokens, "cached",
                              (json_int_t)u.cached_input_tokens, "cache_write",
                              (json_int_t)u.cache_write_tokens, "output", (json_int_t)u.output_tokens);
    if (json_object_get(json_object_get(want, "usage"), "reasoning"))
        json_object_set_new(usage, "reasoning", json_integer((json_int_t)u.reasoning_tokens));
    json_t *out = json_pack("{s:o,s:s,s:o}", "events", got, "result", result, "usage", usage);
    if (json_object_get(want, "error")) json_object_set_new(out, "error", json_string(err));
    assert_json_equal(name, out, want);
    json_decref(out);
    tg_pool_destroy(pool);
}

/* --- requests and answers ------------------------------------------------- */

static json_t *run_doc(const char *name, json_t *in, char *note, char *err, size_t errlen) {
    tg_tr_req_opts_t o = {.default_max_tokens = 1000};
    json_t *out = NULL;
    if (has_prefix(name, "oa2an-req-"))
        out = tg_tr_req_openai_to_anthropic(in, &o, err, errlen);
    else if (has_prefix(name, "an2oa-req-"))
        out = tg_tr_req_anthropic_to_openai(in, &o, err, errlen);
    else if (has_prefix(name, "an2oa-resp-"))
        out = tg_tr_resp_anthropic_to_openai(in, 1700000000, err, errlen);
    else if (has_prefix(name, "oa2an-resp-"))
        out = tg_tr_resp_openai_to_anthropic(in, err, errlen);
    else
        fail_msg("%s: unknown case prefix", name);
    strcpy(note, o.note);
    return out;
}

static void run_case(void **state) {
    const char *name = *state;
    json_t *in = load(name, ".in.json", 1);
    if (has_prefix(name, "an2oa-stream-") || has_prefix(name, "oa2an-stream-")) {
        json_t *want = load(name, ".out.json", 1);
        run_stream(name, in, want);
        json_decref(want);
        json_decref(in);
        return;
    }
    char note[256], err[256] = "";
    json_t *got = run_doc(name, in, note, err, sizeof(err));
    const char *want_err = text_file(name, ".err");
    if (want_err) {
        if (got) fail_msg("%s: translated, but the error '%s' was expected", name, want_err);
        if (!strstr(err, want_err)) fail_msg("%s: error '%s' lacks '%s'", name, err, want_err);
    } else {
        if (got == NULL) fail_msg("%s: %s", name, err);
        json_t *want = load(name, ".out.json", 1);
        assert_json_equal(name, got, want);
        json_decref(want);
    }
    const char *want_note = text_file(name, ".note");
    if (want_note && !strstr(note, want_note)) fail_msg("%s: note '%s' lacks '%s'", name, note, want_note);
    json_decref(got);
    json_decref(in);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    dir = getenv("TG_TRANSLATE_CASES") ? getenv("TG_TRANSLATE_CASES") : "tests/unit/translate";
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "test_translate: cannot open %s (run from the repository root)\n", dir);
        return 1;
    }
    char *names[MAX_CASES];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_CASES) {
        size_t l = strlen(e->d_name);
        if (l > 8 && strcmp(e->d_name + l - 8, ".in.json") == 0) names[n++] = strndup(e->d_name, l - 8);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), by_name);
    struct CMUnitTest tests[MAX_CASES];
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){.name = names[i], .test_func = run_case, .initial_state = names[i]};
    int rc = _cmocka_run_group_tests("translate", tests, n, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    return rc;
}
