/*
 * Under systemd, log lines become journal entries whose fields follow one
 * session across nestord and the gateway (journalctl SESSION_ID=...). No
 * journald runs here, so this test stands in for it: in a mount namespace
 * of its own it puts a datagram socket where libsystemd sends entries
 * (/run/systemd/journal/socket), points JOURNAL_STREAM at its stderr as
 * systemd does, logs through the real logger and reads what arrived.
 * Needs root (a mount namespace).
 */
#include "check.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SOCK "/run/systemd/journal/socket"

static int journal_socket(void)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		fprintf(stderr, "no mount namespace (%s): this test needs root\n", strerror(errno));
		exit(77);
	}
	/* our own /run: the host's journal (if any) never sees these entries */
	if (mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") < 0 ||
	    mkdir("/run/systemd", 0755) < 0 || mkdir("/run/systemd/journal", 0755) < 0) {
		perror("tmpfs on /run");
		exit(1);
	}
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = SOCK};
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror(SOCK);
		exit(1);
	}
	return fd;
}

/* One entry, or "" after a second. */
static void entry(int fd, char *buf, size_t len)
{
	struct pollfd p = {fd, POLLIN, 0};
	buf[0] = '\0';
	if (poll(&p, 1, 1000) == 1) {
		ssize_t n = recv(fd, buf, len - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
	}
}

/* FIELD=value as a whole line of the entry */
static bool has(const char *e, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = e; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0'))
			return true;
	}
	return false;
}

int main(void)
{
	int jfd = journal_socket();
	/* stderr is the stream systemd named, as under a unit (our own stderr stays
	 * where the test runner reads it: only the logger's lines change course) */
	struct stat st;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 1;
	char js[64];
	snprintf(js, sizeof(js), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	log_init("nestord", LOG_LVL_INFO);

	char e[8192];
	log_info("session=%s user=%s image=%s ready -> connected", "5f3a9c21", "alice", "ledger");
	entry(jfd, e, sizeof(e));
	CHECK_MSG(has(e, "SESSION_ID=5f3a9c21"), "entry: '%s'", e);
	CHECK(has(e, "USER=alice"));
	CHECK(has(e, "IMAGE=ledger"));
	CHECK(!strstr(e, "\nVM="));
	CHECK(has(e, "PRIORITY=6"));
	CHECK(has(e, "SYSLOG_IDENTIFIER=nestord"));
	CHECK(has(e, "MESSAGE=session=5f3a9c21 user=alice image=ledger ready -> connected"));
	CHECK(strstr(e, "CODE_FILE=") && strstr(e, "CODE_LINE="));

	/* a name a client chose, in the text, is no field */
	log_info("peer %s: the client calls itself %s", "10.0.0.9:4000",
		 "x session=evil user=root");
	entry(jfd, e, sizeof(e));
	CHECK_MSG(!strstr(e, "SESSION_ID=") && !strstr(e, "\nUSER="), "entry: '%s'", e);

	/* what a client said cannot add fields or lines: it stays escaped in MESSAGE */
	log_warn("vm=%s said \"%s\"", "77aa", "x\nSESSION_ID=forged\n");
	entry(jfd, e, sizeof(e));
	CHECK_MSG(has(e, "VM=77aa"), "entry: '%s'", e);
	CHECK(has(e, "PRIORITY=4"));
	CHECK(!strstr(e, "\nSESSION_ID=") && strncmp(e, "SESSION_ID=", 11) != 0);
	CHECK(has(e, "MESSAGE=vm=77aa said \"x\\x0aSESSION_ID=forged\\x0a\""));

	/* a gateway worker serves one session: every line carries it */
	log_context("abcd1234", "kim", NULL);
	log_info("peer %s: disconnected", "10.0.0.7:50000");
	entry(jfd, e, sizeof(e));
	CHECK_MSG(has(e, "SESSION_ID=abcd1234") && has(e, "USER=kim"), "entry: '%s'", e);
	CHECK(!strstr(e, "\nIMAGE="));
	/* ... unless a line names another */
	log_info("session=%s user=%s image=%s", "ffff0000", "lee", "xp");
	entry(jfd, e, sizeof(e));
	CHECK(has(e, "SESSION_ID=ffff0000") && has(e, "USER=lee") && has(e, "IMAGE=xp"));
	CHECK(!has(e, "SESSION_ID=abcd1234") && !has(e, "USER=kim"));
	log_context(NULL, NULL, NULL);

	/* debug is below the level: nothing is sent */
	log_debug("session=%s", "00");
	entry(jfd, e, sizeof(e));
	CHECK(e[0] == '\0');

	/* a stderr that is not the stream systemd named: plain lines again */
	setenv("JOURNAL_STREAM", "1:1", 1);
	log_init("nestord", LOG_LVL_INFO);
	log_info("session=%s plain", "11");
	entry(jfd, e, sizeof(e));
	CHECK(e[0] == '\0');
	return check_done("test_journal");
}
