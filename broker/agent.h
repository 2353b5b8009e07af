/*
 * HAProxy's agent-check (docs/fleet.md): a TCP port where every connection
 * gets one line about this host and is closed. agent_line is the pure
 * decision (no sockets, no clock); agent_create serves what a callback
 * says on the loop.
 *
 * agent_create returns NULL with ERR filled on failure.
 */
#ifndef NESTOR_BRK_AGENT_H
#define NESTOR_BRK_AGENT_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct quota_ledger;

/* The longest line agent_line writes, with its newline and NUL. */
#define AGENT_LINE_MAX 64

/* What the answer depends on, taken from the broker at the moment HAProxy asks. */
struct agent_view {
	bool stopping; /* nestord is shutting down */
	bool ready;    /* guests can start: the accelerator and QEMU's version are known */
	bool drained;  /* the fleet drained this host */
	const struct quota_ledger *q;
};

/*
 * Free capacity in percent: the smaller of the free shares of max_sessions
 * and max_memory_mb (an unlimited cap, 0, is all free), rounded down but at
 * least 1 while both have room; 0 when the host is full.
 */
unsigned agent_free_percent(const struct quota_ledger *q);

/*
 * The agent's line for V into BUF (at least AGENT_LINE_MAX): "down #WHY\n",
 * "up drain\n" or "up ready N%\n".
 */
void agent_line(const struct agent_view *v, char *buf, size_t len);

/* Fill BUF (AGENT_LINE_MAX) with the answer for now. */
typedef void (*agent_line_fn)(char *buf, size_t len, void *arg);

struct agent;
/* Listen on LISTEN (HOST:PORT or [V6]:PORT) and answer with LINE(ARG). */
struct agent *agent_create(struct event_base *base, const char *listen, agent_line_fn line,
			   void *arg, char *err, size_t errlen);
/* Stop listening and close every connection. Accepts NULL. */
void agent_destroy(struct agent *ag);

#endif
