/*
 * QEMU argv construction from a profile: pure, no I/O.
 */
#include "argv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SANDBOX[] = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
			      "resourcecontrol=deny";

char *lnch_qemu_escape(const char *s)
{
	size_t n = strlen(s), commas = 0;
	for (size_t i = 0; i < n; i++)
		commas += s[i] == ',';
	char *o = malloc(n + commas + 1), *w = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		*w++ = s[i];
		if (s[i] == ',')
			*w++ = ',';
	}
	*w = '\0';
	return o;
}

static int push(struct lnch_argv *a, char *s)
{
	if (!s)
		return -ENOMEM;
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		char **v = realloc(a->v, cap * sizeof(*v));
		if (!v) {
			free(s);
			return -ENOMEM;
		}
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
	return 0;
}

__attribute__((format(printf, 2, 3))) static int pushf(struct lnch_argv *a, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	return push(a, r < 0 ? NULL : s);
}

static int push2(struct lnch_argv *a, const char *opt, const char *val)
{
	int r = push(a, strdup(opt));
	return r < 0 ? r : push(a, strdup(val));
}

void lnch_argv_free(struct lnch_argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	memset(a, 0, sizeof(*a));
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int machine_ok(const char *m)
{
	if (!m || !*m || strlen(m) > 64)
		return 0;
	for (const char *c = m; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
		      *c == '.' || *c == '_'))
			return 0;
	return 1;
}

int lnch_profile_check(const struct lnch_profile *p, char *err, size_t errlen)
{
	if (!machine_ok(p->machine))
		return bad(err, errlen, "machine type must be a pinned name like pc-i440fx-7.2");
	if (p->memory_mb < 16 || p->memory_mb > 65536)
		return bad(err, errlen, "memory %u MiB out of range 16..65536", p->memory_mb);
	if (p->cpus < 1 || p->cpus > 16)
		return bad(err, errlen, "cpus %u out of range 1..16", p->cpus);
	if (!p->disk || p->disk[0] != '/')
		return bad(err, errlen, "disk must be an absolute path");
	if ((p->initrd || p->append) && !p->kernel)
		return bad(err, errlen, "initrd and append need a kernel");
	if (p->kernel && p->kernel[0] != '/')
		return bad(err, errlen, "kernel must be an absolute path");
	if (p->initrd && p->initrd[0] != '/')
		return bad(err, errlen, "initrd must be an absolute path");
	if (p->guest_port > 65535)
		return bad(err, errlen, "guest port %u out of range", p->guest_port);
	if (p->guest_port && p->net != LNCH_NET_RESTRICTED)
		return bad(err, errlen, "a forwarded guest port needs restricted user networking");
	if (p->ready == LNCH_READY_SERIAL && (!p->ready_marker || !*p->ready_marker))
		return bad(err, errlen, "serial readiness needs a marker");
	if ((p->ready == LNCH_READY_TCP || p->ready == LNCH_READY_RDP) && !p->guest_port)
		return bad(err, errlen, "%s readiness needs a guest port",
			   p->ready == LNCH_READY_TCP ? "tcp" : "rdp");
	return 0;
}

int lnch_argv_build(const struct lnch_argv_opts *o, const struct lnch_profile *p,
		    const struct lnch_paths *paths, struct lnch_argv *out, char *err, size_t errlen)
{
	int r = lnch_profile_check(p, err, errlen);
	if (r < 0)
		return r;
	if (!paths->overlay || !paths->qmp || !paths->serial_log || (p->vnc && !paths->vnc) ||
	    (p->serial_probe && !paths->probe))
		return bad(err, errlen, "missing guest path");
	if (p->guest_port && !paths->host_port)
		return bad(err, errlen, "missing host port for the forward");

	memset(out, 0, sizeof(*out));
	struct lnch_argv *a = out;
	char *e_overlay = lnch_qemu_escape(paths->overlay);
	char *e_qmp = lnch_qemu_escape(paths->qmp);
	char *e_log = lnch_qemu_escape(paths->serial_log);
	char *e_vnc = paths->vnc ? lnch_qemu_escape(paths->vnc) : NULL;
	char *e_probe = paths->probe ? lnch_qemu_escape(paths->probe) : NULL;
	char *e_ram = paths->ram_file ? lnch_qemu_escape(paths->ram_file) : NULL;
	char *e_name = lnch_qemu_escape(o->name ? o->name : "guest");
	r = -ENOMEM;
	if (!e_overlay || !e_qmp || !e_log || (paths->vnc && !e_vnc) ||
	    (paths->probe && !e_probe) || (paths->ram_file && !e_ram) || !e_name)
		goto out;

	if ((r = push(a, strdup(o->qemu))) < 0 || (r = push2(a, "-name", e_name)) < 0 ||
	    (r = push(a, strdup("-nodefaults"))) < 0 ||
	    (r = push(a, strdup("-no-user-config"))) < 0 ||
	    (r = push(a, strdup("-no-reboot"))) < 0 ||
	    (r = push2(a, "-accel", o->accel == LNCH_ACCEL_KVM ? "kvm" : "tcg")) < 0)
		goto out;
	if (o->sandbox && (r = push2(a, "-sandbox", SANDBOX)) < 0)
		goto out;
	if (e_ram) {
		if ((r = push(a, strdup("-object"))) < 0 ||
		    (r = pushf(a, "memory-backend-file,id=pc.ram,size=%uM,mem-path=%s,share=%s",
			       p->memory_mb, e_ram, paths->ram_shared ? "on" : "off")) < 0 ||
		    (r = push(a, strdup("-machine"))) < 0 ||
		    (r = pushf(a, "%s,memory-backend=pc.ram", p->machine)) < 0)
			goto out;
	} else if ((r = push2(a, "-machine", p->machine)) < 0) {
		goto out;
	}
	if ((r = push(a, strdup("-m"))) < 0 || (r = pushf(a, "%u", p->memory_mb)) < 0 ||
	    (r = push(a, strdup("-smp"))) < 0 || (r = pushf(a, "%u", p->cpus)) < 0)
		goto out;
	if (p->kernel && (r = push2(a, "-kernel", p->kernel)) < 0)
		goto out;
	if (p->initrd && (r = push2(a, "-initrd", p->initrd)) < 0)
		goto out;
	if (p->append && (r = push2(a, "-append", p->append)) < 0)
		goto out;
	/* The overlay is the only writable disk; its backing file is opened read-only. */
	if ((r = push(a, strdup("-drive"))) < 0 ||
	    (r = pushf(a, "file=%s,format=qcow2,if=virtio,cache=writeback,discard=unmap",
		       e_overlay)) < 0)
		goto out;
	if (p->vnc) {
		if ((r = push2(a, "-vga", "std")) < 0 || (r = push(a, strdup("-vnc"))) < 0 ||
		    (r = pushf(a, "unix:%s", e_vnc)) < 0)
			goto out;
	} else if ((r = push2(a, "-vga", "none")) < 0) {
		goto out;
	}
	if ((r = push2(a, "-display", "none")) < 0 || (r = push(a, strdup("-chardev"))) < 0 ||
	    (r = pushf(a, "file,id=ser0,path=%s", e_log)) < 0 ||
	    (r = push2(a, "-serial", "chardev:ser0")) < 0)
		goto out;
	if (p->serial_probe &&
	    ((r = push(a, strdup("-chardev"))) < 0 ||
	     (r = pushf(a, "socket,id=ser1,path=%s,server=on,wait=off", e_probe)) < 0 ||
	     (r = push2(a, "-serial", "chardev:ser1")) < 0))
		goto out;
	if (p->net == LNCH_NET_RESTRICTED) {
		if ((r = push(a, strdup("-netdev"))) < 0)
			goto out;
		if (p->guest_port)
			r = pushf(a, "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%u-:%u",
				  paths->host_port, p->guest_port);
		else
			r = push(a, strdup("user,id=net0,restrict=on"));
		if (r < 0 || (r = push2(a, "-device", "virtio-net-pci,netdev=net0")) < 0)
			goto out;
	}
	if ((r = push(a, strdup("-qmp"))) < 0 ||
	    (r = pushf(a, "unix:%s,server=on,wait=off", e_qmp)) < 0)
		goto out;
	if (paths->incoming && (r = push2(a, "-incoming", "defer")) < 0)
		goto out;
	r = 0;
out:
	free(e_overlay);
	free(e_qmp);
	free(e_log);
	free(e_vnc);
	free(e_probe);
	free(e_ram);
	free(e_name);
	if (r < 0) {
		lnch_argv_free(out);
		if (r == -ENOMEM)
			bad(err, errlen, "out of memory");
	}
	return r;
}
