/*
 * Base image inspection. The parser is pure; img_inspect runs qemu-img and
 * sha256sum as children watched by the loop (hashing gigabytes must never
 * stall the broker).
 */
#include "image.h"
#include "job.h"
#include "util.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int img_info_parse(const char *text, struct img_info *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	json_tokener *tok = json_tokener_new_ex(16);
	json_object *o = tok ? json_tokener_parse_ex(tok, text, (int)strlen(text)) : NULL;
	if (tok)
		json_tokener_free(tok);
	json_object *v;
	int r = -EINVAL;
	if (!o || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "qemu-img info gave no JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(o, "format", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "qemu-img info: no format");
		goto out;
	}
	snprintf(out->format, sizeof(out->format), "%s", json_object_get_string(v));
	if (strcmp(out->format, "qcow2") != 0) {
		snprintf(err, errlen, "base image must be qcow2, not %s", out->format);
		goto out;
	}
	if (!json_object_object_get_ex(o, "virtual-size", &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) <= 0) {
		snprintf(err, errlen, "qemu-img info: no virtual size");
		goto out;
	}
	out->virtual_size = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "encrypted", &v) && json_object_get_boolean(v)) {
		out->encrypted = true;
		snprintf(err, errlen, "encrypted base images are not supported");
		goto out;
	}
	if (json_object_object_get_ex(o, "full-backing-filename", &v) ||
	    json_object_object_get_ex(o, "backing-filename", &v)) {
		out->has_backing = true;
		snprintf(out->backing, sizeof(out->backing), "%s", json_object_get_string(v));
	}
	r = 0;
out:
	json_object_put(o);
	return r;
}

struct inspect {
	struct event_base *base;
	char qemu_img[4096];
	char path[4096];
	char allow[4096];
	img_inspect_fn cb;
	void *arg;
	struct img_facts f;
	struct job *job;
};

static void done(struct inspect *in, int err, const char *msg)
{
	in->cb(err, err ? NULL : &in->f, msg, in->arg);
	free(in);
}

static void on_sum(struct job *job, int status, void *arg)
{
	struct inspect *in = arg;
	const char *out = job_output(job);
	char sum[65] = "";
	if (status == 0 && sscanf(out, "%64[0-9a-f]", sum) == 1 && strlen(sum) == 64)
		memcpy(in->f.sha256, sum, 65);
	job_destroy(job);
	if (!in->f.sha256[0]) {
		done(in, -EIO, "sha256sum failed");
		return;
	}
	done(in, 0, NULL);
}

static void on_info(struct job *job, int status, void *arg)
{
	struct inspect *in = arg;
	char err[512];
	char *out = strdup(job_output(job));
	job_destroy(job);
	if (!out) {
		done(in, -ENOMEM, "out of memory");
		return;
	}
	if (status != 0) {
		char *nl = strchr(out, '\n');
		if (nl)
			*nl = '\0';
		snprintf(err, sizeof(err), "qemu-img info failed: %s", out);
		free(out);
		done(in, -EINVAL, err);
		return;
	}
	int r = img_info_parse(out, &in->f.info, err, sizeof(err));
	free(out);
	if (r < 0) {
		done(in, r, err);
		return;
	}
	if (in->f.info.has_backing) {
		char *real = realpath(in->f.info.backing, NULL);
		size_t al = strlen(in->allow);
		bool ok = real && al && strncmp(real, in->allow, al) == 0 && real[al] == '/';
		free(real);
		if (!ok) {
			snprintf(err, sizeof(err),
				 "base image has a backing file (%.300s) outside the image store",
				 in->f.info.backing);
			done(in, -EINVAL, err);
			return;
		}
	}
	const char *argv[] = {"/usr/bin/sha256sum", "--", in->path, NULL};
	struct job_spec spec = {.argv = argv, .stdout_fd = -1, .stderr_fd = -2};
	in->job = job_run(in->base, &spec, on_sum, in);
	if (!in->job)
		done(in, -errno, "cannot run sha256sum");
}

int img_inspect(struct event_base *base, const char *qemu_img, const char *path,
		const char *allow_dir, img_inspect_fn cb, void *arg)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	struct inspect *in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->base = base;
	in->cb = cb;
	in->arg = arg;
	in->f.size = (uint64_t)st.st_size;
	in->f.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	snprintf(in->qemu_img, sizeof(in->qemu_img), "%s", qemu_img);
	snprintf(in->path, sizeof(in->path), "%s", path);
	snprintf(in->allow, sizeof(in->allow), "%s", allow_dir ? allow_dir : "");
	/* -U: the file may be in use by running guests (read-only) */
	const char *argv[] = {in->qemu_img, "info", "-U", "--output=json", in->path, NULL};
	struct job_spec spec = {.argv = argv, .stdout_fd = -1, .stderr_fd = -2};
	in->job = job_run(base, &spec, on_info, in);
	if (!in->job) {
		int e = -errno;
		free(in);
		return e;
	}
	return 0;
}

int img_verify_unchanged(const char *path, uint64_t size, int64_t mtime_ns, char *err,
			 size_t errlen)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	int64_t m = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	if ((uint64_t)st.st_size != size || m != mtime_ns) {
		snprintf(err, errlen, "%s was modified after it was registered", path);
		return -ESTALE;
	}
	return 0;
}
