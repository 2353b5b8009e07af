/*
 * The sqlite store. Runs on the broker's loop: WAL mode, synchronous=NORMAL,
 * one short statement or transaction per call, a busy timeout for the rare
 * external reader (sqlite3 CLI).
 */
#include "db.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct db {
	sqlite3 *h;
};

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA foreign_keys=ON;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema', '1');"
    "CREATE TABLE IF NOT EXISTS host_caps(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS user_caps(user TEXT PRIMARY KEY, max_sessions INTEGER NOT "
    "NULL);"
    "CREATE TABLE IF NOT EXISTS images(name TEXT PRIMARY KEY, base TEXT NOT NULL,"
    " kernel TEXT, initrd TEXT, append TEXT, machine TEXT NOT NULL,"
    " memory_mb INTEGER NOT NULL, ready TEXT NOT NULL, max_sessions INTEGER DEFAULT 0,"
    " keepalive INTEGER DEFAULT 0, idle INTEGER DEFAULT 0, max_lifetime INTEGER DEFAULT 0,"
    " start_timeout INTEGER DEFAULT 0, queue_wait INTEGER DEFAULT 0,"
    " sha256 TEXT, size INTEGER, mtime_ns INTEGER, virtual_mb INTEGER, warm_pool INTEGER"
    " DEFAULT 0, backend TEXT DEFAULT 'console', rdp_port INTEGER DEFAULT 0,"
    " template_dir TEXT, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS apps(alias TEXT PRIMARY KEY,"
    " image TEXT NOT NULL REFERENCES images(name), title TEXT NOT NULL, command TEXT);"
    "CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, user TEXT NOT NULL,"
    " app TEXT NOT NULL, image TEXT NOT NULL, state TEXT NOT NULL, pid INTEGER,"
    " qmp TEXT, vnc TEXT, overlay TEXT, client TEXT, end_reason TEXT, start_path TEXT,"
    " template_dir TEXT,"
    " memory_mb INTEGER, created INTEGER, started INTEGER, ready INTEGER, ended INTEGER);"
    "CREATE INDEX IF NOT EXISTS sessions_live ON sessions(state) WHERE state != 'ended';"
    "CREATE TABLE IF NOT EXISTS audit(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " ts INTEGER NOT NULL, kind TEXT NOT NULL, user TEXT, client TEXT, session TEXT,"
    " detail TEXT);";

/* Columns added since the first schema: added to older files on open. */
static const struct {
	const char *table, *column, *decl;
} ADDED[] = {
    {"images", "rdp_security", "TEXT DEFAULT 'rdp'"},
    {"images", "guest_login", "TEXT DEFAULT 'image'"},
    {"images", "guest_user", "TEXT"},
    {"images", "guest_domain", "TEXT"},
    {"images", "guest_password", "TEXT"},
    {"images", "clipboard", "INTEGER DEFAULT 0"},
    {"images", "drive", "INTEGER DEFAULT 0"},
    {"images", "remoteapp", "INTEGER DEFAULT 0"},
    {"sessions", "rdp_port", "INTEGER DEFAULT 0"},
};

static int add_columns(sqlite3 *h, char **msg)
{
	for (size_t i = 0; i < sizeof(ADDED) / sizeof(ADDED[0]); i++) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(h, "SELECT 1 FROM pragma_table_info(?) WHERE name=?", -1,
				       &st, NULL) != SQLITE_OK)
			return SQLITE_ERROR;
		sqlite3_bind_text(st, 1, ADDED[i].table, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ADDED[i].column, -1, SQLITE_STATIC);
		bool have = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (have)
			continue;
		char sql[256];
		snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", ADDED[i].table,
			 ADDED[i].column, ADDED[i].decl);
		int r = sqlite3_exec(h, sql, NULL, NULL, msg);
		if (r != SQLITE_OK)
			return r;
	}
	return SQLITE_OK;
}

struct db *db_open(const char *path, char *err, size_t errlen)
{
	struct db *db = calloc(1, sizeof(*db));
	if (!db) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int r = sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	char *msg = NULL;
	if (r == SQLITE_OK) {
		sqlite3_busy_timeout(db->h, 2000);
		r = sqlite3_exec(db->h, SCHEMA, NULL, NULL, &msg);
		if (r == SQLITE_OK)
			r = add_columns(db->h, &msg);
	}
	if (r != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(db->h));
		sqlite3_free(msg);
		sqlite3_close(db->h);
		free(db);
		return NULL;
	}
	return db;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	sqlite3_close(db->h);
	free(db);
}

static sqlite3_stmt *prep(struct db *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("sqlite: %s: %s", sql, sqlite3_errmsg(db->h));
		return NULL;
	}
	return st;
}

static int step_done(struct db *db, sqlite3_stmt *st)
{
	int r = sqlite3_step(st);
	int e = 0;
	if (r == SQLITE_CONSTRAINT)
		e = -EEXIST;
	else if (r != SQLITE_DONE && r != SQLITE_ROW) {
		log_err("sqlite: %s", sqlite3_errmsg(db->h));
		e = -EIO;
	}
	sqlite3_finalize(st);
	return e;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s && *s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	snprintf(dst, len, "%s", t ? (const char *)t : "");
}

int db_cap_get(struct db *db, const char *key, unsigned *out)
{
	sqlite3_stmt *st = prep(db, "SELECT value FROM host_caps WHERE key=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, key);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*out = (unsigned)sqlite3_column_int64(st, 0);
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}

int db_cap_set(struct db *db, const char *key, unsigned value)
{
	sqlite3_stmt *st = prep(db, "INSERT OR REPLACE INTO host_caps VALUES(?, ?)");
	if (!st)
		return -EIO;
	bind_text(st, 1, key);
	sqlite3_bind_int64(st, 2, value);
	return step_done(db, st);
}

int db_user_cap_get(struct db *db, const char *user, unsigned *max)
{
	sqlite3_stmt *st = prep(db, "SELECT max_sessions FROM user_caps WHERE user=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, user);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*max = (unsigned)sqlite3_column_int64(st, 0);
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}

int db_user_cap_set(struct db *db, const char *user, unsigned max)
{
	sqlite3_stmt *st = prep(db, "INSERT OR REPLACE INTO user_caps VALUES(?, ?)");
	if (!st)
		return -EIO;
	bind_text(st, 1, user);
	sqlite3_bind_int64(st, 2, max);
	return step_done(db, st);
}

int db_user_cap_del(struct db *db, const char *user)
{
	sqlite3_stmt *st = prep(db, "DELETE FROM user_caps WHERE user=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, user);
	int e = step_done(db, st);
	return e ? e : sqlite3_changes(db->h) ? 0 : -ENOENT;
}

/* Rows of a query as a JSON array of objects keyed by column name. */
static json_object *rows_json(struct db *db, sqlite3_stmt *st)
{
	json_object *arr = json_object_new_array();
	if (!st)
		return arr;
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_object *o = json_object_new_object();
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			const char *k = sqlite3_column_name(st, i);
			switch (sqlite3_column_type(st, i)) {
			case SQLITE_INTEGER:
				json_object_object_add(
				    o, k, json_object_new_int64(sqlite3_column_int64(st, i)));
				break;
			case SQLITE_NULL:
				break;
			default:
				json_object_object_add(
				    o, k,
				    json_object_new_string(
					(const char *)sqlite3_column_text(st, i)));
			}
		}
		json_object_array_add(arr, o);
	}
	sqlite3_finalize(st);
	return arr;
}

json_object *db_user_caps_json(struct db *db)
{
	return rows_json(db, prep(db, "SELECT user, max_sessions FROM user_caps ORDER BY user"));
}

#define IMAGE_COLS                                                                                 \
	"name, base, kernel, initrd, append, machine, memory_mb, ready, max_sessions, keepalive,"  \
	" idle, max_lifetime, start_timeout, queue_wait, sha256, size, mtime_ns, virtual_mb,"      \
	" warm_pool, backend, rdp_port, template_dir, rdp_security, guest_login, guest_user,"      \
	" guest_domain, clipboard, drive, remoteapp"

/* The listed rdp policy fields (the password is bound on its own). */
static void bind_rdp(sqlite3_stmt *st, int i, const struct db_rdp_policy *r)
{
	bind_text(st, i, r->security[0] ? r->security : "rdp");
	bind_text(st, i + 1, r->login[0] ? r->login : "image");
	bind_text(st, i + 2, r->user);
	bind_text(st, i + 3, r->domain);
	sqlite3_bind_int(st, i + 4, r->clipboard);
	sqlite3_bind_int(st, i + 5, r->drive);
	sqlite3_bind_int(st, i + 6, r->remoteapp);
}

static void bind_image(sqlite3_stmt *st, const struct db_image *m)
{
	bind_text(st, 1, m->name);
	bind_text(st, 2, m->base);
	bind_text(st, 3, m->kernel);
	bind_text(st, 4, m->initrd);
	bind_text(st, 5, m->append);
	bind_text(st, 6, m->machine);
	sqlite3_bind_int64(st, 7, m->memory_mb);
	bind_text(st, 8, m->ready);
	sqlite3_bind_int64(st, 9, m->max_sessions);
	sqlite3_bind_int64(st, 10, m->keepalive);
	sqlite3_bind_int64(st, 11, m->idle);
	sqlite3_bind_int64(st, 12, m->max_lifetime);
	sqlite3_bind_int64(st, 13, m->start_timeout);
	sqlite3_bind_int64(st, 14, m->queue_wait);
	bind_text(st, 15, m->sha256);
	sqlite3_bind_int64(st, 16, (sqlite3_int64)m->size);
	sqlite3_bind_int64(st, 17, m->mtime_ns);
	sqlite3_bind_int64(st, 18, m->virtual_mb);
	sqlite3_bind_int64(st, 19, m->warm_pool);
	bind_text(st, 20, m->backend[0] ? m->backend : "console");
	sqlite3_bind_int64(st, 21, m->rdp_port);
	bind_text(st, 22, m->template_dir);
	bind_rdp(st, 23, &m->rdp);
}

int db_image_put(struct db *db, const struct db_image *m)
{
	sqlite3_stmt *st = prep(db, "INSERT INTO images(" IMAGE_COLS ", created, guest_password)"
				    " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
				    "?,?,?,?,?,?,?,?,?)");
	if (!st)
		return -EIO;
	bind_image(st, m);
	sqlite3_bind_int64(st, 30, util_wall_s());
	bind_text(st, 31, m->rdp.password);
	return step_done(db, st);
}

int db_image_update(struct db *db, const struct db_image *m)
{
	sqlite3_stmt *st = prep(db, "UPDATE images SET max_sessions=?2, warm_pool=?3,"
				    " template_dir=?4, rdp_security=?5, guest_login=?6,"
				    " guest_user=?7, guest_domain=?8, clipboard=?9, drive=?10,"
				    " remoteapp=?11, guest_password=?12 WHERE name=?1");
	if (!st)
		return -EIO;
	bind_text(st, 1, m->name);
	sqlite3_bind_int64(st, 2, m->max_sessions);
	sqlite3_bind_int64(st, 3, m->warm_pool);
	bind_text(st, 4, m->template_dir);
	bind_rdp(st, 5, &m->rdp);
	bind_text(st, 12, m->rdp.password);
	int e = step_done(db, st);
	return e ? e : sqlite3_changes(db->h) ? 0 : -ENOENT;
}

static void read_image(sqlite3_stmt *st, struct db_image *m)
{
	memset(m, 0, sizeof(*m));
	col_text(st, 0, m->name, sizeof(m->name));
	col_text(st, 1, m->base, sizeof(m->base));
	col_text(st, 2, m->kernel, sizeof(m->kernel));
	col_text(st, 3, m->initrd, sizeof(m->initrd));
	col_text(st, 4, m->append, sizeof(m->append));
	col_text(st, 5, m->machine, sizeof(m->machine));
	m->memory_mb = (unsigned)sqlite3_column_int64(st, 6);
	col_text(st, 7, m->ready, sizeof(m->ready));
	m->max_sessions = (unsigned)sqlite3_column_int64(st, 8);
	m->keepalive = (unsigned)sqlite3_column_int64(st, 9);
	m->idle = (unsigned)sqlite3_column_int64(st, 10);
	m->max_lifetime = (unsigned)sqlite3_column_int64(st, 11);
	m->start_timeout = (unsigned)sqlite3_column_int64(st, 12);
	m->queue_wait = (unsigned)sqlite3_column_int64(st, 13);
	col_text(st, 14, m->sha256, sizeof(m->sha256));
	m->size = (uint64_t)sqlite3_column_int64(st, 15);
	m->mtime_ns = sqlite3_column_int64(st, 16);
	m->virtual_mb = (unsigned)sqlite3_column_int64(st, 17);
	m->warm_pool = (unsigned)sqlite3_column_int64(st, 18);
	col_text(st, 19, m->backend, sizeof(m->backend));
	m->rdp_port = (unsigned)sqlite3_column_int64(st, 20);
	col_text(st, 21, m->template_dir, sizeof(m->template_dir));
	col_text(st, 22, m->rdp.security, sizeof(m->rdp.security));
	col_text(st, 23, m->rdp.login, sizeof(m->rdp.login));
	col_text(st, 24, m->rdp.user, sizeof(m->rdp.user));
	col_text(st, 25, m->rdp.domain, sizeof(m->rdp.domain));
	m->rdp.clipboard = sqlite3_column_int(st, 26) != 0;
	m->rdp.drive = sqlite3_column_int(st, 27) != 0;
	m->rdp.remoteapp = sqlite3_column_int(st, 28) != 0;
	col_text(st, 29, m->rdp.password, sizeof(m->rdp.password));
}

int db_image_get(struct db *db, const char *name, struct db_image *m)
{
	sqlite3_stmt *st =
	    prep(db, "SELECT " IMAGE_COLS ", guest_password FROM images WHERE name=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, name);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		read_image(st, m);
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}

int db_images_warm(struct db *db, void (*fn)(const struct db_image *img, void *arg), void *arg)
{
	sqlite3_stmt *st =
	    prep(db, "SELECT " IMAGE_COLS " FROM images WHERE warm_pool > 0 ORDER BY name");
	if (!st)
		return -EIO;
	struct db_image m;
	while (sqlite3_step(st) == SQLITE_ROW) {
		read_image(st, &m);
		fn(&m, arg);
	}
	sqlite3_finalize(st);
	return 0;
}

int db_image_del(struct db *db, const char *name)
{
	sqlite3_stmt *st = prep(db, "SELECT count(*) FROM apps WHERE image=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, name);
	int used = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	if (used)
		return -EBUSY;
	st = prep(db, "DELETE FROM images WHERE name=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, name);
	int e = step_done(db, st);
	return e ? e : sqlite3_changes(db->h) ? 0 : -ENOENT;
}

json_object *db_images_json(struct db *db)
{
	return rows_json(db, prep(db, "SELECT " IMAGE_COLS ", created FROM images ORDER BY name"));
}

int db_app_put(struct db *db, const struct db_app *a)
{
	sqlite3_stmt *st = prep(db, "INSERT INTO apps VALUES(?,?,?,?)");
	if (!st)
		return -EIO;
	bind_text(st, 1, a->alias);
	bind_text(st, 2, a->image);
	bind_text(st, 3, a->title);
	bind_text(st, 4, a->command);
	return step_done(db, st);
}

int db_app_get(struct db *db, const char *alias, struct db_app *a)
{
	sqlite3_stmt *st = prep(db, "SELECT alias, image, title, command FROM apps WHERE alias=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, alias);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		col_text(st, 0, a->alias, sizeof(a->alias));
		col_text(st, 1, a->image, sizeof(a->image));
		col_text(st, 2, a->title, sizeof(a->title));
		col_text(st, 3, a->command, sizeof(a->command));
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}

int db_app_del(struct db *db, const char *alias)
{
	sqlite3_stmt *st = prep(db, "DELETE FROM apps WHERE alias=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, alias);
	int e = step_done(db, st);
	return e ? e : sqlite3_changes(db->h) ? 0 : -ENOENT;
}

json_object *db_apps_json(struct db *db)
{
	return rows_json(db,
			 prep(db, "SELECT alias, image, title, command FROM apps ORDER BY alias"));
}

int db_session_save(struct db *db, const struct db_session *s)
{
	sqlite3_stmt *st = prep(db, "INSERT OR REPLACE INTO sessions(id, user, app, image, state,"
				    " pid, qmp, vnc, overlay, client, end_reason, start_path,"
				    " memory_mb, created, started, ready, ended, template_dir,"
				    " rdp_port) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
	if (!st)
		return -EIO;
	bind_text(st, 1, s->id);
	bind_text(st, 2, s->user);
	bind_text(st, 3, s->app);
	bind_text(st, 4, s->image);
	bind_text(st, 5, s->state);
	sqlite3_bind_int64(st, 6, s->pid);
	bind_text(st, 7, s->qmp);
	bind_text(st, 8, s->vnc);
	bind_text(st, 9, s->overlay);
	bind_text(st, 10, s->client);
	bind_text(st, 11, s->end_reason);
	bind_text(st, 12, s->start_path);
	sqlite3_bind_int64(st, 13, s->memory_mb);
	sqlite3_bind_int64(st, 14, s->created);
	sqlite3_bind_int64(st, 15, s->started);
	sqlite3_bind_int64(st, 16, s->ready);
	sqlite3_bind_int64(st, 17, s->ended);
	bind_text(st, 18, s->template_dir);
	sqlite3_bind_int64(st, 19, s->rdp_port);
	return step_done(db, st);
}

int db_sessions_live(struct db *db, void (*fn)(const struct db_session *s, void *arg), void *arg)
{
	sqlite3_stmt *st = prep(db, "SELECT id, user, app, image, state, pid, qmp, vnc, overlay,"
				    " client, start_path, memory_mb, created, started, ready,"
				    " template_dir, rdp_port FROM sessions WHERE state != 'ended'"
				    " ORDER BY created, id");
	if (!st)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct db_session s;
		memset(&s, 0, sizeof(s));
		col_text(st, 0, s.id, sizeof(s.id));
		col_text(st, 1, s.user, sizeof(s.user));
		col_text(st, 2, s.app, sizeof(s.app));
		col_text(st, 3, s.image, sizeof(s.image));
		col_text(st, 4, s.state, sizeof(s.state));
		s.pid = (pid_t)sqlite3_column_int64(st, 5);
		col_text(st, 6, s.qmp, sizeof(s.qmp));
		col_text(st, 7, s.vnc, sizeof(s.vnc));
		col_text(st, 8, s.overlay, sizeof(s.overlay));
		col_text(st, 9, s.client, sizeof(s.client));
		col_text(st, 10, s.start_path, sizeof(s.start_path));
		s.memory_mb = (unsigned)sqlite3_column_int64(st, 11);
		s.created = sqlite3_column_int64(st, 12);
		s.started = sqlite3_column_int64(st, 13);
		s.ready = sqlite3_column_int64(st, 14);
		col_text(st, 15, s.template_dir, sizeof(s.template_dir));
		s.rdp_port = (unsigned)sqlite3_column_int64(st, 16);
		fn(&s, arg);
	}
	sqlite3_finalize(st);
	return 0;
}

json_object *db_sessions_ended_json(struct db *db, unsigned limit)
{
	sqlite3_stmt *st =
	    prep(db, "SELECT id, user, app, image, state, client, end_reason,"
		     " start_path, created, started, ready, ended, memory_mb FROM sessions"
		     " WHERE state = 'ended' ORDER BY ended DESC, id LIMIT ?");
	if (st)
		sqlite3_bind_int64(st, 1, limit);
	return rows_json(db, st);
}

void db_audit(struct db *db, const char *kind, const char *user, const char *client,
	      const char *session, const char *detail)
{
	sqlite3_stmt *st = prep(db, "INSERT INTO audit(ts, kind, user, client, session, detail)"
				    " VALUES(?,?,?,?,?,?)");
	if (!st)
		return;
	sqlite3_bind_int64(st, 1, util_wall_s());
	bind_text(st, 2, kind);
	bind_text(st, 3, user);
	bind_text(st, 4, client);
	bind_text(st, 5, session);
	bind_text(st, 6, detail);
	step_done(db, st);
}

json_object *db_audit_json(struct db *db, unsigned limit)
{
	sqlite3_stmt *st = prep(db, "SELECT id, ts, kind, user, client, session, detail FROM audit"
				    " ORDER BY id DESC LIMIT ?");
	if (st)
		sqlite3_bind_int64(st, 1, limit);
	return rows_json(db, st);
}
