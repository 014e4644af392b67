/*
 * Unit tests for UTF-8 validation (src/codec/utf8.c). RFC 6455 §8.1 requires text
 * messages to be valid UTF-8 and §5.6 lets a peer fail the connection at the first
 * invalid byte, so we check the exact byte at which each input becomes impossible,
 * against an independent reference built from the code point ranges of RFC 3629 §3-4.
 *
 * Every check runs at each vector width (kite__simd_cap 2, 1, 0: AVX2 where the CPU
 * has it, SSE2, portable C), so all paths face the same inputs in one binary.
 */
#include "codec/utf8.h"
#include "kite/codec.h"
#include "test.h"

#define NIMPL 3 /* implementation k runs with kite__simd_cap = 2 - k */

static int feed_k(int k, uint32_t *state, const uint8_t *p, size_t len)
{
    kite__simd_cap = 2 - k;
    return kite__utf8_feed(state, p, len);
}

static bool valid_k(int k, const uint8_t *p, size_t len)
{
    kite__simd_cap = 2 - k;
    return kite_utf8_valid(p, len);
}

/*
 * The reference. A partial character with lead byte of length L and some continuation
 * bytes can still be completed to exactly the code points between "the rest all 0x80"
 * and "the rest all 0xBF". The prefix is possible iff that interval meets the code
 * points of length L (RFC 3629 §3: shortest form only) other than the surrogates.
 */
static bool ref_possible(const uint8_t *seq, size_t have, size_t L)
{
    static const uint32_t lead_bits[5] = {0, 0, 0x1F, 0x0F, 0x07};
    static const uint32_t lo_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t hi_cp[5] = {0, 0, 0x7FF, 0xFFFF, 0x10FFFF};
    uint32_t lo = seq[0] & lead_bits[L];
    for (size_t k = 1; k < have; k++)
        lo = (lo << 6) | (seq[k] & 0x3Fu);
    uint32_t hi = lo;
    for (size_t k = have; k < L; k++) {
        lo = lo << 6;
        hi = (hi << 6) | 0x3Fu;
    }
    uint32_t a = KITE_MAX(lo, lo_cp[L]), b = KITE_MIN(hi, hi_cp[L]);
    if (a > b)
        return false;
    return !(a >= 0xD800 && b <= 0xDFFF);
}

/* Index of the first byte after which s[0..n) is no prefix of valid UTF-8, or -1.
 * *complete: the input ends between characters. */
static long ref_fail(const uint8_t *s, size_t n, bool *complete)
{
    *complete = true;
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t L = b < 0x80                ? 1
                   : (b & 0xE0u) == 0xC0u ? 2
                   : (b & 0xF0u) == 0xE0u ? 3
                   : (b & 0xF8u) == 0xF0u ? 4
                                           : 0;
        if (L == 0)
            return (long)i;
        for (size_t k = 0; k < L; k++) {
            if (k > 0 && (s[i + k] & 0xC0u) != 0x80u)
                return (long)(i + k);
            if (L > 1 && !ref_possible(s + i, k + 1, L))
                return (long)(i + k);
            if (i + k + 1 == n && k + 1 < L) {
                *complete = false;
                return -1;
            }
        }
        i += L;
    }
    return -1;
}

/* Feed byte by byte; the index of the first byte refused, or -1. */
static long bytewise_fail(int k, const uint8_t *s, size_t n, uint32_t *st)
{
    *st = KITE__UTF8_ACCEPT;
    for (size_t i = 0; i < n; i++)
        if (feed_k(k, st, s + i, 1) != 0)
            return (long)i;
    return -1;
}

/*
 * All the ways to look at one input must agree with the reference: the whole-buffer
 * verdict, the final state, and the exact failing byte, both byte by byte and as "the
 * prefix before it passes in one call, the byte itself fails".
 */
static void check_input(const uint8_t *s, size_t n, bool bytewise)
{
    bool complete;
    long want = ref_fail(s, n, &complete);
    for (int k = 0; k < NIMPL; k++) {
        uint32_t st = KITE__UTF8_ACCEPT;
        int r = feed_k(k, &st, s, n);
        if (r != (want >= 0 ? -1 : 0))
            kite_test_fail(__FILE__, __LINE__, "impl %d: feed=%d want fail at %ld (n=%zu)", k,
                           r, want, n);
        if (r == 0)
            ASSERT_EQ(st == KITE__UTF8_ACCEPT, complete);
        ASSERT_EQ(valid_k(k, s, n), want < 0 && complete);
        if (want >= 0) {
            st = KITE__UTF8_ACCEPT;
            ASSERT_EQ(feed_k(k, &st, s, (size_t)want), 0);
            ASSERT_EQ(feed_k(k, &st, s + want, 1), -1);
        }
        if (bytewise) {
            long got = bytewise_fail(k, s, n, &st);
            if (got != want)
                kite_test_fail(__FILE__, __LINE__, "impl %d: byte-wise fail at %ld, want %ld",
                               k, got, want);
        }
    }
}

#define CHECK_STR(lit) check_input((const uint8_t *)(lit), sizeof(lit) - 1, true)

/* RFC 3629 §4: the boundaries of each length are valid. */
TEST(utf8_valid_boundaries)
{
    static const char *const ok[] = {
        "",
        "plain ASCII",
        "\x7f",
        "\xc2\x80",             /* U+0080 */
        "\xdf\xbf",             /* U+07FF */
        "\xe0\xa0\x80",         /* U+0800 */
        "\xed\x9f\xbf",         /* U+D7FF, last before the surrogates */
        "\xee\x80\x80",         /* U+E000, first after them */
        "\xef\xbf\xbf",         /* U+FFFF */
        "\xf0\x90\x80\x80",     /* U+10000 */
        "\xf4\x8f\xbf\xbf",     /* U+10FFFF */
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", /* "kosme" in Greek */
        "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac",
    };
    for (size_t i = 0; i < KITE_ARRAY_LEN(ok); i++) {
        const uint8_t *s = (const uint8_t *)ok[i];
        size_t n = strlen(ok[i]);
        for (int k = 0; k < NIMPL; k++)
            ASSERT(valid_k(k, s, n));
        check_input(s, n, true);
    }
}

/*
 * RFC 3629 §3-4 and RFC 6455 §8.1: each invalid input fails at exactly the byte that
 * makes it impossible, fed one byte at a time.
 */
TEST(utf8_fail_fast_positions)
{
    static const struct {
        const char *s;
        long at;
    } cases[] = {
        {"\x80", 0},             /* continuation without a lead */
        {"\xbf", 0},
        {"\xc0\x80", 0},         /* C0, C1: only overlong forms */
        {"\xc1\xbf", 0},
        {"\xf5\x80\x80\x80", 0}, /* F5-FF: above U+10FFFF or never used */
        {"\xf8", 0},
        {"\xff", 0},
        {"\xe0\x80\x80", 1},     /* overlong 3-byte */
        {"\xe0\x9f\xbf", 1},
        {"\xed\xa0\x80", 1},     /* U+D800, a surrogate */
        {"\xed\xbf\xbf", 1},     /* U+DFFF */
        {"\xf0\x80\x80\x80", 1}, /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 1},
        {"\xf4\x90\x80\x80", 1}, /* U+110000 */
        {"\xc2\x41", 1},         /* continuation missing */
        {"\xe1\x80\x41", 2},
        {"\xf1\x80\x80\xc0", 3},
        {"abc\x80", 3},
        {"\xc3\xa9\xc3", -1},    /* still possible: truncated, fails only at the end */
        {"\xc3\xa9\xc3\xc3", 3},
        {"ok\xe2\x82\xac\xed\xa0", 6},
    };
    for (size_t i = 0; i < KITE_ARRAY_LEN(cases); i++) {
        const uint8_t *s = (const uint8_t *)cases[i].s;
        size_t n = strlen(cases[i].s);
        bool complete;
        ASSERT_EQ(ref_fail(s, n, &complete), cases[i].at); /* the reference itself */
        for (int k = 0; k < NIMPL; k++) {
            uint32_t st;
            ASSERT_EQ(bytewise_fail(k, s, n, &st), cases[i].at);
            ASSERT(!valid_k(k, s, n));
        }
        check_input(s, n, true);
    }
}

/* RFC 6455 §8.1 applies to the whole message: a character cut off at the end is
 * invalid even though every byte was acceptable so far. */
TEST(utf8_truncated_at_end)
{
    static const char *const cut[] = {"\xc3", "\xe2\x82", "\xf0\x9f\x98", "abc\xf4\x8f"};
    for (size_t i = 0; i < KITE_ARRAY_LEN(cut); i++)
        for (int k = 0; k < NIMPL; k++) {
            uint32_t st = KITE__UTF8_ACCEPT;
            ASSERT_EQ(feed_k(k, &st, (const uint8_t *)cut[i], strlen(cut[i])), 0);
            ASSERT(st != KITE__UTF8_ACCEPT);
            ASSERT(!valid_k(k, (const uint8_t *)cut[i], strlen(cut[i])));
        }
}

/* RFC 3629 §3-4, exhaustively for every 1- and 2-byte input and every 3-byte input
 * whose last byte is from a set covering every range edge. */
TEST(utf8_exhaustive_short)
{
    static const uint8_t edge[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                   0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef,
                                   0xf0, 0xf4, 0xf5, 0xff};
    uint8_t s[4];
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        check_input(s, 1, true);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            check_input(s, 2, true);
            for (size_t c = 0; c < sizeof(edge); c++) {
                s[2] = edge[c];
                check_input(s, 3, false);
            }
        }
    }
}

/* Four-byte inputs (leads E0-FF, every second byte, edge values after). */
TEST(utf8_exhaustive_four_byte)
{
    static const uint8_t edge[] = {0x41, 0x80, 0x8f, 0x90, 0xbf, 0xc0, 0xc2, 0xf0, 0xff};
    uint8_t s[4];
    for (unsigned a = 0xE0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++)
            for (size_t c = 0; c < sizeof(edge); c++)
                for (size_t d = 0; d < sizeof(edge); d++) {
                    s[0] = (uint8_t)a;
                    s[1] = (uint8_t)b;
                    s[2] = edge[c];
                    s[3] = edge[d];
                    check_input(s, 4, false);
                }
}

/*
 * The vector path handles 16-byte blocks and looks back across block edges. Put every
 * 2-byte input, and 3- and 4-byte sequences of interest, at every offset of a buffer of
 * ASCII or of multibyte text, so each lands on and across every block boundary.
 */
TEST(utf8_sequences_at_every_offset)
{
    static const char *const seqs[] = {
        "\xe0\xa0\x80", "\xe0\x9f\xbf", "\xed\x9f\xbf", "\xed\xa0\x80", "\xef\xbf\xbf",
        "\xf0\x90\x80\x80", "\xf0\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80",
        "\xf3\xbf\xbf\xbf", "\xe2\x82", "\xf0\x9f\x98", "\xc0\xaf", "\xf5\x80\x80\x80",
    };
    uint8_t buf[100];
    for (int filler = 0; filler < 2; filler++)
        for (size_t pos = 0; pos + 4 <= sizeof(buf); pos++) {
            for (size_t i = 0; i < sizeof(buf); i++) /* "a..." or "ééé..." */
                buf[i] = filler == 0 ? (uint8_t)('a' + i % 26) : (i % 2 ? 0xA9 : 0xC3);
            uint8_t save[4];
            memcpy(save, buf + pos, 4);
            /* Every pair where it straddles the first block edge, a sample elsewhere. */
            unsigned step = pos == 14 || pos == 15 ? 1 : 251;
            for (unsigned v = 0; v < 65536; v += step) {
                buf[pos] = (uint8_t)(v >> 8);
                buf[pos + 1] = (uint8_t)v;
                check_input(buf, sizeof(buf), false);
            }
            for (size_t k = 0; k < KITE_ARRAY_LEN(seqs); k++) {
                memcpy(buf + pos, save, 4);
                memcpy(buf + pos, seqs[k], strlen(seqs[k]));
                check_input(buf, sizeof(buf), false);
                check_input(buf, pos + strlen(seqs[k]), false); /* at the very end */
            }
        }
}

/* A small deterministic PRNG for the randomised tests. */
static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static const char *const pieces[] = {
    "a", "hello world ", "0123456789abcdef", "\xc3\xa9", "\xdf\xbf", "\xe2\x82\xac",
    "\xe0\xa0\x80", "\xed\x9f\xbf", "\xef\xbf\xbf", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
    "\xe4\xb8\xad\xe6\x96\x87", "\x80", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
    "\xe0\x80", "\xff", "\xc3", "\xf0\x9f",
};

/* Random text: mostly valid pieces, an invalid one with probability 1/bad_odds. */
static size_t random_text(uint8_t *out, size_t cap, uint32_t *seed, unsigned bad_odds)
{
    size_t n = 0, target = rnd(seed) % cap;
    while (n < target) {
        size_t pick = rnd(seed) % 12; /* the valid ones */
        if (bad_odds && rnd(seed) % bad_odds == 0)
            pick = 12 + rnd(seed) % 8;
        size_t l = strlen(pieces[pick]);
        if (n + l > cap)
            break;
        memcpy(out + n, pieces[pick], l);
        n += l;
    }
    return n;
}

/*
 * RFC 6455 §5.4/§8.1: a text message's bytes may be split across frames anywhere, and
 * the validator keeps its state across the pieces. Split random texts at random points:
 * the chunk holding the reference's failing byte must be the first to fail, and a text
 * that passes must end in the accept state exactly when it is complete.
 */
TEST(utf8_random_chunks_match_reference)
{
    uint32_t seed = 0x12345u;
    uint8_t buf[600];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = random_text(buf, sizeof(buf), &seed, iter % 4 == 0 ? 0 : 40);
        bool complete;
        long want = ref_fail(buf, n, &complete);
        for (int k = 0; k < NIMPL; k++) {
            uint32_t st = KITE__UTF8_ACCEPT;
            size_t off = 0;
            long failed_chunk_end = -1;
            while (off < n) {
                size_t c = 1 + rnd(&seed) % (rnd(&seed) % 2 ? 8 : 100);
                c = KITE_MIN(c, n - off);
                int r = feed_k(k, &st, buf + off, c);
                bool should = want >= (long)off && want < (long)(off + c);
                ASSERT_EQ(r, should ? -1 : 0);
                off += c;
                if (r) {
                    failed_chunk_end = (long)off;
                    break;
                }
            }
            if (want < 0)
                ASSERT_EQ(st == KITE__UTF8_ACCEPT, complete);
            else
                ASSERT(failed_chunk_end > want);
        }
        check_input(buf, n, false);
    }
}

/* §5.4: the same valid text cut into three pieces at every pair of points always passes
 * and ends between characters. */
TEST(utf8_valid_text_split_everywhere)
{
    const char *text = "Gr\xc3\xbc\xc3\x9f" "e, \xe4\xb8\x96\xe7\x95\x8c! \xf0\x9f\x8e\x89 "
                       "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf4\x8f\xbf\xbf "
                       "plain ascii tail to reach past one vector block, and more.";
    const uint8_t *s = (const uint8_t *)text;
    size_t n = strlen(text);
    for (int k = 0; k < NIMPL; k++)
        for (size_t a = 0; a <= n; a++)
            for (size_t b = a; b <= n; b++) {
                uint32_t st = KITE__UTF8_ACCEPT;
                ASSERT_EQ(feed_k(k, &st, s, a), 0);
                ASSERT_EQ(feed_k(k, &st, s + a, b - a), 0);
                ASSERT_EQ(feed_k(k, &st, s + b, n - b), 0);
                ASSERT_EQ(st, KITE__UTF8_ACCEPT);
            }
}

/* The fast paths on long inputs: all-ASCII, multibyte, and an error placed at every
 * position of a long ASCII buffer (it must be caught whichever block it lands in). */
TEST(utf8_long_buffers)
{
    size_t n = 4096 + 37;
    uint8_t *buf = malloc(n);
    ASSERT(buf);
    memset(buf, 'x', n);
    for (int k = 0; k < NIMPL; k++)
        ASSERT(valid_k(k, buf, n));
    /* Characters cut short, then ASCII: the vector loops must notice the character
     * left open at the end of one block when the next block is plain ASCII. */
    static const char *const cut[] = {"\x80", "\xc3", "\xe2\x82", "\xe2", "\xf0\x9f\x98",
                                      "\xf0\x9f", "\xf0", "\xc3\xa9"};
    for (size_t pos = 0; pos < n - 4; pos += (pos < 300 ? 1 : 61))
        for (size_t k = 0; k < KITE_ARRAY_LEN(cut); k++) {
            size_t l = strlen(cut[k]);
            memcpy(buf + pos, cut[k], l);
            check_input(buf, n, false);
            memset(buf + pos, 'x', l);
        }
    uint32_t seed = 77;
    for (int iter = 0; iter < 50; iter++) {
        size_t m = random_text(buf, n, &seed, iter % 2 ? 0 : 300);
        check_input(buf, m, false);
    }
    free(buf);
}
