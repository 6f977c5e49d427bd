/* fuzz_responses_fast.c — libFuzzer target holding the Responses fast path
 * (providers/responses_fast.c) to the jansson path. The input is a request,
 * optionally followed by a NUL byte and a chat completion. Properties: (1)
 * a request the fast path declines leaves the prep untouched; (2) a request
 * it takes is one jansson loads, and its routing Chat body, note and store
 * flag, and every attempt's spliced body, are byte for byte the jansson
 * translation's; (3) an answer the fast path takes for it is one jansson
 * loads, and the Response is byte for byte the jansson path's; a fixed plain
 * answer is tried too. tests/unit/test_responses_fast.h holds the checks.
 * Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE tests/fuzz/fuzz_responses_fast.c \
 *       providers/responses_fast.c providers/responses.c providers/responses_req.c \
 *       providers/responses_stream.c providers/translate.c providers/translate_stream.c core/scan.c \
 *       core/pool.c -ljansson -o /tmp/fuzz_responses_fast */
/* clang-format off */
/* deps: providers/responses_fast.c providers/responses.c providers/responses_req.c providers/responses_stream.c providers/translate.c providers/translate_stream.c core/scan.c core/pool.c */
/* clang-format on */
/* libs: -ljansson -lm */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/test_responses_fast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *nul = memchr(data, 0, size);
    size_t rlen = nul ? (size_t)(nul - (const char *)data) : size;
    char *req = malloc(rlen + 1);
    memcpy(req, data, rlen);
    req[rlen] = '\0';
    char *ans = NULL;
    if (nul) {
        size_t alen = size - rlen - 1;
        ans = malloc(alen + 1);
        memcpy(ans, nul + 1, alen);
        ans[alen] = '\0'; /* an answer with a NUL inside is cut there: strlen is what the check sends */
    }
    const char *answers[2] = {
        "{\"choices\":[{\"message\":{\"content\":\"Hello \\u00e9\"},\"finish_reason\":\"stop\"}]}", ans};
    char why[2048];
    if (rsf_check_request(req, rlen, answers, ans ? 2 : 1, NULL, why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        abort();
    }
    free(req);
    free(ans);
    return 0;
}
