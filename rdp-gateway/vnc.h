/*
 * The console backend: a guest's screen and input over QEMU's VNC server
 * on a UNIX socket (libvncclient). Keys go as QEMU extended key events
 * (PC scancodes: exact for any layout the guest uses); pointer events as
 * VNC pointer events. Used from one peer thread only.
 */
#ifndef NESTOR_GW_VNC_H
#define NESTOR_GW_VNC_H

#include <stdbool.h>
#include <stdint.h>

struct gw_vnc;

/* Damage: a rectangle of the guest framebuffer changed. */
typedef void (*gw_vnc_damage_fn)(void *arg, int x, int y, int w, int h);
/* The guest's screen size changed (also called once at connect). */
typedef void (*gw_vnc_resize_fn)(void *arg, int w, int h);

/* Connect to the VNC UNIX socket PATH. Returns NULL on failure. */
struct gw_vnc *gw_vnc_connect(const char *path, gw_vnc_damage_fn damage, gw_vnc_resize_fn resize,
			      void *arg);
void gw_vnc_close(struct gw_vnc *v);
int gw_vnc_fd(const struct gw_vnc *v);
/* Process what the server sent; false when the connection is gone. */
bool gw_vnc_pump(struct gw_vnc *v);
/* The framebuffer: BGRX, width*4 stride. */
const uint8_t *gw_vnc_pixels(const struct gw_vnc *v, int *w, int *h);
bool gw_vnc_key(struct gw_vnc *v, int qnum, bool down);
bool gw_vnc_keysym(struct gw_vnc *v, uint32_t keysym, bool down);
bool gw_vnc_pointer(struct gw_vnc *v, int x, int y, int mask);
/* Ask for a full frame (refresh). */
void gw_vnc_refresh(struct gw_vnc *v);
/* Route libvncclient's logging to ours (once per process). */
void gw_vnc_init_logging(void);

#endif
