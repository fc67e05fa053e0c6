/* The backend contract. One const vtable per backend, so one binary holds
 * them all; a backend's state hangs off loop->bstate. A backend is the kernel
 * API and nothing else: the core owns watchers, coalescing, ET/ONESHOT
 * emulation and dispatch. No backend runs a user callback. */
#ifndef IOMUX_BACKEND_H
#define IOMUX_BACKEND_H

#include "iomux.h"

/* Capabilities: what the kernel does natively (the core emulates the rest). */
enum {
    IOMUX__CAP_ET = 1u << 0,
    IOMUX__CAP_ONESHOT = 1u << 1
};

/* Extra bits in the `have` mask passed to and returned by watch_update.
 * `have` never holds the report-only bits IOMUX_ERR/HUP, so IOMUX__ONCE
 * reuses HUP's position (have is 8 bits wide). */
enum {
    IOMUX__ONCE = 1u << 3,  /* the kernel disarms the fd after one report */
    IOMUX__ADDED = 1u << 6, /* the fd is in the backend's set */
    IOMUX__FRESH = 1u << 7  /* the fd may have been closed and reused since */
};

typedef struct iomux__backend {
    const char *name;
    iomux_backend id;
    unsigned caps;
    /* Sets loop->bstate. Returns 0 or -errno. */
    int (*init)(iomux_loop *loop);
    void (*free)(iomux_loop *loop);
    /* Makes the backend's interest for fd equal to `want`: IOMUX_IN|OUT,
     * plus IOMUX_ET/ONESHOT only if the caps say native. `want` without
     * IN/OUT means remove. `have` is the previous return value (0 at first),
     * possibly with IOMUX__FRESH. Returns the new `have`: `want`, plus
     * IOMUX__ADDED while the fd is in the set, plus IOMUX__ONCE if the kernel
     * will disarm it after one report (the core then re-applies it); or
     * -errno. */
    int (*watch_update)(iomux_loop *loop, iomux_fd fd, unsigned have, unsigned want);
    /* Waits up to timeout_ms (-1: forever) and reports each ready fd with
     * iomux__io_event(). Returns the number of fds reported, 0 on timeout,
     * -EINTR if interrupted before anything was reported (the core resumes
     * the wait), or -errno. */
    int (*wait)(iomux_loop *loop, int timeout_ms);
    /* The Proactor, NULL on readiness backends (the core emulates it).
     * submit: hands op to the kernel; 0, or -ENOTSUP for an op type the
     * backend does not do (the core emulates that one), or -errno. Its
     * completion reaches the core through iomux__op_cqe() from wait().
     * cancel: asks the kernel to end op early (its CQE still comes). */
    int (*submit)(iomux_loop *loop, iomux_op *op);
    int (*cancel)(iomux_loop *loop, iomux_op *op);
    /* Pool buffers owned by the kernel (provided-buffer ring), NULL if the
     * core hands them out: pool_init registers count buffers of size at
     * base; pool_put gives buffer id back to the kernel. */
    int (*pool_init)(iomux_loop *loop, char *base, unsigned count, unsigned size);
    void (*pool_put)(iomux_loop *loop, unsigned id);
    /* Hands what is prepared to the kernel now (NULL: nothing is ever held
     * back). The core calls it before close(2) of an fd that prepared
     * requests may name, so they reach the fd while it is still open. */
    void (*flush)(iomux_loop *loop);
    /* Wakes a wait() in progress or the next one, from any thread (NULL:
     * the core wakes the loop through an fd it watches). */
    void (*wake)(iomux_loop *loop);
} iomux__backend;

/* Called by wait() for each ready fd; `revents` in IOMUX_IN|OUT|ERR|HUP. */
void iomux__io_event(iomux_loop *loop, iomux_fd fd, unsigned revents);
/* Called by a backend whose kernel dropped an fd's interest on its own (an
 * io_uring multishot poll that ended): phase 4 will apply it again. */
void iomux__io_disarmed(iomux_loop *loop, iomux_fd fd);

#if defined(__linux__)
#define IOMUX_HAVE_EPOLL 1
#endif
/* IOMUX_HAVE_URING comes from the build (liburing found). */

#ifndef _WIN32
extern const iomux__backend iomux__backend_select;
#endif
/* On Windows, poll is WSAPoll. */
extern const iomux__backend iomux__backend_poll;
#ifdef IOMUX_HAVE_EPOLL
extern const iomux__backend iomux__backend_epoll;
#endif
#ifdef IOMUX_HAVE_URING
extern const iomux__backend iomux__backend_uring;
#endif
#ifdef _WIN32
extern const iomux__backend iomux__backend_iocp;
#endif

#endif
