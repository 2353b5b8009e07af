/*
 * The quota ledger and fair queue. Pure: no I/O, no clock, no globals.
 */
#include "quota.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void quota_ledger_init(struct quota_ledger *l)
{
	memset(l, 0, sizeof(*l));
}

void quota_ledger_finish(struct quota_ledger *l)
{
	free(l->users);
	free(l->images);
	free(l->queue);
	memset(l, 0, sizeof(*l));
}

static struct quota_count *find(struct quota_count *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

static struct quota_count *get(struct quota_count **v, size_t *n, size_t *cap, const char *name)
{
	struct quota_count *c = find(*v, *n, name);
	if (c)
		return c;
	if (strlen(name) > QUOTA_NAME_MAX)
		return NULL;
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct quota_count *nv = realloc(*v, nc * sizeof(*nv));
		if (!nv)
			return NULL;
		*v = nv;
		*cap = nc;
	}
	c = &(*v)[(*n)++];
	memset(c, 0, sizeof(*c));
	strcpy(c->name, name);
	return c;
}

static struct quota_count *user(struct quota_ledger *l, const char *name)
{
	return get(&l->users, &l->n_users, &l->cap_users, name);
}

static struct quota_count *image(struct quota_ledger *l, const char *name)
{
	return get(&l->images, &l->n_images, &l->cap_images, name);
}

void quota_set_host_caps(struct quota_ledger *l, struct quota_caps caps)
{
	l->host = caps;
}

unsigned quota_pressure_starting(unsigned max_starting, unsigned cores, double pressure,
				 unsigned high, unsigned critical)
{
	if (!high || pressure < (double)high)
		return max_starting;
	if (critical && pressure >= (double)critical)
		return 1;
	unsigned base = max_starting ? max_starting : (cores ? cores : 1);
	return base / 2 ? base / 2 : 1;
}

void quota_set_user_default(struct quota_ledger *l, unsigned max_sessions)
{
	l->user_default_max = max_sessions;
}

int quota_set_user_cap(struct quota_ledger *l, const char *name, bool has_cap, unsigned max)
{
	struct quota_count *u = user(l, name);
	if (!u)
		return -ENOMEM;
	u->has_cap = has_cap;
	u->max_sessions = has_cap ? max : 0;
	return 0;
}

int quota_set_image_cap(struct quota_ledger *l, const char *name, unsigned max)
{
	struct quota_count *i = image(l, name);
	if (!i)
		return -ENOMEM;
	i->max_sessions = max;
	return 0;
}

unsigned quota_user_limit(const struct quota_ledger *l, const char *name)
{
	const struct quota_count *u = find(l->users, l->n_users, name);
	return u && u->has_cap ? u->max_sessions : l->user_default_max;
}

static bool under(unsigned used, unsigned cap)
{
	return cap == 0 || used < cap;
}

/* Host caps: NULL if REQ fits now, else the reason. */
static const char *host_block(const struct quota_ledger *l, unsigned memory_mb)
{
	if (!under(l->sessions, l->host.max_sessions))
		return "host session limit reached";
	if (!under(l->starting, l->host.max_starting))
		return "host start limit reached (other guests are starting)";
	if (l->host.max_memory_mb && l->memory_mb + memory_mb > l->host.max_memory_mb)
		return "host memory limit reached";
	return NULL;
}

/* Per-user and per-image caps: NULL if REQ fits now, else the reason. */
static const char *own_block(const struct quota_ledger *l, const struct quota_req *r)
{
	const struct quota_count *u = find(l->users, l->n_users, r->user);
	unsigned ulim = quota_user_limit(l, r->user);
	if (ulim && u && u->sessions >= ulim)
		return "user session limit reached";
	const struct quota_count *i = find(l->images, l->n_images, r->image);
	if (i && i->max_sessions && i->sessions >= i->max_sessions)
		return "image session limit reached";
	return NULL;
}

static int admit(struct quota_ledger *l, const struct quota_req *r)
{
	struct quota_count *u = user(l, r->user), *i = image(l, r->image);
	if (!u || !i)
		return -ENOMEM;
	u->sessions++;
	i->sessions++;
	l->sessions++;
	l->starting++;
	l->memory_mb += r->memory_mb;
	return 0;
}

static unsigned queued_of(const struct quota_ledger *l, const char *name)
{
	unsigned n = 0;
	for (size_t k = 0; k < l->n_queue; k++)
		n += strcmp(l->queue[k].user, name) == 0;
	return n;
}

static bool before(const struct quota_req *a, const struct quota_req *b)
{
	if (a->round != b->round)
		return a->round < b->round;
	if (a->enqueued_ms != b->enqueued_ms)
		return a->enqueued_ms < b->enqueued_ms;
	return a->id < b->id;
}

/* Insert R in service order: by (round, arrival). */
static void insert_sorted(struct quota_ledger *l, const struct quota_req *r)
{
	size_t k = l->n_queue;
	while (k > 0 && before(r, &l->queue[k - 1])) {
		l->queue[k] = l->queue[k - 1];
		k--;
	}
	l->queue[k] = *r;
	l->n_queue++;
}

/*
 * A user's next request goes one round after their last queued one, and
 * never before the round now being served: newcomers are not penalised for
 * a greedy user's backlog, and a greedy user is never more than one request
 * ahead of anyone.
 */
static unsigned round_for(const struct quota_ledger *l, const char *name)
{
	unsigned r = l->round_served;
	for (size_t k = 0; k < l->n_queue; k++)
		if (strcmp(l->queue[k].user, name) == 0 && l->queue[k].round + 1 > r)
			r = l->queue[k].round + 1;
	return r;
}

static int64_t avg_start_ms(const struct quota_ledger *l)
{
	if (l->n_start == 0)
		return -1;
	int64_t sum = 0;
	for (unsigned k = 0; k < l->n_start; k++)
		sum += l->start_ms[k];
	return sum / l->n_start;
}

/* Mean interval between recent session ends: how fast slots free up. */
static int64_t end_interval_ms(const struct quota_ledger *l)
{
	if (l->n_end < 2)
		return -1;
	int64_t lo = l->end_at[0], hi = l->end_at[0];
	for (unsigned k = 1; k < l->n_end; k++) {
		if (l->end_at[k] < lo)
			lo = l->end_at[k];
		if (l->end_at[k] > hi)
			hi = l->end_at[k];
	}
	return (hi - lo) / (l->n_end - 1);
}

static void fill_position(const struct quota_ledger *l, size_t k, struct quota_decision *d)
{
	d->verdict = QUOTA_QUEUE;
	d->position = (unsigned)k + 1;
	const char *why = host_block(l, l->queue[k].memory_mb);
	if (!why)
		why = own_block(l, &l->queue[k]);
	d->reason = why ? why : "waiting for a start slot";
	int64_t start = avg_start_ms(l);
	bool full =
	    !under(l->sessions, l->host.max_sessions) ||
	    (l->host.max_memory_mb && l->memory_mb + l->queue[k].memory_mb > l->host.max_memory_mb);
	if (full) {
		/* Each place ahead of us needs one session to end. */
		int64_t gap = end_interval_ms(l);
		d->estimate_ms =
		    gap < 0 ? -1 : gap * (int64_t)d->position + (start > 0 ? start : 0);
	} else {
		unsigned conc = l->host.max_starting ? l->host.max_starting : 1;
		d->estimate_ms =
		    start < 0 ? -1 : start * (int64_t)((d->position + conc - 1) / conc);
	}
}

enum submit_mode { SUBMIT_ADMIT, SUBMIT_QUEUE };

static struct quota_decision submit(struct quota_ledger *l, const struct quota_req *req,
				    int64_t now_ms, enum submit_mode mode)
{
	struct quota_decision d = {QUOTA_REFUSE, 0, -1, NULL};
	if (!req->user[0] || !req->image[0]) {
		d.reason = "request without user or image";
		return d;
	}
	if (l->host.max_memory_mb && req->memory_mb > l->host.max_memory_mb) {
		d.reason = "the app needs more memory than this host allows";
		return d;
	}
	const struct quota_count *u = find(l->users, l->n_users, req->user);
	unsigned ulim = quota_user_limit(l, req->user);
	if (ulim && (u ? u->sessions : 0) + queued_of(l, req->user) >= ulim) {
		d.reason = "you have reached your session limit";
		return d;
	}
	/* Admit at once only when nobody is waiting for the same resources. */
	if (mode == SUBMIT_ADMIT && l->n_queue == 0 && !host_block(l, req->memory_mb) &&
	    !own_block(l, req)) {
		if (admit(l, req) < 0) {
			d.reason = "out of memory";
			return d;
		}
		d.verdict = QUOTA_ADMIT;
		return d;
	}
	if (l->n_queue == l->cap_queue) {
		size_t nc = l->cap_queue ? l->cap_queue * 2 : 16;
		struct quota_req *nq = realloc(l->queue, nc * sizeof(*nq));
		if (!nq) {
			d.reason = "out of memory";
			return d;
		}
		l->queue = nq;
		l->cap_queue = nc;
	}
	struct quota_req q = *req;
	if (!q.enqueued_ms)
		q.enqueued_ms = now_ms;
	q.round = round_for(l, q.user);
	insert_sorted(l, &q);
	quota_position(l, req->id, now_ms, &d);
	return d;
}

struct quota_decision quota_request(struct quota_ledger *l, const struct quota_req *req,
				    int64_t now_ms)
{
	return submit(l, req, now_ms, SUBMIT_ADMIT);
}

struct quota_decision quota_enqueue(struct quota_ledger *l, const struct quota_req *req,
				    int64_t now_ms)
{
	return submit(l, req, now_ms, SUBMIT_QUEUE);
}

struct quota_decision quota_requeue(struct quota_ledger *l, const struct quota_req *req,
				    bool admitted, bool starting, int64_t now_ms)
{
	if (admitted)
		quota_release(l, req->user, req->image, req->memory_mb, starting);
	return submit(l, req, now_ms, SUBMIT_QUEUE);
}

bool quota_try(struct quota_ledger *l, const struct quota_req *req)
{
	if (l->n_queue || host_block(l, req->memory_mb) || own_block(l, req))
		return false;
	return admit(l, req) == 0;
}

static void remove_at(struct quota_ledger *l, size_t k, struct quota_req *out)
{
	if (out)
		*out = l->queue[k];
	memmove(&l->queue[k], &l->queue[k + 1], (l->n_queue - k - 1) * sizeof(l->queue[0]));
	l->n_queue--;
}

bool quota_next(struct quota_ledger *l, int64_t now_ms, struct quota_req *out)
{
	for (size_t k = 0; k < l->n_queue; k++) {
		struct quota_req *r = &l->queue[k];
		if (r->deadline_ms && now_ms >= r->deadline_ms)
			continue; /* expired: quota_expired takes it */
		if (host_block(l, r->memory_mb))
			return false; /* strict order for host resources */
		if (own_block(l, r))
			continue;
		struct quota_req taken = *r;
		if (admit(l, &taken) < 0)
			return false;
		if (r->round > l->round_served)
			l->round_served = r->round;
		remove_at(l, k, out);
		return true;
	}
	return false;
}

bool quota_expired(struct quota_ledger *l, int64_t now_ms, struct quota_req *out)
{
	for (size_t k = 0; k < l->n_queue; k++) {
		if (l->queue[k].deadline_ms && now_ms >= l->queue[k].deadline_ms) {
			remove_at(l, k, out);
			return true;
		}
	}
	return false;
}

int quota_cancel(struct quota_ledger *l, uint64_t id)
{
	for (size_t k = 0; k < l->n_queue; k++) {
		if (l->queue[k].id == id) {
			remove_at(l, k, NULL);
			return 0;
		}
	}
	return -ENOENT;
}

int quota_position(const struct quota_ledger *l, uint64_t id, int64_t now_ms,
		   struct quota_decision *out)
{
	for (size_t k = 0; k < l->n_queue; k++) {
		if (l->queue[k].id == id) {
			fill_position(l, k, out);
			return 0;
		}
	}
	return -ENOENT;
}

void quota_started(struct quota_ledger *l, int64_t ready_ms)
{
	if (l->starting > 0)
		l->starting--;
	if (ready_ms >= 0) {
		l->start_ms[l->i_start] = ready_ms;
		l->i_start = (l->i_start + 1) % QUOTA_RECENT;
		if (l->n_start < QUOTA_RECENT)
			l->n_start++;
	}
}

void quota_release(struct quota_ledger *l, const char *uname, const char *iname, unsigned memory_mb,
		   bool was_starting)
{
	struct quota_count *u = find(l->users, l->n_users, uname);
	struct quota_count *i = find(l->images, l->n_images, iname);
	if (u && u->sessions > 0)
		u->sessions--;
	if (i && i->sessions > 0)
		i->sessions--;
	if (l->sessions > 0)
		l->sessions--;
	if (was_starting && l->starting > 0)
		l->starting--;
	l->memory_mb = l->memory_mb > memory_mb ? l->memory_mb - memory_mb : 0;
}

void quota_ended(struct quota_ledger *l, const char *uname, const char *iname, unsigned memory_mb,
		 bool was_starting, int64_t now_ms)
{
	quota_release(l, uname, iname, memory_mb, was_starting);
	l->end_at[l->i_end] = now_ms;
	l->i_end = (l->i_end + 1) % QUOTA_RECENT;
	if (l->n_end < QUOTA_RECENT)
		l->n_end++;
}

int quota_restore(struct quota_ledger *l, const char *uname, const char *iname, unsigned memory_mb,
		  bool starting)
{
	struct quota_req r = {.memory_mb = memory_mb};
	if (strlen(uname) > QUOTA_NAME_MAX || strlen(iname) > QUOTA_NAME_MAX)
		return -EINVAL;
	strcpy(r.user, uname);
	strcpy(r.image, iname);
	int e = admit(l, &r);
	if (e == 0 && !starting)
		l->starting--;
	return e;
}
