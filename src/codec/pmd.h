/*
 * codec/pmd — permessage-deflate (RFC 7692) internals shared with the unit tests. The
 * extension itself is the public kite_ext_permessage_deflate (<kite/extension.h>).
 */
#ifndef KITE_CODEC_PMD_H
#define KITE_CODEC_PMD_H

#include "kite/extension.h"
#include "util/util.h"

/* Idle streams the per-thread pool keeps at most; more are freed when returned. */
#define KITE__PMD_POOL_MAX 4

/*
 * RFC 7692 §7.1.2.1/§7.1.2.2: a window-bits value is a decimal integer 8-15 without
 * leading zeroes ("8", "15"; not "08", "16", "7", "abc", ""). Returns it, or -1.
 */
int kite__pmd_window_bits(const char *s, size_t len);

/* Streams this thread primed with a parked history (pool_streams), for the tests: a busy
 * session primes once per direction and burst, not once per message. */
extern _Thread_local unsigned long kite__pmd_primes;

#endif
