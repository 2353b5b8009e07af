/*
 * quotas/: table-driven cap tests, fairness, cap changes with a full queue,
 * estimates, and a randomized property test.
 */
#include "check.h"
#include "quota.h"

#include <stdio.h>

static struct quota_req req(uint64_t id, const char *user, const char *image, unsigned mem)
{
	struct quota_req r = {.id = id, .memory_mb = mem};
	snprintf(r.user, sizeof(r.user), "%s", user);
	snprintf(r.image, sizeof(r.image), "%s", image);
	return r;
}

/* One row: caps, then a sequence of requests and the verdict each gets. */
struct cap_case {
	const char *name;
	struct quota_caps host;
	unsigned user_max;
	unsigned image_max; /* for image "img" */
	struct {
		const char *user;
		unsigned mem;
		enum quota_verdict want;
	} seq[6];
};

static void test_caps_table(void)
{
	static const struct cap_case t[] = {
	    {"unlimited",
	     {0, 0, 0},
	     0,
	     0,
	     {{"a", 256, QUOTA_ADMIT}, {"a", 256, QUOTA_ADMIT}, {"b", 256, QUOTA_ADMIT}}},
	    {"host max_sessions 2",
	     {2, 0, 0},
	     0,
	     0,
	     {{"a", 256, QUOTA_ADMIT}, {"b", 256, QUOTA_ADMIT}, {"c", 256, QUOTA_QUEUE}}},
	    {"host max_starting 1",
	     {0, 1, 0},
	     0,
	     0,
	     {{"a", 256, QUOTA_ADMIT}, {"b", 256, QUOTA_QUEUE}, {"c", 256, QUOTA_QUEUE}}},
	    {"host memory 600",
	     {0, 0, 600},
	     0,
	     0,
	     {{"a", 256, QUOTA_ADMIT}, {"b", 256, QUOTA_ADMIT}, {"c", 256, QUOTA_QUEUE}}},
	    {"memory too big ever", {0, 0, 600}, 0, 0, {{"a", 1024, QUOTA_REFUSE}}},
	    {"user max 1",
	     {0, 0, 0},
	     1,
	     0,
	     {{"a", 256, QUOTA_ADMIT}, {"a", 256, QUOTA_REFUSE}, {"b", 256, QUOTA_ADMIT}}},
	    {"image max 1", {0, 0, 0}, 0, 1, {{"a", 256, QUOTA_ADMIT}, {"b", 256, QUOTA_QUEUE}}},
	    {"combined",
	     {3, 2, 1000},
	     1,
	     0,
	     {{"a", 256, QUOTA_ADMIT},
	      {"b", 256, QUOTA_ADMIT},
	      {"c", 256, QUOTA_QUEUE},
	      {"a", 256, QUOTA_REFUSE},
	      {"d", 256, QUOTA_QUEUE}}},
	    {"queue blocks newcomers",
	     {1, 0, 0},
	     0,
	     0,
	     {{"a", 16, QUOTA_ADMIT}, {"b", 16, QUOTA_QUEUE}, {"c", 16, QUOTA_QUEUE}}},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct quota_ledger l;
		quota_ledger_init(&l);
		quota_set_host_caps(&l, t[i].host);
		quota_set_user_default(&l, t[i].user_max);
		if (t[i].image_max)
			quota_set_image_cap(&l, "img", t[i].image_max);
		for (unsigned k = 0; k < 6 && t[i].seq[k].user; k++) {
			struct quota_req r = req(k + 1, t[i].seq[k].user, "img", t[i].seq[k].mem);
			struct quota_decision d = quota_request(&l, &r, 1000 + k);
			CHECK_MSG(d.verdict == t[i].seq[k].want,
				  "%s step %u: verdict %d want %d (%s)", t[i].name, k, d.verdict,
				  t[i].seq[k].want, d.reason ? d.reason : "-");
			if (d.verdict != QUOTA_ADMIT)
				CHECK_MSG(d.reason && *d.reason, "%s step %u: a reason", t[i].name,
					  k);
		}
		quota_ledger_finish(&l);
	}
}

static void test_queue_positions(void)
{
	/* Cap 2, three users: the third is queued at position 1, admitted when one ends. */
	struct quota_ledger l;
	quota_ledger_init(&l);
	quota_set_host_caps(&l, (struct quota_caps){2, 0, 0});
	struct quota_req a = req(1, "a", "img", 256), b = req(2, "b", "img", 256),
			 c = req(3, "c", "img", 256);
	CHECK(quota_request(&l, &a, 0).verdict == QUOTA_ADMIT);
	CHECK(quota_request(&l, &b, 0).verdict == QUOTA_ADMIT);
	struct quota_decision d = quota_request(&l, &c, 0);
	CHECK(d.verdict == QUOTA_QUEUE && d.position == 1);
	CHECK_STR(d.reason, "host session limit reached");
	struct quota_req out;
	CHECK(!quota_next(&l, 10, &out));
	quota_started(&l, 5000);
	quota_started(&l, 5000);
	quota_ended(&l, "a", "img", 256, false, 100);
	CHECK(quota_next(&l, 101, &out) && out.id == 3);
	CHECK(l.sessions == 2 && l.starting == 1 && l.memory_mb == 512);
	CHECK(quota_position(&l, 3, 101, &d) == -2);
	quota_ledger_finish(&l);
}

static void test_fairness(void)
{
	/* One greedy user queues 5 before two others arrive: they are served second and third. */
	struct quota_ledger l;
	quota_ledger_init(&l);
	quota_set_host_caps(&l, (struct quota_caps){1, 0, 0});
	struct quota_req first = req(100, "z", "img", 1);
	CHECK(quota_request(&l, &first, 0).verdict == QUOTA_ADMIT);
	for (int k = 0; k < 5; k++) {
		struct quota_req g = req(1 + k, "greedy", "img", 1);
		struct quota_decision d = quota_request(&l, &g, 10 + k);
		CHECK(d.verdict == QUOTA_QUEUE && d.position == (unsigned)k + 1);
	}
	struct quota_req o1 = req(10, "other1", "img", 1), o2 = req(11, "other2", "img", 1);
	struct quota_decision d1 = quota_request(&l, &o1, 50);
	struct quota_decision d2 = quota_request(&l, &o2, 51);
	CHECK_MSG(d1.position == 2, "other1 at %u", d1.position);
	CHECK_MSG(d2.position == 3, "other2 at %u", d2.position);
	uint64_t order[7];
	const char *owner = "z";
	for (int k = 0; k < 7; k++) {
		quota_started(&l, 100);
		quota_ended(&l, owner, "img", 1, false, 100 + k);
		struct quota_req out;
		CHECK(quota_next(&l, 200 + k, &out));
		order[k] = out.id;
		owner = k == 0 ? "greedy" : out.user;
		static char keep[8][QUOTA_NAME_MAX + 1];
		snprintf(keep[k], sizeof(keep[k]), "%s", out.user);
		owner = keep[k];
	}
	static const uint64_t want[7] = {1, 10, 11, 2, 3, 4, 5};
	for (int k = 0; k < 7; k++)
		CHECK_MSG(order[k] == want[k], "served %d: %llu want %llu", k,
			  (unsigned long long)order[k], (unsigned long long)want[k]);
	quota_ledger_finish(&l);
}

static void test_cap_changes(void)
{
	struct quota_ledger l;
	quota_ledger_init(&l);
	quota_set_host_caps(&l, (struct quota_caps){2, 0, 0});
	for (int k = 0; k < 6; k++) {
		char u[8];
		snprintf(u, sizeof(u), "u%d", k);
		struct quota_req r = req(k + 1, u, "img", 1);
		quota_request(&l, &r, k);
	}
	CHECK(l.sessions == 2 && l.n_queue == 4);
	/* Lowering never ends anything. */
	quota_set_host_caps(&l, (struct quota_caps){1, 0, 0});
	CHECK(l.sessions == 2);
	struct quota_req out;
	CHECK(!quota_next(&l, 10, &out));
	/* Raising admits queued requests at once, in order. */
	quota_set_host_caps(&l, (struct quota_caps){5, 0, 0});
	int admitted = 0;
	while (quota_next(&l, 11, &out)) {
		admitted++;
		CHECK(out.id == (uint64_t)(2 + admitted));
	}
	CHECK(admitted == 3 && l.sessions == 5 && l.n_queue == 1);
	/* max_starting as the valve: with 5 starting, a start cap of 5 holds the rest. */
	quota_set_host_caps(&l, (struct quota_caps){0, 5, 0});
	CHECK(!quota_next(&l, 12, &out));
	quota_started(&l, 1000);
	CHECK(quota_next(&l, 13, &out) && out.id == 6);
	/* Expiry. */
	struct quota_req late = req(50, "late", "img", 1);
	late.deadline_ms = 100;
	quota_set_host_caps(&l, (struct quota_caps){1, 0, 0});
	CHECK(quota_request(&l, &late, 20).verdict == QUOTA_QUEUE);
	CHECK(!quota_expired(&l, 99, &out));
	CHECK(quota_expired(&l, 100, &out) && out.id == 50);
	CHECK(quota_cancel(&l, 50) < 0);
	quota_ledger_finish(&l);
}

static void test_estimates(void)
{
	struct quota_ledger l;
	quota_ledger_init(&l);
	quota_set_host_caps(&l, (struct quota_caps){0, 2, 0});
	struct quota_decision d;
	for (int k = 0; k < 2; k++) {
		struct quota_req r = req(k + 1, k ? "b" : "a", "img", 1);
		CHECK(quota_request(&l, &r, 0).verdict == QUOTA_ADMIT);
	}
	struct quota_req c = req(3, "c", "img", 1), e = req(4, "e", "img", 1),
			 f = req(5, "f", "img", 1);
	d = quota_request(&l, &c, 0);
	CHECK(d.verdict == QUOTA_QUEUE && d.estimate_ms == -1); /* nothing measured yet */
	quota_started(&l, 400);
	quota_started(&l, 600);
	struct quota_req out;
	CHECK(quota_next(&l, 1, &out) && out.id == 3);
	/* start limited, one at a time, 500 ms each: place 1 is ~500 ms away, place 2 ~1000 ms */
	quota_set_host_caps(&l, (struct quota_caps){0, 1, 0});
	CHECK(quota_request(&l, &e, 2).verdict == QUOTA_QUEUE);
	CHECK(quota_request(&l, &f, 3).verdict == QUOTA_QUEUE);
	CHECK(quota_position(&l, 4, 5, &d) == 0 && d.position == 1 && d.estimate_ms == 500);
	CHECK(quota_position(&l, 5, 5, &d) == 0 && d.position == 2 && d.estimate_ms == 1000);
	/* session limited: each place needs one end; ends come every 1000 ms */
	quota_set_host_caps(&l, (struct quota_caps){2, 0, 0});
	quota_started(&l, 500);
	quota_ended(&l, "a", "img", 1, false, 10000);
	quota_ended(&l, "b", "img", 1, false, 11000);
	CHECK(quota_next(&l, 11001, &out) && out.id == 4);
	CHECK(quota_position(&l, 5, 11002, &d) == 0);
	CHECK_MSG(d.estimate_ms == 1000 + 500, "estimate %lld", (long long)d.estimate_ms);
	quota_ledger_finish(&l);
}

/* xorshift: deterministic randomness for the property test */
static uint64_t rng = 88172645463325252ULL;
static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

struct live {
	uint64_t id;
	char user[QUOTA_NAME_MAX + 1], image[QUOTA_NAME_MAX + 1];
	unsigned mem;
	bool starting;
};

static void test_property(void)
{
	struct quota_ledger l;
	quota_ledger_init(&l);
	struct quota_caps caps = {4, 2, 2048};
	quota_set_host_caps(&l, caps);
	quota_set_user_default(&l, 2);
	quota_set_image_cap(&l, "i0", 3);
	static struct live live[4096];
	size_t n_live = 0;
	unsigned arrived = 0, admitted = 0, refused = 0, expired = 0, ended = 0;
	uint64_t next_id = 1;
	int64_t now = 0;
	int64_t max_wait = 0;
	for (int step = 0; step < 20000; step++) {
		now += 1 + rnd(50);
		unsigned op = rnd(100);
		if (op < 40 && step < 18000) { /* arrival */
			struct quota_req r = {.id = next_id++, .memory_mb = 128 * (1 + rnd(4))};
			snprintf(r.user, sizeof(r.user), "u%u", rnd(12));
			snprintf(r.image, sizeof(r.image), "i%u", rnd(3));
			r.deadline_ms = rnd(4) ? now + 20000 : 0;
			struct quota_decision d = quota_request(&l, &r, now);
			arrived++;
			if (d.verdict == QUOTA_ADMIT) {
				admitted++;
				live[n_live++] = (struct live){r.id, "", "", r.memory_mb, true};
				snprintf(live[n_live - 1].user, QUOTA_NAME_MAX + 1, "%s", r.user);
				snprintf(live[n_live - 1].image, QUOTA_NAME_MAX + 1, "%s", r.image);
			} else if (d.verdict == QUOTA_REFUSE) {
				refused++;
			} else {
				CHECK(d.position >= 1 && d.position <= l.n_queue);
			}
		} else if (op < 65 && n_live) { /* a start completes */
			size_t k = rnd((unsigned)n_live);
			if (live[k].starting) {
				live[k].starting = false;
				quota_started(&l, 100 + rnd(400));
			}
		} else if (op < 90 && n_live) { /* a session ends */
			size_t k = rnd((unsigned)n_live);
			quota_ended(&l, live[k].user, live[k].image, live[k].mem, live[k].starting,
				    now);
			live[k] = live[--n_live];
			ended++;
		} else if (op < 93) { /* cap change */
			caps = (struct quota_caps){rnd(6), rnd(4), rnd(2) ? 0 : 512 + 256 * rnd(8)};
			quota_set_host_caps(&l, caps);
		}
		struct quota_req out;
		while (quota_expired(&l, now, &out))
			expired++;
		/* Admission: whatever quota_next admits must fit under every cap. */
		for (;;) {
			unsigned s = l.sessions, st = l.starting, mem = l.memory_mb;
			if (!quota_next(&l, now, &out))
				break;
			CHECK(caps.max_sessions == 0 || s < caps.max_sessions);
			CHECK(caps.max_starting == 0 || st < caps.max_starting);
			CHECK(caps.max_memory_mb == 0 || mem + out.memory_mb <= caps.max_memory_mb);
			CHECK(!out.deadline_ms || now < out.deadline_ms);
			if (now - out.enqueued_ms > max_wait)
				max_wait = now - out.enqueued_ms;
			admitted++;
			live[n_live++] = (struct live){out.id, "", "", out.memory_mb, true};
			snprintf(live[n_live - 1].user, QUOTA_NAME_MAX + 1, "%s", out.user);
			snprintf(live[n_live - 1].image, QUOTA_NAME_MAX + 1, "%s", out.image);
		}
		/* Usage the ledger reports equals the truth. */
		CHECK(l.sessions == n_live);
		if (n_live > 4000)
			break;
	}
	/* Drain: everything ends; every waiting request is then admitted or expires. */
	caps = (struct quota_caps){4, 2, 2048};
	quota_set_host_caps(&l, caps);
	for (int round = 0; round < 100000 && (l.n_queue || n_live); round++) {
		now += 10;
		if (n_live) {
			quota_ended(&l, live[n_live - 1].user, live[n_live - 1].image,
				    live[n_live - 1].mem, live[n_live - 1].starting, now);
			n_live--;
			ended++;
		}
		struct quota_req out;
		while (quota_expired(&l, now, &out))
			expired++;
		while (quota_next(&l, now, &out)) {
			admitted++;
			live[n_live++] = (struct live){out.id, "", "", out.memory_mb, true};
			snprintf(live[n_live - 1].user, QUOTA_NAME_MAX + 1, "%s", out.user);
			snprintf(live[n_live - 1].image, QUOTA_NAME_MAX + 1, "%s", out.image);
		}
	}
	CHECK(l.n_queue == 0 && n_live == 0);
	CHECK_MSG(arrived == admitted + refused + expired,
		  "arrived %u = admitted %u + refused %u + "
		  "expired %u",
		  arrived, admitted, refused, expired);
	CHECK(l.sessions == 0 && l.starting == 0 && l.memory_mb == 0);
	fprintf(stderr,
		"property: %u arrivals, %u admitted, %u refused, %u expired, max wait %lld\n",
		arrived, admitted, refused, expired, (long long)max_wait);
	CHECK(admitted > arrived / 2);
	quota_ledger_finish(&l);
}

static void test_pressure(void)
{
	static const struct {
		unsigned max, cores;
		double p;
		unsigned high, crit, want;
	} t[] = {
	    {4, 2, 90.0, 0, 0, 4},			      /* disabled */
	    {4, 2, 10.0, 60, 90, 4},			      /* calm */
	    {4, 2, 60.0, 60, 90, 2},			      /* high: halved */
	    {3, 2, 75.0, 60, 90, 1}, {1, 2, 75.0, 60, 90, 1}, /* never 0 */
	    {4, 2, 90.0, 60, 90, 1},			      /* critical: one at a time */
	    {0, 2, 10.0, 60, 90, 0}, /* unlimited stays unlimited when calm */
	    {0, 8, 70.0, 60, 90, 4}, /* unlimited: half the cores under pressure */
	    {0, 0, 70.0, 60, 90, 1}, {8, 2, 99.0, 60, 0, 4}, /* no critical level */
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		unsigned got =
		    quota_pressure_starting(t[i].max, t[i].cores, t[i].p, t[i].high, t[i].crit);
		CHECK_MSG(got == t[i].want, "case %zu: %u want %u", i, got, t[i].want);
	}
}

static void test_release(void)
{
	/* releasing capacity (warm guests, builds) frees it but is no session end */
	struct quota_ledger l;
	quota_ledger_init(&l);
	struct quota_req r = req(1, "@warm", "img", 256);
	CHECK(quota_try(&l, &r));
	CHECK(l.sessions == 1 && l.starting == 1 && l.memory_mb == 256);
	quota_release(&l, "@warm", "img", 256, true);
	CHECK(l.sessions == 0 && l.starting == 0 && l.memory_mb == 0 && l.n_end == 0);
	CHECK(quota_try(&l, &r));
	quota_ended(&l, "@warm", "img", 256, true, 5);
	CHECK(l.sessions == 0 && l.n_end == 1);
	quota_ledger_finish(&l);
}

/* Requests that arrive before the host can start anything: queued in arrival
 * order, nothing counted until quota_next hands them out. */
static void test_enqueue(void)
{
	struct quota_ledger l;
	quota_ledger_init(&l);
	quota_set_host_caps(&l, (struct quota_caps){4, 2, 0});
	quota_set_user_default(&l, 1);
	struct quota_req a = req(1, "a", "img", 256), b = req(2, "b", "img", 256),
			 c = req(3, "c", "img", 256), a2 = req(4, "a", "img", 256);
	struct quota_decision d = quota_enqueue(&l, &a, 10);
	CHECK(d.verdict == QUOTA_QUEUE && d.position == 1);
	CHECK(quota_enqueue(&l, &b, 11).verdict == QUOTA_QUEUE);
	CHECK(quota_enqueue(&l, &c, 12).verdict == QUOTA_QUEUE);
	/* the per-user limit counts queued requests too */
	d = quota_enqueue(&l, &a2, 13);
	CHECK(d.verdict == QUOTA_REFUSE);
	CHECK(l.sessions == 0 && l.starting == 0 && l.memory_mb == 0);
	struct quota_req out;
	CHECK(quota_next(&l, 20, &out) && out.id == 1);
	CHECK(quota_next(&l, 20, &out) && out.id == 2);
	CHECK(!quota_next(&l, 20, &out)); /* max_starting 2 */
	CHECK(l.sessions == 2 && l.starting == 2);
	quota_started(&l, 100);
	CHECK(quota_next(&l, 21, &out) && out.id == 3);
	CHECK(l.n_queue == 0);
	quota_ledger_finish(&l);
}

/* Back in line: the admission given back, the arrival place and the rounds kept. */
static void test_requeue(void)
{
	struct quota_ledger l;
	quota_ledger_init(&l);
	quota_set_host_caps(&l, (struct quota_caps){4, 1, 0});
	struct quota_req a = req(1, "a", "img", 100), b = req(2, "b", "img", 100),
			 a2 = req(3, "a", "img", 100);
	a.enqueued_ms = 5;
	CHECK(quota_request(&l, &a, 5).verdict == QUOTA_ADMIT);
	CHECK(quota_request(&l, &b, 10).verdict == QUOTA_QUEUE);
	CHECK(l.sessions == 1 && l.starting == 1 && l.memory_mb == 100);
	/* A's start cannot go on now: its slot is given back, it waits ahead of B */
	struct quota_decision d = quota_requeue(&l, &a, true, true, 20);
	CHECK(d.verdict == QUOTA_QUEUE && d.position == 1);
	CHECK(l.sessions == 0 && l.starting == 0 && l.memory_mb == 0 && l.n_end == 0);
	/* a's second request waits a round later, behind B */
	a2.enqueued_ms = 1;
	CHECK(quota_requeue(&l, &a2, false, false, 21).verdict == QUOTA_QUEUE);
	struct quota_req out;
	CHECK(quota_next(&l, 30, &out) && out.id == 1);
	quota_started(&l, 100);
	CHECK(quota_next(&l, 31, &out) && out.id == 2);
	quota_started(&l, 100);
	CHECK(quota_next(&l, 32, &out) && out.id == 3);
	quota_ledger_finish(&l);
}

int main(void)
{
	test_requeue();
	test_enqueue();
	test_pressure();
	test_release();
	test_caps_table();
	test_queue_positions();
	test_fairness();
	test_cap_changes();
	test_estimates();
	test_property();
	return check_done("test_quota");
}
