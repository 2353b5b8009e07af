/*
 * Keyboard and mouse translation, pure: RDP scancodes to QEMU key numbers
 * (the PC scancode, with bit 7 set for 0xE0-prefixed keys), RDP pointer flags
 * to a VNC button mask, and the login form's line editing (US layout for
 * scancodes; Unicode events taken as they come).
 */
#ifndef NESTOR_GW_KEYMAP_H
#define NESTOR_GW_KEYMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RDP keyboard flags (MS-RDPBCGR 2.2.8.1.1.3.1.1.1) */
#define GW_KBD_EXTENDED 0x0100
#define GW_KBD_DOWN 0x4000
#define GW_KBD_RELEASE 0x8000

/* QEMU key number for an RDP scancode event, or -1 if it cannot be sent. */
int gw_qnum(uint16_t flags, uint16_t code);
/* X keysym for a Unicode code point (what VNC key events carry). */
uint32_t gw_keysym(uint32_t cp);

/* VNC button mask after an RDP mouse event; *WHEEL gets the wheel button bit
 * to click (press+release) or 0. */
int gw_buttons(uint16_t flags, int mask, int *wheel);

/* The login form's fields, in Tab order (the code only when asked for). */
enum gw_login_field { GW_FIELD_USER, GW_FIELD_PASSWORD, GW_FIELD_CODE };

struct gw_login {
	char user[65];
	char pass[257];
	char code[65];	/* a one-time code (nestord's need=code) */
	bool want_code; /* the code field is shown */
	enum gw_login_field focus;
	bool shift_l, shift_r, caps;
};

enum gw_login_ev { GW_LOGIN_NONE, GW_LOGIN_CHANGED, GW_LOGIN_SUBMIT };

/*
 * Tab moves to the next field; Enter too, and submits from the last one
 * (the password, or the code when it is shown) once the user name, and the
 * code when it is shown, are not empty.
 */
enum gw_login_ev gw_login_key(struct gw_login *l, uint16_t flags, uint16_t code);
enum gw_login_ev gw_login_unicode(struct gw_login *l, uint16_t flags, uint32_t cp);
/* Show the code field too and focus it; what was typed stays. */
void gw_login_ask_code(struct gw_login *l);
/* Wipe the password and the code (and everything else). */
void gw_login_clear(struct gw_login *l);

#endif
