/*
 * Broker internals shared by broker.c (sessions), pool.c (image
 * registration, templates, warm pools) and hostaccel.c (the accelerator
 * decision). Not a public interface.
 */
#ifndef NESTOR_BRK_PRIVATE_H
#define NESTOR_BRK_PRIVATE_H

#include "accel.h"
#include "auth.h"
#include "broker.h"
#include "launcher.h"
#include "quota.h"
#include "throttle.h"

#define POOL_USER "@warm"	  /* ledger owner of warm guests */
#define TEMPLATE_USER "@template" /* ledger owner of template builds */

struct brk_watch {
	struct brk_watch *next, **prevp;
	struct brk_session *s;
	brk_watch_fn cb;
	void *arg;
};

/* A paused template clone waiting to be handed out. */
struct warm {
	struct warm *next;
	struct brk *b;
	char id[17];
	char image[65];
	char template_dir[BRK_PATH_MAX];
	unsigned memory_mb;
	enum lnch_accel accel;
	struct lnch_guest *guest;
	bool ready;
	bool stopping;
	bool released; /* already out of the ledger */
	int64_t start_ms;
};

/* A template build, queued or running, and who waits for it. */
struct tjob_waiter {
	struct tjob_waiter *next;
	brk_done_fn cb;
	void *arg;
};

struct tjob {
	struct tjob *next;
	struct brk *b;
	char image[65];
	char dir[BRK_PATH_MAX];
	unsigned memory_mb;
	bool running;
	bool requeue;	 /* cancelled to run again (the accelerator changed) */
	char sha256[65]; /* of the base it was started from */
	enum lnch_accel accel;
	struct img_tbuild *build;
	struct tjob_waiter *waiters;
};

struct brk_session {
	struct brk_session *next;
	struct brk *b;
	struct db_session rec;
	enum brk_state state;
	uint64_t qid;
	struct lnch_guest *guest;
	struct db_image img;
	char title[129];
	int64_t since_ms;    /* entered the current state */
	int64_t activity_ms; /* last input or attach */
	int64_t created_ms;
	int64_t start_ms;      /* admitted */
	bool admitted;	       /* counted in the ledger */
	bool counted_starting; /* counted as starting in the ledger */
	char reason[256];      /* why queued / why ended */
	enum lnch_accel accel; /* what the guest was started under */
	bool retry;	       /* stopped to start again under another accelerator */
	bool dirty;	       /* the row could not be written yet */
	char lease_gw[33];     /* the gateway holding the connection ("" none) */
	int64_t lease_until;   /* CONNECTED: disconnected when this passes (0: no lease) */
	bool lease_lapsed;     /* disconnected by a lapsed lease: its gateway may take it back */
	struct warm *handout;  /* warm guest reserved for this session */
	struct brk_watch *watchers;
};

struct brk {
	struct event_base *base;
	struct brk_config cfg;
	struct brk_options opts;
	struct store *store;
	struct auth *auth;
	struct throttle thr;
	struct quota_ledger quota;
	struct quota_caps caps; /* as configured; backpressure may lower max_starting */
	struct lnch_config lcfg;
	char vm_dir[BRK_PATH_MAX];
	gid_t api_gid;	  /* 0: no api_group */
	bool accel_ready; /* starts may run (a decision is known) */
	struct brk_accel {
		enum lnch_accel accel;
		char reason[256];
		char evidence[2048]; /* what it rests on (lnch_accel_evidence) */
		char source[16];     /* probe | saved | fallback | config */
		int64_t decided;     /* wall clock */
		bool proven;	     /* a guest got ready under it */
		bool probed;	     /* rests on a probe (not: no kernel was known) */
	} acc;
	bool accel_probing;
	struct lnch_accel_probe *probe; /* while probing */
	struct accel_waiter *accel_waiters;
	unsigned tcg_failures; /* start timeouts under TCG: the host, not KVM, is slow */
	bool kvm_strike;       /* a start timed out under a proven KVM: the next one drops it */
	unsigned accel_gen;    /* decisions adopted so far */
	unsigned probe_gen;    /* accel_gen when the running probe started */
	struct event *kick;    /* deferred pump */
	struct event *stop_timer;
	struct brk_authreq *authreqs;
	struct brk_session *sessions;
	uint64_t next_qid;
	struct event *tick;
	bool stopping;
	void (*stop_done)(void *arg);
	void *stop_arg;
	char qemu_version[96]; /* "" until known: templates wait for it */
	bool version_asked;    /* the version probe ended (known or not): starts may run */
	char tpl_root[BRK_PATH_MAX];
	char image_dir[BRK_PATH_MAX];
	struct warm *warm;
	struct tjob *tjobs;
};

/* broker.c */
void brk_check_stopped(struct brk *b);
void brk_pump(struct brk *b);
/* Pump from the loop, not from inside the caller. */
void brk_kick(struct brk *b);
/* Caps from the configuration and the database (the automatic max_starting follows the
 * accelerator). */
void brk_caps_reload(struct brk *b);
/* The decision fell back (hostaccel.c): guests starting under the old one start again. */
void brk_accel_changed(struct brk *b, enum lnch_accel old);
void brk_profile_of(const struct db_image *img, struct lnch_profile *p);
const struct lnch_config *brk_lcfg(const struct brk *b);

/* pool.c */
void pool_refill(struct brk *b);
bool pool_evict(struct brk *b);
/* A ready warm guest of IMAGE, removed from the pool and from the ledger. */
struct warm *pool_take(struct brk *b, const char *image);
/* Put an unused warm guest back (the ledger counts it again). */
void pool_put_back(struct brk *b, struct warm *w);
/* Free the pool entry after its guest was handed to a session. */
void pool_release(struct warm *w);
/* A taken warm guest that will not be used after all: stopped, then freed. Accepts NULL. */
void pool_discard(struct brk *b, struct warm *w);
void pool_stop_all(struct brk *b, bool detach);
/* Kill every warm guest now (a shutdown that ran out of time). */
void pool_kill_all(struct brk *b);
bool pool_busy(const struct brk *b);
/* Usable template dir for IMG ("" none); starts a build if auto-templates are on. */
bool pool_template_for(struct brk *b, const struct db_image *img, char *dir, size_t len);
void pool_run_tjobs(struct brk *b);
void pool_start_version_probe(struct brk *b);
void pool_sweep_templates(struct brk *b);
/* Restarted template builds of a crashed broker; warm guests it left running. */
void pool_restore(struct brk *b);
bool pool_owns(const struct brk *b, const char *id);
void pool_accel_changed(struct brk *b, enum lnch_accel old);
/* Template dir of IMAGE for the current accelerator into DIR ("" none). */
void pool_template_dir(struct brk *b, const char *image, char *dir, size_t len);
/* A template build's guest timed out or stopped: the pool's view. */
void pool_cancel_builds(struct brk *b);

/* hostaccel.c */
const char *accel_name(enum lnch_accel a);
/* At start: a saved decision that still holds, else a probe. */
void accel_init(struct brk *b);
/* A guest got ready under A. */
void accel_guest_ready(struct brk *b, enum lnch_accel a);
/* A start under A missed its deadline (WHO: for the log). True: start it again now (under TCG). */
bool accel_start_timed_out(struct brk *b, enum lnch_accel a, const char *who);
/* The start deadline under the current decision (shorter while KVM is unproven). */
int accel_start_timeout_ms(const struct brk *b, int dflt_ms);
/* An image was registered: a kernel to probe with may now be known. */
void accel_image_added(struct brk *b, const struct db_image *img);
void accel_finish(struct brk *b);

#endif
