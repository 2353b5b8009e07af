/*
 * The gateway's client of nestord's API: blocking calls over the UNIX
 * socket, made from a peer's own thread (never shared between peers).
 */
#ifndef NESTOR_GW_BAPI_H
#define NESTOR_GW_BAPI_H

#include "httpc.h"

#include <stdbool.h>
#include <stddef.h>

struct gw_session {
	char id[33];
	char state[16];
	char title[129];
	char vnc[108];
	char backend[8];  /* console | rdp */
	char reason[256]; /* queue reason or end reason */
	char notice[256]; /* connect: what became of the user's last session (its host died) */
	unsigned position;
	long long estimate_ms;
	long long elapsed_ms;
	long long pid;
	char grant[65]; /* connect only: the key to this session's endpoints */
};

/* gw_bapi_connect_read: nestord asks for the user's one-time code (PAM's prompt in MSG). */
#define GW_BAPI_NEED_CODE 1

/*
 * POST /v1/sessions, read as it arrives (PAM may take its time: the worker
 * keeps drawing). CODE is the user's one-time code ("" none). start returns
 * 0 or a negative errno (nestord unreachable); read returns -EAGAIN until
 * the answer is complete, then 0 with OUT set (its grant too),
 * GW_BAPI_NEED_CODE with MSG PAM's prompt for the code, or the HTTP status
 * (401, 403, 404, 429, ...) with MSG set, or a negative errno with MSG
 * set; the call is then over.
 */
int gw_bapi_connect_start(struct httpc_call *c, const char *sock, const char *user,
			  const char *password, const char *code, const char *app,
			  const char *client);
int gw_bapi_connect_read(struct httpc_call *c, struct gw_session *out, char *msg, size_t msglen);
/*
 * A session's own endpoints take its id and the grant connect handed out
 * (nestord refuses the gateway without it). detach | activity:
 */
int gw_bapi_post(const char *sock, const char *id, const char *grant, const char *verb);
/* The user is on the session, through gateway GATEWAY (which renews its lease). */
int gw_bapi_attach(const char *sock, const char *id, const char *grant, const char *gateway);
/*
 * The session once it has left STATE, or after TIMEOUT_S (long-poll): 0 and
 * OUT, -EPROTO when nestord refused (the session is gone), or a negative
 * errno when nestord is not answering.
 */
int gw_bapi_wait(const char *sock, const char *id, const char *grant, const char *state,
		 unsigned timeout_s, struct gw_session *out);
/*
 * The same long-poll, read as it arrives (the worker waits on C->fd with
 * everything else): start returns 0 or a negative errno; read returns
 * -EAGAIN until the answer is complete, then as gw_bapi_wait (the call is
 * then over; httpc_call_cancel ends one early).
 */
int gw_bapi_wait_start(struct httpc_call *c, const char *sock, const char *id, const char *grant,
		       const char *state, unsigned timeout_s);
int gw_bapi_wait_read(struct httpc_call *c, struct gw_session *out);
/* GATEWAY still holds the connected sessions IDS (POST /v1/gateways/GW/lease). */
/* Sent without waiting: the answer is read with gw_bapi_lease_read. */
int gw_bapi_lease_start(struct httpc_call *c, const char *sock, const char *gateway,
			const char *const *ids, unsigned n);

/* An end nestord announced for a session (its lease answer's "ending"). */
struct gw_ending {
	bool set;	/* an end is announced */
	long long in_s; /* seconds left, when the answer was read */
	char why[12];	/* idle | lifetime | admin */
	char message[256];
};
/*
 * The lease renewal's answer, as far as it has come: -EAGAIN while it is
 * incomplete (the call goes on), else the call is over: 0 with OUT the
 * announced end of session ID (OUT->set false: none), or a negative errno
 * or the HTTP status when nestord did not answer 200.
 */
int gw_bapi_lease_read(struct httpc_call *c, const char *id, struct gw_ending *out);

/* An rdp session's guest: where and how to connect (GET /v1/sessions/ID/guest). */
struct gw_guest {
	char host[64];
	unsigned port;
	char security[8]; /* rdp | tls | any */
	char login[8];	  /* image | user */
	char user[65], domain[65], password[129];
	bool clipboard, drive, remoteapp;
	bool clipboard_text_only; /* clipboard_formats = text */
	unsigned clipboard_max;	  /* bytes; 0: the gateway's default */
	char program[1024];
	/* the fleet: another host's gateway, whose certificate must be this one */
	bool fleet_host;
	char fingerprint[96];
};
int gw_bapi_guest(const char *sock, const char *id, const char *grant, struct gw_guest *out);

#endif
