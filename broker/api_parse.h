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
#define API_END_IN_MAX_S (7 * 24 * 3600) /* an announced end at most this far off */
#define API_MESSAGE_MAX 200		 /* bytes of an end's message */

/*
 * The routes: X(route, method, path, body, handler, who). The first row whose
 * method and path match a request is its route. A path segment ":what" is
 * a path parameter: a name (util_name_valid), as every third segment is.
 * BODY names the field table the body is validated against (NONE: the body
 * is not read); HANDLER is api.c's h_HANDLER. A path that matches rows but
 * none with its method is refused by api_parse.c's refusals table. WHO is
 * who may call it (api.c tells callers apart by SO_PEERCRED): ADMIN only
 * administrators; ANY administrators and the gateway; GRANT administrators,
 * and the gateway with the session's grant (?grant=TOKEN, handed out by
 * CONNECT); USER administrators and the gateway (the portal) acting for a
 * signed-in user (?token=TOKEN, handed out by AUTH; the handler checks it).
 */
/* clang-format off */
#define API_ROUTES(X)                                                                                     \
	X(STATUS,       GET,    "/v1/status",                       NONE,      status,         ADMIN)     \
	X(AUTH,         POST,   "/v1/auth",                         AUTH,      auth,           ANY)       \
	X(SESSIONS,     GET,    "/v1/sessions",                     NONE,      sessions,       ADMIN)     \
	X(CONNECT,      POST,   "/v1/sessions",                     CONNECT,   connect,        ANY)       \
	X(SESSION,      GET,    "/v1/sessions/:session",            NONE,      session,        GRANT)     \
	X(SESSION_END,  DELETE, "/v1/sessions/:session",            NONE,      session_end,    ADMIN)     \
	X(ATTACH,       POST,   "/v1/sessions/:session/attach",     ATTACH,    attach,         GRANT)     \
	X(DETACH,       POST,   "/v1/sessions/:session/detach",     NONE,      detach,         GRANT)     \
	X(SCREENDUMP,   POST,   "/v1/sessions/:session/screendump", NONE,      screendump,     ADMIN)     \
	X(GUEST,        GET,    "/v1/sessions/:session/guest",      NONE,      guest,          GRANT)     \
	X(ACTIVITY,     POST,   "/v1/sessions/:session/activity",   NONE,      activity,       GRANT)     \
	X(LEASE,        POST,   "/v1/gateways/:gateway/lease",      LEASE,     lease,          ANY)       \
	X(ACCEL,        GET,    "/v1/accel",                        NONE,      accel,          ADMIN)     \
	X(ACCEL_PROBE,  POST,   "/v1/accel/probe",                  NONE,      accel_probe,    ADMIN)     \
	X(CAPS,         GET,    "/v1/caps",                         NONE,      status,         ADMIN)     \
	X(CAPS_SET,     PUT,    "/v1/caps",                         CAPS,      caps_set,       ADMIN)     \
	X(USER_CAPS,    GET,    "/v1/users/caps",                   NONE,      user_caps,      ADMIN)     \
	X(USER_CAP_SET, PUT,    "/v1/users/:user/caps",             USER_CAP,  user_cap_set,   ADMIN)     \
	X(IMAGES,       GET,    "/v1/images",                       NONE,      images,         ADMIN)     \
	X(IMAGE_ADD,    POST,   "/v1/images",                       IMAGE_ADD, image_add,      ADMIN)     \
	X(IMAGE,        GET,    "/v1/images/:image",                NONE,      image,          ADMIN)     \
	X(IMAGE_SET,    PUT,    "/v1/images/:image",                IMAGE_SET, image_set,      ADMIN)     \
	X(IMAGE_REMOVE, DELETE, "/v1/images/:image",                NONE,      image_remove,   ADMIN)     \
	X(TEMPLATE,     POST,   "/v1/images/:image/template",       NONE,      template_build, ADMIN)     \
	X(APPS,         GET,    "/v1/apps",                         NONE,      apps,           ADMIN)     \
	X(APP_ADD,      POST,   "/v1/apps",                         APP_ADD,   app_add,        ADMIN)     \
	X(APP_REMOVE,   DELETE, "/v1/apps/:app",                    NONE,      app_remove,     ADMIN)     \
	X(AUDIT,        GET,    "/v1/audit",                        NONE,      audit,          ADMIN)     \
	X(HOSTS,        GET,    "/v1/hosts",                        NONE,      hosts,          ADMIN)     \
	X(FLEET_SESSIONS, GET,  "/v1/fleet/sessions",               NONE,      hosts,          ADMIN)     \
	X(FLEET_IMPORT, POST,   "/v1/fleet/import",                 NONE,      hosts,          ADMIN)     \
	X(HOST_DRAIN,   POST,   "/v1/hosts/:host/drain",            NONE,      host_drain,     ADMIN)     \
	X(HOST_UNDRAIN, POST,   "/v1/hosts/:host/undrain",          NONE,      host_drain,     ADMIN)     \
	X(ME,           GET,    "/v1/me",                           NONE,      me,             USER)      \
	X(SIGNOUT,      DELETE, "/v1/me",                           NONE,      signout,        USER)      \
	X(MY_END,       DELETE, "/v1/me/:session",                  NONE,      my_end,         USER)      \
	X(MY_LAUNCH,    POST,   "/v1/me/launch/:app",               NONE,      my_launch,      USER)
/* clang-format on */

#define API_ROUTE_ENUM(route, method, path, body, handler, who) API_##route,
enum api_route { API_NONE = -1, API_ROUTES(API_ROUTE_ENUM) API_ROUTE_COUNT };
#undef API_ROUTE_ENUM

enum api_who { API_WHO_ANY, API_WHO_GRANT, API_WHO_ADMIN, API_WHO_USER };
/* Who a caller is (api_socket.c finds out). */
enum api_role { API_ROLE_NONE, API_ROLE_GATEWAY, API_ROLE_ADMIN };

/* What the path parameter names. */
enum api_param {
	API_P_NONE,
	API_P_SESSION,
	API_P_GATEWAY,
	API_P_USER,
	API_P_IMAGE,
	API_P_APP,
	API_P_HOST
};

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
	unsigned ended;			   /* GET /v1/sessions?ended=N (0: the live ones) */
	bool wait;			   /* GET /v1/sessions/ID?wait=STATE&timeout=S */
	enum brk_state wait_state;	   /* ...answer once no longer in it */
	unsigned timeout;		   /* ...or after this many seconds (default 30) */
	unsigned limit;			   /* GET /v1/audit?limit=N (default 50) */
	unsigned end_in;		   /* DELETE /v1/sessions/ID?in=SECONDS (0: now) */
	char message[API_MESSAGE_MAX + 1]; /* ...&message=TEXT: printable UTF-8 ("" none) */
	json_object *body;		   /* owned; validated; NULL when the route reads no body */
	char grant[65];			   /* GRANT routes: ?grant=TOKEN (hex; "" none) */
	char token[65];			   /* USER routes: ?token=TOKEN (hex; "" none) */
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
enum api_who api_route_who(enum api_route r);
/*
 * Whether ROLE may call route R; GRANTED: the request carries the grant of
 * the session it names. NULL if it may, else why not (static text).
 */
const char *api_refusal(enum api_role role, enum api_route r, bool granted);

#endif
