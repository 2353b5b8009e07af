/*
 * The gateway's pure parts: key and pointer translation, the login form's
 * editing, the configuration parser, and screen drawing.
 */
#include "check.h"
#include "draw.h"
#include "guard.h"
#include "gwconfig.h"
#include "keymap.h"

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
	CHECK(press(&l, 0x0f, false) == GW_LOGIN_CHANGED && l.focus_password);
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
	CHECK(gw_login_unicode(&l, 0, '\r') == GW_LOGIN_CHANGED && l.focus_password);
	CHECK(gw_login_unicode(&l, 0, '\r') == GW_LOGIN_CHANGED);
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

int main(void)
{
	test_keys();
	test_login();
	test_config();
	test_draw();
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
