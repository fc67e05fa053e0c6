/* The command line of iomux-load: parsing, checks of the combinations,
 * and --help. Every refusal says what was wrong and exits 2, so a driver
 * (iomux-compare) can tell a bad invocation from a run that failed (1). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: iomux-load --port P [--host 127.0.0.1] [--proto echo|http] [--conns C] [--duration S]\n"
            "                  [--warmup S] [--size B] [--pipeline N] [--rate R] [--requests N] [--idle N]\n"
            "                  [--connect-rate] [--path /plaintext] [--backend uring|epoll|poll|select]\n"
            "                  [--cpu N] [--json] [--signal-fd FD] [--timeout-s S]\n"
            "A load generator on iomux's Proactor API (multishot receives into the loop's buffer pool).\n"
            "  --proto echo       a request is --size pattern bytes (default 64), the response the same bytes\n"
            "  --proto http       a request is GET <path> HTTP/1.1; a response needs Content-Length; not 2xx\n"
            "                     counts as a status error\n"
            "  --conns C          connections (default 100)\n"
            "  --pipeline N       closed loop: N requests in one send, the next N when all N answered (default 1)\n"
            "  --rate R           open loop: R requests/s in total, evenly spread over the connections, each\n"
            "                     sent when due and its latency counted from when it was due\n"
            "  --requests N       stop after exactly N responses (no warm-up)\n"
            "  --warmup S         seconds before the measured period (default 1); --duration S: its length\n"
            "                     (default 10; fractions allowed)\n"
            "  --idle N           N idle connections (each after one exchange), held by child processes\n"
            "  --connect-rate     a new connection per request, --conns of them in parallel\n"
            "  --backend B        iomux backend (default: uring, else epoll)\n"
            "  --cpu N            pin to CPU N\n"
            "  --json             one line of JSON instead of text\n"
            "  --signal-fd FD     write 'b' to FD when the measured period begins, 'e' when it ends\n"
            "  --timeout-s S      give up (exit 1) after S seconds (default duration + warmup + 30)\n"
            "Exit: 0 the run completed (errors are reported), 1 it could not run, 2 bad command line.\n");
}

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bad(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(LOAD_NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (try --help)\n", stderr);
    va_end(ap);
    exit(2);
}

static long long int_arg(const char *name, const char *v, long long lo, long long hi) {
    char *end;
    long long x;
    errno = 0;
    x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi)
        bad("--%s needs a whole number in [%lld, %lld], not '%s'", name, lo, hi, v ? v : "");
    return x;
}

static double num_arg(const char *name, const char *v, double lo, double hi) {
    char *end;
    double x;
    errno = 0;
    x = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !isfinite(x) || x < lo || x > hi)
        bad("--%s needs a number in [%g, %g], not '%s'", name, lo, hi, v ? v : "");
    return x;
}

/* Options that take no value. 1 if a was one. */
static int flag_opt(load_opts *o, const char *a) {
    if (strcmp(a, "--connect-rate") == 0) o->connect_rate = 1;
    else if (strcmp(a, "--json") == 0) o->json = 1;
    else return 0;
    return 1;
}

static void backend_opt(load_opts *o, const char *v) {
    if (!v || iomux_backend_parse(v, &o->backend) < 0)
        bad("--backend must be one of: %s (not '%s')", iomux_backend_names(), v ? v : "");
    if (!iomux_backend_available(o->backend)) bad("backend '%s' is not in this build", v);
}

/* One option with a value; 0 if the name is unknown. */
static int value_opt(load_opts *o, const char *a, const char *v) {
    if (strcmp(a, "--port") == 0) o->port = (int)int_arg("port", v, 1, 65535);
    else if (strcmp(a, "--host") == 0) o->host = v ? v : "";
    else if (strcmp(a, "--proto") == 0) {
        if (v && strcmp(v, "echo") == 0) o->proto = PROTO_ECHO;
        else if (v && strcmp(v, "http") == 0) o->proto = PROTO_HTTP;
        else bad("--proto must be echo or http, not '%s'", v ? v : "");
    } else if (strcmp(a, "--conns") == 0) o->conns = (long)int_arg("conns", v, 0, 1000000);
    else if (strcmp(a, "--duration") == 0) o->duration = num_arg("duration", v, 0.001, 1e6);
    else if (strcmp(a, "--warmup") == 0) o->warmup = num_arg("warmup", v, 0, 1e6);
    else if (strcmp(a, "--size") == 0) o->size = (long)int_arg("size", v, 1, 64 << 20);
    else if (strcmp(a, "--pipeline") == 0) o->pipeline = (long)int_arg("pipeline", v, 1, 1024);
    else if (strcmp(a, "--rate") == 0) o->rate = num_arg("rate", v, 0.001, 1e9);
    else if (strcmp(a, "--requests") == 0) o->requests = int_arg("requests", v, 1, 1000000000000LL);
    else if (strcmp(a, "--idle") == 0) o->idle = (long)int_arg("idle", v, 0, 1000000);
    else if (strcmp(a, "--path") == 0) o->path = v ? v : "";
    else if (strcmp(a, "--backend") == 0) backend_opt(o, v);
    else if (strcmp(a, "--cpu") == 0) o->cpu = (int)int_arg("cpu", v, 0, 4095);
    else if (strcmp(a, "--signal-fd") == 0) o->signal_fd = (int)int_arg("signal-fd", v, 0, 1 << 20);
    else if (strcmp(a, "--timeout-s") == 0) o->timeout_s = num_arg("timeout-s", v, 0.001, 1e7);
    else return 0;
    return 1;
}

/* The combinations that make no sense, and the address. */
static void check(load_opts *o, int timeout_given) {
    if (o->port < 0) bad("--port is required");
    if (o->conns == 0 && o->idle == 0) bad("--conns 0 needs --idle N (it only holds idle connections)");
    if (o->conns == 0 && (o->requests || o->rate > 0 || o->connect_rate))
        bad("--conns 0 holds idle connections only: no --requests, --rate or --connect-rate");
    if (o->rate > 0 && o->connect_rate) bad("--rate and --connect-rate cannot be combined");
    if (o->pipeline > 1 && (o->rate > 0 || o->connect_rate))
        bad("--pipeline is for the closed loop: not with --rate or --connect-rate");
    if (o->path[0] != '/' || strpbrk(o->path, " \r\n")) bad("--path must start with '/' and hold no space");
    if (strpbrk(o->host, " \r\n") || !*o->host) bad("--host must be an IPv4 address");
    if (o->signal_fd >= 0 && fcntl(o->signal_fd, F_GETFD) < 0) bad("--signal-fd %d is not an open fd", o->signal_fd);
    memset(&o->addr, 0, sizeof(o->addr));
    o->addr.sin_family = AF_INET;
    o->addr.sin_port = htons((uint16_t)o->port);
    if (strcmp(o->host, "localhost") == 0) o->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, o->host, &o->addr.sin_addr) != 1)
        bad("--host '%s' is not a numeric IPv4 address", o->host);
    if (!timeout_given) o->timeout_s = o->duration + o->warmup + 30;
    if (o->requests) o->warmup = 0; /* counts must be exact: every response is measured */
}

void load_parse(int argc, char **argv, load_opts *o) {
    int i, timeout_given = 0;
    *o = (load_opts){.host = "127.0.0.1", .port = -1, .proto = PROTO_ECHO, .conns = 100, .duration = 10,
                     .warmup = 1, .size = 64, .pipeline = 1, .path = "/plaintext",
                     .backend = IOMUX_BACKEND_AUTO, .cpu = -1, .signal_fd = -1};
    for (i = 1; i < argc; i++) {
        char *a = argv[i], *eq = NULL;
        const char *v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (flag_opt(o, a)) continue;
        if (strncmp(a, "--", 2) == 0 && (eq = strchr(a, '='))) *eq = '\0'; /* --opt=value */
        v = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (!value_opt(o, a, v)) bad("unknown option '%s'", a);
        if (strcmp(a, "--timeout-s") == 0) timeout_given = 1;
        if (!eq) i++;
    }
    check(o, timeout_given);
}
