/* responses_req.c — a Responses API request as a Chat Completions request
 * or an Anthropic Messages request, plus the small documents the request
 * layer needs around it (the conversation's items for previous_response_id
 * chaining, the Responses-shaped error body). A DOM is built here because
 * the document changes shape. The Claude request is made by way of the Chat
 * one and translate.c, so both targets share one reading of the input and
 * Claude gets translate.c's mapping (system hoisting, role merging,
 * tool_result blocks, reasoning_effort to a thinking budget, response_format
 * as a system instruction).
 *
 * Choices and gaps: `developer` messages become `system` (most
 * OpenAI-dialect vendors refuse the developer role); reasoning input items
 * are dropped with a note (their encrypted content only means something to
 * OpenAI); metadata, include, text.verbosity, reasoning.summary and the
 * other options with no Chat equivalent are dropped with a note (the
 * Response still echoes them); store and previous_response_id are the
 * caller's; background, conversation, prompt templates, item_reference,
 * input_file and input_image by file_id are refused, as are built-in tools
 * (web_search, file_search...) unless the caller says the provider runs
 * them; two offers Codex CLI makes on every request in its default config
 * (a web_search with external_web_access false, namespace tools) are
 * dropped with a note instead.
 */
#include "providers/responses.h"
#include "providers/jsonutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends to the note unless the same text is there already (one line per
 * kind of change, however many items it touched). */
static void note(tg_rs_req_opts_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(tg_rs_req_opts_t *o, const char *fmt, ...) {
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (strstr(o->note, line)) return;
    size_t n = strlen(o->note);
    if (n + 3 >= sizeof(o->note)) return;
    snprintf(o->note + n, sizeof(o->note) - n, "%s%s", n ? "; " : "", line);
}

static int is(const char *s, const char *want) {
    return s && !strcmp(s, want);
}

/* --- the conversation's items ------------------------------------------- */

json_t *tg_rs_input_items(const json_t *req, const json_t *previous) {
    const json_t *in = json_object_get(req, "input");
    if (in && !json_is_string(in) && !json_is_array(in) && !json_is_null(in)) return NULL;
    json_t *items = json_array();
    if (json_is_array(previous)) json_array_extend(items, (json_t *)previous);
    if (json_is_string(in))
        json_array_append_new(items,
                              json_pack("{s:s,s:s,s:O}", "type", "message", "role", "user", "content", in));
    else if (json_is_array(in))
        json_array_extend(items, (json_t *)in);
    return items;
}

/* --- items -> Chat messages ------------------------------------------------ */

/* A user/system input part as a Chat content part. */
static json_t *chat_part(const json_t *p, size_t i, char *err, size_t errlen) {
    const char *t = tg_json_str(p, "type");
    if (is(t, "input_text") || is(t, "output_text") || is(t, "text"))
        return json_pack("{s:s,s:s}", "type", "text", "text",
                         tg_json_str(p, "text") ? tg_json_str(p, "text") : "");
    if (is(t, "input_image")) {
        const char *url = tg_json_str(p, "image_url");
        if (url == NULL) {
            tg_json_seterr(
                err, errlen,
                "input[%zu]: an input_image needs image_url (a file_id cannot be sent to this provider)", i);
            return NULL;
        }
        json_t *iu = json_pack("{s:s}", "url", url);
        if (tg_json_str(p, "detail")) json_object_set(iu, "detail", json_object_get(p, "detail"));
        return json_pack("{s:s,s:o}", "type", "image_url", "image_url", iu);
    }
    tg_json_seterr(err, errlen, "input[%zu]: content part type '%s' cannot be sent to this provider", i,
                   t ? t : "?");
    return NULL;
}

/* Joins the text of a content (string or parts) into one string. Non-text
 * parts are counted in *dropped. */
static json_t *joined_text(const json_t *c, int *dropped) {
    if (json_is_string(c)) return json_incref((json_t *)c);
    size_t len = 0, i;
    const json_t *p;
    json_array_foreach(c, i, p) len += json_string_length(json_object_get(p, "text"));
    char *buf = malloc(len + 1), *at = buf;
    json_array_foreach(c, i, p) {
        const json_t *t = json_object_get(p, "text");
        if (!json_is_string(t)) {
            (*dropped)++;
            continue;
        }
        memcpy(at, json_string_value(t), json_string_length(t));
        at += json_string_length(t);
    }
    json_t *s = json_stringn(buf, (size_t)(at - buf));
    free(buf);
    return s ? s : json_string("");
}

static int message_item(const json_t *it, size_t i, json_t *list, tg_rs_req_opts_t *o, char *err,
                        size_t errlen) {
    const char *role = tg_json_str(it, "role");
    const json_t *c = json_object_get(it, "content");
    if (!json_is_string(c) && !json_is_array(c)) {
        tg_json_seterr(err, errlen, "input[%zu]: a message needs content (a string or a list of parts)", i);
        return -1;
    }
    int dropped = 0;
    if (is(role, "assistant")) {
        json_t *text = joined_text(c, &dropped);
        json_array_append_new(list, json_pack("{s:s,s:o}", "role", "assistant", "content", text));
        return 0;
    }
    if (is(role, "system") || is(role, "developer")) {
        json_t *text = joined_text(c, &dropped);
        if (dropped) note(o, "non-text parts of a %s message dropped", role);
        json_array_append_new(list, json_pack("{s:s,s:o}", "role", "system", "content", text));
        return 0;
    }
    if (!is(role, "user")) {
        tg_json_seterr(err, errlen, "input[%zu]: role '%s' is not one of user, assistant, system, developer",
                       i, role ? role : "?");
        return -1;
    }
    if (json_is_string(c)) {
        json_array_append_new(list, json_pack("{s:s,s:O}", "role", "user", "content", c));
        return 0;
    }
    json_t *parts = json_array();
    size_t k;
    const json_t *p;
    json_array_foreach(c, k, p) {
        json_t *part = chat_part(p, i, err, errlen);
        if (part == NULL) {
            json_decref(parts);
            return -1;
        }
        json_array_append_new(parts, part);
    }
    json_array_append_new(list, json_pack("{s:s,s:o}", "role", "user", "content", parts));
    return 0;
}

/* A function_call joins the assistant message just before it (the text the
 * model wrote with its calls, or the previous call), else starts one. */
static int call_item(const json_t *it, size_t i, json_t *list, char *err, size_t errlen) {
    const char *id = tg_json_str(it, "call_id"), *name = tg_json_str(it, "name"),
               *args = tg_json_str(it, "arguments");
    if (id == NULL || name == NULL) {
        tg_json_seterr(err, errlen, "input[%zu]: a function_call needs call_id and name", i);
        return -1;
    }
    json_t *call = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function", "name", name,
                             "arguments", args && *args ? args : "{}");
    json_t *last = json_array_get(list, json_array_size(list) - 1);
    if (!is(tg_json_str(last, "role"), "assistant")) {
        last = json_pack("{s:s,s:n}", "role", "assistant", "content");
        json_array_append_new(list, last);
    }
    json_t *calls = json_object_get(last, "tool_calls");
    if (calls == NULL) {
        calls = json_array();
        json_object_set_new(last, "tool_calls", calls);
        if (is(json_string_value(json_object_get(last, "content")), ""))
            json_object_set_new(last, "content", json_null());
    }
    json_array_append_new(calls, call);
    return 0;
}

static int output_item(const json_t *it, size_t i, json_t *list, tg_rs_req_opts_t *o, char *err,
                       size_t errlen) {
    const char *id = tg_json_str(it, "call_id");
    const json_t *out = json_object_get(it, "output");
    if (id == NULL || (!json_is_string(out) && !json_is_array(out))) {
        tg_json_seterr(err, errlen, "input[%zu]: a function_call_output needs call_id and output", i);
        return -1;
    }
    int dropped = 0;
    json_t *text = joined_text(out, &dropped);
    if (dropped) note(o, "non-text parts of a function_call_output dropped");
    json_array_append_new(list,
                          json_pack("{s:s,s:s,s:o}", "role", "tool", "tool_call_id", id, "content", text));
    return 0;
}

static json_t *chat_messages(const json_t *req, tg_rs_req_opts_t *o, char *err, size_t errlen) {
    json_t *items = tg_rs_input_items(req, o->previous);
    if (items == NULL) {
        tg_json_seterr(err, errlen, "'input' must be a string or a list of items");
        return NULL;
    }
    json_t *list = json_array();
    const json_t *ins = json_object_get(req, "instructions");
    if (json_is_string(ins) && json_string_length(ins))
        json_array_append_new(list, json_pack("{s:s,s:O}", "role", "system", "content", ins));
    size_t i;
    const json_t *it;
    int rc = 0;
    json_array_foreach(items, i, it) {
        const char *t = tg_json_str(it, "type");
        if (!json_is_object(it)) {
            tg_json_seterr(err, errlen, "input[%zu] is not an object", i);
            rc = -1;
        } else if (is(t, "message") || (t == NULL && tg_json_str(it, "role")))
            rc = message_item(it, i, list, o, err, errlen);
        else if (is(t, "function_call"))
            rc = call_item(it, i, list, err, errlen);
        else if (is(t, "function_call_output"))
            rc = output_item(it, i, list, o, err, errlen);
        else if (is(t, "reasoning"))
            note(o, "reasoning items dropped (only OpenAI can read them back)");
        else if (is(t, "item_reference")) {
            tg_json_seterr(err, errlen, "input[%zu]: item_reference is not supported (send the item itself)",
                           i);
            rc = -1;
        } else {
            tg_json_seterr(err, errlen, "input[%zu]: item type '%s' cannot be sent to this provider", i,
                           t ? t : "?");
            rc = -1;
        }
        if (rc) break;
    }
    json_decref(items);
    if (rc == 0 && json_array_size(list) == 0) {
        tg_json_seterr(err, errlen, "'input' is required");
        rc = -1;
    }
    if (rc) {
        json_decref(list);
        return NULL;
    }
    return list;
}

/* --- tools and options ---------------------------------------------------- */

/* Tools a client offers on every request rather than asks for (Codex CLI
 * with its default config): a web_search that may not reach the web
 * (external_web_access false) and a namespace of sub-agent tools. A vendor
 * that cannot run them gets the request without them, with a note. */
static int offered_only(const json_t *t, tg_rs_req_opts_t *o) {
    const char *type = tg_json_str(t, "type");
    if (is(type, "web_search") && json_is_false(json_object_get(t, "external_web_access"))) {
        note(o, "web_search tool (external_web_access false) dropped");
        return 1;
    }
    if (is(type, "namespace")) {
        note(o, "namespace tool '%s' dropped", tg_json_str(t, "name") ? tg_json_str(t, "name") : "?");
        return 1;
    }
    return 0;
}

/* Responses' flat function tool -> Chat's nested one; anything else is a
 * built-in tool OpenAI runs itself. */
static int chat_tools(const json_t *req, json_t *out, tg_rs_req_opts_t *o, char *err, size_t errlen) {
    int native = o->native_tools;
    const json_t *tools = json_object_get(req, "tools");
    if (!json_is_array(tools) || json_array_size(tools) == 0) return 0;
    json_t *list = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *type = tg_json_str(t, "type");
        if (!is(type, "function")) {
            if (native && type) {
                json_array_append(list, (json_t *)t);
                continue;
            }
            if (offered_only(t, o)) continue;
            json_decref(list);
            tg_json_seterr(err, errlen, "tools[%zu]: the built-in tool '%s' cannot run at this provider", i,
                           type ? type : "?");
            return -1;
        }
        if (tg_json_str(t, "name") == NULL) {
            json_decref(list);
            tg_json_seterr(err, errlen, "tools[%zu]: a function tool needs a name", i);
            return -1;
        }
        json_t *fn = json_pack("{s:O}", "name", json_object_get(t, "name"));
        static const char *const keep[] = {"description", "parameters", "strict"};
        for (size_t k = 0; k < 3; k++) {
            const json_t *v = json_object_get(t, keep[k]);
            if (v && !json_is_null(v)) json_object_set(fn, keep[k], (json_t *)v);
        }
        json_array_append_new(list, json_pack("{s:s,s:o}", "type", "function", "function", fn));
    }
    if (json_array_size(list) == 0) { /* every tool was an offer: no tools, no tool_choice */
        json_decref(list);
        return 0;
    }
    json_object_set_new(out, "tools", list);
    const json_t *tc = json_object_get(req, "tool_choice");
    if (json_is_string(tc))
        json_object_set(out, "tool_choice", (json_t *)tc);
    else if (is(tg_json_str(tc, "type"), "function") && tg_json_str(tc, "name"))
        json_object_set_new(
            out, "tool_choice",
            json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name", tg_json_str(tc, "name")));
    if (json_is_boolean(json_object_get(req, "parallel_tool_calls")))
        json_object_set(out, "parallel_tool_calls", json_object_get(req, "parallel_tool_calls"));
    return 0;
}

/* text.format -> response_format. */
static void chat_format(const json_t *req, json_t *out, tg_rs_req_opts_t *o) {
    const json_t *text = json_object_get(req, "text"), *f = json_object_get(text, "format");
    const char *t = tg_json_str(f, "type");
    if (is(t, "json_schema")) {
        json_t *js = json_object();
        static const char *const keep[] = {"name", "description", "schema", "strict"};
        for (size_t k = 0; k < 4; k++) {
            const json_t *v = json_object_get(f, keep[k]);
            if (v && !json_is_null(v)) json_object_set(js, keep[k], (json_t *)v);
        }
        json_object_set_new(out, "response_format",
                            json_pack("{s:s,s:o}", "type", "json_schema", "json_schema", js));
    } else if (is(t, "json_object")) {
        json_object_set_new(out, "response_format", json_pack("{s:s}", "type", "json_object"));
    }
    if (tg_json_str(text, "verbosity")) note(o, "text.verbosity dropped");
}

static int refused(const json_t *req, char *err, size_t errlen) {
    if (json_is_true(json_object_get(req, "background"))) {
        tg_json_seterr(err, errlen, "background responses are not supported");
        return -1;
    }
    const json_t *c = json_object_get(req, "conversation");
    if (c && !json_is_null(c)) {
        tg_json_seterr(err, errlen, "'conversation' is not supported (use previous_response_id)");
        return -1;
    }
    const json_t *p = json_object_get(req, "prompt");
    if (p && !json_is_null(p)) {
        tg_json_seterr(err, errlen, "prompt templates ('prompt') are not supported");
        return -1;
    }
    return 0;
}

static void chat_params(const json_t *req, json_t *out, tg_rs_req_opts_t *o) {
    const json_t *max = json_object_get(req, "max_output_tokens");
    if (json_is_integer(max) && json_integer_value(max) >= 0)
        json_object_set(out, o->max_completion_tokens ? "max_completion_tokens" : "max_tokens",
                        (json_t *)max);
    static const char *const copied[] = {"temperature", "top_p"};
    for (size_t k = 0; k < 2; k++)
        if (json_is_number(json_object_get(req, copied[k])))
            json_object_set(out, copied[k], json_object_get(req, copied[k]));
    const json_t *r = json_object_get(req, "reasoning");
    if (tg_json_str(r, "effort")) json_object_set(out, "reasoning_effort", json_object_get(r, "effort"));
    if (tg_json_str(r, "summary") || tg_json_str(r, "generate_summary")) note(o, "reasoning.summary dropped");
    chat_format(req, out, o);
    if (tg_json_str(req, "user")) json_object_set(out, "user", json_object_get(req, "user"));
    if (json_is_true(json_object_get(req, "stream"))) {
        json_object_set_new(out, "stream", json_true());
        json_object_set_new(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    static const char *const dropped[] = {"metadata",     "include",          "truncation",
                                          "service_tier", "prompt_cache_key", "safety_identifier",
                                          "top_logprobs", "max_tool_calls"};
    for (size_t k = 0; k < sizeof(dropped) / sizeof(dropped[0]); k++) {
        const json_t *v = json_object_get(req, dropped[k]);
        if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0) &&
            !(json_is_object(v) && json_object_size(v) == 0) && !is(json_string_value(v), "disabled"))
            note(o, "%s dropped", dropped[k]);
    }
}

json_t *tg_rs_req_to_chat(const json_t *req, tg_rs_req_opts_t *o, char *err, size_t errlen) {
    if (!json_is_object(req)) {
        tg_json_seterr(err, errlen, "the request is not a JSON object");
        return NULL;
    }
    if (refused(req, err, errlen)) return NULL;
    json_t *msgs = chat_messages(req, o, err, errlen);
    if (msgs == NULL) return NULL;
    json_t *out = json_object();
    const char *model = o->model ? o->model : tg_json_str(req, "model");
    json_object_set_new(out, "model", json_string(model ? model : ""));
    json_object_set_new(out, "messages", msgs);
    if (chat_tools(req, out, o, err, errlen)) {
        json_decref(out);
        return NULL;
    }
    chat_params(req, out, o);
    return out;
}

json_t *tg_rs_req_to_anthropic(const json_t *req, tg_rs_req_opts_t *o, char *err, size_t errlen) {
    tg_rs_req_opts_t co = *o;
    co.native_tools = 0; /* Claude runs none of OpenAI's built-in tools */
    co.max_completion_tokens = 0;
    json_t *chat = tg_rs_req_to_chat(req, &co, err, errlen);
    if (chat == NULL) return NULL;
    memcpy(o->note, co.note, sizeof(o->note));
    /* Efforts translate.c has no budget for: xhigh thinks as much as high,
     * minimal and none do not think. */
    if (is(tg_json_str(chat, "reasoning_effort"), "xhigh"))
        json_object_set_new(chat, "reasoning_effort", json_string("high"));
    tg_tr_req_opts_t to = {.model = o->model, .default_max_tokens = o->default_max_tokens};
    json_t *out = tg_tr_req_openai_to_anthropic(chat, &to, err, errlen);
    json_decref(chat);
    if (out && to.note[0]) note(o, "%s", to.note);
    return out;
}

/* --- helpers for the request layer --------------------------------------- */

char *tg_rs_stored(tg_pool_t *pool, const json_t *req, const json_t *previous, const json_t *response,
                   size_t *len) {
    const json_t *output = json_object_get(response, "output");
    if (!json_is_array(output)) return NULL;
    json_t *items = tg_rs_input_items(req, previous);
    if (items == NULL) return NULL;
    json_array_extend(items, (json_t *)output);
    return tg_tr_dump(pool, items, len);
}

char *tg_rs_error_body(tg_pool_t *pool, const char *message, const char *type, const char *code,
                       size_t *len) {
    json_t *e = json_pack("{s:{s:s,s:s,s:n,s:s?}}", "error", "message", message ? message : "", "type",
                          type ? type : "invalid_request_error", "param", "code", code);
    return e ? tg_tr_dump(pool, e, len) : NULL;
}
