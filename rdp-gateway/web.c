/*
 * The browser door: one browser (noVNC) over a secure WebSocket, served by
 * an ordinary gateway worker. The listener accepts the browser's TCP
 * connection under the same per-address limits as RDP and forks; that
 * process runs a normal worker (worker.c, unchanged) on one end of a
 * socketpair, and this process, its child, on the other end: an RDP client
 * of that worker (rdpc.c) whose password is the launch ticket, and an RFB
 * server to the browser. So the browser gets exactly what an RDP client
 * gets (the ticket checked by nestord, the wait screen, the guest, the
 * same session a later RDP connect reattaches to), and the gateway has one
 * worker logic, not two. docs/gateway.md says why.
 *
 * This process parses the browser's bytes (TLS, WebSocket, RFB), holds no
 * more than a worker does, and ends with either side: the browser closing,
 * or the worker closing the RDP link (the session ended, the ticket was
 * refused, the worker's own deadlines). It waits on the browser's socket
 * and the RDP link, and on its next frame's deadline: nothing polls.
 */
#include "web.h"
#include "log.h"
#include "rdpc.h"
#include "util.h"
#include "webproto.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <freerdp/input.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <winpr/synch.h>

#define RIN_MAX (512 * 1024) /* RFB bytes from the browser not yet parsed */

struct web {
	struct gw *gw;
	const char *addr;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	struct gw_ws_dec dec;
	uint8_t *rin;
	size_t rin_len;
	bool closing; /* the browser sent a close */
	/* RFB */
	struct gw_rfb_pixfmt pf;
	bool desktop_size, qemu_key, qemu_key_acked;
	bool requested; /* the browser asked for an update */
	uint8_t buttons;
	/* the guest's picture, as the worker sent it */
	struct gw_rdpc *rdpc;
	int w, h;
	bool resized;
	int dx0, dy0, dx1, dy1; /* dirty box; dx1 <= dx0: none */
	int64_t last_frame_ms;
	uint8_t *out;
	size_t out_cap;
};

static int64_t now_ms(void)
{
	return util_now_ms();
}

/* --- TLS and the WebSocket --- */

static int tls_start(struct web *w, char *err, size_t errlen)
{
	w->ctx = SSL_CTX_new(TLS_server_method());
	if (!w->ctx)
		return snprintf(err, errlen, "no TLS context"), -ENOMEM;
	SSL_CTX_set_min_proto_version(w->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(w->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	BIO *cb = BIO_new_mem_buf(w->gw->cert_pem, -1), *kb = BIO_new_mem_buf(w->gw->key_pem, -1);
	X509 *cert = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	bool ok = cert && key && SSL_CTX_use_certificate(w->ctx, cert) == 1 &&
		  SSL_CTX_use_PrivateKey(w->ctx, key) == 1 &&
		  SSL_CTX_set_cipher_list(w->ctx, w->gw->cfg.tls_ciphers) == 1;
	X509_free(cert);
	EVP_PKEY_free(key);
	BIO_free(cb);
	BIO_free(kb);
	if (!ok)
		return snprintf(err, errlen, "the certificate or key cannot be used"), -EINVAL;
	w->ssl = SSL_new(w->ctx);
	if (!w->ssl || SSL_set_fd(w->ssl, w->fd) != 1)
		return snprintf(err, errlen, "no TLS session"), -ENOMEM;
	if (SSL_accept(w->ssl) != 1) {
		unsigned long e = ERR_get_error();
		snprintf(err, errlen, "TLS handshake: %s",
			 e ? ERR_reason_error_string(e) : "the client went away or was too slow");
		return -EPROTO;
	}
	return 0;
}

static int tls_write(struct web *w, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		int n = SSL_write(w->ssl, p, (int)(len > (1u << 30) ? 1u << 30 : len));
		if (n <= 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One binary WebSocket message of LEN bytes at BUF (which has 10 bytes of room before it). */
static int ws_send(struct web *w, uint8_t opcode, uint8_t *buf, size_t len)
{
	uint8_t hdr[10];
	size_t hl = gw_ws_header(hdr, opcode, len);
	memcpy(buf - hl, hdr, hl);
	return tls_write(w, buf - hl, len + hl);
}

static int ws_send_small(struct web *w, uint8_t opcode, const void *data, size_t len)
{
	uint8_t b[10 + 256];
	if (len > 256)
		return -EINVAL;
	memcpy(b + 10, data, len);
	return ws_send(w, opcode, b + 10, len);
}

static int on_ws(void *arg, enum gw_ws_event ev, uint8_t *data, size_t len)
{
	struct web *w = arg;
	switch (ev) {
	case GW_WS_DATA:
		if (w->rin_len + len > RIN_MAX)
			return -EPROTO;
		memcpy(w->rin + w->rin_len, data, len);
		w->rin_len += len;
		return 0;
	case GW_WS_PING:
		return ws_send_small(w, 0xa, data, len);
	case GW_WS_CLOSE:
		w->closing = true;
		ws_send_small(w, 0x8, data, len > 2 ? 2 : len);
		return -ECONNRESET;
	}
	return 0;
}

/* Read what TLS has for us (blocking: the socket has its stall timeout) into RIN. */
static int ws_read(struct web *w)
{
	uint8_t buf[16384];
	do {
		int n = SSL_read(w->ssl, buf, sizeof(buf));
		if (n <= 0)
			return -ECONNRESET;
		int r = gw_ws_decode(&w->dec, buf, (size_t)n, on_ws, w);
		if (r < 0)
			return r;
	} while (SSL_pending(w->ssl) > 0);
	return 0;
}

/* RFB bytes: at least N of them in RIN (the handshake's fixed-size replies). */
static int rfb_need(struct web *w, size_t n)
{
	while (w->rin_len < n) {
		int r = ws_read(w);
		if (r < 0)
			return r;
	}
	return 0;
}

static void rin_drop(struct web *w, size_t n)
{
	memmove(w->rin, w->rin + n, w->rin_len - n);
	w->rin_len -= n;
}

static int upgrade(struct web *w, struct gw_ws_upgrade *up, char *err, size_t errlen)
{
	char req[GW_WS_REQUEST_MAX];
	size_t len = 0, end = 0;
	while (!(end = gw_ws_request_end(req, len))) {
		if (len == sizeof(req))
			return snprintf(err, errlen, "upgrade request too large"), -EPROTO;
		int n = SSL_read(w->ssl, req + len, (int)(sizeof(req) - len));
		if (n <= 0)
			return snprintf(err, errlen, "no upgrade request"), -EPROTO;
		len += (size_t)n;
	}
	const char *why;
	if (gw_ws_upgrade_parse(req, end, up, &why) < 0) {
		explicit_bzero(req, sizeof(req));
		static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
					  "Connection: close\r\n\r\n";
		tls_write(w, bad, sizeof(bad) - 1);
		return snprintf(err, errlen, "%s", why), -EPROTO;
	}
	uint8_t rest[GW_WS_REQUEST_MAX];
	size_t rest_len = len - end; /* the client's first frames, if they came along */
	memcpy(rest, req + end, rest_len);
	explicit_bzero(req, sizeof(req));
	if (rest_len && gw_ws_decode(&w->dec, rest, rest_len, on_ws, w) < 0)
		return snprintf(err, errlen, "bad WebSocket frame"), -EPROTO;
	char resp[512];
	int n = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
			 up->accept, up->binary ? "Sec-WebSocket-Protocol: binary\r\n" : "");
	return tls_write(w, resp, (size_t)n);
}

/* --- RFB --- */

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Version, security None, ClientInit: up to where the guest's size is needed. */
static int rfb_greet(struct web *w, char *err, size_t errlen)
{
	if (ws_send_small(w, 0x2, "RFB 003.008\n", 12) < 0 || rfb_need(w, 12) < 0)
		return snprintf(err, errlen, "no RFB version"), -EPROTO;
	if (memcmp(w->rin, "RFB 003.008\n", 12))
		return snprintf(err, errlen, "RFB 3.8 only"), -EPROTO;
	rin_drop(w, 12);
	/* None: the launch ticket in the address was the credential */
	static const uint8_t sec[2] = {1, 1}, ok[4] = {0, 0, 0, 0};
	if (ws_send_small(w, 0x2, sec, 2) < 0 || rfb_need(w, 1) < 0 || w->rin[0] != 1)
		return snprintf(err, errlen, "the browser chose no known security"), -EPROTO;
	rin_drop(w, 1);
	if (ws_send_small(w, 0x2, ok, 4) < 0 || rfb_need(w, 1) < 0)
		return snprintf(err, errlen, "no ClientInit"), -EPROTO;
	rin_drop(w, 1);
	return 0;
}

static int rfb_server_init(struct web *w, const char *title)
{
	uint8_t b[10 + 24 + 128];
	uint8_t *p = b + 10;
	size_t tl = strlen(title) > 128 ? 128 : strlen(title);
	put16(p, (unsigned)w->w);
	put16(p + 2, (unsigned)w->h);
	/* 32 bits, depth 24, little-endian BGRX: the gateway's own */
	static const uint8_t pf[16] = {32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0};
	memcpy(p + 4, pf, 16);
	put32(p + 20, (uint32_t)tl);
	memcpy(p + 24, title, tl);
	w->pf = (struct gw_rfb_pixfmt){32, 24, false, true, 255, 255, 255, 16, 8, 0};
	return ws_send(w, 0x2, p, 24 + tl);
}

static void damage(void *arg, int x, int y, int wd, int ht)
{
	struct web *w = arg;
	/* within the screen: a request for elsewhere (the browser's numbers) is nothing */
	int x1 = x + wd > w->w ? w->w : x + wd, y1 = y + ht > w->h ? w->h : y + ht;
	x = x < 0 ? 0 : x;
	y = y < 0 ? 0 : y;
	wd = x1 - x;
	ht = y1 - y;
	if (wd <= 0 || ht <= 0)
		return;
	if (w->dx1 <= w->dx0) {
		w->dx0 = x;
		w->dy0 = y;
		w->dx1 = x + wd;
		w->dy1 = y + ht;
		return;
	}
	w->dx0 = x < w->dx0 ? x : w->dx0;
	w->dy0 = y < w->dy0 ? y : w->dy0;
	w->dx1 = x + wd > w->dx1 ? x + wd : w->dx1;
	w->dy1 = y + ht > w->dy1 ? y + ht : w->dy1;
}

static void resize(void *arg, int wd, int ht)
{
	struct web *w = arg;
	w->w = wd;
	w->h = ht;
	w->resized = true;
	damage(w, 0, 0, wd, ht);
}

/* A FramebufferUpdate with what changed, if the browser asked and the frame rate allows. */
static int rfb_update(struct web *w)
{
	int gw_w, gw_h, stride;
	const uint8_t *px = gw_rdpc_pixels(w->rdpc, &gw_w, &gw_h, &stride);
	if (!px)
		return 0;
	if (gw_w != w->w || gw_h != w->h) {
		w->w = gw_w;
		w->h = gw_h;
		w->resized = true;
		damage(w, 0, 0, gw_w, gw_h);
	}
	bool ack = w->qemu_key && !w->qemu_key_acked;
	bool size = w->resized && w->desktop_size;
	int x0 = w->dx0 < 0 ? 0 : w->dx0, y0 = w->dy0 < 0 ? 0 : w->dy0;
	int x1 = w->dx1 > w->w ? w->w : w->dx1, y1 = w->dy1 > w->h ? w->h : w->dy1;
	bool pixels = x1 > x0 && y1 > y0;
	if (!pixels)
		w->dx0 = w->dy0 = w->dx1 = w->dy1 = 0; /* nothing on the screen to send */
	if (!w->requested || (!ack && !size && !pixels))
		return 0;
	w->requested = false;
	size_t need = 10 + 4 + 12 * 3 + (pixels ? (size_t)(x1 - x0) * (size_t)(y1 - y0) * 4 : 0);
	if (need > w->out_cap) {
		uint8_t *o = realloc(w->out, need);
		if (!o)
			return -ENOMEM;
		w->out = o;
		w->out_cap = need;
	}
	uint8_t *p = w->out + 10, *q = p + 4;
	unsigned n = 0;
	if (ack) { /* QEMU's extended key events: the browser sends scancodes */
		memset(q, 0, 8);
		put32(q + 8, (uint32_t)-258);
		q += 12;
		n++;
		w->qemu_key_acked = true;
	}
	if (size) {
		put16(q, 0);
		put16(q + 2, 0);
		put16(q + 4, (unsigned)w->w);
		put16(q + 6, (unsigned)w->h);
		put32(q + 8, (uint32_t)-223);
		q += 12;
		n++;
	}
	w->resized = false;
	if (pixels) {
		put16(q, (unsigned)x0);
		put16(q + 2, (unsigned)y0);
		put16(q + 4, (unsigned)(x1 - x0));
		put16(q + 6, (unsigned)(y1 - y0));
		put32(q + 8, 0); /* raw */
		q += 12;
		for (int y = y0; y < y1; y++) {
			gw_rfb_convert(&w->pf, px + (size_t)y * (size_t)stride + (size_t)x0 * 4,
				       (size_t)(x1 - x0), q);
			q += (size_t)(x1 - x0) * 4;
		}
		n++;
	}
	w->dx0 = w->dy0 = w->dx1 = w->dy1 = 0;
	p[0] = 0;
	p[1] = 0;
	put16(p + 2, n);
	w->last_frame_ms = now_ms();
	return ws_send(w, 0x2, p, (size_t)(q - p));
}

static void key(struct web *w, bool down, uint16_t code, bool ext)
{
	UINT16 f =
	    (UINT16)((down ? KBD_FLAGS_DOWN : KBD_FLAGS_RELEASE) | (ext ? KBD_FLAGS_EXTENDED : 0));
	gw_rdpc_key(w->rdpc, f, code);
}

/* The browser's messages so far. */
static int rfb_input(struct web *w)
{
	for (;;) {
		struct gw_rfb_msg m;
		int n = gw_rfb_parse(w->rin, w->rin_len, &m);
		if (n <= 0)
			return n;
		switch (m.kind) {
		case GW_RFB_PIXEL_FORMAT:
			if (!gw_rfb_pixfmt_ok(&m.pf))
				return -EPROTO;
			w->pf = m.pf;
			damage(w, 0, 0, w->w, w->h);
			break;
		case GW_RFB_ENCODINGS:
			w->desktop_size = m.desktop_size;
			w->qemu_key = m.qemu_key;
			break;
		case GW_RFB_UPDATE_REQUEST:
			w->requested = true;
			if (!m.incremental)
				damage(w, m.x, m.y, m.w, m.h);
			break;
		case GW_RFB_QEMU_KEY:
			if (m.keycode && m.keycode <= 0xff)
				key(w, m.down, (uint16_t)(m.keycode & 0x7f), m.keycode & 0x80);
			break;
		case GW_RFB_KEY: {
			uint16_t code;
			bool ext;
			uint32_t cp = gw_keysym_unicode(m.keysym);
			if (gw_keysym_scancode(m.keysym, &code, &ext))
				key(w, m.down, code, ext);
			else if (cp && cp <= 0xffff)
				gw_rdpc_unicode(w->rdpc, m.down ? 0 : KBD_FLAGS_RELEASE,
						(UINT16)cp);
			break;
		}
		case GW_RFB_POINTER: {
			uint16_t f[8];
			unsigned k = gw_rfb_pointer(w->buttons, m.buttons, f);
			UINT16 x = (UINT16)(m.x < w->w ? m.x : (w->w ? w->w - 1 : 0));
			UINT16 y = (UINT16)(m.y < w->h ? m.y : (w->h ? w->h - 1 : 0));
			for (unsigned i = 0; i < k; i++)
				gw_rdpc_mouse(w->rdpc, f[i], x, y);
			w->buttons = m.buttons;
			break;
		}
		case GW_RFB_CUT_TEXT: /* the browser's clipboard does not cross (docs/gateway.md) */
			break;
		}
		rin_drop(w, (size_t)n);
	}
}

static void finish(struct web *w)
{
	if (w->rdpc)
		gw_rdpc_close(w->rdpc);
	if (w->ssl) {
		SSL_shutdown(w->ssl);
		SSL_free(w->ssl);
	}
	SSL_CTX_free(w->ctx);
	free(w->rin);
	free(w->out);
}

int gw_web_run(struct gw *gw, int fd, const char *addr, int rdp_fd)
{
	struct web w = {.gw = gw, .addr = addr, .fd = fd};
	char err[256] = "";
	struct gw_ws_upgrade up;
	memset(&up, 0, sizeof(up));
	/* the handshake's deadline, then the stall timeout, as for RDP */
	/* small frames (a key's echo) go out at once, not after the browser's delayed ACK;
	 * a browser that vanishes is cut as an RDP client is (keepalives, stall_timeout) */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	gw_socket_limits(fd, gw->cfg.stall_timeout);
	struct timeval tv = {(time_t)gw->cfg.handshake_timeout, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int st = 1;
	w.rin = malloc(RIN_MAX);
	if (!w.rin || tls_start(&w, err, sizeof(err)) < 0 ||
	    upgrade(&w, &up, err, sizeof(err)) < 0 || rfb_greet(&w, err, sizeof(err)) < 0) {
		log_info("web %s: %s", addr, err[0] ? err : "out of memory");
		finish(&w);
		close(rdp_fd);
		return st;
	}
	unsigned stall = gw->cfg.stall_timeout ? gw->cfg.stall_timeout : 300;
	tv.tv_sec = (time_t)stall;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	/* the worker on the other end: the ticket is the password */
	char pass[128];
	snprintf(pass, sizeof(pass), GW_LAUNCH_PREFIX "%s", up.ticket);
	explicit_bzero(up.ticket, sizeof(up.ticket));
	const struct gw_rdpc_params rp = {.host = "127.0.0.1",
					  .port = 3389,
					  .security = "tls",
					  .user = up.user,
					  .domain = "",
					  .password = pass,
					  .width = gw->cfg.width,
					  .height = gw->cfg.height,
					  .shell = up.app,
					  .use_fd = true,
					  .fd = rdp_fd};
	const struct gw_rdpc_cbs cbs = {.damage = damage, .resize = resize};
	w.rdpc = gw_rdpc_new(&rp, &cbs, &w, err, sizeof(err));
	bool connected = w.rdpc && gw_rdpc_connect(w.rdpc, err, sizeof(err));
	explicit_bzero(pass, sizeof(pass));
	int gw_w = 0, gw_h = 0, stride;
	if (!connected || !gw_rdpc_pixels(w.rdpc, &gw_w, &gw_h, &stride)) {
		log_warn("web %s: the gateway's worker: %s", addr, err);
		finish(&w);
		return st;
	}
	w.w = gw_w;
	w.h = gw_h;
	char title[160];
	snprintf(title, sizeof(title), "%s (nestor)", up.app);
	if (rfb_server_init(&w, title) < 0) {
		finish(&w);
		return st;
	}
	log_info("web %s: user=%s app=%s: the browser is on", addr, up.user, up.app);
	HANDLE browser = CreateFileDescriptorEventA(NULL, FALSE, FALSE, fd, WINPR_FD_READ);
	int64_t frame_ms = 1000 / (int64_t)(gw->cfg.frame_rate ? gw->cfg.frame_rate : 30);
	for (bool run = browser != NULL; run;) {
		HANDLE h[33];
		DWORD n = gw_rdpc_handles(w.rdpc, h, 32);
		h[n++] = browser;
		DWORD timeout = INFINITE;
		bool due = w.requested &&
			   (w.dx1 > w.dx0 || w.resized || (w.qemu_key && !w.qemu_key_acked));
		if (due) {
			int64_t left = w.last_frame_ms + frame_ms - now_ms();
			timeout = left > 0 ? (DWORD)left : 0;
		}
		if (WaitForMultipleObjects(n, h, FALSE, timeout) == WAIT_FAILED)
			break;
		if (!gw_rdpc_pump(w.rdpc)) {
			log_info("web %s: the session's connection ended", addr);
			st = 0;
			break;
		}
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (SSL_pending(w.ssl) > 0 || poll(&pf, 1, 0) > 0) {
			int r = ws_read(&w);
			if (r == 0)
				r = rfb_input(&w);
			if (r < 0) {
				log_info("web %s: %s", addr,
					 w.closing || r == -ECONNRESET ? "the browser closed"
								       : "protocol error: closed");
				st = 0;
				break;
			}
		}
		if (now_ms() - w.last_frame_ms >= frame_ms && rfb_update(&w) < 0)
			break;
	}
	if (browser)
		CloseHandle(browser);
	finish(&w);
	return st;
}
