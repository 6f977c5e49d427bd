/* log.h — levelled diagnostics and the one-JSON-line-per-request access log. */
#ifndef TG_LOG_H
#define TG_LOG_H

#include <stddef.h>

typedef enum { TG_LOG_DEBUG, TG_LOG_INFO, TG_LOG_WARN, TG_LOG_ERROR } tg_log_level_t;

void tg_log_set_level(tg_log_level_t lvl);
int tg_log_parse_level(const char *s, tg_log_level_t *out);
/* Diagnostic line to stderr: `{"ts":..,"level":..,"msg":..}`. Off the hot path
 * only (start-up, reload, upstream trouble). Never pass secrets. */
void tg_log(tg_log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One complete JSON object (no newline) for the access log. Lines are
 * buffered per thread and flushed by tg_log_flush() from a timer or when the
 * buffer fills, so a request costs no syscall of its own. */
void tg_log_access(const char *json, size_t len);
void tg_log_flush(void);

#define tg_debug(...) tg_log(TG_LOG_DEBUG, __VA_ARGS__)
#define tg_info(...) tg_log(TG_LOG_INFO, __VA_ARGS__)
#define tg_warn(...) tg_log(TG_LOG_WARN, __VA_ARGS__)
#define tg_error(...) tg_log(TG_LOG_ERROR, __VA_ARGS__)

#endif
