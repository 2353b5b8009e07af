/* Admission through quotas/ (see admit.h). */
#include "admit.h"
#include "log.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct admit {
	const struct brk_config *cfg;
	struct store *st;
	struct quota_ledger q;
	struct quota_caps caps; /* as configured; backpressure may lower max_starting */
	struct quota_req next;	/* what admit_next handed out, until held or dropped */
	bool have_next;
};

struct admit *admit_create(const struct brk_config *cfg, struct store *st)
{
	struct admit *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->cfg = cfg;
	a->st = st;
	quota_ledger_init(&a->q);
	/* warm guests and template builds are bounded by the host caps only */
	quota_set_user_cap(&a->q, "@warm", true, 0);
	quota_set_user_cap(&a->q, "@template", true, 0);
	return a;
}

void admit_destroy(struct admit *a)
{
	if (!a)
		return;
	quota_ledger_finish(&a->q);
	free(a);
}

void admit_ticket_init(struct admit_ticket *t, const char *user, const char *image,
		       unsigned memory_mb)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->user, sizeof(t->user), "%s", user);
	snprintf(t->image, sizeof(t->image), "%s", image);
	t->memory_mb = memory_mb;
}

static struct quota_req req_of(const struct admit_ticket *t, uint64_t qid)
{
	struct quota_req r = {.id = qid, .memory_mb = t->memory_mb};
	snprintf(r.user, sizeof(r.user), "%s", t->user);
	snprintf(r.image, sizeof(r.image), "%s", t->image);
	return r;
}

struct quota_decision admit_request(struct admit *a, struct admit_ticket *t, uint64_t qid,
				    int64_t deadline_ms, bool may_admit, int64_t now_ms)
{
	struct quota_req r = req_of(t, qid);
	r.enqueued_ms = now_ms;
	r.deadline_ms = deadline_ms;
	struct quota_decision d =
	    may_admit ? quota_request(&a->q, &r, now_ms) : quota_enqueue(&a->q, &r, now_ms);
	if (d.verdict == QUOTA_ADMIT)
		t->hold = ADMIT_STARTING;
	return d;
}

struct quota_decision admit_requeue(struct admit *a, struct admit_ticket *t, uint64_t qid,
				    int64_t enqueued_ms, int64_t deadline_ms, int64_t now_ms)
{
	struct quota_req r = req_of(t, qid);
	r.enqueued_ms = enqueued_ms;
	r.deadline_ms = deadline_ms;
	struct quota_decision d =
	    quota_requeue(&a->q, &r, t->hold != ADMIT_NONE, t->hold == ADMIT_STARTING, now_ms);
	t->hold = ADMIT_NONE;
	return d;
}

bool admit_try(struct admit *a, struct admit_ticket *t)
{
	struct quota_req r = req_of(t, 0);
	if (t->hold != ADMIT_NONE || !quota_try(&a->q, &r))
		return false;
	t->hold = ADMIT_STARTING;
	return true;
}

bool admit_next(struct admit *a, int64_t now_ms, uint64_t *qid)
{
	if (a->have_next)
		admit_drop_next(a); /* the last one was never taken */
	if (!quota_next(&a->q, now_ms, &a->next))
		return false;
	a->have_next = true;
	*qid = a->next.id;
	return true;
}

void admit_hold_next(struct admit *a, struct admit_ticket *t)
{
	if (!a->have_next)
		return;
	a->have_next = false;
	t->hold = ADMIT_STARTING;
}

void admit_drop_next(struct admit *a)
{
	if (!a->have_next)
		return;
	a->have_next = false;
	quota_release(&a->q, a->next.user, a->next.image, a->next.memory_mb, true);
}

bool admit_expired(struct admit *a, int64_t now_ms, uint64_t *qid)
{
	struct quota_req r;
	if (!quota_expired(&a->q, now_ms, &r))
		return false;
	*qid = r.id;
	return true;
}

void admit_cancel(struct admit *a, uint64_t qid)
{
	quota_cancel(&a->q, qid);
}

int admit_position(const struct admit *a, uint64_t qid, int64_t now_ms, struct quota_decision *out)
{
	return quota_position(&a->q, qid, now_ms, out);
}

size_t admit_queued(const struct admit *a)
{
	return a->q.n_queue;
}

void admit_started(struct admit *a, struct admit_ticket *t, int64_t took_ms)
{
	if (t->hold != ADMIT_STARTING)
		return;
	quota_started(&a->q, took_ms);
	t->hold = ADMIT_RUNNING;
}

void admit_end(struct admit *a, struct admit_ticket *t)
{
	if (t->hold == ADMIT_NONE)
		return;
	quota_ended(&a->q, t->user, t->image, t->memory_mb, t->hold == ADMIT_STARTING,
		    util_now_ms());
	t->hold = ADMIT_NONE;
}

void admit_release(struct admit *a, struct admit_ticket *t)
{
	if (t->hold == ADMIT_NONE)
		return;
	quota_release(&a->q, t->user, t->image, t->memory_mb, t->hold == ADMIT_STARTING);
	t->hold = ADMIT_NONE;
}

void admit_restore(struct admit *a, struct admit_ticket *t, enum admit_hold hold)
{
	if (t->hold != ADMIT_NONE || hold == ADMIT_NONE)
		return;
	quota_restore(&a->q, t->user, t->image, t->memory_mb, hold == ADMIT_STARTING);
	t->hold = hold;
}

static unsigned auto_max_starting(bool kvm)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1)
		cores = 1;
	/* A TCG start keeps a core busy for seconds; KVM starts are cheap. */
	return kvm ? (unsigned)cores * 4 : (unsigned)cores;
}

void admit_caps_reload(struct admit *a, bool kvm)
{
	const struct brk_config *cfg = a->cfg;
	struct quota_caps c = {cfg->max_sessions, 0, cfg->max_memory_mb};
	unsigned v;
	if (store_cap_get(a->st, "max_sessions", &v) == 0)
		c.max_sessions = v;
	if (store_cap_get(a->st, "max_memory_mb", &v) == 0)
		c.max_memory_mb = v;
	if (store_cap_get(a->st, "max_starting", &v) == 0)
		c.max_starting = v;
	else if (cfg->max_starting >= 0)
		c.max_starting = (unsigned)cfg->max_starting;
	else
		c.max_starting = auto_max_starting(kvm);
	unsigned umax = cfg->user_max_sessions;
	if (store_cap_get(a->st, "user_max_sessions", &v) == 0)
		umax = v;
	a->caps = c;
	quota_set_host_caps(&a->q, c);
	quota_set_user_default(&a->q, umax);
}

void admit_pressure(struct admit *a)
{
	if (!a->cfg->pressure_high)
		return;
	char *text = NULL;
	double some = 0;
	if (util_read_file("/proc/pressure/cpu", 512, &text, NULL) == 0) {
		if (sscanf(text, "some avg10=%lf", &some) != 1)
			some = 0;
		free(text);
	}
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	struct quota_caps c = a->caps;
	c.max_starting =
	    quota_pressure_starting(a->caps.max_starting, cores > 0 ? (unsigned)cores : 1, some,
				    a->cfg->pressure_high, a->cfg->pressure_critical);
	if (c.max_starting != a->q.host.max_starting)
		log_info("cpu pressure %.1f%%: max_starting %u -> %u", some, a->q.host.max_starting,
			 c.max_starting);
	quota_set_host_caps(&a->q, c);
}

int admit_user_cap_apply(struct admit *a, const char *user)
{
	unsigned max;
	if (store_user_cap_get(a->st, user, &max) == 0)
		return quota_set_user_cap(&a->q, user, true, max);
	return quota_set_user_cap(&a->q, user, false, 0);
}

void admit_image_cap(struct admit *a, const char *image, unsigned max_sessions)
{
	quota_set_image_cap(&a->q, image, max_sessions);
}

void admit_status_json(const struct admit *a, json_object *o)
{
	json_object *caps = json_object_new_object(), *use = json_object_new_object();
	const struct quota_ledger *q = &a->q;
	json_object_object_add(caps, "max_sessions", json_object_new_int64(q->host.max_sessions));
	json_object_object_add(caps, "max_starting", json_object_new_int64(q->host.max_starting));
	json_object_object_add(caps, "max_memory_mb", json_object_new_int64(q->host.max_memory_mb));
	json_object_object_add(caps, "user_max_sessions",
			       json_object_new_int64(q->user_default_max));
	unsigned v;
	json_object_object_add(
	    caps, "max_starting_auto",
	    json_object_new_boolean(store_cap_get(a->st, "max_starting", &v) < 0 &&
				    a->cfg->max_starting < 0));
	json_object_object_add(use, "sessions", json_object_new_int64(q->sessions));
	json_object_object_add(use, "starting", json_object_new_int64(q->starting));
	json_object_object_add(use, "memory_mb", json_object_new_int64(q->memory_mb));
	json_object_object_add(use, "queued", json_object_new_int64((int64_t)q->n_queue));
	json_object_object_add(o, "caps", caps);
	json_object_object_add(o, "usage", use);
}

const struct quota_ledger *admit_ledger(const struct admit *a)
{
	return &a->q;
}
