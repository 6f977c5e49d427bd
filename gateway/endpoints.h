/* endpoints.h — the API endpoints beside the conversational ones, as far as
 * they are more than a route and a relay: GET /v1/models (what one key may
 * use), the local answer of POST /v1/messages/count_tokens for providers
 * that have no such endpoint, and which providers do. gateway/request.c
 * calls these; POST /v1/embeddings needs nothing here: it is routed and
 * relayed like chat, by the request kind (core/config.h). */
#ifndef TG_ENDPOINTS_H
#define TG_ENDPOINTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/pool.h"
#include "core/scan.h"

/* The body of GET /v1/models for `key` at ts_ms (unix ms), OpenAI list
 * shape: route names, aliases (a pattern alias by its pattern) and
 * provider/model ids that key may be served by — the same require: rules
 * the router applies (policy/route.h), and only priced models. malloc'd
 * (the caller frees), *len its length; NULL when out of memory. */
char *tg_endpoint_models(const tg_config_t *c, const tg_key_t *key, int64_t ts_ms, size_t *len);

/* Whether provider p counts tokens itself (Anthropic's API has
 * /v1/messages/count_tokens); for any other the gateway estimates. */
int tg_endpoint_counts_upstream(const tg_provider_t *p);

/* A local count_tokens answer, {"input_tokens":N}, N being the gateway's
 * own estimate of the request's prompt (policy/price.h). From pool. */
const char *tg_endpoint_count_body(tg_pool_t *pool, const tg_scan_req_t *scan, size_t *len);

#endif
