/* The test harness's counters and summary. */
#include "check.h"

int check_failures;
int check_count;

int check_done(const char *name)
{
	fprintf(stderr, "%s: %d checks, %d failed\n", name, check_count, check_failures);
	return check_failures ? 1 : 0;
}
