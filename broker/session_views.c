/*
 * What is shown of a session (its JSON views, the gateway's way to an rdp
 * guest, a screen dump) and who watches it. Reads session state, never
 * writes it. Runs on the loop.
 */
#include "session-private.h"
#include "qmp_client.h"
#include "record.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum brk_state brk_session_state(const struct brk_session *s)
{
	return s->state;
}

const char *brk_session_id(const struct brk_session *s)
{
	return s->rec.id;
}

const char *brk_session_user(const struct brk_session *s)
{
	return s->rec.user;
}

json_object *sess_json(struct sessions *ss, const struct brk_session *s)
{
	bool up = s->state >= BRK_READY && s->state <= BRK_DISCONNECTED;
	unsigned always = REC_V_LIVE | (up ? REC_V_UP : 0) | (live(s) ? 0 : REC_V_ENDED);
	unsigned if_set = REC_V_SET | (up ? REC_V_UP_SET : 0);
	json_object *o = rec_json(&rec_sessions, &s->rec, always, if_set, 0);
	json_object_object_add(o, "title", json_object_new_string(s->title));
	json_object_object_add(o, "state", json_object_new_string(brk_state_name(s->state)));
	int64_t now = util_now_ms();
	json_object_object_add(o, "elapsed_ms", json_object_new_int64(now - s->created_ms));
	if (s->state == BRK_QUEUED) {
		struct quota_decision d;
		if (admit_position(ss->h->adm, s->qid, now, &d) == 0) {
			json_object_object_add(o, "position", json_object_new_int64(d.position));
			json_object_object_add(o, "estimate_ms",
					       json_object_new_int64(d.estimate_ms));
			json_object_object_add(o, "reason", json_object_new_string(d.reason));
		}
	}
	json_object_object_add(
	    o, "backend",
	    json_object_new_string(!strcmp(s->img.backend, "rdp") ? "rdp" : "console"));
	struct brk_ending e;
	if (sess_ending(ss, s, now, &e))
		json_object_object_add(o, "ending", sess_ending_json(&e, now));
	return o;
}

/*
 * How the gateway reaches an rdp guest: its forward, the security its server
 * speaks, the account to present and the channel policy. Only for a live
 * rdp session; NULL otherwise.
 */
json_object *sess_guest_json(struct sessions *ss, const struct brk_session *s)
{
	if (strcmp(s->img.backend, "rdp") || !s->rec.rdp_port || s->state < BRK_READY ||
	    s->state > BRK_DISCONNECTED)
		return NULL;
	const struct db_rdp_policy *r = &s->img.rdp;
	struct db_app app;
	if (store_app_get(ss->h->store, s->rec.app, &app) < 0)
		app.command[0] = '\0';
	json_object *o = json_object_new_object();
	json_object_object_add(o, "host", json_object_new_string("127.0.0.1"));
	json_object_object_add(o, "port", json_object_new_int64(s->rec.rdp_port));
	json_object_object_add(o, "security",
			       json_object_new_string(r->security[0] ? r->security : "rdp"));
	json_object_object_add(o, "login",
			       json_object_new_string(r->login[0] ? r->login : "image"));
	json_object_object_add(o, "user", json_object_new_string(r->user));
	json_object_object_add(o, "domain", json_object_new_string(r->domain));
	json_object_object_add(o, "password", json_object_new_string(r->password));
	json_object_object_add(o, "clipboard", json_object_new_boolean(r->clipboard));
	json_object_object_add(o, "drive", json_object_new_boolean(r->drive));
	json_object_object_add(
	    o, "clipboard_formats",
	    json_object_new_string(r->clip_formats[0] ? r->clip_formats : "text"));
	json_object_object_add(o, "clipboard_max_bytes", json_object_new_int64(r->clip_max));
	json_object_object_add(o, "remoteapp", json_object_new_boolean(r->remoteapp));
	json_object_object_add(o, "program", json_object_new_string(app.command));
	return o;
}

json_object *sess_list_json(struct sessions *ss)
{
	json_object *arr = json_object_new_array();
	/* oldest first: the list is newest first */
	unsigned n = 0;
	for (struct brk_session *s = ss->list; s; s = s->next)
		n += live(s);
	struct brk_session **v = calloc(n ? n : 1, sizeof(*v));
	unsigned i = n;
	for (struct brk_session *s = ss->list; s && v; s = s->next)
		if (live(s))
			v[--i] = s;
	for (i = 0; v && i < n; i++)
		json_object_array_add(arr, sess_json(ss, v[i]));
	free(v);
	return arr;
}

struct dump {
	brk_done_fn cb;
	void *arg;
	char path[BRK_PATH_MAX + 32];
};

static void on_dump(struct qmp_client *c, int err, json_object *res, const char *desc, void *arg)
{
	struct dump *d = arg;
	if (err)
		d->cb(err == -EREMOTEIO ? -EIO : err, desc ? desc : "screendump failed", d->arg);
	else
		d->cb(0, d->path, d->arg);
	free(d);
}

int sess_screendump(struct sessions *ss, struct brk_session *s, brk_done_fn cb, void *arg)
{
	struct qmp_client *c = s->guest ? ss->h->lnch->qmp(s->guest) : NULL;
	if (!c || s->state < BRK_READY || s->state > BRK_DISCONNECTED)
		return -EAGAIN;
	struct dump *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->cb = cb;
	d->arg = arg;
	snprintf(d->path, sizeof(d->path), "%.4000s/%s/screen.ppm", ss->h->vm_dir, s->rec.id);
	json_object *a = json_object_new_object();
	json_object_object_add(a, "filename", json_object_new_string(d->path));
	int r = qmp_client_call(c, "screendump", a, -1, 10000, on_dump, d);
	if (r < 0)
		free(d);
	return r;
}

struct brk_watch *brk_watch(struct brk_session *s, brk_watch_fn cb, void *arg)
{
	struct brk_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->s = s;
	w->cb = cb;
	w->arg = arg;
	w->next = s->watchers;
	if (w->next)
		w->next->prevp = &w->next;
	w->prevp = &s->watchers;
	s->watchers = w;
	return w;
}

void brk_unwatch(struct brk_watch *w)
{
	if (!w)
		return;
	sess_watch_unlink(w);
	free(w);
}

void sess_gauges(const struct sessions *ss, struct brk_metrics_view *v)
{
	for (const struct brk_session *s = ss->list; s; s = s->next) {
		if (!live(s))
			continue;
		/* queued: not started yet (path "none"); restored before its spawn: cold */
		unsigned path = s->state == BRK_QUEUED ? PATH_N : brk_path_of(s->rec.start_path);
		v->sessions[s->state][path]++;
		if (s->rec.pid > 0)
			v->resident_bytes += util_rss_bytes(s->rec.pid);
	}
}
