/* metrics.c — counters and histograms for GET /metrics in Prometheus text
 * format. Request counts and latency buckets are relaxed atomics updated by
 * every worker; per provider/model usage sits in a small table behind a
 * mutex held for a few additions per finished request. */
#include "gateway/metrics.h"
#include "core/money.h"
#include "core/strbuf.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 12
static const int64_t bucket_us[NBUCKETS] = {500,    1000,   5000,    10000,   50000,   100000,
                                            250000, 500000, 1000000, 2500000, 5000000, 10000000};

typedef struct {
    _Atomic uint64_t count, sum_us, buckets[NBUCKETS];
} histo_t;

static _Atomic uint64_t requests_by_class[6]; /* 1xx..5xx, plus 499 in [0] */
static histo_t req_histo, ttfb_histo;

typedef struct usage_row_s {
    struct usage_row_s *next;
    char provider[64], model[128];
    uint64_t requests, input, cached, output, reasoning, estimated, cost_micro;
} usage_row_t;

typedef struct attempt_row_s {
    struct attempt_row_s *next;
    char provider[64], result[16];
    uint64_t n;
} attempt_row_t;

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static usage_row_t *usage_rows;
static attempt_row_t *attempt_rows;

static void histo_add(histo_t *h, int64_t us) {
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(us < 0 ? 0 : us), memory_order_relaxed);
    for (int i = 0; i < NBUCKETS; i++)
        if (us <= bucket_us[i]) {
            atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
            break;
        }
}

void tg_metrics_request(int status, int64_t duration_us) {
    int cls = status == 499 ? 0 : status / 100;
    if (cls < 0 || cls > 5) cls = 5;
    atomic_fetch_add_explicit(&requests_by_class[cls], 1, memory_order_relaxed);
    histo_add(&req_histo, duration_us);
}

void tg_metrics_ttfb(int64_t us) {
    histo_add(&ttfb_histo, us);
}

void tg_metrics_attempt(const char *provider, const char *result) {
    pthread_mutex_lock(&table_mu);
    attempt_row_t *r = attempt_rows;
    while (r && (strcmp(r->provider, provider) != 0 || strcmp(r->result, result) != 0))
        r = r->next;
    if (r == NULL && (r = calloc(1, sizeof(*r))) != NULL) {
        snprintf(r->provider, sizeof(r->provider), "%s", provider);
        snprintf(r->result, sizeof(r->result), "%s", result);
        r->next = attempt_rows;
        attempt_rows = r;
    }
    if (r) r->n++;
    pthread_mutex_unlock(&table_mu);
}

void tg_metrics_usage(const char *provider, const char *model, const tg_usage_t *u, int64_t cost_micro_usd) {
    pthread_mutex_lock(&table_mu);
    usage_row_t *r = usage_rows;
    while (r && (strcmp(r->provider, provider) != 0 || strcmp(r->model, model) != 0))
        r = r->next;
    if (r == NULL && (r = calloc(1, sizeof(*r))) != NULL) {
        snprintf(r->provider, sizeof(r->provider), "%s", provider);
        snprintf(r->model, sizeof(r->model), "%s", model);
        r->next = usage_rows;
        usage_rows = r;
    }
    if (r) {
        r->requests++;
        r->input += (uint64_t)u->input_tokens;
        r->cached += (uint64_t)u->cached_input_tokens;
        r->output += (uint64_t)u->output_tokens;
        r->reasoning += (uint64_t)u->reasoning_tokens;
        r->estimated += u->estimated ? 1 : 0;
        r->cost_micro += (uint64_t)cost_micro_usd;
    }
    pthread_mutex_unlock(&table_mu);
}

/* A label value in the text format's own escaping (not JSON's): backslash,
 * double quote and line feed take a backslash, every other byte is kept.
 * s itself when nothing needs it; else the escape in buf (cap >= 2 * the
 * longest row name + 1). Provider names are the operator's, but a model
 * name a pattern alias let through comes from the client. */
static const char *prom_label(const char *s, char *buf, size_t cap) {
    if (strpbrk(s, "\\\"\n") == NULL) return s;
    size_t o = 0;
    for (; *s && o + 3 <= cap; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n') buf[o++] = '\\';
        buf[o++] = *s == '\n' ? 'n' : *s;
    }
    buf[o] = '\0';
    return buf;
}

static void histo_render(tg_strbuf_t *o, const char *name, const char *help, histo_t *h) {
    tg_strbuf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        tg_strbuf_printf(o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)bucket_us[i] / 1e6, cum);
    }
    uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
    tg_strbuf_printf(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
                     count, name, (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6, name,
                     count);
}

char *tg_metrics_render(const char *extra, size_t *len) {
    tg_strbuf_t o = {0};
    char usd[TG_MONEY_TEXT_MAX];
    static const char *cls[] = {"499", "1xx", "2xx", "3xx", "4xx", "5xx"};
    tg_strbuf_printf(&o, "# HELP tollgate_requests_total Client requests by status class.\n"
                         "# TYPE tollgate_requests_total counter\n");
    for (int i = 0; i < 6; i++)
        tg_strbuf_printf(&o, "tollgate_requests_total{code=\"%s\"} %" PRIu64 "\n", cls[i],
                         atomic_load_explicit(&requests_by_class[i], memory_order_relaxed));
    histo_render(&o, "tollgate_request_duration_seconds", "Time from request start to its last byte.",
                 &req_histo);
    histo_render(&o, "tollgate_first_byte_seconds",
                 "Time from request start to the first byte sent to the client.", &ttfb_histo);
    char pb[2 * 64 + 1], mb[2 * 128 + 1];
    pthread_mutex_lock(&table_mu);
    tg_strbuf_printf(&o, "# HELP tollgate_upstream_attempts_total Upstream attempts by provider and result.\n"
                         "# TYPE tollgate_upstream_attempts_total counter\n");
    for (attempt_row_t *r = attempt_rows; r; r = r->next)
        tg_strbuf_printf(&o, "tollgate_upstream_attempts_total{provider=\"%s\",result=\"%s\"} %" PRIu64 "\n",
                         prom_label(r->provider, pb, sizeof(pb)), r->result, r->n);
    tg_strbuf_printf(&o, "# HELP tollgate_tokens_total Tokens by provider, model and kind.\n"
                         "# TYPE tollgate_tokens_total counter\n");
    for (usage_row_t *r = usage_rows; r; r = r->next) {
        const char *kinds[] = {"input", "cached_input", "output", "reasoning"};
        uint64_t v[] = {r->input, r->cached, r->output, r->reasoning};
        const char *pl = prom_label(r->provider, pb, sizeof(pb)), *ml = prom_label(r->model, mb, sizeof(mb));
        for (int k = 0; k < 4; k++)
            tg_strbuf_printf(&o,
                             "tollgate_tokens_total{provider=\"%s\",model=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
                             pl, ml, kinds[k], v[k]);
    }
    tg_strbuf_printf(&o, "# HELP tollgate_cost_usd_total Spend in USD by provider and model.\n"
                         "# TYPE tollgate_cost_usd_total counter\n");
    for (usage_row_t *r = usage_rows; r; r = r->next)
        tg_strbuf_printf(&o, "tollgate_cost_usd_total{provider=\"%s\",model=\"%s\"} %s\n",
                         prom_label(r->provider, pb, sizeof(pb)), prom_label(r->model, mb, sizeof(mb)),
                         tg_money_format((int64_t)r->cost_micro, usd));
    tg_strbuf_printf(
        &o, "# HELP tollgate_usage_estimated_total Requests whose usage was estimated (provider sent none).\n"
            "# TYPE tollgate_usage_estimated_total counter\n");
    for (usage_row_t *r = usage_rows; r; r = r->next)
        tg_strbuf_printf(&o, "tollgate_usage_estimated_total{provider=\"%s\",model=\"%s\"} %" PRIu64 "\n",
                         prom_label(r->provider, pb, sizeof(pb)), prom_label(r->model, mb, sizeof(mb)),
                         r->estimated);
    pthread_mutex_unlock(&table_mu);
    if (extra) tg_strbuf_printf(&o, "%s", extra);
    *len = o.len;
    return o.p;
}
