/* test_price.c — what the cheapest strategy and explain believe a request
 * costs: prompt tokens estimated by script (Chinese about a token a
 * character, English about four bytes a token, the user text's mix scaled
 * to all the request's text), expected output from max_tokens, and the
 * price of the UTC window in force — DeepSeek peak vs off-peak, a window
 * across midnight, cached input. */
/* deps: policy/price.c policy/lang.c core/money.c core/config_price.c core/pool.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/money.h"
#include "policy/price.h"

#define HOUR (3600 * 1000LL)
#define DAY0 (20000 * 24 * HOUR) /* a UTC midnight */

static tg_scan_req_t req(const char *user, size_t text_bytes, size_t n_messages, int64_t max_tokens) {
    tg_scan_req_t s = {0};
    s.user_text = user;
    s.user_text_len = strlen(user);
    s.text_bytes = text_bytes ? text_bytes : strlen(user);
    s.n_messages = n_messages;
    s.max_tokens = max_tokens;
    return s;
}

static void test_prompt_estimate_by_script(void **state) {
    /* 40 ASCII bytes: 10 tokens, plus 4 per message. */
    tg_scan_req_t en = req("Explain quantum computing in three words", 0, 1, -1);
    assert_int_equal(tg_price_estimate_prompt(&en), 10 + 4);
    /* 12 Chinese characters (36 bytes): 12 tokens, not 9. */
    tg_scan_req_t zh = req("请解释一下什么是量子计算呢", 0, 1, -1);
    assert_int_equal(strlen(zh.user_text), 39);
    assert_int_equal(tg_price_estimate_prompt(&zh), 13 + 4);
    /* Half the bytes Chinese: 6 tokens of CJK + 18 bytes / 4 of the rest. */
    tg_scan_req_t mix = req("量子计算是什么 what is quantum", 0, 2, -1);
    assert_int_equal(tg_price_estimate_prompt(&mix), 7 + 4 + 8);
}

static void test_prompt_estimate_scales(void **state) {
    /* A 3,000-byte system prompt beside a short Chinese user text: the
     * user text's mix stands for all 3,030 bytes. */
    tg_scan_req_t s = req("量子计算是什么量子计算是什么", 3042, 2, -1);
    assert_int_equal(tg_price_estimate_prompt(&s), 1014 + 8);
    /* No user text at all (only a system message): bytes / 4. */
    tg_scan_req_t none = req("", 400, 1, -1);
    assert_int_equal(tg_price_estimate_prompt(&none), 100 + 4);
}

static void test_output_estimate(void **state) {
    tg_scan_req_t a = req("hi", 0, 1, 1000), b = req("hi", 0, 1, -1), c = req("hi", 0, 1, 0);
    assert_int_equal(tg_price_estimate_output(&a), 1000);
    assert_int_equal(tg_price_estimate_output(&b), TG_PRICE_DEFAULT_OUTPUT);
    assert_int_equal(tg_price_estimate_output(&c), TG_PRICE_DEFAULT_OUTPUT);
    /* routing.default_output_tokens replaces the built-in default only. */
    assert_int_equal(tg_price_estimate_output_def(&a, 64), 1000);
    assert_int_equal(tg_price_estimate_output_def(&b, 64), 64);
    assert_int_equal(tg_price_estimate_output_def(&b, 0), TG_PRICE_DEFAULT_OUTPUT);
}

/* DeepSeek V4-Flash since 2026-08-16: peak 01:00-04:00 and 06:00-10:00 UTC
 * at 0.30 / 0.006 / 1.20, off-peak half that. */
static tg_price_window_t ds_windows[] = {
    {60, 240, 300000, 6000, 1200000},
    {360, 600, 300000, 6000, 1200000},
};
static const tg_price_t deepseek = {.id = "deepseek/deepseek-flash",
                                    .input = 150000,
                                    .cached_input = 3000,
                                    .output = 600000,
                                    .windows = ds_windows,
                                    .n_windows = 2};
static const tg_price_t qwen = {
    .id = "qwen/qwen-plus", .input = 400000, .cached_input = -1, .output = 1200000};

static void test_deepseek_peak_and_off_peak(void **state) {
    /* 1,000 prompt tokens, 256 output. */
    int64_t off = tg_price_cost_micro(&deepseek, 1000, 0, 256, DAY0 + 12 * HOUR);
    int64_t peak = tg_price_cost_micro(&deepseek, 1000, 0, 256, DAY0 + 7 * HOUR + 30 * 60000);
    assert_int_equal(off, 150 + 154);  /* 1000 x 0.15 + 256 x 0.60 = 303.6 micro-USD */
    assert_int_equal(peak, 300 + 307); /* 1000 x 0.30 + 256 x 1.20 = 607.2 */
    /* The window end is exclusive: 10:00 is off-peak again, 09:59 is not. */
    assert_int_equal(tg_price_cost_micro(&deepseek, 1000, 0, 256, DAY0 + 10 * HOUR), off);
    assert_int_equal(tg_price_cost_micro(&deepseek, 1000, 0, 256, DAY0 + 10 * HOUR - 60000), peak);
    /* Against a flat 0.20 / 0.90 model: DeepSeek is cheaper off-peak, dearer at peak. */
    const tg_price_t mid = {.input = 200000, .cached_input = 100000, .output = 900000};
    int64_t q = tg_price_cost_pusd(&mid, 1000, 0, 256, DAY0);
    assert_true(tg_price_cost_pusd(&deepseek, 1000, 0, 256, DAY0 + 12 * HOUR) < q);
    assert_true(tg_price_cost_pusd(&deepseek, 1000, 0, 256, DAY0 + 2 * HOUR) > q);
    assert_int_equal(tg_price_output_at(&deepseek, DAY0 + 2 * HOUR), 1200000);
    assert_int_equal(tg_price_output_at(&deepseek, DAY0 + 5 * HOUR), 600000);
}

static void test_window_across_midnight(void **state) {
    tg_price_window_t night[] = {{16 * 60 + 30, 30, 140000, 14000, 210000}};
    tg_price_t p = {
        .input = 280000, .cached_input = 28000, .output = 420000, .windows = night, .n_windows = 1};
    assert_int_equal(tg_price_output_at(&p, DAY0 + 23 * HOUR), 210000);
    assert_int_equal(tg_price_output_at(&p, DAY0 + 15 * 60000), 210000); /* 00:15 */
    assert_int_equal(tg_price_output_at(&p, DAY0 + 30 * 60000), 420000); /* 00:30 */
    assert_int_equal(tg_price_output_at(&p, DAY0 + 16 * HOUR), 420000);
}

static void test_cached_input(void **state) {
    /* 1,000,000 prompt tokens of which 800,000 cached: 0.2 x 0.15 + 0.8 x 0.003 USD. */
    assert_int_equal(tg_price_cost_micro(&deepseek, 1000000, 800000, 0, DAY0 + 12 * HOUR), 30000 + 2400);
    /* No cached rate: cache hits cost plain input. */
    assert_int_equal(tg_price_cost_micro(&qwen, 1000000, 800000, 0, DAY0), 400000);
    /* More cached than prompt is clamped. */
    assert_int_equal(tg_price_cost_micro(&deepseek, 10, 50, 0, DAY0 + 12 * HOUR), 0);
    assert_int_equal(tg_price_cost_pusd(&deepseek, 10, 50, 0, DAY0 + 12 * HOUR), 10 * 3000);
}

/* explain's estimate and the bill are one rule (core/money.c): the same
 * usage costs the same whichever asks, with the cached part held to the
 * prompt and a cache-write rate that an estimate never uses. */
static void test_estimate_is_the_bill(void **state) {
    const tg_price_t anthropic = {
        .input = 3000000, .cached_input = 300000, .output = 15000000, .cache_write = 3750000};
    const int64_t prompt[] = {0, 1, 999, 123457, 1000000}, cached[] = {0, 1, 500, 200000, 2000000};
    for (size_t i = 0; i < sizeof(prompt) / sizeof(prompt[0]); i++)
        for (size_t j = 0; j < sizeof(cached) / sizeof(cached[0]); j++) {
            tg_usage_t u = {
                .input_tokens = prompt[i], .cached_input_tokens = cached[j], .output_tokens = 333};
            assert_int_equal(tg_price_cost_micro(&anthropic, prompt[i], cached[j], 333, DAY0),
                             tg_money_micro(&anthropic, &u, DAY0));
            assert_int_equal(tg_price_cost_pusd(&anthropic, prompt[i], cached[j], 333, DAY0),
                             tg_money_pusd(&anthropic, &u, DAY0));
        }
    /* 1,000 prompt tokens, 400 cached, 100 out: 600 x 3 + 400 x 0.3 + 100 x 15 = 1800 + 120 + 1500
     * micro-USD (a price in USD per 1M tokens is micro-USD per token). */
    assert_int_equal(tg_price_cost_micro(&anthropic, 1000, 400, 100, DAY0), 3420);
}

static void test_unknown_price_and_minutes(void **state) {
    assert_int_equal(tg_price_cost_pusd(NULL, 10, 0, 10, 0), -1);
    assert_int_equal(tg_price_cost_micro(NULL, 10, 0, 10, 0), -1);
    assert_int_equal(tg_price_output_at(NULL, 0), -1);
    assert_int_equal(tg_price_minute(DAY0 + 13 * HOUR + 7 * 60000 + 59999), 13 * 60 + 7);
    assert_int_equal(tg_price_minute(-60000), 1439);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_estimate_by_script), cmocka_unit_test(test_prompt_estimate_scales),
        cmocka_unit_test(test_output_estimate),           cmocka_unit_test(test_deepseek_peak_and_off_peak),
        cmocka_unit_test(test_window_across_midnight),    cmocka_unit_test(test_cached_input),
        cmocka_unit_test(test_estimate_is_the_bill),      cmocka_unit_test(test_unknown_price_and_minutes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
