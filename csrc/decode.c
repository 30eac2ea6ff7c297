#include "decode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "exif.h"
#include "resize.h"

/* The scaled-DCT fields were renamed (and split by axis) in the libjpeg 7+ API. */
#if JPEG_LIB_VERSION >= 70
#define COMP_H_SCALED(c) ((c)->DCT_h_scaled_size)
#define COMP_V_SCALED(c) ((c)->DCT_v_scaled_size)
#define MIN_V_SCALED(ci) ((ci)->min_DCT_v_scaled_size)
#else
#define COMP_H_SCALED(c) ((c)->DCT_scaled_size)
#define COMP_V_SCALED(c) ((c)->DCT_scaled_size)
#define MIN_V_SCALED(ci) ((ci)->min_DCT_scaled_size)
#endif

struct fr_decoder {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf escape;
    int status;                 /* why we escaped */
    int max_scans;
    fr_buf pixels;
    char message[FR_MESSAGE_LEN];
};

/* libjpeg reports fatal errors by calling error_exit, which must not return: jump back. */
static void on_error(j_common_ptr c)
{
    fr_decoder *d = (fr_decoder *)c->client_data;
    (*c->err->format_message)(c, d->message);
    if (d->status == FR_OK)
        d->status = c->err->msg_code == JERR_OUT_OF_MEMORY ? FR_SKIP_NO_MEMORY : FR_SKIP_CORRUPT;
    if (c->err->msg_code == JERR_BAD_PRECISION || c->err->msg_code == JERR_NOT_COMPILED ||
        c->err->msg_code == JERR_CONVERSION_NOTIMPL || c->err->msg_code == JERR_IMAGE_TOO_BIG)
        d->status = FR_SKIP_UNSUPPORTED;   /* valid, beyond libjpeg (a side above 65500 too) */
    longjmp(d->escape, 1);
}

/* Warnings that mean the picture is damaged end the decode; benign ones (extraneous
 * bytes, unknown Adobe transform) are ignored, as every viewer does. */
static void on_message(j_common_ptr c, int level)
{
    if (level >= 0)
        return;  /* trace messages */
    switch (c->err->msg_code) {
    case JWRN_JPEG_EOF:
        ((fr_decoder *)c->client_data)->status = FR_SKIP_TRUNCATED;
        break;
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_BOGUS_PROGRESSION:
        ((fr_decoder *)c->client_data)->status = FR_SKIP_CORRUPT;
        break;
    default:
        return;
    }
    on_error(c);
}

/* Called between scans and rows: bounds the work a crafted progressive file can cause. */
static void on_progress(j_common_ptr c)
{
    fr_decoder *d = (fr_decoder *)c->client_data;
    struct jpeg_decompress_struct *ci = (struct jpeg_decompress_struct *)c;
    if (ci->progressive_mode && ci->input_scan_number > d->max_scans) {
        d->status = FR_SKIP_TOO_MANY_SCANS;
        snprintf(d->message, sizeof d->message, "progressive JPEG has more than %d scans", d->max_scans);
        longjmp(d->escape, 1);
    }
}

fr_decoder *fr_decoder_new(void)
{
    fr_decoder *volatile d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cinfo.err = jpeg_std_error(&d->jerr);
    d->jerr.error_exit = on_error;
    d->jerr.emit_message = on_message;
    d->cinfo.client_data = d;
    if (setjmp(d->escape)) {
        free(d);
        return NULL;
    }
    jpeg_create_decompress(&d->cinfo);
    d->progress.progress_monitor = on_progress;
    d->cinfo.progress = &d->progress;
    return d;
}

void fr_decoder_free(fr_decoder *d)
{
    if (!d)
        return;
    jpeg_destroy_decompress(&d->cinfo);
    fr_buf_free(&d->pixels);
    free(d);
}

const char *fr_decoder_message(const fr_decoder *d) { return d->message; }

void fr_decoder_abort(fr_decoder *d) { jpeg_abort_decompress(&d->cinfo); }

int fr_decode_header(fr_decoder *d, const uint8_t *data, size_t len, const fr_decode_limits *lim,
                     int want_orientation, fr_jpeg_info *info)
{
    struct jpeg_decompress_struct *ci = &d->cinfo;
    d->status = FR_OK;
    d->message[0] = 0;
    d->max_scans = lim->max_scans;
    memset(info, 0, sizeof *info);
    if (setjmp(d->escape)) {
        info->width = (int)ci->image_width;    /* from the frame header, when it was read */
        info->height = (int)ci->image_height;
        jpeg_abort_decompress(ci);
        return d->status;
    }
    jpeg_mem_src(ci, data, (unsigned long)len);
    /* Only APP1 is kept (for EXIF), each marker capped by libjpeg at 64 KiB. */
    jpeg_save_markers(ci, JPEG_APP0 + 1, want_orientation ? 0xFFFF : 0);
    if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK) {
        snprintf(d->message, sizeof d->message, "no image in the JPEG stream");
        jpeg_abort_decompress(ci);
        return FR_SKIP_CORRUPT;
    }
    uint64_t pixels = (uint64_t)ci->image_width * ci->image_height;
    if (pixels > lim->max_pixels) {
        snprintf(d->message, sizeof d->message, "%ux%u is %llu pixels, above the limit of %llu",
                 ci->image_width, ci->image_height, (unsigned long long)pixels,
                 (unsigned long long)lim->max_pixels);
        jpeg_abort_decompress(ci);
        return FR_SKIP_TOO_MANY_PIXELS;
    }
    info->width = (int)ci->image_width;
    info->height = (int)ci->image_height;
    info->gray = ci->jpeg_color_space == JCS_GRAYSCALE;
    info->ycc = ci->jpeg_color_space == JCS_YCbCr && ci->num_components == 3;
    info->cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    info->progressive = ci->progressive_mode;
    info->orientation = 1;
    for (jpeg_saved_marker_ptr m = ci->marker_list; m && want_orientation; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            info->orientation = fr_exif_orientation(m->data, m->data_length);
            break;
        }
    }
    return FR_OK;
}

/* Adobe CMYK JPEGs store inverted ink values, so R = C*K/255 etc. on the stored bytes. */
static void cmyk_row_to_rgbx(uint8_t *row, int width)
{
    for (int x = 0; x < width; x++) {
        uint8_t *p = row + 4 * x;
        unsigned k = p[3];
        p[0] = (uint8_t)((p[0] * k + 127) / 255);
        p[1] = (uint8_t)((p[1] * k + 127) / 255);
        p[2] = (uint8_t)((p[2] * k + 127) / 255);
        p[3] = 255;
    }
}

/* For grayscale output of a CMYK source (rare): convert a row in place to one byte per pixel. */
static void cmyk_row_to_gray(uint8_t *row, int width)
{
    cmyk_row_to_rgbx(row, width);
    for (int x = 0; x < width; x++) {
        const uint8_t *p = row + 4 * x;
        row[x] = (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 32768u) >> 16);
    }
}

/* Both decodes: 1/denom through the IDCT, with the accurate (ISO-conformant) integer IDCT. */
static void set_scale(struct jpeg_decompress_struct *ci, int denom)
{
    ci->scale_num = 1;
    ci->scale_denom = (unsigned)denom;
    ci->dct_method = JDCT_ISLOW;
}

int fr_decode_pixels(fr_decoder *d, int denom, int channels, fr_pixels *out)
{
    struct jpeg_decompress_struct *ci = &d->cinfo;
    int cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    if (setjmp(d->escape)) {
        jpeg_abort_decompress(ci);
        return d->status;
    }
    set_scale(ci, denom);
    ci->out_color_space = cmyk ? JCS_CMYK : (channels == 1 ? JCS_GRAYSCALE : JCS_EXT_RGBX);
    jpeg_calc_output_dimensions(ci);
    int pix_bytes = cmyk ? 4 : channels;
    size_t stride = (size_t)ci->output_width * pix_bytes;
    d->pixels.len = 0;
    if (fr_buf_reserve(&d->pixels, stride * ci->output_height + FR_RESIZE_SLACK)) {
        snprintf(d->message, sizeof d->message, "cannot allocate %zu bytes", stride * ci->output_height);
        jpeg_abort_decompress(ci);
        return FR_SKIP_NO_MEMORY;
    }
    jpeg_start_decompress(ci);
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW rows[16];
        int n = 0;
        for (; n < 16 && ci->output_scanline + n < ci->output_height; n++)
            rows[n] = d->pixels.data + (ci->output_scanline + n) * stride;
        JDIMENSION first = ci->output_scanline;
        JDIMENSION got = jpeg_read_scanlines(ci, rows, (JDIMENSION)n);
        if (cmyk)
            for (JDIMENSION r = 0; r < got; r++) {
                uint8_t *row = d->pixels.data + (first + r) * stride;
                if (channels == 1)
                    cmyk_row_to_gray(row, (int)ci->output_width);
                else
                    cmyk_row_to_rgbx(row, (int)ci->output_width);
            }
    }
    jpeg_finish_decompress(ci);
    out->px = d->pixels.data;
    out->width = (int)ci->output_width;
    out->height = (int)ci->output_height;
    out->channels = channels;
    out->stride = stride;  /* CMYK-to-gray rows keep the 4-byte stride */
    return d->status;
}

int fr_decode_planes(fr_decoder *d, int denom, fr_planes *out)
{
    struct jpeg_decompress_struct *ci = &d->cinfo;
    if (setjmp(d->escape)) {
        jpeg_abort_decompress(ci);
        return d->status;
    }
    set_scale(ci, denom);
    ci->raw_data_out = TRUE;
    jpeg_start_decompress(ci);
    /* jpeg_read_raw_data hands out one iMCU row per call: `group` rows at full (luma) scale,
     * v_samp * scaled-DCT rows of each plane; every plane is allocated in whole groups. */
    int group = ci->max_v_samp_factor * MIN_V_SCALED(ci);
    int groups = (int)((ci->output_height + group - 1) / group);
    size_t offset[3], total = 0;
    for (int c = 0; c < 3; c++) {
        jpeg_component_info *comp = &ci->comp_info[c];
        out->stride[c] = ((size_t)comp->width_in_blocks * COMP_H_SCALED(comp) + 15) & ~(size_t)15;
        out->width[c] = (int)comp->downsampled_width;
        out->height[c] = (int)comp->downsampled_height;
        out->scale_x[c] = (double)comp->h_samp_factor * COMP_H_SCALED(comp) / (ci->max_h_samp_factor * DCTSIZE);
        out->scale_y[c] = (double)comp->v_samp_factor * COMP_V_SCALED(comp) / (ci->max_v_samp_factor * DCTSIZE);
        offset[c] = total;
        total += out->stride[c] * (size_t)(groups * comp->v_samp_factor * COMP_V_SCALED(comp));
    }
    d->pixels.len = 0;
    if (fr_buf_reserve(&d->pixels, total + FR_RESIZE_SLACK)) {
        snprintf(d->message, sizeof d->message, "cannot allocate %zu bytes", total);
        jpeg_abort_decompress(ci);
        return FR_SKIP_NO_MEMORY;
    }
    for (int c = 0; c < 3; c++)
        out->px[c] = d->pixels.data + offset[c];
    JSAMPROW rows[3][4 * DCTSIZE];  /* v_samp <= 4, scaled DCT <= 8 rows at our scales */
    JSAMPARRAY planes[3] = {rows[0], rows[1], rows[2]};
    while (ci->output_scanline < ci->output_height) {
        int g = (int)(ci->output_scanline / group);
        for (int c = 0; c < 3; c++) {
            jpeg_component_info *comp = &ci->comp_info[c];
            int n = comp->v_samp_factor * COMP_V_SCALED(comp);
            for (int r = 0; r < n; r++)
                rows[c][r] = out->px[c] + ((size_t)g * n + r) * out->stride[c];
        }
        jpeg_read_raw_data(ci, planes, (JDIMENSION)group);
    }
    jpeg_finish_decompress(ci);
    return d->status;
}
