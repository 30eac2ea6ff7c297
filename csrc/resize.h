/* Antialiased separable resampling of 8-bit images (4 bytes per pixel or 1).
 *
 * The source is a fractional box of the input (a reduced-DCT decode covers W*k/8 source
 * pixels, not its rounded-up size), the output an exact integer size. Filter support
 * grows with the reduction ratio, so shrinking never aliases the way 2-tap bilinear does.
 * Coefficients are 14-bit fixed point, shared by every row, and kept per axis geometry in a small
 * cache: a dataset's images come in a few sizes, and planning costs ~3 % of a small image's work.
 */
#ifndef FASTREC_RESIZE_H
#define FASTREC_RESIZE_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

/* AUTO: Lanczos-3 on an axis that shrinks (where aliasing is the risk), Catmull-Rom bicubic on
 * one that grows (4 taps instead of 6: Lanczos' extra lobes add little when enlarging).
 * AUTO_CHROMA, for chroma planes: the area average when shrinking (as the encoder's own chroma
 * downsampling; no ringing into colour fringes at hard edges), triangle when enlarging. */
typedef enum {
    FR_FILTER_TRIANGLE = 0, FR_FILTER_BICUBIC = 1, FR_FILTER_LANCZOS = 2, FR_FILTER_AUTO = 3,
    FR_FILTER_BOX = 4, FR_FILTER_AUTO_CHROMA = 5
} fr_filter;

/* One axis' tap tables, for the geometry in its key. */
typedef struct {
    int size, out;           /* key: source length, output samples... */
    double x0, len;          /* ...source interval... */
    int filter;              /* ...and the filter asked for */
    unsigned long used;      /* when last used (least recently used is replaced) */
    fr_buf mem;              /* the tables */
} fr_axis_cache;

#define FR_AXIS_CACHE 24     /* 3 planes x 2 axes x a few image sizes */

typedef struct {
    fr_buf temp;     /* intermediate image between the two passes */
    fr_axis_cache axes[FR_AXIS_CACHE];
    unsigned long clock;
} fr_resizer;

typedef struct {
    const uint8_t *px;
    int width, height, channels;
    size_t stride;
} fr_image_in;

/* Resample box (x0, y0, bw, bh) of `src` to dw x dh pixels written to dst (rows dst_stride apart).
 * Source rows may be read up to FR_RESIZE_SLACK bytes past the last pixel (values unused), so
 * the source buffer needs that much slack after its last row. Returns 0, or -1 out of memory. */
#define FR_RESIZE_SLACK 16
int fr_resize(fr_resizer *r, const fr_image_in *src, double x0, double y0, double bw, double bh,
              uint8_t *dst, size_t dst_stride, int dw, int dh, fr_filter filter);

void fr_resizer_free(fr_resizer *r);

#endif
