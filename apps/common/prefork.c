/* --model prefork: --processes N child processes, each blocking in
 * accept(2) on the shared listener and serving one connection at a time
 * with blocking calls (the kernel wakes one waiter per connection). The
 * parent only supervises: it restarts a child that died, and on
 * SIGINT/SIGTERM closes its copy of the listener, passes SIGTERM on, and
 * waits for the children, killing those still busy at the deadline.
 *
 * A child's drain (its SIGTERM handler, all async-signal-safe): close the
 * listener (a waiting accept returns), and make the current connection's
 * reads time out after the idle time (a waiting read returns EINTR and is
 * retried with the timeout), so app_blocking_read ends it once idle. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define RETRY_MS 100 /* a child's accept failing (EMFILE...): wait this long */

/* ---- a child ----------------------------------------------------------------------- */

static volatile sig_atomic_t child_lfd = -1, child_fd = -1;
static unsigned child_idle_ms;

static void child_on_term(int sig) {
    int lfd = child_lfd, fd = child_fd;
    (void)sig;
    app__set_draining();
    child_lfd = -1;
    if (lfd >= 0) close(lfd);
    if (fd >= 0) app__blocking_idle_timeout(fd, child_idle_ms);
}

static void child_signals(void) {
    struct sigaction sa;
    sigset_t none;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = child_on_term;
    sigfillset(&sa.sa_mask); /* one handler at a time */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGCHLD, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void child_main(const app_spec *spec, const app_options *o, int lfd, pid_t parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the parent, even a killed one */
    if (getppid() != parent) _exit(0);
    child_idle_ms = o->drain_idle_ms;
    child_lfd = lfd;
    child_signals();
    while (!app_draining()) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED && errno != EBADF && !app_draining()) usleep(RETRY_MS * 1000);
            continue;
        }
        child_fd = fd;
        if (app_draining()) app__blocking_idle_timeout(fd, o->drain_idle_ms); /* the handler missed it */
        spec->hooks.serve(o, spec->app, fd);
        child_fd = -1;
        close(fd);
    }
    exit(0);
}

/* ---- the parent -------------------------------------------------------------------- */

typedef struct pshape {
    const app_spec *spec;
    const app_options *o;
    int lfd;
    pid_t *pids;
    unsigned alive;
    int draining;
} pshape;

static int spawn(pshape *ps, unsigned i) {
    pid_t parent = getpid(), pid;
    fflush(NULL); /* nothing buffered may be written twice */
    pid = fork();
    if (pid < 0) {
        app_log("cannot start worker process %u: %s", i, strerror(errno));
        return -1;
    }
    if (pid == 0) child_main(ps->spec, ps->o, ps->lfd, parent);
    ps->pids[i] = pid;
    ps->alive++;
    return 0;
}

static void describe(int status, char *buf, size_t len) {
    if (WIFSIGNALED(status)) snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else snprintf(buf, len, "exit code %d", WEXITSTATUS(status));
}

/* Reaps the children that ended; while serving, restarts them. */
static void reap(pshape *ps) {
    int status;
    pid_t pid;
    unsigned i;
    char why[64];
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (i = 0; i < ps->o->processes && ps->pids[i] != pid; i++) {
        }
        if (i == ps->o->processes) continue;
        ps->pids[i] = 0;
        ps->alive--;
        if (ps->draining) continue;
        describe(status, why, sizeof(why));
        app_log("worker process %d ended (%s); starting another", (int)pid, why);
        usleep(RETRY_MS * 1000); /* a child that dies at once must not make this spin */
        spawn(ps, i);
    }
}

static void signal_all(pshape *ps, int sig) {
    unsigned i;
    for (i = 0; i < ps->o->processes; i++)
        if (ps->pids[i] > 0) kill(ps->pids[i], sig);
}

/* Waits for a signal until deadline_ms (0: no deadline); 0 on timeout. */
static int wait_signal(const sigset_t *set, unsigned long long deadline_ms) {
    struct timespec ts;
    unsigned long long now, left;
    int sig;
    do {
        now = app__now_ms();
        if (deadline_ms && now >= deadline_ms) return 0;
        left = deadline_ms ? deadline_ms - now : 1000;
        ts.tv_sec = (time_t)(left / 1000);
        ts.tv_nsec = (long)(left % 1000) * 1000000L;
        sig = sigtimedwait(set, NULL, &ts);
    } while (sig < 0);
    return sig;
}

static void supervise(pshape *ps, const sigset_t *set) {
    unsigned long long deadline = 0;
    for (;;) {
        int sig = wait_signal(set, deadline);
        if (sig == SIGCHLD) reap(ps);
        else if (sig && !ps->draining) {
            ps->draining = 1;
            close(ps->lfd); /* the children's copies close in their handlers */
            signal_all(ps, SIGTERM);
            deadline = app__now_ms() + ps->o->drain_ms + (ps->o->drain_ms == 0);
        } else if (ps->draining && (sig == 0 || sig == SIGINT || sig == SIGTERM)) {
            if (sig) app_log("drain: second signal; killing the %u worker process(es) still busy", ps->alive);
            else app_log("drain: %u ms passed; killing the %u worker process(es) still busy", ps->o->drain_ms,
                         ps->alive);
            signal_all(ps, SIGKILL);
            while (ps->alive && waitpid(-1, NULL, 0) > 0) ps->alive--;
        }
        if (ps->draining && ps->alive == 0) return;
    }
}

int app__run_prefork(const app_spec *spec, const app_options *o) {
    pshape ps;
    sigset_t set;
    int port;
    unsigned i;
    memset(&ps, 0, sizeof(ps));
    ps.spec = spec;
    ps.o = o;
    if (app__listen(o, 1, 0, &ps.lfd, &port) < 0) return 1;
    fcntl(ps.lfd, F_SETFL, fcntl(ps.lfd, F_GETFL) & ~O_NONBLOCK); /* children block in accept */
    ps.pids = calloc(o->processes, sizeof(*ps.pids));
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL); /* taken with sigtimedwait; children unblock */
    for (i = 0; ps.pids && i < o->processes; i++) {
        if (spawn(&ps, i) < 0) break;
    }
    if (!ps.pids || i < o->processes) {
        if (ps.pids) signal_all(&ps, SIGKILL);
        while (ps.alive && waitpid(-1, NULL, 0) > 0) ps.alive--;
        close(ps.lfd);
        free(ps.pids);
        return 1;
    }
    app__ready(spec, o, port);
    supervise(&ps, &set);
    free(ps.pids);
    return 0;
}
