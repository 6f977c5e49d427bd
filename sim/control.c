/* control.c — the simulator's books: the per-provider table (knobs, fault
 * rates, counters), the ring of requests tracked by x-sim-id, and the /_sim
 * control API that reads and changes them (stats, requests/ID, reset,
 * config). A billed request enters the books once, in sim_finalize(), when
 * it ends; everything runs on the loop thread, so nothing is locked. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim/simulate_int.h"

static const char *const state_names[] = {"open", "completed", "cancelled", "reset", "error"};

void sim_prov_defaults(sim_prov_t *pv) {
    pv->ttft_ms = pv->tps = pv->retry_after = -1;
    pv->fault_status = pv->fault_percent = 0;
    pv->fault_seq = 0;
}

/* The provider's slot, created on first use; when the table is full every
 * new name shares the last slot, "_other", so stats never go missing. */
int sim_prov_get(tg_sim_t *s, const char *name) {
    for (int i = 0; i < s->nprov; i++)
        if (strcmp(s->prov[i].name, name) == 0) return i;
    if (s->nprov == SIM_MAX_PROV) return SIM_MAX_PROV - 1;
    int i = s->nprov++;
    sim_prov_t *pv = &s->prov[i];
    memset(pv, 0, sizeof(*pv));
    snprintf(pv->name, sizeof(pv->name), "%s", i == SIM_MAX_PROV - 1 ? "_other" : name);
    sim_prov_defaults(pv);
    return i;
}

void sim_track_open(sim_req_t *q, const char *id) {
    tg_sim_t *s = q->sim;
    size_t slot = s->trk_next++ % SIM_TRACK;
    sim_track_t *t = &s->track[slot];
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->gen = ++s->trk_gen;
    t->prov = q->prov;
    q->trk = (int)slot;
    q->trk_gen = t->gen;
}

void sim_track_sync(sim_req_t *q) {
    if (q->trk < 0) return;
    sim_track_t *t = &q->sim->track[q->trk];
    if (t->gen != q->trk_gen) return; /* overwritten by newer requests */
    t->state = q->state;
    t->status = q->status;
    t->chunks = q->chunks;
    t->prompt = q->planned ? q->p.prompt : 0;
    t->cached = q->planned ? q->p.cached : 0;
    t->completion = q->sent_completion;
    t->reasoning = q->sent_reasoning;
}

const sim_track_t *sim_track_find(const tg_sim_t *s, const char *id) {
    for (size_t k = 1; k <= SIM_TRACK && k <= s->trk_next; k++) {
        const sim_track_t *t = &s->track[(s->trk_next - k) % SIM_TRACK];
        if (t->gen && strcmp(t->id, id) == 0) return t;
    }
    return NULL;
}

static void counts_add(sim_counts_t *c, const sim_req_t *q) {
    switch (q->state) {
    case ST_COMPLETED:
        c->completed++;
        break;
    case ST_CANCELLED:
        c->cancelled++;
        break;
    case ST_RESET:
        c->reset++;
        break;
    case ST_ERROR:
        c->errors++;
        break;
    default:
        break;
    }
    if (q->planned) {
        c->prompt += q->p.prompt;
        c->cached += q->p.cached;
        c->completion += q->sent_completion;
        c->reasoning += q->sent_reasoning;
    }
}

/* Books a billed request's outcome, once, when it ends. */
void sim_finalize(sim_req_t *q) {
    if (q->finalized || !SIM_BILLED(q->rt.kind)) return;
    q->finalized = 1;
    tg_sim_t *s = q->sim;
    counts_add(&s->total, q);
    counts_add(&s->prov[q->prov].c, q);
    if (q->streaming) s->streams_open--;
    sim_track_sync(q);
}

static void fmt_counts(sim_buf_t *b, const sim_counts_t *c) {
    sim_printf(b,
               "\"requests\":%" PRId64 ",\"completed\":%" PRId64 ",\"cancelled\":%" PRId64
               ",\"reset\":%" PRId64 ",\"errors\":%" PRId64 ",\"prompt_tokens\":%" PRId64
               ",\"cached_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
               ",\"reasoning_tokens\":%" PRId64,
               c->requests, c->completed, c->cancelled, c->reset, c->errors, c->prompt, c->cached,
               c->completion, c->reasoning);
}

void sim_fmt_stats(sim_buf_t *b, const tg_sim_t *s) {
    sim_puts(b, "{");
    fmt_counts(b, &s->total);
    sim_printf(b, ",\"streams_open\":%" PRId64 ",\"providers\":{", s->streams_open);
    for (int i = 0; i < s->nprov; i++) {
        sim_printf(b, "%s\"%s\":{", i ? "," : "", s->prov[i].name);
        fmt_counts(b, &s->prov[i].c);
        sim_puts(b, "}");
    }
    sim_puts(b, "}}");
}

void sim_fmt_track(sim_buf_t *b, const tg_sim_t *s, const sim_track_t *t) {
    sim_printf(b,
               "{\"id\":\"%s\",\"provider\":\"%s\",\"state\":\"%s\",\"status\":%d,\"chunks_sent\":%" PRId64
               ",\"prompt_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
               ",\"reasoning_tokens\":%" PRId64 "}",
               t->id, s->prov[t->prov].name, state_names[t->state], t->status, t->chunks, t->prompt,
               t->cached, t->completion, t->reasoning);
}

void sim_reset(tg_sim_t *s, int all) {
    memset(&s->total, 0, sizeof(s->total));
    for (int i = 0; i < s->nprov; i++) {
        memset(&s->prov[i].c, 0, sizeof(s->prov[i].c));
        s->prov[i].fault_seq = 0;
        if (all) sim_prov_defaults(&s->prov[i]);
    }
    memset(s->track, 0, sizeof(*s->track) * SIM_TRACK);
    s->trk_next = 0;
}

/* One knob of /_sim/config: an integer within [lo, hi], or null for "inherit"
 * (-1) when nullable. 1 set, 0 absent, -1 bad. */
static int cfg_int(json_t *o, const char *key, int64_t lo, int64_t hi, int nullable, int64_t *out) {
    json_t *v = json_object_get(o, key);
    if (v == NULL) return 0;
    if (nullable && json_is_null(v)) {
        *out = -1;
        return 1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) return -1;
    *out = json_integer_value(v);
    return 1;
}

int sim_config_apply(tg_sim_t *s, const char *body, size_t len, sim_buf_t *out, sim_err_t *e) {
    static const char *const keys[] = {"provider",     "ttft_ms",       "tps",
                                       "fault_status", "fault_percent", "retry_after"};
    json_t *o = json_loadb(body, len, 0, NULL);
    json_t *pn = o ? json_object_get(o, "provider") : NULL;
    const char *name = json_is_string(pn) ? json_string_value(pn) : NULL;
    if (!json_is_object(o) || name == NULL || !sim_name_ok(name, strlen(name), 0)) {
        sim_err_set(e, 400,
                    "expected {\"provider\":NAME, \"ttft_ms\", \"tps\", \"fault_status\", \"fault_percent\", "
                    "\"retry_after\"}");
        json_decref(o);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i = 0;
        while (i < 6 && strcmp(k, keys[i]))
            i++;
        if (i == 6) {
            sim_err_set(e, 400, "unknown key '%s' in /_sim/config", k);
            json_decref(o);
            return -1;
        }
    }
    sim_prov_t *pv = &s->prov[sim_prov_get(s, name)];
    int64_t ttft = pv->ttft_ms, tps = pv->tps, ra = pv->retry_after, st = pv->fault_status, pct = -1;
    int bad = cfg_int(o, "ttft_ms", 0, 3600000, 1, &ttft) < 0 || cfg_int(o, "tps", 0, 1000000, 1, &tps) < 0 ||
              cfg_int(o, "retry_after", 0, 86400, 1, &ra) < 0 ||
              cfg_int(o, "fault_status", 0, 599, 0, &st) < 0 ||
              cfg_int(o, "fault_percent", 0, 100, 0, &pct) < 0 || (st != 0 && st < 400);
    json_decref(o);
    if (bad) {
        sim_err_set(e, 400,
                    "bad value in /_sim/config: ttft_ms, tps, retry_after >= 0 or null; fault_status 0 or "
                    "400-599; fault_percent 0-100");
        return -1;
    }
    pv->ttft_ms = ttft;
    pv->tps = tps;
    pv->retry_after = ra;
    if (pct >= 0)
        pv->fault_percent = (int)pct;
    else if (st != pv->fault_status)
        pv->fault_percent = st ? 100 : 0;
    pv->fault_status = (int)st;
    pv->fault_seq = 0;
    sim_printf(out, "{\"provider\":\"%s\",\"ttft_ms\":", pv->name);
    int64_t shown[3] = {pv->ttft_ms, pv->tps, pv->retry_after};
    const char *names[3] = {"ttft_ms", "tps", "retry_after"};
    for (int i = 0; i < 3; i++) {
        if (i) sim_printf(out, ",\"%s\":", names[i]);
        if (shown[i] < 0)
            sim_puts(out, "null");
        else
            sim_printf(out, "%" PRId64, shown[i]);
    }
    sim_printf(out, ",\"fault_status\":%d,\"fault_percent\":%d}", pv->fault_status, pv->fault_percent);
    return 0;
}
