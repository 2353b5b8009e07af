/* Table tests for failed-login throttling (broker/throttle.c). */
#include "check.h"
#include "throttle.h"

static struct throttle t;

int main(void)
{
	throttle_init(&t, 3, 60, 120);
	CHECK(throttle_locked(&t, "u:a", 0) == 0);
	CHECK(throttle_fail(&t, "u:a", 0) == 0);
	CHECK(throttle_fail(&t, "u:a", 10) == 0);
	CHECK(throttle_fail(&t, "u:a", 20) == 120); /* third failure in the window */
	CHECK(throttle_locked(&t, "u:a", 21) == 119);
	CHECK(throttle_locked(&t, "u:b", 21) == 0);  /* other keys unaffected */
	CHECK(throttle_locked(&t, "u:a", 140) == 0); /* lock over */

	/* failures spread wider than the window never lock */
	throttle_init(&t, 3, 60, 120);
	for (int i = 0; i < 10; i++)
		CHECK(throttle_fail(&t, "u:slow", i * 40) == 0);
	throttle_init(&t, 3, 60, 120);
	CHECK(throttle_fail(&t, "u:c", 0) == 0);
	CHECK(throttle_fail(&t, "u:c", 61) == 0); /* new window */
	CHECK(throttle_fail(&t, "u:c", 62) == 0);
	CHECK(throttle_fail(&t, "u:c", 63) == 120);

	/* a success clears the count */
	throttle_init(&t, 3, 60, 120);
	throttle_fail(&t, "u:d", 0);
	throttle_fail(&t, "u:d", 1);
	throttle_ok(&t, "u:d");
	CHECK(throttle_fail(&t, "u:d", 2) == 0);

	/* attempts count from their start: parallel guesses cannot race past the lock */
	throttle_init(&t, 3, 60, 120);
	throttle_begin(&t, "u:p", 0);
	throttle_begin(&t, "u:p", 0);
	CHECK(throttle_locked(&t, "u:p", 0) == 0);
	throttle_begin(&t, "u:p", 0);
	CHECK(throttle_locked(&t, "u:p", 0) == 1); /* three in flight: a fourth waits */
	throttle_ok(&t, "u:p");			   /* one was right */
	CHECK(throttle_locked(&t, "u:p", 1) == 0);
	CHECK(throttle_fail(&t, "u:p", 1) == 0);
	CHECK(throttle_fail(&t, "u:p", 1) == 0);
	throttle_begin(&t, "u:p", 2);
	throttle_cancel(&t, "u:p"); /* never ran: no verdict */
	CHECK(throttle_locked(&t, "u:p", 2) == 0);
	throttle_begin(&t, "u:p", 2);
	CHECK(throttle_locked(&t, "u:p", 2) == 1); /* two failed and one in flight */
	CHECK(throttle_fail(&t, "u:p", 3) == 120);

	/* 0 disables */
	throttle_init(&t, 0, 60, 120);
	for (int i = 0; i < 100; i++)
		CHECK(throttle_fail(&t, "u:e", i) == 0);

	/* bounded: many keys never overflow, the newest are kept */
	throttle_init(&t, 2, 60, 120);
	char key[32];
	for (int i = 0; i < THROTTLE_KEYS * 2; i++) {
		snprintf(key, sizeof(key), "a:%d", i);
		throttle_fail(&t, key, i);
	}
	CHECK(t.n == THROTTLE_KEYS);
	snprintf(key, sizeof(key), "a:%d", THROTTLE_KEYS * 2 - 1);
	CHECK(throttle_fail(&t, key, THROTTLE_KEYS * 2) == 120);
	return check_done("test_throttle");
}
