/* admin.h — the admin endpoints: GET /admin/spend (the `tollgate report` JSON) and
 * GET /dashboard (spend per provider per day as a self-contained HTML page with inline SVG
 * charts). Both need the admin token and read Redis asynchronously on the worker's loop,
 * through the ledger's connection. */
#ifndef TG_ADMIN_H
#define TG_ADMIN_H

#include <stddef.h>

#include "core/config.h"
#include "gateway/http1.h"
#include "gateway/ledger.h"
#include "core/pool.h"
#include "gateway/report.h"

typedef enum { TG_ADMIN_NONE = 0, TG_ADMIN_SPEND, TG_ADMIN_DASHBOARD } tg_admin_kind_t;
typedef struct tg_admin_s tg_admin_t;

/* Which admin endpoint a path is, or TG_ADMIN_NONE. */
tg_admin_kind_t tg_admin_kind(const char *path, size_t len);

/* Decides on the headers whether the request may see the endpoint: 0 when the admin token
 * (Authorization: Bearer, or ?token= on the dashboard) is right; otherwise answers (503 when
 * no token is configured, 401) and returns -1. Called before any body byte is read, so a
 * client without the token costs nothing but its headers. Strings come from `pool`. */
int tg_admin_authorise(tg_admin_kind_t kind, tg_http_req_t *h, const tg_config_t *cfg, tg_pool_t *pool);

/* Answers a request tg_admin_authorise let through. Returns NULL when the answer went out at once, or the
 * pending state (allocated in `pool`, which must outlive it): if the request finishes first
 * (the client left), call tg_admin_cancel. Answering runs the request's on_finish inside,
 * where tg_admin_cancel is a no-op. `now_ms` is unix ms (default ranges). */
tg_admin_t *tg_admin_serve(tg_admin_kind_t kind, tg_http_req_t *h, const tg_config_t *cfg, tg_ledger_t *l,
                           tg_pool_t *pool, long long now_ms);
void tg_admin_cancel(tg_admin_t *a);

/* Whether `given` (glen bytes) is the token `want`, in constant time whatever the lengths
 * (both are hashed first). Also used for /metrics's token (gateway/request.c). */
int tg_admin_token_ok(const char *given, size_t glen, const char *want);

/* The dashboard page for a finished report grouped by provider then day (for tests). */
char *tg_admin_dashboard_html(const tg_report_t *r);

#endif
