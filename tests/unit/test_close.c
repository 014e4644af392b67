/* Unit tests for close frame rules (src/codec/close.c): RFC 6455 §5.5.1, §7.4. */
#include "codec/frame.h"
#include "test.h"

/* §7.4.1 and §7.4.2, written out as the RFC lists them, for every code up to 70000. */
TEST(close_code_validity_table)
{
    for (unsigned code = 0; code <= 70000; code++) {
        bool want;
        if (code < 1000) /* §7.4.2: 0-999 are not used */
            want = false;
        else if (code == 1004 || code == 1005 || code == 1006) /* reserved, never sent */
            want = false;
        else if (code <= 1014) /* §7.4.1 plus the IANA registry: 1012-1014 */
            want = true;
        else if (code < 3000) /* 1015 never sent; 1016-2999 reserved for RFCs */
            want = false;
        else if (code <= 4999) /* 3000-3999 registered, 4000-4999 private use */
            want = true;
        else
            want = false;
        if (kite_close_code_is_valid(code) != want)
            kite_test_fail(__FILE__, __LINE__, "code %u: got %d", code, !want);
    }
    ASSERT(!kite_close_code_is_valid(0xFFFFFFFFu));
}

static uint16_t parse(const char *payload, size_t len, uint16_t *code, size_t *rlen,
                      const uint8_t **reason)
{
    return kite__close_parse((const uint8_t *)payload, len, code, reason, rlen);
}

/* §5.5.1: the body may be empty; §7.1.5: the status is then 1005 (no code received). */
TEST(close_parse_empty)
{
    uint16_t code = 0;
    size_t rlen = 99;
    const uint8_t *reason;
    ASSERT_EQ(parse("", 0, &code, &rlen, &reason), 0);
    ASSERT_EQ(code, KITE_CLOSE_NO_STATUS);
    ASSERT_EQ(rlen, 0);
}

/* §5.5.1: a body, if present, starts with a two-byte code; one byte is a violation. */
TEST(close_parse_one_byte_is_protocol_error)
{
    uint16_t code;
    size_t rlen;
    const uint8_t *reason;
    ASSERT_EQ(parse("\x03", 1, &code, &rlen, &reason), KITE_CLOSE_PROTOCOL_ERROR);
}

/* §5.5.1: code in network byte order followed by the reason; a view, not a copy. */
TEST(close_parse_code_and_reason)
{
    static const char p[] = "\x03\xe8" "bye";
    uint16_t code;
    size_t rlen;
    const uint8_t *reason;
    ASSERT_EQ(parse(p, 5, &code, &rlen, &reason), 0);
    ASSERT_EQ(code, 1000);
    ASSERT_EQ(rlen, 3);
    ASSERT(reason == (const uint8_t *)p + 2);
    ASSERT_MEMEQ(reason, "bye", 3);
    ASSERT_EQ(parse("\x0f\xa0", 2, &code, &rlen, &reason), 0); /* 4000, no reason */
    ASSERT_EQ(code, 4000);
    ASSERT_EQ(rlen, 0);
}

/* §7.4: a close frame carrying a code that may not be sent fails with 1002. */
TEST(close_parse_invalid_codes)
{
    static const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000,
                                   65535};
    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000,
                                    3999, 4000, 4999};
    uint8_t p[2];
    uint16_t code;
    size_t rlen;
    const uint8_t *reason;
    for (size_t i = 0; i < KITE_ARRAY_LEN(bad); i++) {
        p[0] = (uint8_t)(bad[i] >> 8);
        p[1] = (uint8_t)bad[i];
        ASSERT_EQ(kite__close_parse(p, 2, &code, &reason, &rlen), KITE_CLOSE_PROTOCOL_ERROR);
    }
    for (size_t i = 0; i < KITE_ARRAY_LEN(good); i++) {
        p[0] = (uint8_t)(good[i] >> 8);
        p[1] = (uint8_t)good[i];
        ASSERT_EQ(kite__close_parse(p, 2, &code, &reason, &rlen), 0);
        ASSERT_EQ(code, good[i]);
    }
}

/* §5.5.1 + §8.1: the reason must be valid UTF-8, else 1007. */
TEST(close_parse_reason_utf8)
{
    uint16_t code;
    size_t rlen;
    const uint8_t *reason;
    ASSERT_EQ(parse("\x03\xe8" "caf\xc3\xa9", 7, &code, &rlen, &reason), 0);
    ASSERT_EQ(rlen, 5);
    ASSERT_EQ(parse("\x03\xe8" "caf\xc3", 6, &code, &rlen, &reason),
              KITE_CLOSE_NOT_CONSISTENT); /* cut-off character */
    ASSERT_EQ(parse("\x03\xe8\xed\xa0\x80", 5, &code, &rlen, &reason),
              KITE_CLOSE_NOT_CONSISTENT); /* surrogate */
    ASSERT_EQ(parse("\x03\xe8\xff", 3, &code, &rlen, &reason), KITE_CLOSE_NOT_CONSISTENT);
    /* The code is checked before the reason: an invalid code wins. */
    ASSERT_EQ(parse("\x03\xed\xff", 3, &code, &rlen, &reason), KITE_CLOSE_PROTOCOL_ERROR);
}

/* §5.5: control payloads are at most 125 bytes, so a reason is at most 123. */
TEST(close_parse_reason_length)
{
    uint8_t p[126];
    uint16_t code;
    size_t rlen;
    const uint8_t *reason;
    p[0] = 0x03;
    p[1] = 0xe9; /* 1001 */
    memset(p + 2, 'r', sizeof(p) - 2);
    ASSERT_EQ(kite__close_parse(p, 2 + KITE_CLOSE_REASON_MAX, &code, &reason, &rlen), 0);
    ASSERT_EQ(rlen, KITE_CLOSE_REASON_MAX);
    ASSERT_EQ(kite__close_parse(p, 126, &code, &reason, &rlen), KITE_CLOSE_PROTOCOL_ERROR);
}
