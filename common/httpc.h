/*
 * A small blocking HTTP/1.0 client over a UNIX socket, for nestorctl and
 * tests (never for the broker's loop). Bodies are JSON.
 *
 * Returns the HTTP status (>= 100) or a negative errno (-ECONNRESET: the
 * server closed before a whole header came; -EPROTO: not HTTP). *BODY (if
 * given) gets a new NUL-terminated buffer with the response body.
 */
#ifndef NESTOR_HTTPC_H
#define NESTOR_HTTPC_H

#include <stddef.h>

int httpc_request(const char *socket_path, const char *method, const char *path, const char *body,
		  int timeout_ms, char **resp_body);

/*
 * The same request for a caller with a wait of its own (the gateway's
 * workers): start connects and sends (a short write on a UNIX socket), then
 * the caller waits for FD to be readable and calls read, which returns 0
 * while the answer is incomplete, else what httpc_request returns; either
 * of those ends the call. cancel ends it early (safe on an ended call).
 * start returns 0 or a negative errno (then nothing is to be cancelled).
 */
struct httpc_call {
	int fd;
	char *buf;
	size_t len, cap;
};
int httpc_call_start(struct httpc_call *c, const char *socket_path, const char *method,
		     const char *path, const char *body);
int httpc_call_read(struct httpc_call *c, char **resp_body);
void httpc_call_cancel(struct httpc_call *c);

#endif
