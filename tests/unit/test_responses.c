/* test_responses.c — the Responses API translation (providers/responses*.c),
 * driven by case files under tests/unit/responses/ (one cmocka test per
 * case, named after it). A case NAME is NAME.in.json plus NAME.out.json
 * (the expected JSON, compared structurally) or NAME.err (a substring of
 * the expected error); an optional NAME.note holds a substring the log note
 * must contain. The prefix picks the function:
 *   req-chat-, req-an-   Responses request -> Chat / Anthropic request. in:
 *     {"request":{...}, "previous":[items]?, "model":s?, "native_tools":b?,
 *     "max_completion_tokens":b?} (default_max_tokens is 1000).
 *   resp-chat-, resp-an- Chat completion / Anthropic message -> Response.
 *     in: {"answer":{...}, "request":{...}?}; out: {"response":{...},
 *     "usage":{input,cached,cache_write,output,reasoning}}.
 *   stream-chat-, stream-an-  streams. in: {"events":[[event|null, data],
 *     ...], "request":{...}?, "fail":{"code","message"}?} (data "[DONE]" as
 *     a string, else an object; "fail" calls tg_rs_stream_fail after the
 *     events); out: {"events":[[event, data]...], "result":
 *     "more"|"done"|"error", "usage":{...}, "error":s?}.
 *   stored-  in: {"request", "previous"?, "response"}; out: the items.
 * Answers and streams use id "abc" and created_at 1700000000. Run from the
 * repository root (make does); TG_RESPONSES_CASES overrides the directory. */
/* clang-format off */
/* deps: providers/responses.c providers/responses_req.c providers/responses_stream.c providers/translate.c providers/translate_stream.c core/pool.c */
/* clang-format on */
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

#include "providers/responses.h"

#define MAX_CASES 256

static const char *dir;

static char *path_of(const char *name, const char *ext) {
    size_t n = strlen(dir) + strlen(name) + strlen(ext) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s%s", dir, name, ext);
    return p;
}

static json_t *load(const char *name, const char *ext) {
    char *p = path_of(name, ext);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (j == NULL) fail_msg("%s: %s (line %d)", p, je.text, je.line);
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

static json_t *usage_of(const tg_usage_t *u) {
    return json_pack("{s:I,s:I,s:I,s:I,s:I}", "input", (json_int_t)u->input_tokens, "cached",
                     (json_int_t)u->cached_input_tokens, "cache_write", (json_int_t)u->cache_write_tokens,
                     "output", (json_int_t)u->output_tokens, "reasoning", (json_int_t)u->reasoning_tokens);
}

/* --- streams ---------------------------------------------------------------- */

typedef struct {
    json_t *events;
    json_int_t seq;
} got_t;

/* Every event is one JSON object whose type is its SSE name, numbered in order. */
static int collect(void *ud, const char *event, const char *data, size_t len) {
    got_t *g = ud;
    json_t *o = json_loadb(data, len, 0, NULL);
    assert_non_null(o);
    assert_null(memchr(data, '\n', len));
    assert_non_null(event);
    assert_string_equal(event, json_string_value(json_object_get(o, "type")));
    assert_int_equal(json_integer_value(json_object_get(o, "sequence_number")), g->seq);
    g->seq++;
    json_array_append_new(g->events, json_pack("[so]", event, o));
    return 0;
}

static void run_stream(const char *name, json_t *in, json_t *want) {
    tg_pool_t *pool = tg_pool_create(1024);
    tg_rs_resp_opts_t ro = {.id = "abc", .created_at = 1700000000, .req = json_object_get(in, "request")};
    tg_rs_stream_t *s = tg_rs_stream_new(pool, has_prefix(name, "stream-an-"), &ro);
    got_t g = {.events = json_array()};
    tg_usage_t u = {0};
    size_t bytes = 0;
    int rc = TG_TR_MORE;
    char err[256] = "";
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(in, "events"), i, ev) {
        json_t *d = json_array_get(ev, 1);
        char *data = json_is_string(d) ? strdup(json_string_value(d)) : json_dumps(d, JSON_COMPACT);
        rc = tg_rs_stream_event(s, json_string_value(json_array_get(ev, 0)), data, strlen(data), &u, &bytes,
                                collect, &g, err, sizeof(err));
        free(data);
        if (rc != TG_TR_MORE) break;
    }
    const json_t *fail = json_object_get(in, "fail");
    if (fail)
        tg_rs_stream_fail(s, json_string_value(json_object_get(fail, "code")),
                          json_string_value(json_object_get(fail, "message")), &u, collect, &g);
    /* The stored response is the one the last lifecycle event carried. */
    size_t rlen = 0;
    const char *resp = tg_rs_stream_response(s, &rlen);
    json_t *last = json_array_get(g.events, json_array_size(g.events) - 1);
    if (rc == TG_TR_DONE || fail) {
        assert_non_null(resp);
        json_t *r = json_loadb(resp, rlen, 0, NULL);
        assert_true(json_equal(r, json_object_get(json_array_get(last, 1), "response")));
        json_decref(r);
    } else {
        assert_null(resp);
    }
    const char *result = rc == TG_TR_DONE ? "done" : rc == TG_TR_ERROR ? "error" : "more";
    json_t *out = json_pack("{s:o,s:s,s:o}", "events", g.events, "result", result, "usage", usage_of(&u));
    if (json_object_get(want, "error")) json_object_set_new(out, "error", json_string(err));
    assert_json_equal(name, out, want);
    json_decref(out);
    tg_pool_destroy(pool);
}

/* --- requests, answers, stored items ------------------------------------- */

static json_t *run_req(const char *name, json_t *in, char *note, char *err, size_t errlen) {
    tg_rs_req_opts_t o = {
        .model = json_string_value(json_object_get(in, "model")),
        .default_max_tokens = 1000,
        .max_completion_tokens = json_is_true(json_object_get(in, "max_completion_tokens")),
        .native_tools = json_is_true(json_object_get(in, "native_tools")),
        .previous = json_object_get(in, "previous"),
    };
    const json_t *req = json_object_get(in, "request");
    json_t *copy = json_deep_copy(in);
    json_t *out = has_prefix(name, "req-chat-") ? tg_rs_req_to_chat(req, &o, err, errlen)
                                                : tg_rs_req_to_anthropic(req, &o, err, errlen);
    if (!json_equal(in, copy)) fail_msg("%s: the input was modified", name);
    json_decref(copy);
    strcpy(note, o.note);
    return out;
}

static json_t *run_resp(const char *name, json_t *in, char *err, size_t errlen) {
    tg_rs_resp_opts_t o = {.id = "abc", .created_at = 1700000000, .req = json_object_get(in, "request")};
    tg_usage_t u = {0};
    const json_t *ans = json_object_get(in, "answer");
    json_t *r = has_prefix(name, "resp-chat-") ? tg_rs_resp_from_chat(ans, &o, &u, err, errlen)
                                               : tg_rs_resp_from_anthropic(ans, &o, &u, err, errlen);
    return r ? json_pack("{s:o,s:o}", "response", r, "usage", usage_of(&u)) : NULL;
}

static json_t *run_stored(json_t *in, char *err, size_t errlen) {
    tg_pool_t *pool = tg_pool_create(1024);
    size_t len = 0;
    char *s = tg_rs_stored(pool, json_object_get(in, "request"), json_object_get(in, "previous"),
                           json_object_get(in, "response"), &len);
    json_t *out = s ? json_loadb(s, len, 0, NULL) : NULL;
    if (s == NULL) snprintf(err, errlen, "no stored form");
    tg_pool_destroy(pool);
    return out;
}

static void run_case(void **state) {
    const char *name = *state;
    json_t *in = load(name, ".in.json");
    if (has_prefix(name, "stream-")) {
        json_t *want = load(name, ".out.json");
        run_stream(name, in, want);
        json_decref(want);
        json_decref(in);
        return;
    }
    char note[256] = "", err[256] = "";
    json_t *got = NULL;
    if (has_prefix(name, "req-"))
        got = run_req(name, in, note, err, sizeof(err));
    else if (has_prefix(name, "resp-"))
        got = run_resp(name, in, err, sizeof(err));
    else if (has_prefix(name, "stored-"))
        got = run_stored(in, err, sizeof(err));
    else
        fail_msg("%s: unknown case prefix", name);
    const char *want_err = text_file(name, ".err");
    if (want_err) {
        if (got) fail_msg("%s: translated, but the error '%s' was expected", name, want_err);
        if (!strstr(err, want_err)) fail_msg("%s: error '%s' lacks '%s'", name, err, want_err);
    } else {
        if (got == NULL) fail_msg("%s: %s", name, err);
        json_t *want = load(name, ".out.json");
        assert_json_equal(name, got, want);
        json_decref(want);
    }
    const char *want_note = text_file(name, ".note");
    if (want_note && !strstr(note, want_note)) fail_msg("%s: note '%s' lacks '%s'", name, note, want_note);
    json_decref(got);
    json_decref(in);
}

/* The error body has OpenAI's shape; a missing code is null. */
static void error_body(void **state) {
    (void)state;
    tg_pool_t *pool = tg_pool_create(1024);
    size_t len = 0;
    char *s = tg_rs_error_body(pool, "tools[0]: no", "invalid_request_error", "unsupported_tool", &len);
    json_t *got = json_loadb(s, len, 0, NULL),
           *want = json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", "tools[0]: no", "type",
                             "invalid_request_error", "param", "code", "unsupported_tool");
    assert_json_equal("error_body", got, want);
    json_decref(got);
    json_decref(want);
    s = tg_rs_error_body(pool, "busy", "server_error", NULL, &len);
    got = json_loadb(s, len, 0, NULL);
    want = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", "busy", "type", "server_error", "param",
                     "code");
    assert_json_equal("error_body", got, want);
    json_decref(got);
    json_decref(want);
    tg_pool_destroy(pool);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    dir = getenv("TG_RESPONSES_CASES") ? getenv("TG_RESPONSES_CASES") : "tests/unit/responses";
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "test_responses: cannot open %s (run from the repository root)\n", dir);
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
    struct CMUnitTest tests[MAX_CASES + 1];
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){.name = names[i], .test_func = run_case, .initial_state = names[i]};
    tests[n] = (struct CMUnitTest){.name = "error_body", .test_func = error_body};
    int rc = _cmocka_run_group_tests("responses", tests, n + 1, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    return rc;
}
