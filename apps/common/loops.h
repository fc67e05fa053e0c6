/* The event-loop shapes (loops.c) and their worker loops (worker.c). */
#ifndef IOMUX_APP_LOOPS_H
#define IOMUX_APP_LOOPS_H

#include <pthread.h>

#include "internal.h"

typedef struct shape shape;
typedef struct app_worker app_worker;

struct app_worker {
    app_loop pub;
    shape *sh;
    pthread_t tid;
    int threaded;          /* on a thread of its own (else: the main thread's loop) */
    int lfd;               /* reuseport: its listener, until accepting owns it */
    int app_lfd;           /* hooks.listen_start: the listener the app accepts on */
    app__acceptor acc;     /* reuseport: its accepting */
    int accepting;         /* acc running or stopping: not done before it stopped */
    iomux_timer keepalive; /* keeps the loop alive without connections */
    int started;           /* hooks.loop_start succeeded */
    int done;              /* worker side: reported done */
    int main_done;         /* main side: the report arrived */
};

enum { RUNNING, DRAINING, ABORTED, QUITTING }; /* shape.stage */

struct shape {
    const app_spec *spec;
    const app_options *o;
    app_worker *w;
    unsigned n;
    iomux_loop *main;      /* the main thread's loop */
    int acceptor;          /* balance acceptor: main accepts, hands off */
    int lfd;               /* acceptor shape: the listener */
    app__acceptor acc;
    unsigned next;         /* round robin */
    iomux_signal sigint, sigterm;
    iomux_timer deadline;
    int stage;
    unsigned done;
    pthread_mutex_t mu;    /* start-up: workers report here */
    pthread_cond_t cv;
    unsigned reported, failed;
};

/* worker.c: a worker's life, on its loop's thread. */
int app__new_loop(shape *sh, iomux_loop **loop);
void app__free_loop(iomux_loop *loop, const char *what);
int app__worker_open(app_worker *w);
void app__worker_close(app_worker *w);
void *app__worker_main(void *arg);                    /* a thread of its own */
void app__worker_conn(app_loop *l, int fd);           /* a connection for hooks.conn_start */
void app__worker_drain(iomux_loop *loop, void *arg);  /* posted by the main thread */
void app__worker_abort(iomux_loop *loop, void *arg);
void app__worker_quit(iomux_loop *loop, void *arg);

/* loops.c: a worker is done draining (posted to the main loop). */
void app__loop_done(iomux_loop *loop, void *arg);

#endif /* IOMUX_APP_LOOPS_H */
