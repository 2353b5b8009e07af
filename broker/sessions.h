/*
 * Sessions and their state machine, the only writer of session state:
 *
 *   queued -> starting -> ready -> connected <-> disconnected -> ending -> ended
 *
 * Each session holds its capacity through an admission ticket and its
 * guest through the launcher ops. Guest events, API calls and the broker's
 * tick drive it; it reports back through host_kick. Runs on the loop.
 */
#ifndef NESTOR_BRK_SESSIONS_H
#define NESTOR_BRK_SESSIONS_H

#include "host.h"

struct sessions;
struct warm_pool;
struct templates;

struct sessions *sess_create(struct host *h, struct warm_pool *wp, struct templates *tpl);
/* Rows not yet written get one patient try; guests are detached, never killed. */
void sess_destroy(struct sessions *ss);

/* brk_connect (FLEET_ID: placed by the fleet under that id); HOST_READY: guests may start now (else
 * everyone queues). */
int sess_connect(struct sessions *ss, const char *user, const char *app, const char *client,
		 const char *fleet_id, bool host_ready, struct brk_session **out, char *err,
		 size_t errlen);
struct brk_session *sess_find(struct sessions *ss, const char *id);
/* USER's live session of APP here (what sess_connect would reconnect to), or NULL. */
struct brk_session *sess_of(struct sessions *ss, const char *user, const char *app);
/* The live session the fleet knows as FLEET_ID (its fleet_id, or its own id). */
struct brk_session *sess_find_fleet(struct sessions *ss, const char *fleet_id);
void sess_each_live(struct sessions *ss, void (*fn)(const struct db_session *rec, void *arg),
		    void *arg);
const struct db_session *sess_record(const struct brk_session *s);
int sess_end(struct sessions *ss, struct brk_session *s, const char *reason);
/*
 * An administrator's end IN_S seconds from now, announced to the user with
 * MESSAGE ("" a default text); IN_S 0 ends it now, as sess_end. Replaces an
 * earlier one. -EINVAL: S is already ending or ended.
 */
int sess_end_in(struct sessions *ss, struct brk_session *s, unsigned in_s, const char *message);
int sess_attach(struct sessions *ss, struct brk_session *s, const char *gateway, char *err,
		size_t errlen);
int sess_detach(struct sessions *ss, struct brk_session *s);
void sess_activity(struct brk_session *s);
/* ENDING (may be NULL) gets {"ID": {"in_s","why","message"}} for held sessions with an announced
 * end. */
unsigned sess_lease(struct sessions *ss, const char *gateway, const char *const *ids, size_t n,
		    json_object *ending);
int sess_screendump(struct sessions *ss, struct brk_session *s, brk_done_fn cb, void *arg);
json_object *sess_json(struct sessions *ss, const struct brk_session *s);
json_object *sess_guest_json(struct sessions *ss, const struct brk_session *s);
json_object *sess_list_json(struct sessions *ss);

/* End what waited too long; start what admission lets start now. */
void sess_pump(struct sessions *ss);
/* Timeouts, lapsed leases, rows to write again, ended sessions to forget (once a second). */
void sess_tick(struct sessions *ss);
/*
 * A live row of an earlier nestord: its guest reattached, or (RESTART: it
 * was half-way through a start, whose files are gone now) back in line at
 * its arrival place.
 */
void sess_restore(struct sessions *ss, const struct db_session *rec, bool restart);
/* The decision moved away from OLD: guests starting under it start again. */
void sess_accel_changed(struct sessions *ss, enum lnch_accel old);
/* Shutdown: end every session, or (KEEP) leave the guests for the next nestord. */
void sess_shutdown(struct sessions *ss, bool keep);
/* Kill every guest now (a shutdown that ran out of time). */
void sess_kill_all(struct sessions *ss);

/* Fill V's sessions table and add the guests' resident memory. */
void sess_gauges(const struct sessions *ss, struct brk_metrics_view *v);
bool sess_busy(const struct sessions *ss);	     /* a guest is still running */
bool sess_owns(struct sessions *ss, const char *id); /* a live session of that id */
bool sess_uses_template(const struct sessions *ss, const char *dir);
bool sess_image_in_use(const struct sessions *ss, const char *image);

#endif
