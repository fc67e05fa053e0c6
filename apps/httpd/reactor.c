/* The Reactor httpd: a watcher per connection; the callback reads into
 * the loop's one buffer, feeds the session, and writes its output itself
 * (writev for memory, sendfile for files). While output is pending the
 * connection is not read (backpressure: TCP flow control slows a client
 * that pipelines without reading). Level-triggered: one read per readiness
 * report; edge-triggered (epoll-et): until EAGAIN, and again by hand once
 * pending output has gone, since no new edge would come for bytes already
 * waiting.
 *
 * Timeouts without a timer per connection: every connection waits in one
 * of four per-loop queues (idle keep-alive or mid-body, headers coming in,
 * output stalled, lingering after our FIN). Within a queue every wait has
 * the same length, so appending at the tail keeps the queue in deadline
 * order (activity moves a connection to the tail), and one loop timer at
 * the earliest head serves them all. An idle keep-alive connection holds
 * its struct (no buffer, no parser state) and two list links. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "httpd.h"

#define READ_BUF 65536
#define LINGER_MS 2000 /* after our FIN, how long to wait for the client's */
#define MAX_IOV 64

enum { OPEN, CLOSING, LINGER };
enum { Q_IDLE, Q_HEADERS, Q_SEND, Q_LINGER, NQ };

/* 152 bytes: the loop is found through w.loop, and the due time is the
 * low 32 bits of the loop's millisecond clock, compared as serial numbers
 * (every wait is far below 2^31 ms). */
typedef struct hr_conn {
    struct hr_conn *next, *prev; /* in its queue */
    iomux_watch w;
    iomux_http_session s;
    uint32_t due;       /* loop ms, low 32 bits: when its queue's wait ends */
    uint8_t state;
    uint8_t q;          /* Q_*, or NQ: in none */
} hr_conn;

#define L(c) app_loop_of((c)->w.loop)

/* now >= due, on 32-bit millisecond stamps. */
static int past(uint32_t due, uint64_t now) {
    return (int32_t)((uint32_t)now - due) >= 0;
}

typedef struct hr_queue {
    hr_conn *head, *tail;
    uint64_t ms;        /* the wait */
} hr_queue;

typedef struct hr_loop {
    iomux_http_ctx *ctx;
    hr_queue q[NQ];
    iomux_timer timer;  /* at the earliest head's due */
    char buf[READ_BUF];
} hr_loop;

static hr_loop *of(app_loop *l) {
    return ((httpd_loop *)l->data)->r;
}

/* ---- the queues ------------------------------------------------------------------ */

static void unlink_conn(hr_loop *r, hr_conn *c) {
    hr_queue *q;
    if (c->q == NQ) return;
    q = &r->q[c->q];
    if (c->prev) c->prev->next = c->next;
    else q->head = c->next;
    if (c->next) c->next->prev = c->prev;
    else q->tail = c->prev;
    c->next = c->prev = NULL;
    c->q = NQ;
}

/* To the tail of queue k, due its wait from now. */
static void enqueue(hr_conn *c, int k) {
    hr_loop *r = of(L(c));
    hr_queue *q = &r->q[k];
    unlink_conn(r, c);
    c->q = (uint8_t)k;
    c->due = (uint32_t)(iomux_now(c->w.loop) + q->ms);
    c->prev = q->tail;
    if (q->tail) q->tail->next = c;
    else q->head = c;
    q->tail = c;
    if (!iomux_timer_active(&r->timer) || iomux_timer_remaining(&r->timer) > q->ms)
        iomux_timer_start(&r->timer, q->ms, 0);
}

/* ---- a connection ---------------------------------------------------------------- */

/* Gone: off its queue, closed (with a reset if abort), freed. */
static void finish(hr_conn *c, int abort) {
    static const struct linger reset = {1, 0};
    iomux_watch_stop(&c->w);
    if (abort) setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    close(c->w.fd);
    iomux_http_session_close(&c->s);
    unlink_conn(of(L(c)), c);
    app_conn_closed(L(c));
    free(c);
}

static int want(hr_conn *c, unsigned ev) {
    ev |= L(c)->opt->watch_flags;
    if (iomux_watch_active(&c->w) && c->w.events == ev) return 0;
    return iomux_watch_start(&c->w, ev);
}

/* Writes the session's output. 0: all gone; 1: the socket is full; -1: failed. */
static int send_out(hr_conn *c) {
    iomux_http_chunk v[MAX_IOV];
    struct iovec iov[MAX_IOV];
    size_t n, k;
    ssize_t put;
    while ((n = iomux_http_out_peek(&c->s, 0, v, MAX_IOV)) > 0) {
        if (!v[0].data) { /* a file range */
            off_t off = (off_t)v[0].offset;
            put = sendfile(c->w.fd, v[0].fd, &off, v[0].len);
            if (put == 0) return -1; /* the file shrank */
        } else {
            struct msghdr m = {.msg_iov = iov};
            for (k = 0; k < n && v[k].data; k++) {
                iov[k].iov_base = (void *)v[k].data;
                iov[k].iov_len = v[k].len;
            }
            m.msg_iovlen = k;
            put = sendmsg(c->w.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (put < 0 && errno == EINTR) continue;
        if (put < 0) return errno == EAGAIN ? 1 : -1;
        iomux_http_out_consume(&c->s, (size_t)put);
    }
    return 0;
}

/* Its queue after some activity: the header deadline runs from the batch
 * that began the request and is not moved by more bytes of it; a batch
 * that answered something began a new request (steady pipelining). */
static void requeue(hr_conn *c, int answered) {
    if (iomux_http_out_pending(&c->s)) enqueue(c, Q_SEND);
    else if (iomux_http_session_phase(&c->s) != IOMUX_HTTP_HEADERS) enqueue(c, Q_IDLE);
    else if (c->q != Q_HEADERS || answered) enqueue(c, Q_HEADERS);
}

/* All output gone, closing: FIN, then read and drop until the client's
 * FIN (closing with unread bytes would reset and could destroy the
 * response in flight). */
static void linger(hr_conn *c) {
    c->state = LINGER;
    shutdown(c->w.fd, SHUT_WR);
    if (want(c, IOMUX_IN) < 0) finish(c, 1);
    else enqueue(c, Q_LINGER);
}

static void drop_input(hr_conn *c) {
    char *buf = of(L(c))->buf;
    for (;;) {
        ssize_t n = recv(c->w.fd, buf, READ_BUF, MSG_DONTWAIT);
        if (n > 0 || (n < 0 && errno == EINTR)) continue;
        if (n < 0 && errno == EAGAIN) return;
        finish(c, 0); /* the client's FIN, or an error */
        return;
    }
}

/* Reads once. 0: fed (*nx says what next); 1: nothing there; -1: failed. */
static int read_once(hr_conn *c, iomux_http_next *nx) {
    char *buf = of(L(c))->buf;
    ssize_t n = recv(c->w.fd, buf, READ_BUF, MSG_DONTWAIT);
    if (n > 0) {
        iomux_http_ctx_tick(c->s.ctx, iomux_now(L(c)->loop));
        *nx = iomux_http_feed(&c->s, buf, (size_t)n);
    } else if (n == 0) {
        *nx = iomux_http_feed_eof(&c->s);
    } else if (errno == EAGAIN) {
        return 1;
    } else if (errno != EINTR) {
        return -1;
    }
    return 0;
}

/* Acts on what the session said, then writes, then reads while nothing is
 * pending; one read per call unless edge-triggered. 0: c lives on, *answered
 * set if there was output; 1: close (linger); -1: reset. */
static int step(hr_conn *c, iomux_http_next nx, int *answered) {
    int et = (L(c)->opt->watch_flags & IOMUX_ET) != 0, reads = 0, r;
    for (;;) {
        if (nx == IOMUX_HTTP_ABORT) return -1;
        if (nx == IOMUX_HTTP_CLOSE) c->state = CLOSING;
        if (iomux_http_out_pending(&c->s)) *answered = 1;
        r = send_out(c);
        if (r < 0) return -1;
        if (r == 1) return want(c, IOMUX_OUT) < 0 ? -1 : 0;
        if (c->state == CLOSING) return 1;
        if (iomux_http_input_held(&c->s)) { /* the output was full: it is sent now */
            nx = iomux_http_resume(&c->s);
            continue;
        }
        if (reads++ && !et) return want(c, IOMUX_IN) < 0 ? -1 : 0;
        r = read_once(c, &nx);
        if (r < 0) return -1;
        if (r == 1) return want(c, IOMUX_IN) < 0 ? -1 : 0;
    }
}

static void pump(hr_conn *c, iomux_http_next nx) {
    int answered = 0, r = step(c, nx, &answered);
    if (r < 0) finish(c, 1);
    else if (r == 1) linger(c);
    else requeue(c, answered);
}

static void on_io(iomux_watch *w, unsigned revents) {
    hr_conn *c = w->data;
    (void)revents; /* the calls say what is possible */
    if (c->state == LINGER) drop_input(c);
    else pump(c, c->state == CLOSING ? IOMUX_HTTP_CLOSE : IOMUX_HTTP_CONTINUE);
}

/* A wait ended. Every branch takes c off its queue's head or moves it to
 * a tail with a later due, so the expiry scan ends. */
static void expired(hr_conn *c) {
    if (c->q == Q_LINGER || c->q == Q_SEND) {
        finish(c, c->q == Q_SEND); /* linger over, or the client stopped reading */
        return;
    }
    iomux_http_ctx_tick(c->s.ctx, iomux_now(L(c)->loop));
    pump(c, iomux_http_expire(&c->s));
}

static void on_timer(iomux_timer *t) {
    hr_loop *r = t->data;
    uint64_t now = iomux_now(t->loop), next = UINT64_MAX;
    for (int k = 0; k < NQ; k++) {
        hr_conn *h;
        while ((h = r->q[k].head) && past(h->due, now)) expired(h);
        if (h && (uint32_t)(h->due - (uint32_t)now) < next) next = (uint32_t)(h->due - (uint32_t)now);
    }
    if (next != UINT64_MAX) iomux_timer_start(t, next, 0);
}

void httpd_reactor_conn(app_loop *l, iomux_fd fd) {
    hr_loop *r = of(l);
    hr_conn *c = calloc(1, sizeof(*c));
    int one = 1;
    if (!c) {
        close(fd);
        app_conn_closed(l);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->q = NQ;
    iomux_http_session_init(&c->s, r->ctx);
    iomux_watch_init(l->loop, &c->w, fd, on_io);
    c->w.data = c;
    enqueue(c, Q_IDLE);
    if (want(c, IOMUX_IN) < 0) finish(c, 1);
}

int httpd_reactor_loop_start(app_loop *l, httpd_loop *hl) {
    iomux_http_config cfg;
    const iomux_http_config *eff;
    hr_loop *r = calloc(1, sizeof(*r));
    int rc;
    if (!r) return -ENOMEM;
    httpd_config(l->opt, &cfg);
    if ((rc = iomux_http_ctx_new(&r->ctx, &cfg)) < 0) {
        free(r);
        return rc;
    }
    eff = iomux_http_ctx_config(r->ctx);
    r->q[Q_IDLE].ms = eff->idle_timeout_ms;
    r->q[Q_HEADERS].ms = eff->header_timeout_ms;
    r->q[Q_SEND].ms = eff->send_timeout_ms;
    r->q[Q_LINGER].ms = LINGER_MS;
    iomux_timer_init(l->loop, &r->timer, on_timer);
    r->timer.data = r;
    hl->r = r;
    return 0;
}

/* Idle connections close now (gracefully), the others after the response
 * they are reading or writing ("Connection: close"). */
void httpd_reactor_drain(app_loop *l) {
    hr_loop *r = of(l);
    for (int k = 0; k < NQ; k++) {
        hr_conn *c, *next, *last = r->q[k].tail;
        for (c = r->q[k].head; c; c = next) {
            /* pump may requeue c at this queue's tail, never touch another */
            next = c == last ? NULL : c->next;
            if (c->state != OPEN || iomux_http_session_shutdown(&c->s) != IOMUX_HTTP_CLOSE) continue;
            c->state = CLOSING; /* after the pending output, if any */
            if (!iomux_http_out_pending(&c->s)) pump(c, IOMUX_HTTP_CLOSE);
        }
    }
}

void httpd_reactor_abort(app_loop *l) {
    hr_loop *r = of(l);
    for (int k = 0; k < NQ; k++)
        while (r->q[k].head) finish(r->q[k].head, 1);
}

void httpd_reactor_loop_stop(app_loop *l) {
    hr_loop *r = of(l);
    if (!r) return;
    httpd_reactor_abort(l);
    iomux_timer_stop(&r->timer);
    iomux_http_ctx_free(r->ctx);
    free(r);
    ((httpd_loop *)l->data)->r = NULL;
}
