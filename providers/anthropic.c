/* anthropic.c — the Anthropic Messages dialect (Claude): POST {url}/v1/messages
 * with x-api-key and anthropic-version.
 *
 * An Anthropic client's body passes through byte for byte with only the
 * model spliced, its anthropic-beta header forwarded, and the answer or the
 * SSE events relayed unchanged; usage is read on the way (message_start for
 * input and cache counts, the last message_delta for output). An OpenAI
 * client's request is translated (providers/translate.c), and so is the
 * answer: a chat.completion, or chunks built one event at a time by a
 * translator kept in tg_call_t.state. Errors map to failover decisions:
 * 429, 529 and 5xx are retryable, a 400 is the client's and is relayed.
 * A Responses API client's request is translated for each attempt
 * (providers/responses_req.c, with the previous response's items in
 * front), and the answer into a Response or, event by event, into Responses
 * events (providers/responses_stream.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/log.h"
#include "providers/provider.h"
#include "providers/responses.h"
#include "providers/responses_fast.h"
#include "providers/translate.h"

#define ANTHROPIC_VERSION "2023-06-01"
#define FALLBACK_MAX_TOKENS 4096 /* neither the provider nor the price entry names one */

/* Anthropic client's stream: message_start is held until the next event,
 * so that an error event right behind it (overloaded) reaches the request
 * before any byte went to the client, and another candidate can be tried. */
typedef struct {
    const char *start;
    size_t start_len;
} passthrough_t;

/* Provider's default_max_tokens first (an operator's choice, which also
 * bounds Anthropic's output-token rate limit estimate), then the model's
 * max_output. */
static int64_t default_max_tokens(const tg_call_t *c) {
    if (c->provider->default_max_tokens > 0) return c->provider->default_max_tokens;
    if (c->price && c->price->max_output > 0) return c->price->max_output;
    return FALLBACK_MAX_TOKENS;
}

static char *translated_body(tg_call_t *c, size_t *len, char *err, size_t errlen) {
    json_error_t je;
    json_t *req = json_loadb(c->body, c->body_len, 0, &je);
    tg_tr_req_opts_t o = {.model = c->model, .default_max_tokens = default_max_tokens(c)};
    json_t *out = req ? tg_tr_req_openai_to_anthropic(req, &o, err, errlen) : NULL;
    if (req == NULL) snprintf(err, errlen, "the request body is not JSON");
    json_decref(req);
    if (out == NULL) return NULL;
    if (o.note[0]) tg_info("%s/%s: request translated for Claude: %s", c->provider->name, c->model, o.note);
    return tg_tr_dump(c->pool, out, len);
}

/* The client's request parsed, on first use when the fast path left it as text. */
static const json_t *rs_req(const tg_call_t *c) {
    return c->rs_req ? c->rs_req : c->rs_prep ? tg_rs_prep_req(c->rs_prep) : NULL;
}

static tg_rs_resp_opts_t rs_opts(const tg_call_t *c) {
    return (tg_rs_resp_opts_t){
        .id = c->rs_id, .created_at = c->rs_created, .model = c->model, .req = rs_req(c)};
}

/* A Responses client's request as a Claude message. */
static char *responses_body(tg_call_t *c, size_t *len, char *err, size_t errlen) {
    tg_rs_req_opts_t o = {
        .model = c->model, .default_max_tokens = default_max_tokens(c), .previous = c->rs_previous};
    json_t *out = tg_rs_req_to_anthropic(rs_req(c), &o, err, errlen);
    if (out == NULL) return NULL;
    if (o.note[0])
        tg_info("%s/%s: request translated from Responses: %s", c->provider->name, c->model, o.note);
    if (c->scan->stream) {
        tg_rs_resp_opts_t ro = rs_opts(c);
        c->state = tg_rs_stream_new(c->pool, 1, &ro);
    }
    return tg_tr_dump(c->pool, out, len);
}

static int anthropic_build(tg_call_t *c, tg_upcall_req_t *out, char *err, size_t errlen) {
    size_t blen = 0;
    char *body;
    if (c->kind == TG_KIND_EMBEDDINGS) {
        snprintf(err, errlen, "the Anthropic API has no embeddings endpoint");
        return -1;
    }
    if (c->client == TG_CLIENT_RESPONSES) {
        body = responses_body(c, &blen, err, errlen);
        if (body == NULL) return -1;
    } else if (c->client == TG_CLIENT_ANTHROPIC) {
        tg_edit_t e;
        size_t n = tg_scan_set_model(c->scan, c->model, c->pool, &e) == 0;
        body = tg_splice(c->pool, c->body, c->body_len, &e, n, &blen);
        if (c->scan->stream) c->state = tg_pool_calloc(c->pool, sizeof(passthrough_t));
    } else {
        body = translated_body(c, &blen, err, errlen);
        if (body == NULL) return -1;
        if (c->scan->stream)
            c->state = tg_tr_stream_new(c->pool, 1, c->client_wants_usage, (int64_t)time(NULL));
    }
    if (body == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t nh = 0;
    const char **h = tg_pool_alloc(c->pool, (5 + c->n_extra) * sizeof(*h));
    const char *key = c->provider->api_key ? c->provider->api_key : "sim";
    h[nh++] = tg_pool_printf(c->pool, "x-api-key: %s", key);
    h[nh++] = "anthropic-version: " ANTHROPIC_VERSION;
    h[nh++] = "Content-Type: application/json";
    h[nh++] = c->scan->stream ? "Accept: text/event-stream" : "Accept: application/json";
    size_t bl = 0;
    const char *beta =
        c->client == TG_CLIENT_ANTHROPIC ? tg_header_get(&c->headers, "anthropic-beta", &bl) : NULL;
    if (beta && bl) h[nh++] = tg_pool_printf(c->pool, "anthropic-beta: %.*s", (int)bl, beta);
    for (size_t i = 0; i < c->n_extra; i++)
        h[nh++] = c->extra_headers[i];
    /* count_tokens takes a Messages body (an Anthropic client's, model spliced). */
    out->url = tg_pool_printf(c->pool, "%s/v1/messages%s", c->provider->url,
                              c->kind == TG_KIND_COUNT_TOKENS ? "/count_tokens" : "");
    out->headers = h;
    out->nheaders = nh;
    out->body = body;
    out->body_len = blen;
    return 0;
}

/* Bytes of answer text in a message, for an estimate when usage is missing. */
static size_t content_bytes(const json_t *msg) {
    size_t n = 0, i;
    const json_t *b;
    json_array_foreach(json_object_get(msg, "content"), i, b) {
        const json_t *t = json_object_get(b, "text");
        if (!t) t = json_object_get(b, "thinking");
        n += json_string_length(t);
    }
    return n;
}

static int anthropic_parse_response(tg_call_t *c, const char *body, size_t len, tg_usage_t *u,
                                    const char **out, size_t *out_len) {
    json_error_t je;
    json_t *msg = json_loadb(body, len, 0, &je);
    if (!json_is_object(msg)) {
        json_decref(msg);
        return -1;
    }
    tg_tr_usage_anthropic(json_object_get(msg, "usage"), u);
    c->content_bytes += content_bytes(msg);
    if (c->client == TG_CLIENT_ANTHROPIC) {
        json_decref(msg);
        *out = body;
        *out_len = len;
        return 0;
    }
    char err[128];
    if (c->client == TG_CLIENT_RESPONSES) {
        tg_rs_resp_opts_t ro = rs_opts(c);
        tg_usage_t scratch = {0};
        json_t *r = tg_rs_resp_from_anthropic(msg, &ro, &scratch, err, sizeof(err));
        json_decref(msg);
        if (r == NULL) return -1;
        *out = tg_tr_dump(c->pool, r, out_len);
        c->rs_response = *out;
        c->rs_response_len = *out_len;
        return *out ? 0 : -1;
    }
    json_t *oa = tg_tr_resp_anthropic_to_openai(msg, (int64_t)time(NULL), err, sizeof(err));
    json_decref(msg);
    if (oa == NULL) return -1;
    *out = tg_tr_dump(c->pool, oa, out_len);
    return *out ? 0 : -1;
}

/* The event's type: its SSE name, else the data's "type" (a provider that
 * sends data-only events), copied into the caller's buf (cut to fit, as the
 * SSE parser cuts a long event: line) so that nothing outlives the event.
 * Copying it into the request's pool would grow the pool by one string per
 * event for the whole length of the stream. */
static const char *event_type(const char *event, const char *data, size_t len, char *buf, size_t cap) {
    if (event) return event;
    json_t *o = json_loadb(data, len, 0, NULL);
    const char *t = json_string_value(json_object_get(o, "type"));
    snprintf(buf, cap, "%s", t ? t : "");
    json_decref(o);
    return buf;
}

static int error_event(const char *data, size_t len, char *err, size_t errlen) {
    json_t *o = json_loadb(data, len, 0, NULL);
    const json_t *e = json_object_get(o, "error");
    const char *t = json_string_value(json_object_get(e, "type"));
    const char *m = json_string_value(json_object_get(e, "message"));
    snprintf(err, errlen, "%s%s%s", t ? t : "error", m ? ": " : "", m ? m : "");
    json_decref(o);
    return TG_STREAM_ERROR;
}

static int read_usage(tg_call_t *c, int start, const char *data, size_t len, tg_usage_t *u, char *err,
                      size_t errlen) {
    json_t *o = json_loadb(data, len, 0, NULL);
    if (o == NULL) {
        snprintf(err, errlen, "%s sent a stream event that is not JSON", c->provider->name);
        return -1;
    }
    tg_tr_usage_anthropic(json_object_get(start ? json_object_get(o, "message") : o, "usage"), u);
    json_decref(o);
    return 0;
}

/* Every event is relayed as it came; usage is read from message_start and
 * message_delta only (two parses per answer). */
static int passthrough_event(tg_call_t *c, const char *event, const char *data, size_t len, tg_usage_t *u,
                             const tg_emitter_t *out, char *err, size_t errlen) {
    passthrough_t *p = c->state;
    char tbuf[64];
    const char *t = event_type(event, data, len, tbuf, sizeof(tbuf));
    if (!strcmp(t, "error")) return error_event(data, len, err, errlen);
    int start = !strcmp(t, "message_start");
    if ((start || !strcmp(t, "message_delta")) && read_usage(c, start, data, len, u, err, errlen))
        return TG_STREAM_ERROR;
    if (start && p && p->start == NULL) {
        p->start = tg_pool_strndup(c->pool, data, len);
        p->start_len = len;
        return TG_STREAM_MORE;
    }
    if (p && p->start) {
        out->emit(out->ud, "message_start", p->start, p->start_len);
        p->start = NULL;
    }
    if (!strcmp(t, "content_block_delta"))
        c->content_bytes += len > 60 ? len - 60 : 0; /* minus framing, roughly */
    out->emit(out->ud, event ? event : t, data, len);
    return !strcmp(t, "message_stop") ? TG_STREAM_DONE : TG_STREAM_MORE;
}

static int anthropic_stream_event(tg_call_t *c, const char *event, const char *data, size_t len,
                                  tg_usage_t *u, const tg_emitter_t *out, char *err, size_t errlen) {
    if (c->client == TG_CLIENT_ANTHROPIC) return passthrough_event(c, event, data, len, u, out, err, errlen);
    if (c->client == TG_CLIENT_RESPONSES) {
        int rc = tg_rs_stream_event(c->state, event, data, len, u, &c->content_bytes, out->emit, out->ud, err,
                                    errlen);
        if (rc == TG_TR_DONE) c->rs_response = tg_rs_stream_response(c->state, &c->rs_response_len);
        return rc == TG_TR_DONE ? TG_STREAM_DONE : rc == TG_TR_ERROR ? TG_STREAM_ERROR : TG_STREAM_MORE;
    }
    int rc =
        tg_tr_stream_event(c->state, event, data, len, u, &c->content_bytes, out->emit, out->ud, err, errlen);
    return rc == TG_TR_DONE ? TG_STREAM_DONE : rc == TG_TR_ERROR ? TG_STREAM_ERROR : TG_STREAM_MORE;
}

static void anthropic_map_error(tg_call_t *c, int status, const char *body, size_t len,
                                tg_upstream_error_t *e) {
    e->message[0] = '\0';
    json_t *o = len ? json_loadb(body, len, 0, NULL) : NULL;
    const json_t *err = json_object_get(o, "error");
    const char *m = json_string_value(json_object_get(err, "message"));
    if (m == NULL) m = json_string_value(err); /* a proxy's {"error":"text"} */
    if (m) snprintf(e->message, sizeof(e->message), "%s", m);
    json_decref(o);
    tg_upstream_error_classify(status, e);
}

/* A Responses stream ends with `error` and response.failed from the
 * translator, which knows the output so far and the sequence. */
static int anthropic_stream_fail(tg_call_t *c, const char *message, const tg_usage_t *u,
                                 const tg_emitter_t *out) {
    if (c->client != TG_CLIENT_RESPONSES || c->state == NULL) return -1;
    tg_rs_stream_fail(c->state, "upstream_stream_broken", message, u, out->emit, out->ud);
    return 0;
}

const tg_dialect_t tg_dialect_anthropic = {
    .name = "anthropic",
    .build = anthropic_build,
    .parse_response = anthropic_parse_response,
    .stream_event = anthropic_stream_event,
    .map_error = anthropic_map_error,
    .stream_fail = anthropic_stream_fail,
};
