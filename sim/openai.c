/* openai.c — the OpenAI Chat Completions dialect as the simulated vendors
 * speak it: the error shape, usage in each vendor's fields (OpenAI, DeepSeek
 * and Qwen differ), the whole answer, the stream generator (one SSE event
 * per call, pulled by sim/pace.c), and the model lists of GET /v1/models.
 * With x-sim-logprobs: N each answer token carries OpenAI's logprobs entry
 * (N top_logprobs, derived from the token's index alone), which makes the
 * large chunks a gateway's stream memory is tested with.
 * A plan (sim/simulate_int.h) goes in; JSON and SSE text leave in a sim_buf_t. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim/simulate_int.h"

static void error_type(int status, const char **type, const char **code) {
    *code = NULL;
    if (status == 429) {
        *type = "requests";
        *code = "rate_limit_exceeded";
    } else if (status == 401) {
        *type = "invalid_request_error";
        *code = "invalid_api_key";
    } else if (status >= 500) {
        *type = "server_error";
    } else {
        *type = "invalid_request_error";
    }
}

/* msg is the JSON-escaped message. */
void sim_openai_error(sim_buf_t *b, const sim_err_t *e, const char *msg) {
    const char *type, *code;
    error_type(e->status, &type, &code);
    if (e->type) type = e->type;
    if (e->code) code = e->code;
    sim_printf(b, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":", msg, type);
    if (code)
        sim_printf(b, "\"%s\"}}", code);
    else
        sim_puts(b, "null}}");
}

static int64_t visible_reasoning(const sim_plan_t *p) {
    return p->flavour == FL_OPENAI ? 0 : p->reasoning;
}

static void usage(sim_buf_t *b, const sim_plan_t *p) {
    int64_t c = sim_completion_tokens(p), r = p->reasoning;
    sim_printf(b,
               "{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64,
               p->prompt, c, p->prompt + c);
    if (p->flavour == FL_DEEPSEEK)
        sim_printf(b, ",\"prompt_cache_hit_tokens\":%" PRId64 ",\"prompt_cache_miss_tokens\":%" PRId64,
                   p->cached, p->prompt - p->cached);
    else if (p->flavour == FL_QWEN)
        sim_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRId64 "}", p->cached);
    else
        sim_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRId64 ",\"audio_tokens\":0}",
                   p->cached);
    if (p->flavour == FL_OPENAI)
        sim_printf(b,
                   ",\"completion_tokens_details\":{\"reasoning_tokens\":%" PRId64 ",\"audio_tokens\":0,"
                   "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
                   r);
    else if (r > 0)
        sim_printf(b, ",\"completion_tokens_details\":{\"reasoning_tokens\":%" PRId64 "}}", r);
    else
        sim_puts(b, "}");
}

static const char *finish_reason(const sim_plan_t *p) {
    return p->tool ? "tool_calls" : p->limited ? "length" : "stop";
}

/* A logprob of -k/10000 in fixed notation, so the text does not depend on
 * the C library's float formatting. */
static void put_logprob(sim_buf_t *b, int64_t k) {
    sim_printf(b, "%s%" PRId64 ".%04" PRId64, k ? "-" : "", k / 10000, k % 10000);
}

/* Answer token i as the stream sends it: words joined by one space. */
static void put_token(sim_buf_t *b, int64_t i, int64_t word) {
    const char *w = sim_words[word % (int64_t)sim_nwords];
    sim_printf(b, "\"token\":\"%s%s\",\"logprob\":", i ? " " : "", w);
}

static void put_bytes(sim_buf_t *b, int64_t i, int64_t word) {
    const char *w = sim_words[word % (int64_t)sim_nwords];
    sim_puts(b, ",\"bytes\":[");
    if (i) sim_puts(b, "32");
    for (size_t k = 0; w[k]; k++)
        sim_printf(b, "%s%u", i || k ? "," : "", (unsigned)(unsigned char)w[k]);
    sim_puts(b, "]");
}

/* One entry of logprobs.content for answer token i: the token, its logprob
 * and bytes, and p->logprobs alternatives, the token itself first and then
 * the words after it, each less likely than the one before. All of it
 * follows from i alone, so an answer is the same every time. */
static void logprob_entry(sim_buf_t *b, const sim_plan_t *p, int64_t i) {
    int64_t k = (i * 7919) % 5000;
    sim_puts(b, "{");
    put_token(b, i, i);
    put_logprob(b, k);
    put_bytes(b, i, i);
    sim_puts(b, ",\"top_logprobs\":[");
    for (int64_t j = 0; j < p->logprobs && !b->oom; j++) {
        sim_puts(b, j ? ",{" : "{");
        put_token(b, i, i + j);
        put_logprob(b, k + j * 5000);
        put_bytes(b, i, i + j);
        sim_puts(b, "}");
    }
    sim_puts(b, "]}");
}

/* The choice's "logprobs" member: null, or the entries of tokens [from, to). */
static void logprobs(sim_buf_t *b, const sim_plan_t *p, int64_t from, int64_t to) {
    if (p->logprobs <= 0 || p->tool || from < 0 || from >= to) {
        sim_puts(b, "\"logprobs\":null");
        return;
    }
    sim_puts(b, "\"logprobs\":{\"content\":[");
    for (int64_t i = from; i < to && !b->oom; i++) {
        if (i > from) sim_puts(b, ",");
        logprob_entry(b, p, i);
    }
    sim_puts(b, "],\"refusal\":null}");
}

void sim_openai_whole(sim_buf_t *b, const sim_plan_t *p) {
    sim_printf(b,
               "{\"id\":\"chatcmpl-sim-%" PRIu64
               "\",\"object\":\"chat.completion\",\"created\":%lld,\"model\":\"%s\","
               "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
               p->n, p->created, p->model);
    if (p->tool)
        sim_puts(b, "null");
    else {
        sim_puts(b, "\"");
        sim_put_words(b, sim_words, sim_nwords, p->out);
        sim_puts(b, "\"");
    }
    if (visible_reasoning(p) > 0) {
        sim_puts(b, ",\"reasoning_content\":\"");
        sim_put_words(b, sim_thoughts, sim_nthoughts, p->reasoning);
        sim_puts(b, "\"");
    }
    if (p->tool)
        sim_printf(b,
                   ",\"tool_calls\":[{\"id\":\"call_sim_%" PRIu64 "\",\"type\":\"function\",\"function\":"
                   "{\"name\":\"%s\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]",
                   p->n, p->tool_name);
    if (p->flavour == FL_OPENAI) sim_puts(b, ",\"refusal\":null,\"annotations\":[]");
    sim_puts(b, "},");
    logprobs(b, p, 0, p->out);
    sim_printf(b, ",\"finish_reason\":\"%s\"}]", finish_reason(p));
    if (!p->no_usage) {
        sim_puts(b, ",\"usage\":");
        usage(b, p);
    }
    if (p->flavour == FL_OPENAI)
        sim_puts(b, ",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_sim\"");
    sim_puts(b, "}");
}

enum { G_ROLE, G_REASON, G_BODY, G_FINISH, G_USAGE, G_DONE, G_END };

/* usage: 0 no usage member, 1 "usage":null, 2 the full usage. delta NULL:
 * the usage-only chunk with "choices":[]. tok: the answer token the chunk
 * carries (its logprobs go with it), or -1. */
static void chunk(sim_buf_t *b, const sim_plan_t *p, const char *delta, const char *finish, int with_usage,
                  int64_t tok) {
    sim_printf(b,
               "data: {\"id\":\"chatcmpl-sim-%" PRIu64
               "\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
               "\"model\":\"%s\",",
               p->n, p->created, p->model);
    if (p->flavour == FL_OPENAI) sim_puts(b, "\"system_fingerprint\":\"fp_sim\",");
    if (delta == NULL)
        sim_puts(b, "\"choices\":[]");
    else {
        sim_printf(b, "\"choices\":[{\"index\":0,\"delta\":%s,", delta);
        logprobs(b, p, tok, tok + 1);
        if (finish)
            sim_printf(b, ",\"finish_reason\":\"%s\"}]", finish);
        else
            sim_puts(b, ",\"finish_reason\":null}]");
    }
    if (with_usage == 1)
        sim_puts(b, ",\"usage\":null");
    else if (with_usage == 2) {
        sim_puts(b, ",\"usage\":");
        usage(b, p);
    }
    sim_puts(b, "}\n\n");
}

/* The next chunk into b: 1 with the tokens it carries in *tok / *rtok, or
 * 0 when the stream is over. */
int sim_openai_next(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok) {
    int unull = p->include_usage && !p->usage_on_finish && !p->no_usage;
    char d[512];
    for (;;)
        switch (g->ph) {
        case G_ROLE:
            g->ph = G_REASON;
            *rtok = p->flavour == FL_OPENAI ? (int)p->reasoning : 0; /* hidden reasoning happens first */
            chunk(b, p,
                  p->tool ? "{\"role\":\"assistant\",\"content\":null}"
                          : "{\"role\":\"assistant\",\"content\":\"\"}",
                  NULL, unull, -1);
            return 1;
        case G_REASON:
            if (g->i < visible_reasoning(p)) {
                snprintf(d, sizeof(d), "{\"content\":null,\"reasoning_content\":\"%s%s\"}", g->i ? " " : "",
                         sim_thoughts[g->i % (int64_t)sim_nthoughts]);
                g->i++;
                *rtok = 1;
                chunk(b, p, d, NULL, unull, -1);
                return 1;
            }
            g->ph = G_BODY;
            g->i = 0;
            continue;
        case G_BODY:
            if (p->tool && g->i == 0)
                snprintf(d, sizeof(d),
                         "{\"tool_calls\":[{\"index\":0,\"id\":\"call_sim_%" PRIu64
                         "\",\"type\":\"function\","
                         "\"function\":{\"name\":\"%s\",\"arguments\":\"\"}}]}",
                         p->n, p->tool_name);
            else if (p->tool && g->i < SIM_TOOL_TOKENS)
                snprintf(d, sizeof(d), "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"%s\"}}]}",
                         sim_tool_frags[g->i - 1]);
            else if (!p->tool && g->i < p->out)
                snprintf(d, sizeof(d), "{\"content\":\"%s%s\"}", g->i ? " " : "",
                         sim_words[g->i % (int64_t)sim_nwords]);
            else {
                g->ph = G_FINISH;
                continue;
            }
            g->i++;
            *tok = 1;
            chunk(b, p, d, NULL, unull, p->tool ? -1 : g->i - 1);
            return 1;
        case G_FINISH:
            g->ph = G_USAGE;
            chunk(b, p, "{}", finish_reason(p), p->no_usage ? 0 : p->usage_on_finish ? 2 : unull, -1);
            return 1;
        case G_USAGE:
            g->ph = G_DONE;
            if (!unull) continue;
            chunk(b, p, NULL, NULL, 2, -1);
            return 1;
        case G_DONE:
            g->ph = G_END;
            sim_puts(b, "data: [DONE]\n\n");
            return 1;
        default:
            return 0;
        }
}

/* An error after a 200 arrives as a data line without [DONE]. */
void sim_openai_stream_error(sim_buf_t *b, const sim_plan_t *p) {
    sim_printf(b,
               "data: {\"error\":{\"message\":\"The server had an error while processing your request "
               "(simulated, after %" PRId64
               " events).\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
               p->error_after);
}

static void anthropic_models(sim_buf_t *b) {
    static const char *const an[] = {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", NULL};
    sim_puts(b, "{\"data\":[");
    for (int i = 0; an[i]; i++)
        sim_printf(b,
                   "%s{\"type\":\"model\",\"id\":\"%s\",\"display_name\":\"%s\",\"created_at\":\"2025-10-"
                   "01T00:00:00Z\"}",
                   i ? "," : "", an[i], an[i]);
    sim_printf(b, "],\"has_more\":false,\"first_id\":\"%s\",\"last_id\":\"%s\"}", an[0], an[2]);
}

/* GET /{provider}/v1/models: Anthropic's shape when the name says Anthropic
 * or Claude, else OpenAI's with the vendor's model ids. */
void sim_models(sim_buf_t *b, const char *prov) {
    static const char *const oa[] = {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "text-embedding-3-small",
                                     NULL};
    static const char *const ds[] = {"deepseek-flash", "deepseek-v4-pro", NULL};
    static const char *const qw[] = {"qwen-plus",  "qwen-max",          "qwen-turbo",
                                     "qwen-flash", "text-embedding-v4", NULL};
    if (strstr(prov, "anthropic") || strstr(prov, "claude")) {
        anthropic_models(b);
        return;
    }
    int fl = sim_flavour_of(prov);
    const char *const *list = fl == FL_DEEPSEEK ? ds : fl == FL_QWEN ? qw : oa;
    const char *owner = fl == FL_DEEPSEEK ? "deepseek" : fl == FL_QWEN ? "system" : "openai";
    sim_puts(b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; list[i]; i++)
        sim_printf(b, "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":1735689600,\"owned_by\":\"%s\"}",
                   i ? "," : "", list[i], owner);
    sim_puts(b, "]}");
}
