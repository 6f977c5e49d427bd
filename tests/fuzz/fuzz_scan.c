/* fuzz_scan.c — libFuzzer target for the JSON scans and splicing.
 * Properties: (1) tg_scan_response() accepts exactly the inputs that a small
 * independent JSON checker below accepts as one object at most
 * TG_SCAN_MAX_DEPTH deep (raw bytes other than NUL and lone surrogates
 * tolerated in strings, as answers are relayed as sent); (2)
 * tg_scan_request() never accepts what the checker refuses in its strict
 * mode: strings UTF-8 without raw control bytes (U+0000-U+001F) and with
 * paired surrogate escapes; (3) after
 * set_model and force_include_usage edits, the spliced body scans again with
 * the new model, include_usage true and the same messages; (4) user text is
 * UTF-8 cut on a boundary. Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE \
 *       tests/fuzz/fuzz_scan.c core/scan.c core/pool.c -o /tmp/fuzz_scan */
/* deps: core/scan.c core/pool.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/scan.h"

/* ---- the reference checker (bounded recursion: depth <= 65) ------------- */

typedef struct {
    const uint8_t *p;
    size_t n, i;
    int strict; /* a request's strings: UTF-8, no raw control bytes, paired surrogates */
} ref_t;

static void ws(ref_t *r) {
    while (r->i < r->n &&
           (r->p[r->i] == ' ' || r->p[r->i] == '\t' || r->p[r->i] == '\n' || r->p[r->i] == '\r'))
        r->i++;
}

static int lit(ref_t *r, const char *s) {
    size_t l = strlen(s);
    if (r->n - r->i < l || memcmp(r->p + r->i, s, l) != 0) return 0;
    r->i += l;
    return 1;
}

static int digits(ref_t *r) {
    size_t s = r->i;
    while (r->i < r->n && r->p[r->i] >= '0' && r->p[r->i] <= '9')
        r->i++;
    return r->i > s;
}

static int number(ref_t *r) {
    if (r->i < r->n && r->p[r->i] == '-') r->i++;
    if (r->i < r->n && r->p[r->i] == '0')
        r->i++;
    else if (!(r->i < r->n && r->p[r->i] >= '1' && r->p[r->i] <= '9') || !digits(r))
        return 0;
    if (r->i < r->n && r->p[r->i] == '.') {
        r->i++;
        if (!digits(r)) return 0;
    }
    if (r->i < r->n && (r->p[r->i] == 'e' || r->p[r->i] == 'E')) {
        r->i++;
        if (r->i < r->n && (r->p[r->i] == '+' || r->p[r->i] == '-')) r->i++;
        if (!digits(r)) return 0;
    }
    return 1;
}

static long hex(const uint8_t *p) {
    long v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = p[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* One code point of UTF-8 decoded and range-checked (RFC 3629 table 3-7
 * written out as code point bounds): returns its length, 0 when invalid. */
static size_t utf8_one(const uint8_t *p, size_t n) {
    size_t l = p[0] < 0x80                   ? 1
               : p[0] >= 0xC0 && p[0] < 0xE0 ? 2
               : p[0] >= 0xE0 && p[0] < 0xF0 ? 3
               : p[0] >= 0xF0 && p[0] < 0xF8 ? 4
                                             : 0;
    if (l == 0 || l > n) return 0;
    uint32_t cp = l == 1 ? p[0] : l == 2 ? p[0] & 0x1F : l == 3 ? p[0] & 0x0F : p[0] & 0x07;
    for (size_t k = 1; k < l; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[k] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[l] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return l;
}

static int string(ref_t *r) {
    r->i++;
    while (r->i < r->n) {
        uint8_t c = r->p[r->i];
        if (c == '"') {
            r->i++;
            return 1;
        }
        if (c == 0 || (r->strict && c < 0x20)) return 0;
        if (c >= 0x80 && r->strict) {
            size_t l = utf8_one(r->p + r->i, r->n - r->i);
            if (l == 0) return 0;
            r->i += l;
            continue;
        }
        r->i++;
        if (c != '\\') continue;
        if (r->i >= r->n) return 0;
        c = r->p[r->i++];
        if (c == 'u') {
            long cp = r->n - r->i >= 4 ? hex(r->p + r->i) : -1;
            if (cp < 0) return 0;
            r->i += 4;
            if (!r->strict) continue;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return 0; /* a low half first */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = r->n - r->i >= 6 && r->p[r->i] == '\\' && r->p[r->i + 1] == 'u'
                              ? hex(r->p + r->i + 2)
                              : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) return 0;
                r->i += 6;
            }
        } else if (!c || !strchr("\"\\/bfnrt", c)) {
            return 0;
        }
    }
    return 0;
}

static int value(ref_t *r, int depth) {
    ws(r);
    if (r->i >= r->n) return 0;
    uint8_t c = r->p[r->i];
    if (c == '"') return string(r);
    if (c == 't') return lit(r, "true");
    if (c == 'f') return lit(r, "false");
    if (c == 'n') return lit(r, "null");
    if (c != '{' && c != '[') return number(r);
    if (depth + 1 > TG_SCAN_MAX_DEPTH) return 0;
    uint8_t close = c == '{' ? '}' : ']';
    r->i++;
    ws(r);
    if (r->i < r->n && r->p[r->i] == close) {
        r->i++;
        return 1;
    }
    for (;;) {
        if (c == '{') {
            ws(r);
            if (r->i >= r->n || r->p[r->i] != '"' || !string(r)) return 0;
            ws(r);
            if (r->i >= r->n || r->p[r->i++] != ':') return 0;
        }
        if (!value(r, depth + 1)) return 0;
        ws(r);
        if (r->i >= r->n) return 0;
        uint8_t s = r->p[r->i++];
        if (s == close) return 1;
        if (s != ',') return 0;
    }
}

static int ref_object(const uint8_t *p, size_t n, int strict) {
    ref_t r = {p, n, 0, strict};
    ws(&r);
    if (r.i >= n || p[r.i] != '{' || !value(&r, 0)) return 0;
    ws(&r);
    return r.i == n;
}

static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0, l; i < n; i += l)
        if ((l = utf8_one(s + i, n - i)) == 0) return 0;
    return 1;
}

/* ---- the target ---------------------------------------------------------- */

static void check_request(const char *body, size_t len, tg_pool_t *pool) {
    tg_scan_req_t a, b;
    char err[256];
    if (tg_scan_request(body, len, pool, &a, err, sizeof(err)) != 0) {
        if (err[0] == '\0') abort(); /* every refusal says why */
        return;
    }
    if (!ref_object((const uint8_t *)body, len, 1)) abort();
    if (a.user_text_len > TG_SCAN_TEXT_MAX || a.user_text[a.user_text_len] != '\0') abort();
    if (!valid_utf8((const uint8_t *)a.user_text, a.user_text_len)) abort();
    if (a.n_messages == 0 || body[a.obj_end] != '}') abort();

    tg_edit_t e[4];
    size_t n = 0;
    static const char model[] = "fuzz-\"model\"\n\\";
    if (tg_scan_set_model(&a, model, pool, &e[n]) == 0)
        n++;
    else if (a.has_model)
        abort();
    if (tg_scan_force_include_usage(body, &a, e, &n, 4) != 0) abort();
    size_t olen;
    char *out = tg_splice(pool, body, len, e, n, &olen);
    if (out == NULL) abort();
    if (tg_scan_request(out, olen, pool, &b, err, sizeof(err)) != 0) abort();
    if (!b.include_usage || b.has_model != a.has_model || b.stream != a.stream) abort();
    if (a.has_model && strcmp(b.model_str, model) != 0) abort();
    if (b.n_messages != a.n_messages || b.text_bytes != a.text_bytes || b.user_text_len != a.user_text_len ||
        memcmp(a.user_text, b.user_text, a.user_text_len) != 0 || b.max_tokens != a.max_tokens ||
        b.has_images != a.has_images || b.has_tools != a.has_tools)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tg_pool_t *pool = tg_pool_create(4096);
    const char *body = (const char *)data;
    tg_scan_resp_t s;
    int ok = tg_scan_response(body, size, pool, &s) == 0;
    if (ok != ref_object(data, size, 0)) abort();
    if (ok && s.has_usage == 0 && (s.prompt_tokens != -1 || s.completion_tokens != -1)) abort();
    check_request(body, size, pool);
    tg_pool_destroy(pool);
    return 0;
}
