/* ledger.c — the usage ledger of one worker: every finished request's usage, written once
 * to Redis. A record enters through tg_ledger_record() and leaves as one EVALSHA of a small Lua
 * script that does SET tg:done:<id> NX EX 7d and, only if that was new, the day hash HINCRBYs
 * (tg:usage-sim:{day} instead of tg:usage:{day} for a simulated answer), the key's month spend and
 * tokens, the release of the request's quota hold (gateway/quota.c) and the XADD to
 * tg:events: replaying a record is harmless, so anything not acknowledged is re-sent. Records are kept in one
 * list (`head`..`tail`, oldest first) until their own reply acknowledges them: each command carries its
 * record, so a reply never depends on the order of the others (links to several Redis nodes answer out of
 * order; one link answers in order, which changes nothing here). The connection is gateway/redis.c; when it
 * is down or behind, records go to the journal (gateway/journal.c), which is replayed in order before new
 * records once the script is loaded again, after taking over the journal files no running worker holds
 * (tg_journal_adopt). On a Redis Cluster the same script runs on the master of the gateway key's slot
 * under tagged key names (gateway/keys.h), a record also enters the day's index, and it counts once a
 * replica confirmed it ("Redis Cluster", below). */
#include "gateway/ledger.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "gateway/journal.h"
#include "gateway/keys.h"
#include "gateway/ledger_rec.h"
#include "gateway/redis.h"
#include "gateway/redis_cluster.h"

#define DONE_TTL "604800" /* tg:done:<id> lives 7 days */
#define EVENTS_MAXLEN "1000000"

/* KEYS: done, day hash (the simulated one for a simulated answer), stream, the key's month spend counter,
 * the key's tokens-per-minute counter, the key's holds and hold expiries (gateway/quota.h).
 * ARGV: ttl, field prefix, in, cached, out, reasoning, cost, maxlen, requests (1, or 0 for a
 * failed attempt the provider billed), key name, tokens, simulated (1: made-up spend, which
 * never reaches the month spend that budgets read; its tokens still count for tpm), cache hit
 * (1: answered from the response cache, counted in cache_hits) and the cost it saved
 * (saved_cost_micro_usd), request id (whose hold, made by the quota check, is released here as
 * the real cost is added: once, like everything else behind the done marker), then the event's
 * field/value pairs.
 * Returns 1 if applied, 0 if already counted. Redis does not undo a script that fails
 * halfway, so everything that could fail is checked before the first write, and the done
 * marker is set last: a record that errors is retried. The month spend and the token counter
 * are what quota.c reads for budgets and tpm (gateway/quota.c). */
static const char LUA[] =
    "if redis.call('EXISTS',KEYS[1])==1 then return 0 end\n"
    "local function t(k,w) local x=redis.call('TYPE',k).ok return x==w or x=='none' end\n"
    "if not (t(KEYS[2],'hash') and t(KEYS[3],'stream') and t(KEYS[4],'string') and t(KEYS[5],'string') and\n"
    "        t(KEYS[6],'hash') and t(KEYS[7],'zset')) then\n"
    "  return redis.error_reply('WRONGTYPE a tollgate ledger key ('..KEYS[2]..', '..KEYS[3]..', "
    "'..KEYS[4]..\n"
    "    ', '..KEYS[5]..', '..KEYS[6]..', '..KEYS[7]..') holds something else')\n"
    "end\n"
    "local HOLD,HEXP=KEYS[6],KEYS[7]\n" TG_KEY_HOLD_LUA_DROP "local h,p=KEYS[2],ARGV[2]\n"
    "redis.call('HINCRBY',h,p..'requests',ARGV[9])\n"
    "redis.call('HINCRBY',h,p..'input_tokens',ARGV[3])\n"
    "redis.call('HINCRBY',h,p..'cached_input_tokens',ARGV[4])\n"
    "redis.call('HINCRBY',h,p..'output_tokens',ARGV[5])\n"
    "redis.call('HINCRBY',h,p..'reasoning_tokens',ARGV[6])\n"
    "redis.call('HINCRBY',h,p..'cost_micro_usd',ARGV[7])\n"
    "if ARGV[10]~='' then\n"
    "  if ARGV[12]~='1' then redis.call('INCRBY',KEYS[4],ARGV[7]) end\n"
    "  redis.call('INCRBY',KEYS[5],ARGV[11])\n"
    "  redis.call('PEXPIRE',KEYS[5],180000)\n"
    "  drop(ARGV[15])\n"
    "end\n"
    "if ARGV[13]=='1' then\n"
    "  redis.call('HINCRBY',h,p..'cache_hits',1)\n"
    "  redis.call('HINCRBY',h,p..'saved_cost_micro_usd',ARGV[14])\n"
    "end\n"
    "redis.call('XADD',KEYS[3],'MAXLEN','~',ARGV[8],'*',unpack(ARGV,16))\n"
    "redis.call('SET',KEYS[1],'1','EX',ARGV[1])\n"
    "return 1\n";

/* One record on its way: the entry, the command that carries it (NULL while none is out: not
 * sent yet, or its link went down and the command was cancelled) and its place in the list. */
typedef struct item_s {
    tg_ledger_t *l;
    ent_t *e;
    tg_redis_cmd_t *cmd;
    /* On a cluster: the record's script and, for a key's first record of the day, the index
     * entry (TG_KEY_USAGE_INDEX); the record is written once both answered. */
    tg_rcluster_cmd_t *ccmd, *icmd;
    unsigned char script_ok, index_ok, eval;
    /* waiting for a replica (below): the node whose WAIT will confirm the script, the index entry;
     * state 1 written, 2 covered by the WAIT in flight */
    int wnode, iwnode;
    unsigned char wstate, iwstate;
    unsigned short slot, islot; /* of the record's keys, of the index entry */
    struct item_s *prev, *next;
} item_t;

/* A master's WAIT: at most one in flight, covering the writes acknowledged before it was sent. */
typedef struct {
    struct tg_ledger_s *l;
    int node;
    unsigned slot;          /* the WAIT goes to this slot's master: the node */
    int waiting;            /* writes of items waiting for it */
    tg_rcluster_cmd_t *cmd; /* in flight, or NULL */
} wnode_t;

#define INDEX_MEMO 512 /* (tag, day) pairs whose index entry Redis acknowledged; a miss costs one SADD */

struct tg_ledger_s {
    tg_redis_t *redis;     /* NULL = ledger off */
    tg_redis_t *side;      /* quota checks: a link of their own, never behind records or a replay */
    tg_journal_t *journal; /* NULL = no journal */
    int ready;             /* connected and the script loaded: records flow */
    char sha[41];
    int use_eval; /* the server lost the script: EVAL until SCRIPT LOAD answers again */
    /* records sent (ready) or waiting for a connection, oldest first */
    item_t *head, *tail;
    size_t rcount, mem_count;
    size_t max_backlog;
    int64_t day_num; /* cache of the last day key */
    char day[16];
    int64_t last_warn_ms;
    uint64_t written, replayed, dropped;
    /* Redis Cluster (a redis[s]+cluster:// URL): cl carries the records, cside the quota checks;
     * redis and side are then NULL. `ready` follows tg_rcluster_ready, looked at by `poll`. */
    int cluster;
    tg_rcluster_t *cl, *cside;
    struct event *poll;
    int failing;         /* a command failed: the next poll puts every record back (cluster_down) */
    int64_t retry_at_ms; /* not ready again before this (monotonic ms) */
    wnode_t **wn;        /* per cluster node (tg_rcluster_node_of), its WAIT */
    int n_wn;
    char why[160]; /* what failed, for the log */
    struct {
        uint64_t h;
        int64_t day;
    } memo[INDEX_MEMO];
};

static void replay_pump(tg_ledger_t *l);

/* --- records ------------------------------------------------------------------------------- */

static void rv_from_rec(rv_t *v, const tg_ledger_rec_t *rec) {
    const char *s[S_N] = {rec->request_id, rec->key_name, rec->route, rec->provider, rec->model};
    for (int i = 0; i < S_N; i++) {
        v->s[i] = s[i] ? s[i] : "";
        v->len[i] = strnlen(v->s[i], MAX_STR);
    }
    int64_t n[N_N] = {rec->ts_ms,
                      rec->status,
                      rec->attempts,
                      rec->usage.input_tokens,
                      rec->usage.cached_input_tokens,
                      rec->usage.cache_write_tokens,
                      rec->usage.output_tokens,
                      rec->usage.reasoning_tokens,
                      rec->cost_micro_usd,
                      rec->latency_ms,
                      rec->ttft_ms,
                      rec->usage.estimated ? 1 : 0,
                      rec->attempt_only ? 0 : 1,
                      rec->simulated ? 1 : 0,
                      rec->cache_hit ? 1 : 0,
                      rec->cache_hit ? rec->saved_micro_usd : 0};
    memcpy(v->n, n, sizeof(n));
}

/* Puts an unlinked item at the tail: it is the newest record. */
static void list_append(tg_ledger_t *l, item_t *it) {
    it->prev = l->tail;
    it->next = NULL;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->rcount++;
}

/* A new item for e at the tail; NULL when out of memory. */
static item_t *list_push(tg_ledger_t *l, ent_t *e) {
    item_t *it = calloc(1, sizeof(*it));
    if (it == NULL) return NULL;
    it->l = l;
    it->e = e;
    it->wnode = it->iwnode = -1;
    list_append(l, it);
    return it;
}

static void list_unlink(tg_ledger_t *l, item_t *it) {
    if (it->prev)
        it->prev->next = it->next;
    else
        l->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        l->tail = it->prev;
    it->prev = it->next = NULL;
    l->rcount--;
}

/* Takes the item off the list and frees it; its entry is the caller's. */
static ent_t *list_take(tg_ledger_t *l, item_t *it) {
    ent_t *e = it->e;
    list_unlink(l, it);
    free(it);
    return e;
}

/* --- the commands ------------------------------------------------------------------------------ */

static const char *day_of(tg_ledger_t *l, int64_t ts_ms) {
    int64_t d = ts_ms >= 0 ? ts_ms / 86400000 : -((-ts_ms + 86399999) / 86400000);
    if (d != l->day_num || l->day[0] == '\0') {
        time_t t = (time_t)(d * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(l->day, sizeof(l->day), "%Y-%m-%d", &tm);
        l->day_num = d;
    }
    return l->day;
}

/* Decimal text of v; two digits a step (a record has ~50 numbers and lengths). */
static char *put_i64(char *o, int64_t v) {
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    char t[24], *e = t + sizeof t, *d = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    while (u >= 100) {
        d -= 2;
        memcpy(d, pairs + (u % 100) * 2, 2);
        u /= 100;
    }
    if (u >= 10) {
        d -= 2;
        memcpy(d, pairs + u * 2, 2);
    } else {
        *--d = (char)('0' + u);
    }
    if (v < 0) *o++ = '-';
    memcpy(o, d, (size_t)(e - d));
    return o + (e - d);
}

/* One RESP bulk string made of up to three parts (keys are built in place). */
static char *put_bulk3(char *o, const char *a, size_t an, const char *b, size_t bn, const char *c,
                       size_t cn) {
    *o++ = '$';
    o = put_i64(o, (int64_t)(an + bn + cn));
    memcpy(o, "\r\n", 2);
    memcpy(o + 2, a, an);
    memcpy(o + 2 + an, b, bn);
    memcpy(o + 2 + an + bn, c, cn);
    o += 2 + an + bn + cn;
    memcpy(o, "\r\n", 2);
    return o + 2;
}

static char *put_bulk(char *o, const char *a, size_t an) {
    return put_bulk3(o, a, an, "", 0, "", 0);
}

static char *put_str(char *o, const char *a) {
    return put_bulk(o, a, strlen(a));
}

static char *put_num(char *o, int64_t v) {
    char t[24];
    return put_bulk(o, t, (size_t)(put_i64(t, v) - t));
}

/* The record's EVALSHA, formatted here rather than by hiredis (whose per-argument printf
 * was most of the cost); see LUA for the order of the arguments. The array header is written
 * last, in front of the arguments, once their number is known. */
static void on_reply(const redisReply *rep, void *ud);
static void cluster_send(tg_ledger_t *l, item_t *it, const char *cmd, size_t len, const char *day);

/* A cluster key: prefix "{" tag "}" rest. */
static char *put_tagged(char *o, const char *prefix, size_t pl, const char *tag, size_t tl, const char *rest,
                        size_t rl) {
    char k[MAX_STR + 64];
    if (pl + tl + rl + 1 > sizeof(k)) tl = sizeof(k) - pl - rl - 1; /* cannot happen: tags and ids are cut */
    memcpy(k, prefix, pl);
    memcpy(k + pl, tag, tl);
    memcpy(k + pl + tl, TG_KEY_TAG_END, 1);
    memcpy(k + pl + tl + 1, rest, rl);
    return put_bulk(o, k, pl + tl + 1 + rl);
}

static void send_ent(tg_ledger_t *l, item_t *it) {
    const rv_t *v = &it->e->r;
    char buf[sizeof(LUA) + 24 * MAX_STR + 2048], *o = buf + 16;
    int argc = 0;
    const char *day = day_of(l, v->n[N_TS]);
    /* tokens count in the minute the request finished: ":<unix minute>" */
    char minute[24] = TG_KEY_TAG_END ":";
    int64_t end_ms = v->n[N_TS] + (v->n[N_LAT] > 0 ? v->n[N_LAT] : 0);
    size_t mlen = (size_t)(put_i64(minute + 2, end_ms / 60000) - minute);
    char month[16] = TG_KEY_TAG_END ":"; /* "}:YYYY-MM" of the day */
    memcpy(month + 2, day, 7);
#define ARG(expr) (o = (expr), argc++)
    if (l->use_eval || it->eval) {
        ARG(put_str(o, "EVAL"));
        ARG(put_bulk(o, LUA, sizeof(LUA) - 1));
    } else {
        ARG(put_str(o, "EVALSHA"));
        ARG(put_bulk(o, l->sha, 40));
    }
    ARG(put_str(o, "7"));
    if (l->cluster) { /* every key under the gateway key's tag (gateway/keys.h) */
        const char *tag = v->len[S_KEY] ? v->s[S_KEY] : TG_KEY_NOKEY_TAG;
        size_t tl = v->len[S_KEY] ? v->len[S_KEY] : TG_KEY_LEN(TG_KEY_NOKEY_TAG);
        char rest[MAX_STR + 2] = ":";
        memcpy(rest + 1, v->s[S_ID], v->len[S_ID]);
        ARG(put_tagged(o, TG_KEY_DONE "{", TG_KEY_LEN(TG_KEY_DONE) + 1, tag, tl, rest, v->len[S_ID] + 1));
        memcpy(rest + 1, day, 10);
        if (v->n[N_SIM])
            ARG(put_tagged(o, TG_KEY_USAGE_SIM "{", TG_KEY_LEN(TG_KEY_USAGE_SIM) + 1, tag, tl, rest, 11));
        else
            ARG(put_tagged(o, TG_KEY_USAGE "{", TG_KEY_LEN(TG_KEY_USAGE) + 1, tag, tl, rest, 11));
        ARG(put_tagged(o, TG_KEY_EVENTS ":{", TG_KEY_LEN(TG_KEY_EVENTS) + 2, tag, tl, "", 0));
        ARG(put_tagged(o, TG_KEY_SPEND, TG_KEY_LEN(TG_KEY_SPEND), tag, tl, month + 1, 8));
        ARG(put_tagged(o, TG_KEY_TPM, TG_KEY_LEN(TG_KEY_TPM), tag, tl, minute + 1, mlen - 1));
        ARG(put_tagged(o, TG_KEY_HOLD, TG_KEY_LEN(TG_KEY_HOLD), tag, tl, "", 0));
        ARG(put_tagged(o, TG_KEY_HOLD_EXP, TG_KEY_LEN(TG_KEY_HOLD_EXP), tag, tl, "", 0));
        goto args;
    }
    ARG(put_bulk3(o, TG_KEY_DONE, TG_KEY_LEN(TG_KEY_DONE), v->s[S_ID], v->len[S_ID], "", 0));
    if (v->n[N_SIM])
        ARG(put_bulk3(o, TG_KEY_USAGE_SIM, TG_KEY_LEN(TG_KEY_USAGE_SIM), day, strlen(day), "", 0));
    else
        ARG(put_bulk3(o, TG_KEY_USAGE, TG_KEY_LEN(TG_KEY_USAGE), day, strlen(day), "", 0));
    ARG(put_str(o, TG_KEY_EVENTS));
    ARG(put_bulk3(o, TG_KEY_SPEND, TG_KEY_LEN(TG_KEY_SPEND), v->s[S_KEY], v->len[S_KEY], month, 9));
    ARG(put_bulk3(o, TG_KEY_TPM, TG_KEY_LEN(TG_KEY_TPM), v->s[S_KEY], v->len[S_KEY], minute, mlen));
    ARG(put_bulk3(o, TG_KEY_HOLD, TG_KEY_LEN(TG_KEY_HOLD), v->s[S_KEY], v->len[S_KEY], TG_KEY_TAG_END, 1));
    ARG(put_bulk3(o, TG_KEY_HOLD_EXP, TG_KEY_LEN(TG_KEY_HOLD_EXP), v->s[S_KEY], v->len[S_KEY], TG_KEY_TAG_END,
                  1));
args:
    ARG(put_str(o, DONE_TTL));
    *o++ = '$';
    o = put_i64(o, (int64_t)(v->len[S_PROVIDER] + v->len[S_MODEL] + v->len[S_KEY] + 3));
    memcpy(o, "\r\n", 2);
    o += 2;
    const int parts[3] = {S_PROVIDER, S_MODEL, S_KEY};
    for (int i = 0; i < 3; i++) {
        memcpy(o, v->s[parts[i]], v->len[parts[i]]);
        o += v->len[parts[i]];
        *o++ = '|';
    }
    memcpy(o, "\r\n", 2);
    o += 2;
    argc++;
    const int incr[5] = {N_IN, N_CACHED, N_OUT, N_REASON, N_COST};
    for (int i = 0; i < 5; i++)
        ARG(put_num(o, v->n[incr[i]]));
    ARG(put_str(o, EVENTS_MAXLEN));
    ARG(put_num(o, v->n[N_REQS]));
    ARG(put_bulk(o, v->s[S_KEY], v->len[S_KEY]));
    ARG(put_num(o, v->n[N_IN] + v->n[N_OUT]));
    ARG(put_str(o, v->n[N_SIM] ? "1" : "0"));
    ARG(put_str(o, v->n[N_CACHE_HIT] ? "1" : "0"));
    ARG(put_num(o, v->n[N_SAVED]));
    ARG(put_bulk(o, v->s[S_ID], v->len[S_ID]));
    ARG(put_str(o, ledger_num_names[N_TS]));
    ARG(put_num(o, v->n[N_TS]));
    for (int i = 0; i < S_N; i++) {
        ARG(put_str(o, ledger_str_names[i]));
        ARG(put_bulk(o, v->s[i], v->len[i]));
    }
    for (int i = N_STATUS; i < N_N; i++) {
        ARG(put_str(o, ledger_num_names[i]));
        ARG(put_num(o, v->n[i]));
    }
#undef ARG
    char head[16];
    size_t hl = (size_t)(put_i64(head + 1, argc) - head);
    head[0] = '*';
    memcpy(head + hl, "\r\n", 2);
    hl += 2;
    char *start = buf + 16 - hl;
    memcpy(start, head, hl);
    if (l->cluster) {
        cluster_send(l, it, start, (size_t)(o - start), day);
        return;
    }
    if ((it->cmd = tg_redis_send(l->redis, start, (size_t)(o - start), on_reply, it)) == NULL)
        tg_redis_drop(l->redis); /* the link is going away: on_down re-queues everything */
}

static void on_script(const redisReply *rep, void *ud);
static void went_ready(tg_ledger_t *l);

/* SCRIPT LOAD, formatted like the records; the reply carries the SHA-1 that EVALSHA names. */
static void load_script(tg_ledger_t *l) {
    char buf[sizeof(LUA) + 64], *o = buf;
    memcpy(o, "*3\r\n", 4);
    o = put_str(o + 4, "SCRIPT");
    o = put_str(o, "LOAD");
    o = put_bulk(o, LUA, sizeof(LUA) - 1);
    if (tg_redis_send(l->redis, buf, (size_t)(o - buf), on_script, l) == NULL) tg_redis_drop(l->redis);
}

/* --- the replies --------------------------------------------------------------------------- */

static void acked(tg_ledger_t *l, ent_t *e) {
    l->written++;
    if (e->from_journal) {
        l->replayed++;
        if (tg_journal_acked(l->journal)) replay_pump(l);
    } else {
        l->mem_count--;
    }
    free(e);
}

static void on_reply(const redisReply *rep, void *ud) {
    item_t *it = ud;
    tg_ledger_t *l = it->l;
    it->cmd = NULL;
    /* After an error the link is dropped: replies that still arrive acknowledge nothing, and
     * every record still listed is re-sent or journaled, which the script makes safe. */
    if (rep == NULL || tg_redis_state(l->redis) == TG_REDIS_CLOSING) return;
    if (rep->type == REDIS_REPLY_INTEGER) {
        acked(l, list_take(l, it));
    } else if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* Someone ran SCRIPT FLUSH: send the script itself until it is loaded again. */
        if (!l->use_eval) load_script(l);
        l->use_eval = 1;
        list_unlink(l, it); /* it is the newest command now, so it goes to the tail */
        list_append(l, it);
        send_ent(l, it);
    } else {
        if (tg_clock_warn_due(&l->last_warn_ms))
            tg_warn("ledger: redis answered %s to a usage record; reconnecting",
                    rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
        tg_redis_drop(l->redis);
    }
}

/* The script is in: from here on records flow, the journal first. */
static void on_script(const redisReply *rep, void *ud) {
    tg_ledger_t *l = ud;
    if (rep == NULL) return;
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        if (tg_clock_warn_due(&l->last_warn_ms))
            tg_warn("ledger: redis SCRIPT LOAD failed: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        tg_redis_drop(l->redis);
        return;
    }
    memcpy(l->sha, rep->str, 40);
    l->sha[40] = '\0';
    l->use_eval = 0;
    if (l->ready) return;
    tg_redis_healthy(l->redis);
    went_ready(l);
}

/* Redis answers and knows the script: records flow, the journals first. */
static void went_ready(tg_ledger_t *l) {
    l->ready = 1;
    /* Journals of workers or processes that are gone (fewer workers than last time, a crashed
     * instance on the same directory) are replayed too: whoever finds one unlocked takes it. */
    tg_journal_adopt(l->journal);
    tg_info("ledger: connected to redis (%zu records waiting)", tg_ledger_backlog(l));
    for (item_t *it = l->head; it != NULL; it = it->next)
        send_ent(l, it);
    replay_pump(l);
}

/* --- the link ------------------------------------------------------------------------------- */

static void on_up(void *ud) {
    load_script(ud);
}

static void requeue_all(tg_ledger_t *l);

/* The link is gone (or never came): records of memory go to the journal (or wait in memory
 * when there is none), records read from the journal stay there. */
static void on_down(void *ud, const char *why, int loud) {
    tg_ledger_t *l = ud;
    if (loud)
        tg_warn("ledger: redis %s unavailable (%s); %s", tg_redis_target(l->redis), why ? why : "?",
                l->journal ? "journaling" : "keeping records in memory");
    requeue_all(l);
}

/* Every record in flight comes back: records of memory go to the journal (or wait in memory),
 * records read from the journal stay there and are read again. */
static void requeue_all(tg_ledger_t *l) {
    l->ready = 0;
    for (int i = 0; i < l->n_wn; i++)
        if (l->wn[i]) {
            tg_rcluster_cancel(l->wn[i]->cmd);
            l->wn[i]->cmd = NULL;
            l->wn[i]->waiting = 0;
        }
    for (item_t *it = l->head, *next; it != NULL; it = next) {
        next = it->next;
        /* Its command would answer NULL later; the item may be gone by then. */
        tg_redis_cancel(it->cmd);
        tg_rcluster_cancel(it->ccmd);
        tg_rcluster_cancel(it->icmd);
        it->cmd = NULL;
        it->ccmd = it->icmd = NULL;
        it->wnode = it->iwnode = -1;
        it->wstate = it->iwstate = 0;
        if (it->e->from_journal) {
            free(list_take(l, it));
        } else if (l->journal) {
            ent_t *e = list_take(l, it);
            tg_journal_append(l->journal, &e->r);
            l->mem_count--;
            free(e);
        } /* else it waits in memory, in its place, for the next connection */
    }
    if (l->journal) tg_journal_rewind(l->journal);
}

/* The quota link needs no setup (its script is sent in full when Redis does not know it); the
 * ledger's own messages already tell of Redis being away, and quota.c of deciding locally. */
static void on_side_up(void *ud) {
    tg_redis_healthy(((tg_ledger_t *)ud)->side);
}

static void on_side_down(void *ud, const char *why, int loud) {
    if (loud) tg_debug("quota: redis link down (%s)", why ? why : "?");
}

/* --- Redis Cluster ------------------------------------------------------------------------------
 * Each record goes to the master of its gateway key's slot (gateway/keys.h), as EVALSHA of the
 * same script (a master that lacks it answers NOSCRIPT and gets EVAL, which loads it there); a
 * key's first record of a day on this worker also adds the key to the day's index, which readers
 * start from. A record is written once both answered, whatever the order. Any failure (no answer:
 * a master failed; an error) puts every record back as a lost link does on one Redis, and records
 * flow again once the slot map is known and every master connected: the cluster follows the
 * failover, and the done markers make the re-sent records count once. */

#define WAIT_MS_S "100" /* how long one WAIT waits for a replica, ms */

static void cluster_fail(tg_ledger_t *l, const char *why) {
    if (l->failing) return;
    l->failing = 1;
    snprintf(l->why, sizeof(l->why), "%s", why);
    event_active(l->poll, EV_TIMEOUT, 0); /* not from inside this call: callers walk the list */
}

static size_t memo_slot(uint64_t h) {
    return (size_t)(h % INDEX_MEMO);
}

static void maybe_acked(tg_ledger_t *l, item_t *it) {
    if (it->script_ok && it->index_ok) acked(l, list_take(l, it));
}

/* The index entry is in (and on a replica): remembered, so that the key's next records of the day
 * on this worker send none. */
static void index_done(tg_ledger_t *l, item_t *it) {
    const rv_t *v = &it->e->r;
    const char *tag = v->len[S_KEY] ? v->s[S_KEY] : TG_KEY_NOKEY_TAG;
    size_t tl = v->len[S_KEY] ? v->len[S_KEY] : TG_KEY_LEN(TG_KEY_NOKEY_TAG);
    uint64_t h = tg_hash_fnv64(TG_HASH_FNV64_SEED, tag, tl);
    int64_t ts = v->n[N_TS], day = ts >= 0 ? ts / 86400000 : -((-ts + 86399999) / 86400000);
    l->memo[memo_slot(h)].h = h;
    l->memo[memo_slot(h)].day = day;
    it->index_ok = 1;
    maybe_acked(l, it);
}

/* --- durable on a replica ---
 * Replication is asynchronous: a master that dies before its replica has a write takes it along,
 * and the promoted replica never saw it. Where the map lists a replica for the master, a write
 * (the record's script, the index entry) counts only once a replica confirms it: WAIT on the same
 * link after it covers it and everything before it. One WAIT per master is in flight at a time and
 * covers every write that master acknowledged before it was sent, so a burst costs one WAIT, and a
 * replica that stops answering costs one blocked WAIT every 100 ms, not one per record. Until a
 * replica confirms (or the map stops listing one: the cluster marked it failed, and there is nothing
 * to wait for), the records stay unacknowledged: in memory, or in the journal past the backlog
 * bound; a master that dies meanwhile has them sent again to the replica that takes over. */

static wnode_t *wnode_get(tg_ledger_t *l, int node) {
    if (node >= l->n_wn) {
        wnode_t **grown = realloc(l->wn, (size_t)(node + 1) * sizeof(*grown));
        if (grown == NULL) return NULL;
        for (int i = l->n_wn; i <= node; i++)
            grown[i] = NULL;
        l->wn = grown;
        l->n_wn = node + 1;
    }
    if (l->wn[node] == NULL && (l->wn[node] = calloc(1, sizeof(wnode_t))) != NULL) {
        l->wn[node]->l = l;
        l->wn[node]->node = node;
    }
    return l->wn[node];
}

static void on_nwait(const redisReply *rep, void *ud);

/* Sends the master's WAIT, covering every write of it still waiting. */
static void wait_send(tg_ledger_t *l, wnode_t *w, unsigned slot) {
    static const char wait[] = "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$3\r\n" WAIT_MS_S "\r\n";
    for (item_t *it = l->head; it != NULL; it = it->next) {
        if (it->wnode == w->node && it->wstate == 1) it->wstate = 2;
        if (it->iwnode == w->node && it->iwstate == 1) it->iwstate = 2;
    }
    w->slot = slot;
    if ((w->cmd = tg_rcluster_send(l->cl, wait, sizeof(wait) - 1, slot, on_nwait, w)) == NULL)
        cluster_fail(l, "the slot map is gone");
}

/* A write on the master of `slot` answered: it counts once a replica has it. 0 when it waits for
 * that (WAIT), -1 when there is no replica to wait for (it counts now). `index` says which write. */
static int wait_for_replica(tg_ledger_t *l, item_t *it, unsigned slot, int index) {
    int node = tg_rcluster_node_of(l->cl, slot);
    wnode_t *w = node >= 0 && tg_rcluster_replicas(l->cl, slot) > 0 ? wnode_get(l, node) : NULL;
    if (w == NULL) return -1;
    if (index)
        it->iwnode = node, it->iwstate = 1;
    else
        it->wnode = node, it->wstate = 1;
    w->waiting++;
    if (w->cmd == NULL) wait_send(l, w, slot);
    return 0;
}

static void on_nwait(const redisReply *rep, void *ud) {
    wnode_t *w = ud;
    tg_ledger_t *l = w->l;
    w->cmd = NULL;
    if (l->failing) return; /* every record comes back anyway */
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        cluster_fail(l, rep == NULL ? "a master did not answer WAIT" : "redis refused WAIT");
        return;
    }
    if (tg_rcluster_node_of(l->cl, w->slot) != w->node) { /* the slot moved: WAIT asked another node */
        cluster_fail(l, "the slot map changed under a WAIT");
        return;
    }
    if (rep->integer < 1 && tg_rcluster_replicas(l->cl, w->slot) > 0) {
        tg_rcluster_refresh(l->cl); /* the replica may have failed: the map will say */
        if (tg_clock_warn_due(&l->last_warn_ms))
            tg_warn("ledger: redis cluster: no replica confirmed usage records within " WAIT_MS_S
                    " ms; %d wait until one does or the cluster marks it failed",
                    w->waiting);
        wait_send(l, w, w->slot); /* WAIT blocks for its timeout: this paces the retries */
        return;
    }
    /* Confirmed (or nothing left to wait for): every write the WAIT covered counts. Acknowledging may
     * pump the journal, which appends to the list: `next` is read first, and new items are never
     * covered. */
    for (item_t *it = l->head, *next; it != NULL; it = next) {
        next = it->next;
        int s = it->wnode == w->node && it->wstate == 2, i = it->iwnode == w->node && it->iwstate == 2;
        if (s) it->wstate = 0, it->wnode = -1, it->script_ok = 1, w->waiting--;
        if (i) it->iwstate = 0, it->iwnode = -1, w->waiting--;
        if (i)
            index_done(l, it);
        else if (s)
            maybe_acked(l, it);
    }
    if (w->waiting > 0 && w->cmd == NULL) wait_send(l, w, w->slot);
}

static void on_creply(const redisReply *rep, void *ud) {
    item_t *it = ud;
    tg_ledger_t *l = it->l;
    it->ccmd = NULL;
    if (l->failing) return; /* it is re-sent or journaled with the rest */
    if (rep == NULL) {
        cluster_fail(l, "a master did not answer a usage record");
    } else if (rep->type == REDIS_REPLY_INTEGER) {
        if (wait_for_replica(l, it, it->slot, 0) == 0) return;
        it->script_ok = 1;
        maybe_acked(l, it);
    } else if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 && !it->eval) {
        it->eval = 1; /* EVAL loads it on that master; the index entry, if any, is on its way */
        send_ent(l, it);
    } else {
        char why[160];
        snprintf(why, sizeof(why), "redis answered %.100s to a usage record",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
        cluster_fail(l, why);
    }
}

static void on_ireply(const redisReply *rep, void *ud) {
    item_t *it = ud;
    tg_ledger_t *l = it->l;
    it->icmd = NULL;
    if (l->failing) return;
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        cluster_fail(l, rep == NULL ? "a master did not answer" : "redis refused the usage index");
        return;
    }
    if (wait_for_replica(l, it, it->islot, 1) == 0) return;
    index_done(l, it);
}

static void cluster_send(tg_ledger_t *l, item_t *it, const char *cmd, size_t len, const char *day) {
    const rv_t *v = &it->e->r;
    const char *tag = v->len[S_KEY] ? v->s[S_KEY] : TG_KEY_NOKEY_TAG;
    size_t tl = v->len[S_KEY] ? v->len[S_KEY] : TG_KEY_LEN(TG_KEY_NOKEY_TAG);
    char braced[MAX_STR + 2];
    braced[0] = '{';
    memcpy(braced + 1, tag, tl);
    braced[tl + 1] = '}';
    it->script_ok = 0;
    it->slot = (unsigned short)tg_redis_slot(braced, tl + 2);
    if ((it->ccmd = tg_rcluster_send(l->cl, cmd, len, it->slot, on_creply, it)) == NULL) {
        cluster_fail(l, "the slot map is gone");
        return;
    }
    if (it->index_ok || it->icmd != NULL || it->iwstate != 0) return;
    uint64_t h = tg_hash_fnv64(TG_HASH_FNV64_SEED, tag, tl);
    if (l->memo[memo_slot(h)].h == h && l->memo[memo_slot(h)].day == l->day_num) {
        it->index_ok = 1;
        return;
    }
    char key[TG_KEY_LEN(TG_KEY_USAGE_INDEX) + 16];
    memcpy(key, TG_KEY_USAGE_INDEX, TG_KEY_LEN(TG_KEY_USAGE_INDEX));
    memcpy(key + TG_KEY_LEN(TG_KEY_USAGE_INDEX), day, 10);
    const char *argv[3] = {"SADD", key, tag};
    size_t lens[3] = {4, TG_KEY_LEN(TG_KEY_USAGE_INDEX) + 10, tl};
    it->islot = (unsigned short)tg_redis_slot(key, lens[1]);
    if ((it->icmd = tg_rcluster_send_argv(l->cl, 3, argv, lens, 1, on_ireply, it)) == NULL)
        cluster_fail(l, "the slot map is gone");
}

/* Every 100 ms: after a failure, every record comes back (journaled); when the map is known and
 * every master connected (again), records flow. */
static void on_poll(evutil_socket_t fd, short what, void *arg) {
    tg_ledger_t *l = arg;
    (void)fd;
    (void)what;
    if (l->failing) {
        int was = l->ready;
        requeue_all(l);
        l->failing = 0;
        memset(l->memo, 0, sizeof(l->memo)); /* a failed-over master may have lost index entries */
        l->retry_at_ms = tg_clock_mono_ms() + 500;
        if (was || tg_clock_warn_due(&l->last_warn_ms))
            tg_warn("ledger: redis cluster: %s; %s until every master answers", l->why,
                    l->journal ? "journaling" : "keeping records in memory");
    }
    if (!l->ready && tg_clock_mono_ms() >= l->retry_at_ms && tg_rcluster_ready(l->cl)) went_ready(l);
}

/* --- replay ---------------------------------------------------------------------------------- */

static int replay_take(void *ud, ent_t *e) {
    tg_ledger_t *l = ud;
    item_t *it = list_push(l, e);
    if (it == NULL) return -1;
    send_ent(l, it);
    return 0;
}

static void replay_pump(tg_ledger_t *l) {
    if (l->ready && l->journal) tg_journal_replay(l->journal, replay_take, l);
}

/* A write the sync timer retried went through: the replay may have been waiting for it. */
static void on_flushed(void *ud) {
    replay_pump(ud);
}

/* --- public ----------------------------------------------------------------------------------- */

/* A query's handle is the command of the link or cluster it went on; a cluster command is marked
 * by its low bit (both are malloc'd, so that bit is free), which tells tg_ledger_query_cancel
 * which to cancel. */
static tg_ledger_query_t *q_of_link(tg_redis_cmd_t *c) {
    return (tg_ledger_query_t *)c;
}

static tg_ledger_query_t *q_of_cluster(tg_rcluster_cmd_t *c) {
    return c ? (tg_ledger_query_t *)((uintptr_t)c | 1u) : NULL;
}

static tg_ledger_query_t *query_on(tg_ledger_t *l, int quick, int argc, const char **argv, const size_t *lens,
                                   int key_arg, tg_ledger_reply_fn fn, void *ud) {
    if (l->cluster) {
        if (!quick)
            return l->ready ? q_of_cluster(tg_rcluster_send_argv(l->cl, argc, argv, lens, key_arg, fn, ud))
                            : NULL;
        /* A quick query (a quota check, a cache lookup) never waits for a master that is down: the
         * caller decides without Redis at once rather than after its own timeout. */
        int up = 0;
        tg_rcluster_t *c = NULL;
        if (key_arg >= 0) {
            unsigned slot = tg_redis_slot(argv[key_arg], lens ? lens[key_arg] : strlen(argv[key_arg]));
            c = tg_rcluster_slot_up(l->cside, slot) ? l->cside : l->cl;
            up = tg_rcluster_slot_up(c, slot);
        } else {
            c = tg_rcluster_ready(l->cside) ? l->cside : l->cl;
            up = tg_rcluster_ready(c);
        }
        if (!up || (c == l->cl && !l->ready)) return NULL;
        return q_of_cluster(tg_rcluster_send_argv(c, argc, argv, lens, key_arg, fn, ud));
    }
    if (key_arg < -1) return NULL; /* one server: master 0 only */
    if (quick && tg_redis_state(l->side) == TG_REDIS_UP)
        return q_of_link(tg_redis_send_argv(l->side, argc, argv, lens, fn, ud));
    if (!l->ready) return NULL; /* its own link is not up (yet): better late than local */
    return q_of_link(tg_redis_send_argv(l->redis, argc, argv, lens, fn, ud));
}

tg_ledger_query_t *tg_ledger_query(tg_ledger_t *l, int argc, const char **argv, const size_t *lens,
                                   int key_arg, tg_ledger_reply_fn fn, void *ud) {
    if (l == NULL || (l->redis == NULL && l->cl == NULL)) return NULL;
    return query_on(l, 0, argc, argv, lens, key_arg, fn, ud);
}

tg_ledger_query_t *tg_ledger_quick_query(tg_ledger_t *l, int argc, const char **argv, const size_t *lens,
                                         int key_arg, tg_ledger_reply_fn fn, void *ud) {
    if (l == NULL || (l->redis == NULL && l->cl == NULL)) return NULL;
    return query_on(l, 1, argc, argv, lens, key_arg, fn, ud);
}

void tg_ledger_query_cancel(tg_ledger_query_t *q) {
    if (q == NULL) return;
    if ((uintptr_t)q & 1u)
        tg_rcluster_cancel((tg_rcluster_cmd_t *)((uintptr_t)q & ~(uintptr_t)1u));
    else
        tg_redis_cancel((tg_redis_cmd_t *)q);
}

int tg_ledger_cluster(const tg_ledger_t *l) {
    return l && l->cluster;
}

int tg_ledger_masters(const tg_ledger_t *l) {
    if (l == NULL) return 0;
    if (l->cluster) return tg_rcluster_masters(l->cl);
    return l->redis ? 1 : 0;
}

void tg_ledger_sha1_hex(const char *script, size_t len, char out[41]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(script, len, md, &n, EVP_sha1(), NULL) != 1) n = 0;
    for (unsigned i = 0; i < 20; i++) {
        out[2 * i] = i < n ? hex[md[i] >> 4] : '0';
        out[2 * i + 1] = i < n ? hex[md[i] & 15] : '0';
    }
    out[40] = '\0';
}

void tg_ledger_record(tg_ledger_t *l, const tg_ledger_rec_t *rec) {
    if (l == NULL || rec == NULL || (l->redis == NULL && l->cl == NULL)) return;
    rv_t v;
    rv_from_rec(&v, rec);
    int room = l->mem_count < l->max_backlog;
    int down = l->cluster ? !l->ready || l->failing : tg_redis_state(l->redis) == TG_REDIS_DOWN;
    if (l->journal && (down || tg_journal_backlog(l->journal) > 0 || !room)) {
        tg_journal_append(l->journal, &v); /* keeps the order: the journal goes to Redis before new records */
        return;
    }
    ent_t *e = room ? ledger_ent_new(&v, 0) : NULL;
    item_t *it = e ? list_push(l, e) : NULL;
    if (it == NULL) {
        free(e);
        l->dropped++;
        if (tg_clock_warn_due(&l->last_warn_ms))
            tg_error("ledger: no journal and %zu records waiting for redis: %" PRIu64 " records dropped",
                     l->mem_count, l->dropped);
        return;
    }
    l->mem_count++;
    if (l->ready && !l->failing) send_ent(l, it);
}

size_t tg_ledger_backlog(const tg_ledger_t *l) {
    return l ? l->mem_count + (l->journal ? tg_journal_backlog(l->journal) : 0) : 0;
}

int tg_ledger_connected(const tg_ledger_t *l) {
    return l && l->ready;
}

void tg_ledger_stats(const tg_ledger_t *l, uint64_t *written, uint64_t *journaled, uint64_t *replayed) {
    if (written) *written = l ? l->written : 0;
    if (journaled) *journaled = l && l->journal ? tg_journal_appended(l->journal) : 0;
    if (replayed) *replayed = l ? l->replayed : 0;
}

void tg_ledger_set_backoff_ms(tg_ledger_t *l, int first_ms, int max_ms) {
    if (l == NULL) return;
    tg_redis_set_backoff_ms(l->redis, first_ms, max_ms);
    tg_redis_set_backoff_ms(l->side, first_ms, max_ms);
}

void tg_ledger_set_limits(tg_ledger_t *l, int cmd_timeout_ms, size_t max_backlog) {
    if (l == NULL) return;
    tg_redis_set_timeout_ms(l->redis, cmd_timeout_ms);
    tg_redis_set_timeout_ms(l->side, cmd_timeout_ms);
    if (max_backlog > 0) l->max_backlog = max_backlog;
}

tg_ledger_t *tg_ledger_new(struct event_base *base, const char *redis_url, const char *journal_path,
                           int worker, char *err, size_t errlen) {
    tg_ledger_t *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->max_backlog = 10000;
    if (redis_url == NULL || redis_url[0] == '\0') return l;
    l->cluster =
        strncmp(redis_url, "redis+cluster://", 16) == 0 || strncmp(redis_url, "rediss+cluster://", 17) == 0;
    if (l->cluster) { /* the script goes as EVALSHA from the first record; a master without it says NOSCRIPT
                       */
        tg_ledger_sha1_hex(LUA, sizeof(LUA) - 1, l->sha);
        struct timeval tv = {0, 100000};
        if ((l->cl = tg_rcluster_new(base, redis_url, "ledger", err, errlen)) == NULL ||
            (l->cside = tg_rcluster_new(base, redis_url, "quota", err, errlen)) == NULL)
            goto fail;
        if ((l->poll = event_new(base, -1, EV_PERSIST, on_poll, l)) == NULL || event_add(l->poll, &tv) != 0) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    } else {
        const tg_redis_events_t ev = {on_up, on_down, l}, side_ev = {on_side_up, on_side_down, l};
        if ((l->redis = tg_redis_new(base, redis_url, "ledger", &ev, err, errlen)) == NULL ||
            (l->side = tg_redis_new(base, redis_url, "quota", &side_ev, err, errlen)) == NULL)
            goto fail;
    }
    if (journal_path != NULL && journal_path[0] != '\0' &&
        (l->journal = tg_journal_open(base, journal_path, worker, on_flushed, l, err, errlen)) == NULL)
        goto fail;
    if (l->cluster) {
        tg_rcluster_connect(l->cl);
        tg_rcluster_connect(l->cside);
    } else {
        tg_redis_connect(l->redis);
        tg_redis_connect(l->side);
    }
    return l;
fail:
    tg_ledger_free(l);
    return NULL;
}

void tg_ledger_free(tg_ledger_t *l) {
    if (l == NULL) return;
    tg_redis_free(l->redis);
    tg_redis_free(l->side);
    tg_rcluster_free(l->cl); /* cancels the WAITs too */
    tg_rcluster_free(l->cside);
    for (int i = 0; i < l->n_wn; i++)
        free(l->wn[i]);
    free(l->wn);
    if (l->poll) event_free(l->poll);
    size_t lost = 0;
    while (l->head != NULL) {
        ent_t *e = list_take(l, l->head);
        if (!e->from_journal) {
            if (l->journal)
                tg_journal_append(l->journal, &e->r);
            else
                lost++;
        }
        free(e);
    }
    if (lost > 0) tg_warn("ledger: stopping with %zu usage records redis never acknowledged", lost);
    tg_journal_close(l->journal);
    free(l);
}
