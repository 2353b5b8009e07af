/*
 * What the broker's modules share, owned by broker.c: the loop, the
 * configuration, the store, the launcher and its settings (the current
 * accelerator in lcfg.accel), admission, and the one deferred kick through
 * which a module asks the broker to act again. A module never re-enters
 * the broker: it changes its own state and kicks.
 */
#ifndef NESTOR_BRK_HOST_H
#define NESTOR_BRK_HOST_H

#include "broker.h"
#include "launch.h"
#include "metrics.h"

#include <event2/event.h>
#include <sys/types.h>

#define POOL_USER "@warm"	  /* ledger owner of warm guests */
#define TEMPLATE_USER "@template" /* ledger owner of template builds */

struct admit;
struct hostaccel;

struct host {
	struct event_base *base;
	struct brk_config cfg;
	struct store *store;
	const struct brk_launcher *lnch;
	struct lnch_config lcfg; /* .accel follows the decision */
	struct admit *adm;
	struct hostaccel *acc;
	char vm_dir[BRK_PATH_MAX];
	char tpl_root[BRK_PATH_MAX];
	gid_t api_gid; /* 0: no api_group */
	bool stopping;
	bool drained;	    /* fleet: an admin drained this host (no new placements) */
	struct event *kick; /* the broker's deferred pump */
	/* the fleet hears of every session state change (broker.c: fleet_sync) */
	void (*session_changed)(void *arg, const struct db_session *rec);
	void *session_changed_arg;
	struct brk_metrics met;
};

/* Let the broker act again from the loop (start what may start, finish a shutdown). */
static inline void host_kick(struct host *h)
{
	if (h->kick && !event_pending(h->kick, EV_TIMEOUT, NULL))
		event_active(h->kick, EV_TIMEOUT, 0);
}

/* A start deadline in ms: the image's own, else the configured one. */
static inline int host_start_timeout_ms(const struct host *h, unsigned per_image)
{
	return (int)(per_image ? per_image : h->cfg.timeouts.start) * 1000;
}

#endif
