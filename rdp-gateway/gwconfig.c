/* nestor-gateway configuration: defaults and keys. Pure. */
#include "gwconfig.h"
#include "conf.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_config_defaults(struct gw_config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->listen, "127.0.0.1");
	c->port = 3389;
	c->web_port = 8444;
	strcpy(c->api_socket, "/run/nestor/api.sock");
	strcpy(c->state_dir, "/var/lib/nestor-gateway");
	strcpy(c->font, "/usr/share/consolefonts/Uni2-Terminus16.psf.gz");
	c->handshake_timeout = 10;
	c->max_connections = 200;
	/* a 9:00 burst: 50 users behind one NAT address, each client connecting
	 * twice (an NLA attempt, then TLS); the deadlines bound what squatters cost */
	c->max_per_address = 128;
	c->rate_per_address = 300;
	c->login_attempts = 3;
	c->login_timeout = 60;
	c->stall_timeout = 30;
	c->frame_rate = 30;
	c->remotefx = true;
	c->width = 1024;
	c->height = 768;
	strcpy(c->log_level, "info");
	/* forward secrecy only: ephemeral key exchange, no static-RSA suites (AES128-SHA) */
	strcpy(c->tls_ciphers, GW_TLS_CIPHERS);
	strcpy(c->portal.listen, "127.0.0.1");
	c->portal.port = 8443;
	strcpy(c->portal.title, "nestor");
	strcpy(c->portal.novnc_dir, "/usr/share/novnc");
}

#define IS(sec, key) (strcmp(section, sec) == 0 && strcmp(name, key) == 0)

static int key(void *user, const char *section, const char *name, const char *value,
	       const char **want)
{
	struct gw_config *c = user;
	*want = "an absolute path";
	if (IS("gateway", "listen")) {
		*want = "an IPv4 or IPv6 address";
		return strpbrk(value, " /") ? -EINVAL
					    : conf_str(c->listen, sizeof(c->listen), value);
	}
	if (IS("gateway", "port"))
		return *want = "1..65535",
		       conf_uint(&c->port, value, 65535) < 0 || !c->port ? -EINVAL : 0;
	if (IS("gateway", "web_port"))
		return *want = "0 (no browsers)..65535", conf_uint(&c->web_port, value, 65535);
	if (IS("gateway", "metrics_listen"))
		return *want = "HOST:PORT or [IPV6]:PORT",
		       conf_listen(c->metrics_listen, sizeof(c->metrics_listen), value);
	if (IS("gateway", "api_socket"))
		return conf_path(c->api_socket, sizeof(c->api_socket), value);
	if (IS("gateway", "state_dir"))
		return conf_path(c->state_dir, sizeof(c->state_dir), value);
	if (IS("gateway", "certificate"))
		return conf_path(c->certificate, sizeof(c->certificate), value);
	if (IS("gateway", "private_key"))
		return conf_path(c->private_key, sizeof(c->private_key), value);
	if (IS("gateway", "tls_ciphers"))
		return *want = "an OpenSSL cipher list",
		       !*value ? -EINVAL : conf_str(c->tls_ciphers, sizeof(c->tls_ciphers), value);
	if (IS("gateway", "font"))
		return conf_path(c->font, sizeof(c->font), value);
	if (IS("gateway", "user"))
		return *want = "a user name", conf_str(c->user, sizeof(c->user), value);
	if (IS("gateway", "default_app"))
		return *want = "an app alias",
		       util_name_valid(value)
			   ? conf_str(c->default_app, sizeof(c->default_app), value)
			   : -EINVAL;
	if (IS("gateway", "rdp_security"))
		return *want = "true or false", conf_bool(&c->rdp_security, value);
	if (IS("gateway", "log_level"))
		return *want = "err, warn, info or debug",
		       (!strcmp(value, "err") || !strcmp(value, "warn") || !strcmp(value, "info") ||
			!strcmp(value, "debug"))
			   ? conf_str(c->log_level, sizeof(c->log_level), value)
			   : -EINVAL;
	if (IS("limits", "handshake_timeout"))
		return *want = "1..300 seconds",
		       conf_uint(&c->handshake_timeout, value, 300) < 0 || !c->handshake_timeout
			   ? -EINVAL
			   : 0;
	if (IS("limits", "stall_timeout"))
		return *want = "0 (the kernel's default)..3600 seconds",
		       conf_uint(&c->stall_timeout, value, 3600);
	if (IS("limits", "max_connections"))
		return *want = "1..10000",
		       conf_uint(&c->max_connections, value, 10000) < 0 || !c->max_connections
			   ? -EINVAL
			   : 0;
	if (IS("limits", "max_per_address"))
		return *want = "0 (unlimited)..10000", conf_uint(&c->max_per_address, value, 10000);
	if (IS("limits", "rate_per_address"))
		return *want = "0 (unlimited)..10000 per minute",
		       conf_uint(&c->rate_per_address, value, 10000);
	if (IS("limits", "login_timeout"))
		return *want = "1..3600 seconds",
		       conf_uint(&c->login_timeout, value, 3600) < 0 || !c->login_timeout ? -EINVAL
											  : 0;
	if (IS("limits", "login_attempts"))
		return *want = "1..10",
		       conf_uint(&c->login_attempts, value, 10) < 0 || !c->login_attempts ? -EINVAL
											  : 0;
	if (IS("display", "frame_rate"))
		return *want = "1..60",
		       conf_uint(&c->frame_rate, value, 60) < 0 || !c->frame_rate ? -EINVAL : 0;
	if (IS("display", "remotefx"))
		return *want = "true or false", conf_bool(&c->remotefx, value);
	if (IS("display", "width"))
		return *want = "320..4096",
		       conf_uint(&c->width, value, 4096) < 0 || c->width < 320 ? -EINVAL : 0;
	if (IS("display", "height"))
		return *want = "200..4096",
		       conf_uint(&c->height, value, 4096) < 0 || c->height < 200 ? -EINVAL : 0;
	if (IS("portal", "listen")) {
		*want = "an IPv4 or IPv6 address";
		return strpbrk(value, " /")
			   ? -EINVAL
			   : conf_str(c->portal.listen, sizeof(c->portal.listen), value);
	}
	if (IS("portal", "port"))
		return *want = "1..65535",
		       conf_uint(&c->portal.port, value, 65535) < 0 || !c->portal.port ? -EINVAL
										       : 0;
	if (IS("portal", "rdp_address")) {
		char host[256];
		uint16_t port;
		*want = "HOST or HOST:PORT (what RDP clients connect to)";
		if (!*value || strpbrk(value, " /\\\"'<>&\r\n"))
			return -EINVAL;
		if (strchr(value, ':') && conf_hostport(value, host, sizeof(host), &port) < 0)
			return -EINVAL;
		return conf_str(c->portal.rdp_address, sizeof(c->portal.rdp_address), value);
	}
	if (IS("portal", "novnc_dir"))
		return conf_path(c->portal.novnc_dir, sizeof(c->portal.novnc_dir), value);
	if (IS("portal", "title")) {
		*want = "1..64 printable characters";
		for (const char *p = value; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return -EINVAL;
		return !*value ? -EINVAL
			       : conf_str(c->portal.title, sizeof(c->portal.title), value);
	}
	return -ENOENT;
}

int gw_config_parse(struct gw_config *c, const char *name, const char *text, char *err,
		    size_t errlen)
{
	int r = conf_parse(name, text, key, c, err, errlen);
	if (r == 0 && (!c->certificate[0]) != (!c->private_key[0])) {
		snprintf(err, errlen, "%s: certificate and private_key go together", name);
		return -EINVAL;
	}
	return r;
}

int gw_config_load(struct gw_config *c, const char *path, char *err, size_t errlen)
{
	char *text = NULL;
	int r = util_read_file(path, 1024 * 1024, &text, NULL);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	r = gw_config_parse(c, path, text, err, errlen);
	free(text);
	return r;
}

int gw_config_boot_load(void *cfg, const char *path, char *err, size_t errlen)
{
	return gw_config_load(cfg, path, err, errlen);
}

int gw_config_boot_parse(void *cfg, const char *name, const char *text, char *err, size_t errlen)
{
	return gw_config_parse(cfg, name, text, err, errlen);
}

void gw_limit_key(const char *addr, char *out, size_t len)
{
	struct in6_addr a6;
	if (!strchr(addr, ':') || inet_pton(AF_INET6, addr, &a6) != 1) {
		snprintf(out, len, "%s", addr);
		return;
	}
	char text[INET6_ADDRSTRLEN];
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		inet_ntop(AF_INET, &a6.s6_addr[12], text, sizeof(text));
		snprintf(out, len, "%s", text);
		return;
	}
	memset(&a6.s6_addr[8], 0, 8);
	inet_ntop(AF_INET6, &a6, text, sizeof(text));
	snprintf(out, len, "%s/64", text);
}
