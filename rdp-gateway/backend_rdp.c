/*
 * The rdp backend: the gateway as an RDP client (rdpc.c) of the guest's
 * own RDP server. The guest's drawing is rendered into rdpc's buffer and
 * copied into the connection's framebuffer (sent with our own encoding);
 * input is relayed as it came; what the guest sends back passes the guard
 * (guard.c: its desktop size, pointer shapes and cache slots, RemoteApp
 * window orders) and the relayed clipboard and drive channels pass the
 * image's channel policy (chanpolicy.c). A guest that serves RemoteApp
 * itself has its windows relayed; rail.c relays the user's requests back.
 *
 * The connection to the guest is made on a thread of its own, which may
 * block for the whole handshake (at most GUEST_CONNECT_MS, then aborted);
 * everything else runs on the connection's thread, except the guest's
 * RemoteApp PDUs, which rdpc calls from its channel thread (under lock).
 */
#include "backend.h"
#include "log.h"
#include "rdpc.h"
#include "webproto.h"
#include "worker.h"

#include <errno.h>
#include <freerdp/channels/wtsvc.h>
#include <freerdp/update.h>
#include <freerdp/window.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <winpr/synch.h>
#include <winpr/wtsapi.h>

#define GUEST_CONNECT_MS 30000 /* the rdp backend's handshake with the guest, at most */

/*
 * Connecting to a guest under TCG takes a second or two (its side of the
 * RDP handshake and key exchange run emulated): done on a thread of its own
 * so the wait screen keeps moving meanwhile.
 */
struct gw_rdp_connect {
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

static void on_rdp_damage(void *arg, int x, int y, int w, int h)
{
	struct gw_peer *p = arg;
	int gw_, gh, stride;
	if (!p->rdpc)
		return; /* still connecting: the whole buffer is copied once connected */
	const uint8_t *px = gw_rdpc_pixels(p->rdpc, &gw_, &gh, &stride);
	gw_screen_blit(p, px, gw_, gh, stride, x, y, w, h);
}

static void on_rdp_resize(void *arg, int w, int h)
{
	gw_screen_guest_resize(arg, w, h);
}

static BOOL on_rdp_window(void *arg, int kind, const WINDOW_ORDER_INFO *oi, const void *o)
{
	struct gw_peer *p = arg;
	if (!p->rail_relay)
		return TRUE; /* a guest without RemoteApp: our own window shows its desktop */
	const char *why = gw_window_refusal(&p->guest_windows, kind, oi->windowId, o, GW_WINDOW_ID);
	if (why) {
		gw_peer_refused(p, "a window order", why);
		return TRUE;
	}
	rdpWindowUpdate *wu = p->ctx.update->window;
	BOOL ok = TRUE;
	pthread_mutex_lock(&p->lock);
	if (!p->own_window_gone && kind == GW_WIN_CREATE) {
		/* the guest's first window replaces our wait window */
		WINDOW_ORDER_INFO del = {.windowId = GW_WINDOW_ID,
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
		gw_peer_refused(p, "a pointer", why);
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

#define CLIP_MAX_DEFAULT                                                                           \
	8388600u /* clipboard_max_bytes = 0: what a relayed PDU can hold (8 MiB)                   \
		  */

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
		       WTSVirtualChannelRead(p->relay_chan[i], 0, NULL, 0, &n)) {
			if (!n) { /* an empty message: taken off the queue, or it would stay */
				char none;
				ULONG got = 0;
				if (!WTSVirtualChannelRead(p->relay_chan[i], 0, &none, sizeof(none),
							   &got))
					break;
				continue;
			}
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
    .resize = on_rdp_resize,
    .window = on_rdp_window,
    .exec_result = on_rdp_exec_result,
    .min_max = on_rdp_min_max,
    .local_move_size = on_rdp_local_move_size,
    .channel = on_rdp_channel,
    .pointer = on_rdp_pointer,
};

static void *rdp_connect_main(void *arg)
{
	struct gw_rdp_connect *j = arg;
	j->ok = gw_rdpc_connect(j->c, j->err, sizeof(j->err));
	__atomic_store_n(&j->done, true, __ATOMIC_RELEASE);
	SetEvent(j->p->wake);
	return NULL;
}

static bool connect_rdp_begin(struct gw_peer *p)
{
	struct gw_rdp_connect *j = calloc(1, sizeof(*j));
	if (!j || gw_bapi_guest(p->gw->cfg.api_socket, p->sess.id, p->grant, &j->g) < 0) {
		free(j);
		explicit_bzero(p->secret, sizeof(p->secret));
		gw_peer_fail(p, "Cannot show your app", "The session service did not say how.");
		return false;
	}
	struct gw_guest *g = &j->g;
	rdpSettings *s = p->ctx.settings;
	bool as_user = !strcmp(g->login, "user");
	if (as_user && !strncmp(p->secret, GW_LAUNCH_PREFIX, strlen(GW_LAUNCH_PREFIX))) {
		/* a browser: the ticket is no Windows password */
		free(j);
		explicit_bzero(p->secret, sizeof(p->secret));
		explicit_bzero(g->password, sizeof(g->password));
		gw_peer_fail(p, "Open it with its .rdp file",
			     "This app signs in to Windows with your own password, which a "
			     "browser link does not carry.");
		return false;
	}
	snprintf(j->user, sizeof(j->user), "%s", as_user ? p->user : g->user);
	snprintf(j->password, sizeof(j->password), "%s", as_user ? p->secret : g->password);
	explicit_bzero(p->secret, sizeof(p->secret));
	explicit_bzero(g->password, sizeof(g->password));
	snprintf(j->program, sizeof(j->program), "%s", g->program);
	if (!j->program[0])
		snprintf(j->program, sizeof(j->program), "||%s", p->app);
	/* another host's gateway serves the app in RemoteApp windows of its own, or (a
	 * desktop client) names it as the shell */
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
					.shell = g->fleet_host && !relay ? p->app : NULL,
					.pin = g->fleet_host ? g->fingerprint : NULL,
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
		gw_peer_fail(p, "Cannot show your app", "Out of resources.");
		return false;
	}
	p->connecting = j;
	return true;
}

/* Wait for the connecting thread and take its result (NULL: failed, closed). */
static struct gw_rdpc *connect_rdp_join(struct gw_peer *p, struct gw_rdp_connect **out)
{
	struct gw_rdp_connect *j = p->connecting;
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
	struct gw_rdp_connect *j;
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
			gw_rail_window(p, true);
		}
		gw_peer_fail(p, "Cannot show your app",
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
		gw_screen_resize(p, j->rp.width, j->rp.height);
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

/* The guest is gone: its message goes in our own window again. */
static void guest_gone(struct gw_peer *p, const char *title, const char *msg)
{
	close_rdp_guest(p);
	if (p->rail_mode) {
		gw_screen_resize(p, p->win_w, p->win_h);
		if (p->own_window_gone) {
			p->own_window_gone = false;
			gw_rail_window(p, true);
		}
	}
	gw_peer_fail(p, title, msg);
}

static int rdp_open(struct gw_peer *p)
{
	return connect_rdp_begin(p) ? -EINPROGRESS : -EIO;
}

static int rdp_opened(struct gw_peer *p)
{
	struct gw_rdp_connect *j = p->connecting;
	if (__atomic_load_n(&j->done, __ATOMIC_ACQUIRE))
		return connect_rdp_finish(p) ? 0 : -ECONNREFUSED;
	if (!j->aborted && now_ms() - j->t0 > GUEST_CONNECT_MS) {
		log_warn("peer %s: session=%s guest RDP handshake not done after %d s", p->addr,
			 p->sess.id, GUEST_CONNECT_MS / 1000);
		j->aborted = true;
		gw_rdpc_abort(j->c);
	}
	return -EINPROGRESS;
}

static int64_t rdp_deadline(const struct gw_peer *p)
{
	/* once given up, the connect thread's end wakes the loop (its wake event) */
	return p->connecting && !p->connecting->aborted ? p->connecting->t0 + GUEST_CONNECT_MS + 1
							: INT64_MAX;
}

static DWORD rdp_handles(struct gw_peer *p, HANDLE *h, DWORD max)
{
	DWORD n = 0;
	if (p->rdpc && max > 2)
		n += gw_rdpc_handles(p->rdpc, h, max - 2); /* two kept for the relays */
	for (int i = 0; i < 2; i++) {
		void *ev = NULL;
		DWORD len = 0;
		if (p->relay_chan[i] && n < max &&
		    WTSVirtualChannelQuery(p->relay_chan[i], WTSVirtualEventHandle, &ev, &len) &&
		    ev) {
			h[n++] = *(HANDLE *)ev;
			WTSFreeMemory(ev);
		}
	}
	return n;
}

static int rdp_pump(struct gw_peer *p)
{
	if (!p->rdpc)
		return 0;
	relay_from_user(p);
	pthread_mutex_lock(&p->lock);
	UINT16 exec_error = p->guest_exec_error;
	pthread_mutex_unlock(&p->lock);
	if (exec_error) {
		log_warn("peer %s: session=%s the guest refused the app (RAIL exec result %u)",
			 p->addr, p->sess.id, exec_error);
		guest_gone(p, "Cannot start your app", "The app's computer refused to start it.");
		return -ECONNREFUSED;
	}
	if (!gw_rdpc_pump(p->rdpc)) {
		log_info("peer %s: session=%s guest RDP closed", p->addr, p->sess.id);
		char why[300];
		gw_peer_ended_message(p, why, sizeof(why));
		guest_gone(p, "Your session has ended", why);
		return -ENOTCONN;
	}
	return 0;
}

static void rdp_key(struct gw_peer *p, UINT16 flags, UINT16 code)
{
	gw_rdpc_key(p->rdpc, flags, code);
}

static void rdp_unicode(struct gw_peer *p, UINT16 flags, UINT16 code)
{
	gw_rdpc_unicode(p->rdpc, flags, code);
}

static void rdp_mouse(struct gw_peer *p, UINT16 flags, UINT16 x, UINT16 y)
{
	gw_rdpc_mouse(p->rdpc, flags, x, y);
}

static void rdp_xmouse(struct gw_peer *p, UINT16 flags, UINT16 x, UINT16 y)
{
	gw_rdpc_xmouse(p->rdpc, flags, x, y);
}

/* Nothing to ask: the guest's whole screen is in our framebuffer already. */
static void rdp_refresh(struct gw_peer *p)
{
}

static void rdp_close(struct gw_peer *p)
{
	if (p->connecting) {
		struct gw_rdp_connect *j = p->connecting;
		gw_rdpc_abort(j->c); /* the user left: stop waiting for the guest */
		gw_rdpc_close(connect_rdp_join(p, &j));
		free(j);
	}
	close_rdp_guest(p);
}

const struct gw_backend_ops gw_backend_rdp = {
    .name = "rdp",
    .open = rdp_open,
    .opened = rdp_opened,
    .deadline = rdp_deadline,
    .handles = rdp_handles,
    .pump = rdp_pump,
    .key = rdp_key,
    .unicode = rdp_unicode,
    .mouse = rdp_mouse,
    .xmouse = rdp_xmouse,
    .refresh = rdp_refresh,
    .close = rdp_close,
};
