/*
 * The store interface over its sqlite implementation, on a throwaway file:
 * records through their field lists, transactions, the session claim,
 * change notification, and rows written by someone else (bounded reads).
 */
#include "check.h"
#include "record.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned n_changes;
static char last_table[32], last_key[64];

static void on_change(const char *table, const char *key, void *arg)
{
	n_changes++;
	snprintf(last_table, sizeof(last_table), "%s", table);
	snprintf(last_key, sizeof(last_key), "%s", key);
}

static struct db_image image(const char *name)
{
	struct db_image m = {.memory_mb = 128};
	snprintf(m.name, sizeof(m.name), "%s", name);
	snprintf(m.base, sizeof(m.base), "/srv/%s.qcow2", name);
	snprintf(m.rdp.password, sizeof(m.rdp.password), "s3cret");
	return m;
}

static struct db_session session(const char *id, const char *state, int64_t created)
{
	struct db_session s = {.created = created, .memory_mb = 128};
	snprintf(s.id, sizeof(s.id), "%s", id);
	snprintf(s.user, sizeof(s.user), "u-%s", id);
	snprintf(s.app, sizeof(s.app), "ledger");
	snprintf(s.image, sizeof(s.image), "xp");
	snprintf(s.state, sizeof(s.state), "%s", state);
	return s;
}

static void count_image(const struct db_image *img, void *arg)
{
	++*(unsigned *)arg;
}

static void test_records(struct store *st)
{
	struct db_image m = image("xp"), got;
	CHECK(store_image_put(st, &m) == 0);
	CHECK(store_image_put(st, &m) == -EEXIST);
	CHECK(store_image_get(st, "xp", &got) == 0);
	/* defaults from the field list: backend, machine, rdp policy */
	CHECK(check_streq(got.backend, "console") && check_streq(got.machine, "pc-i440fx-7.2"));
	CHECK(check_streq(got.rdp.security, "rdp") && check_streq(got.rdp.login, "image"));
	CHECK(check_streq(got.rdp.password, "s3cret") && got.created > 0);
	got.warm_pool = 3;
	CHECK(store_image_update(st, &got) == 0);
	CHECK(store_image_get(st, "xp", &got) == 0 && got.warm_pool == 3);
	struct db_image none = image("nope");
	CHECK(store_image_update(st, &none) == -ENOENT);
	unsigned n = 0;
	CHECK(store_images_warm(st, count_image, &n) == 0 && n == 1);

	/* a JSON view never holds a secret */
	json_object *o = rec_json(&rec_images, &got, 0, 0, REC_ALL);
	CHECK(!strstr(json_object_to_json_string(o), "s3cret"));
	CHECK(json_object_object_get_ex(o, "rdp_security", NULL));
	json_object_put(o);

	struct db_app a = {0};
	snprintf(a.alias, sizeof(a.alias), "ledger");
	snprintf(a.image, sizeof(a.image), "xp");
	snprintf(a.title, sizeof(a.title), "Ledger 2003");
	CHECK(store_app_put(st, &a) == 0);
	CHECK(store_image_del(st, "xp") == -EBUSY); /* an app uses it */
	o = store_apps_json(st);
	CHECK(json_object_array_length(o) == 1);
	json_object_put(o);
	CHECK(store_app_del(st, "ledger") == 0 && store_app_del(st, "ledger") == -ENOENT);
	CHECK(store_template_set(st, "xp", "tcg", "/t/xp-1") == 0);
	CHECK(store_template_used(st, "/t/xp-1") == 1);
	CHECK(store_image_del(st, "xp") == 0);
	/* what hangs off an image goes with it */
	CHECK(store_template_used(st, "/t/xp-1") == 0);
	CHECK(store_image_get(st, "xp", &got) == -ENOENT);
}

static void test_transactions(struct store *st)
{
	struct db_image m = image("nt4");
	CHECK(store_begin(st) == 0);
	CHECK(store_begin(st) == -EBUSY);
	CHECK(store_image_put(st, &m) == 0);
	CHECK(store_rollback(st) == 0);
	struct db_image got;
	CHECK(store_image_get(st, "nt4", &got) == -ENOENT);

	unsigned before = n_changes;
	CHECK(store_begin(st) == 0);
	CHECK(store_image_put(st, &m) == 0);
	CHECK(store_cap_set(st, "max_sessions", 7) == 0);
	CHECK(n_changes == before); /* nobody hears of uncommitted changes */
	CHECK(store_commit(st) == 0);
	CHECK(n_changes == before + 1 && check_streq(last_table, ""));
	unsigned v = 0;
	CHECK(store_cap_get(st, "max_sessions", &v) == 0 && v == 7);
	CHECK(store_image_get(st, "nt4", &got) == 0);
	CHECK(store_commit(st) == -EINVAL);

	before = n_changes;
	CHECK(store_user_cap_set(st, "alice", 2) == 0);
	CHECK(n_changes == before + 1 && check_streq(last_table, "user_caps") &&
	      check_streq(last_key, "alice"));
}

static void test_claim(struct store *st)
{
	struct db_session rows[] = {session("s3", "queued", 300), session("s1", "queued", 100),
				    session("s0", "ready", 50), session("s2", "queued", 200)};
	for (size_t i = 0; i < ARRAY_LEN(rows); i++)
		CHECK(store_session_save(st, &rows[i]) == 0);
	struct db_session got;
	const char *want[] = {"s1", "s2", "s3"};
	for (size_t i = 0; i < 3; i++) {
		memset(&got, 0, sizeof(got));
		CHECK(store_session_claim(st, "host-a", &got) == 0);
		CHECK_MSG(check_streq(got.id, want[i]), "claimed %s, want %s", got.id, want[i]);
		CHECK(check_streq(got.state, "starting") && check_streq(got.host, "host-a"));
	}
	/* nothing left, whatever the buffer still holds */
	CHECK(store_session_claim(st, "host-b", &got) == -ENOENT);

	/* the history view: ended ones only, newest first */
	struct db_session e1 = session("e1", "ended", 10), e2 = session("e2", "ended", 20);
	e1.ended = 1000;
	e2.ended = 2000;
	snprintf(e2.qmp, sizeof(e2.qmp), "/run/secret-path");
	CHECK(store_session_save(st, &e1) == 0 && store_session_save(st, &e2) == 0);
	json_object *o = store_sessions_ended_json(st, 1);
	CHECK(json_object_array_length(o) == 1);
	json_object *first = json_object_array_get_idx(o, 0), *v;
	CHECK(json_object_object_get_ex(first, "id", &v) &&
	      check_streq(json_object_get_string(v), "e2"));
	CHECK(!json_object_object_get_ex(first, "qmp", NULL)); /* not in the history view */
	json_object_put(o);
}

static void count_live(const struct db_session *s, void *arg)
{
	unsigned *n = arg;
	(*n)++;
	/* bounded reads of hostile rows */
	CHECK(strlen(s->user) < sizeof(s->user) && s->pid >= 0);
}

/* Rows written behind the broker's back: oversized text, out-of-range numbers. */
static void test_foreign_rows(const char *path, struct store *st)
{
	sqlite3 *h;
	CHECK(sqlite3_open(path, &h) == SQLITE_OK);
	char big[5000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	char sql[6000];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO sessions(id, user, state, pid, memory_mb, created) "
		 "VALUES('evil', '%s', 'connected', -5, 99999999999, 1)",
		 big);
	CHECK(sqlite3_exec(h, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(h);
	unsigned n = 0;
	CHECK(store_sessions_live(st, count_live, &n) == 0 && n >= 1);
}

static void test_audit(struct store *st)
{
	store_audit_log(st, "login-ok", "alice", "10.0.0.1", NULL, NULL);
	store_audit_log(st, "login-failed", "bob", "10.0.0.2", NULL, "wrong password");
	CHECK(store_flush(st) == 0);
	json_object *o = store_audit_json(st, 10), *v;
	CHECK(json_object_array_length(o) == 2);
	CHECK(json_object_object_get_ex(json_object_array_get_idx(o, 0), "kind", &v) &&
	      check_streq(json_object_get_string(v), "login-failed"));
	json_object_put(o);
}

int main(void)
{
	char tmpl[] = "/tmp/nestor-test-store.XXXXXX";
	char *dir = mkdtemp(tmpl);
	CHECK(dir);
	if (!dir)
		return check_done("test_store");
	char path[256], err[256];
	snprintf(path, sizeof(path), "%s/nestor.db", dir);
	struct store *st = store_open(path, err, sizeof(err));
	CHECK_MSG(st, "%s", err);
	if (!st)
		return check_done("test_store");
	CHECK(store_subscribe(st, on_change, NULL) == 0);
	test_records(st);
	test_transactions(st);
	test_claim(st);
	test_foreign_rows(path, st);
	test_audit(st);
	store_close(st);
	/* a garbage file is refused with its name */
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("not a database at all, not at all, really not", f);
		fclose(f);
	}
	CHECK(store_open(path, err, sizeof(err)) == NULL && strstr(err, path));
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return check_done("test_store");
}
