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
#include "records.h"

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
	unsigned queue_wait_s; /* fleet-queued requests older than this end (0: never) */
	char images[4096], warm[2048], templates[2048];
	char fingerprint[128]; /* sha256 of this host's gateway certificate, "" unknown */
};

struct fleet_hooks {
	void (*report)(struct fleet_report *r, void *arg);
	/* the drained flag as the fleet has it (after every heartbeat) */
	void (*drained)(bool drained, void *arg);
	/* the fleet placed session ID (USER, APP: checked names) here: start it */
	void (*adopt)(const char *id, const char *user, const char *app, void *arg);
	/* connected again (or a write was lost): tell it every live session (fleet_sync_all) */
	void (*resync)(void *arg);
	/* the fleet ended session ID (its fleet id) while this host was away: end it */
	void (*end)(const char *id, void *arg);
	/* this host could start one more session now (it may take the fleet queue's head) */
	bool (*has_room)(void *arg);
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
/* Every live session of the fleet, oldest first (at most 10000): its host and entry. */
int fleet_sessions(struct fleet *f, fleet_json_fn cb, void *arg);
/* Drain (or undrain) host NAME: no new placements there; its sessions go on. -ENOENT: none. */
int fleet_drain(struct fleet *f, const char *name, bool drain, fleet_json_fn cb, void *arg);

/* REC's state (its fleet_id, else its id) for the fleet; written in the background. */
void fleet_sync(struct fleet *f, const struct db_session *rec);
/*
 * Every live session of this host at once (after an outage or a lost
 * write): a JSON array of {"id" (the fleet's), "user", "app", "image",
 * "memory_mb", "state", "reason"}. The fleet ends this host's rows missing
 * from it, and answers through hooks.end for those it ended meanwhile.
 */
void fleet_sync_all(struct fleet *f, const char *sessions_json);
/*
 * The same now, for an admin (nestorctl fleet import): CB gets {"host",
 * "sessions" (N, how many were sent), "ended" (those the fleet had ended)}.
 */
int fleet_import(struct fleet *f, const char *sessions_json, int n, fleet_json_fn cb, void *arg);
/* A session ended here: room for the fleet queue's head. */
void fleet_room(struct fleet *f);

/* Where a user's session of an app is, or was just placed. */
struct fleet_place {
	char id[17];
	char host[64];	/* "" : queued in the fleet */
	char state[16]; /* placed | queued | the live session's state */
	unsigned queue_pos;
	bool existing;	  /* a live session: a reconnect */
	char notice[256]; /* what became of their last session, if its host died */
};
/* ERR 0 with P; -EBUSY refused (MSG why: caps); -EAGAIN the fleet is away. */
typedef void (*fleet_place_fn)(int err, const struct fleet_place *p, const char *msg, void *arg);
int fleet_connect(struct fleet *f, const char *user, const char *app, const char *image,
		  unsigned memory_mb, unsigned user_max, unsigned image_max, fleet_place_fn cb,
		  void *arg);

/* A session as the fleet has it, and how to reach its host's gateway. */
struct fleet_session {
	char id[17], host[64], state[16];
	char reason[256];
	char gateway[128], fingerprint[128];
	bool host_up;
	unsigned queue_pos;
};
/* ERR 0 with S; -ENOENT no such session; -EAGAIN the fleet is away. */
typedef void (*fleet_session_fn)(int err, const struct fleet_session *s, const char *msg,
				 void *arg);
int fleet_session_get(struct fleet *f, const char *id, fleet_session_fn cb, void *arg);

/* A one-time ticket for session ID's host (TEXT: the token), valid FLEET_TICKET_S. */
#define FLEET_TICKET_S 30
#define FLEET_TICKET_PREFIX "nestor-ticket:"
typedef void (*fleet_text_fn)(int err, const char *text, const char *msg, void *arg);
int fleet_ticket_issue(struct fleet *f, const char *id, fleet_text_fn cb, void *arg);
/* Spend TOKEN here for USER: ERR 0 with the session's id and app; -EACCES: no good. */
typedef void (*fleet_ticket_fn)(int err, const char *id, const char *app, void *arg);
int fleet_ticket_redeem(struct fleet *f, const char *token, const char *user, fleet_ticket_fn cb,
			void *arg);

#endif
