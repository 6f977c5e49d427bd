/* config_schema.c — the schema of a configuration file: which sections and
 * keys exist, their types and their rules. The top level (listen, workers,
 * redis, limits, simulator, circuit, routing: main file only), then the
 * sections any file may hold: providers, keys, routes, aliases and prices.
 * Each section is parsed into the load's arrays (ld_t, config_int.h) with
 * the position of every entry, so that config_load.c can check names across
 * files afterwards; nothing here opens a file. */
#include "core/config_int.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---- addresses -------------------------------------------------------- */

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
    T_STORE_TTL,
    T_METRICS_TOKEN,
    T_REDIS_TLS,
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
    {"store_ttl_s", F_I64, offsetof(tg_config_t, store_ttl_s), 0, 1},
    {"metrics_token_env", F_STR, offsetof(tg_config_t, metrics_token_env), 0, 0},
    {"redis_tls", F_SPECIAL, 0, 0, 0},
};
_Static_assert(NF(top_fields) == T_N && T_N <= MAX_FIELDS, "cfg_collect holds MAX_FIELDS names");

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
        cfg_collect(s, v[T_CIRCUIT], circuit_fields, NF(circuit_fields), "circuit", cv) == 0) {
        cfg_apply(s, circuit_fields, NF(circuit_fields), cv, &c->circuit);
        if (c->circuit.max_cooldown_ms < c->circuit.cooldown_ms)
            cfg_errn(s, cv[2] ? cv[2] : v[T_CIRCUIT],
                     "circuit max_cooldown_ms (%u) is below cooldown_ms (%u)", c->circuit.max_cooldown_ms,
                     c->circuit.cooldown_ms);
    }
    if (v[T_ROUTING] && !is_null(v[T_ROUTING]) &&
        cfg_collect(s, v[T_ROUTING], routing_fields, NF(routing_fields), "routing", rv) == 0) {
        cfg_apply(s, routing_fields, NF(routing_fields), rv, c);
        if (rv[1] && !(c->latency_alpha > 0 && c->latency_alpha <= 1))
            cfg_errn(s, rv[1], "routing latency_alpha must be in (0, 1], got %s", sval(rv[1]));
    }
}

static void parse_workers(const src_t *s, const yaml_node_t *n) {
    int64_t w;
    const char *v = sval(n);
    if (v && !strcmp(v, "auto")) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        s->ld->c->workers = cpus > 0 ? (int)cpus : 1;
    } else if (v && isdigit((unsigned char)*v) == 0 && *v != '-') {
        cfg_err_type(s, n, "auto or a positive integer", "workers");
    } else if (cfg_conv_i64(s, n, "workers", 1, &w) == 0) {
        if (w > 4096)
            cfg_errn(s, n, "'workers' is too large: %lld", (long long)w);
        else
            s->ld->c->workers = (int)w;
    }
}

static void parse_redis(const src_t *s, const yaml_node_t *n) {
    const char *v = sval(n);
    s->ld->c->redis_url = NULL;
    if (is_null(n) || (v && !*v)) return; /* no ledger */
    if (v &&
        (!strncmp(v, "redis://", 8) || !strncmp(v, "rediss://", 9) || !strncmp(v, "redis+sentinel://", 17) ||
         !strncmp(v, "rediss+sentinel://", 18) || !strncmp(v, "redis+cluster://", 16) ||
         !strncmp(v, "rediss+cluster://", 17) || !strncmp(v, "unix:", 5)) &&
        !strpbrk(v, " \t")) {
        s->ld->c->redis_url = sdup(s->ld, v);
        return;
    }
    char b[80];
    cfg_errn(s, n, "redis must be a redis://, rediss:// or unix: URL, or null for no ledger; got %s",
             cfg_got(n, b, sizeof(b)));
}

static const field_t redis_tls_fields[] = {
    {"ca_file", F_STR, offsetof(tg_config_t, redis_tls.ca_file), 0, 0},
    {"cert", F_STR, offsetof(tg_config_t, redis_tls.cert), 0, 0},
    {"key", F_STR, offsetof(tg_config_t, redis_tls.key), 0, 0},
    {"server_name", F_STR, offsetof(tg_config_t, redis_tls.server_name), 0, 0},
};

/* `redis_tls:` for rediss URLs; the files are opened when the gateway starts. */
static void parse_redis_tls(const src_t *s, const yaml_node_t *n) {
    yaml_node_t *tv[NF(redis_tls_fields)];
    tg_config_t *c = s->ld->c;
    if (is_null(n) || cfg_collect(s, n, redis_tls_fields, NF(redis_tls_fields), "redis_tls", tv) != 0) return;
    cfg_apply(s, redis_tls_fields, NF(redis_tls_fields), tv, c);
    if (c->redis_tls.key && !c->redis_tls.cert) cfg_errn(s, tv[2], "redis_tls key needs a cert beside it");
}

static void parse_main(const src_t *s, yaml_node_t **v) {
    /* The names tg_log_parse_level() accepts. */
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    tg_config_t *c = s->ld->c;
    cfg_apply(s, top_fields, T_N, v, c);
    if (v[T_LISTEN]) cfg_parse_listen(s, v[T_LISTEN]);
    if (v[T_WORKERS]) parse_workers(s, v[T_WORKERS]);
    if (v[T_REDIS]) parse_redis(s, v[T_REDIS]);
    if (v[T_REDIS_TLS]) parse_redis_tls(s, v[T_REDIS_TLS]);
    size_t li = 0;
    while (c->log_level && li < NF(levels) && strcmp(c->log_level, levels[li]))
        li++;
    if (v[T_LOG] && c->log_level && li == NF(levels))
        cfg_err_unknown(s, v[T_LOG], "log_level", c->log_level, NULL, levels, 4,
                        "debug, info, warn or error");
    yaml_node_t *lv[NF(limit_fields)], *sv[NF(sim_fields)];
    if (v[T_LIMITS] && !is_null(v[T_LIMITS]) &&
        cfg_collect(s, v[T_LIMITS], limit_fields, NF(limit_fields), "limits", lv) == 0)
        cfg_apply(s, limit_fields, NF(limit_fields), lv, &c->limits);
    if (v[T_SIM] && !is_null(v[T_SIM]) &&
        cfg_collect(s, v[T_SIM], sim_fields, NF(sim_fields), "simulator", sv) == 0) {
        cfg_apply(s, sim_fields, NF(sim_fields), sv, c);
        if (sv[0] && c->sim_url && !url_ok(c->sim_url))
            cfg_errn(s, sv[0], "simulator url '%s' is not an http:// or https:// URL with a host",
                     c->sim_url);
    }
    if (c->sim_url) strip_slash(c->sim_url);
    parse_policy_knobs(s, v);
}

/* ---- providers ------------------------------------------------------- */

static const char *const dialects[] = {"openai", "anthropic"};

enum { P_DIALECT, P_BASE, P_ENV, P_REGION, P_MODELS, P_MAXTOK, P_RESPONSES, P_CA, P_H2, P_N };
static const field_t prov_fields[] = {
    {"dialect", F_STR, offsetof(tg_provider_t, dialect_name), 0, 0},
    {"base_url", F_STR, offsetof(tg_provider_t, base_url), 0, 0},
    {"api_key_env", F_STR, offsetof(tg_provider_t, api_key_env), 0, 0},
    {"region", F_STR, offsetof(tg_provider_t, region), 0, 0},
    {"models", F_STRS, offsetof(tg_provider_t, models), offsetof(tg_provider_t, n_models), 0},
    {"default_max_tokens", F_I64, offsetof(tg_provider_t, default_max_tokens), 0, 1},
    {"responses", F_SPECIAL, 0, 0, 0},
    {"ca_file", F_STR, offsetof(tg_provider_t, ca_file), 0, 0},
    {"http2", F_BOOL, offsetof(tg_provider_t, http2), 0, 0},
};

/* `responses: native` (the vendor serves /v1/responses itself) or
 * `translate` (the default: Responses requests become chat completions).
 * Only an OpenAI-dialect vendor can speak the Responses API. */
static void parse_responses(const src_t *s, const yaml_node_t *n, tg_provider_t *p) {
    static const char *const modes[] = {"native", "translate"};
    const char *v = sval(n);
    if (is_null(n)) return;
    if (v == NULL) {
        cfg_err_type(s, n, "native or translate", "responses");
        return;
    }
    if (strcmp(v, "native") != 0 && strcmp(v, "translate") != 0) {
        cfg_err_unknown(s, n, "responses mode", v, NULL, modes, NF(modes), "native or translate");
        return;
    }
    p->responses_native = strcmp(v, "native") == 0;
    if (p->responses_native && p->dialect_name && strcmp(p->dialect_name, "openai") != 0)
        cfg_errn(s, n, "provider '%s': responses: native needs dialect openai (it is %s)", p->name,
                 p->dialect_name);
}

/* Reports `name` as a duplicate when an earlier entry of `v` has it. */
static int dup_check(const src_t *s, const yaml_node_t *n, const vec_t *v, size_t elsz, const char *what,
                     const char *name, size_t upto) {
    long i = cfg_find_named(v, elsz, name, upto);
    if (i < 0) return 0;
    pos_t f = v->meta[i].at;
    cfg_errn(s, n, "duplicate %s '%s' (first defined at %s:%d:%d)", what, name, f.file, f.line, f.col);
    return -1;
}

static void parse_provider(const src_t *s, const yaml_node_t *kn, const yaml_node_t *vn) {
    ld_t *ld = s->ld;
    const char *name = sval(kn);
    if (dup_check(s, kn, &ld->prov, sizeof(tg_provider_t), "provider", name, ld->prov.n)) return;
    if (!*name || strchr(name, '/')) {
        cfg_errn(s, kn, "provider name '%s' must be non-empty and contain no '/'", name);
        return;
    }
    meta_t *m;
    tg_provider_t *p = cfg_vec_push(ld, &ld->prov, sizeof(*p), &m);
    if (p == NULL) return;
    p->name = sdup(ld, name);
    m->at = m->aux = at(s, kn);
    char ctx[160];
    snprintf(ctx, sizeof(ctx), "provider '%s'", name);
    yaml_node_t *v[P_N];
    if (cfg_collect(s, vn, prov_fields, P_N, ctx, v) < 0) return;
    cfg_apply(s, prov_fields, P_N, v, p);
    if (v[P_ENV]) m->aux = at(s, v[P_ENV]);
    if (missing(v[P_DIALECT]))
        cfg_errn(s, kn, "provider '%s' is missing required field 'dialect'", name);
    else if (p->dialect_name && strcmp(p->dialect_name, "openai") && strcmp(p->dialect_name, "anthropic"))
        cfg_err_unknown(s, v[P_DIALECT], "dialect", p->dialect_name, NULL, dialects, 2,
                        "openai or anthropic");
    if (v[P_RESPONSES]) parse_responses(s, v[P_RESPONSES], p);
    if (missing(v[P_BASE]))
        cfg_errn(s, kn, "provider '%s' is missing required field 'base_url'", name);
    else if (p->base_url && !url_ok(p->base_url))
        cfg_errn(s, v[P_BASE], "base_url '%s' is not an http:// or https:// URL with a host", p->base_url);
    else if (p->base_url)
        strip_slash(p->base_url);
    /* Like an include, a relative ca_file is found beside the file naming
     * it; it is read now so that a typo fails the load, not every call. */
    const char *slash = strrchr(s->file, '/');
    if (p->ca_file && p->ca_file[0] != '/' && slash)
        p->ca_file = tg_pool_printf(ld->pool, "%.*s/%s", (int)(slash - s->file), s->file, p->ca_file);
    if (p->ca_file && access(p->ca_file, R_OK) != 0)
        cfg_errn(s, v[P_CA], "provider '%s': ca_file '%s' cannot be read: %s", name, p->ca_file,
                 strerror(errno));
}

static void parse_providers(const src_t *s, const yaml_node_t *n) {
    if (is_null(n) || cfg_expect_map(s, n, "providers") < 0) return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key);
        if (sval(k) == NULL)
            cfg_errn(s, k, "expected a provider name");
        else
            parse_provider(s, k, node_at(s, p->value));
    }
}

/* ---- keys ------------------------------------------------------------ */

enum { K_NAME, K_SHA, K_TAGS, K_BUDGET, K_RPM, K_TPM, K_CACHE, K_N };
static const field_t key_fields[] = {
    {"name", F_STR, offsetof(tg_key_t, name), 0, 0},
    {"sha256", F_SPECIAL, 0, 0, 0},
    {"tags", F_STRS, offsetof(tg_key_t, tags), offsetof(tg_key_t, n_tags), 0},
    {"budget_usd_month", F_NUM, offsetof(tg_key_t, budget_usd_month), 0, 0},
    {"rpm", F_I64, offsetof(tg_key_t, rpm), 0, 0},
    {"tpm", F_I64, offsetof(tg_key_t, tpm), 0, 0},
    {"cache", F_SPECIAL, 0, 0, 0},
};

/* ---- cache (keys and routes) ------------------------------------------ */

#define CACHE_MAX_BYTES_DEFAULT (1 << 20)
#define CACHE_MAX_BYTES_LIMIT (64 << 20) /* one Redis value each; a bigger answer is never stored */

static const field_t cache_fields[] = {
    {"ttl_s", F_I64, offsetof(tg_cache_conf_t, ttl_s), 0, 0},
    {"scope", F_STR, offsetof(tg_cache_conf_t, scope), 0, 0},
    {"max_bytes", F_I64, offsetof(tg_cache_conf_t, max_bytes), 0, 1},
};

/* `cache: { ttl_s: N, scope: NAME, max_bytes: N }` of a key or a route (`owner` names it in
 * messages); ttl_s is required, 0 turns caching off (a key's, over its rule's). null = absent. */
static void parse_cache(const src_t *s, const yaml_node_t *n, tg_cache_conf_t *cc, const char *owner) {
    if (is_null(n)) return;
    char ctx[200];
    snprintf(ctx, sizeof(ctx), "cache of %s", owner);
    yaml_node_t *v[NF(cache_fields)];
    if (cfg_collect(s, n, cache_fields, NF(cache_fields), ctx, v) < 0) return;
    cc->max_bytes = CACHE_MAX_BYTES_DEFAULT;
    cfg_apply(s, cache_fields, NF(cache_fields), v, cc);
    cc->set = 1;
    if (missing(v[0])) cfg_errn(s, n, "%s is missing required field 'ttl_s'", ctx);
    if (cc->max_bytes > CACHE_MAX_BYTES_LIMIT)
        cfg_errn(s, v[2], "%s: max_bytes %lld is over the limit of %d", ctx, (long long)cc->max_bytes,
                 CACHE_MAX_BYTES_LIMIT);
    if (cc->scope && !*cc->scope) cfg_errn(s, v[1], "%s: scope must not be empty", ctx);
}

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
        cfg_errn(s, n, "sha256 of key '%s' must be 64 hex characters, got %s", k->name,
                 cfg_got(n, b, sizeof(b)));
        return;
    }
    m->ok = 1;
    /* Two keys with one hash would make a secret ambiguous. */
    for (size_t i = 0; i < self; i++) {
        tg_key_t *o = &((tg_key_t *)ld->key.items)[i];
        if (ld->key.meta[i].ok && !memcmp(o->sha256, k->sha256, 32)) {
            pos_t f = ld->key.meta[i].at;
            cfg_errn(s, n, "key '%s' has the same sha256 as key '%s' (%s:%d:%d)", k->name, o->name, f.file,
                     f.line, f.col);
        }
    }
}

static void parse_key(const src_t *s, const yaml_node_t *it) {
    ld_t *ld = s->ld;
    meta_t *m;
    tg_key_t *k = cfg_vec_push(ld, &ld->key, sizeof(*k), &m);
    if (k == NULL) return;
    size_t self = ld->key.n - 1;
    m->at = at(s, it);
    k->name = ""; /* until parsed: name lookups never see NULL */
    yaml_node_t *v[K_N];
    if (cfg_collect(s, it, key_fields, K_N, "key", v) < 0) return;
    cfg_apply(s, key_fields, K_N, v, k);
    if (!*k->name) {
        if (missing(v[K_NAME])) cfg_errn(s, it, "key is missing required field 'name'");
    } else {
        m->at = at(s, v[K_NAME]);
        dup_check(s, v[K_NAME], &ld->key, sizeof(*k), "key", k->name, self);
    }
    if (missing(v[K_SHA]))
        cfg_errn(s, it, "key '%s' is missing required field 'sha256'", k->name);
    else
        parse_key_sha(s, v[K_SHA], k, m, self);
    if (v[K_CACHE]) {
        char owner[160];
        snprintf(owner, sizeof(owner), "key '%s'", k->name);
        parse_cache(s, v[K_CACHE], &k->cache, owner);
    }
}

static void parse_keys(const src_t *s, const yaml_node_t *n) {
    if (is_null(n) || cfg_expect_seq(s, n, "keys") < 0) return;
    for (size_t i = 0; i < seq_len(n); i++)
        parse_key(s, node_at(s, n->data.sequence.items.start[i]));
}

/* ---- routes ---------------------------------------------------------- */

enum { R_NAME, R_MATCH, R_REQUIRE, R_STRATEGY, R_CANDS, R_CACHE, R_N };
static const field_t route_fields[] = {
    {"name", F_STR, offsetof(tg_route_t, name), 0, 0},
    {"match", F_SPECIAL, 0, 0, 0},
    {"require", F_SPECIAL, 0, 0, 0},
    {"strategy", F_SPECIAL, 0, 0, 0},
    {"candidates", F_SPECIAL, 0, 0, 0},
    {"cache", F_SPECIAL, 0, 0, 0},
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
    if (cfg_collect(s, n, f, 2, ctx, v) < 0) return;
    cfg_apply(s, f, 2, v, r);
    for (int i = 0; i < 2; i++)
        if (missing(v[i])) cfg_errn(s, n, "%s is missing required field '%s'", ctx, f[i].name);
}

static void parse_match(const src_t *s, const yaml_node_t *n, tg_route_t *r, const char *rname) {
    char ctx[200];
    snprintf(ctx, sizeof(ctx), "match of route '%s'", rname);
    yaml_node_t *v[M_N];
    if (cfg_collect(s, n, match_fields, M_N, ctx, v) < 0) return;
    cfg_apply(s, match_fields, M_N, v, r);
    if (r->m_language) {
        size_t i = 0;
        while (i < NF(languages) && strcmp(r->m_language, languages[i]))
            i++;
        if (i == NF(languages))
            cfg_err_unknown(s, v[M_LANG], "language", r->m_language, NULL, languages, NF(languages),
                            "zh, ja, ko, en or other");
    }
    if (v[M_HEADER]) parse_pair_map(s, v[M_HEADER], header_fields, "header match", r);
    if (v[M_TIME]) parse_pair_map(s, v[M_TIME], time_fields, "time match", r);
    if (r->m_min_prompt_tokens >= 0 && r->m_max_prompt_tokens >= 0 &&
        r->m_min_prompt_tokens > r->m_max_prompt_tokens)
        cfg_errn(s, v[M_MINP], "min_prompt_tokens (%lld) is greater than max_prompt_tokens (%lld)",
                 (long long)r->m_min_prompt_tokens, (long long)r->m_max_prompt_tokens);
}

static void parse_strategy(const src_t *s, const yaml_node_t *n, tg_route_t *r) {
    const char *v = sval(n);
    if (v == NULL) {
        cfg_err_type(s, n, "a strategy name", "strategy");
        return;
    }
    for (size_t i = 0; i < NF(strategies); i++)
        if (!strcmp(v, strategies[i])) {
            static const tg_strategy_t map[] = {TG_STRATEGY_ORDERED, TG_STRATEGY_WEIGHTED,
                                                TG_STRATEGY_CHEAPEST, TG_STRATEGY_FASTEST};
            r->strategy = map[i];
            return;
        }
    cfg_err_unknown(s, n, "strategy", v, NULL, strategies, NF(strategies),
                    "cheapest, fastest, weighted or ordered");
}

static void parse_candidate(const src_t *s, const yaml_node_t *it, tg_candidate_t *cd) {
    cd->weight = 1;
    if (it->type == YAML_SCALAR_NODE && !is_null(it)) {
        cd->target = sdup(s->ld, sval(it));
        return;
    }
    if (it->type != YAML_MAPPING_NODE) {
        cfg_err_type(s, it, "provider/model or {to, weight}", "candidates");
        return;
    }
    yaml_node_t *v[2];
    if (cfg_collect(s, it, cand_fields, 2, "candidate", v) < 0) return;
    cfg_apply(s, cand_fields, 2, v, cd);
    if (missing(v[0])) cfg_errn(s, it, "candidate is missing required field 'to'");
}

static void parse_candidates(const src_t *s, const yaml_node_t *n, tg_route_t *r, meta_t *m) {
    if (cfg_expect_seq(s, n, "candidates") < 0) return;
    size_t cnt = seq_len(n);
    if (cnt == 0) {
        cfg_errn(s, n, "route '%s' has no candidates", r->name);
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
    tg_route_t *r = cfg_vec_push(ld, &ld->route, sizeof(*r), &m);
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
    if (cfg_collect(s, it, route_fields, R_N, "route", v) < 0) return;
    cfg_apply(s, route_fields, R_N, v, r);
    if (!*r->name) {
        if (missing(v[R_NAME])) cfg_errn(s, it, "route is missing required field 'name'");
    } else if (dup_check(s, v[R_NAME], &ld->route, sizeof(*r), "route", r->name, self) == 0 &&
               strchr(r->name, '/')) {
        cfg_errn(s, v[R_NAME], "route name '%s' must not contain '/' (that form means provider/model)",
                 r->name);
    }
    if (v[R_MATCH] && !is_null(v[R_MATCH])) parse_match(s, v[R_MATCH], r, r->name);
    if (v[R_REQUIRE] && !is_null(v[R_REQUIRE])) {
        yaml_node_t *rv[NF(require_fields)];
        if (cfg_collect(s, v[R_REQUIRE], require_fields, NF(require_fields), "require", rv) == 0)
            cfg_apply(s, require_fields, NF(require_fields), rv, r);
    }
    if (v[R_STRATEGY]) parse_strategy(s, v[R_STRATEGY], r);
    if (missing(v[R_CANDS]))
        cfg_errn(s, it, "route '%s' is missing required field 'candidates'", r->name);
    else
        parse_candidates(s, v[R_CANDS], r, m);
    if (v[R_CACHE]) {
        char owner[160];
        snprintf(owner, sizeof(owner), "route '%s'", r->name);
        parse_cache(s, v[R_CACHE], &r->cache, owner);
    }
}

static void parse_routes(const src_t *s, const yaml_node_t *n) {
    if (is_null(n) || cfg_expect_seq(s, n, "routes") < 0) return;
    for (size_t i = 0; i < seq_len(n); i++)
        parse_route(s, node_at(s, n->data.sequence.items.start[i]));
}

static void parse_aliases(const src_t *s, const yaml_node_t *n) {
    ld_t *ld = s->ld;
    if (is_null(n) || cfg_expect_map(s, n, "aliases") < 0) return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key), *v = node_at(s, p->value);
        const char *name = sval(k);
        if (name == NULL) {
            cfg_errn(s, k, "expected an alias name");
            continue;
        }
        if (dup_check(s, k, &ld->alias, sizeof(tg_alias_t), "alias", name, ld->alias.n)) continue;
        meta_t *m;
        tg_alias_t *a = cfg_vec_push(ld, &ld->alias, sizeof(*a), &m);
        if (a == NULL) return;
        a->name = sdup(ld, name);
        m->at = at(s, k);
        m->aux = at(s, v);
        a->pattern = *name && name[strlen(name) - 1] == '*';
        if (v->type != YAML_SCALAR_NODE || is_null(v)) {
            cfg_err_type(s, v, "provider/model or a route name", name);
            continue;
        }
        a->target = sdup(ld, sval(v));
        const char *star = strchr(name, '*'), *tstar = strchr(a->target, '*');
        if (star && star[1])
            cfg_errn(s, k, "alias '%s': a '*' may only end an alias name (\"claude-*\")", name);
        else if (tstar && (!a->pattern || strchr(tstar + 1, '*')))
            cfg_errn(s, v,
                     "alias '%s': its target may hold one '*', and only when the alias name ends in '*'",
                     name);
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
    PR_FREE,
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
    {"free", F_BOOL, offsetof(tg_price_t, free), 0, 0},
};

static const field_t window_fields[] = {
    {"from", F_HHMM, offsetof(tg_price_window_t, from_min), 0, 0},
    {"to", F_HHMM, offsetof(tg_price_window_t, to_min), 0, 0},
    {"input", F_PRICE, offsetof(tg_price_window_t, input), 0, 0},
    {"cached_input", F_PRICE, offsetof(tg_price_window_t, cached_input), 0, 0},
    {"output", F_PRICE, offsetof(tg_price_window_t, output), 0, 0},
};

static void parse_windows(const src_t *s, const yaml_node_t *n, tg_price_t *p) {
    if (is_null(n) || cfg_expect_seq(s, n, "windows") < 0) return;
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
        if (cfg_collect(s, it, window_fields, NF(window_fields), "price window", v) < 0) continue;
        cfg_apply(s, window_fields, NF(window_fields), v, w);
        for (int f = 0; f < 2; f++)
            if (missing(v[f]))
                cfg_errn(s, it, "price window is missing required field '%s'", window_fields[f].name);
    }
}

/* "YYYY-MM-DD" to days since 1970-01-01, -1 when malformed. */
long cfg_date_days(const char *d) {
    int y, mo, da, n = 0;
    if (d == NULL || sscanf(d, "%4d-%2d-%2d%n", &y, &mo, &da, &n) != 3 || n != 10 || strlen(d) != 10)
        return -1;
    if (mo < 1 || mo > 12 || da < 1 || da > 31 || y < 1970) return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = da};
    return (long)(timegm(&tm) / 86400);
}

/* A price key is provider/model, or provider/prefix* for every model the
 * prefix starts: one '*', at the end. */
static int price_key_ok(const char *id, const char *slash) {
    if (slash == NULL || slash == id || !slash[1]) return 0;
    const char *star = strchr(slash + 1, '*');
    return star == NULL || star[1] == '\0';
}

/* What a free entry may say and what an unpriced one must: nothing is ever
 * billed $0 by accident. An entry without output is an embedding model. */
static void check_price_fields(const src_t *s, const yaml_node_t *kn, yaml_node_t **v, tg_price_t *p) {
    const char *id = p->id;
    if (p->free) {
        for (int f = PR_INPUT; f <= PR_WRITE; f++) {
            int64_t x = *(int64_t *)((char *)p + price_fields[f].off);
            if (!missing(v[f]) && x > 0)
                cfg_errn(s, v[f], "price '%s' is free: true but sets %s", id, price_fields[f].name);
        }
        if (v[PR_WINDOWS]) cfg_errn(s, v[PR_WINDOWS], "price '%s' is free: true but has windows", id);
        p->input = p->output = 0;
        p->embedding = !missing(v[PR_INPUT]) && missing(v[PR_OUTPUT]);
        return;
    }
    if (missing(v[PR_INPUT]))
        cfg_errn(s, kn, "price '%s' is missing required field 'input' (or free: true for a zero price)", id);
    p->embedding = missing(v[PR_OUTPUT]);
    if (p->embedding && (!missing(v[PR_CACHED]) || !missing(v[PR_WRITE])))
        cfg_errn(s, kn,
                 "price '%s' has no 'output': an embedding model is priced by 'input' only (give 'output' "
                 "for a chat model)",
                 id);
}

static void parse_price(const src_t *s, const yaml_node_t *kn, const yaml_node_t *vn) {
    ld_t *ld = s->ld;
    const char *id = sval(kn), *slash = strchr(id, '/');
    if (!price_key_ok(id, slash)) {
        cfg_errn(s, kn, "price key '%s' must be provider/model, or provider/prefix* (one '*', at the end)",
                 id);
        return;
    }
    if (dup_check(s, kn, &ld->price, sizeof(tg_price_t), "price", id, ld->price.n)) return;
    meta_t *m;
    tg_price_t *p = cfg_vec_push(ld, &ld->price, sizeof(*p), &m);
    if (p == NULL) return;
    p->id = sdup(ld, id);
    p->provider = tg_pool_strndup(ld->pool, id, (size_t)(slash - id));
    p->model = sdup(ld, slash + 1);
    p->pattern = id[strlen(id) - 1] == '*';
    p->cached_input = p->cache_write = -1; /* default to input below */
    m->at = m->aux = at(s, kn);
    char ctx[200];
    snprintf(ctx, sizeof(ctx), "price '%s'", id);
    yaml_node_t *v[PR_N];
    if (cfg_collect(s, vn, price_fields, PR_N, ctx, v) < 0) return;
    cfg_apply(s, price_fields, PR_N, v, p);
    check_price_fields(s, kn, v, p);
    if (p->cached_input < 0) p->cached_input = p->input;
    if (p->cache_write < 0) p->cache_write = p->input;
    if (v[PR_WINDOWS]) parse_windows(s, v[PR_WINDOWS], p);
    if (v[PR_ASOF]) {
        m->aux = at(s, v[PR_ASOF]);
        if (p->as_of && cfg_date_days(p->as_of) < 0)
            cfg_errn(s, v[PR_ASOF], "as_of must be a date YYYY-MM-DD, got '%s'", p->as_of);
    }
}

static void parse_prices(const src_t *s, const yaml_node_t *n) {
    if (is_null(n) || cfg_expect_map(s, n, "prices") < 0) return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key);
        if (sval(k) == NULL)
            cfg_errn(s, k, "expected a provider/model price key");
        else
            parse_price(s, k, node_at(s, p->value));
    }
}

/* ---- one file ------------------------------------------------------------ */

void cfg_parse_top(const src_t *s, const yaml_node_t *root) {
    yaml_node_t *v[T_N];
    if (cfg_collect(s, root, top_fields, T_N, "the top level", v) < 0) return;
    if (s->is_main) parse_main(s, v);
    /* Sections in document order, so routes keep the order they are read in
     * even when some come from an include placed between others. */
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(s, p->key), *val = node_at(s, p->value);
        const char *key = sval(k);
        size_t i = 0;
        while (key && i < T_N && strcmp(key, top_fields[i].name))
            i++;
        if (key == NULL || i == T_N || v[i] != val) continue; /* reported by cfg_collect */
        switch (i) {
        case T_INCLUDE:
            cfg_parse_includes(s, val);
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
            if (!s->is_main) cfg_errn(s, k, "'%s' is only allowed in the main config file", key);
        }
    }
}
