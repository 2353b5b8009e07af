/* Icons (icon.h): drawn with draw.c, encoded with zlib. */
#include "icon.h"
#include "draw.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void le(uint8_t *p, uint32_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* One PNG chunk: length, type, data, CRC of type and data. */
static void chunk(struct evbuffer *b, const char *type, const uint8_t *data, uint32_t len)
{
	uint8_t h[8], c[4];
	be32(h, len);
	memcpy(h + 4, type, 4);
	uLong crc = crc32(0, h + 4, 4);
	if (len)
		crc = crc32(crc, data, len);
	be32(c, (uint32_t)crc);
	evbuffer_add(b, h, 8);
	if (len)
		evbuffer_add(b, data, len);
	evbuffer_add(b, c, 4);
}

/* The first letter of TITLE (else ALIAS), upper case, as a string. */
static void initial(const char *alias, const char *title, char out[2])
{
	const char *s = title && *title ? title : alias;
	unsigned char c = (unsigned char)(s && *s ? s[0] : '?');
	if (c >= 'a' && c <= 'z')
		c = (unsigned char)(c - 'a' + 'A');
	out[0] = c < 0x80 && c >= 0x20 ? (char)c : '?';
	out[1] = '\0';
}

int pt_icon_png(struct evbuffer *b, const struct gw_font *f, const char *alias, const char *title)
{
	enum { N = PT_ICON_SIZE };
	struct gw_fb fb;
	if (gw_fb_init(&fb, N, N) < 0)
		return -ENOMEM;
	/* a colour of the alias: FNV-1a, kept in the darker half so white reads on it */
	uint32_t h = 2166136261u;
	for (const char *p = alias; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	uint32_t rgb =
	    ((h >> 16 & 0x7f) + 0x20) << 16 | ((h >> 8 & 0x7f) + 0x20) << 8 | ((h & 0x7f) + 0x20);
	gw_fill(&fb, 0, 0, N, N, 0xffffff);
	gw_fill(&fb, 1, 1, N - 2, N - 2, rgb);
	char letter[2];
	initial(alias, title, letter);
	unsigned scale = f->height * 2 <= N - 4 ? 2 : 1;
	int tw = (int)gw_text_width(f, scale, letter), th = (int)(f->height * scale);
	gw_text(&fb, f, (N - tw) / 2, (N - th) / 2, scale, 0xffffff, letter);

	/* RGBA rows, each behind its filter byte (0: none) */
	uint8_t raw[N * (1 + N * 4)];
	for (unsigned y = 0; y < N; y++) {
		uint8_t *row = raw + y * (1 + N * 4);
		row[0] = 0;
		for (unsigned x = 0; x < N; x++) {
			const uint8_t *px = fb.pixels + (size_t)y * fb.stride + x * 4; /* BGRX */
			bool corner = (x == 0 || x == N - 1) && (y == 0 || y == N - 1);
			row[1 + x * 4] = px[2];
			row[2 + x * 4] = px[1];
			row[3 + x * 4] = px[0];
			row[4 + x * 4] = corner ? 0 : 255;
		}
	}
	gw_fb_finish(&fb);
	uLongf zlen = compressBound(sizeof(raw));
	uint8_t *z = malloc(zlen);
	if (!z)
		return -ENOMEM;
	if (compress2(z, &zlen, raw, sizeof(raw), 9) != Z_OK) {
		free(z);
		return -EIO;
	}
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	uint8_t ihdr[13];
	be32(ihdr, N);
	be32(ihdr + 4, N);
	ihdr[8] = 8;  /* bits per channel */
	ihdr[9] = 6;  /* RGBA */
	ihdr[10] = 0; /* deflate */
	ihdr[11] = 0; /* adaptive filtering */
	ihdr[12] = 0; /* not interlaced */
	evbuffer_add(b, sig, sizeof(sig));
	chunk(b, "IHDR", ihdr, sizeof(ihdr));
	chunk(b, "IDAT", z, (uint32_t)zlen);
	chunk(b, "IEND", NULL, 0);
	free(z);
	return 0;
}

int pt_icon_ico(struct evbuffer *b, const struct gw_font *f, const char *alias, const char *title)
{
	struct evbuffer *png = evbuffer_new();
	if (!png)
		return -ENOMEM;
	int r = pt_icon_png(png, f, alias, title);
	if (r == 0) {
		/* ICONDIR (reserved, type 1, one image), then its ICONDIRENTRY; a PNG inside */
		uint8_t h[6 + 16] = {0};
		le(h + 2, 1, 2);
		le(h + 4, 1, 2);
		h[6] = PT_ICON_SIZE;
		h[7] = PT_ICON_SIZE;
		le(h + 10, 1, 2);  /* planes */
		le(h + 12, 32, 2); /* bits per pixel */
		le(h + 14, (uint32_t)evbuffer_get_length(png), 4);
		le(h + 18, sizeof(h), 4);
		evbuffer_add(b, h, sizeof(h));
		evbuffer_add_buffer(b, png);
	}
	evbuffer_free(png);
	return r;
}
