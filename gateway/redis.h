/* redis.h — our connection to Redis: one asynchronous link on a worker's event loop that
 * reconnects by itself, and the redis URL parser. The owner learns when the link is up and
 * when it went down, sends commands and hears each reply through a callback. Used only from
 * the loop it was made on. */
#ifndef TG_REDIS_H
#define TG_REDIS_H

#include <stddef.h>

struct event_base;
struct redisReply;
typedef struct tg_redis_s tg_redis_t;
typedef struct tg_redis_cmd_s tg_redis_cmd_t;

/* A parsed redis URL: redis://[[user]:password@]host[:port][/db] or unix:///path. The host is
 * resolved to an address, once, blocking (start-up and CLI only). */
typedef struct {
    char host[64], target[300]; /* target: host:port or path, for messages */
    int port, db;
    char *unix_path, *user, *password; /* malloc'd or NULL */
} tg_redis_url_t;
int tg_redis_url_parse(const char *url, tg_redis_url_t *u, char *err, size_t errlen);
void tg_redis_url_free(tg_redis_url_t *u);

typedef enum {
    TG_REDIS_DOWN,       /* no link; a reconnect is scheduled */
    TG_REDIS_CONNECTING, /* connecting */
    TG_REDIS_UP,         /* connected, AUTH and SELECT sent: commands may be sent */
    TG_REDIS_CLOSING     /* tg_redis_drop was called: the link closes on the next loop turn */
} tg_redis_state_t;

typedef struct {
    /* The link is up (AUTH and SELECT went out first): send what the owner needs first. */
    void (*on_up)(void *ud);
    /* The link is gone or never came; commands in flight get a NULL reply. `loud` is 1 when
     * the news is worth a log line: the link was up, or this is the first failure since it
     * last was healthy (tg_redis_healthy). A reconnect is scheduled with a doubling wait. */
    void (*on_down)(void *ud, const char *why, int loud);
    void *ud;
} tg_redis_events_t;

/* Parses `url` and prepares the link; nothing is sent until tg_redis_connect. `who` prefixes
 * log lines ("ledger"). Returns NULL and fills err on a bad URL or an unresolvable host. */
tg_redis_t *tg_redis_new(struct event_base *base, const char *url, const char *who,
                         const tg_redis_events_t *ev, char *err, size_t errlen);
/* Starts connecting (a failure now comes back through on_down, before this returns). */
void tg_redis_connect(tg_redis_t *r);
tg_redis_state_t tg_redis_state(const tg_redis_t *r);
/* host:port or the socket path, for messages. */
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

/* Tuning: reconnect wait (default 250 ms doubling to 5000 ms); command timeout after which a
 * silent Redis counts as down (default 2000 ms, also the connect timeout). */
void tg_redis_set_backoff_ms(tg_redis_t *r, int first_ms, int max_ms);
void tg_redis_set_timeout_ms(tg_redis_t *r, int cmd_timeout_ms);

/* Closes the link at once; no callback runs, not even on_down. NULL is fine. */
void tg_redis_free(tg_redis_t *r);

#endif
