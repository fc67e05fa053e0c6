/* Edge-triggered watchers on level-triggered backends (select, poll).
 *
 * poll() only says "ready", so an fd left ready by its callback looks the
 * same as one that received more data. Comparing a byte count sampled after
 * the callback would race with data arriving between the program's EAGAIN
 * and the sample, and a missed edge hangs a correct program. So the
 * emulation uses arrival counters sampled *before* the callback: for TCP,
 * TCP_INFO gives bytes received, bytes acked and the state (which moves on
 * FIN, RST and connect). A condition is reported when it was not reported
 * since the fd last looked idle, or when its counter or the state moved since
 * the last report; otherwise the fd is still ready with nothing new, exactly
 * when epoll's ET stays silent, and it is parked: taken out of the wait set
 * (so poll does not return at once forever) and probed once per iteration.
 * fds without counters (pipes, UNIX sockets, listeners, whose backlog has no
 * counter) are reported whenever ready: never a missed edge, and a program
 * that drains to EAGAIN cannot tell the difference. */
#include <errno.h>
#include <stddef.h>
#ifdef __linux__
#include <linux/tcp.h>
#endif

#include "loop.h"
#include "sys.h"

#define TCP_STATE_LISTEN 10

typedef struct et_sample {
    uint32_t rx, tx;
    uint8_t state;
} et_sample;

static int tcp_sample(iomux_fd fd, et_sample *s) {
#ifdef __linux__
    struct tcp_info ti;
    socklen_t need = offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received);
    socklen_t len = need;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || len < need) return -1;
    if (ti.tcpi_state == TCP_STATE_LISTEN) return -1;
    s->rx = (uint32_t)ti.tcpi_bytes_received;
    s->tx = (uint32_t)ti.tcpi_bytes_acked;
    s->state = ti.tcpi_state;
    return 0;
#else
    (void)fd;
    (void)s;
    return -1; /* no arrival counters: report while ready */
#endif
}

/* The entry keeps rx and tx, and in `etstate` the TCP state (4 bits each) at
 * the last IN report (low nibble) and the last OUT report (high nibble). */
static int moved(const iomux__fdent *fe, const et_sample *s, unsigned cond) {
    if (cond == IOMUX_IN) return s->rx != fe->rx || s->state != (fe->etstate & 0x0f);
    return s->tx != fe->tx || s->state != (fe->etstate >> 4);
}

static void record(iomux__fdent *fe, const et_sample *s, unsigned cond) {
    if (cond == IOMUX_IN) {
        fe->rx = s->rx;
        fe->etstate = (uint8_t)((fe->etstate & 0xf0) | (s->state & 0x0f));
        fe->flags |= FD_ET_SAW_IN;
    } else {
        fe->tx = s->tx;
        fe->etstate = (uint8_t)((fe->etstate & 0x0f) | ((s->state & 0x0f) << 4));
        fe->flags |= FD_ET_SAW_OUT;
    }
}

static void park(iomux_loop *loop, iomux_fd fd, unsigned conds) {
    iomux__fdent *fe = &loop->fds[fd];
    if (conds & IOMUX_IN) fe->flags |= FD_ET_PARK_IN;
    if (conds & IOMUX_OUT) fe->flags |= FD_ET_PARK_OUT;
    if (!(fe->flags & FD_ET_PARKED)) {
        fe->flags |= FD_ET_PARKED;
        loop->parked.v[loop->parked.len++] = fd;
    }
    iomux__fd_dirty(loop, fd);
}

unsigned iomux__et_filter(iomux_loop *loop, iomux_fd fd, unsigned revents) {
    iomux__fdent *fe = &loop->fds[fd];
    static const unsigned conds[2] = {IOMUX_IN, IOMUX_OUT};
    static const uint16_t saw[2] = {FD_ET_SAW_IN, FD_ET_SAW_OUT};
    unsigned report = 0, idle = 0;
    et_sample s;
    int i;
    if (fe->flags & FD_ET_NOCOUNT) return revents;
    if (tcp_sample(fd, &s) < 0) {
        fe->flags |= FD_ET_NOCOUNT;
        return revents;
    }
    for (i = 0; i < 2; i++) {
        if (!(revents & conds[i])) continue;
        if (!(fe->flags & saw[i]) || moved(fe, &s, conds[i])) {
            record(fe, &s, conds[i]);
            report |= conds[i];
        } else {
            idle |= conds[i];
        }
    }
    if (idle) park(loop, fd, idle);
    return report ? report | (revents & (IOMUX_ERR | IOMUX_HUP)) : 0;
}

unsigned iomux__et_parked_mask(const iomux__fdent *fe) {
    return ((fe->flags & FD_ET_PARK_IN) ? IOMUX_IN : 0u) |
           ((fe->flags & FD_ET_PARK_OUT) ? IOMUX_OUT : 0u);
}

void iomux__et_reset(iomux__fdent *fe) {
    /* FD_ET_PARKED stays: it says "in loop->parked", which the probe cleans. */
    fe->flags &= (uint16_t)~(FD_ET_NOCOUNT | FD_ET_SAW_IN | FD_ET_SAW_OUT |
                             FD_ET_PARK_IN | FD_ET_PARK_OUT);
}

/* One parked fd: unpark each condition that went idle (its next readiness is
 * an edge) or saw activity (the wait will report it). Returns 1 while some
 * condition stays parked. */
static int probe_one(iomux_loop *loop, iomux_fd fd) {
    iomux__fdent *fe = &loop->fds[fd];
    unsigned parked = iomux__et_parked_mask(fe);
    iomux__pollfd pfd;
    et_sample s;
    int have_sample;
    if (!fe->w || !parked) return 0;
    pfd.fd = fd;
    pfd.events = (short)(((parked & IOMUX_IN) ? POLLIN : 0) | ((parked & IOMUX_OUT) ? POLLOUT : 0));
    pfd.revents = 0;
    if (iomux__poll(&pfd, 1, 0) < 0) return 1;
    have_sample = tcp_sample(fd, &s) == 0;
    if ((parked & IOMUX_IN) && (!(pfd.revents & (POLLIN | POLLERR | POLLHUP)) || !have_sample ||
                                moved(fe, &s, IOMUX_IN))) {
        if (!(pfd.revents & (POLLIN | POLLERR | POLLHUP))) fe->flags &= ~FD_ET_SAW_IN;
        fe->flags &= ~FD_ET_PARK_IN;
    }
    if ((parked & IOMUX_OUT) && (!(pfd.revents & (POLLOUT | POLLERR | POLLHUP)) || !have_sample ||
                                 moved(fe, &s, IOMUX_OUT))) {
        if (!(pfd.revents & (POLLOUT | POLLERR | POLLHUP))) fe->flags &= ~FD_ET_SAW_OUT;
        fe->flags &= ~FD_ET_PARK_OUT;
    }
    if (iomux__et_parked_mask(fe) != parked) iomux__fd_dirty(loop, fd);
    return iomux__et_parked_mask(fe) != 0;
}

void iomux__et_probe(iomux_loop *loop) {
    size_t i = 0;
    while (i < loop->parked.len) {
        iomux_fd fd = loop->parked.v[i];
        if (probe_one(loop, fd)) {
            i++;
            continue;
        }
        loop->fds[fd].flags &= ~FD_ET_PARKED;
        loop->parked.v[i] = loop->parked.v[--loop->parked.len];
    }
}
