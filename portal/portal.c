/*
 * nestor-portal: where users find their apps. HTTPS (evhttp over OpenSSL
 * bufferevents, the gateway's certificate): sign in, see your apps and
 * sessions, download an .rdp file per app, end your own session, and the
 * RD web feed Windows' RemoteApp and Desktop Connections subscribes to.
 *
 * It checks nothing itself: passwords (and one-time codes) go to nestord,
 * which runs PAM with its throttle and audit and hands back a sign-in
 * token; the portal keeps that token in the user's cookie (HttpOnly,
 * Secure, SameSite=Strict) and acts for that user only through nestord's
 * USER routes. HTTP Basic (the feed, .rdp files) signs in the same way,
 * with the token kept for a few minutes under a keyed hash of the
 * credentials. One event loop; nestord's answers are read as they arrive
 * (httpc calls watched by the loop); nothing blocks. Runs unprivileged
 * (the gateway's user: the API's gateway role, the certificate's key).
 */
#include "nestor-config.h"
#include "boot.h"
#include "draw.h"
#include "gwconfig.h"
#include "httpc.h"
#include "icon.h"
#include "log.h"
#include "pages.h"
#include "util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define CALL_TIMEOUT_S 15 /* nestord answers by then (PAM's failure delay included) */
#define INFLIGHT_MAX 512  /* requests waiting on nestord; more get 503 */
#define BODY_MAX 8192
#define HEADERS_MAX 16384
#define BASIC_CACHE 256
#define BASIC_KEEP_S 300 /* a Basic sign-in is reused this long */
#define FEED_PATH "/RDWeb/Feed/webfeed.aspx"

static const char usage[] =
    "usage: nestor-portal [--config FILE] [--log-level LEVEL]\n"
    "\n"
    "The nestor web portal over HTTPS: users sign in (through nestord and\n"
    "PAM), see their apps and sessions, download an .rdp file per app, end\n"
    "their own sessions; Windows' RemoteApp and Desktop Connections reads\n"
    "the apps from the RD web feed at " FEED_PATH ".\n"
    "Reads the gateway's configuration file: its [portal] section, and the\n"
    "gateway's certificate, api_socket, port and user.\n"
    "\n"
    "  -c, --config FILE    configuration (default " NESTOR_SYSCONFDIR "/nestor/gateway.conf;\n"
    "                       a missing default file means built-in defaults)\n"
    "  -l, --log-level LVL  err, warn, info or debug\n"
    "  -V, --version        print the version and exit\n"
    "  -h, --help           this text\n"
    "\n"
    "See docs/portal.md.\n";

struct basic {
	char key[65]; /* hex SHA-256 of the portal's secret, user and password; "" free */
	char token[65];
	int64_t until_ms;
};

struct portal {
	struct event_base *base;
	struct gw_config cfg;
	struct gw_font font;
	SSL_CTX *ssl;
	struct evhttp *http;
	char secret[65]; /* this run's key for CSRF tokens and the Basic cache */
	struct basic basic[BASIC_CACHE];
	unsigned inflight;
	int64_t started_s;
};

/* What a request waits on nestord for, and what it then does. */
enum want {
	W_HOME,	   /* GET /: the apps page */
	W_SIGNIN,  /* POST /signin */
	W_SIGNOUT, /* POST /signout */
	W_END,	   /* POST /end/ID */
	W_RDP,	   /* GET /rdp/ALIAS.rdp */
	W_FEED,	   /* GET FEED_PATH */
	W_ICON,	   /* GET /icon/ALIAS.png|ico */
	W_LAUNCH,  /* GET /launch/ALIAS: the browser client with a launch ticket */
};

struct preq {
	struct portal *pt;
	struct evhttp_request *req; /* the request, answered once (then NULL) */
	bool gone;		    /* its client went away: it is only freed */
	enum want want;
	bool basic;	/* signed in by HTTP Basic: sign in first, then the call */
	bool ico;	/* W_ICON: .ico, else .png */
	char user[65];	/* W_SIGNIN: as typed, for the form again */
	char name[65];	/* the app alias or session id of the path */
	char token[65]; /* the sign-in token */
	char key[65];	/* basic: the cache key */
	char host[256]; /* the request's Host header's name, checked */
	struct httpc_call call;
	struct event *ev, *timer;
	char *auth_body; /* basic: the sign-in to send (wiped) */
};

/* --- small helpers --- */

static void hex_digest(const void *a, size_t alen, const void *b, size_t blen, const void *c,
		       size_t clen, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_MD_CTX *x = EVP_MD_CTX_new();
	if (!x || !EVP_DigestInit_ex(x, EVP_sha256(), NULL) || !EVP_DigestUpdate(x, a, alen) ||
	    !EVP_DigestUpdate(x, "\n", 1) || !EVP_DigestUpdate(x, b, blen) ||
	    !EVP_DigestUpdate(x, "\n", 1) || !EVP_DigestUpdate(x, c, clen) ||
	    !EVP_DigestFinal_ex(x, md, &n))
		memset(md, 0, sizeof(md));
	EVP_MD_CTX_free(x);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The CSRF token of a sign-in: forms carry it, POSTs must bring it back. */
static void csrf_of(const struct portal *pt, const char *token, char out[65])
{
	hex_digest(pt->secret, strlen(pt->secret), "csrf", 4, token, strlen(token), out);
}

static void security_headers(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Strict-Transport-Security", "max-age=31536000");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Referrer-Policy", "same-origin");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	/* pages have no scripts; the browser client's page says what it needs itself */
	if (!evhttp_find_header(h, "Content-Security-Policy"))
		evhttp_add_header(h, "Content-Security-Policy",
				  "default-src 'none'; style-src 'self'; img-src 'self'; "
				  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
}

static void send_buf(struct evhttp_request *req, int code, const char *reason, const char *type,
		     struct evbuffer *b)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	security_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	if (!evhttp_find_header(h, "Cache-Control"))
		evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, b);
}

static void send_page(struct evhttp_request *req, int code, const char *reason, struct evbuffer *b)
{
	send_buf(req, code, reason, "text/html; charset=utf-8", b);
}

static void send_message(struct portal *pt, struct evhttp_request *req, int code,
			 const char *reason, const char *heading, const char *msg)
{
	struct evbuffer *b = evbuffer_new();
	if (b)
		pt_page_message(b, pt->cfg.portal.title, heading, msg);
	send_page(req, code, reason, b);
	if (b)
		evbuffer_free(b);
}

static void redirect_home(struct evhttp_request *req, const char *cookie)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	if (cookie)
		evhttp_add_header(h, "Set-Cookie", cookie);
	evhttp_add_header(h, "Location", "/");
	security_headers(req);
	evhttp_send_reply(req, 303, "See Other", NULL);
}

static void set_cookie(char *out, size_t len, const char *token, unsigned max_age)
{
	snprintf(out, len, PT_COOKIE "=%s; Path=/; Max-Age=%u; Secure; HttpOnly; SameSite=Strict",
		 token, max_age);
}

static const char *CLEAR_COOKIE =
    PT_COOKIE "=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict";

static void ask_credentials(struct portal *pt, struct evhttp_request *req, const char *msg)
{
	char h[160];
	snprintf(h, sizeof(h), "Basic realm=\"%.64s\", charset=\"UTF-8\"", pt->cfg.portal.title);
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", h);
	send_message(pt, req, 401, "Unauthorized", "Sign in", msg);
}

/* The peer's address, for nestord's throttle and audit. */
static void peer(struct evhttp_request *req, char *out, size_t len)
{
	char *addr = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
	snprintf(out, len, "%s", addr ? addr : "");
}

/* --- requests waiting on nestord --- */

static void preq_free(struct preq *p)
{
	/* libevent keeps a request whose connection failed for us to free */
	if (p->req && p->gone)
		evhttp_request_free(p->req);
	else if (p->req)
		evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
	httpc_call_cancel(&p->call);
	if (p->ev)
		event_free(p->ev);
	if (p->timer)
		event_free(p->timer);
	if (p->auth_body) {
		explicit_bzero(p->auth_body, strlen(p->auth_body));
		free(p->auth_body);
	}
	p->pt->inflight--;
	explicit_bzero(p, sizeof(*p));
	free(p);
}

static void on_client_gone(struct evhttp_connection *c, void *arg)
{
	struct preq *p = arg;
	p->gone = true; /* the answer from nestord is dropped, the request freed */
}

static void on_call(evutil_socket_t fd, short what, void *arg);

static int call(struct preq *p, const char *method, const char *path, const char *body)
{
	if (p->ev) {
		event_free(p->ev);
		p->ev = NULL;
	}
	int r = httpc_call_start(&p->call, p->pt->cfg.api_socket, method, path, body);
	if (r < 0)
		return r;
	p->ev = event_new(p->pt->base, p->call.fd, EV_READ | EV_PERSIST, on_call, p);
	struct timeval tv = {CALL_TIMEOUT_S, 0};
	if (!p->ev || event_add(p->ev, NULL) < 0 || evtimer_add(p->timer, &tv) < 0) {
		httpc_call_cancel(&p->call);
		return -ENOMEM;
	}
	return 0;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct preq *p = arg;
	if (!p->gone)
		send_message(p->pt, p->req, 503, "Service Unavailable", "Please try again",
			     "nestor's broker did not answer in time.");
	preq_free(p);
}

/* The token's nestord call for P's want (after the sign-in, for Basic). */
static int call_for(struct preq *p)
{
	char path[256];
	switch (p->want) {
	case W_SIGNOUT:
		snprintf(path, sizeof(path), "/v1/me?token=%s", p->token);
		return call(p, "DELETE", path, NULL);
	case W_END:
		snprintf(path, sizeof(path), "/v1/me/%s?token=%s", p->name, p->token);
		return call(p, "DELETE", path, NULL);
	case W_LAUNCH:
		snprintf(path, sizeof(path), "/v1/me/launch/%s?token=%s", p->name, p->token);
		return call(p, "POST", path, NULL);
	default:
		snprintf(path, sizeof(path), "/v1/me?token=%s", p->token);
		return call(p, "GET", path, NULL);
	}
}

static const char *json_str(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
		   ? json_object_get_string(v)
		   : "";
}

/* The sign-in page again, as the answer to a sign-in nestord refused. */
static void signin_refused(struct preq *p, int st, json_object *o)
{
	struct evbuffer *b = evbuffer_new();
	bool code = !strcmp(json_str(o, "need"), "code");
	const char *msg = code	      ? "Enter the one-time code from your authenticator as well."
			  : st == 401 ? "Wrong user name, password or code."
			  : st == 429 ? "Too many failed sign-ins: try again in a few minutes."
			  : st == 403 ? json_str(o, "error")
				      : "Signing in is not possible right now: try again later.";
	if (b)
		pt_page_signin(b, p->pt->cfg.portal.title, p->user, msg, code);
	send_page(p->req, st == 401 || st == 403 || st == 429 ? st : 503,
		  st == 401   ? "Unauthorized"
		  : st == 403 ? "Forbidden"
		  : st == 429 ? "Too Many Requests"
			      : "Service Unavailable",
		  b);
	if (b)
		evbuffer_free(b);
}

static void basic_remember(struct portal *pt, const char *key, const char *token)
{
	int64_t now = util_now_ms();
	struct basic *slot = &pt->basic[0];
	for (unsigned i = 0; i < BASIC_CACHE; i++) {
		struct basic *c = &pt->basic[i];
		if (!c->key[0] || c->until_ms < now || !strcmp(c->key, key)) {
			slot = c;
			break;
		}
		if (c->until_ms < slot->until_ms)
			slot = c;
	}
	snprintf(slot->key, sizeof(slot->key), "%s", key);
	snprintf(slot->token, sizeof(slot->token), "%s", token);
	slot->until_ms = now + BASIC_KEEP_S * 1000;
}

static const char *basic_token(struct portal *pt, const char *key)
{
	int64_t now = util_now_ms();
	for (unsigned i = 0; i < BASIC_CACHE; i++)
		if (pt->basic[i].key[0] && pt->basic[i].until_ms >= now &&
		    util_secret_eq(pt->basic[i].key, key))
			return pt->basic[i].token;
	return NULL;
}

static void basic_forget(struct portal *pt, const char *key)
{
	for (unsigned i = 0; i < BASIC_CACHE; i++)
		if (!strcmp(pt->basic[i].key, key))
			memset(&pt->basic[i], 0, sizeof(pt->basic[i]));
}

/* nestord's /v1/me answered 200: what the user asked for. */
static void answer(struct preq *p, const char *body)
{
	struct portal *pt = p->pt;
	struct pt_me *me = malloc(sizeof(*me));
	struct evbuffer *b = evbuffer_new();
	if (!me || !b || pt_me_parse(body, strlen(body), me) < 0) {
		send_message(pt, p->req, 502, "Bad Gateway", "Something went wrong",
			     "nestor's broker sent an answer the portal does not understand.");
		goto out;
	}
	const struct pt_app *a =
	    p->want == W_RDP || p->want == W_ICON ? pt_me_app(me, p->name) : NULL;
	if ((p->want == W_RDP || p->want == W_ICON) && !a) {
		send_message(pt, p->req, 404, "Not Found", "No such app",
			     "There is no app of that name here.");
		goto out;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(p->req);
	switch (p->want) {
	case W_HOME: {
		char csrf[65], feed[512];
		csrf_of(pt, p->token, csrf);
		const char *at = p->host[0] ? p->host : pt->cfg.portal.listen;
		if (pt->cfg.portal.port == 443)
			snprintf(feed, sizeof(feed), "https://%s" FEED_PATH, at);
		else
			snprintf(feed, sizeof(feed), "https://%s:%u" FEED_PATH, at,
				 pt->cfg.portal.port);
		pt_page_apps(b, pt->cfg.portal.title, me, csrf, feed, pt->cfg.web_port != 0);
		send_page(p->req, 200, "OK", b);
		break;
	}
	case W_RDP: {
		char addr[300], disp[128];
		pt_rdp_address(pt->cfg.portal.rdp_address, p->host, pt->cfg.listen, pt->cfg.port,
			       addr, sizeof(addr));
		pt_rdp_file(b, a, addr, me->user);
		snprintf(disp, sizeof(disp), "attachment; filename=\"%s.rdp\"", a->alias);
		evhttp_add_header(h, "Content-Disposition", disp);
		send_buf(p->req, 200, "OK", "application/x-rdp", b);
		break;
	}
	case W_FEED: {
		char terminal[256];
		pt_host_name(pt->cfg.portal.rdp_address, terminal, sizeof(terminal));
		if (!terminal[0])
			snprintf(terminal, sizeof(terminal), "%s",
				 p->host[0] ? p->host : pt->cfg.listen);
		pt_feed(b, pt->cfg.portal.title, terminal, me, util_wall_s(), pt->started_s);
		send_buf(p->req, 200, "OK", "application/x-msts-radc+xml; charset=utf-8", b);
		break;
	}
	case W_ICON:
		if ((p->ico ? pt_icon_ico : pt_icon_png)(b, &pt->font, a->alias, a->title) < 0) {
			send_message(pt, p->req, 500, "Internal Server Error", "No icon",
				     "The icon could not be made.");
			break;
		}
		evhttp_add_header(h, "Cache-Control", "private, max-age=3600");
		send_buf(p->req, 200, "OK", p->ico ? "image/vnd.microsoft.icon" : "image/png", b);
		break;
	default:
		break;
	}
out:
	if (b)
		evbuffer_free(b);
	free(me);
}

/* The browser client's page: noVNC to the gateway's browser door, the ticket in the address. */
static void launch_page(struct preq *p, json_object *o)
{
	struct portal *pt = p->pt;
	const char *user = json_str(o, "user"), *app = json_str(o, "app");
	const char *ticket = json_str(o, "ticket"), *title = json_str(o, "title");
	if (!util_name_valid(user) || !util_name_valid(app) || strlen(ticket) != 64 ||
	    strspn(ticket, "0123456789abcdef") != 64 || !pt->cfg.web_port) {
		send_message(pt, p->req, 502, "Bad Gateway", "Something went wrong",
			     "nestor's broker sent an answer the portal does not understand.");
		return;
	}
	/* this host's own gateway: the ticket lives in this host's nestord (a fleet's
	 * rdp_address, HAProxy, may send the browser elsewhere) */
	char host[256], ws[600], csp[900];
	snprintf(host, sizeof(host), "%s", p->host[0] ? p->host : pt->cfg.listen);
	snprintf(ws, sizeof(ws), "wss://%s:%u/websockify?user=%s&app=%s&ticket=%s", host,
		 pt->cfg.web_port, user, app, ticket);
	snprintf(csp, sizeof(csp),
		 "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: "
		 "blob:; connect-src wss://%s:%u; form-action 'self'; frame-ancestors 'none'; "
		 "base-uri 'none'",
		 host, pt->cfg.web_port);
	struct evbuffer *b = evbuffer_new();
	if (b)
		pt_page_launch(b, pt->cfg.portal.title,
			       util_name_valid(app) && *title ? title : app, ws);
	evhttp_add_header(evhttp_request_get_output_headers(p->req), "Content-Security-Policy",
			  csp);
	send_page(p->req, 200, "OK", b);
	if (b)
		evbuffer_free(b);
	explicit_bzero(ws, sizeof(ws));
	log_info("launch: %s opens %s in the browser", user, app);
}

static void on_call(evutil_socket_t fd, short what, void *arg)
{
	struct preq *p = arg;
	struct portal *pt = p->pt;
	char *body = NULL;
	int st = httpc_call_read(&p->call, &body);
	if (st == 0)
		return; /* more to come */
	evtimer_del(p->timer);
	json_object *o = body ? json_tokener_parse(body) : NULL;
	if (p->gone)
		goto done;
	if (st < 0) {
		send_message(pt, p->req, 503, "Service Unavailable", "Please try again",
			     "nestor's broker is not answering.");
		goto done;
	}
	if (p->auth_body) { /* a sign-in (the form, or Basic before its call) answered */
		explicit_bzero(p->auth_body, strlen(p->auth_body));
		free(p->auth_body);
		p->auth_body = NULL;
		const char *token = json_str(o, "token");
		if (st != 200 || strlen(token) != 64) {
			if (p->want == W_SIGNIN)
				signin_refused(p, st, o);
			else if (st == 429)
				send_message(pt, p->req, 429, "Too Many Requests",
					     "Try again later", "Too many failed sign-ins.");
			else if (st == 401 && !strcmp(json_str(o, "need"), "code"))
				ask_credentials(
				    pt, p->req,
				    "This account needs a one-time code: sign in on the "
				    "portal's page instead.");
			else
				ask_credentials(pt, p->req, "Wrong user name or password.");
			goto done;
		}
		snprintf(p->token, sizeof(p->token), "%s", token);
		if (p->want == W_SIGNIN) {
			/* as long as a sign-in may live: nestord ends it sooner when it is idle */
			char cookie[256];
			set_cookie(cookie, sizeof(cookie), token, 12 * 3600);
			log_info("signed in: %s", p->user);
			redirect_home(p->req, cookie);
			goto done;
		}
		basic_remember(pt, p->key, token);
		if (call_for(p) < 0) {
			send_message(pt, p->req, 503, "Service Unavailable", "Please try again",
				     "nestor's broker is not answering.");
			goto done;
		}
		json_object_put(o);
		free(body);
		return;
	}
	if (st == 401) { /* the token ended: sign in again */
		if (p->basic) {
			basic_forget(pt, p->key);
			ask_credentials(pt, p->req, "Your sign-in ended: sign in again.");
		} else if (p->want == W_HOME) {
			struct evbuffer *b = evbuffer_new();
			if (b)
				pt_page_signin(b, pt->cfg.portal.title, "",
					       "Your sign-in ended: sign in again.", false);
			evhttp_add_header(evhttp_request_get_output_headers(p->req), "Set-Cookie",
					  CLEAR_COOKIE);
			send_page(p->req, 200, "OK", b);
			if (b)
				evbuffer_free(b);
		} else {
			redirect_home(p->req, CLEAR_COOKIE);
		}
		goto done;
	}
	if (p->want == W_SIGNOUT) {
		redirect_home(p->req, CLEAR_COOKIE);
	} else if (p->want == W_END) {
		if (st == 200)
			redirect_home(p->req, NULL);
		else if (st == 404 || st == 409)
			send_message(pt, p->req, 404, "Not Found", "No such session",
				     "That session is not yours, has ended, or runs elsewhere.");
		else
			send_message(pt, p->req, 503, "Service Unavailable", "Please try again",
				     json_str(o, "error"));
	} else if (p->want == W_LAUNCH) {
		if (st == 200)
			launch_page(p, o);
		else if (st == 404)
			send_message(pt, p->req, 404, "Not Found", "No such app",
				     "There is no app of that name here.");
		else
			send_message(pt, p->req, 503, "Service Unavailable", "Please try again",
				     json_str(o, "error"));
	} else if (st == 200 && body) {
		answer(p, body);
	} else {
		send_message(pt, p->req, 503, "Service Unavailable", "Please try again",
			     json_str(o, "error"));
	}
done:
	json_object_put(o);
	free(body);
	preq_free(p);
}

static struct preq *preq_new(struct portal *pt, struct evhttp_request *req, enum want want)
{
	if (pt->inflight >= INFLIGHT_MAX) {
		send_message(pt, req, 503, "Service Unavailable", "Busy",
			     "Too many requests at once: try again in a moment.");
		return NULL;
	}
	struct preq *p = calloc(1, sizeof(*p));
	if (!p) {
		send_message(pt, req, 503, "Service Unavailable", "Busy", "Out of memory.");
		return NULL;
	}
	p->pt = pt;
	p->req = req;
	p->want = want;
	p->call.fd = -1;
	pt->inflight++;
	p->timer = evtimer_new(pt->base, on_timeout, p);
	pt_host_name(evhttp_find_header(evhttp_request_get_input_headers(req), "Host"), p->host,
		     sizeof(p->host));
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_client_gone, p);
	if (!p->timer) {
		send_message(pt, req, 503, "Service Unavailable", "Busy", "Out of memory.");
		preq_free(p);
		return NULL;
	}
	return p;
}

/* POST /v1/auth for USER with PASSWORD (and CODE) into P's auth_body, then send it. */
static int sign_in(struct preq *p, const char *user, const char *password, const char *code)
{
	json_object *o = json_object_new_object();
	char client[64];
	peer(p->req, client, sizeof(client));
	json_object_object_add(o, "user", json_object_new_string(user));
	json_object_object_add(o, "password", json_object_new_string(password));
	if (code && *code)
		json_object_object_add(o, "code", json_object_new_string(code));
	json_object_object_add(o, "client", json_object_new_string(client));
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	p->auth_body = s ? strdup(s) : NULL;
	/* json-c keeps its own copies: wipe them before they go */
	json_object *v;
	if (json_object_object_get_ex(o, "password", &v))
		explicit_bzero((char *)json_object_get_string(v), strlen(password));
	if (s)
		explicit_bzero((char *)s, strlen(s));
	json_object_put(o);
	if (!p->auth_body)
		return -ENOMEM;
	return call(p, "POST", "/v1/auth", p->auth_body);
}

/* The user's sign-in: the cookie, or (ALLOW_BASIC) HTTP Basic. Starts P's call. */
static int authenticate(struct preq *p, bool allow_basic)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(p->req);
	if (pt_cookie_token(evhttp_find_header(in, "Cookie"), p->token))
		return call_for(p);
	char user[65], pass[257];
	if (!allow_basic ||
	    !pt_basic_parse(evhttp_find_header(in, "Authorization"), user, sizeof(user), pass,
			    sizeof(pass)) ||
	    !util_name_valid(user))
		return -EACCES;
	p->basic = true;
	hex_digest(p->pt->secret, strlen(p->pt->secret), user, strlen(user), pass, strlen(pass),
		   p->key);
	const char *t = basic_token(p->pt, p->key);
	int r;
	if (t) {
		snprintf(p->token, sizeof(p->token), "%s", t);
		r = call_for(p);
	} else {
		snprintf(p->user, sizeof(p->user), "%s", user);
		r = sign_in(p, user, pass, NULL);
	}
	explicit_bzero(pass, sizeof(pass));
	return r;
}

/* The form fields of a POST body (urlencoded), into Q; false if it is not one. */
static bool form(struct evhttp_request *req, struct evkeyvalq *q)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	char *s = malloc(n + 1);
	TAILQ_INIT(q);
	if (!s || n > BODY_MAX) {
		free(s);
		return false;
	}
	evbuffer_copyout(in, s, n);
	s[n] = '\0';
	unsigned char *kept = n ? evbuffer_pullup(in, -1) : NULL; /* a password may be in it */
	if (kept)
		explicit_bzero(kept, n);
	bool ok = strlen(s) == n && evhttp_parse_query_str(s, q) == 0;
	explicit_bzero(s, n);
	free(s);
	return ok;
}

static void wipe_form(struct evkeyvalq *q)
{
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, q, next)
	if (kv->value)
		explicit_bzero(kv->value, strlen(kv->value));
	evhttp_clear_headers(q);
}

/* A POST of the signed-in user's: the cookie's token, and the form's CSRF token for it. */
static bool post_ok(struct portal *pt, struct evhttp_request *req, struct preq *p)
{
	struct evkeyvalq q;
	bool ok = form(req, &q);
	char want[65];
	if (ok &&
	    pt_cookie_token(evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie"),
			    p->token)) {
		csrf_of(pt, p->token, want);
		ok = util_secret_eq(want, evhttp_find_header(&q, "csrf"));
	} else {
		ok = false;
	}
	wipe_form(&q);
	return ok;
}

static void do_signin(struct portal *pt, struct evhttp_request *req)
{
	struct evkeyvalq q;
	if (!form(req, &q)) {
		send_message(pt, req, 400, "Bad Request", "Sign in", "That form was not readable.");
		wipe_form(&q);
		return;
	}
	const char *user = evhttp_find_header(&q, "user"),
		   *pass = evhttp_find_header(&q, "password");
	const char *code = evhttp_find_header(&q, "code");
	if (!user || !pass || !util_name_valid(user) || !*pass || strlen(pass) > 256 ||
	    (code && strlen(code) > 64)) {
		struct evbuffer *b = evbuffer_new();
		if (b)
			pt_page_signin(b, pt->cfg.portal.title,
				       user && util_name_valid(user) ? user : "",
				       "Enter your user name and password.", code != NULL);
		send_page(req, 400, "Bad Request", b);
		if (b)
			evbuffer_free(b);
		wipe_form(&q);
		return;
	}
	struct preq *p = preq_new(pt, req, W_SIGNIN);
	if (p) {
		snprintf(p->user, sizeof(p->user), "%s", user);
		if (sign_in(p, user, pass, code) < 0) {
			send_message(pt, req, 503, "Service Unavailable", "Please try again",
				     "nestor's broker is not answering.");
			preq_free(p);
		}
	}
	wipe_form(&q);
}

/* "/PREFIX/NAME.EXT" with a valid NAME into OUT; false otherwise. */
static bool path_name(const char *path, const char *prefix, const char *ext, char *out, size_t len)
{
	size_t pl = strlen(prefix), el = strlen(ext), n = strlen(path);
	if (strncmp(path, prefix, pl) || n <= pl + el || strcmp(path + n - el, ext))
		return false;
	size_t nl = n - pl - el;
	if (nl >= len)
		return false;
	memcpy(out, path + pl, nl);
	out[nl] = '\0';
	return util_name_valid(out);
}

/*
 * noVNC's modules from its Debian package (novnc_dir): only .js files under
 * core/ and vendor/, names of plain characters, read once and kept.
 */
#define NOVNC_FILES 96
#define NOVNC_FILE_MAX (512 * 1024)
static struct {
	char path[128];
	char *data;
	size_t len;
} novnc[NOVNC_FILES];

static void novnc_file(struct portal *pt, struct evhttp_request *req, const char *rel)
{
	size_t n = strlen(rel);
	bool ok =
	    n > 3 && n < sizeof(novnc[0].path) && !strcmp(rel + n - 3, ".js") &&
	    (!strncmp(rel, "core/", 5) || !strncmp(rel, "vendor/", 7)) &&
	    strspn(rel, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") ==
		n &&
	    !strstr(rel, "..") && !strstr(rel, "//");
	if (!ok) {
		send_message(pt, req, 404, "Not Found", "Not found", "There is nothing here.");
		return;
	}
	unsigned i = 0;
	while (i < NOVNC_FILES && novnc[i].path[0] && strcmp(novnc[i].path, rel))
		i++;
	if (i == NOVNC_FILES || !novnc[i].path[0]) {
		char full[4200];
		char *data = NULL;
		size_t len = 0;
		snprintf(full, sizeof(full), "%.4000s/%s", pt->cfg.portal.novnc_dir, rel);
		/* a small local file, once: the loop waits for nothing else here */
		if (util_read_file(full, NOVNC_FILE_MAX, &data, &len) < 0) {
			send_message(pt, req, 404, "Not Found", "Not found",
				     "noVNC is not installed here (Debian's novnc package).");
			return;
		}
		if (i == NOVNC_FILES) { /* full: serve it, keep nothing */
			struct evbuffer *b = evbuffer_new();
			if (b)
				evbuffer_add(b, data, len);
			send_buf(req, 200, "OK", "text/javascript; charset=utf-8", b);
			if (b)
				evbuffer_free(b);
			free(data);
			return;
		}
		snprintf(novnc[i].path, sizeof(novnc[i].path), "%s", rel);
		novnc[i].data = data;
		novnc[i].len = len;
	}
	struct evbuffer *b = evbuffer_new();
	if (b)
		evbuffer_add_reference(b, novnc[i].data, novnc[i].len, NULL, NULL);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control",
			  "public, max-age=3600");
	send_buf(req, 200, "OK", "text/javascript; charset=utf-8", b);
	if (b)
		evbuffer_free(b);
}

/*
 * A POST from a page of this portal, not another site's form (login CSRF
 * and the like): what the browser says of where the request comes from,
 * Sec-Fetch-Site (same-origin, or none: typed by the user), else Origin
 * (https://HOST). Neither header: not a browser, let it through.
 */
static bool same_origin(struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *site = evhttp_find_header(in, "Sec-Fetch-Site");
	if (site)
		return !strcmp(site, "same-origin") || !strcmp(site, "none");
	const char *origin = evhttp_find_header(in, "Origin"),
		   *host = evhttp_find_header(in, "Host");
	if (!origin)
		return true;
	return host && !strncmp(origin, "https://", 8) && !strcmp(origin + 8, host);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct portal *pt = arg;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD, post = cmd == EVHTTP_REQ_POST;
	char name[65];
	enum want want;
	bool basic = false, ico = false;
	if (!path) {
		send_message(pt, req, 400, "Bad Request", "Bad request",
			     "That address is not valid.");
		return;
	}
	if (get && !strcmp(path, "/portal.css")) {
		struct evbuffer *b = evbuffer_new();
		if (b)
			evbuffer_add(b, pt_css(), strlen(pt_css()));
		evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control",
				  "public, max-age=3600");
		send_buf(req, 200, "OK", "text/css; charset=utf-8", b);
		if (b)
			evbuffer_free(b);
		return;
	}
	if (post && !same_origin(req)) {
		send_message(pt, req, 403, "Forbidden", "Not done",
			     "That form was sent from another site.");
		return;
	}
	if (post && !strcmp(path, "/signin")) {
		do_signin(pt, req);
		return;
	}
	if (get && !strcmp(path, "/launch.js")) {
		struct evbuffer *b = evbuffer_new();
		if (b)
			evbuffer_add(b, pt_launch_js(), strlen(pt_launch_js()));
		send_buf(req, 200, "OK", "text/javascript; charset=utf-8", b);
		if (b)
			evbuffer_free(b);
		return;
	}
	if (get && !strncmp(path, "/novnc/", 7)) {
		novnc_file(pt, req, path + 7);
		return;
	}
	if (get && !strcmp(path, "/")) {
		if (!pt_cookie_token(
			evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie"),
			name)) {
			struct evbuffer *b = evbuffer_new();
			if (b)
				pt_page_signin(b, pt->cfg.portal.title, "", NULL, false);
			send_page(req, 200, "OK", b);
			if (b)
				evbuffer_free(b);
			return;
		}
		want = W_HOME;
	} else if (post && (!strcmp(path, "/signout") ||
			    path_name(path, "/end/", "", name, sizeof(name)))) {
		struct preq *p = preq_new(pt, req, !strcmp(path, "/signout") ? W_SIGNOUT : W_END);
		if (!p)
			return;
		snprintf(p->name, sizeof(p->name), "%s", p->want == W_END ? name : "");
		if (!post_ok(pt, req, p)) {
			send_message(pt, req, 403, "Forbidden", "Not done",
				     "That form is out of date: go back, reload the page and try "
				     "again.");
			preq_free(p);
		} else if (call_for(p) < 0) {
			send_message(pt, req, 503, "Service Unavailable", "Please try again",
				     "nestor's broker is not answering.");
			preq_free(p);
		}
		return;
	} else if (get && pt->cfg.web_port && path_name(path, "/launch/", "", name, sizeof(name))) {
		want = W_LAUNCH;
		basic = true;
	} else if (get && path_name(path, "/rdp/", ".rdp", name, sizeof(name))) {
		want = W_RDP;
		basic = true;
	} else if (get && !strcasecmp(path, FEED_PATH)) {
		want = W_FEED;
		basic = true;
	} else if (get && (path_name(path, "/icon/", ".png", name, sizeof(name)) ||
			   (ico = path_name(path, "/icon/", ".ico", name, sizeof(name))))) {
		want = W_ICON;
		basic = true;
	} else if (!get && !post) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
				  "GET, HEAD, POST");
		send_message(pt, req, 405, "Method Not Allowed", "Not here",
			     "That method is not used here.");
		return;
	} else {
		send_message(pt, req, 404, "Not Found", "Not found", "There is nothing here.");
		return;
	}
	struct preq *p = preq_new(pt, req, want);
	if (!p)
		return;
	p->ico = ico;
	if (want != W_HOME && want != W_FEED)
		snprintf(p->name, sizeof(p->name), "%s", name);
	int r = authenticate(p, basic);
	if (r == -EACCES) {
		if (want == W_HOME)
			redirect_home(req, CLEAR_COOKIE);
		else
			ask_credentials(pt, req,
					"Sign in with your nestor user name and password.");
		preq_free(p);
	} else if (r < 0) {
		send_message(pt, req, 503, "Service Unavailable", "Please try again",
			     "nestor's broker is not answering.");
		preq_free(p);
	}
}

/* --- TLS and start-up --- */

static struct bufferevent *on_connection(struct event_base *base, void *arg)
{
	struct portal *pt = arg;
	SSL *ssl = SSL_new(pt->ssl);
	if (!ssl)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					      BEV_OPT_CLOSE_ON_FREE);
}

static int tls_setup(struct portal *pt, char *err, size_t errlen)
{
	char cert[4200], key[4200];
	if (pt->cfg.certificate[0]) {
		snprintf(cert, sizeof(cert), "%s", pt->cfg.certificate);
		snprintf(key, sizeof(key), "%s", pt->cfg.private_key);
	} else {
		snprintf(cert, sizeof(cert), "%.4000s/tls.crt", pt->cfg.state_dir);
		snprintf(key, sizeof(key), "%.4000s/tls.key", pt->cfg.state_dir);
	}
	pt->ssl = SSL_CTX_new(TLS_server_method());
	if (!pt->ssl)
		return snprintf(err, errlen, "cannot make a TLS context"), -ENOMEM;
	SSL_CTX_set_min_proto_version(pt->ssl, TLS1_2_VERSION);
	SSL_CTX_set_options(pt->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_cipher_list(pt->ssl, pt->cfg.tls_ciphers) != 1) {
		snprintf(err, errlen, "tls_ciphers: OpenSSL knows none of them");
		return -EINVAL;
	}
	if (SSL_CTX_use_certificate_chain_file(pt->ssl, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(pt->ssl, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(pt->ssl) != 1) {
		snprintf(err, errlen,
			 "cannot use certificate %.2000s with key %.2000s (nestor-gateway makes "
			 "them on its first start, or set certificate and private_key)",
			 cert, key);
		return -ENOENT;
	}
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct portal *pt = arg;
	log_info("signal %d: stopping", (int)sig);
	event_base_loopexit(pt->base, NULL);
}

int main(int argc, char **argv)
{
	const char *config = NULL, *level = NULL;
	const struct boot_opt opts[] = {
	    {"config", 'c', true, .str = &config}, {"log-level", 'l', true, .str = &level}, {0}};
	const struct boot_prog prog = {.name = "nestor-portal",
				       .usage = usage,
				       .version = NESTOR_VERSION,
				       .opts = opts,
				       .max_args = 0};
	int nargs, st = boot_parse(&prog, argc, argv, &nargs);
	if (st != BOOT_RUN)
		return st;
	static struct portal pt; /* the Basic cache: static */
	char err[4400];
	gw_config_defaults(&pt.cfg);
	if (boot_config(config, NESTOR_SYSCONFDIR "/nestor/gateway.conf", gw_config_boot_load,
			gw_config_boot_parse, &pt.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "nestor-portal: %s\n", err);
		return 1;
	}
	enum log_level lvl;
	if (log_level_parse(level ? level : pt.cfg.log_level, &lvl) < 0) {
		fprintf(stderr, "nestor-portal: bad log level\n");
		return 2;
	}
	log_init("nestor-portal", lvl);
	signal(SIGPIPE, SIG_IGN);
	if (gw_font_load(&pt.font, pt.cfg.font, err, sizeof(err)) < 0) {
		log_warn("%s: icons will show boxes instead of letters", err);
		gw_font_boxes(&pt.font);
	}
	if (tls_setup(&pt, err, sizeof(err)) < 0 || util_random_hex(pt.secret, 32) < 0) {
		log_err("%s", err);
		return 1;
	}
	pt.started_s = util_wall_s();
	pt.base = event_base_new();
	pt.http = pt.base ? evhttp_new(pt.base) : NULL;
	if (!pt.http)
		return 1;
	evhttp_set_bevcb(pt.http, on_connection, &pt);
	evhttp_set_gencb(pt.http, on_request, &pt);
	evhttp_set_max_headers_size(pt.http, HEADERS_MAX);
	evhttp_set_max_body_size(pt.http, BODY_MAX);
	evhttp_set_timeout(pt.http, 30);
	evhttp_set_allowed_methods(pt.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	if (!evhttp_bind_socket_with_handle(pt.http, pt.cfg.portal.listen,
					    (ev_uint16_t)pt.cfg.portal.port)) {
		log_err("cannot listen on %s:%u", pt.cfg.portal.listen, pt.cfg.portal.port);
		return 1;
	}
	if (util_become(pt.cfg.user, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return 1;
	}
	struct event *sigterm = evsignal_new(pt.base, SIGTERM, on_signal, &pt);
	struct event *sigint = evsignal_new(pt.base, SIGINT, on_signal, &pt);
	if (!sigterm || !sigint || event_add(sigterm, NULL) < 0 || event_add(sigint, NULL) < 0)
		return 1;
	log_info("nestor-portal %s listening on https://%s:%u/ (nestord at %s)", NESTOR_VERSION,
		 pt.cfg.portal.listen, pt.cfg.portal.port, pt.cfg.api_socket);
	sd_notify(0, "READY=1");
	event_base_dispatch(pt.base);
	sd_notify(0, "STOPPING=1");
	event_free(sigterm);
	event_free(sigint);
	evhttp_free(pt.http);
	event_base_free(pt.base);
	SSL_CTX_free(pt.ssl);
	gw_font_free(&pt.font);
	for (unsigned i = 0; i < NOVNC_FILES; i++)
		free(novnc[i].data);
	explicit_bzero(pt.secret, sizeof(pt.secret));
	return 0;
}
