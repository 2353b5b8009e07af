/*
 * The session and warm-pool state machine without QEMU: the broker runs on
 * a real loop with a real sqlite store, and a fake launcher (passed in
 * brk_options) that starts nothing and reports guest events only when a
 * case's step says so. Each case is a table of steps: broker calls, guest
 * events, and what must be true after them.
 */
#include "check.h"
#include "broker.h"
#include "launch.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- the fake launcher --- */

struct fake_guest {
	char id[33];
	pid_t pid;
	const struct lnch_guest_cbs *cbs;
	void *arg;
	bool paused;	/* started keep_paused (a warm guest) */
	bool attached;	/* reattached after a restart */
	int stop_grace; /* -1: no stop asked */
	lnch_done_fn resume_cb;
	void *resume_arg;
	bool gone; /* destroyed or detached: the broker let go of it */
};

struct fake_build {
	img_template_fn cb;
	void *arg;
	char dir[256];
	bool cancelled, gone;
};

#define MAXG 32
static struct fake_guest guests[MAXG];
static unsigned n_guests;
static struct fake_build builds[8];
static unsigned n_builds;
static pid_t alive[8]; /* pids an attach finds */
static bool templates_usable;

static struct lnch_guest *as_guest(struct fake_guest *g)
{
	return (struct lnch_guest *)(void *)g;
}

static struct fake_guest *fg(const struct lnch_guest *g)
{
	return (struct fake_guest *)(void *)g;
}

static struct fake_guest *new_guest(const char *id, const struct lnch_guest_cbs *cbs, void *arg)
{
	if (n_guests == MAXG)
		return NULL;
	struct fake_guest *g = &guests[n_guests++];
	memset(g, 0, sizeof(*g));
	snprintf(g->id, sizeof(g->id), "%s", id);
	g->cbs = cbs;
	g->arg = arg;
	g->stop_grace = -1;
	return g;
}

static struct lnch_guest *f_start(struct event_base *base, const struct lnch_config *cfg,
				  const char *id, const struct lnch_profile *profile,
				  const struct lnch_start_opts *opts,
				  const struct lnch_guest_cbs *cbs, void *arg, char *err,
				  size_t errlen)
{
	struct fake_guest *g = new_guest(id, cbs, arg);
	if (!g) {
		snprintf(err, errlen, "fake: too many guests");
		return NULL;
	}
	g->paused = opts && opts->keep_paused;
	return as_guest(g);
}

static struct lnch_guest *f_attach(struct event_base *base, const struct lnch_config *cfg,
				   const char *id, pid_t pid, const struct lnch_profile *probe,
				   const struct lnch_guest_cbs *cbs, void *arg, char *err,
				   size_t errlen)
{
	for (unsigned i = 0; i < ARRAY_LEN(alive); i++) {
		if (alive[i] && alive[i] == pid) {
			struct fake_guest *g = new_guest(id, cbs, arg);
			if (g) {
				g->pid = pid;
				g->attached = true;
			}
			return g ? as_guest(g) : NULL;
		}
	}
	snprintf(err, errlen, "pid %d is not that guest's QEMU", (int)pid);
	return NULL;
}

static void f_stop(struct lnch_guest *g, int grace_ms)
{
	if (fg(g)->stop_grace < 0)
		fg(g)->stop_grace = grace_ms;
}

static int f_resume(struct lnch_guest *g, lnch_done_fn cb, void *arg)
{
	fg(g)->resume_cb = cb;
	fg(g)->resume_arg = arg;
	return 0;
}

static void f_set_cbs(struct lnch_guest *g, const struct lnch_guest_cbs *cbs, void *arg)
{
	fg(g)->cbs = cbs;
	fg(g)->arg = arg;
}

static void f_let_go(struct lnch_guest *g)
{
	if (g)
		fg(g)->gone = true;
}

static pid_t f_pid(const struct lnch_guest *g)
{
	return fg(g)->pid;
}

static const char *f_path(const struct lnch_guest *g)
{
	return "/nonexistent/fake";
}

static unsigned f_port(const struct lnch_guest *g)
{
	return 0;
}

static struct qmp_client *f_qmp(struct lnch_guest *g)
{
	return NULL;
}

static struct img_tbuild *f_tpl_build(struct event_base *base, const struct lnch_config *cfg,
				      const char *id, const struct lnch_profile *profile,
				      const char *dir, const char *qemu_version, img_template_fn cb,
				      void *arg, char *err, size_t errlen)
{
	if (n_builds == ARRAY_LEN(builds)) {
		snprintf(err, errlen, "fake: too many builds");
		return NULL;
	}
	struct fake_build *b = &builds[n_builds++];
	memset(b, 0, sizeof(*b));
	b->cb = cb;
	b->arg = arg;
	snprintf(b->dir, sizeof(b->dir), "%s", dir);
	return (struct img_tbuild *)(void *)b;
}

static void f_tpl_cancel(struct img_tbuild *b)
{
	((struct fake_build *)(void *)b)->cancelled = true;
}

static void f_tpl_destroy(struct img_tbuild *b)
{
	if (b)
		((struct fake_build *)(void *)b)->gone = true;
}

static bool f_tpl_usable(const char *dir, const struct lnch_config *cfg,
			 const struct lnch_profile *profile, const char *qemu_version, char *why,
			 size_t whylen)
{
	snprintf(why, whylen, "fake: templates are off in this case");
	return templates_usable;
}

static void f_tpl_clone_opts(const char *dir, struct lnch_start_opts *opts, char buf[3][4200])
{
	opts->backing = dir;
}

struct version_call {
	void (*cb)(const char *version, void *arg);
	void *arg;
};

static void on_version_timer(evutil_socket_t fd, short what, void *arg)
{
	struct version_call *v = arg;
	v->cb("8.2.0-fake", v->arg);
	free(v);
}

static int f_version(struct event_base *base, const char *qemu,
		     void (*cb)(const char *version, void *arg), void *arg)
{
	struct version_call *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->cb = cb;
	v->arg = arg;
	struct timeval tv = {0, 0};
	return event_base_once(base, -1, EV_TIMEOUT, on_version_timer, v, &tv);
}

static const struct brk_launcher fake = {
    .start = f_start,
    .attach = f_attach,
    .stop = f_stop,
    .resume = f_resume,
    .set_cbs = f_set_cbs,
    .detach = f_let_go,
    .destroy = f_let_go,
    .pid = f_pid,
    .qmp_path = f_path,
    .vnc_path = f_path,
    .overlay_path = f_path,
    .host_port = f_port,
    .qmp = f_qmp,
    .tpl_build = f_tpl_build,
    .tpl_cancel = f_tpl_cancel,
    .tpl_destroy = f_tpl_destroy,
    .tpl_usable = f_tpl_usable,
    .tpl_clone_opts = f_tpl_clone_opts,
    .version = f_version,
};

/* The live (not let go) fake guest of ID, or NULL. */
static struct fake_guest *guest_of(const char *id)
{
	for (unsigned i = n_guests; i-- > 0;)
		if (!guests[i].gone && !strcmp(guests[i].id, id))
			return &guests[i];
	return NULL;
}

/* The newest warm guest (started paused) still held. */
static struct fake_guest *warm_guest(void)
{
	for (unsigned i = n_guests; i-- > 0;)
		if (!guests[i].gone && guests[i].paused)
			return &guests[i];
	return NULL;
}

/* --- cases --- */

enum op {
	END_OF_STEPS,
	CONNECT,	 /* user U connects to app "ledger": session K */
	SPAWN,		 /* K's guest spawned */
	READY,		 /* K's guest ready */
	STOPPED,	 /* K's guest stopped, WHY */
	ATTACH,		 /* a gateway attaches K */
	DETACH,		 /* ... and detaches */
	END,		 /* an admin ends K */
	CAPS,		 /* max_sessions = N */
	WARM_READY,	 /* the newest warm guest got ready (paused) */
	RESUMED,	 /* K's warm guest was resumed (ERR N) */
	BUILD,		 /* ask for the image's template */
	BUILD_DONE,	 /* the newest build ended with ERR N */
	EXPECT_STATE,	 /* K is in state ST */
	EXPECT_PATH,	 /* K started via TEXT (cold | template | warm) */
	EXPECT_WHY,	 /* K's end reason contains TEXT */
	EXPECT_STOP,	 /* a stop was asked of K's guest, with grace (N 1) or without (N 0) */
	EXPECT_USAGE,	 /* ledger: N sessions, M starting, Q queued */
	EXPECT_GUESTS,	 /* N fake guests were started or attached in all */
	EXPECT_BUILD_CB, /* the build's waiter got ERR N */
	REFUSED,	 /* user U's connect is refused (caps) */
	CAP,		 /* cap TEXT = N */
	SHUTDOWN,	 /* the broker is asked to shut down */
	EXPECT_DONE,	 /* the shutdown finished (N 1) or not yet (N 0) */
	EXPECT_GONE,	 /* K's guest was let go without a stop (kept for the next nestord) */
};

struct step {
	enum op op;
	int k;
	const char *text;
	int n, m, q;
	enum brk_state st;
	enum lnch_end why;
};

/* A session row of an earlier nestord, written before the broker starts. */
struct row {
	const char *id, *state, *start_path;
	pid_t pid;
};

struct tcase {
	const char *name;
	bool keep_guests;
	unsigned warm_pool;
	bool templates;
	pid_t alive[4];
	struct row rows[4];
	struct step steps[28];
};

#define S(...)                                                                                     \
	{                                                                                          \
		__VA_ARGS__                                                                        \
	}

static const struct tcase cases[] = {
    {"a whole session: queued, starting, ready, connected, disconnected, ending, ended",
     .steps = {S(CONNECT, 0, "alice"), S(EXPECT_STATE, 0, .st = BRK_STARTING),
	       S(EXPECT_PATH, 0, "cold"), S(EXPECT_USAGE, .n = 1, .m = 1, .q = 0), S(SPAWN, 0),
	       S(READY, 0), S(EXPECT_STATE, 0, .st = BRK_READY),
	       S(EXPECT_USAGE, .n = 1, .m = 0, .q = 0), S(ATTACH, 0),
	       S(EXPECT_STATE, 0, .st = BRK_CONNECTED), S(DETACH, 0),
	       S(EXPECT_STATE, 0, .st = BRK_DISCONNECTED), S(END, 0),
	       S(EXPECT_STATE, 0, .st = BRK_ENDING), S(EXPECT_STOP, 0, .n = 1),
	       S(STOPPED, 0, .why = LNCH_END_STOPPED), S(EXPECT_STATE, 0, .st = BRK_ENDED),
	       S(EXPECT_WHY, 0, "ended by the test"), S(EXPECT_USAGE, .n = 0, .m = 0, .q = 0)}},
    {"a guest that dies while connected: lost",
     .steps = {S(CONNECT, 0, "alice"), S(SPAWN, 0), S(READY, 0), S(ATTACH, 0),
	       S(STOPPED, 0, .why = LNCH_END_CRASHED), S(EXPECT_STATE, 0, .st = BRK_ENDED),
	       S(EXPECT_WHY, 0, "lost: the guest stopped unexpectedly"),
	       S(EXPECT_USAGE, .n = 0, .m = 0, .q = 0)}},
    {"a start that times out under TCG ends the session and frees its slot",
     .steps = {S(CONNECT, 0, "alice"), S(SPAWN, 0), S(STOPPED, 0, .why = LNCH_END_START_TIMEOUT),
	       S(EXPECT_STATE, 0, .st = BRK_ENDED), S(EXPECT_WHY, 0, "timeout"),
	       S(EXPECT_USAGE, .n = 0, .m = 0, .q = 0), S(EXPECT_GUESTS, .n = 1)}},
    {"cancel while queued: out of line, nothing started",
     .steps = {S(CAPS, .n = 1), S(CONNECT, 0, "alice"), S(CONNECT, 1, "bob"),
	       S(EXPECT_STATE, 1, .st = BRK_QUEUED), S(EXPECT_USAGE, .n = 1, .m = 1, .q = 1),
	       S(END, 1), S(EXPECT_STATE, 1, .st = BRK_ENDED),
	       S(EXPECT_USAGE, .n = 1, .m = 1, .q = 0), S(EXPECT_GUESTS, .n = 1)}},
    {"cancel while starting: stopped at once, the start slot freed before it is gone",
     .steps = {S(CONNECT, 0, "alice"), S(SPAWN, 0), S(END, 0), S(EXPECT_STATE, 0, .st = BRK_ENDING),
	       S(EXPECT_STOP, 0, .n = 0), S(EXPECT_USAGE, .n = 1, .m = 0, .q = 0),
	       S(STOPPED, 0, .why = LNCH_END_STOPPED), S(EXPECT_STATE, 0, .st = BRK_ENDED),
	       S(EXPECT_USAGE, .n = 0, .m = 0, .q = 0)}},
    {"the queue moves when a session ends",
     .steps = {S(CAPS, .n = 1), S(CONNECT, 0, "alice"), S(CONNECT, 1, "bob"), S(SPAWN, 0),
	       S(READY, 0), S(EXPECT_STATE, 1, .st = BRK_QUEUED), S(END, 0),
	       S(STOPPED, 0, .why = LNCH_END_STOPPED), S(EXPECT_STATE, 1, .st = BRK_STARTING),
	       S(EXPECT_USAGE, .n = 1, .m = 1, .q = 0), S(EXPECT_GUESTS, .n = 2)}},
    {"a reconnect finds the live session",
     .steps = {S(CONNECT, 0, "alice"), S(SPAWN, 0), S(READY, 0), S(CONNECT, 1, "alice"),
	       S(EXPECT_STATE, 1, .st = BRK_READY), S(EXPECT_GUESTS, .n = 1),
	       S(EXPECT_USAGE, .n = 1, .m = 0, .q = 0)}},
    {"restart: a live guest is reattached, a dead one is lost, a half-started one starts again",
     .alive = {4242},
     .rows = {{"live0000000000aa", "ready", "template", 4242},
	      {"dead0000000000bb", "connected", "cold", 4343},
	      {"half0000000000cc", "starting", "template", 4444}},
     .steps = {S(EXPECT_STATE, 0, .st = BRK_READY), S(EXPECT_STATE, 1, .st = BRK_ENDED),
	       S(EXPECT_WHY, 1, "lost: its guest stopped while nestord was not running"),
	       S(EXPECT_STATE, 2, .st = BRK_STARTING), S(EXPECT_PATH, 2, "cold"),
	       S(EXPECT_USAGE, .n = 2, .m = 1, .q = 0), S(EXPECT_GUESTS, .n = 2), S(SPAWN, 2),
	       S(READY, 2), S(EXPECT_STATE, 2, .st = BRK_READY)}},
    {"warm hand-out: a paused clone is resumed for the first user", .warm_pool = 1,
     .templates = true,
     .steps = {S(EXPECT_GUESTS, .n = 1), S(EXPECT_USAGE, .n = 1, .m = 1, .q = 0), S(WARM_READY),
	       S(EXPECT_USAGE, .n = 1, .m = 0, .q = 0), S(CONNECT, 0, "alice"),
	       S(EXPECT_STATE, 0, .st = BRK_STARTING), S(EXPECT_PATH, 0, "warm"),
	       S(RESUMED, 0, .n = 0), S(EXPECT_STATE, 0, .st = BRK_READY),
	       /* the pool refills behind it */
	       S(EXPECT_GUESTS, .n = 2), S(EXPECT_USAGE, .n = 2, .m = 1, .q = 0)}},
    {"a warm guest that cannot be resumed ends its session", .warm_pool = 1, .templates = true,
     .steps = {S(WARM_READY), S(CONNECT, 0, "alice"), S(RESUMED, 0, .n = -EIO),
	       S(EXPECT_STATE, 0, .st = BRK_ENDING), S(EXPECT_STOP, 0, .n = 0),
	       S(STOPPED, 0, .why = LNCH_END_STOPPED), S(EXPECT_STATE, 0, .st = BRK_ENDED),
	       S(EXPECT_WHY, 0, "the warm guest could not be resumed")}},
    {"a refused connect puts the warm guest it took back", .warm_pool = 1, .templates = true,
     .steps = {S(WARM_READY), S(CAP, .text = "max_memory_mb", .n = 100), S(REFUSED, 0, "alice"),
	       S(EXPECT_USAGE, .n = 1, .m = 0, .q = 0), S(EXPECT_GUESTS, .n = 1),
	       /* still there for the next user once the cap allows it */
	       S(CAP, .text = "max_memory_mb", .n = 0), S(CONNECT, 0, "bob"),
	       S(EXPECT_PATH, 0, "warm")}},
    {"shutdown ends every session and reports once the guests are gone",
     .steps = {S(CAPS, .n = 1), S(CONNECT, 0, "alice"), S(CONNECT, 1, "bob"), S(SPAWN, 0),
	       S(READY, 0), S(SHUTDOWN), S(EXPECT_STATE, 1, .st = BRK_ENDED),
	       S(EXPECT_STATE, 0, .st = BRK_ENDING), S(EXPECT_STOP, 0, .n = 1),
	       S(EXPECT_DONE, .n = 0), S(STOPPED, 0, .why = LNCH_END_STOPPED),
	       S(EXPECT_STATE, 0, .st = BRK_ENDED), S(EXPECT_DONE, .n = 1)}},
    {"shutdown keeping the guests: detached, rows kept, done at once", .keep_guests = true,
     .warm_pool = 1, .templates = true,
     .steps = {S(WARM_READY), S(CONNECT, 0, "alice"), S(RESUMED, 0, .n = 0), S(SHUTDOWN),
	       S(EXPECT_GONE, 0), S(EXPECT_STATE, 0, .st = BRK_READY), S(EXPECT_DONE, .n = 1)}},
    {"a template build that fails tells its waiter and frees its slot",
     .steps = {S(BUILD), S(EXPECT_USAGE, .n = 1, .m = 1, .q = 0), S(BUILD_DONE, .n = -EIO),
	       S(EXPECT_BUILD_CB, .n = -EIO), S(EXPECT_USAGE, .n = 0, .m = 0, .q = 0),
	       S(CONNECT, 0, "alice"), S(EXPECT_PATH, 0, "cold")}},
};

/* --- running a case --- */

static struct event_base *base;
static struct brk *broker;
static struct brk_session *sess[8];
static char ids[8][33];
static int build_err = 1;
static bool stop_done;

static void on_stopped(void *arg)
{
	stop_done = true;
}
static char build_msg[256];

static void spin(void)
{
	for (int i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static void on_build(int err, const char *msg, void *arg)
{
	build_err = err;
	snprintf(build_msg, sizeof(build_msg), "%s", msg);
}

static json_object *usage(void)
{
	json_object *st = brk_status_json(broker), *u = NULL;
	json_object_object_get_ex(st, "usage", &u);
	json_object_get(u);
	json_object_put(st);
	return u;
}

static long long num(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : -1;
}

static const char *text_of(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "";
}

static void seed(const char *dbpath, const struct tcase *c)
{
	char err[256];
	struct store *st = store_open(dbpath, err, sizeof(err));
	CHECK_MSG(st, "%s", err);
	if (!st)
		return;
	struct db_image img = {.memory_mb = 256, .warm_pool = c->warm_pool};
	snprintf(img.name, sizeof(img.name), "img");
	snprintf(img.base, sizeof(img.base), "/nonexistent/base.qcow2");
	snprintf(img.machine, sizeof(img.machine), "pc");
	snprintf(img.ready, sizeof(img.ready), "running");
	CHECK(store_image_put(st, &img) == 0);
	struct db_app app = {0};
	snprintf(app.alias, sizeof(app.alias), "ledger");
	snprintf(app.image, sizeof(app.image), "img");
	snprintf(app.title, sizeof(app.title), "Ledger");
	CHECK(store_app_put(st, &app) == 0);
	if (c->templates)
		CHECK(store_template_set(st, "img", "tcg", "/nonexistent/template") == 0);
	for (unsigned i = 0; i < ARRAY_LEN(c->rows) && c->rows[i].id; i++) {
		struct db_session r = {.pid = c->rows[i].pid, .memory_mb = 256};
		snprintf(r.id, sizeof(r.id), "%s", c->rows[i].id);
		snprintf(r.user, sizeof(r.user), "user%u", i);
		snprintf(r.app, sizeof(r.app), "ledger");
		snprintf(r.image, sizeof(r.image), "img");
		snprintf(r.state, sizeof(r.state), "%s", c->rows[i].state);
		snprintf(r.start_path, sizeof(r.start_path), "%s", c->rows[i].start_path);
		snprintf(r.accel, sizeof(r.accel), "tcg");
		r.created = util_wall_s() - 10 + (int64_t)i;
		CHECK(store_session_save(st, &r) == 0);
	}
	store_close(st);
}

static void step(const struct tcase *c, const struct step *s)
{
	char err[256] = "";
	struct fake_guest *g = s->k >= 0 && ids[s->k][0] ? guest_of(ids[s->k]) : NULL;
	switch (s->op) {
	case END_OF_STEPS:
		break;
	case CONNECT: {
		int r = brk_connect(broker, s->text, "ledger", "10.0.0.1", &sess[s->k], err,
				    sizeof(err));
		CHECK_MSG(r == 0, "%s: connect %s: %s", c->name, s->text, err);
		if (r == 0)
			snprintf(ids[s->k], sizeof(ids[s->k]), "%s", brk_session_id(sess[s->k]));
		break;
	}
	case SPAWN:
	case READY:
	case STOPPED:
		CHECK_MSG(g, "%s: no guest for session %d", c->name, s->k);
		if (!g)
			break;
		if (s->op == SPAWN) {
			g->pid = 1000 + s->k;
			g->cbs->spawned(as_guest(g), g->pid, g->arg);
		} else if (s->op == READY) {
			g->cbs->state(as_guest(g), LNCH_READY, LNCH_END_NONE, "", g->arg);
		} else {
			g->gone = true; /* reported once; the broker destroys it */
			g->cbs->state(as_guest(g), LNCH_STOPPED, s->why, "", g->arg);
		}
		break;
	case ATTACH:
		CHECK(brk_session_attach(broker, sess[s->k], "gw-test", err, sizeof(err)) == 0);
		break;
	case DETACH:
		CHECK(brk_session_detach(broker, sess[s->k]) == 0);
		break;
	case END:
		CHECK(brk_session_end(broker, sess[s->k], "ended by the test") == 0);
		break;
	case CAPS:
		CHECK(brk_caps_set(broker, "max_sessions", (unsigned)s->n) == 0);
		break;
	case WARM_READY: {
		struct fake_guest *w = warm_guest();
		CHECK_MSG(w, "%s: no warm guest", c->name);
		if (w)
			w->cbs->state(as_guest(w), LNCH_READY, LNCH_END_NONE, "", w->arg);
		break;
	}
	case RESUMED:
		CHECK_MSG(g && g->resume_cb, "%s: no resume asked of session %d", c->name, s->k);
		if (g && g->resume_cb)
			g->resume_cb(as_guest(g), s->n, g->resume_arg);
		break;
	case BUILD:
		CHECK(brk_template_build(broker, "img", on_build, NULL, err, sizeof(err)) == 0);
		break;
	case BUILD_DONE: {
		CHECK_MSG(n_builds > 0, "%s: no build ran", c->name);
		if (!n_builds)
			break;
		struct fake_build *b = &builds[n_builds - 1];
		struct img_template_meta meta = {.build_s = 1.0};
		b->gone = true;
		b->cb(s->n, s->n ? "fake build failure" : "ok", &meta, b->arg);
		break;
	}
	case EXPECT_STATE:
		CHECK_MSG(sess[s->k] && brk_session_state(sess[s->k]) == s->st,
			  "%s: session %d is %s, not %s", c->name, s->k,
			  sess[s->k] ? brk_state_name(brk_session_state(sess[s->k])) : "missing",
			  brk_state_name(s->st));
		break;
	case EXPECT_PATH:
	case EXPECT_WHY: {
		json_object *o = sess[s->k] ? brk_session_json(broker, sess[s->k]) : NULL;
		const char *v = text_of(o, s->op == EXPECT_PATH ? "start_path" : "end_reason");
		CHECK_MSG(o && strstr(v, s->text), "%s: session %d: '%s' lacks '%s'", c->name, s->k,
			  v, s->text);
		json_object_put(o);
		break;
	}
	case EXPECT_STOP:
		CHECK_MSG(g && g->stop_grace >= 0 && (g->stop_grace > 0) == (s->n > 0),
			  "%s: session %d: stop grace %d", c->name, s->k, g ? g->stop_grace : -2);
		break;
	case EXPECT_USAGE: {
		json_object *u = usage();
		CHECK_MSG(num(u, "sessions") == s->n && num(u, "starting") == s->m &&
			      num(u, "queued") == s->q,
			  "%s: usage %s, want sessions %d starting %d queued %d", c->name,
			  json_object_to_json_string(u), s->n, s->m, s->q);
		json_object_put(u);
		break;
	}
	case EXPECT_GUESTS:
		CHECK_MSG(n_guests == (unsigned)s->n, "%s: %u guests, want %d", c->name, n_guests,
			  s->n);
		break;
	case REFUSED: {
		struct brk_session *x = NULL;
		int r = brk_connect(broker, s->text, "ledger", "10.0.0.1", &x, err, sizeof(err));
		CHECK_MSG(r == -EBUSY, "%s: connect %s: %d", c->name, s->text, r);
		break;
	}
	case CAP:
		CHECK(brk_caps_set(broker, s->text, (unsigned)s->n) == 0);
		break;
	case SHUTDOWN:
		brk_shutdown(broker, on_stopped, NULL);
		break;
	case EXPECT_DONE:
		CHECK_MSG(stop_done == (s->n != 0), "%s: shutdown done %d", c->name, stop_done);
		break;
	case EXPECT_GONE: {
		struct fake_guest *x = NULL;
		for (unsigned i = 0; i < n_guests; i++)
			if (!strcmp(guests[i].id, ids[s->k]))
				x = &guests[i];
		CHECK_MSG(x && x->gone && x->stop_grace < 0, "%s: session %d's guest %s", c->name,
			  s->k, x ? "was stopped or kept" : "missing");
		break;
	}
	case EXPECT_BUILD_CB:
		CHECK_MSG(build_err == s->n && strstr(build_msg, "fake build failure"),
			  "%s: build callback %d '%s'", c->name, build_err, build_msg);
		break;
	}
}

static void run(const struct tcase *c)
{
	char tmpl[] = "/tmp/nestor-test-sessions.XXXXXX";
	char *dir = mkdtemp(tmpl);
	CHECK(dir);
	if (!dir)
		return;
	n_guests = n_builds = 0;
	memset(sess, 0, sizeof(sess));
	memset(ids, 0, sizeof(ids));
	memcpy(alive, c->alive, sizeof(c->alive));
	templates_usable = c->templates;
	build_err = 1;
	build_msg[0] = '\0';
	stop_done = false;

	struct brk_config cfg;
	brk_config_defaults(&cfg);
	snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s/state", dir);
	snprintf(cfg.run_dir, sizeof(cfg.run_dir), "%s/run", dir);
	snprintf(cfg.overlay_dir, sizeof(cfg.overlay_dir), "%s/overlays", dir);
	snprintf(cfg.image_dir, sizeof(cfg.image_dir), "%s/images", dir);
	snprintf(cfg.accel, sizeof(cfg.accel), "tcg");
	snprintf(cfg.pam_service, sizeof(cfg.pam_service), "nestor-unit-test");
	cfg.auto_template = false;
	cfg.min_free_mb = 0;
	cfg.pressure_high = 0;
	cfg.max_starting = 4;
	char dbpath[BRK_PATH_MAX + 16], err[512];
	CHECK(util_mkdir_p(cfg.state_dir, 0700) == 0);
	snprintf(dbpath, sizeof(dbpath), "%s/nestor.db", cfg.state_dir);
	seed(dbpath, c);

	base = event_base_new();
	struct brk_options opts = {.launcher = &fake, .keep_guests = c->keep_guests};
	broker = brk_create(base, &cfg, &opts, err, sizeof(err));
	CHECK_MSG(broker, "%s: %s", c->name, err);
	if (!broker) {
		event_base_free(base);
		return;
	}
	spin(); /* the version answer; restored and warm guests start */
	for (unsigned i = 0; i < ARRAY_LEN(c->rows) && c->rows[i].id; i++) {
		sess[i] = brk_session_find(broker, c->rows[i].id);
		snprintf(ids[i], sizeof(ids[i]), "%s", c->rows[i].id);
	}
	for (const struct step *s = c->steps; s->op != END_OF_STEPS; s++) {
		step(c, s);
		spin();
	}
	brk_destroy(broker);
	event_base_free(base);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

int main(void)
{
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		run(&cases[i]);
	return check_done("test_sessions");
}
