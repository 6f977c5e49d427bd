/* quota.c — budgets and rate limits per gateway key, enforced in Redis so that every gateway
 * instance on one Redis shares them. A check is one EVALSHA of the script below, sent before the
 * upstream call on the worker's quota link (tg_ledger_quick_query), so it never waits behind
 * the ledger's records or a journal replay:
 *   budget  HGET tg:spend:{YYYY-MM} <key> (micro-USD, added by the ledger's own script as
 *           each request finishes) >= budget -> 402 until the month ends (UTC);
 *   tpm     sliding-window counter: tokens of this minute + the previous minute's weighted by
 *           the part of it still inside the last 60 s (tg:tpm:<key>:<minute>, INCRBY'd by the
 *           ledger) >= tpm -> 429. Tokens are known only after an answer, so tpm stops the
 *           requests that come after the minute's tokens are spent;
 *   rpm     sliding log: a sorted set of this key's admitted requests of the last 60 s
 *           (tg:rpm:<key>); full -> 429 until the oldest leaves it. Exact at any moment, at
 *           most rpm members, so a burst across a minute boundary cannot pass twice the rate
 *           as a fixed window would.
 * A refused request adds nothing. Without an answer within QUOTA_WAIT_MS (Redis down, slow,
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

#define QUOTA_WAIT_MS 250
#define LOCAL_SLOTS 128

/* KEYS: rpm log, tokens this minute, tokens last minute, month spend hash.
 * ARGV: now ms, rpm, tpm, budget micro-USD, key name, request id.
 * Returns {verdict, retry-after seconds, month spend micro-USD}. */
static const char LUA[] =
    "local now=tonumber(ARGV[1])\n"
    "local spend=tonumber(redis.call('HGET',KEYS[4],ARGV[5]) or '0') or 0\n"
    "local budget=tonumber(ARGV[4])\n"
    "if budget>0 and spend>=budget then return {3,0,spend} end\n"
    "local tpm=tonumber(ARGV[3])\n"
    "if tpm>0 then\n"
    "  local cur=tonumber(redis.call('GET',KEYS[2]) or '0') or 0\n"
    "  local prev=tonumber(redis.call('GET',KEYS[3]) or '0') or 0\n"
    "  local into=now%60000\n"
    "  if cur+prev*(1-into/60000)>=tpm then\n"
    "    local wait\n"
    "    if cur>=tpm then wait=60000-into+60000*(1-tpm/cur) else wait=60000*(1-(tpm-cur)/prev)-into end\n"
    "    return {2,math.ceil(wait/1000),spend}\n"
    "  end\n"
    "end\n"
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
    "return {0,0,spend}\n";

struct tg_quota_check_s {
    struct event timer;
    tg_ledger_t *l;
    tg_ledger_query_t *q;
    const tg_key_t *key;
    int64_t now_ms, budget_micro;
    int workers, retried, done;
    tg_quota_fn fn;
    void *ud;
    char keys[4][600], args[6][600];
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

static void verdict(tg_quota_result_t *res, const tg_key_t *k, int v, int64_t retry, int64_t spend,
                    int64_t now_ms) {
    res->verdict = (tg_quota_verdict_t)v;
    res->status = v == TG_QUOTA_OK ? 0 : v == TG_QUOTA_BUDGET ? 402 : 429;
    res->retry_after_s = v == TG_QUOTA_BUDGET ? to_next_month(now_ms)
                         : retry < 1          ? 1
                         : retry > 3600       ? 3600
                                              : (int)retry;
    char a[TG_MONEY_TEXT_MAX], b[TG_MONEY_TEXT_MAX];
    switch (v) {
    case TG_QUOTA_BUDGET:
        tg_money_format(spend, a);
        tg_money_format(budget_micro(k), b);
        snprintf(
            res->message, sizeof(res->message),
            "gateway key '%s' has spent $%s this month (UTC), reaching its budget of $%s (budget_usd_month); "
            "requests resume on the 1st of next month or when the budget is raised",
            k->name, a, b);
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
        verdict(res, k, TG_QUOTA_BUDGET, 0, spend, now_ms);
    else if (k->tpm > 0 && e->tokens >= (k->tpm + w - 1) / w)
        verdict(res, k, TG_QUOTA_TPM, wait, spend, now_ms);
    else if (k->rpm > 0 && e->reqs >= (k->rpm + w - 1) / w)
        verdict(res, k, TG_QUOTA_RPM, wait, spend, now_ms);
    else
        verdict(res, k, TG_QUOTA_OK, 0, spend, now_ms);
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
        verdict(&res, c->key, v >= 0 && v <= 3 ? v : 0, rep->element[1]->integer, spend, c->now_ms);
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
    const char *argv[15];
    size_t lens[15];
    int n = 0;
    argv[n] = full ? "EVAL" : "EVALSHA", lens[n] = strlen(argv[n]), n++;
    argv[n] = full ? LUA : sha, lens[n] = full ? sizeof(LUA) - 1 : 40, n++;
    argv[n] = "4", lens[n] = 1, n++;
    for (int i = 0; i < 4; i++)
        argv[n] = c->keys[i], lens[n] = strlen(c->keys[i]), n++;
    for (int i = 0; i < 6; i++)
        argv[n] = c->args[i], lens[n] = strlen(c->args[i]), n++;
    c->q = tg_ledger_quick_query(c->l, n, argv, lens, on_reply, c);
    return c->q ? 0 : -1;
}

int tg_quota_check(tg_ledger_t *l, struct event_base *base, tg_pool_t *pool, const tg_key_t *key,
                   const char *request_id, int64_t now_ms, int workers, tg_quota_fn fn, void *ud,
                   tg_quota_check_t **pending, tg_quota_result_t *res) {
    memset(res, 0, sizeof(*res));
    *pending = NULL;
    if (!tg_quota_applies(key)) return 0;
    tg_quota_check_t *c = tg_pool_calloc(pool, sizeof(*c));
    c->l = l;
    c->key = key;
    c->now_ms = now_ms;
    c->budget_micro = budget_micro(key);
    c->workers = workers;
    c->fn = fn;
    c->ud = ud;
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    int64_t minute = now_ms / 60000;
    snprintf(c->keys[0], sizeof(c->keys[0]), TG_KEY_RPM "%.500s", key->name);
    snprintf(c->keys[1], sizeof(c->keys[1]), TG_KEY_TPM "%.500s:%" PRId64, key->name, minute);
    snprintf(c->keys[2], sizeof(c->keys[2]), TG_KEY_TPM "%.500s:%" PRId64, key->name, minute - 1);
    snprintf(c->keys[3], sizeof(c->keys[3]), TG_KEY_SPEND "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
    snprintf(c->args[0], sizeof(c->args[0]), "%" PRId64, now_ms);
    snprintf(c->args[1], sizeof(c->args[1]), "%" PRId64, key->rpm);
    snprintf(c->args[2], sizeof(c->args[2]), "%" PRId64, key->tpm);
    snprintf(c->args[3], sizeof(c->args[3]), "%" PRId64, c->budget_micro);
    snprintf(c->args[4], sizeof(c->args[4]), "%.500s", key->name);
    snprintf(c->args[5], sizeof(c->args[5]), "%.64s", request_id);
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
