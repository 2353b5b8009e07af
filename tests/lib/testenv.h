/*
 * Helpers for integration tests: a scratch directory, the test guest's
 * profile, and running the loop until a condition or a deadline.
 */
#ifndef NESTOR_TESTENV_H
#define NESTOR_TESTENV_H

#include "launcher.h"

#include <stdbool.h>

struct event_base;

/* Make a fresh scratch dir under $TMPDIR (short, for socket paths); returns a new string. */
char *testenv_scratch(const char *name);
/* The test guest directory ($NESTOR_TEST_GUEST); exits 77 when it is not set. */
const char *testenv_guest_dir(void);
/* A cold-boot profile of the test guest; strings point into static storage. */
void testenv_profile(struct lnch_profile *p);
/* Run BASE until *FLAG is true or TIMEOUT_MS passes; returns *FLAG. */
bool testenv_run_until(struct event_base *base, const bool *flag, int timeout_ms);
/* Run BASE until COND(ARG) or TIMEOUT_MS; returns the last COND. */
bool testenv_wait(struct event_base *base, bool (*cond)(void *), void *arg, int timeout_ms);
/* Entries of DIR other than dot files (0 when it does not exist). */
int testenv_count_entries(const char *dir);
/* Remove a scratch dir tree (best effort). */
void testenv_rmtree(const char *dir);
/* Read a whole small file; returns a new buffer or NULL. */
char *testenv_slurp(const char *path, size_t *len);
/* Process PID's proportional set size in KiB (0: this process), or -1. */
long testenv_pss_kib(pid_t pid);

#endif
