/* report.h — spend reports from the ledger's day hashes (tg:usage:{YYYY-MM-DD}, gateway/keys.h):
 * grouped by provider, model, key or day over a range of UTC days, with a totals row, as a
 * table, CSV or JSON. Simulated usage (demo mode, tg:usage-sim:{YYYY-MM-DD}) is kept in rows
 * of its own with a total of its own, shown apart and never added to the real total.
 * `tollgate report` (a CLI, on a private loop) and /admin/spend and /dashboard (async, on a
 * worker loop, gateway/admin.c) fill the same tg_report_t; on a Redis Cluster both read through
 * tg_report_read_cluster. */
#ifndef TG_REPORT_H
#define TG_REPORT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { TG_BY_NONE = -1, TG_BY_PROVIDER, TG_BY_MODEL, TG_BY_KEY, TG_BY_DAY } tg_report_by_t;

typedef struct {
    int64_t requests, input, cached, output, reasoning, cost_micro;
    int64_t cache_hits, saved_micro; /* answered from the response cache, and what they would have cost */
} tg_report_sums_t;

typedef struct {
    char *name;  /* provider, "provider/model", key name (may be ""), or YYYY-MM-DD */
    char *name2; /* the second grouping's value (the dashboard's day), NULL without one */
    tg_report_sums_t s;
    int simulated; /* from the simulated day hash: made-up answers, not real spend */
} tg_report_row_t;

typedef struct {
    int64_t from_day, to_day; /* days since 1970-01-01, inclusive */
    tg_report_by_t by, by2;
    tg_report_row_t *rows; /* sorted by tg_report_finish: real rows, then the n_sim simulated ones */
    size_t n, cap;
    size_t *slots; /* hash index into rows (+1; 0 = empty) */
    size_t nslots;
    tg_report_sums_t total;     /* real spend only */
    size_t bad_fields;          /* fields that were not provider|model|key|metric or not integers */
    tg_report_sums_t sim_total; /* simulated usage, never part of total */
    size_t n_sim;               /* simulated rows (the last n_sim of rows after tg_report_finish) */
} tg_report_t;

/* The longest range a report reads (one HGETALL per day). */
#define TG_REPORT_MAX_DAYS 1100

/* YYYY-MM-DD (a real calendar date) to days since the epoch. 0 or -1. */
int tg_report_parse_day(const char *s, size_t len, int64_t *day);
/* Days since the epoch to YYYY-MM-DD. */
void tg_report_day_text(int64_t day, char out[11]);
/* "provider" | "model" | "key" | "day" -> enum; -1 when unknown. */
int tg_report_parse_by(const char *s, size_t len);

/* Range and grouping from the user's text (NULL or "" = default: from the 1st of the month
 * of now_ms to that day, by provider). 0, or -1 with a message in err. */
int tg_report_init(tg_report_t *r, const char *from, size_t from_len, const char *to, size_t to_len,
                   const char *by, size_t by_len, int64_t now_ms, char *err, size_t errlen);
/* Adds one field of day `day`'s hash ("provider|model|key|metric" -> integer text). */
void tg_report_add(tg_report_t *r, int64_t day, const char *field, size_t flen, const char *val, size_t vlen);
/* The same for a field of the day's simulated hash: into simulated rows and sim_total. */
void tg_report_add_simulated(tg_report_t *r, int64_t day, const char *field, size_t flen, const char *val,
                             size_t vlen);
/* Sorts rows, real ones first: by day or name ascending; provider/model/key by cost, highest
 * first. */
void tg_report_finish(tg_report_t *r);
void tg_report_free(tg_report_t *r);

/* Renderings (malloc'd, NUL-terminated; NULL when out of memory). JSON, the same for
 * `tollgate report --format json` and GET /admin/spend:
 * {"from","to","by","rows":[{"<by>":…,"requests",…,"cost_usd","cache_hits","saved_usd"}],"total":{…}},
 * where rows and
 * total are real spend (cache_hits: requests answered from the response cache, counted in
 * requests too; saved_usd: what they would have cost); when the range holds simulated usage, also
 * "simulated":{"rows":[…],"total":{…}} in the same shape. CSV: the same columns in that order;
 * simulated rows follow the TOTAL line, named "simulated:<name>", then a SIMULATED_TOTAL line.
 * The table: a section of its own under the real TOTAL. */
char *tg_report_json(const tg_report_t *r);
char *tg_report_csv(const tg_report_t *r);
char *tg_report_table(const tg_report_t *r);

/* --- reading a range on a Redis Cluster ----------------------------------------------------------
 * There the ledger splits a day's usage by gateway key (gateway/keys.h, "On a Redis Cluster"), so
 * a reader asks, per day, for the day's index (SMEMBERS TG_KEY_USAGE_INDEX) and the day's untagged
 * hashes (books written before the move to the cluster) all at once, then, as each index arrives,
 * for the real and simulated hashes of each of its members. Every command's key is its argv[1],
 * which routes it to its slot's master. `tollgate report` sends on a cluster client of its own,
 * /admin/spend and /dashboard on the worker's ledger (gateway/admin.c): the link says how. */
struct redisReply;
typedef void (*tg_report_reply_fn)(const struct redisReply *reply, void *ud);
typedef struct {
    /* Sends argv, routed by argv[1]; the handle, or NULL when it cannot go. fn runs exactly once,
     * later, on the loop (never from inside send), with NULL when no node answered. */
    void *(*send)(void *link, int argc, const char **argv, const size_t *lens, tg_report_reply_fn fn,
                  void *ud);
    void (*cancel)(void *handle); /* fn will not run */
    void *link;
} tg_report_link_t;
/* why is NULL once every reply is in r, else the reason the read failed (a node that did not
 * answer, a refusal), in words for a message. */
typedef void (*tg_report_done_fn)(void *ud, const char *why);
typedef struct tg_report_read_s tg_report_read_t;

/* Starts reading r's range into r; link is copied. done runs exactly once, later, on the loop;
 * at a failure, what was still in flight is cancelled first. The read frees itself before done
 * runs. Returns NULL (done never runs, nothing is in flight) when the first commands cannot be
 * sent. A key of another type counts in r->bad_fields. */
tg_report_read_t *tg_report_read_cluster(tg_report_t *r, const tg_report_link_t *link, tg_report_done_fn done,
                                         void *ud);
/* Before done ran: cancels what is in flight and frees the read; done will not run. NULL is
 * fine. */
void tg_report_read_cancel(tg_report_read_t *rd);

/* `tollgate report [-c FILE] [--redis URL] [--from DATE] [--to DATE] [--by provider|model|key|day]
 * [--format table|csv|json]`; argv[0] is the command name. Returns the exit code: 0 ok,
 * 1 bad config, 2 usage error, 3 cannot reach Redis. */
int tg_report_main(int argc, char **argv, const char *default_config);

#endif
