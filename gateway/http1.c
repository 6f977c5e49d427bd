/* http1.c — Tollgate's own HTTP/1.1 server on a libevent loop; http_parser
 * does all parsing. A connection (which is also the tg_http_req_t of its one
 * running request) owns a read buffer, a copy of the current request's header
 * block, a body buffer and an output queue, all reused across keep-alive
 * requests. Bytes enter through recv() into the read buffer and reach the
 * handler as slices of the header copy and a contiguous body; responses leave
 * through one sendmsg() when the socket takes them, the rest waits in an
 * evbuffer flushed on EV_WRITE. The read side stays armed while a request
 * runs so a hang-up is seen at once; pipelined requests wait, unparsed, until
 * the previous response is complete. A listener may carry a transport
 * (tg_http_transport_t, TLS in gateway/tls.c): its connections handshake
 * first, under the header timeout, then read and write through it; a plain
 * connection never leaves the direct recv()/sendmsg() path.
 *
 * One file of about 1,800 lines, on purpose: a connection is one state
 * machine. The parser callbacks, the timer, the output queue and the
 * response calls all read and change the same conn_t and its phase, and
 * must act in a fixed order (resp_complete -> req_finish -> close or parse
 * the next request); split by job, that struct and a dozen such functions
 * would cross a private header, and a reader would follow one request
 * through several files. The sections below (timers, output, heads,
 * closing, parser callbacks, request phases, socket events, server,
 * accessors, responses) are those jobs. */
#include "gateway/http1.h"

#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (16 * 1024)
/* Unparsed bytes kept while a request runs (pipelining); past this the
 * connection stops reading until the request completes, which also means a
 * hang-up is not seen meanwhile. */
#define PIPELINE_CAP (64 * 1024)
#define LINGER_MS 2000 /* how long a closing connection drains what the client still sends */
#define ACCEPT_BATCH 64
#define ACCEPT_RETRY_MS 100
#define HEAD_STACK 2048
#define MAX_IOV 64
#define BODY_SHRINK (64 * 1024) /* body buffers above this are freed between requests */
#define IO_CHUNK (16 * 1024)    /* one TLS record's worth: what a transport write is given at most */

/* Where the parser is in the byte stream (not where the handler is). */
enum { P_IDLE, P_HEAD, P_BODY, P_DONE, P_SKIP, P_LINGER };
enum { T_NONE, T_HEADER, T_BODY, T_KEEPALIVE, T_SEND, T_LINGER };
enum { R_NONE, R_STREAM, R_DONE };
enum { CB_NONE, CB_URL, CB_FIELD, CB_VALUE };
/* Why the parser stopped: an event to act on, or an error our callbacks saw. */
enum { PE_HEADERS = 1, PE_MESSAGE, PE_HDR_SIZE, PE_HDR_COUNT, PE_FOLD, PE_BODY_SIZE, PE_NOMEM };
/* Our own reading of a chunked body's framing, byte by byte beside the
 * parser's (see chunk_check): where it is in the frame. */
enum {
    CK_OFF,     /* not a chunked body */
    CK_START,   /* the LF that ends the head, which the parser reads again */
    CK_SIZE0,   /* first hex digit of a chunk size */
    CK_SIZE,    /* more hex digits, an extension, or CR */
    CK_EXT,     /* a chunk extension, up to CR */
    CK_SIZE_LF, /* LF after the size line */
    CK_DATA,    /* chunk data (ck_left bytes) */
    CK_DATA_CR, /* CR after chunk data */
    CK_DATA_LF, /* LF after chunk data */
    CK_TRAILER, /* start of a trailer line, or CR of the last line */
    CK_TLINE,   /* inside a trailer line */
    CK_TLINE_LF,
    CK_END_LF, /* LF of the last line */
    CK_DONE
};
/* The body's minimum rate applies after this much time (default). */
#define RATE_GRACE_MS 5000
#define MIN_BODY_RATE 1024 /* bytes a second (default) */

typedef struct {
    uint32_t no, nl, vo, vl; /* offsets into the read buffer while headers are parsed */
} hslot_t;

/* One listening socket and the transport of the connections it accepts. */
typedef struct {
    tg_http_server_t *s;
    struct event ev;
    const tg_http_transport_t *t; /* NULL: plain */
} lsn_t;

struct tg_http_server_s {
    struct event_base *base;
    lsn_t **lsn;
    unsigned nlsn;
    struct event retry_ev;
    tg_http_limits_t lim;
    tg_http_handler_t h;
    void *ud;
    tg_http_error_body_fn error_body; /* the owner's shape for server_error; NULL: ours */
    tg_http_req_t *conns;
    unsigned nconns;
    int stopping;
    time_t date_sec;
    char date[48]; /* "Date: ...\r\n", refreshed once a second */
    size_t date_len;
};

struct tg_http_req_s {
    tg_http_server_t *s;
    tg_http_req_t *prev, *next;
    int fd;
    /* A transport's connection state (NULL: plain socket). hs: its handshake
     * is not done yet; rd_wants_w: its last read waits for the socket to
     * take a write. */
    const tg_http_transport_t *io;
    void *ioc;
    unsigned hs : 1, rd_wants_w : 1;
    struct event rev, wev, tmr, kick;
    http_parser parser;
    /* Connection state. busy counts frames up the stack that use this
     * object: it is freed only when dead and busy drops to 0. */
    unsigned busy;
    unsigned dead : 1, in_process : 1, read_on : 1, wev_on : 1, closing : 1, peer_eof : 1, write_error : 1,
        keepalive : 1;
    int phase, tmr_kind, pause_ev, last_cb;
    unsigned nreq;
    /* When the current head began (the connection's accept for the first
     * request: the TLS handshake counts) and when its body began, in
     * monotonic microseconds: the header and body timeouts are deadlines
     * from these, not idle timers a trickle of bytes could keep resetting. */
    int64_t head_t0, body_t0;
    int ck; /* CK_ state of a chunked body's framing */
    uint64_t ck_left;
    /* Read buffer: [rpos, rlen) not yet parsed. While P_HEAD the request
     * starts at offset 0 and slots hold offsets, so the buffer may grow. */
    char *rbuf;
    size_t rcap, rlen, rpos;
    unsigned nh, msg_begun : 1;
    uint32_t url_off, url_len;
    /* The current request. */
    unsigned req_active : 1, handled : 1, has_body : 1, expect_continue : 1, http10 : 1, is_head : 1,
        chunked_out : 1, want_drain : 1;
    int resp;
    int64_t content_length;
    char *hstore; /* header array + copy of the header block */
    size_t hcap;
    tg_http_header_t *hdrs;
    const char *path, *query;
    size_t path_len, query_len;
    char *body;
    size_t body_len, body_cap;
    char empty_body[1];
    void *udata;
    struct evbuffer *out;
    struct sockaddr_storage sa;
    char peer[INET6_ADDRSTRLEN];
    hslot_t *slots; /* max_headers of them; allocated with rbuf (used only while P_HEAD) */
};

typedef tg_http_req_t conn_t;

static void conn_process(conn_t *c);
static void conn_fail(conn_t *c);
static void timer_update(conn_t *c, int force);
static void close_after_output(conn_t *c);

/* ---------- small helpers ---------- */

static size_t out_pending(const conn_t *c) {
    return c->out ? evbuffer_get_length(c->out) : 0;
}

static void conn_free(conn_t *c) {
    if (c->out) evbuffer_free(c->out);
    free(c->rbuf);
    free(c->slots);
    free(c->hstore);
    free(c->body);
    free(c);
}

static void conn_release(conn_t *c) {
    if (--c->busy == 0 && c->dead) conn_free(c);
}

/* Closes the socket and unlinks the connection; memory goes when the last
 * frame using it returns (conn_release). */
static void conn_close(conn_t *c) {
    if (c->dead) return;
    c->dead = 1;
    event_del(&c->rev);
    event_del(&c->wev);
    event_del(&c->tmr);
    event_del(&c->kick);
    if (c->ioc) c->io->close(c->ioc, !c->hs && !c->write_error && !c->peer_eof);
    c->ioc = NULL;
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->s->nconns--;
}

/* The caller holds busy. r becomes invalid for the handler afterwards. */
static void req_finish(conn_t *c, int aborted) {
    if (!c->req_active) return;
    c->req_active = 0;
    c->want_drain = 0;
    c->nreq++;
    if (c->s->h.on_finish) c->s->h.on_finish(c, aborted, c->s->ud);
}

static void conn_fail(conn_t *c) {
    if (c->dead) return;
    c->busy++;
    conn_close(c);
    req_finish(c, 1);
    conn_release(c);
}

static void read_start(conn_t *c) {
    if (!c->read_on && !c->dead) {
        event_add(&c->rev, NULL);
        c->read_on = 1;
        /* Bytes a transport already took off the socket raise no event. */
        if (c->ioc && c->io->pending(c->ioc)) event_active(&c->rev, EV_READ, 1);
    }
}

static void read_stop(conn_t *c) {
    if (c->read_on) {
        event_del(&c->rev);
        c->read_on = 0;
    }
}

/* ---------- timers: one per connection, its meaning follows the phase ---------- */

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Microseconds until the body is late: the earlier of its deadline
 * (body_timeout_ms from its start) and the moment it falls below the
 * minimum rate (after the grace period, min_body_rate bytes a second
 * since the start: each byte received buys 1/rate s). <= 0: late now. */
static int64_t body_left_us(const conn_t *c, int64_t now, int *slow) {
    const tg_http_limits_t *L = &c->s->lim;
    int64_t due = c->body_t0 + (int64_t)L->body_timeout_ms * 1000;
    *slow = 0;
    if (L->min_body_rate) {
        int64_t bytes = (int64_t)c->body_len;
        int64_t rate_due = c->body_t0 + (int64_t)L->rate_grace_ms * 1000 + bytes * 1000000 / L->min_body_rate;
        if (rate_due < due) {
            due = rate_due;
            *slow = 1;
        }
    }
    return due - now;
}

static void timer_update(conn_t *c, int force) {
    const tg_http_limits_t *L = &c->s->lim;
    int kind = T_NONE;
    int64_t us = 0;
    if (c->dead) return;
    if (c->phase == P_LINGER)
        kind = T_LINGER, us = LINGER_MS * 1000;
    else if (c->wev_on)
        kind = T_SEND, us = (int64_t)L->send_timeout_ms * 1000;
    else if (c->phase == P_HEAD || (c->phase == P_IDLE && (c->nreq == 0 || c->rpos < c->rlen)))
        kind = T_HEADER;
    else if (c->phase == P_IDLE)
        kind = T_KEEPALIVE, us = (int64_t)L->keepalive_timeout_ms * 1000;
    else if (c->phase == P_BODY && c->has_body && !c->handled)
        kind = T_BODY;
    if (kind == c->tmr_kind && !force) return;
    c->tmr_kind = kind;
    if (kind == T_NONE) {
        event_del(&c->tmr);
        return;
    }
    /* Header and body timers count from their phase's start, whatever
     * happened since (bytes, a send phase in between). */
    int slow;
    if (kind == T_HEADER) us = c->head_t0 + (int64_t)L->header_timeout_ms * 1000 - mono_us();
    if (kind == T_BODY) us = body_left_us(c, mono_us(), &slow);
    if (us < 0) us = 0;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    event_add(&c->tmr, &tv);
}

/* ---------- output ---------- */

/* A transport write: bytes taken (0 when the socket is full), or -1 with
 * errno set when the connection is dead. A write that waits for a read
 * (renegotiation, which gateway/tls.c turns off) counts as dead rather
 * than being polled for. */
static ssize_t io_put(conn_t *c, const void *p, size_t len) {
    long w = c->io->write(c->ioc, p, len);
    if (w >= 0) return w;
    if (w == TG_HTTP_IO_WANT_WRITE) return 0;
    errno = EPIPE;
    return -1;
}

/* The pieces gathered into records of up to IO_CHUNK bytes, so that a head
 * and a small body leave as one record. Returns the bytes taken, or -1. The
 * bytes not taken are queued by the caller and retried from the queue,
 * which starts with them (what a transport asks after WANT_WRITE). */
static ssize_t io_writev(conn_t *c, const struct iovec *iov, int n) {
    char buf[IO_CHUNK];
    size_t done = 0, off = 0;
    int i = 0;
    for (;;) {
        size_t len = 0;
        while (i < n && len < sizeof(buf)) {
            size_t k = iov[i].iov_len - off;
            if (k > sizeof(buf) - len) k = sizeof(buf) - len;
            memcpy(buf + len, (const char *)iov[i].iov_base + off, k);
            len += k;
            off += k;
            if (off == iov[i].iov_len) i++, off = 0;
        }
        if (len == 0) return (ssize_t)done;
        ssize_t w = io_put(c, buf, len);
        if (w < 0) return -1;
        done += (size_t)w;
        if ((size_t)w < len) return (ssize_t)done;
    }
}

/* Queued output through the transport, IO_CHUNK bytes at a time. */
static ssize_t io_flush(conn_t *c) {
    ssize_t total = 0;
    size_t left;
    while ((left = out_pending(c)) > 0) {
        size_t want = left < IO_CHUNK ? left : IO_CHUNK;
        unsigned char *p = evbuffer_pullup(c->out, (ev_ssize_t)want);
        ssize_t w = p ? io_put(c, p, want) : -1;
        if (w < 0) {
            c->write_error = 1;
            return -1;
        }
        if (w == 0) break;
        evbuffer_drain(c->out, (size_t)w);
        total += w;
    }
    return total;
}

/* Sends what the socket takes now and queues the rest (copied). Returns -1
 * once the socket is known dead. */
static int out_write(conn_t *c, const struct iovec *iov, int n) {
    if (c->write_error || c->dead) return -1;
    size_t total = 0, done = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (out_pending(c) == 0) {
        struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
        ssize_t w = c->ioc ? io_writev(c, iov, n) : sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                c->write_error = 1;
                return -1;
            }
            w = 0;
        }
        done = (size_t)w;
    }
    if (done == total) return 0;
    if (c->out == NULL && (c->out = evbuffer_new()) == NULL) {
        c->write_error = 1;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t l = iov[i].iov_len;
        if (done >= l) {
            done -= l;
            continue;
        }
        if (evbuffer_add(c->out, (const char *)iov[i].iov_base + done, l - done) < 0) {
            c->write_error = 1;
            return -1;
        }
        done = 0;
    }
    if (!c->wev_on) {
        event_add(&c->wev, NULL);
        c->wev_on = 1;
        timer_update(c, 0);
    }
    return 0;
}

static int out_write1(conn_t *c, const void *p, size_t n) {
    struct iovec v = {(void *)p, n};
    return out_write(c, &v, 1);
}

/* Writes queued output; returns bytes written, or -1 when the socket died. */
static ssize_t out_flush(conn_t *c) {
    if (c->ioc) return io_flush(c);
    ssize_t total = 0;
    while (out_pending(c) > 0) {
        struct evbuffer_iovec v[MAX_IOV];
        int nv = evbuffer_peek(c->out, -1, NULL, v, MAX_IOV);
        if (nv > MAX_IOV) nv = MAX_IOV;
        size_t want = 0;
        for (int i = 0; i < nv; i++)
            want += v[i].iov_len;
        /* evbuffer_iovec is documented to share struct iovec's layout. */
        struct msghdr m = {.msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)nv};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
            c->write_error = 1;
            return -1;
        }
        evbuffer_drain(c->out, (size_t)w);
        total += w;
        if ((size_t)w < want) break;
    }
    return total;
}

/* Write failures inside stream_start/stream_write are reported on the next
 * loop iteration so that those calls never run on_finish under the caller. */
static void fail_later(conn_t *c) {
    c->write_error = 1;
    if (!c->dead) event_active(&c->kick, EV_TIMEOUT, 1);
}

/* ---------- response heads ---------- */

const char *tg_http_reason(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 529:
        return "Site Overloaded";
    default:
        return status < 200   ? "Informational"
               : status < 300 ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

static const char *server_date(tg_http_server_t *s) {
    struct timeval tv;
    event_base_gettimeofday_cached(s->base, &tv);
    if (tv.tv_sec != s->date_sec || s->date_len == 0) {
        struct tm tm;
        s->date_sec = tv.tv_sec;
        gmtime_r(&s->date_sec, &tm);
        s->date_len = strftime(s->date, sizeof(s->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    }
    return s->date;
}

static char *put(char *p, const char *s, size_t n) {
    memcpy(p, s, n);
    return p + n;
}

static char *put_u(char *p, uint64_t v) {
    char tmp[24];
    int i = 0;
    do
        tmp[i++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (i > 0)
        *p++ = tmp[--i];
    return p;
}

#define PUTS(p, lit) put((p), (lit), sizeof(lit) - 1)

enum { F_LENGTH, F_CHUNKED_OUT, F_NONE };

static int body_allowed(const conn_t *c, int status) {
    return !c->is_head && status >= 200 && status != 204 && status != 304;
}

/* Upper bound of the head's size. */
static size_t head_size(const char *const *hdrs, size_t n, size_t *lens) {
    size_t sz = 256;
    for (size_t i = 0; i < n; i++)
        sz += (lens[i] = strlen(hdrs[i])) + 2;
    return sz;
}

static size_t head_build(conn_t *c, char *buf, int status, const char *const *hdrs, const size_t *lens,
                         size_t n, int framing, size_t len) {
    char *p = PUTS(buf, "HTTP/1.1 ");
    if (status < 100 || status > 999) status = 500;
    p = put_u(p, (uint64_t)status);
    *p++ = ' ';
    const char *reason = tg_http_reason(status);
    p = put(p, reason, strlen(reason));
    p = PUTS(p, "\r\n");
    server_date(c->s);
    p = put(p, c->s->date, c->s->date_len);
    for (size_t i = 0; i < n; i++) {
        /* A value may carry a name the client chose (a model a pattern
         * alias let through): a CR or LF in it would start a header of the
         * client's own, so it becomes a space. */
        char *line = p;
        p = put(p, hdrs[i], lens[i]);
        for (char *q = line; (q = memchr(q, '\r', (size_t)(p - q))) != NULL;)
            *q = ' ';
        for (char *q = line; (q = memchr(q, '\n', (size_t)(p - q))) != NULL;)
            *q = ' ';
        p = PUTS(p, "\r\n");
    }
    if (framing == F_LENGTH && status >= 200 && status != 204 && status != 304) {
        p = PUTS(p, "Content-Length: ");
        p = put_u(p, len);
        p = PUTS(p, "\r\n");
    } else if (framing == F_CHUNKED_OUT) {
        p = PUTS(p, "Transfer-Encoding: chunked\r\n");
    }
    if (!c->keepalive)
        p = PUTS(p, "Connection: close\r\n");
    else if (c->http10)
        p = PUTS(p, "Connection: keep-alive\r\n");
    p = PUTS(p, "\r\n");
    return (size_t)(p - buf);
}

/* Head and body in one sendmsg when the socket takes them. */
static int send_head(conn_t *c, int status, const char *const *hdrs, size_t n, int framing, const char *body,
                     size_t len) {
    size_t lens_stack[32], *lens = lens_stack;
    char stack[HEAD_STACK], *head = stack;
    if (n > 32 && (lens = malloc(n * sizeof(*lens))) == NULL) return -1;
    size_t need = head_size(hdrs, n, lens);
    if (need > sizeof(stack) && (head = malloc(need)) == NULL) {
        if (lens != lens_stack) free(lens);
        return -1;
    }
    size_t hl = head_build(c, head, status, hdrs, lens, n, framing, len);
    struct iovec iov[2] = {{head, hl}, {(void *)body, len}};
    int rc = out_write(c, iov, body && len > 0 && body_allowed(c, status) ? 2 : 1);
    if (head != stack) free(head);
    if (lens != lens_stack) free(lens);
    return rc;
}

/* Decides, as the response starts, whether the connection survives it: a
 * request body that will not be read closes the connection. */
static void resp_prepare(conn_t *c) {
    if (c->s->stopping) c->keepalive = 0;
    if (c->has_body && (c->phase == P_HEAD || c->phase == P_BODY)) {
        c->keepalive = 0;
        c->phase = P_SKIP;
    }
}

static void resp_complete(conn_t *c) {
    c->resp = R_DONE;
    req_finish(c, 0);
    if (c->dead) return;
    if (!c->keepalive || c->s->stopping) {
        close_after_output(c);
        return;
    }
    if (c->phase == P_DONE) {
        c->phase = P_IDLE;
        /* The next pipelined request is parsed from the loop, not inside the
         * handler's respond call. */
        if (c->rpos < c->rlen && !c->in_process) event_active(&c->kick, EV_TIMEOUT, 1);
    }
    if (!c->in_process) timer_update(c, 0);
}

/* The path of the request an error answers, as far as it is known: once
 * url_split succeeded, the parsed path; before, while the request is still
 * in the read buffer (from offset 0), an origin-form target up to its query. */
static const char *error_path(const conn_t *c, size_t *len) {
    const char *u = NULL;
    *len = 0;
    if (c->path_len) {
        *len = c->path_len;
        return c->path;
    }
    if (c->phase == P_HEAD && c->rbuf && (size_t)c->url_off + c->url_len <= c->rlen) u = c->rbuf + c->url_off;
    if (u == NULL || c->url_len == 0 || u[0] != '/') return "";
    while (*len < c->url_len && u[*len] != '?' && u[*len] != '#')
        (*len)++;
    return u;
}

/* An answer of the server's own (400, 408, 413, 431); closes afterwards.
 * A request the handler already saw is finished with aborted = 1. The
 * owner's error_body shapes it for the API at the request's path. */
static void server_error(conn_t *c, int status, const char *code, const char *msg) {
    if (c->resp != R_NONE) {
        conn_fail(c);
        return;
    }
    static const char *const hdr[] = {"Content-Type: application/json"};
    char body[512];
    size_t pl;
    const char *path = error_path(c, &pl);
    size_t bl = c->s->error_body ? c->s->error_body(path, pl, status, code, msg, body, sizeof(body)) : 0;
    if (bl == 0 || bl > sizeof(body)) {
        int n = snprintf(
            body, sizeof(body),
            "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"code\":\"%s\"}}", msg, code);
        bl = n < 0 || (size_t)n >= sizeof(body) ? 0 : (size_t)n;
    }
    c->keepalive = 0;
    c->phase = P_SKIP;
    c->resp = R_DONE;
    if (send_head(c, status, hdr, 1, F_LENGTH, body, (size_t)bl) < 0) {
        conn_fail(c);
        return;
    }
    req_finish(c, 1);
    if (!c->dead) close_after_output(c);
}

/* ---------- closing ---------- */

/* Half-closes and drains what the client still sends for a while, so that
 * unread request bytes do not turn our close into an RST that destroys the
 * response (a 413 sent before the body arrived). */
static void finish_close(conn_t *c) {
    int unread =
        c->phase == P_SKIP || c->phase == P_HEAD || (c->phase == P_BODY && c->has_body) || c->rpos < c->rlen;
    if (!unread || c->peer_eof || c->write_error) {
        conn_close(c);
        return;
    }
    /* A transport says goodbye first; what the client still sends is then
     * drained as raw bytes. */
    if (c->ioc) c->io->close(c->ioc, !c->hs);
    c->ioc = NULL;
    shutdown(c->fd, SHUT_WR);
    c->phase = P_LINGER;
    read_start(c);
    timer_update(c, 0);
}

static void close_after_output(conn_t *c) {
    c->closing = 1;
    c->keepalive = 0;
    if (out_pending(c) == 0)
        finish_close(c);
    else
        timer_update(c, 0);
}

/* ---------- http_parser callbacks: record offsets, pause at events ---------- */

static int piece(conn_t *c, const char *at, size_t len, uint32_t *off, uint32_t *plen, int cont) {
    size_t o = (size_t)(at - c->rbuf);
    if (o + len > c->s->lim.max_header_bytes) {
        c->pause_ev = PE_HDR_SIZE;
        return 1;
    }
    if (!cont) {
        *off = (uint32_t)o;
        *plen = (uint32_t)len;
        return 0;
    }
    /* A value continued elsewhere than right after its previous piece is
     * obsolete line folding; refuse it rather than pass CRLF on. */
    if (o != (size_t)*off + *plen) {
        c->pause_ev = PE_FOLD;
        return 1;
    }
    *plen += (uint32_t)len;
    return 0;
}

static int on_message_begin(http_parser *p) {
    conn_t *c = p->data;
    c->msg_begun = 1;
    c->nh = 0;
    c->url_len = 0;
    c->last_cb = CB_NONE;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    int cont = c->last_cb == CB_URL;
    c->last_cb = CB_URL;
    return piece(c, at, len, &c->url_off, &c->url_len, cont);
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    if (c->phase != P_HEAD) return 0; /* trailers of a chunked body: not kept */
    int cont = c->last_cb == CB_FIELD;
    if (!cont) {
        if (c->nh >= c->s->lim.max_headers) {
            c->pause_ev = PE_HDR_COUNT;
            return 1;
        }
        hslot_t *h = &c->slots[c->nh++];
        h->vo = h->vl = 0;
    }
    c->last_cb = CB_FIELD;
    hslot_t *h = &c->slots[c->nh - 1];
    return piece(c, at, len, &h->no, &h->nl, cont);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    if (c->phase != P_HEAD) return 0;
    if (c->nh == 0) return 0;
    int cont = c->last_cb == CB_VALUE;
    c->last_cb = CB_VALUE;
    hslot_t *h = &c->slots[c->nh - 1];
    return piece(c, at, len, &h->vo, &h->vl, cont);
}

static int on_headers_complete(http_parser *p) {
    conn_t *c = p->data;
    c->pause_ev = PE_HEADERS;
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    size_t max = c->s->lim.max_body_bytes;
    if (c->body_len + len > max) {
        c->pause_ev = PE_BODY_SIZE;
        return 1;
    }
    if (c->body_len + len + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 16 * 1024;
        while (cap < c->body_len + len + 1)
            cap *= 2;
        size_t lim = c->content_length >= 0 ? (size_t)c->content_length + 1 : max + 1;
        if (cap > lim) cap = lim;
        char *nb = realloc(c->body, cap);
        if (nb == NULL) {
            c->pause_ev = PE_NOMEM;
            return 1;
        }
        c->body = nb;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p) {
    conn_t *c = p->data;
    c->pause_ev = PE_MESSAGE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---------- request phases ---------- */

static void start_request(conn_t *c) {
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    /* The first request's head counts from the accept (the handshake
     * included); a later one from its first byte. */
    if (c->nreq > 0) c->head_t0 = mono_us();
    c->phase = P_HEAD;
    c->ck = CK_OFF;
    c->msg_begun = 0;
    c->nh = 0;
    c->url_len = 0;
    c->path_len = 0; /* set again by url_split: error_path() reads it */
    c->last_cb = CB_NONE;
    c->handled = c->has_body = c->expect_continue = c->is_head = c->chunked_out = 0;
    c->resp = R_NONE;
    c->udata = NULL;
    c->body_len = 0;
    if (c->body_cap > BODY_SHRINK) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    timer_update(c, 0);
}

/* Copies the header block out of the read buffer so that the handler's
 * slices survive the buffer being reused, grown or compacted. */
static int headers_store(conn_t *c, size_t hend) {
    size_t arr = c->nh * sizeof(tg_http_header_t);
    size_t need = arr + hend + 1;
    if (c->hcap < need) {
        size_t cap = need < 2048 ? 2048 : need;
        char *n = realloc(c->hstore, cap);
        if (n == NULL) return -1;
        c->hstore = n;
        c->hcap = cap;
    }
    char *blk = c->hstore + arr;
    memcpy(blk, c->rbuf, hend);
    blk[hend] = '\0';
    c->hdrs = (tg_http_header_t *)c->hstore;
    for (unsigned i = 0; i < c->nh; i++) {
        const hslot_t *h = &c->slots[i];
        c->hdrs[i] = (tg_http_header_t){blk + h->no, h->nl, blk + h->vo, h->vl};
    }
    c->path = blk + c->url_off; /* the URL until url_split() cuts it */
    return 0;
}

static int url_split(conn_t *c) {
    const char *u = c->path;
    size_t n = c->url_len;
    c->query = NULL;
    c->query_len = 0;
    if (n == 0) return -1;
    if (u[0] == '/') {
        const char *q = memchr(u, '?', n);
        const char *f = memchr(u, '#', n);
        size_t end = f ? (size_t)(f - u) : n;
        c->path_len = q && q < u + end ? (size_t)(q - u) : end;
        if (q && q < u + end) {
            c->query = q + 1;
            c->query_len = end - c->path_len - 1;
        }
        return 0;
    }
    if (n == 1 && u[0] == '*') {
        c->path_len = 1;
        return 0;
    }
    struct http_parser_url pu;
    http_parser_url_init(&pu);
    if (http_parser_parse_url(u, n, 0, &pu) != 0 || !(pu.field_set & (1 << UF_HOST))) return -1;
    if (pu.field_set & (1 << UF_PATH)) {
        c->path = u + pu.field_data[UF_PATH].off;
        c->path_len = pu.field_data[UF_PATH].len;
    } else {
        c->path = "/";
        c->path_len = 1;
    }
    if (pu.field_set & (1 << UF_QUERY)) {
        c->query = u + pu.field_data[UF_QUERY].off;
        c->query_len = pu.field_data[UF_QUERY].len;
    }
    return 0;
}

static int header_is(const tg_http_header_t *h, const char *name, const char *value) {
    size_t nl = strlen(name), vl = strlen(value);
    return h->name_len == nl && strncasecmp(h->name, name, nl) == 0 && h->value_len == vl &&
           strncasecmp(h->value, value, vl) == 0;
}

/* RFC 9110 tchar. Debian's http_parser is built non-strict and lets a
 * space into a header name ("Transfer-Encoding : chunked"), which an
 * upstream could read differently: refuse it. */
static int is_token(const char *s, size_t n) {
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr(extra, ch))))
            return 0;
    }
    return 1;
}

/* Whether every line of the head [0, n) ends in CRLF. Debian's
 * http_parser is built non-strict: it takes a bare LF as a line end, and
 * any byte after a CR as its LF, so "X: a\rY: b" and "\r\rGET" would be
 * read one way here and perhaps another by a proxy in front; refuse them.
 * Empty lines before the request line are skipped, as the parser does. */
static int head_lines_ok(const char *b, size_t n) {
    size_t i = 0;
    while (i < n && (b[i] == '\r' || b[i] == '\n'))
        i++;
    if (n - i < 2 || b[n - 1] != '\n' || b[n - 2] != '\r') return 0;
    for (; i < n; i++) {
        if (b[i] == '\n' && b[i - 1] != '\r') return 0;
        if (b[i] == '\r' && (i + 1 == n || b[i + 1] != '\n')) return 0;
    }
    return 1;
}

/* Our own check of a chunked body's framing, fed the bytes the parser
 * consumed, in order: for the same non-strict build, any two bytes after
 * chunk data pass as its CRLF, and any byte after a CR as the LF of a size
 * or trailer line. Sizes and data are followed to know where the framing
 * is; the parser still decodes. 0, or -1 at the first byte out of place. */
static int chunk_check(conn_t *c, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        int hex = (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f');
        /* Extension and trailer text: visible bytes, space, tab. */
        int text = (ch >= 0x20 && ch != 0x7f) || ch == '\t';
        switch (c->ck) {
        case CK_START:
            if (ch != '\n') return -1;
            c->ck = CK_SIZE0;
            break;
        case CK_SIZE0:
        case CK_SIZE:
            if (hex) {
                int v = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
                /* The parser refuses an overflowing size itself. */
                if (c->ck_left < ((uint64_t)1 << 59)) c->ck_left = c->ck_left * 16 + (uint64_t)v;
                c->ck = CK_SIZE;
            } else if (c->ck == CK_SIZE && (ch == ';' || ch == ' ' || ch == '\t')) {
                c->ck = CK_EXT;
            } else if (c->ck == CK_SIZE && ch == '\r') {
                c->ck = CK_SIZE_LF;
            } else {
                return -1;
            }
            break;
        case CK_EXT:
            if (ch == '\r')
                c->ck = CK_SIZE_LF;
            else if (!text)
                return -1;
            break;
        case CK_SIZE_LF:
            if (ch != '\n') return -1;
            c->ck = c->ck_left ? CK_DATA : CK_TRAILER;
            break;
        case CK_DATA: {
            size_t k = n - i < c->ck_left ? n - i : (size_t)c->ck_left;
            c->ck_left -= k;
            i += k - 1;
            if (c->ck_left == 0) c->ck = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
            if (ch != '\r') return -1;
            c->ck = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n') return -1;
            c->ck = CK_SIZE0;
            break;
        case CK_TRAILER:
            if (ch == '\r')
                c->ck = CK_END_LF;
            else if (ch == '\n' || !text)
                return -1;
            else
                c->ck = CK_TLINE;
            break;
        case CK_TLINE:
            if (ch == '\r')
                c->ck = CK_TLINE_LF;
            else if (!text)
                return -1;
            break;
        case CK_TLINE_LF:
            if (ch != '\n') return -1;
            c->ck = CK_TRAILER;
            break;
        case CK_END_LF:
            if (ch != '\n') return -1;
            c->ck = CK_DONE;
            break;
        default: /* nothing after the end: the parser pauses there */
            return -1;
        }
    }
    return 0;
}

/* Stores and checks a request whose headers are complete; 0 when it may go
 * to the handler, -1 when the server answered (431, 400, 413) or failed. */
static int request_accept(conn_t *c) {
    const tg_http_limits_t *L = &c->s->lim;
    http_parser *p = &c->parser;
    /* Paused on the LF that ends the headers: the block is [0, rpos]. */
    size_t hend = c->rpos + 1 <= c->rlen ? c->rpos + 1 : c->rlen;
    if (hend > L->max_header_bytes) {
        server_error(c, 431, "request_header_fields_too_large", "request headers are too large");
        return -1;
    }
    if (!head_lines_ok(c->rbuf, hend)) {
        server_error(c, 400, "bad_request", "malformed HTTP request: every line must end in CRLF");
        return -1;
    }
    if (headers_store(c, hend) < 0) {
        conn_fail(c);
        return -1;
    }
    c->is_head = p->method == HTTP_HEAD;
    c->http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
    if (p->method == HTTP_CONNECT) {
        server_error(c, 400, "unsupported_method", "CONNECT is not supported");
        return -1;
    }
    for (unsigned i = 0; i < c->nh; i++)
        if (!is_token(c->hdrs[i].name, c->hdrs[i].name_len)) {
            server_error(c, 400, "invalid_header", "malformed HTTP request: invalid header name");
            return -1;
        }
    if (url_split(c) < 0) {
        server_error(c, 400, "invalid_url", "the request target is not a valid URL");
        return -1;
    }
    int chunked = (p->flags & F_CHUNKED) != 0;
    c->content_length = !chunked && (p->flags & F_CONTENTLENGTH) ? (int64_t)p->content_length : -1;
    c->has_body = chunked || c->content_length > 0;
    if (c->content_length > 0 && (uint64_t)c->content_length > L->max_body_bytes) {
        server_error(c, 413, "request_too_large", "the request body is larger than this server accepts");
        return -1;
    }
    /* Room for a declared body up front, but not megabytes before a byte
     * of it arrived: larger bodies grow as they come (on_body). */
    size_t want = c->content_length > 0 ? (size_t)c->content_length + 1 : 0;
    if (want > BODY_SHRINK) want = BODY_SHRINK;
    if (c->body_cap < want) {
        char *nb = realloc(c->body, want);
        if (nb == NULL) {
            conn_fail(c);
            return -1;
        }
        c->body = nb;
        c->body_cap = want;
    }
    return 0;
}

static void headers_done(conn_t *c) {
    if (request_accept(c) < 0) return;
    http_parser *p = &c->parser;
    c->keepalive = http_should_keep_alive(p) && !p->upgrade && !c->s->stopping;
    for (unsigned i = 0; i < c->nh; i++)
        if (header_is(&c->hdrs[i], "Expect", "100-continue")) c->expect_continue = 1;
    c->req_active = 1;
    c->phase = P_BODY;
    c->body_t0 = mono_us();
    if (c->parser.flags & F_CHUNKED) {
        c->ck = CK_START;
        c->ck_left = 0;
    }
    int rc = c->s->h.on_headers ? c->s->h.on_headers(c, c->s->ud) : TG_HTTP_CONTINUE;
    if (c->dead) return;
    if (rc == TG_HTTP_HANDLED || c->resp != R_NONE || !c->req_active) {
        /* The handler answers without the body: a body is not read. */
        c->handled = 1;
        if (c->has_body && c->phase == P_BODY) {
            c->keepalive = 0;
            c->phase = P_SKIP;
        }
        return;
    }
    if (c->has_body && c->expect_continue && !c->http10) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (out_write1(c, cont, sizeof(cont) - 1) < 0) conn_fail(c);
    }
}

static void message_done(conn_t *c) {
    if (c->ck != CK_OFF && c->ck != CK_DONE) {
        /* The parser saw an end our own reading of the framing did not. */
        server_error(c, 400, "bad_request", "malformed chunked request body");
        return;
    }
    c->ck = CK_OFF;
    c->phase = P_DONE;
    if (c->body) c->body[c->body_len] = '\0';
    if (!c->req_active) {
        c->phase = P_IDLE; /* answered from on_headers already */
        return;
    }
    if (c->handled) return;
    timer_update(c, 0);
    if (c->s->h.on_request) c->s->h.on_request(c, c->s->ud);
}

static void parse_failed(conn_t *c, enum http_errno e) {
    int why = c->pause_ev;
    if (e == HPE_HEADER_OVERFLOW || why == PE_HDR_SIZE)
        server_error(c, 431, "request_header_fields_too_large", "request headers are too large");
    else if (why == PE_HDR_COUNT)
        server_error(c, 431, "request_header_fields_too_large", "too many request headers");
    else if (why == PE_BODY_SIZE)
        server_error(c, 413, "request_too_large", "the request body is larger than this server accepts");
    else if (why == PE_NOMEM)
        conn_fail(c);
    else if (e == HPE_INVALID_METHOD)
        server_error(c, 400, "invalid_method", "malformed HTTP request: unknown method");
    else if (e == HPE_INVALID_URL)
        server_error(c, 400, "invalid_url", "malformed HTTP request: invalid request target");
    else
        server_error(c, 400, "bad_request", "malformed HTTP request");
}

static int can_feed(const conn_t *c) {
    return !c->dead && !c->closing && (c->phase == P_IDLE || c->phase == P_HEAD || c->phase == P_BODY);
}

/* Between requests, and while a response is produced after the whole
 * request was read, the read buffer holds nothing: give it back, as nginx
 * does, so that idle keep-alive connections and long streams cost no read
 * buffer (10,000 of either would otherwise pin 10,000 of them). */
static void rbuf_release(conn_t *c) {
    if (c->rbuf == NULL || c->rpos != c->rlen || (c->phase != P_IDLE && c->phase != P_DONE)) return;
    free(c->rbuf);
    free(c->slots);
    c->rbuf = NULL;
    c->slots = NULL;
    c->rcap = c->rlen = c->rpos = 0;
}

/* Feeds buffered bytes to the parser and runs the handler at each event.
 * Iterative, so a burst of pipelined requests answered synchronously does
 * not recurse. */
static void conn_process(conn_t *c) {
    if (c->in_process || c->dead) return;
    c->in_process = 1;
    c->busy++;
    while (can_feed(c) && c->rpos < c->rlen) {
        if (c->phase == P_IDLE) {
            /* A client that pipelines but does not read waits here. */
            if (out_pending(c) > c->s->lim.high_water) break;
            start_request(c);
        }
        c->pause_ev = 0;
        size_t from = c->rpos;
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rpos += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if ((e == HPE_OK || e == HPE_PAUSED) && c->phase == P_BODY && c->ck != CK_OFF &&
            chunk_check(c, c->rbuf + from, n) < 0) {
            server_error(c, 400, "bad_request",
                         "malformed chunked request body: chunk framing must end in CRLF");
            break;
        }
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (c->pause_ev == PE_HEADERS)
                headers_done(c);
            else
                message_done(c);
            continue;
        }
        if (e != HPE_OK) {
            parse_failed(c, e);
            break;
        }
        if (c->phase == P_HEAD && !c->msg_begun) {
            c->phase = P_IDLE; /* stray CRLF between requests */
            c->rpos = c->rlen = 0;
        } else if (c->phase == P_HEAD && c->rpos > c->s->lim.max_header_bytes) {
            server_error(c, 431, "request_header_fields_too_large", "request headers are too large");
        } else if (c->phase == P_BODY) {
            c->rpos = c->rlen = 0; /* body bytes are copied out; the buffer is free again */
        }
    }
    c->in_process = 0;
    if (!c->dead) {
        rbuf_release(c);
        if (!c->read_on && c->rlen - c->rpos < PIPELINE_CAP / 2) read_start(c);
        timer_update(c, 0);
    }
    conn_release(c);
}

/* ---------- socket events ---------- */

/* Room for the next recv; 0 when the connection must stop reading. */
static int rbuf_room(conn_t *c) {
    if (c->rbuf == NULL) {
        /* Allocated only when bytes are waiting: idle connections hold none. */
        c->rbuf = malloc(RBUF_SIZE);
        c->slots = malloc(c->s->lim.max_headers * sizeof(hslot_t));
        if (c->rbuf == NULL || c->slots == NULL) {
            free(c->rbuf);
            free(c->slots);
            c->rbuf = NULL;
            c->slots = NULL;
            return 0;
        }
        c->rcap = RBUF_SIZE;
        c->rlen = c->rpos = 0;
    }
    if (c->rlen < c->rcap) return 1;
    if (c->phase != P_HEAD && c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
        if (c->rlen < c->rcap) return 1;
    }
    size_t limit = c->phase == P_HEAD ? c->s->lim.max_header_bytes + RBUF_SIZE : PIPELINE_CAP;
    if (c->rcap >= limit) return 0;
    size_t cap = c->rcap * 2 > limit ? limit : c->rcap * 2;
    char *n = realloc(c->rbuf, cap);
    if (n == NULL) return 0;
    c->rbuf = n;
    c->rcap = cap;
    return 1;
}

/* The client closed its side (or reset). A running request is aborted: a
 * client that half-closes after sending is treated as gone, as nginx does. */
static void conn_eof(conn_t *c) {
    c->peer_eof = 1;
    read_stop(c);
    if (c->req_active || out_pending(c) == 0) {
        conn_fail(c);
        return;
    }
    close_after_output(c);
}

/* Runs the transport's handshake as far as the socket allows; the header
 * timer, armed at accept, bounds the whole of it. */
static void io_handshake(conn_t *c) {
    int r = c->io->handshake(c->ioc);
    if (r == TG_HTTP_IO_WANT_WRITE) {
        event_add(&c->wev, NULL);
        return;
    }
    if (!c->wev_on) event_del(&c->wev);
    if (r == TG_HTTP_IO_WANT_READ) return;
    if (r != 0) {
        conn_close(c); /* no request has started: nothing to answer */
        return;
    }
    c->hs = 0;
    /* The first request may have come with the handshake's last flight. */
    if (c->read_on) event_active(&c->rev, EV_READ, 1);
}

/* A transport read, as recv() would answer. */
static ssize_t io_read(conn_t *c, void *buf, size_t len) {
    long n = c->io->read(c->ioc, buf, len);
    if (n >= 0) return n;
    errno = EAGAIN;
    if (n == TG_HTTP_IO_WANT_WRITE) {
        c->rd_wants_w = 1;
        event_add(&c->wev, NULL);
    } else if (n != TG_HTTP_IO_WANT_READ) {
        errno = ECONNRESET;
    }
    return -1;
}

static void on_read(evutil_socket_t fd, short what, void *arg) {
    conn_t *c = arg;
    c->busy++;
    if (c->phase == P_LINGER) {
        char sink[16 * 1024];
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) conn_close(c);
    } else if (c->hs) {
        io_handshake(c);
    } else if (!rbuf_room(c)) {
        read_stop(c);
    } else {
        size_t room = c->rcap - c->rlen;
        ssize_t n = c->ioc ? io_read(c, c->rbuf + c->rlen, room) : recv(fd, c->rbuf + c->rlen, room, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            conn_process(c);
            /* Bytes a transport holds beyond what fitted raise no event. */
            if (c->ioc && c->read_on && !c->dead && c->io->pending(c->ioc)) event_active(&c->rev, EV_READ, 1);
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            conn_eof(c);
        }
    }
    conn_release(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg) {
    conn_t *c = arg;
    c->busy++;
    if (c->hs) {
        io_handshake(c);
        conn_release(c);
        return;
    }
    if (c->rd_wants_w) {
        /* The read that waited for this runs again from the loop. */
        c->rd_wants_w = 0;
        if (c->read_on) event_active(&c->rev, EV_READ, 1);
    }
    ssize_t w = out_flush(c);
    if (w < 0) {
        conn_fail(c);
    } else {
        size_t left = out_pending(c);
        if (left == 0) {
            event_del(&c->wev);
            c->wev_on = 0;
        }
        if (c->closing) {
            if (left == 0)
                finish_close(c);
            else if (w > 0)
                timer_update(c, 1);
        } else {
            timer_update(c, w > 0);
            if (c->want_drain && c->req_active && left <= c->s->lim.low_water) {
                c->want_drain = 0;
                if (c->s->h.on_drain) c->s->h.on_drain(c, c->s->ud);
            }
            if (!c->dead && c->phase == P_IDLE && c->rpos < c->rlen && out_pending(c) <= c->s->lim.low_water)
                conn_process(c);
        }
    }
    conn_release(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    conn_t *c = arg;
    int kind = c->tmr_kind;
    c->busy++;
    c->tmr_kind = T_NONE;
    int slow = 0;
    if (kind == T_BODY && c->req_active && c->resp == R_NONE && body_left_us(c, mono_us(), &slow) > 0)
        timer_update(c, 1); /* bytes came since the timer was set: the body is not late yet */
    else if (kind == T_BODY && c->req_active && c->resp == R_NONE)
        server_error(c, 408, "request_timeout",
                     slow ? "the request body arrived too slowly"
                          : "the request body did not arrive in time");
    else if (kind == T_LINGER || kind == T_HEADER || kind == T_KEEPALIVE)
        conn_close(c); /* no request is running in these phases */
    else
        conn_fail(c);
    conn_release(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg) {
    conn_t *c = arg;
    c->busy++;
    if (c->write_error)
        conn_fail(c);
    else
        conn_process(c);
    conn_release(c);
}

/* Adopts connected socket fd, over transport t (NULL: plain). */
static void conn_start(tg_http_server_t *s, int fd, const struct sockaddr_storage *sa,
                       const tg_http_transport_t *t) {
    conn_t *c = calloc(1, sizeof(*c));
    void *ioc = c && t ? t->open(t->ud, fd) : NULL;
    if (c == NULL || (t && ioc == NULL)) {
        free(c);
        close(fd);
        return;
    }
    c->io = t;
    c->ioc = ioc;
    c->hs = t != NULL;
    c->s = s;
    c->fd = fd;
    c->sa = *sa;
    c->keepalive = 1;
    c->content_length = -1;
    c->head_t0 = mono_us();
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    event_assign(&c->rev, s->base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&c->wev, s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    evtimer_assign(&c->tmr, s->base, on_timer, c);
    event_assign(&c->kick, s->base, -1, 0, on_kick, c);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    read_start(c);
    timer_update(c, 0);
}

/* A plain connection on a socket connected elsewhere: tests/fuzz/fuzz_http1.c
 * includes this file and feeds a socketpair through it. */
__attribute__((unused)) static void conn_new(tg_http_server_t *s, int fd, const struct sockaddr_storage *sa) {
    conn_start(s, fd, sa, NULL);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg) {
    lsn_t *l = arg;
    tg_http_server_t *s = l->s;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        int fd = accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered accept would spin; back off instead. */
                tg_warn("http: accept: %s; pausing accepts for %d ms", strerror(errno), ACCEPT_RETRY_MS);
                for (unsigned k = 0; k < s->nlsn; k++)
                    event_del(&s->lsn[k]->ev);
                struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};
                evtimer_add(&s->retry_ev, &tv);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_start(s, fd, &sa, l->t);
    }
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg) {
    tg_http_server_t *s = arg;
    for (unsigned k = 0; k < s->nlsn && !s->stopping; k++)
        event_add(&s->lsn[k]->ev, NULL);
}

/* ---------- server ---------- */

void tg_http_limits_default(tg_http_limits_t *l) {
    l->max_header_bytes = 16 * 1024;
    l->max_headers = 100;
    l->max_body_bytes = 4 * 1024 * 1024;
    l->header_timeout_ms = 10000;
    l->body_timeout_ms = 30000;
    l->keepalive_timeout_ms = 60000;
    l->send_timeout_ms = 60000;
    l->high_water = 256 * 1024;
    l->low_water = 64 * 1024;
    l->min_body_rate = MIN_BODY_RATE;
    l->rate_grace_ms = RATE_GRACE_MS;
}

tg_http_server_t *tg_http_server_new(struct event_base *base, int fd, const tg_http_limits_t *lim,
                                     const tg_http_handler_t *h, void *ud) {
    tg_http_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    tg_http_limits_t d;
    tg_http_limits_default(&d);
    s->lim = lim ? *lim : d;
    /* A zero limit means "the default", never "nothing allowed". */
    if (!s->lim.max_header_bytes) s->lim.max_header_bytes = d.max_header_bytes;
    if (!s->lim.max_headers) s->lim.max_headers = d.max_headers;
    if (!s->lim.max_body_bytes) s->lim.max_body_bytes = d.max_body_bytes;
    if (!s->lim.header_timeout_ms) s->lim.header_timeout_ms = d.header_timeout_ms;
    if (!s->lim.body_timeout_ms) s->lim.body_timeout_ms = d.body_timeout_ms;
    if (!s->lim.keepalive_timeout_ms) s->lim.keepalive_timeout_ms = d.keepalive_timeout_ms;
    if (!s->lim.send_timeout_ms) s->lim.send_timeout_ms = d.send_timeout_ms;
    if (!s->lim.high_water) s->lim.high_water = d.high_water;
    if (!s->lim.rate_grace_ms) s->lim.rate_grace_ms = d.rate_grace_ms;
    if (s->lim.low_water > s->lim.high_water) s->lim.low_water = s->lim.high_water;
    s->base = base;
    s->h = *h;
    s->ud = ud;
    evtimer_assign(&s->retry_ev, base, on_accept_retry, s);
    if (fd >= 0 && tg_http_server_add_listener(s, fd, NULL) < 0) {
        free(s->lsn);
        free(s);
        return NULL;
    }
    return s;
}

int tg_http_server_add_listener(tg_http_server_t *s, int fd, const tg_http_transport_t *t) {
    lsn_t *l = calloc(1, sizeof(*l));
    lsn_t **v = l ? realloc(s->lsn, (s->nlsn + 1) * sizeof(*v)) : NULL;
    if (v == NULL) {
        free(l);
        return -1;
    }
    s->lsn = v;
    l->s = s;
    l->t = t;
    event_assign(&l->ev, s->base, fd, EV_READ | EV_PERSIST, on_accept, l);
    if (event_add(&l->ev, NULL) < 0) {
        free(l);
        return -1;
    }
    s->lsn[s->nlsn++] = l;
    return 0;
}

static void listeners_free(tg_http_server_t *s) {
    for (unsigned k = 0; k < s->nlsn; k++) {
        event_del(&s->lsn[k]->ev);
        free(s->lsn[k]);
    }
    free(s->lsn);
    s->lsn = NULL;
    s->nlsn = 0;
}

void tg_http_server_stop_accepting(tg_http_server_t *s) {
    if (s->stopping) return;
    s->stopping = 1;
    for (unsigned k = 0; k < s->nlsn; k++)
        event_del(&s->lsn[k]->ev);
    event_del(&s->retry_ev);
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        c->keepalive = 0;
        if (c->req_active || c->busy || c->closing || c->phase != P_IDLE || c->rpos < c->rlen) continue;
        c->busy++;
        close_after_output(c);
        conn_release(c);
    }
}

void tg_http_server_set_error_body(tg_http_server_t *s, tg_http_error_body_fn fn) {
    s->error_body = fn;
}

unsigned tg_http_server_connections(const tg_http_server_t *s) {
    return s->nconns;
}

void tg_http_server_free(tg_http_server_t *s) {
    if (s == NULL) return;
    for (unsigned k = 0; k < s->nlsn; k++)
        event_del(&s->lsn[k]->ev);
    event_del(&s->retry_ev);
    while (s->conns) {
        conn_t *c = s->conns;
        c->busy++;
        conn_fail(c);
        conn_release(c);
    }
    listeners_free(s);
    free(s);
}

int tg_http_listen(const char *host, int port, int backlog) {
    char h[64], ps[16];
    if (host == NULL || *host == '\0') host = "0.0.0.0";
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof(h)) {
        memcpy(h, host + 1, hl - 2);
        h[hl - 2] = '\0';
        host = h;
    }
    snprintf(ps, sizeof(ps), "%d", port);
    /* Numeric hosts only: a name lookup would block (this runs at start-up,
     * but the contract says addresses). */
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0 || res == NULL) {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, err = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, backlog > 0 ? backlog : 511) < 0) {
        err = errno;
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) errno = err;
    return fd;
}

/* ---------- request accessors ---------- */

const char *tg_http_method(const tg_http_req_t *r) {
    return http_method_str((enum http_method)r->parser.method);
}

const char *tg_http_path(const tg_http_req_t *r, size_t *len) {
    if (len) *len = r->path_len;
    return r->path;
}

const char *tg_http_query(const tg_http_req_t *r, size_t *len) {
    if (len) *len = r->query ? r->query_len : 0;
    return r->query;
}

const char *tg_http_header(const tg_http_req_t *r, const char *name, size_t *len) {
    size_t nl = strlen(name);
    for (unsigned i = 0; i < r->nh; i++) {
        const tg_http_header_t *h = &r->hdrs[i];
        if (h->name_len == nl && strncasecmp(h->name, name, nl) == 0) {
            if (len) *len = h->value_len;
            return h->value;
        }
    }
    if (len) *len = 0;
    return NULL;
}

size_t tg_http_header_count(const tg_http_req_t *r) {
    return r->nh;
}

const tg_http_header_t *tg_http_header_at(const tg_http_req_t *r, size_t i) {
    return i < r->nh ? &r->hdrs[i] : NULL;
}

char *tg_http_body(tg_http_req_t *r, size_t *len) {
    if (len) *len = r->body_len;
    if (r->body == NULL) {
        r->empty_body[0] = '\0';
        return r->empty_body;
    }
    return r->body;
}

int64_t tg_http_content_length(const tg_http_req_t *r) {
    return r->content_length;
}

const char *tg_http_peer(const tg_http_req_t *r) {
    conn_t *c = (conn_t *)r;
    if (c->peer[0] == '\0') {
        const void *a = c->sa.ss_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&c->sa)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&c->sa)->sin_addr;
        if (inet_ntop(c->sa.ss_family, a, c->peer, sizeof(c->peer)) == NULL) strcpy(c->peer, "-");
    }
    return c->peer;
}

void tg_http_set_data(tg_http_req_t *r, void *data) {
    r->udata = data;
}

void *tg_http_data(const tg_http_req_t *r) {
    return r->udata;
}

/* ---------- responses ---------- */

static int api_ok(const conn_t *c, int resp) {
    return !c->dead && c->req_active && c->resp == resp;
}

void tg_http_respond(tg_http_req_t *c, int status, const char *const *hdrs, size_t nhdrs, const char *body,
                     size_t len) {
    if (!api_ok(c, R_NONE)) return;
    c->busy++;
    resp_prepare(c);
    c->resp = R_DONE;
    if (send_head(c, status, hdrs, nhdrs, F_LENGTH, body, len) < 0)
        conn_fail(c);
    else
        resp_complete(c);
    conn_release(c);
}

void tg_http_stream_start(tg_http_req_t *c, int status, const char *const *hdrs, size_t nhdrs) {
    if (!api_ok(c, R_NONE)) return;
    c->busy++;
    resp_prepare(c);
    /* HTTP/1.0 has no chunked encoding: the close delimits the body. */
    if (c->http10) c->keepalive = 0;
    c->chunked_out = !c->http10;
    c->resp = R_STREAM;
    if (send_head(c, status, hdrs, nhdrs, c->chunked_out ? F_CHUNKED_OUT : F_NONE, NULL, 0) < 0)
        fail_later(c);
    conn_release(c);
}

int tg_http_stream_writev(tg_http_req_t *c, const struct iovec *iov, int n) {
    if (!api_ok(c, R_STREAM) || c->write_error) return 1;
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    if (len == 0 || c->is_head) return 0;
    c->busy++;
    char szl[24];
    int sl = c->chunked_out ? snprintf(szl, sizeof(szl), "%zx\r\n", len) : 0;
    int rc = 0;
    if (n <= MAX_IOV) {
        struct iovec v[MAX_IOV + 2];
        int k = 0;
        if (sl) v[k++] = (struct iovec){szl, (size_t)sl};
        for (int i = 0; i < n; i++)
            v[k++] = iov[i];
        if (sl) v[k++] = (struct iovec){"\r\n", 2};
        rc = out_write(c, v, k);
    } else {
        /* Rare: more pieces than one sendmsg takes; order is kept because
         * later writes queue behind earlier ones. */
        if (sl) rc = out_write1(c, szl, (size_t)sl);
        for (int i = 0; i < n && rc == 0; i += MAX_IOV)
            rc = out_write(c, iov + i, n - i < MAX_IOV ? n - i : MAX_IOV);
        if (sl && rc == 0) rc = out_write1(c, "\r\n", 2);
    }
    int ret = 0;
    if (rc < 0) {
        fail_later(c);
        ret = 1;
    } else if (out_pending(c) > c->s->lim.high_water) {
        c->want_drain = 1;
        ret = 1;
    }
    conn_release(c);
    return ret;
}

int tg_http_stream_write(tg_http_req_t *r, const char *data, size_t len) {
    struct iovec v = {(void *)data, len};
    return tg_http_stream_writev(r, &v, 1);
}

void tg_http_stream_end(tg_http_req_t *c) {
    if (!api_ok(c, R_STREAM)) return;
    c->busy++;
    if (c->write_error || (c->chunked_out && !c->is_head && out_write1(c, "0\r\n\r\n", 5) < 0))
        conn_fail(c);
    else
        resp_complete(c);
    conn_release(c);
}

size_t tg_http_pending(const tg_http_req_t *r) {
    return out_pending(r);
}

void tg_http_abort(tg_http_req_t *c) {
    if (c->dead || !c->req_active) return;
    c->busy++;
    conn_fail(c);
    conn_release(c);
}
