/*
 * iomux — every classic I/O model behind one event loop.
 *
 * This header is the whole public API: the loop, the Reactor API (fd
 * watchers), the Proactor API (operations and completions), timers,
 * cross-thread posts, signal watchers and the work pool.
 *
 * Conventions that hold for every function here
 * ---------------------------------------------
 * Errors   Functions that can fail return an int: 0 (or a count) on success and
 *          a negative errno value on failure (-EINVAL, -ENOMEM, ...).
 *          iomux_strerror() turns one into text. The library never prints and
 *          never aborts on a run-time error.
 * Memory   The caller allocates every handle (iomux_watch, iomux_timer,
 *          iomux_signal, iomux_op, iomux_work) and embeds it wherever it
 *          likes. A started watcher, timer or signal watcher belongs to the
 *          loop until it is stopped; after the stop call returns, the memory
 *          is the caller's again and may be freed at once, even from inside a
 *          callback. An op or work item belongs to the loop until its final
 *          callback begins. The loop allocates only its own tables (and the
 *          recv buffer pool), through the allocator in iomux_config.
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
 *  3. run posted callbacks (iomux_post) and queued callbacks (op results
 *     known without the kernel's help, work pool results), bounded by
 *     max_pending_per_iteration;
 *  4. apply interest changes: every watcher start/update since the last
 *     iteration reaches the backend here, coalesced to at most one update
 *     per fd, and none when the interest ends where it was (a watcher that
 *     was stopped and started again is always re-applied: its fd may have
 *     been closed and its number reused meanwhile); a stop is applied at
 *     once, so that the fd may be closed right after it;
 *  5. wait in the backend: the timeout is 0 when work is already queued
 *     (and, in IOMUX_RUN_ONCE, when phases 2-3 ran any callback), the time
 *     to the next timer otherwise, forever when there is none; an
 *     interrupted wait (EINTR) is resumed for the time left; the cached
 *     time is updated again after a wait that blocked;
 *  6. dispatch what the wait reported: ready watchers, and op results
 *     (on uring, each completion's callback runs as its CQE is reaped);
 *     callbacks queued by them run in phase 3 of the next iteration; in
 *     IOMUX_RUN_ONCE, after a wait that blocked, timers now due run here
 *     too, so that one ONCE call always makes progress.
 * There is no separate phase for closing: iomux_close is an op like the
 * others, and stopping a watcher, timer or signal watcher is immediate.
 *
 * Backends
 * --------
 *   select  select(2) with bitmaps sized to the highest fd (not capped at
 *           FD_SETSIZE); O(watched fds) per wait.
 *   poll    poll(2) over a dense pollfd array; O(watched fds) per wait.
 *   epoll   epoll(7); O(ready fds) per wait; edge-triggered and one-shot are
 *           native.
 *   uring   io_uring (Linux 6.0+): the Proactor is native (one SQE per op,
 *           submitted in one batch with the wait, CQEs reaped in batches);
 *           watchers are polls (multishot for edge-triggered). A loop's ring
 *           belongs to the first thread that runs the loop: always run it
 *           on that thread.
 *   iocp    Windows I/O completion ports: the Proactor is native (overlapped
 *           AcceptEx, ConnectEx, WSARecv, WSASend, TransmitFile, ReadFile /
 *           WriteFile; completions dequeued in batches). A pool recv posts a
 *           zero-byte read and takes its buffer only when data is there.
 *           iomux_close closes the socket once the ops it cancelled are
 *           back from the kernel.
 *           Watchers are refused: in phase 4 the watcher stops with
 *           IOMUX_ERR and iomux_watch_error() gives -ENOTSUP. Use poll for
 *           the Reactor on Windows.
 * On Windows, poll is WSAPoll (sockets only) and there is no select, epoll
 * or uring; signal watchers are not supported there (-ENOTSUP). On
 * readiness backends the Proactor is emulated by the core; on uring the
 * Reactor is. IOMUX_BACKEND_AUTO picks the best one that starts: uring, else
 * epoll (when io_uring is too old, disabled, or refused by seccomp), on
 * Linux; iocp on Windows. The environment variable
 * IOMUX_BACKEND=select|poll|epoll|uring|iocp overrides AUTO.
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

#if defined(IOMUX_BUILDING) && defined(__GNUC__) && !defined(_WIN32)
#define IOMUX_API __attribute__((visibility("default")))
#else
#define IOMUX_API
#endif

/* The operating system's handle for a socket, pipe or file. On Windows: a
 * SOCKET cast to int (Windows keeps handle values within 32 bits), or, as
 * the file of iomux_read/write/sendfile, a C runtime fd (_open). */
typedef int iomux_fd;

typedef struct iomux_loop iomux_loop;
typedef struct iomux_watch iomux_watch;
typedef struct iomux_timer iomux_timer;
typedef struct iomux_signal iomux_signal;
typedef struct iomux_op iomux_op;
typedef struct iomux_work iomux_work;

/* ---- errors -------------------------------------------------------------- */

/* A short English description of a negative errno value returned by iomux
 * (or of a positive one). Never NULL; the string is static. */
IOMUX_API const char *iomux_strerror(int err);

/* The error of the calling thread's last failed socket call, as the
 * negative errno value iomux would report for it: -errno on POSIX; on
 * Windows WSAGetLastError() mapped to the same names (WSAEWOULDBLOCK is
 * -EAGAIN, WSAECONNRESET -ECONNRESET, ...; one without a counterpart is
 * -EIO). For programs that make socket calls of their own beside iomux. */
IOMUX_API int iomux_socket_error(void);

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
 * back to each. If iomux_post() is used from other threads, or the work
 * pool (iomux_work_submit, or file ops on a readiness backend) is used, the
 * allocator must be thread-safe: the post queue may grow on the posting
 * thread, and pool threads post their results. */
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
    unsigned pool_buffers;      /* recv buffer pool: count, rounded up to a power of 2; 0: 512 */
    unsigned pool_buffer_size;  /* bytes per pool buffer; 0: 4096 */
    unsigned threads;           /* work pool threads; 0: $IOMUX_THREADS, else 4 */
    unsigned uring_entries;     /* uring backend: SQ size; 0: 1024 */
    unsigned uring_cq_entries;  /* uring backend: CQ size; 0: 2 x SQ */
    unsigned send_zc_threshold; /* uring backend: sends of at least this many bytes
                                   use SEND_ZC (zero-copy); 0: the measured
                                   default, which is never (it lost at every
                                   size over loopback; see README) */
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
    IOMUX_RUN_ONCE = 1,    /* one iteration; it waits only if it has done nothing yet */
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
 * kernel no longer watches the fd (one epoll_ctl, if it did), and the fd
 * may be closed and the watcher freed. At most one watcher per fd per loop
 * (-EEXIST).
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
 * last stops. SIGKILL and SIGSTOP cannot be watched (-EINVAL). On Windows
 * iomux_signal_start returns -ENOTSUP. */
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

/* ---- the Proactor API: operations and completions -------------------------- */

/*
 * You start an operation with a caller-owned iomux_op; the loop does the I/O
 * and later runs op->cb with the result in op->result: bytes transferred, a
 * new fd (accept), 0 (connect, close, timeout), or a negative errno.
 *
 * Native on uring (io_uring). On select, poll and epoll the core emulates it
 * over readiness, as asio does: it tries the system call at once when the fd
 * is known to be ready and waits for readiness only after EAGAIN; file reads
 * and writes run on the work pool (iomux_work_submit), as libuv does. So a
 * program written to this API runs unchanged on every backend.
 *
 * Promises, on every backend:
 * - Every op's callback runs exactly once with its final result: the result,
 *   an error, or -ECANCELED. A multishot op (IOMUX_OP_MULTISHOT) may first
 *   run its callback any number of times with IOMUX_OP_MORE set in
 *   op->flags; exactly one callback comes without it, and that one is final.
 * - From the start call until that final callback has begun, the op and the
 *   buffer it was given belong to the loop: do not touch, reuse or free them.
 *   The final callback may free the op, or start it again.
 * - Callbacks never run inside the start call; they run from the loop.
 * - Sends (and sendfiles) on one fd complete in the order they were started,
 *   each only when every byte is sent (or with an error). Receives on one fd
 *   complete in the order they were started. This holds for cancelled ops
 *   too: an op cancelled while others started before it on the same fd are
 *   still in progress completes (-ECANCELED) right after them.
 * - Closing a loop (iomux_loop_free) is refused (-EBUSY) while ops are in
 *   flight; iomux_cancel() them and run the loop until their callbacks ran.
 * - An fd is driven either by a watcher or by ops, not both (-EBUSY).
 * - Give ops non-blocking fds (the ones iomux_accept returns are): the
 *   emulation tries accept() and connect() at once, and on a blocking fd
 *   those would block the loop (recv and send use MSG_DONTWAIT anyway).
 * - Zero-copy sends (uring, cfg.send_zc_threshold) complete when the kernel
 *   lets go of the buffer, i.e. when every byte was acknowledged. A peer
 *   that stops reading holds that up even after a cancel; iomux_close of
 *   such a socket resets the connection, so that the send completes.
 *
 * Buffers for recv: pass your own, or NULL to borrow one from the loop's
 * pool when data arrives (so an idle connection holds no buffer). op->buf
 * then points at it and op->result says how many bytes it holds; give it
 * back with iomux_buf_release() when done, from the callback or later. If
 * the pool is empty, receiving waits (the data stays in the kernel) until a
 * buffer is released. On uring the pool is a registered provided-buffer ring.
 */
typedef void (*iomux_op_cb)(iomux_op *op);

enum {
    IOMUX_OP_MULTISHOT = 1u << 0, /* start flag: accept, or recv with pool buffers */
    IOMUX_OP_MORE = 1u << 1       /* in op->flags during a callback: not final */
};

struct iomux_op {
    void *data;          /* yours */
    iomux_loop *loop;
    iomux_op_cb cb;
    int64_t result;      /* in the callback */
    void *buf;           /* recv: the buffer the data is in: yours, or the pool's
                            (then NULL when result <= 0: nothing to release) */
    unsigned flags;      /* in the callback: IOMUX_OP_MORE */
    struct {
        iomux__pend pend;
        iomux__node link;    /* in its fd's queue */
        uint8_t type, state;
        uint16_t oflags;
        iomux_fd fd;
        union {
            struct {
                char *buf;
                size_t len, done;
            } io;            /* recv, send */
            struct {
                iomux_fd file;
                int64_t offset;
                size_t len, done;
            } sendfile;
            struct {
                char *buf;
                size_t len;
                int64_t offset;
            } file;          /* read, write */
            struct {
                const void *addr;
                unsigned addrlen;
            } connect;
            iomux_timer timer; /* timeout */
        } u;
#ifdef _WIN32
        uint64_t ov[4];      /* iocp: the op's OVERLAPPED */
        uint64_t ov_ext;     /* iocp: what the backend keeps beside it */
#endif
    } internal;
};

struct sockaddr;

/* Accepts a connection on listening socket lfd; result: the new fd,
 * non-blocking and close-on-exec. IOMUX_OP_MULTISHOT: one callback per
 * connection (IOMUX_OP_MORE) until cancelled or an error, which is final. */
IOMUX_API int iomux_accept(iomux_loop *loop, iomux_op *op, iomux_fd lfd, unsigned flags, iomux_op_cb cb);

/* Connects non-blocking socket fd to addr; result 0 or -errno. addr must
 * stay valid until the callback. */
IOMUX_API int iomux_connect(iomux_loop *loop, iomux_op *op, iomux_fd fd, const struct sockaddr *addr,
                            unsigned addrlen, iomux_op_cb cb);

/* Receives up to len bytes into buf (buf NULL: a pool buffer, len ignored);
 * result: bytes, 0 at end of stream, or -errno. IOMUX_OP_MULTISHOT (pool
 * buffers only): a callback per arrival until end of stream, an error or a
 * cancel, each with its own buffer. */
IOMUX_API int iomux_recv(iomux_loop *loop, iomux_op *op, iomux_fd fd, void *buf, size_t len, unsigned flags,
                         iomux_op_cb cb);

/* Sends all len bytes; result: len, or -errno (then some may have gone). */
IOMUX_API int iomux_send(iomux_loop *loop, iomux_op *op, iomux_fd fd, const void *buf, size_t len,
                         iomux_op_cb cb);

/* Sends len bytes of file from offset to socket sock, all of them; result:
 * len, or -errno (-EPIPE... or -ENODATA if the file ended early). */
IOMUX_API int iomux_sendfile(iomux_loop *loop, iomux_op *op, iomux_fd sock, iomux_fd file, int64_t offset,
                             size_t len, iomux_op_cb cb);

/* Reads / writes a file at an offset (one call: a short count is possible,
 * as with pread/pwrite); result: bytes, or -errno. */
IOMUX_API int iomux_read(iomux_loop *loop, iomux_op *op, iomux_fd file, void *buf, size_t len,
                         int64_t offset, iomux_op_cb cb);
IOMUX_API int iomux_write(iomux_loop *loop, iomux_op *op, iomux_fd file, const void *buf, size_t len,
                          int64_t offset, iomux_op_cb cb);

/* Closes fd after cancelling every op in flight on it (each completes with
 * -ECANCELED or, if it won the race, its result); result: close's. */
IOMUX_API int iomux_close(iomux_loop *loop, iomux_op *op, iomux_fd fd, iomux_op_cb cb);

/* Completes after ms milliseconds with result 0 (or -ECANCELED). */
IOMUX_API int iomux_timeout(iomux_loop *loop, iomux_op *op, uint64_t ms, iomux_op_cb cb);

/* Asks for op to end early: it completes with -ECANCELED unless its result
 * is already on its way (then with that result); behind other ops of its fd
 * it completes right after them (see the order promise). Returns 0, or
 * -EALREADY when the final result is already decided (a cancel already
 * asked for, or the result on its way), -EINVAL if op is not in flight. The
 * callback still runs exactly once either way. */
IOMUX_API int iomux_cancel(iomux_op *op);

/* 1 from the start call until the final callback begins. */
IOMUX_API int iomux_op_active(const iomux_op *op);

/* Gives a pool buffer (op->buf of a pool recv) back to the loop. */
IOMUX_API void iomux_buf_release(iomux_loop *loop, void *buf);

/* ---- the work pool ------------------------------------------------------------- */

/* Runs work(w) on a pool thread and then done(w, status) on the loop's
 * thread: status 0, or -ECANCELED if iomux_work_cancel() caught it before it
 * started. The pool starts on first use with cfg.threads threads (else
 * $IOMUX_THREADS, else 4). A submitted item keeps the loop alive, and belongs
 * to the loop until done has begun. work must not call iomux functions other
 * than iomux_post. */
typedef void (*iomux_work_fn)(iomux_work *w);
typedef void (*iomux_work_done_fn)(iomux_work *w, int status);

struct iomux_work {
    void *data;          /* yours */
    iomux_loop *loop;
    iomux_work_fn work;
    iomux_work_done_fn done;
    struct {
        iomux__pend pend;
        int state;
        int status;
    } internal;
};

/* Errors: -EINVAL (NULL work or done, or w already submitted), -ENOMEM, or
 * the error of pthread_create when the pool starts. */
IOMUX_API int iomux_work_submit(iomux_loop *loop, iomux_work *w, iomux_work_fn work, iomux_work_done_fn done);

/* Cancels w if no thread has started it: returns 0 and done(w, -ECANCELED)
 * runs from the loop. Returns -EBUSY if it is running or finished, -EINVAL
 * if it was not submitted. */
IOMUX_API int iomux_work_cancel(iomux_work *w);

#ifdef __cplusplus
}
#endif

#endif /* IOMUX_H */
