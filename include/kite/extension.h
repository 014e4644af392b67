/*
 * kite — WebSocket extensions (RFC 6455 §9) and permessage-deflate (RFC 7692).
 *
 * The model is Ktor's WebSocketExtension / WebSocketExtensionFactory, in C:
 *
 *   - An extension is a constant vtable, struct kite_extension: its name, the RSV bits it
 *     claims, how a client offers it, how a server picks among offers, how a client
 *     checks the server's answer, and how a per-session instance transforms outgoing
 *     messages and incoming message chunks. kite ships one: kite_ext_permessage_deflate.
 *   - Extensions are installed, each with its own config, in a registry, struct
 *     kite_ext_list, that an app or a route holds (Ktor's `extensions { install(X) { } }`).
 *     Two extensions that claim the same RSV bit cannot both be installed
 *     (KITE_ERR_EXISTS at install time).
 *   - The opening handshake negotiates: the server with kite_ext_negotiate() (the
 *     request's Sec-WebSocket-Extensions in, the response value and a chain out), the
 *     client with kite_ext_offer() (its request value) and kite_ext_accept() (the 101's
 *     value in, a chain out, or a refusal that fails the connection).
 *   - The outcome is a struct kite_ext_chain: one instance per negotiated extension,
 *     created for this session. Give it to the codec (kite_codec_config.extensions); the
 *     codec owns it from then on and frees it with itself. kite_codec_extension() finds
 *     an instance (Ktor's extensionOrNull()).
 *
 * Order. Extensions apply in install order on the way out (the first installed sees the
 * application's message first) and in reverse order on the way in (the first installed
 * is the last to see incoming data, just before the application), so each one undoes on
 * input what it did on output. The server lists accepted extensions in its response in
 * install order; a client builds its chain in the order of the server's response.
 *
 * Modes. Extensions are negotiated for default-mode sessions. A raw session
 * (KITE_MODE_RAW, Ktor's webSocketRaw) negotiates none unless the registry asks for it
 * (kite_ext_list_set_raw_negotiation, Ktor's negotiateExtensions); even then the raw codec
 * never transforms anything: frames are handed over as they arrive (a compressed one
 * still compressed, RSV1 set) and kite_codec_send()/send_frame() send what they are
 * given. The instances can still be looked up, to learn what was agreed.
 *
 * Threads: a registry is read-only once installed and may be used by several threads at
 * once for negotiation; a chain belongs to one session and is used by its thread only.
 */
#ifndef KITE_EXTENSION_H
#define KITE_EXTENSION_H

#include "kite/codec.h"
#include "kite/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------------------------------
 * Writing an extension
 */

/* Results, besides KITE_OK and negative kite codes. */
#define KITE_EXT_PASS 1    /* process_*: this data goes on unchanged (nothing written) */
#define KITE_EXT_DECLINE 2 /* negotiate: none of the offers is acceptable */

/* Most offers of one extension the server looks at, and most parameters over them. */
#define KITE_EXT_MAX_OFFERS 8
#define KITE_EXT_MAX_PARAMS 16

/* One extension parameter, `name` or `name=value`. Views, not NUL-terminated. The value
 * is unescaped already (a quoted-string arrives without its quotes and backslashes). */
struct kite_ext_param {
    const char *name;
    size_t name_len;
    const char *value; /* NULL when the parameter has no value */
    size_t value_len;
};

/* One element of a Sec-WebSocket-Extensions value: an offer (server side) or the
 * server's acceptance (client side). Valid only during the call that receives it. */
struct kite_ext_offer {
    const char *name; /* the extension token */
    size_t name_len;
    size_t num_params;
    const struct kite_ext_param *params; /* in order; duplicates kept */
};

/* Writes header text for offer() and negotiate(). Opaque. */
struct kite_ext_writer;

/* Client offers: start one more offer element of this extension (offer() calls it once
 * per alternative, most preferred first). KITE_OK, KITE_ERR_STATE inside negotiate()
 * (the one response element is started for you), KITE_ERR_NOMEM. */
KITE_EXTERN int kite_ext_write_offer(struct kite_ext_writer *w);
/* Append "; name" or "; name=value" to the current element. Both NUL-terminated; both
 * must be §9.1 tokens (value may be NULL). KITE_OK, KITE_ERR_INVALID (not tokens, or no
 * element started), KITE_ERR_NOMEM. */
KITE_EXTERN int kite_ext_write_param(struct kite_ext_writer *w, const char *name,
                                     const char *value);

/* A whole outgoing message (kite_codec_send). An extension that transforms it writes
 * the new payload into the sink, may set its own RSV bits in `rsv`, and returns KITE_OK;
 * the next extension then sees the new payload. */
struct kite_ext_msg {
    enum kite_opcode opcode; /* KITE_OP_TEXT or KITE_OP_BINARY */
    uint8_t rsv;             /* RSV bits set so far (KITE_RSV*) */
    const uint8_t *data;
    size_t len;
};

/* A piece of an incoming message, in order. A message gives at least one chunk (an
 * empty message one empty chunk); `first` is set on its first chunk and `last` on its
 * last. `rsv` holds the RSV bits of the message's first frame (RFC 7692 §6: they are
 * set on the first frame only) on every chunk of it. */
struct kite_ext_chunk {
    enum kite_opcode opcode; /* the message's: KITE_OP_TEXT or KITE_OP_BINARY */
    uint8_t rsv;
    bool first;
    bool last;
    const uint8_t *data; /* valid during the call */
    size_t len;
};

/* Where a transform writes its output. Opaque. */
struct kite_ext_sink;

/* Room for `n` more bytes of output: a pointer to write them to, valid until the next
 * call on the sink, or NULL when out of memory. Write, then commit what was written. */
KITE_EXTERN uint8_t *kite_ext_sink_reserve(struct kite_ext_sink *s, size_t n);
/* Add `n` written bytes to the output. KITE_OK, or KITE_ERR_TOO_BIG once the output is
 * longer than the limit (incoming: the codec's max_message_size, so stop then: the codec
 * fails the connection with 1009). */
KITE_EXTERN int kite_ext_sink_commit(struct kite_ext_sink *s, size_t n);
/* reserve + copy + commit. KITE_OK, KITE_ERR_NOMEM or KITE_ERR_TOO_BIG. */
KITE_EXTERN int kite_ext_sink_write(struct kite_ext_sink *s, const void *data, size_t n);
/* How many more bytes the output may take before it passes the limit (SIZE_MAX if no
 * limit). An incoming transform sizes its steps by this so it never produces much more
 * than the limit (decompression bombs). */
KITE_EXTERN size_t kite_ext_sink_room(const struct kite_ext_sink *s);

/*
 * An extension: a constant vtable (Ktor's WebSocketExtensionFactory plus the
 * extension's methods). Only `name` is required; a NULL method has the default below.
 * `cfg` is the registry's copy of the config given at install; instances may keep
 * pointers to it (the registry must outlive every session made with it).
 *
 * Return conventions: KITE_OK; KITE_EXT_DECLINE / KITE_EXT_PASS where said; a negative
 * kite code for failure. KITE_ERR_NOMEM always means out of memory and is passed up.
 */
struct kite_extension {
    const char *name;   /* extension token, e.g. "permessage-deflate" */
    uint8_t rsv;        /* KITE_RSV1/2/3 bits it uses; claimed exclusively at install */
    size_t config_size; /* bytes of config copied at install (0: no config) */

    /* Fill defaults into a config_size block (install with a NULL config uses them;
     * NULL: zeroes). */
    void (*config_init)(void *cfg);
    /* Check a config at install: KITE_OK or KITE_ERR_INVALID. NULL: any config. */
    int (*config_check)(const void *cfg);

    /* Client: write the offer(s) with kite_ext_write_offer/param. Writing no element
     * offers nothing. NULL: one offer with no parameters. */
    int (*offer)(const void *cfg, struct kite_ext_writer *w);
    /* Server: the client's offers of this extension, in the client's order of preference
     * (several when it offered alternatives; at most KITE_EXT_MAX_OFFERS). Pick one,
     * write the accepted parameters with kite_ext_write_param and return KITE_OK, or
     * return KITE_EXT_DECLINE (the extension is then not used; not a handshake failure).
     * NULL: accept the first offer, with no parameters. */
    int (*negotiate)(const void *cfg, const struct kite_ext_offer *offers, size_t n,
                     struct kite_ext_writer *w);
    /* Client: is the server's acceptance acceptable? KITE_OK, or anything else to refuse
     * (the client must then fail the connection, RFC 6455 §4.1). NULL: accept. */
    int (*client_accept)(const void *cfg, const struct kite_ext_offer *response);

    /* Create the per-session instance from what was agreed: `agreed` is the element of
     * the server's response (both roles see the same one). Store it in *inst. KITE_OK,
     * KITE_ERR_NOMEM, or another negative code (the negotiation then fails with it).
     * NULL: the instance is the config itself. Allocate through `a` (may be NULL: libc). */
    int (*instance_new)(const void *cfg, enum kite_role role, const struct kite_ext_offer *agreed,
                        const struct kite_allocator *a, void **inst);
    /* Free an instance (with the session). NULL: nothing to free. */
    void (*instance_free)(void *inst);

    /* A whole outgoing data message. KITE_EXT_PASS (unchanged; anything written to the
     * sink is dropped), KITE_OK (output in `out`, m->rsv updated), or a negative code
     * (kite_codec_send returns it; nothing is sent). NULL: pass. */
    int (*process_outgoing)(void *inst, struct kite_ext_msg *m, struct kite_ext_sink *out);
    /* A chunk of an incoming data message. KITE_EXT_PASS (goes on unchanged), KITE_OK
     * (output, possibly none yet, in `out`), or a negative code, which fails the
     * connection: KITE_ERR_PROTOCOL -> 1002, KITE_ERR_UTF8 -> 1007, KITE_ERR_TOO_BIG ->
     * 1009, anything else -> 1011. NULL: pass. */
    int (*process_incoming)(void *inst, const struct kite_ext_chunk *in, struct kite_ext_sink *out);
    /* The session is quiet for now: the codec calls this before it returns to the
     * application, at the end of each kite_codec_recv() (the input it was given was
     * processed and the callbacks it ran returned) and after each kite_codec_send()
     * made outside a codec callback. Between two of these calls the session is busy:
     * an extension may keep what it holds for a message for the next one (sends from
     * on_message and the further messages of the same read) and release it here
     * (permessage-deflate parks the zlib streams it borrowed). May come between two
     * chunks of one incoming message (a message may span reads). Never fails; writes
     * nothing; may be called when nothing happened since the last call. NULL: nothing
     * to do. */
    void (*idle)(void *inst);
};

/* ----------------------------------------------------------------------------------
 * The registry (installed extensions)
 */

struct kite_ext_list;

/* A new, empty registry. `a` is borrowed (NULL: libc) and must outlive it. NULL when out
 * of memory. */
KITE_EXTERN struct kite_ext_list *kite_ext_list_new(const struct kite_allocator *a);
/* Free it. NULL is a no-op. Every chain made from it must be freed first. */
KITE_EXTERN void kite_ext_list_free(struct kite_ext_list *l);
/*
 * Install `ext` with `config` (config_size bytes, copied shallowly: pointers inside it
 * are borrowed and must outlive the registry; NULL: the extension's defaults). `ext` is
 * borrowed (normally a static const). Returns KITE_OK; KITE_ERR_EXISTS when `ext` is
 * installed already or claims an RSV bit that an installed extension claims (nothing
 * installed); KITE_ERR_INVALID for a bad name, RSV bits outside KITE_RSV_MASK, or a
 * config that config_check refuses; KITE_ERR_NOMEM.
 */
KITE_EXTERN int kite_ext_list_install(struct kite_ext_list *l, const struct kite_extension *ext,
                                      const void *config);
/* Raw sessions negotiate extensions only when this is set (default false). */
KITE_EXTERN void kite_ext_list_set_raw_negotiation(struct kite_ext_list *l, bool on);
KITE_EXTERN bool kite_ext_list_raw_negotiation(const struct kite_ext_list *l);
/* Installed extensions; RSV bits they claim; the config copy of an installed one (NULL
 * if not installed; you may change fields before the first negotiation). */
KITE_EXTERN size_t kite_ext_list_count(const struct kite_ext_list *l);
KITE_EXTERN uint8_t kite_ext_list_rsv(const struct kite_ext_list *l);
KITE_EXTERN void *kite_ext_list_config(const struct kite_ext_list *l,
                                       const struct kite_extension *ext);

/* ----------------------------------------------------------------------------------
 * Negotiation (RFC 6455 §9.1)
 */

/* The negotiated instances of one session. */
struct kite_ext_chain;

/*
 * Server. `offer` is the request's Sec-WebSocket-Extensions value (several header lines
 * joined with ", "; NULL or empty: none). Each installed extension, in install order,
 * gets the offers of its name and accepts one or declines. `a` (NULL: libc) allocates
 * the chain and the instances; it must outlive the chain.
 * Returns KITE_OK with *out set to a chain, or to NULL when nothing was accepted (or
 * `mode` is raw without raw negotiation): answer without the header then.
 * KITE_ERR_HANDSHAKE: the value breaks the §9.1 grammar (answer 400); KITE_ERR_NOMEM;
 * or an instance_new failure. *out is NULL on error.
 */
KITE_EXTERN int kite_ext_negotiate(const struct kite_ext_list *l, enum kite_mode mode,
                                   const char *offer, size_t len, const struct kite_allocator *a,
                                   struct kite_ext_chain **out);
/* Server: the Sec-WebSocket-Extensions value to put in the 101; *len (if not NULL) gets
 * its length. NUL-terminated, owned by the chain, valid until the chain is freed or
 * given to kite_codec_new() (which drops it). "" for a client's chain, for NULL, and
 * after that. */
KITE_EXTERN const char *kite_ext_chain_header(const struct kite_ext_chain *ch, size_t *len);

/*
 * Client: write the request's Sec-WebSocket-Extensions value, snprintf-style: up to
 * cap-1 bytes and a NUL into buf (buf may be NULL when cap is 0). Returns the full
 * length (without the NUL; 0: offer nothing, send no header), or KITE_ERR_NOMEM or an
 * offer() error.
 */
KITE_EXTERN ssize_t kite_ext_offer(const struct kite_ext_list *l, enum kite_mode mode, char *buf,
                                   size_t cap);
/*
 * Client: check the 101's Sec-WebSocket-Extensions value (lines joined with ", "; NULL
 * or empty: none) against what kite_ext_offer() offered, and build the chain. Returns
 * KITE_OK (*out NULL when no extension was accepted), KITE_ERR_HANDSHAKE when the
 * answer is not acceptable (malformed, an extension not offered or listed twice, or
 * refused by its client_accept: RFC 6455 §4.1 says fail the connection), KITE_ERR_NOMEM
 * or an instance_new failure. *out is NULL on error.
 */
KITE_EXTERN int kite_ext_accept(const struct kite_ext_list *l, enum kite_mode mode,
                                const char *response, size_t len, const struct kite_allocator *a,
                                struct kite_ext_chain **out);

/* Free a chain that was not given to a codec. NULL is a no-op. */
KITE_EXTERN void kite_ext_chain_free(struct kite_ext_chain *ch);
/* The instance of `ext` in the chain, or NULL if it was not negotiated. */
KITE_EXTERN void *kite_ext_chain_get(const struct kite_ext_chain *ch,
                                     const struct kite_extension *ext);
/* Negotiated extensions, in application order (outgoing order). */
KITE_EXTERN size_t kite_ext_chain_count(const struct kite_ext_chain *ch);
/* The i-th one (NULL past the end); *inst gets its instance when inst is not NULL. */
KITE_EXTERN const struct kite_extension *kite_ext_chain_at(const struct kite_ext_chain *ch,
                                                           size_t i, void **inst);

/* ----------------------------------------------------------------------------------
 * permessage-deflate (RFC 7692)
 */

KITE_EXTERN extern const struct kite_extension kite_ext_permessage_deflate;

/* Should this outgoing message be compressed? (Ktor's compressIf.) */
typedef bool kite_pmd_predicate(enum kite_opcode type, const uint8_t *data, size_t len, void *ud);

/*
 * permessage-deflate's config. Fill with kite_pmd_config_init() (the "balanced" preset)
 * or kite_pmd_config_preset(), then change what you need.
 *
 * Window bits are log2 of the LZ77 window, 8-15. Per direction: "server_*" is about what
 * the server compresses (and the client inflates), "client_*" the other way.
 *   As a server: server_max_window_bits is the largest window our compressor uses; it
 *   goes in the response when below 15 or when the client asked for a limit (the
 *   smaller wins). client_max_window_bits below 15 asks clients that offered
 *   client_max_window_bits to compress with at most that window (a client that did not
 *   offer it cannot be limited: we inflate with 15 then). The *_no_context_takeover
 *   flags are put in every response (RFC 7692 §7.1.1: a server may always do that);
 *   offers that ask for them get them anyway.
 *   As a client: server_max_window_bits below 15 and server_no_context_takeover are
 *   requested in the offer (the server must honour them or decline; a second, plain
 *   offer follows when offer_fallback is set). client_max_window_bits is our
 *   compressor's largest window; we always offer client_max_window_bits (with this value
 *   when below 15) so the server may lower it. client_no_context_takeover is offered and
 *   honoured.
 * Window 8: zlib's deflate cannot make raw streams with a 256-byte window (it asks for
 * 9). When kite must compress within 8 bits, it runs zlib with 9 bits and the Z_RLE
 * strategy, whose only back-reference distance is 1, so the stream stays inside the
 * 256-byte window the peer was promised (less compression, fully valid). Inflaters are
 * made with at least 9 bits, which accepts any stream of 8 bits.
 */
struct kite_pmd_config {
    int level;                       /* zlib level 0-9 (0: stored blocks only). Default 6 */
    int mem_level;                   /* zlib memLevel 1-9: compressor hash memory. Default 8 */
    uint8_t server_max_window_bits;  /* 8-15, see above. Default 13 */
    uint8_t client_max_window_bits;  /* 8-15, see above. Default 13 */
    bool server_no_context_takeover; /* default false */
    bool client_no_context_takeover; /* default false */
    bool offer_fallback; /* client: add a plain offer after a demanding one. Default true */
    /* Client: offer client_max_window_bits, which lets the server lower our window
     * (§7.1.2.2). Without it a server may not answer with that parameter. Default true */
    bool offer_client_max_window_bits;
    /* Messages shorter than this are sent uncompressed (Ktor's compressIfBiggerThan).
     * Default 64: smaller ones rarely shrink. */
    size_t compress_threshold;
    /* From this many bytes an outgoing message is compressed at large_message_level
     * instead of `level` (0: never). The event loop compresses on its own thread, so a
     * big message at a slow level stalls every connection of that loop: 1 MiB of text
     * takes zlib about 34 ms at level 6 and 12 ms at level 1 on a 2020s x86 core, for
     * output about 20% larger (docs/extensions.md). Small messages, where the ratio
     * matters most and the time least, keep `level`. Default 64 KiB (balanced and
     * memory presets), 0 (speed and max-ratio). */
    size_t large_message_size;
    int large_message_level; /* zlib level 0-9 for those. Default 1 */
    /* Optional: called for each outgoing message above the threshold; false sends it
     * uncompressed (Ktor's compressIf). Called on the session's thread. */
    kite_pmd_predicate *compress_if;
    void *compress_if_ud;
    /* Largest inflated message accepted; more fails the connection with 1009 (a
     * decompression bomb) after at most this many bytes plus one were inflated. The
     * codec's max_message_size applies the same way; 0 here: that limit alone.
     * Default 0. */
    uint64_t max_inflated_size;
    /*
     * Memory of the directions with context takeover. false: each keeps its zlib stream
     * for the session's life (deflate about 2^(bits+2) + 2^(mem_level+9) bytes plus
     * ~6 KiB, inflate 2^bits plus ~7 KiB). true: between messages each keeps only its
     * history, the last 2^bits bytes it compressed or inflated (fewer until that many
     * were seen; 512 at most for an 8-bit inflater), and borrows a zlib stream from the
     * calling thread's pool when a message comes, primed with that history as a preset
     * dictionary: the same references and ratio, a fraction of the memory, and some CPU
     * for the priming (docs/extensions.md has measurements). The stream stays while
     * the session is busy (the messages of one read and the replies sent from their
     * callbacks) and is parked again, history saved, at the extension's idle point
     * (struct kite_extension.idle): one priming per read, not per message. Directions
     * without context takeover always use the pool. Default: true (balanced preset).
     */
    bool pool_streams;
};

/* Named presets (see docs/extensions.md for their measured memory and ratio). */
enum kite_pmd_preset {
    /* Default. zlib level 6 (level 1 from 64 KiB, large_message_size), memLevel 8,
     * context takeover both ways with 13-bit
     * windows and pooled streams (pool_streams): between messages a session keeps at
     * most 8 KiB of history per direction and no zlib state. A better ratio than
     * python-websockets' default (kept 12-bit streams, memLevel 5) for about a third
     * of its memory. */
    KITE_PMD_BALANCED = 0,
    /* zlib level 1, 15-bit windows, memLevel 8, context takeover with kept streams:
     * fastest compression, good ratio, about 300 KiB per connection that has sent and
     * received a message. */
    KITE_PMD_SPEED = 1,
    /* Level 6 (1 from 64 KiB), no context takeover either way: no zlib state at all on an idle connection
     * (streams are borrowed from a per-thread pool for one message). Lowest ratio on
     * streams of small similar messages. */
    KITE_PMD_MEMORY = 2,
    /* zlib level 9, memLevel 9, 15-bit windows, context takeover with kept streams:
     * best ratio, most CPU and memory. */
    KITE_PMD_MAX_RATIO = 3,
};

/* Fill `c` with the defaults (the balanced preset). */
KITE_EXTERN void kite_pmd_config_init(struct kite_pmd_config *c);
/* Fill `c` with a preset. KITE_OK or KITE_ERR_INVALID (unknown preset; c untouched). */
KITE_EXTERN int kite_pmd_config_preset(struct kite_pmd_config *c, enum kite_pmd_preset p);
/* The preset named "balanced", "speed", "memory" or "max-ratio" (ASCII
 * case-insensitive). KITE_OK or KITE_ERR_NOTFOUND. */
KITE_EXTERN int kite_pmd_preset_by_name(const char *name, enum kite_pmd_preset *out);

/* What was agreed for one session (both roles read the same agreement). */
struct kite_pmd_params {
    uint8_t server_max_window_bits; /* window the server compresses with (8-15) */
    uint8_t client_max_window_bits; /* window the client compresses with (8-15) */
    bool server_no_context_takeover;
    bool client_no_context_takeover;
};
/* Read a permessage-deflate instance's agreement (from kite_codec_extension()).
 * KITE_OK, or KITE_ERR_INVALID when inst is NULL. */
KITE_EXTERN int kite_pmd_params(const void *inst, struct kite_pmd_params *out);
/* Compression memory this instance holds right now, in bytes requested from the
 * allocator: its zlib streams (kept ones; pooled ones only while a message is in
 * progress, or with pool_streams until the session is idle) and its histories
 * (pool_streams). 0 between messages without context takeover, and before the first
 * message. */
KITE_EXTERN size_t kite_pmd_memory(const void *inst);

/* Free the calling thread's pool of idle zlib streams (kept for sessions without
 * context takeover). Call before a thread that used permessage-deflate exits, or to
 * give memory back; harmless at any time. A pooled stream was allocated through the
 * allocator of the session that made it (and is reused only by sessions with an equal
 * allocator: same functions and ud): that allocator must stay valid until the pools
 * of the threads that used it are trimmed. */
KITE_EXTERN void kite_pmd_pool_trim(void);
/* Idle streams in the calling thread's pool and the bytes they hold. */
KITE_EXTERN size_t kite_pmd_pool_size(size_t *bytes);

#ifdef __cplusplus
}
#endif
#endif
