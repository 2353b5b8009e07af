/*
 * QEMU command lines, pure: an image profile and a guest's paths in, an argv
 * array out. No shell is ever involved; values that QEMU parses as option
 * lists have their commas doubled so a path cannot inject options.
 *
 * int functions return 0 or a negative errno; ERR (if given) says why.
 */
#ifndef NESTOR_LNCH_ARGV_H
#define NESTOR_LNCH_ARGV_H

#include <stdbool.h>
#include <stddef.h>

enum lnch_accel { LNCH_ACCEL_TCG, LNCH_ACCEL_KVM };
enum lnch_net { LNCH_NET_NONE, LNCH_NET_RESTRICTED };
enum lnch_ready { LNCH_READY_SERIAL, LNCH_READY_TCP, LNCH_READY_RUNNING, LNCH_READY_RDP };

/* What an image needs to run. Strings are borrowed. */
struct lnch_profile {
	const char *machine; /* pinned machine type, e.g. "pc-i440fx-7.2" */
	unsigned memory_mb;  /* 16..65536 */
	unsigned cpus;	     /* 1..16 */
	const char *disk;    /* backing file of the overlay (qcow2) */
	const char *kernel;  /* optional direct kernel boot */
	const char *initrd;  /* optional, needs kernel */
	const char *append;  /* optional, needs kernel */
	bool vnc;	     /* display on a VNC UNIX socket; else none */
	enum lnch_net net;
	unsigned guest_port; /* forwarded guest TCP port when net is restricted, 0 none */
	enum lnch_ready ready;
	const char *ready_marker; /* LNCH_READY_SERIAL: text on the first serial port */
	bool serial_probe;	  /* second serial port on a UNIX socket for PING/PONG */
};

/* Where one guest's files live. Strings are borrowed. */
struct lnch_paths {
	const char *overlay;
	const char *qmp;
	const char *vnc;
	const char *serial_log;
	const char *probe;
	const char *ram_file; /* template RAM file, NULL for anonymous RAM */
	bool ram_shared;      /* share=on (template build) vs private copy */
	bool incoming;	      /* -incoming defer (template clone) */
	unsigned host_port;   /* 127.0.0.1 port forwarded to guest_port */
};

struct lnch_argv_opts {
	const char *qemu; /* binary */
	enum lnch_accel accel;
	bool sandbox;
	const char *name; /* guest id, shown in ps */
};

/* A NULL-terminated argv; free with lnch_argv_free. */
struct lnch_argv {
	char **v;
	size_t n, cap;
};

/* Check a profile; fills ERR with the first problem. */
int lnch_profile_check(const struct lnch_profile *p, char *err, size_t errlen);
int lnch_argv_build(const struct lnch_argv_opts *o, const struct lnch_profile *p,
		    const struct lnch_paths *paths, struct lnch_argv *out, char *err,
		    size_t errlen);
void lnch_argv_free(struct lnch_argv *a);
/* QEMU option-value escaping: "a,b" -> "a,,b". Returns a new string. */
char *lnch_qemu_escape(const char *s);

#endif
