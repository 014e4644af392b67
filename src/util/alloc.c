/* The allocator hook: every allocation in kite goes through here (STYLE §2.5). */
#include <stdlib.h>

#include "util/util.h"

void *kite__malloc(const struct kite_allocator *a, size_t n)
{
    return a ? a->malloc(n, a->ud) : malloc(n);
}

void *kite__calloc(const struct kite_allocator *a, size_t n)
{
    void *p = kite__malloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

void *kite__realloc(const struct kite_allocator *a, void *p, size_t n)
{
    return a ? a->realloc(p, n, a->ud) : realloc(p, n);
}

void kite__free(const struct kite_allocator *a, void *p)
{
    if (!p)
        return;
    if (a)
        a->free(p, a->ud);
    else
        free(p);
}
