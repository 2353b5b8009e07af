/*
 * Authentication: PAM checks off the loop (auth.c's workers), the failure
 * throttle per user and per client address, and the audit of every login.
 * A request can be cancelled by its caller; its result still counts.
 */
#ifndef NESTOR_BRK_AUTHN_H
#define NESTOR_BRK_AUTHN_H

#include "broker.h"

struct event_base;
struct store;
struct authn;
struct brk_metrics;

/* MET (may be NULL) counts the results. */
struct authn *authn_create(struct event_base *base, const struct brk_config *cfg, struct store *st,
			   struct brk_metrics *met);
/* Joins the PAM workers; no callback runs after this. Accepts NULL. */
void authn_destroy(struct authn *an);
/* brk_authenticate. */
int authn_check(struct authn *an, const char *user, const char *password, const char *code,
		const char *client, brk_auth_fn cb, void *arg, struct brk_authreq **out);

#endif
