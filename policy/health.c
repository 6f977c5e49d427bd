/* health.c — per-worker health of each provider/model: EWMAs of time to
 * first token and tokens/s (read by the `fastest` strategy), requests in
 * flight, consecutive failures and a circuit breaker:
 *   closed --N consecutive failures--> open --cool-down--> half-open
 *   half-open --probe ok--> closed, --probe fails--> open (cool-down x2, capped).
 * Each worker owns one tg_health_t and is its only writer, so nothing
 * locks. Entries live in fixed chunks published with a release store of the
 * count, and the two fields /metrics shows are relaxed atomics, so the
 * metrics renderer can read every worker's table from its own thread.
 * The table also keeps the per-route state of weighted round robin and the
 * worker's random generator, the other per-worker routing state. */
#include "policy/health.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"

#define CHUNK 64
#define N_CHUNKS (TG_HEALTH_MAX_ENTRIES / CHUNK)
#define INDEX_SIZE (2 * TG_HEALTH_MAX_ENTRIES) /* power of two, load <= 1/2 */

typedef struct {
    char *route;
    uint64_t sig;
    size_t n;
    int64_t *cw;
} swrr_t;

struct tg_health_s {
    tg_health_params_t params;
    tg_health_entry_t *chunks[N_CHUNKS];
    _Atomic size_t n;           /* entries published to other threads */
    uint32_t index[INDEX_SIZE]; /* entry number + 1; 0 = empty slot */
    uint64_t rng;
    swrr_t *swrr;
    size_t n_swrr, cap_swrr;
};

static const tg_health_params_t default_params = {5, 10000, 60000, 0.3};

tg_health_t *tg_health_new(void) {
    tg_health_t *h = calloc(1, sizeof(*h));
    if (h == NULL) return NULL;
    h->params = default_params;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    tg_health_seed(h, (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)h);
    return h;
}

void tg_health_free(tg_health_t *h) {
    if (h == NULL) return;
    size_t n = atomic_load_explicit(&h->n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        tg_health_entry_t *e = &h->chunks[i / CHUNK][i % CHUNK];
        free(e->provider);
        free(e->model);
    }
    for (size_t i = 0; i < N_CHUNKS; i++)
        free(h->chunks[i]);
    for (size_t i = 0; i < h->n_swrr; i++) {
        free(h->swrr[i].route);
        free(h->swrr[i].cw);
    }
    free(h->swrr);
    free(h);
}

static int get_state(const tg_health_entry_t *e);

void tg_health_set_params(tg_health_t *h, const tg_health_params_t *p) {
    h->params = *p;
    if (h->params.fail_threshold == 0) h->params.fail_threshold = 1;
    if (h->params.max_cooldown_ms < h->params.cooldown_ms) h->params.max_cooldown_ms = h->params.cooldown_ms;
    if (!(h->params.alpha > 0 && h->params.alpha <= 1)) h->params.alpha = default_params.alpha;
    /* A reload may change the cool-down: closed circuits take it at once,
     * open ones when they next close. */
    size_t n = atomic_load_explicit(&h->n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        tg_health_entry_t *e = &h->chunks[i / CHUNK][i % CHUNK];
        if (get_state(e) == TG_CIRCUIT_CLOSED) e->cooldown_ms = h->params.cooldown_ms;
    }
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

static uint64_t hash2(const char *a, const char *b) {
    return tg_hash_fnv64_str(tg_hash_fnv64_mix(tg_hash_fnv64_str(TG_HASH_FNV64_SEED, a), '/'), b);
}

static tg_health_entry_t *add_entry(tg_health_t *h, size_t i, const char *provider, const char *model) {
    if (h->chunks[i / CHUNK] == NULL &&
        (h->chunks[i / CHUNK] = calloc(CHUNK, sizeof(tg_health_entry_t))) == NULL)
        return NULL;
    tg_health_entry_t *e = &h->chunks[i / CHUNK][i % CHUNK];
    e->provider = strdup(provider);
    e->model = strdup(model);
    if (e->provider == NULL || e->model == NULL) {
        free(e->provider);
        free(e->model);
        e->provider = e->model = NULL;
        return NULL;
    }
    e->params = &h->params;
    e->cooldown_ms = h->params.cooldown_ms;
    atomic_init(&e->state, TG_CIRCUIT_CLOSED);
    atomic_init(&e->inflight, 0);
    /* The renderer may read the entry as soon as it sees the new count. */
    atomic_store_explicit(&h->n, i + 1, memory_order_release);
    return e;
}

tg_health_entry_t *tg_health_get(tg_health_t *h, const char *provider, const char *model) {
    if (h == NULL || provider == NULL || model == NULL) return NULL;
    size_t slot = (size_t)hash2(provider, model) & (INDEX_SIZE - 1);
    for (;; slot = (slot + 1) & (INDEX_SIZE - 1)) {
        uint32_t k = h->index[slot];
        if (k == 0) break;
        tg_health_entry_t *e = &h->chunks[(k - 1) / CHUNK][(k - 1) % CHUNK];
        if (strcmp(e->provider, provider) == 0 && strcmp(e->model, model) == 0) return e;
    }
    size_t n = atomic_load_explicit(&h->n, memory_order_relaxed);
    if (n >= TG_HEALTH_MAX_ENTRIES) return NULL;
    tg_health_entry_t *e = add_entry(h, n, provider, model);
    if (e) h->index[slot] = (uint32_t)n + 1;
    return e;
}

/* --- circuit breaker ------------------------------------------------------ */

static int get_state(const tg_health_entry_t *e) {
    return atomic_load_explicit(&e->state, memory_order_relaxed);
}

static void set_state(tg_health_entry_t *e, tg_circuit_t s) {
    atomic_store_explicit(&e->state, (int)s, memory_order_relaxed);
}

tg_circuit_t tg_health_state(const tg_health_entry_t *e) {
    return (tg_circuit_t)get_state(e);
}

int tg_health_inflight(const tg_health_entry_t *e) {
    return e ? atomic_load_explicit(&e->inflight, memory_order_relaxed) : 0;
}

int tg_health_allow(const tg_health_entry_t *e, int64_t now_ms) {
    if (e == NULL) return 1;
    if (now_ms < e->blocked_until_ms) return 0;
    switch (get_state(e)) {
    case TG_CIRCUIT_OPEN:
        return now_ms >= e->open_until_ms;
    case TG_CIRCUIT_HALF_OPEN:
        return !e->probe_out;
    default:
        return 1;
    }
}

void tg_health_begin(tg_health_entry_t *e, int64_t now_ms) {
    if (e == NULL) return;
    int n = atomic_load_explicit(&e->inflight, memory_order_relaxed);
    atomic_store_explicit(&e->inflight, n + 1, memory_order_relaxed);
    int s = get_state(e);
    /* The first attempt after the cool-down is the probe; until it ends,
     * tg_health_allow keeps every other request away. */
    if ((s == TG_CIRCUIT_OPEN && now_ms >= e->open_until_ms) ||
        (s == TG_CIRCUIT_HALF_OPEN && !e->probe_out)) {
        set_state(e, TG_CIRCUIT_HALF_OPEN);
        e->probe_out = 1;
    }
}

static void open_circuit(tg_health_entry_t *e, int64_t now_ms) {
    set_state(e, TG_CIRCUIT_OPEN);
    e->probe_out = 0;
    e->open_until_ms = now_ms + e->cooldown_ms;
}

static void ewma(double *v, double sample, double alpha, int first) {
    *v = first ? sample : *v + alpha * (sample - *v);
}

static void record_latency(tg_health_entry_t *e, int64_t ttft_ms, int64_t tokens, int64_t duration_ms,
                           int64_t now_ms) {
    double alpha = e->params ? e->params->alpha : 0.3;
    if (ttft_ms >= 0) {
        ewma(&e->ttft_ms, (double)ttft_ms, alpha, e->n_samples == 0);
        e->n_samples++;
        e->last_sample_ms = now_ms;
    }
    /* Tokens/s only from answers that streamed for a measurable time after
     * their first byte; a non-streamed answer arrives in one piece. */
    int64_t gen_ms = duration_ms - (ttft_ms > 0 ? ttft_ms : 0);
    if (tokens > 0 && gen_ms >= 10)
        ewma(&e->tps, (double)tokens * 1000.0 / (double)gen_ms, alpha, e->tps <= 0);
}

void tg_health_end(tg_health_entry_t *e, tg_outcome_t o, int64_t ttft_ms, int64_t tokens, int64_t duration_ms,
                   int64_t now_ms) {
    if (e == NULL) return;
    int n = atomic_load_explicit(&e->inflight, memory_order_relaxed);
    atomic_store_explicit(&e->inflight, n > 0 ? n - 1 : 0, memory_order_relaxed);
    int s = get_state(e);
    const tg_health_params_t *p = e->params;
    if (o == TG_OUTCOME_ABORT) {
        /* The probe gave no verdict: let the next request probe. */
        if (s == TG_CIRCUIT_HALF_OPEN) e->probe_out = 0;
        return;
    }
    if (o == TG_OUTCOME_OK) {
        record_latency(e, ttft_ms, tokens, duration_ms, now_ms);
        /* Answers that were under way when the circuit opened say little
         * about now: only the probe (or any answer while half-open) closes it. */
        if (s == TG_CIRCUIT_OPEN) return;
        e->fails = 0;
        if (s == TG_CIRCUIT_HALF_OPEN) {
            set_state(e, TG_CIRCUIT_CLOSED);
            e->probe_out = 0;
            e->cooldown_ms = p ? p->cooldown_ms : 10000;
        }
        return;
    }
    if (s == TG_CIRCUIT_OPEN) return;
    if (s == TG_CIRCUIT_HALF_OPEN) {
        int64_t max = p ? p->max_cooldown_ms : 60000;
        e->cooldown_ms = e->cooldown_ms * 2 > max ? max : e->cooldown_ms * 2;
        open_circuit(e, now_ms);
        return;
    }
    if (++e->fails >= (p ? p->fail_threshold : 5)) open_circuit(e, now_ms);
}

void tg_health_retry_after(tg_health_entry_t *e, int64_t until_ms) {
    if (e && until_ms > e->blocked_until_ms) e->blocked_until_ms = until_ms;
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

static size_t collect(tg_health_t *const *hs, size_t nh, row_t *rows, size_t cap) {
    size_t n = 0;
    for (size_t w = 0; w < nh; w++) {
        if (hs[w] == NULL) continue;
        size_t k = atomic_load_explicit(&hs[w]->n, memory_order_acquire);
        for (size_t i = 0; i < k && n < cap; i++) {
            const tg_health_entry_t *e = &hs[w]->chunks[i / CHUNK][i % CHUNK];
            rows[n++] = (row_t){e->provider, e->model, atomic_load_explicit(&e->state, memory_order_relaxed),
                                atomic_load_explicit(&e->inflight, memory_order_relaxed)};
        }
    }
    qsort(rows, n, sizeof(*rows), row_cmp);
    /* Merge the workers' rows of one provider/model. */
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
    for (size_t w = 0; w < nh; w++)
        if (hs[w]) total += atomic_load_explicit(&hs[w]->n, memory_order_acquire);
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
