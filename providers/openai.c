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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/log.h"
#include "providers/provider.h"
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

static int openai_build(tg_call_t *c, tg_upcall_req_t *out, char *err, size_t errlen) {
    if (c->kind == TG_KIND_COUNT_TOKENS) {
        snprintf(err, errlen, "the OpenAI API has no token-count endpoint");
        return -1;
    }
    size_t blen = 0;
    char *body = c->client == TG_CLIENT_ANTHROPIC ? translated_body(c, &blen, err, errlen)
                                                  : spliced_body(c, &blen, err, errlen);
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
                              c->kind == TG_KIND_EMBEDDINGS ? "embeddings" : "chat/completions");
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
    *out = body;
    *out_len = len;
    return 0;
}

static int openai_stream_event(tg_call_t *c, const char *event, const char *data, size_t len, tg_usage_t *u,
                               const tg_emitter_t *out, char *err, size_t errlen) {
    if (c->state) {
        int rc = tg_tr_stream_event(c->state, event, data, len, u, &c->content_bytes, out->emit, out->ud, err,
                                    errlen);
        return rc == TG_TR_DONE ? TG_STREAM_DONE : rc == TG_TR_ERROR ? TG_STREAM_ERROR : TG_STREAM_MORE;
    }
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) return TG_STREAM_DONE;
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
