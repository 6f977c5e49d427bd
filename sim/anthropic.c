/* anthropic.c — the Anthropic Messages dialect: the error shape, usage with
 * cache reads and writes kept out of input_tokens, the whole message, the
 * stream generator (message_start, optional thinking block, ping, content
 * blocks, message_delta, message_stop; one event per call, pulled by
 * sim/pace.c), and POST /v1/messages/count_tokens. A plan goes in; JSON and
 * SSE text leave in a sim_buf_t. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim/simulate_int.h"

static const char *error_type(int status) {
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

/* msg is the JSON-escaped message. */
void sim_anthropic_error(sim_buf_t *b, const sim_err_t *e, const char *msg) {
    sim_printf(b, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}",
               e->type ? e->type : error_type(e->status), msg);
}

static void usage(sim_buf_t *b, const sim_plan_t *p, int64_t output) {
    sim_printf(b,
               "{\"input_tokens\":%" PRId64 ",\"cache_creation_input_tokens\":%" PRId64
               ",\"cache_read_input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64,
               p->prompt - p->cached - p->cache_write, p->cache_write, p->cached, output);
}

static const char *stop_reason(const sim_plan_t *p) {
    return p->tool ? "tool_use" : p->limited ? "max_tokens" : "end_turn";
}

void sim_anthropic_whole(sim_buf_t *b, const sim_plan_t *p) {
    sim_printf(b,
               "{\"id\":\"msg_sim_%" PRIu64
               "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\",\"content\":[",
               p->n, p->model);
    if (p->reasoning > 0) {
        sim_puts(b, "{\"type\":\"thinking\",\"thinking\":\"");
        sim_put_words(b, sim_thoughts, sim_nthoughts, p->reasoning);
        sim_puts(b, "\",\"signature\":\"c2ltdWxhdGVk\"},");
    }
    if (p->tool)
        sim_printf(b,
                   "{\"type\":\"tool_use\",\"id\":\"toolu_sim_%" PRIu64
                   "\",\"name\":\"%s\",\"input\":{\"city\":\"Paris\"}}",
                   p->n, p->tool_name);
    else {
        sim_puts(b, "{\"type\":\"text\",\"text\":\"");
        sim_put_words(b, sim_words, sim_nwords, p->out);
        sim_puts(b, "\"}");
    }
    sim_printf(b, "],\"stop_reason\":\"%s\",\"stop_sequence\":null", stop_reason(p));
    if (!p->no_usage) {
        sim_puts(b, ",\"usage\":");
        usage(b, p, sim_completion_tokens(p));
        sim_puts(b, ",\"service_tier\":\"standard\"}");
    }
    sim_puts(b, "}");
}

enum {
    A_MSTART,
    A_THINK_START,
    A_THINK,
    A_SIG,
    A_THINK_STOP,
    A_BLOCK_START,
    A_BODY,
    A_BLOCK_STOP,
    A_MDELTA,
    A_MSTOP,
    A_PING,
    A_END
};

static void event(sim_buf_t *b, const char *name) {
    sim_printf(b, "event: %s\ndata: ", name);
}

/* The first block start is followed by a ping, as Anthropic's streams are. */
static void block_start(sim_buf_t *b, sim_gen_t *g, int index, const char *block, int next) {
    event(b, "content_block_start");
    sim_printf(b, "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":%s}\n\n", index, block);
    g->ph = g->pinged ? next : A_PING;
    g->after_ping = next;
    g->pinged = 1;
}

static void delta(sim_buf_t *b, int index, const char *d) {
    event(b, "content_block_delta");
    sim_printf(b, "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":%s}\n\n", index, d);
}

static void block_stop(sim_buf_t *b, int index) {
    event(b, "content_block_stop");
    sim_printf(b, "{\"type\":\"content_block_stop\",\"index\":%d}\n\n", index);
}

static void message_start(sim_buf_t *b, const sim_plan_t *p) {
    event(b, "message_start");
    sim_printf(b,
               "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_sim_%" PRIu64 "\",\"type\":\"message\","
               "\"role\":\"assistant\",\"model\":\"%s\",\"content\":[],\"stop_reason\":null,\"stop_"
               "sequence\":null",
               p->n, p->model);
    if (!p->no_usage) {
        sim_puts(b, ",\"usage\":");
        usage(b, p, 1);
        sim_puts(b, "}");
    }
    sim_puts(b, "}}\n\n");
}

static int body_event(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int bi, int *tok) {
    char d[512];
    if (p->tool && g->i < SIM_TOOL_TOKENS)
        snprintf(d, sizeof(d), "{\"type\":\"input_json_delta\",\"partial_json\":\"%s\"}",
                 sim_tool_frags[g->i - 1]);
    else if (!p->tool && g->i < p->out)
        snprintf(d, sizeof(d), "{\"type\":\"text_delta\",\"text\":\"%s%s\"}", g->i ? " " : "",
                 sim_words[g->i % (int64_t)sim_nwords]);
    else {
        block_stop(b, bi);
        g->ph = A_MDELTA;
        return 1;
    }
    g->i++;
    *tok = 1;
    delta(b, bi, d);
    return 1;
}

/* The next event into b: 1 with the tokens it carries in *tok / *rtok, or 0
 * when the stream is over. */
int sim_anthropic_next(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok) {
    int bi = p->reasoning > 0; /* index of the text / tool_use block */
    char d[512];
    switch (g->ph) {
    case A_MSTART:
        message_start(b, p);
        g->ph = p->reasoning > 0 ? A_THINK_START : A_BLOCK_START;
        return 1;
    case A_THINK_START:
        block_start(b, g, 0, "{\"type\":\"thinking\",\"thinking\":\"\"}", A_THINK);
        return 1;
    case A_PING:
        sim_puts(b, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
        g->ph = g->after_ping;
        return 1;
    case A_THINK:
        snprintf(d, sizeof(d), "{\"type\":\"thinking_delta\",\"thinking\":\"%s%s\"}", g->i ? " " : "",
                 sim_thoughts[g->i % (int64_t)sim_nthoughts]);
        delta(b, 0, d);
        *rtok = 1;
        if (++g->i >= p->reasoning) g->ph = A_SIG;
        return 1;
    case A_SIG:
        delta(b, 0, "{\"type\":\"signature_delta\",\"signature\":\"c2ltdWxhdGVk\"}");
        g->ph = A_THINK_STOP;
        return 1;
    case A_THINK_STOP:
        block_stop(b, 0);
        g->ph = A_BLOCK_START;
        return 1;
    case A_BLOCK_START:
        g->i = 0;
        if (p->tool) {
            snprintf(d, sizeof(d),
                     "{\"type\":\"tool_use\",\"id\":\"toolu_sim_%" PRIu64 "\",\"name\":\"%s\",\"input\":{}}",
                     p->n, p->tool_name);
            *tok = 1;
            g->i = 1;
        } else {
            snprintf(d, sizeof(d), "{\"type\":\"text\",\"text\":\"\"}");
        }
        block_start(b, g, bi, d, A_BODY);
        return 1;
    case A_BODY:
        return body_event(p, g, b, bi, tok);
    case A_MDELTA:
        event(b, "message_delta");
        sim_printf(b, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":null}",
                   stop_reason(p));
        if (!p->no_usage)
            sim_printf(b, ",\"usage\":{\"output_tokens\":%" PRId64 "}", sim_completion_tokens(p));
        sim_puts(b, "}\n\n");
        g->ph = A_MSTOP;
        return 1;
    case A_MSTOP:
        sim_puts(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        g->ph = A_END;
        return 1;
    default:
        return 0;
    }
}

void sim_anthropic_stream_error(sim_buf_t *b) {
    sim_puts(b, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                "\"message\":\"Overloaded\"}}\n\n");
}

/* POST /v1/messages/count_tokens: the prompt a Messages request with this
 * body would bill (system and messages, by the rule in sim/count.c), plus
 * its tool definitions, as {"input_tokens":N}. max_tokens is not needed. */
int sim_count_tokens(const char *body, size_t len, sim_buf_t *out, sim_err_t *e) {
    sim_input_t in;
    char err[256];
    int rc = -1;
    if (sim_read_chat(body, len, &in, err, sizeof(err)) != 0)
        sim_err_set(e, 400, "There was an error parsing the body of your request: %s", err);
    else if (in.model == NULL || in.model[0] == '\0')
        sim_err_set(e, 400, "model: Field required");
    else {
        json_t *tools = json_object_get(in.doc, "tools");
        sim_printf(out, "{\"input_tokens\":%" PRId64 "}", in.prompt + sim_tools_tokens(tools));
        rc = 0;
    }
    json_decref(in.doc);
    return rc;
}
