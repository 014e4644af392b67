/* HTTP/1.1 head parser and helpers (src/http/http.h): RFC 9110, RFC 9112, RFC 3986. */
#include <sys/mman.h>
#include <unistd.h>

#include "http/http.h"
#include "test.h"

#define MAXH 16

static const char REQ[] = "GET /chat?room=a%20b HTTP/1.1\r\n"
                          "Host: server.example.com\r\n"
                          "Upgrade:websocket\r\n"
                          "Connection: \t Upgrade \t\r\n"
                          "X-Empty:\r\n"
                          "X-Obs-Text: caf\xc3\xa9\r\n"
                          "\r\n";

static ssize_t parse_req(const char *s, size_t len, struct kite_http_request *req,
                         struct kite_http_header *h)
{
    struct kite_http_limits lim = {4096, MAXH};
    return kite__http_parse_request(s, len, 0, &lim, req, h);
}

static ssize_t parse_req_s(const char *s)
{
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    return parse_req(s, strlen(s), &req, h);
}

static bool view_is(struct kite_view v, const char *s)
{
    return v.ptr && v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

static bool hdr_is(const struct kite_http_header *h, const char *name, const char *value)
{
    return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0 &&
           h->value_len == strlen(value) && memcmp(h->value, value, h->value_len) == 0;
}

/* RFC 9112 §3 request-line, §5 field lines with OWS trimmed (RFC 9110 §5.5). */
TEST(request_parses_fields_and_trims_ows)
{
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    ssize_t n = parse_req(REQ, sizeof(REQ) - 1, &req, h);
    ASSERT_EQ(n, sizeof(REQ) - 1);
    ASSERT(view_is(req.method, "GET"));
    ASSERT(view_is(req.target, "/chat?room=a%20b"));
    ASSERT_EQ(req.version_minor, 1);
    ASSERT_EQ(req.num_headers, 5);
    ASSERT(req.headers == h);
    ASSERT(hdr_is(&h[0], "Host", "server.example.com"));
    ASSERT(hdr_is(&h[1], "Upgrade", "websocket"));
    ASSERT(hdr_is(&h[2], "Connection", "Upgrade"));
    ASSERT(hdr_is(&h[3], "X-Empty", ""));
    ASSERT(h[3].value != NULL);
    /* RFC 9110 §5.5: obs-text (0x80-0xFF) is allowed in field values. */
    ASSERT(hdr_is(&h[4], "X-Obs-Text", "caf\xc3\xa9"));
    /* Views point into the caller's buffer: zero-copy. */
    ASSERT(req.method.ptr == REQ);
    ASSERT(h[0].value >= REQ && h[0].value + h[0].value_len <= REQ + sizeof(REQ) - 1);
}

/* The head ends at the empty line; what follows is the next layer's (WebSocket frames). */
TEST(request_returns_head_length_with_trailing_bytes)
{
    char buf[512];
    size_t hl = sizeof(REQ) - 1;
    memcpy(buf, REQ, hl);
    memcpy(buf + hl, "\x81\x85XYZW", 6);
    ASSERT_EQ(parse_req_s(REQ), hl);
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    ASSERT_EQ(parse_req(buf, hl + 6, &req, h), hl);
}

/* Incomplete until whole: every prefix returns KITE_INCOMPLETE, with and without the
 * last_len hint, and the whole head parses at the end. */
TEST(request_split_at_every_offset)
{
    size_t total = sizeof(REQ) - 1;
    struct kite_http_limits lim = {4096, MAXH};
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    for (size_t i = 0; i < total; i++)
        ASSERT_EQ(kite__http_parse_request(REQ, i, 0, &lim, &req, h), KITE_INCOMPLETE);
    /* Growing one byte at a time, passing the previous length as last_len. */
    size_t last = 0;
    for (size_t i = 1; i < total; i++) {
        ASSERT_EQ(kite__http_parse_request(REQ, i, last, &lim, &req, h), KITE_INCOMPLETE);
        last = i;
    }
    ASSERT_EQ(kite__http_parse_request(REQ, total, last, &lim, &req, h), total);
    ASSERT_EQ(req.num_headers, 5);
    /* Two chunks at every split point, hinting with the first chunk's length. */
    for (size_t i = 1; i < total; i++) {
        ASSERT_EQ(kite__http_parse_request(REQ, i, 0, &lim, &req, h), KITE_INCOMPLETE);
        ASSERT_EQ(kite__http_parse_request(REQ, total, i, &lim, &req, h), total);
    }
}

/* Copy `s` so that it ends right before an inaccessible page: any read past the end
 * crashes the test (STYLE §2.8, the picohttpparser guard-page trick). */
static char *at_guard_page(const char *s, size_t len, void **map, size_t *maplen)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    char *m = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(m != MAP_FAILED);
    ASSERT_EQ(mprotect(m + (pages - 1) * page, page, PROT_NONE), 0);
    char *p = m + (pages - 1) * page - len;
    memcpy(p, s, len);
    *map = m;
    *maplen = pages * page;
    return p;
}

/* Every prefix of a request and a response, each ending at a guard page: the parser
 * never reads beyond `len`. */
TEST(parsers_never_read_past_len)
{
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    struct kite_http_request req;
    struct kite_http_response rs;
    struct kite_http_header h[MAXH];
    struct kite_http_limits lim = {4096, MAXH};
    for (size_t i = 0; i <= sizeof(REQ) - 1; i++) {
        void *m;
        size_t ml;
        char *p = at_guard_page(REQ, i, &m, &ml);
        ssize_t n = kite__http_parse_request(p, i, 0, &lim, &req, h);
        ASSERT_EQ(n, i == sizeof(REQ) - 1 ? (ssize_t)i : KITE_INCOMPLETE);
        munmap(m, ml);
    }
    for (size_t i = 0; i <= sizeof(resp) - 1; i++) {
        void *m;
        size_t ml;
        char *p = at_guard_page(resp, i, &m, &ml);
        ssize_t n = kite__http_parse_response(p, i, 0, &lim, &rs, h);
        ASSERT_EQ(n, i == sizeof(resp) - 1 ? (ssize_t)i : KITE_INCOMPLETE);
        munmap(m, ml);
    }
}

/* Decision documented in http.h: a bare LF is rejected (RFC 9112 §2.2 makes accepting
 * it optional), and it is reported at once, before the head is whole. */
TEST(request_rejects_bare_lf_early)
{
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\nHost: a\n\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHost: a\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHost: a\r\n\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("\n"), KITE_ERR_HTTP);
}

/* RFC 9112 §2.2: a bare CR is invalid; RFC 9110 §5.5: no CTLs in field values. */
TEST(request_rejects_control_chars)
{
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHost: a\x01" "b\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), KITE_ERR_HTTP);
    /* HTAB is allowed inside a value. */
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n"), 26);
    /* A NUL byte (not visible to strlen, so build the buffer by hand). */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    ASSERT_EQ(parse_req(nul, sizeof(nul) - 1, &req, h), KITE_ERR_HTTP);
}

/* RFC 9112 §5.2: obs-fold is rejected (a server may reject it with 400). */
TEST(request_rejects_obs_fold)
{
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), KITE_ERR_HTTP);
}

/* RFC 9112 §5.1: no whitespace between field name and colon; names are tokens. */
TEST(request_rejects_bad_field_names)
{
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\n: a\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nHost a\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1\r\nH\xc3\xa9: a\r\n\r\n"), KITE_ERR_HTTP);
    /* tchar includes these (RFC 9110 §5.6.2). */
    ASSERT(parse_req_s("GET / HTTP/1.1\r\nX-!#$%&'*+.^_`|~9: a\r\n\r\n") > 0);
}

/* RFC 9112 §3: method is a token, one SP each side of the target, HTTP-version. */
TEST(request_rejects_bad_request_lines)
{
    ASSERT_EQ(parse_req_s(" GET / HTTP/1.1\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("G(T / HTTP/1.1\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET  / HTTP/1.1\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET /  HTTP/1.1\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.1 \r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET /\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / \r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), KITE_ERR_HTTP);
    /* RFC 9112 §2.2 lets a server skip leading empty lines; we do not. */
    ASSERT_EQ(parse_req_s("\r\nGET / HTTP/1.1\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("\r\n\r\n"), KITE_ERR_HTTP);
}

/* RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive; only 1.x. */
TEST(request_checks_version)
{
    ASSERT_EQ(parse_req_s("GET / HTTP/2.0\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / http/1.1\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.10\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/1.x\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_req_s("GET / HTTP/0.9\r\n\r\n"), KITE_ERR_HTTP);
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    const char *s = "GET / HTTP/1.0\r\n\r\n";
    ASSERT_EQ(parse_req(s, strlen(s), &req, h), strlen(s));
    ASSERT_EQ(req.version_minor, 0);
    ASSERT_EQ(req.num_headers, 0);
}

/* DESIGN §6: header size over the limit -> 431 (RFC 6585 §5). */
TEST(request_head_size_limit)
{
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"; /* 27 bytes */
    size_t len = strlen(s);
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    struct kite_http_limits lim = {len, MAXH};
    ASSERT_EQ(kite__http_parse_request(s, len, 0, &lim, &req, h), len); /* exactly at limit */
    lim.max_head_size = len - 1;
    ASSERT_EQ(kite__http_parse_request(s, len, 0, &lim, &req, h), KITE_ERR_HEAD_TOO_BIG);
    /* An incomplete head that already fills the limit can never fit. */
    lim.max_head_size = 10;
    ASSERT_EQ(kite__http_parse_request(s, 9, 0, &lim, &req, h), KITE_INCOMPLETE);
    ASSERT_EQ(kite__http_parse_request(s, 10, 0, &lim, &req, h), KITE_ERR_HEAD_TOO_BIG);
    ASSERT_EQ(kite__http_parse_request(s, 20, 9, &lim, &req, h), KITE_ERR_HEAD_TOO_BIG);
}

/* DESIGN §6: too many header lines -> 431 too. */
TEST(request_header_count_limit)
{
    char buf[1024];
    size_t off = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 4; i++)
        off += (size_t)sprintf(buf + off, "X-%d: v\r\n", i);
    off += (size_t)sprintf(buf + off, "\r\n");
    struct kite_http_request req;
    struct kite_http_header h[4];
    struct kite_http_limits lim = {4096, 4};
    ASSERT_EQ(kite__http_parse_request(buf, off, 0, &lim, &req, h), off);
    ASSERT_EQ(req.num_headers, 4);
    lim.max_headers = 3;
    ASSERT_EQ(kite__http_parse_request(buf, off, 0, &lim, &req, h), KITE_ERR_HEAD_TOO_BIG);
    lim.max_headers = 0;
    ASSERT_EQ(kite__http_parse_request(buf, off, 0, &lim, &req, h), KITE_ERR_HEAD_TOO_BIG);
}

/* NULL limits mean the documented defaults. */
TEST(request_default_limits)
{
    static char big[KITE_HTTP_DEFAULT_MAX_HEAD + 64];
    struct kite_http_request req;
    struct kite_http_header h[KITE_HTTP_DEFAULT_MAX_HEADERS];
    size_t off = (size_t)sprintf(big, "GET / HTTP/1.1\r\nX: ");
    memset(big + off, 'a', sizeof(big) - off);
    ASSERT_EQ(kite__http_parse_request(big, KITE_HTTP_DEFAULT_MAX_HEAD - 1, 0, NULL, &req, h),
              KITE_INCOMPLETE);
    ASSERT_EQ(kite__http_parse_request(big, sizeof(big), 0, NULL, &req, h),
              KITE_ERR_HEAD_TOO_BIG);
    ASSERT_EQ(kite__http_parse_request(REQ, sizeof(REQ) - 1, 0, NULL, &req, h), sizeof(REQ) - 1);
}

/* RFC 9112 §4: status-line = HTTP-version SP status-code SP [reason-phrase]. */
TEST(response_parses_status_line)
{
    static const char r[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nXX";
    struct kite_http_response resp;
    struct kite_http_header h[MAXH];
    struct kite_http_limits lim = {4096, MAXH};
    ASSERT_EQ(kite__http_parse_response(r, sizeof(r) - 1, 0, &lim, &resp, h), sizeof(r) - 3);
    ASSERT_EQ(resp.status, 101);
    ASSERT_EQ(resp.version_minor, 1);
    ASSERT(view_is(resp.reason, "Switching Protocols"));
    ASSERT_EQ(resp.num_headers, 1);
    ASSERT(hdr_is(&h[0], "Upgrade", "websocket"));
    for (size_t i = 0; i < sizeof(r) - 3; i++)
        ASSERT_EQ(kite__http_parse_response(r, i, 0, &lim, &resp, h), KITE_INCOMPLETE);
    /* Empty reason, with and without the SP. */
    const char *e1 = "HTTP/1.1 404 \r\n\r\n", *e2 = "HTTP/1.0 200\r\n\r\n";
    ASSERT_EQ(kite__http_parse_response(e1, strlen(e1), 0, &lim, &resp, h), strlen(e1));
    ASSERT_EQ(resp.status, 404);
    ASSERT(resp.reason.ptr && resp.reason.len == 0);
    ASSERT_EQ(kite__http_parse_response(e2, strlen(e2), 0, &lim, &resp, h), strlen(e2));
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.version_minor, 0);
}

static ssize_t parse_resp_s(const char *s)
{
    struct kite_http_response resp;
    struct kite_http_header h[MAXH];
    struct kite_http_limits lim = {4096, MAXH};
    return kite__http_parse_response(s, strlen(s), 0, &lim, &resp, h);
}

/* RFC 9112 §4: status-code = 3DIGIT; reason has no CTLs. */
TEST(response_rejects_bad_status_lines)
{
    ASSERT_EQ(parse_resp_s("HTTP/1.1 1O1 Switching\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/1.1 10 Short\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/1.1 1011 Long\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/1.1 099 Low\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/1.1  101 X\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/1.1 101 X\x01Y\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/2 101 X\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/1.1\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/1.1 101 X\r\nBad Name: v\r\n\r\n"), KITE_ERR_HTTP);
    ASSERT_EQ(parse_resp_s("HTTP/1.1 101 X\nA: b\r\n\r\n"), KITE_ERR_HTTP);
}

/* Header lookup is ASCII case-insensitive (RFC 9110 §5.1) and finds every line. */
TEST(header_lookup_finds_all_occurrences)
{
    static const char r[] = "GET / HTTP/1.1\r\nX-A: 1\r\nx-b: 2\r\nX-a: 3\r\nX-AA: 4\r\n\r\n";
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    ASSERT(parse_req(r, sizeof(r) - 1, &req, h) > 0);
    size_t pos = 0;
    const struct kite_http_header *x = kite__http_header_next(h, req.num_headers, "x-A", &pos);
    ASSERT(x == &h[0]);
    x = kite__http_header_next(h, req.num_headers, "x-A", &pos);
    ASSERT(x == &h[2]);
    ASSERT(kite__http_header_next(h, req.num_headers, "x-A", &pos) == NULL);
    ASSERT(kite__http_header_next(h, req.num_headers, "X-B", NULL) == &h[1]);
    ASSERT(kite__http_header_next(h, req.num_headers, "X-C", NULL) == NULL);
    ASSERT_EQ(kite__http_header_count(h, req.num_headers, "X-a"), 2);
    ASSERT_EQ(kite__http_header_count(h, req.num_headers, "X-Z"), 0);
}

/* RFC 9110 §5.6.1: lists over several lines, empty elements ignored, OWS trimmed. */
TEST(list_iterates_over_lines)
{
    static const char r[] = "GET / HTTP/1.1\r\nA: x, ,y,\r\nB: z\r\nA:\r\na: , \t w \t\r\n\r\n";
    struct kite_http_request req;
    struct kite_http_header h[MAXH];
    ASSERT(parse_req(r, sizeof(r) - 1, &req, h) > 0);
    struct kite_http_list_iter it;
    struct kite_view e;
    kite__http_list_init(&it, h, req.num_headers, "a");
    ASSERT(kite__http_list_next(&it, &e) && view_is(e, "x"));
    ASSERT(kite__http_list_next(&it, &e) && view_is(e, "y"));
    ASSERT(kite__http_list_next(&it, &e) && view_is(e, "w"));
    ASSERT(!kite__http_list_next(&it, &e));
    ASSERT(!kite__http_list_next(&it, &e));
    kite__http_list_init(&it, h, req.num_headers, "none");
    ASSERT(!kite__http_list_next(&it, &e));
}

/* RFC 9112 §3.2.1 origin-form, §3.2.2 absolute-form; no fragment (§3.2). */
TEST(split_target_forms)
{
    struct kite_view p, q;
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("/a/b?x=1&y"), &p, &q), KITE_OK);
    ASSERT(view_is(p, "/a/b") && view_is(q, "x=1&y"));
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("/"), &p, &q), KITE_OK);
    ASSERT(view_is(p, "/") && q.ptr == NULL);
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("/p?"), &p, &q), KITE_OK);
    ASSERT(view_is(p, "/p") && q.ptr != NULL && q.len == 0);
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("http://h:80/x?y"), &p, &q), KITE_OK);
    ASSERT(view_is(p, "/x") && view_is(q, "y"));
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("ws://h"), &p, &q), KITE_OK);
    ASSERT(view_is(p, "/") && q.ptr == NULL);
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("wss://h?z"), &p, &q), KITE_OK);
    ASSERT(view_is(p, "/") && view_is(q, "z"));
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("*"), &p, &q), KITE_ERR_HTTP);
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("h:80"), &p, &q), KITE_ERR_HTTP);
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("/a#f"), &p, &q), KITE_ERR_HTTP);
    ASSERT_EQ(kite__http_split_target(kite__view_cstr("http:///x"), &p, &q), KITE_ERR_HTTP);
    ASSERT_EQ(kite__http_split_target(kite__view_cstr(""), &p, &q), KITE_ERR_HTTP);
}

/* RFC 3986 §2.1 percent-encoding; '+' is a space only in form-encoded queries. */
TEST(pct_decode)
{
    char out[64];
    ASSERT_EQ(kite__http_pct_decode("a%20b%2Fc+d", 11, out, sizeof(out), false), 7);
    ASSERT_MEMEQ(out, "a b/c+d", 7);
    ASSERT_EQ(kite__http_pct_decode("a%20b+c%2b", 10, out, sizeof(out), true), 6);
    ASSERT_MEMEQ(out, "a b c+", 6);
    ASSERT_EQ(kite__http_pct_decode("%e2%82%AC", 9, out, sizeof(out), false), 3);
    ASSERT_MEMEQ(out, "\xe2\x82\xac", 3);
    ASSERT_EQ(kite__http_pct_decode("%00", 3, out, sizeof(out), false), 1);
    ASSERT_EQ(out[0], 0);
    ASSERT_EQ(kite__http_pct_decode("%", 1, out, sizeof(out), false), KITE_ERR_HTTP);
    ASSERT_EQ(kite__http_pct_decode("a%2", 3, out, sizeof(out), false), KITE_ERR_HTTP);
    ASSERT_EQ(kite__http_pct_decode("%g0", 3, out, sizeof(out), false), KITE_ERR_HTTP);
    ASSERT_EQ(kite__http_pct_decode("abc", 3, out, 2, false), KITE_ERR_INVALID);
    ASSERT_EQ(kite__http_pct_decode("%41bc", 5, out, 3, false), 3);
    char inplace[] = "x%41y";
    ASSERT_EQ(kite__http_pct_decode(inplace, 5, inplace, 5, false), 3);
    ASSERT_MEMEQ(inplace, "xAy", 3);
    ASSERT_EQ(kite__http_pct_decode("", 0, out, 0, false), 0);
}

/* application/x-www-form-urlencoded style pairs (WHATWG URL), names decoded to match. */
TEST(query_lookup)
{
    struct kite_view q = kite__view_cstr("a=1&&b&c=&my+name=x%20y&d%3D=2&a=dup");
    struct kite_view v;
    ASSERT(kite__http_query_get(q, "a", 1, &v) && view_is(v, "1"));
    ASSERT(kite__http_query_get(q, "b", 1, &v) && v.ptr == NULL);
    ASSERT(kite__http_query_get(q, "c", 1, &v) && v.ptr && v.len == 0);
    ASSERT(kite__http_query_get(q, "my name", 7, &v) && view_is(v, "x%20y"));
    ASSERT(kite__http_query_get(q, "d=", 2, &v) && view_is(v, "2"));
    ASSERT(!kite__http_query_get(q, "e", 1, &v));
    ASSERT(!kite__http_query_get(q, "A", 1, &v));
    struct kite_view none = {NULL, 0};
    ASSERT(!kite__http_query_get(none, "a", 1, &v));
    size_t pos = 0, count = 0;
    struct kite_view n;
    while (kite__http_query_next(q, &pos, &n, &v))
        count++;
    ASSERT_EQ(count, 6);
}

/* Token chars (RFC 9110 §5.6.2). */
TEST(token_chars)
{
    ASSERT(kite__http_is_token("permessage-deflate", 18));
    ASSERT(!kite__http_is_token("", 0));
    const char *bad = "\"(),/:;<=>?@[\\]{} \t";
    for (const char *p = bad; *p; p++)
        ASSERT(!kite__http_is_tchar((unsigned char)*p));
    ASSERT(!kite__http_is_tchar(0));
    ASSERT(!kite__http_is_tchar(0x7f));
    ASSERT(!kite__http_is_tchar(0x80));
    /* Every byte against the RFC's definition. */
    const char *extra = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c != 0 && strchr(extra, c) != NULL);
        if (kite__http_is_tchar((unsigned char)c) != want)
            kite_test_fail(__FILE__, __LINE__, "tchar 0x%02x", c);
    }
}

/* The error response parses back as a valid HTTP/1.1 response whose body length matches
 * Content-Length; 405 carries Allow (RFC 9110 §15.5.6). */
TEST(write_error_response)
{
    struct kite_buf b = {0};
    static const struct kite_http_header extra[] = {{"Retry-After", 11, "5", 1}};
    ASSERT_EQ(kite__http_write_error(&b, NULL, 405, extra, 1, NULL, 0), KITE_OK);
    struct kite_http_response resp;
    struct kite_http_header h[MAXH];
    const char *s = (const char *)kite__buf_head(&b);
    ssize_t n = kite__http_parse_response(s, b.len, 0, NULL, &resp, h);
    ASSERT(n > 0);
    ASSERT_EQ(resp.status, 405);
    ASSERT(view_is(resp.reason, "Method Not Allowed"));
    const struct kite_http_header *x = kite__http_header_next(h, resp.num_headers, "allow", NULL);
    ASSERT(x && hdr_is(x, "Allow", "GET"));
    ASSERT(kite__http_header_next(h, resp.num_headers, "Retry-After", NULL));
    ASSERT(kite__http_has_token(h, resp.num_headers, "Connection", "close"));
    x = kite__http_header_next(h, resp.num_headers, "Content-Length", NULL);
    ASSERT(x);
    ASSERT_EQ(strtol(x->value, NULL, 10), b.len - (size_t)n);
    ASSERT_MEMEQ(s + n, "Method Not Allowed\n", b.len - (size_t)n);
    kite__buf_free(&b, NULL);

    ASSERT_EQ(kite__http_write_error(&b, NULL, 431, NULL, 0, "too big", 7), KITE_OK);
    ASSERT(b.len > 7 && memcmp(kite__buf_head(&b) + b.len - 7, "too big", 7) == 0);
    ASSERT(memcmp(kite__buf_head(&b), "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) ==
           0);
    kite__buf_free(&b, NULL);
}

/* No header injection through extra headers; bad statuses refused; nothing appended. */
TEST(write_error_refuses_bad_input)
{
    struct kite_buf b = {0};
    struct kite_http_header bad1 = {"X", 1, "a\r\nSet-Cookie: x", 16};
    struct kite_http_header bad2 = {"X Y", 3, "a", 1};
    ASSERT_EQ(kite__http_write_error(&b, NULL, 400, &bad1, 1, NULL, 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite__http_write_error(&b, NULL, 400, &bad2, 1, NULL, 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite__http_write_error(&b, NULL, 99, NULL, 0, NULL, 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite__http_write_error(&b, NULL, 1000, NULL, 0, NULL, 0), KITE_ERR_INVALID);
    ASSERT_EQ(b.len, 0);
    kite__buf_free(&b, NULL);
}

/* Out of memory is an error code, never an abort (DESIGN §6); nothing leaks. */
TEST(write_error_oom)
{
    for (long i = 1; i < 10; i++) {
        struct kite_test_alloc st = {0};
        st.fail_at = i;
        const struct kite_allocator *a = kite_test_allocator(&st);
        struct kite_buf b = {0};
        int rc = kite__http_write_error(&b, a, 400, NULL, 0, NULL, 0);
        ASSERT(rc == KITE_OK || (rc == KITE_ERR_NOMEM && st.failed));
        kite__buf_free(&b, a);
        ASSERT_EQ(st.live, 0);
    }
}
