/*
 * An app in the browser, for real: nestord with PAM and the test guest,
 * nestor-gateway with its browser door (web_port), nestor-portal, and
 * headless Chromium running Debian's noVNC (tests/portal/browser.py):
 *  - the portal's "In the browser" gives a page with a launch ticket; noVNC
 *    connects over wss to the gateway and shows the gateway's wait screen,
 *    then the guest's pixels (screenshots of both);
 *  - text typed in the browser reaches the guest (its demo app echoes it on
 *    the serial port);
 *  - a second use of the same ticket is refused by nestord (audited), and
 *    the session is the one an RDP connect reattaches to;
 *  - the browser door holds the same limits: a WebSocket upgrade without a
 *    launch is refused; plain bytes are cut.
 */
#include "check.h"
#include "daemon.h"
#include "testenv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct nestord d;

static bool file_has(const char *path, const char *text)
{
	char *s = testenv_slurp(path, NULL);
	bool ok = s && strstr(s, text);
	free(s);
	return ok;
}

/* alice's live session of APP: its id into ID (33). */
static bool session_of(const char *app, char *id)
{
	json_object *o = NULL;
	bool found = false;
	if (api(&d, "GET", "/v1/sessions", NULL, &o) == 200 && o) {
		for (size_t i = 0; i < json_object_array_length(o) && !found; i++) {
			json_object *s = json_object_array_get_idx(o, i);
			if (!strcmp(jget(s, "user"), "alice") && !strcmp(jget(s, "app"), app)) {
				snprintf(id, 33, "%s", jget(s, "id"));
				found = true;
			}
		}
	}
	json_object_put(o);
	return found;
}

/* The browser door refuses what is not a launch: an upgrade without one, plain bytes. */
static void test_door_refuses(unsigned web_port)
{
	char cmd[800];
	snprintf(cmd, sizeof(cmd),
		 "curl -sk --max-time 5 -o /dev/null -w '%%{http_code}' -H 'Connection: Upgrade' "
		 "-H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' "
		 "-H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "
		 "'https://127.0.0.1:%u/websockify?user=alice&app=ledger'",
		 web_port);
	FILE *p = popen(cmd, "r");
	char code[16] = "";
	if (p) {
		if (!fgets(code, sizeof(code), p))
			code[0] = '\0';
		pclose(p);
	}
	CHECK_MSG(!strcmp(code, "400"), "an upgrade without a ticket: %s", code);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)web_port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	const char get[] = "GET / HTTP/1.1\r\n\r\n";
	ok = ok && write(fd, get, sizeof(get) - 1) > 0;
	char buf[64];
	struct timeval tv = {15, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = ok ? read(fd, buf, sizeof(buf)) : 0;
	CHECK_MSG(ok && (n <= 0 || memcmp(buf, "HTTP", 4) != 0), "plain bytes were answered");
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	if (access("/usr/bin/chromium", X_OK) != 0 ||
	    access("/usr/share/novnc/core/rfb.js", R_OK)) {
		fprintf(stderr, "chromium or novnc is not installed (scripts/install-deps)\n");
		return 1;
	}
	nestord_setup(&d, "browser", "alice:alice-pw:nestor\n",
		      "[images]\nauto_template = false\n[sessions]\nstop_grace = 1\n");
	if (!nestord_start(&d))
		return 1;
	nestord_add_demo(&d, "ledger");
	unsigned gw_port = free_tcp_port(), web_port = free_tcp_port(), port = free_tcp_port();
	char extra[400], glog[400], conf[400];
	snprintf(extra, sizeof(extra),
		 "web_port = %u\n[portal]\nlisten = 127.0.0.1\nport = %u\ntitle = Acme apps\n",
		 web_port, port);
	pid_t gw = gateway_start(&d, gw_port, extra, glog, sizeof(glog));
	CHECK_MSG(gw > 0, "the gateway did not start (%s)", glog);
	snprintf(conf, sizeof(conf), "%s/gateway.conf", d.dir);
	pid_t portal = gw > 0 ? portal_start(&d, conf, port) : -1;
	CHECK_MSG(portal > 0, "the portal did not start");
	if (gw > 0 && portal > 0) {
		test_door_refuses(web_port);
		char cmd[1200];
		const char *shots = getenv("NESTOR_SHOTS") ? getenv("NESTOR_SHOTS") : d.dir;
		snprintf(cmd, sizeof(cmd),
			 "/usr/bin/python3 '%s/tests/portal/browser.py' --port %u --user alice "
			 "--password alice-pw --expect Ledger --out '%s' --launch ledger "
			 "--type browsertyped --timeout 150 "
			 "--shots browser-signin,browser-apps,browser-wait,browser-guest",
			 getenv("NESTOR_SRC"), port, shots);
		int st = system(cmd);
		CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the browser run failed (%d)", st);
		char id[33] = "", serial[600];
		CHECK(session_of("ledger", id));
		snprintf(serial, sizeof(serial), "%s/run/vm/%s/serial.log", d.dir, id);
		CHECK_MSG(file_has(serial, "GOT:browsertyped"), "the typed line is not in %s",
			  serial);
		/* the ticket worked once, and once only */
		json_object *a = NULL;
		CHECK(api(&d, "GET", "/v1/audit?limit=100", NULL, &a) == 200);
		const char *s = a ? json_object_to_json_string(a) : "";
		CHECK_MSG(strstr(s, "\"launch\"") && strstr(s, "launch-refused"), "%s", s);
		json_object_put(a);
		/* the browser's session is the one an RDP client reconnects to */
		char again[64];
		CHECK(nestord_connect(&d, "alice", "alice-pw", "ledger", again, sizeof(again)) ==
		      200);
		CHECK_STR(again, id);
		CHECK(file_has(glog, "browsers (noVNC over a secure WebSocket)"));
	}
	if (portal > 0)
		child_stop(&portal);
	if (gw > 0)
		child_stop(&gw);
	nestord_stop(&d, SIGTERM, 15000);
	return check_done("browser");
}
