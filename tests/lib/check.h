/*
 * Minimal test harness: CHECK records a failure with its location and goes
 * on; the test's exit status is the verdict (0 pass, 1 fail, 77 skip only
 * for a facility that is truly missing).
 */
#ifndef NESTOR_CHECK_H
#define NESTOR_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int check_failures;
extern int check_count;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		check_count++;                                                                     \
		if (!(cond)) {                                                                     \
			check_failures++;                                                          \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
		}                                                                                  \
	} while (0)

#define CHECK_MSG(cond, ...)                                                                       \
	do {                                                                                       \
		check_count++;                                                                     \
		if (!(cond)) {                                                                     \
			check_failures++;                                                          \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

static inline int check_streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}
static inline const char *check_s(const char *a)
{
	return a ? a : "(null)";
}
#define CHECK_STR(a, b) CHECK_MSG(check_streq((a), (b)), "'%s' != '%s'", check_s(a), check_s(b))

/* Print the summary and return the exit status. */
int check_done(const char *name);

#endif
