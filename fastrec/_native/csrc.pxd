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
