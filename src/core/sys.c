/* The platform layer's functions (sys.h). */
#include <string.h>

#include "sys.h"

int iomux_socket_error(void) {
    return -iomux__sock_errno();
}

#ifndef _WIN32

int iomux__sys_init(void) {
    return 0;
}

ssize_t iomux__file_pread(iomux_fd file, void *buf, size_t len, int64_t off) {
    ssize_t n;
    do n = pread(file, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

ssize_t iomux__file_pwrite(iomux_fd file, const void *buf, size_t len, int64_t off) {
    ssize_t n;
    do n = pwrite(file, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int iomux__fd_close(iomux_fd fd) {
    return close(fd) == 0 ? 0 : -errno;
}

int iomux__socket_nb(int family) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int iomux__accept_nb(iomux_fd lfd) {
    int fd;
    do fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int iomux__set_nonblock(iomux_fd fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return -errno;
    return 0;
}

#else

int iomux__sys_init(void) {
    static volatile LONG done;
    WSADATA wd;
    if (done) return 0;
    /* WSAStartup counts its calls: a race here costs one more count. */
    if (WSAStartup(MAKEWORD(2, 2), &wd) != 0) return -EIO;
    done = 1;
    return 0;
}

/* A positioned read or write on the file's handle: the OVERLAPPED carries
 * the offset, and on a handle opened without FILE_FLAG_OVERLAPPED (the C
 * runtime's) the call completes before it returns. Such a call also moves
 * the handle's file position, which pread must not: it is put back (as
 * libuv does; a thread using the same fd's position meanwhile can see it
 * move). A handle without the access asked for is EBADF, as on POSIX. */
static ssize_t file_io(iomux_fd file, void *buf, size_t len, int64_t off, int write) {
    HANDLE h = (HANDLE)_get_osfhandle(file);
    LARGE_INTEGER zero, pos;
    OVERLAPPED ov;
    DWORD n = 0, want = len > 0x7fffffffu ? 0x7fffffffu : (DWORD)len, err = 0;
    BOOL ok, restore;
    if (h == INVALID_HANDLE_VALUE) return -EBADF;
    zero.QuadPart = 0;
    restore = SetFilePointerEx(h, zero, &pos, FILE_CURRENT);
    memset(&ov, 0, sizeof(ov));
    ov.Offset = (DWORD)((uint64_t)off & 0xffffffffu);
    ov.OffsetHigh = (DWORD)((uint64_t)off >> 32);
    ok = write ? WriteFile(h, buf, want, &n, &ov) : ReadFile(h, buf, want, &n, &ov);
    if (!ok) err = GetLastError();
    if (restore) SetFilePointerEx(h, pos, NULL, FILE_BEGIN);
    if (ok || err == ERROR_HANDLE_EOF) return ok ? (ssize_t)n : 0;
    return err == ERROR_ACCESS_DENIED ? -EBADF : -iomux__errno_from_win(err);
}

ssize_t iomux__file_pread(iomux_fd file, void *buf, size_t len, int64_t off) {
    return file_io(file, buf, len, off, 0);
}

ssize_t iomux__file_pwrite(iomux_fd file, const void *buf, size_t len, int64_t off) {
    return file_io(file, (void *)(uintptr_t)buf, len, off, 1);
}

int iomux__fd_close(iomux_fd fd) {
    if (closesocket((SOCKET)fd) == 0) return 0;
    if (WSAGetLastError() != WSAENOTSOCK) return -iomux__sock_errno();
    return _close(fd) == 0 ? 0 : -errno;
}

int iomux__set_nonblock(iomux_fd fd) {
    u_long on = 1;
    if (ioctlsocket((SOCKET)fd, FIONBIO, &on) != 0) return -iomux__sock_errno();
    /* Sockets are not inherited by child processes unless asked for. */
    SetHandleInformation((HANDLE)(uintptr_t)fd, HANDLE_FLAG_INHERIT, 0);
    return 0;
}

/* A socket just made: non-blocking and not inherited, or closed. */
static int sock_adopt(SOCKET s) {
    int rc;
    if (s == INVALID_SOCKET) return -iomux__sock_errno();
    rc = iomux__set_nonblock((iomux_fd)s);
    if (rc < 0) {
        closesocket(s);
        return rc;
    }
    return (int)s;
}

int iomux__socket_nb(int family) {
    return sock_adopt(socket(family, SOCK_STREAM, IPPROTO_TCP));
}

int iomux__accept_nb(iomux_fd lfd) {
    return sock_adopt(accept((SOCKET)lfd, NULL, NULL));
}

/* Winsock, Win32 and the NTSTATUS-derived errors an overlapped completion
 * reports, mapped to the errno names Linux gives for the same event. */
int iomux__errno_from_win(unsigned long err) {
    switch (err) {
    case 0:
        return 0;
    case WSAEWOULDBLOCK:
    case WSA_IO_PENDING: /* == ERROR_IO_PENDING */
        return EAGAIN;
    case WSAEINTR:
        return EINTR;
    case WSAEBADF:
    case WSAENOTSOCK:
    case ERROR_INVALID_HANDLE:
        return err == WSAENOTSOCK ? ENOTSOCK : EBADF;
    case WSAEACCES:
    case ERROR_ACCESS_DENIED:
        return EACCES;
    case WSAEFAULT:
    case ERROR_NOACCESS:
        return EFAULT;
    case WSAEINVAL:
    case ERROR_INVALID_PARAMETER:
        return EINVAL;
    case WSAEMFILE:
    case ERROR_TOO_MANY_OPEN_FILES:
        return EMFILE;
    case WSAEINPROGRESS:
        return EINPROGRESS;
    case WSAEALREADY:
        return EALREADY;
    case WSAEMSGSIZE:
        return EMSGSIZE;
    case WSAEPROTONOSUPPORT:
        return EPROTONOSUPPORT;
    case WSAEOPNOTSUPP:
    case ERROR_NOT_SUPPORTED:
        return ENOTSUP;
    case WSAEAFNOSUPPORT:
        return EAFNOSUPPORT;
    case WSAEADDRINUSE:
        return EADDRINUSE;
    case WSAEADDRNOTAVAIL:
        return EADDRNOTAVAIL;
    case WSAENETDOWN:
        return ENETDOWN;
    case WSAENETUNREACH:
    case ERROR_NETWORK_UNREACHABLE:
        return ENETUNREACH;
    case WSAEHOSTUNREACH:
    case ERROR_HOST_UNREACHABLE:
        return EHOSTUNREACH;
    case WSAECONNABORTED:
    case ERROR_CONNECTION_ABORTED:
    case ERROR_REQUEST_ABORTED:
        return ECONNABORTED;
    case WSAECONNRESET:
    case WSAENETRESET:
    case ERROR_NETNAME_DELETED:
        return ECONNRESET;
    case WSAESHUTDOWN:
    case ERROR_BROKEN_PIPE:
    case ERROR_NO_DATA:
    case ERROR_PIPE_NOT_CONNECTED:
        return EPIPE;
    case ERROR_CONNECTION_INVALID:
        return ENOTCONN;
    case ERROR_DUP_NAME:
        return EADDRINUSE;
    case WSAENOBUFS:
        return ENOBUFS;
    case WSAEISCONN:
        return EISCONN;
    case WSAENOTCONN:
        return ENOTCONN;
    case WSAETIMEDOUT:
    case ERROR_SEM_TIMEOUT:
    case WAIT_TIMEOUT:
        return ETIMEDOUT;
    case WSAECONNREFUSED:
    case ERROR_CONNECTION_REFUSED:
        return ECONNREFUSED;
    case ERROR_OPERATION_ABORTED: /* == WSA_OPERATION_ABORTED */
        return ECANCELED;
    case ERROR_NOT_ENOUGH_MEMORY: /* == WSA_NOT_ENOUGH_MEMORY */
    case ERROR_OUTOFMEMORY:
        return ENOMEM;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
        return ENOENT;
    case ERROR_HANDLE_EOF:
        return ENODATA;
    case ERROR_DISK_FULL:
        return ENOSPC;
    default:
        return EIO;
    }
}

/* A listener on 127.0.0.1, a connect to it, an accept: the pair a Windows
 * program uses where POSIX has socketpair(2). The listener is closed at
 * once, so nothing else can connect in between and stay. */
int iomux__sock_pair(iomux_fd fds[2]) {
    struct sockaddr_in a;
    int len = sizeof(a), rc = 0;
    SOCKET l, c = INVALID_SOCKET, s = INVALID_SOCKET;
    l = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (l == INVALID_SOCKET) return -iomux__sock_errno();
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(l, (struct sockaddr *)&a, &len) != 0 ||
        listen(l, 1) != 0)
        rc = -iomux__sock_errno();
    if (rc == 0 && (c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)) == INVALID_SOCKET) rc = -iomux__sock_errno();
    if (rc == 0 && connect(c, (struct sockaddr *)&a, sizeof(a)) != 0) rc = -iomux__sock_errno();
    if (rc == 0 && (s = accept(l, NULL, NULL)) == INVALID_SOCKET) rc = -iomux__sock_errno();
    closesocket(l);
    if (rc == 0) {
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, (char *)&one, sizeof(one));
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (char *)&one, sizeof(one));
        fds[0] = (iomux_fd)s;
        fds[1] = (iomux_fd)c;
        return 0;
    }
    if (c != INVALID_SOCKET) closesocket(c);
    if (s != INVALID_SOCKET) closesocket(s);
    return rc;
}

#endif
