/*
 * Password checks through PAM, off the event loop: a small pool of worker
 * threads runs pam_authenticate + pam_acct_mgmt and reports back to the
 * loop through a pipe. The password is wiped as soon as PAM is done.
 */
#ifndef NESTOR_AUTH_H
#define NESTOR_AUTH_H

struct event_base;
struct auth;

enum auth_result {
	AUTH_OK,
	AUTH_DENIED,  /* unknown user or wrong password (not told apart) */
	AUTH_ACCOUNT, /* account expired, locked or not allowed */
	AUTH_ERROR,   /* PAM itself failed */
};

/* REASON is human text for the user; borrowed. */
typedef void (*auth_done_fn)(enum auth_result res, const char *reason, void *arg);

struct auth *auth_create(struct event_base *base, const char *service, unsigned threads);
/*
 * Check USER's PASSWORD; PASSWORD is copied and the copy wiped after use
 * (the caller wipes its own). CB runs on the loop, never inside this call.
 * Returns 0 or a negative errno.
 */
int auth_check(struct auth *a, const char *user, const char *password, auth_done_fn cb, void *arg);
/* Joins the workers; pending callbacks are dropped. Accepts NULL. */
void auth_destroy(struct auth *a);
const char *auth_result_name(enum auth_result r);

#endif
