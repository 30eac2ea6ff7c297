#include "fingerprint.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t fr_fingerprint(const void *data, size_t len)
{
    return (uint64_t)XXH3_64bits(len ? data : "", len);
}
