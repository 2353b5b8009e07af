/*
 * nestord's Prometheus metrics (docs/metrics.md). The modules count events
 * into one struct brk_metrics owned by the host; gauges (sessions by state,
 * caps, usage, the accelerator) are read from the modules at each scrape.
 * Everything runs on the loop: plain counters.
 */
#ifndef NESTOR_BRK_METRICS_H
#define NESTOR_BRK_METRICS_H

#include "prom.h"
#include "states.h"

#include <stdint.h>

enum brk_path { PATH_COLD, PATH_TEMPLATE, PATH_WARM, PATH_N };
enum brk_auth_result { AUTHM_OK, AUTHM_DENIED, AUTHM_ACCOUNT, AUTHM_ERROR, AUTHM_CODE, AUTHM_N };

struct brk_metrics {
	uint64_t starts[PATH_N];	 /* guests that became ready */
	uint64_t start_failures[PATH_N]; /* sessions that ended while starting */
	struct prom_hist start_seconds[PATH_N];
	struct prom_hist queue_seconds; /* request to admission, every admitted session */
	uint64_t queued;		/* requests that had to wait in line */
	uint64_t refused;		/* requests refused by the caps */
	uint64_t queue_timeouts;	/* requests that waited longer than queue_wait */
	uint64_t auth[AUTHM_N];
	uint64_t auth_throttled; /* attempts refused while a name or address was locked */
	uint64_t accel_fallbacks;
	uint64_t sessions_ended;
};

/* "cold" | "template" | "warm" -> the path; anything else is cold. */
enum brk_path brk_path_of(const char *name);
extern const char *const brk_path_names[PATH_N];

/* The gauges at one scrape, next to the counters. */
struct brk_metrics_view {
	const struct brk_metrics *m;
	unsigned sessions[BRK_ENDED][PATH_N + 1]; /* [state][path]; PATH_N: not started yet */
	unsigned warm;
	unsigned queued;
	unsigned guests, starting, memory_mb;
	uint64_t resident_bytes;
	unsigned max_sessions, max_starting, max_memory_mb, user_max_sessions;
	const char *accel; /* "kvm" | "tcg" | NULL while undecided */
	const char *version;
};

struct evbuffer;
void brk_metrics_write(struct evbuffer *out, const struct brk_metrics_view *v);
/* The whole exposition, for prom_serve; ARG is the struct brk. */
void brk_metrics_render(struct evbuffer *out, void *arg);

#endif
