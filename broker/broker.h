/*
 * The broker: sessions and their state machine, admission through quotas/,
 * guests through launcher/, state in sqlite, PAM through auth.c. Everything
 * runs on one event loop; nothing here blocks.
 *
 *   queued -> starting -> ready -> connected <-> disconnected -> ending -> ended
 *
 * int functions return 0 or a negative errno; where a person needs the
 * reason, ERR (last) gets it.
 */
#ifndef NESTOR_BROKER_H
#define NESTOR_BROKER_H

#include "config.h"
#include "states.h"
#include "store.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct brk;
struct brk_session;

/* A gateway's hold on the sessions it serves; it renews every second. */
#define BRK_LEASE_MS 3000

/* Completion of a slow operation: ERR 0 or a negative errno, MSG says why (or the result). */
typedef void (*brk_done_fn)(int err, const char *msg, void *arg);

struct brk_launcher;

struct brk_options {
	bool keep_guests; /* on SIGTERM leave guests running for the next nestord */
	/* how guests are started (launch.h); NULL: the real QEMU launcher */
	const struct brk_launcher *launcher;
};

struct brk *brk_create(struct event_base *base, const struct brk_config *cfg,
		       const struct brk_options *opts, char *err, size_t errlen);
/* Begin shutdown; DONE runs once every guest is stopped (or detached). */
void brk_shutdown(struct brk *b, void (*done)(void *arg), void *arg);
void brk_destroy(struct brk *b);

/* Authentication through PAM with throttling and audit; CB runs on the loop. */
typedef void (*brk_auth_fn)(int status, const char *reason, void *arg);
struct brk_authreq;
/*
 * CODE is the user's one-time code (NULL or "": none). STATUS: 0 ok,
 * -EACCES denied, -EPERM account refused, -EIO PAM error, -ENOKEY the stack
 * asks for a one-time code and none was given (REASON: PAM's prompt; it
 * counts as a failure for the throttle). Returns 0 with *OUT the request in
 * flight (borrowed: valid until CB runs or it is cancelled), -EAGAIN
 * (throttled) or another negative errno.
 */
int brk_authenticate(struct brk *b, const char *user, const char *password, const char *code,
		     const char *client, brk_auth_fn cb, void *arg, struct brk_authreq **out);
/* CB will not run; the result still counts for the throttle and the audit. Accepts NULL. */
void brk_auth_cancel(struct brk_authreq *a);

/*
 * The user's session for APP: their live one if there is one (reconnect),
 * else a new one admitted, queued or refused. *OUT is borrowed.
 * Returns 0, -ENOENT (unknown app; ERR says), -EBUSY (refused by caps;
 * ERR says why) or another negative errno.
 */
int brk_connect(struct brk *b, const char *user, const char *app, const char *client,
		struct brk_session **out, char *err, size_t errlen);

/* What a new session of APP for USER would need: for the fleet's placement. */
struct brk_demand {
	char image[65];
	char title[129];
	unsigned memory_mb, user_max, image_max; /* caps: 0 unlimited */
};
int brk_app_demand(struct brk *b, const char *user, const char *app, struct brk_demand *d,
		   char *err, size_t errlen);
/* USER has a live session of APP on this host (a reconnect needs no fleet). */
bool brk_has_session(struct brk *b, const char *user, const char *app);

/* This host's live sessions as the fleet has them (fleet_sync_all's list); a new reference. */
json_object *brk_fleet_sessions_json(struct brk *b);
/* The fleet placed session ID here but it cannot be: it is ended there, with WHY. */
void brk_fleet_refused(struct brk *b, const char *id, const char *user, const char *app,
		       const char *why);
/* The same for a session the fleet placed here as FLEET_ID. */
int brk_connect_placed(struct brk *b, const char *user, const char *app, const char *client,
		       const char *fleet_id, struct brk_session **out, char *err, size_t errlen);

struct brk_session *brk_session_find(struct brk *b, const char *id);
/*
 * The gateway's grant to a session: handed to whoever connected the user
 * (POST /v1/sessions), required of the gateway for the session's own
 * endpoints. It lapses when the session ends or goes unused for 5 minutes;
 * each good use extends it.
 */
const char *brk_session_grant(const struct brk_session *s);
bool brk_session_grant_ok(struct brk_session *s, const char *token);
enum brk_state brk_session_state(const struct brk_session *s);
const char *brk_session_id(const struct brk_session *s);
const char *brk_session_user(const struct brk_session *s);
const struct db_session *brk_session_record(const struct brk_session *s);
/* The session as JSON; returns a new reference. */
json_object *brk_session_json(struct brk *b, const struct brk_session *s);
/* rdp backend: how the gateway reaches the guest (with its credentials), or NULL. */
json_object *brk_session_guest_json(struct brk *b, const struct brk_session *s);
/* Every live session; returns a new reference. */
json_object *brk_sessions_json(struct brk *b);
/*
 * What the portal shows USER: every app (alias, title) with USER's own
 * session of it on this host, if any (its id, state, queue position, an
 * announced end; nothing of other users), and how many wait in the queue.
 * A new reference.
 */
json_object *brk_user_json(struct brk *b, const char *user);
/* Host caps, usage and queue; returns a new reference. */
json_object *brk_status_json(struct brk *b);

/*
 * A user's client is on the session. GATEWAY (may be NULL) names the gateway
 * holding the connection: it must renew its lease (brk_gateway_lease) or the
 * session turns disconnected after LEASE_MS.
 */
int brk_session_attach(struct brk *b, struct brk_session *s, const char *gateway, char *err,
		       size_t errlen);
/*
 * GATEWAY still holds the connected sessions IDS; returns how many it holds.
 * ENDING (may be NULL) gets the held sessions' announced ends, by id:
 * {"in_s", "why", "message"} (the same as a session's "ending").
 */
unsigned brk_gateway_lease(struct brk *b, const char *gateway, const char *const *ids, size_t n,
			   json_object *ending);
int brk_session_detach(struct brk *b, struct brk_session *s);
void brk_session_activity(struct brk *b, struct brk_session *s);
/*
 * Save the guest's screen as a PPM file (QMP screendump) in its run
 * directory; CB gets the path or an error. For support and tests.
 */
int brk_session_screendump(struct brk *b, struct brk_session *s, brk_done_fn cb, void *arg);

/* End a session (admin or user). REASON is recorded. */
int brk_session_end(struct brk *b, struct brk_session *s, const char *reason);
/*
 * An administrator's end IN_S seconds from now: announced to the user (the
 * session's "ending", the gateway's lease answer) with MESSAGE ("" a default
 * text), then ended. IN_S 0: now, as brk_session_end. Survives a restart.
 */
int brk_session_end_in(struct brk *b, struct brk_session *s, unsigned in_s, const char *message);

/*
 * Watch one session: CB runs once, at its next state change (or when the
 * session is freed, with ENDED); the watch is freed after CB. Returns a
 * handle; brk_unwatch cancels (and frees) a watch that has not fired.
 */
typedef void (*brk_watch_fn)(struct brk_session *s, enum brk_state st, void *arg);
struct brk_watch *brk_watch(struct brk_session *s, brk_watch_fn cb, void *arg);
void brk_unwatch(struct brk_watch *w);

/* The accelerator decision: what, why, since when (GET /v1/accel); a new reference. */
json_object *brk_accel_json(const struct brk *b);
/* Probe the accelerator again now; CB gets the new decision's reason. */
int brk_accel_probe(struct brk *b, brk_done_fn cb, void *arg, char *err, size_t errlen);

/* HAProxy's agent-check line for this host now, into BUF (AGENT_LINE_MAX): see agent.h. */
void brk_agent_line(struct brk *b, char *buf, size_t len);

/* Caps: KEY is max_sessions|max_starting|max_memory_mb. */
int brk_caps_set(struct brk *b, const char *key, unsigned value);
int brk_user_cap_set(struct brk *b, const char *user, bool has_cap, unsigned max);

/*
 * Register an image: validated, inspected (qemu-img info, sha256) in the
 * background, made read-only, stored. CB runs once from the loop.
 */
int brk_image_add(struct brk *b, const struct db_image *img, brk_done_fn cb, void *arg, char *err,
		  size_t errlen);
/* Build (or rebuild) IMAGE's template; CB runs when it is saved or failed. */
int brk_template_build(struct brk *b, const char *image, brk_done_fn cb, void *arg, char *err,
		       size_t errlen);
/* Change an image's warm pool size and session cap at runtime. */
int brk_image_set(struct brk *b, const char *image, const unsigned *warm_pool,
		  const unsigned *max_sessions, const struct db_rdp_policy *rdp, char *err,
		  size_t errlen);
/* Values of an rdp image's policy (security, login, account fields). */
int brk_rdp_policy_check(const struct db_rdp_policy *r, char *err, size_t errlen);
/* Images with their template and warm pool state; returns a new reference. */
json_object *brk_images_json(struct brk *b);
int brk_image_remove(struct brk *b, const char *name, char *err, size_t errlen);
int brk_app_add(struct brk *b, const struct db_app *app, char *err, size_t errlen);
int brk_app_remove(struct brk *b, const char *alias, char *err, size_t errlen);

struct store *brk_store(struct brk *b);
/* This host's fleet membership (fleet.h), NULL for a single host. */
struct fleet *brk_fleet(struct brk *b);
const struct brk_config *brk_config(const struct brk *b);

#endif
