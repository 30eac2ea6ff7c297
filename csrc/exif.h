/* EXIF orientation: the one tag of an APP1 "Exif" block that changes the pixels we output. */
#ifndef FASTREC_EXIF_H
#define FASTREC_EXIF_H

#include <stddef.h>
#include <stdint.h>

/* Orientation (1..8) from an APP1 payload starting with "Exif\0\0"; 1 when absent or invalid. */
int fr_exif_orientation(const uint8_t *app1, size_t len);

#endif
