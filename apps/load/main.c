/* iomux-load: start-up and exit codes. Parse the command line (exit 2 if
 * bad), pin to a CPU, raise the open-file limit, let child processes open
 * the idle connections (before any loop exists: fork and a loop's ring do
 * not mix), run the load on one iomux loop and print the report. Exit 0
 * when the run completed (its errors are in the report), 1 when it could
 * not run (no connection, no backend, a timeout). */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "load.h"

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) == 0) return 0;
    fprintf(stderr, LOAD_NAME ": cannot pin to CPU %d: %s\n", cpu, strerror(errno));
    return -1;
}

/* The soft open-file limit up to the hard one; -1 if conns cannot fit. */
static int raise_nofile(long conns) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 0;
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)conns + 32 > rl.rlim_cur) {
        fprintf(stderr, LOAD_NAME ": %ld connections need more fds than the open-file limit (%llu) allows\n",
                conns, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    load_opts o;
    idle_group ig;
    uint64_t deadline;
    int rc;
    load_parse(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    if ((o.cpu >= 0 && pin(o.cpu) < 0) || raise_nofile(o.conns) < 0) return 1;
    deadline = load_now_ns() + (uint64_t)(o.timeout_s * 1e9);
    if (idle_start(&o, deadline, &ig) < 0) return 1;
    rc = load_run_all(&o, deadline);
    idle_stop(&ig);
    return rc;
}
