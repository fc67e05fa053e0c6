/*
 * apps/common/app.h — the frame shared by iomux's server programs
 * (iomux-echo, iomux-httpd): their common command-line options, the
 * mapping from a model name to a backend and an API, and a runner that
 * starts the chosen shape, hands connections to the app, and drains on
 * SIGINT/SIGTERM.
 *
 * An app fills in an app_spec (its name, its own extra options, its hooks)
 * and calls app_main(), which parses the command line and runs:
 *
 *     static const app_spec spec = {
 *         .name = "iomux-echo", .summary = "...", .default_port = 7000,
 *         .hooks = {.conn_start = ..., .drain = ..., .abort = ..., .serve = ...},
 *     };
 *     int main(int argc, char **argv) { return app_main(&spec, argc, argv); }
 *
 * An app's own options are a table (see app_option) whose values land in
 * variables of the app:
 *
 *     static const char *root = ".";
 *     static unsigned idle_ms = 60000;
 *     static const app_option opts[] = {
 *         {"root", APP_OPT_STRING, &root, 0, 0, "DIR", "files to serve (default .)", NULL},
 *         {"idle-ms", APP_OPT_UINT, &idle_ms, 1, 3600000, "MS", "keep-alive timeout", NULL},
 *         {NULL, APP_OPT_FLAG, NULL, 0, 0, NULL, NULL, NULL}};
 *     ... .options = opts, ...
 *
 * Exit codes of app_main: 0 after --help or a drain (also one the
 * deadline cut short), 1 when the server cannot start (a backend the
 * system refuses, an address in use, ...), 2 for a bad command line. Every
 * message goes to stderr as "<name>: <text>", except the ready line and
 * --help, which go to stdout.
 *
 * The models (--model) and what the runner does for each
 * --------------------------------------------------------
 *   select, poll, epoll   that backend; --api reactor (default) or proactor
 *   epoll-et              epoll; reactor only; every watcher gets IOMUX_ET
 *                         (opt->watch_flags), so the app must drain to EAGAIN
 *   uring                 io_uring; --api proactor (default) or reactor
 *   uring-poll            io_uring; reactor only (same as uring --api reactor)
 *   threads               blocking I/O, one thread per connection
 *   prefork               blocking I/O, --processes N processes, each one
 *                         accepting and serving one connection at a time
 * On Windows only poll (WSAPoll; --api reactor or proactor) and iocp (the
 * I/O completion port; proactor only) exist, and there are no signals:
 * Ctrl-C / Ctrl-Break (a console control event) starts the drain.
 * The six event-loop models (all but threads and prefork) run --threads N
 * loops, one per thread:
 *   --balance reuseport   (default) each loop has its own SO_REUSEPORT
 *                         listener and accepts itself; loop 0 runs on the
 *                         main thread, which also watches the signals;
 *   --balance acceptor    the main thread runs an acceptor loop only (the
 *                         signals too), which hands each connection to the
 *                         N worker loops in turn with iomux_post (muduo's
 *                         main/sub reactor).
 * With --api reactor the listener is accepted with a watcher (accept4
 * until EAGAIN under IOMUX_ET, at most 64 per report otherwise; a 100 ms
 * pause on EMFILE/ENFILE); with --api proactor with an iomux_acceptor
 * (<iomux/net.h>). So each model uses its own API from accept on. (Or the
 * app accepts itself: hooks.listen_start.) threads: the main thread
 * accepts (a watcher on a poll loop, which also watches the signals) and
 * starts a thread per connection; prefork: see app_options.processes.
 *
 * The drain (SIGINT or SIGTERM)
 * -----------------------------
 * 1. Accepting stops and the listening sockets are closed (new connections
 *    are refused). With hooks.listen_start the app stops its accepting in
 *    hooks.drain, and the runner closes the socket once the loop is done.
 * 2. Event models: hooks.drain(l) runs on every loop. The app finishes
 *    what is in flight and closes its idle connections; the runner counts
 *    them through app_conn_closed(). A loop whose count reaches 0 is done;
 *    when every loop is done, hooks.loop_stop runs on each and the process
 *    exits 0. Blocking models: app_blocking_read() returns 0 (as at end of
 *    stream) once its connection received nothing for --drain-idle-ms.
 * 3. After --drain-ms (or at a second signal), hooks.abort(l) runs on every
 *    loop that is not done: the app must close every connection at once
 *    (IOMUX_CONN_ABORT); blocking connections are shut down (threads) or
 *    their processes killed (prefork). The exit code is still 0. A loop
 *    that still has connections 1 s after abort() is a bug: the process
 *    then exits 1 with a message.
 * "Idle", for the apps: nothing left to send and nothing received for
 * opt->drain_idle_ms (--drain-idle-ms, default 100). A connection that
 * keeps talking is served until the deadline. Except iomux-httpd's event
 * models: a connection between requests is closed at once (HTTP lets a
 * server close an idle keep-alive connection at any time; a request the
 * client had sent and the server not yet read then meets the close, as
 * with nginx: tests/test-hostile.c, drain-*, counts these).
 *
 * Threads: every hook of an event model runs on its loop's thread; hooks of
 * different loops run concurrently. hooks.serve runs on the connection's
 * thread (threads) or in a child process (prefork).
 */
#ifndef IOMUX_APP_H
#define IOMUX_APP_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include <iomux.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- models and APIs -------------------------------------------------------- */

typedef enum app_model {
    APP_MODEL_SELECT,
    APP_MODEL_POLL,
    APP_MODEL_EPOLL,
    APP_MODEL_EPOLL_ET,
    APP_MODEL_URING,
    APP_MODEL_URING_POLL,
    APP_MODEL_THREADS,
    APP_MODEL_PREFORK,
#ifdef _WIN32
    APP_MODEL_IOCP,
#endif
    APP_MODEL_COUNT
} app_model;

typedef enum app_api {
    APP_API_REACTOR,  /* watchers: the app reads and writes when told "ready" */
    APP_API_PROACTOR, /* ops / iomux_conn: the loop does the I/O */
    APP_API_BLOCKING  /* threads, prefork: blocking calls (hooks.serve) */
} app_api;

/* Bits for app_spec.apis: which APIs an app implements. */
#define APP_API_BIT(api) (1u << (api))

typedef enum app_balance {
    APP_BALANCE_REUSEPORT, /* one SO_REUSEPORT listener per loop */
    APP_BALANCE_ACCEPTOR   /* one acceptor loop, N worker loops */
} app_balance;

/* "epoll-et", "reactor", "acceptor", ... (static strings; "?" if unknown). */
const char *app_model_name(app_model m);
const char *app_api_name(app_api a);
const char *app_balance_name(app_balance b);

/* Parses a name as printed above. Returns 0, or -EINVAL. */
int app_model_parse(const char *name, app_model *out);
int app_api_parse(const char *name, app_api *out);
int app_balance_parse(const char *name, app_balance *out);

/* 1 for select, poll, epoll, epoll-et, uring, uring-poll (and iocp). */
int app_model_is_event(app_model m);

/* 1 if this build's platform has the model (Windows: poll and iocp). */
int app_model_available(app_model m);

/* The backend of an event model (IOMUX_BACKEND_AUTO for blocking ones). */
iomux_backend app_model_backend(app_model m);

/* ---- options ------------------------------------------------------------------ */

/* Every option the runner knows; app_parse fills it. Fields marked
 * "derived" are computed from the others; do not set them. */
typedef struct app_options {
    app_model model;        /* --model; default epoll */
    app_api api;            /* --api; default: proactor on uring, reactor on the
                               other event models (the first one the app
                               supports), blocking on threads and prefork */
    unsigned threads;       /* --threads N: event loops, 1..256; default 1 */
    app_balance balance;    /* --balance; default reuseport */
    unsigned processes;     /* --processes N: prefork, 1..4096; default 64 */
    unsigned work_us;       /* --work-us N: simulated work per message; default 0 */
    int offload;            /* --offload: run that work on the loop's work pool */
    const char *bind;       /* --bind: numeric IPv4/IPv6 host; default 127.0.0.1 */
    int port;               /* --port: 0..65535 (0: any free port);
                               default app_spec.default_port */
    unsigned drain_ms;      /* --drain-ms: drain deadline; default 5000 */
    unsigned drain_idle_ms; /* --drain-idle-ms: quiet time after which a connection
                               counts as idle while draining; default 100 */
    iomux_backend backend;  /* derived: the loops' backend (AUTO when blocking) */
    unsigned watch_flags;   /* derived: IOMUX_ET on epoll-et, else 0; OR it into
                               every watcher interest of the app */
} app_options;

/* An app's own option, --name VALUE (or --name=VALUE), or --name alone
 * for a FLAG. A table of them ends with an entry whose name is NULL. */
typedef enum app_opt_type {
    APP_OPT_FLAG,   /* dest: int*; set to 1 */
    APP_OPT_STRING, /* dest: const char**; points into argv */
    APP_OPT_UINT,   /* dest: unsigned*; decimal, within [min, max] */
    APP_OPT_FUNC    /* parse(value, dest, err, errlen) decides */
} app_opt_type;

typedef struct app_option {
    const char *name;    /* without the dashes: "root" for --root */
    app_opt_type type;
    void *dest;          /* where the value goes (see the type) */
    unsigned min, max;   /* APP_OPT_UINT: the accepted range */
    const char *metavar; /* --help: "DIR", "MS", ... (ignored for FLAG) */
    const char *help;    /* --help: one line */
    /* APP_OPT_FUNC: 0 to accept; else write a message (no prefix, no
     * newline) into err and return -1; the run ends with exit code 2. */
    int (*parse)(const char *value, void *dest, char *err, size_t errlen);
} app_option;

/* ---- the hooks an app provides --------------------------------------------------- */

/* One event loop, as the runner shows it to the app's hooks. */
typedef struct app_loop {
    iomux_loop *loop;         /* the loop; its iomux_loop_data is the runner's */
    const app_options *opt;
    void *app;                /* app_spec.app */
    unsigned index;           /* 0 .. opt->threads - 1 */
    void *data;               /* yours: per-loop state, e.g. set in loop_start */
    int draining;             /* read-only: 1 from just before hooks.drain */
    size_t conns;             /* read-only: connections given to conn_start (and
                                 the listener given to listen_start) not yet
                                 reported by app_conn_closed */
    struct app_worker *internal; /* the runner's */
} app_loop;

typedef struct app_hooks {
    /* Event models. Optional: per loop, on its thread, before it accepts.
     * Return 0, or -errno to fail the start-up (exit 1). */
    int (*loop_start)(app_loop *l);
    /* Optional: the loop is done (drained, or start-up failed after
     * loop_start succeeded): stop every handle of yours and free per-loop
     * state. The loop is freed next. */
    void (*loop_stop)(app_loop *l);
    /* Required for event models unless listen_start does the accepting: a
     * new connection, non-blocking and close-on-exec. The fd is yours;
     * call app_conn_closed(l) exactly once when the connection is gone
     * (also if you refuse it at once). */
    void (*conn_start)(app_loop *l, iomux_fd fd);
    /* Optional, event models with --balance reuseport: the app accepts on
     * the loop's listening socket itself (e.g. with iomux_http_server_new)
     * instead of the runner accepting and calling conn_start. The socket
     * stays the runner's: it is closed after loop_stop. The listener counts
     * as one connection in l->conns: call app_conn_closed(l) once it stopped
     * accepting and its connections are gone (e.g. from the done callback
     * of iomux_http_server_drain). Return 0, or -errno to fail the start-up
     * (exit 1). With --balance acceptor the runner accepts and calls
     * conn_start (an app without conn_start refuses that balance: exit 2). */
    int (*listen_start)(app_loop *l, iomux_fd lfd);
    /* Required for event models: the drain began (l->draining is 1). Finish
     * what is in flight, close idle connections now and the others once
     * they become idle (see "The drain" above). */
    void (*drain)(app_loop *l);
    /* Required for event models: the drain deadline passed; close every
     * connection now (reset). Each still calls app_conn_closed. */
    void (*abort)(app_loop *l);
    /* Required for threads and prefork: serve one connection, a blocking
     * socket, with app_blocking_read / app_blocking_write; return when it
     * is over. The runner closes the fd afterwards. */
    void (*serve)(const app_options *opt, void *app, iomux_fd fd);
    /* Optional: adjust a loop's configuration (pool buffers, work-pool
     * threads, ...) before it is created. backend is set already; keep it. */
    void (*loop_config)(const app_options *opt, iomux_config *cfg);
} app_hooks;

typedef struct app_spec {
    const char *name;             /* program name in messages: "iomux-echo" */
    const char *summary;          /* --help: one line saying what it does */
    int default_port;             /* --port default */
    unsigned apis;                /* APP_API_BIT(...) set of APIs the app
                                     implements; 0: all three */
    const app_option *options;    /* extra options, or NULL */
    app_hooks hooks;
    void *app;                    /* app-wide data, handed to every hook */
} app_spec;

/* ---- running ------------------------------------------------------------------ */

/* Parses argv and runs; returns the exit code (see the top of the file). */
int app_main(const app_spec *spec, int argc, char **argv);

/* Parses argv into *o (defaults first, then the app's extra options into
 * their dest). Returns 0 to run, 1 if --help was printed (exit 0), 2 after
 * printing a message for a bad command line (exit 2). */
int app_parse(const app_spec *spec, int argc, char **argv, app_options *o);

/* Prints the --help text: the common options, then the app's. */
void app_usage(const app_spec *spec, FILE *out);

/* Runs the shape o asks for until it has drained; returns the exit code
 * (0, or 1 if it could not start). Prints, once everything accepts, the
 * ready line to stdout (flushed):
 *   "<name>: listening on <host>:<port> (model <m>, api <a>, threads <n>)"
 * with ", balance acceptor" appended for that shape, and "processes <n>"
 * instead of "threads <n>" for prefork ("threads per-connection" for
 * threads). <port> is the bound one, also with --port 0. */
int app_run(const app_spec *spec, const app_options *o);

/* Event models: the connection given to conn_start is gone (closed, and no
 * callback of it will run). Call on l's thread, once per connection. */
void app_conn_closed(app_loop *l);

/* The app_loop of a loop the runner made (from any callback on it). */
app_loop *app_loop_of(iomux_loop *loop);

/* ---- blocking models ------------------------------------------------------------- */

/* Reads up to len bytes from a blocking socket. Returns the count, 0 at
 * end of stream or when the drain found the connection idle, or -errno. A
 * signal does not end it (EINTR is retried). */
ssize_t app_blocking_read(iomux_fd fd, void *buf, size_t len);

/* Writes all len bytes (no SIGPIPE). Returns 0, or -errno (-EPIPE once the
 * drain deadline shut the connection down). */
int app_blocking_write(iomux_fd fd, const void *buf, size_t len);

/* 1 once the drain began (any model; safe from any thread). */
int app_draining(void);

/* ---- small helpers ------------------------------------------------------------------ */

/* Busy-waits us microseconds on the monotonic clock (simulated work). */
void app_spin_us(unsigned us);

/* Prints "<name>: <message>\n" to stderr (name: the running app's). */
void app_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif

#endif /* IOMUX_APP_H */
