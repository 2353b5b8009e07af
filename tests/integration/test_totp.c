/*
 * A second factor through PAM, for real: nestord with pam_wrapper, a stack
 * of pam_matrix (the password, requisite) and pam_oath (a TOTP code, from a
 * usersfile this test writes), codes computed by oathtool. POST /v1/auth
 * and POST /v1/sessions: no code -> 401 need=code with PAM's prompt; the
 * right code -> signed in; a wrong or replayed code -> a plain 401; asking
 * for a code counts for the throttle; the audit and the log never hold a
 * password or a code; the same with the code asked for before the
 * password. No guest: it takes about a second.
 */
#include "check.h"
#include "daemon.h"
#include "testenv.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define ALICE_KEY "3132333435363738393031323334353637383930"
#define BOB_KEY "4a4b4c4d4e4f505152535455565758595a5b5c5d"

static const char USERS[] = "alice:alice-pw:nestor\n"
			    "bob:bob-pw:nestor\n";
static const char OATH[] = "HOTP/T30 alice - " ALICE_KEY "\n"
			   "HOTP/T30 bob - " BOB_KEY "\n";

/* alice fails 5 times in a row at most, then signs in (which clears her count) */
#define MAX_FAILURES 6

static struct nestord d;

/* POST PATH as USER with PASSWORD and CODE (NULL: none): the status, *OUT the answer. */
static int login(const char *path, const char *user, const char *password, const char *code,
		 const char *app, const char *client, json_object **out)
{
	json_object *b = json_object_new_object();
	json_object_object_add(b, "user", json_object_new_string(user));
	json_object_object_add(b, "password", json_object_new_string(password));
	if (code)
		json_object_object_add(b, "code", json_object_new_string(code));
	if (app)
		json_object_object_add(b, "app", json_object_new_string(app));
	json_object_object_add(b, "client", json_object_new_string(client));
	json_object *o = NULL;
	int st = api(&d, "POST", path, json_object_to_json_string(b), &o);
	json_object_put(b);
	if (out)
		*out = o;
	else
		json_object_put(o);
	return st;
}

static bool asks_code(json_object *o)
{
	return check_streq(jget(o, "need"), "code") &&
	       check_streq(jget(o, "error"), "a one-time code is needed");
}

static void test_auth(void)
{
	char code[16], next[16], wrong[16];
	CHECK(oath_totp(ALICE_KEY, 0, code, sizeof(code)));
	CHECK(oath_totp(ALICE_KEY, 30, next, sizeof(next)));
	snprintf(wrong, sizeof(wrong), "%06d", (atoi(code) + 1) % 1000000);

	/* the password alone: asked for the code, with pam_oath's own prompt */
	json_object *o = NULL;
	CHECK(login("/v1/auth", "alice", "alice-pw", NULL, NULL, "10.0.0.1", &o) == 401);
	CHECK_MSG(asks_code(o), "%s", json_object_to_json_string(o));
	CHECK_STR(jget(o, "prompt"), "One-time password (OATH) for `alice': ");
	json_object_put(o);
	/* an empty code is none */
	CHECK(login("/v1/auth", "alice", "alice-pw", "", NULL, "10.0.0.1", &o) == 401);
	CHECK(asks_code(o));
	json_object_put(o);

	/* the right code: signed in */
	CHECK(login("/v1/auth", "alice", "alice-pw", code, NULL, "10.0.0.1", &o) == 200);
	CHECK(jint(o, "authenticated") == 1);
	json_object_put(o);
	/* the same code again (pam_oath refuses a replay), a wrong one, a wrong password with
	 * the next code: the same plain 401, whichever factor failed */
	CHECK(login("/v1/auth", "alice", "alice-pw", code, NULL, "10.0.0.1", &o) == 401);
	CHECK(!asks_code(o) && check_streq(jget(o, "error"), "wrong user name or password"));
	json_object_put(o);
	CHECK(login("/v1/auth", "alice", "alice-pw", wrong, NULL, "10.0.0.1", &o) == 401);
	CHECK(!asks_code(o) && check_streq(jget(o, "error"), "wrong user name or password"));
	json_object_put(o);
	CHECK(login("/v1/auth", "alice", "bad-pw", next, NULL, "10.0.0.1", &o) == 401);
	CHECK(!asks_code(o));
	json_object_put(o);
	/* a wrong password never gets as far as the code (pam_matrix is requisite) */
	CHECK(login("/v1/auth", "alice", "nope", NULL, NULL, "10.0.0.1", &o) == 401);
	CHECK(!asks_code(o) && check_streq(jget(o, "error"), "wrong user name or password"));
	json_object_put(o);

	/* connect the same way: no code asks for it; the next code signs in (then the app is
	 * looked up: there is none here, so 404 says the sign-in passed) */
	CHECK(login("/v1/sessions", "alice", "alice-pw", NULL, "ledger", "10.0.0.5", &o) == 401);
	CHECK(asks_code(o));
	json_object_put(o);
	CHECK(login("/v1/sessions", "alice", "alice-pw", next, "ledger", "10.0.0.5", &o) == 404);
	CHECK_MSG(!asks_code(o), "%s", json_object_to_json_string(o));
	json_object_put(o);

	/* asking for a code is a failed attempt: max_failures of them lock bob out, code or not */
	char bob[16];
	CHECK(oath_totp(BOB_KEY, 0, bob, sizeof(bob)));
	for (int i = 0; i < MAX_FAILURES; i++)
		CHECK(login("/v1/auth", "bob", "bob-pw", NULL, NULL, "10.0.0.7", NULL) == 401);
	CHECK(login("/v1/auth", "bob", "bob-pw", bob, NULL, "10.0.0.8", NULL) == 429);

	/* the audit tells asking for a code apart; neither it nor the log has a secret */
	json_object *a = NULL;
	CHECK(api(&d, "GET", "/v1/audit?limit=100", NULL, &a) == 200);
	const char *text = json_object_to_json_string(a);
	CHECK(strstr(text, "login-need-code") && strstr(text, "login-failed") &&
	      strstr(text, "login-ok") && strstr(text, "login-throttled"));
	CHECK(!strstr(text, "alice-pw") && !strstr(text, code) && !strstr(text, next));
	json_object_put(a);
	char *log = testenv_slurp(d.log, NULL);
	CHECK(log && !strstr(log, "alice-pw") && !strstr(log, code) && !strstr(log, next));
	free(log);
}

/* The code asked for before the password: each prompt still gets its own answer. */
static void test_code_first(void)
{
	nestord_setup_oath(&d, OATH, true);
	/* pam_wrapper copies the stack at nestord's start: the new one needs a restart */
	nestord_stop(&d, SIGTERM, 10000);
	if (!nestord_start(&d)) {
		CHECK(!"nestord started again");
		return;
	}
	char code[16];
	CHECK(oath_totp(ALICE_KEY, 60, code, sizeof(code))); /* a step none used yet */
	json_object *o = NULL;
	CHECK(login("/v1/auth", "alice", "alice-pw", NULL, NULL, "10.0.1.1", &o) == 401);
	CHECK(asks_code(o));
	json_object_put(o);
	CHECK(login("/v1/auth", "alice", "alice-pw", code, NULL, "10.0.1.1", &o) == 200);
	CHECK_MSG(jint(o, "authenticated") == 1, "%s", json_object_to_json_string(o));
	json_object_put(o);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	char conf[128];
	snprintf(conf, sizeof(conf), "[auth]\nmax_failures = %d\nwindow = 300\nlockout = 600\n",
		 MAX_FAILURES);
	nestord_setup(&d, "totp", USERS, conf);
	nestord_setup_oath(&d, OATH, false);
	d.no_wait = true;
	if (!nestord_start(&d)) {
		CHECK(!"nestord started");
		return check_done("test_totp");
	}
	test_auth();
	test_code_first();
	int st = nestord_stop(&d, SIGTERM, 10000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestord exit status %d", st);
	int r = check_done("test_totp");
	if (r == 0)
		testenv_rmtree(d.dir);
	return r;
}
