/* The Reactor echo: a watcher per connection; the callback reads and
 * writes itself. Level-triggered (select, poll, epoll, uring-poll): one
 * read per readiness report. Edge-triggered (epoll-et): read until EAGAIN,
 * since no report comes for data already there. A short write parks the
 * rest and waits for OUT alone (reading stops: the peer is slowed by TCP
 * flow control); once it is sent, reading resumes. With --work-us the
 * work runs inline (busy wait) or, with --offload, on the loop's work pool
 * while the watcher is stopped. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo.h"

typedef struct rconn {
    echo_conn base;     /* first: the ops get back to the rconn */
    iomux_watch w;
    iomux_work work;
    size_t off, len;    /* the echo not yet sent: buf[off, len) */
    unsigned et;        /* IOMUX_ET or 0 */
    int working;        /* offloaded work in flight */
    int dead;           /* closed while working: freed when the work is done */
    char buf[ECHO_BUF];
} rconn;

static void rconn_close(rconn *c, int abort) {
    static const struct linger reset = {1, 0};
    if (c->base.closing) return;
    c->base.closing = 1;
    iomux_watch_stop(&c->w);
    if (abort) setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    close(c->w.fd);
    echo_untrack(&c->base);
    if (c->working) c->dead = 1; /* the work item is the loop's until its done runs */
    else free(c);
}

/* Sets the interest (IN or OUT, with the ET flag), or stops (0). */
static int want(rconn *c, unsigned ev) {
    if (!ev) return iomux_watch_stop(&c->w);
    ev |= c->et;
    if (!iomux_watch_active(&c->w)) return iomux_watch_start(&c->w, ev);
    return c->w.events == ev ? 0 : iomux_watch_update(&c->w, ev);
}

/* Sends what is pending. 0: all sent; 1: waiting for OUT; -1: failed. */
static int flush(rconn *c) {
    while (c->off < c->len) {
        ssize_t n = send(c->w.fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->off += (size_t)n;
            echo_touch(&c->base);
        } else if (n < 0 && errno == EAGAIN) {
            return want(c, IOMUX_OUT) < 0 ? -1 : 1;
        } else if (n < 0 && errno != EINTR) {
            return -1;
        }
    }
    c->off = c->len = 0;
    return 0;
}

static void work(iomux_work *w) {
    rconn *c = w->data;
    app_spin_us(c->base.l->opt->work_us);
}

static void read_ready(rconn *c);

static void work_done(iomux_work *w, int status) {
    rconn *c = w->data;
    int rc;
    (void)status; /* nothing cancels it */
    c->working = 0;
    if (c->dead) {
        free(c);
        return;
    }
    rc = flush(c);
    if (rc < 0 || (rc == 0 && want(c, IOMUX_IN) < 0)) rconn_close(c, 1);
    else if (rc == 0 && c->et) read_ready(c); /* no new edge will come for data already there */
}

/* n bytes arrived in buf: work, then echo. 0: go on reading; 1: wait. */
static int received(rconn *c, size_t n) {
    const app_options *o = c->base.l->opt;
    c->off = 0;
    c->len = n;
    if (o->work_us && o->offload) {
        if (want(c, 0) < 0 || iomux_work_submit(c->base.l->loop, &c->work, work, work_done) < 0) return -1;
        c->working = 1;
        return 1;
    }
    if (o->work_us) app_spin_us(o->work_us);
    return flush(c);
}

static void read_ready(rconn *c) {
    do {
        ssize_t n = recv(c->w.fd, c->buf, sizeof(c->buf), MSG_DONTWAIT);
        int rc;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) { /* end of stream (nothing is pending: reading stops while it is) or an error */
            rconn_close(c, n < 0);
            return;
        }
        echo_touch(&c->base);
        rc = received(c, (size_t)n);
        if (rc < 0) rconn_close(c, 1);
        if (rc) return;
    } while (c->et);
}

static void on_ready(iomux_watch *w, unsigned revents) {
    rconn *c = w->data;
    int rc;
    (void)revents; /* ERR and HUP show in the result of the read or write */
    if (c->len == 0) {
        read_ready(c);
        return;
    }
    rc = flush(c);
    if (rc < 0 || (rc == 0 && want(c, IOMUX_IN) < 0)) rconn_close(c, 1);
    else if (rc == 0 && c->et) read_ready(c);
}

static int rconn_busy(echo_conn *b) {
    rconn *c = (rconn *)b;
    return c->len != 0 || c->working;
}

static void rconn_close_op(echo_conn *b, int abort) {
    rconn_close((rconn *)b, abort);
}

static const echo_conn_ops rconn_ops = {rconn_busy, rconn_close_op};

void echo_reactor_start(app_loop *l, iomux_fd fd) {
    rconn *c = malloc(sizeof(*c));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* each echo leaves at once */
    if (!c) {
        close(fd);
        app_conn_closed(l);
        return;
    }
    c->off = c->len = 0;
    c->working = c->dead = 0;
    c->et = l->opt->watch_flags & IOMUX_ET;
    c->work.data = c;
    iomux_watch_init(l->loop, &c->w, fd, on_ready);
    c->w.data = c;
    echo_track(l, &c->base, &rconn_ops);
    if (want(c, IOMUX_IN) < 0) rconn_close(c, 1);
}
