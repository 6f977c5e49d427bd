/* responses_fast.h — the cheap path of the Responses API for the common
 * shapes: a plain request (model, instructions, text input, a few numbers)
 * becomes its Chat Completions body, and a plain chat completion (one text
 * answer) becomes its Response, by assembling bytes from one validating
 * pass over the JSON text, without a DOM. Each produces exactly the text
 * the jansson translation (responses_req.c, responses.c, dumped by
 * tg_tr_dump) produces for the same input; anything outside those shapes is
 * refused, and the caller takes the jansson path. Also the request as the
 * gateway keeps it between phases (tg_rs_prep_t): translated once for
 * routing, reused by every OpenAI-dialect attempt with the model spliced,
 * parsed with jansson only when something needs the DOM. */
#ifndef TG_RESPONSES_FAST_H
#define TG_RESPONSES_FAST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/pool.h"
#include "core/scan.h"
#include "core/usage.h"

/* A Responses request between its phases. Lives in the request's pool
 * (zeroed); the owner json_decref()s req when the request ends. */
typedef struct tg_rs_prep_s {
    const char *src; /* the client's body, as received */
    size_t src_len;
    json_t *req;      /* the client's request parsed; NULL until first needed when fast */
    int fast;         /* chat and the echo fields below came from tg_rs_fast_req */
    const char *chat; /* the Chat Completions form, with the request's own model (routing) */
    size_t chat_len;
    int reuse;      /* every OpenAI-dialect attempt may splice chat instead of translating
                       again: no built-in tool that one provider runs and another refuses */
    int store;      /* the Response is to be stored (store absent, null or true) */
    char note[256]; /* what the translation dropped, for the attempts' log line ("" = nothing) */
    /* Fast requests: the Response's echo fields, each a run of ,"key":value. */
    const char *echo_a, *echo_b, *echo_c;
} tg_rs_prep_t;

/* Translates a request of the common shapes to its Chat form and fills p
 * (src, fast, chat, reuse, store, note, echo_*): 0. -1 when the request is
 * of another shape, is not valid JSON, or is in any way one the jansson
 * path should judge (its errors included): p is then left as it was. */
int tg_rs_fast_req(tg_pool_t *pool, const char *body, size_t len, tg_rs_prep_t *p);

/* The request parsed with jansson, parsed on first use (src must be set).
 * NULL when it is not JSON. */
const json_t *tg_rs_prep_req(tg_rs_prep_t *p);

/* Whether a Chat body translated for routing (built-in tools let through)
 * serves every OpenAI-dialect attempt: no tool other than function tools. */
int tg_rs_chat_reusable(const json_t *req);

/* An attempt's Chat body from the routing one (chat, scanned into s): the
 * model replaced by `model`, and for max_completion_tokens the top-level
 * "max_tokens" key renamed, exactly as tg_rs_req_to_chat would have written
 * them. In the pool; NULL when out of memory or the model is not UTF-8. */
char *tg_rs_chat_splice(tg_pool_t *pool, const char *chat, size_t len, const tg_scan_req_t *s,
                        const char *model, int max_completion_tokens, size_t *out_len);

/* A chat completion with one plain text answer (no tool calls, reasoning
 * or refusal) as the Response tg_rs_resp_from_chat would build for p's
 * request, with usage from *u (which must be present): 0 with the text in
 * the pool. -1 when the answer is of another shape (take the jansson
 * path). p must be fast. */
int tg_rs_fast_answer(tg_pool_t *pool, const tg_rs_prep_t *p, const char *body, size_t len, const char *id,
                      int64_t created_at, const char *model, const tg_usage_t *u, const char **out,
                      size_t *out_len);

#endif
