/* libFuzzer harness over the whole native path: bytes -> decode at scale -> resize -> orient ->
 * encode -> IRHeader -> RecordIO framing. Built with AddressSanitizer and UndefinedBehaviorSanitizer
 * by `make fuzz`. The first 4 input bytes pick the options (every filter, the default `auto`
 * included), the rest is the "file": packed from memory (fr_pack_bytes) or, with bit 6 of the
 * 2nd byte, written to a file and packed from there (fr_pack_file, what `fastrec pack` calls);
 * when the 4th byte is >= 240, the rest is the raw pixels handed to the fallback entry
 * fr_pack_pixels. tests/test_fuzz_regressions.py mirrors this mapping. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline.h"
#include "recordio.h"

static fr_worker *worker;
static char file_path[] = "/tmp/fastrec-fuzz-XXXXXX";
static int file_fd = -1;

/* The input as a file on disk, rewritten in place for each run. */
static const char *as_file(const uint8_t *data, size_t size)
{
    if (file_fd < 0 && (file_fd = mkstemp(file_path)) < 0)
        abort();
    if (ftruncate(file_fd, 0) || (size && pwrite(file_fd, data, size, 0) != (ssize_t)size))
        abort();
    return file_path;
}

static void remove_file(void)
{
    if (file_fd >= 0)
        unlink(file_path);
}

/* Every record the core appends must frame cleanly: walk the segments to the end. */
static void check_framing(const fr_buf *out)
{
    size_t pos = 0;
    while (pos < out->len) {
        if (pos + 8 > out->len)
            abort();
        uint32_t magic, lrec;
        memcpy(&magic, out->data + pos, 4);
        memcpy(&lrec, out->data + pos + 4, 4);
        if (magic != FR_RECORDIO_MAGIC)
            abort();
        uint32_t cflag = lrec >> 29, len = lrec & FR_RECORDIO_MAX_LEN;
        pos += 8 + len;
        if (cflag == 0 || cflag == 3)
            pos += (4 - len % 4) % 4;
    }
    if (pos != out->len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    if (!worker) {
        if (!(worker = fr_worker_new()))
            abort();
        atexit(remove_file);
    }
    static const int sizes[8] = {0, 1, 7, 32, 64, 100, 255, 480};
    static const int samplings[3] = {420, 422, 444};
    fr_options o = {0};
    o.resize = sizes[data[0] & 7];
    o.center_crop = (data[0] >> 3) & 1;
    o.no_upscale = (data[0] >> 4) & 1;
    o.pass_through = ((data[0] >> 5) & 7) == 7;
    o.check_whole = (data[2] >> 6) & 1;     /* the pass-through check (csrc/check.c) */
    o.color = (int)(data[1] % 3) - 1;
    o.filter = (fr_filter)((data[1] >> 2) & 3);   /* triangle, bicubic, lanczos, auto */
    o.raw_output = (data[1] >> 4) & 1;
    o.fast_dct = (data[1] >> 5) & 1;
    o.quality = 1 + data[2] % 100;
    o.subsampling = samplings[data[3] % 3];
    o.max_pixels = 1 << 22;      /* keep each run fast; the limit itself is under test */
    o.max_bytes = 1 << 24;
    o.max_scans = 1 + data[3] % 64;
    float labels[3] = {1.0f, 2.0f, 3.0f};
    fr_record_head h = {42, (uint32_t)(data[2] >> 7) * 3, 7.0f, labels};
    fr_buf out = {0};
    fr_result res;
    if (data[3] >= 240 && size >= 8) {
        /* The fallback entry: the rest is raw pixels of a small image (Pillow's output). */
        int chans[3] = {1, 3, 4};
        int ch = chans[data[3] % 3], width = 1 + data[4] % 64;
        int height = (int)((size - 5) / ((size_t)width * ch));
        if (height < 1)
            return 0;
        fr_pack_pixels(worker, &o, data + 5, width, height, ch, (size_t)width * ch, &h, &out, &res);
    } else if ((data[1] >> 6) & 1) {
        fr_pack_file(worker, &o, as_file(data + 4, size - 4), &h, &out, &res);
    } else {
        fr_pack_bytes(worker, &o, data + 4, size - 4, &h, &out, &res);
    }
    if (res.status == FR_OK && !o.raw_output)
        check_framing(&out);
    if (res.status != FR_OK && out.len != 0)
        abort();   /* a skipped image must leave the output untouched */
    fr_buf_free(&out);
    return 0;
}
