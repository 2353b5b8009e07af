/* nestor-portal's pages, files and feed (pages.h). Pure. */
#include "pages.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* --- reading --- */

/* Printable text of at most LEN - 1 bytes (UTF-8 passes; control bytes do not). */
static bool text_ok(const char *s, size_t len)
{
	size_t n = strlen(s);
	if (n >= len)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool get_str(json_object *o, const char *key, char *out, size_t len, bool required)
{
	json_object *v;
	out[0] = '\0';
	if (!json_object_object_get_ex(o, key, &v))
		return !required;
	if (!json_object_is_type(v, json_type_string) || !text_ok(json_object_get_string(v), len))
		return false;
	snprintf(out, len, "%s", json_object_get_string(v));
	return true;
}

static long long get_int(json_object *o, const char *key, long long dflt)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return dflt;
	return json_object_get_int64(v);
}

static bool app_parse(json_object *a, struct pt_app *out)
{
	memset(out, 0, sizeof(*out));
	out->estimate_ms = out->ending_in_s = -1;
	if (!get_str(a, "alias", out->alias, sizeof(out->alias), true) ||
	    !util_name_valid(out->alias) ||
	    !get_str(a, "title", out->title, sizeof(out->title), true))
		return false;
	json_object *s, *e;
	if (!json_object_object_get_ex(a, "session", &s))
		return true;
	if (!json_object_is_type(s, json_type_object) ||
	    !get_str(s, "id", out->id, sizeof(out->id), true) || !util_name_valid(out->id) ||
	    !get_str(s, "state", out->state, sizeof(out->state), true))
		return false;
	out->running = true;
	long long pos = get_int(s, "position", 0);
	out->position = pos > 0 && pos < 1000000 ? (unsigned)pos : 0;
	out->estimate_ms = get_int(s, "estimate_ms", -1);
	if (json_object_object_get_ex(s, "ending", &e) &&
	    json_object_is_type(e, json_type_object)) {
		long long in = get_int(e, "in_s", -1);
		out->ending_in_s = in >= 0 ? in : 0;
		if (!get_str(e, "message", out->ending_msg, sizeof(out->ending_msg), false))
			out->ending_msg[0] = '\0';
	}
	return true;
}

int pt_me_parse(const char *json, size_t len, struct pt_me *me)
{
	memset(me, 0, sizeof(*me));
	struct json_tokener *tok = json_tokener_new_ex(8);
	if (!tok)
		return -ENOMEM;
	json_object *o = json_tokener_parse_ex(tok, json, (int)len);
	bool ok = o && json_tokener_get_error(tok) == json_tokener_success &&
		  json_object_is_type(o, json_type_object);
	json_tokener_free(tok);
	json_object *apps;
	ok = ok && get_str(o, "user", me->user, sizeof(me->user), true) &&
	     util_name_valid(me->user) && json_object_object_get_ex(o, "apps", &apps) &&
	     json_object_is_type(apps, json_type_array);
	if (ok) {
		long long q = get_int(o, "queued", 0);
		me->queued = q > 0 && q < 1000000 ? (unsigned)q : 0;
		size_t n = json_object_array_length(apps);
		for (size_t i = 0; i < n && ok && me->n < PT_APPS_MAX; i++)
			if (app_parse(json_object_array_get_idx(apps, i), &me->apps[me->n]))
				me->n++;
			else
				ok = false;
	}
	json_object_put(o);
	return ok ? 0 : -EPROTO;
}

const struct pt_app *pt_me_app(const struct pt_me *me, const char *alias)
{
	for (unsigned i = 0; i < me->n; i++)
		if (!strcmp(me->apps[i].alias, alias))
			return &me->apps[i];
	return NULL;
}

bool pt_cookie_token(const char *cookie, char out[65])
{
	const size_t kl = strlen(PT_COOKIE);
	for (const char *p = cookie; p && *p;) {
		while (*p == ' ' || *p == ';')
			p++;
		if (!strncmp(p, PT_COOKIE, kl) && p[kl] == '=') {
			const char *v = p + kl + 1;
			size_t n = strspn(v, "0123456789abcdef");
			if (n == 64 && (v[n] == '\0' || v[n] == ';' || v[n] == ' ')) {
				memcpy(out, v, 64);
				out[64] = '\0';
				return true;
			}
		}
		p = strchr(p, ';');
	}
	return false;
}

bool pt_basic_parse(const char *header, char *user, size_t ulen, char *pass, size_t plen)
{
	if (!header || strncasecmp(header, "Basic ", 6))
		return false;
	const char *b64 = header + 6;
	while (*b64 == ' ')
		b64++;
	size_t n = strlen(b64);
	if (!n || n > 1024 || n % 4 ||
	    strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			"0123456789+/=") != n)
		return false;
	unsigned char raw[800];
	int got = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
	if (got < 0)
		return false;
	/* EVP_DecodeBlock counts the padding's zero bytes; '=' only ends the text */
	size_t pad = 0;
	while (pad < n && b64[n - 1 - pad] == '=')
		pad++;
	if (pad > 2 || memchr(b64, '=', n - pad) || got < (int)pad) {
		explicit_bzero(raw, sizeof(raw));
		return false;
	}
	got -= (int)pad;
	raw[got] = '\0';
	char *colon = memchr(raw, ':', (size_t)got);
	bool ok = colon && memchr(raw, '\0', (size_t)got) == NULL;
	if (ok) {
		*colon = '\0';
		size_t ul = (size_t)(colon - (char *)raw), pl = strlen(colon + 1);
		ok = ul > 0 && ul < ulen && pl < plen;
		if (ok) {
			memcpy(user, raw, ul + 1);
			memcpy(pass, colon + 1, pl + 1);
		}
	}
	explicit_bzero(raw, sizeof(raw));
	return ok;
}

void pt_host_name(const char *host, char *out, size_t len)
{
	out[0] = '\0';
	if (!host || !*host)
		return;
	size_t n;
	if (host[0] == '[') { /* [v6]:port */
		const char *e = strchr(host, ']');
		n = e ? (size_t)(e - host) + 1 : 0;
		if (!n || strspn(host + 1, "0123456789abcdefABCDEF:.") != n - 2)
			return;
	} else {
		n = strcspn(host, ":");
		if (!n || strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "0123456789.-") != n)
			return;
	}
	const char *rest = host + n;
	if (*rest && (*rest != ':' || strspn(rest + 1, "0123456789") != strlen(rest + 1)))
		return;
	if (n < len)
		snprintf(out, len, "%.*s", (int)n, host);
}

void pt_rdp_address(const char *configured, const char *host, const char *listen, unsigned gw_port,
		    char *out, size_t len)
{
	if (configured && *configured) {
		snprintf(out, len, "%s", configured);
		return;
	}
	char name[256];
	pt_host_name(host, name, sizeof(name));
	if (!name[0])
		snprintf(name, sizeof(name), strchr(listen, ':') ? "[%s]" : "%s", listen);
	if (gw_port == 3389)
		snprintf(out, len, "%s", name);
	else
		snprintf(out, len, "%s:%u", name, gw_port);
}

/* --- writing --- */

void pt_escape(struct evbuffer *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			evbuffer_add(b, "&amp;", 5);
			break;
		case '<':
			evbuffer_add(b, "&lt;", 4);
			break;
		case '>':
			evbuffer_add(b, "&gt;", 4);
			break;
		case '"':
			evbuffer_add(b, "&quot;", 6);
			break;
		case '\'':
			evbuffer_add(b, "&#39;", 5);
			break;
		default:
			evbuffer_add(b, s, 1);
		}
	}
}

static const char css[] =
    "*{box-sizing:border-box}"
    "body{margin:0;font:16px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,\"DejaVu "
    "Sans\",sans-serif;background:#eef1f5;color:#1d2733}"
    "header{background:#1f3a5f;color:#fff;padding:.8em 1.5em;display:flex;align-items:center;"
    "justify-content:space-between}"
    "header h1{font-size:1.2em;margin:0;font-weight:600}"
    "header form{margin:0}header span{margin-right:1em;opacity:.85}"
    "main{max-width:46em;margin:2em auto;padding:0 1em}"
    ".card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);"
    "padding:1.5em;margin-bottom:1em}"
    ".signin{max-width:24em;margin:4em auto}"
    "label{display:block;margin:.8em 0 .25em;font-weight:600}"
    "input[type=text],input[type=password]{width:100%;padding:.55em;border:1px solid #b8c2cc;"
    "border-radius:4px;font:inherit}"
    "button,.button{display:inline-block;border:0;border-radius:4px;padding:.5em 1em;"
    "font:inherit;cursor:pointer;text-decoration:none;background:#2563eb;color:#fff}"
    ".signin button{margin-top:1.2em;width:100%}"
    "button.quiet{background:#e5e9ef;color:#1d2733}header button.quiet{background:#35557f;"
    "color:#fff}"
    ".msg{background:#fdecea;color:#8a1c12;border-radius:4px;padding:.6em .8em}"
    ".note{background:#fff4d6;color:#6b4a00;border-radius:4px;padding:.6em .8em;margin-top:.6em}"
    ".app{display:flex;align-items:center;justify-content:space-between;gap:1em;"
    "flex-wrap:wrap}"
    ".app h2{display:inline;font-size:1.1em;margin:0}.app form{display:inline;margin:0 0 0 .4em}"
    ".app img{width:32px;height:32px;margin-right:.8em;vertical-align:middle}"
    ".state{font-size:.9em;color:#52606d}"
    ".badge{display:inline-block;border-radius:10px;padding:0 .6em;font-size:.85em;"
    "background:#e5e9ef}"
    ".badge.on{background:#d3f4dc;color:#14532d}.badge.wait{background:#fff4d6;color:#6b4a00}"
    "footer{color:#52606d;font-size:.9em;margin-top:2em}code{word-break:break-all}"
    "a.button.quiet{background:#e5e9ef;color:#1d2733}"
    "body.launch{display:flex;flex-direction:column;height:100vh;background:#1d2733}"
    "#bar{background:#1f3a5f;color:#fff;padding:.4em 1em;display:flex;gap:1em;"
    "align-items:center}#bar a{color:#cfe0ff;margin-left:auto}#status{opacity:.8}"
    "#screen{flex:1;overflow:hidden}";

const char *pt_css(void)
{
	return css;
}

static void head(struct evbuffer *b, const char *title, const char *what)
{
	evbuffer_add_printf(
	    b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	       "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
	       "<title>");
	if (what && *what) {
		pt_escape(b, what);
		evbuffer_add_printf(b, " - ");
	}
	pt_escape(b, title);
	evbuffer_add_printf(b, "</title><link rel=\"stylesheet\" href=\"/portal.css\"></head>\n"
			       "<body>\n");
}

static void tail(struct evbuffer *b)
{
	evbuffer_add_printf(b, "</body></html>\n");
}

void pt_page_signin(struct evbuffer *b, const char *title, const char *user, const char *msg,
		    bool ask_code)
{
	head(b, title, "Sign in");
	evbuffer_add_printf(b, "<main><div class=\"card signin\"><h1>");
	pt_escape(b, title);
	evbuffer_add_printf(b, "</h1>\n");
	if (msg && *msg) {
		evbuffer_add_printf(b, "<p class=\"msg\" role=\"alert\">");
		pt_escape(b, msg);
		evbuffer_add_printf(b, "</p>\n");
	}
	evbuffer_add_printf(b, "<form method=\"post\" action=\"/signin\">\n"
			       "<label for=\"user\">User name</label>"
			       "<input type=\"text\" id=\"user\" name=\"user\" maxlength=\"64\" "
			       "autocomplete=\"username\" required value=\"");
	pt_escape(b, user ? user : "");
	evbuffer_add_printf(b,
			    "\"%s>\n<label for=\"password\">Password</label>"
			    "<input type=\"password\" id=\"password\" name=\"password\" "
			    "maxlength=\"256\" autocomplete=\"current-password\" required%s>\n",
			    user && *user ? "" : " autofocus", user && *user ? " autofocus" : "");
	if (ask_code)
		evbuffer_add_printf(b, "<label for=\"code\">One-time code</label>"
				       "<input type=\"text\" id=\"code\" name=\"code\" "
				       "maxlength=\"64\" inputmode=\"numeric\" "
				       "autocomplete=\"one-time-code\" required>\n");
	evbuffer_add_printf(b, "<button type=\"submit\">Sign in</button>\n</form></div></main>\n");
	tail(b);
}

/* "about 2 min", "about 40 s": a queue's estimate. */
static void estimate(struct evbuffer *b, long long ms)
{
	if (ms < 0)
		return;
	long long s = (ms + 999) / 1000;
	if (s < 60)
		evbuffer_add_printf(b, ", about %lld s", s);
	else
		evbuffer_add_printf(b, ", about %lld min", (s + 59) / 60);
}

static void app_state(struct evbuffer *b, const struct pt_app *a)
{
	if (!a->running) {
		evbuffer_add_printf(b, "<span class=\"badge\">not running</span>");
		return;
	}
	if (!strcmp(a->state, "queued")) {
		evbuffer_add_printf(b, "<span class=\"badge wait\">in the queue</span> ");
		if (a->position)
			evbuffer_add_printf(b, "number %u", a->position);
		estimate(b, a->estimate_ms);
	} else if (!strcmp(a->state, "starting")) {
		evbuffer_add_printf(b, "<span class=\"badge wait\">starting</span>");
	} else if (!strcmp(a->state, "disconnected") || !strcmp(a->state, "ready")) {
		evbuffer_add_printf(b, "<span class=\"badge on\">running</span> disconnected: "
				       "open it to carry on");
	} else if (!strcmp(a->state, "connected")) {
		evbuffer_add_printf(b, "<span class=\"badge on\">running</span> connected");
	} else {
		evbuffer_add_printf(b, "<span class=\"badge\">");
		pt_escape(b, a->state);
		evbuffer_add_printf(b, "</span>");
	}
}

void pt_page_apps(struct evbuffer *b, const char *title, const struct pt_me *me, const char *csrf,
		  const char *feed_url, bool browser)
{
	head(b, title, "Apps");
	evbuffer_add_printf(b, "<header><h1>");
	pt_escape(b, title);
	evbuffer_add_printf(b, "</h1><form method=\"post\" action=\"/signout\"><span>");
	pt_escape(b, me->user);
	evbuffer_add_printf(b,
			    "</span><input type=\"hidden\" name=\"csrf\" value=\"%s\">"
			    "<button class=\"quiet\" type=\"submit\">Sign out</button></form>"
			    "</header>\n<main>\n",
			    csrf);
	if (!me->n)
		evbuffer_add_printf(b, "<div class=\"card\">No apps are published yet: ask your "
				       "administrator.</div>\n");
	for (unsigned i = 0; i < me->n; i++) {
		const struct pt_app *a = &me->apps[i];
		evbuffer_add_printf(b,
				    "<div class=\"card\"><div class=\"app\"><div>"
				    "<img alt=\"\" src=\"/icon/%s.png\"><h2>",
				    a->alias);
		pt_escape(b, a->title);
		evbuffer_add_printf(b, "</h2><div class=\"state\">");
		app_state(b, a);
		evbuffer_add_printf(b,
				    "</div></div><div><a class=\"button\" href=\"/rdp/%s.rdp\" "
				    "download>%s</a>",
				    a->alias, a->running ? "Reconnect" : "Open");
		if (browser)
			evbuffer_add_printf(b,
					    " <a class=\"button quiet\" href=\"/launch/%s\">"
					    "In the browser</a>",
					    a->alias);
		if (a->running)
			evbuffer_add_printf(b,
					    "<form method=\"post\" action=\"/end/%s\">"
					    "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
					    "<button class=\"quiet\" type=\"submit\">End session"
					    "</button></form>",
					    a->id, csrf);
		evbuffer_add_printf(b, "</div></div>");
		if (a->running && a->ending_in_s >= 0) {
			evbuffer_add_printf(b,
					    "<p class=\"note\" role=\"status\">Ends in %lld:%02lld",
					    a->ending_in_s / 60, a->ending_in_s % 60);
			if (a->ending_msg[0]) {
				evbuffer_add_printf(b, ": ");
				pt_escape(b, a->ending_msg);
			}
			evbuffer_add_printf(b, "</p>");
		}
		evbuffer_add_printf(b, "</div>\n");
	}
	evbuffer_add_printf(b,
			    "<footer><p>%u waiting for a session on this host.</p>"
			    "<p>On Windows, add all these apps to the Start menu: Control Panel, "
			    "RemoteApp and Desktop Connections, with the address <code>",
			    me->queued);
	pt_escape(b, feed_url);
	evbuffer_add_printf(b, "</code>.</p></footer>\n</main>\n");
	tail(b);
}

void pt_page_message(struct evbuffer *b, const char *title, const char *heading, const char *msg)
{
	head(b, title, heading);
	evbuffer_add_printf(b, "<main><div class=\"card signin\"><h1>");
	pt_escape(b, heading);
	evbuffer_add_printf(b, "</h1><p>");
	pt_escape(b, msg);
	evbuffer_add_printf(b, "</p><p><a href=\"/\">Back to your apps</a></p></div></main>\n");
	tail(b);
}

void pt_page_launch(struct evbuffer *b, const char *title, const char *app_title,
		    const char *ws_url)
{
	head(b, title, app_title);
	evbuffer_add_printf(b, "<div id=\"bar\"><strong>");
	pt_escape(b, app_title);
	evbuffer_add_printf(b, "</strong><span id=\"status\">connecting</span>"
			       "<a href=\"/\">Back to your apps</a></div>\n<div id=\"screen\" "
			       "data-ws=\"");
	pt_escape(b, ws_url);
	evbuffer_add_printf(b, "\"></div>\n<noscript><p>This page needs JavaScript: open the "
			       "app with its .rdp file instead.</p></noscript>\n"
			       "<script type=\"module\" src=\"/launch.js\"></script>\n");
	tail(b);
}

/* The browser client: noVNC's RFB object on the page's screen, nothing else. */
static const char launch_js[] =
    "import RFB from '/novnc/core/rfb.js';\n"
    "document.body.className = 'launch';\n"
    "const screen = document.getElementById('screen');\n"
    "const status = document.getElementById('status');\n"
    "const rfb = new RFB(screen, screen.dataset.ws, {wsProtocols: ['binary']});\n"
    "rfb.scaleViewport = true;\n"
    "rfb.focusOnClick = true;\n"
    "rfb.addEventListener('connect', () => { status.textContent = 'connected'; rfb.focus(); });\n"
    "rfb.addEventListener('disconnect', (e) => {\n"
    "  status.textContent = e.detail.clean ? 'the session window closed' : 'the connection "
    "was lost';\n"
    "});\n"
    "window.nestorRfb = rfb; /* for the tests' browser (tests/portal/browser.py) */\n";

const char *pt_launch_js(void)
{
	return launch_js;
}

/* A value for one line of an .rdp file: no line breaks. */
static void rdp_value(struct evbuffer *b, const char *s)
{
	for (; *s; s++)
		evbuffer_add(b, *s == '\r' || *s == '\n' ? " " : s, 1);
}

void pt_rdp_file(struct evbuffer *b, const struct pt_app *a, const char *address, const char *user)
{
	evbuffer_add_printf(b, "full address:s:");
	rdp_value(b, address);
	evbuffer_add_printf(b,
			    "\r\nremoteapplicationmode:i:1\r\n"
			    "remoteapplicationprogram:s:||%s\r\n"
			    "alternate shell:s:||%s\r\n"
			    "remoteapplicationname:s:",
			    a->alias, a->alias);
	rdp_value(b, a->title);
	evbuffer_add_printf(b, "\r\nusername:s:");
	rdp_value(b, user);
	/* TLS, never NLA (CredSSP needs an NT hash, PAM has none); the gateway's
	 * certificate is checked as the client's policy says */
	evbuffer_add_printf(b, "\r\nenablecredsspsupport:i:0\r\n"
			       "authentication level:i:2\r\n"
			       "prompt for credentials on client:i:0\r\n"
			       "negotiate security layer:i:1\r\n"
			       "disableremoteappcapscheck:i:1\r\n"
			       /* XP-era apps: 16-bit colour is plenty and cheap */
			       "session bpp:i:16\r\n"
			       "screen mode id:i:1\r\n"
			       "compression:i:1\r\n"
			       "autoreconnection enabled:i:1\r\n"
			       "audiomode:i:2\r\n"
			       "redirectclipboard:i:1\r\n"
			       "redirectprinters:i:0\r\n"
			       "redirectcomports:i:0\r\n"
			       "redirectsmartcards:i:0\r\n"
			       "drivestoredirect:s:\r\n");
}

static void iso_time(struct evbuffer *b, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	char s[32];
	gmtime_r(&tt, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
	evbuffer_add_printf(b, "%s", s);
}

void pt_feed(struct evbuffer *b, const char *publisher, const char *terminal,
	     const struct pt_me *me, int64_t now_s, int64_t updated_s)
{
	evbuffer_add_printf(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n"
			       "<ResourceCollection PubDate=\"");
	iso_time(b, now_s);
	evbuffer_add_printf(b, "\" SchemaVersion=\"1.1\" "
			       "xmlns=\"http://schemas.microsoft.com/ts/2007/05/tswf\">\r\n"
			       "<Publisher LastUpdated=\"");
	iso_time(b, updated_s);
	evbuffer_add_printf(b, "\" Name=\"");
	pt_escape(b, publisher);
	evbuffer_add_printf(b, "\" ID=\"");
	pt_escape(b, terminal);
	evbuffer_add_printf(b, "\" Description=\"\">\r\n<Resources>\r\n");
	for (unsigned i = 0; i < me->n; i++) {
		const struct pt_app *a = &me->apps[i];
		evbuffer_add_printf(b, "<Resource ID=\"%s\" Alias=\"%s\" Title=\"", a->alias,
				    a->alias);
		pt_escape(b, a->title);
		evbuffer_add_printf(b, "\" LastUpdated=\"");
		iso_time(b, updated_s);
		evbuffer_add_printf(
		    b,
		    "\" Type=\"RemoteApp\">\r\n<Icons>\r\n"
		    "<IconRaw FileType=\"Ico\" FileURL=\"/icon/%s.ico\"/>\r\n"
		    "<Icon32 Dimensions=\"32x32\" FileType=\"Png\" FileURL=\"/icon/%s.png\"/>\r\n"
		    "</Icons>\r\n<FileExtensions/>\r\n<HostingTerminalServers>\r\n"
		    "<HostingTerminalServer>\r\n"
		    "<ResourceFile FileExtension=\".rdp\" URL=\"/rdp/%s.rdp\"/>\r\n"
		    "<TerminalServerRef Ref=\"",
		    a->alias, a->alias, a->alias);
		pt_escape(b, terminal);
		evbuffer_add_printf(b, "\"/>\r\n</HostingTerminalServer>\r\n"
				       "</HostingTerminalServers>\r\n</Resource>\r\n");
	}
	evbuffer_add_printf(b, "</Resources>\r\n<TerminalServers>\r\n<TerminalServer ID=\"");
	pt_escape(b, terminal);
	evbuffer_add_printf(b, "\" Name=\"");
	pt_escape(b, terminal);
	evbuffer_add_printf(b, "\" LastUpdated=\"");
	iso_time(b, updated_s);
	evbuffer_add_printf(b, "\"/>\r\n</TerminalServers>\r\n</Publisher>\r\n"
			       "</ResourceCollection>\r\n");
}
