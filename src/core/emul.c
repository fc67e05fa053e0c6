/* The emulated Proactor's system calls: one non-blocking attempt of an op
 * on a readiness backend (select, poll, epoll; and uring for the op types it
 * does not do natively). op.c decides when to attempt; this file only turns
 * an op into its call and classifies the outcome. */
#include <errno.h>
#include <limits.h>
#ifdef __linux__
#include <sys/sendfile.h>
#endif

#include "loop.h"
#include "sys.h"

static int attempt_accept(iomux_op *op, int64_t *res) {
    for (;;) {
        int fd = iomux__accept_nb(op->internal.fd), err = -fd;
        if (fd >= 0) {
            *res = fd;
            return (op->internal.oflags & OF_MULTISHOT) ? EMUL_MORE : EMUL_DONE;
        }
        /* A connection reset while queued is not the listener's error. */
        if (err == EINTR || err == ECONNABORTED || err == ECONNRESET) continue;
        if (iomux__would_block(err)) return EMUL_AGAIN;
        *res = -err;
        return EMUL_DONE;
    }
}

/* First attempt: connect(). After that the op waits for OUT, and the next
 * attempt reads the outcome from SO_ERROR. */
static int attempt_connect(iomux_op *op, int64_t *res) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (!(op->internal.oflags & OF_STARTED)) {
        op->internal.oflags |= OF_STARTED;
        if (connect(op->internal.fd, op->internal.u.connect.addr, (socklen_t)op->internal.u.connect.addrlen) == 0) {
            *res = 0;
            return EMUL_DONE;
        }
        err = iomux__sock_errno();
        if (err == EINPROGRESS || err == EINTR || iomux__would_block(err)) return EMUL_AGAIN;
        *res = -err;
        return EMUL_DONE;
    }
    if (getsockopt(op->internal.fd, SOL_SOCKET, SO_ERROR, IOMUX__SOCKOPT(&err), &len) < 0) err = iomux__sock_errno();
#ifdef _WIN32
    if (err) err = iomux__errno_from_win((unsigned long)err);
#endif
    *res = -err;
    return EMUL_DONE;
}

/* MSG_DONTWAIT: even a blocking socket cannot block the loop here. */
/* Returns bytes, or -errno. */
static ssize_t read_once(iomux_fd fd, void *buf, size_t len) {
#ifdef _WIN32
    int n = recv((SOCKET)fd, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
    return n < 0 ? -iomux__sock_errno() : n;
#else
    ssize_t n;
    do n = recv(fd, buf, len, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == ENOTSOCK) {
        do n = read(fd, buf, len);
        while (n < 0 && errno == EINTR);
    }
    return n < 0 ? -errno : n;
#endif
}

static int attempt_recv(iomux_loop *loop, iomux_op *op, int64_t *res) {
    int pool = (op->internal.oflags & OF_POOLBUF) != 0;
    char *buf = pool ? iomux__buf_take(loop) : op->internal.u.io.buf;
    size_t len = op->internal.u.io.len;
    ssize_t n;
    if (!buf) return EMUL_NOBUF;
    n = read_once(op->internal.fd, buf, len);
    if (n <= 0) {
        if (pool) iomux__buf_put(loop, buf);
        op->buf = pool ? NULL : buf; /* no data: no pool buffer to hand over */
        if (iomux__would_block((int)-n)) return EMUL_AGAIN;
        *res = n;
        return EMUL_DONE;
    }
    /* A short read from a stream means it is empty now: wait for readiness
     * before the next attempt instead of paying for an EAGAIN. */
    if ((size_t)n < len) loop->fds[op->internal.fd].flags |= FD_RBLOCKED;
    op->buf = buf;
    *res = n;
    return (op->internal.oflags & OF_MULTISHOT) ? EMUL_MORE : EMUL_DONE;
}

/* Returns bytes, or -errno. */
static ssize_t send_once(iomux_fd fd, const char *buf, size_t len) {
#ifdef _WIN32
    int n = send((SOCKET)fd, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
    return n < 0 ? -iomux__sock_errno() : n;
#else
    ssize_t n;
    do n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == ENOTSOCK) {
        do n = write(fd, buf, len);
        while (n < 0 && errno == EINTR);
    }
    return n < 0 ? -errno : n;
#endif
}

/* A partial write means the socket buffer is full: report AGAIN rather than
 * trying once more only to be told so. */
static int attempt_send(iomux_op *op, int64_t *res) {
    size_t left = op->internal.u.io.len - op->internal.u.io.done;
    ssize_t n;
    if (left == 0) {
        *res = 0;
        return EMUL_DONE;
    }
    n = send_once(op->internal.fd, op->internal.u.io.buf + op->internal.u.io.done, left);
    if (n < 0) {
        if (iomux__would_block((int)-n)) return EMUL_AGAIN;
        *res = n;
        return EMUL_DONE;
    }
    op->internal.u.io.done += (size_t)n;
    if ((size_t)n < left) return EMUL_AGAIN;
    *res = (int64_t)op->internal.u.io.len;
    return EMUL_DONE;
}

#ifdef _WIN32
/* No sendfile that fits a non-blocking loop: read a piece at the offset and
 * send what the socket takes; the rest is read again next time. */
static ssize_t sendfile_once(iomux_fd sock, iomux_fd file, int64_t off, size_t len) {
    char buf[16384];
    ssize_t n = iomux__file_pread(file, buf, len < sizeof(buf) ? len : sizeof(buf), off);
    if (n <= 0) return n;
    return send_once(sock, buf, (size_t)n);
}
#else
static ssize_t sendfile_once(iomux_fd sock, iomux_fd file, off_t off, size_t len) {
    ssize_t n;
    do n = sendfile(sock, file, &off, len);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}
#endif

static int attempt_sendfile(iomux_op *op, int64_t *res) {
    size_t left = op->internal.u.sendfile.len - op->internal.u.sendfile.done;
    int64_t off = (int64_t)(op->internal.u.sendfile.offset + (int64_t)op->internal.u.sendfile.done);
    ssize_t n;
    if (left == 0) {
        *res = 0;
        return EMUL_DONE;
    }
    n = sendfile_once(op->internal.fd, op->internal.u.sendfile.file, off, left);
    if (n < 0) {
        if (iomux__would_block((int)-n)) return EMUL_AGAIN;
        *res = n;
        return EMUL_DONE;
    }
    if (n == 0) { /* the file is shorter than promised */
        *res = -ENODATA;
        return EMUL_DONE;
    }
    op->internal.u.sendfile.done += (size_t)n;
    if ((size_t)n < left) return EMUL_AGAIN;
    *res = (int64_t)op->internal.u.sendfile.len;
    return EMUL_DONE;
}

int iomux__emul_attempt(iomux_loop *loop, iomux_op *op, int64_t *res) {
    switch (op->internal.type) {
    case OPT_ACCEPT:
        return attempt_accept(op, res);
    case OPT_CONNECT:
        return attempt_connect(op, res);
    case OPT_RECV:
        return attempt_recv(loop, op, res);
    case OPT_SEND:
        return attempt_send(op, res);
    case OPT_SENDFILE:
        return attempt_sendfile(op, res);
    default:
        *res = -ENOTSUP;
        return EMUL_DONE;
    }
}
