/* usage.h — token usage of one upstream answer, normalised across dialects. */
#ifndef TG_USAGE_H
#define TG_USAGE_H

#include <stdint.h>

/* The largest token count taken from a provider or a client; larger ones are
 * held to it. A billion tokens is far above any context window, and keeps
 * sums of counts and count x price (pico-USD) inside int64_t. */
#define TG_COUNT_MAX ((int64_t)1000000000)

typedef struct {
    int64_t input_tokens;        /* every prompt token, cached and cache-written included */
    int64_t cached_input_tokens; /* the part served from the provider's cache */
    int64_t cache_write_tokens;  /* the part written to the cache (Anthropic) */
    int64_t output_tokens;       /* reasoning included */
    int64_t reasoning_tokens;    /* that part */
    int present;                 /* the provider reported usage */
    int estimated;               /* counts are our estimate (provider sent none) */
} tg_usage_t;

#endif
