/*
 * The logger. Writes whole lines to stderr under stdio's own lock, so lines
 * from the gateway's peer threads never interleave. Never blocks for long:
 * stderr is a terminal, a pipe to journald or a file. What a client or a
 * guest said can be in a message: control characters are written escaped
 * (\xNN), so no one can forge a line or drive the reader's terminal.
 */
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "nestor";
static enum log_level log_max = LOG_LVL_INFO;
static const char *const level_names[] = {"err", "warn", "info", "debug"};

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_max = level;
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

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	if (level > log_max)
		return;
	int saved = errno;
	struct timeval tv;
	struct tm tm;
	char stamp[32];
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	flockfile(stderr);
	fprintf(stderr, "%s.%03ld %s[%d] %s %s:%d: ", stamp, (long)(tv.tv_usec / 1000), log_prog,
		(int)getpid(), level_names[level], file, line);
	for (const unsigned char *c = (const unsigned char *)msg; *c; c++) {
		if (*c < 0x20 || *c == 0x7f || *c == '\\')
			fprintf(stderr, "\\x%02x", *c);
		else
			putc_unlocked(*c, stderr);
	}
	putc_unlocked('\n', stderr);
	funlockfile(stderr);
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
