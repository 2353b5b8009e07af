#include "x11.h"
#include "testenv.h"
#include "util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char x11_fbdir[512];

bool x11_tools(void)
{
	return !access("/usr/bin/Xvfb", X_OK) && !access("/usr/bin/xfreerdp", X_OK) &&
	       !access("/usr/bin/xdotool", X_OK) && !access("/usr/bin/xwininfo", X_OK);
}

pid_t x11_start(const char *dir)
{
	static char display[16];
	int dn = 50 + getpid() % 200;
	snprintf(display, sizeof(display), ":%d", dn);
	setenv("DISPLAY", display, 1); /* for every xdotool/xwininfo, substitutions included */
	snprintf(x11_fbdir, sizeof(x11_fbdir), "%s/fb", dir);
	mkdir(x11_fbdir, 0700);
	const char *xargv[] = {"Xvfb",	 display,   "-screen",	 "0",	"1280x1024x24",
			       "-fbdir", x11_fbdir, "-nolisten", "tcp", NULL};
	pid_t pid = spawn(xargv, NULL);
	char xsock[64];
	snprintf(xsock, sizeof(xsock), "/tmp/.X11-unix/X%d", dn);
	for (int i = 0; i < 100 && access(xsock, F_OK); i++)
		usleep(100000);
	return pid;
}

pid_t spawn(const char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

char *sh_out(const char *cmd)
{
	char buf[4096] = "";
	FILE *p = popen(cmd, "r");
	size_t n = p ? fread(buf, 1, sizeof(buf) - 1, p) : 0;
	if (p)
		pclose(p);
	buf[n] = '\0';
	return strdup(buf);
}

/* The X screen as RGB from Xvfb's XWD frame buffer file. */
uint8_t *screen_rgb(int *w, int *h)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/Xvfb_screen0", x11_fbdir);
	size_t len;
	uint8_t *x = (uint8_t *)testenv_slurp(path, &len);
	if (!x || len < 100)
		return NULL;
#define BE32(o)                                                                                    \
	((uint32_t)x[o] << 24 | (uint32_t)x[o + 1] << 16 | (uint32_t)x[o + 2] << 8 | x[o + 3])
	uint32_t hs = BE32(0), bpl = BE32(48), nc = BE32(76);
	*w = (int)BE32(16);
	*h = (int)BE32(20);
	size_t off = hs + (size_t)nc * 12;
	uint8_t *rgb = malloc((size_t)*w * (size_t)*h * 3);
	for (int y = 0; y < *h; y++)
		for (int i = 0; i < *w; i++) {
			const uint8_t *px = x + off + (size_t)y * bpl + (size_t)i * 4;
			uint8_t *o = rgb + ((size_t)y * (size_t)*w + (size_t)i) * 3;
			o[0] = px[2];
			o[1] = px[1];
			o[2] = px[0];
		}
	free(x);
	return rgb;
}

/* A P6 PPM (QMP screendump). */
uint8_t *ppm(const char *path, int *w, int *h)
{
	size_t len;
	uint8_t *d8 = (uint8_t *)testenv_slurp(path, &len);
	if (!d8)
		return NULL;
	int mx, off = 0;
	if (sscanf((char *)d8, "P6 %d %d %d%n", w, h, &mx, &off) != 3 || mx != 255) {
		free(d8);
		return NULL;
	}
	off++; /* one whitespace after maxval */
	uint8_t *rgb = malloc((size_t)*w * (size_t)*h * 3);
	memcpy(rgb, d8 + off, (size_t)*w * (size_t)*h * 3);
	free(d8);
	return rgb;
}

/* Where a window is on the X screen (from xwininfo). */
bool window_geometry(const char *name_args, int *x, int *y, int *w, int *h)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "xwininfo %s 2>/dev/null", name_args);
	char *out = sh_out(cmd);
	char *ax = strstr(out, "Absolute upper-left X:"),
	     *ay = strstr(out, "Absolute upper-left Y:");
	char *ww = strstr(out, "Width:"), *hh = strstr(out, "Height:");
	bool ok = ax && ay && ww && hh;
	if (ok) {
		*x = atoi(ax + 22);
		*y = atoi(ay + 22);
		*w = atoi(ww + 6);
		*h = atoi(hh + 7);
	}
	free(out);
	return ok;
}

/* DIFF: pixels not identical; MEAN: mean absolute difference per channel. */
bool pixels_cmp(struct nestord *d, const char *id, int *diff_out, double *mean_out)
{
	char path[128];
	json_object *o = NULL;
	snprintf(path, sizeof(path), "/v1/sessions/%s/screendump", id);
	int st = api(d, "POST", path, NULL, &o);
	if (st != 200) {
		fprintf(stderr, "screendump: HTTP %d %s\n", st, jget(o, "error"));
		json_object_put(o);
		return false;
	}
	int gw_, gh;
	uint8_t *guest = ppm(jget(o, "file"), &gw_, &gh);
	json_object_put(o);
	int x, y, w, h, sw, shh;
	uint8_t *scr = NULL;
	bool ok = false;
	if (guest &&
	    window_geometry("-id $(xdotool search --name 'FreeRDP:' | head -1)", &x, &y, &w, &h) &&
	    (scr = screen_rgb(&sw, &shh))) {
		int diff = 0;
		double sum = 0;
		for (int yy = 0; yy < gh && y + yy < shh; yy++) {
			for (int xx = 0; xx < gw_ && x + xx < sw; xx++) {
				const uint8_t *a = guest + ((size_t)yy * gw_ + xx) * 3;
				const uint8_t *b = scr + ((size_t)(y + yy) * sw + (x + xx)) * 3;
				diff += memcmp(a, b, 3) != 0;
				for (int c = 0; c < 3; c++)
					sum += abs((int)a[c] - (int)b[c]);
			}
		}
		*diff_out = diff;
		*mean_out = sum / ((double)gw_ * gh * 3);
		ok = diff == 0 && w >= gw_ && h >= gh;
	} else {
		fprintf(stderr, "pixels: guest %s, window found %d\n", guest ? "ok" : "missing",
			window_geometry("-id $(xdotool search --name 'FreeRDP:' | head -1)", &x, &y,
					&w, &h));
	}
	free(guest);
	free(scr);
	return ok;
}

bool wait_for(bool (*cond)(void *), void *arg, int ms)
{
	int64_t end = util_now_ms() + ms;
	while (util_now_ms() < end) {
		if (cond(arg))
			return true;
		usleep(200000);
	}
	return cond(arg);
}

bool has_window(void *name)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "xdotool search --name '%s' >/dev/null 2>&1", (char *)name);
	return sh("%s", cmd) == 0;
}
