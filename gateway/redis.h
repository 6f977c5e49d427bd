/* redis.h — our connection to Redis: one asynchronous link on a worker's event loop (plain TCP,
 * TLS or a unix socket; directly or through Sentinel) that reconnects by itself, and the redis
 * URL parser. The owner learns when the link is up and when it went down, sends commands and
 * hears each reply through a callback. Used only from the loop it was made on. */
#ifndef TG_REDIS_H
#define TG_REDIS_H

#include <stddef.h>

struct event_base;
struct redisReply;
typedef struct tg_redis_s tg_redis_t;
typedef struct tg_redis_cmd_s tg_redis_cmd_t;

/* A parsed redis URL:
 *   redis[s]://[[user]:password@]host[:port][/db]
 *   redis[s]+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER_NAME[/db]
 *   unix:///path
 * rediss: TLS (tg_redis_tls_setup). Nothing is resolved here: host names are looked up without
 * blocking on every connect.
 *   redis[s]+cluster://[[user]:password@]host[:port][,host[:port]...][/0]
 * names seed nodes of a Redis Cluster (`cluster`; nodes as written): tg_redis_new refuses it, a
 * cluster is gateway/redis_cluster.h's, made of one link of ours per master. */
typedef struct {
    char host[256];
    int port;
} tg_redis_node_t;
typedef struct {
    char host[256], target[300]; /* the (first) host as written; target: host:port or path, for messages */
    int port, db;
    int tls;                /* rediss */
    int sentinel;           /* nodes are sentinels that name the master `master` */
    int cluster;            /* nodes are seeds of a Redis Cluster */
    char master[128];       /* sentinel only */
    tg_redis_node_t *nodes; /* malloc'd: every host:port of the URL (n_nodes >= 1 unless unix) */
    int n_nodes;
    char *unix_path, *user, *password; /* malloc'd or NULL */
} tg_redis_url_t;
int tg_redis_url_parse(const char *url, tg_redis_url_t *u, char *err, size_t errlen);
void tg_redis_url_free(tg_redis_url_t *u);

/* TLS for rediss URLs, one setting for the process (its OpenSSL context is shared by every
 * connection made after this call). ca_file: the CA bundle that signs the server's certificate
 * (NULL = the system store); cert and key: a client certificate, when the server asks for one;
 * server_name: the name the certificate must carry (and SNI), when it is not the URL's host.
 * TLS 1.2 or later; the certificate and the name are always checked. Without this call a
 * rediss connection uses the system store and the URL's host. Returns -1 and fills err when a
 * file cannot be used. Call before workers start (not thread-safe against tg_redis_new). */
typedef struct {
    const char *ca_file, *cert, *key, *server_name;
} tg_redis_tls_t;
int tg_redis_tls_setup(const tg_redis_tls_t *tls, char *err, size_t errlen);

typedef enum {
    TG_REDIS_DOWN,       /* no link; a reconnect is scheduled */
    TG_REDIS_CONNECTING, /* connecting */
    TG_REDIS_UP,         /* connected, AUTH, SELECT (and ROLE) answered: commands may be sent */
    TG_REDIS_CLOSING     /* tg_redis_drop was called: the link closes on the next loop turn */
} tg_redis_state_t;

typedef struct {
    /* The link is up (AUTH and SELECT went through; through Sentinel, ROLE said master): send
     * what the owner needs first. */
    void (*on_up)(void *ud);
    /* The link is gone or never came; commands in flight get a NULL reply. `loud` is 1 when
     * the news is worth a log line: the link was up, or this is the first failure since it
     * last was healthy (tg_redis_healthy). A reconnect is scheduled with a doubling wait. The
     * link may go down while connecting, before any on_up. */
    void (*on_down)(void *ud, const char *why, int loud);
    void *ud;
} tg_redis_events_t;

/* Parses `url` and prepares the link; nothing is sent (nor resolved) until tg_redis_connect.
 * `who` prefixes log lines ("ledger"). Returns NULL and fills err on a bad or unsupported URL. */
tg_redis_t *tg_redis_new(struct event_base *base, const char *url, const char *who,
                         const tg_redis_events_t *ev, char *err, size_t errlen);
/* Starts connecting: resolving the name (evdns, never blocking), connecting, the TLS handshake,
 * AUTH, SELECT; through Sentinel first asking the sentinels in turn for the master's address.
 * Success comes back through on_up, a failure through on_down (possibly before this returns). */
void tg_redis_connect(tg_redis_t *r);
tg_redis_state_t tg_redis_state(const tg_redis_t *r);
/* host:port or the socket path, for messages (through Sentinel: the master's name and, once
 * known, its address). */
const char *tg_redis_target(const tg_redis_t *r);

/* fn runs exactly once, later, on the loop: with the reply, or with NULL when the link
 * dropped or timed out before the answer (never from inside the call that sent it, nor from
 * tg_redis_cancel or tg_redis_free). Replies come back in the order commands were sent.
 * Returns NULL (fn never runs) unless the link is TG_REDIS_UP. */
typedef void (*tg_redis_reply_fn)(const struct redisReply *reply, void *ud);
/* `cmd` is one command already in the RESP wire format (an array of bulk strings). */
tg_redis_cmd_t *tg_redis_send(tg_redis_t *r, const char *cmd, size_t len, tg_redis_reply_fn fn, void *ud);
tg_redis_cmd_t *tg_redis_send_argv(tg_redis_t *r, int argc, const char **argv, const size_t *lens,
                                   tg_redis_reply_fn fn, void *ud);
/* fn will not run (the reply, when it comes, is dropped). The handle is invalid after. */
void tg_redis_cancel(tg_redis_cmd_t *c);

/* Closes the link on the next loop turn and reconnects after the wait; safe from inside a
 * reply callback. Replies that arrive meanwhile are still delivered. */
void tg_redis_drop(tg_redis_t *r);
/* The owner's setup went through: the next failure waits the shortest time again. */
void tg_redis_healthy(tg_redis_t *r);

/* Tuning: reconnect wait (default 250 ms doubling to 5000 ms; each wait is drawn between half
 * and all of it, so that workers and instances do not reconnect in step); command timeout
 * after which a silent Redis counts as down (default 2000 ms, also the connect timeout, from
 * the name lookup to the last handshake reply). */
void tg_redis_set_backoff_ms(tg_redis_t *r, int first_ms, int max_ms);
void tg_redis_set_timeout_ms(tg_redis_t *r, int cmd_timeout_ms);
/* Host names are looked up on this DNS server ("127.0.0.1:5353") instead of those of
 * /etc/resolv.conf (/etc/hosts is still read first). Returns -1 on a bad address. */
int tg_redis_set_nameserver(tg_redis_t *r, const char *addr);

/* Closes the link at once; no callback runs, not even on_down. NULL is fine. */
void tg_redis_free(tg_redis_t *r);

#endif
