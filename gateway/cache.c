/* cache.c — the exact response cache (cache.h). A request's identity is one SHA-256 over
 * length-framed fields (a version tag, the scope, the API, stream or not, the headers that
 * reach the provider, the client's body), so no two different field lists can hash the same
 * bytes. An answer is stored as one Redis string "tg:cache:<digest>": a compact JSON line that
 * says who made it and what it cost, a newline, then the answer as the client got it. Lookups
 * are one GET on the quota link (a request waits for it), stores one SET EX on the ledger's
 * (nobody waits for it); each lookup's state is one
 * malloc'd op, freed when its reply (or the cancel) comes. Data enters from gateway/request.c
 * and leaves through the caller's callback, decoded into the request's pool. */
#include "gateway/cache.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "core/clock.h"
#include "core/log.h"
#include "gateway/keys.h"
#include "gateway/ledger.h"

#define VERSION "tollgate-cache-1" /* change it when the digest's fields change */
#define KEY_MAX (sizeof(TG_KEY_CACHE) + TG_CACHE_DIGEST_HEX)

struct tg_cache_op_s {
    tg_ledger_query_t *q;
    tg_pool_t *pool;
    tg_cache_fn fn;
    void *ud;
    char digest[TG_CACHE_DIGEST_HEX]; /* for log lines */
};

/* One warning per worker every 10 s at most: a Redis that refuses every store (maxmemory
 * with noeviction) must not flood the log. */
static _Thread_local int64_t last_warn_ms;

const tg_cache_conf_t *tg_cache_conf_for(const tg_key_t *key, const tg_route_t *rule) {
    const tg_cache_conf_t *c = key && key->cache.set     ? &key->cache
                               : rule && rule->cache.set ? &rule->cache
                                                         : NULL;
    return c && c->ttl_s > 0 ? c : NULL;
}

/* --- the digest ---------------------------------------------------------------------------- */

/* A field: its length (8 bytes, little-endian) and its bytes. */
static void field(EVP_MD_CTX *x, const void *p, size_t n) {
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    EVP_DigestUpdate(x, len, 8);
    if (n) EVP_DigestUpdate(x, p, n);
}

static void field_str(EVP_MD_CTX *x, const char *s) {
    field(x, s ? s : "", s ? strlen(s) : 0);
}

/* A header line with its name in lowercase: "X-Sim-Status: 500" and "x-sim-status: 500" are
 * the same request. */
static void field_header(EVP_MD_CTX *x, const char *h) {
    size_t n = strlen(h), colon = strcspn(h, ":");
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    EVP_DigestUpdate(x, len, 8);
    char low[64];
    for (size_t i = 0; i < colon;) {
        size_t k = 0;
        for (; k < sizeof(low) && i < colon; k++, i++)
            low[k] = (char)(h[i] >= 'A' && h[i] <= 'Z' ? h[i] + 32 : h[i]);
        EVP_DigestUpdate(x, low, k);
    }
    if (n > colon) EVP_DigestUpdate(x, h + colon, n - colon);
}

void tg_cache_digest(const tg_cache_conf_t *conf, const tg_cache_req_t *q, char out[TG_CACHE_DIGEST_HEX]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    if (x && EVP_DigestInit_ex(x, EVP_sha256(), NULL) == 1) {
        field_str(x, VERSION);
        /* The kind of scope first: a scope named "team-a" never meets the key named so. */
        if (conf && conf->scope) {
            field_str(x, "scope");
            field_str(x, conf->scope);
        } else {
            field_str(x, "key");
            field_str(x, q->key_name);
        }
        field_str(x, q->api);
        field_str(x, q->stream ? "stream" : "whole");
        char count[24];
        snprintf(count, sizeof(count), "%zu", q->n_headers);
        field_str(x, count);
        for (size_t i = 0; i < q->n_headers; i++)
            field_header(x, q->headers[i]);
        field(x, q->body, q->body_len);
        if (EVP_DigestFinal_ex(x, md, &n) != 1) n = 0;
    }
    EVP_MD_CTX_free(x);
    /* A digest that could not be made is all zeros: lookups miss, nothing is stored under it
     * (tg_cache_lookup and tg_cache_store refuse it). */
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = n == 32 ? hex[md[i] >> 4] : '0';
        out[2 * i + 1] = n == 32 ? hex[md[i] & 15] : '0';
    }
    out[64] = '\0';
}

static int digest_ok(const char *d) {
    if (d == NULL || strlen(d) != 64 || strspn(d, "0123456789abcdef") != 64) return 0;
    return strspn(d, "0") != 64;
}

/* --- the stored value ----------------------------------------------------------------------- */

char *tg_cache_encode(const tg_cache_entry_t *e, size_t max_bytes, size_t *len) {
    const tg_usage_t *u = &e->usage;
    json_t *h =
        json_pack("{s:i,s:s,s:s,s:s,s:b,s:b,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:b,s:b}}", "v", 1, "provider",
                  e->provider, "model", e->model, "region", e->region ? e->region : "", "simulated",
                  e->simulated, "stream", e->stream, "cost_micro_usd", (json_int_t)e->cost_micro_usd, "usage",
                  "input_tokens", (json_int_t)u->input_tokens, "cached_input_tokens",
                  (json_int_t)u->cached_input_tokens, "cache_write_tokens", (json_int_t)u->cache_write_tokens,
                  "output_tokens", (json_int_t)u->output_tokens, "reasoning_tokens",
                  (json_int_t)u->reasoning_tokens, "present", u->present, "estimated", u->estimated);
    char *head = h ? json_dumps(h, JSON_COMPACT) : NULL; /* escapes every newline in its strings */
    json_decref(h);
    if (head == NULL) return NULL;
    size_t hl = strlen(head), n = hl + 1 + e->answer_len;
    char *v = n <= max_bytes ? malloc(n) : NULL;
    if (v) {
        memcpy(v, head, hl);
        v[hl] = '\n';
        if (e->answer_len) memcpy(v + hl + 1, e->answer, e->answer_len);
        *len = n;
    }
    free(head);
    return v;
}

static int64_t count(const json_t *o, const char *name) {
    json_int_t v = json_integer_value(json_object_get(o, name));
    return v < 0 ? 0 : v > TG_COUNT_MAX ? TG_COUNT_MAX : v;
}

int tg_cache_decode(const char *v, size_t len, tg_pool_t *pool, tg_cache_entry_t *e) {
    const char *nl = v ? memchr(v, '\n', len) : NULL;
    if (nl == NULL) return -1;
    json_t *h = json_loadb(v, (size_t)(nl - v), 0, NULL);
    const char *prov = json_string_value(json_object_get(h, "provider"));
    const char *model = json_string_value(json_object_get(h, "model"));
    const char *region = json_string_value(json_object_get(h, "region"));
    const json_t *u = json_object_get(h, "usage");
    int rc = -1;
    if (json_integer_value(json_object_get(h, "v")) != 1 || prov == NULL || model == NULL || region == NULL ||
        !json_is_object(u) || !json_is_boolean(json_object_get(h, "stream")))
        goto out;
    memset(e, 0, sizeof(*e));
    e->provider = tg_pool_strdup(pool, prov);
    e->model = tg_pool_strdup(pool, model);
    e->region = tg_pool_strdup(pool, region);
    e->simulated = json_is_true(json_object_get(h, "simulated"));
    e->stream = json_is_true(json_object_get(h, "stream"));
    e->cost_micro_usd = json_integer_value(json_object_get(h, "cost_micro_usd"));
    e->usage.input_tokens = count(u, "input_tokens");
    e->usage.cached_input_tokens = count(u, "cached_input_tokens");
    e->usage.cache_write_tokens = count(u, "cache_write_tokens");
    e->usage.output_tokens = count(u, "output_tokens");
    e->usage.reasoning_tokens = count(u, "reasoning_tokens");
    e->usage.present = json_is_true(json_object_get(u, "present"));
    e->usage.estimated = json_is_true(json_object_get(u, "estimated"));
    e->answer_len = len - (size_t)(nl + 1 - v);
    char *a = tg_pool_alloc(pool, e->answer_len + 1);
    if (e->provider == NULL || e->model == NULL || e->region == NULL || a == NULL) goto out;
    memcpy(a, nl + 1, e->answer_len);
    a[e->answer_len] = '\0';
    e->answer = a;
    rc = 0;
out:
    json_decref(h);
    return rc;
}

/* --- Redis ------------------------------------------------------------------------------------ */

static const char *key_of(const char *digest, char *buf) {
    snprintf(buf, KEY_MAX, "%s%s", TG_KEY_CACHE, digest);
    return buf;
}

static void on_get(const redisReply *reply, void *ud) {
    tg_cache_op_t *op = ud;
    tg_cache_entry_t e;
    const tg_cache_entry_t *hit = NULL;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        if (tg_cache_decode(reply->str, reply->len, op->pool, &e) == 0)
            hit = &e;
        else if (tg_clock_warn_due(&last_warn_ms))
            tg_warn("cache: %s%s holds something else than a cached answer; ignored", TG_KEY_CACHE,
                    op->digest);
    } else if (reply && reply->type == REDIS_REPLY_ERROR && tg_clock_warn_due(&last_warn_ms)) {
        tg_warn("cache: GET %s%s: %s", TG_KEY_CACHE, op->digest, reply->str);
    }
    op->fn(op->ud, hit);
    free(op);
}

tg_cache_op_t *tg_cache_lookup(struct tg_ledger_s *l, const char *digest, tg_pool_t *pool, tg_cache_fn fn,
                               void *ud) {
    if (l == NULL || !digest_ok(digest)) return NULL;
    tg_cache_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL) return NULL;
    op->pool = pool;
    op->fn = fn;
    op->ud = ud;
    memcpy(op->digest, digest, TG_CACHE_DIGEST_HEX);
    char key[KEY_MAX];
    const char *argv[] = {"GET", key_of(digest, key)};
    const size_t lens[] = {3, strlen(key)};
    op->q = tg_ledger_quick_query(l, 2, argv, lens, 1, on_get, op); /* never behind a burst of records */
    if (op->q == NULL) {
        free(op);
        return NULL;
    }
    return op;
}

void tg_cache_cancel(tg_cache_op_t *op) {
    if (op == NULL) return;
    tg_ledger_query_cancel(op->q);
    free(op);
}

/* A store's reply: only a failure is news. */
static void on_set(const redisReply *reply, void *ud) {
    (void)ud;
    if (reply && reply->type == REDIS_REPLY_ERROR && tg_clock_warn_due(&last_warn_ms))
        tg_warn("cache: an answer was not stored: %s", reply->str);
}

int tg_cache_store(struct tg_ledger_s *l, const char *digest, const tg_cache_entry_t *e, int64_t ttl_s,
                   size_t max_bytes) {
    if (l == NULL || ttl_s <= 0 || !digest_ok(digest) || !tg_ledger_connected(l)) return -1;
    size_t vlen = 0;
    char *v = tg_cache_encode(e, max_bytes, &vlen);
    if (v == NULL) return -1;
    char key[KEY_MAX], ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_s);
    const char *argv[] = {"SET", key_of(digest, key), v, "EX", ttl};
    const size_t lens[] = {3, strlen(key), vlen, 2, strlen(ttl)};
    tg_ledger_query_t *q = tg_ledger_query(l, 5, argv, lens, 1, on_set, NULL);
    free(v);
    return q ? 0 : -1;
}
