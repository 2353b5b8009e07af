/*
 * A small storm in every test run: nestor-storm opens 4 real RDP sessions at
 * once through nestor-gateway and nestord to real test guests, with a canary.
 * Asserts correctness only (timings belong to the benchmark): every session
 * reaches its guest, none fails, the canary keeps answering, the JSON is
 * complete.
 */
#include "check.h"
#include "daemon.h"
#include "testenv.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	testenv_guest_dir();
	struct nestord d;
	char users[512] = "";
	for (int i = 1; i <= 5; i++) {
		char line[64];
		snprintf(line, sizeof(line), "user%d:pass%d:nestor\n", i, i);
		strcat(users, line);
	}
	nestord_setup(&d, "storm", users, "[sessions]\nstop_grace = 1\n[caps]\nmax_starting = 2\n");
	if (!nestord_start(&d)) {
		CHECK(!"nestord started");
		return check_done("test_storm");
	}
	nestord_add_demo(&d, "ledger");
	CHECK(api(&d, "POST", "/v1/images/demo/template", NULL, NULL) == 200);
	unsigned port = 20000 + (unsigned)(getpid() + 7) % 20000;
	char gwlog[600];
	pid_t gw = gateway_start(&d, port, NULL, gwlog, sizeof(gwlog));
	CHECK(gw > 0);

	char json[600], svg[600], cmd[2400];
	snprintf(json, sizeof(json), "%s/storm.json", d.dir);
	snprintf(svg, sizeof(svg), "%s/storm.svg", d.dir);
	snprintf(cmd, sizeof(cmd),
		 "%s/storm/nestor-storm --gateway 127.0.0.1:%u --user-pattern 'user%%d:pass%%d' "
		 "--sessions 4 --arrival burst --app ledger --hold 3 --baseline 2 --socket %s "
		 "--json %s --svg %s",
		 getenv("NESTOR_BUILD"), port, d.sock, json, svg);
	int st = system(cmd);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestor-storm exit %d", st);

	json_object *o = json_object_from_file(json), *v;
	CHECK(o != NULL);
	CHECK(jint(o, "sessions") == 4 && jint(o, "ok") == 4);
	CHECK(json_object_object_get_ex(o, "canary_ok", &v) && json_object_get_boolean(v));
	json_object *us = NULL;
	CHECK(json_object_object_get_ex(o, "users", &us) && json_object_array_length(us) == 4);
	static const char *const phases[] = {"tcp_connect", "handshake", "authenticated",
					     "first_wait_frame", "first_guest_frame"};
	for (size_t i = 0; us && i < json_object_array_length(us); i++) {
		json_object *u = json_object_array_get_idx(us, i);
		CHECK(json_object_object_get_ex(u, "ok", &v) && json_object_get_boolean(v));
		for (size_t p = 0; p < 5; p++)
			CHECK_MSG(json_object_object_get_ex(u, phases[p], &v) &&
				      json_object_is_type(v, json_type_double),
				  "user %zu lacks %s", i, phases[p]);
	}
	/* the canary answered before and during the storm */
	json_object *rs = NULL;
	int before = 0, during = 0;
	CHECK(json_object_object_get_ex(o, "canary", &rs));
	for (size_t i = 0; rs && i < json_object_array_length(rs); i++) {
		json_object *r = json_object_array_get_idx(rs, i);
		if (json_object_object_get_ex(r, "during", &v) && json_object_get_boolean(v))
			during++;
		else
			before++;
	}
	CHECK_MSG(before > 0 && during > 0, "canary samples before %d during %d", before, during);
	json_object *ss = NULL;
	CHECK(json_object_object_get_ex(o, "samples", &ss) && json_object_array_length(ss) > 0);
	json_object_put(o);
	char *chart = testenv_slurp(svg, NULL);
	CHECK(chart && strstr(chart, "<svg") && strstr(chart, "polyline"));
	free(chart);

	child_stop(&gw);
	st = nestord_stop(&d, SIGTERM, 30000);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nestord exit status %d", st);
	int r = check_done("test_storm");
	if (r == 0)
		testenv_rmtree(d.dir);
	else
		fprintf(stderr, "logs kept in %s\n", d.dir);
	return r;
}
