/* What the files of apps/common share and apps do not see. */
#ifndef IOMUX_APP_INTERNAL_H
#define IOMUX_APP_INTERNAL_H

#include <signal.h>

#include <iomux/net.h>

#include "app.h"

/* ---- state shared by the runner's files (util.c) ------------------------------ */

/* The running app's name, for app_log. */
extern const char *app__name;

/* Marks the drain as begun (app_draining() then returns 1). */
void app__set_draining(void);

/* ---- listening sockets and the ready line (listen.c) ---------------------------- */

/* Opens count listening sockets on o->bind:o->port (all SO_REUSEPORT if
 * reuseport; the second and later ones on the port the first one got) into
 * fds[], and the bound port into *port. Prints the reason and returns -1
 * on failure (nothing left open). */
int app__listen(const app_options *o, unsigned count, int reuseport, int *fds, int *port);

void app__close_all(int *fds, unsigned count);

/* Prints the ready line to stdout and flushes it. */
void app__ready(const app_spec *spec, const app_options *o, int port);

/* ---- accepting on a loop (accept.c) ---------------------------------------------- */

typedef struct app__acceptor app__acceptor;
typedef void (*app__accept_fn)(app__acceptor *a, int fd);
typedef void (*app__stopped_fn)(app__acceptor *a);

/* Accepts with a watcher (reactor: the listener gets opt->watch_flags) or
 * with an iomux_acceptor (proactor), and calls on_fd per connection. */
struct app__acceptor {
    void *data;              /* the user's */
    iomux_loop *loop;
    int lfd;                 /* closed by app__accept_stop */
    unsigned flags;          /* watcher interest extras (IOMUX_ET) */
    int proactor;
    int running;
    app__accept_fn on_fd;
    app__stopped_fn on_stopped;
    iomux_watch w;
    iomux_timer pause;
    iomux_acceptor acc;
};

/* Starts accepting on lfd (which it then owns). Returns 0 or -errno. */
int app__accept_start(app__acceptor *a, iomux_loop *loop, int lfd, const app_options *o, app__accept_fn on_fd);

/* Stops accepting and closes lfd; on_stopped (may be NULL) runs from the
 * loop afterwards, once the acceptor's memory is free. */
void app__accept_stop(app__acceptor *a, app__stopped_fn on_stopped);

/* ---- the shapes (loops.c, threads.c, prefork.c) ----------------------------------- */

int app__run_loops(const app_spec *spec, const app_options *o);
int app__run_threads(const app_spec *spec, const app_options *o);
int app__run_prefork(const app_spec *spec, const app_options *o);

/* ---- blocking connections and the drain (blocking.c) ------------------------------- */

/* Makes fd's blocking reads time out after the drain's idle time, so that
 * app_blocking_read can end an idle connection. Async-signal-safe. */
void app__blocking_idle_timeout(int fd, unsigned ms);

/* Installs handler for sig with sigaction, without SA_RESTART (a blocked
 * call returns EINTR). Returns 0 or -errno. */
int app__on_signal(int sig, void (*handler)(int));

/* Milliseconds on the monotonic clock. */
unsigned long long app__now_ms(void);

#endif /* IOMUX_APP_INTERNAL_H */
