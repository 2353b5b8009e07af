/* Integration-test helpers; they may block (they are tests). */
#include "testenv.h"
#include "util.h"

#include <dirent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *testenv_scratch(const char *name)
{
	const char *tmp = getenv("TMPDIR");
	char *dir = util_strdup_printf("%s/nestor-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
	if (!dir || !mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	return dir;
}

const char *testenv_guest_dir(void)
{
	const char *d = getenv("NESTOR_TEST_GUEST");
	if (!d || !*d) {
		fprintf(stderr, "NESTOR_TEST_GUEST not set: run through meson test\n");
		exit(77);
	}
	return d;
}

void testenv_profile(struct lnch_profile *p)
{
	static char kernel[4096], initrd[4096], disk[4096];
	const char *d = testenv_guest_dir();
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", d);
	snprintf(initrd, sizeof(initrd), "%s/initrd.gz", d);
	snprintf(disk, sizeof(disk), "%s/base.qcow2", d);
	memset(p, 0, sizeof(*p));
	p->machine = "pc-i440fx-7.2";
	p->memory_mb = 256;
	p->cpus = 1;
	p->disk = disk;
	p->kernel = kernel;
	p->initrd = initrd;
	p->append = "console=ttyS0 quiet panic=-1";
	p->vnc = true;
	p->net = LNCH_NET_NONE;
	p->ready = LNCH_READY_SERIAL;
	p->ready_marker = "NESTOR-READY";
	p->serial_probe = true;
}

struct flagwait {
	const bool *flag;
};

static bool flag_cond(void *arg)
{
	return *((struct flagwait *)arg)->flag;
}

bool testenv_run_until(struct event_base *base, const bool *flag, int timeout_ms)
{
	struct flagwait fw = {flag};
	return testenv_wait(base, flag_cond, &fw, timeout_ms);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
}

bool testenv_wait(struct event_base *base, bool (*cond)(void *), void *arg, int timeout_ms)
{
	int64_t end = util_now_ms() + timeout_ms;
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = {0, 10000};
	event_add(t, &tv);
	while (!cond(arg) && util_now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return cond(arg);
}

void testenv_rmtree(const char *dir)
{
	char *cmd = util_strdup_printf("rm -rf '%s'", dir);
	if (cmd && system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
	free(cmd);
}

char *testenv_slurp(const char *path, size_t *len)
{
	char *buf = NULL;
	if (util_read_file(path, 64 << 20, &buf, len) < 0)
		return NULL;
	return buf;
}

int testenv_count_entries(const char *dir)
{
	DIR *dd = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (dd && (e = readdir(dd)))
		n += e->d_name[0] != '.';
	if (dd)
		closedir(dd);
	return n;
}

long testenv_pss_kib(pid_t pid)
{
	char path[64], line[256];
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/smaps_rollup");
	FILE *f = fopen(path, "r");
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}
