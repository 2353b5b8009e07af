/*
 * nestord's state in sqlite3 (WAL, short transactions on the loop): caps,
 * images and apps, sessions, and the audit log. Never users' passwords; an
 * rdp image's guest account password is kept (the file is the daemon's,
 * 0600) because the gateway must present it to the guest, and it is never
 * listed.
 *
 * Each record's columns are listed once, in db.c's descriptor tables: the
 * schema, the columns added to older files, binds, row reads and JSON lists
 * are made from them.
 *
 * int functions return 0 or a negative errno; -ENOENT for a missing row,
 * -EEXIST for a duplicate, -EAGAIN while another process holds the database
 * locked (try again later: nothing was written), -ENOSPC when the disk is
 * full. Audit entries that cannot be written yet are kept (bounded) and
 * written by the next db_flush.
 */
#ifndef NESTOR_DB_H
#define NESTOR_DB_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct db;

struct db_image {
	char name[65];
	char base[4096];
	char kernel[4096]; /* optional direct boot (test and demo guests) */
	char initrd[4096];
	char append[1024];
	char machine[65];
	unsigned memory_mb;
	char ready[128]; /* serial:MARKER | tcp:PORT | running */
	unsigned max_sessions;
	/* per-image timeouts in seconds; 0 = the configured default */
	unsigned keepalive, idle, max_lifetime, start_timeout, queue_wait;
	/* recorded at registration: a changed base is refused */
	char sha256[65];
	uint64_t size;
	int64_t mtime_ns;
	unsigned virtual_mb;
	unsigned warm_pool;
	char backend[16]; /* console | rdp */
	unsigned rdp_port;
	struct db_rdp_policy {
		char security[8]; /* rdp | tls | any: what the guest's server speaks */
		char login[8];	  /* image: the guest account below | user: the user's own */
		char user[65];	  /* the guest account */
		char domain[65];
		char password[129];
		bool clipboard; /* relay the clipboard channel (off by default) */
		bool drive;	/* relay drive redirection (off by default) */
		bool remoteapp; /* the guest serves RemoteApp (RAIL) itself */
	} rdp;
	int64_t created;
};

/* Change an image's runtime settings and rdp policy (every field but the name). */
int db_image_update(struct db *db, const struct db_image *img);

struct db_app {
	char alias[65];
	char image[65];
	char title[129];
	char command[1024];
};

struct db_session {
	char id[33];
	char user[65];
	char app[65];
	char image[65];
	char state[16];
	pid_t pid;
	char qmp[256];
	char vnc[256];
	char overlay[4096];
	char client[64];
	char end_reason[256];
	char start_path[16];
	char template_dir[4096]; /* template the guest was cloned from */
	unsigned rdp_port;	 /* rdp backend: the guest's forward on 127.0.0.1 */
	unsigned memory_mb;
	int64_t created, started, ready, ended; /* wall clock, seconds; 0 unset */
	char accel[8];				/* kvm | tcg: what the guest runs under */
};

/* A warm-pool guest: a paused template clone, reattached after a restart. */
struct db_warm {
	char id[17];
	char image[65];
	pid_t pid;
	char template_dir[4096];
	unsigned memory_mb;
	char accel[8];
	bool ready; /* restored and paused: may be handed out */
};

struct db *db_open(const char *path, char *err, size_t errlen);
void db_close(struct db *db);

int db_cap_get(struct db *db, const char *key, unsigned *out);
int db_cap_set(struct db *db, const char *key, unsigned value);
int db_user_cap_get(struct db *db, const char *user, unsigned *max);
int db_user_cap_set(struct db *db, const char *user, unsigned max);
int db_user_cap_del(struct db *db, const char *user);
/* JSON array of {"user","max_sessions"}; returns a new reference. */
json_object *db_user_caps_json(struct db *db);

int db_image_put(struct db *db, const struct db_image *img); /* -EEXIST if present */
int db_image_get(struct db *db, const char *name, struct db_image *out);
int db_image_del(struct db *db, const char *name); /* -EBUSY if apps use it */
/* Calls FN for every image, by name (IMG borrowed for the call). */
int db_images_all(struct db *db, void (*fn)(const struct db_image *img, void *arg), void *arg);
/* Calls FN for every image with a warm pool (IMG borrowed for the call). */
int db_images_warm(struct db *db, void (*fn)(const struct db_image *img, void *arg), void *arg);
json_object *db_images_json(struct db *db);
int db_app_put(struct db *db, const struct db_app *app);
int db_app_get(struct db *db, const char *alias, struct db_app *out);
int db_app_del(struct db *db, const char *alias);
json_object *db_apps_json(struct db *db);

int db_session_save(struct db *db, const struct db_session *s); /* insert or replace */
/* Calls FN for every session not yet ended, oldest first. */
int db_sessions_live(struct db *db, void (*fn)(const struct db_session *s, void *arg), void *arg);
/* Ended sessions, newest first, at most LIMIT; returns a new reference. */
json_object *db_sessions_ended_json(struct db *db, unsigned limit);

void db_audit(struct db *db, const char *kind, const char *user, const char *client,
	      const char *session, const char *detail);
json_object *db_audit_json(struct db *db, unsigned limit);
/* Let writes wait up to MS for a lock (no more failing fast): for the last writes at exit. */
void db_patience(struct db *db, int ms);
/* Write what could not be written earlier (audit entries). Returns 0 or -EAGAIN. */
int db_flush(struct db *db);

/* Small settings: META key -> text (the accelerator decision, ...). */
int db_meta_get(struct db *db, const char *key, char *out, size_t len);
int db_meta_set(struct db *db, const char *key, const char *value);

int db_warm_save(struct db *db, const struct db_warm *w); /* insert or replace */
int db_warm_del(struct db *db, const char *id);
int db_warms(struct db *db, void (*fn)(const struct db_warm *w, void *arg), void *arg);

/* An image's template per accelerator (kvm | tcg); DIR "" removes it. */
int db_template_get(struct db *db, const char *image, const char *accel, char *dir, size_t len);
int db_template_set(struct db *db, const char *image, const char *accel, const char *dir);
/* Whether any image's template lives in DIR. */
bool db_template_used(struct db *db, const char *dir);
/* Template builds asked for and not finished: restarted after a crash. */
int db_tbuild_add(struct db *db, const char *image);
int db_tbuild_del(struct db *db, const char *image);
int db_tbuilds(struct db *db, void (*fn)(const char *image, void *arg), void *arg);

#endif
