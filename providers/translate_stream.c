/* translate_stream.c — Chat Completions chunks <-> Anthropic Messages events,
 * one upstream event at a time. The state machine of one attempt lives in
 * its pool; each upstream event becomes zero or more client events written
 * through the caller's emitter from one reused buffer, so nothing grows with
 * the length of the answer. Usage seen on the way is normalised into
 * tg_usage_t with translate.c's readers. The mapping of events is tabled in
 * docs/responses.md (Chat and Messages columns).
 */
#include "providers/translate.h"
#include "providers/translate_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- streams --------------------------------------------------------------- */

#define MAX_TOOLS 64 /* OpenAI tool_calls indexes tracked per answer */

enum { BLK_NONE, BLK_TEXT, BLK_THINKING, BLK_TOOL };

struct tg_tr_stream_s {
    tg_pool_t *pool;
    int to_openai, include_usage;
    int64_t created;
    char *buf; /* one event's output, reused; grows (by doubling) only for a large event */
    size_t cap;
    char id[96], model[128];
    /* Anthropic -> OpenAI */
    int n_tools, cur_tool;
    int cur_args;  /* the open tool call got argument text */
    int role_sent; /* held back until there is content, so an early error can still fail over */
    /* OpenAI -> Anthropic */
    int started, open, n_blocks;
    int tool_block[MAX_TOOLS]; /* OpenAI tool index -> Anthropic block index + 1 (0 = none) */
    const char *stop_reason;
};

tg_tr_stream_t *tg_tr_stream_new(tg_pool_t *pool, int to_openai, int include_usage, int64_t created) {
    tg_tr_stream_t *s = tg_pool_calloc(pool, sizeof(*s));
    s->pool = pool;
    s->to_openai = to_openai;
    s->include_usage = include_usage;
    s->created = created;
    s->cap = 1024;
    s->buf = tg_pool_alloc(pool, s->cap);
    s->cur_tool = -1;
    return s;
}

/* Serialises o (stolen) into the reused buffer and emits it. */
static void emit_json(tg_tr_stream_t *s, tg_tr_emit_fn emit, void *ud, const char *event, json_t *o) {
    size_t n = tg_json_dump_into(s->pool, o, &s->buf, &s->cap);
    json_decref(o);
    if (n) emit(ud, event, s->buf, n);
}

/* Copies what fits, cut before a UTF-8 character that does not fit whole:
 * a cut character would make jansson refuse every event built with it. */
static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--; /* src[n] is the first byte left out: not a continuation byte */
    }
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Anthropic -> OpenAI: one chunk with `delta` (stolen) and a finish_reason. */
static void oa_chunk(tg_tr_stream_t *s, tg_tr_emit_fn emit, void *ud, json_t *delta, const char *finish) {
    if (!s->role_sent) {
        s->role_sent = 1;
        oa_chunk(s, emit, ud, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL);
    }
    json_t *c = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:s?}]}", "id", s->id, "object",
                          "chat.completion.chunk", "created", (json_int_t)s->created, "model", s->model,
                          "choices", "index", 0, "delta", delta, "logprobs", "finish_reason", finish);
    emit_json(s, emit, ud, NULL, c);
}

static void oa_tool_delta(tg_tr_stream_t *s, tg_tr_emit_fn emit, void *ud, json_t *call) {
    json_object_set_new(call, "index", json_integer(s->cur_tool));
    oa_chunk(s, emit, ud, json_pack("{s:[o]}", "tool_calls", call), NULL);
}

static void a2o_block_start(tg_tr_stream_t *s, const json_t *b, tg_tr_emit_fn emit, void *ud) {
    const char *t = tg_json_str(b, "type");
    if (t && !strcmp(t, "tool_use")) {
        s->cur_tool = s->n_tools++;
        s->cur_args = 0;
        oa_tool_delta(s, emit, ud,
                      json_pack("{s:s,s:s,s:{s:s,s:s}}", "id",
                                tg_json_str(b, "id") ? tg_json_str(b, "id") : "", "type", "function",
                                "function", "name", tg_json_str(b, "name") ? tg_json_str(b, "name") : "",
                                "arguments", ""));
    } else if (t && !strcmp(t, "text") && tg_json_str(b, "text") && *tg_json_str(b, "text")) {
        oa_chunk(s, emit, ud, json_pack("{s:s}", "content", tg_json_str(b, "text")), NULL);
    }
}

static void a2o_delta(tg_tr_stream_t *s, const json_t *d, size_t *bytes, tg_tr_emit_fn emit, void *ud) {
    const char *t = tg_json_str(d, "type"), *v;
    if (t == NULL) return;
    if (!strcmp(t, "text_delta") && (v = tg_json_str(d, "text")) && *v) {
        *bytes += strlen(v);
        oa_chunk(s, emit, ud, json_pack("{s:s}", "content", v), NULL);
    } else if (!strcmp(t, "thinking_delta") && (v = tg_json_str(d, "thinking")) && *v) {
        *bytes += strlen(v);
        oa_chunk(s, emit, ud, json_pack("{s:s}", "reasoning_content", v), NULL);
    } else if (!strcmp(t, "input_json_delta") && (v = tg_json_str(d, "partial_json")) && *v &&
               s->cur_tool >= 0) {
        *bytes += strlen(v);
        s->cur_args = 1;
        oa_tool_delta(s, emit, ud, json_pack("{s:{s:s}}", "function", "arguments", v));
    }
    /* signature_delta and citations_delta have no OpenAI form. */
}

static int a2o_event(tg_tr_stream_t *s, const char *type, const json_t *o, tg_usage_t *u, size_t *bytes,
                     tg_tr_emit_fn emit, void *ud) {
    if (!strcmp(type, "message_start")) {
        const json_t *m = json_object_get(o, "message");
        copy_str(s->id, sizeof(s->id), tg_json_str(m, "id"));
        copy_str(s->model, sizeof(s->model), tg_json_str(m, "model"));
        tg_tr_usage_anthropic(json_object_get(m, "usage"), u);
    } else if (!strcmp(type, "content_block_start")) {
        a2o_block_start(s, json_object_get(o, "content_block"), emit, ud);
    } else if (!strcmp(type, "content_block_delta")) {
        a2o_delta(s, json_object_get(o, "delta"), bytes, emit, ud);
    } else if (!strcmp(type, "content_block_stop")) {
        /* A tool without parameters streams no argument text (or only
         * ""): OpenAI clients expect the JSON text "{}". */
        if (s->cur_tool >= 0 && !s->cur_args)
            oa_tool_delta(s, emit, ud, json_pack("{s:{s:s}}", "function", "arguments", "{}"));
        s->cur_tool = -1;
    } else if (!strcmp(type, "message_delta")) {
        tg_tr_usage_anthropic(json_object_get(o, "usage"), u);
        const char *sr = tg_json_str(json_object_get(o, "delta"), "stop_reason");
        oa_chunk(s, emit, ud, json_object(), tg_tr_finish_reason(sr));
    } else if (!strcmp(type, "message_stop")) {
        if (s->include_usage) {
            json_t *c = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", s->id, "object",
                                  "chat.completion.chunk", "created", (json_int_t)s->created, "model",
                                  s->model, "choices", "usage", usage_openai_json(u));
            emit_json(s, emit, ud, NULL, c);
        }
        return TG_TR_DONE;
    }
    return TG_TR_MORE; /* ping and unknown events are dropped */
}

/* OpenAI -> Anthropic. */
static void an_event(tg_tr_stream_t *s, tg_tr_emit_fn emit, void *ud, const char *type, json_t *o) {
    json_object_set_new(o, "type", json_string(type));
    emit_json(s, emit, ud, type, o);
}

static void o2a_start(tg_tr_stream_t *s, const json_t *o, const tg_usage_t *u, tg_tr_emit_fn emit, void *ud) {
    if (s->started) return;
    s->started = 1;
    copy_str(s->id, sizeof(s->id), tg_json_str(o, "id"));
    copy_str(s->model, sizeof(s->model), tg_json_str(o, "model"));
    json_t *m = json_pack("{s:s,s:s,s:s,s:s,s:[],s:n,s:n,s:o}", "id", s->id, "type", "message", "role",
                          "assistant", "model", s->model, "content", "stop_reason", "stop_sequence", "usage",
                          usage_anthropic_json(u));
    an_event(s, emit, ud, "message_start", json_pack("{s:o}", "message", m));
}

static void o2a_close(tg_tr_stream_t *s, tg_tr_emit_fn emit, void *ud) {
    if (s->open == BLK_NONE) return;
    an_event(s, emit, ud, "content_block_stop", json_pack("{s:i}", "index", s->n_blocks - 1));
    s->open = BLK_NONE;
}

/* Opens a new block of `kind` (closing the open one) unless it is open. */
static void o2a_open(tg_tr_stream_t *s, int kind, json_t *block, tg_tr_emit_fn emit, void *ud) {
    if (s->open == kind && kind != BLK_TOOL) {
        json_decref(block);
        return;
    }
    o2a_close(s, emit, ud);
    s->open = kind;
    an_event(s, emit, ud, "content_block_start",
             json_pack("{s:i,s:o}", "index", s->n_blocks++, "content_block", block));
}

static void o2a_block_delta(tg_tr_stream_t *s, int index, json_t *delta, tg_tr_emit_fn emit, void *ud) {
    an_event(s, emit, ud, "content_block_delta", json_pack("{s:i,s:o}", "index", index, "delta", delta));
}

static void o2a_tools(tg_tr_stream_t *s, const json_t *calls, size_t *bytes, tg_tr_emit_fn emit, void *ud) {
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc) {
        json_int_t k = json_integer_value(json_object_get(tc, "index"));
        if (k < 0 || k >= MAX_TOOLS) continue;
        const json_t *fn = json_object_get(tc, "function");
        if (s->tool_block[k] == 0) {
            const char *id = tg_json_str(tc, "id"), *name = tg_json_str(fn, "name");
            json_t *b = json_pack("{s:s,s:s,s:s,s:{}}", "type", "tool_use", "id", id ? id : "", "name",
                                  name ? name : "", "input");
            o2a_open(s, BLK_TOOL, b, emit, ud);
            s->tool_block[k] = s->n_blocks;
        }
        const char *args = tg_json_str(fn, "arguments");
        if (args && *args) {
            *bytes += strlen(args);
            o2a_block_delta(s, s->tool_block[k] - 1,
                            json_pack("{s:s,s:s}", "type", "input_json_delta", "partial_json", args), emit,
                            ud);
        }
    }
}

static void o2a_choice(tg_tr_stream_t *s, const json_t *ch, size_t *bytes, tg_tr_emit_fn emit, void *ud) {
    const json_t *d = json_object_get(ch, "delta");
    const char *r = tg_json_str(d, "reasoning_content"), *t = tg_json_str(d, "content");
    if (r && *r) {
        o2a_open(s, BLK_THINKING,
                 json_pack("{s:s,s:s,s:s}", "type", "thinking", "thinking", "", "signature", ""), emit, ud);
        *bytes += strlen(r);
        o2a_block_delta(s, s->n_blocks - 1, json_pack("{s:s,s:s}", "type", "thinking_delta", "thinking", r),
                        emit, ud);
    }
    if (t && *t) {
        o2a_open(s, BLK_TEXT, json_pack("{s:s,s:s}", "type", "text", "text", ""), emit, ud);
        *bytes += strlen(t);
        o2a_block_delta(s, s->n_blocks - 1, json_pack("{s:s,s:s}", "type", "text_delta", "text", t), emit,
                        ud);
    }
    o2a_tools(s, json_object_get(d, "tool_calls"), bytes, emit, ud);
    const char *f = tg_json_str(ch, "finish_reason");
    if (f) {
        s->stop_reason = tg_tr_stop_reason(f);
        o2a_close(s, emit, ud);
    }
}

/* [DONE]: the last block's stop, message_delta with the final usage, message_stop. */
static int o2a_done(tg_tr_stream_t *s, const tg_usage_t *u, tg_tr_emit_fn emit, void *ud) {
    o2a_start(s, NULL, u, emit, ud);
    o2a_close(s, emit, ud);
    json_t *d =
        json_pack("{s:{s:s,s:n},s:o}", "delta", "stop_reason", s->stop_reason ? s->stop_reason : "end_turn",
                  "stop_sequence", "usage", usage_anthropic_json(u));
    an_event(s, emit, ud, "message_delta", d);
    an_event(s, emit, ud, "message_stop", json_object());
    return TG_TR_DONE;
}

int tg_tr_stream_event(tg_tr_stream_t *s, const char *event, const char *data, size_t len, tg_usage_t *u,
                       size_t *content_bytes, tg_tr_emit_fn emit, void *ud, char *err, size_t errlen) {
    if (!s->to_openai && len == 6 && !memcmp(data, "[DONE]", 6)) return o2a_done(s, u, emit, ud);
    json_error_t je;
    json_t *o = json_loadb(data, len, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        tg_json_seterr(err, errlen, "the provider sent a stream event that is not a JSON object");
        return TG_TR_ERROR;
    }
    int rc = TG_TR_MORE;
    const json_t *e = json_object_get(o, "error");
    const char *type = tg_json_str(o, "type") ? tg_json_str(o, "type") : event ? event : "";
    if (e && !json_is_null(e)) {
        tg_json_error_text(e, err, errlen);
        rc = TG_TR_ERROR;
    } else if (s->to_openai) {
        rc = a2o_event(s, type, o, u, content_bytes, emit, ud);
    } else {
        tg_tr_usage_openai(json_object_get(o, "usage"), u);
        o2a_start(s, o, u, emit, ud);
        size_t i;
        const json_t *ch;
        json_array_foreach(json_object_get(o, "choices"), i, ch) {
            if (json_integer_value(json_object_get(ch, "index")) == 0)
                o2a_choice(s, ch, content_bytes, emit, ud);
        }
    }
    json_decref(o);
    return rc;
}
