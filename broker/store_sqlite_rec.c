/*
 * The sqlite store's plumbing: statements with the store's error
 * convention, and records read and written through record.h's tables.
 * Shared by store_sqlite.c only.
 */
#include "record.h"
#include "store_sqlite.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct json_scan {
	json_object *arr;
	const struct rec_table *t;
	unsigned views;
};

/* Subscribers hear of a committed change (inside a transaction: at its commit). */
void sq_changed(struct sq *db, const char *table, const char *key)
{
	if (db->in_txn) {
		db->txn_changed = true;
		return;
	}
	for (unsigned i = 0; i < SUBSCRIBERS; i++)
		if (db->subs[i].fn)
			db->subs[i].fn(table, key, db->subs[i].arg);
}

sqlite3_stmt *sq_prep(struct sq *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("sqlite: %s: %s", sql, sqlite3_errmsg(db->h));
		return NULL;
	}
	return st;
}

int sq_code_errno(struct sq *db, int r)
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
sqlite3_stmt *sq_prep_write(struct sq *db, const char *sql, int *e)
{
	if (db->backoff_until > util_now_ms()) {
		*e = -EAGAIN;
		return NULL;
	}
	sqlite3_stmt *st = sq_prep(db, sql);
	*e = st ? 0 : -EIO;
	return st;
}

int sq_step_done(struct sq *db, sqlite3_stmt *st)
{
	int e = sq_code_errno(db, sqlite3_step(st));
	sqlite3_finalize(st);
	return e;
}

void sq_bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s && *s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

void sq_col_text(sqlite3_stmt *st, int i, char *dst, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	snprintf(dst, len, "%s", t ? (const char *)t : "");
}

/* "a, b, c" (SECRET columns only if WITH_SECRET) into OUT. */
void sq_col_list(const struct rec_table *t, bool with_secret, char *out, size_t len)
{
	size_t n = 0;
	out[0] = '\0';
	for (size_t i = 0; i < t->n; i++)
		if (with_secret || !(t->fields[i].flags & REC_SECRET))
			n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s", n ? ", " : "",
					      t->fields[i].key);
}

void sq_bind_rec(sqlite3_stmt *st, const struct rec_table *t, const void *rec)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct rec_field *c = &t->fields[i];
		const char *p = (const char *)rec + c->off;
		int k = (int)i + 1;
		switch (c->kind) {
		case REC_TEXT:
			sq_bind_text(st, k, p);
			break;
		case REC_INT:
			sqlite3_bind_int64(st, k, *(const int *)p);
			break;
		case REC_UINT:
			sqlite3_bind_int64(st, k, *(const unsigned *)p);
			break;
		case REC_I64:
			sqlite3_bind_int64(st, k, *(const int64_t *)p);
			break;
		case REC_U64:
			sqlite3_bind_int64(st, k, (sqlite3_int64) * (const uint64_t *)p);
			break;
		case REC_BOOL:
			sqlite3_bind_int(st, k, *(const bool *)p);
			break;
		}
	}
}

/* Read a row selected with sq_col_list(t, true) into REC; bounded by each field's size. */
void sq_read_rec(sqlite3_stmt *st, const struct rec_table *t, void *rec, size_t recsize)
{
	memset(rec, 0, recsize);
	for (size_t i = 0; i < t->n; i++) {
		const struct rec_field *c = &t->fields[i];
		if (c->kind == REC_TEXT)
			sq_col_text(st, (int)i, (char *)rec + c->off, c->size);
		else
			rec_set_number(c, rec, sqlite3_column_int64(st, (int)i));
	}
}

int sq_rec_write(struct sq *db, const struct rec_table *t, const void *rec, enum rec_op op)
{
	char cols[2048], sql[8192], marks[512], sets[4096];
	sq_col_list(t, true, cols, sizeof(cols));
	size_t n = 0, m = 0;
	for (size_t i = 0; i < t->n; i++) {
		n += (size_t)snprintf(marks + n, sizeof(marks) - n, "%s?", i ? "," : "");
		if (i)
			m += (size_t)snprintf(sets + m, sizeof(sets) - m, "%s%s=?%zu",
					      i > 1 ? ", " : "", t->fields[i].key, i + 1);
	}
	if (op == REC_UPDATE)
		snprintf(sql, sizeof(sql), "UPDATE %s SET %s WHERE %s=?1", t->name, sets,
			 t->fields[0].key);
	else
		snprintf(sql, sizeof(sql), "INSERT INTO %s(%s) VALUES(%s)%s%s%s%s", t->name, cols,
			 marks, op == REC_UPSERT ? " ON CONFLICT(" : "",
			 op == REC_UPSERT ? t->fields[0].key : "",
			 op == REC_UPSERT ? ") DO UPDATE SET " : "", op == REC_UPSERT ? sets : "");
	int e;
	sqlite3_stmt *st = sq_prep_write(db, sql, &e);
	if (!st)
		return e;
	sq_bind_rec(st, t, rec);
	e = sq_step_done(db, st);
	if (!e && op == REC_UPDATE && sqlite3_changes(db->h) == 0)
		e = -ENOENT;
	if (!e)
		sq_changed(db, t->name, t->fields[0].kind == REC_TEXT ? (const char *)rec : "");
	return e;
}

/* SELECT every column of T, then WHERE (may be empty): a new statement. */
sqlite3_stmt *sq_rec_select(struct sq *db, const struct rec_table *t, const char *where)
{
	char cols[2048], sql[4096];
	sq_col_list(t, true, cols, sizeof(cols));
	snprintf(sql, sizeof(sql), "SELECT %s FROM %s %s", cols, t->name, where);
	return sq_prep(db, sql);
}

int sq_exec_plain(struct sq *db, const char *sql)
{
	int e;
	sqlite3_stmt *st = sq_prep_write(db, sql, &e);
	return st ? sq_step_done(db, st) : e;
}

/* One unsigned value: the first column of SQL's first row, keyed by KEY. */
int sq_select_uint(struct sq *db, const char *sql, const char *key, unsigned *out)
{
	sqlite3_stmt *st = sq_prep(db, sql);
	if (!st)
		return -EIO;
	sq_bind_text(st, 1, key);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		sqlite3_int64 v = sqlite3_column_int64(st, 0);
		*out = v < 0 || v > 0xffffffffLL ? 0 : (unsigned)v;
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}

/* INSERT OR REPLACE of a text key and an unsigned value. */
int sq_put_uint(struct sq *db, const char *sql, const char *table, const char *key, unsigned value)
{
	int e;
	sqlite3_stmt *st = sq_prep_write(db, sql, &e);
	if (!st)
		return e;
	sq_bind_text(st, 1, key);
	sqlite3_bind_int64(st, 2, value);
	e = sq_step_done(db, st);
	if (!e)
		sq_changed(db, table, key);
	return e;
}

/* DELETE with one text parameter: 0, -ENOENT (no row) or an error. */
int sq_delete_one(struct sq *db, const char *sql, const char *table, const char *key)
{
	int e;
	sqlite3_stmt *st = sq_prep_write(db, sql, &e);
	if (!st)
		return e;
	sq_bind_text(st, 1, key);
	e = sq_step_done(db, st);
	if (e)
		return e;
	if (!sqlite3_changes(db->h))
		return -ENOENT;
	sq_changed(db, table, key);
	return 0;
}

/* Rows of a query as a JSON array of objects keyed by column name. */
json_object *sq_rows_json(sqlite3_stmt *st)
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

/* Each row of T selected by WHERE (binding KEY if not NULL) into a REC of SIZE, then FN. */
int sq_scan(struct sq *db, const struct rec_table *t, const char *where, const char *key, void *rec,
	    size_t size, void (*fn)(const void *rec, void *arg), void *arg)
{
	sqlite3_stmt *st = sq_rec_select(db, t, where);
	if (!st)
		return -EIO;
	if (key)
		sq_bind_text(st, 1, key);
	int r, n = 0;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		sq_read_rec(st, t, rec, size);
		fn(rec, arg);
		n++;
	}
	sqlite3_finalize(st);
	return r == SQLITE_DONE ? n : sq_code_errno(db, r);
}

/* The row of T keyed KEY into REC: 0 or -ENOENT. */
int sq_get_one(struct sq *db, const struct rec_table *t, const char *key, void *rec, size_t size)
{
	char where[128];
	snprintf(where, sizeof(where), "WHERE %s=?", t->fields[0].key);
	sqlite3_stmt *st = sq_rec_select(db, t, where);
	if (!st)
		return -EIO;
	sq_bind_text(st, 1, key);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		sq_read_rec(st, t, rec, size);
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}

static void json_row(const void *rec, void *arg)
{
	struct json_scan *x = arg;
	json_object_array_add(x->arr, rec_json(x->t, rec, 0, 0, x->views));
}

/* Rows of T selected by WHERE as a JSON array of their VIEWS (REC a scratch row of SIZE). */
json_object *sq_table_json(struct sq *db, const struct rec_table *t, const char *where,
			   unsigned views, void *rec, size_t size)
{
	struct json_scan x = {json_object_new_array(), t, views};
	sq_scan(db, t, where, NULL, rec, size, json_row, &x);
	return x.arr;
}

/* One text value: the first column of SQL's first row, with up to two text keys. */
int sq_select_text(struct sq *db, const char *sql, const char *k1, const char *k2, char *out,
		   size_t len)
{
	out[0] = '\0';
	sqlite3_stmt *st = sq_prep(db, sql);
	if (!st)
		return -EIO;
	sq_bind_text(st, 1, k1);
	if (k2)
		sq_bind_text(st, 2, k2);
	int e = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		sq_col_text(st, 0, out, len);
		e = 0;
	}
	sqlite3_finalize(st);
	return e;
}
