/* log.c — diagnostics go to stderr as JSON lines, unbuffered (they are
 * rare); access-log lines go to stdout through a per-thread buffer that the
 * worker flushes on a timer, so the request path makes no write(2) call. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"

static tg_log_level_t min_level = TG_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

void tg_log_set_level(tg_log_level_t lvl) {
    min_level = lvl;
}

int tg_log_parse_level(const char *s, tg_log_level_t *out) {
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) {
            *out = (tg_log_level_t)i;
            return 0;
        }
    return -1;
}

void tg_log(tg_log_level_t lvl, const char *fmt, ...) {
    if (lvl < min_level) return;
    char msg[2048], esc[4200], line[4400], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    esc[tg_json_escape_to(esc, sizeof(esc) - 1, msg, strlen(msg))] = '\0'; /* cut rather than overflow */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(line, sizeof(line), "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts,
                     now.tv_nsec / 1000000, level_names[lvl], esc);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        (void)w;
    }
}

static _Thread_local char acc_buf[64 * 1024];
static _Thread_local size_t acc_len;

void tg_log_flush(void) {
    size_t off = 0;
    while (off < acc_len) {
        ssize_t w = write(STDOUT_FILENO, acc_buf + off, acc_len - off);
        if (w <= 0) break; /* a closed stdout must not wedge the worker */
        off += (size_t)w;
    }
    acc_len = 0;
}

void tg_log_access(const char *json, size_t len) {
    if (len + 1 > sizeof(acc_buf) - acc_len) tg_log_flush();
    if (len + 1 > sizeof(acc_buf)) return;
    memcpy(acc_buf + acc_len, json, len);
    acc_len += len;
    acc_buf[acc_len++] = '\n';
}
