/* test_sse.c — the SSE parser as an upstream's answer reaches it (cut at any
 * byte, any line ending) and the writer as a client reads it back. */
/* deps: core/sse.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sse.h"

/* The events seen, as "type|data\n" lines (type "" when none). */
typedef struct {
    char out[8192];
    size_t len;
    int n;
    int stop_after; /* return 7 after this many events; 0 never */
} seen_t;

static int collect(void *ud, const char *event, size_t event_len, const char *data, size_t data_len) {
    seen_t *s = ud;
    assert_int_equal(strlen(event), event_len);
    assert_int_equal(data[data_len], '\0');
    s->len +=
        (size_t)snprintf(s->out + s->len, sizeof(s->out) - s->len, "%s|%.*s\n", event, (int)data_len, data);
    s->n++;
    return s->stop_after && s->n == s->stop_after ? 7 : 0;
}

static void parse_all(const char *in, size_t len, size_t max, seen_t *s, int *truncated) {
    tg_sse_parser_t p;
    tg_sse_init(&p, max);
    assert_int_equal(tg_sse_feed(&p, in, len, collect, s), 0);
    if (truncated) *truncated = tg_sse_truncated(&p);
    tg_sse_free(&p);
}

static const char OPENAI[] = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
                             ": keep-alive\n\n"
                             "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
                             "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"
                             "data: [DONE]\n\n";
static const char OPENAI_WANT[] = "|{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n"
                                  "|{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n"
                                  "|{\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n"
                                  "|[DONE]\n";

static void test_openai_stream(void **state) {
    seen_t s = {0};
    int tr;
    parse_all(OPENAI, sizeof(OPENAI) - 1, 4096, &s, &tr);
    assert_string_equal(s.out, OPENAI_WANT);
    assert_false(tr);
}

static void test_anthropic_stream(void **state) {
    const char in[] = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":"
                      "{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
                      "event: ping\ndata: {\"type\": \"ping\"}\n\n"
                      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                      "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
                      "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    seen_t s = {0};
    parse_all(in, sizeof(in) - 1, 4096, &s, NULL);
    assert_string_equal(s.out, "message_start|{\"type\":\"message_start\",\"message\":{\"usage\":"
                               "{\"input_tokens\":25,\"output_tokens\":1}}}\n"
                               "ping|{\"type\": \"ping\"}\n"
                               "content_block_delta|{\"type\":\"content_block_delta\",\"index\":0,"
                               "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n"
                               "message_stop|{\"type\":\"message_stop\"}\n");
}

/* Feeds `in` cut at every pair of points (three reads), so every byte
 * boundary is tried including between CR and LF, and compares the events. */
static void every_split(const char *in, size_t len, const char *want) {
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            seen_t s = {0};
            tg_sse_parser_t p;
            tg_sse_init(&p, 4096);
            assert_int_equal(tg_sse_feed(&p, in, a, collect, &s), 0);
            assert_int_equal(tg_sse_feed(&p, in + a, b - a, collect, &s), 0);
            assert_int_equal(tg_sse_feed(&p, in + b, len - b, collect, &s), 0);
            if (strcmp(s.out, want) != 0) fail_msg("split at %zu,%zu gave:\n%s", a, b, s.out);
            assert_false(tg_sse_truncated(&p));
            tg_sse_free(&p);
        }
    }
}

static void test_every_split_point(void **state) {
    every_split(OPENAI, sizeof(OPENAI) - 1, OPENAI_WANT);
    const char crlf[] = "event: a\r\ndata: x\r\ndata:y\r\n\r\n: c\r\n\r\ndata: [DONE]\r\n\r\n";
    every_split(crlf, sizeof(crlf) - 1, "a|x\ny\n|[DONE]\n");
    const char cr[] = "event: a\rdata: x\rdata:y\r\r: c\r\rdata: [DONE]\r\r";
    every_split(cr, sizeof(cr) - 1, "a|x\ny\n|[DONE]\n");
    const char mixed[] = "data: 1\r\n\ndata: 2\r\rdata: 3\n\r";
    every_split(mixed, sizeof(mixed) - 1, "|1\n|2\n|3\n");
}

static void test_fields(void **state) {
    /* One optional space is stripped; a second one is data. A line without
     * a colon is a field with an empty value; unknown fields are ignored;
     * an event without data lines is not dispatched, nor is its type kept. */
    const char in[] = "data:no-space\ndata:  two\n\n"
                      "event: lonely\nid: 5\n\n"
                      "data\n\n"
                      "retry: 100\nfoo: bar\ndata: after unknown\n\n"
                      "data: multi\ndata: line\ndata: data\n\n";
    seen_t s = {0};
    parse_all(in, sizeof(in) - 1, 4096, &s, NULL);
    assert_string_equal(s.out, "|no-space\n two\n"
                               "|\n"
                               "|after unknown\n"
                               "|multi\nline\ndata\n");
}

static void test_comments_only(void **state) {
    seen_t s = {0};
    int tr;
    const char in[] = ": hello\n:\n\n: ping\n\n";
    parse_all(in, sizeof(in) - 1, 4096, &s, &tr);
    assert_int_equal(s.n, 0);
    assert_false(tr);
}

static void test_truncated(void **state) {
    seen_t s = {0};
    int tr;
    const char *cases[] = {"data: {\"choices\":[{\"del", "data: whole line\n", "data: a\n\ndata: b\n",
                           "event: x\n", "data: a\r"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&s, 0, sizeof(s));
        parse_all(cases[i], strlen(cases[i]), 4096, &s, &tr);
        if (!tr) fail_msg("not seen as truncated: %s", cases[i]);
    }
    /* The complete event before the cut was still delivered. */
    memset(&s, 0, sizeof(s));
    parse_all("data: a\n\ndata: b\n", 17, 4096, &s, &tr);
    assert_string_equal(s.out, "|a\n");
    memset(&s, 0, sizeof(s));
    parse_all("data: a\n\n: trailing comment", 27, 4096, &s, &tr);
    assert_false(tr);
}

static void test_too_big(void **state) {
    tg_sse_parser_t p;
    seen_t s = {0};
    char big[300];
    memset(big, 'x', sizeof(big));
    /* A single line longer than the bound, arriving in pieces. */
    tg_sse_init(&p, 256);
    assert_int_equal(tg_sse_feed(&p, "data: ", 6, collect, &s), 0);
    assert_int_equal(tg_sse_feed(&p, big, 200, collect, &s), 0);
    assert_int_equal(tg_sse_feed(&p, big, 100, collect, &s), TG_SSE_ETOOBIG);
    /* The parser stays failed rather than resynchronising mid-event. */
    assert_int_equal(tg_sse_feed(&p, "\n\ndata: ok\n\n", 12, collect, &s), TG_SSE_ETOOBIG);
    assert_int_equal(s.n, 0);
    tg_sse_free(&p);
    /* A long line is refused whether it comes in pieces (and must be
     * buffered) or in one read: the outcome does not depend on the cuts. */
    char line[310];
    line[0] = ':';
    memcpy(line + 1, big, 300);
    memcpy(line + 301, "\n\n", 2);
    tg_sse_init(&p, 256);
    assert_int_equal(tg_sse_feed(&p, line, 303, collect, &s), TG_SSE_ETOOBIG);
    tg_sse_free(&p);
    tg_sse_init(&p, 256);
    assert_int_equal(tg_sse_feed(&p, line, 200, collect, &s), 0);
    assert_int_equal(tg_sse_feed(&p, line + 200, 103, collect, &s), TG_SSE_ETOOBIG);
    tg_sse_free(&p);
    /* Many short data lines adding up past the bound. */
    tg_sse_init(&p, 256);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = tg_sse_feed(&p, "data: 0123456789\n", 17, collect, &s);
    assert_int_equal(rc, TG_SSE_ETOOBIG);
    tg_sse_free(&p);
    /* Events under the bound pass, however many. */
    tg_sse_init(&p, 256);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tg_sse_feed(&p, "data: 0123456789\n\n", 18, collect, &s), 0);
    assert_int_equal(s.n, 100);
    tg_sse_free(&p);
}

static void test_callback_stops(void **state) {
    seen_t s = {.stop_after = 2};
    tg_sse_parser_t p;
    tg_sse_init(&p, 4096);
    assert_int_equal(tg_sse_feed(&p, OPENAI, sizeof(OPENAI) - 1, collect, &s), 7);
    assert_int_equal(s.n, 2);
    tg_sse_free(&p);
}

static void test_long_event_name(void **state) {
    char in[200];
    int n = snprintf(in, sizeof(in), "event: %0100d\ndata: x\n\n", 0);
    seen_t s = {0};
    parse_all(in, (size_t)n, 4096, &s, NULL);
    assert_int_equal(strchr(s.out, '|') - s.out, 63);
}

static void test_format_roundtrip(void **state) {
    char buf[256];
    size_t n = tg_sse_format(buf, sizeof(buf), NULL, "[DONE]", 6);
    assert_string_equal(buf, "data: [DONE]\n\n");
    assert_int_equal(n, 14);
    n = tg_sse_format(buf, sizeof(buf), "message_start", "{\"a\":1}", 7);
    assert_string_equal(buf, "event: message_start\ndata: {\"a\":1}\n\n");
    /* Newlines in the data become data: lines and come back the same. */
    const char multi[] = "line1\nline2\r\nline3\n";
    n = tg_sse_format(buf, sizeof(buf), "x", multi, sizeof(multi) - 1);
    assert_string_equal(buf, "event: x\ndata: line1\ndata: line2\ndata: line3\ndata: \n\n");
    seen_t s = {0};
    parse_all(buf, n, 4096, &s, NULL);
    assert_string_equal(s.out, "x|line1\nline2\nline3\n\n");
    /* A newline in the event name cannot inject a field. */
    tg_sse_format(buf, sizeof(buf), "a\ndata: evil", "d", 1);
    assert_string_equal(buf, "event: a\ndata: d\n\n");
    /* Too small: the length needed, nothing written. */
    memset(buf, '#', sizeof(buf));
    n = tg_sse_format(buf, 5, NULL, "[DONE]", 6);
    assert_int_equal(n, 14);
    assert_int_equal(buf[0], '#');
    assert_int_equal(tg_sse_format(NULL, 0, "e", "", 0), strlen("event: e\ndata: \n\n"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_stream),     cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_every_split_point), cmocka_unit_test(test_fields),
        cmocka_unit_test(test_comments_only),     cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_too_big),           cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_long_event_name),   cmocka_unit_test(test_format_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
