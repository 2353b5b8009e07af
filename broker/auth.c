/*
 * PAM off the loop. Jobs go to worker threads through a mutex-protected
 * list; finished jobs come back as pointers written to a pipe the loop
 * reads. Workers block in PAM (it may sleep on failure delays); the loop
 * never does. The conversation answers each prompt with what the user
 * typed for it: the password, or a one-time code (a second factor such as
 * pam_oath); a code asked for and not given ends the check with
 * AUTH_NEED_CODE and PAM's prompt, so that the user can be asked.
 */
#include "auth.h"
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <security/pam_appl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 8

struct job {
	struct job *next;
	char user[256];
	char password[512];
	char code[128];
	bool password_given; /* a hidden prompt got the password */
	bool need_code;	     /* a prompt asked for a code and there was none */
	char prompt[AUTH_PROMPT_MAX + 1];
	auth_done_fn cb;
	void *arg;
	enum auth_result res;
	const char *reason;
};

struct auth {
	char service[64];
	pthread_t threads[MAX_THREADS];
	unsigned n_threads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, **tail;
	bool stopping;
	int pipe[2];
	struct event *ev;
};

const char *auth_result_name(enum auth_result r)
{
	static const char *const n[] = {"ok", "denied", "account", "error", "need-code"};
	return (unsigned)r < sizeof(n) / sizeof(n[0]) ? n[r] : "?";
}

/* A prompt for a one-time code rather than a password (pam_oath's says "One-time password"). */
static bool code_prompt(const char *m)
{
	static const char *const words[] = {"one-time", "otp", "oath", "verification code",
					    "token"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasestr(m, words[i]))
			return true;
	return false;
}

/* PAM's prompt kept for the user: printable ASCII, bounded. */
static void keep_prompt(struct job *j, const char *m)
{
	size_t n = 0;
	for (; *m && n < sizeof(j->prompt) - 1; m++)
		if (*m >= 0x20 && *m <= 0x7e)
			j->prompt[n++] = *m;
	j->prompt[n] = '\0';
	if (!n) /* a module that asks without saying what */
		snprintf(j->prompt, sizeof(j->prompt), "One-time code: ");
}

/*
 * What to answer a prompt with: the code for a code prompt (or a hidden
 * one after the password), the password for the first other hidden one,
 * the user name for any other visible one. NULL: a code is asked for and
 * the user gave none.
 */
static const char *answer(struct job *j, const struct pam_message *m)
{
	const char *text = m->msg ? m->msg : "";
	bool hidden = m->msg_style == PAM_PROMPT_ECHO_OFF;
	bool code = code_prompt(text) || (hidden && j->password_given);
	if (!code && !hidden)
		return j->user;
	if (!code) {
		j->password_given = true;
		return j->password;
	}
	if (!j->code[0]) {
		j->need_code = true;
		keep_prompt(j, text);
		return NULL;
	}
	return j->code;
}

/*
 * The answers are PAM's (its module's) to free once handed over. pam_oath
 * 2.6 never frees them: tests/lsan.supp names this function for that.
 */
static int auth_conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
	struct job *j = data;
	if (n <= 0 || n > PAM_MAX_NUM_MSG)
		return PAM_CONV_ERR;
	struct pam_response *r = calloc((size_t)n, sizeof(*r));
	if (!r)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++) {
		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
		case PAM_PROMPT_ECHO_ON: {
			const char *a = answer(j, msg[i]);
			if (!a)
				goto fail; /* the user is asked for the code, and tries again */
			r[i].resp = strdup(a);
			if (!r[i].resp)
				goto fail;
			break;
		}
		case PAM_ERROR_MSG:
		case PAM_TEXT_INFO:
			break;
		default:
			goto fail;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
fail:
	for (int i = 0; i < n; i++) {
		if (r[i].resp) {
			explicit_bzero(r[i].resp, strlen(r[i].resp));
			free(r[i].resp);
		}
	}
	free(r);
	return PAM_CONV_ERR;
}

static void run_pam(struct auth *a, struct job *j)
{
	struct pam_conv c = {auth_conv, j};
	pam_handle_t *ph = NULL;
	int r = pam_start(a->service, j->user, &c, &ph);
	if (r != PAM_SUCCESS) {
		j->res = AUTH_ERROR;
		j->reason = "authentication service unavailable";
		return;
	}
	r = pam_authenticate(ph, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	if (r == PAM_SUCCESS)
		r = pam_acct_mgmt(ph, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	if (r != PAM_SUCCESS && j->need_code) {
		/* whatever the stack made of the missing answer: ask the user for it */
		j->res = AUTH_NEED_CODE;
		j->reason = j->prompt;
		pam_end(ph, r);
		return;
	}
	switch (r) {
	case PAM_SUCCESS:
		j->res = AUTH_OK;
		j->reason = "ok";
		break;
	case PAM_AUTH_ERR:
	case PAM_USER_UNKNOWN:
	case PAM_CRED_INSUFFICIENT:
	case PAM_MAXTRIES:
		j->res = AUTH_DENIED;
		j->reason = "wrong user name or password";
		break;
	case PAM_ACCT_EXPIRED:
		j->res = AUTH_ACCOUNT;
		j->reason = "account expired";
		break;
	case PAM_NEW_AUTHTOK_REQD:
		j->res = AUTH_ACCOUNT;
		j->reason = "password expired: change it first";
		break;
	case PAM_PERM_DENIED:
		j->res = AUTH_ACCOUNT;
		j->reason = "account locked or not allowed to use nestor";
		break;
	default:
		j->res = AUTH_ERROR;
		j->reason = "authentication failed (PAM error)";
		log_warn("pam: %s", pam_strerror(ph, r));
	}
	pam_end(ph, r);
}

static void wipe(struct job *j)
{
	explicit_bzero(j->password, sizeof(j->password));
	explicit_bzero(j->code, sizeof(j->code));
}

static void *worker(void *arg)
{
	struct auth *a = arg;
	for (;;) {
		pthread_mutex_lock(&a->lock);
		while (!a->head && !a->stopping)
			pthread_cond_wait(&a->cond, &a->lock);
		if (a->stopping) {
			pthread_mutex_unlock(&a->lock);
			return NULL;
		}
		struct job *j = a->head;
		a->head = j->next;
		if (!a->head)
			a->tail = &a->head;
		pthread_mutex_unlock(&a->lock);

		run_pam(a, j);
		wipe(j);
		ssize_t w;
		do
			w = write(a->pipe[1], &j, sizeof(j));
		while (w < 0 && errno == EINTR);
		if (w != sizeof(j)) {
			log_err("auth: cannot report a result: %s", strerror(errno));
			free(j);
		}
	}
}

static void on_result(evutil_socket_t fd, short what, void *arg)
{
	struct job *j;
	while (read(fd, &j, sizeof(j)) == sizeof(j)) {
		j->cb(j->res, j->reason, j->arg);
		free(j);
	}
}

struct auth *auth_create(struct event_base *base, const char *service, unsigned threads)
{
	struct auth *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	snprintf(a->service, sizeof(a->service), "%s", service);
	a->tail = &a->head;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	/* Pointer-sized writes to a pipe are atomic. */
	if (pipe2(a->pipe, O_CLOEXEC) < 0)
		goto fail;
	fcntl(a->pipe[0], F_SETFL, O_NONBLOCK);
	a->ev = event_new(base, a->pipe[0], EV_READ | EV_PERSIST, on_result, a);
	if (!a->ev || event_add(a->ev, NULL) < 0)
		goto fail;
	if (threads < 1)
		threads = 1;
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&a->threads[i], NULL, worker, a) != 0)
			break;
		a->n_threads++;
	}
	if (!a->n_threads)
		goto fail;
	return a;
fail:
	auth_destroy(a);
	return NULL;
}

int auth_check(struct auth *a, const char *user, const char *password, const char *code,
	       auth_done_fn cb, void *arg)
{
	code = code ? code : "";
	if (strlen(user) >= sizeof(((struct job *)0)->user) ||
	    strlen(password) >= sizeof(((struct job *)0)->password) ||
	    strlen(code) >= sizeof(((struct job *)0)->code))
		return -E2BIG;
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	strcpy(j->user, user);
	strcpy(j->password, password);
	strcpy(j->code, code);
	j->cb = cb;
	j->arg = arg;
	pthread_mutex_lock(&a->lock);
	*a->tail = j;
	a->tail = &j->next;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void auth_destroy(struct auth *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < a->n_threads; i++)
		pthread_join(a->threads[i], NULL);
	while (a->head) {
		struct job *j = a->head;
		a->head = j->next;
		wipe(j);
		free(j);
	}
	if (a->ev)
		event_free(a->ev);
	if (a->pipe[0] > 0) {
		struct job *j;
		fcntl(a->pipe[0], F_SETFL, O_NONBLOCK);
		while (read(a->pipe[0], &j, sizeof(j)) == sizeof(j))
			free(j);
		close(a->pipe[0]);
		close(a->pipe[1]);
	}
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	free(a);
}
