/*
 * Prometheus text exposition and the /metrics server (prom.h).
 */
#include "prom.h"
#include "conf.h"
#include "log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct prom_bounds prom_fast = {
    13, {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
const struct prom_bounds prom_slow = {13,
				      {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800}};

void prom_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

uint64_t prom_get(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

void prom_observe(struct prom_hist *h, const struct prom_bounds *b, double seconds)
{
	if (!(seconds >= 0)) /* NaN too */
		seconds = 0;
	unsigned i = 0;
	while (i < b->n && seconds > b->le[i])
		i++;
	prom_add(&h->bucket[i], 1);
	prom_add(&h->sum_us, (uint64_t)(seconds * 1e6 + 0.5));
	prom_add(&h->count, 1);
}

void prom_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_sample(struct evbuffer *out, const char *name, const char *labels, double v)
{
	if (labels && *labels)
		evbuffer_add_printf(out, "%s{%s} %.15g\n", name, labels, v);
	else
		evbuffer_add_printf(out, "%s %.15g\n", name, v);
}

void prom_scalar(struct evbuffer *out, const char *name, const char *type, const char *help,
		 double v)
{
	prom_family(out, name, type, help);
	prom_sample(out, name, NULL, v);
}

void prom_by_label(struct evbuffer *out, const char *name, const char *type, const char *help,
		   const char *key, const char *const *names, const uint64_t *v, unsigned n)
{
	prom_family(out, name, type, help);
	for (unsigned i = 0; i < n; i++) {
		char l[128] = "";
		prom_label(l, sizeof(l), key, names[i]);
		prom_sample(out, name, l, (double)prom_get(&v[i]));
	}
}

void prom_hist_write(struct evbuffer *out, const char *name, const char *labels,
		     const struct prom_bounds *b, const struct prom_hist *h)
{
	const char *sep = labels && *labels ? "," : "";
	if (!labels)
		labels = "";
	/* read the total last: a concurrent observation shows in the buckets first */
	uint64_t cum = 0;
	for (unsigned i = 0; i <= b->n; i++) {
		cum += prom_get(&h->bucket[i]);
		if (i < b->n)
			evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels,
					    sep, b->le[i], (unsigned long long)cum);
		else
			evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels,
					    sep, (unsigned long long)cum);
	}
	double sum = (double)prom_get(&h->sum_us) / 1e6;
	if (*labels) {
		evbuffer_add_printf(out, "%s_sum{%s} %.15g\n%s_count{%s} %llu\n", name, labels, sum,
				    name, labels, (unsigned long long)cum);
	} else {
		evbuffer_add_printf(out, "%s_sum %.15g\n%s_count %llu\n", name, sum, name,
				    (unsigned long long)cum);
	}
}

int prom_label(char *dst, size_t n, const char *key, const char *value)
{
	size_t len = strlen(dst);
	size_t at = len;
	const char *sep = len ? "," : "";
	int w = snprintf(dst + at, n - at, "%s%s=\"", sep, key);
	if (w < 0 || (size_t)w + 2 > n - at) /* room for the closing quote and the NUL */
		goto full;
	at += (size_t)w;
	for (const char *c = value; *c; c++) {
		const char *esc = *c == '\\'   ? "\\\\"
				  : *c == '"'  ? "\\\""
				  : *c == '\n' ? "\\n"
					       : NULL;
		size_t need = esc ? 2 : 1;
		if (at + need + 2 > n) /* room for the quote and the NUL */
			goto full;
		if (esc)
			memcpy(dst + at, esc, 2);
		else
			dst[at] = *c;
		at += need;
	}
	dst[at++] = '"';
	dst[at] = '\0';
	return 0;
full:
	dst[len] = '\0';
	return -ENOSPC;
}

struct prom_server {
	struct evhttp *http;
	prom_render_fn render;
	void *arg;
};

static void on_request(struct evhttp_request *req, void *arg)
{
	struct prom_server *ps = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (!path || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is here");
		return;
	}
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, HTTP_BADMETHOD, "GET only");
		return;
	}
	struct evbuffer *body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, HTTP_SERVUNAVAIL, "out of memory");
		return;
	}
	ps->render(body, ps->arg);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

struct prom_server *prom_serve(struct event_base *base, const char *listen, prom_render_fn render,
			       void *arg, char *err, size_t errlen)
{
	char host[256];
	uint16_t port;
	if (conf_hostport(listen, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "bad metrics address '%s': expected HOST:PORT or [V6]:PORT",
			 listen);
		return NULL;
	}
	struct prom_server *ps = calloc(1, sizeof(*ps));
	if (!ps || !(ps->http = evhttp_new(base))) {
		free(ps);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ps->render = render;
	ps->arg = arg;
	evhttp_set_max_headers_size(ps->http, 8192);
	evhttp_set_max_body_size(ps->http, 0);
	evhttp_set_timeout(ps->http, 10);
	evhttp_set_allowed_methods(ps->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(ps->http, on_request, ps);
	if (!evhttp_bind_socket_with_handle(ps->http, host, port)) {
		snprintf(err, errlen, "cannot listen for metrics on %s: %s", listen,
			 strerror(errno));
		prom_server_free(ps);
		return NULL;
	}
	log_info("metrics on http://%s/metrics", listen);
	return ps;
}

void prom_server_free(struct prom_server *ps)
{
	if (!ps)
		return;
	evhttp_free(ps->http);
	free(ps);
}
