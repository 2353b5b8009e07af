/*
 * nestorctl: the admin CLI. Speaks nestord's HTTP/JSON API on its UNIX
 * socket; prints tables for people and JSON (--json) for scripts.
 * Exit codes: 0 ok, 1 the broker refused or failed, 2 usage error,
 * 3 cannot reach nestord.
 */
#include "nestor-config.h"
#include "httpc.h"

#include <errno.h>
#include <getopt.h>
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
    "  sessions [--ended N]            live sessions (or the N last ended)\n"
    "  session show ID                 one session\n"
    "  session end ID                  end a session (its guest is stopped)\n"
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
    "\n"
    "RDP POLICY (images with --backend rdp; the guest's own RDP server):\n"
    "  --rdp-security rdp|tls|any     what the guest's server speaks (XP: rdp; default)\n"
    "  --guest-login image|user       sign in to the guest with the account below (default)\n"
    "                                 or with the user's own name and password\n"
    "  --guest-user NAME --guest-domain NAME --guest-password-file FILE\n"
    "  --clipboard on|off --drive on|off   relay these channels (default off)\n"
    "  --remoteapp on|off             the guest serves RemoteApp windows itself\n"
    "\n"
    "Options:\n"
    "  -s, --socket PATH   nestord's API socket (default $NESTOR_SOCKET or " DEFAULT_SOCKET ")\n"
    "  -j, --json          print the API's JSON instead of a table\n"
    "  -h, --help          this text; COMMAND --help for one command\n"
    "\n"
    "Exit status: 0 ok, 1 refused or failed, 2 usage error, 3 nestord unreachable.\n";

static const char *sock;
static int json_out;

static void die_usage(const char *msg)
{
	fprintf(stderr, "nestorctl: %s\n(nestorctl --help for usage)\n", msg);
	exit(2);
}

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
		fprintf(stderr, "nestorctl: %s (HTTP %d)\n", msg ? msg : "error", st);
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

static const char *s_(json_object *o, const char *k)
{
	json_object *v;
	if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
		return "-";
	return json_object_get_string(v);
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

static unsigned parse_uint(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || errno || *s == '-' || v > 0xffffffffUL) {
		fprintf(stderr, "nestorctl: %s must be a non-negative integer, not '%s'\n", what,
			s);
		exit(2);
	}
	return (unsigned)v;
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

static int cmd_status(void)
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

static int cmd_accel(int argc, char **argv)
{
	if (argc == 1) {
		json_object *o = call("GET", "/v1/accel", NULL);
		if (json_out)
			print_json(o);
		else
			accel_line(o);
		json_object_put(o);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "probe")) {
		json_object *o = call("POST", "/v1/accel/probe", NULL), *a;
		if (json_out)
			print_json(o);
		else if (json_object_object_get_ex(o, "accelerator", &a))
			accel_line(a);
		json_object_put(o);
		return 0;
	}
	die_usage("accel [probe]");
	return 2;
}

static int cmd_caps(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "show"))
		return cmd_status();
	if (strcmp(argv[1], "set") != 0)
		die_usage("caps: use 'caps show' or 'caps set'");
	static const struct option o[] = {{"max-sessions", required_argument, NULL, 's'},
					  {"max-starting", required_argument, NULL, 't'},
					  {"max-memory-mb", required_argument, NULL, 'm'},
					  {"user-max-sessions", required_argument, NULL, 'u'},
					  {"help", no_argument, NULL, 'h'},
					  {NULL, 0, NULL, 0}};
	json_object *body = json_object_new_object();
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		const char *key = c == 's'   ? "max_sessions"
				  : c == 't' ? "max_starting"
				  : c == 'm' ? "max_memory_mb"
				  : c == 'u' ? "user_max_sessions"
					     : NULL;
		if (c == 'h') {
			puts("usage: nestorctl caps set [--max-sessions N] [--max-starting N]\n"
			     "                          [--max-memory-mb N] [--user-max-sessions "
			     "N]\n"
			     "0 means unlimited. Lowering a cap never ends running sessions;\n"
			     "raising one admits queued users at once.");
			exit(0);
		}
		if (!key)
			die_usage("caps set: unknown option");
		json_object_object_add(body, key, json_object_new_int64(parse_uint(optarg, key)));
	}
	if (json_object_object_length(body) == 0)
		die_usage("caps set: give at least one cap");
	json_object_put(call("PUT", "/v1/caps", body));
	return cmd_status();
}

static int cmd_users(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "caps") != 0)
		die_usage("users: use 'users caps' or 'users caps set USER --max-sessions N'");
	if (argc == 2) {
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
	if (argc != 6 || strcmp(argv[2], "set") != 0 || strcmp(argv[4], "--max-sessions") != 0)
		die_usage("usage: nestorctl users caps set USER --max-sessions N|default");
	json_object *body = json_object_new_object();
	json_object_object_add(body, "max_sessions",
			       strcmp(argv[5], "default") == 0
				   ? NULL
				   : json_object_new_int64(parse_uint(argv[5], "max-sessions")));
	char path[256];
	snprintf(path, sizeof(path), "/v1/users/%s/caps", argv[3]);
	json_object *o = call("PUT", path, body);
	if (json_out)
		print_json(o);
	else
		printf("%s: max_sessions %s\n", argv[3], s_(o, "max_sessions"));
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
	char path[64] = "/v1/sessions";
	if (argc == 3 && !strcmp(argv[1], "--ended"))
		snprintf(path, sizeof(path), "/v1/sessions?ended=%u",
			 parse_uint(argv[2], "--ended"));
	else if (argc == 2 && !strcmp(argv[1], "--help")) {
		puts("usage: nestorctl sessions [--ended N]\nLive sessions, oldest first; with "
		     "--ended the N most recently ended.");
		return 0;
	} else if (argc != 1)
		die_usage("usage: nestorctl sessions [--ended N]");
	json_object *o = call("GET", path, NULL);
	if (json_out) {
		print_json(o);
	} else {
		printf("%-17s %-14s %-14s %-16s %-9s %-7s %s\n", "ID", "USER", "APP", "STATE",
		       "START", "PID", "CREATED");
		for (size_t i = 0; i < json_object_array_length(o); i++) {
			json_object *r = json_object_array_get_idx(o, i);
			session_row(r);
			if (argc == 3)
				printf("  ended: %s\n", s_(r, "end_reason"));
		}
	}
	json_object_put(o);
	return 0;
}

static int cmd_session(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "show") && strcmp(argv[1], "end")))
		die_usage("usage: nestorctl session show|end ID");
	char path[128];
	snprintf(path, sizeof(path), "/v1/sessions/%s", argv[2]);
	json_object *o = call(strcmp(argv[1], "end") ? "GET" : "DELETE", path, NULL);
	if (json_out) {
		print_json(o);
	} else {
		json_object_object_foreach(o, k, v)
		    printf("%-12s %s\n", k, json_object_get_string(v));
	}
	json_object_put(o);
	return 0;
}

/* The rdp backend's per-image policy, shared by images add and images set. */
static const struct {
	const char *opt, *key;
	char kind; /* s string, f password file, b on|off */
} rdp_opts[] = {
    {"rdp-security", "rdp_security", 's'},
    {"guest-login", "guest_login", 's'},
    {"guest-user", "guest_user", 's'},
    {"guest-domain", "guest_domain", 's'},
    {"guest-password-file", "guest_password", 'f'},
    {"clipboard", "clipboard", 'b'},
    {"drive", "drive", 'b'},
    {"remoteapp", "remoteapp", 'b'},
};
#define RDP_OPT_BASE 1000
#define N_RDP_OPTS (sizeof(rdp_opts) / sizeof(rdp_opts[0]))

static void rdp_opt(json_object *body, size_t i, const char *val)
{
	json_object *v;
	if (rdp_opts[i].kind == 'b') {
		if (strcmp(val, "on") && strcmp(val, "off"))
			die_usage("--clipboard, --drive and --remoteapp take on or off");
		v = json_object_new_int(!strcmp(val, "on"));
	} else if (rdp_opts[i].kind == 'f') {
		/* from a file, never the command line (ps would show it) */
		char line[256] = "";
		FILE *f = fopen(val, "r");
		if (!f || !fgets(line, sizeof(line), f)) {
			fprintf(stderr, "nestorctl: %s: %s\n", val, f ? "empty" : strerror(errno));
			exit(1);
		}
		fclose(f);
		line[strcspn(line, "\r\n")] = '\0';
		v = json_object_new_string(line);
		explicit_bzero(line, sizeof(line));
	} else {
		v = json_object_new_string(val);
	}
	json_object_object_add(body, rdp_opts[i].key, v);
}

static int cmd_images(int argc, char **argv)
{
	if (argc == 1) {
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
	if (argc == 3)
		snprintf(path, sizeof(path), "/v1/images/%s", argv[2]);
	if (!strcmp(argv[1], "remove") && argc == 3) {
		json_object_put(call("DELETE", path, NULL));
		printf("image %s removed\n", argv[2]);
		return 0;
	}
	if (!strcmp(argv[1], "show") && argc == 3) {
		json_object *o = call("GET", path, NULL);
		if (json_out)
			print_json(o);
		else {
			json_object_object_foreach(o, k, v)
			    printf("%-20s %s\n", k, json_object_get_string(v));
		}
		json_object_put(o);
		return 0;
	}
	if (!strcmp(argv[1], "template") && argc == 3) {
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
	if (!strcmp(argv[1], "set") && argc >= 5) {
		json_object *body = json_object_new_object();
		for (int i = 3; i + 1 < argc; i += 2) {
			if (!strcmp(argv[i], "--warm-pool"))
				json_object_object_add(
				    body, "warm_pool",
				    json_object_new_int64(parse_uint(argv[i + 1], "--warm-pool")));
			else if (!strcmp(argv[i], "--max-sessions"))
				json_object_object_add(body, "max_sessions",
						       json_object_new_int64(parse_uint(
							   argv[i + 1], "--max-sessions")));
			else {
				size_t k = 0;
				while (k < N_RDP_OPTS && (strncmp(argv[i], "--", 2) ||
							  strcmp(argv[i] + 2, rdp_opts[k].opt)))
					k++;
				if (k == N_RDP_OPTS)
					die_usage("images set: unknown option (see --help)");
				rdp_opt(body, k, argv[i + 1]);
			}
		}
		snprintf(path, sizeof(path), "/v1/images/%s", argv[2]);
		json_object_put(call("PUT", path, body));
		printf("image %s updated\n", argv[2]);
		return 0;
	}
	if (strcmp(argv[1], "add") != 0 || argc < 3)
		die_usage("usage: nestorctl images [add NAME ... | remove NAME]");
	static const struct option o[] = {
	    {"base", required_argument, NULL, 'b'},
	    {"memory", required_argument, NULL, 'm'},
	    {"kernel", required_argument, NULL, 'k'},
	    {"initrd", required_argument, NULL, 'i'},
	    {"append", required_argument, NULL, 'a'},
	    {"machine", required_argument, NULL, 'M'},
	    {"ready", required_argument, NULL, 'r'},
	    {"max-sessions", required_argument, NULL, 's'},
	    {"keepalive", required_argument, NULL, 'K'},
	    {"idle", required_argument, NULL, 'I'},
	    {"max-lifetime", required_argument, NULL, 'L'},
	    {"start-timeout", required_argument, NULL, 'T'},
	    {"queue-wait", required_argument, NULL, 'Q'},
	    {"backend", required_argument, NULL, 'B'},
	    {"rdp-port", required_argument, NULL, 'P'},
	    {"warm-pool", required_argument, NULL, 'W'},
	    {"rdp-security", required_argument, NULL, RDP_OPT_BASE},
	    {"guest-login", required_argument, NULL, RDP_OPT_BASE + 1},
	    {"guest-user", required_argument, NULL, RDP_OPT_BASE + 2},
	    {"guest-domain", required_argument, NULL, RDP_OPT_BASE + 3},
	    {"guest-password-file", required_argument, NULL, RDP_OPT_BASE + 4},
	    {"clipboard", required_argument, NULL, RDP_OPT_BASE + 5},
	    {"drive", required_argument, NULL, RDP_OPT_BASE + 6},
	    {"remoteapp", required_argument, NULL, RDP_OPT_BASE + 7},
	    {NULL, 0, NULL, 0}};
	json_object *body = json_object_new_object();
	json_object_object_add(body, "name", json_object_new_string(argv[2]));
	int c;
	optind = 3;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		const char *key = NULL;
		bool num = false;
		switch (c) {
		case 'b':
			key = "base";
			break;
		case 'm':
			key = "memory_mb";
			num = true;
			break;
		case 'k':
			key = "kernel";
			break;
		case 'i':
			key = "initrd";
			break;
		case 'a':
			key = "append";
			break;
		case 'M':
			key = "machine";
			break;
		case 'r':
			key = "ready";
			break;
		case 's':
			key = "max_sessions";
			num = true;
			break;
		case 'K':
			key = "keepalive";
			num = true;
			break;
		case 'I':
			key = "idle";
			num = true;
			break;
		case 'L':
			key = "max_lifetime";
			num = true;
			break;
		case 'T':
			key = "start_timeout";
			num = true;
			break;
		case 'Q':
			key = "queue_wait";
			num = true;
			break;
		case 'B':
			key = "backend";
			break;
		case 'P':
			key = "rdp_port";
			num = true;
			break;
		case 'W':
			key = "warm_pool";
			num = true;
			break;
		default:
			if (c >= RDP_OPT_BASE && c < RDP_OPT_BASE + (int)N_RDP_OPTS) {
				rdp_opt(body, (size_t)(c - RDP_OPT_BASE), optarg);
				continue;
			}
			die_usage("images add: unknown option");
		}
		if (!num && strcmp(key, "append") && strcmp(key, "ready") &&
		    strcmp(key, "machine") && strcmp(key, "backend") && optarg[0] != '/') {
			char *abs = realpath(optarg, NULL);
			if (!abs) {
				fprintf(stderr, "nestorctl: %s: %s\n", optarg, strerror(errno));
				return 1;
			}
			json_object_object_add(body, key, json_object_new_string(abs));
			free(abs);
			continue;
		}
		json_object_object_add(body, key,
				       num ? json_object_new_int64(parse_uint(optarg, key))
					   : json_object_new_string(optarg));
	}
	json_object *res = call("POST", "/v1/images", body);
	if (json_out)
		print_json(res);
	else
		printf("%s\n", s_(res, "result"));
	json_object_put(res);
	return 0;
}

static int cmd_apps(int argc, char **argv)
{
	if (argc == 1) {
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
	if (!strcmp(argv[1], "remove") && argc == 3) {
		char path[128];
		snprintf(path, sizeof(path), "/v1/apps/%s", argv[2]);
		json_object_put(call("DELETE", path, NULL));
		printf("app %s removed\n", argv[2]);
		return 0;
	}
	if (strcmp(argv[1], "add") != 0 || argc < 3)
		die_usage(
		    "usage: nestorctl apps [add ALIAS --image NAME --title TEXT | remove ALIAS]");
	static const struct option o[] = {{"image", required_argument, NULL, 'i'},
					  {"title", required_argument, NULL, 't'},
					  {"command", required_argument, NULL, 'c'},
					  {NULL, 0, NULL, 0}};
	json_object *body = json_object_new_object();
	json_object_object_add(body, "alias", json_object_new_string(argv[2]));
	int c;
	optind = 3;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		const char *key = c == 'i'   ? "image"
				  : c == 't' ? "title"
				  : c == 'c' ? "command"
					     : NULL;
		if (!key)
			die_usage("apps add: unknown option");
		json_object_object_add(body, key, json_object_new_string(optarg));
	}
	json_object *res = call("POST", "/v1/apps", body);
	if (json_out)
		print_json(res);
	else
		printf("app %s added\n", argv[2]);
	json_object_put(res);
	return 0;
}

static int cmd_audit(int argc, char **argv)
{
	char path[64] = "/v1/audit";
	if (argc == 3 && !strcmp(argv[1], "--limit"))
		snprintf(path, sizeof(path), "/v1/audit?limit=%u", parse_uint(argv[2], "--limit"));
	else if (argc != 1)
		die_usage("usage: nestorctl audit [--limit N]");
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

int main(int argc, char **argv)
{
	sock = getenv("NESTOR_SOCKET");
	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j"))
			json_out = 1;
		else if ((!strcmp(argv[i], "--socket") || !strcmp(argv[i], "-s")) && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("nestorctl %s\n", NESTOR_VERSION);
			return 0;
		} else
			die_usage("unknown option");
	}
	if (i == argc) {
		fputs(usage, stderr);
		return 2;
	}
	char **av = argv + i;
	int ac = argc - i;
	if (ac >= 2 && (!strcmp(av[ac - 1], "--help") || !strcmp(av[ac - 1], "-h")) &&
	    strcmp(av[0], "caps") && strcmp(av[0], "sessions")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(av[0], "status"))
		return cmd_status();
	if (!strcmp(av[0], "caps"))
		return cmd_caps(ac, av);
	if (!strcmp(av[0], "accel"))
		return cmd_accel(ac, av);
	if (!strcmp(av[0], "users"))
		return cmd_users(ac, av);
	if (!strcmp(av[0], "sessions"))
		return cmd_sessions(ac, av);
	if (!strcmp(av[0], "session"))
		return cmd_session(ac, av);
	if (!strcmp(av[0], "images"))
		return cmd_images(ac, av);
	if (!strcmp(av[0], "apps"))
		return cmd_apps(ac, av);
	if (!strcmp(av[0], "audit"))
		return cmd_audit(ac, av);
	die_usage("unknown command");
	return 2;
}
