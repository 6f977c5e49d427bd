/* test_config.c — the config loader as an operator meets it: the shipped
 * defaults load, every kind of mistake is reported as FILE:LINE:COL with the
 * right message, includes and JSON work, and the snapshot's lookups (prices
 * by time of day, simulated providers, gateway keys) and its reference
 * counting behave. Fixtures live in tests/unit/config/. */
/* clang-format off */
/* deps: core/config.c core/config_load.c core/config_schema.c core/config_listen.c core/config_yaml.c core/config_keys.c core/config_price.c core/config_check.c core/pool.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/config.h"

#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "tests/unit/config/"

static int has_msg(const tg_diag_t *d, const char *msg) {
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->msgs[i], msg)) return 1;
    fprintf(stderr, "missing diagnostic: %s\nhave:\n", msg);
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  %s\n", d->msgs[i]);
    return 0;
}

#define assert_diag(d, msg) assert_true(has_msg((d), (msg)))

/* Loads a fixture that must fail and returns its diagnostics. */
static tg_diag_t load_bad(const char *path) {
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(path, &d);
    assert_null(c);
    assert_true(d.n_errors > 0);
    return d;
}

static void test_defaults_load(void **state) {
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load("config/tollgate.yaml", &d);
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    assert_non_null(c);
    assert_int_equal(d.n_errors, 0);
    assert_int_equal(c->n_providers, 13);
    assert_int_equal(c->n_routes, 3);
    assert_int_equal(c->n_prices, 32);
    assert_int_equal(c->n_keys, 1);
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 8080);
    assert_true(c->workers >= 1);
    assert_string_equal(c->redis_url, "redis://127.0.0.1:6379/0");
    assert_int_equal(c->limits.max_body_bytes, 4194304);
    assert_int_equal(c->limits.max_attempts, 3);
    assert_int_equal(c->limits.header_timeout_ms, 10000);

    const tg_provider_t *an = tg_config_provider(c, "anthropic", 9);
    assert_non_null(an);
    assert_string_equal(an->dialect_name, "anthropic");
    assert_int_equal(an->default_max_tokens, 4096);
    assert_null(tg_config_provider(c, "anthropicx", 10));
    assert_null(tg_config_provider(c, "anth", 4));

    const tg_price_t *p = tg_config_price(c, "deepseek", "deepseek-flash");
    assert_non_null(p);
    int64_t in, cin, out;
    tg_price_at(p, 2 * 60, &in, &cin, &out); /* 02:00 UTC: peak */
    assert_int_equal(in, 300000);
    assert_int_equal(cin, 6000);
    assert_int_equal(out, 1200000);
    tg_price_at(p, 12 * 60, &in, &cin, &out); /* 12:00 UTC: off-peak */
    assert_int_equal(in, 150000);
    assert_int_equal(out, 600000);
    const tg_price_t *q = tg_config_price(c, "qwen", "qwen-plus");
    assert_int_equal(q->cached_input, q->input); /* unknown cache price: input */
    const tg_price_t *s = tg_config_price(c, "anthropic", "claude-sonnet-4-5");
    assert_int_equal(s->cache_write, 3750000);
    assert_string_equal(s->as_of, "2026-11-22");

    const tg_route_t *r = tg_config_route(c, "default");
    assert_non_null(r);
    assert_int_equal(r->strategy, TG_STRATEGY_WEIGHTED);
    assert_int_equal(r->n_candidates, 2);
    assert_int_equal(r->candidates[0].weight, 3);
    assert_string_equal(r->candidates[1].provider->name, "openai");
    assert_string_equal(r->candidates[1].model, "gpt-4o-mini");
    const tg_route_t *eu = tg_config_route(c, "eu-tenants");
    assert_string_equal(eu->m_key_tag, "eu-only");
    assert_int_equal(eu->n_r_regions, 2);
    assert_string_equal(eu->r_regions[0], "eu");
    assert_string_equal(tg_config_route(c, "chinese-cheap")->m_language, "zh");

    assert_string_equal(tg_config_alias(c, "claude")->target, "anthropic/claude-sonnet-4-5");
    assert_null(tg_config_alias(c, "nope"));
    /* Claude Code's default ids reach Anthropic and are priced by family;
     * Opus 4 and 4.1, dearer, are not priced at the 4.5+ price. */
    assert_string_equal(tg_config_alias(c, "claude-opus-5-5")->target, "anthropic/claude-*");
    assert_int_equal(tg_config_price(c, "anthropic", "claude-opus-5-5")->output, 25000000);
    assert_int_equal(tg_config_price(c, "anthropic", "claude-haiku-5-5")->output, 5000000);
    assert_int_equal(tg_config_price(c, "anthropic", "claude-haiku-4-5-20251001")->cache_write, 1250000);
    assert_int_equal(tg_config_price(c, "anthropic", "claude-sonnet-4-5-20250929")->input, 3000000);
    assert_null(tg_config_price(c, "anthropic", "claude-opus-4-1-20250805"));
    assert_null(tg_config_price(c, "anthropic", "claude-opus-4-20250514"));
    assert_true(tg_config_price(c, "openai", "text-embedding-3-small")->embedding);
    tg_config_unref(c);
    tg_diag_free(&d);
}

static void test_unknown_keys_and_types(void **state) {
    tg_diag_t d = load_bad(FIX "bad_keys.yaml");
    assert_diag(&d,
                FIX "bad_keys.yaml:2:1: unknown key 'workres' in the top level (did you mean 'workers'?)");
    assert_diag(&d, FIX
                "bad_keys.yaml:3:11: unknown key 'max_body_byte' in limits (did you mean 'max_body_bytes'?)");
    assert_diag(&d, FIX "bad_keys.yaml:3:41: expected an integer for 'idle_ms', got 'soon'");
    assert_diag(&d, FIX "bad_keys.yaml:6:5: unknown key 'dialec' in provider 'p1' (did you mean 'dialect'?)");
    assert_diag(&d, FIX "bad_keys.yaml:9:25: expected an integer for 'default_max_tokens', got 'lots'");
    assert_diag(&d, FIX "bad_keys.yaml:11:98: expected an integer for 'rpm', got a list");
    assert_diag(&d, FIX
                "bad_keys.yaml:14:14: unknown key 'modle' in match of route 'r1' (did you mean 'model'?)");
    assert_diag(&d, FIX "bad_keys.yaml:14:38: expected true or false for 'has_tools', got 'maybe'");
    assert_diag(&d,
                FIX "bad_keys.yaml:17:36: unknown key 'contxt' in price 'p1/m' (did you mean 'context'?)");
    assert_diag(&d, FIX "bad_keys.yaml:17:18: expected a number for 'input', got 'cheap'");
    assert_int_equal(d.n_errors, 10);
    tg_diag_free(&d);
}

static void test_bad_values(void **state) {
    tg_diag_t d = load_bad(FIX "bad_values.yaml");
#define B FIX "bad_values.yaml:"
    assert_diag(&d,
                B "1:9: cannot parse listen address '0.0.0.0:http' (expected host:port, e.g. 0.0.0.0:8080)");
    assert_diag(&d, B "2:10: 'workers' must be positive, got 0");
    assert_diag(&d, B "3:8: redis must be a redis://, rediss:// or unix: URL, or null for no ledger; got "
                      "'http://localhost:6379'");
    assert_diag(&d, B "4:12: unknown log_level 'verbose' (expected debug, info, warn or error)");
    assert_diag(&d, B "5:20: 'idle_ms' must be positive, got 0");
    assert_diag(&d, B "5:37: 'max_attempts' must be positive, got -1");
    assert_diag(&d, B "6:19: simulator url '127.0.0.1:8090' is not an http:// or https:// URL with a host");
    assert_diag(&d, B "8:3: provider 'nourl' is missing required field 'base_url'");
    assert_diag(&d, B "9:3: provider 'nodialect' is missing required field 'dialect'");
    assert_diag(&d, B "10:40: base_url 'ftp://example.com/v1' is not an http:// or https:// URL with a host");
    assert_diag(&d, B "11:40: base_url 'https:///v1' is not an http:// or https:// URL with a host");
    assert_diag(&d, B "12:20: unknown dialect 'grpc' (expected openai or anthropic)");
    assert_diag(&d, B "13:22: unknown dialect 'antropic' (did you mean 'anthropic'?)");
    assert_diag(&d, B "15:28: sha256 of key 'short' must be 64 hex characters, got 'abc123'");
    assert_diag(&d, B "17:5: key is missing required field 'name'");
    assert_diag(&d, B "20:15: unknown strategy 'cheap' (did you mean 'cheapest'?)");
    assert_diag(&d, B "21:24: unknown language 'zz' (did you mean 'zh'?)");
    assert_diag(&d, B "21:42: expected a time HH:MM (UTC) for 'from', got '25:00'");
    assert_diag(&d, B "21:55: expected a time HH:MM (UTC) for 'to', got '1:00'");
    assert_diag(&d, B "24:15: unknown strategy 'fastset' (did you mean 'fastest'?)");
    assert_diag(&d, B "25:17: route 'r2' has no candidates");
    assert_diag(&d, B "26:5: route 'r3' is missing required field 'candidates'");
    assert_diag(&d, B "29:12: negative price for 'input': -1");
    assert_diag(&d, B "32:30: expected a time HH:MM (UTC) for 'to', got '24:30'");
    assert_diag(&d, B "32:47: negative price for 'output': -0.5");
    assert_diag(&d, B "33:9: price window is missing required field 'from'");
    assert_diag(&d, B "34:12: as_of must be a date YYYY-MM-DD, got '22/11/2026'");
    assert_diag(
        &d, B "35:3: price key 'nomodel' must be provider/model, or provider/prefix* (one '*', at the end)");
    assert_diag(&d,
                B "36:3: price 'grpc/m2' is missing required field 'input' (or free: true for a zero price)");
#undef B
    tg_diag_free(&d);
}

static void test_duplicates_across_files(void **state) {
    tg_diag_t d = load_bad(FIX "dup_main.yaml");
#define M FIX "dup_main.yaml:"
#define I FIX "dup_inc.yaml:"
    assert_diag(&d, I "11:1: 'listen' is only allowed in the main config file");
    assert_diag(&d, M "3:3: duplicate provider 'p1' (first defined at " I "2:3)");
    assert_diag(&d, M "5:13: duplicate key 'k1' (first defined at " I "4:13)");
    assert_diag(&d, M "5:25: key 'k1' has the same sha256 as key 'k2' (" I "5:13)");
    assert_diag(&d, M "7:13: duplicate route 'r1' (first defined at " I "7:5)");
    assert_diag(&d, M "8:12: duplicate alias 'a1' (first defined at " I "8:12)");
    assert_diag(&d, M "10:3: duplicate price 'p1/m' (first defined at " I "10:3)");
#undef M
#undef I
    tg_diag_free(&d);
}

static void test_unknown_references(void **state) {
    tg_diag_t d = load_bad(FIX "refs.yaml");
#define R FIX "refs.yaml:"
    assert_diag(&d, R "5:18: candidate 'nope/m' of route 'r1' names unknown provider 'nope'");
    assert_diag(&d, R "5:32: candidate 'ghost/x' of route 'r1' names unknown provider 'ghost'");
    assert_diag(&d, R "5:60: candidate 'justamodel' of route 'r1' must be provider/model");
    assert_diag(&d, R "7:7: alias 'a1' names unknown route 'nowhere'");
    assert_diag(&d, R "8:7: alias 'a2' names unknown provider 'ghost'");
    assert_diag(&d, R "12:3: price 'gone/m' names unknown provider 'gone'");
    assert_int_equal(d.n_errors, 6); /* a3 -> r1 and p1/m are fine */
#undef R
    tg_diag_free(&d);
}

static void test_include_relative_to_including_file(void **state) {
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(FIX "inc_main.yaml", &d);
    assert_non_null(c);
    const tg_route_t *r = tg_config_route(c, "from-sub");
    assert_non_null(r);
    assert_string_equal(r->file, FIX "sub/routes.yaml");
    assert_int_equal(r->line, 3);
    const tg_price_t *p = tg_config_price(c, "p1", "m"); /* sub/prices.yaml, named from sub/ */
    assert_non_null(p);
    assert_int_equal(p->input, 1500000);
    assert_int_equal(p->output, 2250000);
    const tg_provider_t *pr = tg_config_provider(c, "p1", 2);
    assert_int_equal(pr->n_models, 1);
    assert_string_equal(pr->models[0], "m");
    assert_null(pr->models[1]);
    tg_config_unref(c);
    tg_diag_free(&d);
}

static void test_include_cycle(void **state) {
    tg_diag_t d = load_bad(FIX "cyc_a.yaml");
    assert_diag(&d, FIX "cyc_b.yaml:1:11: include cycle: " FIX "cyc_a.yaml -> " FIX "cyc_b.yaml -> " FIX
                        "cyc_a.yaml");
    assert_int_equal(d.n_errors, 1);
    tg_diag_free(&d);
}

static void test_missing_file_and_syntax_error(void **state) {
    tg_diag_t d = load_bad(FIX "no-such.yaml");
    assert_diag(&d, FIX "no-such.yaml:1:1: cannot open config file " FIX
                        "no-such.yaml: No such file or directory");
    tg_diag_free(&d);
    d = load_bad(FIX "syntax.yaml");
    assert_diag(&d, FIX
                "syntax.yaml:3:7: YAML syntax error: did not find expected ',' or '}' while parsing a flow "
                "mapping");
    tg_diag_free(&d);
}

static void test_json_config(void **state) {
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(FIX "ok.json", &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 9090);
    assert_int_equal(c->workers, 2);
    assert_null(c->redis_url);
    const tg_provider_t *p = tg_config_provider(c, "local", 5);
    assert_string_equal(p->url, "http://127.0.0.1:8000/v1"); /* trailing slash stripped */
    assert_int_equal(p->simulated, 0);                       /* no api_key_env: keyless, not simulated */
    assert_int_equal(p->n_models, 1);
    const tg_price_t *pr = tg_config_price(c, "local", "llama");
    assert_int_equal(pr->input, 100000);
    assert_int_equal(pr->context, 8192);
    const tg_route_t *r = tg_config_route(c, "r");
    assert_int_equal(r->m_has_tools, 1);
    assert_int_equal(r->m_has_images, -1);
    assert_int_equal(r->candidates[0].weight, 2);
    assert_ptr_equal(r->candidates[0].provider, p);
    const tg_key_t *k = tg_config_key(c, "tg-demo-key", 11); /* sha256 in upper-case hex */
    assert_non_null(k);
    assert_int_equal(k->n_tags, 2);
    assert_int_equal(k->rpm, 60);
    tg_config_unref(c);
    tg_diag_free(&d);

    d = load_bad(FIX "bad.json");
    assert_diag(&d, FIX "bad.json:3:3: unknown key 'provders' in the top level (did you mean 'providers'?)");
    tg_diag_free(&d);
}

static void test_price_windows_cross_midnight(void **state) {
    tg_config_t *c = tg_config_load(FIX "windows.yaml", NULL);
    assert_non_null(c);
    const tg_price_t *p = tg_config_price(c, "p", "night");
    int64_t in, cin, out;
    tg_price_at(p, 12 * 60, &in, &cin, &out); /* outside every window */
    assert_int_equal(in, 1000000);
    assert_int_equal(cin, 500000);
    assert_int_equal(out, 2000000);
    tg_price_at(p, 22 * 60 + 29, &in, &cin, &out);
    assert_int_equal(in, 1000000);
    tg_price_at(p, 22 * 60 + 30, &in, &cin, &out); /* the wrapping window starts */
    assert_int_equal(in, 250000);
    assert_int_equal(cin, 500000); /* left out: base */
    assert_int_equal(out, 500000);
    tg_price_at(p, 0, &in, &cin, &out);
    assert_int_equal(in, 250000);
    tg_price_at(p, 90, &in, &cin, &out); /* 01:30: both match, the first wins */
    assert_int_equal(in, 250000);
    tg_price_at(p, 120, &in, &cin, &out); /* 02:00: first window over */
    assert_int_equal(in, 750000);
    assert_int_equal(out, 2000000);
    tg_price_at(p, 180, &in, &cin, &out);
    assert_int_equal(in, 1000000);
    tg_config_unref(c);

    assert_true(tg_config_in_window(600, 600, 5)); /* from == to: all day */
    assert_false(tg_config_in_window(60, 240, 240));
    assert_true(tg_config_in_window(1380, 60, 1439));
}

static const tg_provider_t *prov(const tg_config_t *c, const char *name) {
    return tg_config_provider(c, name, strlen(name));
}

static void test_simulated_provider_url(void **state) {
    unsetenv("TG_TEST_OA_KEY");
    unsetenv("TG_TEST_AN_KEY");
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(FIX "sim.yaml", &d);
    assert_non_null(c);
    assert_int_equal(d.n_errors, 0);
    assert_int_equal(prov(c, "oa")->simulated, 1);
    assert_string_equal(prov(c, "oa")->url, "http://127.0.0.1:9999/oa/v1");
    assert_null(prov(c, "oa")->api_key);
    assert_string_equal(prov(c, "an")->url, "http://127.0.0.1:9999/an"); /* anthropic: no /v1 */
    assert_int_equal(prov(c, "local")->simulated, 0);
    assert_diag(&d, FIX "sim.yaml:3:79: warning: provider 'oa': TG_TEST_OA_KEY is not set; calls go to the "
                        "simulator at http://127.0.0.1:9999/oa/v1");
    tg_config_unref(c);
    tg_diag_free(&d);

    setenv("TG_TEST_OA_KEY", "sk-test-123", 1);
    setenv("TG_TEST_AN_KEY", "", 1); /* empty counts as unset */
    c = tg_config_load(FIX "sim.yaml", &d);
    assert_non_null(c);
    assert_int_equal(prov(c, "oa")->simulated, 0);
    assert_string_equal(prov(c, "oa")->url, "https://oa.example.com/v1");
    assert_string_equal(prov(c, "oa")->api_key, "sk-test-123");
    assert_int_equal(prov(c, "an")->simulated, 1);
    tg_config_unref(c);
    tg_diag_free(&d);

    unsetenv("TG_TEST_OA_KEY");
    c = tg_config_load(FIX "sim_off.yaml", &d);
    assert_non_null(c);
    assert_int_equal(prov(c, "oa")->simulated, 0);
    assert_string_equal(prov(c, "oa")->url, "https://oa.example.com/v1");
    assert_diag(&d,
                FIX "sim_off.yaml:3:76: warning: provider 'oa': TG_TEST_OA_KEY is not set; calls are sent "
                    "without a key");
    tg_config_unref(c);
    tg_diag_free(&d);
    unsetenv("TG_TEST_AN_KEY");
}

static void test_stale_price_warns_but_loads(void **state) {
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(FIX "stale.yaml", &d);
    assert_non_null(c);
    assert_int_equal(d.n_errors, 0);
    assert_diag(&d,
                FIX "stale.yaml:4:77: warning: price 'p/m' is from 2020-01-01, more than 90 days ago: check "
                    "https://p.example.com/pricing");
    tg_config_unref(c);
    tg_diag_free(&d);
}

static void test_key_lookup(void **state) {
    tg_config_t *c = tg_config_load("config/tollgate.yaml", NULL);
    assert_non_null(c);
    const tg_key_t *k = tg_config_key(c, "tg-demo-key", 11);
    assert_non_null(k);
    assert_string_equal(k->name, "demo");
    assert_null(tg_config_key(c, "tg-demo-kez", 11));
    assert_null(tg_config_key(c, "tg-demo-ke", 10));
    assert_null(tg_config_key(c, "", 0));
    /* Digests are remembered per thread: secrets sharing a cache slot (same
     * length, same last and middle bytes), evictions and repeats still give
     * exact answers, and a near miss of a remembered key is refused. */
    char buf[32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 40; i++) {
            snprintf(buf, sizeof buf, "tg-%cemo-key", 'a' + i % 26);
            const tg_key_t *x = tg_config_key(c, buf, 11);
            if (buf[3] == 'd')
                assert_ptr_equal(x, k);
            else
                assert_null(x);
            assert_ptr_equal(tg_config_key(c, "tg-demo-key", 11), k);
            assert_null(tg_config_key(c, "tg-demo-kez", 11));
            assert_null(tg_config_key(c, "xg-demo-key", 11));
        }
    }
    char long_key[300];
    memset(long_key, 'k', sizeof long_key);
    assert_null(tg_config_key(c, long_key, sizeof long_key));
    tg_config_unref(c);
}

/* Reader and installer race on the global snapshot; ASan reports any
 * use-after-free or leak, and every reader must see a whole snapshot. */
static void *reader(void *arg) {
    int *bad = arg;
    for (int i = 0; i < 20000; i++) {
        tg_config_t *c = tg_config_current();
        if (c && (c->n_providers != 1 || strcmp(c->providers[0].name, "p"))) (*bad)++;
        tg_config_unref(c);
    }
    return NULL;
}

static void test_install_from_two_threads(void **state) {
    int bad = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader, &bad), 0);
    for (int i = 0; i < 200; i++) {
        tg_config_t *c = tg_config_load(FIX "windows.yaml", NULL);
        assert_non_null(c);
        tg_config_install(c);
    }
    pthread_join(t, NULL);
    assert_int_equal(bad, 0);
    tg_config_t *c = tg_config_current();
    assert_non_null(c);
    tg_config_t *extra = tg_config_ref(c); /* a request still holding the old snapshot */
    tg_config_install(NULL);
    assert_int_equal(extra->n_prices, 1); /* still valid: two references were held */
    tg_config_unref(extra);
    tg_config_unref(c);
    assert_null(tg_config_current());
}

/* Runs `tollgate check` on a file with stdout captured; returns the exit code. */
static int run_check(const char *path, char *out, size_t cap) {
    fflush(stdout);
    FILE *tmp = tmpfile();
    int saved = dup(STDOUT_FILENO);
    dup2(fileno(tmp), STDOUT_FILENO);
    int rc = tg_config_check_main(path);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return rc;
}

static void test_check_command(void **state) {
    char out[8192];
    assert_int_equal(run_check("config/tollgate.yaml", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "config/tollgate.yaml: ok (13 providers, 3 routes, 32 prices, 1 keys)\n"));
    assert_int_equal(run_check(FIX "stale.yaml", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "stale.yaml:4:77: warning: "));
    assert_int_equal(run_check(FIX "refs.yaml", out, sizeof(out)), 1);
    assert_non_null(strstr(out, FIX "refs.yaml:7:7: alias 'a1' names unknown route 'nowhere'\n"));
    assert_null(strstr(out, ": ok ("));
}

static char tmpdir[64];

static char *write_tmp(const char *name, const char *text) {
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/tg-config-test.XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
    }
    char *path;
    assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_policy_knobs(void **state) {
    char *main =
        write_tmp("knobs.yaml", "circuit: { failures: 2, cooldown_ms: 1500, max_cooldown_ms: 3000 }\n"
                                "routing: { default_output_tokens: 1000, latency_alpha: 0.5 }\n");
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(main, &d);
    assert_non_null(c);
    assert_int_equal(c->circuit.failures, 2);
    assert_int_equal(c->circuit.cooldown_ms, 1500);
    assert_int_equal(c->circuit.max_cooldown_ms, 3000);
    assert_int_equal(c->default_output_tokens, 1000);
    assert_true(c->latency_alpha == 0.5);
    tg_config_unref(c);
    char *empty = write_tmp("empty.yaml", "listen: 127.0.0.1:1\n");
    c = tg_config_load(empty, &d);
    assert_non_null(c); /* defaults */
    assert_int_equal(c->circuit.failures, 5);
    assert_int_equal(c->circuit.cooldown_ms, 10000);
    assert_int_equal(c->circuit.max_cooldown_ms, 60000);
    assert_int_equal(c->default_output_tokens, 256);
    tg_config_unref(c);
    tg_diag_free(&d);

    char *bad = write_tmp("badknobs.yaml", "circuit: { failures: 0, cooldown_ms: 5000, max_cooldown_ms: 100, "
                                           "probes: 3 }\nrouting: { latency_alpha: 1.5 }\n");
    d = load_bad(bad);
    char want[256];
    snprintf(want, sizeof(want), "%s:1:66: unknown key 'probes' in circuit", bad);
    assert_diag(&d, want);
    snprintf(want, sizeof(want), "%s:1:22: 'failures' must be positive, got 0", bad);
    assert_diag(&d, want);
    snprintf(want, sizeof(want), "%s:1:61: circuit max_cooldown_ms (100) is below cooldown_ms (5000)", bad);
    assert_diag(&d, want);
    snprintf(want, sizeof(want), "%s:2:27: routing latency_alpha must be in (0, 1], got 1.5", bad);
    assert_diag(&d, want);
    tg_diag_free(&d);
    free(main);
    free(empty);
    free(bad);
}

/* The reload watcher's test for "did any loaded file change". */
static void test_files_and_digest(void **state) {
    char *main = write_tmp("dg.yaml", "include: [dg-routes.yaml]\n");
    char *inc = write_tmp("dg-routes.yaml", "aliases: { a: p/m }\n");
    free(write_tmp("dg-routes.yaml", "aliases: {}\n"));
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(main, &d);
    assert_non_null(c);
    assert_int_equal(c->n_files, 2);
    assert_string_equal(c->files[0], main);
    assert_string_equal(c->files[1], inc);
    assert_true(tg_config_files_digest(c) == c->files_digest);
    free(write_tmp("dg-routes.yaml", "aliases: {}\n")); /* rewritten, same bytes */
    assert_true(tg_config_files_digest(c) == c->files_digest);
    free(write_tmp("dg-routes.yaml", "aliases: { }\n"));
    assert_true(tg_config_files_digest(c) != c->files_digest);
    unlink(inc);
    assert_true(tg_config_files_digest(c) != c->files_digest);
    tg_config_unref(c);
    tg_diag_free(&d);
    unlink(main);
    free(main);
    free(inc);
}

/* Price keys ending in '*' price every model they start; exact entries beat
 * them and the longest literal prefix wins. Aliases match the same way and
 * put what their '*' matched into the target's '*'. */
static void test_model_patterns(void **state) {
    char *path = write_tmp(
        "patterns.yaml",
        "providers:\n"
        "  anthropic: { dialect: anthropic, base_url: https://api.anthropic.com }\n"
        "  openai: { dialect: openai, base_url: https://api.openai.com/v1 }\n"
        "prices:\n"
        "  anthropic/claude-*: { input: 3, output: 15 }\n"
        "  anthropic/claude-opus-*: { input: 5, output: 25 }\n"
        "  anthropic/claude-opus-4-1*: { input: 15, output: 75 }\n"
        "  anthropic/claude-opus-4-5: { input: 4, output: 20 }\n"
        "  openai/text-embedding-3-small: { input: 0.02 }\n"
        "  openai/local-*: { free: true }\n"
        "aliases: { \"claude-*\": \"anthropic/claude-*\", \"claude-opus*\": anthropic/claude-opus-4-5,\n"
        "           claude-x: openai/local-x, \"l-*-beta\": \"openai/local-*-beta\" }\n");
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(path, &d);
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    assert_null(c); /* l-*-beta: a '*' may only end an alias name */
    assert_int_equal(d.n_errors, 1);
    tg_diag_free(&d);
    free(write_tmp(
        "patterns.yaml",
        "providers:\n"
        "  anthropic: { dialect: anthropic, base_url: https://api.anthropic.com }\n"
        "  openai: { dialect: openai, base_url: https://api.openai.com/v1 }\n"
        "prices:\n"
        "  anthropic/claude-*: { input: 3, output: 15 }\n"
        "  anthropic/claude-opus-*: { input: 5, output: 25 }\n"
        "  anthropic/claude-opus-4-1*: { input: 15, output: 75 }\n"
        "  anthropic/claude-opus-4-5: { input: 4, output: 20 }\n"
        "  openai/text-embedding-3-small: { input: 0.02 }\n"
        "  openai/local-*: { free: true }\n"
        "aliases: { \"claude-*\": \"anthropic/claude-*\", \"claude-opus*\": anthropic/claude-opus-4-5,\n"
        "           claude-x: openai/local-x }\n"));
    c = tg_config_load(path, &d);
    assert_non_null(c);
    assert_int_equal(tg_config_price(c, "anthropic", "claude-sonnet-4-5")->output, 15000000);
    assert_int_equal(tg_config_price(c, "anthropic", "claude-opus-5-5")->output, 25000000);
    assert_int_equal(tg_config_price(c, "anthropic", "claude-opus-4-1-20250805")->output, 75000000);
    assert_int_equal(tg_config_price(c, "anthropic", "claude-opus-4-5")->output, 20000000); /* exact */
    assert_int_equal(tg_config_price(c, "anthropic", "claude-opus-4-5-20251101")->output, 25000000);
    assert_null(tg_config_price(c, "anthropic", "gpt-4o"));
    assert_null(tg_config_price(c, "openai", "claude-opus-5"));
    /* Pattern keys are not model ids: the provider lists only exact ones. */
    const tg_provider_t *an = tg_config_provider(c, "anthropic", 9);
    assert_int_equal(an->n_models, 1);
    assert_string_equal(an->models[0], "claude-opus-4-5");
    /* Embedding (input only) and free entries. */
    const tg_price_t *emb = tg_config_price(c, "openai", "text-embedding-3-small");
    assert_true(emb->embedding);
    assert_true(tg_config_price_serves(emb, TG_KIND_EMBEDDINGS));
    assert_false(tg_config_price_serves(emb, TG_KIND_CHAT));
    const tg_price_t *fr = tg_config_price(c, "openai", "local-llama");
    assert_true(fr->free);
    assert_false(fr->embedding);
    assert_int_equal(fr->input, 0);
    assert_int_equal(fr->output, 0);
    assert_true(tg_config_price_serves(fr, TG_KIND_CHAT));
    assert_true(tg_config_price_serves(fr, TG_KIND_COUNT_TOKENS));
    assert_false(tg_config_price_serves(fr, TG_KIND_EMBEDDINGS));
    /* Aliases: exact, then the longest pattern prefix; the '*' carries over. */
    tg_pool_t *pool = tg_pool_create(1024);
    const tg_alias_t *a = tg_config_alias(c, "claude-haiku-5-5");
    assert_non_null(a);
    assert_true(a->pattern);
    assert_string_equal(tg_config_alias_target(a, "claude-haiku-5-5", pool), "anthropic/claude-haiku-5-5");
    a = tg_config_alias(c, "claude-opus-5-5");
    assert_string_equal(a->name, "claude-opus*");
    assert_string_equal(tg_config_alias_target(a, "claude-opus-5-5", pool), "anthropic/claude-opus-4-5");
    assert_string_equal(tg_config_alias(c, "claude-x")->name, "claude-x");
    assert_null(tg_config_alias(c, "gpt-4o"));
    assert_true(tg_config_model_match("claude-*", "claude-"));
    assert_true(tg_config_model_match("auto", "auto"));
    assert_false(tg_config_model_match("auto", "auto2"));
    assert_false(tg_config_model_match("claude-*", "claud"));
    tg_pool_destroy(pool);
    tg_config_unref(c);
    tg_diag_free(&d);
    unlink(path);
    free(path);
}

/* Every model a route, an alias or a direct provider/model can reach has a
 * price, or the config does not load; `free` and embedding entries are
 * checked for what they may say. */
static void test_every_reachable_model_priced(void **state) {
    char *path = write_tmp(
        "unpriced.yaml",
        "providers:\n"
        "  openai: { dialect: openai, base_url: https://api.openai.com/v1, models: [gpt-x] }\n"
        "  anthropic: { dialect: anthropic, base_url: https://api.anthropic.com, responses: native }\n"
        "  v: { dialect: openai, base_url: https://v.example/v1, responses: nativ }\n"
        "prices:\n"
        "  openai/gpt-4o-mini: { input: 0.15, output: 0.6 }\n"
        "  openai/emb: { input: 0.02, cached_input: 0.01 }\n"
        "  openai/zero: { free: true, output: 1 }\n"
        "  openai/gpt-*x: { input: 1, output: 1 }\n"
        "  anthropic/claude-opus-*: { input: 5, output: 25 }\n"
        "routes:\n"
        "  - { name: r, candidates: [openai/gpt-4o-mini, openai/gpt-9] }\n"
        "aliases: { a: openai/gpt-8, \"c-*\": \"anthropic/claude-*\", \"g-*\": \"openai/o-*\" }\n");
    tg_diag_t d = {0};
    assert_null(tg_config_load(path, &d));
    const char *want[] = {
        "model 'openai/gpt-x' (listed under models: of provider 'openai') has no price",
        "candidate 'openai/gpt-9' of route 'r' has no price: add 'openai/gpt-9' to prices",
        "alias 'a' reaches 'openai/gpt-8', which has no price",
        "alias 'g-*' reaches openai/o-*, but no price covers any model it can reach",
        "responses: native needs dialect openai (it is anthropic)",
        "unknown responses mode 'nativ' (did you mean 'native'?)",
        "price 'openai/emb' has no 'output': an embedding model is priced by 'input' only",
        "price 'openai/zero' is free: true but sets output",
        "price key 'openai/gpt-*x' must be provider/model, or provider/prefix* (one '*', at the end)",
    };
    for (size_t w = 0; w < sizeof(want) / sizeof(*want); w++) {
        int found = 0;
        for (size_t i = 0; i < d.n && !found; i++)
            found = strstr(d.msgs[i], want[w]) != NULL;
        if (!found) fprintf(stderr, "missing: %s\n", want[w]);
        assert_true(found);
    }
    /* c-* reaches anthropic/claude-*: claude-opus-* covers some of it. */
    for (size_t i = 0; i < d.n; i++)
        assert_null(strstr(d.msgs[i], "alias 'c-*'"));
    assert_int_equal(d.n_errors, sizeof(want) / sizeof(*want));
    tg_diag_free(&d);
    unlink(path);
    free(path);
}

/* `responses: native` marks an OpenAI-dialect vendor that serves the
 * Responses API itself; `translate` (the default) leaves it off. */
static void test_responses_native(void **state) {
    char *path =
        write_tmp("native.yaml",
                  "providers:\n"
                  "  openai: { dialect: openai, base_url: https://api.openai.com/v1, responses: native }\n"
                  "  ds: { dialect: openai, base_url: https://api.deepseek.com/v1, responses: translate }\n"
                  "  qw: { dialect: openai, base_url: https://dashscope.aliyuncs.com/v1 }\n");
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(path, &d);
    assert_non_null(c);
    assert_true(tg_config_provider(c, "openai", 6)->responses_native);
    assert_false(tg_config_provider(c, "ds", 2)->responses_native);
    assert_false(tg_config_provider(c, "qw", 2)->responses_native);
    tg_config_unref(c);
    tg_diag_free(&d);
    unlink(path);
    free(path);
}

int main(int argc, char **argv) {
    /* Fixture paths are relative to the repository root. */
    if (access(FIX "ok.json", R_OK) != 0) {
        char *self = strdup(argv[0]);
        if (chdir(dirname(dirname(dirname(self)))) != 0) perror("chdir");
        free(self);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_load),
        cmocka_unit_test(test_unknown_keys_and_types),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_duplicates_across_files),
        cmocka_unit_test(test_unknown_references),
        cmocka_unit_test(test_include_relative_to_including_file),
        cmocka_unit_test(test_include_cycle),
        cmocka_unit_test(test_missing_file_and_syntax_error),
        cmocka_unit_test(test_json_config),
        cmocka_unit_test(test_price_windows_cross_midnight),
        cmocka_unit_test(test_simulated_provider_url),
        cmocka_unit_test(test_stale_price_warns_but_loads),
        cmocka_unit_test(test_key_lookup),
        cmocka_unit_test(test_install_from_two_threads),
        cmocka_unit_test(test_check_command),
        cmocka_unit_test(test_policy_knobs),
        cmocka_unit_test(test_files_and_digest),
        cmocka_unit_test(test_model_patterns),
        cmocka_unit_test(test_every_reachable_model_priced),
        cmocka_unit_test(test_responses_native),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
