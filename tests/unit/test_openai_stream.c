/* test_openai_stream.c — the OpenAI-dialect stream relayed to an OpenAI
 * client, and the byte-level skim that lets most of its chunks through
 * without a tokenizer (tg_scan_chunk_plain in core/scan.c): the skim must
 * never let a chunk with usage or an error by, must count the same answer
 * text as the full scan, and a whole stream must bill exactly once whatever
 * the chunks look like. With TG_RELAY_EVENTS=N in the environment the binary
 * also relays N chunks of each kind and prints what it did, for
 * `valgrind --tool=callgrind` to count instructions per relayed event. */
// clang-format off
/* deps: providers/openai.c providers/anthropic.c providers/translate.c providers/translate_stream.c providers/responses.c providers/responses_fast.c providers/responses_req.c providers/responses_stream.c core/scan.c core/pool.c core/log.c */
// clang-format on
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "providers/provider.h"

#define HEAD                                                                                                 \
    "{\"id\":\"chatcmpl-X1\",\"object\":\"chat.completion.chunk\",\"created\":1782955817,\"model\":\"gpt-"   \
    "4o-"                                                                                                    \
    "mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_d0469e1700\","

/* Chunks as providers send them; plain = the skim lets it through, text =
 * the answer bytes in it (the full scan's content_bytes). */
static const struct {
    const char *json;
    int plain;
    size_t text;
} chunks[] = {
    /* OpenAI with include_usage: "usage":null on every chunk, obfuscation after it. */
    {HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
          "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"C63r\"}",
     1, 0},
    {HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":"
          "null}],\"usage\":null,\"obfuscation\":\"qfQVOwfh62oUst\"}",
     1, 5},
    /* The word usage, and quoted usage with an object after it, inside the answer text. */
    {HEAD
     "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"usage: \\\"usage\\\":{\\\"prompt_tokens\\\":1}\"},"
     "\"finish_reason\":null}],\"usage\":null}",
     1, 34},
    {HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"the \\\"error\\\": field\"},"
          "\"finish_reason\":null}]}",
     1, 18},
    /* Escapes in the text are decoded before counting; CJK as \u escapes. */
    {HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\nb\\u00e9\\u4f60\\ud83d\\ude00\"}}]}", 1,
     2 + 1 + 2 + 3 + 4},
    /* Tool-call arguments. */
    {HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
          "\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_capital\","
          "\"arguments\":\"\"}}],\"refusal\":null},\"finish_reason\":null}],\"usage\":null}",
     1, 0},
    {HEAD "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
          "\"{\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}",
     1, 2},
    /* DeepSeek reasoning, then text; the finish chunk. */
    {"{\"id\":\"d1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"deepseek-reasoner\","
     "\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"reasoning_content\":\"Let "
     "me\"},\"logprobs\":null,"
     "\"finish_reason\":null}]}",
     1, 6},
    {"{\"id\":\"g1\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"hmm\",\"content\":\"ok\"}}]}", 1,
     5},
    {HEAD "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":"
          "null}",
     1, 0},
    /* Whitespace the way some servers pretty-print. */
    {"{ \"choices\" : [ { \"delta\" : { \"content\" : \"abc\" } } ] , \"usage\" : null }", 1, 3},
    /* Usage: at the end, first, in the middle, in a choice, with a space, on the finish chunk. */
    {HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}", 0,
     0},
    {"{\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2},\"choices\":[]}", 0, 0},
    {"{\"id\":\"a\",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2},\"choices\":[{\"delta\":{"
     "\"content\":"
     "\"x\"}}]}",
     0, 1},
    {"{\"choices\":[{\"delta\":{\"content\":\"x\"},\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}]"
     "}",
     0, 1},
    {"{\"choices\":[],\"usage\": {\"prompt_tokens\":9,\"completion_tokens\":2}}", 0, 0},
    {"{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
     "\"completion_tokens\":4}}",
     0, 0},
    /* A key written with escapes is left to the full scan. */
    {"{\"choices\":[],\"\\u0075sage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}", 0, 0},
    {"{\"choices\":[],\"us\\u0061ge\":{\"prompt_tokens\":9,\"completion_tokens\":2}}", 0, 0},
    /* Errors. */
    {"{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}", 0, 0},
    {"{\"choices\":[],\"error\":\"boom\"}", 0, 0},
    /* Not JSON, or not what the skim reads: the full scan decides. */
    {"not json", 0, 0},
    {"{\"choices\":[{\"delta\":{\"content\":\"x\" \"y\"}}]}", 0, 0},
    {"{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"bb\"}}]}", 0, 2},
};

typedef struct {
    tg_pool_t *pool;
    tg_scan_req_t scan;
    tg_provider_t prov;
    tg_call_t call;
    tg_usage_t usage;
    size_t emitted, emitted_bytes;
} fx_t;

static int collect(void *ud, const char *event, const char *data, size_t len) {
    fx_t *f = ud;
    f->emitted++;
    f->emitted_bytes += len;
    return 0;
}

static void fx_init(fx_t *f, int client_wants_usage) {
    memset(f, 0, sizeof(*f));
    f->pool = tg_pool_create(4096);
    f->scan.stream = 1;
    f->prov = (tg_provider_t){.name = "openai", .url = "http://sim/openai/v1"};
    f->call = (tg_call_t){.pool = f->pool,
                          .scan = &f->scan,
                          .client = TG_CLIENT_OPENAI,
                          .client_wants_usage = client_wants_usage,
                          .provider = &f->prov,
                          .model = "gpt-4o-mini"};
}

static int relay(fx_t *f, const char *data) {
    tg_emitter_t em = {collect, f};
    char err[256];
    return tg_dialect_openai.stream_event(&f->call, NULL, data, strlen(data), &f->usage, &em, err,
                                          sizeof(err));
}

static void test_skim_agrees_with_the_full_scan(void **state) {
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        const char *j = chunks[i].json;
        size_t text = 12345;
        int plain = tg_scan_chunk_plain(j, strlen(j), &text);
        if (plain != chunks[i].plain)
            fail_msg("chunk %zu: plain %d, want %d: %s", i, plain, chunks[i].plain, j);
        tg_scan_resp_t s;
        int rc = tg_scan_response(j, strlen(j), NULL, &s);
        if (plain) {
            assert_int_equal(rc, 0);
            assert_false(s.has_usage);
            assert_false(s.has_error);
            if (text != s.content_bytes)
                fail_msg("chunk %zu: text %zu, full scan %zu", i, text, s.content_bytes);
        }
        if (rc == 0 && s.content_bytes != chunks[i].text)
            fail_msg("chunk %zu: full scan counts %zu, table says %zu", i, s.content_bytes, chunks[i].text);
    }
}

/* Cutting, overwriting or inserting bytes anywhere in a chunk must never
 * make the skim let a chunk with usage or an error through. */
static void test_skim_never_hides_usage_or_errors(void **state) {
    static const char *const bits[] = {"\"usage\":{\"prompt_tokens\":1}",
                                       "\"error\":{}",
                                       "\"usage\":7",
                                       "\\u0075",
                                       "\"",
                                       "{",
                                       "}",
                                       ",",
                                       ":",
                                       "\\",
                                       "null",
                                       "\"delta\":{",
                                       "\"choices\":[",
                                       "\"message\":{\"content\":\"q\"}"};
    unsigned seed = 12345;
    char buf[1024];
    size_t plain = 0, tried = 0;
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        const char *j = chunks[i].json;
        size_t n = strlen(j);
        for (int r = 0; r < 3000; r++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (n + 1);
            const char *b = bits[(seed >> 20) % (sizeof(bits) / sizeof(bits[0]))];
            size_t bl = strlen(b), len;
            if (r % 3 == 0) { /* insert */
                memcpy(buf, j, at);
                memcpy(buf + at, b, bl);
                memcpy(buf + at + bl, j + at, n - at);
                len = n + bl;
            } else if (r % 3 == 1) { /* overwrite */
                memcpy(buf, j, n);
                size_t w = at + bl <= n ? bl : n - at;
                memcpy(buf + at, b, w);
                len = n;
            } else { /* cut */
                len = at;
                memcpy(buf, j, len);
            }
            size_t text;
            tried++;
            if (!tg_scan_chunk_plain(buf, len, &text)) continue;
            plain++;
            tg_scan_resp_t s;
            if (tg_scan_response(buf, len, NULL, &s) != 0) continue; /* relayed as sent, as before a scan */
            if (s.has_usage || s.has_error) fail_msg("the skim let by: %.*s", (int)len, buf);
        }
    }
    assert_true(plain > tried / 10); /* the test reaches the skim's "plain" often */
}

/* A whole stream: every chunk relayed once, usage read once from the
 * usage-only chunk (dropped when the client did not ask), answer text
 * counted for the estimate. */
static void test_stream_bills_once(void **state) {
    static const char *const stream[] = {
        HEAD
        "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":"
        "null}],\"usage\":null}",
        HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"usage\"},\"finish_reason\":null}],\"usage\":"
             "null}",
        HEAD
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \\\"usage\\\":{}\"},\"finish_reason\":null}],"
        "\"usage\":null}",
        HEAD "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}",
        HEAD
        "\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14,"
        "\"prompt_tokens_details\":{\"cached_tokens\":4},\"completion_tokens_details\":{\"reasoning_tokens\":"
        "1}}}",
        "[DONE]"};
    for (int wants = 0; wants < 2; wants++) {
        fx_t f;
        fx_init(&f, wants);
        int rc = 0;
        for (size_t i = 0; i < sizeof(stream) / sizeof(stream[0]); i++)
            rc = relay(&f, stream[i]);
        assert_int_equal(rc, TG_STREAM_DONE);
        assert_int_equal(f.emitted, wants ? 5 : 4);
        assert_true(f.usage.present);
        assert_int_equal(f.usage.input_tokens, 11);
        assert_int_equal(f.usage.cached_input_tokens, 4);
        assert_int_equal(f.usage.output_tokens, 3);
        assert_int_equal(f.usage.reasoning_tokens, 1);
        assert_int_equal(f.call.content_bytes, 5 + 11);
        tg_pool_destroy(f.pool);
    }
}

/* Usage on the finish chunk (some vendors), and an error in the stream. */
static void test_stream_usage_on_finish_and_errors(void **state) {
    fx_t f;
    fx_init(&f, 0);
    assert_int_equal(relay(&f, "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}"), TG_STREAM_MORE);
    assert_false(f.usage.present);
    assert_int_equal(relay(&f, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{"
                               "\"prompt_tokens\":5,\"completion_tokens\":1}}"),
                     TG_STREAM_MORE);
    assert_true(f.usage.present);
    assert_int_equal(f.usage.output_tokens, 1);
    assert_int_equal(f.emitted, 2); /* choices were not empty: relayed */
    assert_int_equal(relay(&f, "{\"error\":{\"message\":\"overloaded\"}}"), TG_STREAM_ERROR);
    assert_int_equal(relay(&f, "{\"choices\":[{\"delta\":{\"content\":\"x\" 1}}]}"), TG_STREAM_ERROR);
    assert_int_equal(f.emitted, 2);
    assert_int_equal(f.call.content_bytes, 2);
    tg_pool_destroy(f.pool);
}

/* TG_RELAY_EVENTS=N: N chunks of each kind through stream_event. */
static void relay_bench(long n) {
    static const char *const kinds[] = {
        "{\"id\":\"chatcmpl-sim-12\",\"object\":\"chat.completion.chunk\",\"created\":1735689600,\"model\":"
        "\"deepseek-chat\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" hello\"},\"logprobs\":null,"
        "\"finish_reason\":null}],\"usage\":null}",
        HEAD
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":"
        "null}],\"usage\":null,\"obfuscation\":\"qfQVOwfh62oUst\"}",
        HEAD "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
             "\"country\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}"};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        fx_t f;
        fx_init(&f, 0);
        for (long i = 0; i < n; i++)
            relay(&f, kinds[k]);
        printf("relay: kind %zu, %ld events, %zu bytes relayed, %zu text bytes\n", k, n, f.emitted_bytes,
               f.call.content_bytes);
        tg_pool_destroy(f.pool);
    }
}

int main(void) {
    const char *n = getenv("TG_RELAY_EVENTS");
    if (n) {
        relay_bench(atol(n));
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skim_agrees_with_the_full_scan),
        cmocka_unit_test(test_skim_never_hides_usage_or_errors),
        cmocka_unit_test(test_stream_bills_once),
        cmocka_unit_test(test_stream_usage_on_finish_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
