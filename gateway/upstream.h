/* upstream.h — HTTP calls to providers through libcurl multi_socket driven
 * by the worker's libevent loop (curl's hiperfifo pattern). One
 * tg_upstream_t per worker; one tg_upcall_t per attempt.
 *
 * Callbacks never run inside another curl callback's caller frame in a way
 * that matters to the user: on_headers and on_data run from curl's header
 * and write callbacks, so they must not cancel the call (use the return
 * value instead) — tg_upcall_cancel() from them is deferred safely anyway.
 * on_done runs from the event loop, exactly once, unless the call was
 * cancelled first. After on_done (or tg_upcall_cancel) the handle is gone.
 */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <stddef.h>

#include "core/upcall.h"

struct event_base;

typedef struct tg_upstream_s tg_upstream_t;
typedef struct tg_upcall_s tg_upcall_t;

/* Results given to on_done. */
typedef enum {
    TG_UP_OK = 0,     /* transfer complete */
    TG_UP_ECONNECT,   /* could not connect / DNS / TLS handshake */
    TG_UP_EFIRSTBYTE, /* no response byte within first_byte_ms */
    TG_UP_EIDLE,      /* no body byte for idle_ms after the first */
    TG_UP_ETOTAL,     /* total_ms exceeded */
    TG_UP_ERESET,     /* connection broke mid-response (reset, truncated) */
    TG_UP_EABORTED,   /* stopped because on_headers/on_data said so */
    TG_UP_EOTHER
} tg_up_result_t;

typedef struct {
    /* Status line and headers complete. Return 0 to go on, -1 to abort. */
    int (*on_headers)(tg_upcall_t *u, int status, void *ud);
    /* Response body bytes as they arrive. Return 0 to go on, 1 to pause
     * (call tg_upcall_resume later; the same bytes are NOT redelivered:
     * they were consumed), -1 to abort. */
    int (*on_data)(tg_upcall_t *u, const char *p, size_t n, void *ud);
    /* Finished. `err` is the class of the failure in a few words
     * ("connection refused", "could not resolve host", "TLS handshake
     * failed", "no response within 200 ms"): never the provider's address,
     * URL or headers, which go to the server's log only (info). "" on
     * TG_UP_OK. Valid during the call only. */
    void (*on_done)(tg_upcall_t *u, tg_up_result_t res, const char *err, void *ud);
} tg_upcall_cb_t;

tg_upstream_t *tg_upstream_new(struct event_base *base);
/* Cancels every call in flight (no on_done) and frees. Call before
 * event_base_free, and not from inside one of this upstream's callbacks. */
void tg_upstream_free(tg_upstream_t *up);

/* Starts a call; returns NULL (with err filled) only if it could not be
 * started at all. Header strings are copied; the body is not. */
tg_upcall_t *tg_upcall_start(tg_upstream_t *up, const tg_upcall_req_t *req, const tg_upcall_cb_t *cb,
                             void *ud, char *err, size_t errlen);
/* Stops the transfer now (the connection is closed, so the provider sees the
 * cancel); no callback follows. Safe from inside on_headers/on_data. */
void tg_upcall_cancel(tg_upcall_t *u);
void tg_upcall_resume(tg_upcall_t *u);
/* A response header's value (case-insensitive name), valid until on_done;
 * NULL when absent. Available from on_headers on. */
const char *tg_upcall_header(const tg_upcall_t *u, const char *name);
/* Calls in flight (for metrics and tests). */
unsigned tg_upstream_active(const tg_upstream_t *up);
/* Calls sent a second time, transparently, because their reused connection
 * failed before any byte of an answer (a provider's idle close, an HTTP/2
 * GOAWAY or refused stream): not failures, not failover attempts. */
unsigned long tg_upstream_resends(const tg_upstream_t *up);

#endif
