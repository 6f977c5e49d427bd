/* test_scan.c — the request/answer scans and the splice helpers, checked
 * the way the gateway uses them: what a client sends, what it is told when
 * the body is wrong, and what the upstream receives after splicing (parsed
 * back with jansson, which only the tests use). */
/* deps: core/scan.c core/pool.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/scan.h"

static tg_pool_t *pool;

static int setup(void **state) {
    pool = tg_pool_create(4096);
    return 0;
}

static int teardown(void **state) {
    tg_pool_destroy(pool);
    return 0;
}

static tg_scan_req_t scan_ok(const char *body) {
    tg_scan_req_t r;
    char err[256] = "";
    int rc = tg_scan_request(body, strlen(body), pool, &r, err, sizeof(err));
    if (rc != 0) fail_msg("unexpected error '%s' for %s", err, body);
    return r;
}

static void scan_err(const char *body, size_t len, const char *want) {
    tg_scan_req_t r;
    char err[256] = "";
    int rc = tg_scan_request(body, len, pool, &r, err, sizeof(err));
    if (rc == 0) fail_msg("accepted %s", body);
    assert_string_equal(err, want);
}
#define SCAN_ERR(body, want) scan_err((body), strlen(body), (want))

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_basic_openai(void **state) {
    tg_scan_req_t r =
        scan_ok("{\"model\":\"gpt-4o-mini\",\"stream\":true,\"max_tokens\":100,\"temperature\":0.5,"
                "\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                "{\"role\":\"user\",\"content\":\"Hello there\"}],\"x_unknown\":{\"a\":[1,2]}}");
    assert_true(r.has_model);
    assert_string_equal(r.model_str, "gpt-4o-mini");
    assert_int_equal(r.stream, 1);
    assert_int_equal(r.max_tokens, 100);
    assert_int_equal(r.n_messages, 2);
    assert_int_equal(r.text_bytes, strlen("Be brief.") + strlen("Hello there"));
    assert_string_equal(r.user_text, "Hello there");
    assert_int_equal(r.user_text_len, 11);
    assert_false(r.has_stream_options);
    assert_false(r.has_tools);
    assert_false(r.has_images);
    assert_false(r.obj_empty);
}

static void test_defaults_and_nulls(void **state) {
    const char *b = "{\"model\":\"m\",\"stream\":null,\"max_tokens\":null,\"tools\":null," MSGS "}  \n";
    tg_scan_req_t r = scan_ok(b);
    assert_int_equal(r.stream, 0);
    assert_int_equal(r.max_tokens, -1);
    assert_false(r.has_tools);
    assert_int_equal(r.obj_end, strlen(b) - 4);
    r = scan_ok("{\"max_completion_tokens\":0," MSGS "}");
    assert_int_equal(r.max_tokens, 0);
    assert_false(r.has_model);
}

static void test_error_messages(void **state) {
    SCAN_ERR("{\"model\":5," MSGS "}", "'model' must be a string");
    SCAN_ERR("{\"model\":null," MSGS "}", "'model' must be a string");
    SCAN_ERR("{\"model\":\"m\"}", "'messages' must be a non-empty array");
    SCAN_ERR("{\"model\":\"m\",\"messages\":[]}", "'messages' must be a non-empty array");
    SCAN_ERR("{\"model\":\"m\",\"messages\":{\"role\":\"user\"}}", "'messages' must be a non-empty array");
    SCAN_ERR(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"},"
        "{\"role\":7,\"content\":\"c\"}]}",
        "'messages[2].role' must be a string");
    SCAN_ERR("{\"messages\":[{\"content\":\"c\"}]}", "'messages[0].role' must be a string");
    SCAN_ERR("{\"messages\":[{\"role\":\"user\"},\"x\"]}", "'messages[1]' must be an object");
    SCAN_ERR("{\"messages\":[{\"role\":\"user\",\"content\":5}]}",
             "'messages[0].content' must be a string, an array or null");
    SCAN_ERR("{\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}",
             "'messages[0].content[0]' must be an object");
    SCAN_ERR("{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
             "'messages[0].content[0].type' must be a string");
    SCAN_ERR("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":"
             "\"text\"}]}]}",
             "'messages[0].content[1].text' must be a string");
    SCAN_ERR("{\"stream\":\"yes\"," MSGS "}", "'stream' must be a boolean");
    SCAN_ERR("{\"stream\":1," MSGS "}", "'stream' must be a boolean");
    SCAN_ERR("{\"max_tokens\":-1," MSGS "}", "'max_tokens' must be a non-negative integer");
    SCAN_ERR("{\"max_tokens\":1.5," MSGS "}", "'max_tokens' must be a non-negative integer");
    SCAN_ERR("{\"max_tokens\":1e3," MSGS "}", "'max_tokens' must be a non-negative integer");
    SCAN_ERR("{\"max_tokens\":\"10\"," MSGS "}", "'max_tokens' must be a non-negative integer");
    SCAN_ERR("{\"max_tokens\":99999999999999999999," MSGS "}", "'max_tokens' must be a non-negative integer");
    SCAN_ERR("{\"max_completion_tokens\":true," MSGS "}",
             "'max_completion_tokens' must be a non-negative integer");
    SCAN_ERR("{\"stream_options\":true," MSGS "}", "'stream_options' must be an object");
    SCAN_ERR("{\"stream_options\":{\"include_usage\":1}," MSGS "}",
             "'stream_options.include_usage' must be a boolean");
    SCAN_ERR("{\"tools\":{}," MSGS "}", "'tools' must be an array");
    SCAN_ERR("{\"system\":5," MSGS "}", "'system' must be a string or an array");
    SCAN_ERR("[" MSGS "]", "request body must be a JSON object");
    SCAN_ERR("\"hello\"", "request body must be a JSON object");
    SCAN_ERR("null", "request body must be a JSON object");
    SCAN_ERR("", "request body must be a JSON object");
    SCAN_ERR("   \n", "request body must be a JSON object");
}

static void test_invalid_json_positions(void **state) {
    SCAN_ERR("{\"model\":\"m\",}", "invalid JSON at byte 12"); /* trailing comma */
    SCAN_ERR("{\"model\" \"m\"}", "invalid JSON at byte 9");   /* missing colon */
    SCAN_ERR("{\"a\":1 \"b\":2}", "invalid JSON at byte 7");   /* missing comma */
    SCAN_ERR("{\"a\":[1 2]}", "invalid JSON at byte 8");       /* missing comma in array */
    SCAN_ERR("{\"a\":[1,,2]}", "invalid JSON at byte 8");      /* empty element */
    SCAN_ERR("{\"a\":01}", "invalid JSON at byte 5");          /* number grammar */
    SCAN_ERR("{\"a\":1.}", "invalid JSON at byte 5");
    SCAN_ERR("{\"a\":-}", "invalid JSON at byte 5");
    SCAN_ERR("{\"a\":tru}", "invalid JSON at byte 5");
    SCAN_ERR("{\"a\":nulll}", "invalid JSON at byte 5");
    SCAN_ERR("{\"a\"}", "invalid JSON at byte 4");      /* key without value */
    SCAN_ERR("{\"a\":1} x", "invalid JSON at byte 8");  /* trailing garbage */
    SCAN_ERR("{\"a\":1} {}", "invalid JSON at byte 8"); /* two values */
    SCAN_ERR("{\"a\":1", "invalid JSON at byte 5 (unexpected end)");
    SCAN_ERR("{\"a\":\"abc", "invalid JSON at byte 5 (unexpected end)");
    SCAN_ERR("{\"a\":\"\\x\"}", "invalid JSON at byte 5"); /* bad escape */
    SCAN_ERR("{\"a\":\"\\u12G4\"}", "invalid JSON at byte 5");
    SCAN_ERR("{\"a\":[1}}", "invalid JSON at byte 7");
    scan_err("{\"a\":1}\0", 8, "invalid JSON at byte 7"); /* a NUL is not whitespace */
    scan_err("{\"a\":\"x\0y\"}", 11, "raw NUL byte at byte 7");
}

static void test_nesting(void **state) {
    /* 64 levels are allowed, 65 are not, and 10,000 are refused at once. */
    char *b = malloc(70000);
    size_t n = (size_t)sprintf(b, "{" MSGS ",\"x\":");
    for (int i = 0; i < 63; i++)
        b[n++] = '[';
    for (int i = 0; i < 63; i++)
        b[n++] = ']';
    b[n++] = '}';
    b[n] = '\0';
    scan_ok(b);
    n = (size_t)sprintf(b, "{\"x\":");
    for (int i = 0; i < 64; i++)
        b[n++] = '[';
    for (int i = 0; i < 64; i++)
        b[n++] = ']';
    b[n++] = '}';
    scan_err(b, n, "JSON nested too deeply");
    n = 0;
    for (int i = 0; i < 10000; i++)
        n += (size_t)sprintf(b + n, "{\"a\":");
    b[n++] = '1';
    for (int i = 0; i < 10000; i++)
        b[n++] = '}';
    scan_err(b, n, "JSON nested too deeply");
    n = (size_t)sprintf(b, "{\"x\":");
    for (int i = 0; i < 10000; i++)
        b[n++] = '[';
    scan_err(b, n, "JSON nested too deeply");
    free(b);
}

static void test_escapes(void **state) {
    tg_scan_req_t r = scan_ok("{\"model\":\"gpt\\u002d4o\\/x\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"a\\n\\t\\\"q\\\"\\\\ \\ud83d\\ude00\"}]}");
    assert_string_equal(r.model_str, "gpt-4o/x");
    assert_string_equal(r.user_text, "a\n\t\"q\"\\ \xF0\x9F\x98\x80");
    assert_int_equal(r.text_bytes, strlen("a\n\t\"q\"\\ \xF0\x9F\x98\x80"));
    SCAN_ERR("{\"model\":\"a\\u0000b\"," MSGS "}", "'model' must not contain NUL characters");
    SCAN_ERR("{\"model\":\"a\\qb\"," MSGS "}", "invalid JSON at byte 9");
}

static void test_chinese_through_escapes(void **state) {
    /* What Python's json.dumps sends for "中文，你好" (ensure_ascii). */
    tg_scan_req_t r = scan_ok("{\"model\":\"qwen-plus\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"\\u4e2d\\u6587\\uff0c\\u4f60\\u597d\"}]}");
    assert_string_equal(r.user_text, "中文，你好");
    assert_int_equal(r.text_bytes, 15);
    assert_int_equal(r.user_text_len, 15);
}

static void test_user_text_cap(void **state) {
    /* 2000 escaped CJK characters: 6000 decoded bytes, cut at 4095 (a whole
     * number of 3-byte characters), both for escapes and raw UTF-8. */
    for (int raw = 0; raw < 2; raw++) {
        char *b = malloc(20000);
        size_t n = (size_t)sprintf(b, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
        for (int i = 0; i < 2000; i++)
            n += (size_t)sprintf(b + n, "%s", raw ? "中" : "\\u4e2d");
        n += (size_t)sprintf(b + n, "\"},{\"role\":\"user\",\"content\":\"more\"}]}");
        tg_scan_req_t r = scan_ok(b);
        assert_int_equal(r.text_bytes, 6004);
        assert_int_equal(r.user_text_len, 4095);
        assert_int_equal(strlen(r.user_text), 4095);
        assert_memory_equal(r.user_text + 4092, "中", 3);
        free(b);
    }
}

static void test_roles_and_parts(void **state) {
    tg_scan_req_t r = scan_ok(
        "{\"model\":\"gpt-4o\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"sys\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"result\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"x\"}},"
        "{\"type\":\"text\",\"text\":\"again\"}]}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}");
    assert_int_equal(r.n_messages, 5);
    assert_true(r.has_images);
    assert_true(r.has_tools);
    assert_string_equal(r.user_text, "look\nagain");
    assert_int_equal(r.text_bytes, 3 + 4 + 6 + 5);
    r = scan_ok("{\"tools\":[]," MSGS "}");
    assert_false(r.has_tools);
    assert_false(r.has_images);
}

static void test_anthropic_shape(void **state) {
    tg_scan_req_t r = scan_ok(
        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"stream\":true,"
        "\"system\":[{\"type\":\"text\",\"text\":\"You are "
        "terse.\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\","
        "\"media_type\":\"image/png\",\"data\":\"AAAA\"}},{\"type\":\"text\",\"text\":\"What is this?\"}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{"
        "}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\","
        "\"content\":[{\"type\":\"text\",\"text\":\"42\"}]}]}],"
        "\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}]}");
    assert_string_equal(r.model_str, "claude-sonnet-4-5");
    assert_int_equal(r.max_tokens, 1024);
    assert_true(r.stream);
    assert_true(r.has_images);
    assert_true(r.has_tools);
    assert_int_equal(r.n_messages, 3);
    assert_string_equal(r.user_text, "What is this?");
    assert_int_equal(r.text_bytes, strlen("You are terse.") + strlen("What is this?") + 2);
    r = scan_ok(
        "{\"model\":\"c\",\"system\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(r.text_bytes, 7);
}

static void test_duplicate_and_escaped_keys(void **state) {
    /* The upstream's parser takes the last member and decodes key escapes:
     * so do we, and a second model cannot hide behind an escaped key. */
    tg_scan_req_t r = scan_ok("{\"stream\":false,\"str\\u0065am\":true," MSGS "}");
    assert_true(r.stream);
    SCAN_ERR("{\"model\":\"cheap\",\"mod\\u0065l\":\"expensive\"," MSGS "}", "'model' must appear only once");
}

static void test_many_tokens(void **state) {
    /* Enough tokens to outgrow the stack array several times. */
    size_t cap = 1000000, n = 0;
    char *b = malloc(cap);
    n += (size_t)sprintf(b + n, "{\"model\":\"m\",\"messages\":[");
    for (int i = 0; i < 20000; i++)
        n += (size_t)sprintf(b + n, "%s{\"role\":\"%s\",\"content\":\"m%d\"}", i ? "," : "",
                             i % 2 ? "assistant" : "user", i % 10);
    n += (size_t)sprintf(b + n, "],\"stream\":true}");
    tg_scan_req_t r = scan_ok(b);
    assert_int_equal(r.n_messages, 20000);
    assert_int_equal(r.text_bytes, 40000);
    assert_true(r.stream);
    free(b);
}

/* ---- splicing ------------------------------------------------------------ */

static json_t *splice_parse(const char *body, const tg_edit_t *e, size_t n) {
    size_t olen;
    char *out = tg_splice(pool, body, strlen(body), e, n, &olen);
    assert_non_null(out);
    assert_int_equal(strlen(out), olen);
    json_error_t jerr;
    json_t *j = json_loadb(out, olen, 0, &jerr);
    if (j == NULL) fail_msg("spliced body is not JSON: %s (%s)", out, jerr.text);
    return j;
}

static json_t *force_usage(const char *body, size_t want_edits) {
    tg_scan_req_t r = scan_ok(body);
    tg_edit_t e[4];
    size_t n = 0;
    assert_int_equal(tg_scan_set_model(&r, "gpt-4o \"x\"", pool, &e[n]), 0);
    n++;
    assert_int_equal(tg_scan_force_include_usage(body, &r, e, &n, 4), 0);
    assert_int_equal(n, want_edits);
    json_t *j = splice_parse(body, e, n);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "gpt-4o \"x\"");
    json_t *iu = json_object_get(json_object_get(j, "stream_options"), "include_usage");
    assert_true(json_is_true(iu));
    return j;
}

static void test_force_include_usage(void **state) {
    json_t *j = force_usage("{\"model\":\"a\",\"stream\":true," MSGS "}", 2);
    assert_int_equal(json_object_size(json_object_get(j, "stream_options")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "messages")), 1);
    json_decref(j);
    j = force_usage("{\"model\":\"a\",\"stream_options\":{ },\"stream\":true," MSGS "}", 2);
    json_decref(j);
    j = force_usage("{\"stream_options\":{\"include_usage\":false},\"model\":\"a\"," MSGS "}", 2);
    assert_int_equal(json_object_size(json_object_get(j, "stream_options")), 1);
    json_decref(j);
    j = force_usage("{\"model\":\"a\",\"stream_options\":{\"continuous_usage_stats\":true}," MSGS "}", 2);
    assert_true(
        json_is_true(json_object_get(json_object_get(j, "stream_options"), "continuous_usage_stats")));
    json_decref(j);
    j = force_usage(
        "{\"model\":\"a\",\"stream_options\":{\"x\":1,\"include_usage\":null,\"y\":[2]}," MSGS "}", 2);
    assert_int_equal(json_object_size(json_object_get(j, "stream_options")), 3);
    json_decref(j);
    j = force_usage("{\"model\":\"a\",\"stream_options\":null," MSGS "}", 2);
    json_decref(j);
    /* Already asked for: nothing to change. */
    j = force_usage("{\"model\":\"a\",\"stream_options\":{\"include_usage\":true}," MSGS ",\"n\":1}", 1);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 1);
    json_decref(j);
}

static void test_force_on_empty_object(void **state) {
    /* The scan refuses a body without messages, so build the scan by hand
     * as the gateway would for a bare object. */
    tg_scan_req_t r = {.obj_end = 1, .obj_empty = 1};
    tg_edit_t e[1];
    size_t n = 0;
    assert_int_equal(tg_scan_force_include_usage("{}", &r, e, &n, 1), 0);
    json_t *j = splice_parse("{}", e, n);
    assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    json_decref(j);
    n = 1;
    assert_int_equal(tg_scan_force_include_usage("{}", &r, e, &n, 1), -1); /* no room */
}

static void test_set_model_absent(void **state) {
    tg_scan_req_t r = scan_ok("{" MSGS "}");
    tg_edit_t e;
    assert_int_equal(tg_scan_set_model(&r, "x", pool, &e), -1);
}

static void test_splice_order_and_bounds(void **state) {
    const char *src = "0123456789";
    tg_edit_t e[3] = {{8, 2, "XY", 2}, {0, 0, "<", 1}, {3, 1, "", 0}};
    size_t n;
    char *out = tg_splice(pool, src, 10, e, 3, &n);
    assert_string_equal(out, "<0124567XY");
    assert_int_equal(n, 10);
    tg_edit_t overlap[2] = {{2, 3, "a", 1}, {4, 1, "b", 1}};
    assert_null(tg_splice(pool, src, 10, overlap, 2, &n));
    tg_edit_t past[1] = {{9, 2, "a", 1}};
    assert_null(tg_splice(pool, src, 10, past, 1, &n));
    out = tg_splice(pool, src, 10, NULL, 0, &n);
    assert_string_equal(out, src);
}

static void test_json_escape(void **state) {
    const char raw[] = "say \"hi\"\\\n\t\x01 中 /";
    size_t n;
    char *esc = tg_json_escape(pool, raw, sizeof(raw) - 1, &n);
    assert_int_equal(strlen(esc), n);
    char *doc = tg_pool_printf(pool, "\"%s\"", esc);
    json_t *j = json_loads(doc, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(j), raw);
    json_decref(j);
}

/* ---- answers ------------------------------------------------------------- */

static tg_scan_resp_t resp(const char *json) {
    tg_scan_resp_t s;
    if (tg_scan_response(json, strlen(json), pool, &s) != 0) fail_msg("refused %s", json);
    return s;
}

static void test_resp_openai(void **state) {
    tg_scan_resp_t s =
        resp("{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
             "\"message\":{\"role\":\"assistant\",\"content\":\"Hi \\u4e2d\"},\"finish_reason\":\"stop\"}],"
             "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17,"
             "\"prompt_tokens_details\":{\"cached_tokens\":8},"
             "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}");
    assert_true(s.has_usage);
    assert_int_equal(s.prompt_tokens, 12);
    assert_int_equal(s.completion_tokens, 5);
    assert_int_equal(s.cached_tokens, 8);
    assert_int_equal(s.reasoning_tokens, 2);
    assert_int_equal(s.cache_hit_tokens, -1);
    assert_int_equal(s.cache_miss_tokens, -1);
    assert_true(s.has_finish);
    assert_false(s.choices_empty);
    assert_false(s.has_error);
    assert_int_equal(s.content_bytes, 6);
}

static void test_resp_deepseek(void **state) {
    tg_scan_resp_t s =
        resp("{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"ok\","
             "\"reasoning_content\":\"think\"},\"finish_reason\":\"stop\"}],"
             "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":20,\"total_tokens\":120,"
             "\"prompt_cache_hit_tokens\":64,\"prompt_cache_miss_tokens\":36}}");
    assert_int_equal(s.prompt_tokens, 100);
    assert_int_equal(s.cache_hit_tokens, 64);
    assert_int_equal(s.cache_miss_tokens, 36);
    assert_int_equal(s.cached_tokens, -1);
    assert_int_equal(s.content_bytes, 7);
}

static void test_resp_stream_chunks(void **state) {
    /* Qwen-like usage-only chunk after include_usage. */
    tg_scan_resp_t s = resp("{\"id\":\"c\",\"choices\":[],\"object\":\"chat.completion.chunk\","
                            "\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":7,\"total_tokens\":37,"
                            "\"prompt_tokens_details\":{\"cached_tokens\":0}},\"model\":\"qwen-plus\"}");
    assert_true(s.choices_empty);
    assert_true(s.has_usage);
    assert_int_equal(s.prompt_tokens, 30);
    assert_int_equal(s.cached_tokens, 0);
    assert_false(s.has_finish);
    /* A content chunk with usage null. */
    s = resp("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}],\"usage\":"
             "null}");
    assert_false(s.has_usage);
    assert_int_equal(s.prompt_tokens, -1);
    assert_false(s.has_finish);
    assert_int_equal(s.content_bytes, 3);
    /* Usage on the finish chunk itself. */
    s = resp("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],"
             "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}");
    assert_true(s.has_finish);
    assert_true(s.has_usage);
    assert_int_equal(s.completion_tokens, 4);
    /* Usage inside the choice (Moonshot style). */
    s = resp("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\","
             "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}]}");
    assert_true(s.has_usage);
    assert_int_equal(s.prompt_tokens, 9);
    /* Tool-call argument fragments count as produced text. */
    s = resp("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
             "{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}");
    assert_int_equal(s.content_bytes, 7);
}

static void test_resp_errors(void **state) {
    tg_scan_resp_t s = resp("{\"error\":{\"message\":\"Rate limit\",\"type\":\"rate_limit\",\"code\":null}}");
    assert_true(s.has_error);
    s = resp("{\"error\":null,\"choices\":[]}");
    assert_false(s.has_error);
    const char *bad[] = {"", "[]", "{\"a\":1,}", "data: [DONE]", "{\"usage\":{\"prompt_tokens\":1}", NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(tg_scan_response(bad[i], strlen(bad[i]), pool, &s), -1);
    /* Numbers that are not counts are ignored, not trusted. */
    s = resp("{\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":2.5}}");
    assert_true(s.has_usage);
    assert_int_equal(s.prompt_tokens, -1);
    assert_int_equal(s.completion_tokens, -1);
}

/* ---- what the hardening refuses ----------------------------------------- */

static void test_string_refusals(void **state) {
    /* Raw control bytes must be escaped (RFC 8259), in values and keys. */
    SCAN_ERR("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\nb\"}]}",
             "raw control byte 0x0a in a string at byte 52 (JSON needs it escaped)");
    SCAN_ERR("{\"mo\tdel\":\"m\"," MSGS "}",
             "raw control byte 0x09 in a string at byte 4 (JSON needs it escaped)");
    SCAN_ERR("{\"model\":\"\x1f\"," MSGS "}",
             "raw control byte 0x1f in a string at byte 10 (JSON needs it escaped)");
    /* Bytes that are not UTF-8: a stray continuation, a truncated sequence,
     * an overlong '/', an encoded surrogate, a code point past U+10FFFF,
     * 0xFF. */
    SCAN_ERR("{\"model\":\"a\x80\"," MSGS "}", "invalid UTF-8 at byte 11");
    SCAN_ERR("{\"model\":\"\xe4\xb8\"," MSGS "}", "invalid UTF-8 at byte 10");
    SCAN_ERR("{\"model\":\"\xc0\xaf\"," MSGS "}", "invalid UTF-8 at byte 10");
    SCAN_ERR("{\"model\":\"\xed\xa0\x80\"," MSGS "}", "invalid UTF-8 at byte 10");
    SCAN_ERR("{\"model\":\"\xf4\x90\x80\x80\"," MSGS "}", "invalid UTF-8 at byte 10");
    SCAN_ERR("{\"x\":\"\xff\"," MSGS "}", "invalid UTF-8 at byte 6");
    /* Lone surrogate escapes: high without low, low alone, high then a
     * non-surrogate escape, high at the very end of the string. */
    SCAN_ERR("{\"model\":\"\\ud800x\"," MSGS "}",
             "lone surrogate escape '\\ud800' at byte 10 (a \\uD800-\\uDBFF escape must be followed by a "
             "\\uDC00-\\uDFFF one)");
    SCAN_ERR("{\"model\":\"a\\uDC00\"," MSGS "}",
             "lone surrogate escape '\\uDC00' at byte 11 (a \\uD800-\\uDBFF escape must be followed by a "
             "\\uDC00-\\uDFFF one)");
    SCAN_ERR("{\"model\":\"\\ud800\\u0041\"," MSGS "}",
             "lone surrogate escape '\\ud800' at byte 10 (a \\uD800-\\uDBFF escape must be followed by a "
             "\\uDC00-\\uDFFF one)");
    SCAN_ERR("{\"model\":\"\\udbff\"," MSGS "}",
             "lone surrogate escape '\\udbff' at byte 10 (a \\uD800-\\uDBFF escape must be followed by a "
             "\\uDC00-\\uDFFF one)");
    /* The same refusals in a body too big for the fast tokenizer (the jsmn
     * path words them). */
    size_t n = 0;
    char *b = malloc(100000);
    n += (size_t)sprintf(b, "{" MSGS ",\"pad\":[");
    for (int i = 0; i < 2000; i++)
        n += (size_t)sprintf(b + n, "%s1", i ? "," : "");
    size_t at = n + 7; /* the first byte of the string after ],"x":" */
    n += (size_t)sprintf(b + n, "],\"x\":\"\xed\xbf\xbf\"}");
    char want[128];
    snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", at);
    scan_err(b, n, want);
    b[at] = '\r';
    snprintf(want, sizeof want, "raw control byte 0x0d in a string at byte %zu (JSON needs it escaped)", at);
    scan_err(b, n, want);
    free(b);
    /* Answers are the provider's and relayed as sent: not refused, and a
     * lone surrogate counts as U+FFFD (3 bytes). */
    tg_scan_resp_t r;
    assert_int_equal(tg_scan_response("{\"a\":\"\xc3\x01\"}", 10, pool, &r), 0);
    r = resp("{\"choices\":[{\"delta\":{\"content\":\"\\ud83d\"}}]}");
    assert_int_equal(r.content_bytes, 3);
}

static void test_non_ascii_passes(void **state) {
    /* Raw UTF-8 of every length, pairs of surrogate escapes, and text long
     * enough to run through the 16-byte path. */
    tg_scan_req_t r = scan_ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"中文，你好 emoji 😀 é ß \\ud83d\\ude00 \\uDBFF\\uDFFF\"}]}");
    assert_string_equal(r.user_text, "中文，你好 emoji 😀 é ß 😀 \xF4\x8F\xBF\xBF");
    r = scan_ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                "\"敏捷的棕色狐狸跳过了懒狗。The quick brown fox jumps over the lazy dog 敏捷的棕色狐狸\"}],"
                "\"ſ\":1,\"Kelvin K\":2,\"ëmodel\":3}");
    assert_int_equal(r.text_bytes,
                     strlen("敏捷的棕色狐狸跳过了懒狗。The quick brown fox jumps over the lazy dog "
                            "敏捷的棕色狐狸"));
    tg_scan_resp_t a = resp("{\"choices\":[{\"delta\":{\"content\":\"你好👋\"}}]}");
    assert_int_equal(a.content_bytes, strlen("你好👋"));
}

static void test_ambiguous_keys(void **state) {
    /* A key the upstream might read as a routed or billed one is refused,
     * naming it: ASCII case, U+017F (long s), U+212A (Kelvin sign), and
     * spelt with escapes. */
    SCAN_ERR("{\"model\":\"m1\",\"Model\":\"gpt-4o\"," MSGS "}",
             "top-level key 'Model' differs from 'model' only in letter case: send 'model'");
    SCAN_ERR("{\"MODEL\":\"gpt-4o\"," MSGS "}",
             "top-level key 'MODEL' differs from 'model' only in letter case: send 'model'");
    SCAN_ERR("{\"model\":\"m\",\"ſtream\":true," MSGS "}",
             "top-level key 'ſtream' differs from 'stream' only in letter case: send 'stream'");
    SCAN_ERR("{\"model\":\"m\",\"max_to\\u212aens\":9," MSGS "}",
             "top-level key 'max_to\xe2\x84\xaa"
             "ens' differs from 'max_tokens' only in letter case: send 'max_tokens'");
    SCAN_ERR("{\"model\":\"m\",\"\\u004dodel\":\"x\"," MSGS "}",
             "top-level key 'Model' differs from 'model' only in letter case: send 'model'");
    SCAN_ERR("{\"model\":\"m\",\"N\":2," MSGS "}",
             "top-level key 'N' differs from 'n' only in letter case: send 'n'");
    SCAN_ERR("{\"model\":\"m\",\"Input\":\"x\"," MSGS "}",
             "top-level key 'Input' differs from 'input' only in letter case: send 'input'");
    SCAN_ERR("{\"model\":\"m\",\"Stream_Options\":{}," MSGS "}",
             "top-level key 'Stream_Options' differs from 'stream_options' only in letter case: send "
             "'stream_options'");
    SCAN_ERR("{\"model\":\"m\",\"MAX_OUTPUT_TOKENS\":1," MSGS "}",
             "top-level key 'MAX_OUTPUT_TOKENS' differs from 'max_output_tokens' only in letter case: send "
             "'max_output_tokens'");
    /* Exact names, unrelated keys, and nested keys pass. */
    scan_ok(
        "{\"model\":\"m\",\"n\":1,\"input\":\"x\",\"max_output_tokens\":5,\"Models\":1,\"user\":\"U\"," MSGS
        ",\"metadata\":{\"Model\":\"x\",\"STREAM\":true}}");
}

/* Heap bytes in use (small blocks and mmapped ones). */
static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void test_big_bodies_leave_no_memory(void **state) {
    /* A 4 MiB body holding a flat array of 2M small values: its tokens are
     * scratch, so after the scan the request's pool holds only what the
     * scan returns (a few KB), not ~40 MB of tokens. */
    size_t cap = 4u << 20, n = 0;
    char *b = malloc(cap + 64);
    n += (size_t)sprintf(b, "{" MSGS ",\"x\":[0");
    while (n < cap - 4) {
        b[n++] = ',';
        b[n++] = '0';
    }
    n += (size_t)sprintf(b + n, "]}");
    tg_pool_t *p = tg_pool_create(4096);
    size_t before = heap_in_use();
    tg_scan_req_t r;
    char err[256] = "";
    assert_int_equal(tg_scan_request(b, n, p, &r, err, sizeof err), 0);
    size_t grown = heap_in_use() - before;
    if (grown > 64 * 1024) fail_msg("a %zu-byte flat array left %zu bytes behind", n, grown);
    tg_pool_destroy(p);
    free(b);

    /* 20,000 stream chunks of 60 logprobs each (past the stack array) on one
     * pool: the heap stays flat. */
    char chunk[16384];
    n = (size_t)sprintf(chunk, "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"logprobs\":{\"content\":[");
    for (int i = 0; i < 60; i++)
        n += (size_t)sprintf(chunk + n, "%s{\"token\":\"x\",\"logprob\":-0.1,\"top_logprobs\":[]}",
                             i ? "," : "");
    n += (size_t)sprintf(chunk + n, "]},\"finish_reason\":null}]}");
    p = tg_pool_create(4096);
    tg_scan_resp_t s;
    assert_int_equal(tg_scan_response(chunk, n, p, &s), 0);
    before = heap_in_use();
    for (int i = 0; i < 20000; i++)
        assert_int_equal(tg_scan_response(chunk, n, p, &s), 0);
    grown = heap_in_use() - before;
    if (grown > 0) fail_msg("20,000 chunks grew the heap by %zu bytes", grown);
    assert_int_equal(s.content_bytes, 1);
    tg_pool_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults_and_nulls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_json_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chinese_through_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_text_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roles_and_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_escaped_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_ascii_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ambiguous_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_bodies_leave_no_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_force_include_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_force_on_empty_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_model_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_order_and_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_deepseek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_stream_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
