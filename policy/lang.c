/* lang.c — guesses the language of a prompt from the Unicode scripts of its
 * letters: Han -> zh (ja when kana appear beside it), Hangul -> ko, Latin ->
 * en (other when accented letters say it is a European language other than
 * English), anything else -> other. It decodes UTF-8 by hand over a bounded
 * prefix, skips malformed bytes one at a time, allocates nothing and keeps
 * no state, so it is safe on any input and on any thread.
 * "Mostly" is decided by weight, not raw count: a CJK letter weighs four
 * Latin letters, about what each costs in tokens, so a Chinese question
 * around an English code identifier still reads as Chinese. */
#include "policy/lang.h"

/* Decodes one code point at s[0..n) (n >= 1). Returns its length, or 0 when
 * the bytes there are not a well-formed, shortest-form scalar value. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2, v = b & 0x1F, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3, v = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, v = b & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

typedef enum { S_NONE, S_HAN, S_KANA, S_HANGUL, S_LATIN, S_LATIN_EXT, S_OTHER } script_t;

static script_t cjk_script(uint32_t c) {
    if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0xF900 && c <= 0xFAFF) ||
        (c >= 0x20000 && c <= 0x323AF) || c == 0x3005 || c == 0x3007)
        return S_HAN;
    /* The Katakana block's middle dot U+30FB is punctuation. */
    if ((c >= 0x3041 && c <= 0x30FF && c != 0x30FB) || (c >= 0x31F0 && c <= 0x31FF) ||
        (c >= 0xFF66 && c <= 0xFF9D))
        return S_KANA;
    if ((c >= 0xAC00 && c <= 0xD7AF) || (c >= 0x1100 && c <= 0x11FF) || (c >= 0x3131 && c <= 0x318E) ||
        (c >= 0xA960 && c <= 0xA97F) || (c >= 0xD7B0 && c <= 0xD7FF))
        return S_HANGUL;
    return S_NONE;
}

static script_t script_of(uint32_t c) {
    if (c < 0x80) return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ? S_LATIN : S_NONE;
    if ((c >= 0xFF21 && c <= 0xFF3A) || (c >= 0xFF41 && c <= 0xFF5A)) return S_LATIN;
    if ((c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7) || (c >= 0x1E00 && c <= 0x1EFF))
        return S_LATIN_EXT;
    script_t s = cjk_script(c);
    if (s != S_NONE) return s;
    /* Alphabets from Greek to Ethiopic, Khmer and Mongolian: combining marks
     * (U+0300..036F) and symbol blocks lie outside these ranges. */
    if ((c >= 0x370 && c <= 0x10FF) || (c >= 0x1200 && c <= 0x1CFF)) return S_OTHER;
    return S_NONE;
}

void tg_lang_count(const char *utf8, size_t len, tg_lang_counts_t *out) {
    *out = (tg_lang_counts_t){0};
    if (utf8 == NULL) return;
    if (len > TG_LANG_SCAN_MAX) len = TG_LANG_SCAN_MAX;
    const unsigned char *s = (const unsigned char *)utf8;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_next(s + i, len - i, &cp);
        if (n == 0) {
            i++;
            continue;
        }
        switch (script_of(cp)) {
        case S_HAN:
            out->han++, out->cjk_bytes += (uint32_t)n;
            break;
        case S_KANA:
            out->kana++, out->cjk_bytes += (uint32_t)n;
            break;
        case S_HANGUL:
            out->hangul++, out->cjk_bytes += (uint32_t)n;
            break;
        case S_LATIN:
            out->latin++;
            break;
        case S_LATIN_EXT:
            out->latin_ext++;
            break;
        case S_OTHER:
            out->other++;
            break;
        case S_NONE:
            break;
        }
        i += n;
    }
    out->bytes = (uint32_t)len;
}

tg_lang_t tg_lang_decide(const tg_lang_counts_t *c) {
    uint64_t w_cjk = 4 * ((uint64_t)c->han + c->kana), w_ko = 4 * (uint64_t)c->hangul;
    uint64_t w_lat = (uint64_t)c->latin + c->latin_ext, w_oth = c->other;
    if (w_cjk + w_ko + w_lat + w_oth == 0) return TG_LANG_OTHER;
    /* Ties go to the first in this order: the CJK scripts are the ones rules
     * route on, and a tie is rare outside very short texts. */
    if (w_cjk >= w_ko && w_cjk >= w_lat && w_cjk >= w_oth) {
        /* Japanese mixes kana into kanji text (a headline can be 1 kana in
         * 10); Chinese meets a stray の far more rarely than 1 in 20. */
        return c->kana > 0 && (uint64_t)c->kana * 20 >= c->han ? TG_LANG_JA : TG_LANG_ZH;
    }
    if (w_ko >= w_lat && w_ko >= w_oth) return TG_LANG_KO;
    if (w_lat >= w_oth) {
        /* English has next to no accented letters; French, German, Spanish
         * or Vietnamese have several in every sentence. */
        return c->latin_ext >= 2 && (uint64_t)c->latin_ext * 50 >= w_lat ? TG_LANG_OTHER : TG_LANG_EN;
    }
    return TG_LANG_OTHER;
}

tg_lang_t tg_lang_detect(const char *utf8, size_t len) {
    tg_lang_counts_t c;
    tg_lang_count(utf8, len, &c);
    return tg_lang_decide(&c);
}

static const char *const names[] = {[TG_LANG_OTHER] = "other",
                                    [TG_LANG_ZH] = "zh",
                                    [TG_LANG_JA] = "ja",
                                    [TG_LANG_KO] = "ko",
                                    [TG_LANG_EN] = "en"};

const char *tg_lang_name(tg_lang_t l) {
    return (unsigned)l < sizeof(names) / sizeof(names[0]) ? names[l] : "other";
}
