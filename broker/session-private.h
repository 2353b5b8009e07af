/*
 * Inside the sessions module: shared by sessions.c (the state machine, the
 * only writer of session state) and session_views.c (what is shown of a
 * session, and who watches it). Not for other modules.
 */
#ifndef NESTOR_BRK_SESSION_PRIVATE_H
#define NESTOR_BRK_SESSION_PRIVATE_H

#include "admit.h"
#include "sessions.h"
#include "warm.h"

struct brk_watch {
	struct brk_watch *next, **prevp;
	struct brk_session *s;
	brk_watch_fn cb;
	void *arg;
};

struct brk_session {
	struct brk_session *next;
	struct sessions *ss;
	struct db_session rec;
	enum brk_state state;
	uint64_t qid;
	struct admit_ticket tk;
	struct lnch_guest *guest;
	struct db_image img;
	char title[129];
	int64_t since_ms;    /* entered the current state */
	int64_t activity_ms; /* last input or attach */
	int64_t created_ms;
	int64_t start_ms;      /* admitted */
	char reason[256];      /* why queued / why ended */
	enum lnch_accel accel; /* what the guest was started under */
	bool retry;	       /* stopped to start again under another accelerator */
	bool dirty;	       /* the row could not be written yet */
	char lease_gw[33];     /* the gateway holding the connection ("" none) */
	int64_t lease_until;   /* CONNECTED: disconnected when this passes (0: no lease) */
	bool lease_lapsed;     /* disconnected by a lapsed lease: its gateway may take it back */
	struct warm *handout;  /* a warm guest taken for this session (warm_take) */
	int64_t grant_until;   /* rec.grant is good until then (extended by each use) */
	struct brk_watch *watchers;
	int64_t
	    admin_end_ms;   /* an administrator's announced end (0: none; rec.end_at persists it) */
	char announced[12]; /* the announced end's why, as last logged ("" none) */
};

/* An end announced to the session's user: when, why (idle | lifetime | admin), what to say. */
struct brk_ending {
	int64_t at_ms;
	const char *why;
	const char *message; /* borrowed from the session or static */
};

struct sessions {
	struct host *h;
	struct warm_pool *wp;
	struct templates *tpl;
	struct brk_session *list; /* newest first */
	uint64_t next_qid;
};

static inline bool live(const struct brk_session *s)
{
	return s->state != BRK_ENDED;
}

void sess_watch_unlink(struct brk_watch *w);
/* S's announced end at NOW into OUT (the soonest of its announced ones); false if none. */
bool sess_ending(const struct sessions *ss, const struct brk_session *s, int64_t now,
		 struct brk_ending *out);
/* OUT's JSON: {"in_s","why","message"}; returns a new reference. */
json_object *sess_ending_json(const struct brk_ending *e, int64_t now);

#endif
