/* The Reactor echo: a watcher per connection; the callback reads and
 * writes itself. Level-triggered (select, poll, epoll, uring-poll): one
 * read per readiness report. Edge-triggered (epoll-et): read until EAGAIN,
 * since no report comes for data already there. Reads land in the loop's
 * one buffer and are sent back from there; only what the socket does not
 * take at once (or what goes to the work pool) is copied into a held
 * block, so an idle connection holds no buffer. A short write parks the
 * rest and waits for OUT alone (reading stops: the peer is slowed by TCP
 * flow control); once it is sent, reading resumes. With --work-us the
 * work runs inline (busy wait) or, with --offload, on the loop's work pool
 * while the watcher is stopped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "echo.h"
#include "port.h"

/* Bytes not yet echoed, and the work item while they are at work. */
typedef struct held {
    iomux_work work;
    size_t off, len;
    char data[];
} held;

typedef struct rconn {
    echo_conn base;     /* first: the ops get back to the rconn */
    iomux_watch w;
    held *h;            /* NULL when nothing is pending */
    uint8_t et;         /* 1 under IOMUX_ET */
    uint8_t working;    /* offloaded work in flight */
    uint8_t dead;       /* closed while working: freed when the work is done */
} rconn;

static void rconn_close(rconn *c, int abort) {
    static const struct linger reset = {1, 0};
    if (c->base.closing) return;
    c->base.closing = 1;
    iomux_watch_stop(&c->w);
    if (abort) setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, APP_SOCKOPT(&reset), sizeof(reset));
    app_sock_close(c->w.fd);
    echo_untrack(&c->base);
    if (c->working) {
        c->dead = 1; /* the work item is the loop's until its done runs */
        return;
    }
    free(c->h);
    free(c);
}

/* Sets the interest (IN or OUT, with the ET flag), or stops (0). */
static int want(rconn *c, unsigned ev) {
    if (!ev) return iomux_watch_stop(&c->w);
    ev |= c->et ? IOMUX_ET : 0;
    if (!iomux_watch_active(&c->w)) return iomux_watch_start(&c->w, ev);
    return c->w.events == ev ? 0 : iomux_watch_update(&c->w, ev);
}

/* Sends p[0, len); returns the bytes sent (may be short), or -1. */
static ssize_t put(rconn *c, const char *p, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->w.fd, p + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            echo_touch(&c->base);
        } else if (n < 0 && app_sock_errno() == EAGAIN) {
            break;
        } else if (n < 0 && app_sock_errno() != EINTR) {
            return -1;
        }
    }
    return (ssize_t)off;
}

/* Keeps p[0, len) for later (the rest of a short write, or work). */
static int hold(rconn *c, const char *p, size_t len) {
    c->h = malloc(sizeof(*c->h) + len);
    if (!c->h) return -1;
    memcpy(c->h->data, p, len);
    c->h->off = 0;
    c->h->len = len;
    c->h->work.data = c;
    return 0;
}

/* Sends what is held. 0: all sent; 1: waiting for OUT; -1: failed. */
static int flush(rconn *c) {
    ssize_t n = put(c, c->h->data + c->h->off, c->h->len - c->h->off);
    if (n < 0) return -1;
    c->h->off += (size_t)n;
    if (c->h->off < c->h->len) return want(c, IOMUX_OUT) < 0 ? -1 : 1;
    free(c->h);
    c->h = NULL;
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
        free(c->h);
        free(c);
        return;
    }
    rc = flush(c);
    if (rc < 0 || (rc == 0 && want(c, IOMUX_IN) < 0)) rconn_close(c, 1);
    else if (rc == 0 && c->et) read_ready(c); /* no new edge will come for data already there */
}

/* n bytes arrived in buf (the loop's): work, then echo. 0: go on
 * reading; 1: wait; -1: failed. */
static int received(rconn *c, const char *buf, size_t n) {
    const app_options *o = c->base.l->opt;
    ssize_t sent;
    if (o->work_us && o->offload) {
        if (hold(c, buf, n) < 0 || want(c, 0) < 0) return -1;
        if (iomux_work_submit(c->base.l->loop, &c->h->work, work, work_done) < 0) return -1;
        c->working = 1;
        return 1;
    }
    if (o->work_us) app_spin_us(o->work_us);
    sent = put(c, buf, n);
    if (sent < 0) return -1;
    if ((size_t)sent == n) return 0;
    if (hold(c, buf + sent, n - (size_t)sent) < 0) return -1;
    return want(c, IOMUX_OUT) < 0 ? -1 : 1;
}

static void read_ready(rconn *c) {
    char *buf = echo_buffer(c->base.l);
    do {
        ssize_t n = recv(c->w.fd, buf, ECHO_BUF, MSG_DONTWAIT);
        int rc;
        if (n < 0 && app_sock_errno() == EINTR) continue;
        if (n < 0 && app_sock_errno() == EAGAIN) return;
        if (n <= 0) { /* end of stream (nothing is pending: reading stops while it is) or an error */
            rconn_close(c, n < 0);
            return;
        }
        echo_touch(&c->base);
        rc = received(c, buf, (size_t)n);
        if (rc < 0) rconn_close(c, 1);
        if (rc) return;
    } while (c->et);
}

static void on_ready(iomux_watch *w, unsigned revents) {
    rconn *c = w->data;
    int rc;
    (void)revents; /* ERR and HUP show in the result of the read or write */
    if (!c->h) {
        read_ready(c);
        return;
    }
    rc = flush(c);
    if (rc < 0 || (rc == 0 && want(c, IOMUX_IN) < 0)) rconn_close(c, 1);
    else if (rc == 0 && c->et) read_ready(c);
}

static int rconn_busy(echo_conn *b) {
    rconn *c = (rconn *)b;
    return c->h != NULL || c->working;
}

static void rconn_close_op(echo_conn *b, int abort) {
    rconn_close((rconn *)b, abort);
}

static const echo_conn_ops rconn_ops = {rconn_busy, rconn_close_op};

void echo_reactor_start(app_loop *l, iomux_fd fd) {
    rconn *c = calloc(1, sizeof(*c));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, APP_SOCKOPT(&one), sizeof(one)); /* each echo leaves at once */
    if (!c) {
        app_sock_close(fd);
        app_conn_closed(l);
        return;
    }
    c->et = (l->opt->watch_flags & IOMUX_ET) != 0;
    iomux_watch_init(l->loop, &c->w, fd, on_ready);
    c->w.data = c;
    echo_track(l, &c->base, &rconn_ops);
    if (want(c, IOMUX_IN) < 0) rconn_close(c, 1);
}
