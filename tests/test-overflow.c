/* Small rings and a small pool under load: on uring, an 8-entry SQ and a
 * 16-entry CQ with 200 echoing connections make the SQ fill up (it is then
 * submitted early) and the CQ overflow (the kernel keeps the overflow and
 * iomux flushes it), and an 8-buffer pool runs dry over and over (multishot
 * recv ends with ENOBUFS and is re-armed when a buffer comes back). Nothing
 * may be lost: every connection's bytes come back complete and in order,
 * and every op completes exactly once. On the other backends the ring sizes
 * mean nothing and this is an echo test with a tiny pool. */
#include <pthread.h>
#include <sys/resource.h>

#include "harness.h"

#define CONNS 200
#define BYTES 3000 /* per connection, sent in pieces of 500 */

typedef struct conn {
    iomux_op rx, cl;
    int fd, eof, closes, sends;
} conn;

typedef struct echo {
    iomux_op op;
    conn *c;
    unsigned char data[]; /* a copy: the pool buffer goes back at once */
} echo;

static conn conns[CONNS];
static int n_closed, n_rx_final, n_sent, n_started;

static void on_closed(iomux_op *op) {
    conn *c = op->data;
    CHECK_EQ(op->result, 0);
    c->closes++;
    n_closed++;
}

static void maybe_close(iomux_loop *loop, conn *c) {
    if (c->eof && c->sends == 0) CHECK_OK(iomux_close(loop, &c->cl, c->fd, on_closed));
}

static void on_sent(iomux_op *op) {
    echo *e = op->data;
    CHECK(!(op->flags & IOMUX_OP_MORE));
    CHECK(op->result > 0);
    e->c->sends--;
    n_sent++;
    maybe_close(op->loop, e->c);
    free(e);
}

static void on_recv(iomux_op *op) {
    conn *c = op->data;
    echo *e;
    if (!(op->flags & IOMUX_OP_MORE)) {
        CHECK_EQ(op->result, 0); /* the client's half-close, nothing else */
        n_rx_final++;
        c->eof = 1;
        maybe_close(op->loop, c);
        return;
    }
    CHECK(op->result > 0);
    e = malloc(sizeof(*e) + (size_t)op->result);
    CHECK(e != NULL);
    e->c = c;
    e->op.data = e;
    memcpy(e->data, op->buf, (size_t)op->result);
    iomux_buf_release(op->loop, op->buf);
    CHECK_OK(iomux_send(op->loop, &e->op, c->fd, e->data, (size_t)op->result, on_sent));
    c->sends++;
    n_started++;
}

static unsigned char pattern(int id, size_t i) {
    return (unsigned char)(id * 31 + i * 7 + (i >> 8));
}

/* The clients: one thread, blocking sockets. Write every connection's bytes
 * in pieces, half-close, then read each echo back whole and check it. */
static void *clients(void *arg) {
    int *fds = arg, i;
    size_t off, k;
    unsigned char buf[BYTES];
    for (off = 0; off < BYTES; off += 500)
        for (i = 0; i < CONNS; i++) {
            for (k = 0; k < 500; k++) buf[k] = pattern(i, off + k);
            write_all(fds[i], buf, 500);
        }
    for (i = 0; i < CONNS; i++) CHECK_SYS(shutdown(fds[i], SHUT_WR));
    for (i = 0; i < CONNS; i++) {
        size_t got = 0;
        ssize_t n;
        while ((n = read(fds[i], buf + got, BYTES - got)) > 0) got += (size_t)n;
        CHECK_SYS(n);
        CHECK_EQ(got, BYTES);
        for (k = 0; k < BYTES; k++)
            if (buf[k] != pattern(i, k)) FAIL("connection %d: echoed byte %zu differs", i, k);
    }
    return NULL;
}

static void test_small_rings_under_load(void) {
    iomux_config cfg;
    iomux_loop *loop;
    pthread_t th;
    int cfds[CONNS], i;
    uint64_t end;
    iomux_config_init(&cfg);
    cfg.uring_entries = 8;
    cfg.uring_cq_entries = 16;
    cfg.pool_buffers = 8;
    cfg.pool_buffer_size = 128;
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    for (i = 0; i < CONNS; i++) {
        int p[2];
        tcp_pair(p);
        cfds[i] = p[0];
        CHECK_SYS(fcntl(p[0], F_SETFL, 0)); /* the client side blocks */
        conns[i].fd = p[1];
        conns[i].rx.data = conns[i].cl.data = &conns[i];
        CHECK_OK(iomux_recv(loop, &conns[i].rx, p[1], NULL, 0, IOMUX_OP_MULTISHOT, on_recv));
    }
    CHECK(pthread_create(&th, NULL, clients, cfds) == 0);
    end = test_ms() + 30000;
    while (n_closed < CONNS) {
        if (test_ms() > end) FAIL("stalled: %d of %d connections done", n_closed, CONNS);
        CHECK(iomux_run(loop, IOMUX_RUN_ONCE) >= 0);
    }
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(n_rx_final, CONNS);
    CHECK_EQ(n_sent, n_started);
    for (i = 0; i < CONNS; i++) {
        CHECK_EQ(conns[i].closes, 1);
        close(cfds[i]);
    }
    test_loop_free(loop);
}

int main(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    RUN(test_small_rings_under_load);
    return 0;
}
