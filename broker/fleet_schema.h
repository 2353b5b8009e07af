/*
 * The fleet's PostgreSQL schema (data/fleet/schema.sql, built in): its
 * migrations, the version this nestor needs, and applying it. Applying
 * uses libpq's blocking calls: for nestorctl, the benchmark and tests,
 * never nestord's loop.
 */
#ifndef NESTOR_FLEET_SCHEMA_H
#define NESTOR_FLEET_SCHEMA_H

#include <libpq-fe.h>
#include <stddef.h>

/* Whether the schema exists, then its version (for nestord's own, non-blocking, asking). */
#define FLEET_SCHEMA_EXISTS_SQL "SELECT to_regclass('nestor_schema') IS NOT NULL"
#define FLEET_SCHEMA_VERSION_SQL "SELECT coalesce(max(version), 0) FROM nestor_schema"

/* The highest migration built in: what nestord requires. */
/* data/fleet/schema.sql (made by embed-text.py) */
extern const char fleet_schema_sql[];

int fleet_schema_latest(void);
/* The database's schema version (0: none yet), or a negative errno with ERR. */
int fleet_schema_version(PGconn *c, char *err, size_t errlen);
/*
 * Apply every migration newer than the database's, each in its own
 * transaction under an advisory lock (two at once: one waits, then finds
 * nothing to do). *FROM and *TO: the version before and after.
 */
int fleet_schema_apply(PGconn *c, int *from, int *to, char *err, size_t errlen);

#endif
