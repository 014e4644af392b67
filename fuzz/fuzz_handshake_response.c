/*
 * Fuzz the client side of the opening handshake: the input is the server's response
 * bytes; the client offered a fixed key, two subprotocols and two extensions.
 * Invariants: acceptance implies status 101, a subprotocol (if any) that was offered
 * and lies inside the input, and only offered extensions; every refusal has a reason.
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

static const struct kite_view protocols[] = {{"chat", 4}, {"superchat", 9}};
static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char offer[] = "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame";

static bool offered_ext(struct kite_view name)
{
    return kite__ieq(name.ptr, name.len, "permessage-deflate", 18) ||
           kite__ieq(name.ptr, name.len, "x-webkit-deflate-frame", 22);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct kite_http_limits lim = {8192, MAX_HEADERS};
    struct kite_http_response resp;
    struct kite_http_header h[MAX_HEADERS];
    ssize_t n = kite__http_parse_response(buf, size, 0, &lim, &resp, h);
    if (n <= 0)
        return 0;
    struct kite_ws_client_req r;
    memset(&r, 0, sizeof(r));
    r.host = kite__view_cstr("server.example.com");
    r.protocols = protocols;
    r.num_protocols = 2;
    r.extensions = kite__view_cstr(offer);
    struct kite_ws_client_result res;
    int rc = kite__ws_client_check(&resp, &r, key, &res);
    check(res.status == resp.status);
    if (rc != KITE_OK) {
        check(rc == KITE_ERR_HANDSHAKE && res.error != KITE_WS_CLIENT_OK && res.reason);
        check((res.error == KITE_WS_CLIENT_STATUS) == (resp.status != 101));
        return 0;
    }
    check(res.error == KITE_WS_CLIENT_OK && res.reason == NULL && resp.status == 101);
    if (res.protocol.ptr) {
        check(res.protocol.ptr >= buf && res.protocol.ptr + res.protocol.len <= buf + n);
        check((res.protocol.len == 4 && !memcmp(res.protocol.ptr, "chat", 4)) ||
              (res.protocol.len == 9 && !memcmp(res.protocol.ptr, "superchat", 9)));
    }
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    size_t count = 0;
    kite__ws_ext_iter_headers(&it, h, resp.num_headers);
    while (kite__ws_ext_next(&it, &e) == 1) {
        check(offered_ext(e.name));
        count++;
    }
    check(count == res.num_extensions);
    return 0;
}
