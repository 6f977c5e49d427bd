/* journal.h — the ledger's append-only journal file: records Redis has not acknowledged are
 * written here (one checksummed JSON line each) and replayed, in order, once Redis answers.
 * One journal per worker, used only from that worker's loop, by gateway/ledger.c. Each holds
 * its file under an exclusive flock(2) while open; files nobody holds (workers or processes
 * that are gone) are taken over with tg_journal_adopt. */
#ifndef TG_JOURNAL_H
#define TG_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/ledger_rec.h"

struct event_base;
typedef struct tg_journal_s tg_journal_t;

/* Opens (or creates) and locks worker `worker`'s file `<prefix>.<worker>`, or, when another
 * process holds that one, the first free `<prefix>.<worker>.<k>` (k = 1..63); lines left by an
 * earlier run are kept for replay. on_flushed(ud) runs after the sync timer wrote and synced
 * the file: a write that failed earlier may have gone through, so a replay that stopped may go
 * on. NULL + err on failure. */
tg_journal_t *tg_journal_open(struct event_base *base, const char *prefix, int worker,
                              void (*on_flushed)(void *ud), void *ud, char *err, size_t errlen);
/* Takes over every other journal file of the same prefix (`<prefix>.<digits and dots>`) that no
 * one holds locked: copies its lines to the end of this one, syncs, removes it. Blocking file
 * I/O on the caller's loop (the ledger calls it when Redis answers). Returns the lines taken. */
size_t tg_journal_adopt(tg_journal_t *j);
/* The file this journal holds. */
const char *tg_journal_path(const tg_journal_t *j);
/* Appends one record (written at once; fdatasync is batched). */
void tg_journal_append(tg_journal_t *j, const rv_t *v);
/* Lines not yet acknowledged (in the file beyond the acknowledged part, and in the buffer). */
size_t tg_journal_backlog(const tg_journal_t *j);
/* Records appended since open. */
uint64_t tg_journal_appended(const tg_journal_t *j);

/* Replay: reads the next batch of lines and hands each record to take(ud, e), which owns e
 * when it returns 0 (else e is freed and the line reported). A batch starts only when the
 * previous one was fully acknowledged; at the end of the file the file is cut to 0. */
void tg_journal_replay(tg_journal_t *j, int (*take)(void *ud, ent_t *e), void *ud);
/* One record of the batch in flight was acknowledged; returns 1 when that ended the batch
 * (the caller may replay on). */
int tg_journal_acked(tg_journal_t *j);
/* The link dropped: the batch in flight is read again next time. */
void tg_journal_rewind(tg_journal_t *j);

/* Writes what is buffered, syncs and closes. NULL is fine. */
void tg_journal_close(tg_journal_t *j);

#endif
