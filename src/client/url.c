/* WebSocket URI parsing (client/url.h). */
#include "client/url.h"

/* RFC 3986 §2: unreserved / sub-delims / pct-encoded characters allowed in a reg-name. */
static bool regname_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return strchr("-._~!$&'()*+,;=%", c) != NULL && c != '\0';
}

static bool ipv6_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
           c == ':' || c == '.';
}

/* Path and query characters: visible ASCII except '#' (RFC 3986 §3.3-3.4, plus what
 * real servers take; a space or control character could not go on the request line). */
static bool target_ok(const char *p)
{
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '#')
            return false;
    }
    return true;
}

static int parse_scheme(const char *url, struct kite__url *out, const char **rest)
{
    if (kite__ieq(url, KITE_MIN(strlen(url), 5), "ws://", 5)) {
        out->tls = false;
        *rest = url + 5;
    } else if (kite__ieq(url, KITE_MIN(strlen(url), 6), "wss://", 6)) {
        out->tls = true;
        *rest = url + 6;
    } else {
        return KITE_ERR_URL;
    }
    return KITE_OK;
}

/* host: "[v6]" or a reg-name / IPv4. *p is left after it. */
static int parse_host(const char **p, struct kite__url *out)
{
    const char *s = *p;
    if (*s == '[') {
        const char *e = strchr(s, ']');
        if (!e || e == s + 1)
            return KITE_ERR_URL;
        for (const char *q = s + 1; q < e; q++)
            if (!ipv6_char((unsigned char)*q))
                return KITE_ERR_URL;
        out->host.ptr = s + 1;
        out->host.len = (size_t)(e - s - 1);
        out->ipv6 = true;
        *p = e + 1;
        return KITE_OK;
    }
    const char *q = s;
    while (*q && regname_char((unsigned char)*q))
        q++;
    if (q == s || q - s > 253)
        return KITE_ERR_URL;
    out->host.ptr = s;
    out->host.len = (size_t)(q - s);
    *p = q;
    return KITE_OK;
}

static int parse_port(const char **p, struct kite__url *out)
{
    const char *s = *p;
    out->default_port = true;
    out->port = out->tls ? 443 : 80;
    if (*s != ':')
        return KITE_OK;
    s++;
    unsigned long v = 0;
    const char *start = s;
    while (*s >= '0' && *s <= '9' && s - start < 6)
        v = v * 10 + (unsigned long)(*s++ - '0');
    if (s == start || v == 0 || v > 65535)
        return KITE_ERR_URL;
    out->default_port = false;
    out->port = (uint16_t)v;
    *p = s;
    return KITE_OK;
}

int kite__url_parse(const char *url, struct kite__url *out)
{
    memset(out, 0, sizeof(*out));
    const char *p;
    if (!url || parse_scheme(url, out, &p) != KITE_OK)
        return KITE_ERR_URL;
    if (parse_host(&p, out) != KITE_OK || parse_port(&p, out) != KITE_OK)
        return KITE_ERR_URL;
    if (*p == '\0')
        return KITE_OK; /* no path: "/" */
    if (*p == '?') {
        /* "ws://h?x" is path-abempty (empty) then a query: send "/?x". Keep the view
         * as is and let the caller prefix the '/'. */
    } else if (*p != '/') {
        return KITE_ERR_URL; /* '@' (user info), '#', a stray character */
    }
    if (!target_ok(p))
        return KITE_ERR_URL;
    out->target.ptr = p;
    out->target.len = strlen(p);
    return KITE_OK;
}
