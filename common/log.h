/*
 * Logging for every nestor program: one line per message on stderr with a
 * timestamp, the program, the level and the source location. Thread-safe.
 * Lines about one session or guest carry "session=ID" / "vm=ID" (and
 * "user=NAME", "image=NAME") in the text; under systemd's journal these are
 * also the entry's fields SESSION_ID, VM, USER and IMAGE. Never log a password.
 */
#ifndef NESTOR_LOG_H
#define NESTOR_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(const char *prog, enum log_level level);
void log_set_level(enum log_level level);
/* Returns 0, or -EINVAL for a name that is not err|warn|info|debug. */
int log_level_parse(const char *name, enum log_level *out);
void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define LOG_FIELDS 4
struct log_field {
	const char *name; /* SESSION_ID, VM, USER or IMAGE */
	char value[72];
};
/* The journal fields MSG's session=, vm=, user= and image= tokens give; the first of each. */
size_t log_fields(const char *msg, struct log_field out[LOG_FIELDS]);
/*
 * This process serves one session (a gateway worker): its journal entries
 * carry these fields even when a line does not name them. NULL or "" for
 * a field leaves it out.
 */
void log_context(const char *session, const char *user, const char *image);
/* Route libevent's own messages through log_write. */
void log_hook_libevent(void);

#define log_err(...) log_write(LOG_LVL_ERR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LVL_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_write(LOG_LVL_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...) log_write(LOG_LVL_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

#endif
