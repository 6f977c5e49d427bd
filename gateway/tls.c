/* tls.c — TLS termination with OpenSSL for the listeners that ask for it.
 * A tg_tls_t owns one listener's SSL_CTX (protocol floor, ciphers, ALPN,
 * certificate chain and key, loaded by tg_config_tls_load in core/), shared
 * by every worker: a worker takes it under a mutex only to create a
 * connection's SSL, which holds its own reference, so a reload can swap in a
 * new context while open connections finish on the old one. The transport
 * functions at the bottom are what gateway/http1.c calls in place of
 * recv()/sendmsg(); they never block and report WANT_READ/WANT_WRITE so
 * that the worker's loop re-arms the socket and goes on serving others. */
#include "gateway/tls.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"

/* TLS 1.2 suites: forward secrecy (ECDHE) and authenticated encryption
 * only, as in Mozilla's "intermediate" profile. TLS 1.3 suites are all AEAD
 * and stay OpenSSL's default. */
#define TLS12_CIPHERS                                                                                        \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"               \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tg_tls_s {
    pthread_mutex_t mu;
    SSL_CTX *ctx; /* the one new connections get; under mu */
    tg_http_transport_t tr;
};

static const unsigned char alpn_http11[] = "\x08http/1.1";

/* The client's ALPN list must offer http/1.1, the only protocol spoken
 * here; a client that offers only others (h2) is refused during the
 * handshake, as RFC 7301 asks, rather than confused after it. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, alpn_http11, sizeof(alpn_http11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static const char *ssl_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown error";
}

static SSL_CTX *ctx_build(const char *cert, const char *key, char *err, size_t errlen) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context (%s)", ssl_reason());
        return NULL;
    }
    /* Renegotiation off: a write then never has to wait for a read, which
     * gateway/http1.c relies on. Unexpected EOF reads as a close: HTTP's own
     * framing tells a cut response from a whole one. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes and a moving buffer: output is retried from the
     * connection's queue, whose first bytes are those of the failed write.
     * Idle connections give their 34 KB of record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Resumption by tickets only: no session cache shared (and locked)
     * between workers. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        snprintf(err, errlen, "cannot set TLS protocol versions or ciphers (%s)", ssl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (tg_config_tls_load(ctx, cert, key, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- transport: one SSL per connection ---------------------------------- */

static void *tls_open(void *ud, int fd) {
    tg_tls_t *t = ud;
    pthread_mutex_lock(&t->mu);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

/* Maps a failed call to a TG_HTTP_IO_ code. The thread's error queue is
 * emptied so that the next call on this worker reads only its own errors. */
static int io_code(SSL *ssl, int r) {
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return TG_HTTP_IO_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE) return TG_HTTP_IO_WANT_WRITE;
    ERR_clear_error();
    return TG_HTTP_IO_ERROR;
}

static int tls_handshake(void *io) {
    SSL *ssl = io;
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1) return 0;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return TG_HTTP_IO_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE) return TG_HTTP_IO_WANT_WRITE;
    /* Scanners and clients of old TLS versions fail here all day long:
     * worth a debug line, not a warning. */
    tg_debug("tls: handshake failed: %s", e == SSL_ERROR_SSL ? ssl_reason() : "connection closed");
    ERR_clear_error();
    return TG_HTTP_IO_ERROR;
}

static long tls_read(void *io, void *buf, size_t len) {
    SSL *ssl = io;
    ERR_clear_error();
    int n = SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0) return n;
    if (SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN) return 0;
    return io_code(ssl, n);
}

static long tls_write(void *io, const void *buf, size_t len) {
    SSL *ssl = io;
    ERR_clear_error();
    int n = SSL_write(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    return n > 0 ? n : io_code(ssl, n);
}

static int tls_pending(void *io) {
    return SSL_has_pending((SSL *)io);
}

/* close_notify is sent once, without waiting for the peer's: the socket
 * closes right after, as every HTTPS server does. */
static void tls_close(void *io, int clean) {
    SSL *ssl = io;
    if (clean) {
        ERR_clear_error();
        SSL_shutdown(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
}

/* ---- contexts -------------------------------------------------------------- */

tg_tls_t *tg_tls_new(const char *cert, const char *key, char *err, size_t errlen) {
    SSL_CTX *ctx = ctx_build(cert, key, err, errlen);
    if (ctx == NULL) return NULL;
    tg_tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        SSL_CTX_free(ctx);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->ctx = ctx;
    t->tr = (tg_http_transport_t){tls_open, tls_handshake, tls_read, tls_write, tls_pending, tls_close, t};
    return t;
}

int tg_tls_reload(tg_tls_t *t, const char *cert, const char *key, char *err, size_t errlen) {
    SSL_CTX *ctx = ctx_build(cert, key, err, errlen);
    if (ctx == NULL) return -1;
    pthread_mutex_lock(&t->mu);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* connections made from it hold their own references */
    return 0;
}

const tg_http_transport_t *tg_tls_transport(tg_tls_t *t) {
    return &t->tr;
}

void tg_tls_free(tg_tls_t *t) {
    if (t == NULL) return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
