/*
 * The worker's private state: one RDP connection (struct gw_peer) and what
 * its files share. Internal to the worker (worker.c, screen.c, rail.c and
 * the backends behind backend.h); gateway.h is all the listener sees.
 *
 * Everything here runs on the connection's thread, except where a field
 * says "under lock": the RAIL channel's thread (rail.c's callbacks, the rdp
 * backend's rail PDUs) and the rdp backend's connect thread touch those.
 * int functions return 0 or a negative errno.
 */
#ifndef NESTOR_GW_WORKER_H
#define NESTOR_GW_WORKER_H

#include "bapi.h"
#include "chanpolicy.h"
#include "gateway.h"
#include "guard.h"
#include "keymap.h"
#include "util.h"

#include <freerdp/codec/planar.h>
#include <freerdp/codec/rfx.h>
#include <freerdp/freerdp.h>
#include <freerdp/server/rail.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <winpr/stream.h>

#define GW_WINDOW_ID 0x4e57 /* our one RemoteApp window */

enum phase { PH_HANDSHAKE, PH_LOGIN, PH_WAIT, PH_GUEST, PH_FAIL };

struct gw_backend_ops;
struct gw_rdp_connect;
struct gw_rdpc;
struct gw_vnc;

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

	/* screen.c */
	struct gw_fb screen;
	uint8_t *dirty;
	unsigned tiles_x, tiles_y;
	BITMAP_PLANAR_CONTEXT *planar;
	RFX_CONTEXT *rfx; /* RemoteFX, when the client supports it */
	wStream *rfx_stream;
	bool suppress;
	int64_t last_frame_ms;
	bool need_resize;
	/* the banner of an announced end, over the top rows (NULL pixels: not shown) */
	struct gw_fb banner; /* what it shows */
	struct gw_fb under;  /* what it covers: the guest's pixels, put back when it goes */

	/* the announced end (worker.c): from the lease's answers */
	struct gw_ending ending;
	int64_t ending_at_ms;	/* when it comes, on our clock */
	int64_t banner_next_ms; /* when the banner's seconds change */
	int64_t lease_sent_ms;	/* the renewal in flight was asked then */

	/* the login and wait phases (worker.c) */
	struct gw_login login;
	bool login_dirty; /* the form changed: redrawn once, at the next frame */
	int64_t login_until_ms;
	unsigned attempts;
	bool code_asked; /* nestord asked for a one-time code: the form has its field */
	char message[160];

	char user[65];
	char app[65];
	char title[129];
	struct gw_session sess;
	char grant[65]; /* the session's grant from nestord (connect) */
	int64_t wait_started_ms, next_poll_ms, last_draw_ms, last_activity_ms;
	struct httpc_call follow; /* the session's long-poll in flight (follow_ev set) */
	HANDLE follow_ev;
	int64_t follow_until_ms;      /* nestord answers a long-poll by then */
	struct httpc_call signin;     /* the sign-in in flight (signin_ev set) */
	struct httpc_call lease_call; /* the last lease renewal, its answer unread (fd >= 0) */
	HANDLE signin_ev;
	int64_t signin_until_ms;
	int64_t nestord_gone_ms; /* first failed poll of a run of them (0: none) */
	bool wait_shown;	 /* a wait-screen frame went out: the guest may replace it */
	unsigned tick;

	/*
	 * The session's backend, from enter_guest on: in PH_WAIT it is being
	 * opened, in PH_GUEST its guest is shown. NULL before.
	 */
	const struct gw_backend_ops *backend;
	char secret[257];	 /* the user's password, kept only for guest_login=user */
	unsigned guest_refusals; /* orders from the guest the guard dropped */

	/* backend_console.c */
	struct gw_vnc *vnc;
	HANDLE vnc_event;
	int buttons;

	/* backend_rdp.c */
	struct gw_rdpc *rdpc;		   /* under lock */
	struct gw_rdp_connect *connecting; /* its connection being made, on a thread */
	bool rail_relay; /* the guest's own RemoteApp windows are relayed (under lock) */
	struct gw_windows guest_windows; /* what the guard counts of them */
	uint32_t guest_ptr_cache;	 /* pointer cache slots the guest was told of */
	bool own_window_gone;		 /* our wait window was replaced by the guest's */
	UINT16 guest_exec_error;	 /* the guest refused the RemoteApp program (under lock) */
	HANDLE relay_chan[2];		 /* user-side cliprdr/rdpdr, relayed to the guest */
	char relay_name[2][8];
	struct gw_chan_policy chan_policy; /* the image's, for what crosses them */
	struct gw_cliprdr_state clip;
	struct gw_rdpdr_state rdpdr;
	unsigned chan_drops; /* PDUs the policy stopped */

	/* rail.c */
	bool rail_mode;
	bool rail_started;
	char rail_alias[65]; /* from the client's exec, set on the RAIL thread (under lock) */
	bool rail_exec_seen; /* under lock */
	bool window_created;
	unsigned win_w, win_h;

	int64_t fail_until_ms;

	/* the metrics (gwmetrics.h) */
	int64_t asked_ms;	 /* the user's last move: the accept, or a login screen's sign-in */
	enum gw_m_backend shown; /* the backend whose guest was shown (none before) */
	unsigned published;	 /* the phase and backend last written to the slot (0: as forked) */
	bool guest_drawn;	 /* the guest's pixels are in the framebuffer */
	bool first_frame_sent;	 /* ... and went out */
	struct gw_metrics_tcp tcp; /* the client's bytes counted so far */
	int64_t next_tcp_ms;	   /* when to count them again */
};

static inline int64_t now_ms(void)
{
	return util_now_ms();
}

/* worker.c: the phase machine, for the files around it */

/* Any phase -> fail: show TITLE and MSG, then close the connection. */
void gw_peer_fail(struct gw_peer *p, const char *title, const char *msg);
/* Why the guest went away, as nestord tells it, into OUT (blocks up to 2 s). */
void gw_peer_ended_message(struct gw_peer *p, char *out, size_t len);
/* An order from the guest the guard dropped: logged (the first few), never relayed. */
void gw_peer_refused(struct gw_peer *p, const char *what, const char *why);

/* screen.c: the framebuffer the client sees, its damage and its encoding */

/* The encoders (the peer's context is created). */
int gw_screen_init(struct gw_peer *p);
/* RemoteFX too, when the client and the configuration both want it (activation). */
void gw_screen_rfx_start(struct gw_peer *p);
void gw_screen_finish(struct gw_peer *p);
/* A new framebuffer of W x H, all black and clean. */
int gw_screen_resize(struct gw_peer *p, unsigned w, unsigned h);
void gw_screen_damage(struct gw_peer *p, int x, int y, int w, int h);
void gw_screen_damage_all(struct gw_peer *p);
bool gw_screen_has_dirty(const struct gw_peer *p);
/*
 * Send the dirty tiles, once the frame rate allows (FORCE: now). 0 also when
 * nothing could be sent yet (not activated, suppressed, no window); else the
 * client's connection failed.
 */
int gw_screen_flush(struct gw_peer *p, bool force);
/* Copy the guest's pixels (BGRX, GW x GH, STRIDE bytes a row) into what the client sees. */
void gw_screen_blit(struct gw_peer *p, const uint8_t *px, int gw_, int gh, int stride, int x, int y,
		    int w, int h);
/* The guest's size becomes the session's (both backends' resize callback). */
void gw_screen_guest_resize(struct gw_peer *p, int w, int h);
/* Our own screens, drawn and damaged (sent with the next flush). */
void gw_screen_draw_login(struct gw_peer *p);
void gw_screen_draw_wait(struct gw_peer *p);
void gw_screen_draw_message(struct gw_peer *p, const char *title, const char *msg);
/* The banner of an announced end (draw.h) across the top: shown, or redrawn with new text. */
int gw_screen_banner(struct gw_peer *p, const char *countdown, const char *message);
/* The banner goes; what it covered comes back (RESTORE), or is left to be drawn over. */
void gw_screen_banner_off(struct gw_peer *p, bool restore);

/* rail.c: the RemoteApp server side */

/* Serve RAIL to a RemoteApp client (the rail channel must be joined). */
int gw_rail_start(struct gw_peer *p);
void gw_rail_stop(struct gw_peer *p);
/* Create (CREATE) or update our own window to the screen's size and the title. */
int gw_rail_window(struct gw_peer *p, bool create);

#endif
