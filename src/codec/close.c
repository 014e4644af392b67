/*
 * codec/close — the rules for close frame payloads (RFC 6455 §5.5.1, §7.4).
 */
#include "codec/frame.h"

/*
 * §7.4.1 defines 1000-1011 (1004 reserved; 1005, 1006 and 1015 are never sent), IANA
 * added 1012-1014, 1016-2999 are reserved for future RFCs, 3000-3999 are registered
 * for libraries and frameworks and 4000-4999 are private use (§7.4.2). Codes below
 * 1000 are not used. So only 1000-1003, 1007-1014 and 3000-4999 may be on the wire.
 */
bool kite_close_code_is_valid(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    if (code < KITE_CLOSE_NORMAL || code > KITE_CLOSE_BAD_GATEWAY)
        return false;
    return code <= KITE_CLOSE_CANNOT_ACCEPT || code >= KITE_CLOSE_NOT_CONSISTENT;
}

uint16_t kite__close_parse(const uint8_t *payload, size_t len, uint16_t *code,
                           const uint8_t **reason, size_t *reason_len)
{
    *code = KITE_CLOSE_NO_STATUS;
    *reason = payload;
    *reason_len = 0;
    if (len == 0) /* §5.5.1: the body is optional; §7.1.5: then the code is 1005 */
        return 0;
    if (len == 1 || len > 125) /* §5.5.1: a body starts with a 2-byte code; §5.5 limit */
        return KITE_CLOSE_PROTOCOL_ERROR;
    unsigned c = ((unsigned)payload[0] << 8) | payload[1];
    if (!kite_close_code_is_valid(c)) /* §7.4 */
        return KITE_CLOSE_PROTOCOL_ERROR;
    /* §5.5.1: the reason "is not guaranteed to be human readable" but is UTF-8. */
    if (!kite_utf8_valid(payload + 2, len - 2))
        return KITE_CLOSE_NOT_CONSISTENT;
    *code = (uint16_t)c;
    *reason = payload + 2;
    *reason_len = len - 2;
    return 0;
}
