/*
 * Sessions and their state machine (see sessions.h). Owns the session
 * objects, their guests and their rows. Never blocks beyond short store
 * calls.
 */
#include "session-private.h"
#include "admit.h"
#include "hostaccel.h"
#include "image.h"
#include "log.h"
#include "qmp_client.h"
#include "record.h"
#include "registry.h"
#include "store.h"
#include "templates.h"
#include "util.h"
#include "warm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define ENDED_KEEP 50		  /* ended sessions kept in memory for late pollers */
#define GRANT_TTL_MS (300 * 1000) /* a gateway's grant lapses unused this long */

static void start_guest(struct sessions *ss, struct brk_session *s);
static void grant_ensure(struct brk_session *s);

static unsigned image_timeout(unsigned per_image, unsigned dflt)
{
	return per_image ? per_image : dflt;
}

static void audit(struct sessions *ss, const struct brk_session *s, const char *kind,
		  const char *detail)
{
	store_audit_log(ss->h->store, kind, s->rec.user, s->rec.client, s->rec.id, detail);
}

/* Write the session's row; what cannot be written now is written by the tick. */
static void save(struct sessions *ss, struct brk_session *s)
{
	snprintf(s->rec.state, sizeof(s->rec.state), "%s", brk_state_name(s->state));
	snprintf(s->rec.accel, sizeof(s->rec.accel), "%s",
		 s->guest || s->rec.pid ? accel_name(s->accel) : "");
	int r = store_session_save(ss->h->store, &s->rec);
	if (r < 0 && !s->dirty)
		log_warn("session=%s cannot be saved yet (%s): kept, written later", s->rec.id,
			 strerror(-r));
	s->dirty = r < 0;
}

void sess_watch_unlink(struct brk_watch *w)
{
	if (!w->prevp)
		return;
	*w->prevp = w->next;
	if (w->next)
		w->next->prevp = w->prevp;
	w->prevp = NULL;
	w->next = NULL;
}

static void notify(struct brk_session *s, enum brk_state st)
{
	while (s->watchers) {
		struct brk_watch *w = s->watchers;
		sess_watch_unlink(w);
		w->cb(s, st, w->arg);
		free(w);
	}
}

static void set_state(struct sessions *ss, struct brk_session *s, enum brk_state st)
{
	if (s->state == st)
		return;
	log_info("session=%s user=%s image=%s %s -> %s", s->rec.id, s->rec.user, s->img.name,
		 brk_state_name(s->state), brk_state_name(st));
	s->state = st;
	s->since_ms = util_now_ms();
	save(ss, s);
	if (ss->h->session_changed)
		ss->h->session_changed(ss->h->session_changed_arg, &s->rec);
	notify(s, st);
}

static void end_session(struct sessions *ss, struct brk_session *s, const char *reason)
{
	if (s->state == BRK_QUEUED)
		admit_cancel(ss->h->adm, s->qid);
	if (reason && !s->rec.end_reason[0])
		snprintf(s->rec.end_reason, sizeof(s->rec.end_reason), "%s", reason);
	s->rec.ended = util_wall_s();
	s->rec.pid = 0;
	admit_end(ss->h->adm, &s->tk);
	if (s->state == BRK_STARTING)
		ss->h->met.start_failures[brk_path_of(s->rec.start_path)]++;
	ss->h->met.sessions_ended++;
	audit(ss, s, "session-end", s->rec.end_reason);
	set_state(ss, s, BRK_ENDED);
}

/* --- guests --- */

/*
 * The guest's run directory and sockets are private (0700/0600). With an
 * api_group, the gateway (a member) may reach the VNC socket, nothing else.
 */
static void share_screen(struct sessions *ss, struct brk_session *s)
{
	struct host *h = ss->h;
	/* an rdp guest is shown through its own server: its console stays private */
	if (!h->api_gid || !s->guest || !strcmp(s->img.backend, "rdp"))
		return;
	char dir[BRK_PATH_MAX + 40];
	snprintf(dir, sizeof(dir), "%.4000s/%s", h->vm_dir, s->rec.id);
	const char *vnc = h->lnch->vnc_path(s->guest);
	if (chown(dir, (uid_t)-1, h->api_gid) < 0 || chmod(dir, 0710) < 0 ||
	    chown(vnc, (uid_t)-1, h->api_gid) < 0 || chmod(vnc, 0660) < 0)
		log_warn("session=%s cannot share the screen socket with group %s: %s", s->rec.id,
			 h->cfg.api_group, strerror(errno));
}

static void on_guest_spawned(struct lnch_guest *g, pid_t pid, void *arg)
{
	struct brk_session *s = arg;
	s->rec.pid = pid;
	/* Persist at once: a broker crash from here on must find this guest. */
	save(s->ss, s);
}

static void guest_ready(struct sessions *ss, struct brk_session *s)
{
	struct host *h = ss->h;
	accel_guest_ready(h->acc, s->accel);
	share_screen(ss, s);
	int64_t took = util_now_ms() - s->start_ms;
	admit_started(h->adm, &s->tk, took);
	enum brk_path path = brk_path_of(s->rec.start_path);
	h->met.starts[path]++;
	prom_observe(&h->met.start_seconds[path], path == PATH_COLD ? &prom_slow : &prom_fast,
		     (double)took / 1000);
	s->rec.ready = util_wall_s();
	s->activity_ms = util_now_ms();
	set_state(ss, s, BRK_READY);
	audit(ss, s, "session-ready", s->rec.start_path);
	host_kick(h);
}

static void on_guest_state(struct lnch_guest *g, enum lnch_state st, enum lnch_end why,
			   const char *detail, void *arg)
{
	struct brk_session *s = arg;
	struct sessions *ss = s->ss;
	struct host *h = ss->h;
	switch (st) {
	case LNCH_STARTING:
	case LNCH_STOPPING:
		break;
	case LNCH_READY:
		if (s->state == BRK_STARTING)
			guest_ready(ss, s);
		else if (s->state == BRK_ENDING)
			h->lnch->stop(g, (int)h->cfg.timeouts.stop_grace * 1000);
		break;
	case LNCH_STOPPED: {
		char reason[300], who[64];
		s->guest = NULL;
		h->lnch->destroy(g);
		snprintf(who, sizeof(who), "session=%s", s->rec.id);
		if (s->state == BRK_STARTING &&
		    (s->retry || (why == LNCH_END_START_TIMEOUT &&
				  accel_start_timed_out(h->acc, s->accel, who)))) {
			/* the accelerator fell back: the same admission starts again at once */
			s->retry = false;
			log_info("session=%s starting again under %s", s->rec.id,
				 accel_name(h->lcfg.accel));
			audit(ss, s, "session-restart", accel_name(h->lcfg.accel));
			start_guest(ss, s);
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
		end_session(ss, s, reason);
		host_kick(h);
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
		sess_end(s->ss, s, "the warm guest could not be resumed");
		return;
	}
	guest_ready(s->ss, s);
}

/* Why S cannot start here now (a full disk, a changed base) into ERR; 0 if it can. */
static int start_blocked(struct sessions *ss, struct brk_session *s, char *err, size_t len)
{
	const struct brk_config *cfg = &ss->h->cfg;
	/* A full disk would fail the overlay (or the guest, later): refuse plainly. */
	struct statvfs vfs;
	if (cfg->min_free_mb && statvfs(cfg->overlay_dir, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < (uint64_t)cfg->min_free_mb << 20) {
		snprintf(err, len,
			 "no disk space for the session: %llu MiB free for guest disks, %u MiB "
			 "needed",
			 (unsigned long long)((uint64_t)vfs.f_bavail * vfs.f_frsize >> 20),
			 cfg->min_free_mb);
		log_err("session=%s %s (%s)", s->rec.id, err, cfg->overlay_dir);
		audit(ss, s, "session-refused", err);
		return -ENOSPC;
	}
	/* A modified base would corrupt every clone: refuse, naming the image. */
	char why[600];
	if (s->img.size &&
	    img_verify_unchanged(s->img.base, s->img.size, s->img.mtime_ns, why, sizeof(why)) < 0) {
		snprintf(err, len, "image %s: %.400s; re-register it", s->img.name, why);
		log_err("session=%s %s", s->rec.id, err);
		audit(ss, s, "image-modified", err);
		return -ESTALE;
	}
	return 0;
}

/* S holds its admission: start its guest (warm hand-out, template clone or cold boot). */
static void start_guest(struct sessions *ss, struct brk_session *s)
{
	struct host *h = ss->h;
	const struct brk_launcher *l = h->lnch;
	char err[512];
	s->start_ms = util_now_ms();
	if (s->state == BRK_QUEUED && !s->retry)
		prom_observe(&h->met.queue_seconds, &prom_slow,
			     (double)(s->start_ms - s->created_ms) / 1000);
	s->rec.started = util_wall_s();
	s->accel = h->lcfg.accel;
	s->rec.pid = 0;
	set_state(ss, s, BRK_STARTING);
	if (start_blocked(ss, s, err, sizeof(err)) < 0) {
		warm_discard(ss->wp, s->handout); /* the pool stops it and frees it */
		s->handout = NULL;
		end_session(ss, s, err);
		return;
	}
	if (s->handout) {
		/* Fastest: a restored, paused clone that only needs "cont". */
		s->guest = warm_guest(s->handout);
		s->accel = warm_accel(s->handout);
		snprintf(s->rec.template_dir, sizeof(s->rec.template_dir), "%s",
			 warm_template_dir(s->handout));
		l->set_cbs(s->guest, &guest_cbs, s);
		warm_hand_over(ss->wp, s->handout);
		s->handout = NULL;
		snprintf(s->rec.start_path, sizeof(s->rec.start_path), "warm");
		s->rec.pid = l->pid(s->guest);
		if (l->resume(s->guest, on_handout, s) < 0) {
			l->stop(s->guest, 0);
			sess_end(ss, s, "the warm guest could not be resumed");
			return;
		}
	} else {
		struct lnch_profile p;
		reg_profile_of(&s->img, &p);
		struct lnch_config lc = h->lcfg;
		lc.start_timeout_ms =
		    accel_start_timeout_ms(h->acc, host_start_timeout_ms(h, s->img.start_timeout));
		struct lnch_start_opts o = {0};
		char tdir[BRK_PATH_MAX], paths[3][4200];
		if (tpl_for(ss->tpl, &s->img, tdir, sizeof(tdir))) {
			l->tpl_clone_opts(tdir, &o, paths);
			snprintf(s->rec.template_dir, sizeof(s->rec.template_dir), "%s", tdir);
			snprintf(s->rec.start_path, sizeof(s->rec.start_path), "template");
		} else {
			snprintf(s->rec.start_path, sizeof(s->rec.start_path), "cold");
		}
		s->guest =
		    l->start(h->base, &lc, s->rec.id, &p, &o, &guest_cbs, s, err, sizeof(err));
	}
	if (!s->guest) {
		log_err("session=%s cannot start: %s", s->rec.id, err);
		end_session(ss, s, err);
		return;
	}
	s->rec.rdp_port = l->host_port(s->guest);
	snprintf(s->rec.qmp, sizeof(s->rec.qmp), "%s", l->qmp_path(s->guest));
	snprintf(s->rec.vnc, sizeof(s->rec.vnc), "%s", l->vnc_path(s->guest));
	snprintf(s->rec.overlay, sizeof(s->rec.overlay), "%s", l->overlay_path(s->guest));
	save(ss, s);
	audit(ss, s, "session-start", s->rec.start_path);
}

static struct brk_session *by_qid(struct sessions *ss, uint64_t qid)
{
	for (struct brk_session *s = ss->list; s; s = s->next)
		if (s->qid == qid && s->state == BRK_QUEUED)
			return s;
	return NULL;
}

void sess_pump(struct sessions *ss)
{
	struct admit *a = ss->h->adm;
	int64_t now = util_now_ms();
	uint64_t qid;
	while (admit_expired(a, now, &qid)) {
		struct brk_session *s = by_qid(ss, qid);
		if (s) {
			ss->h->met.queue_timeouts++;
			end_session(ss, s, "waited too long in the queue");
		}
	}
	while (admit_next(a, now, &qid)) {
		struct brk_session *s = by_qid(ss, qid);
		if (!s) {
			admit_drop_next(a);
			continue;
		}
		admit_hold_next(a, &s->tk);
		start_guest(ss, s);
	}
}

void sess_accel_changed(struct sessions *ss, enum lnch_accel old)
{
	for (struct brk_session *s = ss->list; s; s = s->next) {
		if (s->state == BRK_STARTING && s->guest && s->accel == old && !s->retry) {
			s->retry = true;
			ss->h->lnch->stop(s->guest, 0);
		}
	}
}

/* --- sessions --- */

static struct brk_session *session_new(struct sessions *ss)
{
	struct brk_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->ss = ss;
	s->qid = ++ss->next_qid;
	s->created_ms = s->since_ms = s->activity_ms = util_now_ms();
	s->next = ss->list;
	ss->list = s;
	return s;
}

static void session_free(struct sessions *ss, struct brk_session *s)
{
	notify(s, BRK_ENDED);
	ss->h->lnch->destroy(s->guest);
	explicit_bzero(s->img.rdp.password, sizeof(s->img.rdp.password));
	free(s);
}

/* Keep memory bounded: drop the oldest ended sessions beyond ENDED_KEEP. */
static void reap_ended(struct sessions *ss)
{
	unsigned n = 0;
	for (struct brk_session **pp = &ss->list; *pp;) {
		struct brk_session *s = *pp;
		if (s->state == BRK_ENDED && !s->dirty && ++n > ENDED_KEEP) {
			*pp = s->next;
			session_free(ss, s);
			continue;
		}
		pp = &s->next;
	}
}

struct brk_session *sess_find(struct sessions *ss, const char *id)
{
	for (struct brk_session *s = ss->list; s; s = s->next)
		if (strcmp(s->rec.id, id) == 0)
			return s;
	return NULL;
}

/* The deadline of a request arriving at NOW_MS for IMG (0: waits forever). */
static int64_t queue_deadline(const struct sessions *ss, const struct db_image *img, int64_t from)
{
	unsigned wait = image_timeout(img->queue_wait, ss->h->cfg.timeouts.queue_wait);
	return wait ? from + (int64_t)wait * 1000 : 0;
}

/* USER's live session of APP that a connect reconnects to (not one being ended), or NULL. */
static struct brk_session *reconnectable(struct sessions *ss, const char *user, const char *app)
{
	for (struct brk_session *s = ss->list; s; s = s->next)
		if (live(s) && s->state != BRK_ENDING && !strcmp(s->rec.user, user) &&
		    !strcmp(s->rec.app, app))
			return s;
	return NULL;
}

int sess_connect(struct sessions *ss, const char *user, const char *app, const char *client,
		 const char *fleet_id, bool host_ready, struct brk_session **out, char *err,
		 size_t errlen)
{
	struct host *h = ss->h;
	if (h->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	struct brk_session *again = reconnectable(ss, user, app);
	if (again) {
		log_info("session=%s user=%s reconnect", again->rec.id, user);
		if (client && *client)
			snprintf(again->rec.client, sizeof(again->rec.client), "%s", client);
		grant_ensure(again);
		*out = again;
		return 0;
	}
	struct db_app a;
	if (store_app_get(h->store, app, &a) < 0) {
		snprintf(err, errlen, "unknown app '%s'", app);
		return -ENOENT;
	}
	struct db_image img;
	if (store_image_get(h->store, a.image, &img) < 0) {
		snprintf(err, errlen, "app '%s' uses image '%s', which is not registered", app,
			 a.image);
		return -ENOENT;
	}
	struct brk_session *s = session_new(ss);
	if (!s) {
		explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* A warm guest of this image: its capacity is freed for this request. */
	s->handout = admit_queued(h->adm) == 0 ? warm_take(ss->wp, img.name) : NULL;
	if (s->handout)
		snprintf(s->rec.id, sizeof(s->rec.id), "%s",
			 warm_id(s->handout)); /* takes its id */
	else if (fleet_id) /* the same id everywhere, unless a warm guest's is taken */
		snprintf(s->rec.id, sizeof(s->rec.id), "%s", fleet_id);
	else
		util_random_hex(s->rec.id, 8);
	snprintf(s->rec.user, sizeof(s->rec.user), "%s", user);
	snprintf(s->rec.app, sizeof(s->rec.app), "%s", app);
	snprintf(s->rec.image, sizeof(s->rec.image), "%s", img.name);
	snprintf(s->rec.fleet_id, sizeof(s->rec.fleet_id), "%s", fleet_id ? fleet_id : "");
	snprintf(s->rec.client, sizeof(s->rec.client), "%s", client ? client : "");
	snprintf(s->title, sizeof(s->title), "%s", a.title);
	s->rec.memory_mb = img.memory_mb;
	s->rec.created = util_wall_s();
	s->img = img;
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	s->state = BRK_QUEUED;
	grant_ensure(s);
	admit_ticket_init(&s->tk, user, s->rec.image, s->rec.memory_mb);
	admit_image_cap(h->adm, s->img.name, s->img.max_sessions);
	int64_t now = util_now_ms();
	/* Before the host can start guests, everyone waits in line, in arrival order. */
	struct quota_decision d = admit_request(h->adm, &s->tk, s->qid,
						queue_deadline(ss, &s->img, now), host_ready, now);
	if (d.verdict != QUOTA_ADMIT && s->handout) {
		/* not admitted after all: the warm guest goes back, with its id */
		warm_put_back(ss->wp, s->handout);
		s->handout = NULL;
		if (fleet_id)
			snprintf(s->rec.id, sizeof(s->rec.id), "%s", fleet_id);
		else
			util_random_hex(s->rec.id, 8);
	}
	if (d.verdict == QUOTA_REFUSE) {
		h->met.refused++;
		snprintf(err, errlen, "%s", d.reason);
		store_audit_log(h->store, "session-refused", user, client, NULL, d.reason);
		ss->list = s->next;
		session_free(ss, s);
		return -EBUSY;
	}
	save(ss, s);
	*out = s;
	if (d.verdict == QUOTA_ADMIT) {
		start_guest(ss, s);
	} else {
		h->met.queued++;
		snprintf(s->reason, sizeof(s->reason), "%s",
			 !host_ready ? "nestord is starting up"
			 : d.reason  ? d.reason
				     : "");
		log_info("session=%s user=%s queued at %u: %s", s->rec.id, user, d.position,
			 s->reason);
		audit(ss, s, "session-queued", s->reason);
	}
	return 0;
}

int sess_attach(struct sessions *ss, struct brk_session *s, const char *gateway, char *err,
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
	set_state(ss, s, BRK_CONNECTED);
	audit(ss, s, "session-attach", NULL);
	return 0;
}

int sess_detach(struct sessions *ss, struct brk_session *s)
{
	if (s->state != BRK_CONNECTED)
		return -EINVAL;
	s->lease_gw[0] = '\0';
	s->lease_until = 0;
	s->lease_lapsed = false;
	set_state(ss, s, BRK_DISCONNECTED);
	audit(ss, s, "session-detach", NULL);
	return 0;
}

void sess_activity(struct brk_session *s)
{
	s->activity_ms = util_now_ms();
}

unsigned sess_lease(struct sessions *ss, const char *gateway, const char *const *ids, size_t n,
		    json_object *ending)
{
	unsigned held = 0;
	int64_t now = util_now_ms(), until = now + BRK_LEASE_MS;
	for (size_t i = 0; i < n; i++) {
		struct brk_session *s = sess_find(ss, ids[i]);
		bool lapsed = s && s->state == BRK_DISCONNECTED && s->lease_lapsed;
		if (!s || (s->state != BRK_CONNECTED && !lapsed))
			continue;
		if (s->lease_gw[0] && strcmp(s->lease_gw, gateway))
			continue; /* another gateway holds it now (the user moved) */
		snprintf(s->lease_gw, sizeof(s->lease_gw), "%s", gateway);
		s->lease_until = until;
		/* a user on the session, idle or not: its gateway keeps its grant */
		s->grant_until = util_now_ms() + GRANT_TTL_MS;
		if (lapsed) {
			/* the gateway was only late (a stalled loop): the user never left */
			log_info("session=%s gateway %s renewed a lapsed lease: connected again",
				 s->rec.id, gateway);
			s->lease_lapsed = false;
			set_state(ss, s, BRK_CONNECTED);
		}
		struct brk_ending e;
		if (ending && sess_ending(ss, s, now, &e))
			json_object_object_add(ending, s->rec.id, sess_ending_json(&e, now));
		held++;
	}
	return held;
}

int sess_end(struct sessions *ss, struct brk_session *s, const char *reason)
{
	struct host *h = ss->h;
	if (s->state == BRK_ENDED || s->state == BRK_ENDING)
		return 0;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	snprintf(s->rec.end_reason, sizeof(s->rec.end_reason), "%s", reason);
	if (s->state == BRK_QUEUED) {
		end_session(ss, s, reason);
		host_kick(h);
		return 0;
	}
	bool starting = s->state == BRK_STARTING;
	if (starting)
		h->met.start_failures[brk_path_of(s->rec.start_path)]++;
	/* The start slot is released now; the ledger still counts the session. */
	admit_started(h->adm, &s->tk, -1);
	set_state(ss, s, BRK_ENDING);
	if (s->guest)
		h->lnch->stop(s->guest, starting ? 0 : (int)h->cfg.timeouts.stop_grace * 1000);
	else
		end_session(ss, s, reason);
	host_kick(h);
	return 0;
}

#define ADMIN_MESSAGE "An administrator is ending this session. Save your work now."

int sess_end_in(struct sessions *ss, struct brk_session *s, unsigned in_s, const char *message)
{
	if (!live(s) || s->state == BRK_ENDING)
		return -EINVAL;
	if (!in_s || s->state == BRK_QUEUED) {
		/* nobody on a queued session to warn: it ends now */
		char reason[300];
		snprintf(reason, sizeof(reason), "ended by request%s%s",
			 message && *message ? ": " : "", message ? message : "");
		return sess_end(ss, s, reason);
	}
	s->admin_end_ms = util_now_ms() + (int64_t)in_s * 1000;
	s->rec.end_at = util_wall_s() + in_s;
	snprintf(s->rec.end_message, sizeof(s->rec.end_message), "%s", message ? message : "");
	log_info("session=%s user=%s an administrator ends it in %u s: %s", s->rec.id, s->rec.user,
		 in_s, s->rec.end_message[0] ? s->rec.end_message : "(no message)");
	char detail[300];
	snprintf(detail, sizeof(detail), "in %u s%s%s", in_s, s->rec.end_message[0] ? ": " : "",
		 s->rec.end_message);
	audit(ss, s, "session-end-announced", detail);
	save(ss, s); /* a restart keeps it */
	return 0;
}

static const char idle_message[] =
    "This session has been idle and will end. Move the mouse or press a key to keep it.";
static const char lifetime_message[] =
    "This session has reached its maximum lifetime and will end. Save your work now.";

/* A timeout's end at END_MS, announced WARN_MS before it, into OUT if NOW is past that. */
static void consider(struct brk_ending *out, bool *have, int64_t now, int64_t end_ms,
		     int64_t warn_ms, const char *why, const char *message)
{
	if (now < end_ms - warn_ms || (*have && out->at_ms <= end_ms))
		return;
	*out = (struct brk_ending){end_ms, why, message};
	*have = true;
}

bool sess_ending(const struct sessions *ss, const struct brk_session *s, int64_t now,
		 struct brk_ending *out)
{
	const struct brk_timeouts *t = &ss->h->cfg.timeouts;
	bool have = false;
	if (!live(s) || s->state == BRK_ENDING || s->state == BRK_QUEUED)
		return false;
	if (s->admin_end_ms)
		consider(out, &have, now, s->admin_end_ms, INT64_MAX / 2, "admin",
			 s->rec.end_message[0] ? s->rec.end_message : ADMIN_MESSAGE);
	if (!t->warn_before)
		return have;
	int64_t warn = (int64_t)t->warn_before * 1000;
	unsigned life = image_timeout(s->img.max_lifetime, t->max_lifetime);
	unsigned idle = image_timeout(s->img.idle, t->idle);
	if (life)
		consider(out, &have, now, s->created_ms + (int64_t)life * 1000, warn, "lifetime",
			 lifetime_message);
	if (idle && s->state == BRK_CONNECTED)
		consider(out, &have, now, s->activity_ms + (int64_t)idle * 1000, warn, "idle",
			 idle_message);
	return have;
}

json_object *sess_ending_json(const struct brk_ending *e, int64_t now)
{
	int64_t left = e->at_ms > now ? (e->at_ms - now + 999) / 1000 : 0;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "in_s", json_object_new_int64(left));
	json_object_object_add(o, "why", json_object_new_string(e->why));
	json_object_object_add(o, "message", json_object_new_string(e->message));
	return o;
}

/* Log (once) that S's announced end began, changed or was cleared. */
static void announce(struct sessions *ss, struct brk_session *s, int64_t now)
{
	struct brk_ending e;
	const char *why = sess_ending(ss, s, now, &e) ? e.why : "";
	if (!strcmp(why, s->announced))
		return;
	if (*why)
		log_info("session=%s user=%s end announced (%s) in %lld s", s->rec.id, s->rec.user,
			 why, (long long)((e.at_ms - now + 999) / 1000));
	else
		log_info("session=%s user=%s announced end (%s) cleared", s->rec.id, s->rec.user,
			 s->announced);
	snprintf(s->announced, sizeof(s->announced), "%s", why);
}

const char *brk_session_grant(const struct brk_session *s)
{
	return s->rec.grant;
}

/* Give S a grant if it has none (sessions from before grants existed). */
static void grant_ensure(struct brk_session *s)
{
	if (!s->rec.grant[0])
		util_random_hex(s->rec.grant, 16);
	s->grant_until = util_now_ms() + GRANT_TTL_MS;
}

bool brk_session_grant_ok(struct brk_session *s, const char *token)
{
	/* an ended session's grant still reads why it ended, until it lapses */
	if (util_now_ms() > s->grant_until || !util_secret_eq(s->rec.grant, token))
		return false;
	s->grant_until = util_now_ms() + GRANT_TTL_MS;
	return true;
}

bool sess_busy(const struct sessions *ss)
{
	for (const struct brk_session *s = ss->list; s; s = s->next)
		if (s->guest)
			return true;
	return false;
}

struct brk_session *sess_of(struct sessions *ss, const char *user, const char *app)
{
	return reconnectable(ss, user, app);
}

struct brk_session *sess_find_fleet(struct sessions *ss, const char *fleet_id)
{
	for (struct brk_session *s = ss->list; s; s = s->next)
		if (live(s) && (!strcmp(s->rec.fleet_id, fleet_id) || !strcmp(s->rec.id, fleet_id)))
			return s;
	return NULL;
}

void sess_each_live(struct sessions *ss, void (*fn)(const struct db_session *rec, void *arg),
		    void *arg)
{
	for (struct brk_session *s = ss->list; s; s = s->next)
		if (live(s))
			fn(&s->rec, arg);
}

const struct db_session *sess_record(const struct brk_session *s)
{
	return &s->rec;
}

bool sess_owns(struct sessions *ss, const char *id)
{
	struct brk_session *s = sess_find(ss, id);
	return s && live(s);
}

bool sess_uses_template(const struct sessions *ss, const char *dir)
{
	for (const struct brk_session *s = ss->list; s; s = s->next)
		if (live(s) && !strcmp(s->rec.template_dir, dir))
			return true;
	return false;
}

bool sess_image_in_use(const struct sessions *ss, const char *image)
{
	for (const struct brk_session *s = ss->list; s; s = s->next)
		if (live(s) && !strcmp(s->rec.image, image))
			return true;
	return false;
}

/* --- timeouts: one tick a second --- */

void sess_tick(struct sessions *ss)
{
	struct host *h = ss->h;
	int64_t now = util_now_ms();
	for (struct brk_session *s = ss->list; s; s = s->next) {
		const struct db_image *m = &s->img;
		const struct brk_timeouts *t = &h->cfg.timeouts;
		unsigned life = image_timeout(m->max_lifetime, t->max_lifetime);
		unsigned keep = image_timeout(m->keepalive, t->keepalive);
		unsigned idle = image_timeout(m->idle, t->idle);
		const char *why = NULL;
		if (!live(s) || s->state == BRK_ENDING || s->state == BRK_QUEUED)
			continue;
		char admin[300];
		if (s->admin_end_ms && now >= s->admin_end_ms) {
			snprintf(admin, sizeof(admin), "ended by request%s%s",
				 s->rec.end_message[0] ? ": " : "", s->rec.end_message);
			why = admin;
		} else if (life && now - s->created_ms >= (int64_t)life * 1000)
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
			sess_end(ss, s, why);
		} else if (s->state == BRK_CONNECTED && s->lease_until && now > s->lease_until) {
			log_warn("session=%s user=%s gateway %s stopped renewing its lease: "
				 "disconnected",
				 s->rec.id, s->rec.user,
				 s->lease_gw[0] ? s->lease_gw : "(unknown)");
			audit(ss, s, "session-lease-expired", s->lease_gw);
			s->lease_until = 0;
			s->lease_lapsed = true; /* lease_gw kept: that gateway may take it back */
			set_state(ss, s, BRK_DISCONNECTED);
		}
		if (!why)
			announce(ss, s, now);
	}
	for (struct brk_session *s = ss->list; s; s = s->next)
		if (s->dirty)
			save(ss, s);
	reap_ended(ss);
}

/* --- restart: rows of an earlier nestord --- */

void sess_restore(struct sessions *ss, const struct db_session *rec, bool restart)
{
	struct host *h = ss->h;
	enum brk_state st;
	if (brk_state_parse(rec->state, &st) < 0)
		st = BRK_ENDING;
	struct brk_session *s = session_new(ss);
	if (!s)
		return;
	s->rec = *rec;
	s->state = st;
	struct db_app a;
	if (store_app_get(h->store, rec->app, &a) == 0)
		snprintf(s->title, sizeof(s->title), "%s", a.title);
	if (store_image_get(h->store, rec->image, &s->img) < 0)
		snprintf(s->img.name, sizeof(s->img.name), "%s", rec->image);
	if (rec->created > 0)
		s->created_ms = util_now_ms() - (util_wall_s() - rec->created) * 1000;
	if (rec->end_at > 0) /* an administrator's end outlives the restart */
		s->admin_end_ms = util_now_ms() + (rec->end_at - util_wall_s()) * 1000;
	admit_ticket_init(&s->tk, rec->user, rec->image, rec->memory_mb);
	admit_image_cap(h->adm, rec->image, s->img.max_sessions);
	/* a gateway that held it before the restart goes on with its grant */
	grant_ensure(s);
	if (restart) {
		log_info("session=%s user=%s was starting (%s): starting it again", rec->id,
			 rec->user, rec->start_path[0] ? rec->start_path : "not spawned yet");
		s->rec.pid = 0;
		s->rec.start_path[0] = s->rec.template_dir[0] = s->rec.overlay[0] = '\0';
		s->state = st = BRK_QUEUED;
		save(ss, s);
	}

	if (st == BRK_QUEUED) {
		/* a session that had been admitted waits anew, in its old place */
		int64_t deadline =
		    queue_deadline(ss, &s->img, restart ? util_now_ms() : s->created_ms);
		/* back in line in its arrival order; started once the host is ready */
		struct quota_decision d =
		    admit_requeue(h->adm, &s->tk, s->qid, s->created_ms, deadline, util_now_ms());
		if (d.verdict == QUOTA_REFUSE)
			end_session(ss, s, d.reason);
		log_info("session=%s restored (queued)", s->rec.id);
		return;
	}
	admit_restore(h->adm, &s->tk, st == BRK_STARTING ? ADMIT_STARTING : ADMIT_RUNNING);
	/* when it was admitted, to the second: a start timed across a restart is not cut short */
	s->start_ms = util_now_ms();
	if (rec->started > 0 && rec->started <= util_wall_s())
		s->start_ms -= (util_wall_s() - rec->started) * 1000;
	s->accel = !strcmp(rec->accel, "kvm") ? LNCH_ACCEL_KVM : LNCH_ACCEL_TCG;
	if (st == BRK_CONNECTED) /* its gateway renews within a second, if it is still there */
		s->lease_until = util_now_ms() + 2 * BRK_LEASE_MS;
	char err[256];
	struct lnch_profile p;
	reg_profile_of(&s->img, &p);
	s->guest = h->lnch->attach(h->base, &h->lcfg, rec->id, rec->pid,
				   st == BRK_STARTING ? &p : NULL, &guest_cbs, s, err, sizeof(err));
	if (!s->guest) {
		log_err("session=%s cannot be reattached: %s", rec->id, err);
		end_session(ss, s, "lost: its guest stopped while nestord was not running");
		return;
	}
	if (st == BRK_ENDING)
		snprintf(s->reason, sizeof(s->reason), "%s",
			 rec->end_reason[0] ? rec->end_reason : "ended");
	log_info("session=%s user=%s reattaching pid %d (%s)", rec->id, rec->user, (int)rec->pid,
		 rec->state);
}

/* --- shutdown --- */

void sess_shutdown(struct sessions *ss, bool keep)
{
	for (struct brk_session *s = ss->list; s; s = s->next) {
		if (!live(s))
			continue;
		if (keep) {
			/* Rows stay as they are: the next nestord reattaches. */
			ss->h->lnch->detach(s->guest);
			s->guest = NULL;
			continue;
		}
		if (s->state == BRK_QUEUED) {
			end_session(ss, s, "nestord shut down");
			continue;
		}
		sess_end(ss, s, "nestord shut down");
	}
}

void sess_kill_all(struct sessions *ss)
{
	for (struct brk_session *s = ss->list; s; s = s->next) {
		if (!s->guest)
			continue;
		ss->h->lnch->destroy(s->guest); /* kills QEMU and removes its files */
		s->guest = NULL;
		end_session(ss, s, s->reason[0] ? s->reason : "nestord shut down");
	}
}

struct sessions *sess_create(struct host *h, struct warm_pool *wp, struct templates *tpl)
{
	struct sessions *ss = calloc(1, sizeof(*ss));
	if (!ss)
		return NULL;
	ss->h = h;
	ss->wp = wp;
	ss->tpl = tpl;
	return ss;
}

void sess_destroy(struct sessions *ss)
{
	if (!ss)
		return;
	/* rows still unwritten (the store was locked or full): one last, patient try */
	for (struct brk_session *s = ss->list; s; s = s->next)
		if (s->dirty)
			save(ss, s);
	while (ss->list) {
		struct brk_session *s = ss->list;
		ss->list = s->next;
		/* Guests still running here are detached, never killed behind the store's back. */
		ss->h->lnch->detach(s->guest);
		s->guest = NULL;
		session_free(ss, s);
	}
	free(ss);
}
