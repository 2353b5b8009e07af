/*
 * HAProxy's agent-check: HAProxy connects, reads one line up to '\n' and
 * closes. Each connection is answered from the accept callback with the
 * line for that moment (agent_line_fn), half-closed at once, and closed
 * when the peer closes or after LINGER_S. Nothing here blocks: the line is
 * far smaller than a fresh socket's send buffer, so one send() writes it.
 *
 * Why linger instead of close(): closing a socket with unread input (an
 * agent-send string) makes the kernel send a reset, which can destroy our
 * answer before HAProxy reads it. Lingering is bounded: at most MAX_CONNS
 * connections at once, each for at most LINGER_S, reading at most
 * DRAIN_MAX bytes; beyond the cap a connection is closed unanswered, which
 * HAProxy ignores (it keeps the last state the agent gave).
 */
#include "agent.h"
#include "conf.h"
#include "log.h"
#include "quota.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 64
#define LINGER_S 2
#define DRAIN_MAX 4096

/* --- the answer (pure) --- */

/* The free share of one cap in percent; clears *ROOM when nothing is left. */
static unsigned free_share(unsigned used, unsigned max, bool *room)
{
	if (max == 0) /* unlimited */
		return 100;
	if (used >= max) { /* a lowered cap can leave more in use than allowed */
		*room = false;
		return 0;
	}
	return (unsigned)((uint64_t)(max - used) * 100 / max);
}

unsigned agent_free_percent(const struct quota_ledger *q)
{
	bool room = true;
	unsigned s = free_share(q->sessions, q->host.max_sessions, &room);
	unsigned m = free_share(q->memory_mb, q->host.max_memory_mb, &room);
	unsigned p = s < m ? s : m;
	/* 1 of 200 sessions free rounds to 0%: HAProxy must still see some room */
	return room && p == 0 ? 1 : p;
}

void agent_line(const struct agent_view *v, char *buf, size_t len)
{
	/*
	 * HAProxy keeps what the agent said until the agent says otherwise
	 * (only the agent reverts its own "down" or "drain"): so "up" comes
	 * with every answer but down, and "ready" with every weight.
	 */
	if (v->stopping)
		snprintf(buf, len, "down #nestord is stopping\n");
	else if (!v->ready)
		snprintf(buf, len, "down #guests cannot start yet\n");
	else if (v->drained)
		snprintf(buf, len, "up drain\n");
	else
		snprintf(buf, len, "up ready %u%%\n", agent_free_percent(v->q));
}

/* --- the listener --- */

struct agent_conn {
	struct agent *ag;
	evutil_socket_t fd;
	struct event *ev;
	size_t drained;
	int64_t deadline_ms; /* LINGER_S after the answer, however the peer trickles */
};

struct agent {
	struct evconnlistener *lis;
	agent_line_fn line;
	void *arg;
	struct agent_conn *conns[MAX_CONNS];
	unsigned n_conns;
};

static void conn_close(struct agent_conn *c)
{
	struct agent *ag = c->ag;
	for (unsigned i = 0; i < ag->n_conns; i++) {
		if (ag->conns[i] == c) {
			ag->conns[i] = ag->conns[--ag->n_conns];
			break;
		}
	}
	event_free(c->ev);
	evutil_closesocket(c->fd);
	free(c);
}

/* Wait for the peer's close until the deadline; false when it has passed. */
static bool conn_wait(struct agent_conn *c)
{
	int64_t left = c->deadline_ms - util_now_ms();
	if (left <= 0)
		return false;
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
	return event_add(c->ev, &tv) == 0;
}

/* Input after our answer, the peer's close, or the deadline: read and drop, close at the end. */
static void on_conn(evutil_socket_t fd, short what, void *arg)
{
	struct agent_conn *c = arg;
	if (what & EV_READ) {
		char scratch[512];
		ssize_t n = recv(fd, scratch, sizeof(scratch), 0);
		bool more = n < 0 ? errno == EAGAIN || errno == EINTR
				  : n > 0 && (c->drained += (size_t)n) <= DRAIN_MAX;
		if (more && conn_wait(c))
			return;
	}
	conn_close(c);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct agent *ag = arg;
	if (ag->n_conns == MAX_CONNS) {
		evutil_closesocket(fd);
		return;
	}
	char line[AGENT_LINE_MAX];
	ag->line(line, sizeof(line), ag->arg);
	if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0 || shutdown(fd, SHUT_WR) < 0) {
		evutil_closesocket(fd);
		return;
	}
	struct agent_conn *c = calloc(1, sizeof(*c));
	if (!c || !(c->ev = event_new(evconnlistener_get_base(lis), fd, EV_READ, on_conn, c))) {
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->ag = ag;
	c->fd = fd;
	c->deadline_ms = util_now_ms() + LINGER_S * 1000;
	ag->conns[ag->n_conns++] = c;
	if (!conn_wait(c))
		conn_close(c);
}

static void on_listen_error(struct evconnlistener *lis, void *arg)
{
	/* EMFILE and the like: the listener stays, the next connection may succeed */
	log_warn("agent: accept: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

struct agent *agent_create(struct event_base *base, const char *listen, agent_line_fn line,
			   void *arg, char *err, size_t errlen)
{
	char host[256], port[8];
	uint16_t p;
	if (conf_hostport(listen, host, sizeof(host), &p) < 0) {
		snprintf(err, errlen, "bad agent address '%s': expected HOST:PORT or [V6]:PORT",
			 listen);
		return NULL;
	}
	snprintf(port, sizeof(port), "%u", (unsigned)p);
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
					.ai_socktype = SOCK_STREAM,
					.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV},
			       *ai = NULL;
	int r = evutil_getaddrinfo(host, port, &hints, &ai);
	if (r != 0) {
		snprintf(err, errlen, "agent address '%s': %s", listen, evutil_gai_strerror(r));
		return NULL;
	}
	struct agent *ag = calloc(1, sizeof(*ag));
	if (!ag) {
		evutil_freeaddrinfo(ai);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ag->line = line;
	ag->arg = arg;
	ag->lis = evconnlistener_new_bind(
	    base, on_accept, ag, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
	    MAX_CONNS, ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (!ag->lis) {
		snprintf(err, errlen, "cannot listen for the agent check on %s: %s", listen,
			 strerror(errno));
		free(ag);
		return NULL;
	}
	evconnlistener_set_error_cb(ag->lis, on_listen_error);
	log_info("agent check on %s", listen);
	return ag;
}

void agent_destroy(struct agent *ag)
{
	if (!ag)
		return;
	while (ag->n_conns)
		conn_close(ag->conns[0]);
	evconnlistener_free(ag->lis);
	free(ag);
}
