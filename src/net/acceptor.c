/* The acceptor: a multishot accept op, restarted after the errors that end
 * it. Running out of fds (EMFILE/ENFILE) must not make the loop spin: the
 * listening socket stays readable while connections wait in its backlog, so
 * restarting the accept at once would fail again at once, forever. Instead
 * accepting pauses on a timer; if it fails again before any connection got
 * through, the backlog is shed with a reserve fd (libuv's and nginx's
 * trick) so the waiting peers are told instead of left hanging. */
#include <errno.h>

#include "conn.h" /* iomux__net_nonblock, and sys.h */

enum { A_IDLE = 0, A_RUN, A_PAUSED, A_STOPPING };

/* How many pending connections one shedding closes at most: a bound, so a
 * connect storm cannot hold the loop here. */
#define SHED_MAX 1024

static void accept_cb(iomux_op *op);

static int open_spare(void) {
#ifdef _WIN32
    return -1; /* Windows has no per-process fd limit a reserve fd would relieve */
#else
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
#endif
}

static int start_op(iomux_acceptor *a) {
    a->internal.op.data = a;
    return iomux_accept(a->loop, &a->internal.op, a->fd, IOMUX_OP_MULTISHOT, accept_cb);
}

static void drop_spare(iomux_acceptor *a) {
    if (a->internal.spare >= 0) iomux__fd_close(a->internal.spare);
    a->internal.spare = -1;
}

/* The acceptor ends for good: a->on_accept(a, err) may free it, so this is
 * the caller's last use of a. */
static void fail(iomux_acceptor *a, int err) {
    drop_spare(a);
    iomux_timer_stop(&a->internal.pause);
    a->internal.state = A_IDLE;
    a->on_accept(a, err);
}

static void finish_stop(iomux_acceptor *a) {
    iomux_acceptor_stop_cb cb = a->internal.on_stop;
    drop_spare(a);
    iomux_timer_stop(&a->internal.pause);
    a->internal.state = A_IDLE;
    if (cb) cb(a);
}

static void hand_out(iomux_acceptor *a, iomux_fd fd) {
    if (a->internal.state != A_RUN) {
        iomux__sock_close(fd); /* it came after the stop: never handed out */
        return;
    }
    a->accepted++;
    a->internal.streak = 0;
    a->on_accept(a, fd);
}

/* Out of fds again right after a pause. First one plain accept4: the error
 * may be stale (queued before fds came back), and then this one succeeds;
 * returns 1 if so. Otherwise frees the reserve fd for a moment, so that the
 * pending connections can be accepted, and closes each at once. */
static int shed(iomux_acceptor *a) {
    int i, fd = iomux__accept_nb(a->fd);
    if (fd >= 0) {
        hand_out(a, fd);
        return 1;
    }
    if ((fd != -EMFILE && fd != -ENFILE) || a->internal.spare < 0) return 0;
    drop_spare(a);
    for (i = 0; i < SHED_MAX; i++) {
        fd = iomux__accept_nb(a->fd);
        if (fd < 0) {
            if (fd == -EINTR || fd == -ECONNABORTED) continue;
            break; /* EAGAIN: the backlog is empty; EMFILE: someone took the fd */
        }
        iomux__sock_close(fd);
        a->shed++;
    }
    a->internal.spare = open_spare();
    return 0;
}

static void pause_accepting(iomux_acceptor *a, int err) {
    int rc;
    if (++a->internal.streak >= 2 && (err == -EMFILE || err == -ENFILE) && shed(a)) {
        if (a->internal.state != A_RUN) return; /* stopped from on_accept */
        rc = start_op(a); /* fds are back: no pause */
        if (rc < 0) fail(a, rc);
        return;
    }
    a->paused++;
    rc = iomux_timer_start(&a->internal.pause, IOMUX_ACCEPT_PAUSE_MS, 0);
    if (rc < 0) {
        fail(a, rc);
        return;
    }
    a->internal.state = A_PAUSED;
}

static void pause_cb(iomux_timer *t) {
    iomux_acceptor *a = t->data;
    int rc;
    if (a->internal.spare < 0) a->internal.spare = open_spare();
    a->internal.state = A_RUN;
    rc = start_op(a);
    if (rc < 0) fail(a, rc);
}

/* The final callback of the accept op: why it ended decides what next. */
static void accept_final(iomux_acceptor *a, int err) {
    int rc;
    switch (err) {
    case -ECONNABORTED: case -EINTR: case -EPROTO: case -EPERM:
        rc = start_op(a); /* that one connection's problem: go on */
        if (rc < 0) fail(a, rc);
        return;
    case -EMFILE: case -ENFILE: case -ENOBUFS: case -ENOMEM:
        pause_accepting(a, err);
        return;
    default:
        fail(a, err);
        return;
    }
}

static void accept_cb(iomux_op *op) {
    iomux_acceptor *a = op->data;
    if (op->result >= 0) {
        hand_out(a, (iomux_fd)op->result);
        if (op->flags & IOMUX_OP_MORE) return;
    }
    if (a->internal.state == A_STOPPING) {
        /* unless on_accept just stopped it: then a zero timeout runs on op */
        if (!iomux_op_active(op)) finish_stop(a);
        return;
    }
    if (a->internal.state != A_RUN) return; /* ended from inside on_accept */
    accept_final(a, op->result >= 0 ? -ECONNABORTED : (int)op->result); /* a single result: go on */
}

/* The zero timeout iomux_acceptor_stop starts when no accept is in flight. */
static void stopped_cb(iomux_op *op) {
    finish_stop(op->data);
}

int iomux_acceptor_start(iomux_loop *loop, iomux_acceptor *a, iomux_fd lfd, iomux_accept_cb on_accept) {
    int rc;
    if (!loop || !a || !on_accept || lfd < 0) return -EINVAL;
    /* shed() calls accept itself: on a blocking socket it would block */
    if ((rc = iomux__net_nonblock(lfd)) < 0) return rc;
    a->loop = loop;
    a->fd = lfd;
    a->on_accept = on_accept;
    a->accepted = a->paused = a->shed = 0;
    a->internal.on_stop = NULL;
    a->internal.streak = 0;
    iomux_timer_init(loop, &a->internal.pause, pause_cb);
    a->internal.pause.data = a;
    rc = start_op(a);
    if (rc < 0) return rc;
    a->internal.spare = open_spare();
    a->internal.state = A_RUN;
    return 0;
}

int iomux_acceptor_stop(iomux_acceptor *a, iomux_acceptor_stop_cb on_stop) {
    if (!a || (a->internal.state != A_RUN && a->internal.state != A_PAUSED)) return -EINVAL;
    a->internal.on_stop = on_stop;
    a->internal.state = A_STOPPING;
    if (iomux_op_active(&a->internal.op)) {
        iomux_cancel(&a->internal.op); /* its final callback finishes the stop */
        return 0;
    }
    /* Paused, or called from on_accept between two accept ops: nothing in
     * flight. A zero timeout on the idle op brings on_stop from the loop,
     * as callbacks never run inside the call. */
    iomux_timer_stop(&a->internal.pause);
    a->internal.op.data = a;
    if (iomux_timeout(a->loop, &a->internal.op, 0, stopped_cb) < 0) finish_stop(a);
    return 0;
}

int iomux_acceptor_active(const iomux_acceptor *a) {
    return a->internal.state != A_IDLE;
}
