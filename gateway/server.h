/* server.h — workers: one thread per core, each with its own event loop,
 * SO_REUSEPORT listener, HTTP server, libcurl multi handle and Redis
 * connection. The main thread only handles signals (stop, reload). */
#ifndef TG_SERVER_H
#define TG_SERVER_H

#include <stdint.h>

struct event_base;
struct tg_http_server_s;
struct tg_upstream_s;
struct tg_ledger_s;
struct tg_health_s;

typedef struct tg_worker_s {
    int index;
    struct event_base *base;
    struct tg_http_server_s *http;
    struct tg_upstream_s *up;
    struct tg_ledger_s *ledger;
    struct tg_health_s *health; /* provider latency and circuit state, this worker's view */
    uint64_t rng;               /* request ids */
    int draining;               /* stop was asked: answer with Connection: close */
} tg_worker_t;

typedef struct {
    const char *config_path;
    const char *listen; /* overrides the config's listen when set */
    const char *redis;  /* overrides the config's redis when set ("" = off) */
    int workers;        /* overrides when > 0 */
} tg_server_opts_t;

/* Prometheus lines for the workers' circuit state, in-flight calls and
 * ledger backlog (malloc'd; the caller frees). */
char *tg_server_metrics(void);

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int tg_server_run(const tg_server_opts_t *o);

#endif
