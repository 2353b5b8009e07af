/*
 * Headless RDP client to a guest (see rdpc.h). One instance per user
 * connection, pumped from the peer's thread; rail callbacks arrive on the
 * rail channel's own thread and are handed straight to the peer.
 */
#include "rdpc.h"
#include "certfp.h"
#include "log.h"

#include <freerdp/channels/channels.h>
#include <freerdp/client/channels.h>
#include <freerdp/client/cmdline.h>
#include <freerdp/client/rail.h>
#include <freerdp/event.h>
#include <freerdp/freerdp.h>
#include <freerdp/gdi/gdi.h>
#include <freerdp/input.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAY_MAX 2		 /* cliprdr, rdpdr */
#define RELAY_PDU_MAX (8u << 20) /* a relayed PDU larger than this is dropped */

struct relay {
	char name[8];
	UINT16 id;
	BYTE *buf;
	size_t len, cap;
};

struct gw_rdpc {
	rdpContext ctx; /* first: FreeRDP allocates ContextSize */
	freerdp *inst;
	struct gw_rdpc_cbs cbs;
	void *arg;
	RailClientContext *rail;
	char *program;
	char pin[CERTFP_LEN]; /* "" : any certificate (a guest's own, behind its forward) */
	struct relay relay[RELAY_MAX];
	size_t n_relay;
	pReceiveChannelData channels_data; /* the default, for every other channel */
	bool relay_clipboard, relay_drive, relay_pointers;
	/* The guest socket is ours (fd), FreeRDP works on a duplicate (fd_dup, its
	 * "|fd" host; it closes that one): an abort shuts the socket down through
	 * ours at any phase, and no descriptor is ever closed twice. */
	int fd, fd_dup;
	bool handed;	   /* fd_dup given to FreeRDP */
	bool preconnected; /* fd came connected (params.use_fd) */
	struct sockaddr_in addr;
	volatile bool aborted;
};

static pthread_once_t addins_once = PTHREAD_ONCE_INIT;

static void register_addins(void)
{
	freerdp_register_addin_provider(freerdp_channels_load_static_addin_entry, 0);
}

/* --- RemoteApp, guest side --- */

static UINT on_server_handshake(RailClientContext *rc, const RAIL_HANDSHAKE_ORDER *h)
{
	struct gw_rdpc *c = rc->custom;
	rdpSettings *s = c->ctx.settings;
	RAIL_CLIENT_STATUS_ORDER st = {.flags = TS_RAIL_CLIENTSTATUS_ALLOWLOCALMOVESIZE};
	RAIL_SYSPARAM_ORDER sp = {0};
	sp.params = SPI_MASK_SET_HIGH_CONTRAST | SPI_MASK_SET_MOUSE_BUTTON_SWAP |
		    SPI_MASK_SET_KEYBOARD_PREF | SPI_MASK_SET_DRAG_FULL_WINDOWS |
		    SPI_MASK_SET_KEYBOARD_CUES | SPI_MASK_SET_WORK_AREA;
	sp.highContrast.flags = 0x7E;
	sp.workArea.right = (UINT16)s->DesktopWidth;
	sp.workArea.bottom = (UINT16)s->DesktopHeight;
	RAIL_EXEC_ORDER ex = {0};
	ex.RemoteApplicationProgram = c->program;
	UINT r = rc->ClientInformation(rc, &st);
	if (r == CHANNEL_RC_OK)
		r = rc->ClientSystemParam(rc, &sp);
	if (r == CHANNEL_RC_OK)
		r = rc->ClientExecute(rc, &ex);
	return r;
}

static UINT on_server_handshake_ex(RailClientContext *rc, const RAIL_HANDSHAKE_EX_ORDER *h)
{
	return on_server_handshake(rc, NULL);
}

static UINT on_exec_result(RailClientContext *rc, const RAIL_EXEC_RESULT_ORDER *r)
{
	struct gw_rdpc *c = rc->custom;
	if (c->cbs.exec_result)
		c->cbs.exec_result(c->arg, r);
	return CHANNEL_RC_OK;
}

static UINT on_min_max(RailClientContext *rc, const RAIL_MINMAXINFO_ORDER *m)
{
	struct gw_rdpc *c = rc->custom;
	if (c->cbs.min_max)
		c->cbs.min_max(c->arg, m);
	return CHANNEL_RC_OK;
}

static UINT on_local_move_size(RailClientContext *rc, const RAIL_LOCALMOVESIZE_ORDER *m)
{
	struct gw_rdpc *c = rc->custom;
	if (c->cbs.local_move_size)
		c->cbs.local_move_size(c->arg, m);
	return CHANNEL_RC_OK;
}

static UINT on_ignore(RailClientContext *rc, const void *any)
{
	return CHANNEL_RC_OK;
}

static void on_channel_connected(void *ctx, ChannelConnectedEventArgs *e)
{
	struct gw_rdpc *c = ctx;
	if (strcmp(e->name, RAIL_SVC_CHANNEL_NAME) != 0)
		return;
	RailClientContext *rc = e->pInterface;
	rc->custom = c;
	rc->ServerHandshake = on_server_handshake;
	rc->ServerHandshakeEx = on_server_handshake_ex;
	rc->ServerExecuteResult = on_exec_result;
	rc->ServerMinMaxInfo = on_min_max;
	rc->ServerLocalMoveSize = on_local_move_size;
	rc->ServerSystemParam = (pcRailServerSystemParam)on_ignore;
	rc->ServerLanguageBarInfo = (pcRailServerLanguageBarInfo)on_ignore;
	rc->ServerGetAppIdResponse = (pcRailServerGetAppIdResponse)on_ignore;
	rc->ServerTaskBarInfo = (pcRailServerTaskBarInfo)on_ignore;
	rc->ServerZOrderSync = (pcRailServerZOrderSync)on_ignore;
	rc->ServerCloak = (pcRailServerCloak)on_ignore;
	rc->ServerPowerDisplayRequest = (pcRailServerPowerDisplayRequest)on_ignore;
	rc->ServerGetAppidResponseExtended = (pcRailServerGetAppidResponseExtended)on_ignore;
	c->rail = rc;
}

/* Window orders: relayed as they are (the peer shares the guest's desktop). */
static BOOL win_create(rdpContext *ctx, const WINDOW_ORDER_INFO *oi, const WINDOW_STATE_ORDER *o)
{
	struct gw_rdpc *c = (struct gw_rdpc *)ctx;
	return c->cbs.window ? c->cbs.window(c->arg, GW_WIN_CREATE, oi, o) : TRUE;
}

static BOOL win_update(rdpContext *ctx, const WINDOW_ORDER_INFO *oi, const WINDOW_STATE_ORDER *o)
{
	struct gw_rdpc *c = (struct gw_rdpc *)ctx;
	return c->cbs.window ? c->cbs.window(c->arg, GW_WIN_UPDATE, oi, o) : TRUE;
}

static BOOL win_delete(rdpContext *ctx, const WINDOW_ORDER_INFO *oi)
{
	struct gw_rdpc *c = (struct gw_rdpc *)ctx;
	return c->cbs.window ? c->cbs.window(c->arg, GW_WIN_DELETE, oi, NULL) : TRUE;
}

static BOOL win_icon(rdpContext *ctx, const WINDOW_ORDER_INFO *oi, const WINDOW_ICON_ORDER *o)
{
	struct gw_rdpc *c = (struct gw_rdpc *)ctx;
	return c->cbs.window ? c->cbs.window(c->arg, GW_WIN_ICON, oi, o) : TRUE;
}

static BOOL win_cached_icon(rdpContext *ctx, const WINDOW_ORDER_INFO *oi,
			    const WINDOW_CACHED_ICON_ORDER *o)
{
	struct gw_rdpc *c = (struct gw_rdpc *)ctx;
	return c->cbs.window ? c->cbs.window(c->arg, GW_WIN_CACHED_ICON, oi, o) : TRUE;
}

/* Pointers: relayed as they are; the guest uses at most the user's cache size. */
#define PTR_RELAY(name, kind, type)                                                                \
	static BOOL name(rdpContext *ctx, const type *u)                                           \
	{                                                                                          \
		struct gw_rdpc *c = (struct gw_rdpc *)ctx;                                         \
		return c->cbs.pointer ? c->cbs.pointer(c->arg, kind, u) : TRUE;                    \
	}
PTR_RELAY(ptr_position, GW_PTR_POSITION, POINTER_POSITION_UPDATE)
PTR_RELAY(ptr_system, GW_PTR_SYSTEM, POINTER_SYSTEM_UPDATE)
PTR_RELAY(ptr_color, GW_PTR_COLOR, POINTER_COLOR_UPDATE)
PTR_RELAY(ptr_new, GW_PTR_NEW, POINTER_NEW_UPDATE)
PTR_RELAY(ptr_cached, GW_PTR_CACHED, POINTER_CACHED_UPDATE)

/* --- relayed static channels (clipboard, drives) --- */

static struct relay *relay_by_id(struct gw_rdpc *c, UINT16 id)
{
	for (size_t i = 0; i < c->n_relay; i++)
		if (c->relay[i].id == id)
			return &c->relay[i];
	return NULL;
}

static BOOL on_channel_data(freerdp *inst, UINT16 id, const BYTE *data, size_t size, UINT32 flags,
			    size_t total)
{
	struct gw_rdpc *c = (struct gw_rdpc *)inst->context;
	struct relay *r = relay_by_id(c, id);
	if (!r)
		return c->channels_data(inst, id, data, size, flags, total);
	/* reassemble one PDU from its chunks, then hand it over whole */
	if (flags & CHANNEL_FLAG_FIRST)
		r->len = 0;
	if (total > RELAY_PDU_MAX || r->len + size > total) {
		r->len = 0;
		return TRUE; /* malformed or oversized: dropped, the channel stays */
	}
	if (r->cap < total) {
		BYTE *nb = realloc(r->buf, total);
		if (!nb)
			return FALSE;
		r->buf = nb;
		r->cap = total;
	}
	memcpy(r->buf + r->len, data, size);
	r->len += size;
	if ((flags & CHANNEL_FLAG_LAST) && c->cbs.channel)
		c->cbs.channel(c->arg, r->name, r->buf, r->len, flags, total);
	return TRUE;
}

bool gw_rdpc_channel_send(struct gw_rdpc *c, const char *name, const BYTE *data, size_t len)
{
	for (size_t i = 0; i < c->n_relay; i++)
		if (!strcmp(c->relay[i].name, name) && c->relay[i].id)
			return c->inst->SendChannelData(c->inst, c->relay[i].id, data, len);
	return false;
}

/* --- connection --- */

static BOOL end_paint(rdpContext *ctx)
{
	struct gw_rdpc *c = (struct gw_rdpc *)ctx;
	rdpGdi *gdi = ctx->gdi;
	HGDI_RGN inv = gdi->primary->hdc->hwnd->invalid;
	if (!inv->null && c->cbs.damage)
		c->cbs.damage(c->arg, inv->x, inv->y, inv->w, inv->h);
	inv->null = TRUE;
	gdi->primary->hdc->hwnd->ninvalid = 0;
	return TRUE;
}

static BOOL desktop_resize(rdpContext *ctx)
{
	struct gw_rdpc *c = (struct gw_rdpc *)ctx;
	if (!gw_guest_size_ok(ctx->settings->DesktopWidth, ctx->settings->DesktopHeight))
		return FALSE; /* the connection to the guest ends */
	if (!gdi_resize(ctx->gdi, ctx->settings->DesktopWidth, ctx->settings->DesktopHeight))
		return FALSE;
	if (c->cbs.resize)
		c->cbs.resize(c->arg, (int)ctx->settings->DesktopWidth,
			      (int)ctx->settings->DesktopHeight);
	return TRUE;
}

/*
 * The smallest parser surface that still shows XP (docs/gateway.md): no
 * drawing orders (the guest then sends every change as a bitmap, as it does
 * for rdesktop -b), so no bitmap, glyph, brush or offscreen caches; no bulk
 * compression (no MPPC decompressor over guest bytes); no surface commands
 * or codecs XP never had. What remains: bitmap updates (interleaved RLE or
 * planar), pointers, window orders for RemoteApp, and the relayed channels.
 * A loopback link has the bandwidth.
 */
static void small_surface(rdpSettings *s)
{
	for (size_t i = 0; i < 32; i++)
		s->OrderSupport[i] = FALSE;
	s->BitmapCacheEnabled = FALSE;
	s->BitmapCachePersistEnabled = FALSE;
	s->GlyphSupportLevel = GLYPH_SUPPORT_NONE;
	s->OffscreenSupportLevel = 0;
	s->DrawNineGridEnabled = FALSE;
	s->DrawGdiPlusEnabled = FALSE;
	s->DrawGdiPlusCacheEnabled = FALSE;
	s->CompressionEnabled = FALSE;
	s->SurfaceCommandsEnabled = FALSE;
	s->FrameMarkerCommandEnabled = FALSE;
	s->SurfaceFrameMarkerEnabled = FALSE;
	s->AltSecFrameMarkerSupport = FALSE;
	s->JpegCodec = FALSE;
	s->NSCodec = FALSE;
	s->RemoteFxCodec = FALSE;
}

static BOOL pre_connect(freerdp *inst)
{
	struct gw_rdpc *c = (struct gw_rdpc *)inst->context;
	rdpSettings *s = inst->settings;
	PubSub_SubscribeChannelConnected(inst->context->pubSub, on_channel_connected);
	if (!freerdp_client_load_addins(inst->context->channels, s))
		return FALSE;
	/* relayed channels: in the guest's channel list, with no plugin behind them
	 * (RedirectClipboard/DeviceRedirection stay off: they would load FreeRDP's own
	 * clipboard and drive plugins here, answering the guest in the user's place) */
	const char *names[RELAY_MAX];
	size_t n = 0;
	if (c->relay_clipboard)
		names[n++] = "cliprdr";
	if (c->relay_drive)
		names[n++] = "rdpdr";
	for (size_t i = 0; i < n && s->ChannelCount < s->ChannelDefArraySize; i++) {
		CHANNEL_DEF *d = &s->ChannelDefArray[s->ChannelCount++];
		memset(d, 0, sizeof(*d));
		snprintf(d->name, sizeof(d->name), "%s", names[i]);
		d->options = CHANNEL_OPTION_INITIALIZED | CHANNEL_OPTION_ENCRYPT_RDP |
			     CHANNEL_OPTION_COMPRESS_RDP;
		snprintf(c->relay[c->n_relay++].name, sizeof(c->relay[0].name), "%s", names[i]);
	}
	small_surface(s);
	return TRUE;
}

static BOOL refuse_surface_bits(rdpContext *ctx, const SURFACE_BITS_COMMAND *cmd)
{
	WLog_ERR("nestor.rdpc", "the guest sent surface bits it was not offered: closing");
	return FALSE;
}

static BOOL refuse_frame_marker(rdpContext *ctx, const SURFACE_FRAME_MARKER *marker)
{
	return FALSE;
}

static BOOL post_connect(freerdp *inst)
{
	struct gw_rdpc *c = (struct gw_rdpc *)inst->context;
	/* the guest may answer with another size than asked for: bounded */
	if (!gw_guest_size_ok(inst->settings->DesktopWidth, inst->settings->DesktopHeight))
		return FALSE;
	if (!gdi_init(inst, PIXEL_FORMAT_BGRX32))
		return FALSE;
	/* gdi_init readies every codec FreeRDP has (RemoteFX, progressive, H.264,
	 * ClearCodec...: tens of MiB); XP sends interleaved RLE and planar only */
	rdpCodecs *few = codecs_new(inst->context);
	if (!few || !freerdp_client_codecs_prepare(
			few, FREERDP_CODEC_INTERLEAVED | FREERDP_CODEC_PLANAR,
			inst->settings->DesktopWidth, inst->settings->DesktopHeight)) {
		codecs_free(few);
		return FALSE;
	}
	codecs_free(inst->context->codecs);
	inst->context->codecs = few;
	malloc_trim(0); /* and give their memory back: they were tens of MiB */
	/* not negotiated, yet FreeRDP 2 would still decode them (RemoteFX, NSCodec):
	 * a guest that sends surface commands anyway loses its connection */
	inst->update->SurfaceBits = refuse_surface_bits;
	inst->update->SurfaceFrameMarker = refuse_frame_marker;
	inst->update->EndPaint = end_paint;
	inst->update->DesktopResize = desktop_resize;
	rdpWindowUpdate *w = inst->update->window;
	w->WindowCreate = win_create;
	w->WindowUpdate = win_update;
	w->WindowDelete = win_delete;
	w->WindowIcon = win_icon;
	w->WindowCachedIcon = win_cached_icon;
	if (c->relay_pointers) {
		rdpPointerUpdate *pu = inst->update->pointer;
		pu->PointerPosition = ptr_position;
		pu->PointerSystem = ptr_system;
		pu->PointerColor = ptr_color;
		pu->PointerNew = ptr_new;
		pu->PointerCached = ptr_cached;
	}
	for (size_t i = 0; i < c->n_relay; i++)
		c->relay[i].id = freerdp_channels_get_id_by_name(inst, c->relay[i].name);
	c->channels_data = inst->ReceiveChannelData;
	inst->ReceiveChannelData = on_channel_data;
	return TRUE;
}

static void post_disconnect(freerdp *inst)
{
	gdi_free(inst);
}

/* Guest certificates are self-signed and the path is 127.0.0.1: accept. */
static DWORD verify_cert(freerdp *inst, const char *host, UINT16 port, const char *cn,
			 const char *subject, const char *issuer, const char *fp, DWORD flags)
{
	return 2; /* accept for this session only */
}

/* A pinned server (another host's gateway): its certificate is the one the fleet knows. */
static int verify_x509(freerdp *inst, const BYTE *pem, size_t len, const char *host, UINT16 port,
		       DWORD flags)
{
	struct gw_rdpc *c = (struct gw_rdpc *)inst->context;
	char fp[CERTFP_LEN];
	if (certfp_pem((const char *)pem, len, fp) == 0 && certfp_equal(fp, c->pin))
		return 1;
	log_warn("rdpc: %s:%u presented certificate %s, not the pinned %s", host, port,
		 fp[0] ? fp : "(unreadable)", c->pin);
	return 0;
}

static DWORD verify_changed(freerdp *inst, const char *host, UINT16 port, const char *cn,
			    const char *subject, const char *issuer, const char *fp,
			    const char *old_subject, const char *old_issuer, const char *old_fp,
			    DWORD flags)
{
	return 2;
}

static BOOL ctx_new(freerdp *inst, rdpContext *ctx)
{
	return TRUE;
}

static void ctx_free(freerdp *inst, rdpContext *ctx)
{
	struct gw_rdpc *c = (struct gw_rdpc *)ctx;
	for (size_t i = 0; i < c->n_relay; i++)
		free(c->relay[i].buf);
	free(c->program);
}

struct gw_rdpc *gw_rdpc_new(const struct gw_rdpc_params *p, const struct gw_rdpc_cbs *cbs,
			    void *arg, char *err, size_t errlen)
{
	pthread_once(&addins_once, register_addins);
	freerdp *inst = freerdp_new();
	if (!inst) {
		if (p->use_fd)
			close(p->fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	inst->ContextSize = sizeof(struct gw_rdpc);
	inst->ContextNew = ctx_new;
	inst->ContextFree = ctx_free;
	inst->PreConnect = pre_connect;
	inst->PostConnect = post_connect;
	inst->PostDisconnect = post_disconnect;
	inst->VerifyCertificateEx = verify_cert;
	inst->VerifyChangedCertificateEx = verify_changed;
	inst->VerifyX509Certificate = verify_x509;
	if (!freerdp_context_new(inst)) {
		freerdp_free(inst);
		if (p->use_fd)
			close(p->fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	struct gw_rdpc *c = (struct gw_rdpc *)inst->context;
	c->inst = inst;
	c->cbs = *cbs;
	c->arg = arg;
	c->fd = c->fd_dup = -1;
	rdpSettings *s = inst->settings;
	bool rdp = strcmp(p->security, "tls") != 0, tls = strcmp(p->security, "rdp") != 0;
	c->preconnected = p->use_fd;
	c->addr.sin_family = AF_INET;
	c->addr.sin_port = htons((uint16_t)p->port);
	if (!p->use_fd && inet_pton(AF_INET, p->host, &c->addr.sin_addr) != 1) {
		snprintf(err, errlen, "guest address %s is not an IPv4 address", p->host);
		gw_rdpc_close(c);
		return NULL;
	}
	c->fd = p->use_fd ? p->fd : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	c->fd_dup = c->fd >= 0 ? fcntl(c->fd, F_DUPFD_CLOEXEC, 0) : -1;
	bool ok = c->fd >= 0 && c->fd_dup >= 0 && (s->ServerHostname = strdup("|")) != NULL;
	s->ServerPort = (UINT32)c->fd_dup;
	if (p->user && *p->user)
		ok = ok && (s->Username = strdup(p->user));
	if (p->domain && *p->domain)
		ok = ok && (s->Domain = strdup(p->domain));
	if (p->password && *p->password)
		ok = ok && (s->Password = strdup(p->password));
	s->AutoLogonEnabled = s->Username != NULL;
	s->DesktopWidth = p->width;
	s->DesktopHeight = p->height;
	s->TcpConnectTimeout = 10000; /* 127.0.0.1: only a wedged forward takes long */
	s->ColorDepth = 32;
	s->RdpSecurity = rdp;
	s->TlsSecurity = tls;
	s->NlaSecurity = FALSE;
	s->NegotiateSecurityLayer = TRUE; /* XP answers without negotiation: fine */
	s->UseRdpSecurityLayer = rdp && !tls;
	if (p->pin && *p->pin) {
		/* FreeRDP hands the certificate to verify_x509, which compares it */
		snprintf(c->pin, sizeof(c->pin), "%s", p->pin);
		s->IgnoreCertificate = FALSE;
		s->ExternalCertificateManagement = TRUE;
		s->TcpConnectTimeout = 5000; /* another host */
	} else {
		s->IgnoreCertificate = TRUE;
	}
	s->SoftwareGdi = TRUE;
	s->DesktopResize = TRUE;
	s->SupportGraphicsPipeline = FALSE;
	s->RemoteFxCodec = FALSE;
	s->AudioPlayback = FALSE;
	/* no channel of our own towards the guest: each of these would load FreeRDP's
	 * device redirection (rdpdr) or sound plugins here */
	s->AudioPlayback = FALSE;
	s->AudioCapture = FALSE;
	s->RemoteConsoleAudio = FALSE;
	s->NetworkAutoDetect = FALSE;
	s->SupportHeartbeatPdu = FALSE;
	s->SupportMultitransport = FALSE;
	s->RedirectClipboard = FALSE; /* relayed raw instead (pre_connect) */
	s->DeviceRedirection = FALSE;
	s->RedirectDrives = FALSE;
	c->relay_clipboard = p->clipboard;
	c->relay_drive = p->drive;
	c->relay_pointers = p->pointer_cache > 0;
	if (c->relay_pointers) {
		/* cached pointer indexes pass through: never more slots than the user has
		 * (without large pointers only the color pointer cache size is sent: what
		 * XP's RDP 5.x knows) */
		s->PointerCacheSize = p->pointer_cache < 25 ? p->pointer_cache : 25;
		s->ColorPointerFlag = TRUE;
		s->LargePointerFlag = 0;
	}
	s->AsyncInput = FALSE;
	s->AsyncUpdate = FALSE;
	if (p->shell && *p->shell)
		ok = ok && (s->AlternateShell = strdup(p->shell));
	if (p->program) {
		s->RemoteApplicationMode = TRUE;
		s->RemoteAppLanguageBarSupported = FALSE;
		s->Workarea = TRUE;
		s->PerformanceFlags = PERF_DISABLE_WALLPAPER | PERF_DISABLE_FULLWINDOWDRAG;
		ok = ok && (c->program = strdup(p->program)) &&
		     (s->RemoteApplicationProgram = strdup(p->program));
	}
	if (!ok) {
		snprintf(err, errlen, "out of memory");
		gw_rdpc_close(c);
		return NULL;
	}
	return c;
}

bool gw_rdpc_connect(struct gw_rdpc *c, char *err, size_t errlen)
{
	int one = 1;
	if (c->aborted || (!c->preconnected &&
			   connect(c->fd, (struct sockaddr *)&c->addr, sizeof(c->addr)) < 0)) {
		snprintf(err, errlen, "%s", c->aborted ? "cancelled" : strerror(errno));
		return false;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->handed = true;
	bool ok = freerdp_connect(c->inst);
	char *pw = c->ctx.settings->Password; /* sent (or not): not needed again */
	if (pw)
		explicit_bzero(pw, strlen(pw));
	if (ok)
		return true;
	UINT32 e = freerdp_get_last_error(&c->ctx);
	snprintf(err, errlen, "%s", e ? freerdp_get_last_error_string(e) : "connection failed");
	return false;
}

void gw_rdpc_abort(struct gw_rdpc *c)
{
	c->aborted = true;
	freerdp_abort_connect(c->inst);
	shutdown(c->fd, SHUT_RDWR); /* wakes a read blocked in any phase */
}

DWORD gw_rdpc_handles(struct gw_rdpc *c, HANDLE *h, DWORD max)
{
	return freerdp_get_event_handles(&c->ctx, h, max);
}

bool gw_rdpc_pump(struct gw_rdpc *c)
{
	return freerdp_check_event_handles(&c->ctx) && !freerdp_shall_disconnect(c->inst);
}

const uint8_t *gw_rdpc_pixels(struct gw_rdpc *c, int *w, int *h, int *stride)
{
	rdpGdi *gdi = c->ctx.gdi;
	if (!gdi || !gdi->primary_buffer)
		return NULL;
	*w = gdi->width;
	*h = gdi->height;
	*stride = (int)gdi->stride;
	return gdi->primary_buffer;
}

void gw_rdpc_key(struct gw_rdpc *c, UINT16 flags, UINT16 code)
{
	freerdp_input_send_keyboard_event(c->inst->input, flags, code);
}

void gw_rdpc_unicode(struct gw_rdpc *c, UINT16 flags, UINT16 code)
{
	freerdp_input_send_unicode_keyboard_event(c->inst->input, flags, code);
}

void gw_rdpc_mouse(struct gw_rdpc *c, UINT16 flags, UINT16 x, UINT16 y)
{
	freerdp_input_send_mouse_event(c->inst->input, flags, x, y);
}

void gw_rdpc_xmouse(struct gw_rdpc *c, UINT16 flags, UINT16 x, UINT16 y)
{
	freerdp_input_send_extended_mouse_event(c->inst->input, flags, x, y);
}

void gw_rdpc_activate(struct gw_rdpc *c, const RAIL_ACTIVATE_ORDER *a)
{
	if (c->rail)
		c->rail->ClientActivate(c->rail, a);
}

void gw_rdpc_syscommand(struct gw_rdpc *c, const RAIL_SYSCOMMAND_ORDER *s)
{
	if (c->rail)
		c->rail->ClientSystemCommand(c->rail, s);
}

void gw_rdpc_sysmenu(struct gw_rdpc *c, const RAIL_SYSMENU_ORDER *s)
{
	if (c->rail)
		c->rail->ClientSystemMenu(c->rail, s);
}

void gw_rdpc_window_move(struct gw_rdpc *c, const RAIL_WINDOW_MOVE_ORDER *m)
{
	if (c->rail)
		c->rail->ClientWindowMove(c->rail, m);
}

void gw_rdpc_notify(struct gw_rdpc *c, const RAIL_NOTIFY_EVENT_ORDER *n)
{
	if (c->rail)
		c->rail->ClientNotifyEvent(c->rail, n);
}

void gw_rdpc_close(struct gw_rdpc *c)
{
	if (!c)
		return;
	freerdp *inst = c->inst;
	rdpSettings *s = inst->settings;
	int c_fd = c->fd, c_dup = c->fd_dup; /* C is freed with the context */
	bool c_handed = c->handed;
	if (s->Password)
		explicit_bzero(s->Password, strlen(s->Password));
	freerdp_disconnect(inst);
	freerdp_context_free(inst);
	freerdp_free(inst);
	if (c_fd >= 0)
		close(c_fd);
	if (c_dup >= 0 && !c_handed)
		close(c_dup);
}
