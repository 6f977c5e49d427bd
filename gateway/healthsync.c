/* healthsync.c — provider health across the instances of a fleet. The health table of a
 * process (policy/health.c) is where requests look, with no I/O; this module copies into it,
 * from Redis, the open circuits and retry-afters the other instances learned, and copies out
 * what this one learned, both on timers of one worker's loop:
 *   publish (100 ms): tg_health_export of every entry; marks new or later than the last sent
 *     go out in one EVAL that keeps the later deadline per field of TG_KEY_HEALTH
 *     (gateway/keys.h), drops fields past their time and sets the key to expire with the
 *     last one;
 *   poll (500 ms): HGETALL TG_KEY_HEALTH; each field still in the future is imported
 *     (tg_health_import: the merge rule, in policy/health.h).
 * Deadlines cross processes as unix ms (wall clock) and live in the table as monotonic ms:
 * instances need clocks in step (NTP) to the precision of the delay they tolerate. */
#include "gateway/healthsync.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "gateway/keys.h"
#include "gateway/ledger.h"

/* Commands go on the ledger's quota link (tg_ledger_quick_query): a burst of usage records or
 * a journal replay on the main link does not hold health news back. */
#define PUBLISH_MS 100
#define POLL_MS 500
#define MAX_BATCH 256 /* marks per publish script; more wait for the next tick */

/* KEYS[1] the hash; ARGV[1] now (unix ms), then field, open until, retry until per mark. A
 * deadline is kept as the string it came as: Lua numbers print as floats. */
static const char LUA[] =
    "local now=tonumber(ARGV[1])\n"
    "for i=2,#ARGV,3 do\n"
    "  local o,r=ARGV[i+1],ARGV[i+2]\n"
    "  local cur=redis.call('HGET',KEYS[1],ARGV[i])\n"
    "  if cur then\n"
    "    local co,cr=string.match(cur,'^(%d+) (%d+)$')\n"
    "    if co then\n"
    "      if tonumber(co)>tonumber(o) then o=co end\n"
    "      if tonumber(cr)>tonumber(r) then r=cr end\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET',KEYS[1],ARGV[i],o..' '..r)\n"
    "end\n"
    "local all=redis.call('HGETALL',KEYS[1])\n"
    "local last,lastS=0,nil\n"
    "for j=1,#all,2 do\n"
    "  local co,cr=string.match(all[j+1],'^(%d+) (%d+)$')\n"
    "  local u,us=0,nil\n"
    "  if co then if tonumber(co)>tonumber(cr) then u,us=tonumber(co),co else u,us=tonumber(cr),cr end end\n"
    "  if u<=now then redis.call('HDEL',KEYS[1],all[j]) elseif u>last then last,lastS=u,us end\n"
    "end\n"
    "if lastS then redis.call('PEXPIREAT',KEYS[1],lastS) end\n"
    "return 1\n";

struct tg_healthsync_s {
    struct tg_ledger_s *ledger;
    tg_health_t *h;
    struct event *pub_ev, *poll_ev;
    int publish_ms, poll_ms;
    tg_ledger_query_t *pub_q, *poll_q; /* at most one of each in flight */
    tg_health_mark_t *sent;            /* per entry: the deadlines last sent (monotonic ms) */
    size_t n_sent;
    int64_t last_warn_ms;
    _Atomic uint64_t published, imported, errors;
};

/* --- the field's value ---------------------------------------------------------------------- */

size_t tg_healthsync_format(char *buf, const tg_health_mark_t *m) {
    return (size_t)snprintf(buf, 48, "%" PRId64 " %" PRId64, m->open_until_ms > 0 ? m->open_until_ms : 0,
                            m->retry_until_ms > 0 ? m->retry_until_ms : 0);
}

static const char *digits(const char *p, const char *end, int64_t *v) {
    const char *start = p;
    int64_t x = 0;
    for (; p < end && *p >= '0' && *p <= '9' && p - start < 18; p++)
        x = x * 10 + (*p - '0');
    if (p == start) return NULL;
    *v = x;
    return p;
}

int tg_healthsync_parse(const char *s, size_t n, tg_health_mark_t *m) {
    const char *end = s + n, *p = digits(s, end, &m->open_until_ms);
    if (p == NULL || p == end || *p != ' ') return -1;
    p = digits(p + 1, end, &m->retry_until_ms);
    return p == end ? 0 : -1;
}

/* --- publish ---------------------------------------------------------------------------------- */

static void arm(struct event *ev, int ms) {
    struct timeval tv = tg_clock_tv(ms);
    evtimer_add(ev, &tv);
}

static void failed(tg_healthsync_t *s, const char *what, const redisReply *rep) {
    atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
    if (tg_clock_warn_due(&s->last_warn_ms))
        tg_warn("healthsync: %s failed: %s", what,
                rep == NULL                      ? "no answer from redis"
                : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                 : "unexpected reply");
}

static void on_published(const redisReply *rep, void *ud) {
    tg_healthsync_t *s = ud;
    s->pub_q = NULL;
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        /* Not known to have landed: send every live mark again next time (the script keeps
         * the later deadline, so a mark sent twice changes nothing). */
        memset(s->sent, 0, s->n_sent * sizeof(*s->sent));
        failed(s, "publishing health", rep);
    }
}

static int grow_sent(tg_healthsync_t *s, size_t n) {
    if (n <= s->n_sent) return 0;
    tg_health_mark_t *v = realloc(s->sent, n * sizeof(*v));
    if (v == NULL) return -1;
    memset(v + s->n_sent, 0, (n - s->n_sent) * sizeof(*v));
    s->sent = v;
    s->n_sent = n;
    return 0;
}

static void publish(tg_healthsync_t *s) {
    size_t n = tg_health_count(s->h);
    if (s->pub_q != NULL || !tg_ledger_connected(s->ledger) || grow_sent(s, n) < 0) return;
    int64_t now = tg_clock_mono_ms(), to_wall = tg_clock_wall_ms() - now;
    const char *argv[5 + 3 * MAX_BATCH];
    size_t lens[5 + 3 * MAX_BATCH];
    char nowbuf[24], vals[MAX_BATCH][2][24];
    char *fields[MAX_BATCH];
    size_t which[MAX_BATCH];
    tg_health_mark_t marks[MAX_BATCH];
    int argc = 0, k = 0;
    snprintf(nowbuf, sizeof(nowbuf), "%" PRId64, now + to_wall);
    argv[argc++] = "EVAL";
    argv[argc++] = LUA;
    argv[argc++] = "1";
    argv[argc++] = TG_KEY_HEALTH;
    argv[argc++] = nowbuf;
    for (size_t i = 0; i < n && k < MAX_BATCH; i++) {
        tg_health_entry_t *e = tg_health_entry(s->h, i);
        tg_health_mark_t m;
        if (e == NULL || !tg_health_export(e, now, &m)) continue;
        if (m.open_until_ms <= s->sent[i].open_until_ms && m.retry_until_ms <= s->sent[i].retry_until_ms)
            continue;
        if (asprintf(&fields[k], "%s/%s", e->provider, e->model) < 0) break;
        snprintf(vals[k][0], 24, "%" PRId64, m.open_until_ms ? m.open_until_ms + to_wall : 0);
        snprintf(vals[k][1], 24, "%" PRId64, m.retry_until_ms ? m.retry_until_ms + to_wall : 0);
        argv[argc++] = fields[k];
        argv[argc++] = vals[k][0];
        argv[argc++] = vals[k][1];
        which[k] = i;
        marks[k] = m;
        k++;
    }
    if (k > 0) {
        for (int i = 0; i < argc; i++)
            lens[i] = strlen(argv[i]);
        s->pub_q = tg_ledger_quick_query(s->ledger, argc, argv, lens, 3, on_published, s);
        if (s->pub_q != NULL) {
            for (int j = 0; j < k; j++)
                s->sent[which[j]] = marks[j];
            atomic_fetch_add_explicit(&s->published, (uint64_t)k, memory_order_relaxed);
        }
    }
    for (int j = 0; j < k; j++)
        free(fields[j]);
}

static void on_pub_tick(evutil_socket_t fd, short what, void *arg) {
    tg_healthsync_t *s = arg;
    publish(s);
    arm(s->pub_ev, s->publish_ms);
}

/* --- poll ------------------------------------------------------------------------------------- */

static void on_polled(const redisReply *rep, void *ud) {
    tg_healthsync_t *s = ud;
    s->poll_q = NULL;
    if (rep == NULL || (rep->type != REDIS_REPLY_ARRAY && rep->type != REDIS_REPLY_NIL)) {
        failed(s, "reading health", rep);
        return;
    }
    int64_t now = tg_clock_mono_ms(), to_wall = tg_clock_wall_ms() - now;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *v = rep->element[i + 1];
        tg_health_mark_t m;
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            tg_healthsync_parse(v->str, v->len, &m) < 0)
            continue;
        /* Back to this process's monotonic clock; a deadline already past is nothing. */
        m.open_until_ms = m.open_until_ms ? m.open_until_ms - to_wall : 0;
        m.retry_until_ms = m.retry_until_ms ? m.retry_until_ms - to_wall : 0;
        if (m.open_until_ms <= now && m.retry_until_ms <= now) continue;
        /* "provider/model": provider names have no '/', model names may. */
        char *slash = memchr(f->str, '/', f->len);
        if (slash == NULL) continue;
        char *field = strndup(f->str, f->len);
        if (field == NULL) continue;
        field[slash - f->str] = '\0';
        tg_health_entry_t *e = tg_health_get(s->h, field, field + (slash - f->str) + 1);
        free(field);
        if (e == NULL) continue;
        int64_t before = atomic_load_explicit(&e->remote_until_ms, memory_order_relaxed);
        tg_health_import(e, &m);
        if (atomic_load_explicit(&e->remote_until_ms, memory_order_relaxed) != before)
            atomic_fetch_add_explicit(&s->imported, 1, memory_order_relaxed);
    }
}

static void on_poll_tick(evutil_socket_t fd, short what, void *arg) {
    tg_healthsync_t *s = arg;
    if (s->poll_q == NULL && tg_ledger_connected(s->ledger)) {
        const char *argv[2] = {"HGETALL", TG_KEY_HEALTH};
        size_t lens[2] = {7, TG_KEY_LEN(TG_KEY_HEALTH)};
        s->poll_q = tg_ledger_quick_query(s->ledger, 2, argv, lens, 1, on_polled, s);
    }
    arm(s->poll_ev, s->poll_ms);
}

/* --- life ------------------------------------------------------------------------------------- */

tg_healthsync_t *tg_healthsync_new(struct event_base *base, struct tg_ledger_s *l, tg_health_t *h) {
    tg_healthsync_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->ledger = l;
    s->h = h;
    s->publish_ms = PUBLISH_MS;
    s->poll_ms = POLL_MS;
    s->pub_ev = evtimer_new(base, on_pub_tick, s);
    s->poll_ev = evtimer_new(base, on_poll_tick, s);
    if (s->pub_ev == NULL || s->poll_ev == NULL) {
        tg_healthsync_free(s);
        return NULL;
    }
    arm(s->pub_ev, s->publish_ms);
    arm(s->poll_ev, s->poll_ms);
    return s;
}

void tg_healthsync_set_periods(tg_healthsync_t *s, int publish_ms, int poll_ms) {
    if (publish_ms > 0) s->publish_ms = publish_ms;
    if (poll_ms > 0) s->poll_ms = poll_ms;
}

void tg_healthsync_stats(const tg_healthsync_t *s, uint64_t *published, uint64_t *imported,
                         uint64_t *errors) {
    if (published) *published = s ? atomic_load_explicit(&s->published, memory_order_relaxed) : 0;
    if (imported) *imported = s ? atomic_load_explicit(&s->imported, memory_order_relaxed) : 0;
    if (errors) *errors = s ? atomic_load_explicit(&s->errors, memory_order_relaxed) : 0;
}

char *tg_healthsync_render(const tg_healthsync_t *s) {
    uint64_t p, i, e;
    tg_healthsync_stats(s, &p, &i, &e);
    char *out = NULL;
    if (asprintf(
            &out,
            "# HELP tollgate_healthsync_marks_total Open circuits and retry-afters shared with other "
            "instances: sent to Redis, or read from it and applied.\n"
            "# TYPE tollgate_healthsync_marks_total counter\n"
            "tollgate_healthsync_marks_total{dir=\"published\"} %" PRIu64 "\n"
            "tollgate_healthsync_marks_total{dir=\"imported\"} %" PRIu64 "\n"
            "# HELP tollgate_healthsync_errors_total Health sync commands Redis did not answer or refused.\n"
            "# TYPE tollgate_healthsync_errors_total counter\n"
            "tollgate_healthsync_errors_total %" PRIu64 "\n",
            p, i, e) < 0)
        return NULL;
    return out;
}

void tg_healthsync_free(tg_healthsync_t *s) {
    if (s == NULL) return;
    if (s->pub_q) tg_ledger_query_cancel(s->pub_q);
    if (s->poll_q) tg_ledger_query_cancel(s->poll_q);
    if (s->pub_ev) event_free(s->pub_ev);
    if (s->poll_ev) event_free(s->poll_ev);
    free(s->sent);
    free(s);
}
