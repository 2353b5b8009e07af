/*
 * Placement and the fleet queue, on a real PostgreSQL with the real schema
 * (data/fleet/schema.sql), hosts reported as nestord reports them:
 *  - a ready warm guest of the image wins, then a usable template, then
 *    the entry itself, then the most room;
 *  - full, drained, down and undecided hosts take nothing;
 *  - a user's live session is found wherever it runs (a reconnect), and
 *    their cap holds across hosts;
 *  - when every host is full, requests queue in arrival order, in rounds
 *    (a user's second request behind everyone's first), and a host with
 *    room takes the head (one winner);
 *  - a ticket works for its session's host and user, once, before it
 *    expires, and only its hash is stored;
 *  - twelve users placed at once from four connections over three hosts:
 *    no host ever holds more than its caps.
 */
#include "check.h"
#include "fleet_schema.h"
#include "pg.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct pg pg;
static PGconn *db;

static PGresult *q(const char *sql)
{
	PGresult *r = PQexec(db, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(db));
		PQclear(r);
		return NULL;
	}
	return r;
}

/* Host NAME with caps and what it has ready (array literals). */
static void host(const char *name, int max_sessions, int max_starting, const char *warm,
		 const char *templates)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "SELECT nestor_heartbeat('%s', '127.0.0.1:3389', '', 'tcg', %d, %d, 8192, 0, "
		 "'%s', '%s', 0, now(), 6, '{demo}', 0)",
		 name, max_sessions, max_starting, warm, templates);
	PQclear(q(sql));
}

/* Place USER's APP arriving at ENTRY: "HOST", "queued N", "refused: ..." or "existing HOST". */
static char *place(const char *id, const char *user, const char *entry)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "SELECT coalesce(host, ''), coalesce(queue_pos, 0), coalesce(reason, ''), "
		 "existing FROM nestor_connect('%s', '%s', 'ledger', 'demo', 256, '%s', 2, 0)",
		 id, user, entry);
	PGresult *r = q(sql);
	static char out[300];
	if (!r || PQntuples(r) != 1)
		snprintf(out, sizeof(out), "error");
	else if (*PQgetvalue(r, 0, 2))
		snprintf(out, sizeof(out), "refused: %s", PQgetvalue(r, 0, 2));
	else if (!strcmp(PQgetvalue(r, 0, 3), "t"))
		snprintf(out, sizeof(out), "existing %s", PQgetvalue(r, 0, 0));
	else if (*PQgetvalue(r, 0, 0))
		snprintf(out, sizeof(out), "%s", PQgetvalue(r, 0, 0));
	else
		snprintf(out, sizeof(out), "queued %s", PQgetvalue(r, 0, 1));
	PQclear(r);
	return out;
}

/* CHECK_STR evaluates its arguments twice: place once, then compare. */
static void expect_place_at(const char *id, const char *user, const char *entry, const char *want,
			    int line)
{
	char got[300];
	snprintf(got, sizeof(got), "%s", place(id, user, entry));
	CHECK_MSG(!strcmp(got, want), "line %d: placing %s: '%s', not '%s'", line, id, got, want);
}
#define expect_place(id, user, entry, want) expect_place_at(id, user, entry, want, __LINE__)

static void end_all(void)
{
	PQclear(q("UPDATE sessions SET state = 'ended'"));
	PQclear(q("UPDATE hosts SET sessions = 0, starting = 0, memory_mb = 0"));
}

static void test_preferences(void)
{
	host("a", 10, 4, "{}", "{}");
	host("b", 10, 4, "{}", "{\"demo\"}");
	host("c", 10, 4, "{\"demo\"}", "{\"demo\"}");
	expect_place("p1", "u1", "a", "c");   /* warm first */
	host("c", 10, 4, "{}", "{\"demo\"}"); /* that warm guest is taken */
	expect_place("p2", "u2", "a", "b");   /* a template: b and c; b has more room */
	host("b", 20, 4, "{}", "{}");
	host("c", 10, 4, "{}", "{}");
	expect_place("p3", "u3", "a", "a"); /* nothing ready anywhere: the entry */
	expect_place("p4", "u4", "x", "b"); /* an entry outside: the most room (b: 19) */
	end_all();
}

static void test_exclusions(void)
{
	host("a", 1, 1, "{\"demo\"}", "{}");
	expect_place("e1", "v1", "a", "a");
	expect_place("e2", "v2", "a", "b"); /* a is full now (1 session) */
	PQclear(q("UPDATE hosts SET drained = true WHERE name = 'b'"));
	PQclear(q("UPDATE hosts SET up = false WHERE name = 'c'"));
	host("d", 10, 4, "{}", "{}");
	PQclear(q("UPDATE hosts SET accel = '' WHERE name = 'd'"));
	expect_place("e3", "v3", "b", "queued 1"); /* drained, down, undecided: nothing */
	PQclear(q("UPDATE hosts SET drained = false WHERE name = 'b'"));
	PQclear(q("UPDATE hosts SET up = true, accel = 'tcg'"));
	end_all();
}

static void test_user(void)
{
	host("a", 10, 4, "{}", "{}");
	expect_place("w1", "wu", "a", "a");
	expect_place("w2", "wu", "b", "existing a"); /* a reconnect, from any entry */
	/* a second app counts towards the same cap, fleet-wide */
	PQclear(q("INSERT INTO sessions (id, user_name, app, image, host, state) "
		  "VALUES ('w3', 'wu', 'other', 'demo', 'b', 'connected')"));
	PQclear(q("UPDATE sessions SET app = 'third' WHERE id = 'w1'"));
	char *r = place("w5", "wu", "a");
	CHECK_MSG(!strncmp(r, "refused: you already have 2 sessions", 36), "%s", r);
	end_all();
}

static void test_queue(void)
{
	PQclear(q("UPDATE hosts SET max_sessions = 1, max_starting = 1"));
	for (char n = 'a'; n <= 'd'; n++) {
		char id[8] = {'f', n, 0}, u[8] = {'q', n, 0};
		place(id, u, "a"); /* one per host */
	}
	expect_place("q1", "qq1", "a", "queued 1");
	expect_place("q2", "qq2", "b", "queued 2");
	expect_place("q1", "qq1", "c", "existing "); /* still waiting, found again */
	/* in rounds: qq1's second request (another app) waits behind everyone's first */
	PQclear(q("SELECT * FROM nestor_place('q3', 'qq1', 'other', 'demo', 256, 'a', 2, 0)"));
	expect_place("q4", "qq3", "a", "queued 3");
	PGresult *o = q("SELECT string_agg(id, ' ' ORDER BY round, created, id) FROM sessions "
			"WHERE state = 'queued' AND host IS NULL");
	CHECK_MSG(o && !strcmp(PQgetvalue(o, 0, 0), "q1 q2 q4 q3"), "the queue: %s",
		  o ? PQgetvalue(o, 0, 0) : "?");
	PQclear(o);
	o = q("SELECT nestor_queue_pos('q3')");
	CHECK(o && !strcmp(PQgetvalue(o, 0, 0), "4"));
	PQclear(o);
	/* b frees its room: it takes the head, once */
	PQclear(
	    q("SELECT nestor_session_sync('fb', 'b', 'qb', 'ledger', 'demo', 256, 'ended', '')"));
	PGresult *r = q("SELECT coalesce(id, '') FROM nestor_claim('b')");
	CHECK(r && !strcmp(PQgetvalue(r, 0, 0), "q1"));
	PQclear(r);
	r = q("SELECT coalesce(id, '') FROM nestor_claim('b')");
	CHECK_MSG(r && !strcmp(PQgetvalue(r, 0, 0), ""), "b is full again");
	PQclear(r);
	r = q("SELECT host || ' ' || state FROM sessions WHERE id = 'q1'");
	CHECK(r && !strcmp(PQgetvalue(r, 0, 0), "b placed"));
	PQclear(r);
	end_all();
	PQclear(q("UPDATE hosts SET max_sessions = 10, max_starting = 4"));
}

/* How many rows spending TOKEN at HOST for USER gives (1: the session). */
static int redeem(const char *token, const char *host, const char *user)
{
	char sql[300];
	snprintf(sql, sizeof(sql), "SELECT id FROM nestor_ticket_redeem('%s', '%s', '%s')", token,
		 host, user);
	PGresult *r = q(sql);
	int n = r ? PQntuples(r) : -1;
	PQclear(r);
	return n;
}

static bool issue(const char *session, const char *token, int ttl)
{
	char sql[300];
	snprintf(sql, sizeof(sql), "SELECT nestor_ticket_issue('%s', '%s', %d)", session, token,
		 ttl);
	PGresult *r = q(sql);
	bool ok = r && !strcmp(PQgetvalue(r, 0, 0), "t");
	PQclear(r);
	return ok;
}

/* A ticket: for its session's host and user, once, before it expires; only its hash kept. */
static void test_tickets(void)
{
	host("a", 10, 4, "{}", "{}");
	expect_place("t1", "tu", "a", "a");
	CHECK(issue("t1", "tok1", 30));
	CHECK(redeem("tok1", "b", "tu") == 0); /* another host: refused, and spent */
	CHECK(redeem("tok1", "a", "tu") == 0);
	CHECK(issue("t1", "tok2", 30));
	CHECK(redeem("tok2", "a", "someone") == 0); /* another user */
	CHECK(issue("t1", "tok3", 30));
	CHECK(redeem("tok3", "a", "tu") == 1);
	CHECK(redeem("tok3", "a", "tu") == 0); /* once */
	CHECK(issue("t1", "tok4", 0));
	CHECK(redeem("tok4", "a", "tu") == 0); /* expired */
	CHECK(!issue("nosuch", "tok5", 30));
	PGresult *r = q("SELECT count(*) FROM tickets WHERE hash = convert_to('tok4', 'UTF8')");
	CHECK_MSG(r && !strcmp(PQgetvalue(r, 0, 0), "0"), "only hashes are stored");
	PQclear(r);
	end_all();
}

struct worker {
	int n;
	int placed;
};

static void *storm(void *arg)
{
	struct worker *w = arg;
	PGconn *c = PQconnectdb(pg.conninfo);
	for (int i = 0; i < 3 && PQstatus(c) == CONNECTION_OK; i++) {
		char sql[512];
		snprintf(
		    sql, sizeof(sql),
		    "SELECT host FROM nestor_connect('s%d_%d', 'storm%d_%d', 'ledger', 'demo', "
		    "256, 'h%d', 2, 0)",
		    w->n, i, w->n, i, w->n % 3);
		PGresult *r = PQexec(c, sql);
		w->placed += PQresultStatus(r) == PGRES_TUPLES_OK && !PQgetisnull(r, 0, 0);
		PQclear(r);
	}
	PQfinish(c);
	return NULL;
}

static void test_storm(void)
{
	PQclear(q("UPDATE hosts SET up = false"));
	for (int i = 0; i < 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "h%d", i);
		host(name, 3, 2, "{}", "{\"demo\"}");
	}
	pthread_t t[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.n = i};
		pthread_create(&t[i], NULL, storm, &w[i]);
	}
	int placed = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		placed += w[i].placed;
	}
	/* 3 hosts x max_starting 2: six placed, six queued; never more */
	PGresult *r = q("SELECT count(*) FROM (SELECT host, count(*) AS n FROM sessions "
			"WHERE host IS NOT NULL AND nestor_live(state) GROUP BY host) x "
			"JOIN hosts h ON h.name = x.host WHERE x.n > h.max_starting");
	CHECK_MSG(r && !strcmp(PQgetvalue(r, 0, 0), "0"), "hosts over their caps: %s",
		  r ? PQgetvalue(r, 0, 0) : "?");
	PQclear(r);
	CHECK_MSG(placed == 6, "%d of 12 placed at once", placed);
	r = q("SELECT count(*) FROM sessions WHERE state = 'queued' AND host IS NULL");
	CHECK(r && !strcmp(PQgetvalue(r, 0, 0), "6"));
	PQclear(r);
}

int main(void)
{
	if (!pg_create(&pg)) {
		CHECK(!"a PostgreSQL cluster started");
		return check_done("test_placement");
	}
	db = PQconnectdb(pg.conninfo);
	char err[256];
	int from, to;
	CHECK(PQstatus(db) == CONNECTION_OK);
	PQclear(PQexec(db, "SET client_min_messages = warning"));
	CHECK(fleet_schema_apply(db, &from, &to, err, sizeof(err)) == 0 && from == 0 &&
	      to == fleet_schema_latest());
	test_preferences();
	test_exclusions();
	test_user();
	test_queue();
	test_tickets();
	test_storm();
	PQfinish(db);
	pg_destroy(&pg);
	return check_done("test_placement");
}
