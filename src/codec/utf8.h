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

/* The widest vector code masking and UTF-8 validation may use: 2 = AVX2 (default; only
 * where the CPU has it), 1 = SSE2, 0 = portable C. For tests and benchmarks, which set
 * it before using the codec; results never depend on it. Defined in mask.c. */
extern int kite__simd_cap;

#endif
