/*
 * The fleet's scale benchmark (issue 15): a throwaway PostgreSQL cluster
 * loaded with a simulated fleet (hosts, a session directory with history,
 * a fleet queue), then the latency of the calls nestord makes, each one
 * round trip over the unix socket: a heartbeat, a placement, a queue
 * claim, alone and from several connections at once. Afterwards it checks
 * that no host holds more than its caps allow. Blocking libpq throughout:
 * a benchmark, not part of nestord. Results: docs/fleet-scale.md.
 *
 * usage: fleet_bench [--hosts N] [--sessions N] [--queued N] [--calls N] [--clients N]
 *                    [--users N] [--image-max N] [--seed N] [--sql FILE] [--keep]
 */
#include "fleet_schema.h"
#include "pg.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IMAGES 20

static struct {
	int hosts, sessions, queued, calls, clients, users, image_max;
	unsigned seed;
	const char *sql; /* run after the schema: a change to its functions to try */
	bool keep;	 /* leave the cluster running, for EXPLAIN */
} opt = {1000, 100000, 5000, 2000, 4, 20000, 0, 1, NULL, false};

static struct pg pg;

/*
 * Host I's heartbeat, the one place its caps are written: max_sessions
 * 100-120, 4 starting, 64 GiB; every fifth host has a warm guest, every
 * second one templates of three images. Calling it again recounts the
 * host's usage from its sessions. $1..$2: the range of hosts.
 */
#define HEARTBEAT_SQL                                                                              \
	"SELECT count(nestor_heartbeat('h' || i, 'h' || i || ':3389', '', 'kvm', 100 + i % 21, "   \
	"4, 65536, 0, CASE WHEN i % 5 = 0 THEN ARRAY['img' || i % 20] ELSE '{}' END, "             \
	"CASE WHEN i % 2 = 0 THEN ARRAY['img' || i % 20, 'img' || (i + 1) % 20, "                  \
	"'img' || (i + 7) % 20] ELSE '{}' END, 2000 + i % 500, '2026-12-01', 30, "                 \
	"(SELECT array_agg('img' || k) FROM generate_series(0, 19) k), 0)) "                       \
	"FROM generate_series($1::int, $2::int) i"

/* One host in a hundred is drained, one is down; nestord on those claims nothing. */
static bool host_open(int i)
{
	return i % 100 >= 2;
}

/*
 * The session directory: the first $3 rows queued (the oldest), the rest
 * spread round-robin over the $1 hosts; odd rounds have ended (history),
 * even rounds live, one session per host still starting; a down host's
 * sessions are lost. User uI has at most one session, so the benchmark's
 * users (u0..u{users}) start with zero or one of their two allowed.
 */
static const char sessions_sql[] =
    "INSERT INTO sessions (id, user_name, app, image, memory_mb, host, entry, state, "
    "reason, created, placed, ended) "
    "SELECT 's' || i, 'u' || i, 'app' || i % 20, 'img' || i % 20, 256 * (1 + i % 4), "
    "CASE WHEN q THEN NULL ELSE 'h' || h END, 'h' || (i * 7) % $1, st, "
    "CASE WHEN st = 'lost' THEN 'its host stopped answering' ELSE '' END, "
    "now() - ($2 - i) * interval '1 s', CASE WHEN NOT q THEN now() - ($2 - i) * interval '1 s' "
    "END, CASE WHEN st IN ('ended', 'lost') THEN now() END "
    "FROM (SELECT i, q, h, CASE WHEN q THEN 'queued' WHEN h % 100 = 1 THEN 'lost' "
    "WHEN r % 2 = 1 THEN 'ended' WHEN r = 10 THEN 'starting' "
    "WHEN r % 6 = 4 THEN 'disconnected' ELSE 'connected' END AS st "
    "FROM (SELECT i, i < $3 AS q, i % $1 AS h, i / $1 AS r "
    "FROM generate_series(0, $2 - 1) i) g) g";

/* as host_open() says; a down host's sessions were loaded lost */
static const char drain_sql[] = "UPDATE hosts SET drained = substr(name, 2)::int % 100 = 0";
static const char down_sql[] = "UPDATE hosts SET up = false, heartbeat = now() - interval '1 hour' "
			       "WHERE substr(name, 2)::int % 100 = 1";

/*
 * The caps, from the rows themselves (not the hosts' counters): hosts over
 * a cap, hosts whose counters drifted from their rows, users over 2.
 */
static const char check_sql[] =
    "WITH live AS (SELECT host, count(*) AS n, "
    "count(*) FILTER (WHERE state IN ('placed', 'starting')) AS st, "
    "sum(memory_mb) AS mem FROM sessions WHERE host IS NOT NULL AND nestor_live(state) "
    "GROUP BY host) "
    "SELECT count(*) FILTER (WHERE l.n > h.max_sessions OR l.st > h.max_starting "
    "OR l.mem > h.max_memory_mb), "
    "count(*) FILTER (WHERE l.n <> h.sessions OR l.st <> h.starting OR l.mem <> h.memory_mb), "
    "max(l.st), count(*) FILTER (WHERE l.st = h.max_starting), "
    "(SELECT count(*) FROM (SELECT 1 FROM sessions WHERE nestor_live(state) "
    "GROUP BY user_name HAVING count(*) > 2) u) "
    "FROM hosts h JOIN live l ON l.host = h.name";

static const char summary_sql[] =
    "SELECT (SELECT count(*) FROM hosts), (SELECT count(*) FROM hosts WHERE up AND NOT drained), "
    "(SELECT count(*) FROM sessions), (SELECT count(*) FROM sessions WHERE nestor_live(state)), "
    "(SELECT count(*) FROM sessions WHERE state = 'queued'), "
    "(SELECT sum(starting) FROM hosts), "
    "pg_size_pretty(pg_database_size(current_database())), "
    "pg_size_pretty(pg_total_relation_size('sessions'))";

enum op { OP_HEARTBEAT, OP_PLACE, OP_CLAIM };
static const char *const op_names[] = {"heartbeat", "place", "claim"};

struct worker {
	pthread_t t;
	enum op op;
	int idx, n, phase;
	bool settle; /* report each new session ready, so the run keeps room to start */
	uint64_t rng;
	PGconn *c;
	double *ms;
	int done, placed, queued, refused, empty, errors;
};

/* Shared by a concurrent phase: the placers start together; the heartbeat follows them. */
static pthread_barrier_t start_line;
static atomic_bool placers_done;
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_host[64] = "h2";

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* xorshift64*: reproducible per worker, no shared state between threads */
static int rnd(uint64_t *s, int n)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (int)((*s * 2685821657736338717ULL) >> 33) % n;
}

/* Run SQL with text parameters, one round trip; its result, or NULL (said) on an error. */
static PGresult *run(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return r;
	fprintf(stderr, "fleet_bench: %.60s...: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return NULL;
}

static bool exec(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = run(c, sql, n, params);
	PQclear(r);
	return r != NULL;
}

/* A new session's host reports it ready: it no longer counts as starting. */
static bool settle(PGconn *c, const char *id, const char *host)
{
	const char *p[] = {id, host};
	/* what nestord writes when a guest is up (the user and app are not needed then) */
	PGresult *r =
	    run(c, "SELECT nestor_session_sync($1, $2, '', '', '', 0, 'ready', '')", 2, p);
	PQclear(r);
	return r != NULL;
}

static void set_last(const char *host)
{
	pthread_mutex_lock(&last_lock);
	snprintf(last_host, sizeof(last_host), "%s", host);
	pthread_mutex_unlock(&last_lock);
}

/* One call of W's operation, timed; false on an error. */
static bool one(struct worker *w, int k)
{
	char id[64], user[32], image[16], mem[8], entry[16], host[64], umax[] = "2", imax[16];
	const char *sql, *p[8];
	int n;
	int h;
	do
		h = rnd(&w->rng, opt.hosts);
	while (!host_open(h));
	switch (w->op) {
	case OP_HEARTBEAT:
		/* during concurrent placements: the host just placed on, where a recount races */
		if (w->phase > 0) {
			pthread_mutex_lock(&last_lock);
			h = atoi(last_host + 1);
			pthread_mutex_unlock(&last_lock);
		}
		snprintf(host, sizeof(host), "%d", h);
		sql = HEARTBEAT_SQL;
		p[0] = p[1] = host;
		n = 2;
		break;
	case OP_PLACE:
		snprintf(id, sizeof(id), "b%d.%d.%d", w->phase, w->idx, k);
		snprintf(user, sizeof(user), "u%d", rnd(&w->rng, opt.users));
		snprintf(image, sizeof(image), "img%d", rnd(&w->rng, IMAGES));
		snprintf(mem, sizeof(mem), "%d", 256 * (1 + rnd(&w->rng, 4)));
		snprintf(entry, sizeof(entry), "h%d", h);
		snprintf(imax, sizeof(imax), "%d", opt.image_max);
		sql =
		    "SELECT * FROM nestor_place($1, $2, 'app', $3, $4::int, $5, $6::int, $7::int)";
		p[0] = id, p[1] = user, p[2] = image, p[3] = mem, p[4] = entry, p[5] = umax,
		p[6] = imax;
		n = 7;
		break;
	default:
		snprintf(host, sizeof(host), "h%d", h);
		sql = "SELECT * FROM nestor_claim($1)";
		p[0] = host;
		n = 1;
		break;
	}
	double t0 = now_ms();
	PGresult *r = run(w->c, sql, n, p);
	w->ms[w->done++] = now_ms() - t0;
	if (!r || PQntuples(r) != 1) {
		PQclear(r);
		return false;
	}
	bool ok = true;
	if (w->op == OP_PLACE) {
		if (!PQgetisnull(r, 0, 0)) {
			w->placed++;
			snprintf(host, sizeof(host), "%s", PQgetvalue(r, 0, 0));
			set_last(host);
			if (w->settle)
				ok = settle(w->c, id, host);
		} else if (PQgetvalue(r, 0, 2)[0]) {
			w->refused++;
		} else {
			w->queued++;
		}
	} else if (w->op == OP_CLAIM) {
		if (PQgetisnull(r, 0, 0)) {
			w->empty++;
		} else {
			w->placed++;
			snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
			if (w->settle)
				ok = settle(w->c, id, host);
		}
	}
	PQclear(r);
	return ok;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	pthread_barrier_wait(&start_line);
	/* the background heartbeat stops with the placers, or at N calls */
	bool background = w->op == OP_HEARTBEAT && w->phase > 0;
	for (int k = 0; k < w->n && !(background && atomic_load(&placers_done)); k++)
		if (!one(w, k))
			w->errors++;
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One line of the table: the merged samples of workers W[0..n). */
static void report(const char *what, int clients, struct worker *w, int n)
{
	int total = 0, placed = 0, queued = 0, refused = 0, empty = 0, errors = 0;
	for (int i = 0; i < n; i++)
		total += w[i].done;
	double *all = malloc(sizeof(double) * (size_t)(total ? total : 1)), sum = 0;
	if (!all)
		return;
	for (int i = 0, j = 0; i < n; i++) {
		for (int k = 0; k < w[i].done; k++, j++)
			sum += all[j] = w[i].ms[k];
		placed += w[i].placed, queued += w[i].queued, refused += w[i].refused;
		empty += w[i].empty, errors += w[i].errors;
	}
	qsort(all, (size_t)total, sizeof(double), cmp);
	char outcome[128] = "";
	if (w[0].op == OP_PLACE)
		snprintf(outcome, sizeof(outcome), "placed %d, queued %d, refused %d", placed,
			 queued, refused);
	else if (w[0].op == OP_CLAIM)
		snprintf(outcome, sizeof(outcome), "claimed %d, nothing to claim %d", placed,
			 empty);
	if (errors)
		snprintf(outcome + strlen(outcome), sizeof(outcome) - strlen(outcome), " ERRORS %d",
			 errors);
	if (total)
		printf("%-10s %7d %6d %7.3f %7.3f %7.3f %7.3f  %s\n", what, clients, total,
		       sum / total, all[total / 2], all[(int)(total * 0.99)], all[total - 1],
		       outcome);
	fflush(stdout);
	free(all);
}

/*
 * A phase: CLIENTS connections doing OP, CALLS in all; with HEARTBEAT, one
 * more connection heartbeats the host last placed on until they finish.
 * Returns the number of errors.
 */
static int phase(int no, enum op op, int clients, int calls, bool settle_new, bool heartbeat)
{
	int n = clients + heartbeat, errors = 0;
	struct worker *w = calloc((size_t)n, sizeof(*w));
	if (!w)
		return 1;
	pthread_barrier_init(&start_line, NULL, (unsigned)n);
	atomic_store(&placers_done, false);
	for (int i = 0; i < n; i++) {
		w[i].op = i < clients ? op : OP_HEARTBEAT;
		w[i].idx = i;
		w[i].phase = no;
		w[i].n = i < clients ? calls / clients : calls;
		w[i].settle = settle_new;
		w[i].rng = opt.seed * 1000003ULL + (uint64_t)no * 7919 + (uint64_t)i + 1;
		w[i].ms = calloc((size_t)w[i].n, sizeof(double));
		w[i].c = PQconnectdb(pg.conninfo);
		if (!w[i].ms || PQstatus(w[i].c) != CONNECTION_OK) {
			/* before any thread waits at the start line */
			fprintf(stderr, "fleet_bench: %s", PQerrorMessage(w[i].c));
			for (int j = 0; j <= i; j++) {
				PQfinish(w[j].c);
				free(w[j].ms);
			}
			pthread_barrier_destroy(&start_line);
			free(w);
			return 1;
		}
	}
	for (int i = 0; i < n; i++)
		pthread_create(&w[i].t, NULL, work, &w[i]);
	for (int i = 0; i < clients; i++)
		pthread_join(w[i].t, NULL);
	atomic_store(&placers_done, true);
	for (int i = clients; i < n; i++)
		pthread_join(w[i].t, NULL);
	pthread_barrier_destroy(&start_line);
	report(op_names[op], clients, w, clients);
	if (heartbeat)
		report("+heartbeat", 1, &w[clients], 1);
	for (int i = 0; i < n; i++) {
		errors += w[i].errors;
		PQfinish(w[i].c);
		free(w[i].ms);
	}
	free(w);
	return errors;
}

static void summary(PGconn *c, const char *when)
{
	PGresult *r = run(c, summary_sql, 0, NULL);
	if (!r || PQntuples(r) != 1) {
		PQclear(r);
		return;
	}
	printf("%s: %s hosts (%s open), %s sessions (%s live, %s queued, %s starting), "
	       "database %s (sessions %s)\n",
	       when, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
	       PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 6),
	       PQgetvalue(r, 0, 7));
	PQclear(r);
}

/* Load the fleet: hosts, their sessions, a recount, the drained and the down. */
static bool load(PGconn *c)
{
	char hosts[16], last[16], sessions[16], queued[16];
	snprintf(hosts, sizeof(hosts), "%d", opt.hosts);
	snprintf(last, sizeof(last), "%d", opt.hosts - 1);
	snprintf(sessions, sizeof(sessions), "%d", opt.sessions);
	snprintf(queued, sizeof(queued), "%d", opt.queued);
	const char *range[] = {"0", last}, *s[] = {hosts, sessions, queued};
	double t0 = now_ms();
	bool ok = exec(c, HEARTBEAT_SQL, 2, range) && exec(c, sessions_sql, 3, s) &&
		  exec(c, HEARTBEAT_SQL, 2, range) && exec(c, drain_sql, 0, NULL) &&
		  exec(c, down_sql, 0, NULL) && exec(c, "VACUUM ANALYZE", 0, NULL);
	if (ok)
		printf("loaded in %.1f s\n", (now_ms() - t0) / 1e3);
	return ok;
}

/* The caps held if no host is over one and no user over two; prints what it found. */
static bool check(PGconn *c)
{
	PGresult *r = run(c, check_sql, 0, NULL);
	if (!r || PQntuples(r) != 1) {
		PQclear(r);
		return false;
	}
	bool ok = !strcmp(PQgetvalue(r, 0, 0), "0") && !strcmp(PQgetvalue(r, 0, 4), "0");
	printf("check: %s hosts over a cap, %s users over 2 live sessions, %s hosts whose "
	       "counters differ from their rows; most starting on one host %s, %s hosts at "
	       "max_starting: %s\n",
	       PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
	       PQgetvalue(r, 0, 3), ok ? "caps held" : "CAPS EXCEEDED");
	PQclear(r);
	return ok;
}

/* FILE's statements, through the simple protocol: several at once, dollar quotes and all. */
static bool run_file(PGconn *c, const char *path)
{
	FILE *f = fopen(path, "r");
	char *sql = NULL;
	size_t len = 0;
	bool ok = false;
	if (!f) {
		perror(path);
		return false;
	}
	if (getdelim(&sql, &len, '\0', f) > 0) {
		PGresult *r = PQexec(c, sql);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
		if (!ok)
			fprintf(stderr, "fleet_bench: %s: %s", path, PQerrorMessage(c));
		PQclear(r);
	}
	free(sql);
	fclose(f);
	return ok;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fleet_bench [options]\n"
		"  --hosts N      simulated hosts (default %d)\n"
		"  --sessions N   sessions in the directory, live, ended and queued (default %d)\n"
		"  --queued N     of those, waiting in the fleet queue (default %d)\n"
		"  --calls N      calls per measurement (default %d)\n"
		"  --clients N    connections of the concurrent measurements (default %d)\n"
		"  --users N      users placing sessions, 2 each at most (default %d)\n"
		"  --image-max N  per-image cap passed to nestor_place, 0: none (default %d)\n"
		"  --seed N       random seed (default %u)\n"
		"  --sql FILE     run FILE's SQL after the schema (to try a change to a function)\n"
		"  --keep         leave the cluster running at the end (to EXPLAIN), say where\n",
		opt.hosts, opt.sessions, opt.queued, opt.calls, opt.clients, opt.users,
		opt.image_max, opt.seed);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int *v;
	} flags[] = {
	    {"--hosts", &opt.hosts},	     {"--sessions", &opt.sessions},
	    {"--queued", &opt.queued},	     {"--calls", &opt.calls},
	    {"--clients", &opt.clients},     {"--users", &opt.users},
	    {"--image-max", &opt.image_max},
	};
	for (int i = 1; i < argc; i++) {
		size_t f = 0;
		if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--keep")) {
			opt.keep = true;
			continue;
		}
		if (!strcmp(argv[i], "--sql") && i + 1 < argc) {
			opt.sql = argv[++i];
			continue;
		}
		if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			opt.seed = (unsigned)strtoul(argv[++i], NULL, 10);
			continue;
		}
		while (f < sizeof(flags) / sizeof(flags[0]) && strcmp(argv[i], flags[f].name))
			f++;
		if (f == sizeof(flags) / sizeof(flags[0]) || i + 1 == argc) {
			usage(stderr);
			return 2;
		}
		*flags[f].v = atoi(argv[++i]);
	}
	if (opt.hosts < 100 || opt.sessions < opt.queued || opt.calls < 1 || opt.clients < 1 ||
	    opt.users < 1) {
		fprintf(stderr, "fleet_bench: at least 100 hosts, 1 call, 1 client, 1 user; "
				"no more queued than sessions\n");
		return 2;
	}

	int rc = 1, from, to;
	char err[256];
	PGconn *c = NULL;
	if (!pg_create(&pg))
		goto out;
	c = PQconnectdb(pg.conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "fleet_bench: %s", PQerrorMessage(c));
		goto out;
	}
	if (fleet_schema_apply(c, &from, &to, err, sizeof(err)) < 0) {
		fprintf(stderr, "fleet_bench: %s\n", err);
		goto out;
	}
	if (opt.sql && !run_file(c, opt.sql))
		goto out;
	PGresult *v = run(c, "SHOW server_version", 0, NULL);
	if (!v || PQntuples(v) != 1) {
		PQclear(v);
		goto out;
	}
	printf("fleet_bench: PostgreSQL %s, schema %d, %d hosts, %d sessions, %d queued, "
	       "%d calls, %d clients, %d users, image cap %d, seed %u\n",
	       PQgetvalue(v, 0, 0), to, opt.hosts, opt.sessions, opt.queued, opt.calls, opt.clients,
	       opt.users, opt.image_max, opt.seed);
	PQclear(v);
	if (!load(c))
		goto out;
	summary(c, "before");

	printf("\n%-10s %7s %6s %7s %7s %7s %7s  (ms)\n", "op", "clients", "calls", "mean", "p50",
	       "p99", "max");
	/*
	 * Alone, each new session is reported ready right away (untimed), as
	 * its host would: placements then keep finding start slots. The last
	 * phase does not, so hosts fill up to max_starting under 4 placers.
	 */
	int errors = phase(0, OP_HEARTBEAT, 1, opt.calls, false, false) +
		     phase(0, OP_PLACE, 1, opt.calls, true, false) +
		     phase(0, OP_CLAIM, 1, opt.calls, true, false) +
		     phase(1, OP_CLAIM, opt.clients, opt.calls, true, false) +
		     phase(2, OP_PLACE, opt.clients, opt.calls, false, true);
	printf("\n");
	summary(c, "after");
	if (check(c) && !errors)
		rc = 0;
out:
	PQfinish(c);
	if (opt.keep && pg.running)
		printf("kept: psql '%s'; stop: pg_ctl -D %s/data stop\n", pg.conninfo, pg.dir);
	else
		pg_destroy(&pg);
	return rc;
}
