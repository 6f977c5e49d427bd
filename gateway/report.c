/* report.c — spend reports: the ledger's day hashes (tg:usage:{YYYY-MM-DD}, fields
 * provider|model|key|metric) summed over a range of UTC days, grouped by provider, model,
 * key or day (and, for the dashboard, by a second dimension), with a totals row. Simulated
 * usage (tg:usage-sim:{YYYY-MM-DD}, demo mode) fills rows of its own and a total of its own,
 * so a made-up answer never reaches a real figure.
 * Fields enter one at a time through tg_report_add (from HGETALL replies, sync or async);
 * rows leave as a table, CSV or JSON (its shape is at tg_report_json in gateway/report.h).
 * Money stays in integer micro-USD and is printed with six decimals, never through a float.
 * The `tollgate report` command is here too: one pipelined HGETALL per day on the gateway's own
 * Redis link (gateway/redis.h, so every URL form works: TLS, Sentinel), run on a private event
 * loop until the replies are in. On a Redis Cluster a day's usage is split by gateway key, found
 * through the day's index: tg_report_read_cluster reads it, for the command on a cluster client
 * of its own (gateway/redis_cluster.h) and for gateway/admin.c on the worker's ledger. */
#include "gateway/report.h"
#include "core/strbuf.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/hash.h"
#include "core/json.h"
#include "core/money.h"
#include "gateway/keys.h"
#include "gateway/redis.h"
#include "gateway/redis_cluster.h"

static const char *const by_names[] = {"provider", "model", "key", "day"};
static const char *const metric_names[] = {"requests",      "input_tokens",        "cached_input_tokens",
                                           "output_tokens", "reasoning_tokens",    "cost_micro_usd",
                                           "cache_hits",    "saved_cost_micro_usd"};
#define N_METRICS (sizeof(metric_names) / sizeof(metric_names[0]))

/* --- days ------------------------------------------------------------------------------------ */

/* Howard Hinnant's days_from_civil: exact for the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int tg_report_parse_day(const char *s, size_t len, int64_t *day) {
    if (s == NULL || len != 10 || s[4] != '-' || s[7] != '-') return -1;
    int v[8];
    const int pos[8] = {0, 1, 2, 3, 5, 6, 8, 9};
    for (int i = 0; i < 8; i++) {
        if (s[pos[i]] < '0' || s[pos[i]] > '9') return -1;
        v[i] = s[pos[i]] - '0';
    }
    int y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3], m = v[4] * 10 + v[5], d = v[6] * 10 + v[7];
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap) return -1;
    *day = days_from_civil(y, m, d);
    return 0;
}

void tg_report_day_text(int64_t day, char out[11]) {
    time_t t = (time_t)(day * 86400);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

int tg_report_parse_by(const char *s, size_t len) {
    for (int i = 0; i < 4; i++)
        if (s && strlen(by_names[i]) == len && memcmp(s, by_names[i], len) == 0) return i;
    return -1;
}

/* --- aggregation ------------------------------------------------------------------------------ */

int tg_report_init(tg_report_t *r, const char *from, size_t from_len, const char *to, size_t to_len,
                   const char *by, size_t by_len, int64_t now_ms, char *err, size_t errlen) {
    memset(r, 0, sizeof(*r));
    r->by2 = TG_BY_NONE;
    int64_t today = now_ms / 86400000;
    char t[11];
    tg_report_day_text(today, t);
    int64_t first = today - (atoi(t + 8) - 1);
    r->from_day = first;
    r->to_day = today;
    if (from && from_len && tg_report_parse_day(from, from_len, &r->from_day) != 0) {
        snprintf(err, errlen, "from: '%.*s' is not a date YYYY-MM-DD (UTC)",
                 (int)(from_len > 40 ? 40 : from_len), from);
        return -1;
    }
    if (to && to_len && tg_report_parse_day(to, to_len, &r->to_day) != 0) {
        snprintf(err, errlen, "to: '%.*s' is not a date YYYY-MM-DD (UTC)", (int)(to_len > 40 ? 40 : to_len),
                 to);
        return -1;
    }
    if (r->from_day > r->to_day) {
        snprintf(err, errlen, "from is after to");
        return -1;
    }
    if (r->to_day - r->from_day + 1 > TG_REPORT_MAX_DAYS) {
        snprintf(err, errlen, "the range is longer than %d days", TG_REPORT_MAX_DAYS);
        return -1;
    }
    r->by = TG_BY_PROVIDER;
    if (by && by_len) {
        int b = tg_report_parse_by(by, by_len);
        if (b < 0) {
            snprintf(err, errlen, "by: '%.*s' is not one of provider, model, key, day",
                     (int)(by_len > 40 ? 40 : by_len), by);
            return -1;
        }
        r->by = (tg_report_by_t)b;
    }
    return 0;
}

static uint64_t fnv64(const char *a, size_t an, const char *b, size_t bn) {
    uint64_t h = tg_hash_fnv64(TG_HASH_FNV64_SEED, a, an);
    return tg_hash_fnv64(tg_hash_fnv64_mix(h, 0xff), b, bn);
}

/* A row's slot hash: its names, and whether it is simulated. */
static uint64_t row_hash(const char *a, size_t an, const char *b, size_t bn, int sim) {
    return tg_hash_fnv64_mix(fnv64(a, an, b, bn), sim ? 0x5e : 0x7e);
}

static int rehash(tg_report_t *r) {
    size_t ns = r->nslots ? r->nslots * 2 : 64;
    size_t *sl = calloc(ns, sizeof(*sl));
    if (sl == NULL) return -1;
    for (size_t i = 0; i < r->n; i++) {
        const tg_report_row_t *row = &r->rows[i];
        size_t l2 = row->name2 ? strlen(row->name2) : 0;
        size_t k = row_hash(row->name, strlen(row->name), row->name2 ? row->name2 : "", l2, row->simulated) &
                   (ns - 1);
        while (sl[k])
            k = (k + 1) & (ns - 1);
        sl[k] = i + 1;
    }
    free(r->slots);
    r->slots = sl;
    r->nslots = ns;
    return 0;
}

static int same(const char *s, const char *p, size_t n) {
    return s != NULL && strlen(s) == n && memcmp(s, p, n) == 0;
}

static tg_report_row_t *row_get(tg_report_t *r, const char *a, size_t an, const char *b, size_t bn, int has_b,
                                int sim) {
    if ((r->n + 1) * 2 > r->nslots && rehash(r) != 0) return NULL;
    size_t k = row_hash(a, an, b, has_b ? bn : 0, sim) & (r->nslots - 1);
    for (; r->slots[k]; k = (k + 1) & (r->nslots - 1)) {
        tg_report_row_t *row = &r->rows[r->slots[k] - 1];
        if (row->simulated == sim && same(row->name, a, an) && (!has_b || same(row->name2, b, bn)))
            return row;
    }
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 32;
        tg_report_row_t *nr = realloc(r->rows, nc * sizeof(*nr));
        if (nr == NULL) return NULL;
        r->rows = nr;
        r->cap = nc;
    }
    tg_report_row_t *row = &r->rows[r->n];
    memset(row, 0, sizeof(*row));
    row->name = strndup(a, an);
    row->name2 = has_b ? strndup(b, bn) : NULL;
    row->simulated = sim;
    if (row->name == NULL || (has_b && row->name2 == NULL)) {
        free(row->name);
        free(row->name2);
        return NULL;
    }
    r->slots[k] = ++r->n;
    if (sim) r->n_sim++;
    return row;
}

/* The part of "provider|model|key" a grouping names; model is "provider/model". */
static void dim(tg_report_by_t by, const char *f, size_t pl, size_t ml, size_t kl, const char *day, char *tmp,
                size_t tmpcap, const char **out, size_t *len) {
    switch (by) {
    case TG_BY_PROVIDER:
        *out = f, *len = pl;
        return;
    case TG_BY_MODEL:
        *len = (size_t)snprintf(tmp, tmpcap, "%.*s/%.*s", (int)pl, f, (int)ml, f + pl + 1);
        if (*len >= tmpcap) *len = tmpcap - 1;
        *out = tmp;
        return;
    case TG_BY_KEY:
        *out = f + pl + 1 + ml + 1, *len = kl;
        return;
    default:
        *out = day, *len = 10;
        return;
    }
}

static void add(tg_report_t *r, int sim, int64_t day, const char *field, size_t flen, const char *val,
                size_t vlen) {
    /* provider|model|key|metric: provider is up to the first bar, metric after the last,
     * key between the last two; the model (the rest) may hold a bar of its own. */
    const char *b1 = memchr(field, '|', flen), *b3 = NULL, *b2 = NULL;
    for (size_t i = flen; i-- > 0;)
        if (field[i] == '|') {
            if (b3 == NULL)
                b3 = field + i;
            else if (b2 == NULL)
                b2 = field + i;
        }
    char num[32];
    char *end;
    if (b1 == NULL || b2 == NULL || b3 == NULL || b2 <= b1 || vlen == 0 || vlen >= sizeof(num)) goto bad;
    memcpy(num, val, vlen);
    num[vlen] = '\0';
    long long v = strtoll(num, &end, 10);
    if (*end != '\0') goto bad;
    const char *metric = b3 + 1;
    size_t mlen = (size_t)(field + flen - metric);
    int m = -1;
    for (int i = 0; i < (int)N_METRICS; i++)
        if (same(metric_names[i], metric, mlen)) m = i;
    if (m < 0) goto bad;
    size_t pl = (size_t)(b1 - field), ml = (size_t)(b2 - b1 - 1), kl = (size_t)(b3 - b2 - 1);
    char dtext[11], t1[600], t2[600];
    tg_report_day_text(day, dtext);
    const char *a, *b = "";
    size_t al, bl = 0;
    dim(r->by, field, pl, ml, kl, dtext, t1, sizeof(t1), &a, &al);
    if (r->by2 != TG_BY_NONE) dim(r->by2, field, pl, ml, kl, dtext, t2, sizeof(t2), &b, &bl);
    tg_report_row_t *row = row_get(r, a, al, b, bl, r->by2 != TG_BY_NONE, sim);
    if (row == NULL) return;
    tg_report_sums_t *t = sim ? &r->sim_total : &r->total;
    int64_t *dst[N_METRICS] = {&row->s.requests,   &row->s.input,      &row->s.cached,
                               &row->s.output,     &row->s.reasoning,  &row->s.cost_micro,
                               &row->s.cache_hits, &row->s.saved_micro};
    int64_t *tot[N_METRICS] = {&t->requests,  &t->input,      &t->cached,     &t->output,
                               &t->reasoning, &t->cost_micro, &t->cache_hits, &t->saved_micro};
    *dst[m] += v;
    *tot[m] += v;
    return;
bad:
    r->bad_fields++;
}

void tg_report_add(tg_report_t *r, int64_t day, const char *field, size_t flen, const char *val,
                   size_t vlen) {
    add(r, 0, day, field, flen, val, vlen);
}

void tg_report_add_simulated(tg_report_t *r, int64_t day, const char *field, size_t flen, const char *val,
                             size_t vlen) {
    add(r, 1, day, field, flen, val, vlen);
}

/* Real rows before simulated ones, whatever the order within each. */
static int row_cmp_name(const void *pa, const void *pb) {
    const tg_report_row_t *a = pa, *b = pb;
    if (a->simulated != b->simulated) return a->simulated - b->simulated;
    int c = strcmp(a->name, b->name);
    if (c == 0 && a->name2 && b->name2) c = strcmp(a->name2, b->name2);
    return c;
}

static int row_cmp_cost(const void *pa, const void *pb) {
    const tg_report_row_t *a = pa, *b = pb;
    if (a->simulated != b->simulated) return a->simulated - b->simulated;
    if (a->s.cost_micro != b->s.cost_micro) return a->s.cost_micro > b->s.cost_micro ? -1 : 1;
    return row_cmp_name(pa, pb);
}

void tg_report_finish(tg_report_t *r) {
    if (r->n == 0) return;
    qsort(r->rows, r->n, sizeof(*r->rows),
          r->by == TG_BY_DAY || r->by2 != TG_BY_NONE ? row_cmp_name : row_cmp_cost);
    free(r->slots); /* the index is stale now */
    r->slots = NULL;
    r->nslots = 0;
}

void tg_report_free(tg_report_t *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->rows[i].name);
        free(r->rows[i].name2);
    }
    free(r->rows);
    free(r->slots);
    memset(r, 0, sizeof(*r));
}

/* --- rendering --------------------------------------------------------------------------------- */

static char *bdone(tg_strbuf_t *b) {
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p ? b->p : strdup("");
}

static void json_string(tg_strbuf_t *b, const char *s) {
    tg_strbuf_printf(b, "\"");
    char e[TG_JSON_ESCAPE_MAX];
    for (; *s; s++) {
        size_t k = tg_json_escape_char((unsigned char)*s, e);
        tg_strbuf_printf(b, "%.*s", (int)k, e);
    }
    tg_strbuf_printf(b, "\"");
}

static void json_sums(tg_strbuf_t *b, const tg_report_sums_t *s) {
    char usd[TG_MONEY_TEXT_MAX], saved[TG_MONEY_TEXT_MAX];
    tg_money_format(s->cost_micro, usd);
    tg_money_format(s->saved_micro, saved);
    tg_strbuf_printf(b,
                     "\"requests\":%" PRId64 ",\"input_tokens\":%" PRId64 ",\"cached_input_tokens\":%" PRId64
                     ",\"output_tokens\":%" PRId64 ",\"reasoning_tokens\":%" PRId64
                     ",\"cost_usd\":%s,\"cache_hits\":%" PRId64 ",\"saved_usd\":%s",
                     s->requests, s->input, s->cached, s->output, s->reasoning, usd, s->cache_hits, saved);
}

/* The rows of one kind (real or simulated) as a JSON array. */
static void json_rows(tg_strbuf_t *b, const tg_report_t *r, int sim) {
    tg_strbuf_printf(b, "[");
    int first = 1;
    for (size_t i = 0; i < r->n; i++) {
        if (r->rows[i].simulated != sim) continue;
        tg_strbuf_printf(b, "%s{\"%s\":", first ? "" : ",", by_names[r->by]);
        first = 0;
        json_string(b, r->rows[i].name);
        if (r->by2 != TG_BY_NONE && r->rows[i].name2) {
            tg_strbuf_printf(b, ",\"%s\":", by_names[r->by2]);
            json_string(b, r->rows[i].name2);
        }
        tg_strbuf_printf(b, ",");
        json_sums(b, &r->rows[i].s);
        tg_strbuf_printf(b, "}");
    }
    tg_strbuf_printf(b, "]");
}

char *tg_report_json(const tg_report_t *r) {
    tg_strbuf_t b = {0};
    char f[11], t[11];
    tg_report_day_text(r->from_day, f);
    tg_report_day_text(r->to_day, t);
    tg_strbuf_printf(&b, "{\"from\":\"%s\",\"to\":\"%s\",\"by\":\"%s\",\"rows\":", f, t, by_names[r->by]);
    json_rows(&b, r, 0);
    tg_strbuf_printf(&b, ",\"total\":{");
    json_sums(&b, &r->total);
    tg_strbuf_printf(&b, "}");
    if (r->n_sim) {
        tg_strbuf_printf(&b, ",\"simulated\":{\"rows\":");
        json_rows(&b, r, 1);
        tg_strbuf_printf(&b, ",\"total\":{");
        json_sums(&b, &r->sim_total);
        tg_strbuf_printf(&b, "}}");
    }
    tg_strbuf_printf(&b, "}\n");
    return bdone(&b);
}

/* A CSV cell: quoted when it holds a comma, quote or line break. */
static void csv_cell(tg_strbuf_t *b, const char *s) {
    if (strpbrk(s, ",\"\r\n") == NULL) {
        tg_strbuf_printf(b, "%s", s);
        return;
    }
    tg_strbuf_printf(b, "\"");
    for (; *s; s++)
        tg_strbuf_printf(b, *s == '"' ? "\"\"" : "%c", *s);
    tg_strbuf_printf(b, "\"");
}

static void csv_sums(tg_strbuf_t *b, const tg_report_sums_t *s) {
    char usd[TG_MONEY_TEXT_MAX], saved[TG_MONEY_TEXT_MAX];
    tg_money_format(s->cost_micro, usd);
    tg_money_format(s->saved_micro, saved);
    tg_strbuf_printf(b, ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%s,%" PRId64 ",%s\n",
                     s->requests, s->input, s->cached, s->output, s->reasoning, usd, s->cache_hits, saved);
}

char *tg_report_csv(const tg_report_t *r) {
    tg_strbuf_t b = {0};
    tg_strbuf_printf(&b,
                     "%s,requests,input_tokens,cached_input_tokens,output_tokens,reasoning_tokens,cost_usd,"
                     "cache_hits,saved_usd\n",
                     by_names[r->by]);
    for (size_t i = 0; i < r->n; i++) {
        if (r->rows[i].simulated) continue;
        csv_cell(&b, r->rows[i].name);
        csv_sums(&b, &r->rows[i].s);
    }
    tg_strbuf_printf(&b, "TOTAL");
    csv_sums(&b, &r->total);
    if (r->n_sim == 0) return bdone(&b);
    /* Simulated usage after the real total, each row named as such: a sum of the column down
     * to TOTAL stays real spend. */
    for (size_t i = 0; i < r->n; i++) {
        if (!r->rows[i].simulated) continue;
        char *name = NULL;
        if (asprintf(&name, "simulated:%s", r->rows[i].name) < 0) {
            b.oom = 1;
            break;
        }
        csv_cell(&b, name);
        free(name);
        csv_sums(&b, &r->rows[i].s);
    }
    tg_strbuf_printf(&b, "SIMULATED_TOTAL");
    csv_sums(&b, &r->sim_total);
    return bdone(&b);
}

static void table_line(tg_strbuf_t *b, int w, const char *name, const tg_report_sums_t *s) {
    char usd[TG_MONEY_TEXT_MAX], saved[TG_MONEY_TEXT_MAX];
    tg_money_format(s->cost_micro, usd);
    tg_money_format(s->saved_micro, saved);
    tg_strbuf_printf(
        b,
        "%-*s %9" PRId64 " %13" PRId64 " %13" PRId64 " %13" PRId64 " %13" PRId64 " %14s %10" PRId64 " %14s\n",
        w, name, s->requests, s->input, s->cached, s->output, s->reasoning, usd, s->cache_hits, saved);
}

static void table_rule(tg_strbuf_t *b, int w) {
    for (int i = 0; i < w + 9 + 4 * 14 + 15 + 11 + 15; i++)
        tg_strbuf_printf(b, "-");
    tg_strbuf_printf(b, "\n");
}

char *tg_report_table(const tg_report_t *r) {
    tg_strbuf_t b = {0};
    int w = 8;
    for (size_t i = 0; i < r->n; i++) {
        int l = (int)strlen(r->rows[i].name);
        if (l > w) w = l < 60 ? l : 60;
    }
    char f[11], t[11];
    tg_report_day_text(r->from_day, f);
    tg_report_day_text(r->to_day, t);
    tg_strbuf_printf(&b, "spend %s .. %s (UTC) by %s\n\n", f, t, by_names[r->by]);
    tg_strbuf_printf(&b, "%-*s %9s %13s %13s %13s %13s %14s %10s %14s\n", w, by_names[r->by], "requests",
                     "input", "cached_input", "output", "reasoning", "cost_usd", "cache_hits", "saved_usd");
    for (size_t i = 0; i < r->n; i++)
        if (!r->rows[i].simulated)
            table_line(&b, w, r->rows[i].name[0] ? r->rows[i].name : "(none)", &r->rows[i].s);
    table_rule(&b, w);
    table_line(&b, w, "TOTAL", &r->total);
    if (r->n_sim == 0) return bdone(&b);
    tg_strbuf_printf(&b, "\nsimulated (demo mode: made-up answers, not real spend; not in TOTAL above)\n\n");
    for (size_t i = 0; i < r->n; i++)
        if (r->rows[i].simulated)
            table_line(&b, w, r->rows[i].name[0] ? r->rows[i].name : "(none)", &r->rows[i].s);
    table_rule(&b, w);
    table_line(&b, w, "SIMULATED", &r->sim_total);
    return bdone(&b);
}

/* --- reading a range on a Redis Cluster ------------------------------------------------------------ */

enum { RD_INDEX, RD_REAL, RD_SIM }; /* what a command reads: a day's index, or one of its hashes */

/* One command in flight; the read keeps them in a list, to cancel them. */
typedef struct rd_cmd_s {
    tg_report_read_t *rd;
    struct rd_cmd_s *prev, *next;
    void *handle;
    int64_t day;
    int what;
} rd_cmd_t;

struct tg_report_read_s {
    tg_report_t *r;
    tg_report_link_t link;
    tg_report_done_fn done;
    void *ud;
    rd_cmd_t *inflight;
};

static void rd_unlink(tg_report_read_t *rd, rd_cmd_t *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        rd->inflight = c->next;
    if (c->next) c->next->prev = c->prev;
}

static void rd_reply(const redisReply *rep, void *ud);

/* Sends the read of `what` for `day`: SMEMBERS of the index, or HGETALL of a day hash, of the gateway
 * key `tag` (tl bytes) or, with tag NULL, the untagged one. -1 when it could not go. */
static int rd_send(tg_report_read_t *rd, int what, int64_t day, const char *tag, size_t tl) {
    const char *prefix = what == RD_INDEX ? TG_KEY_USAGE_INDEX
                         : what == RD_SIM ? TG_KEY_USAGE_SIM
                                          : TG_KEY_USAGE;
    size_t pl = strlen(prefix), kl = pl;
    char *key = malloc(pl + tl + 14); /* prefix "{" tag "}:" YYYY-MM-DD */
    rd_cmd_t *c = calloc(1, sizeof(*c));
    if (key == NULL || c == NULL) {
        free(key);
        free(c);
        return -1;
    }
    memcpy(key, prefix, pl);
    if (tag != NULL) {
        key[kl++] = '{';
        memcpy(key + kl, tag, tl);
        kl += tl;
        memcpy(key + kl, TG_KEY_TAG_END ":", 2);
        kl += 2;
    }
    char dtext[11];
    tg_report_day_text(day, dtext);
    memcpy(key + kl, dtext, 10);
    kl += 10;
    *c = (rd_cmd_t){.rd = rd, .day = day, .what = what};
    const char *argv[2] = {what == RD_INDEX ? "SMEMBERS" : "HGETALL", key};
    size_t lens[2] = {strlen(argv[0]), kl};
    c->handle = rd->link.send(rd->link.link, 2, argv, lens, rd_reply, c);
    free(key); /* the command holds a copy */
    if (c->handle == NULL) {
        free(c);
        return -1;
    }
    c->next = rd->inflight;
    if (rd->inflight) rd->inflight->prev = c;
    rd->inflight = c;
    return 0;
}

void tg_report_read_cancel(tg_report_read_t *rd) {
    if (rd == NULL) return;
    while (rd->inflight) {
        rd_cmd_t *c = rd->inflight;
        rd_unlink(rd, c);
        rd->link.cancel(c->handle);
        free(c);
    }
    free(rd);
}

/* The end of a read: the rest cancelled, the read freed, then done (which may free r). */
static void rd_finish(tg_report_read_t *rd, const char *why) {
    tg_report_done_fn done = rd->done;
    void *ud = rd->ud;
    tg_report_read_cancel(rd);
    done(ud, why);
}

static void rd_reply(const redisReply *rep, void *ud) {
    rd_cmd_t *c = ud;
    tg_report_read_t *rd = c->rd;
    int64_t day = c->day;
    int what = c->what;
    rd_unlink(rd, c);
    free(c);
    char why[300];
    if (rep == NULL) {
        rd_finish(rd, "redis stopped answering: a master of the cluster did not answer");
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "WRONGTYPE", 9) != 0) {
        snprintf(why, sizeof(why), "redis refused a read: %.200s", rep->str); /* CLUSTERDOWN past the waits */
        rd_finish(rd, why);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        rd->r->bad_fields++; /* a key of another type: nothing of ours to read */
    } else if (what == RD_INDEX && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *m = rep->element[i];
            if (m->type != REDIS_REPLY_STRING) continue;
            if (rd_send(rd, RD_REAL, day, m->str, m->len) != 0 ||
                rd_send(rd, RD_SIM, day, m->str, m->len) != 0) {
                rd_finish(rd, "redis stopped answering: the cluster link is down");
                return;
            }
        }
    } else if (what != RD_INDEX && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < rep->elements; i += 2)
            (what == RD_SIM ? tg_report_add_simulated
                            : tg_report_add)(rd->r, day, rep->element[i]->str, rep->element[i]->len,
                                             rep->element[i + 1]->str, rep->element[i + 1]->len);
    }
    if (rd->inflight == NULL) rd_finish(rd, NULL);
}

tg_report_read_t *tg_report_read_cluster(tg_report_t *r, const tg_report_link_t *link, tg_report_done_fn done,
                                         void *ud) {
    tg_report_read_t *rd = calloc(1, sizeof(*rd));
    if (rd == NULL) return NULL;
    *rd = (tg_report_read_t){.r = r, .link = *link, .done = done, .ud = ud};
    /* every index first, then the untagged hashes; the members' hashes follow their index */
    for (int what = RD_INDEX; what <= RD_SIM; what++)
        for (int64_t day = r->from_day; day <= r->to_day; day++)
            if (rd_send(rd, what, day, NULL, 0) != 0) {
                tg_report_read_cancel(rd);
                return NULL;
            }
    return rd;
}

/* --- the command ---------------------------------------------------------------------------------- */

/* One run of `tollgate report`'s fetch: the link, and the days still to answer. */
typedef struct {
    struct event_base *base;
    tg_report_t *r;
    int up, down, left;
    char why[300];
} fetch_t;

typedef struct {
    fetch_t *f;
    int64_t day;
    int sim; /* the simulated day hash (demo mode), reported apart */
} fetch_day_t;

static void fetch_up(void *ud) {
    fetch_t *f = ud;
    f->up = 1;
    event_base_loopbreak(f->base);
}

static void fetch_down(void *ud, const char *why, int loud) {
    fetch_t *f = ud;
    f->down = 1;
    snprintf(f->why, sizeof(f->why), "%s", why ? why : "connection lost");
    event_base_loopbreak(f->base);
}

static void fetch_reply(const redisReply *rep, void *ud) {
    fetch_day_t *d = ud;
    fetch_t *f = d->f;
    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < rep->elements; i += 2)
            (d->sim ? tg_report_add_simulated : tg_report_add)(f->r, d->day, rep->element[i]->str,
                                                               rep->element[i]->len, rep->element[i + 1]->str,
                                                               rep->element[i + 1]->len);
    else if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        f->r->bad_fields++; /* a key of another type: nothing of ours to read */
    if (--f->left == 0) event_base_loopbreak(f->base);
}

/* Connects (one attempt, 3 s) and sends two pipelined HGETALLs per day: the real hash and
 * the simulated one. 0, or -1 with err: Redis
 * cannot be reached, or the link failed (exit 3). */
static int fetch_one(const char *url, tg_report_t *r, char *err, size_t errlen) {
    fetch_t f = {.r = r};
    if ((f.base = event_base_new()) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const tg_redis_events_t ev = {fetch_up, fetch_down, &f};
    size_t n = 2 * (size_t)(r->to_day - r->from_day + 1);
    fetch_day_t *days = calloc(n, sizeof(*days));
    tg_redis_t *link = tg_redis_new(f.base, url, "report", &ev, err, errlen);
    int rc = -1;
    if (link == NULL || days == NULL) {
        if (days == NULL) snprintf(err, errlen, "out of memory");
        goto done;
    }
    tg_redis_set_timeout_ms(link, 3000);
    tg_redis_connect(link);
    if (!f.up && !f.down) event_base_dispatch(f.base);
    if (!f.up) {
        snprintf(err, errlen, "cannot reach redis at %s: %s", tg_redis_target(link),
                 f.down ? f.why : "no answer");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char key[40];
        days[i] = (fetch_day_t){&f, r->from_day + (int64_t)(i / 2), (int)(i % 2)};
        char day[11];
        tg_report_day_text(days[i].day, day);
        snprintf(key, sizeof(key), "%s%s", days[i].sim ? TG_KEY_USAGE_SIM : TG_KEY_USAGE, day);
        const char *argv[2] = {"HGETALL", key};
        if (tg_redis_send_argv(link, 2, argv, NULL, fetch_reply, &days[i]) == NULL) {
            snprintf(err, errlen, "redis stopped answering: connection lost");
            goto done;
        }
        f.left++;
    }
    while (f.left > 0 && !f.down)
        event_base_dispatch(f.base);
    if (f.left > 0) {
        snprintf(err, errlen, "redis stopped answering: %s", f.why);
        goto done;
    }
    rc = 0;
done:
    tg_redis_free(link);
    free(days);
    event_base_free(f.base);
    return rc;
}

/* The same on a Redis Cluster, through a cluster client of its own. */
typedef struct {
    struct event_base *base;
    int done;
    char why[300];
} cfetch_t;

static void *cfetch_send(void *link, int argc, const char **argv, const size_t *lens, tg_report_reply_fn fn,
                         void *ud) {
    return tg_rcluster_send_argv(link, argc, argv, lens, 1, fn, ud);
}

static void cfetch_cancel(void *handle) {
    tg_rcluster_cancel(handle);
}

static void cfetch_done(void *ud, const char *why) {
    cfetch_t *f = ud;
    f->done = 1;
    snprintf(f->why, sizeof(f->why), "%s", why ? why : "");
    event_base_loopbreak(f->base);
}

/* Waits up to 3 s for the slot map and every master, then reads the range
 * (tg_report_read_cluster). 0, or -1 with err (exit 3). */
static int fetch_cluster(const char *url, const char *target, tg_report_t *r, char *err, size_t errlen) {
    cfetch_t f = {0};
    if ((f.base = event_base_new()) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    tg_report_read_t *rd = NULL;
    int rc = -1;
    tg_rcluster_t *c = tg_rcluster_new(f.base, url, "report", err, errlen);
    if (c == NULL) goto done;
    tg_rcluster_connect(c);
    for (int i = 0; i < 300 && !tg_rcluster_ready(c); i++) { /* polled every 10 ms */
        struct timeval tv = {0, 10000};
        event_base_loopexit(f.base, &tv);
        event_base_dispatch(f.base);
    }
    if (!tg_rcluster_ready(c)) {
        snprintf(err, errlen, "cannot reach redis at %s: no slot map with every master connected within 3 s",
                 target);
        goto done;
    }
    const tg_report_link_t link = {cfetch_send, cfetch_cancel, c};
    if ((rd = tg_report_read_cluster(r, &link, cfetch_done, &f)) == NULL) {
        snprintf(err, errlen, "redis stopped answering: connection lost");
        goto done;
    }
    while (!f.done && event_base_dispatch(f.base) == 0)
        ;
    if (!f.done || f.why[0]) {
        snprintf(err, errlen, "%s", f.done ? f.why : "redis stopped answering: no reply");
        goto done;
    }
    rc = 0;
done:
    if (!f.done) tg_report_read_cancel(rd); /* before the client its commands are on */
    tg_rcluster_free(c);
    event_base_free(f.base);
    return rc;
}

/* A cluster URL reads through fetch_cluster, every other through fetch_one. */
static int fetch(const char *url, tg_report_t *r, char *err, size_t errlen) {
    tg_redis_url_t u;
    if (tg_redis_url_parse(url, &u, err, errlen) != 0) return fetch_one(url, r, err, errlen); /* says why */
    int cluster = u.cluster;
    char target[sizeof(u.target)];
    memcpy(target, u.target, sizeof(target));
    tg_redis_url_free(&u);
    return cluster ? fetch_cluster(url, target, r, err, errlen) : fetch_one(url, r, err, errlen);
}

static const char *redis_url_of(const char *path, int *rc) {
    tg_diag_t d = {0};
    tg_config_t *cfg = tg_config_load(path, &d);
    for (size_t i = 0; cfg == NULL && i < d.n; i++)
        fprintf(stderr, "%s\n", d.msgs[i]);
    tg_diag_free(&d);
    if (cfg == NULL) {
        fprintf(stderr, "tollgate report: cannot load %s (give --redis URL to skip it)\n", path);
        *rc = 1;
        return NULL;
    }
    static char url[1024];
    snprintf(url, sizeof(url), "%s", cfg->redis_url ? cfg->redis_url : "");
    const tg_redis_tls_t tls = {cfg->redis_tls.ca_file, cfg->redis_tls.cert, cfg->redis_tls.key,
                                cfg->redis_tls.server_name};
    char err[300];
    if ((tls.ca_file || tls.cert || tls.server_name) && tg_redis_tls_setup(&tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "tollgate report: %s\n", err);
        tg_config_unref(cfg);
        *rc = 1;
        return NULL;
    }
    tg_config_unref(cfg);
    if (url[0] == '\0') {
        fprintf(stderr, "tollgate report: %s sets no redis (the ledger is off): give --redis URL\n", path);
        *rc = 3;
        return NULL;
    }
    return url;
}

int tg_report_main(int argc, char **argv, const char *default_config) {
    const char *cfg = default_config, *url = NULL, *from = NULL, *to = NULL, *by = NULL, *fmt = "table";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 ? &cfg
                           : strcmp(a, "--redis") == 0                        ? &url
                           : strcmp(a, "--from") == 0                         ? &from
                           : strcmp(a, "--to") == 0                           ? &to
                           : strcmp(a, "--by") == 0                           ? &by
                           : strcmp(a, "--format") == 0                       ? &fmt
                                                                              : NULL;
        if (dst == NULL || v == NULL) {
            fprintf(stderr,
                    "tollgate report: unknown or incomplete option '%s'\nusage: tollgate report [-c FILE] "
                    "[--redis URL] "
                    "[--from YYYY-MM-DD] [--to YYYY-MM-DD] [--by provider|model|key|day] [--format "
                    "table|csv|json]\n",
                    a);
            return 2;
        }
        *dst = argv[++i];
    }
    if (strcmp(fmt, "table") != 0 && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0) {
        fprintf(stderr, "tollgate report: --format must be table, csv or json\n");
        return 2;
    }
    char err[512];
    tg_report_t r;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (tg_report_init(&r, from, from ? strlen(from) : 0, to, to ? strlen(to) : 0, by, by ? strlen(by) : 0,
                       (int64_t)now.tv_sec * 1000, err, sizeof(err)) != 0) {
        fprintf(stderr, "tollgate report: %s\n", err);
        return 2;
    }
    int rc = 0;
    if (url == NULL && (url = redis_url_of(cfg, &rc)) == NULL) return rc;
    if (fetch(url, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "tollgate report: %s\n", err);
        tg_report_free(&r);
        return 3;
    }
    tg_report_finish(&r);
    char *out = fmt[0] == 'j' ? tg_report_json(&r) : fmt[0] == 'c' ? tg_report_csv(&r) : tg_report_table(&r);
    if (out) fputs(out, stdout);
    if (r.bad_fields)
        fprintf(stderr,
                "tollgate report: %zu fields in " TG_KEY_USAGE
                "* were not provider|model|key|metric integers "
                "and were skipped\n",
                r.bad_fields);
    free(out);
    tg_report_free(&r);
    return out ? 0 : 1;
}
