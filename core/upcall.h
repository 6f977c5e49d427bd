/* upcall.h — the description of one upstream HTTP request: URL, header
 * lines, body, timeouts and whether the answer is an event stream. A
 * dialect (providers/) fills it; the upstream client (gateway/upstream.c)
 * sends it. It lives on the ground floor so that dialects can describe a
 * call without knowing the I/O floor that makes it. */
#ifndef TG_UPCALL_H
#define TG_UPCALL_H

#include <stddef.h>

typedef struct {
    unsigned connect_ms;    /* default 3000 */
    unsigned first_byte_ms; /* from request sent to first response byte; default 60000 */
    unsigned idle_ms;       /* between body bytes; default 60000 */
    unsigned total_ms;      /* 0 = none */
} tg_upcall_timeouts_t;

typedef struct {
    const char *url;            /* absolute http(s) URL */
    const char *const *headers; /* "Name: value" lines; Expect: is blanked by the sender */
    size_t nheaders;
    const char *body; /* POST body; must stay valid until the call ends */
    size_t body_len;
    tg_upcall_timeouts_t timeouts;
    int streaming; /* the answer is an event stream: a 4 KB receive buffer instead of 16 KB */
    /* TLS trust: a PEM file of the only CAs trusted for this origin (a
     * private CA), or NULL for the system's store. */
    const char *ca_file;
    /* HTTPS only: offer HTTP/2 and multiplex calls on one connection, instead
     * of HTTP/1.1 on a pool of kept-alive connections (the default). */
    int http2;
} tg_upcall_req_t;

#endif
