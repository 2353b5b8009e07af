/*
 * Table tests for the API's request parser (broker/api_parse.c): good and
 * bad requests per route, the body field tables against the limits they
 * had when they were written by hand in api.c, and the route table's shape.
 */
#include "api_parse.h"
#include "util.h"
#include "check.h"
#include "record.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tcase {
	const char *method, *uri, *body;
	int status;	      /* 0: parsed */
	const char *msg;      /* the message, exactly, when STATUS is not 0 */
	enum api_route route; /* when parsed */
};

#define IMG "\"name\":\"x\",\"base\":\"/b.qcow2\",\"memory_mb\":64"
#define USE_ACCEL "use GET /v1/accel or POST /v1/accel/probe"

#define MSG_BAD "message must be printable UTF-8 of at most 200 bytes"
static const struct tcase cases[] = {
    /* paths */
    {"GET", "/v1/status", NULL, 0, NULL, API_STATUS},
    {"GET", "/v1//status/", NULL, 0, NULL, API_STATUS},
    {"GET", "//v1/status", NULL, 404, "no such endpoint", API_NONE}, /* v1 is the host */
    {"GET", "http://host/v1/status", NULL, 0, NULL, API_STATUS},
    {"GET", "/v1/status?x=1&y=2", NULL, 0, NULL, API_STATUS},
    {"GET", "/v1/nothing", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/v2/status", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/v1", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "*", NULL, 404, "no such endpoint", API_NONE},
    {"GET", NULL, NULL, 404, "no such endpoint", API_NONE},
    {"GET", "v1/status", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/v1/status/x", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/v1/sessions/a/b/c", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/v1/gateways/gw1", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/v1/users/alice", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/v1/apps/a/b", NULL, 404, "no such endpoint", API_NONE},
    {"GET", "/v1/sessions/..%2f..", NULL, 400, "malformed name in path", API_NONE},
    {"GET", "/v1/sessions/%00", NULL, 400, "malformed name in path", API_NONE},
    {"GET", "/v1/nothing/-x", NULL, 400, "malformed name in path", API_NONE},
    {"GET", "/v1/status?novalue", NULL, 400, "malformed query string", API_NONE},
    {"GET", "/v1/nothing?novalue", NULL, 400, "malformed query string", API_NONE},
    /* methods */
    {"DELETE", "/v1/status", NULL, 405, "use GET", API_NONE},
    {"PATCH", "/v1/status", NULL, 405, "use GET", API_NONE},
    {"", "/v1/status", NULL, 405, "use GET", API_NONE},
    {"GET", "/v1/auth", NULL, 405, "use POST", API_NONE},
    {"PUT", "/v1/sessions", NULL, 405, "use GET or POST", API_NONE},
    {"PUT", "/v1/sessions/abc", NULL, 405, "method not allowed here", API_NONE},
    {"GET", "/v1/sessions/abc/attach", NULL, 405, "method not allowed here", API_NONE},
    {"POST", "/v1/sessions/abc/nothing", NULL, 405, "method not allowed here", API_NONE},
    {"GET", "/v1/gateways/gw1/lease", NULL, 405, "use POST", API_NONE},
    {"POST", "/v1/accel", NULL, 405, USE_ACCEL, API_NONE},
    {"GET", "/v1/accel/probe", NULL, 405, USE_ACCEL, API_NONE},
    {"GET", "/v1/accel/other", NULL, 404, USE_ACCEL, API_NONE},
    {"POST", "/v1/accel/probe/x", NULL, 404, "no such endpoint", API_NONE},
    {"DELETE", "/v1/caps", NULL, 405, "use GET or PUT", API_NONE},
    {"PUT", "/v1/users/caps", NULL, 405, "use GET", API_NONE},
    {"GET", "/v1/users/alice/caps", NULL, 405, "use PUT", API_NONE},
    {"DELETE", "/v1/images", NULL, 405, "method not allowed here", API_NONE},
    {"POST", "/v1/images/x", NULL, 405, "method not allowed here", API_NONE},
    {"GET", "/v1/images/x/template", NULL, 405, "method not allowed here", API_NONE},
    {"GET", "/v1/images/x/other", NULL, 405, "method not allowed here", API_NONE},
    {"PUT", "/v1/apps", NULL, 405, "method not allowed here", API_NONE},
    {"GET", "/v1/apps/a", NULL, 405, "method not allowed here", API_NONE},
    {"POST", "/v1/audit", NULL, 405, "use GET", API_NONE},
    /* auth and connect */
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\"}", 0, NULL, API_AUTH},
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\",\"client\":\"c\"}", 0, NULL, API_AUTH},
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\",\"code\":\"123456\"}", 0, NULL,
     API_AUTH},
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\",\"code\":123456}", 400,
     "field 'code' must be a string", API_NONE},
    {"POST", "/v1/sessions", "{\"user\":\"a\",\"password\":\"b\",\"code\":\"1\",\"app\":\"x\"}", 0,
     NULL, API_CONNECT},
    {"POST", "/v1/auth", "", 400, "body is not valid JSON", API_NONE},
    {"POST", "/v1/auth", "{", 400, "body is not valid JSON", API_NONE},
    {"POST", "/v1/auth", "[]", 400, "body must be a JSON object", API_NONE},
    {"POST", "/v1/auth", "\"x\"", 400, "body must be a JSON object", API_NONE},
    {"POST", "/v1/auth", "{\"user\":\"a\"}", 400, "missing field 'password'", API_NONE},
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":1}", 400,
     "field 'password' must be a string", API_NONE},
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\",\"x\":1}", 400, "unknown field 'x'",
     API_NONE},
    {"POST", "/v1/auth", "{\"user\":\"../etc\",\"password\":\"p\"}", 400, "invalid user name",
     API_NONE},
    {"POST", "/v1/auth", "{\"user\":\"\",\"password\":\"p\"}", 400, "invalid user name", API_NONE},
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\"} trailing", 400,
     "body is not valid JSON", API_NONE},
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\",\"client\":\"\\u0000\"}", 400,
     "field 'client' contains a NUL byte", API_NONE},
    {"POST", "/v1/sessions", "{\"user\":\"a\",\"password\":\"b\",\"app\":{\"x\":1}}", 400,
     "field 'app' must be a string", API_NONE},
    {"POST", "/v1/sessions", "{\"user\":\"a\",\"password\":\"b\"}", 400, "missing field 'app'",
     API_NONE},
    {"POST", "/v1/sessions", "{\"user\":\"a\",\"password\":\"b\",\"app\":\"x\"}", 0, NULL,
     API_CONNECT},
    /* sessions */
    {"GET", "/v1/sessions", NULL, 0, NULL, API_SESSIONS},
    {"GET", "/v1/sessions?ended=1000", NULL, 0, NULL, API_SESSIONS},
    {"GET", "/v1/sessions?ended=x", NULL, 400, "ended must be 0..1000", API_NONE},
    {"GET", "/v1/sessions?ended=", NULL, 400, "ended must be 0..1000", API_NONE},
    {"GET", "/v1/sessions?ended=1001", NULL, 400, "ended must be 0..1000", API_NONE},
    {"GET", "/v1/sessions?ended=-1", NULL, 400, "ended must be 0..1000", API_NONE},
    {"GET", "/v1/sessions?wait=ready&timeout=99999", NULL, 0, NULL, API_SESSIONS},
    {"GET", "/v1/sessions/abc", NULL, 0, NULL, API_SESSION},
    {"GET", "/v1/sessions/abc?timeout=99999", NULL, 0, NULL, API_SESSION},
    {"GET", "/v1/sessions/abc?wait=ready&timeout=60", NULL, 0, NULL, API_SESSION},
    {"GET", "/v1/sessions/abc?wait=bogus", NULL, 400, "wait must be a state name", API_NONE},
    {"GET", "/v1/sessions/abc?wait=bogus&timeout=99", NULL, 400, "wait must be a state name",
     API_NONE},
    {"GET", "/v1/sessions/abc?wait=ready&timeout=61", NULL, 400, "timeout must be 0..60 seconds",
     API_NONE},
    {"GET", "/v1/sessions/abc?wait=ready&timeout=1s", NULL, 400, "timeout must be 0..60 seconds",
     API_NONE},
    {"DELETE", "/v1/sessions/abc", NULL, 0, NULL, API_SESSION_END},
    {"DELETE", "/v1/sessions/abc?in=604800", NULL, 0, NULL, API_SESSION_END},
    {"DELETE", "/v1/sessions/abc?in=604801", NULL, 400, "in must be 0..604800 seconds", API_NONE},
    {"DELETE", "/v1/sessions/abc?in=5m", NULL, 400, "in must be 0..604800 seconds", API_NONE},
    {"DELETE", "/v1/sessions/abc?in=-1", NULL, 400, "in must be 0..604800 seconds", API_NONE},
    {"DELETE", "/v1/sessions/abc?message=line%0Abreak", NULL, 400, MSG_BAD, API_NONE},
    {"DELETE", "/v1/sessions/abc?message=%7F", NULL, 400, MSG_BAD, API_NONE},
    {"DELETE", "/v1/sessions/abc?message=%C3", NULL, 400, MSG_BAD, API_NONE},
    {"DELETE", "/v1/sessions/abc?message=%C0%AF", NULL, 400, MSG_BAD, API_NONE},
    {"DELETE", "/v1/sessions/abc?message=%ED%A0%80", NULL, 400, MSG_BAD, API_NONE},
    {"DELETE", "/v1/sessions/abc?message=%C2%85", NULL, 400, MSG_BAD, API_NONE},
    {"DELETE", "/v1/sessions/abc?message=%F4%90%80%80", NULL, 400, MSG_BAD, API_NONE},
    {"DELETE", "/v1/sessions/abc?message=caf%C3%A9%20%E2%82%AC%20%F0%9F%99%82", NULL, 0, NULL,
     API_SESSION_END},
    {"POST", "/v1/sessions/abc/attach", NULL, 0, NULL, API_ATTACH},
    {"POST", "/v1/sessions/abc/attach", "{}", 0, NULL, API_ATTACH},
    {"POST", "/v1/sessions/abc/attach", "{\"gateway\":\"gw-1\"}", 0, NULL, API_ATTACH},
    {"POST", "/v1/sessions/abc/attach", "{\"gateway\":\"\"}", 0, NULL, API_ATTACH},
    {"POST", "/v1/sessions/abc/attach", "{\"gateway\":\"bad name!\"}", 400,
     "malformed gateway name", API_NONE},
    {"POST", "/v1/sessions/abc/attach", "{\"gateway\":\"gw\\u0000hidden\"}", 400,
     "field 'gateway' contains a NUL byte", API_NONE},
    {"POST", "/v1/sessions/abc/attach", "{\"gateway\":1}", 400, "field 'gateway' must be a string",
     API_NONE},
    {"POST", "/v1/sessions/abc/attach", "{\"gw\":\"x\"}", 400, "unknown field 'gw'", API_NONE},
    {"POST", "/v1/sessions/abc/detach", "not read", 0, NULL, API_DETACH},
    {"POST", "/v1/sessions/abc/screendump", NULL, 0, NULL, API_SCREENDUMP},
    {"GET", "/v1/sessions/abc/guest", NULL, 0, NULL, API_GUEST},
    {"POST", "/v1/sessions/abc/activity", NULL, 0, NULL, API_ACTIVITY},
    /* gateways */
    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[\"a\",\"b\"]}", 0, NULL, API_LEASE},
    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[]}", 0, NULL, API_LEASE},
    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":\"x\"}", 400,
     "field 'sessions' must be an array of at most 4096 names", API_NONE},
    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[\"../x\"]}", 400,
     "field 'sessions' holds a malformed name", API_NONE},
    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[1]}", 400,
     "field 'sessions' holds a malformed name", API_NONE},
    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[\"x\\u0000y\"]}", 400,
     "field 'sessions' holds a malformed name", API_NONE},
    {"POST", "/v1/gateways/gw1/lease", "{}", 400, "missing field 'sessions'", API_NONE},
    {"POST", "/v1/gateways/gw1/lease", "", 400, "body is not valid JSON", API_NONE},
    {"POST", "/v1/gateways/gw1/lease", "{\"sessions\":[],\"x\":1}", 400, "unknown field 'x'",
     API_NONE},
    {"POST", "/v1/gateways/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/lease", "{\"sessions\":[]}", 0, NULL,
     API_LEASE},
    {"POST", "/v1/gateways/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/lease", "{\"sessions\":[]}", 400,
     "a gateway name has at most 32 characters", API_NONE},
    {"POST", "/v1/gateways/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/lease", "{", 400,
     "a gateway name has at most 32 characters", API_NONE},
    /* accelerator, caps */
    {"GET", "/v1/accel", NULL, 0, NULL, API_ACCEL},
    {"POST", "/v1/accel/probe", NULL, 0, NULL, API_ACCEL_PROBE},
    {"GET", "/v1/caps", NULL, 0, NULL, API_CAPS},
    {"PUT", "/v1/caps", NULL, 0, NULL, API_CAPS_SET},
    {"PUT", "/v1/caps", "{\"max_sessions\":10,\"user_max_sessions\":2}", 0, NULL, API_CAPS_SET},
    {"PUT", "/v1/caps", "{\"max_sessions\":-1}", 400,
     "field 'max_sessions' must be an integer 0..100000", API_NONE},
    {"PUT", "/v1/caps", "{\"max_sessions\":\"2\"}", 400,
     "field 'max_sessions' must be an integer 0..100000", API_NONE},
    {"PUT", "/v1/caps", "{\"max_sessions\":1e3}", 400,
     "field 'max_sessions' must be an integer 0..100000", API_NONE},
    {"PUT", "/v1/caps", "{\"max_sessions\":null}", 400,
     "field 'max_sessions' must be an integer 0..100000", API_NONE},
    {"PUT", "/v1/caps", "{\"max_sessions\":99999999999999}", 400,
     "field 'max_sessions' must be an integer 0..100000", API_NONE},
    {"PUT", "/v1/caps", "{\"max_sessions\":99999999999999999999999}", 400,
     "field 'max_sessions' must be an integer 0..100000", API_NONE},
    {"PUT", "/v1/caps", "{\"max_memory_mb\":16777216}", 0, NULL, API_CAPS_SET},
    {"PUT", "/v1/caps", "{\"max_memory_mb\":16777217}", 400,
     "field 'max_memory_mb' must be an integer 0..16777216", API_NONE},
    {"PUT", "/v1/caps", "{\"max_guests\":1}", 400, "unknown field 'max_guests'", API_NONE},
    {"GET", "/v1/users/caps", NULL, 0, NULL, API_USER_CAPS},
    {"PUT", "/v1/users/alice/caps", "{\"max_sessions\":null}", 0, NULL, API_USER_CAP_SET},
    {"PUT", "/v1/users/caps/caps", "{\"max_sessions\":3}", 0, NULL, API_USER_CAP_SET},
    {"PUT", "/v1/users/alice/caps", "{}", 400, "missing field 'max_sessions'", API_NONE},
    {"PUT", "/v1/users/alice/caps", NULL, 400, "body is not valid JSON", API_NONE},
    {"PUT", "/v1/users/alice/caps", "{\"max_sessions\":true}", 400,
     "field 'max_sessions' must be an integer 0..1000", API_NONE},
    /* images */
    {"GET", "/v1/images", NULL, 0, NULL, API_IMAGES},
    {"GET", "/v1/images/x", NULL, 0, NULL, API_IMAGE},
    {"DELETE", "/v1/images/x", NULL, 0, NULL, API_IMAGE_REMOVE},
    {"POST", "/v1/images/x/template", NULL, 0, NULL, API_TEMPLATE},
    {"POST", "/v1/images", "{" IMG "}", 0, NULL, API_IMAGE_ADD},
    {"POST", "/v1/images", "{" IMG ",\"backend\":\"rdp\",\"guest_password\":\"pw\"}", 0, NULL,
     API_IMAGE_ADD},
    {"POST", "/v1/images", "", 400, "body is not valid JSON", API_NONE},
    {"POST", "/v1/images", "{\"name\":\"x\",\"base\":\"/b\"}", 400, "missing field 'memory_mb'",
     API_NONE},
    {"POST", "/v1/images", "{\"name\":\"x\",\"base\":\"b.qcow2\",\"memory_mb\":64}", 400,
     "base must be an absolute path", API_NONE},
    {"POST", "/v1/images", "{\"name\":\"x\",\"base\":\"\",\"memory_mb\":64}", 400,
     "base must be an absolute path", API_NONE},
    {"POST", "/v1/images", "{" IMG ",\"sha256\":\"x\"}", 400, "unknown field 'sha256'", API_NONE},
    {"POST", "/v1/images", "{" IMG ",\"created\":1}", 400, "unknown field 'created'", API_NONE},
    {"POST", "/v1/images", "{" IMG ",\"clipboard\":7}", 400,
     "field 'clipboard' must be an integer 0..1", API_NONE},
    {"POST", "/v1/images", "{" IMG ",\"backend\":\"0123456789abcdef\"}", 400,
     "field 'backend' is longer than 15", API_NONE},
    {"POST", "/v1/images", "{" IMG ",\"rdp_security\":\"tls\\u0000\"}", 400,
     "field 'rdp_security' contains a NUL byte", API_NONE},
    {"POST", "/v1/images", "{" IMG ",\"memory_mb\":\"64\"}", 400,
     "field 'memory_mb' must be an integer 0..65536", API_NONE},
    {"PUT", "/v1/images/x", NULL, 0, NULL, API_IMAGE_SET},
    {"PUT", "/v1/images/x", "{\"warm_pool\":2,\"drive\":1,\"guest_user\":\"u\"}", 0, NULL,
     API_IMAGE_SET},
    {"PUT", "/v1/images/x", "{\"memory_mb\":64}", 400, "unknown field 'memory_mb'", API_NONE},
    {"PUT", "/v1/images/x", "{\"warm_pool\":1001}", 400,
     "field 'warm_pool' must be an integer 0..1000", API_NONE},
    {"PUT", "/v1/images/x", "{\"remoteapp\":\"yes\"}", 400,
     "field 'remoteapp' must be an integer 0..1", API_NONE},
    /* apps, audit */
    {"GET", "/v1/apps", NULL, 0, NULL, API_APPS},
    {"POST", "/v1/apps", "{\"alias\":\"a\",\"image\":\"i\",\"title\":\"t\"}", 0, NULL, API_APP_ADD},
    {"POST", "/v1/apps", "{\"alias\":\"a\",\"image\":\"i\"}", 400, "missing field 'title'",
     API_NONE},
    {"POST", "/v1/apps", "{\"alias\":\"a\",\"image\":\"i\",\"title\":\"t\",\"x\":1}", 400,
     "unknown field 'x'", API_NONE},
    {"DELETE", "/v1/apps/a", NULL, 0, NULL, API_APP_REMOVE},
    {"GET", "/v1/audit", NULL, 0, NULL, API_AUDIT},
    {"GET", "/v1/audit?limit=10000", NULL, 0, NULL, API_AUDIT},
    {"GET", "/v1/audit?limit=10001", NULL, 400, "limit must be 0..10000", API_NONE},
    {"GET", "/v1/audit?limit=%31", NULL, 0, NULL, API_AUDIT},
};

static int parse(const char *method, const char *uri, const char *body, struct api_req *r,
		 char *err, size_t errlen)
{
	err[0] = '\0';
	return api_parse(method, uri, body, body ? strlen(body) : 0, r, err, errlen);
}

static void run_cases(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *t = &cases[i];
		struct api_req r;
		char err[512];
		int st = parse(t->method, t->uri, t->body, &r, err, sizeof(err));
		CHECK_MSG(st == t->status, "%s %s: %d, not %d (%s)", t->method, check_s(t->uri), st,
			  t->status, err);
		if (t->status == 0) {
			CHECK_MSG(r.route == t->route, "%s %s: route %d, not %d", t->method, t->uri,
				  r.route, t->route);
			CHECK_MSG(api_route_has_body(r.route) == (r.body != NULL), "%s %s: body",
				  t->method, t->uri);
		} else {
			CHECK_MSG(check_streq(err, t->msg), "%s %s: '%s', not '%s'", t->method,
				  check_s(t->uri), err, t->msg);
			CHECK(r.body == NULL);
		}
		api_req_free(&r);
		CHECK(r.body == NULL);
	}
}

/* What the parsed requests hold. */
static void test_values(void)
{
	struct api_req r;
	char err[512];
	CHECK(parse("GET", "/v1/sessions", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.ended == 0 && r.param == API_P_NONE && !r.name[0]);
	CHECK(parse("GET", "/v1/sessions?ENDED=7", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.ended == 7);
	CHECK(parse("GET", "/v1/sessions/s1", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.param == API_P_SESSION && check_streq(r.name, "s1") && !r.wait);
	CHECK(parse("GET", "/v1/sessions/s1?wait=starting", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.wait && r.wait_state == BRK_STARTING && r.timeout == 30);
	CHECK(parse("GET", "/v1/sessions/s1?wait=ready&timeout=0", NULL, &r, err, sizeof(err)) ==
	      0);
	CHECK(r.wait && r.wait_state == BRK_READY && r.timeout == 0);
	CHECK(parse("GET", "/v1/audit", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.limit == 50);
	CHECK(parse("GET", "/v1/audit?limit=0", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.limit == 0);
	CHECK(parse("PUT", "/v1/users/bob/caps", "{\"max_sessions\":4}", &r, err, sizeof(err)) ==
	      0);
	CHECK(r.param == API_P_USER && check_streq(r.name, "bob"));
	api_req_free(&r);
	CHECK(parse("POST", "/v1/gateways/gw-1/lease", "{\"sessions\":[\"a\"]}", &r, err,
		    sizeof(err)) == 0);
	CHECK(r.param == API_P_GATEWAY && check_streq(r.name, "gw-1"));
	api_req_free(&r);
	CHECK(parse("DELETE", "/v1/sessions/s1", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.end_in == 0 && !r.message[0]);
	CHECK(parse("DELETE", "/v1/sessions/s1?in=300&message=Save+your%20work%2C%20please", NULL,
		    &r, err, sizeof(err)) == 0);
	CHECK(r.end_in == 300 && check_streq(r.message, "Save your work, please"));
	char uri[400];
	snprintf(uri, sizeof(uri), "/v1/sessions/s1?in=1&message=%0200d", 0);
	CHECK(parse("DELETE", uri, NULL, &r, err, sizeof(err)) == 0 && strlen(r.message) == 200);
	snprintf(uri, sizeof(uri), "/v1/sessions/s1?in=1&message=%0201d", 0);
	CHECK(parse("DELETE", uri, NULL, &r, err, sizeof(err)) == 400);
	CHECK(parse("DELETE", "/v1/apps/ledger", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.param == API_P_APP && check_streq(r.name, "ledger"));
	CHECK(parse("POST", "/v1/images/demo/template", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.param == API_P_IMAGE && check_streq(r.name, "demo"));

	/* a session's path is known even when the request fails: the caller's 404 goes first */
	CHECK(parse("PUT", "/v1/sessions/s2", NULL, &r, err, sizeof(err)) == 405);
	CHECK(r.param == API_P_SESSION && check_streq(r.name, "s2"));
	CHECK(parse("POST", "/v1/sessions/s3/nothing", NULL, &r, err, sizeof(err)) == 405);
	CHECK(r.param == API_P_SESSION && check_streq(r.name, "s3"));
	CHECK(parse("GET", "/v1/sessions/s4?wait=x", NULL, &r, err, sizeof(err)) == 400);
	CHECK(r.param == API_P_SESSION && check_streq(r.name, "s4"));
	CHECK(parse("POST", "/v1/sessions/s5/attach", "{", &r, err, sizeof(err)) == 400);
	CHECK(r.param == API_P_SESSION && check_streq(r.name, "s5") && !r.body);
	CHECK(parse("GET", "/v1/sessions/s6?x", NULL, &r, err, sizeof(err)) == 400);
	CHECK(r.param == API_P_NONE); /* the query string is judged before the path */

	/* the body is the validated object */
	CHECK(parse("POST", "/v1/auth", "{\"user\":\"al\",\"password\":\"pw\"}", &r, err,
		    sizeof(err)) == 0);
	json_object *v;
	CHECK(json_object_object_get_ex(r.body, "password", &v) &&
	      check_streq(json_object_get_string(v), "pw"));
	api_req_free(&r);
	CHECK(parse("PUT", "/v1/caps", NULL, &r, err, sizeof(err)) == 0);
	CHECK(r.body && json_object_object_length(r.body) == 0);
	api_req_free(&r);

	/* a body that is not given as bytes, or binary */
	CHECK(api_parse("POST", "/v1/auth", NULL, 10, &r, err, sizeof(err)) == 400);
	CHECK(api_parse("POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\"}\0", 28, &r, err,
			sizeof(err)) == 400);
	CHECK_STR(err, "body is not valid JSON");
	CHECK(api_parse("POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\"}xyz", 27, &r, err,
			sizeof(err)) == 0);
	api_req_free(&r);
}

/* Bodies at their limits: size and nesting. */
static void test_limits(void)
{
	struct api_req r;
	char err[512];
	size_t n = API_BODY_MAX + 1;
	char *big = malloc(n + 1);
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	big[n] = '\0';
	CHECK(api_parse("PUT", "/v1/caps", big, n, &r, err, sizeof(err)) == 413);
	CHECK_STR(err, "request body over 65536 bytes");
	CHECK(api_parse("PUT", "/v1/caps", big + 1, n - 2, &r, err, sizeof(err)) == 400);
	big[n - 2] = '}';
	CHECK(api_parse("PUT", "/v1/caps", big + 1, n - 2, &r, err, sizeof(err)) == 400);
	CHECK(api_parse("PUT", "/v1/caps", big, n - 1, &r, err, sizeof(err)) == 0);
	api_req_free(&r);
	/* the body of a route that reads none is never looked at, whatever its size */
	CHECK(api_parse("POST", "/v1/sessions/a/detach", big, n, &r, err, sizeof(err)) == 0);
	free(big);

	char deep[64] = "{\"max_sessions\":";
	size_t at = strlen(deep);
	for (int i = 0; i < API_JSON_DEPTH; i++)
		deep[at++] = '[';
	deep[at] = '\0';
	CHECK(parse("PUT", "/v1/caps", deep, &r, err, sizeof(err)) == 400);
	CHECK_STR(err, "body is not valid JSON");
	char ok[64] = "{\"max_sessions\":";
	at = strlen(ok);
	for (int i = 0; i < API_JSON_DEPTH - 1; i++)
		ok[at++] = '[';
	for (int i = 0; i < API_JSON_DEPTH - 1; i++)
		ok[at++] = ']';
	ok[at++] = '}';
	ok[at] = '\0';
	CHECK(parse("PUT", "/v1/caps", ok, &r, err, sizeof(err)) == 400);
	CHECK_STR(err, "field 'max_sessions' must be an integer 0..100000");
}

/*
 * The field tables as they were written by hand in api.c before they came
 * from records.h: names, types, bounds and which were required.
 */
struct ref_field {
	const char *name;
	char type; /* s string, u integer, n integer or null, a array of names */
	bool required;
	unsigned long max;
};

static const struct ref_field ref_auth[] = {{"user", 's', true, 64},
					    {"password", 's', true, 256},
					    {"code", 's', false, 64},
					    {"client", 's', false, 63},
					    {NULL, 0, false, 0}};
static const struct ref_field ref_connect[] = {
    {"user", 's', true, 64}, {"password", 's', true, 256}, {"client", 's', false, 63},
    {"app", 's', true, 64},  {"code", 's', false, 64},	   {NULL, 0, false, 0}};
static const struct ref_field ref_attach[] = {{"gateway", 's', false, 32}, {NULL, 0, false, 0}};
static const struct ref_field ref_lease[] = {{"sessions", 'a', true, 4096}, {NULL, 0, false, 0}};
static const struct ref_field ref_caps[] = {{"max_sessions", 'u', false, 100000},
					    {"max_starting", 'u', false, 10000},
					    {"max_memory_mb", 'u', false, 16u << 20},
					    {"user_max_sessions", 'u', false, 1000},
					    {NULL, 0, false, 0}};
static const struct ref_field ref_user_cap[] = {{"max_sessions", 'n', true, 1000},
						{NULL, 0, false, 0}};
#define REF_RDP                                                                                    \
	{"rdp_security", 's', false, 7}, {"guest_login", 's', false, 7},                           \
	    {"guest_user", 's', false, 64}, {"guest_domain", 's', false, 64},                      \
	    {"guest_password", 's', false, 128}, {"clipboard", 'u', false, 1},                     \
	    {"drive", 'u', false, 1}, {"clipboard_formats", 's', false, 7},                        \
	    {"clipboard_max_bytes", 'u', false, 8388600}, {"remoteapp", 'u', false, 1},
static const struct ref_field ref_image_add[] = {{"name", 's', true, 64},
						 {"base", 's', true, 4000},
						 {"kernel", 's', false, 4000},
						 {"initrd", 's', false, 4000},
						 {"append", 's', false, 1000},
						 {"machine", 's', false, 64},
						 {"memory_mb", 'u', true, 65536},
						 {"ready", 's', false, 120},
						 {"backend", 's', false, 15},
						 {"rdp_port", 'u', false, 65535},
						 {"max_sessions", 'u', false, 100000},
						 {"warm_pool", 'u', false, 1000},
						 {"keepalive", 'u', false, 7 * 86400},
						 {"idle", 'u', false, 7 * 86400},
						 {"max_lifetime", 'u', false, 30 * 86400},
						 {"start_timeout", 'u', false, 3600},
						 {"queue_wait", 'u', false, 86400},
						 REF_RDP{NULL, 0, false, 0}};
static const struct ref_field ref_image_set[] = {{"warm_pool", 'u', false, 1000},
						 {"max_sessions", 'u', false, 100000},
						 REF_RDP{NULL, 0, false, 0}};
static const struct ref_field ref_app_add[] = {{"alias", 's', true, 64},
					       {"image", 's', true, 64},
					       {"title", 's', true, 128},
					       {"command", 's', false, 1000},
					       {NULL, 0, false, 0}};

static const struct ref_body {
	const char *method, *uri;
	const char *base; /* a good body with the required fields */
	const struct ref_field *fields;
	const struct rec_table *rec; /* fields of it that are not in FIELDS are unknown */
} ref_bodies[] = {
    {"POST", "/v1/auth", "{\"user\":\"a\",\"password\":\"p\"}", ref_auth, NULL},
    {"POST", "/v1/sessions", "{\"user\":\"a\",\"password\":\"p\",\"app\":\"x\"}", ref_connect,
     NULL},
    {"POST", "/v1/sessions/s/attach", "{}", ref_attach, NULL},
    {"POST", "/v1/gateways/g/lease", "{\"sessions\":[]}", ref_lease, NULL},
    {"PUT", "/v1/caps", "{}", ref_caps, NULL},
    {"PUT", "/v1/users/u/caps", "{\"max_sessions\":1}", ref_user_cap, NULL},
    {"POST", "/v1/images", "{" IMG "}", ref_image_add, &rec_images},
    {"PUT", "/v1/images/x", "{}", ref_image_set, &rec_images},
    {"POST", "/v1/apps", "{\"alias\":\"a\",\"image\":\"i\",\"title\":\"t\"}", ref_app_add,
     &rec_apps},
};

/* A value of F at its bound (OVER: one past it). */
static json_object *ref_value(const struct ref_field *f, bool over)
{
	size_t n = f->max + (over ? 1 : 0);
	if (f->type == 'u' || f->type == 'n')
		return json_object_new_int64((int64_t)n);
	if (f->type == 'a') {
		json_object *a = json_object_new_array();
		for (size_t i = 0; i < n; i++)
			json_object_array_add(a, json_object_new_string("s1"));
		return a;
	}
	char *s = malloc(n + 1);
	memset(s, 'a', n);
	s[0] = strcmp(f->name, "base") == 0 ? '/' : 'a';
	s[n] = '\0';
	json_object *v = json_object_new_string(s);
	free(s);
	return v;
}

static int ref_parse(const struct ref_body *b, json_object *o, char *err, size_t errlen)
{
	struct api_req r;
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	int st = parse(b->method, b->uri, text, &r, err, errlen);
	api_req_free(&r);
	return st;
}

static void test_field_tables(void)
{
	char err[512], want[256];
	for (size_t i = 0; i < sizeof(ref_bodies) / sizeof(ref_bodies[0]); i++) {
		const struct ref_body *b = &ref_bodies[i];
		json_object *base = json_tokener_parse(b->base);
		CHECK_MSG(ref_parse(b, base, err, sizeof(err)) == 0, "%s %s %s: %s", b->method,
			  b->uri, b->base, err);
		for (const struct ref_field *f = b->fields; f->name; f++) {
			json_object *o = NULL;
			json_object_deep_copy(base, &o, NULL);
			json_object_object_add(o, f->name, ref_value(f, false));
			CHECK_MSG(ref_parse(b, o, err, sizeof(err)) == 0, "%s %s: %s at %lu: %s",
				  b->method, b->uri, f->name, f->max, err);
			json_object_object_add(o, f->name, ref_value(f, true));
			CHECK(ref_parse(b, o, err, sizeof(err)) == 400);
			if (f->type == 's')
				snprintf(want, sizeof(want), "field '%s' is longer than %lu",
					 f->name, f->max);
			else if (f->type == 'a')
				snprintf(want, sizeof(want),
					 "field '%s' must be an array of at most %lu names",
					 f->name, f->max);
			else
				snprintf(want, sizeof(want), "field '%s' must be an integer 0..%lu",
					 f->name, f->max);
			CHECK_MSG(check_streq(err, want), "%s %s: '%s', not '%s'", b->method,
				  b->uri, err, want);
			if (f->type == 'n') {
				json_object_object_add(o, f->name, NULL);
				CHECK(ref_parse(b, o, err, sizeof(err)) == 0);
			}
			json_object_object_del(o, f->name);
			int st = ref_parse(b, o, err, sizeof(err));
			snprintf(want, sizeof(want), "missing field '%s'", f->name);
			if (f->required)
				CHECK_MSG(st == 400 && check_streq(err, want), "%s %s: '%s'",
					  b->method, b->uri, err);
			else
				CHECK_MSG(st == 0, "%s %s: without %s: %s", b->method, b->uri,
					  f->name, err);
			json_object_put(o);
		}
		/* the record's other fields are not given here */
		for (size_t k = 0; b->rec && k < b->rec->n; k++) {
			const char *key = b->rec->fields[k].key;
			bool listed = false;
			for (const struct ref_field *f = b->fields; f->name; f++)
				listed = listed || strcmp(f->name, key) == 0;
			if (listed)
				continue;
			json_object *o = NULL;
			json_object_deep_copy(base, &o, NULL);
			json_object_object_add(o, key, json_object_new_int(1));
			snprintf(want, sizeof(want), "unknown field '%s'", key);
			CHECK_MSG(ref_parse(b, o, err, sizeof(err)) == 400 &&
				      check_streq(err, want),
				  "%s %s: %s: '%s'", b->method, b->uri, key, err);
			json_object_put(o);
		}
		json_object_put(base);
	}
	/* a record's API text always fits its member (rec_from_json never truncates) */
	const struct rec_table *recs[] = {&rec_images, &rec_apps};
	for (size_t t = 0; t < 2; t++)
		for (size_t k = 0; k < recs[t]->n; k++) {
			const struct rec_field *f = &recs[t]->fields[k];
			if (f->api != REC_API_NO && f->kind == REC_TEXT)
				CHECK_MSG(f->max < f->size, "%s", f->key);
			if (f->api != REC_API_NO && f->kind == REC_UINT)
				CHECK_MSG(f->max <= 0xffffffffu, "%s", f->key);
		}
}

/* Every route is reached by its own method and path, and refuses other methods. */
static void test_table(void)
{
	char err[512];
	for (int i = 0; i < API_ROUTE_COUNT; i++) {
		char uri[128] = "", *w = uri;
		const char *p = api_route_path((enum api_route)i);
		bool has_param = false;
		while (*p) {
			if (*p == ':') {
				has_param = true;
				w += snprintf(w, 8, "x");
				while (*p && *p != '/')
					p++;
			} else {
				*w++ = *p++;
			}
		}
		*w = '\0';
		struct api_req r;
		int st =
		    parse(api_route_method((enum api_route)i), uri, NULL, &r, err, sizeof(err));
		CHECK_MSG(r.route == i && (st == 0 || st == 400), "%s %s: route %d status %d",
			  api_route_method((enum api_route)i), uri, r.route, st);
		CHECK_MSG((r.param != API_P_NONE) == has_param &&
			      (!has_param || !strcmp(r.name, "x")),
			  "%s: param", uri);
		api_req_free(&r);
		st = parse("PATCH", uri, NULL, &r, err, sizeof(err));
		CHECK_MSG(st == 405 && r.route == API_NONE && err[0], "PATCH %s: %d", uri, st);
		CHECK_MSG((r.param != API_P_NONE) == has_param, "PATCH %s: param", uri);
	}
	CHECK(api_route_method(API_NONE) == NULL && api_route_path(API_ROUTE_COUNT) == NULL);
	CHECK(!api_route_has_body(API_NONE));

	/* every state the broker names can be waited on */
	for (int st = BRK_QUEUED; st <= BRK_ENDED; st++) {
		char uri[80];
		struct api_req r;
		snprintf(uri, sizeof(uri), "/v1/sessions/s?wait=%s", brk_state_name(st));
		CHECK_MSG(parse("GET", uri, NULL, &r, err, sizeof(err)) == 0 && r.wait &&
			      r.wait_state == (enum brk_state)st,
			  "%s: %s", uri, err);
	}
}

/* Who may call what: every route, every role, with and without the session's grant. */
static void test_refusals(void)
{
	for (int r = 0; r < API_ROUTE_COUNT; r++) {
		enum api_who who = api_route_who((enum api_route)r);
		for (int g = 0; g < 2; g++) {
			CHECK(!api_refusal(API_ROLE_ADMIN, (enum api_route)r, g));
			CHECK(api_refusal(API_ROLE_NONE, (enum api_route)r, g));
			bool ok = who == API_WHO_ANY || who == API_WHO_USER ||
				  (who == API_WHO_GRANT && g);
			CHECK_MSG(!api_refusal(API_ROLE_GATEWAY, (enum api_route)r, g) == ok,
				  "gateway %s %s grant %d", api_route_method((enum api_route)r),
				  api_route_path((enum api_route)r), g);
		}
	}
	/* the gateway's whole reach, spelled out */
	static const enum api_route gateway[] = {API_AUTH, API_CONNECT, API_LEASE};
	static const enum api_route granted[] = {API_SESSION, API_ATTACH, API_DETACH, API_GUEST,
						 API_ACTIVITY};
	/* the portal's, for a signed-in user's token (the handlers check it) */
	static const enum api_route user[] = {API_ME, API_SIGNOUT, API_MY_END, API_MY_LAUNCH};
	for (size_t i = 0; i < ARRAY_LEN(user); i++)
		CHECK(api_route_who(user[i]) == API_WHO_USER);
	for (size_t i = 0; i < ARRAY_LEN(gateway); i++)
		CHECK(api_route_who(gateway[i]) == API_WHO_ANY);
	for (size_t i = 0; i < ARRAY_LEN(granted); i++)
		CHECK(api_route_who(granted[i]) == API_WHO_GRANT);
	unsigned admin_only = 0;
	for (int r = 0; r < API_ROUTE_COUNT; r++)
		admin_only += api_route_who((enum api_route)r) == API_WHO_ADMIN;
	CHECK(admin_only == (unsigned)API_ROUTE_COUNT - ARRAY_LEN(gateway) - ARRAY_LEN(granted) -
				ARRAY_LEN(user));
	/* a sign-in token goes with the USER routes only, and must look like one */
	struct api_req t;
	char terr[256];
	CHECK(api_parse("GET", "/v1/me?token=00ff", NULL, 0, &t, terr, sizeof(terr)) == 0 &&
	      !strcmp(t.token, "00ff"));
	api_req_free(&t);
	CHECK(api_parse("GET", "/v1/me?token=zz", NULL, 0, &t, terr, sizeof(terr)) == 400);
	CHECK(api_parse("GET", "/v1/sessions/abc?token=00ff", NULL, 0, &t, terr, sizeof(terr)) ==
		  0 &&
	      !t.token[0]);
	api_req_free(&t);
	CHECK(api_parse("DELETE", "/v1/me/abc?token=00ff", NULL, 0, &t, terr, sizeof(terr)) == 0 &&
	      t.route == API_MY_END && t.param == API_P_SESSION && !strcmp(t.name, "abc"));
	api_req_free(&t);
	CHECK(api_parse("PUT", "/v1/me", NULL, 0, &t, terr, sizeof(terr)) == 405);
	CHECK(api_parse("POST", "/v1/me/launch/ledger?token=00ff", NULL, 0, &t, terr,
			sizeof(terr)) == 0 &&
	      t.route == API_MY_LAUNCH && t.param == API_P_APP && !strcmp(t.name, "ledger"));
	api_req_free(&t);
	CHECK(api_parse("GET", "/v1/me/launch/ledger", NULL, 0, &t, terr, sizeof(terr)) == 405);
	/* a grant goes with the session routes only, and must look like one */
	struct api_req q;
	char err[256];
	CHECK(api_parse("GET", "/v1/sessions/abc?grant=0123abcd", NULL, 0, &q, err, sizeof(err)) ==
		  0 &&
	      !strcmp(q.grant, "0123abcd"));
	api_req_free(&q);
	CHECK(api_parse("GET", "/v1/sessions/abc?grant=XYZ", NULL, 0, &q, err, sizeof(err)) == 400);
	api_req_free(&q);
	CHECK(api_parse("GET", "/v1/images?grant=0123", NULL, 0, &q, err, sizeof(err)) == 0 &&
	      !q.grant[0]);
	api_req_free(&q);
}

int main(void)
{
	test_refusals();
	run_cases();
	test_values();
	test_limits();
	test_field_tables();
	test_table();
	return check_done("test_api_parse");
}
