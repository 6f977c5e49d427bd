/* responses.c — the OpenAI Responses API (POST /v1/responses) as a vendor
 * marked `responses: native` answers it: the response object with its
 * output items (an optional reasoning item, then a message with output_text
 * or a function_call), usage in the Responses field names, and the stream
 * of typed events with their sequence_number, one event per call, pulled by
 * sim/pace.c. Objects that echo the request are built with jansson from the
 * parsed body the plan holds; the many small deltas are printed directly. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/simulate_int.h"

#define TOOL_ARGS "{\"city\":\"Paris\"}"

static const char *final_status(const sim_plan_t *p) {
    return p->limited ? "incomplete" : "completed";
}

static json_t *text_of(const sim_plan_t *p) {
    sim_buf_t b = {0};
    sim_put_words(&b, sim_words, sim_nwords, p->out);
    json_t *s = json_stringn(b.p ? b.p : "", b.len);
    free(b.p);
    return s;
}

static json_t *output_text_part(json_t *text) {
    return json_pack("{s:s,s:[],s:[],s:o}", "type", "output_text", "annotations", "logprobs", "text", text);
}

static json_t *id_of(const char *prefix, uint64_t n) {
    char id[64];
    snprintf(id, sizeof(id), "%s_sim_%" PRIu64, prefix, n);
    return json_string(id);
}

/* The answer's main item: a message or a function call; done says whether
 * it is whole (content, arguments) or just announced. */
static json_t *main_item(const sim_plan_t *p, int done) {
    const char *st = done ? (p->tool ? "completed" : final_status(p)) : "in_progress";
    if (p->tool)
        return json_pack("{s:o,s:s,s:s,s:s,s:o,s:s}", "id", id_of("fc", p->n), "type", "function_call",
                         "status", st, "arguments", done ? TOOL_ARGS : "", "call_id", id_of("call", p->n),
                         "name", p->tool_name);
    json_t *content = done ? json_pack("[o]", output_text_part(text_of(p))) : json_array();
    return json_pack("{s:o,s:s,s:s,s:o,s:s}", "id", id_of("msg", p->n), "type", "message", "status", st,
                     "content", content, "role", "assistant");
}

static json_t *reasoning_item(const sim_plan_t *p) {
    return json_pack("{s:o,s:s,s:[]}", "id", id_of("rs", p->n), "type", "reasoning", "summary");
}

static json_t *usage(const sim_plan_t *p) {
    int64_t out = sim_completion_tokens(p);
    return json_pack("{s:I,s:{s:I},s:I,s:{s:I},s:I}", "input_tokens", (json_int_t)p->prompt,
                     "input_tokens_details", "cached_tokens", (json_int_t)p->cached, "output_tokens",
                     (json_int_t)out, "output_tokens_details", "reasoning_tokens", (json_int_t)p->reasoning,
                     "total_tokens", (json_int_t)(p->prompt + out));
}

/* The request's value of key, else the default (a new reference, stolen). */
static void echo(json_t *o, const json_t *doc, const char *key, json_t *dflt) {
    json_t *v = json_object_get(doc, key);
    if (v && !json_is_null(v)) {
        json_object_set(o, key, v);
        json_decref(dflt);
    } else {
        json_object_set_new(o, key, dflt);
    }
}

/* The response object; whole: with output items and usage, else as it is
 * announced at the start of a stream. */
static json_t *response(const sim_plan_t *p, int whole) {
    const char *st = whole ? final_status(p) : "in_progress";
    json_t *o = json_pack("{s:o,s:s,s:I,s:s,s:b,s:n}", "id", id_of("resp", p->n), "object", "response",
                          "created_at", (json_int_t)p->created, "status", st, "background", 0, "error");
    if (o == NULL) return NULL;
    json_object_set_new(o, "incomplete_details",
                        whole && p->limited ? json_pack("{s:s}", "reason", "max_output_tokens")
                                            : json_null());
    echo(o, p->doc, "instructions", json_null());
    echo(o, p->doc, "max_output_tokens", json_null());
    echo(o, p->doc, "model", json_null());
    json_t *out = json_array();
    if (whole && p->reasoning > 0) json_array_append_new(out, reasoning_item(p));
    if (whole) json_array_append_new(out, main_item(p, 1));
    json_object_set_new(o, "output", out);
    echo(o, p->doc, "parallel_tool_calls", json_true());
    echo(o, p->doc, "previous_response_id", json_null());
    echo(o, p->doc, "reasoning", json_pack("{s:n,s:n}", "effort", "summary"));
    json_object_set_new(o, "service_tier", json_string("default"));
    echo(o, p->doc, "store", json_true());
    echo(o, p->doc, "temperature", json_real(1.0));
    echo(o, p->doc, "text", json_pack("{s:{s:s}}", "format", "type", "text"));
    echo(o, p->doc, "tool_choice", json_string("auto"));
    echo(o, p->doc, "tools", json_array());
    echo(o, p->doc, "top_p", json_real(1.0));
    json_object_set_new(o, "truncation", json_string("disabled"));
    json_object_set_new(o, "usage", whole && !p->no_usage ? usage(p) : json_null());
    echo(o, p->doc, "user", json_null());
    echo(o, p->doc, "metadata", json_object());
    return o;
}

/* 0, or -1 when out of memory. */
int sim_responses_whole(sim_buf_t *b, const sim_plan_t *p) {
    json_t *o = response(p, 1);
    sim_put_json(b, o);
    json_decref(o);
    return b->oom ? -1 : 0;
}

enum {
    R_CREATED,
    R_INPROG,
    R_RS_ADD,
    R_RS_DONE,
    R_ITEM_ADD,
    R_PART_ADD,
    R_DELTA,
    R_TEXT_DONE,
    R_PART_DONE,
    R_ARGS,
    R_ARGS_DONE,
    R_ITEM_DONE,
    R_FINAL,
    R_END
};

/* An event whose payload is {"type":NAME,"sequence_number":N,<key>:<obj>}
 * with obj stolen; key NULL adds nothing. */
static void event_obj(sim_buf_t *b, const char *name, int64_t seq, const char *key, json_t *obj,
                      int64_t output_index) {
    json_t *e = json_pack("{s:s,s:I}", "type", name, "sequence_number", (json_int_t)seq);
    if (e && output_index >= 0) json_object_set_new(e, "output_index", json_integer(output_index));
    if (e && key)
        json_object_set_new(e, key, obj);
    else
        json_decref(obj);
    sim_printf(b, "event: %s\ndata: ", name);
    sim_put_json(b, e);
    sim_puts(b, "\n\n");
    json_decref(e);
}

/* The events that point into the main item's text part. */
static void part_event(sim_buf_t *b, const sim_plan_t *p, const char *name, int64_t seq, int oi,
                       const char *tail) {
    sim_printf(b,
               "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%" PRId64
               ",\"item_id\":\"msg_sim_%" PRIu64 "\",\"output_index\":%d,\"content_index\":0,%s}\n\n",
               name, name, seq, p->n, oi, tail);
}

static void text_done(sim_buf_t *b, const sim_plan_t *p, int64_t seq, int oi, int part) {
    json_t *t = text_of(p);
    json_t *e =
        json_pack("{s:s,s:I,s:o,s:i,s:i}", "type",
                  part ? "response.content_part.done" : "response.output_text.done", "sequence_number",
                  (json_int_t)seq, "item_id", id_of("msg", p->n), "output_index", oi, "content_index", 0);
    if (e && part) {
        json_object_set_new(e, "part", output_text_part(t));
    } else if (e) {
        json_object_set_new(e, "text", t);
        json_object_set_new(e, "logprobs", json_array());
    } else {
        json_decref(t);
    }
    sim_printf(b, "event: %s\ndata: ", part ? "response.content_part.done" : "response.output_text.done");
    sim_put_json(b, e);
    sim_puts(b, "\n\n");
    json_decref(e);
}

static int text_step(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int64_t seq, int oi, int *tok) {
    char d[256];
    switch (g->ph) {
    case R_PART_ADD:
        part_event(b, p, "response.content_part.added", seq, oi,
                   "\"part\":{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\"\"}");
        g->ph = p->out > 0 ? R_DELTA : R_TEXT_DONE;
        g->i = 0;
        return 1;
    case R_DELTA:
        snprintf(d, sizeof(d), "\"delta\":\"%s%s\",\"logprobs\":[]", g->i ? " " : "",
                 sim_words[g->i % (int64_t)sim_nwords]);
        part_event(b, p, "response.output_text.delta", seq, oi, d);
        *tok = 1;
        if (++g->i >= p->out) g->ph = R_TEXT_DONE;
        return 1;
    case R_TEXT_DONE:
        text_done(b, p, seq, oi, 0);
        g->ph = R_PART_DONE;
        return 1;
    default: /* R_PART_DONE */
        text_done(b, p, seq, oi, 1);
        g->ph = R_ITEM_DONE;
        return 1;
    }
}

static int tool_step(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int64_t seq, int oi, int *tok) {
    const char *name =
        g->ph == R_ARGS ? "response.function_call_arguments.delta" : "response.function_call_arguments.done";
    sim_printf(b,
               "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%" PRId64
               ",\"item_id\":\"fc_sim_%" PRIu64 "\",\"output_index\":%d,",
               name, name, seq, p->n, oi);
    if (g->ph == R_ARGS) {
        sim_printf(b, "\"delta\":\"%s\"}\n\n", sim_tool_frags[g->i - 1]);
        *tok = 1;
        if (++g->i >= SIM_TOOL_TOKENS) g->ph = R_ARGS_DONE;
    } else {
        sim_printf(b, "\"name\":\"%s\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}\n\n", p->tool_name);
        g->ph = R_ITEM_DONE;
    }
    return 1;
}

/* The next event into b: 1 with the tokens it carries in *tok / *rtok, or 0
 * when the stream is over. Hidden reasoning is billed with its item. */
int sim_responses_next(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok) {
    int64_t seq = g->events;
    int oi = p->reasoning > 0;
    switch (g->ph) {
    case R_CREATED:
    case R_INPROG:
        event_obj(b, g->ph == R_CREATED ? "response.created" : "response.in_progress", seq, "response",
                  response(p, 0), -1);
        g->ph = g->ph == R_CREATED ? R_INPROG : p->reasoning > 0 ? R_RS_ADD : R_ITEM_ADD;
        return 1;
    case R_RS_ADD:
    case R_RS_DONE:
        event_obj(b, g->ph == R_RS_ADD ? "response.output_item.added" : "response.output_item.done", seq,
                  "item", reasoning_item(p), 0);
        if (g->ph == R_RS_DONE) *rtok = (int)p->reasoning;
        g->ph = g->ph == R_RS_ADD ? R_RS_DONE : R_ITEM_ADD;
        return 1;
    case R_ITEM_ADD:
        event_obj(b, "response.output_item.added", seq, "item", main_item(p, 0), oi);
        if (p->tool) *tok = 1; /* the call's name */
        g->ph = p->tool ? R_ARGS : R_PART_ADD;
        g->i = 1;
        return 1;
    case R_PART_ADD:
    case R_DELTA:
    case R_TEXT_DONE:
    case R_PART_DONE:
        return text_step(p, g, b, seq, oi, tok);
    case R_ARGS:
    case R_ARGS_DONE:
        return tool_step(p, g, b, seq, oi, tok);
    case R_ITEM_DONE:
        event_obj(b, "response.output_item.done", seq, "item", main_item(p, 1), oi);
        g->ph = R_FINAL;
        return 1;
    case R_FINAL:
        event_obj(b, p->limited ? "response.incomplete" : "response.completed", seq, "response",
                  response(p, 1), -1);
        g->ph = R_END;
        return 1;
    default:
        return 0;
    }
}

void sim_responses_stream_error(sim_buf_t *b, const sim_plan_t *p, int64_t seq) {
    sim_printf(
        b,
        "event: error\ndata: {\"type\":\"error\",\"sequence_number\":%" PRId64
        ",\"code\":\"server_error\",\"message\":\"The server had an error while processing your request "
        "(simulated, after %" PRId64 " events).\",\"param\":null}\n\n",
        seq, p->error_after);
}
