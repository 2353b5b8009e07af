/*
 * nestor-gateway internals shared by the listener (gateway.c: limits, one
 * worker process per connection) and the worker (worker.c; its own state is
 * in worker.h).
 */
#ifndef NESTOR_GW_GATEWAY_H
#define NESTOR_GW_GATEWAY_H

#include "draw.h"
#include "gwconfig.h"
#include "gwmetrics.h"

#include <freerdp/listener.h>
#include <freerdp/peer.h>
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
	char cert[4096], key[4096]; /* their paths, for the log */
	char *cert_pem, *key_pem;   /* their contents, read before dropping privileges */
	int sigfd;		    /* the listener's signals */
	unsigned active;	    /* workers (the listener's count) */
	struct gw_addr addrs[GW_ADDR_SLOTS];
	char id[33];		    /* this worker, to nestord (its session's lease holder) */
	struct gw_metrics *metrics; /* shared by every process (gwmetrics.h); NULL: off */
	unsigned slot;		    /* this worker's in the listener's table and the metrics' */
	int64_t accepted_ms;	    /* when the listener accepted this worker's connection */
};

/*
 * worker.c: serve one connection in this (worker) process until it ends;
 * takes ownership of CLIENT. Returns the process's exit status.
 */
int gw_peer_run(struct gw *gw, freerdp_peer *client);
/* A client's TCP socket: keepalives, and cut after STALL_S seconds of unacknowledged data. */
void gw_socket_limits(int fd, unsigned stall_s);

#endif
