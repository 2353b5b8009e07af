/*
 * A small blocking HTTP/1.0 client over a UNIX socket, for nestorctl and
 * tests (never for the broker's loop). Bodies are JSON.
 *
 * Returns the HTTP status (>= 100) or a negative errno. *BODY (if given)
 * gets a new NUL-terminated buffer with the response body.
 */
#ifndef NESTOR_HTTPC_H
#define NESTOR_HTTPC_H

int httpc_request(const char *socket_path, const char *method, const char *path, const char *body,
		  int timeout_ms, char **resp_body);

#endif
