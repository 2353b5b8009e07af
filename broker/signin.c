/*
 * The portal's sign-ins (signin.h). A linear scan with a constant-time
 * compare per slot: 4096 slots of 64 bytes is a few microseconds, and no
 * slot's contents leak through how long a lookup took.
 */
#include "signin.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool expired(const struct signin *s, int64_t now)
{
	return now - s->used_ms >= (int64_t)SIGNIN_IDLE_S * 1000 ||
	       now - s->made_ms >= (int64_t)SIGNIN_LIFE_S * 1000;
}

static struct signin *find(struct signins *t, const char *token)
{
	size_t n = strlen(token);
	if (n != SIGNIN_TOKEN_LEN || strspn(token, "0123456789abcdef") != n)
		return NULL;
	struct signin *hit = NULL;
	for (size_t i = 0; i < SIGNIN_MAX; i++)
		if (t->e[i].token[0] && util_secret_eq(t->e[i].token, token))
			hit = &t->e[i];
	return hit;
}

int signin_add(struct signins *t, const char *user, int64_t now, char token[SIGNIN_TOKEN_LEN + 1])
{
	/* a free or expired slot, else the stalest; but never more than SIGNIN_PER_USER of
	 * USER's own: then USER's stalest (one account cannot push everyone out) */
	struct signin *slot = NULL, *mine = NULL;
	unsigned n_mine = 0;
	for (size_t i = 0; i < SIGNIN_MAX; i++) {
		struct signin *s = &t->e[i];
		if (s->token[0] && expired(s, now))
			memset(s, 0, sizeof(*s));
		if (s->token[0] && !strcmp(s->user, user)) {
			n_mine++;
			if (!mine || s->used_ms < mine->used_ms)
				mine = s;
		}
		if (!slot || (slot->token[0] && (!s->token[0] || s->used_ms < slot->used_ms)))
			slot = s;
	}
	if (n_mine >= SIGNIN_PER_USER)
		slot = mine;
	if (util_random_hex(token, SIGNIN_TOKEN_LEN / 2) < 0)
		return -EIO;
	memset(slot, 0, sizeof(*slot));
	memcpy(slot->token, token, SIGNIN_TOKEN_LEN + 1);
	snprintf(slot->user, sizeof(slot->user), "%s", user);
	slot->made_ms = slot->used_ms = now;
	return 0;
}

const char *signin_user(struct signins *t, const char *token, int64_t now)
{
	struct signin *s = find(t, token);
	if (!s)
		return NULL;
	if (expired(s, now)) {
		memset(s, 0, sizeof(*s));
		return NULL;
	}
	s->used_ms = now;
	return s->user;
}

int signin_drop(struct signins *t, const char *token)
{
	struct signin *s = find(t, token);
	if (s)
		memset(s, 0, sizeof(*s));
	return s != NULL;
}

unsigned signin_expires_s(const struct signins *t, const char *token, int64_t now)
{
	struct signin *s = find((struct signins *)t, token);
	if (!s || expired(s, now))
		return 0;
	int64_t idle = s->used_ms + (int64_t)SIGNIN_IDLE_S * 1000 - now;
	int64_t life = s->made_ms + (int64_t)SIGNIN_LIFE_S * 1000 - now;
	return (unsigned)((idle < life ? idle : life) / 1000);
}

int launch_add(struct launches *t, const char *user, const char *app, int64_t now,
	       char ticket[SIGNIN_TOKEN_LEN + 1])
{
	struct launch *slot = NULL, *mine = NULL;
	unsigned n_mine = 0;
	for (size_t i = 0; i < LAUNCH_MAX; i++) {
		struct launch *l = &t->e[i];
		if (l->ticket[0] && l->until_ms <= now)
			memset(l, 0, sizeof(*l));
		if (l->ticket[0] && !strcmp(l->user, user)) {
			n_mine++;
			if (!mine || l->until_ms < mine->until_ms)
				mine = l;
		}
		/* free first, else the one closest to its end */
		if (!slot || (slot->ticket[0] && (!l->ticket[0] || l->until_ms < slot->until_ms)))
			slot = l;
	}
	if (n_mine >= LAUNCH_PER_USER)
		slot = mine;
	if (util_random_hex(ticket, SIGNIN_TOKEN_LEN / 2) < 0)
		return -EIO;
	memset(slot, 0, sizeof(*slot));
	memcpy(slot->ticket, ticket, SIGNIN_TOKEN_LEN + 1);
	snprintf(slot->user, sizeof(slot->user), "%s", user);
	snprintf(slot->app, sizeof(slot->app), "%s", app);
	slot->until_ms = now + (int64_t)LAUNCH_TTL_S * 1000;
	return 0;
}

bool launch_redeem(struct launches *t, const char *ticket, const char *user, const char *app,
		   int64_t now)
{
	size_t n = strlen(ticket);
	if (n != SIGNIN_TOKEN_LEN || strspn(ticket, "0123456789abcdef") != n)
		return false;
	for (size_t i = 0; i < LAUNCH_MAX; i++) {
		struct launch *l = &t->e[i];
		if (!l->ticket[0] || !util_secret_eq(l->ticket, ticket))
			continue;
		/* found: used up whatever the verdict, so a wrong guess of the user burns it */
		bool ok = l->until_ms > now && !strcmp(l->user, user) && !strcmp(l->app, app);
		memset(l, 0, sizeof(*l));
		return ok;
	}
	return false;
}
