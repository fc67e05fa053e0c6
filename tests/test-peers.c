/* The peer echo servers (bench/peers/: raw epoll, raw io_uring, libuv,
 * libevent, libev), run as the benchmark runs them: the built binary in a
 * child process on 127.0.0.1, port 0, its ready line telling the port.
 *
 *   test-peers PEER-BINARY NAME        (NAME: epoll uring libuv libevent libev)
 *
 *  1. --help exits 0; bad command lines exit 2 with a message;
 *  2. the ready line is exactly "<binary>: listening on 127.0.0.1:PORT
 *     (model M)";
 *  3. echoes of 1 B, 100 B, 64 KiB and 1 MiB on one connection; 1 MiB and
 *     16 MiB on another that sends before it reads, so the server's
 *     writes come up short; then 200 clients at once echoing a few KiB
 *     each; every byte checked (a pattern that differs per client, message
 *     and offset);
 *  4. clients that reset (SO_LINGER 0) mid-stream: one that never reads
 *     its echo, one with its echo in flight, one half-way through reading
 *     it; the server keeps going and a fresh connection still echoes;
 *  5. every connection it served is closed again (its fd count returns);
 *  6. SIGTERM with a connection open: exit 0 within 2 s, and no error,
 *     alert or sanitizer line in its output.
 * Every wait is bounded. */
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "app-server.h"

#define CLIENTS 200
#define CLIENTS_MS 30000
#define QUIET_MS 5000 /* nothing moves on any client connection: fail */
#define EXIT_MS 2000

static const char *g_bin, *g_name;

/* ---- clients: send and receive at once (poll), checking every byte back -------------- */

typedef struct client {
    int fd, connecting;
    int lazy, stalled; /* lazy: reads only once its sending stalls (stalled) */
    unsigned id, msg, nmsg;
    size_t size[4];
    size_t sent, recvd;
} client;

/* Byte off of message msg of client id: no period a lost or repeated
 * chunk could hide in (a multiplicative hash of the offset). */
static void client_send(client *c) {
    c->sent += echo_send(c->fd, c->id, c->msg, c->sent, c->size[c->msg] - c->sent);
}

/* Reads what is there and checks it; a message fully back starts the next. */
static void client_recv(client *c) {
    static char buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) FAIL("client %u: recv: %s", c->id, strerror(errno));
    if (n == 0) FAIL("client %u: end of stream at byte %zu of message %u (%zu bytes)", c->id, c->recvd, c->msg,
                     c->size[c->msg]);
    if (c->recvd + (size_t)n > c->sent) FAIL("client %u: %zd bytes back, more than sent", c->id, n);
    echo_check(buf, (size_t)n, c->id, c->msg, c->recvd);
    c->recvd += (size_t)n;
    if (c->recvd == c->size[c->msg]) {
        c->msg++;
        c->sent = c->recvd = c->stalled = 0;
    }
}

static void client_step(client *c, short revents) {
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) FAIL("client %u: connect: %s", c->id, strerror(err));
        c->connecting = 0;
    }
    if ((revents & POLLOUT) && c->sent < c->size[c->msg]) client_send(c);
    if (revents & (POLLIN | POLLERR | POLLHUP)) client_recv(c);
    if (c->msg == c->nmsg) {
        close(c->fd);
        c->fd = -1;
    }
}

static void clients_stuck(const client *c, unsigned left, unsigned n, const char *why) {
    FAIL("clients: %u of %u not done: %s; client %u: message %u, %zu of %zu bytes sent, %zu back", left, n, why,
         c->id, c->msg, c->sent, c->size[c->msg], c->recvd);
}

/* Runs the clients to the end of their messages (fds closed). */
static void run_clients(client *cs, unsigned n, int port) {
    struct pollfd *p = calloc(n, sizeof(*p));
    unsigned *idx = calloc(n, sizeof(*idx)), i, k;
    uint64_t end = test_ms() + CLIENTS_MS, moved = test_ms();
    int r;
    CHECK(p && idx);
    for (i = 0; i < n; i++) {
        if (cs[i].connecting) continue; /* connected by the caller */
        cs[i].fd = connect_to(port, 1);
        if (cs[i].fd < 0) FAIL("client %u: connect: %s", i, strerror(-cs[i].fd));
        cs[i].connecting = 1;
    }
    for (;;) {
        for (i = k = 0; i < n; i++) {
            if (cs[i].fd < 0) continue;
            p[k].fd = cs[i].fd;
            p[k].events = cs[i].connecting || cs[i].sent < cs[i].size[cs[i].msg] ? POLLOUT : 0;
            if (!cs[i].lazy || cs[i].stalled || !p[k].events) p[k].events |= POLLIN;
            idx[k++] = i;
        }
        if (k == 0) break;
        if (test_ms() > end) clients_stuck(&cs[idx[0]], k, n, "out of time");
        CHECK_SYS(r = poll(p, k, 100));
        if (r > 0) moved = test_ms();
        else if (test_ms() - moved > QUIET_MS) clients_stuck(&cs[idx[0]], k, n, "nothing moves");
        else
            for (i = 0; i < k; i++) cs[idx[i]].stalled = 1; /* 100 ms without room: read now */
        for (i = 0; i < k; i++)
            if (p[i].revents) client_step(&cs[idx[i]], p[i].revents);
    }
    free(p);
    free(idx);
}

/* A connecting non-blocking socket to the server with a small receive
 * buffer: the client's window stays small. */
static int connect_small_window(int port) {
    struct sockaddr_in a;
    int rcvbuf = 4096, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd);
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) FAIL("connect: %s", strerror(errno));
    return fd;
}

/* One connection, messages of the given sizes one after the other. A lazy
 * client, with a small window, sends each message before it reads the
 * echo, as far as it can: the server's writes come up short (on loopback,
 * with a reading client, they would hardly ever be), so what it keeps for
 * later is checked too. */
static void echo_sizes(int port, unsigned id, const size_t *sizes, unsigned n, int lazy) {
    client c;
    memset(&c, 0, sizeof(c));
    c.id = id;
    c.nmsg = n;
    c.lazy = lazy;
    memcpy(c.size, sizes, n * sizeof(*sizes));
    if (lazy) {
        c.fd = connect_small_window(port);
        c.connecting = 1;
    }
    run_clients(&c, 1, port);
}

/* 1 B to 1 MiB; then, lazily, 16 MiB: more than the socket buffers on
 * both sides hold (loopback grows them to megabytes at once). */
static void run_round_trips(int port) {
    static const size_t sizes[] = {1, 100, 65536, 1048576}, big[] = {1048576, 16u << 20};
    uint64_t t0 = test_ms(), t1;
    echo_sizes(port, 1000, sizes, 4, 0);
    t1 = test_ms();
    echo_sizes(port, 1001, big, 2, 1);
    fprintf(stderr, "   1 B, 100 B, 64 KiB, 1 MiB on one connection: %llu ms; 1 MiB, 16 MiB sent before read: %llu ms\n",
            (unsigned long long)(t1 - t0), (unsigned long long)(test_ms() - t1));
}

static void run_many(int port) {
    client *cs = calloc(CLIENTS, sizeof(*cs));
    uint64_t t0 = test_ms();
    unsigned i, k;
    CHECK(cs);
    for (i = 0; i < CLIENTS; i++) {
        cs[i].id = i;
        cs[i].nmsg = 3;
        for (k = 0; k < 3; k++) cs[i].size[k] = 1000 + (i * 97u + k * 1031u) % 7000u;
    }
    run_clients(cs, CLIENTS, port);
    fprintf(stderr, "   %d clients at once, 3 echoes of 1-8 KiB each: %llu ms\n", CLIENTS,
            (unsigned long long)(test_ms() - t0));
    free(cs);
}

/* ---- resets --------------------------------------------------------------------------- */

static void reset_close(int fd) {
    static const struct linger reset = {1, 0};
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)));
    close(fd);
}

/* Sends up to max bytes without reading, until the socket stalls (200 ms
 * without room: the server no longer reads either) or max is sent. With
 * must_stall, reaching max fails: the server has to stop reading from a
 * client that does not read its echo, not buffer or drop it. */
static size_t send_without_reading(int fd, size_t max, int must_stall) {
    static char buf[65536];
    uint64_t end = test_ms() + 15000;
    size_t sent = 0;
    memset(buf, 'r', sizeof(buf));
    while (sent < max) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        ssize_t n;
        if (poll(&p, 1, 200) == 0) break;
        n = send(fd, buf, sizeof(buf) < max - sent ? sizeof(buf) : max - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN) FAIL("send: %s", strerror(errno));
        if (n > 0) sent += (size_t)n;
        if (test_ms() > end) FAIL("the server keeps reading from a client that does not read its echo");
    }
    if (must_stall && sent >= max)
        FAIL("the server took %zu MiB from a client that reads none of its echo", sent >> 20);
    return sent;
}

static void server_alive(const server *s, const char *after) {
    int status;
    pid_t r = waitpid(s->pid, &status, WNOHANG);
    CHECK_SYS(r);
    if (r == s->pid) FAIL("the server died after %s: status 0x%x:\n%s", after, status, s->text);
}

static void run_resets(server *s) {
    static const size_t fresh[] = {100000};
    struct pollfd p = {.events = POLLIN};
    char buf[4096];
    int fd;
    size_t n;
    fd = connect_to(s->port, 1); /* never reads: the server's echo backs up */
    CHECK(fd >= 0);
    n = send_without_reading(fd, (size_t)64 << 20, 1);
    reset_close(fd);
    fprintf(stderr, "   reset a client that sent %zu KiB and read none\n", n >> 10);
    fd = connect_to(s->port, 1); /* echo in flight */
    CHECK(fd >= 0);
    send_without_reading(fd, (size_t)256 << 10, 0);
    reset_close(fd);
    fd = connect_to(s->port, 0); /* half-way through reading its echo */
    CHECK(fd >= 0);
    send_without_reading(fd, (size_t)1 << 20, 0);
    p.fd = fd;
    if (poll(&p, 1, 5000) != 1 || recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0) FAIL("no echo to read half-way");
    reset_close(fd);
    usleep(100000);
    server_alive(s, "the resets");
    echo_sizes(s->port, 2000, fresh, 1, 0);
    server_alive(s, "the echo after the resets");
    fprintf(stderr, "   after 3 resets a fresh connection echoes\n");
}

/* ---- the server ------------------------------------------------------------------------ */

/* A connection the server has accepted and served (one byte echoed). */
static int served_conn(int port) {
    struct pollfd p = {.events = POLLIN};
    char c = 'i';
    p.fd = connect_to(port, 0);
    CHECK(p.fd >= 0);
    CHECK_EQ(send(p.fd, &c, 1, MSG_NOSIGNAL), 1);
    if (poll(&p, 1, 5000) != 1 || recv(p.fd, &c, 1, 0) != 1 || c != 'i') FAIL("idle connection: no echo");
    return p.fd;
}

static const char *model_of(const char *name) {
    if (strcmp(name, "epoll") == 0) return "raw-epoll";
    if (strcmp(name, "uring") == 0) return "raw-uring";
    return name; /* libuv, libevent, libev */
}

static void check_ready_line(const server *s) {
    const char *base = strrchr(g_bin, '/');
    char want[256];
    base = base ? base + 1 : g_bin;
    snprintf(want, sizeof(want), "%s: listening on 127.0.0.1:%d (model %s)\n", base, s->port, model_of(g_name));
    if (strcmp(s->text, want) != 0) FAIL("ready line:\n  got  %s  want %s", s->text, want);
}

/* The server's fds are back to what it had when it became ready. */
static void check_fds_back(const server *s, long baseline) {
    uint64_t end = test_ms() + 3000;
    long n;
    while ((n = proc_fd_count(s->pid)) != baseline) {
        if (test_ms() > end) FAIL("the server holds %ld fds, %ld when it started: connections not closed", n, baseline);
        usleep(10000);
    }
}

static void run_options(void) {
    static const char *const bad[][3] = {{"--port", "70000"}, {"--port", "x"},   {"--port"},     {"--port=-1"},
                                         {"--bind", "localhost"}, {"--nonsense"}, {"stray"}};
    static const char *const help[] = {"--help", NULL};
    char says[64];
    size_t i;
    const char *base = strrchr(g_bin, '/');
    snprintf(says, sizeof(says), "%s: ", base ? base + 1 : g_bin);
    expect_exit(g_bin, help, 0, "--port");
    expect_exit(g_bin, help, 0, "--bind");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[4] = {0};
        memcpy(args, bad[i], sizeof(bad[i]));
        expect_exit(g_bin, args, 2, says);
    }
}

int main(int argc, char **argv) {
    char *args[] = {NULL, "--port", "0", "--bind", "127.0.0.1", NULL};
    server s;
    long fds;
    uint64_t t0;
    int status, idle;
    if (argc != 3) {
        fprintf(stderr, "usage: %s PEER-BINARY NAME\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    g_name = argv[2];
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_server);
    fprintf(stderr, "-- peer/%s\n", g_name);
    if (strcmp(g_name, "uring") == 0 && !uring_available()) {
        fprintf(stderr, "skip: io_uring is not available here\n");
        return TEST_SKIP;
    }
    run_options();
    args[0] = (char *)g_bin;
    spawn(&s, args);
    g_server = &s;
    wait_ready(&s);
    check_ready_line(&s);
    fprintf(stderr, "   %s", s.text);
    fds = proc_fd_count(s.pid);
    run_round_trips(s.port);
    run_many(s.port);
    run_resets(&s);
    check_fds_back(&s, fds);
    idle = served_conn(s.port); /* open at SIGTERM: no need to drain it */
    t0 = test_ms();
    CHECK_SYS(kill(s.pid, SIGTERM));
    status = wait_exit(&s, EXIT_MS);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("SIGTERM: exit status 0x%x:\n%s", status, s.text);
    fprintf(stderr, "   SIGTERM: exit 0 in %llu ms\n", (unsigned long long)(test_ms() - t0));
    close(idle);
    check_output(&s, 0);
    g_server = NULL;
    free(s.text);
    return 0;
}
