/* endpoints.c — GET /v1/models and the local side of count_tokens.
 * The model list is per key: every route name, alias and provider/model id
 * is offered only when at least one priced candidate behind it passes the
 * require: rules that bind that key, asked through tg_route_permits() so
 * the list and the router never disagree. A pattern alias ("claude-*") is
 * listed as its pattern; pattern prices are not model ids and are not
 * listed. The count is the router's own prompt estimate, the figure budgets
 * reserve by. Config snapshot and scan in; JSON text out. */
#include "gateway/endpoints.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "policy/price.h"
#include "policy/route.h"

/* A candidate the client could reach: priced (pattern targets cannot be
 * priced before a model id fills them, so only their provider is known)
 * and allowed for the key when named through `selected` (NULL: directly). */
static int open_to(const tg_config_t *c, const tg_key_t *key, const tg_route_t *selected,
                   const tg_candidate_t *cd, int64_t ts_ms) {
    if (cd->provider == NULL) return 0;
    if (strchr(cd->model, '*') == NULL && tg_config_price(c, cd->provider->name, cd->model) == NULL) return 0;
    return tg_route_permits(c, key, selected, cd, ts_ms);
}

static int route_open(const tg_config_t *c, const tg_key_t *key, const tg_route_t *rt, int64_t ts_ms) {
    for (size_t i = 0; i < rt->n_candidates; i++)
        if (open_to(c, key, rt, &rt->candidates[i], ts_ms)) return 1;
    return 0;
}

static int alias_open(const tg_config_t *c, const tg_key_t *key, const tg_alias_t *a, int64_t ts_ms) {
    const char *slash = strchr(a->target, '/');
    if (slash == NULL) {
        const tg_route_t *rt = tg_config_route(c, a->target);
        return rt && route_open(c, key, rt, ts_ms);
    }
    tg_candidate_t cd = {(char *)a->target, tg_config_provider(c, a->target, (size_t)(slash - a->target)),
                         (char *)slash + 1, 1};
    return open_to(c, key, NULL, &cd, ts_ms);
}

static int add(json_t *data, const char *id, const char *owner) {
    return json_array_append_new(
        data, json_pack("{s:s,s:s,s:i,s:s}", "id", id, "object", "model", "created", 0, "owned_by", owner));
}

char *tg_endpoint_models(const tg_config_t *c, const tg_key_t *key, int64_t ts_ms, size_t *len) {
    json_t *data = json_array();
    int bad = data == NULL;
    for (size_t i = 0; !bad && i < c->n_routes; i++)
        if (route_open(c, key, &c->routes[i], ts_ms)) bad |= add(data, c->routes[i].name, "tollgate-route");
    for (size_t i = 0; !bad && i < c->n_aliases; i++)
        if (alias_open(c, key, &c->aliases[i], ts_ms)) bad |= add(data, c->aliases[i].name, "tollgate-alias");
    for (size_t i = 0; !bad && i < c->n_providers; i++) {
        const tg_provider_t *p = &c->providers[i];
        for (size_t j = 0; !bad && j < p->n_models; j++) {
            char id[512];
            snprintf(id, sizeof(id), "%s/%s", p->name, p->models[j]);
            tg_candidate_t cd = {id, p, p->models[j], 1};
            if (open_to(c, key, NULL, &cd, ts_ms)) bad |= add(data, id, p->name);
        }
    }
    json_t *o = bad ? NULL : json_pack("{s:s,s:O}", "object", "list", "data", data);
    json_decref(data);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s) *len = strlen(s);
    return s;
}

int tg_endpoint_counts_upstream(const tg_provider_t *p) {
    return p->dialect_name && strcmp(p->dialect_name, "anthropic") == 0;
}

const char *tg_endpoint_count_body(tg_pool_t *pool, const tg_scan_req_t *scan, size_t *len) {
    const char *s = tg_pool_printf(pool, "{\"input_tokens\":%" PRId64 "}", tg_price_estimate_prompt(scan));
    *len = s ? strlen(s) : 0;
    return s;
}
