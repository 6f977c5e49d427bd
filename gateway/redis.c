/* redis.c — our connection to Redis, driven by us on a worker's libevent loop: a bufferevent
 * (bufferevent_openssl for rediss, TLS 1.2+ with the certificate and the name checked), names
 * looked up with evdns on every connect (never a blocking getaddrinfo on the loop), hiredis only
 * as the reply parser (redisReader) and command encoder (redisFormatCommandArgv). Around the
 * link: AUTH and SELECT from the URL, a connect and progress timer (a Redis that answers nothing
 * for the command timeout while something is outstanding counts as down), reconnects after a
 * doubling, jittered wait, and Sentinel: the sentinels are asked for the master on every
 * connect, ROLE must say master, and a READONLY or MASTERDOWN answer starts over. The owner
 * hears of the link through on_up/on_down (redis.h) and sends commands, each with a reply
 * callback; a command's slot is recycled, never freed before the connection, so a reply that
 * comes after a cancel finds valid memory. Also the redis URL parser, which the synchronous
 * `tollgate report` shares. */
#include "gateway/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/clock.h"
#include "core/log.h"

enum { PH_SENTINEL, PH_DATA }; /* asking a sentinel for the master, or the link commands use */

/* One name lookup in flight. evdns may call back after a cancel, so the callback finds the link
 * through this small object, which a cancel or tg_redis_free detaches, never through r itself. */
typedef struct {
    tg_redis_t *r;
} lookup_t;

struct tg_redis_s {
    struct event_base *base;
    tg_redis_url_t url;
    const char *who; /* log prefix */
    tg_redis_events_t ev;
    SSL_CTX *ssl;           /* rediss: a reference to the process's context */
    char server_name[256];  /* what the certificate must name; "" = the host connected to */
    struct evdns_base *dns; /* when a name has to be looked up */
    /* the link being made or in use */
    struct bufferevent *bev;
    redisReader *reader;
    lookup_t *lookup;
    struct evdns_getaddrinfo_request *dns_req;
    struct evutil_addrinfo *ai, *ai_next; /* the addresses of the name, the next one to try */
    int phase, connected, in_connect, connect_failed, hello_left;
    int sentinel_i, sentinel_tries;
    char host[256]; /* connecting to host:port now */
    int port;
    char target[512], last_err[300];
    tg_redis_state_t state; /* never TG_REDIS_CLOSING: kill_pending says that */
    /* timers: reconnect wait; connect/command progress (also the deferred kill); failed replies */
    struct event *retry_ev, *io_ev, *fail_ev;
    int backoff_first, backoff_max, backoff, cmd_timeout_ms, kill_pending;
    size_t outstanding;
    int64_t last_progress_ms, last_warn_ms;
    uint64_t rng;
    /* command slots: sent and waiting for their reply (oldest first), failed (a NULL reply to
     * deliver from fail_ev, oldest first), free, and all of them */
    tg_redis_cmd_t *qhead, *qtail, *fhead, *ftail, *cfree, *call;
};

struct tg_redis_cmd_s {
    tg_redis_t *r;
    tg_redis_reply_fn fn; /* NULL once cancelled */
    void *ud;
    tg_redis_cmd_t *next; /* queue, failed or free list */
    tg_redis_cmd_t *all;
};

static void start_target(tg_redis_t *r, const char *host, int port);

/* --- TLS: one context for the process ---------------------------------------------------------- */

static pthread_mutex_t tls_mu = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *tls_ctx; /* the process's; each rediss link holds a reference */
static char tls_name[256];

static void tls_reason(const char *what, const char *file, char *err, size_t errlen) {
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "redis_tls: %s%s%s: %s", what, file ? " " : "", file ? file : "",
             why ? why : "unusable");
    ERR_clear_error();
}

static SSL_CTX *tls_ctx_new(const tg_redis_tls_t *t, char *err, size_t errlen) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        tls_reason("cannot create a TLS context", NULL, err, errlen);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    const char *ca = t ? t->ca_file : NULL, *cert = t ? t->cert : NULL, *key = t ? t->key : NULL;
    if (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tls_reason(ca ? "cannot load ca_file" : "cannot load the system's CA store", ca, err, errlen);
        goto fail;
    }
    if (key && !cert) {
        snprintf(err, errlen, "redis_tls: key %s is given without cert", key);
        goto fail;
    }
    if (cert) { /* a client certificate; the key may sit in the same PEM file */
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
            tls_reason("cannot load cert", cert, err, errlen);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            tls_reason("cannot use key", key ? key : cert, err, errlen);
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tg_redis_tls_setup(const tg_redis_tls_t *tls, char *err, size_t errlen) {
    SSL_CTX *ctx = tls_ctx_new(tls, err, errlen);
    if (ctx == NULL) return -1;
    pthread_mutex_lock(&tls_mu);
    SSL_CTX *old = tls_ctx;
    tls_ctx = ctx;
    snprintf(tls_name, sizeof(tls_name), "%s", tls && tls->server_name ? tls->server_name : "");
    pthread_mutex_unlock(&tls_mu);
    SSL_CTX_free(old); /* links made before keep their own reference */
    return 0;
}

/* The process's context, made with the system store when nobody set one up. */
static int tls_take(tg_redis_t *r, char *err, size_t errlen) {
    pthread_mutex_lock(&tls_mu);
    if (tls_ctx == NULL) tls_ctx = tls_ctx_new(NULL, err, errlen);
    if (tls_ctx != NULL) {
        SSL_CTX_up_ref(tls_ctx);
        r->ssl = tls_ctx;
        snprintf(r->server_name, sizeof(r->server_name), "%s", tls_name);
    }
    pthread_mutex_unlock(&tls_mu);
    return r->ssl ? 0 : -1;
}

static int is_ip(const char *h) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* --- progress ------------------------------------------------------------------------------ */

/* Counts a command for the progress timer: a Redis that answers nothing for cmd_timeout_ms
 * while something is outstanding is treated as down. */
static void issued(tg_redis_t *r) {
    if (r->outstanding++ == 0) r->last_progress_ms = tg_clock_mono_ms();
    if (!evtimer_pending(r->io_ev, NULL)) {
        struct timeval tv = tg_clock_tv(r->cmd_timeout_ms);
        evtimer_add(r->io_ev, &tv);
    }
}

static void answered(tg_redis_t *r) {
    if (r->outstanding > 0) r->outstanding--;
    r->last_progress_ms = tg_clock_mono_ms();
}

/* Closes the link from outside the callbacks that use it (a zero timer on io_ev). */
static void kill_later(tg_redis_t *r) {
    struct timeval tv = {0, 0};
    r->kill_pending = 1;
    evtimer_add(r->io_ev, &tv);
}

/* --- commands -------------------------------------------------------------------------------- */

static void cmd_release(tg_redis_t *r, tg_redis_cmd_t *c) {
    c->fn = NULL;
    c->ud = NULL;
    c->next = r->cfree;
    r->cfree = c;
}

static tg_redis_cmd_t *cmd_take(tg_redis_t *r, tg_redis_reply_fn fn, void *ud) {
    tg_redis_cmd_t *c = r->cfree;
    if (c != NULL) {
        r->cfree = c->next;
    } else {
        if ((c = calloc(1, sizeof(*c))) == NULL) return NULL;
        c->r = r;
        c->all = r->call;
        r->call = c;
    }
    c->fn = fn;
    c->ud = ud;
    c->next = NULL;
    return c;
}

/* Writes one encoded command and queues its slot for the reply. */
static tg_redis_cmd_t *cmd_write(tg_redis_t *r, const char *cmd, size_t len, tg_redis_reply_fn fn, void *ud) {
    tg_redis_cmd_t *c = cmd_take(r, fn, ud);
    if (c == NULL) return NULL;
    if (bufferevent_write(r->bev, cmd, len) != 0) {
        cmd_release(r, c);
        return NULL;
    }
    if (r->qtail)
        r->qtail->next = c;
    else
        r->qhead = c;
    r->qtail = c;
    issued(r);
    return c;
}

static tg_redis_cmd_t *cmd_argv(tg_redis_t *r, int argc, const char **argv, const size_t *lens,
                                tg_redis_reply_fn fn, void *ud) {
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, lens);
    if (len < 0) return NULL;
    tg_redis_cmd_t *c = cmd_write(r, buf, (size_t)len, fn, ud);
    redisFreeCommand(buf);
    return c;
}

/* Every command still waiting on a closed link gets its NULL reply later, from fail_ev. */
static void fail_queue(tg_redis_t *r) {
    if (r->qhead == NULL) return;
    if (r->ftail)
        r->ftail->next = r->qhead;
    else
        r->fhead = r->qhead;
    r->ftail = r->qtail;
    r->qhead = r->qtail = NULL;
    struct timeval tv = {0, 0};
    evtimer_add(r->fail_ev, &tv);
}

static void on_failed(evutil_socket_t fd, short what, void *arg) {
    tg_redis_t *r = arg;
    tg_redis_cmd_t *c = r->fhead;
    r->fhead = r->ftail = NULL;
    while (c != NULL) {
        tg_redis_cmd_t *next = c->next;
        tg_redis_reply_fn fn = c->fn;
        void *ud = c->ud;
        cmd_release(r, c);
        if (fn) fn(NULL, ud);
        c = next;
    }
}

/* --- the link ------------------------------------------------------------------------------- */

/* Closes whatever the link has (lookup, socket, parser); no callback runs from here. */
static void link_close(tg_redis_t *r) {
    if (r->lookup) {
        r->lookup->r = NULL;
        r->lookup = NULL;
        if (r->dns_req) evdns_getaddrinfo_cancel(r->dns_req);
    }
    r->dns_req = NULL;
    if (r->ai) evutil_freeaddrinfo(r->ai);
    r->ai = r->ai_next = NULL;
    if (r->bev) bufferevent_free(r->bev); /* safe from inside its own callbacks */
    r->bev = NULL;
    if (r->reader) redisReaderFree(r->reader);
    r->reader = NULL;
    r->connected = r->hello_left = 0;
    fail_queue(r);
}

static int jitter(tg_redis_t *r, int ms) {
    r->rng ^= r->rng << 13, r->rng ^= r->rng >> 7, r->rng ^= r->rng << 17;
    return ms / 2 + (int)(r->rng % (uint64_t)(ms / 2 + 1));
}

/* The link is gone (or never came): the owner hears of it, and a retry is scheduled. */
static void go_down(tg_redis_t *r, const char *why) {
    int loud = r->state == TG_REDIS_UP || r->backoff == r->backoff_first;
    link_close(r);
    r->state = TG_REDIS_DOWN;
    r->outstanding = 0;
    r->kill_pending = 0;
    r->sentinel_tries = 0;
    evtimer_del(r->io_ev);
    r->ev.on_down(r->ev.ud, why, loud);
    struct timeval tv = tg_clock_tv(jitter(r, r->backoff));
    evtimer_add(r->retry_ev, &tv);
    r->backoff = r->backoff * 2 < r->backoff_max ? r->backoff * 2 : r->backoff_max;
}

/* This attempt failed: through Sentinel, the next sentinel is asked while some are left in this
 * round; otherwise the link is down. */
static void link_fail(tg_redis_t *r, const char *why) {
    link_close(r);
    if (r->phase != PH_SENTINEL) {
        go_down(r, why);
        return;
    }
    char buf[512];
    snprintf(buf, sizeof(buf), "no sentinel gave the address of master %s (last: %s:%d: %s)", r->url.master,
             r->host, r->port, why);
    if (++r->sentinel_tries >= r->url.n_nodes) {
        go_down(r, buf);
        return;
    }
    r->sentinel_i = (r->sentinel_i + 1) % r->url.n_nodes;
    start_target(r, r->url.nodes[r->sentinel_i].host, r->url.nodes[r->sentinel_i].port);
}

static void become_up(tg_redis_t *r) {
    answered(r); /* the connect itself */
    r->state = TG_REDIS_UP;
    r->sentinel_tries = 0;
    r->ev.on_up(r->ev.ud);
}

/* AUTH, SELECT and ROLE: a refusal means this link is of no use. */
static void hello_done(tg_redis_t *r, const redisReply *rep, const char *what, int ok) {
    if (rep == NULL || r->bev == NULL) return; /* the link went away meanwhile */
    if (!ok) {
        char why[300];
        if (rep->type == REDIS_REPLY_ERROR)
            snprintf(why, sizeof(why), "redis refused %s: %s", what, rep->str);
        else
            snprintf(why, sizeof(why), "redis at %s:%d is not the master (ROLE %s)", r->host, r->port,
                     rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 && rep->element[0]->str
                         ? rep->element[0]->str
                         : "?");
        if (tg_clock_warn_due(&r->last_warn_ms)) tg_warn("%s: %s", r->who, why);
        link_fail(r, why);
        return;
    }
    if (--r->hello_left == 0) become_up(r);
}

static void on_auth(const redisReply *rep, void *ud) {
    hello_done(ud, rep, "AUTH", rep && rep->type != REDIS_REPLY_ERROR);
}

static void on_select(const redisReply *rep, void *ud) {
    hello_done(ud, rep, "SELECT", rep && rep->type != REDIS_REPLY_ERROR);
}

static void on_role(const redisReply *rep, void *ud) {
    int master = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
                 rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "master") == 0;
    hello_done(ud, rep, "ROLE", master);
}

/* A sentinel's answer to SENTINEL get-master-addr-by-name: [ip, port], or nil when it does not
 * know the master. */
static void on_master_addr(const redisReply *rep, void *ud) {
    tg_redis_t *r = ud;
    if (rep == NULL || r->bev == NULL) return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING) {
        link_fail(r, rep->type == REDIS_REPLY_ERROR ? rep->str : "it does not know that master");
        return;
    }
    char host[256];
    snprintf(host, sizeof(host), "%s", rep->element[0]->str);
    int port = atoi(rep->element[1]->str);
    link_close(r);
    r->phase = PH_DATA;
    snprintf(r->target, sizeof(r->target), "%.127s at %.255s:%d", r->url.master, host, port);
    start_target(r, host, port);
}

static void on_connected(tg_redis_t *r) {
    r->connected = 1;
    if (r->ai) evutil_freeaddrinfo(r->ai);
    r->ai = r->ai_next = NULL;
    if (r->url.unix_path == NULL) {
        int one = 1;
        setsockopt(bufferevent_getfd(r->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if ((r->reader = redisReaderCreate()) == NULL) {
        link_fail(r, "out of memory");
        return;
    }
    if (r->phase == PH_SENTINEL) {
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", r->url.master};
        if (cmd_argv(r, 3, argv, NULL, on_master_addr, r) == NULL)
            link_fail(r, "cannot send to the sentinel");
        return;
    }
    /* AUTH, SELECT (and ROLE) leave in one write; the link is up when all have answered. */
    char db[16];
    snprintf(db, sizeof(db), "%d", r->url.db);
    int ok = 1;
    if (r->url.password) {
        const char *argv[3] = {"AUTH", r->url.user ? r->url.user : r->url.password, r->url.password};
        ok &= cmd_argv(r, r->url.user ? 3 : 2, argv, NULL, on_auth, r) != NULL;
        r->hello_left++;
    }
    if (r->url.db > 0) {
        ok &= cmd_argv(r, 2, (const char *[]){"SELECT", db}, NULL, on_select, r) != NULL;
        r->hello_left++;
    }
    if (r->url.sentinel) {
        ok &= cmd_argv(r, 1, (const char *[]){"ROLE"}, NULL, on_role, r) != NULL;
        r->hello_left++;
    }
    if (!ok)
        link_fail(r, "cannot send the handshake");
    else if (r->hello_left == 0)
        become_up(r);
}

static void deliver(tg_redis_t *r, redisReply *rep) {
    tg_redis_cmd_t *c = r->qhead;
    if (c == NULL) {
        link_fail(r, "redis sent a reply nobody asked for");
        return;
    }
    r->qhead = c->next;
    if (r->qhead == NULL) r->qtail = NULL;
    answered(r);
    /* Through Sentinel, a master that was demoted or lost its replicas says so: ask again. */
    if (r->url.sentinel && r->state == TG_REDIS_UP && !r->kill_pending && rep->type == REDIS_REPLY_ERROR &&
        (strncmp(rep->str, "READONLY", 8) == 0 || strncmp(rep->str, "MASTERDOWN", 10) == 0)) {
        if (tg_clock_warn_due(&r->last_warn_ms))
            tg_warn("%s: redis %s answered %.80s: asking the sentinels for the master again", r->who,
                    r->target, rep->str);
        kill_later(r);
    }
    tg_redis_reply_fn fn = c->fn;
    void *ud = c->ud;
    cmd_release(r, c);
    if (fn) fn(rep, ud);
}

static void on_read(struct bufferevent *bev, void *arg) {
    tg_redis_t *r = arg;
    if (bev != r->bev || r->reader == NULL) return;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    while ((n = evbuffer_get_contiguous_space(in)) > 0) {
        if (redisReaderFeed(r->reader, (const char *)evbuffer_pullup(in, (ssize_t)n), n) != REDIS_OK) {
            link_fail(r, "out of memory");
            return;
        }
        evbuffer_drain(in, n);
    }
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(r->reader, &rep) != REDIS_OK) {
            char why[160];
            snprintf(why, sizeof(why), "bad reply from redis: %s", r->reader->errstr);
            link_fail(r, why);
            return;
        }
        if (rep == NULL) return;
        deliver(r, rep);
        freeReplyObject(rep);
        if (bev != r->bev) return; /* a reply closed this link */
    }
}

/* Why a link failed, in words: the TLS library's reason (and the certificate check's), or the
 * socket's error. */
static void describe(tg_redis_t *r, struct bufferevent *bev, short what, char *why, size_t len) {
    unsigned long e = r->ssl ? bufferevent_get_openssl_error(bev) : 0;
    if (e) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        const char *reason = ERR_reason_error_string(e);
        snprintf(why, len, "TLS: %s%s%s", reason ? reason : "handshake failed", v != X509_V_OK ? ": " : "",
                 v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
        ERR_clear_error();
    } else if (what & BEV_EVENT_EOF) {
        snprintf(why, len, "%s",
                 r->connected ? "connection closed by redis" : "connection closed while connecting");
    } else {
        int err = EVUTIL_SOCKET_ERROR();
        snprintf(why, len, "%s", err ? evutil_socket_error_to_string(err) : "connection error");
    }
}

static void try_addr(tg_redis_t *r);

static void on_event(struct bufferevent *bev, short what, void *arg) {
    tg_redis_t *r = arg;
    if (bev != r->bev) return;
    if (r->in_connect) { /* failed inside bufferevent_socket_connect: open_link handles it */
        if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) r->connect_failed = 1;
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        on_connected(r);
        return;
    }
    if (!(what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) return;
    char why[300];
    describe(r, bev, what, why, sizeof(why));
    if (!r->connected && r->ai_next) { /* the name has another address: try it */
        snprintf(r->last_err, sizeof(r->last_err), "%s", why);
        bufferevent_free(r->bev);
        r->bev = NULL;
        try_addr(r);
        return;
    }
    link_fail(r, why);
}

/* A bufferevent for the link (TLS for rediss) connecting to sa; -1 when it cannot start. */
static int open_link(tg_redis_t *r, const struct sockaddr *sa, int salen) {
    struct bufferevent *bev;
    if (r->ssl) {
        SSL *ssl = SSL_new(r->ssl);
        if (ssl == NULL) return -1;
        const char *name = r->server_name[0] ? r->server_name : r->host;
        if (is_ip(name)) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        } else {
            SSL_set_tlsext_host_name(ssl, name);
            SSL_set1_host(ssl, name);
        }
        bev = bufferevent_openssl_socket_new(r->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            SSL_free(ssl);
            return -1;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1); /* Redis closes without close_notify */
    } else {
        bev = bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) return -1;
    }
    r->bev = bev;
    bufferevent_setcb(bev, on_read, NULL, on_event, r);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    r->in_connect = 1;
    r->connect_failed = 0;
    int rc = bufferevent_socket_connect(bev, sa, salen);
    int err = EVUTIL_SOCKET_ERROR();
    r->in_connect = 0;
    if (rc < 0 || r->connect_failed) {
        snprintf(r->last_err, sizeof(r->last_err), "%s",
                 err ? evutil_socket_error_to_string(err) : "cannot connect");
        bufferevent_free(bev);
        r->bev = NULL;
        return -1;
    }
    return 0;
}

static void try_addr(tg_redis_t *r) {
    while (r->ai_next != NULL) {
        struct evutil_addrinfo *a = r->ai_next;
        r->ai_next = a->ai_next;
        if (open_link(r, a->ai_addr, (int)a->ai_addrlen) == 0) return;
    }
    char why[sizeof(r->last_err)];
    snprintf(why, sizeof(why), "%s", r->last_err[0] ? r->last_err : "no address to connect to");
    link_fail(r, why);
}

static void resolved(tg_redis_t *r, int result, struct evutil_addrinfo *ai) {
    if (result != 0 || ai == NULL) {
        char why[400];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", r->host,
                 result ? evutil_gai_strerror(result) : "no address");
        if (ai) evutil_freeaddrinfo(ai);
        link_fail(r, why);
        return;
    }
    r->ai = r->ai_next = ai;
    try_addr(r);
}

static void on_resolved(int result, struct evutil_addrinfo *ai, void *arg) {
    lookup_t *lk = arg;
    tg_redis_t *r = lk->r;
    free(lk);
    if (r == NULL) { /* cancelled, or the link is gone */
        if (ai) evutil_freeaddrinfo(ai);
        return;
    }
    r->lookup = NULL;
    r->dns_req = NULL;
    resolved(r, result, ai);
}

static struct evdns_base *dns_new(struct event_base *base) {
    return evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
}

/* One attempt at host:port (a sentinel or the data node), from the name lookup on; the connect
 * timeout runs from here. */
static void start_target(tg_redis_t *r, const char *host, int port) {
    snprintf(r->host, sizeof(r->host), "%s", host);
    r->port = port;
    r->last_err[0] = '\0';
    r->outstanding = 1; /* the connect itself, answered in become_up */
    r->last_progress_ms = tg_clock_mono_ms();
    struct timeval tv = tg_clock_tv(r->cmd_timeout_ms);
    evtimer_add(r->io_ev, &tv);
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct evutil_addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    if (is_ip(host)) { /* no lookup: a numeric address is converted in place */
        struct evutil_addrinfo *ai = NULL;
        hints.ai_flags = EVUTIL_AI_NUMERICHOST;
        int rc = evutil_getaddrinfo(host, portstr, &hints, &ai);
        resolved(r, rc, ai);
        return;
    }
    if (r->dns == NULL && (r->dns = dns_new(r->base)) == NULL) {
        link_fail(r, "cannot set up the DNS resolver (/etc/resolv.conf)");
        return;
    }
    lookup_t *lk = malloc(sizeof(*lk));
    if (lk == NULL) {
        link_fail(r, "out of memory");
        return;
    }
    lk->r = r;
    r->lookup = lk;
    /* May answer at once (/etc/hosts), calling on_resolved before it returns. */
    struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(r->dns, host, portstr, &hints, on_resolved, lk);
    if (r->lookup == lk) r->dns_req = req;
}

static void start_unix(tg_redis_t *r) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(r->host, sizeof(r->host), "%s", r->url.unix_path);
    r->port = 0;
    r->outstanding = 1;
    r->last_progress_ms = tg_clock_mono_ms();
    struct timeval tv = tg_clock_tv(r->cmd_timeout_ms);
    evtimer_add(r->io_ev, &tv);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->url.unix_path);
    if (open_link(r, (struct sockaddr *)&sa, (int)sizeof(sa)) < 0) {
        char why[sizeof(r->last_err)];
        snprintf(why, sizeof(why), "%s", r->last_err);
        link_fail(r, why);
    }
}

void tg_redis_connect(tg_redis_t *r) {
    if (r->bev != NULL || r->lookup != NULL) return; /* already on its way */
    evtimer_del(r->retry_ev);
    r->state = TG_REDIS_CONNECTING;
    r->kill_pending = 0;
    r->hello_left = 0;
    if (r->url.sentinel) {
        r->phase = PH_SENTINEL;
        r->sentinel_tries = 0;
        snprintf(r->target, sizeof(r->target), "%s", r->url.target);
        start_target(r, r->url.nodes[r->sentinel_i].host, r->url.nodes[r->sentinel_i].port);
    } else if (r->url.unix_path) {
        r->phase = PH_DATA;
        start_unix(r);
    } else {
        r->phase = PH_DATA;
        start_target(r, r->url.host, r->url.port);
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    tg_redis_connect(arg);
}

/* Connect or command timeout, or a kill asked for from inside a callback. */
static void on_io(evutil_socket_t fd, short what, void *arg) {
    tg_redis_t *r = arg;
    if (r->state == TG_REDIS_DOWN) return;
    if (r->kill_pending) {
        go_down(r, "redis refused a command");
        return;
    }
    if (r->outstanding == 0) return;
    int64_t idle = tg_clock_mono_ms() - r->last_progress_ms;
    if (idle < r->cmd_timeout_ms) {
        struct timeval tv = tg_clock_tv((int)(r->cmd_timeout_ms - idle));
        evtimer_add(r->io_ev, &tv);
        return;
    }
    char why[400];
    if (r->state == TG_REDIS_UP)
        snprintf(why, sizeof(why), "redis did not answer in time");
    else
        snprintf(why, sizeof(why), "no connection to %s:%d within %d ms%s", r->host, r->port,
                 r->cmd_timeout_ms, r->lookup ? " (the name lookup got no answer)" : "");
    link_fail(r, why);
}

void tg_redis_drop(tg_redis_t *r) {
    kill_later(r);
}

void tg_redis_healthy(tg_redis_t *r) {
    r->backoff = r->backoff_first;
}

tg_redis_state_t tg_redis_state(const tg_redis_t *r) {
    return r->state == TG_REDIS_UP && r->kill_pending ? TG_REDIS_CLOSING : r->state;
}

const char *tg_redis_target(const tg_redis_t *r) {
    return r->target;
}

/* --- sending ------------------------------------------------------------------------------------ */

static int sendable(const tg_redis_t *r) {
    return r != NULL && r->state == TG_REDIS_UP && r->bev != NULL && !r->kill_pending;
}

tg_redis_cmd_t *tg_redis_send(tg_redis_t *r, const char *cmd, size_t len, tg_redis_reply_fn fn, void *ud) {
    return sendable(r) ? cmd_write(r, cmd, len, fn, ud) : NULL;
}

tg_redis_cmd_t *tg_redis_send_argv(tg_redis_t *r, int argc, const char **argv, const size_t *lens,
                                   tg_redis_reply_fn fn, void *ud) {
    return sendable(r) ? cmd_argv(r, argc, argv, lens, fn, ud) : NULL;
}

void tg_redis_cancel(tg_redis_cmd_t *c) {
    if (c != NULL) c->fn = NULL;
}

/* --- tuning ---------------------------------------------------------------------------------- */

void tg_redis_set_backoff_ms(tg_redis_t *r, int first_ms, int max_ms) {
    if (r == NULL || first_ms <= 0 || max_ms < first_ms) return;
    r->backoff_first = r->backoff = first_ms;
    r->backoff_max = max_ms;
    if (r->state == TG_REDIS_DOWN && evtimer_pending(r->retry_ev, NULL)) { /* now, not after the long wait */
        struct timeval tv = tg_clock_tv(first_ms);
        evtimer_add(r->retry_ev, &tv);
    }
}

void tg_redis_set_timeout_ms(tg_redis_t *r, int cmd_timeout_ms) {
    if (r == NULL || cmd_timeout_ms <= 0) return;
    r->cmd_timeout_ms = cmd_timeout_ms;
    if (r->io_ev && evtimer_pending(r->io_ev, NULL) && !r->kill_pending) {
        struct timeval tv = tg_clock_tv(cmd_timeout_ms); /* on_io re-checks the real idle time */
        evtimer_add(r->io_ev, &tv);
    }
}

int tg_redis_set_nameserver(tg_redis_t *r, const char *addr) {
    if (r == NULL || addr == NULL) return -1;
    if (r->dns == NULL && (r->dns = dns_new(r->base)) == NULL) return -1;
    evdns_base_clear_nameservers_and_suspend(r->dns);
    int rc = evdns_base_nameserver_ip_add(r->dns, addr);
    evdns_base_resume(r->dns);
    return rc == 0 ? 0 : -1;
}

/* --- life ------------------------------------------------------------------------------------ */

tg_redis_t *tg_redis_new(struct event_base *base, const char *url, const char *who,
                         const tg_redis_events_t *ev, char *err, size_t errlen) {
    tg_redis_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->base = base;
    r->who = who;
    r->ev = *ev;
    r->state = TG_REDIS_DOWN;
    r->backoff_first = r->backoff = 250;
    r->backoff_max = 5000;
    r->cmd_timeout_ms = 2000;
    if (getrandom(&r->rng, sizeof(r->rng), 0) != sizeof(r->rng)) r->rng = (uint64_t)(uintptr_t)r;
    r->rng |= 1;
    if (tg_redis_url_parse(url, &r->url, err, errlen) < 0) goto fail;
    if (r->url.cluster) {
        snprintf(err, errlen, "a redis cluster url needs a cluster client (gateway/redis_cluster.h)");
        goto fail;
    }
    snprintf(r->target, sizeof(r->target), "%s", r->url.target);
    if (r->url.tls && tls_take(r, err, errlen) < 0) goto fail;
    /* The resolver reads /etc/resolv.conf and /etc/hosts now, at start-up, rather than on the
     * loop at the first connect (a failure here is retried there). */
    for (int i = 0; i < r->url.n_nodes && r->dns == NULL; i++)
        if (!is_ip(r->url.nodes[i].host)) r->dns = dns_new(base);
    r->retry_ev = evtimer_new(base, on_retry, r);
    r->io_ev = evtimer_new(base, on_io, r);
    r->fail_ev = evtimer_new(base, on_failed, r);
    if (r->retry_ev == NULL || r->io_ev == NULL || r->fail_ev == NULL) {
        snprintf(err, errlen, "cannot create timers");
        goto fail;
    }
    return r;
fail:
    tg_redis_free(r);
    return NULL;
}

void tg_redis_free(tg_redis_t *r) {
    if (r == NULL) return;
    link_close(r);
    if (r->retry_ev) event_free(r->retry_ev);
    if (r->io_ev) event_free(r->io_ev);
    if (r->fail_ev) event_free(r->fail_ev);
    while (r->call != NULL) {
        tg_redis_cmd_t *c = r->call;
        r->call = c->all;
        free(c);
    }
    if (r->dns) evdns_base_free(r->dns, 0);
    SSL_CTX_free(r->ssl);
    tg_redis_url_free(&r->url);
    free(r);
}

/* --- URLs ------------------------------------------------------------------------------------ */

static const struct {
    const char *prefix;
    int tls, sentinel, cluster;
} schemes[] = {
    {"redis://", 0, 0, 0},           {"rediss://", 1, 0, 0},        {"redis+sentinel://", 0, 1, 0},
    {"rediss+sentinel://", 1, 1, 0}, {"redis+cluster://", 0, 0, 1}, {"rediss+cluster://", 1, 0, 1},
};

/* The URL for messages, its password replaced by "***". */
static void redacted(const char *url, char *out, size_t len) {
    const char *s = strstr(url, "://"), *at = strrchr(url, '@');
    const char *colon = s && at ? memchr(s + 3, ':', (size_t)(at - s - 3)) : NULL;
    if (colon == NULL)
        snprintf(out, len, "%s", url);
    else
        snprintf(out, len, "%.*s:***%s", (int)(colon - url), url, at);
}

/* host[:port] or [v6][:port] at p, up to `end`; the host's characters are checked. */
static const char *parse_node(const char *p, const char *end, int defport, tg_redis_node_t *n) {
    size_t hl;
    const char *rest;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL) return NULL;
        hl = (size_t)(close - p - 1);
        p++;
        rest = close + 1;
        if (hl == 0 || hl >= sizeof(n->host) || strspn(p, "0123456789abcdefABCDEF:.") < hl) return NULL;
    } else {
        hl = strcspn(p, ":,/");
        if (p + hl > end) hl = (size_t)(end - p);
        rest = p + hl;
        if (hl == 0 || hl >= sizeof(n->host)) return NULL;
        for (size_t i = 0; i < hl; i++)
            if (!(p[i] >= 'a' && p[i] <= 'z') && !(p[i] >= 'A' && p[i] <= 'Z') &&
                !(p[i] >= '0' && p[i] <= '9') && !strchr(".-_", p[i]))
                return NULL;
    }
    memcpy(n->host, p, hl);
    n->host[hl] = '\0';
    n->port = defport;
    if (rest < end && *rest == ':') {
        char *e;
        long port = strtol(rest + 1, &e, 10);
        if (e == rest + 1 || e > end || port <= 0 || port > 65535) return NULL;
        n->port = (int)port;
        rest = e;
    }
    return rest;
}

static int parse_db(const char *s, int *db) {
    char *end;
    if (*s < '0' || *s > '9') return -1;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 1000000) return -1;
    *db = (int)v;
    return 0;
}

int tg_redis_url_parse(const char *url, tg_redis_url_t *u, char *err, size_t errlen) {
    memset(u, 0, sizeof(*u));
    if (url == NULL) goto bad;
    if (strncmp(url, "unix://", 7) == 0) {
        if (url[7] != '/') goto bad;
        u->unix_path = strdup(url + 7);
        snprintf(u->target, sizeof(u->target), "%s", url + 7);
        if (u->unix_path == NULL) goto bad;
        return 0;
    }
    size_t si = 0, ns = sizeof(schemes) / sizeof(schemes[0]);
    while (si < ns && strncmp(url, schemes[si].prefix, strlen(schemes[si].prefix)) != 0)
        si++;
    if (si == ns) goto bad;
    u->cluster = schemes[si].cluster;
    u->tls = schemes[si].tls;
    u->sentinel = schemes[si].sentinel;
    const char *p = url + strlen(schemes[si].prefix), *at = strrchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) goto bad;
        if (colon > p) u->user = strndup(p, (size_t)(colon - p));
        u->password = strndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    /* The hosts run to the first '/' outside brackets. */
    const char *end = p;
    for (int in = 0; *end && (in || *end != '/'); end++)
        in = *end == '[' ? 1 : *end == ']' ? 0 : in;
    for (;;) {
        tg_redis_node_t n;
        const char *rest = parse_node(p, end, u->sentinel ? 26379 : 6379, &n);
        if (rest == NULL || (rest < end && *rest != ',')) goto bad;
        tg_redis_node_t *grown = realloc(u->nodes, (size_t)(u->n_nodes + 1) * sizeof(*grown));
        if (grown == NULL) goto bad;
        u->nodes = grown;
        u->nodes[u->n_nodes++] = n;
        if (rest == end) break;
        p = rest + 1;
    }
    if (u->n_nodes > 1 && !u->sentinel && !u->cluster) goto bad;
    snprintf(u->host, sizeof(u->host), "%s", u->nodes[0].host);
    u->port = u->nodes[0].port;
    const char *rest = end;
    if (u->sentinel) { /* /MASTER_NAME[/db] */
        if (*rest != '/' || rest[1] == '\0' || rest[1] == '/') goto bad;
        const char *name = rest + 1, *slash = strchr(name, '/');
        size_t nl = slash ? (size_t)(slash - name) : strlen(name);
        if (nl >= sizeof(u->master)) goto bad;
        memcpy(u->master, name, nl);
        u->master[nl] = '\0';
        if (slash && slash[1] != '\0' && parse_db(slash + 1, &u->db) < 0) goto bad;
        int o = snprintf(u->target, sizeof(u->target), "master %s via sentinel", u->master);
        for (int i = 0; i < u->n_nodes && o > 0 && (size_t)o < sizeof(u->target); i++)
            o += snprintf(u->target + o, sizeof(u->target) - (size_t)o, "%s%s:%d", i ? "," : " ",
                          u->nodes[i].host, u->nodes[i].port);
    } else if (u->cluster) { /* a cluster has only db 0 */
        if (*rest != '\0' && strcmp(rest, "/") != 0 && strcmp(rest, "/0") != 0) goto bad;
        int o = snprintf(u->target, sizeof(u->target), "cluster");
        for (int i = 0; i < u->n_nodes && o > 0 && (size_t)o < sizeof(u->target); i++)
            o += snprintf(u->target + o, sizeof(u->target) - (size_t)o, "%s%s:%d", i ? "," : " ",
                          u->nodes[i].host, u->nodes[i].port);
    } else {
        if (*rest == '/' && rest[1] != '\0') {
            if (parse_db(rest + 1, &u->db) < 0) goto bad;
        } else if (*rest != '\0' && strcmp(rest, "/") != 0) {
            goto bad;
        }
        snprintf(u->target, sizeof(u->target), "%s:%d", u->host, u->port);
    }
    return 0;
bad:
    tg_redis_url_free(u);
    char shown[300];
    redacted(url ? url : "", shown, sizeof(shown));
    snprintf(err, errlen,
             "bad redis url '%s' (want redis[s]://[[user]:password@]host[:port][/db], "
             "redis[s]+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER_NAME[/db], "
             "redis[s]+cluster://[[user]:password@]host[:port][,host[:port]...] or unix:///path)",
             shown);
    return -1;
}

void tg_redis_url_free(tg_redis_url_t *u) {
    free(u->unix_path);
    free(u->user);
    free(u->password);
    free(u->nodes);
    u->unix_path = u->user = u->password = NULL;
    u->nodes = NULL;
    u->n_nodes = 0;
}
