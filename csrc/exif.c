#include "exif.h"

#include <string.h>

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int fr_exif_orientation(const uint8_t *app1, size_t len)
{
    enum { TAG_ORIENTATION = 0x0112, TYPE_SHORT = 3 };
    if (len < 6 + 8 || memcmp(app1, "Exif\0\0", 6) != 0)
        return 1;
    const uint8_t *tiff = app1 + 6;
    size_t n = len - 6;
    int le;
    if (memcmp(tiff, "II*\0", 4) == 0)
        le = 1;
    else if (memcmp(tiff, "MM\0*", 4) == 0)
        le = 0;
    else
        return 1;
    uint32_t ifd = rd32(tiff + 4, le);
    if (ifd > n - 2)
        return 1;
    unsigned count = rd16(tiff + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = ifd + 2 + (size_t)i * 12;
        if (e + 12 > n)
            return 1;
        if (rd16(tiff + e, le) != TAG_ORIENTATION)
            continue;
        if (rd16(tiff + e + 2, le) != TYPE_SHORT)
            return 1;
        unsigned v = rd16(tiff + e + 8, le);
        return (v >= 1 && v <= 8) ? (int)v : 1;
    }
    return 1;
}
