/*
 * The broker: owns the host's modules (admission, the accelerator decision,
 * authentication, the image registry, templates, warm pools, sessions) and
 * the loop's events that drive them: one deferred pump (host_kick), a
 * one-second tick and the shutdown timer. The public brk_* API (broker.h)
 * is here or in the module that owns the state. Never blocks beyond short
 * store calls.
 */
#include "nestor-config.h"
#include "admit.h"
#include "agent.h"
#include "certfp.h"
#include "authn.h"
#include "fleet.h"
#include "hostaccel.h"
#include "log.h"
#include "record.h"
#include "registry.h"
#include "restore.h"
#include "sessions.h"
#include "store.h"
#include "templates.h"
#include "util.h"
#include "warm.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS 1000

struct brk {
	struct host h;
	struct brk_options opts;
	char image_dir[BRK_PATH_MAX];
	struct authn *authn;
	struct templates *tpl;
	struct warm_pool *warm;
	struct sessions *sess;
	struct fleet *fleet; /* NULL: a single host */
	struct event *tick;
	struct event *stop_timer;
	void (*stop_done)(void *arg);
	void *stop_arg;
};

/* Guests may start: the accelerator and the QEMU version are known. */
static bool host_ready(const struct brk *b)
{
	return accel_ready(b->h.acc) && tpl_version_asked(b->tpl);
}

/* Start whatever admission allows now; expire what waited too long. */
static void pump(struct brk *b)
{
	if (!host_ready(b) || b->h.stopping)
		return;
	event_del(b->h.kick);
	for (;;) {
		sess_pump(b->sess);
		/* Users first: warm guests make room for people who wait. */
		if (!admit_queued(b->h.adm) || !warm_evict(b->warm))
			break;
	}
	tpl_run(b->tpl);
	warm_refill(b->warm);
}

/* During shutdown: report once no guest (session, warm, build) is left. */
static void check_stopped(struct brk *b)
{
	if (!b->h.stopping || !b->stop_done)
		return;
	if (sess_busy(b->sess) || warm_busy(b->warm) || tpl_busy(b->tpl))
		return;
	if (b->stop_timer)
		event_del(b->stop_timer);
	void (*done)(void *) = b->stop_done;
	b->stop_done = NULL;
	done(b->stop_arg);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	pump(arg);
	check_stopped(arg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct brk *b = arg;
	sess_tick(b->sess);
	store_flush(b->h.store);
	admit_pressure(b->h.adm);
	pump(b);
}

/* A decision was adopted: caps follow it, guests of the old one may move. */
static void on_accel_changed(enum lnch_accel old, bool moved, void *arg)
{
	struct brk *b = arg;
	admit_caps_reload(b->h.adm, accel_current(b->h.acc) == LNCH_ACCEL_KVM);
	/* what runs under TCG runs on: only a fallback moves guests */
	if (!moved || accel_current(b->h.acc) == LNCH_ACCEL_KVM)
		return;
	sess_accel_changed(b->sess, old);
	warm_accel_changed(b->warm, old);
	tpl_accel_changed(b->tpl, old);
}

static bool template_in_use(const char *dir, void *arg)
{
	struct brk *b = arg;
	return sess_uses_template(b->sess, dir) || warm_uses_template(b->warm, dir);
}

/* --- sessions --- */

int brk_connect(struct brk *b, const char *user, const char *app, const char *client,
		struct brk_session **out, char *err, size_t errlen)
{
	return sess_connect(b->sess, user, app, client, NULL, host_ready(b), out, err, errlen);
}

const struct db_session *brk_session_record(const struct brk_session *s)
{
	return sess_record(s);
}

int brk_app_demand(struct brk *b, const char *user, const char *app, struct brk_demand *d,
		   char *err, size_t errlen)
{
	struct db_app a;
	struct db_image img;
	memset(d, 0, sizeof(*d));
	if (store_app_get(b->h.store, app, &a) < 0) {
		snprintf(err, errlen, "unknown app '%s'", app);
		return -ENOENT;
	}
	if (store_image_get(b->h.store, a.image, &img) < 0) {
		snprintf(err, errlen, "app '%s' uses image '%s', which is not registered", app,
			 a.image);
		return -ENOENT;
	}
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	snprintf(d->image, sizeof(d->image), "%s", img.name);
	snprintf(d->title, sizeof(d->title), "%s", a.title);
	d->memory_mb = img.memory_mb;
	d->image_max = img.max_sessions;
	unsigned um;
	d->user_max = store_user_cap_get(b->h.store, user, &um) == 0
			  ? um
			  : admit_ledger(b->h.adm)->user_default_max;
	return 0;
}

bool brk_has_session(struct brk *b, const char *user, const char *app)
{
	return sess_of(b->sess, user, app) != NULL;
}

int brk_connect_placed(struct brk *b, const char *user, const char *app, const char *client,
		       const char *fleet_id, struct brk_session **out, char *err, size_t errlen)
{
	return sess_connect(b->sess, user, app, client, fleet_id, host_ready(b), out, err, errlen);
}

struct brk_session *brk_session_find(struct brk *b, const char *id)
{
	return sess_find(b->sess, id);
}

json_object *brk_session_json(struct brk *b, const struct brk_session *s)
{
	return sess_json(b->sess, s);
}

json_object *brk_session_guest_json(struct brk *b, const struct brk_session *s)
{
	return sess_guest_json(b->sess, s);
}

json_object *brk_sessions_json(struct brk *b)
{
	return sess_list_json(b->sess);
}

/* The parts of a session's JSON its own user sees. */
static json_object *user_session(struct brk *b, const struct brk_session *s)
{
	static const char *const keys[] = {"id",	 "state",  "position", "estimate_ms",
					   "elapsed_ms", "reason", "ending"};
	json_object *all = sess_json(b->sess, s), *o = json_object_new_object(), *v;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_object_object_get_ex(all, keys[i], &v))
			json_object_object_add(o, keys[i], json_object_get(v));
	json_object_put(all);
	return o;
}

json_object *brk_user_json(struct brk *b, const char *user)
{
	json_object *o = json_object_new_object(), *apps = json_object_new_array();
	json_object *all = store_apps_json(b->h.store);
	size_t n = all ? json_object_array_length(all) : 0;
	for (size_t i = 0; i < n; i++) {
		json_object *a = json_object_array_get_idx(all, i), *alias, *title;
		if (!json_object_object_get_ex(a, "alias", &alias) ||
		    !json_object_object_get_ex(a, "title", &title))
			continue;
		json_object *e = json_object_new_object();
		json_object_object_add(e, "alias", json_object_get(alias));
		json_object_object_add(e, "title", json_object_get(title));
		const struct brk_session *s = sess_of(b->sess, user, json_object_get_string(alias));
		if (s)
			json_object_object_add(e, "session", user_session(b, s));
		json_object_array_add(apps, e);
	}
	json_object_put(all);
	json_object_object_add(o, "user", json_object_new_string(user));
	json_object_object_add(o, "apps", apps);
	json_object_object_add(o, "queued", json_object_new_int64((int64_t)admit_queued(b->h.adm)));
	return o;
}

int brk_session_attach(struct brk *b, struct brk_session *s, const char *gateway, char *err,
		       size_t errlen)
{
	return sess_attach(b->sess, s, gateway, err, errlen);
}

unsigned brk_gateway_lease(struct brk *b, const char *gateway, const char *const *ids, size_t n,
			   json_object *ending)
{
	return sess_lease(b->sess, gateway, ids, n, ending);
}

int brk_session_detach(struct brk *b, struct brk_session *s)
{
	return sess_detach(b->sess, s);
}

void brk_session_activity(struct brk *b, struct brk_session *s)
{
	sess_activity(s);
}

int brk_session_screendump(struct brk *b, struct brk_session *s, brk_done_fn cb, void *arg)
{
	return sess_screendump(b->sess, s, cb, arg);
}

int brk_session_end(struct brk *b, struct brk_session *s, const char *reason)
{
	return sess_end(b->sess, s, reason);
}

int brk_session_end_in(struct brk *b, struct brk_session *s, unsigned in_s, const char *message)
{
	return sess_end_in(b->sess, s, in_s, message);
}

int brk_authenticate(struct brk *b, const char *user, const char *password, const char *code,
		     const char *client, brk_auth_fn cb, void *arg, struct brk_authreq **out)
{
	return authn_check(b->authn, user, password, code, client, cb, arg, out);
}

/* --- host: status, caps, accelerator --- */

json_object *brk_status_json(struct brk *b)
{
	json_object *o = json_object_new_object();
	admit_status_json(b->h.adm, o);
	json_object *acc = accel_json(b->h.acc), *name;
	json_object_object_get_ex(acc, "accel", &name);
	json_object_object_add(o, "accel", json_object_get(name));
	json_object_object_add(o, "accelerator", acc);
	json_object_object_add(o, "version", json_object_new_string(NESTOR_VERSION));
	if (b->fleet)
		json_object_object_add(o, "fleet", fleet_status_json(b->fleet));
	return o;
}

void brk_metrics_render(struct evbuffer *out, void *arg)
{
	struct brk *b = arg;
	struct brk_metrics_view v = {.m = &b->h.met, .version = NESTOR_VERSION};
	sess_gauges(b->sess, &v);
	v.warm = warm_gauges(b->warm, &v.resident_bytes);
	const struct quota_ledger *q = admit_ledger(b->h.adm);
	v.queued = (unsigned)q->n_queue;
	v.guests = q->sessions;
	v.starting = q->starting;
	v.memory_mb = q->memory_mb;
	v.max_sessions = q->host.max_sessions;
	v.max_starting = q->host.max_starting;
	v.max_memory_mb = q->host.max_memory_mb;
	v.user_max_sessions = q->user_default_max;
	if (accel_ready(b->h.acc))
		v.accel = accel_current(b->h.acc) == LNCH_ACCEL_KVM ? "kvm" : "tcg";
	brk_metrics_write(out, &v);
}

void brk_agent_line(struct brk *b, char *buf, size_t len)
{
	struct agent_view v = {.stopping = b->h.stopping,
			       .ready = host_ready(b),
			       .drained = b->h.drained,
			       .q = admit_ledger(b->h.adm)};
	agent_line(&v, buf, len);
}

json_object *brk_accel_json(const struct brk *b)
{
	return accel_json(b->h.acc);
}

int brk_accel_probe(struct brk *b, brk_done_fn cb, void *arg, char *err, size_t errlen)
{
	return accel_probe(b->h.acc, cb, arg, err, errlen);
}

static bool cap_key(const char *key)
{
#define CAP_KEY(k, max, cli) !strcmp(key, #k) ||
	return DB_CAP_FIELDS(CAP_KEY) false;
#undef CAP_KEY
}

int brk_caps_set(struct brk *b, const char *key, unsigned value)
{
	if (!cap_key(key))
		return -EINVAL;
	int r = store_cap_set(b->h.store, key, value);
	if (r < 0)
		return r;
	char d[96];
	snprintf(d, sizeof(d), "%s=%u", key, value);
	store_audit_log(b->h.store, "caps-set", NULL, NULL, NULL, d);
	admit_caps_reload(b->h.adm, accel_current(b->h.acc) == LNCH_ACCEL_KVM);
	pump(b); /* raising a cap admits at once */
	return 0;
}

int brk_user_cap_set(struct brk *b, const char *user, bool has_cap, unsigned max)
{
	if (!util_name_valid(user))
		return -EINVAL;
	int r = has_cap ? store_user_cap_set(b->h.store, user, max)
			: store_user_cap_del(b->h.store, user);
	if (r < 0 && !(r == -ENOENT && !has_cap))
		return r;
	char d[96];
	if (has_cap)
		snprintf(d, sizeof(d), "max_sessions=%u", max);
	else
		snprintf(d, sizeof(d), "max_sessions=default");
	store_audit_log(b->h.store, "user-caps-set", user, NULL, NULL, d);
	r = admit_user_cap_apply(b->h.adm, user);
	pump(b);
	return r;
}

/* --- images and apps --- */

int brk_image_add(struct brk *b, const struct db_image *img, brk_done_fn cb, void *arg, char *err,
		  size_t errlen)
{
	return reg_image_add(&b->h, img, cb, arg, err, errlen);
}

int brk_template_build(struct brk *b, const char *image, brk_done_fn cb, void *arg, char *err,
		       size_t errlen)
{
	return tpl_build(b->tpl, image, cb, arg, err, errlen);
}

int brk_image_set(struct brk *b, const char *image, const unsigned *warm_pool,
		  const unsigned *max_sessions, const struct db_rdp_policy *rdp, char *err,
		  size_t errlen)
{
	struct db_image img;
	int r = reg_image_set(&b->h, image, warm_pool, max_sessions, rdp, &img, err, errlen);
	if (r < 0)
		return r;
	warm_shed(b->warm, image, img.warm_pool); /* a smaller pool sheds its surplus */
	pump(b);
	return 0;
}

int brk_image_remove(struct brk *b, const char *name, char *err, size_t errlen)
{
	if (sess_image_in_use(b->sess, name)) {
		snprintf(err, errlen, "image '%s' has live sessions", name);
		return -EBUSY;
	}
	return reg_image_remove(&b->h, name, err, errlen);
}

int brk_app_add(struct brk *b, const struct db_app *app, char *err, size_t errlen)
{
	return reg_app_add(&b->h, app, err, errlen);
}

int brk_app_remove(struct brk *b, const char *alias, char *err, size_t errlen)
{
	return reg_app_remove(&b->h, alias, err, errlen);
}

static void image_json(const struct db_image *img, void *arg)
{
	struct brk *b = ((void **)arg)[0];
	json_object *o = rec_json(&rec_images, img, 0, 0, REC_ALL);
	warm_json_add(b->warm, img->name, o);
	tpl_json_add(b->tpl, img, o);
	json_object_array_add(((void **)arg)[1], o);
}

json_object *brk_images_json(struct brk *b)
{
	json_object *arr = json_object_new_array();
	void *x[2] = {b, arr};
	store_images_all(b->h.store, image_json, x);
	return arr;
}

struct store *brk_store(struct brk *b)
{
	return b->h.store;
}

const struct brk_config *brk_config(const struct brk *b)
{
	return &b->h.cfg;
}

/* --- life --- */

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

/* Directories, the users and groups they are shared with. */
static int prepare_dirs(struct brk *b, char *err, size_t errlen)
{
	struct host *h = &b->h;
	const struct brk_config *cfg = &h->cfg;
	const char *dirs[] = {cfg->state_dir,	cfg->run_dir, h->vm_dir,
			      cfg->overlay_dir, h->tpl_root,  cfg->image_dir};
	for (unsigned i = 0; i < ARRAY_LEN(dirs); i++) {
		int r = util_mkdir_p(dirs[i], 0700);
		if (r < 0) {
			snprintf(err, errlen, "cannot create %s: %s", dirs[i], strerror(-r));
			return r;
		}
	}
	if (cfg->api_group[0]) {
		struct group *gr = getgrnam(cfg->api_group);
		if (!gr) {
			snprintf(err, errlen, "api_group '%s' does not exist", cfg->api_group);
			return -ENOENT;
		}
		h->api_gid = gr->gr_gid;
		/* the gateway traverses run_dir/vm to reach the screens it may see */
		chmod(cfg->run_dir, 0711);
		chmod(h->vm_dir, 0711);
	}
	if (cfg->qemu_user[0]) {
		int r = resolve_user(cfg->qemu_user, &h->lcfg.uid, &h->lcfg.gid, err, errlen);
		if (r < 0)
			return r;
		/* QEMU must reach its run and overlay dirs, nothing else of ours. */
		chmod(cfg->run_dir, 0711);
		chmod(cfg->state_dir, 0711);
		if (chown(h->vm_dir, h->lcfg.uid, h->lcfg.gid) < 0 ||
		    chown(cfg->overlay_dir, h->lcfg.uid, h->lcfg.gid) < 0 ||
		    chown(h->tpl_root, h->lcfg.uid, h->lcfg.gid) < 0) {
			snprintf(err, errlen, "cannot hand guest dirs to %s: %s", cfg->qemu_user,
				 strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static void apply_user_caps(struct brk *b)
{
	json_object *uc = store_user_caps_json(b->h.store);
	for (size_t i = 0; i < json_object_array_length(uc); i++) {
		json_object *u;
		if (json_object_object_get_ex(json_object_array_get_idx(uc, i), "user", &u))
			admit_user_cap_apply(b->h.adm, json_object_get_string(u));
	}
	json_object_put(uc);
}

/* --- the fleet: what a heartbeat tells the others --- */

struct report_ctx {
	struct brk *b;
	struct fleet_report *r;
};

static void report_image(const struct db_image *img, void *arg)
{
	struct report_ctx *c = arg;
	fleet_array_add(c->r->images, sizeof(c->r->images), img->name);
	if (warm_has_ready(c->b->warm, img->name))
		fleet_array_add(c->r->warm, sizeof(c->r->warm), img->name);
	if (tpl_usable(c->b->tpl, img->name))
		fleet_array_add(c->r->templates, sizeof(c->r->templates), img->name);
}

static void fleet_report(struct fleet_report *r, void *arg)
{
	struct brk *b = arg;
	const struct quota_ledger *q = admit_ledger(b->h.adm);
	/* 0 is unlimited here and "no room" in the fleet: report unlimited as the most */
	r->max_sessions = q->host.max_sessions ? q->host.max_sessions : INT_MAX;
	r->max_starting = b->h.stopping ? 0 : q->host.max_starting ? q->host.max_starting : INT_MAX;
	r->max_memory_mb = q->host.max_memory_mb ? q->host.max_memory_mb : INT_MAX;
	r->queued = (unsigned)q->n_queue;
	r->queue_wait_s = b->h.cfg.timeouts.queue_wait;
	int64_t sum = 0;
	unsigned n = 0;
	for (size_t i = 0; i < QUOTA_RECENT; i++)
		if (q->start_ms[i] > 0)
			sum += q->start_ms[i], n++;
	r->start_ms = n ? (unsigned)(sum / n) : 0;
	r->accel = !host_ready(b) ? "" : accel_current(b->h.acc) == LNCH_ACCEL_KVM ? "kvm" : "tcg";
	/* the gateway may make its certificate after we start: read it each time */
	if (b->h.cfg.fleet.gateway_cert[0] &&
	    certfp_file(b->h.cfg.fleet.gateway_cert, r->fingerprint) < 0)
		r->fingerprint[0] = '\0';
	struct report_ctx c = {b, r};
	store_images_all(b->h.store, report_image, &c);
}

static void fleet_drained(bool drained, void *arg)
{
	struct brk *b = arg;
	b->h.drained = drained;
}

void brk_fleet_refused(struct brk *b, const char *id, const char *user, const char *app,
		       const char *why)
{
	struct db_session rec;
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.id, sizeof(rec.id), "%s", id);
	snprintf(rec.user, sizeof(rec.user), "%s", user);
	snprintf(rec.app, sizeof(rec.app), "%s", app);
	snprintf(rec.state, sizeof(rec.state), "ended");
	snprintf(rec.end_reason, sizeof(rec.end_reason), "%s", why);
	fleet_sync(b->fleet, &rec);
}

/* The fleet placed a session here (or this host took it from the fleet queue). */
static void fleet_adopt(const char *id, const char *user, const char *app, void *arg)
{
	struct brk *b = arg;
	if (sess_find_fleet(b->sess, id))
		return;
	struct brk_session *s = NULL;
	char err[256];
	int r = sess_connect(b->sess, user, app, "", id, host_ready(b), &s, err, sizeof(err));
	if (r == 0 && strcmp(sess_record(s)->fleet_id, id)) {
		r = -EEXIST; /* the fleet thought it lost: keep the one that runs */
		snprintf(err, sizeof(err), "%s already has a session of %s here", user, app);
	}
	if (r == 0) {
		log_info("session=%s user=%s fleet placed it here", sess_record(s)->id, user);
		fleet_sync(b->fleet, sess_record(s));
		return;
	}
	log_warn("fleet: cannot take session %s of %s (%s): %s", id, user, app, err);
	brk_fleet_refused(b, id, user, app, err);
}

static void resync_one(const struct db_session *rec, void *arg)
{
	json_object *s = json_object_new_object();
	json_object_object_add(s, "id",
			       json_object_new_string(rec->fleet_id[0] ? rec->fleet_id : rec->id));
	json_object_object_add(s, "user", json_object_new_string(rec->user));
	json_object_object_add(s, "app", json_object_new_string(rec->app));
	json_object_object_add(s, "image", json_object_new_string(rec->image));
	json_object_object_add(s, "memory_mb", json_object_new_int64(rec->memory_mb));
	json_object_object_add(s, "state", json_object_new_string(rec->state));
	json_object_object_add(s, "reason", json_object_new_string(rec->end_reason));
	json_object_array_add(arg, s);
}

json_object *brk_fleet_sessions_json(struct brk *b)
{
	json_object *all = json_object_new_array();
	sess_each_live(b->sess, resync_one, all);
	return all;
}

static void fleet_resync(void *arg)
{
	struct brk *b = arg;
	json_object *all = brk_fleet_sessions_json(b);
	fleet_sync_all(b->fleet, json_object_to_json_string_ext(all, JSON_C_TO_STRING_PLAIN));
	json_object_put(all);
}

static void fleet_end(const char *id, void *arg)
{
	struct brk *b = arg;
	struct brk_session *s = sess_find_fleet(b->sess, id);
	if (s)
		sess_end(b->sess, s,
			 "the fleet gave its user a new session while this host was away");
}

static bool fleet_has_room(void *arg)
{
	struct brk *b = arg;
	const struct quota_ledger *q = admit_ledger(b->h.adm);
	return host_ready(b) && !b->h.stopping && q->n_queue == 0 &&
	       (!q->host.max_sessions || q->sessions < q->host.max_sessions) &&
	       (!q->host.max_starting || q->starting < q->host.max_starting);
}

static void session_changed(void *arg, const struct db_session *rec)
{
	struct brk *b = arg;
	if (!b->fleet)
		return;
	fleet_sync(b->fleet, rec);
	if (!strcmp(rec->state, "ended"))
		fleet_room(b->fleet);
}

struct fleet *brk_fleet(struct brk *b)
{
	return b->fleet;
}

struct brk *brk_create(struct event_base *base, const struct brk_config *cfg,
		       const struct brk_options *opts, char *err, size_t errlen)
{
	struct brk *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	struct host *h = &b->h;
	h->base = base;
	h->cfg = *cfg;
	b->opts = *opts;
	h->lnch = opts->launcher ? opts->launcher : &brk_launcher_qemu;
	snprintf(h->vm_dir, sizeof(h->vm_dir), "%.4000s/vm", cfg->run_dir);
	snprintf(h->tpl_root, sizeof(h->tpl_root), "%.4000s/templates", cfg->state_dir);
	h->lcfg = (struct lnch_config){
	    .qemu = h->cfg.qemu,
	    .qemu_img = h->cfg.qemu_img,
	    .run_dir = h->vm_dir,
	    .overlay_dir = h->cfg.overlay_dir,
	    .accel = LNCH_ACCEL_TCG,
	    .sandbox = cfg->sandbox,
	    .port_lo = cfg->fwd_lo,
	    .port_hi = cfg->fwd_hi,
	    .start_timeout_ms = (int)cfg->timeouts.start * 1000,
	    .stop_timeout_ms = (int)cfg->timeouts.stop_grace * 1000,
	};
	if (prepare_dirs(b, err, errlen) < 0)
		goto fail;
	char dbpath[BRK_PATH_MAX + 16];
	snprintf(dbpath, sizeof(dbpath), "%s/nestor.db", cfg->state_dir);
	h->store = store_open(dbpath, err, errlen);
	if (!h->store)
		goto fail;
	h->adm = admit_create(&h->cfg, h->store);
	h->acc = accel_create(h, on_accel_changed, b);
	b->authn = authn_create(base, &h->cfg, h->store, &h->met);
	b->tpl = tpl_create(h, template_in_use, b);
	b->warm = b->tpl ? warm_create(h, b->tpl) : NULL;
	b->sess = b->warm ? sess_create(h, b->warm, b->tpl) : NULL;
	h->kick = event_new(base, -1, 0, on_kick, b);
	b->tick = event_new(base, -1, EV_PERSIST, on_tick, b);
	struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
	if (!h->adm || !h->acc || !b->sess || !h->kick || !b->tick || event_add(b->tick, &tv) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (!b->authn) {
		snprintf(err, errlen, "cannot start PAM workers");
		goto fail;
	}
	admit_caps_reload(h->adm, false);
	apply_user_caps(b);
	restore_all(h, b->sess, b->warm, b->tpl);
	tpl_version_probe(b->tpl);
	accel_init(h->acc);
	admit_caps_reload(h->adm, accel_ready(h->acc) && accel_current(h->acc) == LNCH_ACCEL_KVM);
	h->session_changed = session_changed;
	h->session_changed_arg = b;
	if (cfg->fleet.db[0]) {
		struct fleet_hooks fh = {.report = fleet_report,
					 .drained = fleet_drained,
					 .adopt = fleet_adopt,
					 .resync = fleet_resync,
					 .has_room = fleet_has_room,
					 .end = fleet_end,
					 .arg = b};
		b->fleet = fleet_create(base, &cfg->fleet, &fh, err, errlen);
		if (!b->fleet)
			goto fail;
	}
	json_object *st = json_object_new_object();
	admit_status_json(h->adm, st);
	json_object *caps;
	json_object_object_get_ex(st, "caps", &caps);
	log_info("caps: %s", json_object_to_json_string_ext(caps, JSON_C_TO_STRING_PLAIN));
	json_object_put(st);
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
		 b->h.cfg.timeouts.stop_grace + 5);
	sess_kill_all(b->sess);
	warm_kill_all(b->warm);
	void (*done)(void *) = b->stop_done;
	b->stop_done = NULL;
	if (done)
		done(b->stop_arg);
}

void brk_shutdown(struct brk *b, void (*done)(void *arg), void *arg)
{
	if (b->h.stopping)
		return;
	b->h.stopping = true;
	b->stop_done = done;
	b->stop_arg = arg;
	accel_finish(b->h.acc);
	/* warm guests are kept like sessions when guests are kept (their rows stay) */
	warm_stop_all(b->warm, b->opts.keep_guests);
	/* builds stop now and run again at the next start (their rows stay) */
	tpl_cancel_all(b->tpl);
	b->stop_timer = evtimer_new(b->h.base, on_stop_timer, b);
	struct timeval tv = {(time_t)b->h.cfg.timeouts.stop_grace + 5, 0};
	if (b->stop_timer)
		evtimer_add(b->stop_timer, &tv);
	sess_shutdown(b->sess, b->opts.keep_guests);
	check_stopped(b);
}

void brk_destroy(struct brk *b)
{
	if (!b)
		return;
	struct host *h = &b->h;
	fleet_destroy(b->fleet);
	/* guests still here (an exit without a full shutdown) stay for the next start */
	warm_destroy(b->warm);
	tpl_destroy(b->tpl);
	/* rows still unwritten (the store was locked or full): one last, patient try */
	if (h->store)
		store_patience(h->store, 5000);
	sess_destroy(b->sess);
	if (b->tick)
		event_free(b->tick);
	if (h->kick)
		event_free(h->kick);
	if (b->stop_timer)
		event_free(b->stop_timer);
	authn_destroy(b->authn); /* no callback runs after this */
	accel_destroy(h->acc);
	admit_destroy(h->adm);
	store_close(h->store);
	free(b);
}
