/* --model threads: blocking I/O, one thread per connection. The main
 * thread runs a small loop (poll backend) that accepts, starts a thread per
 * connection, joins the threads that ended, and runs the drain: it makes
 * every connection's reads time out after the idle time and interrupts the
 * reads already waiting (SIGUSR1, a no-op handler without SA_RESTART); at
 * the deadline it shuts the connections down. A connection's fd is closed
 * by the main thread after the join, so its number cannot be reused while
 * the drain may still touch it. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define STACK_SIZE (512u * 1024u)
#define ABORT_GRACE_MS 1000
#define INTERRUPT_SIG SIGUSR1

typedef struct tshape tshape;

typedef struct tconn {
    struct tconn *next, *prev;
    tshape *ts;
    pthread_t tid;
    int fd;
} tconn;

enum { RUNNING, DRAINING, ABORTED };

struct tshape {
    const app_spec *spec;
    const app_options *o;
    iomux_loop *loop;
    app__acceptor acc;
    int accepting;
    iomux_signal sigint, sigterm;
    iomux_timer deadline;
    tconn list; /* sentinel */
    size_t count;
    int stage;
    int second; /* the abort comes from a second signal */
};

static void interrupted(int sig) {
    (void)sig;
}

static void finish_if_done(tshape *ts) {
    if (ts->stage == RUNNING || ts->count || ts->accepting) return;
    iomux_timer_stop(&ts->deadline);
    iomux_signal_stop(&ts->sigint);
    iomux_signal_stop(&ts->sigterm);
}

/* On the main thread, once the connection's thread has ended. */
static void joined(iomux_loop *loop, void *arg) {
    tconn *c = arg;
    tshape *ts = c->ts;
    (void)loop;
    pthread_join(c->tid, NULL);
    close(c->fd);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    free(c);
    ts->count--;
    finish_if_done(ts);
}

static void *conn_main(void *arg) {
    tconn *c = arg;
    c->ts->spec->hooks.serve(c->ts->o, c->ts->spec->app, c->fd);
    shutdown(c->fd, SHUT_WR); /* the peer sees the end now; the main thread closes */
    if (iomux_post(c->ts->loop, joined, c) < 0) app_log("cannot report a connection's end");
    return NULL;
}

static void on_fd(app__acceptor *a, int fd) {
    tshape *ts = a->data;
    tconn *c = calloc(1, sizeof(*c));
    pthread_attr_t attr;
    sigset_t block, old;
    int rc;
    if (!c || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) goto fail;
    c->ts = ts;
    c->fd = fd;
    if (ts->stage != RUNNING) app__blocking_idle_timeout(fd, ts->o->drain_idle_ms);
    sigemptyset(&block); /* the thread inherits this mask: signals are the main thread's */
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, STACK_SIZE);
    rc = pthread_create(&c->tid, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) goto fail;
    c->next = &ts->list;
    c->prev = ts->list.prev;
    ts->list.prev->next = c;
    ts->list.prev = c;
    ts->count++;
    return;
fail:
    app_log("cannot start a thread for a connection");
    free(c);
    close(fd);
}

static void accept_stopped(app__acceptor *a) {
    tshape *ts = a->data;
    ts->accepting = 0;
    finish_if_done(ts);
}

static void on_deadline(iomux_timer *t) {
    tshape *ts = t->data;
    tconn *c;
    if (ts->stage == ABORTED) {
        app_log("drain: %zu connection thread(s) still running; exiting", ts->count);
        fflush(NULL);
        _exit(1);
    }
    if (ts->second) app_log("drain: second signal; closing the connections still open");
    else app_log("drain: %u ms passed; closing the connections still open", ts->o->drain_ms);
    ts->stage = ABORTED;
    for (c = ts->list.next; c != &ts->list; c = c->next) shutdown(c->fd, SHUT_RDWR);
    iomux_timer_start(&ts->deadline, ABORT_GRACE_MS, 0);
}

static void on_signal(iomux_signal *s, int signum) {
    tshape *ts = s->data;
    tconn *c;
    (void)signum;
    if (ts->stage == DRAINING) {
        ts->second = 1;
        iomux_timer_start(&ts->deadline, 0, 0); /* a second signal: abort now */
        return;
    }
    if (ts->stage != RUNNING) return;
    ts->stage = DRAINING;
    app__set_draining();
    app__accept_stop(&ts->acc, accept_stopped);
    for (c = ts->list.next; c != &ts->list; c = c->next) { /* timeout first: then no read can miss it */
        app__blocking_idle_timeout(c->fd, ts->o->drain_idle_ms);
        pthread_kill(c->tid, INTERRUPT_SIG);
    }
    iomux_timer_start(&ts->deadline, ts->o->drain_ms, 0);
    finish_if_done(ts);
}

static int start(tshape *ts, int lfd) {
    iomux_config cfg;
    int rc;
    iomux_config_init(&cfg);
    cfg.backend = IOMUX_BACKEND_POLL; /* accepting and signals only: any backend does */
    if ((rc = iomux_loop_new(&ts->loop, &cfg)) < 0) return rc;
    iomux_signal_init(ts->loop, &ts->sigint, on_signal);
    iomux_signal_init(ts->loop, &ts->sigterm, on_signal);
    iomux_timer_init(ts->loop, &ts->deadline, on_deadline);
    ts->sigint.data = ts->sigterm.data = ts->deadline.data = ts->acc.data = ts;
    if ((rc = app__on_signal(INTERRUPT_SIG, interrupted)) < 0 || (rc = iomux_signal_start(&ts->sigint, SIGINT)) < 0 ||
        (rc = iomux_signal_start(&ts->sigterm, SIGTERM)) < 0)
        return rc;
    rc = app__accept_start(&ts->acc, ts->loop, lfd, ts->o, on_fd);
    if (rc == 0) ts->accepting = 1;
    return rc;
}

int app__run_threads(const app_spec *spec, const app_options *o) {
    tshape ts;
    int lfd, port, rc;
    memset(&ts, 0, sizeof(ts));
    ts.spec = spec;
    ts.o = o;
    ts.list.next = ts.list.prev = &ts.list;
    if (app__listen(o, 1, 0, &lfd, &port) < 0) return 1;
    if ((rc = start(&ts, lfd)) < 0) {
        app_log("cannot start: %s", iomux_strerror(rc));
        close(lfd);
        fflush(NULL);
        _exit(1); /* (the half-made loop has handles: no orderly free) */
    }
    app__ready(spec, o, port);
    rc = iomux_run(ts.loop, IOMUX_RUN_DEFAULT); /* until the drain stopped every handle */
    if (rc < 0) app_log("the main loop failed: %s", iomux_strerror(rc));
    if (iomux_loop_free(ts.loop) < 0) app_log("the main loop still has handles at exit");
    return rc < 0 ? 1 : 0;
}
