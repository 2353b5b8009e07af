/*
 * Failed-login throttling, pure: after MAX failures within WINDOW seconds a
 * key (a user name or a client address) is locked for LOCKOUT seconds. An
 * attempt counts from when it starts (throttle_begin) until it ends, so
 * attempts made in parallel cannot race past the lock. The table is
 * bounded; the stalest entries are forgotten first.
 */
#ifndef NESTOR_THROTTLE_H
#define NESTOR_THROTTLE_H

#include <stdint.h>

#define THROTTLE_KEYS 4096

struct throttle_entry {
	char key[72];
	unsigned failures;
	unsigned pending; /* attempts begun, not yet ended */
	int64_t first;	  /* start of the current window */
	int64_t locked_until;
	int64_t last;
};

struct throttle {
	unsigned max_failures; /* 0 disables throttling */
	unsigned window, lockout;
	struct throttle_entry e[THROTTLE_KEYS];
	unsigned n;
};

void throttle_init(struct throttle *t, unsigned max_failures, unsigned window, unsigned lockout);
/*
 * Seconds KEY stays locked at NOW (0: not locked); 1 while attempts in
 * flight would reach the limit if they failed.
 */
unsigned throttle_locked(const struct throttle *t, const char *key, int64_t now);
/* An attempt for KEY starts; it ends with throttle_fail or throttle_ok. */
void throttle_begin(struct throttle *t, const char *key, int64_t now);
/* Record a failure (ending an attempt); returns the lock in seconds it caused (0 none). */
unsigned throttle_fail(struct throttle *t, const char *key, int64_t now);
void throttle_ok(struct throttle *t, const char *key);
/* An attempt that never ran: it ends without a verdict. */
void throttle_cancel(struct throttle *t, const char *key);

#endif
