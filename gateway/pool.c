/* pool.c — a bump allocator of linked blocks, one per request (nginx's
 * ngx_pool_t idea). Small allocations are carved from the current block;
 * large ones get a block of their own. Nothing is freed individually: the
 * owner calls tg_pool_destroy() once, which is what makes request cleanup
 * a single function. */
#include "gateway/pool.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tg_pool_block_s {
    struct tg_pool_block_s *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} tg_pool_block_t;

struct tg_pool_s {
    tg_pool_block_t *head; /* current block, the one we carve from */
    tg_pool_block_t *big;  /* oversized allocations, one block each */
    size_t next_size;
};

static tg_pool_block_t *block_new(size_t size) {
    tg_pool_block_t *b = malloc(sizeof(*b) + size);
    if (b == NULL) return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

tg_pool_t *tg_pool_create(size_t first) {
    if (first < 256) first = 256;
    tg_pool_t *p = malloc(sizeof(*p));
    if (p == NULL) return NULL;
    p->head = block_new(first);
    if (p->head == NULL) {
        free(p);
        return NULL;
    }
    p->big = NULL;
    p->next_size = first * 2;
    return p;
}

void tg_pool_destroy(tg_pool_t *p) {
    if (p == NULL) return;
    for (tg_pool_block_t *b = p->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    for (tg_pool_block_t *b = p->big, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    free(p);
}

void *tg_pool_alloc(tg_pool_t *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    tg_pool_block_t *b = p->head;
    if (b->size - b->used >= n) {
        void *r = b->data + b->used;
        b->used += n;
        return r;
    }
    /* Big requests get their own block so they do not waste the current one. */
    if (n > p->next_size / 4) {
        tg_pool_block_t *big = block_new(n);
        if (big == NULL) return NULL;
        big->used = n;
        big->next = p->big;
        p->big = big;
        return big->data;
    }
    tg_pool_block_t *nb = block_new(p->next_size);
    if (nb == NULL) return NULL;
    if (p->next_size < (1u << 20)) p->next_size *= 2;
    nb->next = p->head;
    p->head = nb;
    nb->used = n;
    return nb->data;
}

void *tg_pool_calloc(tg_pool_t *p, size_t n) {
    void *r = tg_pool_alloc(p, n);
    if (r) memset(r, 0, n);
    return r;
}

char *tg_pool_strndup(tg_pool_t *p, const char *s, size_t n) {
    char *r = tg_pool_alloc(p, n + 1);
    if (r == NULL) return NULL;
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

char *tg_pool_strdup(tg_pool_t *p, const char *s) {
    return tg_pool_strndup(p, s, strlen(s));
}

char *tg_pool_printf(tg_pool_t *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *r = tg_pool_alloc(p, (size_t)n + 1);
    if (r == NULL) return NULL;
    va_start(ap, fmt);
    vsnprintf(r, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return r;
}
