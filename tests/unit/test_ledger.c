/* test_ledger.c — the usage ledger against a real redis-server started on a free loopback
 * port: exact sums, exactly-once by request id, Redis down at start, killed mid-run,
 * stalled, the journal's torn last line, the in-memory bound, the ledger switched off, and
 * simulated answers (demo mode) counted apart from real spend. */
/* clang-format off */
/* deps: gateway/ledger.c gateway/ledger_rec.c gateway/redis.c gateway/journal.c core/pool.c core/log.c gateway/redis_cluster.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/ledger.h"
#include "core/log.h"
#include "tests/unit/redis_fixture.h"

/* 2025-03-01T12:00:00Z; every tenth record is on the next UTC day, 00:00:00.000 */
#define TS_DAY0 1740830400000LL
#define TS_DAY1 1740873600000LL
static const char *days[2] = {"2025-03-01", "2025-03-02"};
static const char *groups[3][3] = {
    {"openai", "gpt-4o", "team-a"}, {"anthropic", "claude-3-5-sonnet", "team-b"}, {"openai", "gpt-4o", ""}};
static const char *metrics[6] = {"requests",      "input_tokens",     "cached_input_tokens",
                                 "output_tokens", "reasoning_tokens", "cost_micro_usd"};

typedef struct {
    char dir[64], journal[96], journal0[100];
    int port;
    pid_t redis;
    struct event_base *base;
    tg_ledger_t *l;
} fx_t;

/* --- redis-server ---------------------------------------------------------------------------- */

static int redis_ping(int port, const char *password) {
    redisContext *c = sync_client(port);
    if (c == NULL) return 0;
    if (password) freeReplyObject(redisCommand(c, "AUTH %s", password));
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* Starts redis-server in dir; aof makes acknowledged writes survive SIGKILL. */
static pid_t redis_start(fx_t *f, int aof, const char *password) {
    char port[16];
    snprintf(port, sizeof(port), "%d", f->port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        const char *argv[32] = {"redis-server", "--port", port,           "--bind",           "127.0.0.1",
                                "--save",       "",       "--appendonly", aof ? "yes" : "no", "--appendfsync",
                                "always",       "--dir",  f->dir,         "--daemonize",      "no"};
        int n = 15;
        if (password) {
            argv[n++] = "--requirepass";
            argv[n++] = password;
        }
        argv[n] = NULL;
        execvp("redis-server", (char **)argv);
        _exit(127);
    }
    for (int i = 0; i < 500 && !redis_ping(f->port, password); i++)
        usleep(20000);
    assert_true(redis_ping(f->port, password));
    f->redis = pid;
    return pid;
}

static void redis_stop(fx_t *f, int sig) {
    if (f->redis <= 0) return;
    kill(f->redis, sig);
    waitpid(f->redis, NULL, 0);
    f->redis = 0;
}

/* --- fixture and loop -------------------------------------------------------------------------- */

static void fx_init(fx_t *f) {
    memset(f, 0, sizeof(*f));
    strcpy(f->dir, "/tmp/tg-ledger-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->journal, sizeof(f->journal), "%s/journal", f->dir);
    snprintf(f->journal0, sizeof(f->journal0), "%s.0", f->journal);
    f->port = free_port();
    f->base = event_base_new();
    assert_non_null(f->base);
}

static tg_ledger_t *fx_ledger(fx_t *f, const char *url_fmt) {
    char url[128], err[256] = "";
    snprintf(url, sizeof(url), url_fmt, f->port);
    tg_ledger_t *l = tg_ledger_new(f->base, url, f->journal, 0, err, sizeof(err));
    assert_non_null(l);
    tg_ledger_set_backoff_ms(l, 20, 100);
    tg_ledger_set_limits(l, 300, 0);
    return l;
}

static void fx_done(fx_t *f) {
    tg_ledger_free(f->l);
    redis_stop(f, SIGTERM);
    event_base_free(f->base);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
}

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

static int drained(tg_ledger_t *l) {
    return tg_ledger_backlog(l) == 0 && tg_ledger_connected(l);
}

#define RUN_UNTIL(f, cond) FIXTURE_RUN_UNTIL((f)->base, 3000, cond)

/* --- records and expected sums ------------------------------------------------------------------- */

static void record_i(tg_ledger_t *l, const char *prefix, int i) {
    char id[32];
    snprintf(id, sizeof(id), "%s%06d", prefix, i);
    const char *const *g = groups[i % 3];
    tg_ledger_rec_t r = {
        .request_id = id,
        .key_name = g[2],
        .route = i % 2 ? "cheap" : "direct",
        .provider = g[0],
        .model = g[1],
        .status = 200,
        .attempts = 1 + i % 2,
        .usage = {.input_tokens = 100 + i,
                  .cached_input_tokens = i % 50,
                  .output_tokens = 10 + i % 30,
                  .reasoning_tokens = i % 5,
                  .present = 1},
        .cost_micro_usd = 1000 + 7 * i,
        .ts_ms = i % 10 == 0 ? TS_DAY1 : TS_DAY0 + i,
        .latency_ms = 50,
        .ttft_ms = i % 4 ? 20 : -1,
    };
    tg_ledger_record(l, &r);
}

static void record_range(tg_ledger_t *l, const char *prefix, int from, int to) {
    for (int i = from; i < to; i++)
        record_i(l, prefix, i);
}

static long long get_int(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    long long v = -1;
    if (r->type == REDIS_REPLY_INTEGER) v = r->integer;
    if (r->type == REDIS_REPLY_STRING) v = atoll(r->str);
    if (r->type == REDIS_REPLY_NIL) v = 0;
    freeReplyObject(r);
    return v;
}

/* The day hashes hold exactly records 0..n-1, each once, and the stream n events. */
static void check_sums(int port, int n) {
    long long want[2][3][6] = {{{0}}};
    for (int i = 0; i < n; i++) {
        long long *w = want[i % 10 == 0][i % 3];
        long long v[6] = {1, 100 + i, i % 50, 10 + i % 30, i % 5, 1000 + 7 * i};
        for (int m = 0; m < 6; m++)
            w[m] += v[m];
    }
    redisContext *c = sync_client(port);
    assert_non_null(c);
    for (int d = 0; d < 2; d++)
        for (int g = 0; g < 3; g++)
            for (int m = 0; m < 6; m++) {
                long long got = get_int(c, "HGET tg:usage:%s %s|%s|%s|%s", days[d], groups[g][0],
                                        groups[g][1], groups[g][2], metrics[m]);
                if (got != want[d][g][m])
                    fail_msg("%s %s|%s|%s|%s: got %lld want %lld", days[d], groups[g][0], groups[g][1],
                             groups[g][2], metrics[m], got, want[d][g][m]);
            }
    assert_int_equal(get_int(c, "XLEN tg:events"), n);
    redisFree(c);
}

static uint64_t journaled(tg_ledger_t *l) {
    uint64_t j;
    tg_ledger_stats(l, NULL, &j, NULL);
    return j;
}

static size_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : (size_t)-1;
}

static size_t file_lines(const char *path) {
    FILE *fp = fopen(path, "r");
    if (fp == NULL) return 0;
    size_t n = 0;
    for (int ch; (ch = fgetc(fp)) != EOF;)
        n += ch == '\n';
    fclose(fp);
    return n;
}

/* --- tests ------------------------------------------------------------------------------------------ */

static void test_sums_exact(void **state) {
    fx_t f;
    fx_init(&f);
    redis_start(&f, 0, NULL);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    RUN_UNTIL(&f, tg_ledger_connected(f.l));
    record_range(f.l, "sum-", 0, 2000);
    assert_int_equal(tg_ledger_backlog(f.l), 2000);
    RUN_UNTIL(&f, drained(f.l));
    check_sums(f.port, 2000);
    uint64_t w, j, r;
    tg_ledger_stats(f.l, &w, &j, &r);
    assert_int_equal(w, 2000);
    assert_int_equal(j, 0);

    /* the event carries the record as the request path gave it */
    redisContext *c = sync_client(f.port);
    redisReply *x = redisCommand(c, "XRANGE tg:events - + COUNT 1");
    assert_int_equal(x->type, REDIS_REPLY_ARRAY);
    redisReply *kv = x->element[0]->element[1];
    const char *want[][2] = {{"ts", "1740873600000"}, {"id", "sum-000000"},   {"key", "team-a"},
                             {"route", "direct"},     {"provider", "openai"}, {"model", "gpt-4o"},
                             {"status", "200"},       {"attempts", "1"},      {"input_tokens", "100"},
                             {"ttft_ms", "-1"},       {"estimated", "0"},     {"cost_micro_usd", "1000"}};
    for (size_t w_ = 0; w_ < sizeof(want) / sizeof(want[0]); w_++) {
        int found = 0;
        for (size_t k = 0; k + 1 < kv->elements; k += 2)
            if (strcmp(kv->element[k]->str, want[w_][0]) == 0) {
                assert_string_equal(kv->element[k + 1]->str, want[w_][1]);
                found = 1;
            }
        if (!found) fail_msg("event lacks %s", want[w_][0]);
    }
    freeReplyObject(x);
    redisFree(c);
    fx_done(&f);
}

static void test_same_id_counts_once(void **state) {
    fx_t f;
    fx_init(&f);
    redis_start(&f, 0, NULL);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    RUN_UNTIL(&f, tg_ledger_connected(f.l));
    record_i(f.l, "dup-", 0);
    record_i(f.l, "dup-", 0); /* same loop iteration */
    RUN_UNTIL(&f, drained(f.l));
    record_i(f.l, "dup-", 0); /* later */
    /* another worker's ledger, same request id */
    char url[64], err[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f.port);
    tg_ledger_t *other = tg_ledger_new(f.base, url, NULL, 1, err, sizeof(err));
    assert_non_null(other);
    RUN_UNTIL(&f, tg_ledger_connected(other));
    record_i(other, "dup-", 0);
    RUN_UNTIL(&f, drained(f.l) && drained(other));
    tg_ledger_free(other);
    check_sums(f.port, 1);
    fx_done(&f);
}

static void test_down_at_start_journal_replayed(void **state) {
    fx_t f;
    fx_init(&f);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d"); /* nothing listens there yet */
    record_range(f.l, "down-", 0, 500);
    RUN_UNTIL(&f, file_lines(f.journal0) == 500);
    assert_false(tg_ledger_connected(f.l));
    assert_int_equal(tg_ledger_backlog(f.l), 500);

    /* a journal line is one checksummed JSON object */
    FILE *fp = fopen(f.journal0, "r");
    char line[4096];
    assert_non_null(fgets(line, sizeof(line), fp));
    fclose(fp);
    json_error_t jerr;
    json_t *o = json_loads(line, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "id")), "down-000000");
    assert_int_equal(json_integer_value(json_object_get(o, "input_tokens")), 100);
    assert_true(json_is_string(json_object_get(o, "ck")));
    json_decref(o);

    redis_start(&f, 0, NULL);
    RUN_UNTIL(&f, drained(f.l));
    check_sums(f.port, 500);
    assert_int_equal(file_size(f.journal0), 0);
    uint64_t w, j, r;
    tg_ledger_stats(f.l, &w, &j, &r);
    assert_int_equal(j, 500);
    assert_int_equal(r, 500);
    fx_done(&f);
}

static void test_killed_mid_run_nothing_lost_nothing_doubled(void **state) {
    fx_t f;
    fx_init(&f);
    redis_start(&f, 1, NULL);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    RUN_UNTIL(&f, tg_ledger_connected(f.l));
    record_range(f.l, "kill-", 0, 300);
    RUN_UNTIL(&f, drained(f.l));
    record_range(f.l, "kill-", 300, 600);
    event_base_loop(f.base, EVLOOP_NONBLOCK); /* they leave; the kill comes before their replies */
    redis_stop(&f, SIGKILL);
    RUN_UNTIL(&f, !tg_ledger_connected(f.l));
    record_range(f.l, "kill-", 600, 900);
    run_ms(&f, 50);
    redis_start(&f, 1, NULL); /* same port, same AOF */
    record_range(f.l, "kill-", 900, 1000);
    RUN_UNTIL(&f, drained(f.l));
    record_range(f.l, "kill-", 1000, 1100);
    RUN_UNTIL(&f, drained(f.l));
    check_sums(f.port, 1100);
    uint64_t w, j, r;
    tg_ledger_stats(f.l, &w, &j, &r);
    assert_true(j >= 300); /* at least the records made while it was down */
    assert_int_equal(file_size(f.journal0), 0);
    fx_done(&f);
}

static void test_stalled_redis_counts_as_down(void **state) {
    fx_t f;
    fx_init(&f);
    redis_start(&f, 0, NULL);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    RUN_UNTIL(&f, tg_ledger_connected(f.l));
    kill(f.redis, SIGSTOP);
    record_range(f.l, "stall-", 0, 200); /* sent, then no answer: the command timeout fires */
    RUN_UNTIL(&f, !tg_ledger_connected(f.l));
    record_range(f.l, "stall-", 200, 400);
    RUN_UNTIL(&f, file_lines(f.journal0) == 400);
    kill(f.redis, SIGCONT); /* it now runs the first 200 it had received: the replay must not double them */
    RUN_UNTIL(&f, drained(f.l));
    check_sums(f.port, 400);
    fx_done(&f);
}

static void test_torn_last_line_skipped(void **state) {
    fx_t f;
    fx_init(&f);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    record_range(f.l, "torn-", 0, 3);
    tg_ledger_free(f.l); /* writes the journal */
    f.l = NULL;
    assert_int_equal(file_lines(f.journal0), 3);

    /* a line whose content no longer matches its checksum, then a line cut mid-write */
    FILE *fp = fopen(f.journal0, "r");
    char l0[4096], l1[4096], l2[4096];
    assert_non_null(fgets(l0, sizeof(l0), fp));
    assert_non_null(fgets(l1, sizeof(l1), fp));
    assert_non_null(fgets(l2, sizeof(l2), fp));
    fclose(fp);
    char *p = strstr(l0, "torn-000000");
    assert_non_null(p);
    memcpy(p, "evil", 4);
    fp = fopen(f.journal0, "a");
    fputs(l0, fp);
    fwrite(l2, 1, strlen(l2) / 2, fp);
    fclose(fp);

    redis_start(&f, 0, NULL);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    record_i(f.l, "torn-", 3); /* appended after the torn line: must not be glued to it */
    RUN_UNTIL(&f, drained(f.l));
    check_sums(f.port, 4);
    redisContext *c = sync_client(f.port);
    assert_int_equal(get_int(c, "EXISTS tg:done:evil-000000"), 0);
    redisFree(c);
    assert_int_equal(file_size(f.journal0), 0);
    fx_done(&f);
}

static void test_backlog_bound_spills_to_journal(void **state) {
    fx_t f;
    fx_init(&f);
    redis_start(&f, 0, NULL);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    tg_ledger_set_limits(f.l, 2000, 50);
    RUN_UNTIL(&f, tg_ledger_connected(f.l));
    record_range(f.l, "bound-", 0, 500);
    RUN_UNTIL(&f, drained(f.l));
    check_sums(f.port, 500);
    uint64_t w, j, r;
    tg_ledger_stats(f.l, &w, &j, &r);
    assert_int_equal(j, 450);
    assert_int_equal(r, 450);
    assert_int_equal(file_size(f.journal0), 0);
    fx_done(&f);
}

static void test_redis_error_retried_not_lost(void **state) {
    fx_t f;
    fx_init(&f);
    redis_start(&f, 0, NULL);
    redisContext *c = sync_client(f.port);
    freeReplyObject(redisCommand(c, "SET tg:usage:%s not-a-hash", days[0])); /* 9 records in 10 fail */
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    RUN_UNTIL(&f, tg_ledger_connected(f.l));
    record_range(f.l, "err-", 0, 100);
    RUN_UNTIL(&f, journaled(f.l) > 0 && tg_ledger_backlog(f.l) >= 90); /* refused, kept for retry */
    freeReplyObject(redisCommand(c, "DEL tg:usage:%s", days[0]));
    redisFree(c);
    RUN_UNTIL(&f, drained(f.l));
    check_sums(f.port, 100);
    fx_done(&f);
}

static void test_script_flushed_falls_back_to_eval(void **state) {
    fx_t f;
    fx_init(&f);
    redis_start(&f, 0, NULL);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d");
    RUN_UNTIL(&f, tg_ledger_connected(f.l));
    redisContext *c = sync_client(f.port);
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    record_range(f.l, "flush-", 0, 100);
    RUN_UNTIL(&f, drained(f.l));
    record_range(f.l, "flush-", 100, 200);
    RUN_UNTIL(&f, drained(f.l));
    check_sums(f.port, 200);
    fx_done(&f);
}

static void test_password_and_db(void **state) {
    fx_t f;
    fx_init(&f);
    redis_start(&f, 0, "s3cret");
    f.l = fx_ledger(&f, "redis://:s3cret@localhost:%d/3");
    RUN_UNTIL(&f, tg_ledger_connected(f.l));
    record_range(f.l, "auth-", 0, 10);
    RUN_UNTIL(&f, drained(f.l));
    redisContext *c = sync_client(f.port);
    freeReplyObject(redisCommand(c, "AUTH s3cret"));
    assert_int_equal(get_int(c, "XLEN tg:events"), 0); /* db 0 untouched */
    freeReplyObject(redisCommand(c, "SELECT 3"));
    assert_int_equal(get_int(c, "XLEN tg:events"), 10);
    redisFree(c);
    fx_done(&f);
}

/* Field `metric` of provider|model|key in hash `key`, or 0. */
static long long field_of(redisContext *c, const char *key, const char *metric) {
    return get_int(c, "HGET %s openai|gpt-4o|team-a|%s", key, metric);
}

/* The event of request `id` has field `name` = `want`. */
static void event_has(redisContext *c, const char *id, const char *name, const char *want) {
    redisReply *x = redisCommand(c, "XRANGE tg:events - +");
    assert_int_equal(x->type, REDIS_REPLY_ARRAY);
    int found = 0;
    for (size_t e = 0; e < x->elements; e++) {
        redisReply *kv = x->element[e]->element[1];
        const char *eid = NULL, *v = NULL;
        for (size_t k = 0; k + 1 < kv->elements; k += 2) {
            if (strcmp(kv->element[k]->str, "id") == 0) eid = kv->element[k + 1]->str;
            if (strcmp(kv->element[k]->str, name) == 0) v = kv->element[k + 1]->str;
        }
        if (eid && strcmp(eid, id) == 0) {
            assert_non_null(v);
            assert_string_equal(v, want);
            found = 1;
        }
    }
    freeReplyObject(x);
    if (!found) fail_msg("no event for %s", id);
}

/* A simulated answer's usage goes to the simulated day hash, never to the real one nor to the
 * month spend that budgets read; its event says simulated. Through the journal too (Redis down
 * when it was recorded), so a replay keeps the mark. */
static void test_simulated_kept_apart(void **state) {
    fx_t f;
    fx_init(&f);
    f.l = fx_ledger(&f, "redis://127.0.0.1:%d"); /* nothing listens yet: both go to the journal */
    tg_ledger_rec_t real = {.request_id = "real-1",
                            .key_name = "team-a",
                            .route = "direct",
                            .provider = "openai",
                            .model = "gpt-4o",
                            .status = 200,
                            .attempts = 1,
                            .usage = {.input_tokens = 10, .output_tokens = 5, .present = 1},
                            .cost_micro_usd = 1000,
                            .ts_ms = TS_DAY0,
                            .latency_ms = 5,
                            .ttft_ms = 2};
    tg_ledger_rec_t sim = real;
    sim.request_id = "sim-1";
    sim.usage.input_tokens = 70;
    sim.cost_micro_usd = 900000;
    sim.simulated = 1;
    tg_ledger_record(f.l, &real);
    tg_ledger_record(f.l, &sim);
    RUN_UNTIL(&f, file_lines(f.journal0) == 2);
    redis_start(&f, 0, NULL);
    RUN_UNTIL(&f, drained(f.l));
    sim.request_id = "sim-2"; /* and one sent straight to Redis */
    tg_ledger_record(f.l, &sim);
    RUN_UNTIL(&f, drained(f.l));

    redisContext *c = sync_client(f.port);
    char real_day[64], sim_day[64];
    snprintf(real_day, sizeof(real_day), "tg:usage:%s", days[0]);
    snprintf(sim_day, sizeof(sim_day), "tg:usage-sim:%s", days[0]);
    assert_int_equal(field_of(c, real_day, "requests"), 1);
    assert_int_equal(field_of(c, real_day, "input_tokens"), 10);
    assert_int_equal(field_of(c, real_day, "cost_micro_usd"), 1000);
    assert_int_equal(field_of(c, sim_day, "requests"), 2);
    assert_int_equal(field_of(c, sim_day, "input_tokens"), 140);
    assert_int_equal(field_of(c, sim_day, "cost_micro_usd"), 1800000);
    assert_int_equal(get_int(c, "GET tg:spend:{team-a}:2025-03"), 1000); /* budgets: real spend only */
    assert_int_equal(get_int(c, "XLEN tg:events"), 3);
    event_has(c, "real-1", "simulated", "0");
    event_has(c, "sim-1", "simulated", "1");
    event_has(c, "sim-2", "simulated", "1");
    redisFree(c);
    fx_done(&f);
}

static void test_off_is_noop(void **state) {
    struct event_base *base = event_base_new();
    char err[256] = "";
    for (int i = 0; i < 2; i++) {
        tg_ledger_t *l = tg_ledger_new(base, i ? "" : NULL, "/nonexistent/dir/journal", 0, err, sizeof(err));
        assert_non_null(l);
        record_i(l, "off-", 0);
        assert_int_equal(tg_ledger_backlog(l), 0);
        assert_false(tg_ledger_connected(l));
        uint64_t w = 1, j = 1, r = 1;
        tg_ledger_stats(l, &w, &j, &r);
        assert_true(w == 0 && j == 0 && r == 0);
        tg_ledger_free(l);
    }
    tg_ledger_record(NULL, NULL);
    tg_ledger_free(NULL);
    assert_null(tg_ledger_new(base, "http://127.0.0.1:6379", NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "bad redis url"));
    assert_null(
        tg_ledger_new(base, "redis://127.0.0.1:6379", "/nonexistent/dir/journal", 0, err, sizeof(err)));
    assert_non_null(strstr(err, "journal"));
    event_base_free(base);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    tg_log_set_level(TG_LOG_ERROR); /* the tests provoke the warnings on purpose */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_is_noop),
        cmocka_unit_test(test_sums_exact),
        cmocka_unit_test(test_same_id_counts_once),
        cmocka_unit_test(test_down_at_start_journal_replayed),
        cmocka_unit_test(test_killed_mid_run_nothing_lost_nothing_doubled),
        cmocka_unit_test(test_stalled_redis_counts_as_down),
        cmocka_unit_test(test_torn_last_line_skipped),
        cmocka_unit_test(test_backlog_bound_spills_to_journal),
        cmocka_unit_test(test_redis_error_retried_not_lost),
        cmocka_unit_test(test_script_flushed_falls_back_to_eval),
        cmocka_unit_test(test_password_and_db),
        cmocka_unit_test(test_simulated_kept_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
