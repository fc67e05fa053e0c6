/* The blocking echo (threads, prefork): read, work, write it all back,
 * until end of stream, an error, or the drain finding it idle. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "echo.h"

void echo_serve(const app_options *o, void *app, iomux_fd fd) {
    char *buf = malloc(ECHO_BUF);
    int one = 1;
    (void)app;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (buf) {
        ssize_t n = app_blocking_read(fd, buf, ECHO_BUF);
        if (n <= 0) break;
        if (o->work_us) app_spin_us(o->work_us);
        if (app_blocking_write(fd, buf, (size_t)n) < 0) break;
    }
    free(buf);
}
