/*
 * The host's accelerator decision (see hostaccel.c): KVM or TCG, why, since
 * when; probed, kept in the store, dropped at runtime when a guest hangs
 * under KVM. Runs on the loop.
 */
#ifndef NESTOR_BRK_HOSTACCEL_H
#define NESTOR_BRK_HOSTACCEL_H

#include "accel.h"
#include "host.h"

/*
 * A decision was adopted (OLD the one before). MOVED: guests starting
 * under OLD must start again under the new one.
 */
typedef void (*accel_changed_fn)(enum lnch_accel old, bool moved, void *arg);

struct hostaccel *accel_create(struct host *h, accel_changed_fn changed, void *arg);
/* Cancels a running probe; its waiters get -ESHUTDOWN. Accepts NULL. */
void accel_destroy(struct hostaccel *ha);
const char *accel_name(enum lnch_accel a);
/* At start: a saved decision that still holds, else a probe. */
void accel_init(struct hostaccel *ha);
/* A decision is known: guests may start. */
bool accel_ready(const struct hostaccel *ha);
enum lnch_accel accel_current(const struct hostaccel *ha);
/* A guest got ready under A. */
void accel_guest_ready(struct hostaccel *ha, enum lnch_accel a);
/* A start under A missed its deadline (WHO: for the log). True: start it again now (under TCG). */
bool accel_start_timed_out(struct hostaccel *ha, enum lnch_accel a, const char *who);
/* The start deadline under the current decision (shorter while KVM is unproven). */
int accel_start_timeout_ms(const struct hostaccel *ha, int dflt_ms);
/* An image was registered: a kernel to probe with may now be known. */
void accel_image_added(struct hostaccel *ha, const struct db_image *img);
/* Probe again now; CB gets the new decision's reason. */
int accel_probe(struct hostaccel *ha, brk_done_fn cb, void *arg, char *err, size_t errlen);
/* What, why, since when; a new reference. */
json_object *accel_json(const struct hostaccel *ha);
/* Stop a running probe (shutdown). */
void accel_finish(struct hostaccel *ha);

#endif
