/* config_price.c — price entries of a snapshot: the entry of a
 * provider/model (exact, or by a pattern key such as
 * anthropic/claude-opus-*), what kind of request it may serve, and the
 * prices in force at a minute of the day once the entry's time windows are
 * applied. Whether a minute lies in a window is also what route `time:`
 * matches use. Model patterns are matched here for prices, aliases and
 * routes alike. Money itself (tokens x price) is computed in core/money.c. */
#include "core/config_int.h"

int tg_config_model_match(const char *pattern, const char *model) {
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*') return strncmp(pattern, model, n - 1) == 0;
    return strcmp(pattern, model) == 0;
}

/* Exact entries beat patterns; among patterns the longest literal prefix
 * wins, so anthropic/claude-opus-4-1* can price an older model apart from
 * anthropic/claude-opus-*. Loading refuses two entries with one key, so
 * there is never a tie. */
const tg_price_t *cfg_price_find(const tg_price_t *v, size_t n, const char *provider, const char *model) {
    const tg_price_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < n; i++) {
        const tg_price_t *p = &v[i];
        if (strcmp(p->provider, provider) != 0) continue;
        if (!p->pattern) {
            if (strcmp(p->model, model) == 0) return p;
            continue;
        }
        size_t len = strlen(p->model) - 1;
        if ((best == NULL || len > best_len) && strncmp(p->model, model, len) == 0) {
            best = p;
            best_len = len;
        }
    }
    return best;
}

const tg_price_t *tg_config_price(const tg_config_t *c, const char *provider, const char *model) {
    return cfg_price_find(c->prices, c->n_prices, provider, model);
}

int tg_config_price_serves(const tg_price_t *p, tg_kind_t kind) {
    return p->embedding ? kind == TG_KIND_EMBEDDINGS : kind != TG_KIND_EMBEDDINGS;
}

int tg_config_in_window(int from_min, int to_min, int min) {
    if (from_min == to_min) return 1;
    if (from_min < to_min) return min >= from_min && min < to_min;
    return min >= from_min || min < to_min;
}

void tg_price_at(const tg_price_t *p, int min, int64_t *input, int64_t *cached_input, int64_t *output) {
    *input = p->input;
    *cached_input = p->cached_input;
    *output = p->output;
    min = ((min % 1440) + 1440) % 1440;
    for (size_t i = 0; i < p->n_windows; i++) {
        const tg_price_window_t *w = &p->windows[i];
        if (!tg_config_in_window(w->from_min, w->to_min, min)) continue;
        if (w->input >= 0) *input = w->input;
        if (w->cached_input >= 0) *cached_input = w->cached_input;
        if (w->output >= 0) *output = w->output;
        return;
    }
}
