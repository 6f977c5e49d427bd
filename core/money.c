/* money.c — token usage x price -> micro-USD, and micro-USD as text. It owns
 * the billing rule: which tokens are billed at which rate, how counts are
 * held in range, and the one rounding. Usage comes in as a tg_usage_t
 * (core/usage.h), prices as a config snapshot's tg_price_t whose UTC window
 * tg_price_at (core/config_price.c) selects; integers leave. Nothing here
 * allocates or keeps state. */
#include "core/money.h"

#include <inttypes.h>
#include <stdio.h>

#define PICO_PER_MICRO 1000000

int tg_money_minute(int64_t ts_ms) {
    int64_t m = (ts_ms / 60000) % 1440;
    return (int)(m < 0 ? m + 1440 : m);
}

int tg_money_rates(const tg_price_t *p, int64_t ts_ms, tg_money_rates_t *r) {
    if (p == NULL) return -1;
    int64_t in, cin, out;
    tg_price_at(p, tg_money_minute(ts_ms), &in, &cin, &out);
    /* The config fills a missing cached or cache-write rate with the input
     * rate when it loads; a price built elsewhere gets the same treatment,
     * so a cache hit never costs less than nothing is known about. */
    r->input = in < 0 ? 0 : in;
    r->cached_input = cin < 0 ? r->input : cin;
    r->cache_write = p->cache_write < 0 ? r->input : p->cache_write; /* windows do not change it */
    r->output = out < 0 ? 0 : out;
    return 0;
}

static int64_t clamp_count(int64_t n) {
    return n < 0 ? 0 : n > TG_COUNT_MAX ? TG_COUNT_MAX : n;
}

/* The cost split so that neither part can overflow: whole micro-USD from
 * the millions of each rate, and the pico-USD left from the rest. With
 * counts <= TG_COUNT_MAX (input parts adding up to at most the input) and
 * rates <= 1e15 (the config's largest), whole <= 2e18 and rest <= 2e15. */
typedef struct {
    int64_t whole_micro, rest_pusd;
} split_t;

static void add(split_t *s, int64_t tokens, int64_t rate) {
    s->whole_micro += tokens * (rate / PICO_PER_MICRO);
    s->rest_pusd += tokens * (rate % PICO_PER_MICRO);
}

static int cost(const tg_price_t *p, const tg_usage_t *u, int64_t ts_ms, split_t *s) {
    tg_money_rates_t r;
    if (tg_money_rates(p, ts_ms, &r) < 0) return -1;
    /* input_tokens counts every prompt token; the cached and cache-written
     * parts are billed at their own rates and the remainder at the input
     * rate. A provider that reports more cached than prompt tokens is
     * believed only up to the prompt. */
    int64_t in = clamp_count(u->input_tokens);
    int64_t cached = clamp_count(u->cached_input_tokens);
    if (cached > in) cached = in;
    int64_t written = clamp_count(u->cache_write_tokens);
    if (written > in - cached) written = in - cached;
    *s = (split_t){0, 0};
    add(s, in - cached - written, r.input);
    add(s, cached, r.cached_input);
    add(s, written, r.cache_write);
    add(s, clamp_count(u->output_tokens), r.output); /* reasoning is inside output */
    return 0;
}

int64_t tg_money_micro(const tg_price_t *p, const tg_usage_t *u, int64_t ts_ms) {
    split_t s;
    if (cost(p, u, ts_ms, &s) < 0) return -1;
    /* Rounding the whole pico-USD sum half up, (pusd + 500000) / 1e6, is
     * the same as rounding only the rest: whole_micro x 1e6 divides evenly. */
    return s.whole_micro + (s.rest_pusd + PICO_PER_MICRO / 2) / PICO_PER_MICRO;
}

int64_t tg_money_pusd(const tg_price_t *p, const tg_usage_t *u, int64_t ts_ms) {
    split_t s;
    if (cost(p, u, ts_ms, &s) < 0) return -1;
    if (s.whole_micro > (INT64_MAX - s.rest_pusd) / PICO_PER_MICRO) return INT64_MAX;
    return s.whole_micro * PICO_PER_MICRO + s.rest_pusd;
}

int64_t tg_money_round(int64_t pusd) {
    if (pusd < 0) return -1;
    /* (pusd + 500000) / 1e6 without the addition, which could overflow. */
    return pusd / PICO_PER_MICRO + (pusd % PICO_PER_MICRO >= PICO_PER_MICRO / 2);
}

int64_t tg_money_from_usd(double usd) {
    return usd > 0 ? (int64_t)(usd * 1e6 + 0.5) : 0;
}

char *tg_money_format(int64_t micro, char out[TG_MONEY_TEXT_MAX]) {
    uint64_t u = micro < 0 ? (uint64_t)0 - (uint64_t)micro : (uint64_t)micro;
    snprintf(out, TG_MONEY_TEXT_MAX, "%s%" PRIu64 ".%06" PRIu64, micro < 0 ? "-" : "", u / 1000000,
             u % 1000000);
    return out;
}
