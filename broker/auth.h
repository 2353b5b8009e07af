/*
 * Password checks through PAM, off the event loop: a small pool of worker
 * threads runs pam_authenticate + pam_acct_mgmt and reports back to the
 * loop through a pipe. The password and the one-time code are wiped as
 * soon as PAM is done.
 */
#ifndef NESTOR_AUTH_H
#define NESTOR_AUTH_H

struct event_base;
struct auth;

enum auth_result {
	AUTH_OK,
	AUTH_DENIED,	/* unknown user or wrong password (not told apart) */
	AUTH_ACCOUNT,	/* account expired, locked or not allowed */
	AUTH_ERROR,	/* PAM itself failed */
	AUTH_NEED_CODE, /* the stack asked for a one-time code and none was given */
};

/* PAM's prompt for a code, as AUTH_NEED_CODE's REASON: at most this many bytes. */
#define AUTH_PROMPT_MAX 128

/*
 * REASON is human text for the user; borrowed. For AUTH_NEED_CODE it is
 * PAM's prompt for the code (printable ASCII, at most AUTH_PROMPT_MAX).
 */
typedef void (*auth_done_fn)(enum auth_result res, const char *reason, void *arg);

struct auth *auth_create(struct event_base *base, const char *service, unsigned threads);
/*
 * Check USER's PASSWORD and one-time CODE (NULL or "": none given). Each
 * prompt PAM asks gets what the user typed for it: a prompt for a one-time
 * code (its text says so, or it is a hidden one after the password's) gets
 * CODE, the first other hidden one PASSWORD, any other visible one USER.
 * Both are copied and the copies wiped
 * after use (the caller wipes its own). CB runs on the loop, never inside
 * this call. Returns 0 or a negative errno (-E2BIG: a string too long).
 */
int auth_check(struct auth *a, const char *user, const char *password, const char *code,
	       auth_done_fn cb, void *arg);
/* Joins the workers; pending callbacks are dropped. Accepts NULL. */
void auth_destroy(struct auth *a);
const char *auth_result_name(enum auth_result r);

#endif
