/* Accepting on a loop, in the API of the model: a watcher calling accept4
 * (reactor), or an iomux_acceptor (proactor). */
#include <errno.h>

#include "internal.h"
#include "port.h"

#define ACCEPT_BATCH 64 /* level-triggered: accepts per readiness report */
#define PAUSE_MS 100    /* out of fds: wait this long before trying again */

/* ---- reactor: a watcher ------------------------------------------------------- */

static void resume(iomux_timer *t) {
    app__acceptor *a = t->data;
    if (iomux_watch_start(&a->w, IOMUX_IN | a->flags) < 0) app_log("cannot resume accepting");
}

/* accept4 failed with err: 1 to try the next one, 0 to return. */
static int accept_failed(app__acceptor *a, int err) {
    switch (err) {
    case EAGAIN: return 0;
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM: return 1;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM: /* out of fds or memory: the backlog waits; do not spin on it */
        iomux_watch_stop(&a->w);
        iomux_timer_start(&a->pause, PAUSE_MS, 0);
        return 0;
    default:
        app_log("accept failed: %s; no longer accepting", iomux_strerror(-err));
        iomux_watch_stop(&a->w);
        return 0;
    }
}

static void on_listener(iomux_watch *w, unsigned revents) {
    app__acceptor *a = w->data;
    int et = (a->flags & IOMUX_ET) != 0, n = 0;
    (void)revents;
    while (a->running && (et || n < ACCEPT_BATCH)) {
        int fd = app_accept_nb(w->fd);
        if (fd >= 0) {
            n++;
            a->on_fd(a, fd);
        } else if (!accept_failed(a, app_sock_errno())) {
            return;
        }
    }
}

/* ---- proactor: an iomux_acceptor ------------------------------------------------- */

static void on_accepted(iomux_acceptor *acc, iomux_fd fd) {
    app__acceptor *a = acc->data;
    if (fd >= 0) a->on_fd(a, fd);
    else app_log("accept failed: %s; no longer accepting", iomux_strerror(fd));
}

/* ---- both --------------------------------------------------------------------------- */

int app__accept_start(app__acceptor *a, iomux_loop *loop, int lfd, const app_options *o, app__accept_fn on_fd) {
    int rc;
    a->loop = loop;
    a->lfd = lfd;
    a->flags = o->watch_flags;
    a->proactor = o->api == APP_API_PROACTOR;
    a->on_fd = on_fd;
    a->on_stopped = NULL;
    a->running = 1;
    if (a->proactor) {
        a->acc.data = a;
        rc = iomux_acceptor_start(loop, &a->acc, lfd, on_accepted);
    } else {
        iomux_watch_init(loop, &a->w, lfd, on_listener);
        a->w.data = a;
        iomux_timer_init(loop, &a->pause, resume);
        a->pause.data = a;
        rc = iomux_watch_start(&a->w, IOMUX_IN | a->flags);
    }
    if (rc < 0) a->running = 0;
    return rc;
}

static void stopped(app__acceptor *a) {
    app_sock_close(a->lfd);
    a->lfd = -1;
    if (a->on_stopped) a->on_stopped(a);
}

static void acceptor_stopped(iomux_acceptor *acc) {
    stopped(acc->data);
}

static void post_stopped(iomux_loop *loop, void *arg) {
    (void)loop;
    stopped(arg);
}

void app__accept_stop(app__acceptor *a, app__stopped_fn on_stopped) {
    if (!a->running) return;
    a->running = 0;
    a->on_stopped = on_stopped;
    if (a->proactor && iomux_acceptor_stop(&a->acc, acceptor_stopped) == 0) return;
    if (!a->proactor) { /* (a proactor that failed to stop was ended by a fatal error) */
        iomux_watch_stop(&a->w);
        iomux_timer_stop(&a->pause);
    }
    if (iomux_post(a->loop, post_stopped, a) < 0) stopped(a);
}
