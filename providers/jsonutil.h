/* jsonutil.h — the few jansson helpers every translator in providers/ uses
 * (translate*.c, responses*.c): a member's string value, an error text, and
 * serialising an event into a reused buffer that grows only for a large
 * event. Inline, so each translator stays one object with no shared state. */
#ifndef TG_JSONUTIL_H
#define TG_JSONUTIL_H

#include <stdarg.h>
#include <stdio.h>

#include <jansson.h>

#include "core/pool.h"

/* The string value of member key of o; NULL when absent or not a string. */
static inline const char *tg_json_str(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

static inline void tg_json_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void tg_json_seterr(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The text of a provider's error object e ({"type","message"}, or a bare string as message):
 * "type: message", either one alone, or "error" when it has neither (an empty string counts as
 * none), so that the text is never empty. */
static inline void tg_json_error_text(const json_t *e, char *err, size_t errlen) {
    const char *type = tg_json_str(e, "type"), *msg = tg_json_str(e, "message");
    if (msg == NULL) msg = json_string_value(e);
    if (type && !*type) type = NULL;
    if (msg && !*msg) msg = NULL;
    if (type == NULL && msg == NULL) type = "error";
    snprintf(err, errlen, "%s%s%s", type ? type : "", type && msg ? ": " : "", msg ? msg : "");
}

/* Serialises o (compact) into *buf (*cap bytes, from pool); a larger event gets a
 * buffer twice as large as needed so far, from the same pool. Returns the length,
 * 0 when o could not be serialised. o is not released. */
static inline size_t tg_json_dump_into(tg_pool_t *pool, const json_t *o, char **buf, size_t *cap) {
    size_t n = json_dumpb(o, *buf, *cap, JSON_COMPACT);
    if (n > *cap) {
        while (*cap < n)
            *cap *= 2;
        *buf = tg_pool_alloc(pool, *cap);
        n = *buf ? json_dumpb(o, *buf, *cap, JSON_COMPACT) : 0;
    }
    return n;
}

#endif
