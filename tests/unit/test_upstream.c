/* test_upstream.c — upstream calls against a scripted HTTP/1.1 server that
 * runs on the same event_base (plain libevent bufferevents), so every
 * behaviour a provider can show — answering, streaming slowly, resetting,
 * stalling, never answering — is produced on demand and the server can tell
 * how many connections it saw and whether the client hung up.
 */
/* deps: gateway/upstream.c core/pool.c core/log.c */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/upstream.h"

/* ---- scripted server ---- */

typedef struct srv_s srv_t;

typedef struct sconn_s {
    struct sconn_s *prev, *next;
    srv_t *srv;
    struct bufferevent *bev;
    struct event *tick;
    const char *mode;
    size_t sent, total, piece; /* streamed body progress */
    int ticks_left;
    int nreq; /* requests read on this connection */
} sconn_t;

struct srv_s {
    struct event_base *base;
    struct evconnlistener *lis;
    int port;
    int accepted; /* connections accepted */
    int closed;   /* connections the client closed */
    int requests;
    char last_head[8192];
    size_t last_body_len;
    sconn_t *conns;
};

/* Body bytes are a hash of their offset, so a lost or duplicated run of
 * bytes shows up wherever it lands. */
static char pat(size_t i) {
    return (char)('a' + ((i * 2654435761u) >> 13) % 26);
}

static void fill(char *d, size_t off, size_t n) {
    for (size_t i = 0; i < n; i++)
        d[i] = pat(off + i);
}

static void send_chunk(sconn_t *c, size_t n) {
    char *d = malloc(n);
    fill(d, c->sent, n);
    evbuffer_add_printf(bufferevent_get_output(c->bev), "%zx\r\n", n);
    evbuffer_add(bufferevent_get_output(c->bev), d, n);
    evbuffer_add(bufferevent_get_output(c->bev), "\r\n", 2);
    c->sent += n;
    free(d);
}

static void sconn_free(sconn_t *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->tick) event_free(c->tick);
    bufferevent_free(c->bev);
    free(c);
}

static void arm_tick(sconn_t *c, int ms) {
    struct timeval tv = {0, ms * 1000};
    evtimer_add(c->tick, &tv);
}

static void on_tick(evutil_socket_t fd, short kind, void *arg) {
    sconn_t *c = arg;
    if (strcmp(c->mode, "/reset") == 0) {
        /* SO_LINGER 0: close sends RST instead of FIN. */
        struct linger lg = {1, 0};
        setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        sconn_free(c);
        return;
    }
    if (strcmp(c->mode, "/cut") == 0) {
        sconn_free(c); /* clean FIN, but the terminating chunk never came */
        return;
    }
    if (c->ticks_left-- > 0) {
        send_chunk(c, c->piece);
        arm_tick(c, strcmp(c->mode, "/slow") == 0 ? 50 : 10);
    } else {
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    }
}

static const char CHUNKED_HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n";

static void respond(sconn_t *c, const char *path, const char *head, size_t body_len) {
    struct evbuffer *out = bufferevent_get_output(c->bev);
    c->mode = path;
    c->sent = 0;
    if (strcmp(path, "/json") == 0) {
        const char *x = strcasestr(head, "\r\nX-Test: ");
        const char *ae = strcasestr(head, "\r\nAccept-Encoding: ");
        char body[256];
        int n =
            snprintf(body, sizeof body, "{\"len\":%zu,\"x\":\"%.1s\",\"ae\":\"%.8s\",\"expect\":%d}",
                     body_len, x ? x + 10 : "-", ae ? ae + 19 : "-", strcasestr(head, "\r\nExpect:") != NULL);
        evbuffer_add_printf(out,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Reply: yes\r\n"
                            "Content-Length: %d\r\n\r\n%s",
                            n, body);
    } else if (strcmp(path, "/interim") == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                                 "HTTP/1.1 201 Created\r\nX-Final: 1\r\nContent-Length: 2\r\n\r\nok");
    } else if (strcmp(path, "/429") == 0) {
        evbuffer_add_printf(
            out, "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\nContent-Length: 2\r\n\r\n{}");
    } else if (strcmp(path, "/big") == 0) {
        /* Everything at once: curl reads it in many pieces, some of them
         * while the transfer is paused. */
        size_t n = 300000;
        char *d = malloc(n);
        fill(d, 0, n);
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
        evbuffer_add(out, d, n);
        free(d);
    } else if (strcmp(path, "/never") != 0) {
        /* streaming modes: headers, one chunk, then per mode */
        evbuffer_add(out, CHUNKED_HEAD, sizeof CHUNKED_HEAD - 1);
        c->piece = strcmp(path, "/chunks") == 0 ? 1000 : 10;
        send_chunk(c, c->piece);
        c->ticks_left = strcmp(path, "/chunks") == 0 ? 9 : strcmp(path, "/slow") == 0 ? 100 : 0;
        if (strcmp(path, "/stall") != 0) arm_tick(c, 20);
    }
}

static void on_sread(struct bufferevent *bev, void *arg) {
    sconn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (e.pos < 0) return;
        size_t hl = (size_t)e.pos + 4;
        if (hl >= sizeof c->srv->last_head) return;
        char *head = c->srv->last_head;
        evbuffer_copyout(in, head, hl);
        head[hl] = '\0';
        const char *cl = strcasestr(head, "\r\nContent-Length: ");
        size_t blen = cl ? strtoul(cl + 18, NULL, 10) : 0;
        if (evbuffer_get_length(in) < hl + blen) return;
        evbuffer_drain(in, hl + blen);
        c->srv->requests++;
        c->srv->last_body_len = blen;
        /* /drop: closed at once, unanswered. /once: answered on a new
         * connection, closed unanswered when it comes on a kept-alive one
         * (an idle-close race lost every time). */
        const char *target = strchr(head, ' ') + 1;
        if (strncmp(target, "/drop ", 6) == 0 || (strncmp(target, "/once ", 6) == 0 && c->nreq > 0)) {
            sconn_free(c);
            return;
        }
        c->nreq++;
        if (strncmp(target, "/once ", 6) == 0) {
            evbuffer_add_printf(bufferevent_get_output(bev),
                                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            continue;
        }
        static const char *const paths[] = {"/json", "/interim", "/429", "/big",   "/chunks",
                                            "/slow", "/reset",   "/cut", "/stall", "/never"};
        const char *path = "/never";
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
            size_t l = strlen(paths[i]);
            if (strncmp(strchr(head, ' ') + 1, paths[i], l) == 0 &&
                head[strchr(head, ' ') - head + 1 + l] == ' ')
                path = paths[i];
        }
        respond(c, path, head, blen);
    }
}

static void on_sevent(struct bufferevent *bev, short what, void *arg) {
    sconn_t *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        c->srv->closed++;
        sconn_free(c);
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg) {
    srv_t *s = arg;
    sconn_t *c = calloc(1, sizeof *c);
    c->srv = s;
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->tick = evtimer_new(s->base, on_tick, c);
    bufferevent_setcb(c->bev, on_sread, NULL, on_sevent, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->accepted++;
}

static void srv_start(srv_t *s, struct event_base *base) {
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(s, 0, sizeof *s);
    s->base = base;
    s->lis = evconnlistener_new_bind(base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
                                     (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(s->lis);
    socklen_t sl = sizeof sin;
    getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)&sin, &sl);
    s->port = ntohs(sin.sin_port);
}

/* ---- client side ---- */

typedef struct {
    tg_upcall_t *u;
    int status;
    int done;
    tg_up_result_t res;
    char err[512];
    char *body;
    size_t len;
    char retry_after[16];
    char ctype[64];
    int pause_ms; /* >0: pause after every piece, resume after this long */
    int cancel_in_data;
    int abort_in_headers;
    int paused_times;
    int abort_in_data;
    int saw_link;
    tg_upcall_t *cancel_other; /* cancelled from this call's first on_data */
    int cancel_when_paused;
    struct event *resume_ev;
} client_t;

typedef struct {
    struct event_base *base;
    tg_upstream_t *up;
    srv_t srv;
    int timed_out;
    struct event *guard;
} fx_t;

static fx_t *F;

static int on_headers(tg_upcall_t *u, int status, void *ud) {
    client_t *c = ud;
    const char *v = tg_upcall_header(u, "Retry-After");
    c->status = status;
    if (v) snprintf(c->retry_after, sizeof c->retry_after, "%s", v);
    c->saw_link = tg_upcall_header(u, "Link") != NULL;
    if ((v = tg_upcall_header(u, "content-type"))) snprintf(c->ctype, sizeof c->ctype, "%s", v);
    return c->abort_in_headers ? -1 : 0;
}

static void on_resume(evutil_socket_t fd, short kind, void *arg) {
    client_t *c = arg;
    if (c->cancel_when_paused) {
        tg_upcall_cancel(c->u);
        return;
    }
    tg_upcall_resume(c->u);
}

static int on_data(tg_upcall_t *u, const char *p, size_t n, void *ud) {
    client_t *c = ud;
    c->body = realloc(c->body, c->len + n + 1);
    memcpy(c->body + c->len, p, n);
    c->len += n;
    c->body[c->len] = '\0';
    if (c->cancel_other) {
        tg_upcall_cancel(c->cancel_other);
        c->cancel_other = NULL;
    }
    if (c->abort_in_data) return -1;
    if (c->cancel_in_data) {
        tg_upcall_cancel(u);
        return 0;
    }
    if (c->pause_ms) {
        struct timeval tv = {c->pause_ms / 1000, (c->pause_ms % 1000) * 1000};
        if (!c->resume_ev) c->resume_ev = evtimer_new(F->base, on_resume, c);
        evtimer_add(c->resume_ev, &tv);
        c->paused_times++;
        return 1;
    }
    return 0;
}

static void on_done(tg_upcall_t *u, tg_up_result_t res, const char *err, void *ud) {
    client_t *c = ud;
    c->done++;
    c->res = res;
    snprintf(c->err, sizeof c->err, "%s", err);
}

static const tg_upcall_cb_t CB = {on_headers, on_data, on_done};

static void on_guard(evutil_socket_t fd, short kind, void *arg) {
    F->timed_out = 1;
}

/* Runs the loop until *v reaches want; a 10 s guard turns a hang into a failure. */
static void run_until(const int *v, int want) {
    struct timeval tv = {10, 0};
    F->timed_out = 0;
    evtimer_add(F->guard, &tv);
    while (*v < want && !F->timed_out)
        event_base_loop(F->base, EVLOOP_ONCE);
    evtimer_del(F->guard);
    assert_false(F->timed_out);
}

static tg_upcall_t *start(client_t *c, const char *path, const char *body, tg_upcall_timeouts_t to) {
    static const char *const hdrs[] = {"Content-Type: application/json",
                                       "Authorization: Bearer sk-secret-123", "X-Test: 1",
                                       "Accept-Encoding: gzip, br"};
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", F->srv.port, path);
    tg_upcall_req_t req = {url, hdrs, 4, body, body ? strlen(body) : 0, to, 0, NULL, 0};
    c->u = tg_upcall_start(F->up, &req, &CB, c, err, sizeof err);
    assert_non_null(c->u);
    return c->u;
}

static void client_clear(client_t *c) {
    free(c->body);
    if (c->resume_ev) event_free(c->resume_ev);
    memset(c, 0, sizeof *c);
}

static int setup(void **state) {
    F = calloc(1, sizeof *F);
    F->base = event_base_new();
    F->up = tg_upstream_new(F->base);
    F->guard = evtimer_new(F->base, on_guard, NULL);
    srv_start(&F->srv, F->base);
    return 0;
}

static int teardown(void **state) {
    tg_upstream_free(F->up);
    evconnlistener_free(F->srv.lis);
    while (F->srv.conns)
        sconn_free(F->srv.conns);
    event_free(F->guard);
    event_base_free(F->base);
    free(F);
    return 0;
}

/* ---- tests ---- */

static void test_post_round_trip(void **state) {
    client_t c = {0};
    char body[2001];
    memset(body, 'q', 2000);
    body[2000] = '\0';
    start(&c, "/json", body, (tg_upcall_timeouts_t){0});
    assert_int_equal(tg_upstream_active(F->up), 1);
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_OK);
    assert_string_equal(c.err, "");
    assert_int_equal(c.status, 200);
    assert_string_equal(c.ctype, "application/json");
    /* The server saw the whole body, our header, no Expect and no request
     * for compression even though the caller passed one. */
    assert_string_equal(c.body, "{\"len\":2000,\"x\":\"1\",\"ae\":\"identity\",\"expect\":0}");
    assert_int_equal(tg_upstream_active(F->up), 0);
    client_clear(&c);
}

static void test_connection_reused(void **state) {
    client_t a = {0}, b = {0};
    start(&a, "/json", "{}", (tg_upcall_timeouts_t){0});
    run_until(&a.done, 1);
    start(&b, "/json", "{}", (tg_upcall_timeouts_t){0});
    run_until(&b.done, 1);
    assert_int_equal(a.res, TG_UP_OK);
    assert_int_equal(b.res, TG_UP_OK);
    assert_int_equal(F->srv.requests, 2);
    assert_int_equal(F->srv.accepted, 1);
    client_clear(&a);
    client_clear(&b);
}

static void test_connect_refused(void **state) {
    /* A port that was free a moment ago: nothing listens there. */
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&sin, sizeof sin);
    getsockname(fd, (struct sockaddr *)&sin, &sl);
    close(fd);
    static const char *const hdrs[] = {"Authorization: Bearer sk-secret-123"};
    char url[64], err[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat?key=sk-q", ntohs(sin.sin_port));
    tg_upcall_req_t req = {url, hdrs, 1, "{}", 2, {0}, 0, NULL, 0};
    client_t c = {0};
    c.u = tg_upcall_start(F->up, &req, &CB, &c, err, sizeof err);
    assert_non_null(c.u);
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_ECONNECT);
    /* The class of the failure; the address only in the server's log. */
    assert_string_equal(c.err, "connection refused");
    assert_int_equal(c.status, 0);
    client_clear(&c);
}

static void test_bad_scheme_not_started(void **state) {
    tg_upcall_req_t req = {"ftp://127.0.0.1/x", NULL, 0, NULL, 0, {0}, 0, NULL, 0};
    char err[128] = "";
    client_t c = {0};
    assert_null(tg_upcall_start(F->up, &req, &CB, &c, err, sizeof err));
    assert_non_null(strstr(err, "http"));
    assert_int_equal(tg_upstream_active(F->up), 0);
}

static void test_first_byte_timeout(void **state) {
    client_t c = {0};
    start(&c, "/never", "{}", (tg_upcall_timeouts_t){.first_byte_ms = 200});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_EFIRSTBYTE);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.err, "no response within 200 ms");
    /* The provider sees the hang-up. */
    run_until(&F->srv.closed, 1);
    client_clear(&c);
}

static void test_idle_timeout_after_headers(void **state) {
    client_t c = {0};
    start(&c, "/stall", "{}", (tg_upcall_timeouts_t){.idle_ms = 200});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_EIDLE);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.err, "no data for 200 ms");
    assert_int_equal(c.len, 10); /* the one chunk before the stall */
    run_until(&F->srv.closed, 1);
    client_clear(&c);
}

static void test_total_timeout(void **state) {
    client_t c = {0};
    start(&c, "/slow", "{}", (tg_upcall_timeouts_t){.total_ms = 300});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_ETOTAL);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.err, "not complete within 300 ms");
    run_until(&F->srv.closed, 1);
    client_clear(&c);
}

static void test_reset_mid_stream(void **state) {
    client_t c = {0};
    start(&c, "/reset", "{}", (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_ERESET);
    assert_int_equal(c.status, 200);
    assert_int_equal(c.len, 10);
    assert_non_null(strstr(c.err, "answer cut: "));
    assert_null(strstr(c.err, "127.0.0.1"));
    client_clear(&c);
}

static void test_chunked_without_end_is_cut(void **state) {
    client_t c = {0};
    start(&c, "/cut", "{}", (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_ERESET);
    assert_int_equal(c.len, 10);
    client_clear(&c);
}

static void check_pattern(const client_t *c, size_t want) {
    assert_int_equal(c->len, want);
    for (size_t i = 0; i < want; i++)
        if (c->body[i] != pat(i)) fail_msg("byte %zu differs", i);
}

static void test_pause_resume_no_loss_no_dup(void **state) {
    /* 300 KB sent at once: curl reads it in pieces, each of which we pause on
     * and resume a millisecond later. */
    client_t c = {0};
    c.pause_ms = 1;
    start(&c, "/big", NULL, (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_OK);
    assert_true(c.paused_times > 1);
    check_pattern(&c, 300000);
    client_clear(&c);
}

static void test_pause_longer_than_idle_is_not_idle(void **state) {
    /* A streamed answer paused for 150 ms at every chunk with a 60 ms idle
     * limit: the client's slowness must not be blamed on the provider. */
    client_t c = {0};
    c.pause_ms = 150;
    start(&c, "/chunks", "{}", (tg_upcall_timeouts_t){.idle_ms = 60});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_OK);
    check_pattern(&c, 10000);
    client_clear(&c);
}

static void test_cancel_in_on_data_closes_connection(void **state) {
    client_t c = {0};
    c.cancel_in_data = 1;
    start(&c, "/slow", "{}", (tg_upcall_timeouts_t){0});
    run_until(&F->srv.closed, 1);
    assert_int_equal(c.len, 10);
    assert_int_equal(tg_upstream_active(F->up), 0);
    /* Let any late event run: no on_done may follow a cancel. */
    struct timeval tv = {0, 100000};
    event_base_loopexit(F->base, &tv);
    event_base_dispatch(F->base);
    assert_int_equal(c.done, 0);
    client_clear(&c);
}

static void test_cancel_from_loop_closes_connection(void **state) {
    client_t c = {0};
    start(&c, "/never", "{}", (tg_upcall_timeouts_t){0});
    run_until(&F->srv.requests, 1);
    tg_upcall_cancel(c.u);
    assert_int_equal(tg_upstream_active(F->up), 0);
    run_until(&F->srv.closed, 1);
    assert_int_equal(c.done, 0);
    client_clear(&c);
}

static void test_abort_from_on_headers(void **state) {
    client_t c = {0};
    c.abort_in_headers = 1;
    start(&c, "/slow", "{}", (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_EABORTED);
    assert_int_equal(c.len, 0);
    run_until(&F->srv.closed, 1);
    client_clear(&c);
}

static void test_retry_after_visible_in_on_headers(void **state) {
    client_t c = {0};
    start(&c, "/429", "{}", (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_OK);
    assert_int_equal(c.status, 429);
    assert_string_equal(c.retry_after, "7");
    assert_string_equal(c.body, "{}");
    client_clear(&c);
}

static void test_interim_response_skipped(void **state) {
    client_t c = {0};
    start(&c, "/interim", "{}", (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_OK);
    assert_int_equal(c.status, 201);
    assert_string_equal(c.body, "ok");
    assert_int_equal(c.saw_link, 0); /* headers of the final response only */
    client_clear(&c);
}

static void test_cancel_other_call_from_on_data(void **state) {
    /* Hedging: the first call to stream cancels its twin from on_data. */
    client_t a = {0}, b = {0};
    start(&b, "/never", "{}", (tg_upcall_timeouts_t){0});
    run_until(&F->srv.requests, 1);
    a.cancel_other = b.u;
    start(&a, "/chunks", "{}", (tg_upcall_timeouts_t){0});
    run_until(&a.done, 1);
    assert_int_equal(a.res, TG_UP_OK);
    check_pattern(&a, 10000);
    run_until(&F->srv.closed, 1); /* the twin's connection */
    assert_int_equal(b.done, 0);
    assert_int_equal(tg_upstream_active(F->up), 0);
    client_clear(&a);
    client_clear(&b);
}

static void test_cancel_while_paused_closes_connection(void **state) {
    /* The client went away while we held the provider back. */
    client_t c = {0};
    c.pause_ms = 50;
    c.cancel_when_paused = 1;
    start(&c, "/slow", "{}", (tg_upcall_timeouts_t){0});
    run_until(&F->srv.closed, 1);
    assert_int_equal(c.paused_times, 1);
    assert_int_equal(c.done, 0);
    assert_int_equal(tg_upstream_active(F->up), 0);
    client_clear(&c);
}

static void test_abort_from_on_data(void **state) {
    client_t c = {0};
    c.abort_in_data = 1;
    start(&c, "/slow", "{}", (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_EABORTED);
    run_until(&F->srv.closed, 1);
    struct timeval tv = {0, 50000};
    event_base_loopexit(F->base, &tv);
    event_base_dispatch(F->base);
    assert_int_equal(c.done, 1);
    client_clear(&c);
}

static void test_thousand_calls_reuse_handle_and_connection(void **state) {
    tg_upcall_t *first = NULL;
    for (int i = 0; i < 1000; i++) {
        client_t c = {0};
        start(&c, "/json", "{\"n\":1}", (tg_upcall_timeouts_t){0});
        if (!first) first = c.u;
        assert_ptr_equal(c.u, first); /* the easy handle came back from the free list */
        run_until(&c.done, 1);
        assert_int_equal(c.res, TG_UP_OK);
        assert_int_equal(c.status, 200);
        client_clear(&c);
    }
    assert_int_equal(F->srv.requests, 1000);
    assert_int_equal(F->srv.accepted, 1);
}

/* Idle connections survive a dip in concurrency: 40 calls at once, all
 * finished, then 40 again, reuse the first 40 connections (curl's default
 * would keep only 4 per call still running and close the rest). */
static void test_idle_connections_kept_across_bursts(void **state) {
    enum { N = 40 };
    static client_t c[N];
    for (int round = 0; round < 2; round++) {
        int done = 0;
        for (int i = 0; i < N; i++)
            start(&c[i], "/json", "{}", (tg_upcall_timeouts_t){0});
        while (done < N) {
            event_base_loop(F->base, EVLOOP_ONCE);
            done = 0;
            for (int i = 0; i < N; i++)
                done += c[i].done;
        }
        for (int i = 0; i < N; i++) {
            assert_int_equal(c[i].res, TG_UP_OK);
            client_clear(&c[i]);
        }
    }
    assert_int_equal(F->srv.requests, 2 * N);
    assert_int_equal(F->srv.accepted, N);
}

/* While every connection carries a response, a new call opens its own (curl
 * is told to skip its search when no connection can be idle); once they are
 * done, later calls reuse them and open none. */
static void test_new_connection_only_when_none_idle(void **state) {
    client_t busy[3] = {{0}}, c = {0};
    for (int i = 0; i < 3; i++)
        start(&busy[i], "/chunks", NULL, (tg_upcall_timeouts_t){0});
    start(&c, "/json", "{}", (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_OK);
    assert_int_equal(F->srv.accepted, 4);
    client_clear(&c);
    for (int i = 0; i < 3; i++) {
        run_until(&busy[i].done, 1);
        assert_int_equal(busy[i].res, TG_UP_OK);
        client_clear(&busy[i]);
    }
    for (int i = 0; i < 8; i++) {
        start(&c, "/json", "{}", (tg_upcall_timeouts_t){0});
        run_until(&c.done, 1);
        assert_int_equal(c.res, TG_UP_OK);
        client_clear(&c);
    }
    assert_int_equal(F->srv.accepted, 4);
    assert_int_equal(F->srv.requests, 12);
}

/* Streamed answers use handles with a 4 KB receive buffer, whole answers
 * 16 KB ones: the kinds alternate, each gets its own handle back, and a
 * 300 KB answer arrives intact through the small buffer too, paused or not. */
static void test_stream_handles_small_buffer(void **state) {
    tg_upcall_t *whole = NULL, *streamed = NULL;
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/big", F->srv.port);
    for (int i = 0; i < 6; i++) {
        client_t c = {0};
        c.pause_ms = i >= 4; /* the last two pause on every piece */
        tg_upcall_req_t req = {url, NULL, 0, NULL, 0, {0}, i % 2, NULL, 0};
        c.u = tg_upcall_start(F->up, &req, &CB, &c, err, sizeof err);
        assert_non_null(c.u);
        tg_upcall_t **mine = i % 2 ? &streamed : &whole;
        if (*mine == NULL) *mine = c.u;
        assert_ptr_equal(c.u, *mine);
        run_until(&c.done, 1);
        assert_int_equal(c.res, TG_UP_OK);
        check_pattern(&c, 300000);
        client_clear(&c);
    }
    assert_ptr_not_equal(whole, streamed);
}

/* The provider closes every kept-alive connection as the next request
 * arrives on it. libcurl sends such a call again by itself, but counts its
 * five retries per easy handle for the handle's whole life: the sixth call
 * through a reused handle failed on its first try ("Connection died, tried 5
 * times before giving up"). The upstream sends it again on a new connection:
 * no call fails, and none is reported as a failure to fail over from. */
static void test_reused_connection_lost_is_sent_again(void **state) {
    for (int i = 0; i < 12; i++) {
        client_t c = {0};
        start(&c, "/once", "{}", (tg_upcall_timeouts_t){0});
        run_until(&c.done, 1);
        if (c.res != TG_UP_OK) fail_msg("call %d failed: %s", i, c.err);
        assert_int_equal(c.status, 200);
        assert_string_equal(c.body, "ok");
        client_clear(&c);
    }
    assert_true(tg_upstream_resends(F->up) >= 1);
}

/* A call that fails before any answer on a connection it opened itself is
 * the provider's failure: reported at once, not sent twice. */
static void test_fresh_connection_lost_is_not_sent_again(void **state) {
    client_t c = {0};
    start(&c, "/drop", "{}", (tg_upcall_timeouts_t){0});
    run_until(&c.done, 1);
    assert_int_equal(c.res, TG_UP_ERESET);
    assert_int_equal(F->srv.requests, 1);
    assert_int_equal(tg_upstream_resends(F->up), 0);
    client_clear(&c);
}

static void test_free_with_calls_in_flight(void **state) {
    client_t a = {0}, b = {0};
    start(&a, "/never", "{}", (tg_upcall_timeouts_t){0});
    start(&b, "/slow", "{}", (tg_upcall_timeouts_t){0});
    run_until(&F->srv.requests, 2);
    assert_int_equal(tg_upstream_active(F->up), 2);
    tg_upstream_free(F->up);
    F->up = tg_upstream_new(F->base);
    run_until(&F->srv.closed, 2);
    assert_int_equal(a.done + b.done, 0);
    client_clear(&a);
    client_clear(&b);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_post_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_scheme_not_started, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_byte_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_after_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_without_end_is_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume_no_loss_no_dup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_longer_than_idle_is_not_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_in_on_data_closes_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_loop_closes_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_from_on_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_visible_in_on_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim_response_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_other_call_from_on_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_paused_closes_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_from_on_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thousand_calls_reuse_handle_and_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_handles_small_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connections_kept_across_bursts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_connection_only_when_none_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_connection_lost_is_sent_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_connection_lost_is_not_sent_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_calls_in_flight, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
