/*
 * codec/frame — RFC 6455 §5.2 framing: an incremental, pull-style frame parser for
 * both roles, the frame-header writer, and masking. Sans-I/O.
 *
 * The parser is driven in a loop. Each call looks at in[0..len), consumes some bytes
 * (*consumed) and reports one event:
 *
 *   KITE__FEV_NEED_MORE  all input consumed, nothing to report (call again with more)
 *   KITE__FEV_HEADER     a frame header was parsed: p->hdr describes the frame
 *   KITE__FEV_DATA       a chunk of the current frame's payload, already unmasked in
 *                        place: ev->data/ev->len point into `in`. ev->frame_end is true
 *                        on the last chunk. Every frame produces at least one DATA event
 *                        (a zero-length one for an empty payload), so frame_end always
 *                        fires once per frame.
 *   KITE__FEV_ERROR      the input breaks a rule; ev->close_code (1002 or 1009) and
 *                        ev->reason (static string) say which. The parser is then stuck:
 *                        every later call returns the same error.
 *
 * Input may be split anywhere, one byte at a time included; the parser buffers at
 * most the 14 header bytes itself and never copies payload.
 *
 * Rules enforced (RFC 6455 §5): known opcodes only (§5.2); RSV bits only those in
 * rsv_allowed (claimed by negotiated extensions), and only on the first frame of a
 * data message: continuation and control frames with any RSV bit are refused (the
 * rule RFC 7692 §6.1 sets for RSV1, applied to every bit); control frames have fin
 * set and payload <= 125 (§5.5); a 64-bit length has its top bit clear (§5.2); the
 * length uses the minimal encoding (§5.2); a server requires masked frames when
 * require_mask is set, a client refuses masked frames (§5.1); a continuation frame
 * needs a message in progress and a new data frame needs none (§5.4); payload length
 * over max_frame_size -> 1009.
 */
#ifndef KITE_CODEC_FRAME_H
#define KITE_CODEC_FRAME_H

#include "util/util.h"
#include "kite/codec.h"

enum kite__fev {
    KITE__FEV_NEED_MORE = 0,
    KITE__FEV_HEADER = 1,
    KITE__FEV_DATA = 2,
    KITE__FEV_ERROR = 3,
};

struct kite__frame_hdr {
    uint8_t opcode;       /* enum kite_opcode */
    bool fin;
    uint8_t rsv;          /* KITE_RSV* bits */
    bool masked;
    uint8_t mask[4];
    uint64_t payload_len;
};

struct kite__frame_parser {
    struct kite__frame_hdr hdr; /* the current frame (valid after HEADER) */
    uint64_t remaining;         /* payload bytes still to come */
    uint64_t max_frame_size;
    uint8_t role;               /* enum kite_role */
    uint8_t rsv_allowed;
    bool require_mask;          /* server: refuse unmasked frames */
    uint8_t state;              /* internal */
    uint8_t hbuf[14];           /* header bytes seen so far */
    uint8_t hlen;               /* bytes in hbuf */
    uint8_t mask_pos;           /* running offset into the mask key (0-3) */
    bool in_message;            /* a fragmented data message is in progress (§5.4) */
    uint8_t msg_opcode;         /* its opcode (TEXT or BINARY) */
    uint16_t err_code;          /* sticky error close code */
    const char *err_reason;     /* sticky error reason */
};

struct kite__frame_event {
    const uint8_t *data; /* DATA: payload chunk (unmasked, points into the input) */
    size_t len;
    bool frame_end;      /* DATA: this chunk ends the frame */
    uint16_t close_code; /* ERROR: 1002 or 1009 */
    const char *reason;  /* ERROR: short human-readable reason (static) */
};

void kite__frame_parser_init(struct kite__frame_parser *p, enum kite_role role,
                             uint64_t max_frame_size, uint8_t rsv_allowed, bool require_mask);

/* Parse from in[0..len); see the module comment. `in` is modified (unmasking). */
enum kite__fev kite__frame_parse(struct kite__frame_parser *p, uint8_t *in, size_t len,
                                 size_t *consumed, struct kite__frame_event *ev);

/* Bytes a frame header needs for `payload_len` (2, 4 or 10, plus 4 when masked). */
size_t kite__frame_header_size(uint64_t payload_len, bool masked);

/*
 * Write a frame header into out (room for kite__frame_header_size()). `first` is
 * fin|rsv|opcode as in byte 0: (fin ? 0x80 : 0) | rsv | opcode. `mask` is NULL for an
 * unmasked frame. Returns the bytes written.
 */
size_t kite__frame_write_header(uint8_t *out, uint8_t first, uint64_t payload_len,
                                const uint8_t *mask);

/* Copy `len` bytes from src to dst masking them with key from position `offset`. */
void kite__mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                     size_t offset);

/* RFC 6455 §5.5.1, §7.4: check a close frame payload. Returns 0 if valid and fills
 * *code (1005 when the payload is empty), *reason/*reason_len (a view into payload).
 * Otherwise returns the close code to fail with: 1002 (1-byte payload, invalid code)
 * or 1007 (reason not UTF-8). */
uint16_t kite__close_parse(const uint8_t *payload, size_t len, uint16_t *code,
                           const uint8_t **reason, size_t *reason_len);

#endif
