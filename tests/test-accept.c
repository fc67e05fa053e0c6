/* iomux_accept: multishot accept of 1,000 connections (each exactly once,
 * non-blocking and close-on-exec), cancel ending it with one final
 * -ECANCELED, cancel from inside a callback losing no connection,
 * single-shot accept (one callback, then inactive, restartable from its
 * callback), accept on a socket that does not listen, and loop_free
 * refusing while an accept is in flight. */
#include <pthread.h>

#include "harness.h"

#define NCONN 1000
#define BATCH 250

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* The local port of a connected or connecting socket. */
static int local_port(int fd) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &len));
    return ntohs(a.sin_port);
}

static int peer_port(int fd) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    CHECK_SYS(getpeername(fd, (struct sockaddr *)&a, &len));
    return ntohs(a.sin_port);
}

/* A non-blocking connect to addr; the handshake finishes in the kernel
 * without the listener's help, so the connection waits in the backlog. */
static int connect_nb(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd);
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 && errno != EINPROGRESS)
        FAIL("connect: %s", strerror(errno));
    return fd;
}

/* Checks an accepted fd: valid, non-blocking, close-on-exec. */
static void check_accepted_fd(int fd) {
    int fl, fdfl;
    CHECK(fd >= 0);
    fl = fcntl(fd, F_GETFL);
    CHECK_SYS(fl);
    CHECK(fl & O_NONBLOCK);
    fdfl = fcntl(fd, F_GETFD);
    CHECK_SYS(fdfl);
    CHECK(fdfl & FD_CLOEXEC);
}

/* ---- multishot accept of 1,000 connections, then cancel ------------------------- */

typedef struct acc {
    int more, final;
    int64_t final_result;
    unsigned final_flags;
    int active_in_final;
    int cancel_at;            /* cancel from the callback at this count; 0: never */
    int cancel_rc;
    int seen[65536];          /* client port -> times accepted */
    int client_port[65536];   /* client port -> 1 if one of ours */
} acc;

static acc g_acc;

static void acc_cb(iomux_op *op) {
    acc *a = op->data;
    if (op->flags & IOMUX_OP_MORE) {
        int fd = (int)op->result, port;
        CHECK(op->result >= 0);
        CHECK_EQ(op->flags, IOMUX_OP_MORE);
        CHECK_EQ(iomux_op_active(op), 1); /* not final: still the loop's */
        check_accepted_fd(fd);
        port = peer_port(fd);
        CHECK(a->client_port[port]);
        a->seen[port]++;
        CHECK_EQ(a->seen[port], 1); /* each connection accepted once */
        CHECK_SYS(close(fd));
        a->more++;
        if (a->cancel_at && a->more == a->cancel_at) a->cancel_rc = iomux_cancel(op);
        return;
    }
    a->final++;
    a->final_result = op->result;
    a->final_flags = op->flags;
    a->active_in_final = iomux_op_active(op);
}

static void test_multishot_1000(void) {
    iomux_loop *loop = test_loop();
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr), i, b;
    int *cfd = calloc(NCONN, sizeof(int));
    acc *a = &g_acc;
    iomux_op op;
    uint64_t end;
    CHECK(cfd != NULL);
    memset(a, 0, sizeof(*a));
    set_nonblock(lfd);
    op.data = a;
    CHECK_OK(iomux_accept(loop, &op, lfd, IOMUX_OP_MULTISHOT, acc_cb));
    CHECK_EQ(iomux_op_active(&op), 1);
    CHECK_EQ(a->more + a->final, 0); /* never inside the start call */
    end = test_ms() + 5000;
    /* Batches of 250 connections wait in the backlog (1024) before the loop
     * runs: one readiness report then has many connections behind it. */
    for (b = 0; b < NCONN / BATCH; b++) {
        for (i = b * BATCH; i < (b + 1) * BATCH; i++) {
            cfd[i] = connect_nb(&addr);
            a->client_port[local_port(cfd[i])] = 1;
        }
        while (a->more < (b + 1) * BATCH) {
            if (test_ms() > end)
                FAIL("multishot accept stalled: %d callbacks, want %d (batch %d)", a->more, (b + 1) * BATCH,
                     b);
            CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
            if (a->more < (b + 1) * BATCH) sleep_us(200);
        }
        CHECK_EQ(a->final, 0);
        CHECK_EQ(iomux_op_active(&op), 1);
    }
    /* nothing more is pending: no extra callbacks */
    for (i = 0; i < 20; i++) {
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        sleep_us(500);
    }
    CHECK_EQ(a->more, NCONN);
    CHECK_EQ(a->final, 0);
    for (i = 0; i < NCONN; i++) CHECK_EQ(a->seen[local_port(cfd[i])], 1);

    /* an accept in flight keeps the loop */
    CHECK_EQ(iomux_loop_alive(loop), 1);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);

    CHECK_EQ(iomux_cancel(&op), 0);
    CHECK_EQ(a->final, 0); /* the callback runs from the loop */
    run_until_calls(loop, &a->final, 1, 5000);
    spin(loop, 5);
    CHECK_EQ(a->final, 1);
    CHECK_EQ(a->final_result, -ECANCELED);
    CHECK_EQ(a->final_flags & IOMUX_OP_MORE, 0);
    CHECK_EQ(a->active_in_final, 0);
    CHECK_EQ(a->more, NCONN);
    CHECK_EQ(iomux_op_active(&op), 0);
    CHECK_EQ(iomux_cancel(&op), -EINVAL); /* no longer in flight */

    for (i = 0; i < NCONN; i++) close(cfd[i]);
    free(cfd);
    close(lfd);
    spin(loop, 2);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

/* A connection thread: blocking connects while the loop accepts, so the
 * accept op also meets an empty backlog and waits for readiness again. */
typedef struct connector {
    struct sockaddr_in addr;
    int n;
    int fds[200];
    int ports[200];
    int err;
} connector;

static void *connector_main(void *arg) {
    connector *c = arg;
    int i;
    for (i = 0; i < c->n; i++) {
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        c->fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fds[i] < 0 || connect(c->fds[i], (struct sockaddr *)&c->addr, sizeof(c->addr)) < 0 ||
            getsockname(c->fds[i], (struct sockaddr *)&a, &len) < 0) {
            c->err = errno;
            return NULL;
        }
        c->ports[i] = ntohs(a.sin_port);
        if (i % 10 == 9) sleep_us(1000);
    }
    return NULL;
}

static void test_multishot_thread_clients(void) {
    iomux_loop *loop = test_loop();
    acc *a = &g_acc;
    connector *c = calloc(1, sizeof(*c));
    pthread_t th;
    iomux_op op;
    int lfd, i;
    CHECK(c != NULL);
    memset(a, 0, sizeof(*a));
    lfd = tcp_listener(&c->addr);
    set_nonblock(lfd);
    for (i = 0; i < 65536; i++) a->client_port[i] = 1; /* ports known only later */
    c->n = 200;
    op.data = a;
    CHECK_OK(iomux_accept(loop, &op, lfd, IOMUX_OP_MULTISHOT, acc_cb));
    CHECK(pthread_create(&th, NULL, connector_main, c) == 0);
    run_until_calls(loop, &a->more, c->n, 10000);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(c->err, 0);
    for (i = 0; i < c->n; i++) CHECK_EQ(a->seen[c->ports[i]], 1);
    CHECK_EQ(a->final, 0);
    CHECK_EQ(iomux_cancel(&op), 0);
    run_until_calls(loop, &a->final, 1, 5000);
    CHECK_EQ(a->final_result, -ECANCELED);
    CHECK_EQ(a->final_flags, 0);
    CHECK_EQ(a->more, c->n);
    for (i = 0; i < c->n; i++) close(c->fds[i]);
    close(lfd);
    free(c);
    test_loop_free(loop);
}

/* Cancel from inside a MORE callback: one final -ECANCELED follows, and
 * every connection is either delivered or still in the backlog. */
static void test_cancel_in_callback(void) {
    iomux_loop *loop = test_loop();
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr), i, left = 0, fd;
    int cfd[100];
    acc *a = &g_acc;
    iomux_op op;
    memset(a, 0, sizeof(*a));
    set_nonblock(lfd);
    for (i = 0; i < 100; i++) {
        cfd[i] = connect_nb(&addr);
        a->client_port[local_port(cfd[i])] = 1;
    }
    a->cancel_at = 10;
    op.data = a;
    CHECK_OK(iomux_accept(loop, &op, lfd, IOMUX_OP_MULTISHOT, acc_cb));
    run_until_calls(loop, &a->final, 1, 5000);
    spin(loop, 5);
    CHECK_EQ(a->cancel_rc, 0);
    CHECK_EQ(a->final, 1);
    CHECK_EQ(a->final_result, -ECANCELED);
    CHECK_EQ(a->final_flags, 0);
    CHECK(a->more >= 10);
    /* the rest are still in the backlog, none lost */
    while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        int port = peer_port(fd);
        CHECK(a->client_port[port]);
        CHECK_EQ(a->seen[port], 0);
        a->seen[port]++;
        left++;
        close(fd);
    }
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK_EQ(a->more + left, 100);
    for (i = 0; i < 100; i++) close(cfd[i]);
    close(lfd);
    test_loop_free(loop);
}

/* ---- single-shot accept ----------------------------------------------------------------- */

typedef struct single {
    int calls;
    int64_t results[4];
    unsigned flags[4];
    int active[4];
    int restart; /* start the op again from its callback this many times */
    int lfd;
} single;

static void single_cb(iomux_op *op) {
    single *s = op->data;
    CHECK(s->calls < 4);
    s->results[s->calls] = op->result;
    s->flags[s->calls] = op->flags;
    s->active[s->calls] = iomux_op_active(op);
    s->calls++;
    if (op->result >= 0) {
        check_accepted_fd((int)op->result);
        close((int)op->result);
    }
    if (s->restart > 0) {
        s->restart--;
        CHECK_OK(iomux_accept(op->loop, op, s->lfd, 0, single_cb));
    }
}

static void test_single_shot(void) {
    iomux_loop *loop = test_loop();
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr), c1, c2, c3, i;
    single s;
    iomux_op op;
    memset(&s, 0, sizeof(s));
    set_nonblock(lfd);
    s.lfd = lfd;
    c1 = connect_nb(&addr);
    c2 = connect_nb(&addr);
    op.data = &s;
    CHECK_OK(iomux_accept(loop, &op, lfd, 0, single_cb));
    CHECK_EQ(s.calls, 0);
    run_until_calls(loop, &s.calls, 1, 5000);
    for (i = 0; i < 10; i++) {
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        sleep_us(500);
    }
    CHECK_EQ(s.calls, 1); /* one connection taken, the other left alone */
    CHECK(s.results[0] >= 0);
    CHECK_EQ(s.flags[0], 0);
    CHECK_EQ(s.active[0], 0);
    CHECK_EQ(iomux_op_active(&op), 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    CHECK_EQ(iomux_cancel(&op), -EINVAL);

    /* restarted from its own callback: takes c2, then waits for c3 */
    s.restart = 1;
    CHECK_OK(iomux_accept(loop, &op, lfd, 0, single_cb));
    run_until_calls(loop, &s.calls, 2, 5000);
    CHECK(s.results[1] >= 0);
    CHECK_EQ(iomux_op_active(&op), 1); /* the restarted one, waiting */
    spin(loop, 5);
    CHECK_EQ(s.calls, 2);
    c3 = connect_nb(&addr);
    run_until_calls(loop, &s.calls, 3, 5000);
    CHECK(s.results[2] >= 0);
    CHECK_EQ(s.flags[2], 0);
    CHECK_EQ(iomux_op_active(&op), 0);

    /* a pending single-shot accept cancelled: -ECANCELED, once */
    CHECK_OK(iomux_accept(loop, &op, lfd, 0, single_cb));
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    CHECK_EQ(iomux_cancel(&op), 0);
    run_until_calls(loop, &s.calls, 4, 5000);
    spin(loop, 3);
    CHECK_EQ(s.calls, 4);
    CHECK_EQ(s.results[3], -ECANCELED);
    CHECK_EQ(s.flags[3], 0);
    close(c1);
    close(c2);
    close(c3);
    close(lfd);
    test_loop_free(loop);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void test_not_listening(void) {
    iomux_loop *loop = test_loop();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), fd2;
    single s;
    iomux_op op;
    CHECK_SYS(fd);
    memset(&s, 0, sizeof(s));
    op.data = &s;
    CHECK_OK(iomux_accept(loop, &op, fd, 0, single_cb));
    run_until_calls(loop, &s.calls, 1, 5000);
    spin(loop, 3);
    CHECK_EQ(s.calls, 1);
    CHECK(s.results[0] < 0);
    CHECK_EQ(s.flags[0], 0);
    CHECK_EQ(iomux_op_active(&op), 0);

    /* multishot on it: one final error, no MORE */
    fd2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd2);
    memset(&g_acc, 0, sizeof(g_acc));
    op.data = &g_acc;
    CHECK_OK(iomux_accept(loop, &op, fd2, IOMUX_OP_MULTISHOT, acc_cb));
    run_until_calls(loop, &g_acc.final, 1, 5000);
    spin(loop, 3);
    CHECK_EQ(g_acc.final, 1);
    CHECK_EQ(g_acc.more, 0);
    CHECK(g_acc.final_result < 0);
    CHECK_EQ(g_acc.final_flags, 0);

    /* bad arguments are refused at the start call, no callback */
    CHECK_EQ(iomux_accept(loop, &op, -1, 0, single_cb), -EBADF);
    CHECK_EQ(iomux_accept(loop, &op, fd, 0x100, single_cb), -EINVAL);
    CHECK_EQ(iomux_accept(loop, &op, fd, 0, NULL), -EINVAL);
    spin(loop, 2);
    CHECK_EQ(s.calls, 1);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    close(fd);
    close(fd2);
    test_loop_free(loop);
}

int main(void) {
    fprintf(stderr, "backend %s\n", test_backend());
    RUN(test_single_shot);
    RUN(test_not_listening);
    RUN(test_cancel_in_callback);
    RUN(test_multishot_thread_clients);
    RUN(test_multishot_1000);
    return 0;
}
