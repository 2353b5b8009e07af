/* Authentication with throttle and audit (see authn.h). Runs on the loop. */
#include "authn.h"
#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "throttle.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct authn {
	struct store *st;
	struct auth *auth;
	struct throttle thr;
	struct brk_authreq *reqs;
	struct brk_metrics *met;
};

/* A PAM check in flight; its caller may cancel it, the throttle and audit still count it. */
struct brk_authreq {
	struct brk_authreq *next, **prevp;
	struct authn *an;
	char user[65];
	char client[64];
	brk_auth_fn cb; /* NULL once cancelled */
	void *arg;
};

static void req_unlink(struct brk_authreq *a)
{
	*a->prevp = a->next;
	if (a->next)
		a->next->prevp = a->prevp;
}

void brk_auth_cancel(struct brk_authreq *a)
{
	if (a)
		a->cb = NULL;
}

static void keys(const char *user, const char *client, char ukey[80], char ckey[80])
{
	snprintf(ukey, 80, "u:%s", user);
	snprintf(ckey, 80, "a:%.64s", client);
}

static void on_auth(enum auth_result res, const char *reason, void *arg)
{
	struct brk_authreq *a = arg;
	struct authn *an = a->an;
	req_unlink(a);
	char ukey[80], ckey[80];
	keys(a->user, a->client, ukey, ckey);
	int64_t now = util_wall_s();
	int status = 0;
	if (an->met)
		an->met->auth[res == AUTH_OK	      ? AUTHM_OK
			      : res == AUTH_DENIED    ? AUTHM_DENIED
			      : res == AUTH_ACCOUNT   ? AUTHM_ACCOUNT
			      : res == AUTH_NEED_CODE ? AUTHM_CODE
						      : AUTHM_ERROR]++;
	if (res == AUTH_OK) {
		throttle_ok(&an->thr, ukey);
		throttle_ok(&an->thr, ckey);
		store_audit_log(an->st, "login-ok", a->user, a->client, NULL, NULL);
	} else {
		/*
		 * A code asked for fails too: else, behind a requisite password
		 * module, "need a code" would tell a guesser the password is right
		 * as often as they like.
		 */
		bool code = res == AUTH_NEED_CODE;
		unsigned lu = throttle_fail(&an->thr, ukey, now);
		unsigned lc = a->client[0] ? throttle_fail(&an->thr, ckey, now) : 0;
		store_audit_log(an->st, code ? "login-need-code" : "login-failed", a->user,
				a->client, NULL, reason);
		if (lu || lc) {
			char d[96];
			snprintf(d, sizeof(d), "locked for %u s", lu > lc ? lu : lc);
			store_audit_log(an->st, "login-throttled", a->user, a->client, NULL, d);
		}
		status = res == AUTH_DENIED    ? -EACCES
			 : res == AUTH_ACCOUNT ? -EPERM
			 : code		       ? -ENOKEY
					       : -EIO;
		if (code)
			log_info("user=%s client=%s login asks for a one-time code", a->user,
				 a->client);
		else
			log_info("user=%s client=%s login failed: %s", a->user, a->client, reason);
	}
	if (a->cb)
		a->cb(status, reason, a->arg);
	free(a);
}

int authn_check(struct authn *an, const char *user, const char *password, const char *code,
		const char *client, brk_auth_fn cb, void *arg, struct brk_authreq **out)
{
	if (!util_name_valid(user))
		return -EINVAL;
	client = client ? client : "";
	char ukey[80], ckey[80];
	keys(user, client, ukey, ckey);
	int64_t now = util_wall_s();
	if (throttle_locked(&an->thr, ukey, now) ||
	    (*client && throttle_locked(&an->thr, ckey, now))) {
		store_audit_log(an->st, "login-throttled", user, client, NULL,
				"refused while locked");
		if (an->met)
			an->met->auth_throttled++;
		return -EAGAIN;
	}
	struct brk_authreq *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	/* the attempt counts against the user from now: parallel guesses cannot race past
	 * the lock (an address counts failures only: many honest users share a NAT's) */
	throttle_begin(&an->thr, ukey, now);
	a->an = an;
	snprintf(a->user, sizeof(a->user), "%s", user);
	snprintf(a->client, sizeof(a->client), "%s", client);
	a->cb = cb;
	a->arg = arg;
	int r = auth_check(an->auth, user, password, code, on_auth, a);
	if (r < 0) {
		/* it never ran: not a failure */
		throttle_cancel(&an->thr, ukey);
		free(a);
		return r;
	}
	a->next = an->reqs;
	if (a->next)
		a->next->prevp = &a->next;
	a->prevp = &an->reqs;
	an->reqs = a;
	*out = a;
	return 0;
}

struct authn *authn_create(struct event_base *base, const struct brk_config *cfg, struct store *st,
			   struct brk_metrics *met)
{
	struct authn *an = calloc(1, sizeof(*an));
	if (!an)
		return NULL;
	an->st = st;
	an->met = met;
	throttle_init(&an->thr, cfg->auth_max_failures, cfg->auth_window, cfg->auth_lockout);
	an->auth = auth_create(base, cfg->pam_service, 2);
	if (!an->auth) {
		free(an);
		return NULL;
	}
	return an;
}

void authn_destroy(struct authn *an)
{
	if (!an)
		return;
	auth_destroy(an->auth); /* no callback runs after this */
	while (an->reqs) {
		struct brk_authreq *a = an->reqs;
		req_unlink(a);
		free(a);
	}
	free(an);
}
