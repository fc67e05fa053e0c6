/* A log-linear latency histogram (the HdrHistogram idea, in one fixed
 * array): values below 2^HIST_SUB_BITS are counted exactly; above, each
 * power-of-two range [2^e, 2^(e+1)) is split into 2^HIST_SUB_BITS equal
 * sub-buckets. So recording is O(1) with no allocation, and a percentile
 * read back is within 1/2^(HIST_SUB_BITS+1) = 1/256 (0.4%) of the exact
 * value. Values are nanoseconds; anything from 2^HIST_MAX_BITS on (about
 * 1100 s) lands in the last bucket; the maximum, count and mean are exact.
 *
 * Percentiles use the nearest-rank definition: percentile(p) is the value
 * of rank ceil(p/100 * count) (at least 1) in sorted order, as the bucket
 * holding that value reports it: the bucket's midpoint, clamped to the
 * exact minimum and maximum. percentile(100) is the exact maximum. */
#ifndef IOMUX_LOAD_HIST_H
#define IOMUX_LOAD_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_MAX_BITS 40
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) << HIST_SUB_BITS)

typedef struct hist {
    uint64_t count, sum, min, max;
    uint64_t bucket[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
/* Records value v, n times. */
void hist_record_n(hist *h, uint64_t v, uint64_t n);
static inline void hist_record(hist *h, uint64_t v) {
    hist_record_n(h, v, 1);
}
/* Adds every value of src to dst. */
void hist_merge(hist *dst, const hist *src);
/* p in [0, 100]; 0 when the histogram is empty. */
uint64_t hist_percentile(const hist *h, double p);
uint64_t hist_max(const hist *h);
double hist_mean(const hist *h);
uint64_t hist_count(const hist *h);

#endif
