/*
 * The rdp backend's client side: one headless libfreerdp-client connection
 * from the gateway to a guest's own RDP server (over its 127.0.0.1 forward),
 * driven from the peer's thread. The guest draws into a software gdi buffer
 * (so old drawing orders are all rendered by FreeRDP, and the user only
 * ever receives the gateway's own encoding); input is relayed; RemoteApp
 * windows and their rail PDUs are relayed when the guest serves RemoteApp.
 */
#ifndef NESTOR_GW_RDPC_H
#define NESTOR_GW_RDPC_H

#include "guard.h"

#include <freerdp/freerdp.h>
#include <freerdp/rail.h>
#include <freerdp/window.h>
#include <stdbool.h>
#include <stdint.h>
#include <winpr/wtypes.h>

struct gw_rdpc;

struct gw_rdpc_params {
	const char *host;
	unsigned port;
	const char *security; /* rdp | tls | any */
	const char *user, *domain, *password;
	unsigned width, height;
	const char *program; /* RemoteApp program; NULL: a desktop session */
	const char *shell;   /* desktop session: the alternate shell (app name), or NULL */
	bool clipboard, drive;
	unsigned pointer_cache; /* the user's pointer cache size; 0: pointers not relayed */
	/* TLS: the server's certificate must have this fingerprint (certfp.h); NULL: any */
	const char *pin;
	/* fuzzing (tests/fuzz/fuzz_rdpc.c): a connected stream socket to speak
	 * over instead of host:port; gw_rdpc_new takes ownership of it */
	bool use_fd;
	int fd;
};

struct gw_rdpc_cbs {
	/* guest pixels changed in the gdi buffer (peer thread) */
	void (*damage)(void *arg, int x, int y, int w, int h);
	/* the guest's desktop changed size (peer thread) */
	void (*resize)(void *arg, int w, int h);
	/* RemoteApp: window orders from the guest, to relay (peer thread) */
	BOOL (*window)(void *arg, int kind, const WINDOW_ORDER_INFO *oi, const void *order);
	/* RemoteApp: the guest's exec result and server PDUs (channel thread) */
	void (*exec_result)(void *arg, const RAIL_EXEC_RESULT_ORDER *r);
	void (*min_max)(void *arg, const RAIL_MINMAXINFO_ORDER *m);
	void (*local_move_size)(void *arg, const RAIL_LOCALMOVESIZE_ORDER *m);
	/* pointer shapes and moves from the guest, to relay (GW_PTR_*; peer thread) */
	BOOL (*pointer)(void *arg, int kind, const void *update);
	/* a static channel's PDU from the guest (cliprdr/rdpdr relay; peer thread) */
	void (*channel)(void *arg, const char *name, const BYTE *data, size_t len, UINT32 flags,
			size_t total);
};

/* A client for P (nothing sent yet). NULL with ERR set on failure. */
struct gw_rdpc *gw_rdpc_new(const struct gw_rdpc_params *p, const struct gw_rdpc_cbs *cbs,
			    void *arg, char *err, size_t errlen);
/* Connect: blocks for the whole handshake. False with ERR set on failure. */
bool gw_rdpc_connect(struct gw_rdpc *c, char *err, size_t errlen);
/* Make a connect in progress on another thread give up (any thread). */
void gw_rdpc_abort(struct gw_rdpc *c);
/* Event handles to wait on, and the pump; false when the guest went away. */
DWORD gw_rdpc_handles(struct gw_rdpc *c, HANDLE *h, DWORD max);
bool gw_rdpc_pump(struct gw_rdpc *c);
const uint8_t *gw_rdpc_pixels(struct gw_rdpc *c, int *w, int *h, int *stride);
void gw_rdpc_key(struct gw_rdpc *c, UINT16 flags, UINT16 code);
void gw_rdpc_unicode(struct gw_rdpc *c, UINT16 flags, UINT16 code);
void gw_rdpc_mouse(struct gw_rdpc *c, UINT16 flags, UINT16 x, UINT16 y);
void gw_rdpc_xmouse(struct gw_rdpc *c, UINT16 flags, UINT16 x, UINT16 y);
/* RemoteApp requests from the user, relayed (any thread). */
void gw_rdpc_activate(struct gw_rdpc *c, const RAIL_ACTIVATE_ORDER *a);
void gw_rdpc_syscommand(struct gw_rdpc *c, const RAIL_SYSCOMMAND_ORDER *s);
void gw_rdpc_sysmenu(struct gw_rdpc *c, const RAIL_SYSMENU_ORDER *s);
void gw_rdpc_window_move(struct gw_rdpc *c, const RAIL_WINDOW_MOVE_ORDER *m);
void gw_rdpc_notify(struct gw_rdpc *c, const RAIL_NOTIFY_EVENT_ORDER *n);
/* A relayed static channel's PDU from the user, to the guest. */
bool gw_rdpc_channel_send(struct gw_rdpc *c, const char *name, const BYTE *data, size_t len);
void gw_rdpc_close(struct gw_rdpc *c);

#endif
