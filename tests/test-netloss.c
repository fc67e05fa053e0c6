/* Packet loss and resets between two hosts: TCP echo transfers across a
 * veth pair joining two network namespaces that this test creates, with
 * nftables rules in the server's namespace that drop packets at random
 * (scenario "drop") or answer them with TCP resets (scenario "reset").
 *
 *     test-netloss drop|reset ECHO_BIN [--conns N] [--bytes N[K|M]]
 *                  [--loss PCT] [--deadline S] [--bound S]
 *
 * ECHO_BIN is iomux-echo ("-": none). The servers run in the server
 * namespace, on $IOMUX_BACKEND: iomux-echo --api reactor, iomux-echo --api
 * proactor, and an in-test server on iomux_conn (include/iomux/net.h). The
 * clients run in this process, in the client namespace, on one loop of
 * $IOMUX_BACKEND, three kinds of them: Proactor ops (iomux_connect/send/
 * recv), a Reactor watcher doing its own send/recv, and iomux_conn. Each
 * client sends --bytes of a pattern (echo_pat) from a known source port,
 * verifies every echoed byte, half-closes, and expects the server's EOF.
 *
 * drop:  every transfer completes with the right bytes (TCP retransmits)
 *        before its deadline; the rules must have dropped packets and TCP
 *        must have retransmitted (else the test proved nothing).
 * reset: each transfer completes or fails with a clean error (-ECONNRESET,
 *        -EPIPE) in its callback, never wrong or extra bytes, never a hang.
 *        The connections from a fixed set of source ports ("doomed") are
 *        reset once they have sent a quarter of their bytes, so they must
 *        fail; the others only meet rare random resets.
 * Both:  the loop frees cleanly (every op and handle ended), the servers
 *        close their side (the conn server's idle timeout bounds half-open
 *        ones; no server keeps an fd of a socket the kernel has reset), they
 *        still serve once the rules are flushed, and exit cleanly on
 *        SIGTERM with nothing alarming in their output.
 *
 * Namespaces: anonymous (unshare(CLONE_NEWNET)), not named with `ip netns
 * add`. A named namespace is a bind mount under /run/netns that outlives a
 * crashed or killed test; an anonymous one lives exactly as long as a
 * process in it or an fd on it: the client namespace is this process's own,
 * the server namespace is held by srv_ns (an fd) and the server processes
 * (which die with us: PR_SET_PDEATHSIG). So every exit path, SIGKILL from a
 * ctest timeout included, deletes both, nothing needs sweeping, and parallel
 * runs cannot collide: the veth pair is created inside the server namespace
 * with its peer moved straight into ours, so its names (veth-s, veth-c), its
 * 10.77.0.0/24 addresses and the ports never exist in the host's namespace,
 * and no traffic leaves the two namespaces.
 *
 * Skips (exit 77, with the reason): no `ip` or `nft`, no right to create a
 * namespace (not root, no CAP_SYS_ADMIN / CAP_NET_ADMIN), no veth, no
 * nf_tables. netem (tc) is tried on top of the drops and left out, said so,
 * where the kernel lacks sch_netem. */
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "harness.h"
#include "app-server.h"
#include "iomux/net.h"

#define SRV_ADDR "10.77.0.1"
#define CLI_ADDR "10.77.0.2"
#define CLI_PORT0 20000     /* client i binds CLI_PORT0 + i: the reset rules know them */
#define CTL_PORT0 21000     /* the control round after the faults */
#define CHUNK 65536

enum { SCEN_DROP, SCEN_RESET };
enum { K_PROACTOR, K_REACTOR, K_CONN, NKIND };
enum { S_ECHO_REACTOR, S_ECHO_PROACTOR, S_CONN, NSERV };

static const char *const kind_name[NKIND] = {"proactor", "reactor", "conn"};
static const char *const serv_name[NSERV] = {"echo-reactor", "echo-proactor", "conn-server"};

static struct {
    int scen;
    const char *echo;         /* iomux-echo, or NULL */
    unsigned per_pair;        /* connections per (client kind, server) */
    size_t bytes;             /* per connection */
    unsigned loss;            /* % of non-SYN TCP packets dropped, each way */
    unsigned deadline_s;      /* per connection */
    unsigned bound_s;         /* the whole test */
} opt = {SCEN_DROP, NULL, 0, 512 * 1024, 10, 30, 50};

static int srv_ns = -1;       /* keeps the server namespace alive while we run */
static server servers[NSERV];
static volatile pid_t server_pids[NSERV]; /* for the signal handler */
static struct sockaddr_in srv_addr[NSERV];
static int in_child;          /* 1 in the forked conn server: no parent cleanup there */
static int passed;

static int doomed(unsigned id);

/* ---- cleanup: on every exit path ---------------------------------------------- */

static void kill_servers(void) {
    for (int i = 0; i < NSERV; i++) {
        if (servers[i].pid <= 0) continue;
        kill(-servers[i].pid, SIGKILL);
        kill(servers[i].pid, SIGKILL);
        waitpid(servers[i].pid, NULL, 0);
        if (!passed)
            fprintf(stderr, "---- %s output ----\n%s", serv_name[i], servers[i].text ? servers[i].text : "");
        servers[i].pid = 0;
        server_pids[i] = 0;
    }
}

/* atexit: a FAIL (exit(1)) or the end of main. The namespaces need no work:
 * the server one goes with the server processes and srv_ns, ours with us. */
static void cleanup(void) {
    if (in_child) return;
    kill_servers();
}

/* SIGALRM (the whole-test bound), SIGINT, SIGTERM, SIGHUP: the loop may be
 * stuck (that is what the bound catches), so act from here. */
static void on_fatal_signal(int sig) {
    static const char msg[] = "test-netloss: stopped by a signal (SIGALRM: the whole-test bound passed)\n";
    if (in_child) _exit(1);
    for (int i = 0; i < NSERV; i++)
        if (server_pids[i] > 0) {
            kill(-server_pids[i], SIGKILL);
            kill(server_pids[i], SIGKILL);
        }
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(sig == SIGALRM ? 1 : 128 + sig);
}

static void install_cleanup(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    atexit(cleanup);
}

static void skip(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "skip: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(TEST_SKIP);
}

/* ---- commands (ip, nft, tc) in a namespace ------------------------------------ */

/* Runs `sh -c cmd` in namespace ns (-1: ours) with `input` on its stdin
 * (NULL: none), its stdout and stderr into out[cap] (NUL-terminated).
 * Returns its exit code; -1 if it did not end within 10 s (killed). */
static int run_sh(int ns, const char *input, char *out, size_t cap, const char *fmt, ...) {
    char cmd[4096];
    int in[2], o[2], status;
    size_t len = 0;
    uint64_t end = test_ms() + 10000;
    pid_t pid;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    CHECK_SYS(pipe2(in, O_CLOEXEC));
    CHECK_SYS(pipe2(o, O_CLOEXEC));
    pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        if (ns >= 0 && setns(ns, CLONE_NEWNET) < 0) _exit(126);
        dup2(in[0], 0);
        dup2(o[1], 1);
        dup2(o[1], 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    if (input) write_all(in[1], input, strlen(input)); /* rulesets are far below a pipe's 64 KiB */
    close(in[1]);
    for (;;) {
        struct pollfd p = {.fd = o[0], .events = POLLIN};
        ssize_t n;
        if (test_ms() > end || poll(&p, 1, 100) < 0) break;
        if (!p.revents) continue;
        n = read(o[0], out + len, cap - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        if (len == cap - 1) break;
    }
    out[len] = '\0';
    close(o[0]);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        usleep(100000);
        if (waitpid(pid, &status, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the namespaces, the link, the rules --------------------------------------- */

static void check_tools(void) {
    char out[512];
    if (run_sh(-1, NULL, out, sizeof(out), "command -v ip && command -v nft") != 0)
        skip("needs ip (iproute2) and nft (nftables) in PATH");
}

/* Two anonymous namespaces: the first (the server's) held by srv_ns, the
 * second our own from now on (see the top of the file). */
static void make_namespaces(void) {
    if (unshare(CLONE_NEWNET) < 0)
        skip("cannot create a network namespace: %s (needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN)",
             strerror(errno));
    srv_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    CHECK_SYS(srv_ns);
    CHECK_SYS(unshare(CLONE_NEWNET));
}

static void make_link(void) {
    char out[2048];
    if (run_sh(srv_ns, NULL, out, sizeof(out), "ip link add veth-s type veth peer name veth-c netns %d",
               (int)getpid()) != 0)
        skip("cannot create a veth pair: %s", out);
    if (run_sh(srv_ns, NULL, out, sizeof(out),
               "ip addr add " SRV_ADDR "/24 dev veth-s && ip link set veth-s up && ip link set lo up") != 0)
        FAIL("server side of the link: %s", out);
    if (run_sh(-1, NULL, out, sizeof(out),
               "ip addr add " CLI_ADDR "/24 dev veth-c && ip link set veth-c up && ip link set lo up") != 0)
        FAIL("client side of the link: %s", out);
}

static void need_nftables(void) {
    char out[2048];
    if (run_sh(srv_ns, NULL, out, sizeof(out), "nft add table inet probe && nft delete table inet probe") != 0)
        skip("nftables cannot be used in a namespace here: %s", out);
}


/* Random drops in the server namespace, both ways: opt.loss % of the
 * packets without SYN (data, ACK, FIN), half that of SYN / SYN-ACK (a lost
 * SYN waits 1 s, 2 s, 4 s...: full rate would make a connect of 15 s a
 * percent-level event across a run). Counters say what the rules did. */
static void drop_rules(char *r, size_t cap) {
    snprintf(r, cap,
             "table inet netloss {\n"
             " chain in { type filter hook input priority 0; policy accept;\n"
             "  tcp flags & syn == syn numgen random mod 200 < %u counter drop comment \"drop-syn-in\"\n"
             "  tcp flags & syn == 0 numgen random mod 100 < %u counter drop comment \"drop-in\"\n"
             "  meta l4proto tcp counter comment \"pass-in\"\n"
             " }\n"
             " chain out { type filter hook output priority 0; policy accept;\n"
             "  tcp flags & syn == syn numgen random mod 200 < %u counter drop comment \"drop-syn-out\"\n"
             "  tcp flags & syn == 0 numgen random mod 100 < %u counter drop comment \"drop-out\"\n"
             "  meta l4proto tcp counter comment \"pass-out\"\n"
             " }\n"
             "}\n",
             opt.loss, opt.loss, opt.loss, opt.loss);
}

/* Resets, answered by nft to the client (reject in input): the doomed
 * ports once their connection carried bytes/4 towards the server (conntrack
 * accounting), and 1 in 300 other packets at random (GSO: a packet
 * here is often tens of segments, so a run sees a few hundred). Never RST packets
 * (a reset must reach its socket, and nft answers no RST anyway) nor SYNs
 * (connects succeed: the faults are mid-stream). */
static void reset_rules(char *r, size_t cap, unsigned nclients) {
    char ports[2048];
    size_t len = 0;
    for (unsigned i = 0; i < nclients; i++)
        if (doomed(i)) len += (size_t)snprintf(ports + len, sizeof(ports) - len, "%s%u", len ? ", " : "", CLI_PORT0 + i);
    snprintf(r, cap,
             "table inet netloss {\n"
             " chain in { type filter hook input priority 0; policy accept;\n"
             "  tcp flags & (syn|rst) == 0 tcp sport { %s } ct original bytes > %zu counter"
             " reject with tcp reset comment \"reset-doomed\"\n"
             "  tcp flags & (syn|rst) == 0 numgen random mod 300 < 1 counter reject with tcp reset"
             " comment \"reset-random\"\n"
             "  meta l4proto tcp counter comment \"pass-in\"\n"
             " }\n"
             "}\n",
             ports, opt.bytes / 4);
}

static void load_rules(unsigned nclients) {
    char rules[8192], out[4096];
    if (opt.scen == SCEN_DROP) drop_rules(rules, sizeof(rules));
    else reset_rules(rules, sizeof(rules), nclients);
    if (run_sh(srv_ns, rules, out, sizeof(out), "nft -f -") != 0) FAIL("nft -f: %s\n%s", out, rules);
    /* ct original bytes needs conntrack accounting (the sysctl exists once
     * the rules brought conntrack into the namespace) */
    if (opt.scen == SCEN_RESET &&
        run_sh(srv_ns, NULL, out, sizeof(out), "echo 1 > /proc/sys/net/netfilter/nf_conntrack_acct") != 0)
        FAIL("conntrack accounting: %s", out);
}

/* netem on our side of the link, if the kernel has it: a little delay and
 * loss on top of the nft drops. Optional: sch_netem is often missing. */
static void try_netem(void) {
    char out[1024];
    if (run_sh(-1, NULL, out, sizeof(out), "tc qdisc add dev veth-c root netem delay 2ms loss 1%%") == 0)
        fprintf(stderr, "netem: on (delay 2ms, loss 1%% from the client side)\n");
    else
        fprintf(stderr, "netem: not available here, left out (%.*s)\n", (int)strcspn(out, "\n"), out);
}

/* The counter of the rule with this comment, or -1. */
static long long rule_counter(const char *ruleset, const char *comment) {
    char key[128];
    const char *p, *line, *c;
    snprintf(key, sizeof(key), "comment \"%s\"", comment);
    if (!(p = strstr(ruleset, key))) return -1;
    for (line = p; line > ruleset && line[-1] != '\n'; line--) {
    }
    c = strstr(line, "counter packets ");
    return c && c < p ? atoll(c + 16) : -1;
}

/* ---- TCP statistics of a namespace (/proc/PID/net/{snmp,netstat}) ------------- */

/* Field `name` of the `proto` table ("Tcp:", "TcpExt:") in file, or -1. */
static long long proc_net_field(pid_t pid, const char *file, const char *proto, const char *name) {
    char path[64], head[4096], vals[4096];
    FILE *f;
    long long v = -1;
    snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)pid, file);
    if (!(f = fopen(path, "r"))) return -1;
    while (fgets(head, sizeof(head), f) && fgets(vals, sizeof(vals), f)) {
        char *hs, *vs, *h, *x;
        if (strncmp(head, proto, strlen(proto)) != 0) continue;
        h = strtok_r(head, " \n", &hs);
        x = strtok_r(vals, " \n", &vs);
        while (h && x) {
            if (strcmp(h, name) == 0) v = atoll(x);
            h = strtok_r(NULL, " \n", &hs);
            x = strtok_r(NULL, " \n", &vs);
        }
        break;
    }
    fclose(f);
    return v;
}

typedef struct tcpstat {
    long long retrans, timeouts, synretrans, outrsts, estabresets;
} tcpstat;

static tcpstat tcp_stats(pid_t pid) {
    tcpstat s;
    s.retrans = proc_net_field(pid, "snmp", "Tcp:", "RetransSegs");
    s.outrsts = proc_net_field(pid, "snmp", "Tcp:", "OutRsts");
    s.estabresets = proc_net_field(pid, "snmp", "Tcp:", "EstabResets");
    s.timeouts = proc_net_field(pid, "netstat", "TcpExt:", "TCPTimeouts");
    s.synretrans = proc_net_field(pid, "netstat", "TcpExt:", "TCPSynRetrans");
    return s;
}

static void print_tcpstat(const char *who, tcpstat s) {
    fprintf(stderr, "tcp %s: RetransSegs %lld, TCPTimeouts (RTO) %lld, TCPSynRetrans %lld, OutRsts %lld, EstabResets %lld\n",
            who, s.retrans, s.timeouts, s.synretrans, s.outrsts, s.estabresets);
}

/* ---- the in-test server on iomux_conn (a forked child in the server namespace) -- */

typedef struct sconn {
    iomux_conn c;
    struct sconn *prev, *next;
} sconn;

static struct {
    iomux_loop *loop;
    iomux_acceptor acc;
    iomux_signal term;
    sconn *live;
    unsigned nlive;
    int stopping, lfd;
    unsigned long long accepted, clean, reset, pipe, timeout, other;
    int last_other;
} cs;

static void cs_data(iomux_conn *c, const void *p, size_t n) {
    if (iomux_conn_write(c, p, n) < 0) iomux_conn_close(c, IOMUX_CONN_ABORT);
}

static void cs_close(iomux_conn *c, int reason) {
    sconn *s = (sconn *)c;
    if (reason == 0) cs.clean++;
    else if (reason == -ECONNRESET) cs.reset++;
    else if (reason == -EPIPE) cs.pipe++;
    else if (reason == -ETIMEDOUT) cs.timeout++;
    else cs.other++, cs.last_other = reason;
    if (s->prev) s->prev->next = s->next;
    else cs.live = s->next;
    if (s->next) s->next->prev = s->prev;
    cs.nlive--;
    free(s);
    if (cs.stopping && cs.nlive == 0) iomux_signal_stop(&cs.term);
}

static const iomux_conn_callbacks cs_cbs = {.on_data = cs_data, .on_close = cs_close};

static void cs_accept(iomux_acceptor *a, iomux_fd fd) {
    /* idle timeout: reset scenario only, where it bounds the half-open
     * connections a reset client leaves; under drops an RTO backoff can be
     * silent for seconds and must not be cut */
    iomux_conn_opts o = {.idle_ms = opt.scen == SCEN_RESET ? 2000 : 0};
    sconn *s;
    if (fd < 0) {
        printf("conn-server: accept failed: %s\n", iomux_strerror((int)fd));
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s || iomux_conn_start(a->loop, &s->c, fd, &cs_cbs, &o) < 0) {
        printf("conn-server: cannot start a connection\n");
        free(s);
        close(fd);
        return;
    }
    cs.accepted++;
    s->next = cs.live;
    if (cs.live) cs.live->prev = s;
    cs.live = s;
    cs.nlive++;
}

static void cs_stopped(iomux_acceptor *a) {
    (void)a;
    close(cs.lfd);
}

/* SIGTERM: stop accepting, reset what is left (half-open), then end. */
static void cs_term(iomux_signal *sig, int signum) {
    (void)signum;
    cs.stopping = 1;
    iomux_acceptor_stop(&cs.acc, cs_stopped);
    for (sconn *s = cs.live; s; s = s->next) iomux_conn_close(&s->c, IOMUX_CONN_ABORT);
    if (cs.nlive == 0) iomux_signal_stop(sig);
}

/* The child's body (run as spawn_with's pre-exec hook: it never returns, so
 * the exec never happens). exit() here runs LeakSanitizer in ASan builds. */
static void conn_server_main(void *arg) {
    const char *nspath = arg;
    int fd = open(nspath, O_RDONLY | O_CLOEXEC);
    in_child = 1;
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        printf("conn-server: setns: %s\n", strerror(errno));
        exit(1);
    }
    close(fd);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK_OK(iomux_loop_new(&cs.loop, NULL));
    cs.lfd = iomux_listen(SRV_ADDR, 0, NULL);
    CHECK_OK(cs.lfd);
    CHECK_OK(iomux_acceptor_start(cs.loop, &cs.acc, cs.lfd, cs_accept));
    iomux_signal_init(cs.loop, &cs.term, cs_term);
    CHECK_OK(iomux_signal_start(&cs.term, SIGTERM));
    printf("conn-server: listening on " SRV_ADDR ":%d (backend %s)\n", iomux_listen_port(cs.lfd),
           iomux_backend_name(cs.loop));
    CHECK_OK(iomux_run(cs.loop, IOMUX_RUN_DEFAULT));
    printf("conn-server: accepted %llu, closed: clean %llu, reset %llu, pipe %llu, idle timeout %llu, other %llu"
           " (last %d)\n",
           cs.accepted, cs.clean, cs.reset, cs.pipe, cs.timeout, cs.other, cs.last_other);
    CHECK_OK(iomux_loop_free(cs.loop));
    exit(cs.other ? 3 : 0);
}

/* ---- starting the servers in the server namespace ------------------------------ */

static char srv_ns_path[64];

/* spawn_with's hook in the child (after its fds were closed, so through
 * our /proc entry): join the server namespace, die with the test. */
static void enter_server_ns(void *arg) {
    int fd = open((const char *)arg, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        fprintf(stderr, "setns: %s\n", strerror(errno));
        _exit(127);
    }
    close(fd);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static const char *echo_model(void) {
    const char *b = getenv("IOMUX_BACKEND");
    return b && *b && strcmp(b, "auto") != 0 ? b : "epoll";
}

static void start_servers(void) {
    snprintf(srv_ns_path, sizeof(srv_ns_path), "/proc/%d/fd/%d", (int)getpid(), srv_ns);
    for (int i = 0; i < NSERV; i++) {
        char *echo_argv[] = {(char *)opt.echo, "--model", (char *)echo_model(), "--api",
                             i == S_ECHO_REACTOR ? "reactor" : "proactor", "--bind", SRV_ADDR, "--port", "0",
                             "--drain-ms", "1000", NULL};
        char *none_argv[] = {"/nonexistent", NULL};
        if (i != S_CONN && !opt.echo) continue;
        if (i == S_CONN) spawn_with(&servers[i], none_argv, conn_server_main, srv_ns_path);
        else spawn_with(&servers[i], echo_argv, enter_server_ns, srv_ns_path);
        server_pids[i] = servers[i].pid;
        wait_ready(&servers[i]);
        srv_addr[i].sin_family = AF_INET;
        srv_addr[i].sin_port = htons((uint16_t)servers[i].port);
        inet_pton(AF_INET, SRV_ADDR, &srv_addr[i].sin_addr);
    }
}

/* ---- the clients -------------------------------------------------------------- */

typedef struct client {
    unsigned id, kind, srv;
    int doomed;               /* reset scenario: its port is reset mid-stream */
    uint16_t lport;
    int fd;
    size_t total, sent, recvd;
    int outcome;              /* 0 running, 1 completed, else the -errno it failed with */
    const char *where;        /* where it failed */
    int connected, shut, closed;
    uint64_t t0, t1;          /* ms */
    iomux_timer deadline;
    iomux_op cop, tx, rx, xop;
    iomux_watch w;
    iomux_conn conn;
    char txbuf[CHUNK], rxbuf[CHUNK];
} client;

static iomux_loop *loop;
static client **clients;
static unsigned nclients;

/* The socket's TCP state (TCP_CLOSE once reset), or -1. */
static int tcp_state(int fd) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 ? ti.tcpi_state : -1;
}

/* poll()'s view of fd now, and the bytes in its receive queue (SIOCINQ);
 * neither takes a pending socket error. */
static void peek_socket(int fd, short *revents, int *inq) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    *revents = poll(&p, 1, 0) == 1 ? p.revents : 0;
    if (ioctl(fd, SIOCINQ, inq) < 0) *inq = -errno;
}

/* Reset scenario: the client of a doomed port. */
static int doomed(unsigned id) {
    return id < nclients && clients[id]->doomed;
}

static void dump_clients(void) {
    for (unsigned i = 0; i < nclients; i++) {
        client *c = clients[i];
        fprintf(stderr, "  client %u (%s -> %s, port %u%s): sent %zu, echoed %zu of %zu, outcome %d (%s%s%s)\n",
                c->id, kind_name[c->kind], serv_name[c->srv], c->lport, doomed(c->id) ? ", doomed" : "", c->sent,
                c->recvd, c->total, c->outcome,
                c->outcome == 1 ? "completed" : c->outcome == 0 ? "running" : iomux_strerror(c->outcome),
                c->where ? " in " : "", c->where ? c->where : "");
        if (c->outcome == 0 && c->connected) {
            short rev;
            int inq;
            peek_socket(c->kind == K_CONN ? c->conn.fd : c->fd, &rev, &inq);
            fprintf(stderr, "    socket: poll revents 0x%x, %d bytes unread, TCP state %d\n", rev, inq,
                    tcp_state(c->kind == K_CONN ? c->conn.fd : c->fd));
        }
        if (c->outcome == 0 && c->kind == K_CONN && c->connected) /* the connection's bookkeeping, for a diagnosis */
            fprintf(stderr, "    iomux_conn: flags 0x%x, rx state %u (op active %d), tx state %u (op active %d),"
                            " queued %zu, sending %u, reason %d, TCP state %d; rx op %p state %u oflags 0x%x\n",
                    c->conn.internal.flags, c->conn.internal.rxs, iomux_op_active(&c->conn.internal.rx),
                    c->conn.internal.txs, iomux_op_active(&c->conn.internal.tx), c->conn.internal.queued,
                    c->conn.internal.sending, c->conn.internal.reason, tcp_state(c->conn.fd),
                    (void *)&c->conn.internal.rx, c->conn.internal.rx.internal.state,
                    c->conn.internal.rx.internal.oflags);
    }
}

/* What both kernels say about client c's connection (for a failure). */
static void dump_sockets(const client *c) {
    static char out[16384];
    run_sh(-1, NULL, out, sizeof(out), "ss -tanoi '( sport = :%u )'", c->lport);
    fprintf(stderr, "client namespace, ss:\n%s", out);
    run_sh(srv_ns, NULL, out, sizeof(out), "ss -tanoi '( dport = :%u )'", c->lport);
    fprintf(stderr, "server namespace, ss:\n%s", out);
}

static void on_deadline(iomux_timer *t) {
    client *c = t->data;
    dump_clients();
    dump_sockets(c);
    FAIL("client %u (%s -> %s) hangs: no end within %u s (sent %zu, echoed %zu of %zu)", c->id, kind_name[c->kind],
         serv_name[c->srv], opt.deadline_s, c->sent, c->recvd, c->total);
}

static void fill(client *c, size_t n) {
    for (size_t i = 0; i < n; i++) c->txbuf[i] = (char)echo_pat(c->id, 0, c->sent + i);
}

/* Echoed bytes: never more than sent, never wrong. */
static void received(client *c, const char *p, size_t n) {
    if (c->recvd + n > c->total)
        FAIL("client %u (%s): %zu bytes echoed, more than the %zu sent", c->id, kind_name[c->kind], c->recvd + n,
             c->total);
    echo_check(p, n, c->id, 0, c->recvd);
    c->recvd += n;
}

static void teardown(client *c);

/* The transfer's end: result 1 (completed) or -errno. The first end wins. */
static void finish(client *c, int result, const char *where) {
    if (c->outcome) return;
    c->outcome = result;
    c->where = result == 1 ? NULL : where;
    c->t1 = test_ms();
    iomux_timer_stop(&c->deadline);
    teardown(c);
}

static unsigned eof_on_reset[NKIND]; /* short "end of stream"s that were resets */

/* End of stream (a read of 0): complete only with every byte back. A short
 * one is a failure (a server that closed early, or lost bytes) unless the
 * socket was in fact reset: Linux reports a reset's ECONNRESET once, to the
 * first call that looks, and a read after that sees 0, the end of stream;
 * so when the other op of the connection (the send) took the error, the
 * read ends "cleanly". A FIN leaves the socket in CLOSE_WAIT or TIME_WAIT,
 * a reset in CLOSE: that tells them apart. */
static void eof(client *c, int fd) {
    if (c->recvd == c->total) {
        finish(c, 1, NULL);
        return;
    }
    if (opt.scen == SCEN_RESET && tcp_state(fd) == TCP_CLOSE) {
        eof_on_reset[c->kind]++;
        finish(c, -ECONNRESET, "recv (end of stream, the socket found reset)");
        return;
    }
    FAIL("client %u (%s -> %s): end of stream after %zu of %zu bytes, TCP state %d: bytes are missing", c->id,
         kind_name[c->kind], serv_name[c->srv], c->recvd, c->total, tcp_state(fd));
}

/* shutdown(SHUT_WR) after the last send: ENOTCONN when a reset came first;
 * then the read side reports it (an error, or end of stream on a reset
 * socket), so it is no end by itself. */
static int half_close(client *c, int fd) {
    if (shutdown(fd, SHUT_WR) == 0 || (errno == ENOTCONN && opt.scen == SCEN_RESET)) return 0;
    finish(c, -errno, "shutdown");
    return -1;
}

static int open_socket(client *c) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(c->lport)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_SYS(fd);
    inet_pton(AF_INET, CLI_ADDR, &a.sin_addr);
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
    CHECK_SYS(bind(fd, (struct sockaddr *)&a, sizeof(a)));
    return fd;
}

/* -- Proactor: iomux_connect, then a send op and a recv op in flight at once -- */

static void p_send_next(client *c);

static void p_closed(iomux_op *op) {
    client *c = op->data;
    CHECK_EQ(op->result, 0);
    c->closed = 1;
}

static void p_sent(iomux_op *op) {
    client *c = op->data;
    if (c->outcome) return; /* ending: the close cancelled it */
    if (op->result < 0) {
        finish(c, (int)op->result, "send");
        return;
    }
    c->sent += (size_t)op->result;
    p_send_next(c);
}

static void p_send_next(client *c) {
    size_t n = c->total - c->sent < CHUNK ? c->total - c->sent : CHUNK;
    if (n == 0) {
        c->shut = 1;
        half_close(c, c->fd);
        return;
    }
    fill(c, n);
    CHECK_OK(iomux_send(loop, &c->tx, c->fd, c->txbuf, n, p_sent));
}

static void p_recvd(iomux_op *op) {
    client *c = op->data;
    if (c->outcome) return;
    if (op->result < 0) finish(c, (int)op->result, "recv");
    else if (op->result == 0) eof(c, c->fd);
    else {
        received(c, c->rxbuf, (size_t)op->result);
        CHECK_OK(iomux_recv(loop, &c->rx, c->fd, c->rxbuf, CHUNK, 0, p_recvd));
    }
}

static void p_connected(iomux_op *op) {
    client *c = op->data;
    if (op->result < 0) {
        finish(c, (int)op->result, "connect");
        return;
    }
    c->connected = 1;
    p_send_next(c);
    CHECK_OK(iomux_recv(loop, &c->rx, c->fd, c->rxbuf, CHUNK, 0, p_recvd));
}

/* -- Reactor: a level-triggered watcher; the callback does the I/O ---------- */

static void r_write(client *c) {
    while (c->sent < c->total) {
        size_t n = c->total - c->sent < CHUNK ? c->total - c->sent : CHUNK;
        ssize_t w;
        fill(c, n);
        w = send(c->fd, c->txbuf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return;
        if (w < 0) {
            finish(c, -errno, "send");
            return;
        }
        c->sent += (size_t)w;
    }
    if (!c->shut) {
        c->shut = 1;
        if (half_close(c, c->fd) == 0) CHECK_OK(iomux_watch_update(&c->w, IOMUX_IN)); /* nothing more to write */
    }
}

static void r_read(client *c) {
    for (int i = 0; i < 16 && !c->outcome; i++) { /* bounded: others get their turn */
        ssize_t n = recv(c->fd, c->rxbuf, CHUNK, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0) finish(c, -errno, "recv");
        else if (n == 0) eof(c, c->fd);
        else received(c, c->rxbuf, (size_t)n);
    }
}

static void r_ready(iomux_watch *w, unsigned revents) {
    client *c = w->data;
    (void)revents; /* errors show in the result of the call (select cannot tell them) */
    if (!c->connected) {
        int err = 0;
        socklen_t len = sizeof(err);
        CHECK_SYS(getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len));
        if (err) {
            finish(c, -err, "connect");
            return;
        }
        c->connected = 1;
        CHECK_OK(iomux_watch_update(&c->w, IOMUX_IN | IOMUX_OUT));
        return;
    }
    if (!c->shut) r_write(c);
    if (!c->outcome) r_read(c);
}

/* -- iomux_conn: connect with an op, then the buffered connection ----------- */

/* The client writes on its own (not in reply to what it reads), so it
 * paces itself on iomux_conn_queued() and on_drain's "queue empty", and its
 * high watermark is out of reach (K_OPTS): with the default one, reading
 * stops while its own queue is high, the echo server stops reading while
 * its echoes cannot leave, and with a few MiB per connection both ends wait
 * for each other forever (seen with --bytes 4M). */
#define K_PACE (256 * 1024)
static const iomux_conn_opts K_OPTS = {.high_water = 1u << 30, .low_water = 1u << 29};

static void k_pump(client *c) {
    while (c->sent < c->total && iomux_conn_queued(&c->conn) < K_PACE) {
        size_t n = c->total - c->sent < CHUNK ? c->total - c->sent : CHUNK;
        int rc;
        fill(c, n);
        rc = iomux_conn_write(&c->conn, c->txbuf, n);
        if (rc < 0) {
            finish(c, rc, "write");
            return;
        }
        c->sent += n;
    }
    if (c->sent < c->total) return; /* on_drain (queue empty) goes on */
    if (!c->shut) {
        int rc = iomux_conn_shutdown(&c->conn);
        c->shut = 1;
        if (rc < 0) finish(c, rc, "shutdown");
    }
}

static void k_data(iomux_conn *conn, const void *p, size_t n) {
    client *c = conn->data;
    if (!c->outcome) received(c, p, n);
}

static void k_eof(iomux_conn *conn) {
    eof(conn->data, conn->fd);
}

static void k_drain(iomux_conn *conn) {
    client *c = conn->data;
    if (!c->outcome) k_pump(c);
}

static void k_close(iomux_conn *conn, int reason) {
    client *c = conn->data;
    c->closed = 1;
    if (!c->outcome) finish(c, reason ? reason : -EPROTO, "conn");
    else if (c->outcome == 1 && reason != 0)
        FAIL("client %u (conn): completed, then closed with %d (%s)", c->id, reason, iomux_strerror(reason));
}

static const iomux_conn_callbacks k_cbs = {
    .on_data = k_data, .on_eof = k_eof, .on_drain = k_drain, .on_close = k_close};

static void k_connected(iomux_op *op) {
    client *c = op->data;
    if (op->result < 0) {
        finish(c, (int)op->result, "connect");
        return;
    }
    c->connected = 1;
    CHECK_OK(iomux_conn_start(loop, &c->conn, c->fd, &k_cbs, &K_OPTS));
    k_pump(c);
}

/* Closes the client's side, each kind its own way; `closed` says when done. */
static void teardown(client *c) {
    if (c->kind == K_PROACTOR) {
        CHECK_OK(iomux_close(loop, &c->xop, c->fd, p_closed)); /* cancels the send and recv ops */
    } else if (c->kind == K_REACTOR) {
        iomux_watch_stop(&c->w);
        close(c->fd);
        c->closed = 1;
    } else if (!c->connected) {
        close(c->fd);
        c->closed = 1;
    } else if (!c->closed) {
        iomux_conn_close(&c->conn, c->outcome == 1 ? IOMUX_CONN_GRACEFUL : IOMUX_CONN_ABORT);
    }
}

static void client_start(client *c) {
    c->fd = open_socket(c);
    c->t0 = test_ms();
    c->cop.data = c->tx.data = c->rx.data = c->xop.data = c;
    iomux_timer_init(loop, &c->deadline, on_deadline);
    c->deadline.data = c;
    CHECK_OK(iomux_timer_start(&c->deadline, (uint64_t)opt.deadline_s * 1000, 0));
    if (c->kind == K_REACTOR) {
        if (connect(c->fd, (struct sockaddr *)&srv_addr[c->srv], sizeof(srv_addr[0])) < 0 && errno != EINPROGRESS) {
            finish(c, -errno, "connect");
            return;
        }
        iomux_watch_init(loop, &c->w, c->fd, r_ready);
        c->w.data = c;
        CHECK_OK(iomux_watch_start(&c->w, IOMUX_OUT));
        return;
    }
    c->conn.data = c;
    CHECK_OK(iomux_connect(loop, &c->cop, c->fd, (struct sockaddr *)&srv_addr[c->srv], sizeof(srv_addr[0]),
                           c->kind == K_CONN ? k_connected : p_connected));
}

static int client_ended(const client *c) {
    return c->outcome && c->closed && !iomux_op_active(&c->cop) && !iomux_op_active(&c->tx) &&
           !iomux_op_active(&c->rx) && !iomux_op_active(&c->xop);
}

static void tick(iomux_timer *t) {
    (void)t; /* only wakes the loop: the run below checks the ends */
}

/* Runs the clients to their ends (each bounded by its deadline). */
static void run_clients(void) {
    iomux_timer t;
    unsigned ended = 0;
    iomux_timer_init(loop, &t, tick);
    CHECK_OK(iomux_timer_start(&t, 100, 100));
    for (unsigned i = 0; i < nclients; i++) client_start(clients[i]);
    while (ended < nclients) {
        CHECK_OK(iomux_run(loop, IOMUX_RUN_ONCE));
        ended = 0;
        for (unsigned i = 0; i < nclients; i++) ended += (unsigned)client_ended(clients[i]);
    }
    iomux_timer_stop(&t);
}

static client *client_new(unsigned id, unsigned kind, unsigned srv, uint16_t lport, size_t bytes) {
    client *c = calloc(1, sizeof(*c));
    CHECK(c);
    c->id = id;
    c->kind = kind;
    c->srv = srv;
    c->lport = lport;
    c->total = bytes;
    c->fd = -1;
    return c;
}

static void free_clients(void) {
    for (unsigned i = 0; i < nclients; i++) free(clients[i]);
    free(clients);
    clients = NULL;
    nclients = 0;
}

/* Every (kind, server) pair opt.per_pair times, interleaved. Under resets
 * (fast: nothing to retransmit) three times more, for more reset races. */
static void make_clients(void) {
    unsigned n = 0;
    if (!opt.per_pair) opt.per_pair = opt.scen == SCEN_RESET ? 6 : 2;
    clients = calloc(NKIND * NSERV * opt.per_pair, sizeof(*clients));
    CHECK(clients);
    for (unsigned r = 0; r < opt.per_pair; r++)
        for (unsigned s = 0; s < NSERV; s++)
            for (unsigned k = 0; k < NKIND; k++) {
                if (s != S_CONN && !opt.echo) continue;
                clients[n] = client_new(n, k, s, (uint16_t)(CLI_PORT0 + n), opt.bytes);
                /* a third, spread over the client kinds and the servers */
                clients[n]->doomed = opt.scen == SCEN_RESET && (k + s + r) % 3 == 0;
                n++;
            }
    nclients = n;
}

/* ---- checks after the faults ------------------------------------------------- */

static int clean_error(int e) {
    return e == -ECONNRESET || e == -EPIPE;
}

/* Tallies and checks the outcomes; prints the figures. */
static void check_outcomes(uint64_t ms) {
    unsigned done[NKIND] = {0}, failed[NKIND] = {0}, doomed_done = 0, doomed_n = 0;
    unsigned long long bytes = 0;
    uint64_t longest = 0, sum = 0;
    for (unsigned i = 0; i < nclients; i++) {
        client *c = clients[i];
        uint64_t d = c->t1 - c->t0;
        bytes += c->recvd;
        sum += d;
        if (d > longest) longest = d;
        if (c->outcome == 1) done[c->kind]++;
        else failed[c->kind]++;
        if (doomed(c->id)) doomed_n++, doomed_done += c->outcome == 1;
        if (c->outcome != 1 && (opt.scen == SCEN_DROP || !clean_error(c->outcome))) {
            dump_clients();
            FAIL("client %u (%s -> %s) failed with %d (%s) in %s%s", c->id, kind_name[c->kind], serv_name[c->srv],
                 c->outcome, iomux_strerror(c->outcome), c->where,
                 opt.scen == SCEN_DROP ? ": losses must be recovered" : ": not a clean reset error");
        }
    }
    for (unsigned k = 0; k < NKIND; k++)
        fprintf(stderr, "clients %-8s: %u completed, %u reset (%u of them seen as a short end of stream)\n",
                kind_name[k], done[k], failed[k], eof_on_reset[k]);
    fprintf(stderr, "transfers: %u in %llu ms, %llu bytes echoed and verified; per connection mean %llu ms, max %llu ms\n",
            nclients, (unsigned long long)ms, bytes, (unsigned long long)(sum / nclients),
            (unsigned long long)longest);
    if (opt.scen == SCEN_RESET) {
        CHECK_EQ(doomed_done, 0); /* their resets must surface as errors */
        CHECK(done[K_PROACTOR] + done[K_REACTOR] + done[K_CONN] > 0);
        fprintf(stderr, "doomed connections: %u, all failed cleanly\n", doomed_n);
    }
}

/* The rules must have acted, or the test proved nothing. */
static void check_rules(void) {
    static char rs[16384];
    CHECK_EQ(run_sh(srv_ns, NULL, rs, sizeof(rs), "nft list table inet netloss"), 0);
    if (opt.scen == SCEN_DROP) {
        long long in = rule_counter(rs, "drop-in"), out = rule_counter(rs, "drop-out");
        long long sin = rule_counter(rs, "drop-syn-in"), sout = rule_counter(rs, "drop-syn-out");
        long long pin = rule_counter(rs, "pass-in"), pout = rule_counter(rs, "pass-out");
        fprintf(stderr, "nft: dropped %lld in + %lld out (SYN: %lld + %lld), passed %lld in + %lld out\n", in, out,
                sin, sout, pin, pout);
        CHECK(in > 0 && out > 0);
    } else {
        long long d = rule_counter(rs, "reset-doomed"), r = rule_counter(rs, "reset-random");
        long long pin = rule_counter(rs, "pass-in");
        fprintf(stderr, "nft: reset %lld (doomed ports) + %lld (random), passed %lld in\n", d, r, pin);
        CHECK(d > 0);
    }
}

/* inode of each TCP socket of the namespace of pid, in any state the
 * kernel still lists (a socket reset by its peer is no longer listed). */
static int tcp_listed(pid_t pid, unsigned long ino) {
    char path[64], line[512];
    FILE *f;
    int found = 0;
    snprintf(path, sizeof(path), "/proc/%d/net/tcp", (int)pid);
    if (!(f = fopen(path, "r"))) return 0;
    while (!found && fgets(line, sizeof(line), f)) {
        unsigned long i;
        if (sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %lu", &i) == 1 && i == ino) found = 1;
    }
    fclose(f);
    return found;
}

/* The fds of pid: sockets still listed as TCP (connections, listener) in
 * *live, sockets no longer listed (reset or closed by the kernel, yet still
 * open in the process) in *dead; returns all fds. */
static long fd_census(pid_t pid, long *live, long *dead) {
    char dir[64], path[384], target[128];
    DIR *d;
    struct dirent *e;
    long n = 0;
    *live = *dead = 0;
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    if (!(d = opendir(dir))) return -1;
    while ((e = readdir(d))) {
        unsigned long ino;
        ssize_t len;
        if (e->d_name[0] == '.') continue;
        n++;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        len = readlink(path, target, sizeof(target) - 1);
        if (len <= 0) continue;
        target[len] = '\0';
        if (sscanf(target, "socket:[%lu]", &ino) != 1) continue;
        if (tcp_listed(pid, ino)) (*live)++;
        else (*dead)++;
    }
    closedir(d);
    return n;
}

typedef struct census {
    long fds, live, dead;
} census;

/* The servers close their side: under drops every connection ended with a
 * FIN, so each server is back at its start-up fds. Under resets a server may
 * keep a half-open connection (its client was reset before the server had
 * anything in flight: nothing tells it), except the conn server, whose idle
 * timeout (2 s) closes those; but no server may keep an fd of a socket the
 * kernel has reset (that would be an error it never noticed). Waits up to
 * 8 s for that. */
static void check_servers_settle(const census *base) {
    uint64_t end = test_ms() + 8000;
    for (;;) {
        int ok = 1;
        census now[NSERV];
        for (int i = 0; i < NSERV; i++) {
            if (servers[i].pid <= 0) continue;
            now[i].fds = fd_census(servers[i].pid, &now[i].live, &now[i].dead);
            CHECK(now[i].fds >= 0);
            if (now[i].dead > base[i].dead) ok = 0;
            if ((opt.scen == SCEN_DROP || i == S_CONN) && now[i].fds != base[i].fds) ok = 0;
        }
        if (ok || test_ms() > end) {
            for (int i = 0; i < NSERV; i++) {
                if (servers[i].pid <= 0) continue;
                fprintf(stderr, "server %-13s: %ld fds (%ld at start), %ld connections still open (half-open)%s\n",
                        serv_name[i], now[i].fds, base[i].fds, now[i].fds - base[i].fds,
                        now[i].dead > base[i].dead ? ", some of a reset socket" : "");
                if (!ok) {
                    if (now[i].dead > base[i].dead)
                        FAIL("%s keeps %ld fd(s) of sockets the kernel has reset", serv_name[i],
                             now[i].dead - base[i].dead);
                    if ((opt.scen == SCEN_DROP || i == S_CONN) && now[i].fds != base[i].fds)
                        FAIL("%s: %ld fds, %ld at start: connections not closed", serv_name[i], now[i].fds,
                             base[i].fds);
                }
            }
            return;
        }
        usleep(100000);
    }
}

/* Once the rules are gone, each server must still serve a clean transfer. */
static void control_round(void) {
    char out[1024];
    unsigned n = 0;
    CHECK_EQ(run_sh(srv_ns, NULL, out, sizeof(out), "nft flush ruleset"), 0);
    run_sh(-1, NULL, out, sizeof(out), "tc qdisc del dev veth-c root 2>/dev/null; true");
    free_clients();
    clients = calloc(NSERV, sizeof(*clients));
    CHECK(clients);
    for (unsigned s = 0; s < NSERV; s++)
        if (servers[s].pid > 0) {
            clients[n] = client_new(1000 + n, K_PROACTOR, s, (uint16_t)(CTL_PORT0 + n), 256 * 1024);
            n++;
        }
    nclients = n;
    run_clients();
    for (unsigned i = 0; i < nclients; i++)
        if (clients[i]->outcome != 1) {
            dump_clients();
            FAIL("%s does not serve after the faults", serv_name[clients[i]->srv]);
        }
    fprintf(stderr, "control round: %u clean transfers after the rules were flushed\n", nclients);
}

/* SIGTERM: each server exits 0 within its drain, nothing alarming said. */
static void stop_servers(void) {
    static const char *const bad[] = {"error", "alert", "sanitizer", "runtime error", "leak", "failed", "cannot"};
    for (int i = 0; i < NSERV; i++) {
        int status;
        if (servers[i].pid <= 0) continue;
        CHECK_SYS(kill(servers[i].pid, SIGTERM));
        status = wait_exit(&servers[i], 15000);
        server_pids[i] = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            FAIL("%s: exit status 0x%x after SIGTERM:\n%s", serv_name[i], status, servers[i].text);
        for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++)
            if (contains_ci(servers[i].text, bad[b]))
                FAIL("%s said '%s':\n%s", serv_name[i], bad[b], servers[i].text);
        if (i == S_CONN) fprintf(stderr, "%s", strstr(servers[i].text, "conn-server: accepted"));
    }
}

/* ---- main ------------------------------------------------------------------------ */

static size_t parse_size(const char *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == 'K' || *end == 'k') v <<= 10;
    else if (*end == 'M' || *end == 'm') v <<= 20;
    return (size_t)v;
}

static void parse_args(int argc, char **argv) {
    static const struct option lo[] = {{"conns", 1, NULL, 'c'}, {"bytes", 1, NULL, 'b'}, {"loss", 1, NULL, 'l'},
                                       {"deadline", 1, NULL, 'd'}, {"bound", 1, NULL, 'B'}, {NULL, 0, NULL, 0}};
    int ch;
    if (argc < 3 || (strcmp(argv[1], "drop") != 0 && strcmp(argv[1], "reset") != 0)) {
        fprintf(stderr, "usage: %s drop|reset ECHO_BIN|- [--conns N] [--bytes N[K|M]] [--loss PCT]"
                        " [--deadline S] [--bound S]\n", argv[0]);
        exit(2);
    }
    opt.scen = strcmp(argv[1], "drop") == 0 ? SCEN_DROP : SCEN_RESET;
    opt.echo = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
    optind = 3;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'c') opt.per_pair = (unsigned)atoi(optarg);
        else if (ch == 'b') opt.bytes = parse_size(optarg);
        else if (ch == 'l') opt.loss = (unsigned)atoi(optarg);
        else if (ch == 'd') opt.deadline_s = (unsigned)atoi(optarg);
        else if (ch == 'B') opt.bound_s = (unsigned)atoi(optarg);
        else exit(2);
    }
    CHECK(opt.per_pair * NKIND * NSERV <= 900); /* ports 20000..20899; 0: the default */
    CHECK(opt.bytes >= 4096 && opt.loss < 100);
    if (opt.echo && access(opt.echo, X_OK) != 0) FAIL("%s: not an executable", opt.echo);
}

int main(int argc, char **argv) {
    census base[NSERV];
    uint64_t t0;
    parse_args(argc, argv);
    setvbuf(stderr, NULL, _IOLBF, 0);
    install_cleanup();
    alarm(opt.bound_s);
    check_tools();
    make_namespaces();
    make_link();
    need_nftables();
    start_servers();
    for (int i = 0; i < NSERV; i++)
        if (servers[i].pid > 0) base[i].fds = fd_census(servers[i].pid, &base[i].live, &base[i].dead);
    make_clients();
    load_rules(nclients);
    if (opt.scen == SCEN_DROP) try_netem();
    fprintf(stderr, "netloss-%s on %s: %u connections x %zu bytes (%s), deadline %u s each\n",
            opt.scen == SCEN_DROP ? "drop" : "reset", echo_model(), nclients, opt.bytes,
            opt.scen == SCEN_DROP ? "random drops" : "resets", opt.deadline_s);
    loop = test_loop();
    t0 = test_ms();
    run_clients();
    check_outcomes(test_ms() - t0);
    check_rules();
    print_tcpstat("client ns", tcp_stats(getpid()));
    print_tcpstat("server ns", tcp_stats(servers[S_CONN].pid));
    check_servers_settle(base);
    control_round();
    free_clients();
    test_loop_free(loop); /* -EBUSY if any op, watcher or timer were left */
    stop_servers();
    close(srv_ns);
    passed = 1;
    fprintf(stderr, "netloss-%s: ok in %llu ms\n", opt.scen == SCEN_DROP ? "drop" : "reset",
            (unsigned long long)(test_ms() - t0));
    return 0;
}
