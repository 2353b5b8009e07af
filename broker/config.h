/*
 * nestord's configuration: an INI file parsed with libinih. Every key is
 * documented in docs/configuration.md. Unknown sections or keys and bad
 * values are errors naming the file, line and key.
 *
 * int functions return 0 or a negative errno; ERR gets the reason.
 */
#ifndef NESTOR_BRK_CONFIG_H
#define NESTOR_BRK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define BRK_PATH_MAX 4096

/* Session timeouts in seconds; 0 disables one. */
struct brk_timeouts {
	unsigned queue_wait;
	unsigned start;
	unsigned keepalive; /* disconnected session kept this long */
	unsigned idle;	    /* connected session without input */
	unsigned max_lifetime;
	unsigned warn_before; /* idle or lifetime ends announced this long before (0: never) */
	unsigned stop_grace;  /* ACPI power-down before quit */
};

struct brk_config {
	char state_dir[BRK_PATH_MAX];
	char run_dir[BRK_PATH_MAX];
	char overlay_dir[BRK_PATH_MAX];
	char image_dir[BRK_PATH_MAX];
	bool auto_template;
	char api_socket[BRK_PATH_MAX];
	char api_group[64];   /* the gateway's: the API's gateway role, the guests' screens */
	char admin_group[64]; /* the API's administrator role (besides root and nestord's user) */
	char pam_service[64];
	char qemu[BRK_PATH_MAX];
	char qemu_img[BRK_PATH_MAX];
	char accel[8];			       /* auto|kvm|tcg */
	char accel_probe_kernel[BRK_PATH_MAX]; /* "" : an image's kernel or /boot/vmlinuz */
	unsigned accel_probe_timeout;	       /* s: the probe kernel must end within this */
	unsigned accel_trial_timeout;	       /* s: first starts under an unproven KVM */
	unsigned min_free_mb;		       /* refuse starts below this free in overlay_dir */
	char qemu_user[64];
	bool sandbox;
	unsigned fwd_lo, fwd_hi; /* rdp guests' forwards on 127.0.0.1 (0, 0: the kernel picks) */
	char log_level[8];
	char metrics_listen[128]; /* HOST:PORT for /metrics, "" off */

	unsigned auth_max_failures;
	unsigned auth_window;
	unsigned auth_lockout;

	struct brk_timeouts timeouts;

	/* initial caps; runtime changes live in the database */
	unsigned max_sessions;
	int max_starting; /* -1: auto from cores and accelerator */
	unsigned max_memory_mb;
	unsigned user_max_sessions;
	unsigned pressure_high;	    /* % CPU pressure that halves max_starting; 0 off */
	unsigned pressure_critical; /* % that allows one start at a time */

	/* [fleet]: hosts sharing PostgreSQL (fleet.c); db "" is a single host */
	struct brk_fleet_config {
		char db[1024];			 /* libpq conninfo or postgresql:// URL */
		char name[64];			 /* this host in the fleet ("" : its hostname) */
		char gateway[128];		 /* HOST:PORT of this host's nestor-gateway */
		char gateway_cert[BRK_PATH_MAX]; /* its certificate (PEM): pinned by others */
		unsigned heartbeat;		 /* s between heartbeats */
		unsigned down_after;		 /* s of silence after which a host is down */
	} fleet;
	char agent_listen[128]; /* [fleet] HOST:PORT for HAProxy's agent-check, "" off */
};

void brk_config_defaults(struct brk_config *c);
/* Parse TEXT as if read from NAME (for messages). */
int brk_config_parse(struct brk_config *c, const char *name, const char *text, char *err,
		     size_t errlen);
int brk_config_load(struct brk_config *c, const char *path, char *err, size_t errlen);

#endif
