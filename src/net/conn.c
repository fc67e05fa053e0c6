/* The connection's life cycle, its reading side, and closing.
 *
 * Two ops do all the I/O: rx (a multishot pool recv) and tx (one send or
 * sendfile at a time). There is no third op for closing: the fd is closed
 * with whichever of the two is idle, after cancelling the others if both
 * are busy (saves an iomux_op per connection). on_close runs from the last
 * final callback of the three (recv, send, close), so every op has ended
 * by then; each final callback ends with iomux__conn_maybe_finish, and
 * touches nothing after it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <netinet/tcp.h>
#endif

#include "conn.h"

static int reading_wanted(const iomux_conn *c) {
    return !(c->internal.flags & (CF_USER_STOP | CF_THROTTLE | CF_CLOSING | CF_CLOSE_FD));
}

/* The recv runs while we deliver, and while a graceful close discards
 * (unread data at close(2) would reset the connection). */
static int rx_should_run(const iomux_conn *c) {
    uint32_t f = c->internal.flags;
    if (f & (CF_EOF | CF_CLOSE_FD)) return 0;
    return (f & CF_CLOSING) || reading_wanted(c);
}

void iomux__conn_enter(iomux_conn *c) {
    c->internal.depth++;
}

void iomux__conn_leave(iomux_conn *c) {
    if (--c->internal.depth == 0) iomux__conn_pump(c);
}

/* ---- held data (reading stopped with data in flight) ----------------------------- */

/* Copies what arrived while reading was stopped and gives its pool buffer
 * back at once: a connection that stays stopped (a peer that does not read
 * our replies) must not pin the pool, which every connection shares. */
static int hold(iomux_conn *c, const void *buf, size_t len) {
    iomux__conn_held *h = c->internal.held;
    size_t have = h ? h->len : 0, cap = h ? h->cap : 0;
    if (have + len > cap) {
        iomux__conn_held *nh;
        cap = cap * 2 > have + len ? cap * 2 : have + len;
        nh = iomux__realloc(c->loop, h, sizeof(*nh) + cap);
        if (!nh) return -ENOMEM;
        if (!h) nh->off = 0;
        nh->len = have;
        nh->cap = cap;
        c->internal.held = h = nh;
    }
    memcpy(h->data + h->len, buf, len);
    h->len += len;
    return 0;
}

static void drop_held(iomux_conn *c) {
    iomux__free(c->loop, c->internal.held);
    c->internal.held = NULL;
}

/* ---- reading ---------------------------------------------------------------------- */

static void deliver(iomux_conn *c, const void *data, size_t len) {
    c->internal.last = iomux_now(c->loop);
    iomux__conn_enter(c);
    c->cb->on_data(c, data, len);
    iomux__conn_leave(c);
}

static void arrival(iomux_conn *c, void *buf, size_t len) {
    if (c->internal.flags & (CF_CLOSING | CF_CLOSE_FD)) {
        /* closing: discarded */
    } else if (!reading_wanted(c) || c->internal.held) { /* stopped, or older data waits */
        if (hold(c, buf, len) < 0) iomux__conn_fail(c, -ENOMEM);
    } else {
        c->internal.last = iomux_now(c->loop);
        iomux__conn_enter(c);
        c->cb->on_data(c, buf, len);
        iomux_buf_release(c->loop, buf); /* before the sends: the pool is shared */
        iomux__conn_leave(c);
        return;
    }
    iomux_buf_release(c->loop, buf);
}

/* Held data first, then the end of stream, while reading is wanted. Held
 * data goes in pieces no larger than a default pool buffer, with the
 * watermark checked between them, as if it were arriving now: the queue
 * bound (high watermark + one read) holds for it too. */
#define HELD_PIECE 4096

static void deliver_pending(iomux_conn *c) {
    iomux__conn_held *h;
    while ((h = c->internal.held) != NULL && reading_wanted(c)) {
        size_t n = h->len - h->off < HELD_PIECE ? h->len - h->off : HELD_PIECE;
        h->off += n;
        c->internal.held = NULL; /* ours during the call: a close in on_data must not free it */
        deliver(c, h->data + h->off - n, n);
        if (h->off < h->len && !(c->internal.flags & (CF_CLOSING | CF_CLOSE_FD))) c->internal.held = h;
        else iomux__free(c->loop, h);
    }
    if (c->internal.held || !(c->internal.flags & CF_EOF) || (c->internal.flags & CF_EOF_TOLD) ||
        !reading_wanted(c))
        return;
    c->internal.flags |= CF_EOF_TOLD;
    if (!c->cb->on_eof) {
        iomux_conn_close(c, IOMUX_CONN_GRACEFUL);
        return;
    }
    iomux__conn_enter(c);
    c->cb->on_eof(c);
    iomux__conn_leave(c);
}

static void try_close(iomux_conn *c);

/* After the rx op's final callback (recv or kick): what the state asks. */
static void rx_after(iomux_conn *c) {
    if (c->internal.flags & CF_CLOSE_FD) {
        try_close(c);
    } else {
        if (!(c->internal.flags & CF_CLOSING)) deliver_pending(c);
        if ((c->internal.flags & (CF_LINGER | CF_EOF)) == (CF_LINGER | CF_EOF)) iomux__conn_close_fd(c);
        else iomux__conn_rx_update(c);
    }
    iomux__conn_maybe_finish(c);
}

static void rx_cb(iomux_op *op) {
    iomux_conn *c = op->data;
    if (op->flags & IOMUX_OP_MORE) {
        arrival(c, op->buf, (size_t)op->result);
        return;
    }
    c->internal.rxs = RX_IDLE;
    c->internal.flags &= ~(uint32_t)CF_RX_CANCEL;
    if (op->result > 0) arrival(c, op->buf, (size_t)op->result); /* not multishot after all */
    else if (op->result == 0) c->internal.flags |= CF_EOF;
    else if (op->result != -ECANCELED) iomux__conn_fail(c, (int)op->result);
    rx_after(c);
}

/* A zero timeout on the idle rx op: held data (or EOF) is delivered from
 * the loop, never inside iomux_conn_read_start. */
static void kick_cb(iomux_op *op) {
    iomux_conn *c = op->data;
    c->internal.rxs = RX_IDLE;
    rx_after(c);
}

static int rx_start(iomux_conn *c) {
    c->internal.rx.data = c;
    c->internal.rxs = RX_RECV;
    return iomux_recv(c->loop, &c->internal.rx, c->fd, NULL, 0, IOMUX_OP_MULTISHOT, rx_cb);
}

void iomux__conn_rx_update(iomux_conn *c) {
    int rc = 0;
    if (c->internal.flags & CF_CLOSE_FD) return; /* try_close owns the ops now */
    if (c->internal.rxs == RX_RECV) {
        if (!rx_should_run(c) && !(c->internal.flags & CF_RX_CANCEL)) {
            c->internal.flags |= CF_RX_CANCEL;
            iomux_cancel(&c->internal.rx);
        }
        return;
    }
    if (c->internal.rxs != RX_IDLE) return; /* its final callback calls us again */
    if (reading_wanted(c) &&
        (c->internal.held || (c->internal.flags & (CF_EOF | CF_EOF_TOLD)) == CF_EOF)) {
        c->internal.rx.data = c;
        c->internal.rxs = RX_KICK;
        rc = iomux_timeout(c->loop, &c->internal.rx, 0, kick_cb);
    } else if (rx_should_run(c)) {
        rc = rx_start(c);
    }
    if (rc < 0) {
        c->internal.rxs = RX_IDLE;
        iomux__conn_fail(c, rc);
    }
}

/* ---- closing ---------------------------------------------------------------------- */

static void close_cb(iomux_op *op) {
    iomux_conn *c = op->data;
    if (op == &c->internal.rx) c->internal.rxs = RX_IDLE;
    else c->internal.txs = TX_IDLE;
    c->internal.flags |= CF_CLOSE_DONE;
    iomux__conn_maybe_finish(c);
}

static void cancel_busy(iomux_conn *c) {
    if (c->internal.rxs != RX_IDLE && !(c->internal.flags & CF_RX_CANCEL)) {
        c->internal.flags |= CF_RX_CANCEL;
        iomux_cancel(&c->internal.rx);
    }
    if (c->internal.txs != TX_IDLE && !(c->internal.flags & CF_TX_CANCEL)) {
        c->internal.flags |= CF_TX_CANCEL;
        iomux_cancel(&c->internal.tx);
    }
}

/* Closes the fd with an idle op; if both are busy, cancels them and the
 * first to end comes back here (rx_after, the send's callback). */
static void try_close(iomux_conn *c) {
    iomux_op *op;
    int rc;
    if (!(c->internal.flags & CF_CLOSE_FD) || (c->internal.flags & CF_FD_CLOSED)) return;
    if (c->internal.txs == TX_IDLE) {
        op = &c->internal.tx;
        c->internal.txs = TX_CLOSE;
    } else if (c->internal.rxs == RX_IDLE) {
        op = &c->internal.rx;
        c->internal.rxs = RX_CLOSE;
    } else {
        cancel_busy(c);
        return;
    }
    c->internal.flags |= CF_FD_CLOSED;
    op->data = c;
    rc = iomux_close(c->loop, op, c->fd, close_cb);
    if (rc < 0) { /* cannot happen with a reserved fd; still, never leak it */
        iomux__sock_close(c->fd);
        if (iomux_timeout(c->loop, op, 0, close_cb) < 0) {
            /* no callback will come for this op: mark it idle, or
             * maybe_finish would wait for it forever */
            if (op == &c->internal.rx) c->internal.rxs = RX_IDLE;
            else c->internal.txs = TX_IDLE;
            c->internal.flags |= CF_CLOSE_DONE;
        }
    }
}

void iomux__conn_close_fd(iomux_conn *c) {
    c->internal.flags |= CF_CLOSE_FD;
    iomux_timer_stop(&c->internal.timer);
    drop_held(c);
    try_close(c);
}

void iomux__conn_fail(iomux_conn *c, int err) {
    struct linger lg = {1, 0};
    if (!c->internal.reason) c->internal.reason = err;
    if (c->internal.flags & CF_CLOSE_FD) return;
    /* a reset: the peer must not take a cut stream for a complete one */
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, IOMUX__SOCKOPT(&lg), sizeof(lg));
    iomux__conn_close_fd(c);
}

void iomux__conn_maybe_finish(iomux_conn *c) {
    if (!(c->internal.flags & CF_CLOSE_DONE) || !(c->internal.flags & CF_ACTIVE) ||
        c->internal.rxs != RX_IDLE || c->internal.txs != TX_IDLE)
        return;
    c->internal.flags &= ~(uint32_t)CF_ACTIVE;
    iomux_timer_stop(&c->internal.timer);
    drop_held(c);
    iomux__conn_queue_free(c);
    c->cb->on_close(c, c->internal.reason); /* may free c */
}

/* ---- the API ---------------------------------------------------------------------- */

static int check_opts(const iomux_conn_opts *o, uint32_t *high, uint32_t *low) {
    size_t h = o && o->high_water ? o->high_water : IOMUX_CONN_HIGH_WATER_DEFAULT;
    size_t l = o && o->low_water ? o->low_water : h / 4;
    if (h > UINT32_MAX || l >= h) return -EINVAL;
    *high = (uint32_t)h;
    *low = (uint32_t)l;
    return 0;
}

static int prepare_fd(iomux_fd fd) {
    int one = 1, rc = iomux__net_nonblock(fd);
    if (rc < 0) return rc;
    /* the queue gathers small writes itself: Nagle would only add delay
     * (fails harmlessly on AF_UNIX) */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, IOMUX__SOCKOPT(&one), sizeof(one));
    return 0;
}

int iomux_conn_start(iomux_loop *loop, iomux_conn *c, iomux_fd fd, const iomux_conn_callbacks *cb,
                     const iomux_conn_opts *opts) {
    uint32_t high, low;
    int rc;
    if (!loop || !c || !cb || !cb->on_data || !cb->on_close || fd < 0) return -EINVAL;
    if ((rc = check_opts(opts, &high, &low)) < 0 || (rc = prepare_fd(fd)) < 0) return rc;
    memset(&c->internal, 0, sizeof(c->internal));
    c->loop = loop;
    c->fd = fd;
    c->cb = cb;
    c->internal.high = high;
    c->internal.low = low;
    c->internal.idle_ms = opts ? opts->idle_ms : 0;
    c->internal.last = iomux_now(loop);
    c->internal.tx.data = c;
    iomux_timer_init(loop, &c->internal.timer, iomux__conn_timer_cb);
    c->internal.timer.data = c;
    if ((rc = iomux__conn_timer_arm(c)) < 0) return rc;
    if ((rc = rx_start(c)) < 0) {
        iomux_timer_stop(&c->internal.timer);
        return rc;
    }
    c->internal.flags = CF_ACTIVE;
    return 0;
}

void iomux_conn_read_stop(iomux_conn *c) {
    c->internal.flags |= CF_USER_STOP;
    iomux__conn_rx_update(c);
}

void iomux_conn_read_start(iomux_conn *c) {
    c->internal.flags &= ~(uint32_t)CF_USER_STOP;
    iomux__conn_rx_update(c);
}

int iomux_conn_close(iomux_conn *c, int how) {
    if (how != IOMUX_CONN_GRACEFUL && how != IOMUX_CONN_ABORT) return -EINVAL;
    if (c->internal.flags & CF_CLOSE_FD) return 0; /* the fd is going already */
    if (how == IOMUX_CONN_ABORT) {
        iomux__conn_fail(c, 0);
        return 0;
    }
    if (c->internal.flags & CF_CLOSING) return 0;
    c->internal.flags |= CF_CLOSING;
    c->internal.flags &= ~(uint32_t)CF_CORK;
    drop_held(c); /* nobody will read it now */
    iomux__conn_rx_update(c);
    if (c->internal.depth == 0) iomux__conn_pump(c);
    return 0;
}

int iomux_conn_active(const iomux_conn *c) {
    return (c->internal.flags & CF_ACTIVE) != 0;
}
