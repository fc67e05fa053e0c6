/* The Reactor httpd: a watcher and a timer per connection; the callback
 * reads into the loop's one buffer, feeds the session, and writes its
 * output itself (writev for memory, sendfile for files). While output is
 * pending the connection is not read (backpressure: TCP flow control slows
 * a client that pipelines without reading). Level-triggered: one read per
 * readiness report; edge-triggered (epoll-et): until EAGAIN, and again by
 * hand once pending output has gone, since no new edge would come for
 * bytes already waiting. An idle keep-alive connection holds only its
 * struct: no buffer, no parser state. */
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

typedef struct hr_conn {
    struct hr_conn *next, *prev;
    app_loop *l;
    iomux_watch w;
    iomux_timer t;
    iomux_http_session s;
    uint64_t hdr_due;   /* the header deadline (loop ms), or 0 */
    uint8_t state;
} hr_conn;

static httpd_loop *of(app_loop *l) {
    return l->data;
}

/* Gone: off the list, closed (with a reset if abort), freed. */
static void finish(hr_conn *c, int abort) {
    static const struct linger reset = {1, 0};
    httpd_loop *hl = of(c->l);
    iomux_watch_stop(&c->w);
    iomux_timer_stop(&c->t);
    if (abort) setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    close(c->w.fd);
    iomux_http_session_close(&c->s);
    if (c->prev) c->prev->next = c->next;
    else hl->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    app_conn_closed(c->l);
    free(c);
}

static int want(hr_conn *c, unsigned ev) {
    ev |= c->l->opt->watch_flags;
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

/* The one timer: the header deadline, else the send timeout while output
 * waits, else the idle timeout (the linger has its own). */
static void arm(hr_conn *c) {
    const iomux_http_config *cfg = iomux_http_ctx_config(c->s.ctx);
    uint64_t now = iomux_now(c->l->loop), ms;
    if (iomux_http_session_phase(&c->s) != IOMUX_HTTP_HEADERS) c->hdr_due = 0;
    else if (!c->hdr_due) c->hdr_due = now + cfg->header_timeout_ms;
    ms = iomux_http_out_pending(&c->s) ? cfg->send_timeout_ms : cfg->idle_timeout_ms;
    if (c->hdr_due && c->hdr_due - now < ms) ms = c->hdr_due > now ? c->hdr_due - now : 0;
    iomux_timer_start(&c->t, ms, 0);
}

/* All output gone, closing: FIN, then read and drop until the client's
 * FIN (closing with unread bytes would reset and could destroy the
 * response in flight). */
static void linger(hr_conn *c) {
    c->state = LINGER;
    shutdown(c->w.fd, SHUT_WR);
    if (want(c, IOMUX_IN) < 0) finish(c, 1);
    else iomux_timer_start(&c->t, LINGER_MS, 0);
}

static void drop_input(hr_conn *c) {
    char *buf = of(c->l)->buf;
    for (;;) {
        ssize_t n = recv(c->w.fd, buf, READ_BUF, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        finish(c, 0); /* the client's FIN, or an error */
        return;
    }
}

/* Acts on what the session said, then writes, then reads while nothing is
 * pending; one read per call unless edge-triggered. */
static void pump(hr_conn *c, iomux_http_next nx) {
    int et = (c->l->opt->watch_flags & IOMUX_ET) != 0, reads = 0;
    for (;;) {
        int r;
        if (nx == IOMUX_HTTP_ABORT) {
            finish(c, 1);
            return;
        }
        if (nx == IOMUX_HTTP_CLOSE) c->state = CLOSING;
        r = send_out(c);
        if (r < 0) { finish(c, 1); return; }
        if (r == 1) {
            if (want(c, IOMUX_OUT) < 0) { finish(c, 1); return; }
            break;
        }
        if (c->state == CLOSING) {
            linger(c);
            return;
        }
        if (reads++ && !et) {
            if (want(c, IOMUX_IN) < 0) { finish(c, 1); return; }
            break;
        }
        {
            char *buf = of(c->l)->buf;
            ssize_t n = recv(c->w.fd, buf, READ_BUF, MSG_DONTWAIT);
            if (n > 0) {
                iomux_http_ctx_tick(c->s.ctx, iomux_now(c->l->loop));
                nx = iomux_http_feed(&c->s, buf, (size_t)n);
            } else if (n == 0) {
                nx = iomux_http_feed_eof(&c->s);
            } else if (errno == EAGAIN) {
                if (want(c, IOMUX_IN) < 0) { finish(c, 1); return; }
                break;
            } else if (errno != EINTR) {
                { finish(c, 1); return; }
            }
        }
    }
    arm(c);
}

static void on_io(iomux_watch *w, unsigned revents) {
    hr_conn *c = w->data;
    (void)revents; /* the calls say what is possible */
    if (c->state == LINGER) drop_input(c);
    else pump(c, c->state == CLOSING ? IOMUX_HTTP_CLOSE : IOMUX_HTTP_CONTINUE);
}

static void on_timer(iomux_timer *t) {
    hr_conn *c = t->data;
    if (c->state == LINGER || iomux_http_out_pending(&c->s)) {
        finish(c, c->state != LINGER); /* linger over, or the client stopped reading */
        return;
    }
    iomux_http_ctx_tick(c->s.ctx, iomux_now(c->l->loop));
    pump(c, iomux_http_expire(&c->s));
}

void httpd_reactor_conn(app_loop *l, iomux_fd fd) {
    httpd_loop *hl = of(l);
    hr_conn *c = calloc(1, sizeof(*c));
    int one = 1;
    if (!c) {
        close(fd);
        app_conn_closed(l);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->l = l;
    iomux_http_session_init(&c->s, hl->ctx);
    iomux_watch_init(l->loop, &c->w, fd, on_io);
    iomux_timer_init(l->loop, &c->t, on_timer);
    c->w.data = c->t.data = c;
    c->next = hl->conns;
    if (hl->conns) hl->conns->prev = c;
    hl->conns = c;
    if (want(c, IOMUX_IN) < 0) { finish(c, 1); return; }
    arm(c);
}

int httpd_reactor_loop_start(app_loop *l, httpd_loop *hl) {
    iomux_http_config cfg;
    httpd_config(l->opt, &cfg);
    hl->buf = malloc(READ_BUF);
    if (!hl->buf) return -ENOMEM;
    return iomux_http_ctx_new(&hl->ctx, &cfg);
}

/* Idle connections close now (gracefully), the others after the response
 * they are reading or writing ("Connection: close"). */
void httpd_reactor_drain(app_loop *l) {
    hr_conn *c, *next;
    for (c = of(l)->conns; c; c = next) {
        next = c->next; /* pump may free c, never another */
        if (c->state != OPEN || iomux_http_session_shutdown(&c->s) != IOMUX_HTTP_CLOSE) continue;
        c->state = CLOSING; /* after the pending output, if any */
        if (!iomux_http_out_pending(&c->s)) pump(c, IOMUX_HTTP_CLOSE);
    }
}

void httpd_reactor_abort(app_loop *l) {
    while (of(l)->conns) finish(of(l)->conns, 1);
}

void httpd_reactor_loop_stop(app_loop *l) {
    httpd_loop *hl = of(l);
    httpd_reactor_abort(l);
    if (hl->ctx) iomux_http_ctx_free(hl->ctx);
    free(hl->buf);
}
