/*
 * Fault injection, with real processes: nestord (real PAM through
 * pam_wrapper, real sqlite), nestor-gateway, real QEMU test guests and
 * nestor-storm as the users. One case per run (argv[1]):
 *
 *   broker-kill   kill -9 nestord during a 6-session storm
 *   gateway-kill  kill -9 the gateway during a storm; users come back
 *   qemu-kill     a QEMU killed under a live session
 *   disk-full     the state file system full (a small tmpfs)
 *   db-locked     another process holds the database locked
 *   startup       requests while nestord is still starting (probe, reattach)
 *   kvm-hang      a KVM that passes the probe but hangs real guests
 *   signals       SIGQUIT keeps guests (warm ones too) for the next start;
 *                 SIGINT + SIGTERM (a terminal's Ctrl-C and a script's trap)
 *                 end everything
 *
 * Deadlines here are liveness bounds, generous on a loaded 2-core host; the
 * recovery times they print go to docs/reliability.md.
 */
#include "check.h"
#include "daemon.h"
#include "nestor-config.h"
#include "testenv.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct nestord d;
static unsigned port;
static char gwlog[600];

static void setup(const char *name, const char *extra)
{
	char users[1024] = "";
	for (int i = 1; i <= 9; i++) {
		char line[64];
		snprintf(line, sizeof(line), "user%d:pass%d:nestor\n", i, i);
		strcat(users, line);
	}
	nestord_setup(&d, name, users, extra);
	port = 20000 + (unsigned)(getpid() * 7 + 13) % 20000;
}

static double secs_since(int64_t t0)
{
	return (double)(util_now_ms() - t0) / 1000.0;
}

/* nestor-storm in the background: users 1..N (canary N+1); its output to LOG. */
static pid_t storm_bg(int n, int hold, const char *tag)
{
	char cmd[2400];
	snprintf(cmd, sizeof(cmd),
		 "exec %s/storm/nestor-storm --gateway 127.0.0.1:%u --user-pattern "
		 "'user%%d:pass%%d' --sessions %d --arrival burst --app ledger --hold %d "
		 "--baseline 1 --timeout 150 --json %s/storm-%s.json > %s/storm-%s.log 2>&1",
		 getenv("NESTOR_BUILD"), port, n, hold, d.dir, tag, d.dir, tag);
	pid_t pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Wait for child PID up to MS; its wait status, or -1 (then it is killed). */
static int wait_child(pid_t pid, int ms)
{
	int st;
	for (int64_t end = util_now_ms() + ms; util_now_ms() < end; usleep(100000))
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static json_object *storm_json(const char *tag)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/storm-%s.json", d.dir, tag);
	return json_object_from_file(path);
}

/* The live sessions (a new reference). */
static json_object *sessions(void)
{
	json_object *o = NULL;
	if (api(&d, "GET", "/v1/sessions", NULL, &o) != 200 || !o) {
		json_object_put(o);
		return json_object_new_array();
	}
	return o;
}

static json_object *of_user(json_object *arr, const char *user)
{
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *s = json_object_array_get_idx(arr, i);
		if (!strcmp(jget(s, "user"), user))
			return s;
	}
	return NULL;
}

/* How many of users 1..N have a live session in STATE ("" any). */
static int count_state(int n, const char *state)
{
	json_object *arr = sessions();
	int k = 0;
	for (int i = 1; i <= n; i++) {
		char u[16];
		snprintf(u, sizeof(u), "user%d", i);
		json_object *s = of_user(arr, u);
		k += s && (!*state || !strcmp(jget(s, "state"), state));
	}
	json_object_put(arr);
	return k;
}

static bool wait_count(int n, const char *state, int want, int ms)
{
	for (int64_t end = util_now_ms() + ms; util_now_ms() < end; usleep(50000))
		if (count_state(n, state) >= want)
			return true;
	return count_state(n, state) >= want;
}

/* Connect USER to the demo app through the API (PAM and all); its session id. */
static bool connect_user(int i, char *id, size_t len)
{
	char body[256];
	snprintf(
	    body, sizeof(body),
	    "{\"user\":\"user%d\",\"password\":\"pass%d\",\"app\":\"ledger\",\"client\":\"t\"}", i,
	    i);
	json_object *o = NULL;
	int st = api(&d, "POST", "/v1/sessions", body, &o);
	snprintf(id, len, "%s", jget(o, "id"));
	json_object_put(o);
	return st == 200 && id[0];
}

static bool file_has(const char *path, const char *text)
{
	char *s = testenv_slurp(path, NULL);
	bool ok = s && strstr(s, text);
	free(s);
	return ok;
}

/* Lines of PATH holding both A and B. */
static int line_count(const char *path, const char *a, const char *b)
{
	char *s = testenv_slurp(path, NULL);
	int n = 0;
	for (char *line = s, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		n += strstr(line, a) && strstr(line, b);
	}
	free(s);
	return n;
}

static int file_count(const char *path, const char *text)
{
	char *s = testenv_slurp(path, NULL);
	int n = 0;
	for (const char *p = s; p && (p = strstr(p, text)); p += strlen(text))
		n++;
	free(s);
	return n;
}

/* QEMU processes started for this test's state (none may outlive a shutdown). */
static int qemu_count(void)
{
	pid_t pids[64];
	return (int)util_procs_with_arg("qemu-system", d.dir, pids, 64);
}

static int entries(const char *sub)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", d.dir, sub);
	return testenv_count_entries(path);
}

/* Shut nestord down (every session ends) and check nothing is left behind. */
static void stop_and_check_clean(void)
{
	int st = nestord_stop(&d, SIGTERM, 30000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestord exit status %d", st);
	CHECK_MSG(qemu_count() == 0, "%d QEMU left running", qemu_count());
	CHECK_MSG(entries("state/overlays") == 0, "%d overlays left", entries("state/overlays"));
	CHECK_MSG(entries("run/vm") == 0, "%d guest run dirs left", entries("run/vm"));
}

static void template_ready(void)
{
	CHECK(api(&d, "POST", "/v1/images/demo/template", NULL, NULL) == 200);
}

/* nestord with the demo app and its template, and a gateway: its pid. */
static pid_t start_all(const char *name, const char *extra)
{
	setup(name, extra);
	CHECK(nestord_start(&d));
	nestord_add_demo(&d, "ledger");
	template_ready();
	pid_t gw = gateway_start(&d, port, NULL, gwlog, sizeof(gwlog));
	CHECK(gw > 0);
	return gw;
}

/* kill -9 nestord and reap it. */
static void crash_nestord(void)
{
	kill(d.pid, SIGKILL);
	waitpid(d.pid, NULL, 0);
	d.pid = 0;
}

/* --- cases --- */

static void broker_kill(void)
{
	pid_t gw = start_all("f-broker", "[sessions]\nstop_grace = 1\n[caps]\nmax_starting = 1\n");
	pid_t storm = storm_bg(6, 4, "a");
	/* every user has a session, and some are still starting: kill now */
	CHECK(wait_count(6, "", 6, 60000));
	int ready = count_state(6, "ready") + count_state(6, "connected");
	int64_t t0 = util_now_ms();
	crash_nestord();
	fprintf(stderr, "killed nestord with %d of 6 sessions on their guests\n", ready);
	CHECK(nestord_start(&d));
	fprintf(stderr, "nestord answers again after %.2f s\n", secs_since(t0));
	int st = wait_child(storm, 180000);
	fprintf(stderr, "every user on their guest %.2f s after the kill\n", secs_since(t0));
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestor-storm exit %d", st);
	json_object *o = storm_json("a");
	CHECK_MSG(jint(o, "ok") == 6, "storm: %lld of 6 reached their guest", jint(o, "ok"));
	json_object_put(o);
	/* one session per user: none lost, none started twice */
	json_object *arr = sessions();
	for (int i = 1; i <= 6; i++) {
		char u[16];
		snprintf(u, sizeof(u), "user%d", i);
		int n = 0;
		for (size_t k = 0; k < json_object_array_length(arr); k++)
			n += !strcmp(jget(json_object_array_get_idx(arr, k), "user"), u);
		CHECK_MSG(n == 1, "%s has %d live sessions", u, n);
	}
	json_object_put(arr);
	child_stop(&gw);
	stop_and_check_clean();
}

static void gateway_kill(void)
{
	pid_t gw = start_all("f-gateway", "[sessions]\nstop_grace = 1\n[caps]\nmax_starting = 2\n");
	pid_t storm = storm_bg(6, 60, "a");
	CHECK(wait_count(6, "connected", 6, 90000));
	char ids[7][40];
	long long pids[7];
	json_object *arr = sessions();
	for (int i = 1; i <= 6; i++) {
		char u[16];
		snprintf(u, sizeof(u), "user%d", i);
		json_object *s = of_user(arr, u);
		snprintf(ids[i], sizeof(ids[i]), "%s", jget(s, "id"));
		pids[i] = jint(s, "pid");
	}
	json_object_put(arr);
	int64_t t0 = util_now_ms();
	kill(gw, SIGKILL);
	waitpid(gw, NULL, 0);
	gw = 0;
	/* the lease runs out: disconnected, and the keep-alive clock runs */
	CHECK(wait_count(6, "disconnected", 6, 10000));
	double took = secs_since(t0);
	fprintf(stderr, "all 6 sessions disconnected %.2f s after the gateway died\n", took);
	CHECK_MSG(took < 8.0, "disconnected after %.2f s", took);
	wait_child(storm, 30000); /* its connections are gone: it reports failures */

	gw = gateway_start(&d, port, NULL, gwlog, sizeof(gwlog));
	CHECK(gw > 0);
	t0 = util_now_ms();
	storm = storm_bg(6, 1, "b");
	int st = wait_child(storm, 120000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "second storm exit %d", st);
	fprintf(stderr, "all 6 users back on their guests %.2f s after reconnecting\n",
		secs_since(t0));
	json_object *o = storm_json("b");
	CHECK(jint(o, "ok") == 6);
	json_object_put(o);
	arr = sessions();
	for (int i = 1; i <= 6; i++) {
		char u[16];
		snprintf(u, sizeof(u), "user%d", i);
		json_object *s = of_user(arr, u);
		CHECK_MSG(s && !strcmp(jget(s, "id"), ids[i]) && jint(s, "pid") == pids[i],
			  "%s is back on the same session and guest", u);
	}
	json_object_put(arr);
	child_stop(&gw);
	stop_and_check_clean();
}

static void qemu_kill(void)
{
	setup("f-qemu", "[sessions]\nstop_grace = 1\n");
	CHECK(nestord_start(&d));
	nestord_add_demo(&d, "ledger");
	pid_t gw = gateway_start(&d, port, NULL, gwlog, sizeof(gwlog));
	CHECK(gw > 0);
	pid_t storm = storm_bg(1, 60, "a");
	CHECK(wait_count(1, "connected", 1, 90000));
	json_object *arr = sessions();
	json_object *s = of_user(arr, "user1");
	char id[40], ovl[600];
	snprintf(id, sizeof(id), "%s", jget(s, "id"));
	pid_t qpid = (pid_t)jint(s, "pid");
	json_object_put(arr);
	snprintf(ovl, sizeof(ovl), "%s/state/overlays/%s.qcow2", d.dir, id);
	CHECK_MSG(access(ovl, F_OK) == 0, "the session's overlay exists");
	int64_t t0 = util_now_ms();
	CHECK(qpid > 0 && kill(qpid, SIGKILL) == 0);
	/* the long-poll answers as soon as the session leaves "connected" */
	char path[160];
	snprintf(path, sizeof(path), "/v1/sessions/%s?wait=connected&timeout=10", id);
	json_object *o = NULL;
	api(&d, "GET", path, NULL, &o);
	bool ended = !strcmp(jget(o, "state"), "ended");
	CHECK_MSG(ended, "state after its QEMU died: %s", jget(o, "state"));
	CHECK_MSG(!strncmp(jget(o, "end_reason"), "lost", 4), "end reason: %s",
		  jget(o, "end_reason"));
	fprintf(stderr, "session ended %.2f s after its QEMU died: %s\n", secs_since(t0),
		jget(o, "end_reason"));
	json_object_put(o);
	CHECK_MSG(access(ovl, F_OK) != 0, "the overlay is removed");
	/* the user was told, on the gateway's own screen */
	bool told = false;
	for (int i = 0; i < 50 && !told; i++, usleep(100000))
		told = file_has(gwlog, "Its computer stopped unexpectedly");
	CHECK_MSG(told, "the gateway showed the user why (see %s)", gwlog);
	kill(storm, SIGTERM);
	wait_child(storm, 10000);
	/* the host serves the next user (user2 was the storm's canary) */
	char id3[40];
	CHECK(connect_user(3, id3, sizeof(id3)));
	CHECK(wait_state(&d, id3, "ready", 60000));
	child_stop(&gw);
	stop_and_check_clean();
}

static void fill_disk(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	static char buf[1 << 16];
	memset(buf, 'x', sizeof(buf));
	while (fd >= 0 && write(fd, buf, sizeof(buf)) > 0)
		;
	/* and the last few bytes */
	while (fd >= 0 && write(fd, buf, 512) > 0)
		;
	if (fd >= 0)
		close(fd);
}

static int db_query_int(const char *sql)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/state/nestor.db", d.dir);
	sqlite3 *h;
	int v = -1;
	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(h, 2000);
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
			if (sqlite3_step(st) == SQLITE_ROW)
				v = sqlite3_column_type(st, 0) == SQLITE_TEXT
					? !strcmp((const char *)sqlite3_column_text(st, 0), "ok")
					: sqlite3_column_int(st, 0);
			sqlite3_finalize(st);
		}
	}
	sqlite3_close(h);
	return v;
}

static void disk_full(void)
{
	setup("f-disk", "min_free_mb = 4\n[images]\nauto_template = false\n[sessions]\n"
			"stop_grace = 1\n");
	char state[600];
	snprintf(state, sizeof(state), "%s/state", d.dir);
	mkdir(state, 0700);
	/* a mount namespace of our own: the tmpfs goes with this process, however it ends */
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("nestor-test", state, "tmpfs", 0, "size=48m,mode=0700") < 0) {
		fprintf(stderr, "cannot mount a tmpfs (%s): this case needs root\n",
			strerror(errno));
		exit(77);
	}
	CHECK(nestord_start(&d));
	nestord_add_demo(&d, "ledger");
	char id1[40], id3[40];
	CHECK(connect_user(1, id1, sizeof(id1)));
	CHECK(connect_user(3, id3, sizeof(id3))); /* the storm's canary, before the disk fills */
	CHECK(wait_state(&d, id1, "ready", 90000));
	CHECK(wait_state(&d, id3, "ready", 90000));
	char fill[700];
	snprintf(fill, sizeof(fill), "%s/fill", state);
	fill_disk(fill);
	pid_t gw = gateway_start(&d, port, NULL, gwlog, sizeof(gwlog));
	CHECK(gw > 0);
	pid_t storm = storm_bg(2, 1, "a"); /* user1 reconnects, user2 is new */
	int st = wait_child(storm, 120000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1, "storm: user2 cannot start (exit %d)", st);
	json_object *sj = storm_json("a"), *us = NULL;
	json_object_object_get_ex(sj, "users", &us);
	for (size_t i = 0; i < json_object_array_length(us); i++) {
		json_object *u = json_object_array_get_idx(us, i), *ok;
		bool okv = json_object_object_get_ex(u, "ok", &ok) && json_object_get_boolean(ok);
		const char *name = jget(u, "user");
		CHECK_MSG(okv == !strcmp(name, "user1"), "%s %s its guest", name,
			  okv ? "reached" : "did not reach");
	}
	CHECK_MSG(json_object_array_length(us) == 2, "two storm users");
	json_object_put(sj);
	CHECK_MSG(file_has(gwlog, "Your session could not start: no disk space"),
		  "the wait screen says why (see %s)", gwlog);
	CHECK_MSG(file_has(d.log, "no disk space for the session"), "the log says why");
	/* the running session runs on */
	char *pong = guest_cmd(&d, id1, "PING full", 5000);
	CHECK_MSG(pong && strstr(pong, "PONG full"), "user1's guest answers: %s",
		  pong ? pong : "(nothing)");
	free(pong);
	CHECK_MSG(wait_state(&d, id1, "disconnected", 10000), "user1 left its session running");
	/* space again: what could not be written is written, and the file is sound */
	unlink(fill);
	bool written = false;
	for (int i = 0; i < 50 && !written; i++, usleep(100000))
		written = db_query_int("SELECT count(*) FROM sessions WHERE user='user2' AND "
				       "state='ended' AND end_reason LIKE 'no disk space%'") == 1;
	CHECK_MSG(written, "the refused session's row is written once there is space");
	CHECK_MSG(db_query_int("PRAGMA integrity_check") == 1, "sqlite integrity_check ok");
	CHECK(db_query_int("SELECT count(*) FROM audit WHERE kind='session-refused'") >= 1);
	/* a crash now loses nothing either */
	crash_nestord();
	CHECK(nestord_start(&d));
	json_object *arr = sessions();
	json_object *s1 = of_user(arr, "user1");
	CHECK_MSG(s1 && !strcmp(jget(s1, "id"), id1), "user1's session is reattached");
	json_object_put(arr);
	child_stop(&gw);
	stop_and_check_clean();
	umount2(state, MNT_DETACH);
}

static void db_locked(void)
{
	setup("f-db", "[sessions]\nstop_grace = 1\n");
	CHECK(nestord_start(&d));
	nestord_add_demo(&d, "ledger");
	char path[600];
	snprintf(path, sizeof(path), "%s/state/nestor.db", d.dir);
	sqlite3 *h;
	CHECK(sqlite3_open(path, &h) == SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	CHECK(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
	int64_t t0 = util_now_ms();
	char id1[40], id2[40];
	CHECK(connect_user(1, id1, sizeof(id1)));
	CHECK(connect_user(2, id2, sizeof(id2)));
	double took = secs_since(t0);
	fprintf(stderr, "two connects while the database is locked: %.2f s\n", took);
	CHECK_MSG(took < 5.0, "the loop is not stuck behind the lock (%.2f s)", took);
	json_object *o = NULL;
	int st = api(&d, "PUT", "/v1/caps", "{\"max_sessions\":7}", &o);
	CHECK_MSG(st == 503 && strstr(jget(o, "error"), "busy"), "caps while locked: %d %s", st,
		  jget(o, "error"));
	json_object_put(o);
	CHECK(wait_state(&d, id1, "ready", 60000));
	CHECK(wait_state(&d, id2, "ready", 60000));
	CHECK(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(h);
	t0 = util_now_ms();
	bool written = false;
	while (!written && secs_since(t0) < 5) {
		written =
		    db_query_int("SELECT count(*) FROM sessions WHERE state='ready'") == 2 &&
		    db_query_int("SELECT count(*) FROM audit WHERE kind='session-ready'") == 2;
		usleep(100000);
	}
	CHECK_MSG(written, "the held rows are written after the lock is gone");
	fprintf(stderr, "held rows written %.2f s after the lock was released\n", secs_since(t0));
	/* and they are what a restart finds */
	json_object *arr = sessions();
	long long p1 = jint(of_user(arr, "user1"), "pid");
	json_object_put(arr);
	crash_nestord();
	CHECK(nestord_start(&d));
	CHECK(wait_state(&d, id1, "ready", 10000) && wait_state(&d, id2, "ready", 10000));
	arr = sessions();
	CHECK(jint(of_user(arr, "user1"), "pid") == p1);
	json_object_put(arr);
	stop_and_check_clean();
}

static void fault_qemu(const char *probe, const char *kvm)
{
	setenv("NESTOR_FAULT_REAL_QEMU", NESTOR_QEMU, 1);
	setenv("NESTOR_FAULT_PROBE", probe, 1);
	setenv("NESTOR_FAULT_KVM", kvm, 1);
}

static const char *fault_qemu_path(void)
{
	static char p[600];
	snprintf(p, sizeof(p), "%s/tests/faults/qemu-fault.sh", getenv("NESTOR_SRC"));
	return p;
}

/* User ids in the order their sessions started (audit), as "1 2 3". */
static void start_order(char *out, size_t len)
{
	json_object *o = NULL;
	api(&d, "GET", "/v1/audit?limit=500", NULL, &o);
	out[0] = '\0';
	for (size_t i = json_object_array_length(o); i-- > 0;) {
		json_object *e = json_object_array_get_idx(o, i);
		if (strcmp(jget(e, "kind"), "session-start"))
			continue;
		size_t n = strlen(out);
		snprintf(out + n, len - n, "%s%s", n ? " " : "", jget(e, "user") + 4);
	}
	json_object_put(o);
}

static void startup(void)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		fprintf(stderr, "no /dev/kvm here: the accelerator is never probed\n");
		exit(77);
	}
	char extra[1600], kernel[600], cmd[1400];
	char *kdir = testenv_scratch("f-startup-k");
	snprintf(kernel, sizeof(kernel), "%s/probe-vmlinuz", kdir);
	snprintf(cmd, sizeof(cmd), "cp '%s/vmlinuz' '%s'", testenv_guest_dir(), kernel);
	CHECK(system(cmd) == 0);
	fault_qemu("pass", "pass");
	snprintf(extra, sizeof(extra),
		 "accel = auto\nqemu = %s\naccel_probe_kernel = %s\naccel_probe_timeout = 60\n"
		 "[sessions]\nstop_grace = 1\n[caps]\nmax_starting = 1\n",
		 fault_qemu_path(), kernel);
	setup("f-startup", extra);
	/* a first start decides the accelerator (the stand-in KVM passes) */
	CHECK(nestord_start(&d));
	nestord_add_demo(&d, "ledger");
	template_ready();
	char id[7][40];
	CHECK(connect_user(1, id[1], sizeof(id[1])));
	CHECK(connect_user(2, id[2], sizeof(id[2])));
	CHECK(wait_state(&d, id[1], "ready", 60000) && wait_state(&d, id[2], "ready", 60000));
	json_object *arr = sessions();
	long long p1 = jint(of_user(arr, "user1"), "pid"), p2 = jint(of_user(arr, "user2"), "pid");
	json_object_put(arr);

	/* crash; the probe kernel changed meanwhile, so the next start probes again */
	crash_nestord();
	CHECK(chmod(kernel, 0444) == 0);
	setenv("NESTOR_FAULT_PROBE_DELAY", "8", 1); /* a slow probe: nestord is starting */
	d.no_wait = true;
	int64_t t0 = util_now_ms();
	CHECK(nestord_start(&d));
	json_object *o = NULL;
	api(&d, "GET", "/v1/status", NULL, &o);
	CHECK_MSG(!strcmp(jget(o, "accel"), "probing"), "nestord is still probing: %s",
		  jget(o, "accel"));
	json_object_put(o);
	for (int i = 3; i <= 6; i++) {
		CHECK(connect_user(i, id[i], sizeof(id[i])));
		usleep(150000);
	}
	/* nothing starts, and no start slot is counted, before the host is ready */
	o = NULL;
	api(&d, "GET", "/v1/status", NULL, &o);
	json_object *use = NULL;
	json_object_object_get_ex(o, "usage", &use);
	bool still = !strcmp(jget(o, "accel"), "probing");
	fprintf(stderr, "while starting: accel %s, starting %lld, queued %lld\n", jget(o, "accel"),
		jint(use, "starting"), jint(use, "queued"));
	CHECK_MSG(still, "the probe (8 s) outlasts four connects");
	CHECK(jint(use, "starting") == 0 && jint(use, "queued") == 4);
	json_object_put(o);
	for (int i = 3; i <= 6; i++)
		CHECK_MSG(wait_state(&d, id[i], "ready", 90000), "user%d served", i);
	fprintf(stderr, "4 requests during the start served %.2f s after the restart\n",
		secs_since(t0));
	char order[128];
	start_order(order, sizeof(order));
	CHECK_MSG(!strcmp(order, "1 2 3 4 5 6"), "sessions started in arrival order: %s", order);
	arr = sessions();
	CHECK_MSG(jint(of_user(arr, "user1"), "pid") == p1 &&
		      jint(of_user(arr, "user2"), "pid") == p2,
		  "the running guests were reattached");
	json_object_put(arr);
	o = NULL;
	api(&d, "GET", "/v1/accel", NULL, &o);
	CHECK_MSG(!strcmp(jget(o, "accel"), "kvm") && !strcmp(jget(o, "source"), "probe"),
		  "decision: %s (%s)", jget(o, "accel"), jget(o, "source"));
	json_object_put(o);
	stop_and_check_clean();
	testenv_rmtree(kdir);
	free(kdir);
}

static bool image_template_ready(char *dir, size_t len)
{
	json_object *o = NULL;
	api(&d, "GET", "/v1/images", NULL, &o);
	bool ok = false;
	for (size_t i = 0; i < json_object_array_length(o); i++) {
		json_object *m = json_object_array_get_idx(o, i), *t;
		if (strcmp(jget(m, "name"), "demo"))
			continue;
		ok = !strcmp(jget(m, "template"), "ready");
		if (json_object_object_get_ex(m, "templates", &t))
			snprintf(dir, len, "%s", jget(t, "tcg"));
	}
	json_object_put(o);
	return ok;
}

static void kvm_hang(void)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		fprintf(stderr, "no /dev/kvm here: the accelerator is never probed\n");
		exit(77);
	}
	char extra[1600];
	fault_qemu("pass", "hang");
	snprintf(
	    extra, sizeof(extra),
	    "accel = auto\nqemu = %s\naccel_probe_kernel = %s/vmlinuz\naccel_trial_timeout = 6\n"
	    "[sessions]\nstop_grace = 1\n",
	    fault_qemu_path(), testenv_guest_dir());
	setup("f-kvm", extra);
	CHECK(nestord_start(&d));
	json_object *o = NULL;
	api(&d, "GET", "/v1/accel", NULL, &o);
	CHECK_MSG(!strcmp(jget(o, "accel"), "kvm"), "the probe passed: %s", jget(o, "accel"));
	json_object_put(o);
	nestord_add_demo(&d, "ledger");
	int64_t t0 = util_now_ms();
	char id1[40];
	CHECK(connect_user(1, id1, sizeof(id1)));
	CHECK_MSG(wait_state(&d, id1, "ready", 30000), "served within 30 s despite the hang");
	fprintf(stderr, "user served under TCG %.2f s after connecting (KVM hung)\n",
		secs_since(t0));
	o = NULL;
	api(&d, "GET", "/v1/accel", NULL, &o);
	CHECK_MSG(!strcmp(jget(o, "accel"), "tcg") && !strcmp(jget(o, "source"), "fallback"),
		  "fell back: %s %s", jget(o, "accel"), jget(o, "source"));
	json_object_put(o);
	CHECK(file_has(d.log, "KVM marked bad"));
	CHECK(db_query_int("SELECT count(*) FROM audit WHERE kind='accel-fallback'") == 1);
	/* the template is built under TCG */
	char tdir[600] = "";
	bool ready = false;
	for (int i = 0; i < 600 && !ready; i++, usleep(100000))
		ready = image_template_ready(tdir, sizeof(tdir));
	CHECK_MSG(ready && tdir[0], "a TCG template");

	/* the decision survives a restart: no probe, still TCG */
	CHECK(nestord_stop(&d, SIGTERM, 30000) == 0);
	CHECK(nestord_start(&d));
	o = NULL;
	api(&d, "GET", "/v1/accel", NULL, &o);
	CHECK_MSG(!strcmp(jget(o, "accel"), "tcg") && !strcmp(jget(o, "source"), "fallback"),
		  "kept across a restart: %s %s", jget(o, "accel"), jget(o, "source"));
	json_object_put(o);
	CHECK_MSG(file_count(d.log, "probing KVM with") == 1, "no probe at the restart");

	/* an admin probes again: KVM passes the probe, and hangs the next guest again */
	o = NULL;
	CHECK(api(&d, "POST", "/v1/accel/probe", NULL, &o) == 200);
	CHECK(!strcmp(jget(o, "accel"), "kvm"));
	json_object_put(o);
	CHECK(file_count(d.log, "probing KVM with") == 2);
	char id2[40];
	t0 = util_now_ms();
	CHECK(connect_user(2, id2, sizeof(id2)));
	CHECK(wait_state(&d, id2, "ready", 30000));
	fprintf(stderr, "second fallback: served %.2f s after connecting\n", secs_since(t0));
	char path[128], again[600] = "";
	snprintf(path, sizeof(path), "/v1/sessions/%s", id2);
	o = NULL;
	api(&d, "GET", path, NULL, &o);
	CHECK_MSG(!strcmp(jget(o, "start_path"), "template"),
		  "back on TCG, its kept template serves at once: %s", jget(o, "start_path"));
	json_object_put(o);
	image_template_ready(again, sizeof(again));
	CHECK_MSG(!strcmp(again, tdir), "the TCG template is reused, not rebuilt");
	CHECK_MSG(line_count(d.log, "template of demo: building in", "(tcg)") == 1,
		  "one TCG template build in all");

	/* a shutdown does not wait for a build hanging under KVM */
	o = NULL;
	CHECK(api(&d, "POST", "/v1/accel/probe", NULL, &o) == 200);
	json_object_put(o);
	pid_t asker = fork();
	if (asker == 0) {
		/* nestorctl images template demo: waits for the build */
		_exit(api(&d, "POST", "/v1/images/demo/template", NULL, NULL) == 503 ? 0 : 1);
	}
	bool building = false;
	for (int i = 0; i < 100 && !building; i++, usleep(100000)) {
		o = NULL;
		api(&d, "GET", "/v1/images", NULL, &o);
		building = !strcmp(jget(json_object_array_get_idx(o, 0), "template"), "building");
		json_object_put(o);
	}
	CHECK_MSG(building, "the build hangs under KVM");
	t0 = util_now_ms();
	int st = nestord_stop(&d, SIGTERM, 30000);
	double took = secs_since(t0);
	fprintf(stderr, "shutdown with a build hanging under KVM: %.2f s\n", took);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0 && took < 5.0,
		  "stopped at once (%.2f s), not after the start deadline", took);
	st = wait_child(asker, 10000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the waiting admin was told (503)");
	CHECK(qemu_count() == 0 && entries("run/vm") == 0);
}

static int warm_ready(void)
{
	json_object *o = NULL;
	api(&d, "GET", "/v1/images", NULL, &o);
	int n = o ? (int)jint(json_object_array_get_idx(o, 0), "warm_ready") : -1;
	json_object_put(o);
	return n;
}

static bool wait_warm(int want, int ms)
{
	for (int64_t end = util_now_ms() + ms; util_now_ms() < end; usleep(100000))
		if (warm_ready() == want)
			return true;
	return false;
}

static void signals(void)
{
	setup("f-signals", "[sessions]\nstop_grace = 1\n");
	CHECK(nestord_start(&d));
	nestord_add_demo(&d, "ledger");
	template_ready();
	CHECK(api(&d, "PUT", "/v1/images/demo", "{\"warm_pool\":1}", NULL) == 200);
	CHECK(wait_warm(1, 60000));
	char id1[40], id2[40];
	CHECK(connect_user(1, id1, sizeof(id1)));
	CHECK(wait_state(&d, id1, "ready", 30000));
	CHECK(wait_warm(1, 60000)); /* refilled */
	json_object *arr = sessions();
	long long p1 = jint(of_user(arr, "user1"), "pid");
	json_object_put(arr);
	CHECK(qemu_count() == 2);

	/* SIGQUIT: out at once, guests left running, all of them picked up again */
	int st = nestord_stop(&d, SIGQUIT, 5000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGQUIT exit %d", st);
	CHECK_MSG(qemu_count() == 2, "guests kept: %d", qemu_count());
	CHECK(nestord_start(&d));
	CHECK(wait_state(&d, id1, "ready", 10000));
	arr = sessions();
	CHECK(jint(of_user(arr, "user1"), "pid") == p1);
	json_object_put(arr);
	CHECK_MSG(wait_warm(1, 10000) && qemu_count() == 2,
		  "the warm guest is reattached, not replaced (%d QEMU)", qemu_count());
	CHECK(file_has(d.log, "reattached (paused)"));
	/* until the new nestord knows QEMU's version, arrivals queue ("starting up") and
	 * are started from the template: wait for it, as a user arriving a moment later */
	char me[32];
	snprintf(me, sizeof(me), "nestord[%d] ", (int)d.pid);
	for (int i = 0; i < 100 && line_count(d.log, me, ": QEMU ") == 0; i++)
		usleep(100000);
	CHECK(line_count(d.log, me, ": QEMU ") == 1);
	CHECK(connect_user(2, id2, sizeof(id2)));
	CHECK(wait_state(&d, id2, "ready", 10000));
	char path[128];
	snprintf(path, sizeof(path), "/v1/sessions/%s", id2);
	json_object *o = NULL;
	api(&d, "GET", path, NULL, &o);
	CHECK_MSG(!strcmp(jget(o, "start_path"), "warm"), "user2 got the reattached warm guest: %s",
		  jget(o, "start_path"));
	json_object_put(o);

	/* Ctrl-C in a terminal and the script's SIGTERM right after: one shutdown */
	int64_t t0 = util_now_ms();
	kill(d.pid, SIGINT);
	usleep(20000);
	kill(d.pid, SIGTERM);
	usleep(20000);
	kill(d.pid, SIGINT);
	st = nestord_stop(&d, SIGTERM, 30000);
	fprintf(stderr, "shutdown with 2 sessions and a warm guest: %.2f s\n", secs_since(t0));
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
	CHECK(file_has(d.log, "already shutting down"));
	CHECK_MSG(qemu_count() == 0, "%d QEMU left", qemu_count());
	CHECK(entries("state/overlays") == 0 && entries("run/vm") == 0);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	testenv_guest_dir();
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
	    {"broker-kill", broker_kill}, {"gateway-kill", gateway_kill}, {"qemu-kill", qemu_kill},
	    {"disk-full", disk_full},	  {"db-locked", db_locked},	  {"startup", startup},
	    {"kvm-hang", kvm_hang},	  {"signals", signals},
	};
	for (size_t i = 0; argc == 2 && i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!strcmp(argv[1], cases[i].name)) {
			cases[i].fn();
			if (d.pid > 0)
				nestord_stop(&d, SIGTERM, 30000);
			char name[64];
			snprintf(name, sizeof(name), "faults %s", argv[1]);
			int r = check_done(name);
			if (r == 0 && d.dir[0])
				testenv_rmtree(d.dir); /* kept for a look when it failed */
			return r;
		}
	}
	fprintf(stderr, "usage: test_faults CASE\n");
	return 2;
}
