/* Table tests for nestord's configuration parser (broker/config.c). */
#include "check.h"
#include "config.h"

int main(void)
{
	struct brk_config c;
	char err[512];

	brk_config_defaults(&c);
	CHECK(brk_config_parse(&c, "t.conf", "", err, sizeof(err)) == 0);
	CHECK_STR(c.pam_service, "nestor");
	CHECK_STR(c.api_socket, "/run/nestor/api.sock");
	CHECK_STR(c.overlay_dir, "/var/lib/nestor/overlays");
	CHECK(c.max_starting == -1 && c.sandbox);

	brk_config_defaults(&c);
	CHECK(brk_config_parse(&c, "t.conf",
			       "# comment\n[nestord]\nstate_dir = /srv/n\npam_service = other\n"
			       "sandbox = off\n[caps]\nmax_sessions = 8\nmax_starting = 2\n"
			       "[sessions]\nkeepalive = 60\n[auth]\nmax_failures = 0\n",
			       err, sizeof(err)) == 0);
	CHECK_STR(c.state_dir, "/srv/n");
	CHECK_STR(c.overlay_dir, "/srv/n/overlays");
	CHECK_STR(c.pam_service, "other");
	CHECK(!c.sandbox && c.max_sessions == 8 && c.max_starting == 2);
	CHECK(c.timeouts.keepalive == 60 && c.auth_max_failures == 0);
	CHECK(c.accel_probe_timeout == 15 && c.accel_trial_timeout == 60 && c.min_free_mb == 64);

	brk_config_defaults(&c);
	CHECK(
	    brk_config_parse(&c, "t.conf",
			     "[nestord]\naccel_probe_kernel = /boot/vmlinuz-x\n"
			     "accel_probe_timeout = 5\naccel_trial_timeout = 0\nmin_free_mb = 0\n",
			     err, sizeof(err)) == 0);
	CHECK_STR(c.accel_probe_kernel, "/boot/vmlinuz-x");
	CHECK(c.accel_probe_timeout == 5 && c.accel_trial_timeout == 0 && c.min_free_mb == 0);

	brk_config_defaults(&c);
	CHECK(c.agent_listen[0] == '\0'); /* off by default */
	CHECK(brk_config_parse(&c, "t.conf", "[fleet]\nagent_listen = 127.0.0.1:9465\n", err,
			       sizeof(err)) == 0);
	CHECK_STR(c.agent_listen, "127.0.0.1:9465");

	static const struct {
		const char *text;
		const char *want; /* in the message */
	} bad[] = {
	    {"[nestord]\nstate_dir = relative\n",
	     "t.conf:2: bad value 'relative' for nestord.state_dir"},
	    {"[nestord]\n\nbogus = 1\n", "t.conf:3: unknown key 'bogus' in section [nestord]"},
	    {"[caps]\nmax_sessions = -3\n", "t.conf:2: bad value '-3' for caps.max_sessions"},
	    {"[caps]\nmax_sessions = 12abc\n", "caps.max_sessions"},
	    {"[caps]\nmax_starting = lots\n", "expected auto or"},
	    {"[nestord]\naccel = fast\n", "expected auto, kvm or tcg"},
	    {"[nestord]\nadmin_group = "
	     "a123456789a123456789a123456789a123456789a123456789a123456789abcd\n",
	     "nestord.admin_group: expected a group name"},
	    {"[nestord]\nsandbox = maybe\n", "expected true or false"},
	    {"[other]\nx = 1\n", "unknown key 'x' in section [other]"},
	    {"[nestord\nx = 1\n", "syntax error"},
	    {"[nestord]\nrun_dir = /a/very/long/run/directory/path/that/is/too/long/for/sockets\n",
	     "too long"},
	    {"[nestord]\npam_service = ../../etc/x\n", "pam_service"},
	    {"[nestord]\naccel_probe_kernel = vmlinuz\n", "expected an absolute path"},
	    {"[nestord]\naccel_probe_timeout = 601\n", "nestord.accel_probe_timeout"},
	    {"[nestord]\nmin_free_mb = many\n", "nestord.min_free_mb"},
	    {"[fleet]\nagent_listen = 9465\n", "fleet.agent_listen: expected HOST:PORT"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		brk_config_defaults(&c);
		err[0] = '\0';
		CHECK_MSG(brk_config_parse(&c, "t.conf", bad[i].text, err, sizeof(err)) < 0,
			  "case %zu accepted", i);
		CHECK_MSG(strstr(err, bad[i].want) != NULL, "case %zu: '%s' lacks '%s'", i, err,
			  bad[i].want);
	}
	return check_done("test_config");
}
