/*
 * The browser door's protocols, pure: the WebSocket upgrade and frames
 * (RFC 6455) and the client's half of RFB 3.8 as noVNC speaks it, plus the
 * key and pointer translation to RDP. No sockets, no clock; table-tested
 * (tests/unit/test_webproto.c) and fuzzed (tests/fuzz/fuzz_webproto.c).
 *
 * Everything here reads bytes from the browser: lengths are checked before
 * use, sizes are bounded, anything unexpected is -EPROTO.
 */
#ifndef NESTOR_GW_WEBPROTO_H
#define NESTOR_GW_WEBPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_WS_REQUEST_MAX 8192	    /* the upgrade request, headers included */
#define GW_WS_PAYLOAD_MAX (1 << 20) /* one frame from the browser */
#define GW_LAUNCH_PREFIX "nestor-launch:"

/* What the upgrade request asks for: /websockify?user=U&app=A&ticket=T */
struct gw_ws_upgrade {
	char user[65], app[65], ticket[65];
	bool binary;	 /* the client offered the "binary" subprotocol (noVNC does) */
	char accept[29]; /* Sec-WebSocket-Accept */
};

/*
 * REQ (LEN bytes, ending with the blank line) as a WebSocket upgrade to
 * the browser door: GET, HTTP/1.1, Upgrade and Connection, version 13, a
 * key, and the launch's user, app and ticket in the query. 0, or -EPROTO
 * with WHY set to what is wrong (static text).
 */
int gw_ws_upgrade_parse(const char *req, size_t len, struct gw_ws_upgrade *out, const char **why);
/* Where the request's blank line ends in BUF (LEN bytes): its length, 0 if not yet there. */
size_t gw_ws_request_end(const char *buf, size_t len);

/* The frame decoder's state: one frame's header and unmasking. */
struct gw_ws_dec {
	uint8_t hdr[14];
	size_t hdr_len, need_hdr;
	uint64_t left; /* payload bytes of the current frame still to come */
	uint8_t mask[4];
	size_t mask_at;
	bool in_frame; /* a frame's payload is being read */
	bool in_msg;   /* a fragmented binary message goes on */
	uint8_t ctrl;  /* the current frame is this control opcode (0: data) */
	uint8_t ctrl_buf[125];
	size_t ctrl_len;
};

enum gw_ws_event { GW_WS_DATA, GW_WS_PING, GW_WS_CLOSE };

/*
 * Decode IN (N bytes, unmasked in place): binary data goes to DATA (LEN
 * bytes), and whole control frames too (a ping's payload, or a close).
 * Returns the bytes consumed (all of them), or -EPROTO (unmasked, text or
 * oversized frames, bad opcodes, fragmented control frames), or what FN
 * returned when it was negative.
 */
typedef int (*gw_ws_data_fn)(void *arg, enum gw_ws_event ev, uint8_t *data, size_t len);
int gw_ws_decode(struct gw_ws_dec *d, uint8_t *in, size_t n, gw_ws_data_fn fn, void *arg);
/* A server frame's header for LEN bytes of OPCODE into HDR; its length. */
size_t gw_ws_header(uint8_t hdr[10], uint8_t opcode, size_t len);

/* --- RFB: what the browser sends once the handshake is done --- */

enum gw_rfb_kind {
	GW_RFB_PIXEL_FORMAT,
	GW_RFB_ENCODINGS,
	GW_RFB_UPDATE_REQUEST,
	GW_RFB_KEY,	 /* keysym */
	GW_RFB_QEMU_KEY, /* keysym and XT scancode (0x80: extended) */
	GW_RFB_POINTER,
	GW_RFB_CUT_TEXT, /* skipped: the text is not kept */
};

struct gw_rfb_pixfmt {
	uint8_t bpp, depth;
	bool big_endian, true_color;
	uint16_t rmax, gmax, bmax;
	uint8_t rshift, gshift, bshift;
};

struct gw_rfb_msg {
	enum gw_rfb_kind kind;
	struct gw_rfb_pixfmt pf;
	/* encodings: what the client supports that the door uses */
	bool raw, desktop_size, qemu_key, last_rect;
	bool incremental;
	uint16_t x, y, w, h;
	bool down;
	uint32_t keysym, keycode;
	uint8_t buttons;
};

/*
 * One client message at the start of IN (N bytes): its length (the bytes
 * to drop), 0 when it is not all there yet, or -EPROTO (an unknown type,
 * more encodings or cut text than allowed).
 */
int gw_rfb_parse(const uint8_t *in, size_t n, struct gw_rfb_msg *out);
/* Whether the door can send in PF (32 bits a pixel, true colour, 8-bit channels). */
bool gw_rfb_pixfmt_ok(const struct gw_rfb_pixfmt *pf);
/* Write W pixels of BGRX (the gateway's own) as PF into OUT (4 bytes each). */
void gw_rfb_convert(const struct gw_rfb_pixfmt *pf, const uint8_t *bgrx, size_t w, uint8_t *out);

/* --- input, as RDP has it --- */

/*
 * An X keysym as an RDP scancode (*CODE, *EXT for the 0xE0 prefix) for the
 * keys that have no character (Enter, arrows, F1, Shift...); false for the
 * others (printable keysyms: see gw_keysym_unicode).
 */
bool gw_keysym_scancode(uint32_t keysym, uint16_t *code, bool *ext);
/* A printable keysym as its Unicode code point (Latin-1 and 0x01000000 + U), or 0. */
uint32_t gw_keysym_unicode(uint32_t keysym);

/*
 * The RDP pointer events for a change of RFB's button mask from OLD to NOW
 * at X,Y: their flags into FLAGS (at most 8), their count returned. The
 * first is always the move.
 */
unsigned gw_rfb_pointer(uint8_t old, uint8_t now, uint16_t flags[8]);

#endif
