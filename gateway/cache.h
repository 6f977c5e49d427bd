/* cache.h — the exact response cache: a finished answer kept in Redis (TG_KEY_CACHE,
 * gateway/keys.h) under the SHA-256 of what made it, and given again to an identical request
 * of the same scope while its TTL runs. A rule or a key turns it on with `cache:`
 * (tg_cache_conf_t, core/config.h). The request (gateway/request.c) computes the digest after
 * routing, asks with one GET (tg_cache_lookup) only when caching is on, and stores a finished
 * answer with one SET EX (tg_cache_store) whose reply it never waits for. Commands go over
 * the ledger's Redis links (gateway/ledger.h); without Redis there is no cache and nothing
 * waits. Used
 * only from the worker's loop. */
#ifndef TG_CACHE_H
#define TG_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/pool.h"
#include "core/usage.h"

struct tg_ledger_s;
typedef struct tg_cache_op_s tg_cache_op_t;

#define TG_CACHE_DIGEST_HEX 65 /* 64 hex digits and the NUL */

/* What makes two requests the same: every field goes into the digest. */
typedef struct {
    const char *key_name; /* the gateway key's name: the scope unless the cache names one */
    const char *api;      /* "chat", "messages" or "responses" */
    int stream;           /* the client asked for a stream */
    /* "name: value" lines that reach the provider besides the body and can change its answer
     * (x-sim-*, anthropic-beta); header names count without regard to case. */
    const char *const *headers;
    size_t n_headers;
    const char *body; /* the client's body, byte for byte */
    size_t body_len;
} tg_cache_req_t;

/* One stored answer. */
typedef struct {
    const char *provider, *model; /* what made it */
    const char *region;           /* its provider's region then, "" when none */
    int simulated;                /* the simulator made it (demo mode) */
    int stream;                   /* answer holds SSE events, else a JSON body */
    tg_usage_t usage;             /* the provider's usage of the answer */
    int64_t cost_micro_usd;       /* what it cost when it was made */
    /* A stream: the events exactly as the client got them, without the gateway's cost
     * comment and end marker (written again at each replay). Else the JSON body. */
    const char *answer;
    size_t answer_len;
} tg_cache_entry_t;

/* The settings that hold for a request: the key's `cache:` when it has one (ttl_s 0 turns
 * caching off for the key), else the rule's (rule may be NULL: a direct provider/model);
 * NULL when caching is off. */
const tg_cache_conf_t *tg_cache_conf_for(const tg_key_t *key, const tg_route_t *rule);

/* SHA-256 of q within conf's scope (conf->scope, else the key's name; a named scope and a key
 * of the same name are different scopes), as 64 lowercase hex digits. */
void tg_cache_digest(const tg_cache_conf_t *conf, const tg_cache_req_t *q, char out[TG_CACHE_DIGEST_HEX]);

/* The Redis value of e (malloc'd, *len bytes), or NULL when it would be larger than max_bytes
 * or memory ran out. */
char *tg_cache_encode(const tg_cache_entry_t *e, size_t max_bytes, size_t *len);
/* Reads a value back into e, strings and answer copied into pool: 0, or -1 when v is not a
 * value tg_cache_encode made. */
int tg_cache_decode(const char *v, size_t len, tg_pool_t *pool, tg_cache_entry_t *e);

/* hit is the stored answer (its strings live in the lookup's pool), or NULL: nothing stored,
 * an entry that does not decode, or Redis went away before answering. */
typedef void (*tg_cache_fn)(void *ud, const tg_cache_entry_t *hit);

/* One GET of the digest; fn runs exactly once, later, on the loop (never inside this call,
 * never after tg_cache_cancel). NULL when Redis is not connected (or l is NULL): fn never
 * runs and the caller goes upstream at once. */
tg_cache_op_t *tg_cache_lookup(struct tg_ledger_s *l, const char *digest, tg_pool_t *pool, tg_cache_fn fn,
                               void *ud);
/* fn will not run. The handle is invalid after; NULL is fine. */
void tg_cache_cancel(tg_cache_op_t *op);

/* SET EX of e under the digest for ttl_s seconds. 0 when sent (a failure Redis answers is
 * logged, nobody waits for it), -1 when skipped: larger than max_bytes, Redis not connected,
 * ttl_s not positive. */
int tg_cache_store(struct tg_ledger_s *l, const char *digest, const tg_cache_entry_t *e, int64_t ttl_s,
                   size_t max_bytes);

#endif
