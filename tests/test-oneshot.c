/* IOMUX_ONESHOT: the watcher stops itself just before its callback runs;
 * iomux_watch_start() re-arms it. Native on epoll (EPOLLONESHOT), emulated
 * on select and poll. */
#include "harness.h"

typedef struct rec {
    int calls;
    unsigned last;
    int active_in_cb; /* iomux_watch_active() inside the last call */
    int rearm;        /* re-arm from the callback with these events (0: no) */
    int drain;
} rec;

static void rec_cb(iomux_watch *w, unsigned revents) {
    rec *r = w->data;
    r->calls++;
    r->last = revents;
    r->active_in_cb = iomux_watch_active(w);
    if (r->drain) drain(w->fd);
    if (r->rearm) {
        CHECK_OK(iomux_watch_start(w, (unsigned)r->rearm));
        CHECK_EQ(iomux_watch_active(w), 1);
    }
}

static void watch_rec(iomux_loop *loop, iomux_watch *w, rec *r, int fd) {
    memset(r, 0, sizeof(*r));
    iomux_watch_init(loop, w, fd, rec_cb);
    w->data = r;
}

static void test_oneshot_fires_once(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    unix_pair(p);
    watch_rec(loop, &w, &r, p[0]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ONESHOT));
    CHECK_EQ(iomux_watch_active(&w), 1);
    CHECK_EQ(iomux_loop_alive(loop), 1);
    spin(loop, 5);
    CHECK_EQ(r.calls, 0);

    write_all(p[1], "abc", 3);
    spin(loop, 1);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.last, IOMUX_IN);
    CHECK_EQ(r.active_in_cb, 0); /* stopped just before the callback */
    CHECK_EQ(iomux_watch_active(&w), 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    /* The data is still there; nothing more is reported. */
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(bytes_pending(p[0]), 3);
    write_all(p[1], "d", 1);
    spin(loop, 5);
    CHECK_EQ(r.calls, 1);

    /* Re-armed from outside: reported again (still readable). */
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ONESHOT));
    spin(loop, 5);
    CHECK_EQ(r.calls, 2);
    CHECK_EQ(iomux_watch_active(&w), 0);

    /* A oneshot watcher stopped before it fires never fires. */
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ONESHOT));
    CHECK_OK(iomux_watch_stop(&w));
    spin(loop, 5);
    CHECK_EQ(r.calls, 2);

    /* OUT works the same way. */
    CHECK_OK(iomux_watch_start(&w, IOMUX_OUT | IOMUX_ONESHOT));
    spin(loop, 5);
    CHECK_EQ(r.calls, 3);
    CHECK_EQ(r.last, IOMUX_OUT);
    CHECK_EQ(iomux_watch_active(&w), 0);
    close_pair(p);
    test_loop_free(loop);
}

static void test_oneshot_rearm_in_callback(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2], i;
    unix_pair(p);
    watch_rec(loop, &w, &r, p[0]);
    r.rearm = IOMUX_IN | IOMUX_ONESHOT;
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ONESHOT));
    spin(loop, 3);
    CHECK_EQ(r.calls, 0);
    write_all(p[1], "x", 1);
    /* Never drained, re-armed in every call: one call per iteration. */
    for (i = 1; i <= 6; i++) {
        spin(loop, 1);
        CHECK_EQ(r.calls, i);
        CHECK_EQ(r.last, IOMUX_IN);
        CHECK_EQ(r.active_in_cb, 0);
        CHECK_EQ(iomux_watch_active(&w), 1);
    }
    /* Stop re-arming: one last call, then silence. */
    r.rearm = 0;
    spin(loop, 1);
    CHECK_EQ(r.calls, 7);
    CHECK_EQ(iomux_watch_active(&w), 0);
    spin(loop, 10);
    CHECK_EQ(r.calls, 7);
    CHECK_EQ(bytes_pending(p[0]), 1);
    /* Drained and re-armed: quiet until new data. */
    r.drain = 1;
    r.rearm = IOMUX_IN | IOMUX_ONESHOT;
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ONESHOT));
    spin(loop, 1);
    CHECK_EQ(r.calls, 8);
    spin(loop, 10);
    CHECK_EQ(r.calls, 8);
    write_all(p[1], "y", 1);
    spin(loop, 3);
    CHECK_EQ(r.calls, 9);
    CHECK_EQ(iomux_watch_active(&w), 1);
    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

/* What re-arming costs in interest updates (iomux_loop_stats). epoll: the
 * kernel disarmed the fd, so a re-arm is one epoll_ctl(MOD), and letting it
 * lapse costs nothing (the disarmed fd stays in the set). select/poll: the
 * emulated oneshot stops the watcher; re-arming from the callback restarts it,
 * which costs one update too (a restarted watcher is marked FD_FRESH: the
 * core cannot know whether the fd was closed and reused meanwhile), and
 * letting it lapse costs one (the fd leaves the wait set). */
static void test_oneshot_rearm_cost(void) {
    iomux_loop *loop = test_loop();
    int native = test_native_et(loop); /* epoll, uring: the kernel disarms it */
    iomux_watch w;
    rec r;
    int p[2], i;
    uint64_t u;
    unix_pair(p);
    watch_rec(loop, &w, &r, p[0]);
    r.rearm = IOMUX_IN | IOMUX_ONESHOT;
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ONESHOT));
    spin(loop, 1); /* the start itself: applied */
    u = test_updates(loop);
    spin(loop, 3);
    CHECK_EQ(test_updates(loop) - u, 0);

    write_all(p[1], "x", 1);
    spin(loop, 1); /* first report; re-armed in the callback */
    CHECK_EQ(r.calls, 1);
    u = test_updates(loop);
    for (i = 0; i < 10; i++) spin(loop, 1); /* each: apply re-arm, report, re-arm */
    CHECK_EQ(r.calls, 11);
    CHECK_EQ(test_updates(loop) - u, 10); /* one per re-arm, on every backend */

    /* Let it lapse. */
    r.rearm = 0;
    spin(loop, 1); /* applies the last re-arm, reports, does not re-arm */
    CHECK_EQ(r.calls, 12);
    u = test_updates(loop);
    spin(loop, 3);
    CHECK_EQ(test_updates(loop) - u, native ? 0 : 1);
    CHECK_EQ(r.calls, 12);

    /* Re-armed from outside after it lapsed: one update. */
    u = test_updates(loop);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ONESHOT));
    spin(loop, 1);
    CHECK_EQ(test_updates(loop) - u, 1);
    CHECK_EQ(r.calls, 13);
    close_pair(p);
    test_loop_free(loop);
}

static void test_oneshot_et(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    char buf[8];
    tcp_pair(p);
    watch_rec(loop, &w, &r, p[1]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET | IOMUX_ONESHOT));
    CHECK_EQ(w.events, IOMUX_IN | IOMUX_ET | IOMUX_ONESHOT);
    spin(loop, 3);
    CHECK_EQ(r.calls, 0);
    write_all(p[0], "a", 1);
    run_until_calls(loop, &r.calls, 1, 2000);
    CHECK_EQ(r.last, IOMUX_IN);
    CHECK_EQ(r.active_in_cb, 0);
    CHECK_EQ(iomux_watch_active(&w), 0);
    /* Oneshot: new data does not fire a stopped watcher. */
    write_all(p[0], "b", 1);
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);

    /* Re-armed: a new interest re-evaluates readiness (as epoll_ctl MOD
     * does), so the unread data is reported once more, then silence. */
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET | IOMUX_ONESHOT));
    run_until_calls(loop, &r.calls, 2, 2000);
    CHECK_EQ(iomux_watch_active(&w), 0);
    spin(loop, 20);
    CHECK_EQ(r.calls, 2);

    /* Drained, re-armed: quiet; new data: reported once. */
    CHECK_EQ(read(p[1], buf, sizeof(buf)), 2);
    CHECK(memcmp(buf, "ab", 2) == 0);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET | IOMUX_ONESHOT));
    spin(loop, 20);
    CHECK_EQ(r.calls, 2);
    CHECK_EQ(iomux_watch_active(&w), 1);
    write_all(p[0], "c", 1);
    run_until_calls(loop, &r.calls, 3, 2000);
    spin(loop, 20);
    CHECK_EQ(r.calls, 3);
    CHECK_EQ(iomux_watch_active(&w), 0);
    close_pair(p);
    test_loop_free(loop);
}

/* After a oneshot fired (and was not re-armed) nothing is started: the loop
 * frees at once, and RUN_DEFAULT returns. */
static void test_oneshot_loop_free(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    unix_pair(p);
    watch_rec(loop, &w, &r, p[0]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ONESHOT));
    write_all(p[1], "x", 1);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(iomux_watch_active(&w), 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    CHECK_EQ(iomux_loop_free(loop), 0);
    close_pair(p);
}

int main(void) {
    RUN(test_oneshot_fires_once);
    RUN(test_oneshot_rearm_in_callback);
    RUN(test_oneshot_rearm_cost);
    RUN(test_oneshot_et);
    RUN(test_oneshot_loop_free);
    return 0;
}
