/*
 * The browser door's protocols (rdp-gateway/webproto.c): the WebSocket
 * upgrade and frames, RFB client messages, pixel formats, keys and buttons.
 */
#include "check.h"
#include "webproto.h"

#include <freerdp/input.h>
#include <stdlib.h>
#include <string.h>

static const char UP[] =
    "GET /websockify?user=alice&app=ledger&ticket=00ff HTTP/1.1\r\n"
    "Host: gw:8444\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Protocol: binary, base64\r\nSec-WebSocket-Version: 13\r\n\r\n";

static void test_upgrade(void)
{
	struct gw_ws_upgrade u;
	const char *why;
	CHECK(gw_ws_request_end(UP, strlen(UP)) == strlen(UP));
	CHECK(gw_ws_request_end(UP, strlen(UP) - 1) == 0);
	CHECK(gw_ws_upgrade_parse(UP, strlen(UP), &u, &why) == 0);
	CHECK_STR(u.user, "alice");
	CHECK_STR(u.app, "ledger");
	CHECK_STR(u.ticket, "00ff");
	CHECK(u.binary);
	CHECK_STR(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); /* RFC 6455's own example */

	static const struct {
		const char *from, *to;
	} bad[] = {
	    {"GET /websockify", "POST /websockify"}, {"HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost"},
	    {"user=alice", "user=al%20ice"},	     {"user=alice&", ""},
	    {"ticket=00ff", "ticket=00FG"},	     {"app=ledger", "app=../x"},
	    {"Upgrade: websocket", "Upgrade: h2c"},  {"Version: 13", "Version: 8"},
	    {"dGhlIHNhbXBsZSBub25jZQ==", "short"},   {"/websockify?", "/other?"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char req[1024];
		const char *at = strstr(UP, bad[i].from);
		CHECK(at);
		snprintf(req, sizeof(req), "%.*s%s%s", (int)(at - UP), UP, bad[i].to,
			 at + strlen(bad[i].from));
		CHECK_MSG(gw_ws_upgrade_parse(req, strlen(req), &u, &why) < 0, "accepted: %s",
			  bad[i].to);
	}
	char nul[sizeof(UP)];
	memcpy(nul, UP, sizeof(UP));
	nul[20] = '\0';
	CHECK(gw_ws_upgrade_parse(nul, sizeof(UP) - 1, &u, &why) < 0);
}

struct got {
	uint8_t data[256];
	size_t len;
	int pings, closes;
};

static int collect(void *arg, enum gw_ws_event ev, uint8_t *d, size_t n)
{
	struct got *g = arg;
	if (ev == GW_WS_DATA) {
		memcpy(g->data + g->len, d, n);
		g->len += n;
	} else if (ev == GW_WS_PING) {
		g->pings++;
	} else {
		g->closes++;
	}
	return 0;
}

/* A client frame of OP with PAYLOAD (masked with a fixed key) into OUT; its length. */
static size_t frame(uint8_t *out, uint8_t first, const char *payload, size_t n)
{
	static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	out[0] = first;
	out[1] = (uint8_t)(0x80 | n);
	memcpy(out + 2, key, 4);
	for (size_t i = 0; i < n; i++)
		out[6 + i] = (uint8_t)(payload[i] ^ key[i & 3]);
	return 6 + n;
}

static void test_frames(void)
{
	uint8_t buf[512];
	struct gw_ws_dec d;
	struct got g;
	/* a binary message in two fragments, a ping between them; fed byte by byte */
	memset(&d, 0, sizeof(d));
	memset(&g, 0, sizeof(g));
	size_t n = frame(buf, 0x02, "Hel", 3);
	n += frame(buf + n, 0x89, "p", 1);
	n += frame(buf + n, 0x80, "lo", 2);
	for (size_t i = 0; i < n; i++)
		CHECK(gw_ws_decode(&d, buf + i, 1, collect, &g) == 1);
	CHECK(g.len == 5 && !memcmp(g.data, "Hello", 5) && g.pings == 1);
	/* and all at once */
	memset(&d, 0, sizeof(d));
	memset(&g, 0, sizeof(g));
	n = frame(buf, 0x82, "RFB 003.008\n", 12);
	n += frame(buf + n, 0x88, "\x03\xe8", 2);
	CHECK(gw_ws_decode(&d, buf, n, collect, &g) == (int)n);
	CHECK(g.len == 12 && g.closes == 1);

	static const uint8_t first_bad[] = {0x81, 0x8a, 0x0b, 0x40, 0x72};
	for (size_t i = 0; i < sizeof(first_bad); i++) {
		memset(&d, 0, sizeof(d));
		n = frame(buf, first_bad[i], "x", 1);
		if (first_bad[i] == 0x8a)
			continue; /* a pong is fine */
		CHECK_MSG(gw_ws_decode(&d, buf, n, collect, &g) < 0, "accepted first byte %02x",
			  first_bad[i]);
	}
	memset(&d, 0, sizeof(d));
	n = frame(buf, 0x82, "x", 1);
	buf[1] &= 0x7f; /* unmasked */
	CHECK(gw_ws_decode(&d, buf, n, collect, &g) < 0);
	memset(&d, 0, sizeof(d));
	uint8_t huge[14] = {0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4};
	CHECK(gw_ws_decode(&d, huge, sizeof(huge), collect, &g) < 0); /* 4 GB */
	memset(&d, 0, sizeof(d));
	n = frame(buf, 0x09, "x", 1); /* a fragmented ping */
	CHECK(gw_ws_decode(&d, buf, n, collect, &g) < 0);
	memset(&d, 0, sizeof(d));
	n = frame(buf, 0x80, "x", 1); /* a continuation of nothing */
	CHECK(gw_ws_decode(&d, buf, n, collect, &g) < 0);

	uint8_t h[10];
	CHECK(gw_ws_header(h, 2, 5) == 2 && h[0] == 0x82 && h[1] == 5);
	CHECK(gw_ws_header(h, 2, 300) == 4 && h[1] == 126 && h[2] == 1 && h[3] == 44);
	CHECK(gw_ws_header(h, 2, 70000) == 10 && h[1] == 127 && h[7] == 1 && h[8] == 0x11);
}

static void test_rfb(void)
{
	struct gw_rfb_msg m;
	const uint8_t key[] = {4, 1, 0, 0, 0, 0, 0xff, 0x0d};
	CHECK(gw_rfb_parse(key, sizeof(key), &m) == 8 && m.kind == GW_RFB_KEY && m.down &&
	      m.keysym == 0xff0d);
	CHECK(gw_rfb_parse(key, 7, &m) == 0);
	const uint8_t qk[] = {255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x9d};
	CHECK(gw_rfb_parse(qk, sizeof(qk), &m) == 12 && m.kind == GW_RFB_QEMU_KEY &&
	      m.keycode == 0x9d);
	const uint8_t ptr[] = {5, 0x05, 1, 0, 0, 20};
	CHECK(gw_rfb_parse(ptr, sizeof(ptr), &m) == 6 && m.buttons == 5 && m.x == 256 && m.y == 20);
	const uint8_t req[] = {3, 1, 0, 0, 0, 0, 4, 0, 3, 0};
	CHECK(gw_rfb_parse(req, sizeof(req), &m) == 10 && m.incremental && m.w == 1024 &&
	      m.h == 768);
	const uint8_t enc[] = {2,    0,	   0,	 3,    0,    0,	   0,	 7,
			       0xff, 0xff, 0xff, 0x21, 0xff, 0xff, 0xfe, 0xfe};
	CHECK(gw_rfb_parse(enc, sizeof(enc), &m) == 16 && m.desktop_size && m.qemu_key);
	const uint8_t cut[] = {6, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'};
	CHECK(gw_rfb_parse(cut, sizeof(cut), &m) == 10 && m.kind == GW_RFB_CUT_TEXT);
	const uint8_t pf[20] = {0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16};
	CHECK(gw_rfb_parse(pf, sizeof(pf), &m) == 20 && gw_rfb_pixfmt_ok(&m.pf));
	uint8_t bgrx[8] = {1, 2, 3, 9, 4, 5, 6, 9}, out[8];
	gw_rfb_convert(&m.pf, bgrx, 2, out); /* red at shift 0: RGBX */
	CHECK(out[0] == 3 && out[1] == 2 && out[2] == 1 && out[3] == 0 && out[4] == 6);
	m.pf.bpp = 16;
	CHECK(!gw_rfb_pixfmt_ok(&m.pf));

	/* what the door refuses or stops at */
	const uint8_t many[] = {2, 0, 1, 0};		      /* 256 encodings */
	const uint8_t bigcut[] = {6, 0, 0, 0, 0x7f, 0, 0, 0}; /* 2 GB of text */
	const uint8_t ext[] = {6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0};
	const uint8_t qemu_other[] = {255, 1, 0, 0};
	const uint8_t unknown[] = {99};
	CHECK(gw_rfb_parse(many, sizeof(many), &m) < 0);
	CHECK(gw_rfb_parse(bigcut, sizeof(bigcut), &m) < 0);
	CHECK(gw_rfb_parse(ext, sizeof(ext), &m) < 0);
	CHECK(gw_rfb_parse(qemu_other, sizeof(qemu_other), &m) < 0);
	CHECK(gw_rfb_parse(unknown, sizeof(unknown), &m) < 0);
	CHECK(gw_rfb_parse(NULL, 0, &m) == 0);
}

static void test_input(void)
{
	uint16_t code;
	bool ext;
	CHECK(gw_keysym_scancode(0xff0d, &code, &ext) && code == 0x1c && !ext);
	CHECK(gw_keysym_scancode(0xff52, &code, &ext) && code == 0x48 && ext);
	CHECK(gw_keysym_scancode(0xffc9, &code, &ext) && code == 0x58);
	CHECK(!gw_keysym_scancode('a', &code, &ext));
	CHECK(gw_keysym_unicode('a') == 'a' && gw_keysym_unicode(0xe9) == 0xe9);
	CHECK(gw_keysym_unicode(0x010020ac) == 0x20ac); /* the euro sign */
	CHECK(gw_keysym_unicode(0xff0d) == 0);

	uint16_t f[8];
	unsigned n = gw_rfb_pointer(0, 0, f);
	CHECK(n == 1 && f[0] == PTR_FLAGS_MOVE);
	n = gw_rfb_pointer(0, 1, f);
	CHECK(n == 2 && f[1] == (PTR_FLAGS_BUTTON1 | PTR_FLAGS_DOWN));
	n = gw_rfb_pointer(1, 4, f);
	CHECK(n == 3 && f[1] == PTR_FLAGS_BUTTON1 && f[2] == (PTR_FLAGS_BUTTON2 | PTR_FLAGS_DOWN));
	n = gw_rfb_pointer(0, 0x10, f);
	CHECK(n == 2 && (f[1] & PTR_FLAGS_WHEEL) && (f[1] & PTR_FLAGS_WHEEL_NEGATIVE));
	n = gw_rfb_pointer(0x08, 0x08, f); /* held: no second notch */
	CHECK(n == 1);
}

int main(void)
{
	test_upgrade();
	test_frames();
	test_rfb();
	test_input();
	return check_done("webproto");
}
