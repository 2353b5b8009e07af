/*
 * Images on the broker's side: registration (inspected in the background,
 * then made read-only), templates (one per image and accelerator, built
 * through the loop, counted against max_starting as "@template"; a build
 * asked for is recorded and runs again after a crash), and warm pools
 * (paused template clones counted against the host caps as "@warm", handed
 * out on connect; recorded, and reattached by the next nestord).
 * Nothing here blocks: qemu-img, sha256sum and QEMU are children.
 */
#include "brk-private.h"
#include "record.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "template.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- QEMU version: recorded with templates, checked before clones --- */

static void on_version(struct job *job, int status, void *arg)
{
	struct brk *b = arg;
	const char *out = job_output(job);
	const char *v = strstr(out, "version ");
	if (status == 0 && v) {
		v += 8;
		size_t n = strcspn(v, " \n");
		snprintf(b->qemu_version, sizeof(b->qemu_version), "%.*s", (int)n, v);
		log_info("QEMU %s", b->qemu_version);
	} else {
		log_err("cannot read the QEMU version: templates are disabled");
	}
	job_destroy(job);
	b->version_asked = true;
	brk_kick(b);
}

/* Starts wait for this (~50 ms): without the version no template can be used. */
void pool_start_version_probe(struct brk *b)
{
	const char *argv[] = {b->cfg.qemu, "--version", NULL};
	struct job_spec spec = {.argv = argv, .stdout_fd = -1, .stderr_fd = -2};
	if (!job_run(b->base, &spec, on_version, b)) {
		log_err("cannot run %s --version: templates are disabled", b->cfg.qemu);
		b->version_asked = true;
	}
}

/* --- registration --- */

struct addjob {
	struct brk *b;
	struct db_image img;
	brk_done_fn cb;
	void *arg;
};

static void on_inspected(int err, const struct img_facts *f, const char *msg, void *arg)
{
	struct addjob *j = arg;
	struct brk *b = j->b;
	char out[700];
	if (err) {
		snprintf(out, sizeof(out), "%.300s: %.300s", j->img.base, msg);
		j->cb(err, out, j->arg);
		free(j);
		return;
	}
	/* Read-only from now on: a written base would corrupt every clone. */
	struct stat st;
	if (chmod(j->img.base, 0444) < 0 || stat(j->img.base, &st) < 0) {
		snprintf(out, sizeof(out), "cannot make %.300s read-only: %s", j->img.base,
			 strerror(errno));
		j->cb(-EPERM, out, j->arg);
		free(j);
		return;
	}
	memcpy(j->img.sha256, f->sha256, sizeof(j->img.sha256));
	j->img.size = (uint64_t)st.st_size;
	j->img.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	j->img.virtual_mb = (unsigned)(f->info.virtual_size >> 20);
	int r = store_image_put(b->store, &j->img);
	if (r == -EEXIST)
		snprintf(out, sizeof(out), "image '%s' already exists", j->img.name);
	else if (r < 0)
		snprintf(out, sizeof(out), "cannot store the image: %s",
			 r == -EAGAIN ? "the database is busy, try again" : strerror(-r));
	else {
		store_audit_log(b->store, "image-add", NULL, NULL, NULL, j->img.name);
		log_info("image %s registered: %s sha256 %.16s...", j->img.name, j->img.base,
			 j->img.sha256);
		snprintf(out, sizeof(out), "image %s added", j->img.name);
		accel_image_added(b, &j->img);
	}
	j->cb(r, out, j->arg);
	free(j);
	brk_pump(b); /* a warm pool may want filling */
}

int brk_image_add(struct brk *b, const struct db_image *img, brk_done_fn cb, void *arg, char *err,
		  size_t errlen)
{
	if (b->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	if (!util_name_valid(img->name)) {
		snprintf(err, errlen, "invalid image name (1-64 of A-Z a-z 0-9 . _ -)");
		return -EINVAL;
	}
	struct db_image existing;
	if (store_image_get(b->store, img->name, &existing) == 0) {
		snprintf(err, errlen, "image '%s' already exists", img->name);
		return -EEXIST;
	}
	if (img->backend[0] && strcmp(img->backend, "console") && strcmp(img->backend, "rdp")) {
		snprintf(err, errlen, "backend must be console or rdp");
		return -EINVAL;
	}
	if (brk_rdp_policy_check(&img->rdp, err, errlen) < 0)
		return -EINVAL;
	struct lnch_profile p;
	brk_profile_of(img, &p);
	if (strncmp(img->ready, "serial:", 7) && strncmp(img->ready, "tcp:", 4) &&
	    strcmp(img->ready, "running")) {
		snprintf(err, errlen, "ready must be serial:MARKER, tcp:PORT or running");
		return -EINVAL;
	}
	if (lnch_profile_check(&p, err, errlen) < 0)
		return -EINVAL;
	const char *files[] = {img->kernel, img->initrd};
	for (unsigned i = 0; i < 2; i++) {
		if (files[i][0] && access(files[i], R_OK) < 0) {
			snprintf(err, errlen, "%s: %s", files[i], strerror(errno));
			return -EINVAL;
		}
	}
	struct addjob *j = calloc(1, sizeof(*j));
	if (!j) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	j->b = b;
	j->img = *img;
	j->cb = cb;
	j->arg = arg;
	int r = img_inspect(b->base, b->cfg.qemu_img, img->base, b->image_dir, on_inspected, j);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", img->base,
			 r == -EINVAL ? "not a regular file" : strerror(-r));
		free(j);
		return r == -ENOMEM ? r : -EINVAL; /* a bad path is a bad request */
	}
	return 0;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int brk_rdp_policy_check(const struct db_rdp_policy *r, char *err, size_t errlen)
{
	if (r->security[0] && strcmp(r->security, "rdp") && strcmp(r->security, "tls") &&
	    strcmp(r->security, "any")) {
		snprintf(err, errlen, "rdp_security must be rdp, tls or any");
		return -EINVAL;
	}
	if (r->login[0] && strcmp(r->login, "image") && strcmp(r->login, "user")) {
		snprintf(err, errlen, "guest_login must be image or user");
		return -EINVAL;
	}
	if (!printable(r->user) || !printable(r->domain) || !printable(r->password)) {
		snprintf(err, errlen, "guest account fields must not hold control characters");
		return -EINVAL;
	}
	return 0;
}

int brk_image_set(struct brk *b, const char *image, const unsigned *warm_pool,
		  const unsigned *max_sessions, const struct db_rdp_policy *rdp, char *err,
		  size_t errlen)
{
	struct db_image img;
	if (store_image_get(b->store, image, &img) < 0) {
		snprintf(err, errlen, "no image '%s'", image);
		return -ENOENT;
	}
	if (rdp && brk_rdp_policy_check(rdp, err, errlen) < 0)
		return -EINVAL;
	if (warm_pool)
		img.warm_pool = *warm_pool;
	if (max_sessions)
		img.max_sessions = *max_sessions;
	if (rdp)
		img.rdp = *rdp;
	int r = store_image_update(b->store, &img);
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	if (r < 0) {
		snprintf(err, errlen, "cannot store the image: %s",
			 r == -EAGAIN ? "the database is busy, try again" : strerror(-r));
		return r;
	}
	quota_set_image_cap(&b->quota, image, img.max_sessions);
	char d[160];
	snprintf(d, sizeof(d), "%s warm_pool=%u max_sessions=%u%s", image, img.warm_pool,
		 img.max_sessions, rdp ? " rdp policy" : "");
	store_audit_log(b->store, "image-set", NULL, NULL, NULL, d);
	/* a smaller pool sheds its surplus */
	unsigned n = 0;
	for (struct warm *w = b->warm; w; w = w->next) {
		if (strcmp(w->image, image) || w->stopping)
			continue;
		if (++n > img.warm_pool) {
			w->stopping = true;
			lnch_guest_stop(w->guest, 0);
		}
	}
	brk_pump(b);
	return 0;
}

/* --- templates --- */

static struct tjob *tjob_find(struct brk *b, const char *image)
{
	for (struct tjob *t = b->tjobs; t; t = t->next)
		if (!strcmp(t->image, image))
			return t;
	return NULL;
}

static void tjob_finish(struct tjob *t, int err, const char *msg)
{
	struct brk *b = t->b;
	for (struct tjob **pp = &b->tjobs; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	while (t->waiters) {
		struct tjob_waiter *w = t->waiters;
		t->waiters = w->next;
		w->cb(err, msg, w->arg);
		free(w);
	}
	/* a build cut by shutdown runs again at the next start */
	if (err != -ESHUTDOWN)
		store_tbuild_del(b->store, t->image);
	free(t);
}

/* IMAGE has a template the current accelerator can clone. */
/*
 * IMG's template for the current accelerator into DIR ("" none), and whether
 * it can serve clones now; WHY (if given) says why not when there is one.
 */
static bool current_template(struct brk *b, const struct db_image *img, char *dir, size_t len,
			     char *why, size_t whylen)
{
	char scratch[300];
	struct lnch_profile p;
	brk_profile_of(img, &p);
	pool_template_dir(b, img->name, dir, len);
	return dir[0] && b->qemu_version[0] &&
	       img_template_usable(dir, &b->lcfg, &p, b->qemu_version, why ? why : scratch,
				   why ? whylen : sizeof(scratch));
}

static bool usable_template(struct brk *b, const char *image)
{
	struct db_image img;
	char dir[BRK_PATH_MAX];
	if (store_image_get(b->store, image, &img) < 0)
		return false;
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	return current_template(b, &img, dir, sizeof(dir), NULL, 0);
}

static void on_template(int err, const char *msg, const struct img_template_meta *meta, void *arg)
{
	struct tjob *t = arg;
	struct brk *b = t->b;
	quota_release(&b->quota, TEMPLATE_USER, t->image, t->memory_mb, true);
	t->build = NULL;
	char out[700], who[128];
	struct db_image img;
	snprintf(who, sizeof(who), "the template build of %s", t->image);
	if (b->stopping && err) {
		tjob_finish(t, -ESHUTDOWN, "nestord is shutting down");
		brk_check_stopped(b);
		return;
	}
	if ((err == -ETIMEDOUT && accel_start_timed_out(b, t->accel, who)) ||
	    (err == -ECANCELED && t->requeue && !b->stopping)) {
		if (!t->waiters && usable_template(b, t->image)) {
			/* an automatic build, and the new accelerator has its template */
			tjob_finish(t, -ECANCELED, "the accelerator changed");
			brk_kick(b);
			return;
		}
		/* asked for: build again under the new accelerator */
		log_info("template of %s: building again under %s", t->image,
			 accel_name(b->acc.accel));
		t->running = t->requeue = false;
		brk_kick(b);
		return;
	}
	if (!err && store_image_get(b->store, t->image, &img) == 0 && strcmp(img.sha256, t->sha256)) {
		/* removed and registered again meanwhile: this template is of the old base */
		snprintf(out, sizeof(out), "image %s changed during the build", t->image);
		util_rmdir_flat(t->dir);
		err = -ESTALE;
	} else if (!err && store_image_get(b->store, t->image, &img) == 0) {
		if (store_template_set(b->store, t->image, accel_name(t->accel), t->dir) < 0)
			log_err("template of %s: cannot be recorded: it is built again later",
				t->image);
		snprintf(out, sizeof(out), "template of %s (%s) saved in %.2f s", t->image,
			 accel_name(t->accel), meta->build_s);
		store_audit_log(b->store, "template-built", NULL, NULL, NULL, out);
		/* older generations go once no guest uses them */
		pool_sweep_templates(b);
	} else if (!err) {
		snprintf(out, sizeof(out), "image %s was removed during the build", t->image);
		err = -ENOENT;
	} else {
		snprintf(out, sizeof(out), "template of %s failed: %s", t->image, msg);
		store_audit_log(b->store, "template-failed", NULL, NULL, NULL, out);
	}
	tjob_finish(t, err, out);
	brk_pump(b);
	brk_check_stopped(b);
}

/* Start queued template builds the ledger admits now. */
void pool_run_tjobs(struct brk *b)
{
	if (!b->qemu_version[0] || b->stopping)
		return;
	for (struct tjob *t = b->tjobs, *next; t; t = next) {
		next = t->next;
		if (t->running)
			continue;
		struct db_image img;
		if (store_image_get(b->store, t->image, &img) < 0) {
			tjob_finish(t, -ENOENT, "image removed");
			continue;
		}
		struct quota_req r = {.memory_mb = img.memory_mb};
		snprintf(r.user, sizeof(r.user), TEMPLATE_USER);
		snprintf(r.image, sizeof(r.image), "%s", img.name);
		if (!quota_try(&b->quota, &r))
			continue;
		t->running = true;
		t->memory_mb = img.memory_mb;
		t->accel = b->acc.accel;
		snprintf(t->sha256, sizeof(t->sha256), "%s", img.sha256);
		char id[17], err[512];
		util_random_hex(id, 8);
		snprintf(t->dir, sizeof(t->dir), "%.3900s/%s-%s-%s", b->tpl_root, img.name,
			 accel_name(t->accel), id);
		struct lnch_profile p;
		brk_profile_of(&img, &p);
		struct lnch_config lc = b->lcfg;
		lc.start_timeout_ms = accel_start_timeout_ms(
		    b, (int)(img.start_timeout ? img.start_timeout : b->cfg.timeouts.start) * 1000);
		log_info("template of %s: building in %s (%s)", img.name, t->dir,
			 accel_name(t->accel));
		t->build = img_template_build(b->base, &lc, id, &p, t->dir, b->qemu_version,
					      on_template, t, err, sizeof(err));
		if (!t->build) {
			quota_release(&b->quota, TEMPLATE_USER, img.name, img.memory_mb, true);
			tjob_finish(t, -EIO, err);
		}
	}
}

int brk_template_build(struct brk *b, const char *image, brk_done_fn cb, void *arg, char *err,
		       size_t errlen)
{
	struct db_image img;
	if (store_image_get(b->store, image, &img) < 0) {
		snprintf(err, errlen, "no image '%s'", image);
		return -ENOENT;
	}
	if (b->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	struct tjob_waiter *w = cb ? calloc(1, sizeof(*w)) : NULL;
	struct tjob *t = tjob_find(b, image);
	if (!t)
		t = calloc(1, sizeof(*t));
	if (!t || (cb && !w)) {
		if (t && !t->b)
			free(t);
		free(w);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!t->b) {
		t->b = b;
		snprintf(t->image, sizeof(t->image), "%s", image);
		t->next = b->tjobs;
		b->tjobs = t;
		store_tbuild_add(b->store, image); /* a crash before it is saved builds it again */
	}
	if (w) {
		w->cb = cb;
		w->arg = arg;
		w->next = t->waiters;
		t->waiters = w;
	}
	brk_pump(b);
	return 0;
}

void pool_template_dir(struct brk *b, const char *image, char *dir, size_t len)
{
	store_template_get(b->store, image, accel_name(b->acc.accel), dir, len);
}

bool pool_template_for(struct brk *b, const struct db_image *img, char *dir, size_t len)
{
	char why[300], cur[BRK_PATH_MAX];
	dir[0] = '\0';
	if (!b->qemu_version[0])
		return false;
	if (current_template(b, img, cur, sizeof(cur), why, sizeof(why))) {
		snprintf(dir, len, "%s", cur);
		return true;
	}
	bool building = tjob_find(b, img->name) != NULL;
	if (cur[0] && !building) {
		log_warn("image %s: template not usable (%s): cold boot until it is rebuilt",
			 img->name, why);
		store_template_set(b->store, img->name, accel_name(b->acc.accel), "");
	}
	if (b->cfg.auto_template && !building) {
		char err[256];
		brk_template_build(b, img->name, NULL, NULL, err, sizeof(err));
	}
	return false;
}

/* Remove template generations that are neither current nor used by a live guest. */
void pool_sweep_templates(struct brk *b)
{
	DIR *d = opendir(b->tpl_root);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[BRK_PATH_MAX + 300];
		snprintf(path, sizeof(path), "%s/%s", b->tpl_root, e->d_name);
		bool used = false;
		for (struct tjob *t = b->tjobs; t && !used; t = t->next)
			used = !strcmp(t->dir, path);
		for (struct brk_session *s = b->sessions; s && !used; s = s->next)
			used = s->state != BRK_ENDED && !strcmp(s->rec.template_dir, path);
		for (struct warm *w = b->warm; w && !used; w = w->next)
			used = !strcmp(w->template_dir, path);
		if (!used)
			used = store_template_used(b->store, path) != 0; /* an error keeps it */
		if (!used) {
			log_info("removing unused template %s", path);
			util_rmdir_flat(path);
		}
	}
	closedir(d);
}

/* --- warm pool --- */

static void warm_unlink(struct brk *b, struct warm *w)
{
	for (struct warm **pp = &b->warm; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

static void warm_save(struct brk *b, const struct warm *w)
{
	struct db_warm r = {
	    .pid = lnch_guest_pid(w->guest), .memory_mb = w->memory_mb, .ready = w->ready};
	snprintf(r.id, sizeof(r.id), "%s", w->id);
	snprintf(r.image, sizeof(r.image), "%s", w->image);
	snprintf(r.template_dir, sizeof(r.template_dir), "%s", w->template_dir);
	snprintf(r.accel, sizeof(r.accel), "%s", accel_name(w->accel));
	if (store_warm_save(b->store, &r) < 0)
		log_warn("warm guest %s cannot be recorded: a crash now would orphan it", w->id);
}

static void on_warm_spawned(struct lnch_guest *g, pid_t pid, void *arg)
{
	struct warm *w = arg;
	w->guest = g;
	warm_save(w->b, w);
}

static void on_warm(struct lnch_guest *g, enum lnch_state st, enum lnch_end why, const char *detail,
		    void *arg)
{
	struct warm *w = arg;
	struct brk *b = w->b;
	if (st == LNCH_READY) {
		bool reattached = w->ready; /* a reattached guest was counted as ready */
		w->ready = true;
		if (reattached) {
			log_info("warm guest %s of %s reattached (paused)", w->id, w->image);
			return;
		}
		quota_started(&b->quota, util_now_ms() - w->start_ms);
		warm_save(b, w);
		log_info("warm guest %s of %s ready (paused) in %.2f s", w->id, w->image,
			 (double)(util_now_ms() - w->start_ms) / 1000.0);
		return;
	}
	if (st != LNCH_STOPPED)
		return;
	warm_unlink(b, w);
	store_warm_del(b->store, w->id);
	if (!w->released)
		quota_release(&b->quota, POOL_USER, w->image, w->memory_mb, !w->ready);
	if (!w->stopping)
		log_warn("warm guest %s of %s stopped: %s %s", w->id, w->image, lnch_end_name(why),
			 detail);
	lnch_guest_destroy(g);
	free(w);
	brk_kick(b);
	brk_check_stopped(b);
}

static const struct lnch_guest_cbs warm_cbs = {.state = on_warm, .spawned = on_warm_spawned};

static unsigned pool_count(const struct brk *b, const char *image)
{
	unsigned n = 0;
	for (const struct warm *w = b->warm; w; w = w->next)
		n += !strcmp(w->image, image) && !w->stopping;
	return n;
}

/* Fill one image's pool up to its size, while the host's caps allow. */
static void refill_image(const struct db_image *img, void *arg)
{
	struct brk *b = arg;
	while (pool_count(b, img->name) < img->warm_pool) {
		char tdir[BRK_PATH_MAX];
		if (!pool_template_for(b, img, tdir, sizeof(tdir)))
			break; /* warm guests are template clones only */
		struct quota_req r = {.memory_mb = img->memory_mb};
		snprintf(r.user, sizeof(r.user), POOL_USER);
		snprintf(r.image, sizeof(r.image), "%s", img->name);
		if (!quota_try(&b->quota, &r))
			break; /* only while the host is under its caps */
		struct warm *w = calloc(1, sizeof(*w));
		if (!w) {
			quota_release(&b->quota, POOL_USER, img->name, img->memory_mb, true);
			break;
		}
		w->b = b;
		util_random_hex(w->id, 8);
		snprintf(w->image, sizeof(w->image), "%s", img->name);
		snprintf(w->template_dir, sizeof(w->template_dir), "%s", tdir);
		w->memory_mb = img->memory_mb;
		w->accel = b->acc.accel;
		w->start_ms = util_now_ms();
		struct lnch_profile p;
		brk_profile_of(img, &p);
		struct lnch_start_opts so = {.keep_paused = true};
		char paths[3][4200], err[512];
		img_template_clone_opts(tdir, &so, paths);
		w->next = b->warm;
		b->warm = w;
		struct lnch_guest *g = lnch_guest_start(b->base, &b->lcfg, w->id, &p, &so,
							&warm_cbs, w, err, sizeof(err));
		if (!g) {
			log_err("warm guest of %s: %s", img->name, err);
			warm_unlink(b, w);
			store_warm_del(b->store, w->id);
			quota_release(&b->quota, POOL_USER, img->name, img->memory_mb, true);
			free(w);
			break;
		}
		w->guest = g;
	}
}

void pool_refill(struct brk *b)
{
	if (b->stopping)
		return;
	for (struct warm *w = b->warm; w; w = w->next) {
		if (w->ready && !w->stopping && w->accel != b->acc.accel) {
			log_info("warm guest %s of %s was paused under %s: stopped", w->id,
				 w->image, accel_name(w->accel));
			w->stopping = true;
			lnch_guest_stop(w->guest, 0);
		}
	}
	if (!b->qemu_version[0] || b->quota.n_queue)
		return;
	store_images_warm(b->store, refill_image, b);
}

bool pool_evict(struct brk *b)
{
	for (struct warm *w = b->warm; w; w = w->next) {
		if (w->ready && !w->stopping) {
			log_info("warm guest %s of %s stopped to make room for a waiting user",
				 w->id, w->image);
			/* release at once so the waiting user is admitted now */
			w->stopping = true;
			w->released = true;
			quota_release(&b->quota, POOL_USER, w->image, w->memory_mb, false);
			lnch_guest_stop(w->guest, 0);
			return true;
		}
	}
	return false;
}

struct warm *pool_take(struct brk *b, const char *image)
{
	for (struct warm *w = b->warm; w; w = w->next) {
		if (w->ready && !w->stopping && w->accel == b->acc.accel &&
		    !strcmp(w->image, image)) {
			warm_unlink(b, w);
			quota_release(&b->quota, POOL_USER, w->image, w->memory_mb, false);
			return w;
		}
	}
	return NULL;
}

void pool_put_back(struct brk *b, struct warm *w)
{
	quota_restore(&b->quota, POOL_USER, w->image, w->memory_mb, false);
	w->next = b->warm;
	b->warm = w;
}

void pool_discard(struct brk *b, struct warm *w)
{
	if (!w)
		return;
	pool_put_back(b, w); /* counted again, so that its STOPPED releases it once */
	w->stopping = true;
	lnch_guest_stop(w->guest, 0);
}

void pool_release(struct warm *w)
{
	/* the guest now belongs to a session, whose row is written: the warm row goes */
	store_warm_del(w->b->store, w->id);
	free(w);
}

void pool_stop_all(struct brk *b, bool detach)
{
	for (struct warm *w = b->warm, *next; w; w = next) {
		next = w->next;
		if (detach) {
			/* rows stay: the next nestord reattaches them */
			lnch_guest_detach(w->guest);
			warm_unlink(b, w);
			free(w);
		} else if (!w->stopping) {
			w->stopping = true;
			lnch_guest_stop(w->guest, 0);
		}
	}
}

void pool_kill_all(struct brk *b)
{
	while (b->warm) {
		struct warm *w = b->warm;
		b->warm = w->next;
		lnch_guest_destroy(w->guest); /* killed, files removed, no callback */
		store_warm_del(b->store, w->id);
		if (!w->released)
			quota_release(&b->quota, POOL_USER, w->image, w->memory_mb, !w->ready);
		free(w);
	}
}

bool pool_busy(const struct brk *b)
{
	return b->warm != NULL;
}

bool pool_owns(const struct brk *b, const char *id)
{
	for (const struct warm *w = b->warm; w; w = w->next)
		if (!strcmp(w->id, id))
			return true;
	return false;
}

void pool_accel_changed(struct brk *b, enum lnch_accel old)
{
	/* paused under the old accelerator: even a ready one may never run again */
	for (struct warm *w = b->warm; w; w = w->next) {
		if (!w->stopping && w->accel == old) {
			w->stopping = true;
			lnch_guest_stop(w->guest, 0);
		}
	}
	for (struct tjob *t = b->tjobs; t; t = t->next) {
		if (t->running && t->build && t->accel == old) {
			t->requeue = true;
			img_template_cancel(t->build);
		}
	}
}

void pool_cancel_builds(struct brk *b)
{
	for (struct tjob *t = b->tjobs, *next; t; t = next) {
		next = t->next;
		if (t->running && t->build)
			img_template_cancel(t->build); /* on_template finishes it */
		else if (!t->running)
			tjob_finish(t, -ESHUTDOWN, "nestord is shutting down");
	}
}

/* A warm guest left by an earlier nestord: reattach it if it was ready. */
static void restore_warm(const struct db_warm *r, void *arg)
{
	struct brk *b = arg;
	struct brk_session *s = brk_session_find(b, r->id);
	struct db_image img;
	if (s || !r->ready || store_image_get(b->store, r->image, &img) < 0) {
		/* handed out (a session has it), still restoring, or its image is gone */
		if (!s)
			log_info("warm guest %s of %s: not reattached (%s)", r->id, r->image,
				 r->ready ? "image removed" : "it was not ready yet");
		store_warm_del(b->store, r->id);
		return;
	}
	struct warm *w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->b = b;
	snprintf(w->id, sizeof(w->id), "%s", r->id);
	snprintf(w->image, sizeof(w->image), "%s", r->image);
	snprintf(w->template_dir, sizeof(w->template_dir), "%s", r->template_dir);
	w->memory_mb = r->memory_mb;
	w->accel = !strcmp(r->accel, "kvm") ? LNCH_ACCEL_KVM : LNCH_ACCEL_TCG;
	w->ready = true; /* counted as ready; READY only confirms it */
	w->start_ms = util_now_ms();
	char err[256];
	quota_restore(&b->quota, POOL_USER, w->image, w->memory_mb, false);
	w->next = b->warm;
	b->warm = w;
	w->guest = lnch_guest_attach(b->base, &b->lcfg, w->id, r->pid, NULL, &warm_cbs, w, err,
				     sizeof(err));
	if (!w->guest) {
		log_warn("warm guest %s of %s cannot be reattached: %s", w->id, w->image, err);
		warm_unlink(b, w);
		quota_release(&b->quota, POOL_USER, w->image, w->memory_mb, false);
		store_warm_del(b->store, w->id);
		free(w);
		return;
	}
	log_info("warm guest %s of %s: reattaching pid %d", w->id, w->image, (int)r->pid);
}

static void restore_build(const char *image, void *arg)
{
	struct brk *b = arg;
	char err[256];
	log_info("template of %s: its build was interrupted: building again", image);
	if (brk_template_build(b, image, NULL, NULL, err, sizeof(err)) < 0) {
		log_warn("template of %s: %s", image, err);
		store_tbuild_del(b->store, image);
	}
}

void pool_restore(struct brk *b)
{
	store_warms(b->store, restore_warm, b);
	store_tbuilds(b->store, restore_build, b);
}

static void image_json(const struct db_image *img, void *arg)
{
	json_object_array_add(arg, rec_json(&rec_images, img, REC_ALL, 0));
}

json_object *brk_images_json(struct brk *b)
{
	json_object *arr = json_object_new_array();
	store_images_all(b->store, image_json, arr);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i), *v;
		if (!json_object_object_get_ex(o, "name", &v))
			continue;
		struct db_image img;
		if (store_image_get(b->store, json_object_get_string(v), &img) < 0)
			continue;
		unsigned ready = 0, warming = 0;
		for (struct warm *w = b->warm; w; w = w->next) {
			if (strcmp(w->image, img.name) || w->stopping)
				continue;
			ready += w->ready;
			warming += !w->ready;
		}
		json_object_object_add(o, "warm_ready", json_object_new_int64(ready));
		json_object_object_add(o, "warm_starting", json_object_new_int64(warming));
		char why[300] = "", tdir[BRK_PATH_MAX];
		bool usable = current_template(b, &img, tdir, sizeof(tdir), why, sizeof(why));
		const char *tstate = tjob_find(b, img.name) ? "building"
				     : !tdir[0]		    ? "none"
				     : !b->qemu_version[0]  ? "unknown"
				     : usable		    ? "ready"
							    : "invalid";
		if (tdir[0])
			json_object_object_add(o, "template_dir", json_object_new_string(tdir));
		json_object *per = json_object_new_object();
		for (int a = LNCH_ACCEL_TCG; a <= LNCH_ACCEL_KVM; a++) {
			char d[BRK_PATH_MAX];
			if (store_template_get(b->store, img.name, accel_name(a), d, sizeof(d)) == 0)
				json_object_object_add(per, accel_name(a),
						       json_object_new_string(d));
		}
		json_object_object_add(o, "templates", per);
		json_object_object_add(o, "template", json_object_new_string(tstate));
		if (why[0] && !strcmp(tstate, "invalid"))
			json_object_object_add(o, "template_problem", json_object_new_string(why));
		struct img_template_meta m;
		if (tdir[0] && img_template_meta_read(tdir, &m) == 0) {
			json_object_object_add(o, "template_qemu",
					       json_object_new_string(m.qemu_version));
			json_object_object_add(o, "template_fingerprint",
					       json_object_new_string(m.fingerprint));
			json_object_object_add(o, "template_build_s",
					       json_object_new_double(m.build_s));
		}
	}
	return arr;
}
