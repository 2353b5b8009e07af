/* Table tests for QMP framing, parsing and encoding (launcher/qmp.c). */
#include "check.h"
#include "qmp.h"

#include <errno.h>

static void test_frame(void)
{
	static const struct {
		const char *in;
		size_t max;
		int want;
		size_t len;
	} t[] = {
	    {"", 100, 0, 0},
	    {"{\"a\":1}", 100, 0, 0},
	    {"{\"a\":1}\r\n", 100, 1, 9},
	    {"{}\n{}\n", 100, 1, 3},
	    {"\n", 100, 1, 1},
	    {"0123456789", 10, -EMSGSIZE, 0},
	    {"012345678\n", 10, 1, 10},
	    {"0123456789\n", 10, -EMSGSIZE, 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t len = 0;
		int r = qmp_frame_next(t[i].in, strlen(t[i].in), t[i].max, &len);
		CHECK_MSG(r == t[i].want, "case %zu: got %d want %d", i, r, t[i].want);
		if (r == 1)
			CHECK_MSG(len == t[i].len, "case %zu: len %zu want %zu", i, len, t[i].len);
	}
}

static void test_parse(void)
{
	static const struct {
		const char *in;
		int ok;
		enum qmp_kind kind;
		long long id;
		const char *name; /* event name or error class */
	} t[] = {
	    {"{\"QMP\": {\"version\": {}, \"capabilities\": []}}", 1, QMP_MSG_GREETING, -1, NULL},
	    {"{\"return\": {}, \"id\": 7}", 1, QMP_MSG_RETURN, 7, NULL},
	    {"{\"return\": {\"status\": \"running\"}, \"id\": 0}\r\n", 1, QMP_MSG_RETURN, 0, NULL},
	    {"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": 3}", 1,
	     QMP_MSG_ERROR, 3, "GenericError"},
	    {"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}, \"timestamp\": {}}", 1,
	     QMP_MSG_EVENT, -1, "SHUTDOWN"},
	    {"{\"event\": \"STOP\"}", 1, QMP_MSG_EVENT, -1, "STOP"},
	    /* malformed */
	    {"", 0, 0, 0, NULL},
	    {"not json", 0, 0, 0, NULL},
	    {"{\"return\": {}", 0, 0, 0, NULL},
	    {"[1,2]", 0, 0, 0, NULL},
	    {"\"str\"", 0, 0, 0, NULL},
	    {"{\"return\": {}}", 0, 0, 0, NULL},		/* reply without id */
	    {"{\"return\": {}, \"id\": \"x\"}", 0, 0, 0, NULL}, /* string id */
	    {"{\"return\": {}, \"id\": -1}", 0, 0, 0, NULL},	/* negative id */
	    {"{\"error\": {\"class\": 1, \"desc\": \"d\"}, \"id\": 1}", 0, 0, 0, NULL},
	    {"{\"error\": \"x\", \"id\": 1}", 0, 0, 0, NULL},
	    {"{\"event\": 5}", 0, 0, 0, NULL},
	    {"{\"event\": \"\"}", 0, 0, 0, NULL},
	    {"{\"event\": \"X\", \"data\": 1}", 0, 0, 0, NULL},
	    {"{\"QMP\": 1}", 0, 0, 0, NULL},
	    {"{\"other\": 1}", 0, 0, 0, NULL},
	    {"{\"return\": {}, \"id\": 1} trailing", 0, 0, 0, NULL},
	    {"{\"return\": {}, \"id\": 1}{}", 0, 0, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct qmp_msg m;
		const char *why = NULL;
		int r = qmp_msg_parse(t[i].in, strlen(t[i].in), &m, &why);
		CHECK_MSG((r == 0) == t[i].ok, "case %zu '%s': r=%d why=%s", i, t[i].in, r,
			  why ? why : "-");
		if (r < 0) {
			CHECK_MSG(why && *why, "case %zu: a failure says why", i);
			continue;
		}
		CHECK_MSG(m.kind == t[i].kind, "case %zu: kind %d", i, m.kind);
		if (t[i].id >= 0)
			CHECK_MSG(m.has_id && (long long)m.id == t[i].id, "case %zu: id", i);
		if (t[i].name && m.kind == QMP_MSG_EVENT)
			CHECK_STR(m.event, t[i].name);
		if (t[i].name && m.kind == QMP_MSG_ERROR) {
			CHECK_STR(m.err_class, t[i].name);
			CHECK_STR(m.err_desc, "no");
		}
		qmp_msg_finish(&m);
	}
}

static void test_depth(void)
{
	char deep[512], *w = deep;
	w += sprintf(w, "{\"return\":");
	for (int i = 0; i < 40; i++)
		*w++ = '[';
	for (int i = 0; i < 40; i++)
		*w++ = ']';
	sprintf(w, ",\"id\":1}");
	struct qmp_msg m;
	const char *why = NULL;
	CHECK(qmp_msg_parse(deep, strlen(deep), &m, &why) == -EBADMSG);
	CHECK_STR(why, "JSON nested too deep");
}

static void test_encode(void)
{
	char *s = qmp_cmd_encode("query-status", NULL, 5);
	CHECK_STR(s, "{\"execute\":\"query-status\",\"id\":5}\n");
	free(s);
	json_object *a = json_object_new_object();
	json_object_object_add(a, "fdname", json_object_new_string("in\"x"));
	s = qmp_cmd_encode("getfd", a, 6);
	CHECK_STR(s, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"in\\\"x\"},\"id\":6}\n");
	free(s);
	json_object_put(a);
	/* A round trip through the parser is a reply-less command: not a QMP message. */
}

int main(void)
{
	test_frame();
	test_parse();
	test_depth();
	test_encode();
	return check_done("test_qmp");
}
