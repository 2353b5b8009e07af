/*
 * End to end: a real xfreerdp 2.11 under Xvfb, through nestor-gateway and
 * nestord, to a real test guest.
 *  - desktop connect with the right password: wait screen, then the guest;
 *    the client's pixels equal a QMP screendump of the guest (planar is
 *    lossless: exact);
 *  - typing into the client changes the guest (echo on its serial port and
 *    on screen);
 *  - /app:"||ledger" gives one RemoteApp window titled with the app title;
 *  - a wrong password shows the login screen and creates no session; a
 *    disconnect keeps the session and a reconnect gets the same guest;
 *  - a stalled handshake is cut by the watchdog while others connect fine;
 *  - a second factor (pam_oath): a client sending only the password is
 *    asked for the one-time code on the login screen, and the code typed
 *    signs the user in;
 *  - an administrator's end announced 20 s ahead: a banner over the top of
 *    the client's window counts down, then the session ends;
 *  - the gateway's /metrics count the connections, their handshakes and
 *    first guest frames, and pass promtool's check; a crashed worker is
 *    counted and leaves no connection in the gauge.
 * The same behaviours through the rdp backend: a real guest running
 * nestor-test-rdpsrv (standard RDP security, its own account), reached only
 * through its 127.0.0.1 forward:
 *  - desktop: the client shows the guest server's pattern exactly; keys and
 *    clicks reach the guest server (its echo on screen and serial port);
 *    reconnect gets the same guest; the forward listens on 127.0.0.1 only;
 *    the guest cannot open connections out; clipboard is relayed only when
 *    the image allows it (and then its PDUs pass both ways);
 *  - /app with a guest that serves RemoteApp: the guest's own window, from a
 *    template clone and from a warm pool;
 *  - /app with a guest that does not: one window with the app's title.
 */
#include "check.h"
#include "daemon.h"
#include "x11.h"
#include "../rdpsrv/pattern.h"
#include "testenv.h"
#include "util.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char USERS[] =
    "alice:alice-pw:nestor\nbob:bob-pw:nestor\ncarol:carol-pw:nestor\n"
    "dave:dave-pw:nestor\nerin:erin-pw:nestor\nfrank:frank-pw:nestor\n"
    /* test_worker_crash's own */
    "kim:kim-pw:nestor\nlee:lee-pw:nestor\nmax:max-pw:nestor\nned:ned-pw:nestor\n"
    "oli:oli-pw:nestor\n"; /* test_hostile_guest's */
static struct nestord d;
static char gwlog[600];
static pid_t xvfb, gateway;
static unsigned port, metrics_port;

static void stop_pid(pid_t *pid)
{
	child_stop(pid);
}

static pid_t xfreerdp_ex(const char *user, const char *pass, const char *app, const char *extra,
			 const char *log);

static pid_t xfreerdp(const char *user, const char *pass, const char *app, const char *log)
{
	return xfreerdp_ex(user, pass, app, NULL, log);
}

static pid_t xfreerdp_ex(const char *user, const char *pass, const char *app, const char *extra,
			 const char *log)
{
	char v[64], u[80], p[80], a[100];
	snprintf(v, sizeof(v), "/v:127.0.0.1:%u", port);
	snprintf(u, sizeof(u), "/u:%s", user);
	snprintf(p, sizeof(p), "/p:%s", pass);
	snprintf(a, sizeof(a), "/app:||%s", app ? app : "");
	/* EXTRA: more arguments, separated by spaces */
	char more[256];
	snprintf(more, sizeof(more), "%s", extra ? extra : "");
	const char *argv[16] = {"xfreerdp",	  v,	       u, p, "/cert:ignore",
				"/size:1024x768", "-clipboard"};
	size_t n = 7;
	if (app)
		argv[n++] = a;
	for (char *t = strtok(more, " "); t && n < 15; t = strtok(NULL, " "))
		argv[n++] = t;
	argv[n] = NULL;
	return spawn(argv, log);
}

static char xflog[600];

static int live_sessions(const char *user)
{
	json_object *all = NULL;
	api(&d, "GET", "/v1/sessions", NULL, &all);
	int n = 0;
	for (size_t i = 0; i < json_object_array_length(all); i++)
		n += !strcmp(jget(json_object_array_get_idx(all, i), "user"), user);
	json_object_put(all);
	return n;
}

static bool session_of(const char *user, char *id, size_t len, long long *pid)
{
	json_object *all = NULL;
	api(&d, "GET", "/v1/sessions", NULL, &all);
	bool found = false;
	for (size_t i = 0; i < json_object_array_length(all) && !found; i++) {
		json_object *s = json_object_array_get_idx(all, i);
		if (!strcmp(jget(s, "user"), user)) {
			snprintf(id, len, "%s", jget(s, "id"));
			if (pid)
				*pid = jint(s, "pid");
			found = true;
		}
	}
	json_object_put(all);
	return found;
}

/* Does the client's window show exactly the guest's screen? */
static bool pixels_match(const char *id, int *diff_out)
{
	double mean;
	return pixels_cmp(&d, id, diff_out, &mean);
}

static bool has_session(void *user)
{
	return live_sessions(user) > 0;
}

static char serial_of[600];
static bool serial_has(void *text)
{
	char *s = testenv_slurp(serial_of, NULL);
	bool ok = s && strstr(s, text);
	free(s);
	return ok;
}

static void test_desktop(void)
{
	pid_t c = xfreerdp("alice", "alice-pw", NULL, xflog);
	CHECK(wait_for(has_window, "FreeRDP", 20000));
	CHECK(wait_for(has_session, "alice", 20000));
	char id[64];
	long long pid = 0;
	CHECK(session_of("alice", id, sizeof(id), NULL));
	CHECK(wait_state(&d, id, "connected", 60000));
	CHECK(session_of("alice", id, sizeof(id), &pid));
	/* the client shows exactly the guest's screen */
	int diff = -1;
	bool same = false;
	for (int i = 0; i < 30 && !same; i++) {
		same = pixels_match(id, &diff);
		if (!same)
			usleep(300000);
	}
	CHECK_MSG(same, "client and guest screens differ in %d pixels", diff);
	/* typing reaches the guest */
	snprintf(serial_of, sizeof(serial_of), "%s/run/vm/%s/serial.log", d.dir, id);
	sh("xdotool search --name 'FreeRDP:' | head -1 | xargs -I{} xdotool windowfocus --sync {} "
	   ">/dev/null 2>&1");
	sh("xdotool type --delay 60 e2etyped; xdotool key Return");
	CHECK(wait_for(serial_has, "GOT:e2etyped", 10000));
	same = false;
	for (int i = 0; i < 30 && !same; i++) {
		same = pixels_match(id, &diff);
		if (!same)
			usleep(300000);
	}
	CHECK_MSG(same, "after typing, screens differ in %d pixels", diff);
	/* disconnect keeps the session; reconnect gets the same guest */
	stop_pid(&c);
	CHECK(wait_state(&d, id, "disconnected", 10000));
	c = xfreerdp("alice", "alice-pw", NULL, xflog);
	CHECK(wait_state(&d, id, "connected", 30000));
	long long pid2 = 0;
	char id2[64];
	CHECK(session_of("alice", id2, sizeof(id2), &pid2));
	CHECK_STR(id2, id);
	CHECK(pid2 == pid && pid > 0);
	stop_pid(&c);
}

/* The gateway's workers: its child processes. */
static size_t workers(pid_t *out, size_t max)
{
	size_t n = 0;
	DIR *dir = opendir("/proc");
	struct dirent *e;
	while (dir && (e = readdir(dir)) && n < max) {
		char path[300], buf[512];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		char *close_paren = strrchr(buf, ')');
		int ppid = 0;
		/* the metrics process is the listener's child too, but no worker */
		if (close_paren && sscanf(close_paren + 2, "%*c %d", &ppid) == 1 &&
		    ppid == gateway && !strstr(buf, "(gw-metrics)"))
			out[n++] = (pid_t)atoi(e->d_name);
	}
	if (dir)
		closedir(dir);
	return n;
}

/*
 * A process per connection: four users on their guests, one worker
 * crashes (SIGSEGV), the other three stay on theirs, and the listener goes
 * on accepting (the crashed user reconnects to the same session).
 */
static void test_worker_crash(void)
{
	static const char *const users[4] = {"kim", "lee", "max", "ned"};
	pid_t c[4];
	char ids[4][64];
	for (int i = 0; i < 4; i++) {
		char pw[32];
		snprintf(pw, sizeof(pw), "%s-pw", users[i]);
		c[i] = xfreerdp(users[i], pw, NULL, xflog);
	}
	for (int i = 0; i < 4; i++) {
		CHECK(wait_for(has_session, (void *)users[i], 30000));
		CHECK(session_of(users[i], ids[i], sizeof(ids[i]), NULL));
		CHECK(wait_state(&d, ids[i], "connected", 60000));
	}
	pid_t w[16];
	size_t n = 0;
	/* workers of the earlier tests' connections may still be on their way out */
	for (int t = 0; t < 100 && (n = workers(w, 16)) != 4; t++)
		usleep(100000);
	CHECK_MSG(n == 4, "%zu workers for 4 connections", n);
	long total = 0;
	for (size_t i = 0; i < n; i++)
		total += testenv_pss_kib(w[i]);
	if (n)
		fprintf(stderr, "worker Pss: %.1f MiB per connected user (%zu workers)\n",
			(double)total / 1024 / (double)n, n);
	CHECK(n > 0 && kill(w[0], SIGSEGV) == 0);
	/* its lease lapses (3 s): that one session only turns disconnected */
	int gone = -1;
	for (int t = 0; t < 100 && gone < 0; t++) {
		for (int i = 0; i < 4; i++)
			if (wait_state(&d, ids[i], "disconnected", 0))
				gone = i;
		if (gone < 0)
			usleep(100000);
	}
	CHECK_MSG(gone >= 0, "the crashed worker's session stays connected");
	sleep(4); /* longer than a lease: the others are still renewed by their workers */
	for (int i = 0; i < 4; i++) {
		if (i == gone)
			continue;
		CHECK_MSG(wait_state(&d, ids[i], "connected", 0), "%s lost their session",
			  users[i]);
		CHECK_MSG(waitpid(c[i], NULL, WNOHANG) == 0, "%s's client ended", users[i]);
	}
	char *log = testenv_slurp(gwlog, NULL);
	/* 11, or 6 under ASan (abort_on_error turns its SEGV report into an abort) */
	CHECK(log && strstr(log, "killed by signal"));
	free(log);
	if (gone >= 0) {
		stop_pid(&c[gone]);
		char pw[32];
		snprintf(pw, sizeof(pw), "%s-pw", users[gone]);
		c[gone] = xfreerdp(users[gone], pw, NULL, xflog);
		CHECK(wait_state(&d, ids[gone], "connected", 30000));
	}
	for (int i = 0; i < 4; i++)
		stop_pid(&c[i]);
	for (int i = 0; i < 4; i++)
		CHECK(wait_state(&d, ids[i], "disconnected", 10000));
}

/* --- the gateway's metrics --- */

/* The connections the gauge counts, in every phase. */
static double connections(const char *text)
{
	double sum = 0;
	const char *name = "\nnestor_gateway_connections{";
	for (const char *p = text ? strstr(text, name) : NULL; p; p = strstr(p + 1, name)) {
		const char *v = strchr(p, '}');
		sum += v ? strtod(v + 1, NULL) : 0;
	}
	return sum;
}

static bool metrics_counted(void *arg)
{
	char **text = arg;
	free(*text);
	*text = metrics_get(metrics_port);
	/* the bytes are counted once a second and when the worker ends */
	return metrics_sample(*text, "nestor_gateway_connections_accepted_total") >= 1 &&
	       metrics_sample(*text, "nestor_gateway_handshake_seconds_count") >= 1 &&
	       metrics_sample(
		   *text, "nestor_gateway_first_frame_seconds_count{backend=\"console\"}") >= 1 &&
	       metrics_sample(*text, "nestor_gateway_sign_ins_total{result=\"ok\"}") >= 1 &&
	       metrics_sample(*text, "nestor_gateway_sent_bytes_total{backend=\"console\"}") > 0 &&
	       metrics_sample(*text, "nestor_gateway_received_bytes_total{backend=\"none\"}") > 0;
}

/* After test_desktop's guest connections: counted, and well-formed. */
static void test_metrics(void)
{
	char *text = NULL;
	CHECK_MSG(wait_for(metrics_counted, &text, 10000), "the metrics after a guest:\n%s",
		  text ? text : "(no answer)");
	double hn = metrics_sample(text, "nestor_gateway_handshake_seconds_count");
	double fn =
	    metrics_sample(text, "nestor_gateway_first_frame_seconds_count{backend=\"console\"}");
	fprintf(
	    stderr, "metrics: %g handshakes, %.3f s on average; %g first console frames, %.3f s\n",
	    hn, metrics_sample(text, "nestor_gateway_handshake_seconds_sum") / hn, fn,
	    metrics_sample(text, "nestor_gateway_first_frame_seconds_sum{backend=\"console\"}") /
		fn);
	if (getenv("NESTOR_DEBUG"))
		fprintf(stderr, "%s", text);
	/* a dependency (scripts/install-deps), never a reason to skip */
	CHECK_MSG(access("/usr/bin/promtool", X_OK) == 0,
		  "promtool is missing (Debian's prometheus package)");
	int st = text ? promtool_check(text) : -1;
	CHECK_MSG(st == 0, "promtool check metrics: exit status %d", st);
	free(text);
}

static bool crash_counted(void *arg)
{
	char **text = arg;
	free(*text);
	*text = metrics_get(metrics_port);
	return metrics_sample(*text, "nestor_gateway_worker_crashes_total") >= 1 &&
	       connections(*text) == 0;
}

/* After test_worker_crash: the crash counted, and nobody left in the gauge. */
static void test_metrics_crash(void)
{
	char *text = NULL;
	CHECK_MSG(wait_for(crash_counted, &text, 10000), "crashes %g, connections %g",
		  metrics_sample(text, "nestor_gateway_worker_crashes_total"), connections(text));
	free(text);
}

static void test_remoteapp(void)
{
	pid_t c = xfreerdp("bob", "bob-pw", "ledger", xflog);
	/* the app's title, as registered by nestord_add_demo */
	CHECK_MSG(wait_for(has_window, "^Ledger$", 30000), "a window titled with the app");
	char *out = sh_out("xdotool search --name '^Ledger$' | wc -l");
	CHECK_MSG(atoi(out) == 1, "%d windows", atoi(out));
	free(out);
	char id[64];
	CHECK(session_of("bob", id, sizeof(id), NULL));
	CHECK(wait_state(&d, id, "connected", 60000));
	stop_pid(&c);
	/* unknown alias: a clear message, no session */
	c = xfreerdp("carol", "carol-pw", "nosuchapp", xflog);
	usleep(6000000);
	CHECK(live_sessions("carol") == 0);
	stop_pid(&c);
}

static bool is_login_color(void *unused)
{
	int w, h;
	uint8_t *s = screen_rgb(&w, &h);
	/* the login screen's background (0x1d2b3a) fills the lower part of the window */
	bool ok = s && s[((size_t)600 * w + 500) * 3] == 0x1d &&
		  s[((size_t)600 * w + 500) * 3 + 1] == 0x2b &&
		  s[((size_t)600 * w + 500) * 3 + 2] == 0x3a;
	free(s);
	return ok;
}

static void test_wrong_password(void)
{
	pid_t c = xfreerdp("carol", "wrong", NULL, xflog);
	CHECK(wait_for(has_window, "FreeRDP", 20000));
	CHECK_MSG(wait_for(is_login_color, NULL, 20000), "the login screen is shown");
	CHECK(live_sessions("carol") == 0);
	/* sign in on our login screen */
	sh("xdotool search --name 'FreeRDP:' | head -1 | xargs -I{} xdotool windowfocus --sync {} "
	   ">/dev/null 2>&1");
	sh("xdotool type --delay 60 carol-pw; xdotool key Return");
	CHECK_MSG(wait_for(has_session, "carol", 20000), "signed in from the login screen");
	stop_pid(&c);
}

/* Nobody signs in: the login screen closes after login_timeout (8 s here). */
static void test_login_timeout(void)
{
	pid_t c = xfreerdp("dave", "wrong", NULL, xflog);
	CHECK_MSG(wait_for(is_login_color, NULL, 20000), "the login screen is shown");
	/* the client exits once the gateway lets it go: wait for that, 30 s at most */
	int pfd = (int)syscall(SYS_pidfd_open, c, 0), st = 0;
	struct pollfd pw = {.fd = pfd, .events = POLLIN};
	pid_t r = pfd >= 0 && poll(&pw, 1, 30000) == 1 ? waitpid(c, &st, 0) : 0;
	if (pfd >= 0)
		close(pfd);
	CHECK_MSG(r == c, "the client was let go after the login deadline");
	if (r == c)
		c = 0;
	else
		stop_pid(&c);
	char *log = testenv_slurp(gwlog, NULL);
	CHECK(log && strstr(log, "Sign-in timed out"));
	free(log);
	CHECK(live_sessions("dave") == 0);
}

/* A file holds a text (wait_for's condition; ARG: {path, text}). */
static bool file_has(void *arg)
{
	const char *const *pt = arg;
	char *s = testenv_slurp(pt[0], NULL);
	bool ok = s && strstr(s, pt[1]);
	free(s);
	return ok;
}

static struct nestord totp;
static bool totp_session(void *unused)
{
	json_object *all = NULL;
	api(&totp, "GET", "/v1/sessions", NULL, &all);
	bool found = json_object_array_length(all) > 0 &&
		     !strcmp(jget(json_object_array_get_idx(all, 0), "user"), "tess");
	json_object_put(all);
	return found;
}

/*
 * A second factor: a nestord of its own whose PAM stack has pam_oath after
 * the password, and a gateway on it. The client sends the password only
 * (saved credentials); the login screen asks for the code; the code typed
 * (oathtool's) signs the user in and the session starts.
 */
#define TESS_KEY "00112233445566778899aabbccddeeff00112233"
static void test_totp(void)
{
	int failures = check_failures;
	nestord_setup(&totp, "e2e-totp", "tess:tess-pw:nestor\n",
		      "[sessions]\nstop_grace = 1\n[images]\nauto_template = false\n");
	nestord_setup_oath(&totp, "HOTP/T30 tess - " TESS_KEY "\n", false);
	totp.no_wait = true;
	if (!nestord_start(&totp)) {
		CHECK(!"the second factor's nestord started");
		return;
	}
	nestord_add_demo(&totp, "ledger");
	unsigned main_port = port;
	port = free_tcp_port();
	char log2[600];
	pid_t gw2 = gateway_start(&totp, port,
				  "[limits]\nhandshake_timeout = 3\nlogin_timeout = 30\n"
				  "[display]\nremotefx = false\nwidth = 640\nheight = 400\n",
				  log2, sizeof(log2));
	CHECK(gw2 > 0);
	int64_t t0 = util_now_ms();
	pid_t c = xfreerdp("tess", "tess-pw", NULL, xflog);
	const char *asked[2] = {log2, "nestord asks for a one-time code"};
	CHECK_MSG(wait_for(file_has, asked, 20000), "the gateway asks for the code");
	CHECK_MSG(wait_for(is_login_color, NULL, 20000), "the login screen is shown");
	CHECK(!totp_session(NULL));
	char code[16] = "";
	CHECK(oath_totp(TESS_KEY, 0, code, sizeof(code)));
	sh("xdotool search --name 'FreeRDP:' | head -1 | xargs -I{} xdotool windowfocus --sync {} "
	   ">/dev/null 2>&1");
	/* the code field has the focus, the password is kept: the code and Enter are enough */
	sh("xdotool type --delay 60 %s; xdotool key Return", code);
	CHECK_MSG(wait_for(totp_session, NULL, 20000), "signed in with the code");
	const char *shown[2] = {log2, "user=tess session="};
	CHECK_MSG(wait_for(file_has, shown, 10000), "the gateway shows the session");
	fprintf(stderr, "TOTP: signed in with the code after %lld ms\n",
		(long long)(util_now_ms() - t0));
	/* neither the password nor the code in the logs */
	char *gl = testenv_slurp(log2, NULL), *nl = testenv_slurp(totp.log, NULL);
	CHECK(gl && nl && !strstr(gl, "tess-pw") && !strstr(nl, "tess-pw"));
	CHECK(gl && nl && !strstr(gl, code) && !strstr(nl, code));
	free(gl);
	free(nl);
	stop_pid(&c);
	stop_pid(&gw2);
	int st = nestord_stop(&totp, SIGTERM, 30000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestord exit status %d", st);
	port = main_port;
	if (check_failures == failures && !getenv("NESTOR_KEEP_LOGS"))
		testenv_rmtree(totp.dir);
	else
		fprintf(stderr, "the second factor's logs kept in %s\n", totp.dir);
}

static void test_remotefx(void)
{
	/* a client that offers RemoteFX gets it (the default); the codec is lossy: compare loosely
	 */
	struct nestord d2 = d;
	snprintf(d2.dir, sizeof(d2.dir), "%.240s/rfx", d.dir);
	mkdir(d2.dir, 0700);
	unsigned main_port = port;
	port = main_port + 1;
	char log2[600];
	pid_t gw2 = gateway_start(&d2, port, NULL, log2, sizeof(log2));
	CHECK(gw2 > 0);
	pid_t c = xfreerdp_ex("carol", "carol-pw", NULL, "/rfx", xflog);
	char id[64];
	CHECK(wait_for(has_session, "carol", 20000));
	CHECK(session_of("carol", id, sizeof(id), NULL));
	CHECK(wait_state(&d, id, "connected", 30000));
	int diff = -1;
	double mean = 255;
	for (int i = 0; i < 30; i++) {
		pixels_cmp(&d, id, &diff, &mean);
		if (mean < 1.0)
			break;
		usleep(300000);
	}
	fprintf(stderr, "RemoteFX: mean difference %.2f per channel, %d of the pixels differ\n",
		mean, diff);
	CHECK_MSG(mean < 4.0, "RemoteFX picture differs: mean %.2f per channel, %d pixels", mean,
		  diff);
	char *log = testenv_slurp(log2, NULL);
	CHECK_MSG(log && strstr(log, "RemoteFX"), "the gateway chose RemoteFX");
	free(log);
	stop_pid(&c);
	stop_pid(&gw2);
	port = main_port;
}

static void test_stall(void)
{
	/* a client that sends half a connection request and stops */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	static const uint8_t partial[] = {0x03, 0x00, 0x00, 0x2c, 0x27, 0xe0};
	CHECK(write(s, partial, sizeof(partial)) == (ssize_t)sizeof(partial));
	/* meanwhile a real client connects fine */
	pid_t c = xfreerdp("alice", "alice-pw", NULL, xflog);
	char id[64];
	CHECK(session_of("alice", id, sizeof(id), NULL));
	CHECK(wait_state(&d, id, "connected", 30000));
	/* the stalled one is cut: read sees EOF or a reset */
	struct timeval tv = {15, 0};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char buf[64];
	ssize_t r = read(s, buf, sizeof(buf));
	while (r > 0)
		r = read(s, buf, sizeof(buf));
	CHECK_MSG(r == 0 || (r < 0 && errno == ECONNRESET), "stalled socket: r=%zd errno=%d", r,
		  errno);
	close(s);
	stop_pid(&c);
	char *log = testenv_slurp(gwlog, NULL);
	CHECK(log && strstr(log, "handshake not done"));
	free(log);
}

/*
 * The gateway's TLS with one cipher suite (TLS 1.2): an X.224 connection
 * request asking for TLS, its confirm, then the handshake. True if it
 * completes.
 */
static bool tls_with(const char *cipher)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return false;
	/* TPKT, X.224 CR, RDP_NEG_REQ for PROTOCOL_SSL */
	static const uint8_t cr[] = {0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00,
				     0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00};
	uint8_t cc[19];
	size_t got = 0;
	struct timeval tv = {10, 0};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	bool ok = write(s, cr, sizeof(cr)) == (ssize_t)sizeof(cr);
	while (ok && got < sizeof(cc)) {
		ssize_t r = read(s, cc + got, sizeof(cc) - got);
		ok = r > 0;
		got += ok ? (size_t)r : 0;
	}
	/* the confirm: RDP_NEG_RSP selecting TLS */
	ok = ok && cc[5] == 0xd0 && cc[11] == 0x02 && cc[15] == 0x01;
	SSL_CTX *ctx = ok ? SSL_CTX_new(TLS_client_method()) : NULL;
	SSL *ssl = NULL;
	if (ctx) {
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_security_level(ctx, 0);
		ok = SSL_CTX_set_cipher_list(ctx, cipher) == 1 && (ssl = SSL_new(ctx)) &&
		     SSL_set_fd(ssl, s) == 1 && SSL_connect(ssl) == 1;
	}
	if (ssl)
		SSL_free(ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	close(s);
	return ok;
}

static void test_tls(void)
{
	/* forward secrecy only: ephemeral key exchange is taken, static RSA is not */
	CHECK(tls_with("ECDHE-RSA-AES128-GCM-SHA256"));
	CHECK(tls_with("ECDHE-RSA-AES128-SHA")); /* Windows 7's mstsc */
	CHECK(!tls_with("AES128-SHA"));
	CHECK(!tls_with("AES256-GCM-SHA384"));
}

/* --- rdp backend --- */

/* Pixels of the test RDP server's pattern in the X screen region at (X, Y). */
static int pattern_diff(int x, int y, int w, int h)
{
	int sw, shh, diff = 0;
	uint8_t *scr = screen_rgb(&sw, &shh);
	if (!scr)
		return -1;
	/* below the key echo row; clicks are made outside this area */
	for (int yy = RDPSRV_ECHO_Y + RDPSRV_ECHO_H + 4; yy < h && y + yy < shh; yy++)
		for (int xx = 0; xx < w && x + xx < sw; xx++) {
			uint32_t want = rdpsrv_pattern((unsigned)xx, (unsigned)yy);
			const uint8_t *b = scr + ((size_t)(y + yy) * sw + (x + xx)) * 3;
			diff += b[0] != (want >> 16 & 0xff) || b[1] != (want >> 8 & 0xff) ||
				b[2] != (want & 0xff);
		}
	free(scr);
	return diff;
}

static bool pixel_is(int x, int y, uint32_t want)
{
	int sw, shh;
	uint8_t *scr = screen_rgb(&sw, &shh);
	bool ok = scr && x < sw && y < shh;
	if (ok) {
		const uint8_t *b = scr + ((size_t)y * sw + x) * 3;
		ok = b[0] == (want >> 16 & 0xff) && b[1] == (want >> 8 & 0xff) &&
		     b[2] == (want & 0xff);
	}
	free(scr);
	return ok;
}

struct win {
	const char *args; /* xwininfo arguments */
	int w, h;	  /* the area to compare (the window's, at most) */
	int x, y, ww, wh;
	int diff;
};

static bool shows_pattern(void *arg)
{
	struct win *v = arg;
	/* the guest's pointer (a cross) would be drawn over the pattern: move it off */
	sh("xdotool mousemove 1279 1023");
	if (!window_geometry(v->args, &v->x, &v->y, &v->ww, &v->wh))
		return false;
	int w = v->w < v->ww ? v->w : v->ww, h = v->h < v->wh ? v->h : v->wh;
	v->diff = pattern_diff(v->x, v->y, w, h);
	return v->diff == 0 && w > 100 && h > 100;
}

static char *serial_path(const char *id)
{
	snprintf(serial_of, sizeof(serial_of), "%s/run/vm/%s/serial.log", d.dir, id);
	return serial_of;
}

/* Is the guest's forward a listening socket on 127.0.0.1 only? (/proc/net/tcp{,6}) */
static bool forward_loopback_only(unsigned fport, int *listeners)
{
	bool ok = true;
	*listeners = 0;
	const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	for (int f = 0; f < 2; f++) {
		FILE *fp = fopen(files[f], "r");
		char line[512], local[64];
		unsigned st;
		while (fp && fgets(line, sizeof(line), fp)) {
			if (sscanf(line, " %*u: %63s %*s %x", local, &st) != 2 || st != 0x0A)
				continue;
			char *colon = strrchr(local, ':');
			if (!colon || strtoul(colon + 1, NULL, 16) != fport)
				continue;
			(*listeners)++;
			*colon = '\0';
			ok = ok && f == 0 && !strcmp(local, "0100007F"); /* 127.0.0.1 */
		}
		if (fp)
			fclose(fp);
	}
	return ok && *listeners == 1;
}

/* Connect to 127.0.0.1:TO as UID (0: as we are); true if it connected. */
static bool connects_as(uid_t uid, unsigned to)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (uid && setuid(uid) < 0)
			_exit(2);
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((uint16_t)to),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		_exit(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : 1);
	}
	int st;
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/*
 * data/nestor-guests.nft, loaded with this test's users (nestord and the
 * gateway run as root here): another local user cannot reach the guest's
 * forward, nestor's own users still can.
 */
static void guest_firewall(unsigned fwd)
{
	if (access("/usr/sbin/nft", X_OK) != 0) {
		CHECK_MSG(!"nft installed", "nftables is missing (scripts/install-deps)");
		return;
	}
	CHECK_MSG(connects_as(60102, fwd), "without the rule, anyone reaches the forward");
	char cmd[1200];
	snprintf(cmd, sizeof(cmd),
		 "sed 's/{ nestor, nestor-gateway }/{ 0 }/; s/nestor_guests/nestor_guests_test/g' "
		 "'%s/data/nestor-guests.nft' | nft -f -",
		 getenv("NESTOR_SRC"));
	CHECK_MSG(sh("%s", cmd) == 0, "load data/nestor-guests.nft");
	CHECK_MSG(!connects_as(60102, fwd), "another local user cannot reach the guest's RDP");
	CHECK_MSG(connects_as(0, fwd), "nestor's own users still can");
	sh("nft delete table inet nestor_guests_test"); /* a host's own rule stays */
}

static void test_rdp_desktop(void)
{
	/*
	 * Its template first (a cold boot with the rdp probe, as the first
	 * user's would be): a session's cold boot racing the first template
	 * build is two TCG boots on the CI's two loaded cores, and one such
	 * boot once never came up (CI, 2026-12-01).
	 */
	CHECK(api(&d, "POST", "/v1/images/xpdesk/template", NULL, NULL) == 200);
	pid_t c = xfreerdp_ex("dave", "dave-pw", NULL, "/shell:xpdesk", xflog);
	CHECK(wait_for(has_session, "dave", 20000));
	char id[64];
	long long pid = 0;
	CHECK(session_of("dave", id, sizeof(id), NULL));
	CHECK(wait_state(&d, id, "connected", 90000));
	CHECK(session_of("dave", id, sizeof(id), &pid));
	/* the client shows exactly what the guest's own RDP server paints */
	struct win v = {
	    .args = "-id $(xdotool search --name 'FreeRDP:' | head -1)", .w = 1024, .h = 768};
	CHECK_MSG(wait_for(shows_pattern, &v, 20000),
		  "the guest server's pattern: %d pixels differ", v.diff);
	/* the guest server saw our guest account, standard RDP security, no clipboard */
	serial_path(id);
	CHECK(wait_for(serial_has, "CONNECT user=guestacct auth=ok security=rdp", 5000));
	char *ser = testenv_slurp(serial_of, NULL);
	CHECK_MSG(ser && !strstr(ser, "cliprdr"), "no clipboard channel to the guest by default");
	free(ser);
	/* keys and clicks reach it: echoed on its screen and its serial port */
	sh("xdotool search --name 'FreeRDP:' | head -1 | xargs -I{} xdotool windowfocus --sync {} "
	   ">/dev/null 2>&1");
	sh("xdotool key a");
	CHECK(wait_for(serial_has, "RDPSRV KEY 30", 10000));
	int x0 = v.x, y0 = v.y;
	bool echo = false;
	for (int i = 0; i < 30 && !echo; i++, usleep(200000))
		echo = pixel_is(x0 + RDPSRV_ECHO_X(0) + 2, y0 + RDPSRV_ECHO_Y + 2,
				rdpsrv_key_colour(0x1e));
	CHECK_MSG(echo, "the key's echo block is on the client's screen");
	sh("xdotool mousemove %d %d click 1", x0 + 700, y0 + 600);
	CHECK(wait_for(serial_has, "RDPSRV CLICK 700 600", 10000));
	/* the guest's own pointer shape (a green cross) is what the client shows */
	bool cross = false;
	for (int i = 0; i < 20 && !cross; i++, usleep(200000))
		cross = pixel_is(x0 + 700, y0 + 590, 0x00ff00) &&
			pixel_is(x0 + 690, y0 + 600, 0x00ff00);
	CHECK_MSG(cross, "the guest's pointer is relayed to the client");
	bool click = false;
	for (int i = 0; i < 30 && !click; i++, usleep(200000))
		click = pixel_is(x0 + 702, y0 + 602, RDPSRV_CLICK);
	CHECK_MSG(click, "the click's mark is on the client's screen");

	/* the guest's port: 127.0.0.1 only, and the guest cannot reach out */
	json_object *o = NULL;
	char path[128];
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	api(&d, "GET", path, NULL, &o);
	unsigned fwd = (unsigned)jint(o, "rdp_port");
	json_object_put(o);
	int listeners = 0;
	CHECK_MSG(fwd > 0 && forward_loopback_only(fwd, &listeners),
		  "forward %u: %d listeners, 127.0.0.1 only", fwd, listeners);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	CHECK(bind(ls, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(ls, 4) == 0 &&
	      getsockname(ls, (struct sockaddr *)&sa, &sl) == 0);
	char cmd[64];
	/* 10.0.2.2 is the host as user-mode networking shows it */
	snprintf(cmd, sizeof(cmd), "EGRESS 10.0.2.2:%u", ntohs(sa.sin_port));
	char *ans = guest_cmd(&d, id, cmd, 15000);
	CHECK_MSG(ans && !strncmp(ans, "EGRESS blocked", 14), "guest egress: %s",
		  ans ? ans : "(no answer)");
	free(ans);
	CHECK_MSG(accept(ls, NULL, NULL) < 0 && errno == EAGAIN, "no connection reached the host");
	close(ls);
	CHECK_MSG(fwd >= 13400 && fwd <= 14399, "forward %u within forward_ports", fwd);
	pid_t w[4];
	if (workers(w, 4) == 1) /* this user's alone: what an rdp-backend worker costs */
		fprintf(stderr, "rdp worker Pss: %.1f MiB (guest desktop %s)\n",
			(double)testenv_pss_kib(w[0]) / 1024, "1024x768");
	guest_firewall(fwd);

	/* disconnect keeps the guest; reconnect gets the same one, drawn again */
	stop_pid(&c);
	CHECK(wait_state(&d, id, "disconnected", 10000));
	c = xfreerdp_ex("dave", "dave-pw", NULL, "/shell:xpdesk", xflog);
	CHECK(wait_state(&d, id, "connected", 30000));
	long long pid2 = 0;
	char id2[64];
	CHECK(session_of("dave", id2, sizeof(id2), &pid2));
	CHECK_STR(id2, id);
	CHECK(pid2 == pid && pid > 0);
	CHECK_MSG(wait_for(shows_pattern, &v, 20000), "after reconnect: %d pixels differ", v.diff);
	stop_pid(&c);
	/* the image's policy turns the clipboard relay on for the next connection */
	CHECK(api(&d, "PUT", "/v1/images/xpdesk", "{\"clipboard\":1}", NULL) == 200);
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	CHECK(api(&d, "DELETE", path, NULL, NULL) == 200);
	CHECK(wait_state(&d, id, "ended", 30000));
	pid_t c2 = xfreerdp_ex("dave", "dave-pw", NULL, "/shell:xpdesk +clipboard", xflog);
	CHECK(wait_for(has_session, "dave", 20000));
	CHECK(session_of("dave", id, sizeof(id), NULL));
	CHECK(wait_state(&d, id, "connected", 90000));
	serial_path(id);
	CHECK_MSG(wait_for(serial_has, "channels=cliprdr", 15000),
		  "clipboard channel offered to the guest when the image allows it");
	/* and relayed both ways: the guest's "monitor ready" reached the user's client,
	 * whose clipboard formats reached the guest */
	CHECK_MSG(wait_for(serial_has, "RDPSRV CLIPRDR formats", 15000),
		  "the user's clipboard formats reached the guest");
	stop_pid(&c2);
	CHECK(api(&d, "PUT", "/v1/images/xpdesk", "{\"clipboard\":0}", NULL) == 200);
}

static bool warm_ready(void *image)
{
	char path[128];
	json_object *o = NULL;
	snprintf(path, sizeof(path), "/v1/images/%s", (const char *)image);
	api(&d, "GET", path, NULL, &o);
	bool ok = jint(o, "warm_ready") >= 1;
	json_object_put(o);
	return ok;
}

static void test_rdp_remoteapp(void)
{
	/* from a template: the clone's RDP server is up at once, behind a new forward */
	CHECK(api(&d, "POST", "/v1/images/xprail/template", NULL, NULL) == 200);
	/* the guest serves RemoteApp: its own window, relayed */
	pid_t c = xfreerdp("erin", "erin-pw", RDPSRV_APP_ALIAS, xflog);
	CHECK_MSG(wait_for(has_window, "^" RDPSRV_APP_TITLE "$", 90000), "the guest's own window");
	char *out = sh_out("xdotool search --name '^" RDPSRV_APP_TITLE "$' | wc -l");
	CHECK_MSG(atoi(out) == 1, "%d windows", atoi(out));
	free(out);
	struct win v = {
	    .args = "-name '" RDPSRV_APP_TITLE "'", .w = RDPSRV_WIN_W, .h = RDPSRV_WIN_H};
	CHECK_MSG(wait_for(shows_pattern, &v, 20000), "the app window's pixels: %d differ", v.diff);
	char id[64];
	CHECK(session_of("erin", id, sizeof(id), NULL));
	json_object *o = NULL;
	char path[128];
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	api(&d, "GET", path, NULL, &o);
	CHECK_STR(jget(o, "start_path"), "template");
	json_object_put(o);
	serial_path(id);
	CHECK(serial_has("EXEC " RDPSRV_APP_ALIAS " ok"));
	CHECK(serial_has("rail=1"));
	sh("xdotool search --name '^" RDPSRV_APP_TITLE "$' | head -1 | xargs -I{} xdotool "
	   "windowfocus --sync {} >/dev/null 2>&1");
	/* the user's window requests reach the guest: focusing its window activates it */
	CHECK_MSG(wait_for(serial_has, "RDPSRV ACTIVATE 0x2001 1", 10000),
		  "the client's RAIL activate reached the guest");
	sh("xdotool mousemove %d %d click 1", v.x + 300, v.y + 200);
	CHECK(wait_for(serial_has, "RDPSRV CLICK 300 200", 10000));
	stop_pid(&c);

	/* from a warm pool: a paused clone, resumed for the user */
	CHECK(api(&d, "DELETE", path, NULL, NULL) == 200);
	CHECK(wait_state(&d, id, "ended", 30000));
	CHECK(api(&d, "PUT", "/v1/images/xprail", "{\"warm_pool\":1}", NULL) == 200);
	CHECK_MSG(wait_for(warm_ready, "xprail", 60000), "a warm rdp guest");
	c = xfreerdp("erin", "erin-pw", RDPSRV_APP_ALIAS, xflog);
	CHECK_MSG(wait_for(has_window, "^" RDPSRV_APP_TITLE "$", 60000), "the warm guest's window");
	CHECK_MSG(wait_for(shows_pattern, &v, 20000), "the warm guest's pixels: %d differ", v.diff);
	CHECK(session_of("erin", id, sizeof(id), NULL));
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	api(&d, "GET", path, NULL, &o);
	CHECK_STR(jget(o, "start_path"), "warm");
	json_object_put(o);
	stop_pid(&c);
	CHECK(api(&d, "PUT", "/v1/images/xprail", "{\"warm_pool\":0}", NULL) == 200);

	/* a guest without RemoteApp: one window with the app's title, its desktop inside */
	c = xfreerdp("frank", "frank-pw", "xpdeskapp", xflog);
	CHECK_MSG(wait_for(has_window, "^XP Desk$", 90000), "a window titled with the app");
	out = sh_out("xdotool search --name '^XP Desk$' | wc -l");
	CHECK_MSG(atoi(out) == 1, "%d windows", atoi(out));
	free(out);
	struct win v2 = {.args = "-name 'XP Desk'", .w = 640, .h = 400};
	CHECK_MSG(wait_for(shows_pattern, &v2, 30000), "the app window's pixels: %d differ",
		  v2.diff);
	stop_pid(&c);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay ? strstr(hay, needle) : NULL; p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/*
 * A guest whose RDP server its administrator replaced (nestor-test-rdpsrv
 * --hostile): what the guard bounds is dropped and logged while the session
 * goes on; then an 8000x8000 desktop ends that guest connection, and only
 * that one: the worker says so and exits normally (no crash).
 */
static void test_hostile_guest(void)
{
	char *before = testenv_slurp(gwlog, NULL);
	int crashes = count_of(before, "killed by signal");
	free(before);
	pid_t c = xfreerdp("oli", "oli-pw", "hostile", xflog);
	char id[64];
	CHECK(wait_for(has_session, "oli", 30000));
	CHECK(session_of("oli", id, sizeof(id), NULL));
	CHECK(wait_state(&d, id, "connected", 120000));
	serial_path(id);
	CHECK_MSG(wait_for(serial_has, "RDPSRV HOSTILE orders sent", 30000),
		  "the hostile guest sent its orders");
	CHECK_MSG(wait_state(&d, id, "connected", 0), "the session outlives the hostile orders");
	CHECK_MSG(wait_for(serial_has, "RDPSRV HOSTILE resize sent", 15000),
		  "the hostile guest resized its desktop");
	CHECK_MSG(wait_state(&d, id, "disconnected", 30000),
		  "the oversized guest desktop ends the guest connection");
	char *log = testenv_slurp(gwlog, NULL);
	CHECK_MSG(log && strstr(log, "the guest sent a pointer"), "the far pointer index dropped");
	CHECK_MSG(log && strstr(log, "the guest sent a window order"), "window orders dropped");
	CHECK_MSG(count_of(log, "the guest sent") >= 4, "%d orders dropped",
		  count_of(log, "the guest sent"));
	CHECK_MSG(count_of(log, "killed by signal") == crashes, "a worker crashed");
	free(log);
	stop_pid(&c);
}

#define BANNER_RGB 0xf5b301u /* draw.h's GW_BANNER_BG */

struct banner_probe {
	int x, y, w, h;	   /* the client's window */
	unsigned long sum; /* what the banner's first text row showed, last time */
};

/* The client's window shows the banner across its top, and the guest below it. */
static bool banner_shown(void *arg)
{
	struct banner_probe *b = arg;
	if (!window_geometry("-id $(xdotool search --name 'FreeRDP:' | head -1)", &b->x, &b->y,
			     &b->w, &b->h) ||
	    b->w < 100 || b->h < 100)
		return false;
	/* its background at both ends of its top rows (the text starts 6 pixels in) */
	return pixel_is(b->x + 2, b->y + 2, BANNER_RGB) &&
	       pixel_is(b->x + b->w - 3, b->y + 2, BANNER_RGB) &&
	       !pixel_is(b->x + b->w / 2, b->y + b->h - 10, BANNER_RGB);
}

/* The banner's countdown row changed since the last look. */
static bool countdown_moved(void *arg)
{
	struct banner_probe *b = arg;
	int sw, shh;
	uint8_t *scr = screen_rgb(&sw, &shh);
	unsigned long sum = 0;
	for (int y = b->y + 6; scr && y < b->y + 22 && y < shh; y++)
		for (int x = b->x; x < b->x + 200 && x < sw; x++)
			sum = sum * 31 + scr[((size_t)y * sw + x) * 3];
	free(scr);
	bool moved = b->sum && sum != b->sum;
	b->sum = sum;
	return moved;
}

/*
 * An administrator ends a connected session in 20 s with a message
 * (nestorctl): the session's JSON says so, the banner appears in the
 * client's window within a few seconds and counts down, and the session
 * ends when the time is up.
 */
static void test_end_warning(void)
{
	pid_t c = xfreerdp("frank", "frank-pw", NULL, xflog);
	CHECK(wait_for(has_session, "frank", 20000));
	char id[64];
	CHECK(session_of("frank", id, sizeof(id), NULL));
	CHECK(wait_state(&d, id, "connected", 60000));
	struct banner_probe b = {0};
	CHECK_MSG(!banner_shown(&b), "a banner before any end was announced");
	int64_t t0 = util_now_ms();
	int st = sh("%s/broker/nestorctl --socket %s session end %s --in 20 "
		    "--message 'Maintenance at noon: save your work' >/dev/null",
		    getenv("NESTOR_BUILD"), d.sock, id);
	CHECK_MSG(st == 0, "nestorctl session end --in: status %d", st);
	json_object *o = NULL, *e = NULL;
	char path[128];
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	CHECK(api(&d, "GET", path, NULL, &o) == 200);
	CHECK_STR(jget(o, "state"), "connected");
	CHECK(json_object_object_get_ex(o, "ending", &e));
	CHECK_STR(jget(e, "why"), "admin");
	CHECK_STR(jget(e, "message"), "Maintenance at noon: save your work");
	CHECK_MSG(jint(e, "in_s") >= 18 && jint(e, "in_s") <= 20, "in_s %lld", jint(e, "in_s"));
	json_object_put(o);
	CHECK_MSG(wait_for(banner_shown, &b, 8000), "the banner in the client's window");
	fprintf(stderr, "end announced: the banner shown after %.1f s\n",
		(util_now_ms() - t0) / 1000.0);
	countdown_moved(&b);
	CHECK_MSG(wait_for(countdown_moved, &b, 3000), "the banner's countdown moves");
	CHECK(wait_state(&d, id, "ended", 30000));
	double took = (util_now_ms() - t0) / 1000.0;
	fprintf(stderr, "end announced: ended after %.1f s\n", took);
	CHECK_MSG(took >= 19.5 && took < 26, "ended after %.1f s", took);
	CHECK(api(&d, "GET", path, NULL, &o) == 200);
	CHECK_STR(jget(o, "end_reason"), "ended by request: Maintenance at noon: save your work");
	json_object_put(o);
	stop_pid(&c);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (!x11_tools()) {
		fprintf(stderr, "Xvfb, xfreerdp, xdotool or xwininfo missing\n");
		return 77;
	}
	testenv_guest_dir();
	nestord_setup(&d, "e2e", USERS, "[sessions]\nstop_grace = 1\n[caps]\nmax_starting = 4\n");
	if (!nestord_start(&d)) {
		CHECK(!"nestord started");
		return check_done("test_gateway");
	}
	nestord_add_demo(&d, "ledger");
	CHECK(api(&d, "POST", "/v1/images/demo/template", NULL, NULL) == 200);
	nestord_add_rdp(&d, "xpdesk", "xpdesk", "XP Desktop", false, NULL);
	nestord_add_rdp(&d, "xprail", RDPSRV_APP_ALIAS, "Test App", true, "||" RDPSRV_APP_ALIAS);
	nestord_add_rdp_ex(&d, "xphostile", "hostile", "Hostile App", true, "||" RDPSRV_APP_ALIAS,
			   " nestor.rdphostile");
	json_object *app = json_object_new_object();
	json_object_object_add(app, "alias", json_object_new_string("xpdeskapp"));
	json_object_object_add(app, "image", json_object_new_string("xpdesk"));
	json_object_object_add(app, "title", json_object_new_string("XP Desk"));
	CHECK(api(&d, "POST", "/v1/apps", json_object_to_json_string(app), NULL) == 201);
	json_object_put(app);

	port = 20000 + (unsigned)getpid() % 20000;
	xvfb = x11_start(d.dir);

	snprintf(xflog, sizeof(xflog), "%s/xfreerdp.log", d.dir);
	metrics_port = free_tcp_port();
	char gwconf[512];
	/* planar only (lossless: pixels compare exactly); RemoteFX has its own gateway */
	snprintf(gwconf, sizeof(gwconf),
		 "metrics_listen = 127.0.0.1:%u\n"
		 "[limits]\nhandshake_timeout = 3\nlogin_timeout = 8\n"
		 "[display]\nremotefx = false\n"
		 "width = 640\nheight = 400\n",
		 metrics_port);
	gateway = gateway_start(&d, port, gwconf, gwlog, sizeof(gwlog));
	CHECK(gateway > 0);

	/* NESTOR_E2E_ONLY=console|rdp runs one backend's tests, =totp the second factor's
	 * (debugging) */
	const char *only = getenv("NESTOR_E2E_ONLY");
	bool totp_only = only && !strcmp(only, "totp");
	if (!only || totp_only)
		test_totp();
	if (!totp_only && (!only || strcmp(only, "rdp"))) {
		test_desktop();
		test_end_warning();
		test_metrics();
		test_remoteapp();
		test_wrong_password();
		test_login_timeout();
		test_remotefx();
		test_stall();
		test_tls();
		test_worker_crash();
		test_metrics_crash();
	}
	if (!totp_only && (!only || strcmp(only, "console"))) {
		test_rdp_desktop();
		test_rdp_remoteapp();
		test_hostile_guest();
	}

	/* a clean exit (under ASan: no leak of ours, see tests/lsan.supp) */
	int gst = child_stop(&gateway);
	CHECK_MSG(WIFEXITED(gst) && WEXITSTATUS(gst) == 0, "gateway exit status %d", gst);
	stop_pid(&xvfb);
	int st = nestord_stop(&d, SIGTERM, 30000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestord exit status %d", st);
	int r = check_done("test_gateway");
	if (r == 0 && !getenv("NESTOR_KEEP_LOGS"))
		testenv_rmtree(d.dir);
	else
		fprintf(stderr, "logs kept in %s\n", d.dir);
	return r;
}
