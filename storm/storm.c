/*
 * nestor-storm: capacity testing of session storms. Opens N real RDP
 * connections (libfreerdp-client, headless, one thread each) through the
 * gateway the way users would, measures every phase of each, keeps a canary
 * session measuring input-to-screen round trips the whole time, samples the
 * host's load and nestord's queue, and reports: a human summary, a JSON file
 * with every measurement and an SVG chart.
 *
 * The gateway's own screens have its panel colour at the top-left pixel;
 * the first frame without it is the guest's ("first guest frame").
 */
#include "nestor-config.h"
#include "boot.h"
#include "httpc.h"

#include <dirent.h>
#include <errno.h>
#include <freerdp/freerdp.h>
#include <freerdp/gdi/gdi.h>
#include <freerdp/input.h>
#include <json-c/json.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <winpr/synch.h>
#include <winpr/wlog.h>

#define MAXU 512
#define PANEL 0x2c3e50 /* the gateway's screens: top-left pixel */
#define SAMPLE_MS 500
#define CANARY_MS 250

static const char usage[] =
    "usage: nestor-storm --gateway HOST:PORT (--users FILE | --user-pattern 'user%d:pass%d')\n"
    "                    --sessions N [--arrival burst|ramp:SECONDS|poisson:RATE]\n"
    "                    [--app ALIAS] [--hold SECONDS] [--timeout SECONDS]\n"
    "                    [--canary USER:PASS] [--baseline SECONDS] [--socket API_SOCKET]\n"
    "                    [--json FILE] [--svg FILE] [--seed N]\n"
    "\n"
    "Opens N real RDP connections through nestor-gateway, as users arriving at\n"
    "once (burst), spread evenly over SECONDS (ramp) or at RATE per second on\n"
    "average (poisson). For each: TCP connect, RDP/TLS handshake done,\n"
    "authenticated (needs --socket), first wait-screen frame, first guest\n"
    "frame, and failures with their reasons. A canary session, connected before\n"
    "the storm, types a key every 250 ms and times until the screen changes.\n"
    "Host load (/proc/loadavg, /proc/pressure) and nestord's queue (--socket)\n"
    "are sampled every 500 ms.\n"
    "\n"
    "  --users FILE          one USER:PASSWORD per line\n"
    "  --user-pattern P      e.g. 'user%d:pass%d' (%d = 1..N)\n"
    "  --hold SECONDS        stay connected this long after the guest shows (default 5)\n"
    "  --timeout SECONDS     give up on a connection after this (default 180)\n"
    "  --canary USER:PASS    the canary's account (default: one more from the pattern/file)\n"
    "  --baseline SECONDS    canary measurements before the storm (default 5)\n"
    "  --socket PATH         nestord's API socket, for queue samples and auth times\n"
    "  --json FILE           every measurement\n"
    "  --svg FILE            a chart: sessions over time and the canary's latency\n"
    "  -h, --help            this text\n"
    "Exit status: 0 if every session reached its guest, 1 otherwise, 2 usage.\n";

enum phase_ix { PH_TCP, PH_HANDSHAKE, PH_AUTH, PH_WAITFRAME, PH_GUESTFRAME, PH_N };
static const char *const phase_names[PH_N] = {"tcp_connect", "handshake", "authenticated",
					      "first_wait_frame", "first_guest_frame"};

struct user {
	int idx;
	char name[65], pass[129];
	double arrive_s;
	double t[PH_N]; /* seconds since its own start; -1 not reached */
	double start_s; /* since the storm's t0 */
	char fail[256];
	bool ok;
	pthread_t th;
	atomic_bool saw_wait;
};

struct conn {
	rdpContext ctx; /* first */
	struct user *u;
	int64_t t0;
	bool guest;
	atomic_uint frames;
	atomic_uint changes;
	uint32_t last_hash;
};

static struct {
	char host[256];
	unsigned port;
	char app[65];
	unsigned hold, timeout, baseline;
	const char *socket;
	const char *json, *svg;
	int n;
	struct user users[MAXU];
	struct user canary;
	char arrival[64];
	unsigned seed;
} opt = {.hold = 5, .timeout = 180, .baseline = 5, .seed = 1};

static int64_t t0_ms;
static atomic_bool storm_started, storm_over;
static atomic_int done_count, progress_guest, progress_fail;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- samples (sampler + canary threads write, main reads at the end) --- */

struct sample {
	double t;
	double load1, cpu_some10, mem_some10;
	int queued, starting, sessions, ready;
	double guests_pss_mib; /* QEMU processes visible on this host, -1 not sampled */
	int guests;
};
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct sample *samples;
static size_t n_samples, cap_samples;
struct rtt {
	double t, ms;
	bool during;
};
static struct rtt *rtts;
static size_t n_rtts, cap_rtts;

static void push_sample(struct sample s)
{
	pthread_mutex_lock(&mu);
	if (n_samples == cap_samples) {
		cap_samples = cap_samples ? cap_samples * 2 : 256;
		samples = realloc(samples, cap_samples * sizeof(*samples));
	}
	samples[n_samples++] = s;
	pthread_mutex_unlock(&mu);
}

static void push_rtt(struct rtt r)
{
	pthread_mutex_lock(&mu);
	if (n_rtts == cap_rtts) {
		cap_rtts = cap_rtts ? cap_rtts * 2 : 256;
		rtts = realloc(rtts, cap_rtts * sizeof(*rtts));
	}
	rtts[n_rtts++] = r;
	pthread_mutex_unlock(&mu);
}

/* --- headless FreeRDP client --- */

static uint32_t top_left(rdpContext *ctx)
{
	rdpGdi *gdi = ctx->gdi;
	if (!gdi || !gdi->primary_buffer)
		return 0;
	const uint8_t *p = gdi->primary_buffer + 2 * gdi->stride + 2 * 4; /* (2,2), BGRX */
	return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint32_t fb_hash(rdpContext *ctx)
{
	rdpGdi *gdi = ctx->gdi;
	uint32_t h = 2166136261u;
	if (!gdi || !gdi->primary_buffer)
		return 0;
	for (int y = 0; y < gdi->height; y += 2) {
		const uint32_t *row =
		    (const uint32_t *)(gdi->primary_buffer + (size_t)y * gdi->stride);
		for (int x = 0; x < gdi->width; x += 2)
			h = (h ^ row[x]) * 16777619u;
	}
	return h;
}

static BOOL on_end_paint(rdpContext *ctx)
{
	struct conn *c = (struct conn *)ctx;
	struct user *u = c->u;
	double t = (double)(now_ms() - c->t0) / 1000.0;
	atomic_fetch_add(&c->frames, 1);
	uint32_t tl = top_left(ctx);
	if (tl == PANEL) {
		if (u->t[PH_WAITFRAME] < 0)
			u->t[PH_WAITFRAME] = t;
	} else if (!c->guest && u->t[PH_WAITFRAME] >= 0) {
		c->guest = true;
		u->t[PH_GUESTFRAME] = t;
	}
	uint32_t h = fb_hash(ctx);
	if (h != c->last_hash) {
		c->last_hash = h;
		atomic_fetch_add(&c->changes, 1);
	}
	return TRUE;
}

static BOOL on_desktop_resize(rdpContext *ctx)
{
	return gdi_resize(ctx->gdi, ctx->settings->DesktopWidth, ctx->settings->DesktopHeight);
}

static BOOL on_pre_connect(freerdp *inst)
{
	return TRUE;
}

static BOOL on_post_connect(freerdp *inst)
{
	struct conn *c = (struct conn *)inst->context;
	c->u->t[PH_HANDSHAKE] = (double)(now_ms() - c->t0) / 1000.0;
	if (!gdi_init(inst, PIXEL_FORMAT_BGRX32))
		return FALSE;
	inst->update->EndPaint = on_end_paint;
	inst->update->DesktopResize = on_desktop_resize;
	return TRUE;
}

static DWORD on_verify_cert(freerdp *inst, const char *host, UINT16 port, const char *cn,
			    const char *subject, const char *issuer, const char *fp, DWORD flags)
{
	return 1; /* accept for this session: a capacity test, not a trust decision */
}

static DWORD on_verify_changed(freerdp *inst, const char *host, UINT16 port, const char *cn,
			       const char *subject, const char *issuer, const char *fp,
			       const char *os, const char *oi, const char *ofp, DWORD flags)
{
	return 1;
}

static freerdp *client_new(struct user *u, struct conn **out)
{
	freerdp *inst = freerdp_new();
	if (!inst)
		return NULL;
	inst->ContextSize = sizeof(struct conn);
	inst->PreConnect = on_pre_connect;
	inst->PostConnect = on_post_connect;
	inst->VerifyCertificateEx = on_verify_cert;
	inst->VerifyChangedCertificateEx = on_verify_changed;
	if (!freerdp_context_new(inst)) {
		freerdp_free(inst);
		return NULL;
	}
	struct conn *c = (struct conn *)inst->context;
	c->u = u;
	rdpSettings *s = inst->settings;
	s->ServerHostname = strdup(opt.host);
	s->ServerPort = opt.port;
	s->Username = strdup(u->name);
	s->Password = strdup(u->pass);
	s->DesktopWidth = 1024;
	s->DesktopHeight = 768;
	s->ColorDepth = 32;
	s->IgnoreCertificate = TRUE;
	s->AutoAcceptCertificate = TRUE;
	s->NlaSecurity = FALSE;
	s->TlsSecurity = TRUE;
	s->RdpSecurity = FALSE;
	s->SoftwareGdi = TRUE;
	s->DesktopResize = TRUE;
	s->SupportGraphicsPipeline = FALSE;
	s->AudioPlayback = FALSE;
	s->DeviceRedirection = FALSE;
	s->RedirectClipboard = FALSE;
	if (opt.app[0])
		s->AlternateShell = strdup(opt.app);
	*out = c;
	return inst;
}

static void client_free(freerdp *inst)
{
	gdi_free(inst);
	freerdp_disconnect(inst);
	freerdp_context_free(inst);
	freerdp_free(inst);
}

/* Pump the connection until COND or DEADLINE; false if it dropped. */
static bool pump(freerdp *inst, int64_t deadline, bool (*cond)(struct conn *), struct conn *c)
{
	while (now_ms() < deadline) {
		if (cond && cond(c))
			return true;
		HANDLE h[64];
		DWORD n = freerdp_get_event_handles(inst->context, h, 64);
		if (!n)
			return false;
		WaitForMultipleObjects(n, h, FALSE, 50);
		if (!freerdp_check_event_handles(inst->context))
			return false;
		if (freerdp_shall_disconnect(inst))
			return false;
	}
	return cond ? cond(c) : true;
}

static bool is_guest(struct conn *c)
{
	return c->guest;
}

static double tcp_probe(void)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	char port[16];
	snprintf(port, sizeof(port), "%u", opt.port);
	if (getaddrinfo(opt.host, port, &hints, &ai) != 0)
		return -1;
	int64_t t = now_ms();
	int s = socket(ai->ai_family, SOCK_STREAM, 0);
	bool ok = s >= 0 && connect(s, ai->ai_addr, ai->ai_addrlen) == 0;
	double took = (double)(now_ms() - t) / 1000.0;
	if (s >= 0)
		close(s);
	freeaddrinfo(ai);
	return ok ? took : -1;
}

static void fail(struct user *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct user *u, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->fail, sizeof(u->fail), fmt, ap);
	va_end(ap);
}

static const char *reason_of(freerdp *inst, struct conn *c)
{
	UINT32 e = freerdp_get_last_error(inst->context);
	if (e)
		return freerdp_get_last_error_name(e);
	if (atomic_load(&c->frames) && !c->guest)
		return "closed by the gateway before the guest showed (refused or failed start)";
	return "connection closed";
}

static void *user_main(void *arg)
{
	struct user *u = arg;
	int64_t when = t0_ms + (int64_t)(u->arrive_s * 1000);
	while (now_ms() < when)
		usleep(5000);
	for (int i = 0; i < PH_N; i++)
		u->t[i] = -1;
	u->start_s = (double)(now_ms() - t0_ms) / 1000.0;
	u->t[PH_TCP] = tcp_probe();
	struct conn *c;
	freerdp *inst = client_new(u, &c);
	if (!inst) {
		fail(u, "cannot create a client");
		goto out;
	}
	c->t0 = now_ms();
	int64_t deadline = c->t0 + (int64_t)opt.timeout * 1000;
	if (!freerdp_connect(inst)) {
		fail(u, "connect: %s", reason_of(inst, c));
		client_free(inst);
		goto out;
	}
	if (!pump(inst, deadline, is_guest, c)) {
		fail(u, "%s",
		     now_ms() >= deadline ? "timed out before the guest showed"
					  : reason_of(inst, c));
	} else {
		u->ok = true;
		atomic_fetch_add(&progress_guest, 1);
		pump(inst, now_ms() + (int64_t)opt.hold * 1000, NULL, c);
	}
	client_free(inst);
out:
	if (!u->ok)
		atomic_fetch_add(&progress_fail, 1);
	atomic_fetch_add(&done_count, 1);
	return NULL;
}

/* --- canary --- */

static atomic_bool canary_ready;

static void *canary_main(void *arg)
{
	struct user *u = &opt.canary;
	for (int i = 0; i < PH_N; i++)
		u->t[i] = -1;
	struct conn *c;
	freerdp *inst = client_new(u, &c);
	if (!inst) {
		/* the main thread waits for canary_ready: never leave it waiting */
		fail(u, "canary: cannot create an RDP client");
		atomic_store(&canary_ready, true);
		return NULL;
	}
	c->t0 = now_ms();
	if (!freerdp_connect(inst) ||
	    !pump(inst, now_ms() + (int64_t)opt.timeout * 1000, is_guest, c)) {
		fail(u, "canary: %s", reason_of(inst, c));
		client_free(inst);
		atomic_store(&canary_ready, true);
		return NULL;
	}
	pump(inst, now_ms() + 1500, NULL, c); /* let the first frames settle */
	u->ok = true;
	atomic_store(&canary_ready, true);
	unsigned k = 0;
	while (!atomic_load(&storm_over)) {
		/* 'x' then backspace: each changes the guest's screen (tty echo) */
		UINT16 code = (k++ % 2) ? 0x0e : 0x2d;
		unsigned before = atomic_load(&c->changes);
		int64_t t = now_ms();
		freerdp_input_send_keyboard_event(inst->input, KBD_FLAGS_DOWN, code);
		freerdp_input_send_keyboard_event(inst->input, KBD_FLAGS_RELEASE, code);
		while (atomic_load(&c->changes) == before && now_ms() - t < 10000) {
			HANDLE h[64];
			DWORD n = freerdp_get_event_handles(inst->context, h, 64);
			WaitForMultipleObjects(n, h, FALSE, 5);
			if (!freerdp_check_event_handles(inst->context))
				goto out;
		}
		double ms = (double)(now_ms() - t);
		push_rtt((struct rtt){(double)(now_ms() - t0_ms) / 1000.0, ms,
				      atomic_load(&storm_started)});
		int64_t next = t + CANARY_MS;
		if (!pump(inst, next, NULL, c))
			goto out;
	}
out:
	client_free(inst);
	return NULL;
}

/* --- sampler --- */

static double psi(const char *path)
{
	FILE *f = fopen(path, "r");
	double v = -1;
	if (f) {
		if (fscanf(f, "some avg10=%lf", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Sum of Pss of the QEMU processes on this host (when the storm runs there). */
static double guests_pss(int *count)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	long kb = 0;
	*count = 0;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		char path[300], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
		if (strncmp(comm, "qemu-system", 11))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/smaps_rollup", e->d_name);
		f = fopen(path, "r");
		char line[256];
		long v;
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "Pss: %ld kB", &v) == 1) {
				kb += v;
				(*count)++;
				break;
			}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return (double)kb / 1024.0;
}

static void *sampler_main(void *arg)
{
	unsigned round = 0;
	while (!atomic_load(&storm_over)) {
		struct sample s = {.t = (double)(now_ms() - t0_ms) / 1000.0,
				   .queued = -1,
				   .starting = -1,
				   .sessions = -1,
				   .ready = -1};
		FILE *f = fopen("/proc/loadavg", "r");
		if (f) {
			if (fscanf(f, "%lf", &s.load1) != 1)
				s.load1 = -1;
			fclose(f);
		}
		s.cpu_some10 = psi("/proc/pressure/cpu");
		s.mem_some10 = psi("/proc/pressure/memory");
		s.guests_pss_mib = -1;
		if (round++ % 5 == 0)
			s.guests_pss_mib = guests_pss(&s.guests);
		if (opt.socket) {
			char *body = NULL;
			if (httpc_request(opt.socket, "GET", "/v1/sessions", NULL, 5000, &body) ==
			    200) {
				json_object *a = json_tokener_parse(body), *v;
				s.queued = s.starting = s.ready = s.sessions = 0;
				for (size_t i = 0; a && i < json_object_array_length(a); i++) {
					json_object *o = json_object_array_get_idx(a, i);
					const char *st = json_object_object_get_ex(o, "state", &v)
							     ? json_object_get_string(v)
							     : "";
					const char *un = json_object_object_get_ex(o, "user", &v)
							     ? json_object_get_string(v)
							     : "";
					s.sessions++;
					if (!strcmp(st, "queued"))
						s.queued++;
					else if (!strcmp(st, "starting"))
						s.starting++;
					else if (strcmp(st, "ending"))
						s.ready++;
					/* the first time a user has a session: authenticated */
					for (int k = 0; k < opt.n; k++) {
						struct user *u = &opt.users[k];
						if (u->t[PH_AUTH] < 0 && u->t[PH_HANDSHAKE] >= 0 &&
						    !strcmp(u->name, un))
							u->t[PH_AUTH] = s.t - u->start_s;
					}
				}
				json_object_put(a);
			}
			free(body);
		}
		push_sample(s);
		usleep(opt.socket ? 100000 : SAMPLE_MS * 1000); /* auth times need finer samples */
	}
	return NULL;
}

/* --- report --- */

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	if (!n)
		return -1;
	qsort(v, n, sizeof(double), cmpd);
	size_t i = (size_t)ceil(p / 100.0 * (double)n) - 1;
	return v[i >= n ? n - 1 : i];
}

static void svg(const char *path, double end_s)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	const double W = 900, H = 420, L = 60, R = 70, T = 40, B = 50;
	int maxs = 1;
	double maxrtt = 1;
	for (size_t i = 0; i < n_samples; i++) {
		if (samples[i].sessions > maxs)
			maxs = samples[i].sessions;
	}
	for (size_t i = 0; i < n_rtts; i++)
		if (rtts[i].ms > maxrtt)
			maxrtt = rtts[i].ms;
	fprintf(f,
		"<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
		"font-family='sans-serif' font-size='12'>\n<rect width='100%%' height='100%%' "
		"fill='white'/>\n",
		W, H);
	fprintf(f, "<text x='%.0f' y='20' font-size='15'>nestor-storm: %d sessions, %s</text>\n", L,
		opt.n, opt.arrival);
	fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='black'/>\n", L, H - B,
		W - R, H - B);
	fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='black'/>\n", L, T, L,
		H - B);
	fprintf(f, "<text x='%.0f' y='%.0f'>time (s), 0 = storm start; %.0f s</text>\n", W / 2 - 80,
		H - 15, end_s);
	fprintf(f, "<text x='5' y='%.0f'>sessions (max %d)</text>\n", T - 8, maxs);
	fprintf(f, "<text x='%.0f' y='%.0f' fill='#c0392b'>canary ms (max %.0f)</text>\n",
		W - R - 60, T - 8, maxrtt);
	double span = end_s > 1 ? end_s : 1;
#define X(t) (L + ((t) / span) * (W - L - R))
#define Y(v, m) (H - B - ((double)(v) / (m)) * (H - T - B))
	static const struct {
		const char *name, *color;
		int off;
	} series[] = {
	    {"queued", "#e67e22", 0}, {"starting", "#2980b9", 1}, {"ready", "#27ae60", 2}};
	for (int k = 0; k < 3; k++) {
		fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='",
			series[k].color);
		for (size_t i = 0; i < n_samples; i++) {
			int v = k == 0	 ? samples[i].queued
				: k == 1 ? samples[i].starting
					 : samples[i].ready;
			if (v >= 0 && samples[i].t >= 0)
				fprintf(f, "%.1f,%.1f ", X(samples[i].t), Y(v, maxs));
		}
		fprintf(f, "'/>\n<text x='%.0f' y='%.0f' fill='%s'>%s</text>\n", L + 10 + k * 90,
			H - B + 32, series[k].color, series[k].name);
	}
	fprintf(f, "<polyline fill='none' stroke='#c0392b' stroke-width='1' points='");
	for (size_t i = 0; i < n_rtts; i++)
		if (rtts[i].t >= 0)
			fprintf(f, "%.1f,%.1f ", X(rtts[i].t), Y(rtts[i].ms, maxrtt));
	fprintf(f, "'/>\n<text x='%.0f' y='%.0f' fill='#c0392b'>canary round trip</text>\n",
		L + 10 + 3 * 90, H - B + 32);
	fprintf(f, "</svg>\n");
	fclose(f);
}

static int report(double end_s)
{
	printf("\nnestor-storm: %d sessions, arrival %s, gateway %s:%u%s%s\n", opt.n, opt.arrival,
	       opt.host, opt.port, opt.app[0] ? ", app " : "", opt.app);
	printf("%-18s %6s %8s %8s %8s %8s\n", "phase (s)", "n", "p50", "p95", "p99", "max");
	double *v = calloc((size_t)opt.n + 1, sizeof(double));
	for (int p = 0; p < PH_N; p++) {
		size_t k = 0;
		for (int i = 0; i < opt.n; i++)
			if (opt.users[i].t[p] >= 0)
				v[k++] = opt.users[i].t[p];
		if (!k) {
			printf("%-18s %6zu %8s\n", phase_names[p], k, "-");
			continue;
		}
		double p50 = pct(v, k, 50), p95 = pct(v, k, 95), p99 = pct(v, k, 99), mx = v[k - 1];
		printf("%-18s %6zu %8.3f %8.3f %8.3f %8.3f\n", phase_names[p], k, p50, p95, p99,
		       mx);
	}
	/* everybody's guest: storm start to the last guest frame */
	double last = -1;
	int ok = 0;
	for (int i = 0; i < opt.n; i++) {
		struct user *u = &opt.users[i];
		if (u->ok) {
			ok++;
			double at = u->start_s + u->t[PH_GUESTFRAME];
			if (at > last)
				last = at;
		}
	}
	printf("\nsessions that reached their guest: %d of %d", ok, opt.n);
	if (ok == opt.n)
		printf("; all within %.2f s of the storm's start\n", last);
	else
		printf("\n");
	int nf = 0;
	for (int i = 0; i < opt.n; i++) {
		if (opt.users[i].ok)
			continue;
		int same = 0;
		for (int j = 0; j < i; j++)
			same |= !opt.users[j].ok && !strcmp(opt.users[j].fail, opt.users[i].fail);
		if (same)
			continue;
		int c = 0;
		for (int j = i; j < opt.n; j++)
			c += !opt.users[j].ok && !strcmp(opt.users[j].fail, opt.users[i].fail);
		printf("  failed x%d: %s\n", c, opt.users[i].fail);
		nf++;
	}
	size_t nb = 0, nd = 0;
	double *before = calloc(n_rtts + 1, sizeof(double)),
	       *during = calloc(n_rtts + 1, sizeof(double));
	for (size_t i = 0; i < n_rtts; i++) {
		if (rtts[i].during)
			during[nd++] = rtts[i].ms;
		else
			before[nb++] = rtts[i].ms;
	}
	if (opt.canary.ok)
		printf(
		    "canary round trip ms: before p50 %.0f p99 %.0f (n=%zu); during p50 %.0f p99 "
		    "%.0f (n=%zu)\n",
		    pct(before, nb, 50), pct(before, nb, 99), nb, pct(during, nd, 50),
		    pct(during, nd, 99), nd);
	else
		printf("canary: %s\n", opt.canary.fail[0] ? opt.canary.fail : "did not run");
	int peakq = -1, peaks = -1, peakg = 0;
	double peakload = 0, peakpsi = 0, peakpss = 0;
	for (size_t i = 0; i < n_samples; i++) {
		if (samples[i].queued > peakq)
			peakq = samples[i].queued;
		if (samples[i].starting > peaks)
			peaks = samples[i].starting;
		if (samples[i].load1 > peakload)
			peakload = samples[i].load1;
		if (samples[i].cpu_some10 > peakpsi)
			peakpsi = samples[i].cpu_some10;
		if (samples[i].guests_pss_mib > peakpss) {
			peakpss = samples[i].guests_pss_mib;
			peakg = samples[i].guests;
		}
	}
	if (opt.socket)
		printf("peak queue %d, peak starting %d; ", peakq, peaks);
	printf("peak load %.2f, peak cpu pressure (some avg10) %.1f%%\n", peakload, peakpsi);
	if (peakpss > 0)
		printf("peak guest memory: %.0f MiB Pss in %d QEMU processes on this host\n",
		       peakpss, peakg);

	if (opt.json) {
		json_object *o = json_object_new_object(), *us = json_object_new_array(),
			    *ss = json_object_new_array(), *rs = json_object_new_array();
		json_object_object_add(o, "sessions", json_object_new_int(opt.n));
		json_object_object_add(o, "arrival", json_object_new_string(opt.arrival));
		json_object_object_add(o, "ok", json_object_new_int(ok));
		json_object_object_add(o, "all_guests_s", json_object_new_double(last));
		json_object_object_add(o, "peak_guests_pss_mib", json_object_new_double(peakpss));
		for (int i = 0; i < opt.n; i++) {
			struct user *u = &opt.users[i];
			json_object *j = json_object_new_object();
			json_object_object_add(j, "user", json_object_new_string(u->name));
			json_object_object_add(j, "start_s", json_object_new_double(u->start_s));
			for (int p = 0; p < PH_N; p++)
				json_object_object_add(
				    j, phase_names[p],
				    u->t[p] >= 0 ? json_object_new_double(u->t[p]) : NULL);
			json_object_object_add(j, "ok", json_object_new_boolean(u->ok));
			if (!u->ok)
				json_object_object_add(j, "failure",
						       json_object_new_string(u->fail));
			json_object_array_add(us, j);
		}
		for (size_t i = 0; i < n_samples; i++) {
			json_object *j = json_object_new_object();
			json_object_object_add(j, "t", json_object_new_double(samples[i].t));
			json_object_object_add(j, "load1",
					       json_object_new_double(samples[i].load1));
			json_object_object_add(j, "cpu_some10",
					       json_object_new_double(samples[i].cpu_some10));
			json_object_object_add(j, "mem_some10",
					       json_object_new_double(samples[i].mem_some10));
			json_object_object_add(j, "queued", json_object_new_int(samples[i].queued));
			json_object_object_add(j, "starting",
					       json_object_new_int(samples[i].starting));
			json_object_object_add(j, "ready", json_object_new_int(samples[i].ready));
			if (samples[i].guests_pss_mib >= 0)
				json_object_object_add(
				    j, "guests_pss_mib",
				    json_object_new_double(samples[i].guests_pss_mib));
			json_object_array_add(ss, j);
		}
		for (size_t i = 0; i < n_rtts; i++) {
			json_object *j = json_object_new_object();
			json_object_object_add(j, "t", json_object_new_double(rtts[i].t));
			json_object_object_add(j, "ms", json_object_new_double(rtts[i].ms));
			json_object_object_add(j, "during",
					       json_object_new_boolean(rtts[i].during));
			json_object_array_add(rs, j);
		}
		json_object_object_add(o, "users", us);
		json_object_object_add(o, "samples", ss);
		json_object_object_add(o, "canary", rs);
		json_object_object_add(o, "canary_ok", json_object_new_boolean(opt.canary.ok));
		if (json_object_to_file_ext(opt.json, o, JSON_C_TO_STRING_PRETTY) < 0)
			fprintf(stderr, "nestor-storm: cannot write %s\n", opt.json);
		json_object_put(o);
	}
	if (opt.svg)
		svg(opt.svg, end_s);
	free(v);
	free(before);
	free(during);
	return ok == opt.n ? 0 : 1;
}

/* --- setup --- */

static int parse_cred(const char *s, struct user *u)
{
	const char *colon = strchr(s, ':');
	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(u->name) ||
	    strlen(colon + 1) >= sizeof(u->pass))
		return -EINVAL;
	memcpy(u->name, s, (size_t)(colon - s));
	u->name[colon - s] = '\0';
	snprintf(u->pass, sizeof(u->pass), "%s", colon + 1);
	return 0;
}

static int load_users(const char *file, const char *pattern, int need)
{
	int n = 0;
	if (file) {
		FILE *f = fopen(file, "r");
		char line[256];
		if (!f) {
			fprintf(stderr, "nestor-storm: %s: %s\n", file, strerror(errno));
			return -1;
		}
		while (n < need && fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\r\n")] = '\0';
			if (!line[0] || line[0] == '#')
				continue;
			if (parse_cred(line, &opt.users[n]) < 0) {
				fprintf(stderr, "nestor-storm: %s: bad line '%s' (USER:PASSWORD)\n",
					file, line);
				fclose(f);
				return -1;
			}
			n++;
		}
		fclose(f);
	} else {
		/* the pattern holds %d twice at most: user and password */
		for (; n < need; n++) {
			char buf[256];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
			/* checked by pattern_ok: only %d (at most twice) and %% */
			snprintf(buf, sizeof(buf), pattern, n + 1, n + 1);
#pragma GCC diagnostic pop
			if (parse_cred(buf, &opt.users[n]) < 0) {
				fprintf(stderr, "nestor-storm: bad --user-pattern\n");
				return -1;
			}
		}
	}
	return n;
}

static bool pattern_ok(const char *p)
{
	int d = 0;
	for (const char *c = p; *c; c++) {
		if (*c != '%')
			continue;
		if (c[1] == 'd')
			d++, c++;
		else if (c[1] == '%')
			c++;
		else
			return false;
	}
	return d <= 2 && strchr(p, ':');
}

int main(int argc, char **argv)
{
	const char *gateway = NULL, *ufile = NULL, *pattern = NULL, *canary = NULL;
	const char *arrival = "burst", *app = "";
	unsigned n = 0;
	const struct boot_opt lo[] = {{"gateway", 0, true, .str = &gateway},
				      {"users", 0, true, .str = &ufile},
				      {"user-pattern", 0, true, .str = &pattern},
				      {"sessions", 0, true, .uint = &n},
				      {"arrival", 0, true, .str = &arrival},
				      {"app", 0, true, .str = &app},
				      {"hold", 0, true, .uint = &opt.hold},
				      {"timeout", 0, true, .uint = &opt.timeout},
				      {"canary", 0, true, .str = &canary},
				      {"baseline", 0, true, .uint = &opt.baseline},
				      {"socket", 0, true, .str = &opt.socket},
				      {"json", 0, true, .str = &opt.json},
				      {"svg", 0, true, .str = &opt.svg},
				      {"seed", 0, true, .uint = &opt.seed},
				      {0}};
	const struct boot_prog prog = {
	    .name = "nestor-storm", .usage = usage, .opts = lo, .max_args = BOOT_ANY_ARGS};
	int nargs, status = boot_parse(&prog, argc, argv, &nargs);
	if (status != BOOT_RUN)
		return status;
	opt.n = n > MAXU ? MAXU : (int)n;
	snprintf(opt.arrival, sizeof(opt.arrival), "%s", arrival);
	snprintf(opt.app, sizeof(opt.app), "%s", app);
	const char *colon = gateway ? strrchr(gateway, ':') : NULL;
	if (!gateway || !colon || colon == gateway || atoi(colon + 1) <= 0 ||
	    atoi(colon + 1) > 65535) {
		fprintf(stderr, "nestor-storm: --gateway HOST:PORT is required\n%s", usage);
		return 2;
	}
	snprintf(opt.host, sizeof(opt.host), "%.*s", (int)(colon - gateway), gateway);
	opt.port = (unsigned)atoi(colon + 1);
	if (opt.n < 1 || opt.n > MAXU - 1 || (!ufile == !pattern) ||
	    (pattern && !pattern_ok(pattern))) {
		fprintf(stderr,
			"nestor-storm: need --sessions 1..%d and one of --users or a valid "
			"--user-pattern\n%s",
			MAXU - 1, usage);
		return 2;
	}
	double ramp = 0, rate = 0;
	if (!strncmp(opt.arrival, "ramp:", 5))
		ramp = atof(opt.arrival + 5);
	else if (!strncmp(opt.arrival, "poisson:", 8))
		rate = atof(opt.arrival + 8);
	if (strcmp(opt.arrival, "burst") && ramp <= 0 && rate <= 0) {
		fprintf(stderr, "nestor-storm: --arrival burst, ramp:SECONDS or poisson:RATE\n");
		return 2;
	}
	/* one more account than sessions, for the canary, unless given */
	int got = load_users(ufile, pattern ? pattern : "", opt.n + (canary ? 0 : 1));
	if (got < opt.n + (canary ? 0 : 1)) {
		if (got >= 0)
			fprintf(stderr, "nestor-storm: need %d accounts, have %d\n",
				opt.n + (canary ? 0 : 1), got);
		return 2;
	}
	if (canary ? parse_cred(canary, &opt.canary) < 0 : false) {
		fprintf(stderr, "nestor-storm: --canary USER:PASS\n");
		return 2;
	}
	if (!canary)
		opt.canary = opt.users[opt.n];
	srand(opt.seed);
	double t = 0;
	for (int i = 0; i < opt.n; i++) {
		opt.users[i].idx = i;
		for (int p = 0; p < PH_N; p++)
			opt.users[i].t[p] = -1;
		if (ramp > 0)
			opt.users[i].arrive_s = opt.n > 1 ? ramp * i / (opt.n - 1) : 0;
		else if (rate > 0) {
			opt.users[i].arrive_s = t;
			t += -log(1.0 - (double)rand() / ((double)RAND_MAX + 1.0)) / rate;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	WLog_SetLogLevel(WLog_GetRoot(), WLOG_FATAL);

	/* canary first: its baseline is measured before anyone else arrives */
	t0_ms = now_ms() + 3600 * 1000; /* not yet */
	pthread_t ct, st;
	pthread_create(&ct, NULL, canary_main, NULL);
	fprintf(stderr, "nestor-storm: connecting the canary (%s)...\n", opt.canary.name);
	while (!atomic_load(&canary_ready))
		usleep(20000);
	if (!opt.canary.ok)
		fprintf(stderr, "nestor-storm: %s (continuing without)\n", opt.canary.fail);
	else
		sleep(opt.baseline);
	t0_ms = now_ms();
	pthread_create(&st, NULL, sampler_main, NULL);
	atomic_store(&storm_started, true);
	fprintf(stderr, "nestor-storm: %d sessions, arrival %s\n", opt.n, opt.arrival);
	for (int i = 0; i < opt.n; i++)
		pthread_create(&opt.users[i].th, NULL, user_main, &opt.users[i]);
	while (atomic_load(&done_count) < opt.n) {
		fprintf(stderr, "\r  %5.1f s  guests %d/%d  failed %d  ",
			(double)(now_ms() - t0_ms) / 1000.0, atomic_load(&progress_guest), opt.n,
			atomic_load(&progress_fail));
		usleep(250000);
	}
	fprintf(stderr, "\n");
	for (int i = 0; i < opt.n; i++)
		pthread_join(opt.users[i].th, NULL);
	double end_s = (double)(now_ms() - t0_ms) / 1000.0;
	atomic_store(&storm_over, true);
	pthread_join(ct, NULL);
	pthread_join(st, NULL);
	int r = report(end_s);
	if (!opt.canary.ok)
		r = 1;
	return r;
}
