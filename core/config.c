/* config.c — the life of a configuration snapshot once it is loaded: the
 * reference count, the current snapshot that every worker shares (a global
 * pointer behind a short mutex, so taking a reference never races with a
 * swap), the digest of the files it came from (what the reload watcher
 * compares), and lookups by name. A snapshot is built by tg_config_load()
 * in config_load.c and never changes afterwards; keys are looked up in
 * config_keys.c and prices in config_price.c. */
#include "core/config_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- snapshots ---------------------------------------------------------- */

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

/* ---- the files digest ------------------------------------------------- */

/* FNV-1a over each file's name and bytes, in load order: what the reload
 * watcher compares to tell a real change from a touch or a stray event. */
uint64_t cfg_digest_add(uint64_t h, const char *p, size_t n) {
    /* 0xff: a separator no file byte can fake alone */
    return tg_hash_fnv64_mix(tg_hash_fnv64(h, p, n), 0xff);
}

/* The whole file, NUL-terminated (malloc'd), or NULL with errno set. */
char *cfg_slurp(FILE *f, size_t *len) {
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

uint64_t tg_config_files_digest(const tg_config_t *c) {
    uint64_t h = DIGEST_SEED;
    for (size_t i = 0; c && i < c->n_files; i++) {
        FILE *f = fopen(c->files[i], "rb");
        size_t len = 0;
        char *text = f ? cfg_slurp(f, &len) : NULL;
        if (f) fclose(f);
        h = cfg_digest_add(cfg_digest_add(h, c->files[i], strlen(c->files[i])), text ? text : "",
                           text ? len : 0);
        free(text);
    }
    return h;
}

/* ---- lookups ----------------------------------------------------------- */

const tg_provider_t *tg_config_provider(const tg_config_t *c, const char *name, size_t len) {
    for (size_t i = 0; i < c->n_providers; i++)
        if (strlen(c->providers[i].name) == len && !memcmp(c->providers[i].name, name, len))
            return &c->providers[i];
    return NULL;
}

const tg_route_t *tg_config_route(const tg_config_t *c, const char *name) {
    for (size_t i = 0; i < c->n_routes; i++)
        if (!strcmp(c->routes[i].name, name)) return &c->routes[i];
    return NULL;
}

/* Exact names beat patterns, and the longest pattern prefix wins, as for
 * prices (config_price.c). */
const tg_alias_t *cfg_alias_find(const tg_alias_t *v, size_t n, const char *name) {
    const tg_alias_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < n; i++) {
        const tg_alias_t *a = &v[i];
        if (!a->pattern) {
            if (strcmp(a->name, name) == 0) return a;
            continue;
        }
        size_t len = strlen(a->name) - 1;
        if ((best == NULL || len > best_len) && strncmp(a->name, name, len) == 0) {
            best = a;
            best_len = len;
        }
    }
    return best;
}

const tg_alias_t *tg_config_alias(const tg_config_t *c, const char *name) {
    return cfg_alias_find(c->aliases, c->n_aliases, name);
}

const char *tg_config_alias_target(const tg_alias_t *a, const char *name, tg_pool_t *pool) {
    const char *star = a->pattern ? strchr(a->target, '*') : NULL;
    if (star == NULL) return a->target;
    const char *rest = name + strlen(a->name) - 1; /* what the alias's '*' matched */
    return tg_pool_printf(pool, "%.*s%s%s", (int)(star - a->target), a->target, rest, star + 1);
}
