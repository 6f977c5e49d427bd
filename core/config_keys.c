/* config_keys.c — gateway key authentication: the presented secret is
 * hashed (SHA-256, with a small per-thread cache of recent digests) and
 * compared in constant time with every key of the snapshot, so neither the
 * hashing nor the comparison tells a caller which key, if any, was near.
 * In: the snapshot and the secret from the request; out: the tg_key_t. */
#include "core/config.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

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
