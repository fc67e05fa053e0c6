/* iomux-echo, run as a user would: the built binary in a child process on
 * 127.0.0.1, port 0 (its ready line tells the port).
 *
 *   test-app-echo IOMUX-ECHO SCENARIO
 *
 * A model scenario (e.g. "epoll-reactor", "uring-proactor-t2-acceptor")
 * starts the server with that scenario's options, then:
 *  1. 200 clients at once (one poll() loop), each echoing a few messages of
 *     1 B to 1 MiB, content checked byte by byte;
 *  2. the drain: an idle connection, and a 4 MiB echo in flight when
 *     SIGTERM comes: the echo arrives whole, then both connections are
 *     closed by the server (end of stream), new connections are refused,
 *     and the server exits 0 well within --drain-ms;
 *  3. its output holds no error, alert, sanitizer or forced-drain line.
 * "work-*" scenarios do the same with --work-us 200 and a lighter load;
 * "options" checks --help and bad command lines (exit 2) and a failed
 * listen (exit 1); "uring-refused" runs --model uring where io_uring_setup
 * is refused (seccomp): exit 1 with a message. Every wait is bounded. */
#include <ctype.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"
#include "app-server.h"

#define DRAIN_MS 3000       /* --drain-ms given to the server (below, as text too) */
#define CLIENTS_MS 40000    /* phase 1 */
#define BIG (4u << 20)      /* the echo in flight at SIGTERM */
#define SIGNAL_AT (256u << 10)

/* ---- clients --------------------------------------------------------------------------- */

enum { CONNECTING, RUNNING, DONE };

typedef struct client {
    int fd, state;
    unsigned id, msg, nmsg;
    size_t size[6];
    size_t sent, recvd;
} client;

static void client_send(client *c) {
    c->sent += echo_send(c->fd, c->id, c->msg, c->sent, c->size[c->msg] - c->sent);
}

/* Reads and checks; returns the bytes read (0 at end of stream). */
static ssize_t client_recv(client *c) {
    static char buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EAGAIN) return -1;
    if (n < 0) FAIL("client %u: recv: %s (message %u, %zu/%zu bytes back)", c->id, strerror(errno), c->msg,
                    c->recvd, c->size[c->msg]);
    if (n == 0) return 0;
    if (c->msg >= c->nmsg || c->recvd + (size_t)n > c->size[c->msg])
        FAIL("client %u: %zd bytes more than it sent", c->id, n);
    echo_check(buf, (size_t)n, c->id, c->msg, c->recvd);
    c->recvd += (size_t)n;
    if (c->recvd == c->size[c->msg]) {
        c->msg++;
        c->sent = c->recvd = 0;
    }
    return n;
}

/* One poll() step for a client: connect, send, receive. */
static void client_step(client *c, short revents) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (!(revents & (POLLOUT | POLLERR | POLLHUP))) return;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) FAIL("client %u: connect: %s", c->id, strerror(err));
        c->state = RUNNING;
    }
    if ((revents & POLLOUT) && c->sent < c->size[c->msg]) client_send(c);
    if (revents & (POLLIN | POLLERR | POLLHUP)) {
        if (client_recv(c) == 0) FAIL("client %u: the server ended the connection early", c->id);
    }
    if (c->msg == c->nmsg) {
        close(c->fd);
        c->state = DONE;
    }
}

static void run_clients(client *cs, unsigned n, int port) {
    struct pollfd *p = calloc(n, sizeof(*p));
    unsigned *idx = calloc(n, sizeof(*idx));
    uint64_t end = test_ms() + CLIENTS_MS;
    unsigned i, k, done = 0;
    CHECK(p && idx);
    for (i = 0; i < n; i++) {
        cs[i].fd = connect_to(port, 1);
        if (cs[i].fd < 0) FAIL("client %u: connect: %s", i, strerror(-cs[i].fd));
        cs[i].state = CONNECTING;
    }
    while (done < n) {
        if (test_ms() > end) FAIL("clients: only %u of %u done within %d ms", done, n, CLIENTS_MS);
        for (i = k = 0; i < n; i++) {
            client *c = &cs[i];
            if (c->state == DONE) continue;
            p[k].fd = c->fd;
            p[k].events = (short)(POLLIN | (c->state == CONNECTING || c->sent < c->size[c->msg] ? POLLOUT : 0));
            idx[k++] = i;
        }
        CHECK_SYS(poll(p, k, 100));
        for (i = 0, done = n - k; i < k; i++) {
            if (p[i].revents) client_step(&cs[idx[i]], p[i].revents);
            if (cs[idx[i]].state == DONE) done++;
        }
    }
    free(p);
    free(idx);
}

static const size_t sizes[] = {1, 7, 100, 1000, 4096, 10000, 65536, 100000, 262144, 1048576};

/* heavy: 1 B .. 1 MiB (a tenth of the clients send 1 MiB and 256 KiB);
 * light: 1 B .. 64 KiB (for --work-us, which costs per message). */
static void make_clients(client *cs, unsigned n, int heavy) {
    unsigned i, k;
    memset(cs, 0, n * sizeof(*cs));
    for (i = 0; i < n; i++) {
        cs[i].id = i;
        cs[i].nmsg = heavy ? 5 : 4;
        for (k = 0; k < cs[i].nmsg; k++) cs[i].size[k] = sizes[(i + 3 * k) % (heavy ? 8 : 7)];
        if (heavy && i % 10 == 0) {
            cs[i].size[2] = sizes[9];
            cs[i].size[4] = sizes[8];
        }
    }
}

/* ---- the drain ------------------------------------------------------------------------ */

/* An idle connection (it has been served) for the drain to close. */
static int idle_conn(int port) {
    int fd = connect_to(port, 0);
    struct pollfd p;
    char c = 'x';
    CHECK(fd >= 0);
    CHECK_EQ(send(fd, &c, 1, 0), 1);
    p.fd = fd;
    p.events = POLLIN;
    if (poll(&p, 1, 10000) != 1) FAIL("idle connection: no echo");
    CHECK_EQ(recv(fd, &c, 1, 0), 1);
    CHECK_EQ(c, 'x');
    return fd;
}

/* A 4 MiB echo; SIGTERM once 256 KiB came back; all of it must arrive. */
static uint64_t big_echo_through_sigterm(server *s) {
    client c;
    uint64_t end = test_ms() + CLIENTS_MS, signalled = 0;
    memset(&c, 0, sizeof(c));
    c.id = 999;
    c.nmsg = 1;
    c.size[0] = BIG;
    c.fd = connect_to(s->port, 1);
    CHECK(c.fd >= 0);
    c.state = CONNECTING;
    while (c.msg < 1) {
        struct pollfd p = {.fd = c.fd, .events = (short)(POLLIN | (c.sent < BIG ? POLLOUT : 0))};
        if (test_ms() > end) FAIL("big echo: %zu of %u bytes back", c.recvd, BIG);
        CHECK_SYS(poll(&p, 1, 100));
        if (p.revents) {
            size_t before = c.recvd;
            if (c.state == CONNECTING) client_step(&c, p.revents);
            else {
                if ((p.revents & POLLOUT) && c.sent < BIG) client_send(&c);
                if ((p.revents & (POLLIN | POLLERR | POLLHUP)) && client_recv(&c) == 0)
                    FAIL("big echo: end of stream after %zu of %u bytes (signalled: %d)", before, BIG, !!signalled);
            }
        }
        if (!signalled && c.recvd >= SIGNAL_AT) {
            CHECK_SYS(kill(s->pid, SIGTERM));
            signalled = test_ms();
        }
    }
    CHECK(signalled);
    expect_eof(c.fd, DRAIN_MS, "big echo, after the drain");
    close(c.fd);
    return signalled;
}

static void run_drain(server *s) {
    int idle = idle_conn(s->port), fd, status;
    uint64_t t0 = big_echo_through_sigterm(s), took;
    expect_eof(idle, DRAIN_MS, "idle connection");
    close(idle);
    fd = connect_to(s->port, 0); /* the listeners are closed by now */
    if (fd >= 0) {
        char c = 'y';
        send(fd, &c, 1, MSG_NOSIGNAL);
        expect_eof(fd, DRAIN_MS, "connection made during the drain");
        close(fd);
    } else if (fd != -ECONNREFUSED) {
        FAIL("connect during the drain: %s", strerror(-fd));
    }
    status = wait_exit(s, DRAIN_MS + 2000);
    took = test_ms() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("the server exited with status 0x%x:\n%s", status, s->text);
    if (took > DRAIN_MS) FAIL("the drain took %llu ms (bound %d)", (unsigned long long)took, DRAIN_MS);
    fprintf(stderr, "   drained in %llu ms\n", (unsigned long long)took);
}

/* ---- scenarios ---------------------------------------------------------------------- */

typedef struct scenario {
    const char *name;
    const char *args[10];
    int uring;   /* needs io_uring */
    int heavy;   /* 200 clients up to 1 MiB, else 50 up to 64 KiB */
} scenario;

static const scenario scenarios[] = {
    {"select-reactor", {"--model", "select"}, 0, 1},
    {"select-proactor", {"--model", "select", "--api", "proactor"}, 0, 1},
    {"poll-reactor", {"--model", "poll"}, 0, 1},
    {"poll-proactor", {"--model", "poll", "--api", "proactor"}, 0, 1},
    {"epoll-reactor", {"--model", "epoll"}, 0, 1},
    {"epoll-proactor", {"--model", "epoll", "--api", "proactor"}, 0, 1},
    {"epoll-et", {"--model", "epoll-et"}, 0, 1},
    {"uring-proactor", {"--model", "uring"}, 1, 1},
    {"uring-reactor", {"--model", "uring", "--api", "reactor"}, 1, 1},
    {"uring-poll", {"--model", "uring-poll"}, 1, 1},
    {"threads", {"--model", "threads"}, 0, 1},
    {"prefork", {"--model", "prefork", "--processes", "16"}, 0, 1},
    {"epoll-reactor-t2-reuseport", {"--threads", "2", "--balance", "reuseport"}, 0, 1},
    {"epoll-reactor-t2-acceptor", {"--threads", "2", "--balance", "acceptor"}, 0, 1},
    {"epoll-et-t2-acceptor", {"--model", "epoll-et", "--threads", "2", "--balance", "acceptor"}, 0, 1},
    {"epoll-proactor-t2-reuseport", {"--api", "proactor", "--threads", "2", "--balance", "reuseport"}, 0, 1},
    {"uring-proactor-t2-reuseport", {"--model", "uring", "--threads", "2", "--balance", "reuseport"}, 1, 1},
    {"uring-proactor-t2-acceptor", {"--model", "uring", "--threads", "2", "--balance", "acceptor"}, 1, 1},
    {"work-reactor-inline", {"--work-us", "200"}, 0, 0},
    {"work-reactor-offload", {"--work-us", "200", "--offload"}, 0, 0},
    {"work-et-offload", {"--model", "epoll-et", "--work-us", "200", "--offload"}, 0, 0},
    {"work-proactor-inline", {"--api", "proactor", "--work-us", "200"}, 0, 0},
    {"work-proactor-offload", {"--api", "proactor", "--work-us", "200", "--offload"}, 0, 0},
    {"work-uring-offload", {"--model", "uring", "--work-us", "200", "--offload", "--threads", "2"}, 1, 0},
    {"work-threads", {"--model", "threads", "--work-us", "200"}, 0, 0},
};

static const char *g_bin;

static void run_model(const scenario *sc) {
    char *argv[20];
    unsigned n = sc->heavy ? 200 : 50, i, k = 0;
    client *cs = calloc(n, sizeof(*cs));
    server s;
    uint64_t t0, bytes = 0;
    if (sc->uring && !uring_available()) {
        fprintf(stderr, "skip: io_uring is not available here\n");
        exit(TEST_SKIP);
    }
    argv[k++] = (char *)g_bin;
    argv[k++] = "--port";
    argv[k++] = "0";
    argv[k++] = "--drain-ms";
    argv[k++] = "3000";
    argv[k++] = "--drain-idle-ms"; /* a loaded machine may pause the client this long */
    argv[k++] = "300";
    for (i = 0; sc->args[i]; i++) argv[k++] = (char *)sc->args[i];
    argv[k] = NULL;
    spawn(&s, argv);
    g_server = &s;
    wait_ready(&s);
    fprintf(stderr, "   %s", strstr(s.text, "listening"));
    make_clients(cs, n, sc->heavy);
    for (i = 0; i < n; i++)
        for (k = 0; k < cs[i].nmsg; k++) bytes += cs[i].size[k];
    t0 = test_ms();
    run_clients(cs, n, s.port);
    fprintf(stderr, "   %u clients echoed %.1f MB in %llu ms\n", n, (double)bytes / 1e6,
            (unsigned long long)(test_ms() - t0));
    run_drain(&s);
    check_output(&s, 0);
    g_server = NULL;
    free(s.text);
    free(cs);
}

/* ---- the drain deadline ------------------------------------------------------------- */

/* A connection that sends without ever reading: the server's echo backs up
 * until it can neither send nor read; it never becomes idle. */
static int stuck_conn(int port) {
    static char buf[65536];
    int fd = connect_to(port, 1);
    uint64_t end = test_ms() + 10000;
    struct pollfd p;
    CHECK(fd >= 0);
    for (;;) { /* until sending stalls for 200 ms */
        p.fd = fd;
        p.events = POLLOUT;
        if (poll(&p, 1, 200) == 0) break;
        if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) < 0 && errno != EAGAIN) FAIL("send: %s", strerror(errno));
        if (test_ms() > end) FAIL("the server keeps reading from a peer that does not read");
    }
    return fd;
}

/* The drain cannot finish (a stuck connection, plus an idle one): the
 * server closes everything at --drain-ms (or at a second signal) and still
 * exits 0, in time. */
static void run_deadline_one(const char *const *args, int second_signal) {
    char *argv[20];
    unsigned k = 0;
    int stuck, idle, status, drain_ms = second_signal ? 20000 : 300;
    char drain_arg[16];
    uint64_t t0, took;
    server s;
    snprintf(drain_arg, sizeof(drain_arg), "%d", drain_ms);
    argv[k++] = (char *)g_bin;
    argv[k++] = "--port";
    argv[k++] = "0";
    argv[k++] = "--drain-ms";
    argv[k++] = drain_arg;
    while (*args) argv[k++] = (char *)*args++;
    argv[k] = NULL;
    spawn(&s, argv);
    g_server = &s;
    wait_ready(&s);
    fprintf(stderr, "   %s", strstr(s.text, "listening"));
    idle = idle_conn(s.port);
    stuck = stuck_conn(s.port);
    t0 = test_ms();
    CHECK_SYS(kill(s.pid, SIGTERM));
    expect_eof(idle, 3000, "idle connection");
    if (second_signal) CHECK_SYS(kill(s.pid, SIGTERM));
    status = wait_exit(&s, (second_signal ? 0 : drain_ms) + 3000);
    took = test_ms() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("exit status 0x%x:\n%s", status, s.text);
    if (!second_signal && took < (uint64_t)drain_ms) FAIL("exited after %llu ms, before the deadline",
                                                           (unsigned long long)took);
    fprintf(stderr, "   exited %llu ms after SIGTERM%s\n", (unsigned long long)took,
            second_signal ? " (twice)" : "");
    check_output(&s, 1);
    close(stuck);
    close(idle);
    g_server = NULL;
    free(s.text);
}

static void run_deadline(void) {
    static const char *const configs[][8] = {
        {"--model", "epoll"},  {"--model", "epoll", "--api", "proactor"}, {"--model", "epoll-et"},
        {"--model", "uring"},  {"--model", "uring-poll", "--threads", "2", "--balance", "acceptor"},
        {"--model", "threads"}, {"--model", "prefork", "--processes", "3"},
    };
    size_t i;
    int uring = uring_available();
    for (i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        if (!uring && strncmp(configs[i][1], "uring", 5) == 0) continue;
        run_deadline_one(configs[i], 0);
    }
    run_deadline_one(configs[0], 1);
    run_deadline_one(configs[1], 1);
    run_deadline_one(configs[5], 1);
    run_deadline_one(configs[6], 1);
}

/* ---- command lines ------------------------------------------------------------------- */

static void run_options(void) {
    static const char *const bad[][6] = {
        {"--model", "kqueue"}, {"--model"}, {"--api", "blocking"}, {"--api", "proactor", "--model", "epoll-et"},
        {"--model", "uring-poll", "--api", "proactor"}, {"--threads", "0"}, {"--threads", "many"},
        {"--threads", "100000"}, {"--balance", "random"}, {"--port", "65536"}, {"--port", "-1"},
        {"--bind", "localhost"}, {"--work-us", "1.5"}, {"--offload=yes"}, {"--nonsense"}, {"stray"},
        {"--model", "threads", "--threads", "2"}, {"--model", "prefork", "--api", "reactor"},
        {"--processes", "4"}, {"--model", "threads", "--offload"}, {"--drain-ms", "x"},
    };
    static const char *const help_says[] = {"--model", "--api", "--threads", "--balance", "--processes",
                                            "--work-us", "--offload", "--bind", "--port", "--drain-ms",
                                            "--drain-idle-ms", "--help", "epoll-et", "uring-poll", "prefork"};
    const char *help[] = {"--help", NULL};
    const char *unreachable[] = {"--bind", "192.0.2.1", "--port", "0", NULL};
    size_t i;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[8] = {0};
        memcpy(args, bad[i], sizeof(bad[i]));
        expect_exit(g_bin, args, 2, "iomux-echo: ");
    }
    for (i = 0; i < sizeof(help_says) / sizeof(help_says[0]); i++) expect_exit(g_bin, help, 0, help_says[i]);
    expect_exit(g_bin, unreachable, 1, "cannot listen"); /* a documentation address: not ours */
}

/* ---- io_uring refused ---------------------------------------------------------------- */

#if defined(__x86_64__)
#define FILTER_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FILTER_ARCH AUDIT_ARCH_AARCH64
#endif

/* In the child before exec: io_uring_setup fails with EPERM (as under a
 * container's seccomp profile). Exits 77 if the filter cannot be set. */
static void deny_io_uring(void) {
#ifdef FILTER_ARCH
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FILTER_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0) return;
#endif
    _exit(TEST_SKIP);
}

static void deny_io_uring_pre(void *arg) {
    (void)arg;
    deny_io_uring();
}

static void run_uring_refused(void) {
    static const char *const models[][4] = {{"--model", "uring"}, {"--model", "uring-poll"},
                                            {"--model", "uring", "--threads", "2"}};
    size_t m;
    for (m = 0; m < sizeof(models) / sizeof(models[0]); m++) {
        char *argv[] = {(char *)g_bin, "--port", "0", (char *)models[m][0], (char *)models[m][1],
                        (char *)models[m][2], (char *)models[m][3], NULL};
        server s;
        int status;
        spawn_with(&s, argv, deny_io_uring_pre, NULL);
        g_server = &s;
        status = wait_exit(&s, 10000);
        if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP) {
            fprintf(stderr, "skip: cannot install a seccomp filter\n");
            exit(TEST_SKIP);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 1 || !s.text || !strstr(s.text, "cannot start the uring"))
            FAIL("refused io_uring: status 0x%x, output:\n%s", status, s.text ? s.text : "");
        fprintf(stderr, "   %s", s.text);
        g_server = NULL;
        free(s.text);
    }
}

int main(int argc, char **argv) {
    size_t i;
    if (argc != 3) {
        fprintf(stderr, "usage: %s IOMUX-ECHO SCENARIO\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_server);
    fprintf(stderr, "-- %s\n", argv[2]);
    if (strcmp(argv[2], "options") == 0) run_options();
    else if (strcmp(argv[2], "uring-refused") == 0) run_uring_refused();
    else if (strcmp(argv[2], "deadline") == 0) run_deadline();
    else {
        for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
            if (strcmp(scenarios[i].name, argv[2]) == 0) break;
        if (i == sizeof(scenarios) / sizeof(scenarios[0])) FAIL("unknown scenario %s", argv[2]);
        run_model(&scenarios[i]);
    }
    return 0;
}
