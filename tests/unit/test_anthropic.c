/* test_anthropic.c — the Anthropic dialect as the request lifecycle drives
 * it: the upstream request it builds (URL, headers, body byte for byte or
 * translated, max_tokens defaults), answers and stream events relayed or
 * translated with usage normalised, and error mapping for failover; plus
 * the OpenAI dialect serving an Anthropic client. The client's request
 * headers come from a header source over one variable (no server needed). */
// clang-format off
/* deps: providers/anthropic.c providers/openai.c providers/translate.c providers/translate_stream.c providers/responses.c providers/responses_fast.c providers/responses_req.c providers/responses_stream.c core/scan.c core/pool.c core/log.c */
// clang-format on
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <jansson.h>

#include "providers/provider.h"

/* The client's anthropic-beta header, seen through client_header below. */
static const char *beta_header;

static const char *client_header(void *ud, const char *name, size_t *len) {
    if (strcasecmp(name, "anthropic-beta") != 0 || beta_header == NULL) return NULL;
    *len = strlen(beta_header);
    return beta_header;
}

typedef struct {
    tg_pool_t *pool;
    tg_scan_req_t scan;
    tg_provider_t prov;
    tg_price_t price;
    tg_call_t call;
    json_t *events; /* what the dialect emitted: [[event|null, data], ...] */
} fx_t;

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    f->pool = tg_pool_create(4096);
    f->prov = (tg_provider_t){.name = "anthropic", .url = "http://sim/anthropic", .api_key = "sk-ant-test"};
    f->events = json_array();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    json_decref(f->events);
    tg_pool_destroy(f->pool);
    free(f);
    beta_header = NULL;
    return 0;
}

static void call_init(fx_t *f, const char *body, tg_client_dialect_t client) {
    char err[256];
    assert_int_equal(tg_scan_request(body, strlen(body), f->pool, &f->scan, err, sizeof(err)), 0);
    f->call = (tg_call_t){.pool = f->pool,
                          .body = body,
                          .body_len = strlen(body),
                          .scan = &f->scan,
                          .client = client,
                          .provider = &f->prov,
                          .model = "claude-haiku-4-5"};
    f->call.client_wants_usage = f->scan.include_usage;
    f->call.headers = (tg_header_source_t){client_header, NULL};
}

static const char *header(const tg_upcall_req_t *r, const char *prefix) {
    for (size_t i = 0; i < r->nheaders; i++)
        if (strncasecmp(r->headers[i], prefix, strlen(prefix)) == 0) return r->headers[i];
    return NULL;
}

static int collect(void *ud, const char *event, const char *data, size_t len) {
    json_array_append_new(ud, json_pack("[s?s%]", event, data, len));
    return 0;
}

static json_t *body_json(const tg_upcall_req_t *r) {
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    assert_non_null(j);
    return j;
}

/* --- build ---------------------------------------------------------------- */

static void test_anthropic_client_body_passes_through(void **state) {
    fx_t *f = *state;
    const char *body =
        "{\"model\":\"claude\",  \"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
        "\"stream\":true, \"x_unknown\":[1,2]}";
    beta_header = "prompt-caching-2024-07-31";
    call_init(f, body, TG_CLIENT_ANTHROPIC);
    tg_upcall_req_t r = {0};
    char err[256];
    assert_int_equal(tg_dialect_anthropic.build(&f->call, &r, err, sizeof(err)), 0);
    assert_string_equal(r.url, "http://sim/anthropic/v1/messages");
    assert_string_equal(header(&r, "x-api-key:"), "x-api-key: sk-ant-test");
    assert_string_equal(header(&r, "anthropic-version:"), "anthropic-version: 2023-06-01");
    assert_string_equal(header(&r, "anthropic-beta:"), "anthropic-beta: prompt-caching-2024-07-31");
    assert_null(header(&r, "authorization:"));
    const char *want =
        "{\"model\":\"claude-haiku-4-5\",  \"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":"
        "\"hi\"}],\"stream\":true, \"x_unknown\":[1,2]}";
    assert_int_equal(r.body_len, strlen(want));
    assert_memory_equal(r.body, want, r.body_len);
    assert_non_null(f->call.state); /* the pass-through stream's small state */
}

static void test_openai_client_translated_max_tokens_defaults(void **state) {
    fx_t *f = *state;
    const char *body = "{\"model\":\"claude\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                       "{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":\"X\"}";
    beta_header = "should-not-be-forwarded";
    struct {
        int64_t provider_default, max_output, want;
    } cases[] = {{0, 0, 4096}, {0, 8192, 8192}, {1024, 8192, 1024}};
    for (size_t i = 0; i < 3; i++) {
        call_init(f, body, TG_CLIENT_OPENAI);
        f->prov.default_max_tokens = cases[i].provider_default;
        f->price.max_output = cases[i].max_output;
        f->call.price = &f->price;
        tg_upcall_req_t r = {0};
        char err[256];
        assert_int_equal(tg_dialect_anthropic.build(&f->call, &r, err, sizeof(err)), 0);
        assert_null(header(&r, "anthropic-beta:"));
        json_t *j = body_json(&r);
        assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), cases[i].want);
        assert_string_equal(json_string_value(json_object_get(j, "model")), "claude-haiku-4-5");
        assert_string_equal(json_string_value(json_object_get(j, "system")), "S");
        assert_string_equal(json_string_value(json_array_get(json_object_get(j, "stop_sequences"), 0)), "X");
        json_decref(j);
    }
}

static void test_openai_client_untranslatable_request_fails_build(void **state) {
    fx_t *f = *state;
    call_init(f, "{\"model\":\"c\",\"n\":3,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
              TG_CLIENT_OPENAI);
    tg_upcall_req_t r = {0};
    char err[256] = "";
    assert_int_equal(tg_dialect_anthropic.build(&f->call, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'n'"));
}

/* --- answers ------------------------------------------------------------------ */

static const char *MSG =
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\","
    "\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}],\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":3,"
    "\"cache_read_input_tokens\":20,\"output_tokens\":7}}";

static void test_answer_relayed_unchanged_with_usage(void **state) {
    fx_t *f = *state;
    call_init(f, "{\"model\":\"c\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
              TG_CLIENT_ANTHROPIC);
    tg_usage_t u = {0};
    const char *out;
    size_t n;
    assert_int_equal(tg_dialect_anthropic.parse_response(&f->call, MSG, strlen(MSG), &u, &out, &n), 0);
    assert_ptr_equal(out, MSG);
    assert_int_equal(n, strlen(MSG));
    assert_true(u.present);
    assert_int_equal(u.input_tokens, 33); /* input + cache reads + cache writes */
    assert_int_equal(u.cached_input_tokens, 20);
    assert_int_equal(u.cache_write_tokens, 3);
    assert_int_equal(u.output_tokens, 7);
}

static void test_answer_translated_for_openai_client(void **state) {
    fx_t *f = *state;
    call_init(f, "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", TG_CLIENT_OPENAI);
    tg_usage_t u = {0};
    const char *out;
    size_t n;
    assert_int_equal(tg_dialect_anthropic.parse_response(&f->call, MSG, strlen(MSG), &u, &out, &n), 0);
    json_t *j = json_loadb(out, n, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c0, "message"), "content")),
                        "Hello");
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "stop");
    json_t *usage = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 33);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(usage, "prompt_tokens_details"), "cached_tokens")),
        20);
    json_decref(j);
    assert_int_equal(u.input_tokens, 33);
}

static void test_unreadable_answer_is_refused(void **state) {
    fx_t *f = *state;
    call_init(f, "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", TG_CLIENT_OPENAI);
    tg_usage_t u = {0};
    const char *out;
    size_t n;
    assert_int_equal(tg_dialect_anthropic.parse_response(&f->call, "<html>", 6, &u, &out, &n), -1);
}

/* --- streams ------------------------------------------------------------------ */

static int feed(fx_t *f, const tg_dialect_t *d, const char *event, const char *data, tg_usage_t *u,
                char *err) {
    tg_emitter_t em = {collect, f->events};
    return d->stream_event(&f->call, event, data, strlen(data), u, &em, err, 256);
}

static void test_stream_passthrough_keeps_events_and_reads_usage(void **state) {
    fx_t *f = *state;
    call_init(f,
              "{\"model\":\"c\",\"max_tokens\":9,\"stream\":true,\"messages\":[{\"role\":\"user\","
              "\"content\":\"hi\"}]}",
              TG_CLIENT_ANTHROPIC);
    tg_upcall_req_t r = {0};
    char err[256] = "";
    assert_int_equal(tg_dialect_anthropic.build(&f->call, &r, err, sizeof(err)), 0);
    static const char *ev[][2] = {
        {"message_start",
         "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":"
         "5,\"cache_creation_input_tokens\":1,\"cache_read_input_tokens\":2,\"output_tokens\":1}}}"},
        {"ping", "{\"type\":\"ping\"}"},
        {"content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
                                "\"text\",\"text\":\"\"}}"},
        {"content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_"
                                "delta\",\"text\":\"Hi\"}}"},
        {"content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}"},
        {"message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{"
                          "\"output_tokens\":9}}"},
    };
    tg_usage_t u = {0};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(feed(f, &tg_dialect_anthropic, ev[i][0], ev[i][1], &u, err), TG_STREAM_MORE);
    assert_int_equal(feed(f, &tg_dialect_anthropic, "message_stop", "{\"type\":\"message_stop\"}", &u, err),
                     TG_STREAM_DONE);
    assert_int_equal(json_array_size(f->events), 7);
    for (size_t i = 0; i < 6; i++) {
        json_t *e = json_array_get(f->events, i);
        assert_string_equal(json_string_value(json_array_get(e, 0)), ev[i][0]);
        assert_string_equal(json_string_value(json_array_get(e, 1)), ev[i][1]);
    }
    assert_int_equal(u.input_tokens, 8);
    assert_int_equal(u.cached_input_tokens, 2);
    assert_int_equal(u.cache_write_tokens, 1);
    assert_int_equal(u.output_tokens, 9);
}

static void test_stream_error_event_is_an_error(void **state) {
    fx_t *f = *state;
    call_init(f,
              "{\"model\":\"c\",\"max_tokens\":9,\"stream\":true,\"messages\":[{\"role\":\"user\","
              "\"content\":\"hi\"}]}",
              TG_CLIENT_ANTHROPIC);
    tg_usage_t u = {0};
    char err[256] = "";
    tg_upcall_req_t r = {0};
    assert_int_equal(tg_dialect_anthropic.build(&f->call, &r, err, sizeof(err)), 0);
    /* message_start is held back: an error right behind it leaves the client
     * untouched, so the request can still fail over. */
    assert_int_equal(feed(f, &tg_dialect_anthropic, "message_start",
                          "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}}}", &u,
                          err),
                     TG_STREAM_MORE);
    int rc = feed(f, &tg_dialect_anthropic, "error",
                  "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
                  &u, err);
    assert_int_equal(rc, TG_STREAM_ERROR);
    assert_string_equal(err, "overloaded_error: Overloaded");
    assert_int_equal(json_array_size(f->events), 0); /* the request sends the error in the client's dialect */
}

static void test_stream_translated_for_openai_client_role_waits_ping_dropped(void **state) {
    fx_t *f = *state;
    call_init(f, "{\"model\":\"c\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
              TG_CLIENT_OPENAI);
    tg_upcall_req_t r = {0};
    char err[256] = "";
    assert_int_equal(tg_dialect_anthropic.build(&f->call, &r, err, sizeof(err)), 0);
    assert_non_null(f->call.state);
    tg_usage_t u = {0};
    feed(f, &tg_dialect_anthropic, "message_start",
         "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\",\"usage\":{\"input_tokens\":"
         "5,\"output_tokens\":1}}}",
         &u, err);
    feed(f, &tg_dialect_anthropic, "ping", "{\"type\":\"ping\"}", &u, err);
    /* Nothing yet: no ping, and the role chunk waits for content so that an
     * error event right after message_start can still fail over. */
    assert_int_equal(json_array_size(f->events), 0);
    feed(f, &tg_dialect_anthropic, "content_block_delta",
         "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}",
         &u, err);
    assert_int_equal(json_array_size(f->events), 2);
    for (size_t i = 0; i < 2; i++)
        assert_null(json_string_value(json_array_get(json_array_get(f->events, i), 0)));
    assert_non_null(
        strstr(json_string_value(json_array_get(json_array_get(f->events, 0), 1)), "\"role\":\"assistant\""));
    assert_int_equal(feed(f, &tg_dialect_anthropic, "message_stop", "{\"type\":\"message_stop\"}", &u, err),
                     TG_STREAM_DONE);
    assert_int_equal(u.input_tokens, 5);
}

/* --- errors ------------------------------------------------------------------- */

static void test_map_error(void **state) {
    fx_t *f = *state;
    struct {
        int status, retryable, client_status;
    } cases[] = {{429, 1, 429}, {529, 1, 502}, {500, 1, 502}, {503, 1, 502}, {400, 0, 400}, {413, 0, 413}};
    const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"max_"
                       "tokens: too \\\"big\\\"\"}}";
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tg_upstream_error_t e = {0};
        tg_dialect_anthropic.map_error(&f->call, cases[i].status, body, strlen(body), &e);
        assert_int_equal(e.retryable, cases[i].retryable);
        if (!e.retryable) assert_int_equal(e.status, cases[i].client_status);
        assert_string_equal(e.message, "max_tokens: too \"big\"");
    }
}

static void test_dialect_registry(void **state) {
    assert_ptr_equal(tg_dialect_find("anthropic"), &tg_dialect_anthropic);
    assert_ptr_equal(tg_dialect_find("openai"), &tg_dialect_openai);
    assert_null(tg_dialect_find("gemini"));
}

/* --- the OpenAI dialect serving an Anthropic client ----------------------------- */

static void test_openai_provider_for_anthropic_client(void **state) {
    fx_t *f = *state;
    f->prov = (tg_provider_t){.name = "deepseek", .url = "http://sim/deepseek/v1", .api_key = "sk-ds"};
    call_init(
        f,
        "{\"model\":\"c\",\"max_tokens\":9,\"system\":\"S\",\"stream\":true,\"messages\":[{\"role\":\"user\","
        "\"content\":\"hi\"}]}",
        TG_CLIENT_ANTHROPIC);
    f->call.model = "deepseek-flash";
    tg_upcall_req_t r = {0};
    char err[256] = "";
    assert_int_equal(tg_dialect_openai.build(&f->call, &r, err, sizeof(err)), 0);
    assert_string_equal(r.url, "http://sim/deepseek/v1/chat/completions");
    json_t *j = body_json(&r);
    assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "messages"), 0), "role")),
        "system");
    json_decref(j);
    assert_non_null(f->call.state);
    tg_usage_t u = {0};
    feed(f, &tg_dialect_openai, NULL,
         "{\"id\":\"c1\",\"model\":\"deepseek-flash\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
         "\"Hi\"},\"finish_reason\":null}]}",
         &u, err);
    feed(f, &tg_dialect_openai, NULL,
         "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"prompt_"
         "cache_hit_tokens\":4}}",
         &u, err);
    assert_int_equal(feed(f, &tg_dialect_openai, NULL, "[DONE]", &u, err), TG_STREAM_DONE);
    json_t *last = json_array_get(f->events, json_array_size(f->events) - 1);
    assert_string_equal(json_string_value(json_array_get(last, 0)), "message_stop");
    assert_int_equal(u.input_tokens, 9);
    assert_int_equal(u.cached_input_tokens, 4);
}

static void test_openai_answer_for_anthropic_client_keeps_deepseek_cache(void **state) {
    fx_t *f = *state;
    call_init(f, "{\"model\":\"c\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
              TG_CLIENT_ANTHROPIC);
    const char *ans =
        "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"deepseek-flash\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":\"stop\"}],\"usage\":{"
        "\"prompt_tokens\":50,\"completion_tokens\":2,\"prompt_cache_hit_tokens\":40,\"prompt_cache_miss_"
        "tokens\":10}}";
    tg_usage_t u = {0};
    const char *out;
    size_t n;
    assert_int_equal(tg_dialect_openai.parse_response(&f->call, ans, strlen(ans), &u, &out, &n), 0);
    json_t *j = json_loadb(out, n, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(j, "stop_reason")), "end_turn");
    json_t *usage = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "input_tokens")), 10);
    assert_int_equal(json_integer_value(json_object_get(usage, "cache_read_input_tokens")), 40);
    json_decref(j);
    assert_int_equal(u.cached_input_tokens, 40);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_anthropic_client_body_passes_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_client_translated_max_tokens_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_client_untranslatable_request_fails_build, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_answer_relayed_unchanged_with_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_translated_for_openai_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_answer_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_passthrough_keeps_events_and_reads_usage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stream_error_event_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_translated_for_openai_client_role_waits_ping_dropped,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_error, setup, teardown),
        cmocka_unit_test(test_dialect_registry),
        cmocka_unit_test_setup_teardown(test_openai_provider_for_anthropic_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_answer_for_anthropic_client_keeps_deepseek_cache, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
