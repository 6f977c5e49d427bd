/* request_int.h — what the three files of the request module share: the
 * request object (tg_request_t, owned by its pool and freed in on_finish) and
 * the phases one file calls in another. request.c strings the phases
 * together; request_store.c holds the Responses API's conversation state
 * (previous_response_id, the stored answer, GET and DELETE of stored
 * responses); request_cache.c the response cache's lookup and store. Not
 * for other modules: they include gateway/request.h. */
#ifndef TG_REQUEST_INT_H
#define TG_REQUEST_INT_H

#include "gateway/request.h"
#include "core/clock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>

#include <jansson.h>

#include "gateway/admin.h"
#include "gateway/cache.h"
#include "gateway/endpoints.h"
#include "core/config.h"
#include "gateway/ledger.h"
#include "core/json.h"
#include "core/log.h"
#include "core/money.h"
#include "gateway/metrics.h"
#include "core/pool.h"
#include "gateway/quota.h"
#include "gateway/respstore.h"
#include "core/scan.h"
#include "core/sse.h"
#include "gateway/upstream.h"
#include "policy/health.h"
#include "policy/route.h"
#include "providers/client.h"
#include "providers/provider.h"
#include "providers/responses.h"
#include "providers/responses_fast.h"
#include "providers/translate.h"

typedef enum { FAIL_HTTP, FAIL_CONNECT, FAIL_TIMEOUT, FAIL_OTHER } fail_kind_t;

typedef struct {
    tg_pool_t *pool;
    tg_worker_t *w;
    tg_http_req_t *http; /* NULL once the connection is gone */
    tg_config_t *cfg;    /* one reference, dropped in request_free */
    char id[17];
    int64_t t0_us, ts_ms, ttfb_us;
    const tg_key_t *key;
    char *body;
    size_t body_len;
    tg_scan_req_t scan;
    tg_route_result_t route;
    size_t next; /* next candidate to try */
    unsigned attempts;
    const tg_candidate_t *cur;
    tg_call_t call;
    tg_upcall_t *up;
    int up_status;
    int stream; /* this attempt relays SSE (2xx answer to a stream request) */
    char *rbuf; /* malloc'd: answer or error body */
    size_t rlen, rcap;
    int rbuf_over;
    tg_sse_parser_t sse;
    int sse_live;
    tg_usage_t usage;
    int started;    /* bytes of the response have been queued for the client */
    int done_seen;  /* the provider's end marker arrived */
    int want_pause; /* the client's buffer is above high-water */
    int paused;
    char stream_err[512];
    int status; /* what the client got */
    fail_kind_t last_fail;
    int all_connect; /* every failure so far was a connect failure */
    char retry_after[32];
    /* "deepseek/deepseek-flash: HTTP 500 (...); ..." — ALOG_MAX bytes from the
     * pool at the first failed attempt (most requests never have one). */
    char *alog;
    size_t alog_len;
    const char **extra;
    size_t n_extra;
    tg_client_dialect_t client; /* the API the client called: errors and stream ends in its shape */
    tg_health_entry_t *he;      /* health of the attempt in flight; NULL when none is open */
    int64_t att_start_us, att_ttft_us;
    unsigned n_refused; /* candidates whose dialect could not build this request */
    int billable; /* the last attempt reached a provider that may bill it (not an HTTP error, not a connect
                     failure) */
    tg_quota_check_t *quota; /* budget/rate check waiting for Redis; NULL when none */
    int quota_hold;          /* the check may have left a hold that only a record or a release frees */
    tg_admin_kind_t admin;   /* an admin endpoint: no provider call */
    tg_admin_t *admin_state; /* its pending Redis reads (in the pool) */
    tg_kind_t kind;          /* chat, embeddings or count_tokens (never billed) */
    /* An API that keeps conversations (tg_client_keeps_state). */
    tg_rs_prep_t rsp;         /* the request and its Chat form (src NULL: not this API); rsp.req,
                                 the parsed request, may stay NULL (the fast path needs no DOM) */
    json_t *rs_prev;          /* items of the response previous_response_id names; NULL when none */
    tg_respstore_op_t *rs_op; /* a response store command in flight */
    char rs_method;           /* a stored object's endpoint: 'G' GET, 'D' DELETE; 0 none */
    const char *rs_item;      /* its id */
    /* The answer held while its store write is acknowledged. */
    const char **held_h;
    size_t held_n;
    const char *held_out;
    size_t held_len;
    /* The response cache (gateway/cache.c). */
    const tg_cache_conf_t *cache_conf; /* NULL: off for this request */
    char cache_digest[TG_CACHE_DIGEST_HEX];
    tg_cache_op_t *cache_op; /* the lookup in flight */
    int cache_hit;           /* answered from the cache: no attempt, cost 0 */
    int64_t cache_saved;     /* what the stored answer would cost from its provider */
    char *cap;               /* malloc'd: the stream's events as the client got them, to store */
    size_t cap_len, cap_cap;
    int cap_on; /* capture the stream (caching is on, the lookup missed) */
    char *ev;   /* malloc'd: one multi-line event formatted for the client, reused (emit_event) */
    size_t ev_cap;
} tg_request_t;

/* Defined in gateway/request.c: the phases and helpers the other two files call. */
void tg_request_respond_json(tg_http_req_t *h, int status, const char *const *hdrs, size_t n,
                             const char *body, size_t len);
void tg_request_send_error(tg_http_req_t *h, tg_client_dialect_t client, int status, const char *type,
                           const char *code, const char *msg);
/* The body was scanned (r->scan): route it, then check quotas. */
void tg_request_body_scanned(tg_request_t *r);
/* The next candidate, or the final error when none is left. */
void tg_request_attempt_next(tg_request_t *r);
/* The x-tollgate-* headers of an answer into h (at most cap); cost NULL: no cost header. */
size_t tg_request_headers(tg_request_t *r, const char **h, size_t cap, const char *cost);
void tg_request_start_stream(tg_request_t *r);
int64_t tg_request_cost_micro(const tg_request_t *r);
const char *tg_request_usd_text(tg_pool_t *pool, int64_t micro);
const char *tg_request_usage_json(tg_pool_t *pool, const tg_usage_t *u);

/* Defined in gateway/request_store.c: the Responses API's conversation state. */
/* Stores the finished Response before the client's answer ends: 1 when the write is in flight
 * (the answer ends when Redis acknowledges it), 0 when the caller ends it now. */
int tg_request_store_answer(tg_request_t *r);
/* Ends the client's answer held while it was stored. r may be gone afterwards. */
void tg_request_answer_held(tg_request_t *r);
/* The body phase of a Responses request: parse, resolve previous_response_id, translate once. */
void tg_request_rs_body(tg_request_t *r);
/* GET or DELETE of a stored response. */
void tg_request_serve_stored(tg_request_t *r);

/* Defined in gateway/request_cache.c: the response cache's hooks. */
/* After quotas: a cache lookup when the key or rule turned it on, else the attempts. */
void tg_request_cache_or_attempt(tg_request_t *r);
/* At on_finish: stores a clean, whole answer the client stayed for. */
void tg_request_cache_store(tg_request_t *r, int aborted);

#endif
