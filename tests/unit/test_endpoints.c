/* test_endpoints.c — the endpoints beside chat, below the HTTP server:
 * GET /v1/models as each key sees it (tests/unit/policy/patterns.yaml: an
 * eu-only tenant rule, a pattern alias, pattern and embedding prices), the
 * local count_tokens answer, and the upstream request each dialect builds
 * for an embeddings or a count_tokens call (path, body with the model
 * spliced) or refuses. */
// clang-format off
/* deps: gateway/endpoints.c policy/route.c policy/strategy.c policy/health.c policy/price.c policy/lang.c providers/openai.c providers/anthropic.c providers/translate.c providers/translate_stream.c providers/responses.c providers/responses_fast.c providers/responses_req.c providers/responses_stream.c core/money.c core/config.c core/config_load.c core/config_schema.c core/config_listen.c core/config_yaml.c core/config_price.c core/scan.c core/pool.c core/log.c */
// clang-format on
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "gateway/endpoints.h"
#include "providers/provider.h"

#define NOON (20000 * 24 * 3600 * 1000LL + 12 * 3600 * 1000LL)

static tg_config_t *load(void) {
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load("tests/unit/policy/patterns.yaml", &d);
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    tg_diag_free(&d);
    assert_non_null(c);
    return c;
}

static const tg_key_t *key(const tg_config_t *c, const char *name) {
    for (size_t i = 0; i < c->n_keys; i++)
        if (!strcmp(c->keys[i].name, name)) return &c->keys[i];
    return NULL;
}

/* The ids GET /v1/models lists for key, as one space-separated string. */
static char *ids(const tg_config_t *c, const tg_key_t *k) {
    size_t len = 0;
    char *s = tg_endpoint_models(c, k, NOON, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    json_t *o = json_loads(s, 0, NULL);
    free(s);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "list");
    static char buf[2048];
    size_t n = 0, i;
    json_t *m;
    buf[0] = '\0';
    json_array_foreach(json_object_get(o, "data"), i, m) {
        assert_string_equal(json_string_value(json_object_get(m, "object")), "model");
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", n ? " " : "",
                              json_string_value(json_object_get(m, "id")));
    }
    json_decref(o);
    return buf;
}

static void test_models_per_key(void **state) {
    tg_config_t *c = load();
    /* Every route, alias (the pattern as itself) and priced id; no pattern price. */
    assert_string_equal(ids(c, key(c, "plain")),
                        "eu-tenants gpt-family embed claude-* claude-haiku-* mini openai/gpt-4o-mini "
                        "openai/text-embedding-3-small mistral/mistral-small mistral/mistral-embed");
    /* The eu-only tenant: only what an eu provider can serve. */
    assert_string_equal(ids(c, key(c, "team-eu")),
                        "eu-tenants gpt-family embed mistral/mistral-small mistral/mistral-embed");
    tg_config_unref(c);
}

static void test_count_body(void **state) {
    tg_pool_t *pool = tg_pool_create(1024);
    tg_scan_req_t scan;
    char err[128];
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"How many tokens is this?\"}]}";
    assert_int_equal(tg_scan_request(body, strlen(body), pool, &scan, err, sizeof(err)), 0);
    size_t len = 0;
    const char *out = tg_endpoint_count_body(pool, &scan, &len);
    assert_string_equal(out, "{\"input_tokens\":10}"); /* 24 bytes / 4 + 4 for the message */
    assert_int_equal(len, strlen(out));
    tg_provider_t an = {.name = "anthropic", .dialect_name = "anthropic"},
                  oa = {.name = "o", .dialect_name = "openai"};
    assert_true(tg_endpoint_counts_upstream(&an));
    assert_false(tg_endpoint_counts_upstream(&oa));
    tg_pool_destroy(pool);
}

static const char *no_header(void *ud, const char *name, size_t *len) {
    return NULL;
}

/* Builds the upstream request of one call of `kind` for body on provider p. */
static int build(tg_pool_t *pool, const tg_dialect_t *d, tg_provider_t *p, tg_client_dialect_t client,
                 tg_kind_t kind, const char *body, tg_upcall_req_t *out, char *err, size_t errlen) {
    static tg_scan_req_t scan;
    char e[128];
    assert_int_equal(tg_scan_request_bare(body, strlen(body), pool, &scan, e, sizeof(e)), 0);
    tg_call_t c = {.pool = pool,
                   .body = body,
                   .body_len = strlen(body),
                   .scan = &scan,
                   .client = client,
                   .provider = p,
                   .model = "served-model",
                   .headers = {no_header, NULL},
                   .kind = kind};
    memset(out, 0, sizeof(*out));
    return d->build(&c, out, err, errlen);
}

static void test_build_by_kind(void **state) {
    tg_pool_t *pool = tg_pool_create(4096);
    tg_provider_t oa = {.name = "openai", .url = "http://sim/openai/v1", .api_key = "k"};
    tg_provider_t an = {.name = "anthropic", .url = "http://sim/anthropic", .api_key = "k"};
    tg_upcall_req_t req;
    char err[256];
    const char *emb =
        "{\"model\":\"small-embed\",\"input\":[\"a\",\"b\"],\"encoding_format\":\"base64\",\"dimensions\":8}";
    assert_int_equal(build(pool, &tg_dialect_openai, &oa, TG_CLIENT_OPENAI, TG_KIND_EMBEDDINGS, emb, &req,
                           err, sizeof(err)),
                     0);
    assert_string_equal(req.url, "http://sim/openai/v1/embeddings");
    assert_string_equal(req.body,
                        "{\"model\":\"served-model\",\"input\":[\"a\",\"b\"],\"encoding_format\":\"base64\","
                        "\"dimensions\":8}");
    assert_int_equal(build(pool, &tg_dialect_anthropic, &an, TG_CLIENT_OPENAI, TG_KIND_EMBEDDINGS, emb, &req,
                           err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "no embeddings endpoint"));

    const char *cnt = "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(build(pool, &tg_dialect_anthropic, &an, TG_CLIENT_ANTHROPIC, TG_KIND_COUNT_TOKENS, cnt,
                           &req, err, sizeof(err)),
                     0);
    assert_string_equal(req.url, "http://sim/anthropic/v1/messages/count_tokens");
    assert_string_equal(req.body,
                        "{\"model\":\"served-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(build(pool, &tg_dialect_openai, &oa, TG_CLIENT_ANTHROPIC, TG_KIND_COUNT_TOKENS, cnt,
                           &req, err, sizeof(err)),
                     -1);
    /* Chat keeps its paths. */
    assert_int_equal(build(pool, &tg_dialect_anthropic, &an, TG_CLIENT_ANTHROPIC, TG_KIND_CHAT, cnt, &req,
                           err, sizeof(err)),
                     0);
    assert_string_equal(req.url, "http://sim/anthropic/v1/messages");
    tg_pool_destroy(pool);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models_per_key),
        cmocka_unit_test(test_count_body),
        cmocka_unit_test(test_build_by_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
