/* Table tests for QEMU argv building (launcher/argv.c). */
#include "argv.h"
#include "check.h"

static struct lnch_profile base_profile(void)
{
	struct lnch_profile p = {
	    .machine = "pc-i440fx-7.2",
	    .memory_mb = 256,
	    .cpus = 1,
	    .disk = "/img/base.qcow2",
	    .kernel = "/img/vmlinuz",
	    .initrd = "/img/initrd.gz",
	    .append = "console=ttyS0",
	    .vnc = true,
	    .net = LNCH_NET_NONE,
	    .ready = LNCH_READY_SERIAL,
	    .ready_marker = "READY",
	    .serial_probe = true,
	};
	return p;
}

static const struct lnch_paths base_paths = {
    .overlay = "/run/o,v.qcow2",
    .qmp = "/run/x/qmp.sock",
    .vnc = "/run/x/vnc.sock",
    .serial_log = "/run/x/serial.log",
    .probe = "/run/x/probe.sock",
};

static int find(const struct lnch_argv *a, const char *opt, const char *val)
{
	for (size_t i = 0; i + 1 < a->n; i++)
		if (strcmp(a->v[i], opt) == 0 && (!val || strcmp(a->v[i + 1], val) == 0))
			return (int)i;
	return -1;
}

static void test_cold(void)
{
	struct lnch_profile p = base_profile();
	struct lnch_argv_opts o = {
	    .qemu = "/usr/bin/qemu", .accel = LNCH_ACCEL_TCG, .sandbox = true, .name = "s1"};
	struct lnch_argv a;
	char err[128] = "";
	CHECK(lnch_argv_build(&o, &p, &base_paths, &a, err, sizeof(err)) == 0);
	CHECK_STR(a.v[0], "/usr/bin/qemu");
	CHECK(a.v[a.n] == NULL);
	CHECK(find(&a, "-accel", "tcg") > 0);
	int nd = 0;
	for (size_t i = 0; i < a.n; i++)
		nd += strcmp(a.v[i], "-nodefaults") == 0;
	CHECK(nd == 1);
	CHECK(find(&a, "-sandbox",
		   "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
		   "resourcecontrol=deny") > 0);
	CHECK(find(&a, "-machine", "pc-i440fx-7.2") > 0);
	CHECK(find(&a, "-m", "256") > 0);
	/* the comma in the overlay path is doubled: it cannot inject options */
	CHECK(find(&a, "-drive",
		   "file=/run/o,,v.qcow2,format=qcow2,if=virtio,cache=writeback,"
		   "discard=unmap") > 0);
	CHECK(find(&a, "-vnc", "unix:/run/x/vnc.sock") > 0);
	CHECK(find(&a, "-qmp", "unix:/run/x/qmp.sock,server=on,wait=off") > 0);
	CHECK(find(&a, "-chardev", "file,id=ser0,path=/run/x/serial.log") > 0);
	CHECK(find(&a, "-chardev", "socket,id=ser1,path=/run/x/probe.sock,server=on,wait=off") > 0);
	CHECK(find(&a, "-netdev", NULL) < 0); /* no network at all */
	CHECK(find(&a, "-incoming", NULL) < 0);
	CHECK(find(&a, "-kernel", "/img/vmlinuz") > 0);
	lnch_argv_free(&a);
}

static void test_template_and_net(void)
{
	struct lnch_profile p = base_profile();
	p.net = LNCH_NET_RESTRICTED;
	p.guest_port = 3389;
	p.vnc = false;
	struct lnch_paths paths = base_paths;
	paths.ram_file = "/tpl/T.ram";
	paths.incoming = true;
	paths.host_port = 40001;
	struct lnch_argv_opts o = {.qemu = "q", .accel = LNCH_ACCEL_KVM, .name = "s2"};
	struct lnch_argv a;
	char err[128] = "";
	CHECK(lnch_argv_build(&o, &p, &paths, &a, err, sizeof(err)) == 0);
	CHECK(find(&a, "-accel", "kvm") > 0);
	CHECK(find(&a, "-sandbox", NULL) < 0);
	CHECK(find(&a, "-object",
		   "memory-backend-file,id=pc.ram,size=256M,mem-path=/tpl/T.ram,share=off") > 0);
	CHECK(find(&a, "-machine", "pc-i440fx-7.2,memory-backend=pc.ram") > 0);
	CHECK(find(&a, "-incoming", "defer") > 0);
	CHECK(find(&a, "-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40001-:3389") >
	      0);
	CHECK(find(&a, "-vga", "none") > 0);
	CHECK(find(&a, "-vnc", NULL) < 0);
	lnch_argv_free(&a);
}

struct bad_case {
	const char *want; /* in the error text */
	struct lnch_profile p;
};

static void test_invalid(void)
{
	struct bad_case cases[16];
	size_t n = 0;
#define BAD(text, field, value)                                                                    \
	do {                                                                                       \
		cases[n].want = text;                                                              \
		cases[n].p = base_profile();                                                       \
		cases[n].p.field = value;                                                          \
		n++;                                                                               \
	} while (0)
	BAD("machine", machine, "pc,accel=kvm");
	BAD("machine", machine, "");
	BAD("memory", memory_mb, 8);
	BAD("memory", memory_mb, 100000);
	BAD("cpus", cpus, 0);
	BAD("disk", disk, "rel.qcow2");
	BAD("kernel", kernel, NULL);
	BAD("restricted", guest_port, 22);
	BAD("marker", ready_marker, "");
	BAD("guest port", ready, LNCH_READY_TCP);
	BAD("rdp readiness needs a guest port", ready, LNCH_READY_RDP);
#undef BAD
	struct lnch_argv_opts o = {.qemu = "q", .name = "x"};
	for (size_t i = 0; i < n; i++) {
		char err[128] = "";
		struct lnch_argv a;
		int r = lnch_argv_build(&o, &cases[i].p, &base_paths, &a, err, sizeof(err));
		CHECK_MSG(r < 0, "case %zu should fail", i);
		CHECK_MSG(strstr(err, cases[i].want) != NULL, "case %zu: '%s' lacks '%s'", i, err,
			  cases[i].want);
	}
}

static void test_escape(void)
{
	static const char *const t[][2] = {
	    {"", ""}, {"a", "a"}, {",", ",,"}, {"a,b,,c", "a,,b,,,,c"}, {"x,", "x,,"}};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *e = lnch_qemu_escape(t[i][0]);
		CHECK_STR(e, t[i][1]);
		free(e);
	}
}

int main(void)
{
	test_cold();
	test_template_and_net();
	test_invalid();
	test_escape();
	return check_done("test_argv");
}
