/* Opening a store by where it lives, and the helpers every caller shares. */
#include "store.h"
#include "util.h"

#include <stdio.h>

struct store *store_open(const char *where, char *err, size_t errlen)
{
	/* one implementation so far: the embedded sqlite file */
	return store_sqlite_open(where, err, errlen);
}

void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}

void store_audit_log(struct store *st, const char *kind, const char *user, const char *client,
		     const char *session, const char *detail)
{
	struct db_audit a = {.ts = util_wall_s()};
	snprintf(a.kind, sizeof(a.kind), "%s", kind ? kind : "");
	snprintf(a.user, sizeof(a.user), "%s", user ? user : "");
	snprintf(a.client, sizeof(a.client), "%s", client ? client : "");
	snprintf(a.session, sizeof(a.session), "%s", session ? session : "");
	snprintf(a.detail, sizeof(a.detail), "%s", detail ? detail : "");
	store_audit(st, &a);
}
