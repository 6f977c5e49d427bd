/* h2.c — the simulator's h2c listener: HTTP/2 in clear text with prior
 * knowledge (the client starts with the connection preface, no Upgrade),
 * so that a gateway with `http2: true` on an http:// provider multiplexes
 * its calls to the simulator on a few connections, as it would to a real
 * provider over TLS. libnghttp2 does the framing; each stream is one
 * request of the same life as an HTTP/1.1 one (sim_open, sim_headers,
 * sim_body, sim_drain, sim_close in sim/simulate.c), answered through the
 * sim_io_t below. Bytes enter from a bufferevent per connection into
 * nghttp2_session_mem_recv; what nghttp2 produces is written from one
 * deferred flush per connection (nghttp2 must not be re-entered from its
 * own callbacks, and one flush sends the events of many streams at once).
 * A stream's output waits in its own buffer, read by nghttp2 as the
 * client's flow-control window allows. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim/simulate_int.h"

#define H2_HIGH_WATER ((size_t)256 << 10) /* stream_write says "behind" past this */
#define H2_LOW_WATER ((size_t)64 << 10)   /* and the sim is told to go on below this */
#define H2_OUT_MAX ((size_t)1 << 20)      /* a connection's unsent bytes before we wait */
#define H2_MAX_HEADERS 64
#define H2_HEADER_BYTES 8192

typedef struct h2conn h2conn_t;

typedef struct h2stream {
    h2conn_t *c;
    int32_t id;
    char method[16];
    char *path; /* :path, with the query */
    size_t path_len;
    tg_http_header_t hdr[H2_MAX_HEADERS];
    size_t nhdr;
    char hbuf[H2_HEADER_BYTES];
    size_t hused;
    char *body;
    size_t body_len, body_cap;
    sim_req_t *q;
    int handled;  /* answered from the headers: the body is not wanted */
    int answered; /* a response was submitted */
    int eof;      /* the sim ended its output */
    int behind;   /* stream_write said "behind": tell the sim when it drains */
    char *out;
    size_t out_len, out_off, out_cap;
    struct h2stream *prev, *next, *drain_next;
} h2stream_t;

struct h2conn {
    tg_sim_t *sim;
    struct sim_h2_s *srv;
    struct bufferevent *bev;
    nghttp2_session *ng;
    struct event *flush_ev;
    h2stream_t *streams, *drain;
    int flushing, dead;
    h2conn_t *prev, *next;
};

struct sim_h2_s {
    struct evconnlistener *lis;
    h2conn_t *conns;
};

static void conn_free(h2conn_t *c);

static void schedule(h2conn_t *c) {
    if (!c->dead) event_active(c->flush_ev, EV_TIMEOUT, 0);
}

/* ---- the sim's side: sim_io_t over a stream ---- */

static size_t pending(void *r) {
    h2stream_t *st = r;
    return st->out_len - st->out_off;
}

static int out_append(h2stream_t *st, const char *p, size_t n) {
    if (st->out_off > 0 && st->out_off == st->out_len) st->out_off = st->out_len = 0;
    if (st->out_len + n > st->out_cap) {
        if (st->out_off > 0) { /* compact before growing */
            memmove(st->out, st->out + st->out_off, st->out_len - st->out_off);
            st->out_len -= st->out_off;
            st->out_off = 0;
        }
        size_t cap = st->out_cap ? st->out_cap : 4096;
        while (cap < st->out_len + n)
            cap *= 2;
        if (cap != st->out_cap) {
            char *o = realloc(st->out, cap);
            if (o == NULL) return -1;
            st->out = o;
            st->out_cap = cap;
        }
    }
    memcpy(st->out + st->out_len, p, n);
    st->out_len += n;
    return 0;
}

static ssize_t read_out(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                        nghttp2_data_source *src, void *ud) {
    h2stream_t *st = src->ptr;
    size_t n = st->out_len - st->out_off;
    if (n > length) n = length;
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out_len && st->eof) *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (n == 0 && !st->eof) return NGHTTP2_ERR_DEFERRED;
    if (st->behind && pending(st) <= H2_LOW_WATER) {
        st->behind = 0;
        st->drain_next = st->c->drain;
        st->c->drain = st;
    }
    return (ssize_t)n;
}

/* "Name: value" lines into lower-case HTTP/2 header fields. */
static void submit(h2stream_t *st, int status, const char *const *hdrs, size_t n) {
    nghttp2_nv nv[8];
    char names[8][64], code[4];
    size_t k = 0;
    snprintf(code, sizeof(code), "%03d", status);
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < n && k < 8; i++) {
        const char *colon = strchr(hdrs[i], ':');
        size_t nl = colon ? (size_t)(colon - hdrs[i]) : 0;
        if (colon == NULL || nl == 0 || nl >= sizeof(names[0])) continue;
        for (size_t j = 0; j < nl; j++)
            names[k][j] = (char)(hdrs[i][j] >= 'A' && hdrs[i][j] <= 'Z' ? hdrs[i][j] + 32 : hdrs[i][j]);
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        nv[k] = (nghttp2_nv){(uint8_t *)names[k], (uint8_t *)v, nl, strlen(v), NGHTTP2_NV_FLAG_NONE};
        k++;
    }
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_out};
    st->answered = 1;
    nghttp2_submit_response(st->c->ng, st->id, nv, k, &dp);
    schedule(st->c);
}

static void io_respond(void *r, int status, const char *const *hdrs, size_t n, const char *body, size_t len) {
    h2stream_t *st = r;
    if (st->answered) return;
    if (len && out_append(st, body, len)) {
        nghttp2_submit_rst_stream(st->c->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        schedule(st->c);
        return;
    }
    st->eof = 1;
    submit(st, status, hdrs, n);
}

static void io_stream_start(void *r, int status, const char *const *hdrs, size_t n) {
    submit(r, status, hdrs, n);
}

static int io_stream_write(void *r, const char *data, size_t len) {
    h2stream_t *st = r;
    if (out_append(st, data, len)) return 0;
    nghttp2_session_resume_data(st->c->ng, st->id);
    schedule(st->c);
    if (pending(st) > H2_HIGH_WATER) st->behind = 1;
    return st->behind;
}

static void io_stream_end(void *r) {
    h2stream_t *st = r;
    st->eof = 1;
    nghttp2_session_resume_data(st->c->ng, st->id);
    schedule(st->c);
}

static void io_abort(void *r) {
    h2stream_t *st = r;
    nghttp2_submit_rst_stream(st->c->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    schedule(st->c);
}

static const char *io_header(void *r, const char *name, size_t *len) {
    h2stream_t *st = r;
    size_t nl = strlen(name);
    for (size_t i = 0; i < st->nhdr; i++)
        if (st->hdr[i].name_len == nl && strncasecmp(st->hdr[i].name, name, nl) == 0) {
            *len = st->hdr[i].value_len;
            return st->hdr[i].value;
        }
    return NULL;
}

static const sim_io_t h2_io = {io_respond, io_stream_start, io_stream_write, io_stream_end,
                               io_abort,   pending,         io_header};

/* ---- nghttp2's callbacks ---- */

static void stream_free(h2stream_t *st) {
    h2conn_t *c = st->c;
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    for (h2stream_t **p = &c->drain; *p; p = &(*p)->drain_next)
        if (*p == st) {
            *p = st->drain_next;
            break;
        }
    free(st->path);
    free(st->body);
    free(st->out);
    free(st);
}

/* The sim's request ends (aborted unless the whole answer went out). */
static void stream_close(h2stream_t *st, int aborted) {
    sim_req_t *q = st->q;
    st->q = NULL;
    if (q) sim_close(q, aborted);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud) {
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    h2conn_t *c = ud;
    h2stream_t *st = calloc(1, sizeof(*st));
    if (st == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->c = c;
    st->id = f->hd.stream_id;
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    nghttp2_session_set_stream_user_data(ng, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud) {
    h2stream_t *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (st == NULL || f->hd.type != NGHTTP2_HEADERS) return 0;
    if (nl == 7 && !memcmp(name, ":method", 7)) {
        snprintf(st->method, sizeof(st->method), "%.*s", (int)vl, (const char *)value);
    } else if (nl == 5 && !memcmp(name, ":path", 5)) {
        free(st->path);
        st->path = strndup((const char *)value, vl);
        st->path_len = st->path ? vl : 0;
    } else if (nl > 0 && name[0] != ':' && st->nhdr < H2_MAX_HEADERS &&
               st->hused + nl + vl <= H2_HEADER_BYTES) {
        char *n = st->hbuf + st->hused;
        memcpy(n, name, nl);
        memcpy(n + nl, value, vl);
        st->hused += nl + vl;
        st->hdr[st->nhdr++] = (tg_http_header_t){n, nl, n + nl, vl};
    }
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud) {
    h2stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st == NULL || st->handled) return 0;
    if (st->body_len + len > ((size_t)64 << 20)) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (st->body_len + len + 1 > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 4096;
        while (cap < st->body_len + len + 1)
            cap *= 2;
        char *b = realloc(st->body, cap);
        if (b == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->body = b;
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, data, len);
    st->body_len += len;
    st->body[st->body_len] = '\0';
    return 0;
}

static int on_frame(nghttp2_session *ng, const nghttp2_frame *f, void *ud) {
    h2stream_t *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (st == NULL) return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && st->q == NULL &&
        !st->handled) {
        const char *path = st->path ? st->path : "/", *qm = memchr(path, '?', st->path_len);
        size_t plen = qm ? (size_t)(qm - path) : st->path_len;
        st->q = sim_open(st->c->sim, st, &h2_io, st->method[0] ? st->method : "GET", path, plen,
                         qm ? qm + 1 : NULL, qm ? st->path_len - plen - 1 : 0);
        st->handled = st->q == NULL || sim_headers(st->q);
    }
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && st->q && !st->handled) {
        st->handled = 1;
        sim_body(st->q, st->body ? st->body : "", st->body_len);
    }
    return 0;
}

static int on_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud) {
    h2stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st == NULL) return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    stream_close(st, code != NGHTTP2_NO_ERROR || !st->eof || pending(st) > 0);
    stream_free(st);
    return 0;
}

/* ---- the connection ---- */

static void flush(h2conn_t *c) {
    if (c->dead || c->flushing) return;
    c->flushing = 1;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (evbuffer_get_length(out) < H2_OUT_MAX) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->ng, &p);
        if (n < 0) {
            c->dead = 1;
            break;
        }
        if (n == 0) break;
        evbuffer_add(out, p, (size_t)n);
    }
    c->flushing = 0;
    /* Streams that drained below the low-water mark go on (this may queue
     * more output: the next flush sends it). */
    while (!c->dead && c->drain) {
        h2stream_t *st = c->drain;
        c->drain = st->drain_next;
        st->drain_next = NULL;
        if (st->q) sim_drain(st->q);
    }
    if (c->dead || (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
                    evbuffer_get_length(out) == 0))
        conn_free(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg) {
    flush(arg);
}

static void on_read(struct bufferevent *bev, void *arg) {
    h2conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)n);
    ssize_t used = nghttp2_session_mem_recv(c->ng, p, n);
    if (used < 0) {
        c->dead = 1;
        conn_free(c);
        return;
    }
    evbuffer_drain(in, (size_t)used);
    flush(c);
}

static void on_write(struct bufferevent *bev, void *arg) {
    flush(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        h2conn_t *c = arg;
        c->dead = 1;
        conn_free(c);
    }
}

static void conn_free(h2conn_t *c) {
    /* Every stream still open ends for the sim as a client gone. */
    while (c->streams) {
        h2stream_t *st = c->streams;
        stream_close(st, 1);
        stream_free(st);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    nghttp2_session_del(c->ng);
    event_free(c->flush_ev);
    bufferevent_free(c->bev);
    free(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg) {
    tg_sim_t *s = arg;
    h2conn_t *c = calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cb = NULL;
    struct event_base *base = evconnlistener_get_base(l);
    if (c == NULL || nghttp2_session_callbacks_new(&cb) != 0) {
        free(c);
        evutil_closesocket(fd);
        return;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    int rc = nghttp2_session_server_new(&c->ng, cb, c);
    nghttp2_session_callbacks_del(cb);
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->flush_ev = event_new(base, -1, 0, on_flush, c);
    if (rc != 0 || c->bev == NULL || c->flush_ev == NULL) {
        if (rc == 0) nghttp2_session_del(c->ng);
        if (c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->flush_ev) event_free(c->flush_ev);
        free(c);
        return;
    }
    c->sim = s;
    c->srv = s->h2;
    c->next = s->h2->conns;
    if (c->next) c->next->prev = c;
    s->h2->conns = c;
    /* Many streams per connection, and windows large enough that a stream's
     * pace is the sim's, not flow control's. */
    nghttp2_settings_entry set[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100000},
                                    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, set, 2);
    nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, 1 << 24);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    schedule(c);
}

int sim_h2_listen(tg_sim_t *s, struct event_base *base, int fd) {
    s->h2 = calloc(1, sizeof(*s->h2));
    if (s->h2 == NULL) return -1;
    s->h2->lis = evconnlistener_new(base, on_accept, s, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (s->h2->lis == NULL) {
        free(s->h2);
        s->h2 = NULL;
        return -1;
    }
    return 0;
}

void sim_h2_free(tg_sim_t *s) {
    if (s->h2 == NULL) return;
    while (s->h2->conns)
        conn_free(s->h2->conns);
    evconnlistener_free(s->h2->lis);
    free(s->h2);
    s->h2 = NULL;
}
