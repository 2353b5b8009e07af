/*
 * One RDP connection, in a worker process of its own (gateway.c forks one
 * per connection; a crash here ends one user's connection only). The
 * connection moves through phases:
 *
 *   handshake -> login (own screen, if the client sent no or wrong
 *   credentials) -> wait (own screen: queue position, estimate, elapsed)
 *   -> guest (console backend: the guest's screen over VNC; rdp backend:
 *   the guest's own RDP server through rdpc.c) ; any -> fail (message, then
 *   close)
 *
 * The worker's thread waits on one set of handles (the client, the
 * channels, the guest, a wake event for the RAIL and guest-connect
 * threads) with its next deadline as the timeout. nestord is called with
 * short blocking requests from this thread only; the handshake's deadline
 * is an alarm, the write stall's the kernel's (TCP_USER_TIMEOUT). The
 * screen the client sees is one framebuffer, sent as planar-compressed
 * 64x64 tiles; damage is tracked per tile and frames are paced, so a slow
 * client only ever delays itself.
 */
#include "bapi.h"
#include "chanpolicy.h"
#include "gateway.h"
#include "keymap.h"
#include "log.h"
#include "rdpc.h"
#include "util.h"
#include "vnc.h"

#include <errno.h>
#include <freerdp/channels/wtsvc.h>
#include <freerdp/codec/planar.h>
#include <freerdp/codec/rfx.h>
#include <freerdp/freerdp.h>
#include <freerdp/server/rail.h>
#include <freerdp/update.h>
#include <freerdp/window.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <winpr/synch.h>
#include <winpr/wtsapi.h>

#define TILE 64
#define FOLLOW_S 2	       /* long-poll: the wait screen's figures are this fresh */
#define RETRY_MS 1000	       /* nestord did not answer: ask again after this */
#define ACTIVITY_MS 30000      /* at most one activity report per this */
#define NESTORD_GONE_MS 60000  /* nestord restarting: keep waiting this long */
#define LEASE_EVERY_MS 1000    /* lease renewals (nestord's lease: 3 s) */
#define FAIL_SHOW_MS 4000      /* how long a final message stays up */
#define WINDOW_ID 0x4e57       /* our one RemoteApp window */
#define GUEST_CONNECT_MS 30000 /* the rdp backend's handshake with the guest, at most */
#define OWN_MAX_W 1920	       /* our own screens (login, wait) at most this big, whatever */
#define OWN_MAX_H 1200	       /* the client asks for before signing in */

enum phase { PH_HANDSHAKE, PH_LOGIN, PH_WAIT, PH_GUEST, PH_FAIL };

struct gw_peer {
	rdpContext ctx; /* must be first: FreeRDP allocates ContextSize */
	struct gw *gw;
	freerdp_peer *client;
	bool activated;
	char leased[33];       /* the session this connection shows (its lease) */
	int64_t next_lease_ms; /* when to renew it */
	char addr[64];
	HANDLE vcm;
	HANDLE wake; /* other threads (RAIL channel, guest connect) have news for this one */
	RailServerContext *rail;
	pthread_mutex_t lock; /* sends from the RAIL thread vs ours; rail fields */

	enum phase phase;
	bool first_activation_done;
	struct gw_fb screen;
	uint8_t *dirty;
	unsigned tiles_x, tiles_y;
	BITMAP_PLANAR_CONTEXT *planar;
	RFX_CONTEXT *rfx; /* RemoteFX, when the client supports it */
	wStream *rfx_stream;
	bool suppress;
	int64_t last_frame_ms;
	bool need_resize;

	struct gw_login login;
	bool login_dirty; /* the form changed: redrawn once, at the next frame */
	int64_t login_until_ms;
	unsigned attempts;
	char message[160];

	char user[65];
	char app[65];
	char title[129];
	struct gw_session sess;
	char grant[65]; /* the session's grant from nestord (connect) */
	int64_t wait_started_ms, next_poll_ms, last_draw_ms, last_activity_ms;
	struct httpc_call follow; /* the session's long-poll in flight (follow_ev set) */
	HANDLE follow_ev;
	int64_t nestord_gone_ms; /* first failed poll of a run of them (0: none) */
	bool wait_shown;	 /* a wait-screen frame went out: the guest may replace it */
	unsigned tick;

	struct gw_vnc *vnc;
	HANDLE vnc_event;
	int buttons;

	struct gw_rdpc *rdpc;		 /* rdp backend */
	struct rdp_connect *connecting;	 /* its connection being made, on a thread */
	char secret[257];		 /* the user's password, kept only for guest_login=user */
	bool rail_relay;		 /* the guest's own RemoteApp windows are relayed */
	struct gw_windows guest_windows; /* what the guard counts of them */
	uint32_t guest_ptr_cache;	 /* pointer cache slots the guest was told of */
	unsigned guest_refusals;	 /* orders from the guest the guard dropped */
	bool own_window_gone;		 /* our wait window was replaced by the guest's */
	UINT16 guest_exec_error;	 /* the guest refused the RemoteApp program */
	HANDLE relay_chan[2];		 /* user-side cliprdr/rdpdr, relayed to the guest */
	char relay_name[2][8];
	struct gw_chan_policy chan_policy; /* the image's, for what crosses them */
	struct gw_cliprdr_state clip;
	struct gw_rdpdr_state rdpdr;
	unsigned chan_drops; /* PDUs the policy stopped */

	bool rail_mode;
	bool rail_started;
	char rail_alias[65]; /* from the client's exec, set on the RAIL thread */
	bool rail_exec_seen;
	bool window_created;
	unsigned win_w, win_h;

	int64_t fail_until_ms;
};

static int64_t now_ms(void)
{
	return util_now_ms();
}

/* --- screen and encoding --- */

static int screen_resize(struct gw_peer *p, unsigned w, unsigned h)
{
	gw_fb_finish(&p->screen);
	free(p->dirty);
	p->dirty = NULL;
	if (gw_fb_init(&p->screen, w, h) < 0)
		return -ENOMEM;
	p->tiles_x = (w + TILE - 1) / TILE;
	p->tiles_y = (h + TILE - 1) / TILE;
	if (p->rfx && !rfx_context_reset(p->rfx, w, h))
		return -ENOMEM;
	p->dirty = calloc((size_t)p->tiles_x * p->tiles_y, 1);
	return p->dirty ? 0 : -ENOMEM;
}

static void damage(struct gw_peer *p, int x, int y, int w, int h)
{
	if (!p->dirty || w <= 0 || h <= 0)
		return;
	int x0 = x < 0 ? 0 : x / TILE, y0 = y < 0 ? 0 : y / TILE;
	int x1 = (x + w - 1) / TILE, y1 = (y + h - 1) / TILE;
	if (x1 >= (int)p->tiles_x)
		x1 = (int)p->tiles_x - 1;
	if (y1 >= (int)p->tiles_y)
		y1 = (int)p->tiles_y - 1;
	for (int ty = y0; ty <= y1; ty++)
		for (int tx = x0; tx <= x1; tx++)
			p->dirty[ty * (int)p->tiles_x + tx] = 1;
}

static void damage_all(struct gw_peer *p)
{
	damage(p, 0, 0, (int)p->screen.width, (int)p->screen.height);
}

/* The dirty tiles as rectangles (clipped to the screen) into OUT; clears them. */
static size_t take_dirty(struct gw_peer *p, RFX_RECT *out)
{
	size_t k = 0;
	for (unsigned ty = 0; ty < p->tiles_y; ty++) {
		for (unsigned tx = 0; tx < p->tiles_x; tx++) {
			if (!p->dirty[ty * p->tiles_x + tx])
				continue;
			p->dirty[ty * p->tiles_x + tx] = 0;
			unsigned x = tx * TILE, y = ty * TILE;
			out[k].x = (UINT16)x;
			out[k].y = (UINT16)y;
			out[k].width =
			    (UINT16)(p->screen.width - x < TILE ? p->screen.width - x : TILE);
			out[k].height =
			    (UINT16)(p->screen.height - y < TILE ? p->screen.height - y : TILE);
			k++;
		}
	}
	return k;
}

/* RemoteFX: the dirty tiles as rectangles of one frame, in as many messages as needed. */
static bool flush_rfx(struct gw_peer *p, size_t count)
{
	rdpSettings *s = p->ctx.settings;
	RFX_RECT *rects = calloc(count, sizeof(*rects));
	if (!rects)
		return false;
	size_t k = take_dirty(p, rects);
	size_t n = 0;
	RFX_MESSAGE *msgs = rfx_encode_messages_ex(
	    p->rfx, rects, k, p->screen.pixels, p->screen.width, p->screen.height, p->screen.stride,
	    &n, s->MultifragMaxRequestSize);
	free(rects);
	if (!msgs)
		return false;
	SURFACE_BITS_COMMAND cmd = {0};
	cmd.cmdType = CMDTYPE_STREAM_SURFACE_BITS;
	cmd.bmp.codecID = s->RemoteFxCodecId;
	cmd.destRight = p->screen.width;
	cmd.destBottom = p->screen.height;
	cmd.bmp.bpp = 32;
	cmd.bmp.width = p->screen.width;
	cmd.bmp.height = p->screen.height;
	cmd.skipCompression = TRUE;
	RFX_RECT *first_rects = n ? msgs[0].rects : NULL;
	bool ok = true;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < n; i++) {
		Stream_SetPosition(p->rfx_stream, 0);
		if (ok && rfx_write_message(p->rfx, p->rfx_stream, &msgs[i])) {
			cmd.bmp.bitmapDataLength = (UINT32)Stream_GetPosition(p->rfx_stream);
			cmd.bmp.bitmapData = Stream_Buffer(p->rfx_stream);
			ok = p->ctx.update->SurfaceBits(&p->ctx, &cmd);
		} else {
			ok = false;
		}
		rfx_message_free(p->rfx, &msgs[i]);
	}
	pthread_mutex_unlock(&p->lock);
	free(first_rects); /* the messages share one rect array, owned by the caller */
	free(msgs);
	if (ok && p->phase == PH_WAIT)
		p->wait_shown = true;
	return ok;
}

/* Send dirty tiles as planar bitmap updates, in batches that fit one PDU. */
static bool flush(struct gw_peer *p, bool force)
{
	rdpSettings *s = p->ctx.settings;
	if (!p->activated || p->suppress || !p->dirty || p->need_resize)
		return true;
	if (p->rail_mode && !p->window_created)
		return true;
	int64_t now = now_ms();
	if (!force && now - p->last_frame_ms < 1000 / (int64_t)p->gw->cfg.frame_rate)
		return true;
	size_t n = (size_t)p->tiles_x * p->tiles_y, count = 0;
	for (size_t i = 0; i < n; i++)
		count += p->dirty[i];
	if (!count)
		return true;
	p->last_frame_ms = now;
	if (p->rfx)
		return flush_rfx(p, count);
	BITMAP_DATA *bd = calloc(count, sizeof(*bd));
	if (!bd)
		return false;
	RFX_RECT *tiles = calloc(count, sizeof(*tiles));
	if (!tiles) {
		free(bd);
		return false;
	}
	size_t n_tiles = take_dirty(p, tiles), k = 0;
	for (size_t t = 0; t < n_tiles; t++) {
		unsigned x = tiles[t].x, y = tiles[t].y;
		/* planar wants multiples of 4: the framebuffer is padded, clients clip */
		unsigned w = (tiles[t].width + 3u) & ~3u;
		unsigned h = (tiles[t].height + 3u) & ~3u;
		BITMAP_DATA *b = &bd[k];
		const BYTE *src = p->screen.pixels + (size_t)y * p->screen.stride + x * 4;
		UINT32 size = 0;
		b->bitmapDataStream = freerdp_bitmap_compress_planar(
		    p->planar, src, PIXEL_FORMAT_BGRX32, w, h, p->screen.stride, NULL, &size);
		if (!b->bitmapDataStream)
			continue;
		b->destLeft = x;
		b->destTop = y;
		b->width = w;
		b->height = h;
		b->destRight = x + w - 1;
		b->destBottom = y + h - 1;
		b->bitsPerPixel = 32;
		b->compressed = TRUE;
		b->bitmapLength = size;
		b->cbCompMainBodySize = size;
		b->cbScanWidth = w * 4;
		b->cbUncompressedSize = w * h * 4;
		k++;
	}
	free(tiles);
	bool ok = true;
	UINT32 max = s->MultifragMaxRequestSize ? s->MultifragMaxRequestSize : 0x3f0000;
	size_t i = 0;
	pthread_mutex_lock(&p->lock);
	while (i < k && ok) {
		size_t j = i, bytes = 1024;
		while (j < k && (j == i || bytes + bd[j].bitmapLength + 64 < max)) {
			bytes += bd[j].bitmapLength + 64;
			j++;
		}
		BITMAP_UPDATE up = {0};
		up.number = up.count = (UINT32)(j - i);
		up.rectangles = &bd[i];
		ok = p->ctx.update->BitmapUpdate(&p->ctx, &up);
		i = j;
	}
	pthread_mutex_unlock(&p->lock);
	if (ok && p->phase == PH_WAIT)
		p->wait_shown = true;
	for (size_t m = 0; m < k; m++)
		free(bd[m].bitmapDataStream);
	free(bd);
	return ok;
}

/* --- RemoteApp window --- */

static void utf16_title(const char *s, RAIL_UNICODE_STRING *out, WCHAR *buf, size_t cap)
{
	size_t n = 0;
	for (; s[n] && n < cap; n++)
		buf[n] = (WCHAR)(unsigned char)s[n];
	out->string = (BYTE *)buf;
	out->length = (UINT16)(n * 2);
}

static bool rail_window(struct gw_peer *p, bool create)
{
	WINDOW_ORDER_INFO oi = {0};
	WINDOW_STATE_ORDER ws = {0};
	RECTANGLE_16 rect = {0, 0, (UINT16)p->screen.width, (UINT16)p->screen.height};
	WCHAR title[128];
	oi.windowId = WINDOW_ID;
	oi.fieldFlags = WINDOW_ORDER_TYPE_WINDOW | WINDOW_ORDER_FIELD_TITLE |
			WINDOW_ORDER_FIELD_CLIENT_AREA_OFFSET |
			WINDOW_ORDER_FIELD_CLIENT_AREA_SIZE | WINDOW_ORDER_FIELD_WND_OFFSET |
			WINDOW_ORDER_FIELD_WND_SIZE | WINDOW_ORDER_FIELD_WND_RECTS |
			WINDOW_ORDER_FIELD_VIS_OFFSET | WINDOW_ORDER_FIELD_VISIBILITY |
			WINDOW_ORDER_FIELD_WND_CLIENT_DELTA;
	if (create)
		oi.fieldFlags |= WINDOW_ORDER_STATE_NEW | WINDOW_ORDER_FIELD_OWNER |
				 WINDOW_ORDER_FIELD_STYLE | WINDOW_ORDER_FIELD_SHOW |
				 WINDOW_ORDER_FIELD_RP_CONTENT | WINDOW_ORDER_FIELD_ROOT_PARENT;
	ws.ownerWindowId = 0;
	ws.style = 0x14CF0000;	    /* WS_OVERLAPPEDWINDOW | WS_VISIBLE | WS_CLIPSIBLINGS */
	ws.extendedStyle = 0x40000; /* WS_EX_APPWINDOW: a taskbar button */
	ws.showState = 5;	    /* SW_SHOW */
	utf16_title(p->title[0] ? p->title : "nestor", &ws.titleInfo, title, 127);
	ws.clientOffsetX = 0;
	ws.clientOffsetY = 0;
	ws.clientAreaWidth = p->screen.width;
	ws.clientAreaHeight = p->screen.height;
	ws.windowOffsetX = 0;
	ws.windowOffsetY = 0;
	ws.windowWidth = p->screen.width;
	ws.windowHeight = p->screen.height;
	ws.numWindowRects = 1;
	ws.windowRects = &rect;
	ws.visibleOffsetX = 0;
	ws.visibleOffsetY = 0;
	ws.numVisibilityRects = 1;
	ws.visibilityRects = &rect;
	pthread_mutex_lock(&p->lock);
	rdpWindowUpdate *wu = p->ctx.update->window;
	BOOL ok =
	    create ? wu->WindowCreate(&p->ctx, &oi, &ws) : wu->WindowUpdate(&p->ctx, &oi, &ws);
	pthread_mutex_unlock(&p->lock);
	if (ok) {
		p->window_created = true;
		p->win_w = p->screen.width;
		p->win_h = p->screen.height;
		damage_all(p);
	}
	return ok;
}

/* RAIL callbacks run on the channel's own thread. */
static UINT rail_client_exec(RailServerContext *rc, const RAIL_EXEC_ORDER *exec)
{
	struct gw_peer *p = rc->custom;
	const char *prog = exec->RemoteApplicationProgram ? exec->RemoteApplicationProgram : "";
	while (*prog == '|')
		prog++;
	RAIL_EXEC_RESULT_ORDER res = {0};
	res.flags = exec->flags;
	res.execResult = RAIL_EXEC_S_OK;
	/* the exe name must not be empty or the PDU is truncated */
	res.exeOrFile.string = (BYTE *)L"n\0";
	res.exeOrFile.length = 2;
	pthread_mutex_lock(&p->lock);
	snprintf(p->rail_alias, sizeof(p->rail_alias), "%s", prog);
	p->rail_exec_seen = true;
	SetEvent(p->wake);
	UINT r = rc->ServerExecResult(rc, &res);
	pthread_mutex_unlock(&p->lock);
	return r;
}

static UINT rail_client_handshake(RailServerContext *rc, const RAIL_HANDSHAKE_ORDER *h)
{
	return CHANNEL_RC_OK;
}

static UINT rail_client_status(RailServerContext *rc, const RAIL_CLIENT_STATUS_ORDER *s)
{
	return CHANNEL_RC_OK;
}

static UINT rail_client_sysparam(RailServerContext *rc, const RAIL_SYSPARAM_ORDER *s)
{
	return CHANNEL_RC_OK;
}

/*
 * With the guest's own RemoteApp, the user's window requests go to the
 * guest (under the lock: the peer thread may be replacing p->rdpc).
 */
#define RELAYED(p, call)                                                                           \
	do {                                                                                       \
		pthread_mutex_lock(&(p)->lock);                                                    \
		if ((p)->rail_relay && (p)->rdpc)                                                  \
			call;                                                                      \
		pthread_mutex_unlock(&(p)->lock);                                                  \
	} while (0)

static UINT rail_client_activate(RailServerContext *rc, const RAIL_ACTIVATE_ORDER *a)
{
	struct gw_peer *p = rc->custom;
	RELAYED(p, gw_rdpc_activate(p->rdpc, a));
	return CHANNEL_RC_OK;
}

static UINT rail_client_sysmenu(RailServerContext *rc, const RAIL_SYSMENU_ORDER *m)
{
	struct gw_peer *p = rc->custom;
	RELAYED(p, gw_rdpc_sysmenu(p->rdpc, m));
	return CHANNEL_RC_OK;
}

static UINT rail_client_window_move(RailServerContext *rc, const RAIL_WINDOW_MOVE_ORDER *m)
{
	struct gw_peer *p = rc->custom;
	RELAYED(p, gw_rdpc_window_move(p->rdpc, m));
	return CHANNEL_RC_OK;
}

static UINT rail_client_notify(RailServerContext *rc, const RAIL_NOTIFY_EVENT_ORDER *n)
{
	struct gw_peer *p = rc->custom;
	RELAYED(p, gw_rdpc_notify(p->rdpc, n));
	return CHANNEL_RC_OK;
}

static UINT rail_client_syscommand(RailServerContext *rc, const RAIL_SYSCOMMAND_ORDER *c)
{
	struct gw_peer *p = rc->custom;
	pthread_mutex_lock(&p->lock);
	bool relay = p->rail_relay && p->rdpc;
	if (relay && c->windowId != WINDOW_ID)
		gw_rdpc_syscommand(p->rdpc, c);
	pthread_mutex_unlock(&p->lock);
	if (!relay && c->command == 0xF060) /* SC_CLOSE: the user closed our window */
		shutdown(p->client->sockfd, SHUT_RDWR);
	return CHANNEL_RC_OK;
}

static bool rail_start(struct gw_peer *p)
{
	if (!WTSVirtualChannelManagerIsChannelJoined(p->vcm, "rail"))
		return false;
	p->rail = rail_server_context_new(p->vcm);
	if (!p->rail)
		return false;
	p->rail->custom = p;
	p->rail->rdpcontext = &p->ctx;
	p->rail->ClientHandshake = rail_client_handshake;
	p->rail->ClientClientStatus = rail_client_status;
	p->rail->ClientExec = rail_client_exec;
	p->rail->ClientSysparam = rail_client_sysparam;
	p->rail->ClientActivate = rail_client_activate;
	p->rail->ClientSyscommand = rail_client_syscommand;
	p->rail->ClientSysmenu = rail_client_sysmenu;
	p->rail->ClientWindowMove = rail_client_window_move;
	p->rail->ClientNotifyEvent = rail_client_notify;
	if (p->rail->Start(p->rail) != CHANNEL_RC_OK)
		return false;
	RAIL_HANDSHAKE_ORDER hs = {.buildNumber = 7601};
	pthread_mutex_lock(&p->lock);
	UINT r = p->rail->ServerHandshake(p->rail, &hs);
	pthread_mutex_unlock(&p->lock);
	p->rail_started = r == CHANNEL_RC_OK;
	return p->rail_started;
}

/* --- phases --- */

static void set_leased(struct gw_peer *p, const char *id)
{
	snprintf(p->leased, sizeof(p->leased), "%s", id);
	p->next_lease_ms = now_ms() + LEASE_EVERY_MS;
}

/* nestord turns the session disconnected if this worker stops renewing (it died). */
static void renew_lease(struct gw_peer *p)
{
	if (!p->leased[0] || now_ms() < p->next_lease_ms)
		return;
	const char *ids[1] = {p->leased};
	gw_bapi_lease(p->gw->cfg.api_socket, p->gw->id, ids, 1);
	p->next_lease_ms = now_ms() + LEASE_EVERY_MS;
}

static void show_fail(struct gw_peer *p, const char *title, const char *msg)
{
	set_leased(p, "");
	log_info("peer %s: %s: %s", p->addr, title, msg);
	p->phase = PH_FAIL;
	p->fail_until_ms = now_ms() + FAIL_SHOW_MS;
	gw_draw_message(&p->screen, &p->gw->font, title, msg);
	damage_all(p);
	flush(p, true);
}

static void draw_login(struct gw_peer *p)
{
	struct gw_login_view v = {.user = p->login.user,
				  .password_len = strlen(p->login.pass),
				  .focus_password = p->login.focus_password,
				  .message = p->message,
				  .app_title = p->title[0] ? p->title : p->app};
	gw_draw_login(&p->screen, &p->gw->font, &v);
	damage_all(p);
}

static void draw_wait(struct gw_peer *p)
{
	struct gw_wait_view v = {.app_title = p->sess.title[0] ? p->sess.title : p->app,
				 .state = p->sess.state,
				 .position =
				     !strcmp(p->sess.state, "queued") ? p->sess.position : 0,
				 .estimate_ms = p->sess.estimate_ms,
				 .elapsed_ms = now_ms() - p->wait_started_ms,
				 .reason = p->sess.reason,
				 .tick = p->tick++};
	gw_draw_wait(&p->screen, &p->gw->font, &v);
	damage_all(p);
	p->last_draw_ms = now_ms();
}

static void enter_login(struct gw_peer *p, const char *user, const char *msg)
{
	if (p->phase != PH_LOGIN) /* the deadline runs from the first login screen */
		p->login_until_ms = now_ms() + (int64_t)p->gw->cfg.login_timeout * 1000;
	p->phase = PH_LOGIN;
	gw_login_clear(&p->login);
	snprintf(p->login.user, sizeof(p->login.user), "%s", user ? user : "");
	p->login.focus_password = p->login.user[0] != '\0';
	snprintf(p->message, sizeof(p->message), "%s", msg ? msg : "");
	draw_login(p);
}

/* Authenticate and connect through nestord; wipes PASSWORD. */
static void try_connect(struct gw_peer *p, const char *user, char *password)
{
	char msg[256];
	struct gw_session s;
	snprintf(p->user, sizeof(p->user), "%s", user);
	/* an rdp image may sign in to its guest as the user: kept until then */
	snprintf(p->secret, sizeof(p->secret), "%s", password);
	int r = gw_bapi_connect(p->gw->cfg.api_socket, user, password, p->app, p->addr, &s, msg,
				sizeof(msg));
	explicit_bzero(password, strlen(password));
	if (r == 0) {
		p->sess = s;
		snprintf(p->grant, sizeof(p->grant), "%s", s.grant);
		snprintf(p->title, sizeof(p->title), "%s", s.title);
		p->phase = PH_WAIT;
		p->wait_started_ms = now_ms();
		p->next_poll_ms = 0;
		log_info("peer %s: user=%s session=%s app=%s %s", p->addr, user, s.id, p->app,
			 s.state);
		if (p->rail_mode && p->window_created)
			rail_window(p, false); /* the title is known now */
		draw_wait(p);
		return;
	}
	explicit_bzero(p->secret, sizeof(p->secret));
	if (r == 401) {
		p->attempts++;
		if (p->attempts >= p->gw->cfg.login_attempts) {
			show_fail(p, "Sign-in failed", "Too many failed attempts. Goodbye.");
			return;
		}
		char m[160];
		snprintf(m, sizeof(m), "Wrong user name or password (%u of %u)", p->attempts,
			 p->gw->cfg.login_attempts);
		enter_login(p, user, m);
		return;
	}
	if (r == 403 || r == 429) {
		show_fail(p, r == 403 ? "Access refused" : "Not now", msg);
		return;
	}
	if (r == 404) {
		show_fail(p, "Unknown app", msg);
		return;
	}
	show_fail(p, "Cannot start", msg);
}

/* Copy the guest's pixels (BGRX, GW x GH, STRIDE bytes a row) into what the client sees. */
static void blit(struct gw_peer *p, const uint8_t *px, int gw_, int gh, int stride, int x, int y,
		 int w, int h)
{
	if (!px)
		return;
	int x1 = x + w > (int)p->screen.width ? (int)p->screen.width : x + w;
	int y1 = y + h > (int)p->screen.height ? (int)p->screen.height : y + h;
	x1 = x1 > gw_ ? gw_ : x1;
	y1 = y1 > gh ? gh : y1;
	x = x < 0 ? 0 : x;
	y = y < 0 ? 0 : y;
	if (x1 <= x || y1 <= y)
		return;
	for (int yy = y; yy < y1; yy++)
		memcpy(p->screen.pixels + (size_t)yy * p->screen.stride + (size_t)x * 4,
		       px + (size_t)yy * (size_t)stride + (size_t)x * 4, (size_t)(x1 - x) * 4);
	damage(p, x, y, x1 - x, y1 - y);
}

static void on_vnc_damage(void *arg, int x, int y, int w, int h)
{
	struct gw_peer *p = arg;
	int gw_, gh;
	const uint8_t *px = gw_vnc_pixels(p->vnc, &gw_, &gh);
	blit(p, px, gw_, gh, gw_ * 4, x, y, w, h);
}

static void on_rdp_damage(void *arg, int x, int y, int w, int h)
{
	struct gw_peer *p = arg;
	int gw_, gh, stride;
	if (!p->rdpc)
		return; /* still connecting: the whole buffer is copied once connected */
	const uint8_t *px = gw_rdpc_pixels(p->rdpc, &gw_, &gh, &stride);
	blit(p, px, gw_, gh, stride, x, y, w, h);
}

/* An order from the guest the guard dropped: logged (the first few), never relayed. */
static void refused(struct gw_peer *p, const char *what, const char *why)
{
	if (p->guest_refusals++ < 8)
		log_warn("peer %s: session=%s the guest sent %s: %s: dropped", p->addr, p->sess.id,
			 what, why);
}

/* The guest's size becomes the session's: desktop resize, or a RAIL window resize. */
static void on_guest_resize(void *arg, int w, int h)
{
	struct gw_peer *p = arg;
	rdpSettings *s = p->ctx.settings;
	log_debug("peer %s: guest screen %dx%d", p->addr, w, h);
	if (!gw_guest_size_ok((uint32_t)w, (uint32_t)h)) {
		refused(p, "a screen size", "larger than any desktop the gateway shows");
		return;
	}
	if ((unsigned)w == p->screen.width && (unsigned)h == p->screen.height)
		return;
	if (p->rail_relay) {
		screen_resize(p, (unsigned)w, (unsigned)h); /* the guest's windows live in it */
		return;
	}
	if (p->rail_mode) {
		screen_resize(p, (unsigned)w, (unsigned)h);
		if (p->window_created)
			rail_window(p, false);
		return;
	}
	if (s->DesktopResize) {
		screen_resize(p, (unsigned)w, (unsigned)h);
		s->DesktopWidth = (UINT32)w;
		s->DesktopHeight = (UINT32)h;
		p->need_resize = true; /* sent from the loop, outside libvncclient */
	}
	/* else: the guest is shown at the top left of the client's desktop, clipped to it */
	else if (s->DesktopWidth && s->DesktopHeight) {
		unsigned cw = (unsigned)w < s->DesktopWidth ? (unsigned)w : s->DesktopWidth;
		unsigned ch = (unsigned)h < s->DesktopHeight ? (unsigned)h : s->DesktopHeight;
		if (cw != p->screen.width || ch != p->screen.height)
			screen_resize(p, cw, ch);
	}
}

/* --- rdp backend: the guest's own RDP server --- */

static BOOL on_rdp_window(void *arg, int kind, const WINDOW_ORDER_INFO *oi, const void *o)
{
	struct gw_peer *p = arg;
	if (!p->rail_relay)
		return TRUE; /* a guest without RemoteApp: our own window shows its desktop */
	const char *why = gw_window_refusal(&p->guest_windows, kind, oi->windowId, o, WINDOW_ID);
	if (why) {
		refused(p, "a window order", why);
		return TRUE;
	}
	rdpWindowUpdate *wu = p->ctx.update->window;
	BOOL ok = TRUE;
	pthread_mutex_lock(&p->lock);
	if (!p->own_window_gone && kind == GW_WIN_CREATE) {
		/* the guest's first window replaces our wait window */
		WINDOW_ORDER_INFO del = {.windowId = WINDOW_ID,
					 .fieldFlags =
					     WINDOW_ORDER_TYPE_WINDOW | WINDOW_ORDER_STATE_DELETED};
		ok = wu->WindowDelete(&p->ctx, &del);
		p->own_window_gone = true;
	}
	switch (kind) {
	case GW_WIN_CREATE:
		ok = ok && wu->WindowCreate(&p->ctx, oi, o);
		break;
	case GW_WIN_UPDATE:
		ok = wu->WindowUpdate(&p->ctx, oi, o);
		break;
	case GW_WIN_DELETE:
		ok = wu->WindowDelete(&p->ctx, oi);
		break;
	case GW_WIN_ICON:
		ok = wu->WindowIcon(&p->ctx, oi, o);
		break;
	case GW_WIN_CACHED_ICON:
		ok = wu->WindowCachedIcon(&p->ctx, oi, o);
		break;
	}
	pthread_mutex_unlock(&p->lock);
	return ok;
}

static BOOL on_rdp_pointer(void *arg, int kind, const void *u)
{
	struct gw_peer *p = arg;
	rdpPointerUpdate *pu = p->ctx.update->pointer;
	const char *why = gw_pointer_refusal(kind, u, p->guest_ptr_cache);
	if (why) {
		refused(p, "a pointer", why);
		return TRUE;
	}
	BOOL ok = TRUE;
	pthread_mutex_lock(&p->lock);
	if (p->activated) {
		switch (kind) {
		case GW_PTR_POSITION:
			ok = pu->PointerPosition(&p->ctx, u);
			break;
		case GW_PTR_SYSTEM:
			ok = pu->PointerSystem(&p->ctx, u);
			break;
		case GW_PTR_COLOR:
			ok = pu->PointerColor(&p->ctx, u);
			break;
		case GW_PTR_NEW:
			ok = pu->PointerNew(&p->ctx, u);
			break;
		case GW_PTR_CACHED:
			ok = pu->PointerCached(&p->ctx, u);
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return ok;
}

/* rail channel thread */
static void on_rdp_exec_result(void *arg, const RAIL_EXEC_RESULT_ORDER *r)
{
	struct gw_peer *p = arg;
	if (r->execResult != RAIL_EXEC_S_OK) {
		pthread_mutex_lock(&p->lock);
		p->guest_exec_error = r->execResult;
		SetEvent(p->wake);
		pthread_mutex_unlock(&p->lock);
	}
}

static void on_rdp_min_max(void *arg, const RAIL_MINMAXINFO_ORDER *m)
{
	struct gw_peer *p = arg;
	pthread_mutex_lock(&p->lock);
	if (p->rail)
		p->rail->ServerMinMaxInfo(p->rail, m);
	pthread_mutex_unlock(&p->lock);
}

static void on_rdp_local_move_size(void *arg, const RAIL_LOCALMOVESIZE_ORDER *m)
{
	struct gw_peer *p = arg;
	pthread_mutex_lock(&p->lock);
	if (p->rail)
		p->rail->ServerLocalMoveSize(p->rail, m);
	pthread_mutex_unlock(&p->lock);
}

#define CLIP_MAX_DEFAULT (8u << 20) /* clipboard_max_bytes = 0 */

/*
 * One relayed PDU (relay I: 0 cliprdr, 1 rdpdr) through the image's channel
 * policy (chanpolicy.c): forwarded, rewritten, refused back to its sender,
 * or dropped.
 */
static void relay_pdu(struct gw_peer *p, int i, enum gw_chan_dir dir, const BYTE *data, size_t len)
{
	BYTE *out = malloc(len ? len : 1); /* outputs are never longer than inputs */
	if (!out)
		return;
	size_t outlen = 0;
	enum gw_chan_verdict v =
	    i == 0 ? gw_cliprdr_filter(&p->clip, &p->chan_policy, dir, data, len, out, len, &outlen)
		   : gw_rdpdr_filter(&p->rdpdr, dir, data, len, out, len, &outlen);
	const BYTE *send = v == GW_CHAN_PASS ? data : out;
	size_t n = v == GW_CHAN_PASS ? len : outlen;
	bool to_guest = (dir == GW_CHAN_TO_GUEST) != (v == GW_CHAN_REPLY);
	if (v == GW_CHAN_DROP) {
		if (p->chan_drops++ < 8)
			log_info("peer %s: session=%s %s PDU %s stopped by the image's policy",
				 p->addr, p->sess.id, p->relay_name[i],
				 dir == GW_CHAN_TO_GUEST ? "to the guest" : "from the guest");
	} else if (to_guest) {
		if (p->rdpc)
			gw_rdpc_channel_send(p->rdpc, p->relay_name[i], send, n);
	} else {
		ULONG written;
		pthread_mutex_lock(&p->lock);
		WTSVirtualChannelWrite(p->relay_chan[i], (PCHAR)send, (ULONG)n, &written);
		pthread_mutex_unlock(&p->lock);
	}
	free(out);
}

/* A relayed channel's PDU from the guest to the user. */
static void on_rdp_channel(void *arg, const char *name, const BYTE *data, size_t len, UINT32 flags,
			   size_t total)
{
	struct gw_peer *p = arg;
	for (int i = 0; i < 2; i++)
		if (p->relay_chan[i] && !strcmp(p->relay_name[i], name))
			relay_pdu(p, i, GW_CHAN_TO_USER, data, len);
}

/* ... and from the user to the guest. */
static void relay_from_user(struct gw_peer *p)
{
	for (int i = 0; i < 2; i++) {
		ULONG n = 0;
		while (p->relay_chan[i] && p->rdpc &&
		       WTSVirtualChannelRead(p->relay_chan[i], 0, NULL, 0, &n) && n) {
			BYTE *buf = malloc(n);
			ULONG got = 0;
			if (!buf)
				return;
			if (WTSVirtualChannelRead(p->relay_chan[i], 0, (PCHAR)buf, n, &got) && got)
				relay_pdu(p, i, GW_CHAN_TO_GUEST, buf, got);
			free(buf);
		}
	}
}

static void open_relays(struct gw_peer *p, const struct gw_guest *g)
{
	const char *names[2] = {g->clipboard ? "cliprdr" : NULL, g->drive ? "rdpdr" : NULL};
	p->chan_policy.text_only = g->clipboard_text_only;
	p->chan_policy.max_bytes = g->clipboard_max ? g->clipboard_max : CLIP_MAX_DEFAULT;
	gw_cliprdr_init(&p->clip);
	gw_rdpdr_init(&p->rdpdr);
	for (int i = 0; i < 2; i++) {
		if (!names[i] || !WTSVirtualChannelManagerIsChannelJoined(p->vcm, names[i]))
			continue;
		p->relay_chan[i] =
		    WTSVirtualChannelOpen(p->vcm, WTS_CURRENT_SESSION, (LPSTR)names[i]);
		snprintf(p->relay_name[i], sizeof(p->relay_name[i]), "%s", names[i]);
		if (p->relay_chan[i])
			log_info("peer %s: session=%s relaying %s (image policy%s)", p->addr,
				 p->sess.id, names[i],
				 i			    ? ": drives only"
				 : p->chan_policy.text_only ? ": text only"
							    : ": all formats");
	}
}

static void close_relays(struct gw_peer *p)
{
	for (int i = 0; i < 2; i++) {
		if (p->relay_chan[i])
			WTSVirtualChannelClose(p->relay_chan[i]);
		p->relay_chan[i] = NULL;
	}
}

static const struct gw_rdpc_cbs rdpc_cbs = {
    .damage = on_rdp_damage,
    .resize = on_guest_resize,
    .window = on_rdp_window,
    .exec_result = on_rdp_exec_result,
    .min_max = on_rdp_min_max,
    .local_move_size = on_rdp_local_move_size,
    .channel = on_rdp_channel,
    .pointer = on_rdp_pointer,
};

/*
 * Connecting to a guest under TCG takes a second or two (its side of the
 * RDP handshake and key exchange run emulated): done on a thread of its own
 * so the wait screen keeps moving meanwhile.
 */
struct rdp_connect {
	struct gw_peer *p;
	struct gw_guest g;
	char user[65], password[257], program[1100];
	struct gw_rdpc_params rp;
	struct gw_rdpc *c;
	bool ok, aborted;
	char err[256];
	int64_t t0;
	volatile bool done;
	pthread_t thread;
};

static void *rdp_connect_main(void *arg)
{
	struct rdp_connect *j = arg;
	j->ok = gw_rdpc_connect(j->c, j->err, sizeof(j->err));
	__atomic_store_n(&j->done, true, __ATOMIC_RELEASE);
	SetEvent(j->p->wake);
	return NULL;
}

static bool connect_rdp_begin(struct gw_peer *p)
{
	struct rdp_connect *j = calloc(1, sizeof(*j));
	if (!j || gw_bapi_guest(p->gw->cfg.api_socket, p->sess.id, p->grant, &j->g) < 0) {
		free(j);
		explicit_bzero(p->secret, sizeof(p->secret));
		show_fail(p, "Cannot show your app", "The session service did not say how.");
		return false;
	}
	struct gw_guest *g = &j->g;
	rdpSettings *s = p->ctx.settings;
	bool as_user = !strcmp(g->login, "user");
	snprintf(j->user, sizeof(j->user), "%s", as_user ? p->user : g->user);
	snprintf(j->password, sizeof(j->password), "%s", as_user ? p->secret : g->password);
	explicit_bzero(p->secret, sizeof(p->secret));
	explicit_bzero(g->password, sizeof(g->password));
	snprintf(j->program, sizeof(j->program), "%s", g->program);
	if (!j->program[0])
		snprintf(j->program, sizeof(j->program), "||%s", p->app);
	bool relay = p->rail_mode && g->remoteapp;
	/* desktop: the user's size; RemoteApp: the user's desktop, where the guest's
	 * windows are placed; a guest without RemoteApp: its desktop in our window */
	unsigned w = s->DesktopWidth, h = s->DesktopHeight;
	if (p->rail_mode && !relay) {
		w = p->gw->cfg.width;
		h = p->gw->cfg.height;
	}
	j->rp = (struct gw_rdpc_params){.host = g->host,
					.port = g->port,
					.security = g->security[0] ? g->security : "rdp",
					.user = j->user,
					.domain = as_user ? "" : g->domain,
					.password = j->password,
					.width = w,
					.height = h,
					.program = relay ? j->program : NULL,
					.clipboard = g->clipboard,
					.drive = g->drive,
					/* the user's cache: only known when it sent it
					 * (large pointers); 20 is what every client has */
					.pointer_cache = !s->ColorPointerFlag  ? 0
							 : s->PointerCacheSize ? s->PointerCacheSize
									       : 20};
	/* rdpc tells the guest of at most 25 slots (what XP's RDP knows) */
	p->guest_ptr_cache = j->rp.pointer_cache < 25 ? j->rp.pointer_cache : 25;
	memset(&p->guest_windows, 0, sizeof(p->guest_windows));
	j->p = p;
	j->t0 = now_ms();
	if (relay) {
		/* the guest's window orders may come while connecting */
		pthread_mutex_lock(&p->lock);
		p->rail_relay = true;
		pthread_mutex_unlock(&p->lock);
	}
	j->c = gw_rdpc_new(&j->rp, &rdpc_cbs, p, j->err, sizeof(j->err));
	/* the client copied the credentials */
	explicit_bzero(j->password, sizeof(j->password));
	/* the user's side of relayed channels first: the guest may speak at once */
	open_relays(p, g);
	if (!j->c || pthread_create(&j->thread, NULL, rdp_connect_main, j) != 0) {
		close_relays(p);
		gw_rdpc_close(j->c);
		free(j);
		p->rail_relay = false;
		show_fail(p, "Cannot show your app", "Out of resources.");
		return false;
	}
	p->connecting = j;
	return true;
}

/* Wait for the connecting thread and take its result (NULL: failed, closed). */
static struct gw_rdpc *connect_rdp_join(struct gw_peer *p, struct rdp_connect **out)
{
	struct rdp_connect *j = p->connecting;
	p->connecting = NULL;
	pthread_join(j->thread, NULL);
	*out = j;
	if (j->ok)
		return j->c;
	gw_rdpc_close(j->c);
	return NULL;
}

/* The connection to the guest is made (or failed): show it. */
static bool connect_rdp_finish(struct gw_peer *p)
{
	struct rdp_connect *j;
	struct gw_rdpc *c = connect_rdp_join(p, &j);
	struct gw_guest *g = &j->g;
	if (!c) {
		close_relays(p);
		pthread_mutex_lock(&p->lock);
		p->rail_relay = false;
		pthread_mutex_unlock(&p->lock);
		log_warn("peer %s: session=%s guest RDP at %s:%u: %s", p->addr, p->sess.id, g->host,
			 g->port, j->err);
		free(j);
		if (p->own_window_gone) {
			p->own_window_gone = false;
			rail_window(p, true);
		}
		show_fail(p, "Cannot show your app",
			  "The app's own remote desktop did not answer.");
		return false;
	}
	pthread_mutex_lock(&p->lock);
	p->rdpc = c;
	bool relay = p->rail_relay;
	pthread_mutex_unlock(&p->lock);
	/* RemoteApp relayed: the guest's windows live in its desktop; a desktop: the
	 * client's own size now (our screens were capped until someone signed in) */
	if (relay ||
	    (!p->rail_mode && (p->screen.width != j->rp.width || p->screen.height != j->rp.height)))
		screen_resize(p, j->rp.width, j->rp.height);
	on_rdp_damage(p, 0, 0, (int)j->rp.width, (int)j->rp.height);
	log_info("peer %s: session=%s guest RDP %s:%u %ux%u%s in %lld ms", p->addr, p->sess.id,
		 g->host, g->port, j->rp.width, j->rp.height, relay ? " RemoteApp relayed" : "",
		 (long long)(now_ms() - j->t0));
	free(j);
	return true;
}

static void close_rdp_guest(struct gw_peer *p)
{
	close_relays(p);
	pthread_mutex_lock(&p->lock);
	struct gw_rdpc *c = p->rdpc;
	p->rdpc = NULL;
	p->rail_relay = false;
	if (c && p->activated) {
		/* the guest's pointer shape goes with it */
		POINTER_SYSTEM_UPDATE def = {.type = SYSPTR_DEFAULT};
		p->ctx.update->pointer->PointerSystem(&p->ctx, &def);
	}
	pthread_mutex_unlock(&p->lock);
	gw_rdpc_close(c);
}

/* Why the guest went away, as nestord tells it (it may take a moment to notice). */
static void ended_message(struct gw_peer *p, char *out, size_t len)
{
	struct gw_session s;
	snprintf(out, len, "The application was closed.");
	if (gw_bapi_wait(p->gw->cfg.api_socket, p->sess.id, p->grant, "connected", 2, &s) < 0)
		return;
	if (!strncmp(s.reason, "lost", 4))
		snprintf(out, len,
			 "Its computer stopped unexpectedly and your work there is lost. "
			 "Connect again to start a new one.");
	else if (s.reason[0] && (!strcmp(s.state, "ended") || !strcmp(s.state, "ending")))
		snprintf(out, len, "%s.", s.reason);
}

/* The guest is gone: its message goes in our own window again. */
static void guest_gone(struct gw_peer *p, const char *title, const char *msg)
{
	close_rdp_guest(p);
	if (p->rail_mode) {
		screen_resize(p, p->win_w, p->win_h);
		if (p->own_window_gone) {
			p->own_window_gone = false;
			rail_window(p, true);
		}
	}
	show_fail(p, title, msg);
}

static void guest_shown(struct gw_peer *p);

static void enter_guest(struct gw_peer *p)
{
	if (!strcmp(p->sess.backend, "rdp")) {
		connect_rdp_begin(p); /* the wait screen stays until it is done */
		return;
	} else {
		explicit_bzero(p->secret, sizeof(p->secret));
		p->vnc = gw_vnc_connect(p->sess.vnc, on_vnc_damage, on_guest_resize, p);
		if (!p->vnc) {
			show_fail(p, "Cannot show your app",
				  "The guest's screen is not reachable.");
			return;
		}
		p->vnc_event =
		    CreateFileDescriptorEvent(NULL, FALSE, FALSE, gw_vnc_fd(p->vnc), WINPR_FD_READ);
	}
	guest_shown(p);
}

static void guest_shown(struct gw_peer *p)
{
	if (gw_bapi_attach(p->gw->cfg.api_socket, p->sess.id, p->grant, p->gw->id) < 0)
		log_warn("peer %s: session=%s attach failed", p->addr, p->sess.id);
	set_leased(p, p->sess.id);
	p->phase = PH_GUEST;
	p->last_activity_ms = now_ms();
	/* the guest's first full update replaces the wait screen: no black frame between */
	if (p->vnc)
		gw_vnc_refresh(p->vnc);
	log_info("peer %s: session=%s showing the guest", p->addr, p->sess.id);
}

static bool guest_state(const char *state)
{
	return !strcmp(state, "ready") || !strcmp(state, "connected") ||
	       !strcmp(state, "disconnected");
}

static void follow_end(struct gw_peer *p)
{
	if (p->follow_ev)
		CloseHandle(p->follow_ev);
	p->follow_ev = NULL;
	httpc_call_cancel(&p->follow);
}

/*
 * Follow the session with nestord's long-poll: it answers once the state
 * changes, or after FOLLOW_S (the queue position and estimate move without
 * a state change). The worker waits on its socket with everything else.
 */
static bool follow_start(struct gw_peer *p)
{
	if (gw_bapi_wait_start(&p->follow, p->gw->cfg.api_socket, p->sess.id, p->grant,
			       p->sess.state, FOLLOW_S) < 0)
		return false;
	p->follow_ev = CreateFileDescriptorEventA(NULL, FALSE, FALSE, p->follow.fd, WINPR_FD_READ);
	if (!p->follow_ev) {
		httpc_call_cancel(&p->follow);
		return false;
	}
	return true;
}

/* What nestord said about the session (R: 0 and S, or an error). */
static void session_news(struct gw_peer *p, int r, const struct gw_session *s)
{
	int64_t now = now_ms();
	if (r < 0 && r != -EPROTO) {
		/* nestord is not answering (restarting?): the session is in its
		 * database, so keep the user waiting for a while */
		p->next_poll_ms = now + RETRY_MS;
		if (!p->nestord_gone_ms) {
			p->nestord_gone_ms = now;
			log_warn("peer %s: session=%s nestord is not answering: waiting", p->addr,
				 p->sess.id);
			snprintf(p->sess.reason, sizeof(p->sess.reason),
				 "the session service is restarting");
		} else if (now - p->nestord_gone_ms > NESTORD_GONE_MS) {
			show_fail(p, "Cannot start", "The session service went away.");
		}
		return;
	}
	if (r != 0) {
		show_fail(p, "Cannot start", "Your session is gone.");
		return;
	}
	if (p->nestord_gone_ms)
		log_info("peer %s: session=%s nestord answers again", p->addr, p->sess.id);
	p->nestord_gone_ms = 0;
	p->sess = *s;
	p->next_poll_ms = 0; /* follow on at once */
	if (!strcmp(s->state, "ended") || !strcmp(s->state, "ending"))
		show_fail(p, "Your session could not start",
			  s->reason[0] ? s->reason : "It ended.");
}

static void poll_session(struct gw_peer *p)
{
	int64_t now = now_ms();
	if (p->connecting) {
		struct rdp_connect *j = p->connecting;
		if (__atomic_load_n(&j->done, __ATOMIC_ACQUIRE)) {
			if (connect_rdp_finish(p))
				guest_shown(p);
			return;
		}
		if (!j->aborted && now - j->t0 > GUEST_CONNECT_MS) {
			log_warn("peer %s: session=%s guest RDP handshake not done after %d s",
				 p->addr, p->sess.id, GUEST_CONNECT_MS / 1000);
			j->aborted = true;
			gw_rdpc_abort(j->c);
		}
		if (now - p->last_draw_ms >= 1000)
			draw_wait(p);
		return;
	}
	if (p->follow_ev) {
		struct gw_session s;
		int r = gw_bapi_wait_read(&p->follow, &s);
		if (r == -EAGAIN)
			goto draw;
		follow_end(p);
		session_news(p, r, &s);
		if (p->phase != PH_WAIT)
			return;
	}
	if (!p->follow_ev && now >= p->next_poll_ms) {
		if (guest_state(p->sess.state)) {
			/* switch once the wait screen was seen, however fast the guest was */
			if (p->wait_shown) {
				enter_guest(p);
				return;
			}
			p->next_poll_ms = p->last_frame_ms + 1000 / (int64_t)p->gw->cfg.frame_rate;
		} else if (!follow_start(p)) {
			session_news(p, -ECONNREFUSED, NULL);
			if (p->phase != PH_WAIT)
				return;
		}
	}
draw:
	if (now - p->last_draw_ms >= 1000) /* at least once a second */
		draw_wait(p);
}

static void report_activity(struct gw_peer *p)
{
	int64_t now = now_ms();
	if (p->phase == PH_GUEST && now - p->last_activity_ms >= ACTIVITY_MS) {
		p->last_activity_ms = now;
		gw_bapi_post(p->gw->cfg.api_socket, p->sess.id, p->grant, "activity");
	}
}

/* --- FreeRDP callbacks (this thread) --- */

/* The login form changed or was submitted (the password is wiped by try_connect). */
static void login_event(struct gw_peer *p, enum gw_login_ev ev)
{
	if (ev == GW_LOGIN_CHANGED) {
		p->login_dirty = true; /* drawn with the next frame, however fast the keys come */
	} else if (ev == GW_LOGIN_SUBMIT) {
		char user[65], pass[257];
		snprintf(user, sizeof(user), "%s", p->login.user);
		snprintf(pass, sizeof(pass), "%s", p->login.pass);
		gw_login_clear(&p->login);
		try_connect(p, user, pass);
	}
}

static BOOL on_keyboard(rdpInput *input, UINT16 flags, UINT16 code)
{
	struct gw_peer *p = (struct gw_peer *)input->context;
	if (p->phase == PH_LOGIN) {
		login_event(p, gw_login_key(&p->login, flags, code));
	} else if (p->phase == PH_GUEST && p->rdpc) {
		gw_rdpc_key(p->rdpc, flags, code);
		report_activity(p);
	} else if (p->phase == PH_GUEST && p->vnc) {
		int q = gw_qnum(flags, code);
		if (q > 0)
			gw_vnc_key(p->vnc, q, !(flags & GW_KBD_RELEASE));
		report_activity(p);
	}
	return TRUE;
}

static BOOL on_unicode(rdpInput *input, UINT16 flags, UINT16 code)
{
	struct gw_peer *p = (struct gw_peer *)input->context;
	if (p->phase == PH_LOGIN) {
		login_event(p, gw_login_unicode(&p->login, flags, code));
	} else if (p->phase == PH_GUEST && p->rdpc) {
		gw_rdpc_unicode(p->rdpc, flags, code);
		report_activity(p);
	} else if (p->phase == PH_GUEST && p->vnc) {
		gw_vnc_keysym(p->vnc, gw_keysym(code), !(flags & GW_KBD_RELEASE));
		report_activity(p);
	}
	return TRUE;
}

static BOOL on_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
	struct gw_peer *p = (struct gw_peer *)input->context;
	if (p->phase == PH_GUEST && p->rdpc) {
		gw_rdpc_mouse(p->rdpc, flags, x, y);
		report_activity(p);
		return TRUE;
	}
	if (p->phase != PH_GUEST || !p->vnc)
		return TRUE;
	int wheel;
	p->buttons = gw_buttons(flags, p->buttons, &wheel);
	gw_vnc_pointer(p->vnc, x, y, p->buttons);
	if (wheel) {
		gw_vnc_pointer(p->vnc, x, y, p->buttons | wheel);
		gw_vnc_pointer(p->vnc, x, y, p->buttons);
	}
	report_activity(p);
	return TRUE;
}

static BOOL on_extended_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
	struct gw_peer *p = (struct gw_peer *)input->context;
	if (p->phase == PH_GUEST && p->rdpc) {
		gw_rdpc_xmouse(p->rdpc, flags, x, y);
		return TRUE;
	}
	return on_mouse(input, 0x0800, x, y); /* extra buttons: treat as a move */
}

static BOOL on_synchronize(rdpInput *input, UINT32 flags)
{
	return TRUE;
}

static BOOL on_refresh_rect(rdpContext *ctx, BYTE count, const RECTANGLE_16 *areas)
{
	struct gw_peer *p = (struct gw_peer *)ctx;
	for (BYTE i = 0; i < count; i++)
		damage(p, areas[i].left, areas[i].top, areas[i].right - areas[i].left + 1,
		       areas[i].bottom - areas[i].top + 1);
	if (!count)
		damage_all(p);
	return TRUE;
}

static BOOL on_suppress_output(rdpContext *ctx, BYTE allow, const RECTANGLE_16 *area)
{
	struct gw_peer *p = (struct gw_peer *)ctx;
	p->suppress = !allow;
	if (allow)
		damage_all(p);
	return TRUE;
}

static BOOL on_capabilities(freerdp_peer *client)
{
	rdpSettings *s = client->settings;
	if (s->RemoteApplicationMode) {
		/* without these the client drops RAIL (2.11: level 3 is refused) */
		s->RemoteApplicationSupportLevel = 0x5F; /* RAIL_LEVEL_SUPPORTED and friends */
		s->RemoteWndSupportLevel = 2;
	}
	return TRUE;
}

static BOOL on_post_connect(freerdp_peer *client)
{
	return TRUE;
}

static BOOL on_activate(freerdp_peer *client)
{
	struct gw_peer *p = (struct gw_peer *)client->context;
	rdpSettings *s = client->settings;
	p->activated = true;
	alarm(0); /* the handshake is done */
	p->need_resize = false;
	if (p->first_activation_done) {
		/* reactivation after a desktop resize: resend everything */
		if (p->vnc)
			gw_vnc_refresh(p->vnc);
		damage_all(p);
		return TRUE;
	}
	p->first_activation_done = true;
	p->rail_mode = s->RemoteApplicationMode;
	/* a RemoteApp client names its app after activation: that wait is bounded too */
	p->login_until_ms = now_ms() + (int64_t)p->gw->cfg.login_timeout * 1000;
	if (s->ColorDepth < 32)
		s->ColorDepth = 32; /* planar at 32 bpp is what every client we support takes */
	if (s->RemoteFxCodec && p->gw->cfg.remotefx) {
		p->rfx = rfx_context_new(TRUE);
		p->rfx_stream = Stream_New(NULL, 64 * 1024);
		if (p->rfx && p->rfx_stream) {
			p->rfx->mode = RLGR3;
			rfx_context_set_pixel_format(p->rfx, PIXEL_FORMAT_BGRX32);
		} else {
			rfx_context_free(p->rfx);
			p->rfx = NULL;
		}
	}
	unsigned w = s->DesktopWidth ? s->DesktopWidth : p->gw->cfg.width;
	unsigned h = s->DesktopHeight ? s->DesktopHeight : p->gw->cfg.height;
	/* nobody has signed in yet: what we draw is bounded, whatever the client asked
	 * (the rest of a larger desktop stays black) */
	w = w > OWN_MAX_W ? OWN_MAX_W : w;
	h = h > OWN_MAX_H ? OWN_MAX_H : h;
	if (p->rail_mode) {
		w = 720; /* the window the wait screen lives in until the guest's size is known */
		h = 400;
	}
	if (screen_resize(p, w, h) < 0)
		return FALSE;
	/* the TCP peer is who connected; what the client says of itself is only logged */
	if (s->ClientAddress && *s->ClientAddress)
		log_info("peer %s: the client calls itself %.64s", p->addr, s->ClientAddress);
	log_info("peer %s: activated %ux%u%s, %s security, %s", p->addr, w, h,
		 p->rail_mode ? " RemoteApp" : "", s->UseRdpSecurityLayer ? "RDP" : "TLS",
		 p->rfx ? "RemoteFX" : "planar");

	if (p->rail_mode) {
		if (!rail_start(p)) {
			log_warn("peer %s: RemoteApp asked for but the rail channel is not joined",
				 p->addr);
			return FALSE;
		}
		return TRUE; /* the app alias arrives with the client's exec */
	}
	snprintf(p->app, sizeof(p->app), "%s", p->gw->cfg.default_app);
	if (s->AlternateShell && *s->AlternateShell && util_name_valid(s->AlternateShell))
		snprintf(p->app, sizeof(p->app), "%s", s->AlternateShell);
	return TRUE;
}

/* After activation (and, for RemoteApp, the exec): credentials or the login screen. */
static void begin(struct gw_peer *p)
{
	rdpSettings *s = p->ctx.settings;
	if (!p->app[0]) {
		show_fail(p, "No app", "This gateway has no default app: ask for one by name.");
		return;
	}
	const char *user = s->Username ? s->Username : "";
	if (*user && s->Password && *s->Password && util_name_valid(user)) {
		char pass[257];
		snprintf(pass, sizeof(pass), "%s", s->Password);
		explicit_bzero(s->Password, strlen(s->Password));
		try_connect(p, user, pass);
		return;
	}
	if (s->Password)
		explicit_bzero(s->Password, strlen(s->Password));
	enter_login(p, util_name_valid(user) ? user : "", NULL);
}

static BOOL context_new(freerdp_peer *client, rdpContext *ctx)
{
	struct gw_peer *p = (struct gw_peer *)ctx;
	p->gw = client->ContextExtra;
	p->client = client;
	pthread_mutex_init(&p->lock, NULL);
	p->vcm = WTSOpenServerA((LPSTR)client->context);
	if (!p->vcm || p->vcm == INVALID_HANDLE_VALUE)
		return FALSE;
	p->wake = CreateEvent(NULL, TRUE, FALSE, NULL);
	if (!p->wake)
		return FALSE;
	p->planar = freerdp_bitmap_planar_context_new(
	    PLANAR_FORMAT_HEADER_NA | PLANAR_FORMAT_HEADER_RLE, TILE, TILE);
	return p->planar != NULL;
}

static void context_free(freerdp_peer *client, rdpContext *ctx)
{
	struct gw_peer *p = (struct gw_peer *)ctx;
	if (p->rail) {
		p->rail->Stop(p->rail);
		rail_server_context_free(p->rail);
	}
	if (p->vcm && p->vcm != INVALID_HANDLE_VALUE)
		WTSCloseServer(p->vcm);
	if (p->wake)
		CloseHandle(p->wake);
	freerdp_bitmap_planar_context_free(p->planar);
	rfx_context_free(p->rfx);
	if (p->rfx_stream)
		Stream_Free(p->rfx_stream, TRUE);
	gw_fb_finish(&p->screen);
	free(p->dirty);
	gw_login_clear(&p->login);
	explicit_bzero(p->secret, sizeof(p->secret));
	explicit_bzero(p->grant, sizeof(p->grant));
	pthread_mutex_destroy(&p->lock);
}

/* --- the connection's thread --- */

/*
 * The handshake's deadline: FreeRDP 2 blocks in parts of it, so the alarm
 * cuts the socket under it (shutdown is async-signal-safe); the blocked read
 * then ends and the connection with it.
 */
static volatile sig_atomic_t handshake_cut;
static int client_fd = -1;

static void on_alarm(int sig)
{
	(void)sig;
	handshake_cut = 1;
	if (client_fd >= 0)
		shutdown(client_fd, SHUT_RDWR);
}

/*
 * The socket's own limits: a client that stops reading (the window stays
 * shut) or vanishes (no ACKs, no keepalive answers) is cut after
 * STALL_S seconds instead of holding its worker forever.
 */
static void socket_limits(int fd, unsigned stall_s)
{
	int one = 1, idle = 60, intvl = 10, cnt = 3;
	unsigned ms = stall_s * 1000;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	if (ms)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

static bool has_dirty(const struct gw_peer *p)
{
	size_t n = p->dirty ? (size_t)p->tiles_x * p->tiles_y : 0;
	for (size_t i = 0; i < n; i++)
		if (p->dirty[i])
			return true;
	return false;
}

/*
 * How long the connection's thread may sleep: until its next deadline (a
 * paced frame, a redraw, a poll, the login or fail deadline), 0 when FreeRDP
 * still holds input it has read. Everything else wakes it: the client's and
 * the guest's sockets, the channels, and the wake event other threads set.
 * At most a second, as a safety net only.
 */
static DWORD next_timeout(struct gw_peer *p, bool more)
{
	if (more || p->need_resize)
		return 0;
	int64_t now = now_ms(), due = now + 1000;
	int64_t frame = p->last_frame_ms + 1000 / (int64_t)p->gw->cfg.frame_rate;
#define DUE(t)                                                                                     \
	do {                                                                                       \
		if ((t) < due)                                                                     \
			due = (t);                                                                 \
	} while (0)
	if (p->activated && !p->suppress && has_dirty(p))
		DUE(frame);
	switch (p->phase) {
	case PH_LOGIN:
		DUE(p->login_until_ms + 1);
		if (p->login_dirty)
			DUE(frame);
		break;
	case PH_WAIT:
		DUE(p->last_draw_ms + 1000);
		if (p->connecting)
			DUE(p->connecting->t0 + GUEST_CONNECT_MS + 1);
		else if (!p->follow_ev)
			DUE(p->next_poll_ms);
		break;
	case PH_FAIL:
		DUE(p->fail_until_ms + 1);
		break;
	default:
		break;
	}
	if (p->leased[0])
		DUE(p->next_lease_ms);
#undef DUE
	return due <= now ? 0 : (DWORD)(due - now);
}

int gw_peer_run(struct gw *gw, freerdp_peer *client)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "%s", client->hostname);
	client_fd = client->sockfd;
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	sigaction(SIGALRM, &sa, NULL);
	alarm(gw->cfg.handshake_timeout); /* cleared by the first activation */
	socket_limits(client->sockfd, gw->cfg.stall_timeout);
	client->ContextExtra = gw;
	client->ContextSize = sizeof(struct gw_peer);
	client->ContextNew = context_new;
	client->ContextFree = context_free;
	if (!freerdp_peer_context_new(client)) {
		log_err("peer %s: cannot create its context", addr);
		freerdp_peer_free(client);
		return 1;
	}
	struct gw_peer *p = (struct gw_peer *)client->context;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);

	rdpSettings *s = client->settings;
	/* the contents the listener read: this process cannot open the key */
	s->CertificateContent = strdup(gw->cert_pem);
	s->PrivateKeyContent = strdup(gw->key_pem);
	s->RdpKeyContent = strdup(gw->key_pem);
	s->TlsSecurity = TRUE;
	s->AllowedTlsCiphers = strdup(gw->cfg.tls_ciphers);
	s->NlaSecurity = FALSE; /* NLA needs the NT hash of the password: PAM cannot give it */
	s->RdpSecurity = gw->cfg.rdp_security;
	s->EncryptionLevel = ENCRYPTION_LEVEL_CLIENT_COMPATIBLE;
	s->ColorDepth = 32;
	s->SuppressOutput = TRUE;
	s->RefreshRect = TRUE;
	s->DesktopResize = TRUE;
	s->RemoteFxCodec = gw->cfg.remotefx; /* used if the client offers it too */
	s->NSCodec = FALSE;
	s->MultifragMaxRequestSize = 0x3f0000;
	client->Capabilities = on_capabilities;
	client->PostConnect = on_post_connect;
	client->Activate = on_activate;
	client->input->KeyboardEvent = on_keyboard;
	client->input->UnicodeKeyboardEvent = on_unicode;
	client->input->MouseEvent = on_mouse;
	client->input->ExtendedMouseEvent = on_extended_mouse;
	client->input->SynchronizeEvent = on_synchronize;
	client->update->RefreshRect = on_refresh_rect;
	client->update->SuppressOutput = on_suppress_output;
	if (!client->Initialize(client)) {
		log_warn("peer %s: initialisation failed", addr);
		goto out;
	}
	log_debug("peer %s: connected", addr);

	bool begun = false, more = false;
	while (!handshake_cut) {
		HANDLE h[44];
		DWORD n = client->GetEventHandles(client, h, 32);
		if (!n)
			break;
		h[n++] = WTSVirtualChannelManagerGetEventHandle(p->vcm);
		h[n++] = p->wake;
		if (p->follow_ev && p->phase != PH_WAIT)
			follow_end(p);
		if (p->follow_ev)
			h[n++] = p->follow_ev;
		if (p->vnc_event)
			h[n++] = p->vnc_event;
		if (p->rdpc)
			n += gw_rdpc_handles(p->rdpc, h + n, 38 - n);
		for (int i = 0; i < 2; i++) {
			void *ev = NULL;
			DWORD len = 0;
			if (p->relay_chan[i] && n < 40 &&
			    WTSVirtualChannelQuery(p->relay_chan[i], WTSVirtualEventHandle, &ev,
						   &len) &&
			    ev) {
				h[n++] = *(HANDLE *)ev;
				WTSFreeMemory(ev);
			}
		}
		if (WaitForMultipleObjects(n, h, FALSE, next_timeout(p, more)) == WAIT_FAILED)
			break;
		ResetEvent(p->wake);
		if (!client->CheckFileDescriptor(client))
			break;
		/* a PDU may already be read and decrypted: no event will say so */
		more = client->HasMoreToRead && client->HasMoreToRead(client);
		if (!WTSVirtualChannelManagerCheckFileDescriptor(p->vcm))
			break;
		if (!p->activated)
			continue;
		if (!begun) {
			if (p->rail_mode) {
				pthread_mutex_lock(&p->lock);
				bool seen = p->rail_exec_seen;
				if (seen)
					snprintf(p->app, sizeof(p->app), "%s", p->rail_alias);
				pthread_mutex_unlock(&p->lock);
				if (!seen && now_ms() > p->login_until_ms) {
					log_warn(
					    "peer %s: RemoteApp client sent no program in %u s, "
					    "cutting it",
					    p->addr, p->gw->cfg.login_timeout);
					break;
				}
				if (!seen)
					continue;
				if (!util_name_valid(p->app)) {
					rail_window(p, true);
					show_fail(p, "Unknown app", "That app name is not valid.");
					begun = true;
					continue;
				}
				rail_window(p, true);
			}
			begun = true;
			begin(p);
		}
		if (p->need_resize) {
			p->need_resize = false;
			pthread_mutex_lock(&p->lock);
			client->update->DesktopResize(client->context);
			pthread_mutex_unlock(&p->lock);
			p->activated = false; /* the client reactivates */
			continue;
		}
		switch (p->phase) {
		case PH_LOGIN:
			if (now_ms() > p->login_until_ms) {
				show_fail(p, "Sign-in timed out", "Connect again to sign in.");
				break;
			}
			if (p->login_dirty &&
			    now_ms() - p->last_frame_ms >= 1000 / (int64_t)p->gw->cfg.frame_rate) {
				p->login_dirty = false;
				draw_login(p);
			}
			break;
		case PH_WAIT:
			poll_session(p);
			break;
		case PH_GUEST:
			if (p->rdpc) {
				relay_from_user(p);
				pthread_mutex_lock(&p->lock);
				UINT16 exec_error = p->guest_exec_error;
				pthread_mutex_unlock(&p->lock);
				if (exec_error) {
					log_warn(
					    "peer %s: session=%s the guest refused the app (RAIL "
					    "exec result %u)",
					    p->addr, p->sess.id, exec_error);
					guest_gone(p, "Cannot start your app",
						   "The app's computer refused to start it.");
				} else if (!gw_rdpc_pump(p->rdpc)) {
					log_info("peer %s: session=%s guest RDP closed", p->addr,
						 p->sess.id);
					char why[300];
					ended_message(p, why, sizeof(why));
					guest_gone(p, "Your session has ended", why);
				}
			}
			if (p->vnc && !gw_vnc_pump(p->vnc)) {
				log_info("peer %s: session=%s guest screen closed", p->addr,
					 p->sess.id);
				CloseHandle(p->vnc_event);
				p->vnc_event = NULL;
				gw_vnc_close(p->vnc);
				p->vnc = NULL;
				char why[300];
				ended_message(p, why, sizeof(why));
				show_fail(p, "Your session has ended", why);
			}
			break;
		case PH_FAIL:
			if (now_ms() > p->fail_until_ms)
				goto out;
			break;
		default:
			break;
		}
		if (!flush(p, false))
			break;
		renew_lease(p);
	}
out:
	log_info("peer %s: disconnected", p->addr);
	set_leased(p, ""); /* no renewal may bring it back after the detach */
	if (p->phase == PH_GUEST && p->sess.id[0])
		gw_bapi_post(gw->cfg.api_socket, p->sess.id, p->grant, "detach");
	follow_end(p);
	if (p->vnc_event)
		CloseHandle(p->vnc_event);
	gw_vnc_close(p->vnc);
	p->vnc = NULL;
	if (p->connecting) {
		struct rdp_connect *j = p->connecting;
		gw_rdpc_abort(j->c); /* the user left: stop waiting for the guest */
		gw_rdpc_close(connect_rdp_join(p, &j));
		free(j);
	}
	close_rdp_guest(p);
	client->Disconnect(client);
	freerdp_peer_context_free(client);
	freerdp_peer_free(client);
	if (handshake_cut)
		log_warn("peer %s: handshake not done after %u s, cut", addr,
			 gw->cfg.handshake_timeout);
	return 0;
}
