/*
 * QMP framing, parsing and encoding: pure functions, no I/O. Used by
 * qmp_client.c and fuzzed by tests/fuzz/fuzz_qmp.c.
 */
#include "qmp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qmp_frame_next(const char *data, size_t len, size_t max, size_t *msg_len)
{
	size_t scan = len < max ? len : max;
	const char *nl = memchr(data, '\n', scan);
	if (nl) {
		*msg_len = (size_t)(nl - data) + 1;
		return 1;
	}
	return len >= max ? -EMSGSIZE : 0;
}

static int fail(const char *reason, const char **why, json_object *root)
{
	json_object_put(root);
	if (why)
		*why = reason;
	return -EBADMSG;
}

int qmp_msg_parse(const char *line, size_t len, struct qmp_msg *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len == 0)
		return fail("empty message", why, NULL);
	if (len > QMP_MAX_MSG)
		return fail("message too long", why, NULL);

	json_tokener *tok = json_tokener_new_ex(QMP_MAX_DEPTH);
	if (!tok)
		return fail("out of memory", why, NULL);
	json_object *root = json_tokener_parse_ex(tok, line, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!root || jerr != json_tokener_success)
		return fail(jerr == json_tokener_error_depth ? "JSON nested too deep"
							     : "malformed JSON",
			    why, root);
	if (used != len)
		return fail("trailing bytes after JSON", why, root);
	if (!json_object_is_type(root, json_type_object))
		return fail("message is not a JSON object", why, root);

	json_object *v;
	if (json_object_object_get_ex(root, "id", &v)) {
		/* We only send non-negative integer ids. */
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
			return fail("id is not a non-negative integer", why, root);
		out->has_id = true;
		out->id = (uint64_t)json_object_get_int64(v);
	}

	if (json_object_object_get_ex(root, "QMP", &v)) {
		if (!json_object_is_type(v, json_type_object))
			return fail("greeting is not an object", why, root);
		out->kind = QMP_MSG_GREETING;
		out->data = v;
	} else if (json_object_object_get_ex(root, "return", &v)) {
		out->kind = QMP_MSG_RETURN;
		out->data = v;
	} else if (json_object_object_get_ex(root, "error", &v)) {
		json_object *c, *d;
		if (!json_object_is_type(v, json_type_object) ||
		    !json_object_object_get_ex(v, "class", &c) ||
		    !json_object_is_type(c, json_type_string) ||
		    !json_object_object_get_ex(v, "desc", &d) ||
		    !json_object_is_type(d, json_type_string))
			return fail("error without class and desc strings", why, root);
		out->kind = QMP_MSG_ERROR;
		out->err_class = json_object_get_string(c);
		out->err_desc = json_object_get_string(d);
		out->data = v;
	} else if (json_object_object_get_ex(root, "event", &v)) {
		if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
			return fail("event name is not a string", why, root);
		out->kind = QMP_MSG_EVENT;
		out->event = json_object_get_string(v);
		json_object *d;
		if (json_object_object_get_ex(root, "data", &d)) {
			if (!json_object_is_type(d, json_type_object))
				return fail("event data is not an object", why, root);
			out->data = d;
		}
	} else {
		return fail("unknown message kind", why, root);
	}
	if ((out->kind == QMP_MSG_RETURN || out->kind == QMP_MSG_ERROR) && !out->has_id)
		return fail("reply without id", why, root);
	out->root = root;
	return 0;
}

void qmp_msg_finish(struct qmp_msg *msg)
{
	json_object_put(msg->root);
	memset(msg, 0, sizeof(*msg));
}

char *qmp_cmd_encode(const char *execute, json_object *args, uint64_t id)
{
	json_object *cmd = json_object_new_object();
	if (!cmd)
		return NULL;
	json_object_object_add(cmd, "execute", json_object_new_string(execute));
	if (args)
		json_object_object_add(cmd, "arguments", json_object_get(args));
	json_object_object_add(cmd, "id", json_object_new_int64((int64_t)id));
	const char *s = json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN);
	char *line = s ? malloc(strlen(s) + 2) : NULL;
	if (line)
		sprintf(line, "%s\n", s);
	json_object_put(cmd);
	return line;
}
