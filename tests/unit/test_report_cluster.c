/* test_report_cluster.c — spend reports on a Redis Cluster (gateway/report.c): on a real
 * three-master cluster on loopback ports, usage written as the ledger writes it there (per gateway
 * key, tg:usage:{key}:day and tg:usage-sim:{key}:day, found through the day's index), plus the
 * untagged hashes of books written before the move, is read whole by `tollgate report` with a
 * cluster URL, and every rendering is byte for byte the one a single Redis holding the same
 * figures gives. The read (tg_report_read_cluster, which /admin/spend uses too) cancelled half way
 * calls nothing back and frees everything; a master that stops answering fails it; a cluster
 * that cannot be reached is exit 3. Skipped, with a message, when a cluster cannot be made here. */
/* clang-format off */
/* deps: gateway/report.c gateway/redis.c gateway/redis_cluster.c core/money.c core/config.c core/config_load.c core/config_schema.c core/config_listen.c core/config_yaml.c core/config_price.c core/pool.c core/log.c core/strbuf.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/keys.h"
#include "gateway/redis_cluster.h"
#include "gateway/report.h"
#include "tests/unit/cluster_fixture.h"

typedef struct {
    cluster_fx_t x;
    int single_port;
    pid_t single_pid;
    int made; /* the cluster is up: the live tests run */
    char url[128], single_url[128];
} fx_t;

#define cmd cluster_fx_cmd

static int group_setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    f->made = cluster_fx_make(&f->x, 3);
    if (!f->made) return 0;
    snprintf(f->url, sizeof(f->url), "redis+cluster://127.0.0.1:%d", f->x.port[2]); /* one seed is enough */
    f->single_port = free_port();
    f->single_pid = redis_fixture_spawn(f->single_port, f->x.dir);
    snprintf(f->single_url, sizeof(f->single_url), "redis://127.0.0.1:%d", f->single_port);
    return 0;
}

static int group_teardown(void **state) {
    fx_t *f = *state;
    for (int i = 0; i < f->x.n; i++)
        if (f->x.pid[i] > 0) kill(f->x.pid[i], SIGCONT); /* one may be stopped by a test */
    if (f->single_pid > 0) redis_fixture_stop(f->single_pid);
    cluster_fx_free(&f->x);
    free(f);
    return 0;
}

static int owner(fx_t *f, unsigned s) {
    return cluster_fx_owner(&f->x, s);
}

/* A command with key `key` (its second word) on the master of the key's slot; that master's index. */
static int on_master(fx_t *f, const char *verb, const char *key, const char *a, const char *b) {
    int m = owner(f, tg_redis_slot(key, strlen(key)));
    assert_true(m >= 0);
    redisReply *r =
        b ? cmd(f->x.port[m], "%s %s %s %s", verb, key, a, b) : cmd(f->x.port[m], "%s %s %s", verb, key, a);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    return m;
}

/* --- the books ------------------------------------------------------------------------------- */

/* One counter: on the cluster in the hash of gateway key `tag` (NULL: the day's untagged hash, books
 * from before the move), on the single Redis in the day's hash. */
typedef struct {
    const char *day, *tag;
    int sim;
    const char *field, *val;
} book_t;

static const book_t books[] = {
    {"2026-03-01", "team-a", 0, "openai|gpt-4o|team-a|requests", "3"},
    {"2026-03-01", "team-a", 0, "openai|gpt-4o|team-a|input_tokens", "100"},
    {"2026-03-01", "team-a", 0, "openai|gpt-4o|team-a|cost_micro_usd", "3000001"},
    {"2026-03-01", "team-b", 0, "deepseek|deepseek-flash|team-b|requests", "2"},
    {"2026-03-01", "team-b", 0, "deepseek|deepseek-flash|team-b|cost_micro_usd", "999999"},
    {"2026-03-01", "team-b", 1, "qwen|qwen-plus|team-b|requests", "7"},
    {"2026-03-01", "team-b", 1, "qwen|qwen-plus|team-b|cost_micro_usd", "123"},
    {"2026-03-01", TG_KEY_NOKEY_TAG, 0, "openai|gpt-4o||requests", "1"}, /* no gateway key */
    {"2026-03-01", TG_KEY_NOKEY_TAG, 0, "openai|gpt-4o||cost_micro_usd", "5"},
    {"2026-03-01", "team d, {x}", 0, "openai|gpt-4o|team d, {x}|requests", "1"}, /* braces in a name */
    {"2026-03-01", "team d, {x}", 0, "openai|gpt-4o|team d, {x}|cost_micro_usd", "9"},
    {"2026-03-01", NULL, 0, "openai|gpt-4o|team-a|requests", "1"}, /* before the move */
    {"2026-03-01", NULL, 0, "openai|gpt-4o|team-a|cost_micro_usd", "1"},
    {"2026-03-01", NULL, 0, "anthropic|claude|old-key|requests", "4"},
    {"2026-03-01", NULL, 0, "anthropic|claude|old-key|cost_micro_usd", "40"},
    {"2026-03-01", NULL, 1, "qwen|qwen-plus|old-key|requests", "1"},
    {"2026-03-03", "team-c", 0, "openai|gpt-4o|team-c|requests", "2"},
    {"2026-03-03", "team-c", 0, "openai|gpt-4o|team-c|cost_micro_usd", "20"},
    {"2026-03-03", "team-a", 0, "anthropic|claude|team-a|requests", "1"},
    {"2026-03-03", "team-a", 0, "anthropic|claude|team-a|output_tokens", "50"},
    {"2026-03-03", "team-a", 0, "anthropic|claude|team-a|cost_micro_usd", "77"},
};
#define N_BOOKS (sizeof(books) / sizeof(books[0]))

static void write_books(fx_t *f) {
    int masters[CLUSTER_FX_MAXN] = {0};
    for (size_t i = 0; i < N_BOOKS; i++) {
        const book_t *b = &books[i];
        const char *prefix = b->sim ? TG_KEY_USAGE_SIM : TG_KEY_USAGE;
        char key[128], index[64];
        if (b->tag)
            snprintf(key, sizeof(key), "%s{%s" TG_KEY_TAG_END ":%s", prefix, b->tag, b->day);
        else
            snprintf(key, sizeof(key), "%s%s", prefix, b->day);
        masters[on_master(f, "HINCRBY", key, b->field, b->val)] = 1;
        if (b->tag) {
            snprintf(index, sizeof(index), TG_KEY_USAGE_INDEX "%s", b->day);
            on_master(f, "SADD", index, b->tag, NULL);
        }
        /* the single Redis: every counter in the day's hash */
        snprintf(key, sizeof(key), "%s%s", prefix, b->day);
        redisReply *r = cmd(f->single_port, "HINCRBY %s %s %s", key, b->field, b->val);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        freeReplyObject(r);
    }
    assert_true(masters[0] + masters[1] + masters[2] >= 2); /* the books spread over the masters */
    /* Named in the index but never written (its records failed): nothing to read. Written but not
     * in the index, or outside the range: never read. */
    on_master(f, "SADD", TG_KEY_USAGE_INDEX "2026-03-01", "ghost", NULL);
    on_master(f, "HSET", TG_KEY_USAGE "{stray}:2026-03-01", "openai|gpt-4o|stray|requests", "1000");
    on_master(f, "SADD", TG_KEY_USAGE_INDEX "2026-03-04", "team-a", NULL);
    on_master(f, "HSET", TG_KEY_USAGE "{team-a}:2026-03-04", "openai|gpt-4o|team-a|requests", "1000");
}

/* --- the command ------------------------------------------------------------------------------ */

/* Runs `tollgate report` with its stdout in a string (malloc'd); *rc is its exit code. */
static char *report(const char *url, const char *cfg, const char *by, const char *format, int *rc) {
    char path[] = "/tmp/tg-report-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    char *argv[] = {"report",
                    url ? "--redis" : "-c",
                    (char *)(url ? url : cfg),
                    "--from",
                    "2026-03-01",
                    "--to",
                    "2026-03-03",
                    "--by",
                    (char *)by,
                    "--format",
                    (char *)format};
    *rc = tg_report_main(sizeof(argv) / sizeof(argv[0]), argv, "/nonexistent.yaml");
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)len + 1);
    assert_int_equal(pread(fd, out, (size_t)len, 0), len);
    close(fd);
    unlink(path);
    return out;
}

static void test_report_reads_every_master(void **state) {
    fx_t *f = *state;
    if (!f->made) skip();
    write_books(f);
    /* the cluster through a config file once, as an operator runs it */
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "%s/tollgate.yaml", f->x.dir);
    FILE *cf = fopen(cfg, "w");
    assert_non_null(cf);
    fprintf(cf, "redis: %s\n", f->url);
    fclose(cf);
    int rc;
    char *json = report(NULL, cfg, "key", "json", &rc);
    assert_int_equal(rc, 0);
    json_t *o = json_loads(json, 0, NULL);
    assert_non_null(o);
    json_t *total = json_object_get(o, "total");
    assert_int_equal(json_integer_value(json_object_get(total, "requests")), 3 + 2 + 1 + 1 + 1 + 4 + 2 + 1);
    json_t *sim_total = json_object_get(json_object_get(o, "simulated"), "total");
    assert_int_equal(json_integer_value(json_object_get(sim_total, "requests")), 7 + 1);
    json_t *rows = json_object_get(o, "rows");
    int seen = 0;
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        const char *k = json_string_value(json_object_get(row, "key"));
        json_int_t req = json_integer_value(json_object_get(row, "requests"));
        if (strcmp(k, "team-a") == 0) assert_int_equal(req, 3 + 1 + 1), seen |= 1; /* both days, and legacy */
        if (strcmp(k, "old-key") == 0) assert_int_equal(req, 4), seen |= 2;        /* legacy only */
        if (strcmp(k, "") == 0) assert_int_equal(req, 1), seen |= 4;               /* no gateway key */
        if (strcmp(k, "team d, {x}") == 0) seen |= 8;
        assert_string_not_equal(k, "stray");
    }
    assert_int_equal(seen, 15);
    json_decref(o);
    /* every rendering, byte for byte what the same figures on one Redis give */
    const char *by[] = {"key", "provider", "model", "day"}, *fmt[] = {"json", "csv", "table"};
    for (int b = 0; b < 4; b++)
        for (int m = 0; m < 3; m++) {
            int rc1, rc2;
            char *one = report(f->single_url, NULL, by[b], fmt[m], &rc1);
            char *cl = report(f->url, NULL, by[b], fmt[m], &rc2);
            assert_int_equal(rc1, 0);
            assert_int_equal(rc2, 0);
            assert_string_equal(cl, one);
            if (b == 0 && m == 0) assert_string_equal(cl, json);
            free(one);
            free(cl);
        }
    free(json);
}

/* --- the read itself (as /admin/spend runs it) -------------------------------------------------- */

typedef struct {
    struct event_base *base;
    tg_rcluster_t *c;
    int sends, done;
    int stop_at; /* the loop stops once this many commands went out */
    char why[300];
} rd_fx_t;

static void *count_send(void *link, int argc, const char **argv, const size_t *lens, tg_report_reply_fn fn,
                        void *ud) {
    rd_fx_t *x = link;
    if (++x->sends == x->stop_at) event_base_loopbreak(x->base); /* before the reply can come */
    return tg_rcluster_send_argv(x->c, argc, argv, lens, 1, fn, ud);
}

static void cancel_cmd(void *handle) {
    tg_rcluster_cancel(handle);
}

static void on_done(void *ud, const char *why) {
    rd_fx_t *x = ud;
    x->done++;
    snprintf(x->why, sizeof(x->why), "%s", why ? why : "");
}

#define run_ms(x, ms) fixture_run_ms((x)->base, (ms))

static void rd_open(fx_t *f, rd_fx_t *x) {
    char err[256];
    x->base = event_base_new();
    x->c = tg_rcluster_new(x->base, f->url, "test", err, sizeof(err));
    assert_non_null(x->c);
    tg_rcluster_connect(x->c);
    for (int i = 0; i < 400 && !tg_rcluster_ready(x->c); i++)
        run_ms(x, 5);
    assert_true(tg_rcluster_ready(x->c));
}

static void rd_close(rd_fx_t *x) {
    tg_rcluster_free(x->c);
    event_base_free(x->base);
}

static tg_report_read_t *rd_start(rd_fx_t *x, tg_report_t *r) {
    char err[128];
    assert_int_equal(tg_report_init(r, "2026-03-01", 10, "2026-03-03", 10, "key", 3, 0, err, sizeof(err)), 0);
    const tg_report_link_t link = {count_send, cancel_cmd, x};
    tg_report_read_t *rd = tg_report_read_cluster(r, &link, on_done, x);
    assert_non_null(rd);
    assert_int_equal(x->sends, 3 * 3); /* each day's index and untagged hashes at once */
    assert_int_equal(x->done, 0);      /* never from inside the call */
    return rd;
}

/* Cancelled once the members' reads went out, the read calls nothing back and leaves nothing in
 * flight (ASan: nothing freed twice or used after). Run to its end, it reads what the report did. */
static void test_read_cancel_and_whole(void **state) {
    fx_t *f = *state;
    if (!f->made) skip();
    rd_fx_t x = {0};
    rd_open(f, &x);
    tg_report_t r;
    x.stop_at = 10; /* a member's first HGETALL: the members' reads are in flight */
    tg_report_read_t *rd = rd_start(&x, &r);
    for (int i = 0; i < 2000 && x.sends < 10; i++)
        run_ms(&x, 1);
    assert_true(x.sends >= 10); /* every member of the index that came */
    assert_int_equal(x.done, 0);
    tg_report_read_cancel(rd);
    run_ms(&x, 100);
    assert_int_equal(x.done, 0);
    tg_report_free(&r);

    x.sends = x.stop_at = 0;
    rd_start(&x, &r);
    for (int i = 0; i < 2000 && !x.done; i++)
        run_ms(&x, 2);
    assert_int_equal(x.done, 1);
    assert_string_equal(x.why, "");
    assert_int_equal(x.sends, 9 + 2 * (5 + 2)); /* 5 members on the 1st (ghost too), 2 on the 3rd */
    assert_int_equal(r.total.requests, 15);
    assert_int_equal(r.sim_total.requests, 8);
    assert_int_equal(r.bad_fields, 0);
    tg_report_free(&r);
    rd_close(&x);
}

/* A master that stops answering fails the read (NULL reply: /admin/spend answers 503), once. */
static void test_read_fails_when_a_master_stops(void **state) {
    fx_t *f = *state;
    if (!f->made) skip();
    rd_fx_t x = {0};
    rd_open(f, &x);
    int m = owner(f, tg_redis_slot(TG_KEY_USAGE_INDEX "2026-03-01", strlen(TG_KEY_USAGE_INDEX "2026-03-01")));
    kill(f->x.pid[m], SIGSTOP);
    tg_report_t r;
    rd_start(&x, &r);
    for (int i = 0; i < 1000 && !x.done; i++)
        run_ms(&x, 10);
    kill(f->x.pid[m], SIGCONT);
    assert_int_equal(x.done, 1);
    assert_non_null(strstr(x.why, "redis stopped answering"));
    run_ms(&x, 50);
    assert_int_equal(x.done, 1);
    tg_report_free(&r);
    rd_close(&x);
}

/* No cluster behind the URL: exit 3, as for a single Redis that cannot be reached. */
static void test_unreachable_cluster(void **state) {
    (void)state;
    char url[64];
    snprintf(url, sizeof(url), "redis+cluster://127.0.0.1:%d", free_port());
    int rc;
    char *out = report(url, NULL, "key", "json", &rc);
    assert_int_equal(rc, 3);
    assert_string_equal(out, "");
    free(out);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unreachable_cluster),
        cmocka_unit_test(test_report_reads_every_master),
        cmocka_unit_test(test_read_cancel_and_whole),
        cmocka_unit_test(test_read_fails_when_a_master_stops),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
