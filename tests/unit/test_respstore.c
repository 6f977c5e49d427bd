/* test_respstore.c — the response store against a real redis-server started on a free
 * loopback port: a stored response comes back to its key only, with its expiry set in the
 * same write; delete is the owner's only; ids are checked before Redis is asked; a stalled
 * Redis answers DOWN, a disconnected one refuses at once; a cancelled command never calls
 * back; payloads are binary-safe and large ones whole. */
/* clang-format off */
/* deps: gateway/respstore.c gateway/ledger.c gateway/ledger_rec.c gateway/redis.c gateway/journal.c core/pool.c core/log.c gateway/redis_cluster.c */
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

#include "gateway/ledger.h"
#include "gateway/respstore.h"
#include "tests/unit/redis_fixture.h"

typedef struct {
    char dir[64];
    int port;
    pid_t redis;
    struct event_base *base;
    tg_ledger_t *l;
} fx_t;

/* What a callback heard. */
typedef struct {
    int calls;
    tg_respstore_result_t res;
    char *response, *items;
    size_t rlen, ilen;
} heard_t;

static void heard_reset(heard_t *h) {
    free(h->response);
    free(h->items);
    memset(h, 0, sizeof(*h));
}

static void on_get(void *ud, tg_respstore_result_t res, const char *response, size_t rlen, const char *items,
                   size_t ilen) {
    heard_t *h = ud;
    h->calls++;
    h->res = res;
    if (response) {
        h->response = malloc(rlen + 1);
        memcpy(h->response, response, rlen);
        h->response[rlen] = '\0';
        h->rlen = rlen;
    }
    if (items) {
        h->items = malloc(ilen + 1);
        memcpy(h->items, items, ilen);
        h->items[ilen] = '\0';
        h->ilen = ilen;
    }
}

static void on_done(void *ud, tg_respstore_result_t res) {
    heard_t *h = ud;
    h->calls++;
    h->res = res;
}

/* --- redis-server and the loop ----------------------------------------------------------------- */

static void redis_start(fx_t *f) {
    f->redis = redis_fixture_spawn(f->port, f->dir);
}

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

#define RUN_UNTIL(f, cond) FIXTURE_RUN_UNTIL((f)->base, 2000, cond)

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/tg-respstore-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->port = free_port();
    f->base = event_base_new();
    redis_start(f);
    char url[64], err[256] = "";
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", f->port);
    f->l = tg_ledger_new(f->base, url, NULL, 0, err, sizeof(err));
    assert_non_null(f->l);
    tg_ledger_set_backoff_ms(f->l, 20, 100);
    tg_ledger_set_limits(f->l, 300, 0);
    RUN_UNTIL(f, tg_ledger_connected(f->l));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    tg_ledger_free(f->l);
    if (f->redis > 0) {
        redis_fixture_stop(f->redis);
    }
    event_base_free(f->base);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static long long ttl_of(fx_t *f, const char *key) {
    redisContext *c = sync_client(f->port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "TTL %s", key);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -99;
    if (r) freeReplyObject(r);
    redisFree(c);
    return v;
}

static void put(fx_t *f, const char *id, const char *key, const char *resp, const char *items, int64_t ttl) {
    heard_t h = {0};
    assert_non_null(
        tg_respstore_put(f->l, id, key, resp, strlen(resp), items, strlen(items), ttl, on_done, &h));
    assert_int_equal(h.calls, 0); /* never inside the call */
    RUN_UNTIL(f, h.calls == 1);
    assert_int_equal(h.res, TG_RESPSTORE_FOUND);
}

static heard_t get(fx_t *f, const char *id, const char *key) {
    heard_t h = {0};
    assert_non_null(tg_respstore_get(f->l, id, key, on_get, &h));
    assert_int_equal(h.calls, 0);
    RUN_UNTIL(f, h.calls == 1);
    return h;
}

static tg_respstore_result_t del(fx_t *f, const char *id, const char *key) {
    heard_t h = {0};
    assert_non_null(tg_respstore_delete(f->l, id, key, on_done, &h));
    RUN_UNTIL(f, h.calls == 1);
    return h.res;
}

/* --- tests --------------------------------------------------------------------------------------- */

static void test_id_rules(void **state) {
    assert_true(tg_respstore_id_ok("resp_0123abcdEF-_", 17));
    assert_false(tg_respstore_id_ok("", 0));
    assert_false(tg_respstore_id_ok("resp/1", 6));
    assert_false(tg_respstore_id_ok("resp 1", 6));
    assert_false(tg_respstore_id_ok("resp:1", 6)); /* could reach another key's namespace */
    char longid[130];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    assert_true(tg_respstore_id_ok(longid, 128));
    assert_false(tg_respstore_id_ok(longid, 129));
    fx_t *f = *state;
    heard_t h = {0};
    /* A bad id is refused before Redis is asked, like a link that is down. */
    assert_null(tg_respstore_get(f->l, "a/b", "k", on_get, &h));
    assert_null(tg_respstore_delete(f->l, "a b", "k", on_done, &h));
    assert_null(tg_respstore_put(f->l, "", "k", "{}", 2, "[]", 2, 60, on_done, &h));
    assert_null(tg_respstore_get(NULL, "resp_1", "k", on_get, &h));
    run_ms(f, 20);
    assert_int_equal(h.calls, 0);
}

static void test_owner_only(void **state) {
    fx_t *f = *state;
    put(f, "resp_a1", "team-a", "{\"id\":\"resp_a1\"}", "[{\"type\":\"message\"}]", 1000);
    long long ttl = ttl_of(f, "tg:resp:resp_a1");
    assert_true(ttl > 990 && ttl <= 1000);

    heard_t h = get(f, "resp_a1", "team-a");
    assert_int_equal(h.res, TG_RESPSTORE_FOUND);
    assert_string_equal(h.response, "{\"id\":\"resp_a1\"}");
    assert_string_equal(h.items, "[{\"type\":\"message\"}]");
    heard_reset(&h);

    h = get(f, "resp_a1", "team-b");
    assert_int_equal(h.res, TG_RESPSTORE_MISSING);
    assert_null(h.response);
    assert_null(h.items);
    heard_reset(&h);
    /* A key whose name is a prefix of the owner's is another key. */
    h = get(f, "resp_a1", "team-");
    assert_int_equal(h.res, TG_RESPSTORE_MISSING);
    heard_reset(&h);
    h = get(f, "resp_never", "team-a");
    assert_int_equal(h.res, TG_RESPSTORE_MISSING);
    heard_reset(&h);

    assert_int_equal(del(f, "resp_a1", "team-b"), TG_RESPSTORE_MISSING);
    h = get(f, "resp_a1", "team-a");
    assert_int_equal(h.res, TG_RESPSTORE_FOUND); /* another key's delete left it */
    heard_reset(&h);
    assert_int_equal(del(f, "resp_a1", "team-a"), TG_RESPSTORE_FOUND);
    h = get(f, "resp_a1", "team-a");
    assert_int_equal(h.res, TG_RESPSTORE_MISSING);
    heard_reset(&h);
    assert_int_equal(del(f, "resp_a1", "team-a"), TG_RESPSTORE_MISSING);
}

static void test_expiry_and_replace(void **state) {
    fx_t *f = *state;
    put(f, "resp_t1", "k", "{\"v\":1}", "[]", 1);
    put(f, "resp_t2", "k", "{\"v\":1}", "[]", 3600);
    put(f, "resp_t2", "k", "{\"v\":2}", "[1]", 3600); /* the same id again: replaced */
    heard_t h = get(f, "resp_t2", "k");
    assert_string_equal(h.response, "{\"v\":2}");
    assert_string_equal(h.items, "[1]");
    heard_reset(&h);
    run_ms(f, 1100);
    usleep(1000 * 1000); /* Redis expires lazily on access: a read after the TTL finds nothing */
    h = get(f, "resp_t1", "k");
    assert_int_equal(h.res, TG_RESPSTORE_MISSING);
    heard_reset(&h);
}

static void test_large_and_binary(void **state) {
    fx_t *f = *state;
    size_t n = 300000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    heard_t h = {0};
    /* Bytes after a NUL count: lengths, not C strings, go to Redis. */
    assert_non_null(tg_respstore_put(f->l, "resp_big", "k", big, n, "[\"x\0y\"]", 7, 60, on_done, &h));
    RUN_UNTIL(f, h.calls == 1);
    assert_int_equal(h.res, TG_RESPSTORE_FOUND);
    h = get(f, "resp_big", "k");
    assert_int_equal(h.rlen, n);
    assert_memory_equal(h.response, big, n);
    assert_int_equal(h.ilen, 7);
    assert_memory_equal(h.items, "[\"x\0y\"]", 7);
    heard_reset(&h);
    free(big);
}

static void test_cancel(void **state) {
    fx_t *f = *state;
    heard_t h = {0};
    tg_respstore_op_t *op = tg_respstore_put(f->l, "resp_c1", "k", "{}", 2, "[]", 2, 60, on_done, &h);
    assert_non_null(op);
    tg_respstore_cancel(op);
    op = tg_respstore_get(f->l, "resp_c1", "k", on_get, &h);
    assert_non_null(op);
    tg_respstore_cancel(op);
    tg_respstore_cancel(NULL);
    run_ms(f, 100);
    assert_int_equal(h.calls, 0);
}

static void test_redis_stalled_then_gone(void **state) {
    fx_t *f = *state;
    /* Stalled: the command times out (300 ms here) and the caller hears DOWN, once. */
    kill(f->redis, SIGSTOP);
    heard_t h = {0};
    assert_non_null(tg_respstore_get(f->l, "resp_s1", "k", on_get, &h));
    RUN_UNTIL(f, h.calls == 1);
    assert_int_equal(h.res, TG_RESPSTORE_DOWN);
    assert_null(h.response);
    heard_t p = {0};
    /* A write that cannot be made is DOWN too (or refused at once while the link is down). */
    tg_respstore_op_t *op = tg_respstore_put(f->l, "resp_s2", "k", "{}", 2, "[]", 2, 60, on_done, &p);
    if (op) {
        RUN_UNTIL(f, p.calls == 1);
        assert_int_equal(p.res, TG_RESPSTORE_DOWN);
    }
    /* Gone: nothing is sent, the caller knows at once. */
    kill(f->redis, SIGCONT);
    kill(f->redis, SIGKILL);
    waitpid(f->redis, NULL, 0);
    f->redis = 0;
    RUN_UNTIL(f, !tg_ledger_connected(f->l));
    heard_reset(&h);
    assert_null(tg_respstore_get(f->l, "resp_s1", "k", on_get, &h));
    assert_null(tg_respstore_delete(f->l, "resp_s1", "k", on_done, &h));
    assert_null(tg_respstore_put(f->l, "resp_s1", "k", "{}", 2, "[]", 2, 60, on_done, &h));
    run_ms(f, 50);
    assert_int_equal(h.calls, 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_id_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_and_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_and_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_stalled_then_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
