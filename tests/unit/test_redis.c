/* test_redis.c — our Redis connection: the URL forms it accepts (Sentinel included) and the ones
 * it refuses (Cluster with its own message), and the link against real redis-servers on free
 * loopback ports: up and down are reported, replies come back in order to their callbacks, a
 * cancelled command never calls back, a dropped link fails what was in flight later (never
 * inside the call) and comes back by itself, a server that is not there is reported loudly
 * once, then quietly; AUTH with a password and with an ACL user, SELECT (and a refused one), a
 * reconnect after the server restarts, a name looked up on a DNS server of the test's own (and
 * looked up again on every connect, and one that does not resolve), a command timeout, TLS
 * with the certificate and its name checked, and a master found through a sentinel. */
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
#include <strings.h>
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

    /* Nothing is resolved here: names are looked up by the link, on every connect. */
    assert_int_equal(tg_redis_url_parse("redis://localhost:6400", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "localhost");
    assert_string_equal(u.target, "localhost:6400");
    assert_int_equal(u.tls, 0);
    tg_redis_url_free(&u);

    assert_int_equal(tg_redis_url_parse("rediss://bob:pw@redis.internal:6380/1", &u, err, sizeof(err)), 0);
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.sentinel, 0);
    assert_string_equal(u.user, "bob");
    assert_string_equal(u.host, "redis.internal");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 1);
    tg_redis_url_free(&u);

    /* Sentinel: every sentinel (default port 26379), the master's name, an optional db. */
    assert_int_equal(
        tg_redis_url_parse("redis+sentinel://:pw@10.0.0.1,sentinel-b:26380,[::1]:26381/mymaster/4", &u, err,
                           sizeof(err)),
        0);
    assert_int_equal(u.sentinel, 1);
    assert_int_equal(u.tls, 0);
    assert_int_equal(u.n_nodes, 3);
    assert_string_equal(u.nodes[0].host, "10.0.0.1");
    assert_int_equal(u.nodes[0].port, 26379);
    assert_string_equal(u.nodes[1].host, "sentinel-b");
    assert_int_equal(u.nodes[1].port, 26380);
    assert_string_equal(u.nodes[2].host, "::1");
    assert_int_equal(u.nodes[2].port, 26381);
    assert_string_equal(u.master, "mymaster");
    assert_int_equal(u.db, 4);
    assert_string_equal(u.password, "pw");
    assert_non_null(strstr(u.target, "mymaster"));
    tg_redis_url_free(&u);
    assert_null(u.nodes);

    assert_int_equal(tg_redis_url_parse("rediss+sentinel://127.0.0.1:5000/m", &u, err, sizeof(err)), 0);
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.sentinel, 1);
    assert_int_equal(u.n_nodes, 1);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.master, "m");
    tg_redis_url_free(&u);
}

/* Cluster URLs parse to their seed nodes; a cluster has only db 0. */
static void test_url_cluster(void **state) {
    tg_redis_url_t u;
    char err[256] = "";
    assert_int_equal(
        tg_redis_url_parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", &u, err, sizeof(err)), 0);
    assert_int_equal(u.cluster, 1);
    assert_int_equal(u.tls, 0);
    assert_int_equal(u.n_nodes, 2);
    assert_int_equal(u.nodes[1].port, 7001);
    tg_redis_url_free(&u);
    assert_int_equal(tg_redis_url_parse("rediss+cluster://:pw@a:1/0", &u, err, sizeof(err)), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.nodes[0].port, 1);
    tg_redis_url_free(&u);
    assert_int_equal(tg_redis_url_parse("redis+cluster://a:1/2", &u, err, sizeof(err)), -1);
    assert_null(u.nodes);
    /* one link cannot be a cluster */
    const tg_redis_events_t ev = {0};
    assert_null(tg_redis_new(NULL, "redis+cluster://a:1", "t", &ev, err, sizeof(err)));
    assert_non_null(strstr(err, "cluster"));
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
                                      "redis://[::1:6379",
                                      "redis://a,b:6379",
                                      "redis://:s3cret@bad host",
                                      "redis+sentinel://127.0.0.1:26379",
                                      "redis+sentinel://127.0.0.1:26379/",
                                      "redis+sentinel://127.0.0.1:26379/m/x",
                                      "redis+sentinel://127.0.0.1:26379,/m",
                                      "rediss+foo://127.0.0.1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_redis_url_t u;
        char err[256] = "";
        assert_int_equal(tg_redis_url_parse(bad[i], &u, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "bad redis url"));
        assert_null(strstr(err, "s3cret")); /* a password is never repeated in the message */
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

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

#define RUN_UNTIL(f, cond) FIXTURE_RUN_UNTIL((f)->base, 400, cond)

/* 1 once something accepts TCP connections on the port. */
static int listening(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* redis-server on the port with more arguments (NULL-terminated), output to /dev/null. */
static pid_t start_server_with(int port, const char *const *extra) {
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    const char *argv[48] = {"redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no"};
    int n = 9;
    for (int i = 0; extra && extra[i] && n < 46; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execvp("redis-server", (char **)argv);
        _exit(127);
    }
    return pid;
}

static pid_t start_server(int port) {
    pid_t pid = start_server_with(port, NULL);
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

static void stop_server(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void wait_listening(int port) {
    for (int i = 0; i < 500 && !listening(port); i++)
        usleep(20000);
    assert_true(listening(port));
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

/* --- AUTH, SELECT, restarts, timeouts ----------------------------------------------------------- */

static tg_redis_t *link_to(fx_t *f, const char *url) {
    char err[256] = "";
    const tg_redis_events_t ev = {on_up, on_down, f};
    if (f->base == NULL) f->base = event_base_new();
    tg_redis_t *r = tg_redis_new(f->base, url, "test", &ev, err, sizeof(err));
    if (r == NULL) fail_msg("tg_redis_new(%s): %s", url, err);
    tg_redis_set_backoff_ms(r, 20, 100);
    return r;
}

static void fx_free(fx_t *f) {
    tg_redis_free(f->r);
    event_base_free(f->base);
}

/* The link's answer to one command, run to its reply. */
static void ask(fx_t *f, seen_t *s, int argc, const char **argv) {
    memset(s, 0, sizeof(*s));
    s->f = f;
    assert_non_null(tg_redis_send_argv(f->r, argc, argv, NULL, on_seen, s));
    RUN_UNTIL(f, s->calls == 1);
}

static void test_auth_password_and_acl_user(void **state) {
    int port = free_port();
    const char *extra[] = {"--requirepass", "s3cret", "--user", "alice", "on",
                           ">wonder",       "~*",     "&*",     "+@all", NULL};
    pid_t pid = start_server_with(port, extra);
    wait_listening(port);
    char url[128];
    seen_t s;

    /* The default user's password. */
    fx_t f = {0};
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d", port);
    f.r = link_to(&f, url);
    tg_redis_connect(f.r);
    RUN_UNTIL(&f, f.ups == 1);
    ask(&f, &s, 2, (const char *[]){"ACL", "WHOAMI"});
    assert_string_equal(s.text, "default");
    fx_free(&f);

    /* An ACL user with its password: the commands run as that user. */
    fx_t g = {0};
    snprintf(url, sizeof(url), "redis://alice:wonder@127.0.0.1:%d", port);
    g.r = link_to(&g, url);
    tg_redis_connect(g.r);
    RUN_UNTIL(&g, g.ups == 1);
    ask(&g, &s, 2, (const char *[]){"ACL", "WHOAMI"});
    assert_string_equal(s.text, "alice");
    fx_free(&g);

    /* A wrong password is refused: never up, and the reason names AUTH. */
    fx_t h = {0};
    snprintf(url, sizeof(url), "redis://alice:nope@127.0.0.1:%d", port);
    h.r = link_to(&h, url);
    tg_redis_connect(h.r);
    RUN_UNTIL(&h, h.downs >= 1);
    assert_int_equal(h.ups, 0);
    assert_non_null(strstr(h.why, "redis refused AUTH"));
    fx_free(&h);

    /* No password at all: the link is up, but Redis refuses commands. */
    fx_t k = {0};
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    k.r = link_to(&k, url);
    tg_redis_connect(k.r);
    RUN_UNTIL(&k, k.ups == 1);
    ask(&k, &s, 1, (const char *[]){"PING"});
    assert_int_equal(s.got_null, 0);
    fx_free(&k);
    stop_server(pid);
}

static void test_select_and_refused_select(void **state) {
    int port = free_port();
    pid_t pid = start_server(port);
    char url[128];
    seen_t s;
    fx_t f = {0};
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/5", port);
    f.r = link_to(&f, url);
    tg_redis_connect(f.r);
    RUN_UNTIL(&f, f.ups == 1);
    ask(&f, &s, 3, (const char *[]){"SET", "where", "five"});
    redisContext *sc = sync_client(port);
    redisReply *x = redisCommand(sc, "SELECT 5");
    freeReplyObject(x);
    x = redisCommand(sc, "GET where");
    assert_string_equal(x->str, "five");
    freeReplyObject(x);
    redisFree(sc);
    fx_free(&f);

    /* Redis has 16 databases by default: db 99 is refused, and the link never comes up. */
    fx_t g = {0};
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/99", port);
    g.r = link_to(&g, url);
    tg_redis_connect(g.r);
    RUN_UNTIL(&g, g.downs >= 1);
    assert_int_equal(g.ups, 0);
    assert_non_null(strstr(g.why, "redis refused SELECT"));
    fx_free(&g);
    stop_server(pid);
}

static void test_reconnects_after_restart(void **state) {
    int port = free_port();
    pid_t pid = start_server(port);
    fx_t f = {0};
    f.r = connect_to(&f, port);
    tg_redis_set_backoff_ms(f.r, 20, 50);
    tg_redis_connect(f.r);
    RUN_UNTIL(&f, f.ups == 1);
    seen_t s;
    ask(&f, &s, 3, (const char *[]){"SET", "k", "before"});
    stop_server(pid);
    RUN_UNTIL(&f, f.downs == 1);
    assert_int_equal(f.loud, 1);
    assert_int_equal(tg_redis_state(f.r), TG_REDIS_DOWN);
    run_ms(&f, 200); /* a few failed attempts while it is away */
    pid = start_server(port);
    RUN_UNTIL(&f, f.ups == 2);
    ask(&f, &s, 2, (const char *[]){"GET", "k"});
    assert_int_equal(s.got_null, 0); /* the new server: no value, but an answer */
    ask(&f, &s, 2, (const char *[]){"ECHO", "again"});
    assert_string_equal(s.text, "again");
    fx_free(&f);
    stop_server(pid);
}

static void test_command_timeout(void **state) {
    int port = free_port();
    pid_t pid = start_server(port);
    fx_t f = {0};
    f.r = connect_to(&f, port);
    tg_redis_set_timeout_ms(f.r, 300);
    tg_redis_set_backoff_ms(f.r, 20, 50);
    tg_redis_connect(f.r);
    RUN_UNTIL(&f, f.ups == 1);
    kill(pid, SIGSTOP); /* connected, and answering nothing */
    seen_t s = {.f = &f};
    assert_non_null(tg_redis_send_argv(f.r, 1, (const char *[]){"PING"}, NULL, on_seen, &s));
    run_ms(&f, 150);
    assert_int_equal(f.downs, 0); /* not before the timeout */
    RUN_UNTIL(&f, f.downs == 1 && s.calls == 1);
    assert_int_equal(s.got_null, 1);
    assert_string_equal(f.why, "redis did not answer in time");
    /* A connect to a server that accepts nothing in time counts the same way. */
    RUN_UNTIL(&f, f.downs >= 2);
    assert_non_null(strstr(f.why, "within 300 ms"));
    kill(pid, SIGCONT);
    RUN_UNTIL(&f, f.ups == 2);
    fx_free(&f);
    stop_server(pid);
}

/* --- names: a DNS server of the test's own ------------------------------------------------------ */

/* Answers A queries for redis.test with 127.0.0.1, AAAA for it with nothing, anything else with
 * NXDOMAIN; counts the A queries for redis.test. */
typedef struct {
    int fd, port, a_queries;
    struct event *ev;
} dns_t;

static void on_dns(evutil_socket_t fd, short what, void *arg) {
    dns_t *d = arg;
    unsigned char q[512], a[600];
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
    if (n < 12) return;
    char name[256] = "";
    size_t o = 12, nl = 0;
    while (o < (size_t)n && q[o] != 0 && nl + q[o] + 1 < sizeof(name)) {
        if (nl) name[nl++] = '.';
        memcpy(name + nl, q + o + 1, q[o]);
        nl += q[o];
        o += q[o] + 1u;
    }
    name[nl] = '\0';
    size_t qend = o + 5; /* the zero label, type, class */
    if (qend > (size_t)n) return;
    int type = q[o + 1] << 8 | q[o + 2];
    int known = strcasecmp(name, "redis.test") == 0;
    memcpy(a, q, qend);
    a[2] = 0x81, a[3] = known ? 0x80 : 0x83; /* response, recursion; NOERROR or NXDOMAIN */
    a[6] = a[7] = a[8] = a[9] = a[10] = a[11] = 0;
    size_t len = qend;
    if (known && type == 1) {
        d->a_queries++;
        static const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1};
        memcpy(a + len, rr, sizeof(rr));
        len += sizeof(rr);
        a[7] = 1;
    }
    sendto(fd, a, len, 0, (struct sockaddr *)&from, fl);
}

static void dns_start(dns_t *d, struct event_base *base) {
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(d->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(d->fd, (struct sockaddr *)&a, &len), 0);
    d->port = ntohs(a.sin_port);
    d->ev = event_new(base, d->fd, EV_READ | EV_PERSIST, on_dns, d);
    event_add(d->ev, NULL);
}

static void dns_stop(dns_t *d) {
    event_free(d->ev);
    close(d->fd);
}

static void test_names_looked_up_on_every_connect(void **state) {
    int port = free_port();
    pid_t pid = start_server(port);
    fx_t f = {0};
    f.base = event_base_new();
    dns_t d = {0};
    dns_start(&d, f.base);
    char url[128], ns[64];
    snprintf(ns, sizeof(ns), "127.0.0.1:%d", d.port);

    /* A name that does not resolve: down (loudly, once), never up, and it keeps trying. */
    fx_t g = {.base = f.base};
    g.r = link_to(&g, "redis://nothere.test:6379");
    assert_int_equal(tg_redis_set_nameserver(g.r, ns), 0);
    tg_redis_connect(g.r);
    RUN_UNTIL(&g, g.downs >= 3);
    assert_int_equal(g.ups, 0);
    assert_int_equal(g.loud, 1);
    assert_non_null(strstr(g.why, "cannot resolve nothere.test"));
    tg_redis_free(g.r);

    /* A name that does: looked up again after every drop. */
    snprintf(url, sizeof(url), "redis://redis.test:%d", port);
    f.r = link_to(&f, url);
    assert_int_equal(tg_redis_set_nameserver(f.r, ns), 0);
    tg_redis_connect(f.r);
    RUN_UNTIL(&f, f.ups == 1);
    int first = d.a_queries;
    assert_true(first >= 1);
    tg_redis_drop(f.r);
    RUN_UNTIL(&f, f.ups == 2);
    assert_true(d.a_queries > first);
    seen_t s;
    ask(&f, &s, 2, (const char *[]){"ECHO", "named"});
    assert_string_equal(s.text, "named");
    tg_redis_free(f.r);
    dns_stop(&d);
    event_base_free(f.base);
    stop_server(pid);
}

/* --- TLS -------------------------------------------------------------------------------------- */

static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

static void test_tls_checks_certificate_and_name(void **state) {
    char dir[] = "/tmp/tg-redis-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* A CA, and a server certificate it signs for redis.internal and 127.0.0.1. */
    sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj "
       "/CN=test-ca "
       ">/dev/null 2>&1 && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "
       "/CN=redis.internal >/dev/null 2>&1 && printf 'subjectAltName=DNS:redis.internal,IP:127.0.0.1\\n' > "
       "ext && "
       "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 "
       "-extfile ext >/dev/null 2>&1",
       dir);
    int port = free_port();
    char tlsport[16], cert[128], key[128], ca[128], url[128];
    snprintf(tlsport, sizeof(tlsport), "%d", port);
    snprintf(cert, sizeof(cert), "%s/server.pem", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    const char *extra[] = {"--port",
                           "0",
                           "--tls-port",
                           tlsport,
                           "--tls-cert-file",
                           cert,
                           "--tls-key-file",
                           key,
                           "--tls-ca-cert-file",
                           ca,
                           "--tls-auth-clients",
                           "no",
                           NULL};
    pid_t pid = start_server_with(port, extra);
    wait_listening(port);
    char err[256];

    /* Our CA, the address the certificate names: up, and commands flow. */
    assert_int_equal(tg_redis_tls_setup(&(tg_redis_tls_t){.ca_file = ca}, err, sizeof(err)), 0);
    fx_t f = {0};
    snprintf(url, sizeof(url), "rediss://127.0.0.1:%d/1", port);
    f.r = link_to(&f, url);
    tg_redis_connect(f.r);
    RUN_UNTIL(&f, f.ups == 1);
    seen_t s;
    ask(&f, &s, 2, (const char *[]){"ECHO", "over tls"});
    assert_string_equal(s.text, "over tls");
    fx_free(&f);

    /* A name the certificate does not carry is refused. */
    assert_int_equal(tg_redis_tls_setup(&(tg_redis_tls_t){.ca_file = ca, .server_name = "other.internal"},
                                        err, sizeof(err)),
                     0);
    fx_t g = {0};
    g.r = link_to(&g, url);
    tg_redis_connect(g.r);
    RUN_UNTIL(&g, g.downs >= 1);
    assert_int_equal(g.ups, 0);
    assert_non_null(strstr(g.why, "TLS"));
    fx_free(&g);

    /* server_name set to the name it carries: up. */
    assert_int_equal(tg_redis_tls_setup(&(tg_redis_tls_t){.ca_file = ca, .server_name = "redis.internal"},
                                        err, sizeof(err)),
                     0);
    fx_t h = {0};
    h.r = link_to(&h, url);
    tg_redis_connect(h.r);
    RUN_UNTIL(&h, h.ups == 1);
    fx_free(&h);

    /* The system store does not know our CA. */
    assert_int_equal(tg_redis_tls_setup(&(tg_redis_tls_t){0}, err, sizeof(err)), 0);
    fx_t k = {0};
    k.r = link_to(&k, url);
    tg_redis_connect(k.r);
    RUN_UNTIL(&k, k.downs >= 1);
    assert_int_equal(k.ups, 0);
    assert_non_null(strstr(k.why, "certificate"));
    fx_free(&k);

    /* Files that cannot be used are reported at setup. */
    assert_int_equal(
        tg_redis_tls_setup(&(tg_redis_tls_t){.ca_file = "/nonexistent/ca.pem"}, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    assert_int_equal(tg_redis_tls_setup(&(tg_redis_tls_t){.ca_file = ca, .key = key}, err, sizeof(err)), -1);
    stop_server(pid);
    sh("rm -rf %s", dir);
}

/* --- Sentinel ---------------------------------------------------------------------------------- */

static void test_sentinel_finds_the_master(void **state) {
    char dir[] = "/tmp/tg-redis-sentinel-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int mport = free_port(), rport = free_port(), sport = free_port(), dead = free_port();
    pid_t master = start_server(mport);
    char mp[16], conf[160];
    snprintf(mp, sizeof(mp), "%d", mport);
    const char *rextra[] = {"--replicaof", "127.0.0.1", mp, NULL};
    pid_t replica = start_server_with(rport, rextra);
    wait_listening(rport);
    /* A sentinel needs a config file it may rewrite. */
    snprintf(conf, sizeof(conf), "%s/sentinel.conf", dir);
    FILE *fp = fopen(conf, "w");
    assert_non_null(fp);
    fprintf(fp, "port %d\nbind 127.0.0.1\nsentinel monitor tgm 127.0.0.1 %d 1\n", sport, mport);
    fclose(fp);
    pid_t sentinel = fork();
    assert_true(sentinel >= 0);
    if (sentinel == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", conf, "--sentinel", (char *)NULL);
        _exit(127);
    }
    wait_listening(sport);

    /* The first sentinel is not there: the second one names the master; ROLE says master. */
    fx_t f = {0};
    char url[160];
    snprintf(url, sizeof(url), "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d/tgm/3", dead, sport);
    f.r = link_to(&f, url);
    tg_redis_connect(f.r);
    RUN_UNTIL(&f, f.ups == 1);
    char at[64];
    snprintf(at, sizeof(at), "tgm at 127.0.0.1:%d", mport);
    assert_string_equal(tg_redis_target(f.r), at);
    seen_t s;
    ask(&f, &s, 3, (const char *[]){"SET", "via", "sentinel"});
    assert_string_equal(s.text, "OK");
    fx_free(&f);

    /* A master name no sentinel knows. */
    fx_t g = {0};
    snprintf(url, sizeof(url), "redis+sentinel://127.0.0.1:%d/nosuch", sport);
    g.r = link_to(&g, url);
    tg_redis_connect(g.r);
    RUN_UNTIL(&g, g.downs >= 1);
    assert_int_equal(g.ups, 0);
    assert_non_null(strstr(g.why, "no sentinel gave the address of master nosuch"));
    fx_free(&g);

    stop_server(sentinel);
    stop_server(replica);
    stop_server(master);
    sh("rm -rf %s", dir);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_rejects),
        cmocka_unit_test(test_commands_in_order_cancel_and_drop),
        cmocka_unit_test(test_absent_server_loud_once),
        cmocka_unit_test(test_url_cluster),
        cmocka_unit_test(test_auth_password_and_acl_user),
        cmocka_unit_test(test_select_and_refused_select),
        cmocka_unit_test(test_reconnects_after_restart),
        cmocka_unit_test(test_command_timeout),
        cmocka_unit_test(test_names_looked_up_on_every_connect),
        cmocka_unit_test(test_tls_checks_certificate_and_name),
        cmocka_unit_test(test_sentinel_finds_the_master),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
