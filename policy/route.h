/* route.h — picks the candidates for a request from the config snapshot:
 * `provider/model` directly, an alias, a route by name, or the first rule
 * whose match keys all hold. The full policy engine (language, cost,
 * latency, circuit state) builds on this interface. */
#ifndef TG_ROUTE_H
#define TG_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"
#include "gateway/pool.h"
#include "gateway/scan.h"

struct tg_http_req_s;

typedef struct {
    const char *model;               /* what the client asked for (decoded) */
    const tg_key_t *key;             /* the authenticated gateway key */
    const tg_scan_req_t *scan;
    const struct tg_http_req_s *http; /* for `header` matches; may be NULL */
    int64_t ts_ms;                   /* request start, unix ms */
} tg_route_ctx_t;

typedef struct {
    const char *route;             /* rule name, or "direct" */
    const tg_candidate_t *cands;   /* in the order to try */
    size_t n;
    char err[256];                 /* why nothing matched (404) */
} tg_route_result_t;

/* 0 with at least one candidate, or -1 with err (the model is unknown). */
int tg_route_pick(const tg_config_t *c, const tg_route_ctx_t *ctx, tg_pool_t *pool, tg_route_result_t *out);

#endif
