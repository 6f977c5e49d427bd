/* request.h — the request lifecycle: the HTTP handler every worker serves
 * with. `ud` of the handler is the worker (tg_worker_t *). */
#ifndef TG_REQUEST_H
#define TG_REQUEST_H

#include "gateway/http1.h"

extern const tg_http_handler_t tg_request_handler;

#endif
