/*
 * The sqlite store. Runs on the broker's loop: WAL mode, synchronous=NORMAL,
 * one short statement or transaction per call. Another process holding the
 * database locked (an admin's sqlite3 shell) costs the loop at most
 * BUSY_MS per statement, and after one busy answer writes fail fast with
 * -EAGAIN for BACKOFF_MS instead of blocking again; the broker keeps what it
 * could not write and writes it later.
 *
 * Records (images, apps, sessions, warm guests, audit entries) take their
 * columns from record.h's tables: schema, columns added to older files,
 * binds and row reads are made from them.
 */
#include "record.h"
#include "store.h"
#include "store_sqlite.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns come from record.h's tables (the first field is the key). */
static const struct rec_table *const tables[] = {&rec_images, &rec_apps, &rec_sessions, &rec_warm,
						 &rec_audit};

/* A column's SQL type and default. */
static void col_decl(const struct rec_field *f, char *out, size_t len)
{
	if (f->kind != REC_TEXT)
		snprintf(out, len, "INTEGER DEFAULT 0");
	else if (f->dflt[0])
		snprintf(out, len, "TEXT DEFAULT '%s'", f->dflt);
	else
		snprintf(out, len, "TEXT");
}

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA foreign_keys=ON;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema', '1');"
    "CREATE TABLE IF NOT EXISTS host_caps(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS user_caps(user TEXT PRIMARY KEY, max_sessions INTEGER NOT "
    "NULL);"
    "CREATE TABLE IF NOT EXISTS images(name TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS apps(alias TEXT PRIMARY KEY,"
    " image TEXT NOT NULL REFERENCES images(name), title TEXT NOT NULL, command TEXT);"
    "CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS warm(id TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS templates(image TEXT NOT NULL, accel TEXT NOT NULL,"
    " dir TEXT NOT NULL, PRIMARY KEY(image, accel));"
    "CREATE TABLE IF NOT EXISTS template_builds(image TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS audit(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " ts INTEGER NOT NULL, kind TEXT NOT NULL, user TEXT, client TEXT, session TEXT,"
    " detail TEXT);";

static bool has_column(sqlite3 *h, const char *table, const char *column)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(h, "SELECT 1 FROM pragma_table_info(?) WHERE name=?", -1, &st,
			       NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
	bool have = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return have;
}

/* Give TABLE every column of its list that an older file lacks. */
static int add_columns(sqlite3 *h, const struct rec_table *t, char **msg)
{
	for (size_t i = 0; i < t->n; i++) {
		if (has_column(h, t->name, t->fields[i].key))
			continue;
		char sql[256], decl[96];
		col_decl(&t->fields[i], decl, sizeof(decl));
		snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", t->name,
			 t->fields[i].key, decl);
		int r = sqlite3_exec(h, sql, NULL, NULL, msg);
		if (r != SQLITE_OK)
			return r;
	}
	return SQLITE_OK;
}

/*
 * Templates used to be one per image, in images.template_dir, built under
 * whichever accelerator was chosen then: keep each for both; the first use
 * under the other accelerator finds it unusable and drops that entry only.
 */
static const char MIGRATE[] =
    "INSERT OR IGNORE INTO templates(image, accel, dir) SELECT name, 'tcg', template_dir"
    " FROM images WHERE template_dir IS NOT NULL AND template_dir != '';"
    "INSERT OR IGNORE INTO templates(image, accel, dir) SELECT name, 'kvm', template_dir"
    " FROM images WHERE template_dir IS NOT NULL AND template_dir != '';"
    "UPDATE images SET template_dir = NULL WHERE template_dir IS NOT NULL;";

/* After every column exists. */
static const char INDEXES[] =
    "CREATE INDEX IF NOT EXISTS sessions_live ON sessions(state) WHERE state != 'ended';";

static const struct store_ops sq_ops;

struct store *store_sqlite_open(const char *path, char *err, size_t errlen)
{
	struct sq *db = calloc(1, sizeof(*db));
	if (!db) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* secrets are in there: the owner's alone, whatever the directory's mode (sqlite
	 * gives its -wal and -shm files the database file's mode) */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || fchmod(fd, 0600) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(db);
		return NULL;
	}
	close(fd);
	const char *sides[] = {"-wal", "-shm", "-journal"};
	for (unsigned i = 0; i < 3; i++) {
		char side[4200];
		snprintf(side, sizeof(side), "%s%s", path, sides[i]);
		chmod(side, 0600); /* left by an older nestord, perhaps 0644 */
	}
	int r = sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	char *msg = NULL;
	if (r == SQLITE_OK) {
		/* opening may wait for a lock longer than a running loop would */
		sqlite3_busy_timeout(db->h, 10000);
		r = sqlite3_exec(db->h, SCHEMA, NULL, NULL, &msg);
		for (size_t i = 0; r == SQLITE_OK && i < sizeof(tables) / sizeof(tables[0]); i++)
			r = add_columns(db->h, tables[i], &msg);
		if (r == SQLITE_OK && has_column(db->h, "images", "template_dir"))
			r = sqlite3_exec(db->h, MIGRATE, NULL, NULL, &msg);
		if (r == SQLITE_OK)
			r = sqlite3_exec(db->h, INDEXES, NULL, NULL, &msg);
		sqlite3_busy_timeout(db->h, BUSY_MS);
	}
	if (r != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(db->h));
		sqlite3_free(msg);
		sqlite3_close(db->h);
		free(db);
		return NULL;
	}
	db->base.ops = &sq_ops;
	return &db->base;
}

static int sq_flush(struct store *base);

static void sq_close(struct store *base)
{
	struct sq *db = SQ(base);
	sq_flush(base);
	if (db->n_backlog || db->dropped)
		log_err("db: %u audit entries could not be written", db->n_backlog + db->dropped);
	sqlite3_close(db->h);
	free(db->backlog);
	free(db);
}

static int sq_patience(struct store *base, int ms)
{
	struct sq *db = SQ(base);
	db->backoff_until = 0;
	sqlite3_busy_timeout(db->h, ms);
	return 0;
}

/* --- generic record access through a column table --- */

/* --- transactions and notification --- */

static int sq_begin(struct store *base)
{
	struct sq *db = SQ(base);
	if (db->in_txn)
		return -EBUSY;
	/* IMMEDIATE: the write lock now, so a busy database fails here, not half-way */
	int e = sq_exec_plain(db, "BEGIN IMMEDIATE");
	if (e == 0) {
		db->in_txn = true;
		db->txn_changed = false;
	}
	return e;
}

static int sq_commit(struct store *base)
{
	struct sq *db = SQ(base);
	if (!db->in_txn)
		return -EINVAL;
	sqlite3_stmt *st = sq_prep(db, "COMMIT");
	int e = st ? sq_step_done(db, st) : -EIO;
	if (e < 0)
		return e; /* still open: the caller rolls back */
	db->in_txn = false;
	if (db->txn_changed)
		sq_changed(db, "", "");
	return 0;
}

static int sq_rollback(struct store *base)
{
	struct sq *db = SQ(base);
	if (!db->in_txn)
		return -EINVAL;
	sqlite3_stmt *st = sq_prep(db, "ROLLBACK");
	int e = st ? sq_step_done(db, st) : -EIO;
	db->in_txn = false;
	db->txn_changed = false;
	return e;
}

static int sq_subscribe(struct store *base, store_change_fn fn, void *arg)
{
	struct sq *db = SQ(base);
	for (unsigned i = 0; i < SUBSCRIBERS; i++) {
		if (!db->subs[i].fn) {
			db->subs[i].fn = fn;
			db->subs[i].arg = arg;
			return 0;
		}
	}
	return -ENOSPC;
}

/* --- caps --- */

static int sq_cap_get(struct store *base, const char *key, unsigned *out)
{
	return sq_select_uint(SQ(base), "SELECT value FROM host_caps WHERE key=?", key, out);
}

static int sq_cap_set(struct store *base, const char *key, unsigned value)
{
	return sq_put_uint(SQ(base), "INSERT OR REPLACE INTO host_caps VALUES(?, ?)", "host_caps",
			   key, value);
}

static int sq_user_cap_get(struct store *base, const char *user, unsigned *max)
{
	return sq_select_uint(SQ(base), "SELECT max_sessions FROM user_caps WHERE user=?", user,
			      max);
}

static int sq_user_cap_set(struct store *base, const char *user, unsigned max)
{
	return sq_put_uint(SQ(base), "INSERT OR REPLACE INTO user_caps VALUES(?, ?)", "user_caps",
			   user, max);
}

static int sq_user_cap_del(struct store *base, const char *user)
{
	return sq_delete_one(SQ(base), "DELETE FROM user_caps WHERE user=?", "user_caps", user);
}

static json_object *sq_user_caps_json(struct store *base)
{
	return sq_rows_json(
	    sq_prep(SQ(base), "SELECT user, max_sessions FROM user_caps ORDER BY user"));
}

/* --- records --- */

/* --- images and apps --- */

static int sq_image_put(struct store *base, const struct db_image *m)
{
	struct db_image row = *m;
	rec_defaults(&rec_images, &row);
	if (!row.created)
		row.created = util_wall_s();
	int e = sq_rec_write(SQ(base), &rec_images, &row, REC_INSERT);
	explicit_bzero(row.rdp.password, sizeof(row.rdp.password));
	return e;
}

static int sq_image_update(struct store *base, const struct db_image *m)
{
	return sq_rec_write(SQ(base), &rec_images, m, REC_UPDATE);
}

static int sq_image_get(struct store *base, const char *name, struct db_image *m)
{
	return sq_get_one(SQ(base), &rec_images, name, m, sizeof(*m));
}

struct image_scan {
	store_image_fn fn;
	void *arg;
};

static void image_row(const void *rec, void *arg)
{
	struct image_scan *x = arg;
	x->fn(rec, x->arg);
}

static int images_where(struct sq *db, const char *where, store_image_fn fn, void *arg)
{
	struct db_image m;
	struct image_scan x = {fn, arg};
	int r = sq_scan(db, &rec_images, where, NULL, &m, sizeof(m), image_row, &x);
	explicit_bzero(m.rdp.password, sizeof(m.rdp.password));
	return r < 0 ? r : 0;
}

static int sq_images_all(struct store *base, store_image_fn fn, void *arg)
{
	return images_where(SQ(base), "ORDER BY name", fn, arg);
}

static int sq_images_warm(struct store *base, store_image_fn fn, void *arg)
{
	return images_where(SQ(base), "WHERE warm_pool > 0 ORDER BY name", fn, arg);
}

static int sq_image_del(struct store *base, const char *name)
{
	struct sq *db = SQ(base);
	unsigned used = 0;
	int e = sq_select_uint(db, "SELECT count(*) FROM apps WHERE image=?", name, &used);
	if (e < 0)
		return e;
	if (used)
		return -EBUSY;
	/* the image and what hangs off it go together */
	bool own = !db->in_txn;
	if (own && (e = sq_begin(base)) < 0)
		return e;
	e = sq_delete_one(db, "DELETE FROM images WHERE name=?", "images", name);
	if (e == 0) {
		int t = sq_delete_one(db, "DELETE FROM templates WHERE image=?", "templates", name);
		int b = sq_delete_one(db, "DELETE FROM template_builds WHERE image=?",
				      "template_builds", name);
		e = t < 0 && t != -ENOENT ? t : b < 0 && b != -ENOENT ? b : 0;
	}
	if (own) {
		if (e == 0)
			e = sq_commit(base);
		if (e < 0)
			sq_rollback(base);
	}
	return e;
}

static int sq_app_put(struct store *base, const struct db_app *a)
{
	return sq_rec_write(SQ(base), &rec_apps, a, REC_INSERT);
}

static int sq_app_get(struct store *base, const char *alias, struct db_app *a)
{
	return sq_get_one(SQ(base), &rec_apps, alias, a, sizeof(*a));
}

static int sq_app_del(struct store *base, const char *alias)
{
	return sq_delete_one(SQ(base), "DELETE FROM apps WHERE alias=?", "apps", alias);
}

static json_object *sq_apps_json(struct store *base)
{
	struct db_app a;
	return sq_table_json(SQ(base), &rec_apps, "ORDER BY alias", REC_ALL, &a, sizeof(a));
}

/* --- sessions --- */

static int sq_session_save(struct store *base, const struct db_session *s)
{
	return sq_rec_write(SQ(base), &rec_sessions, s, REC_UPSERT);
}

struct session_scan {
	store_session_fn fn;
	void *arg;
};

static void session_row(const void *rec, void *arg)
{
	struct session_scan *x = arg;
	x->fn(rec, x->arg);
}

static int sq_sessions_live(struct store *base, store_session_fn fn, void *arg)
{
	struct db_session s;
	struct session_scan x = {fn, arg};
	int r = sq_scan(SQ(base), &rec_sessions, "WHERE state != 'ended' ORDER BY created, id",
			NULL, &s, sizeof(s), session_row, &x);
	return r < 0 ? r : 0;
}

static int sq_session_claim(struct store *base, const char *host, struct db_session *out)
{
	struct sq *db = SQ(base);
	/* one statement: a concurrent claimer sees the row taken */
	char cols[2048], sql[4096];
	sq_col_list(&rec_sessions, true, cols, sizeof(cols));
	snprintf(sql, sizeof(sql),
		 "UPDATE sessions SET state='starting', host=?1 WHERE id=(SELECT id FROM sessions"
		 " WHERE state='queued' AND (host IS NULL OR host='') ORDER BY created, id LIMIT 1)"
		 " RETURNING %s",
		 cols);
	int e;
	sqlite3_stmt *st = sq_prep_write(db, sql, &e);
	if (!st)
		return e;
	sq_bind_text(st, 1, host);
	int r = sqlite3_step(st);
	bool claimed = r == SQLITE_ROW;
	if (claimed) {
		sq_read_rec(st, &rec_sessions, out, sizeof(*out));
		r = sqlite3_step(st);
	}
	e = r == SQLITE_DONE ? (claimed ? 0 : -ENOENT) : sq_code_errno(db, r);
	sqlite3_finalize(st);
	if (e == 0)
		sq_changed(db, "sessions", out->id);
	return e;
}

static json_object *sq_sessions_ended_json(struct store *base, unsigned limit)
{
	char where[128];
	struct db_session s;
	snprintf(where, sizeof(where), "WHERE state = 'ended' ORDER BY ended DESC, id LIMIT %u",
		 limit);
	return sq_table_json(SQ(base), &rec_sessions, where, REC_V_HIST, &s, sizeof(s));
}

/* --- warm guests --- */

static int sq_warm_save(struct store *base, const struct db_warm *w)
{
	return sq_rec_write(SQ(base), &rec_warm, w, REC_UPSERT);
}

static int sq_warm_del(struct store *base, const char *id)
{
	int e = sq_delete_one(SQ(base), "DELETE FROM warm WHERE id=?", "warm", id);
	return e == -ENOENT ? 0 : e;
}

struct warm_scan {
	store_warm_fn fn;
	void *arg;
};

static void warm_row(const void *rec, void *arg)
{
	struct warm_scan *x = arg;
	x->fn(rec, x->arg);
}

static int sq_warms(struct store *base, store_warm_fn fn, void *arg)
{
	struct db_warm w;
	struct warm_scan x = {fn, arg};
	int r = sq_scan(SQ(base), &rec_warm, "ORDER BY id", NULL, &w, sizeof(w), warm_row, &x);
	return r < 0 ? r : 0;
}

/* --- templates --- */

static int sq_template_get(struct store *base, const char *image, const char *accel, char *dir,
			   size_t len)
{
	return sq_select_text(SQ(base), "SELECT dir FROM templates WHERE image=? AND accel=?",
			      image, accel, dir, len);
}

static int sq_template_set(struct store *base, const char *image, const char *accel,
			   const char *dir)
{
	struct sq *db = SQ(base);
	int e;
	sqlite3_stmt *st = sq_prep_write(
	    db,
	    dir && *dir ? "INSERT OR REPLACE INTO templates(image, accel, dir) VALUES(?,?,?)"
			: "DELETE FROM templates WHERE image=? AND accel=?",
	    &e);
	if (!st)
		return e;
	sq_bind_text(st, 1, image);
	sq_bind_text(st, 2, accel);
	if (dir && *dir)
		sq_bind_text(st, 3, dir);
	e = sq_step_done(db, st);
	if (!e)
		sq_changed(db, "templates", image);
	return e;
}

static int sq_template_used(struct store *base, const char *dir)
{
	struct sq *db = SQ(base);
	sqlite3_stmt *st = sq_prep(db, "SELECT 1 FROM templates WHERE dir=?");
	if (!st)
		return -EIO;
	sq_bind_text(st, 1, dir);
	int r = sqlite3_step(st);
	sqlite3_finalize(st);
	return r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : sq_code_errno(db, r);
}

static int sq_tbuild_add(struct store *base, const char *image)
{
	struct sq *db = SQ(base);
	int e;
	sqlite3_stmt *st =
	    sq_prep_write(db, "INSERT OR IGNORE INTO template_builds(image) VALUES(?)", &e);
	if (!st)
		return e;
	sq_bind_text(st, 1, image);
	return sq_step_done(db, st);
}

static int sq_tbuild_del(struct store *base, const char *image)
{
	int e = sq_delete_one(SQ(base), "DELETE FROM template_builds WHERE image=?",
			      "template_builds", image);
	return e == -ENOENT ? 0 : e;
}

static int sq_tbuilds(struct store *base, store_name_fn fn, void *arg)
{
	sqlite3_stmt *st = sq_prep(SQ(base), "SELECT image FROM template_builds ORDER BY image");
	if (!st)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		char image[65];
		sq_col_text(st, 0, image, sizeof(image));
		fn(image, arg);
	}
	sqlite3_finalize(st);
	return 0;
}

/* --- meta --- */

static int sq_meta_get(struct store *base, const char *key, char *out, size_t len)
{
	return sq_select_text(SQ(base), "SELECT value FROM meta WHERE key=?", key, NULL, out, len);
}

static int sq_meta_set(struct store *base, const char *key, const char *value)
{
	struct sq *db = SQ(base);
	int e;
	sqlite3_stmt *st = sq_prep_write(db, "INSERT OR REPLACE INTO meta VALUES(?, ?)", &e);
	if (!st)
		return e;
	sq_bind_text(st, 1, key);
	sq_bind_text(st, 2, value);
	return sq_step_done(db, st);
}

/* --- audit --- */

static int sq_flush(struct store *base)
{
	struct sq *db = SQ(base);
	unsigned done = 0;
	while (done < db->n_backlog &&
	       sq_rec_write(db, &rec_audit, &db->backlog[done], REC_INSERT) == 0)
		done++;
	if (done) {
		memmove(db->backlog, db->backlog + done,
			(db->n_backlog - done) * sizeof(db->backlog[0]));
		db->n_backlog -= done;
		if (!db->n_backlog)
			log_info("db: %u held audit entries written", done);
	}
	return db->n_backlog ? -EAGAIN : 0;
}

static int sq_audit(struct store *base, const struct db_audit *a)
{
	struct sq *db = SQ(base);
	/* in order: nothing jumps ahead of what is held */
	if ((db->n_backlog == 0 || sq_flush(base) == 0) &&
	    sq_rec_write(db, &rec_audit, a, REC_INSERT) == 0)
		return 0;
	if (!db->backlog)
		db->backlog = calloc(AUDIT_BACKLOG, sizeof(*db->backlog));
	if (!db->backlog || db->n_backlog == AUDIT_BACKLOG) {
		if (db->dropped++ == 0)
			log_err("db: audit backlog full: entries are lost until it drains");
		log_warn("session=%s user=%s audit not written: %s %s", a->session, a->user,
			 a->kind, a->detail);
		return -ENOSPC;
	}
	db->backlog[db->n_backlog++] = *a;
	return -EAGAIN;
}

static json_object *sq_audit_json(struct store *base, unsigned limit)
{
	sqlite3_stmt *st =
	    sq_prep(SQ(base), "SELECT id, ts, kind, user, client, session, detail FROM audit"
			      " ORDER BY id DESC LIMIT ?");
	if (st)
		sqlite3_bind_int64(st, 1, limit);
	return sq_rows_json(st);
}

#define SQ_OP(ret, name, params, args) .name = sq_##name,
static const struct store_ops sq_ops = {.name = "sqlite", .close = sq_close, STORE_OPS(SQ_OP)};
