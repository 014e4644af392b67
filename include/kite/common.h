/*
 * kite — common definitions: visibility, error codes, the allocator hook, RFC 6455
 * opcodes and close codes. Included by <kite/kite.h>; do not include directly.
 */
#ifndef KITE_COMMON_H
#define KITE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kite/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KITE_BUILDING) && defined(__GNUC__)
#define KITE_EXTERN __attribute__((visibility("default")))
#else
#define KITE_EXTERN
#endif

/*
 * Return codes. 0 is success; a negative value is failure. A failed system call
 * returns -errno (e.g. -ECONNRESET). kite's own codes sit at -5000 and below, out of
 * errno's range, grouped by kind. Numbers are never reused or renumbered.
 */
enum kite_err {
    KITE_OK = 0,
    /* would-block / progress */
    KITE_AGAIN = -5000,      /* try again later (output full, operation pending) */
    KITE_INCOMPLETE = -5001, /* need more input; not an error */
    /* protocol */
    KITE_ERR_PROTOCOL = -5100,  /* peer violated RFC 6455 (close 1002) */
    KITE_ERR_UTF8 = -5101,      /* invalid UTF-8 in a text message or close reason (1007) */
    KITE_ERR_TOO_BIG = -5102,   /* frame or message over the configured limit (1009) */
    KITE_ERR_CLOSED = -5103,    /* the session is closing or closed: nothing more can be sent */
    KITE_ERR_TIMEOUT = -5104,   /* ping, close-handshake or I/O timeout */
    KITE_ERR_HANDSHAKE = -5105, /* the opening handshake was rejected or is malformed */
    KITE_ERR_HTTP = -5106,      /* malformed HTTP message */
    KITE_ERR_HEAD_TOO_BIG = -5107, /* HTTP head over the size or header-count limit (431) */
    KITE_ERR_POLICY = -5108,    /* refused by a configured policy (origin, limits) */
    /* arguments and state */
    KITE_ERR_INVALID = -5200, /* bad argument */
    KITE_ERR_STATE = -5201,   /* call not allowed in the object's current state */
    KITE_ERR_NOTFOUND = -5202, /* no such route, extension, or entry */
    KITE_ERR_EXISTS = -5203,  /* already registered (e.g. an rsv bit already claimed) */
    /* callbacks */
    KITE_ERR_CALLBACK = -5300, /* a user callback asked to abort */
    /* resources */
    KITE_ERR_NOMEM = -5400, /* an allocation failed; the object is left consistent */
    KITE_ERR_LIMIT = -5401, /* a resource limit was reached (connections, queue) */
    /* TLS and crypto */
    KITE_ERR_TLS = -5500,      /* TLS handshake or record failure */
    KITE_ERR_TLS_VERIFY = -5501, /* the peer's certificate did not verify */
    KITE_ERR_CRYPTO = -5502,   /* libcrypto failed (digest, randomness) */
    /* names and addresses */
    KITE_ERR_RESOLVE = -5600, /* host name could not be resolved */
    KITE_ERR_URL = -5601,     /* malformed or unsupported URL */
};

/* A human-readable message for a kite code or -errno. Never NULL; static storage. */
KITE_EXTERN const char *kite_strerror(int err);
/* The symbolic name ("KITE_ERR_PROTOCOL", "ECONNRESET"). Never NULL; static storage. */
KITE_EXTERN const char *kite_err_name(int err);
/* The library's version as KITE_VERSION_NUM and as a string. */
KITE_EXTERN unsigned kite_version(void);
KITE_EXTERN const char *kite_version_string(void);

/*
 * Allocator hook. Every allocation kite makes goes through one of these, per object
 * (set at creation; NULL means libc). malloc/realloc return NULL on failure and kite
 * turns that into KITE_ERR_NOMEM; it never aborts. free accepts NULL. realloc(p, 0)
 * is never called.
 */
struct kite_allocator {
    void *(*malloc)(size_t size, void *ud);
    void *(*realloc)(void *ptr, size_t size, void *ud);
    void (*free)(void *ptr, void *ud);
    void *ud; /* passed to every call */
};

/* RFC 6455 §5.2 / §11.8 opcodes. */
enum kite_opcode {
    KITE_OP_CONTINUATION = 0x0,
    KITE_OP_TEXT = 0x1,
    KITE_OP_BINARY = 0x2,
    KITE_OP_CLOSE = 0x8,
    KITE_OP_PING = 0x9,
    KITE_OP_PONG = 0xA,
};

/* RSV bits as they sit in a frame's first byte (RFC 6455 §5.2). */
#define KITE_RSV1 0x40u
#define KITE_RSV2 0x20u
#define KITE_RSV3 0x10u
#define KITE_RSV_MASK 0x70u

/*
 * RFC 6455 §7.4.1 close codes, plus the IANA-registered 1012-1014 (Ktor's
 * SERVICE_RESTART and TRY_AGAIN_LATER). These are never return values.
 * 1005, 1006 and 1015 are never sent on the wire; kite reports them in
 * struct kite_close_info only.
 */
enum kite_close_code {
    KITE_CLOSE_NORMAL = 1000,
    KITE_CLOSE_GOING_AWAY = 1001,
    KITE_CLOSE_PROTOCOL_ERROR = 1002,
    KITE_CLOSE_CANNOT_ACCEPT = 1003,
    KITE_CLOSE_NO_STATUS = 1005,   /* a close frame carried no code (not sent) */
    KITE_CLOSE_ABNORMAL = 1006,    /* closed without a close frame (not sent) */
    KITE_CLOSE_NOT_CONSISTENT = 1007,
    KITE_CLOSE_POLICY = 1008,
    KITE_CLOSE_TOO_BIG = 1009,
    KITE_CLOSE_NO_EXTENSION = 1010,
    KITE_CLOSE_INTERNAL_ERROR = 1011,
    KITE_CLOSE_SERVICE_RESTART = 1012,
    KITE_CLOSE_TRY_AGAIN_LATER = 1013,
    KITE_CLOSE_BAD_GATEWAY = 1014,
    KITE_CLOSE_TLS_HANDSHAKE = 1015, /* not sent */
};

/*
 * RFC 6455 §7.4: may `code` appear in a close frame on the wire?
 * True for 1000-1003, 1007-1014 and 3000-4999.
 */
KITE_EXTERN bool kite_close_code_is_valid(unsigned code);

/* Longest close reason: 125-byte control payload minus the 2-byte code (§5.5). */
#define KITE_CLOSE_REASON_MAX 123

/* Who started the close. */
enum kite_close_initiator {
    KITE_CLOSED_BY_NONE = 0, /* the transport ended without any close frame */
    KITE_CLOSED_BY_LOCAL = 1, /* we sent the first close frame (or failed the connection) */
    KITE_CLOSED_BY_PEER = 2,  /* the peer sent the first close frame */
};

/*
 * How a session ended: Ktor's closeReason plus what a C program needs to know.
 * `code` and `reason` are those of the first close frame (ours if we started, the
 * peer's if it did); 1005 if that frame had no code; 1006 if there was no close
 * frame at all. `clean` is true when the close handshake completed both ways.
 * `error` is 0, a kite code (KITE_ERR_PROTOCOL, KITE_ERR_UTF8, KITE_ERR_TOO_BIG,
 * KITE_ERR_TIMEOUT, ...) or a transport -errno.
 */
struct kite_close_info {
    enum kite_close_initiator initiator;
    uint16_t code;
    bool clean;
    int error;
    uint8_t reason_len;
    char reason[KITE_CLOSE_REASON_MAX + 1]; /* NUL-terminated; reason_len bytes of UTF-8 */
};

#ifdef __cplusplus
}
#endif
#endif
