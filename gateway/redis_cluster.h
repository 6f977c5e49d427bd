/* redis_cluster.h — a Redis Cluster on a worker's event loop, on top of our own links
 * (gateway/redis.h): the slot map from CLUSTER SLOTS, one link per master, each command sent to
 * the master of its key's slot, MOVED (the map is updated and the command sent again) and ASK
 * (ASKING, then the command, on the node named) followed, and the map asked for again after a
 * MOVED, a lost link or CLUSTERDOWN. Also the slot of a key (CRC16 with hash tags), which the
 * key names of gateway/keys.h are designed around. Used only from the loop it was made on. */
#ifndef TG_REDIS_CLUSTER_H
#define TG_REDIS_CLUSTER_H

#include <stddef.h>

#include "gateway/redis.h"

#define TG_REDIS_SLOTS 16384

typedef struct tg_rcluster_s tg_rcluster_t;
typedef struct tg_rcluster_cmd_s tg_rcluster_cmd_t;

/* The cluster slot (0..16383) of a key: CRC16 (XMODEM) of the key, or of the part between the
 * first '{' and the next '}' when that part is not empty (a hash tag), modulo 16384. Keys that
 * share a tag share a slot, so one script may touch them all. */
unsigned tg_redis_slot(const char *key, size_t len);

/* MOVED or ASK in an error reply "MOVED 3999 127.0.0.1:6381": 1 (moved) or 2 (ask) with the
 * slot, host and port filled; 0 for any other text. */
int tg_redis_redirect_parse(const char *err, size_t len, unsigned *slot, char *host, size_t hostlen,
                            int *port);

/* url: redis[s]+cluster://[[user]:password@]host[:port][,host[:port]...] (the seed nodes; no
 * db: a cluster has only db 0). Nothing is sent until tg_rcluster_connect. Returns NULL and
 * fills err on a bad URL. */
tg_rcluster_t *tg_rcluster_new(struct event_base *base, const char *url, const char *who, char *err,
                               size_t errlen);
/* Connects to the seeds in turn until one answers CLUSTER SLOTS, then to every master. */
void tg_rcluster_connect(tg_rcluster_t *c);
/* 1 once a slot map is known and the master of every slot is connected. */
int tg_rcluster_ready(const tg_rcluster_t *c);
/* The node that the map says is the master of `slot` (an index that stays that node's for the
 * life of c), -1 when none; and whether its link is up (a command for it would go at once). */
int tg_rcluster_node_of(const tg_rcluster_t *c, unsigned slot);
int tg_rcluster_slot_up(const tg_rcluster_t *c, unsigned slot);
/* The replicas the map lists for the master of `slot` (0 when none, or the slot has no master). */
int tg_rcluster_replicas(const tg_rcluster_t *c, unsigned slot);
/* Asks for the slot map again soon (a caller that suspects it is stale). */
void tg_rcluster_refresh(tg_rcluster_t *c);
/* The masters of the current map (for reads that visit every master: SCAN). */
int tg_rcluster_masters(const tg_rcluster_t *c);
/* Sends argv to the master of the slot of argv[key_arg] (key_arg < 0: to master number
 * -key_arg - 1, for commands with no key), following MOVED and ASK up to 5 times. fn runs
 * exactly once, later, on the loop, with the final reply, or NULL when no node could be reached
 * in time; never from inside this call or tg_rcluster_cancel. Returns NULL (fn never runs) when
 * the map is not known yet or the command cannot be encoded. */
tg_rcluster_cmd_t *tg_rcluster_send_argv(tg_rcluster_t *c, int argc, const char **argv, const size_t *lens,
                                         int key_arg, tg_redis_reply_fn fn, void *ud);
/* The same for a command already in the RESP wire format (an array of bulk strings, as
 * tg_redis_send takes), sent to the master of `slot` (tg_redis_slot of its key): for callers
 * that format their own commands (gateway/ledger.c). The bytes are copied. Replies of commands
 * for different masters come back in any order; each comes to its own fn. */
tg_rcluster_cmd_t *tg_rcluster_send(tg_rcluster_t *c, const char *buf, size_t len, unsigned slot,
                                    tg_redis_reply_fn fn, void *ud);
/* fn will not run. The handle is invalid after. */
void tg_rcluster_cancel(tg_rcluster_cmd_t *cmd);
/* Closes every link at once; no callback runs. NULL is fine. */
void tg_rcluster_free(tg_rcluster_t *c);

#endif
