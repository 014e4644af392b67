/*
 * Fuzz the server side of the opening handshake: parse a request head, validate it
 * as an upgrade (src/http/handshake.c), walk its Sec-WebSocket-Protocol and
 * Sec-WebSocket-Extensions grammar, and write the answer. Invariants: a rejection
 * names 400, 405 or 426 with a reason; an acceptance has a 24-char key inside the
 * input; the 101 or error response we write parses back as HTTP with the same status
 * and, for a 101, the right Sec-WebSocket-Accept.
 */
#include <stdlib.h>

#include "http/handshake.h"

#define MAX_HEADERS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void inside(const char *buf, size_t n, struct kite_view v)
{
    check(v.len == 0 || (v.ptr && v.ptr >= buf && v.ptr + v.len <= buf + n));
}

/* Walk every extension offer and copy out every parameter value. */
static size_t walk_extensions(const char *buf, size_t n, const struct kite_http_request *req)
{
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    size_t count = 0;
    kite__ws_ext_iter_headers(&it, req->headers, req->num_headers);
    while (kite__ws_ext_next(&it, &e) == 1) {
        inside(buf, n, e.name);
        check(kite__http_is_token(e.name.ptr, e.name.len) && e.num_params <= KITE_WS_EXT_MAX_PARAMS);
        for (size_t i = 0; i < e.num_params; i++) {
            char val[256];
            inside(buf, n, e.params[i].name);
            inside(buf, n, e.params[i].value);
            ssize_t l = kite__ws_ext_param_value(&e.params[i], val, sizeof(val));
            if (l >= 0) {
                /* §9.1: every value, once unescaped, is a token. */
                check(kite__http_is_token(val, (size_t)l));
                check(kite__ws_ext_param_equals(&e.params[i], val, (size_t)l));
            }
        }
        count++;
    }
    return count;
}

/* Write our answer and parse it back. */
static void answer(const struct kite_ws_upgrade *up, struct kite_view proto)
{
    struct kite_buf b = {0};
    int rc = up->status ? kite__ws_write_reject(&b, NULL, up)
                        : kite__ws_write_accept(&b, NULL, up->key, proto,
                                                kite__view_cstr("x-test"), NULL, 0);
    check(rc == KITE_OK);
    struct kite_http_response resp;
    struct kite_http_header h[MAX_HEADERS];
    ssize_t n = kite__http_parse_response((const char *)kite__buf_head(&b), b.len, 0, NULL, &resp,
                                          h);
    check(n > 0);
    check(resp.status == (up->status ? up->status : 101));
    if (!up->status) {
        char want[KITE_WS_ACCEPT_LEN + 1];
        const struct kite_http_header *a =
            kite__http_header_next(h, resp.num_headers, "Sec-WebSocket-Accept", NULL);
        check(kite__ws_accept_key(up->key.ptr, up->key.len, want) == KITE_OK);
        check(a && a->value_len == KITE_WS_ACCEPT_LEN && !memcmp(a->value, want, a->value_len));
    }
    kite__buf_free(&b, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct kite_http_limits lim = {8192, MAX_HEADERS};
    struct kite_http_request req;
    struct kite_http_header h[MAX_HEADERS];
    ssize_t n = kite__http_parse_request(buf, size, 0, &lim, &req, h);
    if (n <= 0)
        return 0;
    struct kite_ws_upgrade up;
    int rc = kite__ws_server_check(&req, &up);
    size_t exts = walk_extensions(buf, (size_t)n, &req);
    struct kite_view proto = {NULL, 0};
    if (rc == KITE_OK) {
        check(up.status == 0 && up.reason == NULL);
        check(up.key.len == KITE_WS_KEY_LEN);
        inside(buf, (size_t)n, up.key);
        inside(buf, (size_t)n, up.host);
        inside(buf, (size_t)n, up.origin);
        check(up.num_extensions == exts);
        struct kite_http_list_iter it;
        struct kite_view p;
        size_t count = 0;
        kite__http_list_init(&it, h, req.num_headers, "Sec-WebSocket-Protocol");
        while (kite__ws_protocol_next(&it, &p) == 1) {
            inside(buf, (size_t)n, p);
            if (!proto.ptr)
                proto = p;
            count++;
        }
        check(count == up.num_protocols);
    } else {
        check(rc == KITE_ERR_HANDSHAKE && up.reason != NULL);
        check(up.status == 400 || up.status == 405 || up.status == 426);
    }
    answer(&up, proto);
    return 0;
}
