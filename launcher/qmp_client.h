/*
 * Asynchronous QMP client on a libevent bufferevent (the protocol logic of
 * QEMU's Python client): greeting, then qmp_capabilities; an id per command
 * and a pending table with a callback and timeout each; events delivered in
 * arrival order; every pending call failed on disconnect.
 *
 * Callbacks may call qmp_client_destroy(); the client is then freed once
 * the callback returns.
 */
#ifndef NESTOR_QMP_CLIENT_H
#define NESTOR_QMP_CLIENT_H

#include <json-c/json.h>

struct event_base;
struct qmp_client;

struct qmp_client_cbs {
	/* Capabilities negotiated: commands may be sent. */
	void (*ready)(struct qmp_client *c, void *arg);
	/* An event; DATA may be NULL; borrowed. */
	void (*event)(struct qmp_client *c, const char *name, json_object *data, void *arg);
	/* The connection is gone (or never came); REASON is human text. */
	void (*closed)(struct qmp_client *c, const char *reason, void *arg);
};

/*
 * ERR is 0 with RESULT the "return" value, -EREMOTEIO with DESC set for a QMP
 * error reply (RESULT is the error object), -ETIMEDOUT, -ECONNRESET when the
 * connection went away, -ECANCELED when the client was destroyed.
 * RESULT is borrowed.
 */
typedef void (*qmp_reply_fn)(struct qmp_client *c, int err, json_object *result, const char *desc,
			     void *arg);

/*
 * Connect to the QMP UNIX socket PATH, retrying until it exists for at most
 * CONNECT_TIMEOUT_MS. Returns a new client or NULL.
 */
struct qmp_client *qmp_client_create(struct event_base *base, const char *path,
				     int connect_timeout_ms, const struct qmp_client_cbs *cbs,
				     void *arg);
/*
 * Send a command. ARGS may be NULL; takes ownership of ARGS. FD, if >= 0, is
 * sent with the command (SCM_RIGHTS, for getfd) and stays the caller's.
 * Returns 0 or a negative errno (-ENOTCONN before ready).
 */
int qmp_client_call(struct qmp_client *c, const char *execute, json_object *args, int fd,
		    int timeout_ms, qmp_reply_fn cb, void *arg);
/* Fail every pending call with -ECANCELED (callbacks run) and free. Accepts NULL. */
void qmp_client_destroy(struct qmp_client *c);

#endif
