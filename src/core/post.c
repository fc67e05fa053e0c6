/* iomux_post: callbacks queued from any thread, run on the loop's thread.
 *
 * Producers append to `in` under a mutex; the loop swaps `in` and `out` in
 * one short critical section and runs `out` without the lock, so the two
 * arrays are reused and a post allocates nothing once they have grown.
 * Wake-ups are batched: only the post that finds no wake-up owed writes to
 * the eventfd (or calls the backend's wake); the swap clears the debt. `queued` counts posts not yet run,
 * and the loop does not block while it is > 0 (wait_timeout). So when the
 * loop blocks, every post so far has been swapped out and run, the last swap
 * cleared the debt, and the next post writes to the eventfd: no post sleeps
 * in the queue while the loop waits, even when a batch is bigger than one
 * iteration's budget and the eventfd was drained before the batch ended. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "loop.h"
#include "sys.h"

/* The wake-up fd, when the backend has no wake of its own: an eventfd on
 * Linux, a pipe elsewhere, a loopback socket pair on Windows (WSAPoll
 * watches sockets only). */
static void wake_drain(iomux_watch *w, unsigned revents) {
    char buf[64];
    (void)revents;
#ifdef _WIN32
    while (recv((SOCKET)w->fd, buf, sizeof(buf), 0) > 0) {
    }
#else
    while (read(w->fd, buf, sizeof(buf)) > 0) {
    }
#endif
}

static int wake_open(iomux__post_queue *q) {
#if defined(__linux__)
    q->efd = q->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return q->efd < 0 ? -errno : 0;
#else
    int fds[2], rc;
#ifdef _WIN32
    rc = iomux__sock_pair(fds);
#else
    rc = pipe(fds) < 0 ? -errno : 0;
#endif
    if (rc < 0) return rc;
    iomux__set_nonblock(fds[0]);
    iomux__set_nonblock(fds[1]);
    q->efd = fds[0];
    q->wfd = fds[1];
    return 0;
#endif
}

static void wake_close(iomux__post_queue *q) {
    if (q->efd < 0) return;
    iomux__sock_close(q->efd);
    if (q->wfd != q->efd) iomux__sock_close(q->wfd);
    q->efd = q->wfd = -1;
}

static void wake_signal(iomux_loop *loop) {
    iomux__post_queue *q = &loop->post;
    if (loop->backend->wake) {
        loop->backend->wake(loop);
        return;
    }
#if defined(__linux__)
    {
        uint64_t one = 1;
        ssize_t n;
        do n = write(q->wfd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
    }
#elif defined(_WIN32)
    send((SOCKET)q->wfd, "", 1, 0);
#else
    {
        char one = 1;
        ssize_t n;
        do n = write(q->wfd, &one, 1);
        while (n < 0 && errno == EINTR);
    }
#endif
    /* EAGAIN means a wake-up is already readable: nothing is lost. */
}

int iomux__post_init(iomux_loop *loop) {
    iomux__post_queue *q = &loop->post;
    int rc = pthread_mutex_init(&q->mu, NULL);
    atomic_init(&q->queued, 0);
    q->efd = q->wfd = -1;
    if (rc != 0) return -rc;
    if (loop->backend->wake) return 0;
    rc = wake_open(q);
    if (rc == 0) {
        iomux_watch_init(loop, &q->watch, q->efd, wake_drain);
        rc = iomux__watch_start_internal(&q->watch, IOMUX_IN);
        if (rc < 0) wake_close(q);
    }
    if (rc < 0) pthread_mutex_destroy(&q->mu);
    return rc;
}

void iomux__post_close(iomux_loop *loop) {
    iomux__post_queue *q = &loop->post;
    if (q->efd >= 0) iomux_watch_stop(&q->watch);
    wake_close(q);
    pthread_mutex_destroy(&q->mu);
    iomux__free(loop, q->in);
    iomux__free(loop, q->out);
}

int iomux_post(iomux_loop *loop, iomux_post_fn fn, void *arg) {
    iomux__post_queue *q;
    int wake, rc;
    if (!loop || !fn) return -EINVAL;
    q = &loop->post;
    pthread_mutex_lock(&q->mu);
    rc = iomux__grow(loop, (void **)&q->in, &q->in_cap, q->in_len + 1, sizeof(*q->in));
    if (rc < 0) {
        pthread_mutex_unlock(&q->mu);
        return rc;
    }
    q->in[q->in_len].fn = fn;
    q->in[q->in_len].arg = arg;
    q->in_len++;
    atomic_fetch_add(&q->queued, 1);
    wake = !q->wake_pending;
    q->wake_pending = 1;
    pthread_mutex_unlock(&q->mu);
    if (wake) wake_signal(loop);
    return 0;
}

/* Phase 3: takes a new batch once the previous one is done, then runs at
 * most max_pending items of it; the rest waits for the next iteration (whose
 * wait will not block, see wait_timeout). */
unsigned iomux__post_run(iomux_loop *loop) {
    iomux__post_queue *q = &loop->post;
    unsigned budget = loop->max_pending, ran = 0;
    if (q->out_pos == q->out_len) {
        /* Nothing queued: skip the lock (and the debt is already cleared:
         * the last swap cleared it, and any later post would count). */
        if (atomic_load(&q->queued) == 0) return 0;
        iomux__post_item *tmp;
        size_t cap;
        pthread_mutex_lock(&q->mu);
        tmp = q->out;
        cap = q->out_cap;
        q->out = q->in;
        q->out_cap = q->in_cap;
        q->out_len = q->in_len;
        q->out_pos = 0;
        q->in = tmp;
        q->in_cap = cap;
        q->in_len = 0;
        q->wake_pending = 0;
        pthread_mutex_unlock(&q->mu);
    }
    while (budget-- > 0 && q->out_pos < q->out_len) {
        iomux__post_item it = q->out[q->out_pos++];
        atomic_fetch_sub(&q->queued, 1);
        it.fn(loop, it.arg);
        ran++;
    }
    return ran;
}

int iomux__post_queued(const iomux_loop *loop) {
    return atomic_load(&loop->post.queued) > 0;
}
