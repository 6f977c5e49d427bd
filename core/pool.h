/* pool.h — per-request memory arena: everything a request allocates comes
 * from its pool and is released at once by tg_pool_destroy(). */
#ifndef TG_POOL_H
#define TG_POOL_H

#include <stddef.h>

typedef struct tg_pool_s tg_pool_t;

/* A pool whose first block holds `first` bytes; later blocks grow as needed. */
tg_pool_t *tg_pool_create(size_t first);
void tg_pool_destroy(tg_pool_t *p);
/* 16-byte aligned, never NULL unless the process is out of memory. */
void *tg_pool_alloc(tg_pool_t *p, size_t n);
void *tg_pool_calloc(tg_pool_t *p, size_t n);
char *tg_pool_strndup(tg_pool_t *p, const char *s, size_t n);
char *tg_pool_strdup(tg_pool_t *p, const char *s);
char *tg_pool_printf(tg_pool_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
