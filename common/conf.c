/* INI parsing with line numbers and typed values (see conf.h). */
#include "conf.h"
#include "util.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct parse {
	const char *name;
	const char *text;
	size_t pos;
	int line;
	conf_key_fn fn;
	void *user;
	char *err;
	size_t errlen;
	int failed;
	int fail_line;
};

/* inih's handler does not see line numbers: our reader counts them. */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	if (!p->text[p->pos])
		return NULL;
	const char *s = p->text + p->pos;
	const char *nl = strchr(s, '\n');
	size_t n = nl ? (size_t)(nl - s) + 1 : strlen(s);
	if (n >= (size_t)num)
		n = (size_t)num - 1; /* inih asks again for the rest */
	memcpy(str, s, n);
	str[n] = '\0';
	p->pos += n;
	if (n > 0 && str[n - 1] == '\n')
		p->line++;
	return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	const char *want = "a valid value";
	int r = p->fn(p->user, section, name, value, &want);
	if (r == 0)
		return 1;
	if (!p->failed) {
		p->failed = r == -ENOENT ? -ENOENT : -EINVAL;
		p->fail_line = p->line;
		if (r == -ENOENT)
			snprintf(p->err, p->errlen, "%s:%d: unknown key '%s' in section [%s]",
				 p->name, p->line, name, section);
		else
			snprintf(p->err, p->errlen, "%s:%d: bad value '%s' for %s.%s: expected %s",
				 p->name, p->line, value, section, name, want);
	}
	return 0;
}

int conf_parse(const char *name, const char *text, conf_key_fn fn, void *user, char *err,
	       size_t errlen)
{
	struct parse p = {
	    .name = name, .text = text, .fn = fn, .user = user, .err = err, .errlen = errlen};
	int r = ini_parse_stream(reader, &p, handler, &p);
	if (p.failed && !(r > 0 && r < p.fail_line))
		return p.failed;
	if (r != 0) {
		snprintf(err, errlen, "%s:%d: syntax error", name, r > 0 ? r : p.line);
		return -EINVAL;
	}
	return 0;
}

int conf_load(const char *path, conf_key_fn fn, void *user, char *err, size_t errlen)
{
	char *text = NULL;
	int r = util_read_file(path, 1024 * 1024, &text, NULL);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	r = conf_parse(path, text, fn, user, err, errlen);
	free(text);
	return r;
}

int conf_str(char *dst, size_t len, const char *v)
{
	if (strlen(v) >= len)
		return -EINVAL;
	strcpy(dst, v);
	return 0;
}

int conf_path(char *dst, size_t len, const char *v)
{
	return v[0] == '/' ? conf_str(dst, len, v) : -EINVAL;
}

int conf_uint(unsigned *dst, const char *v, unsigned max)
{
	char *end;
	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	unsigned long x = strtoul(v, &end, 10);
	if (errno || *end || x > max)
		return -EINVAL;
	*dst = (unsigned)x;
	return 0;
}

int conf_bool(bool *dst, const char *v)
{
	if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
		*dst = true;
	else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
		*dst = false;
	else
		return -EINVAL;
	return 0;
}

int conf_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon;
	const char *h = s;
	size_t hl;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* a bare IPv6 address needs brackets */
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p == 0 || p > 65535 || colon[1] == '+' ||
	    colon[1] == '-')
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int conf_listen(char *dst, size_t len, const char *v)
{
	char host[256];
	uint16_t port;
	if (!*v) /* off, as by default */
		return conf_str(dst, len, v);
	return conf_hostport(v, host, sizeof(host), &port) < 0 ? -EINVAL : conf_str(dst, len, v);
}
