/* test_redis_cluster.c — Redis Cluster routing (gateway/redis_cluster.c): key slots against
 * Redis's own published values and hash-tag rules, MOVED/ASK parsing, and a real three-master
 * cluster on loopback ports: commands reach the master of their slot, a slot moved behind the
 * client's back is followed (MOVED), a slot being migrated is followed (ASK), keys that share a
 * tag share a node, and with a replica per master a master killed is followed to its promoted
 * replica with nothing lost. Skipped, with a message, when a cluster cannot be made here. */
/* clang-format off */
/* deps: gateway/redis_cluster.c gateway/redis.c core/log.c */
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

#include "gateway/redis_cluster.h"
#include "tests/unit/cluster_fixture.h"

static void test_slots(void **state) {
    (void)state;
    /* CRC16 check value of the XMODEM variant Redis uses, and slots Redis reports (CLUSTER KEYSLOT). */
    assert_int_equal(tg_redis_slot("123456789", 9), 0x31C3 % 16384);
    assert_int_equal(tg_redis_slot("foo", 3), 12182);
    assert_int_equal(tg_redis_slot("bar", 3), 5061);
    assert_int_equal(tg_redis_slot("hello", 5), 866);
    /* hash tags: the first {...} that is not empty */
    unsigned u = tg_redis_slot("user1000", 8);
    assert_int_equal(tg_redis_slot("{user1000}.following", 20), u);
    assert_int_equal(tg_redis_slot("{user1000}.followers", 20), u);
    assert_int_equal(tg_redis_slot("foo{bar}{zap}", 13), tg_redis_slot("bar", 3));
    assert_int_equal(tg_redis_slot("foo{{bar}}zap", 13), tg_redis_slot("{bar", 4));
    assert_int_equal(tg_redis_slot("foo{}{bar}", 10), 8363); /* empty tag: the whole key (CLUSTER KEYSLOT) */
}

static void test_redirect_parse(void **state) {
    (void)state;
    unsigned slot;
    char host[64];
    int port;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    assert_int_equal(tg_redis_redirect_parse(m, strlen(m), &slot, host, sizeof(host), &port), 1);
    assert_int_equal(slot, 3999);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6381);
    const char *a = "ASK 12182 ::1:7000";
    assert_int_equal(tg_redis_redirect_parse(a, strlen(a), &slot, host, sizeof(host), &port), 2);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    const char *bad[] = {"ERR unknown", "MOVED 99999 h:1", "MOVED x h:1", "MOVED 1 nohost", "ASK 1 h:0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_redis_redirect_parse(bad[i], strlen(bad[i]), &slot, host, sizeof(host), &port),
                         0);
}

/* --- a real cluster ------------------------------------------------------------------------ */

typedef struct {
    cluster_fx_t x;
    struct event_base *base;
    tg_rcluster_t *c;
} fx_t;

#define cmd cluster_fx_cmd

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

static int setup_n(void **state, int n) {
    fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    if (!cluster_fx_make(&f->x, n)) return 0;
    f->base = event_base_new();
    char url[128], err[256];
    snprintf(url, sizeof(url), "redis+cluster://127.0.0.1:%d", f->x.port[1]); /* one seed is enough */
    f->c = tg_rcluster_new(f->base, url, "test", err, sizeof(err));
    assert_non_null(f->c);
    tg_rcluster_connect(f->c);
    for (int i = 0; i < 400 && !tg_rcluster_ready(f->c); i++)
        run_ms(f, 5);
    assert_true(tg_rcluster_ready(f->c));
    return 0;
}

static int setup(void **state) {
    return setup_n(state, 3);
}

static int setup6(void **state) {
    return setup_n(state, 6);
}

static int teardown(void **state) {
    fx_t *f = *state;
    tg_rcluster_free(f->c);
    if (f->base) event_base_free(f->base);
    cluster_fx_free(&f->x);
    free(f);
    return 0;
}

typedef struct {
    int calls;
    int type;
    char str[128];
} seen_t;

static void on_reply(const redisReply *rep, void *ud) {
    seen_t *s = ud;
    s->calls++;
    s->type = rep ? rep->type : -1;
    if (rep && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS ||
                rep->type == REDIS_REPLY_ERROR))
        snprintf(s->str, sizeof(s->str), "%s", rep->str);
}

/* One command through the cluster, run to its reply. */
static seen_t send_cmd(fx_t *f, int argc, const char **argv) {
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    seen_t s = {0};
    assert_non_null(tg_rcluster_send_argv(f->c, argc, argv, lens, 1, on_reply, &s));
    assert_int_equal(s.calls, 0); /* never from inside the call */
    for (int i = 0; i < 1000 && s.calls == 0; i++)
        run_ms(f, 2);
    assert_int_equal(s.calls, 1);
    return s;
}

static int owner(fx_t *f, unsigned s) {
    return cluster_fx_owner(&f->x, s);
}

static void test_commands_reach_their_slot(void **state) {
    fx_t *f = *state;
    if (f->c == NULL) skip();
    assert_int_equal(tg_rcluster_masters(f->c), 3);
    for (int i = 0; i < 200; i++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        const char *set[3] = {"SET", key, val};
        seen_t s = send_cmd(f, 3, set);
        assert_int_equal(s.type, REDIS_REPLY_STATUS);
    }
    /* each key sits on its slot's master, read straight from that node */
    for (int i = 0; i < 200; i += 7) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        redisReply *r = cmd(f->x.port[owner(f, tg_redis_slot(key, strlen(key)))], "GET %s", key);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        freeReplyObject(r);
    }
    for (int i = 0; i < f->x.n; i++) {
        redisReply *r = cmd(f->x.port[i], "DBSIZE");
        assert_true(r->integer > 20); /* spread over every master */
        freeReplyObject(r);
    }
    /* keys sharing a tag share a node: a script may touch them all */
    const char *ev[7] = {"EVAL", "redis.call('SET',KEYS[1],'a') redis.call('SET',KEYS[2],'b') return 1", "2",
                         "tg:x:{team}", "tg:y:{team}"};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(ev[i]);
    seen_t s = {0};
    assert_non_null(tg_rcluster_send_argv(f->c, 5, ev, lens, 3, on_reply, &s));
    for (int i = 0; i < 500 && s.calls == 0; i++)
        run_ms(f, 2);
    assert_int_equal(s.type, REDIS_REPLY_INTEGER);
}

/* Commands formatted by the caller (as the ledger formats its records), many in flight at once
 * across every master: each reply comes to its own callback, whatever order the masters answer
 * in, and commands for one slot keep their order. */
typedef struct {
    int calls;
    long long got;
} incr_t;

static void on_incr(const redisReply *rep, void *ud) {
    incr_t *x = ud;
    x->calls++;
    x->got = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
}

static void test_preformatted_commands_in_flight(void **state) {
    fx_t *f = *state;
    if (f->c == NULL) skip();
    enum { TAGS = 12, EACH = 20 };
    static incr_t seen[TAGS][EACH];
    memset(seen, 0, sizeof(seen));
    int masters_hit[CLUSTER_FX_MAXN] = {0};
    for (int k = 0; k < EACH; k++)
        for (int t = 0; t < TAGS; t++) {
            char key[32], buf[128];
            int kl = snprintf(key, sizeof(key), "n:{tag%d}", t);
            int len = snprintf(buf, sizeof(buf), "*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", kl, key);
            unsigned slot = tg_redis_slot(key, (size_t)kl);
            if (k == 0) masters_hit[owner(f, slot)] = 1;
            assert_non_null(tg_rcluster_send(f->c, buf, (size_t)len, slot, on_incr, &seen[t][k]));
        }
    assert_int_equal(seen[0][0].calls, 0); /* never from inside the call */
    int left = TAGS * EACH;
    for (int i = 0; i < 1000 && left > 0; i++) {
        run_ms(f, 2);
        left = 0;
        for (int t = 0; t < TAGS; t++)
            for (int k = 0; k < EACH; k++)
                left += seen[t][k].calls == 0;
    }
    assert_int_equal(left, 0);
    for (int t = 0; t < TAGS; t++)
        for (int k = 0; k < EACH; k++) {
            assert_int_equal(seen[t][k].calls, 1);
            assert_int_equal(seen[t][k].got, k + 1); /* its own reply, in its slot's order */
        }
    int hit = 0;
    for (int i = 0; i < f->x.n; i++)
        hit += masters_hit[i];
    assert_true(hit >= 2); /* twelve tags spread over more than one master */
    const char bad[] = "*1\r\n$4\r\nPING\r\n";
    assert_null(tg_rcluster_send(f->c, bad, sizeof(bad) - 1, TG_REDIS_SLOTS, on_incr, &seen[0][0]));
}

/* Moves slot s from node a to node b, keys and all, as redis-cli --cluster reshard does; `b_only`
 * stops half way (a MIGRATING, b IMPORTING). */
static void migrate(fx_t *f, unsigned s, int a, int b, int half) {
    redisReply *r;
    r = cmd(f->x.port[b], "CLUSTER SETSLOT %u IMPORTING %s", s, f->x.id[a]);
    freeReplyObject(r);
    r = cmd(f->x.port[a], "CLUSTER SETSLOT %u MIGRATING %s", s, f->x.id[b]);
    freeReplyObject(r);
    if (half) return;
    r = cmd(f->x.port[a], "CLUSTER GETKEYSINSLOT %u 100", s);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *m = cmd(f->x.port[a], "MIGRATE 127.0.0.1 %d %s 0 2000", f->x.port[b], r->element[i]->str);
        freeReplyObject(m);
    }
    freeReplyObject(r);
    for (int k = 0; k < f->x.n; k++) {
        r = cmd(f->x.port[k], "CLUSTER SETSLOT %u NODE %s", s, f->x.id[b]);
        freeReplyObject(r);
    }
}

static void test_moved_and_ask_are_followed(void **state) {
    fx_t *f = *state;
    if (f->c == NULL) skip();
    const char *set[3] = {"SET", "{moving}k", "here"};
    assert_int_equal(send_cmd(f, 3, set).type, REDIS_REPLY_STATUS);
    unsigned s = tg_redis_slot("moving", 6);
    int a = owner(f, s), b = (a + 1) % f->x.n;
    /* The slot moves behind the client's back: its map is stale, the old owner answers MOVED. */
    migrate(f, s, a, b, 0);
    const char *get[2] = {"GET", "{moving}k"};
    seen_t g = send_cmd(f, 2, get);
    assert_int_equal(g.type, REDIS_REPLY_STRING);
    assert_string_equal(g.str, "here");
    assert_int_equal(owner(f, s), b);
    /* Half way through a migration back, a key the old owner lacks is answered with ASK. */
    migrate(f, s, b, a, 1);
    const char *set2[3] = {"SET", "{moving}new", "asked"};
    assert_int_equal(send_cmd(f, 3, set2).type, REDIS_REPLY_STATUS);
    redisContext *direct = sync_client(f->x.port[a]);
    redisReply *r = redisCommand(direct, "ASKING");
    freeReplyObject(r);
    r = redisCommand(direct, "GET {moving}new");
    assert_int_equal(r->type, REDIS_REPLY_STRING); /* it went to the importing node */
    assert_string_equal(r->str, "asked");
    freeReplyObject(r);
    redisFree(direct);
}

static void test_failover_is_followed(void **state) {
    fx_t *f = *state;
    if (f->c == NULL) skip();
    assert_int_equal(tg_rcluster_masters(f->c), 3);
    for (int i = 0; i < 100; i++) {
        char key[32];
        snprintf(key, sizeof(key), "{fo}%d", i);
        const char *set[3] = {"SET", key, "1"};
        assert_int_equal(send_cmd(f, 3, set).type, REDIS_REPLY_STATUS);
    }
    int m = owner(f, tg_redis_slot("fo", 2));
    assert_true(m >= 0);
    /* The replica has them before the master dies (its first sync may still run). WAIT counts up
     * to the last write of its own connection, and the replication offset is the master's, so a
     * write of ours on that connection covers the SETs made on the cluster's links. */
    long long acked = 0;
    redisContext *sc = sync_client(f->x.port[m]);
    assert_non_null(sc);
    for (int t = 0; t < 20 && acked < 1; t++) {
        redisReply *w = redisCommand(sc, "SET {fo}sync %d", t);
        if (w) freeReplyObject(w);
        redisReply *r = redisCommand(sc, "WAIT 1 500");
        acked = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        if (r) freeReplyObject(r);
    }
    redisFree(sc);
    assert_int_equal(acked, 1);
    kill(f->x.pid[m], SIGKILL);
    waitpid(f->x.pid[m], NULL, 0);
    f->x.pid[m] = 0;
    /* Commands fail (NULL: the node is gone, or CLUSTERDOWN past the wait) until the replica is
     * promoted and the map is asked for again; then they land, with nothing lost. */
    int landed = 0;
    for (int t = 0; t < 60 && !landed; t++) {
        const char *set[3] = {"SET", "{fo}after", "1"};
        seen_t s = send_cmd(f, 3, set);
        landed = s.type == REDIS_REPLY_STATUS;
        if (!landed) run_ms(f, 250);
    }
    assert_true(landed);
    assert_true(owner(f, tg_redis_slot("fo", 2)) != m);
    for (int i = 0; i < 100; i++) {
        char key[32];
        snprintf(key, sizeof(key), "{fo}%d", i);
        const char *get[2] = {"GET", key};
        seen_t s = send_cmd(f, 2, get);
        assert_int_equal(s.type, REDIS_REPLY_STRING);
    }
}

static void test_bad_urls(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    char err[256];
    const char *bad[] = {"redis://h:1", "redis+cluster://", "redis+cluster://h:1/3",
                         "redis+cluster://h:99999", "redis+cluster://h:1,,h:2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(tg_rcluster_new(base, bad[i], "t", err, sizeof(err)));
    tg_rcluster_t *c = tg_rcluster_new(base, "redis+cluster://:pw@h1:7000,h2", "t", err, sizeof(err));
    assert_non_null(c);
    tg_rcluster_free(c);
    event_base_free(base);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_redirect_parse),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test_setup_teardown(test_commands_reach_their_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preformatted_commands_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_and_ask_are_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover_is_followed, setup6, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
