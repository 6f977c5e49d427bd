/* strategy.c — the four ways a route orders its candidates. Input is the
 * list left after require: and circuit filtering, in the route's order;
 * output is the same items reordered: first the one to send to, then the
 * failover order. Weighted round robin keeps per-route current weights and
 * fastest draws random numbers, both from the worker's own tg_health_t;
 * the latency and in-flight figures fastest reads are the process's,
 * shared by the workers (policy/health.h), read with atomic loads. With no
 * health table (explain, tests) both degrade to deterministic orders.
 * Lists are a handful of items, so sorting is insertion sort: stable, no
 * allocation. */
#include "policy/strategy.h"

#include <stdatomic.h>
#include <string.h>

#include "core/hash.h"

typedef int (*before_fn)(const tg_strategy_item_t *a, const tg_strategy_item_t *b, const void *ctx);

/* Stable: an item moves only past items it strictly goes before. */
static void sort_items(tg_strategy_item_t *v, size_t n, before_fn before, const void *ctx) {
    for (size_t i = 1; i < n; i++) {
        tg_strategy_item_t x = v[i];
        size_t j = i;
        while (j > 0 && before(&x, &v[j - 1], ctx)) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static void move_to_front(tg_strategy_item_t *v, size_t k) {
    tg_strategy_item_t x = v[k];
    memmove(v + 1, v, k * sizeof(*v));
    v[0] = x;
}

const char *tg_strategy_name(tg_strategy_t s) {
    switch (s) {
    case TG_STRATEGY_WEIGHTED:
        return "weighted";
    case TG_STRATEGY_CHEAPEST:
        return "cheapest";
    case TG_STRATEGY_FASTEST:
        return "fastest";
    default:
        return "ordered";
    }
}

uint64_t tg_strategy_sig(const tg_candidate_t *c, size_t n) {
    uint64_t v = TG_HASH_FNV64_SEED;
    for (size_t i = 0; i < n; i++) {
        v = tg_hash_fnv64_str(v, c[i].target);
        v = tg_hash_fnv64_mix(v, 0x100u + c[i].weight);
    }
    return v;
}

double tg_strategy_latency(const tg_health_entry_t *e, int64_t expected_output, int64_t now_ms) {
    /* Other workers update these while we read: each is loaded once, and
     * n_samples first, which makes the ttft_ms it counts visible. */
    if (e == NULL || atomic_load_explicit(&e->n_samples, memory_order_acquire) == 0) return -1;
    if (now_ms - atomic_load_explicit(&e->last_sample_ms, memory_order_relaxed) > TG_STRATEGY_STALE_MS)
        return -1;
    double ms = atomic_load_explicit(&e->ttft_ms, memory_order_relaxed);
    double tps = atomic_load_explicit(&e->tps, memory_order_relaxed);
    if (tps > 0 && expected_output > 0) ms += (double)expected_output * 1000.0 / tps;
    return ms;
}

/* --- cheapest -------------------------------------------------------------- */

static int cheaper(const tg_strategy_item_t *a, const tg_strategy_item_t *b, const void *ctx) {
    if (a->cost_pusd < 0) return 0;
    return b->cost_pusd < 0 || a->cost_pusd < b->cost_pusd;
}

/* --- weighted: smooth weighted round robin ------------------------------- */

static int64_t swrr_next(const tg_strategy_item_t *x, const int64_t *cw) {
    return cw[x->index] + (int64_t)x->cand->weight;
}

static int swrr_before(const tg_strategy_item_t *a, const tg_strategy_item_t *b, const void *ctx) {
    return swrr_next(a, ctx) > swrr_next(b, ctx);
}

static int heavier(const tg_strategy_item_t *a, const tg_strategy_item_t *b, const void *ctx) {
    return a->cand->weight > b->cand->weight;
}

static void weighted(const tg_strategy_in_t *in, tg_strategy_item_t *v, size_t n) {
    int64_t *cw = in->health
                      ? tg_health_swrr(in->health, in->route ? in->route : "", in->route_n, in->route_sig)
                      : NULL;
    if (cw == NULL) {
        /* Stateless: every pick is the first of a fresh round. */
        sort_items(v, n, heavier, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (v[i].index >= in->route_n) return; /* not this route's list: keep the order */
    int64_t total = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        cw[v[i].index] += v[i].cand->weight;
        total += v[i].cand->weight;
        if (cw[v[i].index] > cw[v[best].index]) best = i;
    }
    cw[v[best].index] -= total;
    move_to_front(v, best);
    sort_items(v + 1, n - 1, swrr_before, cw);
}

/* --- fastest: power of two choices ----------------------------------------- */

/* The score grows with the requests the process has in flight there: an
 * LLM API serves many requests at once, so the cost of load is spread over
 * TG_STRATEGY_INFLIGHT_SCALE requests rather than charged in full for each
 * (which would split traffic evenly by latency x load, flooding neither
 * but sending far too much to the slow one). +1 ms keeps in-flight
 * counting when every score is 0 (nothing measured yet). */
static double adjusted(const tg_strategy_item_t *x) {
    int inflight = tg_health_inflight(x->health);
    return (x->score_ms + 1.0) * (1.0 + (double)inflight / TG_STRATEGY_INFLIGHT_SCALE);
}

static int faster(const tg_strategy_item_t *a, const tg_strategy_item_t *b, const void *ctx) {
    return adjusted(a) < adjusted(b);
}

/* Index of an item drawn with probability proportional to its weight
 * (weight 0 counts as 1 here: it is still a candidate), skipping `skip`. */
static size_t draw(tg_health_t *h, const tg_strategy_item_t *v, size_t n, size_t skip) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (i != skip) total += v[i].cand->weight ? v[i].cand->weight : 1;
    uint64_t r = tg_health_rand(h) % total;
    for (size_t i = 0; i < n; i++) {
        if (i == skip) continue;
        uint64_t w = v[i].cand->weight ? v[i].cand->weight : 1;
        if (r < w) return i;
        r -= w;
    }
    return n - 1;
}

static void fastest(const tg_strategy_in_t *in, tg_strategy_item_t *v, size_t n) {
    if (in->health == NULL || n < 2) {
        sort_items(v, n, faster, NULL);
        return;
    }
    size_t a = draw(in->health, v, n, n);
    size_t b = draw(in->health, v, n, a);
    size_t win = adjusted(&v[b]) < adjusted(&v[a]) || (adjusted(&v[b]) == adjusted(&v[a]) && b < a) ? b : a;
    move_to_front(v, win);
    sort_items(v + 1, n - 1, faster, NULL);
}

/* Scores for every item; an unmeasured one gets a little better than the
 * best measured, so it is tried soon and then judged on what it shows. */
static void score_items(const tg_strategy_in_t *in, tg_strategy_item_t *v, size_t n) {
    double best = -1;
    for (size_t i = 0; i < n; i++) {
        v[i].score_ms = tg_strategy_latency(v[i].health, in->expected_output, in->now_ms);
        v[i].score_known = v[i].score_ms >= 0;
        if (v[i].score_known && (best < 0 || v[i].score_ms < best)) best = v[i].score_ms;
    }
    for (size_t i = 0; i < n; i++)
        if (!v[i].score_known) v[i].score_ms = best < 0 ? 0 : best * 0.9;
}

void tg_strategy_order(const tg_strategy_in_t *in, tg_strategy_item_t *items, size_t n) {
    score_items(in, items, n);
    if (n < 2) return;
    switch (in->strategy) {
    case TG_STRATEGY_CHEAPEST:
        sort_items(items, n, cheaper, NULL);
        break;
    case TG_STRATEGY_WEIGHTED:
        weighted(in, items, n);
        break;
    case TG_STRATEGY_FASTEST:
        fastest(in, items, n);
        break;
    default:
        break;
    }
}
