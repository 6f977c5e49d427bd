/* money.h — the one place where token counts become money. Everything that
 * bills (gateway/request.c), estimates (policy/price.c, for explain and the
 * cheapest strategy), limits (gateway/quota.c) or reports money calls this,
 * so an estimate and the bill of the same usage are the same number.
 *
 * Money is integer micro-USD (1e-6 USD). Prices are micro-USD per 1M tokens,
 * so tokens x price is pico-USD (1e-12 USD), exact in integers, and one
 * rounding to micro-USD, half up, ends the sum. No floating point. */
#ifndef TG_MONEY_H
#define TG_MONEY_H

#include <stdint.h>

#include "core/config.h"
#include "core/usage.h"

/* Bytes tg_money_format needs: sign, 13 digits of whole dollars, point, 6
 * digits, NUL (INT64_MIN included), with room to spare. */
#define TG_MONEY_TEXT_MAX 32

/* The prices (micro-USD per 1M tokens) in force for one request. */
typedef struct {
    int64_t input;        /* prompt tokens not served from cache */
    int64_t cached_input; /* prompt tokens served from the provider's cache */
    int64_t cache_write;  /* prompt tokens written to the cache (Anthropic) */
    int64_t output;       /* output tokens, reasoning included */
} tg_money_rates_t;

/* Minute of the day (UTC, 0..1439) of a unix time in ms. */
int tg_money_minute(int64_t ts_ms);

/* The rates of price p in the UTC window in force at ts_ms (the window is
 * chosen by tg_price_at, core/config_price.c). A missing cached_input or
 * cache_write rate (< 0) is the input rate; a missing input or output rate
 * is 0. Returns -1 (r untouched) when p is NULL, else 0. */
int tg_money_rates(const tg_price_t *p, int64_t ts_ms, tg_money_rates_t *r);

/* Cost of usage u at price p for a request that started at ts_ms, in
 * micro-USD, rounded half up once over the exact pico-USD sum; -1 when p is
 * NULL. Counts are held to 0..TG_COUNT_MAX, cached input to the input,
 * cache writes to the input not cached; reasoning tokens are a part of
 * output and cost nothing more. Exact for any counts and any price the
 * config accepts. */
int64_t tg_money_micro(const tg_price_t *p, const tg_usage_t *u, int64_t ts_ms);

/* The same before rounding, in pico-USD; INT64_MAX when it does not fit
 * (only prices far above any real one do that); -1 when p is NULL. */
int64_t tg_money_pusd(const tg_price_t *p, const tg_usage_t *u, int64_t ts_ms);

/* pico-USD to micro-USD by the rule above (half up); -1 for a negative
 * input (no price known). */
int64_t tg_money_round(int64_t pusd);

/* A configured amount of USD (a budget) in micro-USD, rounded half up. */
int64_t tg_money_from_usd(double usd);

/* micro-USD as decimal USD text with six places ("0.000123", "-1.500000"),
 * written to out; returns out. */
char *tg_money_format(int64_t micro, char out[TG_MONEY_TEXT_MAX]);

#endif
