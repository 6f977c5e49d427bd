/* route.c — turns the model a client asked for into an ordered candidate
 * list. Resolution: an alias (naming a route or a provider/model), a route
 * by name, `provider/model` directly ("direct"), then the rules in file
 * order — the first whose match keys all hold wins. Cheap keys are tested
 * first; the language and the prompt-token estimate are computed only when
 * a rule asks, once per request, over the scanner's bounded user text.
 * Then every `require:` that binds the request removes the candidates it
 * forbids, candidates whose provider has no key (outside demo mode) or whose
 * circuit is open (or that asked us to wait) are skipped, and the route's
 * strategy orders the rest. Nothing later relaxes a require: failover only
 * walks this list, and an empty list is a 503.
 * Residency follows the tenant, not the route: a rule whose match names
 * only key and/or key_tag ("match: {key_tag: eu-only}") and has a require
 * binds every request of the keys it matches, whichever rule, route name,
 * alias or direct provider/model serves it — an operator who pins eu-only
 * tenants to eu/us expects that to hold even when such a tenant names
 * deepseek/... itself (403) or its prompt matches an earlier Chinese rule
 * (503 when nothing allowed is left, never a cn provider). A require on a
 * rule with other match keys binds only the requests that rule serves.
 * Nothing is billed $0 by accident: a candidate with no price is never
 * called (it is dropped, by name), and one whose price says it serves
 * another kind of request (an embedding model for chat) neither. Aliases
 * and match.model may be patterns ("claude-*"): see tg_config_model_match. */
#include "policy/route.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/money.h"
#include "policy/price.h"
#include "policy/strategy.h"

/* Per-request facts, computed at most once and only when needed. */
typedef struct {
    const tg_config_t *c;
    const tg_route_ctx_t *ctx;
    const tg_route_opts_t *opts; /* never NULL here */
    const tg_scan_req_t *scan;
    tg_pool_t *pool;
    tg_route_explain_t *ex; /* NULL on the hot path */
    int minute;             /* UTC minute of the day at request start */
    int64_t now_ms;         /* health clock */
    int have_counts, have_lang;
    tg_lang_counts_t counts;
    tg_lang_t lang;
    int64_t prompt; /* -1 until estimated */
} env_t;

/* Why a candidate was left out; texts come from drop_text(). */
typedef enum {
    D_KEPT,
    D_PROVIDER,
    D_REGION,
    D_PRICE_UNKNOWN,
    D_PRICE,
    D_CONTEXT_UNKNOWN,
    D_CONTEXT,
    D_CIRCUIT,
    D_NO_PRICE,
    D_KIND,
    D_NO_KEY
} drop_t;

typedef struct {
    tg_candidate_t cd;
    const tg_price_t *price; /* valid when have_price: looked up only when needed */
    int have_price;
    tg_health_entry_t *he;
    drop_t drop;
    const tg_route_t *src; /* whose require dropped it */
} cand_t;

static const tg_lang_counts_t *env_counts(env_t *e) {
    if (!e->have_counts) {
        tg_lang_count(e->scan->user_text, e->scan->user_text ? e->scan->user_text_len : 0, &e->counts);
        e->have_counts = 1;
    }
    return &e->counts;
}

static tg_lang_t env_lang(env_t *e) {
    if (!e->have_lang) {
        e->lang = tg_lang_decide(env_counts(e));
        e->have_lang = 1;
    }
    return e->lang;
}

static int64_t env_prompt(env_t *e) {
    if (e->prompt < 0) e->prompt = tg_price_estimate_prompt_counts(e->scan, env_counts(e));
    return e->prompt;
}

/* --- match keys ------------------------------------------------------------ */

static int has_tag(const tg_key_t *k, const char *tag) {
    for (size_t i = 0; k && i < k->n_tags; i++)
        if (strcmp(k->tags[i], tag) == 0) return 1;
    return 0;
}

static const char *header_value(const env_t *e, const char *name, size_t *n) {
    return tg_header_get(&e->ctx->headers, name, n);
}

static int header_matches(const tg_route_t *rt, const env_t *e) {
    size_t n = 0;
    const char *v = header_value(e, rt->m_header_name, &n);
    if (v == NULL) return 0;
    return rt->m_header_value == NULL ||
           (strlen(rt->m_header_value) == n && memcmp(v, rt->m_header_value, n) == 0);
}

static int key_matches(const tg_route_t *rt, const tg_key_t *k) {
    if (rt->m_key && (k == NULL || strcmp(rt->m_key, k->name) != 0)) return 0;
    return rt->m_key_tag == NULL || has_tag(k, rt->m_key_tag);
}

/* The first match key of rt that does not hold (its YAML name), or NULL
 * when the rule matches. Keys that need the text are tested last. */
static const char *mismatch(const tg_route_t *rt, env_t *e, const char *model) {
    const tg_scan_req_t *s = e->scan;
    if (rt->m_model && !tg_config_model_match(rt->m_model, model)) return "model";
    if (rt->m_key && (e->ctx->key == NULL || strcmp(rt->m_key, e->ctx->key->name) != 0)) return "key";
    if (rt->m_key_tag && !has_tag(e->ctx->key, rt->m_key_tag)) return "key_tag";
    if (rt->m_has_tools >= 0 && rt->m_has_tools != (s->has_tools != 0)) return "has_tools";
    if (rt->m_has_images >= 0 && rt->m_has_images != (s->has_images != 0)) return "has_images";
    if (rt->m_time_from >= 0 && rt->m_time_to >= 0 &&
        !tg_config_in_window(rt->m_time_from, rt->m_time_to, e->minute))
        return "time";
    if (rt->m_header_name && !header_matches(rt, e)) return "header";
    if (rt->m_min_prompt_tokens >= 0 && env_prompt(e) < rt->m_min_prompt_tokens) return "min_prompt_tokens";
    if (rt->m_max_prompt_tokens >= 0 && env_prompt(e) > rt->m_max_prompt_tokens) return "max_prompt_tokens";
    if (rt->m_language && strcmp(rt->m_language, tg_lang_name(env_lang(e))) != 0) return "language";
    return NULL;
}

static const char *tf(int v) {
    return v ? "true" : "false";
}

static const char *hhmm(tg_pool_t *p, int min) {
    return tg_pool_printf(p, "%02d:%02d", min / 60, min % 60);
}

/* The explain text for a key that did not hold. */
static const char *mismatch_text(const tg_route_t *rt, const char *k, env_t *e, const char *model) {
    tg_pool_t *p = e->pool;
    const tg_key_t *key = e->ctx->key;
    if (!strcmp(k, "model")) return tg_pool_printf(p, "model is '%s', rule wants '%s'", model, rt->m_model);
    if (!strcmp(k, "key"))
        return tg_pool_printf(p, "key is %s%s%s, rule wants '%s'", key ? "'" : "", key ? key->name : "none",
                              key ? "'" : "", rt->m_key);
    if (!strcmp(k, "key_tag"))
        return tg_pool_printf(p, "key %s has no tag '%s'", key ? key->name : "(none)", rt->m_key_tag);
    if (!strcmp(k, "has_tools"))
        return tg_pool_printf(p, "has_tools is %s, rule wants %s", tf(e->scan->has_tools),
                              tf(rt->m_has_tools));
    if (!strcmp(k, "has_images"))
        return tg_pool_printf(p, "has_images is %s, rule wants %s", tf(e->scan->has_images),
                              tf(rt->m_has_images));
    if (!strcmp(k, "time"))
        return tg_pool_printf(p, "time is %s UTC, outside %s-%s", hhmm(p, e->minute),
                              hhmm(p, rt->m_time_from), hhmm(p, rt->m_time_to));
    if (!strcmp(k, "header")) {
        size_t n = 0;
        const char *v = header_value(e, rt->m_header_name, &n);
        if (v == NULL) return tg_pool_printf(p, "no header %s", rt->m_header_name);
        return tg_pool_printf(p, "header %s is '%.*s', rule wants '%s'", rt->m_header_name, (int)n, v,
                              rt->m_header_value ? rt->m_header_value : "");
    }
    if (!strcmp(k, "min_prompt_tokens"))
        return tg_pool_printf(p, "estimated prompt %" PRId64 " tokens, rule wants at least %" PRId64,
                              env_prompt(e), rt->m_min_prompt_tokens);
    if (!strcmp(k, "max_prompt_tokens"))
        return tg_pool_printf(p, "estimated prompt %" PRId64 " tokens, rule wants at most %" PRId64,
                              env_prompt(e), rt->m_max_prompt_tokens);
    return tg_pool_printf(p, "language is %s, rule wants %s", tg_lang_name(env_lang(e)), rt->m_language);
}

/* --- require: ---------------------------------------------------------------- */

static int has_require(const tg_route_t *rt) {
    return rt->n_r_regions > 0 || rt->r_max_usd_per_mtok_output > 0 || rt->r_min_context > 0;
}

/* A rule that speaks about tenants only: its require follows the key. */
static int is_tenant_rule(const tg_route_t *rt) {
    return (rt->m_key || rt->m_key_tag) && !rt->m_model && !rt->m_language && !rt->m_header_name &&
           rt->m_has_tools < 0 && rt->m_has_images < 0 && rt->m_min_prompt_tokens < 0 &&
           rt->m_max_prompt_tokens < 0 && rt->m_time_from < 0 && has_require(rt);
}

/* Whether rt's require binds this request, served by `selected` (NULL for direct). */
static int binds(const tg_route_t *rt, const tg_route_t *selected, const env_t *e) {
    if (rt == selected) return has_require(rt);
    return is_tenant_rule(rt) && key_matches(rt, e->ctx->key);
}

static const tg_price_t *price_of(const env_t *e, cand_t *x) {
    if (!x->have_price) {
        x->price = tg_config_price(e->c, x->cd.provider->name, x->cd.model);
        x->have_price = 1;
    }
    return x->price;
}

static drop_t violates(const tg_route_t *rt, cand_t *x, env_t *e) {
    if (rt->n_r_regions > 0) {
        int ok = 0;
        for (size_t i = 0; i < rt->n_r_regions && !ok; i++)
            ok = x->cd.provider->region && strcmp(x->cd.provider->region, rt->r_regions[i]) == 0;
        if (!ok) return D_REGION;
    }
    /* A constraint that cannot be checked is not met: no price, no pass. */
    if (rt->r_max_usd_per_mtok_output > 0) {
        if (price_of(e, x) == NULL) return D_PRICE_UNKNOWN;
        if (tg_price_output_at(x->price, e->ctx->ts_ms) > llround(rt->r_max_usd_per_mtok_output * 1e6))
            return D_PRICE;
    }
    if (rt->r_min_context > 0) {
        if (price_of(e, x) == NULL || x->price->context <= 0) return D_CONTEXT_UNKNOWN;
        if (x->price->context < rt->r_min_context) return D_CONTEXT;
    }
    return D_KEPT;
}

/* Applies the selected route's require and every tenant rule's to x. */
static void check_require(const tg_route_t *selected, cand_t *x, env_t *e) {
    if (selected && has_require(selected) && (x->drop = violates(selected, x, e)) != D_KEPT) {
        x->src = selected;
        return;
    }
    for (size_t i = 0; i < e->c->n_routes; i++) {
        const tg_route_t *rt = &e->c->routes[i];
        if (rt == selected || !binds(rt, selected, e)) continue;
        if ((x->drop = violates(rt, x, e)) != D_KEPT) {
            x->src = rt;
            return;
        }
    }
}

static const char *join_regions(tg_pool_t *p, const tg_route_t *rt) {
    const char *s = "";
    for (size_t i = 0; i < rt->n_r_regions; i++)
        s = tg_pool_printf(p, "%s%s%s", s, i ? ", " : "", rt->r_regions[i]);
    return s;
}

static const char *source_text(tg_pool_t *p, const tg_route_t *rt) {
    return tg_pool_printf(p, "require of route '%s' (%s:%d)", rt->name, rt->file ? rt->file : "?", rt->line);
}

static const char *drop_text(env_t *e, const cand_t *x) {
    tg_pool_t *p = e->pool;
    const tg_route_t *rt = x->src;
    const tg_health_entry_t *he = x->he;
    switch (x->drop) {
    case D_PROVIDER:
        return "its provider is not configured";
    case D_REGION:
        return tg_pool_printf(p, "region %s is not in [%s], %s",
                              x->cd.provider->region ? x->cd.provider->region : "(none)", join_regions(p, rt),
                              source_text(p, rt));
    case D_PRICE_UNKNOWN:
        return tg_pool_printf(p, "no price known to check max_usd_per_mtok_output, %s", source_text(p, rt));
    case D_PRICE:
        return tg_pool_printf(p, "output costs %.6g USD/Mtok now, above max_usd_per_mtok_output %.6g, %s",
                              (double)tg_price_output_at(x->price, e->ctx->ts_ms) / 1e6,
                              rt->r_max_usd_per_mtok_output, source_text(p, rt));
    case D_CONTEXT_UNKNOWN:
        return tg_pool_printf(p, "context size unknown, cannot meet min_context %" PRId64 ", %s",
                              rt->r_min_context, source_text(p, rt));
    case D_CONTEXT:
        return tg_pool_printf(p, "context %" PRId64 " is below min_context %" PRId64 ", %s",
                              x->price->context, rt->r_min_context, source_text(p, rt));
    case D_NO_PRICE:
        return tg_pool_printf(p, "no price for %s in the configuration: never called, never billed $0",
                              x->cd.target);
    case D_KIND:
        return tg_pool_printf(p, "%s is %s, not %s", x->cd.target,
                              x->price->embedding ? "an embedding model" : "a chat model",
                              e->ctx->kind == TG_KIND_EMBEDDINGS ? "an embedding model" : "a chat model");
    case D_NO_KEY:
        return tg_pool_printf(p, "provider '%s' has no key: set %s", x->cd.provider->name,
                              x->cd.provider->api_key_env);
    case D_CIRCUIT:
        if (he && e->now_ms < he->blocked_until_ms)
            return tg_pool_printf(p, "provider asked to wait (retry-after) %" PRId64 " ms more",
                                  he->blocked_until_ms - e->now_ms);
        if (he && e->now_ms < he->remote_until_ms)
            return tg_pool_printf(
                p, "another instance saw its circuit open or a retry-after: %" PRId64 " ms more",
                he->remote_until_ms - e->now_ms);
        if (he && tg_health_state(he) == TG_CIRCUIT_HALF_OPEN)
            return "circuit half-open, its probe is in flight";
        return tg_pool_printf(p, "circuit open after %u consecutive failures, probe in %" PRId64 " ms",
                              he ? he->fails : 0, he ? he->open_until_ms - e->now_ms : 0);
    default:
        return "kept";
    }
}

/* --- building the list ----------------------------------------------------- */

static void fail(tg_route_result_t *out, int status, const char *fmt, const char *a, const char *b) {
    out->status = status;
    snprintf(out->err, sizeof(out->err), fmt, a, b);
}

/* "target: why; target: why" for the 503 message. */
static void explain_drops(env_t *e, const cand_t *v, size_t n, tg_route_result_t *out, const char *what) {
    size_t len =
        (size_t)snprintf(out->err, sizeof(out->err), "no candidate of %s is allowed and healthy: ", what);
    for (size_t i = 0; i < n && len < sizeof(out->err); i++)
        len += (size_t)snprintf(out->err + len, sizeof(out->err) - len, "%s%s: %s", i ? "; " : "",
                                v[i].cd.target, drop_text(e, &v[i]));
    out->status = 503;
}

static const char *chosen_text(env_t *e, tg_strategy_t st, const tg_strategy_item_t *x, size_t n) {
    if (n == 1) return "the only candidate left";
    switch (st) {
    case TG_STRATEGY_CHEAPEST:
        return "lowest estimated cost";
    case TG_STRATEGY_FASTEST:
        return tg_pool_printf(e->pool, "better latency score of the two drawn at random (%d in flight)",
                              tg_health_inflight(x->health));
    case TG_STRATEGY_WEIGHTED:
        return tg_pool_printf(e->pool, "its turn in weighted round robin (weight %u)", x->cand->weight);
    default:
        return "first listed";
    }
}

static void fill_explain(env_t *e, tg_strategy_t st, cand_t *v, size_t n, const tg_strategy_item_t *items,
                         size_t kept) {
    tg_route_explain_t *ex = e->ex;
    ex->cands = tg_pool_calloc(e->pool, (n ? n : 1) * sizeof(*ex->cands));
    ex->n_cands = 0;
    for (size_t i = 0; i < kept; i++) {
        const tg_strategy_item_t *x = &items[i];
        tg_route_explain_cand_t *o = &ex->cands[ex->n_cands++];
        *o = (tg_route_explain_cand_t){x->cand, 1, (int)i + 1, NULL, -1, x->score_ms, x->score_known};
        o->cost_micro = tg_money_round(x->cost_pusd);
        o->why = i == 0 ? chosen_text(e, st, x, kept) : tg_pool_printf(e->pool, "failover %zu", i);
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].drop == D_KEPT) continue;
        tg_route_explain_cand_t *o = &ex->cands[ex->n_cands++];
        *o = (tg_route_explain_cand_t){&v[i].cd, 0, 0, drop_text(e, &v[i]), -1, -1, 0};
        o->cost_micro = tg_price_cost_micro(v[i].cd.provider ? price_of(e, &v[i]) : NULL, env_prompt(e), 0,
                                            ex->output_tokens, e->ctx->ts_ms);
        o->score_ms = tg_strategy_latency(v[i].he, ex->output_tokens, e->now_ms);
        o->score_known = o->score_ms >= 0;
    }
}

static const char *require_text(tg_pool_t *p, const tg_route_t *rt) {
    const char *s = "";
    if (rt->n_r_regions) s = tg_pool_printf(p, "region in [%s]", join_regions(p, rt));
    if (rt->r_max_usd_per_mtok_output > 0)
        s = tg_pool_printf(p, "%s%smax_usd_per_mtok_output %.6g", s, *s ? ", " : "",
                           rt->r_max_usd_per_mtok_output);
    if (rt->r_min_context > 0)
        s = tg_pool_printf(p, "%s%smin_context %" PRId64, s, *s ? ", " : "", rt->r_min_context);
    return tg_pool_printf(p, "%s (%s%s)", s, source_text(p, rt), is_tenant_rule(rt) ? ", binds the key" : "");
}

static void list_constraints(env_t *e, const tg_route_t *selected) {
    tg_route_explain_t *ex = e->ex;
    ex->constraints = tg_pool_calloc(e->pool, (e->c->n_routes + 1) * sizeof(*ex->constraints));
    if (selected && has_require(selected))
        ex->constraints[ex->n_constraints++] = require_text(e->pool, selected);
    for (size_t i = 0; i < e->c->n_routes; i++) {
        const tg_route_t *rt = &e->c->routes[i];
        if (rt != selected && binds(rt, selected, e))
            ex->constraints[ex->n_constraints++] = require_text(e->pool, rt);
    }
}

static int is_require_drop(drop_t d) {
    return d != D_KEPT && d != D_CIRCUIT && d != D_PROVIDER && d != D_NO_PRICE && d != D_KIND &&
           d != D_NO_KEY;
}

/* Price and kind: a candidate that would be billed $0, or that cannot
 * serve this kind of request, is never called. */
static drop_t unservable(env_t *e, cand_t *x) {
    if (price_of(e, x) == NULL) return D_NO_PRICE;
    return tg_config_price_serves(x->price, e->ctx->kind) ? D_KEPT : D_KIND;
}

/* When every candidate was dropped for its kind, the request is the
 * client's to fix (a chat model asked for embeddings): 400 naming it. */
static int all_kind(const cand_t *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (v[i].drop != D_KIND) return 0;
    return n > 0;
}

/* Filters and orders `list` (the candidates of rt, or the one direct
 * candidate when rt is NULL) into out. */
static int build(env_t *e, const tg_route_t *rt, const tg_candidate_t *list, size_t n,
                 tg_route_result_t *out) {
    tg_strategy_t st = rt ? rt->strategy : TG_STRATEGY_ORDERED;
    int64_t output = tg_price_estimate_output_def(e->scan, e->c->default_output_tokens);
    int need_cost = st == TG_STRATEGY_CHEAPEST || e->ex;
    tg_health_t *h = e->opts->health;
    cand_t *v = tg_pool_calloc(e->pool, (n ? n : 1) * sizeof(*v));
    tg_strategy_item_t *items = tg_pool_calloc(e->pool, (n ? n : 1) * sizeof(*items));
    size_t kept = 0;
    const char *skipped = NULL;
    for (size_t i = 0; i < n; i++) {
        cand_t *x = &v[i];
        x->cd = list[i];
        if (x->cd.provider == NULL) {
            x->drop = D_PROVIDER;
            continue;
        }
        /* Price first: a model id no price covers (a pattern alias lets a
         * client make up any) gets no health entry. */
        if ((x->drop = unservable(e, x)) != D_KEPT) continue;
        x->he = tg_health_get(h, x->cd.provider->name, x->cd.model);
        check_require(rt, x, e);
        if (x->drop != D_KEPT) continue;
        /* A provider whose key is not set is skipped like an open circuit, by name and
         * variable, so the operator sees what to set (core/config_load.c: keyless). */
        if (x->cd.provider->keyless) {
            x->drop = D_NO_KEY;
            skipped = tg_pool_printf(e->pool, "%s%s%s: skipped: %s", skipped ? skipped : "",
                                     skipped ? "; " : "", x->cd.target, drop_text(e, x));
            continue;
        }
        if (!tg_health_allow(x->he, e->now_ms)) {
            x->drop = D_CIRCUIT;
            continue;
        }
        int64_t cost =
            need_cost ? tg_price_cost_pusd(price_of(e, x), env_prompt(e), 0, output, e->ctx->ts_ms) : -1;
        items[kept++] = (tg_strategy_item_t){&x->cd, i, x->he, cost, 0, 0};
    }
    tg_strategy_in_t in = {st, rt ? rt->name : "direct", n, 0, output, e->now_ms, h};
    if (st == TG_STRATEGY_WEIGHTED) in.route_sig = tg_strategy_sig(list, n);
    tg_strategy_order(&in, items, kept);
    out->route = rt ? rt->name : "direct";
    out->rule = rt;
    out->strategy = st;
    out->skipped = skipped;
    if (e->ex) {
        list_constraints(e, rt);
        fill_explain(e, st, v, n, items, kept);
    }
    if (kept == 0) {
        if (all_kind(v, n)) {
            out->status = 400;
            snprintf(out->err, sizeof(out->err), "model '%s' cannot serve %s: %s", e->ctx->model,
                     e->ctx->kind == TG_KIND_EMBEDDINGS ? "embeddings" : "this chat request",
                     drop_text(e, &v[0]));
        } else if (rt == NULL && n == 1 && is_require_drop(v[0].drop)) {
            fail(out, 403, "this key may not use %s: %s", v[0].cd.target, drop_text(e, &v[0]));
        } else {
            explain_drops(e, v, n, out,
                          rt ? tg_pool_printf(e->pool, "route '%s'", rt->name) : v[0].cd.target);
        }
        return -1;
    }
    tg_candidate_t *cands = tg_pool_alloc(e->pool, kept * sizeof(*cands));
    tg_health_entry_t **he = h ? tg_pool_alloc(e->pool, kept * sizeof(*he)) : NULL;
    for (size_t i = 0; i < kept; i++) {
        cands[i] = *items[i].cand;
        if (he) he[i] = items[i].health;
    }
    out->cands = cands;
    out->health = he;
    out->n = kept;
    return 0;
}

/* A model the configuration knows: listed (priced or under `models:`), or
 * covered by a pattern price (a new release nobody listed yet). */
static int provider_has_model(const tg_config_t *c, const tg_provider_t *p, const char *model) {
    for (size_t i = 0; i < p->n_models; i++)
        if (strcmp(p->models[i], model) == 0) return 1;
    return tg_config_price(c, p->name, model) != NULL;
}

/* by_pattern: target came from a pattern alias ("claude-*"), so the model
 * may be one nobody listed; it is tried, and refused by name (503) when no
 * price covers it, rather than called unknown. */
static int direct(env_t *e, const char *target, int by_pattern, tg_route_result_t *out) {
    const char *slash = strchr(target, '/');
    const tg_provider_t *p = tg_config_provider(e->c, target, (size_t)(slash - target));
    if (p == NULL) {
        out->status = 404;
        snprintf(out->err, sizeof(out->err), "unknown provider '%.*s' in model '%s'", (int)(slash - target),
                 target, target);
        return -1;
    }
    if (!by_pattern && !provider_has_model(e->c, p, slash + 1)) {
        out->status = 404;
        snprintf(out->err, sizeof(out->err),
                 "unknown model '%s': %s has no such model in the configuration (see GET /v1/models)", target,
                 p->name);
        return -1;
    }
    tg_candidate_t cd = {(char *)target, p, (char *)slash + 1, 1};
    return build(e, NULL, &cd, 1, out);
}

static int by_rules(env_t *e, const char *model, tg_route_result_t *out) {
    const tg_config_t *c = e->c;
    if (e->ex)
        e->ex->rules = tg_pool_calloc(e->pool, (c->n_routes ? c->n_routes : 1) * sizeof(*e->ex->rules));
    for (size_t i = 0; i < c->n_routes; i++) {
        const tg_route_t *rt = &c->routes[i];
        const char *why = mismatch(rt, e, model);
        if (e->ex)
            e->ex->rules[e->ex->n_rules++] =
                (tg_route_explain_rule_t){rt, why ? mismatch_text(rt, why, e, model) : NULL};
        if (why == NULL) return build(e, rt, rt->candidates, rt->n_candidates, out);
    }
    fail(out, 404, "unknown model '%s': use provider/model, an alias or a route name (see GET /v1/models)%s",
         e->ctx->model ? e->ctx->model : "", c->n_routes ? "; no routing rule matched this request" : "");
    return -1;
}

int tg_route_pick_explain(const tg_config_t *c, const tg_route_ctx_t *ctx, const tg_route_opts_t *opts,
                          tg_pool_t *pool, tg_route_result_t *out, tg_route_explain_t *ex) {
    static const tg_scan_req_t no_scan = {.max_tokens = -1};
    static const tg_route_opts_t no_opts = {0};
    if (opts == NULL) opts = &no_opts;
    memset(out, 0, sizeof(*out));
    env_t e = {c,
               ctx,
               opts,
               ctx->scan ? ctx->scan : &no_scan,
               pool,
               ex,
               tg_price_minute(ctx->ts_ms),
               opts->now_ms ? opts->now_ms : ctx->ts_ms,
               0,
               0,
               {0},
               TG_LANG_OTHER,
               -1};
    const char *model = ctx->model ? ctx->model : "";
    const tg_alias_t *a = tg_config_alias(c, model);
    if (a && (model = tg_config_alias_target(a, model, pool)) == NULL) {
        fail(out, 503, "out of memory%s%s", "", "");
        return -1;
    }
    const tg_route_t *rt = tg_config_route(c, model);
    if (ex) {
        memset(ex, 0, sizeof(*ex));
        ex->resolved = model;
        ex->alias = a ? a->name : NULL;
        ex->how = rt ? "route" : strchr(model, '/') ? "direct" : "rule";
        ex->output_tokens = tg_price_estimate_output_def(e.scan, c->default_output_tokens);
    }
    int rc = rt                   ? build(&e, rt, rt->candidates, rt->n_candidates, out)
             : strchr(model, '/') ? direct(&e, model, a && a->pattern, out)
                                  : by_rules(&e, model, out);
    out->lang = e.have_lang ? e.lang : TG_LANG_OTHER;
    out->prompt_tokens = e.prompt;
    return rc;
}

int tg_route_permits(const tg_config_t *c, const tg_key_t *key, const tg_route_t *selected,
                     const tg_candidate_t *cd, int64_t ts_ms) {
    static const tg_scan_req_t no_scan = {.max_tokens = -1};
    static const tg_route_opts_t no_opts = {0};
    if (cd->provider == NULL) return 0;
    tg_route_ctx_t ctx = {.key = key, .scan = &no_scan, .ts_ms = ts_ms};
    env_t e = {.c = c,
               .ctx = &ctx,
               .opts = &no_opts,
               .scan = &no_scan,
               .minute = tg_price_minute(ts_ms),
               .now_ms = ts_ms,
               .prompt = -1};
    cand_t x = {.cd = *cd};
    check_require(selected, &x, &e);
    return x.drop == D_KEPT;
}

int tg_route_pick_opts(const tg_config_t *c, const tg_route_ctx_t *ctx, const tg_route_opts_t *opts,
                       tg_pool_t *pool, tg_route_result_t *out) {
    return tg_route_pick_explain(c, ctx, opts, pool, out, NULL);
}

/* --- explain as JSON ----------------------------------------------------------- */

static json_t *str_or_null(const char *s) {
    return s ? json_string(s) : json_null();
}

static json_t *explain_cand(const tg_route_explain_cand_t *x) {
    const tg_candidate_t *cd = x->cand;
    json_t *o = json_object();
    json_object_set_new(o, "target", json_string(cd->target));
    json_object_set_new(o, "provider", json_string(cd->provider ? cd->provider->name : ""));
    json_object_set_new(o, "model", json_string(cd->model ? cd->model : ""));
    json_object_set_new(o, "region", str_or_null(cd->provider ? cd->provider->region : NULL));
    json_object_set_new(o, "weight", json_integer(cd->weight));
    json_object_set_new(o, "kept", json_boolean(x->kept));
    json_object_set_new(o, "order", x->kept ? json_integer(x->order) : json_null());
    json_object_set_new(o, "why", json_string(x->why ? x->why : ""));
    if (x->cost_micro >= 0) {
        char usd[TG_MONEY_TEXT_MAX];
        json_object_set_new(o, "est_cost_usd", json_string(tg_money_format(x->cost_micro, usd)));
        json_object_set_new(o, "est_cost_micro_usd", json_integer(x->cost_micro));
    } else {
        json_object_set_new(o, "est_cost_usd", json_null());
        json_object_set_new(o, "est_cost_micro_usd", json_null());
    }
    json_object_set_new(o, "latency_score_ms",
                        x->score_known ? json_integer(llround(x->score_ms)) : json_null());
    json_object_set_new(o, "latency_measured", json_boolean(x->score_known));
    return o;
}

static json_t *explain_request(const tg_route_ctx_t *ctx, const tg_route_explain_t *ex,
                               const tg_scan_req_t *s) {
    int m = tg_price_minute(ctx->ts_ms);
    char t[32];
    snprintf(t, sizeof(t), "%02d:%02d", m / 60, m % 60);
    tg_lang_t lang = tg_lang_detect(s->user_text, s->user_text ? s->user_text_len : 0);
    return json_pack("{s:s?,s:s,s:I,s:I,s:b,s:b,s:s,s:s?}", "model", ctx->model, "language",
                     tg_lang_name(lang), "prompt_tokens_est", (json_int_t)tg_price_estimate_prompt(s),
                     "output_tokens_est", (json_int_t)ex->output_tokens, "has_tools", s->has_tools != 0,
                     "has_images", s->has_images != 0, "time_utc", t, "key",
                     ctx->key ? ctx->key->name : NULL);
}

static json_t *explain_json(const tg_route_ctx_t *ctx, const tg_route_result_t *r,
                            const tg_route_explain_t *ex, const tg_scan_req_t *s, int rc) {
    json_t *o = json_object();
    json_object_set_new(o, "request", explain_request(ctx, ex, s));
    json_object_set_new(o, "resolved_model", json_string(ex->resolved));
    json_object_set_new(o, "alias", str_or_null(ex->alias));
    json_object_set_new(o, "how", json_string(ex->how));
    json_object_set_new(o, "route", str_or_null(r->route));
    json_object_set_new(o, "route_defined_at",
                        r->rule ? json_sprintf("%s:%d", r->rule->file ? r->rule->file : "?", r->rule->line)
                                : json_null());
    json_object_set_new(o, "strategy", r->route ? json_string(tg_strategy_name(r->strategy)) : json_null());
    json_object_set_new(o, "status", json_integer(rc == 0 ? 200 : r->status));
    json_object_set_new(o, "error", rc == 0 ? json_null() : json_string(r->err));
    json_t *rules = json_array();
    for (size_t i = 0; i < ex->n_rules; i++)
        json_array_append_new(rules, json_pack("{s:s,s:b,s:s?}", "name", ex->rules[i].rule->name, "matched",
                                               ex->rules[i].why == NULL, "why", ex->rules[i].why));
    json_object_set_new(o, "rules_tried", rules);
    json_t *cons = json_array();
    for (size_t i = 0; i < ex->n_constraints; i++)
        json_array_append_new(cons, json_string(ex->constraints[i]));
    json_object_set_new(o, "constraints", cons);
    json_t *cands = json_array();
    for (size_t i = 0; i < ex->n_cands; i++)
        json_array_append_new(cands, explain_cand(&ex->cands[i]));
    json_object_set_new(o, "candidates", cands);
    return o;
}

int tg_route_explain_opts(const tg_config_t *c, const tg_route_ctx_t *ctx, const tg_route_opts_t *opts,
                          tg_pool_t *pool, char **json_out) {
    static const tg_scan_req_t no_scan = {.max_tokens = -1};
    tg_route_result_t r;
    tg_route_explain_t ex;
    int rc = tg_route_pick_explain(c, ctx, opts, pool, &r, &ex);
    json_t *o = explain_json(ctx, &r, &ex, ctx->scan ? ctx->scan : &no_scan, rc);
    *json_out = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return *json_out ? 0 : -1;
}

int tg_route_explain(const tg_config_t *c, const tg_route_ctx_t *ctx, tg_health_t *health, tg_pool_t *pool,
                     char **json_out) {
    tg_route_opts_t o = {health, 0};
    return tg_route_explain_opts(c, ctx, &o, pool, json_out);
}
