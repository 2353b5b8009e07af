/*
 * Start-path benchmark: time from a connect request (PAM included) to a
 * ready guest, for N simultaneous users, for each start path (cold boot,
 * template clone, warm pool), plus Pss memory per guest. Runs a real
 * nestord with the test guest. Prints a table; --json FILE writes all
 * measurements. Results are recorded in docs/performance.md.
 *
 * usage: start_bench [--sizes 1,2,4,8,16] [--modes cold,template,warm] [--json FILE]
 */
#include "check.h"
#include "daemon.h"
#include "testenv.h"
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#define MAXN 32

static struct nestord d;

struct worker {
	pthread_t t;
	int idx;
	int64_t t0;
	double ready_s;
	char id[64];
	char path[16];
	long long pid;
	int ok;
};

static void *run(void *arg)
{
	struct worker *w = arg;
	char body[256], path[128];
	snprintf(body, sizeof(body), "{\"user\":\"b%d\",\"password\":\"pw%d\",\"app\":\"ledger\"}",
		 w->idx, w->idx);
	json_object *s = NULL;
	w->t0 = util_now_ms();
	if (api(&d, "POST", "/v1/sessions", body, &s) != 200) {
		json_object_put(s);
		return NULL;
	}
	snprintf(w->id, sizeof(w->id), "%s", jget(s, "id"));
	snprintf(w->path, sizeof(w->path), "%s", jget(s, "start_path"));
	const char *st = jget(s, "state");
	char state[32];
	snprintf(state, sizeof(state), "%s", st);
	json_object_put(s);
	while (!strcmp(state, "starting") || !strcmp(state, "queued")) {
		snprintf(path, sizeof(path), "/v1/sessions/%s?wait=%s&timeout=60", w->id, state);
		s = NULL;
		if (api(&d, "GET", path, NULL, &s) != 200) {
			json_object_put(s);
			return NULL;
		}
		snprintf(state, sizeof(state), "%s", jget(s, "state"));
		w->pid = jint(s, "pid");
		json_object_put(s);
	}
	w->ready_s = (double)(util_now_ms() - w->t0) / 1000.0;
	w->ok = !strcmp(state, "ready");
	/* the guest's pid, for its memory */
	snprintf(path, sizeof(path), "/v1/sessions/%s", w->id);
	s = NULL;
	if (api(&d, "GET", path, NULL, &s) == 200)
		w->pid = jint(s, "pid");
	json_object_put(s);
	return NULL;
}

static long pss_kb(long long pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%lld/smaps_rollup", pid);
	FILE *f = fopen(path, "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static json_object *results;

static void wait_warm(int n)
{
	for (int i = 0; i < 1200; i++) {
		json_object *o = NULL;
		api(&d, "GET", "/v1/images/demo", NULL, &o);
		long long r = jint(o, "warm_ready");
		json_object_put(o);
		if (r >= n)
			return;
		usleep(100000);
	}
	fprintf(stderr, "warm pool did not fill to %d\n", n);
}

static void measure(const char *mode, int n)
{
	if (!strcmp(mode, "warm")) {
		char body[64];
		snprintf(body, sizeof(body), "{\"warm_pool\":%d}", n);
		api(&d, "PUT", "/v1/images/demo", body, NULL);
		wait_warm(n);
		usleep(500000); /* let the host settle after the refill */
	}
	struct worker w[MAXN];
	memset(w, 0, sizeof(w));
	int64_t t0 = util_now_ms();
	for (int i = 0; i < n; i++) {
		w[i].idx = i;
		pthread_create(&w[i].t, NULL, run, &w[i]);
	}
	for (int i = 0; i < n; i++)
		pthread_join(w[i].t, NULL);
	double all = (double)(util_now_ms() - t0) / 1000.0;
	if (!strcmp(mode, "warm"))
		api(&d, "PUT", "/v1/images/demo", "{\"warm_pool\":0}", NULL);
	usleep(300000);
	double times[MAXN];
	long pss_sum = 0;
	int ok = 0, pss_n = 0, wrong_path = 0;
	json_object *row = json_object_new_object(), *arr = json_object_new_array();
	for (int i = 0; i < n; i++) {
		times[ok] = w[i].ready_s;
		ok += w[i].ok;
		wrong_path += strcmp(w[i].path, mode) != 0;
		long p = w[i].pid > 0 ? pss_kb(w[i].pid) : -1;
		if (p > 0) {
			pss_sum += p;
			pss_n++;
		}
		json_object *m = json_object_new_object();
		json_object_object_add(m, "ready_s", json_object_new_double(w[i].ready_s));
		json_object_object_add(m, "start_path", json_object_new_string(w[i].path));
		json_object_object_add(m, "pss_kb", json_object_new_int64(p));
		json_object_array_add(arr, m);
	}
	qsort(times, (size_t)ok, sizeof(double), cmp);
	double p50 = ok ? times[ok / 2] : -1, mx = ok ? times[ok - 1] : -1;
	long pss = pss_n ? pss_sum / pss_n : -1;
	printf("%-9s %3d %7.3f %7.3f %7.2f %9ld %s\n", mode, n, p50, mx, all, pss / 1024,
	       ok == n && !wrong_path ? "" : "(INCOMPLETE)");
	fflush(stdout);
	json_object_object_add(row, "mode", json_object_new_string(mode));
	json_object_object_add(row, "n", json_object_new_int(n));
	json_object_object_add(row, "ok", json_object_new_int(ok));
	json_object_object_add(row, "p50_s", json_object_new_double(p50));
	json_object_object_add(row, "max_s", json_object_new_double(mx));
	json_object_object_add(row, "all_ready_s", json_object_new_double(all));
	json_object_object_add(row, "pss_mib_avg", json_object_new_double(pss / 1024.0));
	json_object_object_add(row, "sessions", arr);
	json_object_array_add(results, row);
	for (int i = 0; i < n; i++) {
		if (!w[i].id[0])
			continue;
		char path[96];
		snprintf(path, sizeof(path), "/v1/sessions/%s", w[i].id);
		api(&d, "DELETE", path, NULL, NULL);
	}
	for (int i = 0; i < n; i++)
		if (w[i].id[0])
			wait_state(&d, w[i].id, "ended", 30000);
	sleep(1);
}

int main(int argc, char **argv)
{
	const char *sizes = "1,2,4,8,16", *modes = "cold,template,warm", *json = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--sizes"))
			sizes = argv[i + 1];
		else if (!strcmp(argv[i], "--modes"))
			modes = argv[i + 1];
		else if (!strcmp(argv[i], "--json"))
			json = argv[i + 1];
	}
	signal(SIGPIPE, SIG_IGN);
	testenv_guest_dir();
	char users[4096] = "";
	for (int i = 0; i < MAXN; i++) {
		char line[64];
		snprintf(line, sizeof(line), "b%d:pw%d:nestor\n", i, i);
		strcat(users, line);
	}
	nestord_setup(&d, "bench", users,
		      "[images]\nauto_template = false\n[sessions]\nstop_grace = 0\n"
		      "[caps]\nmax_starting = 0\nuser_max_sessions = 0\n"
		      "[auth]\nmax_failures = 0\n");
	if (!nestord_start(&d))
		return 1;
	nestord_add_demo(&d, "ledger");
	results = json_object_new_array();
	struct utsname u;
	uname(&u);
	printf("# start_bench: %s %s, %ld cores, guests: test guest, 256 MiB, TCG\n", u.nodename,
	       u.release, sysconf(_SC_NPROCESSORS_ONLN));
	printf("%-9s %3s %7s %7s %7s %9s\n", "path", "N", "p50_s", "max_s", "all_s", "Pss_MiB");
	int ns[16], nn = 0;
	char list[256];
	snprintf(list, sizeof(list), "%s", sizes);
	for (char *t = strtok(list, ","); t && nn < 16; t = strtok(NULL, ","))
		if (atoi(t) > 0 && atoi(t) <= MAXN)
			ns[nn++] = atoi(t);
	char mlist[256], *mv[8];
	int nm = 0;
	snprintf(mlist, sizeof(mlist), "%s", modes);
	for (char *t = strtok(mlist, ","); t && nm < 8; t = strtok(NULL, ","))
		mv[nm++] = t;
	for (int m = 0; m < nm; m++) {
		if (strcmp(mv[m], "cold") != 0) {
			json_object *o = NULL;
			api(&d, "GET", "/v1/images/demo", NULL, &o);
			bool have = !strcmp(jget(o, "template"), "ready");
			json_object_put(o);
			if (!have)
				api(&d, "POST", "/v1/images/demo/template", NULL, NULL);
		}
		for (int i = 0; i < nn; i++)
			measure(mv[m], ns[i]);
	}
	if (json)
		json_object_to_file_ext(json, results, JSON_C_TO_STRING_PRETTY);
	json_object_put(results);
	int st = nestord_stop(&d, SIGTERM, 60000);
	if (st == 0 && !getenv("NESTOR_KEEP"))
		testenv_rmtree(d.dir);
	else
		fprintf(stderr, "nestord state and log kept in %s\n", d.dir);
	return 0;
}
