/* Per-loop state of iomux-echo and its part of the drain: while draining,
 * a scan every few ms closes the connections that have nothing in flight
 * and were quiet for --drain-idle-ms; abort resets them all. */
#include <errno.h>
#include <stdlib.h>

#include "echo.h"

static echo_loop *of(app_loop *l) {
    return l->data;
}

static void scan(iomux_timer *t) {
    app_loop *l = t->data;
    echo_loop *el = of(l);
    uint64_t now = iomux_now(l->loop);
    echo_conn *c, *next;
    for (c = el->list.next; c != &el->list; c = next) {
        next = c->next; /* a close may take c off the list at once */
        if (!c->closing && !c->ops->busy(c) && now - c->last >= l->opt->drain_idle_ms) c->ops->close(c, 0);
    }
}

int echo_loop_start(app_loop *l) {
    echo_loop *el = calloc(1, sizeof(*el));
    if (!el) return -ENOMEM;
    el->list.next = el->list.prev = &el->list;
    iomux_timer_init(l->loop, &el->scan, scan);
    el->scan.data = l;
    l->data = el;
    return 0;
}

void echo_loop_stop(app_loop *l) {
    echo_loop *el = of(l);
    iomux_timer_stop(&el->scan);
    free(el);
    l->data = NULL;
}

void echo_track(app_loop *l, echo_conn *c, const echo_conn_ops *ops) {
    echo_loop *el = of(l);
    c->ops = ops;
    c->l = l;
    c->closing = 0;
    c->last = iomux_now(l->loop);
    c->next = &el->list;
    c->prev = el->list.prev;
    el->list.prev->next = c;
    el->list.prev = c;
}

void echo_untrack(echo_conn *c) {
    c->prev->next = c->next;
    c->next->prev = c->prev;
    app_conn_closed(c->l);
}

char *echo_buffer(app_loop *l) {
    return of(l)->buf;
}

void echo_touch(echo_conn *c) {
    c->last = iomux_now(c->l->loop);
}

void echo_drain(app_loop *l) {
    echo_loop *el = of(l);
    unsigned period = l->opt->drain_idle_ms / 2;
    if (period > 50) period = 50;
    if (period == 0) period = 1;
    scan(&el->scan);
    iomux_timer_start(&el->scan, period, period);
}

void echo_abort(app_loop *l) {
    echo_loop *el = of(l);
    echo_conn *c, *next;
    for (c = el->list.next; c != &el->list; c = next) {
        next = c->next;
        c->ops->close(c, 1);
    }
}
