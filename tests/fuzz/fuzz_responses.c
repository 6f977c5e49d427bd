/* fuzz_responses.c — libFuzzer target for the Responses API request and
 * whole-answer translations of providers/responses*.c. The first byte picks
 * the function (low two bits: request -> Chat, request -> Anthropic, Chat
 * answer -> Response, Anthropic answer -> Response) and options (bit 2: a
 * model override; bit 3: native tools for requests, the input as the echoed
 * request for answers; bit 4: max_completion_tokens; bit 5: the input's
 * "input" also given as the previous items); the rest is JSON.
 * Properties: (1) the input is not modified; (2) NULL comes with an error
 * text, anything else is an object whose dump parses back equal; (3) a
 * request comes out with a model and a non-empty list of messages each with
 * a role (Anthropic: an integer max_tokens, and the Chat form of the same
 * request also translated); (4) a Response has id "resp_<id>", status
 * completed or incomplete, at least one output item, each with a non-empty
 * id and a known type, function calls with non-empty arguments, output_text
 * equal to its messages' text, usage null or with total = input + output;
 * and its stored form is a JSON array. Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE tests/fuzz/fuzz_responses.c \
 *       providers/responses.c providers/responses_req.c providers/responses_stream.c providers/translate.c
 * providers/translate_stream.c \ core/pool.c -ljansson -o /tmp/fuzz_responses */
/* clang-format off */
/* deps: providers/responses.c providers/responses_req.c providers/responses_stream.c providers/translate.c providers/translate_stream.c core/pool.c */
/* clang-format on */
/* libs: -ljansson */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/responses.h"

enum { REQ_CHAT, REQ_AN, RESP_CHAT, RESP_AN };

static int is(const json_t *v, const char *s) {
    return json_is_string(v) && !strcmp(json_string_value(v), s);
}

static void check_dump(const json_t *out) {
    tg_pool_t *pool = tg_pool_create(1024);
    size_t len = 0;
    char *s = tg_tr_dump(pool, json_deep_copy(out), &len);
    if (s == NULL || strlen(s) != len) abort();
    json_t *back = json_loadb(s, len, 0, NULL);
    if (back == NULL || !json_equal(back, out)) abort();
    json_decref(back);
    tg_pool_destroy(pool);
}

static void check_request(int fn, const json_t *out) {
    const json_t *msgs = json_object_get(out, "messages");
    if (!json_is_string(json_object_get(out, "model")) || !json_is_array(msgs)) abort();
    if (fn == REQ_AN && !json_is_integer(json_object_get(out, "max_tokens"))) abort();
    if (fn == REQ_CHAT && json_array_size(msgs) == 0) abort();
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) if (!json_is_string(json_object_get(m, "role"))) abort();
}

static void check_response(const json_t *r, const json_t *req) {
    const char *id = json_string_value(json_object_get(r, "id"));
    if (id == NULL || strcmp(id, "resp_fz") != 0 || !is(json_object_get(r, "object"), "response")) abort();
    if (!is(json_object_get(r, "status"), "completed") && !is(json_object_get(r, "status"), "incomplete"))
        abort();
    const json_t *out = json_object_get(r, "output");
    if (json_array_size(out) == 0) abort();
    size_t i, tlen = 0;
    const json_t *it;
    char text[1 << 16];
    json_array_foreach(out, i, it) {
        const char *iid = json_string_value(json_object_get(it, "id"));
        const json_t *type = json_object_get(it, "type");
        if (iid == NULL || !*iid) abort();
        if (is(type, "function_call")) {
            const char *a = json_string_value(json_object_get(it, "arguments"));
            if (a == NULL || !*a || !json_is_string(json_object_get(it, "call_id"))) abort();
        } else if (is(type, "message")) {
            const json_t *t = json_object_get(json_array_get(json_object_get(it, "content"), 0), "text");
            if (json_is_string(t) && tlen + json_string_length(t) < sizeof(text)) {
                memcpy(text + tlen, json_string_value(t), json_string_length(t));
                tlen += json_string_length(t);
            } else if (json_is_string(t)) {
                return; /* too long to compare here */
            }
        } else if (!is(type, "reasoning")) {
            abort();
        }
    }
    const json_t *ot = json_object_get(r, "output_text");
    if (!json_is_string(ot) || json_string_length(ot) != tlen || memcmp(json_string_value(ot), text, tlen))
        abort();
    const json_t *u = json_object_get(r, "usage");
    if (!json_is_null(u)) {
        json_int_t in = json_integer_value(json_object_get(u, "input_tokens"));
        json_int_t o = json_integer_value(json_object_get(u, "output_tokens"));
        if (json_integer_value(json_object_get(u, "total_tokens")) != in + o || in < 0 || o < 0) abort();
    }
    tg_pool_t *pool = tg_pool_create(1024);
    size_t len = 0;
    json_t *sreq = json_pack("{s:s}", "input", "again");
    char *s = tg_rs_stored(pool, req ? req : sreq, NULL, r, &len);
    json_decref(sreq);
    if (req == NULL || json_is_string(json_object_get(req, "input")) ||
        json_is_array(json_object_get(req, "input")) || !json_object_get(req, "input")) {
        json_t *back = s ? json_loadb(s, len, 0, NULL) : NULL;
        if (!json_is_array(back) || json_array_size(back) < json_array_size(out)) abort();
        json_decref(back);
    }
    tg_pool_destroy(pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int fn = data[0] & 3;
    json_t *in = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (in == NULL) return 0;
    json_t *copy = json_deep_copy(in);
    char err[256] = "";
    json_t *out = NULL;
    if (fn == REQ_CHAT || fn == REQ_AN) {
        tg_rs_req_opts_t o = {.model = data[0] & 4 ? "fuzz-model" : NULL,
                              .default_max_tokens = 1000,
                              .native_tools = (data[0] >> 3) & 1,
                              .max_completion_tokens = (data[0] >> 4) & 1,
                              .previous = data[0] & 32 ? json_object_get(in, "input") : NULL};
        out = fn == REQ_CHAT ? tg_rs_req_to_chat(in, &o, err, sizeof(err))
                             : tg_rs_req_to_anthropic(in, &o, err, sizeof(err));
        if (memchr(o.note, '\0', sizeof(o.note)) == NULL) abort();
        if (out) {
            check_request(fn, out);
            if (fn == REQ_CHAT) { /* the Chat form goes on to Claude without crashing */
                tg_tr_req_opts_t to = {.default_max_tokens = 1000};
                char e2[256];
                json_decref(tg_tr_req_openai_to_anthropic(out, &to, e2, sizeof(e2)));
            }
        }
    } else {
        const json_t *req = data[0] & 8 ? in : NULL;
        tg_rs_resp_opts_t o = {
            .id = "fz", .created_at = 1700000000, .model = data[0] & 4 ? "fuzz-model" : NULL, .req = req};
        tg_usage_t u = {0};
        out = fn == RESP_CHAT ? tg_rs_resp_from_chat(in, &o, &u, err, sizeof(err))
                              : tg_rs_resp_from_anthropic(in, &o, &u, err, sizeof(err));
        if (out) check_response(out, req);
    }
    if (out == NULL && err[0] == '\0') abort();
    if (out != NULL && !json_is_object(out)) abort();
    if (out) check_dump(out);
    json_decref(out);
    /* Results may share parts of the input; dropping them must leave it intact. */
    if (!json_equal(in, copy)) abort();
    json_decref(copy);
    json_decref(in);
    return 0;
}
