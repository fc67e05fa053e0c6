/* fd watchers, level-triggered: start/stop/update, argument errors, stopping
 * and freeing from callbacks, fd reuse inside a batch, phase-4 errors
 * (regular files on epoll), and the coalescing of interest changes. */

#include "harness.h"

typedef struct rec {
    int calls;
    unsigned last; /* revents of the last call */
    unsigned seen; /* every revents bit seen */
    int drain;     /* read to EAGAIN in the callback */
    int stop_self; /* stop the watcher in the callback */
    int active_in_cb;
} rec;

static void rec_cb(iomux_watch *w, unsigned revents) {
    rec *r = w->data;
    r->calls++;
    r->last = revents;
    r->seen |= revents;
    r->active_in_cb = iomux_watch_active(w);
    if (r->drain) drain(w->fd);
    if (r->stop_self) CHECK_OK(iomux_watch_stop(w));
}

static void watch_rec(iomux_loop *loop, iomux_watch *w, rec *r, int fd) {
    memset(r, 0, sizeof(*r));
    iomux_watch_init(loop, w, fd, rec_cb);
    w->data = r;
}

static int readable_now(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    CHECK_SYS(poll(&p, 1, 0));
    return (p.revents & POLLIN) != 0;
}

static uint64_t events(iomux_loop *loop) {
    iomux_stats s;
    iomux_loop_stats(loop, &s);
    return s.events;
}

/* Opens a new socketpair whose first fd has the number `want` (which the
 * caller just closed); returns that fd and stores its peer in *peer. */
static int reopen_as(int want, int *peer) {
    int p[2];
    unix_pair(p);
    if (p[0] != want && p[1] == want) {
        int t = p[0];
        p[0] = p[1];
        p[1] = t;
    }
    if (p[0] != want) {
        CHECK_SYS(dup2(p[0], want));
        close(p[0]);
        p[0] = want;
    }
    set_nonblock(want);
    *peer = p[1];
    return p[0];
}

/* ---- start / stop / update ---------------------------------------------- */

static void test_start_stop_update(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    unix_pair(p);
    watch_rec(loop, &w, &r, p[0]);
    CHECK_EQ(iomux_watch_active(&w), 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);

    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    CHECK_EQ(iomux_watch_active(&w), 1);
    CHECK_EQ(iomux_loop_alive(loop), 1);
    CHECK_EQ(w.events, IOMUX_IN);
    spin(loop, 5); /* writable, but OUT is not requested; nothing to read */
    CHECK_EQ(r.calls, 0);

    /* Adding OUT: reported (level-triggered: every iteration), IN is not. */
    CHECK_OK(iomux_watch_update(&w, IOMUX_IN | IOMUX_OUT));
    CHECK_EQ(w.events, IOMUX_IN | IOMUX_OUT);
    spin(loop, 1);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.last, IOMUX_OUT);
    spin(loop, 2);
    CHECK_EQ(r.calls, 3);
    CHECK_EQ(r.seen, IOMUX_OUT);

    /* Back to IN only: OUT is no longer reported. */
    CHECK_OK(iomux_watch_update(&w, IOMUX_IN));
    spin(loop, 5);
    CHECK_EQ(r.calls, 3);

    /* IN when data arrives, with exactly IN. */
    write_all(p[1], "x", 1);
    spin(loop, 1);
    CHECK_EQ(r.calls, 4);
    CHECK_EQ(r.last, IOMUX_IN);
    CHECK_EQ(drain(p[0]), 1);

    /* Stop: inactive, not alive; a second stop is a no-op; update refuses. */
    CHECK_OK(iomux_watch_stop(&w));
    CHECK_EQ(iomux_watch_active(&w), 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    CHECK_EQ(iomux_watch_stop(&w), 0);
    CHECK_EQ(iomux_watch_update(&w, IOMUX_IN), -EINVAL);
    CHECK_EQ(iomux_watch_active(&w), 0);
    write_all(p[1], "y", 1);
    spin(loop, 5);
    CHECK_EQ(r.calls, 4);

    /* Restart: the pending byte is reported again. */
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    spin(loop, 1);
    CHECK_EQ(r.calls, 5);
    CHECK_EQ(r.last, IOMUX_IN);
    CHECK_OK(iomux_watch_stop(&w));
    close(p[0]);
    close(p[1]);
    test_loop_free(loop);
}

static void test_level_triggered(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2], i;
    char buf[8];
    unix_pair(p);
    watch_rec(loop, &w, &r, p[0]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    write_all(p[1], "abc", 3);
    /* Not drained: reported in every iteration. */
    for (i = 1; i <= 5; i++) {
        spin(loop, 1);
        CHECK_EQ(r.calls, i);
        CHECK_EQ(r.last, IOMUX_IN);
    }
    CHECK_EQ(read(p[0], buf, sizeof(buf)), 3);
    CHECK(memcmp(buf, "abc", 3) == 0);
    /* Drained: silent. */
    spin(loop, 5);
    CHECK_EQ(r.calls, 5);
    /* A callback that drains: one call per write. */
    r.drain = 1;
    for (i = 0; i < 3; i++) {
        write_all(p[1], "z", 1);
        spin(loop, 3);
        CHECK_EQ(r.calls, 6 + i);
    }
    CHECK_OK(iomux_watch_stop(&w));
    close(p[0]);
    close(p[1]);
    test_loop_free(loop);
}

static void test_start_errors(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w, w2, bad;
    rec r, r2, rb;
    int p[2], rc;
    unix_pair(p);
    watch_rec(loop, &w, &r, p[0]);

    CHECK_EQ(iomux_watch_start(&w, 0), -EINVAL);
    CHECK_EQ(iomux_watch_start(&w, IOMUX_ET), -EINVAL);      /* no IN/OUT */
    CHECK_EQ(iomux_watch_start(&w, IOMUX_ONESHOT), -EINVAL); /* no IN/OUT */
    CHECK_EQ(iomux_watch_start(&w, IOMUX_ET | IOMUX_ONESHOT), -EINVAL);
    CHECK_EQ(iomux_watch_start(&w, IOMUX_IN | (1u << 6)), -EINVAL);
    CHECK_EQ(iomux_watch_start(&w, IOMUX_OUT | (1u << 31)), -EINVAL);
    /* ERR and HUP are "reported only", not interest. */
    CHECK_EQ(iomux_watch_start(&w, IOMUX_IN | IOMUX_ERR), -EINVAL);
    CHECK_EQ(iomux_watch_start(&w, IOMUX_IN | IOMUX_HUP), -EINVAL);
    CHECK_EQ(iomux_watch_active(&w), 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);

    watch_rec(loop, &bad, &rb, -1);
    CHECK_EQ(iomux_watch_start(&bad, IOMUX_IN), -EBADF);
    CHECK_EQ(iomux_watch_active(&bad), 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);

    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    CHECK_EQ(iomux_watch_start(&w, IOMUX_IN), 0); /* same watcher: an update */
    watch_rec(loop, &w2, &r2, p[0]);
    CHECK_EQ(iomux_watch_start(&w2, IOMUX_IN), -EEXIST);
    CHECK_EQ(iomux_watch_start(&w2, IOMUX_OUT), -EEXIST);
    CHECK_EQ(iomux_watch_active(&w2), 0);
    /* A refused update leaves the started watcher as it was. */
    CHECK_EQ(iomux_watch_update(&w, 0), -EINVAL);
    CHECK_EQ(iomux_watch_update(&w, IOMUX_IN | (1u << 7)), -EINVAL);
    CHECK_EQ(iomux_watch_active(&w), 1);
    CHECK_EQ(w.events, IOMUX_IN);

    write_all(p[1], "x", 1);
    spin(loop, 1);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.last, IOMUX_IN);
    CHECK_EQ(r2.calls, 0);

    /* The loop refuses to be freed while a watcher is started. */
    rc = iomux_loop_free(loop);
    CHECK_EQ(rc, -EBUSY);

    /* Once the first stops, the fd is free for another watcher. */
    CHECK_OK(iomux_watch_stop(&w));
    CHECK_OK(iomux_watch_start(&w2, IOMUX_IN));
    spin(loop, 1);
    CHECK_EQ(r2.calls, 1);
    CHECK_EQ(r.calls, 1);
    CHECK_OK(iomux_watch_stop(&w2));
    close(p[0]);
    close(p[1]);
    test_loop_free(loop);
}

/* ---- stopping from callbacks ---------------------------------------------- */

static void test_stop_self_in_callback(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    unix_pair(p);
    watch_rec(loop, &w, &r, p[0]);
    r.stop_self = 1;
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_OUT));
    write_all(p[1], "x", 1);
    spin(loop, 10); /* stays readable and writable: LT would call every time */
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.last, IOMUX_IN | IOMUX_OUT);
    CHECK_EQ(r.active_in_cb, 1);
    CHECK_EQ(iomux_watch_active(&w), 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    close(p[0]);
    close(p[1]);
    test_loop_free(loop);
}

/* Two watchers reported ready by the same wait: whichever callback runs
 * first stops the other, and optionally replaces its fd. */
typedef struct duo {
    iomux_watch w[2];
    int fd[2], peer[2];
    int calls[2];
    int first;      /* index of the watcher whose callback ran first, or -1 */
    int reuse;      /* the first callback also closes the other fd and reuses it */
    iomux_watch c;  /* the watcher started on the reused fd number */
    rec crec;
    int cfd, cpeer;
} duo;

static void duo_cb(iomux_watch *w, unsigned revents) {
    duo *d = w->data;
    int me = (w == &d->w[0]) ? 0 : 1, other = 1 - me;
    CHECK(revents & IOMUX_IN);
    d->calls[me]++;
    drain(w->fd);
    if (d->first >= 0) return;
    d->first = me;
    CHECK_EQ(iomux_watch_active(&d->w[other]), 1);
    CHECK_OK(iomux_watch_stop(&d->w[other]));
    CHECK_EQ(iomux_watch_active(&d->w[other]), 0);
    if (d->reuse) {
        int num = d->fd[other];
        CHECK_SYS(close(num));
        d->cfd = reopen_as(num, &d->cpeer);
        watch_rec(w->loop, &d->c, &d->crec, d->cfd);
        CHECK_OK(iomux_watch_start(&d->c, IOMUX_IN));
    }
}

static void duo_setup(iomux_loop *loop, duo *d, int reuse) {
    int i;
    memset(d, 0, sizeof(*d));
    d->first = -1;
    d->reuse = reuse;
    d->cfd = d->cpeer = -1;
    for (i = 0; i < 2; i++) {
        int p[2];
        unix_pair(p);
        d->fd[i] = p[0];
        d->peer[i] = p[1];
        iomux_watch_init(loop, &d->w[i], p[0], duo_cb);
        d->w[i].data = d;
        CHECK_OK(iomux_watch_start(&d->w[i], IOMUX_IN));
    }
    spin(loop, 1); /* interest applied, nothing ready */
    CHECK_EQ(d->calls[0] + d->calls[1], 0);
    /* Both readable before the single wait that reports them. */
    write_all(d->peer[0], "a", 1);
    write_all(d->peer[1], "b", 1);
    CHECK(readable_now(d->fd[0]));
    CHECK(readable_now(d->fd[1]));
}

static void test_stop_other_same_batch(void) {
    iomux_loop *loop = test_loop();
    duo d;
    uint64_t ev0;
    int victim, i;
    duo_setup(loop, &d, 0);
    ev0 = events(loop);
    spin(loop, 1);
    CHECK_EQ(events(loop) - ev0, 2); /* both were in the batch */
    CHECK(d.first == 0 || d.first == 1);
    victim = 1 - d.first;
    CHECK_EQ(d.calls[d.first], 1);
    CHECK_EQ(d.calls[victim], 0);
    /* The victim's byte is still there: it was ready, and it stays silent. */
    CHECK_EQ(bytes_pending(d.fd[victim]), 1);
    spin(loop, 10);
    CHECK_EQ(d.calls[victim], 0);
    CHECK_EQ(d.calls[d.first], 1);
    CHECK_OK(iomux_watch_stop(&d.w[d.first]));
    for (i = 0; i < 2; i++) {
        close(d.fd[i]);
        close(d.peer[i]);
    }
    test_loop_free(loop);
}

static void test_close_and_reuse_during_batch(void) {
    iomux_loop *loop = test_loop();
    duo d;
    uint64_t ev0;
    int victim, old_num, i;
    char c = 0;
    duo_setup(loop, &d, 1);
    ev0 = events(loop);
    spin(loop, 1);
    CHECK_EQ(events(loop) - ev0, 2);
    CHECK(d.first == 0 || d.first == 1);
    victim = 1 - d.first;
    old_num = d.fd[victim];
    CHECK_EQ(d.cfd, old_num); /* the new fd has the stopped watcher's number */
    CHECK_EQ(d.calls[victim], 0);
    CHECK_EQ(iomux_watch_active(&d.c), 1);
    /* The new fd has nothing to read: the old fd's readiness must not leak. */
    CHECK(!readable_now(d.cfd));
    spin(loop, 10);
    CHECK_EQ(d.crec.calls, 0);
    CHECK_EQ(d.calls[victim], 0);
    /* ...and it does work once data arrives on it. */
    write_all(d.cpeer, "C", 1);
    run_until_calls(loop, &d.crec.calls, 1, 2000);
    CHECK_EQ(d.crec.calls, 1);
    CHECK_EQ(d.crec.last, IOMUX_IN);
    CHECK_EQ(read(d.cfd, &c, 1), 1);
    CHECK_EQ(c, 'C');
    spin(loop, 5);
    CHECK_EQ(d.crec.calls, 1);
    CHECK_OK(iomux_watch_stop(&d.c));
    CHECK_OK(iomux_watch_stop(&d.w[d.first]));
    for (i = 0; i < 2; i++) {
        close(d.fd[i]); /* the victim's number now belongs to cfd */
        close(d.peer[i]);
    }
    close(d.cpeer);
    test_loop_free(loop);
}

/* ---- stop + free() inside callbacks (ASan checks the use-after-free) ------- */

typedef struct freectx {
    iomux_watch *w[2];
    int calls;
} freectx;

/* Stops and frees both watchers, the other one first (it is ready in the
 * same batch), then itself. */
static void free_both_cb(iomux_watch *w, unsigned revents) {
    freectx *f = w->data;
    int i, me = (w == f->w[0]) ? 0 : 1;
    (void)revents;
    f->calls++;
    for (i = 0; i < 2; i++) {
        int k = (me + 1 + i) % 2; /* other, then self */
        CHECK_OK(iomux_watch_stop(f->w[k]));
        free(f->w[k]);
        f->w[k] = NULL;
    }
}

typedef struct selffree {
    int calls;
} selffree;

static void free_self_cb(iomux_watch *w, unsigned revents) {
    selffree *s = w->data;
    (void)revents;
    s->calls++;
    CHECK_OK(iomux_watch_stop(w));
    free(w);
}

static void test_free_in_callback(void) {
    iomux_loop *loop = test_loop();
    freectx f;
    selffree s = {0};
    iomux_watch *w;
    int p[2][2], i;
    uint64_t ev0;

    /* One watcher frees itself; it is LT with data left unread. */
    unix_pair(p[0]);
    w = malloc(sizeof(*w));
    CHECK(w != NULL);
    iomux_watch_init(loop, w, p[0][0], free_self_cb);
    w->data = &s;
    CHECK_OK(iomux_watch_start(w, IOMUX_IN | IOMUX_OUT));
    write_all(p[0][1], "x", 1);
    spin(loop, 5);
    CHECK_EQ(s.calls, 1);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    close(p[0][0]);
    close(p[0][1]);

    /* Two watchers ready in one batch: the first callback frees both. */
    memset(&f, 0, sizeof(f));
    for (i = 0; i < 2; i++) {
        unix_pair(p[i]);
        f.w[i] = malloc(sizeof(iomux_watch));
        CHECK(f.w[i] != NULL);
        iomux_watch_init(loop, f.w[i], p[i][0], free_both_cb);
        f.w[i]->data = &f;
        CHECK_OK(iomux_watch_start(f.w[i], IOMUX_IN));
    }
    spin(loop, 1);
    write_all(p[0][1], "a", 1);
    write_all(p[1][1], "b", 1);
    ev0 = events(loop);
    spin(loop, 1);
    CHECK_EQ(events(loop) - ev0, 2);
    CHECK_EQ(f.calls, 1);
    CHECK(f.w[0] == NULL && f.w[1] == NULL);
    spin(loop, 5);
    CHECK_EQ(f.calls, 1);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    for (i = 0; i < 2; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
    test_loop_free(loop);
}

/* ---- phase-4 errors: a regular file ------------------------------------------ */

#ifndef _WIN32 /* WSAPoll watches sockets only: a regular file is not an fd it takes */

static void test_regular_file(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    char path[] = "/tmp/iomux-test-watch-XXXXXX";
    int fd = mkstemp(path);
    CHECK_SYS(fd);
    CHECK_SYS(unlink(path));
    write_all(fd, "data", 4);
    watch_rec(loop, &w, &r, fd);
    /* The error comes from the kernel in phase 4, not from start. */
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    CHECK_EQ(iomux_watch_error(&w), 0);
    spin(loop, 1);
    if (iomux_loop_backend(loop) == IOMUX_BACKEND_EPOLL) {
        /* epoll_ctl(ADD) refuses a regular file with EPERM: the watcher is
         * stopped and called once with IOMUX_ERR. */
        CHECK_EQ(r.calls, 1);
        CHECK_EQ(r.last, IOMUX_ERR);
        CHECK_EQ(r.active_in_cb, 0);
        CHECK_EQ(iomux_watch_error(&w), -EPERM);
        CHECK_EQ(iomux_watch_active(&w), 0);
        CHECK_EQ(iomux_loop_alive(loop), 0);
        spin(loop, 5);
        CHECK_EQ(r.calls, 1);
        /* A new start clears the error, and fails the same way again. */
        CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
        CHECK_EQ(iomux_watch_error(&w), 0);
        spin(loop, 1);
        CHECK_EQ(r.calls, 2);
        CHECK_EQ(r.last, IOMUX_ERR);
        CHECK_EQ(iomux_watch_error(&w), -EPERM);
        CHECK_EQ(iomux_watch_active(&w), 0);
    } else {
        /* select and poll accept it: a regular file is always readable. */
        CHECK_EQ(r.calls, 1);
        CHECK_EQ(r.last, IOMUX_IN);
        CHECK_EQ(iomux_watch_error(&w), 0);
        CHECK_EQ(iomux_watch_active(&w), 1);
        spin(loop, 4);
        CHECK_EQ(r.calls, 5);
        CHECK_EQ(r.seen, IOMUX_IN);
        CHECK_OK(iomux_watch_stop(&w));
    }
    close(fd);
    test_loop_free(loop);
}
#endif

/* ---- restart after the fd number was reused (epoll: MOD -> ENOENT -> ADD) --- */

static void test_restart_after_fd_reuse(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2], fd, peer, num;
    uint64_t u0;
    char c = 0;
    unix_pair(p);
    num = p[0];
    watch_rec(loop, &w, &r, num);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    spin(loop, 1); /* registered with the backend */

    /* Stop, close, reopen the same number, restart: all before phase 4. On
     * epoll the old registration vanished with the close, so the backend's
     * interest mask "already IN" is stale and only FD_FRESH makes it act. */
    CHECK_OK(iomux_watch_stop(&w));
    close(p[0]);
    close(p[1]);
    fd = reopen_as(num, &peer);
    CHECK_EQ(fd, num);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    u0 = test_updates(loop);
    spin(loop, 3);
    if (iomux_loop_backend(loop) == IOMUX_BACKEND_EPOLL) CHECK_EQ(test_updates(loop) - u0, 1);
    CHECK_EQ(r.calls, 0);
    write_all(peer, "n", 1);
    run_until_calls(loop, &r.calls, 1, 2000);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.last, IOMUX_IN);
    CHECK_EQ(read(fd, &c, 1), 1);
    CHECK_EQ(c, 'n');

    /* The same with a phase 4 (removal) between the stop and the restart. */
    CHECK_OK(iomux_watch_stop(&w));
    spin(loop, 1);
    close(fd);
    close(peer);
    fd = reopen_as(num, &peer);
    CHECK_EQ(fd, num);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    write_all(peer, "m", 1);
    run_until_calls(loop, &r.calls, 2, 2000);
    CHECK_EQ(r.calls, 2);
    CHECK_EQ(read(fd, &c, 1), 1);
    CHECK_EQ(c, 'm');
    spin(loop, 3);
    CHECK_EQ(r.calls, 2);

    CHECK_OK(iomux_watch_stop(&w));
    close(fd);
    close(peer);
    test_loop_free(loop);
}

/* ---- coalescing of interest changes ------------------------------------------ */

static void test_interest_coalescing(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w1, w2;
    rec r1, r2;
    int a[2], b[2];
    uint64_t u;
    unix_pair(a);
    unix_pair(b);
    watch_rec(loop, &w1, &r1, a[0]);
    watch_rec(loop, &w2, &r2, b[0]);
    CHECK_OK(iomux_watch_start(&w1, IOMUX_IN));
    spin(loop, 1);

    u = test_updates(loop);
    spin(loop, 3); /* nothing changed: nothing to apply */
    CHECK_EQ(test_updates(loop) - u, 0);

    /* start + stop before the next iteration: costs nothing. */
    u = test_updates(loop);
    CHECK_OK(iomux_watch_start(&w2, IOMUX_IN | IOMUX_OUT));
    CHECK_OK(iomux_watch_update(&w2, IOMUX_OUT));
    CHECK_OK(iomux_watch_stop(&w2));
    spin(loop, 2);
    CHECK_EQ(test_updates(loop) - u, 0);
    CHECK_EQ(r2.calls, 0);

    /* OUT on and off again before the next run: costs nothing, no OUT. */
    u = test_updates(loop);
    CHECK_OK(iomux_watch_update(&w1, IOMUX_IN | IOMUX_OUT));
    CHECK_OK(iomux_watch_update(&w1, IOMUX_IN));
    CHECK_OK(iomux_watch_update(&w1, IOMUX_IN | IOMUX_OUT));
    CHECK_OK(iomux_watch_update(&w1, IOMUX_IN));
    spin(loop, 2);
    CHECK_EQ(test_updates(loop) - u, 0);
    CHECK_EQ(r1.calls, 0);

    /* OUT on: one update (however often it is set), OUT reported. */
    u = test_updates(loop);
    CHECK_OK(iomux_watch_update(&w1, IOMUX_IN | IOMUX_OUT));
    CHECK_OK(iomux_watch_update(&w1, IOMUX_IN | IOMUX_OUT));
    spin(loop, 1);
    CHECK_EQ(test_updates(loop) - u, 1);
    CHECK_EQ(r1.calls, 1);
    CHECK_EQ(r1.last, IOMUX_OUT);

    /* OUT off: one update, then silence. */
    u = test_updates(loop);
    CHECK_OK(iomux_watch_update(&w1, IOMUX_IN));
    spin(loop, 3);
    CHECK_EQ(test_updates(loop) - u, 1);
    CHECK_EQ(r1.calls, 1);

    /* Stop: one update (removal). */
    u = test_updates(loop);
    CHECK_OK(iomux_watch_stop(&w1));
    spin(loop, 2);
    CHECK_EQ(test_updates(loop) - u, 1);

    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    test_loop_free(loop);
}

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    RUN(test_start_stop_update);
    RUN(test_level_triggered);
    RUN(test_start_errors);
    RUN(test_stop_self_in_callback);
    RUN(test_stop_other_same_batch);
    RUN(test_close_and_reuse_during_batch);
    RUN(test_free_in_callback);
#ifndef _WIN32
    RUN(test_regular_file);
#endif
    RUN(test_restart_after_fd_reuse);
    RUN(test_interest_coalescing);
    return 0;
}
