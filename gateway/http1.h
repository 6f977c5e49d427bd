/* http1.h — Tollgate's own HTTP/1.1 server on a libevent loop, with
 * http_parser doing all parsing. One tg_http_server_t per worker loop; the
 * gateway and the simulator both serve through it.
 *
 * Lifecycle of one request, as the handler sees it:
 *   on_headers(r)  headers complete; the handler may answer at once (401,
 *                  404, 413...) or return TG_HTTP_CONTINUE to read the body.
 *   on_request(r)  the whole body is in memory (tg_http_body()).
 *   ... the handler answers, now or later, with tg_http_respond() or
 *       tg_http_stream_start() / tg_http_stream_write() / tg_http_stream_end().
 *   on_drain(r)    the client read enough output after a write returned 1.
 *   on_finish(r, aborted)
 *                  exactly once per request that reached on_headers: after
 *                  the last byte of the response was queued (aborted = 0) or
 *                  when the connection died first (aborted = 1: the client
 *                  hung up, a timeout fired, a write failed). The handler frees
 *                  its state here; `r` is invalid after on_finish returns.
 *                  on_finish may run inside tg_http_respond()/stream_end()
 *                  (synchronously), so a handler must not touch its state
 *                  after those calls return.
 *
 * The read side stays armed while a request runs, so a hang-up is seen at
 * once, even while waiting for the first token. Pipelined requests are
 * parsed only after the previous response is complete, and answered in order.
 */
#ifndef TG_HTTP1_H
#define TG_HTTP1_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct tg_http_server_s tg_http_server_t;
typedef struct tg_http_req_s tg_http_req_t;

typedef struct {
    const char *name; /* as received (case preserved), not NUL-terminated */
    size_t name_len;
    const char *value;
    size_t value_len;
} tg_http_header_t;

enum { TG_HTTP_CONTINUE = 0, TG_HTTP_HANDLED = 1 };

typedef struct {
    /* Return TG_HTTP_CONTINUE to read the body, or TG_HTTP_HANDLED after
     * answering (the body, if any, is then discarded or the connection
     * closed). The server itself answers 413 when Content-Length exceeds
     * max_body_bytes, before calling this (its body: see
     * tg_http_server_set_error_body). */
    int (*on_headers)(tg_http_req_t *r, void *ud);
    void (*on_request)(tg_http_req_t *r, void *ud);
    void (*on_drain)(tg_http_req_t *r, void *ud);
    void (*on_finish)(tg_http_req_t *r, int aborted, void *ud);
} tg_http_handler_t;

typedef struct {
    size_t max_header_bytes;       /* all request-line + header bytes; 431 past it (default 16 KiB) */
    unsigned max_headers;          /* header count; 431 past it (default 100) */
    size_t max_body_bytes;         /* 413 past it (default 4 MiB) */
    unsigned header_timeout_ms;    /* first byte to end of headers, a deadline (default 10 s) */
    unsigned body_timeout_ms;      /* end of headers to end of body, a deadline (default 30 s) */
    unsigned keepalive_timeout_ms; /* idle between requests (default 60 s) */
    unsigned send_timeout_ms;      /* output stuck above the high-water mark (default 60 s) */
    size_t high_water; /* tg_http_stream_write() returns 1 past this many queued bytes (default 256 KiB) */
    size_t low_water;  /* on_drain fires when the queue falls to this (default 64 KiB) */
    /* A body slower than this many bytes a second on average, once
     * rate_grace_ms have passed since its start, is cut with 408 before its
     * deadline: each byte buys 1/min_body_rate s beyond the grace (default
     * 1024 bytes/s after 5 s; 0: no minimum rate). */
    unsigned min_body_rate;
    unsigned rate_grace_ms;
} tg_http_limits_t;

/* Fills `l` with the defaults above. */
void tg_http_limits_default(tg_http_limits_t *l);

/* Listens on an already bound, listening, non-blocking socket `fd` (the
 * caller sets SO_REUSEPORT), or on none yet when fd is -1. `ud` is passed to
 * every callback. */
tg_http_server_t *tg_http_server_new(struct event_base *base, int fd, const tg_http_limits_t *lim,
                                     const tg_http_handler_t *h, void *ud);

/* A byte stream under HTTP/1.1 other than the plain socket: TLS
 * (gateway/tls.h). A connection accepted on a listener that has one calls
 * open() once, handshake() until it returns 0, then read() and write() in
 * place of recv() and sendmsg(); the server arms the socket's read or write
 * event as a call asks. The codes below are the negative results. */
enum { TG_HTTP_IO_WANT_READ = -1, TG_HTTP_IO_WANT_WRITE = -2, TG_HTTP_IO_ERROR = -3 };
typedef struct {
    /* State for the connection on socket fd, or NULL to refuse it (the
     * server then closes fd). */
    void *(*open)(void *ud, int fd);
    /* 0 once the handshake is complete, else a TG_HTTP_IO_ code. */
    int (*handshake)(void *io);
    /* Bytes read (> 0), 0 when the peer closed, or a TG_HTTP_IO_ code. */
    long (*read)(void *io, void *buf, size_t len);
    /* Bytes written (> 0) or a TG_HTTP_IO_ code. After a WANT code the
     * next call passes the same bytes first, possibly with more after them. */
    long (*write)(void *io, const void *buf, size_t len);
    /* Whether bytes already taken off the socket wait to be read: the
     * socket's read event will not fire for them. */
    int (*pending)(void *io);
    /* Says goodbye when the peer may still hear it (how_clean != 0) and
     * frees io; the server closes the socket itself. */
    void (*close)(void *io, int how_clean);
    void *ud;
} tg_http_transport_t;

/* Listens on one more socket `fd` (as for tg_http_server_new); connections
 * accepted there run over `t` (NULL: the plain socket). `t` must outlive the
 * server. Returns 0, or -1 when out of memory or the event cannot be added. */
int tg_http_server_add_listener(tg_http_server_t *s, int fd, const tg_http_transport_t *t);
/* The body of an answer the server gives by itself (400 on a malformed
 * request, 408 when the body is too slow, 413, 431), in the error shape of
 * the API at `path`: the request target's path as far as it was read (no
 * query; "" when not known). `code` is a short machine word
 * ("request_too_large"), `msg` a sentence. Writes at most cap bytes into
 * buf and returns the length; 0 lets the server use its own body,
 * {"error":{"message","type":"invalid_request_error","code"}}. The body is
 * sent as application/json. */
typedef size_t (*tg_http_error_body_fn)(const char *path, size_t path_len, int status, const char *code,
                                        const char *msg, char *buf, size_t cap);
/* Sets the server's error-body writer (NULL: its own body, as by default). */
void tg_http_server_set_error_body(tg_http_server_t *s, tg_http_error_body_fn fn);
/* Stop accepting (on every listener); connections with no request in
 * flight close now, others close after their response. on_finish still runs
 * for every request. */
void tg_http_server_stop_accepting(tg_http_server_t *s);
/* Number of connections still open (for graceful drain). */
unsigned tg_http_server_connections(const tg_http_server_t *s);
/* Closes every connection (aborting requests) and frees the server. */
void tg_http_server_free(tg_http_server_t *s);
/* Helper: a bound, listening, non-blocking TCP socket with SO_REUSEADDR and
 * SO_REUSEPORT; host may be "0.0.0.0", "127.0.0.1", "::". Returns fd or -1
 * with errno set. */
int tg_http_listen(const char *host, int port, int backlog);

/* --- request accessors (valid from on_headers until on_finish) --- */
const char *tg_http_method(const tg_http_req_t *r);             /* "GET", "POST"... */
const char *tg_http_path(const tg_http_req_t *r, size_t *len);  /* without query */
const char *tg_http_query(const tg_http_req_t *r, size_t *len); /* after '?', or NULL */
/* Case-insensitive lookup; first match. NULL when absent. */
const char *tg_http_header(const tg_http_req_t *r, const char *name, size_t *len);
size_t tg_http_header_count(const tg_http_req_t *r);
const tg_http_header_t *tg_http_header_at(const tg_http_req_t *r, size_t i);
/* The whole body, contiguous, valid until on_finish. Chunked bodies are
 * decoded. The buffer is writable and has one spare byte, NUL-terminated. */
char *tg_http_body(tg_http_req_t *r, size_t *len);
/* Content-Length, or -1 when absent/chunked. */
int64_t tg_http_content_length(const tg_http_req_t *r);
/* Client address text, e.g. "127.0.0.1". */
const char *tg_http_peer(const tg_http_req_t *r);
void tg_http_set_data(tg_http_req_t *r, void *data);
void *tg_http_data(const tg_http_req_t *r);

/* --- responses --- Each entry of `hdrs` is one "Name: value" line without
 * CRLF. The server adds Content-Length or Transfer-Encoding, and Connection
 * when it will close. */

/* Whole response with Content-Length. `body` is copied. */
void tg_http_respond(tg_http_req_t *r, int status, const char *const *hdrs, size_t nhdrs, const char *body,
                     size_t len);
/* Starts a chunked response (for SSE). */
void tg_http_stream_start(tg_http_req_t *r, int status, const char *const *hdrs, size_t nhdrs);
/* Queues one chunk (copied). Returns 0, or 1 when queued output is above the
 * high-water mark: the caller should pause its producer until on_drain. A
 * zero-length write is a no-op. */
int tg_http_stream_write(tg_http_req_t *r, const char *data, size_t len);
/* One chunk gathered from several pieces (copied), same return as above. */
struct iovec;
int tg_http_stream_writev(tg_http_req_t *r, const struct iovec *iov, int n);
/* Terminating chunk; the response is complete (on_finish follows). */
void tg_http_stream_end(tg_http_req_t *r);
/* Bytes queued for the client and not yet written. */
size_t tg_http_pending(const tg_http_req_t *r);
/* Drops the connection at once (on_finish with aborted = 1 follows,
 * synchronously). For a response that cannot be completed properly. */
void tg_http_abort(tg_http_req_t *r);

const char *tg_http_reason(int status);

#endif
