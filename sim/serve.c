/* serve.c — the simulator on a socket: `tollgate simulate` (its options, an
 * event loop on the main thread, SIGINT/SIGTERM to stop) and the embedded
 * simulator that `tollgate serve` starts on a thread of its own when a
 * provider has no key. Both listen with our HTTP/1.1 server (gateway/http1.h)
 * and hand every request to sim_handler (sim/simulate.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "sim/simulate_int.h"

/* tg_http_listen() sets SO_REUSEPORT, so a second simulator on a busy port
 * would silently take half the requests and half the stats. A bind without
 * it fails while anyone holds the port: probe that first. */
static int port_free(const char *host, int port) {
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    if (port == 0 || getaddrinfo(host, ps, &hints, &ai) != 0) return 1; /* let tg_http_listen report it */
    int fd = socket(ai->ai_family, SOCK_STREAM, 0), one = 1, ok = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE) ok = 0;
        close(fd);
    }
    freeaddrinfo(ai);
    if (!ok) errno = EADDRINUSE;
    return ok;
}

static int sim_listen(tg_sim_t *s, struct event_base *base, const char *host, int port, int *bound, char *err,
                      size_t errlen) {
    int fd = port_free(host, port) ? tg_http_listen(host, port, 1024) : -1;
    if (fd < 0) {
        snprintf(err, errlen, "simulator cannot listen on %s:%d: %s", host, port, strerror(errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *bound = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    tg_http_limits_t lim;
    tg_http_limits_default(&lim);
    lim.max_body_bytes = (size_t)64 << 20; /* the gateway enforces its own, smaller limit */
    s->base = base;
    s->server = tg_http_server_new(base, fd, &lim, &sim_handler, s);
    if (s->server == NULL) {
        close(fd);
        snprintf(err, errlen, "simulator cannot start its HTTP server");
        return -1;
    }
    return 0;
}

static void sim_shutdown(tg_sim_t *s) {
    /* Aborts open requests: their on_finish runs here and releases them. */
    if (s->server) tg_http_server_free(s->server);
    s->server = NULL;
    sim_h2_free(s);
}

/* The h2c listener (sim/h2.c) on a port of its own: HTTP/2 with prior
 * knowledge, for gateways with `http2: true` on an http:// provider. */
static int sim_listen_h2c(tg_sim_t *s, struct event_base *base, const char *host, int port, int *bound,
                          char *err, size_t errlen) {
    int fd = port_free(host, port) ? tg_http_listen(host, port, 4096) : -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (fd < 0 || sim_h2_listen(s, base, fd) != 0) {
        snprintf(err, errlen, "simulator cannot listen for h2c on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    *bound = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    event_base_loopbreak(arg);
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: tollgate simulate [--host H] [--port N] [--h2c-port N] [--ttft-ms N] [--tps N] "
        "[--fault PROVIDER:STATUS[:PERCENT]]...\n"
        "  defaults: --host 127.0.0.1 --port %d --ttft-ms 0 --tps 0 (0 = as fast as possible)\n"
        "  --h2c-port: also serve HTTP/2 in clear text (prior knowledge) on that port\n"
        "  routes: POST /{provider}/v1/chat/completions, /v1/responses, /v1/embeddings, /v1/messages,\n"
        "  /v1/messages/count_tokens; GET /{provider}/v1/models\n"
        "  per-request headers: x-sim-output-tokens, x-sim-cached-tokens, x-sim-reasoning-tokens,\n"
        "  x-sim-tool-call, x-sim-ttft-ms, x-sim-tps, x-sim-status, x-sim-retry-after, x-sim-reset-after,\n"
        "  x-sim-stall-after, x-sim-error-after, x-sim-usage-on-finish, x-sim-no-usage, x-sim-logprobs,\n"
        "  x-sim-id\n"
        "  control: GET /_sim/stats, GET /_sim/requests/ID, POST /_sim/reset, POST /_sim/config\n",
        SIM_DEFAULT_PORT);
}

/* "--name value" or "--name=value": 1 with *val set, 0 not this option, -1 no value. */
static int opt(int argc, char **argv, int *i, const char *name, const char **val) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

static int num_arg(const char *v, long lo, long hi, long *out) {
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

/* 0 parsed, 1 help shown, 2 usage error. */
static int parse_args(tg_sim_t *s, int argc, char **argv, const char **host, long *port, long *h2c_port) {
    long ttft = 0, tps = 0;
    char err[256];
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        } else if ((r = opt(argc, argv, &i, "--host", &v)) != 0) {
            if (r > 0) *host = v;
        } else if ((r = opt(argc, argv, &i, "--port", &v)) != 0) {
            if (r > 0 && num_arg(v, 0, 65535, port)) r = -1;
        } else if ((r = opt(argc, argv, &i, "--h2c-port", &v)) != 0) {
            if (r > 0 && num_arg(v, 0, 65535, h2c_port)) r = -1;
        } else if ((r = opt(argc, argv, &i, "--ttft-ms", &v)) != 0) {
            if (r > 0 && num_arg(v, 0, 3600000, &ttft)) r = -1;
        } else if ((r = opt(argc, argv, &i, "--tps", &v)) != 0) {
            if (r > 0 && num_arg(v, 0, 1000000, &tps)) r = -1;
        } else if ((r = opt(argc, argv, &i, "--fault", &v)) != 0) {
            if (r > 0 && tg_sim_set_fault(s, v, err, sizeof(err))) {
                fprintf(stderr, "tollgate simulate: %s\n", err);
                return 2;
            }
        } else {
            r = -1;
        }
        if (r < 0) {
            fprintf(stderr, "tollgate simulate: bad or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    tg_sim_set_timing(s, ttft, tps);
    return 0;
}

int tg_simulate_main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = SIM_DEFAULT_PORT, h2c_port = -1;
    tg_sim_t *s = tg_sim_new();
    if (s == NULL) return 1;
    int rc = parse_args(s, argc, argv, &host, &port, &h2c_port);
    if (rc) {
        tg_sim_free(s);
        return rc == 1 ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    char err[256];
    int bound = 0, h2c_bound = -1;
    if (base == NULL || sim_listen(s, base, host, (int)port, &bound, err, sizeof(err)) ||
        (h2c_port >= 0 && sim_listen_h2c(s, base, host, (int)h2c_port, &h2c_bound, err, sizeof(err)))) {
        fprintf(stderr, "tollgate simulate: %s\n", base ? err : "cannot create an event loop");
        sim_shutdown(s);
        if (base) event_base_free(base);
        tg_sim_free(s);
        return 1;
    }
    struct event *sint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sint, NULL);
    event_add(sterm, NULL);
    printf("tollgate simulate listening on http://%s:%d\n", host, bound);
    if (h2c_bound >= 0) printf("tollgate simulate listening for h2c on http://%s:%d\n", host, h2c_bound);
    fflush(stdout);
    event_base_dispatch(base);
    sim_shutdown(s);
    event_free(sint);
    event_free(sterm);
    event_base_free(base);
    tg_sim_free(s);
    return 0;
}

/* The embedded simulator: one thread, woken for shutdown through a pipe so
 * the loop needs no libevent thread support. */
static struct {
    pthread_t th;
    tg_sim_t *sim;
    struct event_base *base;
    struct event *wake;
    int fds[2];
    int running;
} sim_thread = {.fds = {-1, -1}};

static void on_wake(evutil_socket_t fd, short what, void *arg) {
    event_base_loopbreak(arg);
}

static void *thread_main(void *arg) {
    event_base_dispatch(arg);
    return NULL;
}

static void thread_cleanup(void) {
    if (sim_thread.sim) sim_shutdown(sim_thread.sim);
    if (sim_thread.wake) event_free(sim_thread.wake);
    if (sim_thread.base) event_base_free(sim_thread.base);
    tg_sim_free(sim_thread.sim);
    for (int i = 0; i < 2; i++)
        if (sim_thread.fds[i] >= 0) close(sim_thread.fds[i]);
    sim_thread.sim = NULL;
    sim_thread.base = NULL;
    sim_thread.wake = NULL;
    sim_thread.fds[0] = sim_thread.fds[1] = -1;
    sim_thread.running = 0;
}

int tg_simulate_start_thread(const char *host, int port, char *err, size_t errlen) {
    if (sim_thread.running) {
        snprintf(err, errlen, "the simulator thread already runs");
        return -1;
    }
    int bound = 0;
    sim_thread.sim = tg_sim_new();
    sim_thread.base = event_base_new();
    if (sim_thread.sim == NULL || sim_thread.base == NULL || pipe(sim_thread.fds) != 0) {
        snprintf(err, errlen, "simulator: out of resources");
        thread_cleanup();
        return -1;
    }
    if (sim_listen(sim_thread.sim, sim_thread.base, host, port, &bound, err, errlen)) {
        thread_cleanup();
        return -1;
    }
    sim_thread.wake = event_new(sim_thread.base, sim_thread.fds[0], EV_READ, on_wake, sim_thread.base);
    if (sim_thread.wake == NULL || event_add(sim_thread.wake, NULL) != 0 ||
        pthread_create(&sim_thread.th, NULL, thread_main, sim_thread.base) != 0) {
        snprintf(err, errlen, "simulator: cannot start its thread");
        thread_cleanup();
        return -1;
    }
    sim_thread.running = 1;
    tg_info("simulated providers listening on http://%s:%d", host, bound);
    return 0;
}

void tg_simulate_stop_thread(void) {
    if (!sim_thread.running) return;
    ssize_t w;
    do
        w = write(sim_thread.fds[1], "x", 1);
    while (w < 0 && errno == EINTR);
    pthread_join(sim_thread.th, NULL);
    thread_cleanup();
}
