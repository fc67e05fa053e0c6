/* The driver: an acceptor, and per connection an iomux_conn carrying an
 * iomux_http_session. Bytes read go to the session; its output goes to the
 * connection's write queue (memory copied, file ranges handed over for
 * sendfile); what the session says next decides between reading on and
 * closing. The connection's single timer carries the header deadline and
 * the idle / send timeout. */
#include <errno.h>
#ifndef _WIN32
#include <arpa/inet.h>
#include <netinet/in.h>
#endif
#include <string.h>
#include <unistd.h>

#include "iomux/net.h"
#include "internal.h"
#include "../core/sys.h" /* sockets: POSIX or Winsock */

typedef struct hconn {
    iomux_conn c;              /* first: the callbacks get &c; c.data is the server */
    iomux_http_session s;      /* s.data is the hconn */
    struct hconn *prev, *next;
    uint32_t idle_ms;          /* the idle timeout set on c */
    uint8_t hdr_clock;         /* the header deadline is set */
} hconn;

struct iomux_http_server {
    iomux_loop *loop;
    iomux_http_ctx *ctx;
    iomux_acceptor acc;
    hconn *conns;
    uint64_t open;
    uint64_t accepted;         /* by the acceptor or adopted */
    int accept_error;
    int acc_done;              /* the acceptor has stopped (or failed for good) */
    int draining, done_called;
    iomux_timer drain_timer;
    iomux_http_drain_cb done;
    void *done_data;
    iomux_http_drain_cb on_conn_close; /* after each connection closes */
    void *on_conn_close_data;
};

static hconn *hconn_of(iomux_conn *c) {
    return (hconn *)c;
}

static void maybe_done(iomux_http_server *srv) {
    if (!srv->draining || srv->done_called || srv->open || !srv->acc_done) return;
    srv->done_called = 1;
    iomux_timer_stop(&srv->drain_timer);
    if (srv->done) srv->done(srv, srv->done_data);
}

/* ---- output and timers ------------------------------------------------------------- */

static int pass(hconn *h, const iomux_http_chunk *ch) {
    int rc, fd;
    if (ch->data) {
        rc = iomux_conn_write(&h->c, ch->data, ch->len);
        iomux_http_out_consume(&h->s, ch->len);
        return rc;
    }
    fd = iomux_http_out_take_file(&h->s);
    rc = iomux_conn_sendfile(&h->c, fd, ch->offset, ch->len, IOMUX_CONN_FILE_CLOSE);
    if (rc < 0) close(fd);
    return rc;
}

/* Moves the session's output into the connection's queue. */
static int flush(hconn *h) {
    iomux_http_chunk v[8];
    size_t n;
    while ((n = iomux_http_out_peek(&h->s, 0, v, 8)) > 0)
        for (size_t i = 0; i < n; i++)
            if (pass(h, &v[i]) < 0) return -1;
    return 0;
}

/* The header deadline runs while a request's headers are coming in and
 * we are reading: not while output waits (the connection is not read
 * then, so the client is not the slow one). It starts with the batch that
 * began the request: one that answered something began a new one (steady
 * pipelining). The idle timer is the send timeout while output waits,
 * else the idle one. */
static int set_timers(hconn *h, int answered) {
    const iomux_http_config *cfg = iomux_http_ctx_config(h->s.ctx);
    size_t queued = iomux_conn_queued(&h->c);
    int hdr = !queued && iomux_http_session_phase(&h->s) == IOMUX_HTTP_HEADERS;
    uint32_t idle = queued ? cfg->send_timeout_ms : cfg->idle_timeout_ms;
    int rc = 0;
    if (hdr && (!h->hdr_clock || answered))
        rc = iomux_conn_set_deadline(&h->c, iomux_now(h->c.loop) + cfg->header_timeout_ms);
    else if (!hdr && h->hdr_clock)
        rc = iomux_conn_set_deadline(&h->c, 0);
    h->hdr_clock = (uint8_t)hdr;
    if (rc == 0 && idle != h->idle_ms) {
        rc = iomux_conn_set_idle_timeout(&h->c, idle);
        h->idle_ms = idle;
    }
    return rc;
}

/* Acts on what the session said. While the session holds input (its
 * output was full) the connection is not read; on_drain resumes it once
 * everything queued has gone. Returns 0 if the connection goes on. */
static int after(hconn *h, iomux_http_next nx) {
    const iomux_http_config *cfg = iomux_http_ctx_config(h->s.ctx);
    int answered = iomux_http_out_pending(&h->s) > 0;
    if (nx == IOMUX_HTTP_ABORT || flush(h) < 0) {
        iomux_conn_close(&h->c, IOMUX_CONN_ABORT);
    } else if (nx == IOMUX_HTTP_CLOSE) {
        /* The flush and linger are bounded by the send timeout. */
        iomux_conn_set_deadline(&h->c, 0);
        iomux_conn_set_idle_timeout(&h->c, cfg->send_timeout_ms);
        iomux_conn_close(&h->c, IOMUX_CONN_GRACEFUL);
    } else if (set_timers(h, answered) < 0) {
        iomux_conn_close(&h->c, IOMUX_CONN_ABORT);
    } else {
        if (iomux_http_input_held(&h->s)) iomux_conn_read_stop(&h->c);
        return 0;
    }
    return -1;
}

/* ---- connection callbacks ------------------------------------------------------------- */

static void on_data(iomux_conn *c, const void *data, size_t len) {
    iomux_http_server *srv = c->data;
    hconn *h = hconn_of(c);
    iomux_http_ctx_tick(srv->ctx, iomux_now(c->loop));
    after(h, iomux_http_feed(&h->s, data, len));
}

static void on_eof(iomux_conn *c) {
    hconn *h = hconn_of(c);
    after(h, iomux_http_feed_eof(&h->s));
}

static void on_drain(iomux_conn *c) {
    iomux_http_server *srv = c->data;
    hconn *h = hconn_of(c);
    if (iomux_http_input_held(&h->s) && iomux_conn_queued(c) == 0) {
        iomux_http_ctx_tick(srv->ctx, iomux_now(c->loop));
        if (after(h, iomux_http_resume(&h->s)) == 0 && !iomux_http_input_held(&h->s)) iomux_conn_read_start(c);
        return;
    }
    if (set_timers(h, 0) < 0) iomux_conn_close(c, IOMUX_CONN_ABORT);
}

static void on_timeout(iomux_conn *c, int which) {
    iomux_http_server *srv = c->data;
    hconn *h = hconn_of(c);
    if (which == IOMUX_CONN_IDLE && iomux_conn_queued(c) > 0) {
        iomux_conn_close(c, IOMUX_CONN_ABORT); /* the peer stopped reading */
        return;
    }
    iomux_http_ctx_tick(srv->ctx, iomux_now(c->loop));
    after(h, iomux_http_expire(&h->s));
}

static void on_close(iomux_conn *c, int reason) {
    iomux_http_server *srv = c->data;
    hconn *h = hconn_of(c);
    if (h->prev) h->prev->next = h->next;
    else srv->conns = h->next;
    if (h->next) h->next->prev = h->prev;
    iomux_http_session_close(&h->s);
    iomux__http_free(srv->ctx, h);
    srv->open--;
    if (srv->on_conn_close) srv->on_conn_close(srv, srv->on_conn_close_data);
    maybe_done(srv);
}

static const iomux_conn_callbacks conn_cbs = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_close = on_close,
};

/* ---- accepting ---------------------------------------------------------------------------- */

/* Starts serving connection fd; on failure closes it. */
static int adopt(iomux_http_server *srv, iomux_fd fd) {
    const iomux_http_config *cfg = iomux_http_ctx_config(srv->ctx);
    iomux_conn_opts opts = {.idle_ms = cfg->idle_timeout_ms};
    hconn *h = iomux__http_malloc(srv->ctx, sizeof(*h));
    int rc;
    if (!h) {
        iomux__sock_close(fd);
        return -ENOMEM;
    }
    memset(h, 0, sizeof(*h));
    h->c.data = srv;
    iomux_http_session_init(&h->s, srv->ctx);
    h->s.data = h;
    h->idle_ms = cfg->idle_timeout_ms;
    rc = iomux_conn_start(srv->loop, &h->c, fd, &conn_cbs, &opts);
    if (rc < 0) {
        iomux__sock_close(fd);
        iomux__http_free(srv->ctx, h);
        return rc;
    }
    h->next = srv->conns;
    if (srv->conns) srv->conns->prev = h;
    srv->conns = h;
    srv->open++;
    return 0;
}

static void on_accept(iomux_acceptor *a, iomux_fd fd) {
    iomux_http_server *srv = a->data;
    if (fd < 0) { /* the acceptor has ended for good */
        srv->accept_error = fd;
        srv->acc_done = 1;
        maybe_done(srv);
        return;
    }
    srv->accepted++;
    adopt(srv, fd);
}

static void on_acceptor_stop(iomux_acceptor *a) {
    iomux_http_server *srv = a->data;
    srv->acc_done = 1;
    maybe_done(srv);
}

/* The access log's client address. */
static void peer_name(const iomux_http_session *s, char *buf, size_t size) {
    const hconn *h = s->data;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    const void *addr;
    if (getpeername(h->c.fd, (struct sockaddr *)&ss, &len) < 0) return;
    if (ss.ss_family == AF_INET) addr = &((const struct sockaddr_in *)&ss)->sin_addr;
    else if (ss.ss_family == AF_INET6) addr = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    else return;
    inet_ntop(ss.ss_family, (void *)addr, buf, (socklen_t)size); /* (Winsock's takes no const) */
}

/* ---- the server ----------------------------------------------------------------------------- */

static void drain_expired(iomux_timer *t) {
    iomux_http_server_abort(t->data);
}

void iomux_http_server_abort(iomux_http_server *srv) {
    for (hconn *h = srv->conns; h; h = h->next) iomux_conn_close(&h->c, IOMUX_CONN_ABORT);
    maybe_done(srv);
}

int iomux_http_server_adopt(iomux_http_server *srv, iomux_fd fd) {
    if (srv->draining) {
        iomux__sock_close(fd);
        return -ECANCELED;
    }
    srv->accepted++;
    return adopt(srv, fd);
}

void iomux_http_server_on_close(iomux_http_server *srv, iomux_http_drain_cb cb, void *data) {
    srv->on_conn_close = cb;
    srv->on_conn_close_data = data;
}

int iomux_http_server_new(iomux_http_server **out, iomux_loop *loop, iomux_fd lfd, const iomux_http_config *cfg) {
    iomux_http_ctx *ctx;
    iomux_http_server *srv;
    int rc = iomux_http_ctx_new(&ctx, cfg);
    if (rc < 0) return rc;
    srv = iomux__http_malloc(ctx, sizeof(*srv));
    if (!srv) {
        iomux_http_ctx_free(ctx);
        return -ENOMEM;
    }
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    srv->ctx = ctx;
    ctx->peer_name = peer_name;
    iomux_timer_init(loop, &srv->drain_timer, drain_expired);
    srv->drain_timer.data = srv;
    srv->acc.data = srv;
    srv->acc_done = lfd < 0;
    rc = lfd < 0 ? 0 : iomux_acceptor_start(loop, &srv->acc, lfd, on_accept);
    if (rc < 0) {
        iomux__http_free(ctx, srv);
        iomux_http_ctx_free(ctx);
        return rc;
    }
    *out = srv;
    return 0;
}

int iomux_http_server_drain(iomux_http_server *srv, uint64_t ms, iomux_http_drain_cb done, void *data) {
    hconn *h, *next;
    int rc;
    if (srv->draining) return -EALREADY;
    rc = iomux_timer_start(&srv->drain_timer, ms, 0);
    if (rc < 0) return rc;
    srv->draining = 1;
    srv->done = done;
    srv->done_data = data;
    if (iomux_acceptor_active(&srv->acc) && iomux_acceptor_stop(&srv->acc, on_acceptor_stop) == 0)
        srv->acc_done = 0;
    else
        srv->acc_done = 1;
    for (h = srv->conns; h; h = next) {
        iomux_http_next nx;
        next = h->next; /* closing calls nothing back from here: the list holds */
        nx = iomux_http_session_shutdown(&h->s);
        if (nx != IOMUX_HTTP_CONTINUE) after(h, nx);
    }
    /* Nothing left to wait for: done runs from the loop all the same. */
    if (!srv->open && srv->acc_done) iomux_timer_start(&srv->drain_timer, 0, 0);
    return 0;
}

int iomux_http_server_free(iomux_http_server *srv) {
    iomux_http_ctx *ctx;
    if (!srv) return 0;
    if (srv->open || iomux_acceptor_active(&srv->acc)) return -EBUSY;
    ctx = srv->ctx;
    iomux_timer_stop(&srv->drain_timer);
    iomux__http_free(ctx, srv);
    iomux_http_ctx_free(ctx);
    return 0;
}

iomux_http_ctx *iomux_http_server_ctx(iomux_http_server *srv) {
    return srv->ctx;
}

void iomux_http_server_stats(const iomux_http_server *srv, iomux_http_stats *out) {
    out->accepted = srv->accepted;
    out->open = srv->open;
    out->accept_error = srv->accept_error;
}
