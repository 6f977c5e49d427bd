/* config_price.c — price entries of a snapshot: the entry of a
 * provider/model, and the prices in force at a minute of the day once the
 * entry's time windows are applied. Whether a minute lies in a window is
 * also what route `time:` matches use. Money itself (tokens x price) is
 * computed in policy/price.c. */
#include "core/config.h"

#include <string.h>

const tg_price_t *tg_config_price(const tg_config_t *c, const char *provider, const char *model) {
    for (size_t i = 0; i < c->n_prices; i++)
        if (!strcmp(c->prices[i].provider, provider) && !strcmp(c->prices[i].model, model))
            return &c->prices[i];
    return NULL;
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
