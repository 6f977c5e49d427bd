/* route.h — picks the candidates for a request from the config snapshot:
 * `provider/model` directly, an alias, a route by name, or the first rule
 * whose match keys all hold; then applies every `require:` constraint that
 * binds the request, drops candidates whose circuit is open, and orders the
 * rest by the route's strategy. Also explains that decision as JSON. */
#ifndef TG_ROUTE_H
#define TG_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/header.h"
#include "core/pool.h"
#include "core/scan.h"
#include "policy/health.h"
#include "policy/lang.h"

typedef struct {
    const char *model;   /* what the client asked for (decoded) */
    const tg_key_t *key; /* the authenticated gateway key; NULL in explain without a key */
    const tg_scan_req_t *scan;
    tg_header_source_t headers; /* for `header` matches; an empty source matches none */
    int64_t ts_ms;              /* request start, unix ms (UTC windows, prices) */
    tg_kind_t kind;             /* chat (the default), embeddings or count_tokens: which models may serve */
} tg_route_ctx_t;

/* What the policy engine uses beyond the request. A separate struct so that
 * callers initialising tg_route_ctx_t positionally keep compiling. */
typedef struct {
    tg_health_t *health; /* the worker's; NULL: no circuit or latency data */
    int64_t now_ms;      /* the clock of every tg_health_* call on health
                            (monotonic ms); 0 = use ctx->ts_ms */
} tg_route_opts_t;

typedef struct {
    const char *route;           /* rule name, or "direct" */
    const tg_candidate_t *cands; /* in the order to try (pool copies) */
    size_t n;
    char err[512]; /* why there is no candidate */
    /* Fields below are new in the policy engine. */
    int status;                 /* 0 ok; on failure the HTTP status to answer:
                                   404 unknown model, 403 the key may not use the provider/model
                                   it named, 400 no candidate serves this kind of request (a chat
                                   model asked for embeddings), 503 nothing allowed, priced and
                                   healthy */
    tg_health_entry_t **health; /* health[i] belongs to cands[i]; NULL without opts->health */
    const tg_route_t *rule;     /* the matched rule or named route; NULL for direct */
    tg_strategy_t strategy;
    tg_lang_t lang;        /* detected only when a rule asked; else TG_LANG_OTHER */
    int64_t prompt_tokens; /* estimated, when a rule or the strategy needed it; else -1 */
} tg_route_result_t;

/* 0 with at least one candidate, or -1 with status and err. Everything
 * allocated comes from pool. opts may be NULL. */
int tg_route_pick_opts(const tg_config_t *c, const tg_route_ctx_t *ctx, const tg_route_opts_t *opts,
                       tg_pool_t *pool, tg_route_result_t *out);

/* Whether `key` may be served by candidate cd when it asks for route
 * `selected` by name (NULL: cd named directly, or through an alias), by
 * the same require: rules the engine applies to a request: the selected
 * route's own, and every tenant rule that binds the key. Price and circuit
 * are not looked at. GET /v1/models lists what this allows. */
int tg_route_permits(const tg_config_t *c, const tg_key_t *key, const tg_route_t *selected,
                     const tg_candidate_t *cd, int64_t ts_ms);

/* What `tollgate explain` prints. */
typedef struct {
    const tg_candidate_t *cand;
    int kept;           /* in the result */
    int order;          /* 1-based position in the result; 0 when dropped */
    const char *why;    /* why it was kept or dropped */
    int64_t cost_micro; /* estimated cost of this request on it, micro-USD; -1 no price */
    double score_ms;    /* latency score (strategy.h); optimistic default when unmeasured */
    int score_known;
} tg_route_explain_cand_t;

typedef struct {
    const tg_route_t *rule;
    const char *why; /* NULL when it matched, else the first key that did not hold */
} tg_route_explain_rule_t;

typedef struct {
    const char *resolved;           /* the model after alias resolution */
    const char *alias;              /* the alias used, or NULL */
    const char *how;                /* "route" (named), "rule" (matched), "direct" */
    tg_route_explain_rule_t *rules; /* rules tried in order, the matched one last */
    size_t n_rules;
    const char **constraints; /* every require: that bound the request, with its source */
    size_t n_constraints;
    tg_route_explain_cand_t *cands; /* kept ones in result order, then dropped ones as listed */
    size_t n_cands;
    int64_t output_tokens;
} tg_route_explain_t;

/* tg_route_pick_opts, also filling ex (from pool). */
int tg_route_pick_explain(const tg_config_t *c, const tg_route_ctx_t *ctx, const tg_route_opts_t *opts,
                          tg_pool_t *pool, tg_route_result_t *out, tg_route_explain_t *ex);

/* The decision as JSON text (malloc'd, the caller frees): request facts,
 * matched rule, rules tried, constraints, candidates in order with estimated
 * cost, latency score, kept/dropped and why. health may be NULL. Returns 0,
 * or -1 when out of memory; a request that routes nowhere still explains (0). */
int tg_route_explain(const tg_config_t *c, const tg_route_ctx_t *ctx, tg_health_t *health, tg_pool_t *pool,
                     char **json_out);
/* The same with every option (the worker's clock as well as its health). */
int tg_route_explain_opts(const tg_config_t *c, const tg_route_ctx_t *ctx, const tg_route_opts_t *opts,
                          tg_pool_t *pool, char **json_out);

#endif
