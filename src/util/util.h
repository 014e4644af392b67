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

/* Make room for `n` more bytes at the end; returns a pointer to them or NULL (NOMEM). */
uint8_t *kite__buf_reserve(struct kite_buf *b, const struct kite_allocator *a, size_t n);
/* Append `n` bytes. KITE_OK or KITE_ERR_NOMEM. */
int kite__buf_append(struct kite_buf *b, const struct kite_allocator *a, const void *p, size_t n);
/* Drop `n` bytes from the front. Resets off to 0 when it empties. */
void kite__buf_consume(struct kite_buf *b, size_t n);
/* Release the memory. */
void kite__buf_free(struct kite_buf *b, const struct kite_allocator *a);
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

/* ASCII case-insensitive compare of two byte ranges. */
bool kite__ieq(const char *a, size_t alen, const char *b, size_t blen);

#endif
