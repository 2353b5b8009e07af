/*
 * Warm pools: paused template clones counted against the host caps as
 * "@warm", handed out on connect (a resume instead of a boot). Recorded
 * in the store and reattached by the next nestord. Runs on the loop.
 */
#ifndef NESTOR_BRK_WARM_H
#define NESTOR_BRK_WARM_H

#include "host.h"

struct warm_pool;
struct templates;

/* A warm guest: in the pool, or taken by a session (warm_take) until it is handed over. */
struct warm;

struct warm_pool *warm_create(struct host *h, struct templates *tpl);
/* Guests still here are detached (their rows stay: the next nestord reattaches). */
void warm_destroy(struct warm_pool *wp);

/* Fill every image's pool up to its size while the caps allow and nobody waits. */
void warm_refill(struct warm_pool *wp);
/* Stop one ready warm guest to make room for a waiting user; false if none. */
bool warm_evict(struct warm_pool *wp);
/*
 * A ready warm guest of IMAGE, out of the pool and the ledger (NULL: none);
 * its guest's events still go to the pool until the session calls
 * warm_hand_over (after setting the guest's callbacks), or it goes back
 * (warm_put_back) or is given up (warm_discard).
 */
struct warm *warm_take(struct warm_pool *wp, const char *image);
const char *warm_id(const struct warm *w);
struct lnch_guest *warm_guest(const struct warm *w);
enum lnch_accel warm_accel(const struct warm *w);
const char *warm_template_dir(const struct warm *w);
/* Back into the pool, counted again. Accepts NULL. */
void warm_put_back(struct warm_pool *wp, struct warm *w);
/* The session owns the guest now: the pool forgets it (W is freed). */
void warm_hand_over(struct warm_pool *wp, struct warm *w);
/* A taken guest that will not be used after all: back, then stopped. Accepts NULL. */
void warm_discard(struct warm_pool *wp, struct warm *w);

/* A smaller pool for IMAGE sheds its surplus. */
void warm_shed(struct warm_pool *wp, const char *image, unsigned size);
/* The decision moved away from OLD: guests paused under it are stopped. */
void warm_accel_changed(struct warm_pool *wp, enum lnch_accel old);
/* Shutdown: stop every warm guest, or (DETACH) leave them for the next nestord. */
void warm_stop_all(struct warm_pool *wp, bool detach);
/* Kill every warm guest now (a shutdown that ran out of time). */
void warm_kill_all(struct warm_pool *wp);
/* How many warm guests there are, and their resident memory. */
unsigned warm_gauges(const struct warm_pool *wp, uint64_t *resident_bytes);
bool warm_busy(const struct warm_pool *wp);
/* A warm guest of IMAGE is ready to hand out now. */
bool warm_has_ready(const struct warm_pool *wp, const char *image);
bool warm_owns(const struct warm_pool *wp, const char *id);
bool warm_uses_template(const struct warm_pool *wp, const char *dir);
/* A row left by an earlier nestord (not handed out): reattached if it was ready. */
void warm_restore(struct warm_pool *wp, const struct db_warm *row);
/* warm_ready / warm_starting counts of IMAGE added to O. */
void warm_json_add(const struct warm_pool *wp, const char *image, json_object *o);

#endif
