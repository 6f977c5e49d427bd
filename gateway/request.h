/* request.h — the request lifecycle: the HTTP handler every worker serves
 * with, and what the handler needs from the worker that serves it. The
 * server (gateway/server.c) fills a tg_worker_t per worker thread and gives
 * it as the handler's `ud`; this module never calls the server back. */
#ifndef TG_REQUEST_H
#define TG_REQUEST_H

#include <stdint.h>

#include "gateway/http1.h"

struct event_base;
struct tg_upstream_s;
struct tg_ledger_s;
struct tg_health_s;

typedef struct tg_worker_s {
    int index;
    struct event_base *base;
    struct tg_http_server_s *http;
    struct tg_upstream_s *up;
    struct tg_ledger_s *ledger;
    struct tg_health_s
        *health;  /* provider latency and circuit state: a handle on the table all workers share */
    uint64_t rng; /* request ids */
    int draining; /* stop was asked: answer with Connection: close */
    /* The server's own Prometheus lines for /metrics (circuit state, calls
     * in flight, ledger backlog), malloc'd for the caller to free; NULL
     * when there are none. */
    char *(*server_metrics)(void);
} tg_worker_t;

extern const tg_http_handler_t tg_request_handler;

/* The body of an answer the HTTP server gives by itself (400, 408, 413,
 * 431) in the error shape of the API at `path`: what on_headers would have
 * answered there (tg_http_error_body_fn, gateway/http1.h). */
size_t tg_request_error_body(const char *path, size_t path_len, int status, const char *code, const char *msg,
                             char *buf, size_t cap);

#endif
