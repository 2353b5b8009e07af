/*
 * The guest's side of a connection: the one interface both backends
 * implement (backend_console.c: QEMU's VNC console; backend_rdp.c: the
 * guest's own RDP server). The phase machine (worker.c) picks one by the
 * session's backend when the guest is ready and calls only through it.
 *
 * All operations run on the connection's thread and take the peer whose
 * guest it is; a backend keeps its state in its part of struct gw_peer
 * (worker.h). When a guest fails or goes away the backend says why on the
 * fail screen itself (gw_peer_fail): the reasons are its own.
 *
 * int operations return 0 or a negative errno.
 */
#ifndef NESTOR_GW_BACKEND_H
#define NESTOR_GW_BACKEND_H

#include <stdint.h>
#include <winpr/wtypes.h>

struct gw_peer;

struct gw_backend_ops {
	const char *name; /* the session's backend, as nestord names it */
	/*
	 * Start showing the session's guest (the wait phase; it is ready).
	 * 0: it can be shown now; -EINPROGRESS: it is being connected, the wait
	 * screen stays and opened() tells when it is done; other errors: it
	 * cannot be shown and the fail screen is up.
	 */
	int (*open)(struct gw_peer *p);
	/* After -EINPROGRESS, each turn of the loop: what open() returns. */
	int (*opened)(struct gw_peer *p);
	/* While being opened: when opened() must be called next at the latest. */
	int64_t (*deadline)(const struct gw_peer *p);
	/* The handles its guest wakes the connection's thread with, at most MAX, into H. */
	DWORD (*handles)(struct gw_peer *p, HANDLE *h, DWORD max);
	/* What the guest sent, in the guest phase. An error: it is gone, the fail screen is up. */
	int (*pump)(struct gw_peer *p);
	/* The user's input, in the guest phase (RDP's own flags and codes). */
	void (*key)(struct gw_peer *p, UINT16 flags, UINT16 code);
	void (*unicode)(struct gw_peer *p, UINT16 flags, UINT16 code);
	void (*mouse)(struct gw_peer *p, UINT16 flags, UINT16 x, UINT16 y);
	/* The extra buttons; NULL: they arrive as a move through mouse(). */
	void (*xmouse)(struct gw_peer *p, UINT16 flags, UINT16 x, UINT16 y);
	/* The client needs the whole screen again: ask the guest for it if it must be asked. */
	void (*refresh)(struct gw_peer *p);
	/* Let go of the guest, also while it is being opened (the connection ends). */
	void (*close)(struct gw_peer *p);
};

extern const struct gw_backend_ops gw_backend_console;
extern const struct gw_backend_ops gw_backend_rdp;

#endif
