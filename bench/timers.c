/* bench/timers: what restarting a timer costs — the per-request idle
 * timeout pattern — on iomux's shared heap versus io_uring kernel timeouts
 * (IORING_OP_TIMEOUT armed once, then IORING_OP_TIMEOUT_UPDATE per restart,
 * N per submit). Prints nanoseconds per restart for N live timers. */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "iomux.h"

#define ROUNDS 200

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void never(iomux_timer *t) {
    (void)t;
}

static double heap_ns(int n) {
    iomux_loop *loop;
    iomux_timer *t = calloc((size_t)n, sizeof(*t));
    double t0, t1;
    int i, r;
    if (!t || iomux_loop_new(&loop, NULL) < 0) return -1;
    for (i = 0; i < n; i++) {
        iomux_timer_init(loop, &t[i], never);
        iomux_timer_start(&t[i], 10000, 0);
    }
    t0 = now_ns();
    for (r = 0; r < ROUNDS; r++) {
        for (i = 0; i < n; i++) iomux_timer_start(&t[i], 10000 + (uint64_t)(r % 7), 0);
        iomux_run(loop, IOMUX_RUN_NOWAIT);
    }
    t1 = now_ns();
    for (i = 0; i < n; i++) iomux_timer_stop(&t[i]);
    iomux_loop_free(loop);
    free(t);
    return (t1 - t0) / ((double)n * ROUNDS);
}

static void reap_all(struct io_uring *ring) {
    struct io_uring_cqe *cqes[256];
    unsigned k;
    while ((k = io_uring_peek_batch_cqe(ring, cqes, 256)) > 0) io_uring_cq_advance(ring, k);
}

static double kernel_ns(int n) {
    struct io_uring ring;
    struct __kernel_timespec ts = {10, 0};
    double t0, t1;
    int i, r;
    if (io_uring_queue_init((unsigned)(n < 4096 ? 4096 : n), &ring, 0) < 0) return -1;
    for (i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        if (!sqe) {
            io_uring_submit(&ring);
            sqe = io_uring_get_sqe(&ring);
        }
        io_uring_prep_timeout(sqe, &ts, 0, 0);
        io_uring_sqe_set_data64(sqe, (uint64_t)i + 1);
    }
    io_uring_submit(&ring);
    t0 = now_ns();
    for (r = 0; r < ROUNDS; r++) {
        for (i = 0; i < n; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            if (!sqe) {
                io_uring_submit(&ring);
                reap_all(&ring);
                sqe = io_uring_get_sqe(&ring);
            }
            ts.tv_nsec = r % 7;
            io_uring_prep_timeout_update(sqe, &ts, (uint64_t)i + 1, 0);
            io_uring_sqe_set_data64(sqe, 0);
        }
        io_uring_submit_and_get_events(&ring);
        reap_all(&ring);
    }
    t1 = now_ns();
    io_uring_queue_exit(&ring);
    return (t1 - t0) / ((double)n * ROUNDS);
}

int main(void) {
    static const int counts[] = {100, 1000, 10000};
    size_t i;
    printf("restarting a timer: ns per restart, %d rounds of restarting every live timer\n", ROUNDS);
    printf("%10s %14s %16s %8s\n", "timers", "iomux heap", "kernel timeout", "ratio");
    for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        double h = heap_ns(counts[i]), k = kernel_ns(counts[i]);
        printf("%10d %14.1f %16.1f %7.1fx\n", counts[i], h, k, h > 0 ? k / h : 0);
    }
    return 0;
}
