/* config_int.h — internals shared by the files that build a configuration
 * snapshot (config_yaml.c, config_schema.c, config_load.c) and by the reload
 * digest in config.c. Not for other modules: they include core/config.h.
 * A load is one ld_t: the snapshot being filled, the pool that owns it, the
 * entries parsed so far with where each came from, and the files open. */
#ifndef TG_CONFIG_INT_H
#define TG_CONFIG_INT_H

#include "core/config.h"
#include "core/hash.h"
#include "core/pool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>
#include <string.h>
#include <yaml.h>

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

/* ---- nodes (config_yaml.c) ------------------------------------------- */

static inline pos_t at(const src_t *s, const yaml_node_t *n) {
    return (pos_t){s->file, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static inline const char *sval(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static inline int is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = sval(n);
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static inline int missing(const yaml_node_t *v) {
    return v == NULL || is_null(v);
}

static inline char *sdup(ld_t *ld, const char *str) {
    char *r = tg_pool_strdup(ld->pool, str);
    if (r == NULL) ld->oom = 1;
    return r;
}

static inline yaml_node_t *node_at(const src_t *s, int idx) {
    return yaml_document_get_node(s->doc, idx);
}

static inline size_t seq_len(const yaml_node_t *n) {
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* Appends "FILE:LINE:COL: message" (with "warning: " when !is_err) to d. */
void cfg_diag_vadd(tg_diag_t *d, int is_err, pos_t p, const char *fmt, va_list ap);
/* An error at node n of the file being parsed. */
__attribute__((format(printf, 3, 4))) void cfg_errn(const src_t *s, const yaml_node_t *n, const char *fmt,
                                                    ...);
/* Reports an unknown `what` (a key, a dialect...), with " in WHERE" when
 * given and the closest valid name when one is close. */
void cfg_err_unknown(const src_t *s, const yaml_node_t *n, const char *what, const char *word,
                     const char *where, const char *const *names, size_t nn, const char *expected);
void cfg_err_type(const src_t *s, const yaml_node_t *n, const char *expected, const char *name);
/* How a wrong-typed value is shown back: its text, or its kind. */
const char *cfg_got(const yaml_node_t *n, char *buf, size_t cap);
/* Returns 0 when it stored a value, 1 when the value is null (treated as
 * not given), -1 after reporting a problem. */
int cfg_conv_i64(const src_t *s, const yaml_node_t *n, const char *name, int64_t min, int64_t *out);
int cfg_expect_seq(const src_t *s, const yaml_node_t *n, const char *what);
int cfg_expect_map(const src_t *s, const yaml_node_t *n, const char *what);

/* ---- mappings described by field tables (config_yaml.c) -------------- */

typedef enum { F_STR, F_STRS, F_BOOL, F_I64, F_U32, F_SZ, F_NUM, F_PRICE, F_HHMM, F_SPECIAL } ftype_t;

typedef struct {
    const char *name;
    ftype_t type;
    size_t off, off_n; /* off_n: the count of an F_STRS list */
    int min;           /* integers: 1 = must be positive, 0 = zero or more */
} field_t;

#define MAX_FIELDS 32
#define NF(t) (sizeof(t) / sizeof((t)[0]))

/* Checks that `n` is a mapping whose keys are all in `f` (each once) and
 * fills vals[i] with the value of field i, NULL when absent. */
int cfg_collect(const src_t *s, const yaml_node_t *n, const field_t *f, size_t nf, const char *ctx,
                yaml_node_t **vals);
/* Converts every present field that is not F_SPECIAL into `obj`. */
void cfg_apply(const src_t *s, const field_t *f, size_t nf, yaml_node_t **vals, void *obj);

/* Appends a zeroed element of size elsz to v and points *m at its meta. */
void *cfg_vec_push(ld_t *ld, vec_t *v, size_t elsz, meta_t **m);
/* Index of the entry of `v` named `name` (the first char * of each item). */
long cfg_find_named(const vec_t *v, size_t elsz, const char *name, size_t upto);

/* ---- sections (config_schema.c) and files (config_load.c) ------------ */

/* `listen:` of the main file: one address or a list (config_listen.c). */
void cfg_parse_listen(const src_t *s, const yaml_node_t *n);
/* Adds a file's name and bytes to the load's digest and file list, so that
 * the reload watcher follows it. */
void cfg_note_file(ld_t *ld, const char *shown, const char *text, size_t len);

/* The sections of one file's root mapping, in document order. */
void cfg_parse_top(const src_t *s, const yaml_node_t *root);
/* `include:` of the file being parsed: loads each named file in turn. */
void cfg_parse_includes(const src_t *s, const yaml_node_t *n);
/* "YYYY-MM-DD" to days since 1970-01-01, -1 when malformed. */
long cfg_date_days(const char *d);

/* ---- lookups shared with loading (config_price.c) --------------------- */

/* The price of provider/model among n entries, by the rule of
 * tg_config_price (exact first, then the longest pattern prefix). */
const tg_price_t *cfg_price_find(const tg_price_t *v, size_t n, const char *provider, const char *model);
/* The alias of name among n entries, by the rule of tg_config_alias. */
const tg_alias_t *cfg_alias_find(const tg_alias_t *v, size_t n, const char *name);

/* ---- the files digest (config.c) -------------------------------------- */

#define DIGEST_SEED TG_HASH_FNV64_SEED
uint64_t cfg_digest_add(uint64_t h, const char *p, size_t n);
/* The whole file, NUL-terminated (malloc'd), or NULL with errno set. */
char *cfg_slurp(FILE *f, size_t *len);

#endif
