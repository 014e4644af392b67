/*
 * The grammar of Sec-WebSocket-Protocol and Sec-WebSocket-Extensions (RFC 6455 §4.3,
 * §9.1). Parsing only: which extensions and parameters mean what is decided by each
 * extension, not here.
 */
#include "http/handshake.h"

int kite__ws_protocol_next(struct kite_http_list_iter *it, struct kite_view *proto)
{
    if (!kite__http_list_next(it, proto))
        return 0;
    /* §4.1 item 10 / §11.3.4: each subprotocol is a token. */
    return kite__http_is_token(proto->ptr, proto->len) ? 1 : KITE_ERR_HANDSHAKE;
}

void kite__ws_ext_iter_headers(struct kite_ws_ext_iter *it,
                               const struct kite_http_header *headers, size_t n)
{
    memset(it, 0, sizeof(*it));
    it->headers = headers;
    it->num_headers = n;
}

void kite__ws_ext_iter_value(struct kite_ws_ext_iter *it, const char *value, size_t len)
{
    memset(it, 0, sizeof(*it));
    it->cur = value ? value : "";
    it->cur_len = value ? len : 0;
}

/* Load the next Sec-WebSocket-Extensions line into cur; false when none is left. */
static bool next_line(struct kite_ws_ext_iter *it)
{
    if (!it->headers)
        return false;
    size_t pos = it->hi;
    const struct kite_http_header *h =
        kite__http_header_next(it->headers, it->num_headers, "Sec-WebSocket-Extensions", &pos);
    it->hi = pos;
    if (!h)
        return false;
    it->cur = h->value;
    it->cur_len = h->value_len;
    it->off = 0;
    return true;
}

static inline bool at_end(const struct kite_ws_ext_iter *it)
{
    return it->off >= it->cur_len;
}

static inline char peek(const struct kite_ws_ext_iter *it)
{
    return at_end(it) ? '\0' : it->cur[it->off];
}

static void skip_ows(struct kite_ws_ext_iter *it)
{
    while (peek(it) == ' ' || peek(it) == '\t')
        it->off++;
}

static bool take_token(struct kite_ws_ext_iter *it, struct kite_view *out)
{
    size_t start = it->off;
    while (!at_end(it) && kite__http_is_tchar((unsigned char)it->cur[it->off]))
        it->off++;
    out->ptr = it->cur + start;
    out->len = it->off - start;
    return out->len > 0;
}

/*
 * quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4), with the
 * §9.1 rule that the unescaped content is a token: so every character, escaped or
 * not, must be a tchar, and there must be at least one.
 */
static bool take_quoted(struct kite_ws_ext_iter *it, struct kite_view *out)
{
    it->off++; /* opening quote */
    size_t start = it->off, chars = 0;
    for (;;) {
        if (at_end(it))
            return false;
        char c = it->cur[it->off];
        if (c == '"')
            break;
        if (c == '\\') {
            it->off++;
            if (at_end(it))
                return false;
            c = it->cur[it->off];
        }
        if (!kite__http_is_tchar((unsigned char)c))
            return false;
        chars++;
        it->off++;
    }
    out->ptr = it->cur + start;
    out->len = it->off - start;
    it->off++; /* closing quote */
    return chars > 0;
}

/* extension-param = token [ "=" (token | quoted-string) ], after the ';'. */
static int take_param(struct kite_ws_ext_iter *it, struct kite_ws_ext *ext)
{
    if (ext->num_params == KITE_WS_EXT_MAX_PARAMS)
        return KITE_ERR_LIMIT;
    struct kite_ws_ext_param *p = &ext->params[ext->num_params];
    memset(p, 0, sizeof(*p));
    skip_ows(it);
    if (!take_token(it, &p->name))
        return KITE_ERR_HANDSHAKE;
    skip_ows(it);
    if (peek(it) == '=') {
        it->off++;
        skip_ows(it);
        if (peek(it) == '"') {
            p->quoted = true;
            if (!take_quoted(it, &p->value))
                return KITE_ERR_HANDSHAKE;
        } else if (!take_token(it, &p->value)) {
            return KITE_ERR_HANDSHAKE;
        }
        skip_ows(it);
    }
    ext->num_params++;
    return KITE_OK;
}

/* extension = extension-token *( ";" extension-param ), then "," or the end. */
static int take_extension(struct kite_ws_ext_iter *it, struct kite_ws_ext *ext)
{
    ext->num_params = 0;
    if (!take_token(it, &ext->name))
        return KITE_ERR_HANDSHAKE;
    skip_ows(it);
    while (peek(it) == ';') {
        it->off++;
        int rc = take_param(it, ext);
        if (rc != KITE_OK)
            return rc;
    }
    if (at_end(it))
        return 1;
    if (peek(it) != ',')
        return KITE_ERR_HANDSHAKE;
    it->off++;
    return 1;
}

int kite__ws_ext_next(struct kite_ws_ext_iter *it, struct kite_ws_ext *ext)
{
    if (it->failed)
        return KITE_ERR_HANDSHAKE;
    for (;;) {
        /* Empty list elements are ignored (RFC 9110 §5.6.1). */
        while (peek(it) == ' ' || peek(it) == '\t' || peek(it) == ',')
            it->off++;
        if (!at_end(it))
            break;
        if (!next_line(it))
            return 0;
    }
    int rc = take_extension(it, ext);
    if (rc < 0)
        it->failed = true;
    return rc;
}

ssize_t kite__ws_ext_param_value(const struct kite_ws_ext_param *p, char *out, size_t cap)
{
    if (!p->value.ptr)
        return KITE_ERR_NOTFOUND;
    size_t o = 0;
    for (size_t i = 0; i < p->value.len; i++) {
        char c = p->value.ptr[i];
        if (p->quoted && c == '\\' && i + 1 < p->value.len)
            c = p->value.ptr[++i];
        if (o + 1 >= cap)
            return KITE_ERR_INVALID;
        out[o++] = c;
    }
    if (cap == 0)
        return KITE_ERR_INVALID;
    out[o] = '\0';
    return (ssize_t)o;
}

bool kite__ws_ext_param_equals(const struct kite_ws_ext_param *p, const char *s, size_t len)
{
    if (!p->value.ptr)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < p->value.len; i++, o++) {
        char c = p->value.ptr[i];
        if (p->quoted && c == '\\' && i + 1 < p->value.len)
            c = p->value.ptr[++i];
        if (o >= len || s[o] != c)
            return false;
    }
    return o == len;
}
