/*
 * How the broker reaches guests: the launcher's operations, passed at
 * create time (brk_options.launcher). nestord uses brk_launcher_qemu (the
 * real launcher/ and images/template.c); the state machine's unit tests
 * pass a fake that reports guest events when the test says so. The
 * contracts are launcher.h's and template.h's.
 */
#ifndef NESTOR_BRK_LAUNCH_H
#define NESTOR_BRK_LAUNCH_H

#include "launcher.h"
#include "template.h"

struct brk_launcher {
	struct lnch_guest *(*start)(struct event_base *base, const struct lnch_config *cfg,
				    const char *id, const struct lnch_profile *profile,
				    const struct lnch_start_opts *opts,
				    const struct lnch_guest_cbs *cbs, void *arg, char *err,
				    size_t errlen);
	struct lnch_guest *(*attach)(struct event_base *base, const struct lnch_config *cfg,
				     const char *id, pid_t pid, const struct lnch_profile *probe,
				     const struct lnch_guest_cbs *cbs, void *arg, char *err,
				     size_t errlen);
	void (*stop)(struct lnch_guest *g, int grace_ms);
	int (*resume)(struct lnch_guest *g, lnch_done_fn cb, void *arg);
	void (*set_cbs)(struct lnch_guest *g, const struct lnch_guest_cbs *cbs, void *arg);
	void (*detach)(struct lnch_guest *g);  /* accepts NULL */
	void (*destroy)(struct lnch_guest *g); /* accepts NULL */
	pid_t (*pid)(const struct lnch_guest *g);
	const char *(*qmp_path)(const struct lnch_guest *g);
	const char *(*vnc_path)(const struct lnch_guest *g);
	const char *(*overlay_path)(const struct lnch_guest *g);
	unsigned (*host_port)(const struct lnch_guest *g);
	struct qmp_client *(*qmp)(struct lnch_guest *g);

	struct img_tbuild *(*tpl_build)(struct event_base *base, const struct lnch_config *cfg,
					const char *id, const struct lnch_profile *profile,
					const char *dir, const char *qemu_version,
					img_template_fn cb, void *arg, char *err, size_t errlen);
	void (*tpl_cancel)(struct img_tbuild *b);
	void (*tpl_destroy)(struct img_tbuild *b); /* accepts NULL */
	bool (*tpl_usable)(const char *dir, const struct lnch_config *cfg,
			   const struct lnch_profile *profile, const char *qemu_version, char *why,
			   size_t whylen);
	void (*tpl_clone_opts)(const char *dir, struct lnch_start_opts *opts, char buf[3][4200]);

	/* QEMU's version: CB gets it (NULL: unknown) once, from the loop. 0 or -errno. */
	int (*version)(struct event_base *base, const char *qemu,
		       void (*cb)(const char *version, void *arg), void *arg);
};

extern const struct brk_launcher brk_launcher_qemu;

#endif
