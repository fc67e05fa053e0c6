/* Two loops on two threads, each repeatedly: open an fd, watch it (or drive
 * it with an op), stop the watcher and close the fd, or iomux_close it, and
 * run an iteration. The kernel must forget an fd before it is closed: once
 * closed, its number may at once be another thread's new file, and a
 * deferred removal (epoll_ctl DEL) would name that file. A regression test:
 * the removal used to run in phase 4, after the close, which TSan reports as
 * a race on the fd; run under -fsanitize=thread by `make test`. */
#include <pthread.h>

#include "harness.h"

#define ROUNDS 3000

static void never_cb(iomux_watch *w, unsigned revents) {
    (void)w;
    (void)revents;
}

static void closed_cb(iomux_op *op) {
    *(int *)op->data = 1;
}

static void *churn(void *arg) {
    iomux_loop *loop = test_loop();
    int i;
    (void)arg;
    for (i = 0; i < ROUNDS; i++) {
        int sv[2], done = 0;
        iomux_watch w;
        iomux_op rx, cl;
        char buf[8];
        unix_pair(sv);
        if (i % 2 == 0) { /* a watcher: stop, then close (documented order) */
            iomux_watch_init(loop, &w, sv[0], never_cb);
            CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
            CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
            CHECK_OK(iomux_watch_stop(&w));
            close(sv[0]);
        } else { /* an op waiting for readiness, then iomux_close */
            rx.data = NULL;
            CHECK_OK(iomux_recv(loop, &rx, sv[0], buf, sizeof(buf), 0, closed_cb));
            rx.data = &done;
            CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
            cl.data = &done;
            CHECK_OK(iomux_close(loop, &cl, sv[0], closed_cb));
        }
        close(sv[1]);
        while (iomux_loop_alive(loop)) CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
    test_loop_free(loop);
    return NULL;
}

static void test_close_race(void) {
    pthread_t a, b;
    CHECK(pthread_create(&a, NULL, churn, NULL) == 0);
    CHECK(pthread_create(&b, NULL, churn, NULL) == 0);
    CHECK(pthread_join(a, NULL) == 0);
    CHECK(pthread_join(b, NULL) == 0);
}

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    RUN(test_close_race);
    return 0;
}
