/* A session's states, named once. Pure. */
#ifndef NESTOR_BRK_STATES_H
#define NESTOR_BRK_STATES_H

/* queued -> starting -> ready -> connected <-> disconnected -> ending -> ended */
#define BRK_STATES(X)                                                                              \
	X(QUEUED, "queued")                                                                        \
	X(STARTING, "starting")                                                                    \
	X(READY, "ready")                                                                          \
	X(CONNECTED, "connected")                                                                  \
	X(DISCONNECTED, "disconnected")                                                            \
	X(ENDING, "ending")                                                                        \
	X(ENDED, "ended")

#define BRK_STATE_ENUM(id, name) BRK_##id,
enum brk_state { BRK_STATES(BRK_STATE_ENUM) };
#undef BRK_STATE_ENUM

const char *brk_state_name(enum brk_state st);
/* 0, or -EINVAL for a name that is no state. */
int brk_state_parse(const char *name, enum brk_state *out);

#endif
