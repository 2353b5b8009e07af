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

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USERS "ann:ann-pw:nestor\nbob:bob-pw:nestor\n"

static struct pg pg;
static struct nestord h1, h2;

static void host_setup(struct nestord *d, const char *name, const char *db, unsigned max_sessions)
{
	char extra[1024];
	snprintf(extra, sizeof(extra),
		 "[caps]\nmax_sessions = %u\nmax_memory_mb = 4096\n"
		 "[fleet]\ndb = %s\nname = %s\ngateway = 127.0.1.%c:3389\n",
		 max_sessions, db, name, name[strlen(name) - 1]);
	nestord_setup(d, name, USERS, extra);
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
	CHECK(nestord_stop(&d, SIGTERM, 10000) == 0);
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
	CHECK_STR(jget(h, "gateway"), "127.0.1.1:3389");
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

static int connect_as(struct nestord *d, const char *user)
{
	char body[256];
	snprintf(body, sizeof(body), "{\"user\":\"%s\",\"password\":\"%s-pw\",\"app\":\"ledger\"}",
		 user, user);
	json_object *o = NULL;
	int st = api(d, "POST", "/v1/sessions", body, &o);
	if (st >= 300)
		fprintf(stderr, "connect %s: %d %s\n", user, st, json_object_to_json_string(o));
	json_object_put(o);
	return st;
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
	json_object *o = NULL;
	CHECK(api(&h2, "POST", "/v1/sessions",
		  "{\"user\":\"ann\",\"password\":\"ann-pw\",\"app\":\"ledger\"}", &o) == 503);
	CHECK_MSG(strstr(jget(o, "error"), "drained"), "the refusal says why: %s",
		  jget(o, "error"));
	json_object_put(o);
	CHECK(connect_as(&h1, "ann") == 200); /* h1 is not drained */

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
	CHECK(connect_as(&h1, "bob") == 200); /* the host itself goes on */
	CHECK(pg_start(&pg));
	int64_t t0 = util_now_ms();
	CHECK_MSG(eventually(hosts_answer, &h1, 15000), "h1 reconnects by itself");
	s.want = true;
	CHECK(eventually(status_is, &s, 5000));
	fprintf(stderr, "h1 answered again %.1f s after PostgreSQL restarted\n",
		(double)(util_now_ms() - t0) / 1000);
}

int main(void)
{
	testenv_guest_dir();
	if (!pg_create(&pg)) {
		CHECK(!"a PostgreSQL cluster started");
		return check_done("test_fleet");
	}
	host_setup(&h1, "h1", pg.conninfo, 5);
	host_setup(&h2, "h2", pg.conninfo, 7);
	test_init();
	test_no_schema();
	CHECK(nestord_start(&h1) && nestord_start(&h2));
	nestord_add_demo(&h1, "ledger");
	nestord_add_demo(&h2, "ledger");
	test_hosts();
	test_drain();
	test_host_dies();
	test_pg_down();
	/* h2 comes back: up again, its guest reattached and then stopped with it */
	CHECK(nestord_start(&h2));
	struct hostq q = {&h1, "h2", "up", true};
	CHECK_MSG(eventually(host_is, &q, 10000), "h2 up again after its restart");
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
