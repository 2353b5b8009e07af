/*
 * Images on the broker's side: registration (inspected in the background,
 * then made read-only), templates (built through the loop, counted against
 * max_starting as "@template"), and warm pools (paused template clones
 * counted against the host caps as "@warm", handed out on connect).
 * Nothing here blocks: qemu-img, sha256sum and QEMU are children.
 */
#include "brk-private.h"
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
	brk_pump(b);
}

void pool_start_version_probe(struct brk *b)
{
	const char *argv[] = {b->cfg.qemu, "--version", NULL};
	struct job_spec spec = {.argv = argv, .stdout_fd = -1, .stderr_fd = -2};
	if (!job_run(b->base, &spec, on_version, b))
		log_err("cannot run %s --version", b->cfg.qemu);
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
	int r = db_image_put(b->db, &j->img);
	if (r == -EEXIST)
		snprintf(out, sizeof(out), "image '%s' already exists", j->img.name);
	else if (r < 0)
		snprintf(out, sizeof(out), "database error");
	else {
		db_audit(b->db, "image-add", NULL, NULL, NULL, j->img.name);
		log_info("image %s registered: %s sha256 %.16s...", j->img.name, j->img.base,
			 j->img.sha256);
		snprintf(out, sizeof(out), "image %s added", j->img.name);
	}
	j->cb(r, out, j->arg);
	free(j);
	brk_pump(b); /* a warm pool may want filling */
}

int brk_image_add(struct brk *b, const struct db_image *img, brk_done_fn cb, void *arg, char *err,
		  size_t errlen)
{
	if (!util_name_valid(img->name)) {
		snprintf(err, errlen, "invalid image name (1-64 of A-Z a-z 0-9 . _ -)");
		return -EINVAL;
	}
	struct db_image existing;
	if (db_image_get(b->db, img->name, &existing) == 0) {
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
	if (db_image_get(b->db, image, &img) < 0) {
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
	if (db_image_update(b->db, &img) < 0) {
		snprintf(err, errlen, "database error");
		return -EIO;
	}
	quota_set_image_cap(&b->quota, image, img.max_sessions);
	char d[160];
	snprintf(d, sizeof(d), "%s warm_pool=%u max_sessions=%u%s", image, img.warm_pool,
		 img.max_sessions, rdp ? " rdp policy" : "");
	db_audit(b->db, "image-set", NULL, NULL, NULL, d);
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
	free(t);
}

static void on_template(int err, const char *msg, const struct img_template_meta *meta, void *arg)
{
	struct tjob *t = arg;
	struct brk *b = t->b;
	quota_release(&b->quota, TEMPLATE_USER, t->image, t->memory_mb, true);
	char out[700];
	struct db_image img;
	if (!err && db_image_get(b->db, t->image, &img) == 0) {
		char old[BRK_PATH_MAX];
		snprintf(old, sizeof(old), "%s", img.template_dir);
		snprintf(img.template_dir, sizeof(img.template_dir), "%s", t->dir);
		db_image_update(b->db, &img);
		snprintf(out, sizeof(out), "template of %s saved in %.2f s", t->image,
			 meta->build_s);
		db_audit(b->db, "template-built", NULL, NULL, NULL, out);
		/* older generations go once no guest uses them */
		pool_sweep_templates(b);
	} else if (!err) {
		snprintf(out, sizeof(out), "image %s was removed during the build", t->image);
		err = -ENOENT;
	} else {
		snprintf(out, sizeof(out), "template of %s failed: %s", t->image, msg);
		db_audit(b->db, "template-failed", NULL, NULL, NULL, out);
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
		if (db_image_get(b->db, t->image, &img) < 0) {
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
		char id[17], err[512];
		util_random_hex(id, 8);
		snprintf(t->dir, sizeof(t->dir), "%.3900s/%s-%s", b->tpl_root, img.name, id);
		struct lnch_profile p;
		brk_profile_of(&img, &p);
		log_info("template of %s: building in %s", img.name, t->dir);
		if (img_template_build(b->base, &b->lcfg, id, &p, t->dir, b->qemu_version,
				       on_template, t, err, sizeof(err)) < 0) {
			quota_release(&b->quota, TEMPLATE_USER, img.name, img.memory_mb, true);
			tjob_finish(t, -EIO, err);
		}
	}
}

int brk_template_build(struct brk *b, const char *image, brk_done_fn cb, void *arg, char *err,
		       size_t errlen)
{
	struct db_image img;
	if (db_image_get(b->db, image, &img) < 0) {
		snprintf(err, errlen, "no image '%s'", image);
		return -ENOENT;
	}
	if (b->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	struct tjob *t = tjob_find(b, image);
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		t->b = b;
		snprintf(t->image, sizeof(t->image), "%s", image);
		t->next = b->tjobs;
		b->tjobs = t;
	}
	if (cb) {
		struct tjob_waiter *w = calloc(1, sizeof(*w));
		if (w) {
			w->cb = cb;
			w->arg = arg;
			w->next = t->waiters;
			t->waiters = w;
		}
	}
	brk_pump(b);
	return 0;
}

bool pool_template_for(struct brk *b, const struct db_image *img, char *dir, size_t len)
{
	char why[300];
	struct lnch_profile p;
	dir[0] = '\0';
	if (!b->qemu_version[0])
		return false;
	brk_profile_of(img, &p);
	if (img->template_dir[0] && img_template_usable(img->template_dir, &b->lcfg, &p,
							b->qemu_version, why, sizeof(why))) {
		snprintf(dir, len, "%s", img->template_dir);
		return true;
	}
	if (img->template_dir[0])
		log_warn("image %s: template not usable (%s): cold boot until it is rebuilt",
			 img->name, why);
	if (b->cfg.auto_template && !tjob_find(b, img->name)) {
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
		json_object *imgs = db_images_json(b->db);
		for (size_t i = 0; i < json_object_array_length(imgs) && !used; i++) {
			json_object *v;
			if (json_object_object_get_ex(json_object_array_get_idx(imgs, i),
						      "template_dir", &v))
				used = !strcmp(json_object_get_string(v), path);
		}
		json_object_put(imgs);
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

static void on_warm(struct lnch_guest *g, enum lnch_state st, enum lnch_end why, const char *detail,
		    void *arg)
{
	struct warm *w = arg;
	struct brk *b = w->b;
	if (st == LNCH_READY) {
		w->ready = true;
		quota_started(&b->quota, util_now_ms() - w->start_ms);
		log_info("warm guest %s of %s ready (paused) in %.2f s", w->id, w->image,
			 (double)(util_now_ms() - w->start_ms) / 1000.0);
		return;
	}
	if (st != LNCH_STOPPED)
		return;
	warm_unlink(b, w);
	if (!w->released)
		quota_release(&b->quota, POOL_USER, w->image, w->memory_mb, !w->ready);
	if (!w->stopping)
		log_warn("warm guest %s of %s stopped: %s %s", w->id, w->image, lnch_end_name(why),
			 detail);
	lnch_guest_destroy(g);
	free(w);
	brk_pump(b);
	brk_check_stopped(b);
}

static const struct lnch_guest_cbs warm_cbs = {.state = on_warm};

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
		w->start_ms = util_now_ms();
		struct lnch_profile p;
		brk_profile_of(img, &p);
		struct lnch_start_opts so = {.keep_paused = true};
		char paths[3][4200], err[512];
		img_template_clone_opts(tdir, &so, paths);
		w->guest = lnch_guest_start(b->base, &b->lcfg, w->id, &p, &so, &warm_cbs, w, err,
					    sizeof(err));
		if (!w->guest) {
			log_err("warm guest of %s: %s", img->name, err);
			quota_release(&b->quota, POOL_USER, img->name, img->memory_mb, true);
			free(w);
			break;
		}
		w->next = b->warm;
		b->warm = w;
	}
}

void pool_refill(struct brk *b)
{
	if (b->stopping || !b->qemu_version[0] || b->quota.n_queue)
		return;
	db_images_warm(b->db, refill_image, b);
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
		if (w->ready && !w->stopping && !strcmp(w->image, image)) {
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

void pool_release(struct warm *w)
{
	free(w); /* the guest now belongs to a session */
}

void pool_stop_all(struct brk *b, bool detach)
{
	for (struct warm *w = b->warm, *next; w; w = next) {
		next = w->next;
		if (detach) {
			/* nobody would reattach a warm guest: stop it even when keeping sessions */
			lnch_guest_destroy(w->guest);
			warm_unlink(b, w);
			free(w);
		} else if (!w->stopping) {
			w->stopping = true;
			lnch_guest_stop(w->guest, 0);
		}
	}
}

bool pool_busy(const struct brk *b)
{
	return b->warm != NULL;
}

json_object *brk_images_json(struct brk *b)
{
	json_object *arr = db_images_json(b->db);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i), *v;
		if (!json_object_object_get_ex(o, "name", &v))
			continue;
		struct db_image img;
		if (db_image_get(b->db, json_object_get_string(v), &img) < 0)
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
		char why[300] = "";
		struct lnch_profile p;
		brk_profile_of(&img, &p);
		const char *tstate = tjob_find(b, img.name) ? "building"
				     : !img.template_dir[0] ? "none"
				     : !b->qemu_version[0]  ? "unknown"
				     : img_template_usable(img.template_dir, &b->lcfg, &p,
							   b->qemu_version, why, sizeof(why))
					 ? "ready"
					 : "invalid";
		json_object_object_add(o, "template", json_object_new_string(tstate));
		if (why[0] && !strcmp(tstate, "invalid"))
			json_object_object_add(o, "template_problem", json_object_new_string(why));
		struct img_template_meta m;
		if (img.template_dir[0] && img_template_meta_read(img.template_dir, &m) == 0) {
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
