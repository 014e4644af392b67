/*
 * Fuzz target: UTF-8 validation (src/codec/utf8.c), differential against the plain
 * reference below.
 *
 * Input layout: bytes 0-1 seed the chunk sizes and pick the vector width (byte 0 mod 3
 * gives kite__simd_cap: AVX2 where available, SSE2, portable C); the rest is the text.
 *
 * The reference decodes one character at a time and, for a character it has only part
 * of, asks whether any completion is a valid code point (RFC 3629 §3-4): the completions
 * of a partial sequence are exactly the values between "the missing bytes all 0x80" and
 * "all 0xBF", so that is an interval test. That yields the index of the first byte after
 * which the text can no longer be valid UTF-8. The library must then:
 *   - give the same whole-buffer verdict (kite_utf8_valid);
 *   - fed in random chunks, fail in exactly the chunk holding that byte: not before
 *     (the prefix was still possible) and not after (fail-fast);
 *   - accept the prefix up to that byte in one call and refuse the byte itself;
 *   - end in the accept state, if it never failed, exactly when the text is complete.
 */
#include <stdio.h>
#include <stdlib.h>

#include "codec/utf8.h"
#include "kite/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Can the partial character seq[0..have) of total length L still become valid? */
static bool completable(const uint8_t *seq, size_t have, size_t L)
{
    static const uint32_t payload_bits[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    static const uint32_t first_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t last_cp[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
    uint32_t lo = seq[0] & payload_bits[L];
    for (size_t k = 1; k < have; k++)
        lo = (lo << 6) | (seq[k] & 0x3Fu);
    uint32_t hi = lo;
    for (size_t k = have; k < L; k++) {
        lo <<= 6;
        hi = (hi << 6) | 0x3Fu;
    }
    uint32_t a = lo > first_cp[L] ? lo : first_cp[L];
    uint32_t b = hi < last_cp[L] ? hi : last_cp[L];
    if (a > b)
        return false;
    return !(a >= 0xD800 && b <= 0xDFFF); /* not only surrogates */
}

/* Sequence length announced by a lead byte's high bits (0: not a lead byte). */
static size_t seq_len(uint8_t b)
{
    if (b < 0x80)
        return 1;
    if ((b & 0xE0u) == 0xC0u)
        return 2;
    if ((b & 0xF0u) == 0xE0u)
        return 3;
    if ((b & 0xF8u) == 0xF0u)
        return 4;
    return 0;
}

/* First impossible byte index, or -1; *complete: ends between characters. */
static long reference(const uint8_t *s, size_t n, bool *complete)
{
    *complete = true;
    for (size_t i = 0; i < n;) {
        size_t L = seq_len(s[i]);
        if (L == 0)
            return (long)i;
        for (size_t k = 0; k < L; k++) {
            if (i + k == n) {
                *complete = false;
                return -1;
            }
            if (k > 0 && (s[i + k] & 0xC0u) != 0x80u)
                return (long)(i + k);
            if (!completable(s + i, k + 1, L))
                return (long)(i + k);
        }
        i += L;
    }
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    kite__simd_cap = 2 - data[0] % 3;
    uint32_t x = ((uint32_t)data[0] | (uint32_t)data[1] << 8) * 2654435761u | 1u;
    const uint8_t *s = data + 2;
    size_t n = size - 2;
    bool complete;
    long bad = reference(s, n, &complete);

    CHECK(kite_utf8_valid(s, n) == (bad < 0 && complete));

    /* Random chunks, each in its own heap block so ASan sees reads past it. */
    uint32_t st = KITE__UTF8_ACCEPT;
    size_t off = 0;
    bool failed = false;
    while (off < n && !failed) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        size_t c = (x & 1) ? 1 + (x >> 1) % 8 : 1 + (x >> 1) % 300;
        c = c < n - off ? c : n - off;
        uint8_t *chunk = malloc(c);
        CHECK(chunk != NULL);
        memcpy(chunk, s + off, c);
        int r = kite__utf8_feed(&st, chunk, c);
        free(chunk);
        bool here = bad >= (long)off && bad < (long)(off + c);
        CHECK(r == (here ? -1 : 0));
        failed = r != 0;
        off += c;
    }
    if (!failed)
        CHECK((st == KITE__UTF8_ACCEPT) == complete);

    if (bad >= 0) { /* the exact byte, with the prefix in one call */
        st = KITE__UTF8_ACCEPT;
        CHECK(kite__utf8_feed(&st, s, (size_t)bad) == 0);
        CHECK(kite__utf8_feed(&st, s + bad, 1) == -1);
    }
    return 0;
}
