#include "resize.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#include <immintrin.h>
#include <tmmintrin.h>
#define FR_HAVE_SSE2 1
#endif

#define PREC 14                    /* fixed-point bits of a coefficient */
#define ROUND (1 << (PREC - 1))

typedef struct {
    int taps;                      /* coefficient slots per output sample */
    int *first;                    /* first source index of each output sample */
    int *count;                    /* taps actually used by each output sample (no zero ends) */
    int16_t *k;                    /* `taps` coefficient slots per output sample */
} axis_plan;

static double sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x *= 3.14159265358979323846;
    return sin(x) / x;
}

static double filter_eval(fr_filter f, double x)
{
    x = fabs(x);
    switch (f) {
    case FR_FILTER_TRIANGLE:
        return x < 1.0 ? 1.0 - x : 0.0;
    case FR_FILTER_BICUBIC: {    /* Catmull-Rom (a = -0.5): sharp, little ringing */
        const double a = -0.5;
        if (x < 1.0)
            return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
        if (x < 2.0)
            return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
        return 0.0;
    }
    case FR_FILTER_BOX:
        return x < 0.5 ? 1.0 : 0.0;
    case FR_FILTER_LANCZOS:
    case FR_FILTER_AUTO:          /* resolved per axis before we get here */
    case FR_FILTER_AUTO_CHROMA:
        return x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0;
    }
    return 0.0;
}

static double filter_support(fr_filter f)
{
    return f == FR_FILTER_BOX ? 0.5 : f == FR_FILTER_TRIANGLE ? 1.0 : f == FR_FILTER_BICUBIC ? 2.0 : 3.0;
}

static fr_filter axis_filter(fr_filter f, double len, int out)
{
    if (f == FR_FILTER_AUTO)
        return len > out ? FR_FILTER_LANCZOS : FR_FILTER_BICUBIC;
    if (f == FR_FILTER_AUTO_CHROMA)
        return len > out ? FR_FILTER_BOX : FR_FILTER_TRIANGLE;
    return f;
}

/* Coefficient slots per output sample: the widest window, rounded up to a multiple of 4 so
 * SIMD kernels can read four taps at a time (the extra slots hold zeros). */
static int axis_taps(fr_filter f, double len, int out)
{
    f = axis_filter(f, len, out);
    double scale = len / out;
    int taps = (int)ceil(filter_support(f) * (scale > 1.0 ? scale : 1.0)) * 2 + 1;
    return (taps + 3) & ~3;
}

static size_t axis_bytes(int taps, int out)
{
    return (((size_t)out * 2 * sizeof(int) + (size_t)out * taps * sizeof(int16_t) + 15) & ~(size_t)15)
           + (size_t)taps * sizeof(double);
}

/* Point the plan at tables laid out in `mem`: first[out], count[out], then k[out * taps]. */
static void axis_views(uint8_t *mem, axis_plan *p, int taps, int out)
{
    p->taps = taps;
    p->first = (int *)mem;
    p->count = p->first + out;
    p->k = (int16_t *)(mem + (size_t)out * 2 * sizeof(int));
}

/* Tap tables mapping `out` samples onto the source interval [x0, x0+len) of a `size` axis,
 * laid out in `mem` (axis_bytes() long). */
static void plan_axis(uint8_t *mem, axis_plan *p, int size, double x0, double len, int out, fr_filter f)
{
    double scale = len / out;
    double fscale = scale > 1.0 ? scale : 1.0;        /* widen the filter when shrinking */
    int taps = axis_taps(f, len, out);
    f = axis_filter(f, len, out);
    double support = filter_support(f) * fscale;
    axis_views(mem, p, taps, out);
    double *w = (double *)(mem + axis_bytes(taps, out) - (size_t)taps * sizeof(double));
    for (int i = 0; i < out; i++) {
        double center = x0 + (i + 0.5) * scale;
        int lo = (int)floor(center - support);
        int hi = (int)ceil(center + support);
        if (lo < 0)
            lo = 0;
        if (hi > size)
            hi = size;
        if (hi - lo > taps)
            hi = lo + taps;
        if (hi <= lo) {           /* degenerate box at the very edge: nearest pixel */
            lo = center < 0 ? 0 : (int)center >= size ? size - 1 : (int)center;
            hi = lo + 1;
        }
        double sum = 0.0;
        for (int j = lo; j < hi; j++) {
            w[j - lo] = filter_eval(f, (j + 0.5 - center) / fscale);
            sum += w[j - lo];
        }
        if (sum == 0.0) {
            w[0] = sum = 1.0;
            hi = lo + 1;
        }
        int16_t *k = p->k + (size_t)i * taps;
        /* Normalise so that flat areas stay flat; put the rounding residue on the biggest tap. */
        int total = 0, biggest = 0, n = hi - lo;
        for (int j = 0; j < n; j++) {
            k[j] = (int16_t)lrint(w[j] / sum * (1 << PREC));
            total += k[j];
            if (k[j] > k[biggest])
                biggest = j;
        }
        k[biggest] += (int16_t)((1 << PREC) - total);
        /* Drop taps that rounded to zero at either end: kernels read exactly `count` pixels. */
        int skip = 0;
        while (skip < n - 1 && k[skip] == 0)
            skip++;
        while (n - 1 > skip && k[n - 1] == 0)
            n--;
        memmove(k, k + skip, (size_t)(n - skip) * sizeof *k);
        memset(k + (n - skip), 0, (size_t)(taps - (n - skip)) * sizeof *k);
        p->first[i] = lo + skip;
        p->count[i] = n - skip;
    }
}

static inline uint8_t clip8(int v)
{
    v >>= PREC;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

#ifdef FR_HAVE_SSE2
/* Horizontal pass, 4 bytes per pixel, SSSE3: one 16-byte load covers four taps, and two byte
 * shuffles lay them out as (r0 r1 g0 g1 b0 b1 x0 x1) int16 pairs for multiply-adds. Reads up to
 * three pixels past a sample's last tap (zero coefficients), hence FR_RESIZE_SLACK. */
__attribute__((target("ssse3")))
static void hpass4_ssse3(const axis_plan *p, const uint8_t *src, uint8_t *dst, int dw)
{
    const __m128i lo_pair = _mm_setr_epi8(0, -1, 4, -1, 1, -1, 5, -1, 2, -1, 6, -1, 3, -1, 7, -1);
    const __m128i hi_pair = _mm_setr_epi8(8, -1, 12, -1, 9, -1, 13, -1, 10, -1, 14, -1, 11, -1, 15, -1);
    for (int i = 0; i < dw; i++) {
        const uint8_t *s = src + (size_t)p->first[i] * 4;
        const int16_t *k = p->k + (size_t)i * p->taps;
        int n = p->count[i];
        __m128i acc = _mm_set1_epi32(ROUND);
        for (int j = 0; j < n; j += 4) {
            __m128i px = _mm_loadu_si128((const __m128i *)(s + 4 * j));
            int32_t k01, k23;
            memcpy(&k01, k + j, 4);
            memcpy(&k23, k + j + 2, 4);
            acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_shuffle_epi8(px, lo_pair), _mm_set1_epi32(k01)));
            acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_shuffle_epi8(px, hi_pair), _mm_set1_epi32(k23)));
        }
        acc = _mm_srai_epi32(acc, PREC);
        acc = _mm_packs_epi32(acc, acc);
        acc = _mm_packus_epi16(acc, acc);
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(acc);
        memcpy(dst + 4 * i, &v, 4);
    }
}
#endif

/* Horizontal pass, 4 bytes per pixel (SSE2 baseline, or plain C elsewhere). */
static void hpass4(const axis_plan *p, const uint8_t *src, uint8_t *dst, int dw)
{
#ifdef FR_HAVE_SSE2
    if (__builtin_cpu_supports("ssse3")) {
        hpass4_ssse3(p, src, dst, dw);
        return;
    }
#endif
    for (int i = 0; i < dw; i++) {
        const uint8_t *s = src + (size_t)p->first[i] * 4;
        const int16_t *k = p->k + (size_t)i * p->taps;
        int n = p->count[i];
#ifdef FR_HAVE_SSE2
        __m128i acc = _mm_set1_epi32(ROUND);
        const __m128i zero = _mm_setzero_si128();
        int j = 0;
        for (; j + 1 < n; j += 2) {
            /* two pixels -> (r0 r1 g0 g1 b0 b1 x0 x1) as int16, then a pairwise multiply-add */
            __m128i px = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(s + 4 * j)), zero);
            px = _mm_unpacklo_epi16(px, _mm_srli_si128(px, 8));
            __m128i kk = _mm_set1_epi32((int)((uint32_t)(uint16_t)k[j] | (uint32_t)(uint16_t)k[j + 1] << 16));
            acc = _mm_add_epi32(acc, _mm_madd_epi16(px, kk));
        }
        if (j < n) {
            uint32_t one;
            memcpy(&one, s + 4 * j, 4);
            __m128i px = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128((int)one), zero), zero);
            acc = _mm_add_epi32(acc, _mm_madd_epi16(px, _mm_set1_epi32((uint16_t)k[j])));
        }
        acc = _mm_srai_epi32(acc, PREC);
        acc = _mm_packs_epi32(acc, acc);
        acc = _mm_packus_epi16(acc, acc);
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(acc);
        memcpy(dst + 4 * i, &v, 4);
#else
        int a0 = ROUND, a1 = ROUND, a2 = ROUND, a3 = ROUND;
        for (int j = 0; j < n; j++) {
            a0 += k[j] * s[4 * j];
            a1 += k[j] * s[4 * j + 1];
            a2 += k[j] * s[4 * j + 2];
            a3 += k[j] * s[4 * j + 3];
        }
        dst[4 * i] = clip8(a0);
        dst[4 * i + 1] = clip8(a1);
        dst[4 * i + 2] = clip8(a2);
        dst[4 * i + 3] = clip8(a3);
#endif
    }
}

#ifdef FR_HAVE_SSE2
/* The AVX2 form of vrow's SIMD loop: 32 output bytes per step (unpack and pack both work within
 * 128-bit lanes, so the byte order comes out right). Returns how many bytes it did. */
__attribute__((target("avx2")))
static int vrow_avx2(const int16_t *k, int n, const uint8_t *rows, size_t stride, uint8_t *dst, int nbytes)
{
    const __m256i zero = _mm256_setzero_si256();
    int x = 0;
    for (; x + 32 <= nbytes; x += 32) {
        __m256i a0 = _mm256_set1_epi32(ROUND), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j += 2) {
            __m256i r0 = _mm256_loadu_si256((const __m256i *)(rows + (size_t)j * stride + x));
            __m256i r1 = zero;
            int16_t k1 = 0;
            if (j + 1 < n) {
                r1 = _mm256_loadu_si256((const __m256i *)(rows + (size_t)(j + 1) * stride + x));
                k1 = k[j + 1];
            }
            __m256i kk = _mm256_set1_epi32((int)((uint32_t)(uint16_t)k[j] | (uint32_t)(uint16_t)k1 << 16));
            __m256i lo = _mm256_unpacklo_epi8(r0, r1), hi = _mm256_unpackhi_epi8(r0, r1);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi8(lo, zero), kk));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi8(lo, zero), kk));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi8(hi, zero), kk));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi8(hi, zero), kk));
        }
        __m256i lo16 = _mm256_packs_epi32(_mm256_srai_epi32(a0, PREC), _mm256_srai_epi32(a1, PREC));
        __m256i hi16 = _mm256_packs_epi32(_mm256_srai_epi32(a2, PREC), _mm256_srai_epi32(a3, PREC));
        _mm256_storeu_si256((__m256i *)(dst + x), _mm256_packus_epi16(lo16, hi16));
    }
    return x;
}
#endif

/* Vertical pass for one output row: a weighted sum of source rows. The SIMD loop keeps 16
 * output bytes in registers across all taps, taking two source rows per multiply-add. */
static void vrow(const axis_plan *p, int i, const uint8_t *src, int row0, size_t stride, uint8_t *dst,
                 int nbytes)
{
    const int16_t *k = p->k + (size_t)i * p->taps;
    const uint8_t *rows = src + (size_t)(p->first[i] - row0) * stride;   /* src holds rows from row0 on */
    int n = p->count[i], x = 0;
#ifdef FR_HAVE_SSE2
    if (__builtin_cpu_supports("avx2"))
        x = vrow_avx2(k, n, rows, stride, dst, nbytes);
    const __m128i zero = _mm_setzero_si128();
    for (; x + 16 <= nbytes; x += 16) {
        __m128i a0 = _mm_set1_epi32(ROUND), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j += 2) {
            __m128i r0 = _mm_loadu_si128((const __m128i *)(rows + (size_t)j * stride + x));
            __m128i r1 = zero;
            int16_t k1 = 0;
            if (j + 1 < n) {
                r1 = _mm_loadu_si128((const __m128i *)(rows + (size_t)(j + 1) * stride + x));
                k1 = k[j + 1];
            }
            __m128i kk = _mm_set1_epi32((int)((uint32_t)(uint16_t)k[j] | (uint32_t)(uint16_t)k1 << 16));
            __m128i lo = _mm_unpacklo_epi8(r0, r1), hi = _mm_unpackhi_epi8(r0, r1);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi8(lo, zero), kk));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi8(lo, zero), kk));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi8(hi, zero), kk));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi8(hi, zero), kk));
        }
        __m128i lo16 = _mm_packs_epi32(_mm_srai_epi32(a0, PREC), _mm_srai_epi32(a1, PREC));
        __m128i hi16 = _mm_packs_epi32(_mm_srai_epi32(a2, PREC), _mm_srai_epi32(a3, PREC));
        _mm_storeu_si128((__m128i *)(dst + x), _mm_packus_epi16(lo16, hi16));
    }
#endif
    for (; x < nbytes; x++) {
        int a = ROUND;
        for (int j = 0; j < n; j++)
            a += k[j] * rows[(size_t)j * stride + x];
        dst[x] = clip8(a);
    }
}

/* dst[x][y] = src[y][x] for a w x h byte image (8x8 SSE2 blocks, plain C at the edges). */
static void transpose8(const uint8_t *src, size_t ss, int w, int h, uint8_t *dst, size_t ds)
{
    int y = 0;
#ifdef FR_HAVE_SSE2
    for (; y + 8 <= h; y += 8) {
        int x = 0;
        for (; x + 8 <= w; x += 8) {
            const uint8_t *s = src + (size_t)y * ss + x;
#define ROW(i) _mm_loadl_epi64((const __m128i *)(s + (i) * ss))
            __m128i a0 = _mm_unpacklo_epi8(ROW(0), ROW(1)), a1 = _mm_unpacklo_epi8(ROW(2), ROW(3));
            __m128i a2 = _mm_unpacklo_epi8(ROW(4), ROW(5)), a3 = _mm_unpacklo_epi8(ROW(6), ROW(7));
#undef ROW
            __m128i b0 = _mm_unpacklo_epi16(a0, a1), b1 = _mm_unpackhi_epi16(a0, a1);
            __m128i b2 = _mm_unpacklo_epi16(a2, a3), b3 = _mm_unpackhi_epi16(a2, a3);
            __m128i c[4] = {_mm_unpacklo_epi32(b0, b2), _mm_unpackhi_epi32(b0, b2),
                            _mm_unpacklo_epi32(b1, b3), _mm_unpackhi_epi32(b1, b3)};
            uint8_t *d = dst + (size_t)x * ds + y;
            for (int i = 0; i < 4; i++) {
                _mm_storel_epi64((__m128i *)(d + (size_t)(2 * i) * ds), c[i]);
                _mm_storel_epi64((__m128i *)(d + (size_t)(2 * i + 1) * ds), _mm_srli_si128(c[i], 8));
            }
        }
        for (; x < w; x++)
            for (int i = 0; i < 8; i++)
                dst[(size_t)x * ds + y + i] = src[(size_t)(y + i) * ss + x];
    }
#endif
    for (; y < h; y++)
        for (int x = 0; x < w; x++)
            dst[(size_t)x * ds + y] = src[(size_t)y * ss + x];
}

/* Rows of src that the vertical taps of `py` touch: [*lo, *hi). */
static void rows_touched(const axis_plan *py, int dh, int *lo, int *hi)
{
    *lo = py->first[0];
    *hi = py->first[0] + py->count[0];
    for (int y = 1; y < dh; y++) {
        *lo = py->first[y] < *lo ? py->first[y] : *lo;
        *hi = py->first[y] + py->count[y] > *hi ? py->first[y] + py->count[y] : *hi;
    }
}

/* The tap tables of an axis geometry: from the cache, or planned into its least recently used
 * slot (so two lookups in a row never evict each other). -1 when out of memory. */
static int axis_plan_for(fr_resizer *r, axis_plan *p, int size, double x0, double len, int out, fr_filter f)
{
    int taps = axis_taps(f, len, out);
    fr_axis_cache *slot = &r->axes[0];
    for (int i = 0; i < FR_AXIS_CACHE; i++) {
        fr_axis_cache *c = &r->axes[i];
        if (c->used && c->size == size && c->out == out && c->x0 == x0 && c->len == len && c->filter == (int)f) {
            c->used = ++r->clock;
            axis_views(c->mem.data, p, taps, out);
            return 0;
        }
        if (c->used < slot->used)
            slot = c;
    }
    slot->used = 0;       /* empty until planned */
    slot->mem.len = 0;
    if (fr_buf_reserve(&slot->mem, axis_bytes(taps, out)))
        return -1;
    plan_axis(slot->mem.data, p, size, x0, len, out, f);
    slot->size = size, slot->out = out, slot->x0 = x0, slot->len = len, slot->filter = (int)f;
    slot->used = ++r->clock;
    return 0;
}

int fr_resize(fr_resizer *r, const fr_image_in *src, double x0, double y0, double bw, double bh,
              uint8_t *dst, size_t dst_stride, int dw, int dh, fr_filter filter)
{
    int ch = src->channels;
    axis_plan px, py;
    if (axis_plan_for(r, &px, src->width, x0, bw, dw, filter) ||
        axis_plan_for(r, &py, src->height, y0, bh, dh, filter))
        return -1;
    int ylo, yhi;
    rows_touched(&py, dh, &ylo, &yhi);
    int rows = yhi - ylo;
    r->temp.len = 0;
    if (ch == 1) {
        /* One byte per pixel has no cheap horizontal SIMD form, but the vertical kernel is fast:
         * transpose the rows needed, filter the former columns as rows, transpose back. */
        size_t n = (size_t)src->width * rows, m = (size_t)dw * rows;
        if (fr_buf_reserve(&r->temp, n + 2 * m + FR_RESIZE_SLACK))
            return -1;
        uint8_t *cols = r->temp.data, *hcols = cols + n, *hrows = hcols + m;
        transpose8(src->px + (size_t)ylo * src->stride, src->stride, src->width, rows, cols, (size_t)rows);
        for (int x = 0; x < dw; x++)
            vrow(&px, x, cols, 0, (size_t)rows, hcols + (size_t)x * rows, rows);
        transpose8(hcols, (size_t)rows, rows, dw, hrows, (size_t)dw);
        for (int y = 0; y < dh; y++)
            vrow(&py, y, hrows, ylo, (size_t)dw, dst + (size_t)y * dst_stride, dw);
        return 0;
    }
    /* The horizontal pass is the costly one: run it on whichever side has fewer rows. */
    int hfirst = src->height <= dh;
    size_t tmp_stride = (size_t)(hfirst ? dw : src->width) * ch;
    if (fr_buf_reserve(&r->temp, tmp_stride * (hfirst ? (size_t)rows : 1) + FR_RESIZE_SLACK))
        return -1;
    uint8_t *tmp = r->temp.data;
    if (hfirst) {
        for (int y = ylo; y < yhi; y++)
            hpass4(&px, src->px + (size_t)y * src->stride, tmp + (size_t)(y - ylo) * tmp_stride, dw);
        for (int y = 0; y < dh; y++)
            vrow(&py, y, tmp, ylo, tmp_stride, dst + (size_t)y * dst_stride, dw * ch);
    } else {
        for (int y = 0; y < dh; y++) {   /* one row of vertical output at a time, then across */
            vrow(&py, y, src->px, 0, src->stride, tmp, src->width * ch);
            hpass4(&px, tmp, dst + (size_t)y * dst_stride, dw);
        }
    }
    return 0;
}

void fr_resizer_free(fr_resizer *r)
{
    for (int i = 0; i < FR_AXIS_CACHE; i++)
        fr_buf_free(&r->axes[i].mem);
    fr_buf_free(&r->temp);
}
