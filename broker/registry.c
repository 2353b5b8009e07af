/*
 * The image registry (see registry.h). Nothing here blocks: qemu-img and
 * sha256sum are children (images/image.c).
 */
#include "registry.h"
#include "admit.h"
#include "hostaccel.h"
#include "image.h"
#include "log.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

void reg_profile_of(const struct db_image *img, struct lnch_profile *p)
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
	if (ready_spec(img->ready, p) < 0)
		p->ready = LNCH_READY_RUNNING;
	if (!strcmp(img->backend, "rdp")) {
		/* The guest's RDP server, reached only through 127.0.0.1:<picked>. */
		p->net = LNCH_NET_RESTRICTED;
		p->guest_port = img->rdp_port ? img->rdp_port : 3389;
		p->ready = LNCH_READY_RDP;
	}
}

/* --- registration --- */

struct addjob {
	struct host *h;
	struct db_image img;
	brk_done_fn cb;
	void *arg;
};

static void on_inspected(int err, const struct img_facts *f, const char *msg, void *arg)
{
	struct addjob *j = arg;
	struct host *h = j->h;
	char out[700];
	if (err) {
		snprintf(out, sizeof(out), "%.300s: %.300s", j->img.base, msg);
		j->cb(err, out, j->arg);
		goto done;
	}
	/* Read-only from now on: a written base would corrupt every clone. */
	struct stat st;
	if (chmod(j->img.base, 0444) < 0 || stat(j->img.base, &st) < 0) {
		snprintf(out, sizeof(out), "cannot make %.300s read-only: %s", j->img.base,
			 strerror(errno));
		j->cb(-EPERM, out, j->arg);
		goto done;
	}
	memcpy(j->img.sha256, f->sha256, sizeof(j->img.sha256));
	j->img.size = (uint64_t)st.st_size;
	j->img.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	j->img.virtual_mb = (unsigned)(f->info.virtual_size >> 20);
	int r = store_image_put(h->store, &j->img);
	if (r == -EEXIST)
		snprintf(out, sizeof(out), "image '%s' already exists", j->img.name);
	else if (r < 0)
		snprintf(out, sizeof(out), "cannot store the image: %s",
			 r == -EAGAIN ? "the database is busy, try again" : strerror(-r));
	else {
		store_audit_log(h->store, "image-add", NULL, NULL, NULL, j->img.name);
		log_info("image %s registered: %s sha256 %.16s...", j->img.name, j->img.base,
			 j->img.sha256);
		snprintf(out, sizeof(out), "image %s added", j->img.name);
		accel_image_added(h->acc, &j->img);
	}
	j->cb(r, out, j->arg);
	host_kick(h); /* a warm pool may want filling */
done:
	explicit_bzero(j->img.rdp.password, sizeof(j->img.rdp.password));
	free(j);
}

int reg_image_add(struct host *h, const struct db_image *img, brk_done_fn cb, void *arg, char *err,
		  size_t errlen)
{
	if (h->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	if (!util_name_valid(img->name)) {
		snprintf(err, errlen, "invalid image name (1-64 of A-Z a-z 0-9 . _ -)");
		return -EINVAL;
	}
	struct db_image existing;
	if (store_image_get(h->store, img->name, &existing) == 0) {
		explicit_bzero(existing.rdp.password, sizeof(existing.rdp.password));
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
	reg_profile_of(img, &p);
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
	j->h = h;
	j->img = *img;
	j->cb = cb;
	j->arg = arg;
	int r = img_inspect(h->base, h->cfg.qemu_img, img->base, h->cfg.image_dir, on_inspected, j);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", img->base,
			 r == -EINVAL ? "not a regular file" : strerror(-r));
		explicit_bzero(j->img.rdp.password, sizeof(j->img.rdp.password));
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
	if (r->clip_formats[0] && strcmp(r->clip_formats, "text") &&
	    strcmp(r->clip_formats, "all")) {
		snprintf(err, errlen, "clipboard_formats must be text or all");
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

int reg_image_set(struct host *h, const char *image, const unsigned *warm_pool,
		  const unsigned *max_sessions, const struct db_rdp_policy *rdp,
		  struct db_image *out, char *err, size_t errlen)
{
	struct db_image *img = out;
	if (store_image_get(h->store, image, img) < 0) {
		snprintf(err, errlen, "no image '%s'", image);
		return -ENOENT;
	}
	if (rdp && brk_rdp_policy_check(rdp, err, errlen) < 0)
		return -EINVAL;
	if (warm_pool)
		img->warm_pool = *warm_pool;
	if (max_sessions)
		img->max_sessions = *max_sessions;
	if (rdp)
		img->rdp = *rdp;
	int r = store_image_update(h->store, img);
	explicit_bzero(img->rdp.password, sizeof(img->rdp.password));
	if (r < 0) {
		snprintf(err, errlen, "cannot store the image: %s",
			 r == -EAGAIN ? "the database is busy, try again" : strerror(-r));
		return r;
	}
	admit_image_cap(h->adm, image, img->max_sessions);
	char d[160];
	snprintf(d, sizeof(d), "%s warm_pool=%u max_sessions=%u%s", image, img->warm_pool,
		 img->max_sessions, rdp ? " rdp policy" : "");
	store_audit_log(h->store, "image-set", NULL, NULL, NULL, d);
	return 0;
}

int reg_image_remove(struct host *h, const char *name, char *err, size_t errlen)
{
	int r = store_image_del(h->store, name);
	if (r == -EBUSY)
		snprintf(err, errlen, "image '%s' is used by apps: remove them first", name);
	else if (r == -ENOENT)
		snprintf(err, errlen, "no image '%s'", name);
	else if (r < 0)
		snprintf(err, errlen, "cannot remove the image: %s",
			 r == -EAGAIN ? "the database is busy, try again" : strerror(-r));
	else
		store_audit_log(h->store, "image-remove", NULL, NULL, NULL, name);
	return r;
}

int reg_app_add(struct host *h, const struct db_app *app, char *err, size_t errlen)
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
	if (store_image_get(h->store, app->image, &img) < 0) {
		snprintf(err, errlen, "no image '%s'", app->image);
		return -ENOENT;
	}
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	int r = store_app_put(h->store, app);
	if (r == -EEXIST)
		snprintf(err, errlen, "app '%s' already exists", app->alias);
	else if (r < 0)
		snprintf(err, errlen, "cannot store the app: %s",
			 r == -EAGAIN ? "the database is busy, try again" : strerror(-r));
	else
		store_audit_log(h->store, "app-add", NULL, NULL, NULL, app->alias);
	return r;
}

int reg_app_remove(struct host *h, const char *alias, char *err, size_t errlen)
{
	int r = store_app_del(h->store, alias);
	if (r == -ENOENT)
		snprintf(err, errlen, "no app '%s'", alias);
	else if (r < 0)
		snprintf(err, errlen, "cannot remove the app: %s",
			 r == -EAGAIN ? "the database is busy, try again" : strerror(-r));
	else
		store_audit_log(h->store, "app-remove", NULL, NULL, NULL, alias);
	return r;
}
