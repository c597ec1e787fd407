/* echoload: the echo workloads' load generator, and a plain epoll echo server.
 *
 * Built on the fly by fastloop._bench.cload (cc -O2, Linux: it needs epoll). Two modes:
 *
 *   echoload client
 *       Reads commands on stdin, one per line, and answers each with one JSON line:
 *           echo tcp HOST PORT CONNS SIZE TRIPS
 *           echo udp HOST PORT CONNS SIZE TRIPS
 *           echo unix CONNS SIZE TRIPS PATH
 *       opens CONNS connections (UDP: connected sockets) and on each does TRIPS round
 *       trips, one in flight: send a SIZE-byte message, read the whole echo, compare
 *       every byte. Each message carries its connection and trip number, so a stale,
 *       duplicated or reordered echo is caught. Answer:
 *           {"trips": N, "bytes": B, "client_seconds": S, "client_cpu_seconds": C}
 *       or {"error": "..."}. This is what fastloop._bench.echo_client does in Python,
 *       at a fraction of its CPU per round trip, so that the server is the bottleneck.
 *
 *   echoload server tcp|udp|unix [PATH]
 *       A single-threaded epoll echo server on 127.0.0.1 (port chosen by the kernel)
 *       or on the Unix socket PATH: the ceiling the loops are compared with. Prints
 *       "ready PORT" once listening. Each line on stdin is answered with the server's
 *       CPU time so far ("cpu MICROSECONDS", user + system); EOF on stdin ends it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define UDP_MAX 65507
#define READ_SIZE (256 * 1024) /* what asyncio's transports read per readiness */
#define STALL_MS 20000         /* no progress for this long: the server is stuck */
#define MAX_EVENTS 64

static char error_text[512];

static int fail(const char *what) {
    snprintf(error_text, sizeof error_text, "%s: %s", what, strerror(errno));
    return -1;
}

static int set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? fail("fcntl") : 0;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
           + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A socket address from the command's "HOST PORT" or "PATH". */
struct address {
    struct sockaddr_storage sa;
    socklen_t len;
    int family, type;
};

static int parse_address(const char *kind, const char *host, int port, struct address *a) {
    memset(a, 0, sizeof *a);
    if (strcmp(kind, "unix") == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
        if (strlen(host) >= sizeof un->sun_path) {
            snprintf(error_text, sizeof error_text, "Unix socket path too long");
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, host);
        a->len = sizeof *un;
        a->family = AF_UNIX;
        a->type = SOCK_STREAM;
        return 0;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)&a->sa;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
        snprintf(error_text, sizeof error_text, "not an IPv4 address: %s", host);
        return -1;
    }
    a->len = sizeof *in;
    a->family = AF_INET;
    if (strcmp(kind, "tcp") == 0)
        a->type = SOCK_STREAM;
    else if (strcmp(kind, "udp") == 0)
        a->type = SOCK_DGRAM;
    else {
        snprintf(error_text, sizeof error_text, "unknown kind %s", kind);
        return -1;
    }
    return 0;
}

/* --- the client ------------------------------------------------------------------- */

struct conn {
    int fd;
    unsigned index, trip;
    size_t sent, received;
    int writing;                 /* waiting for EPOLLOUT to send the rest */
    unsigned char *out, *in;     /* the message, and where its echo is read to */
};

static void stamp(struct conn *c, size_t size) {
    /* Connection and trip number, little-endian, as echo_client.py's header. */
    if (size < 8)
        return;
    for (int i = 0; i < 4; i++) {
        c->out[i] = (unsigned char)(c->index >> (8 * i));
        c->out[4 + i] = (unsigned char)(c->trip >> (8 * i));
    }
}

/* Send what the socket takes of the message; -1 on error. */
static int send_some(struct conn *c, size_t size) {
    while (c->sent < size) {
        ssize_t n = send(c->fd, c->out + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return fail("send");
        }
        c->sent += (size_t)n;
    }
    return 0;
}

static int watch(int ep, struct conn *c, int op, int want_write) {
    struct epoll_event ev = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0), .data.ptr = c};
    c->writing = want_write;
    return epoll_ctl(ep, op, c->fd, &ev) < 0 ? fail("epoll_ctl") : 0;
}

static int start_trip(int ep, struct conn *c, size_t size) {
    stamp(c, size);
    c->sent = c->received = 0;
    if (send_some(c, size) < 0)
        return -1;
    int want_write = c->sent < size;
    return want_write != c->writing ? watch(ep, c, EPOLL_CTL_MOD, want_write) : 0;
}

/* One readiness of c: progress on its trip. Returns 1 when its last trip is done. */
static int on_event(int ep, struct conn *c, uint32_t events, int datagram, size_t size,
                    unsigned trips, unsigned long long *echoed) {
    if (events & EPOLLOUT && c->sent < size) {
        if (send_some(c, size) < 0)
            return -1;
        if (c->sent == size && watch(ep, c, EPOLL_CTL_MOD, 0) < 0)
            return -1;
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return 0;
    ssize_t n = datagram ? recv(c->fd, c->in, UDP_MAX + 1, 0)
                         : recv(c->fd, c->in + c->received, size - c->received, 0);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : fail("recv");
    if (n == 0 && !datagram) {
        snprintf(error_text, sizeof error_text,
                 "connection %u: server closed it in trip %u after %zu of %zu bytes",
                 c->index, c->trip, c->received, size);
        return -1;
    }
    if (datagram && (size_t)n != size) {
        snprintf(error_text, sizeof error_text,
                 "socket %u: trip %u: a %zd-byte datagram came back for %zu sent",
                 c->index, c->trip, n, size);
        return -1;
    }
    c->received += (size_t)n;
    if (c->received > c->sent) {
        snprintf(error_text, sizeof error_text, "connection %u: %zu bytes echoed, %zu sent",
                 c->index, c->received, c->sent);
        return -1;
    }
    if (c->received < size)
        return 0;
    if (memcmp(c->in, c->out, size) != 0) {
        snprintf(error_text, sizeof error_text,
                 "connection %u: trip %u: the echo differs from the message sent",
                 c->index, c->trip);
        return -1;
    }
    *echoed += size;
    if (++c->trip == trips)
        return 1;
    return start_trip(ep, c, size) < 0 ? -1 : 0;
}

static int open_conn(const struct address *a, struct conn *c) {
    c->fd = socket(a->family, a->type, 0);
    if (c->fd < 0)
        return fail("socket");
    if (connect(c->fd, (const struct sockaddr *)&a->sa, a->len) < 0)
        return fail("connect");
    int one = 1;
    if (a->family == AF_INET && a->type == SOCK_STREAM)
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return set_nonblocking(c->fd);
}

/* One echo session; on success, fills *echoed and returns 0. */
static int echo_session(const struct address *a, unsigned nconns, size_t size,
                        unsigned trips, unsigned long long *echoed) {
    int datagram = a->type == SOCK_DGRAM, ep = -1, active = 0, result = -1;
    if (size == 0) {  /* an empty message has no echo to wait for */
        snprintf(error_text, sizeof error_text, "the message size must be at least 1");
        return -1;
    }
    if (datagram && size > UDP_MAX) {
        snprintf(error_text, sizeof error_text,
                 "a %zu-byte datagram is larger than UDP allows (%d)", size, UDP_MAX);
        return -1;
    }
    struct conn *conns = calloc(nconns, sizeof *conns);
    size_t in_size = datagram ? UDP_MAX + 1 : size;
    if (!conns)
        return fail("calloc");
    for (unsigned i = 0; i < nconns; i++)
        conns[i].fd = -1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        fail("epoll_create1");
        goto done;
    }
    for (unsigned i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->index = i;
        c->out = malloc(size ? size : 1);
        c->in = malloc(in_size ? in_size : 1);
        if (!c->out || !c->in) {
            fail("malloc");
            goto done;
        }
        for (size_t j = 0; j < size; j++)  /* different for each connection */
            c->out[j] = (unsigned char)(i * 31 + j);
        if (open_conn(a, c) < 0 || watch(ep, c, EPOLL_CTL_ADD, 0) < 0)
            goto done;
    }
    for (unsigned i = 0; i < nconns && trips; i++, active++)
        if (start_trip(ep, &conns[i], size) < 0)
            goto done;
    struct epoll_event events[MAX_EVENTS];
    while (active) {
        int n = epoll_wait(ep, events, MAX_EVENTS, STALL_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail("epoll_wait");
            goto done;
        }
        if (n == 0) {
            snprintf(error_text, sizeof error_text,
                     "no progress for %ds (%d connections still waiting)",
                     STALL_MS / 1000, active);
            goto done;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = events[k].data.ptr;
            int r = on_event(ep, c, events[k].events, datagram, size, trips, echoed);
            if (r < 0)
                goto done;
            if (r == 1) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                active--;
            }
        }
    }
    result = 0;
done:
    for (unsigned i = 0; i < nconns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].out);
        free(conns[i].in);
    }
    free(conns);
    if (ep >= 0)
        close(ep);
    return result;
}

/* Answer one command line (see the top of the file) on stdout. */
static void client_command(const char *line) {
    char kind[8], host[256];
    int port = 0;
    unsigned conns, trips;
    size_t size;
    int parsed, path_at = 0;
    if (strncmp(line, "echo unix ", 10) == 0) {
        /* The path is the rest of the line: it may hold spaces. */
        parsed = sscanf(line, "echo unix %u %zu %u %n", &conns, &size, &trips, &path_at) == 3
                 && path_at && snprintf(host, sizeof host, "%.*s",
                                        (int)strcspn(line + path_at, "\n"), line + path_at)
                               < (int)sizeof host;
        strcpy(kind, "unix");
    } else {
        parsed = sscanf(line, "echo %7s %255s %d %u %zu %u", kind, host, &port, &conns,
                        &size, &trips) == 6;
    }
    struct address a;
    unsigned long long echoed = 0;
    double started = now(), cpu = cpu_seconds();
    if (!parsed)
        snprintf(error_text, sizeof error_text, "unknown command");
    if (!parsed || parse_address(kind, host, port, &a) < 0
            || echo_session(&a, conns, size, trips, &echoed) < 0) {
        for (char *p = error_text; *p; p++)  /* keep the JSON string valid */
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
                *p = ' ';
        printf("{\"error\": \"%s\"}\n", error_text);
    } else {
        printf("{\"trips\": %llu, \"bytes\": %llu, \"client_seconds\": %.6f, "
               "\"client_cpu_seconds\": %.6f}\n", (unsigned long long)conns * trips,
               echoed, now() - started, cpu_seconds() - cpu);
    }
    fflush(stdout);
}

static int client_main(void) {
    char line[1024];
    while (fgets(line, sizeof line, stdin))
        if (line[0] != '\n')
            client_command(line);
    return 0;
}

/* --- the server ------------------------------------------------------------------- */

/* A stream connection: what it read and has not yet written back. */
struct peer {
    int fd;
    int writing;  /* waiting for EPOLLOUT (instead of EPOLLIN) to send the rest */
    size_t off, len;
    char buf[READ_SIZE];
};

static int peer_events(int ep, struct peer *p, int op, int writing) {
    struct epoll_event ev = {.events = writing ? EPOLLOUT : EPOLLIN, .data.ptr = p};
    p->writing = writing;
    return epoll_ctl(ep, op, p->fd, &ev);
}

/* One readiness of p: read once (unless a write is pending), echo it; 1 when p is
 * done. One recv and one send per message, as a plain echo server does. */
static int serve_peer(int ep, struct peer *p) {
    if (!p->writing) {
        ssize_t n = recv(p->fd, p->buf, sizeof p->buf, 0);
        if (n < 0)
            return errno != EAGAIN;
        if (n == 0)
            return 1;  /* EOF: the client is done with it */
        p->off = 0;
        p->len = (size_t)n;
    }
    while (p->off < p->len) {
        ssize_t n = send(p->fd, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN)
            return !p->writing && peer_events(ep, p, EPOLL_CTL_MOD, 1) < 0;
        if (n < 0)
            return 1;
        p->off += (size_t)n;
    }
    return p->writing && peer_events(ep, p, EPOLL_CTL_MOD, 0) < 0;
}

static void answer_cpu(void) {
    printf("cpu %.0f\n", cpu_seconds() * 1e6);
    fflush(stdout);
}

static int server_main(const char *kind, const char *path) {
    struct address a;
    if (parse_address(kind, path ? path : "127.0.0.1", 0, &a) < 0) {
        fprintf(stderr, "echoload: %s\n", error_text);
        return 2;
    }
    int lfd = socket(a.family, a.type, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a.sa, a.len) < 0
            || (a.type == SOCK_STREAM && listen(lfd, 128) < 0) || set_nonblocking(lfd) < 0) {
        fail("listen");
        fprintf(stderr, "echoload: %s\n", error_text);
        return 1;
    }
    getsockname(lfd, (struct sockaddr *)&a.sa, &a.len);
    printf("ready %d\n", a.family == AF_INET
           ? ntohs(((struct sockaddr_in *)&a.sa)->sin_port) : 0);
    fflush(stdout);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static char control;  /* stdin's tag: CPU queries, EOF to stop */
    ev.data.ptr = &control;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    static char datagram[UDP_MAX + 1];
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int k = 0; k < n; k++) {
            struct peer *p = events[k].data.ptr;
            if ((void *)p == &control) {
                char line[64];
                if (read(0, line, sizeof line) <= 0)
                    return 0;
                answer_cpu();
            } else if (p == NULL && a.type == SOCK_DGRAM) {
                struct sockaddr_storage from;
                socklen_t len = sizeof from;
                ssize_t got;
                while ((got = recvfrom(lfd, datagram, sizeof datagram, 0,
                                       (struct sockaddr *)&from, &len)) >= 0) {
                    sendto(lfd, datagram, (size_t)got, 0, (struct sockaddr *)&from, len);
                    len = sizeof from;
                }
            } else if (p == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    struct peer *peer = calloc(1, sizeof *peer);
                    peer->fd = fd;
                    if (a.family == AF_INET)
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    peer_events(ep, peer, EPOLL_CTL_ADD, 0);
                }
            } else if (serve_peer(ep, p)) {
                close(p->fd);
                free(p);
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "client") == 0)
        return client_main();
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "server") == 0)
        return server_main(argv[2], argc == 4 ? argv[3] : NULL);
    fprintf(stderr, "usage: echoload client | echoload server tcp|udp|unix [PATH]\n");
    return 2;
}
