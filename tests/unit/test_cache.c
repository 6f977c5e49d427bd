/* test_cache.c — the exact response cache: the digest is a fixed function of its fields (checked
 * against SHA-256 of the documented framing, computed apart) and keeps scopes, APIs, stream and
 * bodies apart; `cache:` on keys and routes parses, the key's setting wins and ttl_s 0 turns it
 * off; stored values round-trip and the size limit holds; and against a real redis-server on a
 * free loopback port, a store is found again with its TTL, a miss and a foreign value are
 * misses, an answer over max_bytes is never written, a cancelled lookup never calls back, and
 * without Redis nothing is sent. */
/* clang-format off */
/* deps: gateway/cache.c gateway/ledger.c gateway/ledger_rec.c gateway/redis.c gateway/journal.c core/config.c core/config_load.c core/config_schema.c core/config_listen.c core/config_yaml.c core/config_keys.c core/config_price.c core/config_check.c core/pool.c core/log.c gateway/redis_cluster.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/pool.h"
#include "gateway/cache.h"
#include "gateway/ledger.h"
#include "tests/unit/redis_fixture.h"

/* --- the digest ---------------------------------------------------------------------------------- */

/* Each result stays valid for the next three calls: enough for one comparison. */
static const char *digest(const tg_cache_conf_t *c, const tg_cache_req_t *q) {
    static char out[4][TG_CACHE_DIGEST_HEX];
    static int k;
    char *o = out[k++ % 4];
    tg_cache_digest(c, q, o);
    return o;
}

static void test_digest_is_stable(void **state) {
    /* The expected values are SHA-256 of the framing described in gateway/cache.c (each field's
     * length as 8 bytes little-endian, then its bytes: version, scope kind, scope, API, stream,
     * header count, headers with lowercase names, body), computed with Python's hashlib. A
     * change here makes every stored entry unreachable: change the version tag with it. */
    const char *hdr[] = {"X-Sim-Status: 500"};
    const char body[] = "{\"model\":\"m\",\"messages\":[]}";
    tg_cache_conf_t per_key = {.set = 1, .ttl_s = 60};
    tg_cache_req_t q = {"team-a", "chat", 0, hdr, 1, body, sizeof(body) - 1};
    assert_string_equal(digest(&per_key, &q),
                        "690040ec1d647a6ce39d61c174542c1bff87a951c59313f16405aede6d50aaf0");
    tg_cache_conf_t shared = {.set = 1, .ttl_s = 60, .scope = "shared"};
    tg_cache_req_t q2 = {"anyone", "messages", 1, NULL, 0, "", 0};
    assert_string_equal(digest(&shared, &q2),
                        "0d5c5cd82e22b6edcb034806a463925b1ee243363a09b0cf2b95a28bc8f4ea6e");
    /* Same input, same digest, every time. */
    assert_string_equal(digest(&per_key, &q), digest(&per_key, &q));
}

static void test_digest_separates(void **state) {
    const char *h1[] = {"x-sim-status: 500"}, *h2[] = {"x-sim-status: 501"}, *h3[] = {"X-SIM-STATUS: 500"};
    const char body[] = "{\"model\":\"m\"}";
    tg_cache_conf_t c = {.set = 1, .ttl_s = 60};
    tg_cache_req_t base = {"a", "chat", 0, h1, 1, body, sizeof(body) - 1};
    char d0[TG_CACHE_DIGEST_HEX];
    strcpy(d0, digest(&c, &base));

    tg_cache_req_t q = base;
    q.key_name = "b"; /* another key: another scope */
    assert_string_not_equal(d0, digest(&c, &q));
    q = base;
    q.api = "messages";
    assert_string_not_equal(d0, digest(&c, &q));
    q = base;
    q.stream = 1;
    assert_string_not_equal(d0, digest(&c, &q));
    q = base;
    q.body_len--; /* one byte less */
    assert_string_not_equal(d0, digest(&c, &q));
    q = base;
    q.headers = h2; /* what the provider is told changes */
    assert_string_not_equal(d0, digest(&c, &q));
    q = base;
    q.n_headers = 0;
    assert_string_not_equal(d0, digest(&c, &q));
    q = base;
    q.headers = h3; /* a header's name has no case */
    assert_string_equal(d0, digest(&c, &q));

    /* Fields are framed: moving bytes from one field to the next changes the digest. */
    tg_cache_req_t x = {"ab", "chat", 0, NULL, 0, "c", 1}, y = {"a", "bchat", 0, NULL, 0, "c", 1};
    assert_string_not_equal(digest(&c, &x), digest(&c, &y));

    /* A named scope is shared by every key naming it, and is never a key of the same name. */
    tg_cache_conf_t team = {.set = 1, .ttl_s = 60, .scope = "team"};
    tg_cache_req_t ka = base, kb = base, kteam = base;
    kb.key_name = "b";
    kteam.key_name = "team";
    assert_string_equal(digest(&team, &ka), digest(&team, &kb));
    assert_string_not_equal(digest(&team, &ka), digest(&c, &kteam));
    assert_string_not_equal(digest(&team, &ka), d0);
}

/* --- `cache:` in the config ------------------------------------------------------------------------ */

static char cfg_dir[64];

static tg_config_t *load_text(const char *text, tg_diag_t *d) {
    char path[128];
    snprintf(path, sizeof(path), "%s/tollgate.yaml", cfg_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return tg_config_load(path, d);
}

#define SHA(c)                                                                                               \
    "\"" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
        c c c c c c c c c c c c c c "\""
#define HEAD                                                                                                 \
    "providers:\n"                                                                                           \
    "  oa: { dialect: openai, base_url: https://oa.example.com/v1, api_key_env: TG_TEST_OA_KEY }\n"          \
    "prices:\n"                                                                                              \
    "  oa/m1: { input: 1, output: 1, source: test, as_of: 2026-01-01 }\n"

static int diag_has(const tg_diag_t *d, const char *part) {
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->msgs[i], part)) return 1;
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  %s\n", d->msgs[i]);
    return 0;
}

static void test_config(void **state) {
    assert_non_null(mkdtemp(strcpy(cfg_dir, "/tmp/tg-cache-cfg-XXXXXX")));
    tg_diag_t d = {0};
    tg_config_t *c = load_text(
        HEAD "keys:\n"
             "  - { name: plain, sha256: " SHA(
                 "a") " }\n"
                      "  - { name: own, sha256: " SHA(
                          "b") ", cache: { ttl_s: 30, scope: team, max_bytes: 5000 } }\n"
                               "  - { name: off, sha256: " SHA(
                                   "c") ", cache: { ttl_s: 0 } }\n"
                                        "routes:\n"
                                        "  - { name: r1, match: { model: a }, candidates: [oa/m1], cache: { "
                                        "ttl_s: 60 } }\n"
                                        "  - { name: r2, match: { model: b }, candidates: [oa/m1] }\n",
        &d);
    for (size_t i = 0; c == NULL && i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    assert_non_null(c);
    const tg_key_t *plain = &c->keys[0], *own = &c->keys[1], *off = &c->keys[2];
    const tg_route_t *r1 = &c->routes[0], *r2 = &c->routes[1];
    assert_false(plain->cache.set);
    assert_true(own->cache.set);
    assert_int_equal(own->cache.ttl_s, 30);
    assert_string_equal(own->cache.scope, "team");
    assert_int_equal(own->cache.max_bytes, 5000);
    assert_int_equal(r1->cache.ttl_s, 60);
    assert_int_equal(r1->cache.max_bytes, 1 << 20); /* the default */
    assert_null(r1->cache.scope);
    assert_false(r2->cache.set);

    assert_ptr_equal(tg_cache_conf_for(plain, r1), &r1->cache); /* the rule's */
    assert_null(tg_cache_conf_for(plain, r2));                  /* neither */
    assert_null(tg_cache_conf_for(plain, NULL));                /* direct, no key cache */
    assert_ptr_equal(tg_cache_conf_for(own, r1), &own->cache);  /* the key's wins */
    assert_ptr_equal(tg_cache_conf_for(own, NULL), &own->cache);
    assert_null(tg_cache_conf_for(off, r1)); /* ttl_s 0 on the key turns the rule's off */
    tg_config_unref(c);
    tg_diag_free(&d);

    const struct {
        const char *yaml, *msg;
    } bad[] = {
        {"keys:\n  - { name: k, sha256: " SHA("a") ", cache: { scope: x } }\n",
         "cache of key 'k' is missing required field 'ttl_s'"},
        {"keys:\n  - { name: k, sha256: " SHA("a") ", cache: { ttl_s: -1 } }\n",
         "'ttl_s' must be zero or more"},
        {"keys:\n  - { name: k, sha256: " SHA("a") ", cache: { ttl_s: 5, max_bytes: 100000000 } }\n",
         "max_bytes 100000000 is over the limit"},
        {"keys:\n  - { name: k, sha256: " SHA("a") ", cache: { ttl_s: 5, max_bytes: 0 } }\n",
         "'max_bytes' must be positive"},
        {"keys:\n  - { name: k, sha256: " SHA("a") ", cache: { ttl: 5 } }\n", "ttl"},
        {"keys:\n  - { name: k, sha256: " SHA("a") ", cache: { ttl_s: 5, scope: \"\" } }\n",
         "scope must not be empty"},
        {"routes:\n  - { name: r, match: { model: a }, candidates: [oa/m1], cache: 60 }\n",
         "cache of route 'r'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "%s%s", HEAD, bad[i].yaml);
        tg_diag_t bd = {0};
        tg_config_t *b = load_text(text, &bd);
        if (b) fprintf(stderr, "loaded: %s\n", bad[i].yaml);
        assert_null(b);
        assert_true(diag_has(&bd, bad[i].msg));
        tg_diag_free(&bd);
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", cfg_dir);
    assert_int_equal(system(cmd), 0);
}

/* --- the stored value ------------------------------------------------------------------------------ */

static tg_cache_entry_t sample(const char *answer, size_t len) {
    tg_cache_entry_t e = {.provider = "deepseek",
                          .model = "deepseek-flash",
                          .region = "cn",
                          .simulated = 0,
                          .stream = 1,
                          .usage = {.input_tokens = 12,
                                    .cached_input_tokens = 4,
                                    .cache_write_tokens = 1,
                                    .output_tokens = 30,
                                    .reasoning_tokens = 5,
                                    .present = 1},
                          .cost_micro_usd = 123,
                          .answer = answer,
                          .answer_len = len};
    return e;
}

static void assert_same_entry(const tg_cache_entry_t *a, const tg_cache_entry_t *b) {
    assert_string_equal(a->provider, b->provider);
    assert_string_equal(a->model, b->model);
    assert_string_equal(a->region, b->region);
    assert_int_equal(a->simulated, b->simulated);
    assert_int_equal(a->stream, b->stream);
    assert_memory_equal(&a->usage, &b->usage, sizeof(a->usage));
    assert_int_equal(a->cost_micro_usd, b->cost_micro_usd);
    assert_int_equal(a->answer_len, b->answer_len);
    assert_memory_equal(a->answer, b->answer, a->answer_len);
}

static void test_encode_decode_and_size_limit(void **state) {
    /* An answer with newlines and a NUL byte: the value is binary-safe. */
    const char answer[] = "data: {\"x\":1}\n\n\0data: [DONE]\n\n";
    tg_cache_entry_t e = sample(answer, sizeof(answer) - 1);
    e.region = "c\nn"; /* a newline in a header field must not end the header line */
    size_t len = 0;
    char *v = tg_cache_encode(&e, 1 << 20, &len);
    assert_non_null(v);
    tg_pool_t *pool = tg_pool_create(1024);
    tg_cache_entry_t back;
    assert_int_equal(tg_cache_decode(v, len, pool, &back), 0);
    assert_same_entry(&e, &back);

    /* The limit counts the whole value: exactly at it is kept, one byte over is not. */
    size_t at = len;
    free(v);
    assert_non_null(v = tg_cache_encode(&e, at, &len));
    free(v);
    assert_null(tg_cache_encode(&e, at - 1, &len));

    /* Not ours: no header line, a header that is not the right JSON. */
    assert_int_equal(tg_cache_decode("hello", 5, pool, &back), -1);
    assert_int_equal(tg_cache_decode("{\"v\":2}\nx", 9, pool, &back), -1);
    assert_int_equal(tg_cache_decode("{\"v\":1,\"provider\":\"p\"}\nx", 25, pool, &back), -1);
    tg_pool_destroy(pool);
}

/* --- against Redis ------------------------------------------------------------------------------------ */

typedef struct {
    char dir[64];
    int port;
    pid_t redis;
    struct event_base *base;
    tg_ledger_t *l;
    tg_pool_t *pool;
} fx_t;

typedef struct {
    int calls;
    int hit;
    tg_cache_entry_t e;
} heard_t;

static void on_hit(void *ud, const tg_cache_entry_t *hit) {
    heard_t *h = ud;
    h->calls++;
    h->hit = hit != NULL;
    if (hit) h->e = *hit;
}

#define run_ms(f, ms) fixture_run_ms((f)->base, (ms))

#define RUN_UNTIL(f, cond) FIXTURE_RUN_UNTIL((f)->base, 2000, cond)

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/tg-cache-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->port = free_port();
    f->base = event_base_new();
    f->redis = redis_fixture_spawn(f->port, f->dir);
    char url[64], err[256] = "";
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", f->port);
    f->l = tg_ledger_new(f->base, url, NULL, 0, err, sizeof(err));
    assert_non_null(f->l);
    tg_ledger_set_backoff_ms(f->l, 20, 100);
    tg_ledger_set_limits(f->l, 300, 0);
    RUN_UNTIL(f, tg_ledger_connected(f->l));
    f->pool = tg_pool_create(4096);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    tg_ledger_free(f->l);
    if (f->redis > 0) {
        redis_fixture_stop(f->redis);
    }
    event_base_free(f->base);
    tg_pool_destroy(f->pool);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static redisReply *sync_cmd(fx_t *f, const char *fmt, const char *arg) {
    redisContext *c = sync_client(f->port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, fmt, arg);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static heard_t lookup(fx_t *f, const char *d) {
    heard_t h = {0};
    assert_non_null(tg_cache_lookup(f->l, d, f->pool, on_hit, &h));
    assert_int_equal(h.calls, 0); /* never inside the call */
    RUN_UNTIL(f, h.calls == 1);
    return h;
}

static void test_store_and_lookup(void **state) {
    fx_t *f = *state;
    tg_cache_conf_t c = {.set = 1, .ttl_s = 60};
    tg_cache_req_t q = {"a", "chat", 1, NULL, 0, "{}", 2};
    char d[TG_CACHE_DIGEST_HEX], other[TG_CACHE_DIGEST_HEX];
    tg_cache_digest(&c, &q, d);
    q.key_name = "b";
    tg_cache_digest(&c, &q, other);

    heard_t miss = lookup(f, d);
    assert_false(miss.hit);

    const char answer[] = "data: {\"choices\":[]}\n\n";
    tg_cache_entry_t e = sample(answer, sizeof(answer) - 1);
    assert_int_equal(tg_cache_store(f->l, d, &e, 60, 1 << 20), 0);
    char key[128];
    snprintf(key, sizeof(key), "tg:cache:%s", d);
    /* The SET goes on the ledger's link, the GET on the quota link: wait for the first. */
    for (int i = 0; i < 400; i++) {
        run_ms(f, 5);
        redisReply *x = sync_cmd(f, "EXISTS %s", key);
        long long there = x->integer;
        freeReplyObject(x);
        if (there) break;
    }
    heard_t h = lookup(f, d);
    assert_true(h.hit);
    assert_same_entry(&e, &h.e);
    redisReply *ttl = sync_cmd(f, "TTL %s", key);
    assert_true(ttl->integer > 55 && ttl->integer <= 60);
    freeReplyObject(ttl);
    assert_false(lookup(f, other).hit); /* another scope's digest */

    /* Over max_bytes: not written at all. */
    char big[2048];
    memset(big, 'x', sizeof(big));
    tg_cache_entry_t eb = sample(big, sizeof(big));
    assert_int_equal(tg_cache_store(f->l, other, &eb, 60, 1024), -1);
    assert_false(lookup(f, other).hit);
    redisReply *ex = sync_cmd(f, "EXISTS tg:cache:%s", other);
    assert_int_equal(ex->integer, 0);
    freeReplyObject(ex);
    assert_int_equal(tg_cache_store(f->l, other, &e, 0, 1 << 20), -1); /* no TTL, no store */

    /* Something else under the name: a miss, not a crash. */
    redisReply *set = sync_cmd(f, "SET tg:cache:%s garbage", other);
    freeReplyObject(set);
    assert_false(lookup(f, other).hit);
    /* A digest that is not one is never sent. */
    assert_null(tg_cache_lookup(f->l, "tg:done:x", f->pool, on_hit, &h));
    assert_int_equal(tg_cache_store(f->l, "../x", &e, 60, 1 << 20), -1);
}

static void test_cancel_and_redis_away(void **state) {
    fx_t *f = *state;
    tg_cache_conf_t c = {.set = 1, .ttl_s = 60};
    tg_cache_req_t q = {"a", "chat", 0, NULL, 0, "{\"cancel\":1}", 12};
    char d[TG_CACHE_DIGEST_HEX];
    tg_cache_digest(&c, &q, d);
    heard_t h = {0};
    tg_cache_op_t *op = tg_cache_lookup(f->l, d, f->pool, on_hit, &h);
    assert_non_null(op);
    tg_cache_cancel(op);
    run_ms(f, 50);
    assert_int_equal(h.calls, 0);
    tg_cache_cancel(NULL);

    /* Redis gone: lookups and stores refuse at once, so the request goes upstream now. */
    redis_fixture_stop(f->redis);
    f->redis = 0;
    RUN_UNTIL(f, !tg_ledger_connected(f->l));
    assert_null(tg_cache_lookup(f->l, d, f->pool, on_hit, &h));
    tg_cache_entry_t e = sample("x", 1);
    assert_int_equal(tg_cache_store(f->l, d, &e, 60, 1 << 20), -1);
    assert_null(tg_cache_lookup(NULL, d, f->pool, on_hit, &h));
    assert_int_equal(h.calls, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_is_stable),
        cmocka_unit_test(test_digest_separates),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_encode_decode_and_size_limit),
        cmocka_unit_test_setup_teardown(test_store_and_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_redis_away, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
