/* The small things every file of the runner uses: the program name for
 * messages, the drain flag, the clock, signals, the busy wait. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "internal.h"

const char *app__name = "iomux-app";

static atomic_int draining;

void app__set_draining(void) {
    atomic_store(&draining, 1);
}

int app_draining(void) {
    return atomic_load(&draining);
}

unsigned long long app__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)ts.tv_nsec / 1000000u;
}

void app_spin_us(unsigned us) {
    struct timespec ts;
    unsigned long long end, now;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    end = (unsigned long long)ts.tv_sec * 1000000000u + (unsigned long long)ts.tv_nsec + us * 1000ull;
    do {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (unsigned long long)ts.tv_sec * 1000000000u + (unsigned long long)ts.tv_nsec;
    } while (now < end);
}

void app_log(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", app__name, line); /* one call: lines from threads do not interleave */
}

#ifndef _WIN32 /* the blocking models' signals; Windows has neither */
int app__on_signal(int sig, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL) < 0 ? -errno : 0;
}
#endif
