/* fuzz_translate.c — libFuzzer target for the request and whole-answer
 * translations of providers/translate.c. The first byte picks the function
 * (low two bits: OpenAI->Anthropic request, Anthropic->OpenAI request,
 * Anthropic->OpenAI answer, OpenAI->Anthropic answer; bit 2: a model
 * override; the next bits: default_max_tokens); the rest is JSON.
 * Properties: (1) the input is not modified; (2) NULL comes with an error
 * text, anything else is an object of the target dialect's shape whose dump
 * parses back equal; (3) an OpenAI request translated to Anthropic always
 * translates back, and an answer translated either way always translates
 * back; the other request direction may refuse but never crashes. Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE \
 *       tests/fuzz/fuzz_translate.c providers/translate.c providers/translate_stream.c core/pool.c -ljansson
 * -o /tmp/fuzz_translate */
/* deps: providers/translate.c providers/translate_stream.c core/pool.c */
/* libs: -ljansson */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/translate.h"

enum { OA2AN_REQ, AN2OA_REQ, AN2OA_RESP, OA2AN_RESP };

static json_t *translate(int fn, const json_t *in, const char *model, int64_t dflt, char *err,
                         size_t errlen) {
    tg_tr_req_opts_t o = {.model = model, .default_max_tokens = dflt};
    json_t *out = NULL;
    err[0] = '\0';
    switch (fn) {
    case OA2AN_REQ:
        out = tg_tr_req_openai_to_anthropic(in, &o, err, errlen);
        break;
    case AN2OA_REQ:
        out = tg_tr_req_anthropic_to_openai(in, &o, err, errlen);
        break;
    case AN2OA_RESP:
        out = tg_tr_resp_anthropic_to_openai(in, 1700000000, err, errlen);
        break;
    default:
        out = tg_tr_resp_openai_to_anthropic(in, err, errlen);
        break;
    }
    if (memchr(o.note, '\0', sizeof(o.note)) == NULL) abort();
    if (out == NULL && err[0] == '\0') abort();
    if (out != NULL && !json_is_object(out)) abort();
    return out;
}

static int is_one_of(const char *s, const char *const *set) {
    for (; s && *set; set++)
        if (!strcmp(s, *set)) return 1;
    return 0;
}

/* The fields every caller reads from a successful translation. */
static void check_shape(int fn, const json_t *out) {
    static const char *const finish[] = {"stop", "length", "tool_calls", "content_filter", NULL};
    static const char *const stop[] = {"end_turn", "max_tokens", "tool_use", "refusal", NULL};
    const json_t *ch;
    switch (fn) {
    case OA2AN_REQ:
        if (!json_is_integer(json_object_get(out, "max_tokens"))) abort();
        /* fall through */
    case AN2OA_REQ:
        if (!json_is_string(json_object_get(out, "model")) ||
            !json_is_array(json_object_get(out, "messages")))
            abort();
        break;
    case AN2OA_RESP:
        ch = json_object_get(out, "choices");
        if (json_array_size(ch) != 1 || !json_is_object(json_object_get(json_array_get(ch, 0), "message")))
            abort();
        if (!is_one_of(json_string_value(json_object_get(json_array_get(ch, 0), "finish_reason")), finish))
            abort();
        break;
    default:
        if (!json_is_array(json_object_get(out, "content"))) abort();
        if (!is_one_of(json_string_value(json_object_get(out, "stop_reason")), stop)) abort();
        break;
    }
}

/* Dumps a copy through the pool and parses it back. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int fn = data[0] & 3;
    const char *model = data[0] & 4 ? "fuzz-model" : NULL;
    int64_t dflt = (int64_t)(data[0] >> 3) * 1000 - 2000; /* negative, zero and positive defaults */
    json_t *in = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (in == NULL) return 0;
    json_t *copy = json_deep_copy(in);
    char err[256], err2[256];
    json_t *out = translate(fn, in, model, dflt, err, sizeof(err));
    if (!json_equal(in, copy)) abort();
    if (out) {
        check_shape(fn, out);
        check_dump(out);
        static const int back_of[] = {AN2OA_REQ, OA2AN_REQ, OA2AN_RESP, AN2OA_RESP};
        json_t *back = translate(back_of[fn], out, NULL, 0, err2, sizeof(err2));
        if (back == NULL && fn != AN2OA_REQ) abort();
        if (back) check_shape(back_of[fn], back);
        json_decref(back);
        json_decref(out);
    }
    /* Results may share parts of the input; dropping them must leave it intact. */
    if (!json_equal(in, copy)) abort();
    json_decref(copy);
    json_decref(in);
    return 0;
}
