/*
 * Small helpers shared by every program: paths, files, time, ids.
 * int functions return 0 or a negative errno.
 */
#ifndef NESTOR_UTIL_H
#define NESTOR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Create DIR and its parents with MODE for the ones created. */
int util_mkdir_p(const char *dir, mode_t mode);
/* Remove DIR and the files directly inside it (no recursion into subdirs). */
int util_rmdir_flat(const char *dir);
/* Read at most MAX bytes of PATH into a new NUL-terminated buffer. */
int util_read_file(const char *path, size_t max, char **out, size_t *len);
/*
 * Processes with an argument containing NEEDLE (and, if PROG is not NULL, an
 * argv[0] containing PROG): at most MAX pids into OUT. Returns how many were
 * found (may exceed MAX). Reads /proc; for start-up sweeps and tests.
 */
size_t util_procs_with_arg(const char *prog, const char *needle, pid_t *out, size_t max);
/* Resident memory of PID (/proc/PID/statm), 0 when it is gone. */
uint64_t util_rss_bytes(pid_t pid);
/* Monotonic clock in milliseconds. */
int64_t util_now_ms(void);
/* Wall clock in seconds. */
int64_t util_wall_s(void);
/* Fill OUT (at least 2*BYTES+1) with random hex. */
int util_random_hex(char *out, size_t bytes);
/* A secret SECRET ("" never matches) equals GIVEN (NULL never), in time not telling how much. */
bool util_secret_eq(const char *secret, const char *given);
/*
 * Started as root: become USER (its groups too) for good; logs it. Not root,
 * or USER "": nothing to do. 0, or a negative errno with ERR set.
 */
int util_become(const char *user, char *err, size_t errlen);
/* printf into a new string; NULL on allocation failure. */
char *util_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* true when NAME is 1..64 chars of [A-Za-z0-9._-] not starting with '.' or '-'. */
bool util_name_valid(const char *name);

#endif
