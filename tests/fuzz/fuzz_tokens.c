/* fuzz_tokens.c — libFuzzer target: scan.c's fast tokenizer against jsmn.
 * Property: whenever fast_tokenize() accepts a body, jsmn (strict, parent
 * links) plus validate() accept it too and produce the very same tokens
 * (type, start, end, size, parent). The fast path may give up on anything;
 * it must never accept what the jsmn path refuses nor tokenize differently.
 * The file includes scan.c to reach its static functions. Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE \
 *       tests/fuzz/fuzz_tokens.c core/pool.c -o /tmp/fuzz_tokens */
/* deps: core/pool.c */
#include "core/scan.c"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    jsmntok_t fast_toks[STACK_TOKS], slow_stack[STACK_TOKS];
    scan_t a = {.js = (const char *)data, .len = size, .err = err, .errlen = sizeof err};
    if (fast_tokenize(&a, fast_toks, STACK_TOKS) != 0) return 0;
    tg_pool_t *pool = tg_pool_create(4096);
    scan_t b = {.js = (const char *)data, .len = size, .pool = pool, .err = err, .errlen = sizeof err};
    if (tokenize(&b, slow_stack) != 0 || validate(&b) != 0) abort(); /* fast accepted what jsmn refuses */
    if (a.n != b.n) abort();
    for (int i = 0; i < a.n; i++) {
        const jsmntok_t *x = &a.t[i], *y = &b.t[i];
        if (x->type != y->type || x->start != y->start || x->end != y->end || x->size != y->size ||
            x->parent != y->parent)
            abort();
    }
    tg_pool_destroy(pool);
    return 0;
}
