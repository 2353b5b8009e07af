/*
 * Drawing the gateway's own screens (login, wait, messages) into a 32-bit
 * BGRX framebuffer with a PSF console font. Pure: no I/O except
 * gw_font_load, which reads a font file once at start-up.
 *
 * int functions return 0 or a negative errno.
 */
#ifndef NESTOR_GW_DRAW_H
#define NESTOR_GW_DRAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_font {
	unsigned width, height; /* glyph cell, pixels */
	unsigned bytes_per_glyph;
	unsigned n_glyphs;
	uint8_t *glyphs;
	uint16_t map[256]; /* Latin-1 code point -> glyph index */
};

/* Load a PSF1/PSF2 font, gzip-compressed or not. */
int gw_font_load(struct gw_font *f, const char *path, char *err, size_t errlen);
/* A built-in-free fallback: every glyph is a box (no font file). */
void gw_font_boxes(struct gw_font *f);
void gw_font_free(struct gw_font *f);

struct gw_fb {
	unsigned width, height; /* visible size */
	unsigned stride;	/* bytes per row */
	uint8_t *pixels;	/* BGRX; rows padded to a multiple of 64 pixels */
	unsigned alloc_w, alloc_h;
};

int gw_fb_init(struct gw_fb *fb, unsigned width, unsigned height);
void gw_fb_finish(struct gw_fb *fb);
void gw_fill(struct gw_fb *fb, int x, int y, int w, int h, uint32_t rgb);
/* Draw UTF-8 TEXT (Latin-1 range shown, others as '?') at pixel X,Y scaled by SCALE. */
void gw_text(struct gw_fb *fb, const struct gw_font *f, int x, int y, unsigned scale, uint32_t rgb,
	     const char *text);
unsigned gw_text_width(const struct gw_font *f, unsigned scale, const char *text);

struct gw_login_view {
	const char *user;
	size_t password_len; /* only the length is drawn */
	const char *code;    /* the one-time code field: NULL when not asked for */
	unsigned focus;	     /* the focused field: 0 user, 1 password, 2 code */
	const char *message; /* e.g. "Wrong user name or password (2 of 3)" */
	const char *app_title;
};

struct gw_wait_view {
	const char *app_title;
	const char *state;     /* "queued", "starting" */
	unsigned position;     /* 0 when not queued */
	long long estimate_ms; /* -1 unknown */
	long long elapsed_ms;
	const char *reason; /* why queued */
	const char *notice; /* the fleet: what became of the last session, or NULL */
	unsigned tick;	    /* animation step */
};

void gw_draw_login(struct gw_fb *fb, const struct gw_font *f, const struct gw_login_view *v);
void gw_draw_wait(struct gw_fb *fb, const struct gw_font *f, const struct gw_wait_view *v);
void gw_draw_message(struct gw_fb *fb, const struct gw_font *f, const char *title,
		     const char *message);

/*
 * The banner of an announced end, across the top of what the client sees:
 * two lines (the countdown, the message) on GW_BANNER_BG, gw_banner_height
 * pixels high (one or two rows of 64-pixel tiles with a console font).
 */
#define GW_BANNER_BG 0xf5b301u /* amber */
#define GW_BANNER_FG 0x1a1a1au
#define GW_BANNER_EDGE 0x8a5a00u
unsigned gw_banner_height(const struct gw_font *f);
/* "This session ends in M:SS." (H:MM:SS from an hour), or "... is ending now." at 0. */
void gw_banner_countdown(char *out, size_t len, long long left_s);
/* TEXT cut to whole characters that fit a banner WIDTH wide, "..." marking a cut; into OUT. */
void gw_banner_fit(const struct gw_font *f, unsigned width, const char *text, char *out,
		   size_t len);
/* Draw the banner into FB (the banner's own: the screen's width, gw_banner_height high). */
void gw_draw_banner(struct gw_fb *fb, const struct gw_font *f, const char *countdown,
		    const char *message);

#endif
