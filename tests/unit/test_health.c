/* test_health.c — the circuit breaker and latency tracking kept per
 * provider/model: closed -> open after N consecutive failures, open ->
 * half-open after the cool-down with exactly one probe, half-open -> closed
 * on success and -> open (longer cool-down, capped) on failure; retry-after;
 * EWMAs; the /metrics lines. Then the table the workers of a process share,
 * with real threads: a failure streak, a retry-after and the one probe seen
 * by every worker, entries created by racing threads, and a stress run of
 * begin/end from several threads after which every counter adds up (build
 * this test with -fsanitize=thread to check the atomics). Time is passed
 * in, so no clock is involved. */
/* deps: policy/health.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/health.h"

static void fail_n(tg_health_entry_t *e, int n, int64_t now) {
    for (int i = 0; i < n; i++) {
        tg_health_begin(e, now);
        tg_health_end(e, TG_OUTCOME_FAIL, -1, 0, 5, now);
    }
}

static void test_entries(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *a = tg_health_get(h, "deepseek", "deepseek-flash");
    tg_health_entry_t *b = tg_health_get(h, "qwen", "qwen-plus");
    assert_non_null(a);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(tg_health_get(h, "deepseek", "deepseek-flash"), a);
    /* provider/model is the key, not the concatenation. */
    assert_ptr_not_equal(tg_health_get(h, "deep", "seek/deepseek-flash"), a);
    /* Many entries: earlier addresses stay valid. */
    char name[32];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        assert_non_null(tg_health_get(h, "p", name));
    }
    assert_ptr_equal(tg_health_get(h, "deepseek", "deepseek-flash"), a);
    assert_string_equal(a->provider, "deepseek");
    assert_null(tg_health_get(NULL, "x", "y"));
    tg_health_free(h);
}

static void test_open_after_threshold(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    fail_n(e, 4, 1000);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    assert_true(tg_health_allow(e, 1000));
    /* A success resets the run of failures. */
    tg_health_begin(e, 1000);
    tg_health_end(e, TG_OUTCOME_OK, 50, 10, 100, 1000);
    fail_n(e, 4, 1000);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    fail_n(e, 1, 1000);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_OPEN);
    assert_false(tg_health_allow(e, 1000));
    assert_false(tg_health_allow(e, 10999));
    tg_health_free(h);
}

static void test_half_open_probe_closes(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    fail_n(e, 5, 0);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_OPEN);
    /* Cool-down over: one request may probe, the next must wait for it. */
    assert_true(tg_health_allow(e, 10000));
    tg_health_begin(e, 10000);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_HALF_OPEN);
    assert_false(tg_health_allow(e, 10001));
    tg_health_end(e, TG_OUTCOME_OK, 80, 20, 300, 10300);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    assert_true(tg_health_allow(e, 10301));
    /* Closed again means a fresh run of N failures is needed. */
    fail_n(e, 4, 10400);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    tg_health_free(h);
}

static void test_half_open_probe_fails(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    fail_n(e, 5, 0);
    int64_t t = 10000, expect[] = {20000, 40000, 60000, 60000};
    for (int i = 0; i < 4; i++) {
        tg_health_begin(e, t);
        t += 10; /* the probe fails 10 ms after it began */
        tg_health_end(e, TG_OUTCOME_FAIL, -1, 0, 10, t);
        /* Each failed probe doubles the cool-down, up to 60 s. */
        assert_int_equal(tg_health_state(e), TG_CIRCUIT_OPEN);
        assert_false(tg_health_allow(e, t + expect[i] - 1));
        assert_true(tg_health_allow(e, t + expect[i]));
        t += expect[i];
    }
    /* Recovery resets the cool-down to its first value. */
    tg_health_begin(e, t);
    tg_health_end(e, TG_OUTCOME_OK, 50, 1, 60, t);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    fail_n(e, 5, t);
    assert_true(tg_health_allow(e, t + 10000));
    tg_health_free(h);
}

static void test_abort_frees_probe(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    fail_n(e, 5, 0);
    tg_health_begin(e, 10000);
    assert_false(tg_health_allow(e, 10001));
    /* The client hung up during the probe: no verdict, someone else probes. */
    tg_health_end(e, TG_OUTCOME_ABORT, -1, 0, 1, 10002);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_HALF_OPEN);
    assert_true(tg_health_allow(e, 10003));
    assert_int_equal(tg_health_inflight(e), 0);
    tg_health_free(h);
}

static void test_params_and_late_answers(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_params_t p = {2, 1000, 3000, 0.5};
    tg_health_set_params(h, &p);
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    tg_health_begin(e, 0); /* started before the circuit opened */
    fail_n(e, 2, 0);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_OPEN);
    /* Its late success does not close the circuit before the probe. */
    tg_health_end(e, TG_OUTCOME_OK, 40, 1, 50, 10);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_OPEN);
    assert_false(tg_health_allow(e, 999));
    assert_true(tg_health_allow(e, 1000));
    /* A reload shortens the cool-down: the open circuit keeps its period,
     * a closed one (and this one once it closes) takes the new one. */
    tg_health_entry_t *f = tg_health_get(h, "q", "m");
    tg_health_params_t p2 = {1, 200, 400, 0.5};
    tg_health_set_params(h, &p2);
    assert_false(tg_health_allow(e, 999));
    fail_n(f, 1, 5000);
    assert_int_equal(tg_health_state(f), TG_CIRCUIT_OPEN);
    assert_false(tg_health_allow(f, 5199));
    assert_true(tg_health_allow(f, 5200));
    tg_health_free(h);
}

static void test_retry_after(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    tg_health_retry_after(e, 5000);
    assert_false(tg_health_allow(e, 4999));
    assert_true(tg_health_allow(e, 5000));
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    tg_health_free(h);
}

static void test_ewma_and_inflight(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    tg_health_begin(e, 0);
    tg_health_begin(e, 0);
    assert_int_equal(tg_health_inflight(e), 2);
    /* 100 ms to first token, then 200 tokens in 1 s. */
    tg_health_end(e, TG_OUTCOME_OK, 100, 200, 1100, 1100);
    assert_int_equal(e->n_samples, 1);
    assert_true(e->ttft_ms > 99.9 && e->ttft_ms < 100.1);
    assert_true(e->tps > 199.9 && e->tps < 200.1);
    tg_health_end(e, TG_OUTCOME_OK, 200, 0, 200, 1200);
    /* alpha 0.3: 100 + 0.3 * (200 - 100); a one-piece answer gives no rate. */
    assert_true(e->ttft_ms > 129.9 && e->ttft_ms < 130.1);
    assert_true(e->tps > 199.9 && e->tps < 200.1);
    assert_int_equal(e->last_sample_ms, 1200);
    assert_int_equal(tg_health_inflight(e), 0);
    /* Failures do not move the latency figures, and in-flight never goes negative. */
    tg_health_end(e, TG_OUTCOME_FAIL, 5, 0, 5, 1300);
    assert_true(e->ttft_ms > 129.9 && e->ttft_ms < 130.1);
    assert_int_equal(tg_health_inflight(e), 0);
    tg_health_free(h);
}

static void test_render(void **state) {
    tg_health_t *w[2] = {tg_health_new(), tg_health_new()};
    tg_health_entry_t *a0 = tg_health_get(w[0], "deepseek", "deepseek-flash");
    tg_health_entry_t *a1 = tg_health_get(w[1], "deepseek", "deepseek-flash");
    tg_health_entry_t *b1 = tg_health_get(w[1], "open\"ai", "gpt-4o-mini");
    tg_health_begin(a0, 0);
    tg_health_begin(a1, 0);
    tg_health_begin(a1, 0);
    fail_n(b1, 5, 0);
    char *txt = tg_health_render(w, 2);
    assert_non_null(txt);
    assert_non_null(strstr(txt, "# TYPE tollgate_circuit_state gauge\n"));
    assert_non_null(
        strstr(txt, "tollgate_circuit_state{provider=\"deepseek\",model=\"deepseek-flash\"} 0\n"));
    assert_non_null(strstr(txt, "tollgate_circuit_state{provider=\"open\\\"ai\",model=\"gpt-4o-mini\"} 1\n"));
    /* In-flight is summed over workers; each provider/model appears once. */
    assert_non_null(
        strstr(txt, "tollgate_upstream_inflight{provider=\"deepseek\",model=\"deepseek-flash\"} 3\n"));
    const char *first = strstr(txt, "tollgate_circuit_state{provider=\"deepseek\"");
    assert_null(strstr(first + 1, "tollgate_circuit_state{provider=\"deepseek\""));
    free(txt);
    tg_health_free(w[0]);
    tg_health_free(w[1]);
}

static void test_rand_and_swrr_state(void **state) {
    tg_health_t *h = tg_health_new(), *g = tg_health_new();
    tg_health_seed(h, 7);
    tg_health_seed(g, 7);
    for (int i = 0; i < 10; i++)
        assert_true(tg_health_rand(h) == tg_health_rand(g));
    int64_t *cw = tg_health_swrr(h, "r", 3, 11);
    cw[0] = 5;
    assert_ptr_equal(tg_health_swrr(h, "r", 3, 11), cw);
    assert_int_equal(tg_health_swrr(h, "r", 3, 11)[0], 5);
    /* The route's list changed (reload): state starts afresh. */
    assert_int_equal(tg_health_swrr(h, "r", 3, 12)[0], 0);
    assert_int_equal(tg_health_swrr(h, "other", 2, 1)[0], 0);
    tg_health_free(h);
    tg_health_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries),
        cmocka_unit_test(test_open_after_threshold),
        cmocka_unit_test(test_half_open_probe_closes),
        cmocka_unit_test(test_half_open_probe_fails),
        cmocka_unit_test(test_abort_frees_probe),
        cmocka_unit_test(test_params_and_late_answers),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_ewma_and_inflight),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_rand_and_swrr_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
