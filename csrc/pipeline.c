#define _GNU_SOURCE /* O_CLOEXEC */
#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "decode.h"
#include "encode.h"
#include "fingerprint.h"
#include "recordio.h"

struct fr_worker {
    fr_decoder *dec;
    fr_encoder *enc;
    fr_resizer resizer;
    fr_buf file;       /* the source file's bytes */
    fr_buf resized;    /* resampled pixels, stored orientation */
    fr_buf oriented;   /* after the EXIF rotation/flip */
    fr_buf rgbx;       /* fallback pixels widened to 4 bytes */
    fr_buf payload;    /* IRHeader + labels + encoded image */
};

fr_worker *fr_worker_new(void)
{
    fr_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->dec = fr_decoder_new();
    w->enc = fr_encoder_new();
    if (!w->dec || !w->enc) {
        fr_worker_free(w);
        return NULL;
    }
    return w;
}

void fr_worker_free(fr_worker *w)
{
    if (!w)
        return;
    fr_decoder_free(w->dec);
    fr_encoder_free(w->enc);
    fr_resizer_free(&w->resizer);
    fr_buf_free(&w->file);
    fr_buf_free(&w->resized);
    fr_buf_free(&w->oriented);
    fr_buf_free(&w->rgbx);
    fr_buf_free(&w->payload);
    free(w);
}

static void fail(fr_result *res, int status, const char *message)
{
    res->status = status;
    snprintf(res->message, sizeof res->message, "%s", message ? message : "");
}

static int clamp_int(int64_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

int fr_output_size(const fr_options *o, int w, int h, int *ow, int *oh)
{
    int64_t r = o->resize;
    if (w < 1 || h < 1) {     /* no image: no geometry (and no division by a zero side) */
        *ow = *oh = 0;
        return -1;
    }
    if (r <= 0 || (o->no_upscale && (w < r || h < r))) {
        *ow = w;
        *oh = h;
    } else if (h > w) {       /* im2rec: rows > cols -> width = R, height = rows*R//cols */
        *ow = (int)r;
        *oh = clamp_int((int64_t)h * r / w);
    } else {
        *ow = clamp_int((int64_t)w * r / h);
        *oh = (int)r;
    }
    return 0;
}

/* ---------------------------------------------------------------- orientation
 * EXIF orientation o maps a stored pixel (x, y) of a W x H image to the displayed image:
 *   1 (x, y)  2 (W-1-x, y)  3 (W-1-x, H-1-y)  4 (x, H-1-y)
 *   5 (y, x)  6 (H-1-y, x)  7 (H-1-y, W-1-x)  8 (y, W-1-x)     (5..8 swap the sides) */
static int transposes(int o) { return o >= 5 && o <= 8; }

/* The stored-coordinate box that becomes the displayed box (bx, by, bw, bh). */
static void box_to_stored(int o, int W, int H, int bx, int by, int bw, int bh,
                          int *sx, int *sy, int *sw, int *sh)
{
    int flip_x = o == 2 || o == 3, flip_y = o == 3 || o == 4;
    if (!transposes(o)) {
        *sw = bw, *sh = bh;
        *sx = flip_x ? W - bx - bw : bx;
        *sy = flip_y ? H - by - bh : by;
        return;
    }
    *sw = bh, *sh = bw;                                 /* displayed x runs along stored y */
    *sy = (o == 6 || o == 7) ? H - bx - bw : bx;
    *sx = (o == 7 || o == 8) ? W - by - bh : by;
}

/* Write the displayed version of a W x H image (stored orientation) into dst. */
static void orient(int o, const uint8_t *src, int W, int H, size_t stride, int ch, uint8_t *dst)
{
    int DW = transposes(o) ? H : W;
    for (int y = 0; y < H; y++) {
        const uint8_t *row = src + (size_t)y * stride;
        for (int x = 0; x < W; x++) {
            int dx, dy;
            switch (o) {
            case 2: dx = W - 1 - x, dy = y; break;
            case 3: dx = W - 1 - x, dy = H - 1 - y; break;
            case 4: dx = x, dy = H - 1 - y; break;
            case 5: dx = y, dy = x; break;
            case 6: dx = H - 1 - y, dy = x; break;
            case 7: dx = H - 1 - y, dy = W - 1 - x; break;
            case 8: dx = y, dy = W - 1 - x; break;
            default: dx = x, dy = y; break;
            }
            memcpy(dst + ((size_t)dy * DW + dx) * ch, row + (size_t)x * ch, (size_t)ch);
        }
    }
}

/* ---------------------------------------------------------------- record assembly */
static int begin_payload(fr_worker *w, const fr_record_head *h)
{
    size_t n = FR_IRHEADER_SIZE + 4 * (size_t)h->nlabels;
    w->payload.len = 0;
    if (fr_buf_reserve(&w->payload, n))
        return -1;
    fr_irheader_write(w->payload.data, h->nlabels, h->nlabels ? 0.0f : h->label, h->id, 0);
    for (uint32_t i = 0; i < h->nlabels; i++)
        fr_f32le_write(w->payload.data + FR_IRHEADER_SIZE + 4 * i, h->labels[i]);
    w->payload.len = n;
    return 0;
}

static void finish_record(fr_worker *w, fr_buf *out, fr_result *res)
{
    size_t start = out->len;
    int rc = fr_recordio_frame(w->payload.data, w->payload.len, out);
    if (rc == -2)
        fail(res, FR_SKIP_RECORD_TOO_LARGE, "record reaches RecordIO's 2^29-byte limit");
    else if (rc)
        fail(res, FR_SKIP_NO_MEMORY, "cannot grow the output buffer");
    else {
        res->status = FR_OK;
        /* the whole framed record, as the .rec will hold it: verify checks framing too */
        res->record_digest = fr_fingerprint(out->data + start, out->len - start);
    }
}

/* Header + rows of RGB (from RGBX), RGBA or gray bytes, unframed: Python turns them into a PNG. */
static void append_raw(fr_worker *w, const uint8_t *img, int width, int height, int ch, size_t stride,
                       int keep_alpha, fr_buf *out, fr_result *res)
{
    int oc = ch == 4 ? (keep_alpha ? 4 : 3) : 1;
    if (fr_buf_reserve(out, w->payload.len + (size_t)width * height * oc)) {
        fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the pixel output");
        return;
    }
    fr_buf_append(out, w->payload.data, w->payload.len);
    for (int y = 0; y < height; y++) {
        const uint8_t *row = img + (size_t)y * stride;
        uint8_t *d = out->data + out->len;
        for (int x = 0; x < width; x++)
            memcpy(d + (size_t)x * oc, row + (size_t)x * ch, (size_t)oc);
        out->len += (size_t)width * oc;
    }
    res->status = FR_OK;
}

/* Crop (displayed coordinates), resize, orient and encode pixels; append the record.
 * `alpha`: the 4th byte of each pixel is real alpha (RGBA input), not JPEG decoder padding. */
static void pack_decoded(fr_worker *w, const fr_options *o, const fr_pixels *px, int alpha, int orientation,
                         double box_x, double box_y, double box_w, double box_h, int tw, int th,
                         const fr_record_head *h, fr_buf *out, fr_result *res)
{
    int ch = px->channels;
    const uint8_t *img = px->px;
    size_t stride = px->stride;
    /* An exact integer box at the output size needs no resampling: encode it in place. */
    int identity = box_w == tw && box_h == th && box_x == (int)box_x && box_y == (int)box_y;
    if (identity) {
        img += (size_t)box_y * stride + (size_t)box_x * ch;
    } else {
        size_t row = (size_t)tw * ch;
        w->resized.len = 0;
        fr_image_in in = {px->px, px->width, px->height, ch, px->stride};
        if (fr_buf_reserve(&w->resized, row * th) ||
            fr_resize(&w->resizer, &in, box_x, box_y, box_w, box_h, w->resized.data, row, tw, th, o->filter)) {
            fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the resize buffers");
            return;
        }
        img = w->resized.data;
        stride = row;
    }
    int ow = tw, oh = th;
    if (orientation != 1) {
        w->oriented.len = 0;
        if (fr_buf_reserve(&w->oriented, (size_t)tw * th * ch)) {
            fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the rotation buffer");
            return;
        }
        orient(orientation, img, tw, th, stride, ch, w->oriented.data);
        if (transposes(orientation))
            ow = th, oh = tw;
        img = w->oriented.data;
        stride = (size_t)ow * ch;
    }
    res->out_width = ow;
    res->out_height = oh;
    if (begin_payload(w, h)) {
        fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the record");
        return;
    }
    if (o->raw_output) {
        append_raw(w, img, ow, oh, ch, stride, alpha, out, res);
        return;
    }
    fr_encode_params ep = {o->quality, o->subsampling, o->fast_dct};
    int rc = fr_encode_jpeg(w->enc, img, ow, oh, ch, stride, &ep, &w->payload);
    if (rc != FR_OK) {
        fail(res, rc, fr_encoder_message(w->enc));
        return;
    }
    finish_record(w, out, res);
}

/* ---------------------------------------------------------------- the YCbCr plane path
 * For a YCbCr JPEG going to a colour JPEG, the planes are resampled as they are: no chroma
 * upsampling or colour conversion in the decoder, none or downsampling in the encoder, and
 * 1.5 samples per pixel to resize (4:2:0) instead of 4. Resampling commutes with the (affine)
 * YCbCr transform, so the picture is the same up to rounding. */
#define PLANE_ALIGN 16

static size_t plane_stride(int width) { return ((size_t)width + PLANE_ALIGN - 1) & ~(size_t)(PLANE_ALIGN - 1); }

/* Repeat each row's last sample up to the next multiple of 8 (JPEG encodes whole blocks). */
static void pad_right(uint8_t *px, int width, int height, size_t stride)
{
    int to = (width + 7) & ~7;
    for (int y = 0; y < height && to > width; y++)
        memset(px + (size_t)y * stride + width, px[(size_t)y * stride + width - 1], (size_t)(to - width));
}

static void pack_planes(fr_worker *w, const fr_options *o, int orientation, int denom, int sx, int sy,
                        int sw, int sh, int tw, int th, const fr_record_head *h, fr_buf *out, fr_result *res)
{
    fr_planes in;
    int rc = fr_decode_planes(w->dec, denom, &in);
    if (rc != FR_OK) {
        fail(res, rc, fr_decoder_message(w->dec));
        return;
    }
    int s = o->subsampling == 420 ? 2 : 1;
    int pw[3] = {tw, (tw + s - 1) / s, (tw + s - 1) / s}, ph[3] = {th, (th + s - 1) / s, (th + s - 1) / s};
    /* A plane's slot holds it as resized (pw x ph rows) and, in `oriented`, as turned (ph x pw
     * when the orientation transposes): sized for the larger of the two padded layouts. */
    size_t offset[3], total = 0;
    for (int c = 0; c < 3; c++) {
        size_t resized = plane_stride(pw[c]) * (size_t)ph[c], turned = plane_stride(ph[c]) * (size_t)pw[c];
        offset[c] = total;
        total += transposes(orientation) && turned > resized ? turned : resized;
    }
    w->resized.len = w->oriented.len = 0;
    if (fr_buf_reserve(&w->resized, total + FR_RESIZE_SLACK) || fr_buf_reserve(&w->oriented, total)) {
        fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the plane buffers");
        return;
    }
    const uint8_t *planes[3];
    size_t strides[3];
    for (int c = 0; c < 3; c++) {
        /* An output chroma sample covers s x s output pixels, so the last one may reach past
         * the image: its source box grows by the same fraction. */
        double fx = (double)pw[c] * (c ? s : 1) / tw, fy = (double)ph[c] * (c ? s : 1) / th;
        fr_image_in src = {in.px[c], in.width[c], in.height[c], 1, in.stride[c]};
        uint8_t *dst = w->resized.data + offset[c];
        size_t stride = plane_stride(pw[c]);
        fr_filter f = c && o->filter == FR_FILTER_AUTO ? FR_FILTER_AUTO_CHROMA : o->filter;
        if (fr_resize(&w->resizer, &src, sx * in.scale_x[c], sy * in.scale_y[c],
                      sw * in.scale_x[c] * fx, sh * in.scale_y[c] * fy, dst, stride, pw[c], ph[c], f)) {
            fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the resize buffers");
            return;
        }
        planes[c] = dst;
        strides[c] = stride;
        if (orientation != 1) {
            uint8_t *rot = w->oriented.data + offset[c];
            orient(orientation, dst, pw[c], ph[c], stride, 1, rot);   /* dense rows... */
            int rw = transposes(orientation) ? ph[c] : pw[c], rh = transposes(orientation) ? pw[c] : ph[c];
            /* ...spread to the padded stride, last row first so nothing is overwritten early */
            size_t rs = plane_stride(rw);
            for (int y = rh - 1; y >= 0; y--)
                memmove(rot + (size_t)y * rs, rot + (size_t)y * rw, (size_t)rw);
            planes[c] = rot;
            strides[c] = rs;
            pad_right(rot, rw, rh, rs);
        } else {
            pad_right(dst, pw[c], ph[c], stride);
        }
    }
    int ow = transposes(orientation) ? th : tw, oh = transposes(orientation) ? tw : th;
    res->out_width = ow;
    res->out_height = oh;
    if (begin_payload(w, h)) {
        fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the record");
        return;
    }
    fr_encode_params ep = {o->quality, o->subsampling, o->fast_dct};
    rc = fr_encode_planes(w->enc, planes, strides, ow, oh, &ep, &w->payload);
    if (rc != FR_OK) {
        fail(res, rc, fr_encoder_message(w->enc));
        return;
    }
    finish_record(w, out, res);
}

/* The displayed crop box, the output size, and its check against JPEG's limit. */
static int plan_geometry(const fr_options *o, int dw, int dh, int *bx, int *by, int *bw, int *bh,
                         int *ow, int *oh, fr_result *res)
{
    *bx = *by = 0, *bw = dw, *bh = dh;
    if (o->center_crop) {    /* im2rec: margin = (long - short) // 2 on the longer side */
        if (dh > dw)
            *by = (dh - dw) / 2, *bh = dw;
        else
            *bx = (dw - dh) / 2, *bw = dh;
    }
    if (fr_output_size(o, *bw, *bh, ow, oh)) {
        fail(res, FR_SKIP_CORRUPT, "the image has no pixels");
        return -1;
    }
    if (*ow > FR_JPEG_MAX_SIDE || *oh > FR_JPEG_MAX_SIDE) {
        res->status = FR_SKIP_OUTPUT_TOO_LARGE;
        snprintf(res->message, sizeof res->message, "%dx%d -> %dx%d exceeds JPEG's %d-pixel side",
                 *bw, *bh, *ow, *oh, FR_JPEG_MAX_SIDE);
        return -1;
    }
    return 0;
}

static void pack_jpeg(fr_worker *w, const fr_options *o, const uint8_t *data, size_t len,
                      const fr_record_head *h, fr_buf *out, fr_result *res)
{
    fr_decode_limits lim = {o->max_pixels, o->max_scans};
    fr_jpeg_info info;
    int rc = fr_decode_header(w->dec, data, len, &lim, o->color != -1, &info);
    if (rc != FR_OK) {
        fail(res, rc, fr_decoder_message(w->dec));
        /* libjpeg reads no side above FR_JPEG_MAX_SIDE; when the output would be that large
         * too, that is the reason to give. */
        int bx, by, bw, bh, ow, oh;
        if (rc == FR_SKIP_UNSUPPORTED && (info.width > FR_JPEG_MAX_SIDE || info.height > FR_JPEG_MAX_SIDE))
            plan_geometry(o, info.width, info.height, &bx, &by, &bw, &bh, &ow, &oh, res);
        return;
    }
    res->in_width = info.width;
    res->in_height = info.height;
    int ori = info.orientation;
    int dw = transposes(ori) ? info.height : info.width;   /* displayed size */
    int dh = transposes(ori) ? info.width : info.height;
    int bx, by, bw, bh, ow, oh;
    if (plan_geometry(o, dw, dh, &bx, &by, &bw, &bh, &ow, &oh, res)) {
        fr_decoder_abort(w->dec);
        return;
    }
    int sx, sy, sw, sh;
    box_to_stored(ori, info.width, info.height, bx, by, bw, bh, &sx, &sy, &sw, &sh);
    int tw = transposes(ori) ? oh : ow, th = transposes(ori) ? ow : oh;  /* stored-orientation output */
    /* The strongest SIMD-backed DCT reduction that keeps the box at least the output size. */
    int denom = 1;
    for (int d = 8; d > 1; d /= 2)
        if ((int64_t)sw >= (int64_t)tw * d && (int64_t)sh >= (int64_t)th * d) {
            denom = d;
            break;
        }
    res->scale_denom = denom;
    if (info.ycc && o->color != 0 && !o->raw_output && (o->subsampling == 420 || o->subsampling == 444)) {
        pack_planes(w, o, ori, denom, sx, sy, sw, sh, tw, th, h, out, res);
        return;
    }
    int channels = (o->color == 0 || (o->color == -1 && info.gray)) ? 1 : 4;
    fr_pixels px;
    rc = fr_decode_pixels(w->dec, denom, channels, &px);
    if (rc != FR_OK) {
        fail(res, rc, fr_decoder_message(w->dec));
        return;
    }
    res->scale_denom = denom;
    /* Resample from the fractional box: a 1/d decode covers W/d source pixels, not ceil(W/d). */
    pack_decoded(w, o, &px, 0, ori, (double)sx / denom, (double)sy / denom, (double)sw / denom,
                 (double)sh / denom, tw, th, h, out, res);
}

static int is_jpeg(const uint8_t *d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

void fr_pack_bytes(fr_worker *w, const fr_options *o, const uint8_t *data, size_t len,
                   const fr_record_head *h, fr_buf *out, fr_result *res)
{
    memset(res, 0, sizeof *res);
    res->in_bytes = len;
    res->scale_denom = 1;
    res->source_digest = fr_fingerprint(data, len);
    if (len == 0) {
        fail(res, FR_SKIP_EMPTY, "the file is empty");
        return;
    }
    if (o->pass_through) {
        if (o->check_whole) {
            int st = fr_check_whole(data, len, res->message, sizeof res->message);
            if (st != FR_OK) {
                res->status = st;
                return;
            }
        }
        if (begin_payload(w, h) || fr_buf_append(&w->payload, data, len)) {
            fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the record");
            return;
        }
        finish_record(w, out, res);
        return;
    }
    if (!is_jpeg(data, len)) {
        fail(res, FR_NEEDS_FALLBACK, "not a JPEG");
        return;
    }
    pack_jpeg(w, o, data, len, h, out, res);
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a folder" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a regular file";
}

/* A FIFO would block open() or read() forever, a device may act on being opened: anything but a
 * regular file is refused from stat(), and the open itself cannot block (O_NONBLOCK) in case the
 * path changed in between (fstat then refuses it). */
static int open_regular(const char *path, struct stat *st, fr_result *res)
{
    if (stat(path, st)) {
        fail(res, FR_SKIP_READ_ERROR, strerror(errno));
        return -1;
    }
    if (S_ISREG(st->st_mode)) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
            fail(res, FR_SKIP_READ_ERROR, strerror(errno));
            return -1;
        }
        if (!fstat(fd, st) && S_ISREG(st->st_mode))
            return fd;
        close(fd);
    }
    fail(res, FR_SKIP_NOT_REGULAR, file_kind(st->st_mode));
    return -1;
}

static int read_file(const char *path, uint64_t max_bytes, fr_buf *buf, fr_result *res)
{
    struct stat st;
    int fd = open_regular(path, &st, res);
    if (fd < 0)
        return -1;
    if ((uint64_t)st.st_size > max_bytes) {
        res->status = FR_SKIP_FILE_TOO_LARGE;
        snprintf(res->message, sizeof res->message, "%lld bytes, above the limit of %llu",
                 (long long)st.st_size, (unsigned long long)max_bytes);
        close(fd);
        return -1;
    }
    buf->len = 0;
    if (fr_buf_reserve(buf, (size_t)st.st_size + 1)) {
        fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the file buffer");
        close(fd);
        return -1;
    }
    size_t want = (size_t)st.st_size;
    while (buf->len < want) {
        ssize_t n = read(fd, buf->data + buf->len, want - buf->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail(res, FR_SKIP_READ_ERROR, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;    /* the file shrank while we read it: pack what is there */
        buf->len += (size_t)n;
    }
    close(fd);
    return 0;
}

void fr_pack_file(fr_worker *w, const fr_options *o, const char *path, const fr_record_head *h,
                  fr_buf *out, fr_result *res)
{
    memset(res, 0, sizeof *res);
    if (read_file(path, o->max_bytes, &w->file, res))
        return;
    fr_pack_bytes(w, o, w->file.data, w->file.len, h, out, res);
}

void fr_pack_pixels(fr_worker *w, const fr_options *o, const uint8_t *px, int width, int height,
                    int channels, size_t stride, const fr_record_head *h, fr_buf *out, fr_result *res)
{
    memset(res, 0, sizeof *res);
    res->in_width = width;
    res->in_height = height;
    res->scale_denom = 1;
    if (!px || width < 1 || height < 1 || (channels != 1 && channels != 3 && channels != 4) ||
        stride < (size_t)width * channels) {
        fail(res, FR_SKIP_CORRUPT, "no pixels, or a pixel layout the packer does not take");
        return;
    }
    if ((uint64_t)width * height > o->max_pixels) {
        fail(res, FR_SKIP_TOO_MANY_PIXELS, "image has more pixels than the limit");
        return;
    }
    fr_pixels p = {(uint8_t *)px, width, height, 1, stride};
    if (channels != 1) {
        /* Copy to RGBX (or keep RGBA) in our own buffer, which has the resizer's read slack. */
        w->rgbx.len = 0;
        if (fr_buf_reserve(&w->rgbx, (size_t)width * height * 4 + FR_RESIZE_SLACK)) {
            fail(res, FR_SKIP_NO_MEMORY, "cannot allocate the pixel buffer");
            return;
        }
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++) {
                const uint8_t *s = px + (size_t)y * stride + (size_t)channels * x;
                uint8_t *d = w->rgbx.data + ((size_t)y * width + x) * 4;
                d[0] = s[0], d[1] = s[1], d[2] = s[2], d[3] = channels == 4 ? s[3] : 255;
            }
        p.px = w->rgbx.data;
        p.channels = 4;
        p.stride = (size_t)width * 4;
    }
    int bx, by, bw, bh, ow, oh;
    if (plan_geometry(o, width, height, &bx, &by, &bw, &bh, &ow, &oh, res))
        return;
    pack_decoded(w, o, &p, channels == 4 && o->keep_alpha, 1, bx, by, bw, bh, ow, oh, h, out, res);
}
