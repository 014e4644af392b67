/*
 * codec/mask — RFC 6455 §5.3 masking: payload byte i is XORed with key[(i + offset) % 4].
 *
 * The key repeats every 4 bytes, so any block whose size is a multiple of 4 is XORed
 * with the same pattern: the key rotated by the starting offset. We build that pattern
 * once, widen it to 8, 16 or 32 bytes, and XOR whole words with unaligned loads and
 * stores (memcpy or the unaligned SIMD intrinsics), which makes the buffer's alignment
 * irrelevant. Only the last 0-7 bytes go one at a time.
 *
 * SSE2 is part of every x86-64 target, so that path is always on there. An AVX2 path
 * is compiled in when the build targets AVX2 (-mavx2 or -march=...), and otherwise is
 * chosen at run time on a CPU that has it, for buffers large enough to amortise the
 * check. KITE_NO_SIMD (build time) or kite__simd_cap (run time, for tests and
 * benchmarks) fall back to the portable 64-bit-word path.
 */
#include "codec/frame.h"

#if defined(__x86_64__) && defined(__SSE2__) && !defined(KITE_NO_SIMD)
#define KITE_MASK_SSE2 1
#include <emmintrin.h>
#if defined(__GNUC__) && !defined(__AVX2__)
/* AVX2 through a target attribute plus a run-time CPU check. */
#define KITE_MASK_AVX2_DISPATCH 1
#include <immintrin.h>
#define KITE_AVX2_FN __attribute__((target("avx2")))
#elif defined(__AVX2__)
#define KITE_MASK_AVX2_STATIC 1
#include <immintrin.h>
#define KITE_AVX2_FN
#endif
#endif

int kite__simd_cap = 2;

/* Below this many bytes the run-time AVX2 check is not worth it. */
#define AVX2_MIN_LEN 256

/* Portable path: 8 bytes per step from `i` (a multiple of 4, so the pattern still lines
 * up), then 0-7 bytes one at a time. */
static inline void xor_words(uint8_t *dst, const uint8_t *src, size_t i, size_t len,
                             uint64_t kw, const uint8_t key[4], size_t offset)
{
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= kw;
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; i++)
        dst[i] = src[i] ^ key[(offset + i) & 3];
}

#if defined(KITE_MASK_SSE2)
/* 64 bytes per step, then 16; returns how far it got. */
static inline size_t xor_sse2(uint8_t *dst, const uint8_t *src, size_t len, uint64_t kw)
{
    const __m128i k = _mm_set1_epi64x((long long)kw);
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
        _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(b, k));
        _mm_storeu_si128((__m128i *)(dst + i + 32), _mm_xor_si128(c, k));
        _mm_storeu_si128((__m128i *)(dst + i + 48), _mm_xor_si128(d, k));
    }
    for (; i + 16 <= len; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
    }
    return i;
}
#endif

#if defined(KITE_MASK_AVX2_DISPATCH) || defined(KITE_MASK_AVX2_STATIC)
/* 128 bytes per step, then 32; returns how far it got. */
KITE_AVX2_FN static size_t xor_avx2(uint8_t *dst, const uint8_t *src, size_t len,
                                    uint64_t kw)
{
    const __m256i k = _mm256_set1_epi64x((long long)kw);
    size_t i = 0;
    for (; i + 128 <= len; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 64), _mm256_xor_si256(c, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 96), _mm256_xor_si256(d, k));
    }
    for (; i + 32 <= len; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
    }
    return i;
}
#endif

#if defined(KITE_MASK_AVX2_DISPATCH)
static bool have_avx2(void)
{
    /* The CPU model is filled in by a runtime constructor; init is a no-op once it
     * ran, and makes this safe to reach from another constructor too. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif

/* dst[i] = src[i] ^ key[(offset + i) & 3]; dst == src is allowed (in place). Inlined
 * into both entry points: a small frame's payload is unmasked without further calls. */
static inline void mask_xor(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                            size_t offset)
{
    if (len == 0) /* data may be NULL then; pointer arithmetic on it is undefined */
        return;
    uint64_t kw = kite__mask_word(key, offset);
    size_t i = 0;
#if defined(KITE_MASK_AVX2_STATIC)
    if (kite__simd_cap >= 2)
        i = xor_avx2(dst, src, len, kw);
#elif defined(KITE_MASK_AVX2_DISPATCH)
    if (len >= AVX2_MIN_LEN && kite__simd_cap >= 2 && have_avx2())
        i = xor_avx2(dst, src, len, kw);
#endif
#if defined(KITE_MASK_SSE2)
    if (len - i >= 16 && kite__simd_cap >= 1)
        i += xor_sse2(dst + i, src + i, len - i, kw);
#endif
    xor_words(dst, src, i, len, kw, key, offset);
}

void kite_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset)
{
    mask_xor(data, data, len, key, offset);
}

void kite__mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                     size_t offset)
{
    mask_xor(dst, src, len, key, offset);
}
