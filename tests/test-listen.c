/* iomux_listen and the acceptor: IPv4 and IPv6 with port 0, SO_REUSEPORT
 * (two listeners on one port), the backlog, bad hosts; the acceptor hands
 * out each connection once, stops (on_stop from the loop, none after),
 * reports a fatal error once; and out of fds (RLIMIT_NOFILE lowered) it
 * neither spins nor loses connections on a short exhaustion, sheds the
 * backlog on a long one, and serves again once fds are free. */
#ifndef _WIN32
#include <sys/resource.h>
#endif

#include "harness.h"
#include "iomux/net.h"

#define DEADLINE_MS 5000

static int is_nonblock_cloexec(int fd) {
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
#ifdef _WIN32
    /* Winsock cannot read FIONBIO back (harness-win.h finds it out with a
     * peek, which a listener cannot answer): for a listener only the
     * handle's inheritance is checked; accepting proves the rest. */
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening)
        return fdfl >= 0 && (fdfl & FD_CLOEXEC);
#endif
    return fl >= 0 && fdfl >= 0 && (fl & O_NONBLOCK) && (fdfl & FD_CLOEXEC);
}

/* A connecting socket (non-blocking connect; done by the kernel's backlog). */
static int connect_to(int family, int port) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), rc;
    CHECK_SYS(fd);
    if (family == AF_INET) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    } else {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
        a.sin6_addr = in6addr_loopback;
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    }
    if (rc < 0 && errno != EINPROGRESS) FAIL("connect: %s", strerror(errno));
    return fd;
}

/* TCP_INFO of a listening socket: tcpi_sacked is its backlog limit.
 * (Linux only: Windows cannot read a listener's backlog back.) */
#ifndef _WIN32
static unsigned listen_backlog(int fd) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    CHECK_SYS(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len));
    return ti.tcpi_sacked;
}
#endif

/* ---- an acceptor that records what it is given ----------------------------------- */

#define MAXFDS 64

typedef struct rec {
    iomux_acceptor a;
    int fds[MAXFDS];
    int n, errors, last_error, stops, keep;
    volatile int in_call; /* set around API calls: callbacks must not run inside */
} rec;

static void rec_accept(iomux_acceptor *a, iomux_fd fd) {
    rec *r = a->data;
    CHECK(!r->in_call);
    if (fd < 0) {
        r->errors++;
        r->last_error = fd;
        CHECK_EQ(iomux_acceptor_active(a), 0);
        return;
    }
    CHECK(is_nonblock_cloexec(fd));
    if (r->keep && r->n < MAXFDS) r->fds[r->n] = fd;
    else close(fd);
    r->n++;
}

static void rec_stop(iomux_acceptor *a) {
    rec *r = a->data;
    CHECK(!r->in_call);
    CHECK_EQ(iomux_acceptor_active(a), 0);
    r->stops++;
}

static void rec_start(rec *r, iomux_loop *loop, int lfd, int keep) {
    memset(r, 0, sizeof(*r));
    r->keep = keep;
    r->a.data = r;
    r->in_call = 1;
    CHECK_OK(iomux_acceptor_start(loop, &r->a, lfd, rec_accept));
    r->in_call = 0;
    CHECK_EQ(iomux_acceptor_active(&r->a), 1);
}

static void rec_stop_wait(rec *r, iomux_loop *loop) {
    r->in_call = 1;
    CHECK_OK(iomux_acceptor_stop(&r->a, rec_stop));
    r->in_call = 0;
    CHECK_EQ(r->stops, 0);
    run_until_calls(loop, &r->stops, 1, DEADLINE_MS);
    CHECK_EQ(iomux_acceptor_stop(&r->a, rec_stop), -EINVAL);
}

/* ---- iomux_listen ------------------------------------------------------------------ */

static void check_listener(iomux_loop *loop, int lfd, int family) {
    rec r;
    int port = iomux_listen_port(lfd), c;
    CHECK(lfd >= 0);
    CHECK(is_nonblock_cloexec(lfd));
    CHECK(port > 0 && port < 65536);
    rec_start(&r, loop, lfd, 0);
    c = connect_to(family, port);
    run_until_calls(loop, &r.n, 1, DEADLINE_MS);
    close(c);
    rec_stop_wait(&r, loop);
    CHECK_EQ(r.n, 1);
    close(lfd);
}

static void test_listen_v4(void) {
    iomux_loop *loop = test_loop();
    check_listener(loop, iomux_listen("127.0.0.1", 0, NULL), AF_INET);
    check_listener(loop, iomux_listen("0.0.0.0", 0, NULL), AF_INET);
    check_listener(loop, iomux_listen(NULL, 0, NULL), AF_INET);
    test_loop_free(loop);
}

static void test_listen_v6(void) {
    iomux_loop *loop = test_loop();
    iomux_listen_opts o = {0};
    int fd = iomux_listen("::1", 0, NULL);
    if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
        fprintf(stderr, "   no IPv6 loopback here: skipped\n");
        test_loop_free(loop);
        return;
    }
    check_listener(loop, fd, AF_INET6);
    check_listener(loop, iomux_listen("[::1]", 0, NULL), AF_INET6);
    /* dual-stack "::" takes IPv4 too; v6only does not */
    check_listener(loop, iomux_listen("::", 0, &o), AF_INET);
    o.v6only = 1;
    fd = iomux_listen("::", 0, &o);
    CHECK(fd >= 0);
    {
        int v = 0;
        socklen_t len = sizeof(v);
        CHECK_SYS(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len));
        CHECK_EQ(v, 1);
    }
    close(fd);
    test_loop_free(loop);
}

static void test_listen_reuseport(void) {
    iomux_listen_opts o = {.reuseport = 1};
    int a, b, port;
#ifdef _WIN32
    /* Windows has no SO_REUSEPORT: refused, not silently ignored. */
    CHECK_EQ(iomux_listen("127.0.0.1", 0, &o), -ENOTSUP);
    return;
#endif
    a = iomux_listen("127.0.0.1", 0, &o);
    CHECK(a >= 0);
    port = iomux_listen_port(a);
    b = iomux_listen("127.0.0.1", port, &o); /* a second listener on the same port */
    CHECK(b >= 0);
    CHECK_EQ(iomux_listen_port(b), port);
    CHECK_EQ(iomux_listen("127.0.0.1", port, NULL), -EADDRINUSE); /* not without it */
    close(a);
    close(b);
}

#ifndef _WIN32
static void test_listen_backlog(void) {
    iomux_listen_opts o = {.backlog = 7};
    int fd = iomux_listen("127.0.0.1", 0, &o);
    CHECK(fd >= 0);
    CHECK_EQ(listen_backlog(fd), 7);
    close(fd);
    fd = iomux_listen("127.0.0.1", 0, NULL); /* 0: SOMAXCONN (the kernel may cap it) */
    CHECK(fd >= 0);
    CHECK(listen_backlog(fd) >= 128);
    close(fd);
}
#endif

static void test_listen_errors(void) {
    iomux_listen_opts o = {.backlog = -1};
    CHECK_EQ(iomux_listen("no.such.host", 0, NULL), -EINVAL);
    CHECK_EQ(iomux_listen("localhost", 0, NULL), -EINVAL); /* numeric only */
    CHECK_EQ(iomux_listen("1.2.3", 0, NULL), -EINVAL);
    CHECK_EQ(iomux_listen("[127.0.0.1]", 0, NULL), -EINVAL);
    CHECK_EQ(iomux_listen("[::1", 0, NULL), -EINVAL);
    CHECK_EQ(iomux_listen("127.0.0.1", -1, NULL), -EINVAL);
    CHECK_EQ(iomux_listen("127.0.0.1", 65536, NULL), -EINVAL);
    CHECK_EQ(iomux_listen("127.0.0.1", 0, &o), -EINVAL);
    CHECK_EQ(iomux_listen("192.0.2.1", 0, NULL), -EADDRNOTAVAIL); /* not ours */
    CHECK_EQ(iomux_listen_port(-1), -EBADF);
}

/* ---- the acceptor -------------------------------------------------------------------- */

/* 40 connections, each handed out once; stop: on_stop from the loop, and no
 * on_accept after it, even for connections waiting in the backlog. */
static void test_acceptor_many_then_stop(void) {
    iomux_loop *loop = test_loop();
    int lfd = iomux_listen("127.0.0.1", 0, NULL), port = iomux_listen_port(lfd), i, c[46];
    rec r;
    rec_start(&r, loop, lfd, 0);
    for (i = 0; i < 40; i++) c[i] = connect_to(AF_INET, port);
    run_until_calls(loop, &r.n, 40, DEADLINE_MS);
    CHECK_EQ(r.a.accepted, 40);
    for (i = 40; i < 45; i++) c[i] = connect_to(AF_INET, port);
    rec_stop_wait(&r, loop);
    spin(loop, 5);
    CHECK_EQ(r.n, 40);
    CHECK_EQ(r.errors, 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    /* restartable after on_stop: it takes the ones that waited */
    rec_start(&r, loop, lfd, 0);
    c[45] = connect_to(AF_INET, port);
    run_until_calls(loop, &r.n, 1, DEADLINE_MS);
    rec_stop_wait(&r, loop);
    for (i = 0; i < 46; i++) close(c[i]);
    close(lfd);
    test_loop_free(loop);
}

/* Stopping from inside on_accept. */
static void stop_in_cb(iomux_acceptor *a, iomux_fd fd) {
    rec *r = a->data;
    CHECK(fd >= 0);
    close(fd);
    r->n++;
    CHECK_OK(iomux_acceptor_stop(a, rec_stop));
}

static void test_acceptor_stop_in_callback(void) {
    iomux_loop *loop = test_loop();
    int lfd = iomux_listen("127.0.0.1", 0, NULL), port = iomux_listen_port(lfd), i, c[10];
    rec r;
    memset(&r, 0, sizeof(r));
    r.a.data = &r;
    CHECK_OK(iomux_acceptor_start(loop, &r.a, lfd, stop_in_cb));
    for (i = 0; i < 10; i++) c[i] = connect_to(AF_INET, port);
    run_until_calls(loop, &r.stops, 1, DEADLINE_MS);
    spin(loop, 5);
    CHECK_EQ(r.n, 1); /* none after the stop */
    CHECK_EQ(iomux_loop_alive(loop), 0);
    for (i = 0; i < 10; i++) close(c[i]);
    close(lfd);
    test_loop_free(loop);
}

/* A socket that does not listen: one on_accept(-EINVAL), then inactive. */
static void test_acceptor_fatal(void) {
    iomux_loop *loop = test_loop();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    rec r;
    rec_start(&r, loop, fd, 0);
    run_until_calls(loop, &r.errors, 1, DEADLINE_MS);
    CHECK_EQ(r.last_error, -EINVAL);
    spin(loop, 3);
    CHECK_EQ(r.errors, 1);
    CHECK_EQ(iomux_acceptor_stop(&r.a, rec_stop), -EINVAL);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    close(fd);
    CHECK_EQ(iomux_acceptor_start(loop, &r.a, -1, rec_accept), -EINVAL);
    test_loop_free(loop);
}

#ifndef _WIN32 /* RLIMIT_NOFILE: Windows has no per-process fd limit to lower */
/* ---- out of fds ------------------------------------------------------------------------ */

static void rec_close_fds(rec *r) {
    int i;
    for (i = 0; i < r->n && i < MAXFDS && r->keep; i++) close(r->fds[i]);
}

static struct rlimit saved_limit;

static int highest_fd(void) {
    int fd = dup(0), hi = fd;
    CHECK_SYS(fd);
    close(fd);
    for (fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0) hi = fd;
    return hi;
}

/* Leaves exactly `spare` free fds: the soft limit just above the highest
 * open fd, every hole below filled with /dev/null (closed by unpad). */
static int pad[4096], npad;

static void limit_fds(int spare) {
    struct rlimit rl;
    int hi = highest_fd(), fd;
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &saved_limit));
    rl = saved_limit;
    rl.rlim_cur = (rlim_t)hi + 1;
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &rl));
    while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) pad[npad++] = fd;
    CHECK_EQ(errno, EMFILE);
    rl.rlim_cur = (rlim_t)hi + 1 + (rlim_t)spare;
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &rl));
}

static void unlimit_fds(void) {
    while (npad > 0) close(pad[--npad]);
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &saved_limit));
}

static uint64_t iterations(iomux_loop *loop) {
    iomux_stats s;
    iomux_loop_stats(loop, &s);
    return s.iterations;
}

static void heartbeat_cb(iomux_timer *t) {
    (void)t;
}

/* Runs blocking iterations (RUN_ONCE) for ms; a spinning loop would run
 * thousands. Returns the iterations run. */
static uint64_t run_blocking(iomux_loop *loop, unsigned ms) {
    iomux_timer hb;
    uint64_t before = iterations(loop), end = test_ms() + ms;
    iomux_timer_init(loop, &hb, heartbeat_cb);
    CHECK_OK(iomux_timer_start(&hb, 50, 50)); /* so that ONCE wakes up to look at the clock */
    while (test_ms() < end) CHECK_OK(iomux_run(loop, IOMUX_RUN_ONCE));
    iomux_timer_stop(&hb);
    return iterations(loop) - before;
}

/* 1 once the peer closed: EOF or reset, not "would block". */
static int peer_closed(int fd) {
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void connect_fd(int fd, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS)
        FAIL("connect: %s", strerror(errno));
}

/* Client sockets are made before the limit is lowered: connecting them
 * then takes no fd in this process. */
static void make_sockets(int *c, int n) {
    int i;
    for (i = 0; i < n; i++) {
        c[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK_SYS(c[i]);
    }
}

/* A long exhaustion: 3 fds for 12 connections. 3 are accepted; accepting
 * pauses (no spin); the retry fails again, so the other 9 are shed (their
 * peers see the close at once); once fds are free, new connections are
 * served again. */
static void test_emfile_long(void) {
    iomux_loop *loop = test_loop();
    int lfd = iomux_listen("127.0.0.1", 0, NULL), port = iomux_listen_port(lfd), i, c[13], closed = 0;
    uint64_t iters;
    rec r;
    rec_start(&r, loop, lfd, 1);
    make_sockets(c, 13);
    limit_fds(3);
    for (i = 0; i < 12; i++) connect_fd(c[i], port);
    iters = run_blocking(loop, 400);
    fprintf(stderr, "   %llu iterations in 400 ms; accepted %llu, paused %llu, shed %llu\n",
            (unsigned long long)iters, (unsigned long long)r.a.accepted, (unsigned long long)r.a.paused,
            (unsigned long long)r.a.shed);
    CHECK(iters < 200);
    CHECK_EQ(r.n, 3);
    CHECK(r.a.paused >= 2);
    CHECK_EQ(r.a.shed, 9);
    for (i = 0; i < 12; i++) closed += peer_closed(c[i]);
    CHECK_EQ(closed, 9); /* the shed ones: told, not left hanging */
    rec_stop_wait(&r, loop); /* paused (readiness backends) or waiting (uring) */
    rec_close_fds(&r);
    unlimit_fds();
    rec_start(&r, loop, lfd, 0);
    connect_fd(c[12], port);
    run_until_calls(loop, &r.n, 1, DEADLINE_MS);
    rec_stop_wait(&r, loop);
    for (i = 0; i < 13; i++) close(c[i]);
    close(lfd);
    test_loop_free(loop);
}

/* A short exhaustion: fds come back during the pause, and every waiting
 * connection is then accepted: none shed. */
static void test_emfile_short(void) {
    iomux_loop *loop = test_loop();
    int lfd = iomux_listen("127.0.0.1", 0, NULL), port = iomux_listen_port(lfd), i, c[6];
    uint64_t end = test_ms() + DEADLINE_MS;
    rec r;
    rec_start(&r, loop, lfd, 1);
    make_sockets(c, 6);
    limit_fds(3);
    for (i = 0; i < 6; i++) connect_fd(c[i], port);
    while (r.a.paused == 0) {
        if (test_ms() > end) FAIL("accepting never paused");
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
    CHECK_EQ(r.n, 3);
    rec_close_fds(&r); /* 3 fds free again, within the pause */
    r.keep = 0;
    run_until_calls(loop, &r.n, 6, DEADLINE_MS);
    CHECK_EQ(r.a.shed, 0);
    CHECK_EQ(r.a.paused, 1);
    unlimit_fds();
    rec_stop_wait(&r, loop);
    for (i = 0; i < 6; i++) close(c[i]);
    close(lfd);
    test_loop_free(loop);
}

#endif

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    fprintf(stderr, "backend %s\n", test_backend());
    alarm(60);
    RUN(test_listen_v4);
    RUN(test_listen_v6);
    RUN(test_listen_reuseport);
#ifndef _WIN32
    RUN(test_listen_backlog);
#endif
    RUN(test_listen_errors);
    RUN(test_acceptor_many_then_stop);
    RUN(test_acceptor_stop_in_callback);
    RUN(test_acceptor_fatal);
#ifndef _WIN32
    RUN(test_emfile_long);
    RUN(test_emfile_short);
#endif
    return 0;
}
