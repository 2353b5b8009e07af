/*
 * The API: the socket, the route table's handlers and JSON replies. What a
 * request says is parsed and validated by api_parse.c before a handler
 * runs. Never blocks: PAM answers and long-polls reply later from the loop,
 * and a request whose client went away is simply dropped.
 */
#include "api.h"
#include "api_parse.h"
#include "api_socket.h"
#include "broker.h"
#include "certfp.h"
#include "conf.h"
#include "fleet.h"
#include "log.h"
#include "record.h"
#include "signin.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pending;

struct api {
	struct event_base *base;
	struct brk *b;
	gid_t gateway_gid; /* api_group: the gateway's role (0: none) */
	gid_t admin_gid;   /* admin_group (0: root and nestord's own user only) */
	struct evhttp *http;
	struct evhttp_bound_socket *listener;
	char path[108];
	struct pending *pendings;
	struct remote *remotes; /* sessions of users who came in here, running elsewhere */
	unsigned n_remotes;
	struct signins signins;	  /* the portal's signed-in users (signin.h) */
	struct launches launches; /* their tickets for opening an app in the browser */
};

/*
 * A session the fleet runs on another host, for a user who connected
 * here: this host's gateway follows it and relays it with a ticket. Kept
 * while it is used, forgotten after REMOTE_IDLE_MS; at most REMOTE_MAX.
 */
#define REMOTE_MAX 4096
#define REMOTE_IDLE_MS (10 * 60 * 1000)
struct remote {
	struct remote *next;
	char id[17], user[65], app[65], title[129];
	char grant[33];
	int64_t used_ms;
};

/* A request answered later (PAM, long-poll). */
struct pending {
	struct pending *next, **prevp;
	struct api *api;
	struct evhttp_request *req; /* NULL once the client is gone */
	struct brk_watch *watch;
	struct brk_authreq *auth; /* a PAM check in flight, cancelled if we go first */
	struct event *timer;
	char session[33];
	char app[65];
	char client[64];
	char user[65];
	char host[64];	     /* the fleet: its host's gateway address */
	unsigned port;	     /* ... and port */
	char fp[CERTFP_LEN]; /* ... and certificate */
	char wait[16];	     /* the fleet: a long-poll's state */
	int64_t until_ms;    /* the fleet: a long-poll's end */
	enum api_route route;
	bool polling; /* the fleet: waiting for its next poll, no fleet call in flight */
	bool connect; /* POST /v1/sessions: connect after auth */
	bool created; /* reply 201 on success */
	bool async;   /* a callback that cannot be cancelled will free it */
};

/* --- replies --- */

static void reply_json(struct evhttp_request *req, int code, json_object *o)
{
	struct evbuffer *buf = evbuffer_new();
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	evbuffer_add_printf(buf, "%s\n", s);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	evhttp_send_reply(req, code, code < 300 ? "OK" : "Error", buf);
	evbuffer_free(buf);
	json_object_put(o);
}

static void reply_err(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_err(struct evhttp_request *req, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(msg));
	reply_json(req, code, o);
}

/* --- pending requests --- */

static void pending_unlink(struct pending *p)
{
	if (!p->prevp)
		return;
	*p->prevp = p->next;
	if (p->next)
		p->next->prevp = p->prevp;
	p->prevp = NULL;
	p->next = NULL;
}

static void pending_free(struct pending *p)
{
	pending_unlink(p);
	brk_unwatch(p->watch);
	brk_auth_cancel(p->auth);
	if (p->timer)
		event_free(p->timer);
	free(p);
}

static void on_conn_close(struct evhttp_connection *c, void *arg)
{
	struct pending *p = arg;
	p->req = NULL; /* evhttp frees it */
	if (p->async)
		return; /* a slow operation (template, probe) answers later; it frees p */
	pending_free(p);
}

static struct pending *pending_new(struct api *api, struct evhttp_request *req)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->api = api;
	p->req = req;
	p->next = api->pendings;
	if (p->next)
		p->next->prevp = &p->next;
	p->prevp = &api->pendings;
	api->pendings = p;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_conn_close, p);
	return p;
}

/* Detach from the connection before replying, so close callbacks do not see us. */
static struct evhttp_request *pending_take(struct pending *p)
{
	struct evhttp_request *req = p->req;
	if (req)
		evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
	p->req = NULL;
	return req;
}

/* --- handlers: the request is parsed and valid (api_parse.c) --- */

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static bool juint(json_object *o, const char *key, unsigned *out)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return false;
	*out = (unsigned)json_object_get_int64(v);
	return true;
}

static int errno_status(int r)
{
	switch (r) {
	case -ENOENT:
		return 404;
	case -EEXIST:
	case -EBUSY:
		return 409;
	case -ESHUTDOWN:
	case -EAGAIN: /* the database is locked by another process: nothing was written */
		return 503;
	case -ENOSPC:
		return 507;
	case -EINVAL:
		return 400;
	default:
		return 500;
	}
}

static void session_reply(struct api *api, struct evhttp_request *req, int code,
			  struct brk_session *s)
{
	reply_json(req, code, brk_session_json(api->b, s));
}

/*
 * A route's handler: R is the parsed request (borrowed: freed when the
 * handler returns); S the session a :session path names (NULL for others).
 */
#define HANDLER_ARGS                                                                               \
	struct api *api, struct evhttp_request *req, const struct api_req *r, struct brk_session *s

static void h_status(HANDLER_ARGS)
{
	reply_json(req, 200, brk_status_json(api->b));
}

static void fleet_place_start(struct pending *p);

static void on_authed(int status, const char *reason, void *arg)
{
	struct pending *p = arg;
	struct api *api = p->api;
	p->auth = NULL; /* done: nothing to cancel */
	struct evhttp_request *req = pending_take(p);
	if (!req) {
		pending_free(p);
		return;
	}
	if (status == -EACCES) {
		reply_err(req, 401, "%s", reason);
	} else if (status == -ENOKEY) {
		/* a second factor: the user is asked for the code and tries again with it */
		json_object *o = json_object_new_object();
		json_object_object_add(o, "error",
				       json_object_new_string("a one-time code is needed"));
		json_object_object_add(o, "need", json_object_new_string("code"));
		json_object_object_add(o, "prompt", json_object_new_string(reason));
		reply_json(req, 401, o);
	} else if (status == -EPERM) {
		reply_err(req, 403, "%s", reason);
	} else if (status < 0) {
		reply_err(req, 503, "%s", reason);
	} else if (!p->connect) {
		/* a sign-in: the portal acts for this user with the token */
		char token[SIGNIN_TOKEN_LEN + 1];
		int64_t now = util_now_ms();
		if (signin_add(&api->signins, p->user, now, token) < 0) {
			reply_err(req, 503, "cannot make a sign-in token");
		} else {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "user", json_object_new_string(p->user));
			json_object_object_add(o, "authenticated", json_object_new_boolean(1));
			json_object_object_add(o, "token", json_object_new_string(token));
			json_object_object_add(
			    o, "expires_s",
			    json_object_new_int64(signin_expires_s(&api->signins, token, now)));
			explicit_bzero(token, sizeof(token));
			reply_json(req, 200, o);
		}
	} else if (brk_fleet(api->b) && !brk_has_session(api->b, p->user, p->app)) {
		p->req = req; /* the fleet answers: still ours */
		evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_conn_close, p);
		fleet_place_start(p);
		return;
	} else {
		struct brk_session *s = NULL;
		char err[256];
		int r = brk_connect(api->b, p->user, p->app, p->client, &s, err, sizeof(err));
		if (r == -ENOENT)
			reply_err(req, 404, "%s", err);
		else if (r == -EBUSY)
			reply_err(req, 429, "%s", err);
		else if (r < 0)
			reply_err(req, 503, "%s", err);
		else {
			/* whoever authenticated the user gets the session's grant */
			json_object *o = brk_session_json(api->b, s);
			json_object_object_add(o, "grant",
					       json_object_new_string(brk_session_grant(s)));
			reply_json(req, 200, o);
		}
	}
	pending_free(p);
}

/* --- the fleet: users placed on other hosts, and tickets from them --- */

static struct remote *remote_find(struct api *api, const char *id)
{
	int64_t now = util_now_ms();
	struct remote *found = NULL;
	for (struct remote **rp = &api->remotes; *rp;) {
		struct remote *r = *rp;
		if (now - r->used_ms > REMOTE_IDLE_MS) {
			*rp = r->next;
			explicit_bzero(r->grant, sizeof(r->grant));
			free(r);
			api->n_remotes--;
			continue;
		}
		if (!strcmp(r->id, id))
			found = r;
		rp = &r->next;
	}
	if (found)
		found->used_ms = now;
	return found;
}

static struct remote *remote_add(struct api *api, const char *id, const char *user, const char *app,
				 const char *title)
{
	struct remote *r = remote_find(api, id);
	if (!r) {
		if (api->n_remotes >= REMOTE_MAX || !(r = calloc(1, sizeof(*r))))
			return NULL;
		snprintf(r->id, sizeof(r->id), "%s", id);
		util_random_hex(r->grant, 16);
		r->next = api->remotes;
		api->remotes = r;
		api->n_remotes++;
	}
	snprintf(r->user, sizeof(r->user), "%s", user);
	snprintf(r->app, sizeof(r->app), "%s", app);
	snprintf(r->title, sizeof(r->title), "%s", title);
	r->used_ms = util_now_ms();
	return r;
}

static void remotes_free(struct api *api)
{
	while (api->remotes) {
		struct remote *r = api->remotes;
		api->remotes = r->next;
		explicit_bzero(r->grant, sizeof(r->grant));
		free(r);
	}
	api->n_remotes = 0;
}

/* The fleet's state as this host's gateway follows it: queued, ready to relay, or ended. */
static const char *remote_state(const struct fleet_session *fs)
{
	bool live =
	    strcmp(fs->state, "ended") && strcmp(fs->state, "lost") && strcmp(fs->state, "ending");
	if (!live || (fs->host[0] && !fs->host_up))
		return "ended";
	return fs->host[0] ? "ready" : "queued";
}

static json_object *remote_json(const struct remote *r, const struct fleet_session *fs)
{
	json_object *o = json_object_new_object();
	const char *st = remote_state(fs);
	json_object_object_add(o, "id", json_object_new_string(r->id));
	json_object_object_add(o, "user", json_object_new_string(r->user));
	json_object_object_add(o, "app", json_object_new_string(r->app));
	json_object_object_add(o, "title", json_object_new_string(r->title));
	json_object_object_add(o, "state", json_object_new_string(st));
	json_object_object_add(o, "backend", json_object_new_string("rdp"));
	json_object_object_add(o, "host", json_object_new_string(fs->host));
	json_object_object_add(o, "fleet_state", json_object_new_string(fs->state));
	if (!strcmp(st, "queued")) {
		json_object_object_add(o, "position", json_object_new_int64(fs->queue_pos));
		json_object_object_add(o, "estimate_ms", json_object_new_int64(-1));
		json_object_object_add(o, "reason",
				       json_object_new_string("every host of the fleet is full"));
	} else if (!strcmp(st, "ended")) {
		char why[300];
		snprintf(why, sizeof(why), "%s",
			 fs->reason[0] ? fs->reason
			 : fs->host_up ? "it ended"
				       : "its host stopped answering");
		json_object_object_add(o, "end_reason", json_object_new_string(why));
	}
	return o;
}

static void fleet_reply_err(struct evhttp_request *req, int err, const char *msg)
{
	if (err == -EBUSY) /* the fleet's queue is full: a moment's overload */
		reply_err(req, 503, "the fleet is busy, try again in a minute");
	else if (err == -EAGAIN)
		reply_err(req, 503, FLEET_AWAY "%s%s", msg ? ": " : "", msg ? msg : "");
	else
		reply_err(req, errno_status(err), "%s", msg ? msg : strerror(-err));
}

static void on_placed(int err, const struct fleet_place *pl, const char *msg, void *arg)
{
	struct pending *p = arg;
	struct api *api = p->api;
	struct evhttp_request *req = pending_take(p);
	if (!req) {
		pending_free(p);
		return;
	}
	if (err == -EBUSY) {
		reply_err(req, 429, "%s", msg);
	} else if (err) {
		fleet_reply_err(req, err, msg);
	} else if (!strcmp(pl->host, fleet_name(brk_fleet(api->b)))) {
		/* here: as a single host would, under the fleet's id */
		struct brk_session *s = NULL;
		char e[256];
		int r = brk_connect_placed(api->b, p->user, p->app, p->client, pl->id, &s, e,
					   sizeof(e));
		if (r < 0) {
			brk_fleet_refused(api->b, pl->id, p->user, p->app, e);
			reply_err(req, r == -EBUSY ? 429 : r == -ENOENT ? 404 : 503, "%s", e);
		} else {
			fleet_sync(brk_fleet(api->b), brk_session_record(s));
			json_object *o = brk_session_json(api->b, s);
			json_object_object_add(o, "host", json_object_new_string(pl->host));
			json_object_object_add(o, "grant",
					       json_object_new_string(brk_session_grant(s)));
			if (pl->notice[0])
				json_object_object_add(o, "notice",
						       json_object_new_string(pl->notice));
			reply_json(req, 200, o);
		}
	} else {
		struct brk_demand d;
		char e[256];
		brk_app_demand(api->b, p->user, p->app, &d, e, sizeof(e));
		struct remote *r = remote_add(api, pl->id, p->user, p->app, d.title);
		if (!r && !pl->existing)
			brk_fleet_refused(api->b, pl->id, p->user, p->app,
					  "too many sessions followed at the entry");
		if (!r) {
			reply_err(req, 503, "too many sessions followed here");
		} else {
			struct fleet_session fs;
			memset(&fs, 0, sizeof(fs));
			snprintf(fs.host, sizeof(fs.host), "%s", pl->host);
			snprintf(fs.state, sizeof(fs.state), "%s", pl->state);
			fs.host_up = true; /* it was just chosen, or found up */
			fs.queue_pos = pl->queue_pos;
			json_object *o = remote_json(r, &fs);
			json_object_object_add(o, "grant", json_object_new_string(r->grant));
			if (pl->notice[0])
				json_object_object_add(o, "notice",
						       json_object_new_string(pl->notice));
			log_info("session=%s user=%s app=%s %s on host %s", r->id, p->user, p->app,
				 pl->existing  ? "runs"
				 : pl->host[0] ? "placed"
					       : "queued",
				 pl->host[0] ? pl->host : "(fleet queue)");
			reply_json(req, 200, o);
		}
	}
	pending_free(p);
}

static void fleet_place_start(struct pending *p)
{
	struct api *api = p->api;
	struct brk_demand d;
	char err[256];
	int r = brk_app_demand(api->b, p->user, p->app, &d, err, sizeof(err));
	if (r == 0) {
		p->async = true;
		r = fleet_connect(brk_fleet(api->b), p->user, p->app, d.image, d.memory_mb,
				  d.user_max, d.image_max, on_placed, p);
		if (r < 0)
			p->async = false;
	}
	if (r < 0) {
		struct evhttp_request *req = pending_take(p);
		if (req && r == -ENOENT)
			reply_err(req, 404, "%s", err);
		else if (req)
			fleet_reply_err(req, r, NULL);
		pending_free(p);
	}
}

static void remote_ask(struct pending *p);

static void on_remote_poll(evutil_socket_t fd, short what, void *arg)
{
	remote_ask(arg);
}

static void on_ticket(int err, const char *token, const char *msg, void *arg)
{
	struct pending *p = arg;
	struct evhttp_request *req = pending_take(p);
	/* no request: the API may be gone (a shutdown): touch nothing of it */
	struct remote *r = req ? remote_find(p->api, p->session) : NULL;
	if (req && (err || !r)) {
		fleet_reply_err(req, err ? err : -ENOENT, msg ? msg : "the session is gone");
	} else if (req) {
		json_object *o = json_object_new_object();
		char pass[128];
		snprintf(pass, sizeof(pass), FLEET_TICKET_PREFIX "%s", token);
		json_object_object_add(o, "host", json_object_new_string(p->host));
		json_object_object_add(o, "port", json_object_new_int64(p->port));
		json_object_object_add(o, "security", json_object_new_string("tls"));
		json_object_object_add(o, "login", json_object_new_string("image"));
		json_object_object_add(o, "user", json_object_new_string(r->user));
		json_object_object_add(o, "domain", json_object_new_string(""));
		json_object_object_add(o, "password", json_object_new_string(pass));
		explicit_bzero(pass, sizeof(pass));
		json_object_object_add(o, "fingerprint", json_object_new_string(p->fp));
		json_object_object_add(o, "remoteapp", json_object_new_boolean(true));
		json_object_object_add(o, "clipboard", json_object_new_boolean(false));
		json_object_object_add(o, "drive", json_object_new_boolean(false));
		json_object_object_add(o, "program", json_object_new_string(""));
		json_object_object_add(o, "fleet_host", json_object_new_boolean(true));
		reply_json(req, 200, o);
	}
	pending_free(p);
}

/* GET /v1/sessions/ID (?wait) and /guest for a session on another host. */
static void on_remote_session(int err, const struct fleet_session *fs, const char *msg, void *arg)
{
	struct pending *p = arg;
	struct api *api = p->api;
	p->polling = false;
	/* no request: the API may be gone (a shutdown): touch nothing of it */
	struct remote *r = p->req ? remote_find(api, p->session) : NULL;
	if (!p->req || !r || err) {
		struct evhttp_request *req = pending_take(p);
		if (req)
			fleet_reply_err(req, err ? err : -ENOENT,
					msg ? msg : "the session is gone");
		pending_free(p);
		return;
	}
	if (p->route == API_GUEST) {
		char host[64];
		uint16_t port;
		if (strcmp(remote_state(fs), "ready") ||
		    conf_hostport(fs->gateway, host, sizeof(host), &port) < 0 ||
		    !fs->fingerprint[0]) {
			struct evhttp_request *req = pending_take(p);
			reply_err(req, 409, "session %s on host %s cannot be reached (%s)", r->id,
				  fs->host,
				  !fs->fingerprint[0] ? "its gateway's certificate is unknown"
						      : "no gateway address");
			pending_free(p);
			return;
		}
		snprintf(p->host, sizeof(p->host), "%s", host);
		p->port = port;
		snprintf(p->fp, sizeof(p->fp), "%.95s", fs->fingerprint);
		int rc = fleet_ticket_issue(brk_fleet(api->b), r->id, on_ticket, p);
		if (rc < 0) {
			struct evhttp_request *req = pending_take(p);
			fleet_reply_err(req, rc, NULL);
			pending_free(p);
		}
		return;
	}
	const char *st = remote_state(fs);
	if (p->wait[0] && !strcmp(st, p->wait) && util_now_ms() < p->until_ms) {
		/* nothing to tell yet: ask the fleet again in a second */
		if (!p->timer)
			p->timer = evtimer_new(api->base, on_remote_poll, p);
		struct timeval tv = {1, 0};
		if (p->timer && evtimer_add(p->timer, &tv) == 0) {
			p->polling = true; /* api_stop frees it: no fleet call holds it now */
			return;
		}
	}
	struct evhttp_request *req = pending_take(p);
	reply_json(req, 200, remote_json(r, fs));
	pending_free(p);
}

static void remote_ask(struct pending *p)
{
	int rc = fleet_session_get(brk_fleet(p->api->b), p->session, on_remote_session, p);
	if (rc < 0) {
		struct evhttp_request *req = pending_take(p);
		if (req)
			fleet_reply_err(req, rc, NULL);
		pending_free(p);
	}
}

static void remote_route(struct api *api, struct evhttp_request *req, const struct api_req *r,
			 struct remote *rr)
{
	switch (r->route) {
	case API_SESSION:
	case API_GUEST: {
		struct pending *p = pending_new(api, req);
		if (!p) {
			reply_err(req, 503, "out of memory");
			return;
		}
		p->async = true;
		p->route = r->route;
		snprintf(p->session, sizeof(p->session), "%s", rr->id);
		if (r->route == API_SESSION && r->wait && r->timeout) {
			snprintf(p->wait, sizeof(p->wait), "%s", brk_state_name(r->wait_state));
			p->until_ms = util_now_ms() + (int64_t)r->timeout * 1000;
		}
		remote_ask(p);
		return;
	}
	case API_ATTACH:
	case API_DETACH:
	case API_ACTIVITY: {
		/* the session's own host sees this host's relay connect and go */
		json_object *o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_string(rr->id));
		reply_json(req, 200, o);
		return;
	}
	default:
		reply_err(req, 409, "session %s runs on another host of the fleet: ask it there",
			  rr->id);
	}
}

/* Another host's gateway relays its user with a ticket: to the session it names. */
static void on_redeemed(int err, const char *id, const char *app, void *arg)
{
	struct pending *p = arg;
	struct api *api = p->api;
	struct evhttp_request *req = pending_take(p);
	if (req && err == -EAGAIN) {
		fleet_reply_err(req, err, NULL);
	} else if (req && (err || strcmp(app, p->app))) {
		store_audit_log(brk_store(api->b), "ticket-refused", p->user, p->client, NULL,
				err ? "used, expired, or for another host or user"
				    : "for another app");
		reply_err(req, 401, "that ticket is not valid here");
	} else if (req) {
		struct brk_session *s = NULL;
		char e[256];
		int r = brk_connect_placed(api->b, p->user, app, p->client, id, &s, e, sizeof(e));
		if (r < 0) {
			reply_err(req, r == -EBUSY ? 429 : r == -ENOENT ? 404 : 503, "%s", e);
		} else {
			fleet_sync(brk_fleet(api->b), brk_session_record(s));
			store_audit_log(brk_store(api->b), "ticket", p->user, p->client,
					brk_session_id(s), "relayed by another host's gateway");
			json_object *o = brk_session_json(api->b, s);
			json_object_object_add(o, "grant",
					       json_object_new_string(brk_session_grant(s)));
			reply_json(req, 200, o);
		}
	}
	pending_free(p);
}

/* POST /v1/auth, POST /v1/sessions (CONNECT: then the user's session). */
static void do_auth(struct api *api, struct evhttp_request *req, const struct api_req *r,
		    bool connect)
{
	struct pending *p = pending_new(api, req);
	if (!p) {
		reply_err(req, 503, "out of memory");
		return;
	}
	p->connect = connect;
	snprintf(p->user, sizeof(p->user), "%s", jstr(r->body, "user"));
	snprintf(p->app, sizeof(p->app), "%s", jstr(r->body, "app"));
	snprintf(p->client, sizeof(p->client), "%s", jstr(r->body, "client"));
	/* the password and the code stay in the body, wiped by api_req_free */
	const char *pw = jstr(r->body, "password");
	size_t tl = strlen(FLEET_TICKET_PREFIX);
	if (connect && brk_fleet(api->b) && !strncmp(pw, FLEET_TICKET_PREFIX, tl)) {
		p->async = true;
		int rc = fleet_ticket_redeem(brk_fleet(api->b), pw + tl, p->user, on_redeemed, p);
		if (rc < 0) {
			pending_take(p);
			pending_free(p);
			if (rc == -EACCES)
				reply_err(req, 401, "that ticket is not valid here");
			else
				fleet_reply_err(req, rc, NULL);
		}
		return;
	}
	size_t ll = strlen(LAUNCH_PREFIX);
	if (connect && !strncmp(pw, LAUNCH_PREFIX, ll)) {
		/* a browser, through the gateway's browser door: the portal's ticket, not PAM */
		if (!launch_redeem(&api->launches, pw + ll, p->user, p->app, util_now_ms())) {
			store_audit_log(brk_store(api->b), "launch-refused", p->user, p->client,
					NULL, "used, expired, or for another user or app");
			pending_take(p);
			pending_free(p);
			reply_err(req, 401,
				  "that browser link was used or is too old: open the app "
				  "again from the portal");
			return;
		}
		store_audit_log(brk_store(api->b), "launch", p->user, p->client, NULL,
				"a browser, with the portal's ticket");
		on_authed(0, "ok", p);
		return;
	}
	int rc = brk_authenticate(api->b, p->user, jstr(r->body, "password"), jstr(r->body, "code"),
				  p->client, on_authed, p, &p->auth);
	if (rc < 0) {
		pending_take(p);
		pending_free(p);
		if (rc == -EAGAIN)
			reply_err(req, 429, "too many failed logins: try again later");
		else
			reply_err(req, 400, "cannot authenticate: %s", strerror(-rc));
	}
}

static void h_auth(HANDLER_ARGS)
{
	do_auth(api, req, r, false);
}

static void h_connect(HANDLER_ARGS)
{
	do_auth(api, req, r, true);
}

/* USER routes: the signed-in user R's token names, or NULL (answered 401). */
static const char *signed_in(struct api *api, struct evhttp_request *req, const struct api_req *r)
{
	const char *user = signin_user(&api->signins, r->token, util_now_ms());
	if (!user)
		reply_err(req, 401, "not signed in, or signed out after a while: sign in again");
	return user;
}

static void h_me(HANDLER_ARGS)
{
	const char *user = signed_in(api, req, r);
	if (!user)
		return;
	json_object *o = brk_user_json(api->b, user);
	json_object_object_add(
	    o, "expires_s",
	    json_object_new_int64(signin_expires_s(&api->signins, r->token, util_now_ms())));
	reply_json(req, 200, o);
}

static void h_signout(HANDLER_ARGS)
{
	const char *user = signed_in(api, req, r);
	if (!user)
		return;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "user", json_object_new_string(user));
	signin_drop(&api->signins, r->token);
	json_object_object_add(o, "signed_out", json_object_new_boolean(1));
	reply_json(req, 200, o);
}

/* A user ends their own session (someone else's does not exist for them). */
static void h_my_end(HANDLER_ARGS)
{
	const char *user = signed_in(api, req, r);
	if (!user)
		return;
	if (strcmp(brk_session_user(s), user)) {
		reply_err(req, 404, "no session %s", r->name);
		return;
	}
	store_audit_log(brk_store(api->b), "session-end-by-user", user, "", brk_session_id(s),
			"through the portal");
	brk_session_end(api->b, s, "ended by its user");
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(brk_session_id(s)));
	json_object_object_add(o, "state",
			       json_object_new_string(brk_state_name(brk_session_state(s))));
	reply_json(req, 200, o);
}

/* A ticket to open APP in the browser (the browser door takes it as the password, once). */
static void h_my_launch(HANDLER_ARGS)
{
	const char *user = signed_in(api, req, r);
	if (!user)
		return;
	struct brk_demand d;
	char err[256], ticket[SIGNIN_TOKEN_LEN + 1];
	if (brk_app_demand(api->b, user, r->name, &d, err, sizeof(err)) == -ENOENT) {
		reply_err(req, 404, "%s", err);
		return;
	}
	if (launch_add(&api->launches, user, r->name, util_now_ms(), ticket) < 0) {
		reply_err(req, 503, "cannot make a launch ticket");
		return;
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "user", json_object_new_string(user));
	json_object_object_add(o, "app", json_object_new_string(r->name));
	json_object_object_add(o, "title", json_object_new_string(d.title));
	json_object_object_add(o, "ticket", json_object_new_string(ticket));
	json_object_object_add(o, "expires_s", json_object_new_int64(LAUNCH_TTL_S));
	explicit_bzero(ticket, sizeof(ticket));
	reply_json(req, 200, o);
}

static void h_sessions(HANDLER_ARGS)
{
	if (r->ended)
		reply_json(req, 200, store_sessions_ended_json(brk_store(api->b), r->ended));
	else
		reply_json(req, 200, brk_sessions_json(api->b));
}

static void on_wait_done(struct pending *p)
{
	struct evhttp_request *req = pending_take(p);
	struct brk_session *s = brk_session_find(p->api->b, p->session);
	if (req && s)
		session_reply(p->api, req, 200, s);
	else if (req)
		reply_err(req, 404, "session %s is gone", p->session);
	pending_free(p);
}

static void on_watch(struct brk_session *s, enum brk_state st, void *arg)
{
	struct pending *p = arg;
	p->watch = NULL; /* freed by the broker after this call */
	on_wait_done(p);
}

static void on_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
	on_wait_done(arg);
}

/* GET /v1/sessions/ID, or with ?wait=STATE a long-poll for leaving it. */
static void h_session(HANDLER_ARGS)
{
	if (!r->wait || brk_session_state(s) != r->wait_state || r->timeout == 0) {
		session_reply(api, req, 200, s);
		return;
	}
	struct pending *p = pending_new(api, req);
	if (p) {
		snprintf(p->session, sizeof(p->session), "%s", brk_session_id(s));
		p->timer = evtimer_new(api->base, on_wait_timeout, p);
		p->watch = brk_watch(s, on_watch, p);
	}
	if (!p || !p->timer || !p->watch) {
		if (p) {
			pending_take(p);
			pending_free(p);
		}
		reply_err(req, 503, "out of memory");
		return;
	}
	struct timeval tv = {r->timeout, 0};
	evtimer_add(p->timer, &tv);
}

/* DELETE /v1/sessions/ID[?in=SECONDS&message=TEXT]: now, or announced and then. */
static void h_session_end(HANDLER_ARGS)
{
	if ((r->end_in || r->message[0]) &&
	    brk_session_end_in(api->b, s, r->end_in, r->message) < 0) {
		reply_err(req, 409, "session %s is already ending", brk_session_id(s));
		return;
	}
	if (!r->end_in && !r->message[0])
		brk_session_end(api->b, s, "ended by request");
	session_reply(api, req, 200, s);
}

static void h_attach(HANDLER_ARGS)
{
	char err[256];
	const char *gw = jstr(r->body, "gateway");
	if (brk_session_attach(api->b, s, *gw ? gw : NULL, err, sizeof(err)) < 0)
		reply_err(req, 409, "%s", err);
	else
		session_reply(api, req, 200, s);
}

static void h_detach(HANDLER_ARGS)
{
	if (brk_session_detach(api->b, s) < 0)
		reply_err(req, 409, "session is not connected");
	else
		session_reply(api, req, 200, s);
}

static void on_dumped(int err, const char *msg, void *arg)
{
	struct pending *p = arg;
	struct evhttp_request *req = pending_take(p);
	if (req && err) {
		reply_err(req, 500, "%s", msg);
	} else if (req) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "file", json_object_new_string(msg));
		reply_json(req, 200, o);
	}
	pending_free(p);
}

static void h_screendump(HANDLER_ARGS)
{
	struct pending *p = pending_new(api, req);
	if (p)
		p->async = true;
	int rc = p ? brk_session_screendump(api->b, s, on_dumped, p) : -ENOMEM;
	if (rc < 0) {
		if (p) {
			pending_take(p);
			pending_free(p);
		}
		reply_err(req, 409, "no screen to dump (session %s)",
			  brk_state_name(brk_session_state(s)));
	}
}

static void h_guest(HANDLER_ARGS)
{
	json_object *g = brk_session_guest_json(api->b, s);
	if (g)
		reply_json(req, 200, g);
	else
		reply_err(req, 409, "session %s has no rdp guest to reach (%s)", r->name,
			  brk_state_name(brk_session_state(s)));
}

static void h_activity(HANDLER_ARGS)
{
	brk_session_activity(api->b, s);
	session_reply(api, req, 200, s);
}

/* POST /v1/gateways/ID/lease {"sessions": [...]}: the gateway still holds these. */
static void h_lease(HANDLER_ARGS)
{
	json_object *arr;
	json_object_object_get_ex(r->body, "sessions", &arr);
	size_t n = json_object_array_length(arr);
	const char **ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids) {
		reply_err(req, 503, "out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = json_object_get_string(json_object_array_get_idx(arr, i));
	json_object *o = json_object_new_object(), *ending = json_object_new_object();
	unsigned held = brk_gateway_lease(api->b, r->name, ids, n, ending);
	free(ids);
	json_object_object_add(o, "ending", ending);
	json_object_object_add(o, "held", json_object_new_int64(held));
	json_object_object_add(o, "lease_ms", json_object_new_int64(BRK_LEASE_MS));
	reply_json(req, 200, o);
}

static void h_accel(HANDLER_ARGS)
{
	reply_json(req, 200, brk_accel_json(api->b));
}

static void on_probed(int err, const char *msg, void *arg)
{
	struct pending *p = arg;
	struct evhttp_request *req = pending_take(p);
	if (req && err) {
		reply_err(req, errno_status(err), "%s", msg);
	} else if (req) {
		reply_json(req, 200, brk_status_json(p->api->b));
	}
	pending_free(p);
}

/* POST /v1/accel/probe: probe again, answer when done. */
static void h_accel_probe(HANDLER_ARGS)
{
	char err[256];
	struct pending *p = pending_new(api, req);
	if (!p) {
		reply_err(req, 503, "out of memory");
		return;
	}
	p->async = true;
	int rc = brk_accel_probe(api->b, on_probed, p, err, sizeof(err));
	if (rc < 0) {
		pending_take(p);
		pending_free(p);
		reply_err(req, errno_status(rc), "%s", err);
	}
}

static void h_caps_set(HANDLER_ARGS)
{
#define CAP_KEY(key, max, cli) #key,
	static const char *const keys[] = {DB_CAP_FIELDS(CAP_KEY)};
#undef CAP_KEY
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		unsigned v;
		int rc = juint(r->body, keys[i], &v) ? brk_caps_set(api->b, keys[i], v) : 0;
		if (rc < 0) {
			reply_err(req, errno_status(rc), "cannot store %s: %s", keys[i],
				  rc == -EAGAIN ? "the database is busy, try again"
						: strerror(-rc));
			return;
		}
	}
	reply_json(req, 200, brk_status_json(api->b));
}

static void h_user_caps(HANDLER_ARGS)
{
	reply_json(req, 200, store_user_caps_json(brk_store(api->b)));
}

static void h_user_cap_set(HANDLER_ARGS)
{
	unsigned v = 0;
	bool has = juint(r->body, "max_sessions", &v);
	int rc = brk_user_cap_set(api->b, r->name, has, v);
	if (rc == -EINVAL) {
		reply_err(req, 400, "invalid user name");
		return;
	}
	if (rc < 0) {
		reply_err(req, errno_status(rc), "cannot store the cap: %s",
			  rc == -EAGAIN ? "the database is busy, try again" : strerror(-rc));
		return;
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "user", json_object_new_string(r->name));
	json_object_object_add(o, "max_sessions", has ? json_object_new_int64(v) : NULL);
	reply_json(req, 200, o);
}

static void on_done(int err, const char *msg, void *arg)
{
	struct pending *p = arg;
	struct evhttp_request *req = pending_take(p);
	if (req) {
		if (err) {
			reply_err(req, errno_status(err), "%s", msg);
		} else {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "result", json_object_new_string(msg));
			reply_json(req, p->created ? 201 : 200, o);
		}
	}
	pending_free(p);
}

/* --- the fleet: answered when PostgreSQL has --- */

static void on_fleet(int err, json_object *o, const char *msg, void *arg)
{
	struct pending *p = arg;
	struct evhttp_request *req = pending_take(p);
	if (req && err)
		reply_err(req, errno_status(err), "%s%s", err == -EAGAIN ? FLEET_AWAY ": " : "",
			  msg);
	else if (req)
		reply_json(req, 200, json_object_get(o));
	json_object_put(o);
	pending_free(p);
}

static void fleet_call(struct api *api, struct evhttp_request *req, const struct api_req *r)
{
	struct fleet *f = brk_fleet(api->b);
	if (!f) {
		reply_err(req, 404, "this host is not in a fleet ([fleet] db is not set)");
		return;
	}
	struct pending *p = pending_new(api, req);
	if (!p) {
		reply_err(req, 503, "out of memory");
		return;
	}
	p->async = true;
	int rc;
	if (r->route == API_HOSTS)
		rc = fleet_hosts(f, on_fleet, p);
	else if (r->route == API_FLEET_SESSIONS)
		rc = fleet_sessions(f, on_fleet, p);
	else if (r->route == API_FLEET_IMPORT) {
		json_object *all = brk_fleet_sessions_json(api->b);
		rc = fleet_import(f, json_object_to_json_string_ext(all, JSON_C_TO_STRING_PLAIN),
				  (int)json_object_array_length(all), on_fleet, p);
		json_object_put(all);
	} else
		rc = fleet_drain(f, r->name, r->route == API_HOST_DRAIN, on_fleet, p);
	if (rc < 0) {
		pending_take(p);
		pending_free(p);
		if (rc == -EINVAL)
			reply_err(req, 400, "not a host name");
		else
			fleet_reply_err(req, rc, NULL);
	}
}

static void h_hosts(HANDLER_ARGS)
{
	fleet_call(api, req, r);
}

static void h_host_drain(HANDLER_ARGS)
{
	fleet_call(api, req, r);
}

static void h_images(HANDLER_ARGS)
{
	reply_json(req, 200, brk_images_json(api->b));
}

static void h_image(HANDLER_ARGS)
{
	json_object *all = brk_images_json(api->b), *found = NULL;
	for (size_t i = 0; i < json_object_array_length(all) && !found; i++) {
		json_object *o = json_object_array_get_idx(all, i);
		if (!strcmp(jstr(o, "name"), r->name))
			found = json_object_get(o);
	}
	json_object_put(all);
	if (found)
		reply_json(req, 200, found);
	else
		reply_err(req, 404, "no image '%s'", r->name);
}

static void h_image_add(HANDLER_ARGS)
{
	char err[512];
	struct db_image img;
	memset(&img, 0, sizeof(img));
	rec_from_json(&rec_images, r->body, &img, true);
	struct pending *p = pending_new(api, req);
	int rc = -ENOMEM;
	if (p) {
		p->created = true;
		p->async = true;
		rc = brk_image_add(api->b, &img, on_done, p, err, sizeof(err));
	}
	explicit_bzero(img.rdp.password, sizeof(img.rdp.password));
	if (!p) {
		reply_err(req, 503, "out of memory");
	} else if (rc < 0) {
		pending_take(p);
		pending_free(p);
		reply_err(req, errno_status(rc), "%s", err);
	}
}

static void h_template_build(HANDLER_ARGS)
{
	char err[512];
	struct pending *p = pending_new(api, req);
	if (!p) {
		reply_err(req, 503, "out of memory");
		return;
	}
	p->async = true;
	int rc = brk_template_build(api->b, r->name, on_done, p, err, sizeof(err));
	if (rc < 0) {
		pending_take(p);
		pending_free(p);
		reply_err(req, errno_status(rc), "%s", err);
	}
}

/* Whether O gives a field of an image's rdp policy. */
static bool rdp_given(json_object *o)
{
	const size_t at = offsetof(struct db_image, rdp);
	for (size_t i = 0; i < rec_images.n; i++) {
		const struct rec_field *f = &rec_images.fields[i];
		if (f->off >= at && f->off < at + sizeof(struct db_rdp_policy) &&
		    json_object_object_get_ex(o, f->key, NULL))
			return true;
	}
	return false;
}

/* PUT /v1/images/NAME: the warm pool, the session cap and the rdp policy. */
static void h_image_set(HANDLER_ARGS)
{
	char err[512];
	struct db_image cur;
	memset(&cur, 0, sizeof(cur));
	bool found = store_image_get(brk_store(api->b), r->name, &cur) == 0;
	rec_from_json(&rec_images, r->body, &cur, false); /* the fields given, over the stored */
	bool has_wp = json_object_object_get_ex(r->body, "warm_pool", NULL);
	bool has_ms = json_object_object_get_ex(r->body, "max_sessions", NULL);
	bool has_rdp = found && rdp_given(r->body);
	int rc = brk_image_set(api->b, r->name, has_wp ? &cur.warm_pool : NULL,
			       has_ms ? &cur.max_sessions : NULL, has_rdp ? &cur.rdp : NULL, err,
			       sizeof(err));
	explicit_bzero(cur.rdp.password, sizeof(cur.rdp.password));
	if (rc < 0)
		reply_err(req, errno_status(rc), "%s", err);
	else
		reply_json(req, 200, json_object_new_object());
}

static void h_image_remove(HANDLER_ARGS)
{
	char err[512];
	int rc = brk_image_remove(api->b, r->name, err, sizeof(err));
	if (rc < 0)
		reply_err(req, errno_status(rc), "%s", err);
	else
		reply_json(req, 200, json_object_new_object());
}

static void h_apps(HANDLER_ARGS)
{
	reply_json(req, 200, store_apps_json(brk_store(api->b)));
}

static void h_app_add(HANDLER_ARGS)
{
	char err[512];
	struct db_app a;
	memset(&a, 0, sizeof(a));
	rec_from_json(&rec_apps, r->body, &a, true);
	int rc = brk_app_add(api->b, &a, err, sizeof(err));
	if (rc < 0) {
		reply_err(req, errno_status(rc), "%s", err);
		return;
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "alias", json_object_new_string(a.alias));
	reply_json(req, 201, o);
}

static void h_app_remove(HANDLER_ARGS)
{
	char err[512];
	int rc = brk_app_remove(api->b, r->name, err, sizeof(err));
	if (rc < 0)
		reply_err(req, errno_status(rc), "%s", err);
	else
		reply_json(req, 200, json_object_new_object());
}

static void h_audit(HANDLER_ARGS)
{
	reply_json(req, 200, store_audit_json(brk_store(api->b), r->limit));
}

/* --- routing --- */

#define ROUTE_HANDLER(route, method, path, body, handler, who) [API_##route] = h_##handler,
static void (*const handlers[API_ROUTE_COUNT])(HANDLER_ARGS) = {API_ROUTES(ROUTE_HANDLER)};
#undef ROUTE_HANDLER

static const char *method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return "";
	}
}

/* Why this caller may not make request R (on session S), into MSG; false if it may. */
static bool forbidden(const struct api *api, struct evhttp_request *req, const struct api_req *r,
		      bool grant_ok, bool *admin, char *msg, size_t len)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
	char who[32];
	enum api_role role = api_peer_role(bev ? bufferevent_getfd(bev) : -1, api->gateway_gid,
					   api->admin_gid, who, sizeof(who));
	*admin = role == API_ROLE_ADMIN;
	if (r->route == API_NONE)
		return false; /* nothing matched: the parser's answer, whoever asks */
	const char *why = api_refusal(role, r->route, grant_ok);
	if (!why)
		return false;
	snprintf(msg, len, "%s: %s", who, why);
	log_warn("api: refused %s %s: %s", api_route_method(r->route), api_route_path(r->route),
		 msg);
	return true;
}

static void route(struct evhttp_request *req, void *arg)
{
	struct api *api = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char *body = len ? malloc(len) : NULL;
	if (len && !body) {
		reply_err(req, 503, "out of memory");
		return;
	}
	if (len)
		evbuffer_copyout(in, body, len);
	struct api_req r;
	char err[512];
	int st = api_parse(method_name(evhttp_request_get_command(req)),
			   evhttp_request_get_uri(req), body, len, &r, err, sizeof(err));
	if (body) {
		/* a password may be in there */
		explicit_bzero(body, len);
		free(body);
	}
	struct brk_session *s = r.param == API_P_SESSION ? brk_session_find(api->b, r.name) : NULL;
	struct remote *rr =
	    r.param == API_P_SESSION && !s && brk_fleet(api->b) ? remote_find(api, r.name) : NULL;
	bool admin, grant_ok = s    ? brk_session_grant_ok(s, r.grant)
			       : rr ? util_secret_eq(rr->grant, r.grant)
				    : false;
	/* who may ask comes first: a refused caller learns nothing, not even which
	 * sessions exist; for the others a missing session is 404 before any other
	 * complaint */
	if (forbidden(api, req, &r, grant_ok, &admin, err, sizeof(err)))
		reply_err(req, 403, "%s", err);
	else if (rr && !st)
		remote_route(api, req, &r, rr);
	else if (r.param == API_P_SESSION && !s && (admin || r.route != API_NONE))
		reply_err(req, 404, "no session %s", r.name);
	else if (st)
		reply_err(req, st, "%s", err);
	else
		handlers[r.route](api, req, &r, s);
	api_req_free(&r);
}

struct api *api_create(struct event_base *base, struct brk *b, const char *path, const char *group,
		       char *err, size_t errlen)
{
	struct api *api = calloc(1, sizeof(*api));
	int fd = -1;
	if (!api) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	api->base = base;
	api->b = b;
	if (strlen(path) >= sizeof(api->path)) {
		snprintf(err, errlen, "api_socket path too long");
		goto fail;
	}
	memcpy(api->path, path, strlen(path) + 1);
	fd = api_listen(path, group, &api->gateway_gid, err, errlen);
	if (fd < 0)
		goto fail;
	const char *admins = brk_config(b)->admin_group;
	if (*admins) {
		struct group *g = getgrnam(admins);
		if (!g) {
			snprintf(err, errlen, "admin_group '%s' does not exist", admins);
			goto fail;
		}
		api->admin_gid = g->gr_gid;
		if (api->admin_gid == api->gateway_gid) {
			/* the gateway would be an administrator */
			snprintf(err, errlen,
				 "admin_group '%s' is api_group: give administrators a group of "
				 "their own",
				 admins);
			goto fail;
		}
	}
	api->http = evhttp_new(base);
	if (!api->http) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	evhttp_set_max_body_size(api->http, API_BODY_MAX);
	evhttp_set_max_headers_size(api->http, 16 * 1024);
	evhttp_set_timeout(api->http, API_WAIT_MAX_S + 30);
	evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
						  EVHTTP_REQ_DELETE);
	evhttp_set_gencb(api->http, route, api);
	api->listener = evhttp_accept_socket_with_handle(api->http, fd);
	if (!api->listener) {
		snprintf(err, errlen, "cannot serve on %s", path);
		goto fail;
	}
	log_info("API listening on %s", path);
	return api;
fail:
	if (fd >= 0 && !api->http)
		close(fd);
	api_destroy(api);
	return NULL;
}

void api_stop(struct api *api)
{
	if (!api)
		return;
	if (api->listener) {
		evhttp_del_accept_socket(api->http, api->listener); /* closes it */
		api->listener = NULL;
	}
	if (api->path[0])
		unlink(api->path);
	api->path[0] = '\0';
	while (api->pendings) {
		struct pending *p = api->pendings;
		struct evhttp_request *req = pending_take(p);
		if (req)
			reply_err(req, 503, "nestord is shutting down");
		if (p->async && !p->polling) {
			/* its callback still comes (the broker calls every one, at the latest
			 * when it is destroyed) and frees it: only forget it here */
			pending_unlink(p);
			continue;
		}
		pending_free(p); /* cancels a PAM check in flight, drops a watch */
	}
}

void api_destroy(struct api *api)
{
	if (!api)
		return;
	api_stop(api);
	if (api->http)
		evhttp_free(api->http);
	remotes_free(api);
	if (api->path[0])
		unlink(api->path);
	free(api);
}
