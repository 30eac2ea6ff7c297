#include "fingerprint.h"

/* xxHash inlined from the system header. Built for the baseline x86-64 (SSE2), it also compiles
 * its AVX2 kernel under a target attribute, used when the CPU has AVX2 (the same digest, about
 * twice as fast on long inputs): what xxHash's own xxh_x86dispatch.c does, in a few lines. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FR_XXH_DISPATCH 1
#define XXH_DISPATCH_AVX2 1
#define XXH_TARGET_AVX2 __attribute__((__target__("avx2")))
#include <immintrin.h>
#endif
#define XXH_INLINE_ALL
#include <xxhash.h>

#ifdef FR_XXH_DISPATCH
#define FR_XXH_LONG 240   /* above this, XXH3 runs its long-input (vectorised) loop */

static XXH_TARGET_AVX2 uint64_t hash_long_avx2(const void *data, size_t len)
{
    return XXH3_hashLong_64b_internal(data, len, XXH3_kSecret, sizeof(XXH3_kSecret),
                                      XXH3_accumulate_512_avx2, XXH3_scrambleAcc_avx2);
}

uint64_t fr_fingerprint(const void *data, size_t len)
{
    static int avx2 = -1;    /* a benign race: every thread computes the same answer */
    if (avx2 < 0) {
        __builtin_cpu_init();
        avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    if (len > FR_XXH_LONG && avx2)
        return hash_long_avx2(data, len);
    return (uint64_t)XXH3_64bits(len ? data : "", len);
}
#else
uint64_t fr_fingerprint(const void *data, size_t len)
{
    return (uint64_t)XXH3_64bits(len ? data : "", len);
}
#endif
