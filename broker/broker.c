/*
 * Sessions and their state machine. Owns the quota ledger, the launcher
 * guests and the session rows in sqlite. Runs on the loop: guest events,
 * API calls and a one-second housekeeping tick drive it. Never blocks
 * beyond short sqlite statements.
 */
#include "nestor-config.h"
#include "brk-private.h"
#include "image.h"
#include "qmp_client.h"
#include "log.h"
#include "template.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define TICK_MS 1000
#define ENDED_KEEP 50 /* ended sessions kept in memory for late pollers */

static void start_guest(struct brk *b, struct brk_session *s);
static void apply_pressure(struct brk *b);
static void set_state(struct brk *b, struct brk_session *s, enum brk_state st);

static const char *const state_names[] = {"queued",	  "starting", "ready", "connected",
					  "disconnected", "ending",   "ended"};

const char *brk_state_name(enum brk_state st)
{
	return (unsigned)st < ARRAY_LEN(state_names) ? state_names[st] : "?";
}

int brk_state_parse(const char *name, enum brk_state *out)
{
	for (unsigned i = 0; i < ARRAY_LEN(state_names); i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum brk_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

static bool live(const struct brk_session *s)
{
	return s->state != BRK_ENDED;
}

static unsigned image_timeout(unsigned per_image, unsigned dflt)
{
	return per_image ? per_image : dflt;
}

/* Write the session's row; what cannot be written now is written by the tick. */
static void save(struct brk *b, struct brk_session *s)
{
	snprintf(s->rec.state, sizeof(s->rec.state), "%s", brk_state_name(s->state));
	snprintf(s->rec.accel, sizeof(s->rec.accel), "%s",
		 s->guest || s->rec.pid ? accel_name(s->accel) : "");
	int r = store_session_save(b->store, &s->rec);
	if (r < 0 && !s->dirty)
		log_warn("session=%s cannot be saved yet (%s): kept, written later", s->rec.id,
			 strerror(-r));
	s->dirty = r < 0;
}

static void watch_unlink(struct brk_watch *w)
{
	if (!w->prevp)
		return;
	*w->prevp = w->next;
	if (w->next)
		w->next->prevp = w->prevp;
	w->prevp = NULL;
	w->next = NULL;
}

static void notify(struct brk_session *s)
{
	while (s->watchers) {
		struct brk_watch *w = s->watchers;
		watch_unlink(w);
		w->cb(s, s->state, w->arg);
		free(w);
	}
}

static void set_state(struct brk *b, struct brk_session *s, enum brk_state st)
{
	if (s->state == st)
		return;
	log_info("session=%s user=%s %s -> %s", s->rec.id, s->rec.user, brk_state_name(s->state),
		 brk_state_name(st));
	s->state = st;
	s->since_ms = util_now_ms();
	save(b, s);
	notify(s);
}

/* --- guests --- */

static int ready_spec(const char *spec, struct lnch_profile *p)
{
	if (strncmp(spec, "serial:", 7) == 0 && spec[7]) {
		p->ready = LNCH_READY_SERIAL;
		p->ready_marker = spec + 7;
	} else if (strncmp(spec, "tcp:", 4) == 0) {
		char *end;
		unsigned long port = strtoul(spec + 4, &end, 10);
		if (*end || port == 0 || port > 65535)
			return -EINVAL;
		p->ready = LNCH_READY_TCP;
		p->guest_port = (unsigned)port;
		p->net = LNCH_NET_RESTRICTED;
	} else if (strcmp(spec, "running") == 0) {
		p->ready = LNCH_READY_RUNNING;
	} else {
		return -EINVAL;
	}
	return 0;
}

void brk_profile_of(const struct db_image *img, struct lnch_profile *p)
{
	memset(p, 0, sizeof(*p));
	p->machine = img->machine;
	p->memory_mb = img->memory_mb;
	p->cpus = 1;
	p->disk = img->base;
	p->kernel = img->kernel[0] ? img->kernel : NULL;
	p->initrd = img->initrd[0] ? img->initrd : NULL;
	p->append = img->append[0] ? img->append : NULL;
	p->vnc = true;
	p->net = LNCH_NET_NONE;
	p->serial_probe = true;
	if (ready_spec(img->ready, p) < 0) {
		p->ready = LNCH_READY_RUNNING;
	}
	if (!strcmp(img->backend, "rdp")) {
		/* The guest's RDP server, reached only through 127.0.0.1:<picked>. */
		p->net = LNCH_NET_RESTRICTED;
		p->guest_port = img->rdp_port ? img->rdp_port : 3389;
		p->ready = LNCH_READY_RDP;
	}
}

static void end_session(struct brk *b, struct brk_session *s, const char *reason)
{
	if (s->state == BRK_QUEUED)
		quota_cancel(&b->quota, s->qid);
	if (reason && !s->rec.end_reason[0])
		snprintf(s->rec.end_reason, sizeof(s->rec.end_reason), "%s", reason);
	s->rec.ended = util_wall_s();
	s->rec.pid = 0;
	if (s->admitted)
		quota_ended(&b->quota, s->rec.user, s->rec.image, s->rec.memory_mb,
			    s->counted_starting, util_now_ms());
	s->admitted = s->counted_starting = false;
	store_audit_log(b->store, "session-end", s->rec.user, s->rec.client, s->rec.id, s->rec.end_reason);
	set_state(b, s, BRK_ENDED);
}

/*
 * The guest's run directory and sockets are private (0700/0600). With an
 * api_group, the gateway (a member) may reach the VNC socket, nothing else.
 */
static void share_screen(struct brk *b, struct brk_session *s)
{
	/* an rdp guest is shown through its own server: its console stays private */
	if (!b->api_gid || !s->guest || !strcmp(s->img.backend, "rdp"))
		return;
	char dir[BRK_PATH_MAX + 40];
	snprintf(dir, sizeof(dir), "%.4000s/%s", b->vm_dir, s->rec.id);
	const char *vnc = lnch_guest_vnc_path(s->guest);
	if (chown(dir, (uid_t)-1, b->api_gid) < 0 || chmod(dir, 0710) < 0 ||
	    chown(vnc, (uid_t)-1, b->api_gid) < 0 || chmod(vnc, 0660) < 0)
		log_warn("session=%s cannot share the screen socket with group %s: %s", s->rec.id,
			 b->cfg.api_group, strerror(errno));
}

static void on_guest_spawned(struct lnch_guest *g, pid_t pid, void *arg)
{
	struct brk_session *s = arg;
	s->rec.pid = pid;
	/* Persist at once: a broker crash from here on must find this guest. */
	save(s->b, s);
}

static void on_guest_state(struct lnch_guest *g, enum lnch_state st, enum lnch_end why,
			   const char *detail, void *arg)
{
	struct brk_session *s = arg;
	struct brk *b = s->b;
	switch (st) {
	case LNCH_STARTING:
	case LNCH_STOPPING:
		break;
	case LNCH_READY:
		if (s->state == BRK_STARTING) {
			accel_guest_ready(b, s->accel);
			share_screen(b, s);
			int64_t took = util_now_ms() - s->start_ms;
			if (s->counted_starting)
				quota_started(&b->quota, took);
			s->counted_starting = false;
			s->rec.ready = util_wall_s();
			s->activity_ms = util_now_ms();
			set_state(b, s, BRK_READY);
			store_audit_log(b->store, "session-ready", s->rec.user, s->rec.client, s->rec.id,
				 s->rec.start_path);
			brk_pump(b);
		} else if (s->state == BRK_ENDING) {
			lnch_guest_stop(g, (int)b->cfg.timeouts.stop_grace * 1000);
		}
		break;
	case LNCH_STOPPED: {
		char reason[300], who[64];
		s->guest = NULL;
		lnch_guest_destroy(g);
		snprintf(who, sizeof(who), "session=%s", s->rec.id);
		if (s->state == BRK_STARTING &&
		    (s->retry ||
		     (why == LNCH_END_START_TIMEOUT && accel_start_timed_out(b, s->accel, who)))) {
			/* the accelerator fell back: the same admission starts again at once */
			s->retry = false;
			log_info("session=%s starting again under %s", s->rec.id,
				 accel_name(b->acc.accel));
			store_audit_log(b->store, "session-restart", s->rec.user, s->rec.client, s->rec.id,
				 accel_name(b->acc.accel));
			start_guest(b, s);
			break;
		}
		if (s->state == BRK_ENDING)
			snprintf(reason, sizeof(reason), "%s", s->reason);
		else if (why == LNCH_END_CRASHED || why == LNCH_END_LOST)
			snprintf(reason, sizeof(reason), "lost: the guest stopped unexpectedly%s%s",
				 detail && *detail ? ": " : "", detail ? detail : "");
		else
			snprintf(reason, sizeof(reason), "%s%s%s", lnch_end_name(why),
				 detail && *detail ? ": " : "", detail ? detail : "");
		end_session(b, s, reason);
		brk_pump(b);
		brk_check_stopped(b);
		break;
	}
	}
}

static const struct lnch_guest_cbs guest_cbs = {
    .state = on_guest_state,
    .spawned = on_guest_spawned,
};

static void on_handout(struct lnch_guest *g, int err, void *arg)
{
	struct brk_session *s = arg;
	if (s->state != BRK_STARTING)
		return;
	if (err) {
		brk_session_end(s->b, s, "the warm guest could not be resumed");
		return;
	}
	on_guest_state(g, LNCH_READY, LNCH_END_NONE, "", s);
}

static void start_guest(struct brk *b, struct brk_session *s)
{
	struct lnch_profile p;
	brk_profile_of(&s->img, &p);
	struct lnch_config lc = b->lcfg;
	lc.start_timeout_ms = accel_start_timeout_ms(
	    b, (int)image_timeout(s->img.start_timeout, b->cfg.timeouts.start) * 1000);
	char err[512];
	s->start_ms = util_now_ms();
	s->admitted = s->counted_starting = true;
	s->rec.started = util_wall_s();
	s->accel = b->acc.accel;
	s->rec.pid = 0;
	set_state(b, s, BRK_STARTING);

	/* A full disk would fail the overlay (or the guest, later): refuse plainly. */
	struct statvfs vfs;
	if (b->cfg.min_free_mb && statvfs(b->cfg.overlay_dir, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < (uint64_t)b->cfg.min_free_mb << 20) {
		snprintf(
		    err, sizeof(err),
		    "no disk space for the session: %llu MiB free for guest disks, %u MiB needed",
		    (unsigned long long)((uint64_t)vfs.f_bavail * vfs.f_frsize >> 20),
		    b->cfg.min_free_mb);
		log_err("session=%s %s (%s)", s->rec.id, err, b->cfg.overlay_dir);
		store_audit_log(b->store, "session-refused", s->rec.user, s->rec.client, s->rec.id, err);
		pool_discard(b, s->handout); /* the pool stops it and frees it */
		s->handout = NULL;
		end_session(b, s, err);
		return;
	}

	/* A modified base would corrupt every clone: refuse, naming the image. */
	char why[600];
	if (s->img.size &&
	    img_verify_unchanged(s->img.base, s->img.size, s->img.mtime_ns, why, sizeof(why)) < 0) {
		snprintf(err, sizeof(err), "image %s: %.400s; re-register it", s->img.name, why);
		log_err("session=%s %s", s->rec.id, err);
		store_audit_log(b->store, "image-modified", s->rec.user, s->rec.client, s->rec.id, err);
		pool_discard(b, s->handout); /* the pool stops it and frees it */
		s->handout = NULL;
		end_session(b, s, err);
		return;
	}

	if (s->handout) {
		/* Fastest: a restored, paused clone that only needs "cont". */
		struct warm *w = s->handout;
		s->handout = NULL;
		s->guest = w->guest;
		s->accel = w->accel;
		snprintf(s->rec.template_dir, sizeof(s->rec.template_dir), "%s", w->template_dir);
		pool_release(w);
		lnch_guest_set_cbs(s->guest, &guest_cbs, s);
		snprintf(s->rec.start_path, sizeof(s->rec.start_path), "warm");
		s->rec.pid = lnch_guest_pid(s->guest);
		if (lnch_guest_resume(s->guest, on_handout, s) < 0) {
			lnch_guest_stop(s->guest, 0);
			brk_session_end(b, s, "the warm guest could not be resumed");
			return;
		}
	} else {
		struct lnch_start_opts o = {0};
		char tdir[BRK_PATH_MAX], paths[3][4200];
		if (pool_template_for(b, &s->img, tdir, sizeof(tdir))) {
			img_template_clone_opts(tdir, &o, paths);
			snprintf(s->rec.template_dir, sizeof(s->rec.template_dir), "%s", tdir);
			snprintf(s->rec.start_path, sizeof(s->rec.start_path), "template");
		} else {
			snprintf(s->rec.start_path, sizeof(s->rec.start_path), "cold");
		}
		s->guest = lnch_guest_start(b->base, &lc, s->rec.id, &p, &o, &guest_cbs, s, err,
					    sizeof(err));
	}
	if (!s->guest) {
		log_err("session=%s cannot start: %s", s->rec.id, err);
		end_session(b, s, err);
		return;
	}
	s->rec.rdp_port = lnch_guest_host_port(s->guest);
	snprintf(s->rec.qmp, sizeof(s->rec.qmp), "%s", lnch_guest_qmp_path(s->guest));
	snprintf(s->rec.vnc, sizeof(s->rec.vnc), "%s", lnch_guest_vnc_path(s->guest));
	snprintf(s->rec.overlay, sizeof(s->rec.overlay), "%s", lnch_guest_overlay_path(s->guest));
	save(b, s);
	store_audit_log(b->store, "session-start", s->rec.user, s->rec.client, s->rec.id, s->rec.start_path);
}

static struct brk_session *by_qid(struct brk *b, uint64_t qid)
{
	for (struct brk_session *s = b->sessions; s; s = s->next)
		if (s->qid == qid && s->state == BRK_QUEUED)
			return s;
	return NULL;
}

/* Guests may start: the accelerator and the QEMU version are known. */
static bool host_ready(const struct brk *b)
{
	return b->accel_ready && b->version_asked;
}

/* Start whatever the ledger admits now; expire what waited too long. */
void brk_pump(struct brk *b)
{
	if (!host_ready(b) || b->stopping)
		return;
	event_del(b->kick);
	int64_t now = util_now_ms();
	struct quota_req r;
	while (quota_expired(&b->quota, now, &r)) {
		struct brk_session *s = by_qid(b, r.id);
		if (s)
			end_session(b, s, "waited too long in the queue");
	}
	for (;;) {
		while (quota_next(&b->quota, now, &r)) {
			struct brk_session *s = by_qid(b, r.id);
			if (s)
				start_guest(b, s);
			else
				quota_release(&b->quota, r.user, r.image, r.memory_mb, true);
		}
		/* Users first: warm guests make room for people who wait. */
		if (!b->quota.n_queue || !pool_evict(b))
			break;
	}
	pool_run_tjobs(b);
	pool_refill(b);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	brk_pump(arg);
}

void brk_kick(struct brk *b)
{
	if (b->kick && !event_pending(b->kick, EV_TIMEOUT, NULL))
		event_active(b->kick, EV_TIMEOUT, 0);
}

/*
 * The accelerator fell back from OLD: what is still starting under it starts
 * again (sessions keep their admission), warm guests and template builds of
 * OLD make way. Caps that depend on the accelerator follow.
 */
void brk_accel_changed(struct brk *b, enum lnch_accel old)
{
	if (b->acc.accel == LNCH_ACCEL_KVM)
		return; /* what runs under TCG runs on: only a fallback moves guests */
	for (struct brk_session *s = b->sessions; s; s = s->next) {
		if (s->state == BRK_STARTING && s->guest && s->accel == old && !s->retry) {
			s->retry = true;
			lnch_guest_stop(s->guest, 0);
		}
	}
	pool_accel_changed(b, old);
}

/* --- sessions --- */

static struct brk_session *session_new(struct brk *b)
{
	struct brk_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->b = b;
	s->qid = ++b->next_qid;
	s->created_ms = s->since_ms = s->activity_ms = util_now_ms();
	s->next = b->sessions;
	b->sessions = s;
	return s;
}

static void session_free(struct brk_session *s)
{
	while (s->watchers) {
		struct brk_watch *w = s->watchers;
		watch_unlink(w);
		w->cb(s, BRK_ENDED, w->arg);
		free(w);
	}
	lnch_guest_destroy(s->guest);
	free(s);
}

/* Keep memory bounded: drop the oldest ended sessions beyond ENDED_KEEP. */
static void reap_ended(struct brk *b)
{
	unsigned n = 0;
	for (struct brk_session **pp = &b->sessions; *pp;) {
		struct brk_session *s = *pp;
		if (s->state == BRK_ENDED && !s->dirty && ++n > ENDED_KEEP) {
			*pp = s->next;
			session_free(s);
			continue;
		}
		pp = &s->next;
	}
}

struct brk_session *brk_session_find(struct brk *b, const char *id)
{
	for (struct brk_session *s = b->sessions; s; s = s->next)
		if (strcmp(s->rec.id, id) == 0)
			return s;
	return NULL;
}

enum brk_state brk_session_state(const struct brk_session *s)
{
	return s->state;
}

const char *brk_session_id(const struct brk_session *s)
{
	return s->rec.id;
}

const char *brk_session_user(const struct brk_session *s)
{
	return s->rec.user;
}

int brk_connect(struct brk *b, const char *user, const char *app, const char *client,
		struct brk_session **out, char *err, size_t errlen)
{
	if (b->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	for (struct brk_session *s = b->sessions; s; s = s->next) {
		if (live(s) && s->state != BRK_ENDING && strcmp(s->rec.user, user) == 0 &&
		    strcmp(s->rec.app, app) == 0) {
			log_info("session=%s user=%s reconnect", s->rec.id, user);
			if (client && *client)
				snprintf(s->rec.client, sizeof(s->rec.client), "%s", client);
			*out = s;
			return 0;
		}
	}
	struct db_app a;
	if (store_app_get(b->store, app, &a) < 0) {
		snprintf(err, errlen, "unknown app '%s'", app);
		return -ENOENT;
	}
	struct db_image img;
	if (store_image_get(b->store, a.image, &img) < 0) {
		snprintf(err, errlen, "app '%s' uses image '%s', which is not registered", app,
			 a.image);
		return -ENOENT;
	}
	struct brk_session *s = session_new(b);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	char id[17];
	util_random_hex(id, 8);
	/* A warm guest of this image: its capacity is freed for this request. */
	s->handout = b->quota.n_queue == 0 ? pool_take(b, img.name) : NULL;
	if (s->handout)
		memcpy(id, s->handout->id, sizeof(id)); /* the session takes the guest's id */
	snprintf(s->rec.id, sizeof(s->rec.id), "%s", id);
	snprintf(s->rec.user, sizeof(s->rec.user), "%s", user);
	snprintf(s->rec.app, sizeof(s->rec.app), "%s", app);
	snprintf(s->rec.image, sizeof(s->rec.image), "%s", img.name);
	snprintf(s->rec.client, sizeof(s->rec.client), "%s", client ? client : "");
	snprintf(s->title, sizeof(s->title), "%s", a.title);
	s->rec.memory_mb = img.memory_mb;
	s->rec.created = util_wall_s();
	s->img = img;
	s->state = BRK_QUEUED;

	struct quota_req r = {.id = s->qid, .memory_mb = img.memory_mb};
	snprintf(r.user, sizeof(r.user), "%s", user);
	snprintf(r.image, sizeof(r.image), "%s", img.name);
	unsigned wait = image_timeout(img.queue_wait, b->cfg.timeouts.queue_wait);
	r.enqueued_ms = util_now_ms();
	r.deadline_ms = wait ? r.enqueued_ms + (int64_t)wait * 1000 : 0;
	quota_set_image_cap(&b->quota, img.name, img.max_sessions);
	/* Before the host can start guests, everyone waits in line, in arrival order. */
	bool ready = host_ready(b);
	struct quota_decision d = ready ? quota_request(&b->quota, &r, r.enqueued_ms)
					: quota_enqueue(&b->quota, &r, r.enqueued_ms);
	if (d.verdict != QUOTA_ADMIT && s->handout) {
		/* not admitted after all: the warm guest goes back, with its id */
		pool_put_back(b, s->handout);
		s->handout = NULL;
		util_random_hex(id, 8);
		snprintf(s->rec.id, sizeof(s->rec.id), "%s", id);
	}
	if (d.verdict == QUOTA_REFUSE) {
		snprintf(err, errlen, "%s", d.reason);
		store_audit_log(b->store, "session-refused", user, client, NULL, d.reason);
		b->sessions = s->next;
		free(s);
		return -EBUSY;
	}
	save(b, s);
	*out = s;
	if (d.verdict == QUOTA_ADMIT) {
		start_guest(b, s);
	} else {
		snprintf(s->reason, sizeof(s->reason), "%s",
			 !ready	    ? "nestord is starting up"
			 : d.reason ? d.reason
				    : "");
		log_info("session=%s user=%s queued at %u: %s", s->rec.id, user, d.position,
			 s->reason);
		store_audit_log(b->store, "session-queued", user, client, s->rec.id, s->reason);
	}
	return 0;
}

json_object *brk_session_json(struct brk *b, const struct brk_session *s)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(s->rec.id));
	json_object_object_add(o, "user", json_object_new_string(s->rec.user));
	json_object_object_add(o, "app", json_object_new_string(s->rec.app));
	json_object_object_add(o, "title", json_object_new_string(s->title));
	json_object_object_add(o, "image", json_object_new_string(s->rec.image));
	json_object_object_add(o, "state", json_object_new_string(brk_state_name(s->state)));
	json_object_object_add(o, "client", json_object_new_string(s->rec.client));
	json_object_object_add(o, "created", json_object_new_int64(s->rec.created));
	json_object_object_add(o, "memory_mb", json_object_new_int64(s->rec.memory_mb));
	int64_t now = util_now_ms();
	json_object_object_add(o, "elapsed_ms", json_object_new_int64(now - s->created_ms));
	if (s->state == BRK_QUEUED) {
		struct quota_decision d;
		if (quota_position(&b->quota, s->qid, now, &d) == 0) {
			json_object_object_add(o, "position", json_object_new_int64(d.position));
			json_object_object_add(o, "estimate_ms",
					       json_object_new_int64(d.estimate_ms));
			json_object_object_add(o, "reason", json_object_new_string(d.reason));
		}
	}
	if (s->rec.start_path[0])
		json_object_object_add(o, "start_path", json_object_new_string(s->rec.start_path));
	if (s->rec.pid)
		json_object_object_add(o, "pid", json_object_new_int64(s->rec.pid));
	json_object_object_add(
	    o, "backend",
	    json_object_new_string(!strcmp(s->img.backend, "rdp") ? "rdp" : "console"));
	if (s->state >= BRK_READY && s->state <= BRK_DISCONNECTED) {
		json_object_object_add(o, "vnc", json_object_new_string(s->rec.vnc));
		if (s->rec.rdp_port)
			json_object_object_add(o, "rdp_port",
					       json_object_new_int64(s->rec.rdp_port));
		json_object_object_add(o, "ready", json_object_new_int64(s->rec.ready));
	}
	if (s->state == BRK_ENDED)
		json_object_object_add(o, "end_reason", json_object_new_string(s->rec.end_reason));
	return o;
}

/*
 * How the gateway reaches an rdp guest: its forward, the security its server
 * speaks, the account to present and the channel policy. Only for a live
 * rdp session; NULL otherwise.
 */
json_object *brk_session_guest_json(struct brk *b, const struct brk_session *s)
{
	if (strcmp(s->img.backend, "rdp") || !s->rec.rdp_port || s->state < BRK_READY ||
	    s->state > BRK_DISCONNECTED)
		return NULL;
	const struct db_rdp_policy *r = &s->img.rdp;
	struct db_app app;
	if (store_app_get(b->store, s->rec.app, &app) < 0)
		app.command[0] = '\0';
	json_object *o = json_object_new_object();
	json_object_object_add(o, "host", json_object_new_string("127.0.0.1"));
	json_object_object_add(o, "port", json_object_new_int64(s->rec.rdp_port));
	json_object_object_add(o, "security",
			       json_object_new_string(r->security[0] ? r->security : "rdp"));
	json_object_object_add(o, "login",
			       json_object_new_string(r->login[0] ? r->login : "image"));
	json_object_object_add(o, "user", json_object_new_string(r->user));
	json_object_object_add(o, "domain", json_object_new_string(r->domain));
	json_object_object_add(o, "password", json_object_new_string(r->password));
	json_object_object_add(o, "clipboard", json_object_new_boolean(r->clipboard));
	json_object_object_add(o, "drive", json_object_new_boolean(r->drive));
	json_object_object_add(o, "remoteapp", json_object_new_boolean(r->remoteapp));
	json_object_object_add(o, "program", json_object_new_string(app.command));
	return o;
}

json_object *brk_sessions_json(struct brk *b)
{
	json_object *arr = json_object_new_array();
	/* oldest first: the list is newest first */
	unsigned n = 0;
	for (struct brk_session *s = b->sessions; s; s = s->next)
		n += live(s);
	struct brk_session **v = calloc(n ? n : 1, sizeof(*v));
	unsigned i = n;
	for (struct brk_session *s = b->sessions; s && v; s = s->next)
		if (live(s))
			v[--i] = s;
	for (i = 0; v && i < n; i++)
		json_object_array_add(arr, brk_session_json(b, v[i]));
	free(v);
	return arr;
}

json_object *brk_status_json(struct brk *b)
{
	json_object *o = json_object_new_object(), *caps = json_object_new_object(),
		    *use = json_object_new_object();
	json_object_object_add(caps, "max_sessions",
			       json_object_new_int64(b->quota.host.max_sessions));
	json_object_object_add(caps, "max_starting",
			       json_object_new_int64(b->quota.host.max_starting));
	json_object_object_add(caps, "max_memory_mb",
			       json_object_new_int64(b->quota.host.max_memory_mb));
	json_object_object_add(caps, "user_max_sessions",
			       json_object_new_int64(b->quota.user_default_max));
	unsigned v;
	json_object_object_add(caps, "max_starting_auto",
			       json_object_new_boolean(store_cap_get(b->store, "max_starting", &v) < 0 &&
						       b->cfg.max_starting < 0));
	json_object_object_add(use, "sessions", json_object_new_int64(b->quota.sessions));
	json_object_object_add(use, "starting", json_object_new_int64(b->quota.starting));
	json_object_object_add(use, "memory_mb", json_object_new_int64(b->quota.memory_mb));
	json_object_object_add(use, "queued", json_object_new_int64((int64_t)b->quota.n_queue));
	json_object_object_add(o, "caps", caps);
	json_object_object_add(o, "usage", use);
	json_object *acc = brk_accel_json(b), *name;
	json_object_object_get_ex(acc, "accel", &name);
	json_object_object_add(o, "accel", json_object_get(name));
	json_object_object_add(o, "accelerator", acc);
	json_object_object_add(o, "version", json_object_new_string(NESTOR_VERSION));
	return o;
}

int brk_session_attach(struct brk *b, struct brk_session *s, const char *gateway, char *err,
		       size_t errlen)
{
	if (s->state != BRK_READY && s->state != BRK_CONNECTED && s->state != BRK_DISCONNECTED) {
		snprintf(err, errlen, "session is %s, not ready", brk_state_name(s->state));
		return -EAGAIN;
	}
	s->activity_ms = util_now_ms();
	snprintf(s->lease_gw, sizeof(s->lease_gw), "%s", gateway ? gateway : "");
	s->lease_until = s->lease_gw[0] ? util_now_ms() + BRK_LEASE_MS : 0;
	s->lease_lapsed = false;
	set_state(b, s, BRK_CONNECTED);
	store_audit_log(b->store, "session-attach", s->rec.user, s->rec.client, s->rec.id, NULL);
	return 0;
}

int brk_session_detach(struct brk *b, struct brk_session *s)
{
	if (s->state != BRK_CONNECTED)
		return -EINVAL;
	s->lease_gw[0] = '\0';
	s->lease_until = 0;
	s->lease_lapsed = false;
	set_state(b, s, BRK_DISCONNECTED);
	store_audit_log(b->store, "session-detach", s->rec.user, s->rec.client, s->rec.id, NULL);
	return 0;
}

void brk_session_activity(struct brk *b, struct brk_session *s)
{
	s->activity_ms = util_now_ms();
}

unsigned brk_gateway_lease(struct brk *b, const char *gateway, const char *const *ids, size_t n)
{
	unsigned held = 0;
	int64_t until = util_now_ms() + BRK_LEASE_MS;
	for (size_t i = 0; i < n; i++) {
		struct brk_session *s = brk_session_find(b, ids[i]);
		bool lapsed = s && s->state == BRK_DISCONNECTED && s->lease_lapsed;
		if (!s || (s->state != BRK_CONNECTED && !lapsed))
			continue;
		if (s->lease_gw[0] && strcmp(s->lease_gw, gateway))
			continue; /* another gateway holds it now (the user moved) */
		snprintf(s->lease_gw, sizeof(s->lease_gw), "%s", gateway);
		s->lease_until = until;
		if (lapsed) {
			/* the gateway was only late (a stalled loop): the user never left */
			log_info("session=%s gateway %s renewed a lapsed lease: connected again",
				 s->rec.id, gateway);
			s->lease_lapsed = false;
			set_state(b, s, BRK_CONNECTED);
		}
		held++;
	}
	return held;
}

struct dump {
	brk_done_fn cb;
	void *arg;
	char path[BRK_PATH_MAX + 32];
};

static void on_dump(struct qmp_client *c, int err, json_object *res, const char *desc, void *arg)
{
	struct dump *d = arg;
	if (err)
		d->cb(err == -EREMOTEIO ? -EIO : err, desc ? desc : "screendump failed", d->arg);
	else
		d->cb(0, d->path, d->arg);
	free(d);
}

int brk_session_screendump(struct brk *b, struct brk_session *s, brk_done_fn cb, void *arg)
{
	struct qmp_client *c = s->guest ? lnch_guest_qmp(s->guest) : NULL;
	if (!c || s->state < BRK_READY || s->state > BRK_DISCONNECTED)
		return -EAGAIN;
	struct dump *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->cb = cb;
	d->arg = arg;
	snprintf(d->path, sizeof(d->path), "%.4000s/%s/screen.ppm", b->vm_dir, s->rec.id);
	json_object *a = json_object_new_object();
	json_object_object_add(a, "filename", json_object_new_string(d->path));
	int r = qmp_client_call(c, "screendump", a, -1, 10000, on_dump, d);
	if (r < 0)
		free(d);
	return r;
}

int brk_session_end(struct brk *b, struct brk_session *s, const char *reason)
{
	if (s->state == BRK_ENDED || s->state == BRK_ENDING)
		return 0;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	snprintf(s->rec.end_reason, sizeof(s->rec.end_reason), "%s", reason);
	if (s->state == BRK_QUEUED) {
		end_session(b, s, reason);
		brk_pump(b);
		return 0;
	}
	bool starting = s->state == BRK_STARTING;
	if (s->counted_starting) {
		/* The start slot is released now; the ledger still counts the session. */
		quota_started(&b->quota, -1);
		s->counted_starting = false;
	}
	set_state(b, s, BRK_ENDING);
	if (s->guest)
		lnch_guest_stop(s->guest, starting ? 0 : (int)b->cfg.timeouts.stop_grace * 1000);
	else
		end_session(b, s, reason);
	brk_pump(b);
	return 0;
}

struct brk_watch *brk_watch(struct brk_session *s, brk_watch_fn cb, void *arg)
{
	struct brk_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->s = s;
	w->cb = cb;
	w->arg = arg;
	w->next = s->watchers;
	if (w->next)
		w->next->prevp = &w->next;
	w->prevp = &s->watchers;
	s->watchers = w;
	return w;
}

void brk_unwatch(struct brk_watch *w)
{
	if (!w)
		return;
	watch_unlink(w);
	free(w);
}

/* During shutdown: report once no guest (session or warm) is left. */
void brk_check_stopped(struct brk *b)
{
	if (!b->stopping || !b->stop_done)
		return;
	for (struct brk_session *x = b->sessions; x; x = x->next)
		if (x->guest)
			return;
	if (pool_busy(b) || b->tjobs)
		return;
	if (b->stop_timer)
		event_del(b->stop_timer);
	void (*done)(void *) = b->stop_done;
	b->stop_done = NULL;
	done(b->stop_arg);
}

/* --- timeouts: one tick a second --- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct brk *b = arg;
	int64_t now = util_now_ms();
	for (struct brk_session *s = b->sessions; s; s = s->next) {
		const struct db_image *m = &s->img;
		const struct brk_timeouts *t = &b->cfg.timeouts;
		unsigned life = image_timeout(m->max_lifetime, t->max_lifetime);
		unsigned keep = image_timeout(m->keepalive, t->keepalive);
		unsigned idle = image_timeout(m->idle, t->idle);
		const char *why = NULL;
		if (!live(s) || s->state == BRK_ENDING || s->state == BRK_QUEUED)
			continue;
		if (life && now - s->created_ms >= (int64_t)life * 1000)
			why = "maximum session lifetime reached";
		else if ((s->state == BRK_DISCONNECTED || s->state == BRK_READY) && keep &&
			 now - s->since_ms >= (int64_t)keep * 1000)
			why = s->state == BRK_READY ? "nobody connected to the ready session"
						    : "disconnected for too long";
		else if (s->state == BRK_CONNECTED && idle &&
			 now - s->activity_ms >= (int64_t)idle * 1000)
			why = "idle for too long";
		if (why) {
			log_info("session=%s timeout: %s", s->rec.id, why);
			brk_session_end(b, s, why);
		} else if (s->state == BRK_CONNECTED && s->lease_until && now > s->lease_until) {
			log_warn("session=%s user=%s gateway %s stopped renewing its lease: "
				 "disconnected",
				 s->rec.id, s->rec.user,
				 s->lease_gw[0] ? s->lease_gw : "(unknown)");
			store_audit_log(b->store, "session-lease-expired", s->rec.user, s->rec.client,
				 s->rec.id, s->lease_gw);
			s->lease_until = 0;
			s->lease_lapsed = true; /* lease_gw kept: that gateway may take it back */
			set_state(b, s, BRK_DISCONNECTED);
		}
	}
	store_flush(b->store);
	for (struct brk_session *s = b->sessions; s; s = s->next)
		if (s->dirty)
			save(b, s);
	apply_pressure(b);
	brk_pump(b);
	reap_ended(b);
}

/* --- authentication --- */

/* A PAM check in flight; its caller may cancel it, the throttle and audit still count it. */
struct brk_authreq {
	struct brk_authreq *next, **prevp;
	struct brk *b;
	char user[65];
	char client[64];
	brk_auth_fn cb; /* NULL once cancelled */
	void *arg;
};

static void authreq_unlink(struct brk_authreq *a)
{
	*a->prevp = a->next;
	if (a->next)
		a->next->prevp = a->prevp;
}

void brk_auth_cancel(struct brk_authreq *a)
{
	if (a)
		a->cb = NULL;
}

static void on_auth(enum auth_result res, const char *reason, void *arg)
{
	struct brk_authreq *a = arg;
	struct brk *b = a->b;
	authreq_unlink(a);
	char ukey[80], ckey[80];
	snprintf(ukey, sizeof(ukey), "u:%s", a->user);
	snprintf(ckey, sizeof(ckey), "a:%s", a->client);
	int64_t now = util_wall_s();
	int status = 0;
	if (res == AUTH_OK) {
		throttle_ok(&b->thr, ukey);
		throttle_ok(&b->thr, ckey);
		store_audit_log(b->store, "login-ok", a->user, a->client, NULL, NULL);
	} else {
		unsigned lu = throttle_fail(&b->thr, ukey, now);
		unsigned lc = a->client[0] ? throttle_fail(&b->thr, ckey, now) : 0;
		store_audit_log(b->store, "login-failed", a->user, a->client, NULL, reason);
		if (lu || lc) {
			char d[96];
			snprintf(d, sizeof(d), "locked for %u s", lu > lc ? lu : lc);
			store_audit_log(b->store, "login-throttled", a->user, a->client, NULL, d);
		}
		status = res == AUTH_DENIED ? -EACCES : res == AUTH_ACCOUNT ? -EPERM : -EIO;
		log_info("login failed user=%s client=%s: %s", a->user, a->client, reason);
	}
	if (a->cb)
		a->cb(status, reason, a->arg);
	free(a);
}

int brk_authenticate(struct brk *b, const char *user, const char *password, const char *client,
		     brk_auth_fn cb, void *arg, struct brk_authreq **out)
{
	if (!util_name_valid(user))
		return -EINVAL;
	client = client ? client : "";
	char ukey[80], ckey[80];
	snprintf(ukey, sizeof(ukey), "u:%s", user);
	snprintf(ckey, sizeof(ckey), "a:%.64s", client);
	int64_t now = util_wall_s();
	if (throttle_locked(&b->thr, ukey, now) ||
	    (*client && throttle_locked(&b->thr, ckey, now))) {
		store_audit_log(b->store, "login-throttled", user, client, NULL, "refused while locked");
		return -EAGAIN;
	}
	struct brk_authreq *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->b = b;
	snprintf(a->user, sizeof(a->user), "%s", user);
	snprintf(a->client, sizeof(a->client), "%s", client);
	a->cb = cb;
	a->arg = arg;
	int r = auth_check(b->auth, user, password, on_auth, a);
	if (r < 0) {
		free(a);
		return r;
	}
	a->next = b->authreqs;
	if (a->next)
		a->next->prevp = &a->next;
	a->prevp = &b->authreqs;
	b->authreqs = a;
	*out = a;
	return 0;
}

/* --- caps, images, apps --- */

static unsigned auto_max_starting(const struct brk *b)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1)
		cores = 1;
	/* A TCG start keeps a core busy for seconds; KVM starts are cheap. */
	if (b->accel_ready && b->acc.accel == LNCH_ACCEL_KVM)
		return (unsigned)cores * 4;
	return (unsigned)cores;
}

void brk_caps_reload(struct brk *b)
{
	struct quota_caps c = {b->cfg.max_sessions, 0, b->cfg.max_memory_mb};
	unsigned v;
	if (store_cap_get(b->store, "max_sessions", &v) == 0)
		c.max_sessions = v;
	if (store_cap_get(b->store, "max_memory_mb", &v) == 0)
		c.max_memory_mb = v;
	if (store_cap_get(b->store, "max_starting", &v) == 0)
		c.max_starting = v;
	else if (b->cfg.max_starting >= 0)
		c.max_starting = (unsigned)b->cfg.max_starting;
	else
		c.max_starting = auto_max_starting(b);
	unsigned umax = b->cfg.user_max_sessions;
	if (store_cap_get(b->store, "user_max_sessions", &v) == 0)
		umax = v;
	b->caps = c;
	quota_set_host_caps(&b->quota, c);
	quota_set_user_default(&b->quota, umax);
}

/* Backpressure: fewer concurrent starts while the host's CPU is saturated. */
static void apply_pressure(struct brk *b)
{
	if (!b->cfg.pressure_high)
		return;
	char *text = NULL;
	double some = 0;
	if (util_read_file("/proc/pressure/cpu", 512, &text, NULL) == 0) {
		if (sscanf(text, "some avg10=%lf", &some) != 1)
			some = 0;
		free(text);
	}
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	struct quota_caps c = b->caps;
	c.max_starting =
	    quota_pressure_starting(b->caps.max_starting, cores > 0 ? (unsigned)cores : 1, some,
				    b->cfg.pressure_high, b->cfg.pressure_critical);
	if (c.max_starting != b->quota.host.max_starting)
		log_info("cpu pressure %.1f%%: max_starting %u -> %u", some,
			 b->quota.host.max_starting, c.max_starting);
	quota_set_host_caps(&b->quota, c);
}

int brk_caps_set(struct brk *b, const char *key, unsigned value)
{
	if (strcmp(key, "max_sessions") && strcmp(key, "max_starting") &&
	    strcmp(key, "max_memory_mb") && strcmp(key, "user_max_sessions"))
		return -EINVAL;
	int r = store_cap_set(b->store, key, value);
	if (r < 0)
		return r;
	char d[96];
	snprintf(d, sizeof(d), "%s=%u", key, value);
	store_audit_log(b->store, "caps-set", NULL, NULL, NULL, d);
	brk_caps_reload(b);
	brk_pump(b); /* raising a cap admits at once */
	return 0;
}

static int user_cap_apply(struct brk *b, const char *user)
{
	unsigned max;
	if (store_user_cap_get(b->store, user, &max) == 0)
		return quota_set_user_cap(&b->quota, user, true, max);
	return quota_set_user_cap(&b->quota, user, false, 0);
}

int brk_user_cap_set(struct brk *b, const char *user, bool has_cap, unsigned max)
{
	if (!util_name_valid(user))
		return -EINVAL;
	int r = has_cap ? store_user_cap_set(b->store, user, max) : store_user_cap_del(b->store, user);
	if (r < 0 && !(r == -ENOENT && !has_cap))
		return r;
	char d[96];
	if (has_cap)
		snprintf(d, sizeof(d), "max_sessions=%u", max);
	else
		snprintf(d, sizeof(d), "max_sessions=default");
	store_audit_log(b->store, "user-caps-set", user, NULL, NULL, d);
	r = user_cap_apply(b, user);
	brk_pump(b);
	return r;
}

int brk_image_remove(struct brk *b, const char *name, char *err, size_t errlen)
{
	for (struct brk_session *s = b->sessions; s; s = s->next) {
		if (live(s) && strcmp(s->rec.image, name) == 0) {
			snprintf(err, errlen, "image '%s' has live sessions", name);
			return -EBUSY;
		}
	}
	int r = store_image_del(b->store, name);
	if (r == -EBUSY)
		snprintf(err, errlen, "image '%s' is used by apps: remove them first", name);
	else if (r == -ENOENT)
		snprintf(err, errlen, "no image '%s'", name);
	else if (r == 0)
		store_audit_log(b->store, "image-remove", NULL, NULL, NULL, name);
	return r;
}

int brk_app_add(struct brk *b, const struct db_app *app, char *err, size_t errlen)
{
	struct db_image img;
	if (!util_name_valid(app->alias)) {
		snprintf(err, errlen, "invalid app alias (1-64 of A-Z a-z 0-9 . _ -)");
		return -EINVAL;
	}
	if (!app->title[0]) {
		snprintf(err, errlen, "an app needs a title");
		return -EINVAL;
	}
	if (store_image_get(b->store, app->image, &img) < 0) {
		snprintf(err, errlen, "no image '%s'", app->image);
		return -ENOENT;
	}
	int r = store_app_put(b->store, app);
	if (r == -EEXIST)
		snprintf(err, errlen, "app '%s' already exists", app->alias);
	else if (r == 0)
		store_audit_log(b->store, "app-add", NULL, NULL, NULL, app->alias);
	return r;
}

int brk_app_remove(struct brk *b, const char *alias, char *err, size_t errlen)
{
	int r = store_app_del(b->store, alias);
	if (r == -ENOENT)
		snprintf(err, errlen, "no app '%s'", alias);
	else if (r == 0)
		store_audit_log(b->store, "app-remove", NULL, NULL, NULL, alias);
	return r;
}

const struct lnch_config *brk_lcfg(const struct brk *b)
{
	return &b->lcfg;
}

struct store *brk_store(struct brk *b)
{
	return b->store;
}

const struct brk_config *brk_config(const struct brk *b)
{
	return &b->cfg;
}

/* --- start-up: reattach, sweep --- */

static void kill_orphan(const char *dir);

/*
 * A guest that was still being restored or resumed when nestord went away
 * cannot be trusted half-way: its QEMU and files go, and the session goes
 * back in line where it arrived (it only costs one more template start). A
 * cold boot is reattached and probed again instead: that may be minutes of
 * work.
 */
static bool restart_instead(const struct db_session *rec, enum brk_state st)
{
	return st == BRK_STARTING && (rec->pid <= 0 || strcmp(rec->start_path, "cold") != 0);
}

static void restore_one(const struct db_session *rec, void *arg)
{
	struct brk *b = arg;
	enum brk_state st;
	if (brk_state_parse(rec->state, &st) < 0)
		st = BRK_ENDING;
	bool restart = restart_instead(rec, st);
	struct brk_session *s = session_new(b);
	if (!s)
		return;
	s->rec = *rec;
	s->state = st;
	struct db_app a;
	if (store_app_get(b->store, rec->app, &a) == 0)
		snprintf(s->title, sizeof(s->title), "%s", a.title);
	if (store_image_get(b->store, rec->image, &s->img) < 0)
		snprintf(s->img.name, sizeof(s->img.name), "%s", rec->image);
	if (rec->created > 0)
		s->created_ms = util_now_ms() - (util_wall_s() - rec->created) * 1000;
	if (restart) {
		char dir[BRK_PATH_MAX + 40];
		snprintf(dir, sizeof(dir), "%.4000s/%s", b->vm_dir, rec->id);
		kill_orphan(dir);
		util_rmdir_flat(dir);
		if (rec->overlay[0])
			unlink(rec->overlay);
		log_info("session=%s user=%s was starting (%s): starting it again", rec->id,
			 rec->user, rec->start_path[0] ? rec->start_path : "not spawned yet");
		s->rec.pid = 0;
		s->rec.start_path[0] = s->rec.template_dir[0] = s->rec.overlay[0] = '\0';
		s->state = st = BRK_QUEUED;
		save(b, s);
	}

	if (st == BRK_QUEUED) {
		struct quota_req r = {
		    .id = s->qid, .memory_mb = rec->memory_mb, .enqueued_ms = s->created_ms};
		snprintf(r.user, sizeof(r.user), "%s", rec->user);
		snprintf(r.image, sizeof(r.image), "%s", rec->image);
		unsigned wait = image_timeout(s->img.queue_wait, b->cfg.timeouts.queue_wait);
		/* a session that had been admitted waits anew, in its old place */
		r.deadline_ms = !wait	  ? 0
				: restart ? util_now_ms() + (int64_t)wait * 1000
					  : s->created_ms + (int64_t)wait * 1000;
		quota_set_image_cap(&b->quota, rec->image, s->img.max_sessions);
		/* back in line in its arrival order; started once the host is ready */
		struct quota_decision d = quota_enqueue(&b->quota, &r, util_now_ms());
		if (d.verdict == QUOTA_REFUSE)
			end_session(b, s, d.reason);
		log_info("session=%s restored (queued)", s->rec.id);
		return;
	}
	quota_set_image_cap(&b->quota, rec->image, s->img.max_sessions);
	quota_restore(&b->quota, rec->user, rec->image, rec->memory_mb, st == BRK_STARTING);
	s->admitted = true;
	s->counted_starting = st == BRK_STARTING;
	s->start_ms = util_now_ms();
	s->accel = !strcmp(rec->accel, "kvm") ? LNCH_ACCEL_KVM : LNCH_ACCEL_TCG;
	if (st == BRK_CONNECTED) /* its gateway renews within a second, if it is still there */
		s->lease_until = util_now_ms() + 2 * BRK_LEASE_MS;
	char err[256];
	struct lnch_profile p;
	brk_profile_of(&s->img, &p);
	s->guest =
	    lnch_guest_attach(b->base, &b->lcfg, rec->id, rec->pid, st == BRK_STARTING ? &p : NULL,
			      &guest_cbs, s, err, sizeof(err));
	if (!s->guest) {
		log_err("session=%s cannot be reattached: %s", rec->id, err);
		end_session(b, s, "lost: its guest stopped while nestord was not running");
		return;
	}
	if (st == BRK_ENDING)
		snprintf(s->reason, sizeof(s->reason), "%s",
			 rec->end_reason[0] ? rec->end_reason : "ended");
	log_info("session=%s user=%s reattaching pid %d (%s)", rec->id, rec->user, (int)rec->pid,
		 rec->state);
}

/* Kill a QEMU left running from guest dir DIR (a warm guest or template build
 * of a crashed broker: nobody can reattach those). */
static void kill_orphan(const char *dir)
{
	char needle[BRK_PATH_MAX + 32];
	pid_t pids[16];
	snprintf(needle, sizeof(needle), "%.4000s/qmp.sock", dir);
	size_t n = util_procs_with_arg(NULL, needle, pids, 16);
	for (size_t i = 0; i < n && i < 16; i++) {
		log_warn("sweep: killing orphaned QEMU pid %d (%s)", (int)pids[i], dir);
		kill(pids[i], SIGKILL);
	}
}

/* Overlays and guest dirs that belong to no live session are leftovers of a crash. */
static void sweep(struct brk *b)
{
	const char *dirs[] = {b->cfg.overlay_dir, b->vm_dir};
	for (unsigned k = 0; k < 2; k++) {
		DIR *d = opendir(dirs[k]);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char id[64];
			snprintf(id, sizeof(id), "%.63s", e->d_name);
			char *dot = strchr(id, '.');
			if (dot)
				*dot = '\0';
			struct brk_session *s = brk_session_find(b, id);
			if ((s && live(s)) || pool_owns(b, id))
				continue;
			char path[BRK_PATH_MAX + 80];
			snprintf(path, sizeof(path), "%s/%s", dirs[k], e->d_name);
			log_info("sweep: removing leftover %s", path);
			if (k == 0) {
				unlink(path);
			} else {
				kill_orphan(path);
				util_rmdir_flat(path);
			}
		}
		closedir(d);
	}
}

static int resolve_user(const char *name, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) != 0 || !res) {
		snprintf(err, errlen, "qemu_user '%s' does not exist", name);
		return -ENOENT;
	}
	*uid = pw.pw_uid;
	*gid = pw.pw_gid;
	return 0;
}

struct brk *brk_create(struct event_base *base, const struct brk_config *cfg,
		       const struct brk_options *opts, char *err, size_t errlen)
{
	struct brk *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->base = base;
	b->cfg = *cfg;
	b->opts = *opts;
	quota_ledger_init(&b->quota);
	throttle_init(&b->thr, cfg->auth_max_failures, cfg->auth_window, cfg->auth_lockout);
	snprintf(b->vm_dir, sizeof(b->vm_dir), "%.4000s/vm", cfg->run_dir);
	snprintf(b->tpl_root, sizeof(b->tpl_root), "%.4000s/templates", cfg->state_dir);
	snprintf(b->image_dir, sizeof(b->image_dir), "%s", cfg->image_dir);
	const char *dirs[] = {cfg->state_dir,	cfg->run_dir, b->vm_dir,
			      cfg->overlay_dir, b->tpl_root,  b->image_dir};
	for (unsigned i = 0; i < ARRAY_LEN(dirs); i++) {
		int r = util_mkdir_p(dirs[i], 0700);
		if (r < 0) {
			snprintf(err, errlen, "cannot create %s: %s", dirs[i], strerror(-r));
			goto fail;
		}
	}
	b->lcfg = (struct lnch_config){
	    .qemu = b->cfg.qemu,
	    .qemu_img = b->cfg.qemu_img,
	    .run_dir = b->vm_dir,
	    .overlay_dir = b->cfg.overlay_dir,
	    .accel = LNCH_ACCEL_TCG,
	    .sandbox = cfg->sandbox,
	    .start_timeout_ms = (int)cfg->timeouts.start * 1000,
	    .stop_timeout_ms = (int)cfg->timeouts.stop_grace * 1000,
	};
	if (cfg->api_group[0]) {
		struct group *gr = getgrnam(cfg->api_group);
		if (!gr) {
			snprintf(err, errlen, "api_group '%s' does not exist", cfg->api_group);
			goto fail;
		}
		b->api_gid = gr->gr_gid;
		/* the gateway traverses run_dir/vm to reach the screens it may see */
		chmod(cfg->run_dir, 0711);
		chmod(b->vm_dir, 0711);
	}
	if (cfg->qemu_user[0]) {
		if (resolve_user(cfg->qemu_user, &b->lcfg.uid, &b->lcfg.gid, err, errlen) < 0)
			goto fail;
		/* QEMU must reach its run and overlay dirs, nothing else of ours. */
		chmod(cfg->run_dir, 0711);
		chmod(cfg->state_dir, 0711);
		if (chown(b->vm_dir, b->lcfg.uid, b->lcfg.gid) < 0 ||
		    chown(cfg->overlay_dir, b->lcfg.uid, b->lcfg.gid) < 0 ||
		    chown(b->tpl_root, b->lcfg.uid, b->lcfg.gid) < 0) {
			snprintf(err, errlen, "cannot hand guest dirs to %s: %s", cfg->qemu_user,
				 strerror(errno));
			goto fail;
		}
	}
	char dbpath[BRK_PATH_MAX + 16];
	snprintf(dbpath, sizeof(dbpath), "%s/nestor.db", cfg->state_dir);
	b->store = store_open(dbpath, err, errlen);
	if (!b->store)
		goto fail;
	b->auth = auth_create(base, cfg->pam_service, 2);
	if (!b->auth) {
		snprintf(err, errlen, "cannot start PAM workers");
		goto fail;
	}
	brk_caps_reload(b);
	/* warm guests and template builds are bounded by the host caps only */
	quota_set_user_cap(&b->quota, POOL_USER, true, 0);
	quota_set_user_cap(&b->quota, TEMPLATE_USER, true, 0);
	/* per-user overrides */
	json_object *uc = store_user_caps_json(b->store);
	for (size_t i = 0; i < json_object_array_length(uc); i++) {
		json_object *u;
		if (json_object_object_get_ex(json_object_array_get_idx(uc, i), "user", &u))
			user_cap_apply(b, json_object_get_string(u));
	}
	json_object_put(uc);

	b->kick = event_new(base, -1, 0, on_kick, b);
	b->tick = event_new(base, -1, EV_PERSIST, on_tick, b);
	struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
	if (!b->kick || !b->tick || event_add(b->tick, &tv) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	store_sessions_live(b->store, restore_one, b);
	pool_restore(b);
	sweep(b);
	pool_sweep_templates(b);
	pool_start_version_probe(b);
	accel_init(b);
	brk_caps_reload(b);
	log_info("caps: max_sessions=%u max_starting=%u max_memory_mb=%u user_max_sessions=%u",
		 b->quota.host.max_sessions, b->quota.host.max_starting,
		 b->quota.host.max_memory_mb, b->quota.user_default_max);
	return b;
fail:
	brk_destroy(b);
	return NULL;
}

/* Shutdown took longer than stop_grace allows: kill what is left. */
static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct brk *b = arg;
	log_warn("shutdown: guests still running after %u s: killing them",
		 b->cfg.timeouts.stop_grace + 5);
	for (struct brk_session *s = b->sessions; s; s = s->next) {
		if (!s->guest)
			continue;
		lnch_guest_destroy(s->guest); /* kills QEMU and removes its files */
		s->guest = NULL;
		end_session(b, s, s->reason[0] ? s->reason : "nestord shut down");
	}
	pool_kill_all(b);
	void (*done)(void *) = b->stop_done;
	b->stop_done = NULL;
	if (done)
		done(b->stop_arg);
}

void brk_shutdown(struct brk *b, void (*done)(void *arg), void *arg)
{
	if (b->stopping)
		return;
	b->stopping = true;
	b->stop_done = done;
	b->stop_arg = arg;
	accel_finish(b);
	/* warm guests are kept like sessions when guests are kept (their rows stay) */
	pool_stop_all(b, b->opts.keep_guests);
	/* builds stop now and run again at the next start (their rows stay) */
	pool_cancel_builds(b);
	b->stop_timer = evtimer_new(b->base, on_stop_timer, b);
	struct timeval tv = {(time_t)b->cfg.timeouts.stop_grace + 5, 0};
	if (b->stop_timer)
		evtimer_add(b->stop_timer, &tv);
	for (struct brk_session *s = b->sessions; s; s = s->next) {
		if (!live(s))
			continue;
		if (b->opts.keep_guests) {
			/* Rows stay as they are: the next nestord reattaches. */
			lnch_guest_detach(s->guest);
			s->guest = NULL;
			continue;
		}
		if (s->state == BRK_QUEUED) {
			end_session(b, s, "nestord shut down");
			continue;
		}
		brk_session_end(b, s, "nestord shut down");
	}
	brk_check_stopped(b);
}

void brk_destroy(struct brk *b)
{
	if (!b)
		return;
	/* guests still here (an exit without a full shutdown) stay for the next start */
	pool_stop_all(b, true);
	while (b->tjobs) {
		struct tjob *t = b->tjobs;
		b->tjobs = t->next;
		img_template_destroy(t->build); /* its QEMU is killed; the row stays: built again */
		while (t->waiters) {
			struct tjob_waiter *w = t->waiters;
			t->waiters = w->next;
			w->cb(-ESHUTDOWN, "nestord is shutting down", w->arg);
			free(w);
		}
		free(t);
	}
	/* rows still unwritten (the database was locked or full): one last, patient try */
	if (b->store) {
		store_patience(b->store, 5000);
		for (struct brk_session *s = b->sessions; s; s = s->next)
			if (s->dirty)
				save(b, s);
	}
	while (b->sessions) {
		struct brk_session *s = b->sessions;
		b->sessions = s->next;
		/* Guests still running here are detached, never killed behind sqlite's back. */
		lnch_guest_detach(s->guest);
		s->guest = NULL;
		session_free(s);
	}
	if (b->tick)
		event_free(b->tick);
	if (b->kick)
		event_free(b->kick);
	if (b->stop_timer)
		event_free(b->stop_timer);
	auth_destroy(b->auth); /* no callback runs after this */
	while (b->authreqs) {
		struct brk_authreq *a = b->authreqs;
		authreq_unlink(a);
		free(a);
	}
	accel_finish(b);
	store_close(b->store);
	quota_ledger_finish(&b->quota);
	free(b);
}
