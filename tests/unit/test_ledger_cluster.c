/* test_ledger_cluster.c — the usage ledger on a real Redis Cluster on loopback ports
 * (tests/unit/cluster_fixture.h): records of several gateway keys land on the masters of their
 * keys' slots under tagged names (gateway/keys.h), with the day's index; sums are exact and a
 * request id counts once; queries reach the master of their key; with a replica per master, a
 * master killed while records flow loses nothing and counts nothing twice. Skipped, with a
 * message, when a cluster cannot be made here. */
/* clang-format off */
/* deps: gateway/ledger.c gateway/ledger_rec.c gateway/redis.c gateway/redis_cluster.c gateway/journal.c core/pool.c core/log.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "gateway/keys.h"
#include "gateway/ledger.h"
#include "gateway/redis_cluster.h"
#include "tests/unit/cluster_fixture.h"

#define TS_DAY0 1740830400000LL /* 2025-03-01T12:00:00Z */
#define DAY0 "2025-03-01"
#define NKEYS 7
/* Six gateway keys and none ("", tagged "-"): their slots fall on every master of three. */
static const char *keys[NKEYS] = {"team-a", "team-b", "team-c", "ops", "batch", "eval", ""};

typedef struct {
    cluster_fx_t x;
    int up;
    char journal[96];
    struct event_base *base;
    tg_ledger_t *l;
} fx_t;

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

#define RUN_UNTIL(f, cond) FIXTURE_RUN_UNTIL((f)->base, 3000, cond)

static int setup_n(void **state, int n) {
    fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    f->up = cluster_fx_make(&f->x, n);
    if (!f->up) return 0;
    snprintf(f->journal, sizeof(f->journal), "%s/journal", f->x.dir);
    f->base = event_base_new();
    char url[128], err[256] = "";
    snprintf(url, sizeof(url), "redis+cluster://127.0.0.1:%d,127.0.0.1:%d", f->x.port[0], f->x.port[1]);
    f->l = tg_ledger_new(f->base, url, f->journal, 0, err, sizeof(err));
    assert_non_null(f->l);
    assert_true(tg_ledger_cluster(f->l));
    RUN_UNTIL(f, tg_ledger_connected(f->l));
    assert_int_equal(tg_ledger_masters(f->l), 3);
    return 0;
}

static int setup3(void **state) {
    return setup_n(state, 3);
}

static int setup6(void **state) {
    return setup_n(state, 6);
}

static int teardown(void **state) {
    fx_t *f = *state;
    tg_ledger_free(f->l);
    if (f->base) event_base_free(f->base);
    cluster_fx_free(&f->x);
    free(f);
    return 0;
}

static void record_i(tg_ledger_t *l, const char *prefix, int i) {
    char id[32];
    snprintf(id, sizeof(id), "%s%06d", prefix, i);
    tg_ledger_rec_t r = {
        .request_id = id,
        .key_name = keys[i % NKEYS],
        .route = "direct",
        .provider = "openai",
        .model = "gpt-4o",
        .status = 200,
        .attempts = 1,
        .usage = {.input_tokens = 100 + i, .output_tokens = 10 + i % 30, .present = 1},
        .cost_micro_usd = 1000 + 7 * i,
        .ts_ms = TS_DAY0 + i,
        .latency_ms = 50,
        .ttft_ms = 20,
    };
    tg_ledger_record(l, &r);
}

/* A field of a key's day hash, asked of the master that owns the key's slot. */
static long long hget(fx_t *f, const char *k, const char *metric) {
    char key[128];
    const char *tag = k[0] ? k : TG_KEY_NOKEY_TAG;
    snprintf(key, sizeof(key), TG_KEY_USAGE "{%s" TG_KEY_TAG_END ":" DAY0, tag);
    int m = cluster_fx_owner(&f->x, tg_redis_slot(key, strlen(key)));
    assert_true(m >= 0);
    redisReply *r = cluster_fx_cmd(f->x.port[m], "HGET %s openai|gpt-4o|%s|%s", key, k, metric);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

/* Records 0..n-1 with prefix, each once, in the keys' day hashes; every key in the day's index. */
static void check_sums(fx_t *f, int n) {
    for (int k = 0; k < NKEYS; k++) {
        long long req = 0, in = 0, cost = 0;
        for (int i = k; i < n; i += NKEYS) {
            req++;
            in += 100 + i;
            cost += 1000 + 7 * i;
        }
        assert_int_equal(hget(f, keys[k], "requests"), req);
        assert_int_equal(hget(f, keys[k], "input_tokens"), in);
        assert_int_equal(hget(f, keys[k], "cost_micro_usd"), cost);
    }
    const char *ix = TG_KEY_USAGE_INDEX DAY0;
    redisReply *r =
        cluster_fx_cmd(f->x.port[cluster_fx_owner(&f->x, tg_redis_slot(ix, strlen(ix)))], "SMEMBERS %s", ix);
    assert_non_null(r);
    assert_int_equal(r->elements, NKEYS);
    for (int k = 0; k < NKEYS; k++) {
        int found = 0;
        for (size_t e = 0; e < r->elements; e++)
            found |= strcmp(r->element[e]->str, keys[k][0] ? keys[k] : TG_KEY_NOKEY_TAG) == 0;
        if (!found) fail_msg("index lacks %s", keys[k]);
    }
    freeReplyObject(r);
}

static void test_records_land_by_key_slot(void **state) {
    fx_t *f = *state;
    if (!f->up) skip();
    for (int i = 0; i < 700; i++)
        record_i(f->l, "a-", i);
    RUN_UNTIL(f, tg_ledger_backlog(f->l) == 0);
    for (int i = 0; i < 70; i++) /* again: already counted */
        record_i(f->l, "a-", i);
    RUN_UNTIL(f, tg_ledger_backlog(f->l) == 0);
    check_sums(f, 700);
    /* the books are spread: every master holds some day hash */
    for (int m = 0; m < 3; m++) {
        redisReply *r = cluster_fx_cmd(f->x.port[m], "KEYS tg:usage:{*}:" DAY0);
        assert_non_null(r);
        if (r->elements == 0) fail_msg("master %d holds no usage", m);
        freeReplyObject(r);
    }
    /* and each key's events stream holds its records */
    const char *ev = TG_KEY_EVENTS ":{team-a" TG_KEY_TAG_END;
    redisReply *r =
        cluster_fx_cmd(f->x.port[cluster_fx_owner(&f->x, tg_redis_slot(ev, strlen(ev)))], "XLEN %s", ev);
    assert_int_equal(r->integer, 100);
    freeReplyObject(r);
    uint64_t w, j, rp;
    tg_ledger_stats(f->l, &w, &j, &rp);
    assert_int_equal(w, 770);
    assert_int_equal(j, 0);
}

typedef struct {
    int calls, type;
    long long v;
} seen_t;

static void on_q(const struct redisReply *rep, void *ud) {
    seen_t *s = ud;
    s->calls++;
    s->type = rep ? rep->type : -1;
    s->v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
}

/* Queries go to the master of their key (or to master i), on either link. */
static void test_queries_routed(void **state) {
    fx_t *f = *state;
    if (!f->up) skip();
    for (int k = 0; k < 30; k++) {
        char key[32];
        snprintf(key, sizeof(key), "q%d", k);
        const char *argv[2] = {"INCR", key};
        size_t lens[2] = {4, strlen(key)};
        seen_t s = {0};
        assert_non_null((k % 2 ? tg_ledger_quick_query : tg_ledger_query)(f->l, 2, argv, lens, 1, on_q, &s));
        RUN_UNTIL(f, s.calls == 1);
        assert_int_equal(s.type, REDIS_REPLY_INTEGER);
        assert_int_equal(s.v, 1);
    }
    /* keyless commands reach every master: their keys add up to what the cluster holds */
    long long total = 0, want = 0;
    for (int m = 0; m < tg_ledger_masters(f->l); m++) {
        const char *argv[1] = {"DBSIZE"};
        size_t lens[1] = {6};
        seen_t s = {0};
        assert_non_null(tg_ledger_query(f->l, 1, argv, lens, -1 - m, on_q, &s));
        RUN_UNTIL(f, s.calls == 1);
        total += s.v;
    }
    for (int i = 0; i < f->x.n; i++) {
        redisReply *r = cluster_fx_cmd(f->x.port[i], "DBSIZE");
        want += r->integer;
        freeReplyObject(r);
    }
    assert_int_equal(total, want);
    assert_true(total >= 30);
}

/* A master killed while records flow: its replica takes over, records journaled meanwhile are
 * replayed, and every record counts exactly once (WAIT keeps acknowledged records on the replica). */
static void test_master_killed_nothing_lost(void **state) {
    fx_t *f = *state;
    if (!f->up) skip();
    char busy[64];
    snprintf(busy, sizeof(busy), TG_KEY_USAGE "{%s" TG_KEY_TAG_END ":" DAY0, keys[0]);
    int m = cluster_fx_owner(&f->x, tg_redis_slot(busy, strlen(busy)));
    assert_true(m >= 0);
    int n = 0;
    for (; n < 1400; n++) {
        record_i(f->l, "k-", n);
        if (n % 20 == 19) run_ms(f, 2);
        if (n == 500) {
            kill(f->x.pid[m], SIGKILL);
            waitpid(f->x.pid[m], NULL, 0);
            f->x.pid[m] = 0;
        }
    }
    assert_true(cluster_fx_wait_ok(&f->x));
    RUN_UNTIL(f, tg_ledger_backlog(f->l) == 0 && tg_ledger_connected(f->l));
    check_sums(f, n);
    assert_true(cluster_fx_owner(&f->x, tg_redis_slot(busy, strlen(busy))) != m);
}

int main(void) {
    tg_log_set_level(getenv("TG_TEST_LOG") ? TG_LOG_DEBUG
                                           : TG_LOG_ERROR); /* TG_TEST_LOG=1: the ledger's story */
    const struct CMUnitTest three[] = {
        cmocka_unit_test(test_records_land_by_key_slot),
        cmocka_unit_test(test_queries_routed),
    };
    const struct CMUnitTest six[] = {
        cmocka_unit_test(test_master_killed_nothing_lost),
    };
    int rc = cmocka_run_group_tests(three, setup3, teardown);
    return rc | cmocka_run_group_tests(six, setup6, teardown);
}
