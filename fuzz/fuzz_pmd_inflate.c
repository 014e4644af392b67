/*
 * Fuzz target: permessage-deflate decompression through the codec (RFC 7692 §7.2.2).
 *
 * Input layout:
 *   byte 0   agreement: bit 0 server_no_context_takeover, bit 1 client_no_context_takeover,
 *            bits 2-4 server_max_window_bits - 8, bit 5 text (else binary),
 *            bit 6 send the message twice (context takeover across messages)
 *   byte 1   read size: input is fed in pieces of 1 + byte 1 bytes
 *   byte 2   fragments: the payload is cut into 1 + byte 2 % 8 frames
 *   byte 3-4 max_message_size (big-endian) + 1: the inflated-size limit
 *   rest     the compressed payload (no trailing 00 00 ff ff)
 *
 * A client codec that agreed to those parameters gets the payload as one compressed
 * message (RSV1 on its first frame), fragmented and fed in pieces. Invariants: no crash
 * or leak (ASan, and a counting allocator), and no message handed over is longer than
 * the limit; after a message over the limit, the connection is failed with 1009.
 */
#include <stdio.h>
#include <stdlib.h>

#include "codec/conn_internal.h"

struct state {
    uint64_t limit;
    long live;
};

static void *f_malloc(size_t n, void *ud)
{
    void *p = malloc(n);
    if (p)
        ((struct state *)ud)->live++;
    return p;
}

static void *f_realloc(void *p, size_t n, void *ud)
{
    void *q = realloc(p, n);
    if (q && !p)
        ((struct state *)ud)->live++;
    return q;
}

static void f_free(void *p, void *ud)
{
    if (p)
        ((struct state *)ud)->live--;
    free(p);
}

static int on_message(struct kite_codec *c, enum kite_opcode t, const uint8_t *d, size_t n,
                      void *ud)
{
    (void)c, (void)t, (void)d;
    if (n > ((struct state *)ud)->limit)
        abort(); /* the limit must hold on inflated bytes */
    return KITE_OK;
}

static const struct kite_codec_callbacks cbs = {.on_message = on_message};

/* Frame the payload as `frags` frames of one message into out; returns the length. */
static size_t frame(uint8_t *out, const uint8_t *p, size_t n, unsigned frags, uint8_t op)
{
    size_t o = 0, per = n / frags + 1;
    for (unsigned f = 0; f < frags; f++) {
        size_t k = f + 1 == frags ? n : KITE_MIN(per, n);
        bool fin = f + 1 == frags;
        uint8_t first = (uint8_t)((fin ? 0x80 : 0) | (f == 0 ? 0x40 | op : 0));
        o += kite__frame_write_header(out + o, first, k, NULL);
        memcpy(out + o, p, k);
        o += k;
        p += k;
        n -= k;
    }
    return o;
}

static void agreement(uint8_t b, char *resp, size_t cap)
{
    snprintf(resp, cap, "permessage-deflate; server_max_window_bits=%u%s%s", 8u + ((b >> 2) & 7u),
             (b & 1) ? "; server_no_context_takeover" : "",
             (b & 2) ? "; client_no_context_takeover" : "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5 || size > 65536)
        return 0;
    struct state st = {((uint64_t)data[3] << 8 | data[4]) + 1, 0};
    struct kite_allocator a = {f_malloc, f_realloc, f_free, &st};
    char resp[128];
    agreement(data[0], resp, sizeof(resp));
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    struct kite_ext_chain *ch = NULL;
    if (!l || kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL) != KITE_OK ||
        kite_ext_accept(l, KITE_MODE_DEFAULT, resp, strlen(resp), &a, &ch) != KITE_OK || !ch)
        abort();
    struct kite_codec_config cc;
    kite_codec_config_init(&cc);
    cc.role = KITE_ROLE_CLIENT;
    cc.allocator = &a;
    cc.extensions = ch;
    cc.options.max_message_size = st.limit;
    struct kite_codec *c = kite_codec_new(&cc, &cbs, &st, 0);
    if (!c)
        abort();
    size_t n = size - 5, piece = 1u + data[1];
    unsigned frags = 1u + data[2] % 8u;
    uint8_t op = (data[0] & 0x20) ? KITE_OP_TEXT : KITE_OP_BINARY;
    uint8_t *buf = malloc(2 * (n + 14 * 8) + 1);
    size_t len = frame(buf, data + 5, n, frags, op);
    if (data[0] & 0x40)
        len += frame(buf + len, data + 5, n, frags, op);
    for (size_t off = 0; off < len && !kite_codec_is_closed(c);) {
        size_t k = KITE_MIN(piece, len - off);
        ssize_t r = kite_codec_recv(c, buf + off, k, 0);
        if (r < 0 || (size_t)r < k)
            break;
        off += k;
    }
    const struct kite_close_info *ci = kite_codec_close_info(c);
    if (ci && ci->code == KITE_CLOSE_TOO_BIG && ci->error != KITE_ERR_TOO_BIG)
        abort();
    kite_codec_free(c);
    free(buf);
    kite_ext_list_free(l);
    kite_pmd_pool_trim();
    if (st.live != 0)
        abort(); /* everything the session allocated was freed */
    return 0;
}
