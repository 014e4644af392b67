/*
 * kite — TLS configuration: wss:// servers and clients. Included by <kite/kite.h>.
 *
 * kite speaks TLS through OpenSSL. These structs say what a server presents and what a
 * client trusts; the server and client options take a pointer to them. Everything
 * else has safe defaults and is described in docs/tls.md:
 *
 *   - TLS 1.2 and 1.3 only; OpenSSL's default cipher suites; no renegotiation; no
 *     compression.
 *   - ALPN: a server selects "http/1.1" when the client offers it (a client offering
 *     no ALPN is fine; one offering only other protocols, e.g. only "h2", is refused
 *     with the no_application_protocol alert, RFC 7301 §3.2). A client offers
 *     "http/1.1".
 *   - A server issues session tickets (stateless resumption) and keeps no session cache.
 *   - A client verifies the server's certificate chain against the system trust store
 *     (or the CA file/directory given) and checks that the certificate is valid for the
 *     host it connects to (its DNS name, or its IP address for an IP literal). Turning
 *     that off takes an explicit `insecure = true`.
 *   - The end of the stream without a TLS close_notify is read as a normal end of
 *     stream: WebSocket's own close handshake is what tells a clean close from a cut.
 *
 *   struct kite_tls_server_options tls;
 *   kite_tls_server_options_init(&tls);
 *   tls.cert_file = "fullchain.pem";
 *   tls.key_file = "privkey.pem";
 *   // then hand &tls to the server's options
 *
 * File names are read when the server or client is created (not when these functions
 * run); a missing or unreadable file, a key that does not match its certificate, or a
 * bad cipher list is reported then, with a message that names the file and the reason.
 *
 * All pointers in these structs are borrowed: they must stay valid until the server or
 * client they configure has been created (kite copies what it keeps).
 */
#ifndef KITE_TLS_H
#define KITE_TLS_H

#include "kite/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Contexts built from these options (internal; one per server or client, shared by all
 * its connections). */
struct kite_tls_server_ctx;
struct kite_tls_client_ctx;

/* Protocol versions for min_version / max_version (their wire values). */
enum kite_tls_version {
    KITE_TLS_VERSION_DEFAULT = 0, /* min: TLS 1.2; max: the newest OpenSSL has (1.3) */
    KITE_TLS_VERSION_1_2 = 0x0303,
    KITE_TLS_VERSION_1_3 = 0x0304,
};

/*
 * One extra certificate, chosen by the name the client asks for (SNI, RFC 6066 §3).
 * `server_name` is a host name ("api.example.com", matched case-insensitively) or a
 * wildcard of one leftmost label ("*.example.com": matches "a.example.com", not
 * "example.com" nor "a.b.example.com"). Exact names win over wildcards; among
 * wildcards the first listed wins.
 */
struct kite_tls_sni_cert {
    const char *server_name; /* pattern, as above */
    const char *cert_file;   /* PEM: the certificate, then its intermediates */
    const char *key_file;    /* PEM: its private key (unencrypted, or key_password) */
};

/*
 * What a TLS server presents. Initialise with kite_tls_server_options_init(), then set
 * at least one certificate: cert_file + key_file (the default certificate), or sni
 * entries (then, when cert_file is NULL, the first entry is the default). The default
 * certificate is presented when the client sends no SNI or a name no entry matches.
 */
struct kite_tls_server_options {
    /* PEM certificate chain: the leaf first, then its intermediates. */
    const char *cert_file;
    /* PEM private key of the leaf. */
    const char *key_file;
    /* Passphrase for encrypted keys (all of them); NULL: none. kite never prompts on a
     * terminal, so an encrypted key without it is an error. */
    const char *key_password;
    const struct kite_tls_sni_cert *sni; /* more certificates, chosen by SNI; may be NULL */
    size_t sni_count;                    /* entries in sni */
    enum kite_tls_version min_version;   /* default TLS 1.2; 1.0 and 1.1 are refused */
    enum kite_tls_version max_version;   /* default: TLS 1.3 */
    const char *ciphers;                 /* TLS 1.2 cipher list; NULL: OpenSSL's */
    const char *ciphersuites;            /* TLS 1.3 suites; NULL: OpenSSL's */
    bool no_session_tickets;             /* true: no resumption (every handshake full) */
};

/* Fill `o` with the defaults: no certificate, TLS 1.2-1.3, OpenSSL's ciphers, session
 * tickets on. Never fails. */
KITE_EXTERN void kite_tls_server_options_init(struct kite_tls_server_options *o);

/*
 * What a TLS client trusts. The defaults (kite_tls_client_options_init) verify the
 * server against the system's trust store and check the host name; no field needs
 * setting for a public server.
 */
struct kite_tls_client_options {
    /* PEM file of trusted CA certificates. With neither ca_file nor ca_dir, the system
     * store is used (OpenSSL's default paths; SSL_CERT_FILE and SSL_CERT_DIR). */
    const char *ca_file;
    /* Directory of CA certificates named by subject hash (openssl rehash DIR). */
    const char *ca_dir;
    /* true: do not verify the certificate or the host name at all. For tests only:
     * anyone on the path can then intercept the connection. */
    bool insecure;
    /* NULL: the URL's host. Otherwise this name is sent as SNI and checked against the
     * certificate instead (to reach a server by IP address or through a tunnel). */
    const char *server_name;
    enum kite_tls_version min_version; /* default TLS 1.2 */
    enum kite_tls_version max_version; /* default: TLS 1.3 */
    const char *ciphers;               /* TLS 1.2 cipher list; NULL: OpenSSL's */
    const char *ciphersuites;          /* TLS 1.3 suites; NULL: OpenSSL's */
};

/* Fill `o` with the defaults: verify against the system store, check the host name,
 * TLS 1.2-1.3. Never fails. */
KITE_EXTERN void kite_tls_client_options_init(struct kite_tls_client_options *o);

#ifdef __cplusplus
}
#endif
#endif
