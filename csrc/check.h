/* Is a file a whole image of its format? The check --pass-through makes before it stores bytes
 * it never decodes: a marker/chunk walk, no decode. */
#ifndef FASTREC_CHECK_H
#define FASTREC_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* FR_OK, or FR_SKIP_TRUNCATED / FR_SKIP_CORRUPT / FR_SKIP_NOT_AN_IMAGE with a message in `msg`.
 * JPEG: SOI, a frame header (SOFn) before the first scan, and an EOI reached by walking the
 *   segments and the entropy-coded data (bytes after the EOI are ignored, as libjpeg ignores them).
 * PNG: the signature, IHDR first, every chunk's CRC-32, an IDAT, and IEND (bytes after it ignored).
 * GIF, BMP, WebP, TIFF and PPM: recognised by their signature only. Anything else is not an image. */
int fr_check_whole(const uint8_t *data, size_t len, char *msg, size_t cap);

/* CRC-32 (ISO-HDLC, as PNG and zlib use), exposed for tests. */
uint32_t fr_crc32(const uint8_t *data, size_t len);

#endif
