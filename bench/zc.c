/* bench/zc: where SEND_ZC starts to pay on this machine. One TCP connection
 * over loopback; the sender is an iomux loop on uring with `depth` sends of
 * `size` bytes in flight, once with zero-copy forced on (threshold 1) and
 * once off; a reader process on the other CPU drains. Prints MB/s and the
 * sender's CPU per MB for each size, ZC vs copy side by side. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "iomux.h"

#define DEPTH 4

typedef struct sender {
    iomux_loop *loop;
    iomux_op op[DEPTH];
    char *buf;
    size_t size;
    int fd;
    uint64_t bytes;
    double end;
    int failed;
} sender;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static void on_sent(iomux_op *op) {
    sender *s = op->data;
    if (op->result < 0) {
        s->failed = 1;
        return;
    }
    s->bytes += (uint64_t)op->result;
    if (now_s() < s->end && iomux_send(s->loop, op, s->fd, s->buf, s->size, on_sent) < 0) s->failed = 1;
}

/* The reader: a plain blocking loop on CPU 1 until EOF. */
static pid_t spawn_reader(int lfd) {
    pid_t pid = fork();
    if (pid == 0) {
        static char buf[1 << 20];
        int fd = accept(lfd, NULL, NULL);
        pin(1);
        while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0) {
        }
        _exit(0);
    }
    return pid;
}

/* MB/s for one (size, zc) pair; *cpu_per_mb gets the sender's CPU ms/MB. */
static double run_one(size_t size, int zc, double secs, double *cpu_per_mb) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    iomux_config cfg;
    sender s;
    double t0, c0, t1;
    int i, lfd = socket(AF_INET, SOCK_STREAM, 0);
    pid_t reader;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    reader = spawn_reader(lfd);
    memset(&s, 0, sizeof(s));
    iomux_config_init(&cfg);
    cfg.backend = IOMUX_BACKEND_URING;
    cfg.send_zc_threshold = zc ? 1 : UINT32_MAX;
    if (iomux_loop_new(&s.loop, &cfg) < 0) return -1;
    s.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s.fd, (struct sockaddr *)&a, sizeof(a)) < 0) return -1;
    s.size = size;
    s.buf = malloc(size);
    memset(s.buf, 'z', size);
    t0 = now_s();
    c0 = cpu_s();
    s.end = t0 + secs;
    for (i = 0; i < DEPTH; i++) {
        s.op[i].data = &s;
        iomux_send(s.loop, &s.op[i], s.fd, s.buf, size, on_sent);
    }
    while (iomux_run(s.loop, IOMUX_RUN_ONCE) > 0 && !s.failed) {
    }
    t1 = now_s();
    *cpu_per_mb = (cpu_s() - c0) * 1000.0 / ((double)s.bytes / 1e6);
    close(s.fd);
    close(lfd);
    waitpid(reader, NULL, 0);
    iomux_loop_free(s.loop);
    free(s.buf);
    return s.failed ? -1 : (double)s.bytes / 1e6 / (t1 - t0);
}

int main(int argc, char **argv) {
    static const size_t sizes[] = {4096, 16384, 65536, 262144, 1048576};
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    size_t i;
    signal(SIGPIPE, SIG_IGN);
    if (!iomux_backend_available(IOMUX_BACKEND_URING)) {
        printf("zc: this build has no uring backend\n");
        return 0;
    }
    pin(0);
    printf("SEND_ZC vs copy, one loopback TCP connection, %d sends in flight, %.1f s each\n", DEPTH, secs);
    printf("%10s %12s %12s %8s %14s %14s\n", "size", "copy MB/s", "zc MB/s", "zc/copy", "copy CPUms/MB",
           "zc CPUms/MB");
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        double cc, zcpu, copy = run_one(sizes[i], 0, secs, &cc), z = run_one(sizes[i], 1, secs, &zcpu);
        printf("%10zu %12.0f %12.0f %7.2fx %14.3f %14.3f\n", sizes[i], copy, z, copy > 0 ? z / copy : 0, cc, zcpu);
    }
    return 0;
}
