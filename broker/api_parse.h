/*
 * The API's requests as data: a method, a URI and a body in, the route and
 * its validated parameters out, or the HTTP status and message to answer.
 * The route table is API_ROUTES below: api_parse.c takes its patterns and
 * field tables from it, api.c its handlers. Pure: no evhttp request, no
 * sockets, no clock, no broker state; table-tested (tests/unit/
 * test_api_parse.c) and fuzzed (tests/fuzz/fuzz_api.c).
 */
#ifndef NESTOR_API_PARSE_H
#define NESTOR_API_PARSE_H

#include "states.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define API_BODY_MAX (64 * 1024)
#define API_JSON_DEPTH 16
#define API_WAIT_MAX_S 60

/*
 * The routes: X(route, method, path, body, handler). The first row whose
 * method and path match a request is its route. A path segment ":what" is
 * a path parameter: a name (util_name_valid), as every third segment is.
 * BODY names the field table the body is validated against (NONE: the body
 * is not read); HANDLER is api.c's h_HANDLER. A path that matches rows but
 * none with its method is refused by api_parse.c's refusals table.
 */
/* clang-format off */
#define API_ROUTES(X)                                                                            \
	X(STATUS,       GET,    "/v1/status",                       NONE,      status)           \
	X(AUTH,         POST,   "/v1/auth",                         AUTH,      auth)             \
	X(SESSIONS,     GET,    "/v1/sessions",                     NONE,      sessions)         \
	X(CONNECT,      POST,   "/v1/sessions",                     CONNECT,   connect)          \
	X(SESSION,      GET,    "/v1/sessions/:session",            NONE,      session)          \
	X(SESSION_END,  DELETE, "/v1/sessions/:session",            NONE,      session_end)      \
	X(ATTACH,       POST,   "/v1/sessions/:session/attach",     ATTACH,    attach)           \
	X(DETACH,       POST,   "/v1/sessions/:session/detach",     NONE,      detach)           \
	X(SCREENDUMP,   POST,   "/v1/sessions/:session/screendump", NONE,      screendump)       \
	X(GUEST,        GET,    "/v1/sessions/:session/guest",      NONE,      guest)            \
	X(ACTIVITY,     POST,   "/v1/sessions/:session/activity",   NONE,      activity)         \
	X(LEASE,        POST,   "/v1/gateways/:gateway/lease",      LEASE,     lease)            \
	X(ACCEL,        GET,    "/v1/accel",                        NONE,      accel)            \
	X(ACCEL_PROBE,  POST,   "/v1/accel/probe",                  NONE,      accel_probe)      \
	X(CAPS,         GET,    "/v1/caps",                         NONE,      status)           \
	X(CAPS_SET,     PUT,    "/v1/caps",                         CAPS,      caps_set)         \
	X(USER_CAPS,    GET,    "/v1/users/caps",                   NONE,      user_caps)        \
	X(USER_CAP_SET, PUT,    "/v1/users/:user/caps",             USER_CAP,  user_cap_set)     \
	X(IMAGES,       GET,    "/v1/images",                       NONE,      images)           \
	X(IMAGE_ADD,    POST,   "/v1/images",                       IMAGE_ADD, image_add)        \
	X(IMAGE,        GET,    "/v1/images/:image",                NONE,      image)            \
	X(IMAGE_SET,    PUT,    "/v1/images/:image",                IMAGE_SET, image_set)        \
	X(IMAGE_REMOVE, DELETE, "/v1/images/:image",                NONE,      image_remove)     \
	X(TEMPLATE,     POST,   "/v1/images/:image/template",       NONE,      template_build)   \
	X(APPS,         GET,    "/v1/apps",                         NONE,      apps)             \
	X(APP_ADD,      POST,   "/v1/apps",                         APP_ADD,   app_add)          \
	X(APP_REMOVE,   DELETE, "/v1/apps/:app",                    NONE,      app_remove)       \
	X(AUDIT,        GET,    "/v1/audit",                        NONE,      audit)
/* clang-format on */

#define API_ROUTE_ENUM(route, method, path, body, handler) API_##route,
enum api_route { API_NONE = -1, API_ROUTES(API_ROUTE_ENUM) API_ROUTE_COUNT };
#undef API_ROUTE_ENUM

/* What the path parameter names. */
enum api_param { API_P_NONE, API_P_SESSION, API_P_GATEWAY, API_P_USER, API_P_IMAGE, API_P_APP };

struct api_req {
	/* API_NONE until method and path matched a route (still set if a later check failed) */
	enum api_route route;
	/*
	 * The path parameter and what it names. Set as soon as the path
	 * matched, even when the request then fails: a session route answers
	 * 404 for a session that does not exist before any other complaint.
	 */
	enum api_param param;
	char name[65];
	unsigned ended;		   /* GET /v1/sessions?ended=N (0: the live ones) */
	bool wait;		   /* GET /v1/sessions/ID?wait=STATE&timeout=S */
	enum brk_state wait_state; /* ...answer once no longer in it */
	unsigned timeout;	   /* ...or after this many seconds (default 30) */
	unsigned limit;		   /* GET /v1/audit?limit=N (default 50) */
	json_object *body;	   /* owned; validated; NULL when the route reads no body */
};

/*
 * Parse one request: METHOD ("GET", "POST", ...), URI (the request line's
 * target, e.g. "/v1/sessions/ID?wait=ready") and the body (LEN bytes, no
 * terminator needed; BODY may be NULL when LEN is 0). Returns 0 with OUT
 * filled, or the HTTP status to answer (400, 404, 405, 413) with ERR the
 * message; OUT is always initialised, so api_req_free may follow either.
 */
int api_parse(const char *method, const char *uri, const char *body, size_t len,
	      struct api_req *out, char *err, size_t errlen);
/* Free what REQ holds (not REQ): the body, its secret strings wiped first. */
void api_req_free(struct api_req *req);

/* A route's method and path pattern, and whether it reads a body. */
const char *api_route_method(enum api_route r);
const char *api_route_path(enum api_route r);
bool api_route_has_body(enum api_route r);

#endif
