/* config.h — the loaded configuration: one immutable, reference-counted
 * snapshot built from config/tollgate.yaml and the files it includes
 * (YAML through libyaml, or JSON with the same keys). Workers take a
 * reference per request; reload builds a new snapshot and swaps the global
 * pointer; the old one is freed when its last request lets go.
 * The one header other modules include. Behind it, by job: config_load.c
 * (files and includes to snapshot), config_schema.c and config_yaml.c (what
 * the files may say), config.c (snapshot life, reload digest, lookups),
 * config_keys.c, config_price.c and config_check.c (`tollgate check`). */
#ifndef TG_CONFIG_H
#define TG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"

struct tg_dialect_s;

typedef struct {
    char *name;                         /* "deepseek" */
    char *dialect_name;                 /* "openai" | "anthropic" */
    const struct tg_dialect_s *dialect; /* NULL until tg_dialect_bind() (providers/) */
    char *base_url;                     /* as configured, no trailing slash */
    char *url;                          /* where calls go: base_url, or the simulator when simulated */
    char *api_key_env;
    char *api_key; /* from the environment; NULL when unset. Never log it. */
    char *region;  /* "cn", "us", "eu", "sg"... or NULL */
    int simulated; /* no key set and demo mode (serve --demo or simulator.when_no_key): calls go to
                      the simulator, and its answers and records are marked simulated */
    int keyless;   /* api_key_env names a variable that is not set and nothing stands in for it:
                      the provider is unusable (routing drops it, naming the variable) */
    char **models; /* models this provider offers (from prices and `models:`), NULL-terminated */
    size_t n_models;
    int64_t default_max_tokens; /* for dialects that require max_tokens; 0 = use model's */
    int responses_native;       /* `responses: native`: the vendor speaks the Responses API itself
                                   (OpenAI dialect only), so /v1/responses passes through */
    char *ca_file; /* `ca_file:` PEM CAs trusted for its TLS (relative to the naming file), or NULL */
    int http2;     /* `http2: true`: multiplex calls on HTTP/2; default one HTTP/1.1 call per connection */
} tg_provider_t;

/* Prices in micro-USD per 1M tokens (= pico-USD per token), so that
 * tokens x price / 1e6 is micro-USD with no floating point. */
typedef struct {
    int from_min, to_min;                /* minutes after 00:00 UTC; may wrap past midnight */
    int64_t input, cached_input, output; /* -1 = keep the base price */
} tg_price_window_t;

typedef struct {
    char *id;       /* "deepseek/deepseek-flash" */
    char *provider; /* "deepseek" */
    char *model;    /* "deepseek-flash", or "claude-opus-*" */
    int pattern;    /* model ends in '*': prices every model id that starts with the part before it */
    int free;       /* `free: true`: an explicit zero price */
    int embedding;  /* no output price (input only): an embedding model, never a chat one */
    int64_t input, cached_input, output, cache_write; /* micro-USD per 1M tokens */
    int64_t context;                                  /* tokens, 0 unknown */
    int64_t max_output;                               /* tokens, 0 unknown */
    tg_price_window_t *windows;
    size_t n_windows;
    char *source, *as_of;
} tg_price_t;

/* `cache: { ttl_s, scope, max_bytes }` on a key or a route: the exact response cache
 * (gateway/cache.c, docs/policy.md). A key's setting, when it has one, wins over its rule's. */
typedef struct {
    int set;           /* the entry has a `cache:` mapping */
    int64_t ttl_s;     /* seconds an answer is kept; 0 = caching off for this entry */
    char *scope;       /* keys that name the same scope share answers; NULL = per key */
    int64_t max_bytes; /* answers larger than this are not stored (1 MiB) */
} tg_cache_conf_t;

typedef struct {
    char *name;
    unsigned char sha256[32];
    char **tags; /* NULL-terminated */
    size_t n_tags;
    double budget_usd_month; /* 0 = none */
    int64_t rpm, tpm;        /* 0 = none */
    tg_cache_conf_t cache;   /* `cache:`; .set 0 when absent */
} tg_key_t;

typedef enum {
    TG_STRATEGY_ORDERED,
    TG_STRATEGY_WEIGHTED,
    TG_STRATEGY_CHEAPEST,
    TG_STRATEGY_FASTEST
} tg_strategy_t;

typedef struct {
    char *target; /* "provider/model" */
    const tg_provider_t *provider;
    char *model;     /* the provider's model id */
    unsigned weight; /* default 1 */
} tg_candidate_t;

typedef struct {
    char *name;
    const char *file;
    int line; /* where it was defined, for explain */
    /* match: NULL / -1 = key not given */
    char *m_model;
    char *m_language;
    char *m_key;
    char *m_key_tag;
    char *m_header_name, *m_header_value;
    int m_has_tools, m_has_images;                    /* -1 not given, else 0/1 */
    int64_t m_min_prompt_tokens, m_max_prompt_tokens; /* -1 not given */
    int m_time_from, m_time_to;                       /* minutes UTC, -1 not given */
    /* require */
    char **r_regions;
    size_t n_r_regions;
    double r_max_usd_per_mtok_output; /* 0 = none */
    int64_t r_min_context;            /* 0 = none */
    tg_strategy_t strategy;
    tg_candidate_t *candidates;
    size_t n_candidates;
    tg_cache_conf_t cache; /* `cache:`; .set 0 when absent */
} tg_route_t;

typedef struct {
    char *name;   /* "claude", or a pattern ending in '*' ("claude-*") */
    char *target; /* "provider/model" or a route name; a pattern's may hold one '*' */
    int pattern;  /* name ends in '*': matches every model id with that prefix */
} tg_alias_t;

typedef struct {
    size_t max_body_bytes;
    unsigned upstream_connect_ms, first_byte_ms, idle_ms, total_ms;
    size_t max_header_bytes;
    unsigned header_timeout_ms, body_timeout_ms, keepalive_timeout_ms;
    unsigned max_attempts; /* failover attempts per request, default 3 */
} tg_limits_t;

/* `circuit:` — the breaker of every provider/model (policy/health.h). */
typedef struct {
    unsigned failures;        /* consecutive failures that open a circuit (5) */
    unsigned cooldown_ms;     /* first open period before a probe (10000) */
    unsigned max_cooldown_ms; /* a failed probe doubles the period up to this (60000) */
} tg_circuit_conf_t;

/* One `listen:` entry: an address, and a certificate and key when its
 * connections terminate TLS (gateway/tls.c). */
typedef struct {
    char *host;
    int port;
    char *tls_cert, *tls_key; /* PEM files, relative paths resolved; NULL: plain HTTP */
} tg_listen_t;

typedef struct tg_config_s {
    _Atomic int refs; /* use tg_config_ref/unref */
    char *path;
    char *listen_host; /* the first entry of listens */
    int listen_port;
    int workers;     /* resolved: `auto` = number of online CPUs */
    char *redis_url; /* NULL = no ledger */
    char *admin_token_env;
    char *admin_token;  /* from the environment, NULL when unset */
    char *log_level;    /* "info" */
    char *journal_path; /* default var/tollgate-journal */
    tg_limits_t limits;
    /* simulator: answers for providers with no key in demo mode */
    char *sim_url;       /* default http://127.0.0.1:8090 */
    int sim_when_no_key; /* simulator.when_no_key, or forced on by tg_config_set_demo (default 0) */
    int sim_embedded;    /* serve starts the simulator in-process when needed (default 1) */
    tg_provider_t *providers;
    size_t n_providers;
    tg_price_t *prices;
    size_t n_prices;
    tg_key_t *keys;
    size_t n_keys;
    tg_route_t *routes;
    size_t n_routes;
    tg_alias_t *aliases;
    size_t n_aliases;
    void *arena; /* owns every string and array above */
    /* Fields below were added with the policy engine (kept after the old ones). */
    tg_circuit_conf_t circuit;
    int64_t default_output_tokens; /* routing.default_output_tokens: cost estimate without max_tokens (256) */
    double latency_alpha;          /* routing.latency_alpha: EWMA weight of a new latency sample (0.3) */
    char **files;                  /* every file loaded, as named (main first), for the reload watcher */
    size_t n_files;
    uint64_t files_digest; /* of the bytes of those files as parsed; see tg_config_files_digest */
    int64_t store_ttl_s;   /* store_ttl_s: how long a stored Responses answer is kept (30 days) */
    tg_listen_t *listens;  /* every `listen:` entry, at least one */
    size_t n_listens;
    char *metrics_token_env; /* names the variable holding GET /metrics's bearer token; NULL = open */
    char *metrics_token;     /* its value, NULL when unset (then /metrics refuses everyone). Never log it. */
    /* redis_tls: TLS for rediss URLs (gateway/redis.h); each NULL when unset. Paths as given
     * (relative ones to the working directory, like journal). */
    struct {
        char *ca_file, *cert, *key, *server_name;
    } redis_tls;
} tg_config_t;

/* Diagnostics: every problem found, as "FILE:LINE:COL: message"; warnings
 * (which do not fail a load) read "FILE:LINE:COL: warning: message".
 * Zero-initialise before first use. */
typedef struct {
    char **msgs;
    size_t n, cap;
    size_t n_errors; /* messages that are errors, not warnings */
} tg_diag_t;

void tg_diag_free(tg_diag_t *d);

/* Loads and validates `path` and its includes. Returns the snapshot (refs
 * = 1) or NULL with at least one message in `d`. Validation covers unknown
 * keys, wrong types, bad URLs, duplicate names, candidates or aliases that
 * name an unknown provider/route, price windows, bad sha256 hex. Problems
 * that do not stop serving (a provider key env var unset) are not errors. */
tg_config_t *tg_config_load(const char *path, tg_diag_t *d);
/* Demo mode (`tollgate serve --demo`): every load from now on lets the
 * simulator answer for providers whose key is not set, as if the config
 * said simulator.when_no_key: true. Off by default: outside demo mode such
 * a provider is unusable, so nothing made up is ever served or billed as
 * real. Call before the first load; not thread-safe against a load. */
void tg_config_set_demo(int on);
tg_config_t *tg_config_ref(tg_config_t *c);
void tg_config_unref(tg_config_t *c);

/* The current snapshot, shared by all workers (swapped by reload). The
 * caller owns the reference it gets. */
tg_config_t *tg_config_current(void);
/* Installs `c` (takes over the caller's reference) and drops the old one. */
void tg_config_install(tg_config_t *c);

const tg_provider_t *tg_config_provider(const tg_config_t *c, const char *name, size_t len);
/* Price entry for provider/model, NULL when unknown: the exact entry, else
 * the pattern entry ("claude-opus-*") with the longest literal prefix that
 * the model starts with. */
const tg_price_t *tg_config_price(const tg_config_t *c, const char *provider, const char *model);
const tg_route_t *tg_config_route(const tg_config_t *c, const char *name);
/* The alias of a model id: the exact entry, else the pattern alias with the
 * longest literal prefix that the id starts with; NULL when none. */
const tg_alias_t *tg_config_alias(const tg_config_t *c, const char *name);
/* What alias a sends `name` to: its target, with a '*' in it replaced by
 * the part of name that the alias's '*' matched ("claude-*" ->
 * "anthropic/claude-*" sends "claude-opus-5-5" to
 * "anthropic/claude-opus-5-5"). From pool when it had to be built; NULL
 * when out of memory. */
const char *tg_config_alias_target(const tg_alias_t *a, const char *name, tg_pool_t *pool);
/* Whether `model` is matched by `pattern`: equal, or pattern ends in '*'
 * and model starts with the part before it. Aliases, price keys and route
 * `match.model` all match this way. */
int tg_config_model_match(const char *pattern, const char *model);

/* What a request asks a model for. Chat covers every conversational API
 * (/v1/chat/completions, /v1/messages, /v1/responses). */
typedef enum { TG_KIND_CHAT, TG_KIND_EMBEDDINGS, TG_KIND_COUNT_TOKENS } tg_kind_t;

/* Whether the model priced by p may serve a request of this kind: an
 * embedding model (an `input` price and no `output`; `{free: true, input:
 * 0}` for a free one) serves embeddings only, any other model everything
 * but embeddings. */
int tg_config_price_serves(const tg_price_t *p, tg_kind_t kind);

/* Key by the SHA-256 of the presented secret, compared in constant time
 * over every configured key; NULL when none matches. */
const tg_key_t *tg_config_key(const tg_config_t *c, const char *secret, size_t len);

/* Prices in force at minute-of-day `min` (UTC): base price with the first
 * matching window's fields applied. */
void tg_price_at(const tg_price_t *p, int min, int64_t *input, int64_t *cached_input, int64_t *output);

/* Whether minute-of-day `min` lies in [from, to) (UTC minutes); a window
 * with from > to wraps past midnight, from == to covers the whole day.
 * Price windows and route `time:` matches both use it. */
int tg_config_in_window(int from_min, int to_min, int min);

/* Digest of the files c was loaded from, as they are on disk now (a file
 * that cannot be read counts as empty): differs from c->files_digest when
 * any of them changed since. */
uint64_t tg_config_files_digest(const tg_config_t *c);

struct ssl_ctx_st;
/* Loads a PEM certificate chain (leaf first, then intermediates) and its
 * PEM private key into ctx and checks that they belong together. Returns 0,
 * or with a sentence in err naming the file at fault: -1 when it is the
 * certificate, -2 when it is the key (missing, not a key, or not the
 * certificate's). An encrypted key is refused rather than prompted for. Configuration loading validates
 * every TLS listener with it; gateway/tls.c builds its contexts with it. */
int tg_config_tls_load(struct ssl_ctx_st *ctx, const char *cert, const char *key, char *err, size_t errlen);

/* `tollgate check`: loads `path` (NULL = config/tollgate.yaml), prints each
 * diagnostic on stdout, then "FILE: ok (N providers, ...)" when valid.
 * Returns the exit code: 0 valid (warnings allowed), 1 invalid. */
int tg_config_check_main(const char *path);

#endif
