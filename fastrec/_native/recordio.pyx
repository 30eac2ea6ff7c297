# cython: language_level=3, boundscheck=False, wraparound=False
"""RecordIO framing in C, exposed to Python; the GIL is released while framing and writing."""
from libc.stdio cimport FILE, fopen, fwrite, fclose, ftell, fflush
from libc.errno cimport errno
from libc.string cimport strerror
from libc.stdint cimport uint8_t

from fastrec._native.csrc cimport fr_buf, fr_buf_free, fr_recordio_frame

import os

_MODES = ("wb", "ab", "r+b")   # the record file is only ever written


cdef int _frame_into(const uint8_t[::1] payload, fr_buf *out) except -1:
    cdef int rc
    cdef const uint8_t *p = &payload[0] if payload.shape[0] else <const uint8_t *>""
    cdef size_t n = payload.shape[0]
    with nogil:
        rc = fr_recordio_frame(p, n, out)
    if rc == -2:
        raise ValueError("RecordIO only accepts records shorter than 2^29 bytes")
    if rc:
        raise MemoryError()
    return 0


def frame(payload) -> bytes:
    """Return the dmlc RecordIO framing of one record: the bytes MXNet writes for it."""
    cdef fr_buf out
    out.data = NULL
    out.len = out.cap = 0
    try:
        _frame_into(memoryview(payload).cast("B"), &out)
        return out.data[:out.len]
    finally:
        fr_buf_free(&out)


cdef class NativeRecordFile:
    """Append-only .rec file written by the C framer (used by fastrec.recordio.RecordWriter)."""
    cdef FILE *fp
    cdef fr_buf buf
    cdef readonly object path

    def __cinit__(self, path, mode="wb"):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
        self.path = os.fspath(path)   # TypeError for anything but str, bytes, os.PathLike
        cpath = os.fsencode(self.path)
        if b"\0" in cpath:
            raise ValueError(f"a path cannot hold a NUL byte: {cpath!r}")
        self.fp = fopen(cpath, mode.encode())
        if self.fp == NULL:
            raise OSError(errno, strerror(errno).decode(), self.path)

    def write(self, payload) -> int:
        """Frame and append one record; returns the byte offset at which it starts."""
        cdef long pos
        cdef size_t written
        if self.fp == NULL:
            raise ValueError("write to a closed record file")
        self.buf.len = 0
        _frame_into(memoryview(payload).cast("B"), &self.buf)
        with nogil:
            pos = ftell(self.fp)
            written = fwrite(self.buf.data, 1, self.buf.len, self.fp)
        if written != self.buf.len:
            raise OSError(errno, strerror(errno).decode(), self.path)
        return pos

    def tell(self) -> int:
        if self.fp == NULL:
            raise ValueError("tell on a closed record file")
        return ftell(self.fp)

    def flush(self):
        if self.fp != NULL and fflush(self.fp) != 0:
            raise OSError(errno, strerror(errno).decode(), self.path)

    def close(self):
        if self.fp != NULL:
            rc = fclose(self.fp)
            self.fp = NULL
            if rc != 0:
                raise OSError(errno, strerror(errno).decode(), self.path)

    def __dealloc__(self):
        if self.fp != NULL:
            fclose(self.fp)
        fr_buf_free(&self.buf)
