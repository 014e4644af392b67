/*
 * Header grammar of the opening handshake: token lists (RFC 9110 §5.6.1, RFC 6455
 * §4.2.1 items 3-4), Sec-WebSocket-Protocol (§4.1 item 10) and Sec-WebSocket-Extensions
 * (§9.1).
 */
#include "http/handshake.h"
#include "test.h"

#define MAXH 16

static bool view_is(struct kite_view v, const char *s)
{
    return v.ptr && v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

/* A head of `lines` (each "Name: value\r\n"), parsed into h. */
static size_t parse_lines(const char *lines, struct kite_http_header *h)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n%s\r\n", lines);
    struct kite_http_request req;
    struct kite_http_limits lim = {sizeof(buf), MAXH};
    ssize_t n = kite__http_parse_request(buf, strlen(buf), 0, &lim, &req, h);
    if (n <= 0)
        kite_test_fail(__FILE__, __LINE__, "head did not parse: %zd", n);
    return req.num_headers;
}

static bool has(const char *lines, const char *name, const char *token)
{
    struct kite_http_header h[MAXH];
    size_t n = parse_lines(lines, h);
    return kite__http_has_token(h, n, name, token);
}

/* RFC 6455 §4.2.1 items 3-4 with RFC 9110 §5.6.1 lists: case-insensitive, any OWS,
 * empty elements, several lines; whole elements only. */
TEST(token_list_membership)
{
    ASSERT(has("Connection: Upgrade\r\n", "connection", "upgrade"));
    ASSERT(has("Connection: keep-alive,upgrade\r\n", "Connection", "upgrade"));
    ASSERT(has("Connection: keep-alive , \t UPGRADE\t\r\n", "Connection", "upgrade"));
    ASSERT(has("Connection: ,,upgrade,,\r\n", "Connection", "upgrade"));
    ASSERT(has("Connection: keep-alive\r\nX: y\r\nCONNECTION: Upgrade\r\n", "Connection",
               "upgrade"));
    ASSERT(!has("Connection: keep-alive\r\n", "Connection", "upgrade"));
    ASSERT(!has("Connection: upgrade2, xupgrade\r\n", "Connection", "upgrade"));
    ASSERT(!has("Connection: up grade\r\n", "Connection", "upgrade"));
    ASSERT(!has("Connection:\r\n", "Connection", "upgrade"));
    ASSERT(!has("X-Connection: upgrade\r\n", "Connection", "upgrade"));
    ASSERT(!has("", "Connection", "upgrade"));
}

/* RFC 6455 §4.1 item 10 / §11.3.4: subprotocols are tokens in a list over any lines. */
TEST(protocol_list)
{
    struct kite_http_header h[MAXH];
    size_t n = parse_lines("Sec-WebSocket-Protocol: chat ,superchat,\r\n"
                           "sec-websocket-protocol: , v2.json\r\n",
                           h);
    struct kite_http_list_iter it;
    struct kite_view p;
    kite__http_list_init(&it, h, n, "Sec-WebSocket-Protocol");
    ASSERT_EQ(kite__ws_protocol_next(&it, &p), 1);
    ASSERT(view_is(p, "chat"));
    ASSERT_EQ(kite__ws_protocol_next(&it, &p), 1);
    ASSERT(view_is(p, "superchat"));
    ASSERT_EQ(kite__ws_protocol_next(&it, &p), 1);
    ASSERT(view_is(p, "v2.json"));
    ASSERT_EQ(kite__ws_protocol_next(&it, &p), 0);

    n = parse_lines("Sec-WebSocket-Protocol: chat, soap/1.2\r\n", h);
    kite__http_list_init(&it, h, n, "Sec-WebSocket-Protocol");
    ASSERT_EQ(kite__ws_protocol_next(&it, &p), 1);
    ASSERT_EQ(kite__ws_protocol_next(&it, &p), KITE_ERR_HANDSHAKE);
    n = parse_lines("Sec-WebSocket-Protocol: \"chat\"\r\n", h);
    kite__http_list_init(&it, h, n, "Sec-WebSocket-Protocol");
    ASSERT_EQ(kite__ws_protocol_next(&it, &p), KITE_ERR_HANDSHAKE);
}

/* Collect all extensions of one value; returns the count or the first error. */
static int parse_ext(const char *value, struct kite_ws_ext *out, int max)
{
    struct kite_ws_ext_iter it;
    kite__ws_ext_iter_value(&it, value, strlen(value));
    int n = 0, rc;
    struct kite_ws_ext tmp;
    while ((rc = kite__ws_ext_next(&it, n < max ? &out[n] : &tmp)) == 1)
        n++;
    return rc < 0 ? rc : n;
}

static bool param_is(const struct kite_ws_ext_param *p, const char *name, const char *value)
{
    if (!view_is(p->name, name))
        return false;
    if (!value)
        return p->value.ptr == NULL;
    char buf[64];
    ssize_t n = kite__ws_ext_param_value(p, buf, sizeof(buf));
    return n >= 0 && strcmp(buf, value) == 0;
}

/* RFC 6455 §9.1 and RFC 7692 §7's offers: names, bare and valued params. */
TEST(extension_grammar_positive)
{
    struct kite_ws_ext e[4];
    ASSERT_EQ(parse_ext("permessage-deflate", e, 4), 1);
    ASSERT(view_is(e[0].name, "permessage-deflate"));
    ASSERT_EQ(e[0].num_params, 0);

    ASSERT_EQ(parse_ext("permessage-deflate; client_max_window_bits; server_max_window_bits=10",
                        e, 4),
              1);
    ASSERT_EQ(e[0].num_params, 2);
    ASSERT(param_is(&e[0].params[0], "client_max_window_bits", NULL));
    ASSERT(param_is(&e[0].params[1], "server_max_window_bits", "10"));
    ASSERT(!e[0].params[1].quoted);

    /* Optional whitespace around every separator; several offers. */
    ASSERT_EQ(parse_ext("  a ;b = 1 ;\tc=\"2\" , d;e\t, f  ", e, 4), 3);
    ASSERT(view_is(e[0].name, "a"));
    ASSERT_EQ(e[0].num_params, 2);
    ASSERT(param_is(&e[0].params[0], "b", "1"));
    ASSERT(param_is(&e[0].params[1], "c", "2"));
    ASSERT(e[0].params[1].quoted);
    ASSERT(view_is(e[1].name, "d"));
    ASSERT(param_is(&e[1].params[0], "e", NULL));
    ASSERT(view_is(e[2].name, "f"));
    ASSERT_EQ(e[2].num_params, 0);
}

/* §9.1: a quoted-string value must unescape to a token; quoted-pair "\x" is x. */
TEST(extension_quoted_values)
{
    struct kite_ws_ext e[2];
    ASSERT_EQ(parse_ext("x; p=\"1\\0\"; q=\"\\a\\b\"", e, 2), 1);
    ASSERT(param_is(&e[0].params[0], "p", "10"));
    ASSERT(param_is(&e[0].params[1], "q", "ab"));
    ASSERT(kite__ws_ext_param_equals(&e[0].params[0], "10", 2));
    ASSERT(!kite__ws_ext_param_equals(&e[0].params[0], "1\\0", 3));
    ASSERT(!kite__ws_ext_param_equals(&e[0].params[0], "1", 1));
    ASSERT(!kite__ws_ext_param_equals(&e[0].params[0], "100", 3));
    /* Raw view excludes the quotes but keeps the escapes. */
    ASSERT(view_is(e[0].params[0].value, "1\\0"));
    /* A comma inside quotes is not a token char: malformed, not a split point. */
    ASSERT_EQ(parse_ext("x; p=\"a,b\"", e, 2), KITE_ERR_HANDSHAKE);
}

/* Copying a value: needs len + 1 bytes; no value is NOTFOUND. */
TEST(extension_param_value_copy)
{
    struct kite_ws_ext e[1];
    ASSERT_EQ(parse_ext("x; a=\"1\\5\"; b", e, 1), 1);
    char buf[3];
    ASSERT_EQ(kite__ws_ext_param_value(&e[0].params[0], buf, 3), 2);
    ASSERT_STREQ(buf, "15");
    ASSERT_EQ(kite__ws_ext_param_value(&e[0].params[0], buf, 2), KITE_ERR_INVALID);
    ASSERT_EQ(kite__ws_ext_param_value(&e[0].params[0], buf, 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite__ws_ext_param_value(&e[0].params[1], buf, 3), KITE_ERR_NOTFOUND);
    ASSERT(!kite__ws_ext_param_equals(&e[0].params[1], "", 0));
}

/* RFC 9110 §5.6.1: empty list elements and trailing commas are ignored. */
TEST(extension_empty_elements)
{
    struct kite_ws_ext e[4];
    ASSERT_EQ(parse_ext("a,", e, 4), 1);
    ASSERT_EQ(parse_ext(", a ,, b ,", e, 4), 2);
    ASSERT(view_is(e[1].name, "b"));
    ASSERT_EQ(parse_ext("", e, 4), 0);
    ASSERT_EQ(parse_ext(" , ", e, 4), 0);
}

/* §9.1 leaves the meaning of repeats to each extension: syntax allows them. */
TEST(extension_duplicates_allowed)
{
    struct kite_ws_ext e[3];
    ASSERT_EQ(parse_ext("a; p=1; p=2; p, a; p", e, 3), 2);
    ASSERT_EQ(e[0].num_params, 3);
    ASSERT(param_is(&e[0].params[0], "p", "1"));
    ASSERT(param_is(&e[0].params[1], "p", "2"));
    ASSERT(param_is(&e[0].params[2], "p", NULL));
    ASSERT(view_is(e[1].name, "a"));
}

/* §9.1 negative cases: each is rejected, not silently accepted. */
TEST(extension_grammar_negative)
{
    static const char *bad[] = {
        ";",            /* no name */
        "a;",           /* empty param */
        "a;;b",         /* empty param */
        "a; ;b",        /* empty param */
        "a; =1",        /* param without name */
        "a; b=",        /* '=' without value */
        "a; b=\"\"",    /* empty quoted value is not a token */
        "a; b=\"x y\"", /* space: not a token once unescaped */
        "a; b=\"x",     /* unterminated */
        "a; b=\"x\\",   /* escape at end */
        "a; b=\"x\\\"", /* escaped closing quote: unterminated */
        "a b",          /* two tokens */
        "a; b=c d",     /* junk after a value */
        "a; b==c",      /* double '=' */
        "a; b=1/2",     /* '/' is not a tchar */
        "\"a\"",        /* quoted name */
        "a; \"b\"=1",   /* quoted param name */
        "a; b=\"1\"x",  /* junk after closing quote */
        "a=1",          /* name with a value */
        "a, b;, c",     /* empty param in the second offer */
        "a\x80",        /* obs-text in a name */
    };
    struct kite_ws_ext e[4];
    for (size_t i = 0; i < KITE_ARRAY_LEN(bad); i++) {
        int rc = parse_ext(bad[i], e, 4);
        if (rc != KITE_ERR_HANDSHAKE)
            kite_test_fail(__FILE__, __LINE__, "accepted \"%s\" (%d)", bad[i], rc);
    }
}

/* Once malformed, the iterator keeps failing (no resync into garbage). */
TEST(extension_error_is_sticky)
{
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    const char *v = "a, b c, d";
    kite__ws_ext_iter_value(&it, v, strlen(v));
    ASSERT_EQ(kite__ws_ext_next(&it, &e), 1);
    ASSERT_EQ(kite__ws_ext_next(&it, &e), KITE_ERR_HANDSHAKE);
    ASSERT_EQ(kite__ws_ext_next(&it, &e), KITE_ERR_HANDSHAKE);
}

/* A fixed-size record: more than KITE_WS_EXT_MAX_PARAMS parameters is KITE_ERR_LIMIT. */
TEST(extension_param_limit)
{
    char v[256] = "x";
    for (int i = 0; i < KITE_WS_EXT_MAX_PARAMS; i++)
        strcat(v, "; p");
    struct kite_ws_ext e[1];
    ASSERT_EQ(parse_ext(v, e, 1), 1);
    ASSERT_EQ(e[0].num_params, KITE_WS_EXT_MAX_PARAMS);
    strcat(v, "; q");
    ASSERT_EQ(parse_ext(v, e, 1), KITE_ERR_LIMIT);
}

/* §9.1 lists may come on several header lines; each line is a complete list. */
TEST(extension_over_header_lines)
{
    struct kite_http_header h[MAXH];
    size_t n = parse_lines("Sec-WebSocket-Extensions: a; x=1, b\r\n"
                           "Host: h\r\n"
                           "sec-websocket-extensions: \r\n"
                           "SEC-WEBSOCKET-EXTENSIONS: c; y=\"2\"\r\n",
                           h);
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    kite__ws_ext_iter_headers(&it, h, n);
    ASSERT_EQ(kite__ws_ext_next(&it, &e), 1);
    ASSERT(view_is(e.name, "a") && e.num_params == 1);
    ASSERT_EQ(kite__ws_ext_next(&it, &e), 1);
    ASSERT(view_is(e.name, "b") && e.num_params == 0);
    ASSERT_EQ(kite__ws_ext_next(&it, &e), 1);
    ASSERT(view_is(e.name, "c") && param_is(&e.params[0], "y", "2"));
    ASSERT_EQ(kite__ws_ext_next(&it, &e), 0);
    ASSERT_EQ(kite__ws_ext_next(&it, &e), 0);
    /* An element cannot continue on the next line. */
    n = parse_lines("Sec-WebSocket-Extensions: a;\r\nSec-WebSocket-Extensions: x=1\r\n", h);
    kite__ws_ext_iter_headers(&it, h, n);
    ASSERT_EQ(kite__ws_ext_next(&it, &e), KITE_ERR_HANDSHAKE);
    /* No header at all. */
    n = parse_lines("Host: h\r\n", h);
    kite__ws_ext_iter_headers(&it, h, n);
    ASSERT_EQ(kite__ws_ext_next(&it, &e), 0);
}
