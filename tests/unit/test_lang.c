/* test_lang.c — language detection as a route's `language:` key sees it:
 * Chinese, Japanese (kana with kanji), Korean, English, other alphabets,
 * mixed text decided by what it mostly is, emoji and digits ignored, and
 * any bytes at all (truncated, overlong, random) handled without a crash
 * or a read past the length given. */
/* deps: policy/lang.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "policy/lang.h"

static tg_lang_t det(const char *s) {
    return tg_lang_detect(s, strlen(s));
}

static void test_single_scripts(void **state) {
    assert_int_equal(det("请用三句话解释一下什么是量子计算。"), TG_LANG_ZH);
    assert_int_equal(det("量子コンピュータとは何ですか？三文で説明してください。"), TG_LANG_JA);
    /* Katakana alone is Japanese, and so is kanji-heavy text with a little kana. */
    assert_int_equal(det("コンピュータ"), TG_LANG_JA);
    assert_int_equal(det("東京都知事選挙の結果発表"), TG_LANG_JA);
    assert_int_equal(det("양자 컴퓨팅이 무엇인지 세 문장으로 설명해 주세요."), TG_LANG_KO);
    assert_int_equal(det("Explain quantum computing in three sentences."), TG_LANG_EN);
    assert_int_equal(det("Объясни квантовые вычисления в трёх предложениях."), TG_LANG_OTHER);
    assert_int_equal(det("اشرح الحوسبة الكمومية"), TG_LANG_OTHER);
}

static void test_latin_languages(void **state) {
    /* Accents in nearly every sentence: a European language, not English. */
    assert_int_equal(det("Pourquoi le ciel est-il bleu ? Expliquez-moi ça en détail, s'il vous plaît."),
                     TG_LANG_OTHER);
    assert_int_equal(det("Ich möchte über die Straße gehen."), TG_LANG_OTHER);
    /* One borrowed word does not make English French. */
    assert_int_equal(det("Recommend a good café near the station for a long meeting with the whole team."),
                     TG_LANG_EN);
}

static void test_mixed(void **state) {
    /* A Chinese question around English identifiers is Chinese. */
    assert_int_equal(det("请帮我把这段 Python 代码改成 async 版本，并解释 event loop 的作用"), TG_LANG_ZH);
    /* English with one Chinese word quoted is English. */
    assert_int_equal(det("What does the word 你好 mean and how do I pronounce it correctly in Mandarin?"),
                     TG_LANG_EN);
    /* Korean with a hanja term stays Korean. */
    assert_int_equal(det("대한민국(大韓民國)의 수도는 어디입니까?"), TG_LANG_KO);
    /* A long Chinese text with one stray の stays Chinese. */
    assert_int_equal(det("这是我们公司新推出的の产品系列，请为它写一段适合社交媒体发布的中文宣传文案"),
                     TG_LANG_ZH);
}

static void test_no_letters(void **state) {
    assert_int_equal(det(""), TG_LANG_OTHER);
    assert_int_equal(det("12345 + 678 = ?"), TG_LANG_OTHER);
    assert_int_equal(det("😀🎉👍🏽 ❤️ 🇨🇳"), TG_LANG_OTHER);
    /* Emoji and CJK punctuation do not count; the letters decide. */
    assert_int_equal(det("🎉🎉🎉🎉🎉🎉 你好！！！"), TG_LANG_ZH);
    assert_int_equal(det("👍👍👍 ok 。。。"), TG_LANG_EN);
    assert_int_equal(tg_lang_detect(NULL, 0), TG_LANG_OTHER);
}

static void test_counts(void **state) {
    tg_lang_counts_t c;
    const char *s = "漢字かなカナ한글abcé12!";
    tg_lang_count(s, strlen(s), &c);
    assert_int_equal(c.han, 2);
    assert_int_equal(c.kana, 4);
    assert_int_equal(c.hangul, 2);
    assert_int_equal(c.latin, 3);
    assert_int_equal(c.latin_ext, 1);
    assert_int_equal(c.cjk_bytes, 8 * 3);
    assert_int_equal(c.bytes, strlen(s));
}

static void test_bounded_prefix(void **state) {
    /* English first, Chinese after the scan limit: only the prefix counts. */
    size_t n = TG_LANG_SCAN_MAX + 3000;
    char *s = malloc(n);
    memset(s, 'a', TG_LANG_SCAN_MAX);
    for (size_t i = TG_LANG_SCAN_MAX; i + 3 <= n; i += 3)
        memcpy(s + i, "中", 3);
    tg_lang_counts_t c;
    tg_lang_count(s, n, &c);
    assert_int_equal(c.bytes, TG_LANG_SCAN_MAX);
    assert_int_equal(c.han, 0);
    assert_int_equal(tg_lang_detect(s, n), TG_LANG_EN);
    free(s);
}

static void test_invalid_utf8(void **state) {
    /* Truncated, overlong, surrogate, out of range, lone continuation bytes:
     * skipped, and the valid letters around them still count. */
    static const unsigned char bad[] = {0xE4, 0xB8, 'a',  0xC0, 0xAF, 0xED, 0xA0, 0x80, 0xF4, 0x90, 0x80,
                                        0x80, 0x80, 0xBF, 0xFF, 0xFE, 0xE4, 0xB8, 0xAD, 'b',  0xF0, 0x9F};
    tg_lang_counts_t c;
    tg_lang_count((const char *)bad, sizeof(bad), &c);
    assert_int_equal(c.latin, 2);
    assert_int_equal(c.han, 1);
    /* A multi-byte letter cut by the length given is not read past it. */
    const char *zh = "中文";
    assert_int_equal(tg_lang_detect(zh, 4), TG_LANG_ZH);
    tg_lang_count(zh, 5, &c);
    assert_int_equal(c.han, 1);
}

static void test_random_bytes(void **state) {
    /* Exact-size heap buffers so ASan sees any read past the end. */
    srand(4242);
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand() % 300);
        unsigned char *b = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)rand();
        tg_lang_t l = tg_lang_detect((const char *)b, n);
        assert_true(l >= TG_LANG_OTHER && l <= TG_LANG_EN);
        free(b);
    }
}

static void test_names(void **state) {
    assert_string_equal(tg_lang_name(TG_LANG_ZH), "zh");
    assert_string_equal(tg_lang_name(TG_LANG_JA), "ja");
    assert_string_equal(tg_lang_name(TG_LANG_KO), "ko");
    assert_string_equal(tg_lang_name(TG_LANG_EN), "en");
    assert_string_equal(tg_lang_name(TG_LANG_OTHER), "other");
    assert_string_equal(tg_lang_name((tg_lang_t)99), "other");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_scripts), cmocka_unit_test(test_latin_languages),
        cmocka_unit_test(test_mixed),          cmocka_unit_test(test_no_letters),
        cmocka_unit_test(test_counts),         cmocka_unit_test(test_bounded_prefix),
        cmocka_unit_test(test_invalid_utf8),   cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
