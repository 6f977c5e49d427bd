/* pace.c — a simulated answer's life in time: the request objects (kept on
 * a free list), the evtimers for time to first token and tokens per second,
 * the stream pump that pulls one event at a time from the dialect's
 * generator and batches what is ready into one write, and the faults that
 * act on the connection (x-sim-reset-after, -stall-after, -error-after).
 * When rendering (tg_sim_render) there is no connection: time knobs, resets
 * and stalls are skipped and the whole answer is collected in memory. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/simulate_int.h"

static const char *const CT_JSON = "application/json";
static const char *const CT_SSE = "text/event-stream; charset=utf-8";

/* Events ready at the same moment leave in one chunked write (one syscall),
 * up to this many bytes: tens of small writes per answer would make the
 * simulator, not the gateway, the bottleneck of a load test. */
#define SIM_BATCH 16384

sim_req_t *sim_req_new(tg_sim_t *s) {
    sim_req_t *q = s->free;
    sim_buf_t buf = {0}, rbuf = {0};
    if (q) {
        s->free = q->next;
        s->nfree--;
        buf = q->buf;
        rbuf = q->rbuf;
    } else if ((q = malloc(sizeof(*q))) == NULL) {
        return NULL;
    }
    /* The plan is filled field by field later; only the head needs zeroing. */
    memset(q, 0, offsetof(sim_req_t, p));
    memset(&q->g, 0, sizeof(q->g));
    q->buf = buf;
    q->rbuf = rbuf;
    sim_buf_reset(&q->buf);
    sim_buf_reset(&q->rbuf);
    q->sim = s;
    q->trk = -1;
    q->status = 200;
    q->p.flavour = FL_OPENAI;
    q->p.model[0] = '\0';
    q->p.doc = NULL;
    if (s->base) event_assign(&q->timer, s->base, -1, 0, sim_on_timer, q);
    return q;
}

void sim_req_release(sim_req_t *q) {
    tg_sim_t *s = q->sim;
    if (q->timer_on) event_del(&q->timer);
    q->timer_on = 0;
    json_decref(q->p.doc);
    q->p.doc = NULL;
    if (s->nfree >= SIM_FREE_MAX || q->buf.cap > 65536 || q->rbuf.cap > 65536) {
        free(q->buf.p);
        free(q->rbuf.p);
        free(q);
        return;
    }
    q->next = s->free;
    s->free = q;
    s->nfree++;
}

static void timer_in(sim_req_t *q, int64_t usec) {
    struct timeval tv = {(time_t)(usec / 1000000), (suseconds_t)(usec % 1000000)};
    q->timer_on = 1;
    event_add(&q->timer, &tv);
}

/* Sends q->buf as the whole answer. Live, this may finish and release q:
 * nothing touches q after it. */
void sim_send_whole(sim_req_t *q, int status, int64_t retry_after) {
    q->status = status;
    if (q->ans) {
        q->ans->status = status;
        q->ans->content_type = CT_JSON;
        q->ans->retry_after = (long)retry_after;
        q->ans->body = malloc(q->buf.len + 1);
        if (q->ans->body) {
            memcpy(q->ans->body, q->buf.p ? q->buf.p : "", q->buf.len);
            q->ans->body[q->buf.len] = '\0';
            q->ans->len = q->buf.len;
        }
        return;
    }
    char ra[48];
    const char *h[2] = {"Content-Type: application/json", ra};
    snprintf(ra, sizeof(ra), "Retry-After: %" PRId64, retry_after);
    q->io->respond(q->r, status, h, retry_after >= 0 ? 2 : 1, q->buf.p ? q->buf.p : "", q->buf.len);
}

void sim_send_error(sim_req_t *q, const sim_err_t *e) {
    q->state = ST_ERROR;
    sim_buf_reset(&q->buf);
    sim_fmt_error(&q->buf, SIM_ANTHROPIC(q->rt.kind), e);
    sim_send_whole(q, e->status, e->retry_after);
}

void sim_send_oom(sim_req_t *q) {
    sim_err_t e;
    sim_err_set(&e, 500, "out of memory");
    sim_buf_reset(&q->buf);
    sim_send_error(q, &e);
}

/* Next SSE event into b (emptied first). Returns 1 with the tokens it
 * carries in *tok / *rtok, or 0 when the stream is over. An "event" is one
 * data: line (Chat Completions, [DONE] included) or one event:+data: pair
 * (Messages, Responses). */
static int gen_next(const sim_plan_t *p, sim_gen_t *g, sim_buf_t *b, int *tok, int *rtok) {
    *tok = *rtok = 0;
    sim_buf_reset(b);
    if (g->errored) return 0;
    if (p->error_after >= 0 && g->events == p->error_after) {
        g->errored = 1;
        if (p->flavour == FL_ANTHROPIC)
            sim_anthropic_stream_error(b);
        else if (p->kind == RT_RESPONSES)
            sim_responses_stream_error(b, p, g->events);
        else
            sim_openai_stream_error(b, p);
        g->events++;
        return 1;
    }
    int more = p->flavour == FL_ANTHROPIC ? sim_anthropic_next(p, g, b, tok, rtok)
               : p->kind == RT_RESPONSES  ? sim_responses_next(p, g, b, tok, rtok)
                                          : sim_openai_next(p, g, b, tok, rtok);
    if (more) g->events++;
    return more;
}

/* Writes the batched events: 0, or 1 when the client is behind (wait for
 * the drain callback). Rendering keeps everything in rbuf instead. */
static int flush(sim_req_t *q) {
    if (q->ans || q->rbuf.len == 0) return 0;
    int rc = q->io->stream_write(q->r, q->rbuf.p, q->rbuf.len);
    sim_buf_reset(&q->rbuf);
    return rc;
}

static void finish_stream(sim_req_t *q) {
    q->state = q->g.errored ? ST_ERROR : ST_COMPLETED;
    q->phase = LV_IDLE;
    if (q->r) {
        flush(q);
        q->io->stream_end(q->r);
    }
}

/* One step of sim_pump(): 1 to go on, 0 to stop (finished, waiting, gone). */
static int pump_step(sim_req_t *q) {
    const sim_plan_t *p = &q->p;
    if (q->r && p->stall_after >= 0 && q->chunks >= p->stall_after) {
        q->phase = LV_STALLED;
        flush(q);
        return 0;
    }
    if (q->r && p->reset_after >= 0 && q->chunks >= p->reset_after) {
        /* Let the events already queued reach the client before the reset. */
        q->phase = LV_RESET;
        flush(q);
        if (!q->dead) timer_in(q, 1000);
        return 0;
    }
    int tok, rtok;
    if (!gen_next(p, &q->g, &q->buf, &tok, &rtok)) {
        finish_stream(q);
        return 0;
    }
    sim_put(&q->rbuf, q->buf.p, q->buf.len);
    if (q->buf.oom || q->rbuf.oom) {
        q->state = ST_ERROR;
        if (q->r) q->io->abort(q->r);
        return 0;
    }
    q->chunks++;
    q->sent_completion += tok + rtok;
    q->sent_reasoning += rtok;
    sim_track_sync(q);
    if (q->r && (tok || rtok) && p->tps > 0) {
        q->wait_drain = flush(q) == 1;
        if (!q->dead) timer_in(q, 1000000 / p->tps);
        return 0;
    }
    if (q->rbuf.len >= SIM_BATCH) q->wait_drain = flush(q) == 1;
    return !q->wait_drain;
}

/* Writes events until the stream ends, a knob says wait (tokens/s, stall,
 * reset) or the client is behind. The finish callback may run inside a
 * write or the end: `busy` makes it leave the release to us. */
void sim_pump(sim_req_t *q) {
    q->busy = 1;
    while (!q->dead && pump_step(q))
        ;
    q->busy = 0;
    if (q->dead) sim_req_release(q);
}

static void reset_step(sim_req_t *q) {
    if (q->io->pending(q->r) > 0) {
        timer_in(q, 2000);
    } else if (!q->reset_grace) {
        q->reset_grace = 1;
        timer_in(q, 20000); /* the kernel's send buffer too, before the RST */
    } else {
        q->state = ST_RESET;
        q->io->abort(q->r);
    }
}

static int whole(sim_buf_t *b, const sim_plan_t *p) {
    switch (p->kind) {
    case RT_MESSAGES:
        sim_anthropic_whole(b, p);
        return 0;
    case RT_RESPONSES:
        return sim_responses_whole(b, p);
    case RT_EMBED:
        return sim_embeddings_whole(b, p);
    default:
        sim_openai_whole(b, p);
        return 0;
    }
}

/* The answer itself, once time to first token has passed. */
static void go(sim_req_t *q) {
    const sim_plan_t *p = &q->p;
    if (!p->stream) {
        if (q->r && p->stall_after >= 0) {
            q->phase = LV_STALLED;
            return;
        }
        if (q->r && p->reset_after >= 0) {
            q->state = ST_RESET;
            q->io->abort(q->r);
            return;
        }
        sim_buf_reset(&q->buf);
        if (whole(&q->buf, p) || q->buf.oom) {
            sim_send_oom(q);
            return;
        }
        q->sent_completion = sim_completion_tokens(p);
        q->sent_reasoning = p->reasoning;
        q->state = ST_COMPLETED;
        sim_send_whole(q, 200, -1);
        return;
    }
    q->streaming = 1;
    q->sim->streams_open++;
    q->phase = LV_STREAM;
    if (q->ans) {
        q->ans->status = 200;
        q->ans->content_type = CT_SSE;
    } else {
        const char *h[2] = {"Content-Type: text/event-stream; charset=utf-8", "Cache-Control: no-cache"};
        q->io->stream_start(q->r, 200, h, 2);
    }
    sim_pump(q);
}

/* Waits out time to first token (and, for a whole answer, the time its
 * tokens take at the tokens/s pace), then answers. */
void sim_start(sim_req_t *q) {
    const sim_plan_t *p = &q->p;
    int64_t ms = p->ttft_ms;
    if (!p->stream && p->tps > 0) ms += sim_completion_tokens(p) * 1000 / p->tps;
    if (q->r && ms > 0) {
        q->phase = LV_WAIT;
        timer_in(q, ms * 1000);
        return;
    }
    go(q);
}

void sim_on_timer(evutil_socket_t fd, short what, void *arg) {
    sim_req_t *q = arg;
    q->timer_on = 0;
    if (q->phase == LV_WAIT)
        go(q);
    else if (q->phase == LV_STREAM && !q->wait_drain)
        sim_pump(q);
    else if (q->phase == LV_RESET)
        reset_step(q);
}
