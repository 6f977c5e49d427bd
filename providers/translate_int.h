/* translate_int.h — what translate.c (requests and whole answers) and
 * translate_stream.c (streams) share; not for other modules. */
#ifndef TG_TRANSLATE_INT_H
#define TG_TRANSLATE_INT_H

#include <jansson.h>

#include "core/usage.h"
#include "providers/jsonutil.h"

/* Usage in each dialect's shape, from the normalised counts. */
static inline json_t *usage_openai_json(const tg_usage_t *u) {
    return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)u->input_tokens,
                     "completion_tokens", (json_int_t)u->output_tokens, "total_tokens",
                     (json_int_t)(u->input_tokens + u->output_tokens), "prompt_tokens_details",
                     "cached_tokens", (json_int_t)u->cached_input_tokens);
}

static inline json_t *usage_anthropic_json(const tg_usage_t *u) {
    int64_t plain = u->input_tokens - u->cached_input_tokens - u->cache_write_tokens;
    return json_pack("{s:I,s:I,s:I,s:I}", "input_tokens", (json_int_t)(plain < 0 ? 0 : plain),
                     "cache_creation_input_tokens", (json_int_t)u->cache_write_tokens,
                     "cache_read_input_tokens", (json_int_t)u->cached_input_tokens, "output_tokens",
                     (json_int_t)u->output_tokens);
}

#endif
