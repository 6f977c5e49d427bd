/* request_cache.c — the response cache (gateway/cache.c) in the request's
 * life: after routing and quotas, one GET either answers from Redis (no
 * attempt, cost 0, the stored bytes as the client first got them, as a
 * stream when the client streams) or lets the attempts run; at on_finish a
 * clean, whole answer the client stayed for is stored, off the client's
 * path. Called from gateway/request.c through request_int.h. */
#include "gateway/request_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/money.h"
#include "gateway/metrics.h"

/* --- the response cache (gateway/cache.c) ------------------------------- */

/* The candidate of this request that made the stored answer: same provider and model, its
 * provider in the same region and as simulated as when the answer was made. The candidates
 * are those routing allowed this very request (require: rules, keys, circuits), so an answer
 * made where this key may not go is never given to it. NULL when there is none. */
static const tg_candidate_t *cache_candidate(const tg_request_t *r, const tg_cache_entry_t *e) {
    if (e->stream != r->scan.stream) return NULL;
    for (size_t i = 0; i < r->route.n; i++) {
        const tg_candidate_t *c = &r->route.cands[i];
        const char *region = c->provider->region ? c->provider->region : "";
        if (c->provider->dialect && strcmp(c->provider->name, e->provider) == 0 &&
            strcmp(c->model, e->model) == 0 && strcmp(region, e->region) == 0 &&
            !c->provider->simulated == !e->simulated)
            return c;
    }
    return NULL;
}

/* A hit: the stored answer with the usual headers (the provider and model that made it,
 * attempts 0, cost 0) and x-tollgate-cache: hit; a stream is the stored events, then the
 * cost comment and the client's end marker, as a live stream ends. */
static void cache_answer(tg_request_t *r, const tg_cache_entry_t *e, const tg_candidate_t *c) {
    r->cur = c;
    r->cache_hit = 1;
    int64_t saved = tg_money_micro(tg_config_price(r->cfg, c->provider->name, c->model), &e->usage, r->ts_ms);
    r->cache_saved = saved >= 0 ? saved : e->cost_micro_usd; /* the price is gone: what it cost then */
    r->status = 200;
    const char *zero = tg_request_usd_text(r->pool, 0);
    if (!e->stream) {
        const char *h[12];
        size_t n = 0;
        h[n++] = "Content-Type: application/json";
        n += tg_request_headers(r, h + n, 12 - n, zero);
        r->started = 1;
        r->ttfb_us = tg_clock_mono_us() - r->t0_us;
        tg_metrics_ttfb(r->ttfb_us);
        tg_http_respond(r->http, 200, h, n, e->answer, e->answer_len); /* on_finish may run inside */
        return;
    }
    tg_request_start_stream(r);
    tg_http_stream_write(r->http, e->answer, e->answer_len);
    const char *comment =
        tg_pool_printf(r->pool, ": tollgate {\"cost_usd\":%s,\"usage\":%s,\"cache\":\"hit\"}\n\n", zero,
                       tg_request_usage_json(r->pool, &e->usage));
    const char *end = tg_client_stream_done(r->client, r->pool, comment);
    tg_http_stream_write(r->http, end, strlen(end));
    tg_http_stream_end(r->http); /* on_finish may run inside */
}

static void on_cache(void *ud, const tg_cache_entry_t *hit) {
    tg_request_t *r = ud;
    r->cache_op = NULL;
    const tg_candidate_t *c = hit ? cache_candidate(r, hit) : NULL;
    if (c == NULL) {
        tg_request_attempt_next(r);
        return;
    }
    cache_answer(r, hit, c);
}

/* When the key or the rule has `cache:`, one GET of the request's digest before any attempt
 * (Redis away: none, and the attempts start at once); else the attempts, with no round trip. */
void tg_request_cache_or_attempt(tg_request_t *r) {
    static const char *const apis[] = {
        [TG_CLIENT_OPENAI] = "chat", [TG_CLIENT_ANTHROPIC] = "messages", [TG_CLIENT_RESPONSES] = "responses"};
    r->cache_conf = r->kind == TG_KIND_CHAT ? tg_cache_conf_for(r->key, r->route.rule) : NULL;
    if (r->cache_conf == NULL) {
        tg_request_attempt_next(r);
        return;
    }
    /* What reaches the provider besides the body: the x-sim-* lines and anthropic-beta. */
    const char **hdrs = tg_pool_alloc(r->pool, (r->n_extra + 1) * sizeof(*hdrs));
    size_t nh = 0, bl = 0, blen = 0;
    for (size_t i = 0; hdrs && i < r->n_extra; i++)
        hdrs[nh++] = r->extra[i];
    const char *beta =
        r->client == TG_CLIENT_ANTHROPIC ? tg_http_header(r->http, "anthropic-beta", &bl) : NULL;
    if (hdrs && beta) hdrs[nh++] = tg_pool_printf(r->pool, "anthropic-beta: %.*s", (int)bl, beta);
    const char *body = tg_http_body(r->http, &blen); /* the client's own bytes, whatever the API */
    tg_cache_req_t q = {r->key->name, apis[r->client], r->scan.stream, hdrs, nh, body, blen};
    tg_cache_digest(r->cache_conf, &q, r->cache_digest);
    r->cap_on = r->scan.stream;
    r->cache_op = tg_cache_lookup(r->w->ledger, r->cache_digest, r->pool, on_cache, r);
    if (r->cache_op == NULL) tg_request_attempt_next(r);
}

/* A finished answer goes to the cache from on_finish, after its last byte was queued for the
 * client: only a whole answer (a 200, a stream that reached its end marker, a client that
 * stayed), never an error or a cut stream; the SET's reply is never waited for. A Responses
 * answer names a stored response: its entry never outlives that one (store_ttl_s). */
void tg_request_cache_store(tg_request_t *r, int aborted) {
    if (r->cache_conf == NULL || r->cache_hit || aborted || r->status != 200 || r->cur == NULL ||
        r->attempts == 0)
        return;
    tg_cache_entry_t e = {
        .provider = r->cur->provider->name,
        .model = r->cur->model,
        .region = r->cur->provider->region ? r->cur->provider->region : "",
        .simulated = r->cur->provider->simulated,
        .stream = r->scan.stream,
        .usage = r->usage,
        .cost_micro_usd = tg_request_cost_micro(r),
    };
    if (r->scan.stream) {
        if (!r->cap_on || r->cap == NULL || !r->done_seen) return;
        e.answer = r->cap, e.answer_len = r->cap_len;
    } else {
        if (r->held_out == NULL) return;
        e.answer = r->held_out, e.answer_len = r->held_len;
    }
    int64_t ttl = r->cache_conf->ttl_s;
    if (r->client == TG_CLIENT_RESPONSES && r->cfg->store_ttl_s > 1 && ttl >= r->cfg->store_ttl_s)
        ttl = r->cfg->store_ttl_s - 1;
    tg_cache_store(r->w->ledger, r->cache_digest, &e, ttl, (size_t)r->cache_conf->max_bytes);
}

/* Over budget (402) or rate (429), in the client's dialect with retry-after; else go on. */
