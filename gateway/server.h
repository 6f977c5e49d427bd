/* server.h — workers: one thread per core, each with its own event loop,
 * SO_REUSEPORT listener, HTTP server, libcurl multi handle and Redis
 * connection. The main thread only handles signals (stop, reload). */
#ifndef TG_SERVER_H
#define TG_SERVER_H

typedef struct {
    const char *config_path;
    const char *listen; /* overrides the config's listen when set */
    const char *redis;  /* overrides the config's redis when set ("" = off) */
    int workers;        /* overrides when > 0 */
} tg_server_opts_t;

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int tg_server_run(const tg_server_opts_t *o);

#endif
