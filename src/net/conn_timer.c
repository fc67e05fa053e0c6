/* One timer per connection for both the idle timeout and the deadline.
 * Activity only records its time (c->internal.last): restarting a heap
 * timer on every read and send would cost O(log n) each. The timer is
 * armed for the earlier of the two due times; when it fires early (there
 * was activity since), it re-arms for what is left. */
#include <errno.h>

#include "conn.h"

int iomux__conn_timer_arm(iomux_conn *c) {
    iomux_timer *t = &c->internal.timer;
    uint64_t due = UINT64_MAX, now = iomux_now(c->loop);
    if (c->internal.idle_ms) due = c->internal.last + c->internal.idle_ms;
    if (c->internal.deadline && c->internal.deadline < due) due = c->internal.deadline;
    if (due == UINT64_MAX) return iomux_timer_stop(t);
    /* armed no later than needed: it will re-arm when it fires */
    if (iomux_timer_active(t) && now + iomux_timer_remaining(t) <= due) return 0;
    return iomux_timer_start(t, due > now ? due - now : 0, 0);
}

static void expired(iomux_conn *c, int which) {
    if (c->internal.flags & CF_CLOSING) { /* closing bounds itself with its timers */
        if (c->internal.flags & CF_LINGER) iomux__conn_close_fd(c);
        else iomux__conn_fail(c, -ETIMEDOUT); /* the flush stalled */
        return;
    }
    if (c->cb->on_timeout) {
        iomux__conn_enter(c);
        c->cb->on_timeout(c, which);
        iomux__conn_leave(c);
        return;
    }
    /* No handler: close. A flush could wait forever on a peer that does
     * not read, so only an empty queue closes gracefully. */
    if (!c->internal.reason) c->internal.reason = -ETIMEDOUT;
    if (c->internal.queued == 0) iomux_conn_close(c, IOMUX_CONN_GRACEFUL);
    else iomux__conn_fail(c, -ETIMEDOUT);
}

void iomux__conn_timer_cb(iomux_timer *t) {
    iomux_conn *c = t->data;
    uint64_t now = iomux_now(c->loop);
    if (c->internal.deadline && now >= c->internal.deadline) {
        c->internal.deadline = 0;
        expired(c, IOMUX_CONN_DEADLINE);
    } else if (c->internal.idle_ms && now - c->internal.last >= c->internal.idle_ms) {
        c->internal.last = now; /* the idle clock starts again */
        expired(c, IOMUX_CONN_IDLE);
    }
    if (!(c->internal.flags & CF_CLOSE_FD) && iomux__conn_timer_arm(c) < 0) iomux__conn_fail(c, -ENOMEM);
}

int iomux_conn_set_idle_timeout(iomux_conn *c, uint32_t ms) {
    c->internal.idle_ms = ms;
    return (c->internal.flags & CF_CLOSE_FD) ? 0 : iomux__conn_timer_arm(c);
}

int iomux_conn_set_deadline(iomux_conn *c, uint64_t at_ms) {
    c->internal.deadline = at_ms;
    return (c->internal.flags & CF_CLOSE_FD) ? 0 : iomux__conn_timer_arm(c);
}
