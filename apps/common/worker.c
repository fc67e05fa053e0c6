/* A worker loop's life, on its own thread (or, for loop 0 of the
 * reuseport shape, the main thread's): the loop is made, the app's
 * loop_start runs, it accepts (or the app does: listen_start), it counts
 * the connections the app holds, drains when told, reports done to the
 * main loop, and is freed once told to quit. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "loops.h"
#include "port.h"

#define FREE_WAIT_MS 2000 /* a loop still busy at the end: run it this long */

static const char *backend_name(iomux_backend b) {
    switch (b) {
    case IOMUX_BACKEND_SELECT: return "select";
    case IOMUX_BACKEND_POLL: return "poll";
    case IOMUX_BACKEND_EPOLL: return "epoll";
    case IOMUX_BACKEND_URING: return "uring";
    case IOMUX_BACKEND_IOCP: return "iocp";
    default: return "default";
    }
}

int app__new_loop(shape *sh, iomux_loop **loop) {
    iomux_config cfg;
    int rc;
    iomux_config_init(&cfg);
    if (sh->spec->hooks.loop_config) sh->spec->hooks.loop_config(sh->o, &cfg);
    cfg.backend = sh->o->backend; /* the model decides, whatever $IOMUX_BACKEND says */
    rc = iomux_loop_new(loop, &cfg);
    if (rc < 0) {
        *loop = NULL;
        app_log("cannot start the %s backend (--model %s): %s (backends in this build: %s)",
                backend_name(cfg.backend), app_model_name(sh->o->model), iomux_strerror(rc), iomux_backend_names());
    }
    return rc;
}

/* Frees a loop; one that still has handles is run a little first. */
void app__free_loop(iomux_loop *loop, const char *what) {
    unsigned long long end = app__now_ms() + FREE_WAIT_MS;
    while (iomux_loop_free(loop) == -EBUSY) {
        if (app__now_ms() > end) {
            app_log("%s still has handles at exit; not freed", what);
            return;
        }
        iomux_run(loop, IOMUX_RUN_NOWAIT);
        usleep(1000);
    }
}

void app__worker_conn(app_loop *l, int fd) {
    l->conns++;
    l->internal->sh->spec->hooks.conn_start(l, fd);
}

static void check_done(app_worker *w) {
    if (!w->pub.draining || w->done || w->pub.conns || w->accepting) return;
    w->done = 1;
    if (iomux_post(w->sh->main, app__loop_done, w) < 0) app_log("loop %u: cannot report its drain", w->pub.index);
}

void app_conn_closed(app_loop *l) {
    if (l->conns) l->conns--;
    check_done(l->internal);
}

app_loop *app_loop_of(iomux_loop *loop) {
    return iomux_loop_data(loop);
}

static void on_worker_fd(app__acceptor *a, int fd) {
    app_worker *w = a->data;
    app__worker_conn(&w->pub, fd);
}

static void keepalive(iomux_timer *t) {
    (void)t;
}

int app__worker_open(app_worker *w) {
    const app_hooks *h = &w->sh->spec->hooks;
    int rc = app__new_loop(w->sh, &w->pub.loop);
    if (rc < 0) return rc;
    iomux_loop_set_data(w->pub.loop, &w->pub);
    iomux_timer_init(w->pub.loop, &w->keepalive, keepalive);
    if ((rc = iomux_timer_start(&w->keepalive, UINT64_MAX, 0)) < 0) return rc;
    if (h->loop_start && (rc = h->loop_start(&w->pub)) < 0) {
        app_log("loop %u: start-up failed: %s", w->pub.index, iomux_strerror(rc));
        return rc;
    }
    w->started = 1;
    if (w->lfd < 0) return 0;
    if (h->listen_start) { /* the app accepts; the listener counts as a connection */
        w->app_lfd = w->lfd;
        w->lfd = -1;
        w->pub.conns++;
        rc = h->listen_start(&w->pub, w->app_lfd);
        if (rc < 0) app_log("loop %u: start-up failed: %s", w->pub.index, iomux_strerror(rc));
        return rc;
    }
    w->acc.data = w;
    rc = app__accept_start(&w->acc, w->pub.loop, w->lfd, w->sh->o, on_worker_fd);
    if (rc < 0) app_log("loop %u: cannot accept: %s", w->pub.index, iomux_strerror(rc));
    else w->accepting = 1;
    return rc;
}

void app__worker_close(app_worker *w) {
    char what[32];
    if (!w->pub.loop) return;
    if (w->started && w->sh->spec->hooks.loop_stop) w->sh->spec->hooks.loop_stop(&w->pub);
    iomux_timer_stop(&w->keepalive);
    snprintf(what, sizeof(what), "loop %u", w->pub.index);
    app__free_loop(w->pub.loop, what);
    w->pub.loop = NULL;
    if (w->app_lfd >= 0) app_sock_close(w->app_lfd);
    w->app_lfd = -1;
}

static void accept_stopped(app__acceptor *a) {
    app_worker *w = a->data;
    w->accepting = 0;
    check_done(w);
}

void app__worker_drain(iomux_loop *loop, void *arg) {
    app_worker *w = arg;
    (void)loop;
    w->pub.draining = 1;
    if (w->accepting) app__accept_stop(&w->acc, accept_stopped);
    w->sh->spec->hooks.drain(&w->pub);
    check_done(w);
}

void app__worker_abort(iomux_loop *loop, void *arg) {
    app_worker *w = arg;
    (void)loop;
    if (!w->done) w->sh->spec->hooks.abort(&w->pub);
}

void app__worker_quit(iomux_loop *loop, void *arg) {
    (void)arg;
    iomux_stop(loop);
}

static void report(shape *sh, int rc) {
    pthread_mutex_lock(&sh->mu);
    sh->reported++;
    if (rc < 0) sh->failed++;
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

void *app__worker_main(void *arg) {
    app_worker *w = arg;
    int rc = app__worker_open(w);
    report(w->sh, rc);
    if (rc == 0) iomux_run(w->pub.loop, IOMUX_RUN_DEFAULT); /* until app__worker_quit */
    app__worker_close(w); /* (on failure the process exits: see start_workers) */
    return NULL;
}

