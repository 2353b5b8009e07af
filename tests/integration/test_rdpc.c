/*
 * The rdp backend's client (rdp-gateway/rdpc.c) against nestor-test-rdpsrv
 * running on this host (standard RDP security, its own account):
 *  - a desktop: the pattern arrives in the client's buffer exactly, damage
 *    is reported, the server's pointer is handed on, a key comes back as its
 *    echo block;
 *  - RemoteApp: the server's window order is relayed, with its title;
 *  - a wrong account gets the server's "logon" screen, not the pattern;
 *  - nothing listening: a clear error at once;
 *  - a server that accepts and then says nothing: the connect is aborted
 *    from another thread, whatever phase it is in.
 */
#include "../rdpsrv/pattern.h"
#include "check.h"
#include "rdpc.h"
#include "testenv.h"
#include "util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <winpr/synch.h>
#include <winpr/wlog.h>

static char dir[512];
static unsigned srv_port;

struct seen {
	int pointer_new, pointer_cached;
	unsigned pointer_w;
	int damage;
	int windows;
	char title[64];
	bool reserved_id;     /* a window order used the gateway's own window id */
	unsigned long_title;  /* the longest title, in characters */
	unsigned far_pointer; /* the largest pointer cache index seen */
};

static void on_damage(void *arg, int x, int y, int w, int h)
{
	((struct seen *)arg)->damage++;
}

static BOOL on_window(void *arg, int kind, const WINDOW_ORDER_INFO *oi, const void *o)
{
	struct seen *s = arg;
	if (oi->windowId == 0x4e57)
		s->reserved_id = true;
	if (kind != GW_WIN_CREATE)
		return TRUE;
	s->windows++;
	const WINDOW_STATE_ORDER *ws = o;
	if (ws->titleInfo.length / 2u > s->long_title)
		s->long_title = ws->titleInfo.length / 2u;
	size_t n = ws->titleInfo.length / 2;
	for (size_t i = 0; i < n && i < sizeof(s->title) - 1; i++)
		s->title[i] = (char)ws->titleInfo.string[2 * i];
	s->title[n < sizeof(s->title) - 1 ? n : sizeof(s->title) - 1] = '\0';
	return TRUE;
}

static BOOL on_pointer(void *arg, int kind, const void *u)
{
	struct seen *s = arg;
	if (kind == GW_PTR_NEW) {
		s->pointer_new++;
		s->pointer_w = ((const POINTER_NEW_UPDATE *)u)->colorPtrAttr.width;
	}
	s->pointer_cached += kind == GW_PTR_CACHED;
	if (kind == GW_PTR_CACHED &&
	    ((const POINTER_CACHED_UPDATE *)u)->cacheIndex > s->far_pointer)
		s->far_pointer = ((const POINTER_CACHED_UPDATE *)u)->cacheIndex;
	return TRUE;
}

static const struct gw_rdpc_cbs cbs = {
    .damage = on_damage, .window = on_window, .pointer = on_pointer};

static uint32_t px(struct gw_rdpc *c, int x, int y)
{
	int w, h, stride;
	const uint8_t *p = gw_rdpc_pixels(c, &w, &h, &stride);
	if (!p || x >= w || y >= h)
		return 0xffffffff;
	uint32_t v;
	memcpy(&v, p + (size_t)y * (size_t)stride + (size_t)x * 4, 4);
	return v & 0xffffff;
}

/* Pump C until COND holds or MS pass. */
static bool pump_until(struct gw_rdpc *c, bool (*cond)(struct gw_rdpc *, void *), void *arg, int ms)
{
	int64_t end = util_now_ms() + ms;
	while (util_now_ms() < end) {
		if (cond(c, arg))
			return true;
		HANDLE h[64];
		DWORD n = gw_rdpc_handles(c, h, 64);
		if (!n || WaitForMultipleObjects(n, h, FALSE, 20) == WAIT_FAILED ||
		    !gw_rdpc_pump(c))
			return false;
	}
	return cond(c, arg);
}

static bool pattern_at(struct gw_rdpc *c, void *arg)
{
	const int *o = arg; /* origin of the painted area */
	for (int y = 40; y < 300; y += 7)
		for (int x = 0; x < 400; x += 5)
			if (px(c, o[0] + x, o[1] + y) != rdpsrv_pattern((unsigned)x, (unsigned)y))
				return false;
	return true;
}

static bool logon_screen(struct gw_rdpc *c, void *arg)
{
	return px(c, 100, 100) == RDPSRV_LOGON && px(c, 500, 400) == RDPSRV_LOGON;
}

static bool echo_a(struct gw_rdpc *c, void *arg)
{
	return px(c, RDPSRV_ECHO_X(0) + 2, RDPSRV_ECHO_Y + 2) == rdpsrv_key_colour(0x1e);
}

static bool has_window(struct gw_rdpc *c, void *arg)
{
	return ((struct seen *)arg)->windows > 0;
}

static struct gw_rdpc *open_client(const char *user, const char *pass, const char *program,
				   unsigned port, struct seen *seen, char *err, size_t errlen)
{
	struct gw_rdpc_params p = {.host = "127.0.0.1",
				   .port = port,
				   .security = "rdp",
				   .user = user,
				   .password = pass,
				   .width = 800,
				   .height = 600,
				   .program = program,
				   .pointer_cache = 20};
	struct gw_rdpc *c = gw_rdpc_new(&p, &cbs, seen, err, errlen);
	if (c && !gw_rdpc_connect(c, err, errlen)) {
		gw_rdpc_close(c);
		c = NULL;
	}
	return c;
}

static void test_desktop(void)
{
	struct seen seen = {0};
	char err[256] = "";
	long before = testenv_pss_kib(0);
	struct gw_rdpc *c =
	    open_client("guestacct", "guest-pw", NULL, srv_port, &seen, err, sizeof(err));
	/* what one guest connection costs the worker (800x600 here; informational) */
	fprintf(stderr, "rdpc connection Pss: %.1f MiB\n",
		(double)(testenv_pss_kib(0) - before) / 1024);
	CHECK_MSG(c != NULL, "connect: %s", err);
	if (!c)
		return;
	int origin[2] = {0, 0};
	CHECK_MSG(pump_until(c, pattern_at, origin, 10000), "the pattern, exactly");
	CHECK(seen.damage > 0);
	/* the server's own pointer is handed on, shape and cache slot */
	CHECK_MSG(seen.pointer_new == 1 && seen.pointer_w == 32, "pointer new: %d, %u wide",
		  seen.pointer_new, seen.pointer_w);
	CHECK(seen.pointer_cached == 1);
	/* and no channel of the client's own reached the server (no relay asked) */
	char log[600];
	snprintf(log, sizeof(log), "%s/rdpsrv.log", dir);
	char *l = testenv_slurp(log, NULL);
	CHECK_MSG(l && strstr(l, "rail=0 channels=-"), "no channels towards the server");
	free(l);
	gw_rdpc_key(c, KBD_FLAGS_DOWN, 0x1e);
	gw_rdpc_key(c, KBD_FLAGS_RELEASE, 0x1e);
	CHECK_MSG(pump_until(c, echo_a, NULL, 5000), "the key's echo block");
	gw_rdpc_close(c);
}

static void test_remoteapp(void)
{
	struct seen seen = {0};
	char err[256] = "";
	struct gw_rdpc *c = open_client("guestacct", "guest-pw", "||" RDPSRV_APP_ALIAS, srv_port,
					&seen, err, sizeof(err));
	CHECK_MSG(c != NULL, "connect: %s", err);
	if (!c)
		return;
	CHECK_MSG(pump_until(c, has_window, &seen, 10000), "the server's window order");
	CHECK_STR(seen.title, RDPSRV_APP_TITLE);
	int origin[2] = {RDPSRV_WIN_X, RDPSRV_WIN_Y};
	CHECK_MSG(pump_until(c, pattern_at, origin, 10000), "the window's pattern");
	gw_rdpc_close(c);
}

static bool pumps(struct gw_rdpc *c, void *arg)
{
	return false; /* pump until the connection ends or time runs out */
}

/*
 * nestor-test-rdpsrv --hostile: rdpc hands what a replaced guest server
 * sends to its callbacks (where the gateway's guard judges it: guard.c,
 * tests/unit), and ends the connection itself on an oversized desktop.
 */
static void test_hostile(unsigned port)
{
	struct seen seen = {0};
	char err[256] = "";
	struct gw_rdpc *c = open_client("guestacct", "guest-pw", "||" RDPSRV_APP_ALIAS, port, &seen,
					err, sizeof(err));
	CHECK_MSG(c != NULL, "connect: %s", err);
	if (!c)
		return;
	bool alive = pump_until(c, pumps, NULL, 20000);
	CHECK_MSG(!alive, "the 8000x8000 desktop ends the connection");
	CHECK_MSG(seen.reserved_id, "the order with the gateway's window id reached the guard");
	CHECK_MSG(seen.long_title >= 600, "the long title reached the guard (%u)", seen.long_title);
	CHECK_MSG(seen.windows >= 70, "%d windows created", seen.windows);
	CHECK_MSG(seen.far_pointer == 200, "pointer index %u", seen.far_pointer);
	gw_rdpc_close(c);
}

static void test_wrong_account(void)
{
	struct seen seen = {0};
	char err[256] = "";
	struct gw_rdpc *c =
	    open_client("guestacct", "wrong", NULL, srv_port, &seen, err, sizeof(err));
	CHECK_MSG(c != NULL, "connect: %s", err);
	if (!c)
		return;
	CHECK_MSG(pump_until(c, logon_screen, NULL, 10000), "the server's logon screen");
	int origin[2] = {0, 0};
	CHECK(!pattern_at(c, origin));
	gw_rdpc_close(c);
}

static unsigned listener(int *fd)
{
	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (bind(*fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(*fd, 4) < 0 ||
	    getsockname(*fd, (struct sockaddr *)&sa, &sl) < 0)
		return 0;
	return ntohs(sa.sin_port);
}

static void test_nothing_there(void)
{
	int fd;
	unsigned port = listener(&fd);
	close(fd); /* the port is free again: nothing listens */
	struct seen seen = {0};
	char err[256] = "";
	struct gw_rdpc *c = open_client("u", "p", NULL, port, &seen, err, sizeof(err));
	CHECK(c == NULL);
	CHECK_MSG(err[0] != '\0', "an error message");
}

struct job {
	struct gw_rdpc *c;
	bool ok;
	volatile bool done;
	char err[256];
};

static void *connect_thread(void *arg)
{
	struct job *j = arg;
	j->ok = gw_rdpc_connect(j->c, j->err, sizeof(j->err));
	j->done = true;
	return NULL;
}

static void test_abort(void)
{
	int lfd;
	unsigned port = listener(&lfd); /* accepts (the kernel does), never answers */
	CHECK(port > 0);
	struct seen seen = {0};
	struct gw_rdpc_params p = {.host = "127.0.0.1",
				   .port = port,
				   .security = "rdp",
				   .user = "u",
				   .password = "p",
				   .width = 800,
				   .height = 600};
	struct job j = {0};
	j.c = gw_rdpc_new(&p, &cbs, &seen, j.err, sizeof(j.err));
	CHECK(j.c != NULL);
	if (!j.c)
		return;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, connect_thread, &j) == 0);
	usleep(500000);
	CHECK_MSG(!j.done, "still waiting for the silent server");
	gw_rdpc_abort(j.c);
	/* the silent server still holds the connection: only the abort can end it
	 * (a deadline for liveness, not a speed claim) */
	for (int i = 0; i < 100 && !j.done; i++)
		usleep(100000);
	CHECK_MSG(j.done, "the connect gave up after the abort");
	if (!j.done) {
		close(lfd); /* resets the connection: lets it end, so it can be joined */
		lfd = -1;
	}
	pthread_join(t, NULL);
	CHECK(!j.ok);
	gw_rdpc_close(j.c);
	if (lfd >= 0)
		close(lfd);
}

/* nestor-test-rdpsrv on PORT, logging to LOG; its pid once it listens, else -1. */
static pid_t start_srv(const char *srv, const char *port, const char *key, const char *cert,
		       const char *log, bool hostile)
{
	pid_t pid = fork();
	if (pid == 0) {
		int lf = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(lf, 1);
		dup2(lf, 2);
		execl(srv, srv, "--port", port, "--security", "rdp", "--key", key, "--cert", cert,
		      "--user", "guestacct", "--password", "guest-pw",
		      hostile ? "--hostile" : (char *)NULL, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++, usleep(50000)) {
		char *l = testenv_slurp(log, NULL);
		bool up = l && strstr(l, "RDPSRV LISTEN");
		free(l);
		if (up)
			return pid;
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	WLog_SetLogLevel(WLog_GetRoot(), WLOG_OFF);
	const char *build = getenv("NESTOR_BUILD");
	char *scratch = testenv_scratch("rdpc");
	snprintf(dir, sizeof(dir), "%s", scratch);
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/key.pem -out %s/cert.pem "
		 "-days 30 -subj /CN=test >/dev/null 2>&1",
		 dir, dir);
	CHECK(system(cmd) == 0);
	int fd;
	srv_port = listener(&fd);
	close(fd);
	char srv[600], key[600], cert[600], portarg[16], log[600];
	snprintf(srv, sizeof(srv), "%s/tests/nestor-test-rdpsrv", build ? build : "build");
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(portarg, sizeof(portarg), "%u", srv_port);
	snprintf(log, sizeof(log), "%s/rdpsrv.log", dir);
	pid_t pid = start_srv(srv, portarg, key, cert, log, false);
	bool up = pid > 0;
	CHECK_MSG(up, "nestor-test-rdpsrv listens");
	if (up) {
		test_desktop();
		test_remoteapp();
		test_wrong_account();
		test_nothing_there();
		test_abort();
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	/* the same server, hostile */
	srv_port = listener(&fd);
	close(fd);
	snprintf(portarg, sizeof(portarg), "%u", srv_port);
	snprintf(log, sizeof(log), "%s/rdpsrv-hostile.log", dir);
	pid = start_srv(srv, portarg, key, cert, log, true);
	CHECK_MSG(pid > 0, "nestor-test-rdpsrv --hostile listens");
	if (pid > 0) {
		test_hostile(srv_port);
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	int r = check_done("test_rdpc");
	if (r == 0)
		testenv_rmtree(scratch);
	else
		fprintf(stderr, "logs kept in %s\n", scratch);
	free(scratch);
	return r;
}
