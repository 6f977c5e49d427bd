/* test_route.c — routing decisions on a real config snapshot
 * (tests/unit/policy/routes.yaml, loaded by tg_config_load): every match
 * key, aliases, routes by name and direct provider/model, unknown models
 * (404), require: constraints that are never relaxed — not by failover,
 * not by an earlier rule, not by naming a provider directly (403/503) —
 * circuit state, the strategies seen through tg_route_pick_opts, and the
 * explain JSON. Request headers come from a one-header source. */
/* clang-format off */
/* deps: policy/route.c policy/strategy.c policy/health.c policy/price.c policy/lang.c core/money.c core/config.c core/config_load.c core/config_schema.c core/config_listen.c core/config_yaml.c core/config_price.c core/pool.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/route.h"

#define HOUR (3600 * 1000LL)
#define DAY0 (20000 * 24 * HOUR) /* a UTC midnight */
#define NOON (DAY0 + 12 * HOUR)

static const char *EN = "Explain in three short sentences why the sky is blue during the day.";
static const char *ZH = "请用三句话解释为什么白天的天空是蓝色的。";

typedef struct {
    tg_config_t *c;
    tg_pool_t *pool;
    tg_scan_req_t scan;
    tg_route_ctx_t ctx;
    tg_route_opts_t opts;
    tg_route_result_t out;
} fx_t;

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    tg_diag_t d = {0};
    f->c = tg_config_load("tests/unit/policy/routes.yaml", &d);
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    tg_diag_free(&d);
    if (f->c == NULL) return -1;
    f->pool = tg_pool_create(8192);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    tg_pool_destroy(f->pool);
    tg_config_unref(f->c);
    free(f);
    return 0;
}

static const tg_key_t *key(fx_t *f, const char *name) {
    for (size_t i = 0; i < f->c->n_keys; i++)
        if (!strcmp(f->c->keys[i].name, name)) return &f->c->keys[i];
    return NULL;
}

/* A request for `model` with user text `text`, by key `k`, at ts. */
static void req(fx_t *f, const char *model, const char *text, const char *k, int64_t ts) {
    memset(&f->scan, 0, sizeof(f->scan));
    f->scan.user_text = text;
    f->scan.user_text_len = strlen(text);
    f->scan.text_bytes = strlen(text);
    f->scan.n_messages = 1;
    f->scan.max_tokens = -1;
    f->ctx = (tg_route_ctx_t){model, k ? key(f, k) : NULL, &f->scan, {NULL, NULL}, ts, TG_KIND_CHAT};
    memset(&f->opts, 0, sizeof(f->opts));
}

static int pick(fx_t *f) {
    return tg_route_pick_opts(f->c, &f->ctx, &f->opts, f->pool, &f->out);
}

/* The route chosen and its candidates, "route: a/m b/m", or "STATUS: err". */
static const char *decide(fx_t *f) {
    static char buf[512];
    if (pick(f) != 0) {
        snprintf(buf, sizeof(buf), "%d", f->out.status);
        return buf;
    }
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s:", f->out.route);
    for (size_t i = 0; i < f->out.n; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s", f->out.cands[i].target);
    return buf;
}

static void test_model_alias_direct(void **state) {
    fx_t *f = *state;
    req(f, "auto", EN, NULL, NOON);
    assert_string_equal(decide(f), "default: deepseek/deepseek-flash openai/gpt-4o-mini");
    req(f, "mini", EN, NULL, NOON);
    assert_string_equal(decide(f), "direct: openai/gpt-4o-mini");
    req(f, "openai/gpt-4o-mini", EN, NULL, NOON);
    assert_string_equal(decide(f), "direct: openai/gpt-4o-mini");
    /* A route named by the client (or by an alias) skips the match keys. */
    req(f, "cheap", EN, NULL, NOON);
    assert_string_equal(decide(f), "chinese-cheap: deepseek/deepseek-flash qwen/qwen-plus");
    req(f, "vip", EN, NULL, NOON);
    assert_string_equal(decide(f), "vip: anthropic/claude-haiku-4-5");
    req(f, "fast", EN, NULL, NOON);
    assert_string_equal(decide(f), "quick: openai/gpt-4o-mini mistral/mistral-small");
}

static void test_unknown_models(void **state) {
    fx_t *f = *state;
    req(f, "gpt-9", EN, NULL, NOON);
    assert_string_equal(decide(f), "404");
    assert_non_null(strstr(f->out.err, "unknown model 'gpt-9'"));
    req(f, "nope/x", EN, NULL, NOON);
    assert_string_equal(decide(f), "404");
    assert_non_null(strstr(f->out.err, "unknown provider 'nope'"));
    req(f, "openai/gpt-9", EN, NULL, NOON);
    assert_string_equal(decide(f), "404");
    req(f, NULL, EN, NULL, NOON);
    assert_string_equal(decide(f), "404");
}

static void test_language(void **state) {
    fx_t *f = *state;
    req(f, "auto", ZH, NULL, NOON);
    assert_string_equal(decide(f), "chinese-cheap: deepseek/deepseek-flash qwen/qwen-plus");
    assert_int_equal(f->out.lang, TG_LANG_ZH);
    req(f, "auto", "量子コンピュータとは何ですか？簡単に説明してください。", NULL, NOON);
    assert_string_equal(decide(f), "japanese: qwen/qwen-plus");
    req(f, "auto", "양자 컴퓨팅이 무엇인지 세 문장으로 설명해 주세요.", NULL, NOON);
    assert_string_equal(decide(f), "default: deepseek/deepseek-flash openai/gpt-4o-mini");
}

static void test_key_and_tag(void **state) {
    fx_t *f = *state;
    req(f, "auto", EN, "vip", NOON);
    assert_string_equal(decide(f), "vip: anthropic/claude-haiku-4-5");
    req(f, "auto", EN, "team-web", NOON);
    assert_string_equal(decide(f), "eu-tenants: mistral/mistral-small openai/gpt-4o-mini");
    req(f, "auto", EN, "plain", NOON);
    assert_string_equal(decide(f), "default: deepseek/deepseek-flash openai/gpt-4o-mini");
}

/* A request that carries at most one header, x-beta, with value `ud`
 * (none when ud is NULL). */
static const char *beta_header(void *ud, const char *name, size_t *len) {
    if (ud == NULL || strcasecmp(name, "x-beta")) return NULL;
    *len = strlen(ud);
    return ud;
}

static void test_header(void **state) {
    fx_t *f = *state;
    req(f, "auto", EN, NULL, NOON);
    f->ctx.headers = (tg_header_source_t){beta_header, "1"};
    assert_string_equal(decide(f), "beta: openai/gpt-4o-mini");
    f->ctx.headers.ud = "2";
    assert_string_equal(decide(f), "default: deepseek/deepseek-flash openai/gpt-4o-mini");
    f->ctx.headers.ud = NULL;
    assert_string_equal(decide(f), "default: deepseek/deepseek-flash openai/gpt-4o-mini");
    /* No header source at all (explain): a header rule never matches. */
    f->ctx.headers = (tg_header_source_t){NULL, NULL};
    assert_string_equal(decide(f), "default: deepseek/deepseek-flash openai/gpt-4o-mini");
}

static void test_tools_and_images(void **state) {
    fx_t *f = *state;
    req(f, "auto", EN, NULL, NOON);
    f->scan.has_tools = 1;
    /* require min_context 150000 drops gpt-4o-mini (128000). */
    assert_string_equal(decide(f), "tools: anthropic/claude-haiku-4-5");
    req(f, "auto", EN, NULL, NOON);
    f->scan.has_images = 1;
    assert_string_equal(decide(f), "vision: openai/gpt-4o-mini");
}

static void test_prompt_bounds(void **state) {
    fx_t *f = *state;
    req(f, "auto", "hi", NULL, NOON);
    assert_string_equal(decide(f), "short: mistral/mistral-small");
    assert_int_equal(f->out.prompt_tokens, 1 + 4);
    /* 8,000 bytes of text around the English question: ~2,000 tokens.
     * The require (output <= 1.0 USD/Mtok) drops Claude (5.00) and keeps
     * Mistral (0.30), DeepSeek off-peak (0.60) and Qwen (0.90), cheapest first. */
    req(f, "auto", EN, NULL, NOON);
    f->scan.text_bytes = 8000;
    assert_string_equal(decide(f), "long: mistral/mistral-small deepseek/deepseek-flash qwen/qwen-plus");
    /* At DeepSeek's peak its output costs 1.20: the require drops it. */
    req(f, "auto", EN, NULL, DAY0 + 7 * HOUR);
    f->scan.text_bytes = 8000;
    assert_string_equal(decide(f), "long: mistral/mistral-small qwen/qwen-plus");
}

static void test_time_window(void **state) {
    fx_t *f = *state;
    int64_t in[] = {22 * 60, 23 * 60 + 30, 0, 60 + 59};
    int64_t out[] = {21 * 60 + 59, 2 * 60, 12 * 60};
    for (size_t i = 0; i < 4; i++) {
        req(f, "auto", EN, NULL, DAY0 + in[i] * 60000);
        assert_string_equal(decide(f), "night: deepseek/deepseek-flash");
    }
    for (size_t i = 0; i < 3; i++) {
        req(f, "auto", EN, NULL, DAY0 + out[i] * 60000);
        assert_string_equal(decide(f), "default: deepseek/deepseek-flash openai/gpt-4o-mini");
    }
}

static void test_cheapest_follows_windows(void **state) {
    fx_t *f = *state;
    /* Off-peak DeepSeek (0.15 / 0.60) is cheaper than Qwen (0.20 / 0.90) ... */
    req(f, "auto", ZH, NULL, NOON);
    assert_string_equal(decide(f), "chinese-cheap: deepseek/deepseek-flash qwen/qwen-plus");
    /* ... at peak (0.30 / 1.20) it is not, and it stays second for failover. */
    req(f, "auto", ZH, NULL, DAY0 + 2 * HOUR);
    assert_string_equal(decide(f), "chinese-cheap: qwen/qwen-plus deepseek/deepseek-flash");
}

static void fail_5(tg_health_t *h, const char *p, const char *m, int64_t now) {
    tg_health_entry_t *e = tg_health_get(h, p, m);
    for (int i = 0; i < 5; i++) {
        tg_health_begin(e, now);
        tg_health_end(e, TG_OUTCOME_FAIL, -1, 0, 1, now);
    }
}

static void test_residency_never_relaxed(void **state) {
    fx_t *f = *state;
    /* Chinese text from an eu-only tenant matches chinese-cheap first, but
     * the tenant's require still binds: no cn or sg provider, so 503. */
    req(f, "auto", ZH, "team-web", NOON);
    assert_string_equal(decide(f), "503");
    assert_non_null(strstr(f->out.err, "region cn is not in [eu, us]"));
    /* Naming the provider directly, or through an alias: 403. */
    req(f, "deepseek/deepseek-flash", EN, "team-web", NOON);
    assert_string_equal(decide(f), "403");
    req(f, "ds", EN, "team-web", NOON);
    assert_string_equal(decide(f), "403");
    req(f, "chinese-cheap", EN, "team-web", NOON);
    assert_string_equal(decide(f), "503");
    /* Other keys are not bound by the tenant rule. */
    req(f, "deepseek/deepseek-flash", EN, "plain", NOON);
    assert_string_equal(decide(f), "direct: deepseek/deepseek-flash");
    /* The allowed providers failing: their circuits open, DeepSeek (listed
     * in the route) is still never offered: 503, not a violation. */
    tg_health_t *h = tg_health_new();
    fail_5(h, "mistral", "mistral-small", 1000);
    req(f, "auto", EN, "team-web", NOON);
    f->opts.health = h, f->opts.now_ms = 1000;
    assert_string_equal(decide(f), "eu-tenants: openai/gpt-4o-mini");
    fail_5(h, "openai", "gpt-4o-mini", 1000);
    assert_string_equal(decide(f), "503");
    assert_non_null(strstr(f->out.err, "circuit open"));
    assert_null(f->out.cands);
    /* After the cool-down they may be probed again. */
    f->opts.now_ms = 11000;
    assert_string_equal(decide(f), "eu-tenants: mistral/mistral-small openai/gpt-4o-mini");
    tg_health_free(h);
}

static void test_circuit_and_health_entries(void **state) {
    fx_t *f = *state;
    tg_health_t *h = tg_health_new();
    req(f, "auto", ZH, NULL, NOON);
    f->opts.health = h, f->opts.now_ms = 5000;
    assert_int_equal(pick(f), 0);
    assert_non_null(f->out.health);
    assert_ptr_equal(f->out.health[0], tg_health_get(h, "deepseek", "deepseek-flash"));
    assert_ptr_equal(f->out.health[1], tg_health_get(h, "qwen", "qwen-plus"));
    fail_5(h, "deepseek", "deepseek-flash", 5000);
    assert_string_equal(decide(f), "chinese-cheap: qwen/qwen-plus");
    /* The probe is out: the half-open candidate is skipped meanwhile. */
    f->opts.now_ms = 15000;
    assert_string_equal(decide(f), "chinese-cheap: deepseek/deepseek-flash qwen/qwen-plus");
    tg_health_begin(tg_health_get(h, "deepseek", "deepseek-flash"), 15000);
    assert_string_equal(decide(f), "chinese-cheap: qwen/qwen-plus");
    /* A direct request is skipped the same way: 503. */
    req(f, "ds", EN, NULL, NOON);
    f->opts.health = h, f->opts.now_ms = 15001;
    assert_string_equal(decide(f), "503");
    tg_health_free(h);
}

static void test_weighted_through_pick(void **state) {
    fx_t *f = *state;
    tg_health_t *h = tg_health_new();
    int ds = 0;
    for (int i = 0; i < 1000; i++) {
        req(f, "auto", EN, NULL, NOON);
        f->opts.health = h, f->opts.now_ms = 1;
        assert_int_equal(pick(f), 0);
        assert_int_equal(f->out.n, 2);
        ds += !strcmp(f->out.cands[0].target, "deepseek/deepseek-flash");
    }
    assert_int_equal(ds, 750);
    tg_health_free(h);
}

static json_t *find_cand(json_t *cands, const char *target) {
    size_t i;
    json_t *c;
    json_array_foreach(cands, i,
                       c) if (!strcmp(json_string_value(json_object_get(c, "target")), target)) return c;
    return NULL;
}

static void test_explain(void **state) {
    fx_t *f = *state;
    if (getenv("SHOW_EXPLAIN")) {
        char *t = NULL;
        req(f, "auto", ZH, NULL, DAY0 + 2 * HOUR);
        tg_route_explain(f->c, &f->ctx, NULL, f->pool, &t);
        fprintf(stderr, "%s\n", t);
        free(t);
    }
    req(f, "auto", ZH, "team-web", DAY0 + 2 * HOUR);
    char *txt = NULL;
    assert_int_equal(tg_route_explain(f->c, &f->ctx, NULL, f->pool, &txt), 0);
    json_t *o = json_loads(txt, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "route")), "chinese-cheap");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 503);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "request"), "language")), "zh");
    json_t *cons = json_object_get(o, "constraints");
    assert_int_equal(json_array_size(cons), 1);
    assert_non_null(strstr(json_string_value(json_array_get(cons, 0)), "region in [eu, us]"));
    json_t *ds = find_cand(json_object_get(o, "candidates"), "deepseek/deepseek-flash");
    assert_false(json_is_true(json_object_get(ds, "kept")));
    assert_non_null(strstr(json_string_value(json_object_get(ds, "why")), "region cn"));
    json_decref(o);
    free(txt);

    /* A routable request: candidates in order with costs, rules tried. */
    req(f, "auto", EN, NULL, NOON);
    f->scan.has_tools = 1;
    assert_int_equal(tg_route_explain(f->c, &f->ctx, NULL, f->pool, &txt), 0);
    o = json_loads(txt, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
    assert_string_equal(json_string_value(json_object_get(o, "route")), "tools");
    json_t *rules = json_object_get(o, "rules_tried");
    assert_int_equal(json_array_size(rules), 5);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_array_get(rules, 0), "why")), "language is en"));
    assert_true(json_is_true(json_object_get(json_array_get(rules, 4), "matched")));
    json_t *cands = json_object_get(o, "candidates");
    json_t *first = json_array_get(cands, 0);
    assert_string_equal(json_string_value(json_object_get(first, "target")), "anthropic/claude-haiku-4-5");
    assert_int_equal(json_integer_value(json_object_get(first, "order")), 1);
    /* 17 + 4 prompt tokens x 1.00 + 256 x 5.00 = 1301 micro-USD. */
    assert_int_equal(json_integer_value(json_object_get(first, "est_cost_micro_usd")), 1301);
    assert_string_equal(json_string_value(json_object_get(first, "est_cost_usd")), "0.001301");
    json_t *mini = json_array_get(cands, 1);
    assert_false(json_is_true(json_object_get(mini, "kept")));
    assert_non_null(strstr(json_string_value(json_object_get(mini, "why")), "below min_context 150000"));
    json_decref(o);
    free(txt);
}

/* --- model patterns, prices and kinds (tests/unit/policy/patterns.yaml) --- */

static int setup_patterns(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    tg_diag_t d = {0};
    f->c = tg_config_load("tests/unit/policy/patterns.yaml", &d);
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    tg_diag_free(&d);
    if (f->c == NULL) return -1;
    f->pool = tg_pool_create(8192);
    *state = f;
    return 0;
}

static void test_pattern_alias_and_match(void **state) {
    fx_t *f = *state;
    /* Any claude-* id reaches Anthropic unchanged; a longer alias wins. */
    req(f, "claude-opus-5-5", EN, NULL, NOON);
    assert_string_equal(decide(f), "direct: anthropic/claude-opus-5-5");
    req(f, "claude-haiku-5-5", EN, NULL, NOON);
    assert_string_equal(decide(f), "direct: anthropic/claude-haiku-4-5");
    /* A direct id covered by a pattern price is a known model. */
    req(f, "anthropic/claude-opus-4-5-20251101", EN, NULL, NOON);
    assert_string_equal(decide(f), "direct: anthropic/claude-opus-4-5-20251101");
    /* match.model by prefix. */
    req(f, "gpt-5", EN, NULL, NOON);
    assert_string_equal(decide(f), "gpt-family: openai/gpt-4o-mini mistral/mistral-small");
    req(f, "gp", EN, NULL, NOON);
    assert_string_equal(decide(f), "404");
}

/* A candidate without a price is never called: refused by name. */
static void test_unpriced_candidate_refused(void **state) {
    fx_t *f = *state;
    req(f, "claude-sonnet-4-5", EN, NULL, NOON);
    assert_string_equal(decide(f), "503");
    assert_non_null(
        strstr(f->out.err, "anthropic/claude-sonnet-4-5: no price for anthropic/claude-sonnet-4-5"));
    /* Named directly, a model no price covers is unknown. */
    req(f, "anthropic/claude-sonnet-4-5", EN, NULL, NOON);
    assert_string_equal(decide(f), "404");
    char *txt = NULL;
    req(f, "claude-sonnet-4-5", EN, NULL, NOON);
    assert_int_equal(tg_route_explain(f->c, &f->ctx, NULL, f->pool, &txt), 0);
    assert_non_null(strstr(txt, "never billed $0"));
    assert_non_null(strstr(txt, "\"resolved_model\": \"anthropic/claude-sonnet-4-5\""));
    free(txt);
}

/* Embedding models serve embeddings only, chat models everything else. */
static void test_kinds(void **state) {
    fx_t *f = *state;
    req(f, "embed", "", NULL, NOON);
    f->ctx.kind = TG_KIND_EMBEDDINGS;
    assert_string_equal(decide(f), "embed: openai/text-embedding-3-small mistral/mistral-embed");
    req(f, "mini", "", NULL, NOON);
    f->ctx.kind = TG_KIND_EMBEDDINGS;
    assert_string_equal(decide(f), "400");
    assert_non_null(strstr(f->out.err, "openai/gpt-4o-mini is a chat model, not an embedding model"));
    req(f, "openai/text-embedding-3-small", EN, NULL, NOON);
    assert_string_equal(decide(f), "400");
    assert_non_null(strstr(f->out.err, "is an embedding model, not a chat model"));
    req(f, "openai/text-embedding-3-small", EN, NULL, NOON);
    f->ctx.kind = TG_KIND_COUNT_TOKENS;
    assert_string_equal(decide(f), "400");
    req(f, "claude-opus-5-5", EN, NULL, NOON);
    f->ctx.kind = TG_KIND_COUNT_TOKENS;
    assert_string_equal(decide(f), "direct: anthropic/claude-opus-5-5");
    /* An eu-only tenant's embeddings: residency still holds. */
    req(f, "embed", "", "team-eu", NOON);
    f->ctx.kind = TG_KIND_EMBEDDINGS;
    assert_string_equal(decide(f), "embed: mistral/mistral-embed");
}

/* What GET /v1/models asks: the route engine's residency for a key. */
static void test_permits(void **state) {
    fx_t *f = *state;
    const tg_route_t *gpt = tg_config_route(f->c, "gpt-family");
    const tg_key_t *eu = key(f, "team-eu"), *plain = key(f, "plain");
    assert_true(tg_route_permits(f->c, plain, gpt, &gpt->candidates[0], NOON));
    assert_false(tg_route_permits(f->c, eu, gpt, &gpt->candidates[0], NOON));
    assert_true(tg_route_permits(f->c, eu, gpt, &gpt->candidates[1], NOON));
    assert_true(tg_route_permits(f->c, NULL, NULL, &gpt->candidates[0], NOON));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_alias_direct),
        cmocka_unit_test(test_unknown_models),
        cmocka_unit_test(test_language),
        cmocka_unit_test(test_key_and_tag),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_tools_and_images),
        cmocka_unit_test(test_prompt_bounds),
        cmocka_unit_test(test_time_window),
        cmocka_unit_test(test_cheapest_follows_windows),
        cmocka_unit_test(test_residency_never_relaxed),
        cmocka_unit_test(test_circuit_and_health_entries),
        cmocka_unit_test(test_weighted_through_pick),
        cmocka_unit_test(test_explain),
    };
    const struct CMUnitTest pattern_tests[] = {
        cmocka_unit_test(test_pattern_alias_and_match),
        cmocka_unit_test(test_unpriced_candidate_refused),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_permits),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return rc + cmocka_run_group_tests(pattern_tests, setup_patterns, teardown);
}
