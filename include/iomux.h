/*
 * iomux — every classic I/O model behind one event loop.
 *
 * This header is the whole public API of the core: the loop, the Reactor API
 * (fd watchers), timers, cross-thread posts and signal watchers.
 *
 * Conventions that hold for every function here
 * ---------------------------------------------
 * Errors   Functions that can fail return an int: 0 (or a count) on success and
 *          a negative errno value on failure (-EINVAL, -ENOMEM, ...).
 *          iomux_strerror() turns one into text. The library never prints and
 *          never aborts on a run-time error.
 * Memory   The caller allocates every handle (iomux_watch, iomux_timer,
 *          iomux_signal) and embeds it wherever it likes. A started handle
 *          belongs to the loop until it is stopped; after the stop call
 *          returns, the memory is the caller's again and may be freed at once,
 *          even from inside a callback. The loop allocates only its own tables,
 *          through the allocator in iomux_config.
 * Threads  One loop per thread. Every function taking a loop or a handle must
 *          be called on the loop's thread, except iomux_post(), which any
 *          thread may call at any time while the loop exists.
 * Fields   Handle fields documented as "yours" may be written at any time;
 *          the other public fields are read-only. The member named `internal`
 *          is the loop's bookkeeping: it is in this header only so that the
 *          handle can be embedded, it is not API and may change.
 *
 * One iteration of the loop (iomux_run), always in this order
 * -------------------------------------------------------------
 *  1. update the cached time (iomux_now);
 *  2. run expired timers: only timers that were due when this phase began,
 *     at most max_timers_per_iteration of them, in deadline order, ties in
 *     start order;
 *  3. run posted callbacks (iomux_post) and queued callbacks, bounded by
 *     max_pending_per_iteration;
 *  4. apply interest changes: every watcher start/update/stop since the last
 *     iteration reaches the backend here, coalesced to at most one update
 *     per fd, and none when the interest ends where it was (a watcher that
 *     was stopped and started again is always re-applied: its fd may have
 *     been closed and its number reused meanwhile);
 *  5. wait in the backend: the timeout is 0 when work is already queued,
 *     the time to the next timer otherwise, forever when there is none;
 *     the cached time is updated again after a wait that blocked;
 *  6. dispatch the ready watchers reported by the wait (callbacks queued by
 *     them run in phase 3 of the next iteration); in IOMUX_RUN_ONCE, after a
 *     wait that blocked, timers now due run here too, so that one ONCE call
 *     always makes progress.
 *
 * Backends
 * --------
 *   select  select(2) with bitmaps sized to the highest fd (not capped at
 *           FD_SETSIZE); O(watched fds) per wait.
 *   poll    poll(2) over a dense pollfd array; O(watched fds) per wait.
 *   epoll   epoll(7); O(ready fds) per wait; edge-triggered and one-shot are
 *           native.
 * IOMUX_BACKEND_AUTO picks the best one compiled in (epoll on Linux). The
 * environment variable IOMUX_BACKEND=select|poll|epoll overrides AUTO.
 */
#ifndef IOMUX_H
#define IOMUX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IOMUX_VERSION_MAJOR 0
#define IOMUX_VERSION_MINOR 1
#define IOMUX_VERSION_PATCH 0

#if defined(IOMUX_BUILDING) && defined(__GNUC__)
#define IOMUX_API __attribute__((visibility("default")))
#else
#define IOMUX_API
#endif

/* The operating system's handle for a socket, pipe or file. */
typedef int iomux_fd;

typedef struct iomux_loop iomux_loop;
typedef struct iomux_watch iomux_watch;
typedef struct iomux_timer iomux_timer;
typedef struct iomux_signal iomux_signal;

/* ---- errors -------------------------------------------------------------- */

/* A short English description of a negative errno value returned by iomux
 * (or of a positive one). Never NULL; the string is static. */
IOMUX_API const char *iomux_strerror(int err);

/* ---- the loop ------------------------------------------------------------ */

typedef enum iomux_backend {
    IOMUX_BACKEND_AUTO = 0,
    IOMUX_BACKEND_SELECT,
    IOMUX_BACKEND_POLL,
    IOMUX_BACKEND_EPOLL,
    IOMUX_BACKEND_URING,
    IOMUX_BACKEND_IOCP
} iomux_backend;

/* A per-loop allocator. All three functions are required; `ud` is passed
 * back to each. If iomux_post() is used from other threads, the allocator
 * must be thread-safe (the post queue may grow on the posting thread). */
typedef struct iomux_allocator {
    void *(*malloc)(void *ud, size_t size);
    void *(*realloc)(void *ud, void *ptr, size_t size);
    void (*free)(void *ud, void *ptr);
    void *ud;
} iomux_allocator;

/* Loop configuration. A zeroed struct (or NULL) means: all defaults. */
typedef struct iomux_config {
    iomux_backend backend;             /* AUTO: $IOMUX_BACKEND, else the best */
    const iomux_allocator *allocator;  /* NULL: malloc/realloc/free; copied */
    unsigned max_timers_per_iteration;  /* 0: 256 */
    unsigned max_pending_per_iteration; /* 0: 1024 */
    unsigned max_events_per_wait;       /* 0: 1024 */
} iomux_config;

/* Sets every field to its default (the same as zeroing it). */
IOMUX_API void iomux_config_init(iomux_config *cfg);

/* Creates a loop. On success stores it in *loop and returns 0. Errors:
 * -EINVAL  unknown backend, or $IOMUX_BACKEND names no backend
 *          (iomux_backend_names() lists the valid names);
 * -ENOTSUP the backend exists but not in this build or on this system;
 * -ENOMEM, or the backend's own error (e.g. -EMFILE). */
IOMUX_API int iomux_loop_new(iomux_loop **loop, const iomux_config *cfg);

/* Frees a loop. Returns -EBUSY, and frees nothing, while any handle is still
 * started or any posted callback has not run yet. */
IOMUX_API int iomux_loop_free(iomux_loop *loop);

enum {
    IOMUX_RUN_DEFAULT = 0, /* iterate until nothing is alive or iomux_stop() */
    IOMUX_RUN_ONCE = 1,    /* one iteration; wait for events if none is queued */
    IOMUX_RUN_NOWAIT = 2   /* one iteration; never block */
};

/* Runs the loop. Returns 1 if handles are still alive (or callbacks queued),
 * 0 if not, or a negative errno if the backend failed. iomux_run must not
 * be called from inside a callback of the same loop (-EBUSY). */
IOMUX_API int iomux_run(iomux_loop *loop, int mode);

/* Makes iomux_run return after the current iteration. */
IOMUX_API void iomux_stop(iomux_loop *loop);

/* 1 while any handle is started or a callback is queued, else 0. */
IOMUX_API int iomux_loop_alive(const iomux_loop *loop);

/* The loop's cached monotonic time in milliseconds (see the iteration). */
IOMUX_API uint64_t iomux_now(const iomux_loop *loop);

/* Refreshes the cached time now (for long callbacks). */
IOMUX_API void iomux_update_time(iomux_loop *loop);

/* "select", "poll", "epoll", ... */
IOMUX_API const char *iomux_backend_name(const iomux_loop *loop);

/* The backend id of a running loop (never AUTO). */
IOMUX_API iomux_backend iomux_loop_backend(const iomux_loop *loop);

/* Parses a backend name ("auto" included). Returns 0, or -EINVAL for a name
 * that is not one of iomux's backends. Whether it is available here is a
 * separate question: iomux_backend_available(). */
IOMUX_API int iomux_backend_parse(const char *name, iomux_backend *out);

/* 1 if this build has the backend (AUTO: always 1), else 0. */
IOMUX_API int iomux_backend_available(iomux_backend backend);

/* The names this build accepts, space-separated: "select poll epoll". */
IOMUX_API const char *iomux_backend_names(void);

/* Counters, for tests and benchmarks (cheap: plain increments). */
typedef struct iomux_stats {
    uint64_t iterations;       /* loop iterations run */
    uint64_t waits;            /* backend waits that could block (timeout != 0) */
    uint64_t interest_updates; /* fd interest changes handed to the backend */
    uint64_t events;           /* ready fds reported by the backend */
} iomux_stats;

IOMUX_API void iomux_loop_stats(const iomux_loop *loop, iomux_stats *out);

/* User data attached to the loop. */
IOMUX_API void iomux_loop_set_data(iomux_loop *loop, void *data);
IOMUX_API void *iomux_loop_data(const iomux_loop *loop);

/* ---- intrusive bookkeeping (layout only; not API) ------------------------- */

typedef struct iomux__node {
    struct iomux__node *next, *prev;
} iomux__node;

/* Something queued to run in phase 3 or 6. */
typedef struct iomux__pend {
    iomux__node node;
    void (*run)(struct iomux__pend *p);
} iomux__pend;

/* ---- the Reactor API: fd watchers ------------------------------------------ */

/* Interest (iomux_watch_start) and readiness (callback) bits. */
enum {
    IOMUX_IN = 1u << 0,     /* readable, or a connection to accept, or EOF */
    IOMUX_OUT = 1u << 1,    /* writable */
    IOMUX_ERR = 1u << 2,    /* reported only: an error is pending on the fd */
    IOMUX_HUP = 1u << 3,    /* reported only: hang-up (both directions closed) */
    IOMUX_ET = 1u << 4,     /* interest only: edge-triggered, see below */
    IOMUX_ONESHOT = 1u << 5 /* interest only: stop after one report */
};

/*
 * Watcher semantics, identical on every backend:
 *
 * level (default)  The callback runs in every iteration in which the fd is
 *                  ready for a requested condition.
 * IOMUX_ET         The callback runs when a condition becomes ready and
 *                  again when there is new activity (new data arrived; buffer
 *                  space was freed), not merely because it is still ready.
 *                  Read (write) until EAGAIN before returning, as with epoll.
 *                  Native on epoll. On select and poll it is emulated: exact
 *                  for TCP sockets (activity is read from TCP_INFO's byte
 *                  counters); for other fds, which have no such counters, a
 *                  ready condition is reported again in the next iteration
 *                  while it stays ready — which a program that drains to
 *                  EAGAIN cannot tell apart. An emulated TCP watcher left
 *                  ready without new activity is parked (taken out of the
 *                  wait set, so the loop does not spin) and re-probed each
 *                  iteration and at least every 10 ms, so activity on it is
 *                  seen within 10 ms rather than at once. Only a program
 *                  that returns without draining can see this.
 * IOMUX_ONESHOT    The watcher stops itself just before its callback runs;
 *                  call iomux_watch_start() again to re-arm it. Native on
 *                  epoll (EPOLLONESHOT: re-arming costs one epoll_ctl); on
 *                  select and poll re-arming rewrites the fd's entry in the
 *                  backend's own array, no system call.
 * IOMUX_ERR/HUP    Always reported when the kernel says so (poll, epoll),
 *                  masked to nothing else; select cannot tell errors apart,
 *                  so there they show as IN/OUT readiness and the next read
 *                  or write returns the error. Portable code acts on the
 *                  result of its read/write.
 *
 * Stopping is immediate: once iomux_watch_stop() returns (even when called
 * from another callback in the same batch), the callback will not run, the
 * kernel side is updated before the next wait, and the fd may be closed and
 * the watcher freed. At most one watcher per fd per loop (-EEXIST).
 *
 * An error the kernel gives when the interest is applied (phase 4; e.g.
 * epoll refusing a regular file with EPERM) stops the watcher and runs its
 * callback once with IOMUX_ERR; iomux_watch_error() returns that -errno.
 */
typedef void (*iomux_watch_cb)(iomux_watch *w, unsigned revents);

struct iomux_watch {
    void *data;          /* yours */
    iomux_loop *loop;    /* set by iomux_watch_init */
    iomux_watch_cb cb;   /* set by iomux_watch_init */
    iomux_fd fd;         /* set by iomux_watch_init */
    unsigned events;     /* interest given to start/update */
    struct {
        iomux__pend pend;
        unsigned revents;
        unsigned flags;
        int error;
    } internal;
};

/* Prepares a watcher for fd. Does not start it; cannot fail. */
IOMUX_API void iomux_watch_init(iomux_loop *loop, iomux_watch *w, iomux_fd fd, iomux_watch_cb cb);

/* Starts watching with `events` (IOMUX_IN and/or IOMUX_OUT, optionally
 * IOMUX_ET or IOMUX_ONESHOT). On a started watcher, this is an update.
 * Errors: -EINVAL (no IN/OUT, or unknown bits), -EBADF (fd < 0),
 * -EEXIST (another watcher has this fd), -ENOMEM. */
IOMUX_API int iomux_watch_start(iomux_watch *w, unsigned events);

/* Changes the interest of a started watcher (-EINVAL if it is stopped). */
IOMUX_API int iomux_watch_update(iomux_watch *w, unsigned events);

/* Stops the watcher; a no-op on a stopped watcher. Returns 0. */
IOMUX_API int iomux_watch_stop(iomux_watch *w);

/* 1 if started. */
IOMUX_API int iomux_watch_active(const iomux_watch *w);

/* The -errno that stopped the watcher in phase 4, or 0. */
IOMUX_API int iomux_watch_error(const iomux_watch *w);

/* ---- timers ------------------------------------------------------------------ */

/* Timers live in a binary min-heap: start and stop are O(log n). A timer
 * fires no earlier than `timeout` ms after the loop's cached time at start.
 * A repeating timer is re-armed before its callback runs (so the callback
 * may stop it) at previous deadline + repeat; if the loop fell so far behind
 * that this is already past, at now + repeat (no burst of catch-up calls). */
typedef void (*iomux_timer_cb)(iomux_timer *t);

struct iomux_timer {
    void *data;          /* yours */
    iomux_loop *loop;
    iomux_timer_cb cb;
    uint64_t repeat;     /* ms; 0 = one-shot */
    struct {
        uint64_t due;    /* ns, loop clock */
        uint64_t seq;    /* start order, breaks ties */
        size_t slot;     /* heap index + 1; 0 = stopped */
    } internal;
};

IOMUX_API void iomux_timer_init(iomux_loop *loop, iomux_timer *t, iomux_timer_cb cb);

/* (Re)starts the timer: fires after timeout_ms, then every repeat_ms if that
 * is not 0. Any 64-bit timeout is valid (UINT64_MAX: effectively never).
 * Errors: -ENOMEM (heap growth). */
IOMUX_API int iomux_timer_start(iomux_timer *t, uint64_t timeout_ms, uint64_t repeat_ms);

/* Stops the timer; a no-op on a stopped timer. Returns 0. */
IOMUX_API int iomux_timer_stop(iomux_timer *t);

IOMUX_API int iomux_timer_active(const iomux_timer *t);

/* Milliseconds until the timer is due (0 if due or stopped). */
IOMUX_API uint64_t iomux_timer_remaining(const iomux_timer *t);

/* ---- cross-thread posts ----------------------------------------------------- */

typedef void (*iomux_post_fn)(iomux_loop *loop, void *arg);

/* Queues fn(loop, arg) to run on the loop's thread (phase 3), waking the
 * loop if it is waiting. Safe from any thread, and from callbacks. Posts
 * from one thread run in the order they were made; every post runs exactly
 * once. Wake-ups are batched: one write to the loop's eventfd per batch,
 * however many posts it holds. Errors: -ENOMEM. */
IOMUX_API int iomux_post(iomux_loop *loop, iomux_post_fn fn, void *arg);

/* ---- signals ------------------------------------------------------------------ */

/* A signal watcher runs its callback on the loop's thread after the signal
 * was delivered to the process. Several loops (in several threads) may watch
 * the same signal: each of them is told. Several watchers in one loop may
 * watch the same signal: each runs. Deliveries that arrive before the loop
 * got to the previous one are merged into one callback (as the kernel merges
 * a standard signal raised twice before it is handled). iomux
 * installs its handler with sigaction() while at least one watcher of that
 * signal is started anywhere, and restores the previous action after the
 * last stops. SIGKILL and SIGSTOP cannot be watched (-EINVAL). */
typedef void (*iomux_signal_cb)(iomux_signal *s, int signum);

struct iomux_signal {
    void *data;          /* yours */
    iomux_loop *loop;
    iomux_signal_cb cb;
    int signum;          /* set by iomux_signal_start */
    struct {
        iomux__pend pend;
        iomux__node link;
    } internal;
};

IOMUX_API void iomux_signal_init(iomux_loop *loop, iomux_signal *s, iomux_signal_cb cb);

/* Starts watching signum (on a started watcher: stops, then watches signum).
 * Errors: -EINVAL (bad signal number), -ENOSPC (more than 64 loops watch
 * signals), or the error of pipe()/sigaction(). */
IOMUX_API int iomux_signal_start(iomux_signal *s, int signum);

/* Stops; a no-op on a stopped watcher. Returns 0. */
IOMUX_API int iomux_signal_stop(iomux_signal *s);

IOMUX_API int iomux_signal_active(const iomux_signal *s);

#ifdef __cplusplus
}
#endif

#endif /* IOMUX_H */
