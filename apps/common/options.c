/* The command line: the runner's options plus the app's own, --help, and
 * the checks that give a bad command line a clear message and exit 2. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "port.h"

/* What the platform has: Windows runs poll (WSAPoll) and iocp, the latter
 * Proactor-only (its backend refuses watchers); no signals there. */
#ifdef _WIN32
#define DEFAULT_MODEL APP_MODEL_IOCP
#define PROACTOR_ONLY(m) ((m) == APP_MODEL_IOCP)
#define MODEL_HELP "poll|iocp (default iocp)"
#define API_HELP "reactor|proactor (default: proactor on iocp, reactor on poll)"
#define DRAIN_HELP "on Ctrl-C, close connections still busy after MS (default 5000)"
#define MODELS_TEXT                                                                                       \
    "event models: poll (WSAPoll: reactor or proactor) and iocp (I/O completion port:\n"                   \
    "proactor only) run --threads loops (more than one needs --balance acceptor: no\n"                     \
    "SO_REUSEPORT on Windows).\n"                                                                          \
    "--model decides the backend ($IOMUX_BACKEND is not used); --offload runs on each\n"                  \
    "loop's work pool ($IOMUX_THREADS threads, default 4).\n"                                             \
    "Ctrl-C / Ctrl-Break drain: stop accepting, finish what is in flight, close idle\n"                   \
    "connections, reset the rest after --drain-ms, exit 0. Exit codes: 0, 1 (cannot\n"                    \
    "start), 2 (bad command line).\n"
#else
#define DEFAULT_MODEL APP_MODEL_EPOLL
#define PROACTOR_ONLY(m) 0
#define MODEL_HELP "select|poll|epoll|epoll-et|uring|uring-poll|threads|prefork (default epoll)"
#define API_HELP "reactor|proactor (default: proactor on uring, reactor elsewhere)"
#define DRAIN_HELP "on SIGINT/SIGTERM, close connections still busy after MS (default 5000)"
#define MODELS_TEXT                                                                                       \
    "event models (select, poll, epoll, epoll-et, uring, uring-poll) run --threads loops;\n"               \
    "epoll-et and uring-poll are reactor-only; threads and prefork are blocking I/O.\n"                    \
    "--model decides the backend ($IOMUX_BACKEND is not used); --offload runs on each\n"                  \
    "loop's work pool ($IOMUX_THREADS threads, default 4).\n"                                             \
    "SIGINT/SIGTERM drain: stop accepting, finish what is in flight, close idle\n"                        \
    "connections, reset the rest after --drain-ms, exit 0. Exit codes: 0, 1 (cannot\n"                    \
    "start, e.g. a backend the system refuses), 2 (bad command line).\n"
#endif

enum { OPT_MODEL, OPT_API, OPT_THREADS, OPT_BALANCE, OPT_PROCESSES, OPT_WORK_US, OPT_OFFLOAD, OPT_BIND,
       OPT_PORT, OPT_DRAIN_MS, OPT_DRAIN_IDLE, OPT_COUNT };

/* Where the common options land while parsing. */
typedef struct parsed {
    app_options *o;
    unsigned port;
    int seen[OPT_COUNT];
    char port_help[64];
} parsed;

static int parse_model(const char *v, void *dest, char *err, size_t n) {
    char list[128] = "";
    unsigned m;
    if (app_model_parse(v, dest) == 0 && app_model_available(*(app_model *)dest)) return 0;
    for (m = 0; m < APP_MODEL_COUNT; m++) {
        if (!app_model_available((app_model)m)) continue;
        if (list[0]) strncat(list, " ", sizeof(list) - strlen(list) - 1);
        strncat(list, app_model_name((app_model)m), sizeof(list) - strlen(list) - 1);
    }
    snprintf(err, n, "unknown model '%s' (models: %s)", v, list);
    return -1;
}

static int parse_api(const char *v, void *dest, char *err, size_t n) {
    if (app_api_parse(v, dest) == 0 && *(app_api *)dest != APP_API_BLOCKING) return 0;
    snprintf(err, n, "unknown API '%s' (reactor or proactor)", v);
    return -1;
}

static int parse_balance(const char *v, void *dest, char *err, size_t n) {
    if (app_balance_parse(v, dest) == 0) return 0;
    snprintf(err, n, "unknown balance '%s' (reuseport or acceptor)", v);
    return -1;
}

/* The rule of iomux_listen: a numeric IPv4 or IPv6 address, "[v6]" too. */
static int parse_bind(const char *v, void *dest, char *err, size_t n) {
    unsigned char a[16];
    char v6[64];
    size_t len = strlen(v);
    if (len >= 2 && v[0] == '[' && v[len - 1] == ']' && len - 2 < sizeof(v6)) {
        memcpy(v6, v + 1, len - 2);
        v6[len - 2] = '\0';
        if (inet_pton(AF_INET6, v6, a) == 1) goto ok;
    }
    if (inet_pton(AF_INET, v, a) == 1 || inet_pton(AF_INET6, v, a) == 1) goto ok;
    snprintf(err, n, "'%s' is not a numeric IPv4 or IPv6 address", v);
    return -1;
ok:
    *(const char **)dest = v;
    return 0;
}

static void common_options(const app_spec *spec, parsed *p, app_option t[OPT_COUNT + 1]) {
    app_options *o = p->o;
    snprintf(p->port_help, sizeof(p->port_help), "TCP port, 0: any free one (default %d)", spec->default_port);
    const app_option opts[OPT_COUNT + 1] = {
        [OPT_MODEL] = {"model", APP_OPT_FUNC, &o->model, 0, 0, "MODEL", MODEL_HELP, parse_model},
        [OPT_API] = {"api", APP_OPT_FUNC, &o->api, 0, 0, "API", API_HELP, parse_api},
        [OPT_THREADS] = {"threads", APP_OPT_UINT, &o->threads, 1, 256, "N",
                         "event loops, one per thread (default 1)", NULL},
        [OPT_BALANCE] = {"balance", APP_OPT_FUNC, &o->balance, 0, 0, "HOW",
                         "reuseport: a listener per loop (default); acceptor: one more loop "
                         "accepts for them",
                         parse_balance},
        [OPT_PROCESSES] = {"processes", APP_OPT_UINT, &o->processes, 1, 4096, "N",
                           "prefork: worker processes (default 64)", NULL},
        [OPT_WORK_US] = {"work-us", APP_OPT_UINT, &o->work_us, 0, 10000000, "US",
                         "simulated work per message received, microseconds (default 0)", NULL},
        [OPT_OFFLOAD] = {"offload", APP_OPT_FLAG, &o->offload, 0, 0, NULL,
                         "do that work on the loop's thread pool instead of busy-waiting inline", NULL},
        [OPT_BIND] = {"bind", APP_OPT_FUNC, &o->bind, 0, 0, "HOST",
                      "numeric IPv4/IPv6 address to listen on (default 127.0.0.1)", parse_bind},
        [OPT_PORT] = {"port", APP_OPT_UINT, &p->port, 0, 65535, "PORT", p->port_help, NULL},
        [OPT_DRAIN_MS] = {"drain-ms", APP_OPT_UINT, &o->drain_ms, 0, 3600000, "MS",
                          DRAIN_HELP, NULL},
        [OPT_DRAIN_IDLE] = {"drain-idle-ms", APP_OPT_UINT, &o->drain_idle_ms, 1, 60000, "MS",
                            "while draining, a connection quiet for MS is idle and closed (default 100;\n"
                            "                         iomux-httpd's event models close one between requests at once)", NULL},
        [OPT_COUNT] = {NULL, APP_OPT_FLAG, NULL, 0, 0, NULL, NULL, NULL},
    };
    memcpy(t, opts, sizeof(opts));
}

static void print_table(FILE *out, const app_option *t) {
    char left[64];
    for (; t && t->name; t++) {
        if (t->type == APP_OPT_FLAG) snprintf(left, sizeof(left), "--%s", t->name);
        else snprintf(left, sizeof(left), "--%s %s", t->name, t->metavar ? t->metavar : "VALUE");
        fprintf(out, "  %-22s %s\n", left, t->help ? t->help : "");
    }
}

void app_usage(const app_spec *spec, FILE *out) {
    app_options o;
    parsed p = {.o = &o};
    app_option t[OPT_COUNT + 1];
    common_options(spec, &p, t);
    fprintf(out, "usage: %s [options]\n%s\n\noptions:\n", spec->name, spec->summary ? spec->summary : "");
    print_table(out, t);
    print_table(out, spec->options);
    fprintf(out, "  %-22s %s\n", "--help", "print this and exit");
    fprintf(out, "\n" MODELS_TEXT);
}

/* Prints "<name>: <message> (try --help)" and returns 2. */
static int usage_error(const app_spec *spec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const app_spec *spec, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", spec->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try --help)\n");
    return 2;
}

static int parse_uint(const char *v, unsigned min, unsigned max, unsigned *out) {
    char *end;
    unsigned long x;
    if (*v < '0' || *v > '9') return -1;
    errno = 0;
    x = strtoul(v, &end, 10);
    if (errno || *end || x < min || x > max) return -1;
    *out = (unsigned)x;
    return 0;
}

/* Stores value (NULL for a flag) into t's dest. Returns 0 or 2. */
static int store(const app_spec *spec, const app_option *t, const char *value) {
    char err[256];
    switch (t->type) {
    case APP_OPT_FLAG: *(int *)t->dest = 1; return 0;
    case APP_OPT_STRING: *(const char **)t->dest = value; return 0;
    case APP_OPT_UINT:
        if (parse_uint(value, t->min, t->max, t->dest) == 0) return 0;
        return usage_error(spec, "--%s: '%s' is not a whole number in %u..%u", t->name, value, t->min, t->max);
    case APP_OPT_FUNC:
        err[0] = '\0';
        if (t->parse(value, t->dest, err, sizeof(err)) == 0) return 0;
        return usage_error(spec, "--%s: %s", t->name, err[0] ? err : "bad value");
    }
    return 2;
}

static const app_option *find(const app_option *t, const char *name, size_t len) {
    for (; t && t->name; t++)
        if (strlen(t->name) == len && strncmp(t->name, name, len) == 0) return t;
    return NULL;
}

/* Parses argv[*i] (and maybe its value); returns 0, 1 (--help) or 2. */
static int parse_one(const app_spec *spec, parsed *p, const app_option *common, int argc, char **argv, int *i) {
    const char *arg = argv[*i], *name = arg + 2, *eq, *value = NULL;
    const app_option *t;
    size_t len;
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) return 1;
    if (strncmp(arg, "--", 2) != 0 || !arg[2]) return usage_error(spec, "unexpected argument '%s'", arg);
    eq = strchr(name, '=');
    len = eq ? (size_t)(eq - name) : strlen(name);
    t = find(common, name, len);
    if (t) p->seen[t - common] = 1;
    else t = find(spec->options, name, len);
    if (!t) return usage_error(spec, "unknown option '%.*s'", (int)len + 2, arg);
    if (t->type == APP_OPT_FLAG) {
        if (eq) return usage_error(spec, "--%s takes no value", t->name);
        return store(spec, t, NULL);
    }
    if (eq) value = eq + 1;
    else if (*i + 1 < argc) value = argv[++*i];
    else return usage_error(spec, "--%s needs a value (%s)", t->name, t->metavar ? t->metavar : "VALUE");
    return store(spec, t, value);
}

static int supports(const app_spec *spec, app_api api) {
    return spec->apis == 0 || (spec->apis & APP_API_BIT(api)) != 0;
}

/* The API: given, or the model's default; 0 or 2. */
static int choose_api(const app_spec *spec, parsed *p) {
    app_options *o = p->o;
    const char *m = app_model_name(o->model);
    int reactor_only = o->model == APP_MODEL_EPOLL_ET || o->model == APP_MODEL_URING_POLL;
    if (!app_model_is_event(o->model)) {
        if (p->seen[OPT_API]) return usage_error(spec, "--api does not apply to --model %s (blocking I/O)", m);
        o->api = APP_API_BLOCKING;
        if (!supports(spec, APP_API_BLOCKING)) return usage_error(spec, "%s has no blocking version for --model %s",
                                                                  spec->name, m);
        return 0;
    }
    if (!p->seen[OPT_API]) {
        o->api = o->model == APP_MODEL_URING || PROACTOR_ONLY(o->model) ? APP_API_PROACTOR : APP_API_REACTOR;
        if (!supports(spec, o->api) && !reactor_only) o->api = o->api == APP_API_REACTOR ? APP_API_PROACTOR
                                                                                       : APP_API_REACTOR;
    }
    if (PROACTOR_ONLY(o->model) && o->api != APP_API_PROACTOR)
        return usage_error(spec, "--model %s is proactor-only (use --model poll for the reactor)", m);
    if (reactor_only && o->api != APP_API_REACTOR)
        return usage_error(spec, "--model %s is reactor-only (use --model %s for the proactor)", m,
                           o->model == APP_MODEL_EPOLL_ET ? "epoll" : "uring");
    if (!supports(spec, o->api))
        return usage_error(spec, "%s has no %s version", spec->name, app_api_name(o->api));
    return 0;
}

/* Options that only some models take; 0 or 2. */
static int check_shape(const app_spec *spec, parsed *p) {
    app_options *o = p->o;
    const char *m = app_model_name(o->model);
    if (!app_model_is_event(o->model)) {
        if (p->seen[OPT_THREADS] || p->seen[OPT_BALANCE])
            return usage_error(spec, "--threads and --balance apply to event-loop models, not --model %s", m);
        if (o->offload) return usage_error(spec, "--offload needs an event-loop model, not --model %s", m);
    }
    if (app_model_is_event(o->model) && o->balance == APP_BALANCE_ACCEPTOR && !spec->hooks.conn_start)
        return usage_error(spec, "%s does not support --balance acceptor", spec->name);
    if (p->seen[OPT_PROCESSES] && o->model != APP_MODEL_PREFORK)
        return usage_error(spec, "--processes applies to --model prefork only");
#ifdef _WIN32
    if (o->threads > 1 && o->balance == APP_BALANCE_REUSEPORT)
        return usage_error(spec, "--threads %u needs --balance acceptor on Windows (no SO_REUSEPORT)", o->threads);
#endif
    return 0;
}

static void defaults(const app_spec *spec, app_options *o) {
    memset(o, 0, sizeof(*o));
    o->model = DEFAULT_MODEL;
    o->threads = 1;
    o->balance = APP_BALANCE_REUSEPORT;
    o->processes = 64;
    o->bind = "127.0.0.1";
    o->drain_ms = 5000;
    o->drain_idle_ms = 100;
    o->port = spec->default_port;
}

int app_parse(const app_spec *spec, int argc, char **argv, app_options *o) {
    parsed p;
    app_option common[OPT_COUNT + 1];
    int i, rc;
    app__name = spec->name; /* app_log between app_parse and app_run (an app's own checks) */
    defaults(spec, o);
    memset(&p, 0, sizeof(p));
    p.o = o;
    p.port = (unsigned)o->port;
    common_options(spec, &p, common);
    for (i = 1; i < argc; i++) {
        rc = parse_one(spec, &p, common, argc, argv, &i);
        if (rc == 1) app_usage(spec, stdout);
        if (rc) return rc;
    }
    o->port = (int)p.port;
    if ((rc = choose_api(spec, &p)) || (rc = check_shape(spec, &p))) return rc;
    o->backend = app_model_backend(o->model);
    o->watch_flags = o->model == APP_MODEL_EPOLL_ET ? IOMUX_ET : 0u;
    return 0;
}
