/*
 * This host's membership of a fleet: nestord's connection to the fleet's
 * PostgreSQL (data/fleet/schema.sql). Non-blocking libpq on the broker's
 * loop, one query in flight at a time, queued in order; it reconnects by
 * itself (1 s, doubling to 8 s) and never holds up the loop: a fleet that
 * is away makes its callers' operations fail with -EAGAIN at once.
 *
 * Every heartbeat writes this host's caps, usage and warm/template images
 * (from the report callback) and learns whether an admin drained it; the
 * same statement marks hosts silent for down_after seconds down and their
 * sessions lost, so any live host notices a dead one.
 */
#ifndef NESTOR_BRK_FLEET_H
#define NESTOR_BRK_FLEET_H

#include "config.h"

#include <json-c/json.h>
#include <stdbool.h>

struct event_base;
struct fleet;

/* What users and admins are told while the fleet database is away. */
#define FLEET_AWAY "the fleet is unavailable, try again in a minute"

/* What a heartbeat reports; the arrays are PostgreSQL array literals ("{"a","b"}"). */
struct fleet_report {
	const char *accel; /* kvm | tcg | "" */
	unsigned max_sessions, max_starting, max_memory_mb, queued, start_ms;
	char warm[2048], templates[2048];
};

struct fleet_hooks {
	void (*report)(struct fleet_report *r, void *arg);
	/* the drained flag as the fleet has it (after every heartbeat) */
	void (*drained)(bool drained, void *arg);
	void *arg;
};

/* Append ITEM (a validated name) to the array literal ARR ("{}" when empty); full: left out. */
void fleet_array_add(char *arr, size_t len, const char *item);

/* Connects in the background. NULL with ERR if CFG cannot be used. */
struct fleet *fleet_create(struct event_base *base, const struct brk_fleet_config *cfg,
			   const struct fleet_hooks *hooks, char *err, size_t errlen);
void fleet_destroy(struct fleet *f);

/* Connected, and the last heartbeat answered. */
bool fleet_available(const struct fleet *f);
const char *fleet_name(const struct fleet *f);
/* The fleet's state as JSON for GET /v1/status; a new reference. */
json_object *fleet_status_json(const struct fleet *f);

/* An answer: ERR 0 with O (a new reference, the callee's), or a negative errno and MSG. */
typedef void (*fleet_json_fn)(int err, json_object *o, const char *msg, void *arg);

/* Every host: caps, usage, queue, accelerator, drained, up, heartbeat age. */
int fleet_hosts(struct fleet *f, fleet_json_fn cb, void *arg);
/* Drain (or undrain) host NAME: no new placements there; its sessions go on. -ENOENT: none. */
int fleet_drain(struct fleet *f, const char *name, bool drain, fleet_json_fn cb, void *arg);

#endif
