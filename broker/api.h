/*
 * nestord's HTTP/JSON API (libevent evhttp) on a UNIX socket. Documented in
 * docs/api.md. Every request is validated: bad JSON, unknown fields, wrong
 * types and oversized bodies get a 4xx with {"error": "..."}.
 */
#ifndef NESTOR_API_H
#define NESTOR_API_H

#include <stddef.h>

struct event_base;
struct brk;
struct api;

/* Listen on PATH (mode 0660, group GROUP if not empty). */
struct api *api_create(struct event_base *base, struct brk *b, const char *path, const char *group,
		       char *err, size_t errlen);
/*
 * Stop serving: no new connections, every waiting request answered 503
 * (the answers still go out while the loop runs). Idempotent; accepts NULL.
 */
void api_stop(struct api *api);
/* api_stop, then free. Accepts NULL. */
void api_destroy(struct api *api);

#endif
