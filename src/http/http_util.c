/*
 * HTTP helpers around the parser: tokens and list fields (RFC 9110 §5.6), the
 * request-target (RFC 9112 §3.2), percent-decoding and query strings (RFC 3986), and
 * the plain error response a server sends before closing.
 */
#include <stdio.h>

#include "http/http.h"

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`"
 *       / "|" / "~" / DIGIT / ALPHA   (RFC 9110 §5.6.2); the bitmap is in http.h. */
bool kite__http_is_tchar(unsigned char c)
{
    return kite__http_tchar(c);
}

bool kite__http_is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!kite__http_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static struct kite_view trim(const char *p, size_t len)
{
    while (len > 0 && is_ows(p[0])) {
        p++;
        len--;
    }
    while (len > 0 && is_ows(p[len - 1]))
        len--;
    struct kite_view v = {p, len};
    return v;
}

void kite__http_list_init(struct kite_http_list_iter *it, const struct kite_http_header *headers,
                          size_t n, const char *name)
{
    it->headers = headers;
    it->num_headers = n;
    it->name = name;
    it->hi = 0;
    it->off = 0;
    /* Position on the first matching header, if any. */
    while (it->hi < n && !kite__ieq(headers[it->hi].name, headers[it->hi].name_len, name,
                                    strlen(name)))
        it->hi++;
}

/* Move to the next header line with the iterator's name. */
static void list_next_line(struct kite_http_list_iter *it)
{
    size_t nlen = strlen(it->name);
    it->off = 0;
    do {
        it->hi++;
    } while (it->hi < it->num_headers &&
             !kite__ieq(it->headers[it->hi].name, it->headers[it->hi].name_len, it->name, nlen));
}

bool kite__http_list_next(struct kite_http_list_iter *it, struct kite_view *elem)
{
    while (it->hi < it->num_headers) {
        const struct kite_http_header *h = &it->headers[it->hi];
        if (it->off > h->value_len) {
            list_next_line(it);
            continue;
        }
        const char *start = h->value + it->off;
        size_t rest = h->value_len - it->off;
        const char *comma = memchr(start, ',', rest);
        size_t n = comma ? (size_t)(comma - start) : rest;
        it->off += n + 1; /* past the comma, or past the end when there is none */
        *elem = trim(start, n);
        if (elem->len > 0)
            return true;
    }
    return false;
}

bool kite__http_has_token(const struct kite_http_header *headers, size_t n, const char *name,
                          const char *token)
{
    struct kite_http_list_iter it;
    struct kite_view e;
    size_t tlen = strlen(token);
    kite__http_list_init(&it, headers, n, name);
    while (kite__http_list_next(&it, &e))
        if (kite__ieq(e.ptr, e.len, token, tlen))
            return true;
    return false;
}

/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1); returns its
 * length when target starts with scheme "://", else 0. */
static size_t scheme_prefix(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || !((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z'))
        return 0;
    while (i < len && (((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') ||
                       (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '-' ||
                       s[i] == '.'))
        i++;
    if (len - i < 3 || memcmp(s + i, "://", 3) != 0)
        return 0;
    return i + 3;
}

int kite__http_split_target(struct kite_view target, struct kite_view *path,
                            struct kite_view *query)
{
    const char *p = target.ptr;
    size_t len = target.len;
    if (!p || len == 0 || memchr(p, '#', len))
        return KITE_ERR_HTTP;
    bool absolute = false;
    if (p[0] != '/') {
        size_t s = scheme_prefix(p, len);
        if (s == 0)
            return KITE_ERR_HTTP; /* "*", authority-form, garbage */
        /* Skip the authority: up to the first '/' or '?'. */
        size_t i = s;
        while (i < len && p[i] != '/' && p[i] != '?')
            i++;
        if (i == s)
            return KITE_ERR_HTTP; /* empty authority */
        p += i;
        len -= i;
        absolute = true;
    }
    const char *q = memchr(p, '?', len);
    size_t plen = q ? (size_t)(q - p) : len;
    if (plen == 0 && absolute) {
        path->ptr = "/"; /* "http://h" or "http://h?q": the path is "/" (RFC 9112 §3.2.2) */
        path->len = 1;
    } else {
        path->ptr = p;
        path->len = plen;
    }
    query->ptr = q ? q + 1 : NULL;
    query->len = q ? len - plen - 1 : 0;
    return KITE_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

ssize_t kite__http_pct_decode(const char *in, size_t len, char *out, size_t cap,
                              bool plus_as_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (len - i < 3)
                return KITE_ERR_HTTP; /* fewer than two characters follow */
            int hi = hexval(in[i + 1]);
            int lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0)
                return KITE_ERR_HTTP;
            ch = (char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+' && plus_as_space) {
            ch = ' ';
        }
        if (o == cap)
            return KITE_ERR_INVALID;
        out[o++] = ch;
    }
    return (ssize_t)o;
}

bool kite__http_query_next(struct kite_view query, size_t *pos, struct kite_view *name,
                           struct kite_view *value)
{
    while (query.ptr && *pos < query.len) {
        const char *start = query.ptr + *pos;
        size_t rest = query.len - *pos;
        const char *amp = memchr(start, '&', rest);
        size_t n = amp ? (size_t)(amp - start) : rest;
        *pos += n + (amp ? 1 : 0);
        if (n == 0)
            continue;
        const char *eq = memchr(start, '=', n);
        name->ptr = start;
        name->len = eq ? (size_t)(eq - start) : n;
        value->ptr = eq ? eq + 1 : NULL;
        value->len = eq ? n - name->len - 1 : 0;
        return true;
    }
    return false;
}

/* Does the raw (encoded) `enc` decode, with '+' as space, to exactly want[0..wlen)? */
static bool decoded_equals(struct kite_view enc, const char *want, size_t wlen)
{
    size_t w = 0;
    for (size_t i = 0; i < enc.len; i++, w++) {
        char ch = enc.ptr[i];
        if (ch == '%') {
            if (enc.len - i < 3 || hexval(enc.ptr[i + 1]) < 0 || hexval(enc.ptr[i + 2]) < 0)
                return false;
            ch = (char)(hexval(enc.ptr[i + 1]) << 4 | hexval(enc.ptr[i + 2]));
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (w >= wlen || want[w] != ch)
            return false;
    }
    return w == wlen;
}

bool kite__http_query_get(struct kite_view query, const char *name, size_t name_len,
                          struct kite_view *value)
{
    size_t pos = 0;
    struct kite_view n, v;
    while (kite__http_query_next(query, &pos, &n, &v)) {
        if (decoded_equals(n, name, name_len)) {
            *value = v;
            return true;
        }
    }
    return false;
}

const char *kite__http_status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

bool kite__http_header_ok(const struct kite_http_header *h)
{
    if (!h->name || !kite__http_is_token(h->name, h->name_len))
        return false;
    if (h->value_len > 0 && !h->value)
        return false;
    for (size_t i = 0; i < h->value_len; i++) {
        unsigned char c = (unsigned char)h->value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static int append_str(struct kite_buf *out, const struct kite_allocator *a, const char *s)
{
    return kite__buf_append(out, a, s, strlen(s));
}

int kite__http_append_headers(struct kite_buf *out, const struct kite_allocator *a,
                              const struct kite_http_header *h, size_t n)
{
    int rc = KITE_OK;
    for (size_t i = 0; i < n && rc == KITE_OK; i++) {
        rc = kite__buf_append(out, a, h[i].name, h[i].name_len);
        if (rc == KITE_OK)
            rc = kite__buf_append(out, a, ": ", 2);
        if (rc == KITE_OK && h[i].value_len)
            rc = kite__buf_append(out, a, h[i].value, h[i].value_len);
        if (rc == KITE_OK)
            rc = kite__buf_append(out, a, "\r\n", 2);
    }
    return rc;
}

int kite__http_write_error(struct kite_buf *out, const struct kite_allocator *a, int status,
                           const struct kite_http_header *extra, size_t num_extra,
                           const char *body, size_t body_len)
{
    if (status < 100 || status > 999)
        return KITE_ERR_INVALID;
    for (size_t i = 0; i < num_extra; i++)
        if (!kite__http_header_ok(&extra[i]))
            return KITE_ERR_INVALID;
    const char *text = kite__http_status_text(status);
    char line[96];
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, text);
    int rc = append_str(out, a, line);
    if (rc == KITE_OK && status == 405)
        rc = append_str(out, a, "Allow: GET\r\n");
    if (rc == KITE_OK)
        rc = kite__http_append_headers(out, a, extra, num_extra);
    char deflt[64];
    if (!body) {
        snprintf(deflt, sizeof(deflt), "%s\n", text);
        body = deflt;
        body_len = strlen(deflt);
    }
    char tail[128];
    snprintf(tail, sizeof(tail),
             "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n",
             body_len);
    if (rc == KITE_OK)
        rc = append_str(out, a, tail);
    if (rc == KITE_OK && body_len)
        rc = kite__buf_append(out, a, body, body_len);
    return rc;
}
