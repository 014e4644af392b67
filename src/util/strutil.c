#include "util/util.h"

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Bytes a[i..n) and b[i..n) equal but for ASCII case? */
static bool ieq_bytes(const char *a, const char *b, size_t i, size_t n)
{
    for (; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

/*
 * Header names nearly always arrive in the case they are looked up with, so eight
 * bytes are compared at once and only a word that differs is looked at byte by byte.
 */
bool kite__ieq_n(const char *a, const char *b, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y && !ieq_bytes(a, b, i, i + 8))
            return false;
    }
    return ieq_bytes(a, b, i, n);
}
