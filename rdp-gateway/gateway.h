/*
 * nestor-gateway internals shared by main (listener, limits, watchdog) and
 * peer.c (one thread per connection).
 */
#ifndef NESTOR_GW_GATEWAY_H
#define NESTOR_GW_GATEWAY_H

#include "draw.h"
#include "gwconfig.h"

#include <freerdp/listener.h>
#include <freerdp/peer.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define GW_ADDR_SLOTS 1024

struct gw_addr {
	char addr[80]; /* gw_limit_key of the peer */
	unsigned active;
	int64_t window_start; /* rate window (one minute) */
	unsigned window_count;
};

struct gw {
	struct gw_config cfg;
	struct gw_font font;
	char cert[4096], key[4096];
	pthread_mutex_t lock;
	unsigned active;
	struct gw_addr addrs[GW_ADDR_SLOTS];
	struct gw_peer *peers; /* for the handshake watchdog and the lease */
	char id[33];	       /* this gateway, to nestord (its sessions' lease holder) */
};

/* peer.c: run one connection on its own thread (takes ownership of CLIENT). */
bool gw_peer_start(struct gw *gw, freerdp_peer *client);
/* Give back the slot taken at accept (gateway.c). */
void gw_release_slot(struct gw *gw, const char *addr);
/* The watchdog's view: cut handshakes older than the timeout. */
void gw_watchdog_scan(struct gw *gw, int64_t now_ms);
/* Tell nestord which sessions this gateway still serves (once a second). */
void gw_lease_renew(struct gw *gw);

#endif
