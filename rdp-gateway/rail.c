/*
 * The RemoteApp server side of a connection: our own window (the login,
 * wait and fail screens live in it until the guest's windows replace it),
 * the RAIL server channel's callbacks, and the user's window requests
 * relayed to a guest that serves RemoteApp itself (the rdp backend).
 *
 * The callbacks run on FreeRDP's RAIL channel thread: they touch only
 * fields under the peer's lock, send under it, and wake the connection's
 * thread (p->wake) with news. The rest runs on the connection's thread.
 * Nothing here blocks but a send to the client.
 */
#include "rdpc.h"
#include "worker.h"

#include <errno.h>
#include <freerdp/channels/wtsvc.h>
#include <freerdp/window.h>
#include <stdio.h>
#include <sys/socket.h>
#include <winpr/synch.h>
#include <winpr/wtsapi.h>

static void utf16_title(const char *s, RAIL_UNICODE_STRING *out, WCHAR *buf, size_t cap)
{
	size_t n = 0;
	for (; s[n] && n < cap; n++)
		buf[n] = (WCHAR)(unsigned char)s[n];
	out->string = (BYTE *)buf;
	out->length = (UINT16)(n * 2);
}

int gw_rail_window(struct gw_peer *p, bool create)
{
	WINDOW_ORDER_INFO oi = {0};
	WINDOW_STATE_ORDER ws = {0};
	RECTANGLE_16 rect = {0, 0, (UINT16)p->screen.width, (UINT16)p->screen.height};
	WCHAR title[128];
	oi.windowId = GW_WINDOW_ID;
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
		gw_screen_damage_all(p);
	}
	return ok ? 0 : -EIO;
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
	if (relay && c->windowId != GW_WINDOW_ID)
		gw_rdpc_syscommand(p->rdpc, c);
	pthread_mutex_unlock(&p->lock);
	if (!relay && c->command == 0xF060) /* SC_CLOSE: the user closed our window */
		shutdown(p->client->sockfd, SHUT_RDWR);
	return CHANNEL_RC_OK;
}

int gw_rail_start(struct gw_peer *p)
{
	if (!WTSVirtualChannelManagerIsChannelJoined(p->vcm, "rail"))
		return -ENOTCONN;
	p->rail = rail_server_context_new(p->vcm);
	if (!p->rail)
		return -ENOMEM;
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
		return -EIO;
	RAIL_HANDSHAKE_ORDER hs = {.buildNumber = 7601};
	pthread_mutex_lock(&p->lock);
	UINT r = p->rail->ServerHandshake(p->rail, &hs);
	pthread_mutex_unlock(&p->lock);
	p->rail_started = r == CHANNEL_RC_OK;
	return p->rail_started ? 0 : -EIO;
}

void gw_rail_stop(struct gw_peer *p)
{
	if (p->rail) {
		p->rail->Stop(p->rail);
		rail_server_context_free(p->rail);
	}
}
