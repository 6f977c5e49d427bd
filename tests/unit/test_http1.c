/* test_http1.c — drives the real HTTP/1.1 server through loopback sockets:
 * a server runs on an event_base owned by the test, a small handler answers
 * by path, and a client written here sends raw bytes and parses answers with
 * http_parser (HTTP_RESPONSE). The loop is pumped (EVLOOP_NONBLOCK) between
 * client reads and writes, so everything runs in one thread. A stand-in
 * transport at the end drives the seam TLS plugs into (gateway/tls.c). */
/* deps: gateway/http1.c core/pool.c core/log.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gateway/http1.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---------- fixture: server + recording handler ---------- */

typedef struct {
    struct event_base *base;
    tg_http_server_t *srv;
    int lfd, port;
    int headers_calls, request_calls, finish_calls, aborted_calls, drain_calls;
    char order[64]; /* one letter per on_request, 'F' per on_finish */
    tg_http_req_t *later;
    struct event *later_ev;
    size_t flood_bytes;
    int flood_ret;
} fx_t;

static fx_t fx;

static int path_is(tg_http_req_t *r, const char *p) {
    size_t n;
    const char *s = tg_http_path(r, &n);
    return n == strlen(p) && memcmp(s, p, n) == 0;
}

static void note(char ch) {
    size_t n = strlen(fx.order);
    if (n + 1 < sizeof(fx.order)) fx.order[n] = ch;
}

static const char *const text_hdr[] = {"Content-Type: text/plain"};

static int h_headers(tg_http_req_t *r, void *ud) {
    fx.headers_calls++;
    if (path_is(r, "/early")) {
        tg_http_respond(r, 403, text_hdr, 1, "no", 2);
        return TG_HTTP_HANDLED;
    }
    return TG_HTTP_CONTINUE;
}

static void later_cb(evutil_socket_t fd, short what, void *arg) {
    tg_http_req_t *r = fx.later;
    fx.later = NULL;
    if (r) tg_http_respond(r, 200, text_hdr, 1, "later", 5);
}

static void h_request(tg_http_req_t *r, void *ud) {
    fx.request_calls++;
    if (path_is(r, "/hello")) {
        note('H');
        tg_http_respond(r, 200, text_hdr, 1, "hello", 5);
    } else if (path_is(r, "/echo")) {
        note('E');
        size_t len;
        char *b = tg_http_body(r, &len);
        /* The contract: contiguous and NUL-terminated. */
        assert_int_equal(b[len], '\0');
        assert_int_equal(strlen(b), len);
        tg_http_respond(r, 200, text_hdr, 1, b, len);
    } else if (path_is(r, "/later")) {
        note('L');
        fx.later = r;
        struct timeval tv = {0, 30 * 1000};
        evtimer_add(fx.later_ev, &tv);
    } else if (path_is(r, "/stream")) {
        static const char *const sse[] = {"Content-Type: text/event-stream"};
        tg_http_stream_start(r, 200, sse, 1);
        tg_http_stream_write(r, "data: a\n\n", 9);
        tg_http_stream_write(r, "", 0);
        struct iovec v[2] = {{"data: ", 6}, {"bb\n\n", 4}};
        tg_http_stream_writev(r, v, 2);
        tg_http_stream_end(r);
    } else if (path_is(r, "/flood")) {
        static char chunk[16 * 1024];
        memset(chunk, 'x', sizeof(chunk));
        tg_http_stream_start(r, 200, text_hdr, 1);
        for (int i = 0; i < 8192 && fx.flood_ret == 0; i++) {
            fx.flood_ret = tg_http_stream_write(r, chunk, sizeof(chunk));
            fx.flood_bytes += sizeof(chunk);
        }
    } else if (path_is(r, "/trail")) {
        char out[64];
        size_t len;
        const char *b = tg_http_body(r, &len);
        int n = snprintf(out, sizeof(out), "%zu %s %s", tg_http_header_count(r), b,
                         tg_http_header(r, "X-Trailer", NULL) ? "trailer-seen" : "no-trailer");
        tg_http_respond(r, 200, text_hdr, 1, out, (size_t)n);
    } else if (path_is(r, "/abort")) {
        tg_http_stream_start(r, 200, text_hdr, 1);
        tg_http_stream_write(r, "partial", 7);
        tg_http_abort(r); /* on_finish(aborted = 1) runs inside */
        note(fx.finish_calls == 1 ? 'A' : '?');
    } else if (path_is(r, "/open")) {
        tg_http_stream_start(r, 200, text_hdr, 1);
        tg_http_stream_write(r, "first", 5); /* and nothing more: the client hangs up */
    } else if (path_is(r, "/hang")) {
        note('G'); /* the answer never comes; only a hang-up ends it */
    } else {
        tg_http_respond(r, 404, text_hdr, 1, "nope", 4);
    }
}

static void h_drain(tg_http_req_t *r, void *ud) {
    fx.drain_calls++;
    if (path_is(r, "/flood")) tg_http_stream_end(r);
}

static void h_finish(tg_http_req_t *r, int aborted, void *ud) {
    fx.finish_calls++;
    fx.aborted_calls += aborted != 0;
    note('F');
    if (fx.later == r) fx.later = NULL;
}

static const tg_http_handler_t handler = {h_headers, h_request, h_drain, h_finish};

static tg_http_limits_t test_limits(void) {
    tg_http_limits_t l;
    tg_http_limits_default(&l);
    l.max_body_bytes = 1000;
    l.max_header_bytes = 2048;
    l.max_headers = 20;
    l.header_timeout_ms = 200;
    l.body_timeout_ms = 200;
    l.keepalive_timeout_ms = 200;
    l.send_timeout_ms = 2000;
    l.high_water = 64 * 1024;
    l.low_water = 16 * 1024;
    return l;
}

static void fx_start(const tg_http_limits_t *l) {
    fx.lfd = tg_http_listen("127.0.0.1", 0, 64);
    assert_true(fx.lfd >= 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fx.lfd, (struct sockaddr *)&sa, &sl), 0);
    fx.port = ntohs(sa.sin_port);
    fx.srv = tg_http_server_new(fx.base, fx.lfd, l, &handler, NULL);
    assert_non_null(fx.srv);
}

static int setup(void **state) {
    memset(&fx, 0, sizeof(fx));
    fx.base = event_base_new();
    fx.later_ev = evtimer_new(fx.base, later_cb, NULL);
    tg_http_limits_t l = test_limits();
    fx_start(&l);
    return 0;
}

static int teardown(void **state) {
    tg_http_server_free(fx.srv);
    close(fx.lfd);
    event_free(fx.later_ev);
    event_base_free(fx.base);
    return 0;
}

/* ---------- client ---------- */

typedef struct {
    int fd;
    char in[256 * 1024];
    size_t inlen;
    int eof, head;
} cli_t;

typedef struct {
    int status, complete;
    char headers[4096];
    size_t hlen;
    char *body;
    size_t blen;
    int last_was_value, head;
} resp_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pump(void) {
    event_base_loop(fx.base, EVLOOP_NONBLOCK);
}

static void pump_idle(int rounds) {
    for (int i = 0; i < rounds; i++) {
        pump();
        usleep(1000);
    }
}

static cli_t *cli_open_buf(int rcvbuf) {
    cli_t *c = calloc(1, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    pump(); /* accept */
    return c;
}

static cli_t *cli_open(void) {
    return cli_open_buf(0);
}

static void cli_close(cli_t *c) {
    if (c->fd >= 0) close(c->fd);
    free(c);
}

static void cli_send(cli_t *c, const char *s, size_t n) {
    assert_int_equal(send(c->fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
    pump();
}

static void cli_sends(cli_t *c, const char *s) {
    cli_send(c, s, strlen(s));
}

/* Reads what is there without blocking; returns bytes read, 0 on EOF, -1 if none. */
static ssize_t cli_fill(cli_t *c) {
    if (c->inlen == sizeof(c->in)) return -1;
    ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
    if (n > 0)
        c->inlen += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        c->eof = 1;
        return 0;
    }
    return n > 0 ? n : -1;
}

static int r_field(http_parser *p, const char *at, size_t n) {
    resp_t *r = p->data;
    if (r->last_was_value && r->hlen + 2 < sizeof(r->headers)) {
        memcpy(r->headers + r->hlen, "\r\n", 2);
        r->hlen += 2;
    }
    r->last_was_value = 0;
    if (r->hlen + n < sizeof(r->headers)) memcpy(r->headers + r->hlen, at, n), r->hlen += n;
    return 0;
}
static int r_value(http_parser *p, const char *at, size_t n) {
    resp_t *r = p->data;
    if (!r->last_was_value && r->hlen + 2 < sizeof(r->headers)) {
        memcpy(r->headers + r->hlen, ": ", 2);
        r->hlen += 2;
    }
    r->last_was_value = 1;
    if (r->hlen + n < sizeof(r->headers)) memcpy(r->headers + r->hlen, at, n), r->hlen += n;
    return 0;
}
static int r_hdone(http_parser *p) {
    resp_t *r = p->data;
    r->status = (int)p->status_code;
    return r->head; /* a HEAD answer has no body whatever its headers say */
}
static int r_body(http_parser *p, const char *at, size_t n) {
    resp_t *r = p->data;
    r->body = realloc(r->body, r->blen + n + 1);
    memcpy(r->body + r->blen, at, n);
    r->blen += n;
    r->body[r->blen] = '\0';
    return 0;
}
static int r_done(http_parser *p) {
    resp_t *r = p->data;
    r->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_header_field = r_field,
    .on_header_value = r_value,
    .on_headers_complete = r_hdone,
    .on_body = r_body,
    .on_message_complete = r_done,
};

static void resp_free(resp_t *r) {
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* One response, pumping the server meanwhile. Leftover bytes stay in the
 * client for the next call (pipelining). Fails the test if nothing completes
 * within 20 s (a hang guard, not a timing assertion). */
static void resp_read(cli_t *c, resp_t *r) {
    memset(r, 0, sizeof(*r));
    r->head = c->head;
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = r;
    double deadline = now_s() + 20;
    size_t used = 0;
    while (!r->complete) {
        if (used < c->inlen) {
            used += http_parser_execute(&p, &resp_settings, c->in + used, c->inlen - used);
            if (used == c->inlen) used = c->inlen = 0; /* keep room for long bodies */
            if (HTTP_PARSER_ERRNO(&p) == HPE_PAUSED) break;
            assert_int_equal(HTTP_PARSER_ERRNO(&p), HPE_OK);
            continue;
        }
        if (c->eof) {
            http_parser_execute(&p, &resp_settings, NULL, 0); /* a body delimited by the close */
            break;
        }
        pump();
        if (cli_fill(c) < 0) usleep(500);
        assert_true(now_s() < deadline);
    }
    memmove(c->in, c->in + used, c->inlen - used);
    c->inlen -= used;
}

/* Waits for the server to close; returns the bytes that came before. */
static size_t cli_wait_eof(cli_t *c) {
    double deadline = now_s() + 20;
    while (!c->eof) {
        pump();
        if (cli_fill(c) < 0) usleep(1000);
        assert_true(now_s() < deadline);
    }
    return c->inlen;
}

static int has_header(const resp_t *r, const char *line) {
    return memmem(r->headers, r->hlen, line, strlen(line)) != NULL;
}

/* ---------- tests ---------- */

static void test_simple_get(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    assert_true(has_header(&r, "Content-Length: 5"));
    assert_true(has_header(&r, "Content-Type: text/plain"));
    assert_false(has_header(&r, "Connection: close"));
    assert_int_equal(fx.finish_calls, 1);
    assert_int_equal(fx.aborted_calls, 0);
    resp_free(&r);
    cli_close(c);
}

static void test_post_content_length(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello");
    pump_idle(3);
    assert_int_equal(fx.request_calls, 0); /* body incomplete */
    cli_sends(c, " world");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello world");
    resp_free(&r);
    cli_close(c);
}

static void test_chunked_body(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    pump_idle(2);
    cli_sends(c, "lo\r\n6\r\n wor");
    pump_idle(2);
    cli_sends(c, "ld\r\n0\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello world");
    resp_free(&r);
    cli_close(c);
}

static void test_expect_continue(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 100);
    resp_free(&r);
    cli_sends(c, "abcde");
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "abcde");
    resp_free(&r);
    cli_close(c);
}

static void test_expect_continue_too_large(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 413); /* not 100 first */
    resp_free(&r);
    cli_close(c);
}

static void test_keepalive_two_requests(void **state) {
    cli_t *c = cli_open();
    resp_t r;
    for (int i = 0; i < 2; i++) {
        cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        resp_read(c, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "hello");
        resp_free(&r);
    }
    assert_int_equal(tg_http_server_connections(fx.srv), 1);
    assert_int_equal(fx.finish_calls, 2);
    cli_close(c);
}

static void test_pipelined_in_order(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /later HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "later");
    resp_free(&r);
    resp_read(c, &r);
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    resp_read(c, &r);
    assert_string_equal(r.body, "xyz");
    resp_free(&r);
    /* Each request reached the handler only after the previous finished. */
    assert_string_equal(fx.order, "LFHFEF");
    cli_close(c);
}

static void test_413_from_content_length(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 413);
    assert_true(has_header(&r, "Connection: close"));
    assert_true(has_header(&r, "Content-Type: application/json"));
    assert_non_null(strstr(r.body, "\"type\":\"invalid_request_error\""));
    assert_non_null(strstr(r.body, "\"code\":\"request_too_large\""));
    cli_wait_eof(c);
    assert_int_equal(fx.headers_calls, 0); /* refused before the handler */
    assert_int_equal(fx.finish_calls, 0);
    resp_free(&r);
    cli_close(c);
}

static void test_413_chunked_mid_body(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[700];
    memset(chunk, 'a', sizeof(chunk));
    for (int i = 0; i < 2; i++) {
        cli_sends(c, "2bc\r\n");
        cli_send(c, chunk, sizeof(chunk));
        cli_sends(c, "\r\n");
    }
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 413);
    cli_wait_eof(c);
    assert_int_equal(fx.headers_calls, 1);
    assert_int_equal(fx.request_calls, 0);
    assert_int_equal(fx.finish_calls, 1);
    assert_int_equal(fx.aborted_calls, 1);
    resp_free(&r);
    cli_close(c);
}

static void test_431_too_many_headers(void **state) {
    cli_t *c = cli_open();
    char req[2048];
    size_t n = (size_t)snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\n");
    for (int i = 0; i < 30; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "X-H%d: v\r\n", i);
    n += (size_t)snprintf(req + n, sizeof(req) - n, "\r\n");
    cli_send(c, req, n);
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 431);
    assert_non_null(strstr(r.body, "too many request headers"));
    cli_wait_eof(c);
    assert_int_equal(fx.headers_calls, 0);
    resp_free(&r);
    cli_close(c);
}

static void test_431_header_too_large(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\nX-Big: ");
    char big[1500];
    memset(big, 'b', sizeof(big));
    cli_send(c, big, sizeof(big)); /* 2 x 1500 > 2048, arriving in pieces */
    cli_send(c, big, sizeof(big));
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 431);
    cli_wait_eof(c);
    assert_int_equal(fx.headers_calls, 0);
    resp_free(&r);
    cli_close(c);
}

static void test_400_garbage(void **state) {
    const char *bad[] = {"\x01\x02garbage\r\n\r\n", "GET nope HTTP/1.1\r\n\r\n", "BREW /pot HTTP/1.1\r\n\r\n",
                         "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cli_t *c = cli_open();
        cli_sends(c, bad[i]);
        resp_t r;
        resp_read(c, &r);
        assert_int_equal(r.status, 400);
        assert_true(has_header(&r, "Content-Type: application/json"));
        assert_non_null(strstr(r.body, "{\"error\":{\"message\":"));
        cli_wait_eof(c);
        resp_free(&r);
        cli_close(c);
    }
    assert_int_equal(fx.headers_calls, 0);
}

/* ---------- the owner's shape for the server's own errors ---------- */

/* Writes what the server passed as a small JSON object; 0 (the server's own
 * body) for paths under /plain. */
static size_t record_error(const char *path, size_t path_len, int status, const char *code, const char *msg,
                           char *buf, size_t cap) {
    if (path_len >= 6 && memcmp(path, "/plain", 6) == 0) return 0;
    int n = snprintf(buf, cap, "{\"path\":\"%.*s\",\"status\":%d,\"code\":\"%s\"}", (int)path_len, path,
                     status, code);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Sends `req` on a new connection and returns the body of the error the
 * server answered by itself (malloc'd), checking its status. */
static char *own_error(const char *req, int status) {
    cli_t *c = cli_open();
    cli_sends(c, req);
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, status);
    assert_true(has_header(&r, "Content-Type: application/json"));
    assert_true(has_header(&r, "Connection: close"));
    cli_wait_eof(c);
    char *body = strdup(r.body ? r.body : "");
    resp_free(&r);
    cli_close(c);
    return body;
}

static void test_error_body_by_path(void **state) {
    tg_http_server_set_error_body(fx.srv, record_error);
    char *b;
    /* 413 on the declared length: the parsed path, without its query. */
    b = own_error("POST /v1/messages?beta=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", 413);
    assert_string_equal(b, "{\"path\":\"/v1/messages\",\"status\":413,\"code\":\"request_too_large\"}");
    free(b);
    /* 431 while headers are still arriving: the path from the read buffer. */
    char big[3000], req[3200];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(req, sizeof(req), "GET /v1/messages/count_tokens?x=1 HTTP/1.1\r\nX-Big: %s", big);
    b = own_error(req, 431);
    assert_string_equal(b, "{\"path\":\"/v1/messages/"
                           "count_tokens\",\"status\":431,\"code\":\"request_header_fields_too_large\"}");
    free(b);
    /* 400 on a bad header name, found before the target is split. */
    b = own_error("GET /v1/chat/completions#f HTTP/1.1\r\nBad Header: x\r\n\r\n", 400);
    assert_string_equal(b, "{\"path\":\"/v1/chat/completions\",\"status\":400,\"code\":\"invalid_header\"}");
    free(b);
    /* 408 when the body stalls: the handler saw the request; the same path. */
    b = own_error("POST /v1/messages HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234", 408);
    assert_string_equal(b, "{\"path\":\"/v1/messages\",\"status\":408,\"code\":\"request_timeout\"}");
    free(b);
    /* 413 mid-way through a chunked body, after the handler saw the headers. */
    char chunked[2000] = "POST /v1/messages HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 2; i++) {
        strcat(chunked, "2bc\r\n");
        size_t n = strlen(chunked);
        memset(chunked + n, 'a', 700);
        chunked[n + 700] = '\0';
        strcat(chunked, "\r\n");
    }
    b = own_error(chunked, 413);
    assert_string_equal(b, "{\"path\":\"/v1/messages\",\"status\":413,\"code\":\"request_too_large\"}");
    free(b);
    /* No target at all (an unknown method): an empty path. */
    b = own_error("BREW /pot HTTP/1.1\r\n\r\n", 400);
    assert_string_equal(b, "{\"path\":\"\",\"status\":400,\"code\":\"invalid_method\"}");
    free(b);
    /* A writer that returns 0 leaves the server's own body. */
    b = own_error("POST /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", 413);
    assert_non_null(strstr(b, "{\"error\":{\"message\":"));
    assert_non_null(strstr(b, "\"code\":\"request_too_large\""));
    free(b);
    /* On a kept-alive connection, the error names the request it answers,
     * not the one before it. */
    cli_t *c = cli_open();
    cli_sends(c, "GET /v1/messages HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /v1/chat/completions HTTP/1.1\r\nBad Header: x\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 404); /* the handler's answer to the first */
    resp_free(&r);
    resp_read(c, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body,
                        "{\"path\":\"/v1/chat/completions\",\"status\":400,\"code\":\"invalid_header\"}");
    resp_free(&r);
    cli_close(c);
}

static void test_stream_chunked(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Transfer-Encoding: chunked"));
    assert_false(has_header(&r, "Content-Length"));
    assert_string_equal(r.body, "data: a\n\ndata: bb\n\n");
    resp_free(&r);
    /* still usable afterwards */
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_read(c, &r);
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    cli_close(c);
}

static void test_high_water_and_drain(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    pump_idle(5);
    assert_int_equal(fx.flood_ret, 1);   /* the producer was told to pause */
    assert_int_equal(fx.drain_calls, 0); /* the client has not read */
    resp_t r;
    resp_read(c, &r); /* reading lets the queue drain; on_drain ends the stream */
    assert_int_equal(r.status, 200);
    assert_int_equal(fx.drain_calls, 1);
    assert_int_equal(r.blen, fx.flood_bytes);
    assert_int_equal(fx.finish_calls, 1);
    assert_int_equal(fx.aborted_calls, 0);
    resp_free(&r);
    cli_close(c);
}

static void test_hangup_while_waiting(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    pump_idle(2);
    assert_int_equal(fx.request_calls, 1);
    assert_int_equal(fx.finish_calls, 0);
    close(c->fd);
    c->fd = -1;
    double deadline = now_s() + 20;
    while (fx.finish_calls == 0 && now_s() < deadline)
        pump_idle(1);
    assert_int_equal(fx.finish_calls, 1);
    assert_int_equal(fx.aborted_calls, 1);
    assert_int_equal(tg_http_server_connections(fx.srv), 0);
    cli_close(c);
}

static void test_header_timeout_slowloris(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    size_t got = cli_wait_eof(c);
    assert_int_equal(got, 0); /* closed without an answer */
    assert_int_equal(fx.headers_calls, 0);
    assert_int_equal(tg_http_server_connections(fx.srv), 0);
    cli_close(c);
}

static void test_keepalive_timeout(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(cli_wait_eof(c), 0);
    assert_int_equal(tg_http_server_connections(fx.srv), 0);
    cli_close(c);
}

static void test_connection_close_and_http10(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_true(has_header(&r, "Connection: close"));
    cli_wait_eof(c);
    resp_free(&r);
    cli_close(c);

    c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.0\r\n\r\n");
    resp_read(c, &r);
    assert_string_equal(r.body, "hello");
    assert_true(has_header(&r, "Connection: close"));
    cli_wait_eof(c);
    resp_free(&r);
    cli_close(c);

    c = cli_open();
    cli_sends(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    resp_read(c, &r);
    assert_true(has_header(&r, "Connection: keep-alive"));
    resp_free(&r);
    cli_sends(c, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    resp_read(c, &r); /* no chunked encoding for 1.0: the close ends the body */
    assert_false(has_header(&r, "Transfer-Encoding"));
    assert_string_equal(r.body, "data: a\n\ndata: bb\n\n");
    resp_free(&r);
    cli_close(c);
}

static void test_head_has_no_body(void **state) {
    cli_t *c = cli_open();
    c->head = 1;
    cli_sends(c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Length: 5"));
    assert_int_equal(r.blen, 0);
    resp_free(&r);
    c->head = 0;
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_read(c, &r); /* a stray body byte would corrupt this one */
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    cli_close(c);
}

static void test_early_answer_skips_body(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 403);
    assert_true(has_header(&r, "Connection: close"));
    cli_wait_eof(c);
    assert_int_equal(fx.request_calls, 0);
    assert_int_equal(fx.finish_calls, 1);
    assert_int_equal(fx.aborted_calls, 0);
    resp_free(&r);
    cli_close(c);

    /* Without a body the connection stays open. */
    c = cli_open();
    cli_sends(c, "GET /early HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_read(c, &r);
    assert_int_equal(r.status, 403);
    resp_free(&r);
    resp_read(c, &r);
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    cli_close(c);
}

static void fx_restart(const tg_http_limits_t *l) {
    tg_http_server_free(fx.srv);
    close(fx.lfd);
    fx_start(l);
}

static void test_chunked_trailers_ignored(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /trail HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "2 abc no-trailer"); /* the two headers, not the trailers */
    resp_free(&r);
    cli_close(c);
}

static void test_large_bodies(void **state) {
    tg_http_limits_t l = test_limits();
    l.max_body_bytes = 1 << 20;
    fx_restart(&l);
    size_t n = 300 * 1000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    cli_t *c = cli_open();
    char head[128];
    snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", n);
    cli_sends(c, head);
    for (size_t off = 0; off < n; off += 50000) {
        cli_send(c, big + off, 50000);
        pump_idle(1);
    }
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.blen, n);
    assert_memory_equal(r.body, big, n);
    resp_free(&r);
    /* the same bytes chunked, on the same connection */
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t off = 0; off < n; off += 60000) {
        size_t k = n - off < 60000 ? n - off : 60000;
        snprintf(head, sizeof(head), "%zx\r\n", k);
        cli_sends(c, head);
        cli_send(c, big + off, k);
        cli_sends(c, "\r\n");
        pump_idle(1);
    }
    cli_sends(c, "0\r\n\r\n");
    resp_read(c, &r);
    assert_int_equal(r.blen, n);
    assert_memory_equal(r.body, big, n);
    resp_free(&r);
    free(big);
    cli_close(c);
}

static void test_body_timeout(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 408);
    assert_non_null(strstr(r.body, "\"type\":\"invalid_request_error\""));
    cli_wait_eof(c);
    assert_int_equal(fx.request_calls, 0);
    assert_int_equal(fx.finish_calls, 1);
    assert_int_equal(fx.aborted_calls, 1);
    resp_free(&r);
    cli_close(c);
}

/* ---------- refusals of what the non-strict parser would let through ---------- */

/* Sends req on a new connection; returns the status of the answer, after
 * the server closed (every refusal here closes). */
static int refused_status(const char *req) {
    cli_t *c = cli_open();
    cli_sends(c, req);
    resp_t r;
    resp_read(c, &r);
    int st = r.status;
    cli_wait_eof(c);
    resp_free(&r);
    cli_close(c);
    return st;
}

static void test_bare_lf_refused(void **state) {
    const char *bad[] = {
        "GET /hello HTTP/1.1\nHost: t\n\n",              /* LF only */
        "GET /hello HTTP/1.1\r\nHost: t\n\r\n",          /* one header line */
        "GET /hello HTTP/1.1\r\nHost: t\r\n\n",          /* the empty line */
        "GET /hello HTTP/1.1\r\nX-A: a\rX-B: b\r\n\r\n", /* a CR the parser takes as a line end */
        "GET /hello HTTP/1.1\r\nHost: t\r\n\rX",         /* any byte after the last CR */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(refused_status(bad[i]), 400);
    assert_int_equal(fx.headers_calls, 0);
    /* Empty lines before a request are skipped, as RFC 9112 allows. */
    cli_t *c = cli_open();
    cli_sends(c, "\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cli_close(c);
}

static void test_chunk_framing_refused(void **state) {
    const char *head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *bad[] = {
        "5\r\nhelloXX0\r\n\r\n",                /* two bytes after the data that are not CRLF */
        "5\r\nhello\rX0\r\n\r\n",               /* CR and a byte */
        "5\r\nhello\n0\r\n\r\n",                /* a bare LF */
        "5;ext\rXhello\r\n0\r\n\r\n",           /* a size line ended by CR and any byte */
        "5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n", /* a trailer line */
        "5\r\nhello\r\n0\r\n\rZ",               /* the last line */
        "5;a\x01\r\nhello\r\n0\r\n\r\n",        /* a control byte in an extension */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "%s%s", head, bad[i]);
        assert_int_equal(refused_status(req), 400);
    }
    assert_int_equal(fx.request_calls, 0);
    /* The same check when the CRLF after the data arrives in pieces. */
    cli_t *c = cli_open();
    cli_sends(c, head);
    cli_sends(c, "5\r\nhello\r");
    pump_idle(2);
    cli_sends(c, "X0\r\n\r\n");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    cli_close(c);
    /* Well-formed framing with extensions, trailers and split CRLFs passes. */
    c = cli_open();
    cli_sends(c, head);
    cli_sends(c, "5 ;name=\"v a\"\r\nhello\r");
    pump_idle(2);
    cli_sends(c, "\n1\r\n!\r\n0\r\nX-T: 1\r\n\r");
    pump_idle(2);
    cli_sends(c, "\n");
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello!");
    resp_free(&r);
    cli_close(c);
    assert_int_equal(fx.request_calls, 1);
}

/* A body sent a byte at a time is cut at the body deadline, not kept alive
 * by each byte as an idle timer would be. */
static void test_body_deadline_not_idle(void **state) {
    tg_http_limits_t l = test_limits();
    l.body_timeout_ms = 300;
    l.min_body_rate = 0;
    fx_restart(&l);
    cli_t *c = cli_open();
    double t0 = now_s();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n");
    while (cli_fill(c) < 0 && !c->eof && now_s() - t0 < 5) {
        cli_sends(c, "x");
        pump_idle(40);
    }
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 408);
    assert_non_null(strstr(r.body, "did not arrive in time"));
    assert_true(now_s() - t0 < 3); /* loosely: an idle timer would never have fired */
    resp_free(&r);
    cli_close(c);
    assert_int_equal(fx.request_calls, 0);
}

/* Below the minimum rate after the grace period: cut before the deadline.
 * A body above the rate passes. */
static void test_body_min_rate(void **state) {
    tg_http_limits_t l = test_limits();
    l.body_timeout_ms = 20000;
    l.min_body_rate = 1000;
    l.rate_grace_ms = 100;
    fx_restart(&l);
    cli_t *c = cli_open();
    double t0 = now_s();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n");
    while (cli_fill(c) < 0 && !c->eof && now_s() - t0 < 5) {
        cli_sends(c, "x"); /* about 50 bytes a second */
        pump_idle(20);
    }
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 408);
    assert_non_null(strstr(r.body, "too slowly"));
    assert_true(now_s() - t0 < 3);
    resp_free(&r);
    cli_close(c);
    /* 600 bytes at once buy 0.6 s beyond the grace: the rest 0.2 s later is in time. */
    char half[600];
    memset(half, 'y', sizeof(half));
    c = cli_open();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n");
    cli_send(c, half, sizeof(half));
    pump_idle(200);
    cli_send(c, half, 300);
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.blen, 900);
    resp_free(&r);
    cli_close(c);
}

/* Header bytes a trickle at a time do not extend the header deadline. */
static void test_header_deadline_not_idle(void **state) {
    cli_t *c = cli_open();
    double t0 = now_s();
    cli_sends(c, "GET /hello HTTP/1.1\r\nX-Slow: ");
    while (!c->eof && now_s() - t0 < 5) {
        if (send(c->fd, "a", 1, MSG_NOSIGNAL) != 1) break;
        pump_idle(30);
        cli_fill(c);
    }
    cli_wait_eof(c);
    assert_true(now_s() - t0 < 3); /* header_timeout_ms is 200 */
    assert_int_equal(fx.headers_calls, 0);
    cli_close(c);
}

static void test_send_timeout(void **state) {
    tg_http_limits_t l = test_limits();
    l.send_timeout_ms = 100;
    fx_restart(&l);
    cli_t *c = cli_open_buf(4096);
    cli_sends(c, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    /* The client never reads: the stuck output ends the request. */
    double deadline = now_s() + 20;
    while (fx.finish_calls == 0 && now_s() < deadline)
        pump_idle(1);
    assert_int_equal(fx.finish_calls, 1);
    assert_int_equal(fx.aborted_calls, 1);
    assert_int_equal(fx.drain_calls, 0);
    assert_int_equal(tg_http_server_connections(fx.srv), 0);
    cli_close(c);
}

static void test_hangup_mid_stream(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /open HTTP/1.1\r\nHost: t\r\n\r\n");
    pump_idle(2);
    assert_int_equal(fx.request_calls, 1);
    close(c->fd);
    c->fd = -1;
    double deadline = now_s() + 20;
    while (fx.finish_calls == 0 && now_s() < deadline)
        pump_idle(1);
    assert_int_equal(fx.finish_calls, 1);
    assert_int_equal(fx.aborted_calls, 1);
    cli_close(c);
}

static void test_abort(void **state) {
    cli_t *c = cli_open();
    cli_sends(c, "GET /abort HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_wait_eof(c);
    assert_string_equal(fx.order, "FA"); /* on_finish ran inside tg_http_abort */
    assert_int_equal(fx.aborted_calls, 1);
    /* the client saw a chunked body without its last chunk */
    assert_null(memmem(c->in, c->inlen, "0\r\n\r\n", 5));
    assert_int_equal(tg_http_server_connections(fx.srv), 0);
    cli_close(c);
}

static void test_accessors(void **state);

static void test_stop_accepting(void **state) {
    cli_t *idle = cli_open();
    cli_sends(idle, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_t r;
    resp_read(idle, &r);
    resp_free(&r);
    cli_t *busy = cli_open();
    cli_sends(busy, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    pump_idle(2);
    assert_int_equal(tg_http_server_connections(fx.srv), 2);
    tg_http_server_stop_accepting(fx.srv);
    cli_wait_eof(idle);  /* idle closes now */
    resp_read(busy, &r); /* the running request still gets its answer */
    assert_string_equal(r.body, "later");
    assert_true(has_header(&r, "Connection: close"));
    cli_wait_eof(busy);
    assert_int_equal(tg_http_server_connections(fx.srv), 0);
    resp_free(&r);
    cli_close(idle);
    cli_close(busy);
}

/* Handler variant that records what the accessors return. */
static char seen[512];
static int acc_headers(tg_http_req_t *r, void *ud) {
    size_t pl, ql, hl;
    const char *p = tg_http_path(r, &pl), *q = tg_http_query(r, &ql), *h = tg_http_header(r, "x-ONE", &hl);
    snprintf(seen, sizeof(seen), "%s|%.*s|%.*s|%.*s|%zu|%s|%lld", tg_http_method(r), (int)pl, p, (int)ql,
             q ? q : "", (int)hl, h ? h : "", tg_http_header_count(r), tg_http_peer(r),
             (long long)tg_http_content_length(r));
    const tg_http_header_t *h0 = tg_http_header_at(r, 0);
    assert_int_equal(h0->name_len, 4);
    assert_memory_equal(h0->name, "Host", 4);
    assert_null(tg_http_header_at(r, 9));
    return TG_HTTP_CONTINUE;
}

static void test_accessors(void **state) {
    tg_http_server_free(fx.srv);
    close(fx.lfd);
    tg_http_handler_t h = handler;
    h.on_headers = acc_headers;
    fx.lfd = tg_http_listen("127.0.0.1", 0, 64);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    getsockname(fx.lfd, (struct sockaddr *)&sa, &sl);
    fx.port = ntohs(sa.sin_port);
    tg_http_limits_t l = test_limits();
    fx.srv = tg_http_server_new(fx.base, fx.lfd, &l, &h, NULL);
    cli_t *c = cli_open();
    cli_sends(c, "POST /echo?a=1&b=2 HTTP/1.1\r\nHost: t\r\nX-One: first\r\nx-one: second\r\n"
                 "Content-Length: 2\r\n\r\nok");
    resp_t r;
    resp_read(c, &r);
    assert_string_equal(r.body, "ok");
    assert_string_equal(seen, "POST|/echo|a=1&b=2|first|4|127.0.0.1|2");
    resp_free(&r);
    cli_close(c);
}

static void test_listen_ipv6_and_bad_host(void **state) {
    int fd = tg_http_listen("::1", 0, 16);
    if (fd >= 0) close(fd); /* hosts without IPv6 still must not crash */
    assert_int_equal(tg_http_listen("not an address", 0, 16), -1);
    assert_string_equal(tg_http_reason(404), "Not Found");
    assert_string_equal(tg_http_reason(431), "Request Header Fields Too Large");
}

/* ---------- a transport under the server (the seam TLS uses) ---------- */

/* A stand-in for TLS that keeps the bytes as they are but behaves the way
 * OpenSSL does where it matters: a handshake (the client's "HELLO\n",
 * answered "OK\n") that may arrive in pieces; reads that take everything
 * off the socket and hand it out a few bytes at a time, so that bytes wait
 * where no socket event announces them (pending); writes that take at most
 * 1000 bytes and now and then refuse with WANT_WRITE, after which the next
 * call must start with the same bytes, and no shorter. */
typedef struct {
    int fd, hs_got, hs_sent;
    char in[8192];
    size_t in_len, in_pos;
    char last[64];
    size_t last_len; /* bytes refused by the last WANT_WRITE; 0 when none */
    int writes;
} fake_io_t;

static struct { int opened, closed, clean_closes, want_writes, retry_ok, retry_bad, pending_hits; } fk;

static void *fk_open(void *ud, int fd) {
    fake_io_t *f = calloc(1, sizeof(*f));
    f->fd = fd;
    fk.opened++;
    return f;
}

static int fk_handshake(void *io) {
    fake_io_t *f = io;
    while (f->hs_got < 6) {
        char ch;
        ssize_t n = recv(f->fd, &ch, 1, 0);
        if (n == 0) return TG_HTTP_IO_ERROR;
        if (n < 0) return errno == EAGAIN ? TG_HTTP_IO_WANT_READ : TG_HTTP_IO_ERROR;
        if (ch != "HELLO\n"[f->hs_got++]) return TG_HTTP_IO_ERROR;
    }
    if (!f->hs_sent) {
        if (send(f->fd, "OK\n", 3, MSG_NOSIGNAL) != 3) return TG_HTTP_IO_ERROR;
        f->hs_sent = 1;
    }
    return 0;
}

static long fk_read(void *io, void *buf, size_t len) {
    fake_io_t *f = io;
    if (f->in_pos == f->in_len) {
        ssize_t n = recv(f->fd, f->in, sizeof(f->in), 0);
        if (n == 0) return 0;
        if (n < 0) return errno == EAGAIN ? TG_HTTP_IO_WANT_READ : TG_HTTP_IO_ERROR;
        f->in_len = (size_t)n;
        f->in_pos = 0;
    }
    size_t k = f->in_len - f->in_pos < 7 ? f->in_len - f->in_pos : 7;
    if (k > len) k = len;
    memcpy(buf, f->in + f->in_pos, k);
    f->in_pos += k;
    return (long)k;
}

static long fk_write(void *io, const void *buf, size_t len) {
    fake_io_t *f = io;
    if (f->last_len) {
        if (len >= f->last_len && memcmp(buf, f->last, f->last_len) == 0)
            fk.retry_ok++;
        else
            fk.retry_bad++;
        f->last_len = 0;
    } else if (++f->writes % 3 == 0) {
        f->last_len = len < sizeof(f->last) ? len : sizeof(f->last);
        memcpy(f->last, buf, f->last_len);
        fk.want_writes++;
        return TG_HTTP_IO_WANT_WRITE;
    }
    ssize_t n = send(f->fd, buf, len < 1000 ? len : 1000, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN ? TG_HTTP_IO_WANT_WRITE : TG_HTTP_IO_ERROR;
    return (long)n;
}

static int fk_pending(void *io) {
    fake_io_t *f = io;
    if (f->in_pos < f->in_len) fk.pending_hits++;
    return f->in_pos < f->in_len;
}

static void fk_close(void *io, int clean) {
    fk.closed++;
    fk.clean_closes += clean != 0;
    free(io);
}

static const tg_http_transport_t fake_transport = {fk_open,    fk_handshake, fk_read, fk_write,
                                                   fk_pending, fk_close,     NULL};

/* A second listener on the fixture's server, over the fake transport;
 * returns a client that has finished the handshake. */
static int fk_lfd = -1, fk_port;

static int setup_fake(void **state) {
    setup(state);
    memset(&fk, 0, sizeof(fk));
    fk_lfd = tg_http_listen("127.0.0.1", 0, 64);
    assert_true(fk_lfd >= 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fk_lfd, (struct sockaddr *)&sa, &sl), 0);
    fk_port = ntohs(sa.sin_port);
    assert_int_equal(tg_http_server_add_listener(fx.srv, fk_lfd, &fake_transport), 0);
    return 0;
}

static int teardown_fake(void **state) {
    teardown(state);
    close(fk_lfd);
    return 0;
}

static cli_t *fk_connect(void) {
    int plain = fx.port;
    fx.port = fk_port;
    cli_t *c = cli_open();
    fx.port = plain;
    return c;
}

static void fk_greet(cli_t *c) {
    cli_sends(c, "HEL");
    pump_idle(2);
    assert_int_equal(c->inlen, 0);
    cli_sends(c, "LO\n");
    double deadline = now_s() + 20;
    while (c->inlen < 3) {
        pump();
        if (cli_fill(c) < 0) usleep(500);
        assert_true(now_s() < deadline);
    }
    assert_memory_equal(c->in, "OK\n", 3);
    memmove(c->in, c->in + 3, c->inlen - 3);
    c->inlen -= 3;
}

static void test_transport_requests(void **state) {
    cli_t *c = fk_connect();
    fk_greet(c);
    /* Pipelined and read 7 bytes at a time: only the transport knows the
     * rest is there. */
    cli_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 11\r\n\r\nhello world");
    resp_t r;
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    resp_read(c, &r);
    assert_string_equal(r.body, "hello world");
    resp_free(&r);
    assert_true(fk.pending_hits > 0);
    /* 128 MiB would not fit: the flood stops at high water and drains
     * through writes that are cut short and refused now and then. */
    cli_sends(c, "GET /flood HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    resp_read(c, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.blen, fx.flood_bytes);
    for (size_t i = 0; i < r.blen; i++)
        if (r.body[i] != 'x') fail_msg("byte %zu of the streamed body is %d", i, r.body[i]);
    resp_free(&r);
    cli_wait_eof(c);
    assert_true(fk.want_writes > 10);
    assert_int_equal(fk.retry_bad, 0);
    assert_int_equal(fk.retry_ok, fk.want_writes);
    assert_int_equal(fk.opened, 1);
    assert_int_equal(fk.closed, 1);
    assert_int_equal(fk.clean_closes, 1); /* a goodbye before the close */
    assert_int_equal(fx.finish_calls, 3);
    assert_int_equal(fx.aborted_calls, 0);
    cli_close(c);
}

static void test_transport_handshake_timeout(void **state) {
    cli_t *plain = cli_open();
    cli_t *stuck = fk_connect();
    cli_sends(stuck, "HEL"); /* and never the rest */
    /* The plain listener serves meanwhile. */
    cli_sends(plain, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    resp_t r;
    resp_read(plain, &r);
    assert_string_equal(r.body, "hello");
    resp_free(&r);
    /* The header timeout (200 ms here) cuts the handshake. */
    assert_int_equal(cli_wait_eof(stuck), 0);
    assert_int_equal(fk.closed, 1);
    assert_int_equal(fk.clean_closes, 0);
    assert_int_equal(fx.headers_calls, 1);
    cli_close(stuck);
    cli_close(plain);
}

static void test_transport_bad_handshake(void **state) {
    cli_t *c = fk_connect();
    cli_sends(c, "GET / HTTP/1.1\r\n\r\n"); /* plain HTTP on the transport's port */
    assert_int_equal(cli_wait_eof(c), 0);
    assert_int_equal(fx.headers_calls, 0);
    assert_int_equal(fk.closed, 1);
    assert_int_equal(tg_http_server_connections(fx.srv), 0);
    cli_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_simple_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_content_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_two_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_from_content_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_chunked_mid_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_431_too_many_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_431_header_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_body_by_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_high_water_and_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_timeout_slowloris, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_and_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_has_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_answer_skips_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_accepting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accessors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_trailers_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_lf_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_framing_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_deadline_not_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_min_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_deadline_not_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test(test_listen_ipv6_and_bad_host),
        cmocka_unit_test_setup_teardown(test_transport_requests, setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_transport_handshake_timeout, setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_transport_bad_handshake, setup_fake, teardown_fake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
