/*
 * Test certificates made at run time with the OpenSSL C API, so no committed fixture
 * can expire and no private key sits in the repository. Header-only: include it from
 * any test ("../certs/testcerts.h") and link OpenSSL (every test executable does).
 *
 *   struct tc_dir d;
 *   if (tc_standard(&d) != 0) fail;          // a fresh temporary directory of files
 *   tc_path(&d, "server.crt")                 // -> "<dir>/server.crt"
 *   ...
 *   tc_cleanup(&d);                           // removes the files and the directory
 *
 * tc_standard() writes (all keys EC P-256, all leaf certificates for serverAuth):
 *   ca.pem            the root CA "kite test CA" (trust this one)
 *   cadir/<hash>.0    the same CA in a hashed directory (for ca_dir)
 *   server.crt/.key   CN=localhost; SAN DNS:localhost, DNS:server.test,
 *                     IP:127.0.0.1, IP:::1; signed by the root
 *   wild.crt/.key     CN=wild.example.test; SAN DNS:*.example.test
 *   api.crt/.key      CN=api.other.test; SAN DNS:api.other.test
 *   expired.crt/.key  CN=expired.test; valid from 3 days ago to 1 day ago
 *   chain.crt/.key    CN=chain.test, signed by an intermediate; chain.crt holds the
 *                     leaf then the intermediate (a full chain file)
 *   leafonly.crt      the chain.test leaf alone (its intermediate missing); key chain.key
 *   self.crt/.key     CN=self.test, self-signed
 *   enc.key           server.key encrypted with AES-128-CBC, passphrase "kite-pass"
 * Valid certificates run from one hour ago to 30 days from now.
 */
#ifndef KITE_TEST_CERTS_H
#define KITE_TEST_CERTS_H

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TC_DAY (24L * 3600L)

struct tc_dir {
    char path[PATH_MAX / 2]; /* the temporary directory */
    char buf[8][PATH_MAX];   /* rotating results of tc_path() */
    unsigned next;
};

/* out = a "/" b; an empty string when it would not fit. */
static inline void tc_join(char *out, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + 1 + lb >= cap) {
        out[0] = '\0';
        return;
    }
    memcpy(out, a, la);
    out[la] = '/';
    memcpy(out + la + 1, b, lb + 1);
}

/* "<dir>/<name>", valid until 8 more calls. */
static inline const char *tc_path(struct tc_dir *d, const char *name)
{
    char *b = d->buf[d->next++ % 8];
    tc_join(b, PATH_MAX, d->path, name);
    return b;
}

static inline EVP_PKEY *tc_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static inline int tc_ext(X509 *x, X509V3_CTX *v, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v, nid, value);
    int ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

/*
 * A certificate for `key` named CN=`cn`, valid from now+from_s to now+to_s, with the
 * subjectAltName `san` ("DNS:a.test,IP:127.0.0.1"; NULL for none), signed by
 * issuer/issuer_key (NULL: self-signed). `ca` makes a CA certificate.
 */
static inline X509 *tc_cert(EVP_PKEY *key, const char *cn, const char *san, bool ca, X509 *issuer,
                            EVP_PKEY *issuer_key, long from_s, long to_s)
{
    X509 *x = X509_new();
    uint64_t serial = 0;
    if (!x || RAND_bytes((unsigned char *)&serial, sizeof serial) != 1)
        goto fail;
    X509V3_CTX v;
    X509_set_version(x, 2);
    ASN1_INTEGER_set_int64(X509_get_serialNumber(x), (int64_t)(serial >> 2) + 1);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer ? issuer : x, x, NULL, NULL, 0);
    if (tc_ext(x, &v, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE") ||
        tc_ext(x, &v, NID_key_usage,
               ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") ||
        (!ca && tc_ext(x, &v, NID_ext_key_usage, "serverAuth")) ||
        tc_ext(x, &v, NID_subject_key_identifier, "hash") ||
        tc_ext(x, &v, NID_authority_key_identifier, "keyid:always") ||
        (san && tc_ext(x, &v, NID_subject_alt_name, san)))
        goto fail;
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* Write certificates (a chain, in order) to <dir>/<name>. */
static inline int tc_write_certs(struct tc_dir *d, const char *name, X509 *const *xs, int n)
{
    FILE *f = fopen(tc_path(d, name), "w");
    int ok = f != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = PEM_write_X509(f, xs[i]) == 1;
    if (f)
        ok = (fclose(f) == 0) && ok;
    return ok ? 0 : -1;
}

/* Write a private key (encrypted with `pass` when not NULL) to <dir>/<name>. */
static inline int tc_write_key(struct tc_dir *d, const char *name, EVP_PKEY *key, const char *pass)
{
    FILE *f = fopen(tc_path(d, name), "w");
    if (!f)
        return -1;
    int ok = pass ? PEM_write_PrivateKey(f, key, EVP_aes_128_cbc(), (unsigned char *)pass,
                                         (int)strlen(pass), NULL, NULL)
                  : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return (fclose(f) == 0 && ok == 1) ? 0 : -1;
}

/* A key and a leaf certificate signed by issuer, written as <name>.crt / <name>.key;
 * `extra` (may be NULL) is appended to the .crt (an intermediate). */
static inline int tc_leaf(struct tc_dir *d, const char *name, const char *cn, const char *san,
                          X509 *issuer, EVP_PKEY *issuer_key, long from_s, long to_s, X509 *extra)
{
    char file[64];
    EVP_PKEY *k = tc_key();
    X509 *x = k ? tc_cert(k, cn, san, false, issuer, issuer_key, from_s, to_s) : NULL;
    X509 *chain[2] = {x, extra};
    int rc = -1;
    snprintf(file, sizeof file, "%s.crt", name);
    if (x && tc_write_certs(d, file, chain, extra ? 2 : 1) == 0) {
        snprintf(file, sizeof file, "%s.key", name);
        rc = tc_write_key(d, file, k, NULL);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

/* The CA again, under its subject hash, in <dir>/cadir (what ca_dir expects). */
static inline int tc_hashed_dir(struct tc_dir *d, X509 *ca)
{
    char file[64];
    if (mkdir(tc_path(d, "cadir"), 0700) != 0)
        return -1;
    snprintf(file, sizeof file, "cadir/%08lx.0",
             X509_NAME_hash_ex(X509_get_subject_name(ca), NULL, NULL, NULL));
    return tc_write_certs(d, file, &ca, 1);
}

/* The chain.test leaf (full chain and leaf alone) under an intermediate CA. */
static inline int tc_chain(struct tc_dir *d, X509 *ca, EVP_PKEY *ca_key)
{
    EVP_PKEY *ik = tc_key(), *k = tc_key();
    X509 *inter =
        ik ? tc_cert(ik, "kite test intermediate", NULL, true, ca, ca_key, -3600, 30 * TC_DAY)
           : NULL;
    X509 *leaf = inter && k ? tc_cert(k, "chain.test", "DNS:chain.test", false, inter, ik, -3600,
                                      30 * TC_DAY)
                            : NULL;
    X509 *full[2] = {leaf, inter};
    int rc = leaf && tc_write_certs(d, "chain.crt", full, 2) == 0 &&
                     tc_write_certs(d, "leafonly.crt", full, 1) == 0 &&
                     tc_write_key(d, "chain.key", k, NULL) == 0
                 ? 0
                 : -1;
    X509_free(leaf);
    X509_free(inter);
    EVP_PKEY_free(k);
    EVP_PKEY_free(ik);
    return rc;
}

/* server.crt/.key, plus enc.key (the same key, encrypted). */
static inline int tc_server(struct tc_dir *d, X509 *ca, EVP_PKEY *ca_key)
{
    EVP_PKEY *k = tc_key();
    X509 *x = k ? tc_cert(k, "localhost", "DNS:localhost,DNS:server.test,IP:127.0.0.1,IP:::1",
                          false, ca, ca_key, -3600, 30 * TC_DAY)
                : NULL;
    int rc = x && tc_write_certs(d, "server.crt", &x, 1) == 0 &&
                     tc_write_key(d, "server.key", k, NULL) == 0 &&
                     tc_write_key(d, "enc.key", k, "kite-pass") == 0
                 ? 0
                 : -1;
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

static inline int tc_mkdtemp(struct tc_dir *d)
{
    const char *tmp = getenv("TMPDIR");
    memset(d, 0, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s/kite-certs-XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
    return mkdtemp(d->path) ? 0 : -1;
}

/* Make the standard set (see the top of this file). 0 or -1. */
static inline int tc_standard(struct tc_dir *d)
{
    if (tc_mkdtemp(d) != 0)
        return -1;
    EVP_PKEY *ck = tc_key(), *sk = tc_key();
    X509 *ca = ck ? tc_cert(ck, "kite test CA", NULL, true, NULL, NULL, -3600, 30 * TC_DAY) : NULL;
    X509 *self =
        sk ? tc_cert(sk, "self.test", "DNS:self.test", false, NULL, NULL, -3600, 30 * TC_DAY)
           : NULL;
    int rc = -1;
    if (ca && self && tc_write_certs(d, "ca.pem", &ca, 1) == 0 && tc_hashed_dir(d, ca) == 0 &&
        tc_server(d, ca, ck) == 0 &&
        tc_leaf(d, "wild", "wild.example.test", "DNS:*.example.test", ca, ck, -3600, 30 * TC_DAY,
                NULL) == 0 &&
        tc_leaf(d, "api", "api.other.test", "DNS:api.other.test", ca, ck, -3600, 30 * TC_DAY,
                NULL) == 0 &&
        tc_leaf(d, "expired", "expired.test", "DNS:expired.test", ca, ck, -3 * TC_DAY, -1 * TC_DAY,
                NULL) == 0 &&
        tc_chain(d, ca, ck) == 0 && tc_write_certs(d, "self.crt", &self, 1) == 0 &&
        tc_write_key(d, "self.key", sk, NULL) == 0)
        rc = 0;
    X509_free(ca);
    X509_free(self);
    EVP_PKEY_free(ck);
    EVP_PKEY_free(sk);
    return rc;
}

static inline void tc_rmtree(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *e;
    char sub[PATH_MAX];
    if (!dir)
        return;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        tc_join(sub, sizeof sub, path, e->d_name);
        if (sub[0] && unlink(sub) != 0)
            tc_rmtree(sub);
    }
    closedir(dir);
    rmdir(path);
}

/* Remove the directory and everything in it. */
static inline void tc_cleanup(struct tc_dir *d)
{
    if (d->path[0])
        tc_rmtree(d->path);
    d->path[0] = '\0';
}

#endif
