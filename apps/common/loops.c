/* The event-loop shapes, from the main thread: N worker loops (worker.c),
 * one per thread, each accepting on its own SO_REUSEPORT listener (worker
 * 0 is the main thread's loop), or an acceptor loop on the main thread
 * handing connections to N worker loops with iomux_post. The main loop
 * also watches SIGINT/SIGTERM and runs the drain: DRAIN to every worker,
 * ABORT to those still busy at the deadline, QUIT to all once each
 * reported done. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loops.h"
#include "port.h"

#define ABORT_GRACE_MS 1000 /* after abort(): connections must be gone by then */

/* ---- the acceptor shape's hand-off ------------------------------------------------------- */

static void handoff(iomux_loop *loop, void *arg) {
    app__worker_conn(iomux_loop_data(loop), (int)(intptr_t)arg);
}

static void on_main_fd(app__acceptor *a, int fd) {
    shape *sh = a->data;
    app_worker *w = &sh->w[sh->next++ % sh->n];
    if (iomux_post(w->pub.loop, handoff, (void *)(intptr_t)fd) < 0) app_sock_close(fd);
}

/* ---- the main thread: drain sequencing ------------------------------------------------- */

enum { TO_ALL, TO_BUSY, TO_THREADED };

static void post_all(shape *sh, iomux_post_fn fn, int which) {
    unsigned i;
    for (i = 0; i < sh->n; i++) {
        if (which == TO_BUSY && sh->w[i].main_done) continue;
        if (which == TO_THREADED && !sh->w[i].threaded) continue;
        if (iomux_post(sh->w[i].pub.loop, fn, &sh->w[i]) < 0) app_log("cannot reach loop %u", i);
    }
}

static void unwatch_stop_requests(shape *sh);

static void quit(shape *sh) {
    sh->stage = QUITTING;
    iomux_timer_stop(&sh->deadline);
    unwatch_stop_requests(sh);
    post_all(sh, app__worker_quit, TO_THREADED); /* worker 0 of reuseport: the main loop, below */
    iomux_stop(sh->main);
}

void app__loop_done(iomux_loop *loop, void *arg) {
    app_worker *w = arg;
    shape *sh = w->sh;
    (void)loop;
    w->main_done = 1;
    if (++sh->done == sh->n) quit(sh);
}

static void abort_all(shape *sh, const char *why) {
    sh->stage = ABORTED;
    app_log("drain: %s; closing the connections still open", why);
    post_all(sh, app__worker_abort, TO_BUSY);
    iomux_timer_start(&sh->deadline, ABORT_GRACE_MS, 0);
}

static void on_deadline(iomux_timer *t) {
    shape *sh = t->data;
    char why[64];
    if (sh->stage == DRAINING) {
        snprintf(why, sizeof(why), "%u ms passed", sh->o->drain_ms);
        abort_all(sh, why);
        return;
    }
    app_log("drain: %u loop(s) still have connections %d ms after closing them; exiting", sh->n - sh->done,
            ABORT_GRACE_MS);
    fflush(NULL);
    _exit(1);
}

static void main_accept_stopped(app__acceptor *a) {
    shape *sh = a->data;
    post_all(sh, app__worker_drain, TO_ALL);
}

/* SIGINT/SIGTERM (Windows: a console control event), on the main loop. */
static void stop_requested(shape *sh) {
    if (sh->stage == DRAINING) abort_all(sh, "second signal"); /* no more waiting */
    if (sh->stage != RUNNING) return;
    sh->stage = DRAINING;
    app__set_draining();
    iomux_timer_start(&sh->deadline, sh->o->drain_ms, 0);
    if (sh->acceptor) app__accept_stop(&sh->acc, main_accept_stopped);
    else post_all(sh, app__worker_drain, TO_ALL);
}

#ifdef _WIN32
/* Windows has no SIGINT/SIGTERM to watch (iomux_signal_start says
 * -ENOTSUP): Ctrl-C, Ctrl-Break and the console closing arrive as control
 * events, each on a thread of its own, which hands it to the main loop. */
static shape *volatile ctrl_shape;

static void ctrl_posted(iomux_loop *loop, void *arg) {
    (void)loop;
    stop_requested(arg);
}

static BOOL WINAPI on_ctrl(DWORD type) {
    shape *sh = ctrl_shape;
    (void)type;
    return sh && iomux_post(sh->main, ctrl_posted, sh) == 0;
}

static int watch_stop_requests(shape *sh) {
    ctrl_shape = sh;
    if (!SetConsoleCtrlHandler(on_ctrl, TRUE)) app_log("no console: Ctrl-C will not drain");
    return 0;
}

static void unwatch_stop_requests(shape *sh) {
    (void)sh;
    SetConsoleCtrlHandler(on_ctrl, FALSE);
    ctrl_shape = NULL;
}
#else
static void on_signal(iomux_signal *s, int signum) {
    (void)signum;
    stop_requested(s->data);
}

static int watch_stop_requests(shape *sh) {
    int rc;
    iomux_signal_init(sh->main, &sh->sigint, on_signal);
    iomux_signal_init(sh->main, &sh->sigterm, on_signal);
    sh->sigint.data = sh->sigterm.data = sh;
    if ((rc = iomux_signal_start(&sh->sigint, SIGINT)) < 0 || (rc = iomux_signal_start(&sh->sigterm, SIGTERM)) < 0)
        app_log("cannot watch signals: %s", iomux_strerror(rc));
    return rc;
}

static void unwatch_stop_requests(shape *sh) {
    iomux_signal_stop(&sh->sigint);
    iomux_signal_stop(&sh->sigterm);
}
#endif

/* ---- start-up ----------------------------------------------------------------------- */

/* Starts the threaded workers and waits until each reported; 0, or -1 if
 * one failed (its message is printed). */
static int start_workers(shape *sh) {
    unsigned i, started = 0;
    for (i = 0; i < sh->n; i++) {
        if (!sh->w[i].threaded) continue;
        if (pthread_create(&sh->w[i].tid, NULL, app__worker_main, &sh->w[i]) != 0) {
            app_log("cannot start thread %u", i);
            break;
        }
        started++;
    }
    pthread_mutex_lock(&sh->mu);
    while (sh->reported < started) pthread_cond_wait(&sh->cv, &sh->mu);
    pthread_mutex_unlock(&sh->mu);
    return started == sh->n - (sh->acceptor ? 0u : 1u) && !sh->failed ? 0 : -1;
}

static int start_main(shape *sh) {
    int rc;
    iomux_timer_init(sh->main, &sh->deadline, on_deadline);
    sh->deadline.data = sh;
    if ((rc = watch_stop_requests(sh)) < 0) return rc;
    if (!sh->acceptor) return 0;
    sh->acc.data = sh;
    rc = app__accept_start(&sh->acc, sh->main, sh->lfd, sh->o, on_main_fd);
    if (rc < 0) app_log("cannot accept: %s", iomux_strerror(rc));
    return rc;
}

static int setup(shape *sh, int *fds) {
    unsigned i;
    for (i = 0; i < sh->n; i++) {
        app_worker *w = &sh->w[i];
        w->sh = sh;
        w->pub.opt = sh->o;
        w->pub.app = sh->spec->app;
        w->pub.index = i;
        w->pub.internal = w;
        w->lfd = sh->acceptor ? -1 : fds[i];
        w->app_lfd = -1;
        w->threaded = sh->acceptor || i > 0;
    }
    if (sh->acceptor) {
        sh->lfd = fds[0];
        return app__new_loop(sh, &sh->main);
    }
    if (app__worker_open(&sh->w[0]) < 0) return -1;
    sh->main = sh->w[0].pub.loop;
    return 0;
}

static void teardown(shape *sh) {
    unsigned i;
    for (i = 0; i < sh->n; i++)
        if (sh->w[i].threaded) pthread_join(sh->w[i].tid, NULL);
    if (!sh->acceptor) app__worker_close(&sh->w[0]);
    else app__free_loop(sh->main, "the acceptor loop");
}

int app__run_loops(const app_spec *spec, const app_options *o) {
    shape sh;
    int fds[256], port, rc;
    memset(&sh, 0, sizeof(sh));
    sh.spec = spec;
    sh.o = o;
    sh.n = o->threads;
    sh.acceptor = o->balance == APP_BALANCE_ACCEPTOR;
    if (app__listen(o, sh.acceptor ? 1 : sh.n, !sh.acceptor && sh.n > 1, fds, &port) < 0) return 1;
    sh.w = calloc(sh.n, sizeof(*sh.w));
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    if (!sh.w || setup(&sh, fds) < 0) { /* nothing runs yet, nothing accepts: undo */
        if (sh.w && !sh.acceptor && sh.w[0].app_lfd >= 0) fds[0] = -1; /* worker_close closes it */
        if (sh.w && !sh.acceptor) app__worker_close(&sh.w[0]);
        app__close_all(fds, sh.acceptor ? 1 : sh.n);
        free(sh.w);
        return 1;
    }
    if (start_workers(&sh) < 0 || start_main(&sh) < 0) {
        fflush(NULL);
        _exit(1); /* loops run on other threads: no orderly way back from here */
    }
    app__ready(spec, o, port);
    rc = iomux_run(sh.main, IOMUX_RUN_DEFAULT);
    if (rc < 0) {
        app_log("the main loop failed: %s", iomux_strerror(rc));
        fflush(NULL);
        _exit(1); /* the other loops are not told to quit: do not wait for them */
    }
    teardown(&sh);
    pthread_mutex_destroy(&sh.mu);
    pthread_cond_destroy(&sh.cv);
    free(sh.w);
    return 0;
}
