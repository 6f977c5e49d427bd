/* keys.h — every Redis key name Tollgate writes or reads, in one place. The
 * ledger (gateway/ledger.c) writes them, quotas (gateway/quota.c) and
 * reports (gateway/report.c, gateway/admin.c) read them; they are also the
 * interface operators and other tools see in Redis, so a name changes here
 * or nowhere. A prefix is followed by the part named in its comment;
 * TG_KEY_LEN gives a prefix's length for code that copies bytes. The
 * response store (gateway/respstore.c) writes and reads TG_KEY_RESP, health
 * across instances (gateway/healthsync.c) TG_KEY_HEALTH, the response cache
 * (gateway/cache.c) TG_KEY_CACHE. */
#ifndef TG_KEYS_H
#define TG_KEYS_H

/* Hash per UTC day "YYYY-MM-DD": fields "provider|model|key|metric",
 * integer counters (requests, tokens, cost_micro_usd). */
#define TG_KEY_USAGE "tg:usage:"
/* Hash per UTC day "YYYY-MM-DD", same fields as TG_KEY_USAGE, for simulated answers only
 * (demo mode: `serve --demo` or simulator.when_no_key). Kept in a hash of its own so that
 * nothing reading TG_KEY_USAGE (reports, budgets, other tools) ever adds made-up spend to
 * real spend; reports show it in a section of its own. Not matched by "tg:usage:*". */
#define TG_KEY_USAGE_SIM "tg:usage-sim:"
/* Stream of one entry per finished request; field "simulated" is 1 for a simulated answer. */
#define TG_KEY_EVENTS "tg:events"
/* "<request id>": marks a ledger record as counted (replays are no-ops). */
#define TG_KEY_DONE "tg:done:"
/* On a Redis Cluster (a redis[s]+cluster:// URL) every key the record script touches must share
 * one slot, so the three keys above that every request writes are split by gateway key, with its
 * name as the hash tag (TG_KEY_NOKEY_TAG for a request without a key); the budget keys below
 * already carry that tag. A single Redis and Sentinel keep the names above (SPEC.md §5).
 *   tg:usage:{<key>}:YYYY-MM-DD      TG_KEY_USAGE "{" key TG_KEY_TAG_END ":" day (same fields)
 *   tg:usage-sim:{<key>}:YYYY-MM-DD  TG_KEY_USAGE_SIM "{" ...
 *   tg:events:{<key>}                TG_KEY_EVENTS ":{" key TG_KEY_TAG_END
 *   tg:done:{<key>}:<request id>     TG_KEY_DONE "{" key TG_KEY_TAG_END ":" id
 * and, so that readers need not scan the key space, the index below, written by the ledger (once
 * per worker, key and day) before it counts that key's first record of the day as written. */
/* "YYYY-MM-DD": set of the hash tags (gateway key names, TG_KEY_NOKEY_TAG) that have usage or
 * simulated usage that day on a cluster. Readers (gateway/report.c, gateway/admin.c) read it,
 * then tg:usage:{<key>}:<day> and tg:usage-sim:{<key>}:<day> of each member, and also the
 * day's untagged hashes above (books written before the move to the cluster). */
#define TG_KEY_USAGE_INDEX "tg:usage-keys:"
/* The tag of requests made without a gateway key, on a cluster (an empty "{}" is no tag). */
#define TG_KEY_NOKEY_TAG "-"

/* The keys of one gateway key's budget and rates carry the key's name as a hash tag, "{<gateway
 * key>}", so that in a Redis Cluster they share a slot and the quota script (gateway/quota.c),
 * which touches all of them, runs on one master: a prefix below that ends in "{" is followed by
 * the gateway key's name, TG_KEY_TAG_END, then the part named in its comment. Gateway keys
 * spread over the masters as CRC16 spreads their names; one key's keys stay on one master. The
 * same names serve a single Redis and Sentinel. */
#define TG_KEY_TAG_END "}"

/* "{<gateway key>}:YYYY-MM" (a UTC month): integer, the key's real spend that month in micro-USD
 * (simulated spend never counts against a budget). Never expires. */
#define TG_KEY_SPEND "tg:spend:{"
/* "YYYY-MM": the hash that held every key's month spend (field = gateway key name) before the
 * counters above. Only read, by the quota check on a single Redis or Sentinel, and added to the
 * key's counter, so a budget's month stays whole across the upgrade. */
#define TG_KEY_SPEND_LEGACY "tg:spend:"
/* "{<gateway key>}:<unix minute>": tokens of that key in that minute. */
#define TG_KEY_TPM "tg:tpm:{"
/* "{<gateway key>}": sorted set of the key's admitted requests of the last 60 s. */
#define TG_KEY_RPM "tg:rpm:{"
/* "{<gateway key>}": hash of the key's holds, the worst-case cost and tokens reserved by requests
 * in flight (gateway/quota.c): fields "micro" and "tokens" (the totals) and "<request id>" =
 * "<micro-USD> <tokens>" (one request's hold). The ledger's record of the request releases it. */
#define TG_KEY_HOLD "tg:hold:{"
/* "{<gateway key>}": sorted set of the key's holds by expiry (unix ms): a hold whose request never
 * settles (its instance crashed) lapses then. */
#define TG_KEY_HOLD_EXP "tg:hold-exp:{"

/* Lua that defines drop(x): gives back hold x (request id) of the key whose holds and hold
 * expiries are the script's locals HOLD and HEXP; its amounts leave the totals. Shared by the
 * quota check and release (gateway/quota.c) and the ledger's record script (gateway/ledger.c), which settles
 * a request's hold as it adds the real cost; dropping a hold that is not there does nothing. Amounts are
 * subtracted as text ("-" and the digits held: Redis refuses "-0", so a zero is skipped) so that no number
 * passes through Lua's floating point. */
#define TG_KEY_HOLD_LUA_DROP                                                                                 \
    "local function drop(x)\n"                                                                               \
    "  local v=redis.call('HGET',HOLD,x)\n"                                                                  \
    "  if v then\n"                                                                                          \
    "    local m,t=string.match(v,'^(%d+) (%d+)$')\n"                                                        \
    "    if m then\n"                                                                                        \
    "      if m~='0' then redis.call('HINCRBY',HOLD,'micro','-'..m) end\n"                                   \
    "      if t~='0' then redis.call('HINCRBY',HOLD,'tokens','-'..t) end\n"                                  \
    "    end\n"                                                                                              \
    "    redis.call('HDEL',HOLD,x)\n"                                                                        \
    "  end\n"                                                                                                \
    "  redis.call('ZREM',HEXP,x)\n"                                                                          \
    "end\n"

/* "<response id>" ("resp_..."): hash of a stored Responses API answer, fields "key" (the
 * gateway key's name that made it), "response" (the Response, JSON) and "items" (the
 * conversation up to and including it, JSON array of items); expires after store_ttl_s. */
#define TG_KEY_RESP "tg:resp:"

/* Hash of the fleet's provider health (gateway/healthsync.c): field "provider/model", value
 * "<open until> <retry until>", two unix times in ms (0: none): until when an instance saw the
 * circuit open, and until when the provider asked for no traffic (retry-after). Every instance
 * writes what it learned itself (later deadlines win), drops fields past their time, and reads
 * the whole hash every 500 ms; the key expires with its last deadline. One key, so it lives
 * in one slot of a Redis Cluster. */
#define TG_KEY_HEALTH "tg:health"
/* "<64 hex digits>": the SHA-256 of a cached request (scope, API, stream, the headers that reach
 * the provider, the client's body; gateway/cache.c), a string holding one finished answer: a
 * JSON line saying who made it (provider, model, region, usage, cost) and the answer as the
 * client got it. Written with SET EX (the rule's or key's cache ttl_s). */
#define TG_KEY_CACHE "tg:cache:"

/* Length of a key prefix above, without its NUL. */
#define TG_KEY_LEN(prefix) (sizeof(prefix) - 1)

#endif
