/*
 * Fuzz target for the browser door's parsers (rdp-gateway/webproto.c): the
 * first byte picks one, the rest is what a browser would send: 'u' the
 * WebSocket upgrade request, 'f' WebSocket frames (their payloads then
 * parsed as RFB client messages), 'r' RFB client messages. Built for
 * libFuzzer with -Dfuzz=true (clang), replayed over corpus/webproto by
 * replay.c in every test run.
 */
#include "webproto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rin {
	uint8_t buf[1 << 16];
	size_t len;
};

static void rfb_all(struct rin *r)
{
	struct gw_rfb_msg m;
	int n;
	while ((n = gw_rfb_parse(r->buf, r->len, &m)) > 0) {
		if (m.kind == GW_RFB_PIXEL_FORMAT && gw_rfb_pixfmt_ok(&m.pf)) {
			uint8_t px[16] = {0}, out[16];
			gw_rfb_convert(&m.pf, px, 4, out);
		}
		memmove(r->buf, r->buf + n, r->len - (size_t)n);
		r->len -= (size_t)n;
	}
	if (n < 0)
		r->len = 0;
}

static int on_data(void *arg, enum gw_ws_event ev, uint8_t *d, size_t n)
{
	struct rin *r = arg;
	if (ev != GW_WS_DATA)
		return 0;
	if (r->len + n > sizeof(r->buf))
		return -1;
	memcpy(r->buf + r->len, d, n);
	r->len += n;
	rfb_all(r);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 20)
		return 0;
	static struct rin r;
	r.len = 0;
	uint8_t *copy = malloc(size);
	if (!copy)
		abort();
	memcpy(copy, data + 1, size - 1);
	if (data[0] == 'u') {
		struct gw_ws_upgrade up;
		const char *why;
		size_t end = gw_ws_request_end((const char *)copy, size - 1);
		gw_ws_upgrade_parse((const char *)copy, end ? end : size - 1, &up, &why);
	} else if (data[0] == 'f') {
		struct gw_ws_dec d;
		memset(&d, 0, sizeof(d));
		gw_ws_decode(&d, copy, size - 1, on_data, &r);
	} else if (data[0] == 'r') {
		size_t n = size - 1 < sizeof(r.buf) ? size - 1 : sizeof(r.buf);
		memcpy(r.buf, copy, n);
		r.len = n;
		rfb_all(&r);
	}
	free(copy);
	return 0;
}
