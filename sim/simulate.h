/* simulate.h — simulated LLM providers (OpenAI, DeepSeek, Qwen and Anthropic
 * dialects) with deterministic token counts, latency knobs and injected
 * faults, for offline use, the test suites and `make bench`. The wire
 * behaviour (headers, endpoints, counting rules) is documented at the top of
 * sim/simulate.c. */
#ifndef TG_SIMULATE_H
#define TG_SIMULATE_H

#include <stddef.h>

#include "gateway/http1.h"

/* `tollgate simulate [--host H] [--port N] [--ttft-ms N] [--tps N]
 *  [--fault PROVIDER:STATUS[:PERCENT]]...`. argv[0] is the command name and
 * is skipped. Runs until SIGINT/SIGTERM; returns the exit code (0 ok, 1
 * cannot listen, 2 usage error). */
int tg_simulate_main(int argc, char **argv);

/* Starts the simulator on a thread of its own (`tollgate serve` when a
 * provider has no key). Returns 0, or -1 with a message in err. One
 * simulator thread per process. */
int tg_simulate_start_thread(const char *host, int port, char *err, size_t errlen);
/* Stops and joins that thread; a no-op when none runs. */
void tg_simulate_stop_thread(void);

/* --- The simulator without sockets: for unit tests. --- */
typedef struct tg_sim_s tg_sim_t;

tg_sim_t *tg_sim_new(void);
void tg_sim_free(tg_sim_t *s);
/* Default time to first token and tokens/s (the --ttft-ms and --tps flags). */
void tg_sim_set_timing(tg_sim_t *s, long ttft_ms, long tps);
/* A --fault spec "PROVIDER:STATUS[:PERCENT]". Returns 0 or -1 with err. */
int tg_sim_set_fault(tg_sim_t *s, const char *spec, char *err, size_t errlen);

/* One answer as the wire carries it. body is malloc'd (caller frees),
 * NUL-terminated; for a stream it is the whole SSE text. */
typedef struct {
    int status;
    const char *content_type; /* static string */
    long retry_after;         /* the retry-after header, -1 when absent */
    char *body;
    size_t len;
} tg_sim_answer_t;

/* Answers one request exactly as the server would, except that time knobs,
 * resets and stalls are ignored (the whole answer is produced at once).
 * Stats and request tracking are updated as for a live request. Returns 0,
 * or -1 when out of memory. */
int tg_sim_render(tg_sim_t *s, const char *method, const char *path, const tg_http_header_t *hdrs,
                  size_t nhdrs, const char *body, size_t len, tg_sim_answer_t *out);

#endif
