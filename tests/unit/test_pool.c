/* test_pool.c — the per-request arena: allocation alignment and growth, and
 * tg_pool_printf, whose fast path must print exactly what snprintf prints
 * for the conversions it handles and fall back for the others. */
/* deps: core/pool.c */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <cmocka.h>

#include "core/pool.h"

static void alloc_aligned_and_growing(void **state) {
    tg_pool_t *p = tg_pool_create(256);
    for (int i = 1; i < 2000; i += 37) {
        char *a = tg_pool_alloc(p, (size_t)i);
        assert_non_null(a);
        assert_int_equal((uintptr_t)a % 16, 0);
        memset(a, 0xab, (size_t)i);
    }
    char *big = tg_pool_calloc(p, 100000);
    assert_non_null(big);
    assert_int_equal(big[99999], 0);
    assert_string_equal(tg_pool_strndup(p, "abcdef", 3), "abc");
    tg_pool_destroy(p);
}

#define SAME(...)                                                                                            \
    do {                                                                                                     \
        char want[512];                                                                                      \
        snprintf(want, sizeof want, __VA_ARGS__);                                                            \
        assert_string_equal(tg_pool_printf(p, __VA_ARGS__), want);                                           \
    } while (0)

static void printf_matches_snprintf(void **state) {
    tg_pool_t *p = tg_pool_create(256);
    const char unterminated[4] = {'a', 'b', 'c', 'd'};
    SAME("plain text, no conversions");
    SAME("%s", "");
    SAME("x-tollgate-model: %s", "deepseek-flash");
    SAME("%s.%u", "0123456789abcdef", 3u);
    SAME("%.*s|%.*s|%.*s", 2, "hello", 0, "x", 3, unterminated);
    SAME("%.*s", -1, "negative precision prints all");
    SAME("%d %d %d %i", 0, -1, INT_MIN, INT_MAX);
    SAME("%u %u", 0u, UINT_MAX);
    SAME("%ld %lu %lld %llu", LONG_MIN, ULONG_MAX, LLONG_MIN, ULLONG_MAX);
    SAME("%zu %zd", (size_t)SIZE_MAX, (ssize_t)-42);
    SAME("%c%c 100%%", 'o', 'k');
    SAME("%" PRId64 " / %" PRIu64, INT64_MIN, UINT64_MAX);
    /* Fallbacks: flags, widths, floats, hex. */
    SAME("%5d|%-4s|%05.1f|%x|%.6g", 42, "ab", 3.14159, 255u, 0.000123);
    SAME("mixed %s then %08.3f then %s", "fast", 2.5, "slow");
    /* A long result spills into a new block. */
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(strlen(tg_pool_printf(p, "[%s]", big)), sizeof big + 1);
    tg_pool_destroy(p);
}

/* Results written in place at the end of a block, at every length around
 * the room left, interleaved with other allocations: none overlaps. */
static void printf_in_place_never_overlaps(void **state) {
    tg_pool_t *p = tg_pool_create(256);
    enum { N = 400 };
    char *got[N], want[N][96];
    unsigned char *other[N];
    char word[64];
    for (int i = 0; i < N; i++) {
        int wl = i % 60;
        memset(word, 'a' + i % 26, (size_t)wl);
        word[wl] = '\0';
        snprintf(want[i], sizeof want[i], "%d:%s|%u", i, word, (unsigned)(i * 7));
        got[i] = tg_pool_printf(p, "%d:%s|%u", i, word, (unsigned)(i * 7));
        assert_non_null(got[i]);
        assert_int_equal((uintptr_t)got[i] % 16, 0);
        other[i] = tg_pool_alloc(p, (size_t)(i % 5) * 8 + 1);
        memset(other[i], 0xee, (size_t)(i % 5) * 8 + 1);
    }
    for (int i = 0; i < N; i++)
        assert_string_equal(got[i], want[i]);
    tg_pool_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alloc_aligned_and_growing),
        cmocka_unit_test(printf_matches_snprintf),
        cmocka_unit_test(printf_in_place_never_overlaps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
