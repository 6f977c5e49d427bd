/* simulate.c — simulated LLM providers for offline use, tests and `make bench`:
 * the routes, the HTTP callbacks that turn a request into a plan and an
 * answer, and the tg_sim_* object of sim/simulate.h. The other files of sim/
 * hold the parts: wire.c (buffers, headers), count.c (reading bodies and
 * counting tokens), plan.c (knobs, faults, the plan), pace.c (timers and the
 * stream pump), openai.c, anthropic.c, responses.c, embeddings.c (the
 * dialects), control.c (stats and /_sim), serve.c (the command and thread).
 * This comment is the simulator's wire contract.
 *
 * Routes (any provider name [A-Za-z0-9._-]{1,63}; the name picks the
 * flavour of an OpenAI-dialect answer: DeepSeek if it contains "deepseek",
 * Qwen if it contains "qwen", else OpenAI, so a new vendor needs no code):
 *   POST /{provider}/v1/chat/completions (and /v1/chat/completions, provider
 *     "openai"): Chat Completions.
 *   POST /{provider}/v1/messages (and /v1/messages, provider "anthropic"):
 *     Anthropic Messages. POST /{provider}/v1/messages/count_tokens: its
 *     token count {"input_tokens":N}: not billed, no fault rate (x-sim-status
 *     applies), max_tokens not needed.
 *   POST /{provider}/v1/responses (and /v1/responses): the OpenAI Responses
 *     API, stream or not, with function tools.
 *   POST /{provider}/v1/embeddings (and /v1/embeddings): embeddings.
 *   GET /{provider}/v1/models: model list (Anthropic shape when the name
 *     contains "anthropic" or "claude").
 * Auth: OpenAI-dialect routes need `Authorization: Bearer <non-empty>`,
 * Anthropic routes a non-empty `x-api-key` and `anthropic-version`; else
 * 401/400 in the dialect's error shape. Malformed JSON, a missing model or
 * messages (Responses: input), and (Messages) a missing max_tokens get 400.
 *
 * Deterministic counts (the reading and counting rules are in sim/count.c):
 *   prompt_tokens = ceil(text_bytes / 4) + 4 * n_messages.
 *   wanted = x-sim-output-tokens, else 16; output = min(wanted, max_tokens)
 *   (Responses: max_output_tokens); finish "length" (Anthropic "max_tokens",
 *   Responses status "incomplete") when max_tokens cut it.
 *   Text: the words of sim_words cycled, one word per token, joined by one
 *   space (token i > 0 is " word"); a stream sends one delta per token.
 *   cached = x-sim-cached-tokens clamped to prompt. OpenAI/Qwen:
 *   prompt_tokens_details.cached_tokens; DeepSeek: prompt_cache_hit_tokens +
 *   prompt_cache_miss_tokens = prompt_tokens (no prompt_tokens_details);
 *   Anthropic: cache_read_input_tokens, plus cache_creation_input_tokens =
 *   x-sim-cache-write-tokens (clamped), and input_tokens = prompt minus both;
 *   Responses: input_tokens_details.cached_tokens.
 *   reasoning R = x-sim-reasoning-tokens: DeepSeek/Qwen send R words of
 *   reasoning_content before the content; OpenAI keeps them hidden (counted
 *   only); Anthropic sends a thinking block (R thinking_delta + one
 *   signature_delta) before the text; Responses a reasoning item with an
 *   empty summary. completion_tokens = R + output and
 *   completion_tokens_details.reasoning_tokens = R (OpenAI always; DeepSeek
 *   and Qwen when R > 0). Anthropic output_tokens = R + output.
 *   Tool call: the request has tools, holds no tool result (a message with
 *   "tool_call_id", a part with "tool_use_id", a function_call_output item),
 *   and either header x-sim-tool-call: NAME or the user text contains "call
 *   tool NAME": the answer is one call to NAME with arguments
 *   {"city":"Paris"}, worth 4 tokens (name + 3 argument fragments), finish
 *   "tool_calls" / stop_reason "tool_use" / a function_call item. Ids:
 *   chatcmpl-sim-N, msg_sim_N, call_sim_N, toolu_sim_N, resp_sim_N, fc_sim_N
 *   (N counts requests).
 *   Embeddings: usage.prompt_tokens = the sum over inputs of ceil(bytes / 4)
 *   (a token array: its length); each vector is unit length, seeded from a
 *   hash of its input, so the same input always gets the same vector.
 * Streams (Chat): role chunk {"role":"assistant","content":""} (content null
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
 * Streams (Responses): response.created, response.in_progress, [reasoning
 *   item added and done], response.output_item.added, then for text
 *   response.content_part.added, response.output_text.delta per token,
 *   response.output_text.done, response.content_part.done, or for a tool
 *   call response.function_call_arguments.delta x3 and .done; then
 *   response.output_item.done and response.completed (response.incomplete
 *   when max_output_tokens cut it), each with its sequence_number.
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
 *   in-stream error event (Chat: data: {"error":...} without [DONE];
 *   Anthropic: event: error, overloaded_error; Responses: event: error). An
 *   "event" is one data: line (Chat, [DONE] included) or one event:+data:
 *   pair (Anthropic, Responses).
 * Accounting: GET /_sim/stats, GET /_sim/requests/ID (requests sent with
 *   x-sim-id: ID, [A-Za-z0-9._:-]{1,63}; last 4096 kept), POST /_sim/reset
 *   (stats and tracking; ?all=1 also runtime config), POST /_sim/config. A
 *   billed request (chat, messages, responses, embeddings) that passed
 *   validation bills its prompt tokens plus the completion tokens actually
 *   sent (all of them for a finished answer, none for a non-stream answer
 *   abandoned before it was sent). States: open, completed, cancelled
 *   (client left first), reset (x-sim-reset-after), error (an error status,
 *   or x-sim-error-after). */
#include "sim/simulate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/simulate_int.h"

static int seg_is(const char *p, size_t n, const char *lit) {
    size_t l = strlen(lit);
    return n == l && memcmp(p, lit, l) == 0;
}

static void route_control(const char *p, size_t n, int get, int post, const char *query, size_t qlen,
                          sim_route_t *rt) {
    if (get && seg_is(p, n, "stats"))
        rt->kind = RT_STATS;
    else if (post && seg_is(p, n, "reset"))
        rt->kind = RT_RESET;
    else if (post && seg_is(p, n, "config"))
        rt->kind = RT_CONFIG;
    else if (get && n > 9 && memcmp(p, "requests/", 9) == 0 && sim_name_ok(p + 9, n - 9, 1)) {
        rt->kind = RT_TRACK;
        memcpy(rt->id, p + 9, n - 9);
    }
    rt->all = rt->kind == RT_RESET && query && seg_is(query, qlen, "all=1");
}

static void route_parse(const char *method, const char *path, size_t plen, const char *query, size_t qlen,
                        sim_route_t *rt) {
    static const struct {
        const char *path;
        int post, kind;
    } routes[] = {
        {"/v1/chat/completions", 1, RT_CHAT},
        {"/v1/messages", 1, RT_MESSAGES},
        {"/v1/messages/count_tokens", 1, RT_COUNT},
        {"/v1/responses", 1, RT_RESPONSES},
        {"/v1/embeddings", 1, RT_EMBED},
        {"/v1/models", 0, RT_MODELS},
    };
    memset(rt, 0, sizeof(*rt));
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (plen > 6 && memcmp(path, "/_sim/", 6) == 0) {
        route_control(path + 6, plen - 6, get, post, query, qlen, rt);
        return;
    }
    const char *rest = path;
    size_t rlen = plen;
    if (!(plen >= 4 && memcmp(path, "/v1/", 4) == 0)) {
        const char *slash = plen > 1 ? memchr(path + 1, '/', plen - 1) : NULL;
        if (path[0] != '/' || slash == NULL || !sim_name_ok(path + 1, (size_t)(slash - path - 1), 0)) return;
        memcpy(rt->prov, path + 1, (size_t)(slash - path - 1));
        rest = slash;
        rlen = plen - (size_t)(slash - path);
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if ((routes[i].post ? post : get) && seg_is(rest, rlen, routes[i].path)) rt->kind = routes[i].kind;
    if (rt->prov[0] == '\0')
        snprintf(rt->prov, sizeof(rt->prov), "%s", SIM_ANTHROPIC(rt->kind) ? "anthropic" : "openai");
}

/* Counts a billed request and checks what the headers alone can decide. */
static int billed_headers(sim_req_t *q, const sim_hdrs_t *hs) {
    tg_sim_t *s = q->sim;
    sim_err_t e;
    q->prov = sim_prov_get(s, q->rt.prov);
    s->total.requests++;
    s->prov[q->prov].c.requests++;
    size_t len = 0;
    const char *id = sim_hdr(hs, "x-sim-id", &len);
    if (id && sim_name_ok(id, len, 1)) {
        char buf[SIM_NAME_MAX + 1];
        memcpy(buf, id, len);
        buf[len] = '\0';
        sim_track_open(q, buf);
    } else if (id) {
        sim_err_set(&e, 400, "x-sim-id must be 1-63 characters of [A-Za-z0-9._:-]");
        sim_send_error(q, &e);
        return 1;
    }
    if (sim_check_auth(q->rt.kind, hs, &e)) {
        sim_send_error(q, &e);
        return 1;
    }
    return 0;
}

/* count_tokens is free: no stats, no fault rate, only x-sim-status. */
static int count_headers(sim_req_t *q, const sim_hdrs_t *hs) {
    sim_err_t e;
    q->prov = sim_prov_get(q->sim, q->rt.prov);
    if (sim_check_auth(q->rt.kind, hs, &e) == 0 && sim_injected_status(q, hs, 0, &e) == 0) return 0;
    sim_send_error(q, &e);
    return 1;
}

static void not_found(sim_req_t *q) {
    sim_err_t e;
    sim_err_set(&e, 404,
                "Unknown request URL. The simulator serves POST /{provider}/v1/chat/completions, "
                "/v1/messages, /v1/messages/count_tokens, /v1/responses, /v1/embeddings, GET "
                "/{provider}/v1/models and /_sim/{stats,reset,config,requests/ID}.");
    e.code = "unknown_url";
    sim_send_error(q, &e);
}

/* Answers what needs no body. 1 when answered (q may be gone), 0 to read on. */
static int answer_headers(sim_req_t *q, const sim_hdrs_t *hs) {
    tg_sim_t *s = q->sim;
    sim_err_t e;
    const sim_track_t *t;
    sim_buf_reset(&q->buf);
    switch (q->rt.kind) {
    case RT_CHAT:
    case RT_MESSAGES:
    case RT_RESPONSES:
    case RT_EMBED:
        return billed_headers(q, hs);
    case RT_COUNT:
        return count_headers(q, hs);
    case RT_RESET:
    case RT_CONFIG:
        return 0;
    case RT_STATS:
        sim_fmt_stats(&q->buf, s);
        break;
    case RT_MODELS:
        sim_models(&q->buf, q->rt.prov);
        break;
    case RT_TRACK:
        if ((t = sim_track_find(s, q->rt.id)) == NULL) {
            sim_err_set(&e, 404, "no request with x-sim-id '%s'", q->rt.id);
            sim_send_error(q, &e);
            return 1;
        }
        sim_fmt_track(&q->buf, s, t);
        break;
    default:
        not_found(q);
        return 1;
    }
    if (q->buf.oom)
        sim_send_oom(q);
    else
        sim_send_whole(q, 200, -1);
    return 1;
}

static void answer_body(sim_req_t *q, const sim_hdrs_t *hs, const char *body, size_t len) {
    sim_err_t e;
    int rc = 0;
    sim_buf_reset(&q->buf);
    switch (q->rt.kind) {
    case RT_RESET:
        sim_reset(q->sim, q->rt.all);
        sim_puts(&q->buf, "{\"ok\":true}");
        break;
    case RT_CONFIG:
        rc = sim_config_apply(q->sim, body, len, &q->buf, &e);
        break;
    case RT_COUNT:
        rc = sim_count_tokens(body, len, &q->buf, &e);
        break;
    default:
        if (sim_plan_build(q, hs, body, len, &e)) {
            sim_send_error(q, &e);
            return;
        }
        q->planned = 1;
        sim_track_sync(q);
        sim_start(q);
        return;
    }
    if (rc)
        sim_send_error(q, &e);
    else if (q->buf.oom)
        sim_send_oom(q);
    else
        sim_send_whole(q, 200, -1);
}

/* ---------- a live request, whatever its transport ---------- */

sim_req_t *sim_open(tg_sim_t *s, void *r, const sim_io_t *io, const char *method, const char *path,
                    size_t plen, const char *query, size_t qlen) {
    sim_req_t *q = sim_req_new(s);
    if (q == NULL) {
        io->respond(r, 503, NULL, 0, "", 0);
        return NULL;
    }
    route_parse(method, path, plen, query, qlen, &q->rt);
    q->r = r;
    q->io = io;
    return q;
}

int sim_headers(sim_req_t *q) {
    sim_hdrs_t hs = {q->r, q->io, NULL, 0};
    return answer_headers(q, &hs);
}

void sim_body(sim_req_t *q, const char *body, size_t len) {
    sim_hdrs_t hs = {q->r, q->io, NULL, 0};
    answer_body(q, &hs, body ? body : "", len);
}

void sim_drain(sim_req_t *q) {
    q->wait_drain = 0;
    if (q->phase == LV_STREAM && !q->timer_on && !q->busy) sim_pump(q);
}

void sim_close(sim_req_t *q, int aborted) {
    if (q->timer_on) event_del(&q->timer);
    q->timer_on = 0;
    if (q->state == ST_OPEN) q->state = aborted ? ST_CANCELLED : ST_COMPLETED;
    sim_finalize(q);
    q->r = NULL;
    q->phase = LV_IDLE;
    if (q->busy)
        q->dead = 1;
    else
        sim_req_release(q);
}

/* ---------- http1 callbacks ---------- */

static void h1_respond(void *r, int status, const char *const *hdrs, size_t n, const char *body, size_t len) {
    tg_http_respond(r, status, hdrs, n, body, len);
}
static void h1_stream_start(void *r, int status, const char *const *hdrs, size_t n) {
    tg_http_stream_start(r, status, hdrs, n);
}
static int h1_stream_write(void *r, const char *data, size_t len) {
    return tg_http_stream_write(r, data, len);
}
static void h1_stream_end(void *r) {
    tg_http_stream_end(r);
}
static void h1_abort(void *r) {
    tg_http_abort(r);
}
static size_t h1_pending(void *r) {
    return tg_http_pending(r);
}
static const char *h1_header(void *r, const char *name, size_t *len) {
    return tg_http_header(r, name, len);
}

static const sim_io_t sim_io_http1 = {h1_respond, h1_stream_start, h1_stream_write, h1_stream_end,
                                      h1_abort,   h1_pending,      h1_header};

static int on_headers(tg_http_req_t *r, void *ud) {
    size_t plen = 0, qlen = 0;
    const char *path = tg_http_path(r, &plen), *query = tg_http_query(r, &qlen);
    sim_req_t *q = sim_open(ud, r, &sim_io_http1, tg_http_method(r), path, plen, query, qlen);
    if (q == NULL) return TG_HTTP_HANDLED;
    tg_http_set_data(r, q); /* before anything is answered: on_finish may run inside tg_http_respond */
    return sim_headers(q) ? TG_HTTP_HANDLED : TG_HTTP_CONTINUE;
}

static void on_request(tg_http_req_t *r, void *ud) {
    sim_req_t *q = tg_http_data(r);
    if (q == NULL) return;
    size_t len = 0;
    const char *body = tg_http_body(r, &len);
    sim_body(q, body, len);
}

static void on_drain(tg_http_req_t *r, void *ud) {
    sim_req_t *q = tg_http_data(r);
    if (q) sim_drain(q);
}

static void on_finish(tg_http_req_t *r, int aborted, void *ud) {
    sim_req_t *q = tg_http_data(r);
    if (q) sim_close(q, aborted);
}

const tg_http_handler_t sim_handler = {on_headers, on_request, on_drain, on_finish};

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
    if (c == NULL || !sim_name_ok(spec, (size_t)(c - spec), 0)) goto bad;
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
    sim_prov_t *pv = &s->prov[sim_prov_get(s, name)];
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
    sim_req_t *q = sim_req_new(s);
    if (q == NULL) return -1;
    q->ans = out;
    const char *qm = strchr(path, '?');
    size_t plen = qm ? (size_t)(qm - path) : strlen(path);
    route_parse(method, path, plen, qm ? qm + 1 : NULL, qm ? strlen(qm + 1) : 0, &q->rt);
    sim_hdrs_t hs = {NULL, NULL, hdrs, nhdrs};
    if (!answer_headers(q, &hs)) answer_body(q, &hs, body ? body : "", body ? len : 0);
    if (q->streaming) {
        out->body = malloc(q->rbuf.len + 1);
        if (out->body) {
            memcpy(out->body, q->rbuf.p ? q->rbuf.p : "", q->rbuf.len);
            out->body[q->rbuf.len] = '\0';
            out->len = q->rbuf.len;
        }
    }
    sim_finalize(q);
    sim_req_release(q);
    return out->body ? 0 : -1;
}
