/* An echo server and its clients written with the Proactor API only, on one
 * loop: multishot accept, recv, send, connect, close. Round trips of 1 B to
 * 1 MiB with small send buffers on both sides (so sends are partial) come
 * back byte-exact; every send completes with its full length; server recv
 * into the caller's buffer, into pool buffers (released after the echoing
 * send), and multishot pool recv. Then 50 blocking client threads at once
 * against the same server. */
#include <pthread.h>

#include "harness.h"

#define SMALL_SNDBUF 4096
#define DEADLINE_MS 10000

enum { MODE_BUF, MODE_POOL, MODE_MULTI };
static const char *const mode_names[] = {"caller buffer", "pool buffer", "multishot pool"};

static unsigned char pattern(unsigned conn, size_t i) {
    uint32_t x = (uint32_t)i * 2654435761u + conn * 40503u;
    return (unsigned char)((x >> 13) ^ (x >> 24) ^ (i >> 16));
}

static void fill(unsigned char *p, size_t len, unsigned conn) {
    size_t i;
    for (i = 0; i < len; i++) p[i] = pattern(conn, i);
}

/* A repeating timer, so that a RUN_ONCE loop wakes up to check its deadline
 * even if the I/O it waits for never comes. */
static void heartbeat_cb(iomux_timer *t) {
    (void)t;
}

static void heartbeat_start(iomux_loop *loop, iomux_timer *t) {
    iomux_timer_init(loop, t, heartbeat_cb);
    CHECK_OK(iomux_timer_start(t, 50, 50));
}

/* ---- the server ------------------------------------------------------------------ */

typedef struct server {
    iomux_loop *loop;
    int lfd, mode;
    iomux_op aop, lcop;
    int accepted, closed, accept_final, lclosed;
    int64_t accept_result, lclose_result;
    size_t echoed; /* bytes whose echoing send completed */
} server;

typedef struct sconn sconn;

/* multishot mode: one send per received pool buffer */
typedef struct chunk {
    iomux_op op;
    sconn *c;
    void *buf;
    size_t len;
    unsigned seq;
} chunk;

struct sconn {
    server *s;
    int fd;
    iomux_op rop, sop, cop;
    unsigned char buf[16384];
    void *pbuf;
    size_t sendlen;
    unsigned sent_seq, done_seq; /* multishot: sends started / completed */
    int outstanding, eof;
};

static void srv_recv_cb(iomux_op *op);
static void srv_mrecv_cb(iomux_op *op);

static void srv_close_cb(iomux_op *op) {
    sconn *c = op->data;
    CHECK_EQ(op->result, 0);
    CHECK_EQ(op->flags, 0);
    c->s->closed++;
    free(c);
}

static void srv_close(sconn *c) {
    c->cop.data = c;
    CHECK_OK(iomux_close(c->s->loop, &c->cop, c->fd, srv_close_cb));
}

static void srv_recv_start(sconn *c) {
    c->rop.data = c;
    if (c->s->mode == MODE_BUF)
        CHECK_OK(iomux_recv(c->s->loop, &c->rop, c->fd, c->buf, sizeof(c->buf), 0, srv_recv_cb));
    else if (c->s->mode == MODE_POOL)
        CHECK_OK(iomux_recv(c->s->loop, &c->rop, c->fd, NULL, 0, 0, srv_recv_cb));
    else
        CHECK_OK(iomux_recv(c->s->loop, &c->rop, c->fd, NULL, 0, IOMUX_OP_MULTISHOT, srv_mrecv_cb));
}

static void srv_send_cb(iomux_op *op) {
    sconn *c = op->data;
    CHECK_EQ(op->flags, 0);
    CHECK_EQ(op->result, (int64_t)c->sendlen); /* the whole chunk, partial sends or not */
    c->s->echoed += c->sendlen;
    if (c->s->mode == MODE_POOL) {
        iomux_buf_release(c->s->loop, c->pbuf);
        c->pbuf = NULL;
    }
    srv_recv_start(c);
}

/* single-shot recv (caller or pool buffer): echo it, recv again after */
static void srv_recv_cb(iomux_op *op) {
    sconn *c = op->data;
    CHECK_EQ(op->flags, 0);
    CHECK_EQ(iomux_op_active(op), 0);
    if (op->result == 0) {
        srv_close(c);
        return;
    }
    if (op->result < 0) FAIL("server recv: %s", iomux_strerror((int)op->result));
    CHECK(op->buf != NULL);
    if (c->s->mode == MODE_BUF) {
        CHECK(op->buf == c->buf);
        CHECK(op->result <= (int64_t)sizeof(c->buf));
    } else {
        c->pbuf = op->buf;
    }
    c->sendlen = (size_t)op->result;
    c->sop.data = c;
    CHECK_OK(iomux_send(c->s->loop, &c->sop, c->fd, op->buf, c->sendlen, srv_send_cb));
}

static void chunk_send_cb(iomux_op *op) {
    chunk *k = op->data;
    sconn *c = k->c;
    CHECK_EQ(op->flags, 0);
    CHECK_EQ(op->result, (int64_t)k->len);
    CHECK_EQ(k->seq, c->done_seq); /* sends complete in start order */
    c->done_seq++;
    c->s->echoed += k->len;
    iomux_buf_release(c->s->loop, k->buf);
    free(k);
    if (--c->outstanding == 0 && c->eof) srv_close(c);
}

/* multishot pool recv: a send per buffer, the buffer released when it is sent */
static void srv_mrecv_cb(iomux_op *op) {
    sconn *c = op->data;
    chunk *k;
    if (!(op->flags & IOMUX_OP_MORE)) {
        CHECK_EQ(op->flags, 0);
        CHECK_EQ(op->result, 0); /* the client's shutdown ends it */
        CHECK_EQ(iomux_op_active(op), 0);
        c->eof = 1;
        if (c->outstanding == 0) srv_close(c);
        return;
    }
    CHECK(op->result > 0);
    CHECK(op->buf != NULL);
    CHECK_EQ(iomux_op_active(op), 1);
    k = malloc(sizeof(*k));
    CHECK(k != NULL);
    k->c = c;
    k->buf = op->buf;
    k->len = (size_t)op->result;
    k->seq = c->sent_seq++;
    k->op.data = k;
    c->outstanding++;
    CHECK_OK(iomux_send(c->s->loop, &k->op, c->fd, k->buf, k->len, chunk_send_cb));
}

static void accept_cb(iomux_op *op) {
    server *s = op->data;
    int sz = SMALL_SNDBUF;
    sconn *c;
    if (!(op->flags & IOMUX_OP_MORE)) {
        s->accept_final++;
        s->accept_result = op->result;
        return;
    }
    CHECK(op->result >= 0);
    c = calloc(1, sizeof(*c));
    CHECK(c != NULL);
    c->s = s;
    c->fd = (int)op->result;
    CHECK_SYS(setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    s->accepted++;
    srv_recv_start(c);
}

static void server_start(server *s, iomux_loop *loop, int mode, struct sockaddr_in *addr) {
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->mode = mode;
    s->lfd = tcp_listener(addr);
    set_nonblock(s->lfd);
    s->aop.data = s;
    CHECK_OK(iomux_accept(loop, &s->aop, s->lfd, IOMUX_OP_MULTISHOT, accept_cb));
}

static void lclose_cb(iomux_op *op) {
    server *s = op->data;
    s->lclosed++;
    s->lclose_result = op->result;
}

static void server_stop(server *s) {
    CHECK_EQ(iomux_loop_free(s->loop), -EBUSY); /* the accept is in flight */
    CHECK_OK(iomux_cancel(&s->aop));
    run_until_calls(s->loop, &s->accept_final, 1, 5000);
    CHECK_EQ(s->accept_result, -ECANCELED);
    s->lcop.data = s;
    CHECK_OK(iomux_close(s->loop, &s->lcop, s->lfd, lclose_cb));
    run_until_calls(s->loop, &s->lclosed, 1, 5000);
    CHECK_EQ(s->lclose_result, 0);
    CHECK_EQ(s->accept_final, 1);
}

/* ---- a client driven by ops on the same loop ------------------------------------------ */

typedef struct client {
    iomux_loop *loop;
    int fd;
    unsigned id;
    struct sockaddr_in addr;
    iomux_op conop, sop, rop, clop;
    unsigned char *tx, *rx;
    unsigned char scratch[16];
    size_t len, got;
    int connected, sent, eof, closed;
} client;

static void client_maybe_close(client *c);

static void client_close_cb(iomux_op *op) {
    client *c = op->data;
    CHECK_EQ(op->result, 0);
    CHECK_EQ(op->flags, 0);
    c->closed = 1;
}

static void client_maybe_close(client *c) {
    if (!c->sent || !c->eof) return;
    c->clop.data = c;
    CHECK_OK(iomux_close(c->loop, &c->clop, c->fd, client_close_cb));
}

static void client_send_cb(iomux_op *op) {
    client *c = op->data;
    CHECK_EQ(op->flags, 0);
    CHECK_EQ(op->result, (int64_t)c->len); /* every byte, in one completion */
    c->sent = 1;
    client_maybe_close(c);
}

static void client_recv_cb(iomux_op *op);

static void client_recv_next(client *c) {
    size_t want = c->len - c->got;
    c->rop.data = c;
    if (want == 0) { /* all back: wait for the server's close */
        CHECK_OK(iomux_recv(c->loop, &c->rop, c->fd, c->scratch, sizeof(c->scratch), 0, client_recv_cb));
        return;
    }
    if (want > 65536) want = 65536;
    CHECK_OK(iomux_recv(c->loop, &c->rop, c->fd, c->rx + c->got, want, 0, client_recv_cb));
}

static void client_recv_cb(iomux_op *op) {
    client *c = op->data;
    CHECK_EQ(op->flags, 0);
    if (op->result < 0) FAIL("client recv: %s", iomux_strerror((int)op->result));
    if (c->got == c->len) {
        CHECK_EQ(op->result, 0); /* nothing more than was sent */
        c->eof = 1;
        client_maybe_close(c);
        return;
    }
    if (op->result == 0) FAIL("early EOF after %zu of %zu bytes", c->got, c->len);
    CHECK(op->buf == c->rx + c->got);
    c->got += (size_t)op->result;
    CHECK(c->got <= c->len);
    if (c->got == c->len) {
        CHECK(memcmp(c->rx, c->tx, c->len) == 0);
        CHECK_SYS(shutdown(c->fd, SHUT_WR)); /* the server sees EOF and closes */
    }
    client_recv_next(c);
}

static void client_connect_cb(iomux_op *op) {
    client *c = op->data;
    CHECK_EQ(op->flags, 0);
    if (op->result != 0) FAIL("connect: %s", iomux_strerror((int)op->result));
    c->connected = 1;
    c->sop.data = c;
    CHECK_OK(iomux_send(c->loop, &c->sop, c->fd, c->tx, c->len, client_send_cb));
    client_recv_next(c);
}

static void client_start(client *c, iomux_loop *loop, const struct sockaddr_in *addr, size_t len,
                         unsigned id) {
    int sz = SMALL_SNDBUF;
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->id = id;
    c->addr = *addr;
    c->len = len;
    c->tx = malloc(len);
    c->rx = malloc(len);
    CHECK(c->tx && c->rx);
    fill(c->tx, len, id);
    memset(c->rx, 0, len);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_SYS(c->fd);
    CHECK_SYS(setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    c->conop.data = c;
    CHECK_OK(iomux_connect(loop, &c->conop, c->fd, (const struct sockaddr *)&c->addr, sizeof(c->addr),
                           client_connect_cb));
    CHECK_EQ(c->connected, 0); /* never inside the start call */
}

static void client_free(client *c) {
    free(c->tx);
    free(c->rx);
}

/* A loop whose sends of zc_threshold bytes or more use SEND_ZC on uring
 * (ignored elsewhere); 0: the default (never). */
static iomux_loop *echo_loop(unsigned zc_threshold) {
    iomux_config cfg;
    iomux_loop *loop;
    iomux_config_init(&cfg);
    cfg.send_zc_threshold = zc_threshold;
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    return loop;
}

static void run_echo(int mode, unsigned zc_threshold) {
    static const size_t sizes[] = {1, 100, 4096, 65536, 1u << 20};
    iomux_loop *loop = echo_loop(zc_threshold);
    struct sockaddr_in addr;
    server s;
    client c;
    iomux_timer hb;
    size_t i, total = 0;
    uint64_t end = test_ms() + DEADLINE_MS;
    fprintf(stderr, "   %s%s\n", mode_names[mode], zc_threshold ? ", SEND_ZC" : "");
    heartbeat_start(loop, &hb);
    server_start(&s, loop, mode, &addr);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        client_start(&c, loop, &addr, sizes[i], (unsigned)i + 1);
        while (!c.closed || s.closed < (int)i + 1) {
            if (test_ms() > end)
                FAIL("%s echo of %zu bytes stalled: got %zu, sent %d, eof %d, closed %d, server closed %d",
                     mode_names[mode], sizes[i], c.got, c.sent, c.eof, c.closed, s.closed);
            CHECK_OK(iomux_run(loop, IOMUX_RUN_ONCE));
        }
        total += sizes[i];
        CHECK_EQ(c.got, sizes[i]);
        CHECK(memcmp(c.rx, c.tx, c.len) == 0);
        CHECK_EQ(s.echoed, total);
        client_free(&c);
    }
    CHECK_EQ(s.accepted, 5);
    server_stop(&s);
    CHECK_OK(iomux_timer_stop(&hb));
    spin(loop, 2);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

static void test_echo_caller_buffer(void) {
    run_echo(MODE_BUF, 0);
}

static void test_echo_pool_buffer(void) {
    run_echo(MODE_POOL, 0);
}

static void test_echo_multishot_pool(void) {
    run_echo(MODE_MULTI, 0);
}

/* Zero-copy sends (uring): a send completes only after the kernel's
 * notification, still in order and with its full length. */
static void test_echo_send_zc(void) {
    run_echo(MODE_MULTI, 4096);
    run_echo(MODE_POOL, 4096);
}

/* Several op-driven clients at once on the one loop. */
static void test_echo_concurrent_op_clients(void) {
    enum { N = 8 };
    iomux_loop *loop = test_loop();
    struct sockaddr_in addr;
    server s;
    client *c = calloc(N, sizeof(client));
    iomux_timer hb;
    int i, done;
    uint64_t end = test_ms() + DEADLINE_MS;
    CHECK(c != NULL);
    heartbeat_start(loop, &hb);
    server_start(&s, loop, MODE_MULTI, &addr);
    for (i = 0; i < N; i++) client_start(&c[i], loop, &addr, 100000 + 7919 * (size_t)i, 100 + (unsigned)i);
    do {
        if (test_ms() > end) FAIL("concurrent op clients stalled");
        CHECK_OK(iomux_run(loop, IOMUX_RUN_ONCE));
        for (i = 0, done = 0; i < N; i++) done += c[i].closed;
    } while (done < N || s.closed < N);
    for (i = 0; i < N; i++) {
        CHECK_EQ(c[i].got, c[i].len);
        CHECK(memcmp(c[i].rx, c[i].tx, c[i].len) == 0);
        client_free(&c[i]);
    }
    free(c);
    server_stop(&s);
    CHECK_OK(iomux_timer_stop(&hb));
    spin(loop, 2);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

/* ---- blocking client threads ------------------------------------------------------------ */

#define NTHREADS 50

typedef struct tclient {
    pthread_t th;
    struct sockaddr_in addr;
    unsigned id;
    size_t len, got;
    int err;       /* errno of a failed call, or -1: wrong content */
} tclient;

static void *tclient_main(void *arg) {
    tclient *t = arg;
    struct timeval tv = {10, 0};
    unsigned char *tx = malloc(t->len), *rx = malloc(t->len + 1);
    int fd = -1;
    size_t off = 0;
    if (!tx || !rx) {
        t->err = ENOMEM;
        goto out;
    }
    fill(tx, t->len, t->id);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
        connect(fd, (struct sockaddr *)&t->addr, sizeof(t->addr)) < 0) {
        t->err = errno;
        goto out;
    }
    /* in a few writes, so the server sees several arrivals */
    while (off < t->len) {
        size_t n = t->len - off > 1000 ? 1000 : t->len - off;
        ssize_t w = write(fd, tx + off, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            t->err = errno;
            goto out;
        }
        off += (size_t)w;
    }
    if (shutdown(fd, SHUT_WR) < 0) {
        t->err = errno;
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, rx + t->got, t->len + 1 - t->got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            t->err = errno;
            goto out;
        }
        if (r == 0) break;
        t->got += (size_t)r;
        if (t->got > t->len) break;
    }
    if (t->got != t->len || memcmp(tx, rx, t->len) != 0) t->err = -1;
out:
    if (fd >= 0) close(fd);
    free(tx);
    free(rx);
    return NULL;
}

static void run_threads(int mode) {
    iomux_loop *loop = test_loop();
    struct sockaddr_in addr;
    server s;
    tclient *t = calloc(NTHREADS, sizeof(tclient));
    size_t total = 0;
    int i;
    CHECK(t != NULL);
    fprintf(stderr, "   %s\n", mode_names[mode]);
    server_start(&s, loop, mode, &addr);
    for (i = 0; i < NTHREADS; i++) {
        t[i].addr = addr;
        t[i].id = 1000 + (unsigned)i;
        t[i].len = 2000 + 97 * (size_t)i;
        total += t[i].len;
        CHECK(pthread_create(&t[i].th, NULL, tclient_main, &t[i]) == 0);
    }
    run_until_calls(loop, &s.closed, NTHREADS, DEADLINE_MS);
    for (i = 0; i < NTHREADS; i++) {
        CHECK(pthread_join(t[i].th, NULL) == 0);
        if (t[i].err)
            FAIL("client %d: %s (got %zu of %zu)", i, t[i].err < 0 ? "wrong bytes" : strerror(t[i].err),
                 t[i].got, t[i].len);
    }
    CHECK_EQ(s.accepted, NTHREADS);
    CHECK_EQ(s.echoed, total);
    free(t);
    server_stop(&s);
    spin(loop, 2);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

static void test_threads_caller_buffer(void) {
    run_threads(MODE_BUF);
}

static void test_threads_multishot_pool(void) {
    run_threads(MODE_MULTI);
}

int main(void) {
    fprintf(stderr, "backend %s\n", test_backend());
    alarm(60); /* a backstop: every wait above is bounded already */
    RUN(test_echo_caller_buffer);
    RUN(test_echo_pool_buffer);
    RUN(test_echo_multishot_pool);
    RUN(test_echo_send_zc);
    RUN(test_echo_concurrent_op_clients);
    RUN(test_threads_caller_buffer);
    RUN(test_threads_multishot_pool);
    return 0;
}
