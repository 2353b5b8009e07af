/*
 * Accelerator choice. /dev/kvm existing is not enough: nested KVM can hang
 * a guest forever, and firmware alone may run where a kernel hangs. The
 * probe boots a real Linux kernel under KVM (no disk, no initrd) and waits
 * under a deadline for its last words on the serial port ("Kernel panic":
 * it ran all the way to mounting a root file system); only a kernel that
 * really ran gets KVM.
 *
 * The decision depends on QEMU, the kernel and /dev/kvm: lnch_accel_evidence
 * says what those are now, so a caller can keep a decision across restarts
 * and probe again only when one of them changed.
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
	LNCH_PROBE_NO_KERNEL, /* no kernel to test KVM with */
	LNCH_PROBE_OK,	      /* a kernel ran to its root mount under KVM */
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
/* True when the serial output shows the kernel ran to its end. */
bool lnch_accel_probe_output_ok(const char *out);

typedef void (*lnch_accel_fn)(struct lnch_accel_choice choice, void *arg);

struct lnch_accel_probe_spec {
	const char *qemu;
	const char *tmpdir; /* holds the probe's serial log */
	const char *kernel; /* a Linux kernel image; NULL: none known */
	enum lnch_accel_mode mode;
	int timeout_ms; /* the kernel must reach its end within this */
};

struct lnch_accel_probe;

/*
 * Probe through the loop and call CB once with the choice (never from inside
 * this call). *OUT (if not NULL) gets the probe, valid until CB runs.
 * Returns 0 or a negative errno.
 */
int lnch_accel_probe(struct event_base *base, const struct lnch_accel_probe_spec *spec,
		     lnch_accel_fn cb, void *arg, struct lnch_accel_probe **out);
/* Stop a probe: its QEMU is killed, CB never runs. Accepts NULL. */
void lnch_accel_probe_cancel(struct lnch_accel_probe *p);

/*
 * What an accelerator decision rests on, as one line of text: QEMU's binary,
 * the probe kernel and /dev/kvm (each path, size or device number, and
 * change time). Equal text: nothing changed since the decision.
 */
void lnch_accel_evidence(const char *qemu, const char *kernel, char *out, size_t len);

#endif
