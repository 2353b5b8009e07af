/*
 * QMP wire format, pure: framing of the byte stream into messages, parsing
 * of one message into a classified struct, and encoding of commands. No I/O,
 * no clock. Every byte from QEMU is untrusted: lines are bounded, JSON depth
 * is limited, and anything unexpected is an error with a reason.
 *
 * int functions return 0 or a negative errno.
 */
#ifndef NESTOR_QMP_H
#define NESTOR_QMP_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QMP_MAX_MSG (1024 * 1024) /* one message, bytes */
#define QMP_MAX_DEPTH 32	  /* JSON nesting */

enum qmp_kind {
	QMP_MSG_GREETING, /* {"QMP": {...}} */
	QMP_MSG_RETURN,	  /* {"return": ..., "id": N} */
	QMP_MSG_ERROR,	  /* {"error": {"class", "desc"}, "id": N} */
	QMP_MSG_EVENT,	  /* {"event": "NAME", "data": {...}, "timestamp": {...}} */
};

struct qmp_msg {
	enum qmp_kind kind;
	bool has_id;
	uint64_t id;
	const char *event;     /* EVENT: name; borrowed from root */
	const char *err_class; /* ERROR */
	const char *err_desc;  /* ERROR */
	json_object *data;     /* RETURN value, EVENT data (may be NULL); borrowed */
	json_object *root;     /* owned */
};

/*
 * Find the end of the next message in DATA[0..LEN). Returns 1 and sets
 * *MSG_LEN (including the '\n') when a whole line is there, 0 when more bytes
 * are needed, -EMSGSIZE when the line is longer than MAX.
 */
int qmp_frame_next(const char *data, size_t len, size_t max, size_t *msg_len);

/*
 * Parse one message (the line without its newline). On success *OUT owns a
 * JSON tree (release with qmp_msg_finish). On failure *WHY says why
 * (static string) and -EBADMSG is returned.
 */
int qmp_msg_parse(const char *line, size_t len, struct qmp_msg *out, const char **why);
void qmp_msg_finish(struct qmp_msg *msg);

/* A command line ending in "\n"; NULL on failure. ARGS is borrowed. */
char *qmp_cmd_encode(const char *execute, json_object *args, uint64_t id);

#endif
