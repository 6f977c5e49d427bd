/* config_listen.c — the `listen:` key of the main file: one address
 * ("host:port"), or a list whose entries are addresses or mappings
 * { address, tls: { cert, key } }. Each entry becomes a tg_listen_t of the
 * snapshot; the first also fills listen_host/listen_port. A TLS entry's
 * certificate chain and key are loaded and matched here (tg_config_tls_load,
 * also what gateway/tls.c builds its contexts with), so `tollgate check`,
 * start-up and reload all refuse a bad pair at its line; their files join
 * the load's file list, so the reload watcher follows them too. */
#include "core/config_int.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdlib.h>

#define MAX_LISTENS 16

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

/* ---- certificates ------------------------------------------------------- */

/* An encrypted key would make OpenSSL prompt on the terminal: refuse it. */
static int no_passphrase(char *buf, int size, int rwflag, void *ud) {
    return 0;
}

/* The last OpenSSL reason in the thread's queue, which is then emptied. */
static const char *ssl_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown error";
}

static int readable(const char *path, const char *what, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open TLS %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

int tg_config_tls_load(struct ssl_ctx_st *ctx, const char *cert, const char *key, char *err, size_t errlen) {
    ERR_clear_error();
    if (readable(cert, "certificate", err, errlen) < 0) return -1;
    if (readable(key, "key", err, errlen) < 0) return -2;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "TLS certificate %s is not a usable PEM certificate chain (%s)", cert,
                 ssl_reason());
        return -1;
    }
    FILE *f = fopen(key, "rb");
    EVP_PKEY *pk = f ? PEM_read_PrivateKey(f, NULL, no_passphrase, NULL) : NULL;
    if (f) fclose(f);
    if (pk == NULL) {
        snprintf(err, errlen, "TLS key %s is not an unencrypted PEM private key (%s)", key, ssl_reason());
        return -2;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pk);
    if (!ok) {
        snprintf(err, errlen, "TLS key %s does not match certificate %s (%s)", key, cert, ssl_reason());
        return -2;
    }
    return 0;
}

/* The pair loads and matches, in a context of the kind a listener uses;
 * a problem is reported at the file at fault. Their bytes then join the
 * digest so that rotating them triggers a reload. */
static void tls_check(const src_t *s, const yaml_node_t *cert_n, const yaml_node_t *key_n, const char *cert,
                      const char *key) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char err[512];
    if (ctx == NULL) {
        cfg_errn(s, cert_n, "cannot create a TLS context (%s)", ssl_reason());
        return;
    }
    int rc = tg_config_tls_load(ctx, cert, key, err, sizeof(err));
    if (rc < 0) cfg_errn(s, rc == -2 ? key_n : cert_n, "%s", err);
    SSL_CTX_free(ctx);
    const char *paths[2] = {cert, key};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "rb");
        size_t len = 0;
        char *text = f ? cfg_slurp(f, &len) : NULL;
        if (f) fclose(f);
        if (text) cfg_note_file(s->ld, paths[i], text, len);
        free(text);
    }
}

/* ---- entries ------------------------------------------------------------- */

/* A path relative to the directory of the file that names it. */
static char *rel_path(const src_t *s, const char *p) {
    const char *slash = strrchr(s->file, '/');
    if (p[0] == '/' || slash == NULL) return sdup(s->ld, p);
    char *r = tg_pool_printf(s->ld->pool, "%.*s/%s", (int)(slash - s->file), s->file, p);
    if (r == NULL) s->ld->oom = 1;
    return r;
}

static const field_t entry_fields[] = {
    {"address", F_SPECIAL, 0, 0, 0},
    {"tls", F_SPECIAL, 0, 0, 0},
};

static const field_t tls_fields[] = {
    {"cert", F_SPECIAL, 0, 0, 0},
    {"key", F_SPECIAL, 0, 0, 0},
};

static int address(const src_t *s, const yaml_node_t *n, tg_listen_t *l) {
    const char *v = sval(n);
    if (v != NULL && split_listen(s->ld, v, &l->host, &l->port) == 0) return 0;
    char b[80];
    cfg_errn(s, n, "cannot parse listen address %s (expected host:port, e.g. 0.0.0.0:8080)",
             cfg_got(n, b, sizeof(b)));
    return -1;
}

/* `tls: { cert, key }` of an entry: both required, both files. */
static void tls_entry(const src_t *s, const yaml_node_t *n, tg_listen_t *l) {
    yaml_node_t *v[NF(tls_fields)];
    if (cfg_collect(s, n, tls_fields, NF(tls_fields), "listen tls", v) < 0) return;
    const char *names[2] = {"cert", "key"};
    char **dst[2] = {&l->tls_cert, &l->tls_key};
    for (int i = 0; i < 2; i++) {
        const char *p = v[i] ? sval(v[i]) : NULL;
        if (v[i] == NULL)
            cfg_errn(s, n, "listen tls needs '%s' (a PEM file)", names[i]);
        else if (p == NULL || !*p)
            cfg_err_type(s, v[i], "a file name", names[i]);
        else
            *dst[i] = rel_path(s, p);
    }
    if (l->tls_cert && l->tls_key) tls_check(s, v[0], v[1], l->tls_cert, l->tls_key);
}

static int entry(const src_t *s, const yaml_node_t *n, tg_listen_t *l) {
    if (n->type == YAML_SCALAR_NODE) return address(s, n, l);
    yaml_node_t *v[NF(entry_fields)];
    if (cfg_collect(s, n, entry_fields, NF(entry_fields), "listen entry", v) < 0) return -1;
    if (v[0] == NULL) {
        cfg_errn(s, n, "listen entry needs 'address' (host:port)");
        return -1;
    }
    if (address(s, v[0], l) < 0) return -1;
    if (v[1] && !is_null(v[1])) tls_entry(s, v[1], l);
    return 0;
}

void cfg_parse_listen(const src_t *s, const yaml_node_t *n) {
    tg_config_t *c = s->ld->c;
    size_t cnt = n->type == YAML_SEQUENCE_NODE ? seq_len(n) : 1;
    if (cnt == 0 || cnt > MAX_LISTENS) {
        cfg_errn(s, n, "listen needs between 1 and %d addresses, got %zu", MAX_LISTENS, cnt);
        return;
    }
    tg_listen_t *ls = tg_pool_calloc(s->ld->pool, cnt * sizeof(*ls));
    if (ls == NULL) {
        s->ld->oom = 1;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it =
            n->type == YAML_SEQUENCE_NODE ? node_at(s, n->data.sequence.items.start[i]) : n;
        if (entry(s, it, &ls[k]) < 0) continue;
        for (size_t j = 0; j < k; j++)
            if (ls[j].port == ls[k].port && !strcmp(ls[j].host, ls[k].host)) {
                cfg_errn(s, it, "listen address %s:%d is given twice", ls[k].host, ls[k].port);
                break;
            }
        k++;
    }
    if (k == cnt) {
        c->listens = ls;
        c->n_listens = k;
        c->listen_host = ls[0].host;
        c->listen_port = ls[0].port;
    }
}
