/* Table tests for the accelerator decision (launcher/accel.c, pure part). */
#include "accel.h"
#include "check.h"

#include <errno.h>

int main(void)
{
	static const struct {
		enum lnch_accel_mode mode;
		enum lnch_probe probe;
		int err;
		enum lnch_accel accel;
	} t[] = {
	    {LNCH_ACCEL_AUTO, LNCH_PROBE_OK, 0, LNCH_ACCEL_KVM},
	    {LNCH_ACCEL_AUTO, LNCH_PROBE_HUNG, 0, LNCH_ACCEL_TCG},
	    {LNCH_ACCEL_AUTO, LNCH_PROBE_NO_DEVICE, 0, LNCH_ACCEL_TCG},
	    {LNCH_ACCEL_AUTO, LNCH_PROBE_FAILED, 0, LNCH_ACCEL_TCG},
	    {LNCH_ACCEL_WANT_TCG, LNCH_PROBE_NOT_RUN, 0, LNCH_ACCEL_TCG},
	    {LNCH_ACCEL_WANT_TCG, LNCH_PROBE_OK, 0, LNCH_ACCEL_TCG},
	    {LNCH_ACCEL_WANT_KVM, LNCH_PROBE_OK, 0, LNCH_ACCEL_KVM},
	    {LNCH_ACCEL_WANT_KVM, LNCH_PROBE_HUNG, -ENODEV, LNCH_ACCEL_TCG},
	    {LNCH_ACCEL_WANT_KVM, LNCH_PROBE_NO_DEVICE, -ENODEV, LNCH_ACCEL_TCG},
	    {LNCH_ACCEL_WANT_KVM, LNCH_PROBE_FAILED, -ENODEV, LNCH_ACCEL_TCG},
	    /* no kernel to test with: auto stays safe, a required KVM is taken on trust */
	    {LNCH_ACCEL_AUTO, LNCH_PROBE_NO_KERNEL, 0, LNCH_ACCEL_TCG},
	    {LNCH_ACCEL_WANT_KVM, LNCH_PROBE_NO_KERNEL, 0, LNCH_ACCEL_KVM},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct lnch_accel_choice c = lnch_accel_decide(t[i].mode, t[i].probe);
		CHECK_MSG(c.err == t[i].err, "case %zu: err %d", i, c.err);
		if (!c.err)
			CHECK_MSG(c.accel == t[i].accel, "case %zu: accel %d", i, c.accel);
		CHECK_MSG(c.reason && *c.reason, "case %zu: a reason is given", i);
	}
	enum lnch_accel_mode m;
	CHECK(lnch_accel_mode_parse("auto", &m) == 0 && m == LNCH_ACCEL_AUTO);
	CHECK(lnch_accel_mode_parse("kvm", &m) == 0 && m == LNCH_ACCEL_WANT_KVM);
	CHECK(lnch_accel_mode_parse("tcg", &m) == 0 && m == LNCH_ACCEL_WANT_TCG);
	CHECK(lnch_accel_mode_parse("KVM", &m) == -EINVAL);
	CHECK(lnch_accel_mode_parse("", &m) == -EINVAL);

	/* Probe output: a kernel that ran to its root mount, and firmware alone. */
	CHECK(lnch_accel_probe_output_ok(
	    "[    2.07] Kernel panic - not syncing: VFS: Unable to mount root fs\n"));
	CHECK(!lnch_accel_probe_output_ok("SeaBIOS (version 1.16.2)\n...\nNo bootable device.\n"));
	CHECK(!lnch_accel_probe_output_ok(""));
	CHECK(!lnch_accel_probe_output_ok(NULL));
	return check_done("test_accel");
}
