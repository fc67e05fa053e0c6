/* The latency histogram (see hist.h): bucket arithmetic and read-out. It
 * lives apart from the load generator so that tests/test-load-hist.c can
 * check its precision on synthetic data. */
#include "hist.h"

#include <math.h>
#include <string.h>

#define SUB_COUNT (1u << HIST_SUB_BITS)

static unsigned index_of(uint64_t v) {
    unsigned e, shift;
    if (v < SUB_COUNT) return (unsigned)v;
    if (v >> HIST_MAX_BITS) v = (UINT64_C(1) << HIST_MAX_BITS) - 1;
    e = 63u - (unsigned)__builtin_clzll(v);
    shift = e - HIST_SUB_BITS;
    return ((shift + 1) << HIST_SUB_BITS) + (unsigned)((v >> shift) - SUB_COUNT);
}

/* The midpoint of bucket i (its lowest value for the exact ones). */
static uint64_t middle_of(unsigned i) {
    unsigned b = i >> HIST_SUB_BITS, shift;
    uint64_t lo;
    if (b == 0) return i;
    shift = b - 1;
    lo = (uint64_t)(SUB_COUNT + (i & (SUB_COUNT - 1))) << shift;
    return lo + (((UINT64_C(1) << shift) - 1) >> 1);
}

void hist_init(hist *h) {
    memset(h, 0, sizeof(*h));
}

void hist_record_n(hist *h, uint64_t v, uint64_t n) {
    if (n == 0) return;
    if (h->count == 0 || v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->count += n;
    h->sum += v * n;
    h->bucket[index_of(v)] += n;
}

void hist_merge(hist *dst, const hist *src) {
    unsigned i;
    if (src->count == 0) return;
    if (dst->count == 0 || src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    for (i = 0; i < HIST_BUCKETS; i++) dst->bucket[i] += src->bucket[i];
}

uint64_t hist_percentile(const hist *h, double p) {
    uint64_t rank, seen = 0, v;
    unsigned i;
    double x;
    if (h->count == 0) return 0;
    if (p >= 100.0) return h->max;
    /* ceil(p% of count), forgiving the rounding of p / 100 (0.99 * 1000
     * is 990.0000000000001 in binary floating point). */
    x = p / 100.0 * (double)h->count;
    rank = p <= 0.0 ? 1 : (uint64_t)ceil(x - x * 1e-12);
    if (rank < 1) rank = 1;
    if (rank > h->count) rank = h->count;
    for (i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) break;
    }
    v = middle_of(i < HIST_BUCKETS ? i : HIST_BUCKETS - 1);
    if (v < h->min) v = h->min;
    if (v > h->max) v = h->max;
    return v;
}

uint64_t hist_max(const hist *h) {
    return h->max;
}

double hist_mean(const hist *h) {
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

uint64_t hist_count(const hist *h) {
    return h->count;
}
