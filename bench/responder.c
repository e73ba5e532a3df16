/* responder: the minimal HTTP server of bench/loadgen_vs_wrk.py. One epoll loop answers every
 * request (anything ending in a blank line) with the same pre-built 1 KiB response from memory,
 * so the client, not the server, is what the benchmark measures.
 * Usage: responder PORT   (prints "listening 127.0.0.1:PORT" once it accepts) */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define BODY 1024

static char response[BODY + 128];
static size_t response_len;

/* Per-connection: the tail of a possibly split "\r\n\r\n" and responses still owed. */
struct peer { char tail[3]; int tail_len; unsigned owed; size_t sent; };
static struct peer peers[MAX_FD];

static void build_response(void)
{
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", BODY);
    memset(response + n, 'x', BODY);
    response_len = (size_t)n + BODY;
}

/* Count request ends in buf, carrying up to three bytes across reads. */
static unsigned count_requests(struct peer *p, const char *buf, size_t n)
{
    char joined[3 + 65536];
    memcpy(joined, p->tail, (size_t)p->tail_len);
    memcpy(joined + p->tail_len, buf, n);
    size_t len = (size_t)p->tail_len + n;
    unsigned count = 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (joined[i] == '\r' && memcmp(joined + i, "\r\n\r\n", 4) == 0)
            count++, i += 3;
    p->tail_len = len < 3 ? (int)len : 3;
    memcpy(p->tail, joined + len - (size_t)p->tail_len, (size_t)p->tail_len);
    return count;
}

/* Write what is owed; returns -1 when the peer is gone. */
static int flush_owed(int fd, struct peer *p)
{
    while (p->owed) {
        ssize_t k = send(fd, response + p->sent, response_len - p->sent, MSG_NOSIGNAL);
        if (k < 0)
            return errno == EAGAIN ? 0 : -1;
        p->sent += (size_t)k;
        if (p->sent == response_len) {
            p->sent = 0;
            p->owed--;
        }
    }
    return 0;
}

static void on_readable(int ep, int fd)
{
    static char buf[65536];
    struct peer *p = &peers[fd];
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k > 0) {
            p->owed += count_requests(p, buf, (size_t)k);
            continue;
        }
        if (k < 0 && errno == EAGAIN && flush_owed(fd, p) == 0)
            return;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        return;
    }
}

static void accept_all(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0)
            return;
        if (fd >= MAX_FD) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        memset(&peers[fd], 0, sizeof peers[fd]);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: responder PORT\n");
        return 2;
    }
    build_response();
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) {
        perror("responder: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[512];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("listening 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd)
                accept_all(ep, lfd);
            else
                on_readable(ep, fd);
        }
    }
}
