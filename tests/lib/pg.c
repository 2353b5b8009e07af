#include "pg.h"
#include "testenv.h"

#include <glob.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Debian keeps the server's programs in /usr/lib/postgresql/VERSION/bin; the newest wins. */
static bool bindir(char *out, size_t len)
{
	glob_t g;
	bool ok = glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) == 0 && g.gl_pathc > 0;
	if (ok) {
		snprintf(out, len, "%s", g.gl_pathv[g.gl_pathc - 1]);
		*strrchr(out, '/') = '\0';
	}
	if (g.gl_pathc)
		globfree(&g);
	return ok;
}

/* Run CMD as the cluster's owner: "nobody" when we are root. */
static int run_as_owner(const char *cmd)
{
	char line[2200];
	if (getuid() == 0)
		snprintf(line, sizeof(line), "runuser -u nobody -- %s", cmd);
	else
		snprintf(line, sizeof(line), "%s", cmd);
	return system(line);
}

bool pg_start(struct pg *p)
{
	char bin[256], cmd[2048];
	if (!bindir(bin, sizeof(bin)))
		return false;
	snprintf(cmd, sizeof(cmd),
		 "%s/pg_ctl -D %s/data -l %s/log -w -t 30 -o \"-k %s -c listen_addresses='' "
		 "-c fsync=off -c synchronous_commit=off -c full_page_writes=off\" start "
		 ">/dev/null",
		 bin, p->dir, p->dir, p->dir);
	p->running = run_as_owner(cmd) == 0;
	if (!p->running)
		fprintf(stderr, "pg: the server did not start (see %s/log)\n", p->dir);
	return p->running;
}

bool pg_create(struct pg *p)
{
	memset(p, 0, sizeof(*p));
	char bin[256], cmd[2048];
	if (!bindir(bin, sizeof(bin))) {
		fprintf(stderr, "pg: PostgreSQL's server is not installed (scripts/install-deps "
				"installs postgresql-15)\n");
		return false;
	}
	char *dir = testenv_scratch("pg");
	snprintf(p->dir, sizeof(p->dir), "%s", dir);
	free(dir);
	chmod(p->dir, 0755);
	if (getuid() == 0) {
		struct passwd *pw = getpwnam("nobody");
		if (!pw || chown(p->dir, pw->pw_uid, pw->pw_gid) < 0) {
			fprintf(stderr, "pg: cannot hand %s to nobody\n", p->dir);
			return false;
		}
	}
	snprintf(p->conninfo, sizeof(p->conninfo), "host=%s user=nestor dbname=postgres", p->dir);
	snprintf(cmd, sizeof(cmd),
		 "%s/initdb -D %s/data -U nestor --auth=trust -E UTF8 --no-sync >%s/initdb.log "
		 "2>&1",
		 bin, p->dir, p->dir);
	if (run_as_owner(cmd) != 0) {
		fprintf(stderr, "pg: initdb failed (see %s/initdb.log)\n", p->dir);
		return false;
	}
	return pg_start(p);
}

bool pg_stop(struct pg *p)
{
	char bin[256], cmd[2048];
	if (!p->running || !bindir(bin, sizeof(bin)))
		return !p->running;
	snprintf(cmd, sizeof(cmd), "%s/pg_ctl -D %s/data -m fast -w -t 30 stop >/dev/null", bin,
		 p->dir);
	p->running = run_as_owner(cmd) != 0;
	return !p->running;
}

void pg_destroy(struct pg *p)
{
	if (!p->dir[0])
		return;
	pg_stop(p);
	if (!getenv("NESTOR_KEEP_LOGS"))
		testenv_rmtree(p->dir);
	p->dir[0] = '\0';
}

static PGresult *query(struct pg *p, const char *sql, PGconn **conn)
{
	*conn = PQconnectdb(p->conninfo);
	if (PQstatus(*conn) != CONNECTION_OK) {
		fprintf(stderr, "pg: %s", PQerrorMessage(*conn));
		return NULL;
	}
	PGresult *r = PQexec(*conn, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "pg: %s: %s", sql, PQerrorMessage(*conn));
		PQclear(r);
		return NULL;
	}
	return r;
}

bool pg_exec(struct pg *p, const char *sql)
{
	PGconn *c;
	PGresult *r = query(p, sql, &c);
	PQclear(r);
	PQfinish(c);
	return r != NULL;
}

char *pg_value(struct pg *p, const char *sql)
{
	PGconn *c;
	PGresult *r = query(p, sql, &c);
	char *v = r && PQntuples(r) > 0 && PQnfields(r) > 0 ? strdup(PQgetvalue(r, 0, 0)) : NULL;
	PQclear(r);
	PQfinish(c);
	return v;
}
