/* iomux-peer-libev: an echo server on libev, a thin readiness library:
 * ev_io watchers on the epoll backend (EVBACKEND_EPOLL), level-triggered,
 * doing what the raw epoll peer does (epoll.c) so the difference
 * between the two is libev's own cost: its watcher bookkeeping, its
 * pending queue and its re-arming of epoll interest.
 *
 * One ev_io per connection, reading into the one shared 64 KiB buffer and
 * sending straight back; a short write keeps the rest in a block, turns
 * the watcher to EV_WRITE alone (no reading meanwhile: TCP flow control
 * slows the client) and back to EV_READ once it is sent. SIGINT/SIGTERM
 * arrive through ev_signal watchers, libev's own signal facility. */
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "peer.h"

typedef struct conn {
    ev_io io; /* first: the callback's watcher is the connection */
    peer_held *held;
} conn;

static char buf[PEER_BUF];

static void conn_close(struct ev_loop *loop, conn *c) {
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    free(c->held);
    free(c);
}

/* Watches for EV_READ or EV_WRITE alone (ev_io_modify needs it stopped). */
static void conn_want(struct ev_loop *loop, conn *c, int events) {
    ev_io_stop(loop, &c->io);
    ev_io_modify(&c->io, events);
    ev_io_start(loop, &c->io);
}

static void on_readable(struct ev_loop *loop, conn *c) {
    ssize_t n = read(c->io.fd, buf, sizeof(buf)), sent;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        conn_close(loop, c); /* end of stream, or ECONNRESET and the like */
        return;
    }
    sent = peer_send(c->io.fd, buf, (size_t)n);
    if (sent < 0) {
        conn_close(loop, c);
    } else if (sent < n) {
        c->held = peer_hold(buf + sent, (size_t)(n - sent));
        conn_want(loop, c, EV_WRITE);
    }
}

static void on_writable(struct ev_loop *loop, conn *c) {
    int rc = peer_flush(c->io.fd, c->held);
    if (rc < 0) {
        conn_close(loop, c);
    } else if (rc == 1) {
        free(c->held);
        c->held = NULL;
        conn_want(loop, c, EV_READ);
    }
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents) {
    conn *c = (conn *)w;
    if (c->held) on_writable(loop, c);
    else on_readable(loop, c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    int fd;
    while ((fd = peer_accept(w->fd)) >= 0) {
        conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
        ev_io_init(&c->io, conn_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents) {
    ev_break(loop, EVBREAK_ALL); /* no drain: main closes the listener and exits */
}

int main(int argc, char **argv) {
    static ev_signal sigint, sigterm;
    ev_io listener;
    struct ev_loop *loop;
    peer_opts o;
    peer_init(&o, "iomux-peer-libev", "libev", argc, argv);
    loop = ev_default_loop(EVBACKEND_EPOLL);
    if (!loop) {
        fprintf(stderr, "iomux-peer-libev: libev has no epoll backend here\n");
        return 1;
    }
    ev_io_init(&listener, accept_cb, peer_listen(&o), EV_READ);
    ev_io_start(loop, &listener);
    ev_signal_init(&sigint, signal_cb, SIGINT);
    ev_signal_init(&sigterm, signal_cb, SIGTERM);
    ev_signal_start(loop, &sigint);
    ev_signal_start(loop, &sigterm);
    peer_ready(&o, listener.fd);
    ev_run(loop, 0);
    ev_io_stop(loop, &listener);
    close(listener.fd);
    return 0;
}
