/* libvncclient wrapper for the console backend (see vnc.h). */
#include "vnc.h"
#include "log.h"

#include <errno.h>
#include <rfb/rfbclient.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_vnc {
	rfbClient *c;
	gw_vnc_damage_fn damage;
	gw_vnc_resize_fn resize;
	void *arg;
};

static int tag;

static struct gw_vnc *of(rfbClient *c)
{
	return rfbClientGetClientData(c, &tag);
}

static void vlog(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_debug("vnc: %s", buf);
}

void gw_vnc_init_logging(void)
{
	rfbClientLog = vlog;
	rfbClientErr = vlog;
}

static rfbBool on_malloc(rfbClient *c)
{
	struct gw_vnc *v = of(c);
	size_t sz = (size_t)c->width * (size_t)c->height * 4;
	if (c->width <= 0 || c->height <= 0 || c->width > 8192 || c->height > 8192)
		return FALSE;
	uint8_t *fb = realloc(c->frameBuffer, sz);
	if (!fb)
		return FALSE;
	memset(fb, 0, sz);
	c->frameBuffer = fb;
	if (v && v->resize)
		v->resize(v->arg, c->width, c->height);
	return TRUE;
}

static void on_update(rfbClient *c, int x, int y, int w, int h)
{
	struct gw_vnc *v = of(c);
	if (v && v->damage)
		v->damage(v->arg, x, y, w, h);
}

struct gw_vnc *gw_vnc_connect(const char *path, gw_vnc_damage_fn damage, gw_vnc_resize_fn resize,
			      void *arg)
{
	struct gw_vnc *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->damage = damage;
	v->resize = resize;
	v->arg = arg;
	v->c = rfbGetClient(8, 3, 4);
	if (!v->c) {
		free(v);
		return NULL;
	}
	rfbClientSetClientData(v->c, &tag, v);
	/* BGRX in memory, as FreeRDP's PIXEL_FORMAT_BGRX32 */
	v->c->format.redShift = 16;
	v->c->format.greenShift = 8;
	v->c->format.blueShift = 0;
	v->c->MallocFrameBuffer = on_malloc;
	v->c->GotFrameBufferUpdate = on_update;
	v->c->canHandleNewFBSize = TRUE;
	v->c->appData.encodingsString = "raw copyrect zlib hextile";
	v->c->appData.compressLevel = 1;
	/* libvncclient connects to a UNIX socket when serverHost is an absolute path */
	free(v->c->serverHost); /* rfbGetClient put an empty string there */
	v->c->serverHost = strdup(path);
	v->c->serverPort = 0;
	char *argv[] = {"nestor-gateway", NULL};
	int argc = 1;
	if (!v->c->serverHost || !rfbInitClient(v->c, &argc, argv)) {
		/* rfbInitClient frees the client on failure */
		free(v);
		return NULL;
	}
	return v;
}

void gw_vnc_close(struct gw_vnc *v)
{
	if (!v)
		return;
	free(v->c->frameBuffer);
	v->c->frameBuffer = NULL;
	rfbClientCleanup(v->c);
	free(v);
}

int gw_vnc_fd(const struct gw_vnc *v)
{
	return v->c->sock;
}

bool gw_vnc_pump(struct gw_vnc *v)
{
	/* drain what is buffered without blocking */
	for (int i = 0; i < 64; i++) {
		int r = WaitForMessage(v->c, 0);
		if (r < 0)
			return false;
		if (r == 0 && i > 0)
			break;
		if (r == 0 && !v->c->buffered)
			break;
		if (!HandleRFBServerMessage(v->c))
			return false;
	}
	return true;
}

const uint8_t *gw_vnc_pixels(const struct gw_vnc *v, int *w, int *h)
{
	*w = v->c->width;
	*h = v->c->height;
	return v->c->frameBuffer;
}

bool gw_vnc_key(struct gw_vnc *v, int qnum, bool down)
{
	return SendExtendedKeyEvent(v->c, 0, (uint32_t)qnum, down ? TRUE : FALSE);
}

bool gw_vnc_keysym(struct gw_vnc *v, uint32_t keysym, bool down)
{
	return SendKeyEvent(v->c, keysym, down ? TRUE : FALSE);
}

bool gw_vnc_pointer(struct gw_vnc *v, int x, int y, int mask)
{
	return SendPointerEvent(v->c, x, y, mask);
}

void gw_vnc_refresh(struct gw_vnc *v)
{
	SendFramebufferUpdateRequest(v->c, 0, 0, v->c->width, v->c->height, FALSE);
}
