/* test_report.c — spend report aggregation and rendering: dates, grouping by each dimension,
 * totals, exact micro-USD text, the JSON shape of gateway/report.h, CSV quoting, bad fields
 * skipped, and simulated usage (demo mode) kept apart from real spend in every rendering. */
/* clang-format off */
/* deps: gateway/report.c gateway/redis.c gateway/redis_cluster.c core/money.c core/config.c core/config_load.c core/config_schema.c core/config_listen.c core/config_yaml.c core/config_price.c core/pool.c core/log.c core/strbuf.c */
/* clang-format on */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/report.h"

/* 2026-03-15T10:00:00Z */
#define NOW_MS 1773568800000LL

static void add(tg_report_t *r, const char *day, const char *field, const char *val) {
    int64_t d;
    assert_int_equal(tg_report_parse_day(day, strlen(day), &d), 0);
    tg_report_add(r, d, field, strlen(field), val, strlen(val));
}

static void fill(tg_report_t *r) {
    add(r, "2026-03-01", "deepseek|deepseek-flash|team-a|requests", "2");
    add(r, "2026-03-01", "deepseek|deepseek-flash|team-a|input_tokens", "100");
    add(r, "2026-03-01", "deepseek|deepseek-flash|team-a|cached_input_tokens", "40");
    add(r, "2026-03-01", "deepseek|deepseek-flash|team-a|cost_micro_usd", "999999");
    add(r, "2026-03-02", "deepseek|deepseek-v4-pro|team-b|requests", "1");
    add(r, "2026-03-02", "deepseek|deepseek-v4-pro|team-b|cost_micro_usd", "2");
    add(r, "2026-03-02", "openai|gpt-4o|team-a|requests", "5");
    add(r, "2026-03-02", "openai|gpt-4o|team-a|output_tokens", "70");
    add(r, "2026-03-02", "openai|gpt-4o|team-a|reasoning_tokens", "7");
    add(r, "2026-03-02", "openai|gpt-4o|team-a|cost_micro_usd", "3000001");
}

static void test_days(void **state) {
    int64_t d;
    assert_int_equal(tg_report_parse_day("1970-01-01", 10, &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(tg_report_parse_day("2024-02-29", 10, &d), 0);
    char t[11];
    tg_report_day_text(d, t);
    assert_string_equal(t, "2024-02-29");
    assert_int_equal(tg_report_parse_day("2025-02-29", 10, &d), -1);
    assert_int_equal(tg_report_parse_day("2025-13-01", 10, &d), -1);
    assert_int_equal(tg_report_parse_day("2025-1-01", 9, &d), -1);
    assert_int_equal(tg_report_parse_day("2025/01/01", 10, &d), -1);
}

static void test_init_defaults_and_errors(void **state) {
    tg_report_t r;
    char err[128];
    assert_int_equal(tg_report_init(&r, NULL, 0, NULL, 0, NULL, 0, NOW_MS, err, sizeof(err)), 0);
    char f[11], t[11];
    tg_report_day_text(r.from_day, f);
    tg_report_day_text(r.to_day, t);
    assert_string_equal(f, "2026-03-01");
    assert_string_equal(t, "2026-03-15");
    assert_int_equal(r.by, TG_BY_PROVIDER);
    assert_int_equal(
        tg_report_init(&r, "2026-03-05", 10, "2026-03-04", 10, NULL, 0, NOW_MS, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "after"));
    assert_int_equal(tg_report_init(&r, NULL, 0, NULL, 0, "team", 4, NOW_MS, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "provider, model, key, day"));
    assert_int_equal(
        tg_report_init(&r, "2020-01-01", 10, "2026-01-01", 10, NULL, 0, NOW_MS, err, sizeof(err)), -1);
}

static void test_group_by_each(void **state) {
    char err[128];
    const char *by[] = {"provider", "model", "key", "day"};
    size_t want_rows[] = {2, 3, 2, 2};
    for (int i = 0; i < 4; i++) {
        tg_report_t r;
        assert_int_equal(tg_report_init(&r, "2026-03-01", 10, "2026-03-02", 10, by[i], strlen(by[i]), NOW_MS,
                                        err, sizeof(err)),
                         0);
        fill(&r);
        tg_report_finish(&r);
        assert_int_equal(r.n, want_rows[i]);
        assert_int_equal(r.total.requests, 8);
        assert_int_equal(r.total.cost_micro, 4000002);
        assert_int_equal(r.bad_fields, 0);
        if (i == 0) {
            /* highest spend first */
            assert_string_equal(r.rows[0].name, "openai");
            assert_int_equal(r.rows[1].s.cost_micro, 1000001);
            assert_int_equal(r.rows[1].s.requests, 3);
            assert_int_equal(r.rows[1].s.cached, 40);
        }
        if (i == 1) assert_string_equal(r.rows[2].name, "deepseek/deepseek-v4-pro");
        if (i == 3) {
            assert_string_equal(r.rows[0].name, "2026-03-01");
            assert_int_equal(r.rows[1].s.requests, 6);
        }
        tg_report_free(&r);
    }
}

static void test_json_shape(void **state) {
    tg_report_t r;
    char err[128];
    assert_int_equal(
        tg_report_init(&r, "2026-03-01", 10, "2026-03-02", 10, "key", 3, NOW_MS, err, sizeof(err)), 0);
    fill(&r);
    add(&r, "2026-03-02", "qwen|qwen-plus||requests", "1"); /* no key name */
    tg_report_finish(&r);
    char *s = tg_report_json(&r);
    json_error_t je;
    json_t *o = json_loads(s, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "from")), "2026-03-01");
    assert_string_equal(json_string_value(json_object_get(o, "to")), "2026-03-02");
    assert_string_equal(json_string_value(json_object_get(o, "by")), "key");
    json_t *rows = json_object_get(o, "rows");
    assert_int_equal(json_array_size(rows), 3);
    json_t *first = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(first, "key")), "team-a");
    const char *fields[] = {"requests", "input_tokens", "cached_input_tokens", "output_tokens",
                            "reasoning_tokens"};
    for (int i = 0; i < 5; i++)
        assert_true(json_is_integer(json_object_get(first, fields[i])));
    assert_int_equal(json_integer_value(json_object_get(first, "requests")), 7);
    json_t *total = json_object_get(o, "total");
    assert_int_equal(json_integer_value(json_object_get(total, "requests")), 9);
    /* printed from integers: exact six decimals in the text */
    assert_non_null(strstr(s, "\"cost_usd\":4.000002,\"cache_hits\":0,\"saved_usd\":0.000000}}"));
    assert_non_null(
        strstr(s, "\"key\":\"team-a\",\"requests\":7,\"input_tokens\":100,\"cached_input_tokens\":40,"
                  "\"output_tokens\":70,\"reasoning_tokens\":7,\"cost_usd\":4.000000,\"cache_hits\":0,"
                  "\"saved_usd\":0.000000}"));
    json_decref(o);
    free(s);
    tg_report_free(&r);
}

static void test_csv_and_table(void **state) {
    tg_report_t r;
    char err[128];
    assert_int_equal(
        tg_report_init(&r, "2026-03-01", 10, "2026-03-02", 10, "key", 3, NOW_MS, err, sizeof(err)), 0);
    add(&r, "2026-03-01", "openai|gpt-4o|a,\"b\"|requests", "1");
    add(&r, "2026-03-01", "openai|gpt-4o|a,\"b\"|cost_micro_usd", "1500000");
    tg_report_finish(&r);
    char *csv = tg_report_csv(&r);
    assert_string_equal(
        csv, "key,requests,input_tokens,cached_input_tokens,output_tokens,reasoning_tokens,cost_usd,"
             "cache_hits,saved_usd\n"
             "\"a,\"\"b\"\"\",1,0,0,0,0,1.500000,0,0.000000\n"
             "TOTAL,1,0,0,0,0,1.500000,0,0.000000\n");
    char *tab = tg_report_table(&r);
    assert_non_null(strstr(tab, "spend 2026-03-01 .. 2026-03-02 (UTC) by key"));
    assert_non_null(strstr(tab, "TOTAL"));
    assert_non_null(strstr(tab, "1.500000"));
    free(csv);
    free(tab);
    tg_report_free(&r);
}

static void test_bad_fields_skipped(void **state) {
    tg_report_t r;
    char err[128];
    assert_int_equal(tg_report_init(&r, NULL, 0, NULL, 0, NULL, 0, NOW_MS, err, sizeof(err)), 0);
    add(&r, "2026-03-01", "openai|requests", "1");
    add(&r, "2026-03-01", "openai|gpt-4o|k|bogus_metric", "1");
    add(&r, "2026-03-01", "openai|gpt-4o|k|requests", "1.5");
    add(&r, "2026-03-01", "openai|gpt|4o|k|requests", "2"); /* a bar in the model name is kept */
    assert_int_equal(r.bad_fields, 3);
    assert_int_equal(r.total.requests, 2);
    tg_report_free(&r);
}

static void add_sim(tg_report_t *r, const char *day, const char *field, const char *val) {
    int64_t d;
    assert_int_equal(tg_report_parse_day(day, strlen(day), &d), 0);
    tg_report_add_simulated(r, d, field, strlen(field), val, strlen(val));
}

/* Real and simulated usage of the same provider, model and key on the same day: two rows, two
 * totals, the real total exactly what the real fields add up to. */
static void test_simulated_apart(void **state) {
    tg_report_t r;
    char err[128];
    assert_int_equal(
        tg_report_init(&r, "2026-03-01", 10, "2026-03-02", 10, NULL, 0, NOW_MS, err, sizeof(err)), 0);
    fill(&r);
    add_sim(&r, "2026-03-01", "deepseek|deepseek-flash|team-a|requests", "7");
    add_sim(&r, "2026-03-01", "deepseek|deepseek-flash|team-a|input_tokens", "500");
    add_sim(&r, "2026-03-01", "deepseek|deepseek-flash|team-a|cost_micro_usd", "123456789");
    add_sim(&r, "2026-03-02", "qwen|qwen-plus|team-a|requests", "1");
    add_sim(&r, "2026-03-02", "qwen|qwen-plus|team-a|cost_micro_usd", "5");
    tg_report_finish(&r);
    /* real: deepseek 2+1 requests, openai 5; simulated: deepseek 7, qwen 1 */
    assert_int_equal(r.total.requests, 8);
    assert_int_equal(r.total.cost_micro, 999999 + 2 + 3000001);
    assert_int_equal(r.total.input, 100);
    assert_int_equal(r.sim_total.requests, 8);
    assert_int_equal(r.sim_total.cost_micro, 123456789 + 5);
    assert_int_equal(r.sim_total.input, 500);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.n_sim, 2);
    /* real rows first (by cost), then the simulated ones (by cost) */
    assert_string_equal(r.rows[0].name, "openai");
    assert_false(r.rows[0].simulated);
    assert_string_equal(r.rows[1].name, "deepseek");
    assert_false(r.rows[1].simulated);
    assert_int_equal(r.rows[1].s.requests, 3);
    assert_string_equal(r.rows[2].name, "deepseek");
    assert_true(r.rows[2].simulated);
    assert_int_equal(r.rows[2].s.requests, 7);
    assert_string_equal(r.rows[3].name, "qwen");
    assert_true(r.rows[3].simulated);

    char *s = tg_report_json(&r);
    json_t *o = json_loads(s, 0, NULL);
    assert_non_null(o);
    json_t *rows = json_object_get(o, "rows");
    assert_int_equal(json_array_size(rows), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "total"), "requests")), 8);
    json_t *sim = json_object_get(o, "simulated");
    assert_non_null(sim);
    assert_int_equal(json_array_size(json_object_get(sim, "rows")), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(sim, "rows"), 0), "provider")),
        "deepseek");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sim, "total"), "requests")), 8);
    assert_non_null(strstr(s, "\"total\":{\"requests\":8,\"input_tokens\":100,\"cached_input_tokens\":40,"
                              "\"output_tokens\":70,\"reasoning_tokens\":7,\"cost_usd\":4.000002,\"cache_"
                              "hits\":0,\"saved_usd\":0.000000}"));
    assert_non_null(strstr(s, "\"simulated\":{\"rows\":[{\"provider\":\"deepseek\",\"requests\":7,"));
    assert_non_null(strstr(s, "\"cost_usd\":123.456794,\"cache_hits\":0,\"saved_usd\":0.000000}}}"));
    json_decref(o);
    free(s);

    char *csv = tg_report_csv(&r);
    assert_string_equal(csv,
                        "provider,requests,input_tokens,cached_input_tokens,output_tokens,reasoning_tokens,"
                        "cost_usd,cache_hits,saved_usd\n"
                        "openai,5,0,0,70,7,3.000001,0,0.000000\n"
                        "deepseek,3,100,40,0,0,1.000001,0,0.000000\n"
                        "TOTAL,8,100,40,70,7,4.000002,0,0.000000\n"
                        "simulated:deepseek,7,500,0,0,0,123.456789,0,0.000000\n"
                        "simulated:qwen,1,0,0,0,0,0.000005,0,0.000000\n"
                        "SIMULATED_TOTAL,8,500,0,0,0,123.456794,0,0.000000\n");
    free(csv);

    char *tab = tg_report_table(&r);
    const char *total = strstr(tab, "\nTOTAL "), *simhead = strstr(tab, "\nsimulated ("),
               *simtot = strstr(tab, "\nSIMULATED ");
    assert_non_null(total);
    assert_non_null(simhead);
    assert_non_null(simtot);
    assert_true(total < simhead && simhead < simtot);
    assert_non_null(strstr(total, "4.000002"));
    assert_null(strstr(tab, "127.456796")); /* never a sum of both */
    assert_non_null(strstr(simtot, "123.456794"));
    free(tab);
    tg_report_free(&r);
}

/* Without simulated usage the shapes are the ones they always were: no "simulated" key, no
 * section. */
static void test_no_simulated_no_section(void **state) {
    tg_report_t r;
    char err[128];
    assert_int_equal(
        tg_report_init(&r, "2026-03-01", 10, "2026-03-02", 10, NULL, 0, NOW_MS, err, sizeof(err)), 0);
    fill(&r);
    tg_report_finish(&r);
    char *s = tg_report_json(&r), *csv = tg_report_csv(&r), *tab = tg_report_table(&r);
    assert_null(strstr(s, "simulated"));
    assert_null(strstr(csv, "SIMULATED"));
    assert_null(strstr(tab, "simulated"));
    free(s);
    free(csv);
    free(tab);
    tg_report_free(&r);
}

static void test_two_way_grouping(void **state) {
    tg_report_t r;
    char err[128];
    assert_int_equal(
        tg_report_init(&r, "2026-03-01", 10, "2026-03-02", 10, NULL, 0, NOW_MS, err, sizeof(err)), 0);
    r.by2 = TG_BY_DAY;
    fill(&r);
    tg_report_finish(&r);
    assert_int_equal(r.n, 3); /* deepseek x 2 days, openai x 1 day */
    assert_string_equal(r.rows[0].name, "deepseek");
    assert_string_equal(r.rows[0].name2, "2026-03-01");
    assert_string_equal(r.rows[1].name2, "2026-03-02");
    tg_report_free(&r);
}

/* Cache hits and the cost they saved are summed per row and in the total, and shown after
 * cost_usd in every rendering; they never add to the cost. */
static void test_cache_hits_and_saved(void **state) {
    tg_report_t r;
    char err[128];
    assert_int_equal(
        tg_report_init(&r, "2026-03-01", 10, "2026-03-02", 10, "provider", 8, NOW_MS, err, sizeof(err)), 0);
    add(&r, "2026-03-01", "deepseek|deepseek-flash|a|requests", "3");
    add(&r, "2026-03-01", "deepseek|deepseek-flash|a|cost_micro_usd", "1000");
    add(&r, "2026-03-01", "deepseek|deepseek-flash|a|cache_hits", "2");
    add(&r, "2026-03-02", "deepseek|deepseek-flash|b|cache_hits", "1");
    add(&r, "2026-03-01", "deepseek|deepseek-flash|a|saved_cost_micro_usd", "2000");
    add(&r, "2026-03-02", "deepseek|deepseek-flash|b|saved_cost_micro_usd", "1500001");
    tg_report_finish(&r);
    assert_int_equal(r.bad_fields, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.rows[0].s.cache_hits, 3);
    assert_int_equal(r.rows[0].s.saved_micro, 1502001);
    assert_int_equal(r.total.cost_micro, 1000);
    char *s = tg_report_json(&r);
    assert_non_null(strstr(s, "\"cost_usd\":0.001000,\"cache_hits\":3,\"saved_usd\":1.502001}"));
    char *csv = tg_report_csv(&r);
    assert_non_null(strstr(csv, "\ndeepseek,3,0,0,0,0,0.001000,3,1.502001\n"));
    char *tab = tg_report_table(&r);
    assert_non_null(strstr(tab, "cache_hits      saved_usd\n"));
    assert_non_null(strstr(tab, "0.001000          3       1.502001\n"));
    free(s);
    free(csv);
    free(tab);
    tg_report_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days),
        cmocka_unit_test(test_init_defaults_and_errors),
        cmocka_unit_test(test_group_by_each),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_csv_and_table),
        cmocka_unit_test(test_bad_fields_skipped),
        cmocka_unit_test(test_two_way_grouping),
        cmocka_unit_test(test_simulated_apart),
        cmocka_unit_test(test_no_simulated_no_section),
        cmocka_unit_test(test_cache_hits_and_saved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
