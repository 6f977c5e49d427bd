/* price.c — cost estimates for routing: how many tokens a prompt is likely
 * to be, and what a request of that size costs on a candidate at the time
 * it starts. Prices come from the config snapshot (micro-USD per 1M tokens,
 * so tokens x price is pico-USD, exact in integers); tg_price_at (core/config_price.c)
 * applies the UTC window in force. The script mix is read from the bounded
 * user text the scanner kept, and scaled to all the request's text bytes,
 * so an estimate costs one pass over at most 4 KB. Nothing here allocates. */
#include "policy/price.h"

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
    int64_t m = (ts_ms / 60000) % 1440;
    return (int)(m < 0 ? m + 1440 : m);
}

int64_t tg_price_cost_pusd(const tg_price_t *p, int64_t prompt_in, int64_t cached_in, int64_t output,
                           int64_t ts_ms) {
    if (p == NULL) return -1;
    int64_t in, cin, out;
    tg_price_at(p, tg_price_minute(ts_ms), &in, &cin, &out);
    /* A price without a cached rate bills cache hits as plain input. */
    if (cin < 0) cin = in;
    if (cached_in > prompt_in) cached_in = prompt_in;
    if (cached_in < 0) cached_in = 0;
    int64_t plain = prompt_in - cached_in;
    if (plain < 0) plain = 0;
    if (output < 0) output = 0;
    return plain * in + cached_in * cin + output * out;
}

int64_t tg_price_cost_micro(const tg_price_t *p, int64_t prompt_in, int64_t cached_in, int64_t output,
                            int64_t ts_ms) {
    int64_t pusd = tg_price_cost_pusd(p, prompt_in, cached_in, output, ts_ms);
    return pusd < 0 ? -1 : (pusd + 500000) / 1000000;
}

int64_t tg_price_output_at(const tg_price_t *p, int64_t ts_ms) {
    if (p == NULL) return -1;
    int64_t in, cin, out;
    tg_price_at(p, tg_price_minute(ts_ms), &in, &cin, &out);
    return out;
}
