# Declarations of fastrec's own C modules (csrc/*.h), declared once and cimported elsewhere.
from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef extern from "buffer.h" nogil:
    ctypedef struct fr_buf:
        uint8_t *data
        size_t len
        size_t cap

    int fr_buf_reserve(fr_buf *b, size_t extra)
    int fr_buf_append(fr_buf *b, const void *src, size_t n)
    void fr_buf_free(fr_buf *b)


cdef extern from "recordio.h" nogil:
    const uint32_t FR_RECORDIO_MAGIC
    const uint32_t FR_RECORDIO_MAX_LEN
    const int FR_IRHEADER_SIZE

    size_t fr_recordio_bound(size_t n)
    int fr_recordio_frame(const uint8_t *payload, size_t n, fr_buf *out)
    void fr_irheader_write(uint8_t *dst, uint32_t flag, float label, uint64_t id, uint64_t id2)
    void fr_f32le_write(uint8_t *dst, float v)


cdef extern from "fingerprint.h" nogil:
    uint64_t fr_fingerprint(const void *data, size_t len)


cdef extern from "status.h" nogil:
    enum:
        FR_OK
        FR_NEEDS_FALLBACK
        FR_STATUS_COUNT
        FR_MESSAGE_LEN
    const char *fr_status_name(int s)


cdef extern from "resize.h" nogil:
    ctypedef enum fr_filter:
        FR_FILTER_TRIANGLE
        FR_FILTER_BICUBIC
        FR_FILTER_LANCZOS
        FR_FILTER_AUTO


cdef extern from "pipeline.h" nogil:
    ctypedef struct fr_options:
        int resize
        int center_crop
        int color
        int no_upscale
        int pass_through
        int check_whole
        int raw_output
        int keep_alpha
        fr_filter filter
        int quality
        int subsampling
        int fast_dct
        uint64_t max_pixels
        uint64_t max_bytes
        int max_scans

    ctypedef struct fr_record_head:
        uint64_t id
        uint32_t nlabels
        float label
        const float *labels

    ctypedef struct fr_result:
        int status
        int in_width, in_height
        int out_width, out_height
        int scale_denom
        uint64_t in_bytes
        uint64_t source_digest
        uint64_t record_digest
        char message[200]

    ctypedef struct fr_worker:
        pass

    fr_worker *fr_worker_new()
    void fr_worker_free(fr_worker *w)
    int fr_output_size(const fr_options *o, int w, int h, int *ow, int *oh)
    void fr_pack_file(fr_worker *w, const fr_options *o, const char *path, const fr_record_head *h,
                      fr_buf *out, fr_result *res)
    void fr_pack_bytes(fr_worker *w, const fr_options *o, const uint8_t *data, size_t len,
                       const fr_record_head *h, fr_buf *out, fr_result *res)
    void fr_pack_pixels(fr_worker *w, const fr_options *o, const uint8_t *px, int width, int height,
                        int channels, size_t stride, const fr_record_head *h, fr_buf *out, fr_result *res)
