/* 2,600 UNIX socket pairs, both ends watched: 5,200 fds, numbered far past
 * FD_SETSIZE (1024), on every backend including select (whose bitmaps are
 * sized to the highest fd). Exactly the fds that receive a byte are
 * reported, once each; stopped watchers are never reported. */
#include <sys/resource.h>

#include "harness.h"

#define NPAIRS 2600
#define NFDS (2 * NPAIRS)
#define NPICK 200

typedef struct slot {
    iomux_watch w;
    int fd, peer;
    int calls;
    int expect; /* calls this slot should have had so far */
    unsigned last;
} slot;

static slot *slots;
static int total_calls;

/* Level-triggered; reads the one byte. */
static void slot_cb(iomux_watch *w, unsigned revents) {
    slot *s = w->data;
    char c;
    s->calls++;
    s->last = revents;
    total_calls++;
    CHECK_EQ(read(s->fd, &c, 1), 1);
    CHECK_EQ(c, 'm');
}

static void raise_nofile(void) {
    struct rlimit rl;
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl));
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        CHECK_SYS(setrlimit(RLIMIT_NOFILE, &rl));
        CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl));
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < NFDS + 64) {
        fprintf(stderr, "RLIMIT_NOFILE hard limit %llu < %d: skipped\n",
                (unsigned long long)rl.rlim_max, NFDS + 64);
        exit(TEST_SKIP);
    }
}

/* xorshift32 with a fixed seed: the same 200 fds every run. */
static uint32_t rng_state = 0x9e3779b9u;
static uint32_t rng(void) {
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static void run_until_total(iomux_loop *loop, int n, unsigned ms) {
    uint64_t end = test_ms() + ms;
    while (total_calls < n) {
        if (test_ms() > end) FAIL("timed out after %u ms: %d calls, want %d", ms, total_calls, n);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
}

static void check_expected(void) {
    int i, sum = 0;
    for (i = 0; i < NFDS; i++) {
        if (slots[i].calls != slots[i].expect)
            FAIL("fd %d: %d calls, expected %d", slots[i].fd, slots[i].calls, slots[i].expect);
        if (slots[i].calls) CHECK_EQ(slots[i].last, IOMUX_IN);
        sum += slots[i].expect;
    }
    CHECK_EQ(total_calls, sum);
}

static void test_manyfds(void) {
    iomux_loop *loop = test_loop();
    int i, maxfd = -1, picked = 0, started = 0;
    uint64_t t0 = test_ms();
    slots = calloc(NFDS, sizeof(*slots));
    CHECK(slots != NULL);
    for (i = 0; i < NPAIRS; i++) {
        int p[2];
        unix_pair(p);
        slots[2 * i].fd = p[0];
        slots[2 * i].peer = p[1];
        slots[2 * i + 1].fd = p[1];
        slots[2 * i + 1].peer = p[0];
        if (p[0] > maxfd) maxfd = p[0];
        if (p[1] > maxfd) maxfd = p[1];
    }
    CHECK(maxfd > 1024);
    CHECK(maxfd >= NFDS); /* numbers go well past FD_SETSIZE */
    for (i = 0; i < NFDS; i++) {
        iomux_watch_init(loop, &slots[i].w, slots[i].fd, slot_cb);
        slots[i].w.data = &slots[i];
        CHECK_OK(iomux_watch_start(&slots[i].w, IOMUX_IN));
    }
    spin(loop, 3);
    CHECK_EQ(total_calls, 0);

    /* One byte to the peers of 200 distinct random fds. */
    while (picked < NPICK) {
        slot *s = &slots[rng() % NFDS];
        if (s->expect) continue;
        s->expect = 1;
        write_all(s->peer, "m", 1);
        picked++;
    }
    run_until_total(loop, NPICK, 10000);
    spin(loop, 5);
    check_expected();

    /* Stop every other watcher, then a byte to every fd's peer: only the
     * started half is reported. The stopped half keeps its byte. */
    for (i = 0; i < NFDS; i += 2) CHECK_OK(iomux_watch_stop(&slots[i].w));
    for (i = 0; i < NFDS; i++) {
        write_all(slots[i].peer, "m", 1);
        if (iomux_watch_active(&slots[i].w)) {
            slots[i].expect++;
            started++;
        }
    }
    CHECK_EQ(started, NPAIRS);
    run_until_total(loop, NPICK + NPAIRS, 10000);
    spin(loop, 5);
    check_expected();
    for (i = 0; i < NFDS; i += 2) {
        char c;
        CHECK_EQ(recv(slots[i].fd, &c, 1, MSG_PEEK | MSG_DONTWAIT), 1);
    }

    /* Restart the stopped half: their pending bytes are reported now. */
    for (i = 0; i < NFDS; i += 2) {
        CHECK_OK(iomux_watch_start(&slots[i].w, IOMUX_IN));
        slots[i].expect++;
    }
    run_until_total(loop, NPICK + NFDS, 10000);
    spin(loop, 5);
    check_expected();

    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    for (i = 0; i < NFDS; i++) CHECK_OK(iomux_watch_stop(&slots[i].w));
    for (i = 0; i < NFDS; i++) CHECK_SYS(close(slots[i].fd));
    spin(loop, 1);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
    free(slots);
    fprintf(stderr, "   %s: %d fds (max fd %d) in %llu ms\n", test_backend(), NFDS, maxfd,
            (unsigned long long)(test_ms() - t0));
}

int main(void) {
    raise_nofile();
    RUN(test_manyfds);
    return 0;
}
