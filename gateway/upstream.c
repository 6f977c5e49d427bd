/* upstream.c — HTTP calls to providers through libcurl's multi_socket API on
 * the worker's libevent loop (curl's docs/examples/hiperfifo.c pattern).
 *
 * Owns one CURLM per worker, one libevent event per socket curl watches, one
 * evtimer for curl's timeouts, and a free list of calls that keep their easy
 * handle, timers and header buffer across uses. Data enters through
 * tg_upcall_start (URL, header lines copied into a per-call slist, body by
 * pointer) and leaves through the caller's callbacks: on_headers and on_data
 * from curl's header/write callbacks, on_done from the loop. Anything that
 * must not run inside a curl callback (removing a handle, resuming) is queued
 * and run from a zero-delay event.
 */
#include "gateway/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

/* Idle calls kept for reuse beyond this are freed: each holds an easy handle
 * with its receive buffer, so a burst must not pin memory forever. */
#define TG_UP_FREE_MAX 256
/* HTTP/1.1 origins whose idle connections are counted (see fresh_connect). */
#define TG_UP_ORIGINS 32
/* Idle upstream connections a worker keeps for reuse (all providers). */
#define TG_UP_IDLE_CONNS 512
/* Calls multiplexed on one HTTP/2 connection (`http2: true`) before libcurl
 * opens another to the same origin; its default is 100. The provider's own
 * SETTINGS_MAX_CONCURRENT_STREAMS still caps it (nginx: 128 unless raised). */
#define TG_UP_H2_STREAMS 1000

/* One per socket curl asks us to watch; lives from curl's first interest in
 * the socket until CURL_POLL_REMOVE. */
typedef struct tg_upsock_s {
    struct event *ev;
    struct tg_upsock_s *prev, *next;
} tg_upsock_t;

struct tg_upcall_s {
    tg_upstream_t *up;
    CURL *easy;
    struct curl_slist *req_headers;
    tg_upcall_cb_t cb;
    void *ud;
    struct event *phase_timer; /* first-byte, then idle */
    struct event *total_timer;
    unsigned connect_ms, first_byte_ms, idle_ms, total_ms;
    /* Response headers of the current response as "name\0value\0" pairs;
     * the buffer survives reuse of the call so it is allocated rarely. */
    char *hdr;
    size_t hdr_len, hdr_cap;
    int status;
    /* Bytes curl will hand us again after a pause that the caller already
     * consumed (see write_cb). */
    size_t skip;
    unsigned sent : 1, got_byte : 1, headers_done : 1, paused : 1, cancelled : 1, aborted : 1, finishing : 1,
        want_resume : 1, queued : 1, resent : 1;
    int origin;    /* index in up->origins, or -1 (HTTP/2, or not tracked) */
    int took_idle; /* this start counted on one of the origin's idle connections */
    int small_buf; /* 4 KB receive buffer (event streams), else 16 KB; fixed for the handle's life */
    char *ca_file; /* CAINFO set on the handle (a copy), NULL = the system's store */
    tg_upcall_t *prev, *next; /* active list, or free list (next only) */
    tg_upcall_t *qnext;       /* deferred-work queue */
    char errbuf[CURL_ERROR_SIZE];
};

struct tg_upstream_s {
    struct event_base *base;
    CURLM *multi;
    struct event *timer; /* curl's timer */
    struct event *defer; /* runs the deferred-work queue */
    tg_upsock_t *socks;
    tg_upcall_t *active;
    /* Idle handles by receive buffer: [0] 16 KB for whole answers, [1] 4 KB
     * for event streams (held open for minutes; the buffer was half of a
     * stream's memory). A handle keeps its size for life. */
    tg_upcall_t *free_list[2];
    unsigned nactive, nfree[2];
    tg_upcall_t *queue;
    /* >0 while inside curl_multi_socket_action / curl_easy_pause, i.e. while
     * curl callbacks (and so user callbacks) may run. */
    int in_curl;
    int no_proxy_env; /* no *_proxy variable was set at start-up */
    /* libcurl's built-in trust store, restored on a handle that served a
     * provider with its own ca_file (either may be NULL). */
    char *def_cainfo, *def_capath;
    int h2c;               /* libcurl can reuse an h2c (prior knowledge) connection: 8.0 and later */
    int h2c_warned;        /* said once that an http:// provider's http2 stays HTTP/1.1 */
    unsigned long resends; /* calls sent again on a new connection (see resend) */
    /* Per HTTP/1.1 origin ("scheme://host:port"): how many of its connections may be
     * idle in curl's cache — an upper bound (every completed transfer adds
     * one, every start that may reuse takes one; curl closing one leaves it
     * high, which only costs a search). See tg_upcall_start. */
    struct {
        char key[128];
        unsigned idle;
    } origins[TG_UP_ORIGINS];
    int n_origins;
};

static void finish(tg_upcall_t *u, tg_up_result_t res, const char *err);
static void drain_done(tg_upstream_t *up);

/* ---- sockets and curl's timer (hiperfifo) ---- */

static void socket_action(tg_upstream_t *up, curl_socket_t fd, int what) {
    int running;
    up->in_curl++;
    curl_multi_socket_action(up->multi, fd, what, &running);
    up->in_curl--;
    drain_done(up);
}

static void on_sock_event(evutil_socket_t fd, short kind, void *arg) {
    int what = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    socket_action(arg, fd, what);
}

static void on_curl_timer(evutil_socket_t fd, short kind, void *arg) {
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp) {
    tg_upstream_t *up = userp;
    tg_upsock_t *s = sockp;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            event_free(s->ev);
            if (s->prev)
                s->prev->next = s->next;
            else
                up->socks = s->next;
            if (s->next) s->next->prev = s->prev;
            free(s);
            curl_multi_assign(up->multi, fd, NULL);
        }
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return -1;
        s->ev = event_new(up->base, fd, kind, on_sock_event, up);
        if (!s->ev) {
            free(s);
            return -1;
        }
        s->next = up->socks;
        if (up->socks) up->socks->prev = s;
        up->socks = s;
        curl_multi_assign(up->multi, fd, s);
    } else {
        event_del(s->ev);
        event_assign(s->ev, up->base, fd, kind, on_sock_event, up);
    }
    event_add(s->ev, NULL);
    return 0;
}

/* Only arms the evtimer: calling back into curl from here is forbidden. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    tg_upstream_t *up = userp;
    if (timeout_ms < 0) {
        evtimer_del(up->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(up->timer, &tv);
    return 0;
}

/* ---- deferred work ---- */

static void enqueue(tg_upcall_t *u) {
    if (u->queued) return;
    u->queued = 1;
    u->qnext = u->up->queue;
    u->up->queue = u;
    event_active(u->up->defer, EV_TIMEOUT, 1);
}

static void arm_ms(struct event *ev, unsigned ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void unlink_active(tg_upcall_t *u) {
    tg_upstream_t *up = u->up;
    if (u->prev)
        u->prev->next = u->next;
    else
        up->active = u->next;
    if (u->next) u->next->prev = u->prev;
    u->prev = u->next = NULL;
    up->nactive--;
}

static void call_destroy(tg_upcall_t *u) {
    curl_easy_cleanup(u->easy);
    free(u->ca_file);
    event_free(u->phase_timer);
    event_free(u->total_timer);
    free(u->hdr);
    free(u);
}

static void unqueue(tg_upcall_t *u) {
    tg_upcall_t **pp = &u->up->queue;
    while (*pp && *pp != u)
        pp = &(*pp)->qnext;
    if (*pp) *pp = u->qnext;
    u->queued = 0;
}

/* Takes the call out of curl and off the active list. A connection that
 * carried an unfinished response is closed: it cannot be reused, and closing
 * it is what tells the provider to stop generating (and billing). */
static void detach(tg_upcall_t *u, int close_conn) {
    evtimer_del(u->phase_timer);
    evtimer_del(u->total_timer);
    if (u->queued) unqueue(u);
    if (close_conn) curl_easy_setopt(u->easy, CURLOPT_FORBID_REUSE, 1L);
    if (!close_conn && u->origin >= 0) u->up->origins[u->origin].idle++;
    curl_multi_remove_handle(u->up->multi, u->easy);
    curl_slist_free_all(u->req_headers);
    u->req_headers = NULL;
    unlink_active(u);
}

/* A cancelled call's connection is closed unless its answer came over
 * HTTP/2: there curl resets the one stream (RST_STREAM, which stops the
 * provider too) and the connection goes on carrying the others. Closing it
 * made every cancelled stream that was alone on its connection cost the next
 * call a TCP and TLS handshake (one per probe in the 10,000-stream bench). */
static int cancel_closes(tg_upcall_t *u) {
    long v = 0;
    curl_easy_getinfo(u->easy, CURLINFO_HTTP_VERSION, &v);
    return v != CURL_HTTP_VERSION_2_0;
}

static void release(tg_upcall_t *u) {
    tg_upstream_t *up = u->up;
    int k = u->small_buf;
    if (up->nfree[k] >= TG_UP_FREE_MAX) {
        call_destroy(u);
        return;
    }
    u->next = up->free_list[k];
    up->free_list[k] = u;
    up->nfree[k]++;
}

static void resume_now(tg_upcall_t *u) {
    u->paused = 0;
    if (u->idle_ms) arm_ms(u->phase_timer, u->idle_ms);
    u->up->in_curl++;
    /* Delivers the bytes curl held back, through write_cb, before returning. */
    CURLcode rc = curl_easy_pause(u->easy, CURLPAUSE_CONT);
    u->up->in_curl--;
    if (rc == CURLE_OK || u->cancelled) return; /* a cancel is already queued */
    /* An abort inside the redelivery is reported to us only, not to the multi. */
    if (u->aborted)
        finish(u, TG_UP_EABORTED, "aborted by caller");
    else
        finish(u, TG_UP_EOTHER, curl_easy_strerror(rc));
}

static void on_defer(evutil_socket_t fd, short kind, void *arg) {
    tg_upstream_t *up = arg;
    while (up->queue) {
        tg_upcall_t *u = up->queue;
        up->queue = u->qnext;
        u->queued = 0;
        if (u->cancelled) {
            detach(u, cancel_closes(u));
            release(u);
        } else if (u->want_resume) {
            u->want_resume = 0;
            if (u->paused && !u->finishing) resume_now(u);
        }
    }
    drain_done(up);
}

/* ---- finishing ---- */

static void finish(tg_upcall_t *u, tg_up_result_t res, const char *err) {
    detach(u, res != TG_UP_OK);
    u->finishing = 1;
    if (u->cb.on_done) u->cb.on_done(u, res, err, u->ud);
    release(u);
}

/* "host:port" of the call's URL for error texts: never the full URL, whose
 * query may carry a key, and never request headers. */
static void peer_name(tg_upcall_t *u, char *out, size_t n) {
    char *url = NULL, *host = NULL, *port = NULL;
    CURLU *h = curl_url();
    curl_easy_getinfo(u->easy, CURLINFO_EFFECTIVE_URL, &url);
    if (h && url && !curl_url_set(h, CURLUPART_URL, url, 0) && !curl_url_get(h, CURLUPART_HOST, &host, 0) &&
        !curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT))
        snprintf(out, n, "%s:%s", host, port);
    else
        snprintf(out, n, "upstream");
    curl_free(host);
    curl_free(port);
    if (h) curl_url_cleanup(h);
}

/* curl's own words, for the server's log only: they may name the address. */
static const char *curl_reason(tg_upcall_t *u, CURLcode rc, char *buf, size_t n) {
    long os_errno = 0;
    curl_easy_getinfo(u->easy, CURLINFO_OS_ERRNO, &os_errno);
    if (rc == CURLE_COULDNT_CONNECT && os_errno) return strerror_r((int)os_errno, buf, n);
    return u->errbuf[0] ? u->errbuf : curl_easy_strerror(rc);
}

/* The class of a failure, for the caller (and so the client): never the
 * provider's address, which stays in the server's log. */
static const char *failure_class(tg_upcall_t *u, CURLcode rc) {
    long os_errno = 0;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return "could not resolve host";
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "could not resolve proxy";
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(u->easy, CURLINFO_OS_ERRNO, &os_errno);
        return os_errno == ECONNREFUSED                              ? "connection refused"
               : os_errno == ETIMEDOUT                               ? "connect timed out"
               : os_errno == ENETUNREACH || os_errno == EHOSTUNREACH ? "host unreachable"
                                                                     : "could not connect";
    case CURLE_SSL_CONNECT_ERROR:
        return "TLS handshake failed";
    case CURLE_PEER_FAILED_VERIFICATION:
        return "TLS certificate verification failed";
    case CURLE_SSL_CACERT_BADFILE:
        return "TLS CA file could not be read";
    case CURLE_OPERATION_TIMEDOUT:
        return u->got_byte ? "timed out" : "connect timed out";
    case CURLE_SEND_ERROR:
        return "connection reset while sending";
    case CURLE_RECV_ERROR:
        return "connection reset";
    case CURLE_PARTIAL_FILE:
        return "answer cut short";
    case CURLE_GOT_NOTHING:
        return "empty reply";
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return "HTTP/2 stream error";
    default:
        /* curl's fixed text for the code: it names no address. */
        return curl_easy_strerror(rc);
    }
}

static tg_up_result_t classify(tg_upcall_t *u, CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return TG_UP_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        /* Only the connect timeout is curl's; the others are our timers. */
        return u->got_byte ? TG_UP_EOTHER : TG_UP_ECONNECT;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return TG_UP_ERESET;
    default:
        return TG_UP_EOTHER;
    }
}

/* Whether a failed call may be sent again, once, on a new connection,
 * without the caller knowing: nothing of an answer arrived, and the
 * connection was one reused from the cache, where a failure before any byte
 * is the connection's fate, not the call's — the provider closed it while
 * idle, sent GOAWAY (HTTP/2: streams past its last one were never
 * processed), or refused the stream. libcurl retries such calls itself, but
 * its budget (5) is counted per easy handle and reset only when exhausted
 * (libcurl 7.88 and 8.14 alike), so a handle reused for thousands of calls
 * fails one of them outright now and then: "Connection died, tried 5 times
 * before giving up" on the first try. A call that failed on a connection it
 * opened itself is not sent again: that is the provider's failure, for the
 * caller to fail over. */
static int may_resend(tg_upcall_t *u, CURLcode rc) {
    if (u->resent || u->got_byte || u->aborted || u->cancelled) return 0;
    switch (rc) {
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        break;
    default:
        return 0;
    }
    long opened = 0;
    return curl_easy_getinfo(u->easy, CURLINFO_NUM_CONNECTS, &opened) == CURLE_OK && opened == 0;
}

/* Sends the call again on a connection of its own. Runs from the loop (never
 * inside a curl callback): the handle leaves the multi and comes back. The
 * total deadline keeps running; the connect and first-byte guard restarts. */
static int resend(tg_upcall_t *u, CURLcode rc) {
    tg_upstream_t *up = u->up;
    char peer[300];
    peer_name(u, peer, sizeof peer);
    tg_info("upstream %s: call sent again on a new connection (the reused one failed before any answer: %s)",
            peer, u->errbuf[0] ? u->errbuf : curl_easy_strerror(rc));
    curl_multi_remove_handle(up->multi, u->easy);
    u->resent = 1;
    u->sent = 0;
    u->errbuf[0] = '\0';
    curl_easy_setopt(u->easy, CURLOPT_FRESH_CONNECT, 1L);
    if (curl_multi_add_handle(up->multi, u->easy) != CURLM_OK) return -1;
    up->resends++;
    arm_ms(u->phase_timer, u->connect_ms + u->first_byte_ms);
    return 0;
}

/* A transfer curl reports as finished. */
static void complete(tg_upcall_t *u, CURLcode rc) {
    char peer[300], why[160], err[600];
    if (rc == CURLE_OK) {
        finish(u, TG_UP_OK, "");
        return;
    }
    if (u->aborted) {
        finish(u, TG_UP_EABORTED, "aborted by caller");
        return;
    }
    if (may_resend(u, rc) && resend(u, rc) == 0) return;
    tg_up_result_t res = classify(u, rc);
    const char *cls = failure_class(u, rc);
    peer_name(u, peer, sizeof peer);
    tg_info("upstream %s: %s (%s)", peer, cls, curl_reason(u, rc, why, sizeof why));
    if (res == TG_UP_ERESET)
        snprintf(err, sizeof err, "answer cut: %s", cls);
    else
        snprintf(err, sizeof err, "%s", cls);
    finish(u, res, err);
}

static void drain_done(tg_upstream_t *up) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(up->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        char *priv = NULL;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        tg_upcall_t *u = (tg_upcall_t *)priv;
        /* A cancelled call is removed by the queue, silently. */
        if (u && !u->cancelled && !u->finishing) complete(u, rc);
    }
}

/* ---- our timers ---- */

static void on_phase_timer(evutil_socket_t fd, short kind, void *arg) {
    tg_upcall_t *u = arg;
    char peer[300], err[160];
    peer_name(u, peer, sizeof peer);
    if (!u->sent) {
        /* Normally curl's connect timeout fires first; this covers waits curl
         * does not count as connecting (e.g. for a multiplexed connection). */
        snprintf(err, sizeof err, "no connection within %u ms", u->connect_ms + u->first_byte_ms);
        tg_info("upstream %s: %s", peer, err);
        finish(u, TG_UP_ECONNECT, err);
    } else if (!u->got_byte) {
        snprintf(err, sizeof err, "no response within %u ms", u->first_byte_ms);
        tg_info("upstream %s: %s", peer, err);
        finish(u, TG_UP_EFIRSTBYTE, err);
    } else {
        snprintf(err, sizeof err, "no data for %u ms", u->idle_ms);
        tg_info("upstream %s: %s", peer, err);
        finish(u, TG_UP_EIDLE, err);
    }
}

static void on_total_timer(evutil_socket_t fd, short kind, void *arg) {
    tg_upcall_t *u = arg;
    char peer[300], err[160];
    peer_name(u, peer, sizeof peer);
    snprintf(err, sizeof err, "not complete within %u ms", u->total_ms);
    tg_info("upstream %s: %s", peer, err);
    finish(u, TG_UP_ETOTAL, err);
}

/* ---- curl callbacks: no curl calls from here, user callbacks only ---- */

/* Connected (or reusing a connection) and about to send the request. */
static int prereq_cb(void *arg, char *primary_ip, char *local_ip, int primary_port, int local_port) {
    tg_upcall_t *u = arg;
    u->sent = 1;
    arm_ms(u->phase_timer, u->first_byte_ms);
    return CURL_PREREQFUNC_OK;
}

static int add_header(tg_upcall_t *u, const char *name, size_t nl, const char *val, size_t vl) {
    size_t need = u->hdr_len + nl + vl + 2;
    if (need > u->hdr_cap) {
        size_t cap = u->hdr_cap ? u->hdr_cap * 2 : 1024;
        while (cap < need)
            cap *= 2;
        char *p = realloc(u->hdr, cap);
        if (!p) return -1;
        u->hdr = p;
        u->hdr_cap = cap;
    }
    char *d = u->hdr + u->hdr_len;
    memcpy(d, name, nl);
    d[nl] = '\0';
    memcpy(d + nl + 1, val, vl);
    d[nl + 1 + vl] = '\0';
    u->hdr_len = need;
    return 0;
}

/* End of a header block: interim (1xx) blocks are skipped, the final one
 * goes to on_headers. Returns 0 to go on, -1 to stop the transfer. */
static int headers_end(tg_upcall_t *u) {
    if (u->status >= 100 && u->status < 200) return 0;
    u->headers_done = 1;
    int rc = u->cb.on_headers ? u->cb.on_headers(u, u->status, u->ud) : 0;
    if (u->cancelled) return -1;
    if (rc < 0) {
        u->aborted = 1;
        return -1;
    }
    return 0;
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *arg) {
    tg_upcall_t *u = arg;
    size_t n = size * nmemb, l = n;
    if (u->cancelled || u->aborted) return 0;
    if (u->headers_done) return n; /* trailers */
    u->got_byte = 1;
    arm_ms(u->phase_timer, u->idle_ms);
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx, or the first): forget earlier headers. */
        const char *sp = memchr(p, ' ', n);
        u->hdr_len = 0;
        u->status = 0;
        for (sp = sp ? sp + 1 : p + n; sp < p + n && *sp >= '0' && *sp <= '9'; sp++)
            u->status = u->status * 10 + (*sp - '0');
        return n;
    }
    while (l && (p[l - 1] == '\n' || p[l - 1] == '\r'))
        l--;
    if (l == 0) return headers_end(u) ? 0 : n;
    const char *colon = memchr(p, ':', l);
    if (!colon || p[0] == ' ' || p[0] == '\t') return n; /* obs-fold or junk: ignored */
    size_t nl = (size_t)(colon - p);
    while (nl && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
        nl--;
    const char *v = colon + 1, *end = p + l;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return add_header(u, p, nl, v, (size_t)(end - v)) ? 0 : n;
}

/* Pause: returning CURL_WRITEFUNC_PAUSE makes curl keep this chunk (and what
 * follows) and hand it to us again on resume. The caller already consumed
 * it, so we remember how many of the redelivered bytes to drop (`skip`); the
 * pause takes effect at once, with no extra buffering of ours. */
static size_t write_cb(char *p, size_t size, size_t nmemb, void *arg) {
    tg_upcall_t *u = arg;
    size_t n = size * nmemb;
    if (u->cancelled || u->aborted) return 0;
    size_t k = u->skip < n ? u->skip : n;
    u->skip -= k;
    if (k == n) return n;
    arm_ms(u->phase_timer, u->idle_ms);
    int rc = u->cb.on_data ? u->cb.on_data(u, p + k, n - k, u->ud) : 0;
    if (u->cancelled) return 0;
    if (rc < 0) {
        u->aborted = 1;
        return 0;
    }
    if (rc > 0) {
        /* Bytes p[0..k) were consumed before the last pause, p[k..n) now. */
        u->skip = n;
        u->paused = 1;
        /* The pause is the client's slowness, not the provider's. */
        evtimer_del(u->phase_timer);
        return CURL_WRITEFUNC_PAUSE;
    }
    return n;
}

/* ---- calls ---- */

static tg_upcall_t *call_new(tg_upstream_t *up, int small_buf) {
    tg_upcall_t *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->up = up;
    u->small_buf = small_buf;
    u->origin = -1;
    u->easy = curl_easy_init();
    u->phase_timer = evtimer_new(up->base, on_phase_timer, u);
    u->total_timer = evtimer_new(up->base, on_total_timer, u);
    if (!u->easy || !u->phase_timer || !u->total_timer) {
        if (u->easy) curl_easy_cleanup(u->easy);
        if (u->phase_timer) event_free(u->phase_timer);
        if (u->total_timer) event_free(u->total_timer);
        free(u);
        return NULL;
    }
    CURL *e = u->easy;
    /* Options that never change for this handle; the varying ones are set by
     * setup_call every time (no curl_easy_reset: it would throw away caches). */
    curl_easy_setopt(e, CURLOPT_PRIVATE, u);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, u->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, u);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, small_buf ? 4096L : 16384L);
    if (up->no_proxy_env) {
        /* Without these curl reads six proxy variables from the environment
         * on every transfer (a getenv scan each, measured with callgrind);
         * with none set at start-up the answer is known: no proxy. */
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    }
    return u;
}

static tg_upcall_t *call_get(tg_upstream_t *up, int small_buf) {
    tg_upcall_t *u = up->free_list[small_buf];
    if (!u) return call_new(up, small_buf);
    up->free_list[small_buf] = u->next;
    up->nfree[small_buf]--;
    u->next = NULL;
    return u;
}

/* Headers we set ourselves: a caller's copy (forwarded from a client) must
 * not ask for 100-continue or for a compressed answer we would have to
 * decode before scanning. */
static int is_ours(const char *line) {
    static const char *const names[] = {"expect", "accept-encoding"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t l = strlen(names[i]);
        if (strncasecmp(line, names[i], l) == 0 && (line[l] == ':' || line[l] == ' ')) return 1;
    }
    return 0;
}

static int build_headers(tg_upcall_t *u, const tg_upcall_req_t *req) {
    struct curl_slist *l = NULL, *t;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!req->headers[i] || is_ours(req->headers[i])) continue;
        if (!(t = curl_slist_append(l, req->headers[i]))) goto fail;
        l = t;
    }
    if (!(t = curl_slist_append(l, "Expect:"))) goto fail;
    l = t;
    if (!(t = curl_slist_append(l, "Accept-Encoding: identity"))) goto fail;
    u->req_headers = t;
    return 0;
fail:
    curl_slist_free_all(l);
    return -1;
}

/* The slot of a URL's origin ("scheme://host:port"), made on first sight;
 * -1 when the table is full or the URL odd. */
static int origin_of(tg_upstream_t *up, const char *url) {
    const char *h = url, *e = strstr(url, "://");
    if (!e) return -1;
    e += 3;
    e += strcspn(e, "/?#");
    size_t n = (size_t)(e - h);
    if (n == 0 || n >= sizeof up->origins[0].key) return -1;
    for (int i = 0; i < up->n_origins; i++)
        if (strncmp(up->origins[i].key, h, n) == 0 && up->origins[i].key[n] == '\0') return i;
    if (up->n_origins == TG_UP_ORIGINS) return -1;
    memcpy(up->origins[up->n_origins].key, h, n);
    up->origins[up->n_origins].key[n] = '\0';
    up->origins[up->n_origins].idle = 0;
    return up->n_origins++;
}

/* curl looks for a reusable connection by walking every connection it holds
 * to the host, busy ones included: with thousands of streams open to one
 * HTTP/1.1 origin that walk was most of a new stream's cost (time to first
 * token p50 0.55 -> 0.33 ms with 9,488 streams open). When none of the
 * origin's connections can be idle the walk is skipped (FRESH_CONNECT).
 * HTTP/2 is left alone: there curl's search finds the connection to
 * multiplex on. */
static long fresh_connect(tg_upcall_t *u, const char *url, int h2) {
    u->origin = h2 ? -1 : origin_of(u->up, url);
    u->took_idle = 0;
    if (u->origin < 0) return 0;
    unsigned *idle = &u->up->origins[u->origin].idle;
    if (*idle == 0) return 1;
    (*idle)--;
    u->took_idle = 1;
    return 0;
}

/* A provider's ca_file replaces the system's CAs (file and directory) for its
 * calls; curl only reuses a connection whose CA settings match, so a private
 * CA never vouches for another provider's connection. Options are set only
 * when they change: the handle keeps them across calls. */
static void set_trust(tg_upcall_t *u, const char *ca_file) {
    if (ca_file == u->ca_file || (ca_file && u->ca_file && strcmp(ca_file, u->ca_file) == 0)) return;
    free(u->ca_file);
    u->ca_file = ca_file ? strdup(ca_file) : NULL;
    if (ca_file && !u->ca_file) ca_file = "/nonexistent"; /* out of memory: fail closed */
    curl_easy_setopt(u->easy, CURLOPT_CAINFO, ca_file ? ca_file : u->up->def_cainfo);
    curl_easy_setopt(u->easy, CURLOPT_CAPATH, ca_file ? NULL : u->up->def_capath);
}

static void setup_call(tg_upcall_t *u, const tg_upcall_req_t *req, int https) {
    CURL *e = u->easy;
    int h2 = req->http2 && (https || u->up->h2c);
    if (req->http2 && !h2 && !u->up->h2c_warned) {
        u->up->h2c_warned = 1;
        tg_warn("upstream %s: http2 on an http:// provider needs libcurl 8.0 or later (this is %s): HTTP/1.1 "
                "it is",
                req->url, curl_version_info(CURLVERSION_NOW)->version);
    }
    const tg_upcall_timeouts_t *t = &req->timeouts;
    u->connect_ms = t->connect_ms ? t->connect_ms : 3000;
    u->first_byte_ms = t->first_byte_ms ? t->first_byte_ms : 60000;
    u->idle_ms = t->idle_ms ? t->idle_ms : 60000;
    u->total_ms = t->total_ms;
    u->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, u->req_headers);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)u->connect_ms);
    /* HTTP/1.1 on a pool of kept-alive connections unless the provider opts
     * in to HTTP/2 (`http2: true`): libcurl 7.88's HTTP/2 fails a call whose
     * answer is complete before the request body is sent ("Stream error in
     * the HTTP/2 framing layer"), and here its HTTP/2 costs more CPU per call
     * than HTTP/1.1 (docs/operations.md, "Upstream HTTP/2"). With HTTP/2,
     * PIPEWAIT makes a second call wait for the first connection instead of
     * opening another. On an http:// URL HTTP/2 is spoken in clear from the
     * first byte (h2c with prior knowledge: no Upgrade round trip), which
     * lets thousands of streams share a few sockets to a local provider. */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     !h2     ? (long)CURL_HTTP_VERSION_1_1
                     : https ? (long)CURL_HTTP_VERSION_2TLS
                             : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, h2 ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, fresh_connect(u, req->url, h2));
    set_trust(u, req->ca_file);
    if (req->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
}

tg_upcall_t *tg_upcall_start(tg_upstream_t *up, const tg_upcall_req_t *req, const tg_upcall_cb_t *cb,
                             void *ud, char *err, size_t errlen) {
    const char *url = req->url ? req->url : "";
    int https = strncasecmp(url, "https://", 8) == 0;
    if (!https && strncasecmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "upstream URL must be http:// or https://");
        return NULL;
    }
    tg_upcall_t *u = call_get(up, req->streaming ? 1 : 0);
    if (!u) {
        snprintf(err, errlen, "out of memory starting an upstream call");
        return NULL;
    }
    if (build_headers(u, req)) {
        release(u);
        snprintf(err, errlen, "out of memory building upstream headers");
        return NULL;
    }
    u->cb = *cb;
    u->ud = ud;
    u->hdr_len = 0;
    u->status = 0;
    u->skip = 0;
    u->sent = u->got_byte = u->headers_done = u->paused = 0;
    u->cancelled = u->aborted = u->finishing = u->want_resume = u->queued = u->resent = 0;
    setup_call(u, req, https);
    CURLMcode mc = curl_multi_add_handle(up->multi, u->easy);
    if (mc != CURLM_OK) {
        if (u->took_idle) up->origins[u->origin].idle++; /* nothing was reused */
        curl_slist_free_all(u->req_headers);
        u->req_headers = NULL;
        release(u);
        snprintf(err, errlen, "upstream call not started: %s", curl_multi_strerror(mc));
        return NULL;
    }
    u->prev = NULL;
    u->next = up->active;
    if (up->active) up->active->prev = u;
    up->active = u;
    up->nactive++;
    /* Until the request is sent (prereq_cb) this guards the connect phase. */
    arm_ms(u->phase_timer, u->connect_ms + u->first_byte_ms);
    if (u->total_ms) arm_ms(u->total_timer, u->total_ms);
    return u;
}

void tg_upcall_cancel(tg_upcall_t *u) {
    if (!u || u->cancelled || u->finishing) return;
    u->cancelled = 1;
    evtimer_del(u->phase_timer);
    evtimer_del(u->total_timer);
    /* Inside curl the header/write callbacks now fail the transfer (closing
     * its connection); the handle is removed once curl has returned. */
    if (u->up->in_curl) {
        enqueue(u);
        return;
    }
    detach(u, cancel_closes(u));
    release(u);
}

void tg_upcall_resume(tg_upcall_t *u) {
    if (!u || u->cancelled || u->finishing) return;
    u->want_resume = 1;
    enqueue(u);
}

const char *tg_upcall_header(const tg_upcall_t *u, const char *name) {
    const char *p = u->hdr, *end = u->hdr + u->hdr_len;
    while (p < end) {
        const char *v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0) return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

unsigned tg_upstream_active(const tg_upstream_t *up) {
    return up->nactive;
}

unsigned long tg_upstream_resends(const tg_upstream_t *up) {
    return up->resends;
}

/* ---- the per-worker object ---- */

tg_upstream_t *tg_upstream_new(struct event_base *base) {
    tg_upstream_t *up = calloc(1, sizeof *up);
    if (!up) return NULL;
    up->base = base;
    up->multi = curl_multi_init();
    up->timer = evtimer_new(base, on_curl_timer, up);
    up->defer = event_new(base, -1, 0, on_defer, up);
    if (!up->multi || !up->timer || !up->defer) {
        tg_error("upstream: cannot create curl multi handle or its events");
        if (up->multi) curl_multi_cleanup(up->multi);
        if (up->timer) event_free(up->timer);
        if (up->defer) event_free(up->defer);
        free(up);
        return NULL;
    }
    static const char *const proxy_vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                             "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    CURL *probe = curl_easy_init();
    char *ca = NULL, *capath = NULL;
    if (probe) {
        curl_easy_getinfo(probe, CURLINFO_CAINFO, &ca);
        curl_easy_getinfo(probe, CURLINFO_CAPATH, &capath);
        up->def_cainfo = ca ? strdup(ca) : NULL;
        up->def_capath = capath ? strdup(capath) : NULL;
        curl_easy_cleanup(probe);
    }
    /* libcurl 7.88 (Debian 12) fails every call it puts on a reused h2c
     * prior-knowledge connection ("Error in the HTTP2 framing layer"; curl
     * issue 10634, fixed in 8.0): each would fail once and be sent again on a
     * new connection, so there `http2: true` on an http:// provider keeps
     * HTTP/1.1. */
    up->h2c = curl_version_info(CURLVERSION_NOW)->version_num >= 0x080000;
    up->no_proxy_env = 1;
    for (size_t i = 0; i < sizeof proxy_vars / sizeof proxy_vars[0]; i++)
        if (getenv(proxy_vars[i])) up->no_proxy_env = 0;
    /* curl's default keeps 4 idle connections per transfer in progress: when
     * concurrency dips for a moment it closes the rest, and the next burst
     * pays a TCP (and TLS) handshake per request (measured: 2% of requests
     * opened a connection under steady load). Idle ones still close after
     * CURLOPT_MAXAGE_CONN (118 s). */
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, (long)TG_UP_IDLE_CONNS);
    /* 10,000 streams to one HTTP/2 provider take ~10 connections instead of
     * 100 (README, Performance). No CURLMOPT_MAX_HOST_CONNECTIONS: it would
     * queue calls to HTTP/1.1 providers too, whose connections carry one call
     * each. */
    curl_multi_setopt(up->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)TG_UP_H2_STREAMS);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    return up;
}

void tg_upstream_free(tg_upstream_t *up) {
    if (!up) return;
    while (up->active) {
        tg_upcall_t *u = up->active;
        u->cancelled = 1;
        detach(u, 1);
        release(u);
    }
    for (int k = 0; k < 2; k++) {
        while (up->free_list[k]) {
            tg_upcall_t *u = up->free_list[k];
            up->free_list[k] = u->next;
            call_destroy(u);
        }
    }
    /* Closes the cached connections; curl may still report their sockets. */
    curl_multi_cleanup(up->multi);
    while (up->socks) {
        tg_upsock_t *s = up->socks;
        up->socks = s->next;
        event_free(s->ev);
        free(s);
    }
    event_free(up->timer);
    event_free(up->defer);
    free(up->def_cainfo);
    free(up->def_capath);
    free(up);
}
