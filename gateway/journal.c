/* journal.c — the ledger's append-only journal: where a usage record goes when Redis is down
 * or behind, and where it is read back from, in order, once Redis answers.
 * Files: `<prefix>.<worker>` (or `<prefix>.<worker>.<k>` when another process holds that one),
 * each held under an exclusive flock(2) for as long as its journal is open, so no two processes
 * or workers ever append to or replay one file. tg_journal_adopt takes over the files nobody
 * holds (a worker that no longer exists, a process that stopped or crashed): their lines are
 * copied into this journal, synced, and the file removed, all under its lock.
 * Format: one JSON object per line, `{"v":1,...,"ck":"xxxxxxxx"}\n`, where ck is the FNV-1a
 * 32 hash of the bytes before `,"ck"`. A line without its newline, a bad hash or JSON that does
 * not parse (a crash mid-write) is skipped with a warning, never half-read. Each record is
 * written at once (one write(2)); fdatasync is batched by a timer. The journal is replayed in
 * batches before new records and truncated once Redis acked all of it (gateway/ledger.c). */
#include "gateway/journal.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/hash.h"
#include "core/json.h"
#include "core/log.h"

#define LINE_MAX_BYTES (64 * 1024)   /* a longer "line" in the journal is corrupt */
#define CHUNK_RECORDS 512            /* journal records per replay batch */
#define CHUNK_BYTES (256 * 1024)     /* journal bytes read per replay batch */
#define JBUF_HARD (64 * 1024 * 1024) /* drop (loudly) beyond this: the disk is failing */
#define SYNC_MS 200                  /* journal fdatasync period (and retry of a failed write) */
#define MAX_ALT 64                   /* `<prefix>.<worker>.<k>` names tried when others hold ours */

struct tg_journal_s {
    char *path;   /* the file this journal holds (locked) */
    char *prefix; /* `journal:` of the config: every `<prefix>.<digits...>` is a journal */
    int fd, need_sync;
    char *buf, *rbuf;
    size_t buf_len, buf_cap;
    int64_t size;            /* bytes in the file */
    int64_t replay_off;      /* next byte to read */
    int64_t replay_done_off; /* every record before this byte is acknowledged */
    int64_t chunk_end;       /* replay_off once the chunk in flight is acked */
    size_t count;            /* lines not yet acknowledged (file beyond done + buffer) */
    size_t chunk_left, chunk_lines;
    struct event *sync_ev;
    void (*on_flushed)(void *ud);
    void *ud;
    int64_t last_warn_ms;
    uint64_t journaled, dropped;
};

/* --- lines ------------------------------------------------------------------------------------ */

static size_t json_str(char *dst, const char *s, size_t n) {
    size_t o = 0;
    dst[o++] = '"';
    o += tg_json_escape_to(dst + o, TG_JSON_ESCAPE_MAX * n, s, n);
    dst[o++] = '"';
    return o;
}

/* Formats one journal line into dst, which holds at least line_bound(v) bytes. */
static size_t line_bound(const rv_t *v) {
    size_t n = 512;
    for (int i = 0; i < S_N; i++)
        n += 6 * v->len[i] + 16;
    return n + N_N * 48;
}

static size_t line_format(char *dst, const rv_t *v) {
    size_t o = 0;
    memcpy(dst, "{\"v\":1", 6);
    o = 6;
    for (int i = 0; i < S_N; i++) {
        o += (size_t)sprintf(dst + o, ",\"%s\":", ledger_str_names[i]);
        o += json_str(dst + o, v->s[i], v->len[i]);
    }
    for (int i = 0; i < N_N; i++)
        o += (size_t)sprintf(dst + o, ",\"%s\":%" PRId64, ledger_num_names[i], v->n[i]);
    o += (size_t)sprintf(dst + o, ",\"ck\":\"%08x\"}\n", tg_hash_fnv32(TG_HASH_FNV32_SEED, dst, o));
    return o;
}

/* Parses one line (without its newline) into a new entry; NULL if torn or corrupt. */
static ent_t *line_parse(const char *p, size_t n) {
    static const char ck[] = ",\"ck\":\"";
    if (n < 20 || memcmp(p + n - 17, ck, 7) != 0 || memcmp(p + n - 2, "\"}", 2) != 0) return NULL;
    char hex[9];
    memcpy(hex, p + n - 10, 8);
    hex[8] = '\0';
    char *end;
    unsigned long want = strtoul(hex, &end, 16);
    if (*end != '\0' || (uint32_t)want != tg_hash_fnv32(TG_HASH_FNV32_SEED, p, n - 17)) return NULL;
    json_error_t jerr;
    json_t *o = json_loadb(p, n, 0, &jerr);
    if (o == NULL) return NULL;
    rv_t v;
    ent_t *e = NULL;
    if (json_integer_value(json_object_get(o, "v")) != 1) goto out;
    for (int i = 0; i < S_N; i++) {
        json_t *s = json_object_get(o, ledger_str_names[i]);
        if (!json_is_string(s)) goto out;
        v.s[i] = json_string_value(s);
        v.len[i] = json_string_length(s);
    }
    for (int i = 0; i < N_N; i++) {
        json_t *x = json_object_get(o, ledger_num_names[i]);
        if (x == NULL && (i == N_REQS || i == N_SIM || i == N_CACHE_HIT || i == N_SAVED))
            x = json_integer(i == N_REQS); /* journals written before these fields */
        else
            json_incref(x);
        int ok = json_is_integer(x);
        v.n[i] = ok ? json_integer_value(x) : 0;
        json_decref(x);
        if (!ok) goto out;
    }
    e = ledger_ent_new(&v, 1);
out:
    json_decref(o);
    return e;
}

/* --- the file ------------------------------------------------------------------------------- */

static void sync_arm(tg_journal_t *j) {
    if (!evtimer_pending(j->sync_ev, NULL)) {
        struct timeval tv = tg_clock_tv(SYNC_MS);
        evtimer_add(j->sync_ev, &tv);
    }
}

/* Writes the buffer to the file (no fsync: the sync timer does that). The buffer holds more
 * than one line only after a failed write, kept for the sync timer to try again. A failed or short
 * write is cut off again so the file never holds half a line; the buffer is kept. */
static int journal_write(tg_journal_t *j) {
    size_t off = 0;
    while (off < j->buf_len) {
        ssize_t w = write(j->fd, j->buf + off, j->buf_len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (tg_clock_warn_due(&j->last_warn_ms))
                tg_warn("ledger: journal %s: write failed: %s", j->path, strerror(errno));
            if (off > 0 && ftruncate(j->fd, j->size) < 0)
                tg_error("ledger: journal %s: cannot cut a short write: %s", j->path, strerror(errno));
            sync_arm(j);
            return -1;
        }
        off += (size_t)w;
    }
    j->size += (int64_t)j->buf_len;
    j->buf_len = 0;
    j->need_sync = 1;
    sync_arm(j);
    return 0;
}

void tg_journal_append(tg_journal_t *j, const rv_t *v) {
    size_t need = line_bound(v);
    if (j->buf_len + need > j->buf_cap) {
        if (j->buf_len + need > JBUF_HARD) {
            j->dropped++;
            if (tg_clock_warn_due(&j->last_warn_ms))
                tg_error("ledger: journal %s not writable, %" PRIu64 " records dropped", j->path, j->dropped);
            return;
        }
        size_t cap = j->buf_cap ? j->buf_cap : 64 * 1024;
        while (cap < j->buf_len + need)
            cap *= 2;
        char *b = realloc(j->buf, cap);
        if (b == NULL) {
            j->dropped++;
            return;
        }
        j->buf = b;
        j->buf_cap = cap;
    }
    j->buf_len += line_format(j->buf + j->buf_len, v);
    j->count++;
    j->journaled++;
    /* Written at once, so a record survives the process (SIGKILL, a crash): one write(2) per
     * record while Redis is away; only the fdatasync is batched (SYNC_MS), for power loss. */
    journal_write(j);
}

static void on_sync(evutil_socket_t fd, short what, void *arg) {
    tg_journal_t *j = arg;
    if (j->buf_len > 0 && journal_write(j) < 0) return;
    if (j->need_sync) {
        if (fdatasync(j->fd) < 0 && tg_clock_warn_due(&j->last_warn_ms))
            tg_warn("ledger: journal %s: fdatasync: %s", j->path, strerror(errno));
        j->need_sync = 0;
    }
    if (j->on_flushed) j->on_flushed(j->ud);
}

static void journal_truncate(tg_journal_t *j) {
    if (ftruncate(j->fd, 0) < 0) {
        if (tg_clock_warn_due(&j->last_warn_ms))
            tg_warn("ledger: journal %s: truncate: %s", j->path, strerror(errno));
        return;
    }
    if (j->size > 0) tg_info("ledger: journal %s replayed into redis, truncated", j->path);
    j->size = j->replay_off = j->replay_done_off = j->chunk_end = 0;
    j->count = 0;
    j->need_sync = 1;
    sync_arm(j);
}

/* Opens `path`, creating it (and, when missing, its directory: var/ on a fresh checkout, one
 * level only). -1 with errno on failure. */
static int open_create(const char *path) {
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    const char *slash = strrchr(path, '/');
    if (fd < 0 && errno == ENOENT && slash != NULL && slash != path) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        if (mkdir(dir, 0700) == 0 || errno == EEXIST)
            fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    }
    return fd;
}

/* 1 when fd, which we hold locked, is still the file named path: whoever held the lock
 * before us may have adopted and removed it (tg_journal_adopt), and a file nobody can see
 * would take records that no one ever replays. */
static int still_named(int fd, const char *path) {
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Takes this worker's journal file under an exclusive flock: `<prefix>.<worker>`, or when
 * another process (two gateways started on one journal directory) holds it,
 * `<prefix>.<worker>.1`, `.2`... The lock is held until tg_journal_close. */
static int lock_own(tg_journal_t *j, int worker, char *err, size_t errlen) {
    size_t n = strlen(j->prefix) + 48;
    for (int k = 0, tries = 0; k < MAX_ALT && tries < 4 * MAX_ALT; tries++) {
        char *path = malloc(n);
        if (path == NULL) break;
        if (k == 0)
            snprintf(path, n, "%s.%d", j->prefix, worker);
        else
            snprintf(path, n, "%s.%d.%d", j->prefix, worker, k);
        int fd = open_create(path);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open journal %s: %s", path, strerror(errno));
            free(path);
            return -1;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int busy = errno == EWOULDBLOCK;
            if (!busy) snprintf(err, errlen, "cannot lock journal %s: %s", path, strerror(errno));
            close(fd);
            free(path);
            if (!busy) return -1;
            k++; /* someone else's: try the next name */
            continue;
        }
        if (!still_named(fd, path)) {
            close(fd); /* adopted and removed meanwhile: open the name again */
            free(path);
            continue;
        }
        if (k > 0)
            tg_info("ledger: journal %s.%d is in use by another process; using %s", j->prefix, worker, path);
        j->fd = fd;
        j->path = path;
        return 0;
    }
    snprintf(err, errlen, "no free journal file for %s.%d (%d names in use)", j->prefix, worker, MAX_ALT);
    return -1;
}

/* Opens the journal; an existing one (a crash, or Redis down at the last stop) is kept for
 * replay. A last line without its newline is closed off so that new lines start clean. */
static int open_file(tg_journal_t *j, int worker, char *err, size_t errlen) {
    if (lock_own(j, worker, err, errlen) < 0) return -1;
    struct stat st;
    if (fstat(j->fd, &st) < 0) {
        snprintf(err, errlen, "cannot open journal %s: %s", j->path, strerror(errno));
        return -1;
    }
    j->size = st.st_size;
    char buf[65536];
    char last = '\n';
    for (int64_t off = 0; off < j->size;) {
        ssize_t n = pread(j->fd, buf, sizeof(buf), off);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++)
            j->count += buf[i] == '\n';
        last = buf[n - 1];
        off += n;
    }
    if (last != '\n') {
        tg_warn("ledger: journal %s ends in a torn line (crash mid-write); it will be skipped", j->path);
        if (write(j->fd, "\n", 1) != 1) {
            snprintf(err, errlen, "cannot repair journal %s: %s", j->path, strerror(errno));
            return -1;
        }
        j->size++;
        j->count++;
    }
    if (j->count > 0)
        tg_info("ledger: journal %s holds %zu lines from an earlier run; replaying when redis answers",
                j->path, j->count);
    return 0;
}

/* --- replay ----------------------------------------------------------------------------------- */

static void chunk_done(tg_journal_t *j) {
    j->replay_done_off = j->chunk_end;
    j->count -= j->chunk_lines < j->count ? j->chunk_lines : j->count;
    j->chunk_lines = 0;
}

/* Reads the next batch of journal lines and sends them. Returns -1 on a read error. */
static int replay_chunk(tg_journal_t *j, int (*take)(void *ud, ent_t *e), void *ud) {
    if (j->rbuf == NULL && (j->rbuf = malloc(CHUNK_BYTES)) == NULL) return -1;
    ssize_t n = pread(j->fd, j->rbuf, CHUNK_BYTES, j->replay_off);
    if (n < 0) {
        if (tg_clock_warn_due(&j->last_warn_ms))
            tg_warn("ledger: journal %s: read: %s", j->path, strerror(errno));
        return -1;
    }
    size_t pos = 0, lines = 0, sent = 0;
    while (pos < (size_t)n && sent < CHUNK_RECORDS) {
        char *p = j->rbuf + pos, *nl = memchr(p, '\n', (size_t)n - pos);
        if (nl == NULL) break;
        size_t len = (size_t)(nl - p);
        lines++;
        ent_t *e = len > 0 && len < LINE_MAX_BYTES ? line_parse(p, len) : NULL;
        if (e != NULL && take(ud, e) == 0) {
            sent++;
        } else if (len > 0) {
            free(e);
            tg_warn("ledger: journal %s: skipping a torn or corrupt line at byte %" PRId64, j->path,
                    j->replay_off + (int64_t)pos);
        }
        pos += len + 1;
    }
    if (pos == 0) {
        /* No newline at all: bytes past the last line (a write cut short) or an absurdly long
         * line. Either way they are not a record: skip them. */
        tg_warn("ledger: journal %s: skipping %zd bytes without a newline at byte %" PRId64, j->path, n,
                j->replay_off);
        pos = n > 0 ? (size_t)n : 0;
        if (n == 0) j->size = j->replay_off; /* the file is shorter than we wrote: start anew */
    }
    j->replay_off += (int64_t)pos;
    j->chunk_end = j->replay_off;
    j->chunk_lines = lines;
    j->chunk_left = sent;
    if (sent == 0) chunk_done(j);
    return 0;
}

/* Journal records go out one batch at a time, each batch after the previous one was fully
 * acknowledged; at the end of the file (new records are appended meanwhile) it is cut to 0. */
void tg_journal_replay(tg_journal_t *j, int (*take)(void *ud, ent_t *e), void *ud) {
    while (j->chunk_left == 0 && (j->size > 0 || j->buf_len > 0)) {
        if (j->replay_off >= j->size) {
            if (j->buf_len > 0 && journal_write(j) < 0) return; /* on_sync tries again */
            if (j->replay_off >= j->size) {
                journal_truncate(j);
                return;
            }
        }
        if (replay_chunk(j, take, ud) < 0) return;
    }
}

int tg_journal_acked(tg_journal_t *j) {
    if (--j->chunk_left != 0) return 0;
    chunk_done(j);
    return 1;
}

void tg_journal_rewind(tg_journal_t *j) {
    j->chunk_left = j->chunk_lines = 0;
    j->replay_off = j->chunk_end = j->replay_done_off;
}

/* --- other journals ---------------------------------------------------------------------------- */

/* 1 when directory entry `name` is a journal of the prefix whose last component is `base`:
 * `base.` then digits and dots, a digit first (`journal.3`, `journal.0.1`). */
static int is_journal_name(const char *name, const char *base, size_t blen) {
    if (strncmp(name, base, blen) != 0 || name[blen] != '.') return 0;
    const char *p = name + blen + 1;
    if (*p < '0' || *p > '9') return 0;
    for (; *p; p++)
        if ((*p < '0' || *p > '9') && *p != '.') return 0;
    return 1;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Copies the whole file fd to the end of this journal and syncs ours, so the copy is on disk
 * before the original goes. A last line without its newline gets one (it is skipped at replay,
 * and new lines must not be glued to it). Returns the lines copied, or -1 with nothing of it
 * left in ours. */
static int64_t copy_in(tg_journal_t *j, int fd, const char *from) {
    char buf[65536], last = '\n';
    int64_t off = 0, lines = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof(buf), off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || (n > 0 && write_all(j->fd, buf, (size_t)n) < 0)) goto fail;
        if (n == 0) break;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
        last = buf[n - 1];
        off += n;
    }
    if (last != '\n') {
        if (write_all(j->fd, "\n", 1) < 0) goto fail;
        off++;
        lines++;
    }
    if (fdatasync(j->fd) < 0) goto fail;
    j->size += off;
    return lines;
fail:
    tg_warn("ledger: cannot copy journal %s into %s (%s); it stays for a later try", from, j->path,
            strerror(errno));
    if (ftruncate(j->fd, j->size) < 0)
        tg_error("ledger: journal %s: cannot cut a partial copy: %s", j->path, strerror(errno));
    return -1;
}

size_t tg_journal_adopt(tg_journal_t *j) {
    if (j == NULL || (j->buf_len > 0 && journal_write(j) < 0)) return 0;
    const char *slash = strrchr(j->prefix, '/');
    char dir[4096];
    const char *base = slash ? slash + 1 : j->prefix;
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == j->prefix)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - j->prefix), j->prefix);
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    size_t blen = strlen(base), total = 0;
    struct stat own;
    if (fstat(j->fd, &own) < 0) own.st_ino = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (!is_journal_name(de->d_name, base, blen)) continue;
        char path[4096 + 256];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st;
        /* Held by a worker of this or another process (ours included: a second flock on a
         * file we hold fails), or removed since the directory was read: not ours to take. */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 || !still_named(fd, path) || fstat(fd, &st) < 0 ||
            (st.st_ino == own.st_ino && st.st_dev == own.st_dev)) {
            close(fd);
            continue;
        }
        int64_t lines = st.st_size > 0 ? copy_in(j, fd, path) : 0;
        if (lines < 0) {
            close(fd);
            break;
        }
        /* Removed while locked: anyone who opened it meanwhile sees, once the lock is theirs,
         * that the name is gone (still_named) and leaves it. If it cannot be removed it is
         * emptied; a record copied twice would still be counted once (tg:done). */
        if (unlink(path) != 0 && ftruncate(fd, 0) != 0)
            tg_warn("ledger: journal %s copied into %s but neither removed nor emptied: %s", path, j->path,
                    strerror(errno));
        close(fd);
        if (lines > 0) {
            tg_info("ledger: journal %s (%" PRId64
                    " lines, left by a worker or process that is gone) taken over "
                    "by %s",
                    path, lines, j->path);
            j->count += (size_t)lines;
            total += (size_t)lines;
        }
    }
    closedir(d);
    return total;
}

const char *tg_journal_path(const tg_journal_t *j) {
    return j->path;
}

/* --- life ------------------------------------------------------------------------------------- */

size_t tg_journal_backlog(const tg_journal_t *j) {
    return j->count;
}

uint64_t tg_journal_appended(const tg_journal_t *j) {
    return j->journaled;
}

tg_journal_t *tg_journal_open(struct event_base *base, const char *prefix, int worker,
                              void (*on_flushed)(void *ud), void *ud, char *err, size_t errlen) {
    tg_journal_t *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->prefix = strdup(prefix)) == NULL) {
        free(j);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    j->fd = -1;
    j->on_flushed = on_flushed;
    j->ud = ud;
    if ((j->sync_ev = evtimer_new(base, on_sync, j)) == NULL) {
        snprintf(err, errlen, "cannot create timers");
        tg_journal_close(j);
        return NULL;
    }
    if (open_file(j, worker, err, errlen) < 0) {
        tg_journal_close(j);
        return NULL;
    }
    return j;
}

void tg_journal_close(tg_journal_t *j) {
    if (j == NULL) return;
    if (j->fd >= 0) {
        if (j->buf_len > 0) journal_write(j);
        if (j->buf_len > 0) tg_error("ledger: %zu journal bytes could not be written", j->buf_len);
        fdatasync(j->fd);
        close(j->fd);
    }
    if (j->sync_ev) event_free(j->sync_ev);
    free(j->buf);
    free(j->rbuf);
    free(j->path);
    free(j->prefix);
    free(j);
}
