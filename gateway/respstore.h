/* respstore.h — the response store: finished Responses API answers kept in
 * Redis (key TG_KEY_RESP in gateway/keys.h) for previous_response_id,
 * GET /v1/responses/{id} and DELETE, each tagged with the name of the
 * gateway key that made it; another key's request finds nothing. Commands
 * go over the ledger's Redis connection (tg_ledger_query), so any gateway
 * instance on the same Redis sees every stored response. Used only from
 * the worker's loop. */
#ifndef TG_RESPSTORE_H
#define TG_RESPSTORE_H

#include <stddef.h>
#include <stdint.h>

struct tg_ledger_s;
typedef struct tg_respstore_op_s tg_respstore_op_t;

typedef enum {
    TG_RESPSTORE_FOUND,   /* there, and the asking key's */
    TG_RESPSTORE_MISSING, /* never stored, expired, deleted, or another key's */
    TG_RESPSTORE_DOWN     /* Redis dropped or timed out before it answered */
} tg_respstore_result_t;

/* Whether `id` can name a stored response: 1-128 bytes of [A-Za-z0-9_-].
 * The caller checks it first: anything else is not there. */
int tg_respstore_id_ok(const char *id, size_t len);

/* FOUND: the Response (JSON text) and the conversation items (JSON array
 * text), valid during the call only. Otherwise both are NULL. */
typedef void (*tg_respstore_get_fn)(void *ud, tg_respstore_result_t res, const char *response, size_t rlen,
                                    const char *items, size_t ilen);
/* FOUND: it was the key's and is deleted now. */
typedef void (*tg_respstore_done_fn)(void *ud, tg_respstore_result_t res);

/* Each sends one command; fn runs exactly once, later, on the loop (never
 * inside the call, never after tg_respstore_cancel). They return NULL, and
 * fn never runs, when Redis is not connected (or l is NULL): the caller
 * answers at once. They also return NULL for an id that is not
 * tg_respstore_id_ok. */
tg_respstore_op_t *tg_respstore_get(struct tg_ledger_s *l, const char *id, const char *key_name,
                                    tg_respstore_get_fn fn, void *ud);
tg_respstore_op_t *tg_respstore_delete(struct tg_ledger_s *l, const char *id, const char *key_name,
                                       tg_respstore_done_fn fn, void *ud);
/* Stores a response for ttl_s seconds (replacing one of the same id). fn
 * (may be NULL) hears FOUND when Redis acknowledged the write, DOWN when it
 * failed (the failure is logged either way). */
tg_respstore_op_t *tg_respstore_put(struct tg_ledger_s *l, const char *id, const char *key_name,
                                    const char *response, size_t rlen, const char *items, size_t ilen,
                                    int64_t ttl_s, tg_respstore_done_fn fn, void *ud);
/* fn will not run. The handle is invalid after; NULL is fine. */
void tg_respstore_cancel(tg_respstore_op_t *op);

#endif
