/* responses.c — whole upstream answers as Response objects: a Chat
 * completion or an Anthropic message in, a new jansson Response out, with
 * the echo fields SDKs read taken from the client's request and the usage
 * normalised into tg_usage_t on the way (translate.c's readers). Also the
 * builders of the Response skeleton, its usage object and its output items,
 * which responses_stream.c uses for its events.
 *
 * Mapping: reasoning text (DeepSeek/Qwen reasoning_content, Claude thinking
 * blocks) becomes a reasoning item with one summary_text part; answer text
 * one message item (consecutive Claude text blocks share it; an answer with
 * neither text nor calls still gets an empty one); each tool call a
 * function_call item whose call_id is the vendor's call id. finish_reason
 * length / stop_reason max_tokens make the status incomplete with reason
 * max_output_tokens, content_filter / refusal with reason content_filter.
 * Claude's redacted thinking and server-tool blocks have no Responses form
 * here and are left out. Item ids are "<rs|msg|fc>_<caller id>_<output
 * index>", unique within a response and across responses of one gateway.
 */
#include "providers/responses.h"
#include "providers/jsonutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is(const char *s, const char *want) {
    return s && !strcmp(s, want);
}

/* A string of n bytes that may not be valid UTF-8 (a vendor's or a cut
 * one): jansson refuses those, and an empty string is better than none. */
static json_t *str_or_empty(const char *s, size_t n) {
    json_t *v = s ? json_stringn(s, n) : NULL;
    return v ? v : json_string("");
}

/* --- skeleton, usage and items -------------------------------------------- */

/* The request's value of key, or dflt (stolen) when absent or null. */
static void echo(json_t *r, const json_t *req, const char *key, json_t *dflt) {
    const json_t *v = json_object_get(req, key);
    if (v && !json_is_null(v)) {
        json_object_set(r, key, (json_t *)v);
        json_decref(dflt);
    } else {
        json_object_set_new(r, key, dflt);
    }
}

json_t *tg_rs_response_new(const tg_rs_resp_opts_t *o, const char *model, const char *status) {
    const json_t *req = o->req;
    if (o->model) model = o->model;
    if (model == NULL) model = tg_json_str(req, "model");
    json_t *r = json_pack("{s:s+,s:s,s:I,s:s,s:b,s:n,s:n}", "id", "resp_", o->id ? o->id : "", "object",
                          "response", "created_at", (json_int_t)o->created_at, "status", status, "background",
                          0, "error", "incomplete_details");
    if (r == NULL) /* an id that is not UTF-8 */
        r = json_pack("{s:s,s:s,s:I,s:s,s:b,s:n,s:n}", "id", "resp_", "object", "response", "created_at",
                      (json_int_t)o->created_at, "status", status, "background", 0, "error",
                      "incomplete_details");
    echo(r, req, "instructions", json_null());
    echo(r, req, "max_output_tokens", json_null());
    json_t *m = model ? json_string(model) : NULL;
    json_object_set_new(r, "model", m ? m : json_string(""));
    json_object_set_new(r, "output", json_array());
    echo(r, req, "parallel_tool_calls", json_true());
    echo(r, req, "previous_response_id", json_null());
    echo(r, req, "reasoning", json_pack("{s:n,s:n}", "effort", "summary"));
    echo(r, req, "store", json_true());
    echo(r, req, "temperature", json_null());
    echo(r, req, "text", json_pack("{s:{s:s}}", "format", "type", "text"));
    echo(r, req, "tool_choice", json_string("auto"));
    echo(r, req, "tools", json_array());
    echo(r, req, "top_p", json_null());
    echo(r, req, "truncation", json_string("disabled"));
    json_object_set_new(r, "usage", json_null());
    echo(r, req, "user", json_null());
    echo(r, req, "metadata", json_object());
    return r;
}

json_t *tg_rs_usage_json(const tg_usage_t *u) {
    return json_pack("{s:I,s:{s:I},s:I,s:{s:I},s:I}", "input_tokens", (json_int_t)u->input_tokens,
                     "input_tokens_details", "cached_tokens", (json_int_t)u->cached_input_tokens,
                     "output_tokens", (json_int_t)u->output_tokens, "output_tokens_details",
                     "reasoning_tokens", (json_int_t)u->reasoning_tokens, "total_tokens",
                     (json_int_t)(u->input_tokens + u->output_tokens));
}

json_t *tg_rs_item_message(const char *id, const char *text, size_t len, const char *status) {
    json_t *content = json_array();
    if (text)
        json_array_append_new(content, json_pack("{s:s,s:[],s:o}", "type", "output_text", "annotations",
                                                 "text", str_or_empty(text, len)));
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", id, "type", "message", "status", status, "role",
                     "assistant", "content", content);
}

json_t *tg_rs_item_reasoning(const char *id, const char *text, size_t len) {
    json_t *summary = json_array();
    if (text)
        json_array_append_new(
            summary, json_pack("{s:s,s:o}", "type", "summary_text", "text", str_or_empty(text, len)));
    return json_pack("{s:s,s:s,s:o}", "id", id, "type", "reasoning", "summary", summary);
}

json_t *tg_rs_item_call(const char *id, const char *call_id, const char *name, const char *args, size_t len,
                        const char *status) {
    json_t *a = is(status, "completed") && (args == NULL || len == 0) ? json_string("{}")
                                                                      : str_or_empty(args, args ? len : 0);
    json_t *n = name ? json_string(name) : NULL;
    json_t *c = call_id ? json_string(call_id) : NULL;
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "id", id, "type", "function_call", "status", status,
                     "call_id", c ? c : json_string(""), "name", n ? n : json_string(""), "arguments", a);
}

/* --- answers ---------------------------------------------------------------- */

/* Builds the output of one answer, item by item. */
typedef struct {
    json_t *output;
    const char *id;
    char item_id[160];
    int last; /* kind of the last item: 0 none, 'r' reasoning, 'm' message, 'f' call */
} out_t;

static const char *next_id(out_t *b, const char *prefix) {
    snprintf(b->item_id, sizeof(b->item_id), "%s_%s_%zu", prefix, b->id, json_array_size(b->output));
    return b->item_id;
}

/* Appends text to the last item when it is of the same kind, else to a new one. */
static void add_text(out_t *b, int kind, const json_t *text) {
    if (!json_is_string(text) || json_string_length(text) == 0) return;
    json_t *part;
    if (b->last == kind) {
        json_t *item = json_array_get(b->output, json_array_size(b->output) - 1);
        part = json_array_get(json_object_get(item, kind == 'm' ? "content" : "summary"), 0);
        const json_t *old = json_object_get(part, "text");
        size_t a = json_string_length(old), n = json_string_length(text);
        char *cat = malloc(a + n);
        memcpy(cat, json_string_value(old), a);
        memcpy(cat + a, json_string_value(text), n);
        json_object_set_new(part, "text", json_stringn(cat, a + n));
        free(cat);
        return;
    }
    const char *id = next_id(b, kind == 'm' ? "msg" : "rs");
    json_array_append_new(
        b->output,
        kind == 'm' ? tg_rs_item_message(id, json_string_value(text), json_string_length(text), "completed")
                    : tg_rs_item_reasoning(id, json_string_value(text), json_string_length(text)));
    b->last = kind;
}

static void add_call(out_t *b, const char *call_id, const char *name, const char *args) {
    const char *id = next_id(b, "fc");
    char gen[200];
    if (call_id == NULL || !*call_id) {
        snprintf(gen, sizeof(gen), "call_%s_%zu", b->id, json_array_size(b->output));
        call_id = gen;
    }
    json_array_append_new(b->output,
                          tg_rs_item_call(id, call_id, name, args, args ? strlen(args) : 0, "completed"));
    b->last = 'f';
}

/* The finished Response around the built output: status from the stop
 * reason (incomplete_reason NULL: completed), output_text, usage. */
static json_t *finish(const tg_rs_resp_opts_t *o, const char *model, out_t *b, const char *incomplete_reason,
                      const tg_usage_t *u) {
    int has_message = 0, has_call = 0;
    size_t i, len = 0;
    json_t *it;
    json_array_foreach(b->output, i, it) {
        has_message |= is(tg_json_str(it, "type"), "message");
        has_call |= is(tg_json_str(it, "type"), "function_call");
    }
    if (!has_message && !has_call)
        json_array_append_new(b->output, tg_rs_item_message(next_id(b, "msg"), "", 0, "completed"));
    json_t *r = tg_rs_response_new(o, model, incomplete_reason ? "incomplete" : "completed");
    if (incomplete_reason)
        json_object_set_new(r, "incomplete_details", json_pack("{s:s}", "reason", incomplete_reason));
    json_array_foreach(b->output, i, it) {
        if (is(tg_json_str(it, "type"), "message"))
            len += json_string_length(
                json_object_get(json_array_get(json_object_get(it, "content"), 0), "text"));
    }
    char *text = malloc(len + 1), *at = text;
    json_array_foreach(b->output, i, it) {
        const json_t *t = json_object_get(json_array_get(json_object_get(it, "content"), 0), "text");
        if (!is(tg_json_str(it, "type"), "message") || !json_is_string(t)) continue;
        memcpy(at, json_string_value(t), json_string_length(t));
        at += json_string_length(t);
    }
    json_object_set_new(r, "output", b->output);
    json_object_set_new(r, "output_text", str_or_empty(text, (size_t)(at - text)));
    free(text);
    if (u->present) json_object_set_new(r, "usage", tg_rs_usage_json(u));
    return r;
}

json_t *tg_rs_resp_from_chat(const json_t *resp, const tg_rs_resp_opts_t *o, tg_usage_t *u, char *err,
                             size_t errlen) {
    const json_t *ch = json_array_get(json_object_get(resp, "choices"), 0);
    const json_t *m = json_object_get(ch, "message");
    if (!json_is_object(m)) {
        tg_json_seterr(err, errlen, "the answer is not an OpenAI chat.completion");
        return NULL;
    }
    tg_usage_t local = {0};
    if (u == NULL) u = &local;
    tg_tr_usage_openai(json_object_get(resp, "usage"), u);
    out_t b = {.output = json_array(), .id = o->id ? o->id : ""};
    const json_t *r = json_object_get(m, "reasoning_content");
    add_text(&b, 'r', json_is_string(r) ? r : json_object_get(m, "reasoning"));
    add_text(&b, 'm', json_object_get(m, "content"));
    const json_t *refusal = json_object_get(m, "refusal");
    if (json_is_string(refusal) && json_string_length(refusal)) {
        json_array_append_new(b.output, tg_rs_item_message(next_id(&b, "msg"), NULL, 0, "completed"));
        json_t *item = json_array_get(b.output, json_array_size(b.output) - 1);
        json_array_append_new(json_object_get(item, "content"),
                              json_pack("{s:s,s:O}", "type", "refusal", "refusal", refusal));
        b.last = 'f'; /* text after a refusal starts a new item */
    }
    size_t i;
    const json_t *tc;
    json_array_foreach(json_object_get(m, "tool_calls"), i, tc) {
        const json_t *fn = json_object_get(tc, "function");
        add_call(&b, tg_json_str(tc, "id"), tg_json_str(fn, "name"), tg_json_str(fn, "arguments"));
    }
    const char *f = tg_json_str(ch, "finish_reason");
    const char *why = is(f, "length")           ? "max_output_tokens"
                      : is(f, "content_filter") ? "content_filter"
                                                : NULL;
    return finish(o, tg_json_str(resp, "model"), &b, why, u);
}

json_t *tg_rs_resp_from_anthropic(const json_t *msg, const tg_rs_resp_opts_t *o, tg_usage_t *u, char *err,
                                  size_t errlen) {
    const json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || !json_is_array(content)) {
        tg_json_seterr(err, errlen, "the answer is not an Anthropic message");
        return NULL;
    }
    tg_usage_t local = {0};
    if (u == NULL) u = &local;
    tg_tr_usage_anthropic(json_object_get(msg, "usage"), u);
    out_t b = {.output = json_array(), .id = o->id ? o->id : ""};
    size_t i;
    const json_t *blk;
    json_array_foreach(content, i, blk) {
        const char *t = tg_json_str(blk, "type");
        if (is(t, "text"))
            add_text(&b, 'm', json_object_get(blk, "text"));
        else if (is(t, "thinking"))
            add_text(&b, 'r', json_object_get(blk, "thinking"));
        else if (is(t, "tool_use")) {
            const json_t *in = json_object_get(blk, "input");
            char *args = in ? json_dumps(in, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            add_call(&b, tg_json_str(blk, "id"), tg_json_str(blk, "name"), args);
            free(args);
        }
    }
    const char *sr = tg_json_str(msg, "stop_reason");
    const char *why = is(tg_tr_finish_reason(sr), "length")           ? "max_output_tokens"
                      : is(tg_tr_finish_reason(sr), "content_filter") ? "content_filter"
                                                                      : NULL;
    return finish(o, tg_json_str(msg, "model"), &b, why, u);
}
