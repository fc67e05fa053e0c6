/* The HTTP/1.1 conformance and smuggling corpus, run against a server in
 * a child process (tests/reliability/conformance/vectors.txt says what a
 * vector is and how it is written).
 *
 *   test-http-conformance IOMUX-HTTPD VECTORS MODEL
 *       starts iomux-httpd in that model (epoll, uring, select, ...) on
 *       127.0.0.1 port 0 with small limits, and for each vector: sends its
 *       bytes in one write on a new connection, reads the responses and
 *       checks their statuses in order; then "close": end of stream follows
 *       with nothing more, "keep": the connection still answers a GET
 *       /json, "open": nothing at all arrives for QUIET_MS. A vector that
 *       closes after a response is sent again with a valid request
 *       pipelined behind it in the same write, which must never be
 *       answered. After every vector, a new connection must get 200 from
 *       GET /plaintext. Prints "N vectors, N passed"; exit 1 if any failed.
 *
 *   test-http-conformance --nginx NGINX VECTORS KNOWN
 *       the differential run: starts nginx (non-daemon, a temporary prefix
 *       and config: /plaintext and /json as iomux-httpd answers them, the
 *       same limits) and sends it every vector the same way, recording what
 *       it does (statuses; closed, kept or left open). Every vector where
 *       nginx differs from the expectation, which the runs above hold
 *       iomux-httpd to, must be listed in KNOWN with a reason; an
 *       unexplained disagreement fails. Exit 77 when nginx is missing.
 *
 * $CONFORMANCE_ONLY=name runs one vector (with its responses printed). */
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "app-server.h"

#define IO_MS 3000      /* any one response, or the close after it */
#define QUIET_MS 300    /* "open": nothing may happen for this long */
#define MAX_VECTORS 512
#define MAX_STATUSES 8

static const char probe_json[] = "GET /json HTTP/1.1\r\nHost: conformance\r\n\r\n";
static const char get_plain[] = "GET /plaintext HTTP/1.1\r\nHost: conformance\r\n\r\n";

enum { CONN_CLOSE, CONN_KEEP, CONN_OPEN };
static const char *const conn_names[] = {"close", "keep", "open"};

typedef struct vector {
    char name[64];
    int line;
    int status[MAX_STATUSES]; /* expected, in order */
    int nstatus;
    int conn;                 /* CONN_* */
    char *bytes;
    size_t len;
} vector;

static vector g_vec[MAX_VECTORS];
static int g_nvec;
static int g_verbose;

/* ---- the corpus file --------------------------------------------------------------- */

typedef test_buf buf;

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The '}' that closes a \{N: opened just before p (repeats nest). */
static const char *matching_brace(const char *p, const char *end) {
    int depth = 1;
    for (; p < end; p++) {
        if (*p == '\\' && p + 1 < end) {
            if (p[1] == '{') depth++;
            p++;
        } else if (*p == '}' && --depth == 0) {
            return p;
        }
    }
    return NULL;
}

/* Decodes the escape notation of s[0, n) into out (see vectors.txt):
 * \r \n \t \0 \s (space) \\ \xHH, and \{N:TEXT} for TEXT N times (TEXT may hold repeats). */
static void unescape(const char *s, size_t n, buf *out, int line) {
    size_t i = 0;
    while (i < n) {
        char c = s[i++];
        if (c != '\\') {
            test_buf_add(out, &c, 1);
            continue;
        }
        if (i >= n) FAIL("vectors line %d: a lone backslash at the end", line);
        c = s[i++];
        switch (c) {
        case 'r': test_buf_add(out, "\r", 1); break;
        case 'n': test_buf_add(out, "\n", 1); break;
        case 't': test_buf_add(out, "\t", 1); break;
        case '0': test_buf_add(out, "", 1); break;
        case 's': test_buf_add(out, " ", 1); break;
        case '\\': test_buf_add(out, "\\", 1); break;
        case 'x': {
            int h = i + 1 < n ? hexval(s[i]) : -1, l = i + 1 < n ? hexval(s[i + 1]) : -1;
            char b;
            if (h < 0 || l < 0) FAIL("vectors line %d: bad \\x escape", line);
            b = (char)(h * 16 + l);
            test_buf_add(out, &b, 1);
            i += 2;
            break;
        }
        case '{': {
            char *colon;
            const char *close;
            long times = strtol(s + i, &colon, 10);
            buf inner = {0};
            if (*colon != ':' || times < 1 || times > 1000000) FAIL("vectors line %d: bad \\{N: repeat", line);
            close = matching_brace(colon + 1, s + n);
            if (!close) FAIL("vectors line %d: \\{ without }", line);
            unescape(colon + 1, (size_t)(close - colon - 1), &inner, line);
            for (long k = 0; k < times; k++) test_buf_add(out, inner.p ? inner.p : "", inner.len);
            free(inner.p);
            i = (size_t)(close - s) + 1;
            break;
        }
        default: FAIL("vectors line %d: unknown escape \\%c", line, c);
        }
    }
}

static char *trim(char *s) {
    char *e;
    while (*s == ' ' || *s == '\t') s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) e--;
    *e = '\0';
    return s;
}

/* "name | statuses | conn | bytes": the bytes are the rest of the line. */
static void parse_vector(char *line, int lineno) {
    vector *v = &g_vec[g_nvec];
    char *f[4], *p = line, *tok, *save;
    buf b = {0};
    for (int k = 0; k < 3; k++) {
        char *bar = strstr(p, " | ");
        if (!bar) FAIL("vectors line %d: expected 'name | statuses | conn | bytes'", lineno);
        *bar = '\0';
        f[k] = trim(p);
        p = bar + 3;
    }
    f[3] = p;
    p[strcspn(p, "\r\n")] = '\0';
    if (g_nvec == MAX_VECTORS) FAIL("more than %d vectors", MAX_VECTORS);
    memset(v, 0, sizeof(*v));
    v->line = lineno;
    if (strlen(f[0]) >= sizeof(v->name)) FAIL("vectors line %d: name too long", lineno);
    strcpy(v->name, f[0]);
    for (int k = 0; k < g_nvec; k++)
        if (strcmp(g_vec[k].name, v->name) == 0) FAIL("vectors line %d: duplicate name %s", lineno, v->name);
    if (strcmp(f[1], "none") != 0)
        for (tok = strtok_r(f[1], " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            int st = atoi(tok);
            if (st < 100 || st > 599 || v->nstatus == MAX_STATUSES) FAIL("vectors line %d: bad statuses", lineno);
            v->status[v->nstatus++] = st;
        }
    if (strcmp(f[2], "close") == 0) v->conn = CONN_CLOSE;
    else if (strcmp(f[2], "keep") == 0) v->conn = CONN_KEEP;
    else if (strcmp(f[2], "open") == 0) v->conn = CONN_OPEN;
    else FAIL("vectors line %d: connection must be close, keep or open", lineno);
    unescape(f[3], strlen(f[3]), &b, lineno);
    if (b.len == 0) FAIL("vectors line %d: no bytes", lineno);
    v->bytes = b.p;
    v->len = b.len;
    g_nvec++;
}

static void load_vectors(const char *path) {
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    if (!f) FAIL("%s: %s", path, strerror(errno));
    while (getline(&line, &cap, f) > 0) {
        char *t = trim(line);
        lineno++;
        if (*t == '\0' || *t == '#') continue;
        parse_vector(line, lineno);
    }
    free(line);
    fclose(f);
    if (g_nvec == 0) FAIL("%s: no vectors", path);
}

/* ---- a client connection ----------------------------------------------------------- */

typedef struct client {
    int fd;
    buf in;
    size_t off;     /* parsed up to here */
    int eof;        /* end of stream, or reset */
} client;

static void client_open(client *c, int port) {
    int one = 1;
    memset(c, 0, sizeof(*c));
    c->fd = connect_to(port, 0);
    if (c->fd < 0) FAIL("connect to port %d: %s", port, strerror(-c->fd));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void client_close(client *c) {
    close(c->fd);
    free(c->in.p);
}

/* Sends everything; a server that closes early (it answered before the
 * body) may refuse the rest: that is not an error here. */
static void client_send(client *c, const void *p, size_t n) {
    const char *q = p;
    while (n > 0) {
        ssize_t w = send(c->fd, q, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) return;
        if (w < 0) FAIL("send: %s", strerror(errno));
        q += w;
        n -= (size_t)w;
    }
}

/* One read, waiting up to ms: 1 bytes, 0 end of stream, -1 nothing. */
static int client_fill(client *c, int ms) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    char tmp[65536];
    ssize_t n;
    if (c->eof) return 0;
    if (poll(&p, 1, ms) == 0) return -1;
    n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
    if (n <= 0) {
        c->eof = 1;
        return 0;
    }
    test_buf_add(&c->in, tmp, (size_t)n);
    return 1;
}

/* A response at in[off]: its status (0: not a status line, which takes
 * all that is left), or -1 if incomplete. */
static int parse_response(client *c) {
    const char *s = c->in.p + c->off, *end = c->in.p + c->in.len, *hdr_end, *cl;
    size_t avail = (size_t)(end - s), body = 0;
    int status;
    if (avail < 12) return avail >= 5 && memcmp(s, "HTTP/", 5) != 0 ? 0 : -1;
    if (memcmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ') {
        c->off = c->in.len;
        return 0;
    }
    if (!(hdr_end = memmem(s, avail, "\r\n\r\n", 4))) return -1;
    status = atoi(s + 9);
    cl = memmem(s, (size_t)(hdr_end - s), "\r\nContent-Length:", 17);
    if (!cl) cl = memmem(s, (size_t)(hdr_end - s), "\r\ncontent-length:", 17);
    if (cl && status >= 200 && status != 204 && status != 304) body = strtoul(cl + 17, NULL, 10);
    if ((size_t)(end - hdr_end - 4) < body) return -1;
    if (g_verbose) fprintf(stderr, "   < %.*s\n", (int)(strchr(s, '\r') - s), s);
    c->off += (size_t)(hdr_end + 4 - s) + body;
    return status;
}

/* The next response's status, waiting up to ms: -1 if the stream ended
 * (or nothing came in time) first. */
static int next_status(client *c, int ms) {
    uint64_t end = test_ms() + (uint64_t)ms;
    for (;;) {
        int st = c->off < c->in.len ? parse_response(c) : -1;
        if (st >= 0) return st;
        if (test_ms() > end || client_fill(c, (int)(end - test_ms()) + 1) == 0) return -1;
    }
}

/* Waits up to ms for end of stream: 1 at end of stream with nothing
 * more, 0 if bytes came, -1 if nothing happened. */
static int wait_close(client *c, int ms) {
    uint64_t end = test_ms() + (uint64_t)ms;
    for (;;) {
        if (c->off < c->in.len) return 0;
        if (c->eof) return 1;
        if (test_ms() > end) return -1;
        client_fill(c, (int)(end - test_ms()) + 1);
    }
}

/* ---- one vector against the expectation ------------------------------------------------ */

static char g_why[256];
static int g_pipelined; /* g_why happened with a request pipelined behind */

#define MISMATCH(...) (snprintf(g_why, sizeof(g_why), __VA_ARGS__), 0)

/* Sends the vector (plus extra, if any) on a new connection: 1 if the
 * server did what the vector says, else 0 with g_why. */
static int check_once(const vector *v, int port, const char *extra) {
    client c;
    int ok = 1;
    buf out = {0};
    test_buf_add(&out, v->bytes, v->len);
    if (extra) test_buf_add(&out, extra, strlen(extra));
    client_open(&c, port);
    client_send(&c, out.p, out.len);
    free(out.p);
    for (int k = 0; ok && k < v->nstatus; k++) {
        int st = next_status(&c, IO_MS);
        if (st != v->status[k])
            ok = st < 0 ? MISMATCH("response %d: none (%s)", k + 1, c.eof ? "closed" : "timeout")
                        : MISMATCH("response %d: status %d, expected %d", k + 1, st, v->status[k]);
    }
    if (ok && v->conn == CONN_CLOSE) {
        int r = wait_close(&c, IO_MS);
        if (r == 0) ok = MISMATCH("more after the expected responses%s", extra ? " (the pipelined request?)" : "");
        else if (r < 0) ok = MISMATCH("not closed within %d ms", IO_MS);
    } else if (ok && v->conn == CONN_OPEN) {
        int r = wait_close(&c, QUIET_MS);
        if (r >= 0) ok = MISMATCH("%s within %d ms, expected nothing", r ? "closed" : "bytes", QUIET_MS);
    } else if (ok) {
        int st;
        client_send(&c, probe_json, sizeof(probe_json) - 1);
        st = next_status(&c, IO_MS);
        if (st != 200) ok = MISMATCH("kept-alive connection: GET /json got %d", st);
        else if (c.in.len < 1 || c.in.p[c.in.len - 1] != '}')
            ok = MISMATCH("kept-alive connection: the answer to GET /json is not the last thing received");
    }
    client_close(&c);
    return ok;
}

/* A fresh connection still gets GET /plaintext answered. */
static int check_alive(int port) {
    client c;
    int st;
    client_open(&c, port);
    client_send(&c, get_plain, sizeof(get_plain) - 1);
    st = next_status(&c, IO_MS);
    client_close(&c);
    return st == 200 ? 1 : MISMATCH("afterwards, a new connection's GET /plaintext got %d", st);
}

static int check_vector(const vector *v, int port) {
    if (!check_once(v, port, NULL)) return 0;
    if (v->conn == CONN_CLOSE && v->nstatus > 0 && !check_once(v, port, get_plain)) {
        g_pipelined = 1;
        return 0;
    }
    return check_alive(port);
}

/* ---- the model run ------------------------------------------------------------------------- */

typedef struct model {
    const char *name;
    const char *args[6];
    int uring;
} model;

static const model models[] = {
    {"epoll", {"--model", "epoll"}, 0},
    {"epoll-et", {"--model", "epoll-et"}, 0},
    {"epoll-proactor", {"--model", "epoll", "--api", "proactor"}, 0},
    {"select", {"--model", "select"}, 0},
    {"poll", {"--model", "poll"}, 0},
    {"uring", {"--model", "uring"}, 1},
    {"uring-reactor", {"--model", "uring", "--api", "reactor"}, 1},
    {"threads", {"--model", "threads"}, 0},
};

static int run_vectors(int port, int (*one)(const vector *, int)) {
    const char *only = getenv("CONFORMANCE_ONLY");
    int ran = 0, passed = 0;
    for (int i = 0; i < g_nvec; i++) {
        const vector *v = &g_vec[i];
        if (only && strcmp(only, v->name) != 0) continue;
        ran++;
        g_pipelined = 0;
        if (one(v, port)) passed++;
        else
            fprintf(stderr, "FAIL %s (vectors line %d): %s%s\n", v->name, v->line,
                    g_pipelined ? "with a request pipelined behind: " : "", g_why);
    }
    if (only && !ran) FAIL("no vector named %s", only);
    return ran - passed;
}

static int model_main(const char *bin, const char *name) {
    const model *m = NULL;
    char *argv[24];
    int k = 0, failed;
    server s;
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
        if (strcmp(models[i].name, name) == 0) m = &models[i];
    if (!m) FAIL("unknown model %s", name);
    if (m->uring && !uring_available()) {
        fprintf(stderr, "skip: io_uring is not available here\n");
        return TEST_SKIP;
    }
    argv[k++] = (char *)bin;
    for (int j = 0; m->args[j]; j++) argv[k++] = (char *)m->args[j];
    /* The limits the corpus is written for: bodies up to 1 KiB, the
     * other limits at their defaults (target 8192, header line 8192, 100
     * headers, 65536 bytes of them); timeouts far above QUIET_MS. */
    const char *rest[] = {"--port", "0", "--max-body-kib", "1", "--header-timeout-ms", "5000",
                          "--idle-timeout-ms", "5000", "--drain-ms", "2000", NULL};
    for (int j = 0; rest[j]; j++) argv[k++] = (char *)rest[j];
    argv[k] = NULL;
    spawn(&s, argv);
    g_server = &s;
    wait_ready(&s);
    failed = run_vectors(s.port, check_vector);
    kill(s.pid, SIGTERM);
    if (!WIFEXITED(wait_exit(&s, 10000))) FAIL("iomux-httpd did not exit cleanly:\n%s", s.text);
    check_output(&s, 0);
    g_server = NULL;
    free(s.text);
    printf("%s: %d vectors, %d passed\n", name, g_nvec, g_nvec - failed);
    return failed ? 1 : 0;
}

/* ---- the nginx differential ------------------------------------------------------------------ */

typedef struct observed {
    int status[MAX_STATUSES + 2];
    int nstatus;
    int conn;
} observed;

/* What the server does with the bytes (plus extra): every response until
 * it closes or is quiet for QUIET_MS; if it did not close, whether the
 * connection still answers GET /json (keep) or not (open). */
static void observe(const vector *v, int port, const char *extra, observed *o) {
    client c;
    buf out = {0};
    memset(o, 0, sizeof(*o));
    test_buf_add(&out, v->bytes, v->len);
    if (extra) test_buf_add(&out, extra, strlen(extra));
    client_open(&c, port);
    client_send(&c, out.p, out.len);
    free(out.p);
    for (;;) {
        int st = next_status(&c, QUIET_MS);
        if (st < 0) break;
        if (o->nstatus < MAX_STATUSES + 2) o->status[o->nstatus++] = st;
    }
    if (c.eof) {
        o->conn = CONN_CLOSE;
    } else {
        client_send(&c, probe_json, sizeof(probe_json) - 1);
        o->conn = next_status(&c, QUIET_MS) == 200 ? CONN_KEEP : CONN_OPEN;
    }
    client_close(&c);
}

static void describe(char *out, size_t cap, const int *st, int n, int conn) {
    size_t len = 0;
    if (n == 0) len += (size_t)snprintf(out, cap, "none");
    for (int k = 0; k < n && len < cap; k++) len += (size_t)snprintf(out + len, cap - len, k ? " %d" : "%d", st[k]);
    if (len < cap) snprintf(out + len, cap - len, ", %s", conn_names[conn]);
}

static int same(const observed *o, const vector *v, int conn) {
    if (o->nstatus != v->nstatus || o->conn != conn) return 0;
    for (int k = 0; k < o->nstatus; k++)
        if (o->status[k] != v->status[k]) return 0;
    return 1;
}

/* KNOWN: "name | reason" lines. */
static char g_known[MAX_VECTORS][64];
static char *g_reason[MAX_VECTORS];
static int g_known_used[MAX_VECTORS];
static int g_nknown;

static void load_known(const char *path) {
    FILE *f = fopen(path, "r");
    char line[1024];
    if (!f) FAIL("%s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), f)) {
        char *t = trim(line), *bar;
        if (*t == '\0' || *t == '#') continue;
        if (!(bar = strstr(t, " | ")) || g_nknown == MAX_VECTORS) FAIL("%s: bad line '%s'", path, t);
        *bar = '\0';
        snprintf(g_known[g_nknown], sizeof(g_known[0]), "%s", trim(t));
        g_reason[g_nknown++] = strdup(trim(bar + 3));
    }
    fclose(f);
}

static const char *known_reason(const char *name) {
    for (int k = 0; k < g_nknown; k++)
        if (strcmp(g_known[k], name) == 0) {
            g_known_used[k] = 1;
            return g_reason[k];
        }
    return NULL;
}

/* nginx's answer to one vector against the expectation: 1 if the same.
 * A closing vector is sent a second time with a request pipelined
 * behind it, as in the model runs. */
static int diff_vector(const vector *v, int port) {
    observed o;
    char want[96], got[96];
    observe(v, port, NULL, &o);
    if (same(&o, v, v->conn) && v->conn == CONN_CLOSE && v->nstatus > 0) {
        observe(v, port, get_plain, &o);
        if (!same(&o, v, v->conn)) {
            describe(got, sizeof(got), o.status, o.nstatus, o.conn);
            return MISMATCH("with a request pipelined behind, nginx: %s", got);
        }
    }
    if (same(&o, v, v->conn) || (v->conn == CONN_OPEN && same(&o, v, CONN_KEEP) && v->nstatus == 0)) return 1;
    describe(want, sizeof(want), v->status, v->nstatus, v->conn);
    describe(got, sizeof(got), o.status, o.nstatus, o.conn);
    return MISMATCH("iomux: %s; nginx: %s", want, got);
}

/* A free loopback port (bound, then released: nginx takes it next). */
static int free_port(void) {
    struct sockaddr_in a;
    int fd = tcp_listener(&a);
    close(fd);
    return ntohs(a.sin_port);
}

/* The same limits as the model runs: 1 KiB bodies, 8 KiB buffers for
 * the request line and header lines. nginx's "return" answers before it
 * reads a body (and then drops it unparsed), which would hide every body
 * framing vector; so the front server proxies to a second server block of
 * the same process, and proxying reads and checks the whole body first
 * (proxy_request_buffering). The back answers as iomux's built-in routes
 * do: GET/HEAD /plaintext and /json 200, other methods 405, the rest 404. */
static void write_nginx_conf(int port, int back) {
    char path[128];
    FILE *f;
    snprintf(path, sizeof(path), "%s/nginx.conf", g_dir);
    CHECK(f = fopen(path, "w"));
    fprintf(f,
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
            "error_log %s/error.log info;\nevents { worker_connections 256; }\n"
            "http {\n  access_log off;\n  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fcgi;\n  uwsgi_temp_path %s/uwsgi;\n  scgi_temp_path %s/scgi;\n"
            "  client_max_body_size 1k;\n  large_client_header_buffers 8 8k;\n"
            "  keepalive_timeout 5s;\n  client_header_timeout 5s;\n  client_body_timeout 5s;\n"
            "  server {\n    listen 127.0.0.1:%d;\n"
            "    location / {\n      proxy_pass http://127.0.0.1:%d;\n      proxy_http_version 1.1;\n"
            "      proxy_set_header Connection \"\";\n      proxy_request_buffering on;\n    }\n  }\n"
            "  server {\n    listen 127.0.0.1:%d;\n"
            "    location = /plaintext {\n      if ($request_method !~ ^(GET|HEAD)$) { return 405; }\n"
            "      default_type text/plain;\n      return 200 \"Hello, World!\";\n    }\n"
            "    location = /json {\n      if ($request_method !~ ^(GET|HEAD)$) { return 405; }\n"
            "      default_type application/json;\n      return 200 '{\"message\":\"Hello, World!\"}';\n    }\n"
            "    location / { return 404; }\n  }\n}\n",
            g_dir, g_dir, g_dir, g_dir, g_dir, g_dir, g_dir, port, back, back);
    CHECK_EQ(fclose(f), 0);
}

static void wait_port(int port) {
    uint64_t end = test_ms() + APP_READY_MS;
    for (;;) {
        int fd = connect_to(port, 0);
        if (fd >= 0) {
            close(fd);
            return;
        }
        if (test_ms() > end) FAIL("nginx is not listening on %d", port);
        pump(g_server, 20);
    }
}

static int nginx_main(const char *nginx, const char *known) {
    char conf[128], *argv[8];
    int port, back, failed, stale = 0;
    server s;
    if (access(nginx, X_OK) != 0) {
        fprintf(stderr, "skip: %s is not installed\n", nginx);
        return TEST_SKIP;
    }
    load_known(known);
    make_scratch("/tmp/iomux-conformance-nginx-XXXXXX"); /* g_dir: nginx's prefix */
    port = free_port();
    back = free_port();
    if (back == port) back = free_port();
    write_nginx_conf(port, back);
    snprintf(conf, sizeof(conf), "%s/nginx.conf", g_dir);
    argv[0] = (char *)nginx, argv[1] = "-p", argv[2] = g_dir, argv[3] = "-c", argv[4] = conf;
    argv[5] = "-e", argv[6] = "stderr", argv[7] = NULL;
    spawn(&s, argv);
    g_server = &s;
    wait_port(port);
    g_verbose = 0;
    {
        const char *only = getenv("CONFORMANCE_ONLY");
        int unexplained = 0, known_diff = 0;
        for (int i = 0; i < g_nvec; i++) {
            const vector *v = &g_vec[i];
            const char *why;
            if (only && strcmp(only, v->name) != 0) continue;
            if (diff_vector(v, port)) continue;
            if ((why = known_reason(v->name))) {
                known_diff++;
                printf("known  %-34s %s\n       %-34s why: %s\n", v->name, g_why, "", why);
            } else {
                unexplained++;
                printf("UNEXPLAINED %s (vectors line %d): %s\n", v->name, v->line, g_why);
            }
        }
        failed = unexplained;
        for (int k = 0; k < g_nknown && !only; k++)
            if (!g_known_used[k]) {
                stale++;
                printf("note: %s is listed as a disagreement but nginx agrees now\n", g_known[k]);
            }
        printf("nginx: %d vectors, %d agree, %d known disagreements, %d unexplained, %d stale entries\n", g_nvec,
               g_nvec - known_diff - unexplained, known_diff, unexplained, stale);
    }
    kill(s.pid, SIGTERM);
    wait_exit(&s, 10000);
    g_server = NULL;
    free(s.text);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_server);
    g_verbose = getenv("CONFORMANCE_ONLY") != NULL;
    if (argc == 5 && strcmp(argv[1], "--nginx") == 0) {
        load_vectors(argv[3]);
        return nginx_main(argv[2], argv[4]);
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s IOMUX-HTTPD VECTORS MODEL\n       %s --nginx NGINX VECTORS KNOWN\n", argv[0],
                argv[0]);
        return 2;
    }
    load_vectors(argv[2]);
    return model_main(argv[1], argv[3]);
}
