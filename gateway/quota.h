/* quota.h — per-key budgets (budget_usd_month) and rate limits (rpm, tpm), checked before the
 * upstream call in one Redis round trip (a Lua script on the worker's quota link, gateway/ledger.h), shared
 * by every gateway instance on that Redis. The check also reserves the request's worst-case cost and
 * tokens (a hold), which the ledger's record of the request releases as it adds the real figures, so
 * concurrent requests cannot together pass a budget or tpm. Without Redis a per-worker local
 * approximation decides (docs/operations.md). Used only from a worker's loop. */
#ifndef TG_QUOTA_H
#define TG_QUOTA_H

#include <stdint.h>

#include "core/config.h"
#include "core/scan.h"
#include "gateway/ledger.h"
#include "core/pool.h"

struct event_base;

typedef enum { TG_QUOTA_OK = 0, TG_QUOTA_RPM = 1, TG_QUOTA_TPM = 2, TG_QUOTA_BUDGET = 3 } tg_quota_verdict_t;

typedef struct {
    tg_quota_verdict_t verdict;
    int status;        /* 0 when allowed, else 402 (budget) or 429 (rpm, tpm) */
    int retry_after_s; /* when refused: seconds until a retry can pass (>= 1) */
    int degraded;      /* decided without Redis, by this worker's local approximation */
    char message[512]; /* for the client, when refused */
} tg_quota_result_t;

/* What a request may cost at worst, reserved by the check until its record settles it: micro-USD
 * (for a budget) and tokens (for tpm); ttl_ms: how long the hold lasts when no record ever comes
 * (an instance that crashed mid-request). */
typedef struct {
    int64_t micro, tokens, ttl_ms;
} tg_quota_hold_t;

typedef void (*tg_quota_fn)(const tg_quota_result_t *res, void *ud);
typedef struct tg_quota_check_s tg_quota_check_t;

/* 1 when the key has a budget, rpm or tpm (else no check and no round trip). */
int tg_quota_applies(const tg_key_t *key);
/* 1 when a check for the key may leave a hold (it has a budget or tpm). */
int tg_quota_holds(const tg_key_t *key);

/* The worst case of a request (scan) over the candidates it may try (provider/model pairs of
 * cands, n of them), priced at ts_ms: the prompt estimate plus max_tokens (or, without it, the
 * provider's default_max_tokens, the model's max_output, else default_output_tokens) at the
 * dearest candidate; embeddings have no output. ttl: the request's longest possible life. */
void tg_quota_worst_case(const tg_config_t *cfg, const tg_candidate_t *cands, size_t n,
                         const tg_scan_req_t *scan, tg_kind_t kind, int64_t ts_ms, tg_quota_hold_t *out);

/* Checks `key` for a request starting at now_ms (unix ms) and, when it passes, holds `hold`
 * (NULL: nothing) in Redis under request_id until the ledger records the request or
 * tg_quota_release runs; a hold that would pass the budget or tpm refuses it. Returns 0 when decided at once
 * (res filled, fn never runs), or 1 when the answer is pending: fn runs once, later, from
 * the loop, unless tg_quota_cancel came first. The check lives in `pool` (the request's);
 * `workers` is the number of workers sharing the local approximation's limits. */
int tg_quota_check(tg_ledger_t *l, struct event_base *base, tg_pool_t *pool, const tg_key_t *key,
                   const char *request_id, int64_t now_ms, const tg_quota_hold_t *hold, int workers,
                   tg_quota_fn fn, void *ud, tg_quota_check_t **pending, tg_quota_result_t *res);
/* The request is going away: fn will not run. */
void tg_quota_cancel(tg_quota_check_t *c);

/* The request ends with no ledger record (refused later, cancelled, never sent upstream): give
 * back its hold, if it has one. One command on the quota link, no answer awaited; a hold that
 * is not there (never made, already settled) is left alone, so calling it is always safe. */
void tg_quota_release(tg_ledger_t *l, const tg_key_t *key, const char *request_id);

/* A finished request's spend and tokens, for the local approximation used while Redis is
 * away (the ledger carries the same figures to Redis). */
void tg_quota_note(const tg_key_t *key, int64_t ts_ms, int64_t cost_micro_usd, int64_t tokens);

#endif
