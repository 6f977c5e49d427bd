/* config_load.c — tg_config_load(): builds the immutable snapshot from
 * config/tollgate.yaml and the files it includes, YAML or JSON, through the
 * libyaml document API so every node keeps its line and column.
 * Loading runs in two phases: parse each file into the load's arrays
 * (config_schema.c reports unknown keys, wrong types, bad values), then
 * resolve names across files (providers, prices, routes, aliases). Every
 * problem is collected as "FILE:LINE:COL: message" rather than stopping at
 * the first. All strings and arrays of the snapshot live in one tg_pool_t
 * arena, which the last tg_config_unref() (config.c) destroys. */
#include "core/config_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define PRICE_STALE_DAYS 90

__attribute__((format(printf, 3, 4))) static void err_at(ld_t *ld, pos_t p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cfg_diag_vadd(ld->d, 1, p, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 3, 4))) static void warn_at(ld_t *ld, pos_t p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cfg_diag_vadd(ld->d, 0, p, fmt, ap);
    va_end(ap);
}

/* ---- files and includes ----------------------------------------------- */

static void load_file(ld_t *ld, const char *path, const pos_t *from, int is_main);

/* An include path is relative to the directory of the file naming it. */
void cfg_parse_includes(const src_t *s, const yaml_node_t *n) {
    if (is_null(n)) return;
    size_t cnt = n->type == YAML_SEQUENCE_NODE ? seq_len(n) : 1;
    if (n->type == YAML_MAPPING_NODE) {
        cfg_err_type(s, n, "a list of file names", "include");
        return;
    }
    const char *slash = strrchr(s->file, '/');
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it = n->type == YAML_SCALAR_NODE ? n : node_at(s, n->data.sequence.items.start[i]);
        const char *rel = sval(it);
        if (rel == NULL || !*rel) {
            cfg_err_type(s, it, "a file name", "include");
            continue;
        }
        char *full = (rel[0] == '/' || slash == NULL)
                         ? sdup(s->ld, rel)
                         : tg_pool_printf(s->ld->pool, "%.*s/%s", (int)(slash - s->file), s->file, rel);
        pos_t p = at(s, it);
        if (full) load_file(s->ld, full, &p, 0);
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

void cfg_note_file(ld_t *ld, const char *shown, const char *text, size_t len) {
    ld->digest = cfg_digest_add(cfg_digest_add(ld->digest, shown, strlen(shown)), text, len);
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
    if (root && !is_null(root)) cfg_parse_top(&s, root); /* an empty file is an empty config */
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
    char *text = cfg_slurp(f, &len);
    fclose(f);
    if (text == NULL) {
        err_at(ld, here, "%s %s: %s", what, path, strerror(errno));
    } else {
        cfg_note_file(ld, shown, text, len);
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

static const tg_price_t *price_of(ld_t *ld, const char *provider, const char *model) {
    return cfg_price_find(ld->price.items, ld->price.n, provider, model);
}

static void add_model(char **all, size_t *n, char *mdl) {
    for (size_t j = 0; j < *n; j++)
        if (!strcmp(all[j], mdl)) return;
    all[(*n)++] = mdl;
}

/* Each provider's models: those with a price entry, then its `models:`.
 * A client may name any of them directly, so each must have a price. */
static void resolve_models(ld_t *ld, tg_provider_t *p, const meta_t *m) {
    for (size_t i = 0; i < p->n_models; i++)
        if (!price_of(ld, p->name, p->models[i]))
            err_at(ld, m->at,
                   "model '%s/%s' (listed under models: of provider '%s') has no price: add it to prices "
                   "(free: true for a zero price); nothing is billed $0",
                   p->name, p->models[i], p->name);
    size_t n = 0;
    char **all = tg_pool_calloc(ld->pool, (p->n_models + ld->price.n + 1) * sizeof(char *));
    if (all == NULL) {
        ld->oom = 1;
        return;
    }
    for (size_t i = 0; i < ld->price.n; i++) {
        tg_price_t *pr = &((tg_price_t *)ld->price.items)[i];
        if (!strcmp(pr->provider, p->name) && !pr->pattern) add_model(all, &n, pr->model); /* ids only */
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
        long d = cfg_date_days(p->as_of);
        if (d >= 0 && today - d > PRICE_STALE_DAYS)
            warn_at(ld, m->aux, "price '%s' is from %s, more than %d days ago: check %s", p->id, p->as_of,
                    PRICE_STALE_DAYS, p->source ? p->source : "the provider's pricing page");
    }
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
        err_at(ld, where,
               "candidate '%s' of route '%s' has no price: add '%s' to prices (free: true for a zero price); "
               "nothing is billed $0",
               cd->target, r->name, cd->target);
}

/* Whether some model that provider/prefix* can reach has a price: an exact
 * entry starting with prefix, or a pattern entry whose prefix and this one
 * agree as far as the shorter goes. */
static int prefix_priced(ld_t *ld, const char *provider, const char *prefix, size_t plen) {
    for (size_t i = 0; i < ld->price.n; i++) {
        const tg_price_t *p = &((tg_price_t *)ld->price.items)[i];
        if (strcmp(p->provider, provider) != 0) continue;
        size_t ml = strlen(p->model) - (size_t)p->pattern, n = ml < plen ? ml : plen;
        if ((p->pattern || ml >= plen) && strncmp(p->model, prefix, n) == 0) return 1;
    }
    return 0;
}

/* An alias to provider/model needs the model's price. One to
 * provider/prefix* (a pattern alias) reaches models nobody listed yet:
 * those a price covers are served, the others refused by name at request
 * time, and an alias that no price could ever cover is an error. */
static void check_alias_price(ld_t *ld, const tg_alias_t *a, const char *slash, pos_t where) {
    char prov[128];
    snprintf(prov, sizeof(prov), "%.*s", (int)(slash - a->target), a->target);
    const char *model = slash + 1, *star = strchr(model, '*');
    if (star == NULL) {
        if (!price_of(ld, prov, model))
            err_at(ld, where,
                   "alias '%s' reaches '%s', which has no price: add it to prices (free: true for a zero "
                   "price); nothing is billed $0",
                   a->name, a->target);
    } else if (!prefix_priced(ld, prov, model, (size_t)(star - model))) {
        err_at(ld, where,
               "alias '%s' reaches %s, but no price covers any model it can reach: add a price such as "
               "'%s' (nothing is billed $0)",
               a->name, a->target, a->target);
    }
}

static void resolve_aliases(ld_t *ld) {
    for (size_t i = 0; i < ld->alias.n; i++) {
        const tg_alias_t *a = &((tg_alias_t *)ld->alias.items)[i];
        const char *t = a->target, *slash = t ? strchr(t, '/') : NULL;
        if (t == NULL) continue;
        if (slash && !prov_by_name(ld, t, (size_t)(slash - t)))
            err_at(ld, ld->alias.meta[i].aux, "alias '%s' names unknown provider '%.*s'", a->name,
                   (int)(slash - t), t);
        else if (slash)
            check_alias_price(ld, a, slash, ld->alias.meta[i].aux);
        else if (!slash && cfg_find_named(&ld->route, sizeof(tg_route_t), t, ld->route.n) < 0)
            err_at(ld, ld->alias.meta[i].aux, "alias '%s' names unknown route '%s'", a->name, t);
    }
}

static void resolve(ld_t *ld) {
    for (size_t i = 0; i < ld->prov.n; i++)
        resolve_provider(ld, &((tg_provider_t *)ld->prov.items)[i], &ld->prov.meta[i]);
    resolve_prices(ld);
    for (size_t i = 0; i < ld->prov.n; i++)
        resolve_models(ld, &((tg_provider_t *)ld->prov.items)[i], &ld->prov.meta[i]);
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
    c->listens = tg_pool_calloc(ld->pool, sizeof(*c->listens));
    if (c->listens == NULL) {
        ld->oom = 1;
    } else {
        c->listens[0] = (tg_listen_t){.host = c->listen_host, .port = c->listen_port};
        c->n_listens = 1;
    }
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
    c->store_ttl_s = 2592000; /* 30 days */
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
