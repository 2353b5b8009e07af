/*
 * Screens drawn by the gateway itself. Pure rendering into memory; the
 * font loader reads one file with zlib (gzip or plain).
 */
#include "draw.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FONT_MAX (1 << 20)

static const uint32_t BG = 0x1d2b3a, PANEL = 0x2c3e50, FG = 0xecf0f1, DIM = 0x95a5a6,
		      ACCENT = 0x3498db, WARN = 0xe67e22, FIELD = 0xffffff, FIELD_FG = 0x1d2b3a;

static int read_gz(const char *path, uint8_t **out, size_t *len)
{
	gzFile gz = gzopen(path, "rb");
	if (!gz)
		return -errno ? -errno : -ENOENT;
	uint8_t *buf = malloc(FONT_MAX);
	int n = buf ? gzread(gz, buf, FONT_MAX) : -1;
	gzclose(gz);
	if (n <= 0) {
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*len = (size_t)n;
	return 0;
}

/* Decode one UTF-8 sequence; returns bytes used (>= 1), *cp = 0xFFFD on error. */
static size_t utf8(const uint8_t *s, size_t n, uint32_t *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	size_t need = (s[0] & 0xe0) == 0xc0   ? 2
		      : (s[0] & 0xf0) == 0xe0 ? 3
		      : (s[0] & 0xf8) == 0xf0 ? 4
					      : 0;
	if (!need || need > n) {
		*cp = 0xfffd;
		return 1;
	}
	uint32_t c = s[0] & (0x7f >> need);
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*cp = 0xfffd;
			return 1;
		}
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return need;
}

static void map_set(struct gw_font *f, uint32_t cp, unsigned glyph)
{
	if (cp < 256 && f->map[cp] == 0xffff)
		f->map[cp] = (uint16_t)glyph;
}

int gw_font_load(struct gw_font *f, const char *path, char *err, size_t errlen)
{
	memset(f, 0, sizeof(*f));
	memset(f->map, 0xff, sizeof(f->map));
	uint8_t *d = NULL;
	size_t n = 0;
	int r = read_gz(path, &d, &n);
	if (r < 0) {
		snprintf(err, errlen, "cannot read font %s", path);
		return r;
	}
	size_t table = 0;
	bool has_table = false, psf2 = false;
	if (n >= 4 && d[0] == 0x36 && d[1] == 0x04) { /* PSF1 */
		f->width = 8;
		f->height = d[3];
		f->bytes_per_glyph = d[3];
		f->n_glyphs = (d[2] & 1) ? 512 : 256;
		has_table = d[2] & 2;
		table = 4 + (size_t)f->n_glyphs * f->bytes_per_glyph;
		if (table > n)
			goto bad;
		f->glyphs = malloc(table - 4);
		if (!f->glyphs)
			goto bad;
		memcpy(f->glyphs, d + 4, table - 4);
	} else if (n >= 32 && d[0] == 0x72 && d[1] == 0xb5 && d[2] == 0x4a && d[3] == 0x86) {
		uint32_t h[8];
		memcpy(h, d, 32);
		psf2 = true;
		size_t hdr = h[2];
		f->n_glyphs = h[4];
		f->bytes_per_glyph = h[5];
		f->height = h[6];
		f->width = h[7];
		has_table = h[3] & 1;
		if (!f->width || f->width > 32 || !f->height || f->height > 64 ||
		    f->n_glyphs > 65536 || f->bytes_per_glyph != f->height * ((f->width + 7) / 8))
			goto bad;
		table = hdr + (size_t)f->n_glyphs * f->bytes_per_glyph;
		if (hdr < 32 || table > n)
			goto bad;
		f->glyphs = malloc((size_t)f->n_glyphs * f->bytes_per_glyph);
		if (!f->glyphs)
			goto bad;
		memcpy(f->glyphs, d + hdr, (size_t)f->n_glyphs * f->bytes_per_glyph);
	} else {
		goto bad;
	}
	if (f->height == 0 || f->height > 64)
		goto bad;
	if (has_table) {
		size_t p = table;
		for (unsigned g = 0; g < f->n_glyphs && p < n; g++) {
			bool seq = false;
			if (!psf2) {
				while (p + 1 < n) {
					uint16_t u = (uint16_t)(d[p] | d[p + 1] << 8);
					p += 2;
					if (u == 0xffff)
						break;
					if (u == 0xfffe)
						seq = true;
					else if (!seq)
						map_set(f, u, g);
				}
			} else {
				while (p < n && d[p] != 0xff) {
					if (d[p] == 0xfe) {
						seq = true;
						p++;
						continue;
					}
					uint32_t cp;
					p += utf8(d + p, n - p, &cp);
					if (!seq)
						map_set(f, cp, g);
				}
				p++;
			}
		}
	} else {
		for (unsigned c = 0; c < 256 && c < f->n_glyphs; c++)
			f->map[c] = (uint16_t)c;
	}
	free(d);
	return 0;
bad:
	free(d);
	free(f->glyphs);
	f->glyphs = NULL;
	snprintf(err, errlen, "%s is not a PSF console font", path);
	return -EINVAL;
}

void gw_font_boxes(struct gw_font *f)
{
	memset(f, 0, sizeof(*f));
	memset(f->map, 0xff, sizeof(f->map));
	f->width = 8;
	f->height = 16;
	f->bytes_per_glyph = 16;
	f->n_glyphs = 1;
	f->glyphs = calloc(1, 16);
	if (f->glyphs)
		for (int i = 3; i < 13; i++)
			f->glyphs[i] = i == 3 || i == 12 ? 0x7e : 0x42;
	for (int c = 33; c < 256; c++)
		f->map[c] = 0;
}

void gw_font_free(struct gw_font *f)
{
	free(f->glyphs);
	f->glyphs = NULL;
}

int gw_fb_init(struct gw_fb *fb, unsigned width, unsigned height)
{
	if (!width || !height || width > 8192 || height > 8192)
		return -EINVAL;
	fb->width = width;
	fb->height = height;
	fb->alloc_w = (width + 63) & ~63u;
	fb->alloc_h = (height + 63) & ~63u;
	fb->stride = fb->alloc_w * 4;
	fb->pixels = calloc((size_t)fb->stride, fb->alloc_h);
	return fb->pixels ? 0 : -ENOMEM;
}

void gw_fb_finish(struct gw_fb *fb)
{
	free(fb->pixels);
	memset(fb, 0, sizeof(*fb));
}

void gw_fill(struct gw_fb *fb, int x, int y, int w, int h, uint32_t rgb)
{
	int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
	int x1 = x + w > (int)fb->width ? (int)fb->width : x + w;
	int y1 = y + h > (int)fb->height ? (int)fb->height : y + h;
	for (int yy = y0; yy < y1; yy++) {
		uint32_t *row = (uint32_t *)(fb->pixels + (size_t)yy * fb->stride);
		for (int xx = x0; xx < x1; xx++)
			row[xx] = rgb;
	}
}

static const uint8_t *glyph(const struct gw_font *f, uint32_t cp)
{
	unsigned g = cp < 256 ? f->map[cp] : 0xffff;
	if (g == 0xffff)
		g = f->map['?'];
	if (g == 0xffff || g >= f->n_glyphs)
		return NULL;
	return f->glyphs + (size_t)g * f->bytes_per_glyph;
}

unsigned gw_text_width(const struct gw_font *f, unsigned scale, const char *text)
{
	unsigned n = 0;
	const uint8_t *s = (const uint8_t *)text;
	size_t len = strlen(text);
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		i += utf8(s + i, len - i, &cp);
		n++;
	}
	return n * f->width * scale;
}

void gw_text(struct gw_fb *fb, const struct gw_font *f, int x, int y, unsigned scale, uint32_t rgb,
	     const char *text)
{
	const uint8_t *s = (const uint8_t *)text;
	size_t len = strlen(text);
	unsigned rowbytes = (f->width + 7) / 8;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		i += utf8(s + i, len - i, &cp);
		const uint8_t *gl = glyph(f, cp);
		if (gl) {
			for (unsigned gy = 0; gy < f->height; gy++)
				for (unsigned gx = 0; gx < f->width; gx++)
					if (gl[gy * rowbytes + gx / 8] & (0x80 >> (gx % 8)))
						gw_fill(fb, x + (int)(gx * scale),
							y + (int)(gy * scale), (int)scale,
							(int)scale, rgb);
		}
		x += (int)(f->width * scale);
	}
}

static void centered(struct gw_fb *fb, const struct gw_font *f, int y, unsigned scale, uint32_t rgb,
		     const char *text)
{
	int w = (int)gw_text_width(f, scale, text);
	if (w > (int)fb->width - 16 && scale > 1) {
		scale = 1;
		w = (int)gw_text_width(f, scale, text);
	}
	gw_text(fb, f, ((int)fb->width - w) / 2, y, scale, rgb, text);
}

static unsigned pick_scale(const struct gw_fb *fb)
{
	return fb->width >= 700 && fb->height >= 380 ? 2 : 1;
}

static void panel(struct gw_fb *fb, const struct gw_font *f, const char *title, int *top,
		  unsigned *scale)
{
	*scale = pick_scale(fb);
	gw_fill(fb, 0, 0, (int)fb->width, (int)fb->height, BG);
	int bar = (int)(f->height * *scale) + 16;
	gw_fill(fb, 0, 0, (int)fb->width, bar, PANEL);
	gw_fill(fb, 0, bar, (int)fb->width, 3, ACCENT);
	gw_text(fb, f, 12, 8, *scale, FG, "nestor");
	if (title) {
		int w = (int)gw_text_width(f, *scale, title);
		gw_text(fb, f, (int)fb->width - w - 12, 8, *scale, DIM, title);
	}
	*top = bar + 3 + (int)(f->height * *scale);
}

void gw_draw_login(struct gw_fb *fb, const struct gw_font *f, const struct gw_login_view *v)
{
	int y;
	unsigned sc;
	panel(fb, f, v->app_title, &y, &sc);
	int lh = (int)(f->height * sc);
	int n = v->code ? 3 : 2;
	/* three fields on a small screen: smaller labels, closer together */
	int gap = 16, head = lh * 2;
	unsigned lsc = sc;
	if (y + head + n * (2 * lh + 4 + gap) + 2 * lh + (int)f->height > (int)fb->height) {
		gap = 8;
		head = lh + lh / 2;
		lsc = 1;
	}
	centered(fb, f, y, sc, FG, "Sign in");
	y += head;
	int fw = (int)(f->width * sc) * 24, x = ((int)fb->width - fw) / 2;
	const char *labels[3] = {"User", "Password", "One-time code"};
	for (int i = 0; i < n; i++) {
		bool focus = (unsigned)i == v->focus;
		gw_text(fb, f, x, y, lsc, DIM, labels[i]);
		y += (int)(f->height * lsc) + 4;
		gw_fill(fb, x - 4, y - 4, fw + 8, lh + 8, focus ? ACCENT : DIM);
		gw_fill(fb, x - 2, y - 2, fw + 4, lh + 4, FIELD);
		char shown[40];
		if (i == 0) {
			snprintf(shown, sizeof(shown), "%.22s", v->user ? v->user : "");
		} else if (i == 1) {
			size_t len = v->password_len > 22 ? 22 : v->password_len;
			memset(shown, '*', len);
			shown[len] = '\0';
		} else {
			/* as typed: good for one sign-in only, and a digit is easy to miss */
			snprintf(shown, sizeof(shown), "%.22s", v->code);
		}
		if (focus)
			strcat(shown, "_");
		gw_text(fb, f, x, y, sc, FIELD_FG, shown);
		y += lh + gap;
	}
	if (v->message && *v->message)
		centered(fb, f, y, sc, WARN, v->message);
	y += lh * 2;
	centered(fb, f, y, 1, DIM, "Tab: next field   Enter: sign in");
}

void gw_draw_wait(struct gw_fb *fb, const struct gw_font *f, const struct gw_wait_view *v)
{
	int y;
	unsigned sc;
	panel(fb, f, NULL, &y, &sc);
	int lh = (int)(f->height * sc);
	char line[160];
	snprintf(line, sizeof(line), "Opening %s",
		 v->app_title && *v->app_title ? v->app_title : "your app");
	centered(fb, f, y, sc, FG, line);
	y += lh * 2;
	if (v->position) {
		snprintf(line, sizeof(line), "You are number %u in the queue", v->position);
		centered(fb, f, y, sc, FG, line);
		y += lh + 8;
		if (v->reason && *v->reason) {
			centered(fb, f, y, 1, DIM, v->reason);
			y += (int)f->height + 8;
		}
	} else {
		centered(fb, f, y, sc, FG, "Starting your session...");
		y += lh + 8;
	}
	if (v->notice && *v->notice) { /* the fleet: why this is a new session */
		snprintf(line, sizeof(line), "Your last session was lost: %.100s.", v->notice);
		centered(fb, f, y, 1, DIM, line);
		y += (int)f->height + 8;
	}
	if (v->estimate_ms >= 0) {
		long long s = (v->estimate_ms + 999) / 1000;
		if (s < 60)
			snprintf(line, sizeof(line), "Estimated wait: about %lld s", s);
		else
			snprintf(line, sizeof(line), "Estimated wait: about %lld min",
				 (s + 59) / 60);
	} else {
		snprintf(line, sizeof(line), "Estimated wait: a few moments");
	}
	centered(fb, f, y, sc, DIM, line);
	y += lh + 8;
	snprintf(line, sizeof(line), "Waiting for %lld s", v->elapsed_ms / 1000);
	centered(fb, f, y, sc, DIM, line);
	y += lh * 2;
	/* a moving bar: visibly alive even when nothing else changes */
	int bw = (int)fb->width / 2, bx = ((int)fb->width - bw) / 2;
	gw_fill(fb, bx, y, bw, 8, PANEL);
	int seg = bw / 5, pos = (int)(v->tick % 5) * seg;
	gw_fill(fb, bx + pos, y, seg, 8, ACCENT);
}

void gw_draw_message(struct gw_fb *fb, const struct gw_font *f, const char *title,
		     const char *message)
{
	int y;
	unsigned sc;
	panel(fb, f, NULL, &y, &sc);
	int lh = (int)(f->height * sc);
	centered(fb, f, y, sc, WARN, title);
	y += lh * 2;
	/* wrap the message at word boundaries */
	unsigned cols = fb->width / (f->width * sc) - 4;
	if (cols < 10)
		cols = 10;
	char line[256];
	const char *p = message;
	while (*p && y < (int)fb->height - lh) {
		size_t n = strlen(p);
		if (n > cols) {
			n = cols;
			while (n > 0 && p[n] != ' ')
				n--;
			if (n == 0)
				n = cols;
		}
		if (n >= sizeof(line))
			n = sizeof(line) - 1;
		memcpy(line, p, n);
		line[n] = '\0';
		centered(fb, f, y, sc, FG, line);
		y += lh + 4;
		p += n;
		while (*p == ' ')
			p++;
	}
}

/* --- the banner of an announced end --- */

#define BANNER_PAD 6

unsigned gw_banner_height(const struct gw_font *f)
{
	return 2 * f->height + 3 * BANNER_PAD;
}

void gw_banner_countdown(char *out, size_t len, long long left_s)
{
	if (left_s <= 0) {
		snprintf(out, len, "This session is ending now.");
		return;
	}
	long long h = left_s / 3600, m = left_s / 60 % 60, s = left_s % 60;
	if (h)
		snprintf(out, len, "This session ends in %lld:%02lld:%02lld.", h, m, s);
	else
		snprintf(out, len, "This session ends in %lld:%02lld.", m, s);
}

void gw_banner_fit(const struct gw_font *f, unsigned width, const char *text, char *out, size_t len)
{
	unsigned room = width > 2 * BANNER_PAD ? (width - 2 * BANNER_PAD) / f->width : 0;
	const uint8_t *s = (const uint8_t *)text;
	size_t n = strlen(text), i = 0, chars = 0, cut = 0;
	/* whole characters, as many as fit (room on screen, and in OUT); CUT: where a cut
	 * leaves room for "..." in both */
	while (i < n) {
		uint32_t cp;
		size_t k = utf8(s + i, n - i, &cp);
		if (chars + 3 <= room && i + 4 <= len)
			cut = i;
		if (chars + 1 > room || i + k >= len)
			break;
		i += k;
		chars++;
	}
	if (i < n && cut > 0) {
		memcpy(out, text, cut);
		memcpy(out + cut, "...", 4);
		return;
	}
	/* all of it, or too narrow for a mark: what fits */
	if (len) {
		memcpy(out, text, i);
		out[i] = '\0';
	}
}

void gw_draw_banner(struct gw_fb *fb, const struct gw_font *f, const char *countdown,
		    const char *message)
{
	char line[512];
	gw_fill(fb, 0, 0, (int)fb->width, (int)fb->height, GW_BANNER_BG);
	gw_fill(fb, 0, (int)fb->height - 2, (int)fb->width, 2, GW_BANNER_EDGE);
	gw_banner_fit(f, fb->width, countdown, line, sizeof(line));
	gw_text(fb, f, BANNER_PAD, BANNER_PAD, 1, GW_BANNER_FG, line);
	gw_banner_fit(f, fb->width, message, line, sizeof(line));
	gw_text(fb, f, BANNER_PAD, 2 * BANNER_PAD + (int)f->height, 1, GW_BANNER_FG, line);
}
