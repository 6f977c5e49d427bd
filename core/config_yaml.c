/* config_yaml.c — turns libyaml nodes into C values for the configuration
 * loader, and keeps the diagnostics. Scalars are converted by type (strings,
 * integers, prices, HH:MM times, lists); a mapping is checked against a
 * field table that names each allowed key, its type and where it lands in
 * the struct. Every problem becomes "FILE:LINE:COL: message" in a tg_diag_t,
 * with a "did you mean" for a misspelt key, and loading carries on so one
 * run shows them all. The section schemas live in config_schema.c. */
#include "core/config_int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- diagnostics ---------------------------------------------------- */

void tg_diag_free(tg_diag_t *d) {
    if (d == NULL) return;
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    memset(d, 0, sizeof(*d));
}

/* Masks the password of every URL in a diagnostic, in place: an error
 * quotes the value it refuses, and a base_url or a Redis URL may carry
 * credentials ("redis://:secret@host", "https://user:secret@host"). The
 * authority is what follows "://" up to '/', '?', '#', a space or a quote;
 * with an '@' in it, what follows the userinfo's ':' becomes "***" (the
 * whole userinfo when it has no ':'); without one, a ':' followed by
 * anything but a port is taken for a password cut off before its '@' (a
 * value is quoted at most 60 characters long). */
static void mask_url_passwords(char *msg, size_t cap) {
    for (char *u = strstr(msg, "://"); u; u = strstr(u, "://")) {
        char *a = u + 3, *e = a;
        while (*e && !strchr("/?#'\" \t\r\n", *e))
            e++;
        char *at = NULL, *colon = NULL, *q = a;
        if (*q == '[') /* an IPv6 literal: its colons are not userinfo */
            while (q < e && *q != ']')
                q++;
        for (; q < e; q++)
            if (*q == '@') at = q;
        for (q = a; q < (at ? at : e); q++)
            if (*q == ':' && colon == NULL) colon = q;
        char *from = NULL, *to = NULL;
        if (at) {
            from = colon ? colon + 1 : a, to = at;
        } else if (colon && *a != '[') {
            for (q = colon + 1; q < e && *q >= '0' && *q <= '9'; q++)
                ;
            if (q < e || colon + 1 == e) from = colon + 1, to = e;
            if (colon + 1 == e) from = NULL; /* "host:" and nothing: no password */
        }
        if (from && to > from) {
            size_t len = (size_t)(to - from), tail = strlen(to) + 1;
            if (len >= 3 || strlen(msg) + 3 - len < cap) {
                memmove(from + 3, to, tail); /* always "***": the length tells nothing */
                memcpy(from, "***", 3);
            } else {
                memset(from, '*', len); /* no room to grow: masked in place */
            }
            u = from + 3 < msg + strlen(msg) ? from + 3 : msg + strlen(msg);
        } else {
            u = e;
        }
    }
}

void cfg_diag_vadd(tg_diag_t *d, int is_err, pos_t p, const char *fmt, va_list ap) {
    char msg[1024], *line;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    mask_url_passwords(msg, sizeof(msg));
    if (asprintf(&line, "%s:%d:%d: %s%s", p.file, p.line, p.col, is_err ? "" : "warning: ", msg) < 0) return;
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 16;
        char **nm = realloc(d->msgs, nc * sizeof(*nm));
        if (nm == NULL) {
            free(line);
            return;
        }
        d->msgs = nm;
        d->cap = nc;
    }
    d->msgs[d->n++] = line;
    if (is_err) d->n_errors++;
}

__attribute__((format(printf, 3, 4))) void cfg_errn(const src_t *s, const yaml_node_t *n, const char *fmt,
                                                    ...) {
    va_list ap;
    va_start(ap, fmt);
    cfg_diag_vadd(s->ld->d, 1, at(s, n), fmt, ap);
    va_end(ap);
}

/* ---- "did you mean" -------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The closest of `names` to a misspelt word, or NULL when none is close:
 * one edit for short words, two otherwise, or a prefix of 3+ characters. */
static const char *suggest(const char *w, const char *const *names, size_t n) {
    const char *best = NULL;
    size_t best_d = SIZE_MAX, wl = strlen(w), limit = wl <= 3 ? 1 : 2;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(w, names[i]), nl = strlen(names[i]);
        if (d > limit && !(wl >= 3 && nl > wl && strncmp(w, names[i], wl) == 0)) continue;
        if (d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    return best;
}

/* Reports an unknown `what` (a key, a dialect...), with " in WHERE" when
 * given and the closest valid name when one is close. */
void cfg_err_unknown(const src_t *s, const yaml_node_t *n, const char *what, const char *word,
                     const char *where, const char *const *names, size_t nn, const char *expected) {
    char in[160] = "", hint[160] = "";
    const char *sg = suggest(word, names, nn);
    if (where) snprintf(in, sizeof(in), " in %s", where);
    if (sg)
        snprintf(hint, sizeof(hint), " (did you mean '%s'?)", sg);
    else if (expected)
        snprintf(hint, sizeof(hint), " (expected %s)", expected);
    cfg_errn(s, n, "unknown %s '%s'%s%s", what, word, in, hint);
}

/* ---- scalars --------------------------------------------------------- */

/* How a wrong-typed value is shown back: its text, or its kind. */
const char *cfg_got(const yaml_node_t *n, char *buf, size_t cap) {
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    const char *v = sval(n);
    snprintf(buf, cap, "'%.60s'", v ? v : "");
    return buf;
}

void cfg_err_type(const src_t *s, const yaml_node_t *n, const char *expected, const char *name) {
    char b[80];
    cfg_errn(s, n, "expected %s for '%s', got %s", expected, name, cfg_got(n, b, sizeof(b)));
}

/* Converters return 0 when they stored a value, 1 when the value is null
 * (treated as not given), -1 after reporting a problem. */
static int conv_str(const src_t *s, const yaml_node_t *n, const char *name, char **out) {
    if (is_null(n)) return 1;
    if (n->type != YAML_SCALAR_NODE) {
        cfg_err_type(s, n, "a string", name);
        return -1;
    }
    *out = sdup(s->ld, sval(n));
    return 0;
}

int cfg_conv_i64(const src_t *s, const yaml_node_t *n, const char *name, int64_t min, int64_t *out) {
    if (is_null(n)) return 1;
    const char *v = sval(n);
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (v == NULL || !*v || *end || errno) {
        cfg_err_type(s, n, "an integer", name);
        return -1;
    }
    if (x < min) {
        cfg_errn(s, n, "'%s' must be %s, got %lld", name, min > 0 ? "positive" : "zero or more", x);
        return -1;
    }
    *out = x;
    return 0;
}

static int conv_num(const src_t *s, const yaml_node_t *n, const char *name, double *out) {
    if (is_null(n)) return 1;
    const char *v = sval(n);
    char *end;
    double x = 0;
    int ok = v && (isdigit((unsigned char)*v) || *v == '-' || *v == '+' || *v == '.');
    if (ok) x = strtod(v, &end);
    if (!ok || *end || !isfinite(x)) {
        cfg_err_type(s, n, "a number", name);
        return -1;
    }
    *out = x;
    return 0;
}

static int conv_bool(const src_t *s, const yaml_node_t *n, const char *name, int *out) {
    if (is_null(n)) return 1;
    static const char *const t[] = {"true", "True", "TRUE", "yes", "on"};
    static const char *const f[] = {"false", "False", "FALSE", "no", "off"};
    const char *v = sval(n);
    for (size_t i = 0; v && i < 5; i++) {
        if (!strcmp(v, t[i])) return *out = 1, 0;
        if (!strcmp(v, f[i])) return *out = 0, 0;
    }
    cfg_err_type(s, n, "true or false", name);
    return -1;
}

/* USD per 1M tokens in the file, micro-USD per 1M tokens in memory. */
static int conv_price(const src_t *s, const yaml_node_t *n, const char *name, int64_t *out) {
    double x;
    int r = conv_num(s, n, name, &x);
    if (r) return r;
    if (x < 0) {
        cfg_errn(s, n, "negative price for '%s': %s", name, sval(n));
        return -1;
    }
    if (x > 1e9) {
        cfg_errn(s, n, "price for '%s' is out of range: %s", name, sval(n));
        return -1;
    }
    *out = llround(x * 1e6);
    return 0;
}

/* "HH:MM" UTC to minutes after midnight; "24:00" is allowed as an end. */
static int conv_hhmm(const src_t *s, const yaml_node_t *n, const char *name, int *out) {
    if (is_null(n)) return 1;
    const char *v = sval(n);
    int ok = v && strlen(v) == 5 && isdigit((unsigned char)v[0]) && isdigit((unsigned char)v[1]) &&
             v[2] == ':' && isdigit((unsigned char)v[3]) && isdigit((unsigned char)v[4]);
    int h = ok ? (v[0] - '0') * 10 + v[1] - '0' : 0, m = ok ? (v[3] - '0') * 10 + v[4] - '0' : 0;
    if (!ok || m > 59 || h > 24 || (h == 24 && m != 0)) {
        cfg_err_type(s, n, "a time HH:MM (UTC)", name);
        return -1;
    }
    *out = h * 60 + m;
    return 0;
}

/* A list of strings (a single string is a list of one), NULL-terminated. */
static int conv_strs(const src_t *s, const yaml_node_t *n, const char *name, char ***out, size_t *nout) {
    if (is_null(n)) return 1;
    if (n->type == YAML_MAPPING_NODE) {
        cfg_err_type(s, n, "a list of strings", name);
        return -1;
    }
    size_t cnt =
        n->type == YAML_SCALAR_NODE ? 1 : (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    char **arr = tg_pool_calloc(s->ld->pool, (cnt + 1) * sizeof(char *));
    if (arr == NULL) return s->ld->oom = 1, -1;
    int bad = 0;
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it = n->type == YAML_SCALAR_NODE ? n : node_at(s, n->data.sequence.items.start[i]);
        if (it->type != YAML_SCALAR_NODE || is_null(it)) {
            cfg_err_type(s, it, "a string", name);
            bad = 1;
            continue;
        }
        arr[i] = sdup(s->ld, sval(it));
    }
    if (bad) return -1;
    *out = arr;
    *nout = cnt;
    return 0;
}

/* ---- mappings described by field tables ------------------------------ */

/* Checks that `n` is a mapping whose keys are all in `f` (each once) and
 * fills vals[i] with the value of field i, NULL when absent. */
int cfg_collect(const src_t *s, const yaml_node_t *n, const field_t *f, size_t nf, const char *ctx,
                yaml_node_t **vals) {
    memset(vals, 0, nf * sizeof(*vals));
    if (n->type != YAML_MAPPING_NODE) {
        char b[80];
        cfg_errn(s, n, "expected a mapping for %s, got %s", ctx, cfg_got(n, b, sizeof(b)));
        return -1;
    }
    const char *names[MAX_FIELDS];
    for (size_t i = 0; i < nf; i++)
        names[i] = f[i].name;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key), *v = node_at(s, p->value);
        const char *key = sval(k);
        if (key == NULL) {
            cfg_errn(s, k, "expected a plain key in %s", ctx);
            continue;
        }
        size_t i = 0;
        while (i < nf && strcmp(key, f[i].name) != 0)
            i++;
        if (i == nf) {
            cfg_err_unknown(s, k, "key", key, ctx, names, nf, NULL);
            continue;
        }
        if (vals[i]) {
            cfg_errn(s, k, "duplicate key '%s' in %s", key, ctx);
            continue;
        }
        vals[i] = v;
    }
    return 0;
}

/* Converts every present field that is not F_SPECIAL into `obj`. */
void cfg_apply(const src_t *s, const field_t *f, size_t nf, yaml_node_t **vals, void *obj) {
    for (size_t i = 0; i < nf; i++) {
        const yaml_node_t *v = vals[i];
        char *o = (char *)obj + f[i].off;
        int64_t x;
        if (v == NULL) continue;
        switch (f[i].type) {
        case F_STR:
            conv_str(s, v, f[i].name, (char **)o);
            break;
        case F_STRS:
            conv_strs(s, v, f[i].name, (char ***)o, (size_t *)((char *)obj + f[i].off_n));
            break;
        case F_BOOL:
            conv_bool(s, v, f[i].name, (int *)o);
            break;
        case F_I64:
            cfg_conv_i64(s, v, f[i].name, f[i].min, (int64_t *)o);
            break;
        case F_U32:
            if (cfg_conv_i64(s, v, f[i].name, f[i].min, &x) == 0) {
                if (x > UINT_MAX)
                    cfg_errn(s, v, "'%s' is too large", f[i].name);
                else
                    *(unsigned *)o = (unsigned)x;
            }
            break;
        case F_SZ:
            if (cfg_conv_i64(s, v, f[i].name, f[i].min, &x) == 0) *(size_t *)o = (size_t)x;
            break;
        case F_NUM:
            if (conv_num(s, v, f[i].name, (double *)o) == 0 && *(double *)o < 0)
                cfg_errn(s, v, "'%s' must not be negative, got %s", f[i].name, sval(v));
            break;
        case F_PRICE:
            conv_price(s, v, f[i].name, (int64_t *)o);
            break;
        case F_HHMM:
            conv_hhmm(s, v, f[i].name, (int *)o);
            break;
        case F_SPECIAL:
            break;
        }
    }
}

/* ---- arrays of entries ------------------------------------------------- */

void *cfg_vec_push(ld_t *ld, vec_t *v, size_t elsz, meta_t **m) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 8;
        char *ni = tg_pool_calloc(ld->pool, nc * elsz);
        meta_t *nm = tg_pool_calloc(ld->pool, nc * sizeof(meta_t));
        if (ni == NULL || nm == NULL) {
            ld->oom = 1;
            return NULL;
        }
        if (v->n) {
            memcpy(ni, v->items, v->n * elsz);
            memcpy(nm, v->meta, v->n * sizeof(meta_t));
        }
        v->items = ni;
        v->meta = nm;
        v->cap = nc;
    }
    *m = &v->meta[v->n];
    return (char *)v->items + elsz * v->n++;
}

int cfg_expect_seq(const src_t *s, const yaml_node_t *n, const char *what) {
    if (n->type == YAML_SEQUENCE_NODE) return 0;
    char b[80];
    cfg_errn(s, n, "expected a list for %s, got %s", what, cfg_got(n, b, sizeof(b)));
    return -1;
}

int cfg_expect_map(const src_t *s, const yaml_node_t *n, const char *what) {
    if (n->type == YAML_MAPPING_NODE) return 0;
    char b[80];
    cfg_errn(s, n, "expected a mapping for %s, got %s", what, cfg_got(n, b, sizeof(b)));
    return -1;
}

/* Index of the entry of `v` named `name` (the first char * of each item). */
long cfg_find_named(const vec_t *v, size_t elsz, const char *name, size_t upto) {
    for (size_t i = 0; i < upto; i++)
        if (!strcmp(*(char **)((char *)v->items + i * elsz), name)) return (long)i;
    return -1;
}
