/* fd watchers: the Reactor API. The core keeps one entry per fd number
 * (loop->fds); a watcher start/update/stop only changes that entry and marks
 * the fd dirty, and phase 4 (iomux__watch_apply) hands each dirty fd to the
 * backend once, so toggling interest inside one iteration costs at most one
 * kernel update per fd, and none when it comes back to where it was.
 * Ready fds reported by the backend are queued as pending items and run in
 * phase 6: a watcher stopped meanwhile leaves the queue, so its callback
 * never runs after the stop. */
#include <errno.h>
#include <string.h>

#include "loop.h"

enum {
    W_ACTIVE = 1u << 0,
    W_INTERNAL = 1u << 1, /* the loop's own (wake-up, signals): not "alive" */
    W_FAILED = 1u << 2    /* phase 4 failed: one IOMUX_ERR callback is owed */
};

#define USER_BITS (IOMUX_IN | IOMUX_OUT | IOMUX_ET | IOMUX_ONESHOT)
#define IO_BITS (IOMUX_IN | IOMUX_OUT)
#define KERNEL_BITS (IOMUX_IN | IOMUX_OUT | IOMUX_ET | IOMUX_ONESHOT)

static void watch_run(iomux__pend *p);

/* Grows the fd table to cover fd. The dirty and parked lists are grown with
 * it (an fd is in each at most once), so marking an fd never fails. */
int iomux__fd_reserve(iomux_loop *loop, iomux_fd fd) {
    size_t need = (size_t)fd + 1, cap = loop->nfds, old = loop->nfds;
    int rc;
    if (need <= old) return 0;
    rc = iomux__grow(loop, (void **)&loop->fds, &cap, need, sizeof(iomux__fdent));
    if (rc < 0) return rc;
    memset(loop->fds + old, 0, (cap - old) * sizeof(iomux__fdent));
    rc = iomux__grow(loop, (void **)&loop->dirty.v, &loop->dirty.cap, cap, sizeof(int));
    if (rc == 0)
        rc = iomux__grow(loop, (void **)&loop->parked.v, &loop->parked.cap, cap, sizeof(int));
    if (rc == 0) loop->nfds = cap; /* only once all three cover it */
    return rc;
}

void iomux__fd_dirty(iomux_loop *loop, iomux_fd fd) {
    iomux__fdent *fe = &loop->fds[fd];
    if (fe->flags & FD_DIRTY) return;
    fe->flags |= FD_DIRTY;
    loop->dirty.v[loop->dirty.len++] = fd;
}

void iomux_watch_init(iomux_loop *loop, iomux_watch *w, iomux_fd fd, iomux_watch_cb cb) {
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->fd = fd;
    w->cb = cb;
    w->internal.pend.run = watch_run;
}

static int watch_start(iomux_watch *w, unsigned events, unsigned flags) {
    iomux_loop *loop = w->loop;
    iomux__fdent *fe;
    int rc;
    if (!(events & IO_BITS) || (events & ~USER_BITS)) return -EINVAL;
    if (w->fd < 0) return -EBADF;
    rc = iomux__fd_reserve(loop, w->fd);
    if (rc < 0) return rc;
    fe = &loop->fds[w->fd];
    if (fe->w && fe->w != w) return -EEXIST;
    if (fe->rq || fe->wq) return -EBUSY; /* driven by ops */
    if (w->internal.flags & W_ACTIVE) {
        if (events == w->events) return 0; /* nothing changes, as on epoll */
    } else {
        w->internal.flags = W_ACTIVE | flags;
        w->internal.error = 0;
        w->internal.revents = 0;
        iomux__pend_cancel(&w->internal.pend);
        if (!(flags & W_INTERNAL)) loop->active++;
        fe->w = w;
        /* The fd may have been closed and reused since the kernel last saw
         * it: make phase 4 talk to the backend even if the masks agree. */
        fe->flags |= FD_FRESH;
    }
    /* A new interest re-evaluates readiness, as epoll_ctl(MOD) does, so the
     * ET emulation forgets what it reported. */
    iomux__et_reset(fe);
    w->events = events;
    iomux__fd_dirty(loop, w->fd);
    return 0;
}

int iomux_watch_start(iomux_watch *w, unsigned events) {
    return watch_start(w, events, 0);
}

int iomux__watch_start_internal(iomux_watch *w, unsigned events) {
    return watch_start(w, events, W_INTERNAL);
}

int iomux_watch_update(iomux_watch *w, unsigned events) {
    if (!(w->internal.flags & W_ACTIVE)) return -EINVAL;
    return watch_start(w, events, 0);
}

/* The kernel forgets fd now rather than in phase 4: the caller may close
 * it as soon as the stop returns, and another thread may reuse its number
 * before phase 4 runs (a deferred DEL would then name someone else's fd).
 * Only when nothing else on the loop still drives the fd. */
void iomux__fd_forget(iomux_loop *loop, iomux_fd fd) {
    iomux__fdent *fe = &loop->fds[fd];
    int rc;
    if (!(fe->have & IO_BITS) || fe->w || fe->rq || fe->wq) return;
    rc = loop->backend->watch_update(loop, fd, fe->have, 0);
    loop->stats.interest_updates++;
    fe->have = rc < 0 ? 0 : (uint8_t)rc;
}

static int watch_stop(iomux_watch *w, int user) {
    iomux_loop *loop = w->loop;
    iomux__pend_cancel(&w->internal.pend);
    w->internal.revents = 0;
    if (!(w->internal.flags & W_ACTIVE)) {
        w->internal.flags &= ~W_FAILED;
        return 0;
    }
    if (!(w->internal.flags & W_INTERNAL)) loop->active--;
    w->internal.flags = 0;
    if ((size_t)w->fd < loop->nfds && loop->fds[w->fd].w == w) {
        loop->fds[w->fd].w = NULL;
        iomux__et_reset(&loop->fds[w->fd]);
        if (user) iomux__fd_forget(loop, w->fd);
        iomux__fd_dirty(loop, w->fd);
    }
    return 0;
}

int iomux_watch_stop(iomux_watch *w) {
    return watch_stop(w, 1);
}

int iomux_watch_active(const iomux_watch *w) {
    return (w->internal.flags & W_ACTIVE) != 0;
}

int iomux_watch_error(const iomux_watch *w) {
    return w->internal.error;
}

/* ---- phase 4: apply interest changes ----------------------------------------- */

/* What the backend should have for this fd now: derived from the watcher,
 * minus what the kernel cannot do natively (emulated in the core). */
static unsigned want_of(const iomux_loop *loop, const iomux__fdent *fe) {
    const iomux_watch *w = fe->w;
    unsigned caps = loop->backend->caps, m;
    if (!w) return iomux__ops_want(loop, fe);
    m = w->events & IO_BITS;
    if (w->events & IOMUX_ET) {
        if (caps & IOMUX__CAP_ET) m |= IOMUX_ET;
        else m &= ~iomux__et_parked_mask(fe);
    }
    if ((w->events & IOMUX_ONESHOT) && (caps & IOMUX__CAP_ONESHOT)) m |= IOMUX_ONESHOT;
    return m;
}

static void watch_fail(iomux_loop *loop, iomux__fdent *fe, iomux_fd fd, int err) {
    iomux_watch *w = fe->w;
    if (!w) {
        /* ops drive the fd: the one waiting for readiness would wait forever */
        iomux__ops_fail(loop, fd, err);
        return;
    }
    iomux_watch_stop(w);
    w->internal.error = err;
    w->internal.flags |= W_FAILED;
    iomux__pend_queue(loop, &w->internal.pend);
}

/* Pops rather than iterates: a failure below stops the watcher, which marks
 * the fd dirty again, and the list must never hold an fd twice. */
void iomux__watch_apply(iomux_loop *loop) {
    while (loop->dirty.len > 0) {
        iomux_fd fd = loop->dirty.v[--loop->dirty.len];
        iomux__fdent *fe = &loop->fds[fd];
        unsigned want = want_of(loop, fe), have = fe->have;
        int fresh = (fe->flags & FD_FRESH) != 0, rc;
        fe->flags &= ~(FD_DIRTY | FD_FRESH);
        if (!(want & IO_BITS) && !(have & IO_BITS)) continue;
        if (!fresh && want == (have & KERNEL_BITS)) continue;
        rc = loop->backend->watch_update(loop, fd, have | (fresh ? IOMUX__FRESH : 0u), want);
        loop->stats.interest_updates++;
        if (rc < 0) {
            fe->have = 0;
            watch_fail(loop, fe, fd, rc);
        } else {
            fe->have = (uint8_t)rc;
        }
    }
}

/* ---- phase 5/6: events from the backend, and dispatch ----------------------------- */

void iomux__io_event(iomux_loop *loop, iomux_fd fd, unsigned revents) {
    iomux__fdent *fe;
    iomux_watch *w;
    unsigned ev;
    loop->stats.events++;
    if (fd < 0 || (size_t)fd >= loop->nfds) return;
    fe = &loop->fds[fd];
    if (fe->have & IOMUX__ONCE) {
        fe->have &= (uint8_t)~IO_BITS; /* the kernel disarmed it: */
        iomux__fd_dirty(loop, fd);     /* phase 4 re-arms it if still wanted */
    }
    w = fe->w;
    if (!w) {
        if (fe->rq || fe->wq) iomux__ops_ready(loop, fd, revents);
        else iomux__fd_dirty(loop, fd); /* stale: let phase 4 reconcile */
        return;
    }
    ev = revents & ((w->events & IO_BITS) | IOMUX_ERR | IOMUX_HUP);
    if (ev && (w->events & IOMUX_ET) && !(loop->backend->caps & IOMUX__CAP_ET))
        ev = iomux__et_filter(loop, fd, ev);
    if (!ev) return;
    w->internal.revents |= ev;
    iomux__pend_queue(loop, &w->internal.pend);
}

void iomux__io_disarmed(iomux_loop *loop, iomux_fd fd) {
    if (fd < 0 || (size_t)fd >= loop->nfds) return;
    loop->fds[fd].have &= (uint8_t)~IO_BITS;
    iomux__fd_dirty(loop, fd);
}

static void watch_run(iomux__pend *p) {
    iomux_watch *w = iomux__container_of(p, iomux_watch, internal.pend);
    unsigned ev = w->internal.revents;
    w->internal.revents = 0;
    if (w->internal.flags & W_FAILED) {
        w->internal.flags &= ~W_FAILED;
        w->cb(w, IOMUX_ERR);
        return;
    }
    ev &= (w->events & IO_BITS) | IOMUX_ERR | IOMUX_HUP; /* interest may have shrunk */
    if (!ev || !(w->internal.flags & W_ACTIVE)) return;
    if (w->events & IOMUX_ONESHOT) watch_stop(w, 0); /* re-armed in its callback, often */
    w->cb(w, ev);
}
