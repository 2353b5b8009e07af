/*
 * The image registry: images and apps as the store keeps them, validated
 * on the way in. Registering an image inspects it in the background
 * (qemu-img info, sha256) and makes it read-only. Runs on the loop.
 */
#ifndef NESTOR_BRK_REGISTRY_H
#define NESTOR_BRK_REGISTRY_H

#include "host.h"

/* How the launcher runs IMG (its disk, boot, readiness, network). */
void reg_profile_of(const struct db_image *img, struct lnch_profile *p);

/* Validate and inspect IMG; CB runs once from the loop with the result. */
int reg_image_add(struct host *h, const struct db_image *img, brk_done_fn cb, void *arg, char *err,
		  size_t errlen);
/* Change an image's warm pool size, session cap and rdp policy; *OUT gets the stored image. */
int reg_image_set(struct host *h, const char *image, const unsigned *warm_pool,
		  const unsigned *max_sessions, const struct db_rdp_policy *rdp,
		  struct db_image *out, char *err, size_t errlen);
int reg_image_remove(struct host *h, const char *name, char *err, size_t errlen);
int reg_app_add(struct host *h, const struct db_app *app, char *err, size_t errlen);
int reg_app_remove(struct host *h, const char *alias, char *err, size_t errlen);

#endif
