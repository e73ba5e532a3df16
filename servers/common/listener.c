/* listener.c — the listening TCP socket (see listener.h). */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* addr:port into ss; the address length, or 0 when addr is not a numeric address. */
static socklen_t parse_addr(const char *addr, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	if (strchr(addr, ':')) {
		if (inet_pton(AF_INET6, addr, &in6->sin6_addr) != 1)
			return 0;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		return sizeof(*in6);
	}
	if (inet_pton(AF_INET, addr, &in4->sin_addr) != 1)
		return 0;
	in4->sin_family = AF_INET;
	in4->sin_port = htons((uint16_t)port);
	return sizeof(*in4);
}

int listener_open(const char *addr, int port, int backlog, int flags, int *bound_port)
{
	struct sockaddr_storage ss;
	socklen_t len = parse_addr(addr, port, &ss);
	if (len == 0)
		return LISTENER_BAD_ADDR;
	int type = SOCK_STREAM | SOCK_CLOEXEC | (flags & LISTENER_NONBLOCK ? SOCK_NONBLOCK : 0);
	int fd = socket(ss.ss_family, type, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	if (flags & LISTENER_NODELAY)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	*bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						     : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}
