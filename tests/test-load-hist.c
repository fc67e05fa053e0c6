/* iomux-load's latency histogram (apps/load/hist.c), apart from the
 * program: percentiles of synthetic data sets checked against the exactly
 * computed ones (nearest rank on the sorted values) within the stated
 * relative error, 1/256; count, max and mean exact; merge equal to
 * recording everything in one. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"

#define FAIL(...)                                       \
    do {                                                \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                   \
        fprintf(stderr, "\n");                          \
        exit(1);                                        \
    } while (0)

#define REL_ERR (1.0 / 256)

static const double points[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The value of rank ceil(p% of n) in sorted v[0..n). */
static uint64_t exact(const uint64_t *sorted, size_t n, double p) {
    double x = p / 100.0 * (double)n;
    size_t rank = p <= 0 ? 1 : (size_t)ceil(x - x * 1e-12);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

/* Records v[0..n) and checks every read-out against the exact values. */
static void check_set(const char *name, uint64_t *v, size_t n) {
    static hist h;
    uint64_t max = 0, sum = 0;
    size_t i;
    hist_init(&h);
    for (i = 0; i < n; i++) {
        hist_record(&h, v[i]);
        sum += v[i];
        if (v[i] > max) max = v[i];
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    if (hist_count(&h) != n) FAIL("%s: count %llu, want %zu", name, (unsigned long long)hist_count(&h), n);
    if (hist_max(&h) != max) FAIL("%s: max %llu, want %llu", name, (unsigned long long)hist_max(&h),
                                  (unsigned long long)max);
    if (fabs(hist_mean(&h) - (double)sum / (double)n) > 1e-6 * ((double)sum / (double)n))
        FAIL("%s: mean %f, want %f", name, hist_mean(&h), (double)sum / (double)n);
    for (i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
        uint64_t want = exact(v, n, points[i]), got = hist_percentile(&h, points[i]);
        double err = fabs((double)got - (double)want);
        if (err > REL_ERR * (double)want)
            FAIL("%s: p%g = %llu, exact %llu (error %.4f%% > %.4f%%)", name, points[i], (unsigned long long)got,
                 (unsigned long long)want, 100 * err / (double)want, 100 * REL_ERR);
    }
    fprintf(stderr, "%s: %zu values, p50 %llu p99 %llu max %llu: ok\n", name, n,
            (unsigned long long)hist_percentile(&h, 50), (unsigned long long)hist_percentile(&h, 99),
            (unsigned long long)hist_max(&h));
}

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void) {
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void test_uniform(void) {
    size_t n = 1000000, i;
    uint64_t *v = malloc(n * sizeof(*v));
    for (i = 0; i < n; i++) v[i] = i + 1;
    check_set("uniform 1..1e6", v, n);
    for (i = 0; i < n; i++) v[i] = 1000 * (i + 1); /* 1 us .. 1 s */
    check_set("uniform 1us..1s", v, n);
    free(v);
}

/* Two modes far apart: 50 us (90%) and 20 ms (10%), with jitter. */
static void test_bimodal(void) {
    size_t n = 200000, i;
    uint64_t *v = malloc(n * sizeof(*v));
    for (i = 0; i < n; i++) v[i] = (i % 10 == 9) ? 20000000 + rnd() % 5000000 : 50000 + rnd() % 10000;
    check_set("bimodal", v, n);
    free(v);
}

static void test_single_and_extremes(void) {
    uint64_t one = 123456789, small[3] = {0, 1, 127}, big[2] = {100000000000ull, 7};
    check_set("single value", &one, 1);
    check_set("exact range", small, 3);
    check_set("100 s", big, 2);
}

static void test_empty(void) {
    static hist h;
    hist_init(&h);
    if (hist_count(&h) != 0 || hist_max(&h) != 0 || hist_mean(&h) != 0 || hist_percentile(&h, 50) != 0 ||
        hist_percentile(&h, 100) != 0)
        FAIL("an empty histogram reads other than 0");
}

/* Beyond 2^HIST_MAX_BITS ns: clamped into the last bucket, max exact. */
static void test_huge(void) {
    static hist h;
    uint64_t huge = (UINT64_C(1) << 50) + 5;
    hist_init(&h);
    hist_record(&h, huge);
    hist_record(&h, 10);
    if (hist_max(&h) != huge || hist_count(&h) != 2) FAIL("huge: max or count wrong");
    if (hist_percentile(&h, 50) != 10) FAIL("huge: p50 %llu", (unsigned long long)hist_percentile(&h, 50));
}

static void test_merge(void) {
    static hist a, b, all;
    uint64_t i;
    hist_init(&a);
    hist_init(&b);
    hist_init(&all);
    for (i = 0; i < 100000; i++) {
        uint64_t v = rnd() % 100000000;
        hist_record(i % 3 ? &a : &b, v);
        hist_record(&all, v);
    }
    hist_record_n(&a, 42, 1000);
    hist_record_n(&all, 42, 1000);
    hist_merge(&a, &b);
    if (memcmp(&a, &all, sizeof(a)) != 0) FAIL("merge differs from recording in one histogram");
    hist_init(&b);
    hist_merge(&b, &all);
    if (memcmp(&b, &all, sizeof(b)) != 0) FAIL("merge into an empty histogram differs");
}

int main(void) {
    test_empty();
    test_single_and_extremes();
    test_uniform();
    test_bimodal();
    test_huge();
    test_merge();
    fprintf(stderr, "test-load-hist: ok\n");
    return 0;
}
