/* scan.h — one-pass scans of JSON bodies with jsmn (strict mode), without
 * building a DOM, and byte splicing of the few fields the gateway changes.
 * A pass-through body is read once into one buffer, scanned once, and
 * forwarded with edits spliced in; docs/design.md ("Scan and splice") says
 * why. */
#ifndef TG_SCAN_H
#define TG_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"

/* A byte range of the scanned body. */
typedef struct {
    size_t off, len;
} tg_span_t;

#define TG_SCAN_MAX_DEPTH 64 /* deeper JSON is refused: 400 */

/* What the gateway needs from a chat request (OpenAI or Anthropic shape:
 * both have model, stream, max_tokens, messages, tools). */
typedef struct {
    int has_model;
    tg_span_t model;       /* the string's content between the quotes, raw */
    const char *model_str; /* decoded, NUL-terminated, from the pool */
    int stream;            /* "stream": true */
    int has_stream_options;
    tg_span_t stream_options; /* the whole value: object, braces included, or null */
    int has_include_usage;
    tg_span_t include_usage_val; /* the value token of stream_options.include_usage
                                    (true, false or null) */
    int include_usage;           /* the client asked for the usage chunk */
    int64_t max_tokens;          /* max_tokens or max_completion_tokens; -1 absent */
    int has_tools;               /* non-empty "tools" array */
    int has_images;              /* an image_url / image content part anywhere in messages */
    size_t n_messages;
    size_t text_bytes;     /* decoded bytes of all message text (every role) */
    size_t user_text_len;  /* bytes in user_text */
    const char *user_text; /* decoded text of user messages (content strings and
                              text parts), at most TG_SCAN_TEXT_MAX bytes, cut on a
                              UTF-8 boundary, NUL-terminated, from the pool */
    size_t obj_end;        /* offset of the top-level object's closing '}' */
    int obj_empty;         /* the top-level object has no members */
} tg_scan_req_t;

#define TG_SCAN_TEXT_MAX 4096

/* Scans a request body. The body must be exactly one JSON object (tokens
 * cover the whole input, trailing whitespace allowed, at most
 * TG_SCAN_MAX_DEPTH levels deep). Duplicate members: the last one counts, as
 * in the parsers upstream, and a duplicated "model" is refused. Checks the types of
 * the fields it reads: model string, stream boolean, stream_options object
 * with boolean include_usage, max_tokens/max_completion_tokens non-negative
 * integers, messages a non-empty array of objects each with a string role
 * and content string / array / null, tools an array. Every string must be
 * UTF-8 without raw control bytes or lone surrogate escapes, and no
 * top-level key may equal a routed or billed name ("model", "stream", ...)
 * only up to case folding. Returns 0, or -1 with a message a person can act
 * on in err ("'stream' must be a boolean", "invalid UTF-8 at byte 52"). */
int tg_scan_request(const char *body, size_t len, tg_pool_t *pool, tg_scan_req_t *out, char *err,
                    size_t errlen);
/* The same for a body that need not carry messages (an embeddings request:
 * model, input, dimensions...): every field above is checked when present. */
int tg_scan_request_bare(const char *body, size_t len, tg_pool_t *pool, tg_scan_req_t *out, char *err,
                         size_t errlen);

/* What the gateway needs from an answer: a non-stream response body or one
 * stream chunk (OpenAI dialect). Missing numbers are -1. */
typedef struct {
    int has_usage; /* a non-null "usage" object */
    int64_t prompt_tokens, completion_tokens;
    int64_t cached_tokens;     /* usage.prompt_tokens_details.cached_tokens */
    int64_t reasoning_tokens;  /* usage.completion_tokens_details.reasoning_tokens */
    int64_t cache_hit_tokens;  /* DeepSeek usage.prompt_cache_hit_tokens */
    int64_t cache_miss_tokens; /* DeepSeek usage.prompt_cache_miss_tokens */
    int choices_empty;         /* "choices": [] — the usage-only chunk */
    int has_error;             /* a top-level "error" member */
    int has_finish;            /* some choice has a non-null finish_reason */
    size_t content_bytes;      /* decoded bytes of content, reasoning_content and
                                  tool-call arguments in message/delta (for estimates) */
} tg_scan_resp_t;

/* Returns 0, or -1 when the text is not one JSON object. Unlike requests,
 * answers may carry raw control bytes, bytes that are not UTF-8 and lone
 * surrogate escapes (they are relayed as the provider sent them). The pool
 * is not used: the scan's scratch is freed before it returns. */
int tg_scan_response(const char *json, size_t len, tg_pool_t *pool, tg_scan_resp_t *out);

/* The cheap path for one stream chunk (OpenAI dialect): 1 when the chunk is
 * one JSON object that tg_scan_response would accept with no usage object
 * and no error (a usage or error member may be null), and then
 * *content_bytes is the content_bytes that scan would give; 0 when the
 * caller must run tg_scan_response (the chunk may carry usage or an error,
 * is not JSON, or is written in a way this skim leaves to the full scan).
 * Keeps nothing and allocates nothing. */
int tg_scan_chunk_plain(const char *json, size_t len, size_t *content_bytes);

/* One replacement: bytes [off, off+len) of the source become rep[0..rep_len).
 * len 0 inserts. */
typedef struct {
    size_t off, len;
    const char *rep;
    size_t rep_len;
} tg_edit_t;

/* Applies edits (non-overlapping, in any order: they are put in body order,
 * an insertion before a replacement at the same offset) to src, into a new
 * buffer from the pool (NUL-terminated). NULL when edits overlap or fall
 * outside src. */
char *tg_splice(tg_pool_t *pool, const char *src, size_t len, const tg_edit_t *e, size_t n, size_t *out_len);

/* Appends to edits[*n] (at most max in all, so pass the array's base, not
 * edits + *n) what makes the spliced body carry stream_options.include_usage
 * == true, keeping other members; nothing when it already does. -1 when
 * there is no room. */
int tg_scan_force_include_usage(const char *body, const tg_scan_req_t *s, tg_edit_t *edits, size_t *n,
                                size_t max);
/* The edit replacing the model string's content with `model` (escaped);
 * -1 when the body has no model member. */
int tg_scan_set_model(const tg_scan_req_t *s, const char *model, tg_pool_t *pool, tg_edit_t *edit);

/* Escapes s as a JSON string body (no quotes) into the pool, by the rule
 * of core/json.h. */
char *tg_json_escape(tg_pool_t *pool, const char *s, size_t len, size_t *out_len);

#endif
