#include "encode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>
#include <jerror.h>

_Static_assert(FR_JPEG_MAX_SIDE == JPEG_MAX_DIMENSION, "FR_JPEG_MAX_SIDE must be libjpeg's limit");

struct fr_encoder {
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_destination_mgr dest;
    jmp_buf escape;
    fr_buf *out;
    size_t start;            /* out->len when this image began */
    char message[FR_MESSAGE_LEN];
};

static void on_error(j_common_ptr c)
{
    fr_encoder *e = (fr_encoder *)c->client_data;
    (*c->err->format_message)(c, e->message);
    longjmp(e->escape, 1);
}

static void on_message(j_common_ptr c, int level) { (void)c; (void)level; }

/* The destination writes straight into the caller's buffer, growing it as libjpeg asks. */
static void dest_init(j_compress_ptr c)
{
    fr_encoder *e = (fr_encoder *)c->client_data;
    if (fr_buf_reserve(e->out, 64 * 1024))
        ERREXIT(c, JERR_OUT_OF_MEMORY);
    c->dest->next_output_byte = e->out->data + e->out->len;
    c->dest->free_in_buffer = e->out->cap - e->out->len;
}

static boolean dest_grow(j_compress_ptr c)
{
    fr_encoder *e = (fr_encoder *)c->client_data;
    e->out->len = e->out->cap;  /* libjpeg filled the whole free space */
    if (fr_buf_reserve(e->out, e->out->cap))
        ERREXIT(c, JERR_OUT_OF_MEMORY);
    c->dest->next_output_byte = e->out->data + e->out->len;
    c->dest->free_in_buffer = e->out->cap - e->out->len;
    return TRUE;
}

static void dest_term(j_compress_ptr c)
{
    fr_encoder *e = (fr_encoder *)c->client_data;
    e->out->len = e->out->cap - c->dest->free_in_buffer;
}

fr_encoder *fr_encoder_new(void)
{
    fr_encoder *volatile e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cinfo.err = jpeg_std_error(&e->jerr);
    e->jerr.error_exit = on_error;
    e->jerr.emit_message = on_message;
    e->cinfo.client_data = e;
    if (setjmp(e->escape)) {
        free(e);
        return NULL;
    }
    jpeg_create_compress(&e->cinfo);
    e->dest.init_destination = dest_init;
    e->dest.empty_output_buffer = dest_grow;
    e->dest.term_destination = dest_term;
    e->cinfo.dest = &e->dest;
    return e;
}

void fr_encoder_free(fr_encoder *e)
{
    if (!e)
        return;
    jpeg_destroy_compress(&e->cinfo);
    free(e);
}

const char *fr_encoder_message(const fr_encoder *e) { return e->message; }

/* The settings both entry points share: size, input layout, quality and DCT on libjpeg's
 * defaults (YCbCr 4:2:0, JFIF header, standard Huffman tables: what OpenCV writes). */
static void configure(fr_encoder *e, int width, int height, int components, J_COLOR_SPACE space,
                      const fr_encode_params *p)
{
    struct jpeg_compress_struct *ci = &e->cinfo;
    e->message[0] = 0;
    ci->image_width = (JDIMENSION)width;
    ci->image_height = (JDIMENSION)height;
    ci->input_components = components;
    ci->in_color_space = space;
    jpeg_set_defaults(ci);
    jpeg_set_quality(ci, p->quality, TRUE);
    ci->dct_method = p->fast_dct ? JDCT_IFAST : JDCT_ISLOW;
}

/* Where a libjpeg error lands (setjmp must live in the function that calls libjpeg). */
static int failed(fr_encoder *e)
{
    jpeg_abort_compress(&e->cinfo);
    e->out->len = e->start;
    return e->jerr.msg_code == JERR_OUT_OF_MEMORY ? FR_SKIP_NO_MEMORY : FR_SKIP_CORRUPT;
}

int fr_encode_jpeg(fr_encoder *e, const uint8_t *px, int width, int height, int channels,
                   size_t stride, const fr_encode_params *p, fr_buf *out)
{
    struct jpeg_compress_struct *ci = &e->cinfo;
    e->out = out;
    e->start = out->len;
    if (setjmp(e->escape))
        return failed(e);
    configure(e, width, height, channels, channels == 1 ? JCS_GRAYSCALE : JCS_EXT_RGBX, p);
    if (channels != 1) {
        ci->comp_info[0].h_samp_factor = p->subsampling == 444 ? 1 : 2;
        ci->comp_info[0].v_samp_factor = p->subsampling == 420 ? 2 : 1;
    }
    jpeg_start_compress(ci, TRUE);
    while (ci->next_scanline < ci->image_height) {
        JSAMPROW rows[16];
        int n = 0;
        for (; n < 16 && ci->next_scanline + n < ci->image_height; n++)
            rows[n] = (JSAMPROW)(px + (ci->next_scanline + n) * stride);
        jpeg_write_scanlines(ci, rows, (JDIMENSION)n);
    }
    jpeg_finish_compress(ci);
    return FR_OK;
}

int fr_encode_planes(fr_encoder *e, const uint8_t *const px[3], const size_t stride[3], int width,
                     int height, const fr_encode_params *p, fr_buf *out)
{
    struct jpeg_compress_struct *ci = &e->cinfo;
    e->out = out;
    e->start = out->len;
    if (setjmp(e->escape))
        return failed(e);
    configure(e, width, height, 3, JCS_YCbCr, p);
    int s = p->subsampling == 420 ? 2 : 1;
    ci->comp_info[0].h_samp_factor = ci->comp_info[0].v_samp_factor = s;
    ci->raw_data_in = TRUE;
    jpeg_start_compress(ci, TRUE);
    int group = s * DCTSIZE;                     /* rows of the image per iMCU row */
    JSAMPROW rows[3][2 * DCTSIZE];
    JSAMPARRAY planes[3] = {rows[0], rows[1], rows[2]};
    while (ci->next_scanline < ci->image_height) {
        int g = (int)(ci->next_scanline / group);
        for (int c = 0; c < 3; c++) {
            int v = ci->comp_info[c].v_samp_factor;
            int n = v * DCTSIZE;
            int last = (int)(((long)height * v + s - 1) / s) - 1;   /* last row of this plane */
            for (int r = 0; r < n; r++) {
                int row = g * n + r;
                rows[c][r] = (JSAMPROW)(px[c] + (size_t)(row < last ? row : last) * stride[c]);
            }
        }
        jpeg_write_raw_data(ci, planes, (JDIMENSION)group);
    }
    jpeg_finish_compress(ci);
    return FR_OK;
}
