/* count.c — the simulator's own reading of request bodies and its token
 * counting, written apart from the gateway's scanner (core/scan.c) so the
 * tests have an independent oracle: a body is parsed with jansson into a
 * DOM, its fields are checked, and the text that counts is measured.
 *
 * The rule: prompt tokens = ceil(text_bytes / 4) + 4 * items, where
 * text_bytes is the UTF-8 length of the decoded text and items the number
 * of messages (Responses: input items, plus one for instructions).
 * Chat Completions and Messages: the text is the top-level "system" (a
 * string, or the "text" of its blocks), each message's "content" string,
 * the "text" of its "text" parts, and the text of Anthropic "tool_result"
 * parts (a string, or the "text" of its blocks). Nothing else counts: not
 * tool definitions, tool-call arguments, images or thinking blocks.
 * Responses: "instructions", an "input" string, and in input items the
 * "content" string or the "text" of input_text / output_text / text parts,
 * and a function_call_output's "output". Embeddings: each input string is
 * ceil(bytes / 4) tokens, each token array its length. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sim/simulate_int.h"

int64_t sim_tokens(size_t text_bytes, size_t items) {
    return (int64_t)((text_bytes + 3) / 4 + 4 * items);
}

static int bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Counts a piece of text; the user's own text is also kept (its first
 * SIM_USER_MAX bytes, pieces joined by a newline) to find "call tool NAME". */
static void text(sim_input_t *in, const json_t *s, int is_user) {
    size_t n = json_string_length(s);
    in->text_bytes += n;
    if (!is_user) return;
    if (in->user_len > 0 && in->user_len < SIM_USER_MAX) in->user[in->user_len++] = '\n';
    size_t room = SIM_USER_MAX - in->user_len, take = n < room ? n : room;
    memcpy(in->user + in->user_len, json_string_value(s), take);
    in->user_len += take;
    in->user[in->user_len] = '\0';
}

/* The "text" strings of an array of blocks (system, tool_result content);
 * other elements are skipped. */
static void block_texts(sim_input_t *in, const json_t *arr) {
    size_t i;
    json_t *b;
    json_array_foreach(arr, i, b) {
        json_t *t = json_object_get(b, "text");
        if (json_is_string(t)) text(in, t, 0);
    }
}

static int parse(const char *body, size_t len, sim_input_t *in, char *err, size_t errlen) {
    json_error_t je;
    memset(in, 0, sizeof(*in));
    in->max_tokens = -1;
    in->doc = json_loadb(body, len, JSON_ALLOW_NUL, &je);
    if (in->doc == NULL) return bad(err, errlen, "%s at byte %d", je.text, je.position);
    if (!json_is_object(in->doc)) return bad(err, errlen, "request body must be a JSON object");
    json_t *m = json_object_get(in->doc, "model");
    if (m && !json_is_string(m)) return bad(err, errlen, "'model' must be a string");
    if (m && strlen(json_string_value(m)) != json_string_length(m))
        return bad(err, errlen, "'model' must not contain NUL characters");
    in->model = m ? json_string_value(m) : NULL;
    json_t *st = json_object_get(in->doc, "stream");
    if (st && !json_is_null(st) && !json_is_boolean(st))
        return bad(err, errlen, "'stream' must be a boolean");
    in->stream = json_is_true(st);
    return 0;
}

/* A non-negative integer field into *dst; null and absent leave it. */
static int count_field(const json_t *o, const char *name, int64_t *dst, char *err, size_t errlen) {
    json_t *v = json_object_get(o, name);
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(err, errlen, "'%s' must be a non-negative integer", name);
    *dst = json_integer_value(v);
    return 0;
}

static int tools_field(sim_input_t *in, char *err, size_t errlen) {
    json_t *t = json_object_get(in->doc, "tools");
    if (t == NULL || json_is_null(t)) return 0;
    if (!json_is_array(t)) return bad(err, errlen, "'tools' must be an array");
    in->has_tools = json_array_size(t) > 0;
    return 0;
}

static int chat_part(sim_input_t *in, const json_t *p, size_t mi, size_t pi, int is_user, char *err,
                     size_t errlen) {
    if (!json_is_object(p)) return bad(err, errlen, "'messages[%zu].content[%zu]' must be an object", mi, pi);
    const char *type = json_string_value(json_object_get(p, "type"));
    if (type == NULL) return bad(err, errlen, "'messages[%zu].content[%zu].type' must be a string", mi, pi);
    if (strcmp(type, "text") == 0) {
        json_t *t = json_object_get(p, "text");
        if (!json_is_string(t))
            return bad(err, errlen, "'messages[%zu].content[%zu].text' must be a string", mi, pi);
        text(in, t, is_user);
    } else if (strcmp(type, "tool_result") == 0) {
        json_t *c = json_object_get(p, "content");
        if (json_is_string(c)) text(in, c, 0);
        if (json_is_array(c)) block_texts(in, c);
    }
    if (json_object_get(p, "tool_use_id")) in->answered = 1;
    return 0;
}

static int chat_message(sim_input_t *in, const json_t *m, size_t mi, char *err, size_t errlen) {
    if (!json_is_object(m)) return bad(err, errlen, "'messages[%zu]' must be an object", mi);
    json_t *role = json_object_get(m, "role");
    if (!json_is_string(role)) return bad(err, errlen, "'messages[%zu].role' must be a string", mi);
    int is_user = strcmp(json_string_value(role), "user") == 0 && json_string_length(role) == 4;
    if (json_object_get(m, "tool_call_id")) in->answered = 1;
    json_t *c = json_object_get(m, "content");
    if (c == NULL || json_is_null(c)) return 0;
    if (json_is_string(c)) {
        text(in, c, is_user);
        return 0;
    }
    if (!json_is_array(c))
        return bad(err, errlen, "'messages[%zu].content' must be a string, an array or null", mi);
    size_t i;
    json_t *p;
    json_array_foreach(c, i, p) {
        if (chat_part(in, p, mi, i, is_user, err, errlen)) return -1;
    }
    return 0;
}

/* Chat Completions and Anthropic Messages bodies: both have model, stream,
 * max_tokens, system (Anthropic), messages and tools. */
int sim_read_chat(const char *body, size_t len, sim_input_t *in, char *err, size_t errlen) {
    if (parse(body, len, in, err, errlen)) return -1;
    json_t *so = json_object_get(in->doc, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad(err, errlen, "'stream_options' must be an object");
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_null(iu) && !json_is_boolean(iu))
            return bad(err, errlen, "'stream_options.include_usage' must be a boolean");
        in->include_usage = json_is_true(iu);
    }
    /* OpenAI's newer name wins when a body has both. */
    if (count_field(in->doc, "max_tokens", &in->max_tokens, err, errlen) ||
        count_field(in->doc, "max_completion_tokens", &in->max_tokens, err, errlen) ||
        tools_field(in, err, errlen))
        return -1;
    json_t *sys = json_object_get(in->doc, "system");
    if (json_is_string(sys))
        text(in, sys, 0);
    else if (json_is_array(sys))
        block_texts(in, sys);
    else if (sys && !json_is_null(sys))
        return bad(err, errlen, "'system' must be a string or an array");
    json_t *msgs = json_object_get(in->doc, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad(err, errlen, "'messages' must be a non-empty array");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (chat_message(in, m, i, err, errlen)) return -1;
    }
    in->items = json_array_size(msgs);
    in->prompt = sim_tokens(in->text_bytes, in->items);
    return 0;
}

/* One Responses input item: a message (with or without "type"), a
 * function_call_output, or anything else (counted as an item, no text). */
static int resp_item(sim_input_t *in, const json_t *it, size_t k, char *err, size_t errlen) {
    if (!json_is_object(it)) return bad(err, errlen, "'input[%zu]' must be an object", k);
    const char *type = json_string_value(json_object_get(it, "type"));
    if (type && strcmp(type, "function_call_output") == 0) {
        json_t *o = json_object_get(it, "output");
        if (json_is_string(o)) text(in, o, 0);
        if (json_is_array(o)) block_texts(in, o);
        in->answered = 1;
        return 0;
    }
    if (type && strcmp(type, "message") != 0) return 0;
    json_t *role = json_object_get(it, "role");
    if (!json_is_string(role)) return bad(err, errlen, "'input[%zu].role' must be a string", k);
    int is_user = strcmp(json_string_value(role), "user") == 0;
    json_t *c = json_object_get(it, "content");
    if (json_is_string(c)) {
        text(in, c, is_user);
        return 0;
    }
    if (!json_is_array(c)) return bad(err, errlen, "'input[%zu].content' must be a string or an array", k);
    size_t i;
    json_t *p;
    json_array_foreach(c, i, p) {
        const char *pt = json_string_value(json_object_get(p, "type"));
        json_t *t = json_object_get(p, "text");
        if (pt == NULL) return bad(err, errlen, "'input[%zu].content[%zu].type' must be a string", k, i);
        if ((strcmp(pt, "input_text") == 0 || strcmp(pt, "output_text") == 0 || strcmp(pt, "text") == 0) &&
            !json_is_string(t))
            return bad(err, errlen, "'input[%zu].content[%zu].text' must be a string", k, i);
        if (json_is_string(t)) text(in, t, is_user);
    }
    return 0;
}

int sim_read_responses(const char *body, size_t len, sim_input_t *in, char *err, size_t errlen) {
    if (parse(body, len, in, err, errlen)) return -1;
    if (count_field(in->doc, "max_output_tokens", &in->max_tokens, err, errlen) ||
        tools_field(in, err, errlen))
        return -1;
    json_t *ins = json_object_get(in->doc, "instructions");
    if (json_is_string(ins)) {
        text(in, ins, 0);
        in->items++;
    } else if (ins && !json_is_null(ins)) {
        return bad(err, errlen, "'instructions' must be a string");
    }
    json_t *input = json_object_get(in->doc, "input");
    if (json_is_string(input)) {
        text(in, input, 1);
        in->items++;
    } else if (json_is_array(input) && json_array_size(input) > 0) {
        size_t i;
        json_t *it;
        json_array_foreach(input, i, it) {
            if (resp_item(in, it, i, err, errlen)) return -1;
        }
        in->items += json_array_size(input);
    } else {
        return bad(err, errlen, "'input' must be a string or a non-empty array");
    }
    in->prompt = sim_tokens(in->text_bytes, in->items);
    return 0;
}

/* One embeddings input: a non-empty string, or an array of token ids. */
static int64_t embed_one(const json_t *v) {
    if (json_is_string(v)) return json_string_length(v) ? (int64_t)((json_string_length(v) + 3) / 4) : -1;
    if (!json_is_array(v) || json_array_size(v) == 0) return -1;
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0) return -1;
    }
    return (int64_t)json_array_size(v);
}

int sim_read_embeddings(const char *body, size_t len, sim_input_t *in, char *err, size_t errlen) {
    if (parse(body, len, in, err, errlen)) return -1;
    json_t *input = json_object_get(in->doc, "input");
    const char *shape = "'input' must be a non-empty string, an array of them, or token arrays";
    if (json_is_array(input) && json_array_size(input) > 0 && json_is_integer(json_array_get(input, 0))) {
        if ((in->prompt = embed_one(input)) < 0) return bad(err, errlen, "%s", shape);
        in->items = 1;
    } else if (json_is_array(input) && json_array_size(input) > 0) {
        size_t i;
        json_t *v;
        json_array_foreach(input, i, v) {
            int64_t n = embed_one(v);
            if (n < 0) return bad(err, errlen, "%s", shape);
            in->prompt += n;
        }
        in->items = json_array_size(input);
    } else if ((in->prompt = embed_one(input)) < 0 || !json_is_string(input)) {
        return bad(err, errlen, "%s", shape);
    } else {
        in->items = 1;
    }
    if (count_field(in->doc, "dimensions", &in->dims, err, errlen)) return -1;
    if (json_object_get(in->doc, "dimensions") && (in->dims < 1 || in->dims > 8192))
        return bad(err, errlen, "'dimensions' must be between 1 and 8192");
    json_t *ef = json_object_get(in->doc, "encoding_format");
    const char *f = json_string_value(ef);
    if (ef && !json_is_null(ef) && (f == NULL || (strcmp(f, "float") && strcmp(f, "base64"))))
        return bad(err, errlen, "'encoding_format' must be \"float\" or \"base64\"");
    in->b64 = f && strcmp(f, "base64") == 0;
    return 0;
}

/* Anthropic's count_tokens counts tool definitions too: each tool is worth
 * ceil(bytes / 4) of its compact JSON text. */
int64_t sim_tools_tokens(const json_t *tools) {
    int64_t n = 0;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        size_t bytes = json_dumpb(t, NULL, 0, JSON_COMPACT);
        n += (int64_t)((bytes + 3) / 4);
    }
    return n;
}
