/*
 * Accelerator probe: the decision is pure; the probe runs QEMU as a child
 * through the loop and reads its serial log on a timer until the deadline.
 * Never blocks (beyond a few stat calls for the evidence).
 */
#include "accel.h"
#include "job.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_POLL_MS 25

int lnch_accel_mode_parse(const char *s, enum lnch_accel_mode *out)
{
	if (strcmp(s, "auto") == 0)
		*out = LNCH_ACCEL_AUTO;
	else if (strcmp(s, "kvm") == 0)
		*out = LNCH_ACCEL_WANT_KVM;
	else if (strcmp(s, "tcg") == 0)
		*out = LNCH_ACCEL_WANT_TCG;
	else
		return -EINVAL;
	return 0;
}

struct lnch_accel_choice lnch_accel_decide(enum lnch_accel_mode mode, enum lnch_probe probe)
{
	struct lnch_accel_choice c = {0, LNCH_ACCEL_TCG, NULL};
	if (mode == LNCH_ACCEL_WANT_TCG) {
		c.reason = "TCG as configured";
		return c;
	}
	switch (probe) {
	case LNCH_PROBE_OK:
		c.accel = LNCH_ACCEL_KVM;
		c.reason = "KVM: a probe kernel ran under it";
		return c;
	case LNCH_PROBE_NO_DEVICE:
		c.reason = "TCG: /dev/kvm is missing or not usable";
		break;
	case LNCH_PROBE_NO_KERNEL:
		if (mode == LNCH_ACCEL_WANT_KVM) {
			c.accel = LNCH_ACCEL_KVM;
			c.reason = "KVM as configured (no kernel to test it with)";
			return c;
		}
		c.reason = "TCG: no kernel to test KVM with (register an image with a kernel "
			   "or set accel_probe_kernel)";
		break;
	case LNCH_PROBE_HUNG:
		c.reason = "TCG: a probe kernel hung under KVM (nested KVM?)";
		break;
	case LNCH_PROBE_FAILED:
		c.reason = "TCG: QEMU could not start a guest under KVM";
		break;
	case LNCH_PROBE_NOT_RUN:
		c.reason = "TCG: KVM was not probed";
		break;
	}
	if (mode == LNCH_ACCEL_WANT_KVM) {
		c.err = -ENODEV;
		c.reason =
		    probe == LNCH_PROBE_HUNG ? "KVM required but a probe kernel hung under it"
		    : probe == LNCH_PROBE_NO_DEVICE ? "KVM required but /dev/kvm is not usable"
						    : "KVM required but QEMU cannot use it";
	}
	return c;
}

bool lnch_accel_probe_output_ok(const char *out)
{
	return out && strstr(out, "Kernel panic") != NULL;
}

struct lnch_accel_probe {
	struct event_base *base;
	struct job *job;
	struct event *tick;
	char path[4096];
	enum lnch_accel_mode mode;
	int64_t deadline;
	lnch_accel_fn cb;
	void *arg;
	enum lnch_probe result;
	bool done;
};

static void probe_end(struct lnch_accel_probe *p, enum lnch_probe result)
{
	if (p->done)
		return;
	p->done = true;
	p->result = result;
	event_del(p->tick);
	/* Wait for the child to go before reporting, so no QEMU outlives the probe. */
	if (p->job && job_signal(p->job, SIGKILL) == 0)
		return;
	struct timeval now = {0, 0};
	evtimer_add(p->tick, &now);
}

static void probe_report(struct lnch_accel_probe *p)
{
	struct lnch_accel_choice c = lnch_accel_decide(p->mode, p->result);
	lnch_accel_fn cb = p->cb;
	void *arg = p->arg;
	job_destroy(p->job);
	event_free(p->tick);
	if (p->path[0])
		unlink(p->path);
	free(p);
	cb(c, arg);
}

static bool probe_output_ok(const char *path)
{
	char *buf = NULL;
	if (util_read_file(path, 64 * 1024, &buf, NULL) < 0)
		return false;
	bool ok = lnch_accel_probe_output_ok(buf);
	free(buf);
	return ok;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct lnch_accel_probe *p = arg;
	if (p->done) {
		probe_report(p);
		return;
	}
	if (probe_output_ok(p->path)) {
		probe_end(p, LNCH_PROBE_OK);
		return;
	}
	if (util_now_ms() >= p->deadline) {
		probe_end(p, LNCH_PROBE_HUNG);
		return;
	}
	struct timeval tv = {0, PROBE_POLL_MS * 1000};
	evtimer_add(p->tick, &tv);
}

static void on_probe_exit(struct job *job, int status, void *arg)
{
	struct lnch_accel_probe *p = arg;
	if (!p->done) {
		bool ok = probe_output_ok(p->path);
		if (!ok)
			log_debug("kvm probe: qemu said: %s", job_output(job));
		probe_end(p, ok ? LNCH_PROBE_OK : LNCH_PROBE_FAILED);
	}
	/* The child is gone: report from the loop. */
	p->job = NULL;
	job_destroy(job);
	struct timeval now = {0, 0};
	evtimer_add(p->tick, &now);
}

void lnch_accel_probe_cancel(struct lnch_accel_probe *p)
{
	if (!p)
		return;
	if (p->job) {
		job_signal(p->job, SIGKILL);
		job_destroy(p->job); /* no longer watched: a zombie until we exit */
	}
	event_free(p->tick);
	if (p->path[0])
		unlink(p->path);
	free(p);
}

int lnch_accel_probe(struct event_base *base, const struct lnch_accel_probe_spec *spec,
		     lnch_accel_fn cb, void *arg, struct lnch_accel_probe **out)
{
	struct lnch_accel_probe *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (out)
		*out = NULL;
	p->base = base;
	p->mode = spec->mode;
	p->cb = cb;
	p->arg = arg;
	p->tick = evtimer_new(base, on_tick, p);
	if (!p->tick) {
		free(p);
		return -ENOMEM;
	}
	if (out)
		*out = p; /* valid from here until CB runs */
	struct timeval now = {0, 0};
	p->done = true;
	if (spec->mode == LNCH_ACCEL_WANT_TCG) {
		p->result = LNCH_PROBE_NOT_RUN;
		evtimer_add(p->tick, &now);
		return 0;
	}
	int kfd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kfd < 0) {
		p->result = LNCH_PROBE_NO_DEVICE;
		evtimer_add(p->tick, &now);
		return 0;
	}
	close(kfd);
	if (!spec->kernel || !*spec->kernel || access(spec->kernel, R_OK) < 0) {
		p->result = LNCH_PROBE_NO_KERNEL;
		evtimer_add(p->tick, &now);
		return 0;
	}
	p->done = false;

	snprintf(p->path, sizeof(p->path), "%s/kvm-probe-XXXXXX", spec->tmpdir);
	int fd = mkstemp(p->path);
	if (fd < 0) {
		int e = -errno;
		event_free(p->tick);
		free(p);
		if (out)
			*out = NULL;
		return e;
	}
	close(fd);
	char *esc = lnch_qemu_escape(p->path);
	char *chardev = esc ? util_strdup_printf("file,id=s0,path=%s", esc) : NULL;
	free(esc);
	/* No initrd, no root: a kernel that runs ends in "Kernel panic" at its root mount. */
	const char *argv[] = {spec->qemu,
			      "-accel",
			      "kvm",
			      "-machine",
			      "pc",
			      "-m",
			      "96",
			      "-nodefaults",
			      "-no-user-config",
			      "-display",
			      "none",
			      "-no-reboot",
			      "-kernel",
			      spec->kernel,
			      "-append",
			      "console=ttyS0 quiet panic=-1 nestor.accel_probe=1",
			      "-chardev",
			      chardev,
			      "-serial",
			      "chardev:s0",
			      NULL};
	struct job_spec js = {.argv = argv, .stdout_fd = -1, .stderr_fd = -2};
	p->job = chardev ? job_run(base, &js, on_probe_exit, p) : NULL;
	free(chardev);
	if (!p->job) {
		p->done = true;
		p->result = LNCH_PROBE_FAILED;
	}
	p->deadline = util_now_ms() + spec->timeout_ms;
	evtimer_add(p->tick, &now);
	return 0;
}

static void stat_text(const char *name, const char *path, char *out, size_t len)
{
	struct stat st;
	size_t n = strlen(out);
	if (!path || !*path || stat(path, &st) < 0) {
		snprintf(out + n, len - n, "%s%s=none", n ? " " : "", name);
		return;
	}
	snprintf(out + n, len - n, "%s%s=%s:%llx:%lld.%09ld", n ? " " : "", name, path,
		 S_ISCHR(st.st_mode) ? (unsigned long long)st.st_rdev
				     : (unsigned long long)st.st_size,
		 (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

void lnch_accel_evidence(const char *qemu, const char *kernel, char *out, size_t len)
{
	char found[4096];
	if (qemu && !strchr(qemu, '/')) {
		/* a bare name: the binary PATH gives */
		const char *path = getenv("PATH");
		found[0] = '\0';
		for (const char *d = path ? path : "/usr/bin"; *d && !found[0];) {
			size_t k = strcspn(d, ":");
			snprintf(found, sizeof(found), "%.*s/%s", (int)k, d, qemu);
			if (access(found, X_OK) < 0)
				found[0] = '\0';
			d += k + (d[k] == ':');
		}
		if (found[0])
			qemu = found;
	}
	out[0] = '\0';
	stat_text("qemu", qemu, out, len);
	stat_text("kernel", kernel, out, len);
	stat_text("kvm", "/dev/kvm", out, len);
}
