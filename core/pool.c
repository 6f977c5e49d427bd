/* pool.c — a bump allocator of linked blocks, one per request (nginx's
 * ngx_pool_t idea). Small allocations are carved from the current block;
 * large ones get a block of their own. Nothing is freed individually: the
 * owner calls tg_pool_destroy() once, which is what makes request cleanup
 * a single function. */
#include "core/pool.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

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

/* printf for the conversions hot paths use — %s, %.*s, %c, %%, and %d %i
 * %u with l, ll or z — done here, because glibc's vfprintf per request
 * was a tenth of a request's instructions, measured with callgrind). Writes
 * at most `cap` bytes to `o` and returns the full length (so a too-small
 * `cap` tells the caller how much to allocate), or -1 at anything else
 * (flags, widths, other conversions): the caller then uses vsnprintf.
 * Literal runs are copied with memcpy, not byte by byte. */
static long fmt_fast(char *o, size_t cap, const char *f, va_list ap) {
    size_t n = 0;
#define PUT(src, len)                                                                                        \
    do {                                                                                                     \
        size_t l_ = (len);                                                                                   \
        if (n + l_ <= cap) memcpy(o + n, (src), l_);                                                         \
        n += l_;                                                                                             \
    } while (0)
    while (*f) {
        const char *pct = strchrnul(f, '%');
        PUT(f, (size_t)(pct - f));
        if (*pct == '\0') break;
        f = pct + 1;
        const char *s = NULL;
        size_t sl = 0;
        char num[24];
        if (f[0] == '.' && f[1] == '*' && f[2] == 's') {
            int prec = va_arg(ap, int);
            s = va_arg(ap, const char *);
            if (s == NULL) s = "(null)";
            sl = prec < 0 ? strlen(s) : strnlen(s, (size_t)prec);
            f += 2;
        } else if (*f == 's') {
            s = va_arg(ap, const char *);
            if (s == NULL) s = "(null)";
            sl = strlen(s);
        } else if (*f == '%' || *f == 'c') {
            num[0] = *f == '%' ? '%' : (char)va_arg(ap, int);
            s = num, sl = 1;
        } else {
            int size = 0; /* 0 int, 1 long, 2 long long, 3 size_t */
            if (f[0] == 'l' && f[1] == 'l')
                size = 2, f += 2;
            else if (*f == 'l')
                size = 1, f++;
            else if (*f == 'z')
                size = 3, f++;
            unsigned long long v;
            int neg = 0;
            if (*f == 'd' || *f == 'i') {
                long long x = size == 0   ? va_arg(ap, int)
                              : size == 1 ? va_arg(ap, long)
                              : size == 2 ? va_arg(ap, long long)
                                          : (long long)va_arg(ap, ssize_t);
                neg = x < 0;
                v = neg ? 0ULL - (unsigned long long)x : (unsigned long long)x;
            } else if (*f == 'u') {
                v = size == 0   ? va_arg(ap, unsigned)
                    : size == 1 ? va_arg(ap, unsigned long)
                    : size == 2 ? va_arg(ap, unsigned long long)
                                : va_arg(ap, size_t);
            } else {
                return -1;
            }
            char *e = num + sizeof num, *d = e;
            do
                *--d = (char)('0' + v % 10);
            while (v /= 10);
            if (neg) *--d = '-';
            s = d, sl = (size_t)(e - d);
        }
        PUT(s, sl);
        f++;
    }
#undef PUT
    return (long)n;
}

/* Formats straight into the free end of the current block (one pass); only
 * when it does not fit is the length known and a second pass made. */
char *tg_pool_printf(tg_pool_t *p, const char *fmt, ...) {
    va_list ap;
    tg_pool_block_t *b = p->head;
    size_t room = b->size - b->used;
    char *dst = (char *)b->data + b->used;
    va_start(ap, fmt);
    long fast = fmt_fast(dst, room, fmt, ap);
    va_end(ap);
    if (fast >= 0) {
        if ((size_t)fast < room) {
            dst[fast] = '\0';
            b->used += ((size_t)fast + 16) & ~(size_t)15;
            if (b->used > b->size) b->used = b->size;
            return dst;
        }
        char *r = tg_pool_alloc(p, (size_t)fast + 1);
        if (r == NULL) return NULL;
        va_start(ap, fmt);
        fmt_fast(r, (size_t)fast, fmt, ap);
        va_end(ap);
        r[fast] = '\0';
        return r;
    }
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
