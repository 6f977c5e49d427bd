/* config.c — builds the immutable configuration snapshot (tg_config_t) from
 * config/tollgate.yaml and the files it includes, YAML or JSON, through the
 * libyaml document API so every node keeps its line and column.
 * Loading runs in two phases: parse each file into the snapshot's arrays
 * (reporting unknown keys, wrong types, bad values), then resolve names
 * across files (providers, prices, routes, aliases). Every problem is
 * collected as "FILE:LINE:COL: message" rather than stopping at the first.
 * All strings and arrays of a snapshot live in one tg_pool_t arena that the
 * last tg_config_unref() destroys; the current snapshot is a global pointer
 * behind a short mutex so taking a reference never races with a swap. */
#include "core/config.h"

#include "core/hash.h"
#include "core/pool.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#define PRICE_STALE_DAYS 90

typedef struct {
    const char *file;
    int line, col;
} pos_t;

/* Where an entry came from, kept beside each array while loading so that
 * cross-file checks can point at the right line. */
typedef struct {
    pos_t at;       /* the entry's name */
    pos_t aux;      /* alias target, price as_of, provider api_key_env */
    pos_t *cand_at; /* route candidates, one per candidate */
    int ok;         /* key: its sha256 parsed */
} meta_t;

typedef struct {
    void *items;
    meta_t *meta;
    size_t n, cap;
} vec_t;

typedef struct {
    tg_pool_t *pool;
    tg_diag_t *d;
    tg_config_t *c;
    vec_t prov, price, key, route, alias;
    char **open_real;  /* realpaths of the files being loaded: cycle guard */
    char **open_shown; /* the same files as the user named them */
    size_t depth;
    char **seen; /* every file loaded so far, so an include runs once */
    size_t n_seen;
    char **files; /* the same, as named, in the arena (tg_config_t.files) */
    size_t n_files;
    uint64_t digest;
    int oom;
} ld_t;

typedef struct {
    ld_t *ld;
    const char *file; /* arena copy, referenced by positions */
    yaml_document_t *doc;
    int is_main;
} src_t;

/* ---- diagnostics ---------------------------------------------------- */

void tg_diag_free(tg_diag_t *d) {
    if (d == NULL) return;
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    memset(d, 0, sizeof(*d));
}

static void diag_vadd(tg_diag_t *d, int is_err, pos_t p, const char *fmt, va_list ap) {
    char msg[1024], *line;
    vsnprintf(msg, sizeof(msg), fmt, ap);
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

__attribute__((format(printf, 3, 4))) static void err_at(ld_t *ld, pos_t p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_vadd(ld->d, 1, p, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 3, 4))) static void warn_at(ld_t *ld, pos_t p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_vadd(ld->d, 0, p, fmt, ap);
    va_end(ap);
}

static pos_t at(const src_t *s, const yaml_node_t *n) {
    return (pos_t){s->file, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

__attribute__((format(printf, 3, 4))) static void errn(const src_t *s, const yaml_node_t *n, const char *fmt,
                                                       ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_vadd(s->ld->d, 1, at(s, n), fmt, ap);
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
static void err_unknown(const src_t *s, const yaml_node_t *n, const char *what, const char *word,
                        const char *where, const char *const *names, size_t nn, const char *expected) {
    char in[160] = "", hint[160] = "";
    const char *sg = suggest(word, names, nn);
    if (where) snprintf(in, sizeof(in), " in %s", where);
    if (sg)
        snprintf(hint, sizeof(hint), " (did you mean '%s'?)", sg);
    else if (expected)
        snprintf(hint, sizeof(hint), " (expected %s)", expected);
    errn(s, n, "unknown %s '%s'%s%s", what, word, in, hint);
}

/* ---- scalars --------------------------------------------------------- */

static const char *sval(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = sval(n);
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

/* How a wrong-typed value is shown back: its text, or its kind. */
static const char *got(const yaml_node_t *n, char *buf, size_t cap) {
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    const char *v = sval(n);
    snprintf(buf, cap, "'%.60s'", v ? v : "");
    return buf;
}

static void err_type(const src_t *s, const yaml_node_t *n, const char *expected, const char *name) {
    char b[80];
    errn(s, n, "expected %s for '%s', got %s", expected, name, got(n, b, sizeof(b)));
}

static char *sdup(ld_t *ld, const char *str) {
    char *r = tg_pool_strdup(ld->pool, str);
    if (r == NULL) ld->oom = 1;
    return r;
}

static yaml_node_t *node_at(const src_t *s, int idx) {
    return yaml_document_get_node(s->doc, idx);
}

/* Converters return 0 when they stored a value, 1 when the value is null
 * (treated as not given), -1 after reporting a problem. */
static int conv_str(const src_t *s, const yaml_node_t *n, const char *name, char **out) {
    if (is_null(n)) return 1;
    if (n->type != YAML_SCALAR_NODE) {
        err_type(s, n, "a string", name);
        return -1;
    }
    *out = sdup(s->ld, sval(n));
    return 0;
}

static int conv_i64(const src_t *s, const yaml_node_t *n, const char *name, int64_t min, int64_t *out) {
    if (is_null(n)) return 1;
    const char *v = sval(n);
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (v == NULL || !*v || *end || errno) {
        err_type(s, n, "an integer", name);
        return -1;
    }
    if (x < min) {
        errn(s, n, "'%s' must be %s, got %lld", name, min > 0 ? "positive" : "zero or more", x);
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
        err_type(s, n, "a number", name);
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
    err_type(s, n, "true or false", name);
    return -1;
}

/* USD per 1M tokens in the file, micro-USD per 1M tokens in memory. */
static int conv_price(const src_t *s, const yaml_node_t *n, const char *name, int64_t *out) {
    double x;
    int r = conv_num(s, n, name, &x);
    if (r) return r;
    if (x < 0) {
        errn(s, n, "negative price for '%s': %s", name, sval(n));
        return -1;
    }
    if (x > 1e9) {
        errn(s, n, "price for '%s' is out of range: %s", name, sval(n));
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
        err_type(s, n, "a time HH:MM (UTC)", name);
        return -1;
    }
    *out = h * 60 + m;
    return 0;
}

/* A list of strings (a single string is a list of one), NULL-terminated. */
static int conv_strs(const src_t *s, const yaml_node_t *n, const char *name, char ***out, size_t *nout) {
    if (is_null(n)) return 1;
    if (n->type == YAML_MAPPING_NODE) {
        err_type(s, n, "a list of strings", name);
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
            err_type(s, it, "a string", name);
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

typedef enum { F_STR, F_STRS, F_BOOL, F_I64, F_U32, F_SZ, F_NUM, F_PRICE, F_HHMM, F_SPECIAL } ftype_t;

typedef struct {
    const char *name;
    ftype_t type;
    size_t off, off_n; /* off_n: the count of an F_STRS list */
    int min;           /* integers: 1 = must be positive, 0 = zero or more */
} field_t;

#define MAX_FIELDS 16

/* Checks that `n` is a mapping whose keys are all in `f` (each once) and
 * fills vals[i] with the value of field i, NULL when absent. */
static int collect(const src_t *s, const yaml_node_t *n, const field_t *f, size_t nf, const char *ctx,
                   yaml_node_t **vals) {
    memset(vals, 0, nf * sizeof(*vals));
    if (n->type != YAML_MAPPING_NODE) {
        char b[80];
        errn(s, n, "expected a mapping for %s, got %s", ctx, got(n, b, sizeof(b)));
        return -1;
    }
    const char *names[MAX_FIELDS];
    for (size_t i = 0; i < nf; i++)
        names[i] = f[i].name;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key), *v = node_at(s, p->value);
        const char *key = sval(k);
        if (key == NULL) {
            errn(s, k, "expected a plain key in %s", ctx);
            continue;
        }
        size_t i = 0;
        while (i < nf && strcmp(key, f[i].name) != 0)
            i++;
        if (i == nf) {
            err_unknown(s, k, "key", key, ctx, names, nf, NULL);
            continue;
        }
        if (vals[i]) {
            errn(s, k, "duplicate key '%s' in %s", key, ctx);
            continue;
        }
        vals[i] = v;
    }
    return 0;
}

/* Converts every present field that is not F_SPECIAL into `obj`. */
static void apply(const src_t *s, const field_t *f, size_t nf, yaml_node_t **vals, void *obj) {
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
            conv_i64(s, v, f[i].name, f[i].min, (int64_t *)o);
            break;
        case F_U32:
            if (conv_i64(s, v, f[i].name, f[i].min, &x) == 0) {
                if (x > UINT_MAX)
                    errn(s, v, "'%s' is too large", f[i].name);
                else
                    *(unsigned *)o = (unsigned)x;
            }
            break;
        case F_SZ:
            if (conv_i64(s, v, f[i].name, f[i].min, &x) == 0) *(size_t *)o = (size_t)x;
            break;
        case F_NUM:
            if (conv_num(s, v, f[i].name, (double *)o) == 0 && *(double *)o < 0)
                errn(s, v, "'%s' must not be negative, got %s", f[i].name, sval(v));
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

#define NF(t) (sizeof(t) / sizeof((t)[0]))

static void *vec_push(ld_t *ld, vec_t *v, size_t elsz, meta_t **m) {
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

static size_t seq_len(const yaml_node_t *n) {
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static int expect_seq(const src_t *s, const yaml_node_t *n, const char *what) {
    if (n->type == YAML_SEQUENCE_NODE) return 0;
    char b[80];
    errn(s, n, "expected a list for %s, got %s", what, got(n, b, sizeof(b)));
    return -1;
}

static int expect_map(const src_t *s, const yaml_node_t *n, const char *what) {
    if (n->type == YAML_MAPPING_NODE) return 0;
    char b[80];
    errn(s, n, "expected a mapping for %s, got %s", what, got(n, b, sizeof(b)));
    return -1;
}

static int missing(const yaml_node_t *v) {
    return v == NULL || is_null(v);
}

static void strip_slash(char *u) {
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        u[--n] = '\0';
}

/* http:// or https://, a host, an optional numeric port, no spaces. */
static int url_ok(const char *u) {
    const char *h;
    if (!strncmp(u, "http://", 7))
        h = u + 7;
    else if (!strncmp(u, "https://", 8))
        h = u + 8;
    else
        return 0;
    if (strpbrk(u, " \t\r\n")) return 0;
    size_t hl;
    if (*h == '[') {
        const char *e = strchr(h, ']');
        if (e == NULL || e == h + 1) return 0;
        hl = (size_t)(e - h) + 1;
    } else {
        hl = strcspn(h, ":/?#");
    }
    if (hl == 0 || memchr(h, '@', hl)) return 0;
    const char *r = h + hl;
    if (*r == ':') {
        char *end;
        long port = strtol(r + 1, &end, 10);
        if (end == r + 1 || port < 1 || port > 65535 || (*end && *end != '/')) return 0;
    } else if (*r && *r != '/' && *r != '?') {
        return 0;
    }
    return 1;
}

static int host_ok(const char *h, size_t n, int v6) {
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && !strchr(v6 ? ":." : ".-_", h[i])) return 0;
    return n > 0;
}

/* "host:port", "[v6]:port", ":port" or "port"; host defaults to 0.0.0.0. */
static int split_listen(ld_t *ld, const char *v, char **host, int *port) {
    const char *hs = v, *ps;
    size_t hl;
    int v6 = 0;
    if (*v == '[') {
        const char *e = strchr(v, ']');
        if (e == NULL || e[1] != ':') return -1;
        hs = v + 1;
        hl = (size_t)(e - hs);
        ps = e + 2;
        v6 = 1;
    } else {
        const char *c = strrchr(v, ':');
        hl = c ? (size_t)(c - v) : 0;
        ps = c ? c + 1 : v;
        if (c && memchr(v, ':', hl)) return -1; /* bare IPv6 needs brackets */
    }
    if (!*ps || strlen(ps) > 5 || strspn(ps, "0123456789") != strlen(ps)) return -1;
    *port = atoi(ps);
    if (*port < 1 || *port > 65535) return -1;
    if (hl == 0 && !v6) {
        *host = sdup(ld, "0.0.0.0");
        return 0;
    }
    if (!host_ok(hs, hl, v6)) return -1;
    *host = tg_pool_strndup(ld->pool, hs, hl);
    return 0;
}

/* ---- top level -------------------------------------------------------- */

enum {
    T_LISTEN,
    T_WORKERS,
    T_REDIS,
    T_ADMIN,
    T_LOG,
    T_JOURNAL,
    T_LIMITS,
    T_SIM,
    T_INCLUDE,
    T_PROVIDERS,
    T_KEYS,
    T_ROUTES,
    T_ALIASES,
    T_PRICES,
    T_CIRCUIT,
    T_ROUTING,
    T_N
};

static const field_t top_fields[] = {
    {"listen", F_SPECIAL, 0, 0, 0},
    {"workers", F_SPECIAL, 0, 0, 0},
    {"redis", F_SPECIAL, 0, 0, 0},
    {"admin_token_env", F_STR, offsetof(tg_config_t, admin_token_env), 0, 0},
    {"log_level", F_STR, offsetof(tg_config_t, log_level), 0, 0},
    {"journal", F_STR, offsetof(tg_config_t, journal_path), 0, 0},
    {"limits", F_SPECIAL, 0, 0, 0},
    {"simulator", F_SPECIAL, 0, 0, 0},
    {"include", F_SPECIAL, 0, 0, 0},
    {"providers", F_SPECIAL, 0, 0, 0},
    {"keys", F_SPECIAL, 0, 0, 0},
    {"routes", F_SPECIAL, 0, 0, 0},
    {"aliases", F_SPECIAL, 0, 0, 0},
    {"prices", F_SPECIAL, 0, 0, 0},
    {"circuit", F_SPECIAL, 0, 0, 0},
    {"routing", F_SPECIAL, 0, 0, 0},
};

#define LIM(f, min)                                                                                          \
    { #f, F_U32, offsetof(tg_limits_t, f), 0, min }
static const field_t limit_fields[] = {
    {"max_body_bytes", F_SZ, offsetof(tg_limits_t, max_body_bytes), 0, 1},
    LIM(upstream_connect_ms, 1),
    LIM(first_byte_ms, 1),
    LIM(idle_ms, 1),
    LIM(total_ms, 0), /* 0 = no overall deadline */
    {"max_header_bytes", F_SZ, offsetof(tg_limits_t, max_header_bytes), 0, 1},
    LIM(header_timeout_ms, 1),
    LIM(body_timeout_ms, 1),
    LIM(keepalive_timeout_ms, 1),
    LIM(max_attempts, 1),
};

static const field_t sim_fields[] = {
    {"url", F_STR, offsetof(tg_config_t, sim_url), 0, 0},
    {"when_no_key", F_BOOL, offsetof(tg_config_t, sim_when_no_key), 0, 0},
    {"embedded", F_BOOL, offsetof(tg_config_t, sim_embedded), 0, 0},
};

#define CIR(f, min)                                                                                          \
    { #f, F_U32, offsetof(tg_circuit_conf_t, f), 0, min }
static const field_t circuit_fields[] = {CIR(failures, 1), CIR(cooldown_ms, 1), CIR(max_cooldown_ms, 1)};

static const field_t routing_fields[] = {
    {"default_output_tokens", F_I64, offsetof(tg_config_t, default_output_tokens), 0, 1},
    {"latency_alpha", F_NUM, offsetof(tg_config_t, latency_alpha), 0, 0},
};

/* `circuit:` and `routing:`, the policy engine's knobs. */
static void parse_policy_knobs(const src_t *s, yaml_node_t **v) {
    tg_config_t *c = s->ld->c;
    yaml_node_t *cv[NF(circuit_fields)], *rv[NF(routing_fields)];
    if (v[T_CIRCUIT] && !is_null(v[T_CIRCUIT]) &&
        collect(s, v[T_CIRCUIT], circuit_fields, NF(circuit_fields), "circuit", cv) == 0) {
        apply(s, circuit_fields, NF(circuit_fields), cv, &c->circuit);
        if (c->circuit.max_cooldown_ms < c->circuit.cooldown_ms)
            errn(s, cv[2] ? cv[2] : v[T_CIRCUIT], "circuit max_cooldown_ms (%u) is below cooldown_ms (%u)",
                 c->circuit.max_cooldown_ms, c->circuit.cooldown_ms);
    }
    if (v[T_ROUTING] && !is_null(v[T_ROUTING]) &&
        collect(s, v[T_ROUTING], routing_fields, NF(routing_fields), "routing", rv) == 0) {
        apply(s, routing_fields, NF(routing_fields), rv, c);
        if (rv[1] && !(c->latency_alpha > 0 && c->latency_alpha <= 1))
            errn(s, rv[1], "routing latency_alpha must be in (0, 1], got %s", sval(rv[1]));
    }
}

static void parse_listen(const src_t *s, const yaml_node_t *n) {
    tg_config_t *c = s->ld->c;
    const char *v = sval(n);
    if (v == NULL || split_listen(s->ld, v, &c->listen_host, &c->listen_port) < 0) {
        char b[80];
        errn(s, n, "cannot parse listen address %s (expected host:port, e.g. 0.0.0.0:8080)",
             got(n, b, sizeof(b)));
    }
}

static void parse_workers(const src_t *s, const yaml_node_t *n) {
    int64_t w;
    const char *v = sval(n);
    if (v && !strcmp(v, "auto")) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        s->ld->c->workers = cpus > 0 ? (int)cpus : 1;
    } else if (v && isdigit((unsigned char)*v) == 0 && *v != '-') {
        err_type(s, n, "auto or a positive integer", "workers");
    } else if (conv_i64(s, n, "workers", 1, &w) == 0) {
        if (w > 4096)
            errn(s, n, "'workers' is too large: %lld", (long long)w);
        else
            s->ld->c->workers = (int)w;
    }
}

static void parse_redis(const src_t *s, const yaml_node_t *n) {
    const char *v = sval(n);
    s->ld->c->redis_url = NULL;
    if (is_null(n) || (v && !*v)) return; /* no ledger */
    if (v && (!strncmp(v, "redis://", 8) || !strncmp(v, "rediss://", 9) || !strncmp(v, "unix:", 5)) &&
        !strpbrk(v, " \t")) {
        s->ld->c->redis_url = sdup(s->ld, v);
        return;
    }
    char b[80];
    errn(s, n, "redis must be a redis://, rediss:// or unix: URL, or null for no ledger; got %s",
         got(n, b, sizeof(b)));
}

static void parse_main(const src_t *s, yaml_node_t **v) {
    /* The names tg_log_parse_level() accepts. */
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    tg_config_t *c = s->ld->c;
    apply(s, top_fields, T_N, v, c);
    if (v[T_LISTEN]) parse_listen(s, v[T_LISTEN]);
    if (v[T_WORKERS]) parse_workers(s, v[T_WORKERS]);
    if (v[T_REDIS]) parse_redis(s, v[T_REDIS]);
    size_t li = 0;
    while (c->log_level && li < NF(levels) && strcmp(c->log_level, levels[li]))
        li++;
    if (v[T_LOG] && c->log_level && li == NF(levels))
        err_unknown(s, v[T_LOG], "log_level", c->log_level, NULL, levels, 4, "debug, info, warn or error");
    yaml_node_t *lv[NF(limit_fields)], *sv[NF(sim_fields)];
    if (v[T_LIMITS] && !is_null(v[T_LIMITS]) &&
        collect(s, v[T_LIMITS], limit_fields, NF(limit_fields), "limits", lv) == 0)
        apply(s, limit_fields, NF(limit_fields), lv, &c->limits);
    if (v[T_SIM] && !is_null(v[T_SIM]) &&
        collect(s, v[T_SIM], sim_fields, NF(sim_fields), "simulator", sv) == 0) {
        apply(s, sim_fields, NF(sim_fields), sv, c);
        if (sv[0] && c->sim_url && !url_ok(c->sim_url))
            errn(s, sv[0], "simulator url '%s' is not an http:// or https:// URL with a host", c->sim_url);
    }
    if (c->sim_url) strip_slash(c->sim_url);
    parse_policy_knobs(s, v);
}

/* ---- providers ------------------------------------------------------- */

static const char *const dialects[] = {"openai", "anthropic"};

enum { P_DIALECT, P_BASE, P_ENV, P_REGION, P_MODELS, P_MAXTOK, P_N };
static const field_t prov_fields[] = {
    {"dialect", F_STR, offsetof(tg_provider_t, dialect_name), 0, 0},
    {"base_url", F_STR, offsetof(tg_provider_t, base_url), 0, 0},
    {"api_key_env", F_STR, offsetof(tg_provider_t, api_key_env), 0, 0},
    {"region", F_STR, offsetof(tg_provider_t, region), 0, 0},
    {"models", F_STRS, offsetof(tg_provider_t, models), offsetof(tg_provider_t, n_models), 0},
    {"default_max_tokens", F_I64, offsetof(tg_provider_t, default_max_tokens), 0, 1},
};

/* Index of the entry of `v` named `name` (the first char * of each item). */
static long find_named(const vec_t *v, size_t elsz, const char *name, size_t upto) {
    for (size_t i = 0; i < upto; i++)
        if (!strcmp(*(char **)((char *)v->items + i * elsz), name)) return (long)i;
    return -1;
}

/* Reports `name` as a duplicate when an earlier entry of `v` has it. */
static int dup_check(const src_t *s, const yaml_node_t *n, const vec_t *v, size_t elsz, const char *what,
                     const char *name, size_t upto) {
    long i = find_named(v, elsz, name, upto);
    if (i < 0) return 0;
    pos_t f = v->meta[i].at;
    errn(s, n, "duplicate %s '%s' (first defined at %s:%d:%d)", what, name, f.file, f.line, f.col);
    return -1;
}

static void parse_provider(const src_t *s, const yaml_node_t *kn, const yaml_node_t *vn) {
    ld_t *ld = s->ld;
    const char *name = sval(kn);
    if (dup_check(s, kn, &ld->prov, sizeof(tg_provider_t), "provider", name, ld->prov.n)) return;
    if (!*name || strchr(name, '/')) {
        errn(s, kn, "provider name '%s' must be non-empty and contain no '/'", name);
        return;
    }
    meta_t *m;
    tg_provider_t *p = vec_push(ld, &ld->prov, sizeof(*p), &m);
    if (p == NULL) return;
    p->name = sdup(ld, name);
    m->at = m->aux = at(s, kn);
    char ctx[160];
    snprintf(ctx, sizeof(ctx), "provider '%s'", name);
    yaml_node_t *v[P_N];
    if (collect(s, vn, prov_fields, P_N, ctx, v) < 0) return;
    apply(s, prov_fields, P_N, v, p);
    if (v[P_ENV]) m->aux = at(s, v[P_ENV]);
    if (missing(v[P_DIALECT]))
        errn(s, kn, "provider '%s' is missing required field 'dialect'", name);
    else if (p->dialect_name && strcmp(p->dialect_name, "openai") && strcmp(p->dialect_name, "anthropic"))
        err_unknown(s, v[P_DIALECT], "dialect", p->dialect_name, NULL, dialects, 2, "openai or anthropic");
    if (missing(v[P_BASE]))
        errn(s, kn, "provider '%s' is missing required field 'base_url'", name);
    else if (p->base_url && !url_ok(p->base_url))
        errn(s, v[P_BASE], "base_url '%s' is not an http:// or https:// URL with a host", p->base_url);
    else if (p->base_url)
        strip_slash(p->base_url);
}

static void parse_providers(const src_t *s, const yaml_node_t *n) {
    if (is_null(n) || expect_map(s, n, "providers") < 0) return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key);
        if (sval(k) == NULL)
            errn(s, k, "expected a provider name");
        else
            parse_provider(s, k, node_at(s, p->value));
    }
}

/* ---- keys ------------------------------------------------------------ */

enum { K_NAME, K_SHA, K_TAGS, K_BUDGET, K_RPM, K_TPM, K_N };
static const field_t key_fields[] = {
    {"name", F_STR, offsetof(tg_key_t, name), 0, 0},
    {"sha256", F_SPECIAL, 0, 0, 0},
    {"tags", F_STRS, offsetof(tg_key_t, tags), offsetof(tg_key_t, n_tags), 0},
    {"budget_usd_month", F_NUM, offsetof(tg_key_t, budget_usd_month), 0, 0},
    {"rpm", F_I64, offsetof(tg_key_t, rpm), 0, 0},
    {"tpm", F_I64, offsetof(tg_key_t, tpm), 0, 0},
};

static int parse_hex32(const char *h, unsigned char out[32]) {
    if (h == NULL || strlen(h) != 64 || strspn(h, "0123456789abcdefABCDEF") != 64) return -1;
    for (int i = 0; i < 32; i++) {
        char b[3] = {h[2 * i], h[2 * i + 1], 0};
        out[i] = (unsigned char)strtoul(b, NULL, 16);
    }
    return 0;
}

static void parse_key_sha(const src_t *s, const yaml_node_t *n, tg_key_t *k, meta_t *m, size_t self) {
    ld_t *ld = s->ld;
    const char *h = sval(n);
    if (parse_hex32(h, k->sha256) < 0) {
        char b[80];
        errn(s, n, "sha256 of key '%s' must be 64 hex characters, got %s", k->name, got(n, b, sizeof(b)));
        return;
    }
    m->ok = 1;
    /* Two keys with one hash would make a secret ambiguous. */
    for (size_t i = 0; i < self; i++) {
        tg_key_t *o = &((tg_key_t *)ld->key.items)[i];
        if (ld->key.meta[i].ok && !memcmp(o->sha256, k->sha256, 32)) {
            pos_t f = ld->key.meta[i].at;
            errn(s, n, "key '%s' has the same sha256 as key '%s' (%s:%d:%d)", k->name, o->name, f.file,
                 f.line, f.col);
        }
    }
}

static void parse_key(const src_t *s, const yaml_node_t *it) {
    ld_t *ld = s->ld;
    meta_t *m;
    tg_key_t *k = vec_push(ld, &ld->key, sizeof(*k), &m);
    if (k == NULL) return;
    size_t self = ld->key.n - 1;
    m->at = at(s, it);
    k->name = ""; /* until parsed: name lookups never see NULL */
    yaml_node_t *v[K_N];
    if (collect(s, it, key_fields, K_N, "key", v) < 0) return;
    apply(s, key_fields, K_N, v, k);
    if (!*k->name) {
        if (missing(v[K_NAME])) errn(s, it, "key is missing required field 'name'");
    } else {
        m->at = at(s, v[K_NAME]);
        dup_check(s, v[K_NAME], &ld->key, sizeof(*k), "key", k->name, self);
    }
    if (missing(v[K_SHA]))
        errn(s, it, "key '%s' is missing required field 'sha256'", k->name);
    else
        parse_key_sha(s, v[K_SHA], k, m, self);
}

static void parse_keys(const src_t *s, const yaml_node_t *n) {
    if (is_null(n) || expect_seq(s, n, "keys") < 0) return;
    for (size_t i = 0; i < seq_len(n); i++)
        parse_key(s, node_at(s, n->data.sequence.items.start[i]));
}

/* ---- routes ---------------------------------------------------------- */

enum { R_NAME, R_MATCH, R_REQUIRE, R_STRATEGY, R_CANDS, R_N };
static const field_t route_fields[] = {
    {"name", F_STR, offsetof(tg_route_t, name), 0, 0},
    {"match", F_SPECIAL, 0, 0, 0},
    {"require", F_SPECIAL, 0, 0, 0},
    {"strategy", F_SPECIAL, 0, 0, 0},
    {"candidates", F_SPECIAL, 0, 0, 0},
};

enum { M_MODEL, M_LANG, M_KEY, M_TAG, M_HEADER, M_TOOLS, M_IMAGES, M_MINP, M_MAXP, M_TIME, M_N };
static const field_t match_fields[] = {
    {"model", F_STR, offsetof(tg_route_t, m_model), 0, 0},
    {"language", F_STR, offsetof(tg_route_t, m_language), 0, 0},
    {"key", F_STR, offsetof(tg_route_t, m_key), 0, 0},
    {"key_tag", F_STR, offsetof(tg_route_t, m_key_tag), 0, 0},
    {"header", F_SPECIAL, 0, 0, 0},
    {"has_tools", F_BOOL, offsetof(tg_route_t, m_has_tools), 0, 0},
    {"has_images", F_BOOL, offsetof(tg_route_t, m_has_images), 0, 0},
    {"min_prompt_tokens", F_I64, offsetof(tg_route_t, m_min_prompt_tokens), 0, 0},
    {"max_prompt_tokens", F_I64, offsetof(tg_route_t, m_max_prompt_tokens), 0, 0},
    {"time", F_SPECIAL, 0, 0, 0},
};

static const field_t header_fields[] = {
    {"name", F_STR, offsetof(tg_route_t, m_header_name), 0, 0},
    {"value", F_STR, offsetof(tg_route_t, m_header_value), 0, 0},
};

static const field_t time_fields[] = {
    {"from", F_HHMM, offsetof(tg_route_t, m_time_from), 0, 0},
    {"to", F_HHMM, offsetof(tg_route_t, m_time_to), 0, 0},
};

static const field_t require_fields[] = {
    {"region", F_STRS, offsetof(tg_route_t, r_regions), offsetof(tg_route_t, n_r_regions), 0},
    {"max_usd_per_mtok_output", F_NUM, offsetof(tg_route_t, r_max_usd_per_mtok_output), 0, 0},
    {"min_context", F_I64, offsetof(tg_route_t, r_min_context), 0, 0},
};

static const field_t cand_fields[] = {
    {"to", F_STR, offsetof(tg_candidate_t, target), 0, 0},
    {"weight", F_U32, offsetof(tg_candidate_t, weight), 0, 1},
};

static const char *const languages[] = {"zh", "ja", "ko", "en", "other"};
static const char *const strategies[] = {"ordered", "weighted", "cheapest", "fastest"};

/* A sub-mapping whose fields must all be given (header, time). */
static void parse_pair_map(const src_t *s, const yaml_node_t *n, const field_t *f, const char *ctx,
                           tg_route_t *r) {
    yaml_node_t *v[2];
    if (collect(s, n, f, 2, ctx, v) < 0) return;
    apply(s, f, 2, v, r);
    for (int i = 0; i < 2; i++)
        if (missing(v[i])) errn(s, n, "%s is missing required field '%s'", ctx, f[i].name);
}

static void parse_match(const src_t *s, const yaml_node_t *n, tg_route_t *r, const char *rname) {
    char ctx[200];
    snprintf(ctx, sizeof(ctx), "match of route '%s'", rname);
    yaml_node_t *v[M_N];
    if (collect(s, n, match_fields, M_N, ctx, v) < 0) return;
    apply(s, match_fields, M_N, v, r);
    if (r->m_language) {
        size_t i = 0;
        while (i < NF(languages) && strcmp(r->m_language, languages[i]))
            i++;
        if (i == NF(languages))
            err_unknown(s, v[M_LANG], "language", r->m_language, NULL, languages, NF(languages),
                        "zh, ja, ko, en or other");
    }
    if (v[M_HEADER]) parse_pair_map(s, v[M_HEADER], header_fields, "header match", r);
    if (v[M_TIME]) parse_pair_map(s, v[M_TIME], time_fields, "time match", r);
    if (r->m_min_prompt_tokens >= 0 && r->m_max_prompt_tokens >= 0 &&
        r->m_min_prompt_tokens > r->m_max_prompt_tokens)
        errn(s, v[M_MINP], "min_prompt_tokens (%lld) is greater than max_prompt_tokens (%lld)",
             (long long)r->m_min_prompt_tokens, (long long)r->m_max_prompt_tokens);
}

static void parse_strategy(const src_t *s, const yaml_node_t *n, tg_route_t *r) {
    const char *v = sval(n);
    if (v == NULL) {
        err_type(s, n, "a strategy name", "strategy");
        return;
    }
    for (size_t i = 0; i < NF(strategies); i++)
        if (!strcmp(v, strategies[i])) {
            static const tg_strategy_t map[] = {TG_STRATEGY_ORDERED, TG_STRATEGY_WEIGHTED,
                                                TG_STRATEGY_CHEAPEST, TG_STRATEGY_FASTEST};
            r->strategy = map[i];
            return;
        }
    err_unknown(s, n, "strategy", v, NULL, strategies, NF(strategies),
                "cheapest, fastest, weighted or ordered");
}

static void parse_candidate(const src_t *s, const yaml_node_t *it, tg_candidate_t *cd) {
    cd->weight = 1;
    if (it->type == YAML_SCALAR_NODE && !is_null(it)) {
        cd->target = sdup(s->ld, sval(it));
        return;
    }
    if (it->type != YAML_MAPPING_NODE) {
        err_type(s, it, "provider/model or {to, weight}", "candidates");
        return;
    }
    yaml_node_t *v[2];
    if (collect(s, it, cand_fields, 2, "candidate", v) < 0) return;
    apply(s, cand_fields, 2, v, cd);
    if (missing(v[0])) errn(s, it, "candidate is missing required field 'to'");
}

static void parse_candidates(const src_t *s, const yaml_node_t *n, tg_route_t *r, meta_t *m) {
    if (expect_seq(s, n, "candidates") < 0) return;
    size_t cnt = seq_len(n);
    if (cnt == 0) {
        errn(s, n, "route '%s' has no candidates", r->name);
        return;
    }
    r->candidates = tg_pool_calloc(s->ld->pool, cnt * sizeof(*r->candidates));
    m->cand_at = tg_pool_calloc(s->ld->pool, cnt * sizeof(*m->cand_at));
    if (r->candidates == NULL || m->cand_at == NULL) {
        s->ld->oom = 1;
        return;
    }
    r->n_candidates = cnt;
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it = node_at(s, n->data.sequence.items.start[i]);
        m->cand_at[i] = at(s, it);
        parse_candidate(s, it, &r->candidates[i]);
    }
}

static void parse_route(const src_t *s, const yaml_node_t *it) {
    ld_t *ld = s->ld;
    meta_t *m;
    tg_route_t *r = vec_push(ld, &ld->route, sizeof(*r), &m);
    if (r == NULL) return;
    size_t self = ld->route.n - 1;
    r->name = ""; /* until parsed: name lookups never see NULL */
    r->m_has_tools = r->m_has_images = -1;
    r->m_min_prompt_tokens = r->m_max_prompt_tokens = -1;
    r->m_time_from = r->m_time_to = -1;
    r->strategy = TG_STRATEGY_ORDERED;
    m->at = at(s, it);
    r->file = s->file;
    r->line = m->at.line;
    yaml_node_t *v[R_N];
    if (collect(s, it, route_fields, R_N, "route", v) < 0) return;
    apply(s, route_fields, R_N, v, r);
    if (!*r->name) {
        if (missing(v[R_NAME])) errn(s, it, "route is missing required field 'name'");
    } else if (dup_check(s, v[R_NAME], &ld->route, sizeof(*r), "route", r->name, self) == 0 &&
               strchr(r->name, '/')) {
        errn(s, v[R_NAME], "route name '%s' must not contain '/' (that form means provider/model)", r->name);
    }
    if (v[R_MATCH] && !is_null(v[R_MATCH])) parse_match(s, v[R_MATCH], r, r->name);
    if (v[R_REQUIRE] && !is_null(v[R_REQUIRE])) {
        yaml_node_t *rv[NF(require_fields)];
        if (collect(s, v[R_REQUIRE], require_fields, NF(require_fields), "require", rv) == 0)
            apply(s, require_fields, NF(require_fields), rv, r);
    }
    if (v[R_STRATEGY]) parse_strategy(s, v[R_STRATEGY], r);
    if (missing(v[R_CANDS]))
        errn(s, it, "route '%s' is missing required field 'candidates'", r->name);
    else
        parse_candidates(s, v[R_CANDS], r, m);
}

static void parse_routes(const src_t *s, const yaml_node_t *n) {
    if (is_null(n) || expect_seq(s, n, "routes") < 0) return;
    for (size_t i = 0; i < seq_len(n); i++)
        parse_route(s, node_at(s, n->data.sequence.items.start[i]));
}

static void parse_aliases(const src_t *s, const yaml_node_t *n) {
    ld_t *ld = s->ld;
    if (is_null(n) || expect_map(s, n, "aliases") < 0) return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key), *v = node_at(s, p->value);
        const char *name = sval(k);
        if (name == NULL) {
            errn(s, k, "expected an alias name");
            continue;
        }
        if (dup_check(s, k, &ld->alias, sizeof(tg_alias_t), "alias", name, ld->alias.n)) continue;
        meta_t *m;
        tg_alias_t *a = vec_push(ld, &ld->alias, sizeof(*a), &m);
        if (a == NULL) return;
        a->name = sdup(ld, name);
        m->at = at(s, k);
        m->aux = at(s, v);
        if (v->type != YAML_SCALAR_NODE || is_null(v))
            err_type(s, v, "provider/model or a route name", name);
        else
            a->target = sdup(ld, sval(v));
    }
}

/* ---- prices ---------------------------------------------------------- */

enum {
    PR_INPUT,
    PR_CACHED,
    PR_OUTPUT,
    PR_WRITE,
    PR_CONTEXT,
    PR_MAXOUT,
    PR_WINDOWS,
    PR_SOURCE,
    PR_ASOF,
    PR_N
};
static const field_t price_fields[] = {
    {"input", F_PRICE, offsetof(tg_price_t, input), 0, 0},
    {"cached_input", F_PRICE, offsetof(tg_price_t, cached_input), 0, 0},
    {"output", F_PRICE, offsetof(tg_price_t, output), 0, 0},
    {"cache_write", F_PRICE, offsetof(tg_price_t, cache_write), 0, 0},
    {"context", F_I64, offsetof(tg_price_t, context), 0, 0},
    {"max_output", F_I64, offsetof(tg_price_t, max_output), 0, 0},
    {"windows", F_SPECIAL, 0, 0, 0},
    {"source", F_STR, offsetof(tg_price_t, source), 0, 0},
    {"as_of", F_STR, offsetof(tg_price_t, as_of), 0, 0},
};

static const field_t window_fields[] = {
    {"from", F_HHMM, offsetof(tg_price_window_t, from_min), 0, 0},
    {"to", F_HHMM, offsetof(tg_price_window_t, to_min), 0, 0},
    {"input", F_PRICE, offsetof(tg_price_window_t, input), 0, 0},
    {"cached_input", F_PRICE, offsetof(tg_price_window_t, cached_input), 0, 0},
    {"output", F_PRICE, offsetof(tg_price_window_t, output), 0, 0},
};

static void parse_windows(const src_t *s, const yaml_node_t *n, tg_price_t *p) {
    if (is_null(n) || expect_seq(s, n, "windows") < 0) return;
    size_t cnt = seq_len(n);
    p->windows = tg_pool_calloc(s->ld->pool, (cnt ? cnt : 1) * sizeof(*p->windows));
    if (p->windows == NULL) {
        s->ld->oom = 1;
        return;
    }
    p->n_windows = cnt;
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it = node_at(s, n->data.sequence.items.start[i]);
        tg_price_window_t *w = &p->windows[i];
        w->from_min = w->to_min = -1;
        w->input = w->cached_input = w->output = -1; /* keep the base price */
        yaml_node_t *v[NF(window_fields)];
        if (collect(s, it, window_fields, NF(window_fields), "price window", v) < 0) continue;
        apply(s, window_fields, NF(window_fields), v, w);
        for (int f = 0; f < 2; f++)
            if (missing(v[f]))
                errn(s, it, "price window is missing required field '%s'", window_fields[f].name);
    }
}

/* "YYYY-MM-DD" to days since 1970-01-01, -1 when malformed. */
static long date_days(const char *d) {
    int y, mo, da, n = 0;
    if (d == NULL || sscanf(d, "%4d-%2d-%2d%n", &y, &mo, &da, &n) != 3 || n != 10 || strlen(d) != 10)
        return -1;
    if (mo < 1 || mo > 12 || da < 1 || da > 31 || y < 1970) return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = da};
    return (long)(timegm(&tm) / 86400);
}

static void parse_price(const src_t *s, const yaml_node_t *kn, const yaml_node_t *vn) {
    ld_t *ld = s->ld;
    const char *id = sval(kn), *slash = strchr(id, '/');
    if (slash == NULL || slash == id || !slash[1]) {
        errn(s, kn, "price key '%s' must be provider/model", id);
        return;
    }
    if (dup_check(s, kn, &ld->price, sizeof(tg_price_t), "price", id, ld->price.n)) return;
    meta_t *m;
    tg_price_t *p = vec_push(ld, &ld->price, sizeof(*p), &m);
    if (p == NULL) return;
    p->id = sdup(ld, id);
    p->provider = tg_pool_strndup(ld->pool, id, (size_t)(slash - id));
    p->model = sdup(ld, slash + 1);
    p->cached_input = p->cache_write = -1; /* default to input below */
    m->at = m->aux = at(s, kn);
    char ctx[200];
    snprintf(ctx, sizeof(ctx), "price '%s'", id);
    yaml_node_t *v[PR_N];
    if (collect(s, vn, price_fields, PR_N, ctx, v) < 0) return;
    apply(s, price_fields, PR_N, v, p);
    if (missing(v[PR_INPUT])) errn(s, kn, "price '%s' is missing required field 'input'", id);
    if (missing(v[PR_OUTPUT])) errn(s, kn, "price '%s' is missing required field 'output'", id);
    if (p->cached_input < 0) p->cached_input = p->input;
    if (p->cache_write < 0) p->cache_write = p->input;
    if (v[PR_WINDOWS]) parse_windows(s, v[PR_WINDOWS], p);
    if (v[PR_ASOF]) {
        m->aux = at(s, v[PR_ASOF]);
        if (p->as_of && date_days(p->as_of) < 0)
            errn(s, v[PR_ASOF], "as_of must be a date YYYY-MM-DD, got '%s'", p->as_of);
    }
}

static void parse_prices(const src_t *s, const yaml_node_t *n) {
    if (is_null(n) || expect_map(s, n, "prices") < 0) return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key);
        if (sval(k) == NULL)
            errn(s, k, "expected a provider/model price key");
        else
            parse_price(s, k, node_at(s, p->value));
    }
}

/* ---- files and includes ----------------------------------------------- */

static void load_file(ld_t *ld, const char *path, const pos_t *from, int is_main);

/* An include path is relative to the directory of the file naming it. */
static void parse_includes(const src_t *s, const yaml_node_t *n) {
    if (is_null(n)) return;
    size_t cnt = n->type == YAML_SEQUENCE_NODE ? seq_len(n) : 1;
    if (n->type == YAML_MAPPING_NODE) {
        err_type(s, n, "a list of file names", "include");
        return;
    }
    const char *slash = strrchr(s->file, '/');
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it = n->type == YAML_SCALAR_NODE ? n : node_at(s, n->data.sequence.items.start[i]);
        const char *rel = sval(it);
        if (rel == NULL || !*rel) {
            err_type(s, it, "a file name", "include");
            continue;
        }
        char *full = (rel[0] == '/' || slash == NULL)
                         ? sdup(s->ld, rel)
                         : tg_pool_printf(s->ld->pool, "%.*s/%s", (int)(slash - s->file), s->file, rel);
        pos_t p = at(s, it);
        if (full) load_file(s->ld, full, &p, 0);
    }
}

static void parse_top(const src_t *s, const yaml_node_t *root) {
    yaml_node_t *v[T_N];
    if (collect(s, root, top_fields, T_N, "the top level", v) < 0) return;
    if (s->is_main) parse_main(s, v);
    /* Sections in document order, so routes keep the order they are read in
     * even when some come from an include placed between others. */
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key), *val = node_at(s, p->value);
        const char *key = sval(k);
        size_t i = 0;
        while (key && i < T_N && strcmp(key, top_fields[i].name))
            i++;
        if (key == NULL || i == T_N || v[i] != val) continue; /* reported by collect */
        switch (i) {
        case T_INCLUDE:
            parse_includes(s, val);
            break;
        case T_PROVIDERS:
            parse_providers(s, val);
            break;
        case T_KEYS:
            parse_keys(s, val);
            break;
        case T_ROUTES:
            parse_routes(s, val);
            break;
        case T_ALIASES:
            parse_aliases(s, val);
            break;
        case T_PRICES:
            parse_prices(s, val);
            break;
        default:
            if (!s->is_main) errn(s, k, "'%s' is only allowed in the main config file", key);
        }
    }
}

/* Refuses a file already being loaded (a cycle) and skips one loaded
 * before (so two includes of a shared file do not duplicate its entries). */
static int include_guard(ld_t *ld, const char *path, const char *real, pos_t here) {
    for (size_t i = 0; i < ld->depth; i++) {
        if (strcmp(ld->open_real[i], real)) continue;
        char chain[1024] = "";
        size_t o = 0;
        for (size_t j = i; j < ld->depth && o < sizeof(chain); j++)
            o += (size_t)snprintf(chain + o, sizeof(chain) - o, "%s -> ", ld->open_shown[j]);
        err_at(ld, here, "include cycle: %s%s", chain, path);
        return -1;
    }
    for (size_t i = 0; i < ld->n_seen; i++)
        if (!strcmp(ld->seen[i], real)) {
            warn_at(ld, here, "%s is already included; skipped", path);
            return -1;
        }
    return 0;
}

static int push_open(ld_t *ld, char *real, const char *shown) {
    char **s = realloc(ld->seen, (ld->n_seen + 1) * sizeof(*s));
    if (s) ld->seen = s;
    char **o = realloc(ld->open_real, (ld->depth + 1) * sizeof(*o));
    if (o) ld->open_real = o;
    char **h = realloc(ld->open_shown, (ld->depth + 1) * sizeof(*h));
    if (h) ld->open_shown = h;
    if (!s || !o || !h) return ld->oom = 1, -1;
    ld->seen[ld->n_seen++] = real; /* owns it */
    ld->open_real[ld->depth] = real;
    ld->open_shown[ld->depth++] = (char *)shown;
    return 0;
}

/* FNV-1a over each file's name and bytes, in load order: what the reload
 * watcher compares to tell a real change from a touch or a stray event. */
static uint64_t digest_add(uint64_t h, const char *p, size_t n) {
    /* 0xff: a separator no file byte can fake alone */
    return tg_hash_fnv64_mix(tg_hash_fnv64(h, p, n), 0xff);
}

#define DIGEST_SEED TG_HASH_FNV64_SEED

/* The whole file, NUL-terminated (malloc'd), or NULL with errno set. */
static char *slurp(FILE *f, size_t *len) {
    size_t cap = 8192, n = 0, k;
    char *b = malloc(cap + 1);
    while (b && (k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = cap > ((size_t)64 << 20) ? NULL : realloc(b, (cap *= 2) + 1);
            if (nb == NULL) {
                free(b);
                errno = EFBIG;
                return NULL;
            }
            b = nb;
        }
    }
    if (b == NULL) return NULL;
    if (ferror(f)) {
        free(b);
        errno = EIO;
        return NULL;
    }
    b[n] = '\0';
    *len = n;
    return b;
}

static void note_file(ld_t *ld, const char *shown, const char *text, size_t len) {
    ld->digest = digest_add(digest_add(ld->digest, shown, strlen(shown)), text, len);
    char **v = tg_pool_alloc(ld->pool, (ld->n_files + 2) * sizeof(*v));
    if (v == NULL) {
        ld->oom = 1;
        return;
    }
    if (ld->n_files) memcpy(v, ld->files, ld->n_files * sizeof(*v));
    v[ld->n_files++] = (char *)shown;
    v[ld->n_files] = NULL;
    ld->files = v;
}

uint64_t tg_config_files_digest(const tg_config_t *c) {
    uint64_t h = DIGEST_SEED;
    for (size_t i = 0; c && i < c->n_files; i++) {
        FILE *f = fopen(c->files[i], "rb");
        size_t len = 0;
        char *text = f ? slurp(f, &len) : NULL;
        if (f) fclose(f);
        h = digest_add(digest_add(h, c->files[i], strlen(c->files[i])), text ? text : "", text ? len : 0);
        free(text);
    }
    return h;
}

static void parse_document(ld_t *ld, const char *path, const char *text, size_t len, int is_main) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        ld->oom = 1;
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        pos_t p = {path, (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1};
        err_at(ld, p, "YAML syntax error: %s%s%s", parser.problem ? parser.problem : "unknown",
               parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return;
    }
    src_t s = {ld, path, &doc, is_main};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null(root)) parse_top(&s, root); /* an empty file is an empty config */
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
}

static void load_file(ld_t *ld, const char *path, const pos_t *from, int is_main) {
    pos_t here = from ? *from : (pos_t){path, 1, 1};
    const char *what = from ? "cannot open include" : "cannot open config file";
    char *real = realpath(path, NULL);
    if (real == NULL) {
        err_at(ld, here, "%s %s: %s", what, path, strerror(errno));
        return;
    }
    if (include_guard(ld, path, real, here) < 0) {
        free(real);
        return;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        err_at(ld, here, "%s %s: %s", what, path, strerror(errno));
        free(real);
        return;
    }
    const char *shown = sdup(ld, path);
    if (shown == NULL || push_open(ld, real, shown) < 0) {
        free(real);
        fclose(f);
        return;
    }
    size_t len = 0;
    char *text = slurp(f, &len);
    fclose(f);
    if (text == NULL) {
        err_at(ld, here, "%s %s: %s", what, path, strerror(errno));
    } else {
        note_file(ld, shown, text, len);
        parse_document(ld, shown, text, len, is_main);
        free(text);
    }
    ld->depth--;
}

/* ---- resolving names across files -------------------------------------- */

/* Key from the environment, or the simulator when there is none. A provider
 * without api_key_env needs no key (a local vLLM) and is never simulated. */
static void resolve_provider(ld_t *ld, tg_provider_t *p, const meta_t *m) {
    tg_config_t *c = ld->c;
    const char *key = p->api_key_env ? getenv(p->api_key_env) : NULL;
    if (key && *key) p->api_key = sdup(ld, key);
    p->simulated = p->api_key_env && !p->api_key && c->sim_when_no_key;
    int openai = p->dialect_name && !strcmp(p->dialect_name, "openai");
    if (p->simulated)
        p->url = tg_pool_printf(ld->pool, "%s/%s%s", c->sim_url, p->name, openai ? "/v1" : "");
    else
        p->url = p->base_url;
    if (p->simulated)
        warn_at(ld, m->aux, "provider '%s': %s is not set; calls go to the simulator at %s", p->name,
                p->api_key_env, p->url);
    else if (p->api_key_env && !p->api_key)
        warn_at(ld, m->aux, "provider '%s': %s is not set; calls are sent without a key", p->name,
                p->api_key_env);
}

static tg_provider_t *prov_by_name(ld_t *ld, const char *name, size_t len) {
    for (size_t i = 0; i < ld->prov.n; i++) {
        tg_provider_t *p = &((tg_provider_t *)ld->prov.items)[i];
        if (strlen(p->name) == len && !memcmp(p->name, name, len)) return p;
    }
    return NULL;
}

static void add_model(char **all, size_t *n, char *mdl) {
    for (size_t j = 0; j < *n; j++)
        if (!strcmp(all[j], mdl)) return;
    all[(*n)++] = mdl;
}

/* Each provider's models: those with a price entry, then its `models:`. */
static void resolve_models(ld_t *ld, tg_provider_t *p) {
    size_t n = 0;
    char **all = tg_pool_calloc(ld->pool, (p->n_models + ld->price.n + 1) * sizeof(char *));
    if (all == NULL) {
        ld->oom = 1;
        return;
    }
    for (size_t i = 0; i < ld->price.n; i++) {
        tg_price_t *pr = &((tg_price_t *)ld->price.items)[i];
        if (!strcmp(pr->provider, p->name)) add_model(all, &n, pr->model);
    }
    for (size_t i = 0; i < p->n_models; i++)
        add_model(all, &n, p->models[i]);
    p->models = all;
    p->n_models = n;
}

static void resolve_prices(ld_t *ld) {
    long today = (long)(time(NULL) / 86400);
    for (size_t i = 0; i < ld->price.n; i++) {
        tg_price_t *p = &((tg_price_t *)ld->price.items)[i];
        const meta_t *m = &ld->price.meta[i];
        if (!prov_by_name(ld, p->provider, strlen(p->provider)))
            err_at(ld, m->at, "price '%s' names unknown provider '%s'", p->id, p->provider);
        long d = date_days(p->as_of);
        if (d >= 0 && today - d > PRICE_STALE_DAYS)
            warn_at(ld, m->aux, "price '%s' is from %s, more than %d days ago: check %s", p->id, p->as_of,
                    PRICE_STALE_DAYS, p->source ? p->source : "the provider's pricing page");
    }
}

static const tg_price_t *price_of(ld_t *ld, const char *provider, const char *model) {
    for (size_t i = 0; i < ld->price.n; i++) {
        const tg_price_t *p = &((tg_price_t *)ld->price.items)[i];
        if (!strcmp(p->provider, provider) && !strcmp(p->model, model)) return p;
    }
    return NULL;
}

static void resolve_candidate(ld_t *ld, const tg_route_t *r, tg_candidate_t *cd, pos_t where) {
    if (cd->target == NULL) return; /* reported while parsing */
    const char *slash = strchr(cd->target, '/');
    if (slash == NULL || slash == cd->target || !slash[1]) {
        err_at(ld, where, "candidate '%s' of route '%s' must be provider/model", cd->target, r->name);
        return;
    }
    cd->provider = prov_by_name(ld, cd->target, (size_t)(slash - cd->target));
    cd->model = sdup(ld, slash + 1);
    if (cd->provider == NULL)
        err_at(ld, where, "candidate '%s' of route '%s' names unknown provider '%.*s'", cd->target, r->name,
               (int)(slash - cd->target), cd->target);
    else if (!price_of(ld, cd->provider->name, cd->model))
        warn_at(ld, where, "candidate '%s' has no price entry; its cost is counted as 0", cd->target);
}

static void resolve_aliases(ld_t *ld) {
    for (size_t i = 0; i < ld->alias.n; i++) {
        const tg_alias_t *a = &((tg_alias_t *)ld->alias.items)[i];
        const char *t = a->target, *slash = t ? strchr(t, '/') : NULL;
        if (t == NULL) continue;
        if (slash && !prov_by_name(ld, t, (size_t)(slash - t)))
            err_at(ld, ld->alias.meta[i].aux, "alias '%s' names unknown provider '%.*s'", a->name,
                   (int)(slash - t), t);
        else if (!slash && find_named(&ld->route, sizeof(tg_route_t), t, ld->route.n) < 0)
            err_at(ld, ld->alias.meta[i].aux, "alias '%s' names unknown route '%s'", a->name, t);
    }
}

static void resolve(ld_t *ld) {
    for (size_t i = 0; i < ld->prov.n; i++)
        resolve_provider(ld, &((tg_provider_t *)ld->prov.items)[i], &ld->prov.meta[i]);
    resolve_prices(ld);
    for (size_t i = 0; i < ld->prov.n; i++)
        resolve_models(ld, &((tg_provider_t *)ld->prov.items)[i]);
    for (size_t i = 0; i < ld->route.n; i++) {
        tg_route_t *r = &((tg_route_t *)ld->route.items)[i];
        for (size_t j = 0; j < r->n_candidates; j++)
            resolve_candidate(ld, r, &r->candidates[j], ld->route.meta[i].cand_at[j]);
    }
    resolve_aliases(ld);
    tg_config_t *c = ld->c;
    c->providers = ld->prov.items, c->n_providers = ld->prov.n;
    c->prices = ld->price.items, c->n_prices = ld->price.n;
    c->keys = ld->key.items, c->n_keys = ld->key.n;
    c->routes = ld->route.items, c->n_routes = ld->route.n;
    c->aliases = ld->alias.items, c->n_aliases = ld->alias.n;
    if (c->admin_token_env) {
        const char *t = getenv(c->admin_token_env);
        if (t && *t) c->admin_token = sdup(ld, t);
    }
}

/* ---- snapshots ---------------------------------------------------------- */

static void set_defaults(ld_t *ld) {
    tg_config_t *c = ld->c;
    c->listen_host = sdup(ld, "0.0.0.0");
    c->listen_port = 8080;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = cpus > 0 ? (int)cpus : 1;
    c->admin_token_env = sdup(ld, "TOLLGATE_ADMIN_TOKEN");
    c->log_level = sdup(ld, "info");
    c->journal_path = sdup(ld, "var/tollgate-journal");
    c->limits = (tg_limits_t){.max_body_bytes = 4u << 20,
                              .upstream_connect_ms = 3000,
                              .first_byte_ms = 60000,
                              .idle_ms = 60000,
                              .total_ms = 0,
                              .max_header_bytes = 16384,
                              .header_timeout_ms = 10000,
                              .body_timeout_ms = 30000,
                              .keepalive_timeout_ms = 60000,
                              .max_attempts = 3};
    c->circuit = (tg_circuit_conf_t){5, 10000, 60000};
    c->default_output_tokens = 256;
    c->latency_alpha = 0.3;
    c->sim_url = sdup(ld, "http://127.0.0.1:8090");
    c->sim_when_no_key = 1;
    c->sim_embedded = 1;
}

tg_config_t *tg_config_load(const char *path, tg_diag_t *d) {
    tg_diag_t local = {0};
    if (d == NULL) d = &local;
    size_t errors_before = d->n_errors;
    tg_pool_t *pool = tg_pool_create(32 * 1024);
    tg_config_t *c = pool ? tg_pool_calloc(pool, sizeof(*c)) : NULL;
    if (c == NULL) {
        err_at(&(ld_t){.d = d}, (pos_t){path, 1, 1}, "out of memory");
        tg_pool_destroy(pool);
        tg_diag_free(&local);
        return NULL;
    }
    ld_t ld = {.pool = pool, .d = d, .c = c, .digest = DIGEST_SEED};
    set_defaults(&ld);
    c->path = sdup(&ld, path);
    load_file(&ld, path, NULL, 1);
    c->files = ld.files;
    c->n_files = ld.n_files;
    c->files_digest = ld.digest;
    resolve(&ld); /* also after parse errors, so cross-file problems show in the same run */
    for (size_t i = 0; i < ld.n_seen; i++)
        free(ld.seen[i]);
    free(ld.seen);
    free(ld.open_real);
    free(ld.open_shown);
    if (ld.oom) err_at(&ld, (pos_t){path, 1, 1}, "out of memory while loading");
    tg_diag_free(&local);
    if (d->n_errors != errors_before) {
        tg_pool_destroy(pool);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->arena = pool;
    return c;
}

tg_config_t *tg_config_ref(tg_config_t *c) {
    if (c) atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void tg_config_unref(tg_config_t *c) {
    if (c == NULL || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    /* Secrets should not linger in freed heap memory. */
    for (size_t i = 0; i < c->n_providers; i++)
        if (c->providers[i].api_key) explicit_bzero(c->providers[i].api_key, strlen(c->providers[i].api_key));
    if (c->admin_token) explicit_bzero(c->admin_token, strlen(c->admin_token));
    tg_pool_destroy(c->arena);
}

/* A plain load of `current` followed by a ref could race with install +
 * unref freeing the snapshot in between; the mutex makes the pair atomic.
 * It is held for a pointer copy and an increment, once per request. */
static pthread_mutex_t current_mu = PTHREAD_MUTEX_INITIALIZER;
static tg_config_t *current;

tg_config_t *tg_config_current(void) {
    pthread_mutex_lock(&current_mu);
    tg_config_t *c = tg_config_ref(current);
    pthread_mutex_unlock(&current_mu);
    return c;
}

void tg_config_install(tg_config_t *c) {
    pthread_mutex_lock(&current_mu);
    tg_config_t *old = current;
    current = c;
    pthread_mutex_unlock(&current_mu);
    tg_config_unref(old);
}

/* ---- lookups ----------------------------------------------------------- */

const tg_provider_t *tg_config_provider(const tg_config_t *c, const char *name, size_t len) {
    for (size_t i = 0; i < c->n_providers; i++)
        if (strlen(c->providers[i].name) == len && !memcmp(c->providers[i].name, name, len))
            return &c->providers[i];
    return NULL;
}

const tg_price_t *tg_config_price(const tg_config_t *c, const char *provider, const char *model) {
    for (size_t i = 0; i < c->n_prices; i++)
        if (!strcmp(c->prices[i].provider, provider) && !strcmp(c->prices[i].model, model))
            return &c->prices[i];
    return NULL;
}

const tg_route_t *tg_config_route(const tg_config_t *c, const char *name) {
    for (size_t i = 0; i < c->n_routes; i++)
        if (!strcmp(c->routes[i].name, name)) return &c->routes[i];
    return NULL;
}

const tg_alias_t *tg_config_alias(const tg_config_t *c, const char *name) {
    for (size_t i = 0; i < c->n_aliases; i++)
        if (!strcmp(c->aliases[i].name, name)) return &c->aliases[i];
    return NULL;
}

/* SHA-256 of a presented key, remembered per worker thread: a client sends
 * the same key on every request and hashing it was 3.5% of a request's
 * instructions. A secret maps to its digest whatever the configuration, so
 * a reload needs no invalidation. The slot is picked from the length and two
 * bytes; a hit needs the whole secret to match (CRYPTO_memcmp, constant time
 * over the length), so timing tells a caller nothing it did not send. */
#define KEY_CACHE_SLOTS 16
#define KEY_CACHE_MAX 128
typedef struct {
    size_t len;
    unsigned char secret[KEY_CACHE_MAX];
    unsigned char digest[SHA256_DIGEST_LENGTH];
} key_cache_t;
static _Thread_local key_cache_t key_cache[KEY_CACHE_SLOTS];

static void key_digest(const char *secret, size_t len, unsigned char *h) {
    if (len == 0 || len > KEY_CACHE_MAX) {
        SHA256((const unsigned char *)secret, len, h);
        return;
    }
    key_cache_t *e =
        &key_cache[(len ^ (unsigned char)secret[len - 1] ^ ((unsigned char)secret[len / 2] << 1)) %
                   KEY_CACHE_SLOTS];
    if (e->len == len && CRYPTO_memcmp(e->secret, secret, len) == 0) {
        memcpy(h, e->digest, SHA256_DIGEST_LENGTH);
        return;
    }
    SHA256((const unsigned char *)secret, len, h);
    e->len = len;
    memcpy(e->secret, secret, len);
    memcpy(e->digest, h, SHA256_DIGEST_LENGTH);
}

/* Every key is compared, whatever matched, and the match is selected with
 * a mask, so the time taken does not tell which key (if any) was hit. */
const tg_key_t *tg_config_key(const tg_config_t *c, const char *secret, size_t len) {
    unsigned char h[SHA256_DIGEST_LENGTH];
    uintptr_t found = 0;
    key_digest(secret, len, h);
    for (size_t i = 0; i < c->n_keys; i++) {
        uintptr_t eq = (uintptr_t)(CRYPTO_memcmp(h, c->keys[i].sha256, sizeof(h)) == 0);
        found |= (uintptr_t)&c->keys[i] & (0 - eq);
    }
    OPENSSL_cleanse(h, sizeof(h));
    return (const tg_key_t *)found;
}

int tg_config_in_window(int from_min, int to_min, int min) {
    if (from_min == to_min) return 1;
    if (from_min < to_min) return min >= from_min && min < to_min;
    return min >= from_min || min < to_min;
}

void tg_price_at(const tg_price_t *p, int min, int64_t *input, int64_t *cached_input, int64_t *output) {
    *input = p->input;
    *cached_input = p->cached_input;
    *output = p->output;
    min = ((min % 1440) + 1440) % 1440;
    for (size_t i = 0; i < p->n_windows; i++) {
        const tg_price_window_t *w = &p->windows[i];
        if (!tg_config_in_window(w->from_min, w->to_min, min)) continue;
        if (w->input >= 0) *input = w->input;
        if (w->cached_input >= 0) *cached_input = w->cached_input;
        if (w->output >= 0) *output = w->output;
        return;
    }
}

int tg_config_check_main(const char *path) {
    tg_diag_t d = {0};
    if (path == NULL) path = "config/tollgate.yaml";
    tg_config_t *c = tg_config_load(path, &d);
    for (size_t i = 0; i < d.n; i++)
        puts(d.msgs[i]);
    if (c)
        printf("%s: ok (%zu providers, %zu routes, %zu prices, %zu keys)\n", path, c->n_providers,
               c->n_routes, c->n_prices, c->n_keys);
    fflush(stdout);
    int rc = c ? 0 : 1;
    tg_config_unref(c);
    tg_diag_free(&d);
    return rc;
}
