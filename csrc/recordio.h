/* dmlc RecordIO framing and MXNet's image record header (IRHeader).
 *
 * A record is one or more segments: [magic u32][lrec u32][payload][0-3 zero pad].
 * lrec = cflag << 29 | length. A payload word equal to the magic at a 4-byte-aligned
 * offset is cut out and the payload is split around it (cflag 1 first, 2 middle,
 * 3 last); that keeps every aligned magic in a file a true record head, which is
 * how dmlc's splitters find record boundaries inside byte ranges.
 */
#ifndef FASTREC_RECORDIO_H
#define FASTREC_RECORDIO_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

#define FR_RECORDIO_MAGIC 0xCED7230Au
#define FR_RECORDIO_LEN_BITS 29
#define FR_RECORDIO_MAX_LEN ((1u << FR_RECORDIO_LEN_BITS) - 1u)
#define FR_IRHEADER_SIZE 24

enum { FR_CFLAG_FULL = 0, FR_CFLAG_FIRST = 1, FR_CFLAG_MIDDLE = 2, FR_CFLAG_LAST = 3 };

/* Upper bound of the framed size of a payload of n bytes (for reserving). */
size_t fr_recordio_bound(size_t n);

/* Append the framed record for payload[0..n) to out.
 * Returns 0, -1 when out of memory, -2 when n >= 2^29 (dmlc's limit). */
int fr_recordio_frame(const uint8_t *payload, size_t n, fr_buf *out);

/* Write the 24-byte IRHeader (little-endian '<IfQQ') into dst. */
void fr_irheader_write(uint8_t *dst, uint32_t flag, float label, uint64_t id, uint64_t id2);

/* Write a float32 little-endian (labels after the header). */
void fr_f32le_write(uint8_t *dst, float v);

#endif
