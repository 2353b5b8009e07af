/*
 * nestor-gateway's Prometheus metrics (docs/metrics.md): counters,
 * histograms and a table of what each connection is doing, in one shared
 * anonymous mapping the listener makes before it forks anyone. Workers add
 * to it and write their own slot of the table; the listener counts
 * accepts, refusals and crashes and clears a reaped worker's slot (so a
 * crashed worker never leaves a gauge wrong); the metrics process maps it
 * read-only and renders it at each scrape. Relaxed atomics (prom.h), no
 * locks; nothing here blocks.
 *
 * Every function takes a NULL map (metrics off) and then does nothing.
 * int functions return 0 or a negative errno.
 */
#ifndef NESTOR_GW_METRICS_H
#define NESTOR_GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct gw_metrics;

/* A connection's phase, as worker.c's phase machine has them. */
enum gw_m_phase { GW_M_HANDSHAKE, GW_M_LOGIN, GW_M_WAIT, GW_M_GUEST, GW_M_FAIL, GW_M_PHASES };
/* The guest's backend a connection has shown; none before the guest. */
enum gw_m_backend { GW_M_NONE, GW_M_CONSOLE, GW_M_RDP, GW_M_BACKENDS };
/* Why the listener refused a connection. */
enum gw_m_refusal { GW_M_LIMIT, GW_M_PER_ADDRESS, GW_M_RATE, GW_M_ERROR, GW_M_REFUSALS };
/* What nestord answered a sign-in: a session; wrong credentials; a refusal (throttled,
 * not allowed, unknown app); or no answer, or a failure of its own. */
enum gw_m_signin { GW_M_SIGNED_IN, GW_M_DENIED, GW_M_REFUSED, GW_M_FAILED, GW_M_SIGNINS };

/* The mapping's size for SLOTS connections, in bytes (whole pages). */
size_t gw_metrics_size(unsigned slots);
/* A new shared mapping with SLOTS free slots and every counter 0; NULL with errno set. */
struct gw_metrics *gw_metrics_create(unsigned slots);
void gw_metrics_destroy(struct gw_metrics *m);
/* Read-only in this process from now on (the metrics process). */
int gw_metrics_protect(struct gw_metrics *m);

/* SLOT's connection is in PHASE, having shown BACKEND (its worker; the listener at fork). */
void gw_metrics_slot_set(struct gw_metrics *m, unsigned slot, enum gw_m_phase phase,
			 enum gw_m_backend backend);
/* SLOT's worker is gone (the listener, when it reaps it). */
void gw_metrics_slot_clear(struct gw_metrics *m, unsigned slot);

void gw_metrics_accepted(struct gw_metrics *m);
void gw_metrics_refused(struct gw_metrics *m, enum gw_m_refusal why);
void gw_metrics_crashed(struct gw_metrics *m);
void gw_metrics_signin(struct gw_metrics *m, enum gw_m_signin result);
/* Seconds from the accept to the client's first activation. */
void gw_metrics_handshake(struct gw_metrics *m, double seconds);
/* Seconds to the first frame of BACKEND's guest the client was sent. */
void gw_metrics_first_frame(struct gw_metrics *m, enum gw_m_backend backend, double seconds);

/* A backend by the name nestord gives it; GW_M_NONE for a name it does not know. */
enum gw_m_backend gw_metrics_backend(const char *name);

/* What one connection has added to the byte counters so far (its worker's). */
struct gw_metrics_tcp {
	uint64_t received, acked;
};
/*
 * Add what the TCP connection FD received, and what of what it sent the
 * client acknowledged, since T's last call (one getsockopt TCP_INFO) to
 * BACKEND's byte counters.
 */
void gw_metrics_tcp_account(struct gw_metrics *m, struct gw_metrics_tcp *t, int fd,
			    enum gw_m_backend backend);

/* The exposition of M (a struct gw_metrics *) into OUT: a prom_render_fn. */
void gw_metrics_render(struct evbuffer *out, void *m);

#endif
