/* The test harness's Windows shims (included by harness.h on _WIN32 only,
 * after iomux.h): the POSIX names and semantics the tests are written
 * against, on Winsock and the C runtime. */
#ifndef IOMUX_TEST_HARNESS_WIN_H
#define IOMUX_TEST_HARNESS_WIN_H

/* ---- Windows shims ------------------------------------------------------------------
 * The tests are written against POSIX sockets. On Windows an fd is a SOCKET
 * cast to int (iomux_fd) or a C runtime fd (files), and Winsock reports its
 * errors through WSAGetLastError, not errno. The shims below keep the POSIX
 * names and semantics the tests rely on: each socket call sets errno to the
 * same errno value iomux reports for that Windows error, read/write/close
 * work on a socket or a C runtime fd, and the few POSIX-only flags
 * (SOCK_NONBLOCK, MSG_DONTWAIT, O_NONBLOCK through fcntl) are emulated. */

typedef ULONG nfds_t;
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#define MSG_NOSIGNAL 0 /* Windows raises no SIGPIPE */
/* Private bits, stripped by the shims before Winsock sees them. */
#define SOCK_NONBLOCK 0x40000000
#define SOCK_CLOEXEC 0x20000000
#define MSG_DONTWAIT 0x40000000
#ifndef O_NONBLOCK
#define O_NONBLOCK 0x4000
#endif
#ifndef O_CLOEXEC
#define O_CLOEXEC O_NOINHERIT
#endif
#define F_GETFD 1
#define F_SETFD 2
#define F_GETFL 3
#define F_SETFL 4
#define FD_CLOEXEC 1

/* A Winsock call's int result: on failure errno is set and -1 returned. */
static inline int test_wsa_ret(int rc) {
    if (rc == SOCKET_ERROR) {
        errno = -iomux_socket_error(); /* the errno iomux maps it to */
        return -1;
    }
    return rc;
}

static inline void test_win_fdflags(SOCKET s, int flags) {
    u_long nb = (flags & SOCK_NONBLOCK) != 0;
    ioctlsocket(s, FIONBIO, &nb);
    SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, (flags & SOCK_CLOEXEC) ? 0 : HANDLE_FLAG_INHERIT);
}

static inline int test_win_socket(int domain, int type, int proto) {
    SOCKET s = socket(domain, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), proto);
    if (s == INVALID_SOCKET) return test_wsa_ret(SOCKET_ERROR);
    test_win_fdflags(s, type);
    return (int)s;
}

/* Like Linux (and unlike Winsock, where an accepted socket inherits the
 * listener's mode), the accepted socket is blocking unless SOCK_NONBLOCK. */
static inline int test_win_accept4(int lfd, struct sockaddr *a, socklen_t *len, int flags) {
    SOCKET s = accept((SOCKET)lfd, a, len);
    if (s == INVALID_SOCKET) return test_wsa_ret(SOCKET_ERROR);
    test_win_fdflags(s, flags);
    return (int)s;
}

static inline int test_win_connect(int fd, const struct sockaddr *a, socklen_t len) {
    if (connect((SOCKET)fd, a, len) == 0) return 0;
    /* a non-blocking connect under way: POSIX says EINPROGRESS */
    errno = WSAGetLastError() == WSAEWOULDBLOCK ? EINPROGRESS : -iomux_socket_error();
    return -1;
}

/* 1 if fd polls ready for events within 0 ms: MSG_DONTWAIT's "would block". */
static inline int test_win_ready(int fd, short events) {
    WSAPOLLFD p;
    p.fd = (SOCKET)fd;
    p.events = events;
    p.revents = 0;
    return WSAPoll(&p, 1, 0) != 0;
}

static inline int test_win_len(size_t n) {
    return n > INT_MAX ? INT_MAX : (int)n;
}

static inline ssize_t test_win_recv(int fd, void *buf, size_t n, int flags) {
    if ((flags & MSG_DONTWAIT) && !test_win_ready(fd, POLLIN)) {
        errno = EAGAIN;
        return -1;
    }
    return test_wsa_ret(recv((SOCKET)fd, buf, test_win_len(n), flags & ~MSG_DONTWAIT));
}

static inline ssize_t test_win_send(int fd, const void *buf, size_t n, int flags) {
    if ((flags & MSG_DONTWAIT) && !test_win_ready(fd, POLLOUT)) {
        errno = EAGAIN;
        return -1;
    }
    return test_wsa_ret(send((SOCKET)fd, buf, test_win_len(n), flags & ~MSG_DONTWAIT));
}

/* read/write/close of a socket, or else of a C runtime fd (files). */
static inline ssize_t test_win_read(int fd, void *buf, size_t n) {
    int rc = recv((SOCKET)fd, buf, test_win_len(n), 0);
    if (rc == SOCKET_ERROR && WSAGetLastError() == WSAENOTSOCK) return _read(fd, buf, (unsigned)test_win_len(n));
    return test_wsa_ret(rc);
}

static inline ssize_t test_win_write(int fd, const void *buf, size_t n) {
    int rc = send((SOCKET)fd, buf, test_win_len(n), 0);
    if (rc == SOCKET_ERROR && WSAGetLastError() == WSAENOTSOCK) return _write(fd, buf, (unsigned)test_win_len(n));
    return test_wsa_ret(rc);
}

static inline int test_win_close(int fd) {
    if (closesocket((SOCKET)fd) == 0) return 0;
    if (WSAGetLastError() == WSAENOTSOCK) return _close(fd);
    return test_wsa_ret(SOCKET_ERROR);
}

/* setsockopt/getsockopt take char pointers; SO_RCVTIMEO and SO_SNDTIMEO a
 * DWORD of milliseconds where POSIX passes a struct timeval. */
static inline int test_win_setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
    if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO) &&
        len == (socklen_t)sizeof(struct timeval)) {
        const struct timeval *tv = val;
        DWORD ms = (DWORD)tv->tv_sec * 1000u + (DWORD)tv->tv_usec / 1000u;
        return test_wsa_ret(setsockopt((SOCKET)fd, level, name, (const char *)&ms, sizeof(ms)));
    }
    return test_wsa_ret(setsockopt((SOCKET)fd, level, name, (const char *)val, len));
}

/* fcntl on a socket: O_NONBLOCK through FIONBIO, FD_CLOEXEC as "the handle is
 * not inherited". Winsock cannot read FIONBIO back, so F_GETFL finds out:
 * a socket with nothing to read answers a peek with WSAEWOULDBLOCK only if
 * it is non-blocking (a blocking one would block: the test then times out,
 * which is a failure, as it should be). F_GETFD on a closed fd: EBADF. */
static inline int test_win_fcntl(int fd, int cmd, long arg) {
    DWORD hf;
    u_long nb;
    char c;
    switch (cmd) {
    case F_GETFD:
        if (GetHandleInformation((HANDLE)(intptr_t)fd, &hf)) return (hf & HANDLE_FLAG_INHERIT) ? 0 : FD_CLOEXEC;
        if (_get_osfhandle(fd) != -1) return 0;
        errno = EBADF;
        return -1;
    case F_SETFD:
        SetHandleInformation((HANDLE)(intptr_t)fd, HANDLE_FLAG_INHERIT, (arg & FD_CLOEXEC) ? 0 : HANDLE_FLAG_INHERIT);
        return 0;
    case F_GETFL:
        if (recv((SOCKET)fd, &c, 1, MSG_PEEK) == SOCKET_ERROR) {
            int err = WSAGetLastError();
            if (err == WSAEWOULDBLOCK) return O_RDWR | O_NONBLOCK;
            if (err != WSAENOTCONN && err != WSAEINVAL) return test_wsa_ret(SOCKET_ERROR);
        }
        return O_RDWR;
    case F_SETFL:
        nb = (arg & O_NONBLOCK) != 0;
        return test_wsa_ret(ioctlsocket((SOCKET)fd, FIONBIO, &nb));
    default:
        errno = EINVAL;
        return -1;
    }
}

/* pread of a C runtime fd: seek, read, and put the offset back. */
static inline ssize_t test_win_pread(int fd, void *buf, size_t n, int64_t off) {
    int64_t was = _lseeki64(fd, 0, SEEK_CUR);
    int rc;
    if (was < 0 || _lseeki64(fd, off, SEEK_SET) < 0) return -1;
    rc = _read(fd, buf, (unsigned)test_win_len(n));
    _lseeki64(fd, was, SEEK_SET);
    return rc;
}

/* setenv through the C runtime's environment, which getenv reads. */
static inline int test_win_setenv(const char *name, const char *value, int overwrite) {
    if (!overwrite && getenv(name)) return 0;
    return _putenv_s(name, value) == 0 ? 0 : -1;
}

static inline int test_win_poll(struct pollfd *fds, nfds_t n, int ms) {
    return test_wsa_ret(WSAPoll(fds, n, ms));
}

/* alarm(2) as a watchdog: when it fires the test fails (exit 142, as a
 * process killed by SIGALRM reports 128 + 14). */
static HANDLE test_win_alarm_timer __attribute__((unused));
static inline VOID CALLBACK test_win_alarm_fire(PVOID arg, BOOLEAN fired) {
    (void)arg;
    (void)fired;
    fprintf(stderr, "alarm: the test ran out of time\n");
    fflush(stderr);
    TerminateProcess(GetCurrentProcess(), 142);
}

static inline unsigned test_win_alarm(unsigned sec) {
    if (test_win_alarm_timer) {
        DeleteTimerQueueTimer(NULL, test_win_alarm_timer, NULL);
        test_win_alarm_timer = NULL;
    }
    if (sec > 0)
        CreateTimerQueueTimer(&test_win_alarm_timer, NULL, test_win_alarm_fire, NULL, sec * 1000u, 0,
                              WT_EXECUTEONLYONCE);
    return 0;
}

/* Once before any socket call; no crash dialog (it would hang under Wine). */
static inline void test_win_init(void) {
    static int done;
    WSADATA wd;
    if (done) return;
    done = 1;
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
    if (WSAStartup(MAKEWORD(2, 2), &wd) != 0) {
        fprintf(stderr, "WSAStartup failed\n");
        exit(1);
    }
}

#define socket(d, t, p) test_win_socket(d, t, p)
#define accept(l, a, n) test_win_accept4(l, a, n, 0)
#define accept4(l, a, n, f) test_win_accept4(l, a, n, f)
#define connect(s, a, n) test_win_connect(s, a, n)
#define bind(s, a, n) test_wsa_ret(bind((SOCKET)(s), a, n))
#define listen(s, n) test_wsa_ret(listen((SOCKET)(s), n))
#define shutdown(s, h) test_wsa_ret(shutdown((SOCKET)(s), h))
#define getsockname(s, a, n) test_wsa_ret(getsockname((SOCKET)(s), a, n))
#define getpeername(s, a, n) test_wsa_ret(getpeername((SOCKET)(s), a, n))
#define getsockopt(s, l, o, v, n) test_wsa_ret(getsockopt((SOCKET)(s), l, o, (char *)(v), n))
#define setsockopt(s, l, o, v, n) test_win_setsockopt(s, l, o, v, n)
#define recv(s, b, n, f) test_win_recv(s, b, n, f)
#define send(s, b, n, f) test_win_send(s, b, n, f)
#define read(s, b, n) test_win_read(s, b, n)
#define write(s, b, n) test_win_write(s, b, n)
#define close(s) test_win_close(s)
#define fcntl(...) test_win_fcntl_(__VA_ARGS__, 0L, 0L)
#define test_win_fcntl_(fd, cmd, arg, ...) test_win_fcntl(fd, cmd, (long)(arg))
#define poll(f, n, t) test_win_poll(f, n, t)
#define pread(fd, b, n, off) test_win_pread(fd, b, n, off)
#define setenv(n, v, o) test_win_setenv(n, v, o)
#define unsetenv(n) (_putenv_s(n, "") == 0 ? 0 : -1)
#define alarm(s) test_win_alarm(s)

#endif
