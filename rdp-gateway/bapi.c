/* Blocking calls to nestord from a peer thread (see bapi.h). */
#include "bapi.h"
#include "httpc.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MS 30000

static const char *js(json_object *o, const char *k)
{
	json_object *v;
	return o && json_object_object_get_ex(o, k, &v) && !json_object_is_type(v, json_type_null)
		   ? json_object_get_string(v)
		   : "";
}

static long long ji(json_object *o, const char *k, long long dflt)
{
	json_object *v;
	return o && json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : dflt;
}

static void fill(json_object *o, struct gw_session *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "%s", js(o, "id"));
	snprintf(s->state, sizeof(s->state), "%s", js(o, "state"));
	snprintf(s->title, sizeof(s->title), "%s", js(o, "title"));
	snprintf(s->vnc, sizeof(s->vnc), "%s", js(o, "vnc"));
	snprintf(s->backend, sizeof(s->backend), "%s",
		 *js(o, "backend") ? js(o, "backend") : "console");
	const char *r = js(o, "reason");
	snprintf(s->reason, sizeof(s->reason), "%s", *r ? r : js(o, "end_reason"));
	snprintf(s->notice, sizeof(s->notice), "%s", js(o, "notice"));
	s->position = (unsigned)ji(o, "position", 0);
	s->estimate_ms = ji(o, "estimate_ms", -1);
	s->elapsed_ms = ji(o, "elapsed_ms", 0);
	s->pid = ji(o, "pid", 0);
}

static void wipe_field(json_object *o, const char *key)
{
	json_object *v;
	if (json_object_object_get_ex(o, key, &v))
		explicit_bzero((char *)json_object_get_string(v),
			       (size_t)json_object_get_string_len(v));
}

int gw_bapi_connect_start(struct httpc_call *c, const char *sock, const char *user,
			  const char *password, const char *code, const char *app,
			  const char *client)
{
	json_object *b = json_object_new_object();
	json_object_object_add(b, "user", json_object_new_string(user));
	json_object_object_add(b, "password", json_object_new_string(password));
	if (code && *code)
		json_object_object_add(b, "code", json_object_new_string(code));
	json_object_object_add(b, "app", json_object_new_string(app));
	json_object_object_add(b, "client", json_object_new_string(client));
	const char *text = json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN);
	int r = httpc_call_start(c, sock, "POST", "/v1/sessions", text);
	/* the password and the code were in there: wipe the JSON's copies */
	explicit_bzero((char *)text, strlen(text));
	wipe_field(b, "password");
	wipe_field(b, "code");
	json_object_put(b);
	return r;
}

int gw_bapi_connect_read(struct httpc_call *c, struct gw_session *out, char *msg, size_t msglen)
{
	char *resp = NULL;
	int st = httpc_call_read(c, &resp);
	if (st == 0)
		return -EAGAIN;
	if (st < 0) {
		snprintf(msg, msglen, "the session service is not available");
		return st;
	}
	json_object *o = json_tokener_parse(resp ? resp : "");
	if (resp)
		explicit_bzero(resp, strlen(resp)); /* it held the session's grant */
	free(resp);
	if (st == 200 && o) {
		fill(o, out);
		snprintf(out->grant, sizeof(out->grant), "%s", js(o, "grant"));
		json_object_put(o);
		return 0;
	}
	bool need_code = st == 401 && !strcmp(js(o, "need"), "code");
	if (need_code)
		snprintf(msg, msglen, "%s", *js(o, "prompt") ? js(o, "prompt") : "One-time code:");
	else
		snprintf(msg, msglen, "%s",
			 *js(o, "error") ? js(o, "error") : "the request failed");
	json_object_put(o);
	return need_code ? GW_BAPI_NEED_CODE : st == 200 ? 502 : st;
}

/* OUT from a response (status ST, body RESP: taken); 0 or a negative errno. */
static int session_from(int st, char *resp, struct gw_session *out)
{
	json_object *o = st == 200 ? json_tokener_parse(resp ? resp : "") : NULL;
	free(resp);
	if (!o)
		return st < 0 ? st : -EPROTO;
	fill(o, out);
	json_object_put(o);
	return 0;
}

static int get_session(const char *sock, const char *path, int timeout_ms, struct gw_session *out)
{
	char *resp = NULL;
	int st = httpc_request(sock, "GET", path, NULL, timeout_ms, &resp);
	return session_from(st, resp, out);
}

int gw_bapi_wait(const char *sock, const char *id, const char *grant, const char *state,
		 unsigned timeout_s, struct gw_session *out)
{
	char path[256];
	snprintf(path, sizeof(path), "/v1/sessions/%s?wait=%s&timeout=%u&grant=%s", id, state,
		 timeout_s, grant);
	return get_session(sock, path, (int)timeout_s * 1000 + 2000, out);
}

int gw_bapi_wait_start(struct httpc_call *c, const char *sock, const char *id, const char *grant,
		       const char *state, unsigned timeout_s)
{
	char path[256];
	snprintf(path, sizeof(path), "/v1/sessions/%s?wait=%s&timeout=%u&grant=%s", id, state,
		 timeout_s, grant);
	return httpc_call_start(c, sock, "GET", path, NULL);
}

int gw_bapi_wait_read(struct httpc_call *c, struct gw_session *out)
{
	char *resp = NULL;
	int st = httpc_call_read(c, &resp);
	return st == 0 ? -EAGAIN : session_from(st, resp, out);
}

int gw_bapi_attach(const char *sock, const char *id, const char *grant, const char *gateway)
{
	char path[192], body[96];
	snprintf(path, sizeof(path), "/v1/sessions/%s/attach?grant=%s", id, grant);
	snprintf(body, sizeof(body), "{\"gateway\":\"%s\"}", gateway);
	int st = httpc_request(sock, "POST", path, body, TIMEOUT_MS, NULL);
	return st == 200 ? 0 : st < 0 ? st : -EPROTO;
}

int gw_bapi_lease_start(struct httpc_call *c, const char *sock, const char *gateway,
			const char *const *ids, unsigned n)
{
	json_object *b = json_object_new_object(), *arr = json_object_new_array();
	for (unsigned i = 0; i < n; i++)
		json_object_array_add(arr, json_object_new_string(ids[i]));
	json_object_object_add(b, "sessions", arr);
	char path[96];
	snprintf(path, sizeof(path), "/v1/gateways/%s/lease", gateway);
	int r = httpc_call_start(c, sock, "POST", path,
				 json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
	json_object_put(b);
	return r;
}

int gw_bapi_lease_read(struct httpc_call *c, const char *id, struct gw_ending *out)
{
	char *resp = NULL;
	memset(out, 0, sizeof(*out));
	int st = httpc_call_read(c, &resp);
	if (st == 0)
		return -EAGAIN;
	json_object *o = st == 200 ? json_tokener_parse(resp ? resp : "") : NULL;
	free(resp);
	if (!o)
		return st == 200 ? -EPROTO : st;
	json_object *all, *e;
	if (json_object_object_get_ex(o, "ending", &all) &&
	    json_object_is_type(all, json_type_object) && json_object_object_get_ex(all, id, &e) &&
	    json_object_is_type(e, json_type_object)) {
		long long left = ji(e, "in_s", 0);
		out->set = true;
		out->in_s = left < 0 ? 0 : left;
		snprintf(out->why, sizeof(out->why), "%s", js(e, "why"));
		snprintf(out->message, sizeof(out->message), "%s", js(e, "message"));
	}
	json_object_put(o);
	return 0;
}

int gw_bapi_post(const char *sock, const char *id, const char *grant, const char *verb)
{
	char path[192];
	snprintf(path, sizeof(path), "/v1/sessions/%s/%s?grant=%s", id, verb, grant);
	int st = httpc_request(sock, "POST", path, NULL, TIMEOUT_MS, NULL);
	return st == 200 ? 0 : st < 0 ? st : -EPROTO;
}

int gw_bapi_guest(const char *sock, const char *id, const char *grant, struct gw_guest *g)
{
	char path[192], *resp = NULL;
	snprintf(path, sizeof(path), "/v1/sessions/%s/guest?grant=%s", id, grant);
	int st = httpc_request(sock, "GET", path, NULL, TIMEOUT_MS, &resp);
	json_object *o = st == 200 ? json_tokener_parse(resp ? resp : "") : NULL;
	if (resp) {
		explicit_bzero(resp, strlen(resp)); /* it held the guest's password */
		free(resp);
	}
	if (!o)
		return st < 0 ? st : -EPROTO;
	memset(g, 0, sizeof(*g));
	snprintf(g->host, sizeof(g->host), "%s", js(o, "host"));
	long long port = ji(o, "port", 0);
	g->port = port > 0 && port < 65536 ? (unsigned)port : 0;
	snprintf(g->security, sizeof(g->security), "%s", js(o, "security"));
	snprintf(g->login, sizeof(g->login), "%s", js(o, "login"));
	snprintf(g->user, sizeof(g->user), "%s", js(o, "user"));
	snprintf(g->domain, sizeof(g->domain), "%s", js(o, "domain"));
	snprintf(g->password, sizeof(g->password), "%s", js(o, "password"));
	snprintf(g->program, sizeof(g->program), "%s", js(o, "program"));
	g->clipboard = ji(o, "clipboard", 0) != 0;
	g->drive = ji(o, "drive", 0) != 0;
	g->clipboard_text_only = strcmp(js(o, "clipboard_formats"), "all") != 0;
	long long max = ji(o, "clipboard_max_bytes", 0);
	g->clipboard_max = max > 0 && max <= 8388600 ? (unsigned)max : 0;
	g->remoteapp = ji(o, "remoteapp", 0) != 0;
	g->fleet_host = ji(o, "fleet_host", 0) != 0;
	snprintf(g->fingerprint, sizeof(g->fingerprint), "%s", js(o, "fingerprint"));
	json_object *pw;
	if (json_object_object_get_ex(o, "password", &pw))
		explicit_bzero((char *)json_object_get_string(pw),
			       (size_t)json_object_get_string_len(pw));
	json_object_put(o);
	/* a fleet host is only reached with its certificate pinned */
	return g->port && g->host[0] && (!g->fleet_host || g->fingerprint[0]) ? 0 : -EPROTO;
}
