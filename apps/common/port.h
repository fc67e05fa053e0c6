/* apps/common/port.h — the few socket calls the apps make themselves,
 * spelled once for POSIX and once for Winsock (mingw-w64), so the apps'
 * files stay free of #ifdefs. On Windows an iomux_fd is a SOCKET: close()
 * would take it for a C runtime fd, and errno does not see socket errors.
 * (The library has its own layer, src/core/sys.h; apps do not include it.) */
#ifndef IOMUX_APP_PORT_H
#define IOMUX_APP_PORT_H

#include <errno.h>

#include <iomux.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
/* Sockets given to a loop are non-blocking; Windows raises no SIGPIPE. */
#define MSG_DONTWAIT 0
#define MSG_NOSIGNAL 0
/* setsockopt's value is a char * there */
#define APP_SOCKOPT(p) ((const char *)(p))
#else
#define APP_SOCKOPT(p) (p)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#ifdef _WIN32
static inline int app_sock_close(iomux_fd fd) {
    return closesocket((SOCKET)fd) == 0 ? 0 : -1;
}

/* accept(2) of a non-blocking socket, non-blocking itself: fd or -1 (the
 * reason from app_sock_errno). */
static inline int app_accept_nb(iomux_fd lfd) {
    u_long on = 1;
    SOCKET s = accept((SOCKET)lfd, NULL, NULL);
    if (s == INVALID_SOCKET) return -1;
    if (ioctlsocket(s, FIONBIO, &on) != 0) {
        int err = WSAGetLastError();
        closesocket(s);
        WSASetLastError(err);
        return -1;
    }
    return (int)s;
}
#else
static inline int app_sock_close(iomux_fd fd) {
    return close(fd);
}

static inline int app_accept_nb(iomux_fd lfd) {
    return accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
#endif

/* The positive errno of the last failed socket call (Winsock's mapped). */
static inline int app_sock_errno(void) {
    return -iomux_socket_error();
}

#endif /* IOMUX_APP_PORT_H */
