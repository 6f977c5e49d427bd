/* test_redis.c — our Redis connection: the URL forms it accepts and the ones it refuses, and
 * the link against a real redis-server on a free loopback port: up and down are reported,
 * replies come back in order to their callbacks, a cancelled command never calls back, a
 * dropped link fails what was in flight later (never inside the call) and comes back by
 * itself, and a server that is not there is reported loudly once, then quietly. */
/* deps: gateway/redis.c core/log.c */
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

#include "gateway/redis.h"
#include "tests/unit/redis_fixture.h"

/* --- URLs ------------------------------------------------------------------------------------ */

static void test_url_forms(void **state) {
    tg_redis_url_t u;
    char err[256] = "";
    assert_int_equal(tg_redis_url_parse("redis://127.0.0.1", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.target, "127.0.0.1:6379");
    assert_null(u.user);
    assert_null(u.password);
    assert_null(u.unix_path);
    tg_redis_url_free(&u);

    assert_int_equal(tg_redis_url_parse("redis://:s3cret@127.0.0.1:6390/3", &u, err, sizeof(err)), 0);
    assert_null(u.user);
    assert_string_equal(u.password, "s3cret");
    assert_int_equal(u.port, 6390);
    assert_int_equal(u.db, 3);
    tg_redis_url_free(&u);
    assert_null(u.password);

    /* The password may hold '@': the last one ends it. */
    assert_int_equal(tg_redis_url_parse("redis://alice:p@ss@[::1]:7000/", &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_string_equal(u.target, "::1:7000");
    tg_redis_url_free(&u);

    assert_int_equal(tg_redis_url_parse("unix:///tmp/redis.sock", &u, err, sizeof(err)), 0);
    assert_string_equal(u.unix_path, "/tmp/redis.sock");
    assert_string_equal(u.target, "/tmp/redis.sock");
    tg_redis_url_free(&u);

    /* A name is resolved once, here. */
    assert_int_equal(tg_redis_url_parse("redis://localhost:6400", &u, err, sizeof(err)), 0);
    assert_true(strcmp(u.host, "127.0.0.1") == 0 || strcmp(u.host, "::1") == 0);
    assert_string_equal(u.target, "localhost:6400");
    tg_redis_url_free(&u);
}

static void test_url_rejects(void **state) {
    static const char *const bad[] = {"",
                                      "http://127.0.0.1",
                                      "unix://relative.sock",
                                      "redis://",
                                      "redis://127.0.0.1:0",
                                      "redis://127.0.0.1:65536",
                                      "redis://127.0.0.1:63x9",
                                      "redis://127.0.0.1/db",
                                      "redis://127.0.0.1/-1",
                                      "redis://127.0.0.1/1/2",
                                      "redis://nopassword@127.0.0.1",
                                      "redis://[::1:6379"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_redis_url_t u;
        char err[256] = "";
        assert_int_equal(tg_redis_url_parse(bad[i], &u, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "bad redis url"));
        assert_null(u.user);
        assert_null(u.password);
        assert_null(u.unix_path);
    }
    tg_redis_url_t u;
    char err[256] = "";
    assert_int_equal(tg_redis_url_parse(NULL, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad redis url"));
}

/* --- the link -------------------------------------------------------------------------------- */

typedef struct {
    struct event_base *base;
    tg_redis_t *r;
    int ups, downs, loud, in_call;
    char why[128];
} fx_t;

typedef struct {
    fx_t *f;
    int calls, got_null, during_call;
    char text[64];
} seen_t;

static void on_up(void *ud) {
    ((fx_t *)ud)->ups++;
}

static void on_down(void *ud, const char *why, int loud) {
    fx_t *f = ud;
    f->downs++;
    f->loud += loud;
    snprintf(f->why, sizeof(f->why), "%s", why ? why : "");
}

static void on_seen(const struct redisReply *rep, void *ud) {
    seen_t *s = ud;
    s->calls++;
    s->during_call += s->f->in_call;
    if (rep == NULL) {
        s->got_null++;
        return;
    }
    if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
        snprintf(s->text, sizeof(s->text), "%s", rep->str);
    else if (rep->type == REDIS_REPLY_INTEGER)
        snprintf(s->text, sizeof(s->text), "%lld", rep->integer);
}

static void run_ms(fx_t *f, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

#define RUN_UNTIL(f, cond)                                                                                   \
    do {                                                                                                     \
        for (int i_ = 0; i_ < 400 && !(cond); i_++)                                                          \
            run_ms(f, 5);                                                                                    \
        assert_true(cond);                                                                                   \
    } while (0)

static pid_t start_server(int port) {
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        redisContext *c = sync_client(port);
        if (c != NULL) {
            redisFree(c);
            return pid;
        }
        usleep(20000);
    }
    fail_msg("redis-server did not start");
    return -1;
}

static tg_redis_t *connect_to(fx_t *f, int port) {
    char url[64], err[256];
    const tg_redis_events_t ev = {on_up, on_down, f};
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", port);
    f->base = event_base_new();
    tg_redis_t *r = tg_redis_new(f->base, url, "test", &ev, err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(tg_redis_state(r), TG_REDIS_DOWN);
    snprintf(url, sizeof(url), "127.0.0.1:%d", port);
    assert_string_equal(tg_redis_target(r), url);
    return r;
}

static void test_commands_in_order_cancel_and_drop(void **state) {
    int port = free_port();
    pid_t pid = start_server(port);
    fx_t f = {0};
    f.r = connect_to(&f, port);
    tg_redis_set_backoff_ms(f.r, 20, 100);
    /* Nothing can be sent before the link is up. */
    seen_t early = {.f = &f};
    assert_null(tg_redis_send_argv(f.r, 1, (const char *[]){"PING"}, NULL, on_seen, &early));
    tg_redis_connect(f.r);
    assert_int_equal(tg_redis_state(f.r), TG_REDIS_CONNECTING);
    RUN_UNTIL(&f, f.ups == 1);
    assert_int_equal(tg_redis_state(f.r), TG_REDIS_UP);

    /* A formatted command and argv commands, answered in order; SELECT 2 from the URL holds. */
    static const char set[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n";
    seen_t a = {.f = &f}, b = {.f = &f}, c = {.f = &f}, d = {.f = &f};
    f.in_call = 1;
    assert_non_null(tg_redis_send(f.r, set, sizeof(set) - 1, on_seen, &a));
    assert_non_null(tg_redis_send_argv(f.r, 2, (const char *[]){"GET", "k"}, NULL, on_seen, &b));
    tg_redis_cmd_t *cc = tg_redis_send_argv(f.r, 2, (const char *[]){"INCR", "n"}, NULL, on_seen, &c);
    assert_non_null(cc);
    tg_redis_cancel(cc);
    f.in_call = 0;
    RUN_UNTIL(&f, b.calls == 1);
    assert_string_equal(a.text, "OK");
    assert_string_equal(b.text, "v1");
    run_ms(&f, 20);
    assert_int_equal(c.calls, 0); /* cancelled: the INCR ran, its reply was dropped */
    redisContext *sc = sync_client(port);
    redisReply *x = redisCommand(sc, "SELECT 2");
    freeReplyObject(x);
    x = redisCommand(sc, "GET n");
    assert_string_equal(x->str, "1");
    freeReplyObject(x);
    redisFree(sc);

    /* A drop: what was in flight fails later, on the loop, and the link comes back. */
    f.in_call = 1;
    assert_non_null(tg_redis_send_argv(f.r, 3, (const char *[]){"BLPOP", "nothing", "5"}, NULL, on_seen, &d));
    tg_redis_drop(f.r);
    assert_int_equal(tg_redis_state(f.r), TG_REDIS_CLOSING);
    assert_null(tg_redis_send_argv(f.r, 1, (const char *[]){"PING"}, NULL, on_seen, &early));
    f.in_call = 0;
    RUN_UNTIL(&f, f.downs == 1 && d.calls == 1);
    assert_int_equal(d.got_null, 1);
    assert_int_equal(d.during_call, 0);
    assert_int_equal(f.loud, 1);
    assert_string_equal(f.why, "redis refused a command");
    RUN_UNTIL(&f, f.ups == 2);
    assert_int_equal(early.calls, 0);

    tg_redis_free(f.r);
    event_base_free(f.base);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static void test_absent_server_loud_once(void **state) {
    fx_t f = {0};
    f.r = connect_to(&f, free_port());
    tg_redis_set_backoff_ms(f.r, 10, 20);
    tg_redis_connect(f.r);
    RUN_UNTIL(&f, f.downs >= 3);
    assert_int_equal(f.loud, 1); /* the first failure is news, the retries are not */
    assert_int_equal(f.ups, 0);
    assert_int_not_equal(tg_redis_state(f.r), TG_REDIS_UP);
    tg_redis_free(f.r);
    tg_redis_free(NULL);
    event_base_free(f.base);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_rejects),
        cmocka_unit_test(test_commands_in_order_cancel_and_drop),
        cmocka_unit_test(test_absent_server_loud_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
