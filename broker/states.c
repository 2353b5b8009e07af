/* A session's state names (states.h). Pure. */
#include "states.h"

#include <errno.h>
#include <string.h>

#define BRK_STATE_NAME(id, name) name,
static const char *const names[] = {BRK_STATES(BRK_STATE_NAME)};

const char *brk_state_name(enum brk_state st)
{
	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

int brk_state_parse(const char *name, enum brk_state *out)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (enum brk_state)i;
			return 0;
		}
	}
	return -EINVAL;
}
