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
#include <time.h>

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

/* --- one table, several workers (threads) ---------------------------------- */

typedef struct {
    tg_health_t *h;   /* this worker's handle on the shared table */
    const char *what; /* what run_on does on the worker's thread */
    int64_t now;
    int n, result;
} job_t;

static void *job_main(void *arg) {
    job_t *j = arg;
    tg_health_entry_t *e = tg_health_get(j->h, "deepseek", "deepseek-flash");
    if (strcmp(j->what, "fail") == 0) {
        fail_n(e, j->n, j->now);
    } else if (strcmp(j->what, "allow") == 0) {
        j->result = tg_health_allow(e, j->now);
    } else if (strcmp(j->what, "allow+begin") == 0) {
        j->result = tg_health_allow(e, j->now);
        if (j->result) tg_health_begin(e, j->now);
    } else if (strcmp(j->what, "retry-after") == 0) {
        tg_health_retry_after(e, j->now + j->n);
    } else if (strcmp(j->what, "ok") == 0) {
        tg_health_end(e, TG_OUTCOME_OK, 40, 0, 50, j->now);
    }
    return NULL;
}

/* Runs one step on a thread of its own, as worker `h` would, and waits. */
static int run_on(tg_health_t *h, const char *what, int64_t now, int n) {
    job_t j = {h, what, now, n, -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, job_main, &j), 0);
    pthread_join(t, NULL);
    return j.result;
}

typedef struct {
    tg_health_table_t *t;
    tg_health_t *w[2];
} shared_t;

static shared_t shared_new(void) {
    shared_t s = {tg_health_table_new(), {NULL, NULL}};
    assert_non_null(s.t);
    s.w[0] = tg_health_new_shared(s.t);
    s.w[1] = tg_health_new_shared(s.t);
    assert_non_null(s.w[0]);
    assert_non_null(s.w[1]);
    return s;
}

static void shared_free(shared_t *s) {
    tg_health_free(s->w[0]);
    tg_health_free(s->w[1]);
    tg_health_table_free(s->t);
}

static void test_shared_failure_streak(void **state) {
    shared_t s = shared_new();
    tg_health_entry_t *e = tg_health_get(s.w[0], "deepseek", "deepseek-flash");
    assert_ptr_equal(tg_health_get(s.w[1], "deepseek", "deepseek-flash"), e);
    /* Three failures on one worker, two on the other: one streak of five. */
    run_on(s.w[0], "fail", 1000, 3);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    run_on(s.w[1], "fail", 1000, 2);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_OPEN);
    assert_int_equal(run_on(s.w[0], "allow", 1001, 0), 0);
    assert_int_equal(run_on(s.w[1], "allow", 1001, 0), 0);
    assert_int_equal(e->open_until_ms, 11000);
    shared_free(&s);
}

static void test_shared_retry_after(void **state) {
    shared_t s = shared_new();
    tg_health_entry_t *e = tg_health_get(s.w[0], "deepseek", "deepseek-flash");
    run_on(s.w[0], "retry-after", 1000, 30000);
    assert_int_equal(run_on(s.w[1], "allow", 1000, 0), 0);
    assert_int_equal(run_on(s.w[1], "allow", 30999, 0), 0);
    assert_int_equal(run_on(s.w[1], "allow", 31000, 0), 1);
    /* An earlier deadline from another answer does not shorten the wait. */
    run_on(s.w[1], "retry-after", 1000, 5000);
    assert_int_equal(run_on(s.w[0], "allow", 30999, 0), 0);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    shared_free(&s);
}

static void test_shared_single_probe(void **state) {
    shared_t s = shared_new();
    tg_health_entry_t *e = tg_health_get(s.w[0], "deepseek", "deepseek-flash");
    run_on(s.w[0], "fail", 0, 5);
    /* Cool-down over: the first worker to ask takes the probe; the other is
     * told no while the probe is leased and while it is out. */
    assert_int_equal(run_on(s.w[0], "allow", 10000, 0), 1);
    assert_int_equal(run_on(s.w[1], "allow", 10000, 0), 0);
    assert_int_equal(run_on(s.w[1], "allow", 10000 + TG_HEALTH_PROBE_LEASE_MS - 1, 0), 0);
    /* A lease not followed by an attempt lapses: someone else may probe. */
    assert_int_equal(run_on(s.w[1], "allow+begin", 10000 + TG_HEALTH_PROBE_LEASE_MS, 0), 1);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_HALF_OPEN);
    assert_int_equal(run_on(s.w[0], "allow", 20000, 0), 0);
    assert_int_equal(run_on(s.w[1], "allow", 20000, 0), 0);
    assert_int_equal(tg_health_inflight(e), 1);
    run_on(s.w[1], "ok", 20000, 0);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    assert_int_equal(run_on(s.w[0], "allow", 20001, 0), 1);
    shared_free(&s);
}

/* Attempts sent before the circuit opened end during the probe: a failure
 * or a hang-up of theirs neither reopens the circuit nor frees the probe
 * slot for a second probe; only the probe's own end does. */
static void test_late_ends_keep_the_probe(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    tg_health_begin(e, 0);
    tg_health_begin(e, 0);
    fail_n(e, 5, 100);
    assert_true(tg_health_allow(e, 10100));
    tg_health_begin(e, 10100);
    tg_health_end(e, TG_OUTCOME_ABORT, -1, 0, 10150, 10150); /* began at 0 */
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_HALF_OPEN);
    assert_false(tg_health_allow(e, 10151));
    tg_health_end(e, TG_OUTCOME_FAIL, -1, 0, 10160, 10160);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_HALF_OPEN);
    assert_false(tg_health_allow(e, 10161));
    /* The probe's own hang-up frees the slot. */
    tg_health_end(e, TG_OUTCOME_ABORT, -1, 0, 70, 10170);
    assert_true(tg_health_allow(e, 10171));
    assert_int_equal(tg_health_inflight(e), 0);
    tg_health_free(h);
}

/* A reload changes the parameters, not the table: entries of providers
 * that stay keep their state, new ones start closed. */
static void test_reload_keeps_entries(void **state) {
    shared_t s = shared_new();
    tg_health_entry_t *e = tg_health_get(s.w[0], "deepseek", "deepseek-flash");
    run_on(s.w[0], "fail", 0, 5);
    run_on(s.w[0], "retry-after", 0, 30000);
    tg_health_params_t p = {3, 2000, 4000, 0.5};
    tg_health_set_params(s.w[1], &p);
    assert_ptr_equal(tg_health_get(s.w[1], "deepseek", "deepseek-flash"), e);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_OPEN);
    assert_int_equal(run_on(s.w[1], "allow", 20000, 0), 0);
    tg_health_entry_t *f = tg_health_get(s.w[1], "qwen", "qwen-plus");
    assert_int_equal(tg_health_state(f), TG_CIRCUIT_CLOSED);
    /* Both workers see the new threshold and cool-down. */
    fail_n(f, 2, 0);
    assert_int_equal(tg_health_state(f), TG_CIRCUIT_CLOSED);
    fail_n(f, 1, 0);
    assert_false(tg_health_allow(f, 1999));
    assert_true(tg_health_allow(f, 2000));
    shared_free(&s);
}

static void test_render_shared(void **state) {
    shared_t s = shared_new();
    tg_health_begin(tg_health_get(s.w[0], "deepseek", "deepseek-flash"), 0);
    tg_health_begin(tg_health_get(s.w[1], "deepseek", "deepseek-flash"), 0);
    char *txt = tg_health_render(s.w, 2);
    assert_non_null(txt);
    /* One table behind both handles: counted once, not twice. */
    assert_non_null(
        strstr(txt, "tollgate_upstream_inflight{provider=\"deepseek\",model=\"deepseek-flash\"} 2\n"));
    free(txt);
    shared_free(&s);
}

/* --- races ------------------------------------------------------------------- */

#define RACERS 4

typedef struct {
    pthread_barrier_t *bar;
    tg_health_t *h;
    int rounds;
    _Atomic int *allowed; /* per round: threads tg_health_allow let through */
} racer_t;

static void *race_probe(void *arg) {
    racer_t *r = arg;
    char model[32];
    for (int i = 0; i < r->rounds; i++) {
        snprintf(model, sizeof(model), "m%d", i);
        pthread_barrier_wait(r->bar); /* the main thread opened m<i> */
        tg_health_entry_t *e = tg_health_get(r->h, "p", model);
        if (tg_health_allow(e, 10000)) {
            atomic_fetch_add(&r->allowed[i], 1);
            /* The gateway builds the request between the two calls: the
             * other threads get to ask meanwhile. */
            struct timespec pause = {0, 20000};
            nanosleep(&pause, NULL);
            tg_health_begin(e, 10000);
        }
        pthread_barrier_wait(r->bar);
    }
    return NULL;
}

/* Every worker asks at the moment the cool-down ends: one probe goes. */
static void test_race_single_probe(void **state) {
    enum { ROUNDS = 300 };
    tg_health_table_t *t = tg_health_table_new();
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, RACERS + 1);
    static _Atomic int allowed[ROUNDS];
    racer_t r[RACERS];
    pthread_t th[RACERS];
    tg_health_t *mine = tg_health_new_shared(t);
    for (int i = 0; i < RACERS; i++) {
        r[i] = (racer_t){&bar, tg_health_new_shared(t), ROUNDS, allowed};
        assert_int_equal(pthread_create(&th[i], NULL, race_probe, &r[i]), 0);
    }
    char model[32];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(model, sizeof(model), "m%d", i);
        tg_health_entry_t *e = tg_health_get(mine, "p", model);
        fail_n(e, 5, 0);
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
        assert_int_equal(atomic_load(&allowed[i]), 1);
        assert_int_equal(tg_health_state(e), TG_CIRCUIT_HALF_OPEN);
        assert_int_equal(tg_health_inflight(e), 1);
    }
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        tg_health_free(r[i].h);
    }
    pthread_barrier_destroy(&bar);
    tg_health_free(mine);
    tg_health_table_free(t);
}

typedef struct {
    pthread_barrier_t *start;
    tg_health_t *h;
    int id, iters;
    _Atomic int64_t *clock;
    tg_health_entry_t *made[64]; /* what tg_health_get returned for "new<k>" */
    int64_t ok_samples[4];       /* OK ends with a first-token time, per entry */
} stress_t;

static const char *const stress_models[4] = {"a", "b", "c", "d"};

static void *stress_main(void *arg) {
    stress_t *s = arg;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(s->id + 1);
    char name[16];
    pthread_barrier_wait(s->start);
    for (int i = 0; i < s->iters; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t now = atomic_fetch_add(s->clock, 1);
        int k = (int)(x % 4);
        tg_health_entry_t *e = tg_health_get(s->h, "p", stress_models[k]);
        if (i < 64) {
            /* Every thread creates the same new entries at about the same time. */
            snprintf(name, sizeof(name), "new%d", i);
            s->made[i] = tg_health_get(s->h, "p", name);
        }
        if ((x >> 8) % 97 == 0) tg_health_retry_after(e, now + 3);
        tg_health_allow(e, now);
        tg_health_begin(e, now);
        int o = (int)((x >> 16) % 5); /* mostly OK, some FAIL, a few ABORT */
        int64_t ttft = (int64_t)((x >> 24) % 100);
        if (o <= 2) {
            tg_health_end(e, TG_OUTCOME_OK, ttft, 50, ttft + 20, now + 1);
            s->ok_samples[k]++;
        } else {
            tg_health_end(e, o == 3 ? TG_OUTCOME_FAIL : TG_OUTCOME_ABORT, -1, 0, 1, now + 1);
        }
    }
    return NULL;
}

static void *render_main(void *arg) {
    tg_health_t **h = arg;
    for (int i = 0; i < 200; i++)
        free(tg_health_render(h, 1));
    return NULL;
}

/* Begin and end from several threads at once: nothing is lost or torn. */
static void test_stress(void **state) {
    enum { ITERS = 20000 };
    tg_health_table_t *t = tg_health_table_new();
    tg_health_params_t p = {3, 5, 40, 0.3};
    static _Atomic int64_t clock;
    stress_t s[RACERS];
    pthread_t th[RACERS], rt;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    for (int i = 0; i < RACERS; i++)
        s[i] = (stress_t){
            .start = &start, .h = tg_health_new_shared(t), .id = i, .iters = ITERS, .clock = &clock};
    tg_health_set_params(s[0].h, &p);
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, stress_main, &s[i]), 0);
    assert_int_equal(pthread_create(&rt, NULL, render_main, &s[0].h), 0);
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    pthread_join(rt, NULL);
    pthread_barrier_destroy(&start);
    for (int k = 0; k < 64; k++)
        for (int i = 1; i < RACERS; i++)
            assert_ptr_equal(s[i].made[k], s[0].made[k]);
    for (int k = 0; k < 4; k++) {
        tg_health_entry_t *e = tg_health_get(s[0].h, "p", stress_models[k]);
        int64_t ok = 0;
        for (int i = 0; i < RACERS; i++)
            ok += s[i].ok_samples[k];
        /* Every begin had its end; every sample was counted; the averages
         * stay inside what was sampled (first-token 0-99 ms). */
        assert_int_equal(tg_health_inflight(e), 0);
        assert_int_equal(e->n_samples, ok);
        assert_true(e->ttft_ms >= 0 && e->ttft_ms <= 99);
        assert_true(e->tps > 0);
        tg_circuit_t st = tg_health_state(e);
        assert_true(st == TG_CIRCUIT_CLOSED || st == TG_CIRCUIT_OPEN || st == TG_CIRCUIT_HALF_OPEN);
    }
    /* Each new entry exists once: 4 + 64 entries in all. */
    char *txt = tg_health_render(&s[0].h, 1);
    assert_non_null(txt);
    int rows = 0;
    for (const char *q = txt; (q = strstr(q, "tollgate_circuit_state{")) != NULL; q++)
        rows++;
    assert_int_equal(rows, 4 + 64);
    free(txt);
    for (int i = 0; i < RACERS; i++)
        tg_health_free(s[i].h);
    tg_health_table_free(t);
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
        cmocka_unit_test(test_shared_failure_streak),
        cmocka_unit_test(test_shared_retry_after),
        cmocka_unit_test(test_shared_single_probe),
        cmocka_unit_test(test_late_ends_keep_the_probe),
        cmocka_unit_test(test_reload_keeps_entries),
        cmocka_unit_test(test_render_shared),
        cmocka_unit_test(test_race_single_probe),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
