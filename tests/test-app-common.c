/* apps/common (app.h), the frame of the server programs, used the way an
 * app uses it: the option parser with an app's own options of every type,
 * the model -> backend/API mapping and its defaults, an app that supports
 * one API only, and the runner with hooks.listen_start (the app accepts on
 * the loop's listener itself, as iomux_http_server does), drained by
 * SIGTERM in a child process. Not per backend: models are options. */
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <iomux/net.h>

#include "app.h"
#include "harness.h"

/* ---- an app's own options ------------------------------------------------------------ */

static const char *g_root = "/srv";
static unsigned g_timeout = 7;
static int g_verbose, g_level;

static int parse_level(const char *v, void *dest, char *err, size_t n) {
    if (strcmp(v, "low") == 0 || strcmp(v, "high") == 0) {
        *(int *)dest = v[0] == 'h' ? 2 : 1;
        return 0;
    }
    snprintf(err, n, "'%s' is neither low nor high", v);
    return -1;
}

static const app_option extra[] = {
    {"root", APP_OPT_STRING, &g_root, 0, 0, "DIR", "where the files are", NULL},
    {"timeout-ms", APP_OPT_UINT, &g_timeout, 1, 1000, "MS", "a timeout", NULL},
    {"verbose", APP_OPT_FLAG, &g_verbose, 0, 0, NULL, "say more", NULL},
    {"level", APP_OPT_FUNC, &g_level, 0, 0, "L", "low|high", parse_level},
    {NULL, APP_OPT_FLAG, NULL, 0, 0, NULL, NULL, NULL},
};

static void serve_nothing(const app_options *o, void *app, iomux_fd fd) {
    (void)o;
    (void)app;
    (void)fd;
}

static void conn_nothing(app_loop *l, iomux_fd fd) {
    close(fd);
    app_conn_closed(l);
}

static void loop_nothing(app_loop *l) {
    (void)l;
}

static const app_spec all_apis = {
    .name = "test-app", .summary = "a test", .default_port = 8123, .options = extra,
    .hooks = {.conn_start = conn_nothing, .drain = loop_nothing, .abort = loop_nothing, .serve = serve_nothing},
};

/* Parses a NULL-terminated argument list (stderr muted). */
static int parse(const app_spec *spec, app_options *o, const char *const *args) {
    char *argv[32];
    int argc = 0, rc, saved = dup(2), null = open("/dev/null", O_WRONLY);
    argv[argc++] = "test-app";
    while (*args) argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    fflush(stderr);
    dup2(null, 2);
    rc = app_parse(spec, argc, argv, o);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(null);
    return rc;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_parse_extra_options(void) {
    app_options o;
    CHECK_EQ(parse(&all_apis, &o, ARGS("--root", "/tmp", "--timeout-ms=50", "--verbose", "--level", "high",
                                        "--model", "uring", "--port", "0", "--work-us", "20", "--offload")),
             0);
    CHECK(strcmp(g_root, "/tmp") == 0);
    CHECK_EQ(g_timeout, 50);
    CHECK_EQ(g_verbose, 1);
    CHECK_EQ(g_level, 2);
    CHECK_EQ(o.model, APP_MODEL_URING);
    CHECK_EQ(o.api, APP_API_PROACTOR);
    CHECK_EQ(o.backend, IOMUX_BACKEND_URING);
    CHECK_EQ(o.port, 0);
    CHECK_EQ(o.work_us, 20);
    CHECK_EQ(o.offload, 1);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--timeout-ms", "0")), 2);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--timeout-ms", "1001")), 2);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--level", "mid")), 2);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--verbose=1")), 2);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--root")), 2);
}

static void test_defaults_and_models(void) {
    app_options o;
    CHECK_EQ(parse(&all_apis, &o, ARGS("--bind", "::1")), 0);
    CHECK_EQ(o.model, APP_MODEL_EPOLL);
    CHECK_EQ(o.api, APP_API_REACTOR);
    CHECK_EQ(o.backend, IOMUX_BACKEND_EPOLL);
    CHECK_EQ(o.watch_flags, 0);
    CHECK_EQ(o.threads, 1);
    CHECK_EQ(o.balance, APP_BALANCE_REUSEPORT);
    CHECK_EQ(o.port, 8123);
    CHECK_EQ(o.drain_ms, 5000);
    CHECK_EQ(o.drain_idle_ms, 100);
    CHECK(strcmp(o.bind, "::1") == 0);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--model", "epoll-et")), 0);
    CHECK_EQ(o.watch_flags, IOMUX_ET);
    CHECK_EQ(o.backend, IOMUX_BACKEND_EPOLL);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--model", "uring-poll")), 0);
    CHECK_EQ(o.api, APP_API_REACTOR);
    CHECK_EQ(o.backend, IOMUX_BACKEND_URING);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--model", "select", "--api", "proactor")), 0);
    CHECK_EQ(o.backend, IOMUX_BACKEND_SELECT);
    CHECK_EQ(o.api, APP_API_PROACTOR);
    CHECK_EQ(parse(&all_apis, &o, ARGS("--model", "prefork", "--processes", "3")), 0);
    CHECK_EQ(o.api, APP_API_BLOCKING);
    CHECK_EQ(o.processes, 3);
    CHECK(!app_model_is_event(o.model));
    CHECK_EQ(parse(&all_apis, &o, ARGS("--model", "threads")), 0);
    CHECK_EQ(o.api, APP_API_BLOCKING);
    CHECK(strcmp(app_model_name(APP_MODEL_URING_POLL), "uring-poll") == 0);
    CHECK(strcmp(app_api_name(APP_API_PROACTOR), "proactor") == 0);
    CHECK(strcmp(app_balance_name(APP_BALANCE_ACCEPTOR), "acceptor") == 0);
}

/* ---- an app with the proactor only, accepting itself (listen_start) ------------------- */

typedef struct lstate {
    iomux_acceptor acc;
    size_t open;
    int stopped;
} lstate;

static void ec_data(iomux_conn *c, const void *p, size_t n) {
    iomux_conn_write(c, p, n);
}

/* The listener's "connection" ends when it stopped accepting and its
 * connections are gone. */
static void maybe_done(app_loop *l) {
    lstate *st = l->data;
    if (l->draining && st->stopped && st->open == 0) {
        st->stopped = 2;
        app_conn_closed(l);
    }
}

static void ec_close(iomux_conn *c, int reason) {
    app_loop *l = app_loop_of(c->loop);
    lstate *st = l->data;
    (void)reason;
    free(c);
    st->open--;
    maybe_done(l);
}

static const iomux_conn_callbacks ec_cbs = {.on_data = ec_data, .on_close = ec_close};

static void on_fd(iomux_acceptor *a, iomux_fd fd) {
    app_loop *l = a->data;
    lstate *st = l->data;
    iomux_conn *c = malloc(sizeof(*c));
    if (fd < 0) return;
    if (!c || iomux_conn_start(l->loop, c, fd, &ec_cbs, NULL) < 0) {
        free(c);
        close(fd);
        return;
    }
    st->open++;
}

static int l_loop_start(app_loop *l) {
    l->data = calloc(1, sizeof(lstate));
    return l->data ? 0 : -ENOMEM;
}

static void l_loop_stop(app_loop *l) {
    free(l->data);
}

static int l_listen(app_loop *l, iomux_fd lfd) {
    lstate *st = l->data;
    st->acc.data = l;
    return iomux_acceptor_start(l->loop, &st->acc, lfd, on_fd);
}

static void l_stopped(iomux_acceptor *a) {
    app_loop *l = a->data;
    ((lstate *)l->data)->stopped = 1;
    maybe_done(l);
}

/* Closes every connection (they are idle in this test) once accepting ended. */
static void l_drain(app_loop *l) {
    lstate *st = l->data;
    iomux_acceptor_stop(&st->acc, l_stopped);
}

static const app_spec listen_app = {
    .name = "test-listen",
    .summary = "accepts itself",
    .default_port = 0,
    .apis = APP_API_BIT(APP_API_PROACTOR),
    .hooks = {.loop_start = l_loop_start, .loop_stop = l_loop_stop, .listen_start = l_listen,
              .drain = l_drain, .abort = loop_nothing},
};

static void test_one_api_app(void) {
    app_options o;
    CHECK_EQ(parse(&listen_app, &o, ARGS("--model", "epoll")), 0);
    CHECK_EQ(o.api, APP_API_PROACTOR); /* the default, reactor, is not there */
    CHECK_EQ(parse(&listen_app, &o, ARGS("--api", "reactor")), 2);
    CHECK_EQ(parse(&listen_app, &o, ARGS("--model", "epoll-et")), 2);
    CHECK_EQ(parse(&listen_app, &o, ARGS("--model", "threads")), 2);
    CHECK_EQ(parse(&listen_app, &o, ARGS("--threads", "2", "--balance", "acceptor")), 2); /* no conn_start */
}

/* Runs listen_app in a child, echoes through each loop, drains by SIGTERM. */
static void test_listen_start_runs_and_drains(void) {
    int p[2], status, port = 0, fd, i;
    char out[512] = {0}, buf[8];
    size_t len = 0;
    uint64_t end = test_ms() + 10000;
    const char *at;
    pid_t pid;
    CHECK_SYS(pipe(p));
    pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        char *argv[] = {"test-listen", "--port", "0", "--threads", "2", "--drain-ms", "2000", NULL};
        dup2(p[1], 1);
        close(p[0]);
        exit(app_main(&listen_app, 7, argv));
    }
    close(p[1]);
    while (!(at = strstr(out, "listening on ")) || !strchr(at, '\n')) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        ssize_t n;
        if (test_ms() > end || poll(&pf, 1, 100) < 0) FAIL("no ready line: %s", out);
        n = read(p[0], out + len, sizeof(out) - 1 - len);
        if (n == 0) FAIL("the app ended: %s", out);
        if (n > 0) len += (size_t)n;
    }
    CHECK(strstr(out, "(model epoll, api proactor, threads 2)"));
    port = atoi(strchr(strstr(out, "127.0.0.1:"), ':') + 1);
    for (i = 0; i < 20; i++) { /* reuseport spreads them over both loops */
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fd = socket(AF_INET, SOCK_STREAM, 0);
        CHECK_SYS(connect(fd, (struct sockaddr *)&a, sizeof(a)));
        CHECK_EQ(send(fd, "ping", 4, 0), 4);
        CHECK_EQ(recv(fd, buf, 4, MSG_WAITALL), 4);
        CHECK(memcmp(buf, "ping", 4) == 0);
        close(fd);
    }
    usleep(100 * 1000); /* let the loops see the closes */
    CHECK_SYS(kill(pid, SIGTERM));
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (test_ms() > end) {
            kill(pid, SIGKILL);
            FAIL("the app did not exit after SIGTERM");
        }
        usleep(10000);
    }
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    close(p[0]);
}

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    RUN(test_parse_extra_options);
    RUN(test_defaults_and_models);
    RUN(test_one_api_app);
    RUN(test_listen_start_runs_and_drains);
    return 0;
}
