/* Table tests for main()'s helpers (common/boot.c): options and the configuration file rule. */
#include "boot.h"
#include "check.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USAGE "usage: prog [-c FILE] [-k]\n"
#define HINT "(prog --help for usage)"

static struct state {
	const char *config, *level;
	bool keep, limit_given;
	unsigned count, limit;
	char calls[128]; /* the callback's record: "VAL;" per call, "-" for none */
} s;

static int cb(void *ctx, const struct boot_opt *o, const char *val, char *err, size_t errlen)
{
	struct state *st = ctx;
	if (val && !strcmp(val, "bad")) {
		snprintf(err, errlen, "--%s: bad value", o->name);
		return -EINVAL;
	}
	if (val && !strcmp(val, "gone")) {
		snprintf(err, errlen, "gone: no such file");
		return -ENOENT;
	}
	size_t n = strlen(st->calls);
	snprintf(st->calls + n, sizeof(st->calls) - n, "%s%s;", (const char *)o->data,
		 val ? val : "-");
	return 0;
}

static const struct boot_opt opts[] = {{"config", 'c', true, .str = &s.config},
				       {"keep", 'k', false, .flag = &s.keep},
				       {"count", 'n', true, .uint = &s.count},
				       {"level", 'l', true, .str = &s.level},
				       {"limit", 0, true, .flag = &s.limit_given, .uint = &s.limit},
				       {"value", 0, true, .fn = cb, .data = "v="},
				       {"verbose", 0, false, .fn = cb, .data = "verbose"},
				       {0}};

enum { PLAIN, HINTED, NOVERSION, STOP, ANY };

#define R BOOT_RUN
/* clang-format off */
static const struct {
	const char *argv[8]; /* after argv[0] */
	int mode;	     /* PLAIN: max_args 1, usage after errors; HINTED: a cmd and the hint */
	int status;	     /* BOOT_RUN (R) or the exit status */
	const char *args;    /* the positional arguments, joined by spaces */
	const char *config, *level;
	bool keep;
	unsigned count;
	const char *calls;
	const char *out, *err; /* substrings of stdout, stderr ("" nothing at all) */
} cases[] = {
	/* options parsed */
	{{NULL},                                  PLAIN, R, "", NULL, NULL, false, 0, "", "", ""},
	{{"-c", "f.conf", "-k"},                  PLAIN, R, "", "f.conf", NULL, true, 0, "", "", ""},
	{{"--config=f.conf", "--keep"},           PLAIN, R, "", "f.conf", NULL, true, 0, "", "", ""},
	{{"-kcf.conf", "-n", "7"},                PLAIN, R, "", "f.conf", NULL, true, 7, "", "", ""},
	{{"--conf", "a", "--config", "b"},        PLAIN, R, "", "b", NULL, false, 0, "", "", ""},
	{{"-l", "debug", "--level=info"},         PLAIN, R, "", NULL, "info", false, 0, "", "", ""},
	{{"--count", "4294967295"},               PLAIN, R, "", NULL, NULL, false, 4294967295u, "", "", ""},
	{{"--value", "x", "--verbose", "--value=y"}, PLAIN, R, "", NULL, NULL, false, 0, "v=x;verbose-;v=y;", "", ""},
	/* help and version */
	{{"--help"},              PLAIN, 0, NULL, NULL, NULL, false, 0, "", USAGE, ""},
	{{"-k", "-h", "--bogus"}, PLAIN, 0, NULL, NULL, NULL, false, 0, "", USAGE, ""},
	{{"-V"},                  PLAIN, 0, NULL, NULL, NULL, false, 0, "", "prog 1.2.3\n", ""},
	{{"--version"},           PLAIN, 0, NULL, NULL, NULL, false, 0, "", "prog 1.2.3\n", ""},
	{{"--version"},       NOVERSION, 2, NULL, NULL, NULL, false, 0, "", "", "unknown option '--version'"},
	{{"-V"},              NOVERSION, 2, NULL, NULL, NULL, false, 0, "", "", "unknown option '-V'"},
	/* unknown options */
	{{"--bogus"},    PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "prog: unknown option '--bogus'\n" USAGE},
	{{"--bogus=1"},  PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "unknown option '--bogus'"},
	{{"-x"},         PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "prog: unknown option '-x'\n"},
	{{"-x"},         HINTED, 2, NULL, NULL, NULL, false, 0, "", "", "prog: sub: unknown option '-x'\n" HINT "\n"},
	{{"--l", "1"},   PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "ambiguous option '--l'"},
	{{"--keep=yes"}, PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "option '--keep' takes no argument"},
	/* missing arguments and bad values */
	{{"-c"},                  PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "option '--config' needs an argument\n" USAGE},
	{{"--limit"},             PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "option '--limit' needs an argument"},
	{{"--count", "x"},        PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "--count must be a non-negative integer, not 'x'"},
	{{"--count", "-1"},       PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "not '-1'"},
	{{"--count", " 1"},       PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "not ' 1'"},
	{{"--count", ""},         PLAIN,  2, NULL, NULL, NULL, false, 0, "", "", "not ''"},
	{{"--count", "4294967296"}, PLAIN, 2, NULL, NULL, NULL, false, 0, "", "", "integer"},
	{{"--value", "bad"},      HINTED, 2, NULL, NULL, NULL, false, 0, "", "", "prog: sub: --value: bad value\n" HINT},
	{{"--value", "gone"},     PLAIN,  1, NULL, NULL, NULL, false, 0, "", "", "prog: gone: no such file\n"},
	/* positional arguments */
	{{"a"},                       PLAIN, R, "a", NULL, NULL, false, 0, "", "", ""},
	{{"a", "b"},                  PLAIN, 2, NULL, NULL, NULL, false, 0, "", "", "prog: unexpected argument 'b'\n" USAGE},
	{{"a", "-k", "b", "-c", "f"}, ANY,   R, "a b", "f", NULL, true, 0, "", "", ""},
	{{"a", "--", "-k", "b"},      ANY,   R, "a -k b", NULL, NULL, false, 0, "", "", ""},
	{{"-", "-k"},                 ANY,   R, "-", NULL, NULL, true, 0, "", "", ""},
	{{"-k", "cmd", "-c", "f", "x"}, STOP, R, "cmd -c f x", NULL, NULL, true, 0, "", "", ""},
	{{"-k", "--", "-c"},          STOP,  R, "-c", NULL, NULL, true, 0, "", "", ""},
	{{"cmd", "--help"},           STOP,  R, "cmd --help", NULL, NULL, false, 0, "", "", ""},
};
/* clang-format on */

static char *joined(int n, char **argv)
{
	static char buf[256];
	buf[0] = '\0';
	for (int i = 1; i <= n; i++) {
		size_t len = strlen(buf);
		snprintf(buf + len, sizeof(buf) - len, "%s%s", i > 1 ? " " : "", argv[i]);
	}
	return buf;
}

static bool has(const char *text, const char *want)
{
	return *want ? strstr(text, want) != NULL : *text == '\0';
}

static void test_parse(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&s, 0, sizeof(s));
		char *argv[10] = {"prog"};
		int argc = 1;
		while (argc <= 8 && cases[i].argv[argc - 1]) {
			argv[argc] = (char *)cases[i].argv[argc - 1];
			argc++;
		}
		char *out = NULL, *err = NULL;
		size_t outlen, errlen;
		FILE *fo = open_memstream(&out, &outlen), *fe = open_memstream(&err, &errlen);
		int mode = cases[i].mode;
		const struct boot_prog p = {.name = "prog",
					    .cmd = mode == HINTED ? "sub" : NULL,
					    .usage = USAGE,
					    .hint = mode == HINTED ? HINT : NULL,
					    .version = mode == NOVERSION ? NULL : "1.2.3",
					    .opts = opts,
					    .stop_at_arg = mode == STOP,
					    .max_args =
						mode == STOP || mode == ANY ? BOOT_ANY_ARGS : 1,
					    .ctx = &s,
					    .out = fo,
					    .err = fe};
		int n = -1, st = boot_parse(&p, argc, argv, &n);
		fclose(fo);
		fclose(fe);
		CHECK_MSG(st == cases[i].status, "case %zu: status %d, want %d", i, st,
			  cases[i].status);
		CHECK_MSG(has(out, cases[i].out), "case %zu: stdout '%s'", i, out);
		CHECK_MSG(has(err, cases[i].err), "case %zu: stderr '%s'", i, err);
		if (st == BOOT_RUN) {
			CHECK_MSG(!strcmp(joined(n, argv), cases[i].args), "case %zu: args '%s'", i,
				  joined(n, argv));
			CHECK_MSG(check_streq(argv[0], "prog"), "case %zu: argv[0]", i);
			CHECK_MSG(n + 1 == argc || argv[n + 1] == NULL, "case %zu: argv[n+1]", i);
			CHECK_MSG(cases[i].config ? check_streq(s.config, cases[i].config)
						  : s.config == NULL,
				  "case %zu: config '%s'", i, check_s(s.config));
			CHECK_MSG(cases[i].level ? check_streq(s.level, cases[i].level)
						 : s.level == NULL,
				  "case %zu: level '%s'", i, check_s(s.level));
			CHECK_MSG(s.keep == cases[i].keep, "case %zu: keep", i);
			CHECK_MSG(s.count == cases[i].count, "case %zu: count %u", i, s.count);
			CHECK_MSG(!strcmp(s.calls, cases[i].calls), "case %zu: calls '%s'", i,
				  s.calls);
		}
		free(out);
		free(err);
	}

	/* --limit: flag and number together; and parsing again starts afresh */
	for (int round = 0; round < 2; round++) {
		memset(&s, 0, sizeof(s));
		char *argv[] = {"prog", "x", "--limit", "9", NULL};
		const struct boot_prog p = {
		    .name = "prog", .usage = USAGE, .opts = opts, .max_args = 1, .ctx = &s};
		int n = 0;
		CHECK(boot_parse(&p, 4, argv, &n) == BOOT_RUN);
		CHECK(n == 1 && check_streq(argv[1], "x"));
		CHECK(s.limit_given && s.limit == 9);
	}

	/* POSIXLY_CORRECT does not stop options at the first argument */
	setenv("POSIXLY_CORRECT", "1", 1);
	memset(&s, 0, sizeof(s));
	char *argv[] = {"prog", "x", "-k", NULL};
	const struct boot_prog p = {.name = "prog", .usage = USAGE, .opts = opts, .max_args = 1};
	int n = 0;
	CHECK(boot_parse(&p, 3, argv, &n) == BOOT_RUN);
	CHECK(n == 1 && s.keep);
	unsetenv("POSIXLY_CORRECT");

	/* a table without options: only help (and version) */
	char *argv2[] = {"prog", "--help", NULL};
	FILE *devnull = fopen("/dev/null", "w");
	const struct boot_prog bare = {.name = "prog", .usage = USAGE, .out = devnull};
	CHECK(boot_parse(&bare, 2, argv2, &n) == 0);
	fclose(devnull);
}

/* The configuration: a file's first line, or "bad" is a parse error. */
struct cfg {
	char value[64];
	char parsed_as[64];
	int loads, parses;
};

static int cfg_parse(void *c, const char *name, const char *text, char *err, size_t errlen)
{
	struct cfg *cfg = c;
	cfg->parses++;
	snprintf(cfg->parsed_as, sizeof(cfg->parsed_as), "%s", name);
	if (!strcmp(text, "bad")) {
		snprintf(err, errlen, "%s: bad", name);
		return -EINVAL;
	}
	if (*text)
		snprintf(cfg->value, sizeof(cfg->value), "%s", text);
	return 0;
}

static int cfg_load(void *c, const char *path, char *err, size_t errlen)
{
	struct cfg *cfg = c;
	cfg->loads++;
	char text[64] = "";
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	if (!fgets(text, sizeof(text), f))
		text[0] = '\0';
	fclose(f);
	text[strcspn(text, "\n")] = '\0';
	return cfg_parse(c, path, text, err, errlen);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_config(void)
{
	char dir[] = "/tmp/test_boot.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char good[128], bad[128], missing[128];
	snprintf(good, sizeof(good), "%s/good.conf", dir);
	snprintf(bad, sizeof(bad), "%s/bad.conf", dir);
	snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
	write_file(good, "from-file\n");
	write_file(bad, "bad\n");

	static const struct {
		int given;  /* 0 none, else the path below */
		int dflt;   /* the default path */
		bool parse; /* a parser for the defaults */
		int result; /* 0 or the errno */
		const char *value, *parsed_as;
		int parses;
	} cc[] = {
	    /* the default file missing: built-in defaults, parsed as "(defaults)" */
	    {0, 3, true, 0, "", "(defaults)", 1},
	    {0, 3, false, 0, "", "", 0},
	    /* a given file missing: an error, whatever the default */
	    {3, 1, true, ENOENT, "", "", 0},
	    {3, 3, true, ENOENT, "", "", 0},
	    /* files that are there */
	    {1, 3, true, 0, "from-file", "good", 1},
	    {0, 1, true, 0, "from-file", "good", 1},
	    {2, 1, true, EINVAL, "", "bad", 1},
	    {0, 2, true, EINVAL, "", "bad", 1},
	};
	const char *paths[] = {NULL, good, bad, missing};
	for (size_t i = 0; i < sizeof(cc) / sizeof(cc[0]); i++) {
		struct cfg cfg = {0};
		char err[256] = "";
		int r = boot_config(paths[cc[i].given], paths[cc[i].dflt], cfg_load,
				    cc[i].parse ? cfg_parse : NULL, &cfg, err, sizeof(err));
		CHECK_MSG(r == -cc[i].result, "config case %zu: %d", i, r);
		CHECK_MSG(cfg.loads == 1, "config case %zu: loads %d", i, cfg.loads);
		CHECK_MSG(cfg.parses == cc[i].parses, "config case %zu: parses %d", i, cfg.parses);
		CHECK_MSG(!strcmp(cfg.value, cc[i].value), "config case %zu: '%s'", i, cfg.value);
		CHECK_MSG(strstr(cfg.parsed_as, cc[i].parsed_as) != NULL,
			  "config case %zu: as '%s'", i, cfg.parsed_as);
		if (cc[i].result)
			CHECK_MSG(err[0] != '\0', "config case %zu: no message", i);
		if (cc[i].result == ENOENT)
			CHECK_MSG(strstr(err, "missing.conf") != NULL, "config case %zu: '%s'", i,
				  err);
	}
	unlink(good);
	unlink(bad);
	rmdir(dir);
}

/* Durations as nestorctl's --in takes them: a number, then s, m or h. */
static void test_duration(void)
{
	static const struct {
		const char *in;
		unsigned max;
		int want;
		unsigned seconds;
	} durations[] = {
	    {"300", 1000, 0, 300},
	    {"300s", 1000, 0, 300},
	    {"5m", 1000, 0, 300},
	    {"2h", 7200, 0, 7200},
	    {"0", 10, 0, 0},
	    {"0m", 10, 0, 0},
	    {"2h", 7199, -EINVAL, 0},
	    {"17m", 1000, -EINVAL, 0},
	    {"", 10, -EINVAL, 0},
	    {"m", 10, -EINVAL, 0},
	    {"5x", 1000, -EINVAL, 0},
	    {"5mm", 1000, -EINVAL, 0},
	    {"-5", 1000, -EINVAL, 0},
	    {" 5", 1000, -EINVAL, 0},
	    {"5 m", 1000, -EINVAL, 0},
	    {"99999999999999999999", 1000, -EINVAL, 0},
	    {"4294967296h", 4294967295u, -EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
		unsigned got = 12345;
		int r = boot_duration(durations[i].in, durations[i].max, &got);
		CHECK_MSG(r == durations[i].want, "duration '%s': %d, want %d", durations[i].in, r,
			  durations[i].want);
		if (r == 0)
			CHECK_MSG(got == durations[i].seconds, "duration '%s': %u s, want %u",
				  durations[i].in, got, durations[i].seconds);
		else
			CHECK_MSG(got == 12345, "duration '%s': written on failure",
				  durations[i].in);
	}
}

int main(void)
{
	test_duration();
	test_parse();
	test_config();
	return check_done("test_boot");
}
