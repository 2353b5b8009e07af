/*
 * The launcher: starts, watches and stops throwaway QEMU guests, each on its
 * own qcow2 overlay over a read-only backing image. Everything runs through
 * the caller's event loop; nothing here blocks it (qemu-img and QEMU are
 * children watched through pidfds, QMP is asynchronous).
 *
 * A guest reports its life through one callback:
 *   STARTING -> READY -> STOPPING -> STOPPED(why)
 * STOPPED is always reported exactly once, after QEMU is gone and its
 * overlay, sockets and logs are removed. The guest may be destroyed from
 * inside the callback.
 *
 * int functions return 0 or a negative errno.
 */
#ifndef NESTOR_LAUNCHER_H
#define NESTOR_LAUNCHER_H

#include "argv.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

struct event_base;
struct lnch_guest;
struct qmp_client;

struct lnch_config {
	const char *qemu;
	const char *qemu_img;
	const char *run_dir;	 /* RUN_DIR/ID/ holds a guest's sockets and logs */
	const char *overlay_dir; /* OVERLAY_DIR/ID.qcow2 */
	enum lnch_accel accel;
	bool sandbox;
	uid_t uid; /* run qemu-img and QEMU as this user (0: unchanged) */
	gid_t gid;
	int start_timeout_ms;	   /* launch to ready */
	int stop_timeout_ms;	   /* graceful power-down before quit */
	unsigned port_lo, port_hi; /* guests' forwards on 127.0.0.1 from here (0: any free) */
};

enum lnch_state { LNCH_STARTING, LNCH_READY, LNCH_STOPPING, LNCH_STOPPED };

enum lnch_end {
	LNCH_END_NONE,
	LNCH_END_SHUTDOWN,	/* the guest powered itself off or reset */
	LNCH_END_STOPPED,	/* we stopped it */
	LNCH_END_KILLED,	/* we stopped it, SIGKILL was needed */
	LNCH_END_CRASHED,	/* QEMU died on its own */
	LNCH_END_START_TIMEOUT, /* not ready in time */
	LNCH_END_START_FAILED,	/* overlay, exec or QMP failed */
	LNCH_END_LOST,		/* gone while nobody watched (reattach) */
};

/* Optional start variations (template clones); zero for a cold boot. */
struct lnch_start_opts {
	const char *backing;	/* overlay backing file; default profile->disk */
	const char *ram_file;	/* template RAM (share=off view) */
	const char *state_file; /* template device state, restored with migrate-incoming */
	bool keep_paused;	/* warm pool: restored, ready, not resumed */
	bool share_ram;		/* template build: RAM file mapped share=on */
	unsigned host_port;	/* forward for profile->guest_port; 0: a free one is picked */
	const char *overlay;	/* explicit overlay path (template disk); default OVERLAY_DIR/ID */
	bool keep_overlay;	/* template build: the disk outlives the guest */
};

/*
 * A short hash of the QEMU command line a template clone of PROFILE gets
 * under these options, with per-guest paths left out: a template saved
 * under another fingerprint cannot be restored. OUT gets 16 hex digits.
 */
void lnch_fingerprint(const struct lnch_config *cfg, const struct lnch_profile *profile,
		      char out[17]);

struct lnch_guest_cbs {
	/* DETAIL is human text (may be empty); borrowed. */
	void (*state)(struct lnch_guest *g, enum lnch_state st, enum lnch_end why,
		      const char *detail, void *arg);
	/* Optional: QEMU was spawned with PID (persist it before anything else). */
	void (*spawned)(struct lnch_guest *g, pid_t pid, void *arg);
	/* Optional: QMP events after ready, in arrival order. */
	void (*event)(struct lnch_guest *g, const char *name, json_object *data, void *arg);
};

const char *lnch_state_name(enum lnch_state st);
const char *lnch_end_name(enum lnch_end why);

/*
 * Start guest ID (a valid name, unique in run_dir). CFG and PROFILE are
 * copied as needed. Returns a new guest that reports STARTING from the loop,
 * or NULL with ERR filled.
 */
struct lnch_guest *lnch_guest_start(struct event_base *base, const struct lnch_config *cfg,
				    const char *id, const struct lnch_profile *profile,
				    const struct lnch_start_opts *opts,
				    const struct lnch_guest_cbs *cbs, void *arg, char *err,
				    size_t errlen);

/*
 * Watch guest ID left running by an earlier broker, QEMU pid PID. Checks the
 * pid really is that guest's QEMU. Reports READY (reattached) or STOPPED
 * (LOST, files cleaned). PROBE, if not NULL, is the profile of a guest that
 * was still starting: its readiness probe runs again before READY.
 * Returns a new guest or NULL with ERR filled.
 */
struct lnch_guest *lnch_guest_attach(struct event_base *base, const struct lnch_config *cfg,
				     const char *id, pid_t pid, const struct lnch_profile *probe,
				     const struct lnch_guest_cbs *cbs, void *arg, char *err,
				     size_t errlen);

/*
 * Stop: GRACE_MS > 0 asks the guest to power down first (ACPI), then QMP
 * quit, then SIGKILL. Reports STOPPING then STOPPED. Idempotent.
 */
void lnch_guest_stop(struct lnch_guest *g, int grace_ms);

/* Resume a guest kept paused (warm pool). CB (may be NULL) gets 0 or a negative errno. */
typedef void (*lnch_done_fn)(struct lnch_guest *g, int err, void *arg);
int lnch_guest_resume(struct lnch_guest *g, lnch_done_fn cb, void *arg);
/* Hand the guest to a new owner (warm pool -> session). */
void lnch_guest_set_cbs(struct lnch_guest *g, const struct lnch_guest_cbs *cbs, void *arg);

/* Stop watching without touching QEMU (broker shutdown with --keep-guests). Accepts NULL. */
void lnch_guest_detach(struct lnch_guest *g);
/* Free; a running guest is killed and cleaned first. Accepts NULL. */
void lnch_guest_destroy(struct lnch_guest *g);

const char *lnch_guest_id(const struct lnch_guest *g);
pid_t lnch_guest_pid(const struct lnch_guest *g);
enum lnch_state lnch_guest_state(const struct lnch_guest *g);
const char *lnch_guest_qmp_path(const struct lnch_guest *g);
const char *lnch_guest_vnc_path(const struct lnch_guest *g);
/* The 127.0.0.1 port forwarded to the guest's port (profile guest_port), or 0. */
unsigned lnch_guest_host_port(const struct lnch_guest *g);
const char *lnch_guest_overlay_path(const struct lnch_guest *g);
const char *lnch_guest_serial_path(const struct lnch_guest *g);
const char *lnch_guest_probe_path(const struct lnch_guest *g);
/* The guest's QMP client once ready, else NULL; borrowed. */
struct qmp_client *lnch_guest_qmp(struct lnch_guest *g);

/*
 * Liveness check over the guest's probe serial port: send "PING TOKEN",
 * expect "PONG TOKEN". CB gets 0, -ETIMEDOUT, -EPROTO or another negative errno.
 */
typedef void (*lnch_ping_fn)(struct lnch_guest *g, int err, void *arg);
int lnch_guest_ping(struct lnch_guest *g, const char *token, int timeout_ms, lnch_ping_fn cb,
		    void *arg);

#endif
