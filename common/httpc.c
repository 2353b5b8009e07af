/* Blocking HTTP/1.0 over a UNIX socket; bounded response size. */
#include "httpc.h"

#include <errno.h>
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

int httpc_request(const char *socket_path, const char *method, const char *path, const char *body,
		  int timeout_ms, char **resp_body)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, socket_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	char head[1024];
	size_t blen = body ? strlen(body) : 0;
	int hn = snprintf(head, sizeof(head),
			  "%s %s HTTP/1.0\r\nHost: nestord\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\n\r\n",
			  method, path, blen);
	int r = -ENAMETOOLONG;
	char *buf = NULL;
	if (hn < 0 || hn >= (int)sizeof(head))
		goto out;
	/* A server may refuse early (413) and close: read its answer even if a write failed. */
	if (write_all(fd, head, (size_t)hn) == 0)
		write_all(fd, body, blen);
	size_t len = 0, cap = 8192;
	buf = malloc(cap + 1);
	r = -ENOMEM;
	if (!buf)
		goto out;
	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int pr = poll(&pfd, 1, timeout_ms);
		if (pr == 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		if (pr < 0 && errno == EINTR)
			continue;
		if (len == cap) {
			r = -EMSGSIZE;
			if (cap >= RESP_MAX)
				goto out;
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			r = -ENOMEM;
			if (!nb)
				goto out;
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	int status = 0;
	r = -EPROTO;
	if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1 || status < 100)
		goto out;
	char *sep = strstr(buf, "\r\n\r\n");
	if (resp_body) {
		*resp_body = strdup(sep ? sep + 4 : "");
		if (!*resp_body) {
			r = -ENOMEM;
			goto out;
		}
	}
	r = status;
out:
	free(buf);
	close(fd);
	return r;
}
