/* JPEG encoding with libjpeg(-turbo) into a growable buffer; one fr_encoder per thread. */
#ifndef FASTREC_ENCODE_H
#define FASTREC_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "status.h"

/* The longest side libjpeg encodes (its JPEG_MAX_DIMENSION; encode.c checks they agree). */
#define FR_JPEG_MAX_SIDE 65500

typedef struct fr_encoder fr_encoder;

typedef struct {
    int quality;       /* 1..100 */
    int subsampling;   /* 420, 422 or 444 (colour only) */
    int fast_dct;      /* 0: accurate integer DCT (default), 1: fast integer DCT */
} fr_encode_params;

fr_encoder *fr_encoder_new(void);
void fr_encoder_free(fr_encoder *e);

/* Encode width x height pixels (channels 4 = RGBX, 1 = gray) as a baseline JFIF JPEG,
 * appended to out. Returns FR_OK or FR_SKIP_NO_MEMORY / FR_SKIP_CORRUPT with a message. */
int fr_encode_jpeg(fr_encoder *e, const uint8_t *px, int width, int height, int channels,
                   size_t stride, const fr_encode_params *p, fr_buf *out);

/* Encode from Y, Cb, Cr planes already at the component sizes of `p->subsampling` (420 or 444):
 * plane c is ceil(width / s) x ceil(height / s) samples, s = 2 for 4:2:0 chroma, else 1. Each
 * row must hold whole 8-sample blocks (the caller pads the right edge); rows past a plane's end
 * repeat its last row. Skips libjpeg's colour conversion and chroma downsampling. */
int fr_encode_planes(fr_encoder *e, const uint8_t *const px[3], const size_t stride[3], int width,
                     int height, const fr_encode_params *p, fr_buf *out);

const char *fr_encoder_message(const fr_encoder *e);

#endif
