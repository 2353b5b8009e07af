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
 *  - a stalled handshake is cut by the watchdog while others connect fine.
 */
#include "check.h"
#include "daemon.h"
#include "testenv.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char USERS[] = "alice:alice-pw:nestor\nbob:bob-pw:nestor\ncarol:carol-pw:nestor\n";
static struct nestord d;
static char display[16], fbdir[512], gwlog[600];
static pid_t xvfb, gateway;
static unsigned port;

static pid_t spawn(const char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		setenv("DISPLAY", display, 1);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static void stop_pid(pid_t *pid)
{
	child_stop(pid);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static char *sh_out(const char *cmd)
{
	char buf[4096] = "";
	FILE *p = popen(cmd, "r");
	size_t n = p ? fread(buf, 1, sizeof(buf) - 1, p) : 0;
	if (p)
		pclose(p);
	buf[n] = '\0';
	return strdup(buf);
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
	const char *argv[] = {
	    "xfreerdp",	    v,	 u, p, "/cert:ignore", "/size:1024x768", "-clipboard",
	    app ? a : NULL, NULL};
	return spawn(argv, log);
}

static char xflog[600];

/* The X screen as RGB from Xvfb's XWD frame buffer file. */
static uint8_t *screen_rgb(int *w, int *h)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/Xvfb_screen0", fbdir);
	size_t len;
	uint8_t *x = (uint8_t *)testenv_slurp(path, &len);
	if (!x || len < 100)
		return NULL;
#define BE32(o)                                                                                    \
	((uint32_t)x[o] << 24 | (uint32_t)x[o + 1] << 16 | (uint32_t)x[o + 2] << 8 | x[o + 3])
	uint32_t hs = BE32(0), bpl = BE32(48), nc = BE32(76);
	*w = (int)BE32(16);
	*h = (int)BE32(20);
	size_t off = hs + (size_t)nc * 12;
	uint8_t *rgb = malloc((size_t)*w * (size_t)*h * 3);
	for (int y = 0; y < *h; y++)
		for (int i = 0; i < *w; i++) {
			const uint8_t *px = x + off + (size_t)y * bpl + (size_t)i * 4;
			uint8_t *o = rgb + ((size_t)y * (size_t)*w + (size_t)i) * 3;
			o[0] = px[2];
			o[1] = px[1];
			o[2] = px[0];
		}
	free(x);
	return rgb;
}

/* A P6 PPM (QMP screendump). */
static uint8_t *ppm(const char *path, int *w, int *h)
{
	size_t len;
	uint8_t *d8 = (uint8_t *)testenv_slurp(path, &len);
	if (!d8)
		return NULL;
	int mx, off = 0;
	if (sscanf((char *)d8, "P6 %d %d %d%n", w, h, &mx, &off) != 3 || mx != 255) {
		free(d8);
		return NULL;
	}
	off++; /* one whitespace after maxval */
	uint8_t *rgb = malloc((size_t)*w * (size_t)*h * 3);
	memcpy(rgb, d8 + off, (size_t)*w * (size_t)*h * 3);
	free(d8);
	return rgb;
}

/* Where a window is on the X screen (from xwininfo). */
static bool window_geometry(const char *name_args, int *x, int *y, int *w, int *h)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "xwininfo %s 2>/dev/null", name_args);
	char *out = sh_out(cmd);
	char *ax = strstr(out, "Absolute upper-left X:"),
	     *ay = strstr(out, "Absolute upper-left Y:");
	char *ww = strstr(out, "Width:"), *hh = strstr(out, "Height:");
	bool ok = ax && ay && ww && hh;
	if (ok) {
		*x = atoi(ax + 22);
		*y = atoi(ay + 22);
		*w = atoi(ww + 6);
		*h = atoi(hh + 7);
	}
	free(out);
	return ok;
}

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

static bool pixels_cmp(const char *id, int *diff_out, double *mean_out);

/* Does the client's window show exactly the guest's screen? */
static bool pixels_match(const char *id, int *diff_out)
{
	double mean;
	return pixels_cmp(id, diff_out, &mean);
}

/* DIFF: pixels not identical; MEAN: mean absolute difference per channel. */
static bool pixels_cmp(const char *id, int *diff_out, double *mean_out)
{
	char path[128];
	json_object *o = NULL;
	snprintf(path, sizeof(path), "/v1/sessions/%s/screendump", id);
	int st = api(&d, "POST", path, NULL, &o);
	if (st != 200) {
		fprintf(stderr, "screendump: HTTP %d %s\n", st, jget(o, "error"));
		json_object_put(o);
		return false;
	}
	int gw_, gh;
	uint8_t *guest = ppm(jget(o, "file"), &gw_, &gh);
	json_object_put(o);
	int x, y, w, h, sw, shh;
	uint8_t *scr = NULL;
	bool ok = false;
	if (guest &&
	    window_geometry("-id $(xdotool search --name 'FreeRDP:' | head -1)", &x, &y, &w, &h) &&
	    (scr = screen_rgb(&sw, &shh))) {
		int diff = 0;
		double sum = 0;
		for (int yy = 0; yy < gh && y + yy < shh; yy++) {
			for (int xx = 0; xx < gw_ && x + xx < sw; xx++) {
				const uint8_t *a = guest + ((size_t)yy * gw_ + xx) * 3;
				const uint8_t *b = scr + ((size_t)(y + yy) * sw + (x + xx)) * 3;
				diff += memcmp(a, b, 3) != 0;
				for (int c = 0; c < 3; c++)
					sum += abs((int)a[c] - (int)b[c]);
			}
		}
		*diff_out = diff;
		*mean_out = sum / ((double)gw_ * gh * 3);
		ok = diff == 0 && w >= gw_ && h >= gh;
	} else {
		fprintf(stderr, "pixels: guest %s, window found %d\n", guest ? "ok" : "missing",
			window_geometry("-id $(xdotool search --name 'FreeRDP:' | head -1)", &x, &y,
					&w, &h));
	}
	free(guest);
	free(scr);
	return ok;
}

static bool wait_for(bool (*cond)(void *), void *arg, int ms)
{
	int64_t end = util_now_ms() + ms;
	while (util_now_ms() < end) {
		if (cond(arg))
			return true;
		usleep(200000);
	}
	return cond(arg);
}

static bool has_window(void *name)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "xdotool search --name '%s' >/dev/null 2>&1", (char *)name);
	return sh("%s", cmd) == 0;
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
		pixels_cmp(id, &diff, &mean);
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

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (access("/usr/bin/Xvfb", X_OK) || access("/usr/bin/xfreerdp", X_OK) ||
	    access("/usr/bin/xdotool", X_OK) || access("/usr/bin/xwininfo", X_OK)) {
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

	port = 20000 + (unsigned)getpid() % 20000;
	int dn = 50 + getpid() % 200;
	snprintf(display, sizeof(display), ":%d", dn);
	setenv("DISPLAY", display, 1); /* for every xdotool/xwininfo, substitutions included */
	snprintf(fbdir, sizeof(fbdir), "%s/fb", d.dir);
	mkdir(fbdir, 0700);
	const char *xargv[] = {"Xvfb",	 display, "-screen",   "0",   "1280x1024x24",
			       "-fbdir", fbdir,	  "-nolisten", "tcp", NULL};
	xvfb = spawn(xargv, NULL);
	char xsock[64];
	snprintf(xsock, sizeof(xsock), "/tmp/.X11-unix/X%d", dn);
	for (int i = 0; i < 100 && access(xsock, F_OK); i++)
		usleep(100000);

	snprintf(xflog, sizeof(xflog), "%s/xfreerdp.log", d.dir);
	gateway =
	    /* planar only (lossless: pixels compare exactly); RemoteFX has its own gateway */
	    gateway_start(&d, port,
			  "[limits]\nhandshake_timeout = 3\n[display]\nremotefx = false\n", gwlog,
			  sizeof(gwlog));
	CHECK(gateway > 0);

	test_desktop();
	test_remoteapp();
	test_wrong_password();
	test_remotefx();
	test_stall();

	stop_pid(&gateway);
	stop_pid(&xvfb);
	int st = nestord_stop(&d, SIGTERM, 30000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestord exit status %d", st);
	int r = check_done("test_gateway");
	if (r == 0)
		testenv_rmtree(d.dir);
	else
		fprintf(stderr, "logs kept in %s\n", d.dir);
	return r;
}
