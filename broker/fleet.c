/*
 * The fleet connection (fleet.h): libpq's non-blocking API on libevent.
 *
 * One connection, one query in flight; the others wait in a bounded FIFO.
 * A query that gets no answer within QUERY_MS, or a connection that is not
 * up within CONNECT_MS, is treated as a lost connection: everything queued
 * fails with -EAGAIN and a reconnect is scheduled. Nothing here waits.
 *
 * What PostgreSQL answers is checked like any other input: expected
 * columns and shapes, numbers parsed with bounds.
 */
#include "fleet.h"
#include "fleet_schema.h"
#include "conf.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECT_MS 5000
#define QUERY_MS 5000
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 8000
#define QUEUE_MAX 64
#define CONTROL_MAX 16
#define PARAMS_MAX 16

struct fleet;
/* RES the query's last result (NULL: it failed, ERR says why); the callee clears nothing. */
typedef void (*query_fn)(struct fleet *f, PGresult *res, const char *err, void *arg);

struct query {
	struct query *next;
	const char *sql; /* static text */
	int n;
	char *params[PARAMS_MAX];
	query_fn done;
	void *arg;
};

enum conn_state { C_DOWN, C_CONNECTING, C_UP };

struct fleet {
	struct event_base *base;
	struct brk_fleet_config cfg;
	struct fleet_hooks hooks;
	PGconn *conn;
	enum conn_state st;
	struct event *io, *wr;	/* the socket: reads (and connecting), pending writes */
	struct event *deadline; /* connect or in-flight query */
	struct event *retry, *beat;
	struct query *head, **tail;
	unsigned queued;
	struct query *inflight;
	PGresult *result;
	bool available, beating, drained, warned, schema_ok;
	bool resync, adopting, claiming;
	bool gateway_ok;
	int probe_fd; /* a connect to this host's gateway in flight, or -1 */
	struct event *probe;
	unsigned backoff_ms;
	char since[40];
	char error[256];
	int64_t last_beat_ms;
};

static void conn_start(struct fleet *f);
static void send_next(struct fleet *f);
static void adopt_placed(struct fleet *f);
static void claim(struct fleet *f);

static void set_ms(struct event *ev, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(ev, &tv);
}

/* libpq's messages end in a newline; one line for the log and the API. */
static void set_error(struct fleet *f, const char *what, const char *detail)
{
	snprintf(f->error, sizeof(f->error), "%s%s%s", what, detail && *detail ? ": " : "",
		 detail ? detail : "");
	char *nl;
	while ((nl = strchr(f->error, '\n')))
		*nl = nl[1] ? ' ' : '\0';
}

static void query_free(struct query *q)
{
	for (int i = 0; i < q->n; i++) {
		if (q->params[i]) /* tickets travel here */
			explicit_bzero(q->params[i], strlen(q->params[i]));
		free(q->params[i]);
	}
	free(q);
}

static void fail_all(struct fleet *f)
{
	struct query *list = f->inflight;
	if (list)
		list->next = f->head;
	else
		list = f->head;
	f->inflight = NULL;
	f->head = NULL;
	f->tail = &f->head;
	f->queued = 0;
	while (list) {
		struct query *q = list;
		list = q->next;
		q->done(f, NULL, f->error, q->arg);
		query_free(q);
	}
}

/* The connection is gone (or never came): drop it, fail what waits, try again later. */
static void conn_lost(struct fleet *f, const char *what, const char *detail)
{
	set_error(f, what, detail);
	if (!f->warned)
		log_warn("fleet: %s; new sessions wait for it, retrying", f->error);
	else
		log_debug("fleet: %s", f->error);
	f->warned = true;
	f->available = false;
	f->beating = false;
	f->schema_ok = false;
	event_del(f->io);
	event_del(f->wr);
	event_del(f->deadline);
	if (f->result)
		PQclear(f->result);
	f->result = NULL;
	if (f->conn)
		PQfinish(f->conn);
	f->conn = NULL;
	f->st = C_DOWN;
	fail_all(f);
	set_ms(f->retry, f->backoff_ms);
	f->backoff_ms = f->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : f->backoff_ms * 2;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	conn_start(arg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	conn_lost(f, f->st == C_CONNECTING ? "no connection within 5 s" : "no answer within 5 s",
		  NULL);
}

/* Watch the socket for what libpq needs next while connecting. */
static void on_connect_io(evutil_socket_t fd, short what, void *arg);

static void connect_wait(struct fleet *f, short what)
{
	event_del(f->io);
	event_assign(f->io, f->base, PQsocket(f->conn), what, on_connect_io, f);
	event_add(f->io, NULL);
}

static void on_io(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	switch (PQconnectPoll(f->conn)) {
	case PGRES_POLLING_READING:
		connect_wait(f, EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		connect_wait(f, EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		break;
	default:
		conn_lost(f, "cannot connect to the fleet database", PQerrorMessage(f->conn));
		return;
	}
	event_del(f->deadline);
	if (PQsetnonblocking(f->conn, 1) < 0) {
		conn_lost(f, "libpq", PQerrorMessage(f->conn));
		return;
	}
	f->st = C_UP;
	event_del(f->io);
	event_assign(f->io, f->base, PQsocket(f->conn), EV_READ | EV_PERSIST, on_io, f);
	event_assign(f->wr, f->base, PQsocket(f->conn), EV_WRITE, on_writable, f);
	event_add(f->io, NULL);
	f->backoff_ms = BACKOFF_MIN_MS;
	log_info("fleet: connected to the fleet database as host %s (PostgreSQL %d)", f->cfg.name,
		 PQserverVersion(f->conn));
	event_active(f->beat, EV_TIMEOUT, 0); /* tell the fleet about us now */
	send_next(f);
}

static void conn_start(struct fleet *f)
{
	f->conn = PQconnectStart(f->cfg.db);
	if (!f->conn || PQstatus(f->conn) == CONNECTION_BAD) {
		conn_lost(f, "cannot connect to the fleet database",
			  f->conn ? PQerrorMessage(f->conn) : "out of memory");
		return;
	}
	f->st = C_CONNECTING;
	set_ms(f->deadline, CONNECT_MS);
	connect_wait(f, EV_WRITE);
}

/* Flush what libpq holds; more to write: wait for the socket. */
static bool flush(struct fleet *f)
{
	int r = PQflush(f->conn);
	if (r < 0) {
		conn_lost(f, "lost the fleet database", PQerrorMessage(f->conn));
		return false;
	}
	if (r > 0)
		event_add(f->wr, NULL);
	return true;
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	flush(arg);
}

static void send_next(struct fleet *f)
{
	if (f->st != C_UP || f->inflight || !f->head)
		return;
	struct query *q = f->head;
	f->head = q->next;
	if (!f->head)
		f->tail = &f->head;
	f->queued--;
	q->next = NULL;
	f->inflight = q;
	if (!PQsendQueryParams(f->conn, q->sql, q->n, NULL, (const char *const *)q->params, NULL,
			       NULL, 0)) {
		conn_lost(f, "lost the fleet database", PQerrorMessage(f->conn));
		return;
	}
	set_ms(f->deadline, QUERY_MS);
	flush(f);
}

static void finish_inflight(struct fleet *f)
{
	struct query *q = f->inflight;
	PGresult *res = f->result;
	f->inflight = NULL;
	f->result = NULL;
	event_del(f->deadline);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		q->done(f, res, NULL, q->arg);
	} else {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : "no result");
		char *nl = strchr(msg, '\n');
		if (nl)
			*nl = '\0';
		q->done(f, NULL, msg, q->arg);
	}
	if (res)
		PQclear(res);
	query_free(q);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	if (!PQconsumeInput(f->conn)) {
		conn_lost(f, "lost the fleet database", PQerrorMessage(f->conn));
		return;
	}
	while (f->conn && f->inflight && !PQisBusy(f->conn)) {
		PGresult *res = PQgetResult(f->conn);
		if (res) { /* keep the last: a statement's outcome */
			if (f->result)
				PQclear(f->result);
			f->result = res;
			continue;
		}
		finish_inflight(f);
		send_next(f);
	}
	/* after the results: a notification parsed behind one waits in libpq, not on the socket */
	PGnotify *n;
	bool placed = false;
	while (f->conn && (n = PQnotifies(f->conn))) {
		if (!strcmp(n->extra, f->cfg.name))
			placed = true;
		PQfreemem(n);
	}
	if (placed)
		adopt_placed(f);
}

/* Queue SQL with N text parameters (copied; NULL is SQL NULL). -EAGAIN: the fleet is away. */
static int enqueue(struct fleet *f, bool control, const char *sql, int n, const char *const *params,
		   query_fn done, void *arg)
{
	if (f->st != C_UP)
		return -EAGAIN;
	/* users' questions fill QUEUE_MAX at most: heartbeats and writes still go */
	if (f->queued >= (control ? QUEUE_MAX + CONTROL_MAX : QUEUE_MAX) || n > PARAMS_MAX)
		return -EBUSY;
	struct query *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->sql = sql;
	q->done = done;
	q->arg = arg;
	for (int i = 0; i < n; i++) {
		if (params[i] && !(q->params[i] = strdup(params[i]))) {
			q->n = i;
			query_free(q);
			return -ENOMEM;
		}
	}
	q->n = n;
	*f->tail = q;
	f->tail = &q->next;
	f->queued++;
	send_next(f);
	return 0;
}

/* Queue SQL for a user's request (-EBUSY when QUEUE_MAX wait already). */
static int query(struct fleet *f, const char *sql, int n, const char *const *params, query_fn done,
		 void *arg)
{
	return enqueue(f, false, sql, n, params, done, arg);
}

/* Queue the host's own SQL (heartbeats, adoption, claims, writes of its state). */
static int ctl(struct fleet *f, const char *sql, int n, const char *const *params, query_fn done,
	       void *arg)
{
	return enqueue(f, true, sql, n, params, done, arg);
}

/* --- PostgreSQL arrays and numbers --- */

void fleet_array_add(char *arr, size_t len, const char *item)
{
	size_t n = strlen(arr);
	if (n < 2 || arr[n - 1] != '}' || strlen(item) + 4 > len - n)
		return; /* full: a heartbeat reports fewer images rather than a broken literal */
	snprintf(arr + n - 1, len - n + 1, "%s\"%s\"}", n > 2 ? "," : "", item);
}

static long long num_of(PGresult *res, int row, int col)
{
	const char *s = PQgetvalue(res, row, col);
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	return errno || end == s || (*end && *end != '.') ? -1 : v;
}

/* --- heartbeat --- */

static const char heartbeat_sql[] =
    "SELECT * FROM nestor_heartbeat($1, $2, $13, $3, $4::int, $5::int, $6::int, $7::int, "
    "$8::text[], "
    "$9::text[], $10::int, $11::timestamptz, $12::int, $14::text[], $15::int)";

static void on_beat_done(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	f->beating = false;
	if (!res) {
		if (f->available || !f->warned)
			log_warn("fleet: heartbeat failed: %s", err);
		set_error(f, "heartbeat failed", err);
		f->available = false;
		f->warned = true;
		return;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 2) {
		log_warn("fleet: heartbeat: unexpected answer (%d rows, %d columns)",
			 PQntuples(res), PQnfields(res));
		f->available = false;
		return;
	}
	if (!f->available && f->warned)
		log_info("fleet: the fleet database answers again");
	f->available = true;
	f->warned = false;
	f->error[0] = '\0';
	f->last_beat_ms = util_now_ms();
	bool drained = !strcmp(PQgetvalue(res, 0, 0), "t");
	if (!strcmp(PQgetvalue(res, 0, 1), "t")) {
		log_warn("fleet: the fleet had taken this host for down: telling it every session "
			 "again");
		f->resync = true;
	}
	if (drained != f->drained)
		log_info("fleet: host %s %s", f->cfg.name,
			 drained ? "drained: no new sessions here" : "takes new sessions again");
	f->drained = drained;
	if (f->hooks.drained)
		f->hooks.drained(drained, f->hooks.arg);
	if (f->resync && f->hooks.resync) {
		f->resync = false;
		f->hooks.resync(f->hooks.arg);
	}
	adopt_placed(f); /* a notification may have been missed */
	claim(f);
}

static void on_version(struct fleet *f, PGresult *res, const char *err, void *arg);

static void on_listen(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	if (!res)
		log_warn("fleet: LISTEN failed (placements are found at each heartbeat): %s", err);
}

static void on_exists(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	bool ok = res && PQntuples(res) == 1 && PQnfields(res) == 1;
	if (ok && !strcmp(PQgetvalue(res, 0, 0), "t") &&
	    ctl(f, FLEET_SCHEMA_VERSION_SQL, 0, NULL, on_version, NULL) == 0)
		return; /* still beating */
	on_version(f, NULL, ok ? NULL : err, (void *)(intptr_t)ok);
}

/* RES the version; none with ARG true: there is no schema at all. */
static void on_version(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	f->beating = false;
	int want = fleet_schema_latest();
	long long v = res && PQntuples(res) == 1 && PQnfields(res) == 1 ? num_of(res, 0, 0)
		      : arg						? 0
									: -1;
	if (v == want) {
		f->schema_ok = true;
		f->resync = true; /* whatever happened meanwhile: tell it all again */
		ctl(f, "LISTEN nestor_placed", 0, NULL, on_listen, NULL);
		event_active(f->beat, EV_TIMEOUT, 0);
		return;
	}
	char msg[200];
	if (v < 0)
		snprintf(msg, sizeof(msg), "cannot read its schema version: %s", err ? err : "?");
	else if (v < want)
		snprintf(msg, sizeof(msg),
			 "its schema is version %lld, this nestord needs %d: run nestorctl fleet "
			 "init",
			 v, want);
	else
		snprintf(msg, sizeof(msg),
			 "its schema is version %lld, newer than this nestord's %d: upgrade nestor",
			 v, want);
	if (!f->warned)
		log_err("fleet: the fleet database: %s", msg);
	set_error(f, "the fleet database", msg);
	f->warned = true;
	f->available = false;
}

static void send_beat(struct fleet *f);

/*
 * A host whose gateway is gone cannot serve its users: it stops
 * heartbeating, so the fleet marks it down and places no one there (and
 * takes it back, its sessions with it, once the gateway answers again).
 * Each heartbeat first connects to the gateway's address, without waiting.
 */
static void probe_done(struct fleet *f, bool ok)
{
	if (f->probe_fd >= 0)
		close(f->probe_fd);
	f->probe_fd = -1;
	if (ok != f->gateway_ok)
		log_warn("fleet: this host's gateway at %s %s", f->cfg.gateway,
			 ok ? "answers again: heartbeating"
			    : "does not answer: not heartbeating (the fleet will take this host "
			      "for down)");
	f->gateway_ok = ok;
	if (ok)
		send_beat(f);
}

static void on_probe(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	int e = 0;
	socklen_t el = sizeof(e);
	probe_done(f, (what & EV_WRITE) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 &&
			  e == 0);
}

static void probe_gateway(struct fleet *f)
{
	char host[128];
	uint16_t port;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len = 0;
	if (conf_hostport(f->cfg.gateway, host, sizeof(host), &port) == 0) {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
			a4->sin_family = AF_INET;
			a4->sin_port = htons(port);
			len = sizeof(*a4);
		} else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons(port);
			len = sizeof(*a6);
		}
	}
	if (!len) { /* a name: nothing to probe without a lookup; trust it */
		probe_done(f, true);
		return;
	}
	f->probe_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->probe_fd < 0 ||
	    (connect(f->probe_fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)) {
		probe_done(f, false);
		return;
	}
	event_assign(f->probe, f->base, f->probe_fd, EV_WRITE, on_probe, f);
	struct timeval tv = {1, 0};
	event_add(f->probe, &tv);
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	set_ms(f->beat, f->cfg.heartbeat * 1000);
	if (f->st != C_UP || f->beating || f->probe_fd >= 0)
		return;
	if (!f->schema_ok) { /* asked again each heartbeat until someone runs fleet init */
		if (ctl(f, FLEET_SCHEMA_EXISTS_SQL, 0, NULL, on_exists, NULL) == 0)
			f->beating = true;
		return;
	}
	if (f->cfg.gateway[0])
		probe_gateway(f);
	else
		send_beat(f);
}

static void send_beat(struct fleet *f)
{
	if (f->st != C_UP || f->beating)
		return;
	struct fleet_report r;
	memset(&r, 0, sizeof(r));
	r.accel = "";
	strcpy(r.warm, "{}");
	strcpy(r.images, "{}");
	strcpy(r.templates, "{}");
	if (f->hooks.report)
		f->hooks.report(&r, f->hooks.arg);
	char num[5][16], down[16], qwait[16];
	snprintf(qwait, sizeof(qwait), "%u", r.queue_wait_s > INT_MAX ? INT_MAX : r.queue_wait_s);
	unsigned v[5] = {r.max_sessions, r.max_starting, r.max_memory_mb, r.queued, r.start_ms};
	for (int i = 0; i < 5; i++)
		snprintf(num[i], sizeof(num[i]), "%u", v[i] > INT_MAX ? INT_MAX : v[i]);
	snprintf(down, sizeof(down), "%u", f->cfg.down_after);
	const char *p[] = {f->cfg.name, f->cfg.gateway, r.accel,       num[0],	    num[1],
			   num[2],	num[3],		r.warm,	       r.templates, num[4],
			   f->since,	down,		r.fingerprint, r.images,    qwait};
	if (ctl(f, heartbeat_sql, 15, p, on_beat_done, NULL) == 0)
		f->beating = true;
}

/* --- the API's questions --- */

struct ask {
	fleet_json_fn cb;
	void *arg;
	bool drain;
	char name[64];
};

static struct ask *ask_new(fleet_json_fn cb, void *arg)
{
	struct ask *a = calloc(1, sizeof(*a));
	if (a) {
		a->cb = cb;
		a->arg = arg;
	}
	return a;
}

static const char hosts_sql[] =
    "SELECT name, gateway, accel, max_sessions, max_starting, max_memory_mb, sessions, "
    "starting, memory_mb, queued, drained, up, "
    "floor(extract(epoch FROM now() - heartbeat) * 1000)::bigint, "
    "(SELECT count(*) FROM sessions WHERE state = 'queued' AND host IS NULL) "
    "FROM hosts ORDER BY name";

static void on_hosts(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	struct ask *a = arg;
	if (!res) {
		a->cb(-EAGAIN, NULL, err, a->arg);
		free(a);
		return;
	}
	if (PQnfields(res) != 14) {
		a->cb(-EPROTO, NULL, "the fleet database's hosts table is not what nestord expects",
		      a->arg);
		free(a);
		return;
	}
	json_object *o = json_object_new_object(), *list = json_object_new_array();
	static const char *const num_keys[] = {"max_sessions", "max_starting", "max_memory_mb",
					       "sessions",     "starting",     "memory_mb",
					       "queued"};
	long long fleet_queue = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		json_object *h = json_object_new_object();
		json_object_object_add(h, "name", json_object_new_string(PQgetvalue(res, i, 0)));
		json_object_object_add(h, "gateway", json_object_new_string(PQgetvalue(res, i, 1)));
		json_object_object_add(h, "accel", json_object_new_string(PQgetvalue(res, i, 2)));
		for (int k = 0; k < 7; k++)
			json_object_object_add(h, num_keys[k],
					       json_object_new_int64(num_of(res, i, 3 + k)));
		json_object_object_add(
		    h, "drained", json_object_new_boolean(!strcmp(PQgetvalue(res, i, 10), "t")));
		json_object_object_add(
		    h, "up", json_object_new_boolean(!strcmp(PQgetvalue(res, i, 11), "t")));
		json_object_object_add(h, "heartbeat_age_ms",
				       json_object_new_int64(num_of(res, i, 12)));
		json_object_object_add(
		    h, "self",
		    json_object_new_boolean(!strcmp(PQgetvalue(res, i, 0), f->cfg.name)));
		json_object_array_add(list, h);
		fleet_queue = num_of(res, i, 13);
	}
	json_object_object_add(o, "hosts", list);
	json_object_object_add(o, "fleet_queue", json_object_new_int64(fleet_queue));
	a->cb(0, o, NULL, a->arg);
	free(a);
}

int fleet_hosts(struct fleet *f, fleet_json_fn cb, void *arg)
{
	struct ask *a = ask_new(cb, arg);
	if (!a)
		return -ENOMEM;
	int r = query(f, hosts_sql, 0, NULL, on_hosts, a);
	if (r < 0)
		free(a);
	return r;
}

static const char sessions_sql[] =
    "SELECT id, user_name, app, coalesce(host, ''), state, entry, "
    "extract(epoch FROM created)::bigint FROM sessions WHERE nestor_live(state) "
    "ORDER BY created, id LIMIT 10000";

static void on_sessions(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	struct ask *a = arg;
	if (!res || PQnfields(res) != 7) {
		a->cb(res ? -EPROTO : -EAGAIN, NULL,
		      res ? "the fleet's sessions table is not what nestord expects" : err, a->arg);
		free(a);
		return;
	}
	static const char *const keys[] = {"id", "user", "app", "host", "state", "entry"};
	json_object *list = json_object_new_array();
	for (int i = 0; i < PQntuples(res); i++) {
		json_object *s = json_object_new_object();
		for (int k = 0; k < 6; k++)
			json_object_object_add(s, keys[k],
					       json_object_new_string(PQgetvalue(res, i, k)));
		json_object_object_add(s, "created", json_object_new_int64(num_of(res, i, 6)));
		json_object_array_add(list, s);
	}
	a->cb(0, list, NULL, a->arg);
	free(a);
}

int fleet_sessions(struct fleet *f, fleet_json_fn cb, void *arg)
{
	struct ask *a = ask_new(cb, arg);
	if (!a)
		return -ENOMEM;
	int r = query(f, sessions_sql, 0, NULL, on_sessions, a);
	if (r < 0)
		free(a);
	return r;
}

static void on_drain(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	struct ask *a = arg;
	if (!res) {
		a->cb(-EAGAIN, NULL, err, a->arg);
	} else if (PQntuples(res) != 1) {
		char msg[128];
		snprintf(msg, sizeof(msg), "no host %s in the fleet", a->name);
		a->cb(-ENOENT, NULL, msg, a->arg);
	} else {
		if (!strcmp(a->name, f->cfg.name) && f->drained != a->drain) {
			f->drained = a->drain;
			log_info("fleet: host %s %s", f->cfg.name,
				 a->drain ? "drained: no new sessions here"
					  : "takes new sessions again");
			if (f->hooks.drained)
				f->hooks.drained(a->drain, f->hooks.arg);
		}
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(a->name));
		json_object_object_add(o, "drained", json_object_new_boolean(a->drain));
		a->cb(0, o, NULL, a->arg);
	}
	free(a);
}

int fleet_drain(struct fleet *f, const char *name, bool drain, fleet_json_fn cb, void *arg)
{
	if (!util_name_valid(name) || strlen(name) > 63)
		return -EINVAL;
	struct ask *a = ask_new(cb, arg);
	if (!a)
		return -ENOMEM;
	a->drain = drain;
	snprintf(a->name, sizeof(a->name), "%s", name);
	const char *p[] = {name, drain ? "true" : "false"};
	int r = query(f, "UPDATE hosts SET drained = $2::boolean WHERE name = $1 RETURNING name", 2,
		      p, on_drain, a);
	if (r < 0)
		free(a);
	return r;
}

/* --- sessions --- */

static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	return n > 0 && n < 17 && strspn(id, "0123456789abcdef") == n;
}

/* The fleet's verdicts: these sessions were ended while this host was away. */
static void end_those(struct fleet *f, PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++) {
		const char *id = PQgetvalue(res, i, 0);
		if (!id_valid(id))
			continue;
		log_warn("fleet: session %s was ended by the fleet while this host was away: "
			 "ending it here",
			 id);
		if (f->hooks.end)
			f->hooks.end(id, f->hooks.arg);
	}
}

static void on_synced(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	char *id = arg;
	if (!res) {
		log_debug("fleet: a session's state was not written: %s", err ? err : "?");
		f->resync = true;
	} else if (PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "f") && f->hooks.end) {
		log_warn("fleet: session %s was ended by the fleet while this host was away: "
			 "ending it here",
			 id);
		f->hooks.end(id, f->hooks.arg);
	}
	free(id);
}

static void on_host_synced(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	if (!res) {
		log_debug("fleet: this host's sessions were not written: %s", err ? err : "?");
		f->resync = true;
		return;
	}
	end_those(f, res);
}

struct import_ask {
	fleet_json_fn cb;
	void *arg;
	int sessions;
};

static void on_imported(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	struct import_ask *a = arg;
	if (!res) {
		a->cb(-EAGAIN, NULL, err, a->arg);
	} else {
		end_those(f, res);
		json_object *o = json_object_new_object();
		json_object_object_add(o, "host", json_object_new_string(f->cfg.name));
		json_object_object_add(o, "sessions", json_object_new_int64(a->sessions));
		json_object_object_add(o, "ended", json_object_new_int64(PQntuples(res)));
		a->cb(0, o, NULL, a->arg);
	}
	free(a);
}

int fleet_import(struct fleet *f, const char *sessions_json, int n, fleet_json_fn cb, void *arg)
{
	if (!fleet_available(f))
		return -EAGAIN;
	struct import_ask *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct import_ask){cb, arg, n};
	const char *p[] = {f->cfg.name, sessions_json};
	int r = query(f, "SELECT end_id FROM nestor_host_sync($1, $2::json)", 2, p, on_imported, a);
	if (r < 0)
		free(a);
	return r;
}

void fleet_sync_all(struct fleet *f, const char *sessions_json)
{
	const char *p[] = {f->cfg.name, sessions_json};
	if (!f->schema_ok || ctl(f, "SELECT end_id FROM nestor_host_sync($1, $2::json)", 2, p,
				 on_host_synced, NULL) < 0)
		f->resync = true;
}

static const char sync_sql[] = "SELECT nestor_session_sync($1, $2, $3, $4, $5, $6::int, $7, $8)";

void fleet_sync(struct fleet *f, const struct db_session *rec)
{
	char mem[16];
	snprintf(mem, sizeof(mem), "%u", rec->memory_mb > INT_MAX ? INT_MAX : rec->memory_mb);
	const char *p[] = {rec->fleet_id[0] ? rec->fleet_id : rec->id,
			   f->cfg.name,
			   rec->user,
			   rec->app,
			   rec->image,
			   mem,
			   rec->state,
			   rec->end_reason};
	char *id = strdup(p[0]);
	if (!id || !f->schema_ok || ctl(f, sync_sql, 8, p, on_synced, id) < 0) {
		free(id);
		f->resync = true; /* the whole list at the next heartbeat that answers */
	}
}

static void on_placed_rows(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	f->adopting = false;
	if (!res || PQnfields(res) != 3)
		return;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *id = PQgetvalue(res, i, 0), *user = PQgetvalue(res, i, 1),
			   *app = PQgetvalue(res, i, 2);
		if (!id_valid(id) || !util_name_valid(user) || strlen(user) > 64 ||
		    !util_name_valid(app) || strlen(app) > 64) {
			log_warn("fleet: ignoring a placed session with a malformed row");
			continue;
		}
		if (f->hooks.adopt)
			f->hooks.adopt(id, user, app, f->hooks.arg);
	}
}

static void adopt_placed(struct fleet *f)
{
	if (f->adopting || !f->schema_ok)
		return;
	const char *p[] = {f->cfg.name};
	if (ctl(f,
		"SELECT id, user_name, app FROM sessions WHERE host = $1 AND state = 'placed' "
		"ORDER BY placed LIMIT 64",
		1, p, on_placed_rows, NULL) == 0)
		f->adopting = true;
}

static void on_claimed(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	f->claiming = false;
	if (res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		log_info("fleet: took session %.16s from the fleet queue", PQgetvalue(res, 0, 0));
		adopt_placed(f);
	}
}

static void claim(struct fleet *f)
{
	if (f->claiming || !f->schema_ok || f->drained || !f->hooks.has_room ||
	    !f->hooks.has_room(f->hooks.arg))
		return;
	const char *p[] = {f->cfg.name};
	if (ctl(f, "SELECT id FROM nestor_claim($1)", 1, p, on_claimed, NULL) == 0)
		f->claiming = true;
}

void fleet_room(struct fleet *f)
{
	claim(f);
}

struct place_ask {
	fleet_place_fn cb;
	void *arg;
};

static const char connect_sql[] =
    "SELECT id, coalesce(host, ''), coalesce(state, ''), coalesce(queue_pos, 0), "
    "coalesce(reason, ''), existing, coalesce(notice, '') "
    "FROM nestor_connect($1, $2, $3, $4, $5::int, $6, $7::int, $8::int)";

static void on_connected(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	struct place_ask *a = arg;
	struct fleet_place pl;
	memset(&pl, 0, sizeof(pl));
	if (!res) {
		a->cb(-EAGAIN, NULL, err, a->arg);
	} else if (PQntuples(res) != 1 || PQnfields(res) != 7) {
		a->cb(-EPROTO, NULL, "the fleet database answered a placement oddly", a->arg);
	} else if (*PQgetvalue(res, 0, 4)) {
		a->cb(-EBUSY, NULL, PQgetvalue(res, 0, 4), a->arg);
	} else {
		snprintf(pl.id, sizeof(pl.id), "%s", PQgetvalue(res, 0, 0));
		snprintf(pl.host, sizeof(pl.host), "%s", PQgetvalue(res, 0, 1));
		snprintf(pl.state, sizeof(pl.state), "%s", PQgetvalue(res, 0, 2));
		long long q = num_of(res, 0, 3);
		pl.queue_pos = q > 0 && q < INT_MAX ? (unsigned)q : 0;
		pl.existing = !strcmp(PQgetvalue(res, 0, 5), "t");
		snprintf(pl.notice, sizeof(pl.notice), "%s", PQgetvalue(res, 0, 6));
		if (!id_valid(pl.id) || (pl.host[0] && !util_name_valid(pl.host)))
			a->cb(-EPROTO, NULL, "the fleet database named a malformed session",
			      a->arg);
		else
			a->cb(0, &pl, NULL, a->arg);
	}
	free(a);
}

int fleet_connect(struct fleet *f, const char *user, const char *app, const char *image,
		  unsigned memory_mb, unsigned user_max, unsigned image_max, fleet_place_fn cb,
		  void *arg)
{
	if (!fleet_available(f))
		return -EAGAIN;
	struct place_ask *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->cb = cb;
	a->arg = arg;
	char id[17], mem[16], um[16], im[16];
	util_random_hex(id, 8);
	snprintf(mem, sizeof(mem), "%u", memory_mb > INT_MAX ? INT_MAX : memory_mb);
	snprintf(um, sizeof(um), "%u", user_max > INT_MAX ? INT_MAX : user_max);
	snprintf(im, sizeof(im), "%u", image_max > INT_MAX ? INT_MAX : image_max);
	const char *p[] = {id, user, app, image, mem, f->cfg.name, um, im};
	int r = query(f, connect_sql, 8, p, on_connected, a);
	if (r < 0)
		free(a);
	return r;
}

struct session_ask {
	fleet_session_fn cb;
	void *arg;
};

static const char session_sql[] =
    "SELECT s.id, coalesce(s.host, ''), s.state, s.reason, "
    "coalesce(h.gateway, ''), coalesce(h.fingerprint, ''), coalesce(h.up, false), "
    "nestor_queue_pos(s.id) "
    "FROM sessions s LEFT JOIN hosts h ON h.name = s.host WHERE s.id = $1";

static void on_session(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	struct session_ask *a = arg;
	struct fleet_session fs;
	memset(&fs, 0, sizeof(fs));
	if (!res) {
		a->cb(-EAGAIN, NULL, err, a->arg);
	} else if (PQntuples(res) != 1 || PQnfields(res) != 8) {
		a->cb(-ENOENT, NULL, "no such session in the fleet", a->arg);
	} else {
		char *dst[] = {fs.id, fs.host, fs.state, fs.reason, fs.gateway, fs.fingerprint};
		size_t len[] = {sizeof(fs.id),	   sizeof(fs.host),    sizeof(fs.state),
				sizeof(fs.reason), sizeof(fs.gateway), sizeof(fs.fingerprint)};
		for (int i = 0; i < 6; i++)
			snprintf(dst[i], len[i], "%s", PQgetvalue(res, 0, i));
		fs.host_up = !strcmp(PQgetvalue(res, 0, 6), "t");
		long long q = num_of(res, 0, 7);
		fs.queue_pos = q > 0 && q < INT_MAX ? (unsigned)q : 0;
		a->cb(0, &fs, NULL, a->arg);
	}
	free(a);
}

int fleet_session_get(struct fleet *f, const char *id, fleet_session_fn cb, void *arg)
{
	if (!id_valid(id))
		return -ENOENT;
	struct session_ask *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->cb = cb;
	a->arg = arg;
	const char *p[] = {id};
	int r = query(f, session_sql, 1, p, on_session, a);
	if (r < 0)
		free(a);
	return r;
}

struct ticket_ask {
	fleet_text_fn issued;
	fleet_ticket_fn redeemed;
	void *arg;
	char token[65];
};

static void on_issued(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	struct ticket_ask *a = arg;
	if (!res)
		a->issued(-EAGAIN, NULL, err, a->arg);
	else if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t"))
		a->issued(-ENOENT, NULL, "the session has no host to reach", a->arg);
	else
		a->issued(0, a->token, NULL, a->arg);
	explicit_bzero(a->token, sizeof(a->token));
	free(a);
}

int fleet_ticket_issue(struct fleet *f, const char *id, fleet_text_fn cb, void *arg)
{
	struct ticket_ask *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->issued = cb;
	a->arg = arg;
	if (util_random_hex(a->token, 32) < 0) {
		free(a);
		return -EIO;
	}
	char ttl[16];
	snprintf(ttl, sizeof(ttl), "%d", FLEET_TICKET_S);
	const char *p[] = {id, a->token, ttl};
	int r = query(f, "SELECT nestor_ticket_issue($1, $2, $3::int)", 3, p, on_issued, a);
	if (r < 0) {
		explicit_bzero(a->token, sizeof(a->token));
		free(a);
	}
	return r;
}

static void on_redeemed(struct fleet *f, PGresult *res, const char *err, void *arg)
{
	struct ticket_ask *a = arg;
	if (!res)
		a->redeemed(-EAGAIN, NULL, NULL, a->arg);
	else if (PQntuples(res) != 1 || PQnfields(res) != 4 || !id_valid(PQgetvalue(res, 0, 0)) ||
		 !util_name_valid(PQgetvalue(res, 0, 1)))
		a->redeemed(-EACCES, NULL, NULL, a->arg);
	else
		a->redeemed(0, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), a->arg);
	free(a);
}

int fleet_ticket_redeem(struct fleet *f, const char *token, const char *user, fleet_ticket_fn cb,
			void *arg)
{
	if (!fleet_available(f))
		return -EAGAIN;
	if (strlen(token) != 64 || strspn(token, "0123456789abcdef") != 64)
		return -EACCES; /* not one of ours: no need to ask */
	struct ticket_ask *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->redeemed = cb;
	a->arg = arg;
	const char *p[] = {token, f->cfg.name, user};
	int r = query(f, "SELECT id, app, image, memory_mb FROM nestor_ticket_redeem($1, $2, $3)",
		      3, p, on_redeemed, a);
	if (r < 0)
		free(a);
	return r;
}

/* --- lifetime --- */

bool fleet_available(const struct fleet *f)
{
	return f->st == C_UP && f->available;
}

const char *fleet_name(const struct fleet *f)
{
	return f->cfg.name;
}

json_object *fleet_status_json(const struct fleet *f)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "host", json_object_new_string(f->cfg.name));
	json_object_object_add(o, "available", json_object_new_boolean(fleet_available(f)));
	json_object_object_add(o, "drained", json_object_new_boolean(f->drained));
	if (f->error[0])
		json_object_object_add(o, "error", json_object_new_string(f->error));
	if (f->last_beat_ms)
		json_object_object_add(o, "heartbeat_age_ms",
				       json_object_new_int64(util_now_ms() - f->last_beat_ms));
	return o;
}

struct fleet *fleet_create(struct event_base *base, const struct brk_fleet_config *cfg,
			   const struct fleet_hooks *hooks, char *err, size_t errlen)
{
	struct fleet *f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	f->base = base;
	f->cfg = *cfg;
	if (hooks)
		f->hooks = *hooks;
	if (!f->cfg.name[0]) {
		char hn[256] = "";
		gethostname(hn, sizeof(hn) - 1);
		char *dot = strchr(hn, '.');
		if (dot)
			*dot = '\0';
		if (!util_name_valid(hn) || strlen(hn) > 63) {
			snprintf(err, errlen,
				 "[fleet] name: this machine's hostname '%.64s' cannot name a "
				 "host: set name",
				 hn);
			free(f);
			return NULL;
		}
		snprintf(f->cfg.name, sizeof(f->cfg.name), "%s", hn);
	}
	time_t now = time(NULL);
	struct tm tm;
	strftime(f->since, sizeof(f->since), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	f->tail = &f->head;
	f->backoff_ms = BACKOFF_MIN_MS;
	f->io = event_new(base, -1, 0, on_connect_io, f);
	f->wr = event_new(base, -1, 0, on_writable, f);
	f->deadline = evtimer_new(base, on_deadline, f);
	f->retry = evtimer_new(base, on_retry, f);
	f->beat = evtimer_new(base, on_beat, f);
	f->probe = event_new(base, -1, 0, on_probe, f);
	f->probe_fd = -1;
	f->gateway_ok = true;
	if (!f->io || !f->wr || !f->deadline || !f->retry || !f->beat || !f->probe) {
		snprintf(err, errlen, "out of memory");
		fleet_destroy(f);
		return NULL;
	}
	set_ms(f->beat, f->cfg.heartbeat * 1000);
	conn_start(f);
	return f;
}

void fleet_destroy(struct fleet *f)
{
	if (!f)
		return;
	f->st = C_DOWN; /* what the failures' callbacks ask now is refused */
	set_error(f, "nestord is stopping", NULL);
	fail_all(f);
	if (f->result)
		PQclear(f->result);
	if (f->conn)
		PQfinish(f->conn);
	if (f->io)
		event_free(f->io);
	if (f->wr)
		event_free(f->wr);
	if (f->deadline)
		event_free(f->deadline);
	if (f->retry)
		event_free(f->retry);
	if (f->beat)
		event_free(f->beat);
	if (f->probe)
		event_free(f->probe);
	if (f->probe_fd >= 0)
		close(f->probe_fd);
	free(f);
}
