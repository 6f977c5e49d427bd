/* fuzz_http1.c — libFuzzer target for the HTTP/1.1 server (gateway/http1.c).
 * Raw client bytes go into one end of a socketpair whose other end is a
 * server connection; the event loop is pumped until the server closes it.
 * The first input byte picks where the bytes are cut into two writes. The
 * handler answers by path: /h* at the headers (401), /s* as a chunked
 * stream echoing the body, anything else whole with the body echoed.
 * Properties: (1) no crash, leak or undefined behaviour; (2) on_finish runs
 * exactly once for each on_headers; (3) bodies are NUL-terminated and match
 * Content-Length; (4) what the server writes parses as HTTP responses;
 * (5) once the client has hung up, the connection closes (nothing is left
 * waiting on a timer); (6) a request reaches the handler only if its head
 * ends in CRLF CRLF: input with no CR at all, or no CRLF CRLF, starts none
 * (bare LF line ends are refused, not read as the parser alone would). The file includes http1.c to reach its
 * static conn_new(), which adopts an already connected socket. Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE \
 *       tests/fuzz/fuzz_http1.c core/log.c core/pool.c \
 *       -levent -lhttp_parser -o /tmp/fuzz_http1 */
/* deps: core/log.c core/pool.c */
/* libs: -levent -lhttp_parser */
#include "gateway/http1.c"

#include <event2/event.h>

#define MAGIC ((void *)0x7e57)

static struct event_base *base;
static tg_http_server_t *srv;
static int started, finished;

static int h_headers(tg_http_req_t *r, void *ud) {
    if (tg_http_data(r) != NULL) abort(); /* a fresh request carries no data */
    tg_http_set_data(r, MAGIC);
    started++;
    size_t pl, n = tg_http_header_count(r), hl;
    const char *p = tg_http_path(r, &pl);
    for (size_t i = 0; i < n; i++) {
        const tg_http_header_t *h = tg_http_header_at(r, i);
        if (!h || !h->name || (!h->value && h->value_len)) abort();
    }
    (void)tg_http_header(r, "content-type", &hl);
    (void)tg_http_query(r, &hl);
    (void)tg_http_method(r);
    (void)tg_http_peer(r);
    if (pl >= 2 && p[1] == 'h') {
        static const char *const hdr[] = {"WWW-Authenticate: Bearer"};
        tg_http_respond(r, 401, hdr, 1, "{}", 2);
        return TG_HTTP_HANDLED;
    }
    return TG_HTTP_CONTINUE;
}

static void h_request(tg_http_req_t *r, void *ud) {
    if (tg_http_data(r) != MAGIC) abort();
    size_t bl, pl;
    char *b = tg_http_body(r, &bl);
    if (!b || b[bl] != '\0') abort();
    int64_t cl = tg_http_content_length(r);
    if (cl >= 0 && (uint64_t)cl != bl) abort();
    const char *p = tg_http_path(r, &pl);
    static const char *const hdr[] = {"Content-Type: text/event-stream"};
    if (pl >= 2 && p[1] == 's') {
        tg_http_stream_start(r, 200, hdr, 1);
        tg_http_stream_write(r, b, bl / 2);
        struct iovec v[2] = {{b + bl / 2, bl - bl / 2}, {"\n", 1}};
        tg_http_stream_writev(r, v, 2);
        tg_http_stream_end(r);
    } else {
        tg_http_respond(r, 200, hdr, 0, b, bl);
    }
}

static void h_finish(tg_http_req_t *r, int aborted, void *ud) {
    if (tg_http_data(r) != MAGIC) abort(); /* exactly once per started request */
    tg_http_set_data(r, NULL);
    finished++;
}

static void setup(void) {
    base = event_base_new();
    int lfd = tg_http_listen("127.0.0.1", 0, 4); /* never connected to */
    if (!base || lfd < 0) abort();
    tg_http_limits_t lim;
    tg_http_limits_default(&lim);
    lim.max_header_bytes = 2048;
    lim.max_headers = 16;
    lim.max_body_bytes = 8192;
    lim.high_water = 4096;
    lim.low_water = 1024;
    static const tg_http_handler_t h = {h_headers, h_request, NULL, h_finish};
    srv = tg_http_server_new(base, lfd, &lim, &h, NULL);
    if (!srv) abort();
}

/* Responses must parse; HEAD answers have no body, which a response parser
 * cannot know, so inputs naming HEAD skip this check. */
static int noop(http_parser *p) {
    return 0;
}

static void check_output(const char *out, size_t n) {
    http_parser_settings s = {0};
    s.on_message_begin = noop;
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    size_t k = http_parser_execute(&p, &s, out, n);
    if (HTTP_PARSER_ERRNO(&p) != HPE_OK || k != n) abort();
}

static void pump_once(int cfd, char **out, size_t *olen, size_t *ocap) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    for (;;) {
        if (*olen + 4096 > *ocap) {
            *ocap = (*ocap + 4096) * 2;
            *out = realloc(*out, *ocap);
        }
        ssize_t n = recv(cfd, *out + *olen, *ocap - *olen, 0);
        if (n <= 0) break;
        *olen += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!base) setup();
    if (size == 0 || size > 65536) return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) abort();
    struct sockaddr_storage sa = {.ss_family = AF_UNIX};
    conn_new(srv, sv[0], &sa);
    started = finished = 0;
    size_t cut = 1 + (size > 1 ? data[0] % size : 0);
    const char *in = (const char *)data + 1;
    size_t inlen = size - 1, first = cut - 1;
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    if (send(sv[1], in, first, MSG_NOSIGNAL) < 0 && first) abort();
    pump_once(sv[1], &out, &olen, &ocap);
    if (inlen > first) (void)send(sv[1], in + first, inlen - first, MSG_NOSIGNAL);
    pump_once(sv[1], &out, &olen, &ocap);
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 1000 && tg_http_server_connections(srv) > 0; i++)
        pump_once(sv[1], &out, &olen, &ocap);
    if (tg_http_server_connections(srv) != 0) abort(); /* stuck after the client left */
    pump_once(sv[1], &out, &olen, &ocap);
    close(sv[1]);
    if (started != finished) abort();
    if (started && (!memchr(in, '\r', inlen) || !memmem(in, inlen, "\r\n\r\n", 4))) abort();
    if (!memmem(in, inlen, "HEAD", 4) && !memmem(in, inlen, "head", 4)) check_output(out, olen);
    free(out);
    return 0;
}
