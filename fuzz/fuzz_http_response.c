/*
 * Fuzz the HTTP/1.1 response head parser (src/http/http_parse.c). Invariants: a head
 * length within the input and the limit, or a documented code; views inside the head;
 * status 100-999; resuming with last_len agrees with a fresh parse.
 */
#include <stdlib.h>

#include "http/http.h"

#define MAX_HEAD 4096
#define MAX_HEADERS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void inside(const char *buf, size_t n, const char *p, size_t len)
{
    check(len == 0 || (p && p >= buf && p + len <= buf + n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct kite_http_limits lim = {MAX_HEAD, MAX_HEADERS};
    struct kite_http_response resp;
    struct kite_http_header h[MAX_HEADERS];
    ssize_t n = kite__http_parse_response(buf, size, 0, &lim, &resp, h);
    check(n > 0 || n == KITE_INCOMPLETE || n == KITE_ERR_HTTP || n == KITE_ERR_HEAD_TOO_BIG);
    size_t split = size ? data[size - 1] % (size + 1) : 0;
    struct kite_http_response r2;
    struct kite_http_header h2[MAX_HEADERS];
    ssize_t a = kite__http_parse_response(buf, split, 0, &lim, &r2, h2);
    if (a == KITE_INCOMPLETE)
        check(kite__http_parse_response(buf, size, split, &lim, &r2, h2) == n);
    if (n <= 0)
        return 0;
    check((size_t)n <= size && (size_t)n <= MAX_HEAD && resp.num_headers <= MAX_HEADERS);
    check(split >= (size_t)n ? a == n : a == KITE_INCOMPLETE);
    check(resp.status >= 100 && resp.status <= 999);
    check(resp.reason.ptr != NULL);
    inside(buf, (size_t)n, resp.reason.ptr, resp.reason.len);
    for (size_t i = 0; i < resp.num_headers; i++) {
        inside(buf, (size_t)n, h[i].name, h[i].name_len);
        inside(buf, (size_t)n, h[i].value, h[i].value_len);
        check(kite__http_header_ok(&h[i]));
    }
    size_t pos = 0, count = 0;
    while (kite__http_header_next(h, resp.num_headers, "Set-Cookie", &pos))
        check(++count <= resp.num_headers);
    check(count == kite__http_header_count(h, resp.num_headers, "set-cookie"));
    return 0;
}
