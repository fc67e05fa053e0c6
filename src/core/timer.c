/* Timers: a binary min-heap in one array, ordered by (deadline, start
 * sequence) so equal deadlines fire in start order. Entries carry their keys
 * so sifting never touches the timers themselves; each timer knows its slot,
 * which makes stop O(log n). The array grows by doubling and never shrinks:
 * restarting a timer on the hot path allocates nothing. */
#include <errno.h>
#include <limits.h>

#include "loop.h"

#define NS_PER_MS 1000000u

static uint64_t sat_add(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t ms_to_ns(uint64_t ms) {
    return ms > UINT64_MAX / NS_PER_MS ? UINT64_MAX : ms * NS_PER_MS;
}

static int ent_less(const iomux__timer_ent *a, const iomux__timer_ent *b) {
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(iomux_loop *loop, size_t i, iomux__timer_ent e) {
    loop->heap[i] = e;
    e.t->internal.slot = i + 1;
}

static void sift_up(iomux_loop *loop, size_t i) {
    iomux__timer_ent e = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ent_less(&e, &loop->heap[parent])) break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, e);
}

static void sift_down(iomux_loop *loop, size_t i) {
    iomux__timer_ent e = loop->heap[i];
    size_t n = loop->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ent_less(&loop->heap[c + 1], &loop->heap[c])) c++;
        if (!ent_less(&loop->heap[c], &e)) break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, e);
}

static void heap_remove(iomux_loop *loop, size_t i) {
    iomux__timer_ent last = loop->heap[--loop->heap_len];
    if (i == loop->heap_len) return;
    heap_set(loop, i, last);
    if (i > 0 && ent_less(&last, &loop->heap[(i - 1) / 2])) sift_up(loop, i);
    else sift_down(loop, i);
}

void iomux_timer_init(iomux_loop *loop, iomux_timer *t, iomux_timer_cb cb) {
    t->data = NULL;
    t->loop = loop;
    t->cb = cb;
    t->repeat = 0;
    t->internal.due = 0;
    t->internal.seq = 0;
    t->internal.slot = 0;
}

int iomux_timer_start(iomux_timer *t, uint64_t timeout_ms, uint64_t repeat_ms) {
    iomux_loop *loop = t->loop;
    iomux__timer_ent e;
    if (!t->internal.slot) {
        int rc = iomux__grow(loop, (void **)&loop->heap, &loop->heap_cap, loop->heap_len + 1,
                             sizeof(*loop->heap));
        if (rc < 0) return rc;
    }
    e.due = sat_add(loop->now, ms_to_ns(timeout_ms));
    e.seq = ++loop->timer_seq;
    e.t = t;
    t->repeat = repeat_ms;
    t->internal.due = e.due;
    t->internal.seq = e.seq;
    if (t->internal.slot) {
        size_t i = t->internal.slot - 1;
        heap_set(loop, i, e);
        sift_up(loop, i);
        sift_down(loop, t->internal.slot - 1);
    } else {
        loop->active++;
        heap_set(loop, loop->heap_len++, e);
        sift_up(loop, loop->heap_len - 1);
    }
    return 0;
}

int iomux_timer_stop(iomux_timer *t) {
    if (!t->internal.slot) return 0;
    heap_remove(t->loop, t->internal.slot - 1);
    t->internal.slot = 0;
    t->loop->active--;
    return 0;
}

int iomux_timer_active(const iomux_timer *t) {
    return t->internal.slot != 0;
}

uint64_t iomux_timer_remaining(const iomux_timer *t) {
    uint64_t now = t->loop->now;
    if (!t->internal.slot || t->internal.due <= now) return 0;
    return (t->internal.due - now + NS_PER_MS - 1) / NS_PER_MS;
}

/* Phase 2. Only timers started before the phase began may fire in it (a
 * callback restarting its timer with 0 waits for the next iteration), and at
 * most max_timers of them, so timers cannot starve I/O. */
unsigned iomux__timers_run(iomux_loop *loop) {
    uint64_t seq_limit = loop->timer_seq;
    unsigned budget = loop->max_timers, ran = 0;
    while (budget-- > 0 && loop->heap_len > 0) {
        iomux__timer_ent e = loop->heap[0];
        iomux_timer *t = e.t;
        if (e.due > loop->now || e.seq > seq_limit) break;
        if (t->repeat) {
            uint64_t period = ms_to_ns(t->repeat);
            e.due = sat_add(e.due, period);
            if (e.due <= loop->now) e.due = sat_add(loop->now, period);
            e.seq = ++loop->timer_seq;
            t->internal.due = e.due;
            t->internal.seq = e.seq;
            heap_set(loop, 0, e);
            sift_down(loop, 0);
        } else {
            heap_remove(loop, 0);
            t->internal.slot = 0;
            loop->active--;
        }
        t->cb(t);
        ran++;
    }
    return ran;
}

int iomux__timers_timeout(const iomux_loop *loop) {
    uint64_t due, ms;
    if (loop->heap_len == 0) return -1;
    due = loop->heap[0].due;
    if (due <= loop->now) return 0;
    ms = (due - loop->now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

void iomux__timers_free(iomux_loop *loop) {
    iomux__free(loop, loop->heap);
    loop->heap = NULL;
    loop->heap_len = loop->heap_cap = 0;
}
