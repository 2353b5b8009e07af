/*
 * What nestor-portal sends, pure: its HTML pages, the .rdp files, the RD
 * web feed, and the parsing of what it reads (nestord's /v1/me answer, a
 * cookie, HTTP Basic credentials, the Host header). Writes into evbuffers;
 * no sockets, no clock (times are arguments). Tested in
 * tests/unit/test_portal_pages.c.
 */
#ifndef NESTOR_PORTAL_PAGES_H
#define NESTOR_PORTAL_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define PT_APPS_MAX 256
#define PT_COOKIE "nestor_portal"

/* One app as its signed-in user sees it (nestord's GET /v1/me). */
struct pt_app {
	char alias[65], title[129];
	bool running;	       /* the user has a live session of it */
	char id[33];	       /* ... its id */
	char state[16];	       /* queued, starting, ready, connected, disconnected, ending */
	unsigned position;     /* queued: 1 is next */
	long long estimate_ms; /* queued: -1 unknown */
	long long ending_in_s; /* an announced end: seconds left; -1 none */
	char ending_msg[256];
};

struct pt_me {
	char user[65];
	unsigned queued; /* everyone waiting on this host */
	unsigned n;
	struct pt_app apps[PT_APPS_MAX];
};

/* nestord's /v1/me answer (LEN bytes) into ME, every field checked; 0 or -EPROTO. */
int pt_me_parse(const char *json, size_t len, struct pt_me *me);
/* The app ALIAS in ME, or NULL. */
const struct pt_app *pt_me_app(const struct pt_me *me, const char *alias);

/* S escaped for HTML or XML text and attributes (& < > " '). */
void pt_escape(struct evbuffer *b, const char *s);

/* The sign-in page: USER prefilled, MSG above the form ("" none), the code field if ASK_CODE. */
void pt_page_signin(struct evbuffer *b, const char *title, const char *user, const char *msg,
		    bool ask_code);
/*
 * The signed-in user's apps, with CSRF in each form; FEED_URL for Windows'
 * client; BROWSER: each app can also be opened in the browser (/launch/ALIAS).
 */
void pt_page_apps(struct evbuffer *b, const char *title, const struct pt_me *me, const char *csrf,
		  const char *feed_url, bool browser);
/*
 * The browser client's page for APP_TITLE: noVNC (launch.js) connects to
 * WS_URL, the gateway's browser door with the launch ticket in it.
 */
void pt_page_launch(struct evbuffer *b, const char *title, const char *app_title,
		    const char *ws_url);
/* The browser client's script (/launch.js), which imports noVNC from /novnc/. */
const char *pt_launch_js(void);
/* A page with a heading and a message (errors). */
void pt_page_message(struct evbuffer *b, const char *title, const char *heading, const char *msg);
/* The stylesheet (/portal.css). */
const char *pt_css(void);

/*
 * APP's .rdp file: RemoteApp mode, TLS (no NLA: nestor checks passwords
 * with PAM), the entry ADDRESS (HOST:PORT), USER's name prefilled, and
 * defaults that suit XP-era apps.
 */
void pt_rdp_file(struct evbuffer *b, const struct pt_app *app, const char *address,
		 const char *user);
/*
 * The RD web feed (MS-TSWP ResourceCollection, schema 1.1) of ME's apps:
 * PUBLISHER names the portal, TERMINAL the entry's host name; times are
 * UNIX seconds.
 */
void pt_feed(struct evbuffer *b, const char *publisher, const char *terminal,
	     const struct pt_me *me, int64_t now_s, int64_t updated_s);

/* The token in a Cookie header's PT_COOKIE (64 hex) into OUT; false if none. */
bool pt_cookie_token(const char *cookie, char out[65]);
/* "Basic BASE64(user:password)" into USER and PASS; false if malformed or too long. */
bool pt_basic_parse(const char *header, char *user, size_t ulen, char *pass, size_t plen);
/*
 * The address for .rdp files: CONFIGURED if set, else HOST's name (a Host
 * header, its port dropped) with GW_PORT; LISTEN if HOST is missing or
 * not a plain host name. Into OUT.
 */
void pt_rdp_address(const char *configured, const char *host, const char *listen, unsigned gw_port,
		    char *out, size_t len);
/* The host name of a Host header (no port), "" if it is not a plain name or address. */
void pt_host_name(const char *host, char *out, size_t len);

#endif
