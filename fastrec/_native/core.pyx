# cython: language_level=3, boundscheck=False, wraparound=False
"""The pack core: one Worker per thread turns batches of files into framed records without the GIL.

Every argument is checked here, before C sees it: wrong types raise TypeError, wrong values
(lengths that disagree, sizes below 1, numbers out of range) ValueError. No call can crash.
"""
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.limits cimport INT_MAX
from libc.stdint cimport uint8_t, uint32_t, uint64_t, UINT32_MAX, UINT64_MAX
from libc.stdlib cimport malloc, calloc, free

import operator
import os

from fastrec._native.csrc cimport (
    fr_buf, fr_buf_free, FR_OK, fr_options, fr_record_head, fr_result, fr_worker, fr_worker_new,
    fr_worker_free, fr_fingerprint, fr_pack_file, fr_pack_bytes, fr_pack_pixels, fr_output_size, fr_status_name,
    FR_STATUS_COUNT, FR_FILTER_TRIANGLE, FR_FILTER_BICUBIC, FR_FILTER_LANCZOS, FR_FILTER_AUTO,
)

FILTERS = {"auto": FR_FILTER_AUTO, "triangle": FR_FILTER_TRIANGLE, "bicubic": FR_FILTER_BICUBIC,
           "lanczos": FR_FILTER_LANCZOS}
STATUS_NAMES = tuple(fr_status_name(i).decode() for i in range(FR_STATUS_COUNT))
OK, NEEDS_FALLBACK = 0, 1


def _checked_int(name, value, lo, hi):
    """`value` as an int in lo..hi: TypeError for a non-integer, ValueError out of range."""
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {v}")
    return v


def _checked_float(name, value):
    try:
        return float(value)
    except TypeError:
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    except (OverflowError, ValueError):
        raise ValueError(f"{name} must be a finite float32-range number, got {value!r}") from None


def _checked_path(value):
    """A path as the bytes C opens: str, bytes or os.PathLike, without NUL (C would cut it)."""
    try:
        p = os.fsencode(value)
    except TypeError:
        raise TypeError(f"a path must be str, bytes or os.PathLike, got {type(value).__name__}") from None
    if b"\0" in p:
        raise ValueError(f"a path cannot hold a NUL byte: {p!r}")
    return p


def output_size(width, height, resize, bint no_upscale=False):
    """im2rec's output geometry for a (width, height) image: the shorter edge becomes `resize`."""
    cdef fr_options o
    cdef int ow, oh
    o.resize = _checked_int("resize", resize, 0, INT_MAX)
    o.no_upscale = no_upscale
    fr_output_size(&o, _checked_int("width", width, 1, INT_MAX), _checked_int("height", height, 1, INT_MAX),
                   &ow, &oh)
    return ow, oh


def fingerprint(data):
    """XXH3-64 of a bytes-like object (the GIL is released while it hashes): the digest the pack
    core records for every source and every framed record (see formats/fingerprints.py)."""
    cdef const uint8_t[::1] view = memoryview(data).cast("B")
    cdef uint64_t h
    if view.shape[0] == 0:
        return fr_fingerprint(NULL, 0)
    with nogil:
        h = fr_fingerprint(&view[0], view.shape[0])
    return h


def _digest_view(digests, Py_ssize_t n):
    """The caller's `digests` buffer as 2 x n writable uint64 slots (None without one)."""
    cdef uint64_t[::1] view
    if digests is None:
        return None
    try:
        view = digests
    except BufferError as err:   # read-only (bytes): a wrong value, like any other
        raise ValueError(f"digests must be a writable uint64 buffer: {err}") from None
    if view.shape[0] < 2 * n:
        raise ValueError(f"digests holds {view.shape[0]} uint64 slots, the batch needs {2 * n}")
    return view


cdef class _Heads:
    """C record heads for a batch, built under the GIL, read without it."""
    cdef fr_record_head *heads
    cdef float *labels
    cdef Py_ssize_t n

    def __cinit__(self, list ids not None, list labels not None, Py_ssize_t n):
        cdef Py_ssize_t i, j, nl = 0, pos = 0
        if len(ids) != n or len(labels) != n:
            raise ValueError(f"ids, labels and the images must be as many: got {len(ids)} ids, "
                             f"{len(labels)} labels, {n} images")
        ids = [_checked_int("an id", v, 0, UINT64_MAX) for v in ids]
        labels = [tuple(_checked_float("a label", x) for x in lab) if isinstance(lab, tuple)
                  else _checked_float("a label", lab) for lab in labels]
        for lab in labels:
            if isinstance(lab, tuple):
                if not 1 <= len(lab) <= UINT32_MAX:
                    raise ValueError(f"a label tuple holds 1..2^32-1 labels, got {len(lab)}")
                nl += len(lab)
        self.n = n
        self.heads = <fr_record_head *>calloc(max(self.n, 1), sizeof(fr_record_head))
        self.labels = <float *>malloc(max(nl, 1) * sizeof(float))
        if not self.heads or not self.labels:
            raise MemoryError()
        for i in range(self.n):
            self.heads[i].id = ids[i]
            lab = labels[i]
            if isinstance(lab, tuple):       # multi-label: flag = count, labels after the header
                self.heads[i].nlabels = len(lab)
                self.heads[i].labels = self.labels + pos
                for j in range(len(lab)):
                    self.labels[pos] = lab[j]
                    pos += 1
            else:
                self.heads[i].label = lab

    def __dealloc__(self):
        free(self.heads)
        free(self.labels)


cdef class _Records:
    """A batch's framed records, back to back: the worker's output buffer, lent to Python
    read-only and without a copy (a record is a slice of memoryview(records))."""
    cdef fr_buf buf

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, self.buf.data, self.buf.len, 1, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        fr_buf_free(&self.buf)


cdef tuple _result_tuple(fr_result *r, size_t end):
    return (r.status, end, r.message.decode("utf-8", "replace"), r.in_width, r.in_height,
            r.out_width, r.out_height, r.scale_denom, r.in_bytes)


cdef class Worker:
    """Per-thread decoder, encoder and buffers, reused across images.

    Parameters mirror im2rec: resize (shorter edge, 0 keeps the size), center_crop, color
    (1, 0, -1), quality (1-100); plus no_upscale, pass_through (with check_whole: files that are
    not whole images are skipped, csrc/check.h), filter ("auto": Lanczos-3 when
    shrinking, bicubic when enlarging; or "triangle", "bicubic", "lanczos"), subsampling (420, 422, 444), fast_dct, and the limits max_pixels, max_bytes
    (per file) and max_scans (progressive JPEG scans). With raw=True a "record" is the
    unframed header followed by the raw RGB (or gray) rows, for encoders other than JPEG;
    keep_alpha then keeps the 4th channel of RGBA input from pack_pixels.
    """
    cdef fr_worker *w
    cdef fr_options o

    def __cinit__(self, resize=0, bint center_crop=False, color=1, bint no_upscale=False,
                  bint pass_through=False, bint check_whole=True, filter="auto", quality=95, subsampling=420,
                  bint fast_dct=False, max_pixels=178956970, max_bytes=1 << 28,
                  max_scans=100, bint raw=False, bint keep_alpha=False):
        resize = _checked_int("resize", resize, 0, INT_MAX)
        quality = _checked_int("JPEG quality", quality, 1, 100)
        subsampling = _checked_int("subsampling", subsampling, 420, 444)
        if subsampling not in (420, 422, 444):
            raise ValueError(f"subsampling must be 420, 422 or 444, got {subsampling}")
        color = _checked_int("color", color, -1, 1)
        if not isinstance(filter, str):
            raise TypeError(f"filter must be a str, got {type(filter).__name__}")
        if filter not in FILTERS:
            raise ValueError(f"filter must be one of {', '.join(FILTERS)}, got {filter!r}")
        max_pixels = _checked_int("max_pixels", max_pixels, 1, UINT64_MAX)
        max_bytes = _checked_int("max_bytes", max_bytes, 1, UINT64_MAX)
        max_scans = _checked_int("max_scans", max_scans, 1, INT_MAX)
        self.o.resize = resize
        self.o.center_crop = center_crop
        self.o.color = color
        self.o.no_upscale = no_upscale
        self.o.pass_through = pass_through
        self.o.check_whole = check_whole
        self.o.filter = FILTERS[filter]
        self.o.quality = quality
        self.o.subsampling = subsampling
        self.o.fast_dct = fast_dct
        self.o.max_pixels = max_pixels
        self.o.max_bytes = max_bytes
        self.o.max_scans = max_scans
        self.o.raw_output = raw
        self.o.keep_alpha = keep_alpha
        self.w = fr_worker_new()
        if self.w == NULL:
            raise MemoryError("cannot create the JPEG decoder/encoder")

    def __dealloc__(self):
        fr_worker_free(self.w)

    cdef tuple _run(self, _Heads heads, Py_ssize_t n, const char **paths, const uint8_t **datas,
                    const size_t *lens, uint64_t *digests):
        """Pack n items, from files (`paths`) or from memory (`datas`, `lens`), without the GIL;
        `digests` (or NULL) receives each item's (source, record) fingerprints."""
        cdef Py_ssize_t i
        cdef fr_result *res = <fr_result *>malloc(max(n, 1) * sizeof(fr_result))
        cdef size_t *ends = <size_t *>malloc(max(n, 1) * sizeof(size_t))
        cdef _Records records = _Records()
        cdef fr_buf *out = &records.buf
        try:
            if not res or not ends:
                raise MemoryError()
            with nogil:
                for i in range(n):
                    if paths != NULL:
                        fr_pack_file(self.w, &self.o, paths[i], &heads.heads[i], out, &res[i])
                    else:
                        fr_pack_bytes(self.w, &self.o, datas[i], lens[i], &heads.heads[i], out, &res[i])
                    ends[i] = out.len
                    if digests != NULL:
                        digests[2 * i] = res[i].source_digest
                        digests[2 * i + 1] = res[i].record_digest if res[i].status == FR_OK else 0
            return memoryview(records), [_result_tuple(&res[i], ends[i]) for i in range(n)]
        finally:
            free(res)
            free(ends)

    def pack_files(self, list ids, list labels, list paths not None, digests=None):
        """Pack files into framed records: returns (records, results).

        `labels[i]` is a float (flag 0) or a tuple of floats (flag = its length); `paths[i]` is
        str, bytes or os.PathLike. `records` (a read-only memoryview: slices of it are not
        copies; bytes(records) makes a copy, e.g. to pickle) holds the framed records of the
        items whose status is OK, back to back;
        results[i] = (status, end offset in records, message, in_w, in_h, out_w, out_h,
        scale_denom, in_bytes). `digests`, if given, is a writable uint64 buffer of 2 x n slots
        that receives each item's (source bytes, framed record) fingerprints (record 0 if not OK).
        """
        cdef Py_ssize_t i, n = len(paths)
        cdef _Heads heads = _Heads(ids, labels, n)
        cdef uint64_t[::1] dview = _digest_view(digests, n)
        cdef uint64_t *dslots = &dview[0] if dview is not None and n else NULL
        encoded = [_checked_path(p) for p in paths]   # keeps the C strings alive
        cdef const char **cpaths = <const char **>malloc(max(n, 1) * sizeof(char *))
        if not cpaths:
            raise MemoryError()
        try:
            for i in range(n):
                cpaths[i] = <bytes>encoded[i]
            return self._run(heads, n, cpaths, NULL, NULL, dslots)
        finally:
            free(cpaths)

    def pack_bytes(self, list ids, list labels, list datas not None, digests=None):
        """Like pack_files, from in-memory file contents (bytes-like objects)."""
        cdef Py_ssize_t i, n = len(datas)
        cdef _Heads heads = _Heads(ids, labels, n)
        cdef uint64_t[::1] dview = _digest_view(digests, n)
        cdef uint64_t *dslots = &dview[0] if dview is not None and n else NULL
        cdef const uint8_t **ptrs = <const uint8_t **>malloc(max(n, 1) * sizeof(uint8_t *))
        cdef size_t *lens = <size_t *>malloc(max(n, 1) * sizeof(size_t))
        cdef const uint8_t[::1] view
        views = [memoryview(d).cast("B") for d in datas]  # keeps the buffers alive
        try:
            if not ptrs or not lens:
                raise MemoryError()
            for i in range(n):
                view = views[i]
                lens[i] = view.shape[0]
                ptrs[i] = &view[0] if lens[i] else NULL
            return self._run(heads, n, NULL, ptrs, lens, dslots)
        finally:
            free(ptrs)
            free(lens)

    def pack_pixels(self, pixels, id, label, digests=None):
        """Pack an already decoded, upright image (uint8 array HxW, HxWx3 or HxWx4): (record, result).
        `digests` (2 uint64 slots), if given, receives (0, the framed record's fingerprint)."""
        cdef const uint8_t[:, :, ::1] px3
        cdef const uint8_t[:, ::1] px2
        cdef const uint8_t *data
        cdef int height, width, channels
        cdef size_t stride
        cdef _Heads heads = _Heads([id], [label], 1)
        cdef uint64_t[::1] dview = _digest_view(digests, 1)
        cdef uint64_t *dslots = &dview[0] if dview is not None else NULL
        cdef fr_result res
        cdef fr_buf out
        out.data = NULL
        out.len = out.cap = 0
        mv = memoryview(pixels)
        if not (mv.ndim == 2 or (mv.ndim == 3 and mv.shape[2] in (3, 4))):
            raise ValueError(f"pixels must be HxW, HxWx3 or HxWx4 uint8, got shape {mv.shape}")
        if not (1 <= mv.shape[0] <= INT_MAX and 1 <= mv.shape[1] <= INT_MAX):
            raise ValueError(f"pixels must hold an image of 1x1 to 2^31-1 x 2^31-1, got shape {mv.shape}")
        try:
            if mv.ndim == 2:
                px2 = mv
                height, width, channels = px2.shape[0], px2.shape[1], 1
                data, stride = &px2[0, 0], px2.strides[0]
            else:
                px3 = mv
                height, width, channels = px3.shape[0], px3.shape[1], px3.shape[2]
                data, stride = &px3[0, 0, 0], px3.strides[0]
        except BufferError as err:   # not C-contiguous (a dtype mismatch is already ValueError)
            raise ValueError(f"pixels must be a C-contiguous uint8 array: {err}") from None
        try:
            with nogil:
                fr_pack_pixels(self.w, &self.o, data, width, height, channels, stride,
                               &heads.heads[0], &out, &res)
            blob = PyBytes_FromStringAndSize(<char *>out.data, out.len) if out.len else b""
            if dslots != NULL:
                dslots[0] = 0
                dslots[1] = res.record_digest if res.status == FR_OK else 0
            return blob, _result_tuple(&res, out.len)
        finally:
            fr_buf_free(&out)
