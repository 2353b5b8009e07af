/*
 * The sqlite store. Runs on the broker's loop: WAL mode, synchronous=NORMAL,
 * one short statement or transaction per call. Another process holding the
 * database locked (an admin's sqlite3 shell) costs the loop at most
 * BUSY_MS per statement, and after one busy answer writes fail fast with
 * -EAGAIN for BACKOFF_MS instead of blocking again; the broker keeps what it
 * could not write and writes it later.
 *
 * Records with many fields (images, sessions, warm guests) are described
 * once, in a column table; everything else here is made from those tables.
 */
#include "db.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUSY_MS 100
#define BACKOFF_MS 1000
#define AUDIT_BACKLOG 512

struct audit_rec {
	int64_t ts;
	char kind[32], user[65], client[64], session[33], detail[1024];
};

struct db {
	sqlite3 *h;
	int64_t backoff_until;
	struct audit_rec *backlog;
	unsigned n_backlog;
	unsigned dropped;
};

/* --- column tables --- */

enum ctype { C_TEXT, C_INT, C_UINT, C_I64, C_U64, C_BOOL };

struct col {
	const char *name;
	enum ctype type;
	size_t off, size;
	const char *decl; /* SQL type and default */
	bool secret;	  /* never listed (db_images_json) */
};

struct table {
	const char *name;
	const struct col *cols;
	size_t n; /* the first column is the primary key */
};

#define COL(S, m, t, d)                                                                            \
	{                                                                                          \
#m, t, offsetof(struct S, m), sizeof(((struct S *)0)->m), d, false                 \
	}
#define TEXT(S, m) COL(S, m, C_TEXT, "TEXT")
#define UINT(S, m) COL(S, m, C_UINT, "INTEGER DEFAULT 0")
#define I64(S, m) COL(S, m, C_I64, "INTEGER DEFAULT 0")

static const struct col image_cols[] = {
    TEXT(db_image, name),
    TEXT(db_image, base),
    TEXT(db_image, kernel),
    TEXT(db_image, initrd),
    TEXT(db_image, append),
    TEXT(db_image, machine),
    UINT(db_image, memory_mb),
    TEXT(db_image, ready),
    UINT(db_image, max_sessions),
    UINT(db_image, keepalive),
    UINT(db_image, idle),
    UINT(db_image, max_lifetime),
    UINT(db_image, start_timeout),
    UINT(db_image, queue_wait),
    TEXT(db_image, sha256),
    COL(db_image, size, C_U64, "INTEGER DEFAULT 0"),
    I64(db_image, mtime_ns),
    UINT(db_image, virtual_mb),
    UINT(db_image, warm_pool),
    COL(db_image, backend, C_TEXT, "TEXT DEFAULT 'console'"),
    UINT(db_image, rdp_port),
    {"rdp_security", C_TEXT, offsetof(struct db_image, rdp.security),
     sizeof(((struct db_image *)0)->rdp.security), "TEXT DEFAULT 'rdp'", false},
    {"guest_login", C_TEXT, offsetof(struct db_image, rdp.login),
     sizeof(((struct db_image *)0)->rdp.login), "TEXT DEFAULT 'image'", false},
    {"guest_user", C_TEXT, offsetof(struct db_image, rdp.user),
     sizeof(((struct db_image *)0)->rdp.user), "TEXT", false},
    {"guest_domain", C_TEXT, offsetof(struct db_image, rdp.domain),
     sizeof(((struct db_image *)0)->rdp.domain), "TEXT", false},
    {"guest_password", C_TEXT, offsetof(struct db_image, rdp.password),
     sizeof(((struct db_image *)0)->rdp.password), "TEXT", true},
    {"clipboard", C_BOOL, offsetof(struct db_image, rdp.clipboard), sizeof(bool),
     "INTEGER DEFAULT 0", false},
    {"drive", C_BOOL, offsetof(struct db_image, rdp.drive), sizeof(bool), "INTEGER DEFAULT 0",
     false},
    {"remoteapp", C_BOOL, offsetof(struct db_image, rdp.remoteapp), sizeof(bool),
     "INTEGER DEFAULT 0", false},
    I64(db_image, created),
};

static const struct col session_cols[] = {
    TEXT(db_session, id),	    TEXT(db_session, user),
    TEXT(db_session, app),	    TEXT(db_session, image),
    TEXT(db_session, state),	    COL(db_session, pid, C_INT, "INTEGER"),
    TEXT(db_session, qmp),	    TEXT(db_session, vnc),
    TEXT(db_session, overlay),	    TEXT(db_session, client),
    TEXT(db_session, end_reason),   TEXT(db_session, start_path),
    TEXT(db_session, template_dir), UINT(db_session, rdp_port),
    UINT(db_session, memory_mb),    I64(db_session, created),
    I64(db_session, started),	    I64(db_session, ready),
    I64(db_session, ended),	    TEXT(db_session, accel),
};

static const struct col warm_cols[] = {
    TEXT(db_warm, id),
    TEXT(db_warm, image),
    COL(db_warm, pid, C_INT, "INTEGER"),
    TEXT(db_warm, template_dir),
    UINT(db_warm, memory_mb),
    TEXT(db_warm, accel),
    COL(db_warm, ready, C_BOOL, "INTEGER DEFAULT 0"),
};

#define TABLE(n, c)                                                                                \
	{                                                                                          \
		n, c, sizeof(c) / sizeof(c[0])                                                     \
	}
static const struct table T_IMAGES = TABLE("images", image_cols);
static const struct table T_SESSIONS = TABLE("sessions", session_cols);
static const struct table T_WARM = TABLE("warm", warm_cols);

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
static int add_columns(sqlite3 *h, const struct table *t, char **msg)
{
	for (size_t i = 0; i < t->n; i++) {
		if (has_column(h, t->name, t->cols[i].name))
			continue;
		char sql[256];
		snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", t->name,
			 t->cols[i].name, t->cols[i].decl);
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
		/* opening may wait for a lock longer than a running loop would */
		sqlite3_busy_timeout(db->h, 10000);
		r = sqlite3_exec(db->h, SCHEMA, NULL, NULL, &msg);
		const struct table *ts[] = {&T_IMAGES, &T_SESSIONS, &T_WARM};
		for (unsigned i = 0; r == SQLITE_OK && i < 3; i++)
			r = add_columns(db->h, ts[i], &msg);
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
	return db;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	db_flush(db);
	if (db->n_backlog || db->dropped)
		log_err("db: %u audit entries could not be written", db->n_backlog + db->dropped);
	sqlite3_close(db->h);
	free(db->backlog);
	free(db);
}

void db_patience(struct db *db, int ms)
{
	db->backoff_until = 0;
	sqlite3_busy_timeout(db->h, ms);
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

static int code_errno(struct db *db, int r)
{
	switch (r) {
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		if (db->backoff_until <= util_now_ms())
			log_warn("sqlite: the database is locked by another process: writes wait");
		db->backoff_until = util_now_ms() + BACKOFF_MS;
		return -EAGAIN;
	case SQLITE_FULL:
		log_err("sqlite: the disk is full");
		return -ENOSPC;
	default:
		log_err("sqlite: %s", sqlite3_errmsg(db->h));
		return -EIO;
	}
}

/* A write statement: fails fast while the database was recently locked. */
static sqlite3_stmt *prep_write(struct db *db, const char *sql, int *e)
{
	if (db->backoff_until > util_now_ms()) {
		*e = -EAGAIN;
		return NULL;
	}
	sqlite3_stmt *st = prep(db, sql);
	*e = st ? 0 : -EIO;
	return st;
}

static int step_done(struct db *db, sqlite3_stmt *st)
{
	int e = code_errno(db, sqlite3_step(st));
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

/* --- generic record access through a column table --- */

/* "a, b, c" (SECRET columns only if WITH_SECRET) into OUT. */
static void col_list(const struct table *t, bool with_secret, char *out, size_t len)
{
	size_t n = 0;
	out[0] = '\0';
	for (size_t i = 0; i < t->n; i++)
		if (with_secret || !t->cols[i].secret)
			n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s", n ? ", " : "",
					      t->cols[i].name);
}

static void bind_rec(sqlite3_stmt *st, const struct table *t, const void *rec)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct col *c = &t->cols[i];
		const char *p = (const char *)rec + c->off;
		int k = (int)i + 1;
		switch (c->type) {
		case C_TEXT:
			bind_text(st, k, p);
			break;
		case C_INT:
			sqlite3_bind_int64(st, k, *(const int *)p);
			break;
		case C_UINT:
			sqlite3_bind_int64(st, k, *(const unsigned *)p);
			break;
		case C_I64:
			sqlite3_bind_int64(st, k, *(const int64_t *)p);
			break;
		case C_U64:
			sqlite3_bind_int64(st, k, (sqlite3_int64) * (const uint64_t *)p);
			break;
		case C_BOOL:
			sqlite3_bind_int(st, k, *(const bool *)p);
			break;
		}
	}
}

/* Read a row selected with col_list(t, true) into REC; bounded by each field's size. */
static void read_rec(sqlite3_stmt *st, const struct table *t, void *rec, size_t recsize)
{
	memset(rec, 0, recsize);
	for (size_t i = 0; i < t->n; i++) {
		const struct col *c = &t->cols[i];
		char *p = (char *)rec + c->off;
		int k = (int)i;
		sqlite3_int64 v = sqlite3_column_int64(st, k);
		switch (c->type) {
		case C_TEXT:
			col_text(st, k, p, c->size);
			break;
		case C_INT:
			*(int *)p = v < 0 || v > 0x7fffffff ? 0 : (int)v;
			break;
		case C_UINT:
			*(unsigned *)p = v < 0 || v > 0xffffffffLL ? 0 : (unsigned)v;
			break;
		case C_I64:
			*(int64_t *)p = v;
			break;
		case C_U64:
			*(uint64_t *)p = v < 0 ? 0 : (uint64_t)v;
			break;
		case C_BOOL:
			*(bool *)p = v != 0;
			break;
		}
	}
}

/*
 * A whole record: INSERT (-EEXIST if its key exists), an upsert (UPSERT), or
 * an UPDATE of every column but the key (-ENOENT if there is no such row).
 */
enum rec_op { REC_INSERT, REC_UPSERT, REC_UPDATE };

static int rec_write(struct db *db, const struct table *t, const void *rec, enum rec_op op)
{
	char cols[2048], sql[8192], marks[512], sets[4096];
	col_list(t, true, cols, sizeof(cols));
	size_t n = 0, m = 0;
	for (size_t i = 0; i < t->n; i++) {
		n += (size_t)snprintf(marks + n, sizeof(marks) - n, "%s?", i ? "," : "");
		if (i)
			m += (size_t)snprintf(sets + m, sizeof(sets) - m, "%s%s=?%zu",
					      i > 1 ? ", " : "", t->cols[i].name, i + 1);
	}
	if (op == REC_UPDATE)
		snprintf(sql, sizeof(sql), "UPDATE %s SET %s WHERE %s=?1", t->name, sets,
			 t->cols[0].name);
	else
		snprintf(sql, sizeof(sql), "INSERT INTO %s(%s) VALUES(%s)%s%s%s%s", t->name, cols,
			 marks, op == REC_UPSERT ? " ON CONFLICT(" : "",
			 op == REC_UPSERT ? t->cols[0].name : "",
			 op == REC_UPSERT ? ") DO UPDATE SET " : "", op == REC_UPSERT ? sets : "");
	int e;
	sqlite3_stmt *st = prep_write(db, sql, &e);
	if (!st)
		return e;
	bind_rec(st, t, rec);
	e = step_done(db, st);
	if (!e && op == REC_UPDATE && sqlite3_changes(db->h) == 0)
		e = -ENOENT;
	return e;
}

/* SELECT every column of T, then WHERE (may be empty): a new statement. */
static sqlite3_stmt *rec_select(struct db *db, const struct table *t, const char *where)
{
	char cols[2048], sql[4096];
	col_list(t, true, cols, sizeof(cols));
	snprintf(sql, sizeof(sql), "SELECT %s FROM %s %s", cols, t->name, where);
	return prep(db, sql);
}

/* --- caps --- */

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
	int e;
	sqlite3_stmt *st = prep_write(db, "INSERT OR REPLACE INTO host_caps VALUES(?, ?)", &e);
	if (!st)
		return e;
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
	int e;
	sqlite3_stmt *st = prep_write(db, "INSERT OR REPLACE INTO user_caps VALUES(?, ?)", &e);
	if (!st)
		return e;
	bind_text(st, 1, user);
	sqlite3_bind_int64(st, 2, max);
	return step_done(db, st);
}

/* DELETE with one text parameter: 0, -ENOENT (no row) or an error. */
static int delete_one(struct db *db, const char *sql, const char *key)
{
	int e;
	sqlite3_stmt *st = prep_write(db, sql, &e);
	if (!st)
		return e;
	bind_text(st, 1, key);
	e = step_done(db, st);
	return e ? e : sqlite3_changes(db->h) ? 0 : -ENOENT;
}

int db_user_cap_del(struct db *db, const char *user)
{
	return delete_one(db, "DELETE FROM user_caps WHERE user=?", user);
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

/* --- images and apps --- */

int db_image_put(struct db *db, const struct db_image *m)
{
	struct db_image row = *m;
	if (!row.backend[0])
		snprintf(row.backend, sizeof(row.backend), "console");
	if (!row.rdp.security[0])
		snprintf(row.rdp.security, sizeof(row.rdp.security), "rdp");
	if (!row.rdp.login[0])
		snprintf(row.rdp.login, sizeof(row.rdp.login), "image");
	if (!row.created)
		row.created = util_wall_s();
	int e = rec_write(db, &T_IMAGES, &row, REC_INSERT);
	explicit_bzero(row.rdp.password, sizeof(row.rdp.password));
	return e;
}

int db_image_update(struct db *db, const struct db_image *m)
{
	return rec_write(db, &T_IMAGES, m, REC_UPDATE);
}

int db_image_get(struct db *db, const char *name, struct db_image *m)
{
	sqlite3_stmt *st = rec_select(db, &T_IMAGES, "WHERE name=?");
	if (!st)
		return -EIO;
	bind_text(st, 1, name);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		read_rec(st, &T_IMAGES, m, sizeof(*m));
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}

static int images_where(struct db *db, const char *where,
			void (*fn)(const struct db_image *img, void *arg), void *arg)
{
	sqlite3_stmt *st = rec_select(db, &T_IMAGES, where);
	if (!st)
		return -EIO;
	struct db_image m = {0};
	while (sqlite3_step(st) == SQLITE_ROW) {
		read_rec(st, &T_IMAGES, &m, sizeof(m));
		fn(&m, arg);
	}
	explicit_bzero(m.rdp.password, sizeof(m.rdp.password));
	sqlite3_finalize(st);
	return 0;
}

int db_images_all(struct db *db, void (*fn)(const struct db_image *img, void *arg), void *arg)
{
	return images_where(db, "ORDER BY name", fn, arg);
}

int db_images_warm(struct db *db, void (*fn)(const struct db_image *img, void *arg), void *arg)
{
	return images_where(db, "WHERE warm_pool > 0 ORDER BY name", fn, arg);
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
	int e = delete_one(db, "DELETE FROM images WHERE name=?", name);
	if (e == 0) {
		delete_one(db, "DELETE FROM templates WHERE image=?", name);
		delete_one(db, "DELETE FROM template_builds WHERE image=?", name);
	}
	return e;
}

json_object *db_images_json(struct db *db)
{
	char cols[2048], sql[2200];
	col_list(&T_IMAGES, false, cols, sizeof(cols));
	snprintf(sql, sizeof(sql), "SELECT %s FROM images ORDER BY name", cols);
	return rows_json(db, prep(db, sql));
}

int db_app_put(struct db *db, const struct db_app *a)
{
	int e;
	sqlite3_stmt *st = prep_write(db, "INSERT INTO apps VALUES(?,?,?,?)", &e);
	if (!st)
		return e;
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
	return delete_one(db, "DELETE FROM apps WHERE alias=?", alias);
}

json_object *db_apps_json(struct db *db)
{
	return rows_json(db,
			 prep(db, "SELECT alias, image, title, command FROM apps ORDER BY alias"));
}

/* --- sessions --- */

int db_session_save(struct db *db, const struct db_session *s)
{
	return rec_write(db, &T_SESSIONS, s, REC_UPSERT);
}

int db_sessions_live(struct db *db, void (*fn)(const struct db_session *s, void *arg), void *arg)
{
	sqlite3_stmt *st =
	    rec_select(db, &T_SESSIONS, "WHERE state != 'ended' ORDER BY created, id");
	if (!st)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct db_session s;
		read_rec(st, &T_SESSIONS, &s, sizeof(s));
		fn(&s, arg);
	}
	sqlite3_finalize(st);
	return 0;
}

json_object *db_sessions_ended_json(struct db *db, unsigned limit)
{
	sqlite3_stmt *st =
	    prep(db, "SELECT id, user, app, image, state, client, end_reason,"
		     " start_path, created, started, ready, ended, memory_mb, accel FROM sessions"
		     " WHERE state = 'ended' ORDER BY ended DESC, id LIMIT ?");
	if (st)
		sqlite3_bind_int64(st, 1, limit);
	return rows_json(db, st);
}

/* --- warm guests --- */

int db_warm_save(struct db *db, const struct db_warm *w)
{
	return rec_write(db, &T_WARM, w, REC_UPSERT);
}

int db_warm_del(struct db *db, const char *id)
{
	int e = delete_one(db, "DELETE FROM warm WHERE id=?", id);
	return e == -ENOENT ? 0 : e;
}

int db_warms(struct db *db, void (*fn)(const struct db_warm *w, void *arg), void *arg)
{
	sqlite3_stmt *st = rec_select(db, &T_WARM, "ORDER BY id");
	if (!st)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct db_warm w;
		read_rec(st, &T_WARM, &w, sizeof(w));
		fn(&w, arg);
	}
	sqlite3_finalize(st);
	return 0;
}

/* --- templates --- */

/* One text value: the first column of SQL's first row, with up to two text keys. */
static int select_text(struct db *db, const char *sql, const char *k1, const char *k2, char *out,
		       size_t len)
{
	out[0] = '\0';
	sqlite3_stmt *st = prep(db, sql);
	if (!st)
		return -EIO;
	bind_text(st, 1, k1);
	if (k2)
		bind_text(st, 2, k2);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		col_text(st, 0, out, len);
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}

int db_template_get(struct db *db, const char *image, const char *accel, char *dir, size_t len)
{
	return select_text(db, "SELECT dir FROM templates WHERE image=? AND accel=?", image, accel,
			   dir, len);
}

int db_template_set(struct db *db, const char *image, const char *accel, const char *dir)
{
	int e;
	sqlite3_stmt *st = prep_write(
	    db,
	    dir && *dir ? "INSERT OR REPLACE INTO templates(image, accel, dir) VALUES(?,?,?)"
			: "DELETE FROM templates WHERE image=? AND accel=?",
	    &e);
	if (!st)
		return e;
	bind_text(st, 1, image);
	bind_text(st, 2, accel);
	if (dir && *dir)
		bind_text(st, 3, dir);
	return step_done(db, st);
}

bool db_template_used(struct db *db, const char *dir)
{
	sqlite3_stmt *st = prep(db, "SELECT 1 FROM templates WHERE dir=?");
	if (!st)
		return true; /* when in doubt, keep it */
	bind_text(st, 1, dir);
	int r = sqlite3_step(st);
	sqlite3_finalize(st);
	return r != SQLITE_DONE;
}

int db_tbuild_add(struct db *db, const char *image)
{
	int e;
	sqlite3_stmt *st =
	    prep_write(db, "INSERT OR IGNORE INTO template_builds(image) VALUES(?)", &e);
	if (!st)
		return e;
	bind_text(st, 1, image);
	return step_done(db, st);
}

int db_tbuild_del(struct db *db, const char *image)
{
	int e = delete_one(db, "DELETE FROM template_builds WHERE image=?", image);
	return e == -ENOENT ? 0 : e;
}

int db_tbuilds(struct db *db, void (*fn)(const char *image, void *arg), void *arg)
{
	sqlite3_stmt *st = prep(db, "SELECT image FROM template_builds ORDER BY image");
	if (!st)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		char image[65];
		col_text(st, 0, image, sizeof(image));
		fn(image, arg);
	}
	sqlite3_finalize(st);
	return 0;
}

/* --- meta --- */

int db_meta_get(struct db *db, const char *key, char *out, size_t len)
{
	return select_text(db, "SELECT value FROM meta WHERE key=?", key, NULL, out, len);
}

int db_meta_set(struct db *db, const char *key, const char *value)
{
	int e;
	sqlite3_stmt *st = prep_write(db, "INSERT OR REPLACE INTO meta VALUES(?, ?)", &e);
	if (!st)
		return e;
	bind_text(st, 1, key);
	bind_text(st, 2, value);
	return step_done(db, st);
}

/* --- audit --- */

static int audit_write(struct db *db, const struct audit_rec *a)
{
	int e;
	sqlite3_stmt *st = prep_write(db,
				      "INSERT INTO audit(ts, kind, user, client, session, detail)"
				      " VALUES(?,?,?,?,?,?)",
				      &e);
	if (!st)
		return e;
	sqlite3_bind_int64(st, 1, a->ts);
	bind_text(st, 2, a->kind);
	bind_text(st, 3, a->user);
	bind_text(st, 4, a->client);
	bind_text(st, 5, a->session);
	bind_text(st, 6, a->detail);
	return step_done(db, st);
}

int db_flush(struct db *db)
{
	unsigned done = 0;
	while (done < db->n_backlog && audit_write(db, &db->backlog[done]) == 0)
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

void db_audit(struct db *db, const char *kind, const char *user, const char *client,
	      const char *session, const char *detail)
{
	struct audit_rec a = {.ts = util_wall_s()};
	snprintf(a.kind, sizeof(a.kind), "%s", kind ? kind : "");
	snprintf(a.user, sizeof(a.user), "%s", user ? user : "");
	snprintf(a.client, sizeof(a.client), "%s", client ? client : "");
	snprintf(a.session, sizeof(a.session), "%s", session ? session : "");
	snprintf(a.detail, sizeof(a.detail), "%s", detail ? detail : "");
	/* in order: nothing jumps ahead of what is held */
	if ((db->n_backlog == 0 || db_flush(db) == 0) && audit_write(db, &a) == 0)
		return;
	if (!db->backlog)
		db->backlog = calloc(AUDIT_BACKLOG, sizeof(*db->backlog));
	if (!db->backlog || db->n_backlog == AUDIT_BACKLOG) {
		if (db->dropped++ == 0)
			log_err("db: audit backlog full: entries are lost until it drains");
		log_warn("audit not written: %s user=%s session=%s %s", a.kind, a.user, a.session,
			 a.detail);
		return;
	}
	db->backlog[db->n_backlog++] = a;
}

json_object *db_audit_json(struct db *db, unsigned limit)
{
	sqlite3_stmt *st = prep(db, "SELECT id, ts, kind, user, client, session, detail FROM audit"
				    " ORDER BY id DESC LIMIT ?");
	if (st)
		sqlite3_bind_int64(st, 1, limit);
	return rows_json(db, st);
}
