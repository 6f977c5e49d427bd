/* responses_stream.c — upstream streams as Responses API stream events:
 * Chat chunks or Anthropic events in, one at a time; response.created,
 * response.in_progress, output items with their content parts and deltas,
 * and response.completed (or .incomplete, or the failure ending) out,
 * through the caller's emitter, each numbered by sequence_number.
 *
 * Memory: the Responses protocol repeats each item's whole text in its
 * .done events and in the final response, so the translator keeps the
 * answer's text (not the events): per item one buffer in the attempt's pool
 * that grows by doubling, which bounds the pool's share to twice the answer.
 * Each event's JSON is built in jansson scratch that is freed at once and
 * serialised into one reused buffer, so work and memory per event do not
 * grow with the length of the stream.
 *
 * Items open as their first content arrives and get output indexes 0, 1,
 * 2... in that order. A reasoning or message item closes when another item
 * opens; function calls stay open until the answer ends (Chat vendors may
 * interleave the argument fragments of parallel calls), except that a
 * Claude tool_use closes at its content_block_stop. Reasoning is streamed
 * as a reasoning summary (response.reasoning_summary_text.*), which the
 * OpenAI SDKs and Codex read. At most MAX_ITEMS items per answer: content
 * that would need more is dropped (and not counted).
 */
#include "providers/responses.h"
#include "providers/jsonutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITEMS 128
#define MAX_CALLS 64 /* Chat tool_calls indexes tracked per answer */

typedef struct {
    char kind;  /* 'r' reasoning, 'm' message, 'f' function call */
    int open;   /* added and not yet done */
    char *text; /* summary text, message text or arguments so far (pool, grows by doubling) */
    size_t len, cap;
    char *call_id, *name;
} item_t;

struct tg_rs_stream_s {
    tg_pool_t *pool;
    int from_anthropic;
    const char *id;
    const char *skeleton; /* tg_rs_response_new's object as text, the base of lifecycle events */
    size_t skeleton_len;
    int model_given; /* the caller named the model: the upstream's does not replace it */
    char model[128];
    char *buf; /* one event's output, reused; grows (by doubling) only for a large event */
    size_t cap;
    int64_t seq;
    int started, ended;
    item_t items[MAX_ITEMS];
    int n_items;
    int cur;                  /* the open reasoning or message item text goes to, -1 none */
    int block;                /* Anthropic: the item of the open content block, -1 none */
    int call_item[MAX_CALLS]; /* Chat tool_calls index -> item index + 1 (0 = none) */
    const char *incomplete;   /* incomplete_details.reason, NULL: completed */
    const char *final;        /* the finished response, as text */
    size_t final_len;
};

static int is(const char *s, const char *want) {
    return s && !strcmp(s, want);
}

/* Copies what fits, cut before a UTF-8 character that does not fit whole. */
static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

tg_rs_stream_t *tg_rs_stream_new(tg_pool_t *pool, int from_anthropic, const tg_rs_resp_opts_t *o) {
    tg_rs_stream_t *s = tg_pool_calloc(pool, sizeof(*s));
    s->pool = pool;
    s->from_anthropic = from_anthropic;
    s->id = tg_pool_strdup(pool, o->id ? o->id : "");
    s->model_given = o->model != NULL;
    s->skeleton = tg_tr_dump(pool, tg_rs_response_new(o, NULL, "in_progress"), &s->skeleton_len);
    s->cap = 1024;
    s->buf = tg_pool_alloc(pool, s->cap);
    s->cur = s->block = -1;
    return s;
}

int tg_rs_stream_started(const tg_rs_stream_t *s) {
    return s->started;
}

const char *tg_rs_stream_response(const tg_rs_stream_t *s, size_t *len) {
    if (s->final) *len = s->final_len;
    return s->final;
}

/* --- emitting ---------------------------------------------------------------- */

/* Numbers o (stolen), serialises it into the reused buffer and emits it. */
static void emit_ev(tg_rs_stream_t *s, tg_tr_emit_fn emit, void *ud, const char *type, json_t *o) {
    if (o == NULL) return;
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "sequence_number", json_integer((json_int_t)s->seq));
    size_t n = tg_json_dump_into(s->pool, o, &s->buf, &s->cap);
    json_decref(o);
    if (n == 0) return;
    s->seq++;
    emit(ud, type, s->buf, n);
}

static const char *item_id(const tg_rs_stream_t *s, int i, char *buf, size_t cap) {
    const char *prefix = s->items[i].kind == 'r' ? "rs" : s->items[i].kind == 'm' ? "msg" : "fc";
    snprintf(buf, cap, "%s_%s_%d", prefix, s->id, i);
    return buf;
}

/* Item i as the response lists it; status applies to messages and calls. */
static json_t *item_json(const tg_rs_stream_t *s, int i, const char *status) {
    const item_t *it = &s->items[i];
    char id[160];
    item_id(s, i, id, sizeof(id));
    int in_progress = is(status, "in_progress");
    if (it->kind == 'r')
        return tg_rs_item_reasoning(id, in_progress ? NULL : it->text ? it->text : "", it->len);
    if (it->kind == 'm')
        return tg_rs_item_message(id, in_progress ? NULL : it->text ? it->text : "", it->len, status);
    return tg_rs_item_call(id, it->call_id, it->name, it->text, it->len, status);
}

/* The whole response: the skeleton with status, model and, when final, output and usage. */
static json_t *response_json(const tg_rs_stream_t *s, const char *status, const tg_usage_t *u, int final) {
    json_t *r = json_loadb(s->skeleton ? s->skeleton : "{}", s->skeleton ? s->skeleton_len : 2, 0, NULL);
    if (r == NULL) r = json_object();
    json_object_set_new(r, "status", json_string(status));
    if (!s->model_given && s->model[0]) json_object_set_new(r, "model", json_string(s->model));
    if (!final) return r;
    json_t *out = json_array();
    size_t tlen = 0;
    for (int i = 0; i < s->n_items; i++) {
        const item_t *it = &s->items[i];
        json_array_append_new(out, item_json(s, i, it->open ? "incomplete" : "completed"));
        if (it->kind == 'm') tlen += it->len;
    }
    char *text = malloc(tlen + 1), *at = text;
    for (int i = 0; i < s->n_items; i++)
        if (s->items[i].kind == 'm' && s->items[i].len) {
            memcpy(at, s->items[i].text, s->items[i].len);
            at += s->items[i].len;
        }
    json_t *ot = json_stringn(text, (size_t)(at - text));
    free(text);
    json_object_set_new(r, "output", out);
    json_object_set_new(r, "output_text", ot ? ot : json_string(""));
    if (u && u->present) json_object_set_new(r, "usage", tg_rs_usage_json(u));
    return r;
}

static void start(tg_rs_stream_t *s, tg_tr_emit_fn emit, void *ud) {
    if (s->started) return;
    s->started = 1;
    emit_ev(s, emit, ud, "response.created",
            json_pack("{s:o}", "response", response_json(s, "in_progress", NULL, 0)));
    emit_ev(s, emit, ud, "response.in_progress",
            json_pack("{s:o}", "response", response_json(s, "in_progress", NULL, 0)));
}

/* Where an item's event points: item_id and output_index (plus one more index for parts). */
static json_t *at_item(const tg_rs_stream_t *s, int i) {
    char id[160];
    return json_pack("{s:s,s:i}", "item_id", item_id(s, i, id, sizeof(id)), "output_index", i);
}

static json_t *text_part(const char *kind, const char *text, size_t len) {
    json_t *t = json_stringn(text ? text : "", text ? len : 0);
    json_t *p = json_pack("{s:s,s:o}", "type", kind, "text", t ? t : json_string(""));
    if (is(kind, "output_text")) json_object_set_new(p, "annotations", json_array());
    return p;
}

/* Opens a new item; returns its index, or -1 when the answer has MAX_ITEMS. */
static int open_item(tg_rs_stream_t *s, char kind, const char *call_id, const char *name, tg_tr_emit_fn emit,
                     void *ud) {
    if (s->n_items == MAX_ITEMS) return -1;
    start(s, emit, ud);
    int i = s->n_items++;
    item_t *it = &s->items[i];
    it->kind = kind;
    it->open = 1;
    if (kind == 'f') {
        char gen[160];
        if (call_id == NULL || !*call_id) {
            snprintf(gen, sizeof(gen), "call_%s_%d", s->id, i);
            call_id = gen;
        }
        it->call_id = tg_pool_strdup(s->pool, call_id);
        it->name = tg_pool_strdup(s->pool, name ? name : "");
    }
    emit_ev(s, emit, ud, "response.output_item.added",
            json_pack("{s:i,s:o}", "output_index", i, "item", item_json(s, i, "in_progress")));
    json_t *at = at_item(s, i);
    if (kind == 'm') {
        json_object_set_new(at, "content_index", json_integer(0));
        json_object_set_new(at, "part", text_part("output_text", "", 0));
        emit_ev(s, emit, ud, "response.content_part.added", at);
    } else if (kind == 'r') {
        json_object_set_new(at, "summary_index", json_integer(0));
        json_object_set_new(at, "part", text_part("summary_text", "", 0));
        emit_ev(s, emit, ud, "response.reasoning_summary_part.added", at);
    } else {
        json_decref(at);
    }
    return i;
}

static void append(tg_rs_stream_t *s, item_t *it, const char *d, size_t n) {
    if (it->len + n + 1 > it->cap) {
        size_t cap = it->cap ? it->cap : 64;
        while (cap < it->len + n + 1)
            cap *= 2;
        char *p = tg_pool_alloc(s->pool, cap);
        if (it->len) memcpy(p, it->text, it->len);
        it->text = p;
        it->cap = cap;
    }
    memcpy(it->text + it->len, d, n);
    it->len += n;
    it->text[it->len] = '\0';
}

static void item_delta(tg_rs_stream_t *s, int i, const char *d, size_t *bytes, tg_tr_emit_fn emit, void *ud) {
    item_t *it = &s->items[i];
    size_t n = strlen(d);
    append(s, it, d, n);
    *bytes += n;
    json_t *at = at_item(s, i);
    json_object_set_new(at, "delta", json_string(d));
    if (it->kind == 'm') {
        json_object_set_new(at, "content_index", json_integer(0));
        json_object_set_new(at, "logprobs", json_array());
        emit_ev(s, emit, ud, "response.output_text.delta", at);
    } else if (it->kind == 'r') {
        json_object_set_new(at, "summary_index", json_integer(0));
        emit_ev(s, emit, ud, "response.reasoning_summary_text.delta", at);
    } else {
        emit_ev(s, emit, ud, "response.function_call_arguments.delta", at);
    }
}

static void close_item(tg_rs_stream_t *s, int i, tg_tr_emit_fn emit, void *ud) {
    if (i < 0 || !s->items[i].open) return;
    item_t *it = &s->items[i];
    const char *text = it->text ? it->text : "";
    json_t *at = at_item(s, i), *at2 = at_item(s, i);
    if (it->kind == 'm') {
        json_object_set_new(at, "content_index", json_integer(0));
        json_object_set_new(at, "text", json_stringn(text, it->len));
        json_object_set_new(at, "logprobs", json_array());
        emit_ev(s, emit, ud, "response.output_text.done", at);
        json_object_set_new(at2, "content_index", json_integer(0));
        json_object_set_new(at2, "part", text_part("output_text", text, it->len));
        emit_ev(s, emit, ud, "response.content_part.done", at2);
    } else if (it->kind == 'r') {
        json_object_set_new(at, "summary_index", json_integer(0));
        json_object_set_new(at, "text", json_stringn(text, it->len));
        emit_ev(s, emit, ud, "response.reasoning_summary_text.done", at);
        json_object_set_new(at2, "summary_index", json_integer(0));
        json_object_set_new(at2, "part", text_part("summary_text", text, it->len));
        emit_ev(s, emit, ud, "response.reasoning_summary_part.done", at2);
    } else {
        json_object_set_new(at, "arguments", it->len ? json_stringn(text, it->len) : json_string("{}"));
        emit_ev(s, emit, ud, "response.function_call_arguments.done", at);
        json_decref(at2);
    }
    it->open = 0;
    emit_ev(s, emit, ud, "response.output_item.done",
            json_pack("{s:i,s:o}", "output_index", i, "item", item_json(s, i, "completed")));
    if (s->cur == i) s->cur = -1;
}

/* Text of `kind` goes to the open item of that kind, else to a new one
 * (closing the open text item first). */
static void text_to(tg_rs_stream_t *s, char kind, const char *d, size_t *bytes, tg_tr_emit_fn emit,
                    void *ud) {
    if (d == NULL || !*d) return;
    if (s->cur < 0 || s->items[s->cur].kind != kind) {
        close_item(s, s->cur, emit, ud);
        if ((s->cur = open_item(s, kind, NULL, NULL, emit, ud)) < 0) return;
    }
    item_delta(s, s->cur, d, bytes, emit, ud);
}

static void keep_final(tg_rs_stream_t *s, json_t *r) {
    s->final = tg_tr_dump(s->pool, json_deep_copy(r), &s->final_len);
}

/* The end of the answer: every open item is done, then response.completed
 * (or .incomplete) with the whole response. */
static int finish(tg_rs_stream_t *s, const tg_usage_t *u, tg_tr_emit_fn emit, void *ud) {
    if (s->ended) return TG_TR_DONE;
    start(s, emit, ud);
    for (int i = 0; i < s->n_items; i++)
        close_item(s, i, emit, ud);
    int any = 0;
    for (int i = 0; i < s->n_items; i++)
        any |= s->items[i].kind != 'r';
    if (!any) close_item(s, open_item(s, 'm', NULL, NULL, emit, ud), emit, ud);
    json_t *r = response_json(s, s->incomplete ? "incomplete" : "completed", u, 1);
    if (s->incomplete)
        json_object_set_new(r, "incomplete_details", json_pack("{s:s}", "reason", s->incomplete));
    keep_final(s, r);
    emit_ev(s, emit, ud, s->incomplete ? "response.incomplete" : "response.completed",
            json_pack("{s:o}", "response", r));
    s->ended = 1;
    return TG_TR_DONE;
}

void tg_rs_stream_fail(tg_rs_stream_t *s, const char *code, const char *message, const tg_usage_t *u,
                       tg_tr_emit_fn emit, void *ud) {
    if (s->ended) return;
    if (code == NULL || !*code) code = "server_error";
    if (message == NULL) message = "the upstream provider failed";
    start(s, emit, ud);
    json_t *m = json_string(message);
    if (m == NULL) m = json_string("the upstream provider failed"); /* not UTF-8 */
    json_t *c = json_string(code);
    if (c == NULL) c = json_string("server_error");
    emit_ev(s, emit, ud, "error", json_pack("{s:O,s:O,s:n}", "code", c, "message", m, "param"));
    json_t *r = response_json(s, "failed", u, 1);
    json_object_set_new(r, "error", json_pack("{s:o,s:o}", "code", c, "message", m));
    keep_final(s, r);
    emit_ev(s, emit, ud, "response.failed", json_pack("{s:o}", "response", r));
    s->ended = 1;
}

/* --- Chat chunks ----------------------------------------------------------- */

static void chat_calls(tg_rs_stream_t *s, const json_t *calls, size_t *bytes, tg_tr_emit_fn emit, void *ud) {
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc) {
        json_int_t k = json_integer_value(json_object_get(tc, "index"));
        if (k < 0 || k >= MAX_CALLS) continue;
        const json_t *fn = json_object_get(tc, "function");
        if (s->call_item[k] == 0) {
            close_item(s, s->cur, emit, ud);
            int it = open_item(s, 'f', tg_json_str(tc, "id"), tg_json_str(fn, "name"), emit, ud);
            if (it < 0) continue;
            s->call_item[k] = it + 1;
        }
        const char *args = tg_json_str(fn, "arguments");
        if (args && *args) item_delta(s, s->call_item[k] - 1, args, bytes, emit, ud);
    }
}

static void chat_chunk(tg_rs_stream_t *s, const json_t *o, size_t *bytes, tg_tr_emit_fn emit, void *ud) {
    if (!s->model[0]) copy_str(s->model, sizeof(s->model), tg_json_str(o, "model"));
    size_t i;
    const json_t *ch;
    json_array_foreach(json_object_get(o, "choices"), i, ch) {
        if (json_integer_value(json_object_get(ch, "index")) != 0) continue;
        const json_t *d = json_object_get(ch, "delta");
        const char *r = tg_json_str(d, "reasoning_content");
        text_to(s, 'r', r ? r : tg_json_str(d, "reasoning"), bytes, emit, ud);
        text_to(s, 'm', tg_json_str(d, "content"), bytes, emit, ud);
        chat_calls(s, json_object_get(d, "tool_calls"), bytes, emit, ud);
        const char *f = tg_json_str(ch, "finish_reason");
        if (is(f, "length")) s->incomplete = "max_output_tokens";
        if (is(f, "content_filter")) s->incomplete = "content_filter";
    }
}

/* --- Anthropic events ---------------------------------------------------- */

static int an_event(tg_rs_stream_t *s, const char *type, const json_t *o, tg_usage_t *u, size_t *bytes,
                    tg_tr_emit_fn emit, void *ud) {
    if (is(type, "message_start")) {
        const json_t *m = json_object_get(o, "message");
        if (!s->model[0]) copy_str(s->model, sizeof(s->model), tg_json_str(m, "model"));
        tg_tr_usage_anthropic(json_object_get(m, "usage"), u);
    } else if (is(type, "content_block_start")) {
        const json_t *b = json_object_get(o, "content_block");
        const char *t = tg_json_str(b, "type");
        s->block = -1;
        if (is(t, "tool_use")) {
            close_item(s, s->cur, emit, ud);
            s->block = open_item(s, 'f', tg_json_str(b, "id"), tg_json_str(b, "name"), emit, ud);
        } else if (is(t, "text")) {
            text_to(s, 'm', tg_json_str(b, "text"), bytes, emit, ud);
        } else if (is(t, "thinking")) {
            text_to(s, 'r', tg_json_str(b, "thinking"), bytes, emit, ud);
        }
    } else if (is(type, "content_block_delta")) {
        const json_t *d = json_object_get(o, "delta");
        const char *t = tg_json_str(d, "type");
        if (is(t, "text_delta"))
            text_to(s, 'm', tg_json_str(d, "text"), bytes, emit, ud);
        else if (is(t, "thinking_delta"))
            text_to(s, 'r', tg_json_str(d, "thinking"), bytes, emit, ud);
        else if (is(t, "input_json_delta") && s->block >= 0 && s->items[s->block].open &&
                 tg_json_str(d, "partial_json") && *tg_json_str(d, "partial_json"))
            item_delta(s, s->block, tg_json_str(d, "partial_json"), bytes, emit, ud);
        /* signature_delta and citations_delta have no Responses form here. */
    } else if (is(type, "content_block_stop")) {
        if (s->block >= 0) close_item(s, s->block, emit, ud);
        s->block = -1;
    } else if (is(type, "message_delta")) {
        tg_tr_usage_anthropic(json_object_get(o, "usage"), u);
        const char *f = tg_tr_finish_reason(tg_json_str(json_object_get(o, "delta"), "stop_reason"));
        s->incomplete = is(f, "length")           ? "max_output_tokens"
                        : is(f, "content_filter") ? "content_filter"
                                                  : NULL;
    } else if (is(type, "message_stop")) {
        return finish(s, u, emit, ud);
    }
    return TG_TR_MORE; /* ping and unknown events are dropped */
}

int tg_rs_stream_event(tg_rs_stream_t *s, const char *event, const char *data, size_t len, tg_usage_t *u,
                       size_t *content_bytes, tg_tr_emit_fn emit, void *ud, char *err, size_t errlen) {
    if (s->ended) return TG_TR_DONE;
    if (!s->from_anthropic && len == 6 && !memcmp(data, "[DONE]", 6)) return finish(s, u, emit, ud);
    json_t *o = json_loadb(data, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        snprintf(err, errlen, "the provider sent a stream event that is not a JSON object");
        return TG_TR_ERROR;
    }
    int rc = TG_TR_MORE;
    const json_t *e = json_object_get(o, "error");
    const char *type = tg_json_str(o, "type") ? tg_json_str(o, "type") : event ? event : "";
    if ((e && !json_is_null(e)) || is(type, "error")) {
        tg_json_error_text(e, err, errlen);
        rc = TG_TR_ERROR;
    } else if (s->from_anthropic) {
        rc = an_event(s, type, o, u, content_bytes, emit, ud);
    } else {
        tg_tr_usage_openai(json_object_get(o, "usage"), u);
        chat_chunk(s, o, content_bytes, emit, ud);
    }
    json_decref(o);
    return rc;
}
