/* test_responses_fast.c — the Responses fast path (providers/responses_fast.c)
 * against the jansson path, over a table of requests and answers: for each
 * request the table says whether the fast path must take it, and when it
 * does, the Chat body for routing, every attempt's spliced body and the
 * Response of each answer it takes must be the jansson path's text, byte
 * for byte (tests/unit/test_responses_fast.h holds the comparison). A few
 * fixed texts pin the layout itself, so that both paths cannot drift
 * together unseen. */
/* clang-format off */
/* deps: providers/responses_fast.c providers/responses.c providers/responses_req.c providers/responses_stream.c providers/translate.c providers/translate_stream.c core/scan.c core/pool.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/test_responses_fast.h"

#define BIG "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. "

typedef struct {
    int fast; /* the fast path must take it */
    const char *body;
} req_case_t;

static const req_case_t requests[] = {
    /* bench/responses.lua's shape */
    {1,
     "{\"model\":\"deepseek/deepseek-flash\",\"max_output_tokens\":16,\"store\":false,\"instructions\":\"You "
     "are terse.\",\"input\":\"" BIG "\"}"},
    {1, "{\"model\":\"gpt-4o\",\"input\":\"Hi\"}"},
    {1, " {\n \"input\" : \"Hi\" , \"model\" : \"m\" ,\"stream\":true, \"store\":null}\r\n\t"},
    {1, "{\"model\":\"m\",\"input\":\"Hi\",\"stream\":false,\"parallel_tool_calls\":false,\"user\":\"u1\"}"},
    {1, "{\"model\":\"m\",\"input\":\"Hi\",\"temperature\":0.7,\"top_p\":1,\"max_output_tokens\":0}"},
    {1,
     "{\"model\":\"m\",\"input\":\"Hi\",\"temperature\":1e-3,\"top_p\":-0.5E+2,\"metadata\":{\"a\":\"b\"}}"},
    {1, "{\"model\":\"m\",\"input\":\"Hi\",\"metadata\":{ },\"temperature\":null,\"user\":null}"},
    {1, "{\"model\":\"m\",\"input\":\"Hi\",\"metadata\":{\"a\":1,\"a\":[2, {\"\\u0062\":3}]}}"},
    {1, "{\"model\":\"m\",\"input\":\"Hi\",\"instructions\":\"\",\"previous_response_id\":null}"},
    {1, "{\"model\":\"m\",\"instructions\":\"Only this\"}"},
    {1, "{\"model\":\"m\",\"instructions\":\"Only this\",\"input\":null}"},
    /* escapes are written again the way jansson writes them */
    {1, "{\"model\":\"m\\u002Fx\",\"input\":\"tab\\tnl\\n slash\\/ q\\\" bs\\\\ ctl\\u0001\\u001f \\u00e9 "
        "\\uD83D\\uDE00 \\b\\f\\r \\u2028 \\u007f\",\"user\":\"\\u0041\"}"},
    {1, "{\"model\":\"m\",\"input\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}"},
    /* long runs are read 8 bytes at a time: a byte that ends one, at any place */
    {1, "{\"model\":\"m\",\"input\":\"" BIG "\xc3\xa9" BIG "a\\n" BIG "ab\\\"" BIG "abc\"}"},
    {0, "{\"model\":\"m\",\"input\":\"" BIG "abcd\x1f" BIG "\"}"},
    {0, "{\"model\":\"m\",\"input\":\"" BIG "abcde\x7f\xff" BIG "\"}"},
    /* items */
    {1, "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"Hi\"}]}"},
    {1, "{\"model\":\"m\",\"instructions\":\"sys\",\"input\":[{\"type\":\"message\",\"role\":\"developer\","
        "\"content\":\"dev\"},{\"role\":\"system\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"},"
        "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
        "\"text\":\"q1\"},{\"text\":\"q2\",\"type\":\"output_text\",\"extra\":[1,2]}]},{\"id\":\"msg_1\","
        "\"status\":\"completed\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":"
        "\"output_text\",\"text\":\"ans\",\"annotations\":[]}]},{\"role\":\"user\",\"content\":[]},"
        "{\"role\":\"assistant\",\"content\":[]},{\"role\":\"user\",\"content\":\"\"}]}"},
    /* declined: other shapes, and everything the jansson path must judge */
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"tools\":[]}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"reasoning\":{\"effort\":\"low\"}}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"previous_response_id\":\"resp_x\"}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"model\":\"n\"}"},
    {0, "{\"model\":\"\",\"input\":\"Hi\"}"},
    {0, "{\"input\":\"Hi\"}"},
    {0, "{\"model\":7,\"input\":\"Hi\"}"},
    {0, "{\"model\":\"m\",\"input\":[]}"},
    {0, "{\"model\":\"m\"}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"max_output_tokens\":-1}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"max_output_tokens\":16.0}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"max_output_tokens\":12345678901234567890}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"temperature\":1e999}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"temperature\":\"0.5\"}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"stream\":1}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"metadata\":[]}"},
    {0, "{\"model\":\"m\",\"input\":\"\\u0000\"}"},
    {0, "{\"model\":\"m\",\"input\":\"\\uD800\"}"},
    {0, "{\"model\":\"m\",\"input\":\"\\uDC00\\uD800\"}"},
    {0, "{\"model\":\"m\",\"input\":\"\xc0\xaf\"}"},
    {0, "{\"model\":\"m\",\"input\":\"\xed\xa0\x80\"}"},
    {0, "{\"model\":\"m\",\"input\":\"\xf4\x90\x80\x80\"}"},
    {0, "{\"model\":\"m\",\"input\":\"a\x01\"}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\"} x"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"metadata\":{\"a\":01}}"},
    {0, "{\"model\":\"m\",\"input\":\"Hi\",\"metadata\":{\"a\":tru}}"},
    {0, "{\"mod\\u0065l\":\"m\",\"input\":\"Hi\"}"},
    {0, "[{\"model\":\"m\",\"input\":\"Hi\"}]"},
    {0, ""},
    {0, "{\"model\":\"m\",\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}"},
    {0,
     "{\"model\":\"m\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":\"x\"}]}"},
    {0, "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":"
        "\"http://x\"}]}]}"},
    {0, "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\"}]}]}"},
    {0, "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":null}]}"},
    {0, "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"role\":\"user\",\"content\":\"x\"}]}"},
    {0, "{\"model\":\"m\",\"input\":[{\"type\":null,\"role\":\"user\",\"content\":\"x\"}]}"},
    {0, "{\"model\":\"m\",\"input\":[{\"content\":\"x\"}]}"},
    {0, "{\"model\":\"m\",\"input\":[\"x\"]}"},
};

/* Answers tried against every request the fast path takes: fast says
 * whether the fast answer path must take them. */
typedef struct {
    int fast;
    const char *body;
} answer_case_t;

static const answer_case_t answers[] = {
    {1, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"x\",\"choices\":[{"
        "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello there\"},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_"
        "tokens\":5}}"},
    {1, "{\"choices\":[{\"message\":{\"content\":\"Once upon\",\"refusal\":null,\"annotations\":[]},"
        "\"finish_reason\":\"length\"}]}"},
    {1,
     "{\"choices\":[{\"message\":{\"content\":\"x\",\"reasoning_content\":null,\"tool_calls\":[]},"
     "\"finish_reason\":\"content_filter\"},{\"message\":{\"content\":\"second\"}}],\"x\":[1,{\"y\":null}]}"},
    {1, "{\"choices\":[{\"message\":{\"content\":null},\"finish_reason\":null}]}"},
    {1, "{\"choices\":[{\"message\":{\"content\":\"\"},\"finish_reason\":7}]}"},
    {1, "{\"choices\":[{\"message\":{\"role\":\"assistant\"}}]}"},
    {1, "{\"choices\":[{\"message\":{\"content\":\"\\u00e9\\n\\\"q\\\" \\/ \\u001b \\uD83D\\uDE00 "
        "\xe2\x82\xac\","
        "\"reasoning\":\"\"}}]}"},
    {0, "{\"choices\":[{\"message\":{\"content\":\"x\",\"reasoning_content\":\"think\"}}]}"},
    {0, "{\"choices\":[{\"message\":{\"content\":\"x\",\"reasoning\":\"think\"}}]}"},
    {0, "{\"choices\":[{\"message\":{\"content\":\"x\",\"refusal\":\"no\"}}]}"},
    {0, "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}"},
    {0, "{\"choices\":[{\"message\":{\"content\":\"a\",\"content\":\"b\"}}]}"},
    {0, "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}}]}"},
    {0, "{\"choices\":[]}"},
    {0, "{\"choices\":[{\"finish_reason\":\"stop\"}]}"},
    {0, "{\"object\":\"list\",\"data\":[]}"},
    {0, "{\"choices\":[{\"message\":{\"content\":\"\\u0000\"}}]}"},
    {0, "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1e999}}"},
    {0, "{\"choices\":[{\"message\":{\"content\":\"x\"}}]} trailing"},
    {0, "{\"choices\":[{\"message\":{\"content\":\"\xff\"}}]}"},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_requests(void **state) {
    (void)state;
    const char *ans[N(answers)];
    for (size_t i = 0; i < N(answers); i++)
        ans[i] = answers[i].body;
    size_t taken = 0;
    for (size_t i = 0; i < N(requests); i++) {
        char why[2048] = "";
        int got[N(answers)];
        memset(got, 0xff, sizeof(got));
        int rc = rsf_check_request(requests[i].body, strlen(requests[i].body), ans, N(answers), got, why,
                                   sizeof(why));
        if (rc < 0) fail_msg("request %zu: %s", i, why);
        if (rc != requests[i].fast)
            fail_msg("request %zu: the fast path %s it: %s", i, rc ? "took" : "declined", requests[i].body);
        if (rc == 0) continue;
        taken++;
        for (size_t a = 0; a < N(answers); a++)
            if (got[a] != answers[a].fast)
                fail_msg("request %zu, answer %zu: the fast answer path %s it", i, a,
                         got[a] ? "took" : "declined");
    }
    assert_true(taken > 10);
}

/* The texts themselves for the bench's request, so that a change to both
 * paths at once is seen. */
static void test_layout(void **state) {
    (void)state;
    tg_pool_t *pool = tg_pool_create(4096);
    const char *body =
        "{\"model\":\"ds/flash\",\"max_output_tokens\":16,\"store\":false,\"instructions\":\"Be "
        "terse.\",\"input\":\"Hi\",\"metadata\":{\"k\":\"v\"},\"temperature\":0.5}";
    tg_rs_prep_t p = {0};
    assert_int_equal(tg_rs_fast_req(pool, body, strlen(body), &p), 0);
    assert_string_equal(p.chat, "{\"model\":\"ds/flash\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
                                "terse.\"},{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":16,"
                                "\"temperature\":0.5}");
    assert_string_equal(p.note, "metadata dropped");
    assert_int_equal(p.store, 0);
    tg_scan_req_t s;
    char err[128];
    assert_int_equal(tg_scan_request(p.chat, p.chat_len, pool, &s, err, sizeof(err)), 0);
    size_t n;
    char *a = tg_rs_chat_splice(pool, p.chat, p.chat_len, &s, "gpt-5", 1, &n);
    assert_string_equal(a, "{\"model\":\"gpt-5\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
                           "terse.\"},{\"role\":\"user\",\"content\":\"Hi\"}],\"max_completion_tokens\":16,"
                           "\"temperature\":0.5}");
    const char *ans = "{\"choices\":[{\"message\":{\"content\":\"Yo\"},\"finish_reason\":\"length\"}]}";
    tg_usage_t u = {.present = 1, .input_tokens = 4, .cached_input_tokens = 1, .output_tokens = 2};
    const char *out;
    assert_int_equal(tg_rs_fast_answer(pool, &p, ans, strlen(ans), "id1", 1700000000, "flash", &u, &out, &n),
                     0);
    assert_string_equal(
        out,
        "{\"id\":\"resp_id1\",\"object\":\"response\",\"created_at\":1700000000,\"status\":\"incomplete\","
        "\"background\":false,\"error\":null,\"incomplete_details\":{\"reason\":\"max_output_tokens\"},"
        "\"instructions\":\"Be terse.\",\"max_output_tokens\":16,\"model\":\"flash\",\"output\":[{\"id\":"
        "\"msg_id1_0\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{"
        "\"type\":\"output_text\",\"annotations\":[],\"text\":\"Yo\"}]}],\"parallel_tool_calls\":true,"
        "\"previous_response_id\":null,\"reasoning\":{\"effort\":null,\"summary\":null},\"store\":false,"
        "\"temperature\":0.5,\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\",\"tools\":[],"
        "\"top_p\":null,\"truncation\":\"disabled\",\"usage\":{\"input_tokens\":4,\"input_tokens_details\":{"
        "\"cached_tokens\":1},\"output_tokens\":2,\"output_tokens_details\":{\"reasoning_tokens\":0},"
        "\"total_tokens\":6},\"user\":null,\"metadata\":{\"k\":\"v\"},\"output_text\":\"Yo\"}");
    /* No usage from the provider: the jansson path decides. */
    tg_usage_t none = {0};
    assert_int_equal(tg_rs_fast_answer(pool, &p, ans, strlen(ans), "id1", 1, "flash", &none, &out, &n), -1);
    json_decref(p.req);
    tg_pool_destroy(pool);
}

/* A request whose tools the jansson path translated: reused only when all
 * are function tools (a built-in one is refused or dropped per provider). */
static void test_reusable(void **state) {
    (void)state;
    json_t *f = json_loads("{\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}", 0, NULL);
    json_t *w =
        json_loads("{\"tools\":[{\"type\":\"function\",\"name\":\"f\"},{\"type\":\"web_search\"}]}", 0, NULL);
    json_t *none = json_loads("{\"input\":\"x\"}", 0, NULL);
    assert_true(tg_rs_chat_reusable(f));
    assert_false(tg_rs_chat_reusable(w));
    assert_true(tg_rs_chat_reusable(none));
    json_decref(f);
    json_decref(w);
    json_decref(none);
}

/* max_completion_tokens renames the top-level key only. */
static void test_splice_top_level(void **state) {
    (void)state;
    tg_pool_t *pool = tg_pool_create(1024);
    const char *chat =
        "{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{"
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"max_tokens\":1}}}],"
        "\"max_tokens\":9}";
    tg_scan_req_t s;
    char err[128];
    assert_int_equal(tg_scan_request(chat, strlen(chat), pool, &s, err, sizeof(err)), 0);
    size_t n;
    char *a = tg_rs_chat_splice(pool, chat, strlen(chat), &s, "b", 1, &n);
    assert_string_equal(
        a, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{"
           "\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"max_tokens\":1}}}],"
           "\"max_completion_tokens\":9}");
    tg_pool_destroy(pool);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_reusable),
        cmocka_unit_test(test_splice_top_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
