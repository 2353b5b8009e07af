/*
 * The QMP client: owns one UNIX socket connection to a guest's monitor.
 * Never blocks: connect is retried on a timer, reads and writes go through
 * a bufferevent, replies are matched by id in a pending list.
 */
#include "qmp_client.h"
#include "log.h"
#include "qmp.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CONNECT_RETRY_MS 20

struct pending {
	struct pending *next;
	uint64_t id;
	struct event *timer;
	qmp_reply_fn cb;
	void *arg;
	struct qmp_client *c;
};

/* A command that carries an fd must go out alone through sendmsg. */
struct fdcmd {
	struct fdcmd *next;
	char *line;
	int fd;
};

enum qc_state { QC_CONNECTING, QC_GREETING, QC_CAPS, QC_READY, QC_CLOSED };

struct qmp_client {
	struct event_base *base;
	char *path;
	enum qc_state state;
	struct bufferevent *bev;
	struct event *retry;
	struct event *flush;
	int64_t connect_left_ms;
	struct qmp_client_cbs cbs;
	void *arg;
	uint64_t next_id;
	struct pending *pending;
	struct fdcmd *fdq, **fdq_tail;
	int busy;
	bool doomed;
};

static void client_free(struct qmp_client *c);
static void on_flush(evutil_socket_t fd, short what, void *arg);

static void enter(struct qmp_client *c)
{
	c->busy++;
}

/* Returns true when the client was freed. */
static bool leave(struct qmp_client *c)
{
	if (--c->busy == 0 && c->doomed) {
		client_free(c);
		return true;
	}
	return false;
}

static struct pending *take_pending(struct qmp_client *c, uint64_t id)
{
	for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			struct pending *p = *pp;
			*pp = p->next;
			return p;
		}
	}
	return NULL;
}

static void complete(struct pending *p, int err, json_object *result, const char *desc)
{
	struct qmp_client *c = p->c;
	if (p->timer)
		event_free(p->timer);
	qmp_reply_fn cb = p->cb;
	void *arg = p->arg;
	free(p);
	if (cb)
		cb(c, err, result, desc, arg);
}

static void fail_all(struct qmp_client *c, int err, const char *desc)
{
	while (c->pending) {
		struct pending *p = c->pending;
		c->pending = p->next;
		complete(p, err, NULL, desc);
	}
}

static void close_conn(struct qmp_client *c, const char *reason)
{
	if (c->state == QC_CLOSED)
		return;
	c->state = QC_CLOSED;
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->retry)
		event_del(c->retry);
	if (c->flush)
		event_del(c->flush);
	while (c->fdq) {
		struct fdcmd *f = c->fdq;
		c->fdq = f->next;
		free(f->line);
		free(f);
	}
	c->fdq_tail = &c->fdq;
	enter(c);
	fail_all(c, -ECONNRESET, reason);
	if (!c->doomed && c->cbs.closed)
		c->cbs.closed(c, reason, c->arg);
	leave(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct qmp_client *c = p->c;
	take_pending(c, p->id);
	enter(c);
	complete(p, -ETIMEDOUT, NULL, "QMP command timed out");
	leave(c);
}

static int send_line(struct qmp_client *c, char *line, int fd)
{
	if (fd < 0 && !c->fdq) {
		int r = bufferevent_write(c->bev, line, strlen(line));
		free(line);
		return r < 0 ? -EIO : 0;
	}
	struct fdcmd *f = calloc(1, sizeof(*f));
	if (!f) {
		free(line);
		return -ENOMEM;
	}
	f->line = line;
	f->fd = fd;
	*c->fdq_tail = f;
	c->fdq_tail = &f->next;
	/* Flushed from the loop; the write callback continues once output drains. */
	struct timeval now = {0, 0};
	evtimer_add(c->flush, &now);
	return 0;
}

/* Called with the bufferevent's output empty: send queued commands in order. */
static void flush_fdq(struct qmp_client *c)
{
	int sock = bufferevent_getfd(c->bev);
	while (c->fdq && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		struct fdcmd *f = c->fdq;
		if (f->fd < 0) {
			bufferevent_write(c->bev, f->line, strlen(f->line));
		} else {
			struct iovec iov = {.iov_base = f->line, .iov_len = strlen(f->line)};
			union {
				char buf[CMSG_SPACE(sizeof(int))];
				struct cmsghdr align;
			} u;
			memset(&u, 0, sizeof(u));
			struct msghdr mh = {.msg_iov = &iov,
					    .msg_iovlen = 1,
					    .msg_control = u.buf,
					    .msg_controllen = sizeof(u.buf)};
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &f->fd, sizeof(int));
			ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return; /* retried on the next write event */
			if (r != (ssize_t)iov.iov_len) {
				close_conn(c, "QMP send with fd failed");
				return;
			}
		}
		c->fdq = f->next;
		if (!c->fdq)
			c->fdq_tail = &c->fdq;
		free(f->line);
		free(f);
	}
}

int qmp_client_call(struct qmp_client *c, const char *execute, json_object *args, int fd,
		    int timeout_ms, qmp_reply_fn cb, void *arg)
{
	int r = -ENOTCONN;
	bool internal = strcmp(execute, "qmp_capabilities") == 0;
	if (c->state != QC_READY && !(internal && c->state == QC_CAPS))
		goto out;
	r = -ENOMEM;
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		goto out;
	p->id = c->next_id++;
	p->cb = cb;
	p->arg = arg;
	p->c = c;
	char *line = qmp_cmd_encode(execute, args, p->id);
	if (!line) {
		free(p);
		goto out;
	}
	if (timeout_ms > 0) {
		p->timer = evtimer_new(c->base, on_timeout, p);
		struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
		if (!p->timer || evtimer_add(p->timer, &tv) < 0) {
			if (p->timer)
				event_free(p->timer);
			free(p);
			free(line);
			goto out;
		}
	}
	r = send_line(c, line, fd);
	if (r < 0) {
		if (p->timer)
			event_free(p->timer);
		free(p);
		goto out;
	}
	p->next = c->pending;
	c->pending = p;
out:
	json_object_put(args);
	return r;
}

static void on_caps(struct qmp_client *c, int err, json_object *res, const char *desc, void *arg)
{
	if (err) {
		close_conn(c, desc ? desc : "qmp_capabilities failed");
		return;
	}
	c->state = QC_READY;
	if (c->cbs.ready)
		c->cbs.ready(c, c->arg);
}

static void dispatch(struct qmp_client *c, struct qmp_msg *m)
{
	switch (m->kind) {
	case QMP_MSG_GREETING:
		if (c->state != QC_GREETING) {
			close_conn(c, "unexpected QMP greeting");
			return;
		}
		c->state = QC_CAPS;
		if (qmp_client_call(c, "qmp_capabilities", NULL, -1, 5000, on_caps, NULL) < 0)
			close_conn(c, "cannot send qmp_capabilities");
		return;
	case QMP_MSG_RETURN:
	case QMP_MSG_ERROR: {
		struct pending *p = take_pending(c, m->id);
		if (!p) {
			log_debug("qmp %s: reply for unknown id %llu ignored", c->path,
				  (unsigned long long)m->id);
			return;
		}
		if (m->kind == QMP_MSG_RETURN)
			complete(p, 0, m->data, NULL);
		else
			complete(p, -EREMOTEIO, m->data, m->err_desc);
		return;
	}
	case QMP_MSG_EVENT:
		if (c->state == QC_READY && c->cbs.event)
			c->cbs.event(c, m->event, m->data, c->arg);
		return;
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct qmp_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	enter(c);
	while (c->state != QC_CLOSED && !c->doomed) {
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		size_t want = avail < QMP_MAX_MSG ? avail : QMP_MAX_MSG;
		const char *data = (const char *)evbuffer_pullup(in, (ssize_t)want);
		size_t len;
		int r = qmp_frame_next(data, want, QMP_MAX_MSG, &len);
		if (r == 0)
			break;
		if (r < 0) {
			log_warn("qmp %s: message over %d bytes, closing", c->path, QMP_MAX_MSG);
			close_conn(c, "QMP message too long");
			break;
		}
		struct qmp_msg m;
		const char *why = NULL;
		r = qmp_msg_parse(data, len, &m, &why);
		evbuffer_drain(in, len);
		if (r < 0) {
			log_warn("qmp %s: bad message (%s), closing", c->path, why);
			close_conn(c, why);
			break;
		}
		dispatch(c, &m);
		qmp_msg_finish(&m);
	}
	leave(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	on_flush(-1, 0, arg);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct qmp_client *c = arg;
	if (c->state == QC_CLOSED)
		return;
	enter(c);
	flush_fdq(c);
	leave(c);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
	struct qmp_client *c = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		enter(c);
		close_conn(c, (what & BEV_EVENT_EOF) ? "QMP connection closed by QEMU"
						     : "QMP connection error");
		leave(c);
	}
}

static int try_connect(struct qmp_client *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(c->path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, c->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		return -ENOMEM;
	}
	bufferevent_setcb(c->bev, on_read, on_write, on_bev_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = QC_GREETING;
	return 0;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct qmp_client *c = arg;
	int r = try_connect(c);
	if (r == 0)
		return;
	c->connect_left_ms -= CONNECT_RETRY_MS;
	if ((r == -ENOENT || r == -ECONNREFUSED || r == -EAGAIN) && c->connect_left_ms > 0) {
		struct timeval tv = {0, CONNECT_RETRY_MS * 1000};
		evtimer_add(c->retry, &tv);
		return;
	}
	enter(c);
	close_conn(c, r == -ENOENT || r == -ECONNREFUSED ? "QMP socket did not appear in time"
							 : "cannot connect to QMP socket");
	leave(c);
}

struct qmp_client *qmp_client_create(struct event_base *base, const char *path,
				     int connect_timeout_ms, const struct qmp_client_cbs *cbs,
				     void *arg)
{
	struct qmp_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->base = base;
	c->path = strdup(path);
	c->cbs = *cbs;
	c->arg = arg;
	c->next_id = 1;
	c->fdq_tail = &c->fdq;
	c->connect_left_ms = connect_timeout_ms;
	c->retry = evtimer_new(base, on_retry, c);
	c->flush = evtimer_new(base, on_flush, c);
	if (!c->path || !c->retry || !c->flush) {
		client_free(c);
		return NULL;
	}
	/* First attempt from the loop, so callbacks never run inside create. */
	struct timeval now = {0, 0};
	evtimer_add(c->retry, &now);
	return c;
}

static void client_free(struct qmp_client *c)
{
	if (c->bev)
		bufferevent_free(c->bev);
	while (c->fdq) {
		struct fdcmd *f = c->fdq;
		c->fdq = f->next;
		free(f->line);
		free(f);
	}
	if (c->retry)
		event_free(c->retry);
	if (c->flush)
		event_free(c->flush);
	free(c->path);
	free(c);
}

void qmp_client_destroy(struct qmp_client *c)
{
	if (!c || c->doomed)
		return;
	c->doomed = true;
	enter(c);
	c->state = QC_CLOSED;
	fail_all(c, -ECANCELED, "QMP client destroyed");
	leave(c);
}
