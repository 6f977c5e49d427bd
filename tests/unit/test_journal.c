/* test_journal.c — every journal file is replayed, whatever the worker count, and never by
 * two at once: the journal's flock (a second holder of a worker's name gets another file),
 * a restart with fewer workers replaying the journals of workers that no longer exist, files
 * still held by a live worker left alone, and two "processes" (ledgers on one journal
 * directory) taking over leftover files at once without replaying one twice. Against a real
 * redis-server on a free loopback port, as test_ledger.c. */
/* clang-format off */
/* deps: gateway/ledger.c gateway/ledger_rec.c gateway/redis.c gateway/journal.c core/pool.c core/log.c gateway/redis_cluster.c */
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
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "gateway/journal.h"
#include "gateway/ledger.h"
#include "tests/unit/redis_fixture.h"

#define TS 1740830400000LL /* 2025-03-01T12:00:00Z */

typedef struct {
    char dir[64], prefix[96];
    int port;
    pid_t redis;
    struct event_base *base;
} fx_t;

static void redis_start(fx_t *f) {
    f->redis = redis_fixture_spawn(f->port, f->dir);
}

static void fx_init(fx_t *f) {
    memset(f, 0, sizeof(*f));
    strcpy(f->dir, "/tmp/tg-journal-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->prefix, sizeof(f->prefix), "%s/journal", f->dir);
    f->port = free_port();
    f->base = event_base_new();
    assert_non_null(f->base);
}

static void fx_done(fx_t *f) {
    if (f->redis > 0) {
        redis_fixture_stop(f->redis);
    }
    event_base_free(f->base);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
}

static tg_ledger_t *ledger(fx_t *f, int worker) {
    char url[64], err[256] = "";
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f->port);
    tg_ledger_t *l = tg_ledger_new(f->base, url, f->prefix, worker, err, sizeof(err));
    if (l == NULL) fail_msg("tg_ledger_new: %s", err);
    tg_ledger_set_backoff_ms(l, 20, 100);
    tg_ledger_set_limits(l, 300, 0);
    return l;
}

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

#define RUN_UNTIL(f, cond) FIXTURE_RUN_UNTIL((f)->base, 3000, cond)

static int drained(tg_ledger_t *l) {
    return tg_ledger_backlog(l) == 0 && tg_ledger_connected(l);
}

/* Record i: 100 + i input tokens and a cost of 1000 + i, all in one group. */
static void record_i(tg_ledger_t *l, int i) {
    char id[32];
    snprintf(id, sizeof(id), "j-%06d", i);
    tg_ledger_rec_t r = {.request_id = id,
                         .key_name = "team",
                         .route = "direct",
                         .provider = "openai",
                         .model = "gpt-4o",
                         .status = 200,
                         .attempts = 1,
                         .usage = {.input_tokens = 100 + i, .output_tokens = 5, .present = 1},
                         .cost_micro_usd = 1000 + i,
                         .ts_ms = TS,
                         .latency_ms = 10,
                         .ttft_ms = 5};
    tg_ledger_record(l, &r);
}

static long long get_int(int port, const char *cmd) {
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

/* Redis holds records 0..n-1, each exactly once. */
static void check_exact(int port, int n) {
    long long req = 0, in = 0, cost = 0;
    for (int i = 0; i < n; i++) {
        req++;
        in += 100 + i;
        cost += 1000 + i;
    }
    assert_int_equal(get_int(port, "HGET tg:usage:2025-03-01 openai|gpt-4o|team|requests"), req);
    assert_int_equal(get_int(port, "HGET tg:usage:2025-03-01 openai|gpt-4o|team|input_tokens"), in);
    assert_int_equal(get_int(port, "HGET tg:usage:2025-03-01 openai|gpt-4o|team|cost_micro_usd"), cost);
    assert_int_equal(get_int(port, "XLEN tg:events"), n);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
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

static uint64_t replayed(tg_ledger_t *l) {
    uint64_t r;
    tg_ledger_stats(l, NULL, NULL, &r);
    return r;
}

/* Writes records from..to-1 into journal files of `workers` workers (Redis down), round robin,
 * as a stopped gateway would leave them. */
static void leave_journals(fx_t *f, int workers, int from, int to) {
    tg_ledger_t *ls[16];
    for (int w = 0; w < workers; w++)
        ls[w] = ledger(f, w);
    for (int i = from; i < to; i++)
        record_i(ls[i % workers], i);
    for (int w = 0; w < workers; w++)
        tg_ledger_free(ls[w]);
}

/* --- tests ------------------------------------------------------------------------------------ */

/* A worker's name held by someone else (another process on the same directory) makes the
 * second journal take `<prefix>.<worker>.1`; each holds its file locked until closed. */
static void test_lock_gives_each_holder_its_own_file(void **state) {
    fx_t f;
    fx_init(&f);
    char err[256];
    tg_journal_t *a = tg_journal_open(f.base, f.prefix, 0, NULL, NULL, err, sizeof(err));
    tg_journal_t *b = tg_journal_open(f.base, f.prefix, 0, NULL, NULL, err, sizeof(err));
    tg_journal_t *c = tg_journal_open(f.base, f.prefix, 1, NULL, NULL, err, sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    char want[128];
    snprintf(want, sizeof(want), "%s.0", f.prefix);
    assert_string_equal(tg_journal_path(a), want);
    snprintf(want, sizeof(want), "%s.0.1", f.prefix);
    assert_string_equal(tg_journal_path(b), want);
    snprintf(want, sizeof(want), "%s.1", f.prefix);
    assert_string_equal(tg_journal_path(c), want);
    /* the lock is real: another open file description cannot take it */
    int fd = open(tg_journal_path(a), O_RDONLY);
    assert_true(fd >= 0);
    assert_int_not_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    tg_journal_close(a);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0); /* released on close */
    close(fd);
    /* files held by b and c are not taken over; nothing else is there */
    tg_journal_t *d = tg_journal_open(f.base, f.prefix, 0, NULL, NULL, err, sizeof(err));
    assert_non_null(d);
    snprintf(want, sizeof(want), "%s.0", f.prefix);
    assert_string_equal(tg_journal_path(d), want);
    assert_int_equal(tg_journal_adopt(d), 0);
    assert_true(exists(tg_journal_path(b)) && exists(tg_journal_path(c)));
    tg_journal_close(b);
    tg_journal_close(c);
    tg_journal_close(d);
    fx_done(&f);
}

/* Three workers journal while Redis is away; the restart has one worker: all of it lands once,
 * and the files of workers 1 and 2 are gone. */
static void test_fewer_workers_replay_everything(void **state) {
    fx_t f;
    fx_init(&f);
    leave_journals(&f, 3, 0, 300);
    char p1[128], p2[128];
    snprintf(p1, sizeof(p1), "%s.1", f.prefix);
    snprintf(p2, sizeof(p2), "%s.2", f.prefix);
    assert_int_equal(file_lines(p1), 100);
    assert_int_equal(file_lines(p2), 100);
    redis_start(&f);
    tg_ledger_t *l = ledger(&f, 0);
    RUN_UNTIL(&f, drained(l) && replayed(l) == 300);
    check_exact(f.port, 300);
    assert_false(exists(p1));
    assert_false(exists(p2));
    record_i(l, 300); /* and the worker goes on as usual */
    RUN_UNTIL(&f, drained(l));
    check_exact(f.port, 301);
    tg_ledger_free(l);
    fx_done(&f);
}

/* A journal held by a live worker (its Redis link down) is not taken from it; it replays its
 * own once its link is back. */
static void test_held_journal_left_to_its_owner(void **state) {
    fx_t f;
    fx_init(&f);
    tg_ledger_t *held = ledger(&f, 1); /* nothing listens yet: it journals */
    for (int i = 0; i < 50; i++)
        record_i(held, i);
    char p1[128];
    snprintf(p1, sizeof(p1), "%s.1", f.prefix);
    RUN_UNTIL(&f, file_lines(p1) == 50);
    redis_start(&f);
    tg_ledger_t *l = ledger(&f, 0);
    RUN_UNTIL(&f, drained(l) && drained(held));
    check_exact(f.port, 50);
    assert_int_equal(replayed(l), 0);
    assert_int_equal(replayed(held), 50);
    tg_ledger_free(held);
    tg_ledger_free(l);
    fx_done(&f);
}

/* Two "processes" (ledgers of worker 0 on the same directory: the second gets `.0.1`) come
 * up at once over the files a five-worker run left: every file is replayed by exactly one of
 * them (their replay counts add up to the records), and Redis holds each record once. */
static void test_two_at_once_replay_each_file_once(void **state) {
    fx_t f;
    fx_init(&f);
    leave_journals(&f, 5, 0, 1000);
    redis_start(&f);
    tg_ledger_t *a = ledger(&f, 0), *b = ledger(&f, 0);
    RUN_UNTIL(&f, drained(a) && drained(b) && replayed(a) + replayed(b) >= 1000);
    run_ms(&f, 50);
    assert_int_equal(replayed(a) + replayed(b), 1000);
    check_exact(f.port, 1000);
    for (int w = 1; w < 5; w++) {
        char p[128];
        snprintf(p, sizeof(p), "%s.%d", f.prefix, w);
        assert_false(exists(p));
    }
    tg_ledger_free(a);
    tg_ledger_free(b);
    fx_done(&f);
}

/* A leftover file with a torn last line: the good lines land, the torn one is skipped, and
 * the worker's own new lines are not glued to it. */
static void test_adopted_torn_line_skipped(void **state) {
    fx_t f;
    fx_init(&f);
    leave_journals(&f, 2, 0, 10);
    char p1[128];
    snprintf(p1, sizeof(p1), "%s.1", f.prefix);
    FILE *fp = fopen(p1, "a");
    fputs("{\"v\":1,\"id\":\"torn", fp); /* a crash mid-write */
    fclose(fp);
    redis_start(&f);
    tg_ledger_t *l = ledger(&f, 0);
    RUN_UNTIL(&f, drained(l) && replayed(l) == 10);
    record_i(l, 10);
    RUN_UNTIL(&f, drained(l));
    check_exact(f.port, 11);
    tg_ledger_free(l);
    fx_done(&f);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    tg_log_set_level(TG_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_gives_each_holder_its_own_file),
        cmocka_unit_test(test_fewer_workers_replay_everything),
        cmocka_unit_test(test_held_journal_left_to_its_owner),
        cmocka_unit_test(test_two_at_once_replay_each_file_once),
        cmocka_unit_test(test_adopted_torn_line_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
