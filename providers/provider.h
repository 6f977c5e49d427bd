/* provider.h — the dialect vtable. Everything that differs between wire
 * formats (OpenAI chat completions, Anthropic messages) lives behind it, so
 * the request lifecycle in gateway/request.c never switches on a dialect.
 *
 * A dialect is told which dialect the *client* speaks (providers/client.h),
 * so a pair (client, provider) either passes bytes through with a few
 * splices, or translates.
 */
#ifndef TG_PROVIDER_H
#define TG_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/header.h"
#include "core/pool.h"
#include "core/scan.h"
#include "core/upcall.h"
#include "core/usage.h"
#include "providers/client.h"

struct json_t;
struct tg_rs_prep_s;

/* One attempt against one provider. Built by the request, read by the
 * dialect; every pointer is owned by the request's pool or snapshot. */
typedef struct {
    tg_pool_t *pool;
    const char *body; /* the client's body, as received */
    size_t body_len;
    const tg_scan_req_t *scan;
    tg_client_dialect_t client;
    int client_wants_usage; /* OpenAI client asked for stream_options.include_usage */
    const tg_provider_t *provider;
    const tg_price_t *price;          /* may be NULL */
    const char *model;                /* the provider's model id */
    tg_header_source_t headers;       /* the client's request headers (anthropic-beta) */
    const char *const *extra_headers; /* forwarded x-sim-* lines (simulated providers only) */
    size_t n_extra;
    size_t content_bytes; /* answer text seen so far, for estimates when no usage comes */
    void *state;          /* the dialect's per-attempt state (stream translation) */
    tg_kind_t kind;       /* chat, embeddings or count_tokens: which upstream endpoint build targets */
    /* A Responses API client (TG_CLIENT_RESPONSES) only. body/scan above are
     * then the request translated to Chat Completions once, for routing;
     * the dialect builds its upstream body from rs_req instead. */
    const struct json_t *rs_req;      /* the client's request, parsed; NULL when not parsed yet: then
                                         tg_rs_prep_req(rs_prep) parses it (providers/responses_fast.h) */
    struct tg_rs_prep_s *rs_prep;     /* the request as translated once for routing (body above) */
    const struct json_t *rs_previous; /* items of the previous_response_id response, or NULL */
    const char *rs_id;                /* the Response is "resp_<rs_id>" */
    int64_t rs_created;               /* its created_at, unix seconds */
    const char *rs_response;          /* out: the finished Response, JSON text in the pool, once
                                         the answer is whole (for the response store); NULL before */
    size_t rs_response_len;
} tg_call_t;

/* Where a dialect sends stream events for the client. `event` may be NULL
 * (OpenAI: data-only events). Returns 1 when the client's buffer is above
 * its high-water mark (the request pauses the upstream), else 0. */
typedef struct {
    int (*emit)(void *ud, const char *event, const char *data, size_t len);
    void *ud;
} tg_emitter_t;

/* What an upstream error means for the client and for failover. */
typedef struct {
    int retryable;     /* another candidate may succeed: fail over */
    int status;        /* status for the client when no candidate is left */
    const char *type;  /* OpenAI error type, e.g. "invalid_request_error" */
    char message[512]; /* the provider's own message when it gave one */
} tg_upstream_error_t;

enum { TG_STREAM_MORE = 0, TG_STREAM_DONE = 1, TG_STREAM_ERROR = -1 };

typedef struct tg_dialect_s {
    const char *name;
    /* Fills the upstream request (URL, headers, body) for this attempt. */
    int (*build)(tg_call_t *c, tg_upcall_req_t *out, char *err, size_t errlen);
    /* A complete 2xx non-stream answer: usage into *u, and the body for the
     * client (the same bytes when nothing changes). -1 when unreadable. */
    int (*parse_response)(tg_call_t *c, const char *body, size_t len, tg_usage_t *u, const char **out,
                          size_t *out_len);
    /* One SSE event of a 2xx stream: updates *u from any usage seen and
     * emits what the client should get. TG_STREAM_DONE at the provider's
     * end marker (the request then writes the cost comment and the
     * client's own end marker); TG_STREAM_ERROR when the provider reported
     * an error inside the stream (its text in err). */
    int (*stream_event)(tg_call_t *c, const char *event, const char *data, size_t len, tg_usage_t *u,
                        const tg_emitter_t *out, char *err, size_t errlen);
    /* A non-2xx answer. */
    void (*map_error)(tg_call_t *c, int status, const char *body, size_t len, tg_upstream_error_t *e);
    /* Ends a stream that broke after events reached the client, when the
     * dialect's translator must write the ending itself (a Responses client:
     * an `error` event, then response.failed with the output so far, in
     * sequence). 0 when it did; -1 when the client's generic ending
     * (tg_client_stream_broken) applies. */
    int (*stream_fail)(tg_call_t *c, const char *message, const tg_usage_t *u, const tg_emitter_t *out);
} tg_dialect_t;

/* By name ("openai", "anthropic"); NULL when unknown. */
const tg_dialect_t *tg_dialect_find(const char *name);
/* Points every provider of a freshly loaded snapshot at its dialect's
 * vtable (tg_dialect_find of its dialect_name; NULL when unknown). The
 * configuration loader knows dialects by name only; whoever loads a
 * snapshot to serve with binds it once, before installing it. */
void tg_dialect_bind(tg_config_t *c);

extern const tg_dialect_t tg_dialect_openai;
extern const tg_dialect_t tg_dialect_anthropic;

/* Shared helpers for dialects. */
/* Retryable for failover: 408, 409, 429, 5xx, 529, and the provider-side
 * configuration errors 401/403/404 (another provider may serve). */
int tg_status_retryable(int status);
/* Fills retryable, the status the client gets when no candidate is left
 * (400/413/422 and 429 kept, anything else 502) and the error type. */
void tg_upstream_error_classify(int status, tg_upstream_error_t *e);

#endif
