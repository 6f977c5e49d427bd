/* translate.c — OpenAI chat completions <-> Anthropic messages (the mapping is
 * tabled in docs/responses.md, Chat and Messages columns). Requests and whole
 * answers are pure functions from one jansson value to a new one: a DOM is
 * built here because the document changes shape. Streams are
 * translated event by event in translate_stream.c. Usage of either dialect is
 * normalised into tg_usage_t here too.
 *
 * Gaps (no equivalent on the other side): response_format becomes a system
 * instruction for Claude (no JSON guarantee); reasoning_content / thinking
 * blocks in *requests* are dropped both ways (Claude needs its own signed
 * blocks back; OpenAI-dialect vendors refuse or ignore them) while answers
 * and streams carry them; Anthropic thinking options are dropped for
 * OpenAI-dialect models, top_k too; penalties, seed and logprobs are dropped
 * for Claude; n > 1, audio/file parts, Anthropic documents and server tools
 * are refused with a message; tool_result images are dropped and is_error
 * becomes an "Error: " prefix; an OpenAI-dialect stream's message_start has
 * zero input tokens (the counts come with the final message_delta).
 */
#include "providers/translate.h"
#include "providers/translate_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Budgets for OpenAI's reasoning_effort when Claude thinks instead. */
#define EFFORT_LOW 1024
#define EFFORT_MEDIUM 4096
#define EFFORT_HIGH 16384

static void note(tg_tr_req_opts_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(tg_tr_req_opts_t *o, const char *fmt, ...) {
    size_t n = strlen(o->note);
    if (n + 3 >= sizeof(o->note)) return;
    if (n) {
        memcpy(o->note + n, "; ", 3);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->note + n, sizeof(o->note) - n, fmt, ap);
    va_end(ap);
}

static int jtrue(const json_t *o, const char *key) {
    return json_is_true(json_object_get(o, key));
}

char *tg_tr_dump(tg_pool_t *pool, json_t *o, size_t *len) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL) return NULL;
    *len = strlen(s);
    char *p = tg_pool_strndup(pool, s, *len);
    free(s);
    return p;
}

/* --- stop / finish reasons and usage ------------------------------------ */

const char *tg_tr_finish_reason(const char *stop_reason) {
    if (stop_reason == NULL) return "stop";
    if (!strcmp(stop_reason, "max_tokens") || !strcmp(stop_reason, "model_context_window_exceeded"))
        return "length";
    if (!strcmp(stop_reason, "tool_use")) return "tool_calls";
    if (!strcmp(stop_reason, "refusal")) return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn */
}

const char *tg_tr_stop_reason(const char *finish_reason) {
    if (finish_reason == NULL) return "end_turn";
    if (!strcmp(finish_reason, "length")) return "max_tokens";
    if (!strcmp(finish_reason, "tool_calls") || !strcmp(finish_reason, "function_call")) return "tool_use";
    if (!strcmp(finish_reason, "content_filter")) return "refusal";
    return "end_turn";
}

/* A token count: a non-negative integer, held to TG_COUNT_MAX so that sums of
 * counts (usage totals, max_tokens plus a thinking budget) cannot overflow
 * (found by tests/fuzz/fuzz_translate.c with 19-digit numbers). */
static int get_count(const json_t *o, const char *key, int64_t *v) {
    const json_t *n = json_object_get(o, key);
    if (!json_is_integer(n) || json_integer_value(n) < 0) return 0;
    *v = json_integer_value(n) > TG_COUNT_MAX ? TG_COUNT_MAX : json_integer_value(n);
    return 1;
}

/* Anthropic's input_tokens exclude cache reads and writes; ours include them.
 * Only the fields present are overwritten: message_delta may repeat some.
 * output_tokens_details.thinking_tokens is the reasoning part. */
void tg_tr_usage_anthropic(const json_t *usage, tg_usage_t *u) {
    if (!json_is_object(usage)) return;
    int64_t plain = u->input_tokens - u->cached_input_tokens - u->cache_write_tokens;
    int64_t v;
    int any = 0;
    if (get_count(usage, "input_tokens", &v)) plain = v, any = 1;
    if (get_count(usage, "cache_read_input_tokens", &v)) u->cached_input_tokens = v, any = 1;
    if (get_count(usage, "cache_creation_input_tokens", &v)) u->cache_write_tokens = v, any = 1;
    if (get_count(usage, "output_tokens", &v)) u->output_tokens = v, any = 1;
    /* Claude's thinking, part of output_tokens (message_delta carries it). */
    if (get_count(json_object_get(usage, "output_tokens_details"), "thinking_tokens", &v))
        u->reasoning_tokens = v, any = 1;
    u->input_tokens = plain + u->cached_input_tokens + u->cache_write_tokens;
    if (any) {
        u->present = 1;
        u->estimated = 0;
    }
}

/* DeepSeek's prompt_cache_hit_tokens win over prompt_tokens_details. */
void tg_tr_usage_openai(const json_t *usage, tg_usage_t *u) {
    if (!json_is_object(usage)) return;
    int64_t v;
    u->present = 1;
    u->estimated = 0;
    if (get_count(usage, "prompt_tokens", &v)) u->input_tokens = v;
    if (get_count(usage, "completion_tokens", &v)) u->output_tokens = v;
    if (get_count(usage, "prompt_cache_hit_tokens", &v))
        u->cached_input_tokens = v;
    else if (get_count(json_object_get(usage, "prompt_tokens_details"), "cached_tokens", &v))
        u->cached_input_tokens = v;
    if (get_count(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens", &v))
        u->reasoning_tokens = v;
}

/* --- OpenAI request -> Anthropic request -------------------------------- */

/* An image_url part: a data: URL becomes a base64 source, anything else a
 * url source. */
static json_t *image_block(const json_t *part, char *err, size_t errlen) {
    const json_t *iu = json_object_get(part, "image_url");
    const char *url = json_is_string(iu) ? json_string_value(iu) : tg_json_str(iu, "url");
    if (url == NULL) {
        tg_json_seterr(err, errlen, "an image_url part needs image_url.url");
        return NULL;
    }
    if (strncmp(url, "data:", 5) != 0)
        return json_pack("{s:s,s:{s:s,s:s}}", "type", "image", "source", "type", "url", "url", url);
    const char *semi = strchr(url + 5, ';'), *comma = strchr(url + 5, ',');
    if (semi == NULL || comma == NULL || semi > comma || strncmp(semi, ";base64,", 8) != 0) {
        tg_json_seterr(err, errlen, "an image data: URL must be 'data:<media type>;base64,<data>'");
        return NULL;
    }
    json_t *mt = json_stringn(url + 5, (size_t)(semi - (url + 5)));
    return json_pack("{s:s,s:{s:s,s:o,s:s}}", "type", "image", "source", "type", "base64", "media_type", mt,
                     "data", comma + 1);
}

/* Appends the blocks of an OpenAI content (string, parts or null). Empty
 * texts are skipped: Anthropic refuses empty text blocks. */
static int add_content(json_t *blocks, const json_t *content, char *err, size_t errlen) {
    if (json_is_string(content)) {
        if (json_string_length(content))
            json_array_append_new(blocks, json_pack("{s:s,s:O}", "type", "text", "text", content));
        return 0;
    }
    size_t i;
    const json_t *p;
    json_array_foreach(content, i, p) {
        const char *t = tg_json_str(p, "type");
        json_t *b = NULL;
        if (t && !strcmp(t, "text")) {
            const json_t *txt = json_object_get(p, "text");
            if (!json_is_string(txt) || !json_string_length(txt)) continue;
            b = json_pack("{s:s,s:O}", "type", "text", "text", txt);
            const json_t *cc = json_object_get(p, "cache_control");
            if (cc) json_object_set(b, "cache_control", (json_t *)cc);
        } else if (t && !strcmp(t, "image_url")) {
            if ((b = image_block(p, err, errlen)) == NULL) return -1;
        } else {
            tg_json_seterr(err, errlen, "content part type '%s' cannot be sent to an Anthropic model",
                           t ? t : "?");
            return -1;
        }
        json_array_append_new(blocks, b);
    }
    return 0;
}

/* The text of a system message (string or text parts). */
static void add_system(json_t **sys, const json_t *content) {
    const json_t *one = content;
    size_t i = 0, n = json_is_array(content) ? json_array_size(content) : 1;
    for (; i < n; i++) {
        if (json_is_array(content)) one = json_object_get(json_array_get(content, i), "text");
        const char *s = json_string_value(one);
        if (s == NULL || !*s) continue;
        if (*sys == NULL)
            *sys = json_string(s);
        else {
            const char *old = json_string_value(*sys);
            size_t a = strlen(old), b = strlen(s);
            char *cat = malloc(a + b + 3);
            memcpy(cat, old, a);
            memcpy(cat + a, "\n\n", 2);
            memcpy(cat + a + 2, s, b + 1);
            json_string_set(*sys, cat);
            free(cat);
        }
    }
}

static int add_tool_uses(json_t *blocks, const json_t *calls, size_t mi, char *err, size_t errlen) {
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc) {
        const json_t *fn = json_object_get(tc, "function");
        const char *id = tg_json_str(tc, "id"), *name = tg_json_str(fn, "name"),
                   *args = tg_json_str(fn, "arguments");
        if (id == NULL || name == NULL) {
            tg_json_seterr(err, errlen, "messages[%zu].tool_calls[%zu] needs an id and function.name", mi, i);
            return -1;
        }
        json_t *input = args && *args ? json_loads(args, JSON_DECODE_ANY, NULL) : json_object();
        if (!json_is_object(input)) {
            json_decref(input);
            tg_json_seterr(err, errlen,
                           "messages[%zu].tool_calls[%zu].function.arguments is not a JSON object", mi, i);
            return -1;
        }
        json_array_append_new(blocks, json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id", id, "name",
                                                name, "input", input));
    }
    return 0;
}

static json_t *tool_result(const json_t *m) {
    const json_t *c = json_object_get(m, "content");
    json_t *content;
    if (json_is_array(c)) {
        content = json_array();
        size_t i;
        const json_t *p;
        json_array_foreach(c, i, p) {
            const char *t = tg_json_str(p, "text");
            if (t) json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", t));
        }
    } else {
        content = json_string(json_is_string(c) ? json_string_value(c) : "");
    }
    return json_pack("{s:s,s:s,s:o}", "type", "tool_result", "tool_use_id",
                     tg_json_str(m, "tool_call_id") ? tg_json_str(m, "tool_call_id") : "", "content",
                     content);
}

/* One OpenAI message as Anthropic blocks into *blocks (role in *role). */
static int message_blocks(const json_t *m, size_t mi, const char **role, json_t *blocks, tg_tr_req_opts_t *o,
                          char *err, size_t errlen) {
    const char *r = tg_json_str(m, "role");
    const json_t *content = json_object_get(m, "content");
    if (r && !strcmp(r, "tool")) {
        *role = "user";
        json_array_append_new(blocks, tool_result(m));
        return 0;
    }
    if (r && !strcmp(r, "user")) {
        *role = "user";
        return add_content(blocks, content, err, errlen);
    }
    if (r && !strcmp(r, "assistant")) {
        *role = "assistant";
        if (json_is_string(json_object_get(m, "reasoning_content")))
            note(o, "assistant reasoning_content dropped (Claude needs signed thinking blocks)");
        if (add_content(blocks, content, err, errlen)) return -1;
        return add_tool_uses(blocks, json_object_get(m, "tool_calls"), mi, err, errlen);
    }
    tg_json_seterr(err, errlen, "messages[%zu]: role '%s' cannot be sent to an Anthropic model", mi,
                   r ? r : "?");
    return -1;
}

/* system anywhere is hoisted; consecutive same-role messages are merged. */
static int convert_messages(const json_t *msgs, json_t *out, json_t **sys, tg_tr_req_opts_t *o, char *err,
                            size_t errlen) {
    json_t *list = json_array(), *last = NULL;
    const char *last_role = NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *r = tg_json_str(m, "role");
        if (r && (!strcmp(r, "system") || !strcmp(r, "developer"))) {
            add_system(sys, json_object_get(m, "content"));
            continue;
        }
        const char *role = NULL;
        json_t *blocks = json_array();
        if (message_blocks(m, i, &role, blocks, o, err, errlen)) {
            json_decref(blocks);
            json_decref(list);
            return -1;
        }
        if (last && !strcmp(last_role, role)) {
            json_array_extend(json_object_get(last, "content"), blocks);
            json_decref(blocks);
            continue;
        }
        last = json_pack("{s:s,s:o}", "role", role, "content", blocks);
        last_role = role;
        json_array_append_new(list, last);
    }
    json_object_set_new(out, "messages", list);
    return 0;
}

static int convert_tools(const json_t *req, json_t *out, char *err, size_t errlen) {
    const json_t *tools = json_object_get(req, "tools");
    if (json_is_array(tools) && json_array_size(tools)) {
        json_t *list = json_array();
        size_t i;
        const json_t *t;
        json_array_foreach(tools, i, t) {
            const json_t *fn = json_object_get(t, "function");
            const char *name = tg_json_str(fn, "name");
            if (name == NULL) {
                json_decref(list);
                tg_json_seterr(err, errlen,
                               "tools[%zu]: only function tools can be sent to an Anthropic model", i);
                return -1;
            }
            json_t *params = json_object_get(fn, "parameters");
            json_t *tool = json_pack("{s:s}", "name", name);
            if (tg_json_str(fn, "description"))
                json_object_set(tool, "description", json_object_get(fn, "description"));
            json_object_set_new(tool, "input_schema",
                                params ? json_incref(params)
                                       : json_pack("{s:s,s:{}}", "type", "object", "properties"));
            json_array_append_new(list, tool);
        }
        json_object_set_new(out, "tools", list);
    }
    const json_t *tc = json_object_get(req, "tool_choice");
    json_t *choice = NULL;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        choice = json_pack("{s:s}", "type",
                           !strcmp(s, "required") ? "any"
                           : !strcmp(s, "none")   ? "none"
                                                  : "auto");
    } else if (tg_json_str(json_object_get(tc, "function"), "name")) {
        choice = json_pack("{s:s,s:s}", "type", "tool", "name",
                           tg_json_str(json_object_get(tc, "function"), "name"));
    }
    if (json_is_false(json_object_get(req, "parallel_tool_calls")) && json_object_get(out, "tools")) {
        if (choice == NULL) choice = json_pack("{s:s}", "type", "auto");
        json_object_set_new(choice, "disable_parallel_tool_use", json_true());
    }
    if (choice) json_object_set_new(out, "tool_choice", choice);
    return 0;
}

/* No response_format in the Messages API: the instruction goes into system. */
static void response_format(const json_t *req, json_t **sys, tg_tr_req_opts_t *o) {
    const json_t *rf = json_object_get(req, "response_format");
    const char *t = tg_json_str(rf, "type");
    if (t == NULL || !strcmp(t, "text")) return;
    json_t *line;
    if (!strcmp(t, "json_schema")) {
        char *schema =
            json_dumps(json_object_get(json_object_get(rf, "json_schema"), "schema"), JSON_COMPACT);
        line = json_sprintf(
            "Respond only with a JSON object that follows this JSON schema, with no other text: %s",
            schema ? schema : "{}");
        free(schema);
    } else {
        line = json_string("Respond only with a valid JSON object, with no other text.");
    }
    add_system(sys, line);
    json_decref(line);
    note(o, "response_format %s given to Claude as a system instruction", t);
}

/* thinking: Anthropic's own object, or OpenAI's reasoning_effort, or Qwen's
 * enable_thinking / thinking_budget. Returns the budget, 0 when off. */
static int64_t thinking(const json_t *req, json_t *out) {
    const json_t *th = json_object_get(req, "thinking");
    int64_t budget = 0;
    if (json_is_object(th)) {
        json_object_set(out, "thinking", (json_t *)th);
        get_count(th, "budget_tokens", &budget);
        return !strcmp(tg_json_str(th, "type") ? tg_json_str(th, "type") : "", "enabled") ? budget : 0;
    }
    const char *eff = tg_json_str(req, "reasoning_effort");
    if (eff && !strcmp(eff, "low"))
        budget = EFFORT_LOW;
    else if (eff && !strcmp(eff, "medium"))
        budget = EFFORT_MEDIUM;
    else if (eff && !strcmp(eff, "high"))
        budget = EFFORT_HIGH;
    else if (jtrue(req, "enable_thinking") && !get_count(req, "thinking_budget", &budget))
        budget = EFFORT_MEDIUM;
    if (budget < EFFORT_LOW && budget > 0) budget = EFFORT_LOW; /* Claude's minimum */
    if (budget)
        json_object_set_new(out, "thinking",
                            json_pack("{s:s,s:I}", "type", "enabled", "budget_tokens", (json_int_t)budget));
    return budget;
}

static void sampling(const json_t *req, json_t *out, int thinking_on, tg_tr_req_opts_t *o) {
    const json_t *t = json_object_get(req, "temperature");
    if (json_is_number(t) && thinking_on) {
        note(o, "temperature dropped: Claude does not take it with thinking on");
    } else if (json_is_number(t)) {
        double v = json_number_value(t), c = v < 0 ? 0 : v > 1 ? 1 : v;
        if (c != v) note(o, "temperature %g clamped to %g (Claude's range is 0..1)", v, c);
        json_object_set_new(out, "temperature",
                            c == v ? json_incref((json_t *)t) : json_integer((json_int_t)c));
    }
    if (json_is_number(json_object_get(req, "top_p")))
        json_object_set(out, "top_p", json_object_get(req, "top_p"));
    const json_t *stop = json_object_get(req, "stop");
    if (json_is_string(stop))
        json_object_set_new(out, "stop_sequences", json_pack("[O]", stop));
    else if (json_is_array(stop) && json_array_size(stop))
        json_object_set(out, "stop_sequences", (json_t *)stop);
    static const char *const dropped[] = {"presence_penalty", "frequency_penalty", "logit_bias",
                                          "logprobs",         "top_logprobs",      "seed"};
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        if (json_object_get(req, dropped[i]) && !json_is_null(json_object_get(req, dropped[i])))
            note(o, "%s dropped (no Claude equivalent)", dropped[i]);
    if (tg_json_str(req, "user"))
        json_object_set_new(out, "metadata", json_pack("{s:s}", "user_id", tg_json_str(req, "user")));
}

static int64_t max_tokens_of(const json_t *req, int64_t dflt) {
    int64_t v;
    if (get_count(req, "max_completion_tokens", &v) || get_count(req, "max_tokens", &v)) return v;
    return dflt > 0 ? dflt : 4096;
}

json_t *tg_tr_req_openai_to_anthropic(const json_t *req, tg_tr_req_opts_t *o, char *err, size_t errlen) {
    const json_t *n = json_object_get(req, "n");
    if (json_is_integer(n) && json_integer_value(n) > 1) {
        tg_json_seterr(err, errlen, "'n' greater than 1 is not supported by Anthropic models");
        return NULL;
    }
    json_t *out = json_object(), *sys = NULL;
    const char *model = o->model ? o->model : tg_json_str(req, "model");
    json_object_set_new(out, "model", json_string(model ? model : ""));
    if (convert_messages(json_object_get(req, "messages"), out, &sys, o, err, errlen) ||
        convert_tools(req, out, err, errlen)) {
        json_decref(sys);
        json_decref(out);
        return NULL;
    }
    response_format(req, &sys, o);
    if (sys) json_object_set_new(out, "system", sys);
    int64_t max = max_tokens_of(req, o->default_max_tokens);
    int64_t budget = thinking(req, out);
    if (budget && max <= budget) {
        note(o, "max_tokens %lld raised above the thinking budget", (long long)max);
        max += budget;
    }
    json_object_set_new(out, "max_tokens", json_integer((json_int_t)max));
    sampling(req, out, budget > 0, o);
    if (jtrue(req, "stream")) json_object_set_new(out, "stream", json_true());
    return out;
}

/* --- Anthropic answer -> OpenAI chat.completion --------------------------- */

/* Appends s to a growing jansson string (NULL starts one). */

/* An Anthropic tool_use block as an OpenAI tool call (arguments as a JSON string). */
static json_t *tool_call_of(const json_t *b) {
    char *args = json_dumps(json_object_get(b, "input"), JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *call =
        json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", tg_json_str(b, "id") ? tg_json_str(b, "id") : "", "type",
                  "function", "function", "name", tg_json_str(b, "name") ? tg_json_str(b, "name") : "",
                  "arguments", args ? args : "{}");
    free(args);
    return call;
}

static json_t *cat_text(json_t *acc, const char *s) {
    if (acc == NULL) return json_string(s);
    const char *old = json_string_value(acc);
    size_t a = strlen(old), b = strlen(s);
    char *buf = malloc(a + b + 1);
    memcpy(buf, old, a);
    memcpy(buf + a, s, b + 1);
    json_string_set(acc, buf);
    free(buf);
    return acc;
}

json_t *tg_tr_resp_anthropic_to_openai(const json_t *msg, int64_t created, char *err, size_t errlen) {
    const json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || !json_is_array(content)) {
        tg_json_seterr(err, errlen, "the answer is not an Anthropic message");
        return NULL;
    }
    json_t *text = NULL, *reasoning = NULL, *calls = json_array();
    size_t i;
    const json_t *b;
    json_array_foreach(content, i, b) {
        const char *t = tg_json_str(b, "type");
        if (t && !strcmp(t, "text") && tg_json_str(b, "text"))
            text = cat_text(text, tg_json_str(b, "text"));
        else if (t && !strcmp(t, "thinking") && tg_json_str(b, "thinking"))
            reasoning = cat_text(reasoning, tg_json_str(b, "thinking"));
        else if (t && !strcmp(t, "tool_use")) {
            json_array_append_new(calls, tool_call_of(b));
        }
    }
    json_t *m = json_pack("{s:s}", "role", "assistant");
    json_object_set_new(m, "content", text ? text : json_array_size(calls) ? json_null() : json_string(""));
    if (reasoning) json_object_set_new(m, "reasoning_content", reasoning);
    if (json_array_size(calls))
        json_object_set_new(m, "tool_calls", calls);
    else
        json_decref(calls);
    tg_usage_t u = {0};
    tg_tr_usage_anthropic(json_object_get(msg, "usage"), &u);
    json_t *out = json_pack(
        "{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:s}]}", "id", tg_json_str(msg, "id") ? tg_json_str(msg, "id") : "",
        "object", "chat.completion", "created", (json_int_t)created, "model",
        tg_json_str(msg, "model") ? tg_json_str(msg, "model") : "", "choices", "index", 0, "message", m,
        "logprobs", "finish_reason", tg_tr_finish_reason(tg_json_str(msg, "stop_reason")));
    if (u.present) json_object_set_new(out, "usage", usage_openai_json(&u));
    return out;
}

/* --- Anthropic request -> OpenAI request --------------------------------- */

static json_t *image_part(const json_t *b, char *err, size_t errlen) {
    const json_t *src = json_object_get(b, "source");
    const char *t = tg_json_str(src, "type");
    if (t && !strcmp(t, "url") && tg_json_str(src, "url"))
        return json_pack("{s:s,s:{s:s}}", "type", "image_url", "image_url", "url", tg_json_str(src, "url"));
    if (t && !strcmp(t, "base64") && tg_json_str(src, "media_type") && tg_json_str(src, "data")) {
        json_t *url =
            json_sprintf("data:%s;base64,%s", tg_json_str(src, "media_type"), tg_json_str(src, "data"));
        return json_pack("{s:s,s:{s:o}}", "type", "image_url", "image_url", "url", url);
    }
    tg_json_seterr(err, errlen, "an image block needs a base64 or url source");
    return NULL;
}

/* A tool_result block as an OpenAI tool message (text only). */
static json_t *tool_message(const json_t *b, tg_tr_req_opts_t *o) {
    const json_t *c = json_object_get(b, "content");
    json_t *text = jtrue(b, "is_error") ? json_string("Error: ") : NULL;
    if (json_is_string(c)) text = cat_text(text, json_string_value(c));
    size_t i;
    const json_t *p;
    json_array_foreach(c, i, p) {
        if (tg_json_str(p, "text"))
            text = cat_text(text, tg_json_str(p, "text"));
        else
            note(o, "a non-text tool_result part was dropped");
    }
    return json_pack("{s:s,s:s,s:o}", "role", "tool", "tool_call_id",
                     tg_json_str(b, "tool_use_id") ? tg_json_str(b, "tool_use_id") : "", "content",
                     text ? text : json_string(""));
}

/* A user message: tool results become tool messages (first, so they follow
 * the assistant's calls); the rest one user message. */
static int user_message(const json_t *m, json_t *list, tg_tr_req_opts_t *o, char *err, size_t errlen) {
    const json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) {
        json_array_append_new(list, json_pack("{s:s,s:O}", "role", "user", "content", c));
        return 0;
    }
    json_t *parts = json_array();
    size_t i;
    const json_t *b;
    json_array_foreach(c, i, b) {
        const char *t = tg_json_str(b, "type");
        json_t *p = NULL;
        if (t && !strcmp(t, "tool_result"))
            json_array_append_new(list, tool_message(b, o));
        else if (t && !strcmp(t, "text"))
            p = json_pack("{s:s,s:s}", "type", "text", "text",
                          tg_json_str(b, "text") ? tg_json_str(b, "text") : "");
        else if (t && !strcmp(t, "image")) {
            if ((p = image_part(b, err, errlen)) == NULL) goto fail;
        } else {
            tg_json_seterr(err, errlen,
                           "content block type '%s' cannot be sent to an OpenAI-compatible model",
                           t ? t : "?");
            goto fail;
        }
        if (p) json_array_append_new(parts, p);
    }
    if (json_array_size(parts) == 1 && tg_json_str(json_array_get(parts, 0), "text"))
        json_array_append_new(list, json_pack("{s:s,s:O}", "role", "user", "content",
                                              json_object_get(json_array_get(parts, 0), "text")));
    else if (json_array_size(parts))
        json_array_append_new(list, json_pack("{s:s,s:O}", "role", "user", "content", parts));
    json_decref(parts);
    return 0;
fail:
    json_decref(parts);
    return -1;
}

static int assistant_message(const json_t *m, json_t *list, tg_tr_req_opts_t *o, char *err, size_t errlen) {
    const json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) {
        json_array_append_new(list, json_pack("{s:s,s:O}", "role", "assistant", "content", c));
        return 0;
    }
    json_t *text = NULL, *calls = json_array();
    size_t i;
    const json_t *b;
    json_array_foreach(c, i, b) {
        const char *t = tg_json_str(b, "type");
        if (t && !strcmp(t, "text") && tg_json_str(b, "text"))
            text = cat_text(text, tg_json_str(b, "text"));
        else if (t && !strcmp(t, "tool_use")) {
            json_array_append_new(calls, tool_call_of(b));
        } else if (t && (!strcmp(t, "thinking") || !strcmp(t, "redacted_thinking"))) {
            note(o, "assistant thinking blocks dropped");
        } else if (t && strcmp(t, "text")) {
            json_decref(text);
            json_decref(calls);
            tg_json_seterr(err, errlen,
                           "content block type '%s' cannot be sent to an OpenAI-compatible model", t);
            return -1;
        }
    }
    json_t *out = json_pack("{s:s}", "role", "assistant");
    json_object_set_new(out, "content", text ? text : json_array_size(calls) ? json_null() : json_string(""));
    if (json_array_size(calls))
        json_object_set_new(out, "tool_calls", calls);
    else
        json_decref(calls);
    json_array_append_new(list, out);
    return 0;
}

static json_t *system_text(const json_t *sys) {
    if (json_is_string(sys)) return json_incref((json_t *)sys);
    json_t *text = NULL;
    size_t i;
    const json_t *b;
    json_array_foreach(sys, i, b) {
        if (!tg_json_str(b, "text")) continue;
        if (text) text = cat_text(text, "\n\n");
        text = cat_text(text, tg_json_str(b, "text"));
    }
    return text;
}

static void openai_tools(const json_t *req, json_t *out) {
    const json_t *tools = json_object_get(req, "tools");
    if (json_is_array(tools) && json_array_size(tools)) {
        json_t *list = json_array();
        size_t i;
        const json_t *t;
        json_array_foreach(tools, i, t) {
            json_t *fn = json_pack("{s:s}", "name", tg_json_str(t, "name") ? tg_json_str(t, "name") : "");
            if (tg_json_str(t, "description"))
                json_object_set(fn, "description", json_object_get(t, "description"));
            const json_t *schema = json_object_get(t, "input_schema");
            json_object_set_new(fn, "parameters",
                                schema ? json_incref((json_t *)schema)
                                       : json_pack("{s:s,s:{}}", "type", "object", "properties"));
            json_array_append_new(list, json_pack("{s:s,s:o}", "type", "function", "function", fn));
        }
        json_object_set_new(out, "tools", list);
    }
    const json_t *tc = json_object_get(req, "tool_choice");
    const char *t = tg_json_str(tc, "type");
    if (t == NULL) return;
    if (!strcmp(t, "tool"))
        json_object_set_new(out, "tool_choice",
                            json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name",
                                      tg_json_str(tc, "name") ? tg_json_str(tc, "name") : ""));
    else
        json_object_set_new(out, "tool_choice",
                            json_string(!strcmp(t, "any")    ? "required"
                                        : !strcmp(t, "none") ? "none"
                                                             : "auto"));
    if (jtrue(tc, "disable_parallel_tool_use")) json_object_set_new(out, "parallel_tool_calls", json_false());
}

/* Server tools (web search, code execution...) run at Anthropic only. */
static int server_tools(const json_t *req, char *err, size_t errlen) {
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(req, "tools"), i, t) {
        const char *type = tg_json_str(t, "type");
        if (type && strcmp(type, "custom") && !json_object_get(t, "input_schema")) {
            tg_json_seterr(err, errlen, "tools[%zu]: the '%s' tool runs at Anthropic only", i, type);
            return -1;
        }
    }
    return 0;
}

static void openai_params(const json_t *req, json_t *out, tg_tr_req_opts_t *o) {
    int64_t v;
    if (get_count(req, "max_tokens", &v)) json_object_set_new(out, "max_tokens", json_integer((json_int_t)v));
    if (json_is_array(json_object_get(req, "stop_sequences")) &&
        json_array_size(json_object_get(req, "stop_sequences")))
        json_object_set(out, "stop", json_object_get(req, "stop_sequences"));
    if (json_is_number(json_object_get(req, "temperature")))
        json_object_set(out, "temperature", json_object_get(req, "temperature"));
    if (json_is_number(json_object_get(req, "top_p")))
        json_object_set(out, "top_p", json_object_get(req, "top_p"));
    if (json_object_get(req, "top_k")) note(o, "top_k dropped");
    if (json_object_get(req, "thinking")) note(o, "thinking options dropped");
    if (tg_json_str(json_object_get(req, "metadata"), "user_id"))
        json_object_set(out, "user", json_object_get(json_object_get(req, "metadata"), "user_id"));
    if (jtrue(req, "stream")) {
        json_object_set_new(out, "stream", json_true());
        json_object_set_new(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
}

json_t *tg_tr_req_anthropic_to_openai(const json_t *req, tg_tr_req_opts_t *o, char *err, size_t errlen) {
    if (server_tools(req, err, errlen)) return NULL;
    json_t *out = json_object(), *list = json_array();
    const char *model = o->model ? o->model : tg_json_str(req, "model");
    json_object_set_new(out, "model", json_string(model ? model : ""));
    json_t *sys = system_text(json_object_get(req, "system"));
    if (sys) json_array_append_new(list, json_pack("{s:s,s:o}", "role", "system", "content", sys));
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(req, "messages"), i, m) {
        const char *r = tg_json_str(m, "role");
        int rc = r && !strcmp(r, "assistant") ? assistant_message(m, list, o, err, errlen)
                                              : user_message(m, list, o, err, errlen);
        if (rc) {
            json_decref(list);
            json_decref(out);
            return NULL;
        }
    }
    json_object_set_new(out, "messages", list);
    openai_tools(req, out);
    openai_params(req, out, o);
    return out;
}

/* --- OpenAI answer -> Anthropic message ---------------------------------- */

static json_t *tool_use_block(const json_t *tc) {
    const json_t *fn = json_object_get(tc, "function");
    const char *args = tg_json_str(fn, "arguments");
    json_t *input = args && *args ? json_loads(args, 0, NULL) : NULL;
    if (!json_is_object(input)) {
        json_decref(input);
        input = json_object();
    }
    return json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id",
                     tg_json_str(tc, "id") ? tg_json_str(tc, "id") : "", "name",
                     tg_json_str(fn, "name") ? tg_json_str(fn, "name") : "", "input", input);
}

json_t *tg_tr_resp_openai_to_anthropic(const json_t *resp, char *err, size_t errlen) {
    const json_t *ch = json_array_get(json_object_get(resp, "choices"), 0);
    const json_t *m = json_object_get(ch, "message");
    if (!json_is_object(m)) {
        tg_json_seterr(err, errlen, "the answer is not an OpenAI chat.completion");
        return NULL;
    }
    json_t *content = json_array();
    const char *r = tg_json_str(m, "reasoning_content"), *t = tg_json_str(m, "content");
    if (r && *r)
        json_array_append_new(content,
                              json_pack("{s:s,s:s,s:s}", "type", "thinking", "thinking", r, "signature", ""));
    if (t && *t) json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", t));
    size_t i;
    const json_t *tc;
    json_array_foreach(json_object_get(m, "tool_calls"), i, tc)
        json_array_append_new(content, tool_use_block(tc));
    tg_usage_t u = {0};
    tg_tr_usage_openai(json_object_get(resp, "usage"), &u);
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:n,s:o}", "id",
                     tg_json_str(resp, "id") ? tg_json_str(resp, "id") : "", "type", "message", "role",
                     "assistant", "model", tg_json_str(resp, "model") ? tg_json_str(resp, "model") : "",
                     "content", content, "stop_reason", tg_tr_stop_reason(tg_json_str(ch, "finish_reason")),
                     "stop_sequence", "usage", usage_anthropic_json(&u));
}
