/* The ping-pong echo server, written once per API so each model is used the
 * way it is meant to be: the Reactor reads and writes itself when told the
 * fd is ready; the Proactor asks the loop to receive and send and is told
 * when that is done. The server echoes whatever arrives. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pingpong.h"

#define BUF 4096
#define TX_SLOTS 4

static iomux_loop *g_loop;

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- Reactor ---------------------------------------------------------------------- */

typedef struct rconn {
    iomux_watch w;
    size_t off, len; /* unsent echo, when a write was short */
    char buf[BUF];
} rconn;

static void rconn_close(rconn *c) {
    iomux_watch_stop(&c->w);
    close(c->w.fd);
    free(c);
}

/* Echoes buf; a short write parks the rest and waits for OUT. */
static int echo_back(rconn *c, size_t n) {
    ssize_t w = write(c->w.fd, c->buf, n);
    if (w < 0 && errno != EAGAIN) return -1;
    if (w < 0) w = 0;
    if ((size_t)w < n) {
        c->off = (size_t)w;
        c->len = n;
        iomux_watch_update(&c->w, IOMUX_OUT | (c->w.events & IOMUX_ET));
    }
    return 0;
}

static void on_conn(iomux_watch *w, unsigned revents) {
    rconn *c = w->data;
    int et = (w->events & IOMUX_ET) != 0;
    if (c->len) { /* finishing a short write */
        ssize_t n = write(w->fd, c->buf + c->off, c->len - c->off);
        if (n < 0 && errno != EAGAIN) return rconn_close(c);
        if (n > 0) c->off += (size_t)n;
        if (c->off < c->len) return;
        c->len = 0;
        iomux_watch_update(w, IOMUX_IN | (et ? IOMUX_ET : 0u));
        return;
    }
    (void)revents;
    do {
        ssize_t n = read(w->fd, c->buf, sizeof(c->buf));
        if (n == 0 || (n < 0 && errno != EAGAIN)) return rconn_close(c);
        if (n < 0) return;
        if (echo_back(c, (size_t)n) < 0) return rconn_close(c);
        if ((size_t)n < sizeof(c->buf)) return; /* short read: drained */
    } while (et && !c->len);
}

static void on_listen(iomux_watch *w, unsigned revents) {
    int fd;
    (void)revents;
    while ((fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        rconn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        nodelay(fd);
        iomux_watch_init(w->loop, &c->w, fd, on_conn);
        c->w.data = c;
        if (iomux_watch_start(&c->w, IOMUX_IN | (w->events & IOMUX_ET)) < 0) rconn_close(c);
    }
}

/* ---- Proactor ------------------------------------------------------------------------- */

/* Multishot recv into pool buffers: each arrival is echoed straight from
 * its pool buffer, released when the send completes. A few send slots
 * cover a message that arrives in pieces while the previous echo is out. */
typedef struct tx_slot {
    iomux_op op; /* first: the callback gets back to its slot */
    void *buf;   /* the pool buffer being echoed */
} tx_slot;

typedef struct pconn {
    iomux_op rx, close;
    tx_slot tx[TX_SLOTS];
    int fd, sending, closing;
} pconn;

static void on_pclosed(iomux_op *op) {
    free(op->data);
}

static void pconn_close(pconn *c) {
    if (c->closing) return;
    c->closing = 1;
    if (iomux_close(g_loop, &c->close, c->fd, on_pclosed) < 0) {
        close(c->fd);
        free(c);
    }
}

static void on_sent(iomux_op *op) {
    pconn *c = op->data;
    tx_slot *slot = (tx_slot *)(void *)op;
    iomux_buf_release(op->loop, slot->buf);
    c->sending--;
    if (op->result < 0) pconn_close(c);
    else if (c->closing && c->sending == 0 && !iomux_op_active(&c->rx)) pconn_close(c);
}

static void on_recv(iomux_op *op) {
    pconn *c = op->data;
    int i;
    if (op->result <= 0) { /* final: end of stream, error, cancel */
        if (c->sending == 0) pconn_close(c);
        else c->closing = 1;
        return;
    }
    for (i = 0; i < TX_SLOTS && iomux_op_active(&c->tx[i].op); i++) {
    }
    if (i == TX_SLOTS || iomux_send(op->loop, &c->tx[i].op, c->fd, op->buf, (size_t)op->result, on_sent) < 0) {
        iomux_buf_release(op->loop, op->buf);
        iomux_cancel(op);
        return;
    }
    c->tx[i].op.data = c;
    c->tx[i].buf = op->buf;
    c->sending++;
}

static void on_accept(iomux_op *op) {
    pconn *c;
    if (op->result < 0) return;
    c = calloc(1, sizeof(*c));
    if (!c) {
        close((int)op->result);
        return;
    }
    c->fd = (int)op->result;
    nodelay(c->fd);
    c->rx.data = c->close.data = c;
    if (iomux_recv(op->loop, &c->rx, c->fd, NULL, 0, IOMUX_OP_MULTISHOT, on_recv) < 0) pconn_close(c);
}

/* ---- the server ----------------------------------------------------------------------- */

static void on_term(iomux_signal *s, int signum) {
    (void)signum;
    iomux_stop(s->loop);
}

static int listen_any(int *port) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

int pp_server(const pp_server_opts *o) {
    iomux_config cfg;
    iomux_watch lw;
    iomux_op acc;
    iomux_signal term;
    int port = 0, lfd, rc;
    pp_pin(o->cpu);
    iomux_config_init(&cfg);
    cfg.backend = o->backend;
    cfg.pool_buffers = 4096;
    cfg.pool_buffer_size = 2048;
    rc = iomux_loop_new(&g_loop, &cfg);
    if (rc < 0) return rc;
    lfd = listen_any(&port);
    if (lfd < 0) return lfd;
    iomux_signal_init(g_loop, &term, on_term);
    iomux_signal_start(&term, SIGTERM);
    if (o->api == PP_PROACTOR) {
        rc = iomux_accept(g_loop, &acc, lfd, IOMUX_OP_MULTISHOT, on_accept);
    } else {
        iomux_watch_init(g_loop, &lw, lfd, on_listen);
        rc = iomux_watch_start(&lw, IOMUX_IN | (o->api == PP_REACTOR_ET ? IOMUX_ET : 0u));
    }
    if (rc < 0) return rc;
    if (write(o->ready_fd, &port, sizeof(port)) != (ssize_t)sizeof(port)) return -EIO;
    rc = iomux_run(g_loop, IOMUX_RUN_DEFAULT);
    return rc < 0 ? rc : 0; /* exiting: the kernel closes the rest */
}
