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

/* Extra bits in the `have` mask passed to watch_update. */
enum {
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
     * possibly with IOMUX__FRESH. Returns the new `have` (with IOMUX__ADDED
     * while the fd is in the set) or -errno. */
    int (*watch_update)(iomux_loop *loop, iomux_fd fd, unsigned have, unsigned want);
    /* Waits up to timeout_ms (-1: forever) and reports each ready fd with
     * iomux__io_event(). Returns the number of fds reported, 0 on timeout or
     * EINTR, or -errno. */
    int (*wait)(iomux_loop *loop, int timeout_ms);
} iomux__backend;

/* Called by wait() for each ready fd; `revents` in IOMUX_IN|OUT|ERR|HUP. */
void iomux__io_event(iomux_loop *loop, iomux_fd fd, unsigned revents);

#if defined(__linux__)
#define IOMUX_HAVE_EPOLL 1
#endif

extern const iomux__backend iomux__backend_select;
extern const iomux__backend iomux__backend_poll;
#ifdef IOMUX_HAVE_EPOLL
extern const iomux__backend iomux__backend_epoll;
#endif

#endif
