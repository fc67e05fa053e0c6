/* Backend fallback: with IOMUX_BACKEND unset and cfg.backend AUTO a loop on
 * this machine gets "uring"; in a child process whose seccomp filter makes
 * io_uring_setup fail (EPERM, then ENOSYS), AUTO quietly falls back to
 * "epoll" and that loop works (a timer, a timeout op, a send and a recv),
 * while an explicit IOMUX_BACKEND_URING (or $IOMUX_BACKEND=uring) returns
 * the errno. Not a per-backend test. Skips (77) if this process cannot get
 * io_uring at all (kernel, sysctl, container), or cannot install a filter. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"

#if defined(__x86_64__)
#define FILTER_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FILTER_ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define FILTER_ARCH AUDIT_ARCH_I386
#endif

#define CHILD_SKIP 77

/* io_uring_setup fails with err; every other system call is allowed (also
 * those of another architecture's numbering, which the filter does not
 * know). Returns 0 or -errno. */
static int deny_io_uring_setup(int err) {
#ifdef FILTER_ARCH
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FILTER_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog;
    prog.len = (unsigned short)(sizeof(f) / sizeof(f[0]));
    prog.filter = f;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) return -errno;
    return 0;
#else
    (void)err;
    return -ENOTSUP;
#endif
}

/* ---- what the child checks ---------------------------------------------------------- */

static int g_fired;

static void timer_cb(iomux_timer *t) {
    g_fired++;
    (void)t;
}

static int g_ops;
static int64_t g_results[3];

static void op_cb(iomux_op *op) {
    CHECK(g_ops < 3);
    g_results[g_ops++] = op->result;
}

/* The fallback loop does its job: a timer, a timeout op, and a send and a
 * recv (emulated over epoll). */
static void check_loop_works(iomux_loop *loop) {
    iomux_timer t;
    iomux_op tmo, snd, rcv;
    char buf[16];
    int p[2];
    uint64_t t0 = test_ms();
    g_fired = g_ops = 0;
    iomux_timer_init(loop, &t, timer_cb);
    CHECK_OK(iomux_timer_start(&t, 10, 0));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(g_fired, 1);
    CHECK(test_ms() - t0 >= 10);

    unix_pair(p);
    CHECK_OK(iomux_timeout(loop, &tmo, 5, op_cb));
    CHECK_OK(iomux_recv(loop, &rcv, p[1], buf, sizeof(buf), 0, op_cb));
    CHECK_OK(iomux_send(loop, &snd, p[0], "fallback", 8, op_cb));
    run_until_calls(loop, &g_ops, 3, 3000);
    CHECK_EQ(tmo.result, 0);
    CHECK_EQ(snd.result, 8);
    CHECK_EQ(rcv.result, 8);
    CHECK(memcmp(buf, "fallback", 8) == 0);
    close_pair(p);
}

static int child_main(int err) {
    iomux_config cfg;
    iomux_loop *loop = NULL, *other = NULL;
    struct {
        uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd, resv[3];
        uint64_t offsets[10];
    } params; /* struct io_uring_params, by layout (120 bytes) */
    long rc;
    int r = deny_io_uring_setup(err);
    if (r < 0) {
        fprintf(stderr, "cannot install a seccomp filter: %s\n", strerror(-r));
        return CHILD_SKIP;
    }
    /* The filter bites. */
    memset(&params, 0, sizeof(params));
    rc = syscall(__NR_io_uring_setup, 4, &params);
    CHECK_EQ(rc, -1);
    CHECK_EQ(errno, err);

    /* AUTO: epoll, and no error. */
    unsetenv("IOMUX_BACKEND");
    CHECK_EQ(iomux_loop_new(&loop, NULL), 0);
    CHECK(loop != NULL);
    CHECK_EQ(iomux_loop_backend(loop), IOMUX_BACKEND_EPOLL);
    CHECK(strcmp(iomux_backend_name(loop), "epoll") == 0);
    iomux_config_init(&cfg);
    cfg.backend = IOMUX_BACKEND_AUTO;
    CHECK_EQ(iomux_loop_new(&other, &cfg), 0);
    CHECK(strcmp(iomux_backend_name(other), "epoll") == 0);
    test_loop_free(other);
    other = NULL;

    /* Asked for by name: the errno, and no loop. */
    cfg.backend = IOMUX_BACKEND_URING;
    CHECK_EQ(iomux_loop_new(&other, &cfg), -err);
    CHECK(other == NULL);
    CHECK(iomux_strerror(-err) != NULL);
    cfg.backend = IOMUX_BACKEND_AUTO;
    CHECK_EQ(setenv("IOMUX_BACKEND", "uring", 1), 0);
    CHECK_EQ(iomux_loop_new(&other, &cfg), -err);
    CHECK(other == NULL);
    unsetenv("IOMUX_BACKEND");

    check_loop_works(loop);
    test_loop_free(loop);
    return 0;
}

/* Runs child_main(err) in a child; returns its exit status (CHILD_SKIP
 * included), failing on a signal. */
static int in_child(int err) {
    pid_t pid;
    int status;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        alarm(20); /* a hang ends as SIGALRM */
        exit(child_main(err));
    }
    CHECK_SYS(waitpid(pid, &status, 0));
    if (WIFSIGNALED(status)) FAIL("child (errno %d) killed by signal %d", err, WTERMSIG(status));
    CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int main(void) {
    iomux_config cfg;
    iomux_loop *loop = NULL;
    int rc, status;
    unsetenv("IOMUX_BACKEND");

    /* Can this process get io_uring at all? */
    iomux_config_init(&cfg);
    cfg.backend = IOMUX_BACKEND_URING;
    rc = iomux_loop_new(&loop, &cfg);
    if (rc < 0) {
        fprintf(stderr, "skip: no io_uring for this process (%s)\n", iomux_strerror(rc));
        return TEST_SKIP;
    }
    test_loop_free(loop);
    loop = NULL;

    fprintf(stderr, "-- AUTO picks uring\n");
    CHECK_EQ(iomux_loop_new(&loop, NULL), 0);
    CHECK(strcmp(iomux_backend_name(loop), "uring") == 0);
    CHECK_EQ(iomux_loop_backend(loop), IOMUX_BACKEND_URING);
    test_loop_free(loop);

    fprintf(stderr, "-- io_uring_setup refused with EPERM\n");
    status = in_child(EPERM);
    if (status == CHILD_SKIP) return TEST_SKIP;
    CHECK_EQ(status, 0);
    fprintf(stderr, "-- io_uring_setup refused with ENOSYS\n");
    CHECK_EQ(in_child(ENOSYS), 0);

    /* The parent is untouched by the children's filters. */
    CHECK_EQ(iomux_loop_new(&loop, NULL), 0);
    CHECK(strcmp(iomux_backend_name(loop), "uring") == 0);
    test_loop_free(loop);
    return 0;
}
