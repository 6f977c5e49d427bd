/* request_store.c — the Responses API's conversation state in the request's
 * life: at the body phase the request is parsed (or taken by the one-pass
 * fast path), the response it continues (previous_response_id) is read from
 * the response store (gateway/respstore.c), and the request is translated
 * once to Chat Completions for the scan and routing; a whole answer is
 * stored before the client's answer ends, so a next turn on any instance
 * finds it; GET and DELETE of a stored response are served without a
 * provider. Called from gateway/request.c through request_int.h. */
#include "gateway/request_int.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "core/log.h"
#include "core/scan.h"
#include "providers/responses.h"
#include "providers/responses_fast.h"
#include "providers/translate.h"

/* --- the response store ------------------------------------------------- */

void tg_request_answer_held(tg_request_t *r) {
    if (r->held_out)
        tg_http_respond(r->http, 200, r->held_h, r->held_n, r->held_out, r->held_len);
    else
        tg_http_stream_end(r->http);
    /* on_finish may have run inside: r may be gone */
}

static void on_stored(void *ud, tg_respstore_result_t res) {
    tg_request_t *r = ud;
    r->rs_op = NULL;
    tg_request_answer_held(r);
}

/* Stores the finished Response (unless the client said store: false) and
 * holds the end of the client's answer until Redis acknowledged it, so the
 * client's next turn, on any instance, finds it. 1 when the write is in
 * flight (on_stored ends the answer), 0 when the caller ends it now. A
 * failed write is logged, never the client's problem. */
int tg_request_store_answer(tg_request_t *r) {
    if (r->rsp.src == NULL || r->call.rs_response == NULL || !r->rsp.store || r->w->ledger == NULL) return 0;
    json_t *resp = json_loadb(r->call.rs_response, r->call.rs_response_len, 0, NULL);
    const json_t *req = tg_rs_prep_req(&r->rsp);
    size_t ilen = 0;
    char *items = resp && req ? tg_rs_stored(r->pool, req, r->rs_prev, resp, &ilen) : NULL;
    json_decref(resp);
    const char *id = tg_pool_printf(r->pool, "resp_%s", r->id);
    if (items)
        r->rs_op = tg_respstore_put(r->w->ledger, id, r->key->name, r->call.rs_response,
                                    r->call.rs_response_len, items, ilen, r->cfg->store_ttl_s, on_stored, r);
    if (r->rs_op == NULL)
        tg_warn("response store: %s not stored: %s", id,
                items ? "Redis is not connected" : "unusable answer");
    return r->rs_op != NULL;
}

/* --- phases of an API that keeps conversations (the Responses API) ------ */

static void rs_error(tg_request_t *r, int status, const char *type, const char *code, const char *msg) {
    r->status = status;
    tg_request_send_error(r->http, r->client, status, type, code, msg);
}

static void store_unavailable(tg_request_t *r) {
    rs_error(r, 503, "upstream_error", "store_unavailable",
             "the response store (Redis) is not reachable: stored responses cannot be read now; try again");
}

static void not_stored(tg_request_t *r, const char *id, int previous) {
    rs_error(r, 404, "invalid_request_error", previous ? "previous_response_not_found" : "not_found",
             tg_pool_printf(r->pool,
                            "%s response '%.*s' not found: it was not stored (store: false), has expired, "
                            "was deleted, or belongs to another key",
                            previous ? "previous" : "stored", 128, id));
}

/* The Chat form of the request (r->rsp.chat) scanned like a chat request,
 * for routing, quotas and estimates. */
static void rs_scan_chat(tg_request_t *r) {
    char err[256];
    r->body = (char *)r->rsp.chat;
    r->body_len = r->rsp.chat_len;
    if (r->body == NULL || tg_scan_request(r->body, r->body_len, r->pool, &r->scan, err, sizeof(err)) != 0) {
        rs_error(r, 400, "invalid_request_error", "invalid_body",
                 r->body ? tg_pool_printf(r->pool, "the request has nothing to answer (%s)", err)
                         : "out of memory");
        return;
    }
    tg_request_body_scanned(r);
}

/* The request translated once to Chat Completions with jansson. Built-in
 * tools pass here: a provider that runs them natively may be chosen, and
 * the others' dialects refuse them per attempt; without them, every
 * OpenAI-dialect attempt splices this body (rsp.reuse). */
static void rs_translate(tg_request_t *r) {
    char err[256];
    tg_rs_req_opts_t o = {.native_tools = 1, .previous = r->rs_prev};
    json_t *chat = tg_rs_req_to_chat(r->rsp.req, &o, err, sizeof(err));
    if (chat == NULL) {
        rs_error(r, 400, "invalid_request_error", "invalid_body", err);
        return;
    }
    r->rsp.reuse = tg_rs_chat_reusable(r->rsp.req);
    memcpy(r->rsp.note, o.note, sizeof(r->rsp.note));
    r->rsp.chat = tg_tr_dump(r->pool, chat, &r->rsp.chat_len);
    rs_scan_chat(r);
}

static void on_previous(void *ud, tg_respstore_result_t res, const char *response, size_t rlen,
                        const char *items, size_t ilen) {
    tg_request_t *r = ud;
    r->rs_op = NULL;
    if (res == TG_RESPSTORE_DOWN) {
        store_unavailable(r);
        return;
    }
    if (res == TG_RESPSTORE_FOUND) r->rs_prev = json_loadb(items, ilen, 0, NULL);
    if (!json_is_array(r->rs_prev)) {
        not_stored(r, json_string_value(json_object_get(r->rsp.req, "previous_response_id")), 1);
        return;
    }
    rs_translate(r);
}

void tg_request_rs_body(tg_request_t *r) {
    /* The common shapes are translated from the text, with no DOM. */
    if (tg_rs_fast_req(r->pool, r->body, r->body_len, &r->rsp) == 0) {
        rs_scan_chat(r);
        return;
    }
    /* The same refusals as the other APIs before jansson reads it (which keeps
     * the last of duplicate keys and takes `Model` as another key): invalid
     * UTF-8, raw control bytes, a duplicated model, top-level keys equal to
     * a routed one up to case folding. A native provider gets this body. */
    tg_scan_req_t check;
    char err[256];
    if (tg_scan_request_bare(r->body, r->body_len, r->pool, &check, err, sizeof(err)) != 0) {
        rs_error(r, 400, "invalid_request_error", "invalid_body", err);
        return;
    }
    json_error_t je;
    r->rsp.src = r->body;
    r->rsp.src_len = r->body_len;
    r->rsp.req = json_loadb(r->body, r->body_len, 0, &je);
    if (!json_is_object(r->rsp.req)) {
        rs_error(r, 400, "invalid_request_error", "invalid_body",
                 r->rsp.req ? "request body must be a JSON object"
                            : tg_pool_printf(r->pool, "request body is not JSON: %s", je.text));
        return;
    }
    r->rsp.store = !json_is_false(json_object_get(r->rsp.req, "store"));
    const char *model = json_string_value(json_object_get(r->rsp.req, "model"));
    if (model == NULL || *model == '\0') {
        rs_error(r, 400, "invalid_request_error", "missing_model", "'model' is required");
        return;
    }
    const json_t *prev = json_object_get(r->rsp.req, "previous_response_id");
    if (prev == NULL || json_is_null(prev)) {
        rs_translate(r);
        return;
    }
    const char *id = json_string_value(prev);
    if (id == NULL) {
        rs_error(r, 400, "invalid_request_error", "invalid_body", "'previous_response_id' must be a string");
        return;
    }
    if (!tg_respstore_id_ok(id, strlen(id))) {
        not_stored(r, id, 1);
        return;
    }
    r->rs_op = tg_respstore_get(r->w->ledger, id, r->key->name, on_previous, r);
    if (r->rs_op == NULL) store_unavailable(r);
}

/* A GET or DELETE of a stored response that found no store or no response has been answered. */
static int stored_failed(tg_request_t *r, tg_respstore_result_t res) {
    if (res == TG_RESPSTORE_DOWN)
        store_unavailable(r);
    else if (res == TG_RESPSTORE_MISSING)
        not_stored(r, r->rs_item, 0);
    else
        return 0;
    return 1;
}

static void on_stored_get(void *ud, tg_respstore_result_t res, const char *response, size_t rlen,
                          const char *items, size_t ilen) {
    tg_request_t *r = ud;
    r->rs_op = NULL;
    if (stored_failed(r, res)) return;
    r->status = 200;
    tg_request_respond_json(r->http, 200, NULL, 0, response, rlen);
}

static void on_stored_delete(void *ud, tg_respstore_result_t res) {
    tg_request_t *r = ud;
    r->rs_op = NULL;
    if (stored_failed(r, res)) return;
    json_t *o = json_pack("{s:s,s:s,s:b}", "id", r->rs_item, "object", "response", "deleted", 1);
    size_t len = 0;
    const char *s = tg_tr_dump(r->pool, o, &len);
    r->status = 200;
    tg_request_respond_json(r->http, 200, NULL, 0, s ? s : "{}", s ? len : 2);
}

/* GET or DELETE of a stored response: only the key that made it sees it. */
void tg_request_serve_stored(tg_request_t *r) {
    if (!tg_respstore_id_ok(r->rs_item, strlen(r->rs_item))) {
        not_stored(r, r->rs_item, 0);
        return;
    }
    r->rs_op = r->rs_method == 'D'
                   ? tg_respstore_delete(r->w->ledger, r->rs_item, r->key->name, on_stored_delete, r)
                   : tg_respstore_get(r->w->ledger, r->rs_item, r->key->name, on_stored_get, r);
    if (r->rs_op == NULL) store_unavailable(r);
}
