/* Signal watchers on Windows: not supported. Windows has no asynchronous
 * signals to speak of (the C runtime's SIGINT arrives on a thread of its
 * own, SIGTERM only through raise()), so iomux_signal_start says so with
 * -ENOTSUP instead of pretending; a program stops a Windows server through
 * its own means (a console control handler that calls iomux_post). */
#include <errno.h>
#include <string.h>

#include "loop.h"

void iomux__signal_init(iomux_loop *loop) {
    loop->sig.slot = -1;
    loop->sig.rfd = loop->sig.wfd = -1;
}

void iomux__signal_close(iomux_loop *loop) {
    (void)loop;
}

void iomux_signal_init(iomux_loop *loop, iomux_signal *s, iomux_signal_cb cb) {
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->cb = cb;
}

int iomux_signal_start(iomux_signal *s, int signum) {
    (void)s;
    (void)signum;
    return -ENOTSUP;
}

int iomux_signal_stop(iomux_signal *s) {
    (void)s;
    return 0;
}

int iomux_signal_active(const iomux_signal *s) {
    (void)s;
    return 0;
}
