/* fuzz_tokens.c — libFuzzer target: scan.c's fast tokenizer against jsmn.
 * Properties: whenever fast_tokenize() accepts a body, jsmn (strict, parent
 * links) plus validate() accept it too and produce the very same tokens
 * (type, start, end, size, parent); and whenever the jsmn path accepts a
 * body that fits the stack array, the fast path accepts it too. So the two
 * agree on every refusal (grammar, depth, raw control bytes, bad UTF-8, lone
 * surrogates) for the bodies the fast path handles; it gives up only on
 * bigger ones.
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
    int fast = fast_tokenize(&a, fast_toks, STACK_TOKS) == 0;
    scan_t b = {.js = (const char *)data, .len = size, .err = err, .errlen = sizeof err, .strict = 1};
    int slow = tokenize(&b, slow_stack) == 0 && validate(&b) == 0;
    if (!fast) {
        /* The fast path may give up only on what jsmn refuses, on what
         * outgrows the stack array, and on a top-level value other than an
         * object (parse() refuses that before either runs). */
        if (slow && b.n <= STACK_TOKS && b.t[0].type == JSMN_OBJECT) abort();
        scan_done(&b);
        return 0;
    }
    if (!slow) abort(); /* fast accepted what jsmn refuses */
    if (a.n != b.n) abort();
    for (int i = 0; i < a.n; i++) {
        const jsmntok_t *x = &a.t[i], *y = &b.t[i];
        if (x->type != y->type || x->start != y->start || x->end != y->end || x->size != y->size ||
            x->parent != y->parent)
            abort();
    }
    scan_done(&b);
    return 0;
}
