/* openai.c — the OpenAI chat-completions dialect, serving OpenAI, DeepSeek,
 * Qwen (DashScope compatible mode) and every other `dialect: openai` vendor.
 *
 * For an OpenAI client the body passes through: the model name is spliced
 * in, and for streams stream_options.include_usage is forced on so that
 * usage always arrives; when the client did not ask for it, the usage-only
 * chunk is dropped before relaying, so the client sees exactly what the
 * provider would have sent it. Usage is read from any chunk (some vendors
 * put it on the finish_reason chunk) and DeepSeek's cache-hit fields are
 * preferred over prompt_tokens_details.
 *
 * For an Anthropic client (/v1/messages) the request is translated into a
 * chat completion (include_usage forced for streams), and the answer back
 * into an Anthropic message, or chunk by chunk into Anthropic events by a
 * translator kept in tg_call_t.state (providers/translate.c).
 *
 * For a Responses API client (/v1/responses) the request is translated into
 * a chat completion for each attempt (providers/responses_req.c, with the
 * previous response's items in front), and the answer back into a Response
 * or, chunk by chunk, into Responses events (providers/responses_stream.c).
 * A provider marked `responses: native` gets the Responses request itself
 * at {url}/responses, its model replaced (and a previous_response_id, which
 * names a response the gateway stored, replaced by that conversation's
 * items); its answer passes through with the Response's id replaced by the
 * gateway's, so that every id a client sees can be continued, fetched or
 * deleted here, and usage is read from the Responses usage fields.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/log.h"
#include "providers/jsonutil.h"
#include "providers/provider.h"
#include "providers/responses.h"
#include "providers/responses_fast.h"
#include "providers/translate.h"

int tg_status_retryable(int status) {
    return status == 408 || status == 409 || status == 429 || status >= 500 || status == 401 ||
           status == 403 || status == 404;
}

/* An Anthropic client's request as a chat completion. */
static char *translated_body(tg_call_t *c, size_t *len, char *err, size_t errlen) {
    json_error_t je;
    json_t *req = json_loadb(c->body, c->body_len, 0, &je);
    tg_tr_req_opts_t o = {.model = c->model};
    json_t *out = req ? tg_tr_req_anthropic_to_openai(req, &o, err, errlen) : NULL;
    if (req == NULL) snprintf(err, errlen, "the request body is not JSON");
    json_decref(req);
    if (out == NULL) return NULL;
    if (o.note[0])
        tg_info("%s/%s: request translated from Anthropic: %s", c->provider->name, c->model, o.note);
    if (c->scan->stream) c->state = tg_tr_stream_new(c->pool, 0, 0, 0);
    return tg_tr_dump(c->pool, out, len);
}

/* An OpenAI client's body with the model spliced and include_usage forced. */
static char *spliced_body(tg_call_t *c, size_t *len, char *err, size_t errlen) {
    tg_edit_t edits[4];
    size_t n = 0;
    if (tg_scan_set_model(c->scan, c->model, c->pool, &edits[n]) == 0) n++;
    if (c->scan->stream && tg_scan_force_include_usage(c->body, c->scan, edits, &n, 4) != 0) {
        snprintf(err, errlen, "cannot rewrite stream_options");
        return NULL;
    }
    char *body = tg_splice(c->pool, c->body, c->body_len, edits, n, len);
    if (body == NULL) snprintf(err, errlen, "out of memory");
    return body;
}

void tg_upstream_error_classify(int status, tg_upstream_error_t *e) {
    e->retryable = tg_status_retryable(status);
    if (status == 400 || status == 413 || status == 422) {
        e->status = status;
        e->type = "invalid_request_error";
    } else if (status == 429) {
        e->status = 429;
        e->type = "rate_limit_error";
    } else {
        e->status = 502;
        e->type = "upstream_error";
    }
}

/* --- Responses API clients ------------------------------------------------ */

/* A Responses stream passed through from a native vendor: response.created
 * and response.in_progress are held until the next event, so that a vendor
 * failing right after them can still be failed over; the lifecycle
 * events' response id is replaced by the gateway's. */
typedef struct {
    const char *held[2], *held_ev[2];
    size_t held_len[2];
    int n_held;
    int64_t seq;          /* the last sequence_number relayed */
    const char *skeleton; /* the response of response.created, for response.failed */
} native_t;

static int responses_native(const tg_call_t *c) {
    return c->client == TG_CLIENT_RESPONSES && c->provider->responses_native;
}

/* The client's request parsed, on first use when the fast path left it as text. */
static const json_t *rs_req(const tg_call_t *c) {
    return c->rs_req ? c->rs_req : c->rs_prep ? tg_rs_prep_req(c->rs_prep) : NULL;
}

static tg_rs_resp_opts_t rs_opts(const tg_call_t *c) {
    return (tg_rs_resp_opts_t){
        .id = c->rs_id, .created_at = c->rs_created, .model = c->model, .req = rs_req(c)};
}

/* OpenAI's own API wants max_completion_tokens (its reasoning models refuse
 * max_tokens); the other vendors of this dialect read max_tokens. */
static int openai_own(const tg_provider_t *p) {
    return p->base_url && strstr(p->base_url, "://api.openai.com") != NULL;
}

/* The Chat body of an attempt. The request was translated once for routing
 * (c->body, with built-in tools let through); when that translation serves
 * this provider too (no built-in tool to refuse), only the model and the
 * name of the token limit differ, and they are spliced. */
static char *responses_chat_body(tg_call_t *c, size_t *len, char *err, size_t errlen) {
    const tg_rs_prep_t *p = c->rs_prep;
    char *body;
    tg_rs_req_opts_t o = {
        .model = c->model, .max_completion_tokens = openai_own(c->provider), .previous = c->rs_previous};
    body = p && p->reuse && p->chat == c->body ? tg_rs_chat_splice(c->pool, c->body, c->body_len, c->scan,
                                                                   c->model, o.max_completion_tokens, len)
                                               : NULL;
    if (body) {
        memcpy(o.note, p->note, sizeof(o.note));
    } else { /* another shape, or a model name the splice does not take: translate again */
        json_t *out = tg_rs_req_to_chat(rs_req(c), &o, err, errlen);
        if (out == NULL) return NULL;
        body = tg_tr_dump(c->pool, out, len);
        if (body == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
    }
    if (o.note[0])
        tg_info("%s/%s: request translated from Responses: %s", c->provider->name, c->model, o.note);
    if (c->scan->stream) {
        tg_rs_resp_opts_t ro = rs_opts(c);
        c->state = tg_rs_stream_new(c->pool, 0, &ro);
    }
    return body;
}

/* The client's request for a native vendor: its model, and the stored
 * conversation in place of previous_response_id (the vendor never saw it). */
static char *responses_native_body(tg_call_t *c, size_t *len, char *err, size_t errlen) {
    const json_t *orig = rs_req(c);
    json_t *req = orig ? json_copy((json_t *)orig) : NULL;
    if (req == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    json_object_set_new(req, "model", json_string(c->model));
    if (c->rs_previous) {
        json_t *items = tg_rs_input_items(orig, c->rs_previous);
        if (items == NULL) {
            json_decref(req);
            snprintf(err, errlen, "'input' must be a string or an array of items");
            return NULL;
        }
        json_object_set_new(req, "input", items);
        json_object_del(req, "previous_response_id");
    }
    if (c->scan->stream) c->state = tg_pool_calloc(c->pool, sizeof(native_t));
    return tg_tr_dump(c->pool, req, len);
}

/* Responses usage fields into the normalised counts. */
static void usage_from_responses(const json_t *usage, tg_usage_t *u) {
    if (!json_is_object(usage)) return;
    u->present = 1;
    u->estimated = 0;
    u->input_tokens = json_integer_value(json_object_get(usage, "input_tokens"));
    u->output_tokens = json_integer_value(json_object_get(usage, "output_tokens"));
    u->cached_input_tokens =
        json_integer_value(json_object_get(json_object_get(usage, "input_tokens_details"), "cached_tokens"));
    u->reasoning_tokens = json_integer_value(
        json_object_get(json_object_get(usage, "output_tokens_details"), "reasoning_tokens"));
}

/* Answer text bytes of a Response's output, for an estimate when usage is missing. */
static size_t output_bytes(const json_t *resp) {
    size_t n = 0, i, j;
    const json_t *it, *part;
    json_array_foreach(json_object_get(resp, "output"), i, it) {
        n += json_string_length(json_object_get(it, "arguments"));
        json_array_foreach(json_object_get(it, "content"), j, part) n +=
            json_string_length(json_object_get(part, "text"));
    }
    return n;
}

static int native_answer(tg_call_t *c, const char *body, size_t len, tg_usage_t *u, const char **out,
                         size_t *out_len) {
    json_t *resp = json_loadb(body, len, 0, NULL);
    if (!json_is_object(resp)) {
        json_decref(resp);
        return -1;
    }
    usage_from_responses(json_object_get(resp, "usage"), u);
    c->content_bytes += output_bytes(resp);
    json_object_set_new(resp, "id", json_pack("s+", "resp_", c->rs_id));
    *out = tg_tr_dump(c->pool, resp, out_len);
    c->rs_response = *out;
    c->rs_response_len = *out_len;
    return *out ? 0 : -1;
}

/* A chat completion as a Response; usage as usage_from_scan read it. A
 * plain text answer to a request of the common shapes is formatted from
 * the answer's text (responses_fast.c), anything else built with jansson. */
static int responses_answer(tg_call_t *c, const char *body, size_t len, const tg_usage_t *u, const char **out,
                            size_t *out_len) {
    if (c->rs_prep && c->rs_prep->fast &&
        tg_rs_fast_answer(c->pool, c->rs_prep, body, len, c->rs_id, c->rs_created, c->model, u, out,
                          out_len) == 0) {
        c->rs_response = *out;
        c->rs_response_len = *out_len;
        return 0;
    }
    json_t *resp = json_loadb(body, len, 0, NULL);
    tg_rs_resp_opts_t ro = rs_opts(c);
    tg_usage_t scratch = {0};
    char err[128];
    json_t *r = resp ? tg_rs_resp_from_chat(resp, &ro, &scratch, err, sizeof(err)) : NULL;
    json_decref(resp);
    if (r == NULL) return -1;
    if (u->present) json_object_set_new(r, "usage", tg_rs_usage_json(u));
    *out = tg_tr_dump(c->pool, r, out_len);
    c->rs_response = *out;
    c->rs_response_len = *out_len;
    return *out ? 0 : -1;
}

static void native_flush(tg_call_t *c, native_t *n, const tg_emitter_t *out) {
    for (int i = 0; i < n->n_held; i++)
        out->emit(out->ud, n->held_ev[i], n->held[i], n->held_len[i]);
    n->n_held = 0;
}

/* One event of a native vendor's Responses stream. */
static int native_event(tg_call_t *c, const char *event, const char *data, size_t len, tg_usage_t *u,
                        const tg_emitter_t *out, char *err, size_t errlen) {
    native_t *n = c->state;
    json_t *o = json_loadb(data, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        snprintf(err, errlen, "%s sent a stream event that is not JSON", c->provider->name);
        return TG_STREAM_ERROR;
    }
    const char *t = event ? event : tg_json_str(o, "type");
    if (t == NULL) t = "";
    json_t *resp = json_object_get(o, "response");
    if (!strcmp(t, "error") || !strcmp(t, "response.failed")) {
        const json_t *e = strcmp(t, "error") ? json_object_get(resp, "error") : o;
        const char *m = tg_json_str(e, "message"), *code = tg_json_str(e, "code");
        snprintf(err, errlen, "%s%s%s", code ? code : "error", m ? ": " : "", m ? m : "");
        json_decref(o);
        return TG_STREAM_ERROR;
    }
    const json_t *seq = json_object_get(o, "sequence_number");
    if (json_is_integer(seq)) n->seq = json_integer_value(seq);
    const char *d = data;
    size_t dl = len;
    if (json_is_object(resp)) {
        json_object_set_new(resp, "id", json_pack("s+", "resp_", c->rs_id));
        d = tg_tr_dump(c->pool, json_incref(o), &dl);
        if (d == NULL) {
            json_decref(o);
            snprintf(err, errlen, "out of memory");
            return TG_STREAM_ERROR;
        }
    }
    int held = !strcmp(t, "response.created") || !strcmp(t, "response.in_progress");
    size_t sl;
    if (!strcmp(t, "response.created") && json_is_object(resp))
        n->skeleton = tg_tr_dump(c->pool, json_incref(resp), &sl);
    int end = !strcmp(t, "response.completed") || !strcmp(t, "response.incomplete");
    if (end) {
        usage_from_responses(json_object_get(resp, "usage"), u);
        c->rs_response = tg_tr_dump(c->pool, json_incref(resp), &c->rs_response_len);
    }
    const char *delta = tg_json_str(o, "delta");
    if (delta) c->content_bytes += strlen(delta);
    json_decref(o);
    if (held && n->n_held < 2) {
        n->held_ev[n->n_held] = tg_pool_strdup(c->pool, t);
        n->held[n->n_held] = d == data ? tg_pool_strndup(c->pool, data, len) : d;
        n->held_len[n->n_held++] = dl;
        return TG_STREAM_MORE;
    }
    native_flush(c, n, out);
    out->emit(out->ud, t, d, dl);
    return end ? TG_STREAM_DONE : TG_STREAM_MORE;
}

/* The failure ending of a native stream: `error`, then response.failed,
 * numbered after the vendor's last event. */
static int native_fail(tg_call_t *c, const char *message, const tg_usage_t *u, const tg_emitter_t *out) {
    native_t *n = c->state;
    native_flush(c, n, out);
    json_t *e = json_pack("{s:s,s:s,s:s,s:n,s:I}", "type", "error", "code", "upstream_stream_broken",
                          "message", message, "param", "sequence_number", (json_int_t)(n->seq + 1));
    json_t *r = n->skeleton ? json_loads(n->skeleton, 0, NULL) : NULL;
    if (!json_is_object(r)) {
        json_decref(r);
        r = json_pack("{s:s+,s:s,s:[]}", "id", "resp_", c->rs_id, "object", "response", "output");
    }
    json_object_set_new(r, "status", json_string("failed"));
    json_object_set_new(r, "error",
                        json_pack("{s:s,s:s}", "code", "upstream_stream_broken", "message", message));
    json_object_set_new(r, "usage", u->present ? tg_rs_usage_json(u) : json_null());
    json_t *f = json_pack("{s:s,s:o,s:I}", "type", "response.failed", "response", r, "sequence_number",
                          (json_int_t)(n->seq + 2));
    size_t el = 0, fl = 0;
    const char *es = e ? tg_tr_dump(c->pool, e, &el) : NULL;
    const char *fs = f ? tg_tr_dump(c->pool, f, &fl) : NULL;
    if (es == NULL || fs == NULL) return -1;
    out->emit(out->ud, "error", es, el);
    out->emit(out->ud, "response.failed", fs, fl);
    return 0;
}

static int openai_stream_fail(tg_call_t *c, const char *message, const tg_usage_t *u,
                              const tg_emitter_t *out) {
    if (c->client != TG_CLIENT_RESPONSES || c->state == NULL) return -1;
    if (c->provider->responses_native) return native_fail(c, message, u, out);
    tg_rs_stream_fail(c->state, "upstream_stream_broken", message, u, out->emit, out->ud);
    return 0;
}

static char *build_body(tg_call_t *c, size_t *len, char *err, size_t errlen) {
    if (c->client == TG_CLIENT_ANTHROPIC) return translated_body(c, len, err, errlen);
    if (responses_native(c)) return responses_native_body(c, len, err, errlen);
    if (c->client == TG_CLIENT_RESPONSES) return responses_chat_body(c, len, err, errlen);
    return spliced_body(c, len, err, errlen);
}

static int openai_build(tg_call_t *c, tg_upcall_req_t *out, char *err, size_t errlen) {
    if (c->kind == TG_KIND_COUNT_TOKENS) {
        snprintf(err, errlen, "the OpenAI API has no token-count endpoint");
        return -1;
    }
    size_t blen = 0;
    char *body = build_body(c, &blen, err, errlen);
    if (body == NULL) return -1;
    size_t nh = 0, cap = 4 + c->n_extra;
    const char **h = tg_pool_alloc(c->pool, cap * sizeof(*h));
    const char *key = c->provider->api_key ? c->provider->api_key : "sim";
    h[nh++] = tg_pool_printf(c->pool, "Authorization: Bearer %s", key);
    h[nh++] = "Content-Type: application/json";
    h[nh++] = c->scan->stream ? "Accept: text/event-stream" : "Accept: application/json";
    for (size_t i = 0; i < c->n_extra; i++)
        h[nh++] = c->extra_headers[i];
    /* An embeddings body (OpenAI client only) passes with its model spliced. */
    out->url = tg_pool_printf(c->pool, "%s/%s", c->provider->url,
                              c->kind == TG_KIND_EMBEDDINGS ? "embeddings"
                              : responses_native(c)         ? "responses"
                                                            : "chat/completions");
    out->headers = h;
    out->nheaders = nh;
    out->body = body;
    out->body_len = blen;
    return 0;
}

/* Normalises OpenAI-dialect usage numbers; -1 means absent. */
static void usage_from_scan(const tg_scan_resp_t *s, tg_usage_t *u) {
    if (!s->has_usage) return;
    u->present = 1;
    u->estimated = 0;
    if (s->prompt_tokens >= 0) u->input_tokens = s->prompt_tokens;
    if (s->completion_tokens >= 0) u->output_tokens = s->completion_tokens;
    if (s->cache_hit_tokens >= 0) {
        u->cached_input_tokens = s->cache_hit_tokens; /* DeepSeek: hit + miss = prompt */
        if (s->prompt_tokens < 0 && s->cache_miss_tokens >= 0)
            u->input_tokens = s->cache_hit_tokens + s->cache_miss_tokens;
    } else if (s->cached_tokens >= 0) {
        u->cached_input_tokens = s->cached_tokens;
    }
    if (s->reasoning_tokens >= 0) u->reasoning_tokens = s->reasoning_tokens;
}

static int openai_parse_response(tg_call_t *c, const char *body, size_t len, tg_usage_t *u, const char **out,
                                 size_t *out_len) {
    if (responses_native(c)) return native_answer(c, body, len, u, out, out_len);
    tg_scan_resp_t s;
    if (tg_scan_response(body, len, c->pool, &s) != 0) return -1;
    usage_from_scan(&s, u);
    c->content_bytes += s.content_bytes;
    if (c->client == TG_CLIENT_ANTHROPIC) {
        json_t *resp = json_loadb(body, len, 0, NULL);
        char err[128];
        json_t *msg = resp ? tg_tr_resp_openai_to_anthropic(resp, err, sizeof(err)) : NULL;
        json_decref(resp);
        if (msg == NULL) return -1;
        /* Usage as read above (DeepSeek's cache fields included), not the translator's guess. */
        json_object_set_new(msg, "usage",
                            json_pack("{s:I,s:I,s:I,s:I}", "input_tokens",
                                      (json_int_t)(u->input_tokens - u->cached_input_tokens),
                                      "cache_creation_input_tokens", (json_int_t)0, "cache_read_input_tokens",
                                      (json_int_t)u->cached_input_tokens, "output_tokens",
                                      (json_int_t)u->output_tokens));
        *out = tg_tr_dump(c->pool, msg, out_len);
        return *out ? 0 : -1;
    }
    if (c->client == TG_CLIENT_RESPONSES) return responses_answer(c, body, len, u, out, out_len);
    *out = body;
    *out_len = len;
    return 0;
}

static int openai_stream_event(tg_call_t *c, const char *event, const char *data, size_t len, tg_usage_t *u,
                               const tg_emitter_t *out, char *err, size_t errlen) {
    if (responses_native(c)) return native_event(c, event, data, len, u, out, err, errlen);
    if (c->client == TG_CLIENT_RESPONSES) {
        int rc = tg_rs_stream_event(c->state, event, data, len, u, &c->content_bytes, out->emit, out->ud, err,
                                    errlen);
        if (rc == TG_TR_DONE) c->rs_response = tg_rs_stream_response(c->state, &c->rs_response_len);
        return rc == TG_TR_DONE ? TG_STREAM_DONE : rc == TG_TR_ERROR ? TG_STREAM_ERROR : TG_STREAM_MORE;
    }
    if (c->state) {
        int rc = tg_tr_stream_event(c->state, event, data, len, u, &c->content_bytes, out->emit, out->ud, err,
                                    errlen);
        return rc == TG_TR_DONE ? TG_STREAM_DONE : rc == TG_TR_ERROR ? TG_STREAM_ERROR : TG_STREAM_MORE;
    }
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) return TG_STREAM_DONE;
    /* Most chunks carry a few bytes of text and no usage: a skim with no
     * tokens tells so and counts the text; the rest get the full scan. */
    size_t text;
    if (tg_scan_chunk_plain(data, len, &text)) {
        c->content_bytes += text;
        out->emit(out->ud, NULL, data, len);
        return TG_STREAM_MORE;
    }
    tg_scan_resp_t s;
    if (tg_scan_response(data, len, c->pool, &s) != 0) {
        snprintf(err, errlen, "%s sent a stream event that is not JSON", c->provider->name);
        return TG_STREAM_ERROR;
    }
    if (s.has_error) {
        size_t n = len < errlen - 1 ? len : errlen - 1;
        memcpy(err, data, n);
        err[n] = '\0';
        return TG_STREAM_ERROR;
    }
    usage_from_scan(&s, u);
    /* Count what was relayed so a cut stream can still be billed by estimate. */
    c->content_bytes += s.content_bytes;
    if (s.choices_empty && s.has_usage && !c->client_wants_usage) return TG_STREAM_MORE;
    out->emit(out->ud, NULL, data, len);
    return TG_STREAM_MORE;
}

static void openai_map_error(tg_call_t *c, int status, const char *body, size_t len, tg_upstream_error_t *e) {
    e->message[0] = '\0';
    /* The provider's message, when it is the usual {"error":{"message":...}}. */
    const char *m = len ? memmem(body, len, "\"message\"", 9) : NULL;
    if (m) {
        const char *q = memchr(m + 9, '"', (size_t)(body + len - (m + 9)));
        if (q) {
            size_t i = 0;
            for (const char *p = q + 1; p < body + len && *p != '"' && i + 1 < sizeof(e->message); p++) {
                if (*p == '\\' && p + 1 < body + len) p++;
                e->message[i++] = *p;
            }
            e->message[i] = '\0';
        }
    }
    tg_upstream_error_classify(status, e);
}

const tg_dialect_t tg_dialect_openai = {
    .name = "openai",
    .build = openai_build,
    .parse_response = openai_parse_response,
    .stream_event = openai_stream_event,
    .map_error = openai_map_error,
    .stream_fail = openai_stream_fail,
};

const tg_dialect_t *tg_dialect_find(const char *name) {
    if (strcmp(name, "openai") == 0) return &tg_dialect_openai;
    if (strcmp(name, "anthropic") == 0) return &tg_dialect_anthropic;
    return NULL;
}

void tg_dialect_bind(tg_config_t *c) {
    for (size_t i = 0; c && i < c->n_providers; i++) {
        tg_provider_t *p = &c->providers[i];
        p->dialect = p->dialect_name ? tg_dialect_find(p->dialect_name) : NULL;
    }
}
