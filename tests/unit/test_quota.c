/* test_quota.c — budget and rate checks against a real redis-server on a free loopback port,
 * through the ledger's connection: rpm exact across "instances", a budget reached by the
 * ledger's own month counter, tpm from the ledger's token counter, a cancelled check never
 * calls back, a flushed script is sent again, and without Redis the local approximation
 * decides at once. Holds: concurrent checks from two "instances" never together pass a budget
 * or tpm, the ledger's record settles a hold exactly once (a replay releases nothing more),
 * tg_quota_release gives one back, a hold lapses by itself, and the worst case is priced from
 * max_tokens or the model's output cap. */
/* clang-format off */
/* deps: gateway/quota.c gateway/ledger.c gateway/ledger_rec.c gateway/redis.c gateway/journal.c core/money.c core/config.c core/config_price.c core/pool.c core/log.c policy/price.c policy/lang.c gateway/redis_cluster.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gateway/quota.h"
#include "policy/price.h"
#include "tests/unit/redis_fixture.h"

typedef struct {
    char dir[64];
    int port;
    pid_t redis;
    struct event_base *base;
    tg_ledger_t *l;
    tg_pool_t *pool;
} fx_t;

typedef struct {
    int calls;
    tg_quota_result_t res;
} seen_t;

static void redis_do(int port, const char *cmd) {
    redisContext *c = sync_client(port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, cmd);
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
}

static int redis_up(int port) {
    redisContext *c = sync_client(port);
    if (c == NULL) return 0;
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/tg-quota-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->port = free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", f->port);
    f->redis = fork();
    assert_true(f->redis >= 0);
    if (f->redis == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", f->dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !redis_up(f->port); i++)
        usleep(20000);
    assert_true(redis_up(f->port));
    f->base = event_base_new();
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", f->port);
    f->l = tg_ledger_new(f->base, url, NULL, 0, err, sizeof(err));
    assert_non_null(f->l);
    for (int i = 0; i < 400 && !tg_ledger_connected(f->l); i++)
        run_ms(f, 5);
    assert_true(tg_ledger_connected(f->l));
    f->pool = tg_pool_create(4096);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    tg_pool_destroy(f->pool);
    tg_ledger_free(f->l);
    event_base_free(f->base);
    kill(f->redis, SIGTERM);
    waitpid(f->redis, NULL, 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void on_result(const tg_quota_result_t *res, void *ud) {
    seen_t *s = ud;
    s->calls++;
    s->res = *res;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One check holding `hold` (NULL: nothing), run to its answer. */
static tg_quota_result_t check_h(fx_t *f, tg_ledger_t *l, const tg_key_t *k, const char *id, int64_t t,
                                 const tg_quota_hold_t *hold) {
    seen_t s = {0};
    tg_quota_check_t *pending;
    tg_quota_result_t res;
    if (tg_quota_check(l, f->base, f->pool, k, id, t, hold, 1, on_result, &s, &pending, &res) == 0)
        return res;
    assert_non_null(pending);
    for (int i = 0; i < 400 && s.calls == 0; i++)
        run_ms(f, 2);
    assert_int_equal(s.calls, 1);
    return s.res;
}

static tg_quota_result_t check(fx_t *f, tg_ledger_t *l, const tg_key_t *k, const char *id, int64_t t) {
    return check_h(f, l, k, id, t, NULL);
}

/* An integer reply of a command on a plain connection (a missing value reads 0). */
static long long redis_int(int port, const char *cmd) {
    redisContext *c = sync_client(port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, cmd);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : 0;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static tg_ledger_t *second_instance(fx_t *f) {
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", f->port);
    tg_ledger_t *other = tg_ledger_new(f->base, url, NULL, 1, err, sizeof(err));
    assert_non_null(other);
    for (int i = 0; i < 400 && !tg_ledger_connected(other); i++)
        run_ms(f, 5);
    assert_true(tg_ledger_connected(other));
    return other;
}

static void record_and_wait(fx_t *f, const char *id, const char *key, int64_t t, int64_t micro, int64_t in,
                            int64_t out) {
    tg_ledger_rec_t rec = {.request_id = id,
                           .key_name = key,
                           .route = "direct",
                           .provider = "p",
                           .model = "m",
                           .status = 200,
                           .attempts = 1,
                           .cost_micro_usd = micro,
                           .ts_ms = t};
    rec.usage.input_tokens = in;
    rec.usage.output_tokens = out;
    tg_ledger_record(f->l, &rec);
    for (int i = 0; i < 400 && tg_ledger_backlog(f->l) > 0; i++)
        run_ms(f, 2);
    assert_int_equal(tg_ledger_backlog(f->l), 0);
}

static void test_no_limits_no_check(void **state) {
    fx_t *f = *state;
    tg_key_t k = {.name = "free"};
    tg_quota_result_t r = check(f, f->l, &k, "a", now_ms());
    assert_int_equal(r.status, 0);
    assert_int_equal(r.degraded, 0);
}

static void test_rpm_shared_exact(void **state) {
    fx_t *f = *state;
    /* A second ledger on the same Redis stands for another gateway instance. */
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", f->port);
    tg_ledger_t *other = tg_ledger_new(f->base, url, NULL, 1, err, sizeof(err));
    for (int i = 0; i < 400 && !tg_ledger_connected(other); i++)
        run_ms(f, 5);
    tg_key_t k = {.name = "team-rpm", .rpm = 3};
    int64_t t = now_ms();
    int ok = 0, refused = 0;
    for (int i = 0; i < 8; i++) {
        char id[16];
        snprintf(id, sizeof(id), "r%d", i);
        tg_quota_result_t r = check(f, i % 2 ? other : f->l, &k, id, t + i);
        assert_int_equal(r.degraded, 0);
        if (r.status == 0)
            ok++;
        else {
            refused++;
            assert_int_equal(r.status, 429);
            assert_int_equal(r.verdict, TG_QUOTA_RPM);
            assert_true(r.retry_after_s >= 59 && r.retry_after_s <= 60);
            assert_non_null(strstr(r.message, "3 requests per minute"));
        }
    }
    assert_int_equal(ok, 3);
    assert_int_equal(refused, 5);
    /* 60 s later the first two (t, t + 1) have left the window, the third (t + 2) not yet:
     * a sliding window, not a calendar minute. */
    assert_int_equal(check(f, f->l, &k, "later1", t + 60001).status, 0);
    assert_int_equal(check(f, f->l, &k, "later2", t + 60001).status, 0);
    assert_int_equal(check(f, f->l, &k, "later3", t + 60001).status, 429);
    tg_ledger_free(other);
}

static void test_budget_from_ledger_spend(void **state) {
    fx_t *f = *state;
    tg_key_t k = {.name = "team-b", .budget_usd_month = 1.0};
    int64_t t = now_ms();
    assert_int_equal(check(f, f->l, &k, "b0", t).status, 0);
    /* The ledger's script adds each finished request's cost to the key's month. */
    tg_ledger_rec_t rec = {.request_id = "spend-1",
                           .key_name = "team-b",
                           .route = "direct",
                           .provider = "p",
                           .model = "m",
                           .status = 200,
                           .attempts = 1,
                           .cost_micro_usd = 1000000,
                           .ts_ms = t};
    tg_ledger_record(f->l, &rec);
    for (int i = 0; i < 400 && tg_ledger_backlog(f->l) > 0; i++)
        run_ms(f, 2);
    tg_quota_result_t r = check(f, f->l, &k, "b1", t);
    assert_int_equal(r.status, 402);
    assert_int_equal(r.verdict, TG_QUOTA_BUDGET);
    assert_non_null(strstr(r.message, "budget of $1.000000"));
    assert_true(r.retry_after_s >= 1 && r.retry_after_s <= 31 * 86400);
}

/* The month's spend written before the per-key counters (the hash tg:spend:<YYYY-MM>, field =
 * key name) still counts, added to what the ledger writes now: an upgrade mid-month keeps the
 * budget whole. */
static void test_budget_counts_legacy_month_hash(void **state) {
    fx_t *f = *state;
    tg_key_t k = {.name = "team-old", .budget_usd_month = 1.0};
    int64_t t = now_ms();
    time_t now = (time_t)(t / 1000);
    struct tm tm;
    gmtime_r(&now, &tm);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "HSET tg:spend:%04d-%02d team-old 600000", tm.tm_year + 1900, tm.tm_mon + 1);
    redis_int(f->port, cmd);
    assert_int_equal(check(f, f->l, &k, "o0", t).status, 0);
    record_and_wait(f, "old-1", "team-old", t, 400000, 1, 1); /* 600000 before + 400000 now = $1 */
    snprintf(cmd, sizeof(cmd), "GET tg:spend:{team-old}:%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
    assert_int_equal(redis_int(f->port, cmd), 400000);
    tg_quota_result_t r = check(f, f->l, &k, "o1", t);
    assert_int_equal(r.status, 402);
    assert_int_equal(r.verdict, TG_QUOTA_BUDGET);
}

static void test_tpm_from_ledger_tokens(void **state) {
    fx_t *f = *state;
    tg_key_t k = {.name = "team-t", .tpm = 100};
    int64_t t = now_ms();
    assert_int_equal(check(f, f->l, &k, "t0", t).status, 0);
    tg_ledger_rec_t rec = {.request_id = "tok-1",
                           .key_name = "team-t",
                           .route = "direct",
                           .provider = "p",
                           .model = "m",
                           .status = 200,
                           .attempts = 1,
                           .ts_ms = t};
    rec.usage.input_tokens = 70;
    rec.usage.output_tokens = 40;
    tg_ledger_record(f->l, &rec);
    for (int i = 0; i < 400 && tg_ledger_backlog(f->l) > 0; i++)
        run_ms(f, 2);
    tg_quota_result_t r = check(f, f->l, &k, "t1", t);
    assert_int_equal(r.status, 429);
    assert_int_equal(r.verdict, TG_QUOTA_TPM);
    assert_true(r.retry_after_s >= 1);
}

static void test_cancel_never_calls_back(void **state) {
    fx_t *f = *state;
    tg_key_t k = {.name = "team-c", .rpm = 10};
    seen_t s = {0};
    tg_quota_check_t *pending;
    tg_quota_result_t res;
    assert_int_equal(
        tg_quota_check(f->l, f->base, f->pool, &k, "c0", now_ms(), NULL, 1, on_result, &s, &pending, &res),
        1);
    tg_quota_cancel(pending);
    run_ms(f, 400); /* past the reply and past the local-decision timer */
    assert_int_equal(s.calls, 0);
}

static void test_flushed_script_is_sent_again(void **state) {
    fx_t *f = *state;
    tg_key_t k = {.name = "team-f", .rpm = 5};
    assert_int_equal(check(f, f->l, &k, "f0", now_ms()).degraded, 0);
    redis_do(f->port, "SCRIPT FLUSH");
    tg_quota_result_t r = check(f, f->l, &k, "f1", now_ms());
    assert_int_equal(r.status, 0);
    assert_int_equal(r.degraded, 0);
}

static void test_without_redis_local_decides_now(void **state) {
    fx_t *f = *state;
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", free_port()); /* nobody listens */
    tg_ledger_t *down = tg_ledger_new(f->base, url, NULL, 0, err, sizeof(err));
    tg_key_t k = {.name = "team-local", .rpm = 4};
    int64_t t = now_ms() / 60000 * 60000 + 1000; /* early in a minute: all checks in one */
    seen_t s = {0};
    tg_quota_check_t *pending;
    tg_quota_result_t r;
    int ok = 0;
    for (int i = 0; i < 6; i++) {
        /* two workers share the key: this one allows ceil(4 / 2) = 2 */
        assert_int_equal(
            tg_quota_check(down, f->base, f->pool, &k, "x", t, NULL, 2, on_result, &s, &pending, &r), 0);
        assert_int_equal(r.degraded, 1);
        ok += r.status == 0;
    }
    assert_int_equal(ok, 2);
    assert_int_equal(r.status, 429);
    assert_int_equal(s.calls, 0);
    /* what finished here counts against the budget while Redis is away */
    tg_key_t b = {.name = "team-local-b", .budget_usd_month = 0.5};
    tg_quota_note(&b, t, 600000, 10);
    assert_int_equal(tg_quota_check(down, f->base, f->pool, &b, "y", t, NULL, 2, on_result, &s, &pending, &r),
                     0);
    assert_int_equal(r.status, 402);
    tg_ledger_free(down);
}

static void test_holds_keep_concurrent_requests_inside_a_budget(void **state) {
    fx_t *f = *state;
    tg_ledger_t *other = second_instance(f);
    tg_key_t k = {.name = "team-h", .budget_usd_month = 1.0};
    tg_quota_hold_t hold = {.micro = 300000, .tokens = 50, .ttl_ms = 60000};
    int64_t t = now_ms();
    /* Ten requests in flight at once, from two instances: three worst cases fit $1. */
    int ok = 0;
    char passed[10][16];
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "h%d", i);
        tg_quota_result_t r = check_h(f, i % 2 ? other : f->l, &k, id, t, &hold);
        assert_int_equal(r.degraded, 0);
        if (r.status == 0) {
            snprintf(passed[ok++], sizeof(passed[0]), "%s", id);
            continue;
        }
        assert_int_equal(r.status, 402);
        assert_int_equal(r.verdict, TG_QUOTA_BUDGET);
        assert_int_equal(r.retry_after_s, 2); /* room comes back as requests settle, not next month */
        assert_non_null(strstr(r.message, "requests in flight"));
    }
    assert_int_equal(ok, 3);
    assert_int_equal(redis_int(f->port, "HGET tg:hold:{team-h} micro"), 900000);
    assert_int_equal(redis_int(f->port, "ZCARD tg:hold-exp:{team-h}"), 3);
    /* The first settles at its real cost: its hold goes, its cost stays. */
    record_and_wait(f, passed[0], "team-h", t, 100000, 10, 10);
    assert_int_equal(redis_int(f->port, "HGET tg:hold:{team-h} micro"), 600000);
    assert_int_equal(redis_int(f->port, "HGET tg:hold:{team-h} tokens"), 0); /* no tpm: no tokens held */
    /* A replayed record is a no-op: nothing is released or spent twice. */
    record_and_wait(f, passed[0], "team-h", t, 100000, 10, 10);
    assert_int_equal(redis_int(f->port, "HGET tg:hold:{team-h} micro"), 600000);
    char spend_cmd[64];
    time_t now = (time_t)(t / 1000);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(spend_cmd, sizeof(spend_cmd), "GET tg:spend:{team-h}:%04d-%02d", tm.tm_year + 1900,
             tm.tm_mon + 1);
    assert_int_equal(redis_int(f->port, spend_cmd), 100000);
    /* 100000 spent + 600000 held + 300000 = the budget exactly: one more passes, then none. */
    assert_int_equal(check_h(f, other, &k, "h-more", t, &hold).status, 0);
    assert_int_equal(check_h(f, f->l, &k, "h-over", t, &hold).status, 402);
    /* A request that ends without a record gives its hold back; twice is harmless. */
    tg_quota_release(other, &k, "h-more");
    tg_quota_release(other, &k, "h-more");
    run_ms(f, 50);
    assert_int_equal(redis_int(f->port, "HGET tg:hold:{team-h} micro"), 600000);
    assert_int_equal(redis_int(f->port, "HEXISTS tg:hold:{team-h} h-more"), 0);
    /* A worst case larger than what is left of the month waits for next month. */
    tg_quota_hold_t big = {.micro = 950000, .ttl_ms = 60000};
    tg_quota_result_t r = check_h(f, f->l, &k, "h-big", t, &big);
    assert_int_equal(r.status, 402);
    assert_true(r.retry_after_s > 2);
    assert_non_null(strstr(r.message, "could cost up to $0.950000, past its budget of $1.000000"));
    tg_ledger_free(other);
}

static void test_hold_lapses_by_itself(void **state) {
    fx_t *f = *state;
    tg_key_t k = {.name = "team-lapse", .budget_usd_month = 1.0};
    tg_quota_hold_t hold = {.micro = 600000, .ttl_ms = 1000};
    int64_t t = now_ms();
    assert_int_equal(check_h(f, f->l, &k, "l0", t, &hold).status, 0);
    assert_int_equal(check_h(f, f->l, &k, "l1", t + 10, &hold).status, 402);
    /* Its instance crashed: nothing settles l0, and after its ttl it no longer counts. */
    assert_int_equal(check_h(f, f->l, &k, "l2", t + 1001, &hold).status, 0);
    assert_int_equal(redis_int(f->port, "HGET tg:hold:{team-lapse} micro"), 600000);
    assert_int_equal(redis_int(f->port, "HEXISTS tg:hold:{team-lapse} l0"), 0);
}

static void test_tpm_holds_tokens(void **state) {
    fx_t *f = *state;
    tg_ledger_t *other = second_instance(f);
    tg_key_t k = {.name = "team-th", .tpm = 100};
    tg_quota_hold_t hold = {.tokens = 40, .ttl_ms = 60000};
    int64_t t = now_ms();
    assert_int_equal(check_h(f, f->l, &k, "th0", t, &hold).status, 0);
    assert_int_equal(check_h(f, other, &k, "th1", t, &hold).status, 0);
    tg_quota_result_t r = check_h(f, f->l, &k, "th2", t, &hold);
    assert_int_equal(r.status, 429);
    assert_int_equal(r.verdict, TG_QUOTA_TPM);
    /* th0 settles at 15 tokens: 15 counted + 40 held + 40 fit 100 again. */
    record_and_wait(f, "th0", "team-th", t, 0, 10, 5);
    assert_int_equal(check_h(f, other, &k, "th3", t, &hold).status, 0);
    assert_int_equal(redis_int(f->port, "HGET tg:hold:{team-th} tokens"), 80);
    /* A request bigger than tpm on its own passes only alone. */
    tg_key_t solo = {.name = "team-solo", .tpm = 100};
    tg_quota_hold_t huge = {.tokens = 500, .ttl_ms = 60000};
    assert_int_equal(check_h(f, f->l, &solo, "s0", t, &huge).status, 0);
    assert_int_equal(check_h(f, f->l, &solo, "s1", t, &hold).status, 429);
    tg_ledger_free(other);
}

static void test_no_hold_without_budget_or_tpm(void **state) {
    fx_t *f = *state;
    tg_key_t k = {.name = "team-rpm-only", .rpm = 10};
    assert_int_equal(tg_quota_holds(&k), 0);
    tg_quota_hold_t hold = {.micro = 5, .tokens = 5, .ttl_ms = 60000};
    assert_int_equal(check_h(f, f->l, &k, "r0", now_ms(), &hold).status, 0);
    assert_int_equal(redis_int(f->port, "EXISTS tg:hold:{team-rpm-only}"), 0);
}

static void test_worst_case_is_priced(void **state) {
    (void)state;
    tg_provider_t prov = {.name = "p"};
    tg_price_t prices[2] = {
        {.provider = "p",
         .model = "cheap",
         .input = 1000000,
         .cached_input = -1,
         .output = 2000000,
         .cache_write = -1},
        {.provider = "p",
         .model = "dear",
         .input = 1000000,
         .cached_input = -1,
         .output = 10000000,
         .cache_write = -1,
         .max_output = 1000},
    };
    tg_config_t cfg = {.prices = prices, .n_prices = 2, .default_output_tokens = 256};
    cfg.limits.total_ms = 30000;
    cfg.limits.max_attempts = 2;
    tg_candidate_t cands[2] = {{.target = "p/cheap", .provider = &prov, .model = "cheap"},
                               {.target = "p/dear", .provider = &prov, .model = "dear"}};
    tg_scan_req_t scan = {.max_tokens = 100};
    tg_quota_hold_t h;
    int64_t prompt = tg_price_estimate_prompt(&scan);
    /* max_tokens at the dearest candidate: $10 per 1M output tokens = 10 micro-USD a token. */
    tg_quota_worst_case(&cfg, cands, 2, &scan, TG_KIND_CHAT, 0, &h);
    assert_int_equal(h.micro, prompt * 1 + 100 * 10);
    assert_int_equal(h.tokens, prompt + 100);
    assert_int_equal(h.ttl_ms, 2 * 30000 + 60000);
    /* Without max_tokens: the model's output cap where it has one, else default_output_tokens. */
    scan.max_tokens = -1;
    tg_quota_worst_case(&cfg, cands, 2, &scan, TG_KIND_CHAT, 0, &h);
    assert_int_equal(h.micro, prompt + 1000 * 10);
    tg_quota_worst_case(&cfg, cands, 1, &scan, TG_KIND_CHAT, 0, &h);
    assert_int_equal(h.micro, prompt + 256 * 2);
    /* Embeddings have no output. */
    tg_quota_worst_case(&cfg, cands, 2, &scan, TG_KIND_EMBEDDINGS, 0, &h);
    assert_int_equal(h.tokens, prompt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_limits_no_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpm_shared_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_from_ledger_spend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_counts_legacy_month_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tpm_from_ledger_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_never_calls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flushed_script_is_sent_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_redis_local_decides_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds_keep_concurrent_requests_inside_a_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_lapses_by_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tpm_holds_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_hold_without_budget_or_tpm, setup, teardown),
        cmocka_unit_test(test_worst_case_is_priced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
