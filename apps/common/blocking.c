/* Blocking connections (threads, prefork): reads and writes that survive
 * signals, and the drain's idle test. The drain makes a connection's reads
 * time out (SO_RCVTIMEO, set by the shape, then a signal that interrupts a
 * read already waiting): a read that times out while draining means the
 * peer was quiet for the idle time, so the connection ends like at EOF. */
#include <errno.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "internal.h"

void app__blocking_idle_timeout(int fd, unsigned ms) {
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (long)(ms % 1000) * 1000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* async-signal-safe */
}

ssize_t app_blocking_read(iomux_fd fd, void *buf, size_t len) {
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0) return n;
        if (errno == EINTR) continue; /* maybe the drain's signal: the timeout is set now */
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && app_draining()) return 0; /* idle */
        return -errno;
    }
}

int app_blocking_write(iomux_fd fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
