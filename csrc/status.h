/* Outcome of packing one image. One place owns the skip reasons: Python shows
 * fr_status_name() in PREFIX.skipped.tsv and in the summary. */
#ifndef FASTREC_STATUS_H
#define FASTREC_STATUS_H

typedef enum {
    FR_OK = 0,
    FR_NEEDS_FALLBACK,       /* not a JPEG: Python decodes it with the fallback library */
    FR_SKIP_READ_ERROR,      /* the file cannot be opened or read */
    FR_SKIP_EMPTY,           /* zero bytes */
    FR_SKIP_FILE_TOO_LARGE,  /* more bytes than --max-bytes */
    FR_SKIP_TOO_MANY_PIXELS, /* header claims more pixels than --max-pixels (bomb) */
    FR_SKIP_TOO_MANY_SCANS,  /* progressive JPEG with more scans than --max-scans */
    FR_SKIP_TRUNCATED,       /* data ends before the image does */
    FR_SKIP_CORRUPT,         /* libjpeg rejected the data */
    FR_SKIP_UNSUPPORTED,     /* valid but not decodable here (e.g. 12-bit, lossless) */
    FR_SKIP_OUTPUT_TOO_LARGE,/* output side would exceed FR_JPEG_MAX_SIDE (encode.h) */
    FR_SKIP_RECORD_TOO_LARGE,/* record would reach RecordIO's 2^29-byte limit */
    FR_SKIP_NO_MEMORY,
    FR_SKIP_NOT_REGULAR,     /* a folder, FIFO, socket or device: never opened for reading */
    FR_SKIP_NOT_AN_IMAGE,    /* --pass-through: the bytes are no image format fastrec knows */
    FR_STATUS_COUNT
} fr_status;

static inline const char *fr_status_name(int s)
{
    static const char *const names[FR_STATUS_COUNT] = {
        "ok", "needs-fallback", "read-error", "empty-file", "file-too-large", "too-many-pixels",
        "too-many-scans", "truncated", "corrupt", "unsupported", "output-too-large",
        "record-too-large", "out-of-memory", "not-a-regular-file", "not-an-image",
    };
    return (s >= 0 && s < FR_STATUS_COUNT) ? names[s] : "unknown";
}

#define FR_MESSAGE_LEN 200

#endif
