/*
 * Admission: the host's quota ledger and caps, and the only caller of
 * quotas/. Whoever holds capacity (a session, a warm guest, a template
 * build) holds it through one ticket, so the ledger is told each change
 * exactly once:
 *
 *   NONE --admitted--> STARTING --started--> RUNNING
 *     ^                   |                     |
 *     +----- end / release (from either) -------+
 *
 * admit_end counts a session end (queue estimates learn from it);
 * admit_release gives capacity back without one (warm guests, builds,
 * admissions taken back). Both are idempotent. Runs on the loop; pure but
 * for reading caps from the store and /proc/pressure/cpu.
 */
#ifndef NESTOR_BRK_ADMIT_H
#define NESTOR_BRK_ADMIT_H

#include "config.h"
#include "quota.h"

#include <json-c/json.h>

struct store;
struct admit;

enum admit_hold { ADMIT_NONE, ADMIT_STARTING, ADMIT_RUNNING };

struct admit_ticket {
	char user[QUOTA_NAME_MAX + 1];
	char image[QUOTA_NAME_MAX + 1];
	unsigned memory_mb;
	enum admit_hold hold;
};

struct admit *admit_create(const struct brk_config *cfg, struct store *st);
void admit_destroy(struct admit *a);

void admit_ticket_init(struct admit_ticket *t, const char *user, const char *image,
		       unsigned memory_mb);

/*
 * A user's request: admitted now (MAY_ADMIT and it fits; T holds it),
 * queued, or refused. QID names it in the queue.
 */
struct quota_decision admit_request(struct admit *a, struct admit_ticket *t, uint64_t qid,
				    int64_t deadline_ms, bool may_admit, int64_t now_ms);
/*
 * Back in line at ENQUEUED_MS (a restarted broker's queue, an admission taken
 * back): what T held is given back first. Never admits at once.
 */
struct quota_decision admit_requeue(struct admit *a, struct admit_ticket *t, uint64_t qid,
				    int64_t enqueued_ms, int64_t deadline_ms, int64_t now_ms);
/* Background work (warm guest, template build): admitted only if it fits and nobody waits. */
bool admit_try(struct admit *a, struct admit_ticket *t);
/*
 * The next queued request that may start: its id into *QID. Its holder's
 * ticket must take it (admit_hold_next) or it is given back (admit_drop_next).
 */
bool admit_next(struct admit *a, int64_t now_ms, uint64_t *qid);
void admit_hold_next(struct admit *a, struct admit_ticket *t);
void admit_drop_next(struct admit *a);
/* A queued request past its deadline, removed: its id into *QID. */
bool admit_expired(struct admit *a, int64_t now_ms, uint64_t *qid);
void admit_cancel(struct admit *a, uint64_t qid);
int admit_position(const struct admit *a, uint64_t qid, int64_t now_ms, struct quota_decision *out);
size_t admit_queued(const struct admit *a);
/* Caps in force (max_starting as lowered by pressure) and usage, for metrics. */
const struct quota_ledger *admit_ledger(const struct admit *a);

/* T's guest is ready (TOOK_MS launch to ready) or its start was given up (TOOK_MS < 0). */
void admit_started(struct admit *a, struct admit_ticket *t, int64_t took_ms);
void admit_end(struct admit *a, struct admit_ticket *t);
void admit_release(struct admit *a, struct admit_ticket *t);
/* Count what already exists (a restart): STARTING or RUNNING. */
void admit_restore(struct admit *a, struct admit_ticket *t, enum admit_hold hold);

/* Caps from the configuration and the store; KVM (true) allows more concurrent starts. */
void admit_caps_reload(struct admit *a, bool kvm);
/* Fewer concurrent starts while the host's CPU is under pressure (the tick). */
void admit_pressure(struct admit *a);
/* A user's override from the store (or none) into the ledger. */
int admit_user_cap_apply(struct admit *a, const char *user);
void admit_image_cap(struct admit *a, const char *image, unsigned max_sessions);
/* {"caps": {...}, "usage": {...}} members added to O. */
void admit_status_json(const struct admit *a, json_object *o);

#endif
