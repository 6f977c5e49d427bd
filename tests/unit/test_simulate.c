/* test_simulate.c — the simulated providers, driven without sockets through
 * tg_sim_render(): each test sends a request as a client would and checks
 * the answer the way an SDK would read it (parsed with jansson): field names
 * per vendor, token arithmetic, SSE event order, error shapes, faults, and
 * the /_sim control endpoints. */
/* clang-format off */
/* deps: sim/simulate.c sim/wire.c sim/count.c sim/plan.c sim/pace.c sim/openai.c sim/anthropic.c sim/responses.c sim/embeddings.c sim/control.c gateway/http1.c core/pool.c core/log.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/simulate.h"

static tg_sim_t *sim;

static int setup(void **state) {
    sim = tg_sim_new();
    return sim ? 0 : -1;
}

static int teardown(void **state) {
    tg_sim_free(sim);
    return 0;
}

/* Headers as "name: value" strings, NULL-terminated. */
static tg_sim_answer_t req(const char *method, const char *path, const char *const *h, const char *body) {
    tg_http_header_t hdrs[16];
    size_t n = 0;
    for (; h && h[n]; n++) {
        const char *c = strchr(h[n], ':');
        hdrs[n].name = h[n];
        hdrs[n].name_len = (size_t)(c - h[n]);
        hdrs[n].value = c + 2;
        hdrs[n].value_len = strlen(c + 2);
    }
    tg_sim_answer_t a;
    assert_int_equal(tg_sim_render(sim, method, path, hdrs, n, body, body ? strlen(body) : 0, &a), 0);
    return a;
}

#define OA_AUTH "Authorization: Bearer sim"
#define AN_AUTH "x-api-key: sim", "anthropic-version: 2023-06-01"
/* "hello there" is 11 bytes: ceil(11/4) + 4 * 1 message = 7 prompt tokens. */
#define HELLO "[{\"role\":\"user\",\"content\":\"hello there\"}]"
#define PROMPT 7

static json_t *json_of(tg_sim_answer_t *a) {
    json_error_t e;
    json_t *j = json_loads(a->body, 0, &e);
    if (j == NULL) fail_msg("not JSON (%s): %s", e.text, a->body);
    return j;
}

static int64_t iget(json_t *o, const char *path) {
    /* dotted path of object keys */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *v = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    if (!json_is_integer(v)) fail_msg("%s is not an integer", path);
    return json_integer_value(v);
}

static int count_words(const char *s) {
    int n = 0;
    for (int in = 0; *s; s++) {
        if (*s != ' ' && !in) n++;
        in = *s != ' ';
    }
    return n;
}

/* The data: payloads of an SSE text, with their event: names (or ""). */
typedef struct {
    int n;
    char *event[4096];
    char *data[4096];
} sse_t;

static void sse_parse(char *text, sse_t *s) {
    char *pending = "";
    s->n = 0;
    for (char *save = NULL, *ev = strtok_r(text, "\n", &save); ev; ev = strtok_r(NULL, "\n", &save)) {
        if (strncmp(ev, "event: ", 7) == 0) {
            pending = ev + 7;
        } else if (strncmp(ev, "data: ", 6) == 0) {
            assert_true(s->n < 4096);
            s->event[s->n] = pending;
            s->data[s->n++] = ev + 6;
            pending = "";
        } else {
            fail_msg("unexpected SSE line: %s", ev);
        }
    }
}

static sse_t *sse_new(void) {
    return calloc(1, sizeof(sse_t));
}

static void test_openai_whole(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-cached-tokens: 3", NULL};
    tg_sim_answer_t a =
        req("POST", "/openai/v1/chat/completions", h, "{\"model\":\"gpt-4o-mini\",\"messages\":" HELLO "}");
    assert_int_equal(a.status, 200);
    assert_string_equal(a.content_type, "application/json");
    json_t *j = json_of(&a);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "gpt-4o-mini");
    assert_non_null(json_object_get(j, "system_fingerprint"));
    assert_int_equal(iget(j, "usage.prompt_tokens"), PROMPT);
    assert_int_equal(iget(j, "usage.completion_tokens"), 16);
    assert_int_equal(iget(j, "usage.total_tokens"), PROMPT + 16);
    assert_int_equal(iget(j, "usage.prompt_tokens_details.cached_tokens"), 3);
    assert_int_equal(iget(j, "usage.completion_tokens_details.reasoning_tokens"), 0);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "stop");
    json_t *m = json_object_get(c0, "message");
    assert_string_equal(json_string_value(json_object_get(m, "role")), "assistant");
    assert_int_equal(count_words(json_string_value(json_object_get(m, "content"))), 16);
    json_decref(j);
    free(a.body);
}

static void test_deepseek_cache_and_reasoning(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-cached-tokens: 5", "x-sim-reasoning-tokens: 4", NULL};
    tg_sim_answer_t a = req("POST", "/deepseek/v1/chat/completions", h,
                            "{\"model\":\"deepseek-flash\",\"max_tokens\":10,\"messages\":" HELLO "}");
    json_t *j = json_of(&a);
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(iget(u, "prompt_cache_hit_tokens"), 5);
    assert_int_equal(iget(u, "prompt_cache_hit_tokens") + iget(u, "prompt_cache_miss_tokens"),
                     iget(u, "prompt_tokens"));
    assert_null(json_object_get(u, "prompt_tokens_details"));
    assert_int_equal(iget(u, "completion_tokens"), 4 + 10);
    assert_int_equal(iget(u, "completion_tokens_details.reasoning_tokens"), 4);
    assert_null(json_object_get(j, "system_fingerprint"));
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    json_t *m = json_object_get(c0, "message");
    assert_int_equal(count_words(json_string_value(json_object_get(m, "reasoning_content"))), 4);
    assert_int_equal(count_words(json_string_value(json_object_get(m, "content"))), 10);
    /* max_tokens 10 < the default 16: cut short */
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "length");
    json_decref(j);
    free(a.body);
}

static void test_qwen_and_cache_clamp(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-cached-tokens: 1000", "x-sim-output-tokens: 3", NULL};
    tg_sim_answer_t a =
        req("POST", "/qwen/v1/chat/completions", h, "{\"model\":\"qwen-plus\",\"messages\":" HELLO "}");
    json_t *j = json_of(&a);
    assert_int_equal(iget(j, "usage.prompt_tokens_details.cached_tokens"), PROMPT);
    assert_int_equal(iget(j, "usage.completion_tokens"), 3);
    assert_null(json_object_get(json_object_get(j, "usage"), "prompt_cache_hit_tokens"));
    assert_null(json_object_get(json_object_get(j, "usage"), "completion_tokens_details"));
    json_decref(j);
    free(a.body);
}

/* Stream chunks concatenate to the non-stream content; usage only on request. */
static void test_openai_stream(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-output-tokens: 5", NULL};
    tg_sim_answer_t a =
        req("POST", "/v1/chat/completions", h, "{\"model\":\"m\",\"stream\":true,\"messages\":" HELLO "}");
    assert_int_equal(a.status, 200);
    assert_string_equal(a.content_type, "text/event-stream; charset=utf-8");
    sse_t *s = sse_new();
    sse_parse(a.body, s);
    assert_int_equal(s->n, 1 + 5 + 1 + 1); /* role, tokens, finish, [DONE] */
    assert_string_equal(s->data[s->n - 1], "[DONE]");
    char text[256] = "";
    for (int i = 0; i < s->n - 1; i++) {
        json_t *c = json_loads(s->data[i], 0, NULL);
        assert_non_null(c);
        assert_string_equal(json_string_value(json_object_get(c, "object")), "chat.completion.chunk");
        assert_null(json_object_get(c, "usage"));
        json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
        json_t *d = json_object_get(ch, "delta");
        if (i == 0) assert_string_equal(json_string_value(json_object_get(d, "role")), "assistant");
        if (json_is_string(json_object_get(d, "content")))
            strcat(text, json_string_value(json_object_get(d, "content")));
        if (i == s->n - 2)
            assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
        else
            assert_true(json_is_null(json_object_get(ch, "finish_reason")));
        json_decref(c);
    }
    assert_string_equal(text, "Hello from the simulated provider,");
    free(a.body);
    free(s);
}

/* One logprobs.content entry as an SDK reads it: the token, a logprob <= 0
 * with the token's bytes, and n alternatives, the first the token itself,
 * each no likelier than the one before. */
static void check_logprob(json_t *e, const char *token, int n) {
    assert_string_equal(json_string_value(json_object_get(e, "token")), token);
    assert_true(json_is_number(json_object_get(e, "logprob")));
    double lp = json_number_value(json_object_get(e, "logprob"));
    assert_true(lp <= 0);
    json_t *bytes = json_object_get(e, "bytes");
    assert_int_equal(json_array_size(bytes), strlen(token));
    for (size_t k = 0; k < strlen(token); k++)
        assert_int_equal(json_integer_value(json_array_get(bytes, k)), (unsigned char)token[k]);
    json_t *top = json_object_get(e, "top_logprobs");
    assert_int_equal(json_array_size(top), n);
    double prev = 0;
    for (int j = 0; j < n; j++) {
        json_t *t = json_array_get(top, j);
        assert_true(json_is_string(json_object_get(t, "token")));
        assert_true(json_is_array(json_object_get(t, "bytes")));
        double v = json_number_value(json_object_get(t, "logprob"));
        if (j == 0) {
            assert_string_equal(json_string_value(json_object_get(t, "token")), token);
            assert_true(fabs(v - lp) < 1e-9);
        } else {
            assert_true(v < prev);
        }
        prev = v;
    }
}

static void test_logprobs(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-output-tokens: 3", "x-sim-logprobs: 5", NULL};
    const char *sbody = "{\"model\":\"m\",\"stream\":true,\"messages\":" HELLO "}";
    tg_sim_answer_t a = req("POST", "/openai/v1/chat/completions", h, sbody);
    assert_int_equal(a.status, 200);
    sse_t *s = sse_new();
    sse_parse(a.body, s);
    assert_int_equal(s->n, 1 + 3 + 1 + 1); /* role, tokens, finish, [DONE] */
    const char *words[] = {"Hello", " from", " the"};
    for (int i = 0; i < s->n - 1; i++) {
        json_t *c = json_loads(s->data[i], 0, NULL);
        assert_non_null(c);
        json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
        json_t *lp = json_object_get(ch, "logprobs");
        if (i == 0 || i == s->n - 2) {
            /* The role and finish chunks carry no token. */
            assert_true(json_is_null(lp));
        } else {
            const char *text = json_string_value(json_object_get(json_object_get(ch, "delta"), "content"));
            assert_string_equal(text, words[i - 1]);
            json_t *content = json_object_get(lp, "content");
            assert_int_equal(json_array_size(content), 1);
            check_logprob(json_array_get(content, 0), text, 5);
            assert_true(json_is_null(json_object_get(lp, "refusal")));
        }
        json_decref(c);
    }
    /* The same request gives the same stream, but for its id and time. */
    char *first = strdup(s->data[2]);
    free(a.body);
    a = req("POST", "/openai/v1/chat/completions", h, sbody);
    sse_parse(a.body, s);
    const char *l1 = strstr(first, "\"logprobs\""), *l2 = strstr(s->data[2], "\"logprobs\"");
    assert_non_null(l1);
    assert_non_null(l2);
    assert_string_equal(l1, l2);
    free(first);
    free(a.body);

    /* The whole answer: one entry per token of the content. */
    a = req("POST", "/openai/v1/chat/completions", h, "{\"model\":\"m\",\"messages\":" HELLO "}");
    json_t *j = json_of(&a);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    json_t *content = json_object_get(json_object_get(c0, "logprobs"), "content");
    assert_int_equal(json_array_size(content), 3);
    for (int i = 0; i < 3; i++)
        check_logprob(json_array_get(content, i), words[i], 5);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c0, "message"), "content")),
                        "Hello from the");
    json_decref(j);
    free(a.body);

    /* Without the header, and for Anthropic, there are none. */
    const char *h0[] = {OA_AUTH, "x-sim-output-tokens: 3", NULL};
    a = req("POST", "/openai/v1/chat/completions", h0, sbody);
    assert_null(strstr(a.body, "top_logprobs"));
    assert_non_null(strstr(a.body, "\"logprobs\":null"));
    free(a.body);
    const char *ha[] = {AN_AUTH, "x-sim-output-tokens: 3", "x-sim-logprobs: 5", NULL};
    a = req("POST", "/anthropic/v1/messages", ha,
            "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100,\"stream\":true,\"messages\":" HELLO "}");
    assert_int_equal(a.status, 200);
    assert_null(strstr(a.body, "logprob"));
    free(a.body);
    const char *hb[] = {OA_AUTH, "x-sim-logprobs: many", NULL};
    a = req("POST", "/openai/v1/chat/completions", hb, sbody);
    assert_int_equal(a.status, 400);
    free(a.body);
    free(s);
}

static void test_stream_usage_modes(void **state) {
    const char *body =
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":" HELLO
        "}";
    sse_t *s = sse_new();
    /* include_usage: usage null on every chunk but a last choices:[] chunk */
    const char *h1[] = {OA_AUTH, "x-sim-output-tokens: 2", NULL};
    tg_sim_answer_t a = req("POST", "/deepseek/v1/chat/completions", h1, body);
    sse_parse(a.body, s);
    assert_int_equal(s->n, 1 + 2 + 1 + 1 + 1);
    for (int i = 0; i < s->n - 2; i++) {
        json_t *c = json_loads(s->data[i], 0, NULL);
        assert_true(json_is_null(json_object_get(c, "usage")));
        json_decref(c);
    }
    json_t *u = json_loads(s->data[s->n - 2], 0, NULL);
    assert_int_equal(json_array_size(json_object_get(u, "choices")), 0);
    assert_int_equal(iget(u, "usage.completion_tokens"), 2);
    assert_int_equal(iget(u, "usage.prompt_tokens"), PROMPT);
    json_decref(u);
    free(a.body);
    /* usage on the finish chunk, no separate chunk */
    const char *h2[] = {OA_AUTH, "x-sim-output-tokens: 2", "x-sim-usage-on-finish: 1", NULL};
    a = req("POST", "/qwen/v1/chat/completions", h2, body);
    sse_parse(a.body, s);
    assert_int_equal(s->n, 1 + 2 + 1 + 1);
    json_t *f = json_loads(s->data[s->n - 2], 0, NULL);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(f, "choices"), 0), "finish_reason")),
        "stop");
    assert_int_equal(iget(f, "usage.total_tokens"), PROMPT + 2);
    json_decref(f);
    free(a.body);
    /* no usage at all */
    const char *h3[] = {OA_AUTH, "x-sim-output-tokens: 2", "x-sim-no-usage: 1", NULL};
    a = req("POST", "/openai/v1/chat/completions", h3, body);
    assert_null(strstr(a.body, "usage"));
    free(a.body);
    free(s);
}

static void test_stream_reasoning_deepseek(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-output-tokens: 2", "x-sim-reasoning-tokens: 3", NULL};
    tg_sim_answer_t a =
        req("POST", "/deepseek/v1/chat/completions", h,
            "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":" HELLO
            "}");
    sse_t *s = sse_new();
    sse_parse(a.body, s);
    assert_int_equal(s->n, 1 + 3 + 2 + 1 + 1 + 1);
    json_t *r = json_loads(s->data[1], 0, NULL);
    json_t *d = json_object_get(json_array_get(json_object_get(r, "choices"), 0), "delta");
    assert_string_equal(json_string_value(json_object_get(d, "reasoning_content")), "Let");
    json_decref(r);
    json_t *u = json_loads(s->data[s->n - 2], 0, NULL);
    assert_int_equal(iget(u, "usage.completion_tokens"), 5);
    assert_int_equal(iget(u, "usage.completion_tokens_details.reasoning_tokens"), 3);
    json_decref(u);
    free(a.body);
    free(s);
}

#define TOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]"

static void test_tool_call_openai(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-tool-call: get_weather", NULL};
    tg_sim_answer_t a =
        req("POST", "/openai/v1/chat/completions", h, "{\"model\":\"m\"," TOOLS ",\"messages\":" HELLO "}");
    json_t *j = json_of(&a);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "tool_calls");
    json_t *call = json_array_get(json_object_get(json_object_get(c0, "message"), "tool_calls"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(call, "function"), "name")),
                        "get_weather");
    assert_string_equal(json_string_value(json_object_get(json_object_get(call, "function"), "arguments")),
                        "{\"city\":\"Paris\"}");
    assert_string_equal(json_string_value(json_object_get(call, "type")), "function");
    assert_int_equal(iget(j, "usage.completion_tokens"), 4);
    json_decref(j);
    free(a.body);

    /* Streamed: the first delta names the call, fragments join to the arguments. */
    const char *h2[] = {OA_AUTH, NULL};
    a = req("POST", "/openai/v1/chat/completions", h2,
            "{\"model\":\"m\",\"stream\":true," TOOLS
            ",\"messages\":[{\"role\":\"user\",\"content\":\"please call tool get_weather.\"}]}");
    sse_t *s = sse_new();
    sse_parse(a.body, s);
    char args[128] = "";
    const char *name = NULL, *finish = NULL;
    json_t *keep[16];
    int nk = 0;
    for (int i = 0; i < s->n - 1; i++) {
        json_t *c = keep[nk++] = json_loads(s->data[i], 0, NULL);
        json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
        json_t *tc = json_array_get(json_object_get(json_object_get(ch, "delta"), "tool_calls"), 0);
        if (json_is_string(json_object_get(ch, "finish_reason")))
            finish = json_string_value(json_object_get(ch, "finish_reason"));
        if (tc == NULL) continue;
        assert_int_equal(iget(tc, "index"), 0);
        json_t *fn = json_object_get(tc, "function");
        if (json_object_get(fn, "name")) name = json_string_value(json_object_get(fn, "name"));
        strcat(args, json_string_value(json_object_get(fn, "arguments")));
    }
    assert_string_equal(name, "get_weather");
    assert_string_equal(args, "{\"city\":\"Paris\"}");
    assert_string_equal(finish, "tool_calls");
    for (int i = 0; i < nk; i++)
        json_decref(keep[i]);
    free(a.body);
    free(s);

    /* After the tool result, plain text. */
    a = req("POST", "/openai/v1/chat/completions", h,
            "{\"model\":\"m\"," TOOLS
            ",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\","
            "\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":"
            "\"get_weather\","
            "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}]}");
    j = json_of(&a);
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "stop");
    assert_true(json_is_string(json_object_get(json_object_get(c0, "message"), "content")));
    json_decref(j);
    free(a.body);
}

static void test_anthropic_whole(void **state) {
    const char *h[] = {AN_AUTH, "x-sim-cached-tokens: 2", "x-sim-cache-write-tokens: 1",
                       "x-sim-output-tokens: 4", NULL};
    tg_sim_answer_t a = req("POST", "/anthropic/v1/messages", h,
                            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"messages\":" HELLO "}");
    assert_int_equal(a.status, 200);
    json_t *j = json_of(&a);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(j, "stop_reason")), "end_turn");
    assert_true(json_is_null(json_object_get(j, "stop_sequence")));
    json_t *blk = json_array_get(json_object_get(j, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(blk, "type")), "text");
    assert_int_equal(count_words(json_string_value(json_object_get(blk, "text"))), 4);
    assert_int_equal(iget(j, "usage.cache_read_input_tokens"), 2);
    assert_int_equal(iget(j, "usage.cache_creation_input_tokens"), 1);
    assert_int_equal(iget(j, "usage.input_tokens"), PROMPT - 2 - 1);
    assert_int_equal(iget(j, "usage.output_tokens"), 4);
    json_decref(j);
    free(a.body);
}

static void test_anthropic_stream(void **state) {
    const char *h[] = {AN_AUTH, "x-sim-output-tokens: 3", "x-sim-reasoning-tokens: 2", NULL};
    tg_sim_answer_t a = req("POST", "/anthropic/v1/messages", h,
                            "{\"model\":\"claude\",\"max_tokens\":2,\"stream\":true,\"messages\":" HELLO "}");
    sse_t *s = sse_new();
    sse_parse(a.body, s);
    const char *want[] = {"message_start",       "content_block_start", "ping",
                          "content_block_delta", "content_block_delta", "content_block_delta",
                          "content_block_stop",  "content_block_start", "content_block_delta",
                          "content_block_delta", "content_block_stop",  "message_delta",
                          "message_stop"};
    assert_int_equal(s->n, 13);
    char text[64] = "";
    for (int i = 0; i < s->n; i++) {
        assert_string_equal(s->event[i], want[i]);
        json_t *e = json_loads(s->data[i], 0, NULL);
        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(e, "type")), want[i]);
        json_t *d = json_object_get(e, "delta");
        if (json_is_string(json_object_get(d, "text")))
            strcat(text, json_string_value(json_object_get(d, "text")));
        if (i == 0) assert_int_equal(iget(e, "message.usage.input_tokens"), PROMPT);
        if (i == 11) {
            assert_string_equal(json_string_value(json_object_get(d, "stop_reason")), "max_tokens");
            assert_int_equal(iget(e, "usage.output_tokens"), 2 + 2);
        }
        json_decref(e);
    }
    assert_string_equal(text, "Hello from");
    free(a.body);
    free(s);
}

static void test_anthropic_tool_stream(void **state) {
    const char *h[] = {AN_AUTH, "x-sim-tool-call: get_weather", NULL};
    tg_sim_answer_t a =
        req("POST", "/anthropic/v1/messages", h,
            "{\"model\":\"c\",\"max_tokens\":50,\"stream\":true,\"tools\":[{\"name\":\"get_weather\"}],"
            "\"messages\":" HELLO "}");
    sse_t *s = sse_new();
    sse_parse(a.body, s);
    char js[64] = "";
    int saw_start = 0;
    json_t *keep[32];
    int nk = 0;
    for (int i = 0; i < s->n; i++) {
        json_t *e = keep[nk++] = json_loads(s->data[i], 0, NULL);
        json_t *cb = json_object_get(e, "content_block");
        if (cb && strcmp(json_string_value(json_object_get(cb, "type")), "tool_use") == 0) {
            assert_string_equal(json_string_value(json_object_get(cb, "name")), "get_weather");
            saw_start = 1;
        }
        json_t *d = json_object_get(e, "delta");
        if (json_is_string(json_object_get(d, "partial_json")))
            strcat(js, json_string_value(json_object_get(d, "partial_json")));
        if (json_is_string(json_object_get(d, "stop_reason")))
            assert_string_equal(json_string_value(json_object_get(d, "stop_reason")), "tool_use");
    }
    assert_true(saw_start);
    assert_string_equal(js, "{\"city\":\"Paris\"}");
    for (int i = 0; i < nk; i++)
        json_decref(keep[i]);
    free(a.body);
    free(s);
}

static void assert_error(tg_sim_answer_t *a, int status, int anthropic, const char *type) {
    assert_int_equal(a->status, status);
    json_t *j = json_of(a);
    if (anthropic) assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
    json_t *e = json_object_get(j, "error");
    assert_true(json_is_string(json_object_get(e, "message")));
    assert_string_equal(json_string_value(json_object_get(e, "type")), type);
    json_decref(j);
    free(a->body);
}

static void test_errors(void **state) {
    const char *ok = "{\"model\":\"m\",\"max_tokens\":5,\"messages\":" HELLO "}";
    const char *h429[] = {OA_AUTH, "x-sim-status: 429", NULL};
    tg_sim_answer_t a = req("POST", "/deepseek/v1/chat/completions", h429, ok);
    assert_int_equal(a.retry_after, 1);
    assert_error(&a, 429, 0, "requests");
    const char *h529[] = {AN_AUTH, "x-sim-status: 529", "x-sim-retry-after: 7", NULL};
    a = req("POST", "/anthropic/v1/messages", h529, ok);
    assert_int_equal(a.retry_after, 7);
    assert_error(&a, 529, 1, "overloaded_error");
    const char *oa[] = {OA_AUTH, NULL}, *an[] = {AN_AUTH, NULL}, *none[] = {NULL};
    a = req("POST", "/openai/v1/chat/completions", oa, "{\"model\":");
    assert_error(&a, 400, 0, "invalid_request_error");
    a = req("POST", "/anthropic/v1/messages", an, "{\"model\":\"m\",");
    assert_error(&a, 400, 1, "invalid_request_error");
    a = req("POST", "/anthropic/v1/messages", an, "{\"model\":\"m\",\"messages\":" HELLO "}");
    assert_error(&a, 400, 1, "invalid_request_error"); /* max_tokens is required */
    a = req("POST", "/openai/v1/chat/completions", none, ok);
    assert_error(&a, 401, 0, "invalid_request_error");
    a = req("POST", "/anthropic/v1/messages", none, ok);
    assert_error(&a, 401, 1, "authentication_error");
    a = req("GET", "/nope", none, NULL);
    assert_error(&a, 404, 0, "invalid_request_error");
}

static void test_fault_percent(void **state) {
    char err[128];
    assert_int_equal(tg_sim_set_fault(sim, "flaky:503:30", err, sizeof(err)), 0);
    assert_int_equal(tg_sim_set_fault(sim, "flaky:200", err, sizeof(err)), -1);
    assert_int_equal(tg_sim_set_fault(sim, "flaky", err, sizeof(err)), -1);
    const char *h[] = {OA_AUTH, NULL};
    int failed = 0, first_failed = 0;
    for (int i = 0; i < 100; i++) {
        tg_sim_answer_t a =
            req("POST", "/flaky/v1/chat/completions", h, "{\"model\":\"m\",\"messages\":" HELLO "}");
        if (a.status == 503) {
            failed++;
            if (i < 30) first_failed++;
        } else {
            assert_int_equal(a.status, 200);
        }
        free(a.body);
    }
    assert_int_equal(failed, 30);
    assert_int_equal(first_failed, 30);
}

static void test_error_after(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-error-after: 2", NULL};
    tg_sim_answer_t a = req("POST", "/openai/v1/chat/completions", h,
                            "{\"model\":\"m\",\"stream\":true,\"messages\":" HELLO "}");
    sse_t *s = sse_new();
    sse_parse(a.body, s);
    assert_int_equal(s->n, 3);
    json_t *e = json_loads(s->data[2], 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "error"), "type")),
                        "server_error");
    json_decref(e);
    assert_null(strstr(a.body, "[DONE]"));
    free(a.body);
    free(s);
}

static void test_stats_tracking_config(void **state) {
    const char *none[] = {NULL};
    tg_sim_answer_t a = req("POST", "/_sim/reset", none, "");
    assert_int_equal(a.status, 200);
    free(a.body);
    const char *h[] = {OA_AUTH, "x-sim-id: t-1", "x-sim-cached-tokens: 1", "x-sim-reasoning-tokens: 2", NULL};
    a = req("POST", "/deepseek/v1/chat/completions", h,
            "{\"model\":\"m\",\"max_tokens\":3,\"messages\":" HELLO "}");
    free(a.body);
    const char *h2[] = {OA_AUTH, "x-sim-status: 500", NULL};
    a = req("POST", "/deepseek/v1/chat/completions", h2, "{\"model\":\"m\",\"messages\":" HELLO "}");
    free(a.body);

    a = req("GET", "/_sim/requests/t-1", none, NULL);
    json_t *t = json_of(&a);
    assert_string_equal(json_string_value(json_object_get(t, "state")), "completed");
    assert_int_equal(iget(t, "prompt_tokens"), PROMPT);
    assert_int_equal(iget(t, "completion_tokens"), 5);
    json_decref(t);
    free(a.body);
    a = req("GET", "/_sim/requests/unknown", none, NULL);
    assert_int_equal(a.status, 404);
    free(a.body);

    a = req("GET", "/_sim/stats", none, NULL);
    json_t *s = json_of(&a);
    assert_int_equal(iget(s, "requests"), 2);
    assert_int_equal(iget(s, "completed"), 1);
    assert_int_equal(iget(s, "errors"), 1);
    assert_int_equal(iget(s, "streams_open"), 0);
    json_t *d = json_object_get(json_object_get(s, "providers"), "deepseek");
    assert_int_equal(iget(d, "requests"), 2);
    assert_int_equal(iget(d, "prompt_tokens"), PROMPT);
    assert_int_equal(iget(d, "cached_tokens"), 1);
    assert_int_equal(iget(d, "completion_tokens"), 5);
    assert_int_equal(iget(d, "reasoning_tokens"), 2);
    json_decref(s);
    free(a.body);

    a = req("POST", "/_sim/config", none, "{\"provider\":\"deepseek\",\"fault_status\":502}");
    assert_int_equal(a.status, 200);
    free(a.body);
    a = req("POST", "/deepseek/v1/chat/completions", h, "{\"model\":\"m\",\"messages\":" HELLO "}");
    assert_int_equal(a.status, 502);
    free(a.body);
    a = req("POST", "/_sim/config", none, "{\"provider\":\"deepseek\",\"fault_stat\":502}");
    assert_int_equal(a.status, 400);
    free(a.body);
    a = req("POST", "/_sim/reset?all=1", none, "");
    free(a.body);
    a = req("POST", "/deepseek/v1/chat/completions", h, "{\"model\":\"m\",\"messages\":" HELLO "}");
    assert_int_equal(a.status, 200);
    free(a.body);
}

static void test_models(void **state) {
    const char *h[] = {OA_AUTH, NULL};
    tg_sim_answer_t a = req("GET", "/deepseek/v1/models", h, NULL);
    json_t *j = json_of(&a);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
    assert_true(json_array_size(json_object_get(j, "data")) > 0);
    json_decref(j);
    free(a.body);
}

/* ---------- the counting rule, pinned from the rule itself ----------
 * prompt = ceil(text_bytes / 4) + 4 * messages, text_bytes being the UTF-8
 * length of the decoded text that counts (see sim/count.c). */

static int64_t prompt_of(const char *path, const char *const *h, const char *body, const char *field) {
    tg_sim_answer_t a = req("POST", path, h, body);
    assert_int_equal(a.status, 200);
    json_t *j = json_of(&a);
    int64_t v = iget(j, field);
    json_decref(j);
    free(a.body);
    return v;
}

static void test_counting_rule(void **state) {
    const char *oa[] = {OA_AUTH, NULL}, *an[] = {AN_AUTH, NULL};
    /* "You are terse." 14 bytes + "h\u00e9llo" 6 bytes (é is two); the image
     * part and the tool call's arguments do not count: ceil(20/4) + 4*3. */
    assert_int_equal(
        prompt_of("/openai/v1/chat/completions", oa,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                  "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"h\\u00e9llo\"},"
                  "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]},"
                  "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":"
                  "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"long\\\":1}\"}}]}]}",
                  "usage.prompt_tokens"),
        5 + 12);
    /* "x" + one emoji from a surrogate pair (4 bytes) + "\n": 6 bytes. */
    assert_int_equal(
        prompt_of("/openai/v1/chat/completions", oa,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\\ud83d\\ude00\\n\"}]}",
                  "usage.prompt_tokens"),
        2 + 4);
    /* An empty message still costs its 4. */
    assert_int_equal(prompt_of("/deepseek/v1/chat/completions", oa,
                               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}",
                               "usage.prompt_tokens"),
                     4);
    /* Anthropic: system blocks (4 bytes) count but not as a message; a
     * tool_result's text blocks (8 bytes) count; the tool_use input does
     * not: ceil(12/4) + 4*2. */
    assert_int_equal(
        prompt_of("/anthropic/v1/messages", an,
                  "{\"model\":\"c\",\"max_tokens\":5,\"system\":[{\"type\":\"text\",\"text\":\"abcd\"}],"
                  "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\","
                  "\"name\":\"f\",\"input\":{\"q\":\"a long query\"}}]},{\"role\":\"user\",\"content\":"
                  "[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":\"text\","
                  "\"text\":\"12345678\"}]}]}]}",
                  "usage.input_tokens"),
        3 + 8);
    /* 13 bytes is one more token than 12. */
    assert_int_equal(
        prompt_of("/qwen/v1/chat/completions", oa,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"123456789012\"},"
                  "{\"role\":\"user\",\"content\":\"1\"}]}",
                  "usage.prompt_tokens"),
        4 + 8);
}

/* Any provider name is served in the OpenAI dialect; names with "qwen" or
 * "deepseek" get those vendors' usage fields. */
static void test_any_provider_name(void **state) {
    const char *oa[] = {OA_AUTH, NULL};
    const char *names[] = {"kimi", "glm",        "minimax", "stepfun", "hunyuan",
                           "mimo", "openrouter", "qwen-cn", "qwen-us"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/%s/v1/chat/completions", names[i]);
        tg_sim_answer_t a = req("POST", path, oa, "{\"model\":\"m\",\"messages\":" HELLO "}");
        assert_int_equal(a.status, 200);
        json_t *j = json_of(&a);
        assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
        assert_int_equal(iget(j, "usage.prompt_tokens"), PROMPT);
        json_t *d = json_object_get(json_object_get(j, "usage"), "prompt_tokens_details");
        /* Qwen's details carry only cached_tokens, OpenAI's also audio_tokens. */
        assert_int_equal(json_object_size(d), strncmp(names[i], "qwen", 4) == 0 ? 1 : 2);
        json_decref(j);
        free(a.body);
    }
    const char *none[] = {NULL};
    tg_sim_answer_t a = req("GET", "/_sim/stats", none, NULL);
    json_t *s = json_of(&a);
    assert_int_equal(iget(s, "providers.kimi.prompt_tokens"), PROMPT);
    assert_int_equal(iget(s, "providers.qwen-us.requests"), 1);
    json_decref(s);
    free(a.body);
}

/* ---------- count_tokens ---------- */

static void test_count_tokens(void **state) {
    const char *an[] = {AN_AUTH, NULL};
    /* system "abcd" + "hello there": 15 bytes, ceil(15/4) + 4 * 1 = 8; the
     * tool's compact JSON {"name":"get_weather","input_schema":{"type":"object"}}
     * is 55 bytes, ceil(55/4) = 14. max_tokens is not needed here. */
    tg_sim_answer_t a =
        req("POST", "/anthropic/v1/messages/count_tokens", an,
            "{\"model\":\"claude-sonnet-4-5\",\"system\":\"abcd\",\"tools\":[{\"name\":\"get_weather\","
            "\"input_schema\":{\"type\":\"object\"}}],\"messages\":" HELLO "}");
    assert_int_equal(a.status, 200);
    assert_string_equal(a.content_type, "application/json");
    json_t *j = json_of(&a);
    assert_int_equal(json_object_size(j), 1);
    assert_int_equal(iget(j, "input_tokens"), 8 + 14);
    json_decref(j);
    free(a.body);
    /* Without tools it is what /v1/messages bills as input. */
    a = req("POST", "/v1/messages/count_tokens", an, "{\"model\":\"c\",\"messages\":" HELLO "}");
    j = json_of(&a);
    assert_int_equal(iget(j, "input_tokens"), PROMPT);
    json_decref(j);
    free(a.body);

    const char *none[] = {NULL}, *h529[] = {AN_AUTH, "x-sim-status: 529", NULL};
    a = req("POST", "/anthropic/v1/messages/count_tokens", none, "{\"model\":\"c\",\"messages\":" HELLO "}");
    assert_error(&a, 401, 1, "authentication_error");
    a = req("POST", "/anthropic/v1/messages/count_tokens", an, "{\"messages\":" HELLO "}");
    assert_error(&a, 400, 1, "invalid_request_error");
    a = req("POST", "/anthropic/v1/messages/count_tokens", h529, "{\"model\":\"c\",\"messages\":" HELLO "}");
    assert_error(&a, 529, 1, "overloaded_error");
    /* Counting is free: nothing billed. */
    a = req("GET", "/_sim/stats", none, NULL);
    j = json_of(&a);
    assert_int_equal(iget(j, "requests"), 0);
    json_decref(j);
    free(a.body);
}

/* ---------- embeddings ---------- */

static double *vec_of(json_t *item, size_t *n) {
    json_t *e = json_object_get(item, "embedding");
    *n = json_array_size(e);
    double *v = calloc(*n ? *n : 1, sizeof(double));
    for (size_t i = 0; i < *n; i++)
        v[i] = json_real_value(json_array_get(e, i));
    return v;
}

static double norm_of(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i] * v[i];
    return s;
}

static size_t b64_decode(const char *s, unsigned char *out) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        acc = acc << 6 | (uint32_t)(strchr(al, *s) - al);
        if ((bits += 6) >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

static void test_embeddings(void **state) {
    const char *oa[] = {OA_AUTH, NULL};
    /* "hello there" 11 bytes -> 3 tokens, "abc" -> 1, the same text again -> 3. */
    tg_sim_answer_t a =
        req("POST", "/openai/v1/embeddings", oa,
            "{\"model\":\"text-embedding-3-small\",\"input\":[\"hello there\",\"abc\",\"hello there\"]}");
    assert_int_equal(a.status, 200);
    json_t *j = json_of(&a);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "text-embedding-3-small");
    assert_int_equal(iget(j, "usage.prompt_tokens"), 3 + 1 + 3);
    assert_int_equal(iget(j, "usage.total_tokens"), 3 + 1 + 3);
    json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 3);
    size_t n0, n1, n2;
    double *v0 = vec_of(json_array_get(data, 0), &n0), *v1 = vec_of(json_array_get(data, 1), &n1),
           *v2 = vec_of(json_array_get(data, 2), &n2);
    assert_int_equal(n0, 1536);
    assert_int_equal(iget(json_array_get(data, 2), "index"), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(data, 1), "object")), "embedding");
    assert_true(fabs(norm_of(v0, n0) - 1) < 1e-5 && fabs(norm_of(v1, n1) - 1) < 1e-5);
    assert_memory_equal(v0, v2, n0 * sizeof(double)); /* same text, same vector */
    assert_memory_not_equal(v0, v1, n0 * sizeof(double));
    free(v0);
    free(v1);
    free(v2);
    json_decref(j);
    free(a.body);

    /* base64 of little-endian float32, the same numbers as the float form. */
    a = req("POST", "/kimi/v1/embeddings", oa, "{\"model\":\"e\",\"input\":\"abc\",\"dimensions\":8}");
    j = json_of(&a);
    size_t nf;
    double *vf = vec_of(json_array_get(json_object_get(j, "data"), 0), &nf);
    assert_int_equal(nf, 8);
    json_decref(j);
    free(a.body);
    a = req("POST", "/kimi/v1/embeddings", oa,
            "{\"model\":\"e\",\"input\":\"abc\",\"dimensions\":8,\"encoding_format\":\"base64\"}");
    j = json_of(&a);
    const char *b64 =
        json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding"));
    assert_non_null(b64);
    unsigned char raw[64];
    assert_int_equal(b64_decode(b64, raw), 32);
    for (int i = 0; i < 8; i++) {
        uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 | (uint32_t)raw[4 * i + 2] << 16 |
                     (uint32_t)raw[4 * i + 3] << 24;
        float f;
        memcpy(&f, &u, 4);
        assert_true(fabs((double)f - vf[i]) < 1e-7);
    }
    free(vf);
    json_decref(j);
    free(a.body);

    /* Default sizes per model; token arrays count one token per id. */
    struct {
        const char *body;
        size_t dims;
        int64_t tokens;
    } cases[] = {
        {"{\"model\":\"text-embedding-3-large\",\"input\":\"abcde\"}", 3072, 2},
        {"{\"model\":\"text-embedding-v4\",\"input\":[[1,2,3],[4]]}", 1024, 4},
        {"{\"model\":\"gpt-4o\",\"input\":[7,8,9,10,11]}", 1536, 5},
    };
    for (size_t c = 0; c < 3; c++) {
        a = req("POST", "/qwen/v1/embeddings", oa, cases[c].body);
        j = json_of(&a);
        assert_int_equal(iget(j, "usage.prompt_tokens"), cases[c].tokens);
        assert_int_equal(
            json_array_size(json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding")),
            cases[c].dims);
        json_decref(j);
        free(a.body);
    }
    a = req("POST", "/openai/v1/embeddings", oa,
            "{\"model\":\"e\",\"input\":\"x\",\"encoding_format\":\"hex\"}");
    assert_error(&a, 400, 0, "invalid_request_error");
    a = req("POST", "/openai/v1/embeddings", oa, "{\"model\":\"e\",\"input\":[]}");
    assert_error(&a, 400, 0, "invalid_request_error");
    const char *none[] = {NULL};
    a = req("POST", "/openai/v1/embeddings", none, "{\"model\":\"e\",\"input\":\"x\"}");
    assert_error(&a, 401, 0, "invalid_request_error");
    a = req("GET", "/_sim/stats", none, NULL);
    j = json_of(&a);
    assert_int_equal(iget(j, "providers.openai.prompt_tokens"), 7);
    assert_int_equal(iget(j, "providers.openai.completion_tokens"), 0);
    json_decref(j);
    free(a.body);
}

/* ---------- the Responses API ---------- */

static void test_responses_whole(void **state) {
    const char *oa[] = {OA_AUTH, "x-sim-cached-tokens: 2", NULL};
    /* "Be brief." 9 + "hello there" 11 = 20 bytes; instructions count as a
     * message like a system message would: ceil(20/4) + 4*2 = 13. */
    tg_sim_answer_t a =
        req("POST", "/openai/v1/responses", oa,
            "{\"model\":\"gpt-4.1\",\"instructions\":\"Be brief.\",\"input\":\"hello there\"}");
    assert_int_equal(a.status, 200);
    json_t *j = json_of(&a);
    assert_true(strncmp(json_string_value(json_object_get(j, "id")), "resp_", 5) == 0);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "response");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "completed");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "gpt-4.1");
    assert_string_equal(json_string_value(json_object_get(j, "instructions")), "Be brief.");
    assert_true(json_is_integer(json_object_get(j, "created_at")));
    assert_null(json_object_get(j, "output_text")); /* an SDK convenience, not on the wire */
    assert_int_equal(iget(j, "usage.input_tokens"), 13);
    assert_int_equal(iget(j, "usage.input_tokens_details.cached_tokens"), 2);
    assert_int_equal(iget(j, "usage.output_tokens"), 16);
    assert_int_equal(iget(j, "usage.output_tokens_details.reasoning_tokens"), 0);
    assert_int_equal(iget(j, "usage.total_tokens"), 13 + 16);
    json_t *out = json_object_get(j, "output");
    assert_int_equal(json_array_size(out), 1);
    json_t *msg = json_array_get(out, 0);
    assert_string_equal(json_string_value(json_object_get(msg, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(msg, "status")), "completed");
    json_t *part = json_array_get(json_object_get(msg, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(part, "type")), "output_text");
    assert_int_equal(count_words(json_string_value(json_object_get(part, "text"))), 16);
    json_decref(j);
    free(a.body);

    /* Cut by max_output_tokens, with hidden reasoning: a reasoning item first. */
    const char *h2[] = {OA_AUTH, "x-sim-reasoning-tokens: 5", NULL};
    a = req("POST", "/kimi/v1/responses", h2,
            "{\"model\":\"k\",\"max_output_tokens\":3,\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
            "\"input_text\",\"text\":\"hello there\"}]}]}");
    j = json_of(&a);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "incomplete");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "incomplete_details"), "reason")),
        "max_output_tokens");
    assert_int_equal(iget(j, "usage.input_tokens"), PROMPT);
    assert_int_equal(iget(j, "usage.output_tokens"), 5 + 3);
    assert_int_equal(iget(j, "usage.output_tokens_details.reasoning_tokens"), 5);
    out = json_object_get(j, "output");
    assert_int_equal(json_array_size(out), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "type")), "reasoning");
    json_decref(j);
    free(a.body);

    const char *none[] = {NULL}, *h429[] = {OA_AUTH, "x-sim-status: 429", NULL};
    a = req("POST", "/openai/v1/responses", none, "{\"model\":\"m\",\"input\":\"x\"}");
    assert_error(&a, 401, 0, "invalid_request_error");
    a = req("POST", "/openai/v1/responses", oa, "{\"model\":\"m\"}");
    assert_error(&a, 400, 0, "invalid_request_error");
    a = req("POST", "/openai/v1/responses", h429, "{\"model\":\"m\",\"input\":\"x\"}");
    assert_int_equal(a.retry_after, 1);
    assert_error(&a, 429, 0, "requests");
}

/* Checks a Responses stream: event names match the type in the data,
 * sequence numbers count from 0. Returns the events parsed (caller frees). */
static json_t *resp_events(char *body, sse_t *s) {
    sse_parse(body, s);
    json_t *all = json_array();
    for (int i = 0; i < s->n; i++) {
        json_t *e = json_loads(s->data[i], 0, NULL);
        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(e, "type")), s->event[i]);
        assert_int_equal(iget(e, "sequence_number"), i);
        json_array_append_new(all, e);
    }
    return all;
}

static const char *type_at(json_t *all, size_t i) {
    return json_string_value(json_object_get(json_array_get(all, i), "type"));
}

static void test_responses_stream(void **state) {
    const char *h[] = {OA_AUTH, "x-sim-output-tokens: 3", NULL};
    tg_sim_answer_t a = req("POST", "/openai/v1/responses", h,
                            "{\"model\":\"gpt-5\",\"stream\":true,\"input\":\"hello there\"}");
    assert_int_equal(a.status, 200);
    assert_string_equal(a.content_type, "text/event-stream; charset=utf-8");
    sse_t *s = sse_new();
    json_t *all = resp_events(a.body, s);
    const char *want[] = {"response.created",           "response.in_progress",
                          "response.output_item.added", "response.content_part.added",
                          "response.output_text.delta", "response.output_text.delta",
                          "response.output_text.delta", "response.output_text.done",
                          "response.content_part.done", "response.output_item.done",
                          "response.completed"};
    assert_int_equal(json_array_size(all), 11);
    char text[128] = "";
    for (size_t i = 0; i < 11; i++) {
        assert_string_equal(type_at(all, i), want[i]);
        json_t *e = json_array_get(all, i);
        if (json_is_string(json_object_get(e, "delta")))
            strcat(text, json_string_value(json_object_get(e, "delta")));
    }
    assert_string_equal(text, "Hello from the");
    json_t *first = json_object_get(json_array_get(all, 0), "response");
    assert_string_equal(json_string_value(json_object_get(first, "status")), "in_progress");
    assert_true(json_is_null(json_object_get(first, "usage")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(all, 7), "text")), text);
    json_t *done = json_object_get(json_array_get(all, 10), "response");
    assert_string_equal(json_string_value(json_object_get(done, "status")), "completed");
    assert_int_equal(iget(done, "usage.input_tokens"), PROMPT);
    assert_int_equal(iget(done, "usage.output_tokens"), 3);
    json_t *item = json_object_get(json_array_get(all, 9), "item");
    assert_string_equal(json_string_value(json_object_get(item, "status")), "completed");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(item, "content"), 0), "text")),
        text);
    json_decref(all);
    free(a.body);

    /* x-sim-error-after: K events, then an error event and nothing more. */
    const char *h2[] = {OA_AUTH, "x-sim-error-after: 2", NULL};
    a = req("POST", "/openai/v1/responses", h2, "{\"model\":\"m\",\"stream\":true,\"input\":\"hi\"}");
    sse_parse(a.body, s);
    assert_int_equal(s->n, 3);
    assert_string_equal(s->event[2], "error");
    json_t *e = json_loads(s->data[2], 0, NULL);
    assert_string_equal(json_string_value(json_object_get(e, "code")), "server_error");
    assert_int_equal(iget(e, "sequence_number"), 2);
    json_decref(e);
    free(a.body);
    free(s);
}

#define RTOOLS                                                                                               \
    "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}]"

static void test_responses_tool_call(void **state) {
    const char *oa[] = {OA_AUTH, NULL};
    tg_sim_answer_t a = req("POST", "/openai/v1/responses", oa,
                            "{\"model\":\"m\"," RTOOLS ",\"input\":\"please call tool get_weather.\"}");
    json_t *j = json_of(&a);
    json_t *fc = json_array_get(json_object_get(j, "output"), 0);
    assert_string_equal(json_string_value(json_object_get(fc, "type")), "function_call");
    assert_string_equal(json_string_value(json_object_get(fc, "name")), "get_weather");
    assert_string_equal(json_string_value(json_object_get(fc, "arguments")), "{\"city\":\"Paris\"}");
    assert_true(strncmp(json_string_value(json_object_get(fc, "call_id")), "call_", 5) == 0);
    assert_int_equal(iget(j, "usage.output_tokens"), 4);
    assert_int_equal(json_array_size(json_object_get(j, "tools")), 1);
    json_decref(j);
    free(a.body);

    /* Streamed: arguments in deltas that join to the whole. */
    const char *h[] = {OA_AUTH, "x-sim-tool-call: get_weather", NULL};
    a = req("POST", "/openai/v1/responses", h,
            "{\"model\":\"m\",\"stream\":true," RTOOLS ",\"input\":\"hi\"}");
    sse_t *s = sse_new();
    json_t *all = resp_events(a.body, s);
    char args[64] = "";
    int added = 0, done = 0;
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *e = json_array_get(all, i);
        const char *t = type_at(all, i);
        if (strcmp(t, "response.function_call_arguments.delta") == 0)
            strcat(args, json_string_value(json_object_get(e, "delta")));
        if (strcmp(t, "response.function_call_arguments.done") == 0) {
            assert_string_equal(json_string_value(json_object_get(e, "arguments")), "{\"city\":\"Paris\"}");
            done = 1;
        }
        if (strcmp(t, "response.output_item.added") == 0) {
            json_t *item = json_object_get(e, "item");
            assert_string_equal(json_string_value(json_object_get(item, "type")), "function_call");
            assert_string_equal(json_string_value(json_object_get(item, "arguments")), "");
            added = 1;
        }
    }
    assert_true(added && done);
    assert_string_equal(args, "{\"city\":\"Paris\"}");
    assert_string_equal(type_at(all, json_array_size(all) - 1), "response.completed");
    assert_int_equal(iget(json_object_get(json_array_get(all, json_array_size(all) - 1), "response"),
                          "usage.output_tokens"),
                     4);
    json_decref(all);
    free(a.body);
    free(s);

    /* After the call's output comes back: text. */
    a = req("POST", "/openai/v1/responses", h,
            "{\"model\":\"m\"," RTOOLS
            ",\"input\":[{\"role\":\"user\",\"content\":\"w?\"},{\"type\":\"function_call\","
            "\"call_id\":\"c1\",\"name\":\"get_weather\",\"arguments\":\"{}\"},{\"type\":\"function_call_"
            "output\","
            "\"call_id\":\"c1\",\"output\":\"sunny\"}]}");
    j = json_of(&a);
    /* "w?" 2 + "sunny" 5 = 7 bytes over 3 items: 2 + 12. */
    assert_int_equal(iget(j, "usage.input_tokens"), 2 + 12);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "output"), 0), "type")),
        "message");
    json_decref(j);
    free(a.body);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_openai_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deepseek_cache_and_reasoning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qwen_and_cache_clamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logprobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_usage_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_reasoning_deepseek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_call_openai, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_tool_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_percent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_tracking_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_models, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counting_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_any_provider_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_embeddings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses_tool_call, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
