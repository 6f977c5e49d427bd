/* hash.h — FNV-1a, the one non-cryptographic hash of the project: table
 * slots (health, report, quota), the reload watcher's digest, the weighted
 * strategy's route signature and the ledger journal's line checksum. Fast on
 * short strings, no state, no allocation. Not for anything an attacker must
 * not steer: keys are compared in constant time elsewhere (core/config.c). */
#ifndef TG_HASH_H
#define TG_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The 64-bit seed every caller has used so far. It is the published FNV-64
 * offset basis (14695981039346656037) with its last digit missing; any
 * non-zero seed hashes as well, and keeping it keeps every stored journal,
 * slot layout and route signature as it was. */
#define TG_HASH_FNV64_SEED 1469598103934665603ull
#define TG_HASH_FNV64_PRIME 1099511628211ull
#define TG_HASH_FNV32_SEED 2166136261u
#define TG_HASH_FNV32_PRIME 16777619u

/* One step with a value that need not be a byte: callers mix in separators
 * (0xff, '/') and numbers (a weight) that no run of text bytes can fake. */
static inline uint64_t tg_hash_fnv64_mix(uint64_t h, uint64_t v) {
    return (h ^ v) * TG_HASH_FNV64_PRIME;
}

/* h continued over n bytes at p. */
static inline uint64_t tg_hash_fnv64(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * TG_HASH_FNV64_PRIME;
    return h;
}

/* h continued over a NUL-terminated string (NULL adds nothing). */
static inline uint64_t tg_hash_fnv64_str(uint64_t h, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
        h = (h ^ *p) * TG_HASH_FNV64_PRIME;
    return h;
}

/* The 32-bit variant, for the journal's 8-hex-digit checksum and small
 * tables. */
static inline uint32_t tg_hash_fnv32(uint32_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * TG_HASH_FNV32_PRIME;
    return h;
}

#endif
