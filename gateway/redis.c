/* redis.c — our connection to Redis: hiredis 0.14 async on a worker's libevent loop, with
 * AUTH and SELECT from the URL, a progress timer (a Redis that answers nothing for the command
 * timeout while something is outstanding counts as down), and reconnects after a doubling
 * wait. The owner hears of the link through on_up/on_down (redis.h) and sends commands, each
 * with a reply callback; a command's slot is recycled, never freed before the connection, so
 * a reply that comes after a cancel finds valid memory. Also the redis URL parser, which the
 * synchronous `tollgate report` shares. */
#include "gateway/redis.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

struct tg_redis_s {
    struct event_base *base;
    tg_redis_url_t url;
    const char *who; /* log prefix */
    tg_redis_events_t ev;
    redisAsyncContext *ac;
    tg_redis_state_t state; /* never TG_REDIS_CLOSING: kill_pending says that */
    /* timers: reconnect wait; connect/command progress (also the deferred kill); failed replies */
    struct event *retry_ev, *io_ev, *fail_ev;
    int backoff_first, backoff_max, backoff, cmd_timeout_ms, kill_pending;
    size_t outstanding;
    int64_t last_progress_ms, last_warn_ms;
    /* command slots: free, failed (a NULL reply to deliver from fail_ev), and all of them */
    tg_redis_cmd_t *cfree, *cfailed, *call;
};

struct tg_redis_cmd_s {
    tg_redis_t *r;
    tg_redis_reply_fn fn; /* NULL once cancelled */
    void *ud;
    tg_redis_cmd_t *next; /* free or failed list */
    tg_redis_cmd_t *all;
};

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static struct timeval ms_tv(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* A warning that may repeat per command is printed at most every 10 s. */
static int warn_due(tg_redis_t *r) {
    int64_t now = mono_ms();
    if (r->last_warn_ms && now - r->last_warn_ms < 10000) return 0;
    r->last_warn_ms = now;
    return 1;
}

/* --- progress ------------------------------------------------------------------------------ */

/* Counts a command for the progress timer: a Redis that answers nothing for cmd_timeout_ms
 * while something is outstanding is treated as down. */
static void issued(tg_redis_t *r) {
    if (r->outstanding++ == 0) r->last_progress_ms = mono_ms();
    if (!evtimer_pending(r->io_ev, NULL)) {
        struct timeval tv = ms_tv(r->cmd_timeout_ms);
        evtimer_add(r->io_ev, &tv);
    }
}

static void answered(tg_redis_t *r) {
    if (r->outstanding > 0) r->outstanding--;
    r->last_progress_ms = mono_ms();
}

/* Drops the connection from outside hiredis's callbacks (a zero timer on io_ev). */
static void kill_later(tg_redis_t *r) {
    struct timeval tv = {0, 0};
    r->kill_pending = 1;
    evtimer_add(r->io_ev, &tv);
}

/* --- the link ------------------------------------------------------------------------------- */

/* The link is gone (or never came): the owner hears of it, and a retry is scheduled. */
static void go_down(tg_redis_t *r, const char *why) {
    int loud = r->state == TG_REDIS_UP || r->backoff == r->backoff_first;
    r->state = TG_REDIS_DOWN;
    r->outstanding = 0;
    r->kill_pending = 0;
    evtimer_del(r->io_ev);
    r->ev.on_down(r->ev.ud, why, loud);
    struct timeval tv = ms_tv(r->backoff);
    evtimer_add(r->retry_ev, &tv);
    r->backoff = r->backoff * 2 < r->backoff_max ? r->backoff * 2 : r->backoff_max;
}

static void on_setup(redisAsyncContext *ac, void *reply, void *priv) {
    tg_redis_t *r = ac->data;
    redisReply *rep = reply;
    if (rep == NULL || r == NULL || r->ac != ac) return;
    answered(r);
    if (rep->type == REDIS_REPLY_ERROR) {
        if (warn_due(r)) tg_warn("%s: redis %s failed: %s", r->who, (const char *)priv, rep->str);
        kill_later(r);
    }
}

static void on_connect(const redisAsyncContext *cac, int status) {
    tg_redis_t *r = cac->data;
    if (r == NULL || r->ac != cac) return;
    if (status != REDIS_OK) {
        r->ac = NULL; /* hiredis frees it after this callback */
        go_down(r, cac->errstr);
        return;
    }
    answered(r);
    r->state = TG_REDIS_UP;
    if (r->url.password) {
        int rc = r->url.user
                     ? redisAsyncCommand(r->ac, on_setup, "AUTH", "AUTH %s %s", r->url.user, r->url.password)
                     : redisAsyncCommand(r->ac, on_setup, "AUTH", "AUTH %s", r->url.password);
        if (rc == REDIS_OK) issued(r);
    }
    if (r->url.db > 0 && redisAsyncCommand(r->ac, on_setup, "SELECT", "SELECT %d", r->url.db) == REDIS_OK)
        issued(r);
    r->ev.on_up(r->ev.ud);
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
    tg_redis_t *r = cac->data;
    if (r == NULL || r->ac != cac) return;
    r->ac = NULL; /* hiredis frees it after this callback */
    go_down(r, status == REDIS_OK ? "closed" : cac->errstr);
}

void tg_redis_connect(tg_redis_t *r) {
    redisAsyncContext *ac = r->url.unix_path ? redisAsyncConnectUnix(r->url.unix_path)
                                             : redisAsyncConnect(r->url.host, r->url.port);
    if (ac == NULL || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        go_down(r, why);
        return;
    }
    ac->data = r;
    r->ac = ac;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->state = TG_REDIS_CONNECTING;
    r->outstanding = 0;
    r->kill_pending = 0;
    issued(r); /* the connect itself runs against the same timeout */
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    tg_redis_connect(arg);
}

/* Connect or command timeout, or a kill asked for from inside a hiredis callback. */
static void on_io(evutil_socket_t fd, short what, void *arg) {
    tg_redis_t *r = arg;
    if (r->ac == NULL || r->state == TG_REDIS_DOWN) return;
    const char *why = "redis did not answer in time";
    if (!r->kill_pending) {
        if (r->outstanding == 0) return;
        int64_t idle = mono_ms() - r->last_progress_ms;
        if (idle < r->cmd_timeout_ms) {
            struct timeval tv = ms_tv((int)(r->cmd_timeout_ms - idle));
            evtimer_add(r->io_ev, &tv);
            return;
        }
    } else {
        why = "redis refused a command";
    }
    redisAsyncContext *ac = r->ac;
    r->ac = NULL; /* its callbacks (NULL replies, disconnect) now see a stranger and return */
    redisAsyncFree(ac);
    go_down(r, why);
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
    return r->url.target;
}

/* --- commands -------------------------------------------------------------------------------- */

static void cmd_release(tg_redis_t *r, tg_redis_cmd_t *c) {
    c->fn = NULL;
    c->ud = NULL;
    c->next = r->cfree;
    r->cfree = c;
}

/* A NULL reply means the link is going away, usually from inside redisAsyncFree: the owner
 * hears of it from a zero timer, where it may safely send commands again. */
static void on_reply(redisAsyncContext *ac, void *reply, void *priv) {
    tg_redis_cmd_t *c = priv;
    tg_redis_t *r = c->r;
    if (reply == NULL) {
        c->next = r->cfailed;
        r->cfailed = c;
        struct timeval tv = {0, 0};
        evtimer_add(r->fail_ev, &tv);
        return;
    }
    if (r->ac == ac) answered(r);
    tg_redis_reply_fn fn = c->fn;
    void *ud = c->ud;
    cmd_release(r, c);
    if (fn) fn(reply, ud);
}

static void on_failed(evutil_socket_t fd, short what, void *arg) {
    tg_redis_t *r = arg;
    tg_redis_cmd_t *c = r->cfailed;
    r->cfailed = NULL;
    while (c != NULL) {
        tg_redis_cmd_t *next = c->next;
        tg_redis_reply_fn fn = c->fn;
        void *ud = c->ud;
        cmd_release(r, c);
        if (fn) fn(NULL, ud);
        c = next;
    }
}

static tg_redis_cmd_t *cmd_take(tg_redis_t *r, tg_redis_reply_fn fn, void *ud) {
    if (r == NULL || r->state != TG_REDIS_UP || r->ac == NULL || r->kill_pending) return NULL;
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
    return c;
}

static tg_redis_cmd_t *cmd_sent(tg_redis_t *r, tg_redis_cmd_t *c, int rc) {
    if (rc != REDIS_OK) {
        cmd_release(r, c);
        return NULL;
    }
    issued(r);
    return c;
}

tg_redis_cmd_t *tg_redis_send(tg_redis_t *r, const char *cmd, size_t len, tg_redis_reply_fn fn, void *ud) {
    tg_redis_cmd_t *c = cmd_take(r, fn, ud);
    if (c == NULL) return NULL;
    return cmd_sent(r, c, redisAsyncFormattedCommand(r->ac, on_reply, c, cmd, len));
}

tg_redis_cmd_t *tg_redis_send_argv(tg_redis_t *r, int argc, const char **argv, const size_t *lens,
                                   tg_redis_reply_fn fn, void *ud) {
    tg_redis_cmd_t *c = cmd_take(r, fn, ud);
    if (c == NULL) return NULL;
    return cmd_sent(r, c, redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, lens));
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
        struct timeval tv = ms_tv(first_ms);
        evtimer_add(r->retry_ev, &tv);
    }
}

void tg_redis_set_timeout_ms(tg_redis_t *r, int cmd_timeout_ms) {
    if (r == NULL || cmd_timeout_ms <= 0) return;
    r->cmd_timeout_ms = cmd_timeout_ms;
    if (r->io_ev && evtimer_pending(r->io_ev, NULL) && !r->kill_pending) {
        struct timeval tv = ms_tv(cmd_timeout_ms); /* on_io re-checks the real idle time */
        evtimer_add(r->io_ev, &tv);
    }
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
    if (tg_redis_url_parse(url, &r->url, err, errlen) < 0) goto fail;
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
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    if (r->retry_ev) event_free(r->retry_ev);
    if (r->io_ev) event_free(r->io_ev);
    if (r->fail_ev) event_free(r->fail_ev);
    while (r->call != NULL) {
        tg_redis_cmd_t *c = r->call;
        r->call = c->all;
        free(c);
    }
    tg_redis_url_free(&r->url);
    free(r);
}

/* --- URLs ------------------------------------------------------------------------------------ */

/* redis://[[user]:password@]host[:port][/db] or unix:///path. The host is resolved once. */
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
    if (strncmp(url, "redis://", 8) != 0) goto bad;
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) goto bad;
        if (colon > p) u->user = strndup(p, (size_t)(colon - p));
        u->password = strndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    char host[256];
    size_t hl;
    const char *rest;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL) goto bad;
        hl = (size_t)(close - p - 1);
        p++;
        rest = close + 1;
    } else {
        hl = strcspn(p, ":/");
        rest = p + hl;
    }
    if (hl == 0 || hl >= sizeof(host)) goto bad;
    memcpy(host, p, hl);
    host[hl] = '\0';
    u->port = 6379;
    char *end;
    if (*rest == ':') {
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port <= 0 || port > 65535) goto bad;
        u->port = (int)port;
        rest = end;
    }
    if (*rest == '/' && rest[1] != '\0') {
        long db = strtol(rest + 1, &end, 10);
        if (*end != '\0' || db < 0 || db > 1000000) goto bad;
        u->db = (int)db;
    } else if (*rest != '\0' && strcmp(rest, "/") != 0) {
        goto bad;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve redis host %s: %s", host, gai_strerror(rc));
        tg_redis_url_free(u);
        return -1;
    }
    const void *addr = ai->ai_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    inet_ntop(ai->ai_family, addr, u->host, sizeof(u->host));
    freeaddrinfo(ai);
    snprintf(u->target, sizeof(u->target), "%s:%d", host, u->port);
    return 0;
bad:
    tg_redis_url_free(u);
    snprintf(err, errlen,
             "bad redis url '%s' (want redis://[[user]:password@]host[:port][/db] or unix:///path)",
             url ? url : "");
    return -1;
}

void tg_redis_url_free(tg_redis_url_t *u) {
    free(u->unix_path);
    free(u->user);
    free(u->password);
    u->unix_path = u->user = u->password = NULL;
}
