/* ledger_rec.h — a usage record as the ledger keeps it, shared by ledger.c (Redis) and
 * journal.c (the file): a view of borrowed strings (rv_t) or one allocation that owns them
 * (ent_t), and the names of its fields, which are both the journal's JSON keys and the event
 * stream's fields. Private to the ledger: other modules include gateway/ledger.h. */
#ifndef TG_LEDGER_REC_H
#define TG_LEDGER_REC_H

#include <stddef.h>
#include <stdint.h>

#define MAX_STR 512 /* longest string field kept; keeps journal lines small */

enum { S_ID, S_KEY, S_ROUTE, S_PROVIDER, S_MODEL, S_N };
enum {
    N_TS,
    N_STATUS,
    N_ATTEMPTS,
    N_IN,
    N_CACHED,
    N_CWRITE,
    N_OUT,
    N_REASON,
    N_COST,
    N_LAT,
    N_TTFT,
    N_EST,
    N_REQS,
    N_SIM,       /* 1: the simulator answered (demo mode); its usage is kept apart from real spend */
    N_CACHE_HIT, /* 1: answered from the response cache */
    N_SAVED,     /* a cache hit: micro-USD the provider call would have cost */
    N_N
};
extern const char *const ledger_str_names[S_N];
extern const char *const ledger_num_names[N_N];

/* A record as the ledger keeps it: borrowed strings (a view) or, inside ent_t, owned. */
typedef struct {
    const char *s[S_N];
    size_t len[S_N];
    int64_t n[N_N];
} rv_t;

typedef struct {
    rv_t r;
    int from_journal; /* still in the journal file: nothing to spill if the link drops */
    char data[];
} ent_t;

/* One allocation per record: the entry and its strings (malloc'd; free() it). */
ent_t *ledger_ent_new(const rv_t *v, int from_journal);

#endif
