/* responses_fast.c — the Responses API without a DOM for the common shapes
 * (contract in responses_fast.h). One strict reader walks the JSON text:
 * it validates what it skips as jansson would (UTF-8, escapes, \u0000 and
 * lone surrogates refused, integers that fit, no infinite reals), so that
 * text it accepts is text jansson loads. Strings are copied as they were
 * sent when they hold no escape (jansson would write them the same way),
 * otherwise decoded and written again with jansson's escapes; numbers and
 * metadata objects, small, go through jansson itself. The byte layouts
 * written here are tg_tr_dump's of responses_req.c's and responses.c's
 * objects (members in insertion order, compact): tests/unit/
 * test_responses_fast.c and tests/fuzz/fuzz_responses_fast.c hold the two
 * paths to the same text. Data enters as the client's body or the
 * provider's answer and leaves as text in the request's pool. */
#include "providers/responses_fast.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- output ----------------------------------------------------------------- */

typedef struct {
    tg_pool_t *pool;
    char *p;
    size_t n, cap;
    int oom;
} buf_t;

static int reserve(buf_t *b, size_t more) {
    if (b->oom) return -1;
    if (b->n + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap * 2 : 512;
    while (cap < b->n + more + 1)
        cap *= 2;
    char *p = tg_pool_alloc(b->pool, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    if (b->n) memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put(buf_t *b, const char *s, size_t n) {
    if (reserve(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void putz(buf_t *b, const char *s) {
    put(b, s, strlen(s));
}

/* An integer as jansson writes it (%lld), without printf's cost. */
static void put_int(buf_t *b, int64_t v) {
    char t[24];
    size_t k = sizeof(t);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        t[--k] = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) t[--k] = '-';
    put(b, t + k, sizeof(t) - k);
}

/* The text, NUL-terminated, or NULL when an allocation failed. */
static char *done(buf_t *b, size_t *len) {
    if (reserve(b, 0)) return NULL;
    b->p[b->n] = '\0';
    *len = b->n;
    return b->p;
}

/* One code point as jansson writes it inside a string: the short escapes,
 * \u00XX (upper-case hex) for the other control characters, the rest as
 * UTF-8. */
static void put_cp(buf_t *b, uint32_t v) {
    char e[8];
    size_t k = 0;
    if (v < 0x20) {
        static const char shorts[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
        if (v < sizeof(shorts) && shorts[v]) {
            e[0] = '\\', e[1] = shorts[v];
            k = 2;
        } else {
            k = (size_t)snprintf(e, sizeof(e), "\\u%04X", (unsigned)v);
        }
    } else if (v == '"' || v == '\\') {
        e[0] = '\\', e[1] = (char)v;
        k = 2;
    } else if (v < 0x80) {
        e[k++] = (char)v;
    } else if (v < 0x800) {
        e[k++] = (char)(0xC0 | (v >> 6));
        e[k++] = (char)(0x80 | (v & 0x3F));
    } else if (v < 0x10000) {
        e[k++] = (char)(0xE0 | (v >> 12));
        e[k++] = (char)(0x80 | ((v >> 6) & 0x3F));
        e[k++] = (char)(0x80 | (v & 0x3F));
    } else {
        e[k++] = (char)(0xF0 | (v >> 18));
        e[k++] = (char)(0x80 | ((v >> 12) & 0x3F));
        e[k++] = (char)(0x80 | ((v >> 6) & 0x3F));
        e[k++] = (char)(0x80 | (v & 0x3F));
    }
    put(b, e, k);
}

/* Decoded bytes (valid UTF-8) as jansson escapes them. */
static void put_esc(buf_t *b, const char *s, size_t n) {
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(b, s + run, i - run);
        put_cp(b, c);
        run = i + 1;
    }
    put(b, s + run, n - run);
}

static int hex4(const char *s, uint32_t *v) {
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        x = x << 4 | (uint32_t)d;
    }
    *v = x;
    return 0;
}

/* A string's content as sent (validated by rd_string) as jansson would
 * write the decoded string: as it is when it holds no escape. */
static void put_str(buf_t *b, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const char *q = memchr(s + i, '\\', n - i);
        size_t run = q ? (size_t)(q - (s + i)) : n - i;
        put(b, s + i, run);
        i += run;
        if (i >= n) break;
        char d = s[i + 1];
        i += 2;
        switch (d) {
        case 'b':
            put(b, "\\b", 2);
            break;
        case 'f':
            put(b, "\\f", 2);
            break;
        case 'n':
            put(b, "\\n", 2);
            break;
        case 'r':
            put(b, "\\r", 2);
            break;
        case 't':
            put(b, "\\t", 2);
            break;
        case '/':
            put(b, "/", 1);
            break;
        case 'u': {
            uint32_t v = 0, w = 0;
            hex4(s + i, &v);
            i += 4;
            if (v >= 0xD800 && v <= 0xDBFF) {
                hex4(s + i + 2, &w);
                i += 6;
                v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00);
            }
            put_cp(b, v);
            break;
        }
        default:
            put_cp(b, (unsigned char)d); /* '"' and '\\' */
        }
    }
}

/* --- the reader ------------------------------------------------------------- */

#define MAX_DEPTH 32 /* deeper text goes to jansson */

typedef struct {
    const char *s;
    size_t n, i;
    int depth;
} rd_t;

static void ws(rd_t *r) {
    while (r->i < r->n &&
           (r->s[r->i] == ' ' || r->s[r->i] == '\n' || r->s[r->i] == '\r' || r->s[r->i] == '\t'))
        r->i++;
}

static int peek(const rd_t *r) {
    return r->i < r->n ? (unsigned char)r->s[r->i] : -1;
}

/* The length of the UTF-8 sequence at s, by jansson's rule (no overlong
 * forms, no surrogates, nothing above U+10FFFF); 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t k;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF)
        k = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        k = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        k = 4, cp = c & 0x07;
    else
        return 0;
    if (n < k) return 0;
    for (size_t j = 1; j < k; j++) {
        if ((s[j] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[j] & 0x3F);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return k;
}

/* Whether none of 8 bytes ends a run of plain text: no '"', '\\', control
 * character or non-ASCII byte (the word tricks of "Bit Twiddling Hacks":
 * exact for "is there such a byte", which is all that is asked). */
static int plain8(const unsigned char *p) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t special = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x;
    return (special & high) == 0;
}

/* A string at the reader: its content span (quotes excluded) and whether
 * it holds an escape. */
static int rd_string(rd_t *r, tg_span_t *sp, int *esc) {
    if (peek(r) != '"') return -1;
    const unsigned char *s = (const unsigned char *)r->s;
    size_t i = r->i + 1;
    int e = 0;
    for (;;) {
        /* Plain text 8 bytes at a time, then byte by byte up to what ends it. */
        while (i + 8 <= r->n && plain8(s + i))
            i += 8;
        while (i < r->n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
            i++;
        if (i >= r->n) return -1;
        unsigned c = s[i];
        if (c == '"') break;
        if (c < 0x20) return -1;
        if (c >= 0x80) {
            size_t k = utf8_len(s + i, r->n - i);
            if (k == 0) return -1;
            i += k;
            continue;
        }
        e = 1;
        if (i + 1 >= r->n) return -1;
        char d = (char)s[i + 1];
        if (d != 'u') {
            if (d != '"' && d != '\\' && d != '/' && d != 'b' && d != 'f' && d != 'n' && d != 'r' && d != 't')
                return -1;
            i += 2;
            continue;
        }
        uint32_t v, w;
        if (i + 6 > r->n || hex4(r->s + i + 2, &v) || v == 0 || (v >= 0xDC00 && v <= 0xDFFF)) return -1;
        i += 6;
        if (v >= 0xD800 && v <= 0xDBFF) {
            if (i + 6 > r->n || s[i] != '\\' || s[i + 1] != 'u' || hex4(r->s + i + 2, &w) || w < 0xDC00 ||
                w > 0xDFFF)
                return -1;
            i += 6;
        }
    }
    sp->off = r->i + 1;
    sp->len = i - (r->i + 1);
    if (esc) *esc = e;
    r->i = i + 1;
    return 0;
}

static int digit(const rd_t *r, size_t i) {
    return i < r->n && r->s[i] >= '0' && r->s[i] <= '9';
}

/* A number at the reader; *is_int when it has no fraction or exponent.
 * Integers of more than 18 digits and reals that overflow are refused
 * (jansson refuses what does not fit; the rest is its to judge). */
static int rd_number(rd_t *r, int *is_int) {
    size_t i = r->i, st = i, d0;
    if (i < r->n && r->s[i] == '-') i++;
    if (!digit(r, i)) return -1;
    d0 = i;
    if (r->s[i] == '0')
        i++;
    else
        while (digit(r, i))
            i++;
    int integer = 1;
    if (i < r->n && r->s[i] == '.') {
        integer = 0;
        if (!digit(r, ++i)) return -1;
        while (digit(r, i))
            i++;
    }
    if (i < r->n && (r->s[i] == 'e' || r->s[i] == 'E')) {
        integer = 0;
        i++;
        if (i < r->n && (r->s[i] == '+' || r->s[i] == '-')) i++;
        if (!digit(r, i)) return -1;
        while (digit(r, i))
            i++;
    }
    if (i - st > 40 || (integer && i - d0 > 18)) return -1;
    if (!integer) {
        char tmp[48];
        memcpy(tmp, r->s + st, i - st);
        tmp[i - st] = '\0';
        if (isinf(strtod(tmp, NULL))) return -1;
    }
    if (is_int) *is_int = integer;
    r->i = i;
    return 0;
}

static int rd_word(rd_t *r, const char *w, size_t n) {
    if (r->n - r->i < n || memcmp(r->s + r->i, w, n) != 0) return -1;
    r->i += n;
    return 0;
}

static int skip_value(rd_t *r);

/* Object members one at a time. Start with *st 0 at the '{'. Returns 1
 * with the member's name read (a name with an escape is refused: it could
 * be a member this file reads, spelt otherwise) and the reader at its
 * value, 0 after the closing brace, -1 on anything else. */
static int obj_next(rd_t *r, int *st, tg_span_t *key) {
    ws(r);
    if (*st == 0) {
        if (peek(r) != '{' || ++r->depth > MAX_DEPTH) return -1;
        r->i++;
        ws(r);
        *st = 1;
        if (peek(r) == '}') {
            r->i++;
            r->depth--;
            return 0;
        }
    } else {
        if (peek(r) == '}') {
            r->i++;
            r->depth--;
            return 0;
        }
        if (peek(r) != ',') return -1;
        r->i++;
        ws(r);
    }
    int esc;
    if (rd_string(r, key, &esc) || esc) return -1;
    ws(r);
    if (peek(r) != ':') return -1;
    r->i++;
    ws(r);
    return 1;
}

/* Array elements the same way: 1 at an element, 0 after the ']'. */
static int arr_next(rd_t *r, int *st) {
    ws(r);
    if (*st == 0) {
        if (peek(r) != '[' || ++r->depth > MAX_DEPTH) return -1;
        r->i++;
        ws(r);
        *st = 1;
        if (peek(r) == ']') {
            r->i++;
            r->depth--;
            return 0;
        }
        return 1;
    }
    if (peek(r) == ']') {
        r->i++;
        r->depth--;
        return 0;
    }
    if (peek(r) != ',') return -1;
    r->i++;
    ws(r);
    return 1;
}

static int skip_value(rd_t *r) {
    ws(r);
    int c = peek(r), st = 0, k;
    tg_span_t sp;
    switch (c) {
    case '"':
        return rd_string(r, &sp, NULL);
    case '{':
        /* Any member name here, escaped or not: nothing in a skipped value is read. */
        if (++r->depth > MAX_DEPTH) return -1;
        r->i++;
        ws(r);
        if (peek(r) == '}') {
            r->i++;
            r->depth--;
            return 0;
        }
        for (;;) {
            ws(r);
            if (rd_string(r, &sp, NULL)) return -1;
            ws(r);
            if (peek(r) != ':') return -1;
            r->i++;
            if (skip_value(r)) return -1;
            ws(r);
            if (peek(r) == ',') {
                r->i++;
                continue;
            }
            if (peek(r) != '}') return -1;
            r->i++;
            r->depth--;
            return 0;
        }
    case '[':
        while ((k = arr_next(r, &st)) == 1)
            if (skip_value(r)) return -1;
        return k;
    case 't':
        return rd_word(r, "true", 4);
    case 'f':
        return rd_word(r, "false", 5);
    case 'n':
        return rd_word(r, "null", 4);
    default:
        return rd_number(r, NULL);
    }
}

/* The end of the text: only whitespace may follow the top-level value. */
static int at_end(rd_t *r) {
    ws(r);
    return r->i == r->n ? 0 : -1;
}

static int name_is(const rd_t *r, tg_span_t k, const char *want) {
    size_t n = strlen(want);
    return k.len == n && memcmp(r->s + k.off, want, n) == 0;
}

/* A value read whole: its span and kind ('s' string, 'i' integer, 'r'
 * real, 't' true, 'f' false, 'z' null, 'o' object, 'a' array). For a
 * string, the span is its content and esc says whether it holds an escape. */
typedef struct {
    int kind, esc, present;
    tg_span_t v;
} val_t;

static int rd_value(rd_t *r, val_t *out) {
    ws(r);
    int c = peek(r), isint = 0;
    size_t st = r->i;
    out->present = 1;
    out->esc = 0;
    if (c == '"') {
        out->kind = 's';
        return rd_string(r, &out->v, &out->esc);
    }
    if (skip_value(r)) return -1;
    out->v = (tg_span_t){st, r->i - st};
    out->kind = c == '{' ? 'o' : c == '[' ? 'a' : c == 't' ? 't' : c == 'f' ? 'f' : c == 'n' ? 'z' : 0;
    if (out->kind == 0) {
        rd_t nr = {r->s + st, r->i - st, 0, 0};
        rd_number(&nr, &isint);
        out->kind = isint ? 'i' : 'r';
    }
    return 0;
}

/* A small value as jansson writes it (numbers, metadata objects): loaded
 * and dumped by jansson itself. *n_members gets an object's size. */
static int put_jansson(buf_t *b, const char *s, size_t n, size_t *n_members) {
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY, NULL);
    char *d = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (n_members) *n_members = json_is_object(v) ? json_object_size(v) : 0;
    json_decref(v);
    if (d == NULL) return -1;
    putz(b, d);
    free(d);
    return 0;
}

/* --- requests --------------------------------------------------------------- */

enum {
    K_MODEL,
    K_INPUT,
    K_INSTR,
    K_MAX,
    K_TEMP,
    K_TOPP,
    K_STREAM,
    K_STORE,
    K_META,
    K_USER,
    K_PTC,
    K_PREV,
    NKEYS
};
static const char *const req_keys[NKEYS] = {
    "model", "input",    "instructions", "max_output_tokens",   "temperature",         "top_p", "stream",
    "store", "metadata", "user",         "parallel_tool_calls", "previous_response_id"};

static int is_text_part(const rd_t *r, tg_span_t t) {
    return name_is(r, t, "input_text") || name_is(r, t, "output_text") || name_is(r, t, "text");
}

/* One content part: {"type": a text type, "text": string, anything else}. */
static int rd_part(rd_t *r, tg_span_t *text) {
    int st = 0, k, has_type = 0, has_text = 0;
    tg_span_t key;
    while ((k = obj_next(r, &st, &key)) == 1) {
        val_t v = {0};
        if (rd_value(r, &v)) return -1;
        if (name_is(r, key, "type")) {
            if (has_type++ || v.kind != 's' || v.esc || !is_text_part(r, v.v)) return -1;
        } else if (name_is(r, key, "text")) {
            if (has_text++ || v.kind != 's') return -1;
            *text = v.v;
        }
    }
    return k == 0 && has_type && has_text ? 0 : -1;
}

/* A message item of the input as its Chat message (responses_req.c's
 * message_item for text-only content). */
static int put_item(rd_t *r, buf_t *b) {
    int st = 0, k;
    tg_span_t key;
    val_t type = {0}, role = {0}, content = {0};
    while ((k = obj_next(r, &st, &key)) == 1) {
        val_t *slot = name_is(r, key, "type")      ? &type
                      : name_is(r, key, "role")    ? &role
                      : name_is(r, key, "content") ? &content
                                                   : NULL;
        if (slot && slot->present) return -1; /* jansson keeps the last: leave it to jansson */
        val_t scratch;
        if (rd_value(r, slot ? slot : &scratch)) return -1;
    }
    if (k != 0) return -1;
    if (type.present && (type.kind != 's' || type.esc || !name_is(r, type.v, "message"))) return -1;
    if (!role.present || role.kind != 's' || role.esc) return -1;
    int user = name_is(r, role.v, "user"), assistant = name_is(r, role.v, "assistant");
    if (!user && !assistant && !name_is(r, role.v, "system") && !name_is(r, role.v, "developer")) return -1;
    if (content.kind != 's' && content.kind != 'a') return -1;
    putz(b, user        ? "{\"role\":\"user\",\"content\":"
            : assistant ? "{\"role\":\"assistant\",\"content\":"
                        : "{\"role\":\"system\",\"content\":");
    if (content.kind == 's') {
        putz(b, "\"");
        put_str(b, r->s + content.v.off, content.v.len);
        putz(b, "\"}");
        return 0;
    }
    /* Parts: the user's as Chat text parts, the others' text joined. */
    rd_t pr = {r->s, content.v.off + content.v.len, content.v.off, r->depth};
    int ps = 0, n = 0;
    putz(b, user ? "[" : "\"");
    while ((k = arr_next(&pr, &ps)) == 1) {
        tg_span_t text;
        if (rd_part(&pr, &text)) return -1;
        if (user) {
            putz(b, n++ ? ",{\"type\":\"text\",\"text\":\"" : "{\"type\":\"text\",\"text\":\"");
            put_str(b, r->s + text.off, text.len);
            putz(b, "\"}");
        } else {
            put_str(b, r->s + text.off, text.len);
        }
    }
    if (k != 0) return -1;
    putz(b, user ? "]}" : "\"}");
    return 0;
}

static void put_or_null(buf_t *b, const char *key, const rd_t *r, const val_t *v, int str) {
    putz(b, key);
    if (!v->present || v->kind == 'z') {
        putz(b, "null");
    } else if (str) {
        putz(b, "\"");
        put_str(b, r->s + v->v.off, v->v.len);
        putz(b, "\"");
    } else {
        put(b, r->s + v->v.off, v->v.len);
    }
}

static int bool_or_null(const val_t *v) {
    return !v->present || v->kind == 't' || v->kind == 'f' || v->kind == 'z';
}

static int number_or_null(const val_t *v) {
    return !v->present || v->kind == 'i' || v->kind == 'r' || v->kind == 'z';
}

static int string_or_null(const val_t *v) {
    return !v->present || v->kind == 's' || v->kind == 'z';
}

int tg_rs_fast_req(tg_pool_t *pool, const char *body, size_t len, tg_rs_prep_t *p) {
    rd_t r = {body, len, 0, 0};
    val_t v[NKEYS] = {{0}};
    int st = 0, k;
    tg_span_t key;
    ws(&r);
    while ((k = obj_next(&r, &st, &key)) == 1) {
        size_t i = 0;
        while (i < NKEYS && !name_is(&r, key, req_keys[i]))
            i++;
        if (i == NKEYS || v[i].present) return -1; /* another shape, or a repeated member */
        if (rd_value(&r, &v[i])) return -1;
    }
    if (k != 0 || at_end(&r)) return -1;
    /* The types the jansson path would read without a word; anything else is its to judge. */
    const val_t *in = &v[K_INPUT], *ins = &v[K_INSTR], *max = &v[K_MAX];
    if (v[K_MODEL].kind != 's' || v[K_MODEL].v.len == 0) return -1;
    if (in->present && in->kind != 's' && in->kind != 'a' && in->kind != 'z') return -1;
    if (!string_or_null(ins) || !string_or_null(&v[K_USER])) return -1;
    if (max->present && max->kind != 'z' && (max->kind != 'i' || body[max->v.off] == '-')) return -1;
    if (!number_or_null(&v[K_TEMP]) || !number_or_null(&v[K_TOPP])) return -1;
    if (!bool_or_null(&v[K_STREAM]) || !bool_or_null(&v[K_STORE]) || !bool_or_null(&v[K_PTC])) return -1;
    if (v[K_META].present && v[K_META].kind != 'o' && v[K_META].kind != 'z') return -1;
    if (v[K_PREV].present && v[K_PREV].kind != 'z') return -1;

    buf_t b = {.pool = pool};
    reserve(&b, len + 256); /* strings come out no longer than they went in */
    putz(&b, "{\"model\":\"");
    put_str(&b, body + v[K_MODEL].v.off, v[K_MODEL].v.len);
    putz(&b, "\",\"messages\":[");
    int n = 0;
    if (ins->kind == 's' && ins->v.len) {
        putz(&b, "{\"role\":\"system\",\"content\":\"");
        put_str(&b, body + ins->v.off, ins->v.len);
        putz(&b, "\"}");
        n++;
    }
    if (in->kind == 's') {
        putz(&b, n++ ? ",{\"role\":\"user\",\"content\":\"" : "{\"role\":\"user\",\"content\":\"");
        put_str(&b, body + in->v.off, in->v.len);
        putz(&b, "\"}");
    } else if (in->kind == 'a') {
        rd_t ir = {body, in->v.off + in->v.len, in->v.off, 0};
        int as = 0;
        while ((k = arr_next(&ir, &as)) == 1) {
            if (n++) putz(&b, ",");
            if (put_item(&ir, &b)) return -1;
        }
        if (k != 0) return -1;
    }
    if (n == 0) return -1; /* "'input' is required": the jansson path says it */
    putz(&b, "]");
    if (max->kind == 'i') {
        putz(&b, ",\"max_tokens\":");
        put(&b, body + max->v.off, max->v.len);
    }
    static const char *const nums[] = {",\"temperature\":", ",\"top_p\":"};
    const char *num_text[2] = {"null", "null"};
    for (int j = 0; j < 2; j++) {
        const val_t *x = &v[j ? K_TOPP : K_TEMP];
        if (x->kind != 'i' && x->kind != 'r') continue;
        putz(&b, nums[j]);
        size_t at = b.n;
        if (put_jansson(&b, body + x->v.off, x->v.len, NULL)) return -1;
        num_text[j] = b.oom ? "" : tg_pool_strndup(pool, b.p + at, b.n - at);
    }
    if (v[K_USER].kind == 's') {
        putz(&b, ",\"user\":\"");
        put_str(&b, body + v[K_USER].v.off, v[K_USER].v.len);
        putz(&b, "\"");
    }
    if (v[K_STREAM].kind == 't') putz(&b, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    putz(&b, "}");
    size_t chat_len = 0;
    char *chat = done(&b, &chat_len);

    /* The Response's echo fields (tg_rs_response_new's order). */
    buf_t a = {.pool = pool}, e = {.pool = pool}, c = {.pool = pool};
    put_or_null(&a, ",\"instructions\":", &r, ins, 1);
    put_or_null(&a, ",\"max_output_tokens\":", &r, max, 0);
    putz(&e, ",\"parallel_tool_calls\":");
    putz(&e, v[K_PTC].kind == 'f' ? "false" : "true");
    putz(&e, ",\"previous_response_id\":null,\"reasoning\":{\"effort\":null,\"summary\":null},\"store\":");
    putz(&e, v[K_STORE].kind == 'f' ? "false" : "true");
    putz(&e, ",\"temperature\":");
    putz(&e, num_text[0]);
    putz(&e, ",\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":");
    putz(&e, num_text[1]);
    putz(&e, ",\"truncation\":\"disabled\"");
    put_or_null(&c, ",\"user\":", &r, &v[K_USER], 1);
    putz(&c, ",\"metadata\":");
    size_t members = 0;
    if (v[K_META].kind == 'o') {
        if (put_jansson(&c, body + v[K_META].v.off, v[K_META].v.len, &members)) return -1;
    } else {
        putz(&c, "{}");
    }
    size_t la = 0, le = 0, lc = 0;
    const char *ea = done(&a, &la), *eb = done(&e, &le), *ec = done(&c, &lc);
    if (chat == NULL || ea == NULL || eb == NULL || ec == NULL) return -1;

    p->src = body;
    p->src_len = len;
    p->fast = 1;
    p->chat = chat;
    p->chat_len = chat_len;
    p->reuse = 1;
    p->store = v[K_STORE].kind != 'f';
    strcpy(p->note, members ? "metadata dropped" : ""); /* responses_req.c's note for it */
    p->echo_a = ea;
    p->echo_b = eb;
    p->echo_c = ec;
    return 0;
}

const json_t *tg_rs_prep_req(tg_rs_prep_t *p) {
    if (p->req == NULL && p->src) p->req = json_loadb(p->src, p->src_len, 0, NULL);
    return p->req;
}

int tg_rs_chat_reusable(const json_t *req) {
    const json_t *tools = json_object_get(req, "tools"), *t;
    size_t i;
    json_array_foreach(tools, i, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        if (type == NULL || strcmp(type, "function") != 0) return 0;
    }
    return 1;
}

/* Whether s[0..n) is valid UTF-8 (what json_string accepts). */
static int utf8_ok(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

char *tg_rs_chat_splice(tg_pool_t *pool, const char *chat, size_t len, const tg_scan_req_t *s,
                        const char *model, int max_completion_tokens, size_t *out_len) {
    size_t ml = strlen(model);
    if (!s->has_model || !utf8_ok(model, ml)) return NULL;
    buf_t m = {.pool = pool};
    put_esc(&m, model, ml);
    size_t rl = 0;
    const char *rep = done(&m, &rl);
    if (rep == NULL) return NULL;
    tg_edit_t e[2] = {{s->model.off, s->model.len, rep, rl}};
    size_t n = 1;
    if (max_completion_tokens) {
        /* The top-level member, not a "max_tokens" inside a tool's schema. */
        rd_t r = {chat, len, 0, 0};
        int st = 0, k;
        tg_span_t key;
        while ((k = obj_next(&r, &st, &key)) == 1) {
            if (name_is(&r, key, "max_tokens")) {
                e[n++] = (tg_edit_t){key.off, key.len, "max_completion_tokens", 21};
                break;
            }
            if (skip_value(&r)) return NULL;
        }
    }
    return tg_splice(pool, chat, len, e, n, out_len);
}

/* --- answers ---------------------------------------------------------------- */

/* A member that must be absent, null, or empty ("" or [] as `empty` says). */
static int nothing(const val_t *v, int empty) {
    return !v->present || v->kind == 'z' || (v->kind == empty && v->v.len == (empty == 's' ? 0u : 2u));
}

/* choices[0].message: its content (kind 0 when absent). */
static int rd_message(rd_t *r, val_t *content) {
    int st = 0, k;
    tg_span_t key;
    val_t rc = {0}, rs = {0}, ref = {0}, tc = {0};
    while ((k = obj_next(r, &st, &key)) == 1) {
        val_t *slot = name_is(r, key, "content")             ? content
                      : name_is(r, key, "reasoning_content") ? &rc
                      : name_is(r, key, "reasoning")         ? &rs
                      : name_is(r, key, "refusal")           ? &ref
                      : name_is(r, key, "tool_calls")        ? &tc
                                                             : NULL;
        if (slot && slot->present) return -1;
        val_t scratch;
        if (rd_value(r, slot ? slot : &scratch)) return -1;
    }
    if (k != 0) return -1;
    /* Only text: no reasoning, refusal or calls (an empty "[]" as the
     * jansson path sees it: only when written without spaces). */
    if (!nothing(&rc, 's') || !nothing(&rs, 's') || !nothing(&ref, 's') || !nothing(&tc, 'a')) return -1;
    return content->present && content->kind != 's' && content->kind != 'z' ? -1 : 0;
}

static int rd_choice(rd_t *r, val_t *content, val_t *finish) {
    int st = 0, k, has_message = 0;
    tg_span_t key;
    while ((k = obj_next(r, &st, &key)) == 1) {
        if (name_is(r, key, "message")) {
            if (has_message++ || peek(r) != '{' || rd_message(r, content)) return -1;
        } else if (name_is(r, key, "finish_reason")) {
            if (finish->present || rd_value(r, finish)) return -1;
        } else if (skip_value(r)) {
            return -1;
        }
    }
    return k == 0 && has_message ? 0 : -1;
}

int tg_rs_fast_answer(tg_pool_t *pool, const tg_rs_prep_t *p, const char *body, size_t len, const char *id,
                      int64_t created_at, const char *model, const tg_usage_t *u, const char **out,
                      size_t *out_len) {
    if (!p->fast || !u->present || id == NULL || model == NULL) return -1;
    size_t idl = strlen(id), ml = strlen(model);
    /* responses.c writes item ids in a 160-byte buffer; a model json_string refuses becomes "". */
    if (idl > 100 || !utf8_ok(id, idl) || !utf8_ok(model, ml)) return -1;
    rd_t r = {body, len, 0, 0};
    val_t content = {0}, finish = {0};
    int st = 0, k, has_choices = 0;
    tg_span_t key;
    ws(&r);
    while ((k = obj_next(&r, &st, &key)) == 1) {
        if (!name_is(&r, key, "choices")) {
            if (skip_value(&r)) return -1;
            continue;
        }
        int as = 0, first = 1, e;
        if (has_choices++) return -1;
        while ((e = arr_next(&r, &as)) == 1) {
            if (first) {
                if (peek(&r) != '{' || rd_choice(&r, &content, &finish)) return -1;
                first = 0;
            } else if (skip_value(&r)) {
                return -1;
            }
        }
        if (e != 0 || first) return -1;
    }
    if (k != 0 || at_end(&r) || !has_choices) return -1;
    const char *why = NULL;
    if (finish.kind == 's') {
        if (finish.esc) return -1;
        why = name_is(&r, finish.v, "length")           ? "max_output_tokens"
              : name_is(&r, finish.v, "content_filter") ? "content_filter"
                                                        : NULL;
    }

    buf_t b = {.pool = pool};
    reserve(&b, len + 1024 + strlen(p->echo_a) + strlen(p->echo_b) + strlen(p->echo_c));
    putz(&b, "{\"id\":\"resp_");
    put_esc(&b, id, idl);
    putz(&b, "\",\"object\":\"response\",\"created_at\":");
    put_int(&b, created_at);
    putz(&b, why ? ",\"status\":\"incomplete\"" : ",\"status\":\"completed\"");
    putz(&b, ",\"background\":false,\"error\":null,\"incomplete_details\":");
    if (why) {
        putz(&b, "{\"reason\":\"");
        putz(&b, why);
        putz(&b, "\"}");
    } else {
        putz(&b, "null");
    }
    putz(&b, p->echo_a);
    putz(&b, ",\"model\":\"");
    put_esc(&b, model, ml);
    putz(&b, "\",\"output\":[{\"id\":\"msg_");
    put_esc(&b, id, idl);
    putz(&b, "_0\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":"
             "[{\"type\":\"output_text\",\"annotations\":[],\"text\":\"");
    size_t t0 = b.n;
    if (content.kind == 's') put_str(&b, body + content.v.off, content.v.len);
    size_t t1 = b.n;
    putz(&b, "\"}]}]");
    putz(&b, p->echo_b);
    putz(&b, ",\"usage\":{\"input_tokens\":");
    put_int(&b, u->input_tokens);
    putz(&b, ",\"input_tokens_details\":{\"cached_tokens\":");
    put_int(&b, u->cached_input_tokens);
    putz(&b, "},\"output_tokens\":");
    put_int(&b, u->output_tokens);
    putz(&b, ",\"output_tokens_details\":{\"reasoning_tokens\":");
    put_int(&b, u->reasoning_tokens);
    putz(&b, "},\"total_tokens\":");
    put_int(&b, u->input_tokens + u->output_tokens);
    putz(&b, "}");
    putz(&b, p->echo_c);
    putz(&b, ",\"output_text\":\"");
    if (reserve(&b, t1 - t0) == 0) { /* the answer's text again: reserved first, as b.p may move */
        memcpy(b.p + b.n, b.p + t0, t1 - t0);
        b.n += t1 - t0;
    }
    putz(&b, "\"}");
    *out = done(&b, out_len);
    return *out ? 0 : -1;
}
