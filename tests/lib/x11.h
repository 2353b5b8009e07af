/*
 * The X side of end-to-end tests: a private Xvfb whose screen can be read
 * back (its XWD frame buffer file), windows found with xdotool/xwininfo,
 * and a client window compared pixel for pixel with a guest's screendump.
 */
#ifndef NESTOR_TEST_X11_H
#define NESTOR_TEST_X11_H

#include "daemon.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The frame buffer directory of the Xvfb x11_start started. */
extern char x11_fbdir[512];

/* Xvfb on a display of its own (1280x1024), frame buffer under DIR; DISPLAY is set. */
pid_t x11_start(const char *dir);
/* Whether the X tools the tests drive are installed (else the test cannot run). */
bool x11_tools(void);
/* Run ARGV with output to LOG (NULL: discarded); returns its pid. */
pid_t spawn(const char *const argv[], const char *log);
int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* CMD's output (new string). */
char *sh_out(const char *cmd);
/* The X screen as RGB (new buffer). */
uint8_t *screen_rgb(int *w, int *h);
/* A P6 PPM file as RGB (new buffer). */
uint8_t *ppm(const char *path, int *w, int *h);
/* Where a window is (NAME_ARGS: xwininfo's, e.g. "-name X" or "-id N"). */
bool window_geometry(const char *name_args, int *x, int *y, int *w, int *h);
/*
 * The first FreeRDP window against session ID's guest screen (a screendump
 * through D): DIFF pixels not identical, MEAN the mean absolute difference
 * per channel; true when they are the same.
 */
bool pixels_cmp(struct nestord *d, const char *id, int *diff_out, double *mean_out);
/* COND(ARG) within MS (asked every 200 ms). */
bool wait_for(bool (*cond)(void *), void *arg, int ms);
/* A window whose name matches NAME (a regex) exists. */
bool has_window(void *name);

#endif
