/* json.h — the one JSON string escaper for text we write by hand (log lines,
 * ledger journal lines, reports, the model name spliced into a request);
 * jansson escapes what it builds itself. The rule: '"' and '\\' take a
 * backslash, bytes below 0x20 become \u00xx (lowercase hex), every other
 * byte (UTF-8 included) is kept as it is. Inline: small, used on hot paths,
 * and it lets every module link without another object file. */
#ifndef TG_JSON_H
#define TG_JSON_H

#include <stddef.h>

/* Longest escape of one byte: \u00xx. */
#define TG_JSON_ESCAPE_MAX 6

/* Writes the escape of byte c to out; returns its length (1, 2 or 6). */
static inline size_t tg_json_escape_char(unsigned char c, char out[TG_JSON_ESCAPE_MAX]) {
    static const char hex[] = "0123456789abcdef";
    if (c == '"' || c == '\\') {
        out[0] = '\\';
        out[1] = (char)c;
        return 2;
    }
    if (c < 0x20) {
        out[0] = '\\', out[1] = 'u', out[2] = '0', out[3] = '0';
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        return 6;
    }
    out[0] = (char)c;
    return 1;
}

/* Bytes the escape of s[0..n) takes (no quotes, no NUL). */
static inline size_t tg_json_escaped_len(const char *s, size_t n) {
    size_t need = 0;
    char e[TG_JSON_ESCAPE_MAX];
    for (size_t i = 0; i < n; i++)
        need += tg_json_escape_char((unsigned char)s[i], e);
    return need;
}

/* Writes the escape of s[0..n) to dst, whole escapes only and at most cap
 * bytes: a text too long is cut before the first byte whose escape does not
 * fit, never inside an escape. Returns the bytes written (no quotes, no NUL). */
static inline size_t tg_json_escape_to(char *dst, size_t cap, const char *s, size_t n) {
    size_t o = 0;
    char e[TG_JSON_ESCAPE_MAX];
    for (size_t i = 0; i < n; i++) {
        size_t k = tg_json_escape_char((unsigned char)s[i], e);
        if (o + k > cap) break;
        for (size_t j = 0; j < k; j++)
            dst[o + j] = e[j];
        o += k;
    }
    return o;
}

#endif
