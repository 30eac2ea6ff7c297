#include "check.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "status.h"

static int say(char *msg, size_t cap, int status, const char *what)
{
    snprintf(msg, cap, "%s", what);
    return status;
}

/* ---------------------------------------------------------------- JPEG */
static int is_sof(uint8_t m)
{
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* After an SOS header: the entropy-coded data runs to the next marker that is not a stuffed
 * 0xFF00 or a restart marker. Returns the offset of that marker's 0xFF, or len if it never comes. */
static size_t skip_entropy(const uint8_t *d, size_t i, size_t len)
{
    for (;;) {
        const uint8_t *p = i < len ? memchr(d + i, 0xFF, len - i) : NULL;
        if (!p)
            return len;
        size_t at = (size_t)(p - d);
        i = at + 1;
        while (i < len && d[i] == 0xFF)   /* fill bytes */
            i++;
        if (i >= len)
            return len;
        if (d[i] != 0x00 && !(d[i] >= 0xD0 && d[i] <= 0xD7))
            return i - 1;
        i++;
    }
}

static int check_jpeg(const uint8_t *d, size_t len, char *msg, size_t cap)
{
    size_t i = 2;   /* after SOI */
    int frame = 0, scans = 0;
    for (;;) {
        while (i < len && d[i] != 0xFF)   /* extraneous bytes: libjpeg warns and goes on */
            i++;
        while (i < len && d[i] == 0xFF)
            i++;
        if (i >= len)
            return say(msg, cap, FR_SKIP_TRUNCATED, "the JPEG data ends before its EOI marker");
        uint8_t m = d[i++];
        if (m == 0xD9) {
            if (!scans)
                return say(msg, cap, FR_SKIP_CORRUPT, "the JPEG data ends (EOI) before any image scan");
            return FR_OK;
        }
        if (m == 0xD8)
            return say(msg, cap, FR_SKIP_CORRUPT, "a second SOI marker inside the JPEG data");
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7))
            continue;   /* not a segment: no length follows */
        if (len - i < 2)
            return say(msg, cap, FR_SKIP_TRUNCATED, "the JPEG data ends inside a marker segment");
        size_t seg = (size_t)d[i] << 8 | d[i + 1];
        if (seg < 2)
            return say(msg, cap, FR_SKIP_CORRUPT, "a JPEG marker segment with a length below 2");
        if (len - i < seg)
            return say(msg, cap, FR_SKIP_TRUNCATED, "the JPEG data ends inside a marker segment");
        i += seg;
        if (is_sof(m))
            frame = 1;
        if (m == 0xDA) {
            if (!frame)
                return say(msg, cap, FR_SKIP_CORRUPT, "a JPEG scan (SOS) before any frame header (SOFn)");
            scans++;
            i = skip_entropy(d, i, len);
            if (i >= len)
                return say(msg, cap, FR_SKIP_TRUNCATED, "the JPEG data ends inside the image data, before EOI");
        }
    }
}

/* ---------------------------------------------------------------- PNG */
/* Slicing-by-8: eight 256-entry tables, eight bytes a step (several times the byte-wise speed;
 * the IDAT CRCs are the whole cost of checking a PNG). */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            crc_table[t][n] = crc_table[0][crc_table[t - 1][n] & 0xFF] ^ (crc_table[t - 1][n] >> 8);
}

uint32_t fr_crc32(const uint8_t *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    while (len >= 8) {
        uint32_t lo = c ^ ((uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                           (uint32_t)data[3] << 24);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][data[4]] ^ crc_table[2][data[5]] ^
            crc_table[1][data[6]] ^ crc_table[0][data[7]];
        data += 8;
        len -= 8;
    }
    while (len--)
        c = crc_table[0][(c ^ *data++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

static int check_png(const uint8_t *d, size_t len, char *msg, size_t cap)
{
    size_t i = sizeof PNG_SIGNATURE;
    int idat = 0;
    for (int first = 1;; first = 0) {
        if (len - i < 12)
            return say(msg, cap, FR_SKIP_TRUNCATED, "the PNG data ends before its IEND chunk");
        uint32_t n = be32(d + i);
        const uint8_t *type = d + i + 4;
        if (n > 0x7FFFFFFFu)
            return say(msg, cap, FR_SKIP_CORRUPT, "a PNG chunk length above 2^31-1");
        if (len - i - 12 < n)
            return say(msg, cap, FR_SKIP_TRUNCATED, "the PNG data ends inside a chunk, before IEND");
        if (fr_crc32(type, (size_t)n + 4) != be32(d + i + 8 + n)) {
            snprintf(msg, cap, "the CRC of a PNG %.4s chunk is wrong", (const char *)type);
            for (char *c = msg; *c; c++)   /* the type is 4 bytes of the file: keep the message printable */
                if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7E)
                    *c = '?';
            return FR_SKIP_CORRUPT;
        }
        if (first && memcmp(type, "IHDR", 4))
            return say(msg, cap, FR_SKIP_CORRUPT, "the PNG data does not start with an IHDR chunk");
        if (!memcmp(type, "IDAT", 4))
            idat = 1;
        if (!memcmp(type, "IEND", 4))
            return idat ? FR_OK : say(msg, cap, FR_SKIP_CORRUPT, "the PNG data holds no image data (IDAT)");
        i += 12 + (size_t)n;
    }
}

/* ---------------------------------------------------------------- dispatch */
static int starts(const uint8_t *d, size_t len, const char *magic, size_t n)
{
    return len >= n && !memcmp(d, magic, n);
}

int fr_check_whole(const uint8_t *d, size_t len, char *msg, size_t cap)
{
    msg[0] = 0;
    if (len >= 2 && d[0] == 0xFF && d[1] == 0xD8)
        return check_jpeg(d, len, msg, cap);
    if (starts(d, len, (const char *)PNG_SIGNATURE, sizeof PNG_SIGNATURE))
        return check_png(d, len, msg, cap);
    if (starts(d, len, "GIF87a", 6) || starts(d, len, "GIF89a", 6) || starts(d, len, "BM", 2) ||
        (starts(d, len, "RIFF", 4) && len >= 12 && !memcmp(d + 8, "WEBP", 4)) ||
        starts(d, len, "II*\0", 4) || starts(d, len, "MM\0*", 4) ||
        (len >= 3 && d[0] == 'P' && d[1] >= '1' && d[1] <= '6' && (d[2] == ' ' || d[2] == '\t' ||
                                                                   d[2] == '\n' || d[2] == '\r')))
        return FR_OK;   /* GIF, BMP, WebP, TIFF, PPM: stored on their signature */
    return say(msg, cap, FR_SKIP_NOT_AN_IMAGE,
               "not a JPEG, PNG, GIF, BMP, WebP, TIFF or PPM file (--pass-through-unchecked stores any bytes)");
}
