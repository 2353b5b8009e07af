/*
 * The exposition helpers (common/prom.c), nestord's metrics writer over a
 * made-up snapshot (checked by promtool, the reference parser), listening
 * addresses (conf_hostport) and the journal fields a log line gives.
 */
#include "check.h"
#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "prom.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *drain(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static void test_label(void)
{
	char l[32] = "";
	CHECK(prom_label(l, sizeof(l), "a", "x") == 0 && check_streq(l, "a=\"x\""));
	CHECK(prom_label(l, sizeof(l), "b", "q\"\\\n") == 0);
	CHECK_MSG(check_streq(l, "a=\"x\",b=\"q\\\"\\\\\\n\""), "got %s", l);
	/* too long: refused, the buffer unchanged */
	CHECK(prom_label(l, sizeof(l), "c", "0123456789abcdef") == -ENOSPC);
	CHECK(check_streq(l, "a=\"x\",b=\"q\\\"\\\\\\n\""));
	char tiny[4] = "";
	CHECK(prom_label(tiny, sizeof(tiny), "key", "v") == -ENOSPC && tiny[0] == '\0');
	/* k=" fills all but one byte: no room for the closing quote */
	char edge[4] = "";
	CHECK(prom_label(edge, sizeof(edge), "k", "") == -ENOSPC && edge[0] == '\0');
	char fits[5] = "";
	CHECK(prom_label(fits, sizeof(fits), "k", "") == 0 && check_streq(fits, "k=\"\""));
}

static void test_hist(void)
{
	const struct prom_bounds b = {3, {0.1, 1, 10}};
	struct prom_hist h = {0};
	prom_observe(&h, &b, 0.05);
	prom_observe(&h, &b, 0.1); /* le is inclusive */
	prom_observe(&h, &b, 5);
	prom_observe(&h, &b, 99);
	prom_observe(&h, &b, -1); /* clock steps: counted as 0 */
	struct evbuffer *o = evbuffer_new();
	prom_family(o, "t_seconds", "histogram", "A test.");
	prom_hist_write(o, "t_seconds", "k=\"v\"", &b, &h);
	char *s = drain(o);
	CHECK(strstr(s, "t_seconds_bucket{k=\"v\",le=\"0.1\"} 3\n"));
	CHECK(strstr(s, "t_seconds_bucket{k=\"v\",le=\"1\"} 3\n"));
	CHECK(strstr(s, "t_seconds_bucket{k=\"v\",le=\"10\"} 4\n"));
	CHECK(strstr(s, "t_seconds_bucket{k=\"v\",le=\"+Inf\"} 5\n"));
	CHECK(strstr(s, "t_seconds_count{k=\"v\"} 5\n"));
	CHECK_MSG(strstr(s, "t_seconds_sum{k=\"v\"} 104.15\n"), "%s", s);
	CHECK(promtool_check(s) == 0);
	free(s);
	evbuffer_free(o);
}

static void test_nestord(void)
{
	struct brk_metrics m = {0};
	m.starts[PATH_TEMPLATE] = 3;
	m.start_failures[PATH_COLD] = 1;
	prom_observe(&m.start_seconds[PATH_TEMPLATE], &prom_fast, 0.12);
	prom_observe(&m.queue_seconds, &prom_slow, 4);
	m.auth[AUTHM_DENIED] = 2;
	m.auth_throttled = 1;
	struct brk_metrics_view v = {.m = &m, .version = "9.9", .accel = "tcg"};
	v.sessions[BRK_QUEUED][PATH_N] = 2;
	v.sessions[BRK_CONNECTED][PATH_TEMPLATE] = 3;
	v.memory_mb = 1536;
	v.max_memory_mb = 4096;
	struct evbuffer *o = evbuffer_new();
	brk_metrics_write(o, &v);
	char *s = drain(o);
	CHECK(strstr(s, "nestor_sessions{state=\"queued\",path=\"none\"} 2\n"));
	CHECK(!strstr(s, "nestor_sessions{state=\"queued\",path=\"cold\"}"));
	CHECK(strstr(s, "nestor_sessions{state=\"connected\",path=\"template\"} 3\n"));
	CHECK(strstr(s, "nestor_starts_total{path=\"template\"} 3\n"));
	CHECK(strstr(s, "nestor_start_failures_total{path=\"cold\"} 1\n"));
	CHECK(strstr(s, "nestor_start_duration_seconds_count{path=\"template\"} 1\n"));
	CHECK(strstr(s, "nestor_start_duration_seconds_bucket{path=\"template\",le=\"0.25\"} 1\n"));
	CHECK(strstr(s, "nestor_queue_wait_seconds_bucket{le=\"5\"} 1\n"));
	CHECK(strstr(s, "nestor_auth_total{result=\"denied\"} 2\n"));
	CHECK(strstr(s, "nestor_auth_throttled_total 1\n"));
	CHECK(strstr(s, "nestor_guest_memory_bytes 1610612736\n"));
	CHECK(strstr(s, "nestor_cap_memory_bytes 4294967296\n"));
	CHECK(strstr(s, "nestor_accelerator{accel=\"tcg\"} 1\n"));
	CHECK(strstr(s, "nestor_accelerator{accel=\"kvm\"} 0\n"));
	CHECK(strstr(s, "nestor_build_info{version=\"9.9\"} 1\n"));
	CHECK_MSG(promtool_check(s) == 0, "promtool refused:\n%s", s);
	free(s);
	evbuffer_free(o);
}

static void test_hostport(void)
{
	char h[64];
	uint16_t p;
	CHECK(conf_hostport("127.0.0.1:9464", h, sizeof(h), &p) == 0 &&
	      check_streq(h, "127.0.0.1") && p == 9464);
	CHECK(conf_hostport("[::1]:80", h, sizeof(h), &p) == 0 && check_streq(h, "::1") && p == 80);
	CHECK(conf_hostport("metrics.example:9464", h, sizeof(h), &p) == 0 && p == 9464);
	const char *bad[] = {"",	   "9464",    ":9464",	 "host:",    "host:0",
			     "host:65536", "host:+1", "host:-1", "host:12x", "::1:80",
			     "[::1]80",	   "[]:80",   "[::1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(conf_hostport(bad[i], h, sizeof(h), &p) == -EINVAL, "'%s' accepted",
			  bad[i]);
	char dst[16];
	CHECK(conf_listen(dst, sizeof(dst), "1.2.3.4:5") == 0 && check_streq(dst, "1.2.3.4:5"));
	CHECK(conf_listen(dst, sizeof(dst), "") == 0 && dst[0] == '\0'); /* off */
	CHECK(conf_listen(dst, sizeof(dst), "nowhere") == -EINVAL);
	CHECK(conf_listen(dst, sizeof(dst), "255.255.255.255:65535") == -EINVAL); /* too long */
}

static const char *field(const struct log_field *f, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(f[i].name, name))
			return f[i].value;
	}
	return NULL;
}

static void test_fields(void)
{
	struct log_field f[LOG_FIELDS];
	size_t n = log_fields("session=ab12 user=alice image=xp vm=ab12: ready", f);
	CHECK(n == 4);
	CHECK(check_streq(field(f, n, "SESSION_ID"), "ab12"));
	CHECK(check_streq(field(f, n, "USER"), "alice"));
	CHECK(check_streq(field(f, n, "IMAGE"), "xp"));
	CHECK(check_streq(field(f, n, "VM"), "ab12"));
	/* empty values are skipped; the first one wins */
	n = log_fields("session= user=bob, user=eve", f);
	CHECK(n == 1 && check_streq(field(f, n, "USER"), "bob"));
	CHECK(log_fields("nothing here", f) == 0);
	CHECK(log_fields("xsession=1", f) == 0);
	/* only the tokens a line starts with: the rest may be a client's words */
	n = log_fields("peer 10.0.0.7:5000: user=kim the client calls itself x session=evil", f);
	CHECK(n == 1 && check_streq(field(f, n, "USER"), "kim") && !field(f, n, "SESSION_ID"));
	CHECK(log_fields("peer 10.0.0.7:5000: the client calls itself x session=evil", f) == 0);
	CHECK(log_fields("vm=77 stopped: crashed: session=evil user=root", f) == 1);
	CHECK(log_fields("peer a b: session=1", f) == 0); /* not a peer prefix */
	char longv[200];
	memset(longv, 'a', sizeof(longv));
	memcpy(longv, "session=", 8);
	longv[sizeof(longv) - 1] = '\0';
	CHECK(log_fields(longv, f) == 0); /* too long for a field: left out, not cut */
}

int main(void)
{
	test_label();
	test_hist();
	test_nestord();
	test_hostport();
	test_fields();
	return check_done("test_metrics");
}
