/* client.c — the client dialect table (client.h): for each API a client can
 * call, the shape of Tollgate's own words to it. OpenAI clients get
 * {"error":{"message","type","code"}} and a stream that ends in
 * `data: [DONE]`; Anthropic clients get {"type":"error","error":{"type",
 * "message"}} with the type taken from the status, and a stream that ends
 * with the message_stop the provider dialect already relayed. Responses API
 * clients get OpenAI's error bodies and a stream that ends with the
 * response.completed the provider dialect's translator already sent (no
 * [DONE]); a broken one ends with `error` and `response.failed`. Strings go in
 * as C strings and come out as JSON or SSE text (malloc'd bodies, pool
 * stream endings); nothing here does I/O.
 */
#include "providers/client.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef struct {
    const char *path;
    int keeps_state;
    const char *auth_hint;
    char *(*error_body)(int status, const char *type, const char *code, const char *msg);
    const char *(*stream_done)(tg_pool_t *pool, const char *cost_comment);
    const char *(*stream_broken)(tg_pool_t *pool, const char *message);
} client_t;

static char *dump(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* --- OpenAI -------------------------------------------------------------- */

static char *openai_error_body(int status, const char *type, const char *code, const char *msg) {
    return dump(json_pack("{s:{s:s,s:s,s:s?}}", "error", "message", msg, "type", type, "code", code));
}

static const char *openai_stream_done(tg_pool_t *pool, const char *cost_comment) {
    return tg_pool_printf(pool, "%sdata: [DONE]\n\n", cost_comment);
}

/* No [DONE] after it: a client must not take a broken answer for a whole one. */
static const char *openai_stream_broken(tg_pool_t *pool, const char *message) {
    char *s = openai_error_body(502, "upstream_error", "upstream_stream_broken", message);
    const char *out = s ? tg_pool_printf(pool, "data: %s\n\n", s) : NULL;
    free(s);
    return out;
}

/* --- Anthropic ----------------------------------------------------------- */

/* Anthropic error types by status (their API reference's table); 408 and
 * 431 come only from the HTTP server and are the request's fault. */
static const char *anthropic_type(int status) {
    switch (status) {
    case 400:
    case 408:
    case 431:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
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
        return "api_error";
    }
}

static char *anthropic_error_json(const char *type, const char *msg) {
    return dump(json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", type, "message", msg));
}

static char *anthropic_error_body(int status, const char *type, const char *code, const char *msg) {
    return anthropic_error_json(anthropic_type(status), msg);
}

/* The provider dialect relayed message_stop already: only the comment. */
static const char *anthropic_stream_done(tg_pool_t *pool, const char *cost_comment) {
    return cost_comment;
}

static const char *anthropic_stream_broken(tg_pool_t *pool, const char *message) {
    char *s = anthropic_error_json("api_error", message);
    const char *out = s ? tg_pool_printf(pool, "event: error\ndata: %s\n\n", s) : NULL;
    free(s);
    return out;
}

/* --- Responses API --------------------------------------------------------- */

/* The translator sent response.completed already: only the comment. */
static const char *responses_stream_done(tg_pool_t *pool, const char *cost_comment) {
    return cost_comment;
}

/* The fallback ending (client.h): an `error` event and a bare
 * response.failed. Without the provider dialect's translator there is no
 * output and no sequence to continue, so both carry sequence_number 0. */
static const char *responses_stream_broken(tg_pool_t *pool, const char *message) {
    char *e = dump(json_pack("{s:s,s:s,s:s,s:n,s:i}", "type", "error", "code", "upstream_stream_broken",
                             "message", message, "param", "sequence_number", 0));
    char *f =
        dump(json_pack("{s:s,s:{s:s,s:s,s:s,s:{s:s,s:s},s:[]},s:i}", "type", "response.failed", "response",
                       "id", "resp_failed", "object", "response", "status", "failed", "error", "code",
                       "upstream_stream_broken", "message", message, "output", "sequence_number", 0));
    const char *out =
        e && f ? tg_pool_printf(pool, "event: error\ndata: %s\n\nevent: response.failed\ndata: %s\n\n", e, f)
               : NULL;
    free(e);
    free(f);
    return out;
}

/* --- the table, indexed by tg_client_dialect_t ---------------------------- */

static const client_t clients[] = {
    [TG_CLIENT_OPENAI] = {"/v1/chat/completions", 0,
                          "missing gateway key: send 'Authorization: Bearer <key>'", openai_error_body,
                          openai_stream_done, openai_stream_broken},
    [TG_CLIENT_ANTHROPIC] = {"/v1/messages", 0,
                             "missing gateway key: send 'x-api-key: <key>' or 'Authorization: Bearer <key>'",
                             anthropic_error_body, anthropic_stream_done, anthropic_stream_broken},
    [TG_CLIENT_RESPONSES] = {"/v1/responses", 1, "missing gateway key: send 'Authorization: Bearer <key>'",
                             openai_error_body, responses_stream_done, responses_stream_broken},
};

static const client_t *entry(tg_client_dialect_t d) {
    return (size_t)d < sizeof(clients) / sizeof(clients[0]) ? &clients[d] : &clients[TG_CLIENT_OPENAI];
}

tg_client_dialect_t tg_client_for_path(const char *path, size_t len) {
    for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
        size_t pl = strlen(clients[i].path);
        if (len >= pl && memcmp(path, clients[i].path, pl) == 0 && (len == pl || path[pl] == '/'))
            return (tg_client_dialect_t)i;
    }
    return TG_CLIENT_OPENAI;
}

int tg_client_keeps_state(tg_client_dialect_t d) {
    return entry(d)->keeps_state;
}

const char *tg_client_auth_hint(tg_client_dialect_t d) {
    return entry(d)->auth_hint;
}

char *tg_client_error_body(tg_client_dialect_t d, int status, const char *type, const char *code,
                           const char *msg) {
    return entry(d)->error_body(status, type, code, msg);
}

const char *tg_client_stream_done(tg_client_dialect_t d, tg_pool_t *pool, const char *cost_comment) {
    return entry(d)->stream_done(pool, cost_comment);
}

const char *tg_client_stream_broken(tg_client_dialect_t d, tg_pool_t *pool, const char *message) {
    return entry(d)->stream_broken(pool, message);
}
