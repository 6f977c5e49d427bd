/* ledger.h — the usage ledger: every finished request's usage, written once to Redis
 * (counters per UTC day + one event on a capped stream), through a journal file when
 * Redis is down or slow. One ledger per worker, used only from that worker's loop.
 * Other modules' commands go on its Redis connections (gateway/redis.h): admin reads on the
 * records' link, in order with them; quota checks on a second link of their own. */
#ifndef TG_LEDGER_H
#define TG_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "core/usage.h"

struct event_base;
struct redisReply;
typedef struct tg_ledger_s tg_ledger_t;

typedef struct {
    const char *request_id; /* unique per request, e.g. 16 hex chars */
    const char *key_name;   /* gateway key's name, "" if none */
    const char *route;      /* rule name or "direct" */
    const char *provider, *model;
    int status; /* HTTP status sent to the client (499 client closed) */
    int attempts;
    tg_usage_t usage; /* normalised usage (core/usage.h) */
    int64_t cost_micro_usd;
    int64_t ts_ms;               /* request start, unix ms (UTC) — picks the day hash */
    int64_t latency_ms, ttft_ms; /* ttft -1 when no first byte */
    int attempt_only;        /* a failed attempt the provider billed: tokens and cost count, requests +0 */
    int simulated;           /* demo mode: the simulator answered. Counted in the simulated day hash
                                (TG_KEY_USAGE_SIM, gateway/keys.h), never in real spend or budgets */
    int cache_hit;           /* answered from the response cache (gateway/cache.c): no provider call, usage 0,
                                cost 0; counted as cache_hits and saved_cost_micro_usd in the day hash */
    int64_t saved_micro_usd; /* a cache hit: what the answer would have cost from its provider */
} tg_ledger_rec_t;

/* redis_url: any form gateway/redis.h parses (redis[s]://, redis[s]+sentinel://, unix://);
 * NULL/"" = ledger off (records go nowhere, but tg_ledger_record is still safe). Nothing is
 * resolved here: the links look names up, without blocking, each time they connect, and the
 * ledger journals while Redis is unreachable or its name does not resolve. journal_path: per-worker file is
 * journal_path + "." + worker index (another name when another process holds it:
 * gateway/journal.h); NULL/"" = no journal (records wait in memory, up to the backlog bound).
 * Once Redis answers, the worker's journal is replayed, and with it every other journal file
 * of that path that no running worker holds (an earlier run with more workers, a crashed
 * instance). Returns NULL and fills err on a bad or unsupported URL or a journal that cannot
 * be opened. The process must ignore SIGPIPE (the links write with write(2)). */
tg_ledger_t *tg_ledger_new(struct event_base *base, const char *redis_url, const char *journal_path,
                           int worker, char *err, size_t errlen);
/* Copies what it needs (strings longer than 512 bytes are cut); never blocks. */
void tg_ledger_record(tg_ledger_t *l, const tg_ledger_rec_t *rec);
/* Records not yet acknowledged by Redis (in memory + in the journal). */
size_t tg_ledger_backlog(const tg_ledger_t *l);
/* 1 when connected to Redis and the idempotency script is loaded. */
int tg_ledger_connected(const tg_ledger_t *l);
/* written: records Redis acknowledged (journal replays included); journaled: records
 * appended to the journal; replayed: journal records Redis acknowledged. */
void tg_ledger_stats(const tg_ledger_t *l, uint64_t *written, uint64_t *journaled, uint64_t *replayed);
/* Stop: try to flush (the caller runs the loop a little), then write what is left to the
 * journal. Call before event_base_free(). NULL is fine. */
void tg_ledger_free(tg_ledger_t *l);

/* Another module's command on the ledger's connection (admin reads): one
 * round trip, in order with the records on a single Redis. key_arg is the index in argv of the
 * command's key, which picks the master on a Redis Cluster (every key of one command must share
 * its slot); -1 - i sends a command with no key to master number i (0 <= i <
 * tg_ledger_masters), for reads that visit every master. On a single Redis key_arg changes
 * nothing (master 0 is the one server). fn runs exactly once, later, on the loop: with the
 * reply, or with NULL when the link dropped or timed out before the answer (never from
 * inside tg_ledger_query or tg_ledger_query_cancel). Returns NULL (fn never runs) when Redis
 * is not connected. */
typedef struct tg_ledger_query_s tg_ledger_query_t;
typedef void (*tg_ledger_reply_fn)(const struct redisReply *reply, void *ud); /* = tg_redis_reply_fn */
tg_ledger_query_t *tg_ledger_query(tg_ledger_t *l, int argc, const char **argv, const size_t *lens,
                                   int key_arg, tg_ledger_reply_fn fn, void *ud);
/* The same on the quota link, which carries no records: a check never waits behind a burst of
 * records or a journal replay. While that link is not up it falls back to tg_ledger_query. */
tg_ledger_query_t *tg_ledger_quick_query(tg_ledger_t *l, int argc, const char **argv, const size_t *lens,
                                         int key_arg, tg_ledger_reply_fn fn, void *ud);
/* fn will not run (the reply, when it comes, is dropped). The handle is invalid after;
 * for either kind of query. NULL is fine. */
void tg_ledger_query_cancel(tg_ledger_query_t *q);
/* 1 when the ledger's Redis is a Redis Cluster: its per-request keys then carry the gateway
 * key's name as a hash tag (gateway/keys.h, "On a Redis Cluster"), and readers find a day's
 * usage through TG_KEY_USAGE_INDEX. */
int tg_ledger_cluster(const tg_ledger_t *l);
/* The number of masters key_arg -1 - i may name: 1 on a single Redis, the masters of the current
 * slot map on a cluster, 0 while none is known. */
int tg_ledger_masters(const tg_ledger_t *l);

/* The Lua scripts' bodies are sent as EVALSHA; this is the SHA-1 hex (41 bytes) of `script`. */
void tg_ledger_sha1_hex(const char *script, size_t len, char out[41]);

/* Tuning, for tests: reconnect backoff (default 250 ms doubling to 5000 ms); command
 * timeout after which a silent Redis counts as down (default 2000 ms, also the connect
 * timeout); in-memory backlog beyond which records go to the journal (default 10000). */
void tg_ledger_set_backoff_ms(tg_ledger_t *l, int first_ms, int max_ms);
void tg_ledger_set_limits(tg_ledger_t *l, int cmd_timeout_ms, size_t max_backlog);

#endif
