/* health.h — the health of each provider/model, shared by the workers of a
 * process: latency EWMAs for the `fastest` strategy, requests in flight, a
 * retry-after deadline and a circuit breaker. The server allocates one
 * tg_health_table_t per process; each worker reads and updates it through
 * its own tg_health_t, which also keeps what stays per worker (weighted
 * round robin state, a random generator). Entries change with atomic
 * operations only (no lock on the request path); time is passed in as a
 * monotonic millisecond clock so tests need none. */
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

/* How long a thread that tg_health_allow let probe a circuit keeps the
 * probe to itself before it calls tg_health_begin: other threads are told
 * no meanwhile, so a cool-down that ends lets one attempt through, not one
 * per worker. */
#define TG_HEALTH_PROBE_LEASE_MS 100

struct tg_health_table_s;

/* One provider/model. Its address is stable for the life of the table, so
 * a request may keep it across its attempts and across reloads. Any thread
 * may read every field; only policy/health.c writes them. The circuit
 * itself (state, probe, cool-down step, deadline) is one atomic word that
 * changes by compare-and-swap; the fields below it are read for display
 * and by the strategies. */
typedef struct tg_health_entry_s {
    char *provider, *model;           /* immutable once the entry is published */
    _Atomic double ttft_ms;           /* EWMA of time to first token; valid when n_samples > 0 */
    _Atomic double tps;               /* EWMA of output tokens/s after the first token; 0 unknown */
    _Atomic int64_t last_sample_ms;   /* when ttft_ms last moved */
    _Atomic uint32_t n_samples;       /* incremented after ttft_ms moved (release) */
    _Atomic unsigned fails;           /* consecutive failures */
    _Atomic int64_t open_until_ms;    /* the last open period's end, for messages */
    _Atomic int64_t blocked_until_ms; /* honouring a provider's retry-after */
    _Atomic int64_t remote_until_ms;  /* another instance's open circuit or retry-after (tg_health_import) */
    _Atomic int inflight;
    _Atomic uint64_t circuit; /* see policy/health.c */
    _Atomic uint64_t lease;   /* which thread may probe, until when */
    struct tg_health_table_s *table;
} tg_health_entry_t;

typedef struct tg_health_table_s tg_health_table_t;
typedef struct tg_health_s tg_health_t;

/* The table the workers of a process share. NULL when out of memory.
 * Free it after every tg_health_t made on it. */
tg_health_table_t *tg_health_table_new(void);
void tg_health_table_free(tg_health_table_t *t);

/* A worker's handle on table t (tg_health_new_shared), or on a private
 * table of its own (tg_health_new: tests, a single thread). NULL when out of
 * memory. Seeds its random generator from the clock and its own address;
 * tg_health_seed makes runs repeatable. tg_health_free frees the handle,
 * and the table when it is private. */
tg_health_t *tg_health_new(void);
tg_health_t *tg_health_new_shared(tg_health_table_t *t);
void tg_health_free(tg_health_t *h);
/* Replaces the parameters of h's table (any thread; after a reload).
 * Closed circuits take the new cool-down at once, open ones when they
 * close. */
void tg_health_set_params(tg_health_t *h, const tg_health_params_t *p);
void tg_health_seed(tg_health_t *h, uint64_t seed);
/* Uniform 64 random bits from the worker's generator (xorshift64*). */
uint64_t tg_health_rand(tg_health_t *h);

/* The entry for provider/model, created on first use; NULL only when out
 * of memory or past TG_HEALTH_MAX_ENTRIES (callers then track nothing).
 * Finding an entry takes no lock; creating one takes the table's. Entries
 * are never removed: a reload that drops a provider leaves its entry
 * (requests in flight may hold it), one that keeps it keeps its state. */
#define TG_HEALTH_MAX_ENTRIES 4096
tg_health_entry_t *tg_health_get(tg_health_t *h, const char *provider, const char *model);

/* 1 when a request may be sent now: circuit closed, or due for its probe
 * (open past its cool-down, or half-open with no probe out) and the
 * calling thread holds the probe lease, which this call takes when it is
 * free (TG_HEALTH_PROBE_LEASE_MS); 0 to skip the candidate. Otherwise
 * changes nothing. */
int tg_health_allow(tg_health_entry_t *e, int64_t now_ms);
/* An attempt starts (counts in flight; takes the probe slot when due). */
void tg_health_begin(tg_health_entry_t *e, int64_t now_ms);
/* The attempt ended. ttft_ms: start to first byte of the answer (-1 when
 * none came); tokens: output tokens (0 unknown); duration_ms: start to
 * end, so now_ms - duration_ms is when it began: that tells the probe from
 * attempts sent before the circuit opened, whose failures and aborts do
 * not move a half-open circuit. Only OK outcomes feed the latency EWMAs. */
void tg_health_end(tg_health_entry_t *e, tg_outcome_t o, int64_t ttft_ms, int64_t tokens, int64_t duration_ms,
                   int64_t now_ms);
/* The provider asked for no traffic before until_ms (retry-after). */
void tg_health_retry_after(tg_health_entry_t *e, int64_t until_ms);

/* Health across instances (gateway/healthsync.c carries it through Redis). What an instance
 * learned itself about a provider/model and others should obey: until when its circuit is
 * open (0: not open, or half-open: the probe is this instance's own business) and until when
 * the provider asked for no traffic (0: it did not). Times on the caller's clock. */
typedef struct {
    int64_t open_until_ms, retry_until_ms;
} tg_health_mark_t;
/* Fills *m with e's own state at now_ms; 1 when there is something to tell (a deadline after
 * now_ms), else 0. Only what this process learned: a mark imported from another instance is
 * never exported again, so two instances cannot keep each other's state alive by echoing it. */
int tg_health_export(const tg_health_entry_t *e, int64_t now_ms, tg_health_mark_t *m);
/* The merge rule for a mark from another instance: the entry is kept out of requests until the
 * later of the mark's two deadlines, unless a later remote deadline is already there (remote
 * deadlines only move forward, so marks arriving in any order give the same result). The
 * local circuit, failure count and retry-after are left alone: a local success closes the
 * local circuit but does not lift a remote block, and a remote block ends at its deadline,
 * never earlier. tg_health_allow answers 0 until then. */
void tg_health_import(tg_health_entry_t *e, const tg_health_mark_t *m);
/* The later of the entry's local and remote deadlines that keep it out of requests (open
 * circuit, retry-after, remote mark); 0 when none is after now_ms. */
int64_t tg_health_blocked_until(const tg_health_entry_t *e, int64_t now_ms);

/* The entries of h's table, for walking it: their number now, and entry i < that number
 * (entries only ever get added, at the end). */
size_t tg_health_count(const tg_health_t *h);
tg_health_entry_t *tg_health_entry(tg_health_t *h, size_t i);
tg_circuit_t tg_health_state(const tg_health_entry_t *e);
/* Attempts begun and not yet ended, by every worker; 0 for NULL. */
int tg_health_inflight(const tg_health_entry_t *e);

/* Current-weight vector of route `route` for smooth weighted round robin,
 * n zeros when first seen or when `sig` (a digest of the route's candidate
 * list) changed since. Per worker: h's own, not the table's. NULL when out
 * of memory. */
int64_t *tg_health_swrr(tg_health_t *h, const char *route, size_t n, uint64_t sig);

/* Prometheus text for /metrics over the tables of hs (each table once,
 * however many handles share it), malloc'd (the caller frees):
 * tollgate_circuit_state{provider,model} (0 closed, 1 open, 2 half-open;
 * the worst over tables: open, then half-open) and
 * tollgate_upstream_inflight{provider,model} (the sum). May run on any
 * thread while the workers run. NULL when out of memory. */
char *tg_health_render(tg_health_t *const *hs, size_t n);

#endif
