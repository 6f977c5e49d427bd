/* route.c — turns the model a client asked for into an ordered candidate
 * list. Resolution order: an alias (which may name a route or a
 * provider/model), a route by name, `provider/model` directly, then the
 * rules in file order — the first whose match keys all hold wins. Match keys
 * this version does not evaluate yet (language, time) make a rule not
 * match rather than match wrongly; the policy engine issue adds them, plus
 * strategies other than the listed order, and circuit state.
 */
#include "policy/route.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gateway/http1.h"

static int has_tag(const tg_key_t *k, const char *tag) {
    for (size_t i = 0; k && i < k->n_tags; i++)
        if (strcmp(k->tags[i], tag) == 0) return 1;
    return 0;
}

static int header_matches(const tg_route_t *rt, const tg_route_ctx_t *ctx) {
    if (ctx->http == NULL) return 0;
    size_t n;
    const char *v = tg_http_header(ctx->http, rt->m_header_name, &n);
    if (v == NULL) return 0;
    return rt->m_header_value == NULL || (strlen(rt->m_header_value) == n && memcmp(v, rt->m_header_value, n) == 0);
}

static int rule_matches(const tg_route_t *rt, const tg_route_ctx_t *ctx) {
    const tg_scan_req_t *s = ctx->scan;
    int64_t prompt = (int64_t)(s->text_bytes + 3) / 4 + 4 * (int64_t)s->n_messages;
    if (rt->m_model && strcmp(rt->m_model, ctx->model) != 0) return 0;
    if (rt->m_key && (ctx->key == NULL || strcmp(rt->m_key, ctx->key->name) != 0)) return 0;
    if (rt->m_key_tag && !has_tag(ctx->key, rt->m_key_tag)) return 0;
    if (rt->m_has_tools >= 0 && rt->m_has_tools != (s->has_tools != 0)) return 0;
    if (rt->m_has_images >= 0 && rt->m_has_images != (s->has_images != 0)) return 0;
    if (rt->m_min_prompt_tokens >= 0 && prompt < rt->m_min_prompt_tokens) return 0;
    if (rt->m_max_prompt_tokens >= 0 && prompt > rt->m_max_prompt_tokens) return 0;
    if (rt->m_header_name && !header_matches(rt, ctx)) return 0;
    if (rt->m_language || rt->m_time_from >= 0) return 0;
    return 1;
}

/* Candidates allowed by the rule's `require:` region constraint. */
static int allowed(const tg_route_t *rt, const tg_candidate_t *c) {
    if (rt->n_r_regions == 0) return 1;
    for (size_t i = 0; i < rt->n_r_regions; i++)
        if (c->provider->region && strcmp(c->provider->region, rt->r_regions[i]) == 0) return 1;
    return 0;
}

static int from_route(const tg_route_t *rt, tg_pool_t *pool, tg_route_result_t *out) {
    tg_candidate_t *v = tg_pool_alloc(pool, (rt->n_candidates + 1) * sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < rt->n_candidates; i++)
        if (allowed(rt, &rt->candidates[i])) v[n++] = rt->candidates[i];
    out->route = rt->name;
    out->cands = v;
    out->n = n;
    if (n == 0) {
        snprintf(out->err, sizeof(out->err), "route '%s' has no candidate allowed by its require: rules",
                 rt->name);
        return -1;
    }
    return 0;
}

static int provider_has_model(const tg_provider_t *p, const char *model) {
    for (size_t i = 0; i < p->n_models; i++)
        if (strcmp(p->models[i], model) == 0) return 1;
    return 0;
}

static int direct(const tg_config_t *c, const char *target, tg_pool_t *pool, tg_route_result_t *out) {
    const char *slash = strchr(target, '/');
    if (slash == NULL) return 1;
    const tg_provider_t *p = tg_config_provider(c, target, (size_t)(slash - target));
    if (p == NULL) {
        snprintf(out->err, sizeof(out->err), "unknown provider '%.*s' in model '%s'", (int)(slash - target),
                 target, target);
        return -1;
    }
    if (!provider_has_model(p, slash + 1)) {
        snprintf(out->err, sizeof(out->err),
                 "unknown model '%s': %s has no such model in the configuration (see GET /v1/models)", target,
                 p->name);
        return -1;
    }
    tg_candidate_t *v = tg_pool_calloc(pool, sizeof(*v));
    v->target = (char *)target;
    v->provider = p;
    v->model = (char *)slash + 1;
    v->weight = 1;
    out->route = "direct";
    out->cands = v;
    out->n = 1;
    return 0;
}

int tg_route_pick(const tg_config_t *c, const tg_route_ctx_t *ctx, tg_pool_t *pool, tg_route_result_t *out) {
    memset(out, 0, sizeof(*out));
    const char *model = ctx->model;
    const tg_alias_t *a = tg_config_alias(c, model);
    if (a) model = a->target;
    const tg_route_t *rt = tg_config_route(c, model);
    if (rt) return from_route(rt, pool, out);
    int rc = direct(c, model, pool, out);
    if (rc <= 0) return rc;
    tg_route_ctx_t m = *ctx;
    m.model = model;
    for (size_t i = 0; i < c->n_routes; i++)
        if (rule_matches(&c->routes[i], &m)) return from_route(&c->routes[i], pool, out);
    snprintf(out->err, sizeof(out->err),
             "unknown model '%s': use provider/model, an alias or a route name (see GET /v1/models)", ctx->model);
    return -1;
}
