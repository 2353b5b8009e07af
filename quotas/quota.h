/*
 * Admission decisions, pure: plain structs in, decisions out. No I/O, no
 * clock (the caller passes NOW in milliseconds), no sqlite. The broker keeps
 * one ledger, tells it what happens (starts, ready, ends, cap changes) and
 * asks it who may start next.
 *
 * Caps: 0 means unlimited.
 *   host:  max_sessions, max_starting (concurrent guest starts: the storm
 *          valve), max_memory_mb (sum of admitted guests' RAM)
 *   user:  max_sessions (a default, overridable per user)
 *   image: max_sessions
 * Lowering a cap never ends anything: it only stops further admissions.
 *
 * The queue is FIFO in rounds: a user's k-th waiting request is in round k,
 * and rounds are served in order, so one user never holds more than one
 * queued start ahead of other users. A request blocked by a host cap blocks
 * those behind it (no starvation); one blocked by its own image's or user's
 * cap lets others pass.
 *
 * int functions return 0 or a negative errno.
 */
#ifndef NESTOR_QUOTA_H
#define NESTOR_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUOTA_NAME_MAX 64
#define QUOTA_RECENT 16

struct quota_caps {
	unsigned max_sessions;
	unsigned max_starting;
	unsigned max_memory_mb;
};

/* Usage counters per user or per image. */
struct quota_count {
	char name[QUOTA_NAME_MAX + 1];
	unsigned sessions;
	unsigned max_sessions; /* per-user override / per-image cap; 0 unlimited */
	bool has_cap;	       /* users: override present (else the default applies) */
};

struct quota_req {
	uint64_t id;
	char user[QUOTA_NAME_MAX + 1];
	char image[QUOTA_NAME_MAX + 1];
	unsigned memory_mb;
	int64_t enqueued_ms;
	int64_t deadline_ms; /* give up waiting after this (0: never) */
	unsigned round;	     /* fairness round, set when queued */
};

struct quota_ledger {
	struct quota_caps host;
	unsigned user_default_max; /* per-user max_sessions when not overridden */
	/* host usage; sessions counts every admitted, not yet ended session */
	unsigned sessions, starting, memory_mb;
	struct quota_count *users;
	size_t n_users, cap_users;
	struct quota_count *images;
	size_t n_images, cap_images;
	struct quota_req *queue; /* kept in service order */
	size_t n_queue, cap_queue;
	unsigned round_served;		/* highest round admitted so far */
	int64_t start_ms[QUOTA_RECENT]; /* recent launch-to-ready durations */
	unsigned n_start, i_start;
	int64_t end_at[QUOTA_RECENT]; /* recent session end times */
	unsigned n_end, i_end;
};

enum quota_verdict { QUOTA_ADMIT, QUOTA_QUEUE, QUOTA_REFUSE };

struct quota_decision {
	enum quota_verdict verdict;
	unsigned position;   /* QUEUE: 1-based place in line */
	int64_t estimate_ms; /* QUEUE: expected wait, -1 unknown */
	const char *reason;  /* static text: why queued or refused */
};

void quota_ledger_init(struct quota_ledger *l);
void quota_ledger_finish(struct quota_ledger *l);

void quota_set_host_caps(struct quota_ledger *l, struct quota_caps caps);
void quota_set_user_default(struct quota_ledger *l, unsigned max_sessions);

/*
 * Backpressure: the start cap to use when the host's CPU pressure
 * (/proc/pressure/cpu "some avg10", percent) is PRESSURE. Below HIGH the
 * configured cap stands; from HIGH it is halved (at least 1); from CRITICAL
 * only one guest starts at a time. HIGH 0 disables backpressure. MAX 0
 * (unlimited) becomes CORES from HIGH on.
 */
unsigned quota_pressure_starting(unsigned max_starting, unsigned cores, double pressure,
				 unsigned high, unsigned critical);
/* HAS_CAP false removes a user's override. */
int quota_set_user_cap(struct quota_ledger *l, const char *user, bool has_cap, unsigned max);
int quota_set_image_cap(struct quota_ledger *l, const char *image, unsigned max);
/* The effective per-user limit (0 unlimited). */
unsigned quota_user_limit(const struct quota_ledger *l, const char *user);

/*
 * A new request: admit now, queue (the request is added to the queue), or
 * refuse (never fits, or the user is at their own limit).
 */
struct quota_decision quota_request(struct quota_ledger *l, const struct quota_req *req,
				    int64_t now_ms);

/*
 * Like quota_request, but never admits at once: the request joins the queue
 * (or is refused) and quota_next hands it out in arrival order. For requests
 * that arrive before the host can start guests (the accelerator is still
 * being probed, guests are being reattached) and for requests put back in
 * line; a start slot is only ever counted for a request quota_next returns.
 */
struct quota_decision quota_enqueue(struct quota_ledger *l, const struct quota_req *req,
				    int64_t now_ms);

/*
 * Put a request back in line instead of admitting and releasing it: its
 * capacity, if ADMITTED (STARTING: counted as starting), is given back
 * without counting a session end, and it waits again at its arrival place
 * (REQ->enqueued_ms) in its fairness round. For an admission taken back
 * and for a restarted broker's queue. Never admits at once; refused like
 * quota_request.
 */
struct quota_decision quota_requeue(struct quota_ledger *l, const struct quota_req *req,
				    bool admitted, bool starting, int64_t now_ms);

/*
 * Admit REQ only if it fits now and nobody is waiting (background work:
 * warm-pool refills, template builds). Never queues. Returns true if admitted.
 */
bool quota_try(struct quota_ledger *l, const struct quota_req *req);

/*
 * Take the next queued request that may start now into *OUT (it is removed
 * from the queue and counted as admitted). Returns true if there was one.
 */
bool quota_next(struct quota_ledger *l, int64_t now_ms, struct quota_req *out);
/* Remove one queued request past its deadline into *OUT. */
bool quota_expired(struct quota_ledger *l, int64_t now_ms, struct quota_req *out);
/* Remove a queued request (the user gave up). Returns 0 or -ENOENT. */
int quota_cancel(struct quota_ledger *l, uint64_t id);
/* Where a queued request stands now. -ENOENT if it is not queued. */
int quota_position(const struct quota_ledger *l, uint64_t id, int64_t now_ms,
		   struct quota_decision *out);

/*
 * Usage events. A session admitted with quota_request/quota_next is
 * starting; quota_started moves it out of the starting count when its guest
 * is ready (or failed: READY_MS < 0); quota_ended releases it.
 * quota_restore counts a session that already exists (broker restart).
 */
void quota_started(struct quota_ledger *l, int64_t ready_ms);
void quota_ended(struct quota_ledger *l, const char *user, const char *image, unsigned memory_mb,
		 bool was_starting, int64_t now_ms);
/* Release capacity without counting a session end (warm guests, template
 * builds, admissions taken back): estimates only learn from real ends. */
void quota_release(struct quota_ledger *l, const char *user, const char *image, unsigned memory_mb,
		   bool was_starting);
int quota_restore(struct quota_ledger *l, const char *user, const char *image, unsigned memory_mb,
		  bool starting);

#endif
