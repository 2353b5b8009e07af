/*
 * An app's icon, made rather than stored: a coloured square (the colour
 * from the alias, so each app keeps its own) with the title's first
 * letter in the gateway's console font. As a PNG (the portal's page, the
 * feed's Icon32) and as an .ico holding that PNG (the feed's IconRaw).
 * Pure: writes into evbuffers.
 */
#ifndef NESTOR_PORTAL_ICON_H
#define NESTOR_PORTAL_ICON_H

struct evbuffer;
struct gw_font;

#define PT_ICON_SIZE 32

/* 0, or a negative errno (out of memory, zlib). */
int pt_icon_png(struct evbuffer *b, const struct gw_font *f, const char *alias, const char *title);
int pt_icon_ico(struct evbuffer *b, const struct gw_font *f, const char *alias, const char *title);

#endif
