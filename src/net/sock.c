/* Listening sockets: numeric host parsing (no name lookups: getaddrinfo
 * blocks), socket options, bind and listen. */
#include <errno.h>
#include <string.h>
#ifndef _WIN32
#include <arpa/inet.h>
#endif

#include "iomux/net.h"
#include "../core/sys.h"

typedef union any_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
} any_addr;

/* Parses a numeric host, "[v6]" included; NULL or "" is 0.0.0.0. Returns
 * the address length, or -EINVAL. */
static int parse_host(const char *host, int port, any_addr *a) {
    char v6[INET6_ADDRSTRLEN + 2];
    size_t n;
    memset(a, 0, sizeof(*a));
    if (!host || !*host) host = "0.0.0.0";
    if (inet_pton(AF_INET, host, &a->in4.sin_addr) == 1) {
        a->in4.sin_family = AF_INET;
        a->in4.sin_port = htons((uint16_t)port);
        return (int)sizeof(a->in4);
    }
    n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(v6)) {
        memcpy(v6, host + 1, n - 2);
        v6[n - 2] = '\0';
        host = v6;
    }
    if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
        a->in6.sin6_family = AF_INET6;
        a->in6.sin6_port = htons((uint16_t)port);
        return (int)sizeof(a->in6);
    }
    return -EINVAL;
}

static int set_opt(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, IOMUX__SOCKOPT(&value), sizeof(value)) < 0 ? -iomux__sock_errno() : 0;
}

#ifdef _WIN32
/* On Windows SO_REUSEADDR lets another socket bind the same port and take
 * its connections; SO_EXCLUSIVEADDRUSE forbids that. (A port left in
 * TIME_WAIT does not stop a listener's bind there.) No SO_REUSEPORT. */
#define REUSE_ADDR SO_EXCLUSIVEADDRUSE
#else
#define REUSE_ADDR SO_REUSEADDR
#endif

static int configure(int fd, int family, const iomux_listen_opts *o) {
    int rc = set_opt(fd, SOL_SOCKET, REUSE_ADDR, 1);
#ifdef SO_REUSEPORT
    if (rc == 0 && o->reuseport) rc = set_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
#else
    if (rc == 0 && o->reuseport) rc = -ENOTSUP;
#endif
    if (rc == 0 && family == AF_INET6) rc = set_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6only ? 1 : 0);
    return rc;
}


int iomux_listen(const char *host, int port, const iomux_listen_opts *opts) {
    static const iomux_listen_opts defaults;
    const iomux_listen_opts *o = opts ? opts : &defaults;
    any_addr a;
    int len, fd, rc;
    if (port < 0 || port > 65535 || o->backlog < 0) return -EINVAL;
    len = parse_host(host, port, &a);
    if (len < 0) return len;
    if ((rc = iomux__sys_init()) < 0) return rc; /* WSAStartup, before the first socket call */
    fd = iomux__socket_nb(a.sa.sa_family);
    if (fd < 0) return fd;
    rc = configure(fd, a.sa.sa_family, o);
    if (rc == 0 && bind(fd, &a.sa, (socklen_t)len) < 0) rc = -iomux__sock_errno();
    if (rc == 0 && listen(fd, o->backlog ? o->backlog : SOMAXCONN) < 0) rc = -iomux__sock_errno();
    if (rc < 0) {
        iomux__sock_close(fd);
        return rc;
    }
    return fd;
}

int iomux_listen_port(iomux_fd fd) {
    any_addr a;
    socklen_t len = sizeof(a);
    if (fd < 0) return -EBADF; /* Winsock would say WSAENOTSOCK */
    if (getsockname(fd, &a.sa, &len) < 0) return -iomux__sock_errno();
    if (a.sa.sa_family == AF_INET) return ntohs(a.in4.sin_port);
    if (a.sa.sa_family == AF_INET6) return ntohs(a.in6.sin6_port);
    return -EAFNOSUPPORT;
}
