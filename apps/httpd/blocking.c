/* The blocking httpd (threads, prefork): read, feed the session, write
 * its output with blocking calls (send for memory, sendfile for files),
 * until the session says close. Timeouts are the socket's: SO_RCVTIMEO is
 * the idle timeout (a blocking server cannot cheaply bound a whole header
 * block, so a slow client is bounded per read, not per request) and
 * SO_SNDTIMEO the send timeout. While draining, responses say
 * "Connection: close". */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "httpd.h"

#define READ_BUF 16384
#define LINGER_MS 2000

static void set_timeout(iomux_fd fd, int opt, unsigned ms) {
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/* Writes the whole output. 0, or -errno. */
static int send_out(iomux_fd fd, iomux_http_session *s) {
    iomux_http_chunk v[16];
    size_t n;
    while ((n = iomux_http_out_peek(s, 0, v, 16)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (v[i].data) {
                int rc = app_blocking_write(fd, v[i].data, v[i].len);
                if (rc < 0) return rc;
                iomux_http_out_consume(s, v[i].len);
                continue;
            }
            off_t off = (off_t)v[i].offset;
            ssize_t put = sendfile(fd, v[i].fd, &off, v[i].len);
            if (put < 0 && errno == EINTR) break; /* peek again */
            if (put <= 0) return put < 0 ? -errno : -EIO;
            iomux_http_out_consume(s, (size_t)put);
            break; /* a partial range: peek again */
        }
    }
    return 0;
}

static uint64_t now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* FIN, then read and drop what the client still sends, for at most
 * LINGER_MS: the runner's close with unread bytes would reset, and the
 * client could lose the response. */
static void linger(iomux_fd fd, char *buf) {
    uint64_t end = now_ms() + LINGER_MS;
    shutdown(fd, SHUT_WR);
    set_timeout(fd, SO_RCVTIMEO, LINGER_MS);
    while (now_ms() < end && recv(fd, buf, READ_BUF, 0) > 0) {
    }
}

void httpd_serve(const app_options *o, void *app, iomux_fd fd) {
    iomux_http_config cfg;
    iomux_http_ctx *ctx;
    iomux_http_session s;
    iomux_http_next nx = IOMUX_HTTP_CONTINUE;
    char *buf = malloc(READ_BUF);
    int one = 1;
    (void)app;
    httpd_config(o, &cfg);
    if (!buf || iomux_http_ctx_new(&ctx, &cfg) < 0) {
        free(buf);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_timeout(fd, SO_RCVTIMEO, cfg.idle_timeout_ms);
    set_timeout(fd, SO_SNDTIMEO, cfg.send_timeout_ms);
    iomux_http_session_init(&s, ctx);
    while (nx == IOMUX_HTTP_CONTINUE) {
        ssize_t n;
        if (iomux_http_input_held(&s)) { /* the output was full: it is written now */
            nx = iomux_http_resume(&s);
            if (nx != IOMUX_HTTP_ABORT && send_out(fd, &s) < 0) nx = IOMUX_HTTP_ABORT;
            continue;
        }
        n = app_blocking_read(fd, buf, READ_BUF);
        iomux_http_ctx_tick(ctx, now_ms());
        if (app_draining()) iomux_http_session_shutdown(&s);
        if (n > 0) nx = iomux_http_feed(&s, buf, (size_t)n);
        else if (n == 0) nx = iomux_http_feed_eof(&s);
        else if (n == -EAGAIN || n == -EWOULDBLOCK) nx = iomux_http_expire(&s); /* SO_RCVTIMEO */
        else nx = IOMUX_HTTP_ABORT;
        if (nx != IOMUX_HTTP_ABORT && send_out(fd, &s) < 0) nx = IOMUX_HTTP_ABORT;
    }
    if (nx == IOMUX_HTTP_CLOSE) linger(fd, buf);
    iomux_http_session_close(&s);
    iomux_http_ctx_free(ctx);
    free(buf);
}
