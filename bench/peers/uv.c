/* iomux-peer-libuv: an echo server on libuv, the way libuv is meant to be
 * used for it: a uv_tcp_t listener, uv_read_start with an alloc callback,
 * and writes that try the socket first.
 *
 * libuv reads only after asking alloc_cb for a buffer; every connection
 * gets the same static 64 KiB one, which is safe because read_cb is done
 * with the bytes before libuv reads again: uv_try_write sends them at once
 * (no request, no copy) and only what the socket does not take is copied
 * into a uv_write request. While that request is queued the connection
 * stops reading (TCP flow control slows the client, as in the raw epoll
 * peer) and starts again in its callback. libuv itself may read a socket
 * several times per readiness report and accepts until EAGAIN, with its
 * own EMFILE trick. SIGINT/SIGTERM come through uv_signal; the handler
 * closes every handle so uv_run returns and the loop is freed clean. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "peer.h"

/* A uv_write request with the bytes it writes (one allocation). */
typedef struct write_req {
    uv_write_t req;
    char data[];
} write_req;

static char rbuf[PEER_BUF];
static char conn_tag; /* handle->data of a connection: free it on close */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    buf->base = rbuf;
    buf->len = sizeof(rbuf);
}

static void free_cb(uv_handle_t *h) {
    free(h);
}

static void conn_close(uv_stream_t *s) {
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, free_cb);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status) {
    uv_stream_t *s = req->handle;
    free(req);
    if (status < 0) conn_close(s); /* ECANCELED: it is closing already */
    else if (s->write_queue_size == 0 && uv_read_start(s, alloc_cb, read_cb) < 0) conn_close(s);
}

/* Queues p[0, len) (the part uv_try_write left) and stops reading. */
static void write_rest(uv_stream_t *s, const char *p, size_t len) {
    write_req *w = malloc(sizeof(*w) + len);
    uv_buf_t b;
    if (!w) {
        conn_close(s);
        return;
    }
    memcpy(w->data, p, len);
    b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, s, &b, 1, write_cb) < 0) {
        free(w);
        conn_close(s);
        return;
    }
    uv_read_stop(s);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    uv_buf_t b;
    int n;
    if (nread <= 0) {
        if (nread < 0) conn_close(s); /* UV_EOF, or ECONNRESET and the like; 0 is EAGAIN */
        return;
    }
    b = uv_buf_init(buf->base, (unsigned)nread);
    n = uv_try_write(s, &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) conn_close(s);
    else if (n < nread) write_rest(s, buf->base + n, (size_t)(nread - n));
}

static void connection_cb(uv_stream_t *server, int status) {
    uv_tcp_t *c;
    if (status < 0) return;
    if (!(c = malloc(sizeof(*c)))) return;
    uv_tcp_init(server->loop, c);
    c->data = &conn_tag;
    if (uv_accept(server, (uv_stream_t *)c) < 0) {
        uv_close((uv_handle_t *)c, free_cb);
        return;
    }
    uv_tcp_nodelay(c, 1);
    if (uv_read_start((uv_stream_t *)c, alloc_cb, read_cb) < 0) conn_close((uv_stream_t *)c);
}

/* Closes a handle at shutdown: connections are freed, the rest is static. */
static void close_walk(uv_handle_t *h, void *arg) {
    if (!uv_is_closing(h)) uv_close(h, h->data == &conn_tag ? free_cb : NULL);
}

static void signal_cb(uv_signal_t *sig, int signum) {
    uv_walk(sig->loop, close_walk, NULL); /* no drain: uv_run returns once they are closed */
}

static void fail(const char *what, int rc) {
    fprintf(stderr, "iomux-peer-libuv: %s: %s\n", what, uv_strerror(rc));
    exit(1);
}

int main(int argc, char **argv) {
    static uv_loop_t loop;
    static uv_tcp_t server;
    static uv_signal_t sigint, sigterm;
    peer_opts o;
    int rc, lfd;
    peer_init(&o, "iomux-peer-libuv", "libuv", argc, argv);
    lfd = peer_listen(&o);
    if ((rc = uv_loop_init(&loop)) < 0) fail("uv_loop_init", rc);
    uv_tcp_init(&loop, &server);
    if ((rc = uv_tcp_open(&server, lfd)) < 0) fail("uv_tcp_open", rc);
    if ((rc = uv_listen((uv_stream_t *)&server, PEER_BACKLOG, connection_cb)) < 0) fail("uv_listen", rc);
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    if ((rc = uv_signal_start(&sigint, signal_cb, SIGINT)) < 0 ||
        (rc = uv_signal_start(&sigterm, signal_cb, SIGTERM)) < 0)
        fail("uv_signal_start", rc);
    peer_ready(&o, lfd);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) == 0 ? 0 : 1;
}
