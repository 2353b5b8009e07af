/*
 * nestor-gateway's configuration (INI, docs/gateway-configuration.md). Pure parser over
 * common/conf.c; unknown keys and bad values name the file, line and key.
 */
#ifndef NESTOR_GW_CONFIG_H
#define NESTOR_GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* The default cipher list: ephemeral (EC)DH key exchange only; GCM and ChaCha20 first,
 * then CBC suites for older Windows clients (Windows 7's mstsc). */
#define GW_TLS_CIPHERS                                                                             \
	"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:DHE+AES:!aNULL:!eNULL:"     \
	"!MD5:!DSS:!PSK:!SRP"

struct gw_config {
	char listen[64];
	unsigned port;
	unsigned web_port;	  /* the browser door (noVNC over wss), 0 off */
	char metrics_listen[128]; /* HOST:PORT for /metrics (docs/metrics.md), "" off */
	char api_socket[108];
	char state_dir[4096];	/* self-signed certificate lives here */
	char certificate[4096]; /* PEM; empty: generate */
	char private_key[4096];
	char tls_ciphers[512]; /* OpenSSL cipher list for TLS 1.2 (1.3's are all forward secret) */
	char user[64];	       /* drop privileges to this user when started as root */
	char font[4096];
	char default_app[65];	    /* for desktop clients that name no app */
	bool rdp_security;	    /* allow standard RDP security (never for untrusted networks) */
	unsigned handshake_timeout; /* seconds */
	unsigned max_connections;
	unsigned max_per_address;  /* concurrent */
	unsigned rate_per_address; /* new connections per minute */
	unsigned login_attempts;
	unsigned login_timeout; /* seconds on the login screen before the connection is cut */
	unsigned stall_timeout; /* seconds a client may leave sent data unacknowledged */
	unsigned frame_rate;
	bool remotefx;		/* use RemoteFX with clients that support it */
	unsigned width, height; /* wait-screen size when the client asks for none */
	char log_level[8];
	/* nestor-portal's own section ([portal], docs/portal.md); it shares the rest */
	struct {
		char listen[64];
		unsigned port;
		char rdp_address[256]; /* HOST[:PORT] written into .rdp files; "" the request's */
		char title[65];	       /* the portal's and the feed's name */
		char novnc_dir[4096];  /* noVNC's files (Debian's novnc package) */
	} portal;
};

void gw_config_defaults(struct gw_config *c);
/*
 * The key per-address limits count ADDR under: an IPv4 address as is (also
 * when IPv4-mapped), an IPv6 address by its /64 (one site's or one host's
 * addresses are one client). OUT gets it.
 */
void gw_limit_key(const char *addr, char *out, size_t len);
int gw_config_parse(struct gw_config *c, const char *name, const char *text, char *err,
		    size_t errlen);
int gw_config_load(struct gw_config *c, const char *path, char *err, size_t errlen);
/* The two as boot_config's callbacks (CFG: a struct gw_config), for the gateway and the portal. */
int gw_config_boot_load(void *cfg, const char *path, char *err, size_t errlen);
int gw_config_boot_parse(void *cfg, const char *name, const char *text, char *err, size_t errlen);

#endif
