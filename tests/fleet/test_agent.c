/*
 * nestord's agent-check ([fleet] agent_listen) against a real HAProxy: the
 * line follows the caps and the usage at the moment it is asked (one
 * session on a real guest: 256 MiB of 4 sessions), HAProxy applies it as
 * the server's weight (a percentage of `weight 100`), a full host keeps its
 * server UP at weight 0, and a stopping nestord takes it DOWN. The agent
 * answers at most 64 connections at once and never waits for a client.
 * Drain is tested in tests/unit/test_agent.c only: until the fleet code sets
 * it from PostgreSQL, nothing can drain a running nestord.
 */
#include "check.h"
#include "daemon.h"
#include "testenv.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define HAPROXY "/usr/sbin/haproxy"
#define NCONN 64 /* the agent's cap (broker/agent.c) */

static struct nestord d;
static unsigned aport;

static int tcp_connect(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Everything FD sends until it closes (within TIMEOUT_MS) into BUF; false on a timeout. */
static bool read_all(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t n = 0;
	int64_t end = util_now_ms() + timeout_ms;
	buf[0] = '\0';
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		int left = (int)(end - util_now_ms());
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return false;
		ssize_t r = recv(fd, buf + n, len - 1 - n, 0);
		if (r <= 0)
			return r == 0;
		n += (size_t)r;
		buf[n] = '\0';
		if (n == len - 1)
			return false;
	}
}

/* Ask the agent as HAProxy does: connect, read to the close. The line, "" if none. */
static void agent_ask(char *buf, size_t len)
{
	int fd = tcp_connect(aport);
	buf[0] = '\0';
	CHECK_MSG(fd >= 0, "cannot connect to the agent on port %u", aport);
	if (fd < 0)
		return;
	CHECK_MSG(read_all(fd, buf, len, 3000), "the agent did not close (got '%s')", buf);
	close(fd);
}

/* Ask until the agent says WANT (a cap change or an admission is seen at once, but
 * the session may wait for the broker's first pump); false after 5 s. */
static bool agent_wait(const char *want, char *got, size_t len)
{
	int64_t end = util_now_ms() + 5000;
	for (;;) {
		agent_ask(got, len);
		if (!strcmp(got, want))
			return true;
		if (util_now_ms() >= end)
			return false;
		usleep(20000);
	}
}

static void agent_is(const char *want, int line)
{
	char got[128];
	CHECK_MSG(agent_wait(want, got, sizeof(got)), "line %d: agent said '%s', wanted '%s'", line,
		  got, want);
}
#define AGENT_IS(want) agent_is(want, __LINE__)

/* --- HAProxy --- */

static char hsock[400], hlog[400];

static pid_t haproxy_start(unsigned fport, unsigned sport)
{
	if (access(HAPROXY, X_OK) != 0) {
		fprintf(stderr,
			"FAIL: %s is missing: run scripts/install-deps (it installs "
			"haproxy)\n",
			HAPROXY);
		exit(1);
	}
	char cfg[400], text[2048];
	snprintf(cfg, sizeof(cfg), "%s/haproxy.cfg", d.dir);
	snprintf(hsock, sizeof(hsock), "%s/haproxy.sock", d.dir);
	if (strlen(hsock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "FAIL: %s is too long for a socket path\n", hsock);
		exit(1);
	}
	snprintf(hlog, sizeof(hlog), "%s/haproxy.log", d.dir);
	/* the server's own port is any listener: only the agent matters here */
	snprintf(text, sizeof(text),
		 "global\n  stats socket %s level admin\n"
		 "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 8h\n"
		 "  timeout server 8h\n"
		 "frontend rdp\n  bind 127.0.0.1:%u\n  default_backend gateways\n"
		 "backend gateways\n  balance leastconn\n"
		 "  server host1 127.0.0.1:%u weight 100 agent-check agent-port %u "
		 "agent-inter 200ms\n",
		 hsock, fport, sport, aport);
	FILE *f = fopen(cfg, "w");
	CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(hlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(HAPROXY, HAPROXY, "-db", "-f", cfg, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* One command on HAProxy's stats socket; its answer into BUF. */
static bool haproxy_cmd(const char *cmd, char *buf, size_t len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(hsock) >= sizeof(sa.sun_path))
		return false;
	memcpy(sa.sun_path, hsock, strlen(hsock) + 1);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		  write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd) && write(fd, "\n", 1) == 1 &&
		  read_all(fd, buf, len, 2000);
	if (fd >= 0)
		close(fd);
	return ok;
}

struct srv_state {
	int op;	     /* srv_op_state: 0 down, 2 up */
	int admin;   /* srv_admin_state: 0 ready, 8 drained by the agent */
	int uweight; /* the weight in use (the agent's percentage of 100) */
};

/* host1's row of "show servers state gateways" (columns documented in HAProxy's management.txt). */
static bool haproxy_state(struct srv_state *s)
{
	char buf[4096];
	if (!haproxy_cmd("show servers state gateways", buf, sizeof(buf)))
		return false;
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
		int be_id, srv_id;
		char be[64], srv[64], addr[64];
		if (sscanf(l, "%d %63s %d %63s %63s %d %d %d", &be_id, be, &srv_id, srv, addr,
			   &s->op, &s->admin, &s->uweight) == 8 &&
		    !strcmp(srv, "host1"))
			return true;
	}
	return false;
}

/* Wait until HAProxy shows host1 with weight UWEIGHT and operating state OP. */
static void haproxy_expect(int op, int uweight, int line)
{
	struct srv_state s = {-1, -1, -1};
	int64_t end = util_now_ms() + 5000;
	bool ok;
	while (!(ok = haproxy_state(&s) && s.op == op && s.uweight == uweight && s.admin == 0) &&
	       util_now_ms() < end)
		usleep(50000);
	CHECK_MSG(
	    ok, "line %d: HAProxy shows op %d admin %d weight %d, wanted op %d weight %d (log %s)",
	    line, s.op, s.admin, s.uweight, op, uweight, hlog);
}
#define HAPROXY_EXPECT(op, w) haproxy_expect(op, w, __LINE__)

/* Clients that hold their connection get answered up to the cap, and then none is kept waiting. */
static void test_bounded(void)
{
	int fds[NCONN + 1];
	char buf[128];
	for (int i = 0; i < NCONN; i++) {
		fds[i] = tcp_connect(aport);
		CHECK(fds[i] >= 0);
	}
	/* the agent answered each (half-closed) without waiting for us to read */
	CHECK(fds[NCONN - 1] >= 0 && read_all(fds[NCONN - 1], buf, sizeof(buf), 3000) &&
	      !strncmp(buf, "up ready ", 9));
	fds[NCONN] = tcp_connect(aport);
	CHECK(fds[NCONN] >= 0);
	/* over the cap: closed at once, unanswered (HAProxy keeps the last state) */
	CHECK(fds[NCONN] >= 0 && read_all(fds[NCONN], buf, sizeof(buf), 3000) && !buf[0]);
	for (int i = 0; i <= NCONN; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
	}
	/* closed ones free their places */
	AGENT_IS("up ready 100%\n");
}

int main(void)
{
	aport = free_tcp_port();
	char extra[256];
	snprintf(extra, sizeof(extra),
		 "[images]\nauto_template = false\n" /* only our session uses capacity */
		 "[sessions]\nstop_grace = 2\n"	     /* the stopping window HAProxy must see */
		 "[caps]\nmax_sessions = 4\n"
		 "[fleet]\nagent_listen = 127.0.0.1:%u\n",
		 aport);
	nestord_setup(&d, "agent", "alice:alice-pw:nestor\n", extra);
	CHECK(nestord_start(&d));
	AGENT_IS("up ready 100%\n");

	/* HAProxy in front: its server points at any listener; the weight comes from the agent */
	int srv = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof(sa);
	CHECK(srv >= 0 && bind(srv, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      listen(srv, 4) == 0 && getsockname(srv, (struct sockaddr *)&sa, &salen) == 0);
	pid_t hx = haproxy_start(free_tcp_port(), ntohs(sa.sin_port));
	HAPROXY_EXPECT(2, 100);

	/* one session: 1 of 4 sessions, 256 MiB (memory unlimited) */
	nestord_add_demo(&d, "ledger");
	char id[64];
	CHECK(nestord_connect(&d, "alice", "alice-pw", "ledger", id, sizeof(id)) == 200);
	AGENT_IS("up ready 75%\n");
	HAPROXY_EXPECT(2, 75);

	/* the tighter cap wins: 256 of 512 MiB */
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_memory_mb\":512}", NULL) == 200);
	AGENT_IS("up ready 50%\n");
	HAPROXY_EXPECT(2, 50);

	/* full: weight 0 but still UP (its users reconnect through HAProxy) */
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_sessions\":1}", NULL) == 200);
	AGENT_IS("up ready 0%\n");
	HAPROXY_EXPECT(2, 0);

	/* unlimited caps: all free again; HAProxy takes the weight back up */
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_sessions\":0,\"max_memory_mb\":0}", NULL) == 200);
	AGENT_IS("up ready 100%\n");
	HAPROXY_EXPECT(2, 100);

	test_bounded();

	/*
	 * stopping: a ready guest gets stop_grace to power down (the test guest
	 * ignores ACPI: all of it), and meanwhile the host is down
	 */
	CHECK(wait_state(&d, id, "ready", 60000));
	kill(d.pid, SIGTERM);
	AGENT_IS("down #nestord is stopping\n");
	struct srv_state st = {-1, -1, -1};
	int64_t end = util_now_ms() + 5000;
	while (!(haproxy_state(&st) && st.op == 0) && util_now_ms() < end)
		usleep(50000);
	CHECK_MSG(st.op == 0, "HAProxy kept host1 in state %d while nestord stopped", st.op);
	CHECK(nestord_stop(&d, SIGTERM, 20000) == 0);

	CHECK_MSG(waitpid(hx, NULL, WNOHANG) == 0, "haproxy exited early (log %s)", hlog);
	child_stop(&hx);
	close(srv);
	return check_done("test_agent");
}
