/*
 * The launcher against real QEMU guests (TCG unless KVM really works) built
 * from the test guest: launch -> ready -> QMP -> serial probe -> stop; crash;
 * start timeout; base image untouched; four guests from one base; the
 * accelerator probe; rdp readiness through a forward on 127.0.0.1 (the rdp
 * variant is ready when its server answers X.224; a guest whose forward
 * has nothing behind it never is, though slirp accepts the TCP connection).
 */
#include "nestor-config.h"
#include "accel.h"
#include "check.h"
#include "launcher.h"
#include "log.h"
#include "qmp_client.h"
#include "testenv.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct watch {
	enum lnch_state last;
	enum lnch_end why;
	bool ready, stopped, starting;
	int64_t t0, t_ready;
	char detail[512];
};

static void on_state(struct lnch_guest *g, enum lnch_state st, enum lnch_end why,
		     const char *detail, void *arg)
{
	struct watch *w = arg;
	w->last = st;
	if (st == LNCH_STARTING)
		w->starting = true;
	if (st == LNCH_READY) {
		w->ready = true;
		w->t_ready = util_now_ms();
	}
	if (st == LNCH_STOPPED) {
		w->stopped = true;
		w->why = why;
		snprintf(w->detail, sizeof(w->detail), "%s", detail);
	}
}

static const struct lnch_guest_cbs cbs = {.state = on_state};
static struct event_base *base;
static struct lnch_config cfg;
static char *scratch;

static struct lnch_guest *start(const char *id, const struct lnch_profile *p, struct watch *w)
{
	char err[256] = "";
	memset(w, 0, sizeof(*w));
	w->t0 = util_now_ms();
	struct lnch_guest *g = lnch_guest_start(base, &cfg, id, p, NULL, &cbs, w, err, sizeof(err));
	CHECK_MSG(g != NULL, "start %s: %s", id, err);
	return g;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

struct qres {
	bool done;
	int err;
	char status[32];
};

static void on_status(struct qmp_client *c, int err, json_object *res, const char *desc, void *arg)
{
	struct qres *q = arg;
	json_object *s;
	q->err = err;
	if (!err && json_object_object_get_ex(res, "status", &s))
		snprintf(q->status, sizeof(q->status), "%s", json_object_get_string(s));
	q->done = true;
}

struct pres {
	bool done;
	int err;
};

static void on_ping(struct lnch_guest *g, int err, void *arg)
{
	struct pres *p = arg;
	p->err = err;
	p->done = true;
}

static void test_lifecycle(const struct lnch_profile *p)
{
	struct watch w;
	struct lnch_guest *g = start("life", p, &w);
	if (!g)
		return;
	CHECK(testenv_run_until(base, &w.ready, 60000));
	fprintf(stderr, "launch to ready: %.2f s\n", (double)(w.t_ready - w.t0) / 1000);
	char overlay[4096], qmp[256], vnc[256];
	snprintf(overlay, sizeof(overlay), "%s", lnch_guest_overlay_path(g));
	snprintf(qmp, sizeof(qmp), "%s", lnch_guest_qmp_path(g));
	snprintf(vnc, sizeof(vnc), "%s", lnch_guest_vnc_path(g));
	CHECK(exists(overlay));
	struct stat st;
	CHECK(stat(overlay, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(qmp, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK(stat(vnc, &st) == 0 && S_ISSOCK(st.st_mode));
	/* the guest's run dir is private */
	char rundir[4096];
	snprintf(rundir, sizeof(rundir), "%s/life", cfg.run_dir);
	CHECK(stat(rundir, &st) == 0 && (st.st_mode & 0777) == 0700);

	struct qres q = {0};
	struct qmp_client *c = lnch_guest_qmp(g);
	CHECK(c != NULL);
	if (c) {
		CHECK(qmp_client_call(c, "query-status", NULL, -1, 5000, on_status, &q) == 0);
		CHECK(testenv_run_until(base, &q.done, 10000));
		CHECK(q.err == 0);
		CHECK_STR(q.status, "running");
	}

	struct pres pr = {0};
	CHECK(lnch_guest_ping(g, "tok123", 5000, on_ping, &pr) == 0);
	CHECK(testenv_run_until(base, &pr.done, 10000));
	CHECK_MSG(pr.err == 0, "ping: %d", pr.err);
	CHECK(lnch_guest_ping(g, "bad token", 5000, on_ping, &pr) == -EINVAL);

	/* The guest wrote to its disk: that went to the overlay. */
	char *serial = testenv_slurp(lnch_guest_serial_path(g), NULL);
	CHECK(serial && strstr(serial, "NESTOR-DISK-WRITTEN"));
	free(serial);

	lnch_guest_stop(g, 1000); /* the test guest ignores ACPI: quit follows */
	CHECK(testenv_run_until(base, &w.stopped, 20000));
	CHECK_MSG(w.why == LNCH_END_STOPPED, "why=%s (%s)", lnch_end_name(w.why), w.detail);
	CHECK(!exists(overlay));
	CHECK(!exists(qmp));
	CHECK(!exists(rundir));
	lnch_guest_destroy(g);
}

static void test_crash(const struct lnch_profile *p)
{
	struct watch w;
	struct lnch_guest *g = start("crash", p, &w);
	if (!g)
		return;
	CHECK(testenv_run_until(base, &w.ready, 60000));
	char overlay[4096];
	snprintf(overlay, sizeof(overlay), "%s", lnch_guest_overlay_path(g));
	CHECK(exists(overlay));
	CHECK(kill(lnch_guest_pid(g), SIGKILL) == 0);
	CHECK(testenv_run_until(base, &w.stopped, 10000));
	CHECK_MSG(w.why == LNCH_END_CRASHED, "why=%s", lnch_end_name(w.why));
	CHECK_MSG(strstr(w.detail, "signal 9") != NULL, "detail: %s", w.detail);
	CHECK(!exists(overlay));
	/* reaped: no zombie left */
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
	lnch_guest_destroy(g);
}

static void test_timeout(const struct lnch_profile *p0)
{
	struct lnch_profile p = *p0;
	p.ready_marker = "A-MARKER-THAT-NEVER-COMES";
	struct lnch_config saved = cfg;
	cfg.start_timeout_ms = 2500;
	struct watch w;
	struct lnch_guest *g = start("slow", &p, &w);
	cfg = saved;
	if (!g)
		return;
	CHECK(testenv_run_until(base, &w.stopped, 20000));
	CHECK(!w.ready);
	CHECK_MSG(w.why == LNCH_END_START_TIMEOUT, "why=%s", lnch_end_name(w.why));
	CHECK(!exists(lnch_guest_overlay_path(g)));
	lnch_guest_destroy(g);
}

static void test_bad_start(const struct lnch_profile *p0)
{
	/* A backing file that is not there: refused at once with the path named. */
	struct lnch_profile p = *p0;
	p.disk = "/nonexistent/base.qcow2";
	char err[256] = "";
	struct watch w = {0};
	struct lnch_guest *g =
	    lnch_guest_start(base, &cfg, "bad", &p, NULL, &cbs, &w, err, sizeof(err));
	CHECK(g == NULL);
	CHECK_MSG(strstr(err, "/nonexistent/base.qcow2") != NULL, "err: %s", err);
	/* A backing file that is not qcow2: qemu-img fails, reported as start failed. */
	char junk[4096];
	snprintf(junk, sizeof(junk), "%s/junk.qcow2", scratch);
	FILE *f = fopen(junk, "w");
	fputs("not an image", f);
	fclose(f);
	p.disk = junk;
	g = start("junk", &p, &w);
	if (g) {
		CHECK(testenv_run_until(base, &w.stopped, 20000));
		CHECK_MSG(w.why == LNCH_END_START_FAILED, "why=%s", lnch_end_name(w.why));
		CHECK_MSG(strstr(w.detail, "qemu-img") != NULL, "detail: %s", w.detail);
		lnch_guest_destroy(g);
	}
	/* An id that could escape the run dir is refused. */
	g = lnch_guest_start(base, &cfg, "../x", p0, NULL, &cbs, &w, err, sizeof(err));
	CHECK(g == NULL);
}

static void test_four(const struct lnch_profile *p)
{
	struct watch w[4];
	struct lnch_guest *g[4];
	char id[16];
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof(id), "four%d", i);
		g[i] = start(id, p, &w[i]);
	}
	int64_t t0 = util_now_ms();
	for (int i = 0; i < 4; i++)
		CHECK(g[i] && testenv_run_until(base, &w[i].ready, 90000));
	fprintf(stderr, "4 guests at once, all ready: %.2f s\n",
		(double)(util_now_ms() - t0) / 1000);
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			CHECK(g[i] && g[j] &&
			      strcmp(lnch_guest_overlay_path(g[i]),
				     lnch_guest_overlay_path(g[j])) != 0);
	for (int i = 0; i < 4; i++)
		if (g[i])
			lnch_guest_stop(g[i], 0);
	for (int i = 0; i < 4; i++) {
		if (!g[i])
			continue;
		CHECK(testenv_run_until(base, &w[i].stopped, 20000));
		CHECK(w[i].why == LNCH_END_STOPPED);
		CHECK(!exists(lnch_guest_overlay_path(g[i])));
		lnch_guest_destroy(g[i]);
	}
}

struct probe_res {
	bool done;
	struct lnch_accel_choice c;
};

static void on_probe(struct lnch_accel_choice c, void *arg)
{
	struct probe_res *r = arg;
	r->c = c;
	r->done = true;
}

static void test_rdp_ready(const struct lnch_profile *console)
{
	const char *gdir = testenv_guest_dir();
	char kernel[600], initrd[600], disk[600];
	snprintf(kernel, sizeof(kernel), "%s/rdp-vmlinuz", gdir);
	snprintf(initrd, sizeof(initrd), "%s/rdp-initrd.gz", gdir);
	snprintf(disk, sizeof(disk), "%s/rdp-base.qcow2", gdir);
	struct lnch_profile p = *console;
	p.kernel = kernel;
	p.initrd = initrd;
	p.disk = disk;
	p.memory_mb = 384;
	p.net = LNCH_NET_RESTRICTED;
	p.guest_port = 3389;
	p.ready = LNCH_READY_RDP;
	struct watch w;
	/* a cold boot loading ~100 libraries under TCG: 10 s here, more on a busy host */
	struct lnch_config saved0 = cfg;
	cfg.start_timeout_ms = 150000;
	struct lnch_guest *g = start("rdp", &p, &w);
	cfg = saved0;
	if (!g)
		return;
	unsigned port = lnch_guest_host_port(g);
	CHECK(port > 1024 && port < 65536);
	bool ready = testenv_run_until(base, &w.ready, 150000);
	CHECK(ready);
	if (!ready) { /* what the guest said */
		char *log = testenv_slurp(lnch_guest_serial_path(g), NULL);
		fprintf(stderr, "rdp guest serial log:\n%s\n", log ? log : "(none)");
		free(log);
	}
	fprintf(stderr, "rdp guest ready in %.2f s on 127.0.0.1:%u\n",
		(double)(w.t_ready - w.t0) / 1000.0, port);
	char *serial = testenv_slurp(lnch_guest_serial_path(g), NULL);
	CHECK_MSG(serial && strstr(serial, "RDPSRV LISTEN 3389"), "the server is up in the guest");
	free(serial);
	lnch_guest_stop(g, 0);
	CHECK(testenv_run_until(base, &w.stopped, 20000));
	lnch_guest_destroy(g);

	/* the console guest behind the same forward: TCP accepted by slirp, no RDP */
	struct lnch_profile q = *console;
	q.net = LNCH_NET_RESTRICTED;
	q.guest_port = 3389;
	q.ready = LNCH_READY_RDP;
	struct lnch_config saved = cfg;
	cfg.start_timeout_ms = 12000;
	g = start("nordp", &q, &w);
	cfg = saved;
	if (!g)
		return;
	CHECK(testenv_run_until(base, &w.stopped, 40000));
	CHECK(!w.ready);
	CHECK_MSG(w.why == LNCH_END_START_TIMEOUT, "why=%s", lnch_end_name(w.why));
	lnch_guest_destroy(g);
}

int main(void)
{
	log_init("test_launcher", getenv("NESTOR_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	base = event_base_new();
	scratch = testenv_scratch("launcher");
	char *run = util_strdup_printf("%s/run", scratch);
	char *ovl = util_strdup_printf("%s/overlays", scratch);
	util_mkdir_p(run, 0700);
	util_mkdir_p(ovl, 0700);

	/* The probe (the test guest's kernel) decides; whatever it picks must then really
	 * run guests. */
	struct lnch_profile tp;
	testenv_profile(&tp);
	struct lnch_accel_probe_spec ps = {.qemu = NESTOR_QEMU,
					   .tmpdir = scratch,
					   .kernel = tp.kernel,
					   .mode = LNCH_ACCEL_AUTO,
					   .timeout_ms = 15000};
	struct probe_res pr = {0};
	CHECK(lnch_accel_probe(base, &ps, on_probe, &pr, NULL) == 0);
	CHECK(testenv_run_until(base, &pr.done, 30000));
	CHECK(pr.c.err == 0);
	fprintf(stderr, "accelerator: %s\n", pr.c.reason);

	cfg = (struct lnch_config){
	    .qemu = NESTOR_QEMU,
	    .qemu_img = NESTOR_QEMU_IMG,
	    .run_dir = run,
	    .overlay_dir = ovl,
	    .accel = pr.c.accel,
	    .sandbox = true,
	    .start_timeout_ms = 60000,
	    .stop_timeout_ms = 1000,
	};
	struct lnch_profile p;
	testenv_profile(&p);

	/* The base is read-only and must stay byte-identical. */
	char base_copy[4096];
	snprintf(base_copy, sizeof(base_copy), "%s/base.qcow2", scratch);
	size_t blen = 0;
	char *before = testenv_slurp(p.disk, &blen);
	CHECK(before != NULL);
	FILE *f = fopen(base_copy, "wb");
	fwrite(before, 1, blen, f);
	fclose(f);
	chmod(base_copy, 0444);
	p.disk = base_copy;

	test_lifecycle(&p);
	test_crash(&p);
	test_timeout(&p);
	test_bad_start(&p);
	test_four(&p);
	test_rdp_ready(&p);

	size_t alen = 0;
	char *after = testenv_slurp(base_copy, &alen);
	CHECK(after && alen == blen && memcmp(before, after, blen) == 0);
	struct stat st;
	CHECK(stat(base_copy, &st) == 0 && (st.st_mode & 0222) == 0);
	free(before);
	free(after);

	/* Nothing left behind in the run and overlay dirs. */
	CHECK(rmdir(run) == 0);
	CHECK(rmdir(ovl) == 0);
	testenv_rmtree(scratch);
	free(run);
	free(ovl);
	free(scratch);
	event_base_free(base);
	return check_done("test_launcher");
}
