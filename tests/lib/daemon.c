/* Running nestord for integration tests; blocking by design (tests). */
#include "daemon.h"
#include "check.h"
#include "httpc.h"
#include "nestor-config.h"
#include "testenv.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAM_MATRIX "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so"
#define PAM_OATH "/lib/x86_64-linux-gnu/security/pam_oath.so"
#define OATHTOOL "/usr/bin/oathtool"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

void nestord_setup(struct nestord *d, const char *name, const char *users, const char *extra)
{
	if (access(PAM_MATRIX, R_OK) != 0) {
		fprintf(stderr, "pam_matrix not installed (libpam-wrapper): cannot test PAM\n");
		exit(77);
	}
	memset(d, 0, sizeof(*d));
	char *dir = testenv_scratch(name);
	snprintf(d->dir, sizeof(d->dir), "%s", dir);
	free(dir);
	char path[512], text[4096];
	snprintf(path, sizeof(path), "%s/pam", d->dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/passdb", d->dir);
	write_file(path, users);
	snprintf(text, sizeof(text),
		 "auth required " PAM_MATRIX " passdb=%s/passdb\n"
		 "account required " PAM_MATRIX " passdb=%s/passdb\n",
		 d->dir, d->dir);
	snprintf(path, sizeof(path), "%s/pam/nestor", d->dir);
	write_file(path, text);
	snprintf(d->conf, sizeof(d->conf), "%s/nestor.conf", d->dir);
	snprintf(d->sock, sizeof(d->sock), "%s/run/api.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/nestord.log", d->dir);
	nestord_setup_conf(d, extra);
}

void nestord_setup_oath(struct nestord *d, const char *users, bool code_first)
{
	if (access(PAM_OATH, R_OK) != 0 || access(OATHTOOL, X_OK) != 0) {
		fprintf(stderr, "pam_oath or oathtool not installed (libpam-oath, oathtool)\n");
		exit(77);
	}
	char path[512], text[4096];
	/* pam_oath writes the file back (the last code used): it must be writable */
	snprintf(path, sizeof(path), "%s/users.oath", d->dir);
	write_file(path, users);
	chmod(path, 0600);
	char matrix[400], oath[700];
	snprintf(matrix, sizeof(matrix), "auth requisite " PAM_MATRIX " passdb=%s/passdb\n",
		 d->dir);
	snprintf(oath, sizeof(oath), "auth required " PAM_OATH " usersfile=%s window=3\n", path);
	snprintf(text, sizeof(text), "%s%saccount required " PAM_MATRIX " passdb=%s/passdb\n",
		 code_first ? oath : matrix, code_first ? matrix : oath, d->dir);
	snprintf(path, sizeof(path), "%s/pam/nestor", d->dir);
	write_file(path, text);
}

bool oath_totp(const char *hexsecret, int offset_s, char *out, size_t len)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), OATHTOOL " --totp -N @%lld %s", (long long)time(NULL) + offset_s,
		 hexsecret);
	FILE *f = popen(cmd, "r");
	if (!f)
		return false;
	bool ok = fgets(out, (int)len, f) != NULL;
	if (pclose(f) != 0)
		ok = false;
	out[ok ? strcspn(out, "\n") : 0] = '\0';
	return ok && strlen(out) == 6;
}

void nestord_setup_conf(struct nestord *d, const char *extra)
{
	char text[4096];
	/* accel=tcg: the probe has its own test in test_launcher; restarts stay fast */
	snprintf(text, sizeof(text),
		 "[nestord]\nstate_dir = %s/state\nrun_dir = %s/run\naccel = tcg\nlog_level = %s\n"
		 "qemu = %s\nqemu_img = %s\n%s\n",
		 d->dir, d->dir, getenv("NESTOR_DEBUG") ? "debug" : "info", NESTOR_QEMU,
		 NESTOR_QEMU_IMG, extra ? extra : "");
	write_file(d->conf, text);
}

bool nestord_start(struct nestord *d)
{
	const char *build = getenv("NESTOR_BUILD");
	char exe[512];
	snprintf(exe, sizeof(exe), "%s/broker/nestord", build ? build : ".");
	pid_t pid = fork();
	if (pid == 0) {
		char pamdir[300];
		snprintf(pamdir, sizeof(pamdir), "%s/pam", d->dir);
		setenv("LD_PRELOAD", "libpam_wrapper.so", 1);
		setenv("PAM_WRAPPER", "1", 1);
		setenv("PAM_WRAPPER_SERVICE_DIR", pamdir, 1);
		/* RTLD_DEEPBIND breaks ASan; pam_wrapper 1.1 reads this (sic) name */
		setenv("UID_WRAPPER_DISABLE_DEEPBIND", "1", 1);
		setenv("PAM_WRAPPER_DISABLE_DEEPBIND", "1", 1);
		/* ASan must not insist on being first: pam_wrapper is preloaded */
		const char *asan = getenv("ASAN_OPTIONS");
		char opts[512];
		snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
			 asan && *asan ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(exe, exe, "--config", d->conf, (char *)NULL);
		_exit(127);
	}
	d->pid = pid;
	/* up to a minute: an accelerator probe boots a kernel under TCG on a busy host */
	for (int i = 0; i < 1200; i++) {
		json_object *o = NULL;
		if (api(d, "GET", "/v1/status", NULL, &o) == 200) {
			const char *accel = jget(o, "accel");
			bool ok = d->no_wait || strcmp(accel, "probing") != 0;
			json_object_put(o);
			if (ok)
				return true;
			o = NULL;
		}
		json_object_put(o);
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			fprintf(stderr, "nestord exited at start; see %s\n", d->log);
			d->pid = 0;
			return false;
		}
		usleep(50000);
	}
	return false;
}

int nestord_stop(struct nestord *d, int sig, int timeout_ms)
{
	int st = -1;
	if (d->pid <= 0)
		return -1;
	kill(d->pid, sig);
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = 0;
			return st;
		}
		usleep(50000);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &st, 0);
	d->pid = 0;
	return -1;
}

int api(struct nestord *d, const char *method, const char *path, const char *body,
	json_object **out)
{
	char *resp = NULL;
	int st = httpc_request(d->sock, method, path, body, 70000, &resp);
	if (out)
		*out = resp ? json_tokener_parse(resp) : NULL;
	free(resp);
	return st;
}

int nestord_connect(struct nestord *d, const char *user, const char *pass, const char *app,
		    char *id, size_t idlen)
{
	json_object *b = json_object_new_object(), *s = NULL;
	json_object_object_add(b, "user", json_object_new_string(user));
	json_object_object_add(b, "password", json_object_new_string(pass));
	json_object_object_add(b, "app", json_object_new_string(app));
	json_object_object_add(b, "client", json_object_new_string("x"));
	int st = api(d, "POST", "/v1/sessions", json_object_to_json_string(b), &s);
	json_object_put(b);
	if (id)
		snprintf(id, idlen, "%s", jget(s, "id"));
	json_object_put(s);
	return st;
}

void nestord_add_demo(struct nestord *d, const char *alias)
{
	const char *g = testenv_guest_dir();
	char body[2048], src[512], dst[512];
	/* the registered base becomes read-only: register a copy of our own */
	snprintf(src, sizeof(src), "%s/base.qcow2", g);
	snprintf(dst, sizeof(dst), "%s/demo.qcow2", d->dir);
	size_t len = 0;
	char *data = testenv_slurp(src, &len);
	FILE *f = data ? fopen(dst, "wb") : NULL;
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(dst);
		exit(1);
	}
	free(data);
	snprintf(body, sizeof(body),
		 "{\"name\":\"demo\",\"base\":\"%s\",\"kernel\":\"%s/vmlinuz\","
		 "\"initrd\":\"%s/initrd.gz\",\"append\":\"console=ttyS0 quiet panic=-1\","
		 "\"memory_mb\":256,\"ready\":\"serial:NESTOR-READY\"}",
		 dst, g, g);
	int st = api(d, "POST", "/v1/images", body, NULL);
	CHECK_MSG(st == 201 || st == 409, "add image: %d", st);
	snprintf(body, sizeof(body), "{\"alias\":\"%s\",\"image\":\"demo\",\"title\":\"Ledger\"}",
		 alias);
	st = api(d, "POST", "/v1/apps", body, NULL);
	CHECK_MSG(st == 201 || st == 409, "add app: %d", st);
}

/*
 * Register the rdp test guest (nestor-test-rdpsrv inside, standard RDP
 * security, account guestacct/guest-pw) as image NAME, with app ALIAS
 * running COMMAND; REMOTEAPP: the image serves RemoteApp itself. The base
 * copy is shared by every rdp image of D.
 */
void nestord_add_rdp(struct nestord *d, const char *name, const char *alias, const char *title,
		     bool remoteapp, const char *command)
{
	nestord_add_rdp_ex(d, name, alias, title, remoteapp, command, "");
}

void nestord_add_rdp_ex(struct nestord *d, const char *name, const char *alias, const char *title,
			bool remoteapp, const char *command, const char *append)
{
	const char *g = testenv_guest_dir();
	char body[4096], dst[512];
	snprintf(dst, sizeof(dst), "%s/rdp.qcow2", d->dir);
	if (access(dst, F_OK) != 0) {
		char cmd[1200];
		snprintf(cmd, sizeof(cmd), "cp '%s/rdp-base.qcow2' '%s'", g, dst);
		CHECK_MSG(system(cmd) == 0, "copy the rdp guest's disk");
	}
	snprintf(body, sizeof(body),
		 "{\"name\":\"%s\",\"base\":\"%s\",\"kernel\":\"%s/rdp-vmlinuz\","
		 "\"initrd\":\"%s/rdp-initrd.gz\",\"append\":\"console=ttyS0 quiet panic=-1 "
		 "nestor.rdpsec=rdp nestor.rdpuser=guestacct nestor.rdppass=guest-pw%s\","
		 "\"memory_mb\":384,\"backend\":\"rdp\",\"rdp_port\":3389,"
		 "\"rdp_security\":\"rdp\",\"guest_user\":\"guestacct\","
		 "\"guest_password\":\"guest-pw\",\"remoteapp\":%d}",
		 name, dst, g, g, append, remoteapp ? 1 : 0);
	int st = api(d, "POST", "/v1/images", body, NULL);
	CHECK_MSG(st == 201 || st == 409, "add rdp image %s: %d", name, st);
	snprintf(body, sizeof(body),
		 "{\"alias\":\"%s\",\"image\":\"%s\",\"title\":\"%s\",\"command\":\"%s\"}", alias,
		 name, title, command ? command : "");
	st = api(d, "POST", "/v1/apps", body, NULL);
	CHECK_MSG(st == 201 || st == 409, "add app %s: %d", alias, st);
}

const char *jget(json_object *o, const char *key)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return "";
	return json_object_get_string(v);
}

long long jint(json_object *o, const char *key)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return -1;
	return json_object_get_int64(v);
}

bool wait_state(struct nestord *d, const char *id, const char *state, int timeout_ms)
{
	int64_t end = util_now_ms() + timeout_ms;
	char path[128];
	for (;;) {
		json_object *o = NULL;
		snprintf(path, sizeof(path), "/v1/sessions/%s", id);
		api(d, "GET", path, NULL, &o);
		bool ok = strcmp(jget(o, "state"), state) == 0;
		json_object_put(o);
		if (ok)
			return true;
		if (util_now_ms() >= end)
			return false;
		usleep(100000);
	}
}

bool pid_alive(pid_t pid)
{
	if (pid <= 0 || kill(pid, 0) != 0)
		return false;
	/* a zombie waiting for its new parent to reap it is not alive */
	char path[64], *stat = NULL;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (util_read_file(path, 4096, &stat, NULL) < 0)
		return false;
	const char *p = strrchr(stat, ')');
	bool alive = !(p && p[1] == ' ' && p[2] == 'Z');
	free(stat);
	return alive;
}

char *guest_cmd(struct nestord *d, const char *session, const char *line, int timeout_ms)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/run/vm/%s/probe.sock", d->dir, session);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", path);
	char *out = NULL;
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto done;
	char req[256];
	int n = snprintf(req, sizeof(req), "%s\n", line);
	if (write(fd, req, (size_t)n) != n)
		goto done;
	char buf[512];
	size_t len = 0;
	int64_t end = util_now_ms() + timeout_ms;
	while (util_now_ms() < end && len < sizeof(buf) - 1) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		char *nl = strchr(buf, '\n');
		if (nl) {
			*nl = '\0';
			out = strdup(buf);
			break;
		}
	}
done:
	if (fd >= 0)
		close(fd);
	return out;
}

char *file_sha256(const char *path)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "sha256sum '%s'", path);
	FILE *p = popen(cmd, "r");
	char sum[65] = "";
	if (p) {
		if (fscanf(p, "%64s", sum) != 1)
			sum[0] = '\0';
		pclose(p);
	}
	return sum[0] ? strdup(sum) : NULL;
}

static bool port_open(unsigned port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(s);
	return ok;
}

/* The build's program EXE with --config CONF, its output to LOG; its pid once PORT listens, or -1.
 */
static pid_t start_listening(const char *exe, const char *conf, const char *log, unsigned port)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", getenv("NESTOR_BUILD"), exe);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(path, path, "--config", conf, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && !port_open(port); i++)
		usleep(100000);
	return port_open(port) ? pid : -1;
}

pid_t gateway_start(struct nestord *d, unsigned port, const char *extra, char *log, size_t loglen)
{
	char conf[600];
	snprintf(conf, sizeof(conf), "%s/gateway.conf", d->dir);
	snprintf(log, loglen, "%s/gateway.log", d->dir);
	FILE *f = fopen(conf, "w");
	if (!f)
		return -1;
	fprintf(f,
		"[gateway]\nlisten = 127.0.0.1\nport = %u\napi_socket = %s\nstate_dir = %s/gw\n"
		"default_app = ledger\nlog_level = debug\nweb_port = 0\n%s\n",
		port, d->sock, d->dir, extra ? extra : "");
	fclose(f);
	return start_listening("rdp-gateway/nestor-gateway", conf, log, port);
}

pid_t portal_start(struct nestord *d, const char *conf, unsigned port)
{
	char log[400];
	snprintf(log, sizeof(log), "%s/portal.log", d->dir);
	return start_listening("portal/nestor-portal", conf, log, port);
}

int child_stop(pid_t *pid)
{
	if (*pid <= 0)
		return -1;
	int st = -1;
	kill(*pid, SIGTERM);
	for (int i = 0; i < 50; i++) {
		pid_t r = waitpid(*pid, &st, WNOHANG);
		if (r == *pid || r < 0) {
			*pid = 0;
			return st;
		}
		usleep(100000);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, &st, 0);
	*pid = 0;
	return st;
}

unsigned free_tcp_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	unsigned port = 0;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

char *http_get_tcp(unsigned port, const char *path, int *status, int timeout_ms)
{
	*status = -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0)
		return NULL;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char *req = util_strdup_printf("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	ssize_t n = req ? (ssize_t)strlen(req) : -1;
	bool sent = req && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    send(fd, req, (size_t)n, MSG_NOSIGNAL) == n;
	free(req);
	if (!sent) {
		close(fd);
		return NULL;
	}
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap + 1);
	ssize_t r;
	while (buf && (r = read(fd, buf + len, cap - len)) > 0) {
		len += (size_t)r;
		if (len == cap) {
			char *nb = realloc(buf, 2 * cap + 1);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	if (!buf)
		return NULL;
	buf[len] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.%*d %d", status) != 1 || !body) {
		free(buf);
		return NULL;
	}
	memmove(buf, body + 4, len - (size_t)(body + 4 - buf) + 1);
	return buf;
}

char *metrics_get(unsigned port)
{
	int st;
	char *body = http_get_tcp(port, "/metrics", &st, 10000);
	if (body && st == 200)
		return body;
	fprintf(stderr, "GET /metrics on port %u: status %d\n", port, st);
	free(body);
	return NULL;
}

double metrics_sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text ? strstr(text, series) : NULL; p; p = strstr(p + 1, series)) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	return -1;
}

int promtool_check(const char *text)
{
	FILE *p = popen("promtool check metrics >&2", "w");
	if (!p)
		return -1;
	fputs(text, p);
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
