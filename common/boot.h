/*
 * The programs' start: command-line options from a table (getopt_long
 * underneath, with --help, --version and the usage errors handled the same
 * way everywhere) and the configuration file rule "a missing default file
 * means built-in defaults, a missing given file is an error".
 *
 * These are main()'s helpers: boot_parse prints help, version and usage
 * errors itself and returns the status main() exits with; nothing here
 * exits. Not thread-safe (getopt's globals); call only from main().
 */
#ifndef NESTOR_BOOT_H
#define NESTOR_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct boot_opt;

/*
 * Called for an option with a callback: VAL is its argument (NULL for an
 * option without one), CTX the program's boot_prog.ctx. Returns 0; -EINVAL
 * with ERR filled for a bad value (a usage error: exit status 2); another
 * negative errno with ERR filled when the value cannot be used (a file
 * that cannot be read: exit status 1).
 */
typedef int (*boot_opt_fn)(void *ctx, const struct boot_opt *o, const char *val, char *err,
			   size_t errlen);

/*
 * One option: --NAME, and -SHORT_NAME when not 0. What it does is given by
 * the pointers that are set (any combination, applied in this order):
 *   flag  set true when the option is given (an option without argument
 *         usually has only this)
 *   str   the argument (borrowed from argv; options with an argument)
 *   uint  the argument as a non-negative decimal integer, else a usage
 *         error (options with an argument)
 *   fn    called with the argument (and data, for the callback's use)
 * -h/--help and -V/--version are built in: tables do not use 'h' or 'V'.
 * A table ends with an entry whose name is NULL.
 */
struct boot_opt {
	const char *name;
	int short_name;
	bool has_arg;
	bool *flag;
	const char **str;
	unsigned *uint;
	boot_opt_fn fn;
	const void *data;
};

#define BOOT_ANY_ARGS (-1)

struct boot_prog {
	const char *name;    /* messages start "NAME: "; --version prints "NAME VERSION" */
	const char *cmd;     /* a subcommand: messages start "NAME: CMD: " (NULL none) */
	const char *usage;   /* -h/--help prints it to stdout */
	const char *hint;    /* after a usage error, this line instead of usage (NULL: usage) */
	const char *version; /* -V/--version; NULL: the program has none */
	const struct boot_opt *opts;
	bool stop_at_arg; /* options end at the first argument (a command and its own follow) */
	int max_args;	  /* positional arguments allowed, or BOOT_ANY_ARGS */
	void *ctx;	  /* for the callbacks */
	FILE *out, *err;  /* NULL: stdout and stderr */
};

/* boot_parse's "go on": any other value is the status main() returns. */
#define BOOT_RUN (-1)

/*
 * Parse ARGV's options by P. Returns BOOT_RUN when the program should go
 * on: then the positional arguments, in order, are ARGV[1..*NARGS] (ARGV
 * is rearranged; ARGV[0] is kept). Otherwise it has printed what was asked
 * or what was wrong and returns the exit status: 0 after --help or
 * --version; 2 after a usage error (an unknown option, a missing or
 * unwanted argument, a bad value, too many positional arguments: a message
 * and P's usage or hint on stderr); 1 after a value that cannot be used or
 * no memory (a message).
 */
int boot_parse(const struct boot_prog *p, int argc, char **argv, int *nargs);

/* S as a non-negative decimal integer, what boot_opt.uint takes. Returns 0 or -EINVAL. */
int boot_uint(const char *s, unsigned *out);
/*
 * S as a duration in seconds: a decimal number with an optional unit, s
 * (seconds, the default), m (minutes) or h (hours): "300", "300s", "5m",
 * "2h". Returns 0, or -EINVAL (malformed, or more than MAX seconds).
 */
int boot_duration(const char *s, unsigned max, unsigned *out);

/* A configuration loader: 0, -ENOENT when PATH does not exist, or another negative errno. */
typedef int (*boot_load_fn)(void *cfg, const char *path, char *err, size_t errlen);
/* A configuration parser for text in memory, named NAME in messages. */
typedef int (*boot_parse_fn)(void *cfg, const char *name, const char *text, char *err,
			     size_t errlen);

/*
 * Load the configuration into CFG (holding the defaults already): from
 * GIVEN if not NULL (a missing file is an error), else from DEFAULT_PATH,
 * where a missing file means the built-in defaults: PARSE (if not NULL)
 * then runs on empty text named "(defaults)", so that what it derives and
 * checks is done the same way. Returns 0 or a negative errno with ERR
 * filled.
 */
int boot_config(const char *given, const char *default_path, boot_load_fn load, boot_parse_fn parse,
		void *cfg, char *err, size_t errlen);

#endif
