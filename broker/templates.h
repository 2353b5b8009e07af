/*
 * Templates: one per image and accelerator, built through the launcher (a
 * guest booted once and saved), counted against the host caps as
 * "@template". A build asked for is recorded in the store and runs again
 * after a crash; only a finished template is recorded as usable. The QEMU
 * version is read once at start: templates record it, and clones are only
 * made under the same one. Runs on the loop.
 */
#ifndef NESTOR_BRK_TEMPLATES_H
#define NESTOR_BRK_TEMPLATES_H

#include "host.h"

struct templates;

/* Whether a live guest (session or warm) was cloned from DIR. */
typedef bool (*tpl_in_use_fn)(const char *dir, void *arg);

struct templates *tpl_create(struct host *h, tpl_in_use_fn in_use, void *arg);
/* Running builds are killed (their rows stay: built again), waiters get -ESHUTDOWN. */
void tpl_destroy(struct templates *t);
/* Ask QEMU its version; starts wait for the answer (tpl_version_asked). */
void tpl_version_probe(struct templates *t);
bool tpl_version_asked(const struct templates *t);

/* Build (or rebuild) IMAGE's template; CB (may be NULL) runs when it is saved or failed. */
int tpl_build(struct templates *t, const char *image, brk_done_fn cb, void *arg, char *err,
	      size_t errlen);
/* A usable template of IMG under the current accelerator into DIR; else false (and a
 * build is started if auto_template is on). */
bool tpl_for(struct templates *t, const struct db_image *img, char *dir, size_t len);
/* Start queued builds the caps admit now. */
void tpl_run(struct templates *t);
/* IMAGE's template for the current accelerator can serve clones now. */
bool tpl_usable(struct templates *t, const char *image);
/* Remove template generations neither current nor in use. */
void tpl_sweep(struct templates *t);
/* Builds a crashed broker left unfinished run again. */
void tpl_restore(struct templates *t);
/* The decision moved away from OLD: builds under it start again. */
void tpl_accel_changed(struct templates *t, enum lnch_accel old);
/* Shutdown: running builds are cancelled, queued ones dropped (rows stay). */
void tpl_cancel_all(struct templates *t);
bool tpl_busy(const struct templates *t);
/* IMG's template state (template, template_dir, templates, ...) added to O. */
void tpl_json_add(struct templates *t, const struct db_image *img, json_object *o);

#endif
