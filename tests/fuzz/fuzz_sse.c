/* fuzz_sse.c — libFuzzer target for the SSE parser and writer.
 * Properties: (1) the events, the result and the truncation flag do not
 * depend on how the input is cut into reads (whole, three pieces chosen by
 * the input, byte by byte); (2) every event written by tg_sse_format()
 * parses back to the same type and data. Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE \
 *       tests/fuzz/fuzz_sse.c core/sse.c -o /tmp/fuzz_sse */
/* deps: core/sse.c */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sse.h"

#define MAX_EVENT 512

/* Events seen, serialised as len-prefixed type and data. */
typedef struct {
    char *buf;
    size_t len, cap;
    int n;
} log_t;

static void log_put(log_t *l, const void *p, size_t n) {
    if (l->len + n > l->cap) {
        l->cap = (l->len + n) * 2 + 64;
        l->buf = realloc(l->buf, l->cap);
    }
    memcpy(l->buf + l->len, p, n);
    l->len += n;
}

static int on_event(void *ud, const char *event, size_t event_len, const char *data, size_t data_len) {
    log_t *l = ud;
    if (event_len >= 64 || data[data_len] != '\0') abort();
    log_put(l, &event_len, sizeof(event_len));
    log_put(l, event, event_len);
    log_put(l, &data_len, sizeof(data_len));
    log_put(l, data, data_len);
    l->n++;
    return 0;
}

typedef struct {
    int rc, truncated;
    log_t log;
} run_t;

static void run(const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts, run_t *r) {
    tg_sse_parser_t p;
    memset(r, 0, sizeof(*r));
    tg_sse_init(&p, MAX_EVENT);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && r->rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        r->rc = tg_sse_feed(&p, (const char *)in + at, end - at, on_event, &r->log);
        at = end;
    }
    r->truncated = tg_sse_truncated(&p);
    tg_sse_free(&p);
}

static void same(const run_t *a, const run_t *b) {
    if (a->rc != b->rc || a->log.len != b->log.len) abort();
    if (a->log.len > 0 && memcmp(a->log.buf, b->log.buf, a->log.len) != 0) abort();
    if (a->rc == 0 && a->truncated != b->truncated) abort();
}

/* Writes each event back out and parses it again. */
static void roundtrip(const log_t *l) {
    size_t at = 0;
    while (at < l->len) {
        size_t el, dl;
        char ev[64];
        memcpy(&el, l->buf + at, sizeof(el));
        at += sizeof(el);
        memcpy(ev, l->buf + at, el);
        ev[el] = '\0';
        at += el;
        memcpy(&dl, l->buf + at, sizeof(dl));
        at += sizeof(dl);
        const char *data = l->buf + at;
        at += dl;
        size_t need = tg_sse_format(NULL, 0, ev, data, dl);
        char *out = malloc(need + 1);
        if (tg_sse_format(out, need + 1, ev, data, dl) != need || out[need] != '\0') abort();
        log_t back = {0};
        tg_sse_parser_t p;
        tg_sse_init(&p, need + 1);
        if (tg_sse_feed(&p, out, need, on_event, &back) != 0 || tg_sse_truncated(&p) || back.n != 1) abort();
        /* An event type stops at a NUL when written, as a C string. */
        size_t evl = strlen(ev), bel;
        memcpy(&bel, back.buf, sizeof(bel));
        if (bel != evl || memcmp(back.buf + sizeof(bel), ev, evl) != 0) abort();
        size_t bdl;
        memcpy(&bdl, back.buf + sizeof(bel) + bel, sizeof(bdl));
        if (bdl != dl || memcmp(back.buf + 2 * sizeof(bel) + bel, data, dl) != 0) abort();
        tg_sse_free(&p);
        free(back.buf);
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run_t whole, pieces, bytes;
    run(data, size, NULL, 0, &whole);
    if (size >= 2) {
        size_t cuts[2] = {data[0] % (size + 1), data[1] % (size + 1)};
        if (cuts[0] > cuts[1]) {
            size_t t = cuts[0];
            cuts[0] = cuts[1];
            cuts[1] = t;
        }
        run(data, size, cuts, 2, &pieces);
        same(&whole, &pieces);
        free(pieces.log.buf);
    }
    if (size <= 4096) {
        size_t *cuts = malloc((size + 1) * sizeof(*cuts));
        for (size_t i = 0; i < size; i++)
            cuts[i] = i;
        run(data, size, cuts, size, &bytes);
        same(&whole, &bytes);
        free(bytes.log.buf);
        free(cuts);
    }
    roundtrip(&whole.log);
    free(whole.log.buf);
    return 0;
}
