/* wire.c — the small byte-level tools every simulated answer uses: a growing
 * output buffer, JSON string escaping, reading the request headers (of a live
 * request or of an array when rendering), and the checks on names. Nothing
 * here knows a dialect; the word lists the answers are made of live here too
 * so every dialect says the same thing. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim/simulate_int.h"

const char *const sim_words[] = {"Hello", "from", "the",   "simulated", "provider,", "one",
                                 "word",  "per",  "token", "counted",   "exactly",   "so",
                                 "tests", "can",  "check", "usage."};
const char *const sim_thoughts[] = {"Let", "me", "think", "about", "this", "step", "by", "step."};
const size_t sim_nwords = sizeof(sim_words) / sizeof(sim_words[0]);
const size_t sim_nthoughts = sizeof(sim_thoughts) / sizeof(sim_thoughts[0]);
const char *const sim_tool_frags[SIM_TOOL_TOKENS - 1] = {"{\\\"city\\\"", ":\\\"Par", "is\\\"}"};

static int grow(sim_buf_t *b, size_t need) {
    if (b->oom) return -1;
    if (b->len + need + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void sim_put(sim_buf_t *b, const char *s, size_t n) {
    if (grow(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sim_puts(sim_buf_t *b, const char *s) {
    sim_put(b, s, strlen(s));
}

void sim_printf(sim_buf_t *b, const char *fmt, ...) {
    if (b->oom) return;
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n >= room) {
        if (grow(b, (size_t)n)) return;
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void sim_buf_reset(sim_buf_t *b) {
    b->len = 0;
    b->oom = 0;
    if (b->p) b->p[0] = '\0';
}

void sim_put_json(sim_buf_t *b, const json_t *j) {
    size_t n = j ? json_dumpb(j, NULL, 0, JSON_COMPACT) : 0;
    if (n == 0) {
        b->oom = 1;
        return;
    }
    if (grow(b, n)) return;
    json_dumpb(j, b->p + b->len, n, JSON_COMPACT);
    b->len += n;
    b->p[b->len] = '\0';
}

void sim_put_words(sim_buf_t *b, const char *const *list, size_t nlist, int64_t n) {
    for (int64_t i = 0; i < n && !b->oom; i++) {
        if (i) sim_put(b, " ", 1);
        sim_puts(b, list[i % (int64_t)nlist]);
    }
}

/* Provider names and x-sim-id values: [A-Za-z0-9._-], plus ':' when colon. */
int sim_name_ok(const char *s, size_t n, int colon) {
    if (n == 0 || n > SIM_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-' || (colon && c == ':')))
            return 0;
    }
    return 1;
}

/* Which OpenAI-compatible vendor a provider name plays; any name that is not
 * DeepSeek or Qwen is answered as OpenAI, so new vendors need no code. */
int sim_flavour_of(const char *prov) {
    if (strstr(prov, "deepseek")) return FL_DEEPSEEK;
    if (strstr(prov, "qwen")) return FL_QWEN;
    return FL_OPENAI;
}

/* JSON string body of s into dst; -1 when it does not fit. */
int sim_json_esc(char *dst, size_t cap, const char *s) {
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (o + 7 > cap) return -1;
        if (*c == '"' || *c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)*c;
        } else if (*c < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", *c);
        } else {
            dst[o++] = (char)*c;
        }
    }
    dst[o] = '\0';
    return 0;
}

const char *sim_hdr(const sim_hdrs_t *hs, const char *name, size_t *len) {
    if (hs->r) return hs->io->header(hs->r, name, len);
    size_t nl = strlen(name);
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i].name_len == nl && strncasecmp(hs->h[i].name, name, nl) == 0) {
            *len = hs->h[i].value_len;
            return hs->h[i].value;
        }
    return NULL;
}

/* A header holding a non-negative integer: 1 found (in *v), 0 absent, -1 bad. */
int sim_hdr_int(const sim_hdrs_t *hs, const char *name, int64_t *v) {
    size_t len = 0;
    const char *s = sim_hdr(hs, name, &len);
    if (s == NULL) return 0;
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 10) return -1;
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 1;
}

int sim_hdr_flag(const sim_hdrs_t *hs, const char *name) {
    int64_t v = 0;
    return sim_hdr_int(hs, name, &v) == 1 && v != 0;
}

int64_t sim_clamp(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : v > hi ? hi : v;
}
