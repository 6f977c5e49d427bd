/* metrics.h — process-wide counters and histograms, rendered as
 * Prometheus text for GET /metrics. Updates are lock-free atomics except
 * the per provider/model table, which takes a short mutex per request. */
#ifndef TG_METRICS_H
#define TG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/usage.h"

void tg_metrics_request(int status, int64_t duration_us);
/* One upstream attempt: result is "ok", "http_5xx", "http_429", "connect",
 * "timeout", "reset", "other". */
void tg_metrics_attempt(const char *provider, const char *result);
void tg_metrics_usage(const char *provider, const char *model, const tg_usage_t *u, int64_t cost_micro_usd);
/* Time from the request being ready to the first byte sent to the client. */
void tg_metrics_ttfb(int64_t us);
/* Malloc'd Prometheus text; the caller frees. `extra` is appended as is. */
char *tg_metrics_render(const char *extra, size_t *len);

#endif
