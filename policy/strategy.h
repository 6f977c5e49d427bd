/* strategy.h — orders a route's remaining candidates (after require: and
 * circuit filtering) by the route's strategy: the first is the one to try,
 * the rest the failover order. */
#ifndef TG_STRATEGY_H
#define TG_STRATEGY_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "policy/health.h"

typedef struct {
    const tg_candidate_t *cand;
    size_t index;              /* its position in the route's candidate list */
    tg_health_entry_t *health; /* NULL: nothing known about it */
    int64_t cost_pusd;         /* estimated request cost (pico-USD), -1 no price known */
    double score_ms;           /* latency score, filled by tg_strategy_order for every strategy */
    int score_known;           /* 0: score_ms is the optimistic default of an unmeasured candidate */
} tg_strategy_item_t;

typedef struct {
    tg_strategy_t strategy;
    const char *route;       /* keys the weighted round robin state */
    size_t route_n;          /* candidates the route lists */
    uint64_t route_sig;      /* tg_strategy_sig of that list */
    int64_t expected_output; /* tokens */
    int64_t now_ms;          /* the health clock */
    tg_health_t *health;     /* the worker's; NULL = stateless (explain, tests) */
} tg_strategy_in_t;

/* A measured latency older than this is treated as unknown, so a candidate
 * that was slow once gets re-measured now and then. */
#define TG_STRATEGY_STALE_MS 30000
/* fastest: a candidate's score is multiplied by 1 + in-flight / this. */
#define TG_STRATEGY_INFLIGHT_SCALE 8

/* Reorders items[0..n) in place (given in listed order):
 * ordered   as listed;
 * weighted  smooth weighted round robin (nginx) over the items present,
 *           state per route in the worker's health table; failover in the
 *           order the round robin would pick next;
 * cheapest  ascending cost_pusd, unknown prices last, ties as listed;
 * fastest   power of two choices: two items drawn at random by weight, the
 *           better of score x (1 + in flight / TG_STRATEGY_INFLIGHT_SCALE)
 *           first, the rest by that value. */
void tg_strategy_order(const tg_strategy_in_t *in, tg_strategy_item_t *items, size_t n);

/* Expected ms to a full answer: EWMA ttft + expected_output / tokens-per-s;
 * -1 when never measured or stale. */
double tg_strategy_latency(const tg_health_entry_t *e, int64_t expected_output, int64_t now_ms);

/* Digest of a route's candidate list, so per-route state resets when a
 * reload changes it. */
uint64_t tg_strategy_sig(const tg_candidate_t *c, size_t n);

const char *tg_strategy_name(tg_strategy_t s);

#endif
