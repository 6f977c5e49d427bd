/* redis_fixture.h — helpers shared by the unit tests that run against a
 * real redis-server (ledger, quota, journal, cache, response store, health
 * sync): a free loopback port, a synchronous client for checking what
 * landed, and a private redis-server started and stopped per test. Included
 * by test files only. */
#ifndef TG_TEST_REDIS_FIXTURE_H
#define TG_TEST_REDIS_FIXTURE_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

static inline int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static inline redisContext *sync_client(int port) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c == NULL || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    return c;
}

/* 1 when the server on port answers PING. */
static inline int redis_fixture_ping(int port) {
    redisContext *c = sync_client(port);
    if (c == NULL) return 0;
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* A redis-server of the test's own on 127.0.0.1:port, data in dir, nothing saved; returns
 * its pid once it answers PING (the test fails if it never does). */
static inline pid_t redis_fixture_spawn(int port, const char *dir) {
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", dir, "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !redis_fixture_ping(port); i++)
        usleep(20000);
    assert_true(redis_fixture_ping(port));
    return pid;
}

/* Stops a server redis_fixture_spawn started (also one stopped with SIGSTOP). */
static inline void redis_fixture_stop(pid_t pid) {
    kill(pid, SIGCONT);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* Runs the event loop for ms milliseconds. */
static inline void fixture_run_ms(struct event_base *base, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Runs the loop in 5 ms steps until cond holds, then asserts it; `steps` only keeps a broken build
 * from hanging. */
#define FIXTURE_RUN_UNTIL(base, steps, cond)                                                                 \
    do {                                                                                                     \
        for (int i_ = 0; i_ < (steps) && !(cond); i_++)                                                      \
            fixture_run_ms((base), 5);                                                                       \
        assert_true(cond);                                                                                   \
    } while (0)

#endif
