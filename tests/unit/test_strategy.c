/* test_strategy.c — the order each strategy gives a route's candidates:
 * ordered keeps the list; weighted is nginx's smooth weighted round robin
 * (exact shares over 1,000 picks, the smooth sequence, state per route);
 * cheapest sorts by estimated cost with unknown prices last; fastest sends
 * nearly everything to a 50 ms provider over a 400 ms one, spreads load by
 * in-flight count, explores unmeasured candidates, and follows a swap of
 * speeds. Latencies come from a small simulation with its own clock. */
/* deps: policy/strategy.c policy/health.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "policy/strategy.h"

static tg_candidate_t cands[4] = {
    {"a/m", NULL, "m", 1},
    {"b/m", NULL, "m", 1},
    {"c/m", NULL, "m", 1},
    {"d/m", NULL, "m", 1},
};

/* Items for the first n candidates, in listed order. */
static void items_for(tg_strategy_item_t *v, size_t n, tg_health_entry_t **he) {
    for (size_t i = 0; i < n; i++)
        v[i] = (tg_strategy_item_t){&cands[i], i, he ? he[i] : NULL, -1, 0, 0};
}

static tg_strategy_in_t in_for(tg_strategy_t s, tg_health_t *h, size_t n, int64_t now) {
    return (tg_strategy_in_t){s, "r", n, tg_strategy_sig(cands, n), 256, now, h};
}

static void set_weights(unsigned a, unsigned b, unsigned c) {
    cands[0].weight = a, cands[1].weight = b, cands[2].weight = c, cands[3].weight = 1;
}

static void test_ordered(void **state) {
    tg_strategy_item_t v[3];
    items_for(v, 3, NULL);
    tg_strategy_in_t in = in_for(TG_STRATEGY_ORDERED, NULL, 3, 0);
    tg_strategy_order(&in, v, 3);
    for (size_t i = 0; i < 3; i++)
        assert_ptr_equal(v[i].cand, &cands[i]);
}

static void count_weighted(tg_health_t *h, size_t n, int picks, int *count) {
    for (int k = 0; k < picks; k++) {
        tg_strategy_item_t v[4];
        items_for(v, n, NULL);
        tg_strategy_in_t in = in_for(TG_STRATEGY_WEIGHTED, h, n, 0);
        tg_strategy_order(&in, v, n);
        count[v[0].index]++;
        /* Every candidate stays in the list for failover. */
        int seen = 0;
        for (size_t i = 0; i < n; i++)
            seen |= 1 << v[i].index;
        assert_int_equal(seen, (1 << n) - 1);
    }
}

static void test_weighted_exact_shares(void **state) {
    tg_health_t *h = tg_health_new();
    int c2[4] = {0}, c3[4] = {0};
    set_weights(3, 1, 1);
    count_weighted(h, 2, 1000, c2);
    assert_int_equal(c2[0], 750);
    assert_int_equal(c2[1], 250);
    /* Another route keeps its own state. */
    set_weights(5, 3, 2);
    cands[0].target = "a/m2"; /* a different list: a different signature */
    count_weighted(h, 3, 1000, c3);
    assert_int_equal(c3[0], 500);
    assert_int_equal(c3[1], 300);
    assert_int_equal(c3[2], 200);
    cands[0].target = "a/m";
    tg_health_free(h);
}

static void test_weighted_smooth_sequence(void **state) {
    /* nginx's example: weights 5, 1, 1 give a a b a c a a, never five a's in a row. */
    tg_health_t *h = tg_health_new();
    set_weights(5, 1, 1);
    const char *want = "aabacaa"
                       "aabacaa";
    for (int k = 0; k < 14; k++) {
        tg_strategy_item_t v[3];
        items_for(v, 3, NULL);
        tg_strategy_in_t in = in_for(TG_STRATEGY_WEIGHTED, h, 3, 0);
        in.route = "smooth";
        tg_strategy_order(&in, v, 3);
        assert_int_equal('a' + (int)v[0].index, want[k]);
    }
    tg_health_free(h);
}

static void test_weighted_subset_and_stateless(void **state) {
    /* Candidate b filtered out (circuit open): a and c share 3:1. */
    tg_health_t *h = tg_health_new();
    set_weights(3, 5, 1);
    int count[3] = {0};
    for (int k = 0; k < 400; k++) {
        tg_strategy_item_t v[2] = {{&cands[0], 0, NULL, -1, 0, 0}, {&cands[2], 2, NULL, -1, 0, 0}};
        tg_strategy_in_t in = in_for(TG_STRATEGY_WEIGHTED, h, 3, 0);
        tg_strategy_order(&in, v, 2);
        count[v[0].index]++;
    }
    assert_int_equal(count[0], 300);
    assert_int_equal(count[2], 100);
    /* Without a worker's state (explain): the heaviest first. */
    tg_strategy_item_t v[3];
    items_for(v, 3, NULL);
    tg_strategy_in_t in = in_for(TG_STRATEGY_WEIGHTED, NULL, 3, 0);
    tg_strategy_order(&in, v, 3);
    assert_int_equal(v[0].index, 1);
    assert_int_equal(v[1].index, 0);
    assert_int_equal(v[2].index, 2);
    set_weights(1, 1, 1);
    tg_health_free(h);
}

static void test_cheapest(void **state) {
    tg_strategy_item_t v[4];
    items_for(v, 4, NULL);
    v[0].cost_pusd = 900, v[1].cost_pusd = -1, v[2].cost_pusd = 300, v[3].cost_pusd = 900;
    tg_strategy_in_t in = in_for(TG_STRATEGY_CHEAPEST, NULL, 4, 0);
    tg_strategy_order(&in, v, 4);
    /* Ascending, ties in listed order, no price last. */
    assert_int_equal(v[0].index, 2);
    assert_int_equal(v[1].index, 0);
    assert_int_equal(v[2].index, 3);
    assert_int_equal(v[3].index, 1);
}

/* --- fastest: a simulated clock and providers ------------------------------- */

typedef struct {
    int64_t end;
    tg_health_entry_t *e;
    int64_t ttft;
} pending_t;

typedef struct {
    tg_health_t *h;
    tg_health_entry_t *he[3];
    int64_t latency[3]; /* time to first token of each provider now */
    pending_t q[4096];
    size_t nq;
    int64_t now;
} sim_t;

static void sim_settle(sim_t *s) {
    for (size_t i = 0; i < s->nq;) {
        if (s->q[i].end <= s->now) {
            /* 256 tokens streamed at 1,000 tokens/s after the first. */
            tg_health_end(s->q[i].e, TG_OUTCOME_OK, s->q[i].ttft, 256, s->q[i].ttft + 256, s->q[i].end);
            s->q[i] = s->q[--s->nq];
        } else {
            i++;
        }
    }
}

/* Runs n requests, one every `gap` ms, over candidates 0..k-1; adds the
 * picks per candidate to count. */
static void sim_run(sim_t *s, size_t k, int n, int64_t gap, int *count) {
    for (int r = 0; r < n; r++) {
        s->now += gap;
        sim_settle(s);
        tg_strategy_item_t v[3];
        items_for(v, k, s->he);
        tg_strategy_in_t in = in_for(TG_STRATEGY_FASTEST, s->h, k, s->now);
        tg_strategy_order(&in, v, k);
        size_t c = v[0].index;
        count[c]++;
        tg_health_begin(s->he[c], s->now);
        s->q[s->nq++] = (pending_t){s->now + s->latency[c] + 256, s->he[c], s->latency[c]};
    }
}

static void sim_init(sim_t *s) {
    memset(s, 0, sizeof(*s));
    s->h = tg_health_new();
    tg_health_seed(s->h, 12345);
    s->he[0] = tg_health_get(s->h, "fast", "m");
    s->he[1] = tg_health_get(s->h, "slow", "m");
    s->he[2] = tg_health_get(s->h, "new", "m");
    s->now = 1000000;
}

static void test_fastest_prefers_fast_and_follows_swap(void **state) {
    sim_t s;
    sim_init(&s);
    s.latency[0] = 50, s.latency[1] = 400;
    /* 20 requests/s on this worker, each streaming 256 tokens after its
     * first: about 6 in flight. */
    int first[3] = {0};
    sim_run(&s, 2, 1000, 50, first);
    fprintf(stderr, "fastest 50 ms vs 400 ms: %d / %d\n", first[0], first[1]);
    assert_true(first[0] > 900);
    /* Their speeds swap: within the next 1,000 requests the traffic moves. */
    s.latency[0] = 400, s.latency[1] = 50;
    int after[3] = {0}, late[3] = {0};
    sim_run(&s, 2, 500, 50, after);
    sim_run(&s, 2, 500, 50, late);
    fprintf(stderr, "after the swap: %d / %d, then %d / %d\n", after[0], after[1], late[0], late[1]);
    assert_true(late[1] > 450);
    tg_health_free(s.h);
}

static void test_fastest_spreads_heavy_load(void **state) {
    /* 200 requests/s on one worker: the fast provider would hold ~60 in
     * flight alone. It still gets most, but the slow one takes a share. */
    sim_t s;
    sim_init(&s);
    s.latency[0] = 50, s.latency[1] = 400;
    int count[3] = {0};
    sim_run(&s, 2, 1000, 5, count);
    fprintf(stderr, "fastest under heavy load: %d / %d\n", count[0], count[1]);
    assert_true(count[0] > 500);
    assert_true(count[1] > 100);
    tg_health_free(s.h);
}

static void test_fastest_equal_inflight(void **state) {
    /* Measured once each, nothing in flight: every pick is the fast one,
     * and the slow one is next for failover. */
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *he[2] = {tg_health_get(h, "fast", "m"), tg_health_get(h, "slow", "m")};
    tg_health_end(he[0], TG_OUTCOME_OK, 50, 0, 50, 0);
    tg_health_end(he[1], TG_OUTCOME_OK, 400, 0, 400, 0);
    int fast = 0;
    for (int k = 0; k < 1000; k++) {
        tg_strategy_item_t v[2];
        items_for(v, 2, he);
        tg_strategy_in_t in = in_for(TG_STRATEGY_FASTEST, h, 2, 1000);
        tg_strategy_order(&in, v, 2);
        fast += v[0].index == 0;
        assert_int_equal(v[1].index, 1 - v[0].index);
    }
    assert_true(fast > 900);
    /* 55 requests in flight on the fast one: 51 x (1 + 55/8) > 401, the slow one takes the next. */
    for (int i = 0; i < 54; i++)
        tg_health_begin(he[0], 1000);
    tg_strategy_item_t w[2];
    items_for(w, 2, he);
    tg_strategy_in_t in0 = in_for(TG_STRATEGY_FASTEST, h, 2, 1000);
    tg_strategy_order(&in0, w, 2);
    assert_int_equal(w[0].index, 0);
    tg_health_begin(he[0], 1000);
    tg_strategy_item_t v[2];
    items_for(v, 2, he);
    tg_strategy_in_t in = in_for(TG_STRATEGY_FASTEST, h, 2, 1000);
    tg_strategy_order(&in, v, 2);
    assert_int_equal(v[0].index, 1);
    tg_health_free(h);
}

static void test_fastest_explores(void **state) {
    /* A candidate never measured is tried, then judged on what it shows. */
    sim_t s;
    sim_init(&s);
    s.latency[0] = 50, s.latency[1] = 400, s.latency[2] = 100;
    int count[3] = {0};
    sim_run(&s, 3, 300, 50, count);
    assert_true(count[2] > 0);
    assert_true(s.he[2]->n_samples > 0);
    assert_true(count[0] > count[2]);
    /* A measurement older than TG_STRATEGY_STALE_MS counts as unknown again. */
    tg_strategy_item_t v[3];
    items_for(v, 3, s.he);
    tg_strategy_in_t in = in_for(TG_STRATEGY_FASTEST, s.h, 3, s.now + TG_STRATEGY_STALE_MS + 10000);
    assert_true(tg_strategy_latency(s.he[1], 256, s.now + TG_STRATEGY_STALE_MS + 10000) < 0);
    tg_strategy_order(&in, v, 3);
    for (size_t i = 0; i < 3; i++)
        assert_false(v[i].score_known);
    tg_health_free(s.h);
}

static void test_latency_score(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    assert_true(tg_strategy_latency(e, 256, 0) < 0);
    /* 100 ms first token, 1,000 tokens in 2 s: 256 tokens take 512 ms more. */
    tg_health_end(e, TG_OUTCOME_OK, 100, 1000, 2100, 0);
    double s = tg_strategy_latency(e, 256, 0);
    assert_true(s > 611.9 && s < 612.1);
    tg_health_free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordered),
        cmocka_unit_test(test_weighted_exact_shares),
        cmocka_unit_test(test_weighted_smooth_sequence),
        cmocka_unit_test(test_weighted_subset_and_stateless),
        cmocka_unit_test(test_cheapest),
        cmocka_unit_test(test_fastest_prefers_fast_and_follows_swap),
        cmocka_unit_test(test_fastest_spreads_heavy_load),
        cmocka_unit_test(test_fastest_equal_inflight),
        cmocka_unit_test(test_fastest_explores),
        cmocka_unit_test(test_latency_score),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
