/* test_client.c — the client dialect table (providers/client.c): which API
 * a path belongs to, and the exact bytes of Tollgate's own words to each
 * client: error bodies, the end of a whole stream with its cost comment,
 * and the end of a broken one; which API keeps conversations. */
/* deps: providers/client.c core/pool.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/client.h"

static tg_client_dialect_t for_path(const char *p) {
    return tg_client_for_path(p, strlen(p));
}

static void test_path(void **state) {
    assert_int_equal(for_path("/v1/messages"), TG_CLIENT_ANTHROPIC);
    assert_int_equal(for_path("/v1/messages/count_tokens"), TG_CLIENT_ANTHROPIC);
    assert_int_equal(for_path("/v1/messagesx"), TG_CLIENT_OPENAI);
    assert_int_equal(for_path("/v1/message"), TG_CLIENT_OPENAI);
    assert_int_equal(for_path("/v1/chat/completions"), TG_CLIENT_OPENAI);
    assert_int_equal(for_path("/v1/responses"), TG_CLIENT_RESPONSES);
    assert_int_equal(for_path("/v1/responses/resp_0123abcd"), TG_CLIENT_RESPONSES);
    assert_int_equal(for_path("/v1/responsesx"), TG_CLIENT_OPENAI);
    assert_int_equal(for_path(""), TG_CLIENT_OPENAI);
    /* The length rules, not the NUL: "/v1/messages" cut short is not it. */
    assert_int_equal(tg_client_for_path("/v1/messages", 8), TG_CLIENT_OPENAI);
}

static void test_error_bodies(void **state) {
    char *s = tg_client_error_body(TG_CLIENT_OPENAI, 413, "invalid_request_error", "request_too_large",
                                   "too \"big\"");
    assert_string_equal(s, "{\"error\":{\"message\":\"too \\\"big\\\"\",\"type\":\"invalid_request_error\","
                           "\"code\":\"request_too_large\"}}");
    free(s);
    s = tg_client_error_body(TG_CLIENT_OPENAI, 500, "upstream_error", NULL, "m");
    assert_string_equal(s, "{\"error\":{\"message\":\"m\",\"type\":\"upstream_error\",\"code\":null}}");
    free(s);
    static const struct {
        int status;
        const char *type;
    } anth[] = {{400, "invalid_request_error"}, {401, "authentication_error"},
                {402, "billing_error"},         {403, "permission_error"},
                {404, "not_found_error"},       {408, "invalid_request_error"},
                {413, "request_too_large"},     {429, "rate_limit_error"},
                {431, "invalid_request_error"}, {502, "api_error"},
                {529, "overloaded_error"}};
    for (size_t i = 0; i < sizeof(anth) / sizeof(anth[0]); i++) {
        s = tg_client_error_body(TG_CLIENT_ANTHROPIC, anth[i].status, "ignored", "ignored", "m");
        char want[160];
        snprintf(want, sizeof(want), "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"m\"}}",
                 anth[i].type);
        assert_string_equal(s, want);
        free(s);
    }
}

static void test_stream_ends(void **state) {
    tg_pool_t *pool = tg_pool_create(1024);
    const char *c = ": tollgate {\"cost_usd\":0.000001}\n\n";
    assert_string_equal(tg_client_stream_done(TG_CLIENT_OPENAI, pool, c),
                        ": tollgate {\"cost_usd\":0.000001}\n\ndata: [DONE]\n\n");
    assert_string_equal(tg_client_stream_done(TG_CLIENT_ANTHROPIC, pool, c), c);
    assert_string_equal(tg_client_stream_broken(TG_CLIENT_OPENAI, pool, "p/m: reset"),
                        "data: {\"error\":{\"message\":\"p/m: reset\",\"type\":\"upstream_error\","
                        "\"code\":\"upstream_stream_broken\"}}\n\n");
    assert_string_equal(tg_client_stream_broken(TG_CLIENT_ANTHROPIC, pool, "p/m: reset"),
                        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                        "\"message\":\"p/m: reset\"}}\n\n");
    /* Responses: the translator sent response.completed; only the comment follows. */
    assert_string_equal(tg_client_stream_done(TG_CLIENT_RESPONSES, pool, c), c);
    assert_null(strstr(tg_client_stream_done(TG_CLIENT_RESPONSES, pool, c), "[DONE]"));
    assert_string_equal(tg_client_stream_broken(TG_CLIENT_RESPONSES, pool, "p/m: reset"),
                        "event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_stream_broken\","
                        "\"message\":\"p/m: reset\",\"param\":null,\"sequence_number\":0}\n\n"
                        "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":"
                        "\"resp_failed\",\"object\":\"response\",\"status\":\"failed\",\"error\":{\"code\":"
                        "\"upstream_stream_broken\",\"message\":\"p/m: reset\"},\"output\":[]},"
                        "\"sequence_number\":0}\n\n");
    tg_pool_destroy(pool);
}

static void test_responses_errors_and_state(void **state) {
    /* OpenAI's error shape, whatever the status. */
    char *s = tg_client_error_body(TG_CLIENT_RESPONSES, 404, "invalid_request_error", "not_found", "gone");
    assert_string_equal(s, "{\"error\":{\"message\":\"gone\",\"type\":\"invalid_request_error\","
                           "\"code\":\"not_found\"}}");
    free(s);
    assert_int_equal(tg_client_keeps_state(TG_CLIENT_RESPONSES), 1);
    assert_int_equal(tg_client_keeps_state(TG_CLIENT_OPENAI), 0);
    assert_int_equal(tg_client_keeps_state(TG_CLIENT_ANTHROPIC), 0);
    assert_non_null(strstr(tg_client_auth_hint(TG_CLIENT_RESPONSES), "Authorization: Bearer"));
}

static void test_auth_hint(void **state) {
    assert_non_null(strstr(tg_client_auth_hint(TG_CLIENT_ANTHROPIC), "x-api-key"));
    assert_null(strstr(tg_client_auth_hint(TG_CLIENT_OPENAI), "x-api-key"));
    assert_non_null(strstr(tg_client_auth_hint(TG_CLIENT_OPENAI), "Authorization: Bearer"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_stream_ends), cmocka_unit_test(test_responses_errors_and_state),
        cmocka_unit_test(test_auth_hint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
