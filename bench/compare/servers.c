/* The servers iomux-compare measures, and starting one pinned to the
 * server CPU. iomux's own (iomux-echo, iomux-httpd) in every model, the
 * peers (bench/peers: raw epoll, raw liburing, libuv, libevent, libev echo
 * servers) and nginx for HTTP. A server that is not built or not installed
 * is listed with the reason, never silently dropped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compare.h"

#define ECHO "apps/echo/iomux-echo"
#define HTTPD "apps/httpd/iomux-httpd"

const cmp_server cmp_echo_servers[] = {
    {"select", "select", ECHO, {"--model", "select"}, 0, 0},
    {"poll", "poll", ECHO, {"--model", "poll"}, 0, 0},
    {"epoll", "epoll LT", ECHO, {"--model", "epoll"}, 0, 0},
    {"epoll-et", "epoll ET", ECHO, {"--model", "epoll-et"}, 0, 0},
    {"epoll-proactor", "epoll, emulated Proactor", ECHO, {"--model", "epoll", "--api", "proactor"}, 0, 0},
    {"uring", "uring (Proactor)", ECHO, {"--model", "uring"}, 0, 0},
    {"uring-poll", "uring-poll (Reactor)", ECHO, {"--model", "uring-poll"}, 0, 0},
    {"threads", "threads (blocking)", ECHO, {"--model", "threads"}, 1, 0},
    {"prefork", "prefork (blocking)", ECHO, {"--model", "prefork"}, 1, 0},
    {"raw-epoll", "peer: raw epoll", "bench/peers/iomux-peer-epoll", {NULL}, 0, 1},
    {"raw-uring", "peer: raw liburing", "bench/peers/iomux-peer-uring", {NULL}, 0, 1},
    {"libuv", "peer: libuv", "bench/peers/iomux-peer-libuv", {NULL}, 0, 1},
    {"libevent", "peer: libevent", "bench/peers/iomux-peer-libevent", {NULL}, 0, 1},
    {"libev", "peer: libev", "bench/peers/iomux-peer-libev", {NULL}, 0, 1},
};
const int cmp_n_echo_servers = (int)(sizeof(cmp_echo_servers) / sizeof(cmp_echo_servers[0]));

const cmp_server cmp_http_servers[] = {
    {"select", "select", HTTPD, {"--model", "select"}, 0, 0},
    {"poll", "poll", HTTPD, {"--model", "poll"}, 0, 0},
    {"epoll", "epoll LT", HTTPD, {"--model", "epoll"}, 0, 0},
    {"epoll-et", "epoll ET", HTTPD, {"--model", "epoll-et"}, 0, 0},
    {"uring", "uring (Proactor)", HTTPD, {"--model", "uring"}, 0, 0},
    {"uring-poll", "uring-poll (Reactor)", HTTPD, {"--model", "uring-poll"}, 0, 0},
    {"threads", "threads (blocking)", HTTPD, {"--model", "threads"}, 1, 0},
    {"prefork", "prefork (blocking)", HTTPD, {"--model", "prefork"}, 1, 0},
    {"nginx", "nginx", "nginx", {NULL}, 0, 1},
};
const int cmp_n_http_servers = (int)(sizeof(cmp_http_servers) / sizeof(cmp_http_servers[0]));

const cmp_server *cmp_find_server(const cmp_server *list, int n, const char *key) {
    int i;
    for (i = 0; i < n; i++)
        if (strcmp(list[i].key, key) == 0) return &list[i];
    return NULL;
}

const char *cmp_server_missing(const cmp_server *s, char *why, size_t len) {
    char path[600];
    why[0] = '\0';
    if (strcmp(s->bin, "nginx") == 0) {
        if (system("command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx") != 0)
            snprintf(why, len, "nginx is not installed (Debian: nginx-light or nginx)");
        return why;
    }
    snprintf(path, sizeof(path), "%s/%s", g_opt.bindir, s->bin);
    if (access(path, X_OK) != 0)
        snprintf(why, len, "%s is not built%s", s->bin,
                 s->peer ? " (its library is not installed: see bench/peers/CMakeLists.txt)" : "");
    return why;
}

/* argv for an iomux app or a peer; `processes` is prefork's worker count. */
static int build_argv(const cmp_server *s, int processes, char *path, size_t plen, char **argv, char *nbuf) {
    int n = 0, i;
    snprintf(path, plen, "%s/%s", g_opt.bindir, s->bin);
    argv[n++] = path;
    for (i = 0; s->args[i]; i++) argv[n++] = (char *)s->args[i];
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    if (strcmp(s->key, "prefork") == 0) {
        sprintf(nbuf, "%d", processes);
        argv[n++] = "--processes";
        argv[n++] = nbuf;
    }
    argv[n] = NULL;
    return n;
}

void cmp_server_cmdline(const cmp_server *s, cmp_proto proto, int processes, char *buf, size_t len) {
    char path[600], nbuf[16], *argv[24];
    size_t off;
    int i;
    (void)proto;
    if (strcmp(s->bin, "nginx") == 0) {
        snprintf(buf, len, "taskset -c %d nginx -c bench/http/nginx.conf (@PORT@, @DIR@ filled in)", g_opt.server_cpu);
        return;
    }
    build_argv(s, processes, path, sizeof(path), argv, nbuf);
    if (g_opt.server_cpu >= 0) off = (size_t)snprintf(buf, len, "taskset -c %d %s", g_opt.server_cpu, s->bin);
    else off = (size_t)snprintf(buf, len, "%s", s->bin);
    for (i = 1; argv[i] && off < len; i++) off += (size_t)snprintf(buf + off, len - off, " %s", argv[i]);
}

/* nginx from bench/http/nginx.conf with its @PORT@ and @DIR@ filled in. */
static int start_nginx(cmp_running *r, const char *log) {
    char src[600], conf[300], cmd[1500];
    char *argv[] = {"nginx", "-p", g_opt.tmpdir, "-e", NULL, "-c", conf, NULL};
    char errlog[300];
    r->port = cmp_free_port();
    snprintf(src, sizeof(src), "%s/bench/http/nginx.conf", g_opt.srcdir);
    snprintf(conf, sizeof(conf), "%s/nginx.conf", g_opt.tmpdir);
    snprintf(errlog, sizeof(errlog), "%s/nginx-error.log", g_opt.tmpdir);
    argv[4] = errlog;
    snprintf(cmd, sizeof(cmd), "sed 's|@PORT@|%d|g; s|@DIR@|%s|g' '%s' > '%s'", r->port, g_opt.tmpdir, src, conf);
    if (r->port < 0 || system(cmd) != 0) return -EIO;
    if (access("/usr/sbin/nginx", X_OK) == 0) argv[0] = "/usr/sbin/nginx";
    if (cmp_spawn(&r->child, argv, g_opt.server_cpu, log, -1) < 0) return -EIO;
    return cmp_wait_connect(r->port, 10);
}

int cmp_server_start(cmp_running *r, const cmp_server *s, cmp_proto proto, int processes) {
    char path[600], nbuf[16], log[300], *argv[24];
    memset(r, 0, sizeof(*r));
    r->def = s;
    snprintf(log, sizeof(log), "%s/server-%s-%s.log", g_opt.tmpdir, proto == CMP_HTTP ? "http" : "echo", s->key);
    unlink(log);
    if (strcmp(s->bin, "nginx") == 0) {
        if (start_nginx(r, log) < 0) {
            cmp_server_stop(r);
            return -EIO;
        }
        return 0;
    }
    build_argv(s, processes, path, sizeof(path), argv, nbuf);
    if (cmp_spawn(&r->child, argv, g_opt.server_cpu, log, -1) < 0) return -EIO;
    r->port = cmp_wait_port(&r->child, 20);
    if (r->port <= 0) {
        cmp_server_stop(r);
        return -EIO;
    }
    return 0;
}

void cmp_server_stop(cmp_running *r) {
    cmp_stop(&r->child, 8);
}
