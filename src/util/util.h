/*
 * util — internal helpers shared by every layer: the allocator hook, a growable
 * byte buffer, and libcrypto wrappers (SHA-1, base64, randomness).
 */
#ifndef KITE_UTIL_H
#define KITE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kite/common.h"

#define KITE_UNUSED(x) ((void)(x))
#define KITE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KITE_MAX(a, b) ((a) > (b) ? (a) : (b))
#define KITE_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define KITE_LIKELY(x) __builtin_expect(!!(x), 1)
#define KITE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define KITE_LIKELY(x) (x)
#define KITE_UNLIKELY(x) (x)
#endif

/* Allocation through an optional allocator (NULL = libc). */
void *kite__malloc(const struct kite_allocator *a, size_t n);
void *kite__calloc(const struct kite_allocator *a, size_t n);
void *kite__realloc(const struct kite_allocator *a, void *p, size_t n);
void kite__free(const struct kite_allocator *a, void *p);

/*
 * A growable byte buffer: bytes [off, off+len) of data[0..cap) are live.
 * Zero-initialise to start empty; no memory is held until the first append.
 */
struct kite_buf {
    uint8_t *data;
    size_t off; /* consumed prefix */
    size_t len; /* live bytes after off */
    size_t cap;
};

/* The slow path of kite__buf_reserve: slide or grow. */
uint8_t *kite__buf_grow(struct kite_buf *b, const struct kite_allocator *a, size_t n);
/* Make room for `n` more bytes at the end; returns a pointer to them or NULL (NOMEM).
 * Inline: when the room is there already (the usual case) it is a compare. */
static inline uint8_t *kite__buf_reserve(struct kite_buf *b, const struct kite_allocator *a,
                                         size_t n)
{
    if (b->cap - b->off - b->len >= n)
        return b->data + b->off + b->len;
    return kite__buf_grow(b, a, n);
}
/* Append `n` bytes. KITE_OK or KITE_ERR_NOMEM. */
int kite__buf_append(struct kite_buf *b, const struct kite_allocator *a, const void *p, size_t n);
/* Drop `n` bytes from the front. Resets off to 0 when it empties. */
static inline void kite__buf_consume(struct kite_buf *b, size_t n)
{
    if (n >= b->len) {
        b->off = 0;
        b->len = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}
/* Release the memory. A large block of the libc allocator goes to the thread's cache
 * (below) rather than straight back to malloc. */
void kite__buf_free(struct kite_buf *b, const struct kite_allocator *a);

/*
 * The per-thread cache of large freed buffers (bufcache.c), for the libc allocator only
 * (a NULL kite_allocator): blocks of at least KITE__BUF_CACHE_MIN bytes, a few MiB in
 * all, reused by the next large buffer instead of being unmapped and faulted in again.
 */
#define KITE__BUF_CACHE_MIN ((size_t)64 << 10)
#define KITE__BUF_CACHE_MS 1000u /* a block unused this long is freed by trim */
/* Keep malloc'ed block p of cap bytes; false when it does not fit (free it yourself). */
bool kite__buf_cache_put(void *p, size_t cap);
/* The smallest cached block of at least `need` bytes and at most four times that (its
 * size in *cap), or NULL. */
void *kite__buf_cache_take(size_t need, size_t *cap);
/* Free the blocks unused for KITE__BUF_CACHE_MS; `now_ms` is any monotonic clock.
 * Returns when the next block would be due (UINT64_MAX when none is cached): call again
 * by then. The event loop does this. */
uint64_t kite__buf_cache_trim(uint64_t now_ms);
/* Bytes cached by the calling thread (for tests). */
size_t kite__buf_cache_bytes(void);
static inline uint8_t *kite__buf_head(const struct kite_buf *b)
{
    return b->data + b->off;
}

/* SHA-1 of `len` bytes into out[20] (libcrypto). KITE_OK or KITE_ERR_CRYPTO. */
int kite__sha1(const void *data, size_t len, uint8_t out[20]);
/* Standard base64 with padding; writes 4*ceil(len/3) chars plus NUL. Returns the length. */
size_t kite__base64_encode(const uint8_t *in, size_t len, char *out);
/* Decode standard padded base64; returns decoded length or -1 when malformed or longer
 * than `cap`. */
ssize_t kite__base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);
/* Fill `out` with `n` bytes from a CSPRNG (libcrypto's RAND_bytes). KITE_OK or
 * KITE_ERR_CRYPTO. */
int kite__random(void *out, size_t n);

/* Four bytes for a frame's masking key (RFC 6455 §5.3: unpredictable, from a strong
 * source). Drawn from a per-thread pool refilled from kite__random() 4 KiB at a
 * time, so masking a frame costs no syscall. KITE_OK or KITE_ERR_CRYPTO. */
int kite__random_mask(uint8_t key[4]);

/* kite__ieq for two ranges of the same length n. */
bool kite__ieq_n(const char *a, const char *b, size_t n);
/* ASCII case-insensitive compare of two byte ranges. Inline: header lookups mostly
 * meet names of another length, and that answer costs one compare. */
static inline bool kite__ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && kite__ieq_n(a, b, alen);
}

#endif
