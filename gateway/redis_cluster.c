/* redis_cluster.c — Redis Cluster for one worker's loop, made of our own links (gateway/redis.c):
 * one link per node the slot map names, the map itself (slot -> node, from CLUSTER SLOTS), and
 * commands, each encoded once and sent to the master of its key's slot. A reply that says MOVED
 * updates that slot and sends the command again at once (and asks for the whole map again in
 * the background); ASK sends ASKING and the command to the node named, leaving the map alone;
 * CLUSTERDOWN, TRYAGAIN and a node not yet connected wait 100 ms and try again, up to a limit.
 * A link that goes down (a master that failed) makes the map be asked for again, from any node
 * that answers, so commands follow a failover once the cluster has promoted a replica. Commands
 * enter through tg_rcluster_send_argv and leave through their reply callback, exactly once. */
#include "gateway/redis_cluster.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define MAX_HOPS 5     /* MOVED or ASK followed per command */
#define MAX_WAITS 30   /* 100 ms waits for a node or a cluster that is not ready: 3 s */
#define WAIT_MS 100    /* between those waits */
#define REFRESH_MS 100 /* a lost link or a redirect asks for the map again after this */
/* Replicas come and go without a MOVED or a lost link (and CLUSTER SLOTS lists a new one only once the
 * others heard its offset): the map is renewed this often, whatever happens. */
#define TICK_MS 1000
#define MAX_NODES 1024 /* far above any real cluster; bounds a map that names nonsense */

typedef struct {
    tg_rcluster_t *c;
    char host[256];
    int port;
    tg_redis_t *link;
    int replicas; /* as a master: the replicas the map lists for it (CLUSTER SLOTS omits failed ones) */
} node_t;

struct tg_rcluster_cmd_s {
    tg_rcluster_t *c;
    char *buf; /* the command, RESP-encoded once */
    size_t len;
    int slot;   /* -1: a keyless command for one master */
    int master; /* that master's index in c->masters */
    int hops, waits;
    int node;   /* where it went last */
    int asking; /* send ASKING first on the next dispatch */
    tg_redis_cmd_t *inner;
    struct event *timer; /* a wait, or a deferred NULL reply */
    int failed;          /* the timer delivers NULL */
    tg_redis_reply_fn fn;
    void *ud;
    tg_rcluster_cmd_t *prev, *next; /* every live command, for tg_rcluster_free */
};

struct tg_rcluster_s {
    struct event_base *base;
    char who[64];
    char prefix[16]; /* "redis://" or "rediss://" */
    char *auth;      /* "user:password@" or "", for every node's URL */
    node_t **nodes;
    int n_nodes;
    short slots[TG_REDIS_SLOTS]; /* node index, -1 unknown */
    int map_known;
    int started;            /* tg_rcluster_connect was called: new nodes connect as they are made */
    int masters[MAX_NODES]; /* distinct nodes of the map, in slot order */
    int n_masters;
    int refreshing;            /* a CLUSTER SLOTS is in flight */
    tg_redis_cmd_t *refresh_q; /* that command */
    struct event *refresh_timer;
    struct event *tick; /* the map is asked for again every TICK_MS, whatever happens */
    tg_rcluster_cmd_t *cmds;
};

/* --- slots -------------------------------------------------------------------------------- */

static unsigned crc16(const char *p, size_t n) {
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)p[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

unsigned tg_redis_slot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & (TG_REDIS_SLOTS - 1);
    }
    return crc16(key, len) & (TG_REDIS_SLOTS - 1);
}

int tg_redis_redirect_parse(const char *err, size_t len, unsigned *slot, char *host, size_t hostlen,
                            int *port) {
    int kind = len > 6 && memcmp(err, "MOVED ", 6) == 0 ? 1 : len > 4 && memcmp(err, "ASK ", 4) == 0 ? 2 : 0;
    if (kind == 0) return 0;
    char text[400];
    snprintf(text, sizeof(text), "%.*s", (int)(len < sizeof(text) ? len : sizeof(text) - 1), err);
    char *p = text + (kind == 1 ? 6 : 4), *end;
    unsigned long s = strtoul(p, &end, 10);
    if (end == p || *end != ' ' || s >= TG_REDIS_SLOTS) return 0;
    char *addr = end + 1, *colon = strrchr(addr, ':');
    if (colon == NULL) return 0;
    long pt = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || pt <= 0 || pt > 65535 || (size_t)(colon - addr) >= hostlen) return 0;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *slot = (unsigned)s;
    *port = (int)pt;
    return kind;
}

/* --- nodes -------------------------------------------------------------------------------- */

static void refresh_soon(tg_rcluster_t *c);

static void on_node_up(void *ud) {
    node_t *n = ud;
    tg_redis_healthy(n->link);
    if (!n->c->map_known) refresh_soon(n->c);
}

static void on_node_down(void *ud, const char *why, int loud) {
    node_t *n = ud;
    if (loud) tg_debug("%s: cluster node %s:%d down (%s)", n->c->who, n->host, n->port, why ? why : "?");
    refresh_soon(n->c); /* a failed master: its replica takes over its slots */
}

/* The node at host:port, made (and connecting) when new; -1 when it cannot be. */
static int node_at(tg_rcluster_t *c, const char *host, int port) {
    for (int i = 0; i < c->n_nodes; i++)
        if (c->nodes[i]->port == port && strcmp(c->nodes[i]->host, host) == 0) return i;
    if (c->n_nodes >= MAX_NODES) return -1;
    node_t **grown = realloc(c->nodes, (size_t)(c->n_nodes + 1) * sizeof(*grown));
    if (grown == NULL) return -1;
    c->nodes = grown;
    node_t *n = calloc(1, sizeof(*n));
    if (n == NULL) return -1;
    n->c = c;
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    char url[700], err[256];
    int v6 = strchr(host, ':') != NULL;
    snprintf(url, sizeof(url), "%s%s%s%s%s:%d", c->prefix, c->auth, v6 ? "[" : "", host, v6 ? "]" : "", port);
    const tg_redis_events_t ev = {on_node_up, on_node_down, n};
    if ((n->link = tg_redis_new(c->base, url, c->who, &ev, err, sizeof(err))) == NULL) {
        tg_warn("%s: cluster node %s:%d unusable: %s", c->who, host, port, err);
        free(n);
        return -1;
    }
    c->nodes[c->n_nodes] = n;
    if (c->started) tg_redis_connect(n->link);
    return c->n_nodes++;
}

/* --- the map ------------------------------------------------------------------------------ */

static void on_slots(const redisReply *rep, void *ud) {
    node_t *from = ud;
    tg_rcluster_t *c = from->c;
    c->refreshing = 0;
    c->refresh_q = NULL;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
        if (rep && rep->type == REDIS_REPLY_ERROR) tg_warn("%s: CLUSTER SLOTS refused: %s", c->who, rep->str);
        refresh_soon(c);
        return;
    }
    short slots[TG_REDIS_SLOTS];
    for (int i = 0; i < TG_REDIS_SLOTS; i++)
        slots[i] = -1;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2 || e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply *m = e->element[2];
        /* An empty or "?" address means "the node you asked". */
        const char *host = m->element[0]->type == REDIS_REPLY_STRING && m->element[0]->len > 0 &&
                                   strcmp(m->element[0]->str, "?") != 0
                               ? m->element[0]->str
                               : from->host;
        int ix = node_at(c, host, (int)m->element[1]->integer);
        if (ix < 0 || lo < 0 || hi >= TG_REDIS_SLOTS || lo > hi) continue;
        c->nodes[ix]->replicas = (int)e->elements - 3;
        for (long long s = lo; s <= hi; s++)
            slots[s] = (short)ix;
    }
    memcpy(c->slots, slots, sizeof(slots));
    c->map_known = 1;
    c->n_masters = 0;
    for (int s = 0; s < TG_REDIS_SLOTS; s++) {
        if (slots[s] < 0) continue;
        int seen = 0;
        for (int k = 0; k < c->n_masters && !seen; k++)
            seen = c->masters[k] == slots[s];
        if (!seen) c->masters[c->n_masters++] = slots[s];
    }
    tg_debug("%s: cluster map from %s:%d: %d masters", c->who, from->host, from->port, c->n_masters);
}

/* Asks an answering node for the map (one request at a time). */
static void refresh_now(evutil_socket_t fd, short what, void *arg) {
    tg_rcluster_t *c = arg;
    if (c->refreshing) return;
    for (int i = 0; i < c->n_nodes; i++) {
        node_t *n = c->nodes[(i + c->n_nodes) % c->n_nodes];
        if (tg_redis_state(n->link) != TG_REDIS_UP) continue;
        const char *argv[2] = {"CLUSTER", "SLOTS"};
        size_t lens[2] = {7, 5};
        if ((c->refresh_q = tg_redis_send_argv(n->link, 2, argv, lens, on_slots, n)) != NULL) {
            c->refreshing = 1;
            return;
        }
    }
    /* nobody answers yet: a node coming up calls again (on_node_up), else retry */
    if (!c->map_known) refresh_soon(c);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    tg_rcluster_t *c = arg;
    if (c->map_known) refresh_soon(c);
}

static void refresh_soon(tg_rcluster_t *c) {
    if (c->refreshing || evtimer_pending(c->refresh_timer, NULL)) return;
    struct timeval tv = {0, REFRESH_MS * 1000};
    evtimer_add(c->refresh_timer, &tv);
}

/* --- commands ----------------------------------------------------------------------------- */

static void cmd_free(tg_rcluster_cmd_t *cmd) {
    tg_rcluster_t *c = cmd->c;
    if (cmd->prev)
        cmd->prev->next = cmd->next;
    else
        c->cmds = cmd->next;
    if (cmd->next) cmd->next->prev = cmd->prev;
    if (cmd->timer) event_free(cmd->timer);
    free(cmd->buf);
    free(cmd);
}

static void finish(tg_rcluster_cmd_t *cmd, const redisReply *rep) {
    tg_redis_reply_fn fn = cmd->fn;
    void *ud = cmd->ud;
    cmd_free(cmd);
    fn(rep, ud);
}

static void dispatch(tg_rcluster_cmd_t *cmd);

/* Waits WAIT_MS and tries again, or (out of waits) answers NULL. */
static void wait_retry(tg_rcluster_cmd_t *cmd) {
    if (++cmd->waits > MAX_WAITS) cmd->failed = 1;
    struct timeval tv = {0, cmd->failed ? 0 : WAIT_MS * 1000};
    evtimer_add(cmd->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    tg_rcluster_cmd_t *cmd = arg;
    if (cmd->failed)
        finish(cmd, NULL);
    else
        dispatch(cmd);
}

static void on_cmd_reply(const redisReply *rep, void *ud) {
    tg_rcluster_cmd_t *cmd = ud;
    tg_rcluster_t *c = cmd->c;
    cmd->inner = NULL;
    if (rep == NULL) { /* the link dropped or timed out: whether it ran is unknown */
        refresh_soon(c);
        finish(cmd, NULL);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        char host[256];
        unsigned slot;
        int port;
        int kind = tg_redis_redirect_parse(rep->str, rep->len, &slot, host, sizeof(host), &port);
        if (kind && ++cmd->hops <= MAX_HOPS) {
            int ix = node_at(c, host, port);
            if (ix >= 0) {
                if (kind == 1) { /* MOVED: the slot lives there now */
                    c->slots[slot] = (short)ix;
                    refresh_soon(c);
                } else {
                    cmd->asking = 1;
                }
                cmd->node = ix;
                dispatch(cmd);
                return;
            }
        }
        if (!kind &&
            (strncmp(rep->str, "CLUSTERDOWN", 11) == 0 || strncmp(rep->str, "TRYAGAIN", 8) == 0 ||
             strncmp(rep->str, "LOADING", 7) == 0 || strncmp(rep->str, "READONLY", 8) == 0) &&
            cmd->waits < MAX_WAITS) {
            refresh_soon(c);
            cmd->node = -1;
            wait_retry(cmd);
            return;
        }
    }
    finish(cmd, rep);
}

static void ignore_reply(const redisReply *rep, void *ud) {
    (void)rep;
    (void)ud;
}

/* Sends the command to its node: the one an ASK named, else the slot's master. */
static void dispatch(tg_rcluster_cmd_t *cmd) {
    tg_rcluster_t *c = cmd->c;
    int ix = cmd->asking                  ? cmd->node
             : cmd->slot >= 0             ? c->slots[cmd->slot]
             : cmd->master < c->n_masters ? c->masters[cmd->master]
                                          : -1;
    if (ix < 0 || tg_redis_state(c->nodes[ix]->link) != TG_REDIS_UP) {
        /* No master, or its link is down: a replica may have been promoted since, which only the
         * map tells (the dead node's reconnects back off to seconds). */
        refresh_soon(c);
        wait_retry(cmd);
        return;
    }
    tg_redis_t *link = c->nodes[ix]->link;
    if (cmd->asking) {
        static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
        tg_redis_send(link, asking, sizeof(asking) - 1, ignore_reply, NULL);
        cmd->asking = 0;
    }
    cmd->node = ix;
    if ((cmd->inner = tg_redis_send(link, cmd->buf, cmd->len, on_cmd_reply, cmd)) == NULL) wait_retry(cmd);
}

/* Takes a command already in the wire format to slot `slot` (or, when it is -1, to master number
 * `master`); the command is copied. */
static tg_rcluster_cmd_t *submit(tg_rcluster_t *c, const char *buf, size_t len, int slot, int master,
                                 tg_redis_reply_fn fn, void *ud) {
    tg_rcluster_cmd_t *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL) return NULL;
    if ((cmd->buf = malloc(len)) == NULL || (cmd->timer = evtimer_new(c->base, on_timer, cmd)) == NULL) {
        free(cmd->buf);
        free(cmd);
        return NULL;
    }
    memcpy(cmd->buf, buf, len);
    cmd->len = len;
    cmd->c = c;
    cmd->slot = slot;
    cmd->master = master;
    cmd->node = -1;
    cmd->fn = fn;
    cmd->ud = ud;
    cmd->next = c->cmds;
    if (c->cmds) c->cmds->prev = cmd;
    c->cmds = cmd;
    /* A node not up yet waits on the timer, never calling back from inside this call. */
    dispatch(cmd);
    return cmd;
}

tg_rcluster_cmd_t *tg_rcluster_send_argv(tg_rcluster_t *c, int argc, const char **argv, const size_t *lens,
                                         int key_arg, tg_redis_reply_fn fn, void *ud) {
    if (c == NULL || !c->map_known || key_arg >= argc || (key_arg < 0 && -key_arg - 1 >= c->n_masters))
        return NULL;
    char *buf;
    int len = redisFormatCommandArgv(&buf, argc, argv, lens);
    if (len < 0) return NULL;
    tg_rcluster_cmd_t *cmd =
        submit(c, buf, (size_t)len, key_arg >= 0 ? (int)tg_redis_slot(argv[key_arg], lens[key_arg]) : -1,
               key_arg >= 0 ? 0 : -key_arg - 1, fn, ud);
    redisFreeCommand(buf);
    return cmd;
}

tg_rcluster_cmd_t *tg_rcluster_send(tg_rcluster_t *c, const char *buf, size_t len, unsigned slot,
                                    tg_redis_reply_fn fn, void *ud) {
    if (c == NULL || !c->map_known || slot >= TG_REDIS_SLOTS || len == 0) return NULL;
    return submit(c, buf, len, (int)slot, 0, fn, ud);
}

void tg_rcluster_cancel(tg_rcluster_cmd_t *cmd) {
    if (cmd == NULL) return;
    if (cmd->inner) tg_redis_cancel(cmd->inner);
    cmd_free(cmd);
}

/* --- the cluster -------------------------------------------------------------------------- */

int tg_rcluster_ready(const tg_rcluster_t *c) {
    if (c == NULL || !c->map_known) return 0;
    for (int s = 0; s < TG_REDIS_SLOTS; s++)
        if (c->slots[s] < 0 || tg_redis_state(c->nodes[c->slots[s]]->link) != TG_REDIS_UP) return 0;
    return 1;
}

int tg_rcluster_node_of(const tg_rcluster_t *c, unsigned slot) {
    return c && slot < TG_REDIS_SLOTS ? c->slots[slot] : -1;
}

int tg_rcluster_slot_up(const tg_rcluster_t *c, unsigned slot) {
    int ix = tg_rcluster_node_of(c, slot);
    return ix >= 0 && tg_redis_state(c->nodes[ix]->link) == TG_REDIS_UP;
}

int tg_rcluster_replicas(const tg_rcluster_t *c, unsigned slot) {
    if (c == NULL || slot >= TG_REDIS_SLOTS || c->slots[slot] < 0) return 0;
    return c->nodes[c->slots[slot]]->replicas;
}

void tg_rcluster_refresh(tg_rcluster_t *c) {
    if (c) refresh_soon(c);
}

int tg_rcluster_masters(const tg_rcluster_t *c) {
    return c && c->map_known ? c->n_masters : 0;
}

tg_rcluster_t *tg_rcluster_new(struct event_base *base, const char *url, const char *who, char *err,
                               size_t errlen) {
    int tls = strncmp(url, "rediss+cluster://", 17) == 0;
    if (!tls && strncmp(url, "redis+cluster://", 16) != 0) {
        snprintf(err, errlen, "not a cluster url (want redis[s]+cluster://host:port[,host:port...])");
        return NULL;
    }
    const char *rest = url + (tls ? 17 : 16), *slash = strchr(rest, '/');
    if (slash && strcmp(slash, "/") != 0 && strcmp(slash, "/0") != 0) {
        snprintf(err, errlen, "a redis cluster url names no database (a cluster has only db 0)");
        return NULL;
    }
    size_t hl = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *at = memrchr(rest, '@', hl), *hosts = at ? at + 1 : rest;
    tg_rcluster_t *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->refresh_timer = evtimer_new(base, refresh_now, c)) == NULL ||
        (c->tick = event_new(base, -1, EV_PERSIST, on_tick, c)) == NULL)
        goto oom;
    c->base = base;
    snprintf(c->who, sizeof(c->who), "%s", who ? who : "redis");
    snprintf(c->prefix, sizeof(c->prefix), "%s", tls ? "rediss://" : "redis://");
    if ((c->auth = strndup(rest, at ? (size_t)(hosts - rest) : 0)) == NULL) goto oom;
    for (int i = 0; i < TG_REDIS_SLOTS; i++)
        c->slots[i] = -1;
    /* Each seed must parse as a plain redis URL of its own (host, port, the default 6379). */
    for (const char *p = hosts; p < rest + hl;) {
        size_t n = strcspn(p, ",");
        if (p + n > rest + hl) n = (size_t)(rest + hl - p);
        char one[700];
        tg_redis_url_t u;
        snprintf(one, sizeof(one), "%s%.*s", c->prefix, (int)n, p);
        if (n == 0 || tg_redis_url_parse(one, &u, err, errlen) != 0 || u.unix_path != NULL) {
            if (n == 0 || u.unix_path == NULL)
                snprintf(
                    err, errlen,
                    "bad redis cluster url (want redis[s]+cluster://[[user]:password@]host[:port][,...])");
            if (n > 0) tg_redis_url_free(&u);
            tg_rcluster_free(c);
            return NULL;
        }
        int ix = node_at(c, u.host, u.port);
        tg_redis_url_free(&u);
        if (ix < 0) {
            snprintf(err, errlen, "redis cluster: a seed node is unusable");
            tg_rcluster_free(c);
            return NULL;
        }
        p += n + 1;
    }
    if (c->n_nodes == 0) {
        snprintf(err, errlen, "bad redis cluster url: no node");
        tg_rcluster_free(c);
        return NULL;
    }
    return c;
oom:
    tg_rcluster_free(c);
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void tg_rcluster_connect(tg_rcluster_t *c) {
    if (c == NULL) return;
    c->started = 1;
    struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
    evtimer_add(c->tick, &tv);
    for (int i = 0; i < c->n_nodes; i++)
        tg_redis_connect(c->nodes[i]->link); /* the first to answer gives the map (on_node_up) */
}

void tg_rcluster_free(tg_rcluster_t *c) {
    if (c == NULL) return;
    while (c->cmds) {
        tg_rcluster_cmd_t *cmd = c->cmds;
        if (cmd->inner) tg_redis_cancel(cmd->inner);
        cmd_free(cmd);
    }
    for (int i = 0; i < c->n_nodes; i++) {
        tg_redis_free(c->nodes[i]->link);
        free(c->nodes[i]);
    }
    free(c->nodes);
    if (c->refresh_timer) event_free(c->refresh_timer);
    if (c->tick) event_free(c->tick);
    free(c->auth);
    free(c);
}
