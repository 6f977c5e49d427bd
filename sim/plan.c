/* plan.c — from a request to its plan: the auth check, the x-sim-* knob
 * headers, injected faults (x-sim-status and the provider's fault rate),
 * reading the body (sim/count.c) and deciding the answer's token counts and
 * whether it calls a tool. Errors found on the way leave as a sim_err_t,
 * formatted in the dialect's shape by sim_fmt_error(). The plan is fixed
 * here, once; sim/pace.c then plays it out in time. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sim/simulate_int.h"

void sim_err_set(sim_err_t *e, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->status = status;
    e->type = NULL;
    e->code = NULL;
    e->retry_after = status == 429 ? 1 : -1;
}

/* Error body in the dialect's shape into b; the message is escaped here. */
void sim_fmt_error(sim_buf_t *b, int anthropic, const sim_err_t *e) {
    char msg[sizeof(e->msg) * 6 + 1];
    if (sim_json_esc(msg, sizeof(msg), e->msg)) snprintf(msg, sizeof(msg), "error");
    if (anthropic)
        sim_anthropic_error(b, e, msg);
    else
        sim_openai_error(b, e, msg);
}

static void injected_message(sim_err_t *e, int status, int anthropic) {
    if (status == 429)
        sim_err_set(e, status, "Rate limit reached (simulated). Please try again in 1s.");
    else if (status == 529)
        sim_err_set(e, status, "Overloaded");
    else if (status >= 500)
        sim_err_set(e, status,
                    anthropic ? "Internal server error (simulated)"
                              : "The server had an error while processing your request (simulated).");
    else
        sim_err_set(e, status, "Simulated error %d", status);
}

/* Chat, embeddings and Responses need `Authorization: Bearer <key>`;
 * Messages and count_tokens an x-api-key and an anthropic-version. */
int sim_check_auth(int kind, const sim_hdrs_t *hs, sim_err_t *e) {
    size_t len = 0;
    const char *v;
    if (SIM_ANTHROPIC(kind)) {
        v = sim_hdr(hs, "x-api-key", &len);
        if (v == NULL || len == 0) {
            sim_err_set(e, 401, "x-api-key header is required");
            return -1;
        }
        if (sim_hdr(hs, "anthropic-version", &len) == NULL || len == 0) {
            sim_err_set(e, 400, "anthropic-version: header is required");
            return -1;
        }
        return 0;
    }
    v = sim_hdr(hs, "authorization", &len);
    if (v == NULL || len <= 7 || strncasecmp(v, "Bearer ", 7) != 0) {
        sim_err_set(e, 401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
        return -1;
    }
    return 0;
}

/* An injected status for this request (the x-sim-status header first, then,
 * with use_rate, the provider's fault rate), or 0. */
int sim_injected_status(sim_req_t *q, const sim_hdrs_t *hs, int use_rate, sim_err_t *e) {
    sim_prov_t *pv = &q->sim->prov[q->prov];
    int64_t st = 0, ra = -1;
    int h = sim_hdr_int(hs, "x-sim-status", &st);
    if (h < 0 || sim_hdr_int(hs, "x-sim-retry-after", &ra) < 0) {
        sim_err_set(e, 400, "x-sim-status and x-sim-retry-after must be non-negative integers");
        return 400;
    }
    if (h == 0 && use_rate && pv->fault_status) {
        uint64_t n = pv->fault_seq++;
        if ((int)(n % 100) < pv->fault_percent) st = pv->fault_status;
    }
    if (st < 400 || st > 599) return 0;
    injected_message(e, (int)st, SIM_ANTHROPIC(q->rt.kind));
    if (ra >= 0)
        e->retry_after = ra;
    else if (pv->retry_after >= 0)
        e->retry_after = pv->retry_after;
    return (int)st;
}

/* "call tool NAME" in the user's text names the tool to call. */
static int tool_from_text(const char *text, char *name, size_t cap) {
    const char *m = text ? strstr(text, "call tool ") : NULL;
    if (m == NULL) return 0;
    m += 10;
    size_t n = 0;
    /* A trailing period ends the sentence, not the name. */
    while (n + 1 < cap && sim_name_ok(m + n, 1, 0) && m[n] != '.')
        n++;
    memcpy(name, m, n);
    name[n] = '\0';
    return n > 0;
}

static int knob_headers(sim_plan_t *p, const sim_hdrs_t *hs, sim_err_t *e) {
    static const char *const names[] = {
        "x-sim-output-tokens", "x-sim-cached-tokens", "x-sim-cache-write-tokens", "x-sim-reasoning-tokens",
        "x-sim-ttft-ms",       "x-sim-tps",           "x-sim-reset-after",        "x-sim-stall-after",
        "x-sim-error-after",   "x-sim-logprobs"};
    int64_t v[10];
    for (int i = 0; i < 10; i++) {
        v[i] = -1;
        if (sim_hdr_int(hs, names[i], &v[i]) < 0) {
            sim_err_set(e, 400, "%s must be a non-negative integer", names[i]);
            return -1;
        }
    }
    p->out = v[0] >= 0 ? sim_clamp(v[0], 0, SIM_MAX_TOKENS) : SIM_DEFAULT_TOKENS;
    p->cached = v[1] >= 0 ? sim_clamp(v[1], 0, p->prompt) : 0;
    p->cache_write = p->flavour == FL_ANTHROPIC && v[2] >= 0 ? sim_clamp(v[2], 0, p->prompt - p->cached) : 0;
    p->reasoning = v[3] >= 0 ? sim_clamp(v[3], 0, SIM_MAX_TOKENS) : 0;
    p->ttft_ms = v[4];
    p->tps = v[5];
    p->reset_after = v[6];
    p->stall_after = v[7];
    p->error_after = v[8];
    /* Chat answers only; a bound keeps one chunk's size sane. */
    p->logprobs = p->kind == RT_CHAT && v[9] > 0 ? sim_clamp(v[9], 0, SIM_MAX_LOGPROBS) : 0;
    p->usage_on_finish = sim_hdr_flag(hs, "x-sim-usage-on-finish");
    p->no_usage = sim_hdr_flag(hs, "x-sim-no-usage");
    return 0;
}

/* The tool to call: the request offers tools, answers no earlier call, and
 * names one in x-sim-tool-call or in the user's text. */
static void pick_tool(sim_plan_t *p, const sim_hdrs_t *hs, const sim_input_t *in) {
    if (!in->has_tools || in->answered) return;
    size_t hl = 0;
    const char *h = sim_hdr(hs, "x-sim-tool-call", &hl);
    if (h && hl > 0 && sim_name_ok(h, hl, 0)) {
        memcpy(p->tool_name, h, hl);
        p->tool_name[hl] = '\0';
        p->tool = 1;
    } else {
        p->tool = tool_from_text(in->user, p->tool_name, sizeof(p->tool_name));
    }
    if (p->tool) p->limited = 0;
}

static int read_body(const sim_plan_t *p, const char *body, size_t len, sim_input_t *in, sim_err_t *e) {
    char err[256];
    int rc = p->kind == RT_RESPONSES ? sim_read_responses(body, len, in, err, sizeof(err))
             : p->kind == RT_EMBED   ? sim_read_embeddings(body, len, in, err, sizeof(err))
                                     : sim_read_chat(body, len, in, err, sizeof(err));
    if (rc == 0) return 0;
    if (p->flavour == FL_ANTHROPIC)
        sim_err_set(e, 400, "There was an error parsing the body of your request: %s", err);
    else
        sim_err_set(e, 400, "We could not parse the JSON body of your request: %s", err);
    return -1;
}

static int plan_body(sim_req_t *q, const sim_hdrs_t *hs, sim_input_t *in, sim_err_t *e) {
    sim_plan_t *p = &q->p;
    int anth = p->flavour == FL_ANTHROPIC;
    if (in->model == NULL || in->model[0] == '\0') {
        sim_err_set(e, 400, anth ? "model: Field required" : "you must provide a model parameter");
        return -1;
    }
    if (strlen(in->model) > SIM_MODEL_MAX || sim_json_esc(p->model, sizeof(p->model), in->model)) {
        sim_err_set(e, 400, "model: at most %d bytes", SIM_MODEL_MAX);
        return -1;
    }
    if (anth && in->max_tokens < 0) {
        sim_err_set(e, 400, "max_tokens: Field required");
        return -1;
    }
    p->stream = in->stream && p->kind != RT_EMBED;
    p->include_usage = in->include_usage;
    p->prompt = in->prompt;
    p->dims = in->dims;
    p->b64 = in->b64;
    if (knob_headers(p, hs, e)) return -1;
    if (p->kind == RT_EMBED) {
        /* An embedding has no output, cache or reasoning to bill. */
        p->out = p->cached = p->reasoning = 0;
        return 0;
    }
    if (in->max_tokens >= 0 && in->max_tokens < p->out) {
        p->out = in->max_tokens;
        p->limited = 1;
    }
    pick_tool(p, hs, in);
    return 0;
}

/* Fixes the plan; 0, or -1 with the error to answer. */
int sim_plan_build(sim_req_t *q, const sim_hdrs_t *hs, const char *body, size_t len, sim_err_t *e) {
    tg_sim_t *s = q->sim;
    sim_plan_t *p = &q->p;
    memset(p, 0, offsetof(sim_plan_t, model));
    p->model[0] = p->tool_name[0] = '\0';
    p->kind = q->rt.kind;
    p->flavour = q->rt.kind == RT_MESSAGES ? FL_ANTHROPIC : sim_flavour_of(q->rt.prov);
    p->n = ++s->seq;
    p->created = (long long)time(NULL);
    if (sim_injected_status(q, hs, 1, e)) return -1;
    sim_input_t in;
    int rc = read_body(p, body, len, &in, e);
    if (rc == 0) rc = plan_body(q, hs, &in, e);
    /* Responses and embeddings answers echo parts of the request. */
    if (rc == 0 && (p->kind == RT_RESPONSES || p->kind == RT_EMBED))
        p->doc = in.doc;
    else
        json_decref(in.doc);
    if (rc) return -1;
    const sim_prov_t *pv = &s->prov[q->prov];
    if (p->ttft_ms < 0) p->ttft_ms = pv->ttft_ms >= 0 ? pv->ttft_ms : s->ttft_ms;
    if (p->tps < 0) p->tps = pv->tps >= 0 ? pv->tps : s->tps;
    return 0;
}

int64_t sim_completion_tokens(const sim_plan_t *p) {
    return p->reasoning + (p->tool ? SIM_TOOL_TOKENS : p->out);
}
