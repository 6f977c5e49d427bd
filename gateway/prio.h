/* prio.h — the two libevent priorities of a worker's loop. server.c gives
 * each worker's base TG_PRIO_COUNT queues; libevent runs every active event
 * of the urgent queue before any of the bulk one. A base without them (the
 * simulator's, tests') leaves every event at its single priority. */
#ifndef TG_PRIO_H
#define TG_PRIO_H

#define TG_PRIO_URGENT 0 /* accepts, client requests, upstream calls until their first answer bytes */
#define TG_PRIO_BULK 1   /* the rest: relaying open streams, writes to slow clients, timers */
#define TG_PRIO_COUNT 2

#endif
