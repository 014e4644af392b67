/* util: buffers, base64/SHA-1 (libcrypto), randomness, error names. */
#include <errno.h>

#include "kite/kite.h"
#include "test.h"
#include "util/util.h"

TEST(buf_append_consume_grow)
{
    struct kite_buf b = {0};
    ASSERT_EQ(kite__buf_append(&b, NULL, "hello", 5), KITE_OK);
    ASSERT_EQ(b.len, 5);
    kite__buf_consume(&b, 2);
    ASSERT_EQ(b.len, 3);
    ASSERT_MEMEQ(kite__buf_head(&b), "llo", 3);
    /* Growing past capacity keeps the live bytes in order. */
    uint8_t big[1000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)i;
    ASSERT_EQ(kite__buf_append(&b, NULL, big, sizeof(big)), KITE_OK);
    ASSERT_EQ(b.len, 1003);
    ASSERT_MEMEQ(kite__buf_head(&b), "llo", 3);
    ASSERT_MEMEQ(kite__buf_head(&b) + 3, big, sizeof(big));
    kite__buf_consume(&b, 5000);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(b.off, 0);
    kite__buf_free(&b, NULL);
    ASSERT(b.data == NULL);
}

TEST(buf_reserve_slides_before_growing)
{
    struct kite_buf b = {0};
    uint8_t data[64] = {0};
    ASSERT_EQ(kite__buf_append(&b, NULL, data, 64), KITE_OK);
    size_t cap = b.cap;
    kite__buf_consume(&b, 60);
    ASSERT(kite__buf_reserve(&b, NULL, 50) != NULL);
    ASSERT_EQ(b.cap, cap); /* slid, not grown */
    ASSERT_EQ(b.off, 0);
    kite__buf_free(&b, NULL);
}

TEST(buf_nomem_leaves_buffer_intact)
{
    struct kite_test_alloc st = {0};
    const struct kite_allocator *a = kite_test_allocator(&st);
    struct kite_buf b = {0};
    ASSERT_EQ(kite__buf_append(&b, a, "abc", 3), KITE_OK);
    st.fail_at = st.count + 1;
    uint8_t big[4096] = {0};
    ASSERT_EQ(kite__buf_append(&b, a, big, sizeof(big)), KITE_ERR_NOMEM);
    ASSERT_EQ(b.len, 3);
    ASSERT_MEMEQ(kite__buf_head(&b), "abc", 3);
    kite__buf_free(&b, a);
    ASSERT_EQ(st.live, 0);
}

TEST(sha1_and_base64_known_answers)
{
    /* FIPS 180 "abc" test vector. */
    uint8_t d[20];
    ASSERT_EQ(kite__sha1("abc", 3, d), KITE_OK);
    static const uint8_t want[20] = {0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e,
                                     0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d};
    ASSERT_MEMEQ(d, want, 20);
    char out[64];
    ASSERT_EQ(kite__base64_encode((const uint8_t *)"hello", 5, out), 8);
    ASSERT_STREQ(out, "aGVsbG8=");
    uint8_t back[16];
    ASSERT_EQ(kite__base64_decode("aGVsbG8=", 8, back, sizeof(back)), 5);
    ASSERT_MEMEQ(back, "hello", 5);
    ASSERT_EQ(kite__base64_decode("aGVsbG8", 7, back, sizeof(back)), -1);  /* not padded */
    ASSERT_EQ(kite__base64_decode("aGV*bG8=", 8, back, sizeof(back)), -1); /* bad char */
    ASSERT_EQ(kite__base64_decode("aGVsbG8=", 8, back, 4), -1);           /* too long */
}

TEST(random_mask_keys_vary)
{
    uint8_t a[4], b[4];
    int same = 0;
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(kite__random_mask(a), KITE_OK);
        ASSERT_EQ(kite__random_mask(b), KITE_OK);
        same += memcmp(a, b, 4) == 0;
    }
    ASSERT(same < 3); /* 2^-32 chance each */
}

TEST(error_names_and_messages)
{
    ASSERT_STREQ(kite_err_name(KITE_ERR_PROTOCOL), "KITE_ERR_PROTOCOL");
    ASSERT_STREQ(kite_err_name(-ECONNRESET), "ECONNRESET");
    ASSERT(strstr(kite_strerror(KITE_ERR_NOMEM), "memory") != NULL);
    ASSERT_STREQ(kite_err_name(-4999), "KITE_ERR_UNKNOWN");
    ASSERT_EQ(kite_version(), KITE_VERSION_NUM);
}

TEST(ieq_is_ascii_case_insensitive)
{
    ASSERT(kite__ieq("WebSocket", 9, "websocket", 9));
    ASSERT(!kite__ieq("websocket", 9, "websockets", 10));
    ASSERT(!kite__ieq("a", 1, "b", 1));
}

/* Every length the word-wise compare splits differently (under 4, 4-7, whole words, an
 * overlapping last word), with a case change and a real difference at every position:
 * a byte no word compare looks at would pass a wrong name. */
TEST(ieq_checks_every_byte_at_every_length)
{
    char a[40] = {0}, b[40] = {0};
    for (size_t n = 0; n <= sizeof(a); n++) {
        for (size_t i = 0; i < n; i++)
            a[i] = (char)('a' + i % 26);
        memcpy(b, a, n);
        ASSERT(kite__ieq_n(a, b, n));
        for (size_t i = 0; i < n; i++) {
            b[i] = (char)(a[i] - 32); /* upper case */
            ASSERT(kite__ieq_n(a, b, n));
            b[i] = '-'; /* not a letter: differs whatever the case */
            ASSERT(!kite__ieq_n(a, b, n));
            ASSERT(!kite__ieq_n(b, a, n));
            b[i] = a[i];
        }
    }
    /* Letters only fold with letters: '@' (0x40) is not '`' (0x60). */
    ASSERT(!kite__ieq("ab@d", 4, "ab`d", 4));
}
