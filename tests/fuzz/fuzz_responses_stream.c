/* fuzz_responses_stream.c — libFuzzer target for the Responses stream
 * translators of providers/responses_stream.c. The first byte picks the
 * source (bit 0: Anthropic events, else Chat chunks) and whether the caller
 * ends with the failure ending (bit 1); the rest is upstream events, one per
 * line, "NAME<TAB>DATA" or just "DATA", fed until DONE or ERROR.
 * Properties: ERROR comes with an error text and emits nothing in that
 * call; the content byte count never shrinks and grows only in a call that
 * emitted something; every emitted data is one JSON object whose type is
 * its SSE name, numbered 0, 1, 2...; response.created then
 * response.in_progress come first; output items are added with indexes 0,
 * 1, 2...; every item event names an added, not yet done item by its index
 * and id; nothing follows the terminal event (response.completed,
 * .incomplete or .failed), which comes exactly when the translator says
 * DONE or the caller fails the stream (a Chat [DONE] always ends it); a
 * completed or incomplete response lists every item, all done, and
 * tg_rs_stream_response returns it. Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE tests/fuzz/fuzz_responses_stream.c \
 *       providers/responses.c providers/responses_req.c providers/responses_stream.c providers/translate.c
 * providers/translate_stream.c \ core/pool.c -ljansson -o /tmp/fuzz_responses_stream */
/* clang-format off */
/* deps: providers/responses.c providers/responses_req.c providers/responses_stream.c providers/translate.c providers/translate_stream.c core/pool.c */
/* clang-format on */
/* libs: -ljansson */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/responses.h"

#define MAX_SEEN 256

typedef struct {
    int n;               /* events emitted */
    int items;           /* items added */
    char done[MAX_SEEN]; /* item i is done */
    char ids[MAX_SEEN][64];
    int ended;   /* the terminal event was seen */
    char *final; /* its response, as text */
} seen_t;

static int is(const json_t *v, const char *s) {
    return json_is_string(v) && !strcmp(json_string_value(v), s);
}

static int prefixed(const char *s, const char *p) {
    return !strncmp(s, p, strlen(p));
}

static void check_item_event(seen_t *st, const char *type, const json_t *o) {
    json_int_t i = json_integer_value(json_object_get(o, "output_index"));
    if (!json_is_integer(json_object_get(o, "output_index")) || i < 0 || i >= st->items || st->done[i])
        abort();
    if (!strcmp(type, "response.output_item.done")) {
        if (!is(json_object_get(json_object_get(o, "item"), "id"), st->ids[i])) abort();
        st->done[i] = 1;
    } else if (!is(json_object_get(o, "item_id"), st->ids[i])) {
        abort();
    }
}

static void check_final(seen_t *st, const char *type, const json_t *r) {
    const json_t *out = json_object_get(r, "output");
    if (!json_is_object(r) || !json_is_array(out) || (int)json_array_size(out) != st->items) abort();
    for (int i = 0; i < st->items; i++) {
        if (!is(json_object_get(json_array_get(out, i), "id"), st->ids[i])) abort();
        if (strcmp(type, "response.failed") && !st->done[i]) abort();
    }
    const char *want = !strcmp(type, "response.completed")    ? "completed"
                       : !strcmp(type, "response.incomplete") ? "incomplete"
                                                              : "failed";
    if (!is(json_object_get(r, "status"), want)) abort();
    if (!strcmp(want, "failed") && !json_is_object(json_object_get(r, "error"))) abort();
    st->final = json_dumps(r, JSON_COMPACT);
}

static int on_emit(void *ud, const char *event, const char *data, size_t len) {
    seen_t *st = ud;
    json_t *o = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!json_is_object(o) || event == NULL || type == NULL || strcmp(event, type) != 0) abort();
    if (json_integer_value(json_object_get(o, "sequence_number")) != st->n || st->ended) abort();
    if ((st->n == 0) != !strcmp(type, "response.created")) abort();
    if ((st->n == 1) != !strcmp(type, "response.in_progress")) abort();
    if (!strcmp(type, "response.output_item.added")) {
        const char *id = json_string_value(json_object_get(json_object_get(o, "item"), "id"));
        if (json_integer_value(json_object_get(o, "output_index")) != st->items || id == NULL || !*id ||
            st->items == MAX_SEEN)
            abort();
        snprintf(st->ids[st->items++], sizeof(st->ids[0]), "%s", id);
    } else if (prefixed(type, "response.output_") || prefixed(type, "response.content_part.") ||
               prefixed(type, "response.reasoning_") || prefixed(type, "response.function_call_")) {
        check_item_event(st, type, o);
    } else if (!strcmp(type, "response.completed") || !strcmp(type, "response.incomplete") ||
               !strcmp(type, "response.failed")) {
        check_final(st, type, json_object_get(o, "response"));
        st->ended = 1;
    } else if (strcmp(type, "response.created") && strcmp(type, "response.in_progress") &&
               strcmp(type, "error")) {
        abort();
    }
    json_decref(o);
    st->n++;
    return 0;
}

static void check_stored(tg_rs_stream_t *s, seen_t *st) {
    size_t len = 0;
    const char *r = tg_rs_stream_response(s, &len);
    if ((r != NULL) != st->ended) abort();
    if (r && (strlen(r) != len || strcmp(r, st->final) != 0)) {
        /* Same document; key order may only differ if the dump differs. */
        json_t *a = json_loadb(r, len, 0, NULL), *b = json_loads(st->final, 0, NULL);
        if (!json_equal(a, b)) abort();
        json_decref(a);
        json_decref(b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int from_anthropic = data[0] & 1, fail = (data[0] >> 1) & 1;
    seen_t st = {0};
    tg_pool_t *pool = tg_pool_create(1024);
    tg_rs_resp_opts_t o = {.id = "fz", .created_at = 1700000000};
    tg_rs_stream_t *s = tg_rs_stream_new(pool, from_anthropic, &o);
    tg_usage_t u = {0};
    size_t bytes = 0, at = 1;
    int rc = TG_TR_MORE;
    while (at < size && rc == TG_TR_MORE) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - data) : size;
        const uint8_t *tab = memchr(data + at, '\t', end - at);
        char *event = NULL;
        size_t from = at;
        if (tab) {
            event = strndup((const char *)data + at, (size_t)(tab - data) - at);
            from = (size_t)(tab - data) + 1;
        }
        /* An exact-size copy, so that a read past the event's data is caught. */
        size_t len = end - from;
        char *ev = malloc(len ? len : 1);
        memcpy(ev, data + from, len);
        char err[128] = "";
        size_t before = bytes;
        int emitted = st.n;
        rc = tg_rs_stream_event(s, event, ev, len, &u, &bytes, on_emit, &st, err, sizeof(err));
        if (rc == TG_TR_ERROR && (err[0] == '\0' || st.n != emitted)) abort();
        if ((rc == TG_TR_DONE) != st.ended) abort();
        if (!from_anthropic && len == 6 && !memcmp(ev, "[DONE]", 6) && rc != TG_TR_DONE) abort();
        if (bytes < before || (bytes > before && st.n == emitted)) abort();
        if (tg_rs_stream_started(s) != (st.n > 0)) abort();
        free(ev);
        free(event);
        at = end + 1;
    }
    if (fail) {
        int was_ended = st.ended, n = st.n;
        tg_rs_stream_fail(s, "upstream_error", "broke", &u, on_emit, &st);
        if (was_ended ? st.n != n : !st.ended) abort();
    }
    check_stored(s, &st);
    free(st.final);
    tg_pool_destroy(pool);
    return 0;
}
