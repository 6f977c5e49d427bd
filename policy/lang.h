/* lang.h — the language of a prompt from the Unicode scripts of its text
 * (no dictionaries, no allocation), for `language:` route matches and the
 * per-script prompt-token estimate. */
#ifndef TG_LANG_H
#define TG_LANG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { TG_LANG_OTHER, TG_LANG_ZH, TG_LANG_JA, TG_LANG_KO, TG_LANG_EN } tg_lang_t;

/* At most this many bytes of a text are read. */
#define TG_LANG_SCAN_MAX 4096

/* Letters per script in the scanned prefix; digits, punctuation, spaces,
 * symbols and emoji count in none. */
typedef struct {
    uint32_t han;       /* CJK ideographs (incl. extensions and 々 〇) */
    uint32_t kana;      /* Hiragana, Katakana, half-width Katakana */
    uint32_t hangul;    /* syllables and jamo */
    uint32_t latin;     /* ASCII letters, full-width Latin letters */
    uint32_t latin_ext; /* accented / extended Latin letters (é, ß, ơ...) */
    uint32_t other;     /* letters of other alphabets (Cyrillic, Greek, Arabic, Indic, Thai...) */
    uint32_t cjk_bytes; /* UTF-8 bytes of the Han, kana and Hangul letters */
    uint32_t bytes;     /* bytes scanned (at most TG_LANG_SCAN_MAX) */
} tg_lang_counts_t;

/* Counts the scripts of utf8[0..min(len, TG_LANG_SCAN_MAX)). Any bytes are
 * valid input: malformed sequences are skipped, nothing past len is read. */
void tg_lang_count(const char *utf8, size_t len, tg_lang_counts_t *out);
/* The language the counts say the text is mostly written in. */
tg_lang_t tg_lang_decide(const tg_lang_counts_t *c);
/* tg_lang_decide(tg_lang_count(utf8, len)). */
tg_lang_t tg_lang_detect(const char *utf8, size_t len);

/* "zh", "ja", "ko", "en", "other". */
const char *tg_lang_name(tg_lang_t l);

#endif
