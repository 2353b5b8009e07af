/*
 * The API's request parser: the route table's patterns and refusals, the
 * body field tables (the records' API fields from record.c, the others
 * here) and every check a request passes before api.c's handler runs.
 * Pure: no I/O, never blocks.
 */
#include "api_parse.h"
#include "record.h"
#include "util.h"

#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEGS 4	   /* /v1/COLLECTION/NAME/SUB at most */
#define SEG_LEN 80 /* a segment's room, with its terminator */

/* --- body field tables --- */

enum ftype { F_STR, F_UINT, F_UINT_OR_NULL, F_NAMES };

struct field {
	const char *name;
	enum ftype type;
	bool required;
	uint64_t max; /* F_STR: max length; F_UINT: max value; F_NAMES: max count */
	bool secret;  /* wiped before the body is freed */
};

/* A body: its own FIELDS (ending with a NULL name), or a record's API fields. */
struct body {
	const struct field *fields;
	const struct rec_table *rec;
	bool set; /* REC: only the fields changeable later (REC_API_SET), none required */
};

static const struct field auth_fields[] = {{"user", F_STR, true, 64, false},
					   {"password", F_STR, true, 256, true},
					   {"code", F_STR, false, 64, true},
					   {"client", F_STR, false, 63, false},
					   {NULL, 0, false, 0, false}};
static const struct field connect_fields[] = {
    {"user", F_STR, true, 64, false},	 {"password", F_STR, true, 256, true},
    {"client", F_STR, false, 63, false}, {"app", F_STR, true, 64, false},
    {"code", F_STR, false, 64, true},	 {NULL, 0, false, 0, false}};
static const struct field attach_fields[] = {{"gateway", F_STR, false, 32, false},
					     {NULL, 0, false, 0, false}};
static const struct field lease_fields[] = {{"sessions", F_NAMES, true, 4096, false},
					    {NULL, 0, false, 0, false}};
#define CAP_FIELD(key, max, cli) {#key, F_UINT, false, max, false},
static const struct field caps_fields[] = {DB_CAP_FIELDS(CAP_FIELD){NULL, 0, false, 0, false}};
static const struct field user_cap_fields[] = {{"max_sessions", F_UINT_OR_NULL, true, 1000, false},
					       {NULL, 0, false, 0, false}};

static const struct body body_auth = {auth_fields, NULL, false};
static const struct body body_connect = {connect_fields, NULL, false};
static const struct body body_attach = {attach_fields, NULL, false};
static const struct body body_lease = {lease_fields, NULL, false};
static const struct body body_caps = {caps_fields, NULL, false};
static const struct body body_user_cap = {user_cap_fields, NULL, false};
static const struct body body_image_add = {NULL, &rec_images, false};
static const struct body body_image_set = {NULL, &rec_images, true};
static const struct body body_app_add = {NULL, &rec_apps, false};

#define BODY_NONE NULL
#define BODY_AUTH (&body_auth)
#define BODY_CONNECT (&body_connect)
#define BODY_ATTACH (&body_attach)
#define BODY_LEASE (&body_lease)
#define BODY_CAPS (&body_caps)
#define BODY_USER_CAP (&body_user_cap)
#define BODY_IMAGE_ADD (&body_image_add)
#define BODY_IMAGE_SET (&body_image_set)
#define BODY_APP_ADD (&body_app_add)

/* How many fields B has to look at (some skipped by body_field). */
static size_t body_size(const struct body *b)
{
	if (b->rec)
		return b->rec->n;
	size_t n = 0;
	while (b->fields[n].name)
		n++;
	return n;
}

/*
 * B's I-th field into *OUT; false if it is not one of B's (a record field
 * not given through the API, or not changeable later). The records' kinds
 * map to: text, a string of at most max; numbers, an integer 0..max;
 * bool, an integer 0..1.
 */
static bool body_field(const struct body *b, size_t i, struct field *out)
{
	if (!b->rec) {
		*out = b->fields[i];
		return true;
	}
	const struct rec_field *f = &b->rec->fields[i];
	if (b->set ? f->api != REC_API_SET : f->api == REC_API_NO)
		return false;
	out->name = f->key;
	out->type = f->kind == REC_TEXT ? F_STR : F_UINT;
	out->required = !b->set && f->api == REC_API_REQ;
	out->max = f->kind == REC_BOOL ? 1 : f->max;
	out->secret = f->flags & REC_SECRET;
	return true;
}

static bool body_find(const struct body *b, const char *key, struct field *out)
{
	size_t n = body_size(b);
	for (size_t i = 0; i < n; i++)
		if (body_field(b, i, out) && strcmp(out->name, key) == 0)
			return true;
	return false;
}

static void wipe_string(json_object *o, const char *key)
{
	json_object *v;
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
	    json_object_get_string_len(v) > 0)
		explicit_bzero((char *)json_object_get_string(v),
			       (size_t)json_object_get_string_len(v));
}

static void body_free(const struct body *b, json_object *o)
{
	if (!o)
		return;
	size_t n = body_size(b);
	struct field f;
	for (size_t i = 0; i < n; i++)
		if (body_field(b, i, &f) && f.secret)
			wipe_string(o, f.name);
	json_object_put(o);
}

/* --- the route table --- */

struct route {
	const char *method;
	const char *path;
	const struct body *body;
	enum api_who who;
};

#define ROUTE_ROW(route, method, path, body, handler, who)                                         \
	[API_##route] = {#method, path, BODY_##body, API_WHO_##who},
static const struct route routes[API_ROUTE_COUNT] = {API_ROUTES(ROUTE_ROW)};

/*
 * Paths that match routes but not with the request's method, or that are
 * known without a route ("*" is any segment): the first match answers.
 */
#define ACCEL_USE "use GET /v1/accel or POST /v1/accel/probe"
static const struct refusal {
	const char *path;
	int status;
	const char *msg;
} refusals[] = {
    {"/v1/status", 405, "use GET"},
    {"/v1/auth", 405, "use POST"},
    {"/v1/sessions", 405, "use GET or POST"},
    {"/v1/sessions/:session", 405, "method not allowed here"},
    {"/v1/sessions/:session/*", 405, "method not allowed here"},
    {"/v1/gateways/:gateway/lease", 405, "use POST"},
    {"/v1/accel", 405, ACCEL_USE},
    {"/v1/accel/probe", 405, ACCEL_USE},
    {"/v1/accel/*", 404, ACCEL_USE},
    {"/v1/caps", 405, "use GET or PUT"},
    {"/v1/users/caps", 405, "use GET"},
    {"/v1/users/:user/caps", 405, "use PUT"},
    {"/v1/images", 405, "method not allowed here"},
    {"/v1/images/:image", 405, "method not allowed here"},
    {"/v1/images/:image/*", 405, "method not allowed here"},
    {"/v1/apps", 405, "method not allowed here"},
    {"/v1/apps/:app", 405, "method not allowed here"},
    {"/v1/audit", 405, "use GET"},
    {"/v1/hosts", 405, "use GET"},
    {"/v1/fleet/sessions", 405, "use GET"},
    {"/v1/fleet/import", 405, "use POST"},
    {"/v1/hosts/:host", 404, "use POST /v1/hosts/NAME/drain or /v1/hosts/NAME/undrain"},
    {"/v1/hosts/:host/*", 405, "use POST /v1/hosts/NAME/drain or /v1/hosts/NAME/undrain"},
    {"/v1/me", 405, "use GET or DELETE"},
    {"/v1/me/:session", 405, "use DELETE"},
    {"/v1/me/launch/:app", 405, "use POST"},
};

static const struct {
	const char *seg;
	enum api_param param;
} params[] = {
    {":session", API_P_SESSION}, {":gateway", API_P_GATEWAY}, {":user", API_P_USER},
    {":image", API_P_IMAGE},	 {":app", API_P_APP},	      {":host", API_P_HOST},
};

const char *api_route_method(enum api_route r)
{
	return r >= 0 && r < API_ROUTE_COUNT ? routes[r].method : NULL;
}

const char *api_route_path(enum api_route r)
{
	return r >= 0 && r < API_ROUTE_COUNT ? routes[r].path : NULL;
}

bool api_route_has_body(enum api_route r)
{
	return r >= 0 && r < API_ROUTE_COUNT && routes[r].body;
}

enum api_who api_route_who(enum api_route r)
{
	return r >= 0 && r < API_ROUTE_COUNT ? routes[r].who : API_WHO_ADMIN;
}

const char *api_refusal(enum api_role role, enum api_route r, bool granted)
{
	enum api_who need = api_route_who(r);
	if (role == API_ROLE_ADMIN)
		return NULL;
	if (role != API_ROLE_GATEWAY)
		return "neither an administrator nor the gateway";
	if (need == API_WHO_ANY || need == API_WHO_USER || (need == API_WHO_GRANT && granted))
		return NULL;
	return need == API_WHO_GRANT ? "the gateway holds no grant for this session"
				     : "only an administrator may do this";
}

static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return status;
}

/* Split "/v1/a/b/c" into at most SEGS segments (empty ones skipped); -1 if malformed. */
static int split(const char *path, char seg[SEGS][SEG_LEN])
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
		if (n == SEGS || len >= SEG_LEN)
			return -1;
		memcpy(seg[n], p, len);
		seg[n][len] = '\0';
		n++;
		p += len;
	}
	return n;
}

/* Whether the N segments SEG fit PATTERN; its parameter (if any) into OUT. */
static bool match(const char *pattern, char seg[SEGS][SEG_LEN], int n, struct api_req *out)
{
	char pat[SEGS][SEG_LEN];
	int at = -1;
	if (split(pattern, pat) != n)
		return false;
	for (int i = 0; i < n; i++) {
		if (pat[i][0] == ':') {
			if (!util_name_valid(seg[i]))
				return false;
			at = i;
		} else if (strcmp(pat[i], "*") != 0 && strcmp(pat[i], seg[i]) != 0) {
			return false;
		}
	}
	out->param = API_P_NONE;
	out->name[0] = '\0';
	if (at >= 0) {
		for (size_t i = 0; i < ARRAY_LEN(params); i++)
			if (strcmp(params[i].seg, pat[at]) == 0)
				out->param = params[i].param;
		snprintf(out->name, sizeof(out->name), "%s", seg[at]);
	}
	return true;
}

/* --- query parameters --- */

/* KEY as an integer 0..MAX into *OUT, DFLT if absent; false if malformed. */
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

/* Whether S is well-formed UTF-8 without control characters (a line a user reads). */
static bool printable_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p, n = c < 0x80		  ? 0
				     : (c & 0xe0) == 0xc0 ? 1
				     : (c & 0xf0) == 0xe0 ? 2
				     : (c & 0xf8) == 0xf0 ? 3
							  : 4;
		if (n == 4 || (n == 0 && (c < 0x20 || c == 0x7f)) || (n == 1 && c < 0xc2) ||
		    (n == 3 && c > 0xf4))
			return false;
		uint32_t cp = n ? c & (0x3fu >> n) : c;
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3fu);
		}
		/* overlong forms, surrogates, beyond Unicode, C1 controls */
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
			return false;
		p += n + 1;
	}
	return true;
}

static int parse_query(struct api_req *r, const struct evkeyvalq *q, char *err, size_t errlen)
{
	const char *grant = evhttp_find_header(q, "grant");
	if (grant && routes[r->route].who == API_WHO_GRANT) {
		size_t n = strlen(grant);
		if (!n || n >= sizeof(r->grant) || strspn(grant, "0123456789abcdef") != n)
			return fail(err, errlen, 400, "grant must be the hex token of the session");
		memcpy(r->grant, grant, n + 1);
	}
	const char *token = evhttp_find_header(q, "token");
	if (token && routes[r->route].who == API_WHO_USER) {
		size_t n = strlen(token);
		if (!n || n >= sizeof(r->token) || strspn(token, "0123456789abcdef") != n)
			return fail(err, errlen, 400, "token must be the hex token of a sign-in");
		memcpy(r->token, token, n + 1);
	}
	switch (r->route) {
	case API_SESSIONS:
		if (!uint_param(q, "ended", 0, 1000, &r->ended))
			return fail(err, errlen, 400, "ended must be 0..1000");
		break;
	case API_SESSION: {
		/* the timeout only matters (and is only checked) with a state to wait on */
		const char *wait = evhttp_find_header(q, "wait");
		r->wait = wait != NULL;
		if (!wait)
			break;
		if (brk_state_parse(wait, &r->wait_state) < 0)
			return fail(err, errlen, 400, "wait must be a state name");
		if (!uint_param(q, "timeout", 30, API_WAIT_MAX_S, &r->timeout))
			return fail(err, errlen, 400, "timeout must be 0..%d seconds",
				    API_WAIT_MAX_S);
		break;
	}
	case API_SESSION_END: {
		if (!uint_param(q, "in", 0, API_END_IN_MAX_S, &r->end_in))
			return fail(err, errlen, 400, "in must be 0..%d seconds", API_END_IN_MAX_S);
		const char *m = evhttp_find_header(q, "message");
		if (m && (strlen(m) > API_MESSAGE_MAX || !printable_utf8(m)))
			return fail(err, errlen, 400,
				    "message must be printable UTF-8 of at most %d bytes",
				    API_MESSAGE_MAX);
		snprintf(r->message, sizeof(r->message), "%s", m ? m : "");
		break;
	}
	case API_AUDIT:
		if (!uint_param(q, "limit", 50, 10000, &r->limit))
			return fail(err, errlen, 400, "limit must be 0..10000");
		break;
	default:
		break;
	}
	return 0;
}

/* --- the body --- */

static int check_value(const struct field *f, const char *key, json_object *val, char *err,
		       size_t errlen)
{
	switch (f->type) {
	case F_STR:
		if (!json_object_is_type(val, json_type_string))
			return fail(err, errlen, 400, "field '%s' must be a string", key);
		if ((size_t)json_object_get_string_len(val) > f->max)
			return fail(err, errlen, 400, "field '%s' is longer than %zu", key,
				    (size_t)f->max);
		if (strlen(json_object_get_string(val)) != (size_t)json_object_get_string_len(val))
			return fail(err, errlen, 400, "field '%s' contains a NUL byte", key);
		break;
	case F_NAMES:
		if (!json_object_is_type(val, json_type_array) ||
		    json_object_array_length(val) > f->max)
			return fail(err, errlen, 400,
				    "field '%s' must be an array of at most %zu names", key,
				    (size_t)f->max);
		for (size_t i = 0; i < json_object_array_length(val); i++) {
			json_object *e = json_object_array_get_idx(val, i);
			if (!json_object_is_type(e, json_type_string) ||
			    strlen(json_object_get_string(e)) !=
				(size_t)json_object_get_string_len(e) ||
			    !util_name_valid(json_object_get_string(e)))
				return fail(err, errlen, 400, "field '%s' holds a malformed name",
					    key);
		}
		break;
	case F_UINT_OR_NULL:
		if (json_object_is_type(val, json_type_null))
			break;
		/* fall through */
	case F_UINT:
		if (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) < 0 ||
		    (uint64_t)json_object_get_int64(val) > f->max)
			return fail(err, errlen, 400, "field '%s' must be an integer 0..%zu", key,
				    (size_t)f->max);
		break;
	}
	return 0;
}

/*
 * BODY (LEN bytes) as a JSON object with only B's fields, of their types and
 * bounds, and every required one: *OUT a new reference.
 */
static int parse_body(const struct body *b, const char *body, size_t len, json_object **out,
		      char *err, size_t errlen)
{
	struct field f;
	int st = 0;
	if (len > API_BODY_MAX)
		return fail(err, errlen, 413, "request body over %d bytes", API_BODY_MAX);
	bool first_optional = false;
	for (size_t i = 0; i < body_size(b); i++)
		if (body_field(b, i, &f)) {
			first_optional = !f.required;
			break;
		}
	if (len == 0 && first_optional) {
		/* no body: no optional field given */
		*out = json_object_new_object();
		return *out ? 0 : fail(err, errlen, 400, "out of memory");
	}
	char *text = malloc(len + 1);
	if (!text)
		return fail(err, errlen, 400, "out of memory");
	if (len)
		memcpy(text, body, len);
	text[len] = '\0';
	json_tokener *tok = json_tokener_new_ex(API_JSON_DEPTH);
	json_object *o = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
	bool bad = !o || json_tokener_get_error(tok) != json_tokener_success ||
		   json_tokener_get_parse_end(tok) != len || strlen(text) != len;
	/* the password may be in there: wipe before freeing */
	explicit_bzero(text, len);
	free(text);
	if (tok)
		json_tokener_free(tok);
	if (bad) {
		st = fail(err, errlen, 400, "body is not valid JSON");
		goto bad;
	}
	if (!json_object_is_type(o, json_type_object)) {
		st = fail(err, errlen, 400, "body must be a JSON object");
		goto bad;
	}
	json_object_object_foreach(o, key, val)
	{
		if (!body_find(b, key, &f)) {
			st = fail(err, errlen, 400, "unknown field '%.64s'", key);
			goto bad;
		}
		st = check_value(&f, key, val, err, errlen);
		if (st)
			goto bad;
	}
	for (size_t i = 0; i < body_size(b); i++) {
		if (body_field(b, i, &f) && f.required &&
		    !json_object_object_get_ex(o, f.name, NULL)) {
			st = fail(err, errlen, 400, "missing field '%s'", f.name);
			goto bad;
		}
	}
	*out = o;
	return 0;
bad:
	body_free(b, o);
	return st;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

/* What a route asks beyond its fields' types and bounds. */
static int check_body(const struct api_req *r, char *err, size_t errlen)
{
	const char *gw;
	switch (r->route) {
	case API_AUTH:
	case API_CONNECT:
		if (!util_name_valid(jstr(r->body, "user")))
			return fail(err, errlen, 400, "invalid user name");
		break;
	case API_ATTACH:
		gw = jstr(r->body, "gateway");
		if (*gw && !util_name_valid(gw))
			return fail(err, errlen, 400, "malformed gateway name");
		break;
	case API_IMAGE_ADD:
		if (jstr(r->body, "base")[0] != '/')
			return fail(err, errlen, 400, "base must be an absolute path");
		break;
	default:
		break;
	}
	return 0;
}

/* --- the request --- */

/* The route for METHOD on the N segments SEG, or the refusal's status. */
static int find_route(const char *method, char seg[SEGS][SEG_LEN], int n, struct api_req *out,
		      char *err, size_t errlen)
{
	for (int i = 0; i < API_ROUTE_COUNT; i++) {
		if (strcmp(method, routes[i].method) == 0 && match(routes[i].path, seg, n, out)) {
			out->route = (enum api_route)i;
			return 0;
		}
	}
	for (size_t i = 0; i < ARRAY_LEN(refusals); i++)
		if (match(refusals[i].path, seg, n, out))
			return fail(err, errlen, refusals[i].status, "%s", refusals[i].msg);
	return fail(err, errlen, 404, "no such endpoint");
}

int api_parse(const char *method, const char *uri, const char *body, size_t len,
	      struct api_req *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->route = API_NONE;
	out->timeout = 30;
	out->limit = 50;
	struct evhttp_uri *u =
	    uri ? evhttp_uri_parse_with_flags(uri, EVHTTP_URI_NONCONFORMANT) : NULL;
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	const char *query = u ? evhttp_uri_get_query(u) : NULL;
	struct evkeyvalq q;
	char seg[SEGS][SEG_LEN];
	int st;
	TAILQ_INIT(&q);
	if (query && evhttp_parse_query_str(query, &q) < 0) {
		st = fail(err, errlen, 400, "malformed query string");
		goto out;
	}
	int n = path ? split(path, seg) : -1;
	if (n < 2 || strcmp(seg[0], "v1") != 0) {
		st = fail(err, errlen, 404, "no such endpoint");
		goto out;
	}
	/* a third segment is a name wherever it is (a parameter, or caps, probe) */
	if (n >= 3 && !util_name_valid(seg[2])) {
		st = fail(err, errlen, 400, "malformed name in path");
		goto out;
	}
	st = find_route(method ? method : "", seg, n, out, err, errlen);
	if (st)
		goto out;
	if (out->route == API_LEASE && strlen(out->name) > 32) {
		st = fail(err, errlen, 400, "a gateway name has at most 32 characters");
		goto out;
	}
	st = parse_query(out, &q, err, errlen);
	if (st)
		goto out;
	if (routes[out->route].body) {
		st = parse_body(routes[out->route].body, body ? body : "", body ? len : 0,
				&out->body, err, errlen);
		if (st)
			goto out;
	}
	st = check_body(out, err, errlen);
out:
	evhttp_clear_headers(&q);
	if (u)
		evhttp_uri_free(u);
	if (st)
		api_req_free(out);
	return st;
}

void api_req_free(struct api_req *req)
{
	if (req->body && req->route >= 0 && req->route < API_ROUTE_COUNT && routes[req->route].body)
		body_free(routes[req->route].body, req->body);
	else
		json_object_put(req->body);
	req->body = NULL;
}
