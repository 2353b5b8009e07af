/* Failed-login throttling: pure, bounded. */
#include "throttle.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void throttle_init(struct throttle *t, unsigned max_failures, unsigned window, unsigned lockout)
{
	memset(t, 0, sizeof(*t));
	t->max_failures = max_failures;
	t->window = window;
	t->lockout = lockout;
}

static struct throttle_entry *find(const struct throttle *t, const char *key)
{
	for (unsigned i = 0; i < t->n; i++)
		if (strcmp(t->e[i].key, key) == 0)
			return (struct throttle_entry *)&t->e[i];
	return NULL;
}

unsigned throttle_locked(const struct throttle *t, const char *key, int64_t now)
{
	const struct throttle_entry *e = find(t, key);
	if (!e)
		return 0;
	if (e->locked_until > now)
		return (unsigned)(e->locked_until - now);
	bool fresh = now - e->first >= (int64_t)t->window;
	if (t->max_failures && (fresh ? 0 : e->failures) + e->pending >= t->max_failures)
		return 1;
	return 0;
}

/* KEY's entry, made if there is none (the stalest one goes when the table is full). */
static struct throttle_entry *entry(struct throttle *t, const char *key, int64_t now)
{
	struct throttle_entry *e = find(t, key);
	if (!e) {
		if (t->n < THROTTLE_KEYS) {
			e = &t->e[t->n++];
		} else { /* forget the stalest */
			e = &t->e[0];
			for (unsigned i = 1; i < t->n; i++)
				if (t->e[i].last < e->last)
					e = &t->e[i];
		}
		memset(e, 0, sizeof(*e));
		snprintf(e->key, sizeof(e->key), "%s", key);
		e->first = now;
	}
	return e;
}

void throttle_begin(struct throttle *t, const char *key, int64_t now)
{
	if (t->max_failures == 0)
		return;
	struct throttle_entry *e = entry(t, key, now);
	e->pending++;
	e->last = now;
}

unsigned throttle_fail(struct throttle *t, const char *key, int64_t now)
{
	if (t->max_failures == 0)
		return 0;
	struct throttle_entry *e = entry(t, key, now);
	if (e->pending)
		e->pending--;
	if (now - e->first >= (int64_t)t->window) {
		e->first = now;
		e->failures = 0;
	}
	e->last = now;
	if (++e->failures >= t->max_failures) {
		e->locked_until = now + t->lockout;
		e->failures = 0;
		e->first = now;
		return t->lockout;
	}
	return 0;
}

void throttle_ok(struct throttle *t, const char *key)
{
	struct throttle_entry *e = find(t, key);
	if (e) {
		if (e->pending)
			e->pending--;
		e->failures = 0;
		e->first = e->last;
	}
}

void throttle_cancel(struct throttle *t, const char *key)
{
	struct throttle_entry *e = find(t, key);
	if (e && e->pending)
		e->pending--;
}
