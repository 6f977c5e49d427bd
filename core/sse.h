/* sse.h — incremental Server-Sent Events parser (text/event-stream as the
 * WHATWG spec defines it): events may be split across reads at any byte,
 * lines end in LF, CRLF or CR, ':' lines are comments, several data: lines
 * join with '\n'. Memory is bounded by max_event. */
#ifndef TG_SSE_H
#define TG_SSE_H

#include <stddef.h>

/* One complete event. `event` is "" when no event: line came (the type is
 * then "message"); data is NUL-terminated for convenience. Return 0 to go
 * on, non-zero to stop tg_sse_feed() and have it return that value. */
typedef int (*tg_sse_cb)(void *ud, const char *event, size_t event_len, const char *data, size_t data_len);

typedef struct {
    char *line; /* the current partial line */
    size_t line_len, line_cap;
    char *data; /* data of the event being assembled */
    size_t data_len, data_cap;
    char event[64]; /* event type (longer names are truncated) */
    size_t event_len;
    size_t max_event; /* bound on line + data bytes */
    int saw_cr;       /* last byte was CR: a following LF belongs to it */
    int has_data;     /* at least one data: line in the current event */
    int pending;      /* field lines of an unfinished event were seen */
    int failed;       /* TG_SSE_ETOOBIG was returned: later feeds fail too */
} tg_sse_parser_t;

#define TG_SSE_ETOOBIG (-1)

void tg_sse_init(tg_sse_parser_t *p, size_t max_event);
/* Feeds bytes; calls cb per complete event. Returns 0, TG_SSE_ETOOBIG, or
 * the callback's non-zero value. */
int tg_sse_feed(tg_sse_parser_t *p, const char *buf, size_t len, tg_sse_cb cb, void *ud);
/* At end of input: 1 when an unfinished event was left (the stream was cut
 * mid-event), else 0. The unfinished event is discarded, as the spec says. */
int tg_sse_truncated(const tg_sse_parser_t *p);
void tg_sse_free(tg_sse_parser_t *p);

/* Formats `event` (may be NULL or "") and `data` (may contain newlines: each
 * line, split at LF, CRLF or CR, becomes a data: line) as one SSE event into
 * dst. Returns the length it needs (without a NUL); writes only when that
 * fits in cap, and adds a NUL when there is room for one. */
size_t tg_sse_format(char *dst, size_t cap, const char *event, const char *data, size_t data_len);

#endif
