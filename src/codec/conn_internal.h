/*
 * codec/conn_internal — the layout of struct kite_codec, shared by conn.c and its unit
 * tests (which measure its size: an idle connection is mostly this struct).
 */
#ifndef KITE_CODEC_CONN_INTERNAL_H
#define KITE_CODEC_CONN_INTERNAL_H

#include "codec/frame.h"
#include "kite/codec.h"
#include "util/util.h"

/* State that only a busy or closing connection needs; allocated on first use. */
struct kite__codec_aux {
    /* Payload that spans reads: the message being reassembled (default mode), or the
     * current frame (raw mode). A default-mode control frame that spans reads is
     * appended after the message bytes (ctl_len of them) and cut off once handled. */
    struct kite_buf msg;
    struct kite_close_info ci; /* the close record (see F_CI) */
};

struct kite_codec {
    struct kite__frame_parser p;           /* framing state of the input */
    struct kite_buf out;                   /* queued output, not yet consumed */
    struct kite_ws_options opt;            /* current options */
    const struct kite_codec_callbacks *cb; /* borrowed */
    void *ud;                              /* passed to callbacks */
    const struct kite_allocator *alloc;    /* borrowed; NULL = libc */
    struct kite__codec_aux *aux;           /* lazily allocated; freed with the codec */
    /* The one timer. Its meaning follows the state: close-reply deadline once a close
     * was sent, else the pong deadline while a ping is out (F_AWAIT_PONG), else the time
     * of the next ping. Ktor's pinger works the same way: wait a period, ping, wait for
     * the pong, repeat. */
    uint64_t timer;
    uint32_t utf8;  /* incremental UTF-8 state of the text message in progress */
    uint16_t flags; /* F_* in conn.c */
    uint8_t ctl_len; /* default mode: bytes of a partial control frame in aux->msg */
    uint8_t msg_op; /* default mode: KITE_OP_TEXT/BINARY of the message in progress, or 0 */
};

#endif
