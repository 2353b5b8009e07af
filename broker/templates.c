/* Templates (see templates.h). Nothing here blocks: QEMU is a child. */
#include "templates.h"
#include "admit.h"
#include "hostaccel.h"
#include "log.h"
#include "registry.h"
#include "store.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tjob_waiter {
	struct tjob_waiter *next;
	brk_done_fn cb;
	void *arg;
};

/* A template build, queued or running, and who waits for it. */
struct tjob {
	struct tjob *next;
	struct templates *owner;
	char image[65];
	char dir[BRK_PATH_MAX];
	bool running;
	bool requeue;	 /* cancelled to run again (the accelerator changed) */
	char sha256[65]; /* of the base it was started from */
	enum lnch_accel accel;
	struct admit_ticket tk;
	struct img_tbuild *build;
	struct tjob_waiter *waiters;
};

struct templates {
	struct host *h;
	tpl_in_use_fn in_use;
	void *in_use_arg;
	struct tjob *jobs;
	char qemu_version[96]; /* "" until known: templates wait for it */
	bool version_asked;    /* the version probe ended (known or not) */
};

struct templates *tpl_create(struct host *h, tpl_in_use_fn in_use, void *arg)
{
	struct templates *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->h = h;
	t->in_use = in_use;
	t->in_use_arg = arg;
	return t;
}

/* --- QEMU version: recorded with templates, checked before clones --- */

static void on_version(const char *version, void *arg)
{
	struct templates *t = arg;
	if (version) {
		snprintf(t->qemu_version, sizeof(t->qemu_version), "%s", version);
		log_info("QEMU %s", t->qemu_version);
	} else {
		log_err("cannot read the QEMU version: templates are disabled");
	}
	t->version_asked = true;
	host_kick(t->h);
}

void tpl_version_probe(struct templates *t)
{
	if (t->h->lnch->version(t->h->base, t->h->cfg.qemu, on_version, t) < 0) {
		log_err("cannot run %s --version: templates are disabled", t->h->cfg.qemu);
		t->version_asked = true;
	}
}

bool tpl_version_asked(const struct templates *t)
{
	return t->version_asked;
}

/* --- builds --- */

static struct tjob *job_find(struct templates *t, const char *image)
{
	for (struct tjob *j = t->jobs; j; j = j->next)
		if (!strcmp(j->image, image))
			return j;
	return NULL;
}

/* Tell the waiters, forget the job (and its row unless shutdown cut it). */
static void job_finish(struct tjob *j, int err, const char *msg)
{
	struct templates *t = j->owner;
	for (struct tjob **pp = &t->jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	admit_release(t->h->adm, &j->tk);
	while (j->waiters) {
		struct tjob_waiter *w = j->waiters;
		j->waiters = w->next;
		w->cb(err, msg, w->arg);
		free(w);
	}
	/* a build cut by shutdown runs again at the next start */
	if (err != -ESHUTDOWN)
		store_tbuild_del(t->h->store, j->image);
	free(j);
}

static void template_dir(struct templates *t, const char *image, char *dir, size_t len)
{
	store_template_get(t->h->store, image, accel_name(t->h->lcfg.accel), dir, len);
}

/*
 * IMG's template for the current accelerator into DIR ("" none), and whether
 * it can serve clones now; WHY (if given) says why not when there is one.
 */
static bool current_template(struct templates *t, const struct db_image *img, char *dir, size_t len,
			     char *why, size_t whylen)
{
	char scratch[300];
	struct lnch_profile p;
	reg_profile_of(img, &p);
	template_dir(t, img->name, dir, len);
	return dir[0] && t->qemu_version[0] &&
	       t->h->lnch->tpl_usable(dir, &t->h->lcfg, &p, t->qemu_version, why ? why : scratch,
				      why ? whylen : sizeof(scratch));
}

static bool usable_template(struct templates *t, const char *image)
{
	struct db_image img;
	char dir[BRK_PATH_MAX];
	if (store_image_get(t->h->store, image, &img) < 0)
		return false;
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	return current_template(t, &img, dir, sizeof(dir), NULL, 0);
}

bool tpl_usable(struct templates *t, const char *image)
{
	return usable_template(t, image);
}

static void on_built(int err, const char *msg, const struct img_template_meta *meta, void *arg)
{
	struct tjob *j = arg;
	struct templates *t = j->owner;
	struct host *h = t->h;
	admit_release(h->adm, &j->tk);
	j->build = NULL;
	char out[700], who[128];
	struct db_image img;
	snprintf(who, sizeof(who), "the template build of %s", j->image);
	if (h->stopping && err) {
		job_finish(j, -ESHUTDOWN, "nestord is shutting down");
		host_kick(h);
		return;
	}
	if ((err == -ETIMEDOUT && accel_start_timed_out(h->acc, j->accel, who)) ||
	    (err == -ECANCELED && j->requeue && !h->stopping)) {
		if (!j->waiters && usable_template(t, j->image)) {
			/* an automatic build, and the new accelerator has its template */
			job_finish(j, -ECANCELED, "the accelerator changed");
			host_kick(h);
			return;
		}
		/* asked for: build again under the new accelerator */
		log_info("template of %s: building again under %s", j->image,
			 accel_name(h->lcfg.accel));
		j->running = j->requeue = false;
		host_kick(h);
		return;
	}
	int got = err ? -1 : store_image_get(h->store, j->image, &img);
	if (got == 0)
		explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	if (got == 0 && strcmp(img.sha256, j->sha256)) {
		/* removed and registered again meanwhile: this template is of the old base */
		snprintf(out, sizeof(out), "image %s changed during the build", j->image);
		util_rmdir_flat(j->dir);
		err = -ESTALE;
	} else if (got == 0) {
		if (store_template_set(h->store, j->image, accel_name(j->accel), j->dir) < 0)
			log_err("template of %s: cannot be recorded: it is built again later",
				j->image);
		snprintf(out, sizeof(out), "template of %s (%s) saved in %.2f s", j->image,
			 accel_name(j->accel), meta->build_s);
		store_audit_log(h->store, "template-built", NULL, NULL, NULL, out);
		/* older generations go once no guest uses them */
		tpl_sweep(t);
	} else if (!err) {
		snprintf(out, sizeof(out), "image %s was removed during the build", j->image);
		err = -ENOENT;
	} else {
		snprintf(out, sizeof(out), "template of %s failed: %s", j->image, msg);
		store_audit_log(h->store, "template-failed", NULL, NULL, NULL, out);
	}
	job_finish(j, err, out);
	host_kick(h);
}

void tpl_run(struct templates *t)
{
	struct host *h = t->h;
	if (!t->qemu_version[0] || h->stopping)
		return;
	for (struct tjob *j = t->jobs, *next; j; j = next) {
		next = j->next;
		if (j->running)
			continue;
		struct db_image img;
		if (store_image_get(h->store, j->image, &img) < 0) {
			job_finish(j, -ENOENT, "image removed");
			continue;
		}
		explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
		admit_ticket_init(&j->tk, TEMPLATE_USER, img.name, img.memory_mb);
		if (!admit_try(h->adm, &j->tk))
			continue;
		j->running = true;
		j->accel = h->lcfg.accel;
		snprintf(j->sha256, sizeof(j->sha256), "%s", img.sha256);
		char id[17], err[512];
		util_random_hex(id, 8);
		snprintf(j->dir, sizeof(j->dir), "%.3900s/%s-%s-%s", h->tpl_root, img.name,
			 accel_name(j->accel), id);
		struct lnch_profile p;
		reg_profile_of(&img, &p);
		struct lnch_config lc = h->lcfg;
		lc.start_timeout_ms =
		    accel_start_timeout_ms(h->acc, host_start_timeout_ms(h, img.start_timeout));
		log_info("template of %s: building in %s (%s)", img.name, j->dir,
			 accel_name(j->accel));
		j->build = h->lnch->tpl_build(h->base, &lc, id, &p, j->dir, t->qemu_version,
					      on_built, j, err, sizeof(err));
		if (!j->build)
			job_finish(j, -EIO, err);
	}
}

int tpl_build(struct templates *t, const char *image, brk_done_fn cb, void *arg, char *err,
	      size_t errlen)
{
	struct db_image img;
	if (store_image_get(t->h->store, image, &img) < 0) {
		snprintf(err, errlen, "no image '%s'", image);
		return -ENOENT;
	}
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	if (t->h->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	struct tjob_waiter *w = cb ? calloc(1, sizeof(*w)) : NULL;
	struct tjob *j = job_find(t, image);
	bool fresh = !j;
	if (fresh)
		j = calloc(1, sizeof(*j));
	if (!j || (cb && !w)) {
		if (fresh)
			free(j);
		free(w);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (fresh) {
		j->owner = t;
		snprintf(j->image, sizeof(j->image), "%s", image);
		j->next = t->jobs;
		t->jobs = j;
		store_tbuild_add(t->h->store,
				 image); /* a crash before it is saved builds it again */
	}
	if (w) {
		w->cb = cb;
		w->arg = arg;
		w->next = j->waiters;
		j->waiters = w;
	}
	host_kick(t->h);
	return 0;
}

bool tpl_for(struct templates *t, const struct db_image *img, char *dir, size_t len)
{
	char why[300], cur[BRK_PATH_MAX];
	dir[0] = '\0';
	if (!t->qemu_version[0])
		return false;
	if (current_template(t, img, cur, sizeof(cur), why, sizeof(why))) {
		snprintf(dir, len, "%s", cur);
		return true;
	}
	bool building = job_find(t, img->name) != NULL;
	if (cur[0] && !building) {
		log_warn("image %s: template not usable (%s): cold boot until it is rebuilt",
			 img->name, why);
		store_template_set(t->h->store, img->name, accel_name(t->h->lcfg.accel), "");
	}
	if (t->h->cfg.auto_template && !building) {
		char err[256];
		tpl_build(t, img->name, NULL, NULL, err, sizeof(err));
	}
	return false;
}

void tpl_sweep(struct templates *t)
{
	DIR *d = opendir(t->h->tpl_root);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[BRK_PATH_MAX + 300];
		snprintf(path, sizeof(path), "%s/%s", t->h->tpl_root, e->d_name);
		bool used = false;
		for (struct tjob *j = t->jobs; j && !used; j = j->next)
			used = !strcmp(j->dir, path);
		if (!used)
			used = t->in_use(path, t->in_use_arg);
		if (!used)
			used = store_template_used(t->h->store, path) != 0; /* an error keeps it */
		if (!used) {
			log_info("removing unused template %s", path);
			util_rmdir_flat(path);
		}
	}
	closedir(d);
}

static void restore_build(const char *image, void *arg)
{
	struct templates *t = arg;
	char err[256];
	log_info("template of %s: its build was interrupted: building again", image);
	if (tpl_build(t, image, NULL, NULL, err, sizeof(err)) < 0) {
		log_warn("template of %s: %s", image, err);
		store_tbuild_del(t->h->store, image);
	}
}

void tpl_restore(struct templates *t)
{
	store_tbuilds(t->h->store, restore_build, t);
}

void tpl_accel_changed(struct templates *t, enum lnch_accel old)
{
	for (struct tjob *j = t->jobs; j; j = j->next) {
		if (j->running && j->build && j->accel == old) {
			j->requeue = true;
			t->h->lnch->tpl_cancel(j->build);
		}
	}
}

void tpl_cancel_all(struct templates *t)
{
	for (struct tjob *j = t->jobs, *next; j; j = next) {
		next = j->next;
		if (j->running && j->build)
			t->h->lnch->tpl_cancel(j->build); /* on_built finishes it */
		else if (!j->running)
			job_finish(j, -ESHUTDOWN, "nestord is shutting down");
	}
}

bool tpl_busy(const struct templates *t)
{
	/* qemu --version still running: a shutdown waits for it (~50 ms), leaving no job */
	return t->jobs != NULL || !t->version_asked;
}

void tpl_json_add(struct templates *t, const struct db_image *img, json_object *o)
{
	char why[300] = "", tdir[BRK_PATH_MAX];
	bool usable = current_template(t, img, tdir, sizeof(tdir), why, sizeof(why));
	const char *state = job_find(t, img->name) ? "building"
			    : !tdir[0]		   ? "none"
			    : !t->qemu_version[0]  ? "unknown"
			    : usable		   ? "ready"
						   : "invalid";
	if (tdir[0])
		json_object_object_add(o, "template_dir", json_object_new_string(tdir));
	json_object *per = json_object_new_object();
	for (int a = LNCH_ACCEL_TCG; a <= LNCH_ACCEL_KVM; a++) {
		char d[BRK_PATH_MAX];
		if (store_template_get(t->h->store, img->name, accel_name(a), d, sizeof(d)) == 0)
			json_object_object_add(per, accel_name(a), json_object_new_string(d));
	}
	json_object_object_add(o, "templates", per);
	json_object_object_add(o, "template", json_object_new_string(state));
	if (why[0] && !strcmp(state, "invalid"))
		json_object_object_add(o, "template_problem", json_object_new_string(why));
	struct img_template_meta m;
	if (tdir[0] && img_template_meta_read(tdir, &m) == 0) {
		json_object_object_add(o, "template_qemu", json_object_new_string(m.qemu_version));
		json_object_object_add(o, "template_fingerprint",
				       json_object_new_string(m.fingerprint));
		json_object_object_add(o, "template_build_s", json_object_new_double(m.build_s));
	}
}

void tpl_destroy(struct templates *t)
{
	if (!t)
		return;
	while (t->jobs) {
		struct tjob *j = t->jobs;
		t->jobs = j->next;
		/* its QEMU is killed; the row stays: built again */
		t->h->lnch->tpl_destroy(j->build);
		admit_release(t->h->adm, &j->tk);
		while (j->waiters) {
			struct tjob_waiter *w = j->waiters;
			j->waiters = w->next;
			w->cb(-ESHUTDOWN, "nestord is shutting down", w->arg);
			free(w);
		}
		free(j);
	}
	free(t);
}
