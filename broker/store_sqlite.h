/*
 * Inside the sqlite store (store_sqlite.c, store_sqlite_rec.c): the handle
 * and the statement and record helpers. Not for other modules.
 */
#ifndef NESTOR_STORE_SQLITE_H
#define NESTOR_STORE_SQLITE_H

#include "record.h"
#include "store.h"

#include <sqlite3.h>

#define BUSY_MS 100
#define BACKOFF_MS 1000
#define AUDIT_BACKLOG 512
#define SUBSCRIBERS 4

struct sq {
	struct store base;
	sqlite3 *h;
	int64_t backoff_until;
	struct db_audit *backlog;
	unsigned n_backlog;
	unsigned dropped;
	bool in_txn;
	bool txn_changed; /* a write inside the transaction: subscribers hear at commit */
	struct {
		store_change_fn fn;
		void *arg;
	} subs[SUBSCRIBERS];
};

#define SQ(s) ((struct sq *)(s))

/*
 * A whole record: INSERT (-EEXIST if its key exists), an upsert (UPSERT), or
 * an UPDATE of every column but the key (-ENOENT if there is no such row).
 */
enum rec_op { REC_INSERT, REC_UPSERT, REC_UPDATE };

void sq_changed(struct sq *db, const char *table, const char *key);
sqlite3_stmt *sq_prep(struct sq *db, const char *sql);
int sq_code_errno(struct sq *db, int r);
sqlite3_stmt *sq_prep_write(struct sq *db, const char *sql, int *e);
int sq_step_done(struct sq *db, sqlite3_stmt *st);
void sq_bind_text(sqlite3_stmt *st, int i, const char *s);
void sq_col_text(sqlite3_stmt *st, int i, char *dst, size_t len);
void sq_col_list(const struct rec_table *t, bool with_secret, char *out, size_t len);
void sq_bind_rec(sqlite3_stmt *st, const struct rec_table *t, const void *rec);
void sq_read_rec(sqlite3_stmt *st, const struct rec_table *t, void *rec, size_t recsize);
int sq_rec_write(struct sq *db, const struct rec_table *t, const void *rec, enum rec_op op);
sqlite3_stmt *sq_rec_select(struct sq *db, const struct rec_table *t, const char *where);
int sq_exec_plain(struct sq *db, const char *sql);
int sq_select_uint(struct sq *db, const char *sql, const char *key, unsigned *out);
int sq_put_uint(struct sq *db, const char *sql, const char *table, const char *key, unsigned value);
int sq_delete_one(struct sq *db, const char *sql, const char *table, const char *key);
json_object *sq_rows_json(sqlite3_stmt *st);
int sq_scan(struct sq *db, const struct rec_table *t, const char *where, const char *key, void *rec,
	    size_t size, void (*fn)(const void *rec, void *arg), void *arg);
int sq_get_one(struct sq *db, const struct rec_table *t, const char *key, void *rec, size_t size);
json_object *sq_table_json(struct sq *db, const struct rec_table *t, const char *where,
			   unsigned views, void *rec, size_t size);
int sq_select_text(struct sq *db, const char *sql, const char *k1, const char *k2, char *out,
		   size_t len);

#endif
