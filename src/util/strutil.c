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

/* Bytes a[i..i+8) and b[i..i+8) equal but for ASCII case? */
static bool ieq_word(const char *a, const char *b, size_t i)
{
    uint64_t x, y;
    memcpy(&x, a + i, 8);
    memcpy(&y, b + i, 8);
    return x == y || ieq_bytes(a, b, i, i + 8);
}

/*
 * Header names nearly always arrive in the case they are looked up with, so words are
 * compared at once and only one that differs is looked at byte by byte. The last word
 * overlaps the one before instead of leaving a tail of single bytes (a 21-byte name
 * is three words, not two and five bytes); below eight bytes, two overlapping halves.
 */
bool kite__ieq_n(const char *a, const char *b, size_t n)
{
    if (n < 8) {
        uint32_t x0, y0, x1, y1;
        if (n < 4)
            return ieq_bytes(a, b, 0, n);
        memcpy(&x0, a, 4);
        memcpy(&y0, b, 4);
        memcpy(&x1, a + n - 4, 4);
        memcpy(&y1, b + n - 4, 4);
        return (x0 == y0 && x1 == y1) || ieq_bytes(a, b, 0, n);
    }
    for (size_t i = 0; i + 8 < n; i += 8)
        if (!ieq_word(a, b, i))
            return false;
    return ieq_word(a, b, n - 8);
}
