/* The WebSocket opening handshake, both roles (src/http/handshake.h), RFC 6455 §4. */
#include <stdio.h>

#include "http/handshake.h"
#include "test.h"

#define MAXH 32

static bool view_is(struct kite_view v, const char *s)
{
    return v.ptr && v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

/* Parse a request head (must be valid HTTP) and run the server's check on it. */
struct srv {
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    struct kite_ws_upgrade up;
    int rc;
};

static void server_check(struct srv *s, const char *head)
{
    ssize_t n = kite__http_parse_request(head, strlen(head), 0, NULL, &s->req, s->h);
    if (n != (ssize_t)strlen(head))
        kite_test_fail(__FILE__, __LINE__, "head did not parse (%zd): %s", n, head);
    s->rc = kite__ws_server_check(&s->req, &s->up);
}

/* Check `head` and return the status the server would answer with (0 = accepted). */
static int status_of(const char *head)
{
    struct srv s;
    server_check(&s, head);
    ASSERT_EQ(s.rc, s.up.status ? KITE_ERR_HANDSHAKE : KITE_OK);
    ASSERT((s.up.status == 0) == (s.up.reason == NULL));
    return s.up.status;
}

/* Build a request from the RFC 6455 §1.3 example with one line replaced or dropped:
 * `drop` names a header to leave out (NULL = none), `add` is extra lines ending in CRLF. */
static const char *request(const char *method_line, const char *drop, const char *add)
{
    static char buf[2048];
    static const char *lines[] = {
        "Host: server.example.com\r\n",
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Origin: http://example.com\r\n",
        "Sec-WebSocket-Protocol: chat, superchat\r\n",
        "Sec-WebSocket-Version: 13\r\n",
    };
    size_t off = (size_t)snprintf(buf, sizeof(buf), "%s\r\n",
                                  method_line ? method_line : "GET /chat HTTP/1.1");
    for (size_t i = 0; i < KITE_ARRAY_LEN(lines); i++) {
        if (drop && strncmp(lines[i], drop, strlen(drop)) == 0 && lines[i][strlen(drop)] == ':')
            continue;
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s", lines[i]);
    }
    snprintf(buf + off, sizeof(buf) - off, "%s\r\n", add ? add : "");
    return buf;
}

/* RFC 6455 §1.3: the example key and its accept value. */
TEST(accept_key_rfc_example)
{
    char out[KITE_WS_ACCEPT_LEN + 1];
    ASSERT_EQ(kite__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), KITE_OK);
    ASSERT_STREQ(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ASSERT_EQ(strlen(out), KITE_WS_ACCEPT_LEN);
    char big[300];
    memset(big, 'A', sizeof(big));
    ASSERT_EQ(kite__ws_accept_key(big, sizeof(big), out), KITE_ERR_INVALID);
}

/* RFC 6455 §4.1 item 7: a fresh, random 16-byte nonce, base64-encoded. */
TEST(make_key_is_random_16_bytes)
{
    char k1[KITE_WS_KEY_LEN + 1], k2[KITE_WS_KEY_LEN + 1];
    uint8_t raw[18];
    ASSERT_EQ(kite__ws_make_key(k1), KITE_OK);
    ASSERT_EQ(kite__ws_make_key(k2), KITE_OK);
    ASSERT_EQ(strlen(k1), KITE_WS_KEY_LEN);
    ASSERT_EQ(kite__base64_decode(k1, strlen(k1), raw, sizeof(raw)), 16);
    ASSERT(strcmp(k1, k2) != 0);
}

/* RFC 6455 §1.3 / §4.2.1: the example handshake is accepted and its parts reported. */
TEST(server_accepts_rfc_example)
{
    struct srv s;
    server_check(&s, request(NULL, NULL, NULL));
    ASSERT_EQ(s.rc, KITE_OK);
    ASSERT_EQ(s.up.status, 0);
    ASSERT(s.up.reason == NULL);
    ASSERT(view_is(s.up.key, "dGhlIHNhbXBsZSBub25jZQ=="));
    ASSERT(view_is(s.up.host, "server.example.com"));
    ASSERT(view_is(s.up.origin, "http://example.com"));
    ASSERT_EQ(s.up.num_protocols, 2);
    ASSERT_EQ(s.up.num_extensions, 0);
    /* No Origin: absent view (§4.2.1 item 7, optional for non-browser clients). */
    server_check(&s, request(NULL, "Origin", NULL));
    ASSERT_EQ(s.rc, KITE_OK);
    ASSERT(s.up.origin.ptr == NULL);
}

/* RFC 6455 §4.2.1 item 1: the method must be GET; 405 with Allow (RFC 9110 §15.5.6). */
TEST(server_rejects_non_get_with_405)
{
    ASSERT_EQ(status_of(request("POST /chat HTTP/1.1", NULL, NULL)), 405);
    ASSERT_EQ(status_of(request("get /chat HTTP/1.1", NULL, NULL)), 405);
    ASSERT_EQ(status_of(request("HEAD /chat HTTP/1.1", NULL, NULL)), 405);
}

/* RFC 6455 §4.2.1 item 1: HTTP/1.1 or higher. */
TEST(server_rejects_http10)
{
    ASSERT_EQ(status_of(request("GET /chat HTTP/1.0", NULL, NULL)), 400);
    ASSERT_EQ(status_of(request("GET /chat HTTP/1.2", NULL, NULL)), 0);
}

/* RFC 6455 §4.2.1 item 2 and RFC 9112 §3.2: exactly one Host. */
TEST(server_requires_one_host)
{
    ASSERT_EQ(status_of(request(NULL, "Host", NULL)), 400);
    ASSERT_EQ(status_of(request(NULL, NULL, "Host: other\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Host", "Host:\r\n")), 400);
}

/* RFC 6455 §4.2.1 item 3: Upgrade must list "websocket" (case-insensitive); a request
 * without it is told the upgrade is required (426, RFC 9110 §15.5.22). */
TEST(server_requires_upgrade_websocket)
{
    ASSERT_EQ(status_of(request(NULL, "Upgrade", NULL)), 426);
    ASSERT_EQ(status_of(request(NULL, "Upgrade", "Upgrade: h2c\r\n")), 426);
    ASSERT_EQ(status_of(request(NULL, "Upgrade", "Upgrade: websockets\r\n")), 426);
    ASSERT_EQ(status_of(request(NULL, "Upgrade", "Upgrade: WebSocket\r\n")), 0);
    ASSERT_EQ(status_of(request(NULL, "Upgrade", "Upgrade: h2c\r\nUpgrade: websocket\r\n")), 0);
    ASSERT_EQ(status_of(request(NULL, "Upgrade", "Upgrade: HTTP/2.0, \tWEBSOCKET \r\n")), 0);
}

/* RFC 6455 §4.2.1 item 4: Connection must list "Upgrade" (a token list, any case,
 * possibly with other options and over several lines). */
TEST(server_requires_connection_upgrade)
{
    ASSERT_EQ(status_of(request(NULL, "Connection", NULL)), 400);
    ASSERT_EQ(status_of(request(NULL, "Connection", "Connection: keep-alive\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Connection", "Connection: upgraded\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Connection", "Connection: keep-alive, Upgrade\r\n")), 0);
    ASSERT_EQ(status_of(request(NULL, "Connection", "Connection: keep-alive\r\nconnection: ,UPGRADE,\r\n")), 0);
}

/* RFC 6455 §4.2.1 item 6, §4.2.2, §4.4: version 13 only, else 426 naming 13. */
TEST(server_requires_version_13_with_426)
{
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Version", NULL)), 426);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Version", "Sec-WebSocket-Version: 8\r\n")), 426);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Version", "Sec-WebSocket-Version: 13, 8\r\n")), 426);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Version", "Sec-WebSocket-Version: 013\r\n")), 426);
    ASSERT_EQ(status_of(request(NULL, NULL, "Sec-WebSocket-Version: 13\r\n")), 426);
}

/* RFC 6455 §4.2.1 item 5: one Sec-WebSocket-Key that base64-decodes to 16 bytes. */
TEST(server_requires_valid_key)
{
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", NULL)), 400);
    ASSERT_EQ(status_of(request(NULL, NULL, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n")), 400);
    /* 15 bytes, 17 bytes, not base64, empty. */
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA*A==\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key:\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n")), 0);
    /* 18 bytes (24 characters, no padding), padding inside, a character past the
     * alphabet's ends; then every character the alphabet has. */
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA=A==\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAA{==\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAA.==\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Key", "Sec-WebSocket-Key: AZaz09+/AZaz09+/AZaz09==\r\n")), 0);
}

/* RFC 6455 §4.2.1 items 7-9: optional headers must still be well-formed. */
TEST(server_rejects_malformed_optional_headers)
{
    ASSERT_EQ(status_of(request(NULL, NULL, "Origin: http://evil.example\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: a b\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, "Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: a/b\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, NULL, "Sec-WebSocket-Extensions: x; y=\"a b\"\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, NULL, "Sec-WebSocket-Extensions: x;;y\r\n")), 400);
    struct srv s;
    server_check(&s, request(NULL, NULL,
                             "Sec-WebSocket-Protocol: v3\r\n"
                             "Sec-WebSocket-Extensions: permessage-deflate; "
                             "client_max_window_bits, foo\r\n"
                             "Sec-WebSocket-Extensions: bar\r\n"));
    ASSERT_EQ(s.rc, KITE_OK);
    ASSERT_EQ(s.up.num_protocols, 3);
    ASSERT_EQ(s.up.num_extensions, 3);
}

/* Bytes after the head are WebSocket frames, so an upgrade must not carry a body. */
TEST(server_rejects_body)
{
    ASSERT_EQ(status_of(request(NULL, NULL, "Content-Length: 5\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, NULL, "Transfer-Encoding: chunked\r\n")), 400);
    ASSERT_EQ(status_of(request(NULL, NULL, "Content-Length: 0\r\n")), 0);
}

/* RFC 6455 §4.4: a 426 carries Sec-WebSocket-Version: 13; it parses back as HTTP. */
TEST(reject_426_carries_version)
{
    struct srv s;
    server_check(&s, request(NULL, "Sec-WebSocket-Version", "Sec-WebSocket-Version: 7\r\n"));
    struct kite_buf b = {0};
    ASSERT_EQ(kite__ws_write_reject(&b, NULL, &s.up), KITE_OK);
    struct kite_http_response resp;
    struct kite_http_header h[MAXH];
    const char *p = (const char *)kite__buf_head(&b);
    ssize_t n = kite__http_parse_response(p, b.len, 0, NULL, &resp, h);
    ASSERT(n > 0);
    ASSERT_EQ(resp.status, 426);
    const struct kite_http_header *v =
        kite__http_header_next(h, resp.num_headers, "Sec-WebSocket-Version", NULL);
    ASSERT(v && v->value_len == 2 && memcmp(v->value, "13", 2) == 0);
    ASSERT(kite__http_has_token(h, resp.num_headers, "Upgrade", "websocket"));
    ASSERT(kite__http_has_token(h, resp.num_headers, "Connection", "close"));
    /* The body is the short reason. */
    ASSERT_EQ(b.len - (size_t)n, strlen(s.up.reason) + 1);
    ASSERT_MEMEQ(p + n, s.up.reason, strlen(s.up.reason));
    kite__buf_free(&b, NULL);

    /* A 400 has no version header; a 405 has Allow: GET. */
    server_check(&s, request("PUT / HTTP/1.1", NULL, NULL));
    ASSERT_EQ(kite__ws_write_reject(&b, NULL, &s.up), KITE_OK);
    n = kite__http_parse_response((const char *)kite__buf_head(&b), b.len, 0, NULL, &resp, h);
    ASSERT(n > 0 && resp.status == 405);
    ASSERT(kite__http_header_next(h, resp.num_headers, "Allow", NULL));
    ASSERT(!kite__http_header_next(h, resp.num_headers, "Sec-WebSocket-Version", NULL));
    kite__buf_free(&b, NULL);

    struct kite_ws_upgrade ok = {0};
    ASSERT_EQ(kite__ws_write_reject(&b, NULL, &ok), KITE_ERR_INVALID);
}

/* RFC 6455 §4.2.2 item 5: 101, Upgrade, Connection, Accept, chosen protocol/extensions. */
TEST(write_accept_101)
{
    struct kite_buf b = {0};
    struct kite_http_header extra[] = {{"Set-Cookie", 10, "a=b", 3}};
    ASSERT_EQ(kite__ws_write_accept(&b, NULL, kite__view_cstr("dGhlIHNhbXBsZSBub25jZQ=="),
                                    kite__view_cstr("chat"),
                                    kite__view_cstr("permessage-deflate"), extra, 1),
              KITE_OK);
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Sec-WebSocket-Protocol: chat\r\n"
                               "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                               "Set-Cookie: a=b\r\n\r\n";
    ASSERT_EQ(b.len, sizeof(want) - 1);
    ASSERT_MEMEQ(kite__buf_head(&b), want, sizeof(want) - 1);
    kite__buf_free(&b, NULL);
    /* Without protocol and extensions. */
    struct kite_view none = {NULL, 0};
    ASSERT_EQ(kite__ws_write_accept(&b, NULL, kite__view_cstr("dGhlIHNhbXBsZSBub25jZQ=="), none,
                                    none, NULL, 0),
              KITE_OK);
    ASSERT(b.len > 0 && !memmem(kite__buf_head(&b), b.len, "Sec-WebSocket-Protocol", 22));
    ASSERT(!memmem(kite__buf_head(&b), b.len, "Extensions", 10));
    kite__buf_free(&b, NULL);
}

/* No header injection through anything the caller passes. */
TEST(write_accept_refuses_bad_input)
{
    struct kite_buf b = {0};
    struct kite_view key = kite__view_cstr("dGhlIHNhbXBsZSBub25jZQ=="), none = {NULL, 0};
    struct kite_http_header bad = {"X", 1, "1\r\nY: 2", 7};
    ASSERT_EQ(kite__ws_write_accept(&b, NULL, key, kite__view_cstr("a b"), none, NULL, 0),
              KITE_ERR_INVALID);
    ASSERT_EQ(kite__ws_write_accept(&b, NULL, key, none, kite__view_cstr("x\r\nY: z"), NULL, 0),
              KITE_ERR_INVALID);
    ASSERT_EQ(kite__ws_write_accept(&b, NULL, key, none, none, &bad, 1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__ws_write_accept(&b, NULL, none, none, none, NULL, 0), KITE_ERR_INVALID);
    ASSERT_EQ(b.len, 0);
    kite__buf_free(&b, NULL);
}

/* ---- client side ---- */

static const struct kite_view offered_protocols[] = {{"chat", 4}, {"superchat", 9}};

static struct kite_ws_client_req client_req(void)
{
    struct kite_ws_client_req r;
    memset(&r, 0, sizeof(r));
    r.host = kite__view_cstr("server.example.com");
    r.path = kite__view_cstr("/chat?x=1");
    r.protocols = offered_protocols;
    r.num_protocols = 2;
    r.extensions = kite__view_cstr("permessage-deflate; client_max_window_bits, x-foo");
    r.origin = kite__view_cstr("http://example.com");
    return r;
}

/* RFC 6455 §4.1: the request a client writes is one our server accepts. */
TEST(client_request_round_trip)
{
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    struct kite_ws_client_req r = client_req();
    struct kite_http_header extra[] = {{"Authorization", 13, "Bearer t", 8}};
    r.extra = extra;
    r.num_extra = 1;
    r.port = 8080;
    struct kite_buf b = {0};
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, key), KITE_OK);
    const char *p = (const char *)kite__buf_head(&b);
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    ASSERT_EQ(kite__http_parse_request(p, b.len, 0, NULL, &req, h), b.len);
    ASSERT(view_is(req.method, "GET"));
    ASSERT(view_is(req.target, "/chat?x=1"));
    ASSERT_EQ(req.version_minor, 1);
    struct kite_ws_upgrade up;
    ASSERT_EQ(kite__ws_server_check(&req, &up), KITE_OK);
    ASSERT(view_is(up.key, key));
    ASSERT(view_is(up.host, "server.example.com:8080"));
    ASSERT(view_is(up.origin, "http://example.com"));
    ASSERT_EQ(up.num_protocols, 2);
    ASSERT_EQ(up.num_extensions, 2);
    const struct kite_http_header *x =
        kite__http_header_next(h, req.num_headers, "Sec-WebSocket-Protocol", NULL);
    ASSERT(x && x->value_len == 15 && memcmp(x->value, "chat, superchat", 15) == 0);
    ASSERT(kite__http_header_next(h, req.num_headers, "Authorization", NULL));
    kite__buf_free(&b, NULL);
}

/* RFC 6455 §4.1 item 4: Host carries the port when it is not the default (the caller
 * passes 0 then); IPv6 literals are bracketed (RFC 3986 §3.2.2); empty path is "/". */
TEST(client_request_host_forms)
{
    struct kite_ws_client_req r;
    memset(&r, 0, sizeof(r));
    r.host = kite__view_cstr("::1");
    r.port = 9000;
    struct kite_buf b = {0};
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, "AAAAAAAAAAAAAAAAAAAAAA=="), KITE_OK);
    ASSERT(memmem(kite__buf_head(&b), b.len, "GET / HTTP/1.1\r\nHost: [::1]:9000\r\n", 34));
    ASSERT(!memmem(kite__buf_head(&b), b.len, "Origin", 6));
    ASSERT(!memmem(kite__buf_head(&b), b.len, "Sec-WebSocket-Protocol", 22));
    kite__buf_free(&b, NULL);
    r.host = kite__view_cstr("[::1]");
    r.port = 0;
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, "AAAAAAAAAAAAAAAAAAAAAA=="), KITE_OK);
    ASSERT(memmem(kite__buf_head(&b), b.len, "\r\nHost: [::1]\r\n", 15));
    kite__buf_free(&b, NULL);
}

TEST(client_request_refuses_bad_input)
{
    struct kite_buf b = {0};
    static const char key[] = "AAAAAAAAAAAAAAAAAAAAAA==";
    struct kite_ws_client_req r = client_req();
    r.host = kite__view_cstr("");
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, key), KITE_ERR_INVALID);
    r = client_req();
    r.host = kite__view_cstr("a b");
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, key), KITE_ERR_INVALID);
    r = client_req();
    r.path = kite__view_cstr("chat");
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, key), KITE_ERR_INVALID);
    r.path = kite__view_cstr("/a b");
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, key), KITE_ERR_INVALID);
    r = client_req();
    struct kite_view bad_proto[] = {{"a,b", 3}};
    r.protocols = bad_proto;
    r.num_protocols = 1;
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, key), KITE_ERR_INVALID);
    r = client_req();
    r.origin = kite__view_cstr("x\r\nEvil: 1");
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, key), KITE_ERR_INVALID);
    r = client_req();
    ASSERT_EQ(kite__ws_write_request(&b, NULL, &r, "short"), KITE_ERR_INVALID);
    ASSERT_EQ(b.len, 0);
    kite__buf_free(&b, NULL);
}

/* Parse `resp_head` and run the client's check against client_req() and the §1.3 key. */
static int client_check(const char *resp_head, struct kite_ws_client_result *res)
{
    static struct kite_http_response resp;
    static struct kite_http_header h[MAXH];
    ssize_t n = kite__http_parse_response(resp_head, strlen(resp_head), 0, NULL, &resp, h);
    if (n != (ssize_t)strlen(resp_head))
        kite_test_fail(__FILE__, __LINE__, "response did not parse (%zd)", n);
    struct kite_ws_client_req r = client_req();
    int rc = kite__ws_client_check(&resp, &r, "dGhlIHNhbXBsZSBub25jZQ==", res);
    ASSERT_EQ(rc, res->error ? KITE_ERR_HANDSHAKE : KITE_OK);
    ASSERT((res->error == KITE_WS_CLIENT_OK) == (res->reason == NULL));
    return res->error;
}

#define OK_STATUS "HTTP/1.1 101 Switching Protocols\r\n"
#define OK_UPGRADE "Upgrade: websocket\r\n"
#define OK_CONN "Connection: Upgrade\r\n"
#define OK_ACCEPT "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

/* RFC 6455 §4.1 (client's checks of the response): a correct response passes. */
TEST(client_accepts_valid_response)
{
    struct kite_ws_client_result res;
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT "\r\n", &res), KITE_WS_CLIENT_OK);
    ASSERT_EQ(res.status, 101);
    ASSERT(res.protocol.ptr == NULL);
    ASSERT_EQ(res.num_extensions, 0);
    ASSERT_EQ(client_check(OK_STATUS "upgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n" OK_ACCEPT
                           "Sec-WebSocket-Protocol: superchat\r\n"
                           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=15\r\n"
                           "Sec-WebSocket-Extensions: X-FOO\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_OK);
    ASSERT(view_is(res.protocol, "superchat"));
    ASSERT_EQ(res.num_extensions, 2);
}

/* RFC 6455 §4.1 item 1: a status other than 101 is reported as such, with the status. */
TEST(client_reports_non_101)
{
    struct kite_ws_client_result res;
    ASSERT_EQ(client_check("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", &res),
              KITE_WS_CLIENT_STATUS);
    ASSERT_EQ(res.status, 403);
    ASSERT_EQ(client_check("HTTP/1.1 200 OK\r\n" OK_UPGRADE OK_CONN OK_ACCEPT "\r\n", &res),
              KITE_WS_CLIENT_STATUS);
    ASSERT_EQ(res.status, 200);
}

/* RFC 6455 §4.1 items 2-3: Upgrade websocket and Connection upgrade are required. */
TEST(client_requires_upgrade_and_connection)
{
    struct kite_ws_client_result res;
    ASSERT_EQ(client_check(OK_STATUS OK_CONN OK_ACCEPT "\r\n", &res), KITE_WS_CLIENT_UPGRADE);
    ASSERT_EQ(client_check(OK_STATUS "Upgrade: h2c\r\n" OK_CONN OK_ACCEPT "\r\n", &res),
              KITE_WS_CLIENT_UPGRADE);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_ACCEPT "\r\n", &res), KITE_WS_CLIENT_CONNECTION);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE "Connection: close\r\n" OK_ACCEPT "\r\n", &res),
              KITE_WS_CLIENT_CONNECTION);
}

/* RFC 6455 §4.1 item 4: the accept value must be base64(SHA-1(key + GUID)). */
TEST(client_requires_matching_accept)
{
    struct kite_ws_client_result res;
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN "\r\n", &res), KITE_WS_CLIENT_ACCEPT);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN
                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_ACCEPT);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN
                           "Sec-WebSocket-Accept: S3PPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_ACCEPT);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT OK_ACCEPT "\r\n", &res),
              KITE_WS_CLIENT_ACCEPT);
}

/* RFC 6455 §4.1 item 5: only extensions the client offered, in §9.1 syntax. */
TEST(client_rejects_unoffered_extension)
{
    struct kite_ws_client_result res;
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
                           "Sec-WebSocket-Extensions: x-bar\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_EXTENSION);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
                           "Sec-WebSocket-Extensions: x-foo, x-bar\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_EXTENSION);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
                           "Sec-WebSocket-Extensions: x-foo;\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_EXTENSION);
}

/* RFC 6455 §4.1 item 6: a subprotocol only if offered, and only one. */
TEST(client_rejects_unoffered_protocol)
{
    struct kite_ws_client_result res;
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
                           "Sec-WebSocket-Protocol: other\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_PROTOCOL);
    /* Subprotocol names match exactly (case-sensitive). */
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
                           "Sec-WebSocket-Protocol: Chat\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_PROTOCOL);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
                           "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_PROTOCOL);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
                           "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_PROTOCOL);
    ASSERT_EQ(client_check(OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
                           "Sec-WebSocket-Protocol:\r\n\r\n",
                           &res),
              KITE_WS_CLIENT_PROTOCOL);
}

/* A protocol in the answer when none was offered is unoffered too (§4.1 item 6). */
TEST(client_rejects_protocol_when_none_offered)
{
    static const char r[] = OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
        "Sec-WebSocket-Protocol: chat\r\n\r\n";
    struct kite_http_response resp;
    struct kite_http_header h[MAXH];
    ASSERT(kite__http_parse_response(r, sizeof(r) - 1, 0, NULL, &resp, h) > 0);
    struct kite_ws_client_req req;
    memset(&req, 0, sizeof(req));
    req.host = kite__view_cstr("h");
    struct kite_ws_client_result res;
    ASSERT_EQ(kite__ws_client_check(&resp, &req, "dGhlIHNhbXBsZSBub25jZQ==", &res),
              KITE_ERR_HANDSHAKE);
    ASSERT_EQ(res.error, KITE_WS_CLIENT_PROTOCOL);
    /* And an extension when none was offered. */
    static const char r2[] = OK_STATUS OK_UPGRADE OK_CONN OK_ACCEPT
        "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    ASSERT(kite__http_parse_response(r2, sizeof(r2) - 1, 0, NULL, &resp, h) > 0);
    ASSERT_EQ(kite__ws_client_check(&resp, &req, "dGhlIHNhbXBsZSBub25jZQ==", &res),
              KITE_ERR_HANDSHAKE);
    ASSERT_EQ(res.error, KITE_WS_CLIENT_EXTENSION);
}

/* The whole exchange, both roles, with a fresh key (§4.1, §4.2). */
TEST(full_handshake_round_trip)
{
    char key[KITE_WS_KEY_LEN + 1];
    ASSERT_EQ(kite__ws_make_key(key), KITE_OK);
    struct kite_ws_client_req r = client_req();
    struct kite_buf cb = {0}, sb = {0};
    ASSERT_EQ(kite__ws_write_request(&cb, NULL, &r, key), KITE_OK);

    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    ASSERT_EQ(kite__http_parse_request((const char *)kite__buf_head(&cb), cb.len, 0, NULL, &req,
                                       h),
              cb.len);
    struct kite_ws_upgrade up;
    ASSERT_EQ(kite__ws_server_check(&req, &up), KITE_OK);
    /* The server picks the client's second protocol and the x-foo extension. */
    struct kite_http_list_iter it;
    struct kite_view proto, chosen = {NULL, 0};
    kite__http_list_init(&it, h, req.num_headers, "Sec-WebSocket-Protocol");
    while (kite__ws_protocol_next(&it, &proto) == 1)
        if (view_is(proto, "superchat"))
            chosen = proto;
    ASSERT(chosen.ptr);
    ASSERT_EQ(kite__ws_write_accept(&sb, NULL, up.key, chosen, kite__view_cstr("x-foo"), NULL, 0),
              KITE_OK);

    struct kite_http_response resp;
    struct kite_http_header rh[MAXH];
    ASSERT_EQ(kite__http_parse_response((const char *)kite__buf_head(&sb), sb.len, 0, NULL, &resp,
                                        rh),
              sb.len);
    struct kite_ws_client_result res;
    ASSERT_EQ(kite__ws_client_check(&resp, &r, key, &res), KITE_OK);
    ASSERT(view_is(res.protocol, "superchat"));
    ASSERT_EQ(res.num_extensions, 1);
    /* A different key makes the same response fail (§4.1 item 4). */
    char other[KITE_WS_KEY_LEN + 1];
    ASSERT_EQ(kite__ws_make_key(other), KITE_OK);
    ASSERT_EQ(kite__ws_client_check(&resp, &r, other, &res), KITE_ERR_HANDSHAKE);
    ASSERT_EQ(res.error, KITE_WS_CLIENT_ACCEPT);
    kite__buf_free(&cb, NULL);
    kite__buf_free(&sb, NULL);
}

/* Out of memory in any writer is KITE_ERR_NOMEM, never a crash or a leak (DESIGN §6). */
TEST(writers_oom)
{
    for (long i = 1; i < 40; i++) {
        struct kite_test_alloc st = {0};
        st.fail_at = i;
        const struct kite_allocator *a = kite_test_allocator(&st);
        struct kite_buf b = {0};
        struct kite_ws_client_req r = client_req();
        int rc = kite__ws_write_request(&b, a, &r, "dGhlIHNhbXBsZSBub25jZQ==");
        ASSERT(rc == KITE_OK || (rc == KITE_ERR_NOMEM && st.failed));
        kite__buf_free(&b, a);
        rc = kite__ws_write_accept(&b, a, kite__view_cstr("dGhlIHNhbXBsZSBub25jZQ=="),
                                   kite__view_cstr("chat"), kite__view_cstr("x"), NULL, 0);
        ASSERT(rc == KITE_OK || (rc == KITE_ERR_NOMEM && st.failed));
        kite__buf_free(&b, a);
        struct kite_ws_upgrade up = {426, "no", {0}, {0}, {0}, 0, 0};
        rc = kite__ws_write_reject(&b, a, &up);
        ASSERT(rc == KITE_OK || (rc == KITE_ERR_NOMEM && st.failed));
        kite__buf_free(&b, a);
        ASSERT_EQ(st.live, 0);
    }
}
