/* simulate_int.h — what the files of sim/ share and nothing outside sim/ may
 * include: the simulator object, one request's state, the plan an answer is
 * made from, and the functions one sim/ file offers another. The public face
 * of the simulator is sim/simulate.h; the wire rules are described at the top
 * of sim/simulate.c. */
#ifndef TG_SIM_INTERNAL_H
#define TG_SIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <jansson.h>

#include "gateway/http1.h"
#include "sim/simulate.h"

#define SIM_MAX_PROV 64
#define SIM_TRACK 4096
#define SIM_FREE_MAX 1024
#define SIM_MAX_TOKENS 1000000
#define SIM_DEFAULT_TOKENS 16
#define SIM_TOOL_TOKENS 4
#define SIM_MAX_LOGPROBS 100 /* top_logprobs entries per token (x-sim-logprobs) */
#define SIM_MODEL_MAX 256
#define SIM_NAME_MAX 63
#define SIM_USER_MAX 4096 /* bytes of user text searched for "call tool NAME" */
#define SIM_DEFAULT_PORT 8090

/* Flavours of the answers: three OpenAI-compatible vendors and Anthropic. */
enum { FL_OPENAI, FL_DEEPSEEK, FL_QWEN, FL_ANTHROPIC };
enum { ST_OPEN, ST_COMPLETED, ST_CANCELLED, ST_RESET, ST_ERROR };
/* Routes. The first four are billed requests: counted in the stats, open to
 * faults and tracked by x-sim-id. */
enum {
    RT_NOTFOUND,
    RT_CHAT,
    RT_MESSAGES,
    RT_RESPONSES,
    RT_EMBED,
    RT_COUNT,
    RT_MODELS,
    RT_STATS,
    RT_RESET,
    RT_CONFIG,
    RT_TRACK
};
#define SIM_BILLED(kind) ((kind) >= RT_CHAT && (kind) <= RT_EMBED)
#define SIM_ANTHROPIC(kind) ((kind) == RT_MESSAGES || (kind) == RT_COUNT)
/* Where a live request is: waiting on its first timer, streaming, stalled on
 * purpose, or waiting for its output to leave before a deliberate reset. */
enum { LV_IDLE, LV_WAIT, LV_STREAM, LV_STALLED, LV_RESET };

/* A growing output buffer; once out of memory it stays so (oom) and ignores
 * further writes, so a caller checks once at the end. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sim_buf_t;

typedef struct {
    int64_t requests, completed, cancelled, reset, errors;
    int64_t prompt, cached, completion, reasoning;
} sim_counts_t;

typedef struct {
    char name[SIM_NAME_MAX + 1];
    int64_t ttft_ms, tps, retry_after; /* -1: fall back to the defaults */
    int fault_status, fault_percent;
    uint64_t fault_seq;
    sim_counts_t c;
} sim_prov_t;

typedef struct {
    char id[SIM_NAME_MAX + 1];
    uint64_t gen; /* 0: empty slot */
    int prov, state, status;
    int64_t chunks, prompt, cached, completion, reasoning;
} sim_track_t;

typedef struct {
    int kind;
    char prov[SIM_NAME_MAX + 1];
    char id[SIM_NAME_MAX + 1];
    int all; /* ?all=1 on /_sim/reset */
} sim_route_t;

/* Everything the answer will be, fixed once the request is read. doc is the
 * parsed request when the answer echoes parts of it (Responses, embeddings);
 * the request owns it and drops it in sim_req_release(). */
typedef struct {
    int kind, flavour, stream, include_usage, usage_on_finish, no_usage, tool, limited, b64;
    uint64_t n;
    long long created;
    int64_t prompt, cached, cache_write, out, reasoning, dims;
    int64_t ttft_ms, tps, reset_after, stall_after, error_after;
    int64_t logprobs; /* x-sim-logprobs: top_logprobs entries per answer token; 0: "logprobs":null */
    json_t *doc;
    char model[SIM_MODEL_MAX * 6 + 1]; /* JSON-escaped */
    char tool_name[SIM_NAME_MAX + 1];
} sim_plan_t;

/* Where a stream generator is: its phase, a counter inside the phase, and
 * the events written so far (the Responses API's sequence_number). */
typedef struct {
    int ph, pinged, after_ping, errored;
    int64_t i, events;
} sim_gen_t;

/* What a live request is answered through: our HTTP/1.1 server
 * (gateway/http1.c, sim_io_http1 in simulate.c) or an HTTP/2 stream of the
 * h2c listener (sim/h2.c). The calls mean what the tg_http_* functions of
 * gateway/http1.h mean; `r` is the transport's request. */
typedef struct {
    void (*respond)(void *r, int status, const char *const *hdrs, size_t n, const char *body, size_t len);
    void (*stream_start)(void *r, int status, const char *const *hdrs, size_t n);
    int (*stream_write)(void *r, const char *data, size_t len); /* 1: the client is behind */
    void (*stream_end)(void *r);
    void (*abort)(void *r);
    size_t (*pending)(void *r);
    const char *(*header)(void *r, const char *name, size_t *len);
} sim_io_t;

/* The request's headers: a live request, or an array when rendering. */
typedef struct {
    void *r;
    const sim_io_t *io;
    const tg_http_header_t *h;
    size_t n;
} sim_hdrs_t;

typedef struct {
    int status;
    const char *type, *code; /* code NULL: JSON null */
    int64_t retry_after;
    char msg[320];
} sim_err_t;

typedef struct sim_req_s {
    tg_sim_t *sim;
    void *r; /* the live request (NULL when rendering or once it finished) */
    const sim_io_t *io;
    tg_sim_answer_t *ans; /* set when rendering */
    struct event timer;
    int timer_on, phase, state, status, planned, streaming, finalized;
    int busy, dead, wait_drain, reset_grace;
    int prov, trk;
    uint64_t trk_gen;
    int64_t chunks, sent_completion, sent_reasoning;
    sim_route_t rt;
    sim_plan_t p;
    sim_gen_t g;
    sim_buf_t buf;  /* the JSON body or the current SSE event */
    sim_buf_t rbuf; /* the events batched for one write; rendering: the whole stream */
    struct sim_req_s *next;
} sim_req_t;

struct tg_sim_s {
    struct event_base *base;
    tg_http_server_t *server;
    struct sim_h2_s *h2; /* the h2c listener and its connections, or NULL */
    int64_t ttft_ms, tps;
    sim_prov_t prov[SIM_MAX_PROV];
    int nprov;
    sim_counts_t total;
    int64_t streams_open;
    uint64_t seq, trk_gen;
    size_t trk_next;
    sim_track_t *track;
    sim_req_t *free;
    size_t nfree;
};

/* One word per token; no character in them needs JSON escaping. */
extern const char *const sim_words[];
extern const char *const sim_thoughts[];
extern const size_t sim_nwords, sim_nthoughts;
/* {"city":"Paris"} cut in three stream fragments, JSON-escaped. */
extern const char *const sim_tool_frags[SIM_TOOL_TOKENS - 1];

/* ---- wire.c: buffers, headers, names ---- */
void sim_put(sim_buf_t *b, const char *s, size_t n);
void sim_puts(sim_buf_t *b, const char *s);
void sim_printf(sim_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_buf_reset(sim_buf_t *b);
/* Appends the compact JSON text of j; marks b out of memory on failure. */
void sim_put_json(sim_buf_t *b, const json_t *j);
/* n words of list, cycled, joined by one space. */
void sim_put_words(sim_buf_t *b, const char *const *list, size_t nlist, int64_t n);
int sim_name_ok(const char *s, size_t n, int colon);
int sim_json_esc(char *dst, size_t cap, const char *s);
const char *sim_hdr(const sim_hdrs_t *hs, const char *name, size_t *len);
int sim_hdr_int(const sim_hdrs_t *hs, const char *name, int64_t *v);
int sim_hdr_flag(const sim_hdrs_t *hs, const char *name);
int64_t sim_clamp(int64_t v, int64_t lo, int64_t hi);
int sim_flavour_of(const char *prov);

/* ---- count.c: the simulator's own reading and token counting ---- */
typedef struct {
    json_t *doc;       /* the parsed body; the caller owns it after success */
    const char *model; /* inside doc; NULL when absent */
    int stream, include_usage, has_tools, answered, b64;
    int64_t max_tokens; /* -1 when absent */
    int64_t dims;       /* embeddings: 0 when absent */
    size_t text_bytes, items;
    int64_t prompt;
    char user[SIM_USER_MAX + 1];
    size_t user_len;
} sim_input_t;

int64_t sim_tokens(size_t text_bytes, size_t items);
int sim_read_chat(const char *body, size_t len, sim_input_t *in, char *err, size_t errlen);
int sim_read_responses(const char *body, size_t len, sim_input_t *in, char *err, size_t errlen);
int sim_read_embeddings(const char *body, size_t len, sim_input_t *in, char *err, size_t errlen);
int64_t sim_tools_tokens(const json_t *tools);

/* ---- plan.c: errors, knobs, faults, the plan ---- */
void sim_err_set(sim_err_t *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sim_fmt_error(sim_buf_t *b, int anthropic, const sim_err_t *e);
int sim_plan_build(sim_req_t *q, const sim_hdrs_t *hs, const char *body, size_t len, sim_err_t *e);
int sim_injected_status(sim_req_t *q, const sim_hdrs_t *hs, int use_rate, sim_err_t *e);
int64_t sim_completion_tokens(const sim_plan_t *p);
int sim_check_auth(int kind, const sim_hdrs_t *hs, sim_err_t *e);

/* ---- openai.c: Chat Completions and the OpenAI-dialect shapes ---- */
void sim_openai_error(sim_buf_t *b, const sim_err_t *e, const char *msg);
void sim_openai_whole(sim_buf_t *b, const sim_plan_t *p);
int sim_openai_next(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok);
void sim_openai_stream_error(sim_buf_t *b, const sim_plan_t *p);
void sim_models(sim_buf_t *b, const char *prov);

/* ---- anthropic.c: Messages, count_tokens ---- */
void sim_anthropic_error(sim_buf_t *b, const sim_err_t *e, const char *msg);
void sim_anthropic_whole(sim_buf_t *b, const sim_plan_t *p);
int sim_anthropic_next(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok);
void sim_anthropic_stream_error(sim_buf_t *b);
int sim_count_tokens(const char *body, size_t len, sim_buf_t *out, sim_err_t *e);

/* ---- responses.c: the Responses API ---- */
int sim_responses_whole(sim_buf_t *b, const sim_plan_t *p);
int sim_responses_next(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok);
void sim_responses_stream_error(sim_buf_t *b, const sim_plan_t *p, int64_t seq);

/* ---- embeddings.c ---- */
int sim_embeddings_whole(sim_buf_t *b, const sim_plan_t *p);

/* ---- pace.c: a request's life in time ---- */
sim_req_t *sim_req_new(tg_sim_t *s);
void sim_req_release(sim_req_t *q);
void sim_send_whole(sim_req_t *q, int status, int64_t retry_after);
void sim_send_error(sim_req_t *q, const sim_err_t *e);
void sim_send_oom(sim_req_t *q);
void sim_start(sim_req_t *q);
void sim_pump(sim_req_t *q);
void sim_on_timer(evutil_socket_t fd, short what, void *arg);

/* ---- control.c: providers, tracking, stats, /_sim ---- */
void sim_prov_defaults(sim_prov_t *pv);
int sim_prov_get(tg_sim_t *s, const char *name);
void sim_track_open(sim_req_t *q, const char *id);
void sim_track_sync(sim_req_t *q);
const sim_track_t *sim_track_find(const tg_sim_t *s, const char *id);
void sim_finalize(sim_req_t *q);
void sim_fmt_stats(sim_buf_t *b, const tg_sim_t *s);
void sim_fmt_track(sim_buf_t *b, const tg_sim_t *s, const sim_track_t *t);
void sim_reset(tg_sim_t *s, int all);
int sim_config_apply(tg_sim_t *s, const char *body, size_t len, sim_buf_t *out, sim_err_t *e);

/* ---- simulate.c: the handler the servers run ---- */
extern const tg_http_handler_t sim_handler;
/* The same request life for any transport (sim_handler, sim/h2.c): a
 * request arrived (NULL when it was answered at once: 503, out of memory);
 * its headers are read (1 when they were enough to answer: the body is not
 * wanted); its whole body; its client caught up with the output; it ended. */
sim_req_t *sim_open(tg_sim_t *s, void *r, const sim_io_t *io, const char *method, const char *path,
                    size_t plen, const char *query, size_t qlen);
int sim_headers(sim_req_t *q);
void sim_body(sim_req_t *q, const char *body, size_t len);
void sim_drain(sim_req_t *q);
void sim_close(sim_req_t *q, int aborted);

/* ---- h2.c: the h2c listener (HTTP/2 in clear, prior knowledge) ---- */
/* Serves the simulator on fd (listening) with HTTP/2: every stream is one
 * request, answered as sim_handler answers it. 0, or -1. */
int sim_h2_listen(tg_sim_t *s, struct event_base *base, int fd);
void sim_h2_free(tg_sim_t *s);

#endif
