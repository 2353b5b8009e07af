/* The real launcher behind struct brk_launcher: launcher/ and images/template.c. */
#include "launch.h"
#include "job.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct version_job {
	void (*cb)(const char *version, void *arg);
	void *arg;
};

static void on_version(struct job *job, int status, void *arg)
{
	struct version_job *v = arg;
	const char *out = job_output(job);
	const char *p = strstr(out, "version ");
	char version[96] = "";
	if (status == 0 && p) {
		p += 8;
		snprintf(version, sizeof(version), "%.*s", (int)strcspn(p, " \n"), p);
	}
	job_destroy(job);
	v->cb(version[0] ? version : NULL, v->arg);
	free(v);
}

/* qemu --version (~50 ms) through the loop. */
static int qemu_version(struct event_base *base, const char *qemu,
			void (*cb)(const char *version, void *arg), void *arg)
{
	struct version_job *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->cb = cb;
	v->arg = arg;
	const char *argv[] = {qemu, "--version", NULL};
	struct job_spec spec = {.argv = argv, .stdout_fd = -1, .stderr_fd = -2};
	if (!job_run(base, &spec, on_version, v)) {
		free(v);
		return -EIO;
	}
	return 0;
}

const struct brk_launcher brk_launcher_qemu = {
    .start = lnch_guest_start,
    .attach = lnch_guest_attach,
    .stop = lnch_guest_stop,
    .resume = lnch_guest_resume,
    .set_cbs = lnch_guest_set_cbs,
    .detach = lnch_guest_detach,
    .destroy = lnch_guest_destroy,
    .pid = lnch_guest_pid,
    .qmp_path = lnch_guest_qmp_path,
    .vnc_path = lnch_guest_vnc_path,
    .overlay_path = lnch_guest_overlay_path,
    .host_port = lnch_guest_host_port,
    .qmp = lnch_guest_qmp,
    .tpl_build = img_template_build,
    .tpl_cancel = img_template_cancel,
    .tpl_destroy = img_template_destroy,
    .tpl_usable = img_template_usable,
    .tpl_clone_opts = img_template_clone_opts,
    .version = qemu_version,
};
