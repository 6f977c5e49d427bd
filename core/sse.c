/* sse.c — incremental text/event-stream parser and writer (WHATWG HTML,
 * "Server-sent events", the parsing rules). An upstream's answer arrives in
 * reads cut at arbitrary bytes; tg_sse_feed() takes each read, processes the
 * complete lines in place, and keeps only an unfinished line and the data of
 * the event being assembled, both bounded by max_event. Complete events leave
 * through the caller's callback; tg_sse_format() writes events for clients.
 * The parser owns its two buffers (heap, grown geometrically, so a stream
 * reaches its steady size after a few events) until tg_sse_free(). */
#include "core/sse.h"

#include <stdlib.h>
#include <string.h>

void tg_sse_init(tg_sse_parser_t *p, size_t max_event) {
    memset(p, 0, sizeof(*p));
    p->max_event = max_event;
}

void tg_sse_free(tg_sse_parser_t *p) {
    free(p->line);
    free(p->data);
    p->line = p->data = NULL;
    p->line_cap = p->data_cap = p->line_len = p->data_len = 0;
}

/* Makes room for `need` bytes (plus a NUL) in a buffer; 0 or -1. */
static int reserve(char **buf, size_t *cap, size_t need) {
    if (need + 1 <= *cap) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need + 1)
        n *= 2;
    char *b = realloc(*buf, n);
    if (b == NULL) return -1;
    *buf = b;
    *cap = n;
    return 0;
}

static int append_data(tg_sse_parser_t *p, const char *v, size_t n) {
    size_t sep = p->has_data ? 1 : 0;
    if (p->data_len + sep + n > p->max_event || reserve(&p->data, &p->data_cap, p->data_len + sep + n) != 0) {
        p->failed = 1;
        return TG_SSE_ETOOBIG;
    }
    if (sep) p->data[p->data_len++] = '\n';
    memcpy(p->data + p->data_len, v, n);
    p->data_len += n;
    p->data[p->data_len] = '\0';
    p->has_data = 1;
    return 0;
}

/* An empty line ends an event: it is dispatched only if a data: line came
 * (an event of only "event:" lines is dropped, as the spec says). */
static int dispatch(tg_sse_parser_t *p, tg_sse_cb cb, void *ud) {
    int rc = 0;
    if (p->has_data) {
        p->event[p->event_len] = '\0';
        rc = cb(ud, p->event, p->event_len, p->data, p->data_len);
    }
    p->data_len = 0;
    p->has_data = 0;
    p->event_len = 0;
    p->event[0] = '\0';
    p->pending = 0;
    return rc;
}

static int process_line(tg_sse_parser_t *p, const char *l, size_t n, tg_sse_cb cb, void *ud) {
    if (n == 0) return dispatch(p, cb, ud);
    if (l[0] == ':') return 0; /* comment, e.g. a keep-alive */
    const char *colon = memchr(l, ':', n);
    size_t flen = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = (size_t)(l + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    p->pending = 1;
    if (flen == 4 && memcmp(l, "data", 4) == 0) return append_data(p, v, vlen);
    if (flen == 5 && memcmp(l, "event", 5) == 0) {
        if (vlen > sizeof(p->event) - 1) vlen = sizeof(p->event) - 1;
        memcpy(p->event, v, vlen);
        p->event[vlen] = '\0';
        p->event_len = vlen;
    }
    /* id, retry and unknown fields do not matter to a proxy reading events. */
    return 0;
}

/* Keeps the unfinished tail of a read for the next one. */
static int buffer_partial(tg_sse_parser_t *p, const char *b, size_t n) {
    if (p->line_len + n + p->data_len > p->max_event ||
        reserve(&p->line, &p->line_cap, p->line_len + n) != 0) {
        p->failed = 1;
        return TG_SSE_ETOOBIG;
    }
    memcpy(p->line + p->line_len, b, n);
    p->line_len += n;
    return 0;
}

/* The first CR or LF at or after i, else len. Two memchr passes (vectorised
 * in libc) beat one byte loop: a data line is hundreds of bytes and a CR is
 * looked for only before the LF. */
static size_t find_eol(const char *b, size_t i, size_t len) {
    const char *nl = memchr(b + i, '\n', len - i);
    size_t end = nl ? (size_t)(nl - b) : len;
    const char *cr = memchr(b + i, '\r', end - i);
    return cr ? (size_t)(cr - b) : end;
}

int tg_sse_feed(tg_sse_parser_t *p, const char *buf, size_t len, tg_sse_cb cb, void *ud) {
    if (p->failed) return TG_SSE_ETOOBIG;
    size_t i = 0;
    /* A CR ended the previous read: an LF starting this one is its pair. */
    if (p->saw_cr && len > 0) {
        p->saw_cr = 0;
        if (buf[0] == '\n') i = 1;
    }
    while (i < len) {
        size_t j = find_eol(buf, i, len);
        int rc;
        if (j == len) return buffer_partial(p, buf + i, len - i);
        if (p->line_len > 0) {
            rc = buffer_partial(p, buf + i, j - i);
            if (rc == 0) rc = process_line(p, p->line, p->line_len, cb, ud);
            p->line_len = 0;
        } else if (j - i + p->data_len > p->max_event) {
            /* The same bound as for a buffered line, so the outcome does
             * not depend on where the reads were cut. */
            p->failed = 1;
            rc = TG_SSE_ETOOBIG;
        } else {
            rc = process_line(p, buf + i, j - i, cb, ud);
        }
        if (buf[j] == '\r') {
            if (j + 1 < len && buf[j + 1] == '\n')
                j++;
            else if (j + 1 == len)
                p->saw_cr = 1;
        }
        i = j + 1;
        if (rc != 0) return rc;
    }
    return 0;
}

int tg_sse_truncated(const tg_sse_parser_t *p) {
    /* A partial comment line is no event; anything else unfinished is. */
    return p->pending || p->has_data || (p->line_len > 0 && p->line[0] != ':');
}

static size_t put(char *dst, size_t cap, size_t at, const char *s, size_t n) {
    if (at + n <= cap) memcpy(dst + at, s, n);
    return at + n;
}

size_t tg_sse_format(char *dst, size_t cap, const char *event, const char *data, size_t data_len) {
    size_t at = 0;
    if (data == NULL) {
        data = "";
        data_len = 0;
    }
    /* Measure first, write on the second pass only if it all fits: a
     * half-written event would corrupt the client's stream. */
    for (int pass = 0; pass < 2; pass++) {
        size_t c = pass == 0 ? 0 : cap;
        at = 0;
        if (event != NULL && event[0] != '\0') {
            size_t en = strcspn(event, "\r\n"); /* a newline would end the field */
            at = put(dst, c, at, "event: ", 7);
            at = put(dst, c, at, event, en);
            at = put(dst, c, at, "\n", 1);
        }
        size_t i = 0;
        do {
            size_t j = find_eol(data, i, data_len);
            at = put(dst, c, at, "data: ", 6);
            at = put(dst, c, at, data + i, j - i);
            at = put(dst, c, at, "\n", 1);
            if (j < data_len && data[j] == '\r' && j + 1 < data_len && data[j + 1] == '\n') j++;
            i = j + 1;
        } while (i <= data_len);
        at = put(dst, c, at, "\n", 1);
        if (pass == 0 && at > cap) return at;
    }
    if (at < cap) dst[at] = '\0';
    return at;
}
