/*
 * main()'s helpers (boot.h): options through getopt_long from a table, and
 * the configuration file rule. Prints to the program's stdout/stderr;
 * never exits; does not block (boot_config's loader reads one file).
 */
#include "boot.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VAL_LONG 256 /* getopt values of options without a short name: VAL_LONG + index */

struct run {
	const struct boot_prog *p;
	FILE *out, *err;
	size_t n; /* options in p->opts */
};

static void say(const struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct run *r, const char *fmt, ...)
{
	va_list ap;
	fprintf(r->err, "%s: ", r->p->name);
	if (r->p->cmd)
		fprintf(r->err, "%s: ", r->p->cmd);
	va_start(ap, fmt);
	vfprintf(r->err, fmt, ap);
	va_end(ap);
	fputc('\n', r->err);
}

/* A usage error: the message is out already; now the usage or the hint. Returns 2. */
static int usage_error(const struct run *r)
{
	if (r->p->hint)
		fprintf(r->err, "%s\n", r->p->hint);
	else if (r->p->usage)
		fputs(r->p->usage, r->err);
	return 2;
}

/* How many long options ARG ("--NAME" or "--NAME=VALUE") abbreviates. */
static size_t prefix_of(const struct run *r, const char *arg)
{
	if (strncmp(arg, "--", 2) != 0)
		return 0;
	arg += 2;
	size_t len = strcspn(arg, "="), n = 0;
	for (size_t i = 0; i < r->n; i++)
		n += strncmp(r->p->opts[i].name, arg, len) == 0;
	n += strncmp("help", arg, len) == 0;
	n += r->p->version && strncmp("version", arg, len) == 0;
	return n;
}

static const struct boot_opt *opt_of(const struct run *r, int val)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct boot_opt *o = &r->p->opts[i];
		if (o->short_name ? o->short_name == val : (int)(VAL_LONG + i) == val)
			return o;
	}
	return NULL;
}

/* The long name of the option getopt returned as VAL; NULL if none. */
static const char *name_of(const struct run *r, int val)
{
	if (val == 'h')
		return "help";
	if (val == 'V' && r->p->version)
		return "version";
	const struct boot_opt *o = opt_of(r, val);
	return o ? o->name : NULL;
}

int boot_uint(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v > UINT32_MAX)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

int boot_duration(const char *s, unsigned max, unsigned *out)
{
	static const struct {
		char unit;
		unsigned seconds;
	} units[] = {{'\0', 1}, {'s', 1}, {'m', 60}, {'h', 3600}};
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || errno || (*end && end[1]))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (*end != units[i].unit)
			continue;
		if (v > max / units[i].seconds)
			return -EINVAL;
		*out = (unsigned)v * units[i].seconds;
		return 0;
	}
	return -EINVAL;
}

/* Apply option O with argument VAL. Returns BOOT_RUN or an exit status. */
static int apply(const struct run *r, const struct boot_opt *o, const char *val)
{
	if (o->flag)
		*o->flag = true;
	if (o->str && val)
		*o->str = val;
	if (o->uint && val && boot_uint(val, o->uint) < 0) {
		say(r, "--%s must be a non-negative integer, not '%s'", o->name, val);
		return usage_error(r);
	}
	if (o->fn) {
		char msg[512] = "";
		int e = o->fn(r->p->ctx, o, val, msg, sizeof(msg));
		if (e == -EINVAL) {
			say(r, "%s", msg);
			return usage_error(r);
		}
		if (e < 0) {
			say(r, "%s", msg);
			return 1;
		}
	}
	return BOOT_RUN;
}

/* The getopt_long tables of P: new, freed by the caller. Returns 0 or -ENOMEM. */
static int tables(const struct run *r, struct option **lo_out, char **short_out)
{
	struct option *lo = calloc(r->n + 3, sizeof(*lo));
	char *s = malloc(3 * r->n + 8);
	if (!lo || !s) {
		free(lo);
		free(s);
		return -ENOMEM;
	}
	size_t k = 0;
	/* '-': arguments come back in order, whatever POSIXLY_CORRECT says;
	 * '+': stop at the first one. ':' reports a missing argument apart. */
	s[k++] = r->p->stop_at_arg ? '+' : '-';
	s[k++] = ':';
	s[k++] = 'h';
	if (r->p->version)
		s[k++] = 'V';
	for (size_t i = 0; i < r->n; i++) {
		const struct boot_opt *o = &r->p->opts[i];
		lo[i] = (struct option){o->name, o->has_arg ? required_argument : no_argument, NULL,
					o->short_name ? o->short_name : (int)(VAL_LONG + i)};
		if (o->short_name) {
			s[k++] = (char)o->short_name;
			if (o->has_arg)
				s[k++] = ':';
		}
	}
	s[k] = '\0';
	size_t j = r->n;
	lo[j++] = (struct option){"help", no_argument, NULL, 'h'};
	if (r->p->version)
		lo[j++] = (struct option){"version", no_argument, NULL, 'V'};
	*lo_out = lo;
	*short_out = s;
	return 0;
}

int boot_parse(const struct boot_prog *p, int argc, char **argv, int *nargs)
{
	struct run r = {.p = p, .out = p->out ? p->out : stdout, .err = p->err ? p->err : stderr};
	while (p->opts && p->opts[r.n].name)
		r.n++;
	struct option *lo = NULL;
	char *shorts = NULL;
	char **args = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*args));
	int st = BOOT_RUN, n = 0, c;
	if (!args || tables(&r, &lo, &shorts) < 0) {
		say(&r, "out of memory");
		st = 1;
		goto out;
	}
	optind = 0; /* glibc: start again from argv[1], reading the optstring anew */
	opterr = 0;
	while (st == BOOT_RUN && (c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		if (c == 1) {
			args[n++] = optarg;
		} else if (c == 'h') {
			fputs(p->usage ? p->usage : "", r.out);
			st = 0;
		} else if (c == 'V' && p->version) {
			fprintf(r.out, "%s %s\n", p->name, p->version);
			st = 0;
		} else if (c == ':' && name_of(&r, optopt)) {
			say(&r, "option '--%s' needs an argument", name_of(&r, optopt));
			st = usage_error(&r);
		} else if (c == '?' || c == ':' || !opt_of(&r, c)) {
			const char *known = optopt ? name_of(&r, optopt) : NULL;
			if (known)
				say(&r, "option '--%s' takes no argument", known);
			else if (optopt)
				say(&r, "unknown option '-%c'", optopt);
			else /* an unknown or ambiguous long option, the element before optind */
				say(&r, "%s option '%.*s'",
				    prefix_of(&r, argv[optind - 1]) > 1 ? "ambiguous" : "unknown",
				    (int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
			st = usage_error(&r);
		} else {
			st = apply(&r, opt_of(&r, c), optarg);
		}
	}
	if (st != BOOT_RUN)
		goto out;
	while (optind < argc)
		args[n++] = argv[optind++];
	if (p->max_args != BOOT_ANY_ARGS && n > p->max_args) {
		say(&r, "unexpected argument '%s'", args[p->max_args]);
		st = usage_error(&r);
		goto out;
	}
	for (int i = 0; i < n; i++)
		argv[1 + i] = args[i];
	if (1 + n < argc)
		argv[1 + n] = NULL;
	*nargs = n;
out:
	free(args);
	free(lo);
	free(shorts);
	return st;
}

int boot_config(const char *given, const char *default_path, boot_load_fn load, boot_parse_fn parse,
		void *cfg, char *err, size_t errlen)
{
	int r = load(cfg, given ? given : default_path, err, errlen);
	if (r == -ENOENT && !given)
		r = parse ? parse(cfg, "(defaults)", "", err, errlen) : 0;
	return r;
}
