/*
 * Fuzz the HTTP/1.1 request head parser (src/http/http_parse.c) and the helpers that
 * read a parsed request: target split, percent-decoding, query and list iteration.
 * Invariants: the result is a head length within the input and the limit, or one of
 * the documented codes; views stay inside the head; a prefix of a whole head is
 * incomplete; resuming with last_len gives the same answer as parsing from scratch.
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

static void exercise_target(struct kite_view target)
{
    struct kite_view path, query, name, value;
    if (kite__http_split_target(target, &path, &query) != KITE_OK)
        return;
    char out[MAX_HEAD];
    ssize_t d = kite__http_pct_decode(path.ptr, path.len, out, sizeof(out), false);
    check(d == KITE_ERR_HTTP || (d >= 0 && (size_t)d <= path.len));
    size_t pos = 0, count = 0;
    while (kite__http_query_next(query, &pos, &name, &value)) {
        check(pos <= query.len && ++count <= query.len);
        inside(query.ptr, query.len, name.ptr, name.len);
        inside(query.ptr, query.len, value.ptr, value.len);
        d = kite__http_pct_decode(value.ptr, value.len, out, sizeof(out), true);
        check(d == KITE_ERR_HTTP || (d >= 0 && (size_t)d <= value.len));
    }
    (void)kite__http_query_get(query, "room", 4, &value);
}

static void exercise_headers(const char *buf, size_t n, const struct kite_http_header *h,
                             size_t nh)
{
    for (size_t i = 0; i < nh; i++) {
        inside(buf, n, h[i].name, h[i].name_len);
        inside(buf, n, h[i].value, h[i].value_len);
        check(kite__http_is_token(h[i].name, h[i].name_len));
    }
    struct kite_http_list_iter it;
    struct kite_view e;
    size_t count = 0;
    kite__http_list_init(&it, h, nh, "Connection");
    while (kite__http_list_next(&it, &e)) {
        inside(buf, n, e.ptr, e.len);
        check(e.len > 0 && ++count <= n);
    }
    (void)kite__http_has_token(h, nh, "Upgrade", "websocket");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct kite_http_limits lim = {MAX_HEAD, MAX_HEADERS};
    struct kite_http_request req;
    struct kite_http_header h[MAX_HEADERS];
    ssize_t n = kite__http_parse_request(buf, size, 0, &lim, &req, h);
    check(n > 0 || n == KITE_INCOMPLETE || n == KITE_ERR_HTTP || n == KITE_ERR_HEAD_TOO_BIG);
    /* Resume at a split chosen from the input: same answer. */
    size_t split = size ? data[0] % (size + 1) : 0;
    struct kite_http_request req2;
    struct kite_http_header h2[MAX_HEADERS];
    ssize_t a = kite__http_parse_request(buf, split, 0, &lim, &req2, h2);
    if (a == KITE_INCOMPLETE)
        check(kite__http_parse_request(buf, size, split, &lim, &req2, h2) == n);
    if (n <= 0)
        return 0;
    check((size_t)n <= size && (size_t)n <= MAX_HEAD && req.num_headers <= MAX_HEADERS);
    check(split >= (size_t)n ? a == n : a == KITE_INCOMPLETE);
    inside(buf, (size_t)n, req.method.ptr, req.method.len);
    inside(buf, (size_t)n, req.target.ptr, req.target.len);
    check(req.method.len > 0 && req.target.len > 0 && req.version_minor >= 0 &&
          req.version_minor <= 9);
    exercise_target(req.target);
    exercise_headers(buf, (size_t)n, h, req.num_headers);
    return 0;
}
