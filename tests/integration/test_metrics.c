/*
 * nestord as a service is watched: it tells systemd when it is ready and
 * when it stops (sd_notify, to a socket of our own as NOTIFY_SOCKET), and
 * serves /metrics that promtool accepts and that a real Prometheus server
 * scrapes: after one sign-in failure and one session on a real QEMU guest,
 * the counters say so, here and in Prometheus' query API. Hostile or wrong
 * requests to the metrics port get an error and change nothing.
 */
#include "nestor-config.h"
#include "check.h"
#include "daemon.h"
#include "testenv.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct nestord d;
static unsigned mport;

/* The notify socket: every datagram nestord sends, in order. */
static int notify_open(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "notify socket path too long: %s\n", path);
		exit(1);
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("notify socket");
		exit(1);
	}
	return fd;
}

/* Wait for a datagram containing WANT; false after TIMEOUT_MS. */
static bool notify_wait(int fd, const char *want, int timeout_ms, char *got, size_t gotlen)
{
	int64_t end = util_now_ms() + timeout_ms;
	got[0] = '\0';
	for (;;) {
		int left = (int)(end - util_now_ms());
		struct pollfd p = {fd, POLLIN, 0};
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return false;
		ssize_t n = recv(fd, got, gotlen - 1, 0);
		if (n < 0)
			return false;
		got[n] = '\0';
		if (strstr(got, want))
			return true;
	}
}

static char *scrape(void)
{
	char *body = metrics_get(mport);
	CHECK(body);
	return body;
}

static void test_hostile_requests(void)
{
	int st;
	char *b = http_get_tcp(mport, "/", &st, 5000);
	CHECK_MSG(st == 404, "GET /: %d", st);
	free(b);
	b = http_get_tcp(mport, "/metrics/../../etc/passwd", &st, 5000);
	CHECK_MSG(st == 404, "traversal: %d", st);
	free(b);
	/* headers over the 8 KiB bound: refused or cut, never served */
	char path[12000];
	memset(path, 'a', sizeof(path));
	memcpy(path, "/metrics?", 9);
	path[sizeof(path) - 1] = '\0';
	b = http_get_tcp(mport, path, &st, 5000);
	CHECK_MSG(st != 200, "a 12 KB request line was answered 200");
	free(b);
	/* a client that connects and says nothing does not stop the next scrape */
	int idle = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)mport),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(connect(idle, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	b = scrape();
	CHECK(b && metrics_sample(b, "nestor_build_info{version=\"" NESTOR_VERSION "\"}") == 1);
	free(b);
	close(idle);
}

static pid_t prometheus_start(unsigned port, char *log, size_t loglen)
{
	char conf[512], tsdb[512], text[1024];
	snprintf(conf, sizeof(conf), "%s/prometheus.yml", d.dir);
	snprintf(tsdb, sizeof(tsdb), "%s/tsdb", d.dir);
	snprintf(log, loglen, "%s/prometheus.log", d.dir);
	snprintf(text, sizeof(text),
		 "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
		 "scrape_configs:\n  - job_name: nestord\n    static_configs:\n"
		 "      - targets: ['127.0.0.1:%u']\n",
		 mport);
	FILE *f = fopen(conf, "w");
	CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
	char listen[64], cfgarg[600], dbarg[600];
	snprintf(listen, sizeof(listen), "--web.listen-address=127.0.0.1:%u", port);
	snprintf(cfgarg, sizeof(cfgarg), "--config.file=%s", conf);
	snprintf(dbarg, sizeof(dbarg), "--storage.tsdb.path=%s", tsdb);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("prometheus", "prometheus", cfgarg, dbarg, listen, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Ask Prometheus for QUERY until its one result has VALUE; false after TIMEOUT_MS. */
static bool prometheus_has(unsigned port, const char *query, const char *value, int timeout_ms)
{
	char path[512], last[512] = "";
	snprintf(path, sizeof(path), "/api/v1/query?query=%s", query);
	int64_t end = util_now_ms() + timeout_ms;
	for (;;) {
		int st;
		char *body = http_get_tcp(port, path, &st, 2000);
		json_object *o = body && st == 200 ? json_tokener_parse(body) : NULL;
		json_object *data, *result, *v;
		bool ok = false;
		if (o && json_object_object_get_ex(o, "data", &data) &&
		    json_object_object_get_ex(data, "result", &result) &&
		    json_object_array_length(result) == 1 &&
		    json_object_object_get_ex(json_object_array_get_idx(result, 0), "value", &v)) {
			const char *got = json_object_get_string(json_object_array_get_idx(v, 1));
			snprintf(last, sizeof(last), "%s", got ? got : "");
			ok = got && !strcmp(got, value);
		}
		json_object_put(o);
		free(body);
		if (ok)
			return true;
		if (util_now_ms() >= end) {
			fprintf(stderr, "prometheus: %s: last value '%s', wanted '%s'\n", query,
				last, value);
			return false;
		}
		usleep(250000);
	}
}

int main(void)
{
	mport = free_tcp_port();
	char extra[160];
	/* no background template build: the guest gauges count this session alone */
	snprintf(extra, sizeof(extra),
		 "metrics_listen = 127.0.0.1:%u\n[images]\nauto_template = false\n", mport);
	nestord_setup(&d, "metrics", "alice:alice-pw:nestor\n", extra);
	char npath[400], got[512];
	snprintf(npath, sizeof(npath), "%s/notify", d.dir);
	int nfd = notify_open(npath);
	setenv("NOTIFY_SOCKET", npath, 1);
	CHECK(nestord_start(&d));
	unsetenv("NOTIFY_SOCKET");
	CHECK_MSG(notify_wait(nfd, "READY=1", 10000, got, sizeof(got)), "no READY=1 (got '%s')",
		  got);
	CHECK(strstr(got, "STATUS=serving the API on "));
	nestord_add_demo(&d, "ledger");

	/* one wrong password, one session on a real guest */
	CHECK(api(&d, "POST", "/v1/auth",
		  "{\"user\":\"alice\",\"password\":\"no\",\"client\":\"x\"}", NULL) == 401);
	char id[64];
	CHECK(nestord_connect(&d, "alice", "alice-pw", "ledger", id, sizeof(id)) == 200);
	CHECK(wait_state(&d, id, "ready", 120000));

	char *m = scrape();
	if (m) {
		CHECK(metrics_sample(m, "nestor_sessions{state=\"ready\",path=\"cold\"}") == 1);
		CHECK(metrics_sample(m, "nestor_starts_total{path=\"cold\"}") == 1);
		CHECK(metrics_sample(m, "nestor_start_duration_seconds_count{path=\"cold\"}") == 1);
		CHECK(metrics_sample(m, "nestor_start_duration_seconds_sum{path=\"cold\"}") > 0);
		CHECK(metrics_sample(m, "nestor_queue_wait_seconds_count") == 1);
		CHECK(metrics_sample(m, "nestor_auth_total{result=\"denied\"}") == 1);
		CHECK(metrics_sample(m, "nestor_auth_total{result=\"ok\"}") == 1);
		CHECK(metrics_sample(m, "nestor_guests") == 1);
		CHECK(metrics_sample(m, "nestor_guest_memory_bytes") == 256.0 * 1024 * 1024);
		/* a real QEMU holds memory of its own: tens of MiB at least */
		CHECK(metrics_sample(m, "nestor_guest_resident_bytes") > 16.0 * 1024 * 1024);
		CHECK(metrics_sample(m, "nestor_accelerator{accel=\"tcg\"}") == 1);
		CHECK_MSG(promtool_check(m) == 0, "promtool refused nestord's /metrics");
	}
	free(m);
	test_hostile_requests();

	/* a real Prometheus scrapes it */
	unsigned pport = free_tcp_port();
	char plog[600];
	pid_t prom = prometheus_start(pport, plog, sizeof(plog));
	CHECK_MSG(prometheus_has(pport, "up%7Bjob%3D%22nestord%22%7D", "1", 60000),
		  "Prometheus never scraped nestord (see %s)", plog);
	CHECK(prometheus_has(pport, "nestor_starts_total%7Bpath%3D%22cold%22%7D", "1", 10000));
	CHECK(prometheus_has(pport, "nestor_sessions%7Bstate%3D%22ready%22%2Cpath%3D%22cold%22%7D",
			     "1", 10000));
	child_stop(&prom);

	/* ending it shows, and the stop is announced */
	char path[96];
	snprintf(path, sizeof(path), "/v1/sessions/%s", id);
	CHECK(api(&d, "DELETE", path, NULL, NULL) == 200);
	CHECK(wait_state(&d, id, "ended", 60000));
	m = scrape();
	CHECK(m && metrics_sample(m, "nestor_sessions_ended_total") == 1);
	CHECK(m && metrics_sample(m, "nestor_sessions{state=\"ready\",path=\"cold\"}") == 0);
	free(m);
	CHECK(nestord_stop(&d, SIGTERM, 30000) == 0);
	CHECK_MSG(notify_wait(nfd, "STOPPING=1", 5000, got, sizeof(got)), "no STOPPING=1");
	close(nfd);
	return check_done("test_metrics_int");
}
