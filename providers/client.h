/* client.h — client dialects: the API a client called, and the shape of
 * everything Tollgate itself says to it. A provider dialect (provider.h)
 * turns the provider's answer into the client's; the client dialect covers
 * what no provider produced: error bodies, the error event that ends a
 * broken stream, the stream's end marker and where the `: tollgate {...}`
 * cost comment goes. gateway/request.c and the HTTP server's own errors
 * call these functions and never switch on a client dialect themselves.
 *
 * Adding a client dialect (the OpenAI Responses API, say) is one enum value
 * below and one entry in the table in providers/client.c, which names:
 *   path         the API path it serves ("/v1/responses"; the path and
 *                everything below it map to it in tg_client_for_path);
 *   auth_hint    how its SDKs send the gateway key, for the 401 message;
 *   error_body   the JSON body of an error answer (Responses: OpenAI shape,
 *                so it reuses the OpenAI entry's function);
 *   stream_done  the bytes after the provider's end marker: the cost
 *                comment and the client's own end marker, in its order
 *                (Responses: the comment; response.completed, not [DONE]);
 *   stream_broken the bytes that end a stream the upstream broke after it
 *                started (Responses: an `error` event, then
 *                `response.failed`; never response.completed).
 * The enum's values index the table, so the order of both must match.
 */
#ifndef TG_CLIENT_H
#define TG_CLIENT_H

#include <stddef.h>

#include "core/pool.h"

typedef enum { TG_CLIENT_OPENAI, TG_CLIENT_ANTHROPIC, TG_CLIENT_RESPONSES } tg_client_dialect_t;

/* The client dialect of a request path (without its query): the entry whose
 * path is `path` or a prefix of it followed by '/'; OpenAI when none is. */
tg_client_dialect_t tg_client_for_path(const char *path, size_t len);

/* Whether the API keeps conversations on the gateway (the Responses API):
 * its body is parsed whole and may continue a stored answer
 * (previous_response_id), its answers are stored, and its path has stored
 * objects below it (GET and DELETE /v1/responses/{id}). gateway/request.c
 * asks this rather than naming a dialect. */
int tg_client_keeps_state(tg_client_dialect_t d);

/* How the client's SDKs send the gateway key: the message of a 401 when
 * none was sent. */
const char *tg_client_auth_hint(tg_client_dialect_t d);

/* The JSON body of an error answer, malloc'd (the caller frees); NULL when
 * out of memory. `type` and `code` are OpenAI's error type and code (code
 * may be NULL); a dialect that types errors by status (Anthropic) uses
 * `status` instead. */
char *tg_client_error_body(tg_client_dialect_t d, int status, const char *type, const char *code,
                           const char *msg);

/* The last bytes of a stream whose provider sent its end marker:
 * `cost_comment` (a complete SSE comment, ": tollgate {...}\n\n") and the
 * client's own end marker, in the order the dialect wants. From pool. */
const char *tg_client_stream_done(tg_client_dialect_t d, tg_pool_t *pool, const char *cost_comment);

/* The last bytes of a stream that broke after bytes reached the client:
 * the dialect's error event carrying `message`, and whatever must follow
 * it. Never a clean end marker. From pool; NULL when out of memory.
 * (Responses: a provider dialect's stream_fail hook ends the stream with
 * the answer so far and the right sequence numbers; this is the fallback
 * when it cannot.) */
const char *tg_client_stream_broken(tg_client_dialect_t d, tg_pool_t *pool, const char *message);

#endif
