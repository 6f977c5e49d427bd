/* test_money.c — the billing rule of core/money.c as one table: usage x the
 * price in force at the request's start -> pico-USD and micro-USD. Every
 * expected figure below was worked out by hand from the rule (prices are
 * micro-USD per 1M tokens, so tokens x price is pico-USD; one rounding, half
 * up, at the end); the arithmetic sits beside each row. Also the text form
 * of money and the USD -> micro-USD conversion of budgets. */
/* deps: core/money.c core/config_price.c core/pool.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "core/money.h"

#define HOUR (3600 * 1000LL)
#define DAY0 (20000 * 24 * HOUR) /* a UTC midnight */
#define NOON (DAY0 + 12 * HOUR)
#define PEAK (DAY0 + 2 * HOUR)

/* 0.15 input, 0.003 cached, 0.1875 cache write, 0.60 output USD per 1M
 * tokens; 01:00-04:00 UTC doubles input, cached and output. */
static tg_price_window_t peak_window[] = {{60, 240, 300000, 6000, 1200000}};
static const tg_price_t base = {.id = "p/base",
                                .input = 150000,
                                .cached_input = 3000,
                                .output = 600000,
                                .cache_write = 187500,
                                .windows = peak_window,
                                .n_windows = 1};
/* A price whose cached and cache-write rates were never given. */
static const tg_price_t nocache = {
    .id = "p/nocache", .input = 400000, .cached_input = -1, .output = 1200000, .cache_write = -1};
/* Nothing but missing rates. */
static const tg_price_t empty = {
    .id = "p/empty", .input = -1, .cached_input = -1, .output = -1, .cache_write = -1};
/* One micro-USD per 1M tokens of anything: one token is one pico-USD. */
static const tg_price_t unit = {.id = "p/unit", .input = 1, .cached_input = 1, .output = 1, .cache_write = 1};
/* The dearest price the config accepts: 1e9 USD per 1M tokens. */
static const tg_price_t dearest = {.id = "p/dearest",
                                   .input = 1000000000000000LL,
                                   .cached_input = 1000000000000000LL,
                                   .output = 1000000000000000LL,
                                   .cache_write = 1000000000000000LL};

typedef struct {
    const char *name;
    const tg_price_t *price;
    int64_t ts_ms;
    int64_t in, cached, written, out, reasoning;
    int64_t pusd, micro;
} row_t;

#define M TG_COUNT_MAX

static const row_t rows[] = {
    /* 1000 x 150000 + 256 x 600000 = 150,000,000 + 153,600,000 = 303,600,000 pico -> 303.6 -> 304 */
    {"plain", &base, NOON, 1000, 0, 0, 256, 0, 303600000, 304},
    /* 200,000 x 150000 + 800,000 x 3000 = 30,000,000,000 + 2,400,000,000 */
    {"cached", &base, NOON, 1000000, 800000, 0, 0, 0, 32400000000LL, 32400},
    /* 5000 cached of a 1000-token prompt: 1000 x 3000 = 3,000,000 (15 micro-USD unclamped) */
    {"cached > input is held to the input", &base, NOON, 1000, 5000, 0, 0, 0, 3000000, 3},
    /* 2000 plain x 150000 + 5000 x 3000 + 3000 written x 187500 + 100 x 600000
     * = 300,000,000 + 15,000,000 + 562,500,000 + 60,000,000 = 937,500,000 -> 937.5 -> 938 */
    {"cache writes", &base, NOON, 10000, 5000, 3000, 100, 0, 937500000, 938},
    /* 900 written of the 400 not cached: 600 x 3000 + 400 x 187500 = 1,800,000 + 75,000,000 -> 76.8 -> 77 */
    {"cache writes held to the input not cached", &base, NOON, 1000, 600, 900, 0, 0, 76800000, 77},
    /* 200 of the 256 output tokens are reasoning: the bill is the plain row's */
    {"reasoning is a part of output", &base, NOON, 1000, 0, 0, 256, 200, 303600000, 304},
    /* 02:00 UTC: 1000 x 300000 + 256 x 1200000 = 300,000,000 + 307,200,000 -> 607.2 -> 607 */
    {"window price", &base, PEAK, 1000, 0, 0, 256, 0, 607200000, 607},
    /* 03:59 is inside the window, 04:00 is not */
    {"window last minute", &base, DAY0 + 4 * HOUR - 60000, 1000, 0, 0, 256, 0, 607200000, 607},
    {"window end is base price", &base, DAY0 + 4 * HOUR, 1000, 0, 0, 256, 0, 303600000, 304},
    /* windows leave the cache-write rate alone: 2000 x 300000 + 5000 x 6000 + 3000 x 187500
     * + 100 x 1200000 = 600,000,000 + 30,000,000 + 562,500,000 + 120,000,000 -> 1312.5 -> 1313 */
    {"window with cache writes", &base, PEAK, 10000, 5000, 3000, 100, 0, 1312500000, 1313},
    /* cached and written at the input rate: 1,000,000 x 400000 = 400,000,000,000 */
    {"missing cached rate is input", &nocache, NOON, 1000000, 800000, 0, 0, 0, 400000000000LL, 400000},
    /* 10000 x 400000 + 10 x 1200000 = 4,000,000,000 + 12,000,000 */
    {"missing cache-write rate is input", &nocache, NOON, 10000, 2000, 3000, 10, 0, 4012000000LL, 4012},
    {"missing input and output rates cost nothing", &empty, NOON, 1000, 100, 100, 1000, 0, 0, 0},
    /* 1e9 x 150000 = 1.5e14 pico: counts above TG_COUNT_MAX are held to it */
    {"huge input", &base, NOON, 5 * M, 0, 0, 0, 0, 150000000000000LL, 150000000},
    /* 1e9 x 150000 + 1e9 x 600000 = 7.5e14 */
    {"counts at TG_COUNT_MAX", &base, NOON, M, 0, 0, M, M, 750000000000000LL, 750000000},
    /* 1e9 x 1e15 twice = 2e24 pico, past int64: the micro-USD figure is still exact (2e18) */
    {"dearest price at TG_COUNT_MAX", &dearest, NOON, M, M / 2, M / 4, M, 0, INT64_MAX,
     2000000000000000000LL},
    {"negative counts are none", &base, NOON, -5, -1, -1, -7, -1, 0, 0},
    /* one token = one pico-USD: 499,999 rounds down, 500,000 up */
    {"rounds down below half", &unit, NOON, 499999, 0, 0, 0, 0, 499999, 0},
    {"rounds half up", &unit, NOON, 500000, 0, 0, 0, 0, 500000, 1},
    {"rounds 1.499999 down", &unit, NOON, 1499999, 0, 0, 0, 0, 1499999, 1},
    /* rounded once over the sum: 400,000 + 400,000 = 800,000 -> 1 (each part alone rounds to 0) */
    {"rounds the sum, not the parts", &unit, NOON, 400000, 0, 0, 400000, 0, 800000, 1},
    {"no price", NULL, NOON, 1000, 0, 0, 256, 0, -1, -1},
};

static void test_table(void **state) {
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row_t *r = &rows[i];
        tg_usage_t u = {.input_tokens = r->in,
                        .cached_input_tokens = r->cached,
                        .cache_write_tokens = r->written,
                        .output_tokens = r->out,
                        .reasoning_tokens = r->reasoning,
                        .present = 1};
        int64_t pusd = tg_money_pusd(r->price, &u, r->ts_ms), micro = tg_money_micro(r->price, &u, r->ts_ms);
        if (pusd != r->pusd || micro != r->micro)
            fail_msg("%s: got %lld pico / %lld micro, want %lld / %lld", r->name, (long long)pusd,
                     (long long)micro, (long long)r->pusd, (long long)r->micro);
        /* The rounding on its own agrees wherever the pico-USD figure fits. */
        if (pusd != INT64_MAX) assert_int_equal(tg_money_round(pusd), micro);
    }
}

static void test_rates_and_minute(void **state) {
    tg_money_rates_t r;
    assert_int_equal(tg_money_rates(&base, PEAK, &r), 0);
    assert_int_equal(r.input, 300000);
    assert_int_equal(r.cached_input, 6000);
    assert_int_equal(r.cache_write, 187500);
    assert_int_equal(r.output, 1200000);
    assert_int_equal(tg_money_rates(&nocache, NOON, &r), 0);
    assert_int_equal(r.cached_input, 400000);
    assert_int_equal(r.cache_write, 400000);
    assert_int_equal(tg_money_rates(NULL, NOON, &r), -1);
    assert_int_equal(tg_money_minute(DAY0 + 13 * HOUR + 7 * 60000 + 59999), 13 * 60 + 7);
    assert_int_equal(tg_money_minute(-60000), 1439);
}

static void test_round(void **state) {
    assert_int_equal(tg_money_round(0), 0);
    assert_int_equal(tg_money_round(499999), 0);
    assert_int_equal(tg_money_round(500000), 1);
    assert_int_equal(tg_money_round(2500000), 3);
    assert_int_equal(tg_money_round(-1), -1);
    /* 9,223,372,036,854,775,807 pico: .775807 of a micro-USD rounds up */
    assert_int_equal(tg_money_round(INT64_MAX), 9223372036855LL);
}

static void test_format(void **state) {
    char s[TG_MONEY_TEXT_MAX];
    assert_string_equal(tg_money_format(0, s), "0.000000");
    assert_string_equal(tg_money_format(1, s), "0.000001");
    assert_string_equal(tg_money_format(123, s), "0.000123");
    assert_string_equal(tg_money_format(1500000, s), "1.500000");
    assert_string_equal(tg_money_format(123456789012345LL, s), "123456789.012345");
    assert_string_equal(tg_money_format(-1500000, s), "-1.500000");
    assert_string_equal(tg_money_format(-1, s), "-0.000001");
    assert_string_equal(tg_money_format(INT64_MIN, s), "-9223372036854.775808");
}

static void test_from_usd(void **state) {
    assert_int_equal(tg_money_from_usd(2.5), 2500000);
    assert_int_equal(tg_money_from_usd(0.000001), 1);
    assert_int_equal(tg_money_from_usd(0.0000004), 0);
    assert_int_equal(tg_money_from_usd(0), 0);
    assert_int_equal(tg_money_from_usd(-3), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),  cmocka_unit_test(test_rates_and_minute), cmocka_unit_test(test_round),
        cmocka_unit_test(test_format), cmocka_unit_test(test_from_usd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
