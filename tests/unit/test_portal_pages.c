/*
 * nestor-portal's pure parts (portal/pages.c, portal/icon.c): what it reads
 * from nestord, cookies, Basic credentials and Host headers; what it
 * writes into pages, .rdp files and the feed, escaped.
 */
#include "check.h"
#include "draw.h"
#include "icon.h"
#include "pages.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

static char *text(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_copyout(b, s, n);
	s[n] = '\0';
	evbuffer_drain(b, n);
	return s;
}

static const char ME[] =
    "{\"user\":\"alice\",\"queued\":3,\"apps\":["
    "{\"alias\":\"ledger\",\"title\":\"Ledger & <Co>\",\"session\":{\"id\":\"abc123\","
    "\"state\":\"queued\",\"position\":2,\"estimate_ms\":90000,"
    "\"ending\":{\"in_s\":95,\"why\":\"admin\",\"message\":\"Patch <night>\"}}},"
    "{\"alias\":\"notes\",\"title\":\"Notes\"}]}";

static void test_me(void)
{
	static struct pt_me me;
	CHECK(pt_me_parse(ME, strlen(ME), &me) == 0);
	CHECK_STR(me.user, "alice");
	CHECK(me.n == 2 && me.queued == 3);
	const struct pt_app *a = pt_me_app(&me, "ledger");
	CHECK(a && a->running && !strcmp(a->id, "abc123") && a->position == 2 &&
	      a->estimate_ms == 90000 && a->ending_in_s == 95 &&
	      !strcmp(a->ending_msg, "Patch <night>"));
	a = pt_me_app(&me, "notes");
	CHECK(a && !a->running && a->ending_in_s == -1);
	CHECK(!pt_me_app(&me, "nope"));

	static const char *const bad[] = {
	    "",
	    "[]",
	    "{\"user\":\"alice\"}",
	    "{\"user\":\"../x\",\"apps\":[]}",
	    "{\"user\":\"alice\",\"apps\":[{\"alias\":\"a b\",\"title\":\"x\"}]}",
	    "{\"user\":\"alice\",\"apps\":[{\"alias\":\"a\",\"title\":\"x\\ny\"}]}",
	    "{\"user\":\"alice\",\"apps\":[{\"alias\":\"a\",\"title\":7}]}",
	    "{\"user\":\"alice\",\"apps\":[{\"alias\":\"a\",\"title\":\"t\",\"session\":"
	    "{\"id\":\"x/y\",\"state\":\"ready\"}}]}",
	    "{\"user\":\"alice\",\"apps\":[[[[[[[[[[]]]]]]]]]]}",
	    "{\"user\":\"alice\",\"apps\":[",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(pt_me_parse(bad[i], strlen(bad[i]), &me) < 0, "accepted: %s", bad[i]);
}

static void test_cookie_basic_host(void)
{
	char tok[65], u[65], p[257], h[256];
	const char *t64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char c[200];
	snprintf(c, sizeof(c), "a=b; nestor_portal=%s; z=1", t64);
	CHECK(pt_cookie_token(c, tok) && !strcmp(tok, t64));
	CHECK(!pt_cookie_token("nestor_portal=abc", tok));
	CHECK(!pt_cookie_token("xnestor_portal=zz", tok));
	CHECK(!pt_cookie_token(NULL, tok));
	snprintf(c, sizeof(c), "nestor_portal=%sff", t64);
	CHECK(!pt_cookie_token(c, tok)); /* too long */

	CHECK(pt_basic_parse("Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM=", u, sizeof(u), p, sizeof(p)));
	CHECK_STR(u, "alice");
	CHECK_STR(p, "pw:with:colons");
	CHECK(pt_basic_parse("basic Ym9iOg==", u, sizeof(u), p, sizeof(p)) && !strcmp(u, "bob") &&
	      !p[0]);
	CHECK(!pt_basic_parse("Basic Ym9i", u, sizeof(u), p, sizeof(p))); /* no colon */
	CHECK(!pt_basic_parse("Basic OnB3", u, sizeof(u), p, sizeof(p))); /* no user */
	CHECK(!pt_basic_parse("Basic !!!!", u, sizeof(u), p, sizeof(p))); /* not base64 */
	CHECK(!pt_basic_parse("Bearer YWxpY2U6cHc=", u, sizeof(u), p, sizeof(p)));
	CHECK(!pt_basic_parse("Basic YQBiOmM=", u, sizeof(u), p, sizeof(p))); /* a NUL inside */
	CHECK(!pt_basic_parse(NULL, u, sizeof(u), p, sizeof(p)));
	CHECK(!pt_basic_parse("Basic ====", u, sizeof(u), p, sizeof(p)));
	CHECK(!pt_basic_parse("Basic YQ==YQ==", u, sizeof(u), p, sizeof(p)));

	pt_host_name("portal.example.org:8443", h, sizeof(h));
	CHECK_STR(h, "portal.example.org");
	pt_host_name("[::1]:8443", h, sizeof(h));
	CHECK_STR(h, "[::1]");
	pt_host_name("10.0.0.5", h, sizeof(h));
	CHECK_STR(h, "10.0.0.5");
	static const char *const hostile[] = {"evil.org/x", "a b",	"a\"b", "x:80:90",
					      "[::1",	    "<script>", "",	"host:port"};
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		pt_host_name(hostile[i], h, sizeof(h));
		CHECK_MSG(!h[0], "host '%s' gave '%s'", hostile[i], h);
	}
	pt_rdp_address("", "portal.example.org:8443", "0.0.0.0", 3389, h, sizeof(h));
	CHECK_STR(h, "portal.example.org");
	pt_rdp_address("", "portal.example.org", "0.0.0.0", 3390, h, sizeof(h));
	CHECK_STR(h, "portal.example.org:3390");
	pt_rdp_address("rdp.example.org:443", "portal.example.org", "0.0.0.0", 3389, h, sizeof(h));
	CHECK_STR(h, "rdp.example.org:443");
	pt_rdp_address("", "bad/host", "127.0.0.1", 3390, h, sizeof(h));
	CHECK_STR(h, "127.0.0.1:3390");
}

static void test_writing(void)
{
	static struct pt_me me;
	CHECK(pt_me_parse(ME, strlen(ME), &me) == 0);
	struct evbuffer *b = evbuffer_new();

	pt_page_apps(b, "Acme & Co", &me, "c5f", "https://x:8443/RDWeb/Feed/webfeed.aspx", true);
	char *s = text(b);
	CHECK(strstr(s, "Ledger &amp; &lt;Co&gt;") && !strstr(s, "<Co>"));
	CHECK(strstr(s, "Acme &amp; Co") && strstr(s, "value=\"c5f\""));
	CHECK(strstr(s, "number 2") && strstr(s, "about 2 min"));
	CHECK(strstr(s, "Ends in 1:35: Patch &lt;night&gt;"));
	CHECK(strstr(s, "action=\"/end/abc123\"") && strstr(s, "/rdp/notes.rdp"));
	CHECK(!strstr(s, "style=")); /* the CSP allows no inline style */
	free(s);

	pt_page_signin(b, "T", "al\"ice", "Wrong <password>", true);
	s = text(b);
	CHECK(strstr(s, "value=\"al&quot;ice\"") && strstr(s, "Wrong &lt;password&gt;"));
	CHECK(strstr(s, "name=\"code\"") && strstr(s, "one-time-code"));
	free(s);
	pt_page_signin(b, "T", "", NULL, false);
	s = text(b);
	CHECK(!strstr(s, "name=\"code\"") && !strstr(s, "class=\"msg\""));
	free(s);

	struct pt_app a = me.apps[0];
	snprintf(a.title, sizeof(a.title), "Evil\r\nfull address:s:attacker");
	pt_rdp_file(b, &a, "gw.example.org:3390", "alice");
	s = text(b);
	CHECK(strstr(s, "full address:s:gw.example.org:3390\r\n") == s);
	CHECK(!strstr(s, "\r\nfull address:s:attacker")); /* one line per setting */
	CHECK(strstr(s, "remoteapplicationprogram:s:||ledger\r\n"));
	CHECK(strstr(s, "enablecredsspsupport:i:0\r\n"));
	free(s);

	pt_feed(b, "Acme & Co", "gw.example.org", &me, 1780000000, 1770000000);
	s = text(b);
	CHECK(strstr(s, "SchemaVersion=\"1.1\""));
	CHECK(strstr(s, "PubDate=\"2026-05-28T"));
	CHECK(strstr(s, "Title=\"Ledger &amp; &lt;Co&gt;\"") &&
	      strstr(s, "Name=\"Acme &amp; Co\""));
	CHECK(strstr(s, "<TerminalServerRef Ref=\"gw.example.org\"/>"));
	CHECK(!strstr(s, "abc123")); /* sessions are not the feed's business */
	free(s);
	evbuffer_free(b);
}

static void test_icons(void)
{
	struct gw_font f;
	gw_font_boxes(&f);
	struct evbuffer *b = evbuffer_new();
	CHECK(pt_icon_png(b, &f, "ledger", "Ledger") == 0);
	size_t n = evbuffer_get_length(b);
	unsigned char *p = evbuffer_pullup(b, -1);
	CHECK(n > 60 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8) && !memcmp(p + 12, "IHDR", 4));
	CHECK(p[16 + 3] == 32 && p[20 + 3] == 32 && !memcmp(p + n - 8, "IEND", 4));
	evbuffer_drain(b, n);
	CHECK(pt_icon_ico(b, &f, "ledger", "") == 0);
	p = evbuffer_pullup(b, -1);
	CHECK(!memcmp(p, "\0\0\1\0\1\0", 6) && p[6] == 32 && !memcmp(p + 22, "\x89PNG", 4));
	CHECK((p[14] | p[15] << 8 | p[16] << 16 | p[17] << 24) ==
	      (int)(evbuffer_get_length(b) - 22));
	evbuffer_free(b);
	gw_font_free(&f);
}

int main(void)
{
	test_me();
	test_cookie_basic_host();
	test_writing();
	test_icons();
	return check_done("portal-pages");
}
