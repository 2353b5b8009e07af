/*
 * rdpc, the gateway's client of a guest's RDP server, over a socketpair fed
 * a recorded guest stream: the server's bytes of one RemoteApp session of
 * nestor-test-rdpsrv --security rdp --encryption none (no keys: the bytes
 * replay as they were). Whatever the stream, rdpc must end cleanly; what it
 * hands on goes through the gateway's guard as in backend_rdp.c, and the
 * pixels it reports damaged are read.
 *
 *   fuzz_rdpc --record HOST PORT FILE   record a corpus file from a live server
 *   fuzz_rdpc DIR [MUTANTS]             replay each file of DIR, and MUTANTS
 *                                       seeded mutants of each (default 16)
 *
 * With -Dfuzz=true, fuzz_rdpc_libfuzzer is the libFuzzer target.
 */
#include "guard.h"
#include "rdpc.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <winpr/synch.h>
#include <winpr/wlog.h>

#define RUN_MS 1500	     /* one input: at most this long after the connect */
#define INPUT_MAX (4u << 20) /* larger inputs are cut */
#define WINDOW_ID 0x4e57     /* the gateway's own (backend_rdp.c) */
#define POINTER_CACHE 20     /* what the "user" negotiated */
#define APP "||testapp"	     /* RDPSRV_APP_ALIAS: the recording's program */

struct feed {
	int fd;
	const uint8_t *data;
	size_t len;
	FILE *record; /* --record: the server's bytes go here (fd is then a relay) */
	int server;   /* --record: the live server's socket */
};

/* Feed the input to rdpc and drain what it sends; shut down once all is written. */
static void *feeder(void *arg)
{
	struct feed *f = arg;
	size_t off = 0;
	char buf[16384];
	for (;;) {
		struct pollfd p = {f->fd, POLLIN | (off < f->len ? POLLOUT : 0), 0};
		if (poll(&p, 1, 5000) <= 0)
			break;
		if (p.revents & POLLIN) {
			ssize_t n = read(f->fd, buf, sizeof(buf));
			if (n <= 0)
				break; /* rdpc closed its end */
		}
		if ((p.revents & POLLOUT) && off < f->len) {
			ssize_t n = write(f->fd, f->data + off, f->len - off);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				break;
			if (n > 0)
				off += (size_t)n;
			if (off == f->len)
				shutdown(f->fd, SHUT_WR);
		}
		if (p.revents & (POLLERR | POLLNVAL))
			break;
	}
	return NULL;
}

/* --record: relay between rdpc and the live server, keeping the server's bytes. */
static void *recorder(void *arg)
{
	struct feed *f = arg;
	char buf[16384];
	for (;;) {
		struct pollfd p[2] = {{f->fd, POLLIN, 0}, {f->server, POLLIN, 0}};
		if (poll(p, 2, 5000) <= 0)
			break;
		if (p[0].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(f->fd, buf, sizeof(buf));
			if (n <= 0 || write(f->server, buf, (size_t)n) != n)
				break;
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(f->server, buf, sizeof(buf));
			if (n <= 0 || write(f->fd, buf, (size_t)n) != n)
				break;
			fwrite(buf, 1, (size_t)n, f->record);
		}
	}
	return NULL;
}

/* What backend_rdp.c does with the guest's output, minus the user. */
struct sink {
	struct gw_rdpc *c;
	struct gw_windows windows;
	unsigned refused;
	uint32_t sum;
	unsigned damaged, created; /* how far the stream got */
	bool connected;
};

static void on_damage(void *arg, int x, int y, int w, int h)
{
	struct sink *k = arg;
	int gw, gh, stride;
	const uint8_t *px = k->c ? gw_rdpc_pixels(k->c, &gw, &gh, &stride) : NULL;
	if (!px)
		return;
	k->damaged++;
	/* clip as the gateway's blit does, then touch every pixel reported */
	int x1 = x + w < gw ? x + w : gw, y1 = y + h < gh ? y + h : gh;
	for (int yy = y < 0 ? 0 : y; yy < y1; yy++)
		for (int xx = x < 0 ? 0 : x; xx < x1; xx++)
			k->sum += px[(size_t)yy * (size_t)stride + (size_t)xx * 4];
}

static BOOL on_window(void *arg, int kind, const WINDOW_ORDER_INFO *oi, const void *o)
{
	struct sink *k = arg;
	const char *why = gw_window_refusal(&k->windows, kind, oi->windowId, o, WINDOW_ID);
	k->refused += why != NULL;
	k->created += !why && kind == GW_WIN_CREATE;
	return TRUE;
}

static BOOL on_pointer(void *arg, int kind, const void *u)
{
	struct sink *k = arg;
	k->refused += gw_pointer_refusal(kind, u, POINTER_CACHE) != NULL;
	return TRUE;
}

static const struct gw_rdpc_cbs cbs = {
    .damage = on_damage, .window = on_window, .pointer = on_pointer};

/* One session over SV[0] (handed to rdpc), with F's thread on SV[1]; RDPC_MS after connect. */
static struct sink session(int sv[2], struct feed *f, void *(*thread)(void *), int run_ms)
{
	struct sink k = {0};
	struct gw_rdpc_params p = {.host = "127.0.0.1",
				   .security = "rdp",
				   .user = "guestacct",
				   .password = "guest-pw",
				   .width = 800,
				   .height = 600,
				   .program = APP,
				   .pointer_cache = POINTER_CACHE,
				   .use_fd = true,
				   .fd = sv[0]};
	f->fd = sv[1];
	pthread_t t;
	bool threaded = pthread_create(&t, NULL, thread, f) == 0;
	char err[256];
	struct gw_rdpc *c = gw_rdpc_new(&p, &cbs, &k, err, sizeof(err));
	k.c = c;
	if (c && gw_rdpc_connect(c, err, sizeof(err))) {
		k.connected = true;
		int64_t end = util_now_ms() + run_ms;
		for (int64_t now; (now = util_now_ms()) < end;) {
			HANDLE h[64];
			DWORD n = gw_rdpc_handles(c, h, 64);
			if (!n ||
			    WaitForMultipleObjects(n, h, FALSE, (DWORD)(end - now)) ==
				WAIT_FAILED ||
			    !gw_rdpc_pump(c))
				break;
		}
	}
	k.c = NULL;
	gw_rdpc_close(c);
	shutdown(sv[1], SHUT_RDWR);
	if (threaded)
		pthread_join(t, NULL);
	close(sv[1]);
	return k;
}

/* One input, and how far it got. */
static struct sink run(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		WLog_SetLogLevel(WLog_GetRoot(), WLOG_OFF); /* garbage makes FreeRDP talk */
		quiet = true;
	}
	struct sink none = {0};
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return none;
	struct feed f = {.data = data, .len = size < INPUT_MAX ? size : INPUT_MAX};
	return session(sv, &f, feeder, RUN_MS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size);
	return 0;
}

#ifndef FUZZ_LIBFUZZER
static int record(const char *host, const char *port, const char *path)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)atoi(port)),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	(void)host; /* 127.0.0.1 only: the test server */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FILE *out = fopen(path, "wb");
	int sv[2];
	if (s < 0 || !out || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		fprintf(stderr, "fuzz_rdpc: cannot record from %s:%s into %s\n", host, port, path);
		return 1;
	}
	struct feed f = {.record = out, .server = s};
	struct sink k = session(sv, &f, recorder, 3000);
	printf("fuzz_rdpc: recorded %s: connected %d, %u windows, %u damage reports\n", path,
	       k.connected, k.created, k.damaged);
	close(s);
	fclose(out);
	return 0;
}

/* A mutant of IN: a few bytes flipped, replaced, or the stream cut, from SEED. */
static size_t mutate(const uint8_t *in, size_t len, uint8_t *out, unsigned seed)
{
	memcpy(out, in, len);
	srand(seed);
	unsigned edits = 1 + (unsigned)rand() % 8;
	for (unsigned i = 0; i < edits && len; i++) {
		size_t at = (size_t)rand() % len;
		switch (rand() % 4) {
		case 0:
			out[at] ^= (uint8_t)(1u << (rand() % 8));
			break;
		case 1:
			out[at] = (uint8_t)rand();
			break;
		case 2:
			out[at] = (rand() & 1) ? 0xff : 0x00; /* lengths: the extremes */
			break;
		default:
			len = at + 1; /* cut short */
			break;
		}
	}
	return len;
}

static int replay(const char *dir, unsigned mutants)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "fuzz_rdpc: cannot open %s\n", dir);
		return 1;
	}
	unsigned files = 0, runs = 0, failed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		char *buf = NULL;
		size_t len = 0;
		if (util_read_file(path, INPUT_MAX, &buf, &len) < 0) {
			fprintf(stderr, "fuzz_rdpc: cannot read %s\n", path);
			closedir(d);
			return 1;
		}
		uint8_t *m = malloc(len ? len : 1);
		/* the recording itself replays to the app's window and its pixels: else
		 * the mutants would only ever test the first bytes */
		struct sink k = run((const uint8_t *)buf, len);
		runs++;
		printf("fuzz_rdpc: %s: connected %d, %u windows, %u damage reports, %u refused\n",
		       e->d_name, k.connected, k.created, k.damaged, k.refused);
		if (!k.connected || !k.created || !k.damaged) {
			fprintf(stderr, "fuzz_rdpc: %s does not replay to the app's window\n",
				path);
			failed++;
		}
		for (unsigned i = 0; m && i < mutants; i++, runs++)
			LLVMFuzzerTestOneInput(m, mutate((const uint8_t *)buf, len, m, i + 1));
		free(m);
		free(buf);
		files++;
	}
	closedir(d);
	printf("fuzz_rdpc: %u files, %u runs, no crash\n", files, runs);
	return files && !failed ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "--record"))
		return record(argv[2], argv[3], argv[4]);
	if (argc == 2 || argc == 3)
		return replay(argv[1], argc == 3 ? (unsigned)atoi(argv[2]) : 16);
	fprintf(stderr, "usage: fuzz_rdpc --record HOST PORT FILE | fuzz_rdpc DIR [MUTANTS]\n");
	return 2;
}
#endif
