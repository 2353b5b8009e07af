/* HTTP/1.0 over a UNIX socket, blocking or read as it arrives; bounded response size. */
#include "httpc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define RESP_MAX (8 * 1024 * 1024)

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int httpc_call_start(struct httpc_call *c, const char *socket_path, const char *method,
		     const char *path, const char *body)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, socket_path);
	char head[1024];
	size_t blen = body ? strlen(body) : 0;
	int hn = snprintf(head, sizeof(head),
			  "%s %s HTTP/1.0\r\nHost: nestord\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\n\r\n",
			  method, path, blen);
	if (hn < 0 || hn >= (int)sizeof(head))
		return -ENAMETOOLONG;
	/* non-blocking connect: a full backlog is -EAGAIN now, not a wait (the caller's loop) */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int fl = -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || (fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	/* A server may refuse early (413) and close: read its answer even if a write failed. */
	if (write_all(fd, head, (size_t)hn) == 0)
		write_all(fd, body, blen);
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	c->fd = fd;
	return 0;
}

/* The whole response in C->buf: its status, and its body into *RESP_BODY. */
static int parse(struct httpc_call *c, char **resp_body)
{
	c->buf[c->len] = '\0';
	char *sep = strstr(c->buf, "\r\n\r\n");
	if (!sep)
		return -ECONNRESET; /* the server went away before it answered (restarting?) */
	int status = 0;
	if (sscanf(c->buf, "HTTP/%*d.%*d %d", &status) != 1 || status < 100)
		return -EPROTO;
	if (resp_body) {
		*resp_body = strdup(sep ? sep + 4 : "");
		if (!*resp_body)
			return -ENOMEM;
	}
	return status;
}

int httpc_call_read(struct httpc_call *c, char **resp_body)
{
	int r;
	if (c->fd < 0)
		return -EBADF;
	for (;;) {
		if (c->len == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 8192;
			r = -EMSGSIZE;
			if (cap > RESP_MAX)
				goto done;
			char *nb = realloc(c->buf, cap + 1);
			r = -ENOMEM;
			if (!nb)
				goto done;
			c->buf = nb;
			c->cap = cap;
		}
		ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			r = -errno;
			goto done;
		}
		if (n == 0)
			break;
		c->len += (size_t)n;
	}
	r = parse(c, resp_body);
done:
	httpc_call_cancel(c);
	return r;
}

void httpc_call_cancel(struct httpc_call *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
}

int httpc_request(const char *socket_path, const char *method, const char *path, const char *body,
		  int timeout_ms, char **resp_body)
{
	struct httpc_call c;
	int r = httpc_call_start(&c, socket_path, method, path, body);
	while (r == 0) {
		struct pollfd pfd = {c.fd, POLLIN, 0};
		int pr = poll(&pfd, 1, timeout_ms);
		if (pr == 0) {
			httpc_call_cancel(&c);
			return -ETIMEDOUT;
		}
		if (pr < 0 && errno == EINTR)
			continue;
		r = httpc_call_read(&c, resp_body);
	}
	return r;
}
