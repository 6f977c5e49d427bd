/* quota.c — budgets and rate limits per gateway key, enforced in Redis so that every gateway
 * instance on one Redis shares them. A check is one EVALSHA of the script below, sent before the
 * upstream call on the worker's quota link (tg_ledger_quick_query), so it never waits behind
 * the ledger's records or a journal replay:
 *   budget  the month's spend (GET tg:spend:{<key>}:<YYYY-MM>, added by the ledger's own script
 *           as each request finishes, plus the key's field of the hash tg:spend:<YYYY-MM> that
 *           held it before) + the holds of requests in flight (tg:hold:{<key>}) + this
 *           request's worst case > budget -> 402; passed, the worst case is held until the
 *           request's ledger record releases it and adds the real cost, so N concurrent
 *           requests at the edge of a budget cannot all pass;
 *   tpm     sliding-window counter: tokens of this minute + the previous minute's weighted by
 *           the part of it still inside the last 60 s (tg:tpm:{<key>}:<minute>, INCRBY'd by the
 *           ledger) + held tokens + this request's worst case > tpm -> 429, held the same way;
 *   rpm     sliding log: a sorted set of this key's admitted requests of the last 60 s
 *           (tg:rpm:{<key>}); full -> 429 until the oldest leaves it. Exact at any moment, at
 *           most rpm members, so a burst across a minute boundary cannot pass twice the rate
 *           as a fixed window would.
 * A refused request adds nothing. A hold lapses after the request's longest life (a crashed
 * instance's holds free themselves). Without an answer within QUOTA_WAIT_MS (Redis down, slow,
 * still connecting) a worker-local approximation decides and the request goes on. */
#include "gateway/quota.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"
#include "core/log.h"
#include "core/money.h"
#include "gateway/keys.h"
#include "policy/price.h"

#define QUOTA_WAIT_MS 250
#define HOLD_TTL_MS 600000 /* a hold's life when the request's own is not known: 10 minutes */
#define LOCAL_SLOTS 128

/* KEYS: rpm log, tokens this minute, tokens last minute, month spend counter, holds, hold expiries,
 * all tagged with the key's name (gateway/keys.h), and optionally the month's legacy spend hash
 * (TG_KEY_SPEND_LEGACY, whose field for the key is added to the counter; a Redis Cluster never
 * had it, and could not run a script on keys of two slots).
 * ARGV: now ms, rpm, tpm, budget micro-USD, key name, request id, worst-case micro-USD, worst-case
 * tokens, hold ttl ms.
 * Returns {verdict, retry-after seconds, month spend micro-USD}; for a budget, retry-after 0 means
 * "next month" and more means holds of requests in flight stand in the way. Lapsed holds go first;
 * then a request passes only if the month's spend, the holds and its own worst case fit the budget,
 * and tokens counted, held and its own fit tpm (a request bigger than tpm on its own passes only
 * alone, or it never could). A passed request holds its worst case (HSETNX: a check sent twice
 * holds once). A refused request adds nothing. */
static const char LUA[] =
    "local now=tonumber(ARGV[1])\n"
    "local HOLD,HEXP=KEYS[5],KEYS[6]\n" TG_KEY_HOLD_LUA_DROP
    "for _,x in ipairs(redis.call('ZRANGEBYSCORE',HEXP,'-inf',now)) do drop(x) end\n"
    "local spend=tonumber(redis.call('GET',KEYS[4]) or '0') or 0\n"
    "if KEYS[7] then spend=spend+(tonumber(redis.call('HGET',KEYS[7],ARGV[5]) or '0') or 0) end\n"
    "local hm=tonumber(redis.call('HGET',HOLD,'micro') or '0') or 0\n"
    "local ht=tonumber(redis.call('HGET',HOLD,'tokens') or '0') or 0\n"
    "local budget=tonumber(ARGV[4])\n"
    "local rm,rt=ARGV[7],ARGV[8]\n"
    "if budget>0 then\n"
    "  if spend>=budget or spend+tonumber(rm)>budget then return {3,0,spend} end\n"
    "  if spend+hm+tonumber(rm)>budget then return {3,2,spend} end\n"
    "else rm='0' end\n"
    "local tpm=tonumber(ARGV[3])\n"
    "if tpm>0 then\n"
    "  local cur=tonumber(redis.call('GET',KEYS[2]) or '0') or 0\n"
    "  local prev=tonumber(redis.call('GET',KEYS[3]) or '0') or 0\n"
    "  local into=now%60000\n"
    "  local used=cur+prev*(1-into/60000)\n"
    "  if used>=tpm then\n"
    "    local wait\n"
    "    if cur>=tpm then wait=60000-into+60000*(1-tpm/cur) else wait=60000*(1-(tpm-cur)/prev)-into end\n"
    "    return {2,math.ceil(wait/1000),spend}\n"
    "  end\n"
    "  if used+ht>0 and used+ht+tonumber(rt)>tpm then return {2,1,spend} end\n"
    "else rt='0' end\n"
    "local rpm=tonumber(ARGV[2])\n"
    "if rpm>0 then\n"
    "  redis.call('ZREMRANGEBYSCORE',KEYS[1],'-inf',now-60000)\n"
    "  if redis.call('ZCARD',KEYS[1])>=rpm then\n"
    "    local oldest=redis.call('ZRANGE',KEYS[1],0,0,'WITHSCORES')\n"
    "    return {1,math.ceil((tonumber(oldest[2])+60000-now)/1000),spend}\n"
    "  end\n"
    "  redis.call('ZADD',KEYS[1],now,ARGV[6])\n"
    "  redis.call('PEXPIRE',KEYS[1],61000)\n"
    "end\n"
    "if (rm~='0' or rt~='0') and redis.call('HSETNX',HOLD,ARGV[6],rm..' '..rt)==1 then\n"
    "  local ttl=tonumber(ARGV[9])\n"
    "  redis.call('HINCRBY',HOLD,'micro',rm)\n"
    "  redis.call('HINCRBY',HOLD,'tokens',rt)\n"
    "  redis.call('ZADD',HEXP,now+ttl,ARGV[6])\n"
    "  if redis.call('PTTL',HOLD)<ttl then\n"
    "    redis.call('PEXPIRE',HOLD,ttl)\n"
    "    redis.call('PEXPIRE',HEXP,ttl)\n"
    "  end\n"
    "end\n"
    "return {0,0,spend}\n";

/* KEYS: holds, hold expiries. ARGV: request id. */
static const char LUA_RELEASE[] =
    "local HOLD,HEXP=KEYS[1],KEYS[2]\n" TG_KEY_HOLD_LUA_DROP "drop(ARGV[1])\nreturn 1\n";

struct tg_quota_check_s {
    struct event timer;
    tg_ledger_t *l;
    tg_ledger_query_t *q;
    const tg_key_t *key;
    int64_t now_ms, budget_micro, worst_micro;
    int workers, retried, done;
    tg_quota_fn fn;
    void *ud;
    char keys[7][600], args[9][600];
};

/* What this worker knows for when Redis does not answer: requests and tokens of the current
 * minute here, and the month's spend (last figure from Redis plus what finished here since). */
typedef struct {
    char name[64];
    int64_t minute, reqs, tokens;
    int64_t month, spend_redis, spend_local;
} local_t;

static _Thread_local local_t local_tab[LOCAL_SLOTS];
static _Thread_local int64_t last_warn_ms;

int tg_quota_applies(const tg_key_t *key) {
    return key != NULL && (key->budget_usd_month > 0 || key->rpm > 0 || key->tpm > 0);
}

int tg_quota_holds(const tg_key_t *key) {
    return key != NULL && (key->budget_usd_month > 0 || key->tpm > 0);
}

static void on_released(const struct redisReply *rep, void *ud) {
    (void)ud;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        tg_debug("quota: redis refused to release a hold: %s", rep->str);
}

static int64_t month_of(int64_t ms) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
}

static local_t *local_get(const char *name, int64_t now_ms) {
    uint32_t h = tg_hash_fnv32(TG_HASH_FNV32_SEED, name, strlen(name));
    local_t *e = &local_tab[h % LOCAL_SLOTS];
    if (strncmp(e->name, name, sizeof(e->name) - 1) != 0) { /* a new key takes the slot over */
        memset(e, 0, sizeof(*e));
        snprintf(e->name, sizeof(e->name), "%s", name);
    }
    int64_t minute = now_ms / 60000, month = month_of(now_ms);
    if (e->minute != minute) e->minute = minute, e->reqs = e->tokens = 0;
    if (e->month != month) e->month = month, e->spend_redis = e->spend_local = 0;
    return e;
}

void tg_quota_note(const tg_key_t *key, int64_t ts_ms, int64_t cost_micro_usd, int64_t tokens) {
    if (!tg_quota_applies(key)) return;
    local_t *e = local_get(key->name, ts_ms);
    e->spend_local += cost_micro_usd;
    e->tokens += tokens;
}

static int64_t budget_micro(const tg_key_t *k) {
    return tg_money_from_usd(k->budget_usd_month);
}

/* Seconds until 00:00 UTC on the 1st of next month. */
static int to_next_month(int64_t now_ms) {
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mon += 1;
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    int64_t next = (int64_t)timegm(&tm);
    return (int)(next - now_ms / 1000);
}

/* worst: the request's worst case in micro-USD when the verdict counted it (0: it did not). */
static void verdict(tg_quota_result_t *res, const tg_key_t *k, int v, int64_t retry, int64_t spend,
                    int64_t worst, int64_t now_ms) {
    res->verdict = (tg_quota_verdict_t)v;
    res->status = v == TG_QUOTA_OK ? 0 : v == TG_QUOTA_BUDGET ? 402 : 429;
    int held = v == TG_QUOTA_BUDGET && retry > 0; /* room only once requests in flight settle */
    res->retry_after_s = v == TG_QUOTA_BUDGET && !held ? to_next_month(now_ms)
                         : retry < 1                   ? 1
                         : retry > 3600                ? 3600
                                                       : (int)retry;
    char a[TG_MONEY_TEXT_MAX], b[TG_MONEY_TEXT_MAX], w[TG_MONEY_TEXT_MAX];
    switch (v) {
    case TG_QUOTA_BUDGET:
        tg_money_format(spend, a);
        tg_money_format(budget_micro(k), b);
        if (held) {
            snprintf(
                res->message, sizeof(res->message),
                "gateway key '%s' has spent $%s of its budget of $%s this month (UTC) and requests in flight "
                "hold the rest until they finish; retry after %d s",
                k->name, a, b, res->retry_after_s);
            break;
        }
        if (worst <= 0) {
            snprintf(
                res->message, sizeof(res->message),
                "gateway key '%s' has spent $%s this month (UTC), reaching its budget of $%s "
                "(budget_usd_month); requests resume on the 1st of next month or when the budget is raised",
                k->name, a, b);
            break;
        }
        tg_money_format(worst, w);
        snprintf(
            res->message, sizeof(res->message),
            "gateway key '%s' has spent $%s this month (UTC); this request could cost up to $%s, past its "
            "budget of $%s (budget_usd_month); requests resume on the 1st of next month, when the budget is "
            "raised, or with a smaller max_tokens",
            k->name, a, w, b);
        break;
    case TG_QUOTA_RPM:
        snprintf(res->message, sizeof(res->message),
                 "gateway key '%s' is over its rate limit of %" PRId64
                 " requests per minute; retry after %d s",
                 k->name, k->rpm, res->retry_after_s);
        break;
    case TG_QUOTA_TPM:
        snprintf(res->message, sizeof(res->message),
                 "gateway key '%s' is over its rate limit of %" PRId64 " tokens per minute; retry after %d s",
                 k->name, k->tpm, res->retry_after_s);
        break;
    default:
        res->message[0] = '\0';
    }
}

/* Without Redis: each worker allows its share of rpm and tpm within the current minute and
 * stops a key whose last known month spend plus this worker's since then reach the budget. */
static void decide_local(const tg_key_t *k, int64_t now_ms, int workers, tg_quota_result_t *res) {
    local_t *e = local_get(k->name, now_ms);
    int64_t w = workers > 0 ? workers : 1, b = budget_micro(k), spend = e->spend_redis + e->spend_local;
    int64_t wait = 60 - (now_ms % 60000) / 1000;
    res->degraded = 1;
    if (b > 0 && spend >= b)
        verdict(res, k, TG_QUOTA_BUDGET, 0, spend, 0, now_ms);
    else if (k->tpm > 0 && e->tokens >= (k->tpm + w - 1) / w)
        verdict(res, k, TG_QUOTA_TPM, wait, spend, 0, now_ms);
    else if (k->rpm > 0 && e->reqs >= (k->rpm + w - 1) / w)
        verdict(res, k, TG_QUOTA_RPM, wait, spend, 0, now_ms);
    else
        verdict(res, k, TG_QUOTA_OK, 0, spend, 0, now_ms);
    if (res->verdict == TG_QUOTA_OK) e->reqs++;
    if (now_ms - last_warn_ms > 10000) {
        last_warn_ms = now_ms;
        tg_warn("quota: no answer from redis (down, slow or not configured): budgets and rate limits are "
                "enforced per worker, approximately, until it answers");
    }
}

static void finish(tg_quota_check_t *c, tg_quota_result_t *res) {
    c->done = 1;
    event_del(&c->timer);
    if (c->q) tg_ledger_query_cancel(c->q);
    c->q = NULL;
    c->fn(res, c->ud); /* may free the request's pool, and c with it */
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
    tg_quota_check_t *c = arg;
    tg_quota_result_t res = {0};
    decide_local(c->key, c->now_ms, c->workers, &res);
    finish(c, &res);
}

static int send_script(tg_quota_check_t *c, int full);

static void on_reply(const struct redisReply *rep, void *ud) {
    tg_quota_check_t *c = ud;
    c->q = NULL;
    tg_quota_result_t res = {0};
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 && !c->retried) {
        c->retried = 1; /* Redis restarted or flushed its scripts: EVAL loads it again */
        if (send_script(c, 1) == 0) return;
    }
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        int v = (int)rep->element[0]->integer;
        int64_t spend = rep->element[2]->integer;
        local_t *e = local_get(c->key->name, c->now_ms);
        e->spend_redis = spend; /* the shared figure replaces this worker's own count */
        e->spend_local = 0;
        if (v == TG_QUOTA_OK) e->reqs++;
        verdict(&res, c->key, v >= 0 && v <= 3 ? v : 0, rep->element[1]->integer, spend, c->worst_micro,
                c->now_ms);
    } else {
        if (rep && rep->type == REDIS_REPLY_ERROR && c->now_ms - last_warn_ms > 10000) {
            last_warn_ms = c->now_ms;
            tg_warn("quota: redis refused the check: %s", rep->str);
        }
        decide_local(c->key, c->now_ms, c->workers, &res);
    }
    finish(c, &res);
}

static int send_script(tg_quota_check_t *c, int full) {
    static _Thread_local char sha[41];
    if (sha[0] == '\0') tg_ledger_sha1_hex(LUA, sizeof(LUA) - 1, sha);
    const char *argv[20];
    size_t lens[20];
    int n = 0;
    argv[n] = full ? "EVAL" : "EVALSHA", lens[n] = strlen(argv[n]), n++;
    argv[n] = full ? LUA : sha, lens[n] = full ? sizeof(LUA) - 1 : 40, n++;
    int nk = tg_ledger_cluster(c->l) ? 6 : 7; /* the legacy hash sits in another slot of a cluster */
    argv[n] = nk == 6 ? "6" : "7", lens[n] = 1, n++;
    for (int i = 0; i < nk; i++)
        argv[n] = c->keys[i], lens[n] = strlen(c->keys[i]), n++;
    for (int i = 0; i < 9; i++)
        argv[n] = c->args[i], lens[n] = strlen(c->args[i]), n++;
    c->q = tg_ledger_quick_query(c->l, n, argv, lens, 3, on_reply, c);
    return c->q ? 0 : -1;
}

static void hold_keys(const char *name, char *hold, char *hexp, size_t cap) {
    snprintf(hold, cap, TG_KEY_HOLD "%.500s" TG_KEY_TAG_END, name);
    snprintf(hexp, cap, TG_KEY_HOLD_EXP "%.500s" TG_KEY_TAG_END, name);
}

void tg_quota_release(tg_ledger_t *l, const tg_key_t *key, const char *request_id) {
    if (l == NULL || !tg_quota_holds(key)) return;
    char hold[600], hexp[600], id[80];
    hold_keys(key->name, hold, hexp, sizeof(hold));
    snprintf(id, sizeof(id), "%.64s", request_id);
    const char *argv[6] = {"EVAL", LUA_RELEASE, "2", hold, hexp, id};
    size_t lens[6] = {4, sizeof(LUA_RELEASE) - 1, 1, strlen(hold), strlen(hexp), strlen(id)};
    tg_ledger_query_t *q = tg_ledger_quick_query(l, 6, argv, lens, 3, on_released, NULL);
    (void)q; /* nothing waits for the answer: a hold never released lapses by itself */
}

void tg_quota_worst_case(const tg_config_t *cfg, const tg_candidate_t *cands, size_t n,
                         const tg_scan_req_t *scan, tg_kind_t kind, int64_t ts_ms, tg_quota_hold_t *out) {
    memset(out, 0, sizeof(*out));
    int64_t prompt = tg_price_estimate_prompt(scan);
    for (size_t i = 0; i < n; i++) {
        const tg_price_t *p = tg_config_price(cfg, cands[i].provider->name, cands[i].model);
        int64_t output = 0;
        if (kind == TG_KIND_CHAT) {
            output = scan->max_tokens >= 0                       ? scan->max_tokens
                     : cands[i].provider->default_max_tokens > 0 ? cands[i].provider->default_max_tokens
                     : p && p->max_output > 0
                         ? p->max_output
                         : tg_price_estimate_output_def(scan, cfg->default_output_tokens);
        }
        int64_t micro = tg_price_cost_micro(p, prompt, 0, output, ts_ms);
        if (micro > out->micro) out->micro = micro;
        if (prompt + output > out->tokens) out->tokens = prompt + output;
    }
    /* Every attempt may run its whole total timeout, and a little more for the record to land. */
    unsigned total = cfg->limits.total_ms;
    unsigned tries = cfg->limits.max_attempts > 0 ? cfg->limits.max_attempts : 1;
    out->ttl_ms = total > 0 ? (int64_t)total * tries + 60000 : HOLD_TTL_MS;
}

int tg_quota_check(tg_ledger_t *l, struct event_base *base, tg_pool_t *pool, const tg_key_t *key,
                   const char *request_id, int64_t now_ms, const tg_quota_hold_t *hold, int workers,
                   tg_quota_fn fn, void *ud, tg_quota_check_t **pending, tg_quota_result_t *res) {
    memset(res, 0, sizeof(*res));
    *pending = NULL;
    if (!tg_quota_applies(key)) return 0;
    tg_quota_check_t *c = tg_pool_calloc(pool, sizeof(*c));
    c->l = l;
    c->key = key;
    c->now_ms = now_ms;
    c->budget_micro = budget_micro(key);
    c->worst_micro = hold && hold->micro > 0 ? hold->micro : 0;
    c->workers = workers;
    c->fn = fn;
    c->ud = ud;
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    int64_t minute = now_ms / 60000;
    snprintf(c->keys[0], sizeof(c->keys[0]), TG_KEY_RPM "%.500s" TG_KEY_TAG_END, key->name);
    snprintf(c->keys[1], sizeof(c->keys[1]), TG_KEY_TPM "%.500s" TG_KEY_TAG_END ":%" PRId64, key->name,
             minute);
    snprintf(c->keys[2], sizeof(c->keys[2]), TG_KEY_TPM "%.500s" TG_KEY_TAG_END ":%" PRId64, key->name,
             minute - 1);
    snprintf(c->keys[3], sizeof(c->keys[3]), TG_KEY_SPEND "%.500s" TG_KEY_TAG_END ":%04d-%02d", key->name,
             tm.tm_year + 1900, tm.tm_mon + 1);
    snprintf(c->keys[6], sizeof(c->keys[6]), TG_KEY_SPEND_LEGACY "%04d-%02d", tm.tm_year + 1900,
             tm.tm_mon + 1);
    snprintf(c->args[0], sizeof(c->args[0]), "%" PRId64, now_ms);
    snprintf(c->args[1], sizeof(c->args[1]), "%" PRId64, key->rpm);
    snprintf(c->args[2], sizeof(c->args[2]), "%" PRId64, key->tpm);
    snprintf(c->args[3], sizeof(c->args[3]), "%" PRId64, c->budget_micro);
    snprintf(c->args[4], sizeof(c->args[4]), "%.500s", key->name);
    snprintf(c->args[5], sizeof(c->args[5]), "%.64s", request_id);
    snprintf(c->args[6], sizeof(c->args[6]), "%" PRId64, hold && hold->micro > 0 ? hold->micro : 0);
    snprintf(c->args[7], sizeof(c->args[7]), "%" PRId64, hold && hold->tokens > 0 ? hold->tokens : 0);
    snprintf(c->args[8], sizeof(c->args[8]), "%" PRId64,
             hold && hold->ttl_ms > 0 ? hold->ttl_ms : HOLD_TTL_MS);
    hold_keys(key->name, c->keys[4], c->keys[5], sizeof(c->keys[4]));
    if (l == NULL || send_script(c, 0) != 0) {
        decide_local(key, now_ms, workers, res);
        return 0;
    }
    event_assign(&c->timer, base, -1, 0, on_timeout, c);
    struct timeval tv = {0, QUOTA_WAIT_MS * 1000};
    event_add(&c->timer, &tv);
    *pending = c;
    return 1;
}

void tg_quota_cancel(tg_quota_check_t *c) {
    if (c == NULL || c->done) return;
    c->done = 1;
    event_del(&c->timer);
    tg_ledger_query_cancel(c->q);
    c->q = NULL;
}
