/* Warm pools (see warm.h). Nothing here blocks: QEMU is a child. */
#include "warm.h"
#include "admit.h"
#include "hostaccel.h"
#include "log.h"
#include "registry.h"
#include "store.h"
#include "templates.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A paused template clone waiting to be handed out. */
struct warm {
	struct warm *next;
	struct warm_pool *wp;
	char id[17];
	char image[65];
	char template_dir[BRK_PATH_MAX];
	enum lnch_accel accel;
	struct lnch_guest *guest;
	struct admit_ticket tk; /* RUNNING once ready */
	bool ready;
	bool stopping;
	int64_t start_ms;
};

struct warm_pool {
	struct host *h;
	struct templates *tpl;
	struct warm *list;
};

struct warm_pool *warm_create(struct host *h, struct templates *tpl)
{
	struct warm_pool *wp = calloc(1, sizeof(*wp));
	if (!wp)
		return NULL;
	wp->h = h;
	wp->tpl = tpl;
	return wp;
}

static void unlink_warm(struct warm_pool *wp, struct warm *w)
{
	for (struct warm **pp = &wp->list; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

static void save(const struct warm *w)
{
	const struct host *h = w->wp->h;
	struct db_warm r = {
	    .pid = h->lnch->pid(w->guest), .memory_mb = w->tk.memory_mb, .ready = w->ready};
	snprintf(r.id, sizeof(r.id), "%s", w->id);
	snprintf(r.image, sizeof(r.image), "%s", w->image);
	snprintf(r.template_dir, sizeof(r.template_dir), "%s", w->template_dir);
	snprintf(r.accel, sizeof(r.accel), "%s", accel_name(w->accel));
	if (store_warm_save(h->store, &r) < 0)
		log_warn("warm guest %s cannot be recorded: a crash now would orphan it", w->id);
}

/* Stop W's guest; its STOPPED frees it. */
static void stop(struct warm *w)
{
	w->stopping = true;
	w->wp->h->lnch->stop(w->guest, 0);
}

static void on_spawned(struct lnch_guest *g, pid_t pid, void *arg)
{
	struct warm *w = arg;
	w->guest = g;
	save(w);
}

static void on_state(struct lnch_guest *g, enum lnch_state st, enum lnch_end why,
		     const char *detail, void *arg)
{
	struct warm *w = arg;
	struct warm_pool *wp = w->wp;
	struct host *h = wp->h;
	if (st == LNCH_READY) {
		bool reattached = w->ready; /* a reattached guest was counted as ready */
		w->ready = true;
		if (reattached) {
			log_info("warm guest %s of %s reattached (paused)", w->id, w->image);
			return;
		}
		admit_started(h->adm, &w->tk, util_now_ms() - w->start_ms);
		save(w);
		log_info("warm guest %s of %s ready (paused) in %.2f s", w->id, w->image,
			 (double)(util_now_ms() - w->start_ms) / 1000.0);
		return;
	}
	if (st != LNCH_STOPPED)
		return;
	unlink_warm(wp, w);
	store_warm_del(h->store, w->id);
	admit_release(h->adm, &w->tk);
	if (!w->stopping)
		log_warn("warm guest %s of %s stopped: %s %s", w->id, w->image, lnch_end_name(why),
			 detail);
	h->lnch->destroy(g);
	free(w);
	host_kick(h);
}

static const struct lnch_guest_cbs warm_cbs = {.state = on_state, .spawned = on_spawned};

static unsigned count(const struct warm_pool *wp, const char *image)
{
	unsigned n = 0;
	for (const struct warm *w = wp->list; w; w = w->next)
		n += !strcmp(w->image, image) && !w->stopping;
	return n;
}

/* Fill one image's pool up to its size, while the host's caps allow. */
static void refill_image(const struct db_image *img, void *arg)
{
	struct warm_pool *wp = arg;
	struct host *h = wp->h;
	while (count(wp, img->name) < img->warm_pool) {
		char tdir[BRK_PATH_MAX];
		if (!tpl_for(wp->tpl, img, tdir, sizeof(tdir)))
			break; /* warm guests are template clones only */
		struct warm *w = calloc(1, sizeof(*w));
		if (!w)
			break;
		admit_ticket_init(&w->tk, POOL_USER, img->name, img->memory_mb);
		if (!admit_try(h->adm, &w->tk)) {
			free(w);
			break; /* only while the host is under its caps */
		}
		w->wp = wp;
		util_random_hex(w->id, 8);
		snprintf(w->image, sizeof(w->image), "%s", img->name);
		snprintf(w->template_dir, sizeof(w->template_dir), "%s", tdir);
		w->accel = h->lcfg.accel;
		w->start_ms = util_now_ms();
		struct lnch_profile p;
		reg_profile_of(img, &p);
		struct lnch_start_opts so = {.keep_paused = true};
		char paths[3][4200], err[512];
		h->lnch->tpl_clone_opts(tdir, &so, paths);
		w->next = wp->list;
		wp->list = w;
		struct lnch_guest *g = h->lnch->start(h->base, &h->lcfg, w->id, &p, &so, &warm_cbs,
						      w, err, sizeof(err));
		if (!g) {
			log_err("warm guest of %s: %s", img->name, err);
			unlink_warm(wp, w);
			store_warm_del(h->store, w->id);
			admit_release(h->adm, &w->tk);
			free(w);
			break;
		}
		w->guest = g;
	}
}

void warm_refill(struct warm_pool *wp)
{
	struct host *h = wp->h;
	if (h->stopping)
		return;
	for (struct warm *w = wp->list; w; w = w->next) {
		if (w->ready && !w->stopping && w->accel != h->lcfg.accel) {
			log_info("warm guest %s of %s was paused under %s: stopped", w->id,
				 w->image, accel_name(w->accel));
			stop(w);
		}
	}
	if (!tpl_version_asked(wp->tpl) || admit_queued(h->adm))
		return;
	store_images_warm(h->store, refill_image, wp);
}

bool warm_evict(struct warm_pool *wp)
{
	for (struct warm *w = wp->list; w; w = w->next) {
		if (w->ready && !w->stopping) {
			log_info("warm guest %s of %s stopped to make room for a waiting user",
				 w->id, w->image);
			/* release at once so the waiting user is admitted now */
			admit_release(wp->h->adm, &w->tk);
			stop(w);
			return true;
		}
	}
	return false;
}

static bool can_hand_out(const struct warm_pool *wp, const struct warm *w, const char *image)
{
	return w->ready && !w->stopping && w->accel == wp->h->lcfg.accel &&
	       !strcmp(w->image, image);
}

bool warm_has_ready(const struct warm_pool *wp, const char *image)
{
	for (const struct warm *w = wp->list; w; w = w->next)
		if (can_hand_out(wp, w, image))
			return true;
	return false;
}

struct warm *warm_take(struct warm_pool *wp, const char *image)
{
	for (struct warm *w = wp->list; w; w = w->next) {
		if (can_hand_out(wp, w, image)) {
			unlink_warm(wp, w);
			/* its capacity goes to the session that takes it */
			admit_release(wp->h->adm, &w->tk);
			return w;
		}
	}
	return NULL;
}

const char *warm_id(const struct warm *w)
{
	return w->id;
}

struct lnch_guest *warm_guest(const struct warm *w)
{
	return w->guest;
}

enum lnch_accel warm_accel(const struct warm *w)
{
	return w->accel;
}

const char *warm_template_dir(const struct warm *w)
{
	return w->template_dir;
}

void warm_put_back(struct warm_pool *wp, struct warm *w)
{
	if (!w)
		return;
	admit_restore(wp->h->adm, &w->tk, ADMIT_RUNNING);
	w->next = wp->list;
	wp->list = w;
}

void warm_hand_over(struct warm_pool *wp, struct warm *w)
{
	/* the guest now belongs to a session, whose row is written: the warm row goes */
	store_warm_del(wp->h->store, w->id);
	free(w);
}

void warm_discard(struct warm_pool *wp, struct warm *w)
{
	if (!w)
		return;
	warm_put_back(wp, w); /* counted again, so that its STOPPED releases it once */
	stop(w);
}

void warm_shed(struct warm_pool *wp, const char *image, unsigned size)
{
	unsigned n = 0;
	for (struct warm *w = wp->list; w; w = w->next) {
		if (strcmp(w->image, image) || w->stopping)
			continue;
		if (++n > size)
			stop(w);
	}
}

void warm_accel_changed(struct warm_pool *wp, enum lnch_accel old)
{
	/* paused under the old accelerator: even a ready one may never run again */
	for (struct warm *w = wp->list; w; w = w->next)
		if (!w->stopping && w->accel == old)
			stop(w);
}

void warm_stop_all(struct warm_pool *wp, bool detach)
{
	for (struct warm *w = wp->list, *next; w; w = next) {
		next = w->next;
		if (detach) {
			/* rows stay: the next nestord reattaches them */
			wp->h->lnch->detach(w->guest);
			unlink_warm(wp, w);
			admit_release(wp->h->adm, &w->tk);
			free(w);
		} else if (!w->stopping) {
			stop(w);
		}
	}
}

void warm_kill_all(struct warm_pool *wp)
{
	while (wp->list) {
		struct warm *w = wp->list;
		wp->list = w->next;
		wp->h->lnch->destroy(w->guest); /* killed, files removed, no callback */
		store_warm_del(wp->h->store, w->id);
		admit_release(wp->h->adm, &w->tk);
		free(w);
	}
}

bool warm_busy(const struct warm_pool *wp)
{
	return wp->list != NULL;
}

bool warm_owns(const struct warm_pool *wp, const char *id)
{
	for (const struct warm *w = wp->list; w; w = w->next)
		if (!strcmp(w->id, id))
			return true;
	return false;
}

bool warm_uses_template(const struct warm_pool *wp, const char *dir)
{
	for (const struct warm *w = wp->list; w; w = w->next)
		if (!strcmp(w->template_dir, dir))
			return true;
	return false;
}

void warm_restore(struct warm_pool *wp, const struct db_warm *r)
{
	struct host *h = wp->h;
	struct db_image img;
	if (!r->ready || store_image_get(h->store, r->image, &img) < 0) {
		/* still restoring, or its image is gone */
		log_info("warm guest %s of %s: not reattached (%s)", r->id, r->image,
			 r->ready ? "image removed" : "it was not ready yet");
		store_warm_del(h->store, r->id);
		return;
	}
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	struct warm *w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->wp = wp;
	snprintf(w->id, sizeof(w->id), "%s", r->id);
	snprintf(w->image, sizeof(w->image), "%s", r->image);
	snprintf(w->template_dir, sizeof(w->template_dir), "%s", r->template_dir);
	w->accel = !strcmp(r->accel, "kvm") ? LNCH_ACCEL_KVM : LNCH_ACCEL_TCG;
	w->ready = true; /* counted as ready; READY only confirms it */
	w->start_ms = util_now_ms();
	admit_ticket_init(&w->tk, POOL_USER, w->image, r->memory_mb);
	admit_restore(h->adm, &w->tk, ADMIT_RUNNING);
	w->next = wp->list;
	wp->list = w;
	char err[256];
	w->guest =
	    h->lnch->attach(h->base, &h->lcfg, w->id, r->pid, NULL, &warm_cbs, w, err, sizeof(err));
	if (!w->guest) {
		log_warn("warm guest %s of %s cannot be reattached: %s", w->id, w->image, err);
		unlink_warm(wp, w);
		admit_release(h->adm, &w->tk);
		store_warm_del(h->store, w->id);
		free(w);
		return;
	}
	log_info("warm guest %s of %s: reattaching pid %d", w->id, w->image, (int)r->pid);
}

void warm_json_add(const struct warm_pool *wp, const char *image, json_object *o)
{
	unsigned ready = 0, warming = 0;
	for (const struct warm *w = wp->list; w; w = w->next) {
		if (strcmp(w->image, image) || w->stopping)
			continue;
		ready += w->ready;
		warming += !w->ready;
	}
	json_object_object_add(o, "warm_ready", json_object_new_int64(ready));
	json_object_object_add(o, "warm_starting", json_object_new_int64(warming));
}

void warm_destroy(struct warm_pool *wp)
{
	if (!wp)
		return;
	warm_stop_all(wp, true);
	free(wp);
}

unsigned warm_gauges(const struct warm_pool *wp, uint64_t *resident_bytes)
{
	unsigned n = 0;
	for (const struct warm *w = wp->list; w; w = w->next) {
		if (w->stopping)
			continue;
		n++;
		pid_t pid = w->guest ? wp->h->lnch->pid(w->guest) : 0;
		if (pid > 0)
			*resident_bytes += util_rss_bytes(pid);
	}
	return n;
}
