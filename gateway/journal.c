/* journal.c — the ledger's append-only journal: where a usage record goes when Redis is down
 * or behind, and where it is read back from, in order, once Redis answers.
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

struct tg_journal_s {
    char *path;
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
    j->on_flushed(j->ud);
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

/* Opens the journal; an existing one (a crash, or Redis down at the last stop) is kept for
 * replay. A last line without its newline is closed off so that new lines start clean. A
 * missing directory (var/ on a fresh checkout) is made, one level only. */
static int open_file(tg_journal_t *j, char *err, size_t errlen) {
    j->fd = open(j->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    const char *slash = strrchr(j->path, '/');
    if (j->fd < 0 && errno == ENOENT && slash != NULL && slash != j->path) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - j->path), j->path);
        if (mkdir(dir, 0700) == 0 || errno == EEXIST)
            j->fd = open(j->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    }
    struct stat st;
    if (j->fd < 0 || fstat(j->fd, &st) < 0) {
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

/* --- life ------------------------------------------------------------------------------------- */

size_t tg_journal_backlog(const tg_journal_t *j) {
    return j->count;
}

uint64_t tg_journal_appended(const tg_journal_t *j) {
    return j->journaled;
}

tg_journal_t *tg_journal_open(struct event_base *base, const char *path, void (*on_flushed)(void *ud),
                              void *ud, char *err, size_t errlen) {
    tg_journal_t *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->path = strdup(path)) == NULL) {
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
    if (open_file(j, err, errlen) < 0) {
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
    free(j);
}
