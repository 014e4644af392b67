/*
 * client/url — WebSocket URIs (RFC 6455 §3):
 *
 *   ws-URI  = "ws:" "//" host [ ":" port ] path [ "?" query ]
 *   wss-URI = "wss:" "//" host [ ":" port ] path [ "?" query ]
 *
 * The scheme is case-insensitive; the port defaults to 80 (ws) and 443 (wss); an empty
 * path means "/"; a fragment is not allowed (§3: "#" must be escaped as %23); neither is
 * user info, which has no meaning for a WebSocket server. Hosts are reg-names, IPv4
 * addresses or IPv6 addresses in brackets (RFC 3986 §3.2.2; zone IDs are not taken).
 */
#ifndef KITE_CLIENT_URL_H
#define KITE_CLIENT_URL_H

#include "http/http.h"

struct kite__url {
    bool tls;                /* wss:// */
    bool ipv6;               /* the host was a bracketed IPv6 literal */
    bool default_port;       /* no port given: the scheme's (omitted from Host) */
    uint16_t port;           /* 1-65535 */
    struct kite_view host;   /* without brackets; into the parsed string */
    struct kite_view target; /* path and query, e.g. "/chat?x=1"; absent means "/" */
};

/* Parse `url` (NUL-terminated); views point into it. KITE_OK or KITE_ERR_URL. */
int kite__url_parse(const char *url, struct kite__url *out);

#endif
