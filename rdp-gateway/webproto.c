/* The browser door's protocols (webproto.h). Pure. */
#include "webproto.h"
#include "util.h"

#include <errno.h>
#include <freerdp/input.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* --- the upgrade --- */

size_t gw_ws_request_end(const char *buf, size_t len)
{
	for (size_t i = 3; i < len; i++)
		if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' &&
		    buf[i] == '\n')
			return i + 1;
	return 0;
}

/* The value of header NAME in the headers H (up to END), trimmed, into OUT; false if absent. */
static bool header(const char *h, const char *end, const char *name, char *out, size_t len)
{
	size_t nl = strlen(name);
	for (const char *p = h; p < end;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *v = p + nl + 1, *e = eol;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if ((size_t)(e - v) >= len)
				return false;
			memcpy(out, v, (size_t)(e - v));
			out[e - v] = '\0';
			return true;
		}
		p = eol + 1;
	}
	return false;
}

/* Whether the comma-separated LIST has TOKEN (case-insensitive). */
static bool has_token(const char *list, const char *token)
{
	size_t tl = strlen(token);
	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t n = strcspn(p, ", ");
		if (n == tl && !strncasecmp(p, token, tl))
			return true;
		p += n;
	}
	return false;
}

/* Query parameter KEY of Q (up to its end) into OUT when it is a name or hex token. */
static bool query(const char *q, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key);
	for (const char *p = q; p && *p;) {
		size_t n = strcspn(p, "&");
		if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
			size_t vl = n - kl - 1;
			if (vl == 0 || vl >= len)
				return false;
			memcpy(out, p + kl + 1, vl);
			out[vl] = '\0';
			return true;
		}
		p = p[n] ? p + n + 1 : NULL;
	}
	return false;
}

int gw_ws_upgrade_parse(const char *req, size_t len, struct gw_ws_upgrade *out, const char **why)
{
	memset(out, 0, sizeof(out[0]));
	*why = "not a WebSocket upgrade";
	if (len > GW_WS_REQUEST_MAX || len < 16 || memchr(req, '\0', len))
		return -EPROTO;
	const char *end = req + len, *eol = memchr(req, '\n', len);
	if (!eol || strncmp(req, "GET ", 4))
		return -EPROTO;
	char line[2048];
	size_t ll = (size_t)(eol - req);
	if (ll >= sizeof(line))
		return *why = "request line too long", -EPROTO;
	memcpy(line, req, ll);
	line[ll] = '\0';
	if (ll && line[ll - 1] == '\r')
		line[--ll] = '\0';
	char *target = line + 4, *sp = strchr(target, ' ');
	if (!sp || strcmp(sp + 1, "HTTP/1.1"))
		return *why = "not HTTP/1.1", -EPROTO;
	*sp = '\0';
	char *q = strchr(target, '?');
	if (!q)
		return *why = "no launch in the address", -EPROTO;
	*q++ = '\0';
	if (strcmp(target, "/websockify") && strcmp(target, "/"))
		return *why = "no such path", -EPROTO;
	if (!query(q, "user", out->user, sizeof(out->user)) || !util_name_valid(out->user) ||
	    !query(q, "app", out->app, sizeof(out->app)) || !util_name_valid(out->app) ||
	    !query(q, "ticket", out->ticket, sizeof(out->ticket)) ||
	    strspn(out->ticket, "0123456789abcdef") != strlen(out->ticket))
		return *why = "the launch's user, app or ticket is missing or malformed", -EPROTO;
	char v[256], key[64];
	const char *h = eol + 1;
	if (!header(h, end, "Upgrade", v, sizeof(v)) || !has_token(v, "websocket"))
		return -EPROTO;
	if (!header(h, end, "Connection", v, sizeof(v)) || !has_token(v, "upgrade"))
		return -EPROTO;
	if (!header(h, end, "Sec-WebSocket-Version", v, sizeof(v)) || strcmp(v, "13"))
		return *why = "WebSocket version 13 only", -EPROTO;
	if (!header(h, end, "Sec-WebSocket-Key", key, sizeof(key)) || strlen(key) != 24)
		return *why = "no WebSocket key", -EPROTO;
	if (header(h, end, "Sec-WebSocket-Protocol", v, sizeof(v)))
		out->binary = has_token(v, "binary");
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char md[SHA_DIGEST_LENGTH];
	char both[24 + sizeof(guid)];
	snprintf(both, sizeof(both), "%s%s", key, guid);
	SHA1((const unsigned char *)both, strlen(both), md);
	EVP_EncodeBlock((unsigned char *)out->accept, md, SHA_DIGEST_LENGTH);
	return 0;
}

/* --- frames --- */

int gw_ws_decode(struct gw_ws_dec *d, uint8_t *in, size_t n, gw_ws_data_fn fn, void *arg)
{
	size_t i = 0;
	while (i < n) {
		if (!d->in_frame) {
			if (d->hdr_len < 2) {
				d->hdr[d->hdr_len++] = in[i++];
				if (d->hdr_len < 2)
					continue;
				uint8_t len7 = d->hdr[1] & 0x7f;
				if (!(d->hdr[1] & 0x80))
					return -EPROTO; /* a client's frames are masked */
				d->need_hdr = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
			}
			while (d->hdr_len < d->need_hdr && i < n)
				d->hdr[d->hdr_len++] = in[i++];
			if (d->hdr_len < d->need_hdr)
				break;
			uint8_t op = d->hdr[0] & 0x0f, len7 = d->hdr[1] & 0x7f;
			bool fin = d->hdr[0] & 0x80;
			if (d->hdr[0] & 0x70)
				return -EPROTO; /* no extensions were agreed */
			uint64_t len = len7;
			size_t at = 2;
			if (len7 == 126) {
				len = (uint64_t)d->hdr[2] << 8 | d->hdr[3];
				at = 4;
			} else if (len7 == 127) {
				len = 0;
				for (int k = 0; k < 8; k++)
					len = len << 8 | d->hdr[2 + k];
				at = 10;
			}
			memcpy(d->mask, d->hdr + at, 4);
			if (op & 0x8) { /* control: whole, small, never fragmented */
				if (!fin || len > 125 || (op != 0x8 && op != 0x9 && op != 0xa))
					return -EPROTO;
				d->ctrl = op;
			} else {
				/* binary only (RFB); a continuation continues one */
				if (op == 0x1 || op > 0x2 || (op == 0x0) != d->in_msg)
					return -EPROTO;
				d->ctrl = 0;
				d->in_msg = !fin;
			}
			if (len > GW_WS_PAYLOAD_MAX)
				return -EPROTO;
			d->left = len;
			d->mask_at = 0;
			d->in_frame = true;
			d->hdr_len = 0;
			d->ctrl_len = 0;
		}
		size_t take = d->left < n - i ? (size_t)d->left : n - i;
		for (size_t k = 0; k < take; k++)
			in[i + k] ^= d->mask[(d->mask_at++) & 3];
		int r = 0;
		if (d->ctrl) {
			memcpy(d->ctrl_buf + d->ctrl_len, in + i, take);
			d->ctrl_len += take;
		} else if (take) {
			r = fn(arg, GW_WS_DATA, in + i, take);
		}
		i += take;
		d->left -= take;
		if (r < 0)
			return r;
		if (d->left)
			continue;
		d->in_frame = false;
		if (d->ctrl == 0x9)
			r = fn(arg, GW_WS_PING, d->ctrl_buf, d->ctrl_len);
		else if (d->ctrl == 0x8)
			r = fn(arg, GW_WS_CLOSE, d->ctrl_buf, d->ctrl_len);
		d->ctrl = 0;
		if (r < 0)
			return r;
	}
	return (int)i;
}

size_t gw_ws_header(uint8_t hdr[10], uint8_t opcode, size_t len)
{
	hdr[0] = (uint8_t)(0x80 | opcode);
	if (len < 126) {
		hdr[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		hdr[1] = 126;
		hdr[2] = (uint8_t)(len >> 8);
		hdr[3] = (uint8_t)len;
		return 4;
	}
	hdr[1] = 127;
	for (int k = 0; k < 8; k++)
		hdr[2 + k] = (uint8_t)((uint64_t)len >> (56 - 8 * k));
	return 10;
}

/* --- RFB --- */

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define RFB_ENCODINGS_MAX 64
#define RFB_CUT_MAX (256 * 1024)

int gw_rfb_parse(const uint8_t *in, size_t n, struct gw_rfb_msg *m)
{
	memset(m, 0, sizeof(*m));
	if (n < 1)
		return 0;
	switch (in[0]) {
	case 0: /* SetPixelFormat */
		if (n < 20)
			return 0;
		m->kind = GW_RFB_PIXEL_FORMAT;
		m->pf.bpp = in[4];
		m->pf.depth = in[5];
		m->pf.big_endian = in[6];
		m->pf.true_color = in[7];
		m->pf.rmax = be16(in + 8);
		m->pf.gmax = be16(in + 10);
		m->pf.bmax = be16(in + 12);
		m->pf.rshift = in[14];
		m->pf.gshift = in[15];
		m->pf.bshift = in[16];
		return 20;
	case 2: { /* SetEncodings */
		if (n < 4)
			return 0;
		size_t k = be16(in + 2);
		if (k > RFB_ENCODINGS_MAX)
			return -EPROTO;
		if (n < 4 + 4 * k)
			return 0;
		m->kind = GW_RFB_ENCODINGS;
		for (size_t i = 0; i < k; i++) {
			int32_t e = (int32_t)be32(in + 4 + 4 * i);
			m->raw |= e == 0;
			m->desktop_size |= e == -223;
			m->last_rect |= e == -224;
			m->qemu_key |= e == -258;
		}
		m->raw = true; /* raw is always understood */
		return (int)(4 + 4 * k);
	}
	case 3: /* FramebufferUpdateRequest */
		if (n < 10)
			return 0;
		m->kind = GW_RFB_UPDATE_REQUEST;
		m->incremental = in[1];
		m->x = be16(in + 2);
		m->y = be16(in + 4);
		m->w = be16(in + 6);
		m->h = be16(in + 8);
		return 10;
	case 4: /* KeyEvent */
		if (n < 8)
			return 0;
		m->kind = GW_RFB_KEY;
		m->down = in[1];
		m->keysym = be32(in + 4);
		return 8;
	case 5: /* PointerEvent */
		if (n < 6)
			return 0;
		m->kind = GW_RFB_POINTER;
		m->buttons = in[1];
		m->x = be16(in + 2);
		m->y = be16(in + 4);
		return 6;
	case 6: { /* ClientCutText */
		if (n < 8)
			return 0;
		int32_t len = (int32_t)be32(in + 4);
		/* negative: the extended clipboard, which this door does not offer */
		if (len < 0 || len > RFB_CUT_MAX)
			return -EPROTO;
		if (n < 8 + (size_t)len)
			return 0;
		m->kind = GW_RFB_CUT_TEXT;
		return 8 + len;
	}
	case 255: /* QEMU: only the extended key event */
		if (n < 2)
			return 0;
		if (in[1] != 0)
			return -EPROTO;
		if (n < 12)
			return 0;
		m->kind = GW_RFB_QEMU_KEY;
		m->down = be16(in + 2) != 0;
		m->keysym = be32(in + 4);
		m->keycode = be32(in + 8);
		return 12;
	default:
		return -EPROTO;
	}
}

bool gw_rfb_pixfmt_ok(const struct gw_rfb_pixfmt *pf)
{
	return pf->bpp == 32 && pf->true_color && pf->rmax == 255 && pf->gmax == 255 &&
	       pf->bmax == 255 && pf->rshift <= 24 && pf->gshift <= 24 && pf->bshift <= 24 &&
	       pf->rshift % 8 == 0 && pf->gshift % 8 == 0 && pf->bshift % 8 == 0 &&
	       pf->rshift != pf->gshift && pf->gshift != pf->bshift && pf->rshift != pf->bshift;
}

void gw_rfb_convert(const struct gw_rfb_pixfmt *pf, const uint8_t *bgrx, size_t w, uint8_t *out)
{
	/* each channel's byte in the pixel as sent (shifts are multiples of 8) */
	unsigned r = pf->rshift / 8, g = pf->gshift / 8, b = pf->bshift / 8;
	if (pf->big_endian) {
		r = 3 - r;
		g = 3 - g;
		b = 3 - b;
	}
	unsigned x = 6 - r - g - b; /* the unused byte */
	for (size_t i = 0; i < w; i++) {
		const uint8_t *s = bgrx + 4 * i;
		uint8_t *d = out + 4 * i;
		d[b] = s[0];
		d[g] = s[1];
		d[r] = s[2];
		d[x] = 0;
	}
}

/* --- input --- */

bool gw_keysym_scancode(uint32_t k, uint16_t *code, bool *ext)
{
	static const struct {
		uint32_t keysym;
		uint16_t code;
		bool ext;
	} t[] = {
	    {0xff08, 0x0e, false}, /* BackSpace */
	    {0xff09, 0x0f, false}, /* Tab */
	    {0xff0d, 0x1c, false}, /* Return */
	    {0xff8d, 0x1c, true},  /* KP_Enter */
	    {0xff1b, 0x01, false}, /* Escape */
	    {0xff50, 0x47, true},  /* Home */
	    {0xff51, 0x4b, true},  /* Left */
	    {0xff52, 0x48, true},  /* Up */
	    {0xff53, 0x4d, true},  /* Right */
	    {0xff54, 0x50, true},  /* Down */
	    {0xff55, 0x49, true},  /* Prior */
	    {0xff56, 0x51, true},  /* Next */
	    {0xff57, 0x4f, true},  /* End */
	    {0xff63, 0x52, true},  /* Insert */
	    {0xffff, 0x53, true},  /* Delete */
	    {0xffe1, 0x2a, false}, /* Shift_L */
	    {0xffe2, 0x36, false}, /* Shift_R */
	    {0xffe3, 0x1d, false}, /* Control_L */
	    {0xffe4, 0x1d, true},  /* Control_R */
	    {0xffe9, 0x38, false}, /* Alt_L */
	    {0xffea, 0x38, true},  /* Alt_R */
	    {0xffe5, 0x3a, false}, /* Caps_Lock */
	    {0xffeb, 0x5b, true},  /* Super_L */
	    {0xffec, 0x5c, true},  /* Super_R */
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (t[i].keysym == k) {
			*code = t[i].code;
			*ext = t[i].ext;
			return true;
		}
	}
	if (k >= 0xffbe && k <= 0xffc7) { /* F1..F10 */
		*code = (uint16_t)(0x3b + (k - 0xffbe));
		*ext = false;
		return true;
	}
	if (k == 0xffc8 || k == 0xffc9) { /* F11, F12 */
		*code = k == 0xffc8 ? 0x57 : 0x58;
		*ext = false;
		return true;
	}
	return false;
}

uint32_t gw_keysym_unicode(uint32_t k)
{
	if ((k >= 0x20 && k <= 0x7e) || (k >= 0xa0 && k <= 0xff))
		return k;
	if (k >= 0x01000100 && k <= 0x0110ffff)
		return k - 0x01000000;
	return 0;
}

unsigned gw_rfb_pointer(uint8_t old, uint8_t now, uint16_t flags[8])
{
	static const struct {
		uint8_t bit;
		uint16_t flag;
	} b[] = {{0x01, PTR_FLAGS_BUTTON1}, {0x02, PTR_FLAGS_BUTTON3}, {0x04, PTR_FLAGS_BUTTON2}};
	unsigned n = 0;
	flags[n++] = PTR_FLAGS_MOVE;
	for (size_t i = 0; i < 3; i++)
		if ((old ^ now) & b[i].bit)
			flags[n++] = (uint16_t)(b[i].flag | (now & b[i].bit ? PTR_FLAGS_DOWN : 0));
	/* the wheel: a press of button 4 (up) or 5 (down) is one notch */
	if ((now & 0x08) && !(old & 0x08))
		flags[n++] = PTR_FLAGS_WHEEL | 0x0078;
	if ((now & 0x10) && !(old & 0x10))
		flags[n++] = PTR_FLAGS_WHEEL | PTR_FLAGS_WHEEL_NEGATIVE | 0x0088;
	return n;
}
