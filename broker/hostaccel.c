/*
 * The host's accelerator decision: KVM or TCG, why, and since when. It is
 * kept in the database with what it rests on (QEMU, the probe kernel,
 * /dev/kvm) and reused across restarts; it is probed again only when one of
 * those changed or an admin asks (nestorctl accel probe). At runtime a
 * guest that misses its start deadline under KVM, while no TCG start on
 * this host has failed that way, marks KVM bad: the decision becomes TCG
 * until the next probe, and what was starting under KVM starts again.
 * Runs on the loop; the probe is a child through launcher/accel.c.
 */
#include "brk-private.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_KEY "accel"

struct accel_waiter {
	struct accel_waiter *next;
	brk_done_fn cb;
	void *arg;
};

const char *accel_name(enum lnch_accel a)
{
	return a == LNCH_ACCEL_KVM ? "kvm" : "tcg";
}

static enum lnch_accel_mode mode_of(const struct brk *b)
{
	enum lnch_accel_mode m = LNCH_ACCEL_AUTO;
	lnch_accel_mode_parse(b->cfg.accel, &m);
	return m;
}

static void first_kernel(const struct db_image *img, void *arg)
{
	char *out = arg;
	if (!out[0] && img->kernel[0] && access(img->kernel, R_OK) == 0)
		snprintf(out, BRK_PATH_MAX, "%s", img->kernel);
}

/* The kernel the probe boots: configured, else a registered image's, else the host's. */
static void probe_kernel(struct brk *b, char *out)
{
	out[0] = '\0';
	if (b->cfg.accel_probe_kernel[0]) {
		snprintf(out, BRK_PATH_MAX, "%s", b->cfg.accel_probe_kernel);
		return;
	}
	store_images_all(b->store, first_kernel, out);
	if (!out[0] && access("/boot/vmlinuz", R_OK) == 0)
		snprintf(out, BRK_PATH_MAX, "/boot/vmlinuz");
}

static void save(struct brk *b)
{
	if (!b->acc.probed)
		return;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "accel", json_object_new_string(accel_name(b->acc.accel)));
	json_object_object_add(o, "reason", json_object_new_string(b->acc.reason));
	json_object_object_add(o, "evidence", json_object_new_string(b->acc.evidence));
	json_object_object_add(o, "source", json_object_new_string(b->acc.source));
	json_object_object_add(o, "decided", json_object_new_int64(b->acc.decided));
	json_object_object_add(o, "proven", json_object_new_boolean(b->acc.proven));
	if (store_meta_set(b->store, META_KEY, json_object_to_json_string(o)) < 0)
		log_warn("the accelerator decision could not be saved: it is probed again at the "
			 "next start");
	json_object_put(o);
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
		   ? json_object_get_string(v)
		   : "";
}

/* The saved decision, if it is well-formed. */
static bool load(struct brk *b, struct brk_accel *out)
{
	char text[4096];
	if (store_meta_get(b->store, META_KEY, text, sizeof(text)) < 0)
		return false;
	json_object *o = json_tokener_parse(text);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		log_warn("the saved accelerator decision is unreadable: probing again");
		return false;
	}
	memset(out, 0, sizeof(*out));
	const char *a = jstr(o, "accel");
	bool ok = !strcmp(a, "kvm") || !strcmp(a, "tcg");
	out->accel = !strcmp(a, "kvm") ? LNCH_ACCEL_KVM : LNCH_ACCEL_TCG;
	snprintf(out->reason, sizeof(out->reason), "%s", jstr(o, "reason"));
	snprintf(out->evidence, sizeof(out->evidence), "%s", jstr(o, "evidence"));
	snprintf(out->source, sizeof(out->source), "%s", jstr(o, "source"));
	json_object *v;
	out->decided = json_object_object_get_ex(o, "decided", &v) ? json_object_get_int64(v) : 0;
	out->proven = json_object_object_get_ex(o, "proven", &v) && json_object_get_boolean(v);
	out->probed = true;
	json_object_put(o);
	return ok && out->evidence[0];
}

/* Adopt a new decision; tell the broker if guests must move. */
static void adopt(struct brk *b, enum lnch_accel a, const char *reason, const char *source,
		  bool probed)
{
	enum lnch_accel old = b->acc.accel;
	bool was_ready = b->accel_ready;
	b->acc.accel = a;
	snprintf(b->acc.reason, sizeof(b->acc.reason), "%s", reason);
	snprintf(b->acc.source, sizeof(b->acc.source), "%s", source);
	b->acc.decided = util_wall_s();
	b->acc.proven = false;
	b->acc.probed = probed;
	b->kvm_strike = false;
	b->tcg_failures = 0; /* counted per decision */
	b->accel_ready = true;
	b->lcfg.accel = a;
	b->accel_gen++;
	save(b);
	log_info("accelerator: %s", reason);
	brk_caps_reload(b); /* the automatic max_starting depends on the accelerator */
	if (was_ready && old != a)
		brk_accel_changed(b, old);
	brk_kick(b);
}

static void finish_waiters(struct brk *b, int err, const char *msg)
{
	while (b->accel_waiters) {
		struct accel_waiter *w = b->accel_waiters;
		b->accel_waiters = w->next;
		w->cb(err, msg, w->arg);
		free(w);
	}
}

static void on_probed(struct lnch_accel_choice c, void *arg)
{
	struct brk *b = arg;
	b->accel_probing = false;
	b->probe = NULL;
	if (b->probe_gen != b->accel_gen && !strcmp(b->acc.source, "fallback")) {
		/* started before a runtime fallback: the hung guest outranks it */
		log_info("accelerator: a probe from before the fallback said \"%s\": kept TCG",
			 c.reason);
		finish_waiters(b, 0, b->acc.reason);
		return;
	}
	if (c.err) {
		log_err("%s: no guest can start until this is fixed", c.reason);
		store_audit_log(b->store, "accel-probe", NULL, NULL, NULL, c.reason);
		finish_waiters(b, -ENODEV, c.reason);
		return;
	}
	char kernel[BRK_PATH_MAX];
	probe_kernel(b, kernel);
	lnch_accel_evidence(b->cfg.qemu, kernel, b->acc.evidence, sizeof(b->acc.evidence));
	/* without a kernel nothing was tested: decide again once one is known */
	bool probed = strncmp(c.reason, "TCG: no kernel", 14) != 0;
	adopt(b, c.accel, c.reason, "probe", probed);
	store_audit_log(b->store, "accel-probe", NULL, NULL, NULL, c.reason);
	finish_waiters(b, 0, c.reason);
}

static int start_probe(struct brk *b)
{
	if (b->accel_probing)
		return 0;
	char kernel[BRK_PATH_MAX];
	probe_kernel(b, kernel);
	struct lnch_accel_probe_spec spec = {
	    .qemu = b->cfg.qemu,
	    .tmpdir = b->cfg.run_dir,
	    .kernel = kernel[0] ? kernel : NULL,
	    .mode = mode_of(b),
	    .timeout_ms = (int)b->cfg.accel_probe_timeout * 1000,
	};
	int r = lnch_accel_probe(b->base, &spec, on_probed, b, &b->probe);
	if (r == 0) {
		b->accel_probing = true;
		b->probe_gen = b->accel_gen;
		if (spec.kernel)
			log_info("accelerator: probing KVM with %s (at most %u s)", kernel,
				 b->cfg.accel_probe_timeout);
	}
	return r;
}

void accel_init(struct brk *b)
{
	enum lnch_accel_mode mode = mode_of(b);
	if (mode == LNCH_ACCEL_WANT_TCG) {
		adopt(b, LNCH_ACCEL_TCG, "TCG as configured", "config", false);
		return;
	}
	char kernel[BRK_PATH_MAX], now[2048];
	probe_kernel(b, kernel);
	lnch_accel_evidence(b->cfg.qemu, kernel, now, sizeof(now));
	struct brk_accel saved;
	if (load(b, &saved)) {
		if (!strcmp(saved.evidence, now) &&
		    (mode == LNCH_ACCEL_AUTO || saved.accel == LNCH_ACCEL_KVM)) {
			b->acc = saved;
			b->accel_ready = true;
			b->lcfg.accel = saved.accel;
			log_info("accelerator: %s (kept: decided %lld s ago, %s)", saved.reason,
				 (long long)(util_wall_s() - saved.decided), saved.source);
			return;
		}
		log_info("accelerator: probing again: %s",
			 strcmp(saved.evidence, now) ? "QEMU, the probe kernel or /dev/kvm changed"
						     : "KVM is required");
	}
	if (start_probe(b) < 0) {
		log_err("cannot probe the accelerator: TCG");
		adopt(b, LNCH_ACCEL_TCG, "TCG: the probe could not run", "probe", false);
	}
}

int brk_accel_probe(struct brk *b, brk_done_fn cb, void *arg, char *err, size_t errlen)
{
	if (b->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	if (mode_of(b) == LNCH_ACCEL_WANT_TCG) {
		snprintf(err, errlen, "accel = tcg is configured: nothing to probe");
		return -EINVAL;
	}
	struct accel_waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int r = start_probe(b);
	if (r < 0) {
		free(w);
		snprintf(err, errlen, "cannot run the probe: %s", strerror(-r));
		return r;
	}
	w->cb = cb;
	w->arg = arg;
	w->next = b->accel_waiters;
	b->accel_waiters = w;
	store_audit_log(b->store, "accel-probe-requested", NULL, NULL, NULL, NULL);
	return 0;
}

void accel_image_added(struct brk *b, const struct db_image *img)
{
	if (b->accel_ready && !b->acc.probed && img->kernel[0] &&
	    mode_of(b) != LNCH_ACCEL_WANT_TCG && !b->accel_probing) {
		log_info("accelerator: image %s has a kernel to test KVM with", img->name);
		start_probe(b);
	}
}

void accel_guest_ready(struct brk *b, enum lnch_accel a)
{
	if (a == b->acc.accel && !b->acc.proven) {
		b->acc.proven = true;
		save(b);
		if (a == LNCH_ACCEL_KVM)
			log_info("accelerator: a guest got ready under KVM");
	}
}

int accel_start_timeout_ms(const struct brk *b, int dflt_ms)
{
	int trial = (int)b->cfg.accel_trial_timeout * 1000;
	if (b->acc.accel == LNCH_ACCEL_KVM && !b->acc.proven && trial > 0 && trial < dflt_ms)
		return trial;
	return dflt_ms;
}

bool accel_start_timed_out(struct brk *b, enum lnch_accel a, const char *who)
{
	if (a == LNCH_ACCEL_TCG) {
		b->tcg_failures++;
		return false;
	}
	if (b->acc.accel == LNCH_ACCEL_TCG)
		return true; /* already fallen back: this one starts again too */
	if (mode_of(b) == LNCH_ACCEL_WANT_KVM) {
		log_warn("%s was not ready in time under KVM (accel = kvm: no fallback)", who);
		return false;
	}
	if (b->acc.proven && !b->kvm_strike) {
		/* KVM has run guests here: the image may be at fault. A probe decides,
		 * and a second timeout under this decision drops KVM whatever it says. */
		log_warn("%s was not ready in time under KVM, which has run guests on this host: "
			 "probing KVM again",
			 who);
		b->kvm_strike = true;
		start_probe(b);
		return false;
	}
	if (b->tcg_failures) {
		log_warn("%s was not ready in time under KVM; not blaming KVM: %u TCG starts "
			 "timed out on this host too",
			 who, b->tcg_failures);
		return false;
	}
	char why[256];
	snprintf(why, sizeof(why),
		 "TCG: a guest hung under KVM (%.80s was not ready in time); until "
		 "`nestorctl accel probe`",
		 who);
	log_warn("accelerator: KVM marked bad: %s was not ready in time under it; starting "
		 "again under TCG",
		 who);
	store_audit_log(b->store, "accel-fallback", NULL, NULL, NULL, why);
	adopt(b, LNCH_ACCEL_TCG, why, "fallback", true);
	return true;
}

json_object *brk_accel_json(const struct brk *b)
{
	json_object *o = json_object_new_object();
	json_object_object_add(
	    o, "accel",
	    json_object_new_string(b->accel_ready ? accel_name(b->acc.accel) : "probing"));
	json_object_object_add(o, "reason", json_object_new_string(b->acc.reason));
	json_object_object_add(o, "source", json_object_new_string(b->acc.source));
	json_object_object_add(o, "decided", json_object_new_int64(b->acc.decided));
	json_object_object_add(
	    o, "age_s", json_object_new_int64(b->acc.decided ? util_wall_s() - b->acc.decided : 0));
	json_object_object_add(o, "proven", json_object_new_boolean(b->acc.proven));
	json_object_object_add(o, "probing", json_object_new_boolean(b->accel_probing));
	json_object_object_add(o, "evidence", json_object_new_string(b->acc.evidence));
	return o;
}

void accel_finish(struct brk *b)
{
	lnch_accel_probe_cancel(b->probe); /* its QEMU goes now, not when it times out */
	b->probe = NULL;
	b->accel_probing = false;
	finish_waiters(b, -ESHUTDOWN, "nestord is shutting down");
}
