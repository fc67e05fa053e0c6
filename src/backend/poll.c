/* The poll backend: one dense pollfd array, O(watched fds) per wait. An fd's
 * position is kept in an fd-indexed table; removal moves the last entry into
 * the hole, so the array stays dense. On Windows the same code runs on
 * WSAPoll, Winsock's poll (sockets only). */
#include <errno.h>
#include <string.h>

#include "backend.h"
#include "../core/loop.h"
#include "../core/sys.h"

typedef struct poll_state {
    iomux__pollfd *pfd;
    size_t n, cap;
    size_t *pos; /* by fd: index + 1, 0 = absent */
    size_t pos_cap;
} poll_state;

static int pl_init(iomux_loop *loop) {
    poll_state *st = iomux__malloc(loop, sizeof(*st));
    if (!st) return -ENOMEM;
    memset(st, 0, sizeof(*st));
    loop->bstate = st;
    return 0;
}

static void pl_free(iomux_loop *loop) {
    poll_state *st = loop->bstate;
    iomux__free(loop, st->pfd);
    iomux__free(loop, st->pos);
    iomux__free(loop, st);
    loop->bstate = NULL;
}

static void pl_remove(poll_state *st, iomux_fd fd) {
    size_t i;
    if ((size_t)fd >= st->pos_cap || !st->pos[fd]) return;
    i = st->pos[fd] - 1;
    st->pos[fd] = 0;
    if (i != --st->n) {
        int moved = (int)st->pfd[st->n].fd;
        st->pfd[i] = st->pfd[st->n];
        st->pos[moved < 0 ? -1 - moved : moved] = i + 1;
    }
}

static int pl_add(iomux_loop *loop, poll_state *st, iomux_fd fd) {
    size_t old = st->pos_cap;
    int rc = iomux__grow(loop, (void **)&st->pos, &st->pos_cap, (size_t)fd + 1, sizeof(size_t));
    if (rc < 0) return rc;
    memset(st->pos + old, 0, (st->pos_cap - old) * sizeof(size_t));
    rc = iomux__grow(loop, (void **)&st->pfd, &st->cap, st->n + 1, sizeof(iomux__pollfd));
    if (rc < 0) return rc;
    st->pfd[st->n].fd = fd;
    st->pos[fd] = ++st->n;
    return 0;
}

static int pl_update(iomux_loop *loop, iomux_fd fd, unsigned have, unsigned want) {
    poll_state *st = loop->bstate;
    iomux__pollfd *p;
    (void)have;
    if (!(want & (IOMUX_IN | IOMUX_OUT))) {
        pl_remove(st, fd);
        return 0;
    }
    if ((size_t)fd >= st->pos_cap || !st->pos[fd]) {
        int rc = pl_add(loop, st, fd);
        if (rc < 0) return rc;
    }
    p = &st->pfd[st->pos[fd] - 1];
    p->fd = fd; /* undo a POLLNVAL parking */
    p->events = (short)(((want & IOMUX_IN) ? POLLIN : 0) | ((want & IOMUX_OUT) ? POLLOUT : 0));
    p->revents = 0;
    return (int)((want & (IOMUX_IN | IOMUX_OUT)) | IOMUX__ADDED);
}

#ifdef _WIN32
/* WSAPoll says POLLHUP when the peer's FIN arrives (Linux's POLLRDHUP: our
 * side may still send) and never POLLIN with it, and POLLERR|POLLHUP for a
 * reset. Reported as Linux's poll does: a FIN is IN (the read returns the
 * end); an error is IN|OUT|ERR|HUP. A close of both directions therefore
 * shows as IN, without HUP. */
static unsigned pl_revents(short k) {
    unsigned r = ((k & POLLIN) ? IOMUX_IN : 0u) | ((k & POLLOUT) ? IOMUX_OUT : 0u);
    if (k & POLLERR) return r | IOMUX_IN | IOMUX_OUT | IOMUX_ERR | IOMUX_HUP;
    if (k & POLLHUP) r |= IOMUX_IN;
    return r;
}
#else
static unsigned pl_revents(short k) {
    return ((k & POLLIN) ? IOMUX_IN : 0u) | ((k & POLLOUT) ? IOMUX_OUT : 0u) | ((k & POLLERR) ? IOMUX_ERR : 0u) |
           ((k & POLLHUP) ? IOMUX_HUP : 0u);
}
#endif

static int pl_wait(iomux_loop *loop, int timeout_ms) {
    poll_state *st = loop->bstate;
    int n, seen = 0;
    size_t i;
#ifdef _WIN32
    if (st->n == 0) { /* WSAPoll refuses an empty set */
        Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
        return 0;
    }
#endif
    n = iomux__poll(st->pfd, (iomux__nfds)st->n, timeout_ms);
    if (n < 0) return -iomux__sock_errno();
    for (i = 0; i < st->n && seen < n; i++) {
        iomux__pollfd *p = &st->pfd[i];
        short k = p->revents;
        if (!k) continue;
        seen++;
        if (k & POLLNVAL) {
            /* Closed while watched: report once, then let poll skip it. */
            iomux__io_event(loop, (iomux_fd)p->fd, IOMUX_ERR);
            p->fd = -1 - (iomux_fd)p->fd;
            continue;
        }
        iomux__io_event(loop, (iomux_fd)p->fd, pl_revents(k));
    }
    return n;
}

const iomux__backend iomux__backend_poll = {
    .name = "poll",
    .id = IOMUX_BACKEND_POLL,
    .caps = 0,
    .init = pl_init,
    .free = pl_free,
    .watch_update = pl_update,
    .wait = pl_wait,
};
