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
#include "hostaccel.h"
#include "store.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_KEY "accel"

struct accel_decision {
	enum lnch_accel accel;
	char reason[256];
	char evidence[2048]; /* what it rests on (lnch_accel_evidence) */
	char source[16];     /* probe | saved | fallback | config */
	int64_t decided;     /* wall clock */
	bool proven;	     /* a guest got ready under it */
	bool probed;	     /* rests on a probe (not: no kernel was known) */
};

struct hostaccel {
	struct host *h;
	accel_changed_fn changed;
	void *arg;
	bool ready; /* starts may run (a decision is known) */
	struct accel_decision acc;
	bool probing;
	struct lnch_accel_probe *probe; /* while probing */
	struct accel_waiter *waiters;
	unsigned tcg_failures; /* start timeouts under TCG: the host, not KVM, is slow */
	bool kvm_strike;       /* a start timed out under a proven KVM: the next one drops it */
	unsigned gen;	       /* decisions adopted so far */
	unsigned probe_gen;    /* gen when the running probe started */
};

struct accel_waiter {
	struct accel_waiter *next;
	brk_done_fn cb;
	void *arg;
};

const char *accel_name(enum lnch_accel a)
{
	return a == LNCH_ACCEL_KVM ? "kvm" : "tcg";
}

static enum lnch_accel_mode mode_of(const struct hostaccel *ha)
{
	enum lnch_accel_mode m = LNCH_ACCEL_AUTO;
	lnch_accel_mode_parse(ha->h->cfg.accel, &m);
	return m;
}

static void first_kernel(const struct db_image *img, void *arg)
{
	char *out = arg;
	if (!out[0] && img->kernel[0] && access(img->kernel, R_OK) == 0)
		snprintf(out, BRK_PATH_MAX, "%s", img->kernel);
}

/* The kernel the probe boots: configured, else a registered image's, else the host's. */
static void probe_kernel(struct hostaccel *ha, char *out)
{
	out[0] = '\0';
	if (ha->h->cfg.accel_probe_kernel[0]) {
		snprintf(out, BRK_PATH_MAX, "%s", ha->h->cfg.accel_probe_kernel);
		return;
	}
	store_images_all(ha->h->store, first_kernel, out);
	if (!out[0] && access("/boot/vmlinuz", R_OK) == 0)
		snprintf(out, BRK_PATH_MAX, "/boot/vmlinuz");
}

static void save(struct hostaccel *ha)
{
	if (!ha->acc.probed)
		return;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "accel", json_object_new_string(accel_name(ha->acc.accel)));
	json_object_object_add(o, "reason", json_object_new_string(ha->acc.reason));
	json_object_object_add(o, "evidence", json_object_new_string(ha->acc.evidence));
	json_object_object_add(o, "source", json_object_new_string(ha->acc.source));
	json_object_object_add(o, "decided", json_object_new_int64(ha->acc.decided));
	json_object_object_add(o, "proven", json_object_new_boolean(ha->acc.proven));
	if (store_meta_set(ha->h->store, META_KEY, json_object_to_json_string(o)) < 0)
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
static bool load(struct hostaccel *ha, struct accel_decision *out)
{
	char text[4096];
	if (store_meta_get(ha->h->store, META_KEY, text, sizeof(text)) < 0)
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
static void adopt(struct hostaccel *ha, enum lnch_accel a, const char *reason, const char *source,
		  bool probed)
{
	enum lnch_accel old = ha->acc.accel;
	bool was_ready = ha->ready;
	ha->acc.accel = a;
	snprintf(ha->acc.reason, sizeof(ha->acc.reason), "%s", reason);
	snprintf(ha->acc.source, sizeof(ha->acc.source), "%s", source);
	ha->acc.decided = util_wall_s();
	ha->acc.proven = false;
	ha->acc.probed = probed;
	ha->kvm_strike = false;
	ha->tcg_failures = 0; /* counted per decision */
	ha->ready = true;
	ha->h->lcfg.accel = a;
	ha->gen++;
	save(ha);
	log_info("accelerator: %s", reason);
	/* caps follow (the automatic max_starting); guests of OLD may have to move */
	ha->changed(old, was_ready && old != a, ha->arg);
	host_kick(ha->h);
}

static void finish_waiters(struct hostaccel *ha, int err, const char *msg)
{
	while (ha->waiters) {
		struct accel_waiter *w = ha->waiters;
		ha->waiters = w->next;
		w->cb(err, msg, w->arg);
		free(w);
	}
}

static void on_probed(struct lnch_accel_choice c, void *arg)
{
	struct hostaccel *ha = arg;
	ha->probing = false;
	ha->probe = NULL;
	if (ha->probe_gen != ha->gen && !strcmp(ha->acc.source, "fallback")) {
		/* started before a runtime fallback: the hung guest outranks it */
		log_info("accelerator: a probe from before the fallback said \"%s\": kept TCG",
			 c.reason);
		finish_waiters(ha, 0, ha->acc.reason);
		return;
	}
	if (c.err) {
		log_err("%s: no guest can start until this is fixed", c.reason);
		store_audit_log(ha->h->store, "accel-probe", NULL, NULL, NULL, c.reason);
		finish_waiters(ha, -ENODEV, c.reason);
		return;
	}
	char kernel[BRK_PATH_MAX];
	probe_kernel(ha, kernel);
	lnch_accel_evidence(ha->h->cfg.qemu, kernel, ha->acc.evidence, sizeof(ha->acc.evidence));
	/* without a kernel nothing was tested: decide again once one is known */
	bool probed = strncmp(c.reason, "TCG: no kernel", 14) != 0;
	adopt(ha, c.accel, c.reason, "probe", probed);
	store_audit_log(ha->h->store, "accel-probe", NULL, NULL, NULL, c.reason);
	finish_waiters(ha, 0, c.reason);
}

static int start_probe(struct hostaccel *ha)
{
	if (ha->probing)
		return 0;
	char kernel[BRK_PATH_MAX];
	probe_kernel(ha, kernel);
	struct lnch_accel_probe_spec spec = {
	    .qemu = ha->h->cfg.qemu,
	    .tmpdir = ha->h->cfg.run_dir,
	    .kernel = kernel[0] ? kernel : NULL,
	    .mode = mode_of(ha),
	    .timeout_ms = (int)ha->h->cfg.accel_probe_timeout * 1000,
	};
	int r = lnch_accel_probe(ha->h->base, &spec, on_probed, ha, &ha->probe);
	if (r == 0) {
		ha->probing = true;
		ha->probe_gen = ha->gen;
		if (spec.kernel)
			log_info("accelerator: probing KVM with %s (at most %u s)", kernel,
				 ha->h->cfg.accel_probe_timeout);
	}
	return r;
}

void accel_init(struct hostaccel *ha)
{
	enum lnch_accel_mode mode = mode_of(ha);
	if (mode == LNCH_ACCEL_WANT_TCG) {
		adopt(ha, LNCH_ACCEL_TCG, "TCG as configured", "config", false);
		return;
	}
	char kernel[BRK_PATH_MAX], now[2048];
	probe_kernel(ha, kernel);
	lnch_accel_evidence(ha->h->cfg.qemu, kernel, now, sizeof(now));
	struct accel_decision saved;
	if (load(ha, &saved)) {
		if (!strcmp(saved.evidence, now) &&
		    (mode == LNCH_ACCEL_AUTO || saved.accel == LNCH_ACCEL_KVM)) {
			ha->acc = saved;
			ha->ready = true;
			ha->h->lcfg.accel = saved.accel;
			log_info("accelerator: %s (kept: decided %lld s ago, %s)", saved.reason,
				 (long long)(util_wall_s() - saved.decided), saved.source);
			return;
		}
		log_info("accelerator: probing again: %s",
			 strcmp(saved.evidence, now) ? "QEMU, the probe kernel or /dev/kvm changed"
						     : "KVM is required");
	}
	if (start_probe(ha) < 0) {
		log_err("cannot probe the accelerator: TCG");
		adopt(ha, LNCH_ACCEL_TCG, "TCG: the probe could not run", "probe", false);
	}
}

int accel_probe(struct hostaccel *ha, brk_done_fn cb, void *arg, char *err, size_t errlen)
{
	if (ha->h->stopping) {
		snprintf(err, errlen, "nestord is shutting down");
		return -ESHUTDOWN;
	}
	if (mode_of(ha) == LNCH_ACCEL_WANT_TCG) {
		snprintf(err, errlen, "accel = tcg is configured: nothing to probe");
		return -EINVAL;
	}
	struct accel_waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int r = start_probe(ha);
	if (r < 0) {
		free(w);
		snprintf(err, errlen, "cannot run the probe: %s", strerror(-r));
		return r;
	}
	w->cb = cb;
	w->arg = arg;
	w->next = ha->waiters;
	ha->waiters = w;
	store_audit_log(ha->h->store, "accel-probe-requested", NULL, NULL, NULL, NULL);
	return 0;
}

void accel_image_added(struct hostaccel *ha, const struct db_image *img)
{
	if (ha->ready && !ha->acc.probed && img->kernel[0] && mode_of(ha) != LNCH_ACCEL_WANT_TCG &&
	    !ha->probing) {
		log_info("accelerator: image %s has a kernel to test KVM with", img->name);
		start_probe(ha);
	}
}

void accel_guest_ready(struct hostaccel *ha, enum lnch_accel a)
{
	if (a == ha->acc.accel && !ha->acc.proven) {
		ha->acc.proven = true;
		save(ha);
		if (a == LNCH_ACCEL_KVM)
			log_info("accelerator: a guest got ready under KVM");
	}
}

int accel_start_timeout_ms(const struct hostaccel *ha, int dflt_ms)
{
	int trial = (int)ha->h->cfg.accel_trial_timeout * 1000;
	if (ha->acc.accel == LNCH_ACCEL_KVM && !ha->acc.proven && trial > 0 && trial < dflt_ms)
		return trial;
	return dflt_ms;
}

bool accel_start_timed_out(struct hostaccel *ha, enum lnch_accel a, const char *who)
{
	if (a == LNCH_ACCEL_TCG) {
		ha->tcg_failures++;
		return false;
	}
	if (ha->acc.accel == LNCH_ACCEL_TCG)
		return true; /* already fallen back: this one starts again too */
	if (mode_of(ha) == LNCH_ACCEL_WANT_KVM) {
		log_warn("%s was not ready in time under KVM (accel = kvm: no fallback)", who);
		return false;
	}
	if (ha->acc.proven && !ha->kvm_strike) {
		/* KVM has run guests here: the image may be at fault. A probe decides,
		 * and a second timeout under this decision drops KVM whatever it says. */
		log_warn("%s was not ready in time under KVM, which has run guests on this host: "
			 "probing KVM again",
			 who);
		ha->kvm_strike = true;
		start_probe(ha);
		return false;
	}
	if (ha->tcg_failures) {
		log_warn("%s was not ready in time under KVM; not blaming KVM: %u TCG starts "
			 "timed out on this host too",
			 who, ha->tcg_failures);
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
	store_audit_log(ha->h->store, "accel-fallback", NULL, NULL, NULL, why);
	ha->h->met.accel_fallbacks++;
	adopt(ha, LNCH_ACCEL_TCG, why, "fallback", true);
	return true;
}

json_object *accel_json(const struct hostaccel *ha)
{
	json_object *o = json_object_new_object();
	json_object_object_add(
	    o, "accel", json_object_new_string(ha->ready ? accel_name(ha->acc.accel) : "probing"));
	json_object_object_add(o, "reason", json_object_new_string(ha->acc.reason));
	json_object_object_add(o, "source", json_object_new_string(ha->acc.source));
	json_object_object_add(o, "decided", json_object_new_int64(ha->acc.decided));
	json_object_object_add(
	    o, "age_s",
	    json_object_new_int64(ha->acc.decided ? util_wall_s() - ha->acc.decided : 0));
	json_object_object_add(o, "proven", json_object_new_boolean(ha->acc.proven));
	json_object_object_add(o, "probing", json_object_new_boolean(ha->probing));
	json_object_object_add(o, "evidence", json_object_new_string(ha->acc.evidence));
	return o;
}

struct hostaccel *accel_create(struct host *h, accel_changed_fn changed, void *arg)
{
	struct hostaccel *ha = calloc(1, sizeof(*ha));
	if (!ha)
		return NULL;
	ha->h = h;
	ha->changed = changed;
	ha->arg = arg;
	return ha;
}

void accel_destroy(struct hostaccel *ha)
{
	if (!ha)
		return;
	accel_finish(ha);
	free(ha);
}

bool accel_ready(const struct hostaccel *ha)
{
	return ha->ready;
}

enum lnch_accel accel_current(const struct hostaccel *ha)
{
	return ha->acc.accel;
}

void accel_finish(struct hostaccel *ha)
{
	lnch_accel_probe_cancel(ha->probe); /* its QEMU goes now, not when it times out */
	ha->probe = NULL;
	ha->probing = false;
	finish_waiters(ha, -ESHUTDOWN, "nestord is shutting down");
}
