/*
 * nestord: the nestor broker. Parses options and configuration, opens the
 * state, serves the API and runs the loop until SIGTERM/SIGINT.
 */
#include "nestor-config.h"
#include "agent.h"
#include "api.h"
#include "boot.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "prom.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

static const char usage[] =
    "usage: nestord [--config FILE] [--keep-guests] [--log-level LEVEL]\n"
    "\n"
    "The nestor session broker: authenticates users with PAM, admits them\n"
    "under the host's caps, starts and watches their throwaway QEMU guests,\n"
    "and serves the HTTP/JSON API used by nestor-gateway and nestorctl.\n"
    "\n"
    "  -c, --config FILE     configuration file (default " NESTOR_SYSCONFDIR
    "/nestor/nestor.conf;\n"
    "                        a missing default file means built-in defaults)\n"
    "  -k, --keep-guests     on SIGTERM leave guests running; the next nestord\n"
    "                        reattaches them (default: end every session)\n"
    "  -l, --log-level LVL   err, warn, info or debug (overrides the file)\n"
    "  -t, --check-config    parse the configuration, print it, and exit\n"
    "  -V, --version         print the version and exit\n"
    "  -h, --help            this text\n"
    "\n"
    "\n"
    "SIGTERM or SIGINT: end every session, stop every guest, exit (at most\n"
    "stop_grace + 5 s; repeating the signal changes nothing). SIGQUIT: exit at\n"
    "once and leave the guests running; the next nestord reattaches them.\n"
    "\n"
    "See docs/configuration.md and docs/operations.md.\n";

struct app {
	struct event_base *base;
	struct brk *brk;
	struct api *api;
	struct prom_server *metrics;
	struct agent *agent;
	struct event *sig_term, *sig_int, *sig_quit;
	bool stopping;
};

static void on_stopped(void *arg)
{
	struct app *a = arg;
	log_info("all sessions handled, exiting");
	event_base_loopexit(a->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct app *a = arg;
	if (sig == SIGQUIT) {
		log_warn("SIGQUIT: exiting now; guests keep running and the next nestord "
			 "reattaches them");
		sd_notify(0, "STOPPING=1\nSTATUS=exiting, guests keep running");
		event_base_loopexit(a->base, NULL);
		return;
	}
	if (a->stopping) {
		/* a terminal's Ctrl-C and a script's SIGTERM often both arrive: finish the job */
		log_info("signal %d: already shutting down (SIGQUIT exits at once, leaving "
			 "guests running)",
			 (int)sig);
		return;
	}
	a->stopping = true;
	log_info("signal %d: shutting down", (int)sig);
	sd_notify(0, "STOPPING=1\nSTATUS=ending every session");
	api_stop(a->api); /* no new requests; waiting ones get their answer */
	brk_shutdown(a->brk, on_stopped, a);
}

static void agent_answer(char *buf, size_t len, void *arg)
{
	brk_agent_line(arg, buf, len);
}

static int load(void *cfg, const char *path, char *err, size_t errlen)
{
	return brk_config_load(cfg, path, err, errlen);
}

static int parse(void *cfg, const char *name, const char *text, char *err, size_t errlen)
{
	return brk_config_parse(cfg, name, text, err, errlen);
}

int main(int argc, char **argv)
{
	const char *config = NULL, *level = NULL;
	struct brk_options bo = {0};
	bool check = false;
	const struct boot_opt opts[] = {{"config", 'c', true, .str = &config},
					{"keep-guests", 'k', false, .flag = &bo.keep_guests},
					{"log-level", 'l', true, .str = &level},
					{"check-config", 't', false, .flag = &check},
					{0}};
	const struct boot_prog prog = {.name = "nestord",
				       .usage = usage,
				       .version = NESTOR_VERSION,
				       .opts = opts,
				       .max_args = 0};
	int nargs, st = boot_parse(&prog, argc, argv, &nargs);
	if (st != BOOT_RUN)
		return st;

	struct brk_config cfg;
	char err[1024];
	brk_config_defaults(&cfg);
	int r = boot_config(config, NESTOR_SYSCONFDIR "/nestor/nestor.conf", load, parse, &cfg, err,
			    sizeof(err));
	if (r < 0) {
		fprintf(stderr, "nestord: %s\n", err);
		return 1;
	}
	if (level)
		snprintf(cfg.log_level, sizeof(cfg.log_level), "%s", level);
	enum log_level lvl;
	if (log_level_parse(cfg.log_level, &lvl) < 0) {
		fprintf(stderr, "nestord: bad log level '%s'\n", cfg.log_level);
		return 2;
	}
	if (check) {
		printf("state_dir=%s\nrun_dir=%s\noverlay_dir=%s\napi_socket=%s\npam_service=%s\n"
		       "qemu=%s\naccel=%s\nsandbox=%s\n",
		       cfg.state_dir, cfg.run_dir, cfg.overlay_dir, cfg.api_socket, cfg.pam_service,
		       cfg.qemu, cfg.accel, cfg.sandbox ? "true" : "false");
		return 0;
	}
	log_init("nestord", lvl);
	log_hook_libevent();
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();

	struct app a = {0};
	a.base = event_base_new();
	if (!a.base) {
		log_err("cannot create the event loop");
		return 1;
	}
	a.brk = brk_create(a.base, &cfg, &bo, err, sizeof(err));
	if (!a.brk) {
		log_err("%s", err);
		event_base_free(a.base);
		return 1;
	}
	a.api = api_create(a.base, a.brk, cfg.api_socket, cfg.api_group, err, sizeof(err));
	if (!a.api) {
		log_err("%s", err);
		brk_destroy(a.brk);
		event_base_free(a.base);
		return 1;
	}
	if (cfg.metrics_listen[0]) {
		a.metrics = prom_serve(a.base, cfg.metrics_listen, brk_metrics_render, a.brk, err,
				       sizeof(err));
		if (!a.metrics) {
			log_err("%s", err);
			api_destroy(a.api);
			brk_destroy(a.brk);
			event_base_free(a.base);
			return 1;
		}
	}
	if (cfg.agent_listen[0]) {
		a.agent =
		    agent_create(a.base, cfg.agent_listen, agent_answer, a.brk, err, sizeof(err));
		if (!a.agent) {
			log_err("%s", err);
			prom_server_free(a.metrics);
			api_destroy(a.api);
			brk_destroy(a.brk);
			event_base_free(a.base);
			return 1;
		}
	}
	a.sig_term = evsignal_new(a.base, SIGTERM, on_signal, &a);
	a.sig_int = evsignal_new(a.base, SIGINT, on_signal, &a);
	a.sig_quit = evsignal_new(a.base, SIGQUIT, on_signal, &a);
	evsignal_add(a.sig_term, NULL);
	evsignal_add(a.sig_int, NULL);
	evsignal_add(a.sig_quit, NULL);
	log_info("nestord %s started (state %s)", NESTOR_VERSION, cfg.state_dir);
	sd_notifyf(0, "READY=1\nSTATUS=serving the API on %s", cfg.api_socket);

	event_base_dispatch(a.base);

	agent_destroy(a.agent);
	prom_server_free(a.metrics);
	api_destroy(a.api);
	brk_destroy(a.brk);
	event_free(a.sig_term);
	event_free(a.sig_int);
	event_free(a.sig_quit);
	event_base_free(a.base);
	log_info("nestord stopped");
	return 0;
}
