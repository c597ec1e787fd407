/* Socket and pipe syscalls of the transports (transport.pyx).
 *
 * Everything here is non-blocking I/O on fds the loop owns, so the GIL is kept:
 * releasing it costs more than the syscall, which never sleeps.
 *
 * - MSG_NOSIGNAL turns a write to a connection the peer reset into EPIPE instead of
 *   SIGPIPE. CPython ignores SIGPIPE at startup, but an embedding application may
 *   not; where the flag does not exist (older macOS) it is 0 and the process-wide
 *   setting decides, exactly as for socket.send().
 * - EAGAIN and EWOULDBLOCK may differ (POSIX allows it); EINTR means "try again on
 *   the next readiness event", as asyncio treats InterruptedError.
 */
#ifndef FASTLOOP_NET_H
#define FASTLOOP_NET_H

#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0
#endif

/* Buffers gathered by one sendmsg(). POSIX guarantees IOV_MAX >= 16; Linux and
 * macOS allow 1024. More only helps when that many small writes queued up. */
#define FL_IOV_BATCH 64

static inline int fl_would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

static inline Py_ssize_t fl_send(int fd, const char *p, Py_ssize_t n)
{
    return (Py_ssize_t)send(fd, p, (size_t)n, MSG_NOSIGNAL);
}

static inline Py_ssize_t fl_recv(int fd, char *p, Py_ssize_t n)
{
    return (Py_ssize_t)recv(fd, p, (size_t)n, 0);
}

/* What closing a TCP socket with unread bytes in it does: reset the connection
 * (RST, the unsent bytes dropped) instead of ending it with a FIN. For bytes an
 * io_uring receive took from the socket that the protocol never got. */
static inline int fl_reset_on_close(int fd)
{
    struct linger abortive = {1, 0};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
}

static inline Py_ssize_t fl_sendv(int fd, struct iovec *iov, int n)
{
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    return (Py_ssize_t)sendmsg(fd, &msg, MSG_NOSIGNAL);
}

static inline Py_ssize_t fl_recvfrom(int fd, char *p, Py_ssize_t n,
                                     struct sockaddr_storage *addr, socklen_t *addrlen)
{
    *addrlen = sizeof(*addr);
    return (Py_ssize_t)recvfrom(fd, p, (size_t)n, 0, (struct sockaddr *)addr, addrlen);
}

static inline Py_ssize_t fl_sendto(int fd, const char *p, Py_ssize_t n,
                                   const struct sockaddr_storage *addr, socklen_t addrlen)
{
    return (Py_ssize_t)sendto(fd, p, (size_t)n, 0, (const struct sockaddr *)addr, addrlen);
}

static inline int fl_same_sockaddr(const struct sockaddr_storage *a, socklen_t alen,
                                   const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* The sender's address of an AF_INET/AF_INET6 recvfrom(), as socket.recvfrom()
 * gives it (makesockaddr in CPython's Modules/socketmodule.c): (host, port), or
 * (host, port, flowinfo, scope_id) for IPv6, the host from inet_ntop(); None for
 * an empty address. Any other family is the caller's mistake: SystemError. */
static PyObject *fl_inet_sockaddr(const struct sockaddr_storage *addr, socklen_t addrlen)
{
    char host[INET6_ADDRSTRLEN];
    if (addrlen == 0) {
        Py_RETURN_NONE;
    }
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(siII)", host, (int)ntohs(a->sin6_port),
                             (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    PyErr_Format(PyExc_SystemError, "unexpected address family %d", (int)addr->ss_family);
    return NULL;
}

static inline Py_ssize_t fl_read(int fd, char *p, Py_ssize_t n)
{
    return (Py_ssize_t)read(fd, p, (size_t)n);
}

static inline Py_ssize_t fl_write(int fd, const char *p, Py_ssize_t n)
{
    return (Py_ssize_t)write(fd, p, (size_t)n);
}

/* The fd of a socket.socket without a method call. CPython's socket object
 * (Modules/socketmodule.h, PySocketSockObject) starts with the object header
 * followed by the fd (SOCKET_T, an int on POSIX), and socket.socket only adds
 * __slots__ after the C struct. transport.pyx checks this layout against
 * fileno() once at import and falls back to fileno() if it ever differs. */
typedef struct {
    PyObject_HEAD
    int sock_fd;
} fl_sockobject_head;

static inline int fl_sock_fd(PyObject *sock)
{
    return ((fl_sockobject_head *)sock)->sock_fd;
}

#endif /* FASTLOOP_NET_H */
