/* The libjpeg-turbo ceiling for `fastrec pack --resize R --quality Q`: a tight, single-threaded
 * C loop doing per image exactly the work of fastrec's native core, and nothing else.
 *
 *   read header -> pick the DCT scale (largest 1/8, 1/4, 1/2 whose scaled box stays >= the
 *   target on both sides) -> decode to RGBX at that scale -> fr_resize (csrc/resize.c, lanczos)
 *   from the fractional box W/d x H/d to im2rec's geometry (short edge = R, long edge =
 *   long*R//short) -> encode JPEG Q, 4:2:0, ISLOW, from RGBX -> discard.
 *
 * All files are read into memory first; there is no file I/O, no RecordIO framing, no EXIF,
 * no CMYK, no threads and no Python in the timed loop.  Build (bench/pack_vs_im2rec.py does it):
 *
 *   gcc -O3 -std=gnu11 -Icsrc bench/ceiling.c csrc/resize.c csrc/buffer.c -ljpeg -o ceiling
 *   ./ceiling FILELIST [--resize 480] [--quality 90] [--passes 3] [--no-upscale] [--filter lanczos]
 *
 * FILELIST holds one path per line.  Prints one JSON object: images/s of each pass, the median,
 * CPU seconds per image, and wall milliseconds per image spent in each stage (decode = header +
 * decode at scale; resize = fr_resize; encode = the whole compression).
 *
 * --core instead runs the native core's own per-image function (fr_pack_bytes: the YCbCr-plane
 * path for colour JPEGs, framing included) over the preloaded files, so the ratio to
 * `fastrec pack` isolates what file reads, threads and Python cost. Build it with every C file
 * of csrc/ and -DHAVE_FR_CORE; the stage times then come from one extra pass of the reference
 * loop (the same stages, timed one by one), after the timed passes of the core.
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

#include "buffer.h"
#include "resize.h"
#ifdef HAVE_FR_CORE
#include "pipeline.h"
#endif

typedef struct {
    uint8_t *data;
    size_t len;
} blob;

static jmp_buf g_escape;

static void on_error(j_common_ptr c)
{
    char msg[JMSG_LENGTH_MAX];
    (*c->err->format_message)(c, msg);
    fprintf(stderr, "ceiling: libjpeg: %s\n", msg);
    longjmp(g_escape, 1);
}

static void on_message(j_common_ptr c, int level) { (void)c, (void)level; }

/* Encoder destination: one big reused buffer, never grown (an output larger is an error). */
static uint8_t *g_out;
static size_t g_out_cap, g_out_len;
static void dest_init(j_compress_ptr c)
{
    c->dest->next_output_byte = g_out;
    c->dest->free_in_buffer = g_out_cap;
}
static boolean dest_full(j_compress_ptr c)
{
    (void)c;
    fprintf(stderr, "ceiling: output buffer too small\n");
    exit(2);
}
static void dest_term(j_compress_ptr c) { g_out_len = g_out_cap - c->dest->free_in_buffer; }

static double now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The one JSON line both modes print. Stage times are wall ms per image. */
static void report(size_t n, int passes, size_t in_bytes, size_t out_bytes, const int scale_hist[9],
                   const double stage_ms[3], double cpu_total, const double *rates)
{
    double *sorted = malloc((size_t)passes * sizeof *sorted);
    memcpy(sorted, rates, (size_t)passes * sizeof *sorted);
    qsort(sorted, (size_t)passes, sizeof *sorted, cmp_double);
    double median = passes % 2 ? sorted[passes / 2] : 0.5 * (sorted[passes / 2 - 1] + sorted[passes / 2]);
    free(sorted);
    printf("{\"images\": %zu, \"passes\": %d, \"in_bytes\": %zu, \"out_bytes\": %zu, "
           "\"scale_1\": %d, \"scale_2\": %d, \"scale_4\": %d, \"scale_8\": %d, "
           "\"ms_per_image_decode\": %.4f, \"ms_per_image_resize\": %.4f, \"ms_per_image_encode\": %.4f, "
           "\"cpu_s_per_image\": %.6f, \"images_per_s\": [",
           n, passes, in_bytes, out_bytes, scale_hist[1], scale_hist[2], scale_hist[4], scale_hist[8],
           stage_ms[0], stage_ms[1], stage_ms[2], cpu_total / ((double)n * passes));
    for (int p = 0; p < passes; p++)
        printf("%s%.3f", p ? ", " : "", rates[p]);
    printf("], \"median_images_per_s\": %.3f}\n", median);
}

static blob read_all(const char *path)
{
    blob b = {0, 0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc((size_t)n);
    if (!b.data || fread(b.data, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "ceiling: cannot read %s\n", path);
        exit(1);
    }
    b.len = (size_t)n;
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILELIST [--resize R] [--quality Q] [--passes N] [--no-upscale]\n"
                        "       [--filter auto|triangle|bicubic|lanczos]\n", argv[0]);
        return 1;
    }
    int resize = 480, quality = 90, passes = 3, no_upscale = 0, core = 0;
    fr_filter filter = FR_FILTER_LANCZOS;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--resize") && i + 1 < argc)
            resize = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quality") && i + 1 < argc)
            quality = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc)
            passes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-upscale"))
            no_upscale = 1;
        else if (!strcmp(argv[i], "--core"))
            core = 1;
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc) {
            const char *f = argv[++i];
            filter = !strcmp(f, "triangle") ? FR_FILTER_TRIANGLE : !strcmp(f, "bicubic") ? FR_FILTER_BICUBIC
                                                                                      : FR_FILTER_LANCZOS;
#ifdef HAVE_FR_FILTER_AUTO   /* defined by the build when csrc/resize.h has it */
            if (!strcmp(f, "auto"))
                filter = FR_FILTER_AUTO;
#endif
        }
        else {
            fprintf(stderr, "ceiling: unknown argument %s\n", argv[i]);
            return 1;
        }
    }
    if (passes < 1)
        passes = 1;

    /* Preload every file. */
    FILE *lf = fopen(argv[1], "r");
    if (!lf) {
        perror(argv[1]);
        return 1;
    }
    size_t n = 0, cap = 0;
    blob *files = NULL;
    char line[8192];
    size_t in_bytes = 0;
    while (fgets(line, sizeof line, lf)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            files = realloc(files, cap * sizeof *files);
        }
        files[n] = read_all(line);
        in_bytes += files[n].len;
        n++;
    }
    fclose(lf);
    if (!n) {
        fprintf(stderr, "ceiling: no files\n");
        return 1;
    }

    double *core_rates = NULL, core_cpu = 0;   /* --core: the core's own figures */
    size_t core_out = 0;
    int core_hist[9] = {0};
#ifdef HAVE_FR_CORE
    if (core) {
        fr_worker *wk = fr_worker_new();
        fr_options o = {0};
        o.resize = resize, o.no_upscale = no_upscale, o.filter = filter, o.quality = quality;
        o.color = 1, o.subsampling = 420, o.max_pixels = 1ull << 40, o.max_bytes = 1ull << 40, o.max_scans = 1000;
        fr_record_head head = {0};
        fr_buf out = {0};
        fr_result res;
        double *rates = calloc((size_t)passes, sizeof *rates), cpu_total = 0;
        size_t out_bytes = 0;
        int scale_hist[9] = {0};
        for (int p = 0; p < passes; p++) {
            double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
            for (size_t i = 0; i < n; i++) {
                out.len = 0;
                fr_pack_bytes(wk, &o, files[i].data, files[i].len, &head, &out, &res);
                if (res.status != FR_OK) {
                    fprintf(stderr, "ceiling: image %zu failed: %s\n", i, res.message);
                    return 1;
                }
                if (p == 0) {
                    out_bytes += out.len;
                    scale_hist[res.scale_denom]++;
                }
            }
            double t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
            rates[p] = n / (t1 - t0);
            cpu_total += c1 - c0;
        }
        fr_buf_free(&out);
        fr_worker_free(wk);
        /* The core is one call per image: its stage breakdown comes from one pass of the
         * reference loop below, which does the same stages one by one. */
        core_rates = rates, core_cpu = cpu_total, core_out = out_bytes;
        memcpy(core_hist, scale_hist, sizeof core_hist);
    }
#else
    (void)core;
#endif
    const int ref_passes = core_rates ? 1 : passes;

    struct jpeg_decompress_struct d;
    struct jpeg_compress_struct e;
    struct jpeg_error_mgr derr, eerr;
    d.err = jpeg_std_error(&derr);
    derr.error_exit = on_error;
    derr.emit_message = on_message;
    e.err = jpeg_std_error(&eerr);
    eerr.error_exit = on_error;
    eerr.emit_message = on_message;
    jpeg_create_decompress(&d);
    jpeg_create_compress(&e);
    struct jpeg_destination_mgr dest = {0};
    dest.init_destination = dest_init;
    dest.empty_output_buffer = dest_full;
    dest.term_destination = dest_term;
    e.dest = &dest;
    g_out_cap = 64u << 20;
    g_out = malloc(g_out_cap);

    fr_buf pixels = {0}, resized = {0};
    fr_resizer rs = {0};
    double *rates = calloc((size_t)ref_passes, sizeof *rates);
    double cpu_total = 0;
    size_t out_bytes = 0;
    int scale_hist[9] = {0};
    double t_dec = 0, t_rs = 0, t_enc = 0;   /* wall seconds per stage, all passes */

    for (int p = 0; p < ref_passes; p++) {
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        for (size_t i = 0; i < n; i++) {
            if (setjmp(g_escape)) {
                fprintf(stderr, "ceiling: image %zu failed\n", i);
                return 1;
            }
            double s0 = now(CLOCK_MONOTONIC);
            jpeg_mem_src(&d, files[i].data, (unsigned long)files[i].len);
            jpeg_read_header(&d, TRUE);
            int w = (int)d.image_width, h = (int)d.image_height, tw, th;
            if (resize <= 0 || (no_upscale && (w < resize || h < resize)))
                tw = w, th = h;
            else if (h > w)
                tw = resize, th = (int)((int64_t)h * resize / w);
            else
                tw = (int)((int64_t)w * resize / h), th = resize;
            int denom = 1;
            for (int k = 8; k > 1; k /= 2)
                if ((int64_t)w >= (int64_t)tw * k && (int64_t)h >= (int64_t)th * k) {
                    denom = k;
                    break;
                }
            if (p == 0)
                scale_hist[denom]++;
            d.scale_num = 1;
            d.scale_denom = (unsigned)denom;
            d.dct_method = JDCT_ISLOW;
            d.out_color_space = JCS_EXT_RGBX;
            jpeg_calc_output_dimensions(&d);
            size_t stride = (size_t)d.output_width * 4;
            pixels.len = 0;
            fr_buf_reserve(&pixels, stride * d.output_height);
            jpeg_start_decompress(&d);
            while (d.output_scanline < d.output_height) {
                JSAMPROW rows[16];
                int k = 0;
                for (; k < 16 && d.output_scanline + k < d.output_height; k++)
                    rows[k] = pixels.data + (d.output_scanline + k) * stride;
                jpeg_read_scanlines(&d, rows, (JDIMENSION)k);
            }
            jpeg_finish_decompress(&d);
            double s1 = now(CLOCK_MONOTONIC);

            const uint8_t *img = pixels.data;
            size_t img_stride = stride;
            double bw = (double)w / denom, bh = (double)h / denom;
            if (!(bw == tw && bh == th)) {   /* fastrec skips an identity resize too */
                resized.len = 0;
                fr_buf_reserve(&resized, (size_t)tw * th * 4);
                fr_image_in in = {pixels.data, (int)d.output_width, (int)d.output_height, 4, stride};
                if (fr_resize(&rs, &in, 0.0, 0.0, bw, bh, resized.data, (size_t)tw * 4, tw, th, filter)) {
                    fprintf(stderr, "ceiling: resize failed\n");
                    return 1;
                }
                img = resized.data;
                img_stride = (size_t)tw * 4;
            }

            double s2 = now(CLOCK_MONOTONIC);
            e.image_width = (JDIMENSION)tw;
            e.image_height = (JDIMENSION)th;
            e.input_components = 4;
            e.in_color_space = JCS_EXT_RGBX;
            jpeg_set_defaults(&e);
            jpeg_set_quality(&e, quality, TRUE);
            e.dct_method = JDCT_ISLOW;
            e.comp_info[0].h_samp_factor = 2;
            e.comp_info[0].v_samp_factor = 2;
            jpeg_start_compress(&e, TRUE);
            while (e.next_scanline < e.image_height) {
                JSAMPROW rows[16];
                int k = 0;
                for (; k < 16 && e.next_scanline + k < e.image_height; k++)
                    rows[k] = (JSAMPROW)(img + (e.next_scanline + k) * img_stride);
                jpeg_write_scanlines(&e, rows, (JDIMENSION)k);
            }
            jpeg_finish_compress(&e);
            double s3 = now(CLOCK_MONOTONIC);
            t_dec += s1 - s0, t_rs += s2 - s1, t_enc += s3 - s2;
            if (p == 0)
                out_bytes += g_out_len;
        }
        double t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
        rates[p] = n / (t1 - t0);
        cpu_total += c1 - c0;
    }

    double per = 1e3 / ((double)n * ref_passes);
    const double stages[3] = {t_dec * per, t_rs * per, t_enc * per};
    if (core_rates)
        report(n, passes, in_bytes, core_out, core_hist, stages, core_cpu, core_rates);
    else
        report(n, passes, in_bytes, out_bytes, scale_hist, stages, cpu_total, rates);
    free(core_rates);

    jpeg_destroy_decompress(&d);
    jpeg_destroy_compress(&e);
    fr_resizer_free(&rs);
    fr_buf_free(&pixels);
    fr_buf_free(&resized);
    for (size_t i = 0; i < n; i++)
        free(files[i].data);
    free(files);
    free(rates);
    free(g_out);
    return 0;
}
