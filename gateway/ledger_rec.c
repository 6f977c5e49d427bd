/* ledger_rec.c — a usage record as the ledger keeps it: the names of its fields and the one
 * allocation that owns a record's strings (ent_t), made from a view (rv_t) when a record is
 * queued in memory or read back from the journal. */
#include "gateway/ledger_rec.h"

#include <stdlib.h>
#include <string.h>

const char *const ledger_str_names[S_N] = {"id", "key", "route", "provider", "model"};
const char *const ledger_num_names[N_N] = {"ts",
                                           "status",
                                           "attempts",
                                           "input_tokens",
                                           "cached_input_tokens",
                                           "cache_write_tokens",
                                           "output_tokens",
                                           "reasoning_tokens",
                                           "cost_micro_usd",
                                           "latency_ms",
                                           "ttft_ms",
                                           "estimated",
                                           "requests",
                                           "simulated",
                                           "cache_hit",
                                           "saved_micro_usd"};

/* One allocation per record: the entry and its strings. */
ent_t *ledger_ent_new(const rv_t *v, int from_journal) {
    size_t total = 0;
    for (int i = 0; i < S_N; i++)
        total += v->len[i] + 1;
    ent_t *e = malloc(sizeof(*e) + total);
    if (e == NULL) return NULL;
    char *p = e->data;
    for (int i = 0; i < S_N; i++) {
        memcpy(p, v->s[i], v->len[i]);
        p[v->len[i]] = '\0';
        e->r.s[i] = p;
        e->r.len[i] = v->len[i];
        p += v->len[i] + 1;
    }
    memcpy(e->r.n, v->n, sizeof(v->n));
    e->from_journal = from_journal;
    return e;
}
