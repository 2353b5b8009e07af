/*
 * Integration helpers for running nestord for real: a scratch state dir,
 * a pam_wrapper + pam_matrix PAM stack with a passdb, nestord started as a
 * child with those, and a JSON API client over its socket.
 */
#ifndef NESTOR_DAEMON_H
#define NESTOR_DAEMON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

struct nestord {
	char dir[256]; /* scratch root */
	char conf[320];
	char sock[320];
	char log[320];
	pid_t pid;
	bool no_wait; /* nestord_start returns once the API answers, accelerator known or not */
};

/* Set up DIR with a passdb (USERS: "user:password:service" lines) and a config
 * whose [caps]/[auth]/[sessions] sections are EXTRA_CONF. */
void nestord_setup(struct nestord *d, const char *name, const char *users, const char *extra_conf);
/*
 * A second factor in D's PAM stack: pam_matrix (requisite), then pam_oath
 * with a usersfile of USERS ("HOTP/T30 alice - HEXSECRET" lines) in D's dir
 * (CODE_FIRST: pam_oath first, then pam_matrix). pam_wrapper copies the
 * stack when nestord starts: a running nestord keeps the one it started
 * with (restart it to change). Exits 77 when pam_oath
 * (libpam-oath) or oathtool is not installed.
 */
void nestord_setup_oath(struct nestord *d, const char *users, bool code_first);
/* The TOTP code of HEXSECRET OFFSET_S seconds from now (oathtool) into OUT; false on failure. */
bool oath_totp(const char *hexsecret, int offset_s, char *out, size_t len);
/* Write D's config again with EXTRA (its dir known: paths under it). */
void nestord_setup_conf(struct nestord *d, const char *extra);
/* Start nestord and wait until its API answers. Returns false on failure. */
bool nestord_start(struct nestord *d);
/* Send SIG and wait for the exit; returns the wait status. */
int nestord_stop(struct nestord *d, int sig, int timeout_ms);
/* Call the API: returns the HTTP status, *OUT (if given) the parsed body. */
int api(struct nestord *d, const char *method, const char *path, const char *body,
	json_object **out);
/* POST /v1/sessions as USER:PASS for APP (client "x"): the HTTP status; ID (if given) its id. */
int nestord_connect(struct nestord *d, const char *user, const char *pass, const char *app,
		    char *id, size_t idlen);
/* Register the test guest as image "demo" and app ALIAS on it. */
void nestord_add_demo(struct nestord *d, const char *alias);
/* Register the rdp variant of the test guest as image NAME (backend rdp) and app ALIAS. */
void nestord_add_rdp(struct nestord *d, const char *name, const char *alias, const char *title,
		     bool remoteapp, const char *command);
/* ... with APPEND added to the guest's kernel command line (" nestor.rdphostile"). */
void nestord_add_rdp_ex(struct nestord *d, const char *name, const char *alias, const char *title,
			bool remoteapp, const char *command, const char *append);
const char *jget(json_object *o, const char *key);
long long jint(json_object *o, const char *key);
/* Poll GET /v1/sessions/ID until its state is STATE or TIMEOUT_MS passes. */
bool wait_state(struct nestord *d, const char *id, const char *state, int timeout_ms);
bool pid_alive(pid_t pid);
/* One line to the test guest's probe port of SESSION; returns its answer (new string) or NULL. */
char *guest_cmd(struct nestord *d, const char *session, const char *line, int timeout_ms);
/* Start nestor-gateway for D on 127.0.0.1:PORT (EXTRA: more config lines); LOG gets
 * its log path. Returns its pid once it listens, or -1. */
pid_t gateway_start(struct nestord *d, unsigned port, const char *extra, char *log, size_t loglen);
/* Start nestor-portal with the gateway's file CONF (its log in D's dir); its pid once PORT listens.
 */
pid_t portal_start(struct nestord *d, const char *conf, unsigned port);
/* SIGTERM, then SIGKILL after 5 s; reaps. Returns the wait status. */
int child_stop(pid_t *pid);
/* sha256 of a file as hex (new string) or NULL. */
char *file_sha256(const char *path);
/* A TCP port on 127.0.0.1 that was free a moment ago (0 on error). */
unsigned free_tcp_port(void);
/* GET PATH from 127.0.0.1:PORT over HTTP/1.0: the body (malloc'd) and *STATUS, or NULL. */
char *http_get_tcp(unsigned port, const char *path, int *status, int timeout_ms);
/* GET /metrics from 127.0.0.1:PORT: the body (malloc'd), or NULL (the status logged). */
char *metrics_get(unsigned port);
/* The value of the sample SERIES (name and labels as written) in TEXT, or -1. */
double metrics_sample(const char *text, const char *series);
/* promtool check metrics over TEXT: its exit status, -1 if it could not run. */
int promtool_check(const char *text);

#endif
