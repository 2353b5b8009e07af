/*
 * nestor-test-rdpsrv: a small RDP server (libfreerdp-server2) that stands in
 * for a legacy guest's own RDP server in tests and benchmarks. It runs
 * inside the test guest (rdp variant) and
 *   - paints a known pattern (pattern.h) on the desktop, or in the one
 *     RemoteApp window it serves (alias "testapp") when the client asks for
 *     RemoteApp;
 *   - echoes input visibly: each key down paints a block coloured by its
 *     scancode along the top, each click a white square where it landed;
 *     and reports it on stdout ("RDPSRV KEY 30", "RDPSRV CLICK x y");
 *   - can require standard RDP security (as Windows XP does) and a user
 *     name and password (wrong ones get a red "logon" screen);
 *   - on F9 animates a box as fast as the client takes it (benchmarks);
 *   - sets its own pointer (a 32x32 green cross) when the client can take it;
 *   - with --hostile, behaves as a guest whose administrator replaced its RDP
 *     server: once the app's window is up it sends pointer cache indices
 *     beyond what was negotiated, window orders with a reserved id, for
 *     windows it never created, with an oversized title, too many rectangles
 *     and too many windows ("RDPSRV HOSTILE orders sent"), then two seconds
 *     later resizes its desktop to 8000x8000 ("RDPSRV HOSTILE resize sent").
 */
#include "pattern.h"

#include <freerdp/channels/channels.h>
#include <freerdp/channels/wtsvc.h>
#include <freerdp/codec/planar.h>
#include <freerdp/freerdp.h>
#include <freerdp/listener.h>
#include <freerdp/server/cliprdr.h>
#include <freerdp/server/rail.h>
#include <freerdp/window.h>
#include <getopt.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <winpr/ssl.h>
#include <winpr/synch.h>
#include <winpr/wlog.h>
#include <winpr/wtsapi.h>

#define TILE 64
#define WINDOW_ID 0x2001

static const char usage[] =
    "usage: nestor-test-rdpsrv [--port N] [--security rdp|tls|any] [--key FILE] [--cert FILE]\n"
    "                          [--user NAME --password PASS] [--hostile]\n"
    "                          [--encryption none]\n"
    "Test RDP server: a known pattern, visible input echo, one RemoteApp window\n"
    "(alias " RDPSRV_APP_ALIAS "). Standard RDP security needs --key (RSA, PEM);\n"
    "TLS needs --cert and --key. Default: port 3389, security any.\n";

static struct {
	unsigned port;
	const char *security, *key, *cert, *user, *password;
	bool hostile;
	bool plain; /* --encryption none: standard RDP security without encryption (fuzz corpus) */
} opt = {3389, "any", NULL, NULL, NULL, NULL, false, false};

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&out_lock);
	fputs("RDPSRV ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
	va_end(ap);
}

struct conn {
	rdpContext ctx; /* first: FreeRDP allocates ContextSize */
	freerdp_peer *peer;
	HANDLE vcm;
	RailServerContext *rail;
	CliprdrServerContext *cliprdr;
	pthread_mutex_t lock; /* the RAIL thread sends too */
	BITMAP_PLANAR_CONTEXT *planar;
	uint32_t *fb; /* 0xRRGGBB, desktop sized */
	unsigned w, h;
	bool activated, authed, rail_mode, window;
	volatile bool exec_seen, close;
	unsigned ox, oy, aw, ah; /* the painted area: desktop or window */
	unsigned keys;
	bool animate;
	unsigned frame;
	int hostile; /* --hostile: 0 nothing sent yet, 1 orders sent, 2 resize sent */
	uint64_t hostile_at;
};

static uint64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* Send a rectangle of the framebuffer as planar bitmap updates. */
static bool send_rect(struct conn *c, unsigned x0, unsigned y0, unsigned w, unsigned h)
{
	if (!c->activated || x0 >= c->w || y0 >= c->h)
		return true;
	if (x0 + w > c->w)
		w = c->w - x0;
	if (y0 + h > c->h)
		h = c->h - y0;
	BYTE *tile = malloc((size_t)TILE * TILE * 4);
	if (!tile)
		return false;
	bool ok = true;
	for (unsigned ty = y0; ty < y0 + h && ok; ty += TILE) {
		for (unsigned tx = x0; tx < x0 + w && ok; tx += TILE) {
			unsigned tw = x0 + w - tx < TILE ? x0 + w - tx : TILE;
			unsigned th = y0 + h - ty < TILE ? y0 + h - ty : TILE;
			unsigned pw = (tw + 3) & ~3u, ph = (th + 3) & ~3u; /* planar: x4 */
			for (unsigned y = 0; y < ph; y++)
				for (unsigned x = 0; x < pw; x++) {
					unsigned sx = tx + x < c->w ? tx + x : c->w - 1;
					unsigned sy = ty + y < c->h ? ty + y : c->h - 1;
					uint32_t v = c->fb[(size_t)sy * c->w + sx];
					memcpy(tile + ((size_t)y * pw + x) * 4, &v, 4); /* BGRX */
				}
			UINT32 size = 0;
			BYTE *data = freerdp_bitmap_compress_planar(
			    c->planar, tile, PIXEL_FORMAT_BGRX32, pw, ph, pw * 4, NULL, &size);
			if (!data) {
				ok = false;
				break;
			}
			BITMAP_DATA b = {.destLeft = tx,
					 .destTop = ty,
					 .destRight = tx + pw - 1,
					 .destBottom = ty + ph - 1,
					 .width = pw,
					 .height = ph,
					 .bitsPerPixel = 32,
					 .compressed = TRUE,
					 .bitmapLength = size,
					 .cbCompMainBodySize = size,
					 .cbScanWidth = pw * 4,
					 .cbUncompressedSize = pw * ph * 4,
					 .bitmapDataStream = data};
			BITMAP_UPDATE up = {.number = 1, .count = 1, .rectangles = &b};
			pthread_mutex_lock(&c->lock);
			ok = c->ctx.update->BitmapUpdate(&c->ctx, &up);
			pthread_mutex_unlock(&c->lock);
			free(data);
		}
	}
	free(tile);
	return ok;
}

static void fill(struct conn *c, unsigned x, unsigned y, unsigned w, unsigned h, uint32_t v)
{
	for (unsigned yy = y; yy < y + h && yy < c->h; yy++)
		for (unsigned xx = x; xx < x + w && xx < c->w; xx++)
			c->fb[(size_t)yy * c->w + xx] = v;
}

/* Paint the area (desktop or window) afresh and send it. */
static bool paint_all(struct conn *c)
{
	if (!c->authed) {
		fill(c, 0, 0, c->w, c->h, RDPSRV_LOGON);
		return send_rect(c, 0, 0, c->w, c->h);
	}
	if (c->rail_mode && !c->window)
		return true;
	for (unsigned y = 0; y < c->ah; y++)
		for (unsigned x = 0; x < c->aw; x++)
			c->fb[(size_t)(c->oy + y) * c->w + c->ox + x] = rdpsrv_pattern(x, y);
	return send_rect(c, c->ox, c->oy, c->aw, c->ah);
}

static bool animate(struct conn *c)
{
	unsigned w = RDPSRV_ANIM_W < c->aw ? RDPSRV_ANIM_W : c->aw;
	unsigned h = RDPSRV_ANIM_H < c->ah ? RDPSRV_ANIM_H : c->ah;
	c->frame++;
	for (unsigned y = 0; y < h; y++)
		for (unsigned x = 0; x < w; x++)
			c->fb[(size_t)(c->oy + RDPSRV_ANIM_Y + y) * c->w + c->ox + RDPSRV_ANIM_X +
			      x] = rdpsrv_anim_pixel(c->frame, x, y);
	return send_rect(c, c->ox + RDPSRV_ANIM_X, c->oy + RDPSRV_ANIM_Y, w, h);
}

/* --- RemoteApp: one window --- */

static bool window_create(struct conn *c)
{
	static const WCHAR title[] = {'N', 'e', 's', 't', 'o', 'r', ' ', 'T',
				      'e', 's', 't', ' ', 'A', 'p', 'p'};
	RECTANGLE_16 rect = {0, 0, RDPSRV_WIN_W, RDPSRV_WIN_H};
	WINDOW_ORDER_INFO oi = {0};
	WINDOW_STATE_ORDER ws = {0};
	oi.windowId = WINDOW_ID;
	oi.fieldFlags =
	    WINDOW_ORDER_TYPE_WINDOW | WINDOW_ORDER_STATE_NEW | WINDOW_ORDER_FIELD_OWNER |
	    WINDOW_ORDER_FIELD_STYLE | WINDOW_ORDER_FIELD_SHOW | WINDOW_ORDER_FIELD_TITLE |
	    WINDOW_ORDER_FIELD_CLIENT_AREA_OFFSET | WINDOW_ORDER_FIELD_CLIENT_AREA_SIZE |
	    WINDOW_ORDER_FIELD_WND_OFFSET | WINDOW_ORDER_FIELD_WND_SIZE |
	    WINDOW_ORDER_FIELD_WND_RECTS | WINDOW_ORDER_FIELD_VIS_OFFSET |
	    WINDOW_ORDER_FIELD_VISIBILITY | WINDOW_ORDER_FIELD_WND_CLIENT_DELTA |
	    WINDOW_ORDER_FIELD_RP_CONTENT | WINDOW_ORDER_FIELD_ROOT_PARENT;
	ws.style = 0x14CF0000;
	ws.extendedStyle = 0x40000;
	ws.showState = 5;
	ws.titleInfo.string = (BYTE *)title;
	ws.titleInfo.length = sizeof(title);
	ws.clientOffsetX = ws.windowOffsetX = RDPSRV_WIN_X;
	ws.clientOffsetY = ws.windowOffsetY = RDPSRV_WIN_Y;
	ws.clientAreaWidth = ws.windowWidth = RDPSRV_WIN_W;
	ws.clientAreaHeight = ws.windowHeight = RDPSRV_WIN_H;
	ws.numWindowRects = 1;
	ws.windowRects = &rect;
	ws.visibleOffsetX = RDPSRV_WIN_X;
	ws.visibleOffsetY = RDPSRV_WIN_Y;
	ws.numVisibilityRects = 1;
	ws.visibilityRects = &rect;
	pthread_mutex_lock(&c->lock);
	BOOL ok = c->ctx.update->window->WindowCreate(&c->ctx, &oi, &ws);
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static UINT rail_exec(RailServerContext *rc, const RAIL_EXEC_ORDER *e)
{
	struct conn *c = rc->custom;
	const char *prog = e->RemoteApplicationProgram ? e->RemoteApplicationProgram : "";
	while (*prog == '|')
		prog++;
	bool ok = strcmp(prog, RDPSRV_APP_ALIAS) == 0;
	say("EXEC %.64s %s", prog, ok ? "ok" : "refused");
	RAIL_EXEC_RESULT_ORDER r = {0};
	r.flags = e->flags;
	r.execResult = ok ? RAIL_EXEC_S_OK : RAIL_EXEC_E_NOT_IN_ALLOWLIST;
	r.exeOrFile.string = (BYTE *)L"t\0";
	r.exeOrFile.length = 2;
	pthread_mutex_lock(&c->lock);
	UINT u = rc->ServerExecResult(rc, &r);
	pthread_mutex_unlock(&c->lock);
	if (ok)
		c->exec_seen = true;
	else
		c->close = true;
	return u;
}

static UINT rail_syscommand(RailServerContext *rc, const RAIL_SYSCOMMAND_ORDER *s)
{
	struct conn *c = rc->custom;
	say("SYSCOMMAND 0x%x", (unsigned)s->command);
	if (s->command == 0xF060) /* SC_CLOSE */
		c->close = true;
	return CHANNEL_RC_OK;
}

static UINT rail_activate(RailServerContext *rc, const RAIL_ACTIVATE_ORDER *a)
{
	say("ACTIVATE 0x%x %d", (unsigned)a->windowId, a->enabled ? 1 : 0);
	return CHANNEL_RC_OK;
}

static UINT rail_ok(RailServerContext *rc, const void *any)
{
	return CHANNEL_RC_OK;
}

/* --- --hostile: what a replaced RDP server in the guest could send --- */

static BOOL hostile_window(struct conn *c, UINT32 id, bool create, size_t title_chars, UINT32 rects)
{
	static WCHAR title[1024];
	static RECTANGLE_16 rect[512];
	for (size_t i = 0; i < sizeof(title) / sizeof(title[0]); i++)
		title[i] = 'H';
	for (size_t i = 0; i < sizeof(rect) / sizeof(rect[0]); i++)
		rect[i] = (RECTANGLE_16){0, 0, 1, 1};
	WINDOW_ORDER_INFO oi = {0};
	WINDOW_STATE_ORDER ws = {0};
	oi.windowId = id;
	oi.fieldFlags = WINDOW_ORDER_TYPE_WINDOW | WINDOW_ORDER_FIELD_SHOW |
			WINDOW_ORDER_FIELD_TITLE | WINDOW_ORDER_FIELD_WND_RECTS |
			(create ? WINDOW_ORDER_STATE_NEW : 0);
	ws.showState = 0; /* hidden: nothing for the user to see if one got through */
	ws.titleInfo.string = (BYTE *)title;
	ws.titleInfo.length = (UINT16)(title_chars * sizeof(WCHAR));
	ws.numWindowRects = rects;
	ws.windowRects = rect;
	pthread_mutex_lock(&c->lock);
	BOOL ok = create ? c->ctx.update->window->WindowCreate(&c->ctx, &oi, &ws)
			 : c->ctx.update->window->WindowUpdate(&c->ctx, &oi, &ws);
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static bool hostile_orders(struct conn *c)
{
	POINTER_CACHED_UPDATE far = {.cacheIndex = 200};
	pthread_mutex_lock(&c->lock);
	BOOL ok = c->ctx.update->pointer->PointerCached(&c->ctx, &far);
	pthread_mutex_unlock(&c->lock);
	ok = ok && hostile_window(c, 0x4e57, true, 4, 1);   /* the gateway's own window's id */
	ok = ok && hostile_window(c, 0x7777, false, 4, 1);  /* a window never created */
	ok = ok && hostile_window(c, 0x3001, true, 600, 1); /* a 600-character title */
	ok = ok && hostile_window(c, 0x3002, true, 4, 300); /* 300 rectangles */
	for (UINT32 i = 0; ok && i < 70; i++)		    /* more windows than allowed */
		ok = hostile_window(c, 0x3100 + i, true, 4, 1);
	if (!ok)
		return false;
	for (UINT32 i = 0; i < 70; i++) { /* and away with them */
		WINDOW_ORDER_INFO del = {.windowId = 0x3100 + i,
					 .fieldFlags =
					     WINDOW_ORDER_TYPE_WINDOW | WINDOW_ORDER_STATE_DELETED};
		pthread_mutex_lock(&c->lock);
		c->ctx.update->window->WindowDelete(&c->ctx, &del);
		pthread_mutex_unlock(&c->lock);
	}
	/* the server batches orders: a paint's end sends them */
	pthread_mutex_lock(&c->lock);
	c->ctx.update->BeginPaint(&c->ctx);
	c->ctx.update->EndPaint(&c->ctx);
	pthread_mutex_unlock(&c->lock);
	say("HOSTILE orders sent");
	return true;
}

static bool hostile_resize(struct conn *c)
{
	rdpSettings *s = c->peer->settings;
	s->DesktopWidth = 8000;
	s->DesktopHeight = 8000;
	pthread_mutex_lock(&c->lock);
	BOOL ok = c->ctx.update->DesktopResize(&c->ctx);
	pthread_mutex_unlock(&c->lock);
	say("HOSTILE resize sent");
	return ok;
}

/* --- pointer: a 32x32 crosshair of our own, in cache slot 0 --- */

static bool send_pointer(struct conn *c)
{
	static BYTE xor_[32 * 32 * 4], and_[32 * 32 / 8];
	for (int y = 0; y < 32; y++)
		for (int x = 0; x < 32; x++) {
			bool on = x == 15 || x == 16 || y == 15 || y == 16;
			uint32_t v = on ? 0xff00ff00 : 0; /* opaque green cross */
			memcpy(xor_ + ((size_t)y * 32 + (size_t)x) * 4, &v, 4);
			if (!on)
				and_[y * 4 + x / 8] |= (BYTE)(0x80 >> (x % 8)); /* transparent */
		}
	POINTER_NEW_UPDATE pn = {0};
	pn.xorBpp = 32;
	pn.colorPtrAttr.cacheIndex = 0;
	pn.colorPtrAttr.xPos = 16;
	pn.colorPtrAttr.yPos = 16;
	pn.colorPtrAttr.width = 32;
	pn.colorPtrAttr.height = 32;
	pn.colorPtrAttr.lengthXorMask = sizeof(xor_);
	pn.colorPtrAttr.lengthAndMask = sizeof(and_);
	pn.colorPtrAttr.xorMaskData = xor_;
	pn.colorPtrAttr.andMaskData = and_;
	POINTER_CACHED_UPDATE pc = {.cacheIndex = 0};
	pthread_mutex_lock(&c->lock);
	BOOL ok = c->ctx.update->pointer->PointerNew(&c->ctx, &pn) &&
		  c->ctx.update->pointer->PointerCached(&c->ctx, &pc);
	pthread_mutex_unlock(&c->lock);
	return ok;
}

/* --- clipboard: proves the channel reaches this server (relays) --- */

static UINT clip_caps(CliprdrServerContext *cc, const CLIPRDR_CAPABILITIES *caps)
{
	say("CLIPRDR capabilities");
	return CHANNEL_RC_OK;
}

static UINT clip_formats(CliprdrServerContext *cc, const CLIPRDR_FORMAT_LIST *list)
{
	say("CLIPRDR formats %u", (unsigned)list->numFormats);
	CLIPRDR_FORMAT_LIST_RESPONSE r = {0};
	r.msgType = CB_FORMAT_LIST_RESPONSE;
	r.msgFlags = CB_RESPONSE_OK;
	return cc->ServerFormatListResponse(cc, &r);
}

static void clip_start(struct conn *c)
{
	if (!WTSVirtualChannelManagerIsChannelJoined(c->vcm, "cliprdr"))
		return;
	c->cliprdr = cliprdr_server_context_new(c->vcm);
	if (!c->cliprdr)
		return;
	c->cliprdr->custom = c;
	c->cliprdr->rdpcontext = &c->ctx;
	c->cliprdr->useLongFormatNames = TRUE;
	c->cliprdr->ClientCapabilities = clip_caps;
	c->cliprdr->ClientFormatList = clip_formats;
	if (c->cliprdr->Start(c->cliprdr) != CHANNEL_RC_OK) {
		cliprdr_server_context_free(c->cliprdr);
		c->cliprdr = NULL;
	}
}

/* --- input --- */

static BOOL on_key(rdpInput *in, UINT16 flags, UINT16 code)
{
	struct conn *c = (struct conn *)in->context;
	if ((flags & KBD_FLAGS_RELEASE) || !c->authed)
		return TRUE;
	code &= 0xff;
	say("KEY %u", code);
	if (code == RDPSRV_ANIM_KEY) {
		c->animate = !c->animate;
		return TRUE;
	}
	unsigned i = c->keys++ % RDPSRV_ECHO_SLOTS;
	if (RDPSRV_ECHO_X(i) + RDPSRV_ECHO_W > c->aw)
		return TRUE;
	fill(c, c->ox + RDPSRV_ECHO_X(i), c->oy + RDPSRV_ECHO_Y, RDPSRV_ECHO_W, RDPSRV_ECHO_H,
	     rdpsrv_key_colour(code));
	return send_rect(c, c->ox + RDPSRV_ECHO_X(i), c->oy + RDPSRV_ECHO_Y, RDPSRV_ECHO_W,
			 RDPSRV_ECHO_H);
}

static BOOL on_unicode(rdpInput *in, UINT16 flags, UINT16 code)
{
	if (!(flags & KBD_FLAGS_RELEASE))
		say("UNICODE %u", code);
	return TRUE;
}

static BOOL on_mouse(rdpInput *in, UINT16 flags, UINT16 x, UINT16 y)
{
	struct conn *c = (struct conn *)in->context;
	if (!(flags & PTR_FLAGS_BUTTON1) || !(flags & PTR_FLAGS_DOWN) || !c->authed)
		return TRUE;
	if (x < c->ox || y < c->oy || x >= c->ox + c->aw || y >= c->oy + c->ah)
		return TRUE;
	say("CLICK %u %u", x - c->ox, y - c->oy);
	unsigned sx = x + 6u > c->ox + c->aw ? c->ox + c->aw - 6 : x;
	unsigned sy = y + 6u > c->oy + c->ah ? c->oy + c->ah - 6 : y;
	fill(c, sx, sy, 6, 6, RDPSRV_CLICK);
	return send_rect(c, sx, sy, 6, 6);
}

static BOOL on_xmouse(rdpInput *in, UINT16 flags, UINT16 x, UINT16 y)
{
	return TRUE;
}

static BOOL on_sync(rdpInput *in, UINT32 flags)
{
	return TRUE;
}

/* --- connection --- */

static BOOL on_capabilities(freerdp_peer *p)
{
	if (p->settings->RemoteApplicationMode) {
		p->settings->RemoteApplicationSupportLevel = 0x5F;
		p->settings->RemoteWndSupportLevel = 2;
	}
	return TRUE;
}

static BOOL on_post_connect(freerdp_peer *p)
{
	return TRUE;
}

static BOOL on_activate(freerdp_peer *p)
{
	struct conn *c = (struct conn *)p->context;
	rdpSettings *s = p->settings;
	if (c->activated)
		return TRUE;
	c->w = s->DesktopWidth ? s->DesktopWidth : 1024;
	c->h = s->DesktopHeight ? s->DesktopHeight : 768;
	if (c->w > 4096 || c->h > 4096)
		return FALSE;
	c->fb = calloc((size_t)c->w * c->h, 4);
	if (!c->fb)
		return FALSE;
	s->ColorDepth = 32;
	c->rail_mode = s->RemoteApplicationMode;
	c->ox = c->rail_mode ? RDPSRV_WIN_X : 0;
	c->oy = c->rail_mode ? RDPSRV_WIN_Y : 0;
	c->aw = c->rail_mode ? RDPSRV_WIN_W : c->w;
	c->ah = c->rail_mode ? RDPSRV_WIN_H : c->h;
	const char *user = s->Username ? s->Username : "";
	const char *pass = s->Password ? s->Password : "";
	c->authed = !opt.user || (!strcmp(user, opt.user) && !strcmp(pass, opt.password));
	static const char *const known[] = {"rail", "cliprdr", "rdpdr", "rdpsnd", "drdynvc"};
	char chans[64] = "";
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (WTSVirtualChannelManagerIsChannelJoined(c->vcm, known[i])) {
			if (chans[0])
				strcat(chans, ",");
			strcat(chans, known[i]);
		}
	say("CONNECT user=%.64s auth=%s security=%s encryption=%u size=%ux%u rail=%d channels=%s",
	    user, c->authed ? "ok" : "fail",
	    s->SelectedProtocol == 0 /* PROTOCOL_RDP */ ? "rdp" : "tls",
	    (unsigned)s->EncryptionMethods, c->w, c->h, c->rail_mode ? 1 : 0,
	    chans[0] ? chans : "-");
	c->activated = true;
	if (c->authed)
		clip_start(c);
	if (c->authed && s->ColorPointerFlag && !send_pointer(c))
		return FALSE;
	if (c->rail_mode && c->authed) {
		if (!WTSVirtualChannelManagerIsChannelJoined(c->vcm, "rail"))
			return FALSE;
		c->rail = rail_server_context_new(c->vcm);
		if (!c->rail)
			return FALSE;
		c->rail->custom = c;
		c->rail->rdpcontext = &c->ctx;
		c->rail->ClientExec = rail_exec;
		c->rail->ClientSyscommand = rail_syscommand;
		c->rail->ClientActivate = rail_activate;
		c->rail->ClientHandshake = (psRailClientHandshake)rail_ok;
		c->rail->ClientClientStatus = (psRailClientClientStatus)rail_ok;
		c->rail->ClientSysparam = (psRailClientSysparam)rail_ok;
		c->rail->ClientSysmenu = (psRailClientSysmenu)rail_ok;
		c->rail->ClientNotifyEvent = (psRailClientNotifyEvent)rail_ok;
		if (c->rail->Start(c->rail) != CHANNEL_RC_OK)
			return FALSE;
		RAIL_HANDSHAKE_ORDER hs = {.buildNumber = 2600}; /* XP's */
		pthread_mutex_lock(&c->lock);
		UINT r = c->rail->ServerHandshake(c->rail, &hs);
		pthread_mutex_unlock(&c->lock);
		return r == CHANNEL_RC_OK;
	}
	return paint_all(c);
}

static BOOL ctx_new(freerdp_peer *p, rdpContext *ctx)
{
	struct conn *c = (struct conn *)ctx;
	c->peer = p;
	pthread_mutex_init(&c->lock, NULL);
	c->vcm = WTSOpenServerA((LPSTR)p->context);
	c->planar = freerdp_bitmap_planar_context_new(
	    PLANAR_FORMAT_HEADER_NA | PLANAR_FORMAT_HEADER_RLE, TILE, TILE);
	return c->vcm && c->vcm != INVALID_HANDLE_VALUE && c->planar;
}

static void ctx_free(freerdp_peer *p, rdpContext *ctx)
{
	struct conn *c = (struct conn *)ctx;
	if (c->rail) {
		c->rail->Stop(c->rail);
		rail_server_context_free(c->rail);
	}
	if (c->cliprdr) {
		c->cliprdr->Stop(c->cliprdr);
		cliprdr_server_context_free(c->cliprdr);
	}
	if (c->vcm && c->vcm != INVALID_HANDLE_VALUE)
		WTSCloseServer(c->vcm);
	freerdp_bitmap_planar_context_free(c->planar);
	free(c->fb);
	pthread_mutex_destroy(&c->lock);
}

static void *conn_main(void *arg)
{
	freerdp_peer *p = arg;
	p->ContextSize = sizeof(struct conn);
	p->ContextNew = ctx_new;
	p->ContextFree = ctx_free;
	if (!freerdp_peer_context_new(p)) {
		freerdp_peer_free(p);
		return NULL;
	}
	struct conn *c = (struct conn *)p->context;
	rdpSettings *s = p->settings;
	bool rdp = strcmp(opt.security, "tls") != 0, tls = strcmp(opt.security, "rdp") != 0;
	if (opt.key)
		s->RdpKeyFile = strdup(opt.key);
	if (tls) {
		s->CertificateFile = strdup(opt.cert);
		s->PrivateKeyFile = strdup(opt.key);
	}
	s->RdpSecurity = rdp;
	s->TlsSecurity = tls;
	s->NlaSecurity = FALSE;
	s->EncryptionLevel = opt.plain ? ENCRYPTION_LEVEL_NONE : ENCRYPTION_LEVEL_CLIENT_COMPATIBLE;
	if (opt.plain)
		s->EncryptionMethods = ENCRYPTION_METHOD_NONE;
	s->ColorDepth = 32;
	s->RemoteFxCodec = FALSE;
	s->NSCodec = FALSE;
	s->RefreshRect = TRUE;
	s->SuppressOutput = TRUE;
	s->MultifragMaxRequestSize = 0x3f0000;
	p->Capabilities = on_capabilities;
	p->PostConnect = on_post_connect;
	p->Activate = on_activate;
	p->input->KeyboardEvent = on_key;
	p->input->UnicodeKeyboardEvent = on_unicode;
	p->input->MouseEvent = on_mouse;
	p->input->ExtendedMouseEvent = on_xmouse;
	p->input->SynchronizeEvent = on_sync;
	if (!p->Initialize(p))
		goto out;
	uint64_t next_frame = 0;
	while (!c->close) {
		HANDLE h[36];
		DWORD n = p->GetEventHandles(p, h, 32);
		if (!n)
			break;
		h[n++] = WTSVirtualChannelManagerGetEventHandle(c->vcm);
		DWORD r = WaitForMultipleObjects(n, h, FALSE, c->animate ? 5 : 100);
		if (r == WAIT_FAILED)
			break;
		if (!p->CheckFileDescriptor(p) ||
		    !WTSVirtualChannelManagerCheckFileDescriptor(c->vcm))
			break;
		if (c->exec_seen && !c->window) {
			c->window = window_create(c);
			if (!c->window || !paint_all(c))
				break;
		}
		if (opt.hostile && c->window && c->hostile == 0) {
			if (!hostile_orders(c))
				break;
			c->hostile = 1;
			c->hostile_at = now_us() + 2000000;
		} else if (c->hostile == 1 && now_us() >= c->hostile_at) {
			c->hostile = 2;
			if (!hostile_resize(c))
				break;
		}
		if (c->animate && now_us() >= next_frame) {
			next_frame = now_us() + 2000; /* at most 500 frames/s */
			if (!animate(c))
				break;
		}
	}
out:
	say("DISCONNECT");
	p->Disconnect(p);
	freerdp_peer_context_free(p);
	freerdp_peer_free(p);
	return NULL;
}

static BOOL on_accept(freerdp_listener *l, freerdp_peer *p)
{
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	bool ok = pthread_create(&t, &a, conn_main, p) == 0;
	pthread_attr_destroy(&a);
	return ok;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"port", required_argument, NULL, 'p'}, {"security", required_argument, NULL, 's'},
	    {"key", required_argument, NULL, 'k'},  {"cert", required_argument, NULL, 'c'},
	    {"user", required_argument, NULL, 'u'}, {"password", required_argument, NULL, 'P'},
	    {"hostile", no_argument, NULL, 'H'},    {"encryption", required_argument, NULL, 'e'},
	    {"help", no_argument, NULL, 'h'},	    {NULL, 0, NULL, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'p':
			opt.port = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			opt.security = optarg;
			break;
		case 'k':
			opt.key = optarg;
			break;
		case 'c':
			opt.cert = optarg;
			break;
		case 'u':
			opt.user = optarg;
			break;
		case 'P':
			opt.password = optarg;
			break;
		case 'H':
			opt.hostile = true;
			break;
		case 'e':
			opt.plain = !strcmp(optarg, "none");
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	bool sec_ok = !strcmp(opt.security, "rdp") || !strcmp(opt.security, "tls") ||
		      !strcmp(opt.security, "any");
	if (optind != argc || !opt.port || opt.port > 65535 || !sec_ok || !opt.key ||
	    (strcmp(opt.security, "rdp") && !opt.cert) || (!opt.user != !opt.password)) {
		fputs(usage, stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	WLog_SetLogLevel(WLog_GetRoot(), WLOG_ERROR);
	winpr_InitializeSSL(WINPR_SSL_INIT_DEFAULT);
	WTSRegisterWtsApiFunctionTable(FreeRDP_InitWtsApi());
	freerdp_listener *l = freerdp_listener_new();
	if (!l)
		return 1;
	l->PeerAccepted = on_accept;
	if (!l->Open(l, NULL, (UINT16)opt.port)) {
		fprintf(stderr, "nestor-test-rdpsrv: cannot listen on port %u\n", opt.port);
		return 1;
	}
	say("LISTEN %u security=%s", opt.port, opt.security);
	for (;;) {
		HANDLE h[32];
		DWORD n = l->GetEventHandles(l, h, 32);
		if (!n || WaitForMultipleObjects(n, h, FALSE, INFINITE) == WAIT_FAILED)
			break;
		if (!l->CheckFileDescriptor(l))
			break;
	}
	l->Close(l);
	freerdp_listener_free(l);
	return 1;
}
