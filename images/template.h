/*
 * Templates: an image booted once with its RAM in a shared file, saved
 * (device state with x-ignore-shared) once its readiness probe passed, then
 * frozen. Clones restore from it in well under a second, sharing the RAM
 * file's pages copy-on-write. See notes in docs/images.md.
 *
 * A template directory holds: disk.qcow2 (frozen, backed by the base), ram,
 * state and meta.json (QEMU version, machine, argv fingerprint).
 */
#ifndef NESTOR_IMG_TEMPLATE_H
#define NESTOR_IMG_TEMPLATE_H

#include "launcher.h"

#include <stdbool.h>
#include <stddef.h>

struct event_base;

struct img_template_meta {
	char qemu_version[96];
	char machine[65];
	char fingerprint[17];
	unsigned memory_mb;
	long long created;
	double build_s;
};

typedef void (*img_template_fn)(int err, const char *msg, const struct img_template_meta *meta,
				void *arg);

struct img_tbuild;

/*
 * Build a template of PROFILE into DIR (created; must not exist) with guest
 * id ID. QEMU_VERSION is recorded. CB runs once from the loop, with ERR 0,
 * -ETIMEDOUT (the guest was not ready in time), -ECANCELED or -EIO; a
 * failed build leaves nothing in DIR. Returns the build (valid until CB
 * runs) or NULL with ERR filled.
 */
struct img_tbuild *img_template_build(struct event_base *base, const struct lnch_config *cfg,
				      const char *id, const struct lnch_profile *profile,
				      const char *dir, const char *qemu_version, img_template_fn cb,
				      void *arg, char *err, size_t errlen);
/* Stop a build now (its guest is killed); CB still runs, with -ECANCELED. */
void img_template_cancel(struct img_tbuild *b);
/* Kill the build's guest and free it at once; CB never runs (the loop is gone). Accepts NULL. */
void img_template_destroy(struct img_tbuild *b);

/* Read DIR/meta.json. */
int img_template_meta_read(const char *dir, struct img_template_meta *out);

/*
 * Whether the template in DIR can serve clones of PROFILE under CFG with
 * this QEMU: files present and read-only, version and fingerprint match.
 * Fills WHY when not.
 */
bool img_template_usable(const char *dir, const struct lnch_config *cfg,
			 const struct lnch_profile *profile, const char *qemu_version, char *why,
			 size_t whylen);

/* Start options for a clone of the template in DIR (paths point into BUF). */
void img_template_clone_opts(const char *dir, struct lnch_start_opts *opts, char buf[3][4200]);

#endif
