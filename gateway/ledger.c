/* ledger.c — the usage ledger of one worker: Redis (hiredis 0.14 async on the worker's loop)
 * plus an append-only journal file for when Redis is down or behind.
 * A record enters through tg_ledger_record() and leaves as one EVALSHA of a small Lua script
 * that does SET tg:done:<id> NX EX 7d and, only if that was new, the day hash HINCRBYs and the
 * XADD to tg:events: replaying a record is harmless, so anything not acknowledged is re-sent.
 * Records are kept in one FIFO (`ring`) in the order their commands went out; replies come
 * back in that order, so each reply acknowledges the ring's head.
 * Journal format: one JSON object per line, `{"v":1,...,"ck":"xxxxxxxx"}\n`, where ck is the
 * FNV-1a 32 hash of the bytes before `,"ck"`. A line without its newline, a bad hash or JSON
 * that does not parse (a crash mid-write) is skipped with a warning, never half-read. The
 * journal is replayed in order before new records and truncated once Redis acked all of it. */
#include "gateway/ledger.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/json.h"
#include "gateway/keys.h"
#include "core/log.h"

#define MAX_STR 512                  /* longest string field kept; keeps journal lines small */
#define LINE_MAX_BYTES (64 * 1024)   /* a longer "line" in the journal is corrupt */
#define CHUNK_RECORDS 512            /* journal records per replay batch */
#define CHUNK_BYTES (256 * 1024)     /* journal bytes read per replay batch */
#define JBUF_HARD (64 * 1024 * 1024) /* drop (loudly) beyond this: the disk is failing */
#define SYNC_MS 200                  /* journal fdatasync period (and retry of a failed write) */
#define DONE_TTL "604800"            /* tg:done:<id> lives 7 days */
#define EVENTS_MAXLEN "1000000"

/* KEYS: done, day hash, stream, month spend hash, the key's tokens-per-minute counter.
 * ARGV: ttl, field prefix, in, cached, out, reasoning, cost, maxlen, requests (1, or 0 for a
 * failed attempt the provider billed), key name, tokens, then the event's field/value pairs.
 * Returns 1 if applied, 0 if already counted. Redis does not undo a script that fails
 * halfway, so everything that could fail is checked before the first write, and the done
 * marker is set last: a record that errors is retried. The month spend and the token counter
 * are what quota.c reads for budgets and tpm (gateway/quota.c). */
static const char LUA[] =
    "if redis.call('EXISTS',KEYS[1])==1 then return 0 end\n"
    "local function t(k,w) local x=redis.call('TYPE',k).ok return x==w or x=='none' end\n"
    "if not (t(KEYS[2],'hash') and t(KEYS[3],'stream') and t(KEYS[4],'hash') and t(KEYS[5],'string')) then\n"
    "  return redis.error_reply('WRONGTYPE a tollgate ledger key ('..KEYS[2]..', '..KEYS[3]..', "
    "'..KEYS[4]..\n"
    "    ', '..KEYS[5]..') holds something else')\n"
    "end\n"
    "local h,p=KEYS[2],ARGV[2]\n"
    "redis.call('HINCRBY',h,p..'requests',ARGV[9])\n"
    "redis.call('HINCRBY',h,p..'input_tokens',ARGV[3])\n"
    "redis.call('HINCRBY',h,p..'cached_input_tokens',ARGV[4])\n"
    "redis.call('HINCRBY',h,p..'output_tokens',ARGV[5])\n"
    "redis.call('HINCRBY',h,p..'reasoning_tokens',ARGV[6])\n"
    "redis.call('HINCRBY',h,p..'cost_micro_usd',ARGV[7])\n"
    "if ARGV[10]~='' then\n"
    "  redis.call('HINCRBY',KEYS[4],ARGV[10],ARGV[7])\n"
    "  redis.call('INCRBY',KEYS[5],ARGV[11])\n"
    "  redis.call('PEXPIRE',KEYS[5],180000)\n"
    "end\n"
    "redis.call('XADD',KEYS[3],'MAXLEN','~',ARGV[8],'*',unpack(ARGV,12))\n"
    "redis.call('SET',KEYS[1],'1','EX',ARGV[1])\n"
    "return 1\n";

enum { S_ID, S_KEY, S_ROUTE, S_PROVIDER, S_MODEL, S_N };
static const char *const str_names[S_N] = {"id", "key", "route", "provider", "model"};
enum {
    N_TS,
    N_STATUS,
    N_ATTEMPTS,
    N_IN,
    N_CACHED,
    N_CWRITE,
    N_OUT,
    N_REASON,
    N_COST,
    N_LAT,
    N_TTFT,
    N_EST,
    N_REQS,
    N_N
};
static const char *const num_names[N_N] = {"ts",
                                           "status",
                                           "attempts",
                                           "input_tokens",
                                           "cached_input_tokens",
                                           "cache_write_tokens",
                                           "output_tokens",
                                           "reasoning_tokens",
                                           "cost_micro_usd",
                                           "latency_ms",
                                           "ttft_ms",
                                           "estimated",
                                           "requests"};

/* A record as the ledger keeps it: borrowed strings (a view) or, inside ent_t, owned. */
typedef struct {
    const char *s[S_N];
    size_t len[S_N];
    int64_t n[N_N];
} rv_t;

typedef struct {
    rv_t r;
    int from_journal; /* still in the journal file: nothing to spill if the link drops */
    char data[];
} ent_t;

enum { ST_OFF, ST_DOWN, ST_CONNECTING, ST_LOADING, ST_READY };

struct tg_ledger_s {
    struct event_base *base;
    int state;
    tg_redis_url_t url;
    redisAsyncContext *ac;
    char sha[41];
    int use_eval; /* the server lost the script: EVAL until SCRIPT LOAD answers again */
    /* ring: commands sent (READY) or waiting for a connection, oldest first */
    ent_t **ring;
    size_t rhead, rcount, rcap, mem_count;
    /* timers: reconnect backoff; connect/command progress (also the deferred kill); fsync */
    struct event *retry_ev, *io_ev, *sync_ev;
    int backoff_first, backoff_max, backoff, cmd_timeout_ms, kill_pending;
    size_t max_backlog;
    size_t outstanding;
    int64_t last_progress_ms;
    /* journal */
    char *jpath;
    int jfd, need_sync;
    char *jbuf, *rbuf;
    size_t jbuf_len, jbuf_cap;
    int64_t jsize;           /* bytes in the file */
    int64_t replay_off;      /* next byte to read */
    int64_t replay_done_off; /* every record before this byte is acknowledged */
    int64_t chunk_end;       /* replay_off once the chunk in flight is acked */
    size_t jcount;           /* journal lines not yet acknowledged (file beyond done + buffer) */
    size_t chunk_left, chunk_lines;
    int64_t day_num; /* cache of the last day key */
    char day[16];
    int64_t last_warn_ms;
    uint64_t written, journaled, replayed, dropped;
    /* other modules' commands (tg_ledger_query): slots are recycled, never freed before us */
    struct tg_ledger_query_s *qfree, *qfailed, *qall;
    struct event *qfail_ev;
};

struct tg_ledger_query_s {
    tg_ledger_t *l;
    tg_ledger_reply_fn fn; /* NULL once cancelled */
    void *ud;
    struct tg_ledger_query_s *next; /* free or failed list */
    struct tg_ledger_query_s *all;
};

static void go_down(tg_ledger_t *l, const char *why);
static void replay_pump(tg_ledger_t *l);

static int64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static struct timeval ms_tv(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* A warning that may repeat per record is printed at most every 10 s. */
static int warn_due(tg_ledger_t *l) {
    int64_t now = mono_ms();
    if (l->last_warn_ms && now - l->last_warn_ms < 10000) return 0;
    l->last_warn_ms = now;
    return 1;
}

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
                      rec->attempt_only ? 0 : 1};
    memcpy(v->n, n, sizeof(n));
}

/* One allocation per record: the entry and its strings. */
static ent_t *ent_new(const rv_t *v, int from_journal) {
    size_t total = 0;
    for (int i = 0; i < S_N; i++)
        total += v->len[i] + 1;
    ent_t *e = malloc(sizeof(*e) + total);
    if (e == NULL) return NULL;
    char *p = e->data;
    for (int i = 0; i < S_N; i++) {
        memcpy(p, v->s[i], v->len[i]);
        p[v->len[i]] = '\0';
        e->r.s[i] = p;
        e->r.len[i] = v->len[i];
        p += v->len[i] + 1;
    }
    memcpy(e->r.n, v->n, sizeof(v->n));
    e->from_journal = from_journal;
    return e;
}

static int ring_grow(tg_ledger_t *l) {
    size_t cap = l->rcap ? l->rcap * 2 : 1024;
    ent_t **r = malloc(cap * sizeof(*r));
    if (r == NULL) return -1;
    for (size_t i = 0; i < l->rcount; i++)
        r[i] = l->ring[(l->rhead + i) % l->rcap];
    free(l->ring);
    l->ring = r;
    l->rcap = cap;
    l->rhead = 0;
    return 0;
}

static int ring_push(tg_ledger_t *l, ent_t *e) {
    if (l->rcount == l->rcap && ring_grow(l) < 0) return -1;
    l->ring[(l->rhead + l->rcount++) % l->rcap] = e;
    return 0;
}

static ent_t *ring_at(tg_ledger_t *l, size_t i) {
    return l->ring[(l->rhead + i) % l->rcap];
}

static ent_t *ring_pop(tg_ledger_t *l) {
    ent_t *e = l->ring[l->rhead];
    l->rhead = (l->rhead + 1) % l->rcap;
    l->rcount--;
    return e;
}

/* Undo a pop (the head's reply was an error): rcount < rcap holds right after a pop. */
static void ring_unpop(tg_ledger_t *l, ent_t *e) {
    l->rhead = (l->rhead + l->rcap - 1) % l->rcap;
    l->ring[l->rhead] = e;
    l->rcount++;
}

/* --- journal ------------------------------------------------------------------------------- */

static size_t json_str(char *dst, const char *s, size_t n) {
    size_t o = 0;
    dst[o++] = '"';
    o += tg_json_escape_to(dst + o, TG_JSON_ESCAPE_MAX * n, s, n);
    dst[o++] = '"';
    return o;
}

/* Formats one journal line into dst, which holds at least line_bound(v) bytes. */
static size_t line_bound(const rv_t *v) {
    size_t n = 512;
    for (int i = 0; i < S_N; i++)
        n += 6 * v->len[i] + 16;
    return n + N_N * 48;
}

static size_t line_format(char *dst, const rv_t *v) {
    size_t o = 0;
    memcpy(dst, "{\"v\":1", 6);
    o = 6;
    for (int i = 0; i < S_N; i++) {
        o += (size_t)sprintf(dst + o, ",\"%s\":", str_names[i]);
        o += json_str(dst + o, v->s[i], v->len[i]);
    }
    for (int i = 0; i < N_N; i++)
        o += (size_t)sprintf(dst + o, ",\"%s\":%" PRId64, num_names[i], v->n[i]);
    o += (size_t)sprintf(dst + o, ",\"ck\":\"%08x\"}\n", tg_hash_fnv32(TG_HASH_FNV32_SEED, dst, o));
    return o;
}

/* Parses one line (without its newline) into a new entry; NULL if torn or corrupt. */
static ent_t *line_parse(const char *p, size_t n) {
    static const char ck[] = ",\"ck\":\"";
    if (n < 20 || memcmp(p + n - 17, ck, 7) != 0 || memcmp(p + n - 2, "\"}", 2) != 0) return NULL;
    char hex[9];
    memcpy(hex, p + n - 10, 8);
    hex[8] = '\0';
    char *end;
    unsigned long want = strtoul(hex, &end, 16);
    if (*end != '\0' || (uint32_t)want != tg_hash_fnv32(TG_HASH_FNV32_SEED, p, n - 17)) return NULL;
    json_error_t jerr;
    json_t *o = json_loadb(p, n, 0, &jerr);
    if (o == NULL) return NULL;
    rv_t v;
    ent_t *e = NULL;
    if (json_integer_value(json_object_get(o, "v")) != 1) goto out;
    for (int i = 0; i < S_N; i++) {
        json_t *s = json_object_get(o, str_names[i]);
        if (!json_is_string(s)) goto out;
        v.s[i] = json_string_value(s);
        v.len[i] = json_string_length(s);
    }
    for (int i = 0; i < N_N; i++) {
        json_t *x = json_object_get(o, num_names[i]);
        if (x == NULL && i == N_REQS)
            x = json_integer(1); /* journals written before the field */
        else
            json_incref(x);
        int ok = json_is_integer(x);
        v.n[i] = ok ? json_integer_value(x) : 0;
        json_decref(x);
        if (!ok) goto out;
    }
    e = ent_new(&v, 1);
out:
    json_decref(o);
    return e;
}

static void sync_arm(tg_ledger_t *l) {
    if (!evtimer_pending(l->sync_ev, NULL)) {
        struct timeval tv = ms_tv(SYNC_MS);
        evtimer_add(l->sync_ev, &tv);
    }
}

/* Writes the buffer to the file (no fsync: the sync timer does that). The buffer holds more
 * than one line only after a failed write, kept for the sync timer to try again. A failed or short
 * write is cut off again so the file never holds half a line; the buffer is kept. */
static int journal_write(tg_ledger_t *l) {
    size_t off = 0;
    while (off < l->jbuf_len) {
        ssize_t w = write(l->jfd, l->jbuf + off, l->jbuf_len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (warn_due(l)) tg_warn("ledger: journal %s: write failed: %s", l->jpath, strerror(errno));
            if (off > 0 && ftruncate(l->jfd, l->jsize) < 0)
                tg_error("ledger: journal %s: cannot cut a short write: %s", l->jpath, strerror(errno));
            sync_arm(l);
            return -1;
        }
        off += (size_t)w;
    }
    l->jsize += (int64_t)l->jbuf_len;
    l->jbuf_len = 0;
    l->need_sync = 1;
    sync_arm(l);
    return 0;
}

static void journal_append(tg_ledger_t *l, const rv_t *v) {
    size_t need = line_bound(v);
    if (l->jbuf_len + need > l->jbuf_cap) {
        if (l->jbuf_len + need > JBUF_HARD) {
            l->dropped++;
            if (warn_due(l))
                tg_error("ledger: journal %s not writable, %" PRIu64 " records dropped", l->jpath,
                         l->dropped);
            return;
        }
        size_t cap = l->jbuf_cap ? l->jbuf_cap : 64 * 1024;
        while (cap < l->jbuf_len + need)
            cap *= 2;
        char *b = realloc(l->jbuf, cap);
        if (b == NULL) {
            l->dropped++;
            return;
        }
        l->jbuf = b;
        l->jbuf_cap = cap;
    }
    l->jbuf_len += line_format(l->jbuf + l->jbuf_len, v);
    l->jcount++;
    l->journaled++;
    /* Written at once, so a record survives the process (SIGKILL, a crash): one write(2) per
     * record while Redis is away; only the fdatasync is batched (SYNC_MS), for power loss. */
    journal_write(l);
}

static void on_sync(evutil_socket_t fd, short what, void *arg) {
    tg_ledger_t *l = arg;
    if (l->jbuf_len > 0 && journal_write(l) < 0) return;
    if (l->need_sync) {
        if (fdatasync(l->jfd) < 0 && warn_due(l))
            tg_warn("ledger: journal %s: fdatasync: %s", l->jpath, strerror(errno));
        l->need_sync = 0;
    }
    replay_pump(l);
}

static void journal_truncate(tg_ledger_t *l) {
    if (ftruncate(l->jfd, 0) < 0) {
        if (warn_due(l)) tg_warn("ledger: journal %s: truncate: %s", l->jpath, strerror(errno));
        return;
    }
    if (l->jsize > 0) tg_info("ledger: journal %s replayed into redis, truncated", l->jpath);
    l->jsize = l->replay_off = l->replay_done_off = l->chunk_end = 0;
    l->jcount = 0;
    l->need_sync = 1;
    sync_arm(l);
}

/* Opens the journal; an existing one (a crash, or Redis down at the last stop) is kept for
 * replay. A last line without its newline is closed off so that new lines start clean. A
 * missing directory (var/ on a fresh checkout) is made, one level only. */
static int journal_open(tg_ledger_t *l, char *err, size_t errlen) {
    l->jfd = open(l->jpath, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    const char *slash = strrchr(l->jpath, '/');
    if (l->jfd < 0 && errno == ENOENT && slash != NULL && slash != l->jpath) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - l->jpath), l->jpath);
        if (mkdir(dir, 0700) == 0 || errno == EEXIST)
            l->jfd = open(l->jpath, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    }
    struct stat st;
    if (l->jfd < 0 || fstat(l->jfd, &st) < 0) {
        snprintf(err, errlen, "cannot open journal %s: %s", l->jpath, strerror(errno));
        return -1;
    }
    l->jsize = st.st_size;
    char buf[65536];
    char last = '\n';
    for (int64_t off = 0; off < l->jsize;) {
        ssize_t n = pread(l->jfd, buf, sizeof(buf), off);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++)
            l->jcount += buf[i] == '\n';
        last = buf[n - 1];
        off += n;
    }
    if (last != '\n') {
        tg_warn("ledger: journal %s ends in a torn line (crash mid-write); it will be skipped", l->jpath);
        if (write(l->jfd, "\n", 1) != 1) {
            snprintf(err, errlen, "cannot repair journal %s: %s", l->jpath, strerror(errno));
            return -1;
        }
        l->jsize++;
        l->jcount++;
    }
    if (l->jcount > 0)
        tg_info("ledger: journal %s holds %zu lines from an earlier run; replaying when redis answers",
                l->jpath, l->jcount);
    return 0;
}

/* --- redis ---------------------------------------------------------------------------------- */

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

/* Counts a command for the progress timer: a Redis that answers nothing for cmd_timeout_ms
 * while something is outstanding is treated as down. */
static void issued(tg_ledger_t *l) {
    if (l->outstanding++ == 0) l->last_progress_ms = mono_ms();
    if (!evtimer_pending(l->io_ev, NULL)) {
        struct timeval tv = ms_tv(l->cmd_timeout_ms);
        evtimer_add(l->io_ev, &tv);
    }
}

static void answered(tg_ledger_t *l) {
    if (l->outstanding > 0) l->outstanding--;
    l->last_progress_ms = mono_ms();
}

/* Drops the connection from outside hiredis's callbacks (a zero timer on io_ev). */
static void kill_later(tg_ledger_t *l) {
    struct timeval tv = {0, 0};
    l->kill_pending = 1;
    evtimer_add(l->io_ev, &tv);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv);

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
static void send_ent(tg_ledger_t *l, ent_t *e) {
    const rv_t *v = &e->r;
    char buf[sizeof(LUA) + 12 * MAX_STR + 2048], *o = buf + 16;
    int argc = 0;
    const char *day = day_of(l, v->n[N_TS]);
    /* tokens count in the minute the request finished: ":<unix minute>" */
    char minute[24] = ":";
    int64_t end_ms = v->n[N_TS] + (v->n[N_LAT] > 0 ? v->n[N_LAT] : 0);
    size_t mlen = (size_t)(put_i64(minute + 1, end_ms / 60000) - minute);
#define ARG(expr) (o = (expr), argc++)
    if (l->use_eval) {
        ARG(put_str(o, "EVAL"));
        ARG(put_bulk(o, LUA, sizeof(LUA) - 1));
    } else {
        ARG(put_str(o, "EVALSHA"));
        ARG(put_bulk(o, l->sha, 40));
    }
    ARG(put_str(o, "5"));
    ARG(put_bulk3(o, TG_KEY_DONE, TG_KEY_LEN(TG_KEY_DONE), v->s[S_ID], v->len[S_ID], "", 0));
    ARG(put_bulk3(o, TG_KEY_USAGE, TG_KEY_LEN(TG_KEY_USAGE), day, strlen(day), "", 0));
    ARG(put_str(o, TG_KEY_EVENTS));
    ARG(put_bulk3(o, TG_KEY_SPEND, TG_KEY_LEN(TG_KEY_SPEND), day, 7, "", 0)); /* "YYYY-MM" of the day */
    ARG(put_bulk3(o, TG_KEY_TPM, TG_KEY_LEN(TG_KEY_TPM), v->s[S_KEY], v->len[S_KEY], minute, mlen));
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
    ARG(put_str(o, num_names[N_TS]));
    ARG(put_num(o, v->n[N_TS]));
    for (int i = 0; i < S_N; i++) {
        ARG(put_str(o, str_names[i]));
        ARG(put_bulk(o, v->s[i], v->len[i]));
    }
    for (int i = N_STATUS; i < N_N; i++) {
        ARG(put_str(o, num_names[i]));
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
    if (redisAsyncFormattedCommand(l->ac, on_reply, NULL, start, (size_t)(o - start)) != REDIS_OK) {
        kill_later(l); /* the context is going away: go_down re-queues everything */
        return;
    }
    issued(l);
}

static void chunk_done(tg_ledger_t *l) {
    l->replay_done_off = l->chunk_end;
    l->jcount -= l->chunk_lines < l->jcount ? l->chunk_lines : l->jcount;
    l->chunk_lines = 0;
}

static void acked(tg_ledger_t *l, ent_t *e) {
    l->written++;
    if (e->from_journal) {
        l->replayed++;
        if (--l->chunk_left == 0) {
            chunk_done(l);
            replay_pump(l);
        }
    } else {
        l->mem_count--;
    }
    free(e);
}

static void on_script(redisAsyncContext *ac, void *r, void *priv);

static void load_script(tg_ledger_t *l) {
    if (redisAsyncCommand(l->ac, on_script, NULL, "SCRIPT LOAD %b", LUA, sizeof(LUA) - 1) != REDIS_OK) {
        kill_later(l);
        return;
    }
    issued(l);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv) {
    tg_ledger_t *l = ac->data;
    redisReply *rep = r;
    /* After an error the head is put back and the link dropped: later replies must not
     * acknowledge it. Everything still in the ring is re-sent, which the script makes safe. */
    if (rep == NULL || l == NULL || l->ac != ac || l->rcount == 0 || l->kill_pending) return;
    answered(l);
    ent_t *e = ring_pop(l);
    if (rep->type == REDIS_REPLY_INTEGER) {
        acked(l, e);
    } else if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* Someone ran SCRIPT FLUSH: send the script itself until it is loaded again. */
        if (!l->use_eval) load_script(l);
        l->use_eval = 1;
        ring_push(l, e); /* it is the newest command now, so it goes to the tail */
        send_ent(l, e);
    } else {
        if (warn_due(l))
            tg_warn("ledger: redis answered %s to a usage record; reconnecting",
                    rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
        ring_unpop(l, e);
        kill_later(l);
    }
}

static void on_setup(redisAsyncContext *ac, void *r, void *priv) {
    tg_ledger_t *l = ac->data;
    redisReply *rep = r;
    if (rep == NULL || l == NULL || l->ac != ac) return;
    answered(l);
    if (rep->type == REDIS_REPLY_ERROR) {
        if (warn_due(l)) tg_warn("ledger: redis %s failed: %s", (const char *)priv, rep->str);
        kill_later(l);
    }
}

/* The script is in: from here on records flow, the journal first. */
static void on_script(redisAsyncContext *ac, void *r, void *priv) {
    tg_ledger_t *l = ac->data;
    redisReply *rep = r;
    if (rep == NULL || l == NULL || l->ac != ac) return;
    answered(l);
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        if (warn_due(l))
            tg_warn("ledger: redis SCRIPT LOAD failed: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        kill_later(l);
        return;
    }
    memcpy(l->sha, rep->str, 40);
    l->sha[40] = '\0';
    l->use_eval = 0;
    if (l->state != ST_LOADING) return;
    l->state = ST_READY;
    l->backoff = l->backoff_first;
    tg_info("ledger: connected to redis (%zu records waiting)", tg_ledger_backlog(l));
    for (size_t i = 0; i < l->rcount; i++)
        send_ent(l, ring_at(l, i));
    replay_pump(l);
}

static void on_connect(const redisAsyncContext *cac, int status) {
    tg_ledger_t *l = cac->data;
    if (l == NULL || l->ac != cac) return;
    if (status != REDIS_OK) {
        l->ac = NULL; /* hiredis frees it after this callback */
        go_down(l, cac->errstr);
        return;
    }
    answered(l);
    l->state = ST_LOADING;
    if (l->url.password) {
        int rc = l->url.user
                     ? redisAsyncCommand(l->ac, on_setup, "AUTH", "AUTH %s %s", l->url.user, l->url.password)
                     : redisAsyncCommand(l->ac, on_setup, "AUTH", "AUTH %s", l->url.password);
        if (rc == REDIS_OK) issued(l);
    }
    if (l->url.db > 0 && redisAsyncCommand(l->ac, on_setup, "SELECT", "SELECT %d", l->url.db) == REDIS_OK)
        issued(l);
    load_script(l);
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
    tg_ledger_t *l = cac->data;
    if (l == NULL || l->ac != cac) return;
    l->ac = NULL; /* hiredis frees it after this callback */
    go_down(l, status == REDIS_OK ? "closed" : cac->errstr);
}

static void connect_redis(tg_ledger_t *l) {
    redisAsyncContext *ac = l->url.unix_path ? redisAsyncConnectUnix(l->url.unix_path)
                                             : redisAsyncConnect(l->url.host, l->url.port);
    if (ac == NULL || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        go_down(l, why);
        return;
    }
    ac->data = l;
    l->ac = ac;
    redisLibeventAttach(ac, l->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    l->state = ST_CONNECTING;
    l->outstanding = 0;
    l->kill_pending = 0;
    issued(l); /* the connect itself runs against the same timeout */
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    connect_redis(arg);
}

/* Connect or command timeout, or a kill asked for from inside a hiredis callback. */
static void on_io(evutil_socket_t fd, short what, void *arg) {
    tg_ledger_t *l = arg;
    if (l->ac == NULL || l->state == ST_DOWN) return;
    const char *why = "redis did not answer in time";
    if (!l->kill_pending) {
        if (l->outstanding == 0) return;
        int64_t idle = mono_ms() - l->last_progress_ms;
        if (idle < l->cmd_timeout_ms) {
            struct timeval tv = ms_tv((int)(l->cmd_timeout_ms - idle));
            evtimer_add(l->io_ev, &tv);
            return;
        }
    } else {
        why = "redis refused a command";
    }
    redisAsyncContext *ac = l->ac;
    l->ac = NULL; /* its callbacks (NULL replies, disconnect) now see a stranger and return */
    redisAsyncFree(ac);
    go_down(l, why);
}

/* The link is gone (or never came): records of memory go to the journal (or wait in memory
 * when there is none), records read from the journal stay there, and a retry is scheduled. */
static void go_down(tg_ledger_t *l, const char *why) {
    if (l->state == ST_READY || l->state == ST_LOADING || l->backoff == l->backoff_first)
        tg_warn("ledger: redis %s unavailable (%s); %s", l->url.target, why ? why : "?",
                l->jfd >= 0 ? "journaling" : "keeping records in memory");
    l->state = ST_DOWN;
    l->outstanding = 0;
    l->kill_pending = 0;
    evtimer_del(l->io_ev);
    size_t n = l->rcount, kept = 0;
    for (size_t i = 0; i < n; i++) {
        ent_t *e = ring_pop(l);
        if (e->from_journal) {
            free(e);
        } else if (l->jfd >= 0) {
            journal_append(l, &e->r);
            l->mem_count--;
            free(e);
        } else {
            ring_push(l, e); /* cannot fail: the ring just shrank */
            kept++;
        }
    }
    l->chunk_left = l->chunk_lines = 0;
    l->replay_off = l->chunk_end = l->replay_done_off;
    struct timeval tv = ms_tv(l->backoff);
    evtimer_add(l->retry_ev, &tv);
    l->backoff = l->backoff * 2 < l->backoff_max ? l->backoff * 2 : l->backoff_max;
}

/* --- replay ---------------------------------------------------------------------------------- */

/* Reads the next batch of journal lines and sends them. Returns -1 on a read error. */
static int replay_chunk(tg_ledger_t *l) {
    if (l->rbuf == NULL && (l->rbuf = malloc(CHUNK_BYTES)) == NULL) return -1;
    ssize_t n = pread(l->jfd, l->rbuf, CHUNK_BYTES, l->replay_off);
    if (n < 0) {
        if (warn_due(l)) tg_warn("ledger: journal %s: read: %s", l->jpath, strerror(errno));
        return -1;
    }
    size_t pos = 0, lines = 0, sent = 0;
    while (pos < (size_t)n && sent < CHUNK_RECORDS) {
        char *p = l->rbuf + pos, *nl = memchr(p, '\n', (size_t)n - pos);
        if (nl == NULL) break;
        size_t len = (size_t)(nl - p);
        lines++;
        ent_t *e = len > 0 && len < LINE_MAX_BYTES ? line_parse(p, len) : NULL;
        if (e != NULL && ring_push(l, e) == 0) {
            send_ent(l, e);
            sent++;
        } else if (len > 0) {
            free(e);
            tg_warn("ledger: journal %s: skipping a torn or corrupt line at byte %" PRId64, l->jpath,
                    l->replay_off + (int64_t)pos);
        }
        pos += len + 1;
    }
    if (pos == 0) {
        /* No newline at all: bytes past the last line (a write cut short) or an absurdly long
         * line. Either way they are not a record: skip them. */
        tg_warn("ledger: journal %s: skipping %zd bytes without a newline at byte %" PRId64, l->jpath, n,
                l->replay_off);
        pos = n > 0 ? (size_t)n : 0;
        if (n == 0) l->jsize = l->replay_off; /* the file is shorter than we wrote: start anew */
    }
    l->replay_off += (int64_t)pos;
    l->chunk_end = l->replay_off;
    l->chunk_lines = lines;
    l->chunk_left = sent;
    if (sent == 0) chunk_done(l);
    return 0;
}

/* Journal records go out one batch at a time, each batch after the previous one was fully
 * acknowledged; at the end of the file (new records are appended meanwhile) it is cut to 0. */
static void replay_pump(tg_ledger_t *l) {
    while (l->state == ST_READY && l->jfd >= 0 && l->chunk_left == 0 && (l->jsize > 0 || l->jbuf_len > 0)) {
        if (l->replay_off >= l->jsize) {
            if (l->jbuf_len > 0 && journal_write(l) < 0) return; /* on_sync tries again */
            if (l->replay_off >= l->jsize) {
                journal_truncate(l);
                return;
            }
        }
        if (replay_chunk(l) < 0) return;
    }
}

/* --- other modules' commands ------------------------------------------------------------ */

static void query_release(tg_ledger_t *l, tg_ledger_query_t *q) {
    q->fn = NULL;
    q->ud = NULL;
    q->next = l->qfree;
    l->qfree = q;
}

/* A NULL reply means the link is going away, usually from inside redisAsyncFree: the caller
 * hears of it from a zero timer, where it may safely send records or queries again. */
static void on_query(redisAsyncContext *ac, void *r, void *priv) {
    tg_ledger_query_t *q = priv;
    tg_ledger_t *l = q->l;
    if (r == NULL) {
        q->next = l->qfailed;
        l->qfailed = q;
        struct timeval tv = {0, 0};
        evtimer_add(l->qfail_ev, &tv);
        return;
    }
    if (l->ac == ac) answered(l);
    tg_ledger_reply_fn fn = q->fn;
    void *ud = q->ud;
    query_release(l, q);
    if (fn) fn(r, ud);
}

static void on_qfail(evutil_socket_t fd, short what, void *arg) {
    tg_ledger_t *l = arg;
    tg_ledger_query_t *q = l->qfailed;
    l->qfailed = NULL;
    while (q != NULL) {
        tg_ledger_query_t *next = q->next;
        tg_ledger_reply_fn fn = q->fn;
        void *ud = q->ud;
        query_release(l, q);
        if (fn) fn(NULL, ud);
        q = next;
    }
}

tg_ledger_query_t *tg_ledger_query(tg_ledger_t *l, int argc, const char **argv, const size_t *lens,
                                   tg_ledger_reply_fn fn, void *ud) {
    if (l == NULL || l->state != ST_READY || l->ac == NULL || l->kill_pending) return NULL;
    tg_ledger_query_t *q = l->qfree;
    if (q != NULL) {
        l->qfree = q->next;
    } else {
        if ((q = calloc(1, sizeof(*q))) == NULL) return NULL;
        q->l = l;
        q->all = l->qall;
        l->qall = q;
    }
    q->fn = fn;
    q->ud = ud;
    if (redisAsyncCommandArgv(l->ac, on_query, q, argc, argv, lens) != REDIS_OK) {
        query_release(l, q);
        return NULL;
    }
    issued(l);
    return q;
}

void tg_ledger_query_cancel(tg_ledger_query_t *q) {
    if (q != NULL) q->fn = NULL;
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

/* --- public ----------------------------------------------------------------------------------- */

void tg_ledger_record(tg_ledger_t *l, const tg_ledger_rec_t *rec) {
    if (l == NULL || rec == NULL || l->state == ST_OFF) return;
    rv_t v;
    rv_from_rec(&v, rec);
    int room = l->mem_count < l->max_backlog;
    if (l->jfd >= 0 && (l->state == ST_DOWN || l->jcount > 0 || !room)) {
        journal_append(l, &v); /* keeps the order: the journal goes to Redis before new records */
        return;
    }
    ent_t *e = room ? ent_new(&v, 0) : NULL;
    if (e == NULL || ring_push(l, e) < 0) {
        free(e);
        l->dropped++;
        if (warn_due(l))
            tg_error("ledger: no journal and %zu records waiting for redis: %" PRIu64 " records dropped",
                     l->mem_count, l->dropped);
        return;
    }
    l->mem_count++;
    if (l->state == ST_READY) send_ent(l, e);
}

size_t tg_ledger_backlog(const tg_ledger_t *l) {
    return l ? l->mem_count + l->jcount : 0;
}

int tg_ledger_connected(const tg_ledger_t *l) {
    return l && l->state == ST_READY;
}

void tg_ledger_stats(const tg_ledger_t *l, uint64_t *written, uint64_t *journaled, uint64_t *replayed) {
    if (written) *written = l ? l->written : 0;
    if (journaled) *journaled = l ? l->journaled : 0;
    if (replayed) *replayed = l ? l->replayed : 0;
}

void tg_ledger_set_backoff_ms(tg_ledger_t *l, int first_ms, int max_ms) {
    if (l == NULL || first_ms <= 0 || max_ms < first_ms) return;
    l->backoff_first = l->backoff = first_ms;
    l->backoff_max = max_ms;
    if (l->state == ST_DOWN) { /* apply now rather than after the pending long wait */
        struct timeval tv = ms_tv(first_ms);
        evtimer_add(l->retry_ev, &tv);
    }
}

void tg_ledger_set_limits(tg_ledger_t *l, int cmd_timeout_ms, size_t max_backlog) {
    if (l == NULL) return;
    if (cmd_timeout_ms > 0) {
        l->cmd_timeout_ms = cmd_timeout_ms;
        if (l->io_ev && evtimer_pending(l->io_ev, NULL) && !l->kill_pending) {
            struct timeval tv = ms_tv(cmd_timeout_ms); /* on_io re-checks the real idle time */
            evtimer_add(l->io_ev, &tv);
        }
    }
    if (max_backlog > 0) l->max_backlog = max_backlog;
}

/* redis://[[user]:password@]host[:port][/db] or unix:///path. The host is resolved once. */
int tg_redis_url_parse(const char *url, tg_redis_url_t *u, char *err, size_t errlen) {
    memset(u, 0, sizeof(*u));
    if (url == NULL) goto bad;
    if (strncmp(url, "unix://", 7) == 0) {
        if (url[7] != '/') goto bad;
        u->unix_path = strdup(url + 7);
        snprintf(u->target, sizeof(u->target), "%s", url + 7);
        if (u->unix_path == NULL) goto bad;
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) goto bad;
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) goto bad;
        if (colon > p) u->user = strndup(p, (size_t)(colon - p));
        u->password = strndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    char host[256];
    size_t hl;
    const char *rest;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL) goto bad;
        hl = (size_t)(close - p - 1);
        p++;
        rest = close + 1;
    } else {
        hl = strcspn(p, ":/");
        rest = p + hl;
    }
    if (hl == 0 || hl >= sizeof(host)) goto bad;
    memcpy(host, p, hl);
    host[hl] = '\0';
    u->port = 6379;
    char *end;
    if (*rest == ':') {
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port <= 0 || port > 65535) goto bad;
        u->port = (int)port;
        rest = end;
    }
    if (*rest == '/' && rest[1] != '\0') {
        long db = strtol(rest + 1, &end, 10);
        if (*end != '\0' || db < 0 || db > 1000000) goto bad;
        u->db = (int)db;
    } else if (*rest != '\0' && strcmp(rest, "/") != 0) {
        goto bad;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve redis host %s: %s", host, gai_strerror(rc));
        tg_redis_url_free(u);
        return -1;
    }
    const void *addr = ai->ai_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    inet_ntop(ai->ai_family, addr, u->host, sizeof(u->host));
    freeaddrinfo(ai);
    snprintf(u->target, sizeof(u->target), "%s:%d", host, u->port);
    return 0;
bad:
    tg_redis_url_free(u);
    snprintf(err, errlen,
             "bad redis url '%s' (want redis://[[user]:password@]host[:port][/db] or unix:///path)",
             url ? url : "");
    return -1;
}

void tg_redis_url_free(tg_redis_url_t *u) {
    free(u->unix_path);
    free(u->user);
    free(u->password);
    u->unix_path = u->user = u->password = NULL;
}

tg_ledger_t *tg_ledger_new(struct event_base *base, const char *redis_url, const char *journal_path,
                           int worker, char *err, size_t errlen) {
    tg_ledger_t *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->base = base;
    l->jfd = -1;
    l->state = ST_OFF;
    l->backoff_first = l->backoff = 250;
    l->backoff_max = 5000;
    l->cmd_timeout_ms = 2000;
    l->max_backlog = 10000;
    if (redis_url == NULL || redis_url[0] == '\0') return l;
    if (tg_redis_url_parse(redis_url, &l->url, err, errlen) < 0) goto fail;
    l->retry_ev = evtimer_new(base, on_retry, l);
    l->io_ev = evtimer_new(base, on_io, l);
    l->sync_ev = evtimer_new(base, on_sync, l);
    l->qfail_ev = evtimer_new(base, on_qfail, l);
    if (l->retry_ev == NULL || l->io_ev == NULL || l->sync_ev == NULL || l->qfail_ev == NULL) {
        snprintf(err, errlen, "cannot create timers");
        goto fail;
    }
    if (journal_path != NULL && journal_path[0] != '\0') {
        size_t n = strlen(journal_path) + 16;
        l->jpath = malloc(n);
        if (l->jpath == NULL) goto fail;
        snprintf(l->jpath, n, "%s.%d", journal_path, worker);
        if (journal_open(l, err, errlen) < 0) goto fail;
    }
    l->state = ST_DOWN;
    connect_redis(l);
    return l;
fail:
    tg_ledger_free(l);
    return NULL;
}

void tg_ledger_free(tg_ledger_t *l) {
    if (l == NULL) return;
    if (l->ac != NULL) {
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        redisAsyncFree(ac);
    }
    size_t lost = 0;
    while (l->rcount > 0) {
        ent_t *e = ring_pop(l);
        if (!e->from_journal) {
            if (l->jfd >= 0)
                journal_append(l, &e->r);
            else
                lost++;
        }
        free(e);
    }
    if (lost > 0) tg_warn("ledger: stopping with %zu usage records redis never acknowledged", lost);
    if (l->jfd >= 0) {
        if (l->jbuf_len > 0) journal_write(l);
        if (l->jbuf_len > 0) tg_error("ledger: %zu journal bytes could not be written", l->jbuf_len);
        fdatasync(l->jfd);
        close(l->jfd);
    }
    if (l->retry_ev) event_free(l->retry_ev);
    if (l->io_ev) event_free(l->io_ev);
    if (l->sync_ev) event_free(l->sync_ev);
    if (l->qfail_ev) event_free(l->qfail_ev);
    while (l->qall != NULL) {
        tg_ledger_query_t *q = l->qall;
        l->qall = q->all;
        free(q);
    }
    free(l->ring);
    free(l->jbuf);
    free(l->rbuf);
    free(l->jpath);
    tg_redis_url_free(&l->url);
    free(l);
}
