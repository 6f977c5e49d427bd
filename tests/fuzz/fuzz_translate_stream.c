/* fuzz_translate_stream.c — libFuzzer target for the incremental stream
 * translators of providers/translate.c. The first byte picks the direction
 * (bit 0: Anthropic events -> OpenAI chunks) and include_usage (bit 1); the
 * rest is upstream events, one per line, "NAME<TAB>DATA" or just "DATA" (no
 * event name). Events are fed as the providers do, stopping at DONE or
 * ERROR. Properties: ERROR comes with an error text; the content byte count
 * never shrinks, and grows only in a call that emitted something; OpenAI side: every emitted data is one
 * chat.completion.chunk object with no event name (the [DONE] line is the caller's), the first with a choice
 * carrying delta.role; Anthropic side: every emitted data is one object whose type is the event name,
 * message_start comes first and once, content blocks open with indexes 0, 1, 2... and close in order, one at
 * a time, and message_stop is the last event and comes only with DONE (which [DONE] always gives). Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE tests/fuzz/fuzz_translate_stream.c \
 *       providers/translate.c providers/translate_stream.c core/pool.c -ljansson -o
 * /tmp/fuzz_translate_stream */
/* deps: providers/translate.c providers/translate_stream.c core/pool.c */
/* libs: -ljansson */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/translate.h"

typedef struct {
    int to_openai;
    int n;          /* events emitted so far */
    int started;    /* message_start (Anthropic) or the role chunk (OpenAI) seen */
    int stopped;    /* message_stop seen */
    int open;       /* index of the open content block, -1 = none */
    int next_block; /* index the next content_block_start must carry */
} seen_t;

static int is(const json_t *v, const char *s) {
    return json_is_string(v) && !strcmp(json_string_value(v), s);
}

static void check_openai(seen_t *st, const char *event, json_t *o) {
    const json_t *choices = json_object_get(o, "choices");
    if (event != NULL || !is(json_object_get(o, "object"), "chat.completion.chunk") ||
        !json_is_array(choices))
        abort();
    /* The usage chunk has no choice; the first chunk with one opens the message. */
    if (json_array_size(choices) && !st->started) {
        if (!is(json_object_get(json_object_get(json_array_get(choices, 0), "delta"), "role"), "assistant"))
            abort();
        st->started = 1;
    }
}

static void check_anthropic(seen_t *st, const char *event, json_t *o) {
    const char *type = json_string_value(json_object_get(o, "type"));
    if (event == NULL || type == NULL || strcmp(event, type) != 0) abort();
    if (st->stopped || (st->n == 0) != !strcmp(type, "message_start")) abort();
    st->started = 1;
    json_int_t index = json_integer_value(json_object_get(o, "index"));
    if (!strcmp(type, "content_block_start")) {
        if (st->open != -1 || index != st->next_block) abort();
        st->open = st->next_block++;
    } else if (!strcmp(type, "content_block_stop")) {
        if (st->open == -1 || index != st->open) abort();
        st->open = -1;
    } else if (!strcmp(type, "content_block_delta")) {
        if (index < 0 || index >= st->next_block) abort();
    } else if (!strcmp(type, "message_delta")) {
        if (st->open != -1) abort();
    } else if (!strcmp(type, "message_stop")) {
        st->stopped = 1;
    }
}

static int on_emit(void *ud, const char *event, const char *data, size_t len) {
    seen_t *st = ud;
    json_t *o = json_loadb(data, len, 0, NULL);
    if (!json_is_object(o)) abort();
    if (st->to_openai)
        check_openai(st, event, o);
    else
        check_anthropic(st, event, o);
    json_decref(o);
    st->n++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    seen_t st = {.to_openai = data[0] & 1, .open = -1};
    tg_pool_t *pool = tg_pool_create(1024);
    tg_tr_stream_t *s = tg_tr_stream_new(pool, st.to_openai, (data[0] >> 1) & 1, 1700000000);
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
        rc = tg_tr_stream_event(s, event, ev, len, &u, &bytes, on_emit, &st, err, sizeof(err));
        if (rc == TG_TR_ERROR && err[0] == '\0') abort();
        if (rc != TG_TR_ERROR && st.stopped != (rc == TG_TR_DONE) && !st.to_openai) abort();
        if (!st.to_openai && len == 6 && !memcmp(ev, "[DONE]", 6) && rc != TG_TR_DONE) abort();
        /* Answer text counted is answer text sent. */
        if (bytes < before || (bytes > before && st.n == emitted)) abort();
        free(ev);
        free(event);
        at = end + 1;
    }
    tg_pool_destroy(pool);
    return 0;
}
