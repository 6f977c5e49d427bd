/* tls.h — TLS termination for a listener: one server context per TLS
 * `listen:` entry, shared by every worker, swapped on reload, and the
 * transport (gateway/http1.h) its connections run over. */
#ifndef TG_TLS_H
#define TG_TLS_H

#include <stddef.h>

#include "gateway/http1.h"

typedef struct tg_tls_s tg_tls_t;

/* A context serving certificate chain `cert` with private key `key` (PEM
 * files): TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers on 1.2, ALPN
 * http/1.1. NULL with a sentence in err when the files do not load or do
 * not match. */
tg_tls_t *tg_tls_new(const char *cert, const char *key, char *err, size_t errlen);
/* Builds a new context from the files as they are now and makes it the one
 * new connections get; open connections keep theirs. On failure the old one
 * stays and err says why (-1); 0 on success. Safe while workers accept. */
int tg_tls_reload(tg_tls_t *t, const char *cert, const char *key, char *err, size_t errlen);
/* The transport to give tg_http_server_add_listener(); lives as long as t. */
const tg_http_transport_t *tg_tls_transport(tg_tls_t *t);
/* Frees t once no server uses its transport any more. */
void tg_tls_free(tg_tls_t *t);

#endif
