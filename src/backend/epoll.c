/* The epoll backend: O(ready) waits; edge-triggered and one-shot native. */
#include "backend.h"

#ifdef IOMUX_HAVE_EPOLL
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../core/loop.h"

typedef struct epoll_state {
    int epfd;
    int nev;
    struct epoll_event ev[];
} epoll_state;

static int ep_init(iomux_loop *loop) {
    epoll_state *st = iomux__malloc(loop, sizeof(*st) + loop->max_events * sizeof(struct epoll_event));
    if (!st) return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int err = -errno;
        iomux__free(loop, st);
        return err;
    }
    st->nev = (int)loop->max_events;
    loop->bstate = st;
    return 0;
}

static void ep_free(iomux_loop *loop) {
    epoll_state *st = loop->bstate;
    close(st->epfd);
    iomux__free(loop, st);
    loop->bstate = NULL;
}

static uint32_t to_epoll(unsigned m) {
    return ((m & IOMUX_IN) ? EPOLLIN : 0u) | ((m & IOMUX_OUT) ? EPOLLOUT : 0u) |
           ((m & IOMUX_ET) ? EPOLLET : 0u) | ((m & IOMUX_ONESHOT) ? EPOLLONESHOT : 0u);
}

/* ADD or MOD as `have` suggests, then the other one if the kernel disagrees:
 * after a close the fd left the set (MOD gives ENOENT), and a reused fd
 * number may still be registered (ADD gives EEXIST). */
static int ep_update(iomux_loop *loop, iomux_fd fd, unsigned have, unsigned want) {
    epoll_state *st = loop->bstate;
    struct epoll_event e;
    int op, rc;
    if (!(want & (IOMUX_IN | IOMUX_OUT))) {
        if (have & IOMUX__ADDED) epoll_ctl(st->epfd, EPOLL_CTL_DEL, fd, NULL); /* ENOENT/EBADF: gone */
        return 0;
    }
    e.events = to_epoll(want);
    e.data.u64 = 0;
    e.data.fd = fd;
    op = (have & IOMUX__ADDED) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    rc = epoll_ctl(st->epfd, op, fd, &e);
    if (rc < 0 && op == EPOLL_CTL_MOD && errno == ENOENT) rc = epoll_ctl(st->epfd, EPOLL_CTL_ADD, fd, &e);
    else if (rc < 0 && op == EPOLL_CTL_ADD && errno == EEXIST) rc = epoll_ctl(st->epfd, EPOLL_CTL_MOD, fd, &e);
    if (rc < 0) return -errno;
    return (int)(want | IOMUX__ADDED | ((want & IOMUX_ONESHOT) ? IOMUX__ONCE : 0u));
}

static int ep_wait(iomux_loop *loop, int timeout_ms) {
    epoll_state *st = loop->bstate;
    int n = epoll_wait(st->epfd, st->ev, st->nev, timeout_ms), i;
    if (n < 0) return -errno;
    for (i = 0; i < n; i++) {
        uint32_t k = st->ev[i].events;
        unsigned r = ((k & EPOLLIN) ? IOMUX_IN : 0u) | ((k & EPOLLOUT) ? IOMUX_OUT : 0u) |
                     ((k & EPOLLERR) ? IOMUX_ERR : 0u) | ((k & EPOLLHUP) ? IOMUX_HUP : 0u);
        iomux__io_event(loop, st->ev[i].data.fd, r);
    }
    return n;
}

const iomux__backend iomux__backend_epoll = {
    .name = "epoll",
    .id = IOMUX_BACKEND_EPOLL,
    .caps = IOMUX__CAP_ET | IOMUX__CAP_ONESHOT,
    .init = ep_init,
    .free = ep_free,
    .watch_update = ep_update,
    .wait = ep_wait,
};
#endif
