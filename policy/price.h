/* price.h — what a request is expected to cost on a candidate before it is
 * sent: prompt tokens estimated from the text's scripts, expected output
 * from max_tokens, prices of the UTC window in force. */
#ifndef TG_PRICE_H
#define TG_PRICE_H

#include <stdint.h>

#include "core/config.h"
#include "core/scan.h"
#include "policy/lang.h"

/* Expected output when the request sets no max_tokens. */
#define TG_PRICE_DEFAULT_OUTPUT 256

/* Estimated prompt tokens of the whole request: text_bytes split by the
 * script mix of the user text (CJK ~1 token a character, other text ~4 bytes
 * a token) plus a few tokens of framing per message. */
int64_t tg_price_estimate_prompt(const tg_scan_req_t *s);
/* The same from counts the caller already made over s->user_text. */
int64_t tg_price_estimate_prompt_counts(const tg_scan_req_t *s, const tg_lang_counts_t *c);
/* max_tokens when given, else TG_PRICE_DEFAULT_OUTPUT. */
int64_t tg_price_estimate_output(const tg_scan_req_t *s);
/* max_tokens when given, else def (routing.default_output_tokens), else
 * TG_PRICE_DEFAULT_OUTPUT when def <= 0. */
int64_t tg_price_estimate_output_def(const tg_scan_req_t *s, int64_t def);

/* Minute of the day (UTC, 0..1439) of a unix time in ms. */
int tg_price_minute(int64_t ts_ms);

/* Cost in pico-USD (1e-12 USD; exact, no rounding) of a request with these
 * token counts at price p, in the window in force at ts_ms, by the billing
 * rule of core/money.c. cached_in is the part of prompt_in served from the
 * provider's cache. -1 when p is NULL (no price known); INT64_MAX past what
 * int64_t holds. */
int64_t tg_price_cost_pusd(const tg_price_t *p, int64_t prompt_in, int64_t cached_in, int64_t output,
                           int64_t ts_ms);
/* The same rounded to micro-USD (half up); -1 when p is NULL. */
int64_t tg_price_cost_micro(const tg_price_t *p, int64_t prompt_in, int64_t cached_in, int64_t output,
                            int64_t ts_ms);
/* Output price (micro-USD per 1M tokens) in force at ts_ms; -1 when p is NULL. */
int64_t tg_price_output_at(const tg_price_t *p, int64_t ts_ms);

#endif
