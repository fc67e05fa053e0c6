/* The Proactor echo, on iomux_conn (<iomux/net.h>): on_data queues the
 * same bytes with iomux_conn_write. The connection's watermarks give the
 * backpressure: above the high one it stops reading until the peer has
 * taken the echo. With --work-us the work runs inline (busy wait) or, with
 * --offload, on the loop's work pool while reading is stopped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <iomux/net.h>

#include "echo.h"
#include "port.h"

typedef struct pconn {
    echo_conn base;    /* first: the ops get back to the pconn */
    iomux_conn conn;
    iomux_work work;
    char *held;        /* --offload: the bytes at work */
    size_t held_len;
    int working;       /* offloaded work in flight */
    int eof;           /* the peer finished while the work was in flight */
    int closed;        /* on_close ran */
} pconn;

static void finish(pconn *c) {
    echo_untrack(&c->base);
    free(c->held);
    free(c);
}

static void work(iomux_work *w) {
    pconn *c = w->data;
    app_spin_us(c->base.l->opt->work_us);
}

static void work_done(iomux_work *w, int status) {
    pconn *c = w->data;
    (void)status;
    c->working = 0;
    if (c->closed) {
        finish(c);
        return;
    }
    if (iomux_conn_write(&c->conn, c->held, c->held_len) < 0) iomux_conn_close(&c->conn, IOMUX_CONN_ABORT);
    free(c->held);
    c->held = NULL;
    if (c->eof) iomux_conn_close(&c->conn, IOMUX_CONN_GRACEFUL);
    else iomux_conn_read_start(&c->conn);
}

static int offload(pconn *c, const void *data, size_t len) {
    c->held = malloc(len);
    if (!c->held) return -ENOMEM;
    memcpy(c->held, data, len);
    c->held_len = len;
    iomux_conn_read_stop(&c->conn); /* one message at work at a time, in order */
    if (iomux_work_submit(c->conn.loop, &c->work, work, work_done) < 0) return -ENOMEM;
    c->working = 1;
    return 0;
}

static void on_data(iomux_conn *conn, const void *data, size_t len) {
    pconn *c = conn->data;
    const app_options *o = c->base.l->opt;
    echo_touch(&c->base);
    if (o->work_us && o->offload) {
        if (offload(c, data, len) < 0) iomux_conn_close(conn, IOMUX_CONN_ABORT);
        return;
    }
    if (o->work_us) app_spin_us(o->work_us);
    if (iomux_conn_write(conn, data, len) < 0) iomux_conn_close(conn, IOMUX_CONN_ABORT);
}

static void on_eof(iomux_conn *conn) {
    pconn *c = conn->data;
    if (c->working) c->eof = 1; /* close once that echo is queued */
    else iomux_conn_close(conn, IOMUX_CONN_GRACEFUL);
}

static void on_drain(iomux_conn *conn) {
    echo_touch(conn->data); /* sent: the drain's quiet time counts from here */
}

static void on_close(iomux_conn *conn, int reason) {
    pconn *c = conn->data;
    (void)reason; /* a peer that went away is no news for an echo server */
    c->closed = c->base.closing = 1;
    if (!c->working) finish(c);
}

static const iomux_conn_callbacks callbacks = {
    .on_data = on_data, .on_eof = on_eof, .on_drain = on_drain, .on_close = on_close};

static int pconn_busy(echo_conn *b) {
    pconn *c = (pconn *)b;
    return c->working || iomux_conn_queued(&c->conn) != 0;
}

static void pconn_close(echo_conn *b, int abort) {
    pconn *c = (pconn *)b;
    if (c->closed) return;
    c->base.closing = 1;
    iomux_conn_close(&c->conn, abort ? IOMUX_CONN_ABORT : IOMUX_CONN_GRACEFUL);
}

static const echo_conn_ops pconn_ops = {pconn_busy, pconn_close};

void echo_proactor_start(app_loop *l, iomux_fd fd) {
    pconn *c = calloc(1, sizeof(*c));
    int rc = c ? iomux_conn_start(l->loop, &c->conn, fd, &callbacks, NULL) : -ENOMEM;
    if (rc < 0) {
        free(c);
        app_sock_close(fd);
        app_conn_closed(l);
        return;
    }
    c->conn.data = c;
    c->work.data = c;
    echo_track(l, &c->base, &pconn_ops);
}
