/* The peers' shared frame (see peer.h): one option parser, one listener,
 * one ready line, so the five servers differ only in their event loops. */
#include "peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

static int spare_fd = -1; /* given up for a moment when out of fds (peer_shed) */

static void usage(const peer_opts *o, FILE *out) {
    fprintf(out,
            "usage: %s [--port PORT] [--bind ADDR]\n"
            "An echo server on %s, single-threaded: the peer iomux-echo is compared with.\n\n"
            "options:\n"
            "  --port PORT   TCP port, 0: any free one (default 7000)\n"
            "  --bind ADDR   numeric IPv4 address to listen on (default 127.0.0.1)\n"
            "  --help        print this and exit\n\n"
            "Once listening it prints \"%s: listening on ADDR:PORT (model %s)\".\n"
            "SIGINT/SIGTERM: exit 0 at once. Exit codes: 0, 1 (cannot start), 2 (bad command line).\n",
            o->name, o->model, o->name, o->model);
}

static void bad_usage(const peer_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void bad_usage(const peer_opts *o, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", o->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try --help)\n");
    exit(2);
}

static void set_port(peer_opts *o, const char *v) {
    char *end;
    unsigned long port;
    errno = 0;
    port = strtoul(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || errno || port > 65535)
        bad_usage(o, "--port: '%s' is not a whole number in 0..65535", v);
    o->port = (unsigned)port;
}

static void set_bind(peer_opts *o, const char *v) {
    struct in_addr a;
    if (inet_pton(AF_INET, v, &a) != 1) bad_usage(o, "--bind: '%s' is not a numeric IPv4 address", v);
    o->bind = v;
}

/* 1 if arg is --NAME or --NAME=VALUE (len: the part before any '='). */
static int is_option(const char *arg, size_t len, const char *name) {
    return len == strlen(name) + 2 && strncmp(arg, "--", 2) == 0 && strncmp(arg + 2, name, len - 2) == 0;
}

void peer_init(peer_opts *o, const char *name, const char *model, int argc, char **argv) {
    int i;
    memset(o, 0, sizeof(*o));
    o->name = name;
    o->model = model;
    o->bind = "127.0.0.1";
    o->port = 7000;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '='), *value;
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(o, stdout);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0) bad_usage(o, "unexpected argument '%s'", arg);
        if (!is_option(arg, len, "port") && !is_option(arg, len, "bind"))
            bad_usage(o, "unknown option '%.*s'", (int)len, arg);
        if (eq) value = eq + 1;
        else if (i + 1 < argc) value = argv[++i];
        else bad_usage(o, "%s needs a value", arg);
        if (is_option(arg, len, "port")) set_port(o, value);
        else set_bind(o, value);
    }
    signal(SIGPIPE, SIG_IGN);
}

static void cannot_listen(const peer_opts *o, int fd, const char *what) {
    fprintf(stderr, "%s: cannot listen on %s:%u: %s: %s\n", o->name, o->bind, o->port, what, strerror(errno));
    if (fd >= 0) close(fd);
    exit(1);
}

int peer_listen(const peer_opts *o) {
    struct sockaddr_in a;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) cannot_listen(o, fd, "socket");
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)o->port);
    inet_pton(AF_INET, o->bind, &a.sin_addr); /* checked by peer_init */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) cannot_listen(o, fd, "SO_REUSEADDR");
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) cannot_listen(o, fd, "bind");
    if (listen(fd, PEER_BACKLOG) < 0) cannot_listen(o, fd, "listen");
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd;
}

void peer_ready(const peer_opts *o, int lfd) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    char host[INET_ADDRSTRLEN];
    if (getsockname(lfd, (struct sockaddr *)&a, &len) < 0 || !inet_ntop(AF_INET, &a.sin_addr, host, sizeof(host))) {
        fprintf(stderr, "%s: getsockname: %s\n", o->name, strerror(errno));
        exit(1);
    }
    printf("%s: listening on %s:%d (model %s)\n", o->name, host, ntohs(a.sin_port), o->model);
    fflush(stdout);
}

int peer_signalfd(void) {
    sigset_t set;
    int fd;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    /* Blocked, the signals wait in the signalfd instead of interrupting
     * the wait: no handler, no EINTR, no flag to poll. */
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 || (fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "signalfd: %s\n", strerror(errno));
        exit(1);
    }
    return fd;
}

void peer_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void peer_shed(int lfd) {
    int fd;
    if (spare_fd >= 0) close(spare_fd);
    fd = accept(lfd, NULL, NULL);
    if (fd >= 0) close(fd);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int peer_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            peer_nodelay(fd);
            return fd;
        }
        if (errno == EMFILE || errno == ENFILE) peer_shed(lfd);
        else if (errno != EINTR && errno != ECONNABORTED) return -1; /* EAGAIN: none left */
    }
}

ssize_t peer_send(int fd, const char *p, size_t len) {
    for (;;) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno == EAGAIN) return 0;
        if (errno != EINTR) return -1;
    }
}

peer_held *peer_hold(const char *p, size_t len) {
    peer_held *h = malloc(sizeof(*h) + len);
    if (!h) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    h->off = 0;
    h->len = len;
    memcpy(h->data, p, len);
    return h;
}

int peer_flush(int fd, peer_held *h) {
    ssize_t n = peer_send(fd, h->data + h->off, h->len - h->off);
    if (n < 0) return -1;
    h->off += (size_t)n;
    return h->off == h->len;
}
