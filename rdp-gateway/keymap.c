/* Key and pointer translation and the login form's editing: pure. */
#include "keymap.h"

#include <string.h>

int gw_qnum(uint16_t flags, uint16_t code)
{
	if (code == 0 || code > 0x7f)
		return -1;
	return (flags & GW_KBD_EXTENDED) ? 0x80 | code : code;
}

uint32_t gw_keysym(uint32_t cp)
{
	switch (cp) {
	case '\r':
	case '\n':
		return 0xff0d; /* Return */
	case '\b':
		return 0xff08;
	case '\t':
		return 0xff09;
	case 0x1b:
		return 0xff1b;
	}
	if ((cp >= 0x20 && cp <= 0x7e) || (cp >= 0xa0 && cp <= 0xff))
		return cp;
	return 0x01000000 | cp;
}

/* RDP pointer flags (MS-RDPBCGR 2.2.8.1.1.3.1.1.3) */
#define PTR_WHEEL_NEGATIVE 0x0100
#define PTR_WHEEL 0x0200
#define PTR_DOWN 0x8000
#define PTR_BUTTON1 0x1000 /* left */
#define PTR_BUTTON2 0x2000 /* right */
#define PTR_BUTTON3 0x4000 /* middle */

int gw_buttons(uint16_t flags, int mask, int *wheel)
{
	*wheel = 0;
	if (flags & PTR_WHEEL) {
		*wheel = (flags & PTR_WHEEL_NEGATIVE) ? 0x10 : 0x08; /* VNC buttons 5 / 4 */
		return mask;
	}
	int bit = (flags & PTR_BUTTON1)	  ? 0x01
		  : (flags & PTR_BUTTON3) ? 0x02
		  : (flags & PTR_BUTTON2) ? 0x04
					  : 0;
	if (!bit)
		return mask;
	return (flags & PTR_DOWN) ? (mask | bit) : (mask & ~bit);
}

/* US layout: scancode -> (plain, shifted) */
static const char us[0x3a][2] = {
    [0x02] = {'1', '!'},  [0x03] = {'2', '@'}, [0x04] = {'3', '#'},  [0x05] = {'4', '$'},
    [0x06] = {'5', '%'},  [0x07] = {'6', '^'}, [0x08] = {'7', '&'},  [0x09] = {'8', '*'},
    [0x0a] = {'9', '('},  [0x0b] = {'0', ')'}, [0x0c] = {'-', '_'},  [0x0d] = {'=', '+'},
    [0x10] = {'q', 'Q'},  [0x11] = {'w', 'W'}, [0x12] = {'e', 'E'},  [0x13] = {'r', 'R'},
    [0x14] = {'t', 'T'},  [0x15] = {'y', 'Y'}, [0x16] = {'u', 'U'},  [0x17] = {'i', 'I'},
    [0x18] = {'o', 'O'},  [0x19] = {'p', 'P'}, [0x1a] = {'[', '{'},  [0x1b] = {']', '}'},
    [0x1e] = {'a', 'A'},  [0x1f] = {'s', 'S'}, [0x20] = {'d', 'D'},  [0x21] = {'f', 'F'},
    [0x22] = {'g', 'G'},  [0x23] = {'h', 'H'}, [0x24] = {'j', 'J'},  [0x25] = {'k', 'K'},
    [0x26] = {'l', 'L'},  [0x27] = {';', ':'}, [0x28] = {'\'', '"'}, [0x29] = {'`', '~'},
    [0x2b] = {'\\', '|'}, [0x2c] = {'z', 'Z'}, [0x2d] = {'x', 'X'},  [0x2e] = {'c', 'C'},
    [0x2f] = {'v', 'V'},  [0x30] = {'b', 'B'}, [0x31] = {'n', 'N'},  [0x32] = {'m', 'M'},
    [0x33] = {',', '<'},  [0x34] = {'.', '>'}, [0x35] = {'/', '?'},  [0x39] = {' ', ' '},
};

static char *field(struct gw_login *l, size_t *cap)
{
	switch (l->focus) {
	case GW_FIELD_PASSWORD:
		*cap = sizeof(l->pass);
		return l->pass;
	case GW_FIELD_CODE:
		*cap = sizeof(l->code);
		return l->code;
	default:
		*cap = sizeof(l->user);
		return l->user;
	}
}

static enum gw_login_field last_field(const struct gw_login *l)
{
	return l->want_code ? GW_FIELD_CODE : GW_FIELD_PASSWORD;
}

static enum gw_login_ev type_char(struct gw_login *l, unsigned c)
{
	size_t cap;
	char *f = field(l, &cap);
	size_t n = strlen(f);
	if (c == '\b') {
		if (!n)
			return GW_LOGIN_NONE;
		f[n - 1] = '\0';
		return GW_LOGIN_CHANGED;
	}
	if (c == '\t') {
		l->focus = l->focus == last_field(l) ? GW_FIELD_USER : l->focus + 1;
		return GW_LOGIN_CHANGED;
	}
	if (c == '\r') {
		if (l->focus != last_field(l)) {
			l->focus++;
			return GW_LOGIN_CHANGED;
		}
		bool ready = l->user[0] && (!l->want_code || l->code[0]);
		return ready ? GW_LOGIN_SUBMIT : GW_LOGIN_CHANGED;
	}
	if (c < 0x20 || c > 0x7e || n + 1 >= cap)
		return GW_LOGIN_NONE; /* printable ASCII only: user names, passwords, codes */
	f[n] = (char)c;
	f[n + 1] = '\0';
	return GW_LOGIN_CHANGED;
}

enum gw_login_ev gw_login_key(struct gw_login *l, uint16_t flags, uint16_t code)
{
	bool down = !(flags & GW_KBD_RELEASE);
	bool ext = flags & GW_KBD_EXTENDED;
	if (code == 0x2a && !ext) {
		l->shift_l = down;
		return GW_LOGIN_NONE;
	}
	if (code == 0x36 && !ext) {
		l->shift_r = down;
		return GW_LOGIN_NONE;
	}
	if (!down)
		return GW_LOGIN_NONE;
	if (code == 0x3a) {
		l->caps = !l->caps;
		return GW_LOGIN_NONE;
	}
	if (code == 0x1c)
		return type_char(l, '\r'); /* Enter and keypad Enter */
	if (code == 0x0e)
		return type_char(l, '\b');
	if (code == 0x0f)
		return type_char(l, '\t');
	if (ext || code >= 0x3a)
		return GW_LOGIN_NONE;
	bool shift = l->shift_l || l->shift_r;
	char c = us[code][shift ? 1 : 0];
	if (!c)
		return GW_LOGIN_NONE;
	if (l->caps && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
		c = us[code][shift ? 0 : 1];
	return type_char(l, (unsigned char)c);
}

enum gw_login_ev gw_login_unicode(struct gw_login *l, uint16_t flags, uint32_t cp)
{
	if (flags & GW_KBD_RELEASE)
		return GW_LOGIN_NONE;
	if (cp == '\n')
		cp = '\r';
	return type_char(l, cp);
}

void gw_login_ask_code(struct gw_login *l)
{
	l->want_code = true;
	l->focus = GW_FIELD_CODE;
}

void gw_login_clear(struct gw_login *l)
{
	explicit_bzero(l, sizeof(*l));
}
