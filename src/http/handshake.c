/*
 * The WebSocket opening handshake (RFC 6455 §4): the server's checks of an upgrade
 * request and its 101 or error answer; the client's request and its checks of the
 * server's answer. Stateless: everything works on a parsed head (http_parse.c).
 */
#include <stdio.h>

#include "http/handshake.h"

/* Longest Sec-WebSocket-Key we will hash (a valid one is 24 bytes). */
#define KEY_HASH_MAX 256

int kite__ws_accept_key(const char *key, size_t key_len, char out[KITE_WS_ACCEPT_LEN + 1])
{
    /* §4.2.2 item 5.4: SHA-1 of the key as sent (not decoded) concatenated with the GUID,
     * then base64 of the 20-byte digest. */
    char joined[KEY_HASH_MAX + sizeof(KITE_WS_GUID)];
    uint8_t digest[20];
    if (key_len > KEY_HASH_MAX || (key_len && !key))
        return KITE_ERR_INVALID;
    if (key_len)
        memcpy(joined, key, key_len);
    memcpy(joined + key_len, KITE_WS_GUID, sizeof(KITE_WS_GUID) - 1);
    int rc = kite__sha1(joined, key_len + sizeof(KITE_WS_GUID) - 1, digest);
    if (rc != KITE_OK)
        return rc;
    kite__base64_encode(digest, sizeof(digest), out);
    return KITE_OK;
}

int kite__ws_make_key(char out[KITE_WS_KEY_LEN + 1])
{
    /* §4.1 item 7: a nonce of 16 random bytes, base64-encoded. */
    uint8_t nonce[16];
    int rc = kite__random(nonce, sizeof(nonce));
    if (rc != KITE_OK)
        return rc;
    kite__base64_encode(nonce, sizeof(nonce), out);
    return KITE_OK;
}

/* ---------------------------------------------------------------------------------
 * Server side.
 */

static int reject(struct kite_ws_upgrade *up, int status, const char *reason)
{
    up->status = status;
    up->reason = reason;
    return KITE_ERR_HANDSHAKE;
}

/* The request headers the server check looks at. */
enum {
    HF_HOST,
    HF_TRANSFER_ENCODING,
    HF_CONTENT_LENGTH,
    HF_UPGRADE,
    HF_CONNECTION,
    HF_VERSION,
    HF_KEY,
    HF_ORIGIN,
    HF_PROTOCOL,
    HF_EXTENSIONS,
    HF_COUNT,
    HF_OTHER = HF_COUNT,
};

/* What one pass over the headers found: how many lines of each, and the first. */
struct seen {
    size_t count[HF_COUNT];
    const struct kite_http_header *first[HF_COUNT];
    bool body; /* a Content-Length other than 0 */
};

/* Which of the fields above `h` is (ASCII case-insensitive, RFC 9110 §5.1): the length
 * picks the candidate, so each line costs at most two name comparisons. */
static int classify(const struct kite_http_header *h)
{
#define IS(lit) kite__ieq(h->name, h->name_len, lit, sizeof(lit) - 1)
    switch (h->name_len) {
    case 4:
        return IS("Host") ? HF_HOST : HF_OTHER;
    case 6:
        return IS("Origin") ? HF_ORIGIN : HF_OTHER;
    case 7:
        return IS("Upgrade") ? HF_UPGRADE : HF_OTHER;
    case 10:
        return IS("Connection") ? HF_CONNECTION : HF_OTHER;
    case 14:
        return IS("Content-Length") ? HF_CONTENT_LENGTH : HF_OTHER;
    case 17:
        return IS("Sec-WebSocket-Key")    ? HF_KEY
               : IS("Transfer-Encoding") ? HF_TRANSFER_ENCODING
                                         : HF_OTHER;
    case 21:
        return IS("Sec-WebSocket-Version") ? HF_VERSION : HF_OTHER;
    case 22:
        return IS("Sec-WebSocket-Protocol") ? HF_PROTOCOL : HF_OTHER;
    case 24:
        return IS("Sec-WebSocket-Extensions") ? HF_EXTENSIONS : HF_OTHER;
    default:
        return HF_OTHER;
    }
#undef IS
}

/* One pass over the headers; the checks below then look up nothing by name again. */
static void gather(const struct kite_http_request *req, struct seen *s)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct kite_http_header *h = &req->headers[i];
        int f = classify(h);
        if (f == HF_OTHER)
            continue;
        if (s->count[f]++ == 0)
            s->first[f] = h;
        if (f == HF_CONTENT_LENGTH && !kite__ieq(h->value, h->value_len, "0", 1))
            s->body = true;
    }
}

/* Does field `f` list `token` (RFC 9110 §5.6.1)? A single line, the usual case, is
 * split here; several go through the list iterator. */
static bool lists_token(const struct kite_http_request *req, const struct seen *s, int f,
                        const char *name, const char *token)
{
    if (s->count[f] == 0)
        return false;
    if (s->count[f] > 1)
        return kite__http_has_token(req->headers, req->num_headers, name, token);
    const struct kite_http_header *h = s->first[f];
    size_t tlen = strlen(token), i = 0;
    while (i <= h->value_len) {
        const char *start = h->value + i;
        const char *comma = memchr(start, ',', h->value_len - i);
        size_t n = comma ? (size_t)(comma - start) : h->value_len - i;
        size_t a = 0, b = n;
        while (a < b && (start[a] == ' ' || start[a] == '\t'))
            a++;
        while (b > a && (start[b - 1] == ' ' || start[b - 1] == '\t'))
            b--;
        if (kite__ieq(start + a, b - a, token, tlen))
            return true;
        i += n + 1;
    }
    return false;
}

/* §4.2.1 items 1-3: request line, Host, no body. */
static int check_http_parts(const struct kite_http_request *req, const struct seen *s,
                            struct kite_ws_upgrade *up)
{
    /* §4.1 item 2 / §4.2.1 item 1: "an HTTP/1.1 or higher GET request". */
    if (req->method.len != 3 || memcmp(req->method.ptr, "GET", 3) != 0)
        return reject(up, 405, "method must be GET");
    if (req->version_minor < 1)
        return reject(up, 400, "HTTP/1.1 or later required");
    /* §4.2.1 item 2 and RFC 9112 §3.2: exactly one Host. */
    size_t n = s->count[HF_HOST];
    const struct kite_http_header *h = s->first[HF_HOST];
    if (n != 1 || h->value_len == 0)
        return reject(up, 400, n > 1 ? "more than one Host" : "missing Host");
    up->host.ptr = h->value;
    up->host.len = h->value_len;
    /* A body would put non-frame bytes after the head: refuse one. */
    if (s->count[HF_TRANSFER_ENCODING] || s->body)
        return reject(up, 400, "upgrade request must not have a body");
    return KITE_OK;
}

/* Is this base64 of 16 bytes? Exactly the 24-character form: 22 characters of the
 * alphabet (RFC 4648 §4) and "==". Decoding it would tell nothing more. */
static bool key_ok(const char *v, size_t len)
{
    if (len != KITE_WS_KEY_LEN || v[22] != '=' || v[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    return true;
}

/* §4.2.1 items 3-6: Upgrade, Connection, key and version. */
static int check_ws_parts(const struct kite_http_request *req, const struct seen *s,
                          struct kite_ws_upgrade *up)
{
    /* §4.2.1 item 3; a plain request to a WebSocket resource is told the upgrade is
     * required (RFC 9110 §15.5.22). */
    if (!lists_token(req, s, HF_UPGRADE, "Upgrade", "websocket"))
        return reject(up, 426, "Upgrade: websocket required");
    /* §4.2.1 item 4. */
    if (!lists_token(req, s, HF_CONNECTION, "Connection", "upgrade"))
        return reject(up, 400, "Connection: upgrade required");
    /* §4.2.1 item 6 and §4.4: only version 13; say so with a 426. */
    const struct kite_http_header *h = s->first[HF_VERSION];
    if (s->count[HF_VERSION] != 1 || !kite__ieq(h->value, h->value_len, "13", 2))
        return reject(up, 426, "Sec-WebSocket-Version 13 required");
    /* §4.2.1 item 5: the key is base64 of 16 bytes. */
    size_t n = s->count[HF_KEY];
    h = s->first[HF_KEY];
    if (n != 1)
        return reject(up, 400, n ? "more than one Sec-WebSocket-Key" : "missing Sec-WebSocket-Key");
    if (!key_ok(h->value, h->value_len))
        return reject(up, 400, "invalid Sec-WebSocket-Key");
    up->key.ptr = h->value;
    up->key.len = h->value_len;
    return KITE_OK;
}

/* §4.2.1 items 7-9: Origin, subprotocols and extensions must at least be well-formed. */
static int check_optional_parts(const struct kite_http_request *req, const struct seen *s,
                                struct kite_ws_upgrade *up)
{
    if (s->count[HF_ORIGIN] > 1)
        return reject(up, 400, "more than one Origin");
    if (s->count[HF_ORIGIN]) {
        up->origin.ptr = s->first[HF_ORIGIN]->value;
        up->origin.len = s->first[HF_ORIGIN]->value_len;
    }
    int rc;
    if (s->count[HF_PROTOCOL]) {
        struct kite_http_list_iter it;
        struct kite_view proto;
        kite__http_list_init(&it, req->headers, req->num_headers, "Sec-WebSocket-Protocol");
        while ((rc = kite__ws_protocol_next(&it, &proto)) == 1)
            up->num_protocols++;
        if (rc < 0)
            return reject(up, 400, "invalid Sec-WebSocket-Protocol");
    }
    if (s->count[HF_EXTENSIONS]) {
        struct kite_ws_ext_iter ei;
        struct kite_ws_ext ext;
        kite__ws_ext_iter_headers(&ei, req->headers, req->num_headers);
        while ((rc = kite__ws_ext_next(&ei, &ext)) == 1)
            up->num_extensions++;
        if (rc < 0)
            return reject(up, 400, "invalid Sec-WebSocket-Extensions");
    }
    return KITE_OK;
}

int kite__ws_server_check(const struct kite_http_request *req, struct kite_ws_upgrade *up)
{
    struct seen s;
    memset(up, 0, sizeof(*up));
    gather(req, &s);
    int rc = check_http_parts(req, &s, up);
    if (rc == KITE_OK)
        rc = check_ws_parts(req, &s, up);
    if (rc == KITE_OK)
        rc = check_optional_parts(req, &s, up);
    return rc;
}

int kite__ws_write_reject(struct kite_buf *out, const struct kite_allocator *a,
                          const struct kite_ws_upgrade *up)
{
    static const struct kite_http_header h426[] = {
        {"Sec-WebSocket-Version", 21, "13", 2},
        {"Upgrade", 7, "websocket", 9},
    };
    if (up->status == 0)
        return KITE_ERR_INVALID;
    char body[128];
    const char *reason = up->reason ? up->reason : kite__http_status_text(up->status);
    int blen = snprintf(body, sizeof(body), "%s\n", reason);
    size_t bl = blen < 0 ? 0 : KITE_MIN((size_t)blen, sizeof(body) - 1);
    bool is426 = up->status == 426;
    return kite__http_write_error(out, a, up->status, is426 ? h426 : NULL, is426 ? 2 : 0, body,
                                  bl);
}

/* A single header value we are about to send: no control characters (no injection). */
static bool value_ok(struct kite_view v)
{
    struct kite_http_header h = {"X", 1, v.ptr, v.len};
    return kite__http_header_ok(&h);
}

static bool extras_ok(const struct kite_http_header *extra, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!kite__http_header_ok(&extra[i]))
            return false;
    return true;
}

/* Append "Name: value\r\n". */
static int append_field(struct kite_buf *out, const struct kite_allocator *a, const char *name,
                        struct kite_view v)
{
    struct kite_http_header h = {name, strlen(name), v.ptr, v.len};
    return kite__http_append_headers(out, a, &h, 1);
}

static int append_cstr(struct kite_buf *out, const struct kite_allocator *a, const char *s)
{
    return kite__buf_append(out, a, s, strlen(s));
}

int kite__ws_write_accept(struct kite_buf *out, const struct kite_allocator *a,
                          struct kite_view key, struct kite_view protocol,
                          struct kite_view extensions, const struct kite_http_header *extra,
                          size_t num_extra)
{
    if (!key.ptr || (protocol.ptr && !kite__http_is_token(protocol.ptr, protocol.len)) ||
        !value_ok(extensions) || !extras_ok(extra, num_extra))
        return KITE_ERR_INVALID;
    /* §4.2.2 item 5: status 101, Upgrade, Connection, Accept, then the choices. The
     * fixed part is formatted here in one piece, and the buffer grown once for all. */
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: ";
    char line[sizeof(head) - 1 + KITE_WS_ACCEPT_LEN + 3];
    memcpy(line, head, sizeof(head) - 1);
    int rc = kite__ws_accept_key(key.ptr, key.len, line + sizeof(head) - 1);
    if (rc != KITE_OK)
        return rc;
    memcpy(line + sizeof(line) - 3, "\r\n", 2);
    size_t total = sizeof(line) - 1 + 2;
    if (protocol.ptr)
        total += sizeof("Sec-WebSocket-Protocol: \r\n") - 1 + protocol.len;
    if (extensions.ptr && extensions.len)
        total += sizeof("Sec-WebSocket-Extensions: \r\n") - 1 + extensions.len;
    for (size_t i = 0; i < num_extra; i++)
        total += extra[i].name_len + extra[i].value_len + 4;
    if (!kite__buf_reserve(out, a, total))
        return KITE_ERR_NOMEM;
    rc = kite__buf_append(out, a, line, sizeof(line) - 1);
    if (rc == KITE_OK && protocol.ptr)
        rc = append_field(out, a, "Sec-WebSocket-Protocol", protocol);
    if (rc == KITE_OK && extensions.ptr && extensions.len)
        rc = append_field(out, a, "Sec-WebSocket-Extensions", extensions);
    if (rc == KITE_OK)
        rc = kite__http_append_headers(out, a, extra, num_extra);
    if (rc == KITE_OK)
        rc = kite__buf_append(out, a, "\r\n", 2);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Client side.
 */

/* A host we can put in a Host header: visible ASCII without URI delimiters. */
static bool host_ok(struct kite_view h)
{
    if (!h.ptr || h.len == 0)
        return false;
    for (size_t i = 0; i < h.len; i++) {
        unsigned char c = (unsigned char)h.ptr[i];
        if (c <= 0x20 || c >= 0x7f || strchr("/?#@\\\"<>{}|^`", c))
            return false;
    }
    return true;
}

/* A path we can put in a request line: "/" then visible ASCII. */
static bool path_ok(struct kite_view p)
{
    if (p.len == 0)
        return true; /* means "/" */
    if (p.ptr[0] != '/')
        return false;
    for (size_t i = 0; i < p.len; i++)
        if ((unsigned char)p.ptr[i] <= 0x20 || (unsigned char)p.ptr[i] >= 0x7f)
            return false;
    return true;
}

static bool request_ok(const struct kite_ws_client_req *r, const char *key)
{
    if (!key || strlen(key) != KITE_WS_KEY_LEN || !value_ok(kite__view_cstr(key)))
        return false;
    if (!host_ok(r->host) || !path_ok(r->path) || !value_ok(r->extensions) ||
        !value_ok(r->origin) || !extras_ok(r->extra, r->num_extra))
        return false;
    for (size_t i = 0; i < r->num_protocols; i++)
        if (!kite__http_is_token(r->protocols[i].ptr, r->protocols[i].len))
            return false;
    return true;
}

/* "GET <path> HTTP/1.1\r\nHost: <host>[:port]\r\n" (§4.1 items 1-4). */
static int append_request_line(struct kite_buf *out, const struct kite_allocator *a,
                               const struct kite_ws_client_req *r)
{
    bool v6 = memchr(r->host.ptr, ':', r->host.len) && r->host.ptr[0] != '[';
    char port[8] = "";
    if (r->port)
        snprintf(port, sizeof(port), ":%u", (unsigned)r->port);
    int rc = append_cstr(out, a, "GET ");
    if (rc == KITE_OK)
        rc = r->path.len ? kite__buf_append(out, a, r->path.ptr, r->path.len)
                         : append_cstr(out, a, "/");
    if (rc == KITE_OK)
        rc = append_cstr(out, a, v6 ? " HTTP/1.1\r\nHost: [" : " HTTP/1.1\r\nHost: ");
    if (rc == KITE_OK)
        rc = kite__buf_append(out, a, r->host.ptr, r->host.len);
    if (rc == KITE_OK && v6)
        rc = append_cstr(out, a, "]");
    if (rc == KITE_OK)
        rc = append_cstr(out, a, port);
    return rc == KITE_OK ? append_cstr(out, a, "\r\n") : rc;
}

static int append_protocols(struct kite_buf *out, const struct kite_allocator *a,
                            const struct kite_ws_client_req *r)
{
    if (r->num_protocols == 0)
        return KITE_OK;
    int rc = append_cstr(out, a, "Sec-WebSocket-Protocol: ");
    for (size_t i = 0; i < r->num_protocols && rc == KITE_OK; i++) {
        if (i)
            rc = append_cstr(out, a, ", ");
        if (rc == KITE_OK)
            rc = kite__buf_append(out, a, r->protocols[i].ptr, r->protocols[i].len);
    }
    return rc == KITE_OK ? append_cstr(out, a, "\r\n") : rc;
}

int kite__ws_write_request(struct kite_buf *out, const struct kite_allocator *a,
                           const struct kite_ws_client_req *r, const char *key)
{
    if (!request_ok(r, key))
        return KITE_ERR_INVALID;
    int rc = append_request_line(out, a, r);
    /* §4.1 items 5-9. */
    if (rc == KITE_OK)
        rc = append_cstr(out, a, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    if (rc == KITE_OK)
        rc = append_field(out, a, "Sec-WebSocket-Key", kite__view_cstr(key));
    if (rc == KITE_OK)
        rc = append_cstr(out, a, "Sec-WebSocket-Version: 13\r\n");
    if (rc == KITE_OK)
        rc = append_protocols(out, a, r);
    if (rc == KITE_OK && r->extensions.ptr && r->extensions.len)
        rc = append_field(out, a, "Sec-WebSocket-Extensions", r->extensions);
    if (rc == KITE_OK && r->origin.ptr)
        rc = append_field(out, a, "Origin", r->origin);
    if (rc == KITE_OK)
        rc = kite__http_append_headers(out, a, r->extra, r->num_extra);
    if (rc == KITE_OK)
        rc = kite__buf_append(out, a, "\r\n", 2);
    return rc;
}

static int fail(struct kite_ws_client_result *res, enum kite_ws_client_error e,
                const char *reason)
{
    res->error = e;
    res->reason = reason;
    return KITE_ERR_HANDSHAKE;
}

/* §4.1 client item 4: exactly one Sec-WebSocket-Accept, equal to what we expect. */
static bool accept_matches(const struct kite_http_response *resp, const char *key)
{
    if (kite__http_header_count(resp->headers, resp->num_headers, "Sec-WebSocket-Accept") != 1)
        return false;
    const struct kite_http_header *h =
        kite__http_header_next(resp->headers, resp->num_headers, "Sec-WebSocket-Accept", NULL);
    char want[KITE_WS_ACCEPT_LEN + 1];
    if (kite__ws_accept_key(key, strlen(key), want) != KITE_OK)
        return false;
    return h->value_len == KITE_WS_ACCEPT_LEN && memcmp(h->value, want, KITE_WS_ACCEPT_LEN) == 0;
}

/* Was an extension of this name in our offer? */
static bool ext_offered(struct kite_view offer, struct kite_view name)
{
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    kite__ws_ext_iter_value(&it, offer.ptr, offer.len);
    while (kite__ws_ext_next(&it, &e) == 1)
        if (kite__ieq(e.name.ptr, e.name.len, name.ptr, name.len))
            return true;
    return false;
}

/* §4.1 client item 5: only extensions we offered, in valid §9.1 syntax. */
static int check_extensions(const struct kite_http_response *resp,
                            const struct kite_ws_client_req *r, struct kite_ws_client_result *res)
{
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    int rc;
    kite__ws_ext_iter_headers(&it, resp->headers, resp->num_headers);
    while ((rc = kite__ws_ext_next(&it, &e)) == 1) {
        if (!ext_offered(r->extensions, e.name))
            return fail(res, KITE_WS_CLIENT_EXTENSION, "server accepted an extension not offered");
        res->num_extensions++;
    }
    if (rc < 0)
        return fail(res, KITE_WS_CLIENT_EXTENSION, "malformed Sec-WebSocket-Extensions");
    return KITE_OK;
}

/* §4.1 client item 6: at most one subprotocol, and one we offered. */
static int check_protocol(const struct kite_http_response *resp,
                          const struct kite_ws_client_req *r, struct kite_ws_client_result *res)
{
    size_t n = kite__http_header_count(resp->headers, resp->num_headers, "Sec-WebSocket-Protocol");
    if (n == 0)
        return KITE_OK;
    const struct kite_http_header *h =
        kite__http_header_next(resp->headers, resp->num_headers, "Sec-WebSocket-Protocol", NULL);
    if (n > 1 || !kite__http_is_token(h->value, h->value_len))
        return fail(res, KITE_WS_CLIENT_PROTOCOL, "server must select exactly one subprotocol");
    for (size_t i = 0; i < r->num_protocols; i++) {
        const struct kite_view *p = &r->protocols[i];
        if (p->len == h->value_len && memcmp(p->ptr, h->value, p->len) == 0) {
            res->protocol.ptr = h->value;
            res->protocol.len = h->value_len;
            return KITE_OK;
        }
    }
    return fail(res, KITE_WS_CLIENT_PROTOCOL, "server selected a subprotocol not offered");
}

int kite__ws_client_check(const struct kite_http_response *resp,
                          const struct kite_ws_client_req *r, const char *key,
                          struct kite_ws_client_result *res)
{
    memset(res, 0, sizeof(*res));
    res->status = resp->status;
    /* §4.1 client item 1: anything but 101 is handled per HTTP, not as WebSocket. */
    if (resp->status != 101)
        return fail(res, KITE_WS_CLIENT_STATUS, "status is not 101 Switching Protocols");
    if (!kite__http_has_token(resp->headers, resp->num_headers, "Upgrade", "websocket"))
        return fail(res, KITE_WS_CLIENT_UPGRADE, "missing Upgrade: websocket");
    if (!kite__http_has_token(resp->headers, resp->num_headers, "Connection", "upgrade"))
        return fail(res, KITE_WS_CLIENT_CONNECTION, "missing Connection: upgrade");
    if (!key || !accept_matches(resp, key))
        return fail(res, KITE_WS_CLIENT_ACCEPT, "Sec-WebSocket-Accept does not match the key");
    int rc = check_extensions(resp, r, res);
    if (rc == KITE_OK)
        rc = check_protocol(resp, r, res);
    return rc;
}
