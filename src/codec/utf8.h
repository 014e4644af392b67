/*
 * codec/utf8 — incremental UTF-8 validation (RFC 3629) for text messages that arrive
 * in pieces. Fail-fast: the validator rejects a sequence at the first byte after which
 * no continuation could make it valid (e.g. 0xF4 0x90 is rejected at 0x90, since it
 * would encode above U+10FFFF), not at the end of the message. An ASCII fast path checks
 * 8 bytes or more at a time.
 *
 *   uint32_t st = KITE__UTF8_ACCEPT;
 *   if (kite__utf8_feed(&st, chunk, n) != 0) -> invalid (close 1007)
 *   ... at the end of the message: if (st != KITE__UTF8_ACCEPT) -> truncated (1007)
 */
#ifndef KITE_CODEC_UTF8_H
#define KITE_CODEC_UTF8_H

#include "util/util.h"

#define KITE__UTF8_ACCEPT 0u

/* Validate the next `len` bytes; *state carries a partial sequence across calls.
 * Returns 0 while the input could still be valid, -1 once it cannot (state is then
 * unspecified). */
int kite__utf8_feed(uint32_t *state, const uint8_t *p, size_t len);

/* Inputs up to this long are first tested for all-ASCII with a few word loads. */
#define KITE__UTF8_SHORT_MAX 64u

/*
 * Is p[0..len) (len <= KITE__UTF8_SHORT_MAX) all ASCII, hence valid UTF-8 that ends
 * between characters? ORs 8-byte words, the last one overlapping the one before it, and
 * tests the top bit of each byte: a 32-byte message costs five loads. Shorter inputs
 * use two overlapping 4-byte words, or single bytes. Inline, so that a short text
 * message is checked without a call.
 */
static inline bool kite__utf8_short_ascii(const uint8_t *p, size_t len)
{
    uint64_t acc = 0;
    if (len >= 8) {
        for (size_t i = 0; i + 8 < len; i += 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            acc |= w;
        }
        uint64_t last;
        memcpy(&last, p + len - 8, 8);
        acc |= last;
    } else if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + len - 4, 4);
        acc = a | b;
    } else {
        for (size_t i = 0; i < len; i++)
            acc |= p[i];
    }
    return (acc & 0x8080808080808080ull) == 0;
}

/* The widest vector code masking and UTF-8 validation may use: 2 = AVX2 (default; only
 * where the CPU has it), 1 = SSE2, 0 = portable C. For tests and benchmarks, which set
 * it before using the codec; results never depend on it. Defined in mask.c. */
extern int kite__simd_cap;

#endif
