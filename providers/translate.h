/* translate.h — OpenAI chat completions <-> Anthropic messages, both ways:
 * requests and whole answers as pure functions over jansson values, and
 * streams as small incremental state machines that turn one upstream SSE
 * event into zero or more client events (never holding the whole answer).
 * The mapping is tabled in docs/responses.md (Chat and Messages columns); the
 * gaps are listed at the top of translate.c. */
#ifndef TG_TRANSLATE_H
#define TG_TRANSLATE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/pool.h"
#include "core/usage.h"

/* Inputs and side notes of a request translation. */
typedef struct {
    const char *model;          /* model for the output request (NULL keeps the input's) */
    int64_t default_max_tokens; /* OpenAI -> Anthropic: max_tokens when the client gave none */
    char note[256];             /* out: what was changed or dropped, for a log line ("" = nothing) */
} tg_tr_req_opts_t;

/* Each returns a new reference, or NULL with a message a person can act on
 * in err (a 400 for the client). The input is not modified. */
json_t *tg_tr_req_openai_to_anthropic(const json_t *req, tg_tr_req_opts_t *o, char *err, size_t errlen);
json_t *tg_tr_req_anthropic_to_openai(const json_t *req, tg_tr_req_opts_t *o, char *err, size_t errlen);
/* Whole answers. `created` is the chat.completion's timestamp. */
json_t *tg_tr_resp_anthropic_to_openai(const json_t *msg, int64_t created, char *err, size_t errlen);
json_t *tg_tr_resp_openai_to_anthropic(const json_t *resp, char *err, size_t errlen);

/* Serialises o (compact) into the pool and drops the reference; NULL when
 * out of memory. */
char *tg_tr_dump(tg_pool_t *pool, json_t *o, size_t *len);

/* finish_reason <-> stop_reason (unknown values map to stop / end_turn). */
const char *tg_tr_finish_reason(const char *stop_reason);
const char *tg_tr_stop_reason(const char *finish_reason);

/* Usage of either dialect into the gateway's normalised counts. */
void tg_tr_usage_anthropic(const json_t *usage, tg_usage_t *u);
void tg_tr_usage_openai(const json_t *usage, tg_usage_t *u);

/* Where a stream translator sends client events (event NULL: data only). */
typedef int (*tg_tr_emit_fn)(void *ud, const char *event, const char *data, size_t len);

enum { TG_TR_MORE = 0, TG_TR_DONE = 1, TG_TR_ERROR = -1 };

typedef struct tg_tr_stream_s tg_tr_stream_t;

/* A translator for one attempt, from the pool. to_openai: Anthropic events
 * -> OpenAI chunks (include_usage: end with the usage chunk); else OpenAI
 * chunks -> Anthropic events. */
tg_tr_stream_t *tg_tr_stream_new(tg_pool_t *pool, int to_openai, int include_usage, int64_t created);
/* One upstream event. Updates *u from any usage seen, emits what the
 * client gets, adds the answer's text bytes to *content_bytes. Returns
 * TG_TR_DONE after the client's last event (Anthropic: message_stop was
 * emitted; OpenAI: the client's [DONE] is left to the caller), TG_TR_ERROR
 * with a text in err when the provider reported an error or sent garbage. */
int tg_tr_stream_event(tg_tr_stream_t *s, const char *event, const char *data, size_t len, tg_usage_t *u,
                       size_t *content_bytes, tg_tr_emit_fn emit, void *ud, char *err, size_t errlen);

#endif
