/* clock.h — the two clocks the gateway reads: monotonic time for timeouts,
 * rates and durations (never jumps), wall time for timestamps that leave the
 * process (ledger records, UTC price windows, logs); and the conversion of a
 * millisecond delay into libevent's timeval. Inline: a clock read is on the
 * hot path and costs one vDSO call. */
#ifndef TG_CLOCK_H
#define TG_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

static inline int64_t tg_clock_mono_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static inline int64_t tg_clock_mono_ms(void) {
    return tg_clock_mono_us() / 1000;
}

static inline int64_t tg_clock_wall_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static inline struct timeval tg_clock_tv(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* 1 when a warning that may repeat (per record, per command) is due: at most
 * one every 10 s per *last_ms, which the caller keeps (0 at first). */
static inline int tg_clock_warn_due(int64_t *last_ms) {
    int64_t now = tg_clock_mono_ms();
    if (*last_ms && now - *last_ms < 10000) return 0;
    *last_ms = now;
    return 1;
}

#endif
