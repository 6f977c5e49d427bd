/* admin.c — GET /admin/spend and GET /dashboard. A request enters with its admin token
 * (Authorization: Bearer, or ?token= on /dashboard so a browser can open it), its range and
 * grouping are parsed, and two HGETALLs per day, of tg:usage:{day} and of the simulated
 * tg:usage-sim:{day}, go out on the worker's ledger connection (async, never blocking the loop). The replies
 * fill a tg_report_t (gateway/report.c); the last one renders the answer: the JSON of `tollgate report
 * --format json` (tg_report_json, gateway/report.h), or a self-contained HTML page with one
 * inline SVG bar chart per provider (no script, no CDN, no fetch). On a Redis Cluster the day's
 * usage is split by gateway key: tg_report_read_cluster (gateway/report.h) reads each day's index,
 * then its members' hashes and the untagged ones, on the same connection.
 * The state lives in the request's pool (a cluster read's own, which grows with the index, in the
 * heap); a client that leaves first cancels the queries. */
#include "gateway/admin.h"
#include "core/json.h"
#include "core/money.h"
#include "core/strbuf.h"
#include "gateway/keys.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DASH_DEFAULT_DAYS 30

struct tg_admin_s {
    tg_admin_kind_t kind;
    tg_http_req_t *h;
    tg_report_t rep;
    tg_ledger_query_t **q; /* two per day (real, simulated), NULL once answered */
    size_t nq, left;
    tg_report_read_t *rd; /* instead on a Redis Cluster, NULL once done */
    int failed, done;
};

tg_admin_kind_t tg_admin_kind(const char *path, size_t len) {
    if (len == 12 && memcmp(path, "/admin/spend", 12) == 0) return TG_ADMIN_SPEND;
    if (len == 10 && memcmp(path, "/dashboard", 10) == 0) return TG_ADMIN_DASHBOARD;
    if (len == 11 && memcmp(path, "/dashboard/", 11) == 0) return TG_ADMIN_DASHBOARD;
    return TG_ADMIN_NONE;
}

/* The message may quote the client's query (a bad date): it goes through
 * the one JSON escaper (core/json.h), cut whole escapes at a time. */
static void respond_error(tg_http_req_t *h, int status, const char *code, const char *msg) {
    char esc[600], body[800];
    size_t el = tg_json_escape_to(esc, sizeof(esc), msg, strlen(msg));
    int n = snprintf(body, sizeof(body), "{\"error\":{\"message\":\"%.*s\",\"type\":\"%s\",\"code\":\"%s\"}}",
                     (int)el, esc,
                     status == 401   ? "authentication_error"
                     : status == 400 ? "invalid_request_error"
                                     : "server_error",
                     code);
    const char *hdr[] = {"Content-Type: application/json", "Cache-Control: no-store",
                         "WWW-Authenticate: Bearer realm=\"tollgate admin\""};
    tg_http_respond(h, status, hdr, status == 401 ? 3 : 2, body, (size_t)(n < (int)sizeof(body) ? n : 0));
}

/* --- query string ---------------------------------------------------------------------------- */

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The value of `name` in the query, %-decoded into the pool; NULL when absent. */
static char *query_get(tg_pool_t *pool, const char *q, size_t qlen, const char *name, size_t *len) {
    size_t nl = strlen(name);
    for (size_t i = 0; q && i < qlen;) {
        size_t end = i;
        while (end < qlen && q[end] != '&')
            end++;
        if (end - i > nl && memcmp(q + i, name, nl) == 0 && q[i + nl] == '=') {
            const char *v = q + i + nl + 1;
            size_t vl = end - (i + nl + 1), o = 0;
            char *out = tg_pool_alloc(pool, vl + 1);
            for (size_t k = 0; k < vl; k++) {
                if (v[k] == '%' && k + 2 < vl && hexval(v[k + 1]) >= 0 && hexval(v[k + 2]) >= 0) {
                    out[o++] = (char)(hexval(v[k + 1]) * 16 + hexval(v[k + 2]));
                    k += 2;
                } else {
                    out[o++] = v[k] == '+' ? ' ' : v[k];
                }
            }
            out[o] = '\0';
            *len = o;
            return out;
        }
        i = end + 1;
    }
    *len = 0;
    return NULL;
}

/* Constant time whatever the lengths: both sides are hashed first. */
int tg_admin_token_ok(const char *given, size_t glen, const char *want) {
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int al = 0, bl = 0;
    if (EVP_Digest(given, glen, a, &al, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(want, strlen(want), b, &bl, EVP_sha256(), NULL) != 1 || al != bl)
        return 0;
    return CRYPTO_memcmp(a, b, al) == 0;
}

static int authorised(tg_admin_kind_t kind, tg_http_req_t *h, const tg_config_t *cfg, tg_pool_t *pool) {
    size_t n = 0;
    const char *v = tg_http_header(h, "authorization", &n);
    if (v && n > 7 && strncasecmp(v, "Bearer ", 7) == 0)
        return tg_admin_token_ok(v + 7, n - 7, cfg->admin_token);
    if (kind == TG_ADMIN_DASHBOARD) {
        size_t ql = 0, tl = 0;
        const char *q = tg_http_query(h, &ql);
        const char *t = query_get(pool, q, ql, "token", &tl);
        if (t && tl) return tg_admin_token_ok(t, tl, cfg->admin_token);
    }
    return 0;
}

/* --- answers ------------------------------------------------------------------------------------ */

static void answer(tg_admin_t *a) {
    a->done = 1;
    tg_http_req_t *h = a->h;
    if (a->failed) {
        tg_report_free(&a->rep);
        respond_error(
            h, 503, "redis_unavailable",
            "redis is not reachable, so spend figures cannot be read now; requests are still served and "
            "their usage is journaled until redis is back");
        return;
    }
    tg_report_finish(&a->rep);
    int dash = a->kind == TG_ADMIN_DASHBOARD;
    char *body = dash ? tg_admin_dashboard_html(&a->rep) : tg_report_json(&a->rep);
    tg_report_free(&a->rep);
    if (body == NULL) {
        respond_error(h, 500, "out_of_memory", "out of memory");
        return;
    }
    const char *hdr[] = {
        dash ? "Content-Type: text/html; charset=utf-8" : "Content-Type: application/json",
        "Cache-Control: no-store",
        "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:"};
    tg_http_respond(h, 200, hdr, dash ? 3 : 2, body, strlen(body)); /* on_finish runs inside */
    free(body);
}

typedef struct {
    tg_admin_t *a;
    int64_t day;
    size_t i;
    int simulated; /* the day's simulated hash */
} day_t;

static void on_day_reply(const struct redisReply *rep, void *ud) {
    day_t *d = ud;
    tg_admin_t *a = d->a;
    a->q[d->i] = NULL;
    if (rep == NULL)
        a->failed = 1;
    else if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < rep->elements; i += 2)
            (d->simulated ? tg_report_add_simulated
                          : tg_report_add)(&a->rep, d->day, rep->element[i]->str, rep->element[i]->len,
                                           rep->element[i + 1]->str, rep->element[i + 1]->len);
    if (--a->left == 0) answer(a);
}

/* The cluster read's way to the ledger: every key is argv[1]. */
static void *ledger_send(void *link, int argc, const char **argv, const size_t *lens, tg_report_reply_fn fn,
                         void *ud) {
    return tg_ledger_query(link, argc, argv, lens, 1, fn, ud);
}

static void ledger_cancel(void *handle) {
    tg_ledger_query_cancel(handle);
}

static void on_read_done(void *ud, const char *why) {
    tg_admin_t *a = ud;
    a->rd = NULL; /* it freed itself */
    a->failed = why != NULL;
    answer(a);
}

int tg_admin_authorise(tg_admin_kind_t kind, tg_http_req_t *h, const tg_config_t *cfg, tg_pool_t *pool) {
    if (cfg->admin_token == NULL) {
        char msg[300];
        snprintf(
            msg, sizeof(msg),
            "admin endpoints are off: no admin token is set (export %s=<token> before starting the gateway; "
            "admin_token_env in the config names the variable)",
            cfg->admin_token_env ? cfg->admin_token_env : "TOLLGATE_ADMIN_TOKEN");
        respond_error(h, 503, "admin_disabled", msg);
        return -1;
    }
    if (!authorised(kind, h, cfg, pool)) {
        respond_error(
            h, 401, "invalid_admin_token",
            kind == TG_ADMIN_DASHBOARD
                ? "admin token missing or wrong: send 'Authorization: Bearer <admin token>' or open "
                  "/dashboard?token=<admin token>"
                : "admin token missing or wrong: send 'Authorization: Bearer <admin token>'");
        return -1;
    }
    return 0;
}

tg_admin_t *tg_admin_serve(tg_admin_kind_t kind, tg_http_req_t *h, const tg_config_t *cfg, tg_ledger_t *l,
                           tg_pool_t *pool, long long now_ms) {
    tg_admin_t *a = tg_pool_calloc(pool, sizeof(*a));
    a->kind = kind;
    a->h = h;
    size_t ql = 0, fl, tl, bl;
    const char *q = tg_http_query(h, &ql);
    const char *from = query_get(pool, q, ql, "from", &fl), *to = query_get(pool, q, ql, "to", &tl);
    const char *by = query_get(pool, q, ql, "by", &bl);
    char err[200];
    if (tg_report_init(&a->rep, from, fl, to, tl, kind == TG_ADMIN_DASHBOARD ? NULL : by, bl, now_ms, err,
                       sizeof(err)) != 0) {
        respond_error(h, 400, "invalid_range", err);
        return NULL;
    }
    if (kind == TG_ADMIN_DASHBOARD) {
        if (fl == 0) a->rep.from_day = a->rep.to_day - (DASH_DEFAULT_DAYS - 1);
        if (a->rep.from_day > a->rep.to_day) a->rep.from_day = a->rep.to_day;
        a->rep.by = TG_BY_PROVIDER;
        a->rep.by2 = TG_BY_DAY;
    }
    if (tg_ledger_cluster(l)) {
        const tg_report_link_t link = {ledger_send, ledger_cancel, l};
        if ((a->rd = tg_report_read_cluster(&a->rep, &link, on_read_done, a)) == NULL) {
            a->failed = 1; /* not connected: answer 503 now */
            answer(a);
            return NULL;
        }
        return a;
    }
    a->nq = 2 * (size_t)(a->rep.to_day - a->rep.from_day + 1);
    a->q = tg_pool_calloc(pool, a->nq * sizeof(*a->q));
    day_t *days = tg_pool_alloc(pool, a->nq * sizeof(*days));
    for (size_t i = 0; i < a->nq; i++) {
        int sim = (int)(i % 2);
        const char *prefix = sim ? TG_KEY_USAGE_SIM : TG_KEY_USAGE;
        char key[32];
        size_t pl = strlen(prefix);
        memcpy(key, prefix, pl);
        tg_report_day_text(a->rep.from_day + (int64_t)(i / 2), key + pl);
        const char *argv[2] = {"HGETALL", key};
        size_t lens[2] = {7, strlen(key)};
        days[i] = (day_t){a, a->rep.from_day + (int64_t)(i / 2), i, sim};
        a->q[i] = tg_ledger_query(l, 2, argv, lens, 1, on_day_reply, &days[i]);
        if (a->q[i] == NULL) { /* not connected: cancel what went out, answer 503 now */
            for (size_t k = 0; k < i; k++)
                tg_ledger_query_cancel(a->q[k]);
            a->failed = 1;
            answer(a);
            return NULL;
        }
        a->left++;
    }
    return a;
}

void tg_admin_cancel(tg_admin_t *a) {
    if (a == NULL || a->done) return;
    a->done = 1;
    tg_report_read_cancel(a->rd);
    a->rd = NULL;
    for (size_t i = 0; i < a->nq; i++)
        if (a->q[i]) {
            tg_ledger_query_cancel(a->q[i]);
            a->q[i] = NULL;
        }
    tg_report_free(&a->rep);
}

/* --- the dashboard ------------------------------------------------------------------------------- */

/* Text for HTML content and attribute values. */
static void out_esc(tg_strbuf_t *o, const char *s) {
    for (; *s; s++)
        switch (*s) {
        case '&':
            tg_strbuf_printf(o, "&amp;");
            break;
        case '<':
            tg_strbuf_printf(o, "&lt;");
            break;
        case '>':
            tg_strbuf_printf(o, "&gt;");
            break;
        case '"':
            tg_strbuf_printf(o, "&quot;");
            break;
        case '\'':
            tg_strbuf_printf(o, "&#39;");
            break;
        default:
            tg_strbuf_printf(o, "%c", *s);
        }
}

#define CH_W 720
#define CH_H 160
#define CH_PAD 40

/* One provider's bars: rows [i, j) of the report are its days, in order. */
static void chart(tg_strbuf_t *o, const tg_report_t *r, size_t i, size_t j, int64_t total) {
    int64_t ndays = r->to_day - r->from_day + 1, max = 1;
    for (size_t k = i; k < j; k++)
        if (r->rows[k].s.cost_micro > max) max = r->rows[k].s.cost_micro;
    char usd[TG_MONEY_TEXT_MAX], first[11], last[11];
    tg_money_format(total, usd);
    tg_report_day_text(r->from_day, first);
    tg_report_day_text(r->to_day, last);
    tg_strbuf_printf(o, "<section class=\"provider\" data-provider=\"");
    out_esc(o, r->rows[i].name);
    tg_strbuf_printf(o, "\"><h2>");
    out_esc(o, r->rows[i].name);
    tg_strbuf_printf(o, " <small>$%s</small></h2>\n", usd);
    tg_strbuf_printf(o,
                     "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
                     "xmlns=\"http://www.w3.org/2000/svg\"><title>",
                     CH_W, CH_H + 30, CH_W, CH_H + 30);
    out_esc(o, r->rows[i].name);
    tg_strbuf_printf(o, ": spend per day (USD)</title>\n");
    tg_strbuf_printf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", CH_PAD, CH_H,
                     CH_W, CH_H);
    tg_money_format(max, usd);
    tg_strbuf_printf(
        o, "<text x=\"2\" y=\"12\" class=\"lbl\">$%s</text><text x=\"2\" y=\"%d\" class=\"lbl\">$0</text>\n",
        usd, CH_H);
    double bw = (double)(CH_W - CH_PAD) / (double)ndays;
    for (size_t k = i; k < j; k++) {
        int64_t d;
        if (tg_report_parse_day(r->rows[k].name2, 10, &d) != 0) continue;
        double hgt = (double)r->rows[k].s.cost_micro * (CH_H - 20) / (double)max;
        if (r->rows[k].s.cost_micro > 0 && hgt < 1) hgt = 1;
        tg_money_format(r->rows[k].s.cost_micro, usd);
        tg_strbuf_printf(o,
                         "<rect class=\"bar\" data-day=\"%s\" data-usd=\"%s\" data-requests=\"%" PRId64
                         "\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>%s: $%s, %" PRId64
                         " requests</title></rect>\n",
                         r->rows[k].name2, usd, r->rows[k].s.requests,
                         CH_PAD + (double)(d - r->from_day) * bw + bw * 0.1, CH_H - hgt, bw * 0.8, hgt,
                         r->rows[k].name2, usd, r->rows[k].s.requests);
    }
    tg_strbuf_printf(o,
                     "<text x=\"%d\" y=\"%d\" class=\"lbl\">%s</text><text x=\"%d\" y=\"%d\" class=\"lbl\" "
                     "text-anchor=\"end\">%s</text>\n</svg></section>\n",
                     CH_PAD, CH_H + 18, first, CH_W, CH_H + 18, last);
}

static const char CSS[] =
    "body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}"
    "h1{font-size:20px}h2{font-size:16px;margin:18px 0 4px}small{color:#666;font-weight:normal}"
    "table{border-collapse:collapse;margin:8px 0 16px}td,th{padding:3px 10px;text-align:right;"
    "border-bottom:1px solid #ddd}td:first-child,th:first-child{text-align:left}"
    ".chart{background:#fff;border:1px solid #ddd}.bar{fill:#3b6fb6}.axis{stroke:#999}"
    ".lbl{font-size:11px;fill:#555}.empty{color:#666}";

/* A table of rows [from, to) summed per provider (rows are sorted by provider, then day). */
static void provider_table(tg_strbuf_t *o, const tg_report_t *r, size_t from, size_t to, const char *id) {
    char usd[32], saved[32];
    tg_strbuf_printf(o,
                     "<table id=\"%s\"><tr><th>provider</th><th>requests</th><th>input</th><th>cached "
                     "input</th><th>output</th><th>reasoning</th><th>USD</th><th>cache hits</th><th>saved "
                     "USD</th></tr>\n",
                     id);
    for (size_t i = from; i < to;) {
        size_t j = i;
        tg_report_sums_t s = {0};
        for (; j < to && strcmp(r->rows[j].name, r->rows[i].name) == 0; j++) {
            s.requests += r->rows[j].s.requests, s.input += r->rows[j].s.input,
                s.cached += r->rows[j].s.cached;
            s.output += r->rows[j].s.output, s.reasoning += r->rows[j].s.reasoning;
            s.cost_micro += r->rows[j].s.cost_micro;
            s.cache_hits += r->rows[j].s.cache_hits, s.saved_micro += r->rows[j].s.saved_micro;
        }
        tg_money_format(s.cost_micro, usd);
        tg_money_format(s.saved_micro, saved);
        tg_strbuf_printf(o, "<tr><td>");
        out_esc(o, r->rows[i].name);
        tg_strbuf_printf(o,
                         "</td><td>%" PRId64 "</td><td>%" PRId64 "</td><td>%" PRId64 "</td><td>%" PRId64
                         "</td><td>%" PRId64 "</td><td>%s</td><td>%" PRId64 "</td><td>%s</td></tr>\n",
                         s.requests, s.input, s.cached, s.output, s.reasoning, usd, s.cache_hits, saved);
        i = j;
    }
    tg_strbuf_printf(o, "</table>\n");
}

char *tg_admin_dashboard_html(const tg_report_t *r) {
    tg_strbuf_t o = {0};
    char first[11], last[11], usd[32];
    tg_report_day_text(r->from_day, first);
    tg_report_day_text(r->to_day, last);
    tg_strbuf_printf(
        &o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tollgate spend</title>"
        "<style>%s</style></head><body>\n",
        CSS);
    tg_money_format(r->total.cost_micro, usd);
    tg_strbuf_printf(
        &o,
        "<h1>Spend per provider per day</h1>\n<p id=\"range\">%s .. %s (UTC): <b id=\"total-usd\">$%s</b>, "
        "%" PRId64 " requests</p>\n",
        first, last, usd, r->total.requests);
    /* Real rows come first (tg_report_finish), the simulated ones after them. */
    size_t n_real = r->n - r->n_sim;
    provider_table(&o, r, 0, n_real, "totals");
    if (n_real == 0) tg_strbuf_printf(&o, "<p class=\"empty\">No spend recorded in this range.</p>\n");
    for (size_t i = 0; i < n_real;) {
        size_t j = i;
        int64_t total = 0;
        for (; j < n_real && strcmp(r->rows[j].name, r->rows[i].name) == 0; j++)
            total += r->rows[j].s.cost_micro;
        chart(&o, r, i, j, total);
        i = j;
    }
    if (r->n_sim) {
        tg_money_format(r->sim_total.cost_micro, usd);
        tg_strbuf_printf(&o,
                         "<section id=\"simulated\"><h2>Simulated (demo mode) <small>$%s, %" PRId64
                         " requests: made-up answers, not real spend, not in the total above</small></h2>\n",
                         usd, r->sim_total.requests);
        provider_table(&o, r, n_real, r->n, "simulated-totals");
        tg_strbuf_printf(&o, "</section>\n");
    }
    tg_strbuf_printf(
        &o,
        "<p class=\"lbl\">Figures from Redis (tg:usage:{day}, simulated ones from tg:usage-sim:{day}); the "
        "same as <code>tollgate report --by day</code>."
        "</p>\n</body></html>\n");
    if (o.oom) {
        free(o.p);
        return NULL;
    }
    return o.p;
}
