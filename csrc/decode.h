/* JPEG decoding with libjpeg(-turbo) at a reduced DCT scale, with resource limits.
 *
 * One fr_decoder per thread, reused across images: it owns the libjpeg decompressor and
 * the pixel buffer. Output is 4 bytes per pixel (RGBX, SIMD-friendly for the resizer and
 * accepted as-is by the encoder) or 1 byte (grayscale). CMYK/YCCK is converted to RGB with
 * the naive inverted-CMYK formula Adobe files need (what OpenCV does).
 */
#ifndef FASTREC_DECODE_H
#define FASTREC_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "status.h"

typedef struct fr_decoder fr_decoder;

typedef struct {
    int width, height;  /* stored (un-rotated) size */
    int ycc;            /* three-component YCbCr source: can be decoded to planes */
    int gray;           /* single-component source */
    int cmyk;           /* CMYK or YCCK source */
    int progressive;
    int orientation;    /* EXIF 1..8 (1 unless asked for and present) */
} fr_jpeg_info;

typedef struct {
    uint64_t max_pixels;
    int max_scans;
} fr_decode_limits;

typedef struct {
    uint8_t *px;        /* owned by the decoder, valid until its next use */
    int width, height;
    int channels;       /* 4 (RGBX) or 1 */
    size_t stride;
} fr_pixels;

/* A YCbCr image as its three planes, each at its own (possibly subsampled) resolution. */
typedef struct {
    uint8_t *px[3];     /* owned by the decoder; each has FR_RESIZE_SLACK readable bytes after it */
    int width[3], height[3];
    size_t stride[3];
    double scale_x[3], scale_y[3];  /* plane samples per full-size source pixel */
} fr_planes;

fr_decoder *fr_decoder_new(void);
void fr_decoder_free(fr_decoder *d);

/* Parse the header of data[0..len). Returns FR_OK or a skip status with fr_decoder_message(). */
int fr_decode_header(fr_decoder *d, const uint8_t *data, size_t len, const fr_decode_limits *lim,
                     int want_orientation, fr_jpeg_info *info);

/* After fr_decode_header: decode at 1/denom (1, 2, 4 or 8), to gray (channels 1) or RGBX (4). */
int fr_decode_pixels(fr_decoder *d, int denom, int channels, fr_pixels *out);

/* After fr_decode_header of a `ycc` image: decode at 1/denom straight to its Y, Cb and Cr
 * planes, skipping chroma upsampling and colour conversion. */
int fr_decode_planes(fr_decoder *d, int denom, fr_planes *out);

/* Forget a parsed header without decoding it. */
void fr_decoder_abort(fr_decoder *d);

const char *fr_decoder_message(const fr_decoder *d);

#endif
