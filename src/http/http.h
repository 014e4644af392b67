/*
 * http — a strict, stateless, zero-copy HTTP/1.1 head parser (RFC 9110, RFC 9112) and
 * the small helpers a WebSocket server and client need around it. Sans-I/O: bytes in,
 * views out. Nothing here allocates except the writers, which append to a kite_buf.
 *
 * Parsing model (pico-style):
 *
 *   struct kite_http_header hdrs[64];
 *   struct kite_http_request req;
 *   struct kite_http_limits lim = { .max_head_size = 8192, .max_headers = 64 };
 *   ssize_t n = kite__http_parse_request(buf, len, last_len, &lim, &req, hdrs);
 *   n > 0                  the head is whole and n bytes long (through the empty line);
 *                          bytes after it belong to the next layer (WebSocket frames)
 *   KITE_INCOMPLETE        read more and call again (pass the previous len as last_len)
 *   KITE_ERR_HEAD_TOO_BIG  answer 431 Request Header Fields Too Large and close
 *   KITE_ERR_HTTP          answer 400 Bad Request and close
 *
 * Every view (struct kite_view, header names and values) points into the caller's
 * buffer: it stays valid as long as those bytes are neither freed nor moved.
 *
 * Strictness (decisions, so callers know what reaches them):
 *   - Lines end in CRLF. A bare LF anywhere in the head is KITE_ERR_HTTP. (RFC 9112 §2.2
 *     lets a recipient accept a bare LF; we do not, to keep one framing rule and close
 *     the door on request smuggling through lenient line splitting.)
 *   - A bare CR, a NUL or any other control character (except HTAB inside field values)
 *     is KITE_ERR_HTTP.
 *   - Leading empty lines before the request line are rejected (RFC 9112 §2.2 allows
 *     ignoring them; an upgrade has no pipelined predecessor to leave a stray CRLF).
 *   - Method and header names are RFC 9110 §5.6.2 tokens; no whitespace between a
 *     header name and its colon (RFC 9112 §5.1); obs-fold (a line starting with SP or
 *     HTAB) is rejected (RFC 9112 §5.2). Values are trimmed of leading and trailing
 *     SP/HTAB; they may hold SP, HTAB, VCHAR and obs-text (0x80-0xFF).
 *   - The request-target is one or more visible ASCII characters (0x21-0x7E).
 *   - Only HTTP/1.x is accepted: "HTTP/" DIGIT "." DIGIT with major 1.
 *   - Response status-line: HTTP-version SP 3DIGIT [SP reason-phrase]; a missing
 *     " reason" is tolerated (common in the wild); status code 100-999.
 *   - Duplicate headers are kept in order; interpreting them is the caller's job.
 *
 * Cost: while the head is incomplete only the new bytes are scanned for the end of the
 * head (give last_len); the full parse runs once, when the head is whole.
 */
#ifndef KITE_HTTP_H
#define KITE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/util.h"

/* A borrowed byte range. ptr is NULL (and len 0) for "absent"; an empty but present
 * value has a non-NULL ptr and len 0. Not NUL-terminated. */
struct kite_view {
    const char *ptr;
    size_t len;
};

/* Build a view of a NUL-terminated string (NULL gives the absent view). */
static inline struct kite_view kite__view_cstr(const char *s)
{
    struct kite_view v = {s, s ? strlen(s) : 0};
    return v;
}

/* One header field line. Views into the parsed buffer. */
struct kite_http_header {
    const char *name; /* token, as sent (case preserved) */
    size_t name_len;
    const char *value; /* trimmed of surrounding SP/HTAB; may be empty */
    size_t value_len;
};

/* Caller-chosen limits. Exceeding either gives KITE_ERR_HEAD_TOO_BIG (431). */
struct kite_http_limits {
    size_t max_head_size; /* bytes from the start through the final CRLF CRLF */
    size_t max_headers;   /* header lines; also the capacity of the caller's array */
};

/* Defaults used when `lim` is NULL. The headers array must then hold
 * KITE_HTTP_DEFAULT_MAX_HEADERS entries. */
#define KITE_HTTP_DEFAULT_MAX_HEAD 8192
#define KITE_HTTP_DEFAULT_MAX_HEADERS 64

struct kite_http_request {
    struct kite_view method; /* token, case-sensitive (RFC 9110 §9.1) */
    struct kite_view target; /* request-target as sent, e.g. "/chat?room=1" */
    int version_minor;       /* HTTP/1.<minor>; the major is always 1 */
    struct kite_http_header *headers; /* = the caller's array */
    size_t num_headers;
};

struct kite_http_response {
    int version_minor; /* HTTP/1.<minor> */
    int status;        /* 100-999 */
    struct kite_view reason; /* may be empty (never absent once parsed) */
    struct kite_http_header *headers; /* = the caller's array */
    size_t num_headers;
};

/*
 * Parse a request head from buf[0..len).
 *   last_len: len at the previous call that returned KITE_INCOMPLETE for the same
 *             bytes, or 0. Only a hint: 0 is always correct, just slower.
 *   lim:      limits, or NULL for the defaults.
 *   headers:  caller's array of lim->max_headers entries; filled on success.
 * Returns the head's length (> 0) on success and fills *req; KITE_INCOMPLETE when the
 * empty line has not arrived yet (and the size limit is not yet passed);
 * KITE_ERR_HEAD_TOO_BIG (431) when the head is, or must become, longer than
 * max_head_size, or has more than max_headers header lines; KITE_ERR_HTTP (400) when
 * malformed. Malformed input is reported once the head is whole, except a bare LF,
 * which is reported as soon as it arrives. On any return other than success *req and
 * the headers array are unspecified.
 */
ssize_t kite__http_parse_request(const char *buf, size_t len, size_t last_len,
                                 const struct kite_http_limits *lim,
                                 struct kite_http_request *req, struct kite_http_header *headers);

/* The same for a response head (the client reading the server's answer). */
ssize_t kite__http_parse_response(const char *buf, size_t len, size_t last_len,
                                  const struct kite_http_limits *lim,
                                  struct kite_http_response *resp,
                                  struct kite_http_header *headers);

/*
 * Header lookup by ASCII case-insensitive name (NUL-terminated). Returns the first
 * match at index >= *pos and sets *pos just past it, or NULL when there is none, so a
 * loop visits every occurrence:
 *     size_t pos = 0; const struct kite_http_header *h;
 *     while ((h = kite__http_header_next(hdrs, n, "Sec-WebSocket-Protocol", &pos))) ...
 * `pos` may be NULL to get just the first occurrence.
 */
const struct kite_http_header *kite__http_header_next(const struct kite_http_header *headers,
                                                      size_t n, const char *name, size_t *pos);
/* How many header lines carry `name` (ASCII case-insensitive). */
size_t kite__http_header_count(const struct kite_http_header *headers, size_t n,
                               const char *name);

/*
 * Iterate the elements of a comma-separated list field (RFC 9110 §5.6.1), across every
 * header line with that name, in order. Elements are trimmed of SP/HTAB; empty
 * elements ("a, , b", trailing commas) are skipped as §5.6.1 requires. Elements are
 * not checked against any grammar and quoted strings are not understood: do not use it
 * for Sec-WebSocket-Extensions (see kite__ws_ext_next in handshake.h).
 */
struct kite_http_list_iter {
    const struct kite_http_header *headers; /* borrowed */
    size_t num_headers;
    const char *name; /* borrowed, NUL-terminated */
    size_t hi;        /* index of the header being scanned */
    size_t off;       /* offset in its value */
};
void kite__http_list_init(struct kite_http_list_iter *it, const struct kite_http_header *headers,
                          size_t n, const char *name);
/* Next element into *elem: returns true, or false at the end. */
bool kite__http_list_next(struct kite_http_list_iter *it, struct kite_view *elem);

/* Does some `name` header list `token` as an element (ASCII case-insensitive, across
 * all lines)? For Connection: upgrade and Upgrade: websocket (RFC 6455 §4.1, §4.2.1). */
bool kite__http_has_token(const struct kite_http_header *headers, size_t n, const char *name,
                          const char *token);

/* RFC 9110 §5.6.2 tchar / token tests. */
bool kite__http_is_tchar(unsigned char c);
/* The same test inline, for the parser's inner loop: tchar as a bitmap of the 128
 * ASCII codes (bit c of the pair), so the test is one shift. test_http_parse checks
 * kite__http_is_tchar against the list of RFC 9110 §5.6.2. */
static inline bool kite__http_tchar(unsigned char c)
{
    static const uint64_t bits[2] = {0x03ff6cfa00000000ull, 0x57ffffffc7fffffeull};
    return c < 128 && (bits[c >> 6] >> (c & 63)) & 1;
}
bool kite__http_is_token(const char *s, size_t len);

/*
 * Split a request-target into path and query. Accepts origin-form ("/p?q", RFC 9112
 * §3.2.1) and absolute-form ("http://h/p?q", §3.2.2: servers must accept it; the path
 * of "ws://h" with no path is "/"). `path` excludes the query; `query` excludes the
 * '?', and is absent (ptr NULL) when there is no '?'. Views into target.
 * Returns KITE_OK, or KITE_ERR_HTTP for any other form ("*", authority-form, empty)
 * or for a '#' (fragments are never sent, RFC 9112 §3.2).
 */
int kite__http_split_target(struct kite_view target, struct kite_view *path,
                            struct kite_view *query);

/*
 * Percent-decode (RFC 3986 §2.1) `in` into `out`. With plus_as_space, '+' becomes ' '
 * (application/x-www-form-urlencoded query values); leave it false for path segments.
 * Decode one path segment at a time: "%2F" yields '/', and "%00" yields a NUL byte,
 * which the caller must be ready for. out may equal in (decoding in place is safe);
 * the output is never longer than the input.
 * Returns the decoded length, KITE_ERR_HTTP for a '%' not followed by two hex digits,
 * or KITE_ERR_INVALID when cap is too small.
 */
ssize_t kite__http_pct_decode(const char *in, size_t len, char *out, size_t cap,
                              bool plus_as_space);

/*
 * Iterate "name=value" pairs of a query string split on '&' (empty pairs skipped).
 * A pair without '=' has an absent value (ptr NULL). Both views are raw (still
 * percent-encoded). Returns true with the next pair, false at the end. Start with
 * *pos = 0.
 */
bool kite__http_query_next(struct kite_view query, size_t *pos, struct kite_view *name,
                           struct kite_view *value);
/*
 * Find the first query parameter whose name, once percent-decoded (with '+' as
 * space), equals `name` exactly (case-sensitive). *value gets the raw value (decode it
 * with kite__http_pct_decode(..., true)); absent (ptr NULL) for "?flag". Returns true
 * when found.
 */
bool kite__http_query_get(struct kite_view query, const char *name, size_t name_len,
                          struct kite_view *value);

/* Standard reason phrase for a status code ("Bad Request"); "Unknown" otherwise. */
const char *kite__http_status_text(int status);

/*
 * Append a complete, self-contained response to `out`:
 *   HTTP/1.1 <status> <reason>\r\n
 *   <extra headers>\r\n ...
 *   Content-Type: text/plain; charset=utf-8\r\n
 *   Content-Length: <n>\r\n
 *   Connection: close\r\n\r\n<body>
 * `body` (may be NULL: the reason phrase plus "\n" is used) is copied. 405 adds
 * "Allow: GET" (RFC 9110 §15.5.6). Extra header names must be tokens and values must
 * hold no control characters other than HTAB (no header injection).
 * Returns KITE_OK, KITE_ERR_INVALID (status outside 100-999, or a bad extra header;
 * nothing appended), or KITE_ERR_NOMEM (out may hold a partial response: truncate it
 * back to its previous length).
 */
int kite__http_write_error(struct kite_buf *out, const struct kite_allocator *a, int status,
                           const struct kite_http_header *extra, size_t num_extra,
                           const char *body, size_t body_len);

/* Is this a valid header field to send (token name, value without CTLs but HTAB)? */
bool kite__http_header_ok(const struct kite_http_header *h);

/* Append "Name: value\r\n" for each of n headers, unchecked (check them with
 * kite__http_header_ok first). KITE_OK or KITE_ERR_NOMEM. */
int kite__http_append_headers(struct kite_buf *out, const struct kite_allocator *a,
                              const struct kite_http_header *h, size_t n);

#endif
