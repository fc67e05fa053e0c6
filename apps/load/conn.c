/* One connection's life on the loop, through the Proactor API only:
 * connect, one multishot receive into the loop's buffer pool for the whole
 * connection (on uring a single SQE: a response costs no receive call),
 * sends of whole request batches, close, and a pause before reconnecting
 * after a failure. What to send and when is traffic.c's business; this
 * file tells it about opens, responses, sends and settled closes.
 *
 * Ownership: every op started here counts in c->ops (and g.live_ops)
 * until its final callback; a closing connection is reused only once that
 * count is 0 (iomux_close cancels its receive and send, whose final
 * callbacks still run). */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "load.h"

#define START_TRIES 6     /* connects tried per connection at start-up */
#define START_PAUSE_MS 20 /* times the try number */
#define RETRY_MS 10       /* pause before reconnecting during the run */

static void op_began(lconn *c) {
    c->ops++;
    g.live_ops++;
}

static void settle(lconn *c);

static void op_ended(lconn *c) {
    c->ops--;
    g.live_ops--;
    if (c->ops == 0 && c->state == C_CLOSING) settle(c);
}

/* The pause before a reconnect ended (or was cancelled at the end). */
static void on_pause(iomux_op *op) {
    lconn *c = op->data;
    c->state = C_DOWN;
    op_ended(c);
    if (op->result == 0 && g.phase != PH_DONE && !g.fatal) traffic_on_settled(c);
}

/* Every op of a closed connection has ended: reopen it (after c->retry
 * pause, if any), unless the run is over. */
static void settle(lconn *c) {
    unsigned ms = c->retry_ms;
    c->state = C_DOWN;
    c->fd = -1;
    c->retry_ms = 0;
    if (g.phase == PH_DONE || g.fatal) return;
    if (ms == 0) {
        traffic_on_settled(c);
        return;
    }
    c->state = C_PAUSED;
    op_began(c);
    c->pause.data = c;
    if (iomux_timeout(g.loop, &c->pause, ms, on_pause) < 0) {
        op_ended(c);
        run_fatal("cannot start a timeout", 0);
    }
}

static void on_close(iomux_op *op) {
    op_ended(op->data);
}

void conn_close(lconn *c) {
    if (c->state != C_OPEN && c->state != C_CONNECTING) return;
    c->state = C_CLOSING;
    c->queued = 0;
    op_began(c);
    c->close.data = c;
    if (iomux_close(g.loop, &c->close, c->fd, on_close) < 0) {
        close(c->fd); /* not reached: iomux_close fails only on a bad fd */
        op_ended(c);
    }
}

/* ---- failures ---- */

static int retryable(int err) {
    return err == ECONNREFUSED || err == EAGAIN || err == ECONNRESET || err == ETIMEDOUT;
}

/* Still starting up: a connect that fails is retried a few times with a
 * growing pause, and a server that cannot be reached ends the run. */
static int starting(void) {
    return g.o->connect_rate ? !g.ever_connected : g.phase == PH_CONNECTING;
}

void conn_fail(lconn *c, int is_connect, int err, const char *why) {
    if (c->state != C_OPEN && c->state != C_CONNECTING) return;
    if (g.phase != PH_DONE) { /* after the end, nothing counts */
        if (is_connect && starting()) {
            if (!retryable(err) || c->tries >= START_TRIES) {
                run_fatal("cannot connect", err);
                return;
            }
            c->retry_ms = START_PAUSE_MS * c->tries;
        } else {
            if (is_connect) g.err_connect++;
            else g.err_io++;
            if (!g.first_error) g.first_error = why ? why : strerror(err);
            c->retry_ms = RETRY_MS;
        }
        traffic_on_lost(c);
    }
    conn_close(c);
}

/* A response error: counted once, the first one explained at the end. */
static void resp_error(lconn *c, int rc) {
    conn_fail(c, 0, EPROTO, resp_strerror(rc));
}

/* ---- receiving ---- */

static void rx_data(lconn *c, const char *buf, size_t n) {
    resp_out out = {0, 0};
    int rc;
    if (g.phase == PH_MEASURE) g.m_bytes += n;
    rc = resp_feed(&c->rp, &g.rcfg, buf, n, &out);
    if (out.done) traffic_on_responses(c, out.done, out.bad_status, load_now_ns());
    if (rc < 0 && c->state == C_OPEN) resp_error(c, rc);
}

static void rx_eof(lconn *c) {
    resp_out out = {0, 0};
    int rc = resp_eof(&c->rp, &g.rcfg, &out);
    if (out.done) traffic_on_responses(c, out.done, out.bad_status, load_now_ns());
    if (c->state != C_OPEN) return;
    if (rc < 0) resp_error(c, rc);
    else if (c->got_resp) conn_close(c); /* connect-rate: the server closed after its response */
    else conn_fail(c, 0, ECONNRESET, "the server closed a connection");
}

static void on_rx(iomux_op *op) {
    lconn *c = op->data;
    if (op->result > 0) {
        if (c->state == C_OPEN) rx_data(c, op->buf, (size_t)op->result);
        iomux_buf_release(g.loop, op->buf);
        if (op->flags & IOMUX_OP_MORE) return;
    }
    if (c->state == C_OPEN) {
        if (op->result == 0) rx_eof(c);
        if (c->state == C_OPEN) conn_fail(c, 0, op->result < 0 ? (int)-op->result : EIO, NULL);
    }
    op_ended(c);
}

/* ---- sending ---- */

static void on_tx(iomux_op *op) {
    lconn *c = op->data;
    c->tx_busy = 0;
    if (op->result < 0 && c->state == C_OPEN) conn_fail(c, 0, (int)-op->result, NULL);
    op_ended(c);
    conn_kick(c);
}

/* Sends what is queued, as many requests as one send holds, if no send
 * is in flight (on_tx comes back here for the rest). */
void conn_kick(lconn *c) {
    unsigned n;
    int rc;
    if (c->tx_busy || c->queued == 0 || c->state != C_OPEN) return;
    n = c->queued < g.req_copies ? (unsigned)c->queued : g.req_copies;
    c->queued -= n;
    c->tx_busy = 1;
    op_began(c);
    c->tx.data = c;
    rc = iomux_send(g.loop, &c->tx, c->fd, g.req, n * g.req_len, on_tx);
    if (rc < 0) {
        c->tx_busy = 0;
        op_ended(c);
        conn_fail(c, 0, -rc, NULL);
    }
}

/* ---- opening ---- */

static void on_connect(iomux_op *op) {
    lconn *c = op->data;
    int rc;
    if (op->result < 0 || c->state != C_CONNECTING) {
        if (op->result != -ECANCELED) conn_fail(c, 1, (int)-op->result, NULL);
        op_ended(c);
        return;
    }
    c->state = C_OPEN;
    g.ever_connected = 1;
    memset(&c->rp, 0, sizeof(c->rp));
    op_began(c);
    c->rx.data = c;
    rc = iomux_recv(g.loop, &c->rx, c->fd, NULL, 0, IOMUX_OP_MULTISHOT, on_rx);
    if (rc < 0) {
        op_ended(c);
        conn_fail(c, 0, -rc, NULL);
    } else {
        traffic_on_open(c);
    }
    op_ended(c);
}

/* Starts connecting c; a socket that cannot be made ends the run. */
void conn_open(lconn *c) {
    int one = 1, rc;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (c->fd < 0) {
        run_fatal("socket", errno);
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (g.o->connect_rate && g.o->proto == PROTO_ECHO) {
        /* The client closes first: a reset, not a TIME_WAIT per request
         * (which would use up the ephemeral ports within a minute). */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    c->state = C_CONNECTING;
    c->tries++;
    c->queued = 0;
    c->tx_busy = 0;
    c->got_resp = 0;
    c->t_sent = load_now_ns();
    op_began(c);
    c->connect.data = c;
    rc = iomux_connect(g.loop, &c->connect, c->fd, (const struct sockaddr *)&g.o->addr, sizeof(g.o->addr),
                       on_connect);
    if (rc < 0) {
        op_ended(c);
        close(c->fd);
        c->state = C_DOWN;
        run_fatal("connect", -rc);
    }
}
