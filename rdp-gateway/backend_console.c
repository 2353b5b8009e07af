/*
 * The console backend: the guest's screen from QEMU's VNC server on the
 * session's UNIX socket (vnc.c), copied into the connection's framebuffer;
 * keys as PC scancodes (QEMU's extended key events) or key symbols, the
 * mouse as VNC pointer events.
 *
 * Runs on the connection's thread. Opening connects at once (a local
 * socket); afterwards only what the guest sent is read, when its socket
 * wakes the thread.
 */
#include "backend.h"
#include "log.h"
#include "vnc.h"
#include "worker.h"

#include <errno.h>
#include <string.h>
#include <winpr/handle.h>
#include <winpr/synch.h>

static void on_vnc_damage(void *arg, int x, int y, int w, int h)
{
	struct gw_peer *p = arg;
	int gw_, gh;
	const uint8_t *px = gw_vnc_pixels(p->vnc, &gw_, &gh);
	gw_screen_blit(p, px, gw_, gh, gw_ * 4, x, y, w, h);
}

static void on_vnc_resize(void *arg, int w, int h)
{
	gw_screen_guest_resize(arg, w, h);
}

static int console_open(struct gw_peer *p)
{
	explicit_bzero(p->secret, sizeof(p->secret));
	p->vnc = gw_vnc_connect(p->sess.vnc, on_vnc_damage, on_vnc_resize, p);
	if (!p->vnc) {
		gw_peer_fail(p, "Cannot show your app", "The guest's screen is not reachable.");
		return -ECONNREFUSED;
	}
	p->vnc_event =
	    CreateFileDescriptorEvent(NULL, FALSE, FALSE, gw_vnc_fd(p->vnc), WINPR_FD_READ);
	return 0;
}

/* Opening is never in progress: a local socket connects at once. */
static int console_opened(struct gw_peer *p)
{
	return 0;
}

static int64_t console_deadline(const struct gw_peer *p)
{
	return INT64_MAX;
}

static DWORD console_handles(struct gw_peer *p, HANDLE *h, DWORD max)
{
	if (!p->vnc_event || !max)
		return 0;
	h[0] = p->vnc_event;
	return 1;
}

static int console_pump(struct gw_peer *p)
{
	if (p->vnc && !gw_vnc_pump(p->vnc)) {
		log_info("peer %s: session=%s guest screen closed", p->addr, p->sess.id);
		CloseHandle(p->vnc_event);
		p->vnc_event = NULL;
		gw_vnc_close(p->vnc);
		p->vnc = NULL;
		char why[300];
		gw_peer_ended_message(p, why, sizeof(why));
		gw_peer_fail(p, "Your session has ended", why);
		return -ENOTCONN;
	}
	return 0;
}

static void console_key(struct gw_peer *p, UINT16 flags, UINT16 code)
{
	int q = gw_qnum(flags, code);
	if (q > 0)
		gw_vnc_key(p->vnc, q, !(flags & GW_KBD_RELEASE));
}

static void console_unicode(struct gw_peer *p, UINT16 flags, UINT16 code)
{
	gw_vnc_keysym(p->vnc, gw_keysym(code), !(flags & GW_KBD_RELEASE));
}

static void console_mouse(struct gw_peer *p, UINT16 flags, UINT16 x, UINT16 y)
{
	int wheel;
	p->buttons = gw_buttons(flags, p->buttons, &wheel);
	gw_vnc_pointer(p->vnc, x, y, p->buttons);
	if (wheel) {
		gw_vnc_pointer(p->vnc, x, y, p->buttons | wheel);
		gw_vnc_pointer(p->vnc, x, y, p->buttons);
	}
}

/* VNC sends only what changes: a new client screen needs a full frame asked for. */
static void console_refresh(struct gw_peer *p)
{
	if (p->vnc)
		gw_vnc_refresh(p->vnc);
}

static void console_close(struct gw_peer *p)
{
	if (p->vnc_event)
		CloseHandle(p->vnc_event);
	p->vnc_event = NULL;
	gw_vnc_close(p->vnc);
	p->vnc = NULL;
}

const struct gw_backend_ops gw_backend_console = {
    .name = "console",
    .open = console_open,
    .opened = console_opened,
    .deadline = console_deadline,
    .handles = console_handles,
    .pump = console_pump,
    .key = console_key,
    .unicode = console_unicode,
    .mouse = console_mouse,
    .xmouse = NULL, /* the extra buttons: a move */
    .refresh = console_refresh,
    .close = console_close,
};
