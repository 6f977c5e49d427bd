/* simulate.c — simulated LLM providers for offline use, tests and `make bench`:
 * the OpenAI Chat Completions dialect in three flavours (OpenAI, DeepSeek,
 * Qwen) and the Anthropic Messages dialect, served by our own HTTP/1.1 server
 * (gateway/http1.h) on one libevent loop. A request enters through the http1
 * callbacks, its body is read once with tg_scan_request(), a plan (token
 * counts, knobs, faults) is fixed, and the answer leaves as one JSON body or
 * as SSE events written one by one from a generator, paced by evtimers. The
 * simulator owns its stats, per-provider knobs and a ring of tracked request
 * ids; everything runs on the loop thread, so nothing is locked.
 *
 * Routes: POST /{provider}/v1/chat/completions (and POST /v1/chat/completions,
 * provider "openai"): flavour DeepSeek if the provider name contains
 * "deepseek", Qwen if it contains "qwen", else OpenAI. POST
 * /{provider}/v1/messages (and /v1/messages, provider "anthropic"):
 * Anthropic. GET /{provider}/v1/models: model list (Anthropic shape when the
 * name contains "anthropic" or "claude"). Provider names: [A-Za-z0-9._-]{1,63}.
 * Auth: chat needs `Authorization: Bearer <non-empty>`, messages need a
 * non-empty `x-api-key` and `anthropic-version`; else 401/400 in the dialect's
 * error shape. Malformed JSON, a missing model or messages, and (Anthropic) a
 * missing max_tokens get 400 in the dialect's shape.
 *
 * Deterministic counts:
 *   prompt_tokens = ceil(text_bytes / 4) + 4 * n_messages (from tg_scan_request).
 *   wanted = x-sim-output-tokens, else 16; output = min(wanted, max_tokens);
 *   finish "length" (Anthropic "max_tokens") when max_tokens cut it.
 *   Text: the words of `words[]` cycled, one word per token, joined by one
 *   space (token i > 0 is " word"); a stream sends one chunk per token.
 *   cached = x-sim-cached-tokens clamped to prompt. OpenAI/Qwen:
 *   prompt_tokens_details.cached_tokens; DeepSeek: prompt_cache_hit_tokens +
 *   prompt_cache_miss_tokens = prompt_tokens (no prompt_tokens_details);
 *   Anthropic: cache_read_input_tokens, plus cache_creation_input_tokens =
 *   x-sim-cache-write-tokens (clamped), and input_tokens = prompt minus both.
 *   reasoning R = x-sim-reasoning-tokens: DeepSeek/Qwen send R words of
 *   reasoning_content before the content; OpenAI keeps them hidden (counted
 *   only); Anthropic sends a thinking block (R thinking_delta + one
 *   signature_delta) before the text. completion_tokens = R + output and
 *   completion_tokens_details.reasoning_tokens = R (OpenAI always; DeepSeek and
 *   Qwen when R > 0). Anthropic output_tokens = R + output.
 *   Tool call: the request has tools, the body holds no tool result
 *   ("tool_call_id" / "tool_use_id" keys), and either header x-sim-tool-call:
 *   NAME or the user text contains "call tool NAME": the answer is one call to
 *   NAME with arguments {"city":"Paris"}, worth 4 tokens (name + 3 argument
 *   fragments), finish "tool_calls" / stop_reason "tool_use". Ids:
 *   chatcmpl-sim-N, msg_sim_N, call_sim_N, toolu_sim_N (N counts requests).
 * Streams (OpenAI): role chunk {"role":"assistant","content":""} (content null
 *   for a tool call), reasoning chunks, content / tool_calls chunks, a finish
 *   chunk (delta {}), then with stream_options.include_usage a usage chunk
 *   (choices []) and earlier chunks carry "usage":null; then data: [DONE].
 *   x-sim-usage-on-finish: 1 puts usage on the finish chunk instead (whether
 *   or not include_usage was asked); x-sim-no-usage: 1 sends no usage at all
 *   (non-stream and Anthropic too).
 * Streams (Anthropic): message_start (usage with input and cache counts,
 *   output_tokens 1), [thinking block], content_block_start, ping (after the
 *   first block start), content_block_delta text_delta / input_json_delta,
 *   content_block_stop, message_delta (stop_reason, usage.output_tokens),
 *   message_stop.
 * Knobs (header, else POST /_sim/config per provider, else --ttft-ms/--tps):
 *   x-sim-ttft-ms: delay before the response headers; x-sim-tps: tokens/s
 *   (0 = all at once); a non-stream answer waits ttft + tokens*1000/tps ms.
 * Faults: x-sim-status: CODE (>= 400) answers that status in the dialect's
 *   shape (529 is overloaded_error in Anthropic's); retry-after is
 *   x-sim-retry-after, else the provider's, else 1 on 429. --fault
 *   PROVIDER:STATUS[:PERCENT] (and /_sim/config) fail request n of that
 *   provider when n mod 100 < PERCENT (n counts from 0, so the first PERCENT
 *   of every hundred fail; default 100). x-sim-reset-after: K sends K SSE
 *   events then resets the connection (non-stream: reset with no answer);
 *   x-sim-stall-after: K sends K events then nothing until the client leaves
 *   (non-stream: never answers); x-sim-error-after: K sends K events then an
 *   in-stream error event (OpenAI data: {"error":...} without [DONE]; Anthropic
 *   event: error, overloaded_error). An "event" is one data: line (OpenAI,
 *   [DONE] included) or one event:+data: pair (Anthropic).
 * Accounting: GET /_sim/stats, GET /_sim/requests/ID (requests sent with
 *   x-sim-id: ID, [A-Za-z0-9._:-]{1,63}; last 4096 kept), POST /_sim/reset
 *   (stats and tracking; ?all=1 also runtime config), POST /_sim/config. A
 *   request that passed validation bills its prompt tokens plus the
 *   completion tokens actually sent (all of them for a finished answer, none
 *   for a non-stream answer abandoned before it was sent). States: open,
 *   completed, cancelled (client left first), reset (x-sim-reset-after),
 *   error (an error status, or x-sim-error-after). */
#include "sim/simulate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <netdb.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <jansson.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/scan.h"

#define SIM_MAX_PROV 64
#define SIM_TRACK 4096
#define SIM_FREE_MAX 1024
#define SIM_MAX_TOKENS 1000000
#define SIM_DEFAULT_TOKENS 16
#define SIM_TOOL_TOKENS 4
#define SIM_MODEL_MAX 256
#define SIM_NAME_MAX 63
#define SIM_DEFAULT_PORT 8090

enum { FL_OPENAI, FL_DEEPSEEK, FL_QWEN, FL_ANTHROPIC };
enum { ST_OPEN, ST_COMPLETED, ST_CANCELLED, ST_RESET, ST_ERROR };
enum { RT_NOTFOUND, RT_CHAT, RT_MESSAGES, RT_MODELS, RT_STATS, RT_RESET, RT_CONFIG, RT_TRACK };
/* Where a live request is: waiting on its first timer, streaming, stalled on
 * purpose, or waiting for its output to leave before a deliberate reset. */
enum { LV_IDLE, LV_WAIT, LV_STREAM, LV_STALLED, LV_RESET };

static const char *const state_names[] = {"open", "completed", "cancelled", "reset", "error"};

/* One word per token; no character here needs JSON escaping. */
static const char *const words[] = {"Hello", "from", "the",   "simulated", "provider,", "one",
                                    "word",  "per",  "token", "counted",   "exactly",   "so",
                                    "tests", "can",  "check", "usage."};
static const char *const thoughts[] = {"Let", "me", "think", "about", "this", "step", "by", "step."};
#define NWORDS (sizeof(words) / sizeof(words[0]))
#define NTHOUGHTS (sizeof(thoughts) / sizeof(thoughts[0]))
/* {"city":"Paris"} cut in three stream fragments, JSON-escaped. */
static const char *const tool_frags[] = {"{\\\"city\\\"", ":\\\"Par", "is\\\"}"};

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sim_buf_t;

typedef struct {
    int64_t requests, completed, cancelled, reset, errors;
    int64_t prompt, cached, completion, reasoning;
} sim_counts_t;

typedef struct {
    char name[SIM_NAME_MAX + 1];
    int64_t ttft_ms, tps, retry_after; /* -1: fall back to the defaults */
    int fault_status, fault_percent;
    uint64_t fault_seq;
    sim_counts_t c;
} sim_prov_t;

typedef struct {
    char id[SIM_NAME_MAX + 1];
    uint64_t gen; /* 0: empty slot */
    int prov, state, status;
    int64_t chunks, prompt, cached, completion, reasoning;
} sim_track_t;

typedef struct {
    int kind;
    char prov[SIM_NAME_MAX + 1];
    char id[SIM_NAME_MAX + 1];
    int all; /* ?all=1 on /_sim/reset */
} sim_route_t;

/* Everything the answer will be, fixed once the request is read. */
typedef struct {
    int flavour, stream, include_usage, usage_on_finish, no_usage, tool, limited;
    uint64_t n;
    long long created;
    int64_t prompt, cached, cache_write, out, reasoning;
    int64_t ttft_ms, tps, reset_after, stall_after, error_after;
    char model[SIM_MODEL_MAX * 6 + 1]; /* JSON-escaped */
    char tool_name[SIM_NAME_MAX + 1];
} sim_plan_t;

typedef struct {
    int ph, pinged, after_ping, errored;
    int64_t i, events;
} sim_gen_t;

typedef struct {
    tg_http_req_t *r; /* live request, or NULL with h/n when rendering */
    const tg_http_header_t *h;
    size_t n;
} sim_hdrs_t;

typedef struct {
    int status;
    const char *type, *code; /* code NULL: JSON null */
    int64_t retry_after;
    char msg[320];
} sim_err_t;

typedef struct sim_req_s {
    tg_sim_t *sim;
    tg_http_req_t *r;
    tg_sim_answer_t *ans; /* set when rendering */
    struct event timer;
    int timer_on, phase, state, status, planned, streaming, finalized;
    int busy, dead, wait_drain, reset_grace;
    int prov, trk;
    uint64_t trk_gen;
    int64_t chunks, sent_completion, sent_reasoning;
    sim_route_t rt;
    sim_plan_t p;
    sim_gen_t g;
    sim_buf_t buf;  /* the JSON body or the current SSE event */
    sim_buf_t rbuf; /* rendering: the whole stream */
    struct sim_req_s *next;
} sim_req_t;

struct tg_sim_s {
    struct event_base *base;
    tg_http_server_t *server;
    int64_t ttft_ms, tps;
    sim_prov_t prov[SIM_MAX_PROV];
    int nprov;
    sim_counts_t total;
    int64_t streams_open;
    uint64_t seq, trk_gen;
    size_t trk_next;
    sim_track_t *track;
    sim_req_t *free;
    size_t nfree;
};

/* ---------- output buffer ---------- */

static int sb_grow(sim_buf_t *b, size_t need) {
    if (b->oom) return -1;
    if (b->len + need + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sb_put(sim_buf_t *b, const char *s, size_t n) {
    if (sb_grow(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sim_buf_t *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_printf(sim_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sim_buf_t *b, const char *fmt, ...) {
    if (b->oom) return;
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n >= room) {
        if (sb_grow(b, (size_t)n)) return;
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static void sb_reset(sim_buf_t *b) {
    b->len = 0;
    b->oom = 0;
    if (b->p) b->p[0] = '\0';
}

/* ---------- small helpers ---------- */

static int name_ok(const char *s, size_t n, int colon) {
    if (n == 0 || n > SIM_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-' || (colon && c == ':')))
            return 0;
    }
    return 1;
}

static int flavour_of(const char *prov) {
    if (strstr(prov, "deepseek")) return FL_DEEPSEEK;
    if (strstr(prov, "qwen")) return FL_QWEN;
    return FL_OPENAI;
}

/* JSON string body of s into dst; -1 when it does not fit. */
static int json_esc(char *dst, size_t cap, const char *s) {
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (o + 7 > cap) return -1;
        if (*c == '"' || *c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)*c;
        } else if (*c < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", *c);
        } else {
            dst[o++] = (char)*c;
        }
    }
    dst[o] = '\0';
    return 0;
}

static const char *hdr_get(const sim_hdrs_t *hs, const char *name, size_t *len) {
    if (hs->r) return tg_http_header(hs->r, name, len);
    size_t nl = strlen(name);
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i].name_len == nl && strncasecmp(hs->h[i].name, name, nl) == 0) {
            *len = hs->h[i].value_len;
            return hs->h[i].value;
        }
    return NULL;
}

/* A header holding a non-negative integer: 1 found (in *v), 0 absent, -1 bad. */
static int hdr_int(const sim_hdrs_t *hs, const char *name, int64_t *v) {
    size_t len = 0;
    const char *s = hdr_get(hs, name, &len);
    if (s == NULL) return 0;
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 10) return -1;
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 1;
}

static int hdr_flag(const sim_hdrs_t *hs, const char *name) {
    int64_t v = 0;
    return hdr_int(hs, name, &v) == 1 && v != 0;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---------- providers and tracking ---------- */

static void prov_defaults(sim_prov_t *pv) {
    pv->ttft_ms = pv->tps = pv->retry_after = -1;
    pv->fault_status = pv->fault_percent = 0;
    pv->fault_seq = 0;
}

/* The provider's slot, created on first use; when the table is full every
 * new name shares the last slot, "_other", so stats never go missing. */
static int prov_get(tg_sim_t *s, const char *name) {
    for (int i = 0; i < s->nprov; i++)
        if (strcmp(s->prov[i].name, name) == 0) return i;
    if (s->nprov == SIM_MAX_PROV) return SIM_MAX_PROV - 1;
    int i = s->nprov++;
    sim_prov_t *pv = &s->prov[i];
    memset(pv, 0, sizeof(*pv));
    snprintf(pv->name, sizeof(pv->name), "%s", i == SIM_MAX_PROV - 1 ? "_other" : name);
    prov_defaults(pv);
    return i;
}

static void track_open(sim_req_t *q, const char *id) {
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

static void track_sync(sim_req_t *q) {
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

static const sim_track_t *track_find(const tg_sim_t *s, const char *id) {
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

/* Books a chat request's outcome, once, when it ends. */
static void finalize(sim_req_t *q) {
    if (q->finalized || (q->rt.kind != RT_CHAT && q->rt.kind != RT_MESSAGES)) return;
    q->finalized = 1;
    tg_sim_t *s = q->sim;
    counts_add(&s->total, q);
    counts_add(&s->prov[q->prov].c, q);
    if (q->streaming) s->streams_open--;
    track_sync(q);
}

/* ---------- requests ---------- */

static void on_timer(evutil_socket_t fd, short what, void *arg);

static sim_req_t *req_new(tg_sim_t *s) {
    sim_req_t *q = s->free;
    sim_buf_t buf = {0}, rbuf = {0};
    if (q) {
        s->free = q->next;
        s->nfree--;
        buf = q->buf;
        rbuf = q->rbuf;
    } else if ((q = malloc(sizeof(*q))) == NULL) {
        return NULL;
    }
    /* The plan is filled field by field later; only the head needs zeroing. */
    memset(q, 0, offsetof(sim_req_t, p));
    memset(&q->g, 0, sizeof(q->g));
    q->buf = buf;
    q->rbuf = rbuf;
    sb_reset(&q->buf);
    sb_reset(&q->rbuf);
    q->sim = s;
    q->trk = -1;
    q->status = 200;
    q->p.flavour = FL_OPENAI;
    q->p.model[0] = '\0';
    if (s->base) event_assign(&q->timer, s->base, -1, 0, on_timer, q);
    return q;
}

static void req_release(sim_req_t *q) {
    tg_sim_t *s = q->sim;
    if (q->timer_on) event_del(&q->timer);
    q->timer_on = 0;
    if (s->nfree >= SIM_FREE_MAX || q->buf.cap > 65536 || q->rbuf.cap > 65536) {
        free(q->buf.p);
        free(q->rbuf.p);
        free(q);
        return;
    }
    q->next = s->free;
    s->free = q;
    s->nfree++;
}

static void timer_in(sim_req_t *q, int64_t usec) {
    struct timeval tv = {(time_t)(usec / 1000000), (suseconds_t)(usec % 1000000)};
    q->timer_on = 1;
    event_add(&q->timer, &tv);
}

/* ---------- routing ---------- */

static int seg_is(const char *p, size_t n, const char *lit) {
    size_t l = strlen(lit);
    return n == l && memcmp(p, lit, l) == 0;
}

static void route_parse(const char *method, const char *path, size_t plen, const char *query, size_t qlen,
                        sim_route_t *rt) {
    memset(rt, 0, sizeof(*rt));
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (plen > 6 && memcmp(path, "/_sim/", 6) == 0) {
        const char *p = path + 6;
        size_t n = plen - 6;
        if (get && seg_is(p, n, "stats"))
            rt->kind = RT_STATS;
        else if (post && seg_is(p, n, "reset"))
            rt->kind = RT_RESET;
        else if (post && seg_is(p, n, "config"))
            rt->kind = RT_CONFIG;
        else if (get && n > 9 && memcmp(p, "requests/", 9) == 0 && name_ok(p + 9, n - 9, 1)) {
            rt->kind = RT_TRACK;
            memcpy(rt->id, p + 9, n - 9);
        }
        rt->all = rt->kind == RT_RESET && query && seg_is(query, qlen, "all=1");
        return;
    }
    const char *rest = path;
    size_t rlen = plen;
    if (!(plen >= 4 && memcmp(path, "/v1/", 4) == 0)) {
        const char *slash = plen > 1 ? memchr(path + 1, '/', plen - 1) : NULL;
        if (path[0] != '/' || slash == NULL || !name_ok(path + 1, (size_t)(slash - path - 1), 0)) return;
        memcpy(rt->prov, path + 1, (size_t)(slash - path - 1));
        rest = slash;
        rlen = plen - (size_t)(slash - path);
    }
    if (post && seg_is(rest, rlen, "/v1/chat/completions"))
        rt->kind = RT_CHAT;
    else if (post && seg_is(rest, rlen, "/v1/messages"))
        rt->kind = RT_MESSAGES;
    else if (get && seg_is(rest, rlen, "/v1/models"))
        rt->kind = RT_MODELS;
    if (rt->prov[0] == '\0')
        snprintf(rt->prov, sizeof(rt->prov), "%s", rt->kind == RT_MESSAGES ? "anthropic" : "openai");
}

/* ---------- errors ---------- */

static void err_set(sim_err_t *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void err_set(sim_err_t *e, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->status = status;
    e->type = NULL;
    e->code = NULL;
    e->retry_after = status == 429 ? 1 : -1;
}

static const char *anthropic_type(int status) {
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static void openai_type(int status, const char **type, const char **code) {
    *code = NULL;
    if (status == 429) {
        *type = "requests";
        *code = "rate_limit_exceeded";
    } else if (status == 401) {
        *type = "invalid_request_error";
        *code = "invalid_api_key";
    } else if (status >= 500) {
        *type = "server_error";
    } else {
        *type = "invalid_request_error";
    }
}

/* Error body in the dialect's shape into b. The message is already JSON-safe
 * text, escaped here once. */
static void fmt_error(sim_buf_t *b, int anthropic, const sim_err_t *e) {
    char msg[sizeof(e->msg) * 6 + 1];
    if (json_esc(msg, sizeof(msg), e->msg)) snprintf(msg, sizeof(msg), "error");
    if (anthropic) {
        sb_printf(b, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}",
                  e->type ? e->type : anthropic_type(e->status), msg);
        return;
    }
    const char *type, *code;
    openai_type(e->status, &type, &code);
    if (e->type) type = e->type;
    if (e->code) code = e->code;
    sb_printf(b, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":", msg, type);
    if (code)
        sb_printf(b, "\"%s\"}}", code);
    else
        sb_puts(b, "null}}");
}

static void injected_message(sim_err_t *e, int status, int anthropic) {
    if (status == 429)
        err_set(e, status, "Rate limit reached (simulated). Please try again in 1s.");
    else if (status == 529)
        err_set(e, status, "Overloaded");
    else if (status >= 500)
        err_set(e, status,
                anthropic ? "Internal server error (simulated)"
                          : "The server had an error while processing your request (simulated).");
    else
        err_set(e, status, "Simulated error %d", status);
}

/* ---------- the plan ---------- */

/* "call tool NAME" in the user's text names the tool to call. */
static int tool_from_text(const char *text, char *name, size_t cap) {
    const char *m = text ? strstr(text, "call tool ") : NULL;
    if (m == NULL) return 0;
    m += 10;
    size_t n = 0;
    while (n + 1 < cap && name_ok(m + n, 1, 0) && m[n] != '.')
        n++;
    /* A trailing period ends the sentence, not the name. */
    memcpy(name, m, n);
    name[n] = '\0';
    return n > 0;
}

static int knob_headers(sim_plan_t *p, const sim_hdrs_t *hs, sim_err_t *e) {
    static const char *const names[] = {
        "x-sim-output-tokens",    "x-sim-cached-tokens", "x-sim-cache-write-tokens",
        "x-sim-reasoning-tokens", "x-sim-ttft-ms",       "x-sim-tps",
        "x-sim-reset-after",      "x-sim-stall-after",   "x-sim-error-after"};
    int64_t v[9];
    for (int i = 0; i < 9; i++) {
        v[i] = -1;
        if (hdr_int(hs, names[i], &v[i]) < 0) {
            err_set(e, 400, "%s must be a non-negative integer", names[i]);
            return -1;
        }
    }
    int64_t want = v[0] >= 0 ? clamp64(v[0], 0, SIM_MAX_TOKENS) : SIM_DEFAULT_TOKENS;
    p->out = want;
    p->cached = v[1] >= 0 ? clamp64(v[1], 0, p->prompt) : 0;
    p->cache_write = p->flavour == FL_ANTHROPIC && v[2] >= 0 ? clamp64(v[2], 0, p->prompt - p->cached) : 0;
    p->reasoning = v[3] >= 0 ? clamp64(v[3], 0, SIM_MAX_TOKENS) : 0;
    p->ttft_ms = v[4];
    p->tps = v[5];
    p->reset_after = v[6];
    p->stall_after = v[7];
    p->error_after = v[8];
    p->usage_on_finish = hdr_flag(hs, "x-sim-usage-on-finish");
    p->no_usage = hdr_flag(hs, "x-sim-no-usage");
    return 0;
}

/* An injected status for this request (header first, then the provider's
 * fault rate), or 0. */
static int injected_status(sim_req_t *q, const sim_hdrs_t *hs, sim_err_t *e) {
    sim_prov_t *pv = &q->sim->prov[q->prov];
    int64_t st = 0, ra = -1;
    int h = hdr_int(hs, "x-sim-status", &st);
    if (h < 0 || hdr_int(hs, "x-sim-retry-after", &ra) < 0) {
        err_set(e, 400, "x-sim-status and x-sim-retry-after must be non-negative integers");
        return 400;
    }
    if (h == 0 && pv->fault_status) {
        uint64_t n = pv->fault_seq++;
        if ((int)(n % 100) < pv->fault_percent) st = pv->fault_status;
    }
    if (st < 400 || st > 599) return 0;
    injected_message(e, (int)st, q->rt.kind == RT_MESSAGES);
    if (ra >= 0)
        e->retry_after = ra;
    else if (pv->retry_after >= 0)
        e->retry_after = pv->retry_after;
    return (int)st;
}

static int plan_body(sim_req_t *q, const sim_hdrs_t *hs, const char *body, size_t len, tg_scan_req_t *sc,
                     tg_pool_t *pool, sim_err_t *e) {
    sim_plan_t *p = &q->p;
    int anth = p->flavour == FL_ANTHROPIC;
    char err[256];
    if (tg_scan_request(body, len, pool, sc, err, sizeof(err)) != 0) {
        if (anth)
            err_set(e, 400, "There was an error parsing the body of your request: %s", err);
        else
            err_set(e, 400, "We could not parse the JSON body of your request: %s", err);
        return -1;
    }
    if (!sc->has_model || sc->model_str == NULL || sc->model_str[0] == '\0') {
        err_set(e, 400, anth ? "model: Field required" : "you must provide a model parameter");
        return -1;
    }
    if (strlen(sc->model_str) > SIM_MODEL_MAX || json_esc(p->model, sizeof(p->model), sc->model_str)) {
        err_set(e, 400, "model: at most %d bytes", SIM_MODEL_MAX);
        return -1;
    }
    if (sc->n_messages == 0) {
        err_set(e, 400, anth ? "messages: Field required" : "'messages' must contain at least one message");
        return -1;
    }
    if (anth && sc->max_tokens < 0) {
        err_set(e, 400, "max_tokens: Field required");
        return -1;
    }
    p->stream = sc->stream;
    p->include_usage = sc->include_usage;
    p->prompt = (int64_t)((sc->text_bytes + 3) / 4 + 4 * sc->n_messages);
    if (knob_headers(p, hs, e)) return -1;
    if (sc->max_tokens >= 0 && sc->max_tokens < p->out) {
        p->out = sc->max_tokens;
        p->limited = 1;
    }
    int answered = memmem(body, len, "\"tool_call_id\"", 14) || memmem(body, len, "\"tool_use_id\"", 13);
    if (sc->has_tools && !answered) {
        size_t hl = 0;
        const char *h = hdr_get(hs, "x-sim-tool-call", &hl);
        if (h && hl > 0 && name_ok(h, hl, 0)) {
            memcpy(p->tool_name, h, hl);
            p->tool_name[hl] = '\0';
            p->tool = 1;
        } else {
            p->tool = tool_from_text(sc->user_text, p->tool_name, sizeof(p->tool_name));
        }
    }
    if (p->tool) p->limited = 0;
    return 0;
}

/* Fixes the plan; 0, or -1 with the error to answer. */
static int plan_build(sim_req_t *q, const sim_hdrs_t *hs, const char *body, size_t len, sim_err_t *e) {
    tg_sim_t *s = q->sim;
    sim_plan_t *p = &q->p;
    memset(p, 0, offsetof(sim_plan_t, model));
    p->model[0] = p->tool_name[0] = '\0';
    p->flavour = q->rt.kind == RT_MESSAGES ? FL_ANTHROPIC : flavour_of(q->rt.prov);
    p->n = ++s->seq;
    p->created = (long long)time(NULL);
    if (injected_status(q, hs, e)) return -1;
    tg_pool_t *pool = tg_pool_create(4096 + len / 4);
    if (pool == NULL) {
        err_set(e, 500, "out of memory");
        return -1;
    }
    tg_scan_req_t sc;
    int rc = plan_body(q, hs, body, len, &sc, pool, e);
    tg_pool_destroy(pool);
    if (rc) return -1;
    const sim_prov_t *pv = &s->prov[q->prov];
    if (p->ttft_ms < 0) p->ttft_ms = pv->ttft_ms >= 0 ? pv->ttft_ms : s->ttft_ms;
    if (p->tps < 0) p->tps = pv->tps >= 0 ? pv->tps : s->tps;
    return 0;
}

static int64_t visible_reasoning(const sim_plan_t *p) {
    return p->flavour == FL_OPENAI ? 0 : p->reasoning;
}

static int64_t completion_tokens(const sim_plan_t *p) {
    return p->reasoning + (p->tool ? SIM_TOOL_TOKENS : p->out);
}

/* ---------- formatting: usage and whole answers ---------- */

static void fmt_usage_openai(sim_buf_t *b, const sim_plan_t *p) {
    int64_t c = completion_tokens(p), r = p->reasoning;
    sb_printf(b, "{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64,
              p->prompt, c, p->prompt + c);
    if (p->flavour == FL_DEEPSEEK)
        sb_printf(b, ",\"prompt_cache_hit_tokens\":%" PRId64 ",\"prompt_cache_miss_tokens\":%" PRId64,
                  p->cached, p->prompt - p->cached);
    else if (p->flavour == FL_QWEN)
        sb_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRId64 "}", p->cached);
    else
        sb_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRId64 ",\"audio_tokens\":0}",
                  p->cached);
    if (p->flavour == FL_OPENAI)
        sb_printf(b,
                  ",\"completion_tokens_details\":{\"reasoning_tokens\":%" PRId64 ",\"audio_tokens\":0,"
                  "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
                  r);
    else if (r > 0)
        sb_printf(b, ",\"completion_tokens_details\":{\"reasoning_tokens\":%" PRId64 "}}", r);
    else
        sb_puts(b, "}");
}

static void fmt_usage_anthropic(sim_buf_t *b, const sim_plan_t *p, int64_t output) {
    sb_printf(b,
              "{\"input_tokens\":%" PRId64 ",\"cache_creation_input_tokens\":%" PRId64
              ",\"cache_read_input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64,
              p->prompt - p->cached - p->cache_write, p->cache_write, p->cached, output);
}

static void put_words(sim_buf_t *b, const char *const *list, size_t nlist, int64_t n) {
    for (int64_t i = 0; i < n && !b->oom; i++) {
        if (i) sb_put(b, " ", 1);
        sb_puts(b, list[i % (int64_t)nlist]);
    }
}

static const char *finish_reason(const sim_plan_t *p) {
    return p->tool ? "tool_calls" : p->limited ? "length" : "stop";
}

static const char *stop_reason(const sim_plan_t *p) {
    return p->tool ? "tool_use" : p->limited ? "max_tokens" : "end_turn";
}

static void fmt_whole_openai(sim_buf_t *b, const sim_plan_t *p) {
    sb_printf(b,
              "{\"id\":\"chatcmpl-sim-%" PRIu64
              "\",\"object\":\"chat.completion\",\"created\":%lld,\"model\":\"%s\","
              "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
              p->n, p->created, p->model);
    if (p->tool)
        sb_puts(b, "null");
    else {
        sb_puts(b, "\"");
        put_words(b, words, NWORDS, p->out);
        sb_puts(b, "\"");
    }
    if (visible_reasoning(p) > 0) {
        sb_puts(b, ",\"reasoning_content\":\"");
        put_words(b, thoughts, NTHOUGHTS, p->reasoning);
        sb_puts(b, "\"");
    }
    if (p->tool)
        sb_printf(b,
                  ",\"tool_calls\":[{\"id\":\"call_sim_%" PRIu64 "\",\"type\":\"function\",\"function\":"
                  "{\"name\":\"%s\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]",
                  p->n, p->tool_name);
    if (p->flavour == FL_OPENAI) sb_puts(b, ",\"refusal\":null,\"annotations\":[]");
    sb_printf(b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}]", finish_reason(p));
    if (!p->no_usage) {
        sb_puts(b, ",\"usage\":");
        fmt_usage_openai(b, p);
    }
    if (p->flavour == FL_OPENAI)
        sb_puts(b, ",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_sim\"");
    sb_puts(b, "}");
}

static void fmt_whole_anthropic(sim_buf_t *b, const sim_plan_t *p) {
    sb_printf(b,
              "{\"id\":\"msg_sim_%" PRIu64
              "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\",\"content\":[",
              p->n, p->model);
    if (p->reasoning > 0) {
        sb_puts(b, "{\"type\":\"thinking\",\"thinking\":\"");
        put_words(b, thoughts, NTHOUGHTS, p->reasoning);
        sb_puts(b, "\",\"signature\":\"c2ltdWxhdGVk\"},");
    }
    if (p->tool)
        sb_printf(b,
                  "{\"type\":\"tool_use\",\"id\":\"toolu_sim_%" PRIu64
                  "\",\"name\":\"%s\",\"input\":{\"city\":\"Paris\"}}",
                  p->n, p->tool_name);
    else {
        sb_puts(b, "{\"type\":\"text\",\"text\":\"");
        put_words(b, words, NWORDS, p->out);
        sb_puts(b, "\"}");
    }
    sb_printf(b, "],\"stop_reason\":\"%s\",\"stop_sequence\":null", stop_reason(p));
    if (!p->no_usage) {
        sb_puts(b, ",\"usage\":");
        fmt_usage_anthropic(b, p, completion_tokens(p));
        sb_puts(b, ",\"service_tier\":\"standard\"}");
    }
    sb_puts(b, "}");
}

/* ---------- the stream generator: one SSE event per call ---------- */

enum { G_ROLE, G_REASON, G_BODY, G_FINISH, G_USAGE, G_DONE, G_END };
enum {
    A_MSTART,
    A_THINK_START,
    A_THINK,
    A_SIG,
    A_THINK_STOP,
    A_BLOCK_START,
    A_BODY,
    A_BLOCK_STOP,
    A_MDELTA,
    A_MSTOP,
    A_PING,
    A_END
};

/* usage: 0 no usage member, 1 "usage":null, 2 the full usage. delta NULL:
 * the usage-only chunk with "choices":[]. */
static void oa_chunk(sim_buf_t *b, const sim_plan_t *p, const char *delta, const char *finish, int usage) {
    sb_printf(b,
              "data: {\"id\":\"chatcmpl-sim-%" PRIu64
              "\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
              "\"model\":\"%s\",",
              p->n, p->created, p->model);
    if (p->flavour == FL_OPENAI) sb_puts(b, "\"system_fingerprint\":\"fp_sim\",");
    if (delta == NULL)
        sb_puts(b, "\"choices\":[]");
    else if (finish)
        sb_printf(b, "\"choices\":[{\"index\":0,\"delta\":%s,\"logprobs\":null,\"finish_reason\":\"%s\"}]",
                  delta, finish);
    else
        sb_printf(b, "\"choices\":[{\"index\":0,\"delta\":%s,\"logprobs\":null,\"finish_reason\":null}]",
                  delta);
    if (usage == 1)
        sb_puts(b, ",\"usage\":null");
    else if (usage == 2) {
        sb_puts(b, ",\"usage\":");
        fmt_usage_openai(b, p);
    }
    sb_puts(b, "}\n\n");
}

static int gen_openai(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok) {
    int unull = p->include_usage && !p->usage_on_finish && !p->no_usage;
    char d[512];
    for (;;)
        switch (g->ph) {
        case G_ROLE:
            g->ph = G_REASON;
            *rtok = p->flavour == FL_OPENAI ? (int)p->reasoning : 0; /* hidden reasoning happens first */
            oa_chunk(b, p,
                     p->tool ? "{\"role\":\"assistant\",\"content\":null}"
                             : "{\"role\":\"assistant\",\"content\":\"\"}",
                     NULL, unull);
            return 1;
        case G_REASON:
            if (g->i < visible_reasoning(p)) {
                snprintf(d, sizeof(d), "{\"content\":null,\"reasoning_content\":\"%s%s\"}", g->i ? " " : "",
                         thoughts[g->i % (int64_t)NTHOUGHTS]);
                g->i++;
                *rtok = 1;
                oa_chunk(b, p, d, NULL, unull);
                return 1;
            }
            g->ph = G_BODY;
            g->i = 0;
            continue;
        case G_BODY:
            if (p->tool && g->i == 0)
                snprintf(d, sizeof(d),
                         "{\"tool_calls\":[{\"index\":0,\"id\":\"call_sim_%" PRIu64
                         "\",\"type\":\"function\","
                         "\"function\":{\"name\":\"%s\",\"arguments\":\"\"}}]}",
                         p->n, p->tool_name);
            else if (p->tool && g->i < SIM_TOOL_TOKENS)
                snprintf(d, sizeof(d), "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"%s\"}}]}",
                         tool_frags[g->i - 1]);
            else if (!p->tool && g->i < p->out)
                snprintf(d, sizeof(d), "{\"content\":\"%s%s\"}", g->i ? " " : "",
                         words[g->i % (int64_t)NWORDS]);
            else {
                g->ph = G_FINISH;
                continue;
            }
            g->i++;
            *tok = 1;
            oa_chunk(b, p, d, NULL, unull);
            return 1;
        case G_FINISH:
            g->ph = G_USAGE;
            oa_chunk(b, p, "{}", finish_reason(p), p->no_usage ? 0 : p->usage_on_finish ? 2 : unull);
            return 1;
        case G_USAGE:
            g->ph = G_DONE;
            if (!unull) continue;
            oa_chunk(b, p, NULL, NULL, 2);
            return 1;
        case G_DONE:
            g->ph = G_END;
            sb_puts(b, "data: [DONE]\n\n");
            return 1;
        default:
            return 0;
        }
}

static void an_event(sim_buf_t *b, const char *name) {
    sb_printf(b, "event: %s\ndata: ", name);
}

static void an_block_start(sim_buf_t *b, sim_gen_t *g, int index, const char *block, int next) {
    an_event(b, "content_block_start");
    sb_printf(b, "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":%s}\n\n", index, block);
    g->ph = g->pinged ? next : A_PING;
    g->after_ping = next;
    g->pinged = 1;
}

static void an_delta(sim_buf_t *b, int index, const char *delta) {
    an_event(b, "content_block_delta");
    sb_printf(b, "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":%s}\n\n", index, delta);
}

static void an_block_stop(sim_buf_t *b, int index) {
    an_event(b, "content_block_stop");
    sb_printf(b, "{\"type\":\"content_block_stop\",\"index\":%d}\n\n", index);
}

static int gen_anthropic(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok) {
    int bi = p->reasoning > 0; /* index of the text / tool_use block */
    char d[512];
    switch (g->ph) {
    case A_MSTART:
        an_event(b, "message_start");
        sb_printf(b,
                  "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_sim_%" PRIu64
                  "\",\"type\":\"message\","
                  "\"role\":\"assistant\",\"model\":\"%s\",\"content\":[],\"stop_reason\":null,\"stop_"
                  "sequence\":null",
                  p->n, p->model);
        if (!p->no_usage) {
            sb_puts(b, ",\"usage\":");
            fmt_usage_anthropic(b, p, 1);
            sb_puts(b, "}");
        }
        sb_puts(b, "}}\n\n");
        g->ph = p->reasoning > 0 ? A_THINK_START : A_BLOCK_START;
        return 1;
    case A_THINK_START:
        an_block_start(b, g, 0, "{\"type\":\"thinking\",\"thinking\":\"\"}", A_THINK);
        return 1;
    case A_PING:
        sb_puts(b, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
        g->ph = g->after_ping;
        return 1;
    case A_THINK:
        snprintf(d, sizeof(d), "{\"type\":\"thinking_delta\",\"thinking\":\"%s%s\"}", g->i ? " " : "",
                 thoughts[g->i % (int64_t)NTHOUGHTS]);
        an_delta(b, 0, d);
        *rtok = 1;
        if (++g->i >= p->reasoning) g->ph = A_SIG;
        return 1;
    case A_SIG:
        an_delta(b, 0, "{\"type\":\"signature_delta\",\"signature\":\"c2ltdWxhdGVk\"}");
        g->ph = A_THINK_STOP;
        return 1;
    case A_THINK_STOP:
        an_block_stop(b, 0);
        g->ph = A_BLOCK_START;
        return 1;
    case A_BLOCK_START:
        g->i = 0;
        if (p->tool) {
            snprintf(d, sizeof(d),
                     "{\"type\":\"tool_use\",\"id\":\"toolu_sim_%" PRIu64 "\",\"name\":\"%s\",\"input\":{}}",
                     p->n, p->tool_name);
            *tok = 1;
            g->i = 1;
        } else {
            snprintf(d, sizeof(d), "{\"type\":\"text\",\"text\":\"\"}");
        }
        an_block_start(b, g, bi, d, A_BODY);
        return 1;
    case A_BODY:
        if (p->tool && g->i < SIM_TOOL_TOKENS)
            snprintf(d, sizeof(d), "{\"type\":\"input_json_delta\",\"partial_json\":\"%s\"}",
                     tool_frags[g->i - 1]);
        else if (!p->tool && g->i < p->out)
            snprintf(d, sizeof(d), "{\"type\":\"text_delta\",\"text\":\"%s%s\"}", g->i ? " " : "",
                     words[g->i % (int64_t)NWORDS]);
        else {
            an_block_stop(b, bi);
            g->ph = A_MDELTA;
            return 1;
        }
        g->i++;
        *tok = 1;
        an_delta(b, bi, d);
        return 1;
    case A_MDELTA:
        an_event(b, "message_delta");
        sb_printf(b, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":null}",
                  stop_reason(p));
        if (!p->no_usage) sb_printf(b, ",\"usage\":{\"output_tokens\":%" PRId64 "}", completion_tokens(p));
        sb_puts(b, "}\n\n");
        g->ph = A_MSTOP;
        return 1;
    case A_MSTOP:
        sb_puts(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        g->ph = A_END;
        return 1;
    default:
        return 0;
    }
}

/* Next SSE event into b (emptied first). Returns 1 with the tokens it
 * carries in *tok / *rtok, or 0 when the stream is over. */
static int gen_next(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok) {
    *tok = *rtok = 0;
    sb_reset(b);
    if (g->errored) return 0;
    if (p->error_after >= 0 && g->events == p->error_after) {
        g->errored = 1;
        g->events++;
        if (p->flavour == FL_ANTHROPIC)
            sb_puts(b, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                       "\"message\":\"Overloaded\"}}\n\n");
        else
            sb_printf(b,
                      "data: {\"error\":{\"message\":\"The server had an error while processing your request "
                      "(simulated, after %" PRId64
                      " events).\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
                      p->error_after);
        return 1;
    }
    int more =
        p->flavour == FL_ANTHROPIC ? gen_anthropic(p, g, b, tok, rtok) : gen_openai(p, g, b, tok, rtok);
    if (more) g->events++;
    return more;
}

/* ---------- control endpoints ---------- */

static void fmt_counts(sim_buf_t *b, const sim_counts_t *c) {
    sb_printf(b,
              "\"requests\":%" PRId64 ",\"completed\":%" PRId64 ",\"cancelled\":%" PRId64
              ",\"reset\":%" PRId64 ",\"errors\":%" PRId64 ",\"prompt_tokens\":%" PRId64
              ",\"cached_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
              ",\"reasoning_tokens\":%" PRId64,
              c->requests, c->completed, c->cancelled, c->reset, c->errors, c->prompt, c->cached,
              c->completion, c->reasoning);
}

static void fmt_stats(sim_buf_t *b, const tg_sim_t *s) {
    sb_puts(b, "{");
    fmt_counts(b, &s->total);
    sb_printf(b, ",\"streams_open\":%" PRId64 ",\"providers\":{", s->streams_open);
    for (int i = 0; i < s->nprov; i++) {
        sb_printf(b, "%s\"%s\":{", i ? "," : "", s->prov[i].name);
        fmt_counts(b, &s->prov[i].c);
        sb_puts(b, "}");
    }
    sb_puts(b, "}}");
}

static void fmt_track(sim_buf_t *b, const tg_sim_t *s, const sim_track_t *t) {
    sb_printf(b,
              "{\"id\":\"%s\",\"provider\":\"%s\",\"state\":\"%s\",\"status\":%d,\"chunks_sent\":%" PRId64
              ",\"prompt_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
              ",\"reasoning_tokens\":%" PRId64 "}",
              t->id, s->prov[t->prov].name, state_names[t->state], t->status, t->chunks, t->prompt, t->cached,
              t->completion, t->reasoning);
}

static void fmt_models(sim_buf_t *b, const char *prov) {
    static const char *const oa[] = {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", NULL};
    static const char *const ds[] = {"deepseek-flash", "deepseek-v4-pro", NULL};
    static const char *const qw[] = {"qwen-plus", "qwen-max", "qwen-turbo", "qwen-flash", NULL};
    static const char *const an[] = {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", NULL};
    if (strstr(prov, "anthropic") || strstr(prov, "claude")) {
        sb_puts(b, "{\"data\":[");
        for (int i = 0; an[i]; i++)
            sb_printf(b,
                      "%s{\"type\":\"model\",\"id\":\"%s\",\"display_name\":\"%s\",\"created_at\":\"2025-10-"
                      "01T00:00:00Z\"}",
                      i ? "," : "", an[i], an[i]);
        sb_printf(b, "],\"has_more\":false,\"first_id\":\"%s\",\"last_id\":\"%s\"}", an[0], an[2]);
        return;
    }
    int fl = flavour_of(prov);
    const char *const *list = fl == FL_DEEPSEEK ? ds : fl == FL_QWEN ? qw : oa;
    const char *owner = fl == FL_DEEPSEEK ? "deepseek" : fl == FL_QWEN ? "system" : "openai";
    sb_puts(b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; list[i]; i++)
        sb_printf(b, "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":1735689600,\"owned_by\":\"%s\"}",
                  i ? "," : "", list[i], owner);
    sb_puts(b, "]}");
}

static void sim_reset(tg_sim_t *s, int all) {
    memset(&s->total, 0, sizeof(s->total));
    for (int i = 0; i < s->nprov; i++) {
        memset(&s->prov[i].c, 0, sizeof(s->prov[i].c));
        s->prov[i].fault_seq = 0;
        if (all) prov_defaults(&s->prov[i]);
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

static int config_apply(tg_sim_t *s, const char *body, size_t len, sim_buf_t *out, sim_err_t *e) {
    static const char *const keys[] = {"provider",     "ttft_ms",       "tps",
                                       "fault_status", "fault_percent", "retry_after"};
    json_t *o = json_loadb(body, len, 0, NULL);
    json_t *pn = o ? json_object_get(o, "provider") : NULL;
    const char *name = json_is_string(pn) ? json_string_value(pn) : NULL;
    if (!json_is_object(o) || name == NULL || !name_ok(name, strlen(name), 0)) {
        err_set(e, 400,
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
            err_set(e, 400, "unknown key '%s' in /_sim/config", k);
            json_decref(o);
            return -1;
        }
    }
    sim_prov_t *pv = &s->prov[prov_get(s, name)];
    int64_t ttft = pv->ttft_ms, tps = pv->tps, ra = pv->retry_after, st = pv->fault_status, pct = -1;
    int bad = cfg_int(o, "ttft_ms", 0, 3600000, 1, &ttft) < 0 || cfg_int(o, "tps", 0, 1000000, 1, &tps) < 0 ||
              cfg_int(o, "retry_after", 0, 86400, 1, &ra) < 0 ||
              cfg_int(o, "fault_status", 0, 599, 0, &st) < 0 ||
              cfg_int(o, "fault_percent", 0, 100, 0, &pct) < 0 || (st != 0 && st < 400);
    json_decref(o);
    if (bad) {
        err_set(e, 400,
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
    sb_printf(out, "{\"provider\":\"%s\",\"ttft_ms\":", pv->name);
    int64_t shown[3] = {pv->ttft_ms, pv->tps, pv->retry_after};
    const char *names[3] = {"ttft_ms", "tps", "retry_after"};
    for (int i = 0; i < 3; i++) {
        if (i) sb_printf(out, ",\"%s\":", names[i]);
        if (shown[i] < 0)
            sb_puts(out, "null");
        else
            sb_printf(out, "%" PRId64, shown[i]);
    }
    sb_printf(out, ",\"fault_status\":%d,\"fault_percent\":%d}", pv->fault_status, pv->fault_percent);
    return 0;
}

/* ---------- answering ---------- */

static const char *const CT_JSON = "application/json";
static const char *const CT_SSE = "text/event-stream; charset=utf-8";

/* Sends q->buf as the whole answer. Live, this may finish and release q:
 * nothing touches q after it. */
static void send_whole(sim_req_t *q, int status, int64_t retry_after) {
    q->status = status;
    if (q->ans) {
        q->ans->status = status;
        q->ans->content_type = CT_JSON;
        q->ans->retry_after = (long)retry_after;
        q->ans->body = malloc(q->buf.len + 1);
        if (q->ans->body) {
            memcpy(q->ans->body, q->buf.p ? q->buf.p : "", q->buf.len);
            q->ans->body[q->buf.len] = '\0';
            q->ans->len = q->buf.len;
        }
        return;
    }
    char ra[48];
    const char *h[2] = {"Content-Type: application/json", ra};
    snprintf(ra, sizeof(ra), "Retry-After: %" PRId64, retry_after);
    tg_http_respond(q->r, status, h, retry_after >= 0 ? 2 : 1, q->buf.p ? q->buf.p : "", q->buf.len);
}

static void send_error(sim_req_t *q, const sim_err_t *e) {
    q->state = ST_ERROR;
    sb_reset(&q->buf);
    fmt_error(&q->buf, q->rt.kind == RT_MESSAGES, e);
    send_whole(q, e->status, e->retry_after);
}

static void send_oom(sim_req_t *q) {
    sim_err_t e;
    err_set(&e, 500, "out of memory");
    sb_reset(&q->buf);
    q->buf.oom = 0;
    send_error(q, &e);
}

/* Events ready at the same moment leave in one chunked write (one syscall),
 * up to this many bytes: tens of small writes per answer would make the
 * simulator, not the gateway, the bottleneck of a load test. */
#define SIM_BATCH 16384

/* Writes the batched events: 0, or 1 when the client is behind (wait for
 * on_drain). Rendering keeps everything in rbuf instead. */
static int flush(sim_req_t *q) {
    if (q->ans || q->rbuf.len == 0) return 0;
    int rc = tg_http_stream_write(q->r, q->rbuf.p, q->rbuf.len);
    sb_reset(&q->rbuf);
    return rc;
}

static void finish_stream(sim_req_t *q) {
    q->state = q->g.errored ? ST_ERROR : ST_COMPLETED;
    q->phase = LV_IDLE;
    if (q->r) {
        flush(q);
        tg_http_stream_end(q->r);
    }
}

/* One step of pump(): 1 to go on, 0 to stop (finished, waiting, or gone). */
static int pump_step(sim_req_t *q) {
    const sim_plan_t *p = &q->p;
    if (q->r && p->stall_after >= 0 && q->chunks >= p->stall_after) {
        q->phase = LV_STALLED;
        flush(q);
        return 0;
    }
    if (q->r && p->reset_after >= 0 && q->chunks >= p->reset_after) {
        /* Let the events already queued reach the client before the reset. */
        q->phase = LV_RESET;
        flush(q);
        if (!q->dead) timer_in(q, 1000);
        return 0;
    }
    int tok, rtok;
    if (!gen_next(p, &q->g, &q->buf, &tok, &rtok)) {
        finish_stream(q);
        return 0;
    }
    sb_put(&q->rbuf, q->buf.p, q->buf.len);
    if (q->buf.oom || q->rbuf.oom) {
        q->state = ST_ERROR;
        if (q->r) tg_http_abort(q->r);
        return 0;
    }
    q->chunks++;
    q->sent_completion += tok + rtok;
    q->sent_reasoning += rtok;
    track_sync(q);
    if (q->r && (tok || rtok) && p->tps > 0) {
        q->wait_drain = flush(q) == 1;
        if (!q->dead) timer_in(q, 1000000 / p->tps);
        return 0;
    }
    if (q->rbuf.len >= SIM_BATCH) q->wait_drain = flush(q) == 1;
    return !q->wait_drain;
}

/* Writes events until the stream ends, a knob says wait (tokens/s, stall,
 * reset) or the client is behind. on_finish may run inside a write or the
 * end: `busy` makes it leave the release to us. */
static void pump(sim_req_t *q) {
    q->busy = 1;
    while (!q->dead && pump_step(q))
        ;
    q->busy = 0;
    if (q->dead) req_release(q);
}

static void reset_step(sim_req_t *q) {
    if (tg_http_pending(q->r) > 0) {
        timer_in(q, 2000);
    } else if (!q->reset_grace) {
        q->reset_grace = 1;
        timer_in(q, 20000); /* the kernel's send buffer too, before the RST */
    } else {
        q->state = ST_RESET;
        tg_http_abort(q->r);
    }
}

/* The answer itself, once time to first token has passed. */
static void go(sim_req_t *q) {
    const sim_plan_t *p = &q->p;
    if (!p->stream) {
        if (q->r && p->stall_after >= 0) {
            q->phase = LV_STALLED;
            return;
        }
        if (q->r && p->reset_after >= 0) {
            q->state = ST_RESET;
            tg_http_abort(q->r);
            return;
        }
        sb_reset(&q->buf);
        if (p->flavour == FL_ANTHROPIC)
            fmt_whole_anthropic(&q->buf, p);
        else
            fmt_whole_openai(&q->buf, p);
        if (q->buf.oom) {
            send_oom(q);
            return;
        }
        q->sent_completion = completion_tokens(p);
        q->sent_reasoning = p->reasoning;
        q->state = ST_COMPLETED;
        send_whole(q, 200, -1);
        return;
    }
    q->streaming = 1;
    q->sim->streams_open++;
    q->phase = LV_STREAM;
    if (q->ans) {
        q->ans->status = 200;
        q->ans->content_type = CT_SSE;
    } else {
        const char *h[2] = {"Content-Type: text/event-stream; charset=utf-8", "Cache-Control: no-cache"};
        tg_http_stream_start(q->r, 200, h, 2);
    }
    pump(q);
}

static void start(sim_req_t *q) {
    const sim_plan_t *p = &q->p;
    int64_t ms = p->ttft_ms;
    if (!p->stream && p->tps > 0) ms += completion_tokens(p) * 1000 / p->tps;
    if (q->r && ms > 0) {
        q->phase = LV_WAIT;
        timer_in(q, ms * 1000);
        return;
    }
    go(q);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    sim_req_t *q = arg;
    q->timer_on = 0;
    if (q->phase == LV_WAIT)
        go(q);
    else if (q->phase == LV_STREAM && !q->wait_drain)
        pump(q);
    else if (q->phase == LV_RESET)
        reset_step(q);
}

static int check_auth(sim_req_t *q, const sim_hdrs_t *hs, sim_err_t *e) {
    size_t len = 0;
    const char *v;
    if (q->rt.kind == RT_MESSAGES) {
        v = hdr_get(hs, "x-api-key", &len);
        if (v == NULL || len == 0) {
            err_set(e, 401, "x-api-key header is required");
            return -1;
        }
        if (hdr_get(hs, "anthropic-version", &len) == NULL || len == 0) {
            err_set(e, 400, "anthropic-version: header is required");
            return -1;
        }
        return 0;
    }
    v = hdr_get(hs, "authorization", &len);
    if (v == NULL || len <= 7 || strncasecmp(v, "Bearer ", 7) != 0) {
        err_set(e, 401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
        return -1;
    }
    return 0;
}

/* Counts a chat request and checks what the headers alone can decide. */
static int chat_headers(sim_req_t *q, const sim_hdrs_t *hs) {
    tg_sim_t *s = q->sim;
    sim_err_t e;
    q->prov = prov_get(s, q->rt.prov);
    s->total.requests++;
    s->prov[q->prov].c.requests++;
    size_t len = 0;
    const char *id = hdr_get(hs, "x-sim-id", &len);
    if (id && name_ok(id, len, 1)) {
        char buf[SIM_NAME_MAX + 1];
        memcpy(buf, id, len);
        buf[len] = '\0';
        track_open(q, buf);
    } else if (id) {
        err_set(&e, 400, "x-sim-id must be 1-63 characters of [A-Za-z0-9._:-]");
        send_error(q, &e);
        return 1;
    }
    if (check_auth(q, hs, &e)) {
        send_error(q, &e);
        return 1;
    }
    return 0;
}

/* Answers what needs no body. 1 when answered (q may be gone), 0 to read on. */
static int answer_headers(sim_req_t *q, const sim_hdrs_t *hs) {
    tg_sim_t *s = q->sim;
    sim_err_t e;
    const sim_track_t *t;
    sb_reset(&q->buf);
    switch (q->rt.kind) {
    case RT_CHAT:
    case RT_MESSAGES:
        return chat_headers(q, hs);
    case RT_RESET:
    case RT_CONFIG:
        return 0;
    case RT_STATS:
        fmt_stats(&q->buf, s);
        break;
    case RT_MODELS:
        fmt_models(&q->buf, q->rt.prov);
        break;
    case RT_TRACK:
        if ((t = track_find(s, q->rt.id)) == NULL) {
            err_set(&e, 404, "no request with x-sim-id '%s'", q->rt.id);
            send_error(q, &e);
            return 1;
        }
        fmt_track(&q->buf, s, t);
        break;
    default:
        err_set(
            &e, 404,
            "Unknown request URL. The simulator serves POST /{provider}/v1/chat/completions, POST "
            "/{provider}/v1/messages, GET /{provider}/v1/models and /_sim/{stats,reset,config,requests/ID}.");
        e.code = "unknown_url";
        send_error(q, &e);
        return 1;
    }
    if (q->buf.oom)
        send_oom(q);
    else
        send_whole(q, 200, -1);
    return 1;
}

static void answer_body(sim_req_t *q, const sim_hdrs_t *hs, const char *body, size_t len) {
    sim_err_t e;
    sb_reset(&q->buf);
    if (q->rt.kind == RT_RESET) {
        sim_reset(q->sim, q->rt.all);
        sb_puts(&q->buf, "{\"ok\":true}");
        send_whole(q, 200, -1);
        return;
    }
    if (q->rt.kind == RT_CONFIG) {
        if (config_apply(q->sim, body, len, &q->buf, &e))
            send_error(q, &e);
        else
            send_whole(q, 200, -1);
        return;
    }
    if (plan_build(q, hs, body, len, &e)) {
        send_error(q, &e);
        return;
    }
    q->planned = 1;
    track_sync(q);
    start(q);
}

/* ---------- http1 callbacks ---------- */

static int on_headers(tg_http_req_t *r, void *ud) {
    tg_sim_t *s = ud;
    sim_req_t *q = req_new(s);
    if (q == NULL) {
        tg_http_respond(r, 503, NULL, 0, "", 0);
        return TG_HTTP_HANDLED;
    }
    size_t plen = 0, qlen = 0;
    const char *path = tg_http_path(r, &plen), *query = tg_http_query(r, &qlen);
    route_parse(tg_http_method(r), path, plen, query, qlen, &q->rt);
    q->r = r;
    tg_http_set_data(r, q);
    sim_hdrs_t hs = {r, NULL, 0};
    return answer_headers(q, &hs) ? TG_HTTP_HANDLED : TG_HTTP_CONTINUE;
}

static void on_request(tg_http_req_t *r, void *ud) {
    sim_req_t *q = tg_http_data(r);
    if (q == NULL) return;
    size_t len = 0;
    const char *body = tg_http_body(r, &len);
    sim_hdrs_t hs = {r, NULL, 0};
    answer_body(q, &hs, body ? body : "", len);
}

static void on_drain(tg_http_req_t *r, void *ud) {
    sim_req_t *q = tg_http_data(r);
    if (q == NULL) return;
    q->wait_drain = 0;
    if (q->phase == LV_STREAM && !q->timer_on && !q->busy) pump(q);
}

static void on_finish(tg_http_req_t *r, int aborted, void *ud) {
    sim_req_t *q = tg_http_data(r);
    if (q == NULL) return;
    if (q->timer_on) event_del(&q->timer);
    q->timer_on = 0;
    if (q->state == ST_OPEN) q->state = aborted ? ST_CANCELLED : ST_COMPLETED;
    finalize(q);
    q->r = NULL;
    q->phase = LV_IDLE;
    if (q->busy)
        q->dead = 1;
    else
        req_release(q);
}

static const tg_http_handler_t sim_handler = {on_headers, on_request, on_drain, on_finish};

/* ---------- the simulator object ---------- */

tg_sim_t *tg_sim_new(void) {
    tg_sim_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->track = calloc(SIM_TRACK, sizeof(*s->track));
    if (s->track == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void tg_sim_free(tg_sim_t *s) {
    if (s == NULL) return;
    while (s->free) {
        sim_req_t *q = s->free;
        s->free = q->next;
        free(q->buf.p);
        free(q->rbuf.p);
        free(q);
    }
    free(s->track);
    free(s);
}

void tg_sim_set_timing(tg_sim_t *s, long ttft_ms, long tps) {
    s->ttft_ms = ttft_ms < 0 ? 0 : ttft_ms;
    s->tps = tps < 0 ? 0 : tps;
}

int tg_sim_set_fault(tg_sim_t *s, const char *spec, char *err, size_t errlen) {
    char name[SIM_NAME_MAX + 1];
    const char *c = strchr(spec, ':');
    long status = 0, pct = 100;
    char *end = NULL;
    if (c == NULL || !name_ok(spec, (size_t)(c - spec), 0)) goto bad;
    memcpy(name, spec, (size_t)(c - spec));
    name[c - spec] = '\0';
    status = strtol(c + 1, &end, 10);
    if (end == c + 1 || status < 400 || status > 599) goto bad;
    if (*end == ':') {
        const char *ps = end + 1;
        pct = strtol(ps, &end, 10);
        if (end == ps || pct < 0 || pct > 100) goto bad;
    }
    if (*end != '\0') goto bad;
    sim_prov_t *pv = &s->prov[prov_get(s, name)];
    pv->fault_status = (int)status;
    pv->fault_percent = (int)pct;
    pv->fault_seq = 0;
    return 0;
bad:
    snprintf(err, errlen,
             "bad --fault '%s': expected PROVIDER:STATUS[:PERCENT], STATUS 400-599, PERCENT 0-100", spec);
    return -1;
}

int tg_sim_render(tg_sim_t *s, const char *method, const char *path, const tg_http_header_t *hdrs,
                  size_t nhdrs, const char *body, size_t len, tg_sim_answer_t *out) {
    memset(out, 0, sizeof(*out));
    out->retry_after = -1;
    sim_req_t *q = req_new(s);
    if (q == NULL) return -1;
    q->ans = out;
    const char *qm = strchr(path, '?');
    size_t plen = qm ? (size_t)(qm - path) : strlen(path);
    route_parse(method, path, plen, qm ? qm + 1 : NULL, qm ? strlen(qm + 1) : 0, &q->rt);
    sim_hdrs_t hs = {NULL, hdrs, nhdrs};
    if (!answer_headers(q, &hs)) answer_body(q, &hs, body ? body : "", body ? len : 0);
    if (q->streaming) {
        out->body = malloc(q->rbuf.len + 1);
        if (out->body) {
            memcpy(out->body, q->rbuf.p ? q->rbuf.p : "", q->rbuf.len);
            out->body[q->rbuf.len] = '\0';
            out->len = q->rbuf.len;
        }
    }
    finalize(q);
    req_release(q);
    return out->body ? 0 : -1;
}

/* ---------- serving: the command and the embedded thread ---------- */

/* tg_http_listen() sets SO_REUSEPORT, so a second simulator on a busy port
 * would silently take half the requests and half the stats. A bind without
 * it fails while anyone holds the port: probe that first. */
static int port_free(const char *host, int port) {
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    if (port == 0 || getaddrinfo(host, ps, &hints, &ai) != 0) return 1; /* let tg_http_listen report it */
    int fd = socket(ai->ai_family, SOCK_STREAM, 0), one = 1, ok = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE) ok = 0;
        close(fd);
    }
    freeaddrinfo(ai);
    if (!ok) errno = EADDRINUSE;
    return ok;
}

static int sim_listen(tg_sim_t *s, struct event_base *base, const char *host, int port, int *bound, char *err,
                      size_t errlen) {
    int fd = port_free(host, port) ? tg_http_listen(host, port, 1024) : -1;
    if (fd < 0) {
        snprintf(err, errlen, "simulator cannot listen on %s:%d: %s", host, port, strerror(errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *bound = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    tg_http_limits_t lim;
    tg_http_limits_default(&lim);
    lim.max_body_bytes = (size_t)64 << 20; /* the gateway enforces its own, smaller limit */
    s->base = base;
    s->server = tg_http_server_new(base, fd, &lim, &sim_handler, s);
    if (s->server == NULL) {
        close(fd);
        snprintf(err, errlen, "simulator cannot start its HTTP server");
        return -1;
    }
    return 0;
}

static void sim_shutdown(tg_sim_t *s) {
    /* Aborts open requests: their on_finish runs here and releases them. */
    if (s->server) tg_http_server_free(s->server);
    s->server = NULL;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    event_base_loopbreak(arg);
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: tollgate simulate [--host H] [--port N] [--ttft-ms N] [--tps N] "
        "[--fault PROVIDER:STATUS[:PERCENT]]...\n"
        "  defaults: --host 127.0.0.1 --port %d --ttft-ms 0 --tps 0 (0 = as fast as possible)\n"
        "  per-request headers: x-sim-output-tokens, x-sim-cached-tokens, x-sim-reasoning-tokens,\n"
        "  x-sim-tool-call, x-sim-ttft-ms, x-sim-tps, x-sim-status, x-sim-retry-after, x-sim-reset-after,\n"
        "  x-sim-stall-after, x-sim-error-after, x-sim-usage-on-finish, x-sim-no-usage, x-sim-id\n"
        "  control: GET /_sim/stats, GET /_sim/requests/ID, POST /_sim/reset, POST /_sim/config\n",
        SIM_DEFAULT_PORT);
}

/* "--name value" or "--name=value": 1 with *val set, 0 not this option, -1 no value. */
static int opt(int argc, char **argv, int *i, const char *name, const char **val) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

static int num_arg(const char *v, long lo, long hi, long *out) {
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

/* 0 parsed, 1 help shown, 2 usage error. */
static int parse_args(tg_sim_t *s, int argc, char **argv, const char **host, long *port) {
    long ttft = 0, tps = 0;
    char err[256];
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        } else if ((r = opt(argc, argv, &i, "--host", &v)) != 0) {
            if (r > 0) *host = v;
        } else if ((r = opt(argc, argv, &i, "--port", &v)) != 0) {
            if (r > 0 && num_arg(v, 0, 65535, port)) r = -1;
        } else if ((r = opt(argc, argv, &i, "--ttft-ms", &v)) != 0) {
            if (r > 0 && num_arg(v, 0, 3600000, &ttft)) r = -1;
        } else if ((r = opt(argc, argv, &i, "--tps", &v)) != 0) {
            if (r > 0 && num_arg(v, 0, 1000000, &tps)) r = -1;
        } else if ((r = opt(argc, argv, &i, "--fault", &v)) != 0) {
            if (r > 0 && tg_sim_set_fault(s, v, err, sizeof(err))) {
                fprintf(stderr, "tollgate simulate: %s\n", err);
                return 2;
            }
        } else {
            r = -1;
        }
        if (r < 0) {
            fprintf(stderr, "tollgate simulate: bad or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    tg_sim_set_timing(s, ttft, tps);
    return 0;
}

int tg_simulate_main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = SIM_DEFAULT_PORT;
    tg_sim_t *s = tg_sim_new();
    if (s == NULL) return 1;
    int rc = parse_args(s, argc, argv, &host, &port);
    if (rc) {
        tg_sim_free(s);
        return rc == 1 ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    char err[256];
    int bound = 0;
    if (base == NULL || sim_listen(s, base, host, (int)port, &bound, err, sizeof(err))) {
        fprintf(stderr, "tollgate simulate: %s\n", base ? err : "cannot create an event loop");
        if (base) event_base_free(base);
        tg_sim_free(s);
        return 1;
    }
    struct event *sint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sint, NULL);
    event_add(sterm, NULL);
    printf("tollgate simulate listening on http://%s:%d\n", host, bound);
    fflush(stdout);
    event_base_dispatch(base);
    sim_shutdown(s);
    event_free(sint);
    event_free(sterm);
    event_base_free(base);
    tg_sim_free(s);
    return 0;
}

/* The embedded simulator: one thread, woken for shutdown through a pipe so
 * the loop needs no libevent thread support. */
static struct {
    pthread_t th;
    tg_sim_t *sim;
    struct event_base *base;
    struct event *wake;
    int fds[2];
    int running;
} sim_thread = {.fds = {-1, -1}};

static void on_wake(evutil_socket_t fd, short what, void *arg) {
    event_base_loopbreak(arg);
}

static void *thread_main(void *arg) {
    event_base_dispatch(arg);
    return NULL;
}

static void thread_cleanup(void) {
    if (sim_thread.sim) sim_shutdown(sim_thread.sim);
    if (sim_thread.wake) event_free(sim_thread.wake);
    if (sim_thread.base) event_base_free(sim_thread.base);
    tg_sim_free(sim_thread.sim);
    for (int i = 0; i < 2; i++)
        if (sim_thread.fds[i] >= 0) close(sim_thread.fds[i]);
    sim_thread.sim = NULL;
    sim_thread.base = NULL;
    sim_thread.wake = NULL;
    sim_thread.fds[0] = sim_thread.fds[1] = -1;
    sim_thread.running = 0;
}

int tg_simulate_start_thread(const char *host, int port, char *err, size_t errlen) {
    if (sim_thread.running) {
        snprintf(err, errlen, "the simulator thread already runs");
        return -1;
    }
    int bound = 0;
    sim_thread.sim = tg_sim_new();
    sim_thread.base = event_base_new();
    if (sim_thread.sim == NULL || sim_thread.base == NULL || pipe(sim_thread.fds) != 0) {
        snprintf(err, errlen, "simulator: out of resources");
        thread_cleanup();
        return -1;
    }
    if (sim_listen(sim_thread.sim, sim_thread.base, host, port, &bound, err, errlen)) {
        thread_cleanup();
        return -1;
    }
    sim_thread.wake = event_new(sim_thread.base, sim_thread.fds[0], EV_READ, on_wake, sim_thread.base);
    if (sim_thread.wake == NULL || event_add(sim_thread.wake, NULL) != 0 ||
        pthread_create(&sim_thread.th, NULL, thread_main, sim_thread.base) != 0) {
        snprintf(err, errlen, "simulator: cannot start its thread");
        thread_cleanup();
        return -1;
    }
    sim_thread.running = 1;
    tg_info("simulated providers listening on http://%s:%d", host, bound);
    return 0;
}

void tg_simulate_stop_thread(void) {
    if (!sim_thread.running) return;
    ssize_t w;
    do
        w = write(sim_thread.fds[1], "x", 1);
    while (w < 0 && errno == EINTR);
    pthread_join(sim_thread.th, NULL);
    thread_cleanup();
}
