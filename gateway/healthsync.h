/* healthsync.h — provider health across gateway instances on one Redis: an open circuit or a
 * retry-after that one instance learned keeps every instance away from that provider/model
 * until its deadline, within about a second, with no Redis round trip on the request path.
 * One per process, on one worker's loop, over that worker's ledger (its quota link, which
 * carries no usage records, so a journal replay does not delay it)
 * (gateway/ledger.h); it reads and writes the process's health table (policy/health.h). */
#ifndef TG_HEALTHSYNC_H
#define TG_HEALTHSYNC_H

#include <stddef.h>
#include <stdint.h>

#include "policy/health.h"

struct event_base;
struct tg_ledger_s;
typedef struct tg_healthsync_s tg_healthsync_t;

/* Starts the two timers on base: every publish period (100 ms) the entries of h whose own
 * open circuit or retry-after is new or later than what was last sent go to Redis
 * (TG_KEY_HEALTH, gateway/keys.h) in one script; every poll period (500 ms) the whole hash
 * is read and each live mark imported into h (tg_health_import: the merge rule). Commands
 * go through l (tg_ledger_quick_query) and wait while it is not connected. NULL when out of
 * memory. */
tg_healthsync_t *tg_healthsync_new(struct event_base *base, struct tg_ledger_s *l, tg_health_t *h);
/* Tests: other periods (0 keeps the current one). */
void tg_healthsync_set_periods(tg_healthsync_t *s, int publish_ms, int poll_ms);
/* Marks sent to Redis, marks read from Redis and applied, commands that failed (any thread:
 * for /metrics). NULL gives zeros. */
void tg_healthsync_stats(const tg_healthsync_t *s, uint64_t *published, uint64_t *imported, uint64_t *errors);
/* Those counters as Prometheus text for /metrics (any thread), malloc'd; NULL when out of
 * memory. A NULL s (no Redis configured) renders zeros. */
char *tg_healthsync_render(const tg_healthsync_t *s);
/* Stops the timers and drops any reply still due. NULL is fine. Before the ledger is freed. */
void tg_healthsync_free(tg_healthsync_t *s);

/* The value of a hash field: "<open until> <retry until>", decimal ms (0: none). format
 * writes it (NUL-terminated, at most 48 bytes) and returns its length; parse reads one of n
 * bytes and returns 0, or -1 when it is not that shape. */
size_t tg_healthsync_format(char *buf, const tg_health_mark_t *m);
int tg_healthsync_parse(const char *s, size_t n, tg_health_mark_t *m);

#endif
