/* header.h — a source of the client's request headers. Dialects
 * (providers/) and the policy engine (policy/) read headers such as
 * anthropic-beta or a route's `header` match through it, so they never call
 * the HTTP server: gateway/request.c fills one from the request it serves,
 * tests fill one from a table, and `tollgate explain` leaves it empty. */
#ifndef TG_HEADER_H
#define TG_HEADER_H

#include <stddef.h>

typedef struct {
    /* The value of header `name` (case-insensitive, first match) and its
     * length in *len; NULL when absent. The value stays valid for as long
     * as the struct that holds this source. */
    const char *(*get)(void *ud, const char *name, size_t *len);
    void *ud;
} tg_header_source_t;

/* The header's value through h, or NULL (with *len = 0) when h has no
 * getter or the header is absent. */
static inline const char *tg_header_get(const tg_header_source_t *h, const char *name, size_t *len) {
    const char *v = h && h->get ? h->get(h->ud, name, len) : NULL;
    if (v == NULL && len) *len = 0;
    return v;
}

#endif
