/*
 * Hosts of a fleet on a real PostgreSQL (a throwaway cluster):
 *  - nestorctl fleet init creates the schema, and again finds it current;
 *    a nestord on a database without it says to run fleet init;
 *  - two nestords heartbeat: each lists both hosts with their caps, usage
 *    and accelerator (the API and nestorctl hosts);
 *  - drain from either host: the drained one refuses new sessions, keeps
 *    its own; undrain; an unknown host is a 404;
 *  - kill -9 of a host's nestord: the other marks it down within 10 s and
 *    its sessions lost, with the reason;
 *  - PostgreSQL stopped: the fleet's questions get "the fleet is
 *    unavailable" at once, the host keeps serving; started again: the host
 *    reconnects by itself.
 */
#include "check.h"
#include "daemon.h"
#include "pg.h"
#include "testenv.h"
#include "util.h"
#include "x11.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USERS                                                                                      \
	"ann:ann-pw:nestor\nbob:bob-pw:nestor\ncat:cat-pw:nestor\n"                                \
	"s01:s01-pw:nestor\ns02:s02-pw:nestor\ns03:s03-pw:nestor\ns04:s04-pw:nestor\n"             \
	"s05:s05-pw:nestor\ns06:s06-pw:nestor\ns07:s07-pw:nestor\ns08:s08-pw:nestor\n"             \
	"s09:s09-pw:nestor\ns10:s10-pw:nestor\ns11:s11-pw:nestor\ns12:s12-pw:nestor\n"

static struct pg pg;
static struct nestord h1, h2, h3;
static unsigned gw_port[4]; /* h1's, h2's and h3's gateways */

/* Host NAME (h1, h2, ...): its gateway on 127.0.0.1:gw_port[N], its certificate pinned. */
static void host_setup(struct nestord *d, const char *name, const char *db, unsigned max_sessions)
{
	char extra[2048];
	int n = name[strlen(name) - 1] - '0';
	unsigned port = n > 0 && n < 4 ? (gw_port[n] = free_tcp_port()) : 3389;
	nestord_setup(d, name, USERS, NULL);
	snprintf(
	    extra, sizeof(extra),
	    "[caps]\nmax_sessions = %u\nmax_memory_mb = 4096\n[sessions]\nstop_grace = 1\n"
	    /* faster than the defaults (2 s, 6 s): the suite waits for hosts to go down */
	    "[fleet]\ndb = %s\nname = %s\ngateway = 127.0.0.1:%u\nheartbeat = 1\ndown_after = 4\n"
	    "gateway_cert = %s/gw/tls.crt\n",
	    max_sessions, db, name, port, d->dir);
	nestord_setup_conf(d, extra);
}

/* Run nestorctl ARGS; its exit status, OUT its output (new string). */
static int nestorctl(struct nestord *d, const char *args, char **out)
{
	char cmd[1024], path[400];
	snprintf(path, sizeof(path), "%s/nestorctl.out", d->dir);
	snprintf(cmd, sizeof(cmd), "%s/broker/nestorctl --socket %s %s >%s 2>&1",
		 getenv("NESTOR_BUILD"), d->sock, args, path);
	int st = system(cmd);
	*out = testenv_slurp(path, NULL);
	if (!*out)
		*out = strdup("");
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* HOST as D's GET /v1/hosts lists it (new reference), or NULL. */
static json_object *host_of(struct nestord *d, const char *host)
{
	json_object *o = NULL, *list, *found = NULL;
	if (api(d, "GET", "/v1/hosts", NULL, &o) == 200 &&
	    json_object_object_get_ex(o, "hosts", &list)) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			json_object *h = json_object_array_get_idx(list, i);
			if (!strcmp(jget(h, "name"), host))
				found = json_object_get(h);
		}
	}
	json_object_put(o);
	return found;
}

static bool jbool(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

struct hostq {
	struct nestord *d;
	const char *host, *key;
	bool want;
};

static bool host_is(void *arg)
{
	struct hostq *q = arg;
	json_object *h = host_of(q->d, q->host);
	bool ok = h && jbool(h, q->key) == q->want && *jget(h, "accel");
	json_object_put(h);
	return ok;
}

/* Ask until COND or TIMEOUT_MS (the fleet's state has no event to wait on). */
static bool eventually(bool (*cond)(void *), void *arg, int timeout_ms)
{
	int64_t end = util_now_ms() + timeout_ms;
	while (!cond(arg)) {
		if (util_now_ms() > end)
			return false;
		usleep(100 * 1000);
	}
	return true;
}

static bool status_fleet(struct nestord *d, const char *key, bool want)
{
	json_object *o = NULL, *f;
	bool ok = api(d, "GET", "/v1/status", NULL, &o) == 200 &&
		  json_object_object_get_ex(o, "fleet", &f) && jbool(f, key) == want;
	json_object_put(o);
	return ok;
}

struct statusq {
	struct nestord *d;
	const char *key;
	bool want;
};

static bool status_is(void *arg)
{
	struct statusq *q = arg;
	return status_fleet(q->d, q->key, q->want);
}

static void test_init(void)
{
	char cmd[1024], *out;
	snprintf(cmd, sizeof(cmd), "fleet init --db '%s'", pg.conninfo);
	CHECK(nestorctl(&h1, cmd, &out) == 0);
	CHECK_MSG(strstr(out, "now version 1 (was 0)"), "first init: %s", out);
	free(out);
	CHECK(nestorctl(&h1, cmd, &out) == 0);
	CHECK_MSG(strstr(out, "up to date (version 1)"), "second init: %s", out);
	free(out);
	CHECK(nestorctl(&h1, "fleet init --db 'host=/nonexistent user=nestor'", &out) == 3);
	CHECK_MSG(strstr(out, "cannot connect to the fleet database"), "%s", out);
	free(out);
}

/* A nestord on a database nobody initialised says what to do. */
static void test_no_schema(void)
{
	CHECK(pg_exec(&pg, "CREATE DATABASE bare"));
	char db[400];
	snprintf(db, sizeof(db), "host=%s user=nestor dbname=bare", pg.dir);
	struct nestord d;
	host_setup(&d, "h9", db, 5);
	CHECK(nestord_start(&d));
	json_object *o = NULL, *f = NULL;
	struct statusq q = {&d, "available", false};
	CHECK(eventually(status_is, &q, 3000));
	for (int i = 0; i < 50; i++) { /* the error comes with the first heartbeat's answer */
		json_object_put(o);
		o = NULL;
		api(&d, "GET", "/v1/status", NULL, &o);
		if (json_object_object_get_ex(o, "fleet", &f) && strstr(jget(f, "error"), "init"))
			break;
		usleep(100 * 1000);
	}
	CHECK_MSG(f && strstr(jget(f, "error"), "run nestorctl fleet init"), "fleet: %s",
		  f ? json_object_to_json_string(f) : "none");
	json_object_put(o);
	CHECK(api(&d, "GET", "/v1/hosts", NULL, NULL) == 503);
	int st = nestord_stop(&d, SIGTERM, 10000);
	CHECK_MSG(st == 0, "h9's exit status %d (its log: %s)", st, d.log);
	if (st == 0)
		testenv_rmtree(d.dir);
}

static void test_hosts(void)
{
	struct hostq q1 = {&h1, "h1", "up", true}, q2 = {&h1, "h2", "up", true};
	CHECK_MSG(eventually(host_is, &q1, 10000) && eventually(host_is, &q2, 10000),
		  "h1 lists both hosts up");
	json_object *h = host_of(&h2, "h1");
	CHECK(h && jint(h, "max_sessions") == 5 && jint(h, "max_memory_mb") == 4096);
	CHECK_STR(jget(h, "accel"), "tcg");
	char gw[64];
	snprintf(gw, sizeof(gw), "127.0.0.1:%u", gw_port[1]);
	CHECK_STR(jget(h, "gateway"), gw);
	CHECK(h && !jbool(h, "self") && !jbool(h, "drained") && jint(h, "sessions") == 0);
	json_object_put(h);
	h = host_of(&h2, "h2");
	CHECK(h && jbool(h, "self") && jint(h, "max_sessions") == 7);
	CHECK(h && jint(h, "heartbeat_age_ms") >= 0 && jint(h, "heartbeat_age_ms") < 5000);
	json_object_put(h);

	char *out;
	CHECK(nestorctl(&h1, "hosts", &out) == 0);
	CHECK_MSG(strstr(out, "HOST") && strstr(out, "h1 ") && strstr(out, "h2 ") &&
		      strstr(out, " up ") && strstr(out, "0/7"),
		  "nestorctl hosts:\n%s", out);
	free(out);
	CHECK(nestorctl(&h1, "hosts drain", &out) == 2);
	free(out);
}

/* USER's live session on D: its id. */
static bool session_on(struct nestord *d, const char *user, char *id, size_t len)
{
	json_object *all = NULL;
	bool found = false;
	api(d, "GET", "/v1/sessions", NULL, &all);
	for (size_t i = 0; i < json_object_array_length(all) && !found; i++) {
		json_object *o = json_object_array_get_idx(all, i);
		if (!strcmp(jget(o, "user"), user)) {
			snprintf(id, len, "%s", jget(o, "id"));
			found = true;
		}
	}
	json_object_put(all);
	return found;
}

struct onq {
	struct nestord *d;
	const char *user;
	char id[40];
};

static bool has_session_on(void *arg)
{
	struct onq *q = arg;
	return session_on(q->d, q->user, q->id, sizeof(q->id));
}

static int connect_as(struct nestord *d, const char *user)
{
	char pass[80];
	snprintf(pass, sizeof(pass), "%s-pw", user);
	int st = nestord_connect(d, user, pass, "ledger", NULL, 0);
	if (st >= 300)
		fprintf(stderr, "connect %s: %d\n", user, st);
	return st;
}

/* --- a storm over three hosts --- */

static struct nestord *const hosts3[3] = {&h1, &h2, &h3};
static volatile bool sampling;
static unsigned samples, over;

/* Every 100 ms, each host's own usage against its caps. */
static void *sampler(void *arg)
{
	while (sampling) {
		for (int i = 0; i < 3; i++) {
			json_object *o = NULL, *c, *u;
			if (api(hosts3[i], "GET", "/v1/status", NULL, &o) == 200 &&
			    json_object_object_get_ex(o, "caps", &c) &&
			    json_object_object_get_ex(o, "usage", &u)) {
				samples++;
				if (jint(u, "sessions") > jint(c, "max_sessions") ||
				    jint(u, "starting") > jint(c, "max_starting")) {
					over++;
					fprintf(stderr, "h%d over its caps: %s\n", i + 1,
						json_object_to_json_string(o));
				}
			}
			json_object_put(o);
		}
		usleep(100 * 1000);
	}
	return NULL;
}

struct arrival {
	int n;
	int status;
	char state[16], host[16];
};

static void *arrive(void *arg)
{
	struct arrival *a = arg;
	char body[200];
	snprintf(body, sizeof(body),
		 "{\"user\":\"s%02d\",\"password\":\"s%02d-pw\",\"app\":\"ledger\"}", a->n, a->n);
	json_object *o = NULL;
	a->status = api(hosts3[a->n % 3], "POST", "/v1/sessions", body, &o);
	snprintf(a->state, sizeof(a->state), "%s", jget(o, "state"));
	snprintf(a->host, sizeof(a->host), "%s", jget(o, "host"));
	json_object_put(o);
	return NULL;
}

static bool six_running(void *arg)
{
	char *v = pg_value(&pg, "SELECT count(*) FROM sessions WHERE user_name LIKE 's__' AND "
				"state IN ('ready', 'connected')");
	bool ok = v && !strcmp(v, "6");
	free(v);
	return ok;
}

static bool head_claimed(void *arg)
{
	char sql[200], *v;
	snprintf(sql, sizeof(sql), "SELECT host FROM sessions WHERE user_name = '%s'", (char *)arg);
	v = pg_value(&pg, sql);
	bool ok = v && !strcmp(v, "h1");
	free(v);
	return ok;
}

/*
 * Twelve users at once, four at each host's API, over three hosts of two
 * sessions and two starts each: six placed, six in the fleet queue, and no
 * host over its caps at any 100 ms sample; a session ends on h1 and h1
 * takes the queue's head.
 */
static void test_storm(void)
{
	for (int i = 0; i < 3; i++)
		CHECK(api(hosts3[i], "PUT", "/v1/caps", "{\"max_sessions\":2,\"max_starting\":2}",
			  NULL) == 200);
	sleep(2); /* a heartbeat of each with the new caps */
	pthread_t smp, t[12];
	struct arrival a[12];
	sampling = true;
	pthread_create(&smp, NULL, sampler, NULL);
	for (int i = 0; i < 12; i++) {
		a[i] = (struct arrival){.n = i + 1};
		pthread_create(&t[i], NULL, arrive, &a[i]);
	}
	int placed = 0, queued = 0;
	for (int i = 0; i < 12; i++) {
		pthread_join(t[i], NULL);
		CHECK_MSG(a[i].status == 200, "s%02d: %d", a[i].n, a[i].status);
		placed += !!a[i].host[0];
		queued += !strcmp(a[i].state, "queued") && !a[i].host[0];
	}
	CHECK_MSG(placed == 6 && queued == 6, "%d placed, %d in the fleet queue", placed, queued);
	char *v = pg_value(&pg, "SELECT count(*) FILTER (WHERE host IS NOT NULL) || ' ' || "
				"count(*) FILTER (WHERE host IS NULL) FROM sessions WHERE "
				"user_name LIKE 's__' AND nestor_live(state)");
	CHECK_MSG(v && !strcmp(v, "6 6"), "the fleet: placed, queued: %s", v ? v : "?");
	free(v);
	CHECK_MSG(wait_for(six_running, NULL, 90000), "six guests up, two on each host");
	char *head = pg_value(&pg, "SELECT user_name FROM sessions WHERE state = 'queued' AND "
				   "host IS NULL ORDER BY round, created, id LIMIT 1");
	char *victim = pg_value(&pg, "SELECT id FROM sessions WHERE host = 'h1' AND user_name "
				     "LIKE 's__' AND state IN ('ready', 'connected') LIMIT 1");
	CHECK(head && victim);
	char path[128];
	snprintf(path, sizeof(path), "/v1/sessions/%s", victim ? victim : "none");
	CHECK(api(&h1, "DELETE", path, NULL, NULL) == 200);
	CHECK_MSG(wait_for(head_claimed, head ? head : "", 15000),
		  "h1 took the fleet queue's head (%s)", head ? head : "?");
	sampling = false;
	pthread_join(smp, NULL);
	CHECK_MSG(over == 0 && samples > 100, "%u samples, %u over a cap", samples, over);
	free(head);
	free(victim);
	/* the rest ends: the queue first, then every host's storm sessions */
	CHECK(pg_exec(&pg, "UPDATE sessions SET state = 'ended' WHERE state = 'queued' AND host IS "
			   "NULL"));
	for (int i = 0; i < 3; i++) {
		json_object *all = NULL;
		api(hosts3[i], "GET", "/v1/sessions", NULL, &all);
		for (size_t k = 0; k < json_object_array_length(all); k++) {
			json_object *s = json_object_array_get_idx(all, k);
			snprintf(path, sizeof(path), "/v1/sessions/%s", jget(s, "id"));
			api(hosts3[i], "DELETE", path, NULL, NULL);
		}
		json_object_put(all);
	}
	CHECK(api(&h1, "PUT", "/v1/caps", "{\"max_sessions\":5}", NULL) == 200);
	CHECK(api(&h2, "PUT", "/v1/caps", "{\"max_sessions\":7}", NULL) == 200);
}

static void test_drain(void)
{
	char *out;
	CHECK(nestorctl(&h1, "hosts drain h2", &out) == 0);
	CHECK_MSG(strstr(out, "h2: drained"), "%s", out);
	free(out);
	struct hostq q = {&h1, "h2", "drained", true};
	CHECK(eventually(host_is, &q, 1000));
	struct statusq s = {&h2, "drained", true};
	CHECK_MSG(eventually(status_is, &s, 5000), "h2 learns it is drained from its heartbeat");
	/* ann arrives at the drained h2: the fleet places her on h1 */
	json_object *o = NULL;
	CHECK(api(&h2, "POST", "/v1/sessions",
		  "{\"user\":\"ann\",\"password\":\"ann-pw\",\"app\":\"ledger\"}", &o) == 200);
	CHECK_MSG(!strcmp(jget(o, "host"), "h1") && !strcmp(jget(o, "state"), "ready"),
		  "placed on h1: %s", json_object_to_json_string(o));
	json_object_put(o);
	struct onq on1 = {&h1, "ann", ""};
	char id[40];
	CHECK_MSG(eventually(has_session_on, &on1, 5000), "h1 took ann's session");
	CHECK(!session_on(&h2, "ann", id, sizeof(id)));
	CHECK(connect_as(&h1, "ann") == 200); /* a reconnect there */

	CHECK(nestorctl(&h2, "hosts undrain h2", &out) == 0);
	free(out);
	s.want = false;
	CHECK(eventually(status_is, &s, 1000)); /* its own API: at once */
	q.want = false;
	CHECK(eventually(host_is, &q, 1000));
	CHECK(connect_as(&h2, "bob") == 200);

	CHECK(nestorctl(&h1, "hosts drain nosuch", &out) == 1);
	CHECK_MSG(strstr(out, "no host nosuch") && strstr(out, "HTTP 404"), "%s", out);
	free(out);
	CHECK(api(&h1, "POST", "/v1/hosts/bad%20name/drain", NULL, NULL) == 400);
	CHECK(api(&h1, "GET", "/v1/hosts/h2", NULL, NULL) == 404);
	CHECK(api(&h1, "DELETE", "/v1/hosts", NULL, NULL) == 405);
}

static void test_host_dies(void)
{
	/* a session the fleet knows on h2 (its directory is the next step) */
	CHECK(pg_exec(&pg, "INSERT INTO sessions (id, user_name, app, image, host, state) "
			   "VALUES ('s-on-h2', 'bob', 'ledger', 'demo', 'h2', 'connected')"));
	int64_t t0 = util_now_ms();
	nestord_stop(&h2, SIGKILL, 5000); /* its guest lives on, for the next nestord */
	struct hostq q = {&h1, "h2", "up", false};
	CHECK_MSG(eventually(host_is, &q, 10000), "h2 down within 10 s");
	fprintf(stderr, "h2 was marked down %.1f s after kill -9\n",
		(double)(util_now_ms() - t0) / 1000);
	char *st =
	    pg_value(&pg, "SELECT state || ': ' || reason FROM sessions WHERE id = 's-on-h2'");
	CHECK_MSG(st && !strcmp(st, "lost: its host h2 stopped answering"), "its session: %s",
		  st ? st : "?");
	free(st);
}

static bool hosts_answer(void *arg)
{
	return api(arg, "GET", "/v1/hosts", NULL, NULL) == 200;
}

static void test_pg_down(void)
{
	CHECK(pg_stop(&pg));
	json_object *o = NULL;
	int st = 0;
	for (int i = 0; i < 30 && (st = api(&h1, "GET", "/v1/hosts", NULL, &o)) == 200; i++) {
		json_object_put(o);
		o = NULL;
		usleep(100 * 1000);
	}
	CHECK_MSG(st == 503, "GET /v1/hosts with PostgreSQL stopped: %d", st);
	CHECK_MSG(strstr(jget(o, "error"), "the fleet is unavailable, try again in a minute"), "%s",
		  jget(o, "error"));
	json_object_put(o);
	struct statusq s = {&h1, "available", false};
	CHECK(eventually(status_is, &s, 1000));
	/* new sessions wait for the fleet; a session here is still reached */
	o = NULL;
	CHECK(api(&h1, "POST", "/v1/sessions",
		  "{\"user\":\"cat\",\"password\":\"cat-pw\",\"app\":\"ledger\"}", &o) == 503);
	CHECK_MSG(strstr(jget(o, "error"), "the fleet is unavailable, try again in a minute"), "%s",
		  jget(o, "error"));
	json_object_put(o);
	CHECK(connect_as(&h1, "ann") == 200);
	CHECK(pg_start(&pg));
	int64_t t0 = util_now_ms();
	CHECK_MSG(eventually(hosts_answer, &h1, 15000), "h1 reconnects by itself");
	s.want = true;
	CHECK(eventually(status_is, &s, 5000));
	fprintf(stderr, "h1 answered again %.1f s after PostgreSQL restarted\n",
		(double)(util_now_ms() - t0) / 1000);
	/* the explicit import: h1's live sessions, all of them, in the fleet */
	char *out;
	CHECK(nestorctl(&h1, "fleet import", &out) == 0);
	json_object *all = NULL;
	api(&h1, "GET", "/v1/sessions", NULL, &all);
	size_t n = json_object_array_length(all);
	json_object_put(all);
	char want[64];
	snprintf(want, sizeof(want), "host h1: %zu live sessions written", n);
	CHECK_MSG(n > 0 && strstr(out, want), "nestorctl fleet import: %s (want %s)", out, want);
	free(out);
	char *v =
	    pg_value(&pg, "SELECT count(*) FROM sessions WHERE host = 'h1' AND nestor_live(state)");
	CHECK_MSG(v && (size_t)atoi(v) == n, "the fleet has %s of h1's %zu", v ? v : "?", n);
	free(v);
}

/* --- one address for users: a session on another host, relayed --- */

static pid_t gw1, gw2, gw3, xvfb;
static char xflog[400];

static pid_t client_to(unsigned port, const char *user)
{
	char v[64], u[80], p[80];
	snprintf(v, sizeof(v), "/v:127.0.0.1:%u", port);
	snprintf(u, sizeof(u), "/u:%s", user);
	snprintf(p, sizeof(p), "/p:%s-pw", user);
	const char *argv[] = {"xfreerdp",   v,	 u, p, "/cert:ignore", "/size:1024x768",
			      "-clipboard", NULL};
	return spawn(argv, xflog);
}

static bool fingerprint_known(void *arg)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT fingerprint FROM hosts WHERE name = '%s'", (char *)arg);
	char *fp = pg_value(&pg, sql);
	bool ok = fp && strlen(fp) == 95;
	free(fp);
	return ok;
}

static char serial[600];
static bool serial_has(void *text)
{
	char *s = testenv_slurp(serial, NULL);
	bool ok = s && strstr(s, text);
	free(s);
	return ok;
}

static bool screens_match(struct nestord *d, const char *id)
{
	int diff = -1;
	double mean = 0;
	for (int i = 0; i < 40; i++) {
		if (pixels_cmp(d, id, &diff, &mean))
			return true;
		usleep(300 * 1000);
	}
	fprintf(stderr, "client and guest differ in %d pixels (mean %.2f)\n", diff, mean);
	return false;
}

static pid_t start_gateway(struct nestord *d, int n)
{
	char log[400];
	pid_t pid = gateway_start(d, gw_port[n], "[display]\nremotefx = false\n", log, sizeof(log));
	CHECK_MSG(pid > 0, "h%d's gateway started", n);
	return pid;
}

static void test_relay(void)
{
	CHECK_MSG(eventually(fingerprint_known, "h2", 10000), "h2's certificate in the fleet");
	snprintf(xflog, sizeof(xflog), "%s/xfreerdp.log", h1.dir);
	xvfb = x11_start(h1.dir);
	/* h1 takes no new sessions: cat, arriving at h1, is placed on h2 and relayed */
	CHECK(api(&h1, "POST", "/v1/hosts/h1/drain", NULL, NULL) == 200);
	int64_t t0 = util_now_ms();
	pid_t c = client_to(gw_port[1], "cat");
	struct onq q = {&h2, "cat", ""};
	CHECK_MSG(eventually(has_session_on, &q, 20000), "cat's session runs on h2");
	char none[40];
	CHECK_MSG(!session_on(&h1, "cat", none, sizeof(none)), "and not on h1");
	CHECK(wait_state(&h2, q.id, "connected", 60000));
	fprintf(stderr, "relay: connected through h1 to h2's guest in %.1f s\n",
		(double)(util_now_ms() - t0) / 1000);
	CHECK_MSG(screens_match(&h2, q.id), "the client shows h2's guest, relayed by h1");
	char sql[200], *v;
	snprintf(sql, sizeof(sql),
		 "SELECT host || ' ' || entry FROM sessions WHERE user_name = 'cat' "
		 "AND state = 'connected'");
	v = pg_value(&pg, sql);
	CHECK_MSG(v && !strcmp(v, "h2 h1"), "the fleet: %s", v ? v : "?");
	free(v);
	char *out;
	CHECK(nestorctl(&h1, "sessions --fleet", &out) == 0);
	CHECK_MSG(strstr(out, q.id) && strstr(out, " h2 ") && strstr(out, " h1 "),
		  "nestorctl sessions --fleet:\n%s", out);
	free(out);
	/* typing at h1 reaches the guest on h2 */
	snprintf(serial, sizeof(serial), "%s/run/vm/%s/serial.log", h2.dir, q.id);
	sh("xdotool search --name 'FreeRDP:' | head -1 | xargs -I{} xdotool windowfocus --sync {} "
	   ">/dev/null 2>&1");
	sh("xdotool type --delay 60 relayed; xdotool key Return");
	CHECK_MSG(wait_for(serial_has, "GOT:relayed", 10000), "keys through two gateways");
	CHECK(screens_match(&h2, q.id));
	child_stop(&c);
	CHECK(wait_state(&h2, q.id, "disconnected", 10000));

	/* reconnecting lands on the same session, through either gateway */
	c = client_to(gw_port[2], "cat");
	CHECK(wait_state(&h2, q.id, "connected", 30000));
	child_stop(&c);
	CHECK(wait_state(&h2, q.id, "disconnected", 10000));
	c = client_to(gw_port[1], "cat");
	CHECK(wait_state(&h2, q.id, "connected", 30000));
	CHECK(screens_match(&h2, q.id));
	struct onq again = {&h2, "cat", ""};
	CHECK(has_session_on(&again) && !strcmp(again.id, q.id));
	child_stop(&c);

	/* a ticket works once, for its host and user only */
	CHECK(api(&h2, "POST", "/v1/sessions",
		  "{\"user\":\"cat\",\"password\":\"nestor-ticket:00\",\"app\":\"ledger\"}",
		  NULL) == 401);

	/* h2's gateway dies: h2 stops heartbeating, the fleet takes it for down and its
	 * sessions for lost; the gateway back, h2 is up and its session found again */
	snprintf(sql, sizeof(sql), "SELECT state FROM sessions WHERE id = '%s'", q.id);
	kill(gw2, SIGKILL);
	child_stop(&gw2);
	struct hostq gone = {&h1, "h2", "up", false};
	CHECK_MSG(eventually(host_is, &gone, 10000), "h2 down without its gateway");
	v = pg_value(&pg, sql);
	CHECK_MSG(v && !strcmp(v, "lost"), "its session: %s", v ? v : "?");
	free(v);
	gw2 = start_gateway(&h2, 2);
	gone.want = true;
	CHECK_MSG(eventually(host_is, &gone, 10000), "h2 up with its gateway back");
	v = pg_value(&pg, sql);
	CHECK_MSG(v && !strcmp(v, "disconnected"), "its session back: %s", v ? v : "?");
	free(v);

	/* h2 dies: cat's session is lost; at h1 (undrained) cat gets a new one, and is told */
	CHECK(nestord_stop(&h2, SIGKILL, 5000) >= 0);
	child_stop(&gw2);
	CHECK(api(&h1, "POST", "/v1/hosts/h1/undrain", NULL, NULL) == 200);
	struct hostq down = {&h1, "h2", "up", false};
	CHECK_MSG(eventually(host_is, &down, 10000), "h2 down");
	json_object *o = NULL;
	CHECK(api(&h1, "POST", "/v1/sessions",
		  "{\"user\":\"cat\",\"password\":\"cat-pw\",\"app\":\"ledger\"}", &o) == 200);
	CHECK_MSG(strstr(jget(o, "notice"), "h2 stopped answering"), "told: %s", jget(o, "notice"));
	struct onq on1 = {&h1, "cat", ""};
	CHECK_MSG(strcmp(jget(o, "id"), q.id) && has_session_on(&on1) &&
		      !strcmp(on1.id, jget(o, "id")),
		  "a new session on h1: %s", json_object_to_json_string(o));
	json_object_put(o);
	child_stop(&gw1);
	child_stop(&xvfb);
}

int main(void)
{
	testenv_guest_dir();
	if (!x11_tools()) {
		CHECK(!"Xvfb, xfreerdp, xdotool and xwininfo installed (scripts/install-deps)");
		return check_done("test_fleet");
	}
	if (!pg_create(&pg)) {
		CHECK(!"a PostgreSQL cluster started");
		return check_done("test_fleet");
	}
	host_setup(&h1, "h1", pg.conninfo, 5);
	host_setup(&h2, "h2", pg.conninfo, 7);
	host_setup(&h3, "h3", pg.conninfo, 5);
	test_init();
	test_no_schema();
	CHECK(nestord_start(&h1) && nestord_start(&h2) && nestord_start(&h3));
	/* a host heartbeats only while its gateway answers */
	gw1 = start_gateway(&h1, 1);
	gw2 = start_gateway(&h2, 2);
	gw3 = start_gateway(&h3, 3);
	nestord_add_demo(&h1, "ledger");
	nestord_add_demo(&h2, "ledger");
	nestord_add_demo(&h3, "ledger");
	test_hosts();
	test_storm();
	/* h3 has done its part */
	child_stop(&gw3);
	CHECK(nestord_stop(&h3, SIGTERM, 30000) == 0);
	test_drain();
	test_host_dies();
	test_pg_down();
	/* h2 comes back: up again, its guest reattached */
	CHECK(nestord_start(&h2));
	struct hostq q = {&h1, "h2", "up", true};
	CHECK_MSG(eventually(host_is, &q, 10000), "h2 up again after its restart");
	test_relay();
	/* h2 once more, to stop its guests (it was killed) */
	CHECK(nestord_start(&h2));
	CHECK(nestord_stop(&h2, SIGTERM, 30000) == 0);
	CHECK(nestord_stop(&h1, SIGTERM, 30000) == 0);
	int r = check_done("test_fleet");
	if (r == 0 && !getenv("NESTOR_KEEP_LOGS")) {
		testenv_rmtree(h1.dir);
		testenv_rmtree(h2.dir);
	} else {
		fprintf(stderr, "logs kept in %s %s %s\n", h1.dir, h2.dir, pg.dir);
	}
	pg_destroy(&pg);
	return r;
}
