/*
 * nestord for real: real sqlite, real PAM (pam_wrapper + pam_matrix), real
 * QEMU test guests. Authentication and throttling; connect -> ready with a
 * long-poll; reconnect; a session cap with a queue; max_starting
 * serializing starts; kill -9 and restart; announced ends (idle warnings,
 * an administrator's end with a message, across a restart); malformed
 * requests and the API corpus replay; graceful shutdown.
 */
#include "api_parse.h"
#include "check.h"
#include "daemon.h"
#include "httpc.h"
#include "testenv.h"
#include "util.h"

#include <dirent.h>
#include <grp.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char USERS[] = "alice:alice-pw:nestor\n"
			    "bob:bob-pw:nestor\n"
			    "carol:carol-pw:nestor\n"
			    "dave:dave-pw:nestor\n"
			    "erin:erin-pw:nestor\n"
			    "locked:locked-pw:other-service\n";

static struct nestord d;

static int auth(const char *user, const char *pw, const char *client)
{
	char body[256];
	snprintf(body, sizeof(body), "{\"user\":\"%s\",\"password\":\"%s\",\"client\":\"%s\"}",
		 user, pw, client);
	return api(&d, "POST", "/v1/auth", body, NULL);
}

static int connect_(const char *user, const char *app, json_object **out)
{
	char body[256];
	snprintf(body, sizeof(body),
		 "{\"user\":\"%s\",\"password\":\"%s-pw\",\"app\":\"%s\",\"client\":\"10.1.0.9\"}",
		 user, user, app);
	return api(&d, "POST", "/v1/sessions", body, out);
}

static void end_session(const char *id)
{
	char path[96];
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	CHECK(api(&d, "DELETE", path, NULL, NULL) == 200);
}

static void test_auth(void)
{
	CHECK(auth("alice", "alice-pw", "10.0.0.1") == 200);
	CHECK(auth("alice", "wrong", "10.0.0.1") == 401);
	CHECK(auth("nobody", "x", "10.0.0.1") == 401);
	CHECK(auth("locked", "locked-pw", "10.0.0.1") == 403);
	/* A burst of wrong passwords for one user: locked out, even with the right one. */
	for (int i = 0; i < 3; i++)
		CHECK(auth("bob", "guess", "10.0.0.2") == 401);
	CHECK(auth("bob", "bob-pw", "10.0.0.3") == 429);
	/* ... and the address that guessed is locked for other users too */
	CHECK(auth("carol", "carol-pw", "10.0.0.2") == 429);
	CHECK(auth("carol", "carol-pw", "10.0.0.4") == 200);
	/* audit has the failures, never a password */
	json_object *a = NULL;
	CHECK(api(&d, "GET", "/v1/audit?limit=100", NULL, &a) == 200);
	const char *text = json_object_to_json_string(a);
	CHECK(strstr(text, "login-failed") && strstr(text, "login-throttled") &&
	      strstr(text, "login-ok"));
	CHECK(!strstr(text, "alice-pw") && !strstr(text, "guess"));
	json_object_put(a);
	/* and neither does the log */
	char *log = testenv_slurp(d.log, NULL);
	CHECK(log && !strstr(log, "alice-pw") && !strstr(log, "guess"));
	free(log);
}

static void test_connect_reconnect(void)
{
	json_object *s = NULL;
	CHECK(connect_("alice", "ledger", &s) == 200);
	char id[64];
	snprintf(id, sizeof(id), "%s", jget(s, "id"));
	CHECK(strcmp(jget(s, "state"), "starting") == 0);
	json_object_put(s);
	/* long-poll: returns when the state leaves "starting" */
	char path[160];
	snprintf(path, sizeof(path), "/v1/sessions/%s?wait=starting&timeout=60", id);
	int64_t t0 = util_now_ms();
	CHECK(api(&d, "GET", path, NULL, &s) == 200);
	CHECK_MSG(strcmp(jget(s, "state"), "ready") == 0, "state %s", jget(s, "state"));
	fprintf(stderr, "connect -> ready (long-poll) %.2f s\n", (util_now_ms() - t0) / 1000.0);
	CHECK(jint(s, "pid") > 0 && pid_alive((pid_t)jint(s, "pid")));
	CHECK(*jget(s, "vnc") == '/');
	/* private sockets; only the screen is shared with api_group (the gateway's) */
	struct stat st;
	struct group *ng = getgrnam("nogroup");
	CHECK(stat(jget(s, "vnc"), &st) == 0 && (st.st_mode & 0777) == 0660 && ng &&
	      st.st_gid == ng->gr_gid);
	char qmp[600];
	snprintf(qmp, sizeof(qmp), "%s/run/vm/%s/qmp.sock", d.dir, id);
	CHECK_MSG(stat(qmp, &st) == 0 && (st.st_mode & 0077) == 0, "qmp.sock mode %o",
		  st.st_mode & 0777);
	json_object_put(s);
	/* reconnect: same session, never a second guest */
	CHECK(connect_("alice", "ledger", &s) == 200);
	CHECK_STR(jget(s, "id"), id);
	json_object_put(s);
	snprintf(path, sizeof(path), "/v1/sessions/%s/attach", id);
	CHECK(api(&d, "POST", path, NULL, &s) == 200);
	CHECK_STR(jget(s, "state"), "connected");
	json_object_put(s);
	snprintf(path, sizeof(path), "/v1/sessions/%s/detach", id);
	CHECK(api(&d, "POST", path, NULL, NULL) == 200);
	CHECK(connect_("alice", "ledger", &s) == 200);
	CHECK_STR(jget(s, "id"), id);
	CHECK_STR(jget(s, "state"), "disconnected");
	json_object_put(s);
	/* unknown app: a clear 404 */
	CHECK(connect_("alice", "no-such-app", &s) == 404);
	CHECK(strstr(jget(s, "error"), "unknown app") != NULL);
	json_object_put(s);
	end_session(id);
	CHECK(wait_state(&d, id, "ended", 30000));
}

static void test_cap_queue(void)
{
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_sessions\":2,\"max_starting\":0}", NULL) == 200);
	json_object *a = NULL, *b = NULL, *c = NULL;
	CHECK(connect_("alice", "ledger", &a) == 200);
	/* bob is still locked out from test_auth: connect authenticates too */
	CHECK(connect_("bob", "ledger", &b) == 429);
	json_object_put(b);
	CHECK(connect_("dave", "ledger", &b) == 200);
	CHECK(connect_("erin", "ledger", &c) == 200);
	CHECK_STR(jget(c, "state"), "queued");
	CHECK(jint(c, "position") == 1);
	CHECK(strstr(jget(c, "reason"), "session limit") != NULL);
	char ida[64], idb[64], idc[64];
	snprintf(ida, sizeof(ida), "%s", jget(a, "id"));
	snprintf(idb, sizeof(idb), "%s", jget(b, "id"));
	snprintf(idc, sizeof(idc), "%s", jget(c, "id"));
	json_object_put(a);
	json_object_put(b);
	json_object_put(c);
	CHECK(wait_state(&d, ida, "ready", 60000));
	CHECK(wait_state(&d, idb, "ready", 60000));
	CHECK(wait_state(&d, idc, "queued", 100));
	/* one ends: the queued user is admitted */
	end_session(ida);
	CHECK(wait_state(&d, idc, "ready", 60000));
	/* lowering the cap never ends running sessions */
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_sessions\":1}", NULL) == 200);
	CHECK(wait_state(&d, idb, "ready", 100));
	CHECK(wait_state(&d, idc, "ready", 100));
	end_session(idb);
	end_session(idc);
	CHECK(wait_state(&d, idb, "ended", 30000));
	CHECK(wait_state(&d, idc, "ended", 30000));
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_sessions\":0}", NULL) == 200);
}

static void test_max_starting(void)
{
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_starting\":1}", NULL) == 200);
	const char *users[4] = {"alice", "carol", "dave", "erin"};
	char ids[4][64];
	for (int i = 0; i < 4; i++) {
		json_object *s = NULL;
		CHECK(connect_(users[i], "ledger", &s) == 200);
		snprintf(ids[i], sizeof(ids[i]), "%s", jget(s, "id"));
		json_object_put(s);
	}
	/* at no time more than one guest starting; all four get there */
	int max_starting = 0, ready = 0;
	int64_t end = util_now_ms() + 120000;
	while (ready < 4 && util_now_ms() < end) {
		json_object *st = NULL, *u;
		api(&d, "GET", "/v1/status", NULL, &st);
		if (json_object_object_get_ex(st, "usage", &u) &&
		    jint(u, "starting") > max_starting)
			max_starting = (int)jint(u, "starting");
		json_object_put(st);
		ready = 0;
		for (int i = 0; i < 4; i++)
			ready += wait_state(&d, ids[i], "ready", 0);
		usleep(100000);
	}
	CHECK_MSG(ready == 4, "ready %d of 4", ready);
	CHECK_MSG(max_starting == 1, "max starting seen %d", max_starting);
	/* the sessions started one after another: each start after the previous ready */
	json_object *all = NULL;
	CHECK(api(&d, "GET", "/v1/sessions", NULL, &all) == 200);
	CHECK(json_object_array_length(all) == 4);
	json_object_put(all);
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_starting\":4}", NULL) == 200);
}

static void test_crash_restart(void)
{
	/* four sessions from test_max_starting are live: kill -9 the broker */
	json_object *before = NULL;
	CHECK(api(&d, "GET", "/v1/sessions", NULL, &before) == 200);
	size_t n = json_object_array_length(before);
	CHECK(n == 4);
	pid_t pids[8] = {0};
	for (size_t i = 0; i < n && i < 8; i++)
		pids[i] = (pid_t)jint(json_object_array_get_idx(before, i), "pid");
	/* one guest dies while the broker is down: it must be reaped on restart */
	nestord_stop(&d, SIGKILL, 5000);
	for (size_t i = 0; i < n; i++)
		CHECK_MSG(pid_alive(pids[i]), "guest %zu died with the broker", i);
	kill(pids[0], SIGKILL);
	usleep(300000);
	CHECK(nestord_start(&d));
	json_object *after = NULL;
	/* reattach is asynchronous: give it a moment */
	for (int i = 0; i < 50; i++) {
		json_object_put(after);
		after = NULL;
		api(&d, "GET", "/v1/sessions", NULL, &after);
		if (json_object_array_length(after) == n - 1)
			break;
		usleep(100000);
	}
	CHECK_MSG(json_object_array_length(after) == n - 1, "%zu sessions after restart",
		  json_object_array_length(after));
	for (size_t i = 0; i < json_object_array_length(after); i++) {
		json_object *s = json_object_array_get_idx(after, i);
		CHECK_STR(jget(s, "state"), "ready");
		CHECK(pid_alive((pid_t)jint(s, "pid")));
	}
	/* the dead one is ended with a reason and its overlay is gone */
	const char *dead = jget(json_object_array_get_idx(before, 0), "id");
	CHECK(wait_state(&d, dead, "ended", 5000));
	char dpath[128];
	json_object *ds = NULL;
	snprintf(dpath, sizeof(dpath), "/v1/sessions/%s", dead);
	CHECK(api(&d, "GET", dpath, NULL, &ds) == 200);
	CHECK_MSG(strstr(jget(ds, "end_reason"), "lost") != NULL, "end_reason: %s",
		  jget(ds, "end_reason"));
	json_object_put(ds);
	char ovl[512];
	snprintf(ovl, sizeof(ovl), "%s/state/overlays", d.dir);
	CHECK_MSG(testenv_count_entries(ovl) == (int)n - 1, "%d overlays",
		  testenv_count_entries(ovl));
	/* the reattached guests are controlled again: end them all */
	for (size_t i = 0; i < json_object_array_length(after); i++)
		end_session(jget(json_object_array_get_idx(after, i), "id"));
	for (size_t i = 0; i < json_object_array_length(after); i++)
		CHECK(wait_state(&d, jget(json_object_array_get_idx(after, i), "id"), "ended",
				 30000));
	usleep(200000);
	for (size_t i = 0; i < n; i++)
		CHECK_MSG(!pid_alive(pids[i]), "guest pid %d still alive", (int)pids[i]);
	CHECK(testenv_count_entries(ovl) == 0);
	json_object_put(before);
	json_object_put(after);
}

static void test_malformed(void)
{
	static const struct {
		const char *method, *path, *body;
		int want;
	} t[] = {
	    {"POST", "/v1/auth", "{", 400},
	    {"POST", "/v1/auth", "[]", 400},
	    {"POST", "/v1/auth", "{\"user\":\"a\"}", 400},
	    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":1}", 400},
	    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\",\"x\":1}", 400},
	    {"POST", "/v1/auth", "{\"user\":\"../etc\",\"password\":\"p\"}", 400},
	    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\"} trailing", 400},
	    {"PUT", "/v1/caps", "{\"max_sessions\":-1}", 400},
	    {"PUT", "/v1/caps", "{\"max_sessions\":\"2\"}", 400},
	    {"PUT", "/v1/caps", "{\"max_sessions\":1e3}", 400},
	    {"POST", "/v1/images", "{\"name\":\"x\",\"base\":\"/nonexistent\",\"memory_mb\":64}",
	     400},
	    {"POST", "/v1/images", "{\"name\":\"x y\",\"base\":\"/x\",\"memory_mb\":64}", 400},
	    /* the rdp policy: values checked before anything else */
	    {"POST", "/v1/images",
	     "{\"name\":\"x\",\"base\":\"/x\",\"memory_mb\":64,\"backend\":\"rdp\","
	     "\"rdp_security\":\"ssl\"}",
	     400},
	    {"POST", "/v1/images",
	     "{\"name\":\"x\",\"base\":\"/x\",\"memory_mb\":64,\"guest_login\":\"root\"}", 400},
	    {"POST", "/v1/images",
	     "{\"name\":\"x\",\"base\":\"/x\",\"memory_mb\":64,\"guest_user\":\"a\\u0007b\"}", 400},
	    {"POST", "/v1/images",
	     "{\"name\":\"x\",\"base\":\"/x\",\"memory_mb\":64,\"clipboard\":2}", 400},
	    {"PUT", "/v1/images/nosuch", "{\"drive\":1}", 404},
	    {"PUT", "/v1/images/demo", "{\"rdp_security\":\"none\"}", 400},
	    {"PUT", "/v1/images/demo", "{\"clipboard_formats\":\"files\"}", 400},
	    {"GET", "/v1/sessions/0123456789abcdef/guest", NULL, 404},
	    {"POST", "/v1/apps", "{\"alias\":\"a\",\"image\":\"nope\",\"title\":\"t\"}", 404},
	    {"DELETE", "/v1/images/demo", NULL, 409},
	    {"GET", "/v1/sessions/deadbeef", NULL, 404},
	    {"GET", "/v1/sessions?ended=x", NULL, 400},
	    {"GET", "/v1/nothing", NULL, 404},
	    {"GET", "/v2/status", NULL, 404},
	    {"DELETE", "/v1/status", NULL, 405},
	    {"GET", "/v1/sessions/..%2f..", NULL, 400},
	    /* the gateway lease and the accelerator */
	    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":\"x\"}", 400},
	    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[\"../x\"]}", 400},
	    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[1]}", 400},
	    {"POST", "/v1/gateways/gw1/lease", "{}", 400},
	    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[],\"x\":1}", 400},
	    {"GET", "/v1/gateways/gw1/lease", NULL, 405},
	    {"GET", "/v1/accel/probe", NULL, 405},
	    {"GET", "/v1/accel/other", NULL, 404},
	    {"POST", "/v1/accel/probe", NULL, 400}, /* accel = tcg: nothing to probe */
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		json_object *o = NULL;
		int st = api(&d, t[i].method, t[i].path, t[i].body, &o);
		CHECK_MSG(st == t[i].want, "%s %s: %d want %d", t[i].method, t[i].path, st,
			  t[i].want);
		CHECK_MSG(*jget(o, "error"), "%s %s: an error message", t[i].method, t[i].path);
		json_object_put(o);
	}
	/* oversized body: refused from its Content-Length, before any of it is read */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", d.sock);
	char resp[512] = "";
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		static const char req[] = "POST /v1/auth HTTP/1.1\r\nHost: x\r\n"
					  "Content-Length: 81920\r\n\r\n";
		ssize_t w = write(fd, req, sizeof(req) - 1);
		(void)w;
		struct timeval tv = {10, 0};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ssize_t r = read(fd, resp, sizeof(resp) - 1);
		if (r > 0)
			resp[r] = '\0';
	}
	close(fd);
	CHECK_MSG(strncmp(resp, "HTTP/1.1 413", 12) == 0, "oversized: '%.40s'", resp);
	/* still alive */
	CHECK(api(&d, "GET", "/v1/status", NULL, NULL) == 200);
}

/* The gateway lease and the accelerator endpoints: validation, expiry, renewal. */
static void test_lease(void)
{
	CHECK(api(&d, "POST", "/v1/gateways/gw1/lease", "{\"sessions\":[]}", NULL) == 200);
	CHECK(api(&d, "POST", "/v1/gateways/gw1/lease", "{\"sessions\":[\"nosuchsession\"]}",
		  NULL) == 200);
	json_object *o = NULL;
	CHECK(api(&d, "GET", "/v1/accel", NULL, &o) == 200);
	CHECK_STR(jget(o, "accel"), "tcg");
	CHECK_STR(jget(o, "source"), "config");
	json_object_put(o);

	CHECK(connect_("erin", "ledger", &o) == 200);
	char id[64], path[128];
	snprintf(id, sizeof(id), "%s", jget(o, "id"));
	json_object_put(o);
	CHECK(wait_state(&d, id, "ready", 60000));
	snprintf(path, sizeof(path), "/v1/sessions/%s/attach", id);
	CHECK(api(&d, "POST", path, "{\"gateway\":\"bad name!\"}", NULL) == 400);
	CHECK(api(&d, "POST", path, "{\"gateway\":\"gw1\"}", NULL) == 200);
	/* renewed: stays connected past the lease */
	char body[128];
	snprintf(body, sizeof(body), "{\"sessions\":[\"%s\"]}", id);
	for (int i = 0; i < 5; i++) {
		CHECK(api(&d, "POST", "/v1/gateways/gw1/lease", body, &o) == 200);
		CHECK(jint(o, "held") == 1);
		json_object_put(o);
		usleep(800000);
	}
	CHECK(wait_state(&d, id, "connected", 100));
	/* another gateway cannot renew it */
	CHECK(api(&d, "POST", "/v1/gateways/gw2/lease", body, &o) == 200);
	CHECK(jint(o, "held") == 0);
	json_object_put(o);
	/* not renewed: disconnected within the lease and a tick */
	CHECK(wait_state(&d, id, "disconnected", 6000));
	/* its gateway was only late: renewing takes it back */
	CHECK(api(&d, "POST", "/v1/gateways/gw1/lease", body, &o) == 200);
	CHECK(jint(o, "held") == 1);
	json_object_put(o);
	CHECK(wait_state(&d, id, "connected", 100));
	/* a real detach is final for the lease */
	snprintf(path, sizeof(path), "/v1/sessions/%s/detach", id);
	CHECK(api(&d, "POST", path, NULL, NULL) == 200);
	CHECK(api(&d, "POST", "/v1/gateways/gw1/lease", body, &o) == 200);
	CHECK(jint(o, "held") == 0);
	json_object_put(o);
	CHECK(wait_state(&d, id, "disconnected", 100));
	end_session(id);
}

/* Session ID's "ending" (a new reference to the session in *S), or NULL without one. */
static json_object *ending_of(const char *id, json_object **s)
{
	char path[128];
	json_object *e = NULL;
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	*s = NULL;
	CHECK(api(&d, "GET", path, NULL, s) == 200);
	return json_object_object_get_ex(*s, "ending", &e) ? e : NULL;
}

/* Gateway gw1 renews ID's lease: its answer's "ending" for ID (in *ANSWER), or NULL. */
static json_object *lease_ending(const char *id, json_object **answer)
{
	char body[128];
	json_object *all = NULL, *e = NULL;
	snprintf(body, sizeof(body), "{\"sessions\":[\"%s\"]}", id);
	*answer = NULL;
	CHECK(api(&d, "POST", "/v1/gateways/gw1/lease", body, answer) == 200);
	CHECK(jint(*answer, "held") == 1);
	CHECK(json_object_object_get_ex(*answer, "ending", &all));
	return json_object_object_get_ex(all, id, &e) ? e : NULL;
}

/*
 * Fair warnings ([sessions] warn_before = 4; image "quick": idle 6 s): an
 * idle connected session is warned after 2 s without input, in its JSON and
 * in its gateway's lease answer, and input clears it; an administrator's end
 * in 60 s is announced with its message and outlives a restart of nestord;
 * one in 3 s replaces it, and the session ends then.
 */
static void test_warnings(void)
{
	char src[512], dst[512], body[1024];
	snprintf(src, sizeof(src), "%s/base.qcow2", testenv_guest_dir());
	snprintf(dst, sizeof(dst), "%s/quick.qcow2", d.dir);
	size_t len = 0;
	char *data = testenv_slurp(src, &len);
	FILE *f = data ? fopen(dst, "wb") : NULL;
	CHECK(f && fwrite(data, 1, len, f) == len && fclose(f) == 0);
	free(data);
	snprintf(body, sizeof(body),
		 "{\"name\":\"quick\",\"base\":\"%s\",\"kernel\":\"%s/vmlinuz\","
		 "\"initrd\":\"%s/initrd.gz\",\"append\":\"console=ttyS0 quiet panic=-1\","
		 "\"memory_mb\":256,\"ready\":\"serial:NESTOR-READY\",\"idle\":6}",
		 dst, testenv_guest_dir(), testenv_guest_dir());
	CHECK(api(&d, "POST", "/v1/images", body, NULL) == 201);
	CHECK(api(&d, "POST", "/v1/apps",
		  "{\"alias\":\"quick\",\"image\":\"quick\",\"title\":\"Q\"}", NULL) == 201);
	json_object *s = NULL, *a = NULL, *e;
	CHECK(connect_("dave", "quick", &s) == 200);
	char id[64], path[256];
	snprintf(id, sizeof(id), "%s", jget(s, "id"));
	json_object_put(s);
	CHECK(wait_state(&d, id, "ready", 60000));
	snprintf(path, sizeof(path), "/v1/sessions/%s/attach", id);
	CHECK(api(&d, "POST", path, "{\"gateway\":\"gw1\"}", NULL) == 200);
	int64_t t0 = util_now_ms();
	CHECK(!ending_of(id, &s));
	json_object_put(s);

	/* idle: announced after idle - warn_before = 2 s, with the idle timeout's end */
	bool seen = false;
	while (!seen && util_now_ms() - t0 < 5000) {
		e = lease_ending(id, &a);
		if (e) {
			seen = true;
			CHECK_STR(jget(e, "why"), "idle");
			CHECK(strstr(jget(e, "message"), "idle") != NULL);
			CHECK_MSG(jint(e, "in_s") >= 1 && jint(e, "in_s") <= 4, "in_s %lld",
				  jint(e, "in_s"));
		}
		json_object_put(a);
		usleep(200000);
	}
	double after = (util_now_ms() - t0) / 1000.0;
	CHECK_MSG(seen && after >= 1.9, "idle warning %s after %.1f s", seen ? "seen" : "not seen",
		  after);
	e = ending_of(id, &s);
	CHECK(e && !strcmp(jget(e, "why"), "idle"));
	json_object_put(s);
	/* input clears it */
	snprintf(path, sizeof(path), "/v1/sessions/%s/activity", id);
	CHECK(api(&d, "POST", path, NULL, NULL) == 200);
	CHECK(!ending_of(id, &s));
	json_object_put(s);
	CHECK(!lease_ending(id, &a));
	json_object_put(a);

	/* an administrator's end in 60 s: announced with its message, kept across a restart */
	snprintf(path, sizeof(path), "/v1/sessions/%s?in=60&message=Maintenance%%20at%%20noon", id);
	CHECK(api(&d, "DELETE", path, NULL, &s) == 200);
	CHECK_STR(jget(s, "state"), "connected");
	CHECK(json_object_object_get_ex(s, "ending", &e));
	CHECK_STR(jget(e, "why"), "admin");
	CHECK_STR(jget(e, "message"), "Maintenance at noon");
	CHECK(jint(e, "in_s") == 60);
	json_object_put(s);
	e = lease_ending(id, &a);
	CHECK(e && !strcmp(jget(e, "why"), "admin") && jint(e, "in_s") <= 60);
	json_object_put(a);
	nestord_stop(&d, SIGKILL, 5000);
	CHECK(nestord_start(&d));
	e = NULL;
	for (int i = 0; i < 50 && !e; i++) {
		e = lease_ending(id, &a); /* the lease keeps it connected (and its input fresh) */
		if (!e) {
			json_object_put(a);
			usleep(100000);
		}
	}
	CHECK_MSG(e && !strcmp(jget(e, "why"), "admin") &&
		      !strcmp(jget(e, "message"), "Maintenance at noon") && jint(e, "in_s") > 40 &&
		      jint(e, "in_s") <= 60,
		  "after a restart: %s", e ? json_object_to_json_string(e) : "no ending");
	json_object_put(a);
	snprintf(path, sizeof(path), "/v1/sessions/%s/activity", id);
	CHECK(api(&d, "POST", path, NULL, NULL) == 200);

	/* malformed: refused, the announced end unchanged */
	snprintf(path, sizeof(path), "/v1/sessions/%s?in=3&message=bad%%0Aline", id);
	CHECK(api(&d, "DELETE", path, NULL, NULL) == 400);
	/* in 3 s, replacing it: the session ends then */
	snprintf(path, sizeof(path), "/v1/sessions/%s?in=3&message=Now%%20really", id);
	int64_t t1 = util_now_ms();
	CHECK(api(&d, "DELETE", path, NULL, &s) == 200);
	CHECK(json_object_object_get_ex(s, "ending", &e));
	CHECK_STR(jget(e, "why"), "admin");
	CHECK_STR(jget(e, "message"), "Now really");
	CHECK(jint(e, "in_s") == 3);
	json_object_put(s);
	while (util_now_ms() - t1 < 2000) { /* still on, warned, its gateway renewing */
		e = lease_ending(id, &a);
		CHECK(e && !strcmp(jget(e, "message"), "Now really"));
		json_object_put(a);
		usleep(400000);
	}
	CHECK(wait_state(&d, id, "ended", 10000));
	double took = (util_now_ms() - t1) / 1000.0;
	CHECK_MSG(took >= 2.9 && took < 7, "ended %.1f s after the announcement", took);
	fprintf(stderr, "announced end: ended after %.1f s\n", took);
	CHECK(!ending_of(id, &s));
	CHECK_STR(jget(s, "end_reason"), "ended by request: Now really");
	json_object_put(s);
	a = NULL;
	CHECK(api(&d, "GET", "/v1/audit?limit=200", NULL, &a) == 200);
	CHECK(strstr(json_object_to_json_string(a), "session-end-announced") != NULL);
	json_object_put(a);
}

/* Raw bytes from the corpus straight onto the socket; nestord must survive all. */
/* Who may call what (SO_PEERCRED roles), by the route table itself. */
struct route_case {
	const char *name, *method, *path;
	enum api_who who;
};

#define ROUTE_CASE(route, method, path, body, handler, who) {#route, #method, path, API_WHO_##who},
static const struct route_case route_cases[] = {API_ROUTES(ROUTE_CASE)};

/* PATTERN with its parameters filled in (and GRANT, if any, as the query). */
static void fill_path(const char *pattern, const char *session, const char *grant, char *out,
		      size_t len)
{
	static const char *const params[][2] = {{":session", NULL},    {":gateway", "gw-roles"},
						{":user", "alice"},    {":image", "nosuchimage"},
						{":app", "nosuchapp"}, {":host", "nosuchhost"}};
	size_t n = 0;
	for (const char *p = pattern; *p && n + 1 < len;) {
		bool done = false;
		for (size_t i = 0; i < ARRAY_LEN(params) && !done; i++) {
			size_t k = strlen(params[i][0]);
			if (!strncmp(p, params[i][0], k)) {
				n += (size_t)snprintf(out + n, len - n, "%s",
						      params[i][1] ? params[i][1] : session);
				p += k;
				done = true;
			}
		}
		if (!done)
			out[n++] = *p++;
	}
	out[n] = '\0';
	if (grant)
		snprintf(out + n, len - n, "?grant=%s", grant);
}

/* The status of a request made as UID (primary group GID, supplementary SUPP, 0: none);
 * a negative errno when it cannot even reach the socket. */
static int as_user(uid_t uid, gid_t gid, gid_t supp, const char *method, const char *path)
{
	int fds[2];
	if (pipe(fds) < 0)
		return -EIO;
	pid_t pid = fork();
	if (pid == 0) {
		gid_t groups[1] = {supp};
		int st = -EPERM;
		if (setgroups(supp ? 1 : 0, groups) == 0 && setgid(gid) == 0 && setuid(uid) == 0)
			st = httpc_request(d.sock, method, path, "{}", 10000, NULL);
		if (write(fds[1], &st, sizeof(st)) != sizeof(st))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	int st = -EIO;
	if (pid < 0 || read(fds[0], &st, sizeof(st)) != sizeof(st))
		st = -EIO;
	close(fds[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return st;
}

/* Whether UID (no groups) can open PATH for reading. */
static bool readable_by(uid_t uid, const char *path)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
			_exit(2);
		int fd = open(path, O_RDONLY);
		_exit(fd >= 0 ? 0 : 1);
	}
	int st = 0;
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void test_roles(void)
{
	struct group *g = getgrnam("nogroup");
	gid_t gw_gid = g ? g->gr_gid : 0;
	g = getgrnam("staff");
	gid_t admin_gid = g ? g->gr_gid : 0;
	CHECK(gw_gid && admin_gid);
	if (!gw_gid || !admin_gid)
		return;
	/* other users must reach the socket's directory to be refused by nestord itself */
	chmod(d.dir, 0711);
	json_object *s = NULL;
	CHECK(connect_("erin", "ledger", &s) == 200);
	char id[64], grant[80], bad[80], path[512];
	snprintf(id, sizeof(id), "%s", jget(s, "id"));
	snprintf(grant, sizeof(grant), "%s", jget(s, "grant"));
	json_object_put(s);
	CHECK(strlen(grant) == 32);
	snprintf(bad, sizeof(bad), "%s", grant);
	bad[0] = bad[0] == 'a' ? 'b' : 'a';
	/* the grant is never listed */
	CHECK(api(&d, "GET", "/v1/sessions", NULL, &s) == 200);
	CHECK(!strstr(json_object_to_json_string(s), grant));
	json_object_put(s);

	for (size_t i = 0; i < ARRAY_LEN(route_cases); i++) {
		const struct route_case *c = &route_cases[i];
		/* a USER route acts with a sign-in's token, not a grant: 401 without one */
		bool user = c->who == API_WHO_USER;
		bool session = strstr(c->path, ":session") != NULL && !user;
		/* the gateway's group as the primary group, without a grant */
		fill_path(c->path, id, NULL, path, sizeof(path));
		int st = as_user(60101, gw_gid, 0, c->method, path);
		CHECK_MSG(c->who == API_WHO_ANY || user ? st > 0 && st != 403 : st == 403,
			  "gateway %s %s: %d", c->method, path, st);
		CHECK_MSG(!user || st == 401, "gateway without a token %s %s: %d", c->method, path,
			  st);
		/* as a supplementary group, with the session's grant, and with a wrong one */
		fill_path(c->path, id, session ? grant : NULL, path, sizeof(path));
		st = as_user(60101, 60101, gw_gid, c->method, path);
		CHECK_MSG(c->who == API_WHO_ADMIN ? st == 403 : st > 0 && st != 403,
			  "gateway with grant %s %s: %d", c->method, path, st);
		if (session) {
			fill_path(c->path, id, bad, path, sizeof(path));
			st = as_user(60101, 60101, gw_gid, c->method, path);
			CHECK_MSG(st == 403, "gateway with a wrong grant %s %s: %d", c->method,
				  path, st);
		}
		/* a user in neither group does not get in at all */
		st = as_user(60102, 60102, 0, c->method, path);
		CHECK_MSG(st < 0, "other user %s %s: %d", c->method, path, st);
	}
	/* an administrator (admin_group, and api_group to reach the socket) may do
	 * everything; ending the session last */
	for (size_t i = 0; i < ARRAY_LEN(route_cases); i++) {
		const struct route_case *c = &route_cases[i];
		if (!strcmp(c->name, "SESSION_END"))
			continue;
		fill_path(c->path, id, NULL, path, sizeof(path));
		int st = as_user(60103, gw_gid, admin_gid, c->method, path);
		CHECK_MSG(st > 0 && st != 403, "admin %s %s: %d", c->method, path, st);
	}
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	CHECK(as_user(60103, gw_gid, admin_gid, "DELETE", path) == 200);
	/* the gateway still reads why its session ended, with its grant */
	snprintf(path, sizeof(path), "/v1/sessions/%s?grant=%s", id, grant);
	CHECK(as_user(60101, gw_gid, 0, "GET", path) == 200);

	/* the state is the owner's alone, even where the directory lets others through
	 * (state_dir is 0711 with qemu_user) */
	char state[400];
	snprintf(state, sizeof(state), "%s/state", d.dir);
	chmod(state, 0711);
	const char *files[] = {"nestor.db", "nestor.db-wal", "nestor.db-shm"};
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", state, files[i]);
		CHECK_MSG(stat(path, &st) == 0 && (st.st_mode & 077) == 0, "%s mode %o", path,
			  st.st_mode & 0777);
		CHECK_MSG(!readable_by(60102, path), "%s is readable by another user", path);
	}
	chmod(state, 0700);
	chmod(d.dir, 0700);
}

static void test_corpus(void)
{
	const char *src = getenv("NESTOR_SRC");
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/api", src ? src : ".");
	DIR *dd = opendir(dir);
	CHECK(dd != NULL);
	int files = 0;
	struct dirent *e;
	while (dd && (e = readdir(dd))) {
		if (e->d_name[0] == '.')
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		size_t len = 0;
		char *data = testenv_slurp(path, &len);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", d.sock);
		if (data && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			ssize_t w = write(fd, data, len);
			(void)w;
			shutdown(fd, SHUT_WR);
			char buf[4096];
			struct timeval tv = {5, 0};
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			while (read(fd, buf, sizeof(buf)) > 0)
				;
		}
		close(fd);
		free(data);
		files++;
		CHECK_MSG(api(&d, "GET", "/v1/status", NULL, NULL) == 200, "after %s", e->d_name);
	}
	if (dd)
		closedir(dd);
	CHECK(files > 5);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	testenv_guest_dir();
	nestord_setup(&d, "broker", USERS,
		      "[auth]\nmax_failures = 3\nwindow = 300\nlockout = 600\n"
		      "[sessions]\nstop_grace = 1\nwarn_before = 4\n[caps]\nmax_starting = 4\n"
		      "[images]\nauto_template = false\n" /* cold starts only: caps are exact */
		      "[nestord]\napi_group = nogroup\nadmin_group = staff\n");
	if (!nestord_start(&d)) {
		CHECK(!"nestord started");
		return check_done("test_broker");
	}
	nestord_add_demo(&d, "ledger");
	test_auth();
	test_connect_reconnect();
	test_cap_queue();
	test_max_starting();
	test_crash_restart();
	test_malformed();
	test_lease();
	test_warnings();
	test_roles();
	test_corpus();

	/* graceful shutdown with a live session: the guest is ended, nothing left */
	json_object *s = NULL;
	CHECK(connect_("alice", "ledger", &s) == 200);
	pid_t gpid = 0;
	char id[64];
	snprintf(id, sizeof(id), "%s", jget(s, "id"));
	json_object_put(s);
	CHECK(wait_state(&d, id, "ready", 60000));
	api(&d, "GET", "/v1/sessions", NULL, &s);
	gpid = (pid_t)jint(json_object_array_get_idx(s, 0), "pid");
	json_object_put(s);
	int st = nestord_stop(&d, SIGTERM, 30000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestord exit status %d", st);
	usleep(200000);
	CHECK(!pid_alive(gpid));
	char path[512];
	snprintf(path, sizeof(path), "%s/state/overlays", d.dir);
	CHECK(testenv_count_entries(path) == 0);
	snprintf(path, sizeof(path), "%s/run/vm", d.dir);
	CHECK(testenv_count_entries(path) == 0);
	snprintf(path, sizeof(path), "%s/run/api.sock", d.dir);
	CHECK(access(path, F_OK) != 0);
	int r = check_done("test_broker");
	if (r == 0)
		testenv_rmtree(d.dir);
	else
		fprintf(stderr, "nestord log kept in %s\n", d.log);
	return r;
}
