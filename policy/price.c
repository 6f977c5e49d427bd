/* price.c — cost estimates for routing: how many tokens a prompt is likely
 * to be, and what a request of that size costs on a candidate at the time
 * it starts. Prices come from the config snapshot (micro-USD per 1M tokens,
 * so tokens x price is pico-USD, exact in integers); core/money.c turns
 * counts into money with the UTC window in force (tg_price_at, core/config_price.c).
 * The script mix is read from the bounded
 * user text the scanner kept, and scaled to all the request's text bytes,
 * so an estimate costs one pass over at most 4 KB. Nothing here allocates. */
#include "policy/price.h"

#include "core/money.h"

/* Chat templates add a few tokens of framing around every message. */
#define TOKENS_PER_MESSAGE 4

int64_t tg_price_estimate_prompt_counts(const tg_scan_req_t *s, const tg_lang_counts_t *c) {
    int64_t total = (int64_t)s->text_bytes;
    int64_t framing = TOKENS_PER_MESSAGE * (int64_t)s->n_messages;
    if (c->bytes == 0 || c->cjk_bytes == 0) return (total + 3) / 4 + framing;
    /* CJK letters take 3 bytes each in UTF-8 (4 in the rare extensions) and
     * about one token each; everything else about 4 bytes a token. The
     * sample's CJK share of bytes stands for the whole text's. */
    int64_t cjk = total * (int64_t)c->cjk_bytes / (int64_t)c->bytes;
    int64_t rest = total - cjk;
    return (cjk + 2) / 3 + (rest + 3) / 4 + framing;
}

int64_t tg_price_estimate_prompt(const tg_scan_req_t *s) {
    tg_lang_counts_t c;
    tg_lang_count(s->user_text, s->user_text ? s->user_text_len : 0, &c);
    return tg_price_estimate_prompt_counts(s, &c);
}

int64_t tg_price_estimate_output(const tg_scan_req_t *s) {
    return tg_price_estimate_output_def(s, 0);
}

int64_t tg_price_estimate_output_def(const tg_scan_req_t *s, int64_t def) {
    if (s->max_tokens > 0) return s->max_tokens;
    return def > 0 ? def : TG_PRICE_DEFAULT_OUTPUT;
}

int tg_price_minute(int64_t ts_ms) {
    return tg_money_minute(ts_ms);
}

/* The estimate is the bill of the usage it expects: the same rule, in
 * core/money.c, so explain and the cheapest strategy price a request as the
 * ledger will. An estimate has no cache writes: nobody knows them before
 * the answer. */
static tg_usage_t expected(int64_t prompt_in, int64_t cached_in, int64_t output) {
    return (tg_usage_t){.input_tokens = prompt_in, .cached_input_tokens = cached_in, .output_tokens = output};
}

int64_t tg_price_cost_pusd(const tg_price_t *p, int64_t prompt_in, int64_t cached_in, int64_t output,
                           int64_t ts_ms) {
    tg_usage_t u = expected(prompt_in, cached_in, output);
    return tg_money_pusd(p, &u, ts_ms);
}

int64_t tg_price_cost_micro(const tg_price_t *p, int64_t prompt_in, int64_t cached_in, int64_t output,
                            int64_t ts_ms) {
    tg_usage_t u = expected(prompt_in, cached_in, output);
    return tg_money_micro(p, &u, ts_ms);
}

int64_t tg_price_output_at(const tg_price_t *p, int64_t ts_ms) {
    tg_money_rates_t r;
    return tg_money_rates(p, ts_ms, &r) < 0 ? -1 : r.output;
}
