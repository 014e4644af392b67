/* SHA-1, base64 and randomness come from OpenSSL's libcrypto: we do not hand-write them. */
/* SHA1_Init/Update/Final are deprecated since OpenSSL 3.0 but still built by default;
 * see kite__sha1 for why they are preferred when present. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>

#include "util/util.h"

#ifdef OPENSSL_NO_DEPRECATED_3_0
/*
 * SHA-1 through EVP, for a libcrypto built without the deprecated API. It is fetched
 * from the provider once per process: EVP_sha1() hands out a placeholder that
 * EVP_Digest would look up again on every call (about 2,000 instructions, as much as
 * hashing the handshake's two blocks); a fetched EVP_MD is immutable and safe to share
 * between threads. It is kept until the process exits.
 */
static EVP_MD *sha1_md;
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;

static void sha1_fetch(void)
{
    sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
}

int kite__sha1(const void *data, size_t len, uint8_t out[20])
{
    unsigned int outlen = 0;
    pthread_once(&sha1_once, sha1_fetch);
    /* Without a fetched digest (no default provider yet), the implicit lookup. */
    const EVP_MD *md = sha1_md ? sha1_md : EVP_sha1();
    if (EVP_Digest(data, len, out, &outlen, md, NULL) != 1 || outlen != 20)
        return KITE_ERR_CRYPTO;
    return KITE_OK;
}
#else
/*
 * The direct SHA-1 functions. Any EVP digest call first initialises the provider
 * machinery, which touches about 2 MB of libcrypto's pages: a plain ws:// server that
 * only hashes handshake keys would carry them for nothing (they showed up as ~100
 * bytes of RSS per connection over 19,000 idle connections, benchmarks S4). These
 * touch a few pages and skip EVP's dispatch too.
 */
int kite__sha1(const void *data, size_t len, uint8_t out[20])
{
    SHA_CTX ctx;
    if (SHA1_Init(&ctx) != 1 || SHA1_Update(&ctx, data, len) != 1 || SHA1_Final(out, &ctx) != 1)
        return KITE_ERR_CRYPTO;
    return KITE_OK;
}
#endif

size_t kite__base64_encode(const uint8_t *in, size_t len, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

ssize_t kite__base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len == 0)
        return 0;
    if (len % 4 != 0 || len > 4096)
        return -1;
    size_t pad = 0;
    if (in[len - 1] == '=')
        pad++;
    if (len > 1 && in[len - 2] == '=')
        pad++;
    for (size_t i = 0; i < len - pad; i++) {
        unsigned char ch = (unsigned char)in[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
        if (!ok)
            return -1;
    }
    size_t dlen = len / 4 * 3 - pad;
    if (dlen > cap)
        return -1;
    /* EVP_DecodeBlock writes len/4*3 bytes, padding included: decode into a scratch. */
    uint8_t tmp[len / 4 * 3];
    if (EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len) < 0)
        return -1;
    memcpy(out, tmp, dlen);
    return (ssize_t)dlen;
}

int kite__random(void *out, size_t n)
{
    if (n > (size_t)INT32_MAX)
        return KITE_ERR_INVALID;
    return RAND_bytes(out, (int)n) == 1 ? KITE_OK : KITE_ERR_CRYPTO;
}

int kite__random_mask(uint8_t key[4])
{
    static __thread uint8_t pool[4096];
    static __thread size_t avail;
    if (avail < 4) {
        int rc = kite__random(pool, sizeof(pool));
        if (rc != KITE_OK)
            return rc;
        avail = sizeof(pool);
    }
    avail -= 4;
    memcpy(key, pool + avail, 4);
    /* Do not leave used key material behind in the pool. */
    memset(pool + avail, 0, 4);
    return KITE_OK;
}
