/* A growable byte buffer with a consumed prefix, used for queued output and partial input. */
#include "util/util.h"

/* Reservations from this size up that more than double a buffer are not rounded up. */
#define EXACT_MIN ((size_t)64 << 10)

uint8_t *kite__buf_grow(struct kite_buf *b, const struct kite_allocator *a, size_t n)
{
    if (b->cap - b->off - b->len >= n)
        return b->data + b->off + b->len;
    /* Slide live bytes to the front before growing: the prefix is dead space. */
    if (b->off > 0 && b->cap - b->len >= n) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return b->data + b->len;
    }
    size_t need = b->len + n;
    if (need < n)
        return NULL; /* overflow */
    /* Double (appends stay amortised O(1)); but a large reservation that more than
     * doubles the buffer gets exactly what it asks: a 1 MiB message reserved at once
     * gets 1 MiB, not 2. */
    size_t cap = b->cap ? b->cap : 64;
    if (need >= EXACT_MIN && need / 2 > cap) {
        cap = need;
    } else {
        while (cap < need) {
            if (cap > SIZE_MAX / 2)
                return NULL;
            cap *= 2;
        }
    }
    uint8_t *p;
    size_t got;
    if (!a && !b->data && cap >= KITE__BUF_CACHE_MIN &&
        (p = kite__buf_cache_take(cap, &got)) != NULL) {
        cap = got; /* a fresh buffer: take a cached block (no copy, pages warm) */
    } else if (b->off == 0) {
        p = kite__realloc(a, b->data, cap);
        if (!p)
            return NULL;
    } else {
        p = kite__malloc(a, cap);
        if (!p)
            return NULL;
        memcpy(p, b->data + b->off, b->len);
        kite__free(a, b->data);
    }
    b->data = p;
    b->off = 0;
    b->cap = cap;
    return p + b->len;
}

int kite__buf_append(struct kite_buf *b, const struct kite_allocator *a, const void *p, size_t n)
{
    if (n == 0)
        return KITE_OK;
    uint8_t *dst = kite__buf_reserve(b, a, n);
    if (!dst)
        return KITE_ERR_NOMEM;
    memcpy(dst, p, n);
    b->len += n;
    return KITE_OK;
}

void kite__buf_free(struct kite_buf *b, const struct kite_allocator *a)
{
    if (a || !b->data || !kite__buf_cache_put(b->data, b->cap))
        kite__free(a, b->data);
    memset(b, 0, sizeof(*b));
}
