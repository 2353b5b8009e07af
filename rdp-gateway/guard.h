/*
 * What a guest may send the user through the gateway. The user is
 * administrator of their own legacy guest and can replace its RDP server:
 * everything it sends is bounded here before it is relayed — the desktop
 * size, pointer shapes and cache indices (against what the user's client
 * negotiated), window orders (ids, how many windows, rectangles, title
 * lengths; the gateway's own window id is reserved). Pure: table-tested in
 * tests/unit/test_gateway_pure.c.
 */
#ifndef NESTOR_GW_GUARD_H
#define NESTOR_GW_GUARD_H

#include <freerdp/freerdp.h> /* pointer.h and window.h need its types first */
#include <freerdp/pointer.h>
#include <freerdp/window.h>
#include <stdbool.h>
#include <stdint.h>

enum { GW_WIN_CREATE, GW_WIN_UPDATE, GW_WIN_DELETE, GW_WIN_ICON, GW_WIN_CACHED_ICON };
enum { GW_PTR_POSITION, GW_PTR_SYSTEM, GW_PTR_COLOR, GW_PTR_NEW, GW_PTR_CACHED };

#define GW_GUEST_MAX_W 4096 /* a guest desktop larger than this ends the connection */
#define GW_GUEST_MAX_H 4096
#define GW_WIN_MAX 64	     /* windows a guest may have open at once */
#define GW_WIN_RECTS_MAX 256 /* window or visibility rectangles in one order */
#define GW_WIN_TITLE_MAX 520 /* bytes of a title (260 UTF-16 characters) */
#define GW_ICON_MAX 256	     /* icon width and height */
#define GW_PTR_MAX 384	     /* pointer width and height (a large pointer's limit) */

bool gw_guest_size_ok(uint32_t width, uint32_t height);

/* The guest's open windows, as the guard counts them. */
struct gw_windows {
	uint32_t id[GW_WIN_MAX];
	unsigned n;
};

/*
 * Whether window order KIND (GW_WIN_*) for window ID (O: its order, or NULL)
 * may be relayed: NULL if so (W is updated: created, deleted), else why not.
 * RESERVED is the gateway's own window id.
 */
const char *gw_window_refusal(struct gw_windows *w, int kind, uint32_t id, const void *o,
			      uint32_t reserved);

/*
 * Whether pointer update KIND (GW_PTR_*) may be relayed to a user whose
 * client has CACHE_SIZE pointer cache slots: NULL if so, else why not.
 */
const char *gw_pointer_refusal(int kind, const void *u, uint32_t cache_size);

#endif
