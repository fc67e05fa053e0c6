/* Edge-triggered watchers (IOMUX_ET): native on epoll, emulated on select and
 * poll (exact for TCP via TCP_INFO counters; "reported while ready" for
 * other fds, which a program that drains to EAGAIN cannot tell apart). TCP
 * pairs are used wherever the test needs exactness on every backend. */
#ifndef _WIN32
#include <sys/ioctl.h>
#endif

#include "harness.h"

typedef struct rec {
    int calls;
    unsigned last;
    unsigned seen;
    int drain;      /* read until EAGAIN (or EOF) in the callback */
    size_t bytes;   /* bytes read by the callback */
    int eof;        /* the callback's read returned 0 */
} rec;

static void rec_cb(iomux_watch *w, unsigned revents) {
    rec *r = w->data;
    r->calls++;
    r->last = revents;
    r->seen |= revents;
    if (r->drain) {
        char buf[4096];
        for (;;) {
            ssize_t n = read(w->fd, buf, sizeof(buf));
            if (n > 0) {
                r->bytes += (size_t)n;
                continue;
            }
            if (n == 0) r->eof = 1;
            else if (errno == EINTR) continue;
            else CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
    }
}

static void watch_rec(iomux_loop *loop, iomux_watch *w, rec *r, int fd) {
    memset(r, 0, sizeof(*r));
    iomux_watch_init(loop, w, fd, rec_cb);
    w->data = r;
}

#ifndef _WIN32 /* TIOCOUTQ (unacknowledged bytes) has no Winsock counterpart: the
                 two OUT sub-tests that wait for it are POSIX-only */
/* A TCP pair whose client (fds[0]) has a small send buffer and whose server
 * side (fds[1]) a small receive buffer, set before the handshake so that the
 * advertised window matches: filling the pipe takes a few KiB. */
static void tcp_pair_small(int fds[2]) {
    struct sockaddr_in addr;
    int one = 1, small = 4096, lfd = tcp_listener(&addr);
    CHECK_SYS(setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)));
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(fds[0]);
    CHECK_SYS(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
    CHECK_SYS(connect(fds[0], (struct sockaddr *)&addr, sizeof(addr)));
    fds[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    CHECK_SYS(fds[1]);
    close(lfd);
    set_nonblock(fds[0]);
    set_nonblock(fds[1]);
    CHECK_SYS(setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
    CHECK_SYS(setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
}

static int writable_within(int fd, int ms) {
    struct pollfd p = {fd, POLLOUT, 0};
    CHECK_SYS(poll(&p, 1, ms));
    return (p.revents & POLLOUT) != 0;
}

/* Writes until EAGAIN, and again whenever late ACKs make room, until the
 * socket stays unwritable for 50 ms. Returns the bytes written. */
static size_t fill(int fd) {
    static const char chunk[4096];
    size_t total = 0;
    int rounds = 0;
    do {
        for (;;) {
            ssize_t n = write(fd, chunk, sizeof(chunk));
            if (n > 0) {
                total += (size_t)n;
                continue;
            }
            CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            break;
        }
        CHECK(++rounds < 1000);
    } while (writable_within(fd, 50));
    return total;
}

static int outq(int fd) {
    int n = 0;
    CHECK_SYS(ioctl(fd, TIOCOUTQ, &n));
    return n;
}

#endif

/* ---- IN on TCP ------------------------------------------------------------ */

static void test_et_in_tcp_undrained(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    char buf[8];
    tcp_pair(p);
    watch_rec(loop, &w, &r, p[1]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET));
    spin(loop, 5);
    CHECK_EQ(r.calls, 0);

    /* Reported once when data arrives... */
    write_all(p[0], "a", 1);
    run_until_calls(loop, &r.calls, 1, 2000);
    CHECK_EQ(r.last, IOMUX_IN);
    /* ...and not again while it sits there unread with nothing new. */
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);

    /* New data: reported again though the first byte was never read. */
    write_all(p[0], "b", 1);
    run_until_calls(loop, &r.calls, 2, 2000);
    CHECK_EQ(r.last, IOMUX_IN);
    spin(loop, 20);
    CHECK_EQ(r.calls, 2);
    write_all(p[0], "c", 1);
    run_until_calls(loop, &r.calls, 3, 2000);
    spin(loop, 20);
    CHECK_EQ(r.calls, 3);

    /* The program drains outside the callback: still silent. */
    CHECK_EQ(read(p[1], buf, sizeof(buf)), 3);
    CHECK(memcmp(buf, "abc", 3) == 0);
    spin(loop, 20);
    CHECK_EQ(r.calls, 3);
    /* And an edge after the drain is seen. */
    write_all(p[0], "d", 1);
    run_until_calls(loop, &r.calls, 4, 2000);
    spin(loop, 20);
    CHECK_EQ(r.calls, 4);

    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

static void et_one_call_per_write(int tcp) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2], i;
    size_t sent = 0;
    char msg[16];
    if (tcp) tcp_pair(p);
    else unix_pair(p);
    watch_rec(loop, &w, &r, p[1]);
    r.drain = 1;
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET));
    spin(loop, 3);
    CHECK_EQ(r.calls, 0);
    for (i = 0; i < 50; i++) {
        size_t len = 1 + (size_t)(i % 13);
        memset(msg, 'a' + i % 26, len);
        write_all(p[0], msg, len);
        sent += len;
        run_until_calls(loop, &r.calls, i + 1, 2000);
        spin(loop, 5);
        CHECK_EQ(r.calls, i + 1);
        CHECK_EQ(r.last, IOMUX_IN);
        CHECK_EQ(r.bytes, sent);
    }
    CHECK_EQ(r.eof, 0);
    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

static void test_et_in_tcp_drain_one_call_per_write(void) {
    et_one_call_per_write(1);
}

/* Non-TCP fds have no counters: the guarantee is still one call per write
 * for a callback that drains to EAGAIN, on every backend. */
static void test_et_in_unix_drain_one_call_per_write(void) {
    et_one_call_per_write(0);
}

/* The documented difference for non-TCP fds left undrained: native ET
 * (epoll, uring) reports once; the emulation reports in every iteration while the fd stays ready. */
static void test_et_in_unix_undrained_documented(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    unix_pair(p);
    watch_rec(loop, &w, &r, p[1]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET));
    write_all(p[0], "u", 1);
    spin(loop, 10);
    if (test_native_et(loop)) CHECK_EQ(r.calls, 1);
    else CHECK_EQ(r.calls, 10);
    CHECK_EQ(r.seen, IOMUX_IN);
    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

/* Changing the interest re-evaluates readiness (as epoll_ctl MOD does), so
 * still-ready conditions are reported again; re-applying the same interest
 * changes nothing. */
static void test_et_update_reevaluates(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    tcp_pair(p);
    watch_rec(loop, &w, &r, p[1]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET));
    write_all(p[0], "q", 1);
    run_until_calls(loop, &r.calls, 1, 2000);
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);

    CHECK_OK(iomux_watch_update(&w, IOMUX_IN | IOMUX_ET));
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET));
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);

    CHECK_OK(iomux_watch_update(&w, IOMUX_IN | IOMUX_OUT | IOMUX_ET));
    run_until_calls(loop, &r.calls, 2, 2000);
    CHECK_EQ(r.last, IOMUX_IN | IOMUX_OUT);
    spin(loop, 20);
    CHECK_EQ(r.calls, 2);

    CHECK_OK(iomux_watch_update(&w, IOMUX_IN | IOMUX_ET));
    run_until_calls(loop, &r.calls, 3, 2000);
    CHECK_EQ(r.last, IOMUX_IN);
    spin(loop, 20);
    CHECK_EQ(r.calls, 3);
    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

/* ---- OUT on TCP ----------------------------------------------------------- */

#ifndef _WIN32 /* outq(): see there */
static void test_et_out_tcp(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2], c;
    size_t filled, got = 0;
    uint64_t end;
    tcp_pair_small(p);
    watch_rec(loop, &w, &r, p[0]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_OUT | IOMUX_ET));

    /* First report: writable. Still writable, nothing new: silent. */
    run_until_calls(loop, &r.calls, 1, 2000);
    CHECK_EQ(r.last, IOMUX_OUT);
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);

    /* Fill until EAGAIN: not writable, nothing reported. */
    filled = fill(p[0]);
    CHECK(filled > 0);
    CHECK(!writable_within(p[0], 0));
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);

    /* The peer drains: room again, OUT reported again. */
    end = test_ms() + 5000;
    while (r.calls < 2) {
        CHECK(test_ms() < end);
        got += drain(p[1]);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
    CHECK_EQ(r.last, IOMUX_OUT);
    /* Let everything be delivered and acknowledged, then: silent again. */
    while (got < filled || outq(p[0]) > 0) {
        CHECK(test_ms() < end);
        got += drain(p[1]);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
    CHECK_EQ(got, filled);
    CHECK(writable_within(p[0], 0));
    spin(loop, 5);
    c = r.calls;
    spin(loop, 20);
    CHECK_EQ(r.calls, c);
    CHECK_EQ(r.seen, IOMUX_OUT);

    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

/* An ET writer fills the buffer in its callback (until EAGAIN); the peer
 * then drains everything before the loop looks again, so the fd is never
 * seen unwritable: the freed space (bytes acknowledged) is the new activity,
 * and OUT must be reported again, or the writer would wait forever. */
typedef struct writer {
    int calls;
    unsigned last;
    size_t written;
} writer;

static void writer_cb(iomux_watch *w, unsigned revents) {
    writer *wr = w->data;
    static const char chunk[4096];
    wr->calls++;
    wr->last = revents;
    for (;;) {
        ssize_t n = write(w->fd, chunk, sizeof(chunk));
        if (n > 0) {
            wr->written += (size_t)n;
            continue;
        }
        CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        return;
    }
}

static void test_et_out_refilled_between_iterations(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    writer wr;
    int p[2], round;
    size_t got = 0;
    memset(&wr, 0, sizeof(wr));
    tcp_pair_small(p);
    iomux_watch_init(loop, &w, p[0], writer_cb);
    w.data = &wr;
    CHECK_OK(iomux_watch_start(&w, IOMUX_OUT | IOMUX_ET));
    for (round = 1; round <= 5; round++) {
        uint64_t end = test_ms() + 5000;
        run_until_calls(loop, &wr.calls, round, 2000);
        CHECK_EQ(wr.calls, round);
        CHECK_EQ(wr.last, IOMUX_OUT);
        CHECK(wr.written > got);
        /* Drain it all without running the loop, until acknowledged. */
        while (got < wr.written || outq(p[0]) > 0) {
            CHECK(test_ms() < end);
            got += drain(p[1]);
        }
        CHECK_EQ(got, wr.written);
        CHECK(writable_within(p[0], 1000));
    }
    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

#endif

/* ---- a TCP listener and the EOF edge ------------------------------------ */

typedef struct acc {
    int calls;
    int fds[8];
    int n;
} acc;

/* Accepts until EAGAIN, as an ET program must. */
static void accept_cb(iomux_watch *w, unsigned revents) {
    acc *a = w->data;
    CHECK_EQ(revents, IOMUX_IN);
    a->calls++;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
            return;
        }
        CHECK(a->n < 8);
        a->fds[a->n++] = fd;
    }
}

static void test_et_listener_and_eof(void) {
    iomux_loop *loop = test_loop();
    struct sockaddr_in addr;
    iomux_watch lw, cw;
    acc a;
    rec r;
    int lfd = tcp_listener(&addr), cl[3], i, srv;
    char buf[8];
    memset(&a, 0, sizeof(a));
    set_nonblock(lfd);
    iomux_watch_init(loop, &lw, lfd, accept_cb);
    lw.data = &a;
    CHECK_OK(iomux_watch_start(&lw, IOMUX_IN | IOMUX_ET));
    spin(loop, 3);
    CHECK_EQ(a.calls, 0);

    /* Three connections, one after the other: three reports. */
    for (i = 0; i < 3; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK_SYS(cl[i]);
        CHECK_SYS(connect(cl[i], (struct sockaddr *)&addr, sizeof(addr)));
        run_until_calls(loop, &a.calls, i + 1, 2000);
        spin(loop, 5);
        CHECK_EQ(a.calls, i + 1);
        CHECK_EQ(a.n, i + 1);
    }
    CHECK_OK(iomux_watch_stop(&lw));

    /* The last connection: data left unread, then drained outside the
     * callback, then the peer's FIN is reported as a new edge. */
    srv = a.fds[2];
    watch_rec(loop, &cw, &r, srv);
    CHECK_OK(iomux_watch_start(&cw, IOMUX_IN | IOMUX_ET));
    write_all(cl[2], "hi", 2);
    run_until_calls(loop, &r.calls, 1, 2000);
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(read(srv, buf, sizeof(buf)), 2);
    CHECK(memcmp(buf, "hi", 2) == 0);
    CHECK_EQ(read(srv, buf, sizeof(buf)), -1);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    spin(loop, 5);
    CHECK_EQ(r.calls, 1);
    r.drain = 1;
    close(cl[2]);
    run_until_calls(loop, &r.calls, 2, 2000);
    CHECK(r.last & IOMUX_IN);
    CHECK_EQ(r.eof, 1);
    CHECK_EQ(r.bytes, 0);
    CHECK_OK(iomux_watch_stop(&cw));

    for (i = 0; i < 3; i++) close(a.fds[i]);
    close(cl[0]);
    close(cl[1]);
    close(lfd);
    test_loop_free(loop);
}

/* The FIN arrives while earlier data is still unread: the state change is
 * activity, so it is reported although the fd was ready all along. */
static void test_et_fin_while_undrained(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    char buf[8];
    tcp_pair(p);
    watch_rec(loop, &w, &r, p[1]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET));
    write_all(p[0], "x", 1);
    run_until_calls(loop, &r.calls, 1, 2000);
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);
    CHECK_SYS(shutdown(p[0], SHUT_WR));
    run_until_calls(loop, &r.calls, 2, 2000);
    CHECK(r.last & IOMUX_IN);
    spin(loop, 20);
    CHECK_EQ(r.calls, 2);
    CHECK_EQ(read(p[1], buf, sizeof(buf)), 1);
    CHECK_EQ(buf[0], 'x');
    CHECK_EQ(read(p[1], buf, sizeof(buf)), 0);
    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

/* A reset arrives while earlier data is unread: no byte counter moves, but
 * the state does (ESTABLISHED -> CLOSE): reported, with ERR|HUP where the
 * backend can tell. */
static void test_et_reset_while_undrained(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    rec r;
    int p[2];
    struct linger lg = {1, 0};
    char c;
    tcp_pair(p);
    watch_rec(loop, &w, &r, p[1]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET));
    write_all(p[0], "x", 1);
    run_until_calls(loop, &r.calls, 1, 2000);
    spin(loop, 20);
    CHECK_EQ(r.calls, 1);
    CHECK_SYS(setsockopt(p[0], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
    CHECK_SYS(close(p[0]));
    run_until_calls(loop, &r.calls, 2, 2000);
    if (iomux_loop_backend(loop) == IOMUX_BACKEND_SELECT) CHECK_EQ(r.last, IOMUX_IN);
    else CHECK_EQ(r.last, IOMUX_IN | IOMUX_ERR | IOMUX_HUP);
    spin(loop, 20);
    CHECK_EQ(r.calls, 2);
    /* Linux keeps the received byte; the reset shows after it. */
    CHECK_EQ(read(p[1], &c, 1), 1);
    CHECK_EQ(c, 'x');
    CHECK_EQ(read(p[1], &c, 1), -1);
    CHECK_EQ(errno, ECONNRESET);
    CHECK_OK(iomux_watch_stop(&w));
    close(p[1]);
    test_loop_free(loop);
}

/* ---- a parked fd does not make the loop spin --------------------------------- */

static void timer_cb(iomux_timer *t) {
    ++*(int *)t->data;
}

/* An undrained ET TCP fd and a repeating 100 ms timer: for 100 ms, RUN_ONCE
 * calls must block (the emulation parks the fd and re-probes it every
 * 10 ms), never poll with a zero timeout. (A repeating timer, because a
 * RUN_ONCE whose wait ends at a timer's deadline runs that timer only in
 * the next call's phase 2, which then waits for the next event.) */
static void test_et_parked_no_spin(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    iomux_timer t;
    iomux_stats s0, s1;
    rec r;
    int p[2], ticks = 0, runs = 0;
    uint64_t it, waits, t0, elapsed;
    tcp_pair(p);
    watch_rec(loop, &w, &r, p[1]);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_ET));
    write_all(p[0], "z", 1);
    run_until_calls(loop, &r.calls, 1, 2000);

    iomux_timer_init(loop, &t, timer_cb);
    t.data = &ticks;
    iomux_update_time(loop);
    CHECK_OK(iomux_timer_start(&t, 100, 100));
    iomux_loop_stats(loop, &s0);
    t0 = test_ms();
    while ((elapsed = test_ms() - t0) < 100) {
        CHECK(++runs < 100000);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_ONCE));
    }
    iomux_loop_stats(loop, &s1);
    it = s1.iterations - s0.iterations;
    waits = s1.waits - s0.waits;
    fprintf(stderr, "   %s: %llu iterations (%llu waits) in %llu ms\n", iomux_backend_name(loop),
            (unsigned long long)it, (unsigned long long)waits, (unsigned long long)elapsed);
    CHECK_EQ(r.calls, 1); /* the undrained byte was not reported again */
    CHECK(it < 1000);
    /* Every iteration blocked (timeout != 0): no busy zero-timeout polls. */
    CHECK(it - waits <= 2);
    if (test_native_et(loop)) CHECK(it <= 3); /* native: one wait for the timer */
    else CHECK(it >= 2);                /* parked: woken to re-probe */

    CHECK_OK(iomux_timer_stop(&t));
    CHECK_OK(iomux_watch_stop(&w));
    close_pair(p);
    test_loop_free(loop);
}

/* Exact TCP edges need arrival counters (TCP_INFO). Windows has
 * SIO_TCP_INFO only from Windows 10 1703 and Wine refuses it, so there every
 * socket is emulated as a pipe is on Linux: reported while ready, which
 * test_et_in_unix_undrained_documented checks (its "unix" pair is a TCP
 * pair there). Those tests are compiled but not run on Windows. */
#ifdef _WIN32
#define RUN_COUNTED(test) (void)(test)
#else
#define RUN_COUNTED(test) RUN(test)
#endif

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    RUN_COUNTED(test_et_in_tcp_undrained);
    RUN(test_et_in_tcp_drain_one_call_per_write);
    RUN(test_et_in_unix_drain_one_call_per_write);
    RUN(test_et_in_unix_undrained_documented);
    RUN_COUNTED(test_et_update_reevaluates);
#ifndef _WIN32
    RUN(test_et_out_tcp);
    RUN(test_et_out_refilled_between_iterations);
#endif
    RUN_COUNTED(test_et_listener_and_eof);
    RUN_COUNTED(test_et_fin_while_undrained);
    RUN_COUNTED(test_et_reset_while_undrained);
    RUN_COUNTED(test_et_parked_no_spin);
    return 0;
}
