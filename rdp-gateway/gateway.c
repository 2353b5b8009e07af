/*
 * nestor-gateway's listener: the RDP front door. Accepts with FreeRDP 2's
 * listener, enforces connection limits, and forks one worker process per
 * connection (worker.c), as sshd and xrdp do: a crash in FreeRDP's parsing
 * ends one user's connection, not everyone's. The listener parses nothing
 * a client sends; it waits on its sockets and a signalfd, never polls.
 * Workers talk to nestord only through its API socket; nothing here
 * touches PAM, sqlite or QEMU. With metrics_listen set, one more child
 * serves /metrics from the counters all of them share (gwmetrics.h); the
 * listener restarts it if it dies, after a growing delay (its only timeout).
 */
#include "nestor-config.h"
#include "boot.h"
#include "gateway.h"
#include "log.h"
#include "prom.h"
#include "util.h"
#include "vnc.h"
#include "web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <freerdp/channels/channels.h>
#include <freerdp/channels/wtsvc.h>
#include <freerdp/freerdp.h>
#include <grp.h>
#include <malloc.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <winpr/ssl.h>
#include <winpr/synch.h>
#include <winpr/wtsapi.h>
#include <winpr/wlog.h>

static const char usage[] =
    "usage: nestor-gateway [--config FILE] [--log-level LEVEL]\n"
    "\n"
    "The nestor RDP gateway: authenticates users through nestord, shows a\n"
    "login and a wait screen, then the user's guest as a desktop or a\n"
    "RemoteApp window (xfreerdp /app:\"||ALIAS\").\n"
    "\n"
    "  -c, --config FILE    configuration (default " NESTOR_SYSCONFDIR "/nestor/gateway.conf;\n"
    "                       a missing default file means built-in defaults)\n"
    "  -l, --log-level LVL  err, warn, info or debug\n"
    "  -V, --version        print the version and exit\n"
    "  -h, --help           this text\n"
    "\n"
    "See docs/gateway.md.\n";

/* One worker per connection; the listener only counts them. */
struct child {
	pid_t pid;
	char addr[80]; /* gw_limit_key of its client */
};

static struct child *children; /* cfg.max_connections slots; pid 0 = free */

/* The metrics process (metrics_listen set), restarted after a growing delay if it dies. */
#define METRICS_BACKOFF_MIN_MS 1000
#define METRICS_BACKOFF_MAX_MS 60000
static struct {
	pid_t pid;		    /* 0: not running */
	int64_t started_ms, due_ms; /* when it was started; when to start it again */
	int64_t backoff_ms;	    /* the next delay */
} metrics;

static void release_slot(struct gw *gw, const char *key)
{
	if (gw->active)
		gw->active--;
	for (unsigned i = 0; i < GW_ADDR_SLOTS; i++) {
		if (!strcmp(gw->addrs[i].addr, key) && gw->addrs[i].active) {
			gw->addrs[i].active--;
			break;
		}
	}
}

/* Caps on concurrent connections and per-address rate; true when admitted, else WHY. */
static bool take_slot(struct gw *gw, const char *key, const char **why, enum gw_m_refusal *reason)
{
	int64_t now = util_now_ms();
	struct gw_addr *a = NULL, *free_slot = NULL, *oldest = NULL;
	for (unsigned i = 0; i < GW_ADDR_SLOTS; i++) {
		struct gw_addr *x = &gw->addrs[i];
		if (!strcmp(x->addr, key)) {
			a = x;
			break;
		}
		if (!x->addr[0] && !free_slot)
			free_slot = x;
		if (!x->active && (!oldest || x->window_start < oldest->window_start))
			oldest = x;
	}
	if (!a)
		a = free_slot ? free_slot : oldest;
	*reason = GW_M_LIMIT;
	if (!a) {
		*why = "too many addresses";
		return false;
	}
	if (strcmp(a->addr, key)) {
		memset(a, 0, sizeof(*a));
		snprintf(a->addr, sizeof(a->addr), "%s", key);
	}
	if (now - a->window_start >= 60000) {
		a->window_start = now;
		a->window_count = 0;
	}
	if (gw->active >= gw->cfg.max_connections) {
		*why = "connection limit reached";
		return false;
	}
	if (gw->cfg.max_per_address && a->active >= gw->cfg.max_per_address) {
		*why = "too many connections from this address";
		*reason = GW_M_PER_ADDRESS;
		return false;
	}
	if (gw->cfg.rate_per_address && a->window_count >= gw->cfg.rate_per_address) {
		*why = "connecting too often";
		*reason = GW_M_RATE;
		return false;
	}
	a->active++;
	a->window_count++;
	gw->active++;
	return true;
}

/*
 * A child's start (a worker, the metrics process): it forgets the listener
 * (sockets, signals, the other clients' addresses), dies with the
 * listener, cannot be traced or core-dumped by its siblings (all run as
 * one user), and cannot gain privileges.
 */
static int web_fd = -1; /* the browser door's listening socket (web_port), or -1 */

static void child_start(struct gw *gw, freerdp_listener *l, pid_t listener)
{
	l->Close(l);
	close(gw->sigfd);
	if (web_fd >= 0)
		close(web_fd);
	sigset_t all;
	sigfillset(&all);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != listener)
		_exit(0);
	prctl(PR_SET_DUMPABLE, 0);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	memset(gw->addrs, 0, sizeof(gw->addrs));
	memset(children, 0, sizeof(*children) * gw->cfg.max_connections);
}

/* A worker: serves its one connection, then exits. */
static void worker(struct gw *gw, freerdp_listener *l, freerdp_peer *client, pid_t listener)
{
	child_start(gw, l, listener);
	/* a worker serves one user: a per-thread malloc arena for each of FreeRDP's threads
	 * would only keep freed memory out of reach */
	mallopt(M_ARENA_MAX, 2);
	char rnd[9];
	util_random_hex(rnd, 4);
	snprintf(gw->id, sizeof(gw->id), "gw-%d-%s", (int)getpid(), rnd);
	int st = gw_peer_run(gw, client);
	fflush(NULL);
	_exit(st);
}

/*
 * A browser (web.c): this process serves the connection as any RDP worker,
 * over a socketpair whose other end its child, the browser door, drives
 * with the browser's WebSocket on the far side.
 */
static void web_worker(struct gw *gw, freerdp_listener *l, int fd, const char *addr, pid_t listener)
{
	child_start(gw, l, listener);
	mallopt(M_ARENA_MAX, 2);
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		log_err("web %s: no socketpair: %s", addr, strerror(errno));
		_exit(1);
	}
	pid_t door = fork();
	if (door < 0) {
		log_err("web %s: cannot fork: %s", addr, strerror(errno));
		_exit(1);
	}
	if (door == 0) {
		close(sp[1]);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		prctl(PR_SET_NAME, "gw-web");
		int st = gw_web_run(gw, fd, addr, sp[0]);
		fflush(NULL);
		_exit(st);
	}
	close(fd);
	close(sp[0]);
	freerdp_peer *client = freerdp_peer_new(sp[1]);
	if (!client)
		_exit(1);
	snprintf(client->hostname, sizeof(client->hostname), "%s", addr);
	char rnd[9];
	util_random_hex(rnd, 4);
	snprintf(gw->id, sizeof(gw->id), "gw-%d-%s", (int)getpid(), rnd);
	int st = gw_peer_run(gw, client), dst = 0;
	kill(door, SIGTERM);
	if (waitpid(door, &dst, 0) == door && WIFSIGNALED(dst) && WTERMSIG(dst) != SIGTERM) {
		log_err("web %s: the browser door was killed by signal %d", addr, WTERMSIG(dst));
		gw_metrics_crashed(gw->metrics);
	}
	fflush(NULL);
	_exit(st);
}

/* Take a slot for a connection from the limit key KEY (ADDR for the log); false if refused. */
static struct child *admit(struct gw *gw, const char *key, const char *addr)
{
	const char *why = NULL;
	enum gw_m_refusal reason = GW_M_LIMIT;
	struct child *c = NULL;
	for (unsigned i = 0; i < gw->cfg.max_connections && !c; i++)
		if (!children[i].pid)
			c = &children[i];
	if (!c || !take_slot(gw, key, &why, &reason)) {
		log_warn("refusing %s: %s", addr, why ? why : "connection limit reached");
		gw_metrics_refused(gw->metrics, reason);
		return NULL;
	}
	/* the worker's slot counts in the handshake phase from now: it writes the rest */
	gw->slot = (unsigned)(c - children);
	gw->accepted_ms = util_now_ms();
	gw_metrics_slot_set(gw->metrics, gw->slot, GW_M_HANDSHAKE, GW_M_NONE);
	return c;
}

/* The browser door's connections: each under the same limits as an RDP one. */
static void web_accept(struct gw *gw, freerdp_listener *l)
{
	for (;;) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int fd = accept4(web_fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
		if (fd < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED))
			return; /* all taken */
		if (fd < 0) {
			/* out of fds or memory: the connected stay; a pause, not a spin */
			log_err("accepting a browser failed: %s; retrying in 100 ms",
				strerror(errno));
			usleep(100000);
			return;
		}
		char addr[64] = "?", key[80];
		if (sa.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, addr,
				  sizeof(addr));
		else if (sa.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, addr,
				  sizeof(addr));
		gw_limit_key(addr, key, sizeof(key));
		struct child *c = admit(gw, key, addr);
		if (!c) {
			close(fd);
			continue;
		}
		pid_t listener = getpid();
		pid_t pid = fork();
		if (pid == 0)
			web_worker(gw, l, fd, addr, listener); /* does not return */
		close(fd);
		if (pid < 0) {
			log_err("cannot start a worker for %s: %s", addr, strerror(errno));
			gw_metrics_slot_clear(gw->metrics, gw->slot);
			gw_metrics_refused(gw->metrics, GW_M_ERROR);
			release_slot(gw, key);
			continue;
		}
		gw_metrics_accepted(gw->metrics);
		c->pid = pid;
		snprintf(c->addr, sizeof(c->addr), "%s", key);
		log_debug("web %s: worker %d", addr, (int)pid);
	}
}

static int web_listen(const char *host, unsigned port, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	memset(&sa, 0, sizeof(sa));
	socklen_t len;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		len = sizeof(*v6);
	} else {
		snprintf(err, errlen, "listen = %s: not an address for web_port", host);
		return -EINVAL;
	}
	int one = 1, fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 128) < 0) {
		snprintf(err, errlen, "cannot listen on %s:%u (web_port): %s", host, port,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	return fd;
}

static BOOL on_accept(freerdp_listener *l, freerdp_peer *client)
{
	struct gw *gw = l->info;
	char key[80];
	gw_limit_key(client->hostname, key, sizeof(key));
	struct child *c = admit(gw, key, client->hostname);
	if (!c)
		return FALSE; /* the listener closes it */
	pid_t listener = getpid();
	pid_t pid = fork();
	if (pid == 0)
		worker(gw, l, client, listener); /* does not return */
	if (pid < 0) {
		log_err("cannot start a worker for %s: %s", client->hostname, strerror(errno));
		gw_metrics_slot_clear(gw->metrics, gw->slot);
		gw_metrics_refused(gw->metrics, GW_M_ERROR);
		release_slot(gw, key);
		return FALSE;
	}
	gw_metrics_accepted(gw->metrics);
	c->pid = pid;
	snprintf(c->addr, sizeof(c->addr), "%s", key);
	log_debug("peer %s: worker %d", client->hostname, (int)pid);
	close(client->sockfd); /* the worker's now */
	client->sockfd = -1;
	freerdp_peer_free(client);
	return TRUE;
}

/*
 * The metrics process: the shared counters read-only, /metrics on
 * metrics_listen, nothing else. It binds after the privilege drop (so, for
 * a gateway started as root with user set, on a port above 1023) and
 * holds no secret of the listener's: an HTTP bug there reaches neither the
 * TLS key nor a password. READY (>= 0) gets one byte once it listens; it
 * closes without one when it cannot.
 */
static void metrics_main(struct gw *gw, freerdp_listener *l, pid_t listener, int ready)
{
	child_start(gw, l, listener);
	prctl(PR_SET_NAME, "gw-metrics");
	explicit_bzero(gw->key_pem, strlen(gw->key_pem));
	free(gw->key_pem);
	free(gw->cert_pem);
	gw->key_pem = gw->cert_pem = NULL;
	char err[512];
	struct event_base *base = NULL;
	struct prom_server *ps = NULL;
	if (gw_metrics_protect(gw->metrics) < 0) {
		log_err("metrics: cannot map the counters read-only: %s", strerror(errno));
		_exit(1);
	}
	log_hook_libevent();
	if (!(base = event_base_new())) {
		log_err("metrics: cannot make an event loop");
		_exit(1);
	}
	ps = prom_serve(base, gw->cfg.metrics_listen, gw_metrics_render, gw->metrics, err,
			sizeof(err));
	if (!ps) {
		log_err("%s", err);
		_exit(1);
	}
	if (ready >= 0 && write(ready, "", 1) != 1)
		_exit(1); /* nobody to tell: the listener stopped waiting */
	if (ready >= 0)
		close(ready);
	event_base_dispatch(base);
	prom_server_free(ps);
	event_base_free(base);
	_exit(0);
}

/* Start the metrics process; READY as for metrics_main (-1: nobody waits). */
static pid_t metrics_spawn(struct gw *gw, freerdp_listener *l, int ready)
{
	pid_t listener = getpid();
	pid_t pid = fork();
	if (pid == 0)
		metrics_main(gw, l, listener, ready); /* does not return */
	if (pid < 0) {
		log_err("cannot start the metrics process: %s", strerror(errno));
		return -1;
	}
	metrics.pid = pid;
	metrics.started_ms = util_now_ms();
	return pid;
}

/* The first metrics process, at startup: -1 unless it listens (it logged why). */
static int metrics_first(struct gw *gw, freerdp_listener *l)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = metrics_spawn(gw, l, fds[1]);
	close(fds[1]);
	struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
	char c;
	/* starting up: a bounded wait is fine (it only binds a socket) */
	bool ok = pid > 0 && poll(&pfd, 1, 10000) == 1 && read(fds[0], &c, 1) == 1;
	close(fds[0]);
	metrics.backoff_ms = METRICS_BACKOFF_MIN_MS;
	return ok ? 0 : -1;
}

/* It ended or could not start: start it again later; sooner if it had been running a while. */
static void metrics_later(void)
{
	int64_t now = util_now_ms();
	if (metrics.pid && now - metrics.started_ms > METRICS_BACKOFF_MAX_MS)
		metrics.backoff_ms = METRICS_BACKOFF_MIN_MS;
	log_warn("starting the metrics process again in %lld s",
		 (long long)(metrics.backoff_ms / 1000));
	metrics.pid = 0;
	metrics.due_ms = now + metrics.backoff_ms;
	metrics.backoff_ms *= 2;
	if (metrics.backoff_ms > METRICS_BACKOFF_MAX_MS)
		metrics.backoff_ms = METRICS_BACKOFF_MAX_MS;
}

/*
 * Children that ended: a worker gives back its slots (a crash is logged and
 * counted, nobody else notices); the metrics process is started again later.
 */
static void reap(struct gw *gw, bool stopping)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid == metrics.pid) {
			if (stopping) {
				metrics.pid = 0;
				continue;
			}
			if (WIFSIGNALED(st))
				log_err("the metrics process %d was killed by signal %d", (int)pid,
					WTERMSIG(st));
			else
				log_warn("the metrics process %d exited with status %d", (int)pid,
					 WEXITSTATUS(st));
			metrics_later();
			continue;
		}
		for (unsigned i = 0; i < gw->cfg.max_connections; i++) {
			struct child *c = &children[i];
			if (c->pid != pid)
				continue;
			if (WIFSIGNALED(st) && WTERMSIG(st) != SIGTERM) {
				log_err(
				    "worker %d (%s) killed by signal %d; other connections go on",
				    (int)pid, c->addr, WTERMSIG(st));
				gw_metrics_crashed(gw->metrics);
			} else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
				log_warn("worker %d (%s) exited with status %d", (int)pid, c->addr,
					 WEXITSTATUS(st));
			}
			gw_metrics_slot_clear(gw->metrics, i);
			release_slot(gw, c->addr);
			c->pid = 0;
			break;
		}
	}
}

static void stop_children(struct gw *gw)
{
	for (unsigned i = 0; i < gw->cfg.max_connections; i++)
		if (children[i].pid)
			kill(children[i].pid, SIGTERM);
	if (metrics.pid)
		kill(metrics.pid, SIGTERM);
	int64_t until = util_now_ms() + 5000;
	while ((gw->active || metrics.pid) && util_now_ms() < until) {
		reap(gw, true);
		if (gw->active || metrics.pid)
			usleep(20000); /* shutting down: a bounded wait is fine */
	}
}

static int run(const char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		dup2(devnull, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Use the configured certificate, or make (once) and reuse a self-signed one. */
static int certificate(struct gw *gw, char *err, size_t errlen)
{
	if (gw->cfg.certificate[0]) {
		snprintf(gw->cert, sizeof(gw->cert), "%s", gw->cfg.certificate);
		snprintf(gw->key, sizeof(gw->key), "%s", gw->cfg.private_key);
	} else {
		snprintf(gw->cert, sizeof(gw->cert), "%.4000s/tls.crt", gw->cfg.state_dir);
		snprintf(gw->key, sizeof(gw->key), "%.4000s/tls.key", gw->cfg.state_dir);
		if (access(gw->cert, R_OK) != 0 || access(gw->key, R_OK) != 0) {
			if (util_mkdir_p(gw->cfg.state_dir, 0700) < 0) {
				snprintf(err, errlen, "cannot create %.900s", gw->cfg.state_dir);
				return -EIO;
			}
			char host[256] = "nestor-gateway", subj[300];
			gethostname(host, sizeof(host) - 1);
			snprintf(subj, sizeof(subj), "/CN=%s", host);
			const char *argv[] = {
			    "/usr/bin/openssl", "req",	 "-x509", "-newkey", "rsa:2048",
			    "-nodes",		"-days", "3650",  "-subj",   subj,
			    "-keyout",		gw->key, "-out",  gw->cert,  NULL};
			mode_t old = umask(077);
			int r = run(argv);
			umask(old);
			if (r != 0) {
				snprintf(err, errlen, "cannot generate a certificate with openssl");
				return -EIO;
			}
			log_info("generated a self-signed certificate: %s", gw->cert);
		}
	}
	if (access(gw->cert, R_OK) != 0 || access(gw->key, R_OK) != 0) {
		snprintf(err, errlen, "cannot read certificate %.400s or key %.400s", gw->cert,
			 gw->key);
		return -EACCES;
	}
	/* read now, while we may: workers get the contents, never the files */
	size_t len;
	if (util_read_file(gw->cert, 1 << 20, &gw->cert_pem, &len) < 0 ||
	    util_read_file(gw->key, 1 << 20, &gw->key_pem, &len) < 0) {
		snprintf(err, errlen, "cannot read certificate %.400s or key %.400s", gw->cert,
			 gw->key);
		return -EACCES;
	}
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "openssl x509 -noout -fingerprint -sha256 -in '%s'", gw->cert);
	FILE *f = popen(cmd, "r");
	char line[256] = "";
	if (f) {
		if (!fgets(line, sizeof(line), f))
			line[0] = '\0';
		pclose(f);
	}
	line[strcspn(line, "\n")] = '\0';
	log_info("TLS certificate %s, %s", gw->cert, line[0] ? line : "fingerprint unknown");
	return 0;
}

static int drop_privileges(const char *user, char *err, size_t errlen)
{
	if (!user[0] && geteuid() == 0)
		log_warn("running as root (no user = in [gateway]): nestord treats this gateway as "
			 "an administrator, not as the gateway (docs/api.md)");
	return util_become(user, err, errlen);
}

int main(int argc, char **argv)
{
	const char *config = NULL, *level = NULL;
	const struct boot_opt opts[] = {
	    {"config", 'c', true, .str = &config}, {"log-level", 'l', true, .str = &level}, {0}};
	const struct boot_prog prog = {.name = "nestor-gateway",
				       .usage = usage,
				       .version = NESTOR_VERSION,
				       .opts = opts,
				       .max_args = 0};
	int nargs, st = boot_parse(&prog, argc, argv, &nargs);
	if (st != BOOT_RUN)
		return st;
	static struct gw gw; /* large: static */
	char err[1024];
	gw_config_defaults(&gw.cfg);
	int r = boot_config(config, NESTOR_SYSCONFDIR "/nestor/gateway.conf", gw_config_boot_load,
			    gw_config_boot_parse, &gw.cfg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "nestor-gateway: %s\n", err);
		return 1;
	}
	enum log_level lvl;
	if (log_level_parse(level ? level : gw.cfg.log_level, &lvl) < 0) {
		fprintf(stderr, "nestor-gateway: bad log level\n");
		return 2;
	}
	log_init("nestor-gateway", lvl);
	gw_vnc_init_logging();
	/* FreeRDP's own log: warnings and worse only */
	WLog_SetLogLevel(WLog_GetRoot(), lvl >= LOG_LVL_DEBUG ? WLOG_INFO : WLOG_ERROR);
	signal(SIGPIPE, SIG_IGN);

	if (gw_font_load(&gw.font, gw.cfg.font, err, sizeof(err)) < 0) {
		log_warn("%s: screens will show boxes instead of letters", err);
		gw_font_boxes(&gw.font);
	}
	if (certificate(&gw, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return 1;
	}

	winpr_InitializeSSL(WINPR_SSL_INIT_DEFAULT);
	WTSRegisterWtsApiFunctionTable(FreeRDP_InitWtsApi());
	children = calloc(gw.cfg.max_connections, sizeof(*children));
	if (!children)
		return 1;
	/* before any fork: every child shares it */
	if (gw.cfg.metrics_listen[0] && !(gw.metrics = gw_metrics_create(gw.cfg.max_connections))) {
		log_err("cannot map the metrics' counters: %s", strerror(errno));
		return 1;
	}
	/* signals arrive through the listener's wait, never in the middle of an accept */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGCHLD);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	gw.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	HANDLE sig_event =
	    gw.sigfd < 0 ? NULL
			 : CreateFileDescriptorEventA(NULL, FALSE, FALSE, gw.sigfd, WINPR_FD_READ);
	if (!sig_event) {
		log_err("cannot watch signals: %s", strerror(errno));
		return 1;
	}
	freerdp_listener *l = freerdp_listener_new();
	if (!l)
		return 1;
	l->info = &gw;
	l->PeerAccepted = on_accept;
	if (!l->Open(l, gw.cfg.listen, (UINT16)gw.cfg.port)) {
		log_err("cannot listen on %s:%u", gw.cfg.listen, gw.cfg.port);
		return 1;
	}
	if (gw.cfg.web_port &&
	    (web_fd = web_listen(gw.cfg.listen, gw.cfg.web_port, err, sizeof(err))) < 0) {
		log_err("%s", err);
		return 1;
	}
	HANDLE web_event =
	    web_fd < 0 ? NULL
		       : CreateFileDescriptorEventA(NULL, FALSE, FALSE, web_fd, WINPR_FD_READ);
	if (web_fd >= 0 && !web_event)
		return 1;
	if (drop_privileges(gw.cfg.user, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return 1;
	}
	if (gw.metrics && metrics_first(&gw, l) < 0) {
		log_err("metrics_listen = %s: cannot serve metrics there (the error is above)",
			gw.cfg.metrics_listen);
		stop_children(&gw);
		return 1;
	}
	log_info("nestor-gateway %s listening on %s:%u (nestord at %s), a worker per connection",
		 NESTOR_VERSION, gw.cfg.listen, gw.cfg.port, gw.cfg.api_socket);
	if (web_fd >= 0)
		log_info("browsers (noVNC over a secure WebSocket) on %s:%u", gw.cfg.listen,
			 gw.cfg.web_port);
	/* to systemd (Type=notify), from this process only (NotifyAccess=main) */
	bool v6 = strchr(gw.cfg.listen, ':') != NULL;
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s%s%s:%u", v6 ? "[" : "", gw.cfg.listen,
		   v6 ? "]" : "", gw.cfg.port);

	bool stop = false;
	while (!stop) {
		HANDLE h[34];
		DWORD n = l->GetEventHandles(l, h, 32);
		if (!n)
			break;
		h[n++] = sig_event;
		if (web_event)
			h[n++] = web_event;
		/* the one deadline: starting the metrics process again */
		DWORD timeout = INFINITE;
		if (gw.metrics && !metrics.pid) {
			int64_t left = metrics.due_ms - util_now_ms();
			timeout = left > 0 ? (DWORD)left : 0;
		}
		if (WaitForMultipleObjects(n, h, FALSE, timeout) == WAIT_FAILED)
			break;
		struct signalfd_siginfo si;
		while (read(gw.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
				stop = true;
		reap(&gw, false);
		if (!stop && gw.metrics && !metrics.pid && util_now_ms() >= metrics.due_ms &&
		    metrics_spawn(&gw, l, -1) < 0)
			metrics_later();
		if (!stop && web_fd >= 0)
			web_accept(&gw, l);
		if (!stop && !l->CheckFileDescriptor(l)) {
			/* accept failed (out of fds or memory?): the connected stay connected;
			 * wait a little (signals still count) before accepting again */
			log_err("accepting failed: %s; retrying in 100 ms", strerror(errno));
			WaitForSingleObject(sig_event, 100);
		}
	}
	sd_notify(0, "STOPPING=1");
	log_info("stopping: sessions stay alive in nestord; users can reconnect");
	l->Close(l);
	freerdp_listener_free(l);
	if (web_event)
		CloseHandle(web_event);
	if (web_fd >= 0)
		close(web_fd);
	stop_children(&gw);
	CloseHandle(sig_event);
	close(gw.sigfd);
	free(children);
	gw_metrics_destroy(gw.metrics);
	free(gw.cert_pem);
	free(gw.key_pem);
	return 0;
}
