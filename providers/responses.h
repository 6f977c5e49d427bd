/* responses.h — the OpenAI Responses API (POST /v1/responses) over the two
 * dialects the gateway speaks upstream: a Responses request becomes a Chat
 * Completions request (OpenAI-dialect vendors) or an Anthropic Messages
 * request (Claude); their answers, whole or streamed, become a Response
 * object or Responses stream events. Like translate.h: requests and whole
 * answers are pure functions over jansson values, streams are incremental
 * translators that turn one upstream SSE event into zero or more client
 * events. Nothing here stores anything: previous_response_id is resolved by
 * the caller, which passes the stored items back in (see tg_rs_stored).
 * Gaps and choices are listed at the top of responses_req.c,
 * responses.c and responses_stream.c. */
#ifndef TG_RESPONSES_H
#define TG_RESPONSES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/pool.h"
#include "core/usage.h"
#include "providers/translate.h"

/* --- requests --------------------------------------------------------------- */

/* Inputs and side notes of a request translation. */
typedef struct {
    const char *model;          /* model for the upstream request (NULL keeps the input's) */
    int64_t default_max_tokens; /* Claude: max_tokens when the client gave no max_output_tokens */
    int max_completion_tokens;  /* Chat: send the limit as max_completion_tokens (OpenAI's own models
                                   want it) rather than max_tokens (what most other vendors read) */
    int native_tools;           /* Chat: the provider runs OpenAI's built-in tools (web_search...),
                                   so they pass through instead of being refused; no effect for Claude */
    const json_t *previous;     /* items of the previous response, as tg_rs_stored wrote them (a
                                   JSON array), put before the request's input; NULL: none */
    char note[256];             /* out: what was changed or dropped, for a log line ("" = nothing) */
} tg_rs_req_opts_t;

/* Each returns a new reference, or NULL with a message a person can act on
 * in err (a 400 for the client: an unknown item type, an input_image by
 * file_id, a built-in tool the provider cannot run, named). The input is
 * not modified. `store` and `previous_response_id` are never forwarded. */
json_t *tg_rs_req_to_chat(const json_t *req, tg_rs_req_opts_t *o, char *err, size_t errlen);
json_t *tg_rs_req_to_anthropic(const json_t *req, tg_rs_req_opts_t *o, char *err, size_t errlen);

/* The request's conversation as Responses input items: `previous` (may be
 * NULL) then the request's input (a string becomes one user message item).
 * A new array, or NULL when input is neither a string nor an array. */
json_t *tg_rs_input_items(const json_t *req, const json_t *previous);

/* --- answers ---------------------------------------------------------------- */

/* What a Response carries besides the upstream answer. */
typedef struct {
    const char *id;     /* the caller's id: the response is "resp_<id>", its items
                           "rs_<id>_<n>", "msg_<id>_<n>", "fc_<id>_<n>" (n = output index) */
    int64_t created_at; /* unix seconds */
    const char *model;  /* model to report; NULL: the one the upstream answer names */
    const json_t *req;  /* the client's Responses request, for the echo fields
                           (instructions, tools, text, reasoning...); NULL: defaults */
} tg_rs_resp_opts_t;

/* A Response with no output yet: status and the echo fields, usage null.
 * The building block of the answers and of the stream's lifecycle events. */
json_t *tg_rs_response_new(const tg_rs_resp_opts_t *o, const char *model, const char *status);

/* A whole upstream answer as a Response object (status completed, or
 * incomplete with incomplete_details.reason max_output_tokens /
 * content_filter). *u receives the usage as tg_tr_usage_* would (u may be
 * NULL). NULL with err when the answer is not of the expected shape. */
json_t *tg_rs_resp_from_chat(const json_t *resp, const tg_rs_resp_opts_t *o, tg_usage_t *u, char *err,
                             size_t errlen);
json_t *tg_rs_resp_from_anthropic(const json_t *msg, const tg_rs_resp_opts_t *o, tg_usage_t *u, char *err,
                                  size_t errlen);

/* The Response's usage object from the normalised counts. */
json_t *tg_rs_usage_json(const tg_usage_t *u);

/* Output items, as a Response lists them (the stream's events carry the
 * same shapes). text / args may be NULL; empty arguments become "{}" once
 * the call is complete. status is "in_progress" or "completed". */
json_t *tg_rs_item_message(const char *id, const char *text, size_t len, const char *status);
json_t *tg_rs_item_reasoning(const char *id, const char *text, size_t len);
json_t *tg_rs_item_call(const char *id, const char *call_id, const char *name, const char *args, size_t len,
                        const char *status);

/* --- helpers for the request layer --------------------------------------- */

/* The stored form of a finished response, for previous_response_id
 * chaining: a JSON array (text, in the pool) of the request's input items
 * (tg_rs_input_items, `previous` included) followed by the response's
 * output items. Pass it back, parsed, as tg_rs_req_opts_t.previous. NULL
 * when the request's input or the response's output is not usable. */
char *tg_rs_stored(tg_pool_t *pool, const json_t *req, const json_t *previous, const json_t *response,
                   size_t *len);

/* An error body of OpenAI's shape, {"error":{"message","type","param":null,
 * "code"}} (code NULL: null), in the pool. */
char *tg_rs_error_body(tg_pool_t *pool, const char *message, const char *type, const char *code, size_t *len);

/* --- streams ---------------------------------------------------------------- */

typedef struct tg_rs_stream_s tg_rs_stream_t;

/* A translator for one attempt, from the pool: Chat chunks (from_anthropic
 * 0) or Anthropic events (1) -> Responses events. o is copied (its request
 * is read now and not kept). Every emitted event has the SSE name of its
 * `type` and a `sequence_number` 0, 1, 2...; the stream has no [DONE]. */
tg_rs_stream_t *tg_rs_stream_new(tg_pool_t *pool, int from_anthropic, const tg_rs_resp_opts_t *o);

/* One upstream event, as tg_tr_stream_event: updates *u from any usage
 * seen, emits what the client gets, adds the answer's text bytes to
 * *content_bytes. Returns TG_TR_DONE after the last client event
 * (response.completed or response.incomplete), TG_TR_ERROR with a text in
 * err when the provider reported an error or sent garbage: then nothing
 * more is emitted and the caller either fails over (nothing was emitted
 * yet: tg_rs_stream_started says) or ends the stream with tg_rs_stream_fail.
 * response.created is held back until there is something to send, so an
 * early upstream error can still fail over. */
int tg_rs_stream_event(tg_rs_stream_t *s, const char *event, const char *data, size_t len, tg_usage_t *u,
                       size_t *content_bytes, tg_tr_emit_fn emit, void *ud, char *err, size_t errlen);

/* Whether any client event was emitted. */
int tg_rs_stream_started(const tg_rs_stream_t *s);

/* The failure ending, for an upstream break or a provider error mid-stream:
 * response.created if it was not sent yet, then an `error` event and
 * response.failed (status "failed", error {code, message}, the output so
 * far, usage from *u). Does nothing once the stream has ended. */
void tg_rs_stream_fail(tg_rs_stream_t *s, const char *code, const char *message, const tg_usage_t *u,
                       tg_tr_emit_fn emit, void *ud);

/* The finished Response (the one response.completed / .incomplete /
 * .failed carried) as JSON text in the pool, for tg_rs_stored; NULL while
 * the stream has not ended. */
const char *tg_rs_stream_response(const tg_rs_stream_t *s, size_t *len);

#endif
