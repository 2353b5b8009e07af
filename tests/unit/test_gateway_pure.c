/*
 * The gateway's pure parts: key and pointer translation, the login form's
 * editing, the configuration parser, screen drawing, and the metrics'
 * exposition (and their TCP byte count, over a loopback connection).
 */
#include "check.h"
#include "draw.h"
#include "guard.h"
#include "gwconfig.h"
#include "gwmetrics.h"
#include "keymap.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_keys(void)
{
	CHECK(gw_qnum(0, 0x1e) == 0x1e);				/* a */
	CHECK(gw_qnum(GW_KBD_EXTENDED, 0x1d) == 0x9d);			/* right ctrl */
	CHECK(gw_qnum(GW_KBD_EXTENDED | GW_KBD_RELEASE, 0x48) == 0xc8); /* up arrow */
	CHECK(gw_qnum(0, 0) == -1);
	CHECK(gw_qnum(0, 0x80) == -1);
	CHECK(gw_keysym('a') == 'a' && gw_keysym('\r') == 0xff0d && gw_keysym(0xe9) == 0xe9);
	CHECK(gw_keysym(0x20ac) == 0x010020ac); /* euro sign */

	int wheel, m = 0;
	m = gw_buttons(0x8000 | 0x1000, m, &wheel); /* left down */
	CHECK(m == 1 && !wheel);
	m = gw_buttons(0x8000 | 0x2000, m, &wheel); /* right down */
	CHECK(m == 5);
	m = gw_buttons(0x1000, m, &wheel); /* left up */
	CHECK(m == 4);
	m = gw_buttons(0x0200 | 0x0078, m, &wheel); /* wheel up */
	CHECK(m == 4 && wheel == 0x08);
	m = gw_buttons(0x0200 | 0x0100 | 0x0088, m, &wheel); /* wheel down */
	CHECK(wheel == 0x10);
	m = gw_buttons(0x0800, m, &wheel); /* move */
	CHECK(m == 4 && !wheel);
}

static enum gw_login_ev press(struct gw_login *l, uint16_t code, bool ext)
{
	enum gw_login_ev e = gw_login_key(l, (ext ? GW_KBD_EXTENDED : 0) | GW_KBD_DOWN, code);
	gw_login_key(l, (ext ? GW_KBD_EXTENDED : 0) | GW_KBD_RELEASE, code);
	return e;
}

static void test_login(void)
{
	struct gw_login l = {0};
	/* "Bob" with shift, Tab, "p4ss!", Enter */
	gw_login_key(&l, GW_KBD_DOWN, 0x2a);
	press(&l, 0x30, false); /* B */
	gw_login_key(&l, GW_KBD_RELEASE, 0x2a);
	press(&l, 0x18, false);
	press(&l, 0x30, false);
	CHECK_STR(l.user, "Bob");
	CHECK(press(&l, 0x0f, false) == GW_LOGIN_CHANGED && l.focus == GW_FIELD_PASSWORD);
	press(&l, 0x19, false);
	press(&l, 0x05, false);
	press(&l, 0x1f, false);
	press(&l, 0x1f, false);
	gw_login_key(&l, GW_KBD_DOWN, 0x36);
	press(&l, 0x02, false); /* ! */
	gw_login_key(&l, GW_KBD_RELEASE, 0x36);
	CHECK_STR(l.pass, "p4ss!");
	CHECK(press(&l, 0x0e, false) == GW_LOGIN_CHANGED); /* backspace */
	CHECK_STR(l.pass, "p4ss");
	CHECK(press(&l, 0x1c, true) == GW_LOGIN_SUBMIT); /* keypad enter */
	/* extended keys (arrows) type nothing; caps lock flips letters */
	CHECK(press(&l, 0x4b, true) == GW_LOGIN_NONE);
	press(&l, 0x3a, false);
	press(&l, 0x1e, false);
	CHECK_STR(l.pass, "p4ssA");
	/* Unicode events: printable ASCII only, Enter submits */
	CHECK(gw_login_unicode(&l, 0, 0xe9) == GW_LOGIN_NONE);
	CHECK(gw_login_unicode(&l, 0, 'z') == GW_LOGIN_CHANGED);
	CHECK(gw_login_unicode(&l, 0, '\r') == GW_LOGIN_SUBMIT);
	/* bounded */
	for (int i = 0; i < 1000; i++)
		gw_login_unicode(&l, 0, 'x');
	CHECK(strlen(l.pass) == sizeof(l.pass) - 1);
	gw_login_clear(&l);
	CHECK(l.pass[0] == 0 && l.user[0] == 0);
	/* Enter on the user field moves to the password; empty user never submits */
	CHECK(gw_login_unicode(&l, 0, '\r') == GW_LOGIN_CHANGED && l.focus == GW_FIELD_PASSWORD);
	CHECK(gw_login_unicode(&l, 0, '\r') == GW_LOGIN_CHANGED);
}

/* The form with the one-time code field (nestord asked for a code): a table of typing. */
static void test_login_code(void)
{
	static const struct {
		const char *user, *pass;
		bool want_code;
		enum gw_login_field focus;
		const char *keys;	  /* Unicode events, one a character */
		enum gw_login_ev last;	  /* what the last one answered */
		enum gw_login_field then; /* the focus after */
		const char *code;	  /* the code after */
	} cases[] = {
	    /* without the field: Tab and Enter never reach it */
	    {"bob", "pw", false, GW_FIELD_PASSWORD, "\t", GW_LOGIN_CHANGED, GW_FIELD_USER, ""},
	    {"bob", "pw", false, GW_FIELD_PASSWORD, "\r", GW_LOGIN_SUBMIT, GW_FIELD_PASSWORD, ""},
	    /* with it: Enter on the password moves to the code, Enter on the code submits */
	    {"bob", "pw", true, GW_FIELD_PASSWORD, "\r", GW_LOGIN_CHANGED, GW_FIELD_CODE, ""},
	    {"bob", "pw", true, GW_FIELD_CODE, "123456\r", GW_LOGIN_SUBMIT, GW_FIELD_CODE,
	     "123456"},
	    {"bob", "pw", true, GW_FIELD_USER, "\r\r42\r", GW_LOGIN_SUBMIT, GW_FIELD_CODE, "42"},
	    /* Tab goes round all three */
	    {"bob", "pw", true, GW_FIELD_PASSWORD, "\t", GW_LOGIN_CHANGED, GW_FIELD_CODE, ""},
	    {"bob", "pw", true, GW_FIELD_CODE, "\t", GW_LOGIN_CHANGED, GW_FIELD_USER, ""},
	    {"bob", "pw", true, GW_FIELD_USER, "\t\t7", GW_LOGIN_CHANGED, GW_FIELD_CODE, "7"},
	    /* no submit without a code, or without a user name */
	    {"bob", "pw", true, GW_FIELD_CODE, "\r", GW_LOGIN_CHANGED, GW_FIELD_CODE, ""},
	    {"", "pw", true, GW_FIELD_CODE, "1\r", GW_LOGIN_CHANGED, GW_FIELD_CODE, "1"},
	    /* editing: backspace, printable ASCII only */
	    {"bob", "pw", true, GW_FIELD_CODE, "12\b", GW_LOGIN_CHANGED, GW_FIELD_CODE, "1"},
	    {"bob", "pw", true, GW_FIELD_CODE, "9\x01", GW_LOGIN_NONE, GW_FIELD_CODE, "9"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gw_login l = {0};
		snprintf(l.user, sizeof(l.user), "%s", cases[i].user);
		snprintf(l.pass, sizeof(l.pass), "%s", cases[i].pass);
		l.want_code = cases[i].want_code;
		l.focus = cases[i].focus;
		enum gw_login_ev ev = GW_LOGIN_NONE;
		for (const char *k = cases[i].keys; *k; k++)
			ev = gw_login_unicode(&l, 0, (unsigned char)*k);
		CHECK_MSG(ev == cases[i].last, "case %zu: event %d", i, ev);
		CHECK_MSG(l.focus == cases[i].then, "case %zu: focus %d", i, l.focus);
		CHECK_MSG(check_streq(l.code, cases[i].code), "case %zu: code '%s'", i, l.code);
		CHECK_MSG(check_streq(l.user, cases[i].user), "case %zu: user '%s'", i, l.user);
		CHECK_MSG(check_streq(l.pass, cases[i].pass), "case %zu: password", i);
	}
	/* asked for a code: what was typed stays, the code is focused; scancodes type it */
	struct gw_login l = {0};
	snprintf(l.user, sizeof(l.user), "bob");
	snprintf(l.pass, sizeof(l.pass), "pw");
	gw_login_ask_code(&l);
	CHECK(l.want_code && l.focus == GW_FIELD_CODE);
	CHECK_STR(l.pass, "pw");
	press(&l, 0x02, false); /* 1 */
	press(&l, 0x0b, false); /* 0 */
	CHECK_STR(l.code, "10");
	CHECK(press(&l, 0x1c, false) == GW_LOGIN_SUBMIT);
	/* bounded */
	for (int i = 0; i < 200; i++)
		gw_login_unicode(&l, 0, '5');
	CHECK(strlen(l.code) == sizeof(l.code) - 1);
	gw_login_clear(&l);
	CHECK(l.code[0] == 0 && !l.want_code && l.pass[0] == 0);
}

static void test_config(void)
{
	struct gw_config c;
	char err[256];
	gw_config_defaults(&c);
	CHECK(gw_config_parse(&c, "g.conf",
			      "[gateway]\nport = 3390\ndefault_app = ledger\n"
			      "[limits]\nhandshake_timeout = 5\n",
			      err, sizeof(err)) == 0);
	CHECK(c.port == 3390 && c.handshake_timeout == 5);
	CHECK_STR(c.default_app, "ledger");
	CHECK_STR(c.metrics_listen, ""); /* off by default */
	CHECK(gw_config_parse(&c, "g.conf", "[gateway]\nmetrics_listen = [::1]:9470\n", err,
			      sizeof(err)) == 0);
	CHECK_STR(c.metrics_listen, "[::1]:9470");
	CHECK(gw_config_parse(&c, "g.conf", "[gateway]\nmetrics_listen =\n", err, sizeof(err)) ==
	      0);
	CHECK_STR(c.metrics_listen, "");
	static const struct {
		const char *text, *want;
	} bad[] = {
	    {"[gateway]\nport = 0\n", "g.conf:2: bad value '0' for gateway.port"},
	    {"[gateway]\nport = 70000\n", "gateway.port"},
	    {"[gateway]\ncertificate = /a.crt\n", "go together"},
	    {"[gateway]\nbogus = 1\n", "unknown key 'bogus'"},
	    {"[limits]\nhandshake_timeout = 0\n", "handshake_timeout"},
	    {"[gateway]\ndefault_app = ../x\n", "default_app"},
	    {"[display]\nframe_rate = 100\n", "frame_rate"},
	    {"[gateway]\nmetrics_listen = 9470\n", "expected HOST:PORT or [IPV6]:PORT"},
	    {"[gateway]\nmetrics_listen = ::1:9470\n", "metrics_listen"},
	    {"[gateway]\nmetrics_listen = 127.0.0.1:0\n", "metrics_listen"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		gw_config_defaults(&c);
		err[0] = 0;
		CHECK_MSG(gw_config_parse(&c, "g.conf", bad[i].text, err, sizeof(err)) < 0,
			  "case %zu", i);
		CHECK_MSG(strstr(err, bad[i].want) != NULL, "case %zu: '%s'", i, err);
	}
}

static unsigned count(const struct gw_fb *fb, uint32_t rgb)
{
	unsigned n = 0;
	for (unsigned y = 0; y < fb->height; y++)
		for (unsigned x = 0; x < fb->width; x++)
			n += ((const uint32_t *)(fb->pixels + y * fb->stride))[x] == rgb;
	return n;
}

static void test_draw(void)
{
	struct gw_font f;
	char err[256];
	const char *path = "/usr/share/consolefonts/Uni2-Terminus16.psf.gz";
	if (gw_font_load(&f, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: using boxes\n", err);
		gw_font_boxes(&f);
	}
	CHECK(f.width == 8 && f.height == 16);
	CHECK(gw_font_load(&(struct gw_font){0}, "/nonexistent.psf", err, sizeof(err)) < 0);
	struct gw_fb fb;
	CHECK(gw_fb_init(&fb, 0, 10) < 0);
	CHECK(gw_fb_init(&fb, 722, 401) == 0);
	CHECK(fb.stride % 256 == 0 && fb.alloc_h % 64 == 0);
	/* text draws inside the fb only, even when it runs off the edge */
	gw_text(&fb, &f, 700, 390, 2, 0xffffff, "clipped text");
	CHECK(count(&fb, 0xffffff) > 0);
	gw_draw_login(&fb, &f, &(struct gw_login_view){.user = "bob", .password_len = 4});
	unsigned field = count(&fb, 0xffffff);
	CHECK(field > 1000);
	/* the code field: a third white box */
	gw_draw_login(
	    &fb, &f,
	    &(struct gw_login_view){.user = "bob", .password_len = 4, .code = "12", .focus = 2});
	unsigned three = count(&fb, 0xffffff);
	CHECK_MSG(three > field * 4 / 3, "%u vs %u", three, field);
	struct gw_wait_view v = {.app_title = "Ledger",
				 .position = 3,
				 .estimate_ms = 90000,
				 .elapsed_ms = 5000,
				 .reason = "host session limit reached"};
	gw_draw_wait(&fb, &f, &v);
	CHECK(count(&fb, 0xecf0f1) > 100); /* foreground text */
	/* the wait screen changes every tick: visibly alive */
	struct gw_fb fb2;
	gw_fb_init(&fb2, 722, 401);
	v.tick = 1;
	gw_draw_wait(&fb2, &f, &v);
	CHECK(memcmp(fb.pixels, fb2.pixels, (size_t)fb.stride * fb.height) != 0);
	gw_draw_message(&fb, &f, "Title",
			"a long message that needs wrapping because it is longer "
			"than one line of the screen at this size, really long");
	gw_fb_finish(&fb);
	gw_fb_finish(&fb2);
	gw_font_free(&f);
}

/* The banner of an announced end: its countdown, its cut message, its size and colours. */
static void test_banner(void)
{
	struct gw_font f;
	gw_font_boxes(&f); /* 8 x 16 cells: the layout, whatever font is installed */
	static const struct {
		long long left;
		const char *want;
	} counts[] = {
	    {0, "This session is ending now."},	     {-3, "This session is ending now."},
	    {1, "This session ends in 0:01."},	     {59, "This session ends in 0:59."},
	    {120, "This session ends in 2:00."},     {3599, "This session ends in 59:59."},
	    {3600, "This session ends in 1:00:00."}, {90061, "This session ends in 25:01:01."},
	};
	char out[64];
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		gw_banner_countdown(out, sizeof(out), counts[i].left);
		CHECK_MSG(!strcmp(out, counts[i].want), "%lld s: '%s'", counts[i].left, out);
	}
	/* a 8 * 10 + 12 pixels wide banner holds 10 characters */
	static const struct {
		unsigned width;
		const char *in, *want;
	} fits[] = {
	    {92, "0123456789", "0123456789"},
	    {92, "0123456789A", "0123456..."},
	    {91, "0123456789", "012345..."},
	    {92, "caf\xc3\xa9 \xc3\xa9t\xc3\xa9 longer", "caf\xc3\xa9 \xc3\xa9t..."},
	    {92, "", ""},
	    {36, "abcd", "abc"}, /* 3 cells: no room for a cut mark and a character */
	    {36, "abc", "abc"},
	    {44, "abcde", "a..."},
	    {20, "abcd", "a"}, /* 1 cell */
	    {0, "abcd", ""},
	};
	for (size_t i = 0; i < sizeof(fits) / sizeof(fits[0]); i++) {
		gw_banner_fit(&f, fits[i].width, fits[i].in, out, sizeof(out));
		CHECK_MSG(!strcmp(out, fits[i].want), "fit '%s' in %u: '%s'", fits[i].in,
			  fits[i].width, out);
	}
	/* the output's own size bounds it too, on a character's boundary */
	char small[8];
	gw_banner_fit(&f, 1000, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", small, sizeof(small));
	CHECK_MSG(!strcmp(small, "\xc3\xa9\xc3\xa9..."), "small: '%s'", small);
	/* two lines in one row of tiles, the banner's colour everywhere but the text */
	CHECK(gw_banner_height(&f) == 50 && gw_banner_height(&f) <= 64);
	struct gw_fb fb;
	CHECK(gw_fb_init(&fb, 300, gw_banner_height(&f)) == 0);
	gw_draw_banner(&fb, &f, "This session ends in 2:00.", "Maintenance: save your work");
	unsigned bg = count(&fb, GW_BANNER_BG), fg = count(&fb, GW_BANNER_FG);
	CHECK_MSG(fg > 500 && bg > fb.width * fb.height / 2, "fg %u bg %u", fg, bg);
	CHECK(count(&fb, GW_BANNER_EDGE) == 2 * fb.width);
	CHECK(bg + fg + count(&fb, GW_BANNER_EDGE) == fb.width * fb.height);
	gw_fb_finish(&fb);
	gw_font_free(&f);
}

/* The exposition holds LINE exactly (a whole line). */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static char *render(struct gw_metrics *m)
{
	struct evbuffer *b = evbuffer_new();
	gw_metrics_render(b, m);
	size_t len = evbuffer_get_length(b);
	char *text = malloc(len + 1);
	evbuffer_remove(b, text, len);
	text[len] = '\0';
	evbuffer_free(b);
	return text;
}

static void test_metrics(void)
{
	CHECK(gw_metrics_size(200) == (size_t)sysconf(_SC_PAGESIZE)); /* the default: one page */
	struct gw_metrics *m = gw_metrics_create(4);
	CHECK(m != NULL);
	if (!m)
		return;
	gw_metrics_slot_set(m, 0, GW_M_GUEST, GW_M_CONSOLE);
	gw_metrics_slot_set(m, 1, GW_M_GUEST, GW_M_CONSOLE);
	gw_metrics_slot_set(m, 2, GW_M_LOGIN, GW_M_NONE);
	gw_metrics_slot_set(m, 3, GW_M_GUEST, GW_M_RDP);
	gw_metrics_slot_clear(m, 3);			      /* its worker was reaped */
	gw_metrics_slot_set(m, 4, GW_M_GUEST, GW_M_RDP);      /* no such slot: ignored */
	gw_metrics_slot_set(m, 0, GW_M_PHASES, GW_M_CONSOLE); /* nor such a phase */
	for (int i = 0; i < 3; i++)
		gw_metrics_accepted(m);
	gw_metrics_refused(m, GW_M_PER_ADDRESS);
	gw_metrics_refused(m, GW_M_REFUSALS); /* ignored */
	gw_metrics_crashed(m);
	gw_metrics_signin(m, GW_M_SIGNED_IN);
	gw_metrics_signin(m, GW_M_SIGNED_IN);
	gw_metrics_signin(m, GW_M_DENIED);
	gw_metrics_handshake(m, 0.2);
	gw_metrics_first_frame(m, GW_M_CONSOLE, 3.0);
	gw_metrics_first_frame(m, GW_M_NONE, 1.0); /* no guest, no first frame */
	CHECK(gw_metrics_backend("console") == GW_M_CONSOLE);
	CHECK(gw_metrics_backend("rdp") == GW_M_RDP);
	CHECK(gw_metrics_backend("none") == GW_M_NONE && gw_metrics_backend("x") == GW_M_NONE);
	char *text = render(m);
	static const char *const want[] = {
	    "# TYPE nestor_gateway_connections gauge",
	    "nestor_gateway_connections{phase=\"guest\",backend=\"console\"} 2",
	    "nestor_gateway_connections{phase=\"guest\",backend=\"rdp\"} 0",
	    "nestor_gateway_connections{phase=\"login\",backend=\"none\"} 1",
	    "nestor_gateway_connections{phase=\"fail\",backend=\"rdp\"} 0",
	    "# TYPE nestor_gateway_connections_accepted_total counter",
	    "nestor_gateway_connections_accepted_total 3",
	    "nestor_gateway_connections_refused_total{reason=\"per_address\"} 1",
	    "nestor_gateway_connections_refused_total{reason=\"limit\"} 0",
	    "nestor_gateway_worker_crashes_total 1",
	    "nestor_gateway_sign_ins_total{result=\"ok\"} 2",
	    "nestor_gateway_sign_ins_total{result=\"denied\"} 1",
	    "nestor_gateway_sign_ins_total{result=\"error\"} 0",
	    "# TYPE nestor_gateway_handshake_seconds histogram",
	    "nestor_gateway_handshake_seconds_bucket{le=\"0.1\"} 0",
	    "nestor_gateway_handshake_seconds_bucket{le=\"0.25\"} 1",
	    "nestor_gateway_handshake_seconds_bucket{le=\"+Inf\"} 1",
	    "nestor_gateway_handshake_seconds_sum 0.2",
	    "nestor_gateway_handshake_seconds_count 1",
	    "nestor_gateway_first_frame_seconds_bucket{backend=\"console\",le=\"2.5\"} 0",
	    "nestor_gateway_first_frame_seconds_bucket{backend=\"console\",le=\"5\"} 1",
	    "nestor_gateway_first_frame_seconds_count{backend=\"console\"} 1",
	    "nestor_gateway_first_frame_seconds_count{backend=\"rdp\"} 0",
	    "nestor_gateway_received_bytes_total{backend=\"none\"} 0",
	    "nestor_gateway_sent_bytes_total{backend=\"rdp\"} 0",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		CHECK_MSG(has_line(text, want[i]), "no line '%s' in:\n%s", want[i], text);
	/* series that cannot happen are left out; a phase is never guest without a backend */
	CHECK(!strstr(text, "phase=\"handshake\",backend=\"console\""));
	CHECK(!strstr(text, "phase=\"guest\",backend=\"none\""));
	CHECK(!strstr(text, "first_frame_seconds_count{backend=\"none\"}"));
	/* every line is a comment or NAME[{LABELS}] VALUE of our own */
	for (char *line = text, *end; *line; line = end + 1) {
		end = strchr(line, '\n');
		CHECK(end != NULL);
		if (!end)
			break;
		CHECK_MSG(line[0] == '#' || !strncmp(line, "nestor_gateway_", 15), "%.*s",
			  (int)(end - line), line);
	}
	free(text);

	/* the client's bytes: what TCP_INFO says this side received and had acknowledged */
	int ls = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s = -1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	CHECK(bind(ls, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(ls, 1) == 0 &&
	      getsockname(ls, (struct sockaddr *)&sa, &sl) == 0 &&
	      connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      (s = accept(ls, NULL, NULL)) >= 0);
	char buf[1500] = {0};
	CHECK(write(c, buf, 1000) == 1000 && read(s, buf, sizeof(buf)) == 1000);
	CHECK(write(s, buf, 500) == 500 && read(c, buf, sizeof(buf)) == 500);
	struct gw_metrics_tcp t = {0};
	gw_metrics_tcp_account(m, &t, s, GW_M_NONE);
	for (int i = 0; i < 100 && t.acked < 500; i++) { /* the ACK may be delayed */
		usleep(10000);
		gw_metrics_tcp_account(m, &t, s, GW_M_NONE);
	}
	CHECK(t.received == 1000 && t.acked == 500);
	CHECK(write(c, buf, 300) == 300 && read(s, buf, sizeof(buf)) == 300);
	gw_metrics_tcp_account(m, &t, s, GW_M_CONSOLE); /* only what came since: to the guest's */
	gw_metrics_tcp_account(m, &t, -1, GW_M_CONSOLE);
	gw_metrics_tcp_account(NULL, &t, s, GW_M_CONSOLE);
	text = render(m);
	CHECK(has_line(text, "nestor_gateway_received_bytes_total{backend=\"none\"} 1000"));
	CHECK(has_line(text, "nestor_gateway_sent_bytes_total{backend=\"none\"} 500"));
	CHECK(has_line(text, "nestor_gateway_received_bytes_total{backend=\"console\"} 300"));
	free(text);
	close(c);
	close(s);
	close(ls);
	gw_metrics_destroy(m);
	gw_metrics_destroy(NULL);
	/* off: nothing happens */
	gw_metrics_accepted(NULL);
	gw_metrics_slot_set(NULL, 0, GW_M_LOGIN, GW_M_NONE);
	gw_metrics_first_frame(NULL, GW_M_RDP, 1);
	CHECK(gw_metrics_protect(NULL) == 0);
}

int main(void)
{
	test_keys();
	test_login();
	test_login_code();
	test_config();
	test_draw();
	test_banner();
	test_metrics();
	/* per-address limits: IPv4 as is, IPv6 by its /64 */
	static const char *const keys[][2] = {
	    {"192.0.2.7", "192.0.2.7"},
	    {"::ffff:192.0.2.7", "192.0.2.7"},
	    {"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"},
	    {"2001:db8:1:2::1", "2001:db8:1:2::/64"},
	    {"fe80::1", "fe80::/64"},
	    {"not an address", "not an address"},
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char k[80];
		gw_limit_key(keys[i][0], k, sizeof(k));
		CHECK_MSG(!strcmp(k, keys[i][1]), "%s -> %s", keys[i][0], k);
	}
	/* the guard: what a guest may send through the gateway */
	CHECK(gw_guest_size_ok(1024, 768) && gw_guest_size_ok(4096, 4096));
	CHECK(!gw_guest_size_ok(4097, 768) && !gw_guest_size_ok(1024, 0) &&
	      !gw_guest_size_ok(65535, 65535));
	struct gw_windows w = {0};
	WINDOW_STATE_ORDER ws = {.numWindowRects = 1, .numVisibilityRects = 1};
	ws.titleInfo.length = 20;
	CHECK(!gw_window_refusal(&w, GW_WIN_CREATE, 7, &ws, 0x4e57) && w.n == 1);
	CHECK(gw_window_refusal(&w, GW_WIN_CREATE, 0x4e57, &ws, 0x4e57)); /* ours */
	CHECK(gw_window_refusal(&w, GW_WIN_UPDATE, 8, &ws, 0x4e57));	  /* unknown */
	CHECK(!gw_window_refusal(&w, GW_WIN_UPDATE, 7, &ws, 0x4e57));
	ws.numWindowRects = GW_WIN_RECTS_MAX + 1;
	CHECK(gw_window_refusal(&w, GW_WIN_UPDATE, 7, &ws, 0x4e57));
	ws.numWindowRects = 1;
	ws.titleInfo.length = GW_WIN_TITLE_MAX + 2;
	CHECK(gw_window_refusal(&w, GW_WIN_UPDATE, 7, &ws, 0x4e57));
	ws.titleInfo.length = 20;
	ICON_INFO big = {.width = 4096, .height = 4096}, small = {.width = 32, .height = 32};
	WINDOW_ICON_ORDER io = {.iconInfo = &big};
	CHECK(gw_window_refusal(&w, GW_WIN_ICON, 7, &io, 0x4e57));
	io.iconInfo = &small;
	CHECK(!gw_window_refusal(&w, GW_WIN_ICON, 7, &io, 0x4e57));
	CHECK(!gw_window_refusal(&w, GW_WIN_DELETE, 7, NULL, 0x4e57) && w.n == 0);
	CHECK(gw_window_refusal(&w, GW_WIN_DELETE, 7, NULL, 0x4e57)); /* twice */
	for (uint32_t id = 100; id < 100 + GW_WIN_MAX; id++)
		CHECK(!gw_window_refusal(&w, GW_WIN_CREATE, id, &ws, 0x4e57));
	CHECK(gw_window_refusal(&w, GW_WIN_CREATE, 5000, &ws, 0x4e57)); /* one too many */
	POINTER_CACHED_UPDATE pc = {.cacheIndex = 19};
	CHECK(!gw_pointer_refusal(GW_PTR_CACHED, &pc, 20));
	pc.cacheIndex = 20;
	CHECK(gw_pointer_refusal(GW_PTR_CACHED, &pc, 20));
	CHECK(gw_pointer_refusal(GW_PTR_CACHED, &pc, 0)); /* no cache negotiated */
	POINTER_NEW_UPDATE pn = {.xorBpp = 32};
	pn.colorPtrAttr.cacheIndex = 3;
	pn.colorPtrAttr.width = pn.colorPtrAttr.height = 32;
	CHECK(!gw_pointer_refusal(GW_PTR_NEW, &pn, 20));
	pn.colorPtrAttr.width = 5000;
	CHECK(gw_pointer_refusal(GW_PTR_NEW, &pn, 20));
	POINTER_COLOR_UPDATE pco = {.cacheIndex = 25, .width = 32, .height = 32};
	CHECK(gw_pointer_refusal(GW_PTR_COLOR, &pco, 25));
	CHECK(!gw_pointer_refusal(GW_PTR_POSITION, NULL, 0));
	return check_done("test_gateway_pure");
}
