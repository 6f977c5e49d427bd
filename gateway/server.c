/* server.c — start-up, listeners, workers, signals and reload. Each worker
 * thread owns an event_base with its SO_REUSEPORT socket for every `listen:`
 * entry (all served by one HTTP server), libcurl multi
 * handle and Redis ledger connection; nothing is shared between workers but
 * the config snapshot (reference-counted), metrics (atomics) and the
 * providers' health table (atomics, policy/health.h: one per process, so a
 * circuit, retry-after or latency one worker learns holds for all; worker 0
 * also shares open circuits and retry-afters with the other instances on
 * the same Redis, gateway/healthsync.h). The main
 * thread polls a signalfd and an inotify descriptor: SIGHUP, or a change to
 * the config file or any file it includes (100 ms after the last event, and
 * only when their bytes changed), reloads the config — validated first; an
 * invalid one is logged with FILE:LINE:COL and the old one stays. Each
 * snapshot is bound to its dialect vtables (tg_dialect_bind) before it is
 * installed: the config loader knows dialects by name only. A TLS
 * listener's context (gateway/tls.c) is shared by the workers and rebuilt
 * from its certificate files on every reload. Workers
 * never wait on a reload: they take the new snapshot with their next request.
 * SIGTERM/SIGINT stop accepting, let requests in flight finish within the
 * grace period, flush the ledger, and exit 0.
 */
#include "gateway/server.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/config.h"
#include "gateway/healthsync.h"
#include "gateway/http1.h"
#include "gateway/ledger.h"
#include "gateway/redis.h"
#include "core/log.h"
#include "core/pool.h"
#include "gateway/request.h"
#include "gateway/tls.h"
#include "sim/simulate.h"
#include "gateway/upstream.h"
#include "policy/health.h"
#include "providers/provider.h"

#define GRACE_MS 30000
#define DEBOUNCE_MS 100 /* editors write a file in several steps: reload once, after the last */
#define MAX_WATCHED 64

typedef struct {
    tg_worker_t w;
    pthread_t thread;
    int *fds; /* one per bound listener (g_bound), -1 once closed */
    struct event *flush_ev, *stop_ev, *drain_ev, *params_ev;
    tg_healthsync_t *sync; /* worker 0 only: health across instances, on its ledger's quota link */
    int64_t drain_deadline_ms;
} slot_t;

/* The running workers, for /metrics (set once before threads start). */
static slot_t *g_slots;
static int g_nslots;
/* The providers' health, one table for every worker (allocated before
 * the workers, freed after them). */
static tg_health_table_t *g_health;

/* The listeners bound at start-up, which a reload cannot change; a TLS one
 * has the context its workers' connections are made from. */
typedef struct {
    char *host;
    int port;
    tg_tls_t *tls; /* NULL: plain */
} bound_t;
static bound_t *g_bound;
static size_t g_nbound;

/* The workers' circuit state, calls in flight and ledger backlog, for
 * /metrics (tg_worker_t.server_metrics). */
static char *server_metrics(void) {
    tg_health_t *hs[64];
    size_t n = 0;
    uint64_t backlog = 0, journaled = 0, written = 0, replayed = 0;
    for (int i = 0; i < g_nslots && n < 64; i++) {
        if (g_slots[i].w.health) hs[n++] = g_slots[i].w.health;
        if (g_slots[i].w.ledger) {
            uint64_t w, j, r;
            tg_ledger_stats(g_slots[i].w.ledger, &w, &j, &r);
            backlog += tg_ledger_backlog(g_slots[i].w.ledger);
            written += w;
            journaled += j;
            replayed += r;
        }
    }
    char *h = tg_health_render(hs, n);
    char *sync = tg_healthsync_render(g_nslots > 0 ? g_slots[0].sync : NULL), *both = NULL;
    if (h && sync && asprintf(&both, "%s%s", h, sync) >= 0) {
        free(h);
        h = both;
    }
    free(sync);
    char *out = NULL;
    if (asprintf(&out,
                 "%s# HELP tollgate_ledger_backlog Usage records not yet acknowledged by Redis.\n"
                 "# TYPE tollgate_ledger_backlog gauge\ntollgate_ledger_backlog %" PRIu64 "\n"
                 "# HELP tollgate_ledger_records_total Usage records by fate.\n"
                 "# TYPE tollgate_ledger_records_total counter\n"
                 "tollgate_ledger_records_total{fate=\"written\"} %" PRIu64 "\n"
                 "tollgate_ledger_records_total{fate=\"journaled\"} %" PRIu64 "\n"
                 "tollgate_ledger_records_total{fate=\"replayed\"} %" PRIu64 "\n",
                 h ? h : "", backlog, written, journaled, replayed) < 0)
        out = NULL;
    free(h);
    return out;
}

static void on_flush(evutil_socket_t fd, short ev, void *arg) {
    tg_log_flush();
}

/* Graceful drain: every 50 ms, stop once no connection is left and the
 * ledger has nothing unacknowledged, or when the grace period ran out. */
static void on_drain_tick(evutil_socket_t fd, short ev, void *arg) {
    slot_t *s = arg;
    int idle =
        tg_http_server_connections(s->w.http) == 0 &&
        (s->w.ledger == NULL || tg_ledger_backlog(s->w.ledger) == 0 || !tg_ledger_connected(s->w.ledger));
    if (idle || tg_clock_mono_ms() > s->drain_deadline_ms) event_base_loopexit(s->w.base, NULL);
}

static void on_stop(evutil_socket_t fd, short ev, void *arg) {
    slot_t *s = arg;
    s->w.draining = 1;
    tg_http_server_stop_accepting(s->w.http);
    /* Closing the listeners makes new clients see a refusal (and go to
     * another instance) rather than wait in a backlog nobody reads. */
    for (size_t i = 0; i < g_nbound; i++)
        if (s->fds[i] >= 0) {
            close(s->fds[i]);
            s->fds[i] = -1;
        }
    s->drain_deadline_ms = tg_clock_mono_ms() + GRACE_MS;
    struct timeval tv = {0, 50000};
    event_add(s->drain_ev, &tv);
}

/* The circuit and latency knobs of a config, for a worker's health table. */
static void apply_health_params(tg_health_t *h, const tg_config_t *c) {
    tg_health_params_t p = {c->circuit.failures, c->circuit.cooldown_ms, c->circuit.max_cooldown_ms,
                            c->latency_alpha};
    tg_health_set_params(h, &p);
}

/* On the worker's thread after a reload. The table is shared and its
 * parameters are atomics: every worker storing the same values is harmless. */
static void on_params(evutil_socket_t fd, short ev, void *arg) {
    slot_t *s = arg;
    tg_config_t *c = tg_config_current();
    if (c && s->w.health) apply_health_params(s->w.health, c);
    tg_config_unref(c);
}

static void *worker_main(void *arg) {
    slot_t *s = arg;
    event_base_dispatch(s->w.base);
    tg_log_flush();
    return NULL;
}

static void apply_overrides(tg_config_t *c, const tg_server_opts_t *o) {
    if (o->redis) c->redis_url = *o->redis ? (char *)o->redis : NULL;
    if (o->workers > 0) c->workers = o->workers;
    /* --listen replaces every `listen:` entry with one plain address. */
    const char *colon = o->listen ? strrchr(o->listen, ':') : NULL;
    tg_listen_t *l = colon ? tg_pool_calloc(c->arena, sizeof(*l)) : NULL;
    if (l) {
        c->listen_host = tg_pool_strndup(c->arena, o->listen, (size_t)(colon - o->listen));
        c->listen_port = atoi(colon + 1);
        *l = (tg_listen_t){.host = c->listen_host, .port = c->listen_port};
        c->listens = l;
        c->n_listens = 1;
    }
}

static tg_config_t *load(const tg_server_opts_t *o) {
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(o->config_path, &d);
    for (size_t i = 0; i < d.n; i++)
        tg_log(strstr(d.msgs[i], ": warning: ") ? TG_LOG_WARN : TG_LOG_ERROR, "%s", d.msgs[i]);
    tg_diag_free(&d);
    if (c) {
        apply_overrides(c, o);
        tg_dialect_bind(c);
    }
    return c;
}

static int start_simulator(tg_config_t *c) {
    int need = 0;
    for (size_t i = 0; i < c->n_providers; i++)
        if (c->providers[i].simulated) need = 1;
    if (!need || !c->sim_embedded) return 0;
    char host[128];
    int port = 0;
    if (sscanf(c->sim_url, "http://%127[^:/]:%d", host, &port) != 2) {
        tg_error("simulator.url '%s' must be http://HOST:PORT to start the built-in simulator", c->sim_url);
        return -1;
    }
    char err[256];
    if (tg_simulate_start_thread(host, port, err, sizeof(err)) != 0) {
        tg_error("cannot start the built-in simulator on %s:%d: %s", host, port, err);
        return -1;
    }
    tg_warn("providers without a key are SIMULATED (built-in simulator at %s): set their keys for real calls",
            c->sim_url);
    return 1;
}

/* redis_tls, for rediss URLs: one TLS context for every worker's links, set before they connect. */
static int redis_tls_setup(const tg_config_t *c) {
    const tg_redis_tls_t t = {c->redis_tls.ca_file, c->redis_tls.cert, c->redis_tls.key,
                              c->redis_tls.server_name};
    char err[300];
    if ((t.ca_file || t.cert || t.server_name) && tg_redis_tls_setup(&t, err, sizeof(err)) != 0) {
        tg_error("%s", err);
        return -1;
    }
    return 0;
}

static int worker_init(slot_t *s, int i, tg_config_t *c) {
    s->w.index = i;
    s->w.base = event_base_new();
    if (s->w.base == NULL) return -1;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) seed = (uint64_t)time(NULL) ^ ((uint64_t)i << 32);
    s->w.rng = seed;
    s->w.server_metrics = server_metrics;
    char err[256];
    s->w.ledger = tg_ledger_new(s->w.base, c->redis_url, c->journal_path, i, err, sizeof(err));
    if (s->w.ledger == NULL) {
        tg_error("ledger: %s", err);
        return -1;
    }
    s->w.up = tg_upstream_new(s->w.base);
    s->w.health = tg_health_new_shared(g_health);
    tg_http_limits_t lim;
    tg_http_limits_default(&lim);
    lim.max_body_bytes = c->limits.max_body_bytes;
    if (c->limits.max_header_bytes) lim.max_header_bytes = c->limits.max_header_bytes;
    if (c->limits.header_timeout_ms) lim.header_timeout_ms = c->limits.header_timeout_ms;
    if (c->limits.body_timeout_ms) lim.body_timeout_ms = c->limits.body_timeout_ms;
    if (c->limits.keepalive_timeout_ms) lim.keepalive_timeout_ms = c->limits.keepalive_timeout_ms;
    s->w.http = tg_http_server_new(s->w.base, -1, &lim, &tg_request_handler, &s->w);
    if (s->w.up == NULL || s->w.http == NULL || s->w.health == NULL) return -1;
    for (size_t j = 0; j < g_nbound; j++) {
        const tg_http_transport_t *t = g_bound[j].tls ? tg_tls_transport(g_bound[j].tls) : NULL;
        if (tg_http_server_add_listener(s->w.http, s->fds[j], t) < 0) return -1;
    }
    tg_http_server_set_error_body(s->w.http, tg_request_error_body);
    apply_health_params(s->w.health, c);
    /* One sync per process is enough: the health table is the process's. */
    if (i == 0 && c->redis_url && (s->sync = tg_healthsync_new(s->w.base, s->w.ledger, s->w.health)) == NULL)
        return -1;
    s->params_ev = event_new(s->w.base, -1, 0, on_params, s);
    s->flush_ev = event_new(s->w.base, -1, EV_PERSIST, on_flush, s);
    struct timeval tv = {0, 100000};
    event_add(s->flush_ev, &tv);
    s->stop_ev = event_new(s->w.base, -1, 0, on_stop, s);
    s->drain_ev = event_new(s->w.base, -1, EV_PERSIST, on_drain_tick, s);
    return 0;
}

static void worker_free(slot_t *s) {
    if (s->w.http) tg_http_server_free(s->w.http);
    tg_healthsync_free(s->sync);
    if (s->w.ledger) {
        /* Give the ledger a moment to hand its backlog to Redis; what is
         * left goes to the journal in tg_ledger_free. */
        struct timeval tv = {0, 200000};
        if (tg_ledger_backlog(s->w.ledger) && tg_ledger_connected(s->w.ledger)) {
            event_base_loopexit(s->w.base, &tv);
            event_base_dispatch(s->w.base);
        }
        tg_ledger_free(s->w.ledger);
    }
    if (s->w.up) tg_upstream_free(s->w.up);
    if (s->w.health) tg_health_free(s->w.health);
    if (s->flush_ev) event_free(s->flush_ev);
    if (s->stop_ev) event_free(s->stop_ev);
    if (s->drain_ev) event_free(s->drain_ev);
    if (s->params_ev) event_free(s->params_ev);
    if (s->w.base) event_base_free(s->w.base);
    tg_log_flush();
}

static const tg_listen_t *listen_find(const tg_config_t *c, const bound_t *b) {
    for (size_t i = 0; i < c->n_listens; i++)
        if (c->listens[i].port == b->port && !strcmp(c->listens[i].host, b->host)) return &c->listens[i];
    return NULL;
}

/* Re-reads the certificate and key of every TLS listener that the new
 * config `c` still names: new handshakes get them, open connections keep
 * theirs. Returns how many entries differ from the bound listeners (added,
 * dropped, or TLS turned on or off), which only a restart applies. */
static size_t listens_reload(const tg_config_t *c) {
    size_t same = 0, differ = 0;
    for (size_t i = 0; i < g_nbound; i++) {
        const tg_listen_t *l = listen_find(c, &g_bound[i]);
        if (l == NULL || (l->tls_cert != NULL) != (g_bound[i].tls != NULL)) {
            differ++;
            continue;
        }
        same++;
        char err[512];
        if (l->tls_cert && tg_tls_reload(g_bound[i].tls, l->tls_cert, l->tls_key, err, sizeof(err)) != 0)
            tg_error("TLS on %s:%d keeps its previous certificate: %s", l->host, l->port, err);
        else if (l->tls_cert)
            tg_info("TLS on %s:%d: certificate %s reloaded", l->host, l->port, l->tls_cert);
    }
    return differ + (c->n_listens - same);
}

static void reload(const tg_server_opts_t *o, slot_t *slots, int n, const char *why) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    tg_config_t *old = tg_config_current();
    tg_config_t *c = load(o);
    if (c == NULL) {
        tg_error("reload of %s (%s) failed: the running configuration stays", o->config_path, why);
    } else {
        if (listens_reload(c) != 0 || c->workers != old->workers)
            tg_warn("listen and workers changes take effect at the next restart");
        tg_config_install(c);
        for (int i = 0; i < n; i++)
            if (slots[i].params_ev) event_active(slots[i].params_ev, EV_TIMEOUT, 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
        tg_info("reloaded %s in %.2f ms (%s): %zu providers, %zu routes, %zu prices, %zu keys",
                o->config_path, ms, why, c->n_providers, c->n_routes, c->n_prices, c->n_keys);
    }
    tg_config_unref(old);
}

/* --- watching the config files --------------------------------------------- */

/* Directories are watched rather than files: an editor that saves by
 * writing a new file and renaming it over the old one replaces the inode a
 * file watch would follow. Events are filtered by file name. */
typedef struct {
    int fd;
    struct {
        int wd;
        char name[NAME_MAX + 1];
    } w[MAX_WATCHED];
    int n;
} watch_t;

static void watch_one(watch_t *wt, const char *path) {
    char *d = strdup(path), *f = strdup(path);
    if (d && f && wt->n < MAX_WATCHED) {
        int wd = inotify_add_watch(wt->fd, dirname(d),
                                   IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MODIFY |
                                       IN_MOVED_FROM);
        if (wd < 0) {
            tg_warn("cannot watch %s for changes (%s): reload it with SIGHUP", path, strerror(errno));
        } else {
            wt->w[wt->n].wd = wd;
            snprintf(wt->w[wt->n].name, sizeof(wt->w[wt->n].name), "%s", basename(f));
            wt->n++;
        }
    }
    free(d);
    free(f);
}

/* Watches every file c was loaded from, by the name it was given and,
 * when that is a symbolic link, by where it points. Watches only grow: a
 * directory watched twice is the same watch, and a file no longer included
 * costs a stray event at most. */
static void watch_config(watch_t *wt, const tg_config_t *c) {
    if (wt->fd < 0) return;
    wt->n = 0;
    for (size_t i = 0; i < c->n_files; i++) {
        watch_one(wt, c->files[i]);
        char *real = realpath(c->files[i], NULL);
        if (real && strcmp(real, c->files[i]) != 0) watch_one(wt, real);
        free(real);
    }
}

/* Reads the pending events; 1 when one names a watched file. */
static int watch_read(watch_t *wt) {
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int hit = 0;
    ssize_t len;
    while ((len = read(wt->fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & IN_Q_OVERFLOW) hit = 1;
            for (int i = 0; i < wt->n && !hit && ev->len; i++)
                hit = wt->w[i].wd == ev->wd && strcmp(wt->w[i].name, ev->name) == 0;
            p += sizeof(*ev) + ev->len;
        }
    }
    return hit;
}

/* --- listeners ----------------------------------------------------------------- */

/* Records the config's listeners and builds a TLS context for each TLS one. */
static int bind_prepare(const tg_config_t *c) {
    g_bound = calloc(c->n_listens, sizeof(*g_bound));
    if (g_bound == NULL) return -1;
    for (size_t i = 0; i < c->n_listens; i++) {
        const tg_listen_t *l = &c->listens[i];
        bound_t *b = &g_bound[g_nbound++];
        char err[512];
        b->host = strdup(l->host);
        b->port = l->port;
        if (b->host == NULL) return -1;
        if (l->tls_cert && (b->tls = tg_tls_new(l->tls_cert, l->tls_key, err, sizeof(err))) == NULL) {
            tg_error("cannot serve TLS on %s:%d: %s", l->host, l->port, err);
            return -1;
        }
    }
    return 0;
}

static void bound_free(void) {
    for (size_t i = 0; i < g_nbound; i++) {
        free(g_bound[i].host);
        tg_tls_free(g_bound[i].tls);
    }
    free(g_bound);
    g_bound = NULL;
    g_nbound = 0;
}

/* A worker's own socket on every listener (SO_REUSEPORT: the kernel
 * spreads connections across workers). */
static int listeners_open(slot_t *s) {
    s->fds = malloc((g_nbound ? g_nbound : 1) * sizeof(*s->fds));
    if (s->fds == NULL) return -1;
    for (size_t j = 0; j < g_nbound; j++)
        s->fds[j] = -1;
    for (size_t j = 0; j < g_nbound; j++) {
        s->fds[j] = tg_http_listen(g_bound[j].host, g_bound[j].port, 1024);
        if (s->fds[j] < 0) {
            tg_error("cannot listen on %s:%d: %s", g_bound[j].host, g_bound[j].port, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* The main thread's loop: signals and file changes until a stop signal. */
static void main_loop(const tg_server_opts_t *o, slot_t *slots, int n, const sigset_t *set) {
    int sfd = signalfd(-1, set, SFD_CLOEXEC);
    watch_t wt = {.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)};
    if (wt.fd < 0) tg_warn("inotify unavailable (%s): reload the config with SIGHUP", strerror(errno));
    tg_config_t *c = tg_config_current();
    watch_config(&wt, c);
    tg_config_unref(c);
    int64_t due = -1; /* when a debounced file change is to be looked at */
    for (;;) {
        struct pollfd pf[2] = {{sfd, POLLIN, 0}, {wt.fd, POLLIN, 0}};
        int timeout = due < 0 ? -1 : (int)(due > tg_clock_mono_ms() ? due - tg_clock_mono_ms() : 0);
        int k = poll(pf, wt.fd >= 0 ? 2 : 1, timeout);
        if (k < 0 && errno != EINTR) break;
        if (k > 0 && (pf[1].revents & POLLIN) && watch_read(&wt)) due = tg_clock_mono_ms() + DEBOUNCE_MS;
        if (due >= 0 && tg_clock_mono_ms() >= due) {
            due = -1;
            c = tg_config_current();
            int changed = tg_config_files_digest(c) != c->files_digest;
            tg_config_unref(c);
            if (changed) {
                reload(o, slots, n, "file change");
                c = tg_config_current();
                watch_config(&wt, c);
                tg_config_unref(c);
            }
        }
        if (k > 0 && (pf[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) != sizeof(si)) continue;
            if (si.ssi_signo == SIGHUP) {
                reload(o, slots, n, "SIGHUP");
                c = tg_config_current();
                watch_config(&wt, c);
                tg_config_unref(c);
                continue;
            }
            tg_info("signal %d: draining (up to %d s), then exiting", (int)si.ssi_signo, GRACE_MS / 1000);
            break;
        }
    }
    if (wt.fd >= 0) close(wt.fd);
    if (sfd >= 0) close(sfd);
}

/* Each open stream holds two descriptors (client and upstream): the usual
 * soft limit of 1,024 would cap a gateway near 500 streams, so the soft
 * limit is raised to the hard one, as Redis and nginx do, and the result is
 * logged with the stream count it allows. */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        struct rlimit nl = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &nl) == 0) rl.rlim_cur = want;
    }
    if (rl.rlim_cur == RLIM_INFINITY) return;
    unsigned long streams = rl.rlim_cur > 64 ? (unsigned long)(rl.rlim_cur - 64) / 2 : 0;
    if (streams < 5000)
        tg_warn(
            "open files limit %lu allows about %lu concurrent streams; raise it (ulimit -n, LimitNOFILE=)",
            (unsigned long)rl.rlim_cur, streams);
    else
        tg_info("open files limit %lu (about %lu concurrent streams)", (unsigned long)rl.rlim_cur, streams);
}

int tg_server_run(const tg_server_opts_t *o) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || evthread_use_pthreads() != 0) {
        tg_error("cannot initialise libcurl or libevent threads");
        return 1;
    }
    tg_config_t *c = load(o);
    if (c == NULL) return 1;
    if (redis_tls_setup(c) != 0) {
        tg_config_unref(c);
        return 1;
    }
    tg_log_level_t lvl;
    if (c->log_level && tg_log_parse_level(c->log_level, &lvl) == 0) tg_log_set_level(lvl);
    raise_fd_limit();
    /* Blocked before any thread starts (the built-in simulator's too), so
     * that every signal reaches the main thread's signalfd. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sim = start_simulator(c);
    if (sim < 0) {
        tg_config_unref(c);
        return 1;
    }

    int n = c->workers > 0 ? c->workers : 1;
    slot_t *slots = calloc((size_t)n, sizeof(*slots));
    g_health = tg_health_table_new(); /* NULL: worker_init fails, and says so */
    int rc = bind_prepare(c) == 0 && slots ? 0 : 1;
    for (int i = 0; i < n && rc == 0; i++) {
        if (listeners_open(&slots[i]) != 0) {
            rc = 1;
            break;
        }
        if (worker_init(&slots[i], i, c) != 0) {
            tg_error("cannot start worker %d", i);
            rc = 1;
            break;
        }
    }
    tg_config_install(c);
    g_slots = slots;
    g_nslots = rc == 0 ? n : 0;
    int started = 0;
    if (rc == 0) {
        for (; started < n; started++)
            if (pthread_create(&slots[started].thread, NULL, worker_main, &slots[started]) != 0) break;
        char where[512];
        size_t k = 0;
        for (size_t j = 0; j < g_nbound && k < sizeof(where); j++)
            k += (size_t)snprintf(where + k, sizeof(where) - k, "%s%s:%d%s", j ? ", " : "", g_bound[j].host,
                                  g_bound[j].port, g_bound[j].tls ? " (TLS)" : "");
        tg_info("tollgate listening on %s with %d worker%s", where, n, n == 1 ? "" : "s");
        main_loop(o, slots, started, &set);
        for (int i = 0; i < started; i++)
            event_active(slots[i].stop_ev, EV_TIMEOUT, 0);
        for (int i = 0; i < started; i++)
            pthread_join(slots[i].thread, NULL);
    }
    for (int i = 0; i < n && slots; i++) {
        worker_free(&slots[i]);
        for (size_t j = 0; slots[i].fds && j < g_nbound; j++)
            if (slots[i].fds[j] >= 0) close(slots[i].fds[j]);
        free(slots[i].fds);
    }
    g_nslots = 0;
    free(slots);
    tg_health_table_free(g_health);
    g_health = NULL;
    bound_free();
    if (sim > 0) tg_simulate_stop_thread();
    tg_config_install(NULL);
    curl_global_cleanup();
    tg_info("stopped");
    return rc;
}
