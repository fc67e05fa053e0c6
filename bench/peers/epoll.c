/* iomux-peer-epoll: an echo server on raw epoll, the least a readiness
 * loop can do, so it is the ceiling iomux-echo's epoll models are measured
 * against (nothing between the kernel's ready list and read/send).
 *
 * Level-triggered, one epoll_wait per iteration: the listener accepts
 * until EAGAIN; a readable connection gets one read into the single shared
 * 64 KiB buffer, sent straight back. Only a short write costs memory: the
 * rest is copied into a per-connection block, the fd then waits for
 * EPOLLOUT alone (not reading, so TCP flow control slows the client) and
 * goes back to EPOLLIN once the block is sent. An idle connection holds
 * nothing but its slot in an fd-indexed table (as Redis's ae does).
 * SIGINT/SIGTERM come through a signalfd in the same epoll set: one more
 * fd, no handler and no EINTR in the hot loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "peer.h"

#define MAX_EVENTS 1024

static int epfd, lfd, sigfd;
static char buf[PEER_BUF];
static peer_held **held; /* by fd: the unsent rest, NULL when all is sent */
static size_t nheld;

static int watch(int op, int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    return epoll_ctl(epfd, op, fd, &ev);
}

static void conn_close(int fd) {
    if ((size_t)fd < nheld) {
        free(held[fd]);
        held[fd] = NULL;
    }
    close(fd); /* also leaves the epoll set: the fd is not shared */
}

/* Makes room for held[fd] (fds are small and reused: a table fits). */
static void held_reserve(int fd) {
    size_t n = nheld ? nheld : 1024;
    while (n <= (size_t)fd) n *= 2;
    if (n == nheld) return;
    held = realloc(held, n * sizeof(*held));
    if (!held) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(held + nheld, 0, (n - nheld) * sizeof(*held));
    nheld = n;
}

static void on_accept(void) {
    int fd;
    while ((fd = peer_accept(lfd)) >= 0) {
        held_reserve(fd);
        if (watch(EPOLL_CTL_ADD, fd, EPOLLIN) < 0) close(fd);
    }
}

static void on_readable(int fd) {
    ssize_t n = read(fd, buf, sizeof(buf)), sent;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        conn_close(fd); /* end of stream, or ECONNRESET and the like */
        return;
    }
    sent = peer_send(fd, buf, (size_t)n);
    if (sent < 0) {
        conn_close(fd);
    } else if (sent < n) {
        held[fd] = peer_hold(buf + sent, (size_t)(n - sent));
        if (watch(EPOLL_CTL_MOD, fd, EPOLLOUT) < 0) conn_close(fd);
    }
}

static void on_writable(int fd) {
    int rc = peer_flush(fd, held[fd]);
    if (rc < 0) {
        conn_close(fd);
    } else if (rc == 1) {
        free(held[fd]);
        held[fd] = NULL;
        if (watch(EPOLL_CTL_MOD, fd, EPOLLIN) < 0) conn_close(fd);
    }
}

/* EPOLLERR and EPOLLHUP come whatever was asked: the read or send that
 * follows reports the error, and the connection is closed there. */
static void dispatch(const struct epoll_event *ev) {
    int fd = ev->data.fd;
    if (fd == lfd) on_accept();
    else if (held[fd]) on_writable(fd);
    else on_readable(fd);
}

int main(int argc, char **argv) {
    struct epoll_event evs[MAX_EVENTS];
    peer_opts o;
    peer_init(&o, "iomux-peer-epoll", "raw-epoll", argc, argv);
    lfd = peer_listen(&o);
    sigfd = peer_signalfd();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0 || watch(EPOLL_CTL_ADD, lfd, EPOLLIN) < 0 || watch(EPOLL_CTL_ADD, sigfd, EPOLLIN) < 0) {
        perror("epoll");
        return 1;
    }
    peer_ready(&o, lfd);
    for (;;) {
        int i, n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (i = 0; i < n; i++) {
            if (evs[i].data.fd == sigfd) {
                close(lfd); /* SIGINT or SIGTERM: no drain, just go */
                return 0;
            }
            dispatch(&evs[i]);
        }
    }
}
