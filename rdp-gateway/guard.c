/* Bounds on what a guest sends through the gateway (see guard.h). Pure. */
#include "guard.h"

bool gw_guest_size_ok(uint32_t width, uint32_t height)
{
	return width >= 1 && height >= 1 && width <= GW_GUEST_MAX_W && height <= GW_GUEST_MAX_H;
}

static int find(const struct gw_windows *w, uint32_t id)
{
	for (unsigned i = 0; i < w->n; i++)
		if (w->id[i] == id)
			return (int)i;
	return -1;
}

const char *gw_window_refusal(struct gw_windows *w, int kind, uint32_t id, const void *o,
			      uint32_t reserved)
{
	if (id == reserved)
		return "the gateway's own window id";
	int at = find(w, id);
	if (kind == GW_WIN_CREATE || kind == GW_WIN_UPDATE) {
		const WINDOW_STATE_ORDER *ws = o;
		if (ws && (ws->numWindowRects > GW_WIN_RECTS_MAX ||
			   ws->numVisibilityRects > GW_WIN_RECTS_MAX))
			return "too many window rectangles";
		if (ws && ws->titleInfo.length > GW_WIN_TITLE_MAX)
			return "a window title too long";
		if (ws &&
		    (ws->windowWidth > 2 * GW_GUEST_MAX_W || ws->windowHeight > 2 * GW_GUEST_MAX_H))
			return "a window larger than any desktop";
	}
	switch (kind) {
	case GW_WIN_CREATE:
		if (at >= 0)
			return NULL; /* a create for a known window is an update */
		if (w->n == GW_WIN_MAX)
			return "too many windows";
		w->id[w->n++] = id;
		return NULL;
	case GW_WIN_UPDATE:
	case GW_WIN_CACHED_ICON:
		return at >= 0 ? NULL : "an order for a window that does not exist";
	case GW_WIN_ICON: {
		const WINDOW_ICON_ORDER *ic = o;
		if (at < 0)
			return "an icon for a window that does not exist";
		if (ic && ic->iconInfo &&
		    (ic->iconInfo->width > GW_ICON_MAX || ic->iconInfo->height > GW_ICON_MAX))
			return "an icon too large";
		return NULL;
	}
	case GW_WIN_DELETE:
		if (at < 0)
			return "a delete for a window that does not exist";
		w->id[at] = w->id[--w->n];
		return NULL;
	default:
		return "an unknown window order";
	}
}

const char *gw_pointer_refusal(int kind, const void *u, uint32_t cache_size)
{
	const POINTER_COLOR_UPDATE *c = NULL;
	uint32_t index = 0;
	switch (kind) {
	case GW_PTR_POSITION:
	case GW_PTR_SYSTEM:
		return NULL;
	case GW_PTR_COLOR:
		c = u;
		break;
	case GW_PTR_NEW:
		c = &((const POINTER_NEW_UPDATE *)u)->colorPtrAttr;
		break;
	case GW_PTR_CACHED:
		index = ((const POINTER_CACHED_UPDATE *)u)->cacheIndex;
		return index < cache_size ? NULL : "a pointer cache index the user never had";
	default:
		return "an unknown pointer update";
	}
	if (c->cacheIndex >= cache_size)
		return "a pointer cache index the user never had";
	if (c->width > GW_PTR_MAX || c->height > GW_PTR_MAX)
		return "a pointer too large";
	return NULL;
}
