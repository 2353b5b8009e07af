/*
 * proxy_bench: the rdp backend's cost, in one run. Two headless RDP clients
 * (libfreerdp-client) look at the same guest running nestor-test-rdpsrv:
 * one directly (127.0.0.1:FORWARD, standard RDP security, the guest
 * account), one through nestor-gateway (TLS, the user's account). For each:
 *  - input round trip: a key goes out, the time until the server's echo
 *    block for it shows in the client's own framebuffer (N keys);
 *  - frame throughput: F9 starts the server's animation (a frame number in
 *    one pixel); distinct frame numbers seen per second over SECONDS, and
 *    the bytes received.
 * Prints a table and one JSON line.
 *
 * usage: proxy_bench --socket API_SOCKET --direct-user U:P --gateway HOST:PORT
 *                    --user U:P --app ALIAS [--keys N] [--seconds S]
 * (the direct address is the user's session forward, asked from nestord)
 */
#include "../tests/rdpsrv/pattern.h"
#include "httpc.h"

#include <freerdp/freerdp.h>
#include <freerdp/gdi/gdi.h>
#include <freerdp/input.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <winpr/synch.h>
#include <winpr/wlog.h>

struct conn {
	rdpContext ctx;
	bool tls;
	unsigned frames, last_frame, keys;
	bool anim_seen;
	double t_change; /* last time the watched pixel changed */
};

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint32_t px(rdpContext *ctx, unsigned x, unsigned y)
{
	rdpGdi *g = ctx->gdi;
	if (!g || !g->primary_buffer || x >= (unsigned)g->width || y >= (unsigned)g->height)
		return 0xffffffff;
	uint32_t v;
	memcpy(&v, g->primary_buffer + (size_t)y * g->stride + (size_t)x * 4, 4);
	return v & 0xffffff; /* BGRX little endian: 0x00RRGGBB */
}

static BOOL end_paint(rdpContext *ctx)
{
	struct conn *c = (struct conn *)ctx;
	uint32_t f = px(ctx, RDPSRV_ANIM_X, RDPSRV_ANIM_Y);
	if (c->anim_seen || f != rdpsrv_pattern(RDPSRV_ANIM_X, RDPSRV_ANIM_Y)) {
		if (f != c->last_frame) {
			c->frames++;
			c->last_frame = f;
		}
		c->anim_seen = true;
	}
	return TRUE;
}

static BOOL resize(rdpContext *ctx)
{
	return gdi_resize(ctx->gdi, ctx->settings->DesktopWidth, ctx->settings->DesktopHeight);
}

static BOOL post_connect(freerdp *inst)
{
	if (!gdi_init(inst, PIXEL_FORMAT_BGRX32))
		return FALSE;
	inst->update->EndPaint = end_paint;
	inst->update->DesktopResize = resize;
	return TRUE;
}

static BOOL pre_connect(freerdp *inst)
{
	return TRUE;
}

static DWORD accept_cert(freerdp *i, const char *h, UINT16 p, const char *cn, const char *s,
			 const char *is, const char *fp, DWORD f)
{
	return 2;
}

static bool split(const char *in, char *a, size_t al, char *b, size_t bl)
{
	const char *c = strrchr(in, ':');
	if (!c || (size_t)(c - in) >= al)
		return false;
	memcpy(a, in, (size_t)(c - in));
	a[c - in] = '\0';
	snprintf(b, bl, "%s", c + 1);
	return true;
}

static freerdp *open_conn(const char *hostport, const char *userpass, bool tls, const char *app)
{
	char host[128], port[16], user[128], pass[128];
	if (!split(hostport, host, sizeof(host), port, sizeof(port)) ||
	    !split(userpass, user, sizeof(user), pass, sizeof(pass)))
		return NULL;
	freerdp *inst = freerdp_new();
	inst->ContextSize = sizeof(struct conn);
	inst->PreConnect = pre_connect;
	inst->PostConnect = post_connect;
	inst->VerifyCertificateEx = accept_cert;
	if (!freerdp_context_new(inst))
		return NULL;
	rdpSettings *s = inst->settings;
	s->ServerHostname = strdup(host);
	s->ServerPort = (UINT32)atoi(port);
	s->Username = strdup(user);
	s->Password = strdup(pass);
	s->DesktopWidth = 1024;
	s->DesktopHeight = 768;
	s->ColorDepth = 32;
	s->IgnoreCertificate = TRUE;
	s->NlaSecurity = FALSE;
	s->TlsSecurity = tls;
	s->RdpSecurity = !tls;
	s->SoftwareGdi = TRUE;
	s->DesktopResize = TRUE;
	s->SupportGraphicsPipeline = FALSE;
	s->RemoteFxCodec = FALSE;
	s->AudioPlayback = FALSE;
	s->DeviceRedirection = FALSE;
	s->RedirectClipboard = FALSE;
	if (app)
		s->AlternateShell = strdup(app);
	if (!freerdp_connect(inst)) {
		fprintf(stderr, "proxy_bench: cannot connect to %s\n", hostport);
		return NULL;
	}
	return inst;
}

/* Pump until COND holds or SECONDS pass. */
static bool pump(freerdp *inst, double seconds, bool (*cond)(rdpContext *, void *), void *arg)
{
	double end = now_s() + seconds;
	while (now_s() < end) {
		if (cond && cond(inst->context, arg))
			return true;
		HANDLE h[64];
		DWORD n = freerdp_get_event_handles(inst->context, h, 64);
		if (!n || WaitForMultipleObjects(n, h, FALSE, 5) == WAIT_FAILED)
			return false;
		if (!freerdp_check_event_handles(inst->context))
			return false;
	}
	return cond ? cond(inst->context, arg) : true;
}

static bool shows_pattern(rdpContext *ctx, void *arg)
{
	return px(ctx, 300, 300) == rdpsrv_pattern(300, 300) &&
	       px(ctx, 700, 500) == rdpsrv_pattern(700, 500);
}

struct echo_want {
	unsigned slot, code;
};

static bool echo_shown(rdpContext *ctx, void *arg)
{
	struct echo_want *w = arg;
	return px(ctx, RDPSRV_ECHO_X(w->slot) + 2, RDPSRV_ECHO_Y + 2) == rdpsrv_key_colour(w->code);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct result {
	double connect_ms, rtt_p50, rtt_p95, rtt_max, fps;
	unsigned keys;
};

static bool measure(const char *name, freerdp *inst, unsigned nkeys, double seconds,
		    struct result *r)
{
	struct conn *c = (struct conn *)inst->context;
	if (!pump(inst, 60, shows_pattern, NULL)) {
		fprintf(stderr, "proxy_bench: %s: the pattern never showed\n", name);
		return false;
	}
	double *rtt = calloc(nkeys, sizeof(double));
	/* keys a..l cycle; each lands in the next echo slot */
	static const unsigned codes[] = {0x1e, 0x30, 0x2e, 0x20, 0x12, 0x21,
					 0x22, 0x23, 0x17, 0x24, 0x25, 0x26};
	unsigned got = 0;
	for (unsigned i = 0; i < nkeys; i++) {
		struct echo_want w = {c->keys % RDPSRV_ECHO_SLOTS, codes[i % 12]};
		/* a slot is reused every 32 keys: same code twice would not change it */
		if (px(inst->context, RDPSRV_ECHO_X(w.slot) + 2, RDPSRV_ECHO_Y + 2) ==
		    rdpsrv_key_colour(w.code))
			w.code = codes[(i + 1) % 12];
		double t0 = now_s();
		freerdp_input_send_keyboard_event(inst->input, KBD_FLAGS_DOWN, (UINT16)w.code);
		freerdp_input_send_keyboard_event(inst->input, KBD_FLAGS_RELEASE, (UINT16)w.code);
		c->keys++;
		if (!pump(inst, 5, echo_shown, &w)) {
			fprintf(stderr, "proxy_bench: %s: key %u never echoed\n", name, i);
			break;
		}
		rtt[got++] = (now_s() - t0) * 1000.0;
		pump(inst, 0.05, NULL, NULL); /* let the rest of that frame settle */
	}
	qsort(rtt, got, sizeof(double), cmp_d);
	r->keys = got;
	r->rtt_p50 = got ? rtt[got / 2] : -1;
	r->rtt_p95 = got ? rtt[(got * 95) / 100 < got ? (got * 95) / 100 : got - 1] : -1;
	r->rtt_max = got ? rtt[got - 1] : -1;
	free(rtt);
	/* throughput: the animation, for SECONDS */
	freerdp_input_send_keyboard_event(inst->input, KBD_FLAGS_DOWN, RDPSRV_ANIM_KEY);
	freerdp_input_send_keyboard_event(inst->input, KBD_FLAGS_RELEASE, RDPSRV_ANIM_KEY);
	pump(inst, 1.0, NULL, NULL); /* warm up */
	unsigned f0 = c->frames;
	double t0 = now_s();
	pump(inst, seconds, NULL, NULL);
	r->fps = (double)(c->frames - f0) / (now_s() - t0);
	freerdp_input_send_keyboard_event(inst->input, KBD_FLAGS_DOWN, RDPSRV_ANIM_KEY);
	freerdp_input_send_keyboard_event(inst->input, KBD_FLAGS_RELEASE, RDPSRV_ANIM_KEY);
	pump(inst, 0.5, NULL, NULL);
	return got == nkeys;
}

/* The 127.0.0.1 forward of USER's live session, from nestord. */
static unsigned forward_of(const char *sock, const char *userpass)
{
	char user[128], pass[128], *resp = NULL;
	if (!split(userpass, user, sizeof(user), pass, sizeof(pass)))
		return 0;
	if (httpc_request(sock, "GET", "/v1/sessions", NULL, 5000, &resp) != 200)
		return 0;
	json_object *all = json_tokener_parse(resp), *v;
	free(resp);
	unsigned port = 0;
	for (size_t i = 0; all && i < json_object_array_length(all); i++) {
		json_object *s = json_object_array_get_idx(all, i);
		if (json_object_object_get_ex(s, "user", &v) &&
		    !strcmp(json_object_get_string(v), user) &&
		    json_object_object_get_ex(s, "rdp_port", &v))
			port = (unsigned)json_object_get_int(v);
	}
	json_object_put(all);
	return port;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"socket", required_argument, NULL, 'S'},
					   {"direct-user", required_argument, NULL, 'D'},
					   {"gateway", required_argument, NULL, 'g'},
					   {"user", required_argument, NULL, 'u'},
					   {"app", required_argument, NULL, 'a'},
					   {"keys", required_argument, NULL, 'k'},
					   {"seconds", required_argument, NULL, 's'},
					   {NULL, 0, NULL, 0}};
	const char *sock = NULL, *duser = NULL, *gw = NULL, *user = NULL, *app = NULL;
	unsigned keys = 50;
	double seconds = 5;
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'S':
			sock = optarg;
			break;
		case 'D':
			duser = optarg;
			break;
		case 'g':
			gw = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'a':
			app = optarg;
			break;
		case 'k':
			keys = (unsigned)atoi(optarg);
			break;
		case 's':
			seconds = atof(optarg);
			break;
		default:
			return 2;
		}
	}
	if (!sock || !duser || !gw || !user || !app || !keys || keys > 10000 || seconds <= 0) {
		fprintf(stderr,
			"usage: proxy_bench --socket API_SOCKET --direct-user U:P --gateway "
			"HOST:PORT --user U:P --app ALIAS [--keys N] [--seconds S]\n");
		return 2;
	}
	WLog_SetLogLevel(WLog_GetRoot(), WLOG_ERROR);
	struct result rp = {0}, rd = {0};
	double t0 = now_s();
	freerdp *pi = open_conn(gw, user, true, app);
	rp.connect_ms = (now_s() - t0) * 1000.0;
	bool ok = pi && measure("gateway", pi, keys, seconds, &rp);
	char direct[64];
	unsigned fwd = ok ? forward_of(sock, user) : 0;
	snprintf(direct, sizeof(direct), "127.0.0.1:%u", fwd);
	if (ok && !fwd)
		fprintf(stderr, "proxy_bench: no forward for the session in nestord\n");
	t0 = now_s();
	freerdp *di = fwd ? open_conn(direct, duser, false, NULL) : NULL;
	rd.connect_ms = (now_s() - t0) * 1000.0;
	ok = ok && di && measure("direct", di, keys, seconds, &rd);
	if (!ok)
		return 1;
	printf("%-22s %10s %10s %10s %10s %12s\n", "path", "connect", "rtt p50", "rtt p95",
	       "rtt max", "frames/s");
	printf("%-22s %7.0f ms %7.1f ms %7.1f ms %7.1f ms %12.1f\n", "direct (guest's RDP)",
	       rd.connect_ms, rd.rtt_p50, rd.rtt_p95, rd.rtt_max, rd.fps);
	printf("%-22s %7.0f ms %7.1f ms %7.1f ms %7.1f ms %12.1f\n", "through nestor-gateway",
	       rp.connect_ms, rp.rtt_p50, rp.rtt_p95, rp.rtt_max, rp.fps);
	printf(
	    "{\"keys\":%u,\"seconds\":%.1f,\"direct\":{\"rtt_p50_ms\":%.1f,\"rtt_p95_ms\":%.1f,"
	    "\"fps\":%.1f},\"gateway\":{\"rtt_p50_ms\":%.1f,\"rtt_p95_ms\":%.1f,\"fps\":%.1f}}\n",
	    keys, seconds, rd.rtt_p50, rd.rtt_p95, rd.fps, rp.rtt_p50, rp.rtt_p95, rp.fps);
	freerdp_disconnect(di);
	freerdp_disconnect(pi);
	return 0;
}
