/*
 * nestor-gateway: the RDP front door. Listens with FreeRDP 2's listener,
 * enforces connection limits, runs each connection on its own thread
 * (peer.c) and cuts stalled handshakes from a watchdog thread. Talks to
 * nestord only through its API socket; never touches PAM, sqlite or QEMU.
 */
#include "nestor-config.h"
#include "boot.h"
#include "gateway.h"
#include "log.h"
#include "util.h"
#include "vnc.h"

#include <errno.h>
#include <fcntl.h>
#include <freerdp/channels/channels.h>
#include <freerdp/channels/wtsvc.h>
#include <freerdp/freerdp.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

void gw_release_slot(struct gw *gw, const char *peer)
{
	char addr[80];
	gw_limit_key(peer, addr, sizeof(addr));
	pthread_mutex_lock(&gw->lock);
	if (gw->active)
		gw->active--;
	for (unsigned i = 0; i < GW_ADDR_SLOTS; i++) {
		if (!strcmp(gw->addrs[i].addr, addr) && gw->addrs[i].active) {
			gw->addrs[i].active--;
			break;
		}
	}
	pthread_mutex_unlock(&gw->lock);
}

/* Caps on concurrent connections and per-address rate; true when admitted. */
static bool take_slot(struct gw *gw, const char *peer, const char **why)
{
	char addr[80];
	gw_limit_key(peer, addr, sizeof(addr));
	int64_t now = util_now_ms();
	bool ok = false;
	pthread_mutex_lock(&gw->lock);
	struct gw_addr *a = NULL, *free_slot = NULL, *oldest = NULL;
	for (unsigned i = 0; i < GW_ADDR_SLOTS; i++) {
		struct gw_addr *x = &gw->addrs[i];
		if (!strcmp(x->addr, addr)) {
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
	if (!a) {
		*why = "too many addresses";
		goto out;
	}
	if (strcmp(a->addr, addr)) {
		memset(a, 0, sizeof(*a));
		snprintf(a->addr, sizeof(a->addr), "%s", addr);
	}
	if (now - a->window_start >= 60000) {
		a->window_start = now;
		a->window_count = 0;
	}
	if (gw->active >= gw->cfg.max_connections) {
		*why = "connection limit reached";
	} else if (gw->cfg.max_per_address && a->active >= gw->cfg.max_per_address) {
		*why = "too many connections from this address";
	} else if (gw->cfg.rate_per_address && a->window_count >= gw->cfg.rate_per_address) {
		*why = "connecting too often";
	} else {
		a->active++;
		a->window_count++;
		gw->active++;
		ok = true;
	}
out:
	pthread_mutex_unlock(&gw->lock);
	return ok;
}

static BOOL on_accept(freerdp_listener *l, freerdp_peer *client)
{
	struct gw *gw = l->info;
	const char *why = NULL;
	if (!take_slot(gw, client->hostname, &why)) {
		log_warn("refusing %s: %s", client->hostname, why);
		return FALSE; /* the listener closes it */
	}
	if (!gw_peer_start(gw, client)) {
		gw_release_slot(gw, client->hostname);
		return FALSE;
	}
	return TRUE;
}

static void *watchdog(void *arg)
{
	struct gw *gw = arg;
	int64_t next_lease = 0;
	while (!stop) {
		usleep(250000);
		int64_t now = util_now_ms();
		gw_watchdog_scan(gw, now);
		if (now >= next_lease) {
			/* nestord turns our sessions disconnected if this stops */
			gw_lease_renew(gw);
			next_lease = now + 1000;
		}
	}
	return NULL;
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
	if (!user[0] || geteuid() != 0)
		return 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "user '%s' does not exist", user);
		return -ENOENT;
	}
	if (initgroups(user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		snprintf(err, errlen, "cannot become %s: %s", user, strerror(errno));
		return -EPERM;
	}
	log_info("running as %s", user);
	return 0;
}

static int load(void *cfg, const char *path, char *err, size_t errlen)
{
	return gw_config_load(cfg, path, err, errlen);
}

static int parse(void *cfg, const char *name, const char *text, char *err, size_t errlen)
{
	return gw_config_parse(cfg, name, text, err, errlen);
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
	int r = boot_config(config, NESTOR_SYSCONFDIR "/nestor/gateway.conf", load, parse, &gw.cfg,
			    err, sizeof(err));
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
	pthread_mutex_init(&gw.lock, NULL);

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
	freerdp_listener *l = freerdp_listener_new();
	if (!l)
		return 1;
	l->info = &gw;
	l->PeerAccepted = on_accept;
	if (!l->Open(l, gw.cfg.listen, (UINT16)gw.cfg.port)) {
		log_err("cannot listen on %s:%u", gw.cfg.listen, gw.cfg.port);
		return 1;
	}
	if (drop_privileges(gw.cfg.user, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return 1;
	}
	char rnd[9];
	util_random_hex(rnd, 4);
	snprintf(gw.id, sizeof(gw.id), "gw-%d-%s", (int)getpid(), rnd);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	pthread_t wd;
	pthread_create(&wd, NULL, watchdog, &gw);
	log_info("nestor-gateway %s (%s) listening on %s:%u (nestord at %s)", NESTOR_VERSION, gw.id,
		 gw.cfg.listen, gw.cfg.port, gw.cfg.api_socket);

	while (!stop) {
		HANDLE h[32];
		DWORD n = l->GetEventHandles(l, h, 32);
		if (!n)
			break;
		if (WaitForMultipleObjects(n, h, FALSE, 500) == WAIT_FAILED)
			break;
		if (!l->CheckFileDescriptor(l))
			break;
	}
	log_info("stopping: sessions stay alive in nestord; users can reconnect");
	l->Close(l);
	freerdp_listener_free(l);
	pthread_join(wd, NULL);
	/* peer threads are detached; exiting ends their connections (sessions keep running) */
	return 0;
}
