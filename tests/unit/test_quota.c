/* test_quota.c — budget and rate checks against a real redis-server on a free loopback port,
 * through the ledger's connection: rpm exact across "instances", a budget reached by the
 * ledger's own month counter, tpm from the ledger's token counter, a cancelled check never
 * calls back, a flushed script is sent again, and without Redis the local approximation
 * decides at once. */
/* clang-format off */
/* deps: gateway/quota.c gateway/ledger.c gateway/ledger_rec.c gateway/redis.c gateway/journal.c core/money.c core/config.c core/config_price.c core/pool.c core/log.c */
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

static void run_ms(fx_t *f, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

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

/* One check, run to its answer. */
static tg_quota_result_t check(fx_t *f, tg_ledger_t *l, const tg_key_t *k, const char *id, int64_t t) {
    seen_t s = {0};
    tg_quota_check_t *pending;
    tg_quota_result_t res;
    if (tg_quota_check(l, f->base, f->pool, k, id, t, 1, on_result, &s, &pending, &res) == 0) return res;
    assert_non_null(pending);
    for (int i = 0; i < 400 && s.calls == 0; i++)
        run_ms(f, 2);
    assert_int_equal(s.calls, 1);
    return s.res;
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
        tg_quota_check(f->l, f->base, f->pool, &k, "c0", now_ms(), 1, on_result, &s, &pending, &res), 1);
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
        assert_int_equal(tg_quota_check(down, f->base, f->pool, &k, "x", t, 2, on_result, &s, &pending, &r),
                         0);
        assert_int_equal(r.degraded, 1);
        ok += r.status == 0;
    }
    assert_int_equal(ok, 2);
    assert_int_equal(r.status, 429);
    assert_int_equal(s.calls, 0);
    /* what finished here counts against the budget while Redis is away */
    tg_key_t b = {.name = "team-local-b", .budget_usd_month = 0.5};
    tg_quota_note(&b, t, 600000, 10);
    assert_int_equal(tg_quota_check(down, f->base, f->pool, &b, "y", t, 2, on_result, &s, &pending, &r), 0);
    assert_int_equal(r.status, 402);
    tg_ledger_free(down);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_limits_no_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpm_shared_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_from_ledger_spend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tpm_from_ledger_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_never_calls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flushed_script_is_sent_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_redis_local_decides_now, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
