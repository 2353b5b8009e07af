/*
 * nestorctl: the admin CLI. Speaks nestord's HTTP/JSON API on its UNIX
 * socket; prints tables for people and JSON (--json) for scripts.
 * Exit codes: 0 ok, 1 the broker refused or failed, 2 usage error,
 * 3 cannot reach nestord.
 */
#include "nestor-config.h"
#include "boot.h"
#include "fleet_schema.h"
#include "httpc.h"
#include "records.h"

#include <errno.h>
#include <stdbool.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_SOCKET "/run/nestor/api.sock"

static const char usage[] =
    "usage: nestorctl [--socket PATH] [--json] COMMAND ...\n"
    "\n"
    "Commands:\n"
    "  status                          caps, usage, queue and accelerator\n"
    "  accel                           the accelerator decision: KVM or TCG, why, since when\n"
    "  accel probe                     probe KVM again now (waits; guests keep running)\n"
    "  caps show                       host caps\n"
    "  caps set [--max-sessions N] [--max-starting N] [--max-memory-mb N]\n"
    "           [--user-max-sessions N]   change host caps (0 = unlimited)\n"
    "  users caps                      per-user overrides\n"
    "  users caps set USER --max-sessions N|default\n"
    "  sessions [--ended N | --fleet]  live sessions (or the N last ended, or every live\n"
    "                                  session of the fleet, with its host)\n"
    "  session show ID                 one session\n"
    "  session end ID [--in DURATION] [--message TEXT]\n"
    "                                  end a session now, or announce it to the user\n"
    "                                  and end it after DURATION (300, 300s, 5m, 1h)\n"
    "  images                          registered images\n"
    "  images add NAME --base FILE.qcow2 --memory MB [--kernel F --initrd F --append S]\n"
    "             [--machine TYPE] [--ready serial:MARKER|tcp:PORT|running]\n"
    "             [--backend console|rdp] [--rdp-port N] [--warm-pool N]\n"
    "             [--max-sessions N] [--keepalive S] [--idle S] [--max-lifetime S]\n"
    "             [--start-timeout S] [--queue-wait S] [RDP POLICY]\n"
    "                                  register (checked, hashed, made read-only)\n"
    "  images show NAME                one image, its template and warm pool\n"
    "  images template NAME            build (or rebuild) NAME's template; waits\n"
    "  images set NAME [--warm-pool N] [--max-sessions N] [RDP POLICY]\n"
    "  images remove NAME\n"
    "  apps                            published apps\n"
    "  apps add ALIAS --image NAME --title TEXT [--command TEXT]\n"
    "  apps remove ALIAS\n"
    "  audit [--limit N]               the audit log, newest first\n"
    "  hosts                           the fleet's hosts: caps, usage, queue, heartbeat\n"
    "  hosts drain|undrain NAME        stop (or resume) new sessions on host NAME; its\n"
    "                                  sessions go on and reconnects still reach them\n"
    "  fleet init --db URL             create or upgrade the fleet's PostgreSQL schema\n"
    "                                  (libpq connection string or postgresql:// URL)\n"
    "  fleet import                    write this host's live sessions into the fleet now\n"
    "                                  (after adding [fleet] db to a single host)\n"
    "\n"
    "RDP POLICY (images with --backend rdp; the guest's own RDP server):\n"
    "  --rdp-security rdp|tls|any     what the guest's server speaks (XP: rdp; default)\n"
    "  --guest-login image|user       sign in to the guest with the account below (default)\n"
    "                                 or with the user's own name and password\n"
    "  --guest-user NAME --guest-domain NAME --guest-password-file FILE\n"
    "  --clipboard on|off --drive on|off   relay these channels (default off)\n"
    "  --clipboard-formats text|all   what the clipboard carries (default text: no files,\n"
    "                                 images or rich formats)\n"
    "  --clipboard-max-bytes N        largest clipboard content, up to 8388600 (default 0:\n"
    "                                 that)\n"
    "  --remoteapp on|off             the guest serves RemoteApp windows itself\n"
    "\n"
    "Options:\n"
    "  -s, --socket PATH   nestord's API socket (default $NESTOR_SOCKET or " DEFAULT_SOCKET ")\n"
    "  -j, --json          print the API's JSON instead of a table\n"
    "  -V, --version       print the version and exit\n"
    "  -h, --help          this text; COMMAND --help for one command\n"
    "\n"
    "Exit status: 0 ok, 1 refused or failed, 2 usage error, 3 nestord unreachable.\n";

#define HINT "(nestorctl --help for usage)"

static const char caps_set_help[] =
    "usage: nestorctl caps set [--max-sessions N] [--max-starting N]\n"
    "                          [--max-memory-mb N] [--user-max-sessions N]\n"
    "0 means unlimited. Lowering a cap never ends running sessions;\n"
    "raising one admits queued users at once.\n";
static const char sessions_help[] =
    "usage: nestorctl sessions [--ended N | --fleet]\nLive sessions, oldest first; with --ended "
    "the N most recently ended;\nwith --fleet every live session of the fleet and its host.\n";

static const char *sock;
static bool json_out;

/* A usage error found after the options: MSG on stderr. Returns the exit status (2). */
static int bad_usage(const char *msg)
{
	fprintf(stderr, "nestorctl: %s\n" HINT "\n", msg);
	return 2;
}

/*
 * Parse one command's options and arguments: ARGV[0] is the command's last
 * word, CMD its name in messages, HELP what --help prints, CTX for the
 * options' callbacks. Returns BOOT_RUN with the arguments in
 * ARGV[1..*NARGS], or the exit status (boot_parse).
 */
static int parse_cmd(const char *cmd, const char *help, const struct boot_opt *opts, int max_args,
		     void *ctx, int argc, char **argv, int *nargs)
{
	const struct boot_prog p = {.name = "nestorctl",
				    .cmd = cmd,
				    .usage = help,
				    .hint = HINT,
				    .opts = opts,
				    .max_args = max_args,
				    .ctx = ctx};
	return boot_parse(&p, argc, argv, nargs);
}

static const char *esc(const char *s);

/* Call the API. Prints errors; returns the parsed body (new reference) or exits. */
static json_object *call(const char *method, const char *path, json_object *body)
{
	char *resp = NULL;
	const char *b = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;
	int st = httpc_request(sock, method, path, b, 70000, &resp);
	json_object_put(body);
	if (st < 0) {
		fprintf(stderr, "nestorctl: cannot reach nestord at %s: %s\n", sock, strerror(-st));
		exit(3);
	}
	json_object *o = json_tokener_parse(resp ? resp : "");
	if (st >= 300) {
		json_object *e;
		const char *msg = o && json_object_object_get_ex(o, "error", &e)
				      ? json_object_get_string(e)
				      : resp;
		fprintf(stderr, "nestorctl: %s (HTTP %d)\n", msg ? esc(msg) : "error", st);
		free(resp);
		json_object_put(o);
		exit(1);
	}
	free(resp);
	if (!o) {
		fprintf(stderr, "nestorctl: nestord sent a malformed reply\n");
		exit(1);
	}
	return o;
}

/*
 * S for a terminal: control characters (and backslashes) escaped as \xNN,
 * so what a client or a guest put in a field (a client name, a reason)
 * cannot drive the admin's terminal. In one of a few rotating buffers.
 */
static const char *esc(const char *s)
{
	static char bufs[16][2048];
	static unsigned next;
	char *out = bufs[next++ % 16];
	size_t n = 0;
	for (const unsigned char *c = (const unsigned char *)(s ? s : ""); *c && n + 5 < 2048;
	     c++) {
		if (*c < 0x20 || *c == 0x7f || *c == '\\')
			n += (size_t)snprintf(out + n, 2048 - n, "\\x%02x", *c);
		else
			out[n++] = (char)*c;
	}
	out[n] = '\0';
	return out;
}

static const char *s_(json_object *o, const char *k)
{
	json_object *v;
	if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
		return "-";
	return esc(json_object_get_string(v));
}

static long long i_(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static void print_json(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
}

static const char *when(long long t, char *buf, size_t len)
{
	if (!t)
		return "-";
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

/*
 * The options made from records.h's field lists: each field with a cli name
 * is --CLI, setting KEY in the request body. Numbers of every kind are
 * taken as non-negative integers, BOOL as on|off (sent as 1|0).
 */
enum cli_kind { CLI_TEXT, CLI_NUM, CLI_BOOL };
#define CLI_K_TEXT CLI_TEXT
#define CLI_K_UINT CLI_NUM
#define CLI_K_INT CLI_NUM
#define CLI_K_I64 CLI_NUM
#define CLI_K_U64 CLI_NUM
#define CLI_K_BOOL CLI_BOOL
/* records.h's api column: NO never given, SET changeable later (images set) */
enum { CLI_API_NO, CLI_API_OPT, CLI_API_REQ, CLI_API_SET };

struct cli_field {
	const char *cli; /* the --option, NULL none */
	const char *key; /* in the request body */
	enum cli_kind kind;
	int api;
	unsigned flags; /* REC_PATH made absolute, REC_FILE read from the file */
};

#define CLI_FIELD(m, kind, size, api, max, dflt, cli, flags)                                       \
	{cli, #m, CLI_K_##kind, CLI_API_##api, flags},
#define CLI_RDP_FIELD(m, kind, size, api, max, dflt, cli, flags)                                   \
	{cli, DB_RDP_KEY_##m, CLI_K_##kind, CLI_API_##api, flags},
#define CLI_CAP_FIELD(key, max, cli) {cli, #key, CLI_NUM, CLI_API_SET, 0},

static const struct cli_field image_fields[] = {DB_IMAGE_FIELDS(CLI_FIELD)
						    DB_RDP_FIELDS(CLI_RDP_FIELD)};
static const struct cli_field app_fields[] = {DB_APP_FIELDS(CLI_FIELD)};
static const struct cli_field cap_fields[] = {DB_CAP_FIELDS(CLI_CAP_FIELD)};

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A failed call's errno as a "cannot use the value" error (never -EINVAL: that is usage). */
static int use_error(int e, const char *val, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: %s", val, strerror(e));
	return e && e != EINVAL ? -e : -EIO;
}

/* The first line of the file VAL: from a file, never the command line (ps would show it). */
static int secret_file(const char *val, json_object **out, char *err, size_t errlen)
{
	char line[256] = "";
	FILE *f = fopen(val, "r");
	if (!f)
		return use_error(errno, val, err, errlen);
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		snprintf(err, errlen, "%s: empty", val);
		return -ENODATA;
	}
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	*out = json_object_new_string(line);
	explicit_bzero(line, sizeof(line));
	return 0;
}

/* boot_opt_fn for a field option: CTX is the request body being built. */
static int field_opt(void *ctx, const struct boot_opt *o, const char *val, char *err, size_t errlen)
{
	const struct cli_field *f = o->data;
	json_object *v;
	unsigned u;
	if (f->kind == CLI_NUM) {
		if (boot_uint(val, &u) < 0) {
			snprintf(err, errlen, "--%s must be a non-negative integer, not '%s'",
				 f->cli, val);
			return -EINVAL;
		}
		v = json_object_new_int64(u);
	} else if (f->kind == CLI_BOOL) {
		if (strcmp(val, "on") && strcmp(val, "off")) {
			snprintf(err, errlen, "--%s takes on or off", f->cli);
			return -EINVAL;
		}
		v = json_object_new_int(!strcmp(val, "on"));
	} else if (f->flags & REC_FILE) {
		int r = secret_file(val, &v, err, errlen);
		if (r < 0)
			return r;
	} else if ((f->flags & REC_PATH) && val[0] != '/') {
		char *abs = realpath(val, NULL);
		if (!abs)
			return use_error(errno, val, err, errlen);
		v = json_object_new_string(abs);
		free(abs);
	} else {
		v = json_object_new_string(val);
	}
	json_object_object_add(ctx, f->key, v);
	return 0;
}

/*
 * The options of F[0..N) that the API takes (only the changeable ones if
 * SET_ONLY) into OPTS, which has room for N + 1.
 */
static void field_opts(const struct cli_field *f, size_t n, bool set_only, struct boot_opt *opts)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (f[i].cli && f[i].api != CLI_API_NO && (!set_only || f[i].api == CLI_API_SET))
			opts[k++] = (struct boot_opt){
			    .name = f[i].cli, .has_arg = true, .fn = field_opt, .data = &f[i]};
	opts[k] = (struct boot_opt){0};
}

/* A new body: KEY = VAL first, then GIVEN's members in their order. Releases GIVEN. */
static json_object *body_with(const char *key, const char *val, json_object *given)
{
	json_object *body = json_object_new_object();
	json_object_object_add(body, key, json_object_new_string(val));
	json_object_object_foreach(given, k, v) json_object_object_add(body, k, json_object_get(v));
	json_object_put(given);
	return body;
}

static void cap_line(const char *name, long long v)
{
	if (v)
		printf("%-20s %lld\n", name, v);
	else
		printf("%-20s unlimited\n", name);
}

/* "accel tcg: why (probe, 2 h ago, proven)" */
static void accel_line(json_object *a)
{
	long long age = i_(a, "age_s");
	char ago[32];
	if (age >= 7200)
		snprintf(ago, sizeof(ago), "%lld h ago", age / 3600);
	else if (age >= 120)
		snprintf(ago, sizeof(ago), "%lld min ago", age / 60);
	else
		snprintf(ago, sizeof(ago), "%lld s ago", age);
	printf("accelerator          %s: %s (%s, decided %s%s%s)\n", s_(a, "accel"),
	       s_(a, "reason"), s_(a, "source"), ago, i_(a, "proven") ? ", proven" : "",
	       i_(a, "probing") ? "; probing again now" : "");
}

static int show_status(void)
{
	json_object *o = call("GET", "/v1/status", NULL);
	if (json_out) {
		print_json(o);
	} else {
		json_object *c, *u;
		json_object_object_get_ex(o, "caps", &c);
		json_object_object_get_ex(o, "usage", &u);
		cap_line("max_sessions", i_(c, "max_sessions"));
		printf("%-20s %lld%s\n", "max_starting", i_(c, "max_starting"),
		       i_(c, "max_starting_auto") ? " (auto)" : "");
		if (!i_(c, "max_starting"))
			printf("%-20s (0 = unlimited)\n", "");
		cap_line("max_memory_mb", i_(c, "max_memory_mb"));
		cap_line("user_max_sessions", i_(c, "user_max_sessions"));
		printf("\nsessions %lld, starting %lld, memory %lld MiB, queued %lld; accel %s\n",
		       i_(u, "sessions"), i_(u, "starting"), i_(u, "memory_mb"), i_(u, "queued"),
		       s_(o, "accel"));
		json_object *a;
		if (json_object_object_get_ex(o, "accelerator", &a))
			accel_line(a);
	}
	json_object_put(o);
	return 0;
}

static int cmd_status(int argc, char **argv)
{
	int n, st = parse_cmd("status", usage, NULL, 0, NULL, argc, argv, &n);
	return st != BOOT_RUN ? st : show_status();
}

static int cmd_accel(int argc, char **argv)
{
	int n, st = parse_cmd("accel", usage, NULL, 1, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (n == 0) {
		json_object *o = call("GET", "/v1/accel", NULL);
		if (json_out)
			print_json(o);
		else
			accel_line(o);
		json_object_put(o);
		return 0;
	}
	if (!strcmp(argv[1], "probe")) {
		json_object *o = call("POST", "/v1/accel/probe", NULL), *a;
		if (json_out)
			print_json(o);
		else if (json_object_object_get_ex(o, "accelerator", &a))
			accel_line(a);
		json_object_put(o);
		return 0;
	}
	return bad_usage("accel [probe]");
}

static int cmd_caps(int argc, char **argv)
{
	int n, st;
	if (argc >= 2 && !strcmp(argv[1], "set")) {
		struct boot_opt opts[LEN(cap_fields) + 1];
		field_opts(cap_fields, LEN(cap_fields), false, opts);
		json_object *body = json_object_new_object();
		st = parse_cmd("caps set", caps_set_help, opts, 0, body, argc - 1, argv + 1, &n);
		if (st == BOOT_RUN && json_object_object_length(body) == 0)
			st = bad_usage("caps set: give at least one cap");
		if (st != BOOT_RUN) {
			json_object_put(body);
			return st;
		}
		json_object_put(call("PUT", "/v1/caps", body));
		return show_status();
	}
	st = parse_cmd("caps", usage, NULL, 1, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (n == 1 && strcmp(argv[1], "show") != 0)
		return bad_usage("caps: use 'caps show' or 'caps set'");
	return show_status();
}

/* boot_opt_fn for users caps set --max-sessions N|default: CTX is the body. */
static int user_max_sessions(void *ctx, const struct boot_opt *o, const char *val, char *err,
			     size_t errlen)
{
	unsigned u;
	if (!strcmp(val, "default")) {
		json_object_object_add(ctx, "max_sessions", NULL);
		return 0;
	}
	if (boot_uint(val, &u) < 0) {
		snprintf(err, errlen,
			 "--max-sessions must be a non-negative integer or default, "
			 "not '%s'",
			 val);
		return -EINVAL;
	}
	json_object_object_add(ctx, "max_sessions", json_object_new_int64(u));
	return 0;
}

static int cmd_users(int argc, char **argv)
{
	int n, st;
	if (argc >= 3 && !strcmp(argv[1], "caps") && !strcmp(argv[2], "set")) {
		bool given = false;
		const struct boot_opt opts[] = {
		    {"max-sessions", 0, true, .flag = &given, .fn = user_max_sessions}, {0}};
		json_object *body = json_object_new_object();
		st = parse_cmd("users caps set", usage, opts, 1, body, argc - 2, argv + 2, &n);
		if (st == BOOT_RUN && (n != 1 || !given))
			st = bad_usage(
			    "usage: nestorctl users caps set USER --max-sessions N|default");
		if (st != BOOT_RUN) {
			json_object_put(body);
			return st;
		}
		const char *user = argv[3];
		char path[256];
		snprintf(path, sizeof(path), "/v1/users/%s/caps", user);
		json_object *o = call("PUT", path, body);
		if (json_out)
			print_json(o);
		else
			printf("%s: max_sessions %s\n", user, s_(o, "max_sessions"));
		json_object_put(o);
		return 0;
	}
	st = parse_cmd("users", usage, NULL, 1, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (n != 1 || strcmp(argv[1], "caps") != 0)
		return bad_usage(
		    "users: use 'users caps' or 'users caps set USER --max-sessions N'");
	json_object *o = call("GET", "/v1/users/caps", NULL);
	if (json_out) {
		print_json(o);
	} else {
		printf("%-24s %s\n", "USER", "MAX_SESSIONS");
		for (size_t i = 0; i < json_object_array_length(o); i++) {
			json_object *r = json_object_array_get_idx(o, i);
			printf("%-24s %s\n", s_(r, "user"),
			       i_(r, "max_sessions") ? s_(r, "max_sessions") : "unlimited");
		}
	}
	json_object_put(o);
	return 0;
}

static void session_row(json_object *r)
{
	char state[64];
	long long pos = i_(r, "position");
	if (pos)
		snprintf(state, sizeof(state), "%s #%lld", s_(r, "state"), pos);
	else
		snprintf(state, sizeof(state), "%s", s_(r, "state"));
	char t[32];
	printf("%-17s %-14s %-14s %-16s %-9s %-7s %s\n", s_(r, "id"), s_(r, "user"), s_(r, "app"),
	       state, s_(r, "start_path"), s_(r, "pid"), when(i_(r, "created"), t, sizeof(t)));
}

static int cmd_sessions(int argc, char **argv)
{
	unsigned ended = 0;
	bool given = false, fleet = false;
	const struct boot_opt opts[] = {{"ended", 0, true, .flag = &given, .uint = &ended},
					{"fleet", 0, false, .flag = &fleet},
					{0}};
	int n, st = parse_cmd("sessions", sessions_help, opts, 0, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (fleet && given)
		return bad_usage("sessions: --ended or --fleet, not both");
	if (fleet) {
		json_object *o = call("GET", "/v1/fleet/sessions", NULL);
		if (json_out) {
			print_json(o);
		} else {
			char t[32];
			printf("%-17s %-14s %-14s %-13s %-16s %-16s %s\n", "ID", "USER", "APP",
			       "STATE", "HOST", "ENTRY", "CREATED");
			for (size_t i = 0; i < json_object_array_length(o); i++) {
				json_object *r = json_object_array_get_idx(o, i);
				printf("%-17s %-14s %-14s %-13s %-16s %-16s %s\n", s_(r, "id"),
				       s_(r, "user"), s_(r, "app"), s_(r, "state"),
				       *s_(r, "host") ? s_(r, "host") : "(queued)", s_(r, "entry"),
				       when(i_(r, "created"), t, sizeof(t)));
			}
		}
		json_object_put(o);
		return 0;
	}
	char path[64] = "/v1/sessions";
	if (given)
		snprintf(path, sizeof(path), "/v1/sessions?ended=%u", ended);
	json_object *o = call("GET", path, NULL);
	if (json_out) {
		print_json(o);
	} else {
		printf("%-17s %-14s %-14s %-16s %-9s %-7s %s\n", "ID", "USER", "APP", "STATE",
		       "START", "PID", "CREATED");
		for (size_t i = 0; i < json_object_array_length(o); i++) {
			json_object *r = json_object_array_get_idx(o, i);
			session_row(r);
			if (given)
				printf("  ended: %s\n", s_(r, "end_reason"));
		}
	}
	json_object_put(o);
	return 0;
}

/* TEXT percent-encoded for a query string into OUT (LEN >= 3 * strlen + 1). */
static void query_escape(const char *text, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t k = 0;
	for (const unsigned char *c = (const unsigned char *)text; *c && k + 4 <= len; c++) {
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		    (*c >= '0' && *c <= '9') || strchr("-._~", *c)) {
			out[k++] = (char)*c;
		} else {
			out[k++] = '%';
			out[k++] = hex[*c >> 4];
			out[k++] = hex[*c & 15];
		}
	}
	out[k] = '\0';
}

/* --in: a duration (boot_duration), up to a week. */
static int opt_in(void *ctx, const struct boot_opt *o, const char *val, char *err, size_t errlen)
{
	if (boot_duration(val, 7 * 24 * 3600, ctx) < 0) {
		snprintf(err, errlen,
			 "--in takes seconds or a duration like 300s, 5m, 1h (a week "
			 "at most)");
		return -EINVAL;
	}
	return 0;
}

static int cmd_session(int argc, char **argv)
{
	unsigned in = 0;
	const char *message = NULL;
	const struct boot_opt opts[] = {
	    {"in", 0, true, .fn = opt_in}, {"message", 0, true, .str = &message}, {0}};
	int n, st = parse_cmd("session", usage, opts, 2, &in, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (n != 2 || (strcmp(argv[1], "show") && strcmp(argv[1], "end")))
		return bad_usage("usage: nestorctl session show|end ID");
	bool end = !strcmp(argv[1], "end");
	if (!end && (in || message))
		return bad_usage("session show: --in and --message are for session end");
	if (message && strlen(message) > 200)
		return bad_usage("session end: --message has at most 200 bytes");
	char path[128 + 3 * 200 + 32], msg[3 * 200 + 1] = "";
	if (message)
		query_escape(message, msg, sizeof(msg));
	snprintf(path, sizeof(path), "/v1/sessions/%s", argv[2]);
	if (end && (in || message))
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "?in=%u%s%s", in,
			 message ? "&message=" : "", msg);
	json_object *o = call(end ? "DELETE" : "GET", path, NULL);
	if (json_out) {
		print_json(o);
	} else {
		json_object_object_foreach(o, k, v)
		    printf("%-12s %s\n", k, esc(json_object_get_string(v)));
	}
	json_object_put(o);
	return 0;
}

/* images add NAME ... (SET false) or images set NAME ... (SET true); ARGV[0] is add or set. */
static int cmd_image_write(int argc, char **argv, bool set)
{
	struct boot_opt opts[LEN(image_fields) + 1];
	field_opts(image_fields, LEN(image_fields), set, opts);
	json_object *given = json_object_new_object();
	int n, st = parse_cmd(set ? "images set" : "images add", usage, opts, 1, given, argc, argv,
			      &n);
	if (st == BOOT_RUN && n != 1)
		st = bad_usage("usage: nestorctl images [add NAME ... | remove NAME]");
	if (st == BOOT_RUN && set && json_object_object_length(given) == 0)
		st = bad_usage("images set: give at least one option");
	if (st != BOOT_RUN) {
		json_object_put(given);
		return st;
	}
	const char *name = argv[1];
	char path[160];
	if (set) {
		snprintf(path, sizeof(path), "/v1/images/%s", name);
		json_object_put(call("PUT", path, given));
		printf("image %s updated\n", name);
		return 0;
	}
	json_object *res = call("POST", "/v1/images", body_with("name", name, given));
	if (json_out)
		print_json(res);
	else
		printf("%s\n", s_(res, "result"));
	json_object_put(res);
	return 0;
}

static int cmd_images(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "add") || !strcmp(argv[1], "set")))
		return cmd_image_write(argc - 1, argv + 1, !strcmp(argv[1], "set"));
	int n, st = parse_cmd("images", usage, NULL, 2, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (n == 0) {
		json_object *o = call("GET", "/v1/images", NULL);
		if (json_out) {
			print_json(o);
		} else {
			printf("%-16s %-7s %-7s %-20s %-5s %-9s %-9s %s\n", "NAME", "BACKEND",
			       "MEMORY", "READY", "MAX", "TEMPLATE", "WARM", "BASE");
			for (size_t i = 0; i < json_object_array_length(o); i++) {
				json_object *r = json_object_array_get_idx(o, i);
				char warm[32];
				snprintf(warm, sizeof(warm), "%lld/%lld", i_(r, "warm_ready"),
					 i_(r, "warm_pool"));
				printf("%-16s %-7s %-7s %-20s %-5s %-9s %-9s %s\n", s_(r, "name"),
				       s_(r, "backend"), s_(r, "memory_mb"),
				       !strcmp(s_(r, "backend"), "rdp") ? "rdp" : s_(r, "ready"),
				       i_(r, "max_sessions") ? s_(r, "max_sessions") : "-",
				       s_(r, "template"), warm, s_(r, "base"));
			}
		}
		json_object_put(o);
		return 0;
	}
	char path[160];
	if (n == 2)
		snprintf(path, sizeof(path), "/v1/images/%s", argv[2]);
	if (n == 2 && !strcmp(argv[1], "remove")) {
		json_object_put(call("DELETE", path, NULL));
		printf("image %s removed\n", argv[2]);
		return 0;
	}
	if (n == 2 && !strcmp(argv[1], "show")) {
		json_object *o = call("GET", path, NULL);
		if (json_out)
			print_json(o);
		else {
			json_object_object_foreach(o, k, v)
			    printf("%-20s %s\n", k, esc(json_object_get_string(v)));
		}
		json_object_put(o);
		return 0;
	}
	if (n == 2 && !strcmp(argv[1], "template")) {
		snprintf(path, sizeof(path), "/v1/images/%s/template", argv[2]);
		fprintf(stderr, "building the template of %s (boots the image once)...\n", argv[2]);
		json_object *o = call("POST", path, NULL);
		if (json_out)
			print_json(o);
		else
			printf("%s\n", s_(o, "result"));
		json_object_put(o);
		return 0;
	}
	return bad_usage("usage: nestorctl images [add NAME ... | remove NAME]");
}

static int cmd_apps(int argc, char **argv)
{
	static const char apps_usage[] =
	    "usage: nestorctl apps [add ALIAS --image NAME --title TEXT | remove ALIAS]";
	int n, st;
	if (argc >= 2 && !strcmp(argv[1], "add")) {
		struct boot_opt opts[LEN(app_fields) + 1];
		field_opts(app_fields, LEN(app_fields), false, opts);
		json_object *given = json_object_new_object();
		st = parse_cmd("apps add", usage, opts, 1, given, argc - 1, argv + 1, &n);
		if (st == BOOT_RUN && n != 1)
			st = bad_usage(apps_usage);
		if (st != BOOT_RUN) {
			json_object_put(given);
			return st;
		}
		const char *alias = argv[2];
		json_object *res = call("POST", "/v1/apps", body_with("alias", alias, given));
		if (json_out)
			print_json(res);
		else
			printf("app %s added\n", alias);
		json_object_put(res);
		return 0;
	}
	st = parse_cmd("apps", usage, NULL, 2, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (n == 0) {
		json_object *o = call("GET", "/v1/apps", NULL);
		if (json_out) {
			print_json(o);
		} else {
			printf("%-16s %-16s %s\n", "ALIAS", "IMAGE", "TITLE");
			for (size_t i = 0; i < json_object_array_length(o); i++) {
				json_object *r = json_object_array_get_idx(o, i);
				printf("%-16s %-16s %s\n", s_(r, "alias"), s_(r, "image"),
				       s_(r, "title"));
			}
		}
		json_object_put(o);
		return 0;
	}
	if (n == 2 && !strcmp(argv[1], "remove")) {
		char path[128];
		snprintf(path, sizeof(path), "/v1/apps/%s", argv[2]);
		json_object_put(call("DELETE", path, NULL));
		printf("app %s removed\n", argv[2]);
		return 0;
	}
	return bad_usage(apps_usage);
}

static int cmd_audit(int argc, char **argv)
{
	unsigned limit = 0;
	bool given = false;
	const struct boot_opt opts[] = {{"limit", 0, true, .flag = &given, .uint = &limit}, {0}};
	int n, st = parse_cmd("audit", usage, opts, 0, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	char path[64] = "/v1/audit";
	if (given)
		snprintf(path, sizeof(path), "/v1/audit?limit=%u", limit);
	json_object *o = call("GET", path, NULL);
	if (json_out) {
		print_json(o);
	} else {
		for (size_t i = 0; i < json_object_array_length(o); i++) {
			json_object *r = json_object_array_get_idx(o, i);
			char t[32];
			printf("%s %-16s user=%s client=%s session=%s %s\n",
			       when(i_(r, "ts"), t, sizeof(t)), s_(r, "kind"), s_(r, "user"),
			       s_(r, "client"), s_(r, "session"), s_(r, "detail"));
		}
	}
	json_object_put(o);
	return 0;
}

static int cmd_hosts(int argc, char **argv)
{
	int n, st = parse_cmd("hosts", usage, NULL, 2, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (n == 2 && (!strcmp(argv[1], "drain") || !strcmp(argv[1], "undrain"))) {
		char path[160];
		snprintf(path, sizeof(path), "/v1/hosts/%s/%s", argv[2], argv[1]);
		json_object *o = call("POST", path, NULL);
		if (json_out)
			print_json(o);
		else
			printf("%s: %s\n", esc(argv[2]),
			       !strcmp(argv[1], "drain") ? "drained (no new sessions)"
							 : "takes new sessions");
		json_object_put(o);
		return 0;
	}
	if (n != 0)
		return bad_usage("usage: nestorctl hosts [drain|undrain NAME]");
	json_object *o = call("GET", "/v1/hosts", NULL), *list;
	if (json_out) {
		print_json(o);
		json_object_put(o);
		return 0;
	}
	printf("%-16s %-5s %-8s %-5s %-13s %-11s %-15s %-6s %s\n", "HOST", "ACCEL", "STATE", "SELF",
	       "SESSIONS", "STARTING", "MEMORY MB", "QUEUE", "HEARTBEAT");
	json_object_object_get_ex(o, "hosts", &list);
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *h = json_object_array_get_idx(list, i), *v;
		bool up = json_object_object_get_ex(h, "up", &v) && json_object_get_boolean(v);
		bool dr = json_object_object_get_ex(h, "drained", &v) && json_object_get_boolean(v);
		bool self = json_object_object_get_ex(h, "self", &v) && json_object_get_boolean(v);
		char ses[32], sta[32], mem[40], age[32];
		/* the fleet counts unlimited caps as INT_MAX */
#define CAP(buf, used, max)                                                                        \
	(i_(h, max) >= 2147483647                                                                  \
	     ? snprintf(buf, sizeof(buf), "%lld", i_(h, used))                                     \
	     : snprintf(buf, sizeof(buf), "%lld/%lld", i_(h, used), i_(h, max)))
		CAP(ses, "sessions", "max_sessions");
		CAP(sta, "starting", "max_starting");
		CAP(mem, "memory_mb", "max_memory_mb");
#undef CAP
		snprintf(age, sizeof(age), "%.1f s ago", (double)i_(h, "heartbeat_age_ms") / 1000);
		printf("%-16s %-5s %-8s %-5s %-13s %-11s %-15s %-6lld %s\n", s_(h, "name"),
		       *s_(h, "accel") ? s_(h, "accel") : "-",
		       !up  ? "down"
		       : dr ? "drained"
			    : "up",
		       self ? "*" : "", ses, sta, mem, i_(h, "queued"), age);
	}
	printf("fleet queue: %lld\n", i_(o, "fleet_queue"));
	json_object_put(o);
	return 0;
}

static const char fleet_help[] =
    "usage: nestorctl fleet init --db URL | fleet import\n"
    "Create the fleet's tables in the PostgreSQL database URL (a libpq connection\n"
    "string or postgresql:// URL), or bring an older schema up to this nestor's.\n"
    "Safe to run again, and from several hosts at once.\n"
    "fleet import: this host's live sessions written into the fleet now (a single\n"
    "host that joins a fleet does it at its first heartbeat too); asks nestord.\n";

static int cmd_fleet(int argc, char **argv)
{
	const char *db = NULL;
	const struct boot_opt opts[] = {{"db", 0, true, .str = &db}, {0}};
	int n, st = parse_cmd("fleet", fleet_help, opts, 1, NULL, argc, argv, &n);
	if (st != BOOT_RUN)
		return st;
	if (n == 1 && !strcmp(argv[1], "import") && !db) {
		json_object *o = call("POST", "/v1/fleet/import", NULL);
		if (json_out)
			print_json(o);
		else
			printf("host %s: %lld live sessions written into the fleet%s\n",
			       s_(o, "host"), i_(o, "sessions"),
			       i_(o, "ended") ? " (some the fleet had ended: ended here too)" : "");
		json_object_put(o);
		return 0;
	}
	if (n != 1 || strcmp(argv[1], "init") || !db)
		return bad_usage("usage: nestorctl fleet init --db URL | fleet import");
	PGconn *c = PQconnectdb(db);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "nestorctl: cannot connect to the fleet database: %s",
			PQerrorMessage(c));
		PQfinish(c);
		return 3;
	}
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	char err[512];
	int from, to, rc = fleet_schema_apply(c, &from, &to, err, sizeof(err));
	PQfinish(c);
	if (rc < 0) {
		fprintf(stderr, "nestorctl: %s\n", esc(err));
		return 1;
	}
	if (from == to)
		printf("the fleet schema is up to date (version %d)\n", to);
	else
		printf("the fleet schema is now version %d (was %d)\n", to, from);
	return 0;
}

int main(int argc, char **argv)
{
	sock = getenv("NESTOR_SOCKET");
	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	const struct boot_opt opts[] = {
	    {"socket", 's', true, .str = &sock}, {"json", 'j', false, .flag = &json_out}, {0}};
	const struct boot_prog prog = {.name = "nestorctl",
				       .usage = usage,
				       .hint = HINT,
				       .version = NESTOR_VERSION,
				       .opts = opts,
				       .stop_at_arg = true,
				       .max_args = BOOT_ANY_ARGS};
	int ac, st = boot_parse(&prog, argc, argv, &ac);
	if (st != BOOT_RUN)
		return st;
	if (ac == 0) {
		fputs(usage, stderr);
		return 2;
	}
	/* the command and its arguments; each command parses its own options */
	char **av = argv + 1;
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} cmds[] = {{"status", cmd_status}, {"caps", cmd_caps},		{"accel", cmd_accel},
		    {"users", cmd_users},   {"sessions", cmd_sessions}, {"session", cmd_session},
		    {"images", cmd_images}, {"apps", cmd_apps},		{"audit", cmd_audit},
		    {"hosts", cmd_hosts},   {"fleet", cmd_fleet}};
	for (size_t i = 0; i < LEN(cmds); i++)
		if (!strcmp(av[0], cmds[i].name))
			return cmds[i].fn(ac, av);
	return bad_usage("unknown command");
}
