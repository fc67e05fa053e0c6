/* What is sent when, for the three ways iomux-load drives a server.
 *
 * Closed loop (default): each connection sends --pipeline requests in one
 * send and the next batch only when every answer of this one is in (as
 * wrk's pipeline script does: the server always sees batches of N, so
 * results compare with wrk's). Latency: from the batch's send to the
 * arrival of each response.
 *
 * Open loop (--rate R): request k of the run is due at t0 + k/R, on
 * connection k % conns (so each connection gets R/conns evenly spaced
 * requests, and the connections are interleaved). A request is sent when
 * due, whatever is still outstanding on its connection (answers come back
 * in order over TCP), and its latency counts from when it was due, not
 * from when it went out: a server that stalls cannot hide the stall in
 * requests that were never sent (no coordinated omission). The intended
 * time of each response is computed from its index, so nothing is queued
 * per request. A timerfd, watched by the loop, wakes the loop when the
 * next request is due (to the microsecond; iomux timers count ms), and
 * every loop iteration also sends what fell due meanwhile.
 *
 * Connect-rate: each of the --conns slots connects, sends one request,
 * reads one response, closes, and starts over. Latency: from the connect
 * to the response.
 *
 * Start-up opens the connections through a window of CONNECT_WINDOW
 * connects at a time, so a server's accept queue is not overrun; traffic
 * begins when all are open. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "load.h"

#define CONNECT_WINDOW 256

static int open_loop(void) {
    return g.o->rate > 0;
}

static void check_requests_done(void) {
    if (g.o->requests && g.completed + g.lost >= (uint64_t)g.o->requests) run_end_measure();
}

/* Opens connections while fewer than CONNECT_WINDOW connects are in flight. */
void traffic_startup(void) {
    while (g.connecting < CONNECT_WINDOW && g.next_connect < g.nconns && !g.fatal) {
        g.connecting++;
        conn_open(&g.c[g.next_connect++]);
    }
}

/* Closed loop: the next batch, cut short by --requests. */
static void closed_send(lconn *c, uint64_t now) {
    uint64_t n = (uint64_t)g.o->pipeline;
    if (g.o->requests) {
        uint64_t left = (uint64_t)g.o->requests - g.issued;
        if (left < n) n = left;
        if (n == 0) return;
    }
    g.issued += n;
    c->sent += n;
    c->queued += n;
    c->t_sent = now;
    conn_kick(c);
}

/* Every connection is open (or there are none): the warm-up begins, and
 * the traffic with it. */
void traffic_begin(void) {
    uint64_t now = load_now_ns();
    unsigned i;
    g.t_traffic = now;
    g.phase = PH_WARMUP;
    if (g.o->warmup > 0) iomux_timer_start(&g.warm_timer, (uint64_t)(g.o->warmup * 1000 + 0.5), 0);
    else run_begin_measure();
    for (i = 0; i < g.nconns && !g.fatal; i++) {
        lconn *c = &g.c[i];
        if (g.o->connect_rate) traffic_on_settled(c);
        else if (!open_loop() && c->state == C_OPEN) closed_send(c, now);
    }
    if (open_loop() && g.nconns > 0) {
        if (traffic_timer_start() < 0) run_fatal("timerfd", errno);
        else traffic_pace(now);
    }
}

void traffic_on_open(lconn *c) {
    if (g.o->connect_rate) {
        c->sent = c->queued = 1;
        c->answered = 0;
        conn_kick(c);
    } else if (g.phase == PH_CONNECTING) {
        if (c->started) return; /* reopened after a failure: traffic_begin sees to it */
        c->started = 1;
        g.connecting--;
        if (++g.connected == g.nconns) traffic_begin();
        else traffic_startup();
    } else if (!open_loop()) {
        closed_send(c, load_now_ns());
    }
    /* open loop: the pacer sends what falls due from now on */
}

static void record(lconn *c, unsigned n, uint64_t now) {
    unsigned i;
    if (!open_loop()) {
        hist_record_n(&g.lat, now > c->t_sent ? now - c->t_sent : 0, n);
        return;
    }
    for (i = 0; i < n; i++) {
        uint64_t k = c->idx + (c->answered + i) * g.nconns;
        uint64_t due = g.t_traffic + (uint64_t)((double)k * g.period_ns);
        hist_record(&g.lat, now > due ? now - due : 0);
    }
}

void traffic_on_responses(lconn *c, unsigned n, unsigned bad_status, uint64_t now) {
    if (g.phase == PH_DONE) return;
    if (g.phase == PH_MEASURE) {
        g.m_requests += n;
        g.err_status += bad_status;
        record(c, n, now);
    }
    c->answered += n;
    g.completed += n;
    if (g.o->connect_rate) {
        c->got_resp = 1;
        if (g.o->proto == PROTO_ECHO) conn_close(c); /* HTTP: the server closes, we read to EOF */
    } else if (!open_loop() && c->answered == c->sent) {
        closed_send(c, now);
    }
    check_requests_done();
}

/* c failed: its unanswered requests are given back (closed loop,
 * connect-rate: they will be sent again, so --requests stays exact) or
 * lost (open loop: the schedule goes on without them). */
void traffic_on_lost(lconn *c) {
    uint64_t out = c->sent - c->answered;
    if (g.o->connect_rate) {
        if (!c->got_resp) g.issued--;
    } else if (open_loop()) {
        g.lost += out;
    } else {
        g.issued -= out;
    }
    c->sent = c->answered;
    c->queued = 0;
    check_requests_done();
}

/* c is closed and its ops have ended: open it again (connect-rate: the
 * next request, if --requests leaves one). */
void traffic_on_settled(lconn *c) {
    if (g.o->connect_rate) {
        if (g.o->requests && g.issued >= (uint64_t)g.o->requests) return;
        g.issued++;
    }
    conn_open(c);
}

/* ---- open loop pacing ---- */

static uint64_t due_of(uint64_t k) {
    return g.t_traffic + (uint64_t)((double)k * g.period_ns);
}

/* Makes the timerfd fire at t, unless it fires earlier anyway (then the
 * pacer runs and arms it again). */
static void arm(uint64_t t) {
    struct itimerspec its;
    if (g.tfd_armed && g.tfd_armed <= t) return;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(t / 1000000000u);
    its.it_value.tv_nsec = (long)(t % 1000000000u);
    if (timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) g.tfd_armed = t;
    else run_fatal("timerfd_settime", errno);
}

/* Hands every request due by now to its connection, then sends, one send
 * per connection. A connection that is down loses its due requests. */
void traffic_pace(uint64_t now) {
    uint64_t lost = g.lost;
    unsigned i;
    if (g.phase != PH_WARMUP && g.phase != PH_MEASURE) return;
    while (g.next_k < g.k_limit) {
        uint64_t t = due_of(g.next_k);
        lconn *c;
        if (t > now) {
            arm(t);
            break;
        }
        c = &g.c[g.next_k++ % g.nconns];
        c->sent++;
        if (c->state != C_OPEN) {
            c->answered++;
            g.lost++;
            continue;
        }
        c->queued++;
        if (!c->dirty) {
            c->dirty = 1;
            g.dirty[g.ndirty++] = c;
        }
    }
    for (i = 0; i < g.ndirty; i++) {
        g.dirty[i]->dirty = 0;
        conn_kick(g.dirty[i]);
    }
    g.ndirty = 0;
    if (g.lost != lost) check_requests_done();
}

static void on_tfd(iomux_watch *w, unsigned revents) {
    uint64_t ticks;
    (void)revents;
    if (read(w->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN) run_fatal("read(timerfd)", errno);
    g.tfd_armed = 0;
    traffic_pace(load_now_ns());
}

int traffic_timer_start(void) {
    int rc;
    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.tfd < 0) return -1;
    iomux_watch_init(g.loop, &g.tfd_watch, g.tfd, on_tfd);
    rc = iomux_watch_start(&g.tfd_watch, IOMUX_IN);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

void traffic_timer_stop(void) {
    if (g.tfd < 0) return;
    iomux_watch_stop(&g.tfd_watch);
    close(g.tfd);
    g.tfd = -1;
}
