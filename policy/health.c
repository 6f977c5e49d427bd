/* health.c — the health of each provider/model, one table per process that
 * every worker reads and updates: EWMAs of time to first token and tokens/s
 * (read by the `fastest` strategy), requests in flight, retry-after,
 * consecutive failures and a circuit breaker:
 *   closed --N consecutive failures--> open --cool-down--> half-open
 *   half-open --probe ok--> closed, --probe fails--> open (cool-down x2, capped).
 * Nothing on the request path locks. The circuit is one 64-bit word changed
 * by compare-and-swap, so a transition is seen whole by every worker and
 * only one of two racing transitions wins; counters and EWMAs are atomics.
 * One probe per cool-down across the workers: tg_health_allow gives a
 * thread a short lease on the probe and tg_health_begin takes the probe
 * slot. Entries live in fixed chunks found through an index of atomic
 * slots; only adding an entry takes the table's mutex. The handle a worker
 * holds (tg_health_t) adds what stays per worker: the per-route state of
 * weighted round robin and the worker's random generator. */
#include "policy/health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"

#define CHUNK 64
#define N_CHUNKS (TG_HEALTH_MAX_ENTRIES / CHUNK)
#define INDEX_SIZE (2 * TG_HEALTH_MAX_ENTRIES) /* power of two, load <= 1/2 */

struct tg_health_table_s {
    /* The parameters, each its own atomic: a reload stores them while the
     * workers read; a mix of old and new values for an instant is harmless. */
    _Atomic unsigned fail_threshold;
    _Atomic int64_t cooldown_ms, max_cooldown_ms;
    _Atomic double alpha;
    pthread_mutex_t grow; /* held only to add an entry */
    tg_health_entry_t *chunks[N_CHUNKS];
    _Atomic size_t n;                   /* entries published */
    _Atomic uint32_t index[INDEX_SIZE]; /* entry number + 1; 0 = empty slot */
};

typedef struct {
    char *route;
    uint64_t sig;
    size_t n;
    int64_t *cw;
} swrr_t;

struct tg_health_s {
    tg_health_table_t *t;
    int own; /* t is private to this handle */
    uint64_t rng;
    swrr_t *swrr;
    size_t n_swrr, cap_swrr;
};

static const tg_health_params_t default_params = {5, 10000, 60000, 0.3};

/* --- the table and the handles ---------------------------------------------- */

static void store_params(tg_health_table_t *t, const tg_health_params_t *p) {
    tg_health_params_t q = *p;
    if (q.fail_threshold == 0) q.fail_threshold = 1;
    if (q.cooldown_ms < 1) q.cooldown_ms = 1;
    if (q.max_cooldown_ms < q.cooldown_ms) q.max_cooldown_ms = q.cooldown_ms;
    if (!(q.alpha > 0 && q.alpha <= 1)) q.alpha = default_params.alpha;
    atomic_store_explicit(&t->fail_threshold, q.fail_threshold, memory_order_relaxed);
    atomic_store_explicit(&t->cooldown_ms, q.cooldown_ms, memory_order_relaxed);
    atomic_store_explicit(&t->max_cooldown_ms, q.max_cooldown_ms, memory_order_relaxed);
    atomic_store_explicit(&t->alpha, q.alpha, memory_order_relaxed);
}

tg_health_table_t *tg_health_table_new(void) {
    tg_health_table_t *t = calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    if (pthread_mutex_init(&t->grow, NULL) != 0) {
        free(t);
        return NULL;
    }
    store_params(t, &default_params);
    return t;
}

void tg_health_table_free(tg_health_table_t *t) {
    if (t == NULL) return;
    size_t n = atomic_load_explicit(&t->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        tg_health_entry_t *e = &t->chunks[i / CHUNK][i % CHUNK];
        free(e->provider);
        free(e->model);
    }
    for (size_t i = 0; i < N_CHUNKS; i++)
        free(t->chunks[i]);
    pthread_mutex_destroy(&t->grow);
    free(t);
}

static tg_health_t *new_handle(tg_health_table_t *t, int own) {
    tg_health_t *h = calloc(1, sizeof(*h));
    if (h == NULL) return NULL;
    h->t = t;
    h->own = own;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    tg_health_seed(h, (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)h);
    return h;
}

tg_health_t *tg_health_new(void) {
    tg_health_table_t *t = tg_health_table_new();
    tg_health_t *h = t ? new_handle(t, 1) : NULL;
    if (h == NULL) tg_health_table_free(t);
    return h;
}

tg_health_t *tg_health_new_shared(tg_health_table_t *t) {
    return t ? new_handle(t, 0) : NULL;
}

void tg_health_free(tg_health_t *h) {
    if (h == NULL) return;
    if (h->own) tg_health_table_free(h->t);
    for (size_t i = 0; i < h->n_swrr; i++) {
        free(h->swrr[i].route);
        free(h->swrr[i].cw);
    }
    free(h->swrr);
    free(h);
}

void tg_health_set_params(tg_health_t *h, const tg_health_params_t *p) {
    store_params(h->t, p);
}

void tg_health_seed(tg_health_t *h, uint64_t seed) {
    h->rng = seed ? seed : 0x9E3779B97F4A7C15ull; /* xorshift must not start at 0 */
}

uint64_t tg_health_rand(tg_health_t *h) {
    uint64_t x = h->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* --- entries ---------------------------------------------------------------- */

static uint64_t hash2(const char *a, const char *b) {
    return tg_hash_fnv64_str(tg_hash_fnv64_mix(tg_hash_fnv64_str(TG_HASH_FNV64_SEED, a), '/'), b);
}

static tg_health_entry_t *entry_at(tg_health_table_t *t, uint32_t k) {
    return &t->chunks[(k - 1) / CHUNK][(k - 1) % CHUNK];
}

/* The slot that holds provider/model, or the empty slot where it belongs;
 * *found tells which. Slots, once filled, never change, so a reader that
 * sees a slot's number (acquire) sees the entry it names complete. */
static size_t probe_index(tg_health_table_t *t, const char *provider, const char *model, int *found) {
    size_t slot = (size_t)hash2(provider, model) & (INDEX_SIZE - 1);
    for (;; slot = (slot + 1) & (INDEX_SIZE - 1)) {
        uint32_t k = atomic_load_explicit(&t->index[slot], memory_order_acquire);
        if (k == 0) break;
        tg_health_entry_t *e = entry_at(t, k);
        if (strcmp(e->provider, provider) == 0 && strcmp(e->model, model) == 0) {
            *found = 1;
            return slot;
        }
    }
    *found = 0;
    return slot;
}

/* Under t->grow: entry number i, filled in and ready to publish. */
static tg_health_entry_t *add_entry(tg_health_table_t *t, size_t i, const char *provider, const char *model) {
    if (t->chunks[i / CHUNK] == NULL &&
        (t->chunks[i / CHUNK] = calloc(CHUNK, sizeof(tg_health_entry_t))) == NULL)
        return NULL;
    tg_health_entry_t *e = &t->chunks[i / CHUNK][i % CHUNK];
    e->provider = strdup(provider);
    e->model = strdup(model);
    if (e->provider == NULL || e->model == NULL) {
        free(e->provider);
        free(e->model);
        e->provider = e->model = NULL;
        return NULL;
    }
    e->table = t;
    return e; /* every atomic is 0 from calloc: closed, nothing measured */
}

tg_health_entry_t *tg_health_get(tg_health_t *h, const char *provider, const char *model) {
    if (h == NULL || provider == NULL || model == NULL) return NULL;
    tg_health_table_t *t = h->t;
    int found;
    size_t slot = probe_index(t, provider, model, &found);
    if (found) return entry_at(t, atomic_load_explicit(&t->index[slot], memory_order_acquire));
    /* First sight of provider/model: another worker may be adding it too,
     * so look again under the lock before adding. */
    tg_health_entry_t *e = NULL;
    pthread_mutex_lock(&t->grow);
    slot = probe_index(t, provider, model, &found);
    size_t n = atomic_load_explicit(&t->n, memory_order_relaxed);
    if (found) {
        e = entry_at(t, atomic_load_explicit(&t->index[slot], memory_order_relaxed));
    } else if (n < TG_HEALTH_MAX_ENTRIES && (e = add_entry(t, n, provider, model)) != NULL) {
        /* The renderer walks entries by count, lookups by slot: both are
         * published after the entry is complete. */
        atomic_store_explicit(&t->n, n + 1, memory_order_release);
        atomic_store_explicit(&t->index[slot], (uint32_t)n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&t->grow);
    return e;
}

/* --- circuit breaker -------------------------------------------------------- */

/* The circuit word: bits 0-1 the state, bit 2 a probe is out, bits 3-7 how
 * many failed probes doubled the cool-down, bits 8-63 a time in ms: the end
 * of the open period when open, the probe's start when half-open with a
 * probe out. */
#define C_STATE(c) ((int)((c)&3u))
#define C_PROBE(c) ((int)(((c) >> 2) & 1u))
#define C_STEP(c) ((unsigned)(((c) >> 3) & 31u))
#define C_TIME(c) ((int64_t)((c) >> 8))
#define C_TIME_MAX ((int64_t)(UINT64_MAX >> 8))
#define MAX_STEP 31u

static uint64_t c_make(int state, int probe, unsigned step, int64_t ms) {
    ms = ms < 0 ? 0 : ms > C_TIME_MAX ? C_TIME_MAX : ms;
    return (uint64_t)state | (uint64_t)probe << 2 | (uint64_t)step << 3 | (uint64_t)ms << 8;
}

static uint64_t c_load(const tg_health_entry_t *e) {
    return atomic_load_explicit(&e->circuit, memory_order_acquire);
}

static int c_swap(tg_health_entry_t *e, uint64_t *old, uint64_t new) {
    return atomic_compare_exchange_weak_explicit(&e->circuit, old, new, memory_order_acq_rel,
                                                 memory_order_acquire);
}

/* The open period after `step` failed probes: the cool-down doubled that
 * many times, capped. */
static int64_t cooldown(const tg_health_table_t *t, unsigned step) {
    int64_t cd = atomic_load_explicit(&t->cooldown_ms, memory_order_relaxed);
    int64_t max = atomic_load_explicit(&t->max_cooldown_ms, memory_order_relaxed);
    for (unsigned i = 0; i < step && cd < max; i++)
        cd *= 2;
    return cd < max ? cd : max;
}

tg_circuit_t tg_health_state(const tg_health_entry_t *e) {
    return (tg_circuit_t)C_STATE(c_load(e));
}

int tg_health_inflight(const tg_health_entry_t *e) {
    return e ? atomic_load_explicit(&e->inflight, memory_order_relaxed) : 0;
}

/* The probe lease: bits 48-63 the holder's thread token (0 none), bits
 * 0-47 the time in ms it lapses. */
#define L_UNTIL_MAX ((int64_t)((1ull << 48) - 1))
static _Atomic unsigned next_token;
static _Thread_local unsigned my_token;

static uint64_t thread_token(void) {
    if (my_token == 0)
        my_token = atomic_fetch_add_explicit(&next_token, 1, memory_order_relaxed) % 65535u + 1;
    return my_token;
}

/* 1 when the calling thread holds the lease or has just taken it. */
static int take_lease(tg_health_entry_t *e, int64_t now_ms) {
    uint64_t me = thread_token();
    int64_t until = now_ms + TG_HEALTH_PROBE_LEASE_MS;
    uint64_t mine = me << 48 | (uint64_t)(until < 0 ? 0 : until > L_UNTIL_MAX ? L_UNTIL_MAX : until);
    uint64_t l = atomic_load_explicit(&e->lease, memory_order_acquire);
    for (;;) {
        int live = l != 0 && now_ms < (int64_t)(l & (uint64_t)L_UNTIL_MAX);
        if (live) return (l >> 48) == me;
        if (atomic_compare_exchange_weak_explicit(&e->lease, &l, mine, memory_order_acq_rel,
                                                  memory_order_acquire))
            return 1;
    }
}

/* Before a probe's verdict is published (the lease is for the next
 * probe): while the probe is out no thread takes a lease, so this drops
 * nobody's newer one. A half-open circuit closed by some other answer may
 * drop a holder's lease: the circuit it would probe is closing anyway. */
static void drop_lease(tg_health_entry_t *e) {
    atomic_store_explicit(&e->lease, 0, memory_order_release);
}

int tg_health_allow(tg_health_entry_t *e, int64_t now_ms) {
    if (e == NULL) return 1;
    if (now_ms < atomic_load_explicit(&e->blocked_until_ms, memory_order_acquire)) return 0;
    if (now_ms < atomic_load_explicit(&e->remote_until_ms, memory_order_acquire)) return 0;
    uint64_t c = c_load(e);
    switch (C_STATE(c)) {
    case TG_CIRCUIT_CLOSED:
        return 1;
    case TG_CIRCUIT_OPEN:
        if (now_ms < C_TIME(c)) return 0;
        break;
    default:
        if (C_PROBE(c)) return 0;
        break;
    }
    /* Due for a probe: one thread at a time may go on to tg_health_begin. */
    return take_lease(e, now_ms);
}

void tg_health_begin(tg_health_entry_t *e, int64_t now_ms) {
    if (e == NULL) return;
    atomic_fetch_add_explicit(&e->inflight, 1, memory_order_relaxed);
    /* The first attempt after the cool-down is the probe; until it ends,
     * tg_health_allow keeps every other request away. */
    uint64_t c = c_load(e);
    for (;;) {
        int s = C_STATE(c);
        if (!(s == TG_CIRCUIT_OPEN && now_ms >= C_TIME(c)) && !(s == TG_CIRCUIT_HALF_OPEN && !C_PROBE(c)))
            return;
        if (c_swap(e, &c, c_make(TG_CIRCUIT_HALF_OPEN, 1, C_STEP(c), now_ms))) return;
    }
}

/* first: 1 the sample replaces the value, 0 it moves it by alpha, -1 it
 * replaces it while it is not positive (nothing measured yet). */
static void ewma(_Atomic double *v, double sample, double alpha, int first) {
    double old = atomic_load_explicit(v, memory_order_relaxed), next;
    do
        next = first > 0 || (first < 0 && old <= 0) ? sample : old + alpha * (sample - old);
    while (!atomic_compare_exchange_weak_explicit(v, &old, next, memory_order_relaxed, memory_order_relaxed));
}

static void record_latency(tg_health_entry_t *e, int64_t ttft_ms, int64_t tokens, int64_t duration_ms,
                           int64_t now_ms) {
    double alpha = atomic_load_explicit(&e->table->alpha, memory_order_relaxed);
    if (ttft_ms >= 0) {
        int first = atomic_load_explicit(&e->n_samples, memory_order_acquire) == 0;
        ewma(&e->ttft_ms, (double)ttft_ms, alpha, first);
        atomic_store_explicit(&e->last_sample_ms, now_ms, memory_order_relaxed);
        /* Readers check n_samples first (acquire): they see ttft_ms set. */
        atomic_fetch_add_explicit(&e->n_samples, 1, memory_order_release);
    }
    /* Tokens/s only from answers that streamed for a measurable time after
     * their first byte; a non-streamed answer arrives in one piece. */
    int64_t gen_ms = duration_ms - (ttft_ms > 0 ? ttft_ms : 0);
    if (tokens > 0 && gen_ms >= 10) ewma(&e->tps, (double)tokens * 1000.0 / (double)gen_ms, alpha, -1);
}

/* The attempt that began at start_ms is the probe of circuit word c: a
 * probe is out and the attempt did not begin before it (a request started
 * before the circuit opened began a whole cool-down earlier). */
static int is_probe(uint64_t c, int64_t start_ms) {
    return C_STATE(c) == TG_CIRCUIT_HALF_OPEN && C_PROBE(c) && start_ms >= C_TIME(c);
}

static void end_ok(tg_health_entry_t *e) {
    uint64_t c = c_load(e);
    for (;;) {
        switch (C_STATE(c)) {
        case TG_CIRCUIT_OPEN:
            /* Answers that were under way when the circuit opened say
             * little about now: only the probe, or any answer while
             * half-open, closes it. */
            return;
        case TG_CIRCUIT_CLOSED:
            atomic_store_explicit(&e->fails, 0, memory_order_relaxed);
            return;
        default:
            drop_lease(e);
            if (c_swap(e, &c, c_make(TG_CIRCUIT_CLOSED, 0, 0, 0))) {
                atomic_store_explicit(&e->fails, 0, memory_order_relaxed);
                return;
            }
        }
    }
}

static void end_fail(tg_health_entry_t *e, int64_t start_ms, int64_t now_ms) {
    const tg_health_table_t *t = e->table;
    uint64_t c = c_load(e);
    if (C_STATE(c) == TG_CIRCUIT_CLOSED) {
        unsigned f = atomic_fetch_add_explicit(&e->fails, 1, memory_order_relaxed) + 1;
        if (f < atomic_load_explicit(&t->fail_threshold, memory_order_relaxed)) return;
    }
    for (;;) {
        uint64_t next;
        if (C_STATE(c) == TG_CIRCUIT_CLOSED) {
            next = c_make(TG_CIRCUIT_OPEN, 0, 0, now_ms + cooldown(t, 0));
        } else if (is_probe(c, start_ms)) {
            unsigned step = C_STEP(c) < MAX_STEP ? C_STEP(c) + 1 : MAX_STEP;
            next = c_make(TG_CIRCUIT_OPEN, 0, step, now_ms + cooldown(t, step));
            drop_lease(e);
        } else {
            return; /* open already, or a late failure while the probe decides */
        }
        if (c_swap(e, &c, next)) {
            atomic_store_explicit(&e->open_until_ms, C_TIME(next), memory_order_relaxed);
            return;
        }
    }
}

static void end_abort(tg_health_entry_t *e, int64_t start_ms) {
    uint64_t c = c_load(e);
    /* The probe gave no verdict: let the next request probe. */
    while (is_probe(c, start_ms)) {
        drop_lease(e);
        if (c_swap(e, &c, c_make(TG_CIRCUIT_HALF_OPEN, 0, C_STEP(c), 0))) return;
    }
}

void tg_health_end(tg_health_entry_t *e, tg_outcome_t o, int64_t ttft_ms, int64_t tokens, int64_t duration_ms,
                   int64_t now_ms) {
    if (e == NULL) return;
    int n = atomic_load_explicit(&e->inflight, memory_order_relaxed);
    while (n > 0 && !atomic_compare_exchange_weak_explicit(&e->inflight, &n, n - 1, memory_order_relaxed,
                                                           memory_order_relaxed)) {
    }
    int64_t start_ms = now_ms - (duration_ms > 0 ? duration_ms : 0);
    switch (o) {
    case TG_OUTCOME_OK:
        record_latency(e, ttft_ms, tokens, duration_ms, now_ms);
        end_ok(e);
        break;
    case TG_OUTCOME_FAIL:
        end_fail(e, start_ms, now_ms);
        break;
    default:
        end_abort(e, start_ms);
        break;
    }
}

void tg_health_retry_after(tg_health_entry_t *e, int64_t until_ms) {
    if (e == NULL) return;
    int64_t cur = atomic_load_explicit(&e->blocked_until_ms, memory_order_relaxed);
    while (until_ms > cur &&
           !atomic_compare_exchange_weak_explicit(&e->blocked_until_ms, &cur, until_ms, memory_order_release,
                                                  memory_order_relaxed)) {
    }
}

/* --- across instances ------------------------------------------------------ */

int tg_health_export(const tg_health_entry_t *e, int64_t now_ms, tg_health_mark_t *m) {
    uint64_t c = c_load(e);
    int64_t retry = atomic_load_explicit(&e->blocked_until_ms, memory_order_acquire);
    m->open_until_ms = C_STATE(c) == TG_CIRCUIT_OPEN && C_TIME(c) > now_ms ? C_TIME(c) : 0;
    m->retry_until_ms = retry > now_ms ? retry : 0;
    return m->open_until_ms != 0 || m->retry_until_ms != 0;
}

void tg_health_import(tg_health_entry_t *e, const tg_health_mark_t *m) {
    if (e == NULL) return;
    int64_t until = m->open_until_ms > m->retry_until_ms ? m->open_until_ms : m->retry_until_ms;
    int64_t cur = atomic_load_explicit(&e->remote_until_ms, memory_order_relaxed);
    while (until > cur && !atomic_compare_exchange_weak_explicit(
                              &e->remote_until_ms, &cur, until, memory_order_release, memory_order_relaxed)) {
    }
}

int64_t tg_health_blocked_until(const tg_health_entry_t *e, int64_t now_ms) {
    tg_health_mark_t m;
    tg_health_export(e, now_ms, &m);
    int64_t r = atomic_load_explicit(&e->remote_until_ms, memory_order_acquire), u = m.open_until_ms;
    if (m.retry_until_ms > u) u = m.retry_until_ms;
    if (r > u) u = r;
    return u > now_ms ? u : 0;
}

size_t tg_health_count(const tg_health_t *h) {
    return atomic_load_explicit(&h->t->n, memory_order_acquire);
}

tg_health_entry_t *tg_health_entry(tg_health_t *h, size_t i) {
    return i < tg_health_count(h) ? &h->t->chunks[i / CHUNK][i % CHUNK] : NULL;
}

/* --- weighted round robin state -------------------------------------------- */

int64_t *tg_health_swrr(tg_health_t *h, const char *route, size_t n, uint64_t sig) {
    swrr_t *w = NULL;
    for (size_t i = 0; i < h->n_swrr && w == NULL; i++)
        if (strcmp(h->swrr[i].route, route) == 0) w = &h->swrr[i];
    if (w == NULL) {
        if (h->n_swrr == h->cap_swrr) {
            size_t cap = h->cap_swrr ? 2 * h->cap_swrr : 8;
            swrr_t *v = realloc(h->swrr, cap * sizeof(*v));
            if (v == NULL) return NULL;
            h->swrr = v;
            h->cap_swrr = cap;
        }
        w = &h->swrr[h->n_swrr];
        *w = (swrr_t){strdup(route), sig, 0, NULL};
        if (w->route == NULL) return NULL;
        h->n_swrr++;
    }
    /* A reload that changed the route's candidates starts it afresh. */
    if (w->n != n || w->sig != sig || w->cw == NULL) {
        int64_t *cw = calloc(n ? n : 1, sizeof(*cw));
        if (cw == NULL) return NULL;
        free(w->cw);
        w->cw = cw;
        w->n = n;
        w->sig = sig;
    }
    return w->cw;
}

/* --- /metrics ------------------------------------------------------------- */

typedef struct {
    const char *provider, *model;
    int state, inflight;
} row_t;

static int row_cmp(const void *a, const void *b) {
    const row_t *x = a, *y = b;
    int c = strcmp(x->provider, y->provider);
    return c ? c : strcmp(x->model, y->model);
}

/* Open is the state an operator must see first, then half-open. */
static int severity(int s) {
    return s == TG_CIRCUIT_OPEN ? 2 : s == TG_CIRCUIT_HALF_OPEN ? 1 : 0;
}

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} out_t;

static void put(out_t *o, const char *s) {
    size_t n = strlen(s);
    if (o->oom) return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (b == NULL) {
            o->oom = 1;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n + 1);
    o->len += n;
}

/* A label value with the Prometheus escapes (\\, \", \n). */
static void put_label(out_t *o, const char *s) {
    char b[2] = {0, 0};
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') put(o, "\\");
        if (*s == '\n') {
            put(o, "\\n");
            continue;
        }
        b[0] = *s;
        put(o, b);
    }
}

static void put_rows(out_t *o, const char *metric, const row_t *r, size_t n, int inflight) {
    char num[32];
    for (size_t i = 0; i < n; i++) {
        put(o, metric);
        put(o, "{provider=\"");
        put_label(o, r[i].provider);
        put(o, "\",model=\"");
        put_label(o, r[i].model);
        snprintf(num, sizeof(num), "\"} %d\n", inflight ? r[i].inflight : r[i].state);
        put(o, num);
    }
}

/* The table of hs[w] when no earlier handle shares it, else NULL: the
 * workers of a process hold one table between them. */
static tg_health_table_t *table_once(tg_health_t *const *hs, size_t w) {
    if (hs[w] == NULL) return NULL;
    for (size_t j = 0; j < w; j++)
        if (hs[j] && hs[j]->t == hs[w]->t) return NULL;
    return hs[w]->t;
}

static size_t collect(tg_health_t *const *hs, size_t nh, row_t *rows, size_t cap) {
    size_t n = 0;
    for (size_t w = 0; w < nh; w++) {
        tg_health_table_t *t = table_once(hs, w);
        size_t k = t ? atomic_load_explicit(&t->n, memory_order_acquire) : 0;
        for (size_t i = 0; i < k && n < cap; i++) {
            const tg_health_entry_t *e = &t->chunks[i / CHUNK][i % CHUNK];
            rows[n++] = (row_t){e->provider, e->model, (int)tg_health_state(e), tg_health_inflight(e)};
        }
    }
    qsort(rows, n, sizeof(*rows), row_cmp);
    /* Merge the rows of one provider/model from several tables. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && row_cmp(&rows[m - 1], &rows[i]) == 0) {
            if (severity(rows[i].state) > severity(rows[m - 1].state)) rows[m - 1].state = rows[i].state;
            rows[m - 1].inflight += rows[i].inflight;
        } else {
            rows[m++] = rows[i];
        }
    }
    return m;
}

char *tg_health_render(tg_health_t *const *hs, size_t nh) {
    size_t total = 0;
    for (size_t w = 0; w < nh; w++) {
        tg_health_table_t *t = table_once(hs, w);
        if (t) total += atomic_load_explicit(&t->n, memory_order_acquire);
    }
    /* Entries added after the count was read are left for the next scrape. */
    row_t *rows = malloc((total ? total : 1) * sizeof(*rows));
    if (rows == NULL) return NULL;
    size_t n = collect(hs, nh, rows, total);
    out_t o = {0};
    put(&o,
        "# HELP tollgate_circuit_state Circuit breaker per provider/model: 0 closed, 1 open, 2 half-open.\n"
        "# TYPE tollgate_circuit_state gauge\n");
    put_rows(&o, "tollgate_circuit_state", rows, n, 0);
    put(&o, "# HELP tollgate_upstream_inflight Upstream requests in flight per provider/model.\n"
            "# TYPE tollgate_upstream_inflight gauge\n");
    put_rows(&o, "tollgate_upstream_inflight", rows, n, 1);
    free(rows);
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}
