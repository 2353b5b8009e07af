/*
 * The screen the client sees: one framebuffer, sent as 64x64 tiles (planar
 * compressed, or RemoteFX to clients that offer it). Damage is tracked per
 * tile and frames are paced (frame_rate), so a slow client only ever delays
 * itself. Also what goes into it: the guest's pixels (gw_screen_blit, from
 * either backend), the guest's size, and our own screens (login, wait,
 * messages) drawn through draw.c, and the banner of an announced end laid
 * over the guest's top rows (kept on top of its blits, what it covers kept
 * aside until it goes). When the guest's first frame goes out,
 * its time goes to the metrics (gwmetrics.h).
 *
 * Runs on the connection's thread. Sends may block on the client's socket
 * (bounded by TCP_USER_TIMEOUT); they are under the peer's lock, shared
 * with the RAIL thread.
 */
#include "log.h"
#include "worker.h"

#include <errno.h>
#include <freerdp/update.h>
#include <stdlib.h>
#include <string.h>

#define TILE 64

int gw_screen_init(struct gw_peer *p)
{
	p->planar = freerdp_bitmap_planar_context_new(
	    PLANAR_FORMAT_HEADER_NA | PLANAR_FORMAT_HEADER_RLE, TILE, TILE);
	return p->planar ? 0 : -ENOMEM;
}

void gw_screen_rfx_start(struct gw_peer *p)
{
	rdpSettings *s = p->ctx.settings;
	if (s->RemoteFxCodec && p->gw->cfg.remotefx) {
		p->rfx = rfx_context_new(TRUE);
		p->rfx_stream = Stream_New(NULL, 64 * 1024);
		if (p->rfx && p->rfx_stream) {
			p->rfx->mode = RLGR3;
			rfx_context_set_pixel_format(p->rfx, PIXEL_FORMAT_BGRX32);
		} else {
			rfx_context_free(p->rfx);
			p->rfx = NULL;
		}
	}
}

void gw_screen_finish(struct gw_peer *p)
{
	freerdp_bitmap_planar_context_free(p->planar);
	rfx_context_free(p->rfx);
	if (p->rfx_stream)
		Stream_Free(p->rfx_stream, TRUE);
	gw_screen_banner_off(p, false);
	gw_fb_finish(&p->screen);
	free(p->dirty);
}

int gw_screen_resize(struct gw_peer *p, unsigned w, unsigned h)
{
	gw_screen_banner_off(p, false); /* drawn again, at the new width, by the next tick */
	gw_fb_finish(&p->screen);
	free(p->dirty);
	p->dirty = NULL;
	if (gw_fb_init(&p->screen, w, h) < 0)
		return -ENOMEM;
	p->tiles_x = (w + TILE - 1) / TILE;
	p->tiles_y = (h + TILE - 1) / TILE;
	if (p->rfx && !rfx_context_reset(p->rfx, w, h))
		return -ENOMEM;
	p->dirty = calloc((size_t)p->tiles_x * p->tiles_y, 1);
	return p->dirty ? 0 : -ENOMEM;
}

void gw_screen_damage(struct gw_peer *p, int x, int y, int w, int h)
{
	if (!p->dirty || w <= 0 || h <= 0)
		return;
	int x0 = x < 0 ? 0 : x / TILE, y0 = y < 0 ? 0 : y / TILE;
	int x1 = (x + w - 1) / TILE, y1 = (y + h - 1) / TILE;
	if (x1 >= (int)p->tiles_x)
		x1 = (int)p->tiles_x - 1;
	if (y1 >= (int)p->tiles_y)
		y1 = (int)p->tiles_y - 1;
	for (int ty = y0; ty <= y1; ty++)
		for (int tx = x0; tx <= x1; tx++)
			p->dirty[ty * (int)p->tiles_x + tx] = 1;
}

void gw_screen_damage_all(struct gw_peer *p)
{
	gw_screen_damage(p, 0, 0, (int)p->screen.width, (int)p->screen.height);
}

bool gw_screen_has_dirty(const struct gw_peer *p)
{
	size_t n = p->dirty ? (size_t)p->tiles_x * p->tiles_y : 0;
	for (size_t i = 0; i < n; i++)
		if (p->dirty[i])
			return true;
	return false;
}

/* A frame went out: the wait screen was seen, or the guest's first frame reached the user. */
static void frame_sent(struct gw_peer *p)
{
	if (p->phase == PH_WAIT)
		p->wait_shown = true;
	if (p->phase == PH_GUEST && p->guest_drawn && !p->first_frame_sent) {
		p->first_frame_sent = true;
		gw_metrics_first_frame(p->gw->metrics, p->shown,
				       (double)(now_ms() - p->asked_ms) / 1e3);
	}
}

/* The dirty tiles as rectangles (clipped to the screen) into OUT; clears them. */
static size_t take_dirty(struct gw_peer *p, RFX_RECT *out)
{
	size_t k = 0;
	for (unsigned ty = 0; ty < p->tiles_y; ty++) {
		for (unsigned tx = 0; tx < p->tiles_x; tx++) {
			if (!p->dirty[ty * p->tiles_x + tx])
				continue;
			p->dirty[ty * p->tiles_x + tx] = 0;
			unsigned x = tx * TILE, y = ty * TILE;
			out[k].x = (UINT16)x;
			out[k].y = (UINT16)y;
			out[k].width =
			    (UINT16)(p->screen.width - x < TILE ? p->screen.width - x : TILE);
			out[k].height =
			    (UINT16)(p->screen.height - y < TILE ? p->screen.height - y : TILE);
			k++;
		}
	}
	return k;
}

/* RemoteFX: the dirty tiles as rectangles of one frame, in as many messages as needed. */
static bool flush_rfx(struct gw_peer *p, size_t count)
{
	rdpSettings *s = p->ctx.settings;
	RFX_RECT *rects = calloc(count, sizeof(*rects));
	if (!rects)
		return false;
	size_t k = take_dirty(p, rects);
	size_t n = 0;
	RFX_MESSAGE *msgs = rfx_encode_messages_ex(
	    p->rfx, rects, k, p->screen.pixels, p->screen.width, p->screen.height, p->screen.stride,
	    &n, s->MultifragMaxRequestSize);
	free(rects);
	if (!msgs)
		return false;
	SURFACE_BITS_COMMAND cmd = {0};
	cmd.cmdType = CMDTYPE_STREAM_SURFACE_BITS;
	cmd.bmp.codecID = s->RemoteFxCodecId;
	cmd.destRight = p->screen.width;
	cmd.destBottom = p->screen.height;
	cmd.bmp.bpp = 32;
	cmd.bmp.width = p->screen.width;
	cmd.bmp.height = p->screen.height;
	cmd.skipCompression = TRUE;
	RFX_RECT *first_rects = n ? msgs[0].rects : NULL;
	bool ok = true;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < n; i++) {
		Stream_SetPosition(p->rfx_stream, 0);
		if (ok && rfx_write_message(p->rfx, p->rfx_stream, &msgs[i])) {
			cmd.bmp.bitmapDataLength = (UINT32)Stream_GetPosition(p->rfx_stream);
			cmd.bmp.bitmapData = Stream_Buffer(p->rfx_stream);
			ok = p->ctx.update->SurfaceBits(&p->ctx, &cmd);
		} else {
			ok = false;
		}
		rfx_message_free(p->rfx, &msgs[i]);
	}
	pthread_mutex_unlock(&p->lock);
	free(first_rects); /* the messages share one rect array, owned by the caller */
	free(msgs);
	if (ok)
		frame_sent(p);
	return ok;
}

/* Send dirty tiles as planar bitmap updates, in batches that fit one PDU. */
int gw_screen_flush(struct gw_peer *p, bool force)
{
	rdpSettings *s = p->ctx.settings;
	if (!p->activated || p->suppress || !p->dirty || p->need_resize)
		return 0;
	if (p->rail_mode && !p->window_created)
		return 0;
	int64_t now = now_ms();
	if (!force && now - p->last_frame_ms < 1000 / (int64_t)p->gw->cfg.frame_rate)
		return 0;
	size_t n = (size_t)p->tiles_x * p->tiles_y, count = 0;
	for (size_t i = 0; i < n; i++)
		count += p->dirty[i];
	if (!count)
		return 0;
	p->last_frame_ms = now;
	if (p->rfx)
		return flush_rfx(p, count) ? 0 : -EIO;
	BITMAP_DATA *bd = calloc(count, sizeof(*bd));
	if (!bd)
		return -ENOMEM;
	RFX_RECT *tiles = calloc(count, sizeof(*tiles));
	if (!tiles) {
		free(bd);
		return -ENOMEM;
	}
	size_t n_tiles = take_dirty(p, tiles), k = 0;
	for (size_t t = 0; t < n_tiles; t++) {
		unsigned x = tiles[t].x, y = tiles[t].y;
		/* planar wants multiples of 4: the framebuffer is padded, clients clip */
		unsigned w = (tiles[t].width + 3u) & ~3u;
		unsigned h = (tiles[t].height + 3u) & ~3u;
		BITMAP_DATA *b = &bd[k];
		const BYTE *src = p->screen.pixels + (size_t)y * p->screen.stride + x * 4;
		UINT32 size = 0;
		b->bitmapDataStream = freerdp_bitmap_compress_planar(
		    p->planar, src, PIXEL_FORMAT_BGRX32, w, h, p->screen.stride, NULL, &size);
		if (!b->bitmapDataStream)
			continue;
		b->destLeft = x;
		b->destTop = y;
		b->width = w;
		b->height = h;
		b->destRight = x + w - 1;
		b->destBottom = y + h - 1;
		b->bitsPerPixel = 32;
		b->compressed = TRUE;
		b->bitmapLength = size;
		b->cbCompMainBodySize = size;
		b->cbScanWidth = w * 4;
		b->cbUncompressedSize = w * h * 4;
		k++;
	}
	free(tiles);
	bool ok = true;
	UINT32 max = s->MultifragMaxRequestSize ? s->MultifragMaxRequestSize : 0x3f0000;
	size_t i = 0;
	pthread_mutex_lock(&p->lock);
	while (i < k && ok) {
		size_t j = i, bytes = 1024;
		while (j < k && (j == i || bytes + bd[j].bitmapLength + 64 < max)) {
			bytes += bd[j].bitmapLength + 64;
			j++;
		}
		BITMAP_UPDATE up = {0};
		up.number = up.count = (UINT32)(j - i);
		up.rectangles = &bd[i];
		ok = p->ctx.update->BitmapUpdate(&p->ctx, &up);
		i = j;
	}
	pthread_mutex_unlock(&p->lock);
	if (ok)
		frame_sent(p);
	for (size_t m = 0; m < k; m++)
		free(bd[m].bitmapDataStream);
	free(bd);
	return ok ? 0 : -EIO;
}

/* Copy the guest's pixels (BGRX, GW x GH, STRIDE bytes a row) into what the client sees. */
void gw_screen_blit(struct gw_peer *p, const uint8_t *px, int gw_, int gh, int stride, int x, int y,
		    int w, int h)
{
	if (!px)
		return;
	p->guest_drawn = true;
	int x1 = x + w > (int)p->screen.width ? (int)p->screen.width : x + w;
	int y1 = y + h > (int)p->screen.height ? (int)p->screen.height : y + h;
	x1 = x1 > gw_ ? gw_ : x1;
	y1 = y1 > gh ? gh : y1;
	x = x < 0 ? 0 : x;
	y = y < 0 ? 0 : y;
	if (x1 <= x || y1 <= y)
		return;
	for (int yy = y; yy < y1; yy++)
		memcpy(p->screen.pixels + (size_t)yy * p->screen.stride + (size_t)x * 4,
		       px + (size_t)yy * (size_t)stride + (size_t)x * 4, (size_t)(x1 - x) * 4);
	/* under the banner: the guest's pixels are kept for later, the banner stays on top */
	for (int yy = y; p->banner.pixels && yy < y1 && yy < (int)p->banner.height; yy++) {
		size_t off = (size_t)x * 4, n = (size_t)(x1 - x) * 4;
		uint8_t *row = p->screen.pixels + (size_t)yy * p->screen.stride;
		memcpy(p->under.pixels + (size_t)yy * p->under.stride + off, row + off, n);
		memcpy(row + off, p->banner.pixels + (size_t)yy * p->banner.stride + off, n);
	}
	gw_screen_damage(p, x, y, x1 - x, y1 - y);
}

/* Copy the top rows of FROM over TO's (the banner's height, the screen's width). */
static void copy_rows(struct gw_fb *to, const struct gw_fb *from, unsigned rows, unsigned w)
{
	for (unsigned y = 0; y < rows; y++)
		memcpy(to->pixels + (size_t)y * to->stride, from->pixels + (size_t)y * from->stride,
		       (size_t)w * 4);
}

int gw_screen_banner(struct gw_peer *p, const char *countdown, const char *message)
{
	unsigned w = p->screen.width, h = gw_banner_height(&p->gw->font);
	if (!p->screen.pixels || !w)
		return -EINVAL;
	if (h > p->screen.height)
		h = p->screen.height;
	if (!p->banner.pixels) {
		if (gw_fb_init(&p->banner, w, h) < 0 || gw_fb_init(&p->under, w, h) < 0) {
			gw_fb_finish(&p->banner);
			gw_fb_finish(&p->under);
			return -ENOMEM;
		}
		copy_rows(&p->under, &p->screen, h, w);
	}
	gw_draw_banner(&p->banner, &p->gw->font, countdown, message);
	copy_rows(&p->screen, &p->banner, h, w);
	gw_screen_damage(p, 0, 0, (int)w, (int)h);
	return 0;
}

void gw_screen_banner_off(struct gw_peer *p, bool restore)
{
	if (!p->banner.pixels)
		return;
	if (restore && p->screen.pixels) {
		copy_rows(&p->screen, &p->under, p->under.height, p->under.width);
		gw_screen_damage(p, 0, 0, (int)p->under.width, (int)p->under.height);
	}
	gw_fb_finish(&p->banner);
	gw_fb_finish(&p->under);
}

/* Desktop resize, or a RAIL window resize. */
void gw_screen_guest_resize(struct gw_peer *p, int w, int h)
{
	rdpSettings *s = p->ctx.settings;
	log_debug("peer %s: guest screen %dx%d", p->addr, w, h);
	if (!gw_guest_size_ok((uint32_t)w, (uint32_t)h)) {
		gw_peer_refused(p, "a screen size", "larger than any desktop the gateway shows");
		return;
	}
	if ((unsigned)w == p->screen.width && (unsigned)h == p->screen.height)
		return;
	if (p->rail_relay) {
		gw_screen_resize(p, (unsigned)w, (unsigned)h); /* the guest's windows live in it */
		return;
	}
	if (p->rail_mode) {
		gw_screen_resize(p, (unsigned)w, (unsigned)h);
		if (p->window_created)
			gw_rail_window(p, false);
		return;
	}
	if (s->DesktopResize) {
		gw_screen_resize(p, (unsigned)w, (unsigned)h);
		s->DesktopWidth = (UINT32)w;
		s->DesktopHeight = (UINT32)h;
		p->need_resize = true; /* sent from the loop, outside libvncclient */
	}
	/* else: the guest is shown at the top left of the client's desktop, clipped to it */
	else if (s->DesktopWidth && s->DesktopHeight) {
		unsigned cw = (unsigned)w < s->DesktopWidth ? (unsigned)w : s->DesktopWidth;
		unsigned ch = (unsigned)h < s->DesktopHeight ? (unsigned)h : s->DesktopHeight;
		if (cw != p->screen.width || ch != p->screen.height)
			gw_screen_resize(p, cw, ch);
	}
}

void gw_screen_draw_login(struct gw_peer *p)
{
	struct gw_login_view v = {.user = p->login.user,
				  .password_len = strlen(p->login.pass),
				  .code = p->login.want_code ? p->login.code : NULL,
				  .focus = p->login.focus,
				  .message = p->message,
				  .app_title = p->title[0] ? p->title : p->app};
	gw_draw_login(&p->screen, &p->gw->font, &v);
	gw_screen_damage_all(p);
}

void gw_screen_draw_wait(struct gw_peer *p)
{
	struct gw_wait_view v = {.app_title = p->sess.title[0] ? p->sess.title : p->app,
				 .state = p->sess.state,
				 .position =
				     !strcmp(p->sess.state, "queued") ? p->sess.position : 0,
				 .estimate_ms = p->sess.estimate_ms,
				 .elapsed_ms = now_ms() - p->wait_started_ms,
				 .reason = p->sess.reason,
				 .notice = p->sess.notice,
				 .tick = p->tick++};
	gw_draw_wait(&p->screen, &p->gw->font, &v);
	gw_screen_damage_all(p);
	p->last_draw_ms = now_ms();
}

void gw_screen_draw_message(struct gw_peer *p, const char *title, const char *msg)
{
	gw_screen_banner_off(p, false); /* the message covers everything */
	gw_draw_message(&p->screen, &p->gw->font, title, msg);
	gw_screen_damage_all(p);
}
