/*
 * codec/utf8 — incremental, fail-fast UTF-8 validation (RFC 3629 §3-4), used for text
 * messages and close reasons (RFC 6455 §5.6, §8.1).
 *
 * The state between calls says what the next byte may be. It packs three fields:
 *
 *   bits  0-7   lowest value the next byte may take
 *   bits  8-15  highest value the next byte may take
 *   bits 16-17  continuation bytes still expected (0 = between characters)
 *
 * so KITE__UTF8_ACCEPT (0) means "between characters". A lead byte sets the count and,
 * for the leads whose second byte is restricted (RFC 3629 §4 table: E0, ED, F0, F4),
 * a narrower range for the next byte. That narrowing is what makes the check fail
 * fast: E0 80 is refused at the 80 (it could only be an overlong form), ED A0 at the A0
 * (a surrogate), F4 90 at the 90 (above U+10FFFF).
 *
 * Long buffers go through a vector check on x86-64: 32 bytes at once with AVX2 when the
 * CPU has it (chosen at run time), else 16 with SSE2 (always there); both skip ASCII 64
 * bytes at a time. Elsewhere, or with KITE_NO_SIMD, or with kite__simd_cap lowered, an
 * 8-byte ASCII skip and a table-driven check of one whole character per step stand in.
 * All leave the byte machine for the tail and for sequences that cross a chunk boundary.
 */
#include "codec/utf8.h"
#include "kite/codec.h"

#if defined(__x86_64__) && defined(__SSE2__) && !defined(KITE_NO_SIMD)
#define KITE_UTF8_SSE2 1
#include <emmintrin.h>
#if defined(__GNUC__)
/* The same check 32 bytes wide, when the CPU has AVX2 (chosen at run time). */
#define KITE_UTF8_AVX2 1
#include <immintrin.h>
#define KITE_AVX2_FN __attribute__((target("avx2")))
#endif
#endif

/* State for `n` more bytes of which the next lies in [lo, hi]. */
#define ST(n, lo, hi) (((uint32_t)(n) << 16) | ((uint32_t)(hi) << 8) | (uint32_t)(lo))
#define ST_ANY_CONT(n) ST(n, 0x80, 0xBF)
#define ST_INVALID 0xFFFFFFFFu

/*
 * The state after each byte seen between characters (RFC 3629 §4): 0 for ASCII,
 * ST_INVALID for bytes that cannot start a character (continuation bytes; C0 and C1,
 * which only start overlong forms; F5-FF, beyond U+10FFFF), and for lead bytes the
 * count and the range of the next byte. Only E0, ED, F0 and F4 narrow that range.
 */
#define R4(x) x, x, x, x
#define R16(x) R4(x), R4(x), R4(x), R4(x)
#define I_ ST_INVALID
#define C1 ST_ANY_CONT(1)
#define C2 ST_ANY_CONT(2)
#define C3 ST_ANY_CONT(3)
static const uint32_t lead_table[] = {
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), /* 00-7F */
    R16(I_), R16(I_), R16(I_), R16(I_),                             /* 80-BF */
    I_, I_, C1, C1, R4(C1), R4(C1), R4(C1),                         /* C0-CF */
    R16(C1),                                                        /* D0-DF */
    ST(2, 0xA0, 0xBF), C2, C2, C2, R4(C2), R4(C2),                  /* E0-EB */
    C2, ST(2, 0x80, 0x9F), C2, C2,                                  /* EC-EF */
    ST(3, 0x90, 0xBF), C3, C3, C3, ST(3, 0x80, 0x8F),               /* F0-F4 */
    I_, I_, I_, R4(I_), R4(I_),                                     /* F5-FF */
};
_Static_assert(sizeof(lead_table) == 256 * sizeof(uint32_t), "one entry per byte value");
#undef R4
#undef R16
#undef I_
#undef C1
#undef C2
#undef C3

/* One byte through the machine. Returns ST_INVALID when `b` cannot follow `st`. */
static uint32_t step(uint32_t st, uint8_t b)
{
    if (st == KITE__UTF8_ACCEPT)
        return lead_table[b];
    if (b < (st & 0xFF) || b > ((st >> 8) & 0xFF))
        return ST_INVALID;
    uint32_t more = (st >> 16) - 1;
    return more ? ST_ANY_CONT(more) : KITE__UTF8_ACCEPT;
}

/* Byte-at-a-time over p[i..len), for tails and sequences split across chunks. */
static int feed_bytes(uint32_t *state, const uint8_t *p, size_t i, size_t len)
{
    uint32_t st = *state;
    for (; i < len; i++) {
        st = step(st, p[i]);
        if (st == ST_INVALID)
            return -1;
    }
    *state = st;
    return 0;
}

/*
 * Where the last character in p[start..end) begins if it is incomplete, else `end`.
 * p[start..end) is already known to be valid as a prefix, so the nearest lead byte in
 * the last three positions tells the length of the last sequence.
 */
static size_t incomplete_tail(const uint8_t *p, size_t start, size_t end)
{
    for (size_t k = 1; k <= 3 && end - k + 1 > start; k++) {
        uint8_t b = p[end - k];
        if (b < 0x80)
            return end;
        if (b >= 0xC0) {
            size_t seq = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
            return k < seq ? end - k : end;
        }
    }
    return end;
}

/*
 * No vectors: skip ASCII eight bytes at a time; otherwise check one whole character
 * per step from the lead byte's table entry, with the tests combined arithmetically
 * instead of branching on the character's length, which mixed text makes random.
 * Stops at a character boundary with fewer than 8 bytes left.
 */
static int check_blocks_portable(const uint8_t *p, size_t len, size_t *done)
{
    const uint64_t high = 0x8080808080808080ull;
    size_t i = 0;
    while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if ((w & high) == 0) {
            i += 8;
            continue;
        }
        uint32_t st = lead_table[p[i]];
        if (st == ST_INVALID)
            return -1;
        unsigned more = st >> 16; /* 0-3; bytes i+1..i+3 are in the buffer */
        unsigned c1 = p[i + 1], c2 = p[i + 2], c3 = p[i + 3];
        unsigned bad = (more >= 1) & ((c1 < (st & 0xFF)) | (c1 > ((st >> 8) & 0xFF)));
        bad |= (more >= 2) & ((c2 & 0xC0u) != 0x80u);
        bad |= (more >= 3) & ((c3 & 0xC0u) != 0x80u);
        if (bad)
            return -1;
        i += more + 1;
    }
    *done = i;
    return 0;
}

#if defined(KITE_UTF8_SSE2)
static inline __m128i splat(int8_t v)
{
    return _mm_set1_epi8(v);
}

/*
 * The rules for the 16 bytes of `cur`, given the 16 before them in `prev`. Byte i is
 * wrong when (a) it is a continuation byte exactly when none of the three bytes before
 * it announced one, or the reverse, (b) it can never appear (C0, C1, F5-FF), or (c) it
 * is the first continuation after E0/ED/F0/F4 and lies outside the range that lead
 * allows. These are the conditions under which the byte machine above fails, so both
 * paths fail at the same byte. Returns nonzero bytes at the wrong positions.
 */
static inline __m128i block_errors(__m128i prev, __m128i cur)
{
    __m128i p1 = _mm_or_si128(_mm_slli_si128(cur, 1), _mm_srli_si128(prev, 15));
    __m128i p2 = _mm_or_si128(_mm_slli_si128(cur, 2), _mm_srli_si128(prev, 14));
    __m128i p3 = _mm_or_si128(_mm_slli_si128(cur, 3), _mm_srli_si128(prev, 13));
    /* (a) A saturating subtract leaves a (small, positive) nonzero byte exactly where
     * p1 >= C0, p2 >= E0 or p3 >= F0. As signed bytes, continuations are -128..-65. */
    __m128i want = _mm_or_si128(_mm_subs_epu8(p1, splat((int8_t)0xBF)),
                                _mm_subs_epu8(p2, splat((int8_t)0xDF)));
    want = _mm_cmpgt_epi8(_mm_or_si128(want, _mm_subs_epu8(p3, splat((int8_t)0xEF))),
                          _mm_setzero_si128());
    __m128i err = _mm_xor_si128(want, _mm_cmplt_epi8(cur, splat(-64)));
    /* (b) F5-FF, then C0/C1. */
    err = _mm_or_si128(err, _mm_subs_epu8(cur, splat((int8_t)0xF4)));
    err = _mm_or_si128(err, _mm_cmpeq_epi8(_mm_and_si128(cur, splat((int8_t)0xFE)),
                                           splat((int8_t)0xC0)));
    /* (c) A second byte below A0 is wrong after E0, one from A0 up is wrong after ED;
     * so pick the lead that this byte would be wrong after and compare p1 with it.
     * Likewise 90 splits F0 from F4. If cur is no continuation byte, (a) caught it. */
    __m128i below_a0 = _mm_cmplt_epi8(cur, splat((int8_t)0xA0));
    __m128i below_90 = _mm_cmplt_epi8(cur, splat((int8_t)0x90));
    __m128i bad3 = _mm_xor_si128(splat((int8_t)0xED),
                                 _mm_and_si128(below_a0, splat((int8_t)(0xE0 ^ 0xED))));
    __m128i bad4 = _mm_xor_si128(splat((int8_t)0xF4),
                                 _mm_and_si128(below_90, splat((int8_t)(0xF0 ^ 0xF4))));
    err = _mm_or_si128(err, _mm_cmpeq_epi8(p1, bad3));
    return _mm_or_si128(err, _mm_cmpeq_epi8(p1, bad4));
}

/* Nonzero when v's last bytes leave a character open: v[15] >= C0, v[14] >= E0 or
 * v[13] >= F0. */
static inline __m128i open_tail(__m128i v)
{
    const __m128i limit = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        (int8_t)0xEF, (int8_t)0xDF, (int8_t)0xBF);
    return _mm_subs_epu8(v, limit);
}

static inline bool all_zero(__m128i v)
{
    return _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) == 0xFFFF;
}

static inline __m128i load16(const uint8_t *p)
{
    return _mm_loadu_si128((const __m128i *)p);
}

#if defined(KITE_UTF8_AVX2)
/* block_errors() for 32 bytes; see there. Byte i of p1 is byte i-1 of prev:cur. */
KITE_AVX2_FN static inline __m256i block_errors32(__m256i prev, __m256i cur)
{
    __m256i mid = _mm256_permute2x128_si256(prev, cur, 0x21); /* prev.hi : cur.lo */
    __m256i p1 = _mm256_alignr_epi8(cur, mid, 15);
    __m256i p2 = _mm256_alignr_epi8(cur, mid, 14);
    __m256i p3 = _mm256_alignr_epi8(cur, mid, 13);
    __m256i want = _mm256_or_si256(_mm256_subs_epu8(p1, _mm256_set1_epi8((int8_t)0xBF)),
                                   _mm256_subs_epu8(p2, _mm256_set1_epi8((int8_t)0xDF)));
    want = _mm256_or_si256(want, _mm256_subs_epu8(p3, _mm256_set1_epi8((int8_t)0xEF)));
    want = _mm256_cmpgt_epi8(want, _mm256_setzero_si256());
    __m256i err = _mm256_xor_si256(want, _mm256_cmpgt_epi8(_mm256_set1_epi8(-64), cur));
    err = _mm256_or_si256(err, _mm256_subs_epu8(cur, _mm256_set1_epi8((int8_t)0xF4)));
    err = _mm256_or_si256(
        err, _mm256_cmpeq_epi8(_mm256_and_si256(cur, _mm256_set1_epi8((int8_t)0xFE)),
                               _mm256_set1_epi8((int8_t)0xC0)));
    __m256i below_a0 = _mm256_cmpgt_epi8(_mm256_set1_epi8((int8_t)0xA0), cur);
    __m256i below_90 = _mm256_cmpgt_epi8(_mm256_set1_epi8((int8_t)0x90), cur);
    __m256i bad3 = _mm256_xor_si256(
        _mm256_set1_epi8((int8_t)0xED),
        _mm256_and_si256(below_a0, _mm256_set1_epi8((int8_t)(0xE0 ^ 0xED))));
    __m256i bad4 = _mm256_xor_si256(
        _mm256_set1_epi8((int8_t)0xF4),
        _mm256_and_si256(below_90, _mm256_set1_epi8((int8_t)(0xF0 ^ 0xF4))));
    err = _mm256_or_si256(err, _mm256_cmpeq_epi8(p1, bad3));
    return _mm256_or_si256(err, _mm256_cmpeq_epi8(p1, bad4));
}

KITE_AVX2_FN static inline bool all_zero32(__m256i v)
{
    return _mm256_testz_si256(v, v) != 0;
}

KITE_AVX2_FN static inline __m256i load32(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* check_blocks() 64 bytes per step with 32-byte vectors; *done is a multiple of 64. */
KITE_AVX2_FN static int check_blocks_avx2(const uint8_t *p, size_t len, size_t *done)
{
    const __m256i limit = _mm256_setr_epi8(
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, (int8_t)0xEF, (int8_t)0xDF, (int8_t)0xBF);
    __m256i prev = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m256i a = load32(p + i), b = load32(p + i + 32);
        __m256i open = _mm256_subs_epu8(prev, limit);
        if (_mm256_movemask_epi8(_mm256_or_si256(a, b)) == 0 && all_zero32(open)) {
            prev = b;
            continue;
        }
        if (!all_zero32(_mm256_or_si256(block_errors32(prev, a), block_errors32(a, b))))
            return -1;
        prev = b;
    }
    *done = i;
    return 0;
}

static bool have_avx2(void)
{
    /* The CPU model is filled in by a runtime constructor; init is a no-op once it
     * ran, and makes this safe to reach from another constructor too. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif

/*
 * The SSE2 loop: 64 bytes per step with one branch for "all ASCII and nothing open"
 * and one for errors; both are predictable, unlike anything that depends on where
 * characters end. *done is a multiple of 16.
 */
static int check_blocks_sse2(const uint8_t *p, size_t len, size_t *done)
{
    __m128i prev = _mm_setzero_si128(), err = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m128i a = load16(p + i), b = load16(p + i + 16);
        __m128i c = load16(p + i + 32), d = load16(p + i + 48);
        __m128i any = _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
        if (_mm_movemask_epi8(any) == 0 && all_zero(open_tail(prev))) {
            prev = d;
            continue;
        }
        err = _mm_or_si128(_mm_or_si128(block_errors(prev, a), block_errors(a, b)),
                           _mm_or_si128(block_errors(b, c), block_errors(c, d)));
        if (!all_zero(err))
            return -1;
        prev = d;
    }
    for (; i + 16 <= len; i += 16) {
        __m128i cur = load16(p + i);
        /* An ASCII block after a finished character needs no check, as above. */
        if (_mm_movemask_epi8(cur) != 0 || !all_zero(open_tail(prev)))
            err = _mm_or_si128(err, block_errors(prev, cur));
        prev = cur;
    }
    if (!all_zero(err))
        return -1;
    *done = i;
    return 0;
}

#endif

/*
 * Check p[0..len) (len >= 16) starting between characters, with the widest code the
 * CPU and kite__simd_cap allow. Returns -1 on an error, else 0 with *done = how many
 * bytes were checked (all but fewer than 16).
 */
static int check_blocks(const uint8_t *p, size_t len, size_t *done)
{
#if defined(KITE_UTF8_AVX2)
    if (kite__simd_cap >= 2 && len >= 64 && have_avx2()) {
        size_t head;
        if (check_blocks_avx2(p, len, &head) != 0)
            return -1;
        /* The rest (under 64 bytes) restarts at the last character boundary. */
        size_t restart = incomplete_tail(p, 0, head);
        size_t rest = 0;
        if (len - restart >= 16 && check_blocks_sse2(p + restart, len - restart, &rest) != 0)
            return -1;
        *done = restart + rest;
        return 0;
    }
#endif
#if defined(KITE_UTF8_SSE2)
    if (kite__simd_cap >= 1)
        return check_blocks_sse2(p, len, done);
#endif
    return check_blocks_portable(p, len, done);
}

int kite__utf8_feed(uint32_t *state, const uint8_t *p, size_t len)
{
    uint32_t st = *state;
    if (st == KITE__UTF8_ACCEPT && len <= KITE__UTF8_SHORT_MAX && kite__utf8_short_ascii(p, len))
        return 0;
    size_t i = 0;
    /* Finish a character left open by the previous chunk. */
    while (st != KITE__UTF8_ACCEPT && i < len) {
        st = step(st, p[i++]);
        if (st == ST_INVALID)
            return -1;
    }
    if (len - i >= 16) {
        size_t done;
        if (check_blocks(p + i, len - i, &done) != 0)
            return -1;
        /* Rewind to the start of an unfinished last character; the byte machine
         * re-reads it to learn the state. */
        i = incomplete_tail(p, i, i + done);
    }
    *state = st;
    return feed_bytes(state, p, i, len);
}

bool kite_utf8_valid(const uint8_t *data, size_t len)
{
    uint32_t st = KITE__UTF8_ACCEPT;
    return kite__utf8_feed(&st, data, len) == 0 && st == KITE__UTF8_ACCEPT;
}
