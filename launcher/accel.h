/*
 * Accelerator choice. /dev/kvm existing is not enough: nested KVM can hang
 * a guest forever. The probe boots SeaBIOS under KVM with no disk and waits
 * for its last words ("No bootable device") on the debug port; only a guest
 * that really ran gets KVM.
 *
 * lnch_accel_decide and lnch_accel_probe_output_ok are pure.
 */
#ifndef NESTOR_LNCH_ACCEL_H
#define NESTOR_LNCH_ACCEL_H

#include "argv.h"

#include <stdbool.h>

struct event_base;

enum lnch_accel_mode { LNCH_ACCEL_AUTO, LNCH_ACCEL_WANT_KVM, LNCH_ACCEL_WANT_TCG };

enum lnch_probe {
	LNCH_PROBE_NOT_RUN,   /* not needed (tcg asked for) */
	LNCH_PROBE_NO_DEVICE, /* /dev/kvm missing or not usable by us */
	LNCH_PROBE_OK,	      /* a guest ran to the end of its BIOS under KVM */
	LNCH_PROBE_HUNG,      /* started but did not finish in time */
	LNCH_PROBE_FAILED,    /* QEMU refused KVM (exited early) */
};

struct lnch_accel_choice {
	int err; /* 0, or -ENODEV when KVM was required and cannot be used */
	enum lnch_accel accel;
	const char *reason; /* static text for the log */
};

/* Returns 0 or -EINVAL for a name that is not auto|kvm|tcg. */
int lnch_accel_mode_parse(const char *s, enum lnch_accel_mode *out);
struct lnch_accel_choice lnch_accel_decide(enum lnch_accel_mode mode, enum lnch_probe probe);
/* True when the debug-port output shows the BIOS finished. */
bool lnch_accel_probe_output_ok(const char *out);

typedef void (*lnch_accel_fn)(struct lnch_accel_choice choice, void *arg);

/*
 * Probe through the loop and call CB once with the choice (never from inside
 * this call). TMPDIR holds the probe's scratch file. Returns 0 or a negative
 * errno.
 */
int lnch_accel_probe(struct event_base *base, const char *qemu, const char *tmpdir,
		     enum lnch_accel_mode mode, int timeout_ms, lnch_accel_fn cb, void *arg);

#endif
