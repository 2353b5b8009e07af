/*
 * A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a
 * scratch directory, a server on a unix socket there only (no TCP),
 * trust authentication for the role "nestor". PostgreSQL refuses to run
 * as root, so as root the server runs as "nobody".
 */
#ifndef NESTOR_TEST_PG_H
#define NESTOR_TEST_PG_H

#include <stdbool.h>

struct pg {
	char dir[256];	    /* the cluster, its socket and its log */
	char conninfo[320]; /* for libpq: host=DIR user=nestor dbname=postgres */
	bool running;
};

/* A new cluster, started. False (the reason on stderr) if PostgreSQL is missing or fails. */
bool pg_create(struct pg *p);
bool pg_start(struct pg *p);
/* Stop the server (fast shutdown: sessions are cut), keeping the cluster. */
bool pg_stop(struct pg *p);
/* Stop and remove everything. Accepts a cluster that never started. */
void pg_destroy(struct pg *p);
/* Run SQL (one or more statements); false with the error on stderr. */
bool pg_exec(struct pg *p, const char *sql);
/* The first column of the first row of SQL's answer (new string), or NULL. */
char *pg_value(struct pg *p, const char *sql);

#endif
