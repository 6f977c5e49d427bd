/* health.h — per-worker view of each provider/model: latency EWMAs for the
 * `fastest` strategy, requests in flight, and a circuit breaker. One
 * tg_health_t per worker thread, used only by that thread (no locks); time
 * is passed in as a monotonic millisecond clock so tests need none. */
#ifndef TG_HEALTH_H
#define TG_HEALTH_H

#include <stddef.h>
#include <stdint.h>

typedef enum { TG_CIRCUIT_CLOSED = 0, TG_CIRCUIT_OPEN = 1, TG_CIRCUIT_HALF_OPEN = 2 } tg_circuit_t;

/* How an attempt ended, as far as the provider's health goes:
 * OK    an answer came (2xx, or a 4xx that is the client's fault);
 * FAIL  connect error, timeout, 429, 5xx/529, a stream cut before its end;
 * ABORT the client went away first: says nothing about the provider. */
typedef enum { TG_OUTCOME_OK, TG_OUTCOME_FAIL, TG_OUTCOME_ABORT } tg_outcome_t;

typedef struct {
    unsigned fail_threshold; /* consecutive failures that open the circuit (5) */
    int64_t cooldown_ms;     /* first open period (10 s) */
    int64_t max_cooldown_ms; /* doubling stops here (60 s) */
    double alpha;            /* EWMA weight of a new sample (0.3) */
} tg_health_params_t;

/* One provider/model. Its address is stable for the life of the
 * tg_health_t, so a request may keep it across its attempts. The owning
 * worker reads every field; other threads (metrics) only the atomics. */
typedef struct tg_health_entry_s {
    char *provider, *model;
    double ttft_ms;         /* EWMA of time to first token; valid when n_samples > 0 */
    double tps;             /* EWMA of output tokens/s after the first token; 0 unknown */
    int64_t last_sample_ms; /* when ttft_ms last moved */
    uint32_t n_samples;
    unsigned fails;           /* consecutive failures */
    int64_t open_until_ms;    /* OPEN: no traffic before this */
    int64_t cooldown_ms;      /* the current open period */
    int64_t blocked_until_ms; /* honouring a provider's retry-after */
    int probe_out;            /* HALF_OPEN: the one probe is in flight */
    const tg_health_params_t *params;
    _Atomic int state; /* tg_circuit_t */
    _Atomic int inflight;
} tg_health_entry_t;

typedef struct tg_health_s tg_health_t;

/* NULL when out of memory. Seeds its random generator from the clock and
 * its own address; tg_health_seed makes runs repeatable. */
tg_health_t *tg_health_new(void);
void tg_health_free(tg_health_t *h);
/* Replaces the parameters (on the owning thread: after a reload). Closed
 * circuits take the new cool-down at once, open ones when they close. */
void tg_health_set_params(tg_health_t *h, const tg_health_params_t *p);
void tg_health_seed(tg_health_t *h, uint64_t seed);
/* Uniform 64 random bits from the worker's generator (xorshift64*). */
uint64_t tg_health_rand(tg_health_t *h);

/* The entry for provider/model, created on first use; NULL only when out
 * of memory or past TG_HEALTH_MAX_ENTRIES (callers then track nothing). */
#define TG_HEALTH_MAX_ENTRIES 4096
tg_health_entry_t *tg_health_get(tg_health_t *h, const char *provider, const char *model);

/* 1 when a request may be sent now: circuit closed, or open past its
 * cool-down (the caller's attempt will be the probe), or half-open with no
 * probe out; 0 to skip the candidate. Changes nothing. */
int tg_health_allow(const tg_health_entry_t *e, int64_t now_ms);
/* An attempt starts (counts in flight; takes the probe slot when due). */
void tg_health_begin(tg_health_entry_t *e, int64_t now_ms);
/* The attempt ended. ttft_ms: start to first byte of the answer (-1 when
 * none came); tokens: output tokens (0 unknown); duration_ms: start to
 * end. Only OK outcomes feed the latency EWMAs. */
void tg_health_end(tg_health_entry_t *e, tg_outcome_t o, int64_t ttft_ms, int64_t tokens, int64_t duration_ms,
                   int64_t now_ms);
/* The provider asked for no traffic before until_ms (retry-after). */
void tg_health_retry_after(tg_health_entry_t *e, int64_t until_ms);
tg_circuit_t tg_health_state(const tg_health_entry_t *e);
/* Attempts begun and not yet ended; 0 for NULL. */
int tg_health_inflight(const tg_health_entry_t *e);

/* Current-weight vector of route `route` for smooth weighted round robin,
 * n zeros when first seen or when `sig` (a digest of the route's candidate
 * list) changed since. NULL when out of memory. */
int64_t *tg_health_swrr(tg_health_t *h, const char *route, size_t n, uint64_t sig);

/* Prometheus text for /metrics over the workers' health tables, malloc'd
 * (the caller frees): tollgate_circuit_state{provider,model} (0 closed,
 * 1 open, 2 half-open; the worst over workers: open, then half-open) and
 * tollgate_upstream_inflight{provider,model} (the sum). May run on any
 * thread while the workers run. NULL when out of memory. */
char *tg_health_render(tg_health_t *const *hs, size_t n);

#endif
