/*
 * proxy_bench: the rdp backend's cost, in one run. Two headless RDP clients
 * (the gateway's own, rdp-gateway/rdpc.c) look at the same guest running
 * nestor-test-rdpsrv:
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
#include "rdpc.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <winpr/synch.h>
#include <winpr/wlog.h>

/* One headless client: the gateway's own (rdp-gateway/rdpc.c) */
struct client {
	struct gw_rdpc *c;
	unsigned frames, last_frame, keys;
	bool anim_seen;
};

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint32_t px(struct client *cl, unsigned x, unsigned y)
{
	int w, h, stride;
	const uint8_t *p = cl->c ? gw_rdpc_pixels(cl->c, &w, &h, &stride) : NULL;
	if (!p || x >= (unsigned)w || y >= (unsigned)h)
		return 0xffffffff;
	uint32_t v;
	memcpy(&v, p + (size_t)y * (size_t)stride + (size_t)x * 4, 4);
	return v & 0xffffff; /* BGRX little endian: 0x00RRGGBB */
}

/* Every painted frame: count the animation's distinct frame numbers. */
static void on_damage(void *arg, int x, int y, int w, int h)
{
	struct client *cl = arg;
	uint32_t f = px(cl, RDPSRV_ANIM_X, RDPSRV_ANIM_Y);
	if (cl->anim_seen || f != rdpsrv_pattern(RDPSRV_ANIM_X, RDPSRV_ANIM_Y)) {
		if (f != cl->last_frame) {
			cl->frames++;
			cl->last_frame = f;
		}
		cl->anim_seen = true;
	}
}

static const struct gw_rdpc_cbs cbs = {.damage = on_damage};

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

static bool open_conn(struct client *cl, const char *hostport, const char *userpass, bool tls,
		      const char *app)
{
	char host[128], port[16], user[128], pass[128], err[256];
	if (!split(hostport, host, sizeof(host), port, sizeof(port)) ||
	    !split(userpass, user, sizeof(user), pass, sizeof(pass)))
		return false;
	struct gw_rdpc_params p = {.host = host,
				   .port = (unsigned)atoi(port),
				   .security = tls ? "tls" : "rdp",
				   .user = user,
				   .password = pass,
				   .width = 1024,
				   .height = 768,
				   .shell = app};
	struct gw_rdpc *c = gw_rdpc_new(&p, &cbs, cl, err, sizeof(err));
	if (c && !gw_rdpc_connect(c, err, sizeof(err))) {
		gw_rdpc_close(c);
		c = NULL;
	}
	if (!c)
		fprintf(stderr, "proxy_bench: cannot connect to %s: %s\n", hostport, err);
	cl->c = c;
	return c != NULL;
}

/* Pump until COND holds or SECONDS pass. */
static bool pump(struct client *cl, double seconds, bool (*cond)(struct client *, void *),
		 void *arg)
{
	double end = now_s() + seconds;
	while (now_s() < end) {
		if (cond && cond(cl, arg))
			return true;
		HANDLE h[64];
		DWORD n = gw_rdpc_handles(cl->c, h, 64);
		if (!n || WaitForMultipleObjects(n, h, FALSE, 5) == WAIT_FAILED)
			return false;
		if (!gw_rdpc_pump(cl->c))
			return false;
	}
	return cond ? cond(cl, arg) : true;
}

static bool shows_pattern(struct client *cl, void *arg)
{
	return px(cl, 300, 300) == rdpsrv_pattern(300, 300) &&
	       px(cl, 700, 500) == rdpsrv_pattern(700, 500);
}

struct echo_want {
	unsigned slot, code;
};

static bool echo_shown(struct client *cl, void *arg)
{
	struct echo_want *w = arg;
	return px(cl, RDPSRV_ECHO_X(w->slot) + 2, RDPSRV_ECHO_Y + 2) == rdpsrv_key_colour(w->code);
}

static void key(struct client *cl, unsigned code)
{
	gw_rdpc_key(cl->c, KBD_FLAGS_DOWN, (UINT16)code);
	gw_rdpc_key(cl->c, KBD_FLAGS_RELEASE, (UINT16)code);
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

static bool measure(const char *name, struct client *c, unsigned nkeys, double seconds,
		    struct result *r)
{
	if (!pump(c, 60, shows_pattern, NULL)) {
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
		if (px(c, RDPSRV_ECHO_X(w.slot) + 2, RDPSRV_ECHO_Y + 2) ==
		    rdpsrv_key_colour(w.code))
			w.code = codes[(i + 1) % 12];
		double t0 = now_s();
		key(c, w.code);
		c->keys++;
		if (!pump(c, 5, echo_shown, &w)) {
			fprintf(stderr, "proxy_bench: %s: key %u never echoed\n", name, i);
			break;
		}
		rtt[got++] = (now_s() - t0) * 1000.0;
		pump(c, 0.05, NULL, NULL); /* let the rest of that frame settle */
	}
	qsort(rtt, got, sizeof(double), cmp_d);
	r->keys = got;
	r->rtt_p50 = got ? rtt[got / 2] : -1;
	r->rtt_p95 = got ? rtt[(got * 95) / 100 < got ? (got * 95) / 100 : got - 1] : -1;
	r->rtt_max = got ? rtt[got - 1] : -1;
	free(rtt);
	/* throughput: the animation, for SECONDS */
	key(c, RDPSRV_ANIM_KEY);
	pump(c, 1.0, NULL, NULL); /* warm up */
	unsigned f0 = c->frames;
	double t0 = now_s();
	pump(c, seconds, NULL, NULL);
	r->fps = (double)(c->frames - f0) / (now_s() - t0);
	key(c, RDPSRV_ANIM_KEY);
	pump(c, 0.5, NULL, NULL);
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
	struct client pi = {0}, di = {0};
	double t0 = now_s();
	bool ok = open_conn(&pi, gw, user, true, app);
	rp.connect_ms = (now_s() - t0) * 1000.0;
	ok = ok && measure("gateway", &pi, keys, seconds, &rp);
	char direct[64];
	unsigned fwd = ok ? forward_of(sock, user) : 0;
	snprintf(direct, sizeof(direct), "127.0.0.1:%u", fwd);
	if (ok && !fwd)
		fprintf(stderr, "proxy_bench: no forward for the session in nestord\n");
	t0 = now_s();
	ok = ok && fwd && open_conn(&di, direct, duser, false, NULL);
	rd.connect_ms = (now_s() - t0) * 1000.0;
	ok = ok && measure("direct", &di, keys, seconds, &rd);
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
	gw_rdpc_close(di.c);
	gw_rdpc_close(pi.c);
	return 0;
}
