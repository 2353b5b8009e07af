/*
 * Child processes run and watched through the event loop (like tmux's
 * job.c). A job is started with fork/exec, no shell; its exit is seen
 * through a pidfd, so the loop never waits. A job can also watch a process
 * that is not our child (a guest left running by an earlier broker).
 *
 * int functions return 0 or a negative errno; pointer functions NULL.
 */
#ifndef NESTOR_JOB_H
#define NESTOR_JOB_H

#include <stdbool.h>
#include <sys/types.h>

struct event_base;
struct job;

/*
 * STATUS is the wait status for our own children, or -1 when the process
 * was not our child (its status cannot be known). The job stays valid until
 * job_destroy; it may be destroyed inside this callback.
 */
typedef void (*job_done_fn)(struct job *job, int status, void *arg);

struct job_spec {
	const char *const *argv; /* argv[0] is the program path */
	int stdout_fd;		 /* -1: capture into the job's output buffer */
	int stderr_fd;		 /* -1: capture; -2: same as stdout */
	bool new_session;	 /* setsid(): survives its parent */
	uid_t uid;		 /* 0: keep */
	gid_t gid;
};

/* Start a child. Returns a new job, or NULL with errno set. */
struct job *job_run(struct event_base *base, const struct job_spec *spec, job_done_fn done,
		    void *arg);
/* Watch an existing process. NULL with errno = ESRCH if it is gone. */
struct job *job_watch(struct event_base *base, pid_t pid, job_done_fn done, void *arg);
pid_t job_pid(const struct job *job);
/* Captured output (at most 16 KiB, the rest dropped), NUL-terminated; borrowed. */
const char *job_output(const struct job *job);
int job_signal(struct job *job, int sig);
/* Stop watching (does not kill). Accepts NULL. */
void job_destroy(struct job *job);
/* Describe a wait status in words ("exit 1", "killed by signal 9"). */
void job_status_str(int status, char *buf, unsigned len);

#endif
