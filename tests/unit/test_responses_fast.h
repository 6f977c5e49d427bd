/* test_responses_fast.h — the one comparison of the Responses fast path
 * (providers/responses_fast.c) with the jansson path, shared by
 * tests/unit/test_responses_fast.c and tests/fuzz/fuzz_responses_fast.c.
 * For a request the fast path accepts: jansson loads it; the routing Chat
 * body, the note and the store flag are those of tg_rs_req_to_chat (built-in
 * tools let through) dumped by tg_tr_dump; every attempt's splice (a few
 * models, max_tokens or max_completion_tokens) is the text of the
 * per-attempt translation; and for an answer the fast path accepts, the
 * Response is the text openai.c's jansson path writes (tg_rs_resp_from_chat
 * with the request echoed, usage replaced by the scanned one). Each check
 * returns 1 (fast path taken, same text), 0 (declined) or -1 with what
 * differed in why. */
#ifndef TEST_RESPONSES_FAST_H
#define TEST_RESPONSES_FAST_H

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "core/scan.h"
#include "providers/responses.h"
#include "providers/responses_fast.h"

static int rsf_differ(char *why, size_t n, const char *what, const char *fast, size_t fl, const char *slow,
                      size_t sl) {
    snprintf(why, n, "%s differs:\n fast: %.*s\n slow: %.*s", what, (int)(fl > 600 ? 600 : fl),
             fast ? fast : "", (int)(sl > 600 ? 600 : sl), slow ? slow : "(none)");
    return -1;
}

static int rsf_same(const char *a, size_t al, const char *b, size_t bl) {
    return a && b && al == bl && memcmp(a, b, al) == 0;
}

/* The answer the jansson path writes for p's request. */
static char *rsf_slow_answer(tg_pool_t *pool, tg_rs_prep_t *p, const char *body, size_t len, const char *id,
                             const char *model, const tg_usage_t *u, size_t *out_len) {
    json_t *resp = json_loadb(body, len, 0, NULL);
    tg_rs_resp_opts_t ro = {.id = id, .created_at = 1700000000, .model = model, .req = tg_rs_prep_req(p)};
    tg_usage_t scratch = {0};
    char err[128];
    json_t *r = resp ? tg_rs_resp_from_chat(resp, &ro, &scratch, err, sizeof(err)) : NULL;
    json_decref(resp);
    if (r == NULL) return NULL;
    if (u->present) json_object_set_new(r, "usage", tg_rs_usage_json(u));
    return tg_tr_dump(pool, r, out_len);
}

static int rsf_check_answer(tg_pool_t *pool, tg_rs_prep_t *p, const char *body, size_t len, char *why,
                            size_t whylen) {
    static const char *const ids[] = {"abc", "0123456789abcdef"};
    static const char *const models[] = {"deepseek-chat", "m\"o\\d\n\x01\xc3\xa9l"};
    const tg_usage_t us[] = {{.present = 1, .input_tokens = 12, .cached_input_tokens = 3, .output_tokens = 5},
                             {.present = 1, .input_tokens = 7, .output_tokens = 2, .reasoning_tokens = 1}};
    int taken = -2;
    for (int k = 0; k < 2; k++) {
        const char *out = NULL;
        size_t ol = 0, sl = 0;
        int rc = tg_rs_fast_answer(pool, p, body, len, ids[k], 1700000000, models[k], &us[k], &out, &ol);
        if (taken != -2 && (rc == 0) != taken) {
            snprintf(why, whylen, "the fast answer path took the answer for one id/model and not another");
            return -1;
        }
        taken = rc == 0;
        if (rc != 0) continue;
        char *slow = rsf_slow_answer(pool, p, body, len, ids[k], models[k], &us[k], &sl);
        if (!rsf_same(out, ol, slow, sl)) return rsf_differ(why, whylen, "the Response", out, ol, slow, sl);
    }
    return taken;
}

/* The request check; answers (may be NULL) are tried against it when taken. */
static int rsf_check_request(const char *body, size_t len, const char *const *answers, size_t n_answers,
                             int *answers_taken, char *why, size_t whylen) {
    tg_pool_t *pool = tg_pool_create(4096);
    tg_rs_prep_t p = {0};
    int rc = 1;
    if (tg_rs_fast_req(pool, body, len, &p) != 0) {
        tg_rs_prep_t zero = {0};
        rc = memcmp(&p, &zero, sizeof(p)) ? (snprintf(why, whylen, "a declined request changed the prep"), -1)
                                          : 0;
        tg_pool_destroy(pool);
        return rc;
    }
    const json_t *req = tg_rs_prep_req(&p);
    char err[256];
    if (!json_is_object(req)) {
        snprintf(why, whylen, "the fast path took a request jansson does not load as an object");
        rc = -1;
        goto out;
    }
    const char *model = json_string_value(json_object_get(req, "model"));
    const json_t *prev = json_object_get(req, "previous_response_id");
    if (model == NULL || !*model || (prev && !json_is_null(prev))) {
        snprintf(why, whylen, "the fast path took a request the request layer would not translate at once");
        rc = -1;
        goto out;
    }
    tg_rs_req_opts_t o = {.native_tools = 1};
    json_t *chat = tg_rs_req_to_chat(req, &o, err, sizeof(err));
    size_t sl = 0;
    char *slow = chat ? tg_tr_dump(pool, chat, &sl) : NULL;
    if (!rsf_same(p.chat, p.chat_len, slow, sl)) {
        rc = rsf_differ(why, whylen, "the Chat body", p.chat, p.chat_len, slow ? slow : err,
                        slow ? sl : strlen(err));
        goto out;
    }
    if (strcmp(o.note, p.note) != 0) {
        rc = rsf_differ(why, whylen, "the note", p.note, strlen(p.note), o.note, strlen(o.note));
        goto out;
    }
    if (p.store != !json_is_false(json_object_get(req, "store")) || p.reuse != tg_rs_chat_reusable(req)) {
        snprintf(why, whylen, "store or reuse differs");
        rc = -1;
        goto out;
    }
    tg_scan_req_t s;
    if (tg_scan_request(p.chat, p.chat_len, pool, &s, err, sizeof(err)) != 0) {
        snprintf(why, whylen, "the Chat body does not scan: %s", err);
        rc = -1;
        goto out;
    }
    static const char *const models[] = {"deepseek-chat", "gpt-5/\"quoted\"\t\xc3\xa9"};
    for (int m = 0; m < 2; m++)
        for (int mct = 0; mct < 2; mct++) {
            tg_rs_req_opts_t ao = {.model = models[m], .max_completion_tokens = mct};
            json_t *a = tg_rs_req_to_chat(req, &ao, err, sizeof(err));
            size_t al = 0, fl = 0;
            char *as = a ? tg_tr_dump(pool, a, &al) : NULL;
            char *fs = tg_rs_chat_splice(pool, p.chat, p.chat_len, &s, models[m], mct, &fl);
            if (!rsf_same(fs, fl, as, al) || strcmp(ao.note, p.note) != 0) {
                rc = rsf_differ(why, whylen, "an attempt's Chat body", fs, fl, as, al);
                goto out;
            }
        }
    for (size_t i = 0; i < n_answers; i++) {
        int t = rsf_check_answer(pool, &p, answers[i], strlen(answers[i]), why, whylen);
        if (t < 0) {
            rc = -1;
            goto out;
        }
        if (answers_taken) answers_taken[i] = t;
    }
out:
    json_decref(p.req);
    tg_pool_destroy(pool);
    return rc;
}

#endif
