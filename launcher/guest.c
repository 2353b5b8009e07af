/*
 * One guest's life: overlay creation (qemu-img child), QEMU as a supervised
 * child in its own session, QMP, readiness, stop escalation and cleanup.
 * Everything is driven by the loop: job exits (pidfd), QMP replies and
 * events, and timers. Nothing blocks except small local file operations
 * (mkdir, unlink, reading the serial log tail).
 */
#include "launcher.h"
#include "job.h"
#include "log.h"
#include "qmp_client.h"
#include "util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define READY_POLL_MS 20
#define QUIT_GRACE_MS 3000
#define KILL_WAIT_MS 5000
#define QMP_TIMEOUT_MS 10000
#define SERIAL_SCAN_MAX (256 * 1024)
#define PATH_MAX_ 4096

enum step { S_OVERLAY, S_QEMU, S_RESTORE, S_PROBE, S_READY, S_STOPPING, S_GONE };

struct lnch_guest {
	struct event_base *base;
	char id[65];
	char rundir[PATH_MAX_];
	char overlay[PATH_MAX_];
	char qmp_path[108];
	char vnc_path[108];
	char probe_path[108];
	char serial_path[PATH_MAX_ + 16];
	char qemu_log[PATH_MAX_ + 16];
	/* copies of the config and profile strings we keep using */
	char *qemu, *qemu_img, *backing, *ram_file, *state_file, *marker;
	struct lnch_config cfg;
	struct lnch_profile profile;
	struct lnch_start_opts opts;
	struct lnch_guest_cbs cbs;
	void *arg;

	enum step step;
	enum lnch_state reported;
	struct job *img_job;
	struct job *qemu_job;
	pid_t pid;
	struct qmp_client *qmp;
	bool qmp_ready;
	struct event *t_start; /* start deadline */
	struct event *t_poll;  /* readiness polling */
	struct event *t_stop;  /* stop escalation */
	struct event *t_defer; /* deferred work from the loop */
	int stop_phase;	       /* 0 none, 1 powerdown, 2 quit, 3 kill */
	enum lnch_end why;
	char detail[512];
	bool shutdown_seen;
	bool attached;
	bool reprobe;
	size_t serial_off;
	int restore_fd;
	int64_t started_ms;

	int probe_fd; /* network readiness probe */
	struct event *probe_ev;
	bool probe_connected;
	uint8_t probe_buf[64];
	size_t probe_len;

	struct bufferevent *ping_bev;
	struct event *ping_timer;
	char ping_expect[80];
	lnch_ping_fn ping_cb;
	void *ping_arg;

	int busy;
	bool doomed;
};

static void guest_free(struct lnch_guest *g);
static void finish(struct lnch_guest *g);
static void ping_end(struct lnch_guest *g, int err);
static void close_restore_fd(struct lnch_guest *g);
static void probe_close(struct lnch_guest *g);
static int free_port(const struct lnch_config *cfg, unsigned *out);

const char *lnch_state_name(enum lnch_state st)
{
	static const char *const n[] = {"starting", "ready", "stopping", "stopped"};
	return (unsigned)st < ARRAY_LEN(n) ? n[st] : "?";
}

const char *lnch_end_name(enum lnch_end why)
{
	static const char *const n[] = {"none",	   "guest shutdown", "stopped",	     "killed",
					"crashed", "start timeout",  "start failed", "lost"};
	return (unsigned)why < ARRAY_LEN(n) ? n[why] : "?";
}

static void enter(struct lnch_guest *g)
{
	g->busy++;
}

static void leave(struct lnch_guest *g)
{
	if (--g->busy == 0 && g->doomed)
		guest_free(g);
}

static void report(struct lnch_guest *g, enum lnch_state st)
{
	if (g->doomed || (g->reported == st && st != LNCH_STARTING))
		return;
	g->reported = st;
	if (g->cbs.state)
		g->cbs.state(g, st, st == LNCH_STOPPED ? g->why : LNCH_END_NONE, g->detail, g->arg);
}

static void set_timer(struct event *ev, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

static void set_end(struct lnch_guest *g, enum lnch_end why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_end(struct lnch_guest *g, enum lnch_end why, const char *fmt, ...)
{
	if (g->why != LNCH_END_NONE)
		return; /* the first reason wins */
	g->why = why;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g->detail, sizeof(g->detail), fmt, ap);
	va_end(ap);
}

/* The last non-empty line of a small log file, for error messages. */
static void last_line(const char *path, char *out, size_t len)
{
	char *buf = NULL;
	size_t n = 0;
	out[0] = '\0';
	if (util_read_file(path, 64 * 1024, &buf, &n) < 0)
		return;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	char *nl = strrchr(buf, '\n');
	snprintf(out, len, "%s", nl ? nl + 1 : buf);
	free(buf);
}

/* QEMU is gone (or never started): remove everything and report. */
static void finish(struct lnch_guest *g)
{
	if (g->step == S_GONE)
		return;
	g->step = S_GONE;
	evtimer_del(g->t_start);
	evtimer_del(g->t_poll);
	probe_close(g);
	evtimer_del(g->t_stop);
	ping_end(g, -ECONNRESET);
	close_restore_fd(g);
	qmp_client_destroy(g->qmp);
	g->qmp = NULL;
	g->qmp_ready = false;
	if (g->overlay[0] && !g->opts.keep_overlay && unlink(g->overlay) < 0 && errno != ENOENT)
		log_warn("vm=%s cannot remove overlay %s: %s", g->id, g->overlay, strerror(errno));
	util_rmdir_flat(g->rundir);
	if (g->why == LNCH_END_NONE)
		set_end(g, LNCH_END_CRASHED, "QEMU exited");
	log_info("vm=%s stopped: %s%s%s", g->id, lnch_end_name(g->why), g->detail[0] ? ": " : "",
		 g->detail);
	report(g, LNCH_STOPPED);
}

static void on_qemu_exit(struct job *job, int status, void *arg)
{
	struct lnch_guest *g = arg;
	enter(g);
	char st[96], tail[256];
	job_status_str(status, st, sizeof(st));
	last_line(g->qemu_log, tail, sizeof(tail));
	job_destroy(job);
	g->qemu_job = NULL;
	if (g->stop_phase == 3)
		set_end(g, LNCH_END_KILLED, "SIGKILL after the guest ignored quit");
	else if (g->stop_phase > 0)
		set_end(g, LNCH_END_STOPPED, "%s", g->stop_phase == 1 ? "powered down" : "quit");
	else if (g->shutdown_seen)
		set_end(g, LNCH_END_SHUTDOWN, "the guest powered off or reset");
	else if (g->step < S_READY && g->step != S_STOPPING)
		set_end(g, LNCH_END_START_FAILED, "QEMU %s during start%s%s", st,
			tail[0] ? ": " : "", tail);
	else
		set_end(g, LNCH_END_CRASHED, "QEMU %s%s%s", st, tail[0] ? ": " : "", tail);
	finish(g);
	leave(g);
}

/* Escalate: powerdown -> quit -> SIGKILL. */
static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct lnch_guest *g = arg;
	enter(g);
	if (g->stop_phase < 2 && g->qmp_ready) {
		g->stop_phase = 2;
		qmp_client_call(g->qmp, "quit", NULL, -1, QUIT_GRACE_MS, NULL, NULL);
		set_timer(g->t_stop, QUIT_GRACE_MS);
	} else if (g->qemu_job && g->stop_phase < 3) {
		g->stop_phase = 3;
		log_warn("vm=%s did not quit, sending SIGKILL", g->id);
		job_signal(g->qemu_job, SIGKILL);
		set_timer(g->t_stop, KILL_WAIT_MS);
	} else if (g->qemu_job) {
		log_err("vm=%s pid %d survived SIGKILL for %d ms", g->id, (int)g->pid,
			KILL_WAIT_MS);
		set_timer(g->t_stop, KILL_WAIT_MS);
	}
	leave(g);
}

void lnch_guest_stop(struct lnch_guest *g, int grace_ms)
{
	if (!g || g->step >= S_STOPPING)
		return;
	enter(g);
	enum step was = g->step;
	g->step = S_STOPPING;
	evtimer_del(g->t_start);
	evtimer_del(g->t_poll);
	probe_close(g);
	report(g, LNCH_STOPPING);
	if (was == S_OVERLAY) {
		/* qemu-img is quick; the overlay is removed when it ends. */
		g->stop_phase = 2;
		set_end(g, LNCH_END_STOPPED, "stopped before QEMU started");
	} else if (!g->qemu_job) {
		finish(g);
	} else if (g->qmp_ready && grace_ms > 0) {
		g->stop_phase = 1;
		qmp_client_call(g->qmp, "system_powerdown", NULL, -1, QMP_TIMEOUT_MS, NULL, NULL);
		set_timer(g->t_stop, grace_ms);
	} else if (g->qmp_ready) {
		g->stop_phase = 2;
		qmp_client_call(g->qmp, "quit", NULL, -1, QUIT_GRACE_MS, NULL, NULL);
		set_timer(g->t_stop, QUIT_GRACE_MS);
	} else {
		g->stop_phase = 2;
		job_signal(g->qemu_job, SIGTERM);
		set_timer(g->t_stop, QUIT_GRACE_MS);
	}
	leave(g);
}

static void fail_start(struct lnch_guest *g, enum lnch_end why, const char *msg)
{
	log_warn("vm=%s start failed: %s", g->id, msg);
	set_end(g, why, "%s", msg);
	g->step = S_PROBE; /* so stop takes the QEMU path */
	if (g->qemu_job) {
		lnch_guest_stop(g, 0);
	} else {
		g->step = S_STOPPING;
		finish(g);
	}
}

static void became_ready(struct lnch_guest *g)
{
	g->step = S_READY;
	evtimer_del(g->t_start);
	evtimer_del(g->t_poll);
	probe_close(g);
	log_info("vm=%s ready in %.2f s (pid %d)", g->id,
		 (double)(util_now_ms() - g->started_ms) / 1000.0, (int)g->pid);
	report(g, LNCH_READY);
}

static void on_start_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct lnch_guest *g = arg;
	enter(g);
	char msg[128];
	snprintf(msg, sizeof(msg), "not ready after %d ms", g->cfg.start_timeout_ms);
	fail_start(g, LNCH_END_START_TIMEOUT, msg);
	leave(g);
}

/* Serial readiness: scan what the guest printed since last time. */
static bool serial_has_marker(struct lnch_guest *g)
{
	int fd = open(g->serial_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	size_t mlen = strlen(g->marker);
	/* Re-read a marker's length of overlap so a marker split across reads is found. */
	off_t from = g->serial_off > mlen ? (off_t)(g->serial_off - mlen) : 0;
	char buf[8192];
	bool found = false;
	ssize_t r = pread(fd, buf, sizeof(buf) - 1, from);
	if (r > 0) {
		buf[r] = '\0';
		found = memmem(buf, (size_t)r, g->marker, mlen) != NULL;
		g->serial_off = (size_t)from + (size_t)r;
		if (g->serial_off > SERIAL_SCAN_MAX)
			g->serial_off =
			    SERIAL_SCAN_MAX; /* a chatty guest: keep scanning the tail */
	}
	close(fd);
	return found;
}

static void net_probe(struct lnch_guest *g);

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct lnch_guest *g = arg;
	if (g->step != S_PROBE)
		return;
	enter(g);
	if (g->profile.ready == LNCH_READY_SERIAL && serial_has_marker(g))
		became_ready(g);
	else if (g->profile.ready == LNCH_READY_TCP || g->profile.ready == LNCH_READY_RDP)
		net_probe(g);
	else
		set_timer(g->t_poll, READY_POLL_MS);
	leave(g);
}

/*
 * Network readiness through the host forward, never blocking the loop.
 * slirp accepts on the host side even when nothing listens in the guest
 * (and then closes), so an accept proves nothing:
 *  - tcp: the guest sends a byte, or keeps the connection open and quiet
 *    for 300 ms;
 *  - rdp: the guest answers an X.224 Connection Request (standard RDP
 *    security asked for, as every RDP server since NT 4 TSE understands)
 *    with a Connection Confirm: its RDP stack is up, not just a socket.
 * A failed attempt is retried after 200 ms until the start deadline.
 */
static void probe_close(struct lnch_guest *g)
{
	if (g->probe_ev) {
		event_free(g->probe_ev);
		g->probe_ev = NULL;
	}
	if (g->probe_fd >= 0)
		close(g->probe_fd);
	g->probe_fd = -1;
	g->probe_len = 0;
}

static void probe_retry(struct lnch_guest *g)
{
	probe_close(g);
	set_timer(g->t_poll, 200);
}

/* X.224 Connection Confirm in a TPKT: 03 00 len(2) li CC(0xD0) ... */
static int x224_confirm(const uint8_t *b, size_t n)
{
	if (n >= 1 && b[0] != 3)
		return -1;
	if (n < 4)
		return 0;
	size_t len = (size_t)b[2] << 8 | b[3];
	if (len < 11 || len > sizeof(((struct lnch_guest *)0)->probe_buf))
		return -1;
	if (n < len)
		return 0;
	return (b[5] & 0xf0) == 0xd0 ? 1 : -1;
}

static void on_probe_io(evutil_socket_t fd, short what, void *arg)
{
	struct lnch_guest *g = arg;
	if (g->step != S_PROBE)
		return;
	enter(g);
	bool rdp = g->profile.ready == LNCH_READY_RDP;
	if (!g->probe_connected) {
		int e = 0;
		socklen_t el = sizeof(e);
		if ((what & EV_TIMEOUT) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
			probe_retry(g);
			goto out;
		}
		g->probe_connected = true;
		static const uint8_t cr[] = {3, 0, 0, 19, 14, 0xe0, 0, 0, 0, 0,
					     0, 1, 0, 8,  0,  0,    0, 0, 0};
		if (rdp && send(fd, cr, sizeof(cr), MSG_NOSIGNAL) != (ssize_t)sizeof(cr)) {
			probe_retry(g);
			goto out;
		}
		event_free(g->probe_ev);
		g->probe_ev = event_new(g->base, fd, EV_READ | EV_PERSIST, on_probe_io, g);
		struct timeval tv = {rdp ? 2 : 0, rdp ? 0 : 300000};
		if (!g->probe_ev || event_add(g->probe_ev, &tv) < 0)
			probe_retry(g);
		goto out;
	}
	if (what & EV_TIMEOUT) {
		if (rdp)
			probe_retry(g); /* no answer: the RDP service is not up yet */
		else
			became_ready(g); /* quiet and open */
		goto out;
	}
	ssize_t r = recv(fd, g->probe_buf + g->probe_len, sizeof(g->probe_buf) - g->probe_len, 0);
	if (r <= 0) {
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			goto out;
		probe_retry(g); /* closed: nothing listens in the guest */
		goto out;
	}
	g->probe_len += (size_t)r;
	int c = rdp ? x224_confirm(g->probe_buf, g->probe_len) : 1;
	if (c > 0) {
		log_debug("vm=%s %s answers on 127.0.0.1:%u", g->id, rdp ? "RDP" : "TCP",
			  g->opts.host_port);
		became_ready(g);
	} else if (c < 0) {
		probe_retry(g);
	}
out:
	leave(g);
}

static void net_probe(struct lnch_guest *g)
{
	probe_close(g);
	g->probe_connected = false;
	g->probe_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (g->probe_fd < 0) {
		set_timer(g->t_poll, 200);
		return;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)g->opts.host_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(g->probe_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		probe_retry(g);
		return;
	}
	g->probe_ev = event_new(g->base, g->probe_fd, EV_WRITE, on_probe_io, g);
	struct timeval tv = {1, 0};
	if (!g->probe_ev || event_add(g->probe_ev, &tv) < 0)
		probe_retry(g);
}

static void start_probe(struct lnch_guest *g)
{
	g->step = S_PROBE;
	if (g->state_file && !g->profile.guest_port) {
		/* A restored clone was ready when its template was saved (a network
		 * service is probed again: its forward is new). */
		became_ready(g);
		return;
	}
	if (g->profile.ready == LNCH_READY_RUNNING) {
		became_ready(g);
		return;
	}
	set_timer(g->t_poll, 0);
}

/* --- template restore: migrate-incoming from the saved state --- */

static void close_restore_fd(struct lnch_guest *g)
{
	if (g->restore_fd >= 0)
		close(g->restore_fd);
	g->restore_fd = -1;
}

static void on_cont(struct qmp_client *c, int err, json_object *res, const char *desc, void *arg)
{
	struct lnch_guest *g = arg;
	if (g->step != S_RESTORE)
		return;
	if (err) {
		fail_start(g, LNCH_END_START_FAILED, desc ? desc : "cont failed");
		return;
	}
	start_probe(g);
}

static void query_restore(struct lnch_guest *g);

static void on_restore_status(struct qmp_client *c, int err, json_object *res, const char *desc,
			      void *arg)
{
	struct lnch_guest *g = arg;
	if (g->step != S_RESTORE)
		return;
	json_object *st;
	if (err || !json_object_object_get_ex(res, "status", &st) ||
	    !json_object_is_type(st, json_type_string)) {
		fail_start(g, LNCH_END_START_FAILED, desc ? desc : "bad query-status reply");
		return;
	}
	const char *s = json_object_get_string(st);
	if (strcmp(s, "inmigrate") == 0) {
		set_timer(g->t_poll, 10);
		return;
	}
	if (strcmp(s, "paused") != 0 && strcmp(s, "running") != 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "template restore ended in state %s", s);
		fail_start(g, LNCH_END_START_FAILED, msg);
		return;
	}
	if (g->opts.keep_paused) {
		g->step = S_PROBE;
		became_ready(g);
		return;
	}
	if (qmp_client_call(g->qmp, "cont", NULL, -1, QMP_TIMEOUT_MS, on_cont, g) < 0)
		fail_start(g, LNCH_END_START_FAILED, "cannot send cont");
}

static void query_restore(struct lnch_guest *g)
{
	if (qmp_client_call(g->qmp, "query-status", NULL, -1, QMP_TIMEOUT_MS, on_restore_status,
			    g) < 0)
		fail_start(g, LNCH_END_START_FAILED, "cannot send query-status");
}

static void on_restore_poll(evutil_socket_t fd, short what, void *arg)
{
	struct lnch_guest *g = arg;
	if (g->step == S_RESTORE)
		query_restore(g);
	else
		on_poll(fd, what, arg);
}

static void on_incoming(struct qmp_client *c, int err, json_object *res, const char *desc,
			void *arg)
{
	struct lnch_guest *g = arg;
	if (g->step != S_RESTORE)
		return;
	if (err) {
		fail_start(g, LNCH_END_START_FAILED, desc ? desc : "migrate-incoming failed");
		return;
	}
	query_restore(g);
}

static void on_getfd(struct qmp_client *c, int err, json_object *res, const char *desc, void *arg)
{
	struct lnch_guest *g = arg;
	close_restore_fd(g);
	if (g->step != S_RESTORE)
		return;
	if (err) {
		fail_start(g, LNCH_END_START_FAILED, desc ? desc : "getfd failed");
		return;
	}
	json_object *a = json_object_new_object();
	json_object_object_add(a, "uri", json_object_new_string("fd:nestor-in"));
	if (qmp_client_call(g->qmp, "migrate-incoming", a, -1, QMP_TIMEOUT_MS, on_incoming, g) < 0)
		fail_start(g, LNCH_END_START_FAILED, "cannot send migrate-incoming");
}

static void on_caps_set(struct qmp_client *c, int err, json_object *res, const char *desc,
			void *arg)
{
	struct lnch_guest *g = arg;
	if (g->step != S_RESTORE)
		return;
	if (err) {
		fail_start(g, LNCH_END_START_FAILED,
			   desc ? desc : "migrate-set-capabilities failed");
		return;
	}
	int fd = open(g->state_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		char msg[PATH_MAX_ + 64];
		snprintf(msg, sizeof(msg), "cannot open template state %s: %s", g->state_file,
			 strerror(errno));
		fail_start(g, LNCH_END_START_FAILED, msg);
		return;
	}
	json_object *a = json_object_new_object();
	json_object_object_add(a, "fdname", json_object_new_string("nestor-in"));
	int r = qmp_client_call(g->qmp, "getfd", a, fd, QMP_TIMEOUT_MS, on_getfd, g);
	if (r < 0) {
		close(fd);
		fail_start(g, LNCH_END_START_FAILED, "cannot send getfd");
		return;
	}
	/* The client sends from the loop: keep our copy open until the reply. */
	g->restore_fd = fd;
}

static void start_restore(struct lnch_guest *g)
{
	g->step = S_RESTORE;
	json_object *cap = json_object_new_object();
	json_object_object_add(cap, "capability", json_object_new_string("x-ignore-shared"));
	json_object_object_add(cap, "state", json_object_new_boolean(g->ram_file != NULL));
	json_object *caps = json_object_new_array();
	json_object_array_add(caps, cap);
	json_object *a = json_object_new_object();
	json_object_object_add(a, "capabilities", caps);
	if (qmp_client_call(g->qmp, "migrate-set-capabilities", a, -1, QMP_TIMEOUT_MS, on_caps_set,
			    g) < 0)
		fail_start(g, LNCH_END_START_FAILED, "cannot send migrate-set-capabilities");
}

/* --- QMP --- */

static void on_attach_status(struct qmp_client *c, int err, json_object *res, const char *desc,
			     void *arg)
{
	struct lnch_guest *g = arg;
	if (g->step != S_PROBE)
		return;
	json_object *st;
	if (err || !json_object_object_get_ex(res, "status", &st)) {
		fail_start(g, LNCH_END_START_FAILED, desc ? desc : "query-status failed");
		return;
	}
	log_info("vm=%s reattached (pid %d, status %s)", g->id, (int)g->pid,
		 json_object_get_string(st));
	if (g->reprobe)
		start_probe(g);
	else
		became_ready(g);
}

static void on_qmp_ready(struct qmp_client *c, void *arg)
{
	struct lnch_guest *g = arg;
	g->qmp_ready = true;
	if (g->step == S_STOPPING) {
		/* stop was asked before QMP came up: quit now */
		g->stop_phase = 2;
		qmp_client_call(g->qmp, "quit", NULL, -1, QUIT_GRACE_MS, NULL, NULL);
		return;
	}
	if (g->step != S_QEMU)
		return;
	if (g->attached) {
		g->step = S_PROBE;
		if (qmp_client_call(c, "query-status", NULL, -1, QMP_TIMEOUT_MS, on_attach_status,
				    g) < 0)
			fail_start(g, LNCH_END_START_FAILED, "cannot send query-status");
		return;
	}
	if (g->state_file)
		start_restore(g);
	else
		start_probe(g);
}

static void on_qmp_event(struct qmp_client *c, const char *name, json_object *data, void *arg)
{
	struct lnch_guest *g = arg;
	log_debug("vm=%s event %s", g->id, name);
	if (strcmp(name, "SHUTDOWN") == 0) {
		json_object *r;
		g->shutdown_seen = true;
		/* host-qmp-quit is our own quit: not the guest's doing. */
		if (json_object_object_get_ex(data, "reason", &r) &&
		    strcmp(json_object_get_string(r), "host-qmp-quit") == 0)
			g->shutdown_seen = g->stop_phase == 0;
	}
	if (g->cbs.event && g->step != S_GONE) {
		enter(g);
		g->cbs.event(g, name, data, g->arg);
		leave(g);
	}
}

static void on_qmp_closed(struct qmp_client *c, const char *reason, void *arg)
{
	struct lnch_guest *g = arg;
	g->qmp_ready = false;
	if (g->step < S_READY && g->step != S_OVERLAY) {
		log_debug("vm=%s qmp closed during start: %s", g->id, reason);
		char msg[256];
		snprintf(msg, sizeof(msg), "QMP: %s", reason);
		/* QEMU's exit tells the real story if it is dying; give it a moment. */
		set_end(g, LNCH_END_START_FAILED, "%s", msg);
		if (g->qemu_job)
			lnch_guest_stop(g, 0);
	}
	/* After ready, a closed QMP means QEMU is going; its exit finishes the guest. */
}

static const struct qmp_client_cbs qmp_cbs = {
    .ready = on_qmp_ready,
    .event = on_qmp_event,
    .closed = on_qmp_closed,
};

/* --- QEMU process --- */

static void spawn_qemu(struct lnch_guest *g)
{
	char err[256];
	struct lnch_argv av;
	struct lnch_argv_opts o = {
	    .qemu = g->qemu, .accel = g->cfg.accel, .sandbox = g->cfg.sandbox, .name = g->id};
	struct lnch_paths p = {
	    .overlay = g->overlay,
	    .qmp = g->qmp_path,
	    .vnc = g->vnc_path,
	    .serial_log = g->serial_path,
	    .probe = g->probe_path,
	    .ram_file = g->ram_file,
	    .ram_shared = g->opts.share_ram,
	    .incoming = g->state_file != NULL,
	    .host_port = g->opts.host_port,
	};
	if (lnch_argv_build(&o, &g->profile, &p, &av, err, sizeof(err)) < 0) {
		fail_start(g, LNCH_END_START_FAILED, err);
		return;
	}
	int logfd = open(g->qemu_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0) {
		lnch_argv_free(&av);
		fail_start(g, LNCH_END_START_FAILED, "cannot create qemu.log");
		return;
	}
	struct job_spec spec = {
	    .argv = (const char *const *)av.v,
	    .stdout_fd = logfd,
	    .stderr_fd = -2,
	    .new_session = true, /* guests outlive the broker */
	    .uid = g->cfg.uid,
	    .gid = g->cfg.gid,
	};
	g->qemu_job = job_run(g->base, &spec, on_qemu_exit, g);
	int e = errno;
	close(logfd);
	lnch_argv_free(&av);
	if (!g->qemu_job) {
		snprintf(err, sizeof(err), "cannot start QEMU: %s", strerror(e));
		fail_start(g, LNCH_END_START_FAILED, err);
		return;
	}
	g->pid = job_pid(g->qemu_job);
	g->step = S_QEMU;
	if (g->cbs.spawned) {
		enter(g);
		g->cbs.spawned(g, g->pid, g->arg);
		leave(g);
		if (g->step != S_QEMU)
			return;
	}
	log_info("vm=%s qemu pid %d (%s)", g->id, (int)g->pid,
		 g->state_file ? "template clone" : "cold boot");
	g->qmp = qmp_client_create(g->base, g->qmp_path, 10000, &qmp_cbs, g);
	if (!g->qmp)
		fail_start(g, LNCH_END_START_FAILED, "out of memory");
}

static void on_overlay(struct job *job, int status, void *arg)
{
	struct lnch_guest *g = arg;
	enter(g);
	char out[256];
	snprintf(out, sizeof(out), "%s", job_output(job));
	job_destroy(job);
	g->img_job = NULL;
	if (g->step == S_STOPPING) {
		finish(g);
	} else if (status != 0) {
		char st[64], msg[512];
		job_status_str(status, st, sizeof(st));
		char *nl = strchr(out, '\n');
		if (nl)
			*nl = '\0';
		snprintf(msg, sizeof(msg), "qemu-img create failed (%s): %s", st, out);
		fail_start(g, LNCH_END_START_FAILED, msg);
	} else {
		chmod(g->overlay, 0600);
		spawn_qemu(g);
	}
	leave(g);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
	struct lnch_guest *g = arg;
	enter(g);
	report(g, LNCH_STARTING);
	if (g->step == S_OVERLAY) {
		const char *argv[] = {g->qemu_img, "create", "-q",    "-f",	  "qcow2", "-b",
				      g->backing,  "-F",     "qcow2", g->overlay, NULL};
		struct job_spec spec = {.argv = argv,
					.stdout_fd = -1,
					.stderr_fd = -2,
					.uid = g->cfg.uid,
					.gid = g->cfg.gid};
		g->img_job = job_run(g->base, &spec, on_overlay, g);
		if (!g->img_job)
			fail_start(g, LNCH_END_START_FAILED, "cannot run qemu-img");
	} else if (g->attached && g->step == S_QEMU) {
		g->qmp = qmp_client_create(g->base, g->qmp_path, 3000, &qmp_cbs, g);
		if (!g->qmp)
			fail_start(g, LNCH_END_START_FAILED, "out of memory");
	} else if (g->step == S_STOPPING) {
		finish(g);
	}
	leave(g);
}

static int set_paths(struct lnch_guest *g, const struct lnch_config *cfg, const char *id, char *err,
		     size_t errlen)
{
	if (!util_name_valid(id)) {
		snprintf(err, errlen, "invalid guest id '%s'", id);
		return -EINVAL;
	}
	snprintf(g->id, sizeof(g->id), "%s", id);
	int n1 = snprintf(g->rundir, sizeof(g->rundir), "%s/%s", cfg->run_dir, id);
	int n2 = snprintf(g->overlay, sizeof(g->overlay), "%s/%s.qcow2", cfg->overlay_dir, id);
	int n3 = snprintf(g->qmp_path, sizeof(g->qmp_path), "%s/qmp.sock", g->rundir);
	int n4 = snprintf(g->vnc_path, sizeof(g->vnc_path), "%s/vnc.sock", g->rundir);
	int n5 = snprintf(g->probe_path, sizeof(g->probe_path), "%s/probe.sock", g->rundir);
	snprintf(g->serial_path, sizeof(g->serial_path), "%s/serial.log", g->rundir);
	snprintf(g->qemu_log, sizeof(g->qemu_log), "%s/qemu.log", g->rundir);
	if (n1 >= (int)sizeof(g->rundir) || n2 >= (int)sizeof(g->overlay) ||
	    n3 >= (int)sizeof(g->qmp_path) || n4 >= (int)sizeof(g->vnc_path) ||
	    n5 >= (int)sizeof(g->probe_path)) {
		snprintf(err, errlen, "run_dir '%s' is too long for UNIX socket paths",
			 cfg->run_dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

static struct lnch_guest *guest_alloc(struct event_base *base, const struct lnch_config *cfg,
				      const struct lnch_guest_cbs *cbs, void *arg)
{
	struct lnch_guest *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->base = base;
	g->cfg = *cfg;
	g->cbs = *cbs;
	g->arg = arg;
	g->restore_fd = -1;
	g->probe_fd = -1;
	g->reported = (enum lnch_state) - 1;
	g->started_ms = util_now_ms();
	g->qemu = strdup(cfg->qemu);
	g->qemu_img = strdup(cfg->qemu_img);
	g->t_start = evtimer_new(base, on_start_timeout, g);
	g->t_poll = evtimer_new(base, on_restore_poll, g);
	g->t_stop = evtimer_new(base, on_stop_timer, g);
	g->t_defer = evtimer_new(base, on_defer, g);
	if (!g->qemu || !g->qemu_img || !g->t_start || !g->t_poll || !g->t_stop || !g->t_defer) {
		guest_free(g);
		return NULL;
	}
	g->cfg.qemu = g->qemu;
	g->cfg.qemu_img = g->qemu_img;
	g->cfg.run_dir = g->cfg.overlay_dir = NULL; /* only the derived paths are kept */
	return g;
}

static char *dup_opt(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

struct lnch_guest *lnch_guest_start(struct event_base *base, const struct lnch_config *cfg,
				    const char *id, const struct lnch_profile *profile,
				    const struct lnch_start_opts *opts,
				    const struct lnch_guest_cbs *cbs, void *arg, char *err,
				    size_t errlen)
{
	struct lnch_start_opts none = {0};
	if (!opts)
		opts = &none;
	if (lnch_profile_check(profile, err, errlen) < 0)
		return NULL;
	struct lnch_guest *g = guest_alloc(base, cfg, cbs, arg);
	if (!g) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (set_paths(g, cfg, id, err, errlen) < 0)
		goto fail;
	bool oom = false;
	g->profile = *profile;
	g->opts = *opts;
	if (profile->guest_port && !g->opts.host_port && free_port(cfg, &g->opts.host_port) < 0) {
		snprintf(err, errlen, "no free port on 127.0.0.1 for the guest's forward%s",
			 cfg->port_lo ? " (forward_ports are all taken)" : "");
		goto fail;
	}
	g->backing = dup_opt(opts->backing ? opts->backing : profile->disk, &oom);
	g->ram_file = dup_opt(opts->ram_file, &oom);
	g->state_file = dup_opt(opts->state_file, &oom);
	g->marker = dup_opt(profile->ready_marker, &oom);
	/* The profile's own strings are only needed to build argv; keep copies. */
	g->profile.disk = g->backing;
	g->profile.ready_marker = g->marker;
	g->profile.kernel = dup_opt(profile->kernel, &oom);
	g->profile.initrd = dup_opt(profile->initrd, &oom);
	g->profile.append = dup_opt(profile->append, &oom);
	g->profile.machine = dup_opt(profile->machine, &oom);
	if (oom) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (opts->overlay) {
		if (strlen(opts->overlay) >= sizeof(g->overlay)) {
			snprintf(err, errlen, "overlay path too long");
			goto fail;
		}
		strcpy(g->overlay, opts->overlay);
	}
	g->opts.overlay = NULL; /* g->overlay holds it */
	g->opts.backing = g->opts.ram_file = g->opts.state_file = NULL;
	if (access(g->backing, R_OK) < 0) {
		snprintf(err, errlen, "backing image %s: %s", g->backing, strerror(errno));
		goto fail;
	}
	if (mkdir(g->rundir, 0700) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", g->rundir, strerror(errno));
		goto fail;
	}
	if (cfg->uid && chown(g->rundir, cfg->uid, cfg->gid) < 0) {
		snprintf(err, errlen, "cannot chown %s: %s", g->rundir, strerror(errno));
		rmdir(g->rundir);
		goto fail;
	}
	g->step = S_OVERLAY;
	set_timer(g->t_start, cfg->start_timeout_ms);
	set_timer(g->t_defer, 0);
	log_info("vm=%s starting (%u MiB, %s)", g->id, profile->memory_mb,
		 cfg->accel == LNCH_ACCEL_KVM ? "kvm" : "tcg");
	return g;
fail:
	g->rundir[0] = '\0';
	g->overlay[0] = '\0';
	guest_free(g);
	return NULL;
}

/* Does /proc/PID/cmdline belong to QEMU serving QMP_PATH? Guards against pid reuse. */
static bool is_our_qemu(pid_t pid, const char *qmp_path)
{
	char path[64], *buf = NULL;
	size_t n = 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if (util_read_file(path, 64 * 1024, &buf, &n) < 0)
		return false;
	bool found = false;
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
		const char *arg = buf + i;
		if (strncmp(arg, "unix:", 5) == 0 &&
		    strncmp(arg + 5, qmp_path, strlen(qmp_path)) == 0 &&
		    arg[5 + strlen(qmp_path)] == ',') {
			found = true;
			break;
		}
	}
	free(buf);
	return found;
}

struct lnch_guest *lnch_guest_attach(struct event_base *base, const struct lnch_config *cfg,
				     const char *id, pid_t pid, const struct lnch_profile *probe,
				     const struct lnch_guest_cbs *cbs, void *arg, char *err,
				     size_t errlen)
{
	struct lnch_guest *g = guest_alloc(base, cfg, cbs, arg);
	if (!g) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (set_paths(g, cfg, id, err, errlen) < 0) {
		g->rundir[0] = g->overlay[0] = '\0';
		guest_free(g);
		return NULL;
	}
	g->attached = true;
	g->pid = pid;
	g->profile.ready = LNCH_READY_RUNNING;
	if (probe) {
		g->reprobe = true;
		g->profile.ready = probe->ready;
		g->profile.serial_probe = probe->serial_probe;
		g->marker = probe->ready_marker ? strdup(probe->ready_marker) : NULL;
		g->profile.ready_marker = g->marker;
		if (probe->ready == LNCH_READY_SERIAL && !g->marker) {
			snprintf(err, errlen, "out of memory");
			g->rundir[0] = g->overlay[0] = '\0';
			guest_free(g);
			return NULL;
		}
	}
	if (pid > 0 && is_our_qemu(pid, g->qmp_path))
		g->qemu_job = job_watch(base, pid, on_qemu_exit, g);
	if (g->qemu_job) {
		g->step = S_QEMU;
		set_timer(g->t_start, 10000);
	} else {
		/* Gone while nobody watched: clean its files and report. */
		g->step = S_STOPPING;
		set_end(g, LNCH_END_LOST, "QEMU pid %d is gone", (int)pid);
	}
	set_timer(g->t_defer, 0);
	return g;
}

struct resume {
	struct lnch_guest *g;
	lnch_done_fn cb;
	void *arg;
};

static void on_resumed(struct qmp_client *c, int err, json_object *res, const char *desc, void *arg)
{
	struct resume *r = arg;
	if (r->cb && err != -ECANCELED)
		r->cb(r->g, err, r->arg);
	free(r);
}

int lnch_guest_resume(struct lnch_guest *g, lnch_done_fn cb, void *arg)
{
	if (g->step != S_READY || !g->qmp_ready)
		return -ENOTCONN;
	struct resume *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct resume){g, cb, arg};
	int e = qmp_client_call(g->qmp, "cont", NULL, -1, QMP_TIMEOUT_MS, on_resumed, r);
	if (e < 0)
		free(r);
	return e;
}

void lnch_guest_set_cbs(struct lnch_guest *g, const struct lnch_guest_cbs *cbs, void *arg)
{
	g->cbs = *cbs;
	g->arg = arg;
}

/* --- ping over the probe serial port --- */

static void ping_end(struct lnch_guest *g, int err)
{
	if (!g->ping_cb)
		return;
	lnch_ping_fn cb = g->ping_cb;
	g->ping_cb = NULL;
	if (g->ping_bev)
		bufferevent_free(g->ping_bev);
	g->ping_bev = NULL;
	if (g->ping_timer)
		event_free(g->ping_timer);
	g->ping_timer = NULL;
	cb(g, err, g->ping_arg);
}

static void on_ping_read(struct bufferevent *bev, void *arg)
{
	struct lnch_guest *g = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	enter(g);
	for (;;) {
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (!line) {
			if (evbuffer_get_length(in) > 4096)
				ping_end(g, -EPROTO);
			break;
		}
		bool match = strcmp(line, g->ping_expect) == 0;
		free(line);
		if (match) {
			ping_end(g, 0);
			break;
		}
	}
	leave(g);
}

static void on_ping_event(struct bufferevent *bev, short what, void *arg)
{
	struct lnch_guest *g = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		enter(g);
		ping_end(g, -ECONNRESET);
		leave(g);
	}
}

static void on_ping_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct lnch_guest *g = arg;
	enter(g);
	ping_end(g, -ETIMEDOUT);
	leave(g);
}

int lnch_guest_ping(struct lnch_guest *g, const char *token, int timeout_ms, lnch_ping_fn cb,
		    void *arg)
{
	if (g->step != S_READY)
		return -ENOTCONN;
	if (g->ping_cb)
		return -EBUSY;
	if (!token[0] || strlen(token) > 64 || strpbrk(token, " \r\n"))
		return -EINVAL;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g->probe_path);
	g->ping_bev = bufferevent_socket_new(g->base, -1, BEV_OPT_CLOSE_ON_FREE);
	g->ping_timer = evtimer_new(g->base, on_ping_timeout, g);
	if (!g->ping_bev || !g->ping_timer)
		goto fail;
	bufferevent_setcb(g->ping_bev, on_ping_read, NULL, on_ping_event, g);
	if (bufferevent_socket_connect(g->ping_bev, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	bufferevent_enable(g->ping_bev, EV_READ);
	snprintf(g->ping_expect, sizeof(g->ping_expect), "PONG %s", token);
	bufferevent_write(g->ping_bev, "PING ", 5);
	bufferevent_write(g->ping_bev, token, strlen(token));
	bufferevent_write(g->ping_bev, "\n", 1);
	g->ping_cb = cb;
	g->ping_arg = arg;
	set_timer(g->ping_timer, timeout_ms);
	return 0;
fail:
	if (g->ping_bev)
		bufferevent_free(g->ping_bev);
	if (g->ping_timer)
		event_free(g->ping_timer);
	g->ping_bev = NULL;
	g->ping_timer = NULL;
	return -ECONNREFUSED;
}

/* --- teardown --- */

static void guest_free(struct lnch_guest *g)
{
	probe_close(g);
	if (g->t_start)
		event_free(g->t_start);
	if (g->t_poll)
		event_free(g->t_poll);
	if (g->t_stop)
		event_free(g->t_stop);
	if (g->t_defer)
		event_free(g->t_defer);
	if (g->ping_bev)
		bufferevent_free(g->ping_bev);
	if (g->ping_timer)
		event_free(g->ping_timer);
	if (g->restore_fd >= 0)
		close(g->restore_fd);
	qmp_client_destroy(g->qmp);
	job_destroy(g->qemu_job);
	job_destroy(g->img_job);
	free(g->qemu);
	free(g->qemu_img);
	free(g->backing);
	free(g->ram_file);
	free(g->state_file);
	free(g->marker);
	free((char *)g->profile.kernel);
	free((char *)g->profile.initrd);
	free((char *)g->profile.append);
	free((char *)g->profile.machine);
	free(g);
}

void lnch_guest_detach(struct lnch_guest *g)
{
	if (!g)
		return;
	g->step = S_GONE; /* leave QEMU, its overlay and sockets alone */
	g->cbs.state = NULL;
	if (g->busy) {
		g->doomed = true;
		return;
	}
	guest_free(g);
}

void lnch_guest_destroy(struct lnch_guest *g)
{
	if (!g)
		return;
	if (g->step != S_GONE) {
		/* Still running: kill without waiting (we are going away), then clean. */
		g->cbs.state = NULL;
		if (g->qemu_job)
			job_signal(g->qemu_job, SIGKILL);
		if (g->img_job)
			job_signal(g->img_job, SIGKILL);
		g->step = S_STOPPING;
		set_end(g, LNCH_END_KILLED, "destroyed while running");
		finish(g);
	}
	if (g->busy) {
		g->doomed = true;
		return;
	}
	guest_free(g);
}

const char *lnch_guest_id(const struct lnch_guest *g)
{
	return g->id;
}

pid_t lnch_guest_pid(const struct lnch_guest *g)
{
	return g->pid;
}

enum lnch_state lnch_guest_state(const struct lnch_guest *g)
{
	switch (g->step) {
	case S_READY:
		return LNCH_READY;
	case S_STOPPING:
		return LNCH_STOPPING;
	case S_GONE:
		return LNCH_STOPPED;
	default:
		return LNCH_STARTING;
	}
}

const char *lnch_guest_qmp_path(const struct lnch_guest *g)
{
	return g->qmp_path;
}

unsigned lnch_guest_host_port(const struct lnch_guest *g)
{
	return g->profile.guest_port ? g->opts.host_port : 0;
}

/* Bind 127.0.0.1:PORT (0: any) and let it go; the port bound, or a negative errno. */
static int try_port(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int r = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		r = -errno;
	close(fd);
	return r < 0 ? r : ntohs(sa.sin_port);
}

/*
 * A free port on 127.0.0.1 for a guest's forward: from the configured range
 * (one firewall rule keeps other local users out of it: docs/images.md),
 * round robin so that a port is not reused at once, or the kernel's pick.
 * We let it go and QEMU binds it a moment later; another process could take
 * it in between, and QEMU then fails to start and says so (start failed).
 */
static int free_port(const struct lnch_config *cfg, unsigned *out)
{
	static unsigned next;
	if (!cfg->port_lo) {
		int p = try_port(0);
		*out = p > 0 ? (unsigned)p : 0;
		return p < 0 ? p : 0;
	}
	unsigned n = cfg->port_hi - cfg->port_lo + 1;
	for (unsigned i = 0; i < n; i++) {
		unsigned port = cfg->port_lo + (next + i) % n;
		if (try_port(port) > 0) {
			next = (next + i + 1) % n;
			*out = port;
			return 0;
		}
	}
	return -EADDRINUSE;
}

const char *lnch_guest_vnc_path(const struct lnch_guest *g)
{
	return g->vnc_path;
}

const char *lnch_guest_overlay_path(const struct lnch_guest *g)
{
	return g->overlay;
}

const char *lnch_guest_serial_path(const struct lnch_guest *g)
{
	return g->serial_path;
}

const char *lnch_guest_probe_path(const struct lnch_guest *g)
{
	return g->probe_path;
}

struct qmp_client *lnch_guest_qmp(struct lnch_guest *g)
{
	return g->qmp_ready ? g->qmp : NULL;
}

void lnch_fingerprint(const struct lnch_config *cfg, const struct lnch_profile *profile,
		      char out[17])
{
	struct lnch_argv_opts o = {
	    .qemu = cfg->qemu, .accel = cfg->accel, .sandbox = cfg->sandbox, .name = "ID"};
	struct lnch_paths p = {.overlay = "OVERLAY",
			       .qmp = "QMP",
			       .vnc = "VNC",
			       .serial_log = "SERIAL",
			       .probe = "PROBE",
			       .ram_file = "RAM",
			       .incoming = true,
			       .host_port = profile->guest_port ? 1 : 0};
	struct lnch_profile prof = *profile;
	prof.disk = "/BACKING"; /* the clone's backing is the template disk */
	struct lnch_argv a;
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */
	if (lnch_argv_build(&o, &prof, &p, &a, NULL, 0) == 0) {
		for (size_t i = 0; i < a.n; i++)
			for (const char *c = a.v[i];; c++) {
				h = (h ^ (unsigned char)*c) * 1099511628211ULL;
				if (!*c)
					break;
			}
		lnch_argv_free(&a);
	}
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}
