/*
 * nestord's state store: caps, images and apps, sessions, warm guests,
 * templates, small settings and the audit log. The broker calls store_*
 * only; an implementation fills in struct store_ops (store_sqlite.c: the
 * embedded single-host store). Every operation runs on the broker's loop
 * and must return promptly: a store that cannot answer now says -EAGAIN.
 *
 * Never users' passwords; an rdp image's guest account password is kept
 * (the gateway must present it to the guest) and never listed.
 *
 * Records are those of records.h. int operations return 0 or a negative
 * errno: -ENOENT for a missing row, -EEXIST for a duplicate, -EBUSY for a
 * row others depend on, -EAGAIN while the store is busy (try again later:
 * nothing was written), -ENOSPC when its disk is full. Audit entries that
 * cannot be written yet are kept (bounded) and written by store_flush.
 *
 * Written for more than one implementation: several writes can be made one
 * (store_begin / store_commit / store_rollback), a queued session is
 * claimed in one operation (store_session_claim: one winner when hosts
 * race), and a subscriber hears of committed changes (store_subscribe;
 * sqlite: changes made through this handle; a shared database would also
 * report other hosts' changes).
 */
#ifndef NESTOR_STORE_H
#define NESTOR_STORE_H

#include "records.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

struct store;

typedef void (*store_image_fn)(const struct db_image *img, void *arg);
typedef void (*store_session_fn)(const struct db_session *s, void *arg);
typedef void (*store_warm_fn)(const struct db_warm *w, void *arg);
typedef void (*store_name_fn)(const char *name, void *arg);
/* TABLE (records.h's name: "sessions", "images", ...) changed; KEY the row, "" several. */
typedef void (*store_change_fn)(const char *table, const char *key, void *arg);

/* X(return type, name, parameters, arguments) */
#define STORE_OPS(X)                                                                               \
	/* several writes as one; nested begins are refused (-EBUSY) */                            \
	X(int, begin, (struct store * st), (st))                                                   \
	X(int, commit, (struct store * st), (st))                                                  \
	X(int, rollback, (struct store * st), (st))                                                \
	/* let writes wait up to MS for the store (the last writes at exit) */                     \
	X(int, patience, (struct store * st, int ms), (st, ms))                                    \
	/* write what could not be written earlier (audit): 0 or -EAGAIN */                        \
	X(int, flush, (struct store * st), (st))                                                   \
	X(int, subscribe, (struct store * st, store_change_fn fn, void *arg), (st, fn, arg))       \
                                                                                                   \
	/* host caps: KEY one of records.h's DB_CAP_FIELDS */                                      \
	X(int, cap_get, (struct store * st, const char *key, unsigned *out), (st, key, out))       \
	X(int, cap_set, (struct store * st, const char *key, unsigned value), (st, key, value))    \
	X(int, user_cap_get, (struct store * st, const char *user, unsigned *max),                 \
	  (st, user, max))                                                                         \
	X(int, user_cap_set, (struct store * st, const char *user, unsigned max), (st, user, max)) \
	X(int, user_cap_del, (struct store * st, const char *user), (st, user))                    \
	/* JSON array of {"user","max_sessions"}; a new reference */                               \
	X(json_object *, user_caps_json, (struct store * st), (st))                                \
                                                                                                   \
	/* images: put is -EEXIST if present, del -EBUSY while apps use it */                      \
	X(int, image_put, (struct store * st, const struct db_image *img), (st, img))              \
	X(int, image_update, (struct store * st, const struct db_image *img), (st, img))           \
	X(int, image_get, (struct store * st, const char *name, struct db_image *out),             \
	  (st, name, out))                                                                         \
	X(int, image_del, (struct store * st, const char *name), (st, name))                       \
	/* FN for every image (or those with a warm pool), by name; IMG borrowed */                \
	X(int, images_all, (struct store * st, store_image_fn fn, void *arg), (st, fn, arg))       \
	X(int, images_warm, (struct store * st, store_image_fn fn, void *arg), (st, fn, arg))      \
	X(int, app_put, (struct store * st, const struct db_app *app), (st, app))                  \
	X(int, app_get, (struct store * st, const char *alias, struct db_app *out),                \
	  (st, alias, out))                                                                        \
	X(int, app_del, (struct store * st, const char *alias), (st, alias))                       \
	X(json_object *, apps_json, (struct store * st), (st))                                     \
                                                                                                   \
	/* sessions: save inserts or replaces */                                                   \
	X(int, session_save, (struct store * st, const struct db_session *s), (st, s))             \
	/* FN for every session not yet ended, oldest first */                                     \
	X(int, sessions_live, (struct store * st, store_session_fn fn, void *arg), (st, fn, arg))  \
	/* the oldest queued session nobody claimed, now starting on HOST (-ENOENT: none) */       \
	X(int, session_claim, (struct store * st, const char *host, struct db_session *out),       \
	  (st, host, out))                                                                         \
	/* ended sessions, newest first, at most LIMIT; a new reference */                         \
	X(json_object *, sessions_ended_json, (struct store * st, unsigned limit), (st, limit))    \
                                                                                                   \
	X(int, warm_save, (struct store * st, const struct db_warm *w), (st, w))                   \
	X(int, warm_del, (struct store * st, const char *id), (st, id))                            \
	X(int, warms, (struct store * st, store_warm_fn fn, void *arg), (st, fn, arg))             \
                                                                                                   \
	/* an image's template per accelerator (kvm | tcg); DIR "" removes it */                   \
	X(int, template_get,                                                                       \
	  (struct store * st, const char *image, const char *accel, char *dir, size_t len),        \
	  (st, image, accel, dir, len))                                                            \
	X(int, template_set,                                                                       \
	  (struct store * st, const char *image, const char *accel, const char *dir),              \
	  (st, image, accel, dir))                                                                 \
	/* 1 if any image's template lives in DIR, 0 if none, or an error (keep it) */             \
	X(int, template_used, (struct store * st, const char *dir), (st, dir))                     \
	/* template builds asked for and not finished: restarted after a crash */                  \
	X(int, tbuild_add, (struct store * st, const char *image), (st, image))                    \
	X(int, tbuild_del, (struct store * st, const char *image), (st, image))                    \
	X(int, tbuilds, (struct store * st, store_name_fn fn, void *arg), (st, fn, arg))           \
                                                                                                   \
	/* small settings: KEY -> text (the accelerator decision, ...) */                          \
	X(int, meta_get, (struct store * st, const char *key, char *out, size_t len),              \
	  (st, key, out, len))                                                                     \
	X(int, meta_set, (struct store * st, const char *key, const char *value),                  \
	  (st, key, value))                                                                        \
                                                                                                   \
	/* 0 written, or -EAGAIN held for the next flush (bounded; beyond, dropped and logged) */  \
	X(int, audit, (struct store * st, const struct db_audit *a), (st, a))                      \
	/* newest first, at most LIMIT; a new reference */                                         \
	X(json_object *, audit_json, (struct store * st, unsigned limit), (st, limit))

#define STORE_OP_MEMBER(ret, name, params, args) ret(*name) params;

struct store_ops {
	const char *name;
	void (*close)(struct store *st);
	STORE_OPS(STORE_OP_MEMBER)
};

/* Every implementation's handle starts with this. */
struct store {
	const struct store_ops *ops;
};

#define STORE_OP_WRAP(ret, name, params, args)                                                     \
	static inline ret store_##name params                                                      \
	{                                                                                          \
		return st->ops->name args;                                                         \
	}
STORE_OPS(STORE_OP_WRAP)

/*
 * Open the store at WHERE: a file path (sqlite, created if missing).
 * Returns NULL with ERR on failure.
 */
struct store *store_open(const char *where, char *err, size_t errlen);
/* Accepts NULL. */
void store_close(struct store *st);

/* An audit entry from its parts (any may be NULL); the store keeps it if it cannot write. */
void store_audit_log(struct store *st, const char *kind, const char *user, const char *client,
		     const char *session, const char *detail);

struct store *store_sqlite_open(const char *path, char *err, size_t errlen);

#endif
