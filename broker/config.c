/*
 * Configuration parsing: pure over a string (brk_config_parse), plus a file
 * loader. inih's handler does not see line numbers, so our reader counts
 * the lines it hands over.
 */
#include "config.h"
#include "util.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void brk_config_defaults(struct brk_config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->state_dir, "/var/lib/nestor");
	strcpy(c->run_dir, "/run/nestor");
	strcpy(c->pam_service, "nestor");
	strcpy(c->qemu, "/usr/bin/qemu-system-x86_64");
	strcpy(c->qemu_img, "/usr/bin/qemu-img");
	strcpy(c->accel, "auto");
	strcpy(c->log_level, "info");
	c->sandbox = true;
	c->auto_template = true;
	c->auth_max_failures = 5;
	c->auth_window = 300;
	c->auth_lockout = 60;
	c->timeouts = (struct brk_timeouts){
		.queue_wait = 600,
		.start = 300,
		.keepalive = 900,
		.idle = 4 * 3600,
		.max_lifetime = 12 * 3600,
		.stop_grace = 20,
	};
	c->max_starting = -1;
	c->user_max_sessions = 2;
}

struct parse {
	struct brk_config *c;
	const char *name;
	const char *text;
	size_t pos;
	int line;
	char *err;
	size_t errlen;
	int failed;
	int fail_line;
};

static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	if (!p->text[p->pos])
		return NULL;
	const char *s = p->text + p->pos;
	const char *nl = strchr(s, '\n');
	size_t n = nl ? (size_t)(nl - s) + 1 : strlen(s);
	if (n >= (size_t)num)
		n = (size_t)num - 1; /* inih asks again for the rest */
	memcpy(str, s, n);
	str[n] = '\0';
	p->pos += n;
	if (n > 0 && str[n - 1] == '\n')
		p->line++;
	return str;
}

static int set_str(char *dst, size_t len, const char *v)
{
	if (strlen(v) >= len)
		return -ENAMETOOLONG;
	strcpy(dst, v);
	return 0;
}

static int set_path(char *dst, size_t len, const char *v)
{
	if (v[0] != '/')
		return -EINVAL;
	return set_str(dst, len, v);
}

static int set_uint(unsigned *dst, const char *v, unsigned max)
{
	char *end;
	errno = 0;
	if (!*v || *v == '-')
		return -EINVAL;
	unsigned long x = strtoul(v, &end, 10);
	if (errno || *end || x > max)
		return -EINVAL;
	*dst = (unsigned)x;
	return 0;
}

static int set_bool(bool *dst, const char *v)
{
	if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
		*dst = true;
	else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
		*dst = false;
	else
		return -EINVAL;
	return 0;
}

#define DAY (24 * 3600U)
#define IS(sec, key) (strcmp(section, sec) == 0 && strcmp(name, key) == 0)

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	struct brk_config *c = p->c;
	int r = -ENOENT;
	const char *want = "";
	if (IS("nestord", "state_dir"))
		r = set_path(c->state_dir, sizeof(c->state_dir), value), want = "an absolute path";
	else if (IS("nestord", "run_dir"))
		r = set_path(c->run_dir, sizeof(c->run_dir), value), want = "an absolute path";
	else if (IS("nestord", "overlay_dir"))
		r = set_path(c->overlay_dir, sizeof(c->overlay_dir), value),
		want = "an absolute path";
	else if (IS("nestord", "api_socket"))
		r = set_path(c->api_socket, sizeof(c->api_socket), value), want = "an absolute path";
	else if (IS("nestord", "api_group"))
		r = set_str(c->api_group, sizeof(c->api_group), value), want = "a group name";
	else if (IS("nestord", "pam_service"))
		r = util_name_valid(value) ? set_str(c->pam_service, sizeof(c->pam_service), value)
					   : -EINVAL,
		want = "a PAM service name";
	else if (IS("nestord", "qemu"))
		r = set_path(c->qemu, sizeof(c->qemu), value), want = "an absolute path";
	else if (IS("nestord", "qemu_img"))
		r = set_path(c->qemu_img, sizeof(c->qemu_img), value), want = "an absolute path";
	else if (IS("nestord", "accel"))
		r = (!strcmp(value, "auto") || !strcmp(value, "kvm") || !strcmp(value, "tcg"))
			    ? set_str(c->accel, sizeof(c->accel), value)
			    : -EINVAL,
		want = "auto, kvm or tcg";
	else if (IS("nestord", "qemu_user"))
		r = set_str(c->qemu_user, sizeof(c->qemu_user), value), want = "a user name";
	else if (IS("nestord", "sandbox"))
		r = set_bool(&c->sandbox, value), want = "true or false";
	else if (IS("nestord", "log_level"))
		r = (!strcmp(value, "err") || !strcmp(value, "warn") || !strcmp(value, "info") ||
		     !strcmp(value, "debug"))
			    ? set_str(c->log_level, sizeof(c->log_level), value)
			    : -EINVAL,
		want = "err, warn, info or debug";
	else if (IS("images", "image_dir"))
		r = set_path(c->image_dir, sizeof(c->image_dir), value), want = "an absolute path";
	else if (IS("images", "auto_template"))
		r = set_bool(&c->auto_template, value), want = "true or false";
	else if (IS("auth", "max_failures"))
		r = set_uint(&c->auth_max_failures, value, 1000), want = "0..1000";
	else if (IS("auth", "window"))
		r = set_uint(&c->auth_window, value, DAY), want = "seconds, up to a day";
	else if (IS("auth", "lockout"))
		r = set_uint(&c->auth_lockout, value, DAY), want = "seconds, up to a day";
	else if (IS("sessions", "queue_wait"))
		r = set_uint(&c->timeouts.queue_wait, value, DAY), want = "seconds, up to a day";
	else if (IS("sessions", "start_timeout"))
		r = set_uint(&c->timeouts.start, value, 3600), want = "seconds, up to an hour";
	else if (IS("sessions", "keepalive"))
		r = set_uint(&c->timeouts.keepalive, value, 7 * DAY), want = "seconds, up to a week";
	else if (IS("sessions", "idle"))
		r = set_uint(&c->timeouts.idle, value, 7 * DAY), want = "seconds, up to a week";
	else if (IS("sessions", "max_lifetime"))
		r = set_uint(&c->timeouts.max_lifetime, value, 30 * DAY),
		want = "seconds, up to 30 days";
	else if (IS("sessions", "stop_grace"))
		r = set_uint(&c->timeouts.stop_grace, value, 600), want = "seconds, up to 600";
	else if (IS("caps", "max_sessions"))
		r = set_uint(&c->max_sessions, value, 100000), want = "0 (unlimited)..100000";
	else if (IS("caps", "max_starting")) {
		unsigned v;
		want = "auto or 0 (unlimited)..10000";
		if (!strcmp(value, "auto"))
			c->max_starting = -1, r = 0;
		else if ((r = set_uint(&v, value, 10000)) == 0)
			c->max_starting = (int)v;
	} else if (IS("caps", "max_memory_mb"))
		r = set_uint(&c->max_memory_mb, value, 16 * 1024 * 1024), want = "MiB, 0 unlimited";
	else if (IS("caps", "user_max_sessions"))
		r = set_uint(&c->user_max_sessions, value, 1000), want = "0 (unlimited)..1000";

	if (r == 0)
		return 1;
	if (!p->failed) {
		p->failed = r == -ENOENT ? -ENOENT : -EINVAL;
		p->fail_line = p->line;
		if (r == -ENOENT)
			snprintf(p->err, p->errlen, "%s:%d: unknown key '%s' in section [%s]", p->name,
				 p->line, name, section);
		else
			snprintf(p->err, p->errlen, "%s:%d: bad value '%s' for %s.%s: expected %s",
				 p->name, p->line, value, section, name, want);
	}
	return 0;
}

int brk_config_parse(struct brk_config *c, const char *name, const char *text, char *err,
		     size_t errlen)
{
	struct parse p = {.c = c, .name = name, .text = text, .err = err, .errlen = errlen};
	int r = ini_parse_stream(reader, &p, handler, &p);
	if (p.failed && !(r > 0 && r < p.fail_line))
		return p.failed;
	if (r != 0) {
		snprintf(err, errlen, "%s:%d: syntax error", name, r > 0 ? r : p.line);
		return -EINVAL;
	}
	if (!c->overlay_dir[0])
		snprintf(c->overlay_dir, sizeof(c->overlay_dir), "%.4000s/overlays", c->state_dir);
	if (!c->image_dir[0])
		snprintf(c->image_dir, sizeof(c->image_dir), "%.4000s/images", c->state_dir);
	if (!c->api_socket[0])
		snprintf(c->api_socket, sizeof(c->api_socket), "%.4000s/api.sock", c->run_dir);
	/* socket paths under run_dir must fit sun_path: RUN/vm/ID(32)/probe.sock */
	if (strlen(c->run_dir) > 50) {
		snprintf(err, errlen, "%s: run_dir '%s' is too long for socket paths (max 50)",
			 name, c->run_dir);
		return -ENAMETOOLONG;
	}
	if (strlen(c->api_socket) >= 108) {
		snprintf(err, errlen, "%s: api_socket path is too long", name);
		return -ENAMETOOLONG;
	}
	return 0;
}

int brk_config_load(struct brk_config *c, const char *path, char *err, size_t errlen)
{
	char *text = NULL;
	int r = util_read_file(path, 1024 * 1024, &text, NULL);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	r = brk_config_parse(c, path, text, err, errlen);
	free(text);
	return r;
}
