/*
 * Configuration parsing: pure over a string (brk_config_parse), plus a file
 * loader. inih's handler does not see line numbers, so our reader counts
 * the lines it hands over.
 */
#include "config.h"
#include "conf.h"
#include "util.h"

#include <errno.h>
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
	/* below the kernel's ephemeral range: one firewall rule covers them (docs/images.md) */
	c->fwd_lo = 13400;
	c->fwd_hi = 14399;
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
	    .warn_before = 120,
	    .stop_grace = 20,
	};
	c->max_starting = -1;
	c->user_max_sessions = 2;
	c->pressure_critical = 95;
	c->accel_probe_timeout = 15;
	c->accel_trial_timeout = 60;
	c->fleet.heartbeat = 2;
	c->fleet.down_after = 6;
	c->min_free_mb = 64;
}

#define DAY (24 * 3600U)
#define IS(sec, key) (strcmp(section, sec) == 0 && strcmp(name, key) == 0)

/* forward_ports = LOW-HIGH, or any (the kernel picks a free port) */
static int ports(struct brk_config *c, const char *v)
{
	if (!strcmp(v, "any")) {
		c->fwd_lo = c->fwd_hi = 0;
		return 0;
	}
	unsigned lo, hi;
	char end;
	if (sscanf(v, "%u-%u%c", &lo, &hi, &end) != 2 || lo < 1024 || hi > 65535 || lo > hi)
		return -EINVAL;
	c->fwd_lo = lo;
	c->fwd_hi = hi;
	return 0;
}

static int handler(void *user, const char *section, const char *name, const char *value,
		   const char **wantp)
{
	struct brk_config *c = user;
	int r = -ENOENT;
	const char *want = "";
	if (IS("nestord", "state_dir"))
		r = conf_path(c->state_dir, sizeof(c->state_dir), value), want = "an absolute path";
	else if (IS("nestord", "run_dir"))
		r = conf_path(c->run_dir, sizeof(c->run_dir), value), want = "an absolute path";
	else if (IS("nestord", "overlay_dir"))
		r = conf_path(c->overlay_dir, sizeof(c->overlay_dir), value),
		want = "an absolute path";
	else if (IS("nestord", "api_socket"))
		r = conf_path(c->api_socket, sizeof(c->api_socket), value),
		want = "an absolute path";
	else if (IS("nestord", "api_group"))
		r = conf_str(c->api_group, sizeof(c->api_group), value), want = "a group name";
	else if (IS("nestord", "admin_group"))
		r = conf_str(c->admin_group, sizeof(c->admin_group), value), want = "a group name";
	else if (IS("nestord", "pam_service"))
		r = util_name_valid(value) ? conf_str(c->pam_service, sizeof(c->pam_service), value)
					   : -EINVAL,
		want = "a PAM service name";
	else if (IS("nestord", "qemu"))
		r = conf_path(c->qemu, sizeof(c->qemu), value), want = "an absolute path";
	else if (IS("nestord", "qemu_img"))
		r = conf_path(c->qemu_img, sizeof(c->qemu_img), value), want = "an absolute path";
	else if (IS("nestord", "accel"))
		r = (!strcmp(value, "auto") || !strcmp(value, "kvm") || !strcmp(value, "tcg"))
			? conf_str(c->accel, sizeof(c->accel), value)
			: -EINVAL,
		want = "auto, kvm or tcg";
	else if (IS("nestord", "accel_probe_kernel"))
		r = conf_path(c->accel_probe_kernel, sizeof(c->accel_probe_kernel), value),
		want = "an absolute path";
	else if (IS("nestord", "accel_probe_timeout"))
		r = conf_uint(&c->accel_probe_timeout, value, 600), want = "seconds, up to 600";
	else if (IS("nestord", "accel_trial_timeout"))
		r = conf_uint(&c->accel_trial_timeout, value, 3600),
		want = "seconds, up to an hour";
	else if (IS("nestord", "min_free_mb"))
		r = conf_uint(&c->min_free_mb, value, 1 << 20), want = "MiB, up to 1048576";
	else if (IS("nestord", "qemu_user"))
		r = conf_str(c->qemu_user, sizeof(c->qemu_user), value), want = "a user name";
	else if (IS("nestord", "forward_ports"))
		r = ports(c, value), want = "LOW-HIGH (1024..65535) or any";
	else if (IS("nestord", "sandbox"))
		r = conf_bool(&c->sandbox, value), want = "true or false";
	else if (IS("nestord", "log_level"))
		r = (!strcmp(value, "err") || !strcmp(value, "warn") || !strcmp(value, "info") ||
		     !strcmp(value, "debug"))
			? conf_str(c->log_level, sizeof(c->log_level), value)
			: -EINVAL,
		want = "err, warn, info or debug";
	else if (IS("nestord", "metrics_listen"))
		r = conf_listen(c->metrics_listen, sizeof(c->metrics_listen), value),
		want = "HOST:PORT or [IPV6]:PORT";
	else if (IS("images", "image_dir"))
		r = conf_path(c->image_dir, sizeof(c->image_dir), value), want = "an absolute path";
	else if (IS("images", "auto_template"))
		r = conf_bool(&c->auto_template, value), want = "true or false";
	else if (IS("auth", "max_failures"))
		r = conf_uint(&c->auth_max_failures, value, 1000), want = "0..1000";
	else if (IS("auth", "window"))
		r = conf_uint(&c->auth_window, value, DAY), want = "seconds, up to a day";
	else if (IS("auth", "lockout"))
		r = conf_uint(&c->auth_lockout, value, DAY), want = "seconds, up to a day";
	else if (IS("sessions", "queue_wait"))
		r = conf_uint(&c->timeouts.queue_wait, value, DAY), want = "seconds, up to a day";
	else if (IS("sessions", "start_timeout"))
		r = conf_uint(&c->timeouts.start, value, 3600), want = "seconds, up to an hour";
	else if (IS("sessions", "keepalive"))
		r = conf_uint(&c->timeouts.keepalive, value, 7 * DAY),
		want = "seconds, up to a week";
	else if (IS("sessions", "idle"))
		r = conf_uint(&c->timeouts.idle, value, 7 * DAY), want = "seconds, up to a week";
	else if (IS("sessions", "max_lifetime"))
		r = conf_uint(&c->timeouts.max_lifetime, value, 30 * DAY),
		want = "seconds, up to 30 days";
	else if (IS("sessions", "warn_before"))
		r = conf_uint(&c->timeouts.warn_before, value, DAY), want = "seconds, up to a day";
	else if (IS("sessions", "stop_grace"))
		r = conf_uint(&c->timeouts.stop_grace, value, 600), want = "seconds, up to 600";
	else if (IS("caps", "max_sessions"))
		r = conf_uint(&c->max_sessions, value, 100000), want = "0 (unlimited)..100000";
	else if (IS("caps", "max_starting")) {
		unsigned v;
		want = "auto or 0 (unlimited)..10000";
		if (!strcmp(value, "auto"))
			c->max_starting = -1, r = 0;
		else if ((r = conf_uint(&v, value, 10000)) == 0)
			c->max_starting = (int)v;
	} else if (IS("caps", "max_memory_mb"))
		r = conf_uint(&c->max_memory_mb, value, 16 * 1024 * 1024),
		want = "MiB, 0 unlimited";
	else if (IS("caps", "cpu_pressure_high"))
		r = conf_uint(&c->pressure_high, value, 100), want = "0 (off)..100 percent";
	else if (IS("caps", "cpu_pressure_critical"))
		r = conf_uint(&c->pressure_critical, value, 100), want = "0 (off)..100 percent";
	else if (IS("caps", "user_max_sessions"))
		r = conf_uint(&c->user_max_sessions, value, 1000), want = "0 (unlimited)..1000";
	else if (IS("fleet", "db"))
		r = conf_str(c->fleet.db, sizeof(c->fleet.db), value),
		want = "a libpq connection string";
	else if (IS("fleet", "name"))
		r = util_name_valid(value) ? conf_str(c->fleet.name, sizeof(c->fleet.name), value)
					   : -EINVAL,
		want = "a host name (letters, digits, '.', '_', '-'; up to 63)";
	else if (IS("fleet", "gateway"))
		r = conf_listen(c->fleet.gateway, sizeof(c->fleet.gateway), value),
		want = "HOST:PORT";
	else if (IS("fleet", "gateway_cert"))
		r = conf_path(c->fleet.gateway_cert, sizeof(c->fleet.gateway_cert), value),
		want = "an absolute path";
	else if (IS("fleet", "heartbeat"))
		r = conf_uint(&c->fleet.heartbeat, value, 60) == 0 && c->fleet.heartbeat ? 0
											 : -EINVAL,
		want = "seconds, 1..60";
	else if (IS("fleet", "down_after"))
		r = conf_uint(&c->fleet.down_after, value, 600), want = "seconds, up to 600";
	else if (IS("fleet", "agent_listen"))
		r = conf_listen(c->agent_listen, sizeof(c->agent_listen), value),
		want = "HOST:PORT or [IPV6]:PORT";

	*wantp = want;
	return r;
}

int brk_config_parse(struct brk_config *c, const char *name, const char *text, char *err,
		     size_t errlen)
{
	int r = conf_parse(name, text, handler, c, err, errlen);
	if (r < 0)
		return r;
	if (!c->overlay_dir[0])
		snprintf(c->overlay_dir, sizeof(c->overlay_dir), "%.4000s/overlays", c->state_dir);
	if (!c->image_dir[0])
		snprintf(c->image_dir, sizeof(c->image_dir), "%.4000s/images", c->state_dir);
	if (!c->api_socket[0])
		snprintf(c->api_socket, sizeof(c->api_socket), "%.4000s/api.sock", c->run_dir);
	if (c->fleet.down_after <= c->fleet.heartbeat) {
		snprintf(err, errlen,
			 "%s: [fleet] down_after (%u s) must be longer than heartbeat (%u s)", name,
			 c->fleet.down_after, c->fleet.heartbeat);
		return -EINVAL;
	}
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
