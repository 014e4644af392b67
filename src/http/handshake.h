/*
 * handshake — the WebSocket opening handshake (RFC 6455 §4) on top of http.h, for both
 * roles, plus the Sec-WebSocket-Protocol / Sec-WebSocket-Extensions grammar (§9.1).
 * Stateless and sans-I/O: parse with kite__http_parse_request/response first, then
 * check the parsed head here; the writers append bytes to a kite_buf.
 *
 * Server:
 *   n = kite__http_parse_request(...)           -> 400 / 431 on error
 *   kite__ws_server_check(&req, &up)            -> up.status 400/405/426 on error:
 *       kite__ws_write_reject(&out, a, &up)        answer and close
 *   choose a subprotocol (kite__ws_protocol_next over req.headers) and extensions
 *   (kite__ws_ext_next over req.headers), then
 *   kite__ws_write_accept(&out, a, up.key, proto, ext, extra, n_extra)   -> 101
 *
 * Client:
 *   kite__ws_make_key(key);
 *   kite__ws_write_request(&out, a, &creq, key);
 *   n = kite__http_parse_response(...)
 *   kite__ws_client_check(&resp, &creq, key, &res) -> res.error says what was wrong
 */
#ifndef KITE_HANDSHAKE_H
#define KITE_HANDSHAKE_H

#include "http/http.h"

/* "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", RFC 6455 §1.3. */
#define KITE_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* base64 of 16 bytes (Sec-WebSocket-Key) and of 20 bytes (Sec-WebSocket-Accept). */
#define KITE_WS_KEY_LEN 24
#define KITE_WS_ACCEPT_LEN 28

/* ---------------------------------------------------------------------------------
 * Accept key (RFC 6455 §4.2.2 item 5.4): base64(SHA-1(key + GUID)).
 * `key` is the Sec-WebSocket-Key value as received (already trimmed; any length up to
 * 256 bytes is hashed as is). Writes 28 chars plus a NUL into out.
 * Returns KITE_OK, KITE_ERR_INVALID (key longer than 256), or KITE_ERR_CRYPTO.
 */
int kite__ws_accept_key(const char *key, size_t key_len, char out[KITE_WS_ACCEPT_LEN + 1]);

/* A fresh client key: 16 bytes from kite__random, base64 (§4.1 item 7). Writes 24
 * chars plus a NUL. KITE_OK or KITE_ERR_CRYPTO. */
int kite__ws_make_key(char out[KITE_WS_KEY_LEN + 1]);

/* ---------------------------------------------------------------------------------
 * Server side.
 */

/* The outcome of checking an upgrade request. Views point into the request buffer. */
struct kite_ws_upgrade {
    int status;           /* 0 when the request is a valid upgrade; else the status to
                             answer with: 400, 405 or 426 */
    const char *reason;   /* NULL when valid; else a short static English reason
                             ("missing Sec-WebSocket-Key"), fit for a response body */
    struct kite_view key; /* Sec-WebSocket-Key, trimmed; base64 of 16 bytes */
    struct kite_view host;   /* Host value */
    struct kite_view origin; /* Origin value, absent (ptr NULL) when not sent */
    size_t num_protocols;    /* subprotocols offered (elements over all lines) */
    size_t num_extensions;   /* extension offers (over all lines) */
};

/*
 * Validate a parsed request as a WebSocket upgrade (RFC 6455 §4.2.1), in this order:
 *   method GET, else 405 (RFC 6455 §4.2.1 item 1; the reject writer adds Allow: GET);
 *   HTTP/1.1 or later, else 400;
 *   exactly one Host, non-empty, else 400 (RFC 9112 §3.2);
 *   no request body (Content-Length other than 0, or Transfer-Encoding), else 400:
 *       bytes after the head are WebSocket frames;
 *   Upgrade lists "websocket", else 426 (the resource requires the upgrade,
 *       RFC 9110 §15.5.22);
 *   Connection lists "upgrade", else 400;
 *   Sec-WebSocket-Version: exactly one line, exactly "13", else 426 (§4.2.2, §4.4;
 *       a missing version is also 426: that is what pre-RFC draft clients send);
 *   Sec-WebSocket-Key: exactly one line, base64 decoding to 16 bytes, else 400;
 *   Sec-WebSocket-Protocol: a list of tokens, else 400;
 *   Sec-WebSocket-Extensions: valid §9.1 grammar, else 400;
 *   Origin: at most one line, else 400.
 * Returns KITE_OK (up->status == 0) or KITE_ERR_HANDSHAKE (up->status, up->reason set).
 * `req` must have been filled by kite__http_parse_request.
 */
int kite__ws_server_check(const struct kite_http_request *req, struct kite_ws_upgrade *up);

/*
 * Append the error response for a failed check: kite__http_write_error with
 * up->status and up->reason as the body; a 426 also carries
 * "Sec-WebSocket-Version: 13" (§4.4) and "Upgrade: websocket" (RFC 9110 §15.5.22).
 * KITE_OK, KITE_ERR_INVALID (up->status is 0), or KITE_ERR_NOMEM.
 */
int kite__ws_write_reject(struct kite_buf *out, const struct kite_allocator *a,
                          const struct kite_ws_upgrade *up);

/*
 * Append the 101 Switching Protocols response (§4.2.2 item 5):
 *   HTTP/1.1 101 Switching Protocols\r\n
 *   Upgrade: websocket\r\nConnection: Upgrade\r\n
 *   Sec-WebSocket-Accept: <accept>\r\n
 *   [Sec-WebSocket-Protocol: <protocol>\r\n]     when protocol.ptr != NULL
 *   [Sec-WebSocket-Extensions: <extensions>\r\n] when extensions.ptr and len > 0
 *   <extra headers>\r\n\r\n
 * `protocol` must be a token (one the client offered: the caller's job), `extensions`
 * a response value the caller built (no control characters). All inputs are copied.
 * Returns KITE_OK, KITE_ERR_INVALID (bad protocol, extensions or extra header; nothing
 * appended), KITE_ERR_CRYPTO, or KITE_ERR_NOMEM (out may hold a partial response).
 */
int kite__ws_write_accept(struct kite_buf *out, const struct kite_allocator *a,
                          struct kite_view key, struct kite_view protocol,
                          struct kite_view extensions, const struct kite_http_header *extra,
                          size_t num_extra);

/* ---------------------------------------------------------------------------------
 * Client side.
 */

/* What the client asks for. Everything is borrowed for the call. */
struct kite_ws_client_req {
    struct kite_view host;  /* host name or IP literal (IPv6 with or without brackets) */
    uint16_t port;          /* appended as ":port" to Host unless 0 (the caller omits
                               the scheme's default port, §4.1 item 4) */
    struct kite_view path;  /* path and query, "/chat?x=1"; empty or absent means "/" */
    const struct kite_view *protocols; /* offered subprotocols (tokens), in preference order */
    size_t num_protocols;
    struct kite_view extensions; /* Sec-WebSocket-Extensions offer, absent = none */
    struct kite_view origin;     /* absent = no Origin header */
    const struct kite_http_header *extra; /* more headers (Authorization, cookies...) */
    size_t num_extra;
};

/*
 * Append the upgrade request (§4.1):
 *   GET <path> HTTP/1.1\r\nHost: <host>[:<port>]\r\n
 *   Upgrade: websocket\r\nConnection: Upgrade\r\n
 *   Sec-WebSocket-Key: <key>\r\nSec-WebSocket-Version: 13\r\n
 *   [Sec-WebSocket-Protocol: p1, p2\r\n] [Sec-WebSocket-Extensions: ...\r\n]
 *   [Origin: ...\r\n] <extra>\r\n\r\n
 * `key` comes from kite__ws_make_key (24 chars). Returns KITE_OK, KITE_ERR_INVALID (empty
 * host, a path not starting with '/' or holding a space or control character, a
 * protocol that is not a token, a bad extensions/origin/extra value; nothing appended),
 * or KITE_ERR_NOMEM (out may hold a partial request).
 */
int kite__ws_write_request(struct kite_buf *out, const struct kite_allocator *a,
                           const struct kite_ws_client_req *r, const char *key);

/* Why a server's response was refused (RFC 6455 §4.1, client requirements). */
enum kite_ws_client_error {
    KITE_WS_CLIENT_OK = 0,
    KITE_WS_CLIENT_STATUS,    /* status is not 101 (see res->status) */
    KITE_WS_CLIENT_UPGRADE,   /* Upgrade does not list "websocket" (§4.1 item 2) */
    KITE_WS_CLIENT_CONNECTION, /* Connection does not list "upgrade" (§4.1 item 3) */
    KITE_WS_CLIENT_ACCEPT,    /* Sec-WebSocket-Accept missing, repeated or wrong (item 4) */
    KITE_WS_CLIENT_EXTENSION, /* an extension that was not offered, or bad grammar (item 5) */
    KITE_WS_CLIENT_PROTOCOL,  /* a subprotocol not offered, several, or bad (item 6) */
};

struct kite_ws_client_result {
    enum kite_ws_client_error error;
    int status;              /* the response's status code */
    const char *reason;      /* NULL when OK; else a short static English reason */
    struct kite_view protocol; /* the chosen subprotocol, absent when none */
    size_t num_extensions;   /* accepted extension elements (iterate the response
                                headers with kite__ws_ext_iter_headers) */
};

/*
 * Check the server's response head against what was asked (§4.1, the client's
 * checks, in the order status, Upgrade, Connection, Accept, Extensions, Protocol).
 * `r` is the request as sent (its protocols and extension offer are what was offered)
 * and `key` the 24-char key sent. Returns KITE_OK or KITE_ERR_HANDSHAKE (res->error,
 * res->reason and res->status tell why). On failure the client must _Fail the
 * WebSocket Connection_ (close the TCP connection).
 */
int kite__ws_client_check(const struct kite_http_response *resp,
                          const struct kite_ws_client_req *r, const char *key,
                          struct kite_ws_client_result *res);

/* ---------------------------------------------------------------------------------
 * Header grammar (RFC 6455 §4.3, §9.1).
 */

/*
 * Sec-WebSocket-Protocol elements across all lines of a head (a list of tokens,
 * §4.1 item 10; empty elements skipped). Set `it` up with
 *     kite__http_list_init(&it, headers, n, "Sec-WebSocket-Protocol");
 * Returns 1 with the next token, 0 at the end, or KITE_ERR_HANDSHAKE when an element
 * is not a token.
 */
int kite__ws_protocol_next(struct kite_http_list_iter *it, struct kite_view *proto);

/* Limits of the fixed-size offer record; more is KITE_ERR_LIMIT from kite__ws_ext_next. */
#define KITE_WS_EXT_MAX_PARAMS 16

/* One extension parameter: name [= value]. */
struct kite_ws_ext_param {
    struct kite_view name;  /* token */
    struct kite_view value; /* absent (ptr NULL) for a bare name; raw bytes as sent,
                               quotes excluded: unescape with kite__ws_ext_param_value */
    bool quoted;            /* value was a quoted-string */
};

/* One extension offer (or one accepted extension in a response). */
struct kite_ws_ext {
    struct kite_view name; /* token, e.g. "permessage-deflate" */
    size_t num_params;
    struct kite_ws_ext_param params[KITE_WS_EXT_MAX_PARAMS]; /* in order; duplicates kept */
};

/* An iterator over extension-list elements, in one string or across header lines. */
struct kite_ws_ext_iter {
    const struct kite_http_header *headers; /* NULL when iterating one string */
    size_t num_headers;
    size_t hi;        /* next header index to look at */
    const char *cur;  /* current value */
    size_t cur_len;
    size_t off;       /* position in cur */
    bool failed;      /* a malformed element was met: every later call fails too */
};

/* Iterate every Sec-WebSocket-Extensions line of a head, in order. */
void kite__ws_ext_iter_headers(struct kite_ws_ext_iter *it,
                               const struct kite_http_header *headers, size_t n);
/* Iterate one header value (e.g. the client's own offer string). */
void kite__ws_ext_iter_value(struct kite_ws_ext_iter *it, const char *value, size_t len);

/*
 * Parse the next extension (§9.1):
 *   extension-list = 1#extension
 *   extension = extension-token *( ";" extension-param )
 *   extension-param = token [ "=" (token | quoted-string) ]
 * with optional SP/HTAB around ',', ';' and '='. A quoted-string value must unescape
 * to a token (§9.1). Empty list elements (", ,", a trailing comma) are skipped as RFC
 * 9110 §5.6.1 allows; an empty parameter (";;" or a trailing ';') is malformed.
 * Duplicate names and parameters are allowed here: their meaning is each extension's
 * business. Returns 1 with *ext filled (views into the header value), 0 at the end,
 * KITE_ERR_HANDSHAKE when malformed (the iterator then stays at the error), or
 * KITE_ERR_LIMIT for more than KITE_WS_EXT_MAX_PARAMS parameters.
 */
int kite__ws_ext_next(struct kite_ws_ext_iter *it, struct kite_ws_ext *ext);

/*
 * Copy a parameter's value, unescaped (quoted-pair "\x" -> "x", RFC 9110 §5.6.4),
 * into out[0..cap) followed by a NUL. Returns its length (without the NUL),
 * KITE_ERR_NOTFOUND when the parameter has no value, or KITE_ERR_INVALID when cap is
 * too small (value length + 1 is always enough).
 */
ssize_t kite__ws_ext_param_value(const struct kite_ws_ext_param *p, char *out, size_t cap);

/* Is the parameter's (unescaped) value equal to `s` (case-sensitive)? Values are
 * compared after unescaping, without copying. False when the parameter has no value. */
bool kite__ws_ext_param_equals(const struct kite_ws_ext_param *p, const char *s, size_t len);

#endif
