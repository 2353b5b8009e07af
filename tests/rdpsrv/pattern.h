/*
 * What nestor's test RDP server paints, shared with the tests that check
 * it: pixels are 0xRRGGBB. Coordinates are relative to the painted area
 * (the desktop, or the RemoteApp window).
 */
#ifndef NESTOR_RDPSRV_PATTERN_H
#define NESTOR_RDPSRV_PATTERN_H

#include <stdint.h>

#define RDPSRV_APP_ALIAS "testapp"
#define RDPSRV_APP_TITLE "Nestor Test App"
#define RDPSRV_WIN_X 64 /* the RemoteApp window on the guest's desktop */
#define RDPSRV_WIN_Y 48
#define RDPSRV_WIN_W 480
#define RDPSRV_WIN_H 320
#define RDPSRV_LOGON 0xc0392b /* wrong guest credentials: the "logon screen" */
#define RDPSRV_CLICK 0xffffff /* a mouse click leaves a 6x6 square */
#define RDPSRV_ANIM_KEY 0x43  /* F9 toggles animation (benchmarks) */
#define RDPSRV_ECHO_SLOTS 32  /* key echo blocks, along the top */
#define RDPSRV_ECHO_X(i) (8 + 12 * (i))
#define RDPSRV_ECHO_Y 8
#define RDPSRV_ECHO_W 10
#define RDPSRV_ECHO_H 16
/* the animated box: frame number in its top-left pixel */
#define RDPSRV_ANIM_X 32
#define RDPSRV_ANIM_Y 32
#define RDPSRV_ANIM_W 256
#define RDPSRV_ANIM_H 192

static inline uint32_t rdpsrv_pattern(unsigned x, unsigned y)
{
	return (x & 0xffu) << 16 | (y & 0xffu) << 8 | (((x ^ y) >> 1) & 0xffu);
}

/* The colour of the echo block for a key (scancode, 0..255). */
static inline uint32_t rdpsrv_key_colour(unsigned code)
{
	return 0x200000u | (code & 0xffu) << 8 | 0xa0u;
}

static inline uint32_t rdpsrv_anim_pixel(unsigned frame, unsigned x, unsigned y)
{
	return x == 0 && y == 0 ? (frame & 0xffffffu) : rdpsrv_pattern(x + frame, y + 2 * frame);
}

#endif
