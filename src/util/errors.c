/* Error names and messages (kite_strerror, kite_err_name) and the version. */
#include <errno.h>
#include <string.h>

#include "util/util.h"

struct err_entry {
    int code;
    const char *name;
    const char *msg;
};

static const struct err_entry errs[] = {
    {KITE_OK, "KITE_OK", "success"},
    {KITE_AGAIN, "KITE_AGAIN", "try again later"},
    {KITE_INCOMPLETE, "KITE_INCOMPLETE", "more input is needed"},
    {KITE_ERR_PROTOCOL, "KITE_ERR_PROTOCOL", "WebSocket protocol violation"},
    {KITE_ERR_UTF8, "KITE_ERR_UTF8", "invalid UTF-8 in a text message or close reason"},
    {KITE_ERR_TOO_BIG, "KITE_ERR_TOO_BIG", "frame or message larger than the configured limit"},
    {KITE_ERR_CLOSED, "KITE_ERR_CLOSED", "the session is closing or closed"},
    {KITE_ERR_TIMEOUT, "KITE_ERR_TIMEOUT", "timed out"},
    {KITE_ERR_HANDSHAKE, "KITE_ERR_HANDSHAKE", "the WebSocket opening handshake failed"},
    {KITE_ERR_HTTP, "KITE_ERR_HTTP", "malformed HTTP message"},
    {KITE_ERR_HEAD_TOO_BIG, "KITE_ERR_HEAD_TOO_BIG", "HTTP head too large or too many headers"},
    {KITE_ERR_POLICY, "KITE_ERR_POLICY", "refused by policy"},
    {KITE_ERR_INVALID, "KITE_ERR_INVALID", "invalid argument"},
    {KITE_ERR_STATE, "KITE_ERR_STATE", "not allowed in the current state"},
    {KITE_ERR_NOTFOUND, "KITE_ERR_NOTFOUND", "not found"},
    {KITE_ERR_EXISTS, "KITE_ERR_EXISTS", "already exists"},
    {KITE_ERR_CALLBACK, "KITE_ERR_CALLBACK", "a callback aborted the operation"},
    {KITE_ERR_NOMEM, "KITE_ERR_NOMEM", "out of memory"},
    {KITE_ERR_LIMIT, "KITE_ERR_LIMIT", "a resource limit was reached"},
    {KITE_ERR_TLS, "KITE_ERR_TLS", "TLS failure"},
    {KITE_ERR_TLS_VERIFY, "KITE_ERR_TLS_VERIFY", "the peer's certificate could not be verified"},
    {KITE_ERR_CRYPTO, "KITE_ERR_CRYPTO", "cryptographic library failure"},
    {KITE_ERR_RESOLVE, "KITE_ERR_RESOLVE", "host name could not be resolved"},
    {KITE_ERR_URL, "KITE_ERR_URL", "malformed or unsupported URL"},
};

static const struct err_entry *find(int err)
{
    for (size_t i = 0; i < KITE_ARRAY_LEN(errs); i++)
        if (errs[i].code == err)
            return &errs[i];
    return NULL;
}

const char *kite_strerror(int err)
{
    const struct err_entry *e = find(err);
    if (e)
        return e->msg;
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

const char *kite_err_name(int err)
{
    const struct err_entry *e = find(err);
    if (e)
        return e->name;
    if (err < 0 && err > -4096) {
        const char *n = strerrorname_np(-err);
        if (n)
            return n;
    }
    return "KITE_ERR_UNKNOWN";
}

unsigned kite_version(void)
{
    return KITE_VERSION_NUM;
}

const char *kite_version_string(void)
{
    return KITE_VERSION_STRING;
}
