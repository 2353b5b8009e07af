/*
 * nestor-portal for real: nestord with PAM (pam_wrapper + pam_matrix), the
 * portal over TLS, curl as the client; then headless Chromium signing in
 * through the form (tests/portal/browser.py) with screenshots.
 *  - sign in: the form, a wrong password (401, audited), the right one (a
 *    Secure HttpOnly SameSite cookie), the throttle (429);
 *  - the apps page: every app, the user's own session with its state and an
 *    administrator's announced end with its message, and never another user's; ending your own
 * session (CSRF checked), not someone else's; signing out ends the cookie;
 *  - .rdp files: RemoteApp mode, the entry address, the user, no NLA;
 *    by cookie or HTTP Basic; 401 without, 404 for an unknown app;
 *  - the RD web feed: 401 and a Basic challenge without credentials, the
 *    feed validated against the MS-TSWP 1.1 schema (tests/portal/tswf.xsd)
 *    with xmllint, its icons real PNG and ICO files;
 *  - hostile input: headers too large, a body too large, plain HTTP on the
 *    TLS port, odd paths and methods;
 *  - a second factor (pam_oath, codes from oathtool): the form asks for the
 *    code, the right one signs in, a replay does not, Basic cannot.
 */
#include "check.h"
#include "daemon.h"
#include "testenv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

static const char USERS[] = "alice:alice-pw:nestor\nbob:bob-pw:nestor\ncarol:carol-pw:nestor\n";

static struct nestord d;
static unsigned port, gw_port;
static char dir[300];

struct resp {
	int status;
	char *headers;
	char *body;
	size_t len;
};

static void resp_free(struct resp *r)
{
	free(r->headers);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/*
 * curl -k to the portal: METHOD PATH, with COOKIE (the token, or NULL),
 * BASIC ("user:password" or NULL), a urlencoded form BODY (or NULL), and
 * EXTRA curl arguments (one string, or NULL).
 */
static struct resp req(const char *method, const char *path, const char *cookie, const char *basic,
		       const char *body, const char *extra)
{
	struct resp r = {0};
	char hdr[400], out[400], cmd[4096];
	snprintf(hdr, sizeof(hdr), "%s/h.txt", dir);
	snprintf(out, sizeof(out), "%s/b.bin", dir);
	unlink(hdr);
	unlink(out);
	int n = snprintf(cmd, sizeof(cmd),
			 "curl -sk --max-time 20 -X %s -D '%s' -o '%s' -w '%%{http_code}' ", method,
			 hdr, out);
	if (cookie)
		n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "-H 'Cookie: nestor_portal=%s' ",
			      cookie);
	if (basic)
		n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "-u '%s' ", basic);
	if (body)
		n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "--data-raw '%s' ", body);
	snprintf(cmd + n, sizeof(cmd) - (size_t)n, "%s 'https://127.0.0.1:%u%s'",
		 extra ? extra : "", port, path);
	FILE *p = popen(cmd, "r");
	char code[16] = "";
	if (p) {
		if (!fgets(code, sizeof(code), p))
			code[0] = '\0';
		pclose(p);
	}
	r.status = atoi(code);
	r.headers = testenv_slurp(hdr, NULL);
	r.body = testenv_slurp(out, &r.len);
	if (!r.headers)
		r.headers = strdup("");
	if (!r.body)
		r.body = strdup("");
	return r;
}

static bool has(const struct resp *r, const char *s)
{
	return strstr(r->body, s) != NULL;
}

static bool has_header(const struct resp *r, const char *s)
{
	return strcasestr(r->headers, s) != NULL;
}

/* The sign-in's token from the Set-Cookie header, into OUT (65). */
static bool sign_in(const char *user, const char *pass, char *out)
{
	char body[256];
	snprintf(body, sizeof(body), "user=%s&password=%s", user, pass);
	struct resp r = req("POST", "/signin", NULL, NULL, body, NULL);
	const char *c = strcasestr(r.headers, "Set-Cookie: nestor_portal=");
	bool ok = r.status == 303 && c && strlen(c) > 26 + 64;
	if (ok) {
		memcpy(out, c + 26, 64);
		out[64] = '\0';
		ok = strspn(out, "0123456789abcdef") == 64;
	}
	CHECK_MSG(ok, "sign in %s: %d %s", user, r.status, r.headers);
	resp_free(&r);
	return ok;
}

/* The CSRF token in the apps page of TOKEN's user. */
static bool csrf_of(const char *token, char *out)
{
	struct resp r = req("GET", "/", token, NULL, NULL, NULL);
	const char *c = strstr(r.body, "name=\"csrf\" value=\"");
	bool ok = r.status == 200 && c;
	if (ok)
		snprintf(out, 65, "%.64s", c + 19);
	resp_free(&r);
	return ok;
}

/* The gateway's certificate, as nestor-gateway makes it on its first start, and the file. */
static pid_t start_portal(void)
{
	char conf[400], cmd[1200];
	snprintf(conf, sizeof(conf), "%s/gateway.conf", dir);
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p '%s/gw' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
		 "-subj /CN=nestor -keyout '%s/gw/tls.key' -out '%s/gw/tls.crt' 2>/dev/null",
		 dir, dir, dir);
	if (system(cmd) != 0)
		return -1;
	FILE *f = fopen(conf, "w");
	if (!f)
		return -1;
	fprintf(f,
		"[gateway]\nlisten = 127.0.0.1\nport = %u\napi_socket = %s\nstate_dir = %s/gw\n"
		"log_level = debug\n[portal]\nlisten = 127.0.0.1\nport = %u\ntitle = Acme apps\n",
		gw_port, d.sock, dir, port);
	fclose(f);
	return portal_start(&d, conf, port);
}

static void test_signin(void)
{
	struct resp r = req("GET", "/", NULL, NULL, NULL, NULL);
	CHECK_MSG(r.status == 200, "%d", r.status);
	CHECK(has(&r, "name=\"password\"") && has(&r, "action=\"/signin\"") &&
	      has(&r, "Acme apps"));
	CHECK(has_header(&r, "Content-Security-Policy: default-src 'none'"));
	CHECK(has_header(&r, "Strict-Transport-Security"));
	CHECK(has_header(&r, "Cache-Control: no-store"));
	CHECK(!has(&r, "name=\"code\"")); /* password-only stack: no code field */
	resp_free(&r);

	r = req("POST", "/signin", NULL, NULL, "user=alice&password=wrong", NULL);
	CHECK_MSG(r.status == 401, "%d", r.status);
	CHECK(has(&r, "Wrong user name") && has(&r, "value=\"alice\""));
	CHECK(!has_header(&r, "Set-Cookie"));
	resp_free(&r);

	/* another site's form (login CSRF): its Origin is not the portal's */
	r = req("POST", "/signin", NULL, NULL, "user=alice&password=alice-pw",
		"-H 'Origin: https://evil.example'");
	CHECK_MSG(r.status == 403 && !has_header(&r, "Set-Cookie"), "foreign origin: %d", r.status);
	resp_free(&r);
	r = req("POST", "/signin", NULL, NULL, "user=alice&password=alice-pw",
		"-H 'Sec-Fetch-Site: cross-site'");
	CHECK_MSG(r.status == 403, "cross-site: %d", r.status);
	resp_free(&r);

	/* markup in the user name is refused, never echoed */
	r = req("POST", "/signin", NULL, NULL, "user=%3Cscript%3E&password=x", NULL);
	CHECK_MSG(r.status == 400, "%d", r.status);
	CHECK(!has(&r, "<script>"));
	resp_free(&r);

	char tok[65];
	if (sign_in("alice", "alice-pw", tok)) {
		r = req("POST", "/signin", NULL, NULL, "user=alice&password=alice-pw", NULL);
		CHECK(has_header(&r, "Secure") && has_header(&r, "HttpOnly") &&
		      has_header(&r, "SameSite=Strict") && has_header(&r, "Location: /"));
		resp_free(&r);
	}

	/* the throttle: nestord's, the same as for RDP logins (from an address of its own:
	 * the address is throttled too) */
	int last = 0;
	const char *from = "--interface 127.0.0.2";
	for (int i = 0; i < 4; i++) {
		r = req("POST", "/signin", NULL, NULL, "user=carol&password=nope", from);
		last = r.status;
		resp_free(&r);
	}
	CHECK_MSG(last == 429, "after 4 failures: %d", last);
	r = req("POST", "/signin", NULL, NULL, "user=carol&password=carol-pw", from);
	CHECK_MSG(r.status == 429 && has(&r, "Too many"), "locked out: %d", r.status);
	resp_free(&r);

	/* audited with the portal's client address */
	json_object *a = NULL;
	CHECK(api(&d, "GET", "/v1/audit?limit=50", NULL, &a) == 200);
	const char *s = a ? json_object_to_json_string(a) : "";
	CHECK_MSG(strstr(s, "carol") && strstr(s, "127.0.0.2"), "%s", s);
	json_object_put(a);
}

static void test_apps(void)
{
	char alice[65], bob[65], csrf_a[65], csrf_b[65], id[64];
	if (!sign_in("alice", "alice-pw", alice) || !sign_in("bob", "bob-pw", bob))
		return;
	struct resp r = req("GET", "/", alice, NULL, NULL, NULL);
	CHECK_MSG(r.status == 200, "%d", r.status);
	CHECK(has(&r, "Ledger") && has(&r, "Notes") && has(&r, "not running"));
	CHECK(has(&r, "href=\"/rdp/ledger.rdp\"") && has(&r, "/RDWeb/Feed/webfeed.aspx"));
	CHECK(has(&r, ">alice<") && has(&r, "Sign out"));
	resp_free(&r);

	/* alice opens ledger (as the gateway would): the page shows it */
	CHECK(nestord_connect(&d, "alice", "alice-pw", "ledger", id, sizeof(id)) == 200);
	r = req("GET", "/", alice, NULL, NULL, NULL);
	CHECK(has(&r, id) && (has(&r, "starting") || has(&r, "running") || has(&r, "queue")));
	CHECK(has(&r, "End session") && has(&r, "Reconnect"));
	resp_free(&r);
	/* ... bob's does not */
	r = req("GET", "/", bob, NULL, NULL, NULL);
	CHECK(r.status == 200 && !has(&r, id) && !has(&r, "End session"));
	resp_free(&r);

	/* an administrator's end, announced: the portal shows it with its message */
	char ann[128];
	snprintf(ann, sizeof(ann), "/v1/sessions/%s?in=300&message=Patch%%20night", id);
	CHECK(api(&d, "DELETE", ann, NULL, NULL) == 200);
	r = req("GET", "/", alice, NULL, NULL, NULL);
	CHECK_MSG(has(&r, "Ends in 5:00: Patch night") || has(&r, "Ends in 4:59: Patch night"),
		  "%s", r.body);
	resp_free(&r);
	CHECK(csrf_of(alice, csrf_a) && csrf_of(bob, csrf_b));
	CHECK(strcmp(csrf_a, csrf_b) != 0);
	char path[128], body[128];
	snprintf(path, sizeof(path), "/end/%s", id);
	/* bob cannot end alice's session, even with a form of his own */
	snprintf(body, sizeof(body), "csrf=%s", csrf_b);
	r = req("POST", path, bob, NULL, body, NULL);
	CHECK_MSG(r.status == 404, "bob ends alice's: %d", r.status);
	resp_free(&r);
	/* nor can a form without alice's CSRF token */
	r = req("POST", path, alice, NULL, body, NULL);
	CHECK_MSG(r.status == 403, "foreign csrf: %d", r.status);
	resp_free(&r);
	r = req("POST", path, alice, NULL, "csrf=", NULL);
	CHECK_MSG(r.status == 403, "empty csrf: %d", r.status);
	resp_free(&r);
	json_object *s = NULL;
	char apath[128];
	snprintf(apath, sizeof(apath), "/v1/sessions/%s", id);
	CHECK(api(&d, "GET", apath, NULL, &s) == 200 && strcmp(jget(s, "state"), "ending") &&
	      strcmp(jget(s, "state"), "ended"));
	json_object_put(s);
	/* alice can */
	snprintf(body, sizeof(body), "csrf=%s", csrf_a);
	r = req("POST", path, alice, NULL, body, NULL);
	CHECK_MSG(r.status == 303, "alice ends hers: %d", r.status);
	resp_free(&r);
	s = NULL;
	int st = api(&d, "GET", apath, NULL, &s);
	CHECK_MSG(st == 404 || (st == 200 && (!strcmp(jget(s, "state"), "ending") ||
					      !strcmp(jget(s, "state"), "ended"))),
		  "after the end: %d %s", st, s ? jget(s, "state") : "");
	json_object_put(s);
	json_object *au = NULL;
	CHECK(api(&d, "GET", "/v1/audit?limit=50", NULL, &au) == 200);
	CHECK(au && strstr(json_object_to_json_string(au), "session-end-by-user"));
	json_object_put(au);

	/* signing out ends the cookie's sign-in */
	r = req("POST", "/signout", bob, NULL, "csrf=x", NULL);
	CHECK_MSG(r.status == 403, "sign out, bad csrf: %d", r.status);
	resp_free(&r);
	snprintf(body, sizeof(body), "csrf=%s", csrf_b);
	r = req("POST", "/signout", bob, NULL, body, NULL);
	CHECK_MSG(r.status == 303 && has_header(&r, "Max-Age=0"), "sign out: %d", r.status);
	resp_free(&r);
	r = req("GET", "/", bob, NULL, NULL, NULL);
	CHECK(r.status == 200 && has(&r, "sign in again") && has(&r, "name=\"password\""));
	resp_free(&r);
	r = req("GET", "/rdp/ledger.rdp", bob, NULL, NULL, NULL);
	CHECK_MSG(r.status == 303, "rdp after sign-out: %d", r.status);
	resp_free(&r);
	/* a made-up token is no sign-in */
	r = req("GET", "/", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		NULL, NULL, NULL);
	CHECK(r.status == 200 && has(&r, "sign in again"));
	resp_free(&r);
}

static void test_rdp_files(void)
{
	char tok[65];
	if (!sign_in("alice", "alice-pw", tok))
		return;
	struct resp r = req("GET", "/rdp/ledger.rdp", tok, NULL, NULL, NULL);
	CHECK_MSG(r.status == 200, "%d", r.status);
	CHECK(has_header(&r, "Content-Type: application/x-rdp"));
	CHECK(has_header(&r, "attachment; filename=\"ledger.rdp\""));
	char addr[64];
	snprintf(addr, sizeof(addr), "full address:s:127.0.0.1:%u\r\n", gw_port);
	CHECK_MSG(has(&r, addr), "%s", r.body);
	CHECK(has(&r, "remoteapplicationmode:i:1\r\n"));
	CHECK(has(&r, "remoteapplicationprogram:s:||ledger\r\n"));
	CHECK(has(&r, "remoteapplicationname:s:Ledger\r\n"));
	CHECK(has(&r, "username:s:alice\r\n"));
	CHECK(has(&r, "enablecredsspsupport:i:0\r\n"));
	resp_free(&r);

	r = req("GET", "/rdp/ledger.rdp", NULL, "alice:alice-pw", NULL, NULL);
	CHECK_MSG(r.status == 200 && has(&r, "||ledger"), "basic: %d", r.status);
	resp_free(&r);
	r = req("GET", "/rdp/ledger.rdp", NULL, NULL, NULL, NULL);
	CHECK_MSG(r.status == 401 && has_header(&r, "WWW-Authenticate: Basic"), "anon: %d",
		  r.status);
	resp_free(&r);
	r = req("GET", "/rdp/nosuch.rdp", tok, NULL, NULL, NULL);
	CHECK_MSG(r.status == 404, "unknown app: %d", r.status);
	resp_free(&r);
	r = req("GET", "/rdp/..%2f..%2fetc%2fpasswd.rdp", tok, NULL, NULL, NULL);
	CHECK_MSG(r.status == 404, "odd name: %d", r.status);
	resp_free(&r);
}

static void test_feed(void)
{
	struct resp r = req("GET", "/RDWeb/Feed/webfeed.aspx", NULL, NULL, NULL, NULL);
	CHECK_MSG(r.status == 401, "anonymous feed: %d", r.status);
	CHECK(has_header(&r, "WWW-Authenticate: Basic realm=\"Acme apps\""));
	CHECK(!has(&r, "ledger"));
	resp_free(&r);
	r = req("GET", "/RDWeb/Feed/webfeed.aspx", NULL, "alice:wrong", NULL, NULL);
	CHECK_MSG(r.status == 401, "wrong password: %d", r.status);
	resp_free(&r);

	r = req("GET", "/RDWeb/Feed/webfeed.aspx", NULL, "alice:alice-pw", NULL, NULL);
	CHECK_MSG(r.status == 200, "feed: %d", r.status);
	CHECK(has_header(&r, "Content-Type: application/x-msts-radc+xml"));
	CHECK(has(&r, "Alias=\"ledger\"") && has(&r, "Title=\"Ledger\"") &&
	      has(&r, "Alias=\"notes\""));
	CHECK(has(&r, "URL=\"/rdp/ledger.rdp\"") && has(&r, "FileURL=\"/icon/ledger.ico\""));
	char feed[400], xsd[600], cmd[1400];
	snprintf(feed, sizeof(feed), "%s/webfeed.xml", dir);
	FILE *f = fopen(feed, "w");
	if (f) {
		fwrite(r.body, 1, r.len, f);
		fclose(f);
	}
	snprintf(xsd, sizeof(xsd), "%s/tests/portal/tswf.xsd", getenv("NESTOR_SRC"));
	snprintf(cmd, sizeof(cmd), "xmllint --noout --schema '%s' '%s'", xsd, feed);
	CHECK_MSG(system(cmd) == 0, "the feed does not validate: %s", r.body);
	resp_free(&r);

	/* the same sign-in is reused for a while (no PAM per request) */
	r = req("GET", "/RDWeb/Feed/webfeed.aspx", NULL, "alice:alice-pw", NULL, NULL);
	CHECK(r.status == 200);
	resp_free(&r);

	r = req("GET", "/icon/ledger.png", NULL, "alice:alice-pw", NULL, NULL);
	CHECK_MSG(r.status == 200 && r.len > 60 && !memcmp(r.body, "\x89PNG\r\n\x1a\n", 8),
		  "png: %d %zu", r.status, r.len);
	CHECK(has_header(&r, "Content-Type: image/png"));
	resp_free(&r);
	r = req("GET", "/icon/ledger.ico", NULL, "alice:alice-pw", NULL, NULL);
	CHECK_MSG(r.status == 200 && r.len > 80 && !memcmp(r.body, "\0\0\1\0\1\0", 6) &&
		      !memcmp(r.body + 22, "\x89PNG", 4),
		  "ico: %d %zu", r.status, r.len);
	resp_free(&r);
	char png[400];
	snprintf(png, sizeof(png), "%s/b.bin", dir);
	r = req("GET", "/icon/ledger.png", NULL, "alice:alice-pw", NULL, NULL);
	snprintf(cmd, sizeof(cmd),
		 "/usr/bin/python3 -c \"import zlib,sys;d=open('%s','rb').read();"
		 "i=d.index(b'IDAT');n=int.from_bytes(d[i-4:i],'big');"
		 "raw=zlib.decompress(d[i+4:i+4+n]);sys.exit(len(raw)!=32*129)\"",
		 png);
	CHECK_MSG(system(cmd) == 0, "the PNG's pixels do not decode");
	resp_free(&r);
}

/* Raw bytes to the TLS port: what a client that is not one gets. */
static bool plain_http_refused(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return false;
	const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	bool ok = write(fd, get, sizeof(get) - 1) == (ssize_t)sizeof(get) - 1;
	char buf[256];
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	/* never a page: the TLS layer closes (or answers with a TLS alert) */
	return ok && (n <= 0 || memcmp(buf, "HTTP", 4) != 0);
}

static void test_hostile(void)
{
	/* 20 KB of one header, then a 10 KB form: written to files curl reads */
	char path[400], arg[500];
	snprintf(path, sizeof(path), "%s/big-header", dir);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("X-Big: ", f);
		for (int i = 0; i < 20000; i++)
			fputc('a', f);
		fputc('\n', f);
		fclose(f);
	}
	snprintf(arg, sizeof(arg), "-H @'%s'", path);
	struct resp r = req("GET", "/", NULL, NULL, NULL, arg);
	CHECK_MSG(r.status == 400 || r.status == 413 || r.status == 431 || r.status == 0,
		  "huge header: %d", r.status);
	resp_free(&r);
	snprintf(path, sizeof(path), "%s/big-body", dir);
	f = fopen(path, "w");
	if (f) {
		fputs("user=", f);
		for (int i = 0; i < 10000; i++)
			fputc('x', f);
		fclose(f);
	}
	snprintf(arg, sizeof(arg), "--data-binary @'%s'", path);
	r = req("POST", "/signin", NULL, NULL, NULL, arg);
	CHECK_MSG(r.status == 413 || r.status == 400, "huge body: %d", r.status);
	resp_free(&r);
	r = req("PUT", "/", NULL, NULL, NULL, NULL);
	CHECK_MSG(r.status == 405 || r.status == 501, "PUT: %d", r.status);
	resp_free(&r);
	r = req("GET", "/nothing/here", NULL, NULL, NULL, NULL);
	CHECK_MSG(r.status == 404, "404: %d", r.status);
	resp_free(&r);
	r = req("GET", "/rdp/ledger.rdp", NULL, NULL, NULL, "-H 'Authorization: Basic !!!!'");
	CHECK_MSG(r.status == 401, "bad basic: %d", r.status);
	resp_free(&r);
	r = req("GET", "/", NULL, NULL, NULL, "-H 'Cookie: nestor_portal=zz; other=1'");
	CHECK_MSG(r.status == 200 && has(&r, "name=\"password\""), "bad cookie: %d", r.status);
	resp_free(&r);
	CHECK(plain_http_refused());
	/* still serving */
	r = req("GET", "/portal.css", NULL, NULL, NULL, NULL);
	CHECK(r.status == 200 && has_header(&r, "text/css"));
	resp_free(&r);
}

/* A second factor: pam_oath after pam_matrix (pam_wrapper copies the stack when nestord starts). */
#define ALICE_KEY "3132333435363738393031323334353637383930"
static void test_code(void)
{
	nestord_setup_oath(&d, "HOTP/T30 alice - " ALICE_KEY "\n", false);
	nestord_stop(&d, SIGTERM, 10000);
	if (!nestord_start(&d)) {
		CHECK(!"nestord started again");
		return;
	}
	struct resp r = req("POST", "/signin", NULL, NULL, "user=alice&password=alice-pw", NULL);
	CHECK_MSG(r.status == 401, "no code: %d", r.status);
	CHECK(has(&r, "name=\"code\"") && has(&r, "one-time code") && has(&r, "value=\"alice\""));
	CHECK(!has_header(&r, "Set-Cookie"));
	resp_free(&r);
	char code[16], body[128];
	CHECK(oath_totp(ALICE_KEY, 0, code, sizeof(code)));
	snprintf(body, sizeof(body), "user=alice&password=alice-pw&code=%s", code);
	r = req("POST", "/signin", NULL, NULL, body, NULL);
	CHECK_MSG(r.status == 303 && has_header(&r, "Set-Cookie: nestor_portal="), "code: %d",
		  r.status);
	resp_free(&r);
	/* the same code again: pam_oath refuses a replay */
	r = req("POST", "/signin", NULL, NULL, body, NULL);
	CHECK_MSG(r.status == 401 && has(&r, "Wrong"), "replayed code: %d", r.status);
	resp_free(&r);
	/* HTTP Basic has no field for the code: the answer says where to sign in (the
	 * first try may only learn that the sign-in it kept ended with nestord's restart) */
	bool told = false;
	for (int i = 0; i < 2 && !told; i++) {
		r = req("GET", "/RDWeb/Feed/webfeed.aspx", NULL, "alice:alice-pw", NULL, NULL);
		CHECK_MSG(r.status == 401, "basic with a code: %d", r.status);
		told = has(&r, "one-time code");
		resp_free(&r);
	}
	CHECK(told);
}

static void test_browser(void)
{
	if (access("/usr/bin/chromium", X_OK) != 0) {
		CHECK_MSG(0, "chromium is not installed (scripts/install-deps installs it)");
		return;
	}
	char cmd[1200];
	snprintf(cmd, sizeof(cmd),
		 "/usr/bin/python3 '%s/tests/portal/browser.py' --port %u --user alice --password "
		 "alice-pw "
		 "--expect Ledger --out '%s' --shots portal-signin,portal-apps",
		 getenv("NESTOR_SRC"), port, getenv("NESTOR_SHOTS") ? getenv("NESTOR_SHOTS") : dir);
	int st = system(cmd);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the browser run failed (%d)", st);
}

int main(void)
{
	nestord_setup(&d, "portal", USERS,
		      "[images]\nauto_template = false\n"
		      "[auth]\nmax_failures = 3\nwindow = 60\nlockout = 60\n");
	if (!nestord_start(&d))
		return 1;
	nestord_add_demo(&d, "ledger");
	CHECK(api(&d, "POST", "/v1/apps",
		  "{\"alias\":\"notes\",\"image\":\"demo\",\"title\":\"Notes\"}", NULL) == 201);
	snprintf(dir, sizeof(dir), "%s", d.dir);
	port = free_tcp_port();
	gw_port = free_tcp_port();
	pid_t portal = start_portal();
	CHECK_MSG(portal > 0, "the portal did not start (see %s/portal.log)", dir);
	if (portal > 0) {
		test_signin();
		test_apps();
		test_rdp_files();
		test_feed();
		test_hostile();
		test_browser();
		test_code();
		CHECK(pid_alive(portal));
		CHECK(WIFEXITED(child_stop(&portal)));
	}
	nestord_stop(&d, SIGTERM, 10000);
	return check_done("portal");
}
