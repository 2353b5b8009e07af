/*
 * broker/agent.c's answer to HAProxy's agent-check, table-driven: the
 * broker's flags and the ledger's caps and usage in, the line out. Drain is
 * only tested here: until the fleet code sets host.drained from
 * PostgreSQL, no running nestord can be drained.
 */
#include "agent.h"
#include "check.h"
#include "quota.h"

#define NO_ACCEL "down #guests cannot start yet\n"
#define STOPPING "down #nestord is stopping\n"

static void test_lines(void)
{
	static const struct {
		const char *name;
		bool stopping, ready, drained;
		struct quota_caps caps; /* max_sessions, max_starting, max_memory_mb */
		unsigned sessions, memory_mb;
		const char *want;
	} t[] = {
	    {"unlimited, empty", false, true, false, {0, 0, 0}, 0, 0, "up ready 100%\n"},
	    {"unlimited, busy", false, true, false, {0, 0, 0}, 50, 9000, "up ready 100%\n"},
	    {"a quarter used", false, true, false, {4, 0, 0}, 1, 256, "up ready 75%\n"},
	    {"memory is tighter", false, true, false, {4, 0, 512}, 1, 256, "up ready 50%\n"},
	    {"sessions are tighter", false, true, false, {4, 2, 4096}, 3, 512, "up ready 25%\n"},
	    {"rounded down", false, true, false, {3, 0, 0}, 1, 0, "up ready 66%\n"},
	    {"last slot of many", false, true, false, {200, 0, 0}, 199, 0, "up ready 1%\n"},
	    {"last MiB", false, true, false, {0, 0, 1000}, 0, 999, "up ready 1%\n"},
	    {"full by sessions", false, true, false, {2, 0, 0}, 2, 512, "up ready 0%\n"},
	    {"full by memory", false, true, false, {10, 0, 512}, 2, 512, "up ready 0%\n"},
	    {"over a lowered cap", false, true, false, {1, 0, 0}, 3, 0, "up ready 0%\n"},
	    {"drained", false, true, true, {4, 0, 0}, 1, 0, "up drain\n"},
	    {"drained and full", false, true, true, {1, 0, 0}, 1, 0, "up drain\n"},
	    {"no accelerator yet", false, false, false, {4, 0, 0}, 0, 0, NO_ACCEL},
	    {"no accelerator, drained", false, false, true, {4, 0, 0}, 0, 0, NO_ACCEL},
	    {"stopping", true, true, false, {4, 0, 0}, 0, 0, STOPPING},
	    {"stopping, drained", true, true, true, {4, 0, 0}, 0, 0, STOPPING},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct quota_ledger q;
		quota_ledger_init(&q);
		quota_set_host_caps(&q, t[i].caps);
		q.sessions = t[i].sessions;
		q.memory_mb = t[i].memory_mb;
		struct agent_view v = {.stopping = t[i].stopping,
				       .ready = t[i].ready,
				       .drained = t[i].drained,
				       .q = &q};
		char line[AGENT_LINE_MAX];
		agent_line(&v, line, sizeof(line));
		CHECK_MSG(check_streq(line, t[i].want), "%s: '%s' != '%s'", t[i].name, line,
			  t[i].want);
		quota_ledger_finish(&q);
	}
}

/* Every percentage fits the line, and more usage never means more room. */
static void test_monotonic(void)
{
	struct quota_ledger q;
	quota_ledger_init(&q);
	quota_set_host_caps(&q, (struct quota_caps){.max_sessions = 7, .max_memory_mb = 4000});
	unsigned last = 101;
	for (unsigned s = 0; s <= 8; s++) {
		q.sessions = s;
		q.memory_mb = s * 300;
		unsigned p = agent_free_percent(&q);
		CHECK_MSG(p <= 100 && p <= last, "sessions %u: %u%% after %u%%", s, p, last);
		CHECK_MSG((p == 0) == (s >= 7), "sessions %u: %u%%", s, p);
		last = p;
	}
	quota_ledger_finish(&q);
}

int main(void)
{
	test_lines();
	test_monotonic();
	return check_done("test_agent");
}
