/*
 * Template builds run through the loop: a guest (launcher) with share=on
 * RAM, then QMP: raise migration bandwidth, x-ignore-shared on, stop,
 * migrate to an fd we pass (QEMU's sandbox forbids exec:), poll until
 * completed, quit. Small file operations only (mkdir, chmod, meta.json).
 */
#include "template.h"
#include "log.h"
#include "qmp_client.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QMP_MS 10000
#define MIGRATE_MAX_MS 120000

struct img_tbuild {
	struct event_base *base;
	struct lnch_guest *g;
	char dir[4096];
	struct img_template_meta meta;
	img_template_fn cb;
	void *arg;
	int state_fd;
	struct event *poll;
	int64_t t0, migrate_deadline;
	bool saved;
	int code; /* the error CB gets when err is set (default -EIO) */
	int stage;
	char err[512];
};

static void build_fail(struct img_tbuild *b, const char *msg)
{
	if (!b->err[0])
		snprintf(b->err, sizeof(b->err), "%s", msg);
	log_warn("template %s: %s", b->dir, b->err);
	lnch_guest_stop(b->g, 0);
}

static int write_meta(struct img_tbuild *b)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "qemu_version", json_object_new_string(b->meta.qemu_version));
	json_object_object_add(o, "machine", json_object_new_string(b->meta.machine));
	json_object_object_add(o, "fingerprint", json_object_new_string(b->meta.fingerprint));
	json_object_object_add(o, "memory_mb", json_object_new_int64(b->meta.memory_mb));
	json_object_object_add(o, "created", json_object_new_int64(b->meta.created));
	json_object_object_add(o, "build_s", json_object_new_double(b->meta.build_s));
	char path[4200];
	snprintf(path, sizeof(path), "%s/meta.json", b->dir);
	int r = json_object_to_file_ext(path, o, JSON_C_TO_STRING_PRETTY) == 0 ? 0 : -EIO;
	json_object_put(o);
	return r;
}

static void on_guest(struct lnch_guest *g, enum lnch_state st, enum lnch_end why,
		     const char *detail, void *arg);

static void query_migrate(struct img_tbuild *b);

static void on_migrate_status(struct qmp_client *c, int err, json_object *res, const char *desc,
			      void *arg)
{
	struct img_tbuild *b = arg;
	json_object *s;
	if (err || !json_object_object_get_ex(res, "status", &s)) {
		build_fail(b, desc ? desc : "query-migrate failed");
		return;
	}
	const char *st = json_object_get_string(s);
	if (strcmp(st, "completed") == 0) {
		b->saved = true;
		close(b->state_fd);
		b->state_fd = -1;
		lnch_guest_stop(b->g, 0); /* quit: the RAM file must never change again */
		return;
	}
	if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
		json_object *e;
		char msg[300];
		snprintf(msg, sizeof(msg), "migration %s: %s", st,
			 json_object_object_get_ex(res, "error-desc", &e)
			     ? json_object_get_string(e)
			     : "no detail");
		build_fail(b, msg);
		return;
	}
	if (util_now_ms() > b->migrate_deadline) {
		build_fail(b, "saving the template state took too long");
		return;
	}
	struct timeval tv = {0, 50000};
	evtimer_add(b->poll, &tv);
}

static void query_migrate(struct img_tbuild *b)
{
	struct qmp_client *c = lnch_guest_qmp(b->g);
	if (!c || qmp_client_call(c, "query-migrate", NULL, -1, QMP_MS, on_migrate_status, b) < 0)
		build_fail(b, "cannot send query-migrate");
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	query_migrate(arg);
}

/* The save sequence: each QMP call's success runs the next stage. */
static void next_stage(struct img_tbuild *b);

static void on_step(struct qmp_client *c, int err, json_object *res, const char *desc, void *arg)
{
	struct img_tbuild *b = arg;
	if (err) {
		char msg[300];
		snprintf(msg, sizeof(msg), "QMP stage %d failed: %s", b->stage,
			 desc ? desc : strerror(-err));
		build_fail(b, msg);
		return;
	}
	b->stage++;
	next_stage(b);
}

static void next_stage(struct img_tbuild *b)
{
	struct qmp_client *c = lnch_guest_qmp(b->g);
	json_object *a = NULL;
	const char *cmd = NULL;
	int fd = -1;
	if (!c) {
		build_fail(b, "QMP went away");
		return;
	}
	switch (b->stage) {
	case 0: /* the default 128 MiB/s would make saving RAM-sized state slow */
		cmd = "migrate-set-parameters";
		a = json_object_new_object();
		json_object_object_add(a, "max-bandwidth", json_object_new_int64(8589934592LL));
		break;
	case 1: {
		cmd = "migrate-set-capabilities";
		json_object *cap = json_object_new_object();
		json_object_object_add(cap, "capability",
				       json_object_new_string("x-ignore-shared"));
		json_object_object_add(cap, "state", json_object_new_boolean(1));
		json_object *caps = json_object_new_array();
		json_object_array_add(caps, cap);
		a = json_object_new_object();
		json_object_object_add(a, "capabilities", caps);
		break;
	}
	case 2:
		cmd = "stop";
		break;
	case 3: {
		char path[4200];
		snprintf(path, sizeof(path), "%s/state", b->dir);
		b->state_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (b->state_fd < 0) {
			build_fail(b, "cannot create the state file");
			return;
		}
		cmd = "getfd";
		fd = b->state_fd;
		a = json_object_new_object();
		json_object_object_add(a, "fdname", json_object_new_string("nestor-tpl"));
		break;
	}
	case 4:
		cmd = "migrate";
		a = json_object_new_object();
		json_object_object_add(a, "uri", json_object_new_string("fd:nestor-tpl"));
		break;
	default:
		b->migrate_deadline = util_now_ms() + MIGRATE_MAX_MS;
		query_migrate(b);
		return;
	}
	if (qmp_client_call(c, cmd, a, fd, QMP_MS, on_step, b) < 0)
		build_fail(b, "cannot send a QMP command");
}

static void on_guest(struct lnch_guest *g, enum lnch_state st, enum lnch_end why,
		     const char *detail, void *arg)
{
	struct img_tbuild *b = arg;
	if (st == LNCH_READY) {
		log_info("template %s: guest ready after %.2f s, saving", b->dir,
			 (double)(util_now_ms() - b->t0) / 1000.0);
		next_stage(b);
		return;
	}
	if (st != LNCH_STOPPED)
		return;
	lnch_guest_destroy(g);
	b->g = NULL;
	if (b->state_fd >= 0)
		close(b->state_fd);
	if (!b->saved && !b->err[0])
		snprintf(b->err, sizeof(b->err),
			 "template guest stopped before it was saved: %s%s%s", lnch_end_name(why),
			 detail && *detail ? ": " : "", detail ? detail : "");
	if (!b->saved && why == LNCH_END_START_TIMEOUT && !b->code)
		b->code = -ETIMEDOUT;
	int err = b->err[0] ? (b->code ? b->code : -EIO) : 0;
	if (!err) {
		/* Frozen: clones depend on these never changing. */
		static const char *const files[] = {"disk.qcow2", "ram", "state"};
		for (unsigned i = 0; i < 3 && !err; i++) {
			char path[4200];
			snprintf(path, sizeof(path), "%s/%s", b->dir, files[i]);
			if (chmod(path, 0444) < 0) {
				snprintf(b->err, sizeof(b->err), "cannot freeze %.400s", path);
				err = -EIO;
			}
		}
		b->meta.build_s = (double)(util_now_ms() - b->t0) / 1000.0;
		if (!err && write_meta(b) < 0) {
			snprintf(b->err, sizeof(b->err), "cannot write meta.json");
			err = -EIO;
		}
	}
	if (err) {
		char path[4200];
		static const char *const files[] = {"disk.qcow2", "ram", "state", "meta.json"};
		for (unsigned i = 0; i < 4; i++) {
			snprintf(path, sizeof(path), "%s/%s", b->dir, files[i]);
			unlink(path);
		}
		rmdir(b->dir);
	} else {
		log_info("template %s saved in %.2f s", b->dir, b->meta.build_s);
	}
	event_free(b->poll);
	img_template_fn cb = b->cb;
	void *cbarg = b->arg;
	struct img_template_meta meta = b->meta;
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", b->err);
	free(b);
	cb(err, err ? msg : NULL, err ? NULL : &meta, cbarg);
}

static const struct lnch_guest_cbs build_cbs = {.state = on_guest};

void img_template_cancel(struct img_tbuild *b)
{
	if (!b || !b->g)
		return;
	if (!b->code)
		b->code = -ECANCELED;
	build_fail(b, "cancelled");
}

void img_template_destroy(struct img_tbuild *b)
{
	if (!b)
		return;
	lnch_guest_destroy(b->g);
	if (b->state_fd >= 0)
		close(b->state_fd);
	if (b->poll)
		event_free(b->poll);
	static const char *const files[] = {"disk.qcow2", "ram", "state", "meta.json"};
	for (unsigned i = 0; i < 4; i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", b->dir, files[i]);
		unlink(path);
	}
	rmdir(b->dir);
	free(b);
}

struct img_tbuild *img_template_build(struct event_base *base, const struct lnch_config *cfg,
				      const char *id, const struct lnch_profile *profile,
				      const char *dir, const char *qemu_version, img_template_fn cb,
				      void *arg, char *err, size_t errlen)
{
	if (!dir || !profile || !cfg) {
		snprintf(err, errlen, "template build without a directory or profile");
		return NULL;
	}
	if (mkdir(dir, 0700) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return NULL;
	}
	if (cfg->uid && chown(dir, cfg->uid, cfg->gid) < 0) {
		snprintf(err, errlen, "cannot chown %s: %s", dir, strerror(errno));
		rmdir(dir);
		return NULL;
	}
	struct img_tbuild *b = calloc(1, sizeof(*b));
	if (!b) {
		rmdir(dir);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->base = base;
	b->cb = cb;
	b->arg = arg;
	b->state_fd = -1;
	b->t0 = util_now_ms();
	snprintf(b->dir, sizeof(b->dir), "%s", dir);
	snprintf(b->meta.qemu_version, sizeof(b->meta.qemu_version), "%s", qemu_version);
	snprintf(b->meta.machine, sizeof(b->meta.machine), "%s", profile->machine);
	lnch_fingerprint(cfg, profile, b->meta.fingerprint);
	b->meta.memory_mb = profile->memory_mb;
	b->meta.created = util_wall_s();
	b->poll = evtimer_new(base, on_poll, b);
	char disk[4200], ram[4200];
	snprintf(disk, sizeof(disk), "%s/disk.qcow2", dir);
	snprintf(ram, sizeof(ram), "%s/ram", dir);
	struct lnch_start_opts o = {
	    .ram_file = ram, .share_ram = true, .overlay = disk, .keep_overlay = true};
	b->g = b->poll ? lnch_guest_start(base, cfg, id, profile, &o, &build_cbs, b, err, errlen)
		       : NULL;
	if (!b->g) {
		if (b->poll)
			event_free(b->poll);
		free(b);
		rmdir(dir);
		return NULL;
	}
	return b;
}

int img_template_meta_read(const char *dir, struct img_template_meta *m)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/meta.json", dir);
	json_object *o = json_object_from_file(path), *v;
	if (!o)
		return -ENOENT;
	memset(m, 0, sizeof(*m));
	if (json_object_object_get_ex(o, "qemu_version", &v))
		snprintf(m->qemu_version, sizeof(m->qemu_version), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "machine", &v))
		snprintf(m->machine, sizeof(m->machine), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "fingerprint", &v))
		snprintf(m->fingerprint, sizeof(m->fingerprint), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "memory_mb", &v))
		m->memory_mb = (unsigned)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "created", &v))
		m->created = json_object_get_int64(v);
	if (json_object_object_get_ex(o, "build_s", &v))
		m->build_s = json_object_get_double(v);
	json_object_put(o);
	return 0;
}

bool img_template_usable(const char *dir, const struct lnch_config *cfg,
			 const struct lnch_profile *profile, const char *qemu_version, char *why,
			 size_t whylen)
{
	struct img_template_meta m;
	if (!dir || !*dir || img_template_meta_read(dir, &m) < 0) {
		snprintf(why, whylen, "no template");
		return false;
	}
	static const char *const files[] = {"disk.qcow2", "ram", "state"};
	for (unsigned i = 0; i < 3; i++) {
		char path[4200];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (stat(path, &st) < 0 || (st.st_mode & 0222)) {
			snprintf(why, whylen, "template file %s is missing or writable", files[i]);
			return false;
		}
	}
	if (strcmp(m.qemu_version, qemu_version) != 0) {
		snprintf(why, whylen, "template was saved by %s, this is %s", m.qemu_version,
			 qemu_version);
		return false;
	}
	char fp[17];
	lnch_fingerprint(cfg, profile, fp);
	if (strcmp(fp, m.fingerprint) != 0) {
		snprintf(why, whylen, "the QEMU command line changed since the template was saved");
		return false;
	}
	return true;
}

void img_template_clone_opts(const char *dir, struct lnch_start_opts *o, char buf[3][4200])
{
	snprintf(buf[0], 4200, "%s/disk.qcow2", dir);
	snprintf(buf[1], 4200, "%s/ram", dir);
	snprintf(buf[2], 4200, "%s/state", dir);
	o->backing = buf[0];
	o->ram_file = buf[1];
	o->state_file = buf[2];
}
