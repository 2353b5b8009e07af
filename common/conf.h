/*
 * INI configuration files through libinih, with what inih lacks: line
 * numbers in errors, typed value parsers, and one error convention
 * ("FILE:LINE: unknown key 'k' in section [s]" / "bad value 'v' for s.k:
 * expected ..."). Pure except conf_load (reads the file).
 *
 * int functions return 0 or a negative errno.
 */
#ifndef NESTOR_CONF_H
#define NESTOR_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Called for every key. Returns 0, -ENOENT for an unknown key, or -EINVAL
 * with *WANT set to what a good value looks like.
 */
typedef int (*conf_key_fn)(void *user, const char *section, const char *key, const char *value,
			   const char **want);

int conf_parse(const char *name, const char *text, conf_key_fn fn, void *user, char *err,
	       size_t errlen);
/* Read PATH (at most 1 MiB) and parse it; -ENOENT if it does not exist. */
int conf_load(const char *path, conf_key_fn fn, void *user, char *err, size_t errlen);

int conf_str(char *dst, size_t len, const char *v);
int conf_path(char *dst, size_t len, const char *v); /* absolute */
int conf_uint(unsigned *dst, const char *v, unsigned max);
int conf_bool(bool *dst, const char *v);
/* HOST:PORT or [V6]:PORT (port 1..65535) into HOST (no brackets) and *PORT. */
int conf_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);
/* A listening address as conf_hostport accepts it, kept as written; "" is none. */
int conf_listen(char *dst, size_t len, const char *v);

#endif
