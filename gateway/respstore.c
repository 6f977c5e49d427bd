/* respstore.c — the response store (respstore.h): one Redis hash per
 * stored response, "tg:resp:<id>" with fields key, response and items,
 * written with its expiry in one script (a write never leaves a hash that
 * lives for ever), read with HMGET, and deleted by a script that deletes
 * only when the key name matches, so an owner check and the delete are one
 * step. Data enters as JSON text from gateway/request.c and leaves the same
 * way through the caller's callback; each command's state is one malloc'd
 * op, freed when its reply (or the cancel) comes.
 */
#include "gateway/respstore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/log.h"
#include "gateway/keys.h"
#include "gateway/ledger.h"

#define ID_MAX 128

/* HSET and EXPIRE together; ARGV: key name, response, items, ttl. */
static const char put_script[] =
    "redis.call('HSET', KEYS[1], 'key', ARGV[1], 'response', ARGV[2], 'items', ARGV[3])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "return 1";
/* Deletes the hash when its key field is ARGV[1]: 1 deleted, 0 not there or not the key's. */
static const char del_script[] = "if redis.call('HGET', KEYS[1], 'key') == ARGV[1] then\n"
                                 "  return redis.call('DEL', KEYS[1])\n"
                                 "end\n"
                                 "return 0";

struct tg_respstore_op_s {
    tg_ledger_query_t *q;
    tg_respstore_get_fn get;
    tg_respstore_done_fn done;
    void *ud;
    char *key_name;      /* get: the owner to compare */
    char id[ID_MAX + 1]; /* for log lines */
};

int tg_respstore_id_ok(const char *id, size_t len) {
    if (id == NULL || len == 0 || len > ID_MAX) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static tg_respstore_op_t *op_new(const char *id, const char *key_name) {
    tg_respstore_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL) return NULL;
    if (key_name && (op->key_name = strdup(key_name)) == NULL) {
        free(op);
        return NULL;
    }
    snprintf(op->id, sizeof(op->id), "%s", id);
    return op;
}

static void op_free(tg_respstore_op_t *op) {
    free(op->key_name);
    free(op);
}

/* Sends argv on the ledger's link; the op is freed and NULL returned when it could not go. */
static tg_respstore_op_t *op_send(struct tg_ledger_s *l, tg_respstore_op_t *op, int argc, const char **argv,
                                  const size_t *lens, int key_arg, tg_ledger_reply_fn fn) {
    if (op == NULL) return NULL;
    op->q = tg_ledger_query(l, argc, argv, lens, key_arg, fn, op);
    if (op->q == NULL) {
        op_free(op);
        return NULL;
    }
    return op;
}

static int bulk_is(const redisReply *r, const char *s) {
    return r && r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static void on_get(const redisReply *reply, void *ud) {
    tg_respstore_op_t *op = ud;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        if (reply) tg_warn("response store: unexpected reply to HMGET %s%s", TG_KEY_RESP, op->id);
        op->get(op->ud, TG_RESPSTORE_DOWN, NULL, 0, NULL, 0);
    } else if (!bulk_is(reply->element[0], op->key_name) || reply->element[1]->type != REDIS_REPLY_STRING ||
               reply->element[2]->type != REDIS_REPLY_STRING) {
        op->get(op->ud, TG_RESPSTORE_MISSING, NULL, 0, NULL, 0);
    } else {
        const redisReply *r = reply->element[1], *i = reply->element[2];
        op->get(op->ud, TG_RESPSTORE_FOUND, r->str, r->len, i->str, i->len);
    }
    op_free(op);
}

static void on_done(const redisReply *reply, void *ud) {
    tg_respstore_op_t *op = ud;
    tg_respstore_result_t res = TG_RESPSTORE_DOWN;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        res = reply->integer > 0 ? TG_RESPSTORE_FOUND : TG_RESPSTORE_MISSING;
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        tg_warn("response store: %s%s: %s", TG_KEY_RESP, op->id, reply->str);
    if (op->done) op->done(op->ud, res);
    op_free(op);
}

/* A put's reply: only a failure is news. */
static void on_put(const redisReply *reply, void *ud) {
    tg_respstore_op_t *op = ud;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        tg_warn("response store: could not store %s%s: %s", TG_KEY_RESP, op->id,
                reply == NULL                      ? "Redis went away"
                : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                   : "bad reply");
        if (op->done) op->done(op->ud, TG_RESPSTORE_DOWN);
    } else if (op->done) {
        op->done(op->ud, TG_RESPSTORE_FOUND);
    }
    op_free(op);
}

static const char *key_of(const char *id, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s", TG_KEY_RESP, id);
    return buf;
}

tg_respstore_op_t *tg_respstore_get(struct tg_ledger_s *l, const char *id, const char *key_name,
                                    tg_respstore_get_fn fn, void *ud) {
    if (l == NULL || !tg_respstore_id_ok(id, strlen(id))) return NULL;
    char key[sizeof(TG_KEY_RESP) + ID_MAX];
    const char *argv[] = {"HMGET", key_of(id, key, sizeof(key)), "key", "response", "items"};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    tg_respstore_op_t *op = op_new(id, key_name);
    if (op) op->get = fn, op->ud = ud;
    return op_send(l, op, 5, argv, lens, 1, on_get);
}

tg_respstore_op_t *tg_respstore_delete(struct tg_ledger_s *l, const char *id, const char *key_name,
                                       tg_respstore_done_fn fn, void *ud) {
    if (l == NULL || !tg_respstore_id_ok(id, strlen(id))) return NULL;
    char key[sizeof(TG_KEY_RESP) + ID_MAX];
    const char *argv[] = {"EVAL", del_script, "1", key_of(id, key, sizeof(key)), key_name};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    tg_respstore_op_t *op = op_new(id, NULL);
    if (op) op->done = fn, op->ud = ud;
    return op_send(l, op, 5, argv, lens, 3, on_done);
}

tg_respstore_op_t *tg_respstore_put(struct tg_ledger_s *l, const char *id, const char *key_name,
                                    const char *response, size_t rlen, const char *items, size_t ilen,
                                    int64_t ttl_s, tg_respstore_done_fn fn, void *ud) {
    if (l == NULL || !tg_respstore_id_ok(id, strlen(id))) return NULL;
    char key[sizeof(TG_KEY_RESP) + ID_MAX], ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_s > 0 ? ttl_s : 1);
    const char *argv[] = {"EVAL",   put_script, "1",   key_of(id, key, sizeof(key)),
                          key_name, response,   items, ttl};
    size_t lens[8] = {4, sizeof(put_script) - 1, 1, strlen(key), strlen(key_name), rlen, ilen, strlen(ttl)};
    tg_respstore_op_t *op = op_new(id, NULL);
    if (op) op->done = fn, op->ud = ud;
    return op_send(l, op, 8, argv, lens, 3, on_put);
}

void tg_respstore_cancel(tg_respstore_op_t *op) {
    if (op == NULL) return;
    tg_ledger_query_cancel(op->q);
    op_free(op);
}
