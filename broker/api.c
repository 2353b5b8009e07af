/*
 * The API: routing, request validation and JSON replies. Never blocks:
 * PAM answers and long-polls reply later from the loop, and a request whose
 * client went away is simply dropped.
 */
#include "api.h"
#include "broker.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BODY_MAX (64 * 1024)
#define JSON_DEPTH 16
#define WAIT_MAX_S 60

struct pending;

struct api {
	struct event_base *base;
	struct brk *b;
	struct evhttp *http;
	struct evhttp_bound_socket *listener;
	char path[108];
	struct pending *pendings;
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

/* --- request parsing --- */

enum ftype { F_STR, F_UINT, F_UINT_OR_NULL, F_NAMES };

struct field {
	const char *name;
	enum ftype type;
	bool required;
	size_t max; /* F_STR: max length; F_UINT: max value; F_NAMES: max count */
};

/* Parse the body as a JSON object with exactly the known FIELDS. */
static json_object *parse_body(struct evhttp_request *req, const struct field *fields, char *err,
			       size_t errlen)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	if (len > BODY_MAX) {
		snprintf(err, errlen, "request body over %d bytes", BODY_MAX);
		return NULL;
	}
	char *text = malloc(len + 1);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	evbuffer_copyout(in, text, len);
	text[len] = '\0';
	if (len == 0 && fields[0].name && !fields[0].required) {
		/* no body: no optional field given */
		free(text);
		return json_object_new_object();
	}
	json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
	json_object *o = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
	bool bad = !o || json_tokener_get_error(tok) != json_tokener_success ||
		   json_tokener_get_parse_end(tok) != len || strlen(text) != len;
	/* the password may be in there: wipe before freeing */
	explicit_bzero(text, len);
	free(text);
	if (tok)
		json_tokener_free(tok);
	if (bad) {
		json_object_put(o);
		snprintf(err, errlen, "body is not valid JSON");
		return NULL;
	}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		snprintf(err, errlen, "body must be a JSON object");
		return NULL;
	}
	json_object_object_foreach(o, key, val)
	{
		const struct field *f = NULL;
		for (const struct field *x = fields; x->name; x++)
			if (strcmp(x->name, key) == 0)
				f = x;
		if (!f) {
			snprintf(err, errlen, "unknown field '%.64s'", key);
			goto bad;
		}
		switch (f->type) {
		case F_STR:
			if (!json_object_is_type(val, json_type_string)) {
				snprintf(err, errlen, "field '%s' must be a string", key);
				goto bad;
			}
			if ((size_t)json_object_get_string_len(val) > f->max) {
				snprintf(err, errlen, "field '%s' is longer than %zu", key, f->max);
				goto bad;
			}
			if (strlen(json_object_get_string(val)) !=
			    (size_t)json_object_get_string_len(val)) {
				snprintf(err, errlen, "field '%s' contains a NUL byte", key);
				goto bad;
			}
			break;
		case F_NAMES:
			if (!json_object_is_type(val, json_type_array) ||
			    json_object_array_length(val) > f->max) {
				snprintf(err, errlen,
					 "field '%s' must be an array of at most %zu names", key,
					 f->max);
				goto bad;
			}
			for (size_t i = 0; i < json_object_array_length(val); i++) {
				json_object *e = json_object_array_get_idx(val, i);
				if (!json_object_is_type(e, json_type_string) ||
				    strlen(json_object_get_string(e)) !=
					(size_t)json_object_get_string_len(e) ||
				    !util_name_valid(json_object_get_string(e))) {
					snprintf(err, errlen, "field '%s' holds a malformed name",
						 key);
					goto bad;
				}
			}
			break;
		case F_UINT_OR_NULL:
			if (json_object_is_type(val, json_type_null))
				break;
			/* fall through */
		case F_UINT:
			if (!json_object_is_type(val, json_type_int) ||
			    json_object_get_int64(val) < 0 ||
			    (uint64_t)json_object_get_int64(val) > f->max) {
				snprintf(err, errlen, "field '%s' must be an integer 0..%zu", key,
					 f->max);
				goto bad;
			}
			break;
		}
	}
	for (const struct field *x = fields; x->name; x++) {
		if (x->required && !json_object_object_get_ex(o, x->name, NULL)) {
			snprintf(err, errlen, "missing field '%s'", x->name);
			goto bad;
		}
	}
	return o;
bad:
	json_object_put(o);
	return NULL;
}

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

static void wipe_field(json_object *o, const char *key)
{
	json_object *v;
	if (json_object_object_get_ex(o, key, &v) && json_object_get_string_len(v) > 0)
		explicit_bzero((char *)json_object_get_string(v),
			       (size_t)json_object_get_string_len(v));
}

/* --- handlers --- */

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
	if (status == -EACCES)
		reply_err(req, 401, "%s", reason);
	else if (status == -EPERM)
		reply_err(req, 403, "%s", reason);
	else if (status < 0)
		reply_err(req, 503, "%s", reason);
	else if (!p->connect) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "user", json_object_new_string(p->user));
		json_object_object_add(o, "authenticated", json_object_new_boolean(1));
		reply_json(req, 200, o);
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
		else
			session_reply(api, req, 200, s);
	}
	pending_free(p);
}

static void do_auth(struct api *api, struct evhttp_request *req, bool connect)
{
	static const struct field auth_fields[] = {{"user", F_STR, true, 64},
						   {"password", F_STR, true, 256},
						   {"client", F_STR, false, 63},
						   {NULL, 0, 0, 0}};
	static const struct field connect_fields[] = {{"user", F_STR, true, 64},
						      {"password", F_STR, true, 256},
						      {"client", F_STR, false, 63},
						      {"app", F_STR, true, 64},
						      {NULL, 0, 0, 0}};
	char err[256];
	json_object *o = parse_body(req, connect ? connect_fields : auth_fields, err, sizeof(err));
	if (!o) {
		reply_err(req, 400, "%s", err);
		return;
	}
	const char *user = jstr(o, "user");
	if (!util_name_valid(user)) {
		wipe_field(o, "password");
		json_object_put(o);
		reply_err(req, 400, "invalid user name");
		return;
	}
	struct pending *p = pending_new(api, req);
	if (!p) {
		wipe_field(o, "password");
		json_object_put(o);
		reply_err(req, 503, "out of memory");
		return;
	}
	p->connect = connect;
	snprintf(p->user, sizeof(p->user), "%s", user);
	snprintf(p->app, sizeof(p->app), "%s", jstr(o, "app"));
	snprintf(p->client, sizeof(p->client), "%s", jstr(o, "client"));
	int r =
	    brk_authenticate(api->b, user, jstr(o, "password"), p->client, on_authed, p, &p->auth);
	wipe_field(o, "password");
	json_object_put(o);
	if (r < 0) {
		pending_take(p);
		pending_free(p);
		if (r == -EAGAIN)
			reply_err(req, 429, "too many failed logins: try again later");
		else
			reply_err(req, 400, "cannot authenticate: %s", strerror(-r));
	}
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

static void do_get_session(struct api *api, struct evhttp_request *req, struct brk_session *s,
			   const struct evkeyvalq *q)
{
	const char *wait = evhttp_find_header(q, "wait");
	const char *tmo = evhttp_find_header(q, "timeout");
	if (!wait) {
		session_reply(api, req, 200, s);
		return;
	}
	enum brk_state st;
	if (brk_state_parse(wait, &st) < 0) {
		reply_err(req, 400, "wait must be a state name");
		return;
	}
	unsigned timeout = 30;
	if (tmo) {
		char *end;
		unsigned long t = strtoul(tmo, &end, 10);
		if (*end || !*tmo || t > WAIT_MAX_S) {
			reply_err(req, 400, "timeout must be 0..%d seconds", WAIT_MAX_S);
			return;
		}
		timeout = (unsigned)t;
	}
	if (brk_session_state(s) != st || timeout == 0) {
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
	struct timeval tv = {timeout, 0};
	evtimer_add(p->timer, &tv);
}

static void do_caps(struct api *api, struct evhttp_request *req, enum evhttp_cmd_type m)
{
	static const struct field f[] = {{"max_sessions", F_UINT, false, 100000},
					 {"max_starting", F_UINT, false, 10000},
					 {"max_memory_mb", F_UINT, false, 16u << 20},
					 {"user_max_sessions", F_UINT, false, 1000},
					 {NULL, 0, 0, 0}};
	if (m == EVHTTP_REQ_PUT) {
		char err[256];
		json_object *o = parse_body(req, f, err, sizeof(err));
		if (!o) {
			reply_err(req, 400, "%s", err);
			return;
		}
		for (const struct field *x = f; x->name; x++) {
			unsigned v;
			int r = juint(o, x->name, &v) ? brk_caps_set(api->b, x->name, v) : 0;
			if (r < 0) {
				json_object_put(o);
				reply_err(req, errno_status(r), "cannot store %s: %s", x->name,
					  r == -EAGAIN ? "the database is busy, try again"
						       : strerror(-r));
				return;
			}
		}
		json_object_put(o);
	} else if (m != EVHTTP_REQ_GET) {
		reply_err(req, 405, "use GET or PUT");
		return;
	}
	reply_json(req, 200, brk_status_json(api->b));
}

static void do_user_caps(struct api *api, struct evhttp_request *req, enum evhttp_cmd_type m,
			 const char *user)
{
	static const struct field f[] = {{"max_sessions", F_UINT_OR_NULL, true, 1000},
					 {NULL, 0, 0, 0}};
	if (!user) {
		if (m != EVHTTP_REQ_GET) {
			reply_err(req, 405, "use GET");
			return;
		}
		reply_json(req, 200, store_user_caps_json(brk_store(api->b)));
		return;
	}
	if (m != EVHTTP_REQ_PUT) {
		reply_err(req, 405, "use PUT");
		return;
	}
	char err[256];
	json_object *o = parse_body(req, f, err, sizeof(err));
	if (!o) {
		reply_err(req, 400, "%s", err);
		return;
	}
	unsigned v = 0;
	bool has = juint(o, "max_sessions", &v);
	json_object_put(o);
	int r = brk_user_cap_set(api->b, user, has, v);
	if (r == -EINVAL) {
		reply_err(req, 400, "invalid user name");
		return;
	}
	if (r < 0) {
		reply_err(req, errno_status(r), "cannot store the cap: %s",
			  r == -EAGAIN ? "the database is busy, try again" : strerror(-r));
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "user", json_object_new_string(user));
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

#define RDP_FIELDS                                                                                 \
	{"rdp_security", F_STR, false, 7}, {"guest_login", F_STR, false, 7},                       \
	    {"guest_user", F_STR, false, 64}, {"guest_domain", F_STR, false, 64},                  \
	    {"guest_password", F_STR, false, 128}, {"clipboard", F_UINT, false, 1},                \
	    {"drive", F_UINT, false, 1},                                                           \
	{                                                                                          \
		"remoteapp", F_UINT, false, 1                                                      \
	}

/* Apply the rdp policy fields present in O; true if any was. */
static bool apply_rdp(json_object *o, struct db_rdp_policy *r)
{
	static const struct {
		const char *key;
		size_t off, len;
	} str[] = {
	    {"rdp_security", offsetof(struct db_rdp_policy, security), sizeof(r->security)},
	    {"guest_login", offsetof(struct db_rdp_policy, login), sizeof(r->login)},
	    {"guest_user", offsetof(struct db_rdp_policy, user), sizeof(r->user)},
	    {"guest_domain", offsetof(struct db_rdp_policy, domain), sizeof(r->domain)},
	    {"guest_password", offsetof(struct db_rdp_policy, password), sizeof(r->password)},
	};
	bool any = false;
	json_object *v;
	for (size_t i = 0; i < ARRAY_LEN(str); i++)
		if (json_object_object_get_ex(o, str[i].key, &v)) {
			snprintf((char *)r + str[i].off, str[i].len, "%s",
				 json_object_get_string(v));
			any = true;
		}
	unsigned u;
	if (juint(o, "clipboard", &u))
		r->clipboard = u, any = true;
	if (juint(o, "drive", &u))
		r->drive = u, any = true;
	if (juint(o, "remoteapp", &u))
		r->remoteapp = u, any = true;
	return any;
}

static void do_images(struct api *api, struct evhttp_request *req, enum evhttp_cmd_type m,
		      const char *name, const char *sub)
{
	static const struct field f[] = {{"name", F_STR, true, 64},
					 {"base", F_STR, true, 4000},
					 {"kernel", F_STR, false, 4000},
					 {"initrd", F_STR, false, 4000},
					 {"append", F_STR, false, 1000},
					 {"machine", F_STR, false, 64},
					 {"memory_mb", F_UINT, true, 65536},
					 {"ready", F_STR, false, 120},
					 {"backend", F_STR, false, 15},
					 {"rdp_port", F_UINT, false, 65535},
					 {"max_sessions", F_UINT, false, 100000},
					 {"warm_pool", F_UINT, false, 1000},
					 {"keepalive", F_UINT, false, 7 * 86400},
					 {"idle", F_UINT, false, 7 * 86400},
					 {"max_lifetime", F_UINT, false, 30 * 86400},
					 {"start_timeout", F_UINT, false, 3600},
					 {"queue_wait", F_UINT, false, 86400},
					 RDP_FIELDS,
					 {NULL, 0, 0, 0}};
	static const struct field setf[] = {{"warm_pool", F_UINT, false, 1000},
					    {"max_sessions", F_UINT, false, 100000},
					    RDP_FIELDS,
					    {NULL, 0, 0, 0}};
	char err[512];
	if (m == EVHTTP_REQ_GET && !name) {
		reply_json(req, 200, brk_images_json(api->b));
	} else if (m == EVHTTP_REQ_GET && name && !sub) {
		json_object *all = brk_images_json(api->b), *found = NULL;
		for (size_t i = 0; i < json_object_array_length(all) && !found; i++) {
			json_object *o = json_object_array_get_idx(all, i);
			if (!strcmp(jstr(o, "name"), name))
				found = json_object_get(o);
		}
		json_object_put(all);
		if (found)
			reply_json(req, 200, found);
		else
			reply_err(req, 404, "no image '%s'", name);
	} else if (m == EVHTTP_REQ_POST && !name) {
		json_object *o = parse_body(req, f, err, sizeof(err));
		if (!o) {
			reply_err(req, 400, "%s", err);
			return;
		}
		struct db_image img;
		memset(&img, 0, sizeof(img));
		snprintf(img.name, sizeof(img.name), "%s", jstr(o, "name"));
		snprintf(img.base, sizeof(img.base), "%s", jstr(o, "base"));
		snprintf(img.kernel, sizeof(img.kernel), "%s", jstr(o, "kernel"));
		snprintf(img.initrd, sizeof(img.initrd), "%s", jstr(o, "initrd"));
		snprintf(img.append, sizeof(img.append), "%s", jstr(o, "append"));
		snprintf(img.machine, sizeof(img.machine), "%s",
			 *jstr(o, "machine") ? jstr(o, "machine") : "pc-i440fx-7.2");
		snprintf(img.ready, sizeof(img.ready), "%s",
			 *jstr(o, "ready") ? jstr(o, "ready") : "running");
		snprintf(img.backend, sizeof(img.backend), "%s",
			 *jstr(o, "backend") ? jstr(o, "backend") : "console");
		juint(o, "memory_mb", &img.memory_mb);
		juint(o, "rdp_port", &img.rdp_port);
		juint(o, "max_sessions", &img.max_sessions);
		juint(o, "warm_pool", &img.warm_pool);
		juint(o, "keepalive", &img.keepalive);
		juint(o, "idle", &img.idle);
		juint(o, "max_lifetime", &img.max_lifetime);
		juint(o, "start_timeout", &img.start_timeout);
		juint(o, "queue_wait", &img.queue_wait);
		apply_rdp(o, &img.rdp);
		wipe_field(o, "guest_password");
		json_object_put(o);
		if (img.base[0] != '/') {
			reply_err(req, 400, "base must be an absolute path");
			return;
		}
		struct pending *p = pending_new(api, req);
		if (!p) {
			reply_err(req, 503, "out of memory");
			return;
		}
		p->created = true;
		p->async = true;
		int r = brk_image_add(api->b, &img, on_done, p, err, sizeof(err));
		if (r < 0) {
			pending_take(p);
			pending_free(p);
			reply_err(req, errno_status(r), "%s", err);
		}
	} else if (m == EVHTTP_REQ_POST && name && sub && !strcmp(sub, "template")) {
		struct pending *p = pending_new(api, req);
		if (!p) {
			reply_err(req, 503, "out of memory");
			return;
		}
		p->async = true;
		int r = brk_template_build(api->b, name, on_done, p, err, sizeof(err));
		if (r < 0) {
			pending_take(p);
			pending_free(p);
			reply_err(req, errno_status(r), "%s", err);
		}
	} else if (m == EVHTTP_REQ_PUT && name && !sub) {
		json_object *o = parse_body(req, setf, err, sizeof(err));
		if (!o) {
			reply_err(req, 400, "%s", err);
			return;
		}
		unsigned wp, ms;
		bool has_wp = juint(o, "warm_pool", &wp), has_ms = juint(o, "max_sessions", &ms);
		struct db_image cur;
		bool has_rdp = false;
		if (store_image_get(brk_store(api->b), name, &cur) == 0)
			has_rdp = apply_rdp(o, &cur.rdp);
		wipe_field(o, "guest_password");
		json_object_put(o);
		int r = brk_image_set(api->b, name, has_wp ? &wp : NULL, has_ms ? &ms : NULL,
				      has_rdp ? &cur.rdp : NULL, err, sizeof(err));
		explicit_bzero(cur.rdp.password, sizeof(cur.rdp.password));
		if (r < 0)
			reply_err(req, errno_status(r), "%s", err);
		else
			reply_json(req, 200, json_object_new_object());
	} else if (m == EVHTTP_REQ_DELETE && name && !sub) {
		int r = brk_image_remove(api->b, name, err, sizeof(err));
		if (r < 0)
			reply_err(req, errno_status(r), "%s", err);
		else
			reply_json(req, 200, json_object_new_object());
	} else {
		reply_err(req, 405, "method not allowed here");
	}
}

static void do_apps(struct api *api, struct evhttp_request *req, enum evhttp_cmd_type m,
		    const char *alias)
{
	static const struct field f[] = {{"alias", F_STR, true, 64},
					 {"image", F_STR, true, 64},
					 {"title", F_STR, true, 128},
					 {"command", F_STR, false, 1000},
					 {NULL, 0, 0, 0}};
	char err[512];
	if (m == EVHTTP_REQ_GET && !alias) {
		reply_json(req, 200, store_apps_json(brk_store(api->b)));
	} else if (m == EVHTTP_REQ_POST && !alias) {
		json_object *o = parse_body(req, f, err, sizeof(err));
		if (!o) {
			reply_err(req, 400, "%s", err);
			return;
		}
		struct db_app a;
		memset(&a, 0, sizeof(a));
		snprintf(a.alias, sizeof(a.alias), "%s", jstr(o, "alias"));
		snprintf(a.image, sizeof(a.image), "%s", jstr(o, "image"));
		snprintf(a.title, sizeof(a.title), "%s", jstr(o, "title"));
		snprintf(a.command, sizeof(a.command), "%s", jstr(o, "command"));
		json_object_put(o);
		int r = brk_app_add(api->b, &a, err, sizeof(err));
		if (r < 0) {
			reply_err(req, errno_status(r), "%s", err);
			return;
		}
		o = json_object_new_object();
		json_object_object_add(o, "alias", json_object_new_string(a.alias));
		reply_json(req, 201, o);
	} else if (m == EVHTTP_REQ_DELETE && alias) {
		int r = brk_app_remove(api->b, alias, err, sizeof(err));
		if (r < 0)
			reply_err(req, errno_status(r), "%s", err);
		else
			reply_json(req, 200, json_object_new_object());
	} else {
		reply_err(req, 405, "method not allowed here");
	}
}

static bool uint_param(const struct evkeyvalq *q, const char *key, unsigned dflt, unsigned max,
		       unsigned *out)
{
	const char *v = evhttp_find_header(q, key);
	*out = dflt;
	if (!v)
		return true;
	char *end;
	unsigned long x = strtoul(v, &end, 10);
	if (!*v || *end || x > max)
		return false;
	*out = (unsigned)x;
	return true;
}

/* POST /v1/gateways/ID/lease {"sessions": [...]}: the gateway still holds these. */
static void do_lease(struct api *api, struct evhttp_request *req, enum evhttp_cmd_type m,
		     const char *gw)
{
	static const struct field f[] = {{"sessions", F_NAMES, true, 4096}, {NULL, 0, 0, 0}};
	char err[256];
	if (m != EVHTTP_REQ_POST) {
		reply_err(req, 405, "use POST");
		return;
	}
	if (strlen(gw) > 32) {
		reply_err(req, 400, "a gateway name has at most 32 characters");
		return;
	}
	json_object *o = parse_body(req, f, err, sizeof(err));
	if (!o) {
		reply_err(req, 400, "%s", err);
		return;
	}
	json_object *arr;
	json_object_object_get_ex(o, "sessions", &arr);
	size_t n = json_object_array_length(arr);
	const char **ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids) {
		json_object_put(o);
		reply_err(req, 503, "out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = json_object_get_string(json_object_array_get_idx(arr, i));
	unsigned held = brk_gateway_lease(api->b, gw, ids, n);
	free(ids);
	json_object_put(o);
	json_object *r = json_object_new_object();
	json_object_object_add(r, "held", json_object_new_int64(held));
	json_object_object_add(r, "lease_ms", json_object_new_int64(BRK_LEASE_MS));
	reply_json(req, 200, r);
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

/* GET /v1/accel: the decision; POST /v1/accel/probe: probe again, answer when done. */
static void do_accel(struct api *api, struct evhttp_request *req, enum evhttp_cmd_type m,
		     const char *sub)
{
	char err[256];
	if (!sub && m == EVHTTP_REQ_GET) {
		reply_json(req, 200, brk_accel_json(api->b));
	} else if (sub && !strcmp(sub, "probe") && m == EVHTTP_REQ_POST) {
		struct pending *p = pending_new(api, req);
		if (!p) {
			reply_err(req, 503, "out of memory");
			return;
		}
		p->async = true;
		int r = brk_accel_probe(api->b, on_probed, p, err, sizeof(err));
		if (r < 0) {
			pending_take(p);
			pending_free(p);
			reply_err(req, errno_status(r), "%s", err);
		}
	} else {
		reply_err(req, sub && strcmp(sub, "probe") ? 404 : 405,
			  "use GET /v1/accel or POST /v1/accel/probe");
	}
}

/* Split "/v1/a/b/c" into at most 4 segments; false if malformed. */
static int split(const char *path, char seg[4][80])
{
	int n = 0;
	const char *p = path;
	if (*p != '/')
		return -1;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (n == 4 || len >= 80)
			return -1;
		memcpy(seg[n], p, len);
		seg[n][len] = '\0';
		n++;
		p += len;
	}
	return n;
}

static void route(struct evhttp_request *req, void *arg)
{
	struct api *api = arg;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	char seg[4][80];
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	if (query && evhttp_parse_query_str(query, &q) < 0) {
		reply_err(req, 400, "malformed query string");
		return;
	}
	int n = path ? split(path, seg) : -1;
	if (n < 2 || strcmp(seg[0], "v1") != 0) {
		reply_err(req, 404, "no such endpoint");
		goto out;
	}
	const char *what = seg[1];
	const char *id = n >= 3 ? seg[2] : NULL;
	const char *sub = n >= 4 ? seg[3] : NULL;
	if (id && !util_name_valid(id)) {
		reply_err(req, 400, "malformed name in path");
		goto out;
	}
	if (!strcmp(what, "status") && n == 2) {
		if (m != EVHTTP_REQ_GET)
			reply_err(req, 405, "use GET");
		else
			reply_json(req, 200, brk_status_json(api->b));
	} else if (!strcmp(what, "auth") && n == 2) {
		if (m != EVHTTP_REQ_POST)
			reply_err(req, 405, "use POST");
		else
			do_auth(api, req, false);
	} else if (!strcmp(what, "sessions") && n == 2) {
		unsigned ended;
		if (m == EVHTTP_REQ_POST) {
			do_auth(api, req, true);
		} else if (m != EVHTTP_REQ_GET) {
			reply_err(req, 405, "use GET or POST");
		} else if (!uint_param(&q, "ended", 0, 1000, &ended)) {
			reply_err(req, 400, "ended must be 0..1000");
		} else if (ended) {
			reply_json(req, 200, store_sessions_ended_json(brk_store(api->b), ended));
		} else {
			reply_json(req, 200, brk_sessions_json(api->b));
		}
	} else if (!strcmp(what, "sessions") && id) {
		struct brk_session *s = brk_session_find(api->b, id);
		char err[256];
		if (!s) {
			reply_err(req, 404, "no session %s", id);
		} else if (!sub && m == EVHTTP_REQ_GET) {
			do_get_session(api, req, s, &q);
		} else if (!sub && m == EVHTTP_REQ_DELETE) {
			brk_session_end(api->b, s, "ended by request");
			session_reply(api, req, 200, s);
		} else if (sub && m == EVHTTP_REQ_POST && !strcmp(sub, "attach")) {
			static const struct field f[] = {{"gateway", F_STR, false, 32},
							 {NULL, 0, 0, 0}};
			json_object *o = parse_body(req, f, err, sizeof(err));
			const char *gw = o ? jstr(o, "gateway") : "";
			if (!o)
				reply_err(req, 400, "%s", err);
			else if (*gw && !util_name_valid(gw))
				reply_err(req, 400, "malformed gateway name");
			else if (brk_session_attach(api->b, s, *gw ? gw : NULL, err, sizeof(err)) <
				 0)
				reply_err(req, 409, "%s", err);
			else
				session_reply(api, req, 200, s);
			json_object_put(o);
		} else if (sub && m == EVHTTP_REQ_POST && !strcmp(sub, "detach")) {
			if (brk_session_detach(api->b, s) < 0)
				reply_err(req, 409, "session is not connected");
			else
				session_reply(api, req, 200, s);
		} else if (sub && m == EVHTTP_REQ_POST && !strcmp(sub, "screendump")) {
			struct pending *p = pending_new(api, req);
			if (p)
				p->async = true;
			int r = p ? brk_session_screendump(api->b, s, on_dumped, p) : -ENOMEM;
			if (r < 0) {
				if (p) {
					pending_take(p);
					pending_free(p);
				}
				reply_err(req, 409, "no screen to dump (session %s)",
					  brk_state_name(brk_session_state(s)));
			}
		} else if (sub && m == EVHTTP_REQ_GET && !strcmp(sub, "guest")) {
			json_object *g = brk_session_guest_json(api->b, s);
			if (g)
				reply_json(req, 200, g);
			else
				reply_err(req, 409, "session %s has no rdp guest to reach (%s)", id,
					  brk_state_name(brk_session_state(s)));
		} else if (sub && m == EVHTTP_REQ_POST && !strcmp(sub, "activity")) {
			brk_session_activity(api->b, s);
			session_reply(api, req, 200, s);
		} else {
			reply_err(req, 405, "method not allowed here");
		}
	} else if (!strcmp(what, "gateways") && id && sub && !strcmp(sub, "lease") && n == 4) {
		do_lease(api, req, m, id);
	} else if (!strcmp(what, "accel") && n <= 3) {
		do_accel(api, req, m, id);
	} else if (!strcmp(what, "caps") && n == 2) {
		do_caps(api, req, m);
	} else if (!strcmp(what, "users") && (n == 3 || n == 4) &&
		   (n == 3 ? !strcmp(seg[2], "caps") : !strcmp(seg[3], "caps"))) {
		do_user_caps(api, req, m, n == 4 ? seg[2] : NULL);
	} else if (!strcmp(what, "images") && n <= 4) {
		do_images(api, req, m, id, sub);
	} else if (!strcmp(what, "apps") && n <= 3) {
		do_apps(api, req, m, id);
	} else if (!strcmp(what, "audit") && n == 2) {
		unsigned limit;
		if (m != EVHTTP_REQ_GET)
			reply_err(req, 405, "use GET");
		else if (!uint_param(&q, "limit", 50, 10000, &limit))
			reply_err(req, 400, "limit must be 0..10000");
		else
			reply_json(req, 200, store_audit_json(brk_store(api->b), limit));
	} else {
		reply_err(req, 404, "no such endpoint");
	}
out:
	evhttp_clear_headers(&q);
}

struct api *api_create(struct event_base *base, struct brk *b, const char *path, const char *group,
		       char *err, size_t errlen)
{
	struct api *api = calloc(1, sizeof(*api));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = -1;
	if (!api) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	api->base = base;
	api->b = b;
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "api_socket path too long");
		goto fail;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	memcpy(api->path, path, strlen(path) + 1);
	unlink(path); /* a stale socket of an earlier nestord */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	mode_t old = umask(0117);
	int br = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (br < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		goto fail;
	}
	chmod(path, 0660);
	if (group && *group) {
		struct group *g = getgrnam(group);
		if (!g || chown(path, (uid_t)-1, g->gr_gid) < 0) {
			snprintf(err, errlen, "cannot give %s to group '%s'", path, group);
			goto fail;
		}
	}
	api->http = evhttp_new(base);
	if (!api->http) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	evhttp_set_max_body_size(api->http, BODY_MAX);
	evhttp_set_max_headers_size(api->http, 16 * 1024);
	evhttp_set_timeout(api->http, WAIT_MAX_S + 30);
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
		if (p->async) {
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
	if (api->path[0])
		unlink(api->path);
	free(api);
}
