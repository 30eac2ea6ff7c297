/* One image in, one framed RecordIO record out: read -> decode at scale -> resize to im2rec's
 * geometry -> apply EXIF orientation -> encode -> IRHeader + labels + JPEG -> framing.
 * A fr_worker holds everything one thread reuses across images; nothing here takes the GIL. */
#ifndef FASTREC_PIPELINE_H
#define FASTREC_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "resize.h"
#include "status.h"

typedef struct {
    int resize;          /* shorter edge target; 0 keeps the size */
    int center_crop;
    int color;           /* 1 colour, 0 grayscale, -1 as stored (no EXIF rotation) */
    int no_upscale;      /* keep images smaller than `resize` at their size */
    int pass_through;    /* store the file bytes unchanged */
    int check_whole;     /* with pass_through: skip files that are not whole images (check.h) */
    int raw_output;      /* append header + raw RGB/gray rows, unframed (PNG output is made in Python) */
    int keep_alpha;      /* with raw_output: RGBA input to fr_pack_pixels keeps its alpha */
    fr_filter filter;
    int quality;
    int subsampling;     /* 420, 422, 444 */
    int fast_dct;
    uint64_t max_pixels;
    uint64_t max_bytes;
    int max_scans;
} fr_options;

typedef struct {
    uint64_t id;
    uint32_t nlabels;    /* > 0: flag = nlabels, labels stored after the header */
    float label;         /* used when nlabels == 0 */
    const float *labels;
} fr_record_head;

typedef struct {
    int status;
    int in_width, in_height;   /* stored size of the source */
    int out_width, out_height; /* size of the packed image */
    int scale_denom;           /* DCT reduction used */
    uint64_t in_bytes;
    uint64_t source_digest;    /* fr_fingerprint of the source bytes as read (0 from pixels) */
    uint64_t record_digest;    /* fr_fingerprint of the framed record appended (status FR_OK) */
    char message[FR_MESSAGE_LEN];
} fr_result;

typedef struct fr_worker fr_worker;

fr_worker *fr_worker_new(void);
void fr_worker_free(fr_worker *w);

/* The output size im2rec gives a (w, h) image: shorter edge = resize, longer floored.
 * Returns -1 (and 0 x 0) when a side is below 1. */
int fr_output_size(const fr_options *o, int w, int h, int *ow, int *oh);

/* Pack the file at `path`; on success the framed record is appended to out. */
void fr_pack_file(fr_worker *w, const fr_options *o, const char *path, const fr_record_head *h,
                  fr_buf *out, fr_result *res);

/* Same, from bytes already in memory (e.g. a tar member). */
void fr_pack_bytes(fr_worker *w, const fr_options *o, const uint8_t *data, size_t len,
                   const fr_record_head *h, fr_buf *out, fr_result *res);

/* Same, from pixels decoded elsewhere (the fallback for non-JPEG files), already oriented:
 * channels 1, 3 (RGB) or 4 (RGBX). */
void fr_pack_pixels(fr_worker *w, const fr_options *o, const uint8_t *px, int width, int height,
                    int channels, size_t stride, const fr_record_head *h, fr_buf *out, fr_result *res);

#endif
