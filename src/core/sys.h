/* The platform layer: what differs between POSIX sockets and Winsock, in
 * one place, so the core, the backends and src/net call one set of names.
 * On Windows an iomux_fd is a SOCKET (kernel handles fit in 32 bits, so the
 * value survives the cast to int) or, for file ops, a C runtime fd. */
#ifndef IOMUX_SYS_H
#define IOMUX_SYS_H

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

#include "iomux.h"

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>
#include <io.h>
/* Winsock has neither: a socket given to the loop is non-blocking, and
 * Windows raises no SIGPIPE. */
#define MSG_DONTWAIT 0
#define MSG_NOSIGNAL 0
#define IOMUX__SOCKOPT(p) ((char *)(p))
typedef WSAPOLLFD iomux__pollfd;
typedef ULONG iomux__nfds;
#define iomux__poll WSAPoll
#else
#include <poll.h>
typedef struct pollfd iomux__pollfd;
typedef nfds_t iomux__nfds;
#define iomux__poll poll
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#define IOMUX__SOCKOPT(p) (p)
#endif

#ifdef _WIN32
/* Windows error codes (GetLastError, WSAGetLastError, NTSTATUS-derived
 * completion errors) as the positive errno values iomux reports. */
int iomux__errno_from_win(unsigned long err);
/* A connected pair of loopback TCP sockets (Windows has no socketpair). */
int iomux__sock_pair(iomux_fd fds[2]);
static inline int iomux__sock_errno(void) {
    return iomux__errno_from_win((unsigned long)WSAGetLastError());
}
static inline int iomux__sock_close(iomux_fd fd) {
    return closesocket((SOCKET)fd) == 0 ? 0 : -iomux__sock_errno();
}
#else
/* The positive errno of the last failed socket call. */
static inline int iomux__sock_errno(void) {
    return errno;
}
static inline int iomux__sock_close(iomux_fd fd) {
    return close(fd) == 0 ? 0 : -errno;
}
#endif

/* Non-blocking (and close-on-exec on POSIX): 0 or -errno. */
int iomux__set_nonblock(iomux_fd fd);

/* A new TCP socket of `family`, and one accepted from listener lfd; both
 * non-blocking and close-on-exec (not inherited): the fd, or -errno. */
int iomux__socket_nb(int family);
int iomux__accept_nb(iomux_fd lfd);

/* Once per process before the first socket call (WSAStartup); 0 or -errno. */
int iomux__sys_init(void);

/* pread / pwrite of a file fd (a C runtime fd on Windows): bytes, or -errno. */
ssize_t iomux__file_pread(iomux_fd file, void *buf, size_t len, int64_t off);
ssize_t iomux__file_pwrite(iomux_fd file, const void *buf, size_t len, int64_t off);

/* close(2) of what a Proactor op can name: a socket (Windows: closesocket,
 * then the C runtime's _close for a file fd). 0 or -errno. */
int iomux__fd_close(iomux_fd fd);

/* 1 if the last socket error means "try again later". */
static inline int iomux__would_block(int err) {
    return err == EAGAIN || err == EWOULDBLOCK;
}

#endif
