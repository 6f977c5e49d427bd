/* test_tls.c — TLS listeners: the `listen:` forms of a config file (one
 * address, a list, TLS entries with paths relative to the file) and their
 * FILE:LINE:COL errors (a key that does not match its certificate, a
 * missing file, a missing key, a bad or repeated address), then the real
 * HTTP server over gateway/tls.c on a loopback socket, with an OpenSSL
 * client in a second thread while the test's thread runs the event loop:
 * ALPN, the protocol floor, a large answer through a small receive window,
 * and a certificate reload that new handshakes see and an open connection
 * survives. Keys and certificates are made here, in a temp directory. */
/* clang-format off */
/* deps: gateway/tls.c gateway/http1.c core/config.c core/config_load.c core/config_schema.c core/config_listen.c core/config_yaml.c core/config_keys.c core/config_price.c core/pool.c core/log.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/config.h"
#include "gateway/http1.h"
#include "gateway/tls.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static char dir[64];

/* ---------- files ---------- */

static void write_file(const char *name, const char *text) {
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A P-256 key and a self-signed certificate for localhost with `serial`,
 * written as NAME.key and NAME.pem under dir/certs. */
static void make_pair(const char *name, long serial) {
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    char p[256];
    snprintf(p, sizeof(p), "%s/certs/%s.pem", dir, name);
    FILE *f = fopen(p, "w");
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(p, sizeof(p), "%s/certs/%s.key", dir, name);
    f = fopen(p, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup_dir(void **state) {
    snprintf(dir, sizeof(dir), "/tmp/tollgate-test-tls.XXXXXX");
    assert_non_null(mkdtemp(dir));
    char p[128];
    snprintf(p, sizeof(p), "%s/certs", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    make_pair("a", 1001);
    make_pair("b", 1002);
    return 0;
}

static int teardown_dir(void **state) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------- config forms ---------- */

static const char *const tail = "redis: null\n";

static tg_config_t *load_text(const char *listen, tg_diag_t *d) {
    char text[2048], p[256];
    snprintf(text, sizeof(text), "%s%s", listen, tail);
    write_file("tollgate.yaml", text);
    snprintf(p, sizeof(p), "%s/tollgate.yaml", dir);
    return tg_config_load(p, d);
}

static void test_listen_forms(void **state) {
    tg_diag_t d = {0};
    tg_config_t *c = load_text("listen: 127.0.0.1:9090\n", &d);
    assert_non_null(c);
    assert_int_equal(c->n_listens, 1);
    assert_string_equal(c->listens[0].host, "127.0.0.1");
    assert_int_equal(c->listens[0].port, 9090);
    assert_null(c->listens[0].tls_cert);
    tg_config_unref(c);

    /* No listen: the default address. */
    c = load_text("", &d);
    assert_non_null(c);
    assert_int_equal(c->n_listens, 1);
    assert_int_equal(c->listens[0].port, 8080);
    tg_config_unref(c);

    c = load_text("listen:\n"
                  "  - 127.0.0.1:8080\n"
                  "  - { address: 0.0.0.0:8443, tls: { cert: certs/a.pem, key: certs/a.key } }\n"
                  "  - address: \"[::1]:8444\"\n",
                  &d);
    for (size_t i = 0; i < d.n; i++)
        print_error("%s\n", d.msgs[i]);
    assert_non_null(c);
    assert_int_equal(c->n_listens, 3);
    assert_string_equal(c->listen_host, "127.0.0.1"); /* the first entry, as before lists */
    assert_int_equal(c->listen_port, 8080);
    assert_string_equal(c->listens[1].host, "0.0.0.0");
    assert_int_equal(c->listens[1].port, 8443);
    char want[256];
    snprintf(want, sizeof(want), "%s/certs/a.pem", dir); /* relative to the config file */
    assert_string_equal(c->listens[1].tls_cert, want);
    snprintf(want, sizeof(want), "%s/certs/a.key", dir);
    assert_string_equal(c->listens[1].tls_key, want);
    assert_string_equal(c->listens[2].host, "::1");
    assert_null(c->listens[2].tls_cert);
    /* The reload watcher follows the certificate and key. */
    int seen = 0;
    for (size_t i = 0; i < c->n_files; i++)
        seen += strstr(c->files[i], "certs/a.") != NULL;
    assert_int_equal(seen, 2);
    tg_config_unref(c);

    /* One mapping, without a list. */
    c = load_text("listen: { address: 127.0.0.1:8443, tls: { cert: certs/b.pem, key: certs/b.key } }\n", &d);
    assert_non_null(c);
    assert_int_equal(c->n_listens, 1);
    assert_non_null(c->listens[0].tls_key);
    tg_config_unref(c);
    tg_diag_free(&d);
}

/* Loads `listen` and expects a failure whose first message starts at
 * tollgate.yaml:LINE:COL and contains `what`. */
static void expect_error(const char *listen, int line, int col, const char *what) {
    tg_diag_t d = {0};
    tg_config_t *c = load_text(listen, &d);
    assert_null(c);
    assert_true(d.n >= 1);
    char at[300];
    snprintf(at, sizeof(at), "%s/tollgate.yaml:%d:%d: ", dir, line, col);
    if (strncmp(d.msgs[0], at, strlen(at)) != 0 || strstr(d.msgs[0], what) == NULL)
        fail_msg("got \"%s\", want \"%s...%s...\"", d.msgs[0], at, what);
    tg_diag_free(&d);
}

static void test_listen_errors(void **state) {
    expect_error("listen:\n  - { address: 0.0.0.0:8443, tls: { cert: certs/a.pem, key: certs/b.key } }\n", 2,
                 61, "does not match certificate");
    expect_error("listen:\n  - { address: 0.0.0.0:8443, tls: { cert: certs/none.pem, key: certs/a.key } }\n",
                 2, 43, "cannot open TLS certificate");
    expect_error("listen:\n  - { address: 0.0.0.0:8443, tls: { cert: certs/a.key, key: certs/a.key } }\n", 2,
                 43, "is not a usable PEM certificate chain");
    expect_error("listen:\n  - { address: 0.0.0.0:8443, tls: { cert: certs/a.pem, key: certs/a.pem } }\n", 2,
                 61, "is not an unencrypted PEM private key");
    expect_error("listen:\n  - { address: 0.0.0.0:8443, tls: { cert: certs/a.pem, key: certs/no.key } }\n", 2,
                 61, "cannot open TLS key");
    expect_error("listen:\n  - { address: 0.0.0.0:8443, tls: { cert: certs/a.pem } }\n", 2, 35,
                 "needs 'key'");
    expect_error("listen:\n  - { address: 0.0.0.0:8443, tls: { cert: certs/a.pem, key: k, ca: x } }\n", 2, 64,
                 "unknown key 'ca'");
    expect_error("listen:\n  - { tls: { cert: certs/a.pem, key: certs/a.key } }\n", 2, 5, "needs 'address'");
    expect_error("listen:\n  - 127.0.0.1:8080\n  - localhost:99999\n", 3, 5, "cannot parse listen address");
    expect_error("listen:\n  - 127.0.0.1:8080\n  - 127.0.0.1:8080\n", 3, 5, "given twice");
    expect_error("listen: []\n", 1, 9, "between 1 and");
}

/* ---------- serving ---------- */

typedef struct {
    struct event_base *base;
    tg_http_server_t *srv;
    tg_tls_t *tls;
    int lfd, port;
    atomic_int client_done;
} srv_t;

static srv_t S;

static void h_request(tg_http_req_t *r, void *ud) {
    static const char *const hdr[] = {"Content-Type: text/plain"};
    size_t n;
    const char *p = tg_http_path(r, &n);
    if (n == 4 && !memcmp(p, "/big", 4)) {
        size_t len = 1 << 20;
        char *b = malloc(len);
        for (size_t i = 0; i < len; i++)
            b[i] = (char)('a' + i % 26);
        tg_http_respond(r, 200, hdr, 1, b, len);
        free(b);
    } else {
        tg_http_respond(r, 200, hdr, 1, "hello", 5);
    }
}

static const tg_http_handler_t handler = {NULL, h_request, NULL, NULL};

static char *pair_path(const char *name, const char *ext) {
    static char p[4][256];
    static int k;
    char *s = p[k++ % 4];
    snprintf(s, 256, "%s/certs/%s.%s", dir, name, ext);
    return s;
}

static int setup_server(void **state) {
    setup_dir(state);
    signal(SIGPIPE, SIG_IGN);
    memset(&S, 0, sizeof(S));
    S.base = event_base_new();
    char err[512];
    S.tls = tg_tls_new(pair_path("a", "pem"), pair_path("a", "key"), err, sizeof(err));
    if (S.tls == NULL) fail_msg("%s", err);
    S.lfd = tg_http_listen("127.0.0.1", 0, 64);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    getsockname(S.lfd, (struct sockaddr *)&sa, &sl);
    S.port = ntohs(sa.sin_port);
    tg_http_limits_t l;
    tg_http_limits_default(&l);
    l.header_timeout_ms = 300;
    S.srv = tg_http_server_new(S.base, -1, &l, &handler, NULL);
    assert_int_equal(tg_http_server_add_listener(S.srv, S.lfd, tg_tls_transport(S.tls)), 0);
    return 0;
}

static int teardown_server(void **state) {
    tg_http_server_free(S.srv);
    close(S.lfd);
    tg_tls_free(S.tls);
    event_base_free(S.base);
    return teardown_dir(state);
}

/* Runs the loop until the client thread says it is done (or 20 s). */
static void serve_until_done(pthread_t th) {
    struct timeval t0, now;
    gettimeofday(&t0, NULL);
    while (!atomic_load(&S.client_done)) {
        struct timeval tick = {0, 2000};
        event_base_loopexit(S.base, &tick);
        event_base_dispatch(S.base);
        gettimeofday(&now, NULL);
        if (now.tv_sec - t0.tv_sec > 20) fail_msg("the TLS client did not finish");
    }
    pthread_join(th, NULL);
}

/* Runs the loop until every connection closed (or 2 s). */
static void serve_until_idle(void) {
    for (int i = 0; i < 400 && tg_http_server_connections(S.srv) > 0; i++) {
        struct timeval tick = {0, 5000};
        event_base_loopexit(S.base, &tick);
        event_base_dispatch(S.base);
    }
}

/* ---- the client, on its own thread with blocking sockets ---- */

typedef struct {
    int max_version;  /* 0: any */
    const char *alpn; /* wire-format ALPN list, or NULL */
    int rcvbuf;       /* 0: default */
    const char *path; /* request target */
    int keep;         /* leave the connection open in `ssl` */
    int handshake_ok; /* results */
    char alpn_got[32];
    long serial;
    int version;
    size_t body_len;
    int body_ok;
    SSL *ssl;
    SSL_CTX *ctx;
    int fd;
} cli_t;

static int cli_connect(cli_t *c) {
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->max_version) {
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(c->ctx, c->max_version);
        SSL_CTX_set_cipher_list(c->ctx, "DEFAULT@SECLEVEL=0"); /* so that the client does offer TLS 1.1 */
    }
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->rcvbuf) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf, sizeof(c->rcvbuf));
    struct timeval tv = {10, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) return -1;
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    if (c->alpn) SSL_set_alpn_protos(c->ssl, (const unsigned char *)c->alpn, (unsigned)strlen(c->alpn));
    if (SSL_connect(c->ssl) != 1) return -1;
    c->handshake_ok = 1;
    const unsigned char *a;
    unsigned al;
    SSL_get0_alpn_selected(c->ssl, &a, &al);
    snprintf(c->alpn_got, sizeof(c->alpn_got), "%.*s", (int)al, a ? (const char *)a : "");
    X509 *x = SSL_get1_peer_certificate(c->ssl);
    c->serial = x ? ASN1_INTEGER_get(X509_get0_serialNumber(x)) : -1;
    X509_free(x);
    c->version = SSL_version(c->ssl);
    return 0;
}

/* One GET over c->ssl; reads the answer to its Content-Length. */
static void cli_get(cli_t *c, const char *path) {
    char req[256], buf[16384];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
    c->body_len = 0;
    c->body_ok = 0;
    if (SSL_write(c->ssl, req, n) != n) return;
    size_t have = 0, cl = 0, head = 0, got = 0;
    char hdr[4096];
    int ok = 1;
    for (;;) {
        int k = SSL_read(c->ssl, buf, sizeof(buf));
        if (k <= 0) break;
        size_t off = 0;
        if (!head) {
            size_t before = have;
            size_t take = (size_t)k < sizeof(hdr) - 1 - have ? (size_t)k : sizeof(hdr) - 1 - have;
            memcpy(hdr + have, buf, take);
            have += take;
            hdr[have] = '\0';
            char *e = strstr(hdr, "\r\n\r\n");
            if (e == NULL) continue;
            head = (size_t)(e + 4 - hdr);
            const char *l = strstr(hdr, "Content-Length: ");
            cl = l ? strtoul(l + 16, NULL, 10) : 0;
            off = head - before;
        }
        for (size_t i = off; i < (size_t)k; i++, got++)
            if (cl > 5 && buf[i] != (char)('a' + got % 26)) ok = 0;
        if (got >= cl) break;
    }
    c->body_len = got;
    c->body_ok = ok && got == cl && strncmp(hdr, "HTTP/1.1 200", 12) == 0;
}

static void cli_free(cli_t *c) {
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd > 0) close(c->fd);
    SSL_CTX_free(c->ctx);
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = 0;
}

static void *cli_main(void *arg) {
    cli_t *c = arg;
    if (cli_connect(c) == 0) cli_get(c, c->path ? c->path : "/hello");
    ERR_clear_error();
    if (!c->keep) cli_free(c);
    atomic_store(&S.client_done, 1);
    return NULL;
}

static void run_client(cli_t *c) {
    pthread_t th;
    atomic_store(&S.client_done, 0);
    pthread_create(&th, NULL, cli_main, c);
    serve_until_done(th);
}

static void *cli_more(void *arg) {
    cli_t *c = arg;
    cli_get(c, "/hello");
    atomic_store(&S.client_done, 1);
    return NULL;
}

static void test_serve_alpn_and_versions(void **state) {
    cli_t c = {.alpn = "\x02h2\x08http/1.1"};
    run_client(&c);
    assert_true(c.handshake_ok);
    assert_string_equal(c.alpn_got, "http/1.1");
    assert_true(c.version == TLS1_3_VERSION);
    assert_true(c.body_ok);
    assert_int_equal(c.body_len, 5);
    assert_int_equal(c.serial, 1001);

    /* TLS 1.2 still works (ECDHE + AEAD). */
    cli_t c12 = {.max_version = TLS1_2_VERSION};
    run_client(&c12);
    assert_true(c12.handshake_ok);
    assert_int_equal(c12.version, TLS1_2_VERSION);
    assert_true(c12.body_ok);

    /* TLS 1.1 and 1.0 are refused during the handshake. */
    cli_t c11 = {.max_version = TLS1_1_VERSION};
    run_client(&c11);
    assert_false(c11.handshake_ok);
    cli_t c10 = {.max_version = TLS1_VERSION};
    run_client(&c10);
    assert_false(c10.handshake_ok);

    /* A client that speaks only h2 is told so, not served garbage. */
    cli_t h2 = {.alpn = "\x02h2"};
    run_client(&h2);
    assert_false(h2.handshake_ok);
    serve_until_idle();
    assert_int_equal(tg_http_server_connections(S.srv), 0);
}

static void test_serve_large_answer_small_window(void **state) {
    /* 1 MiB through 4 KiB socket buffers: the server's writes stop and
     * resume (WANT_WRITE) many times, each retried as OpenSSL requires. */
    int small = 4096; /* accepted sockets inherit the listener's send buffer */
    assert_int_equal(setsockopt(S.lfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    cli_t c = {.rcvbuf = 4096, .path = "/big"};
    run_client(&c);
    assert_true(c.handshake_ok);
    assert_int_equal(c.body_len, 1 << 20);
    assert_true(c.body_ok);
}

static void test_reload_certificate(void **state) {
    cli_t old = {.keep = 1};
    run_client(&old);
    assert_int_equal(old.serial, 1001);
    char err[512];
    /* A pair that does not match leaves the running one in place. */
    assert_int_equal(tg_tls_reload(S.tls, pair_path("a", "pem"), pair_path("b", "key"), err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "does not match"));
    cli_t same = {0};
    run_client(&same);
    assert_int_equal(same.serial, 1001);

    assert_int_equal(tg_tls_reload(S.tls, pair_path("b", "pem"), pair_path("b", "key"), err, sizeof(err)), 0);
    cli_t fresh = {0};
    run_client(&fresh);
    assert_true(fresh.body_ok);
    assert_int_equal(fresh.serial, 1002);

    /* The connection made before the reload goes on with its own. */
    pthread_t th;
    atomic_store(&S.client_done, 0);
    pthread_create(&th, NULL, cli_more, &old);
    serve_until_done(th);
    assert_true(old.body_ok);
    cli_free(&old);
}

static void test_silent_client_is_cut(void **state) {
    /* Connects and never says hello: the header timeout (300 ms) ends it,
     * while the loop goes on serving a real client. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cli_t c = {0};
    run_client(&c);
    assert_true(c.body_ok);
    serve_until_idle();
    assert_int_equal(tg_http_server_connections(S.srv), 0);
    char b;
    assert_int_equal(recv(fd, &b, 1, MSG_DONTWAIT), 0); /* closed by the server */
    close(fd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_listen_forms, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_listen_errors, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_serve_alpn_and_versions, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_serve_large_answer_small_window, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_reload_certificate, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_silent_client_is_cut, setup_server, teardown_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
