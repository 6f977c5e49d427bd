/* strbuf.h — a growable text buffer for documents built off the hot path
 * (Prometheus text, reports, the dashboard page). */
#ifndef TG_STRBUF_H
#define TG_STRBUF_H

#include <stddef.h>

typedef struct {
    char *p; /* malloc'd, NUL-terminated once anything was written; the owner frees it */
    size_t len, cap;
    int oom; /* an allocation failed: the text is incomplete */
} tg_strbuf_t;

void tg_strbuf_printf(tg_strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
