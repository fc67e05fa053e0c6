/* iomux-peer-libevent: an echo server on libevent 2, written the way
 * libevent wants it: an evconnlistener accepts, each connection is a
 * bufferevent (BEV_OPT_CLOSE_ON_FREE), and the echo is
 * evbuffer_add_buffer(output, input), which moves the input's chains to
 * the output without copying the bytes. libevent then reads and writes
 * the socket itself (epoll on Linux), buffering in its evbuffers: the
 * price of that convenience is what this peer measures.
 *
 * When a client does not read, the output would grow without bound; as in
 * libevent's own le-proxy sample, reading stops once HIGH bytes wait and
 * resumes (through the write callback and its low watermark) when half of
 * them are sent. At end of stream what is still queued is sent before the
 * bufferevent is freed. SIGINT/SIGTERM arrive as evsignal events. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "peer.h"

#define HIGH PEER_BUF /* queued output at which reading stops */

static void read_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* The output is down to HIGH / 2 again: read again. */
static void drained_cb(struct bufferevent *bev, void *arg) {
    bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_enable(bev, EV_READ);
}

static void read_cb(struct bufferevent *bev, void *arg) {
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) >= HIGH) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, HIGH / 2, 0);
        bufferevent_setcb(bev, read_cb, drained_cb, event_cb, NULL);
    }
}

/* After end of stream: everything queued is sent; close. */
static void finished_cb(struct bufferevent *bev, void *arg) {
    bufferevent_free(bev);
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && evbuffer_get_length(bufferevent_get_output(bev))) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_setcb(bev, NULL, finished_cb, event_cb, NULL);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev); /* ECONNRESET and the like */
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg) {
    struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    peer_nodelay(fd);
    /* 64 KiB per read and write, as the other peers, not libevent's 16 KiB default. */
    bufferevent_set_max_single_read(bev, PEER_BUF);
    bufferevent_set_max_single_write(bev, PEER_BUF);
    bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Without this libevent only warns, and the level-triggered listener
 * would report the connection it cannot accept forever (EMFILE). */
static void accept_error_cb(struct evconnlistener *lev, void *arg) {
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE) peer_shed(evconnlistener_get_fd(lev));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
    event_base_loopbreak(arg); /* no drain: main closes the listener and exits */
}

int main(int argc, char **argv) {
    struct event *sigint, *sigterm;
    struct evconnlistener *lev;
    struct event_base *base;
    peer_opts o;
    int lfd;
    peer_init(&o, "iomux-peer-libevent", "libevent", argc, argv);
    lfd = peer_listen(&o);
    if (!(base = event_base_new())) {
        fprintf(stderr, "iomux-peer-libevent: event_base_new failed\n");
        return 1;
    }
    /* backlog 0: the socket is listening already (PEER_BACKLOG). */
    lev = evconnlistener_new(base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, lfd);
    sigint = evsignal_new(base, SIGINT, signal_cb, base);
    sigterm = evsignal_new(base, SIGTERM, signal_cb, base);
    if (!lev || !sigint || !sigterm || evsignal_add(sigint, NULL) < 0 || evsignal_add(sigterm, NULL) < 0) {
        fprintf(stderr, "iomux-peer-libevent: cannot set up the listener or the signals\n");
        return 1;
    }
    evconnlistener_set_error_cb(lev, accept_error_cb);
    peer_ready(&o, lfd);
    event_base_dispatch(base);
    evconnlistener_free(lev);
    event_free(sigint);
    event_free(sigterm);
    return 0; /* the base and the connections on it go with the process */
}
