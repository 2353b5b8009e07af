/*
 * Images through nestord with real QEMU: registration (checked, read-only),
 * template build -> clone -> ready; clones isolated from each other and from
 * the template disk; base and template bytes unchanged; a changed argv
 * invalidates the template (cold boot until rebuilt); warm pool refills and
 * respects caps; a modified base is refused.
 */
#include "check.h"
#include "daemon.h"
#include "testenv.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char USERS[] = "u1:u1-pw:nestor\nu2:u2-pw:nestor\nu3:u3-pw:nestor\n"
			    "u4:u4-pw:nestor\nu5:u5-pw:nestor\n";
static struct nestord d;

static json_object *connect_(const char *user)
{
	char body[256];
	json_object *s = NULL;
	snprintf(body, sizeof(body), "{\"user\":\"%s\",\"password\":\"%s-pw\",\"app\":\"ledger\"}",
		 user, user);
	int st = api(&d, "POST", "/v1/sessions", body, &s);
	CHECK_MSG(st == 200, "connect %s: %d %s", user, st, jget(s, "error"));
	return s;
}

/* Connect USER; ID gets the session id; the start path must be PATH. */
static void start_as(const char *user, const char *path, char *id, size_t len)
{
	json_object *s = connect_(user);
	snprintf(id, len, "%s", jget(s, "id"));
	CHECK_MSG(!strcmp(jget(s, "start_path"), path), "%s started %s, not %s", user,
		  jget(s, "start_path"), path);
	json_object_put(s);
}

static void end_(const char *id)
{
	char path[96];
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	CHECK(api(&d, "DELETE", path, NULL, NULL) == 200);
	CHECK(wait_state(&d, id, "ended", 30000));
}

static json_object *image(void)
{
	json_object *o = NULL;
	api(&d, "GET", "/v1/images/demo", NULL, &o);
	return o;
}

static void test_register(void)
{
	char base[512];
	snprintf(base, sizeof(base), "%s/demo.qcow2", d.dir);
	json_object *o = image();
	CHECK_STR(jget(o, "name"), "demo");
	CHECK(strlen(jget(o, "sha256")) == 64);
	CHECK_STR(jget(o, "template"), "none");
	json_object_put(o);
	struct stat st;
	CHECK(stat(base, &st) == 0 && (st.st_mode & 0222) == 0);
	/* not qcow2: refused with the reason */
	char junk[512], body[1024];
	snprintf(junk, sizeof(junk), "%s/junk.img", d.dir);
	FILE *f = fopen(junk, "w");
	fputs("this is no disk image", f);
	fclose(f);
	snprintf(body, sizeof(body), "{\"name\":\"junk\",\"base\":\"%s\",\"memory_mb\":64}", junk);
	CHECK(api(&d, "POST", "/v1/images", body, &o) == 400);
	CHECK_MSG(strstr(jget(o, "error"), "qcow2") != NULL, "%s", jget(o, "error"));
	json_object_put(o);
}

static void test_template_clones(void)
{
	char base[512];
	snprintf(base, sizeof(base), "%s/demo.qcow2", d.dir);
	char *base_sum = file_sha256(base);
	json_object *o = NULL;
	int64_t t0 = util_now_ms();
	CHECK(api(&d, "POST", "/v1/images/demo/template", NULL, &o) == 200);
	fprintf(stderr, "template built in %.2f s: %s\n", (util_now_ms() - t0) / 1000.0,
		jget(o, "result"));
	json_object_put(o);
	o = image();
	CHECK_STR(jget(o, "template"), "ready");
	char tdisk[4200];
	snprintf(tdisk, sizeof(tdisk), "%s/disk.qcow2", jget(o, "template_dir"));
	json_object_put(o);
	char *tpl_sum = file_sha256(tdisk);
	CHECK(tpl_sum != NULL);

	char ida[64], idb[64];
	start_as("u1", "template", ida, sizeof(ida));
	start_as("u2", "template", idb, sizeof(idb));
	CHECK(wait_state(&d, ida, "ready", 30000));
	CHECK(wait_state(&d, idb, "ready", 30000));
	/* the clones are alive guests, not just running QEMUs */
	char *pong = guest_cmd(&d, ida, "PING clone-a", 10000);
	CHECK_MSG(pong && !strcmp(pong, "PONG clone-a"), "ping: %s", pong ? pong : "(none)");
	free(pong);
	/* a write in one clone is invisible to the other */
	char *wrote = guest_cmd(&d, ida, "WRITE secret-of-a", 10000);
	CHECK(wrote && !strcmp(wrote, "WROTE secret-of-a"));
	free(wrote);
	char *seen_a = guest_cmd(&d, ida, "DISK", 10000);
	char *seen_b = guest_cmd(&d, idb, "DISK", 10000);
	CHECK_MSG(seen_a && strstr(seen_a, "secret-of-a"), "a sees %s", seen_a ? seen_a : "-");
	CHECK_MSG(seen_b && strstr(seen_b, "nestor-disk-stamp") && !strstr(seen_b, "secret-of-a"),
		  "b sees %s", seen_b ? seen_b : "-");
	free(seen_a);
	free(seen_b);
	end_(ida);
	end_(idb);
	/* neither the template disk nor the base changed */
	char *tpl_after = file_sha256(tdisk), *base_after = file_sha256(base);
	CHECK(tpl_sum && tpl_after && !strcmp(tpl_sum, tpl_after));
	CHECK(base_sum && base_after && !strcmp(base_sum, base_after));
	free(tpl_sum);
	free(tpl_after);
	free(base_sum);
	free(base_after);
}

static void test_warm_pool(void)
{
	/* cap 3 on the host; pool of 2 fills to 2 */
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_sessions\":3}", NULL) == 200);
	CHECK(api(&d, "PUT", "/v1/images/demo", "{\"warm_pool\":2}", NULL) == 200);
	json_object *o = NULL;
	bool filled = false;
	for (int i = 0; i < 100 && !filled; i++) {
		o = image();
		filled = jint(o, "warm_ready") == 2;
		json_object_put(o);
		if (!filled)
			usleep(100000);
	}
	CHECK(filled);
	/* warm guests count against max_sessions */
	json_object *st = NULL, *u;
	api(&d, "GET", "/v1/status", NULL, &st);
	CHECK(json_object_object_get_ex(st, "usage", &u) && jint(u, "sessions") == 2);
	json_object_put(st);
	/* hand-out: the warm guest becomes the user's session */
	char ida[64];
	start_as("u3", "warm", ida, sizeof(ida));
	CHECK(wait_state(&d, ida, "ready", 10000));
	char *pong = guest_cmd(&d, ida, "PING warm", 10000);
	CHECK_MSG(pong && !strcmp(pong, "PONG warm"), "warm guest answers: %s",
		  pong ? pong : "(none)");
	free(pong);
	/* the pool refills up to the host cap: 1 session + 2 warm = 3 */
	filled = false;
	for (int i = 0; i < 100 && !filled; i++) {
		o = image();
		filled = jint(o, "warm_ready") == 2;
		json_object_put(o);
		if (!filled)
			usleep(100000);
	}
	CHECK(filled);
	/* two more users: one takes a warm guest, the other gets the last one */
	char idb[64], idc[64];
	start_as("u4", "warm", idb, sizeof(idb));
	start_as("u5", "warm", idc, sizeof(idc));
	CHECK(wait_state(&d, idb, "ready", 10000) && wait_state(&d, idc, "ready", 10000));
	/* at the cap: no refill */
	usleep(1500000);
	o = image();
	CHECK_MSG(jint(o, "warm_ready") + jint(o, "warm_starting") == 0, "warm %lld+%lld at cap",
		  jint(o, "warm_ready"), jint(o, "warm_starting"));
	json_object_put(o);
	api(&d, "GET", "/v1/status", NULL, &st);
	CHECK(json_object_object_get_ex(st, "usage", &u) && jint(u, "sessions") == 3);
	json_object_put(st);
	/* a user who must wait makes warm guests give way: end one, refill, then queue */
	end_(ida);
	end_(idb);
	end_(idc);
	CHECK(api(&d, "PUT", "/v1/images/demo", "{\"warm_pool\":0}", NULL) == 200);
	CHECK(api(&d, "PUT", "/v1/caps", "{\"max_sessions\":0}", NULL) == 200);
}

static void test_invalidate(void)
{
	/* restart with another QEMU command line: the template no longer fits */
	CHECK(WIFEXITED(nestord_stop(&d, SIGTERM, 30000)));
	FILE *f = fopen(d.conf, "a");
	fputs("[nestord]\nsandbox = false\n", f);
	fclose(f);
	CHECK(nestord_start(&d));
	/* the QEMU version is read in the background: until then the template is "unknown" */
	json_object *o = NULL;
	for (int i = 0; i < 100; i++) {
		json_object_put(o);
		o = image();
		if (strcmp(jget(o, "template"), "unknown"))
			break;
		usleep(100000);
	}
	CHECK_STR(jget(o, "template"), "invalid");
	CHECK(strstr(jget(o, "template_problem"), "command line") != NULL);
	json_object_put(o);
	char ida[64];
	start_as("u1", "cold", ida, sizeof(ida));
	CHECK(wait_state(&d, ida, "ready", 60000));
	end_(ida);
	/* auto_template rebuilt it in the background: the next start is a clone again */
	bool ready = false;
	for (int i = 0; i < 300 && !ready; i++) {
		o = image();
		ready = !strcmp(jget(o, "template"), "ready");
		json_object_put(o);
		if (!ready)
			usleep(100000);
	}
	CHECK(ready);
	start_as("u1", "template", ida, sizeof(ida));
	CHECK(wait_state(&d, ida, "ready", 30000));
	end_(ida);
	char *log = testenv_slurp(d.log, NULL);
	CHECK(log && strstr(log, "template not usable"));
	free(log);
}

static void test_modified_base(void)
{
	char base[512];
	snprintf(base, sizeof(base), "%s/demo.qcow2", d.dir);
	/* someone writes the base behind nestor's back */
	chmod(base, 0644);
	FILE *f = fopen(base, "r+b");
	CHECK(f != NULL);
	if (f) {
		fseek(f, 0, SEEK_END);
		fputc(0, f);
		fclose(f);
	}
	json_object *s = NULL;
	CHECK(api(&d, "POST", "/v1/sessions",
		  "{\"user\":\"u2\",\"password\":\"u2-pw\",\"app\":\"ledger\"}", &s) == 200);
	char id[64];
	snprintf(id, sizeof(id), "%s", jget(s, "id"));
	json_object_put(s);
	CHECK(wait_state(&d, id, "ended", 5000));
	char path[96];
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	api(&d, "GET", path, NULL, &s);
	CHECK_MSG(strstr(jget(s, "end_reason"), "image demo") &&
		      strstr(jget(s, "end_reason"), "modified"),
		  "end_reason: %s", jget(s, "end_reason"));
	json_object_put(s);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	testenv_guest_dir();
	nestord_setup(
	    &d, "images", USERS,
	    "[sessions]\nstop_grace = 1\n[caps]\nmax_starting = 4\nuser_max_sessions = 1\n");
	if (!nestord_start(&d)) {
		CHECK(!"nestord started");
		return check_done("test_images");
	}
	nestord_add_demo(&d, "ledger");
	test_register();
	test_template_clones();
	test_warm_pool();
	test_invalidate();
	test_modified_base();
	int st = nestord_stop(&d, SIGTERM, 30000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestord exit status %d", st);
	int r = check_done("test_images");
	if (r == 0)
		testenv_rmtree(d.dir);
	else
		fprintf(stderr, "nestord log kept in %s\n", d.log);
	return r;
}
