/* request.c — the life of one client request, as named phases:
 *   headers   route by path, authenticate (401 before the body is read);
 *   body      scan once with jsmn (400 on bad JSON or types), pick candidates;
 *   attempt   build the provider request through its dialect, start the
 *             upstream call; on a retryable failure before the first byte
 *             reached the client, fail over to the next candidate;
 *   relay     non-stream: answer with Content-Length and the cost header;
 *             stream: relay SSE events as they come, pausing the upstream
 *             when the client's buffer is full, ending with the cost comment
 *             and the client's end marker, or an error event when the
 *             upstream broke (their shapes are in providers/client.c);
 *   finish    on_finish (normal end or client hang-up): cancel the upstream,
 *             record usage once, log one line, free everything in one place.
 * An API that keeps conversations (the Responses API) adds steps around
 * these, in gateway/request_store.c: the body is parsed and the response it
 * continues read from the store before routing, a whole answer is stored
 * before the client's answer ends, and stored responses are served (GET,
 * DELETE). When the key or the rule turns the response cache on, one GET
 * after quotas may answer instead of the attempts, and a whole answer is
 * stored at on_finish (gateway/request_cache.c). The three files share
 * gateway/request_int.h. This file stays one (about 1,100 lines) on purpose:
 * it is the only place that strings parse, route, send, relay, bill and free
 * together, and a reader follows one request from top to bottom here.
 * A tg_request_t owns its pool; all its strings and arrays live there.
 */
#include "gateway/request_int.h"

#define MAX_ANSWER_BYTES (64u << 20) /* a non-stream answer larger than this is refused */
#define MAX_ERROR_BYTES (64u << 10)  /* error bodies are kept only for their message */
#define MAX_SSE_EVENT (8u << 20)

/* Exactly one tg_health_end per tg_health_begin: the entry is cleared here. */
static void health_end(tg_request_t *r, tg_outcome_t o) {
    if (r->he == NULL) return;
    int64_t now = tg_clock_mono_us();
    int64_t ttft = r->att_ttft_us < 0 ? -1 : (r->att_ttft_us - r->att_start_us) / 1000;
    tg_health_end(r->he, o, ttft, r->usage.output_tokens, (now - r->att_start_us) / 1000, now / 1000);
    r->he = NULL;
}

/* splitmix64: request ids need to be unique, not secret. */
static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* --- errors ------------------------------------------------------------ */

void tg_request_respond_json(tg_http_req_t *h, int status, const char *const *hdrs, size_t n,
                             const char *body, size_t len) {
    const char *all[16];
    size_t k = 0;
    all[k++] = "Content-Type: application/json";
    for (size_t i = 0; i < n && k < 16; i++)
        all[k++] = hdrs[i];
    tg_http_respond(h, status, all, k, body, len);
}

/* An error in the client's dialect (providers/client.c has the shapes). */
static void send_error_h(tg_http_req_t *h, tg_client_dialect_t client, int status, const char *type,
                         const char *code, const char *msg, const char *const *hdrs, size_t n) {
    char *s = tg_client_error_body(client, status, type, code, msg);
    if (s)
        tg_request_respond_json(h, status, hdrs, n, s, strlen(s));
    else
        tg_request_respond_json(h, status, hdrs, n, "{\"error\":{\"message\":\"error\"}}", 29);
    free(s);
}

void tg_request_send_error(tg_http_req_t *h, tg_client_dialect_t client, int status, const char *type,
                           const char *code, const char *msg) {
    send_error_h(h, client, status, type, code, msg, NULL, 0);
}

size_t tg_request_error_body(const char *path, size_t path_len, int status, const char *code, const char *msg,
                             char *buf, size_t cap) {
    char *s =
        tg_client_error_body(tg_client_for_path(path, path_len), status, "invalid_request_error", code, msg);
    size_t n = s ? strlen(s) : 0;
    if (n > cap) n = 0; /* the server's own body, rather than a cut one */
    if (n) memcpy(buf, s, n);
    free(s);
    return n;
}

/* --- the client's headers, for dialects and the policy engine ---------- */

/* A tg_header_source_t over the request (core/header.h): nothing once the
 * connection is gone. */
static const char *request_header(void *ud, const char *name, size_t *len) {
    const tg_request_t *r = ud;
    return r->http ? tg_http_header(r->http, name, len) : NULL;
}

/* --- headers for the client ------------------------------------------- */

size_t tg_request_headers(tg_request_t *r, const char **h, size_t cap, const char *cost) {
    size_t n = 0;
    h[n++] = tg_pool_printf(r->pool, "x-tollgate-provider: %s", r->cur->provider->name);
    h[n++] = tg_pool_printf(r->pool, "x-tollgate-model: %s", r->cur->model);
    h[n++] = tg_pool_printf(r->pool, "x-tollgate-route: %s", r->route.route);
    h[n++] = tg_pool_printf(r->pool, "x-tollgate-attempts: %u", r->attempts);
    h[n++] = tg_pool_printf(r->pool, "x-tollgate-request-id: %s", r->id);
    if (cost && n < cap) h[n++] = tg_pool_printf(r->pool, "x-tollgate-cost-usd: %s", cost);
    if (r->cache_hit && n < cap) h[n++] = "x-tollgate-cache: hit";
    /* Demo mode: the simulator made this answer up. Said on every answer so nobody takes it
     * for a provider's (streams carry it in their headers). */
    if (r->cur->provider->simulated && n < cap) h[n++] = "x-tollgate-simulated: true";
    return n;
}

/* --- usage and cost ---------------------------------------------------- */

/* micro-USD at the prices in force when the request started (core/money.c);
 * 0 when the model has no price. */
int64_t tg_request_cost_micro(const tg_request_t *r) {
    int64_t micro = tg_money_micro(r->call.price, &r->usage, r->ts_ms);
    return micro < 0 ? 0 : micro;
}

const char *tg_request_usd_text(tg_pool_t *pool, int64_t micro) {
    char t[TG_MONEY_TEXT_MAX];
    return tg_pool_strdup(pool, tg_money_format(micro, t));
}

/* When the provider gave no usage (a cut stream, a vendor that sends none),
 * estimate from what we saw: ~4 bytes a token. An attempt that ended in an HTTP
 * error or never connected billed nothing: nothing is estimated for it. */
static void usage_finalise(tg_request_t *r) {
    tg_usage_t *u = &r->usage;
    if (u->present || !r->billable || r->kind == TG_KIND_COUNT_TOKENS) return;
    u->estimated = 1;
    u->input_tokens = (int64_t)(r->scan.text_bytes + 3) / 4 + 4 * (int64_t)r->scan.n_messages;
    if (r->kind == TG_KIND_EMBEDDINGS) u->input_tokens = (int64_t)(r->body_len + 3) / 4; /* no messages */
    u->output_tokens = (int64_t)(r->call.content_bytes + 3) / 4;
}

const char *tg_request_usage_json(tg_pool_t *pool, const tg_usage_t *u) {
    return tg_pool_printf(pool,
                          "{\"input_tokens\":%" PRId64 ",\"cached_input_tokens\":%" PRId64
                          ",\"cache_write_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64
                          ",\"reasoning_tokens\":%" PRId64 "%s}",
                          u->input_tokens, u->cached_input_tokens, u->cache_write_tokens, u->output_tokens,
                          u->reasoning_tokens, u->estimated ? ",\"estimated\":true" : "");
}

static const char *usage_json(tg_request_t *r) {
    return tg_request_usage_json(r->pool, &r->usage);
}

/* --- relay -------------------------------------------------------------- */

/* Keeps a copy of what the client is sent of a stream, for the response cache; an answer
 * that outgrows the cache's max_bytes is not kept at all. */
static void cap_add(tg_request_t *r, const void *p, size_t n) {
    if (!r->cap_on || n == 0) return;
    size_t max = (size_t)r->cache_conf->max_bytes;
    if (r->cap_len + n > max) {
        r->cap_on = 0;
        free(r->cap);
        r->cap = NULL;
        return;
    }
    if (r->cap_len + n > r->cap_cap) {
        size_t nc = r->cap_cap ? r->cap_cap : 4096;
        while (nc < r->cap_len + n)
            nc *= 2;
        char *b = realloc(r->cap, nc);
        if (b == NULL) {
            r->cap_on = 0;
            free(r->cap);
            r->cap = NULL;
            return;
        }
        r->cap = b;
        r->cap_cap = nc;
    }
    memcpy(r->cap + r->cap_len, p, n);
    r->cap_len += n;
}

void tg_request_start_stream(tg_request_t *r) {
    const char *h[12];
    size_t n = 0;
    h[n++] = "Content-Type: text/event-stream";
    h[n++] = "Cache-Control: no-cache";
    n += tg_request_headers(r, h + n, 12 - n, NULL);
    tg_http_stream_start(r->http, 200, h, n);
    r->started = 1;
    r->ttfb_us = tg_clock_mono_us() - r->t0_us;
    tg_metrics_ttfb(r->ttfb_us);
}

static int emit_event(void *ud, const char *event, const char *data, size_t len) {
    tg_request_t *r = ud;
    if (r->http == NULL) return 0;
    if (!r->started) tg_request_start_stream(r);
    int full;
    if (memchr(data, '\n', len) == NULL && memchr(data, '\r', len) == NULL) {
        struct iovec iov[6];
        int k = 0;
        if (event) {
            iov[k++] = (struct iovec){"event: ", 7};
            iov[k++] = (struct iovec){(void *)event, strlen(event)};
            iov[k++] = (struct iovec){"\n", 1};
        }
        iov[k++] = (struct iovec){"data: ", 6};
        iov[k++] = (struct iovec){(void *)data, len};
        iov[k++] = (struct iovec){"\n\n", 2};
        full = tg_http_stream_writev(r->http, iov, k);
        for (int i = 0; r->cap_on && i < k; i++)
            cap_add(r, iov[i].iov_base, iov[i].iov_len);
    } else {
        /* Data with line breaks becomes several data: lines, formatted in
         * one buffer the request reuses for every such event (grown only
         * for a larger one, freed in request_free): a buffer per event
         * from the pool would hold every event until the stream ends. */
        size_t need = tg_sse_format(NULL, 0, event, data, len);
        if (need + 1 > r->ev_cap) {
            size_t nc = r->ev_cap ? r->ev_cap : 1024;
            while (nc < need + 1)
                nc *= 2;
            char *b = realloc(r->ev, nc);
            if (b == NULL) {
                tg_error("%s: out of memory formatting a stream event", r->id);
                return 0;
            }
            r->ev = b;
            r->ev_cap = nc;
        }
        tg_sse_format(r->ev, r->ev_cap, event, data, len);
        full = tg_http_stream_write(r->http, r->ev, need);
        cap_add(r, r->ev, need);
    }
    if (full) r->want_pause = 1;
    return full;
}

static int on_sse_event(void *ud, const char *event, size_t event_len, const char *data, size_t data_len) {
    tg_request_t *r = ud;
    if (r->done_seen) return 0;
    tg_emitter_t em = {emit_event, r};
    const char *ev = event_len ? event : NULL;
    int rc = r->cur->provider->dialect->stream_event(&r->call, ev, data, data_len, &r->usage, &em,
                                                     r->stream_err, sizeof(r->stream_err));
    if (rc == TG_STREAM_DONE) r->done_seen = 1;
    return rc == TG_STREAM_ERROR ? 1 : 0;
}

static void buf_append(tg_request_t *r, const char *p, size_t n, size_t cap) {
    if (r->rlen + n > cap) {
        r->rbuf_over = 1;
        n = cap > r->rlen ? cap - r->rlen : 0;
    }
    if (n == 0) return;
    if (r->rlen + n > r->rcap) {
        size_t nc = r->rcap ? r->rcap : 4096;
        while (nc < r->rlen + n)
            nc *= 2;
        char *b = realloc(r->rbuf, nc + 1);
        if (b == NULL) {
            r->rbuf_over = 1;
            return;
        }
        r->rbuf = b;
        r->rcap = nc;
    }
    memcpy(r->rbuf + r->rlen, p, n);
    r->rlen += n;
    r->rbuf[r->rlen] = '\0';
}

static int up_on_headers(tg_upcall_t *u, int status, void *ud) {
    tg_request_t *r = ud;
    r->up_status = status;
    r->stream = r->scan.stream && status >= 200 && status < 300;
    const char *ra = tg_upcall_header(u, "retry-after");
    if (ra) snprintf(r->retry_after, sizeof(r->retry_after), "%s", ra);
    if (r->stream) {
        tg_sse_init(&r->sse, MAX_SSE_EVENT);
        r->sse_live = 1;
    }
    return 0;
}

static int up_on_data(tg_upcall_t *u, const char *p, size_t n, void *ud) {
    tg_request_t *r = ud;
    if (r->att_ttft_us < 0) r->att_ttft_us = tg_clock_mono_us();
    if (!r->stream) {
        int ok = r->up_status >= 200 && r->up_status < 300;
        buf_append(r, p, n, ok ? MAX_ANSWER_BYTES : MAX_ERROR_BYTES);
        return ok && r->rbuf_over ? -1 : 0;
    }
    int rc = tg_sse_feed(&r->sse, p, n, on_sse_event, r);
    if (rc == TG_SSE_ETOOBIG) snprintf(r->stream_err, sizeof(r->stream_err), "stream event too large");
    if (rc != 0) return -1;
    if (r->want_pause) {
        r->want_pause = 0;
        r->paused = 1;
        return 1;
    }
    return 0;
}

/* --- finishing an attempt ---------------------------------------------- */

#define ALOG_MAX 1024
/* Appends "target: what" to the attempt log (target NULL: `what` alone). */
static void log_text(tg_request_t *r, const char *target, const char *what) {
    if (r->alog == NULL && (r->alog = tg_pool_alloc(r->pool, ALOG_MAX)) == NULL) return;
    if (r->alog_len >= ALOG_MAX - 1) return;
    int n = snprintf(r->alog + r->alog_len, ALOG_MAX - r->alog_len, "%s%s%s%s", r->alog_len ? "; " : "",
                     target ? target : "", target ? ": " : "", what);
    if (n > 0) r->alog_len += (size_t)n;
    if (r->alog_len >= ALOG_MAX) r->alog_len = ALOG_MAX - 1;
}

static void log_attempt(tg_request_t *r, const char *what) {
    log_text(r, r->cur->target, what);
}

static void release_attempt(tg_request_t *r) {
    if (r->sse_live) {
        tg_sse_free(&r->sse);
        r->sse_live = 0;
    }
    r->rlen = 0;
    r->rbuf_over = 0;
    r->stream = 0;
    r->done_seen = 0;
    r->paused = 0;
    r->want_pause = 0;
    r->stream_err[0] = '\0';
}

/* One ledger record (and the metrics and local quota figures that go with it). A failed
 * attempt the provider billed (it reported usage) gets its own record, id "<id>.<attempt>",
 * which adds tokens and cost but no request. */
static void record_usage(tg_request_t *r, const char *id, int status, int attempt_only, int64_t dur_us) {
    if (r->kind == TG_KIND_COUNT_TOKENS) return; /* never billed, never counted against a quota */
    int64_t micro = tg_request_cost_micro(r);
    tg_ledger_rec_t rec = {
        .request_id = id,
        .key_name = r->key ? r->key->name : "",
        .route = r->route.route,
        .provider = r->cur->provider->name,
        .model = r->cur->model,
        .status = status,
        .attempts = (int)r->attempts,
        .usage = r->usage,
        .cost_micro_usd = micro,
        .ts_ms = r->ts_ms,
        .latency_ms = dur_us / 1000,
        .ttft_ms = r->ttfb_us < 0 ? -1 : r->ttfb_us / 1000,
        .attempt_only = attempt_only,
        .simulated = r->cur->provider->simulated,
        .cache_hit = r->cache_hit,
        .saved_micro_usd = r->cache_saved,
    };
    if (r->w->ledger) tg_ledger_record(r->w->ledger, &rec);
    tg_metrics_usage(r->cur->provider->name, r->cur->model, &r->usage, micro);
    tg_quota_note(r->key, r->ts_ms + dur_us / 1000, micro, r->usage.input_tokens + r->usage.output_tokens);
}

/* The attempt failed before anything reached the client: try the next one. */
static void attempt_failed(tg_request_t *r, fail_kind_t kind, const char *why, const char *metric) {
    if (r->usage.present && (r->usage.input_tokens > 0 || r->usage.output_tokens > 0)) {
        record_usage(r, tg_pool_printf(r->pool, "%s.%u", r->id, r->attempts), 502, 1,
                     tg_clock_mono_us() - r->t0_us);
        memset(&r->usage, 0, sizeof(r->usage)); /* counted: not again in the request's own record */
    }
    r->billable = 0;
    log_attempt(r, why);
    tg_metrics_attempt(r->cur->provider->name, metric);
    health_end(r, TG_OUTCOME_FAIL);
    r->last_fail = kind;
    if (kind != FAIL_CONNECT) r->all_connect = 0;
    release_attempt(r);
    tg_request_attempt_next(r);
}

static void finish_stream(tg_request_t *r, const char *error) {
    health_end(r, error ? TG_OUTCOME_FAIL : TG_OUTCOME_OK);
    usage_finalise(r);
    int64_t micro = tg_request_cost_micro(r);
    if (error == NULL) {
        /* The cost comment and the client's own end marker, in its dialect's order. */
        const char *comment = tg_pool_printf(r->pool, ": tollgate {\"cost_usd\":%s,\"usage\":%s}\n\n",
                                             tg_request_usd_text(r->pool, micro), usage_json(r));
        const char *c = tg_client_stream_done(r->client, r->pool, comment);
        tg_http_stream_write(r->http, c, strlen(c));
        r->status = 200;
        if (tg_request_store_answer(r)) return;
    } else {
        /* The dialect's translator ends it when it must (the answer so far,
         * in sequence); else the client's generic error ending. */
        tg_emitter_t em = {emit_event, r};
        const tg_dialect_t *d = r->cur->provider->dialect;
        if (d->stream_fail == NULL || d->stream_fail(&r->call, error, &r->usage, &em) != 0) {
            const char *c = tg_client_stream_broken(r->client, r->pool, error);
            if (c) tg_http_stream_write(r->http, c, strlen(c));
        }
        r->status = 502; /* for the log and ledger: the client saw 200, then an error */
    }
    tg_http_stream_end(r->http); /* on_finish may run inside: r may be gone */
}

static void finish_answer(tg_request_t *r) {
    const char *out;
    size_t out_len;
    if (r->cur->provider->dialect->parse_response(&r->call, r->rbuf ? r->rbuf : "", r->rlen, &r->usage, &out,
                                                  &out_len) != 0) {
        attempt_failed(r, FAIL_OTHER, "answer is not valid JSON", "other");
        return;
    }
    tg_metrics_attempt(r->cur->provider->name, "ok");
    health_end(r, TG_OUTCOME_OK);
    usage_finalise(r);
    const char **h = tg_pool_alloc(r->pool, 12 * sizeof(*h));
    size_t n = 0;
    h[n++] = "Content-Type: application/json";
    n += tg_request_headers(r, h + n, 12 - n, tg_request_usd_text(r->pool, tg_request_cost_micro(r)));
    r->started = 1;
    r->status = 200;
    r->ttfb_us = tg_clock_mono_us() - r->t0_us;
    tg_metrics_ttfb(r->ttfb_us);
    r->held_h = h, r->held_n = n, r->held_out = out, r->held_len = out_len;
    if (tg_request_store_answer(r)) return;
    tg_request_answer_held(r); /* on_finish may run inside */
}

static const char *result_text(tg_up_result_t res, const char **metric, fail_kind_t *kind) {
    switch (res) {
    case TG_UP_ECONNECT:
        *metric = "connect";
        *kind = FAIL_CONNECT;
        return "connection failed";
    case TG_UP_EFIRSTBYTE:
        *metric = "timeout";
        *kind = FAIL_TIMEOUT;
        return "no first byte in time";
    case TG_UP_EIDLE:
        *metric = "timeout";
        *kind = FAIL_TIMEOUT;
        return "stalled (idle timeout)";
    case TG_UP_ETOTAL:
        *metric = "timeout";
        *kind = FAIL_TIMEOUT;
        return "total timeout";
    case TG_UP_ERESET:
        *metric = "reset";
        *kind = FAIL_OTHER;
        return "connection reset mid-answer";
    default:
        *metric = "other";
        *kind = FAIL_OTHER;
        return "transfer failed";
    }
}

/* The character that starts at p in a JSON text, a string escape decoded
 * (\uXXXX, \/, \\, \"...), and in *n the bytes it takes. Plain text reads
 * the same, byte by byte. */
static int json_char_at(const char *p, const char *end, size_t *n) {
    *n = 1;
    if (p[0] != '\\' || p + 1 >= end) return (unsigned char)p[0];
    static const char short_esc[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
    for (size_t i = 0; short_esc[i]; i += 2)
        if (p[1] == short_esc[i]) {
            *n = 2;
            return (unsigned char)short_esc[i + 1];
        }
    if (p[1] != 'u' || p + 6 > end) return (unsigned char)p[0];
    int v = 0;
    for (int i = 2; i < 6; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'                     ? c - '0'
                : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                         : -1;
        if (d < 0) return (unsigned char)p[0];
        v = v * 16 + d;
    }
    *n = 6;
    return v;
}

#define KEY_RUN_MIN 8 /* a run of this many characters of the key is the key */

/* Masks with '*' every run of text that spells the key, or 8 or more
 * characters of it in a row (a prefix cut off, a suffix, any part), in any
 * spelling: plain, JSON-escaped, \u-escaped, or a mix. In place and the
 * same length, whole escapes at a time, so a JSON text stays JSON. */
static void mask_key(char *text, size_t len, const char *key) {
    size_t kl = key ? strlen(key) : 0;
    if (kl < 4) return;
    size_t need = kl < KEY_RUN_MIN ? kl : KEY_RUN_MIN;
    const char *end = text + len;
    for (size_t i = 0; i < len;) {
        size_t n0, best = i;
        int c0 = json_char_at(text + i, end, &n0);
        for (size_t j = 0; j < kl; j++) {
            if ((unsigned char)key[j] != c0) continue;
            size_t p = i, k = j, n;
            while (k < kl && p < len && json_char_at(text + p, end, &n) == (unsigned char)key[k])
                p += n, k++;
            if (k - j >= need && p > best) best = p;
        }
        if (best > i) {
            memset(text + i, '*', best - i);
            i = best;
        } else {
            i += n0;
        }
    }
}

/* A provider may quote the credentials it was sent in an error text (some
 * echo the key they refused): mask them before anything reaches a client
 * or a log. In place, same length. */
static void redact_key(const tg_request_t *r, char *text) {
    mask_key(text, strlen(text), r->cur ? r->cur->provider->api_key : NULL);
}

/* A provider's error body, before its dialect reads the message out of it
 * and cuts that to 512 bytes: the key is masked in the whole body first (a
 * key across the cut would otherwise leave its first part), in every
 * spelling; a JSON body is then decoded and written again, so that the
 * message the dialect takes holds no escapes of the provider's choosing. */
static void redact_error_body(tg_request_t *r) {
    if (r->rbuf == NULL || r->rlen == 0) return;
    mask_key(r->rbuf, r->rlen, r->cur->provider->api_key);
    json_t *j = json_loadb(r->rbuf, r->rlen, 0, NULL);
    char *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (out == NULL) return;
    free(r->rbuf);
    r->rbuf = out;
    r->rlen = r->rcap = strlen(out);
    mask_key(r->rbuf, r->rlen, r->cur->provider->api_key); /* what decoding joined */
}

static void up_on_done(tg_upcall_t *u, tg_up_result_t res, const char *err, void *ud) {
    tg_request_t *r = ud;
    r->up = NULL;
    if (res == TG_UP_ECONNECT || (res == TG_UP_OK && (r->up_status < 200 || r->up_status >= 300)))
        r->billable = 0;
    if (r->http == NULL) return;
    int ok2xx = r->up_status >= 200 && r->up_status < 300;
    if (res == TG_UP_OK && ok2xx && !r->stream) {
        finish_answer(r);
        return;
    }
    if (res == TG_UP_OK && r->stream && r->done_seen) {
        tg_metrics_attempt(r->cur->provider->name, "ok");
        finish_stream(r, NULL);
        return;
    }
    if (res == TG_UP_OK && !ok2xx) {
        tg_upstream_error_t e = {0};
        redact_error_body(r);
        r->cur->provider->dialect->map_error(&r->call, r->up_status, r->rbuf ? r->rbuf : "", r->rlen, &e);
        redact_key(r, e.message);
        const char *why =
            tg_pool_printf(r->pool, "HTTP %d%s%s", r->up_status, e.message[0] ? " " : "", e.message);
        const char *metric = r->up_status == 429 ? "http_429" : r->up_status >= 500 ? "http_5xx" : "http_4xx";
        if (r->he && r->retry_after[0] &&
            (r->up_status == 429 || r->up_status == 503 || r->up_status == 529)) {
            long secs = strtol(r->retry_after, NULL, 10);
            if (secs > 0 && secs < 3600)
                tg_health_retry_after(r->he, tg_clock_mono_us() / 1000 + secs * 1000);
        }
        if (e.retryable) {
            attempt_failed(r, FAIL_HTTP, why, metric);
            return;
        }
        tg_metrics_attempt(r->cur->provider->name, metric);
        health_end(r, TG_OUTCOME_OK); /* the provider is up; the request was bad */
        r->status = e.status;
        tg_request_send_error(r->http, r->client, e.status, e.type, "upstream_rejected",
                              tg_pool_printf(r->pool, "%s rejected the request: %s", r->cur->target,
                                             e.message[0] ? e.message : why));
        return;
    }
    /* A transport failure, a stream that ended without its end marker, or
     * an error event inside the stream. */
    redact_key(r, r->stream_err);
    const char *metric;
    fail_kind_t kind;
    const char *why = result_text(res, &metric, &kind);
    if (res == TG_UP_OK || res == TG_UP_EABORTED) {
        why = r->stream_err[0] ? tg_pool_printf(r->pool, "stream error: %s", r->stream_err)
              : r->rbuf_over   ? "answer too large"
                               : "stream ended before its end marker";
        metric = "reset";
        kind = FAIL_OTHER;
    } else if (err && *err) {
        why = tg_pool_printf(r->pool, "%s (%s)", why, err);
    }
    if (r->started) {
        tg_metrics_attempt(r->cur->provider->name, metric);
        log_attempt(r, why);
        finish_stream(r, tg_pool_printf(r->pool, "%s: %s", r->cur->target, why));
        return;
    }
    attempt_failed(r, kind, why, metric);
}

static const tg_upcall_cb_t up_cb = {up_on_headers, up_on_data, up_on_done};

/* --- attempts ------------------------------------------------------------ */

static void all_failed(tg_request_t *r) {
    int status = r->last_fail == FAIL_TIMEOUT ? 504 : r->all_connect ? 503 : 502;
    const char *hdr[4];
    size_t nh = 0;
    /* The client learns what was tried even when nothing answered. */
    hdr[nh++] = tg_pool_printf(r->pool, "x-tollgate-route: %s", r->route.route);
    hdr[nh++] = tg_pool_printf(r->pool, "x-tollgate-attempts: %u", r->attempts);
    hdr[nh++] = tg_pool_printf(r->pool, "x-tollgate-request-id: %s", r->id);
    if (r->up_status == 429 && r->retry_after[0]) {
        status = 429;
        hdr[nh++] = tg_pool_printf(r->pool, "retry-after: %s", r->retry_after);
    }
    r->status = status;
    const char *msg = tg_pool_printf(r->pool, "every provider failed (%u attempt%s): %s", r->attempts,
                                     r->attempts == 1 ? "" : "s", r->alog ? r->alog : "");
    send_error_h(r->http, r->client, status, status == 429 ? "rate_limit_error" : "upstream_error",
                 "all_providers_failed", msg, hdr, nh);
}

/* count_tokens for a provider whose API has no such endpoint: the gateway's
 * own estimate, marked as one. Nothing was called, nothing is billed. */
static void count_locally(tg_request_t *r) {
    size_t len = 0;
    const char *body = tg_endpoint_count_body(r->pool, &r->scan, &len);
    const char *h[12];
    size_t n = 0;
    h[n++] = "Content-Type: application/json";
    h[n++] = "x-tollgate-estimated: true";
    n += tg_request_headers(r, h + n, 12 - n, "0.000000");
    r->started = 1;
    r->status = 200;
    tg_http_respond(r->http, 200, h, n, body, len); /* on_finish may run inside */
}

/* Whether calls to p go to the simulator: p is simulated (demo mode), or its base_url is the
 * configured simulator's (a test or bench setup with a dummy key). Only these get the
 * client's x-sim-* headers: a real vendor never sees them. */
static int to_simulator(const tg_config_t *c, const tg_provider_t *p) {
    if (p->simulated) return 1;
    size_t n = c->sim_url ? strlen(c->sim_url) : 0;
    return n && p->url && strncmp(p->url, c->sim_url, n) == 0 && (p->url[n] == '/' || p->url[n] == '\0');
}

void tg_request_attempt_next(tg_request_t *r) {
    unsigned max = r->cfg->limits.max_attempts ? r->cfg->limits.max_attempts : 3;
    while (r->next < r->route.n && r->attempts < max) {
        const tg_candidate_t *c = &r->route.cands[r->next++];
        r->cur = c;
        if (c->provider->dialect == NULL) {
            log_attempt(r, tg_pool_printf(r->pool, "the %s dialect is not available in this build",
                                          c->provider->dialect_name));
            continue;
        }
        tg_health_entry_t *he = r->route.health ? r->route.health[r->next - 1] : NULL;
        int64_t now = tg_clock_mono_us();
        if (he && !tg_health_allow(he, now / 1000)) {
            log_attempt(r, "skipped: circuit open");
            continue;
        }
        r->attempts++;
        if (r->kind == TG_KIND_COUNT_TOKENS && !tg_endpoint_counts_upstream(c->provider)) {
            count_locally(r);
            return;
        }
        memset(&r->call, 0, sizeof(r->call));
        r->call.pool = r->pool;
        r->call.body = r->body;
        r->call.body_len = r->body_len;
        r->call.scan = &r->scan;
        r->call.client = r->client;
        r->call.headers = (tg_header_source_t){request_header, r};
        r->call.client_wants_usage = r->scan.include_usage;
        r->call.provider = c->provider;
        r->call.model = c->model;
        r->call.rs_req = r->rsp.req;
        r->call.rs_prep = r->rsp.src ? &r->rsp : NULL;
        r->call.rs_previous = r->rs_prev;
        r->call.rs_id = r->id;
        r->call.rs_created = r->ts_ms / 1000;
        r->call.price = tg_config_price(r->cfg, c->provider->name, c->model);
        r->call.kind = r->kind;
        if (to_simulator(r->cfg, c->provider)) {
            r->call.extra_headers = r->extra;
            r->call.n_extra = r->n_extra;
        }
        memset(&r->usage, 0, sizeof(r->usage));
        r->up_status = 0;
        r->retry_after[0] = '\0';
        tg_upcall_req_t req = {0};
        char err[256];
        if (c->provider->dialect->build(&r->call, &req, err, sizeof(err)) != 0) {
            /* The dialect cannot express this request (n > 1, an audio
             * part...): not an upstream call, so not an attempt. */
            log_attempt(r, err);
            r->attempts--;
            r->n_refused++;
            continue;
        }
        const tg_limits_t *l = &r->cfg->limits;
        req.timeouts =
            (tg_upcall_timeouts_t){l->upstream_connect_ms, l->first_byte_ms, l->idle_ms, l->total_ms};
        req.streaming = r->scan.stream;
        req.ca_file = c->provider->ca_file;
        req.http2 = c->provider->http2;
        r->up = tg_upcall_start(r->w->up, &req, &up_cb, r, err, sizeof(err));
        if (r->up != NULL) {
            r->billable = 1;
            if (he) tg_health_begin(he, now / 1000);
            r->he = he;
            r->att_start_us = now;
            r->att_ttft_us = -1;
            return;
        }
        log_attempt(r, err);
        r->last_fail = FAIL_CONNECT;
    }
    if (r->attempts == 0 && r->alog_len) {
        /* Every candidate's dialect refused the request itself: the client's to fix. */
        int bad = r->n_refused > 0 && r->n_refused == r->next;
        r->status = bad ? 400 : 503;
        tg_request_send_error(r->http, r->client, r->status, bad ? "invalid_request_error" : "upstream_error",
                              bad ? "unsupported_request" : "no_usable_provider", r->alog);
        return;
    }
    all_failed(r);
}

/* --- phases: headers and body ------------------------------------------ */

static const char *bearer(const tg_http_req_t *h, size_t *len) {
    size_t n;
    const char *v = tg_http_header(h, "authorization", &n);
    if (v == NULL || n < 7 || strncasecmp(v, "Bearer ", 7) != 0) return NULL;
    v += 7;
    n -= 7;
    while (n && *v == ' ')
        v++, n--;
    *len = n;
    return n ? v : NULL;
}

static int path_is(const char *p, size_t n, const char *want) {
    size_t wl = strlen(want);
    return n == wl && memcmp(p, want, n) == 0;
}

static void collect_sim_headers(tg_request_t *r) {
    size_t n = tg_http_header_count(r->http), k = 0;
    for (size_t i = 0; i < n; i++) {
        const tg_http_header_t *h = tg_http_header_at(r->http, i);
        if (h->name_len > 6 && strncasecmp(h->name, "x-sim-", 6) == 0) k++;
    }
    if (k == 0) return;
    r->extra = tg_pool_alloc(r->pool, k * sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const tg_http_header_t *h = tg_http_header_at(r->http, i);
        if (h->name_len > 6 && strncasecmp(h->name, "x-sim-", 6) == 0)
            r->extra[r->n_extra++] =
                tg_pool_printf(r->pool, "%.*s: %.*s", (int)h->name_len, h->name, (int)h->value_len, h->value);
    }
}

static void serve_models(tg_http_req_t *h, const tg_config_t *c, const tg_key_t *key);
static int metrics_allowed(tg_http_req_t *h);
static void serve_metrics(tg_http_req_t *h, const tg_worker_t *w);
static void serve_health(tg_http_req_t *h, int ready);

static int on_headers(tg_http_req_t *h, void *ud) {
    tg_worker_t *w = ud;
    size_t plen;
    const char *path = tg_http_path(h, &plen);
    const char *m = tg_http_method(h);
    int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    /* Everything that needs a credential is decided here, on the headers;
     * whatever is refused is answered before a byte of its body is read,
     * and http1 closes the connection rather than read a body that follows. */
    int get_body = get && (tg_http_content_length(h) > 0 || tg_http_header(h, "transfer-encoding", NULL));
    tg_admin_kind_t admin = tg_admin_kind(path, plen);
    if (get_body && admin == TG_ADMIN_NONE) {
        /* A body on a request that has no use for one is a smuggling attempt
         * or a broken client: refused, and the connection closed unread. */
        tg_request_send_error(h, tg_client_for_path(path, plen), 400, "invalid_request_error",
                              "unexpected_body", "a GET or HEAD request must not have a body");
        return TG_HTTP_HANDLED;
    }
    if (path_is(path, plen, "/healthz") && get) {
        serve_health(h, 0);
        return TG_HTTP_HANDLED;
    }
    if (path_is(path, plen, "/readyz") && get) {
        serve_health(h, 1);
        return TG_HTTP_HANDLED;
    }
    if (path_is(path, plen, "/metrics") && get) {
        if (metrics_allowed(h)) serve_metrics(h, w);
        return TG_HTTP_HANDLED;
    }
    if (admin != TG_ADMIN_NONE) {
        if (!get) {
            const char *allow[] = {"Allow: GET"};
            send_error_h(h, TG_CLIENT_OPENAI, 405, "invalid_request_error", "method_not_allowed",
                         "method not allowed on this path", allow, 1);
            return TG_HTTP_HANDLED;
        }
        /* The token is checked on the headers: without it nothing more is
         * read, so an unauthenticated client costs no body buffer. */
        tg_pool_t *pool = tg_pool_create(4096);
        tg_config_t *cfg = tg_config_current();
        int denied = tg_admin_authorise(admin, h, cfg, pool);
        if (denied == 0 && get_body)
            tg_request_send_error(h, TG_CLIENT_OPENAI, 400, "invalid_request_error", "unexpected_body",
                                  "a GET or HEAD request must not have a body");
        if (denied || get_body) {
            tg_config_unref(cfg);
            tg_pool_destroy(pool);
            return TG_HTTP_HANDLED;
        }
        tg_request_t *r = tg_pool_calloc(pool, sizeof(*r));
        r->pool = pool;
        r->w = w;
        r->cfg = cfg;
        r->admin = admin;
        r->ts_ms = tg_clock_wall_ms();
        tg_http_set_data(h, r);
        return TG_HTTP_CONTINUE; /* answered from on_request, after Redis */
    }
    int chat = path_is(path, plen, "/v1/chat/completions");
    int messages = path_is(path, plen, "/v1/messages");
    int responses = path_is(path, plen, "/v1/responses");
    int models = path_is(path, plen, "/v1/models");
    int embeddings = path_is(path, plen, "/v1/embeddings");
    int count = path_is(path, plen, "/v1/messages/count_tokens");
    tg_client_dialect_t client = tg_client_for_path(path, plen);
    chat |= embeddings || count; /* POST, routed and relayed alike; r->kind tells them apart */
    /* A stored object of the API that keeps them: /v1/responses/<id>, nothing deeper. */
    const char *item = NULL;
    size_t item_len = 0;
    if (tg_client_keeps_state(client) && !responses) {
        item = (const char *)memrchr(path, '/', plen) + 1;
        item_len = (size_t)(path + plen - item);
        if (item_len == 0 || item - 1 != path + strlen("/v1/responses")) item = NULL;
    }
    if (!chat && !messages && !responses && !models && !item) {
        char msg[240];
        snprintf(msg, sizeof(msg),
                 "unknown path '%.*s': the API is at /v1/chat/completions, /v1/messages, "
                 "/v1/messages/count_tokens, /v1/responses, /v1/embeddings and /v1/models",
                 (int)(plen > 64 ? 64 : plen), path);
        tg_request_send_error(h, client, 404, "invalid_request_error", "not_found", msg);
        return TG_HTTP_HANDLED;
    }
    int del = strcmp(m, "DELETE") == 0;
    if (((chat || messages || responses) && strcmp(m, "POST") != 0) || (models && !get) ||
        (item && !get && !del)) {
        const char *allow[] = {models ? "Allow: GET" : item ? "Allow: GET, DELETE" : "Allow: POST"};
        send_error_h(h, client, 405, "invalid_request_error", "method_not_allowed",
                     "method not allowed on this path", allow, 1);
        return TG_HTTP_HANDLED;
    }
    tg_config_t *cfg = tg_config_current();
    size_t klen = 0;
    /* Anthropic SDKs send the key as x-api-key; OpenAI SDKs as a bearer token. */
    const char *secret = bearer(h, &klen);
    if (secret == NULL && (secret = tg_http_header(h, "x-api-key", &klen)) != NULL && klen == 0)
        secret = NULL;
    const tg_key_t *key = secret ? tg_config_key(cfg, secret, klen) : NULL;
    if (key == NULL) {
        tg_config_unref(cfg);
        tg_request_send_error(h, client, 401, "invalid_request_error", "invalid_api_key",
                              secret ? "the gateway key is not valid" : tg_client_auth_hint(client));
        return TG_HTTP_HANDLED;
    }
    if (models) {
        serve_models(h, cfg, key);
        tg_config_unref(cfg);
        return TG_HTTP_HANDLED;
    }
    /* The first block holds a typical request whole (the request, its scan,
     * the spliced body): sized by the body so a stream held open for minutes
     * keeps ~4 KB, not a fixed 8 KB. */
    int64_t cl = tg_http_content_length(h);
    tg_pool_t *pool = tg_pool_create(cl < 0 ? 8192 : 4096 + (size_t)(cl < 14336 ? cl : 14336) * 2);
    tg_request_t *r = tg_pool_calloc(pool, sizeof(*r));
    r->pool = pool;
    r->w = w;
    r->http = h;
    r->cfg = cfg;
    r->key = key;
    r->t0_us = tg_clock_mono_us();
    r->ts_ms = tg_clock_wall_ms();
    r->ttfb_us = -1;
    r->all_connect = 1;
    r->client = client;
    r->kind = embeddings ? TG_KIND_EMBEDDINGS : count ? TG_KIND_COUNT_TOKENS : TG_KIND_CHAT;
    snprintf(r->id, sizeof(r->id), "%016" PRIx64, next_rand(&w->rng));
    if (item) {
        r->rs_method = del ? 'D' : 'G';
        r->rs_item = tg_pool_strndup(pool, item, item_len);
    }
    tg_http_set_data(h, r);
    return TG_HTTP_CONTINUE;
}

static void quota_decided(tg_request_t *r, const tg_quota_result_t *q) {
    if (q->status == 0) {
        tg_request_cache_or_attempt(r);
        return;
    }
    if (!q->degraded) r->quota_hold = 0; /* Redis refused it: the script held nothing */
    r->status = q->status;
    const char *hdr[1] = {tg_pool_printf(r->pool, "retry-after: %d", q->retry_after_s)};
    int budget = q->verdict == TG_QUOTA_BUDGET;
    send_error_h(r->http, r->client, q->status, budget ? "insufficient_quota" : "rate_limit_error",
                 budget                       ? "budget_exceeded"
                 : q->verdict == TG_QUOTA_TPM ? "tpm_exceeded"
                                              : "rpm_exceeded",
                 q->message, hdr, 1);
}

static void on_quota(const tg_quota_result_t *q, void *ud) {
    tg_request_t *r = ud;
    r->quota = NULL;
    quota_decided(r, q);
}

/* The request's body was scanned (r->scan): route it, then check quotas. */
void tg_request_body_scanned(tg_request_t *r) {
    tg_http_req_t *h = r->http;
    if (!r->scan.has_model) {
        r->status = 400;
        tg_request_send_error(h, r->client, 400, "invalid_request_error", "missing_model",
                              "'model' is required");
        return;
    }
    if (r->kind != TG_KIND_CHAT) r->scan.stream = 0; /* embeddings and counts answer in one piece */
    tg_route_ctx_t ctx = {r->scan.model_str, r->key, &r->scan, {request_header, r}, r->ts_ms, r->kind};
    tg_route_opts_t ro = {r->w->health, tg_clock_mono_us() / 1000};
    if (tg_route_pick_opts(r->cfg, &ctx, &ro, r->pool, &r->route) != 0) {
        int st = r->route.status ? r->route.status : 404;
        r->status = st;
        tg_request_send_error(h, r->client, st,
                              st == 403   ? "permission_error"
                              : st == 503 ? "upstream_error"
                                          : "invalid_request_error",
                              st == 403   ? "route_forbidden"
                              : st == 503 ? "no_usable_provider"
                              : st == 400 ? "model_kind_mismatch"
                                          : "model_not_found",
                              r->route.err);
        return;
    }
    if (r->route.skipped) log_text(r, NULL, r->route.skipped); /* keyless candidates, by name */
    collect_sim_headers(r);
    if (r->kind == TG_KIND_COUNT_TOKENS) { /* free: no budget or rate check */
        tg_request_attempt_next(r);
        return;
    }
    tg_quota_result_t qr;
    tg_quota_hold_t hold = {0};
    if (tg_quota_holds(r->key)) { /* the worst case is held in Redis until the record settles it */
        tg_quota_worst_case(r->cfg, r->route.cands, r->route.n, &r->scan, r->kind, r->ts_ms, &hold);
        r->quota_hold = 1;
    }
    if (tg_quota_check(r->w->ledger, r->w->base, r->pool, r->key, r->id, r->ts_ms, &hold, r->cfg->workers,
                       on_quota, r, &r->quota, &qr) == 0)
        quota_decided(r, &qr);
}

static void on_request(tg_http_req_t *h, void *ud) {
    tg_request_t *r = tg_http_data(h);
    if (r == NULL) return;
    if (r->admin) {
        /* An answer given at once ran on_finish inside: r is gone unless a is pending. */
        tg_admin_t *a = tg_admin_serve(r->admin, h, r->cfg, r->w->ledger, r->pool, r->ts_ms);
        if (a != NULL) r->admin_state = a;
        return;
    }
    if (r->rs_method) {
        tg_request_serve_stored(r);
        return;
    }
    char err[256];
    r->body = tg_http_body(h, &r->body_len);
    if (tg_client_keeps_state(r->client)) {
        tg_request_rs_body(r);
        return;
    }
    int (*scan)(const char *, size_t, tg_pool_t *, tg_scan_req_t *, char *, size_t) =
        r->kind == TG_KIND_EMBEDDINGS ? tg_scan_request_bare : tg_scan_request;
    if (scan(r->body, r->body_len, r->pool, &r->scan, err, sizeof(err)) != 0) {
        r->status = 400;
        tg_request_send_error(h, r->client, 400, "invalid_request_error", "invalid_body", err);
        return;
    }
    tg_request_body_scanned(r);
}

static void on_drain(tg_http_req_t *h, void *ud) {
    tg_request_t *r = tg_http_data(h);
    if (r && r->paused && r->up) {
        r->paused = 0;
        tg_upcall_resume(r->up);
    }
}

/* --- finish: the one place a request is recorded and freed -------------- */

/* s escaped for a JSON string (core/json.h): s itself when nothing needs
 * it, as for every name the operator wrote; a model name a pattern alias
 * let through comes from the client. */
static const char *jstr(tg_pool_t *pool, const char *s) {
    size_t n = strlen(s), need = tg_json_escaped_len(s, n);
    if (need == n) return s;
    char *o = tg_pool_alloc(pool, need + 1);
    if (o == NULL) return "";
    o[tg_json_escape_to(o, need, s, n)] = '\0';
    return o;
}

static void access_log(tg_request_t *r, int aborted, int64_t dur_us) {
    const tg_usage_t *u = &r->usage;
    /* tg_pool_printf formats these conversions itself: no vsnprintf per request. */
    const char *line = tg_pool_printf(
        r->pool,
        "{\"ts\":%" PRId64 ",\"id\":\"%s\",\"key\":\"%s\",\"route\":\"%s\",\"provider\":\"%s\","
        "\"model\":\"%s\",\"status\":%d,\"attempts\":%u,\"stream\":%s,\"input_tokens\":%" PRId64
        ",\"cached_input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64
        ",\"estimated\":%s,\"simulated\":%s,\"cost_usd\":%s,\"ms\":%" PRId64 ",\"ttfb_ms\":%" PRId64
        ",\"client_closed\":%s}",
        r->ts_ms, r->id, jstr(r->pool, r->key ? r->key->name : ""),
        jstr(r->pool, r->route.route ? r->route.route : ""),
        jstr(r->pool, r->cur ? r->cur->provider->name : ""), jstr(r->pool, r->cur ? r->cur->model : ""),
        r->status, r->attempts, r->scan.stream ? "true" : "false", u->input_tokens, u->cached_input_tokens,
        u->output_tokens, u->estimated ? "true" : "false",
        r->cur && r->cur->provider->simulated ? "true" : "false",
        tg_request_usd_text(r->pool, r->cur ? tg_request_cost_micro(r) : 0), dur_us / 1000,
        r->ttfb_us < 0 ? -1 : r->ttfb_us / 1000, aborted ? "true" : "false");
    if (line) tg_log_access(line, strlen(line));
}

static void on_finish(tg_http_req_t *h, int aborted, void *ud) {
    tg_request_t *r = tg_http_data(h);
    if (r == NULL) return;
    r->http = NULL;
    tg_quota_cancel(r->quota); /* a client that left during the check */
    r->quota = NULL;
    tg_respstore_cancel(r->rs_op); /* a client that left during a store read or write */
    r->rs_op = NULL;
    tg_cache_cancel(r->cache_op); /* a client that left during the cache lookup */
    r->cache_op = NULL;
    json_decref(r->rsp.req);
    json_decref(r->rs_prev);
    if (r->admin) {
        tg_admin_cancel(r->admin_state);
        tg_config_unref(r->cfg);
        tg_pool_destroy(r->pool);
        return;
    }
    if (r->up) {
        tg_upcall_cancel(r->up); /* closes the connection: the provider stops generating */
        r->up = NULL;
    }
    health_end(r, TG_OUTCOME_ABORT);
    if (aborted && r->status == 0) r->status = 499;
    int64_t dur = tg_clock_mono_us() - r->t0_us;
    if (r->cur && (r->attempts > 0 || r->cache_hit)) {
        usage_finalise(r);
        record_usage(r, r->id, r->status, 0, dur); /* its record settles the quota hold */
    } else if (r->quota_hold) {
        tg_quota_release(r->w->ledger, r->key, r->id); /* refused, cancelled or never sent */
    }
    tg_request_cache_store(r, aborted);
    free(r->cap);
    tg_metrics_request(r->status ? r->status : 200, dur);
    access_log(r, aborted, dur);
    if (r->sse_live) tg_sse_free(&r->sse);
    free(r->rbuf);
    free(r->ev);
    tg_config_unref(r->cfg);
    tg_pool_destroy(r->pool);
}

/* --- small endpoints ----------------------------------------------------- */

static void serve_health(tg_http_req_t *h, int ready) {
    if (!ready) {
        tg_request_respond_json(h, 200, NULL, 0, "{\"status\":\"ok\"}", 15);
        return;
    }
    tg_config_t *c = tg_config_current();
    int usable = 0;
    /* Usable: its dialect is built in and it has a key, needs none, or is simulated (demo
     * mode). A keyless provider is not: a gateway with only those is not ready. */
    for (size_t i = 0; c && i < c->n_providers; i++)
        if (c->providers[i].dialect && !c->providers[i].keyless) usable++;
    tg_config_unref(c);
    if (usable)
        tg_request_respond_json(h, 200, NULL, 0, "{\"status\":\"ready\"}", 18);
    else
        tg_request_respond_json(h, 503, NULL, 0, "{\"status\":\"no usable provider\"}", 31);
}

/* With metrics_token_env set, /metrics wants `Authorization: Bearer <token>` (compared in
 * constant time, gateway/admin.c); 401 otherwise, and for everyone while the variable is
 * unset. Without it /metrics is open, as Prometheus scrapes usually are. */
static int metrics_allowed(tg_http_req_t *h) {
    tg_config_t *c = tg_config_current();
    int ok = c == NULL || c->metrics_token_env == NULL;
    size_t n = 0;
    const char *v = tg_http_header(h, "authorization", &n);
    if (!ok && c->metrics_token && v && n > 7 && strncasecmp(v, "Bearer ", 7) == 0)
        ok = tg_admin_token_ok(v + 7, n - 7, c->metrics_token);
    tg_config_unref(c);
    if (!ok) {
        static const char body[] =
            "{\"error\":{\"message\":\"metrics token missing or wrong: send "
            "'Authorization: Bearer <metrics token>'\",\"type\":\"authentication_error\","
            "\"code\":\"invalid_metrics_token\"}}";
        const char *hdr[] = {"WWW-Authenticate: Bearer realm=\"tollgate metrics\""};
        tg_request_respond_json(h, 401, hdr, 1, body, sizeof(body) - 1);
    }
    return ok;
}

static void serve_metrics(tg_http_req_t *h, const tg_worker_t *w) {
    size_t len;
    char *extra = w->server_metrics ? w->server_metrics() : NULL;
    char *text = tg_metrics_render(extra, &len);
    free(extra);
    const char *hdr[] = {"Content-Type: text/plain; version=0.0.4"};
    tg_http_respond(h, 200, hdr, 1, text ? text : "", text ? len : 0);
    free(text);
}

static void serve_models(tg_http_req_t *h, const tg_config_t *c, const tg_key_t *key) {
    size_t len = 0;
    char *s = tg_endpoint_models(c, key, tg_clock_wall_ms(), &len);
    if (s == NULL) {
        tg_request_send_error(h, TG_CLIENT_OPENAI, 500, "server_error", "out_of_memory", "out of memory");
        return;
    }
    tg_request_respond_json(h, 200, NULL, 0, s, len);
    free(s);
}

const tg_http_handler_t tg_request_handler = {on_headers, on_request, on_drain, on_finish};
