/* Signal watchers. One process-wide handler, installed with sigaction while
 * any loop watches the signal, writes the signal number into the self-pipe of
 * every loop that watches it; each loop reads its pipe with an internal
 * watcher and queues its signal watchers. signalfd is not used: it needs the
 * signal blocked in every thread, and a process-directed signal reaches only
 * one signalfd, so two loops could not both see it.
 *
 * The handler must be async-signal-safe, so the table it reads holds only
 * lock-free atomics: per slot (one per loop that watches signals) the pipe's
 * write end and a 64-bit mask of watched signals. A loop giving its slot up
 * clears it, then waits for handlers in flight (`in_handler`) before closing
 * the pipe, so a handler never writes to a closed or reused fd. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"

#define SLOTS 64

static struct {
    atomic_int wfd1;      /* write end + 1; 0 = free */
    atomic_ullong mask;   /* bit (signum - 1) */
} slots[SLOTS];
static atomic_int in_handler;
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned refs[IOMUX__NSIG];          /* watching loops, per signal */
static struct sigaction saved[IOMUX__NSIG]; /* the action before ours */

static void on_signal(int signum) {
    int saved_errno = errno, i;
    unsigned long long bit = 1ull << (signum - 1);
    unsigned char b = (unsigned char)signum;
    atomic_fetch_add(&in_handler, 1);
    for (i = 0; i < SLOTS; i++) {
        int fd = atomic_load(&slots[i].wfd1) - 1;
        if (fd >= 0 && (atomic_load(&slots[i].mask) & bit)) {
            ssize_t n = write(fd, &b, 1); /* a full pipe already holds a wake-up */
            (void)n;
        }
    }
    atomic_fetch_sub(&in_handler, 1);
    errno = saved_errno;
}

static void pipe_readable(iomux_watch *w, unsigned revents) {
    iomux_loop *loop = w->loop;
    unsigned char buf[64];
    ssize_t n, i;
    (void)revents;
    while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
        for (i = 0; i < n; i++) {
            iomux__node *head, *it;
            if (buf[i] == 0 || buf[i] >= IOMUX__NSIG) continue;
            head = &loop->sig.lists[buf[i]];
            for (it = head->next; it != head; it = it->next) {
                iomux_signal *s = iomux__container_of(it, iomux_signal, internal.link);
                iomux__pend_queue(loop, &s->internal.pend);
            }
        }
    }
}

static void signal_run(iomux__pend *p) {
    iomux_signal *s = iomux__container_of(p, iomux_signal, internal.pend);
    s->cb(s, s->signum);
}

void iomux__signal_init(iomux_loop *loop) {
    int i;
    loop->sig.slot = -1;
    loop->sig.rfd = loop->sig.wfd = -1;
    for (i = 0; i < IOMUX__NSIG; i++) iomux__q_init(&loop->sig.lists[i]);
}

static int set_flags(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return -errno;
    return 0;
}

/* Takes a slot and a self-pipe for this loop (under table_mu). */
static int slot_acquire(iomux_loop *loop) {
    int fds[2], i, rc;
    if (loop->sig.slot >= 0) return 0;
    for (i = 0; i < SLOTS && atomic_load(&slots[i].wfd1) != 0; i++) {
    }
    if (i == SLOTS) return -ENOSPC;
    if (pipe(fds) < 0) return -errno;
    rc = set_flags(fds[0]);
    if (rc == 0) rc = set_flags(fds[1]);
    if (rc == 0) {
        loop->sig.rfd = fds[0];
        loop->sig.wfd = fds[1];
        iomux_watch_init(loop, &loop->sig.watch, fds[0], pipe_readable);
        rc = iomux__watch_start_internal(&loop->sig.watch, IOMUX_IN);
    }
    if (rc < 0) {
        close(fds[0]);
        close(fds[1]);
        loop->sig.rfd = loop->sig.wfd = -1;
        return rc;
    }
    atomic_store(&slots[i].mask, 0);
    atomic_store(&slots[i].wfd1, fds[1] + 1);
    loop->sig.slot = i;
    return 0;
}

/* First watcher of signum in this loop: subscribe the slot, and install the
 * handler if no loop had it (under table_mu). */
static int subscribe(iomux_loop *loop, int signum) {
    if (loop->sig.counts[signum]++ > 0) return 0;
    if (refs[signum]++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigfillset(&sa.sa_mask);
        if (sigaction(signum, &sa, &saved[signum]) < 0) {
            int err = -errno;
            refs[signum]--;
            loop->sig.counts[signum]--;
            return err;
        }
    }
    atomic_fetch_or(&slots[loop->sig.slot].mask, 1ull << (signum - 1));
    return 0;
}

static void unsubscribe(iomux_loop *loop, int signum) {
    if (--loop->sig.counts[signum] > 0) return;
    atomic_fetch_and(&slots[loop->sig.slot].mask, ~(1ull << (signum - 1)));
    if (--refs[signum] == 0) sigaction(signum, &saved[signum], NULL);
}

void iomux_signal_init(iomux_loop *loop, iomux_signal *s, iomux_signal_cb cb) {
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->cb = cb;
    s->internal.pend.run = signal_run;
}

int iomux_signal_start(iomux_signal *s, int signum) {
    iomux_loop *loop = s->loop;
    int rc;
    if (signum <= 0 || signum >= IOMUX__NSIG || signum == SIGKILL || signum == SIGSTOP)
        return -EINVAL;
    iomux_signal_stop(s);
    pthread_mutex_lock(&table_mu);
    rc = slot_acquire(loop);
    if (rc == 0) rc = subscribe(loop, signum);
    pthread_mutex_unlock(&table_mu);
    if (rc < 0) return rc;
    s->signum = signum;
    iomux__q_push(&loop->sig.lists[signum], &s->internal.link);
    loop->active++;
    return 0;
}

int iomux_signal_stop(iomux_signal *s) {
    iomux_loop *loop = s->loop;
    if (!iomux__q_linked(&s->internal.link)) return 0;
    iomux__q_remove(&s->internal.link);
    iomux__pend_cancel(&s->internal.pend);
    pthread_mutex_lock(&table_mu);
    unsubscribe(loop, s->signum);
    pthread_mutex_unlock(&table_mu);
    loop->active--;
    return 0;
}

int iomux_signal_active(const iomux_signal *s) {
    return iomux__q_linked(&s->internal.link);
}

void iomux__signal_close(iomux_loop *loop) {
    int slot = loop->sig.slot;
    if (slot < 0) return;
    iomux_watch_stop(&loop->sig.watch);
    pthread_mutex_lock(&table_mu);
    atomic_store(&slots[slot].mask, 0);
    atomic_store(&slots[slot].wfd1, 0);
    pthread_mutex_unlock(&table_mu);
    while (atomic_load(&in_handler) > 0) {
    }
    close(loop->sig.rfd);
    close(loop->sig.wfd);
    loop->sig.slot = -1;
}
