/* The Proactor core: operations started with a caller-owned iomux_op and
 * completed by one final callback (iomux.h states the promises).
 *
 * Every op that touches a socket's stream sits in its fd's queue: readers
 * (accept, recv) in fe->rq, writers (connect, send, sendfile) in fe->wq. Only
 * the head of a queue is ever in progress, so completions come in start
 * order on every backend (io_uring alone would not order two sends on one
 * socket). Driving a queue (drive) moves its head forward: on uring it
 * submits the head to the kernel; otherwise it tries the system call at once
 * unless the fd is known not to be ready (FD_RBLOCKED/WBLOCKED, set on
 * EAGAIN, cleared by readiness), and waits for readiness only after EAGAIN.
 * Driving never runs user code: results are queued on the pending queue and
 * delivered in phase 3 or 6. A uring CQE is delivered at once, from the
 * backend's wait (phase 6). */
#include <errno.h>
#include <string.h>

#include "loop.h"
#include "sys.h"

static void deliver_run(iomux__pend *p);

static int is_writer(int type) {
    return type == OPT_CONNECT || type == OPT_SEND || type == OPT_SENDFILE;
}

static int is_queued_type(int type) {
    return type <= OPT_SENDFILE;
}

/* ---- per-fd FIFO: a circular list through op->internal.link ------------------ */

static iomux_op *link_op(iomux__node *n) {
    return iomux__container_of(n, iomux_op, internal.link);
}

static iomux_op **queue_of(iomux_loop *loop, iomux_op *op) {
    iomux__fdent *fe = &loop->fds[op->internal.fd];
    return is_writer(op->internal.type) ? &fe->wq : &fe->rq;
}

static void q_push(iomux_op **head, iomux_op *op) {
    iomux__node *n = &op->internal.link, *h;
    if (!*head) {
        n->next = n->prev = n;
        *head = op;
        return;
    }
    h = &(*head)->internal.link;
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void dequeue(iomux_loop *loop, iomux_op *op) {
    iomux__node *n = &op->internal.link;
    iomux_op **head;
    if (!n->next) return;
    head = queue_of(loop, op);
    if (n->next == n) {
        *head = NULL;
    } else {
        if (*head == op) *head = link_op(n->next);
        n->prev->next = n->next;
        n->next->prev = n->prev;
    }
    n->next = n->prev = NULL;
}

/* ---- results ------------------------------------------------------------------------ */

/* Queues a result for delivery (phase 3 or 6). A final result leaves the fd
 * queue now, so the next op can go while this callback waits its turn. */
static void complete(iomux_loop *loop, iomux_op *op, int64_t res, int more) {
    if (op->internal.state == OP_QUEUED && iomux__q_linked(&op->internal.pend.node)) {
        iomux__pend_cancel(&op->internal.pend); /* it waited for a pool buffer */
        loop->fds[op->internal.fd].flags &= (uint16_t)~FD_BUFWAIT;
    }
    op->result = res;
    if (more) {
        op->internal.oflags |= OF_MORE;
    } else {
        op->internal.oflags &= (uint16_t)~OF_MORE;
        dequeue(loop, op);
    }
    op->internal.state = OP_DONE;
    op->internal.pend.run = deliver_run;
    iomux__pend_queue(loop, &op->internal.pend);
}

/* The final callback: the op is the caller's again when it runs, so the
 * callback may free it or start it anew. */
static void final_callback(iomux_loop *loop, iomux_op *op) {
    op->internal.state = OP_IDLE;
    op->flags = 0;
    /* A pool recv hands over a buffer only with data: a multishot's last
     * MORE buffer must not show again in its final (cancelled) callback. */
    if ((op->internal.oflags & OF_POOLBUF) && op->result <= 0) op->buf = NULL;
    loop->active--;
    op->cb(op);
}

static void drive_dir(iomux_loop *loop, iomux_fd fd, int writer);

/* The kernel gave op back (final result, or to be driven again): it leaves
 * the list of ops being cancelled (its pend node, free while in the kernel). */
static void leave_kernel(iomux_op *op, int state) {
    if (op->internal.state == OP_KERNEL && iomux__q_linked(&op->internal.pend.node))
        iomux__q_remove(&op->internal.pend.node);
    op->internal.state = (uint8_t)state;
}

int iomux__op_cancelling(const iomux_loop *loop, const iomux_op *op) {
    const iomux__node *n;
    for (n = loop->cancelling.next; n != &loop->cancelling; n = n->next)
        if (n == &op->internal.pend.node) return 1;
    return 0;
}

/* Final result from the kernel or the pool: deliver now, then let the
 * next op of the fd go. */
static void finish(iomux_loop *loop, iomux_op *op, int64_t res) {
    iomux_fd fd = op->internal.fd;
    int type = op->internal.type;
    leave_kernel(op, OP_IDLE);
    dequeue(loop, op);
    op->result = res;
    final_callback(loop, op);
    if (is_queued_type(type)) drive_dir(loop, fd, is_writer(type));
}

/* Emulated multishot: deliver, try again at once, deliver again... up to a
 * bound, so an accept storm is served in batches without starving others. */
static void deliver_more(iomux_loop *loop, iomux_op *op) {
    iomux_fd fd = op->internal.fd;
    int writer = is_writer(op->internal.type), budget = 64;
    while (budget-- > 0) {
        op->flags = IOMUX_OP_MORE;
        op->cb(op);
        op->internal.oflags &= (uint16_t)~OF_MORE;
        if (op->internal.oflags & OF_CANCEL) {
            dequeue(loop, op);
            op->result = -ECANCELED;
            final_callback(loop, op);
            drive_dir(loop, fd, writer);
            return;
        }
        op->internal.state = OP_QUEUED;
        drive_dir(loop, fd, writer);
        if (op->internal.state != OP_DONE || !(op->internal.oflags & OF_MORE)) return;
        if (budget == 0) return; /* the result just queued waits for a later phase */
        iomux__pend_cancel(&op->internal.pend); /* another result: deliver it now */
    }
}

static void deliver_run(iomux__pend *p) {
    iomux_op *op = iomux__container_of(p, iomux_op, internal.pend);
    if (op->internal.oflags & OF_MORE) deliver_more(op->loop, op);
    else final_callback(op->loop, op);
}

/* ---- driving a queue ------------------------------------------------------------------- */

/* Hands op to the backend if it can do it. 1: the kernel has it (or it
 * failed and its error is queued); 0: emulate it. */
static int submit_native(iomux_loop *loop, iomux_op *op) {
    int rc;
    if (!loop->backend->submit) {
        op->internal.oflags |= OF_EMUL;
        return 0;
    }
    rc = loop->backend->submit(loop, op);
    if (rc == 0) {
        op->internal.state = OP_KERNEL;
        return 1;
    }
    if (rc == -ENOTSUP) {
        op->internal.oflags |= OF_EMUL;
        return 0;
    }
    complete(loop, op, rc, 0);
    return 1;
}

/* A recv into a pool buffer waits while the pool is empty: on the pool's
 * waiter list, with its fd out of the wait set (no spinning on LT). */
static int wait_for_buffer(iomux_loop *loop, iomux_op *op) {
    if (!(op->internal.oflags & OF_POOLBUF) || loop->pool.nfree > 0) return 0;
    loop->fds[op->internal.fd].flags |= FD_BUFWAIT;
    iomux__buf_wait(loop, op);
    return 1;
}

static void drive_dir(iomux_loop *loop, iomux_fd fd, int writer) {
    iomux__fdent *fe = &loop->fds[fd];
    uint16_t blocked = writer ? FD_WBLOCKED : FD_RBLOCKED;
    for (;;) {
        iomux_op *op = writer ? fe->wq : fe->rq;
        int64_t res = 0;
        int r;
        if (!op || op->internal.state != OP_QUEUED) break;
        if (op->internal.oflags & OF_CANCEL) { /* cancelled behind others: its turn now */
            complete(loop, op, -ECANCELED, 0);
            continue;
        }
        /* Waiting for a pool buffer concerns the reader only: a send must go
         * on (it may be what gives a buffer back). */
        if ((fe->flags & FD_CLOSING) || (!writer && (fe->flags & FD_BUFWAIT))) break;
        if (wait_for_buffer(loop, op)) break;
        if (!(op->internal.oflags & OF_EMUL) && submit_native(loop, op)) {
            if (op->internal.state == OP_KERNEL) break;
            continue; /* failed at submission: its error is queued */
        }
        if (fe->flags & blocked) break;
        r = iomux__emul_attempt(loop, op, &res);
        if (r == EMUL_AGAIN) {
            fe->flags |= blocked;
            break;
        }
        if (r == EMUL_NOBUF) {
            wait_for_buffer(loop, op);
            break;
        }
        complete(loop, op, res, r == EMUL_MORE);
    }
    /* Phase 4 compares what the ops need with what the backend has (no
     * system call when they agree, the usual case). */
    iomux__fd_dirty(loop, fd);
}

unsigned iomux__ops_want(const iomux_loop *loop, const iomux__fdent *fe) {
    unsigned m = 0;
    const iomux_op *r = fe->rq, *w = fe->wq;
    (void)loop;
    if (r && r->internal.state == OP_QUEUED && (r->internal.oflags & OF_EMUL) &&
        (fe->flags & FD_RBLOCKED) && !(fe->flags & FD_BUFWAIT))
        m |= IOMUX_IN;
    if (w && w->internal.state == OP_QUEUED && (w->internal.oflags & OF_EMUL) && (fe->flags & FD_WBLOCKED))
        m |= IOMUX_OUT;
    return m;
}

void iomux__ops_ready(iomux_loop *loop, iomux_fd fd, unsigned revents) {
    iomux__fdent *fe = &loop->fds[fd];
    if (revents & (IOMUX_IN | IOMUX_ERR | IOMUX_HUP)) fe->flags &= (uint16_t)~FD_RBLOCKED;
    if (revents & (IOMUX_OUT | IOMUX_ERR | IOMUX_HUP)) fe->flags &= (uint16_t)~FD_WBLOCKED;
    if (fe->rq) drive_dir(loop, fd, 0);
    if (fe->wq) drive_dir(loop, fd, 1);
}

/* Only the head of a blocked queue waits for readiness: it ends with err
 * (a clear error instead of a silent hang); the ops behind it are driven
 * as usual, so they get the next try at the interest (phase 4 again). */
void iomux__ops_fail(iomux_loop *loop, iomux_fd fd, int err) {
    iomux__fdent *fe = &loop->fds[fd];
    int writer;
    for (writer = 0; writer <= 1; writer++) {
        iomux_op *op = writer ? fe->wq : fe->rq;
        uint16_t blocked = writer ? FD_WBLOCKED : FD_RBLOCKED;
        if (!op || op->internal.state != OP_QUEUED || !(op->internal.oflags & OF_EMUL) || !(fe->flags & blocked))
            continue;
        complete(loop, op, err, 0);
        drive_dir(loop, fd, writer);
    }
}

void iomux__ops_drive(iomux_loop *loop, iomux_fd fd) {
    loop->fds[fd].flags &= (uint16_t)~FD_BUFWAIT;
    drive_dir(loop, fd, 0);
}

/* ---- completions from the kernel (uring) ------------------------------------------------ */

/* A multishot result from the kernel: delivered now, the op stays in flight. */
static void more_native(iomux_op *op, int64_t res) {
    op->result = res;
    op->flags = IOMUX_OP_MORE;
    op->cb(op);
}

/* The kernel gave back an op that must go on (a multishot it ended, a
 * short send, no pool buffer, not a socket): queue it again; a cancel
 * asked for meanwhile takes effect when the drive reaches it. */
static void requeue(iomux_loop *loop, iomux_op *op) {
    if (op->internal.state != OP_KERNEL) return; /* finished meanwhile */
    leave_kernel(op, OP_QUEUED);
    drive_dir(loop, op->internal.fd, is_writer(op->internal.type));
}

static void cqe_send(iomux_loop *loop, iomux_op *op, int res) {
    if (res >= 0) {
        op->internal.u.io.done += (size_t)res;
        if (op->internal.u.io.done < op->internal.u.io.len && !(op->internal.oflags & OF_CANCEL)) {
            requeue(loop, op); /* a short send: the rest goes next */
            return;
        }
        res = op->internal.u.io.done == op->internal.u.io.len ? (int)op->internal.u.io.len : -ECANCELED;
    }
    finish(loop, op, res);
}

static void cqe_recv(iomux_loop *loop, iomux_op *op, int res, int more, void *buf) {
    if (res == -ENOBUFS && (op->internal.oflags & OF_POOLBUF)) {
        /* An empty pool makes receiving wait (the data stays in the
         * kernel), it is never the op's result. Not resubmitted at once
         * (see iomux__buf_kick): it waits for a buffer like any recv that
         * finds the pool empty. A cancel asked for meanwhile completes it
         * with -ECANCELED when requeued. */
        if (op->internal.state == OP_KERNEL && !(op->internal.oflags & OF_CANCEL)) {
            leave_kernel(op, OP_QUEUED);
            loop->fds[op->internal.fd].flags |= FD_BUFWAIT;
            iomux__buf_wait(loop, op);
            loop->pool.kick = 1;
            return;
        }
        requeue(loop, op);
        return;
    }
    op->buf = (op->internal.oflags & OF_POOLBUF) ? buf : op->internal.u.io.buf;
    if (!(op->internal.oflags & OF_MULTISHOT) || res <= 0) {
        finish(loop, op, res);
        return;
    }
    more_native(op, res);
    if (!more) requeue(loop, op);
}

void iomux__op_cqe(iomux_loop *loop, iomux_op *op, int res, int more, void *buf) {
    int type = op->internal.type;
    if (res == -ENOTSOCK && (type == OPT_RECV || type == OPT_SEND)) {
        /* A pipe or tty: io_uring's send/recv want sockets; the emulation
         * reads and writes it (with polls for readiness), as elsewhere. */
        op->internal.oflags |= OF_EMUL;
        requeue(loop, op);
        return;
    }
    switch (type) {
    case OPT_SEND:
        cqe_send(loop, op, res);
        return;
    case OPT_RECV:
        cqe_recv(loop, op, res, more, buf);
        return;
    case OPT_ACCEPT:
        if ((op->internal.oflags & OF_MULTISHOT) && res >= 0) {
            more_native(op, res);
            if (!more) requeue(loop, op);
            return;
        }
        finish(loop, op, res);
        return;
    default:
        if (type == OPT_READ) op->buf = op->internal.u.file.buf;
        finish(loop, op, res);
        return;
    }
}

/* ---- starting ops ----------------------------------------------------------------------- */

static int op_begin(iomux_loop *loop, iomux_op *op, int type, iomux_fd fd, iomux_op_cb cb) {
    if (!loop || !op || !cb) return -EINVAL;
    if (type != OPT_TIMEOUT) {
        int rc;
        if (fd < 0) return -EBADF;
        rc = iomux__fd_reserve(loop, fd);
        if (rc < 0) return rc;
        if (loop->fds[fd].w) return -EBUSY; /* driven by a watcher */
    }
    memset(&op->internal, 0, sizeof(op->internal));
    op->loop = loop;
    op->cb = cb;
    op->result = 0;
    op->buf = NULL;
    op->flags = 0;
    op->internal.type = (uint8_t)type;
    op->internal.fd = fd;
    op->internal.pend.run = deliver_run;
    return 0;
}

static void file_work(iomux__pend *p);
static void file_done(iomux__pend *p);

/* Queued types join their fd's queue; file ops go to the kernel or the pool. */
static int op_launch(iomux_loop *loop, iomux_op *op) {
    int rc;
    loop->active++;
    op->internal.state = OP_QUEUED;
    if (is_queued_type(op->internal.type)) {
        iomux_op **head = queue_of(loop, op);
        q_push(head, op);
        if (*head == op) drive_dir(loop, op->internal.fd, is_writer(op->internal.type));
        return 0;
    }
    if (submit_native(loop, op)) return 0;
    op->internal.state = OP_POOL;
    op->internal.pend.run = file_work;
    rc = iomux__work_queue(loop, &op->internal.pend);
    if (rc < 0) complete(loop, op, rc, 0);
    return 0;
}

int iomux_accept(iomux_loop *loop, iomux_op *op, iomux_fd lfd, unsigned flags, iomux_op_cb cb) {
    int rc;
    if (flags & ~(unsigned)IOMUX_OP_MULTISHOT) return -EINVAL;
    rc = op_begin(loop, op, OPT_ACCEPT, lfd, cb);
    if (rc < 0) return rc;
    if (flags & IOMUX_OP_MULTISHOT) op->internal.oflags |= OF_MULTISHOT;
    return op_launch(loop, op);
}

int iomux_connect(iomux_loop *loop, iomux_op *op, iomux_fd fd, const struct sockaddr *addr, unsigned addrlen,
                  iomux_op_cb cb) {
    int rc;
    if (!addr || addrlen == 0) return -EINVAL;
    rc = op_begin(loop, op, OPT_CONNECT, fd, cb);
    if (rc < 0) return rc;
    op->internal.u.connect.addr = addr;
    op->internal.u.connect.addrlen = addrlen;
    return op_launch(loop, op);
}

int iomux_recv(iomux_loop *loop, iomux_op *op, iomux_fd fd, void *buf, size_t len, unsigned flags,
               iomux_op_cb cb) {
    int rc;
    if (flags & ~(unsigned)IOMUX_OP_MULTISHOT) return -EINVAL;
    if ((flags & IOMUX_OP_MULTISHOT) && buf) return -EINVAL;
    if (buf && len == 0) return -EINVAL;
    rc = op_begin(loop, op, OPT_RECV, fd, cb);
    if (rc < 0) return rc;
    if (!buf) {
        rc = iomux__bufpool_ensure(loop);
        if (rc < 0) return rc;
        op->internal.oflags |= OF_POOLBUF;
    }
    if (flags & IOMUX_OP_MULTISHOT) op->internal.oflags |= OF_MULTISHOT;
    op->internal.u.io.buf = buf;
    op->internal.u.io.len = buf ? len : loop->pool.size;
    op->internal.u.io.done = 0; /* recv: uring counts a multishot's bursts in it */
    return op_launch(loop, op);
}

int iomux_send(iomux_loop *loop, iomux_op *op, iomux_fd fd, const void *buf, size_t len, iomux_op_cb cb) {
    int rc;
    if (!buf && len) return -EINVAL;
    rc = op_begin(loop, op, OPT_SEND, fd, cb);
    if (rc < 0) return rc;
    op->internal.u.io.buf = (char *)(uintptr_t)buf;
    op->internal.u.io.len = len;
    return op_launch(loop, op);
}

int iomux_sendfile(iomux_loop *loop, iomux_op *op, iomux_fd sock, iomux_fd file, int64_t offset, size_t len,
                   iomux_op_cb cb) {
    int rc;
    if (file < 0 || offset < 0) return -EINVAL;
    rc = op_begin(loop, op, OPT_SENDFILE, sock, cb);
    if (rc < 0) return rc;
    op->internal.u.sendfile.file = file;
    op->internal.u.sendfile.offset = offset;
    op->internal.u.sendfile.len = len;
    return op_launch(loop, op);
}

static int file_op(iomux_loop *loop, iomux_op *op, int type, iomux_fd file, const void *buf, size_t len,
                   int64_t offset, iomux_op_cb cb) {
    int rc;
    if ((!buf && len) || offset < 0) return -EINVAL;
    rc = op_begin(loop, op, type, file, cb);
    if (rc < 0) return rc;
    op->internal.u.file.buf = (char *)(uintptr_t)buf;
    op->internal.u.file.len = len;
    op->internal.u.file.offset = offset;
    return op_launch(loop, op);
}

int iomux_read(iomux_loop *loop, iomux_op *op, iomux_fd file, void *buf, size_t len, int64_t offset,
               iomux_op_cb cb) {
    return file_op(loop, op, OPT_READ, file, buf, len, offset, cb);
}

int iomux_write(iomux_loop *loop, iomux_op *op, iomux_fd file, const void *buf, size_t len, int64_t offset,
                iomux_op_cb cb) {
    return file_op(loop, op, OPT_WRITE, file, buf, len, offset, cb);
}

/* On a pool thread: the blocking call, then switch to the loop-side stage. */
static void file_work(iomux__pend *p) {
    iomux_op *op = iomux__container_of(p, iomux_op, internal.pend);
    if (op->internal.type == OPT_READ)
        op->result = iomux__file_pread(op->internal.fd, op->internal.u.file.buf, op->internal.u.file.len,
                                       op->internal.u.file.offset);
    else
        op->result = iomux__file_pwrite(op->internal.fd, op->internal.u.file.buf, op->internal.u.file.len,
                                        op->internal.u.file.offset);
    p->run = file_done;
}

static void file_done(iomux__pend *p) {
    iomux_op *op = iomux__container_of(p, iomux_op, internal.pend);
    if (op->internal.type == OPT_READ) op->buf = op->internal.u.file.buf;
    finish(op->loop, op, op->result);
}

static void timeout_fired(iomux_timer *t) {
    iomux_op *op = t->data;
    finish(op->loop, op, 0);
}

int iomux_timeout(iomux_loop *loop, iomux_op *op, uint64_t ms, iomux_op_cb cb) {
    int rc = op_begin(loop, op, OPT_TIMEOUT, -1, cb);
    if (rc < 0) return rc;
    iomux_timer_init(loop, &op->internal.u.timer, timeout_fired);
    op->internal.u.timer.data = op;
    rc = iomux_timer_start(&op->internal.u.timer, ms, 0);
    if (rc < 0) return rc;
    op->internal.state = OP_TIMER;
    loop->active++;
    return 0;
}

/* ---- cancel and close ------------------------------------------------------------------- */

int iomux_cancel(iomux_op *op) {
    iomux_loop *loop = op->loop;
    switch (op->internal.state) {
    case OP_QUEUED: {
        iomux_fd fd = op->internal.fd;
        int type = op->internal.type;
        if (op->internal.oflags & OF_CANCEL) return -EALREADY; /* decided already */
        if (is_queued_type(type) && *queue_of(loop, op) != op) {
            /* Behind others on its fd: it completes (-ECANCELED) when it
             * reaches the head, so callbacks keep their start order. */
            op->internal.oflags |= OF_CANCEL;
            return 0;
        }
        complete(loop, op, -ECANCELED, 0);
        if (is_queued_type(type)) drive_dir(loop, fd, is_writer(type));
        return 0;
    }
    case OP_KERNEL:
        if (!(op->internal.oflags & OF_CANCEL)) {
            op->internal.oflags |= OF_CANCEL;
            iomux__q_push(&loop->cancelling, &op->internal.pend.node);
            loop->backend->cancel(loop, op);
        }
        return 0;
    case OP_DONE:
        if (!(op->internal.oflags & OF_MORE)) return -EALREADY;
        op->internal.oflags |= OF_CANCEL;
        return 0;
    case OP_POOL:
        if (iomux__work_unqueue(loop, &op->internal.pend) < 0) return -EALREADY;
        complete(loop, op, -ECANCELED, 0);
        return 0;
    case OP_TIMER:
        iomux_timer_stop(&op->internal.u.timer);
        complete(loop, op, -ECANCELED, 0);
        return 0;
    default:
        return -EINVAL;
    }
}

int iomux_op_active(const iomux_op *op) {
    return op->internal.state != OP_IDLE;
}

/* Cancels every op of one queue, in order. Cancelling one may complete
 * others (a cancelled head lets the drive finish ops cancelled behind it),
 * so look from the head again each time for the first op not yet asked;
 * each cancel either takes the op out or marks it OF_CANCEL. */
static void cancel_queue(iomux_op **head) {
    for (;;) {
        iomux_op *first = *head, *op = first;
        if (!op) return;
        while (op->internal.oflags & OF_CANCEL) {
            op = link_op(op->internal.link.next);
            if (op == first) return; /* every op has been asked */
        }
        iomux_cancel(op);
    }
}

int iomux_close(iomux_loop *loop, iomux_op *op, iomux_fd fd, iomux_op_cb cb) {
    iomux__fdent *fe;
    int rc = op_begin(loop, op, OPT_CLOSE, fd, cb);
    if (rc < 0) return rc;
    fe = &loop->fds[fd];
    /* A zero-copy send's buffer stays the kernel's until every byte is
     * acknowledged, which a stalled peer never does: reset the connection
     * so the kernel lets go and the send can complete. */
    if (fe->wq && (fe->wq->internal.oflags & OF_ZC)) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, IOMUX__SOCKOPT(&lg), sizeof(lg));
    }
    fe->flags |= FD_CLOSING; /* cancelling a head must not start the next */
    cancel_queue(&fe->rq);
    cancel_queue(&fe->wq);
    /* A new file may get this number: forget what we knew of this one. */
    fe->flags &= (uint16_t)~(FD_RBLOCKED | FD_WBLOCKED | FD_BUFWAIT | FD_CLOSING);
    loop->active++;
    op->internal.state = OP_QUEUED;
    if (submit_native(loop, op)) return 0;
    /* The wait set forgets the fd before it is closed: afterwards its number
     * may belong to another thread's new file. */
    iomux__fd_forget(loop, fd);
    if (loop->backend->flush) loop->backend->flush(loop); /* prepared requests first */
    complete(loop, op, iomux__fd_close(fd), 0);
    return 0;
}
