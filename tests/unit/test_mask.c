/*
 * Unit tests for masking (src/codec/mask.c): RFC 6455 §5.3. The tests that compare with
 * the byte-at-a-time definition run at each vector width (kite__simd_cap 2, 1, 0: AVX2
 * where the CPU has it, SSE2, portable C).
 */
#include "codec/frame.h"
#include "test.h"

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* The definition in §5.3, one byte at a time: j = i MOD 4, octet ^ key[j]. */
static void ref_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                     size_t offset)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i] ^ key[(offset + i) % 4];
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131u + i * 29u + (i >> 3));
}

/* RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58. */
TEST(mask_rfc_example)
{
    uint8_t buf[5] = {'H', 'e', 'l', 'l', 'o'};
    const uint8_t want[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    kite_mask(buf, 5, KEY, 0);
    ASSERT_MEMEQ(buf, want, 5);
    kite_mask(buf, 5, KEY, 0); /* §5.3: the same operation unmasks */
    ASSERT_MEMEQ(buf, "Hello", 5);
}

/*
 * §5.3 at every key offset (0-3 and larger values, where only offset % 4 counts), every
 * length 0..100 and every start alignment 0..31, against the byte-at-a-time definition.
 * Guard bytes on both sides must stay untouched.
 */
static void mask_in_place_matches_reference_at_cap(void)
{
    static const size_t offsets[] = {0, 1, 2, 3, 4, 5, 7, 1001};
    uint8_t orig[160], got[160], want[160];
    for (size_t o = 0; o < KITE_ARRAY_LEN(offsets); o++)
        for (size_t align = 0; align < 32; align++)
            for (size_t len = 0; len <= 100; len++) {
                fill(orig, sizeof(orig), (unsigned)(len + align));
                memcpy(got, orig, sizeof(got));
                memcpy(want, orig, sizeof(want));
                kite_mask(got + align, len, KEY, offsets[o]);
                ref_mask(want + align, orig + align, len, KEY, offsets[o]);
                ASSERT_MEMEQ(got, want, sizeof(got));
            }
}

TEST(mask_in_place_matches_reference)
{
    for (int cap = 2; cap >= 0; cap--) {
        kite__simd_cap = cap;
        mask_in_place_matches_reference_at_cap();
    }
}

/* kite__mask_copy: same contract, separate source and destination, any alignments. */
static void mask_copy_matches_reference_at_cap(void)
{
    uint8_t src[160], got[160], want[160];
    for (size_t off = 0; off < 4; off++)
        for (size_t sa = 0; sa < 16; sa++)
            for (size_t da = 0; da < 16; da += 3)
                for (size_t len = 0; len <= 100; len++) {
                    fill(src, sizeof(src), (unsigned)(len * 3 + sa));
                    memset(got, 0xAA, sizeof(got));
                    memset(want, 0xAA, sizeof(want));
                    kite__mask_copy(got + da, src + sa, len, KEY, off);
                    ref_mask(want + da, src + sa, len, KEY, off);
                    ASSERT_MEMEQ(got, want, sizeof(got));
                }
}

TEST(mask_copy_matches_reference)
{
    for (int cap = 2; cap >= 0; cap--) {
        kite__simd_cap = cap;
        mask_copy_matches_reference_at_cap();
    }
}

/* kite__mask_copy with dst == src is the in-place operation. */
TEST(mask_copy_in_place)
{
    uint8_t a[77], b[77];
    fill(a, sizeof(a), 9);
    memcpy(b, a, sizeof(b));
    kite__mask_copy(a + 3, a + 3, 70, KEY, 2);
    kite_mask(b + 3, 70, KEY, 2);
    ASSERT_MEMEQ(a, b, sizeof(a));
}

/* Long buffers take the widest vector loops; check lengths around their block sizes. */
static void mask_long_buffers_at_cap(void)
{
    static const size_t lens[] = {255, 256, 257, 511, 4096, 4099, 65536 + 13};
    size_t cap = 65536 + 64;
    uint8_t *orig = malloc(cap), *got = malloc(cap), *want = malloc(cap);
    ASSERT(orig && got && want);
    for (size_t l = 0; l < KITE_ARRAY_LEN(lens); l++)
        for (size_t align = 0; align < 8; align++)
            for (size_t off = 0; off < 4; off++) {
                size_t n = lens[l];
                fill(orig, n + align, (unsigned)(l + off));
                memcpy(got, orig, n + align);
                kite_mask(got + align, n, KEY, off);
                ref_mask(want, orig + align, n, KEY, off);
                ASSERT_MEMEQ(got + align, want, n);
                kite__mask_copy(got, orig + align, n, KEY, off);
                ASSERT_MEMEQ(got, want, n);
            }
    free(orig);
    free(got);
    free(want);
}

TEST(mask_long_buffers)
{
    for (int cap = 2; cap >= 0; cap--) {
        kite__simd_cap = cap;
        mask_long_buffers_at_cap();
    }
}

/* Chunked data (§5.3 applies to the payload as a whole): masking piece by piece with the
 * running offset must equal masking it at once, for every split point. */
static void mask_chunked_equals_whole_at_cap(void)
{
    uint8_t orig[90], whole[90], pieces[90];
    fill(orig, sizeof(orig), 5);
    memcpy(whole, orig, sizeof(whole));
    kite_mask(whole, sizeof(whole), KEY, 0);
    for (size_t a = 0; a <= sizeof(orig); a++)
        for (size_t b = a; b <= sizeof(orig); b += 7) {
            memcpy(pieces, orig, sizeof(pieces));
            kite_mask(pieces, a, KEY, 0);
            kite_mask(pieces + a, b - a, KEY, a);
            kite_mask(pieces + b, sizeof(pieces) - b, KEY, b);
            ASSERT_MEMEQ(pieces, whole, sizeof(whole));
        }
}

TEST(mask_chunked_equals_whole)
{
    for (int cap = 2; cap >= 0; cap--) {
        kite__simd_cap = cap;
        mask_chunked_equals_whole_at_cap();
    }
}

/* A zero key changes nothing; masking twice restores the input (§5.3). */
TEST(mask_involution_and_zero_key)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    uint8_t a[300], b[300];
    fill(a, sizeof(a), 1);
    memcpy(b, a, sizeof(b));
    kite_mask(b, sizeof(b), zero, 1);
    ASSERT_MEMEQ(a, b, sizeof(a));
    kite_mask(b + 1, 297, KEY, 3);
    ASSERT(memcmp(a, b, sizeof(a)) != 0);
    kite_mask(b + 1, 297, KEY, 3);
    ASSERT_MEMEQ(a, b, sizeof(a));
}
