/*
 * Strict HTTP/1.1 head parser (RFC 9112 §2-§5). Two passes: a cheap scan for the end
 * of the head (resumable with last_len) that runs on every read, then one full,
 * bounds-checked parse of the complete head. See http.h for the accepted grammar.
 */
#include "http/http.h"

/* A cursor over the complete head [p, end). The head is known to end in CRLF CRLF. */
struct cur {
    const char *p;
    const char *end;
};

/* RFC 9110 §5.5: field-vchar / SP / HTAB, with obs-text allowed; no other CTLs. */
static inline bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Find the end of the head: the LF of the first empty line. Scans only bytes from
 * `from` on, since the earlier ones were scanned by a previous call. Every LF must
 * follow a CR (we do not accept bare LF). Returns the head length, 0 when not found,
 * or KITE_ERR_HTTP.
 */
static ssize_t find_head_end(const char *buf, size_t len, size_t from)
{
    const char *p = buf + from, *end = buf + len;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf)
            return 0;
        size_t i = (size_t)(lf - buf);
        if (i == 0 || buf[i - 1] != '\r')
            return KITE_ERR_HTTP;
        if (i == 1 || buf[i - 2] == '\n')
            return (ssize_t)(i + 1);
        p = lf + 1;
    }
    return 0;
}

/* The first pass with limits applied: head length, KITE_INCOMPLETE or an error. */
static ssize_t head_length(const char *buf, size_t len, size_t last_len, size_t max_head)
{
    size_t scan = KITE_MIN(len, max_head);
    size_t from = KITE_MIN(last_len, scan);
    ssize_t n = find_head_end(buf, scan, from);
    if (n != 0)
        return n;
    return len >= max_head ? KITE_ERR_HEAD_TOO_BIG : KITE_INCOMPLETE;
}

/* Consume CRLF. */
static bool eat_crlf(struct cur *c)
{
    if (c->end - c->p < 2 || c->p[0] != '\r' || c->p[1] != '\n')
        return false;
    c->p += 2;
    return true;
}

/* token, then exactly the delimiter `delim`. */
static bool eat_token(struct cur *c, char delim, struct kite_view *out)
{
    const char *start = c->p;
    while (c->p < c->end && kite__http_tchar((unsigned char)*c->p))
        c->p++;
    if (c->p == start || c->p == c->end || *c->p != delim)
        return false;
    out->ptr = start;
    out->len = (size_t)(c->p - start);
    c->p++;
    return true;
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3), major 1 only. */
static bool eat_version(struct cur *c, int *minor)
{
    if (c->end - c->p < 8 || memcmp(c->p, "HTTP/1.", 7) != 0)
        return false;
    unsigned char d = (unsigned char)c->p[7];
    if (d < '0' || d > '9')
        return false;
    *minor = d - '0';
    c->p += 8;
    return true;
}

/* request-target: one or more visible ASCII characters, then SP. */
static bool eat_target(struct cur *c, struct kite_view *out)
{
    const char *start = c->p;
    while (c->p < c->end && (unsigned char)*c->p > 0x20 && (unsigned char)*c->p < 0x7f)
        c->p++;
    if (c->p == start || c->p == c->end || *c->p != ' ')
        return false;
    out->ptr = start;
    out->len = (size_t)(c->p - start);
    c->p++;
    return true;
}

/*
 * Skip the run of bytes that need no closer look in a field value: eight at a time
 * while none is a control character (below 0x20: CR, and HTAB, which the byte loop
 * then judges) or DEL. Bit tricks on the word: `low` has a top bit set exactly when
 * some byte is below 0x20, `del` when some byte is 0x7F (a zero byte of w ^ 0x7F..);
 * obs-text bytes (0x80 and up) set neither.
 */
static inline void skip_plain_value(struct cur *c)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    while (c->end - c->p >= 8) {
        uint64_t w;
        memcpy(&w, c->p, 8);
        uint64_t low = (w - ones * 0x20) & ~w;
        uint64_t d = w ^ (ones * 0x7F);
        uint64_t del = (d - ones) & ~d;
        if ((low | del) & high)
            return;
        c->p += 8;
    }
}

/* One field-line (RFC 9112 §5): name ":" OWS value OWS CRLF. */
static bool eat_header(struct cur *c, struct kite_http_header *h)
{
    struct kite_view name;
    if (!eat_token(c, ':', &name))
        return false; /* empty name (obs-fold), space before ':', bad char */
    while (c->p < c->end && is_ows((unsigned char)*c->p))
        c->p++;
    const char *v = c->p;
    skip_plain_value(c);
    while (c->p < c->end && *c->p != '\r') {
        if (!is_field_char((unsigned char)*c->p))
            return false;
        c->p++;
    }
    const char *ve = c->p;
    while (ve > v && is_ows((unsigned char)ve[-1]))
        ve--;
    h->name = name.ptr;
    h->name_len = name.len;
    h->value = v;
    h->value_len = (size_t)(ve - v);
    return eat_crlf(c);
}

/* Header lines up to and including the empty line. */
static ssize_t eat_headers(struct cur *c, struct kite_http_header *headers, size_t max,
                           size_t *num)
{
    size_t n = 0;
    while (!eat_crlf(c)) {
        if (n == max)
            return KITE_ERR_HEAD_TOO_BIG;
        if (!eat_header(c, &headers[n]))
            return KITE_ERR_HTTP;
        n++;
    }
    *num = n;
    return c->p == c->end ? KITE_OK : KITE_ERR_HTTP;
}

static void limits_or_default(const struct kite_http_limits *lim, size_t *max_head,
                              size_t *max_headers)
{
    *max_head = lim ? lim->max_head_size : KITE_HTTP_DEFAULT_MAX_HEAD;
    *max_headers = lim ? lim->max_headers : KITE_HTTP_DEFAULT_MAX_HEADERS;
}

ssize_t kite__http_parse_request(const char *buf, size_t len, size_t last_len,
                                 const struct kite_http_limits *lim,
                                 struct kite_http_request *req, struct kite_http_header *headers)
{
    size_t max_head, max_headers;
    limits_or_default(lim, &max_head, &max_headers);
    ssize_t n = head_length(buf, len, last_len, max_head);
    if (n < 0)
        return n;
    struct cur c = {buf, buf + n};
    /* request-line = method SP request-target SP HTTP-version (RFC 9112 §3) */
    if (!eat_token(&c, ' ', &req->method) || !eat_target(&c, &req->target) ||
        !eat_version(&c, &req->version_minor) || !eat_crlf(&c))
        return KITE_ERR_HTTP;
    req->headers = headers;
    ssize_t rc = eat_headers(&c, headers, max_headers, &req->num_headers);
    return rc < 0 ? rc : n;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4). */
static bool eat_status_line(struct cur *c, struct kite_http_response *resp)
{
    if (!eat_version(c, &resp->version_minor) || c->end - c->p < 4 || *c->p++ != ' ')
        return false;
    int code = 0;
    for (int i = 0; i < 3; i++) {
        unsigned char d = (unsigned char)*c->p++;
        if (d < '0' || d > '9')
            return false;
        code = code * 10 + (d - '0');
    }
    if (code < 100)
        return false;
    resp->status = code;
    resp->reason.ptr = c->p;
    resp->reason.len = 0;
    if (*c->p == ' ') {
        resp->reason.ptr = ++c->p;
        while (c->p < c->end && *c->p != '\r') {
            if (!is_field_char((unsigned char)*c->p))
                return false;
            c->p++;
        }
        resp->reason.len = (size_t)(c->p - resp->reason.ptr);
    }
    return eat_crlf(c);
}

ssize_t kite__http_parse_response(const char *buf, size_t len, size_t last_len,
                                  const struct kite_http_limits *lim,
                                  struct kite_http_response *resp,
                                  struct kite_http_header *headers)
{
    size_t max_head, max_headers;
    limits_or_default(lim, &max_head, &max_headers);
    ssize_t n = head_length(buf, len, last_len, max_head);
    if (n < 0)
        return n;
    struct cur c = {buf, buf + n};
    if (!eat_status_line(&c, resp))
        return KITE_ERR_HTTP;
    resp->headers = headers;
    ssize_t rc = eat_headers(&c, headers, max_headers, &resp->num_headers);
    return rc < 0 ? rc : n;
}

const struct kite_http_header *kite__http_header_next(const struct kite_http_header *headers,
                                                      size_t n, const char *name, size_t *pos)
{
    size_t nlen = strlen(name);
    for (size_t i = pos ? *pos : 0; i < n; i++) {
        if (kite__ieq(headers[i].name, headers[i].name_len, name, nlen)) {
            if (pos)
                *pos = i + 1;
            return &headers[i];
        }
    }
    if (pos)
        *pos = n;
    return NULL;
}

size_t kite__http_header_count(const struct kite_http_header *headers, size_t n,
                               const char *name)
{
    size_t count = 0, pos = 0;
    while (kite__http_header_next(headers, n, name, &pos))
        count++;
    return count;
}
