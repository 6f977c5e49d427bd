/* cluster_fixture.h — a real Redis Cluster on loopback ports for the unit tests that need one
 * (cluster routing, the ledger and the readers on a cluster): 3 masters, or 3 masters with a
 * replica each, made with `redis-cli --cluster create` in a temporary directory, and taken down
 * again. A test that cannot get one skips with a message (cluster_fx_make returns 0). Included
 * by test files only, after tests/unit/redis_fixture.h. */
#ifndef TG_TEST_CLUSTER_FIXTURE_H
#define TG_TEST_CLUSTER_FIXTURE_H

#include <stdlib.h>
#include <time.h>

#include "tests/unit/redis_fixture.h"

#define CLUSTER_FX_MAXN 6

typedef struct {
    char dir[64];
    int n; /* nodes: 3 masters, or 3 masters and 3 replicas */
    int port[CLUSTER_FX_MAXN];
    pid_t pid[CLUSTER_FX_MAXN]; /* 0 once a test killed it */
    char id[CLUSTER_FX_MAXN][64];
} cluster_fx_t;

/* One command on a connection of its own to the node on port. */
static inline redisReply *cluster_fx_cmd(int port, const char *fmt, ...) {
    redisContext *c = sync_client(port);
    if (c == NULL) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static inline int cluster_fx_ok(int port) {
    redisReply *r = cluster_fx_cmd(port, "CLUSTER INFO");
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") != NULL;
    if (r) freeReplyObject(r);
    return ok;
}

/* 1 when nothing listens on 127.0.0.1:port (a bind succeeds). */
static inline int cluster_fx_port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* A node's port: below the kernel's ephemeral range (32768 and up), with its cluster bus port
 * (port + 10000) too, so that no outgoing connection of this or another test holds either. */
static inline int cluster_fx_port(void) {
    static int seeded;
    if (!seeded) srandom((unsigned)getpid() ^ (unsigned)time(NULL)), seeded = 1;
    for (;;) {
        int p = 10000 + (int)(random() % 12700);
        if (cluster_fx_port_free(p) && cluster_fx_port_free(p + 10000)) return p;
    }
}

/* Starts n nodes (3: masters only; 6: a replica per master) and makes them a cluster. 1 when it
 * is up (every node says cluster_state:ok), 0 when it could not be made here (the nodes are
 * still to be freed with cluster_fx_free). */
static inline int cluster_fx_make(cluster_fx_t *f, int n) {
    memset(f, 0, sizeof(*f));
    f->n = n;
    strcpy(f->dir, "/tmp/tg-cluster-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (int i = 0; i < n; i++) {
        f->port[i] = cluster_fx_port();
        char port[16], conf[128];
        snprintf(port, sizeof(port), "%d", f->port[i]);
        snprintf(conf, sizeof(conf), "nodes-%d.conf", f->port[i]);
        if ((f->pid[i] = fork()) == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", f->dir, "--cluster-enabled", "yes", "--cluster-config-file",
                   conf, "--cluster-node-timeout", "1000", (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < n; i++)
        for (int t = 0; t < 250 && !redis_fixture_ping(f->port[i]); t++)
            usleep(20000);
    char line[512];
    int o = snprintf(line, sizeof(line), "timeout 30 redis-cli --cluster create");
    for (int i = 0; i < n; i++)
        o += snprintf(line + o, sizeof(line) - (size_t)o, " 127.0.0.1:%d", f->port[i]);
    snprintf(line + o, sizeof(line) - (size_t)o, " --cluster-replicas %d --cluster-yes >%s/create.log 2>&1",
             n > 3 ? 1 : 0, f->dir);
    int made = system(line) == 0;
    for (int t = 0; made && t < 500; t++) {
        int ok = 1;
        for (int i = 0; i < n; i++)
            ok = ok && cluster_fx_ok(f->port[i]);
        if (ok) break;
        usleep(20000);
    }
    for (int i = 0; made && i < n; i++) {
        redisReply *r = cluster_fx_cmd(f->port[i], "CLUSTER MYID");
        assert_non_null(r);
        snprintf(f->id[i], sizeof(f->id[i]), "%s", r->str);
        freeReplyObject(r);
    }
    /* A replica that never finished its first sync refuses to take over (its data counts as too old):
     * the failover tests need every replica linked to its master. */
    for (int t = 0; made && n > 3 && t < 500; t++) {
        int linked = 0;
        for (int i = 0; i < n; i++) {
            redisReply *r = cluster_fx_cmd(f->port[i], "INFO replication");
            linked += r && r->type == REDIS_REPLY_STRING && strstr(r->str, "role:slave") &&
                      strstr(r->str, "master_link_status:up") && !strstr(r->str, "master_sync_in_progress:1");
            if (r) freeReplyObject(r);
        }
        if (linked >= n - 3) break;
        usleep(20000);
    }
    /* ...and listed by CLUSTER SLOTS, which leaves out a replica whose offset the others have not heard
     * of yet: clients learn of replicas (and wait for them: gateway/ledger.c) from that list. */
    for (int t = 0; made && n > 3 && t < 500; t++) {
        int listed = 1;
        for (int i = 0; i < n && listed; i++) {
            redisReply *r = cluster_fx_cmd(f->port[i], "CLUSTER SLOTS");
            listed = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
            for (size_t e = 0; listed && e < r->elements; e++)
                listed = r->element[e]->elements >= 4;
            if (r) freeReplyObject(r);
        }
        if (listed) break;
        usleep(20000);
    }
    if (!made || !cluster_fx_ok(f->port[0])) {
        fprintf(stderr,
                "could not make a redis cluster here (redis-cli --cluster create failed): skipping the "
                "live cluster tests; what redis-cli said:\n");
        snprintf(line, sizeof(line), "tail -5 %s/create.log >&2", f->dir);
        if (system(line) != 0) fprintf(stderr, "(no output)\n");
        /* CI sets this: there a cluster that cannot be made is a failure, not a skip. */
        if (getenv("TOLLGATE_REQUIRE_CLUSTER"))
            fail_msg("TOLLGATE_REQUIRE_CLUSTER is set and no cluster could be made");
        return 0;
    }
    return 1;
}

static inline void cluster_fx_free(cluster_fx_t *f) {
    for (int i = 0; i < f->n; i++) {
        if (f->pid[i] <= 0) continue; /* killed by the test */
        kill(f->pid[i], SIGKILL);
        waitpid(f->pid[i], NULL, 0);
    }
    char line[128];
    snprintf(line, sizeof(line), "rm -rf %s", f->dir);
    assert_int_equal(system(line), 0);
}

/* The index of the node that owns slot s (by asking node 0, or any node still alive), -1 when none. */
static inline int cluster_fx_owner(const cluster_fx_t *f, unsigned s) {
    redisReply *r = NULL;
    for (int i = 0; i < f->n && r == NULL; i++)
        if (f->pid[i] > 0) r = cluster_fx_cmd(f->port[i], "CLUSTER SLOTS");
    int who = -1;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *e = r->element[i];
        if ((unsigned)e->element[0]->integer <= s && s <= (unsigned)e->element[1]->integer)
            for (int k = 0; k < f->n; k++)
                if (e->element[2]->element[1]->integer == f->port[k]) who = k;
    }
    if (r) freeReplyObject(r);
    return who;
}

/* Until the replica on a killed master's slots is promoted: 1 when every slot has a live master
 * again within ~10 s. */
static inline int cluster_fx_wait_ok(const cluster_fx_t *f) {
    for (int t = 0; t < 500; t++) {
        int ok = 1;
        for (int i = 0; i < f->n; i++)
            if (f->pid[i] > 0) ok = ok && cluster_fx_ok(f->port[i]);
        if (ok) return 1;
        usleep(20000);
    }
    return 0;
}

#endif
