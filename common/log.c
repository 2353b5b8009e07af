/*
 * The logger. Writes whole lines to stderr in one stdio call, so lines from
 * threads never interleave. Never blocks for long: stderr is a terminal, a
 * pipe or a file. When systemd connected stderr to the journal, each line
 * is a journal entry instead, with its session, vm, user and image as
 * fields (journalctl SESSION_ID=...). What a client or a guest said can be
 * in a message: control characters are written escaped (\xNN), so no one
 * can forge a line or drive the reader's terminal.
 */
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "nestor";
static enum log_level log_max = LOG_LVL_INFO;
static const char *const level_names[] = {"err", "warn", "info", "debug"};
static bool log_journal;

/* systemd connected stderr to the journal: JOURNAL_STREAM names that stream */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	uintmax_t dev, ino;
	struct stat st;
	return js && sscanf(js, "%ju:%ju", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_max = level;
	log_journal = stderr_is_journal();
}

static const struct {
	const char *token, *field;
} field_names[LOG_FIELDS] = {
    {"session=", "SESSION_ID"},
    {"vm=", "VM"},
    {"user=", "USER"},
    {"image=", "IMAGE"},
};

/*
 * Only the tokens a line starts with count ("session=ID user=NAME ...", or
 * after the gateway's "peer ADDR: "): whatever follows may be text a client
 * or a guest chose, and must not make an entry show up under another
 * session or user.
 */
size_t log_fields(const char *msg, struct log_field out[LOG_FIELDS])
{
	size_t n = 0;
	const char *p = msg;
	if (!strncmp(p, "peer ", 5)) {
		const char *colon = strstr(p, ": ");
		if (!colon || memchr(p + 5, ' ', (size_t)(colon - p - 5)))
			return 0; /* not the "peer ADDR: " prefix */
		p = colon + 2;
	}
	for (;;) {
		unsigned i = 0;
		while (i < LOG_FIELDS &&
		       strncmp(p, field_names[i].token, strlen(field_names[i].token)))
			i++;
		if (i == LOG_FIELDS)
			return n;
		const char *v = p + strlen(field_names[i].token);
		size_t len = strcspn(v, " ,;:()\"'");
		bool seen = false;
		for (size_t k = 0; k < n; k++)
			seen |= out[k].name == field_names[i].field;
		if (len > 0 && len < sizeof(out[n].value) && !seen) {
			out[n].name = field_names[i].field;
			memcpy(out[n].value, v, len);
			out[n].value[len] = '\0';
			n++;
		}
		p = v + len;
		while (*p == ':' || *p == ',')
			p++;
		if (*p != ' ')
			return n;
		p++;
	}
}

static struct log_field ctx[LOG_FIELDS];
static size_t n_ctx;

void log_context(const char *session, const char *user, const char *image)
{
	const char *v[] = {session, user, image}, *names[] = {"SESSION_ID", "USER", "IMAGE"};
	n_ctx = 0;
	for (unsigned i = 0; i < 3; i++) {
		if (v[i] && *v[i] && strlen(v[i]) < sizeof(ctx[0].value)) {
			ctx[n_ctx].name = names[i];
			snprintf(ctx[n_ctx].value, sizeof(ctx[n_ctx].value), "%s", v[i]);
			n_ctx++;
		}
	}
}

/* One journal entry with the message's session, vm, user and image as fields. */
static void journal_write(enum log_level level, const char *file, int line, const char *msg)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	struct log_field f[LOG_FIELDS];
	size_t nf = log_fields(msg, f);
	for (size_t c = 0; c < n_ctx && nf < LOG_FIELDS; c++) {
		bool named = false;
		for (size_t i = 0; i < nf; i++)
			named |= !strcmp(f[i].name, ctx[c].name);
		if (!named)
			f[nf++] = ctx[c];
	}
	char buf[8][300];
	struct iovec iov[8 + LOG_FIELDS];
	int n = 0;
#define FIELD(...)                                                                                 \
	do {                                                                                       \
		int w_ = snprintf(buf[n], sizeof(buf[n]), __VA_ARGS__);                            \
		iov[n] = (struct iovec){buf[n], w_ < (int)sizeof(buf[n]) ? (size_t)w_              \
									 : sizeof(buf[n]) - 1};    \
		n++;                                                                               \
	} while (0)
	FIELD("PRIORITY=%d", prio[level]);
	FIELD("SYSLOG_IDENTIFIER=%s", log_prog);
	FIELD("CODE_FILE=%s", file);
	FIELD("CODE_LINE=%d", line);
	for (size_t i = 0; i < nf; i++)
		FIELD("%s=%s", f[i].name, f[i].value);
#undef FIELD
	char mbuf[4200];
	int w = snprintf(mbuf, sizeof(mbuf), "MESSAGE=%s", msg);
	iov[n++] = (struct iovec){mbuf, w < (int)sizeof(mbuf) ? (size_t)w : sizeof(mbuf) - 1};
	if (sd_journal_sendv(iov, n) < 0) /* journald gone: the line still goes out */
		fprintf(stderr, "%s[%d] %s %s:%d: %s\n", log_prog, (int)getpid(),
			level_names[level], file, line, msg);
}

void log_set_level(enum log_level level)
{
	log_max = level;
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* MSG with control characters and backslashes as \xNN: no forged lines */
static void escape(char *out, size_t n, const char *msg)
{
	size_t at = 0;
	for (const unsigned char *c = (const unsigned char *)msg; *c && at + 5 < n; c++) {
		if (*c < 0x20 || *c == 0x7f || *c == '\\')
			at += (size_t)snprintf(out + at, n - at, "\\x%02x", *c);
		else
			out[at++] = (char)*c;
	}
	out[at] = '\0';
}

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	if (level > log_max)
		return;
	int saved = errno;
	char msg[4096], safe[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	escape(safe, sizeof(safe), msg);
	if (log_journal) {
		journal_write(level, file, line, safe);
		errno = saved;
		return;
	}
	struct timeval tv;
	struct tm tm;
	char stamp[32];
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld %s[%d] %s %s:%d: %s\n", stamp, (long)(tv.tv_usec / 1000),
		log_prog, (int)getpid(), level_names[level], file, line, safe);
	errno = saved;
}

static void libevent_log(int severity, const char *msg)
{
	enum log_level l = severity >= EVENT_LOG_ERR	? LOG_LVL_ERR
			   : severity >= EVENT_LOG_WARN ? LOG_LVL_WARN
			   : severity >= EVENT_LOG_MSG	? LOG_LVL_INFO
							: LOG_LVL_DEBUG;
	log_write(l, "libevent", 0, "%s", msg);
}

void log_hook_libevent(void)
{
	event_set_log_callback(libevent_log);
}
