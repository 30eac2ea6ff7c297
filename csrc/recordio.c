#include "recordio.h"

#include <string.h>

static const uint8_t MAGIC_BYTES[4] = {0x0A, 0x23, 0xD7, 0xCE}; /* FR_RECORDIO_MAGIC, LE */

static void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    put_u32le(p, (uint32_t)v);
    put_u32le(p + 4, (uint32_t)(v >> 32));
}

size_t fr_recordio_bound(size_t n)
{
    /* Worst case: every aligned word is a magic, each becoming an 8-byte segment head. */
    return 8 + ((n + 3) & ~(size_t)3) + (n / 4) * 8;
}

/* Emit one segment: head, data, and (last segment only) zero padding to 4 bytes. */
static void emit(fr_buf *out, uint32_t cflag, const uint8_t *data, size_t n, int pad)
{
    uint8_t *p = out->data + out->len;
    put_u32le(p, FR_RECORDIO_MAGIC);
    put_u32le(p + 4, (cflag << FR_RECORDIO_LEN_BITS) | (uint32_t)n);
    if (n)
        memcpy(p + 8, data, n);
    size_t padded = pad ? ((n + 3) & ~(size_t)3) : n;
    memset(p + 8 + n, 0, padded - n);
    out->len += 8 + padded;
}

int fr_recordio_frame(const uint8_t *payload, size_t n, fr_buf *out)
{
    if (n > FR_RECORDIO_MAX_LEN)
        return -2;
    if (fr_buf_reserve(out, fr_recordio_bound(n)))
        return -1;
    size_t start = 0;            /* first byte not yet emitted */
    size_t aligned_end = n & ~(size_t)3;
    for (size_t i = 0; i < aligned_end; i += 4) {
        if (memcmp(payload + i, MAGIC_BYTES, 4) != 0)
            continue;
        emit(out, start == 0 ? FR_CFLAG_FIRST : FR_CFLAG_MIDDLE, payload + start, i - start, 0);
        start = i + 4;           /* the magic itself is implied by the segment boundary */
    }
    emit(out, start == 0 ? FR_CFLAG_FULL : FR_CFLAG_LAST, payload + start, n - start, 1);
    return 0;
}

void fr_irheader_write(uint8_t *dst, uint32_t flag, float label, uint64_t id, uint64_t id2)
{
    put_u32le(dst, flag);
    fr_f32le_write(dst + 4, label);
    put_u64le(dst + 8, id);
    put_u64le(dst + 16, id2);
}

void fr_f32le_write(uint8_t *dst, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    put_u32le(dst, bits);
}
