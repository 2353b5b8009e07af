/*
 * Signed-in users of the portal, pure: a bounded table of random tokens,
 * each naming the user PAM accepted. nestord hands a token out for every
 * successful POST /v1/auth; the portal keeps it in the user's cookie and
 * sends it back (?token=) to act for that user, and for no one else. A
 * token ends after SIGNIN_IDLE_S without use, SIGNIN_LIFE_S after it was
 * made, or when its user signs out; a full table forgets its stalest
 * token first. Tokens live in nestord's memory only: a restart signs
 * everyone out of the portal (not out of their sessions).
 */
#ifndef NESTOR_SIGNIN_H
#define NESTOR_SIGNIN_H

#include <stdbool.h>
#include <stdint.h>

#define SIGNIN_MAX 4096
#define SIGNIN_IDLE_S (30 * 60)
#define SIGNIN_LIFE_S (12 * 60 * 60)
#define SIGNIN_TOKEN_LEN 64 /* hex characters */
#define SIGNIN_PER_USER 32  /* one user's sign-ins at most: the oldest goes first */

struct signin {
	char token[SIGNIN_TOKEN_LEN + 1]; /* "" free */
	char user[65];
	int64_t made_ms, used_ms;
};

struct signins {
	struct signin e[SIGNIN_MAX];
};

/* A fresh token for USER at NOW into TOKEN; 0, or a negative errno (no randomness). */
int signin_add(struct signins *t, const char *user, int64_t now_ms,
	       char token[SIGNIN_TOKEN_LEN + 1]);
/* The user TOKEN names at NOW (its idle clock restarts), or NULL: unknown or expired. */
const char *signin_user(struct signins *t, const char *token, int64_t now_ms);
/* Sign TOKEN out; returns whether it was signed in. */
int signin_drop(struct signins *t, const char *token);
/* Seconds until TOKEN's end if it stays idle, as of NOW (0 if unknown). */
unsigned signin_expires_s(const struct signins *t, const char *token, int64_t now_ms);

/*
 * Launch tickets: "open this app in the browser". A signed-in user gets one
 * for one app (POST /v1/me/launch/APP); the browser door presents it as
 * the password of an RDP connect ("nestor-launch:" TICKET, the gateway's
 * GW_LAUNCH_PREFIX), and nestord takes it instead of PAM once, for that
 * user and app, within LAUNCH_TTL_S.
 */
#define LAUNCH_PREFIX "nestor-launch:"
#define LAUNCH_MAX 1024
#define LAUNCH_TTL_S 60
#define LAUNCH_PER_USER 8

struct launch {
	char ticket[SIGNIN_TOKEN_LEN + 1]; /* "" free */
	char user[65], app[65];
	int64_t until_ms;
};

struct launches {
	struct launch e[LAUNCH_MAX];
};

/* A ticket for USER and APP at NOW into TICKET; 0 or a negative errno. */
int launch_add(struct launches *t, const char *user, const char *app, int64_t now_ms,
	       char ticket[SIGNIN_TOKEN_LEN + 1]);
/* Use TICKET for USER and APP at NOW: true once (it is gone after), false if not valid. */
bool launch_redeem(struct launches *t, const char *ticket, const char *user, const char *app,
		   int64_t now_ms);

#endif
