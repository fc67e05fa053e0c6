/* iomux-echo: what its files share. Every connection of an event loop is
 * on its loop's list (echo_loop), so the drain can find the idle ones and
 * the abort all of them, whichever API serves them. */
#ifndef IOMUX_ECHO_H
#define IOMUX_ECHO_H

#include <stdint.h>

#include "app.h"

#define ECHO_BUF 16384 /* reactor: bytes read per call (one buffer per loop); blocking: the same */

typedef struct echo_conn echo_conn;

typedef struct echo_conn_ops {
    /* 1 while something is in flight: unsent echo, work being done. */
    int (*busy)(echo_conn *c);
    /* Closes: graceful (abort 0: what is queued still goes) or a reset. */
    void (*close)(echo_conn *c, int abort);
} echo_conn_ops;

struct echo_conn {
    echo_conn *next, *prev;
    const echo_conn_ops *ops;
    app_loop *l;
    uint64_t last;  /* iomux_now at the last byte received or sent */
    int closing;    /* close asked for, or closed: the drain leaves it alone */
};

/* Per loop: the connections, and the drain's idle scan. */
typedef struct echo_loop {
    echo_conn list; /* sentinel */
    iomux_timer scan;
    char buf[ECHO_BUF]; /* reactor: every connection of the loop reads here */
} echo_loop;

/* loop.c: the hooks every event API shares. */
int echo_loop_start(app_loop *l);
void echo_loop_stop(app_loop *l);
void echo_drain(app_loop *l);
void echo_abort(app_loop *l);
void echo_track(app_loop *l, echo_conn *c, const echo_conn_ops *ops);
/* Off the list, and app_conn_closed: the connection is gone. */
void echo_untrack(echo_conn *c);
void echo_touch(echo_conn *c);
/* The loop's read buffer, ECHO_BUF bytes (reactor). */
char *echo_buffer(app_loop *l);

/* reactor.c, proactor.c: a new connection. */
void echo_reactor_start(app_loop *l, iomux_fd fd);
void echo_proactor_start(app_loop *l, iomux_fd fd);

/* blocking.c: threads and prefork. */
void echo_serve(const app_options *o, void *app, iomux_fd fd);

#endif /* IOMUX_ECHO_H */
