/*
 * The portal's sign-ins and launch tickets in nestord (broker/signin.c):
 * lookups, both expiries, sign-out, the per-user caps, tickets used once.
 */
#include "check.h"
#include "signin.h"

#include <stdlib.h>
#include <string.h>

static void test_signins(void)
{
	static struct signins t;
	char a[65], b[65], first[65];
	CHECK(signin_add(&t, "alice", 1000, a) == 0 && strlen(a) == 64);
	CHECK(signin_add(&t, "bob", 1000, b) == 0 && strcmp(a, b));
	CHECK_STR(signin_user(&t, a, 2000), "alice");
	CHECK_STR(signin_user(&t, b, 2000), "bob");
	CHECK(!signin_user(&t, "zz", 2000));
	char other[65];
	memcpy(other, a, 65);
	other[0] = other[0] == '0' ? '1' : '0';
	CHECK(!signin_user(&t, other, 2000));
	/* idle: used at 2000, so alive until 2000 + 30 min; life: 12 h from 1000 */
	CHECK(signin_user(&t, a, 2000 + SIGNIN_IDLE_S * 1000LL - 1));
	CHECK(signin_expires_s(&t, a, 2000 + SIGNIN_IDLE_S * 1000LL - 1) > 0);
	CHECK(!signin_user(&t, b, 2000 + SIGNIN_IDLE_S * 1000LL)); /* bob was idle */
	int64_t now = 2000;
	for (int i = 0; i < 100; i++) { /* kept busy, still ends at 12 h */
		now += 10 * 60 * 1000;
		if (now - 1000 < SIGNIN_LIFE_S * 1000LL)
			CHECK(signin_user(&t, a, now));
	}
	CHECK(!signin_user(&t, a, 1000 + SIGNIN_LIFE_S * 1000LL));
	CHECK(signin_add(&t, "alice", 5000, a) == 0 && signin_drop(&t, a) == 1);
	CHECK(!signin_user(&t, a, 5001) && signin_drop(&t, a) == 0);

	/* one user's sign-ins are capped: the oldest goes, nobody else's */
	static struct signins u;
	CHECK(signin_add(&u, "bob", 10, b) == 0);
	CHECK(signin_add(&u, "mallory", 20, first) == 0);
	for (int i = 0; i < SIGNIN_PER_USER + 5; i++)
		CHECK(signin_add(&u, "mallory", 30 + i, a) == 0);
	CHECK_STR(signin_user(&u, b, 100), "bob");
	CHECK(!signin_user(&u, first, 100));
	CHECK_STR(signin_user(&u, a, 100), "mallory");
}

static void test_launches(void)
{
	static struct launches t;
	char k[65], k2[65];
	CHECK(launch_add(&t, "alice", "ledger", 1000, k) == 0 && strlen(k) == 64);
	CHECK(!launch_redeem(&t, k, "alice", "notes", 1001)); /* another app: burnt */
	CHECK(!launch_redeem(&t, k, "alice", "ledger", 1002));
	CHECK(launch_add(&t, "alice", "ledger", 1000, k) == 0);
	CHECK(!launch_redeem(&t, k, "bob", "ledger", 1001)); /* another user: burnt */
	CHECK(launch_add(&t, "alice", "ledger", 1000, k) == 0);
	CHECK(launch_redeem(&t, k, "alice", "ledger", 1000 + LAUNCH_TTL_S * 1000LL - 1));
	CHECK(!launch_redeem(&t, k, "alice", "ledger", 1001)); /* once */
	CHECK(launch_add(&t, "alice", "ledger", 1000, k) == 0);
	CHECK(!launch_redeem(&t, k, "alice", "ledger", 1000 + LAUNCH_TTL_S * 1000LL));
	CHECK(!launch_redeem(&t, "nothex", "alice", "ledger", 1000));
	/* capped per user */
	CHECK(launch_add(&t, "bob", "ledger", 2000, k2) == 0);
	for (int i = 0; i < LAUNCH_PER_USER + 3; i++)
		CHECK(launch_add(&t, "mallory", "ledger", 2000 + i, k) == 0);
	CHECK(launch_redeem(&t, k2, "bob", "ledger", 2100));
	CHECK(launch_redeem(&t, k, "mallory", "ledger", 2100));
}

int main(void)
{
	test_signins();
	test_launches();
	return check_done("signin");
}
