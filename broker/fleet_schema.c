/*
 * Migrations are the sections of data/fleet/schema.sql that begin with a
 * line "-- migration N: what"; N counts up from 1.
 */
#include "fleet_schema.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARK "\n-- migration "

/* The section of migration N: its start and length; false if there is none. */
static bool section(int n, const char **start, size_t *len)
{
	const char *p = strstr(fleet_schema_sql, MARK);
	while (p) {
		const char *next = strstr(p + 1, MARK);
		if (atoi(p + strlen(MARK)) == n) {
			*start = p + 1;
			*len = next ? (size_t)(next - p) : strlen(p + 1);
			return true;
		}
		p = next;
	}
	return false;
}

int fleet_schema_latest(void)
{
	int n = 0;
	const char *s;
	size_t len;
	while (section(n + 1, &s, &len))
		n++;
	return n;
}

static void pq_error(char *err, size_t errlen, const char *what, const char *msg)
{
	snprintf(err, errlen, "%s: %s", what, msg);
	char *nl = strchr(err, '\n');
	if (nl)
		*nl = '\0';
}

int fleet_schema_version(PGconn *c, char *err, size_t errlen)
{
	/* two statements: a query naming a missing table fails however it is written */
	PGresult *r = PQexec(c, FLEET_SCHEMA_EXISTS_SQL);
	int v = -EIO;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		bool exists = !strcmp(PQgetvalue(r, 0, 0), "t");
		PQclear(r);
		if (!exists)
			return 0;
		r = PQexec(c, FLEET_SCHEMA_VERSION_SQL);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
			v = atoi(PQgetvalue(r, 0, 0));
	}
	if (v < 0)
		pq_error(err, errlen, "reading the schema version", PQerrorMessage(c));
	PQclear(r);
	return v;
}

static int exec_ok(PGconn *c, const char *sql, char *err, size_t errlen, const char *what)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -EIO;
	if (rc < 0)
		pq_error(err, errlen, what, PQerrorMessage(c));
	PQclear(r);
	return rc;
}

int fleet_schema_apply(PGconn *c, int *from, int *to, char *err, size_t errlen)
{
	int latest = fleet_schema_latest();
	*from = *to = -1;
	for (;;) {
		if (exec_ok(c, "BEGIN; SELECT pg_advisory_xact_lock(hashtext('nestor schema'))",
			    err, errlen, "locking the schema") < 0)
			return -EIO;
		int v = fleet_schema_version(c, err, errlen);
		if (*from < 0)
			*from = v;
		if (v < 0 || v >= latest) {
			exec_ok(c, "ROLLBACK", err, errlen, "rollback");
			*to = v;
			if (v > latest) {
				snprintf(err, errlen,
					 "the database's schema (version %d) is newer than this "
					 "nestor's (%d): upgrade nestor",
					 v, latest);
				return -EPROTO;
			}
			return v < 0 ? v : 0;
		}
		const char *s;
		size_t len;
		section(v + 1, &s, &len);
		char *sql = malloc(len + 80);
		if (!sql) {
			exec_ok(c, "ROLLBACK", err, errlen, "rollback");
			return -ENOMEM;
		}
		int n = snprintf(sql, len + 80,
				 "%.*s\n;INSERT INTO nestor_schema (version) VALUES (%d)", (int)len,
				 s, v + 1);
		(void)n;
		char what[64];
		snprintf(what, sizeof(what), "migration %d", v + 1);
		int rc = exec_ok(c, sql, err, errlen, what);
		free(sql);
		if (rc < 0 || exec_ok(c, "COMMIT", err, errlen, what) < 0) {
			PQclear(PQexec(c, "ROLLBACK"));
			return -EIO;
		}
	}
}
