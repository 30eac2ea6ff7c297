#include "buffer.h"

#include <stdlib.h>
#include <string.h>

int fr_buf_reserve(fr_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int fr_buf_append(fr_buf *b, const void *src, size_t n)
{
    if (fr_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

void fr_buf_free(fr_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
