/* Growable byte buffer shared by the C modules: one owner, reused across images. */
#ifndef FASTREC_BUFFER_H
#define FASTREC_BUFFER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} fr_buf;

/* Make room for `extra` more bytes; returns 0 on success, -1 when out of memory. */
int fr_buf_reserve(fr_buf *b, size_t extra);
int fr_buf_append(fr_buf *b, const void *src, size_t n);
void fr_buf_free(fr_buf *b);

#endif
