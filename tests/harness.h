/* A tiny test harness: assertion macros that print the failing expression and
 * values, helpers for fd pairs on loopback, and a bounded run-until. Each test
 * file is one process; ctest runs it once per backend. */
#ifndef IOMUX_TEST_HARNESS_H
#define IOMUX_TEST_HARNESS_H

#ifdef _WIN32
/* Windows (mingw-w64, run under Wine): Winsock, and below, after iomux.h,
 * the shims that give the tests their POSIX names. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <io.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#else
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#endif

#include "iomux.h"

#ifdef _WIN32
#include "harness-win.h"
#endif

#define TEST_SKIP 77

#define FAIL(...)                                              \
    do {                                                       \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);        \
        fprintf(stderr, __VA_ARGS__);                          \
        fprintf(stderr, "\n");                                 \
        exit(1);                                               \
    } while (0)

#define CHECK(cond)                                            \
    do {                                                       \
        if (!(cond)) FAIL("CHECK failed: %s", #cond);          \
    } while (0)

#define CHECK_EQ(a, b)                                                          \
    do {                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                     \
        if (a_ != b_) FAIL("CHECK_EQ failed: %s == %s (%lld vs %lld)", #a, #b, a_, b_); \
    } while (0)

#define CHECK_OK(expr)                                                          \
    do {                                                                        \
        int rc_ = (expr);                                                       \
        if (rc_ < 0) FAIL("%s failed: %d (%s)", #expr, rc_, iomux_strerror(rc_)); \
    } while (0)

#define CHECK_SYS(expr)                                                         \
    do {                                                                        \
        if ((expr) < 0) FAIL("%s failed: %s", #expr, strerror(errno));          \
    } while (0)

/* Runs one test function. A test binary given an argument runs only the
 * test of that name (call TEST_ARGS(argc, argv) first in main). */
static const char *test_only __attribute__((unused));
#define TEST_ARGS(argc, argv) (test_only = (argc) > 1 ? (argv)[1] : NULL)
#define RUN(test)                                                              \
    do {                                                                       \
        if (test_only && strcmp(test_only, #test) != 0) break;                 \
        fprintf(stderr, "-- %s\n", #test);                                     \
        test();                                                                \
    } while (0)

#ifdef _WIN32
/* The monotonic clock: QueryPerformanceCounter. */
static inline uint64_t test_ns(void) {
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (uint64_t)(c.QuadPart / f.QuadPart) * 1000000000u +
           (uint64_t)(c.QuadPart % f.QuadPart) * 1000000000u / (uint64_t)f.QuadPart;
}

static inline uint64_t test_ms(void) {
    return test_ns() / 1000000u;
}
#else
static inline uint64_t test_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t test_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
#endif

/* Before main: if $IOMUX_BACKEND names a backend this machine refuses
 * (io_uring disabled or filtered: EPERM, ENOSYS; not built: ENOTSUP), the
 * test is skipped (exit 77, which ctest reports as skipped) rather than
 * failed: the machine, not iomux, lacks it. */
__attribute__((constructor)) static void test_backend_probe(void) {
    const char *b = getenv("IOMUX_BACKEND");
    iomux_loop *loop = NULL;
    int rc;
#ifdef _WIN32
    test_win_init();
#endif
    if (!b || !*b) return;
    rc = iomux_loop_new(&loop, NULL);
    if (rc == -EPERM || rc == -ENOSYS || rc == -ENOTSUP) {
        fprintf(stderr, "skip: backend %s is not available here: %s\n", b, iomux_strerror(rc));
        exit(TEST_SKIP);
    }
    if (rc == 0) iomux_loop_free(loop);
}

static inline iomux_loop *test_loop(void) {
    iomux_loop *loop = NULL;
    CHECK_OK(iomux_loop_new(&loop, NULL));
    return loop;
}

static inline void test_loop_free(iomux_loop *loop) {
    CHECK_OK(iomux_loop_free(loop));
}

/* The backend the suite is running on (IOMUX_BACKEND), for the few
 * assertions that legitimately differ. */
static inline const char *test_backend(void) {
    const char *b = getenv("IOMUX_BACKEND");
    return b ? b : "auto";
}

/* 1 on backends where IOMUX_ET and IOMUX_ONESHOT are the kernel's own. */
static inline int test_native_et(iomux_loop *loop) {
    iomux_backend b = iomux_loop_backend(loop);
    return b == IOMUX_BACKEND_EPOLL || b == IOMUX_BACKEND_URING;
}

/* 0 on iocp, which has no Reactor (watchers fail with -ENOTSUP): the few
 * Proactor tests that use a watcher as a helper run that part elsewhere. */
static inline int test_reactor(iomux_loop *loop) {
    return iomux_loop_backend(loop) != IOMUX_BACKEND_IOCP;
}

/* 1 when the Windows build runs under Wine, for what Wine does not emulate
 * (each use says what). */
static inline int test_wine(void) {
#ifdef _WIN32
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    return ntdll && GetProcAddress(ntdll, "wine_get_version") != NULL;
#else
    return 0;
#endif
}

#ifdef _WIN32
static inline void set_nonblock(int fd) {
    CHECK_SYS(fcntl(fd, F_SETFL, O_NONBLOCK));
}
#else
static inline void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    CHECK_SYS(fl);
    CHECK_SYS(fcntl(fd, F_SETFL, fl | O_NONBLOCK));
}

/* A connected non-blocking AF_UNIX stream pair. */
static inline void unix_pair(int fds[2]) {
    CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds));
}
#endif

/* A listening TCP socket on 127.0.0.1 with an ephemeral port. */
static inline int tcp_listener(struct sockaddr_in *addr) {
    socklen_t len = sizeof(*addr);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd);
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_SYS(bind(fd, (struct sockaddr *)addr, sizeof(*addr)));
    CHECK_SYS(listen(fd, 1024));
    CHECK_SYS(getsockname(fd, (struct sockaddr *)addr, &len));
    return fd;
}

/* A connected non-blocking TCP pair over loopback: fds[0] client, fds[1]
 * the accepted server side. Nagle off so small writes travel at once. */
static inline void tcp_pair(int fds[2]) {
    struct sockaddr_in addr;
    int one = 1, lfd = tcp_listener(&addr);
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(fds[0]);
    CHECK_SYS(connect(fds[0], (struct sockaddr *)&addr, sizeof(addr)));
    fds[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    CHECK_SYS(fds[1]);
    close(lfd);
    set_nonblock(fds[0]);
    set_nonblock(fds[1]);
    CHECK_SYS(setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
    CHECK_SYS(setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
}

#ifdef _WIN32
/* Windows has no socketpair: the stream pair is loopback TCP. */
static inline void unix_pair(int fds[2]) {
    tcp_pair(fds);
}
#endif

static inline void write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        CHECK_SYS(n);
        p += n;
        len -= (size_t)n;
    }
}

/* Reads until EAGAIN; returns the byte count. */
static inline size_t drain(int fd) {
    char buf[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return total;
    }
}

/* Runs NOWAIT iterations until *count reaches n; fails after ms. */
static inline void run_until_calls(iomux_loop *loop, const volatile int *count, int n, unsigned ms) {
    uint64_t end = test_ms() + ms;
    while (*count < n) {
        if (test_ms() > end) FAIL("timed out after %u ms: %d calls, want %d", ms, *count, n);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        if (*count < n) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
}

/* Runs NOWAIT iterations until *flag becomes true; fails after ms. */
static inline void run_until(iomux_loop *loop, const volatile int *flag, unsigned ms) {
    uint64_t end = test_ms() + ms;
    while (!*flag) {
        if (test_ms() > end) FAIL("timed out after %u ms waiting for a condition", ms);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        if (!*flag) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
}

/* An empty temp file open read-write, already gone from its directory
 * (POSIX: unlinked at once; Windows, which cannot unlink an open file:
 * deleted when closed). */
#ifdef _WIN32
static inline int test_temp_fd(const char *prefix) {
    char dir[MAX_PATH], path[MAX_PATH];
    int fd;
    CHECK(GetTempPathA(sizeof(dir), dir) > 0);
    CHECK(GetTempFileNameA(dir, prefix, 0, path) != 0);
    fd = _open(path, _O_RDWR | _O_BINARY | _O_TRUNC | _O_TEMPORARY | _O_NOINHERIT);
    CHECK_SYS(fd);
    return fd;
}
#else
static inline int test_temp_fd(const char *prefix) {
    char path[256];
    int fd;
    snprintf(path, sizeof(path), "/tmp/%s-XXXXXX", prefix);
    fd = mkstemp(path);
    CHECK_SYS(fd);
    CHECK_SYS(unlink(path));
    return fd;
}
#endif

/* Interest updates handed to the backend so far (iomux_loop_stats). */
static inline uint64_t test_updates(iomux_loop *loop) {
    iomux_stats s;
    iomux_loop_stats(loop, &s);
    return s.interest_updates;
}

/* Bytes waiting to be read on a socket (up to 256), without reading them. */
static inline size_t bytes_pending(int fd) {
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    return n > 0 ? (size_t)n : 0;
}

static inline void test_close_cb(iomux_op *op) {
    *(int64_t *)op->data = op->result;
}

/* Closes fd through the loop (iomux_close) and waits for it; result 0. */
static inline void test_op_close(iomux_loop *loop, int fd) {
    iomux_op op;
    int64_t res = 1;
    uint64_t end = test_ms() + 5000;
    op.data = &res;
    CHECK_OK(iomux_close(loop, &op, fd, test_close_cb));
    while (res == 1) {
        if (test_ms() > end) FAIL("close did not complete");
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
    CHECK_EQ(res, 0);
}

static inline void close_pair(int p[2]) {
    close(p[0]);
    close(p[1]);
}

/* Runs n non-blocking iterations. */
static inline void spin(iomux_loop *loop, int n) {
    while (n-- > 0) CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
}

/* xorshift64: reproducible pseudo-random numbers; *state must not be 0. */
static inline uint64_t test_rand(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* n pseudo-random bytes from seed (malloc'ed: a file body to compare with). */
static inline unsigned char *test_random_bytes(size_t n, uint64_t seed) {
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(test_rand(&seed) >> 24);
    return p;
}

/* A growing byte string, always NUL-terminated. */
typedef struct test_buf {
    char *p;
    size_t len, cap;
} test_buf;

static inline void test_buf_add(test_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p != NULL);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

#endif
