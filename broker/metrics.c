/*
 * nestord's exposition: the counters of struct brk_metrics and the gauges
 * of one snapshot (struct brk_metrics_view), written in Prometheus' text
 * format. Pure: the snapshot is taken by broker.c.
 */
#include "metrics.h"
#include "states.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

const char *const brk_path_names[PATH_N] = {"cold", "template", "warm"};

enum brk_path brk_path_of(const char *name)
{
	for (unsigned i = 0; i < PATH_N; i++) {
		if (!strcmp(name, brk_path_names[i]))
			return (enum brk_path)i;
	}
	return PATH_COLD;
}

#define MIB (1024.0 * 1024.0)

void brk_metrics_write(struct evbuffer *out, const struct brk_metrics_view *v)
{
	const struct brk_metrics *m = v->m;

	prom_family(out, "nestor_sessions", "gauge",
		    "Live sessions by state and by how their guest was started (queued ones: "
		    "path=\"none\").");
	for (unsigned st = 0; st < BRK_ENDED; st++) {
		/* queued: not started yet; from starting on: started one way */
		unsigned from = st == BRK_QUEUED ? PATH_N : 0,
			 to = st == BRK_QUEUED ? PATH_N : PATH_N - 1;
		for (unsigned p = from; p <= to; p++) {
			char l[64] = "";
			prom_label(l, sizeof(l), "state", brk_state_name((enum brk_state)st));
			prom_label(l, sizeof(l), "path", p < PATH_N ? brk_path_names[p] : "none");
			prom_sample(out, "nestor_sessions", l, v->sessions[st][p]);
		}
	}
	prom_scalar(out, "nestor_warm_guests", "gauge",
		    "Warm-pool guests, ready or starting (not yet handed out).", v->warm);
	prom_scalar(out, "nestor_queue_length", "gauge",
		    "Session requests waiting in the fair queue.", v->queued);
	prom_family(out, "nestor_queue_wait_seconds", "histogram",
		    "Time from a session's request to its admission (0 when admitted at once).");
	prom_hist_write(out, "nestor_queue_wait_seconds", NULL, &prom_slow, &m->queue_seconds);
	prom_scalar(out, "nestor_queued_total", "counter",
		    "Session requests that had to wait in the queue.", m->queued);
	prom_scalar(out, "nestor_refused_total", "counter", "Session requests refused by the caps.",
		    m->refused);
	prom_scalar(out, "nestor_queue_timeouts_total", "counter",
		    "Session requests refused after waiting longer than queue_wait.",
		    m->queue_timeouts);

	prom_by_label(out, "nestor_starts_total", "counter",
		      "Guests that became ready, by start path (cold boot, template restore, warm "
		      "pool).",
		      "path", brk_path_names, m->starts, PATH_N);
	prom_by_label(out, "nestor_start_failures_total", "counter",
		      "Sessions that ended while their guest was starting (failed, timed out or "
		      "ended), by start path.",
		      "path", brk_path_names, m->start_failures, PATH_N);
	prom_family(out, "nestor_start_duration_seconds", "histogram",
		    "Time from a session's admission to its guest being ready, by start path.");
	for (unsigned p = 0; p < PATH_N; p++) {
		char l[32] = "";
		prom_label(l, sizeof(l), "path", brk_path_names[p]);
		prom_hist_write(out, "nestor_start_duration_seconds", l,
				p == PATH_COLD ? &prom_slow : &prom_fast, &m->start_seconds[p]);
	}
	prom_scalar(out, "nestor_sessions_ended_total", "counter",
		    "Sessions that ended, for any reason.", m->sessions_ended);

	prom_scalar(out, "nestor_guests", "gauge",
		    "Admitted guests on this host (sessions, warm guests, template builds).",
		    v->guests);
	prom_scalar(out, "nestor_guests_starting", "gauge",
		    "Guests starting now (limited by max_starting).", v->starting);
	prom_scalar(out, "nestor_guest_memory_bytes", "gauge",
		    "RAM given to the admitted guests (what max_memory_mb caps).",
		    v->memory_mb * MIB);
	prom_scalar(out, "nestor_guest_resident_bytes", "gauge",
		    "Resident memory of the QEMU processes of sessions and warm guests.",
		    (double)v->resident_bytes);
	prom_family(out, "nestor_cap", "gauge",
		    "The host's caps on guests now (0: unlimited); max_starting as lowered by "
		    "CPU pressure.");
	const struct {
		const char *name;
		double v;
	} caps[] = {
	    {"max_sessions", v->max_sessions},
	    {"max_starting", v->max_starting},
	    {"user_max_sessions", v->user_max_sessions},
	};
	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		char l[48] = "";
		prom_label(l, sizeof(l), "cap", caps[i].name);
		prom_sample(out, "nestor_cap", l, caps[i].v);
	}
	prom_scalar(out, "nestor_cap_memory_bytes", "gauge",
		    "The host's max_memory_mb cap in bytes (0: unlimited).",
		    v->max_memory_mb * MIB);

	static const char *const results[AUTHM_N] = {"ok", "denied", "account", "error", "code"};
	prom_by_label(out, "nestor_auth_total", "counter", "Password checks by result.", "result",
		      results, m->auth, AUTHM_N);
	prom_scalar(out, "nestor_auth_throttled_total", "counter",
		    "Sign-ins refused because the name or address was locked after failures.",
		    m->auth_throttled);

	prom_family(out, "nestor_accelerator", "gauge",
		    "The accelerator guests start under now (1 for the one in use).");
	static const char *const accels[] = {"kvm", "tcg"};
	for (unsigned i = 0; i < 2; i++) {
		char l[32] = "";
		prom_label(l, sizeof(l), "accel", accels[i]);
		prom_sample(out, "nestor_accelerator", l, v->accel && !strcmp(v->accel, accels[i]));
	}
	prom_scalar(out, "nestor_accel_fallbacks_total", "counter",
		    "Runtime fallbacks from KVM to TCG after a guest hung under KVM.",
		    m->accel_fallbacks);

	prom_family(out, "nestor_build_info", "gauge", "nestord's version.");
	char l[64] = "";
	prom_label(l, sizeof(l), "version", v->version);
	prom_sample(out, "nestor_build_info", l, 1);
}
