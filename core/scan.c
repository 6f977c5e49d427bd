/* scan.c — one-pass scans of JSON request and answer bodies, and splicing. A strict tokenizer of
 * our own cuts a well-formed body into jsmn tokens in a stack array; when it gives up (an error, a
 * big or deep body) jsmn (strict, with parent links) does it, moving to a larger scratch array
 * (malloc'd, grown with realloc and freed before the scan returns, so a big body costs nothing once
 * scanned), and one iterative walk checks what jsmn leaves unchecked (commas, colons, number
 * grammar, nesting depth, UTF-8 and raw control bytes in strings, nothing after the value). A few
 * short walks then read the fields the gateway needs. Nothing here builds a DOM: decoded strings
 * come from the caller's pool. Edits (model, stream_options) leave as byte ranges for tg_splice().
 * One file on purpose: the fast tokenizer must cut a body exactly as jsmn does
 * (tests/fuzz/fuzz_tokens.c includes this file to compare the two), and the scans share jsmn's
 * static build and the small walk helpers they inline on the hot path. */
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "core/scan.h"
#include "core/json.h"
#include "core/usage.h"

#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define STACK_TOKS 256
/* After the stack array, jsmn runs in windows of this many tokens so that
 * nesting depth is checked often: jsmn's closing-bracket search walks up the
 * open containers, which costs O(depth^2) on deep input. */
#define TOK_WINDOW 256

typedef struct {
    const char *js;
    size_t len;
    jsmntok_t *t;
    int n;
    tg_pool_t *pool;
    jsmntok_t *heap; /* the grown token array, or NULL; freed by scan_done() */
    int strict;      /* strings must be UTF-8 without raw control bytes or lone surrogates */
    char *err;
    size_t errlen;
} scan_t;

static void scan_done(scan_t *s) {
    free(s->heap);
    s->heap = NULL;
}

__attribute__((format(printf, 2, 3))) static int fail(scan_t *s, const char *fmt, ...) {
    if (s->err != NULL && s->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->err, s->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int is_container(const jsmntok_t *t) {
    return t->type == JSMN_OBJECT || t->type == JSMN_ARRAY;
}

/* ---- tokenizing ---------------------------------------------------------- */

static int open_depth(const jsmn_parser *p, const jsmntok_t *t) {
    int d = 0;
    for (int i = p->toksuper; i >= 0 && d <= TG_SCAN_MAX_DEPTH; i = t[i].parent)
        if (is_container(&t[i])) d++;
    return d;
}

static int tokenize(scan_t *s, jsmntok_t *stack_toks) {
    jsmn_parser p;
    jsmntok_t *t = stack_toks;
    unsigned cap = STACK_TOKS, lim = STACK_TOKS;
    jsmn_init(&p);
    for (;;) {
        int r = jsmn_parse(&p, s->js, s->len, t, lim);
        if (r >= 0) {
            s->t = t;
            s->n = r;
            return 0;
        }
        if (r == JSMN_ERROR_PART) {
            /* jsmn stops at a NUL byte as at the end of the input. */
            const char *z = memchr(s->js, '\0', s->len);
            if (z != NULL) return fail(s, "raw NUL byte at byte %zu", (size_t)(z - s->js));
            return fail(s, "invalid JSON at byte %u (unexpected end)", p.pos);
        }
        if (r != JSMN_ERROR_NOMEM) return fail(s, "invalid JSON at byte %u", p.pos);
        if (open_depth(&p, t) > TG_SCAN_MAX_DEPTH) return fail(s, "JSON nested too deeply");
        if (lim == cap) {
            /* jsmn resumes where it stopped once given a larger array. The array is scratch: realloc
             * drops the old one (large ones move by remapping, not copying), and every token
             * starts at a byte of its own, so len + 1 tokens always suffice. Untouched pages of a
             * generous array cost no memory. */
            size_t max = s->len + 1, ncap = (size_t)cap * 4 < max ? (size_t)cap * 4 : max;
            if (ncap <= cap) return fail(s, "JSON too large to scan");
            jsmntok_t *nt = realloc(s->heap, ncap * sizeof(*nt));
            if (nt == NULL) return fail(s, "JSON too large to scan");
            if (s->heap == NULL) memcpy(nt, t, (size_t)p.toknext * sizeof(*nt));
            s->heap = t = nt;
            cap = (unsigned)ncap;
        }
        lim = p.toknext + TOK_WINDOW < cap ? p.toknext + TOK_WINDOW : cap;
    }
}

/* ---- validation: what strict jsmn lets through --------------------------- */

static int valid_number(const char *p, size_t n) {
    size_t i = 0;
    if (i < n && p[i] == '-') i++;
    if (i >= n) return 0;
    if (p[i] == '0')
        i++;
    else if (p[i] >= '1' && p[i] <= '9')
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    else
        return 0;
    if (i < n && p[i] == '.') {
        size_t d = ++i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == d) return 0;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        size_t d = i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == d) return 0;
    }
    return i == n;
}

static int valid_primitive(const char *p, size_t n) {
    switch (p[0]) {
    case 't':
        return n == 4 && memcmp(p, "true", 4) == 0;
    case 'f':
        return n == 5 && memcmp(p, "false", 5) == 0;
    case 'n':
        return n == 4 && memcmp(p, "null", 4) == 0;
    default:
        return valid_number(p, n);
    }
}

typedef struct {
    int tok;
    int items;      /* values seen (members, for an object) */
    int want_value; /* object: a key was read, its value is next */
} frame_t;

typedef struct {
    frame_t st[TG_SCAN_MAX_DEPTH];
    int depth;
    int seen_top;
    size_t cur; /* first byte not yet accounted for */
} walk_t;

static int is_ws(char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Accounts for the bytes between the previous token and position `to`:
 * closing brackets, then the separator the grammar wants before the next
 * token (when `more`), with only whitespace around them. */
static int gap(scan_t *s, walk_t *w, size_t to, int more) {
    const char *js = s->js;
    size_t i = w->cur;
    for (;;) {
        while (i < to && is_ws(js[i]))
            i++;
        if (i >= to || (js[i] != '}' && js[i] != ']')) break;
        if (w->depth == 0) return fail(s, "invalid JSON at byte %zu", i);
        frame_t *f = &w->st[w->depth - 1];
        const jsmntok_t *c = &s->t[f->tok];
        if (f->want_value || (size_t)c->end != i + 1 || js[i] != (c->type == JSMN_OBJECT ? '}' : ']'))
            return fail(s, "invalid JSON at byte %zu", i);
        w->depth--;
        i++;
    }
    if (more && w->depth == 0 && w->seen_top) return fail(s, "invalid JSON at byte %zu", i);
    if (more && w->depth > 0) {
        const frame_t *f = &w->st[w->depth - 1];
        char need = f->want_value ? ':' : f->items > 0 ? ',' : 0;
        if (need) {
            if (i >= to || js[i] != need) return fail(s, "invalid JSON at byte %zu", i);
            i++;
            while (i < to && is_ws(js[i]))
                i++;
        }
    }
    if (i != to) return fail(s, "invalid JSON at byte %zu", i);
    w->cur = to;
    return 0;
}

/* Why a string was refused: set by scan_string for validate() to word. */
typedef enum { S_BAD_JSON, S_CONTROL, S_UTF8, S_SURROGATE } str_why_t;

static size_t scan_string(const char *js, size_t len, size_t i, size_t *bad, str_why_t *why);

/* What jsmn lets through in a string: raw control bytes (RFC 8259 wants
 * U+0000..U+001F escaped), bytes that are not UTF-8, lone surrogate
 * escapes. The fast tokenizer runs the same scan_string(), so both paths
 * refuse the same strings. Only requests are held to this (s->strict):
 * answers are the provider's, relayed as sent, and a stream may well split
 * an emoji into two lone surrogate escapes; those are accepted by the jsmn
 * path once the fast one gives up. */
static int check_string(scan_t *s, const jsmntok_t *t) {
    size_t bad;
    str_why_t why;
    if (!s->strict) return 0;
    if (scan_string(s->js, s->len, (size_t)t->start, &bad, &why) == (size_t)t->end) return 0;
    switch (why) {
    case S_CONTROL:
        return fail(s, "raw control byte 0x%02x in a string at byte %zu (JSON needs it escaped)",
                    (unsigned char)s->js[bad], bad);
    case S_UTF8:
        return fail(s, "invalid UTF-8 at byte %zu", bad);
    case S_SURROGATE:
        return fail(s,
                    "lone surrogate escape '%.6s' at byte %zu (a \\uD800-\\uDBFF escape must be followed "
                    "by a \\uDC00-\\uDFFF one)",
                    s->js + bad, bad);
    default:
        return fail(s, "invalid JSON at byte %zu", bad);
    }
}

static int validate(scan_t *s) {
    walk_t w = {.depth = 0, .seen_top = 0, .cur = 0};
    for (int k = 0; k < s->n; k++) {
        const jsmntok_t *t = &s->t[k];
        size_t start = (size_t)t->start - (t->type == JSMN_STRING);
        if (gap(s, &w, start, 1) != 0) return -1;
        if (w.depth > 0) {
            frame_t *f = &w.st[w.depth - 1];
            if (s->t[f->tok].type == JSMN_OBJECT && !f->want_value) {
                if (t->type != JSMN_STRING) return fail(s, "invalid JSON at byte %zu", start);
                if (check_string(s, t) != 0) return -1;
                f->want_value = 1;
                w.cur = (size_t)t->end + 1;
                continue;
            }
            f->want_value = 0;
            f->items++;
        }
        w.seen_top = 1;
        if (t->type == JSMN_STRING) {
            if (check_string(s, t) != 0) return -1;
            w.cur = (size_t)t->end + 1;
        } else if (t->type == JSMN_PRIMITIVE) {
            if (!valid_primitive(s->js + t->start, (size_t)(t->end - t->start)))
                return fail(s, "invalid JSON at byte %zu", start);
            w.cur = (size_t)t->end;
        } else {
            if (w.depth == TG_SCAN_MAX_DEPTH) return fail(s, "JSON nested too deeply");
            w.st[w.depth++] = (frame_t){.tok = k, .items = 0, .want_value = 0};
            w.cur = start + 1;
        }
    }
    if (gap(s, &w, s->len, 0) != 0) return -1;
    if (!w.seen_top || w.depth != 0) return fail(s, "invalid JSON at byte %zu (unexpected end)", s->len);
    return 0;
}

/* ---- the fast path: a strict tokenizer for well-formed bodies ----------- */

/* jsmn steps through strings one byte at a time with several tests per byte
 * (callgrind: most of a request's scanning cost). This tokenizer produces
 * the very tokens jsmn would (same types, offsets, sizes and parent links)
 * for a well-formed body that fits the stack array and the depth limit, and
 * checks the whole grammar on the way, so validate() is not needed after it.
 * Anything else — an error, a control byte or bad UTF-8 in a string, a NUL,
 * a big or deep body — returns -1 with no message, and the jsmn path decides
 * (and words the error). tests/fuzz/fuzz_tokens.c checks the two agree. */
static long hex4(const char *p);

enum { C_PLAIN, C_QUOTE, C_BSLASH, C_STOP, C_HIGH };
static const unsigned char str_class[256] = {
    [0 ... 31] = C_STOP,
    ['"'] = C_QUOTE,
    ['\\'] = C_BSLASH,
    [0x80 ... 0xFF] = C_HIGH,
};

static int is_delim(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ']' || c == '}';
}

/* By lead byte: the length of a UTF-8 sequence and the range of its second
 * byte (narrower after E0, ED, F0 and F4: no overlong forms, no encoded
 * surrogates, nothing past U+10FFFF, as RFC 3629 wants). Length 0: not a
 * lead byte (a continuation byte, an overlong C0/C1 lead, F5 and above). */
static const struct {
    unsigned char len, lo, hi;
} utf8_lead[256] =
    {
        [0xC2 ... 0xDF] = {2, 0x80, 0xBF}, [0xE0] = {3, 0xA0, 0xBF},
        [0xE1 ... 0xEC] = {3, 0x80, 0xBF}, [0xED] = {3, 0x80, 0x9F},
        [0xEE ... 0xEF] = {3, 0x80, 0xBF}, [0xF0] = {4, 0x90, 0xBF},
        [0xF1 ... 0xF3] = {4, 0x80, 0xBF}, [0xF4] = {4, 0x80, 0x8F},
};

/* The length of the well-formed UTF-8 sequence at p (n bytes available,
 * p[0] >= 0x80), or 0. */
static inline size_t utf8_seq(const unsigned char *p, size_t n) {
    size_t l = utf8_lead[p[0]].len;
    if (l == 0 || n < l || p[1] < utf8_lead[p[0]].lo || p[1] > utf8_lead[p[0]].hi) return 0;
    if (l > 2 && (p[2] & 0xC0) != 0x80) return 0;
    if (l > 3 && (p[3] & 0xC0) != 0x80) return 0;
    return l;
}

/* Returns the index of the closing quote of the string whose content starts
 * at i, or 0 (never a closing quote's index) when the string is not valid
 * JSON text: a raw byte below 0x20, bytes that are not UTF-8, a bad escape,
 * a surrogate escape that is not half of a pair, or no closing quote. Then
 * *bad is the offending byte's offset and *why says what it is. */
static inline __attribute__((always_inline)) size_t scan_string(const char *js, size_t len, size_t i,
                                                                size_t *bad, str_why_t *why) {
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes a test: the first quote, backslash, control byte or
         * non-ASCII byte (the sign bits). */
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1f);
        while (i + 16 <= len) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(js + i));
            __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                       _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
            unsigned m = (unsigned)_mm_movemask_epi8(hit) | (unsigned)_mm_movemask_epi8(v);
            if (m != 0) {
                i += (size_t)__builtin_ctz(m);
                break;
            }
            i += 16;
        }
#endif
        while (i + 4 <= len && !(str_class[(unsigned char)js[i]] | str_class[(unsigned char)js[i + 1]] |
                                 str_class[(unsigned char)js[i + 2]] | str_class[(unsigned char)js[i + 3]]))
            i += 4;
        *bad = i;
        *why = S_BAD_JSON;
        if (i >= len) return 0;
        switch (str_class[(unsigned char)js[i]]) {
        case C_PLAIN:
            i++;
            break;
        case C_QUOTE:
            return i;
        case C_HIGH:
            /* A run of non-ASCII text (CJK, emoji) stays in these loops;
             * the first takes the three-byte sequences of most CJK text
             * (leads E1-EC, EE, EF: any continuation bytes) four bytes a
             * load. */
            while (i + 4 <= len) {
                uint32_t w;
                memcpy(&w, js + i, 4);
                unsigned lead = w & 0xFF;
                if (lead - 0xE1u > 0xEFu - 0xE1u || lead == 0xED || (w & 0xC0C000u) != 0x808000u) break;
                i += 3;
            }
            if (i >= len || !(js[i] & 0x80)) break;
            do {
                size_t l = utf8_seq((const unsigned char *)js + i, len - i);
                if (l == 0) {
                    *bad = i;
                    *why = S_UTF8;
                    return 0;
                }
                i += l;
            } while (i < len && (js[i] & 0x80));
            break;
        case C_BSLASH:
            if (i + 1 >= len) return 0;
            if (js[i + 1] == 'u') {
                long cp = i + 6 <= len ? hex4(js + i + 2) : -1;
                if (cp < 0) return 0;
                if (cp >= 0xD800 && cp <= 0xDFFF) {
                    /* A high surrogate must be followed by a low one. */
                    long lo = cp <= 0xDBFF && i + 12 <= len && js[i + 6] == '\\' && js[i + 7] == 'u'
                                  ? hex4(js + i + 8)
                                  : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        *why = S_SURROGATE;
                        return 0;
                    }
                    i += 6;
                }
                i += 6;
            } else if (js[i + 1] && strchr("\"/\\bfnrt", js[i + 1])) {
                i += 2;
            } else {
                return 0;
            }
            break;
        default:
            *why = S_CONTROL;
            return 0;
        }
    }
}

static jsmntok_t *fast_tok(jsmntok_t *t, int *n, int cap, jsmntype_t type, size_t start, int parent) {
    if (*n >= cap || start > INT_MAX) return NULL;
    jsmntok_t *k = &t[(*n)++];
    k->type = type;
    k->start = (int)start;
    k->end = -1;
    k->size = 0;
    k->parent = parent;
    if (parent >= 0) t[parent].size++;
    return k;
}

static int fast_tokenize(scan_t *s, jsmntok_t *t, int cap) {
    const char *js = s->js;
    size_t len = s->len, i = 0;
    int n = 0, depth = 0, stack[TG_SCAN_MAX_DEPTH];
    /* sup: jsmn's toksuper (the container, or the key whose value is next);
     * want: what the grammar allows next. */
    int sup = -1;
    enum { W_VALUE, W_KEY_OR_CLOSE, W_KEY, W_COLON, W_COMMA_OR_CLOSE, W_VALUE_OR_CLOSE } want = W_VALUE;
    for (;;) {
        while (i < len && is_ws(js[i]))
            i++;
        if (i >= len) return -1;
        char c = js[i];
        jsmntok_t *k;
        if (depth == 0 && c != '{') return -1; /* the top-level value is an object */
        if (want == W_COLON) {
            if (c != ':') return -1;
            want = W_VALUE;
            i++;
            continue;
        }
        if (want == W_COMMA_OR_CLOSE && c == ',') {
            sup = stack[depth - 1];
            want = t[sup].type == JSMN_OBJECT ? W_KEY : W_VALUE;
            i++;
            continue;
        }
        if ((c == '}' || c == ']') &&
            (want == W_COMMA_OR_CLOSE || want == W_KEY_OR_CLOSE || want == W_VALUE_OR_CLOSE)) {
            int open = stack[depth - 1];
            if (t[open].type != (c == '}' ? JSMN_OBJECT : JSMN_ARRAY)) return -1;
            t[open].end = (int)(i + 1);
            depth--;
            i++;
            if (depth == 0) {
                while (i < len && is_ws(js[i]))
                    i++;
                if (i != len) return -1;
                s->t = t;
                s->n = n;
                return 0;
            }
            sup = stack[depth - 1];
            want = W_COMMA_OR_CLOSE;
            continue;
        }
        int is_key = want == W_KEY || want == W_KEY_OR_CLOSE;
        if (want == W_COMMA_OR_CLOSE || (is_key && c != '"')) return -1;
        if (c == '"') {
            size_t bad, end;
            str_why_t why;
            end = scan_string(js, len, i + 1, &bad, &why);
            if (end == 0 || !(k = fast_tok(t, &n, cap, JSMN_STRING, i + 1, sup))) return -1;
            k->end = (int)end;
            i = end + 1;
            if (is_key) {
                sup = n - 1;
                want = W_COLON;
            } else {
                want = W_COMMA_OR_CLOSE;
            }
        } else if (c == '{' || c == '[') {
            if (depth == TG_SCAN_MAX_DEPTH) return -1;
            if (!(k = fast_tok(t, &n, cap, c == '{' ? JSMN_OBJECT : JSMN_ARRAY, i, sup))) return -1;
            stack[depth++] = n - 1;
            sup = n - 1;
            want = c == '{' ? W_KEY_OR_CLOSE : W_VALUE_OR_CLOSE;
            i++;
        } else {
            size_t e = i;
            while (e < len && !is_delim(js[e])) {
                if (js[e] < 32 || js[e] >= 127) return -1;
                e++;
            }
            if (e >= len || !valid_primitive(js + i, e - i)) return -1;
            if (!(k = fast_tok(t, &n, cap, JSMN_PRIMITIVE, i, sup))) return -1;
            k->end = (int)e;
            i = e;
            want = W_COMMA_OR_CLOSE;
        }
        if (want == W_COMMA_OR_CLOSE && depth > 0) sup = stack[depth - 1];
    }
}

/* Tokenizes and validates; the top-level value must be an object. */
static int parse(scan_t *s, jsmntok_t *stack_toks, const char *not_object) {
    size_t i = 0;
    while (i < s->len && is_ws(s->js[i]))
        i++;
    if (i == s->len || s->js[i] != '{') return fail(s, "%s", not_object);
    if (s->len > INT_MAX) return fail(s, "JSON too large to scan");
    if (fast_tokenize(s, stack_toks, STACK_TOKS) == 0) return 0;
    if (tokenize(s, stack_toks) != 0 || validate(s) != 0) return -1;
    return 0;
}

/* ---- walking tokens ------------------------------------------------------ */

/* Index of the first token after token i and everything inside it. */
static int after(const scan_t *s, int i) {
    if (!is_container(&s->t[i])) return i + 1;
    int end = s->t[i].end, k = i + 1;
    while (k < s->n && s->t[k].start < end)
        k++;
    return k;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static long hex4(const char *p) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t utf8_put(char *o, unsigned long cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes one escape at src[i] == '\\' into o; returns the bytes of input
 * it used, or 0 when it is not a valid escape. Lone surrogates (refused in
 * requests, let through in answers) become U+FFFD, as a browser's decoder
 * would make them. */
static size_t unescape(const char *src, size_t i, size_t n, char *o, size_t *olen) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (i + 1 >= n) return 0;
    const char *e = src[i + 1] ? strchr(from, src[i + 1]) : NULL;
    if (e != NULL) {
        o[0] = to[e - from];
        *olen = 1;
        return 2;
    }
    if (src[i + 1] != 'u' || i + 6 > n) return 0;
    long cp = hex4(src + i + 2);
    if (cp < 0) return 0;
    size_t used = 6;
    if (cp >= 0xD800 && cp <= 0xDBFF && i + 12 <= n && src[i + 6] == '\\' && src[i + 7] == 'u') {
        long lo = hex4(src + i + 8);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            used = 12;
        }
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
    *olen = utf8_put(o, (unsigned long)cp);
    return used;
}

/* Cuts w bytes of dst back to the last complete UTF-8 sequence. */
static size_t utf8_trim(const char *dst, size_t w) {
    size_t i = w;
    while (i > 0 && w - i < 4 && ((unsigned char)dst[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0) return w;
    unsigned char lead = (unsigned char)dst[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return (i - 1) + need > w ? i - 1 : w;
}

/* Decodes the JSON string body src[0..n). Returns its decoded length, or
 * -1 on a bad escape. The first decoded bytes go to dst, at most cap, cut
 * on a UTF-8 boundary; *wrote says how many (dst may be NULL if cap is 0). */
static long decode(const char *src, size_t n, char *dst, size_t cap, size_t *wrote) {
    size_t i = 0, out = 0, w = 0;
    int full = cap == 0;
    while (i < n) {
        const char *bs = memchr(src + i, '\\', n - i);
        size_t run = bs ? (size_t)(bs - (src + i)) : n - i;
        if (!full) {
            size_t c = run < cap - w ? run : cap - w;
            memcpy(dst + w, src + i, c);
            w += c;
            if (c < run) {
                full = 1;
                w = utf8_trim(dst, w);
            }
        }
        out += run;
        i += run;
        if (i == n) break;
        char u[4];
        size_t ulen, used = unescape(src, i, n, u, &ulen);
        if (used == 0) return -1;
        if (!full && w + ulen <= cap) {
            memcpy(dst + w, u, ulen);
            w += ulen;
        } else {
            full = 1;
        }
        out += ulen;
        i += used;
    }
    if (wrote) *wrote = w;
    return (long)out;
}

static const char *tok_ptr(const scan_t *s, int k) {
    return s->js + s->t[k].start;
}

static size_t tok_len(const scan_t *s, int k) {
    return (size_t)(s->t[k].end - s->t[k].start);
}

/* A member's name as the upstream's parser will see it: keys with escapes
 * are decoded, so "mod\u0065l" cannot hide a second model from us. */
#define KEY_MAX 32
static size_t key_name(const scan_t *s, int k, char *buf, const char **name) {
    const char *p = tok_ptr(s, k);
    size_t n = tok_len(s, k), w;
    *name = p;
    if (memchr(p, '\\', n) == NULL) return n;
    long full = decode(p, n, buf, KEY_MAX, &w);
    *name = buf;
    return full == (long)w ? w : KEY_MAX + 1;
}

#define IS(name, len, lit) ((len) == sizeof(lit) - 1 && memcmp((name), (lit), sizeof(lit) - 1) == 0)

static int is_null(const scan_t *s, int k) {
    return s->t[k].type == JSMN_PRIMITIVE && s->js[s->t[k].start] == 'n';
}

static int is_bool(const scan_t *s, int k) {
    char c = s->js[s->t[k].start];
    return s->t[k].type == JSMN_PRIMITIVE && (c == 't' || c == 'f');
}

/* A non-negative integer without fraction or exponent; -1 otherwise. */
static int64_t uint_value(const scan_t *s, int k) {
    if (s->t[k].type != JSMN_PRIMITIVE) return -1;
    const char *p = tok_ptr(s, k);
    size_t n = tok_len(s, k);
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        if (v > (INT64_MAX - (p[i] - '0')) / 10) return -1;
        v = v * 10 + (p[i] - '0');
    }
    return n > 0 ? v : -1;
}

/* Finds the value of member `name` in object obj (the last one wins, as in
 * the parsers upstream); -1 when absent. */
static int member(const scan_t *s, int obj, const char *name) {
    char buf[KEY_MAX];
    size_t nlen = strlen(name);
    int found = -1, k = obj + 1;
    for (int c = 0; c < s->t[obj].size; c++) {
        const char *kn;
        size_t kl = key_name(s, k, buf, &kn);
        if (kl == nlen && memcmp(kn, name, nlen) == 0) found = k + 1;
        k = after(s, k + 1);
    }
    return found;
}

/* ---- requests ------------------------------------------------------------ */

typedef struct {
    scan_t *s;
    tg_scan_req_t *out;
    char *user;    /* cap + 1 bytes from the pool */
    size_t cap;    /* TG_SCAN_TEXT_MAX, or the body's length when shorter (text never decodes longer) */
    int user_full; /* a piece was cut: later text must not follow it */
    int bare;      /* no messages expected (an embeddings body) */
} req_t;

/* Counts a text string; user text is also copied for language detection. */
static int add_text(req_t *r, int k, int is_user) {
    scan_t *s = r->s;
    tg_scan_req_t *o = r->out;
    size_t room = r->cap - o->user_text_len, w = 0;
    char *dst = r->user + o->user_text_len;
    if (!is_user || r->user_full) room = 0;
    /* Parts are joined with a newline so words do not run together. */
    int sep = is_user && o->user_text_len > 0 && room >= 2;
    if (sep) {
        dst++;
        room--;
    }
    long n = decode(tok_ptr(s, k), tok_len(s, k), room ? dst : NULL, room, &w);
    if (n < 0) return fail(s, "invalid string escape at byte %d", s->t[k].start);
    o->text_bytes += (size_t)n;
    if (room > 0 && w < (size_t)n) r->user_full = 1;
    if (w > 0) {
        if (sep) dst[-1] = '\n';
        o->user_text_len += w + (size_t)sep;
    }
    return 0;
}

/* Text inside an Anthropic tool_result: a string or text blocks. It counts
 * toward the prompt's size, not as user text. */
static int tool_result(req_t *r, int c) {
    scan_t *s = r->s;
    if (c < 0 || is_null(s, c)) return 0;
    if (s->t[c].type == JSMN_STRING) return add_text(r, c, 0);
    if (s->t[c].type != JSMN_ARRAY) return 0;
    for (int i = 0, e = c + 1; i < s->t[c].size; i++, e = after(s, e)) {
        int tx = s->t[e].type == JSMN_OBJECT ? member(s, e, "text") : -1;
        if (tx >= 0 && s->t[tx].type == JSMN_STRING && add_text(r, tx, 0) != 0) return -1;
    }
    return 0;
}

static int part(req_t *r, int k, size_t mi, size_t pi, int is_user) {
    scan_t *s = r->s;
    if (s->t[k].type != JSMN_OBJECT) return fail(s, "'messages[%zu].content[%zu]' must be an object", mi, pi);
    int ty = member(s, k, "type");
    if (ty < 0 || s->t[ty].type != JSMN_STRING)
        return fail(s, "'messages[%zu].content[%zu].type' must be a string", mi, pi);
    const char *tp = tok_ptr(s, ty);
    size_t tl = tok_len(s, ty);
    if (IS(tp, tl, "text")) {
        int tx = member(s, k, "text");
        if (tx < 0 || s->t[tx].type != JSMN_STRING)
            return fail(s, "'messages[%zu].content[%zu].text' must be a string", mi, pi);
        return add_text(r, tx, is_user);
    }
    if (IS(tp, tl, "image_url") || IS(tp, tl, "image") || IS(tp, tl, "input_image")) {
        r->out->has_images = 1;
        return 0;
    }
    if (IS(tp, tl, "tool_result")) return tool_result(r, member(s, k, "content"));
    return 0;
}

static int message(req_t *r, int k, size_t mi) {
    scan_t *s = r->s;
    if (s->t[k].type != JSMN_OBJECT) return fail(s, "'messages[%zu]' must be an object", mi);
    int role = member(s, k, "role");
    if (role < 0 || s->t[role].type != JSMN_STRING)
        return fail(s, "'messages[%zu].role' must be a string", mi);
    char rb[8];
    size_t rw = 0;
    long rl = decode(tok_ptr(s, role), tok_len(s, role), rb, sizeof(rb), &rw);
    int is_user = rl == 4 && memcmp(rb, "user", 4) == 0;
    int c = member(s, k, "content");
    if (c < 0 || is_null(s, c)) return 0;
    if (s->t[c].type == JSMN_STRING) return add_text(r, c, is_user);
    if (s->t[c].type != JSMN_ARRAY)
        return fail(s, "'messages[%zu].content' must be a string, an array or null", mi);
    for (int i = 0, e = c + 1; i < s->t[c].size; i++, e = after(s, e))
        if (part(r, e, mi, (size_t)i, is_user) != 0) return -1;
    return 0;
}

static int messages(req_t *r, int v) {
    scan_t *s = r->s;
    if (v < 0 || s->t[v].type != JSMN_ARRAY || s->t[v].size == 0)
        return fail(s, "'messages' must be a non-empty array");
    r->out->n_messages = (size_t)s->t[v].size;
    for (int i = 0, e = v + 1; i < s->t[v].size; i++, e = after(s, e))
        if (message(r, e, (size_t)i) != 0) return -1;
    return 0;
}

/* Anthropic's top-level system prompt: a string or text blocks. */
static int system_prompt(req_t *r, int v) {
    scan_t *s = r->s;
    if (v < 0 || is_null(s, v)) return 0;
    if (s->t[v].type == JSMN_STRING) return add_text(r, v, 0);
    if (s->t[v].type != JSMN_ARRAY) return fail(s, "'system' must be a string or an array");
    for (int i = 0, e = v + 1; i < s->t[v].size; i++, e = after(s, e)) {
        int tx = s->t[e].type == JSMN_OBJECT ? member(s, e, "text") : -1;
        if (tx >= 0 && s->t[tx].type == JSMN_STRING && add_text(r, tx, 0) != 0) return -1;
    }
    return 0;
}

static int model(req_t *r, int v) {
    scan_t *s = r->s;
    tg_scan_req_t *o = r->out;
    if (v < 0) return 0;
    if (s->t[v].type != JSMN_STRING) return fail(s, "'model' must be a string");
    size_t n = tok_len(s, v), w = 0;
    char *m = tg_pool_alloc(s->pool, n + 1);
    if (m == NULL) return fail(s, "out of memory");
    long full = decode(tok_ptr(s, v), n, m, n, &w);
    if (full < 0) return fail(s, "invalid string escape at byte %d", s->t[v].start);
    m[w] = '\0';
    if (memchr(m, '\0', w) != NULL) return fail(s, "'model' must not contain NUL characters");
    o->has_model = 1;
    o->model = (tg_span_t){(size_t)s->t[v].start, n};
    o->model_str = m;
    return 0;
}

static int stream_options(req_t *r, int v) {
    scan_t *s = r->s;
    tg_scan_req_t *o = r->out;
    if (v < 0) return 0;
    if (s->t[v].type != JSMN_OBJECT && !is_null(s, v)) return fail(s, "'stream_options' must be an object");
    o->has_stream_options = 1;
    o->stream_options = (tg_span_t){(size_t)s->t[v].start, tok_len(s, v)};
    if (is_null(s, v)) return 0;
    int iu = member(s, v, "include_usage");
    if (iu < 0) return 0;
    if (!is_bool(s, iu) && !is_null(s, iu))
        return fail(s, "'stream_options.include_usage' must be a boolean");
    o->has_include_usage = 1;
    o->include_usage = s->js[s->t[iu].start] == 't';
    o->include_usage_val = (tg_span_t){(size_t)s->t[iu].start, tok_len(s, iu)};
    return 0;
}

static int int_field(req_t *r, int v, const char *name, int64_t *dst) {
    if (v < 0 || is_null(r->s, v)) return 0;
    int64_t x = uint_value(r->s, v);
    if (x < 0) return fail(r->s, "'%s' must be a non-negative integer", name);
    *dst = x > TG_COUNT_MAX ? TG_COUNT_MAX : x; /* read for estimates only; the body keeps its value */
    return 0;
}

/* The top-level members the gateway reads, found in one pass. */
typedef struct {
    int model, stream, stream_options, max_tokens, max_completion_tokens, messages, tools, system;
    int n_model;
} top_t;

/* Top-level names that route or bill a request in the OpenAI Chat, Anthropic Messages and OpenAI
 * Responses shapes. Some upstream parsers match member names without regard to case (Go's
 * encoding/json folds ASCII case, U+017F to 's' and U+212A to 'k'), so a member that is one of
 * these names only up to case could be read by the upstream as the member we checked, or instead
 * of it: such a body is refused. */
static const char *const guarded[] = {
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "n",
    "input",
    "instructions",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "reasoning",
    "reasoning_effort",
    "previous_response_id",
};

/* Folds name[0..n) into out (cap bytes) by Unicode simple case folding, kept to what can fold
 * into ASCII: A-Z, U+017F (long s) and U+212A (Kelvin sign). Returns the folded length, or
 * cap + 1 when the name holds anything else outside ASCII (it cannot fold into an ASCII name). */
static size_t fold_ascii(const char *name, size_t n, char *out, size_t cap) {
    size_t w = 0;
    for (size_t i = 0; i < n; w++) {
        unsigned char c = (unsigned char)name[i];
        char f;
        if (c < 0x80) {
            f = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            i++;
        } else if (c == 0xC5 && i + 1 < n && (unsigned char)name[i + 1] == 0xBF) {
            f = 's';
            i += 2;
        } else if (c == 0xE2 && i + 2 < n && (unsigned char)name[i + 1] == 0x84 &&
                   (unsigned char)name[i + 2] == 0xAA) {
            f = 'k';
            i += 3;
        } else {
            return cap + 1;
        }
        if (w == cap) return cap + 1;
        out[w] = f;
    }
    return w;
}

static int find_top(scan_t *s, top_t *m) {
    static const struct {
        const char *name;
        size_t off;
    } keys[] = {
        {"model", offsetof(top_t, model)},
        {"stream", offsetof(top_t, stream)},
        {"stream_options", offsetof(top_t, stream_options)},
        {"max_tokens", offsetof(top_t, max_tokens)},
        {"max_completion_tokens", offsetof(top_t, max_completion_tokens)},
        {"messages", offsetof(top_t, messages)},
        {"tools", offsetof(top_t, tools)},
        {"system", offsetof(top_t, system)},
    };
    char buf[KEY_MAX], folded[KEY_MAX];
    *m = (top_t){-1, -1, -1, -1, -1, -1, -1, -1, 0};
    for (int c = 0, k = 1; c < s->t[0].size; c++, k = after(s, k + 1)) {
        const char *kn;
        size_t kl = key_name(s, k, buf, &kn), i;
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (kl == strlen(keys[i].name) && memcmp(kn, keys[i].name, kl) == 0) {
                *(int *)((char *)m + keys[i].off) = k + 1; /* the last one wins */
                if (i == 0) m->n_model++;
                break;
            }
        }
        if (i < sizeof(keys) / sizeof(keys[0]) || kl > KEY_MAX) continue;
        size_t fl = fold_ascii(kn, kl, folded, sizeof(folded));
        for (size_t g = 0; fl <= sizeof(folded) && g < sizeof(guarded) / sizeof(guarded[0]); g++)
            if (fl == strlen(guarded[g]) && memcmp(folded, guarded[g], fl) == 0 &&
                !(kl == fl && memcmp(kn, guarded[g], fl) == 0))
                return fail(s, "top-level key '%.*s' differs from '%s' only in letter case: send '%s'",
                            (int)kl, kn, guarded[g], guarded[g]);
    }
    return 0;
}

static int request_fields(req_t *r, const top_t *m) {
    scan_t *s = r->s;
    tg_scan_req_t *o = r->out;
    /* Two models would be read differently by us and by the upstream. */
    if (m->n_model > 1) return fail(s, "'model' must appear only once");
    if (model(r, m->model) != 0) return -1;
    if (m->stream >= 0 && !is_null(s, m->stream)) {
        if (!is_bool(s, m->stream)) return fail(s, "'stream' must be a boolean");
        o->stream = s->js[s->t[m->stream].start] == 't';
    }
    if (stream_options(r, m->stream_options) != 0) return -1;
    if (int_field(r, m->max_tokens, "max_tokens", &o->max_tokens) != 0) return -1;
    if (int_field(r, m->max_completion_tokens, "max_completion_tokens", &o->max_tokens) != 0) return -1;
    if (m->tools >= 0 && !is_null(s, m->tools)) {
        if (s->t[m->tools].type != JSMN_ARRAY) return fail(s, "'tools' must be an array");
        o->has_tools = s->t[m->tools].size > 0;
    }
    if (system_prompt(r, m->system) != 0) return -1;
    if (r->bare && m->messages < 0) return 0;
    return messages(r, m->messages);
}

static int scan_request(scan_t *s, tg_scan_req_t *out, int bare) {
    jsmntok_t toks[STACK_TOKS];
    if (parse(s, toks, "request body must be a JSON object") != 0) return -1;
    size_t cap = s->len < TG_SCAN_TEXT_MAX ? s->len : TG_SCAN_TEXT_MAX;
    char *user = tg_pool_alloc(s->pool, cap + 1);
    if (user == NULL) return fail(s, "out of memory");
    req_t r = {.s = s, .out = out, .user = user, .cap = cap, .bare = bare};
    top_t m;
    if (find_top(s, &m) != 0 || request_fields(&r, &m) != 0) return -1;
    user[out->user_text_len] = '\0';
    out->user_text = user;
    out->obj_end = (size_t)s->t[0].end - 1;
    out->obj_empty = s->t[0].size == 0;
    return 0;
}

static int scan_request_top(const char *body, size_t len, tg_pool_t *pool, tg_scan_req_t *out, char *err,
                            size_t errlen, int bare) {
    scan_t s = {.js = body, .len = len, .pool = pool, .err = err, .errlen = errlen, .strict = 1};
    memset(out, 0, sizeof(*out));
    out->max_tokens = -1;
    out->user_text = "";
    int rc = scan_request(&s, out, bare);
    scan_done(&s);
    return rc;
}

int tg_scan_request(const char *body, size_t len, tg_pool_t *pool, tg_scan_req_t *out, char *err,
                    size_t errlen) {
    return scan_request_top(body, len, pool, out, err, errlen, 0);
}

int tg_scan_request_bare(const char *body, size_t len, tg_pool_t *pool, tg_scan_req_t *out, char *err,
                         size_t errlen) {
    return scan_request_top(body, len, pool, out, err, errlen, 1);
}

/* ---- answers ------------------------------------------------------------- */

/* A provider's token count, held to TG_COUNT_MAX (usage.h); -1 when not one. */
static int64_t count_value(const scan_t *s, int k) {
    int64_t v = uint_value(s, k);
    return v > TG_COUNT_MAX ? TG_COUNT_MAX : v;
}

static void usage(const scan_t *s, int u, tg_scan_resp_t *o) {
    char buf[KEY_MAX];
    o->has_usage = 1;
    for (int c = 0, k = u + 1; c < s->t[u].size; c++, k = after(s, k + 1)) {
        const char *kn;
        size_t kl = key_name(s, k, buf, &kn);
        int v = k + 1;
        if (IS(kn, kl, "prompt_tokens"))
            o->prompt_tokens = count_value(s, v);
        else if (IS(kn, kl, "completion_tokens"))
            o->completion_tokens = count_value(s, v);
        else if (IS(kn, kl, "prompt_cache_hit_tokens"))
            o->cache_hit_tokens = count_value(s, v);
        else if (IS(kn, kl, "prompt_cache_miss_tokens"))
            o->cache_miss_tokens = count_value(s, v);
        else if (IS(kn, kl, "prompt_tokens_details") && s->t[v].type == JSMN_OBJECT) {
            int d = member(s, v, "cached_tokens");
            if (d >= 0) o->cached_tokens = count_value(s, d);
        } else if (IS(kn, kl, "completion_tokens_details") && s->t[v].type == JSMN_OBJECT) {
            int d = member(s, v, "reasoning_tokens");
            if (d >= 0) o->reasoning_tokens = count_value(s, d);
        }
    }
}

static size_t text_len(const scan_t *s, int v) {
    if (v < 0 || s->t[v].type != JSMN_STRING) return 0;
    long n = decode(tok_ptr(s, v), tok_len(s, v), NULL, 0, NULL);
    return n > 0 ? (size_t)n : 0;
}

/* message / delta: the text the model produced, for output estimates. */
static size_t produced(const scan_t *s, int m) {
    size_t n = text_len(s, member(s, m, "content")) + text_len(s, member(s, m, "reasoning_content")) +
               text_len(s, member(s, m, "reasoning"));
    int tc = member(s, m, "tool_calls");
    if (tc < 0 || s->t[tc].type != JSMN_ARRAY) return n;
    for (int i = 0, e = tc + 1; i < s->t[tc].size; i++, e = after(s, e)) {
        int f = s->t[e].type == JSMN_OBJECT ? member(s, e, "function") : -1;
        if (f >= 0 && s->t[f].type == JSMN_OBJECT) n += text_len(s, member(s, f, "arguments"));
    }
    return n;
}

/* Returns the index of a usage object found inside a choice (some vendors
 * put it there), or -1. */
static int choices(const scan_t *s, int v, tg_scan_resp_t *o) {
    int cu = -1;
    o->choices_empty = s->t[v].size == 0;
    for (int i = 0, e = v + 1; i < s->t[v].size; i++, e = after(s, e)) {
        if (s->t[e].type != JSMN_OBJECT) continue;
        char buf[KEY_MAX];
        for (int c = 0, k = e + 1; c < s->t[e].size; c++, k = after(s, k + 1)) {
            const char *kn;
            size_t kl = key_name(s, k, buf, &kn);
            int x = k + 1;
            if (IS(kn, kl, "finish_reason"))
                o->has_finish |= !is_null(s, x);
            else if ((IS(kn, kl, "delta") || IS(kn, kl, "message")) && s->t[x].type == JSMN_OBJECT)
                o->content_bytes += produced(s, x);
            else if (IS(kn, kl, "usage") && s->t[x].type == JSMN_OBJECT)
                cu = x;
        }
    }
    return cu;
}

/* The pool is not used: a chunk's tokens are scratch freed here, so a long
 * stream of large chunks does not grow the request's pool. Strings are not
 * held to the request's rules (see check_string). */
int tg_scan_response(const char *json, size_t len, tg_pool_t *pool, tg_scan_resp_t *out) {
    jsmntok_t toks[STACK_TOKS];
    scan_t s = {.js = json, .len = len};
    char buf[KEY_MAX];
    int cu = -1;
    *out = (tg_scan_resp_t){.prompt_tokens = -1,
                            .completion_tokens = -1,
                            .cached_tokens = -1,
                            .reasoning_tokens = -1,
                            .cache_hit_tokens = -1,
                            .cache_miss_tokens = -1};
    if (parse(&s, toks, "not an object") != 0) {
        scan_done(&s);
        return -1;
    }
    for (int c = 0, k = 1; c < s.t[0].size; c++, k = after(&s, k + 1)) {
        const char *kn;
        size_t kl = key_name(&s, k, buf, &kn);
        int v = k + 1;
        if (IS(kn, kl, "usage") && s.t[v].type == JSMN_OBJECT)
            usage(&s, v, out);
        else if (IS(kn, kl, "choices") && s.t[v].type == JSMN_ARRAY)
            cu = choices(&s, v, out);
        else if (IS(kn, kl, "error"))
            out->has_error = !is_null(&s, v);
    }
    if (!out->has_usage && cu >= 0) usage(&s, cu, out);
    scan_done(&s);
    return 0;
}

/* ---- edits --------------------------------------------------------------- */

static int edit_before(const tg_edit_t *a, const tg_edit_t *b) {
    return a->off < b->off || (a->off == b->off && a->len == 0 && b->len != 0);
}

char *tg_splice(tg_pool_t *pool, const char *src, size_t len, const tg_edit_t *e, size_t n, size_t *out_len) {
    /* Edits come from different helpers; put them in body order here
     * (a stable insertion sort: there are only a few). */
    const tg_edit_t *ed = e;
    for (size_t i = 1; i < n; i++) {
        if (edit_before(&e[i], &e[i - 1])) {
            tg_edit_t *c = tg_pool_alloc(pool, n * sizeof(*c));
            if (c == NULL) return NULL;
            memcpy(c, e, n * sizeof(*c));
            for (size_t a = 1; a < n; a++)
                for (size_t b = a; b > 0 && edit_before(&c[b], &c[b - 1]); b--) {
                    tg_edit_t t = c[b];
                    c[b] = c[b - 1];
                    c[b - 1] = t;
                }
            ed = c;
            break;
        }
    }
    size_t total = len, pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (ed[i].off < pos || ed[i].off > len || ed[i].len > len - ed[i].off) return NULL;
        pos = ed[i].off + ed[i].len;
        total = total - ed[i].len + ed[i].rep_len;
    }
    char *out = tg_pool_alloc(pool, total + 1), *w = out;
    if (out == NULL) return NULL;
    pos = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(w, src + pos, ed[i].off - pos);
        w += ed[i].off - pos;
        if (ed[i].rep_len) memcpy(w, ed[i].rep, ed[i].rep_len);
        w += ed[i].rep_len;
        pos = ed[i].off + ed[i].len;
    }
    memcpy(w, src + pos, len - pos);
    w += len - pos;
    *w = '\0';
    if (out_len) *out_len = total;
    return out;
}

char *tg_json_escape(tg_pool_t *pool, const char *s, size_t len, size_t *out_len) {
    size_t need = tg_json_escaped_len(s, len);
    char *out = tg_pool_alloc(pool, need + 1);
    if (out == NULL) return NULL;
    out[tg_json_escape_to(out, need, s, len)] = '\0';
    if (out_len) *out_len = need;
    return out;
}

static int push_edit(tg_edit_t *edits, size_t *n, size_t max, size_t off, size_t len, const char *rep) {
    if (*n >= max) return -1;
    edits[(*n)++] = (tg_edit_t){off, len, rep, strlen(rep)};
    return 0;
}

int tg_scan_force_include_usage(const char *body, const tg_scan_req_t *s, tg_edit_t *edits, size_t *n,
                                size_t max) {
    if (!s->has_stream_options) {
        const char *rep = s->obj_empty ? "\"stream_options\":{\"include_usage\":true}"
                                       : ",\"stream_options\":{\"include_usage\":true}";
        return push_edit(edits, n, max, s->obj_end, 0, rep);
    }
    const tg_span_t *so = &s->stream_options;
    if (body[so->off] == 'n') /* "stream_options": null */
        return push_edit(edits, n, max, so->off, so->len, "{\"include_usage\":true}");
    if (s->has_include_usage) {
        if (s->include_usage) return 0;
        return push_edit(edits, n, max, s->include_usage_val.off, s->include_usage_val.len, "true");
    }
    int empty = 1;
    for (size_t i = so->off + 1; i + 1 < so->off + so->len; i++)
        if (!is_ws(body[i])) empty = 0;
    return push_edit(edits, n, max, so->off + 1, 0,
                     empty ? "\"include_usage\":true" : "\"include_usage\":true,");
}

int tg_scan_set_model(const tg_scan_req_t *s, const char *model, tg_pool_t *pool, tg_edit_t *edit) {
    if (!s->has_model) return -1;
    size_t n;
    char *esc = tg_json_escape(pool, model, strlen(model), &n);
    if (esc == NULL) return -1;
    *edit = (tg_edit_t){s->model.off, s->model.len, esc, n};
    return 0;
}

/* ---- plain stream chunks ------------------------------------------------- */

/* Most chunks of an OpenAI-dialect stream carry a few bytes of text and no
 * usage; tokenizing each one was most of the gateway's own work per relayed
 * event. tg_scan_chunk_plain() instead looks at the bytes: one vector pass
 * finds each quote followed by 'u', 'e', 'd' or 'm' (where "usage",
 * "error", "delta" and "message" can start) and each \u00 escape; a usage
 * or error member that is not null sends the chunk to the full scan, and so
 * does a \u004x-\u007x escape (a letter written as an escape could spell
 * "usage" in a key). Inside a string a quote is escaped, so "usage" with its
 * quotes cannot come from answer text. Each "delta" or "message" object is
 * then walked with the grammar checked (skim_object) for the text the
 * estimate counts: content, reasoning_content and reasoning, and tool-call
 * arguments, each string decoded as the full scan decodes it. */
enum { R_DELTA, R_TOOLS, R_TOOL, R_FUNC, R_OTHER };
enum {
    K_OTHER,
    K_USAGE,
    K_ERROR,
    K_CONTENT,
    K_REASONING_CONTENT,
    K_REASONING,
    K_TOOL_CALLS,
    K_FUNCTION,
    K_ARGUMENTS
};
#define SKIM_DEPTH 16

static int skim_key(const char *k, size_t n) {
    switch (n) {
    case 5:
        return !memcmp(k, "usage", 5) ? K_USAGE : !memcmp(k, "error", 5) ? K_ERROR : K_OTHER;
    case 7:
        return !memcmp(k, "content", 7) ? K_CONTENT : K_OTHER;
    case 8:
        return !memcmp(k, "function", 8) ? K_FUNCTION : K_OTHER;
    case 9:
        return !memcmp(k, "reasoning", 9) ? K_REASONING : !memcmp(k, "arguments", 9) ? K_ARGUMENTS : K_OTHER;
    case 10:
        return !memcmp(k, "tool_calls", 10) ? K_TOOL_CALLS : K_OTHER;
    case 17:
        return !memcmp(k, "reasoning_content", 17) ? K_REASONING_CONTENT : K_OTHER;
    default:
        return K_OTHER;
    }
}

/* The closing quote of the string whose content starts at i, or 0 when the
 * skim must give up (no end, a bad escape, a control or NUL byte). *esc is
 * set when the string holds an escape. */
static size_t skim_string(const char *js, size_t len, size_t i, int *esc) {
    for (;;) {
        while (i < len && str_class[(unsigned char)js[i]] != C_QUOTE &&
               str_class[(unsigned char)js[i]] != C_BSLASH && str_class[(unsigned char)js[i]] != C_STOP)
            i++;
        if (i >= len) return 0;
        if (js[i] == '"') return i;
        if (js[i] != '\\' || i + 1 >= len) return 0;
        *esc = 1;
        if (js[i + 1] == 'u') {
            if (i + 6 > len || hex4(js + i + 2) < 0) return 0;
            i += 6;
        } else if (js[i + 1] && strchr("\"/\\bfnrt", js[i + 1])) {
            i += 2;
        } else {
            return 0;
        }
    }
}

/* Walks the object opening at js[i] (a choice's delta or message) with the
 * grammar checked, adding its text bytes to *count as produced() counts
 * them. Returns the index after its closing brace, or 0 when the full scan
 * must decide: bad JSON, a usage or error member inside, a key with an
 * escape, or a counted member written twice (the full scan reads the last
 * of a name, this walk the first). */
static size_t skim_object(const char *js, size_t len, size_t i, size_t *count) {
    struct {
        unsigned char role, is_obj;
        unsigned short seen; /* the counted members met so far, by K_ bit */
    } st[SKIM_DEPTH];
    enum { W_VALUE, W_KEY_OR_CLOSE, W_KEY, W_COLON, W_COMMA_OR_CLOSE, W_VALUE_OR_CLOSE } want = W_VALUE;
    int depth = 0, key = K_OTHER;
    for (;;) {
        while (i < len && is_ws(js[i]))
            i++;
        if (i >= len) return 0;
        char c = js[i];
        if (want == W_COLON) {
            if (c != ':') return 0;
            want = W_VALUE;
            i++;
            continue;
        }
        if (want == W_COMMA_OR_CLOSE && c == ',') {
            want = st[depth - 1].is_obj ? W_KEY : W_VALUE;
            i++;
            continue;
        }
        if ((c == '}' || c == ']') &&
            (want == W_COMMA_OR_CLOSE || want == W_KEY_OR_CLOSE || want == W_VALUE_OR_CLOSE)) {
            if (st[depth - 1].is_obj != (c == '}')) return 0;
            if (--depth == 0) return i + 1;
            want = W_COMMA_OR_CLOSE;
            i++;
            continue;
        }
        int is_key = want == W_KEY || want == W_KEY_OR_CLOSE;
        if (want == W_COMMA_OR_CLOSE || (is_key && c != '"')) return 0;
        /* The container of this value, and its key (none in an array). */
        int in = depth > 0 ? st[depth - 1].role : -1;
        int k = is_key || depth == 0 || !st[depth - 1].is_obj ? K_OTHER : key;
        if (k == K_USAGE || k == K_ERROR) return 0;
        if (c == '"') {
            int esc = 0;
            size_t end = skim_string(js, len, i + 1, &esc);
            if (end == 0) return 0;
            if (is_key) {
                if (esc) return 0;
                key = skim_key(js + i + 1, end - i - 1);
                if (key != K_OTHER) {
                    if (st[depth - 1].seen & (1u << key)) return 0;
                    st[depth - 1].seen |= (unsigned short)(1u << key);
                }
                want = W_COLON;
            } else {
                if ((in == R_DELTA && (k == K_CONTENT || k == K_REASONING_CONTENT || k == K_REASONING)) ||
                    (in == R_FUNC && k == K_ARGUMENTS)) {
                    long n = esc ? decode(js + i + 1, end - i - 1, NULL, 0, NULL) : (long)(end - i - 1);
                    if (n > 0) *count += (size_t)n;
                }
                want = W_COMMA_OR_CLOSE;
            }
            i = end + 1;
        } else if (c == '{' || c == '[') {
            if (depth == SKIM_DEPTH) return 0;
            int obj = c == '{', role = R_OTHER;
            if (in == -1)
                role = obj ? R_DELTA : R_OTHER;
            else if (in == R_DELTA && k == K_TOOL_CALLS && !obj)
                role = R_TOOLS;
            else if (in == R_TOOLS && obj)
                role = R_TOOL;
            else if (in == R_TOOL && k == K_FUNCTION && obj)
                role = R_FUNC;
            st[depth].role = (unsigned char)role;
            st[depth].is_obj = (unsigned char)obj;
            st[depth].seen = 0;
            depth++;
            want = obj ? W_KEY_OR_CLOSE : W_VALUE_OR_CLOSE;
            i++;
        } else {
            if (depth == 0) return 0;
            size_t e = i;
            while (e < len && !is_delim(js[e])) {
                if (js[e] < 32 || js[e] >= 127) return 0;
                e++;
            }
            if (e >= len || !valid_primitive(js + i, e - i)) return 0;
            i = e;
            want = W_COMMA_OR_CLOSE;
        }
    }
}

/* The member named at js[q] (its opening quote) when its value is null:
 * the index after "null", else 0. */
static size_t null_member(const char *js, size_t len, size_t q, size_t name_len) {
    size_t i = q + name_len + 2;
    while (i < len && is_ws(js[i]))
        i++;
    if (i >= len || js[i] != ':') return 0;
    i++;
    while (i < len && is_ws(js[i]))
        i++;
    return i + 4 <= len && memcmp(js + i, "null", 4) == 0 ? i + 4 : 0;
}

/* What a candidate at js[q] means: 0 nothing, -1 the full scan must
 * decide; a delta or message object is walked (its text counted). */
static int chunk_candidate(const char *js, size_t len, size_t q, size_t *count) {
    size_t rest = len - q;
    if (js[q] == '\\') /* \u00XX: a letter in an escape could spell a key */
        return rest >= 5 && js[q + 2] == '0' && js[q + 3] == '0' && js[q + 4] >= '4' && js[q + 4] <= '7' ? -1
                                                                                                         : 0;
    if (rest >= 7 && (!memcmp(js + q, "\"usage\"", 7) || !memcmp(js + q, "\"error\"", 7)))
        return null_member(js, len, q, 5) ? 0 : -1;
    size_t name = rest >= 7 && !memcmp(js + q, "\"delta\"", 7)     ? 5
                  : rest >= 9 && !memcmp(js + q, "\"message\"", 9) ? 7
                                                                   : 0;
    if (name == 0) return 0;
    size_t i = q + name + 2;
    while (i < len && is_ws(js[i]))
        i++;
    if (i >= len || js[i] != ':') return 0; /* a value "delta", not a key */
    i++;
    while (i < len && is_ws(js[i]))
        i++;
    if (i < len && js[i] == '{') return skim_object(js, len, i, count) ? 0 : -1;
    return 0;
}

int tg_scan_chunk_plain(const char *js, size_t len, size_t *content_bytes) {
    size_t a = 0, b = len, count = 0, i = 0;
    while (a < b && is_ws(js[a]))
        a++;
    while (b > a && is_ws(js[b - 1]))
        b--;
    if (b - a < 2 || js[a] != '{' || js[b - 1] != '}' || memchr(js, '\0', len) != NULL) return 0;
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), u = _mm_set1_epi8('u'),
                  e = _mm_set1_epi8('e'), d = _mm_set1_epi8('d'), m = _mm_set1_epi8('m');
    for (; i + 17 <= len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(js + i));
        __m128i n = _mm_loadu_si128((const __m128i *)(const void *)(js + i + 1));
        __m128i nu = _mm_cmpeq_epi8(n, u);
        __m128i hit = _mm_or_si128(
            _mm_and_si128(_mm_cmpeq_epi8(v, quote),
                          _mm_or_si128(_mm_or_si128(nu, _mm_cmpeq_epi8(n, e)),
                                       _mm_or_si128(_mm_cmpeq_epi8(n, d), _mm_cmpeq_epi8(n, m)))),
            _mm_and_si128(_mm_cmpeq_epi8(v, bslash), nu));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        while (mask) {
            if (chunk_candidate(js, len, i + (size_t)__builtin_ctz(mask), &count) < 0) return 0;
            mask &= mask - 1;
        }
    }
#endif
    for (; i + 1 < len; i++) {
        char n = js[i + 1];
        if (((js[i] == '"' && (n == 'u' || n == 'e' || n == 'd' || n == 'm')) ||
             (js[i] == '\\' && n == 'u')) &&
            chunk_candidate(js, len, i, &count) < 0)
            return 0;
    }
    *content_bytes = count;
    return 1;
}
