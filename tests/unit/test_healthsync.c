/* test_healthsync.c — health across instances. The merge rule (policy/health.h): what an
 * instance exports (its own open circuit and retry-after, nothing it imported), what an
 * imported mark does (blocks until its deadline, only ever later, untouched by local
 * successes, gone at its deadline); the hash field's text; then two "instances" (two health
 * tables, each with its ledger and sync) on one real redis-server: a retry-after learned by
 * one blocks the other within a second, a circuit too, and the Redis key keeps the later
 * deadline and expires with it. */
// clang-format off
/* deps: gateway/healthsync.c gateway/ledger.c gateway/ledger_rec.c gateway/redis.c gateway/journal.c policy/health.c core/pool.c core/log.c gateway/redis_cluster.c */
// clang-format on
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

#include "core/clock.h"
#include "core/log.h"
#include "gateway/healthsync.h"
#include "gateway/ledger.h"
#include "policy/health.h"
#include "tests/unit/redis_fixture.h"

static void fail_n(tg_health_entry_t *e, int n, int64_t now) {
    for (int i = 0; i < n; i++) {
        tg_health_begin(e, now);
        tg_health_end(e, TG_OUTCOME_FAIL, -1, 0, 5, now);
    }
}

static void ok_once(tg_health_entry_t *e, int64_t now) {
    tg_health_begin(e, now);
    tg_health_end(e, TG_OUTCOME_OK, 10, 5, 20, now);
}

/* --- the merge rule ------------------------------------------------------------------------- */

static void test_export_own_state_only(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_params_t p = {3, 10000, 60000, 0.3};
    tg_health_set_params(h, &p);
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    tg_health_mark_t m;
    assert_int_equal(tg_health_export(e, 1000, &m), 0); /* nothing to tell */
    tg_health_retry_after(e, 31000);
    assert_int_equal(tg_health_export(e, 1000, &m), 1);
    assert_int_equal(m.open_until_ms, 0);
    assert_int_equal(m.retry_until_ms, 31000);
    fail_n(e, 3, 2000);
    assert_int_equal(tg_health_export(e, 2000, &m), 1);
    assert_int_equal(m.open_until_ms, 12000);
    assert_int_equal(m.retry_until_ms, 31000);
    assert_int_equal(tg_health_export(e, 40000, &m), 0); /* both past */

    /* imported state is obeyed, never exported again: no echo between instances */
    tg_health_entry_t *f = tg_health_get(h, "q", "m");
    tg_health_mark_t remote = {50000, 0};
    tg_health_import(f, &remote);
    assert_false(tg_health_allow(f, 1000));
    assert_int_equal(tg_health_export(f, 1000, &m), 0);
    assert_int_equal(tg_health_blocked_until(f, 1000), 50000);
    tg_health_free(h);
}

static void test_import_blocks_until_deadline(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    tg_health_mark_t r = {0, 5000};
    tg_health_import(e, &r);
    assert_false(tg_health_allow(e, 1000));
    assert_false(tg_health_allow(e, 4999));
    assert_true(tg_health_allow(e, 5000)); /* ends at its deadline, not later */
    /* the later of the two deadlines counts */
    tg_health_mark_t both = {9000, 7000};
    tg_health_import(e, &both);
    assert_false(tg_health_allow(e, 8999));
    assert_true(tg_health_allow(e, 9000));
    tg_health_free(h);
}

static void test_import_only_moves_forward(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    tg_health_mark_t late = {20000, 0}, early = {0, 6000};
    tg_health_import(e, &late);
    tg_health_import(e, &early); /* an older or shorter mark arriving later changes nothing */
    assert_false(tg_health_allow(e, 10000));
    assert_int_equal(tg_health_blocked_until(e, 10000), 20000);
    /* the same marks in the other order: the same result */
    tg_health_entry_t *f = tg_health_get(h, "p", "m2");
    tg_health_import(f, &early);
    tg_health_import(f, &late);
    assert_int_equal(tg_health_blocked_until(f, 10000), 20000);
    tg_health_free(h);
}

static void test_local_success_does_not_lift_remote_block(void **state) {
    tg_health_t *h = tg_health_new();
    tg_health_entry_t *e = tg_health_get(h, "p", "m");
    tg_health_mark_t r = {30000, 0};
    tg_health_import(e, &r);
    /* an answer that was under way, or a success of this instance's own, closes nothing
     * remote: the local circuit was closed all along and stays so, the block stays */
    ok_once(e, 2000);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_CLOSED);
    assert_false(tg_health_allow(e, 2001));
    /* nor does a local circuit's own cycle shorten it */
    tg_health_params_t p = {1, 1000, 1000, 0.3};
    tg_health_set_params(h, &p);
    fail_n(e, 1, 3000);
    assert_int_equal(tg_health_state(e), TG_CIRCUIT_OPEN);
    assert_false(tg_health_allow(e, 5000)); /* local cool-down over, remote block not */
    assert_true(tg_health_allow(e, 30000));
    tg_health_free(h);
}

static void test_walk_entries(void **state) {
    tg_health_t *h = tg_health_new();
    assert_int_equal(tg_health_count(h), 0);
    tg_health_entry_t *a = tg_health_get(h, "a", "1"), *b = tg_health_get(h, "b", "2");
    assert_int_equal(tg_health_count(h), 2);
    assert_ptr_equal(tg_health_entry(h, 0), a);
    assert_ptr_equal(tg_health_entry(h, 1), b);
    assert_null(tg_health_entry(h, 2));
    tg_health_free(h);
}

static void test_field_text(void **state) {
    char buf[48];
    tg_health_mark_t m = {1740830400123, 0}, back;
    assert_int_equal(tg_healthsync_format(buf, &m), 15);
    assert_string_equal(buf, "1740830400123 0");
    assert_int_equal(tg_healthsync_parse(buf, strlen(buf), &back), 0);
    assert_int_equal(back.open_until_ms, m.open_until_ms);
    assert_int_equal(back.retry_until_ms, 0);
    const char *bad[] = {"", "1", "1 ", " 1", "1  2", "1 2 ", "a 2", "1 -2", "1234567890123456789012 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (tg_healthsync_parse(bad[i], strlen(bad[i]), &back) == 0) fail_msg("parsed '%s'", bad[i]);
}

/* --- two instances on one Redis ------------------------------------------------------------------ */

typedef struct {
    char dir[64];
    int port;
    pid_t redis;
    struct event_base *base;
    tg_ledger_t *l[2];
    tg_health_t *h[2];
    tg_healthsync_t *s[2];
} fx_t;

static void fx_init(fx_t *f) {
    memset(f, 0, sizeof(*f));
    strcpy(f->dir, "/tmp/tg-healthsync-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->port = free_port();
    f->redis = redis_fixture_spawn(f->port, f->dir);
    f->base = event_base_new();
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f->port);
    for (int i = 0; i < 2; i++) {
        f->l[i] = tg_ledger_new(f->base, url, NULL, i, err, sizeof(err));
        f->h[i] = tg_health_new();
        assert_non_null(f->l[i]);
        assert_non_null(f->h[i]);
        f->s[i] = tg_healthsync_new(f->base, f->l[i], f->h[i]);
        assert_non_null(f->s[i]);
    }
}

static void fx_done(fx_t *f) {
    for (int i = 0; i < 2; i++) {
        tg_healthsync_free(f->s[i]);
        tg_ledger_free(f->l[i]);
        tg_health_free(f->h[i]);
    }
    event_base_free(f->base);
    redis_fixture_stop(f->redis);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
}

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

static redisReply *cmd(int port, const char *fmt, ...) {
    redisContext *c = sync_client(port);
    assert_non_null(c);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

/* Instance 0 learns a retry-after and a circuit; instance 1 is blocked within a second, and
 * publishes nothing itself. */
static void test_two_instances(void **state) {
    fx_t f;
    fx_init(&f);
    for (int i = 0; i < 200 && !(tg_ledger_connected(f.l[0]) && tg_ledger_connected(f.l[1])); i++)
        run_ms(&f, 5);
    tg_health_params_t p = {2, 3000, 3000, 0.3};
    tg_health_set_params(f.h[0], &p);

    int64_t now = tg_clock_mono_ms(), wall = tg_clock_wall_ms();
    tg_health_retry_after(tg_health_get(f.h[0], "openai", "gpt-4o"), now + 30000);
    fail_n(tg_health_get(f.h[0], "deepseek", "v3/chat"), 2, now); /* a model name with a '/' */
    run_ms(&f, 1000);
    now = tg_clock_mono_ms();
    tg_health_entry_t *a = tg_health_get(f.h[1], "openai", "gpt-4o");
    tg_health_entry_t *b = tg_health_get(f.h[1], "deepseek", "v3/chat");
    assert_false(tg_health_allow(a, now));
    assert_false(tg_health_allow(b, now));
    assert_int_equal(tg_health_state(b), TG_CIRCUIT_CLOSED); /* blocked, not its own circuit */
    int64_t until = tg_health_blocked_until(a, now);
    assert_true(until > now + 28000 && until < now + 30100);
    uint64_t pub[2], imp[2], errs[2];
    for (int i = 0; i < 2; i++)
        tg_healthsync_stats(f.s[i], &pub[i], &imp[i], &errs[i]);
    assert_int_equal(pub[0], 2);
    assert_int_equal(pub[1], 0); /* what it imported is not published again */
    assert_true(imp[1] >= 2);    /* both marks; a poll that sees a deadline move later imports it again */
    assert_int_equal(errs[0] + errs[1], 0);

    /* the hash: wall deadlines, the later kept, the key expiring with the last */
    redisReply *r = cmd(f.port, "HGET tg:health openai/gpt-4o");
    tg_health_mark_t m;
    assert_int_equal(tg_healthsync_parse(r->str, r->len, &m), 0);
    freeReplyObject(r);
    assert_int_equal(m.open_until_ms, 0);
    assert_true(m.retry_until_ms > wall + 29000 && m.retry_until_ms < wall + 31000);
    freeReplyObject(cmd(f.port, "HSET tg:health openai/gpt-4o %s", "1 2"));
    tg_health_retry_after(tg_health_get(f.h[0], "openai", "gpt-4o"), tg_clock_mono_ms() + 40000);
    run_ms(&f, 300);
    r = cmd(f.port, "HGET tg:health openai/gpt-4o");
    assert_int_equal(tg_healthsync_parse(r->str, r->len, &m), 0);
    freeReplyObject(r);
    assert_true(m.retry_until_ms > wall + 39000);
    r = cmd(f.port, "PTTL tg:health");
    assert_true(r->integer > 38000 && r->integer <= 41000);
    freeReplyObject(r);

    /* the circuit's deadline passes: its field is dropped at the next publish */
    run_ms(&f, 2500);
    r = cmd(f.port, "HEXISTS tg:health deepseek/v3/chat");
    assert_int_equal(r->integer, 1); /* nothing published since: still there, but past */
    freeReplyObject(r);
    assert_true(tg_health_allow(b, tg_clock_mono_ms()));
    tg_health_retry_after(tg_health_get(f.h[0], "qwen", "plus"), tg_clock_mono_ms() + 5000);
    run_ms(&f, 300);
    r = cmd(f.port, "HEXISTS tg:health deepseek/v3/chat");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    fx_done(&f);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    tg_log_set_level(TG_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_own_state_only),
        cmocka_unit_test(test_import_blocks_until_deadline),
        cmocka_unit_test(test_import_only_moves_forward),
        cmocka_unit_test(test_local_success_does_not_lift_remote_block),
        cmocka_unit_test(test_walk_entries),
        cmocka_unit_test(test_field_text),
        cmocka_unit_test(test_two_instances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
