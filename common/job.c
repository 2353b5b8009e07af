/*
 * Child processes through the loop. fork/exec with a clean fd table;
 * exit seen on a pidfd (Linux >= 5.3), output captured through a pipe read
 * by the loop. Nothing here blocks: waitpid is only called once the pidfd
 * says the process has exited.
 */
#include "job.h"
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define JOB_OUTPUT_MAX (16 * 1024)

struct job {
	pid_t pid;
	int pidfd;
	bool own_child;
	int out_fd;
	struct event *ev_exit;
	struct event *ev_out;
	job_done_fn done;
	void *arg;
	char *out;
	size_t out_len;
	bool exited;
	int status;
	bool in_cb;
	bool doomed;
};

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void job_free(struct job *job)
{
	if (job->ev_exit)
		event_free(job->ev_exit);
	if (job->ev_out)
		event_free(job->ev_out);
	if (job->pidfd >= 0)
		close(job->pidfd);
	if (job->out_fd >= 0)
		close(job->out_fd);
	free(job->out);
	free(job);
}

static void job_finish(struct job *job)
{
	job->in_cb = true;
	job->done(job, job->status, job->arg);
	job->in_cb = false;
	if (job->doomed)
		job_free(job);
}

static void drain_output(struct job *job)
{
	char buf[4096];
	for (;;) {
		ssize_t r = read(job->out_fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0 || errno != EAGAIN) {
				event_del(job->ev_out);
				close(job->out_fd);
				job->out_fd = -1;
			}
			return;
		}
		size_t room = JOB_OUTPUT_MAX - job->out_len;
		size_t n = (size_t)r < room ? (size_t)r : room;
		memcpy(job->out + job->out_len, buf, n);
		job->out_len += n;
		job->out[job->out_len] = '\0';
	}
}

static void on_exit_(evutil_socket_t fd, short what, void *arg)
{
	struct job *job = arg;
	if (job->own_child) {
		int st;
		pid_t r = waitpid(job->pid, &st, WNOHANG);
		if (r == 0)
			return; /* spurious */
		job->status = r == job->pid ? st : -1;
	} else {
		job->status = -1;
	}
	event_del(job->ev_exit);
	job->exited = true;
	/* The child is gone: whatever it wrote is in the pipe now. */
	if (job->out_fd >= 0)
		drain_output(job);
	job_finish(job);
}

static void on_output(evutil_socket_t fd, short what, void *arg)
{
	drain_output(arg);
}

static struct job *job_alloc(struct event_base *base, pid_t pid, job_done_fn done, void *arg)
{
	struct job *job = calloc(1, sizeof(*job));
	if (!job)
		return NULL;
	job->pid = pid;
	job->pidfd = -1;
	job->out_fd = -1;
	job->done = done;
	job->arg = arg;
	job->out = calloc(1, JOB_OUTPUT_MAX + 1);
	if (!job->out) {
		free(job);
		return NULL;
	}
	job->pidfd = pidfd_open_(pid);
	if (job->pidfd < 0)
		goto fail;
	job->ev_exit = event_new(base, job->pidfd, EV_READ | EV_PERSIST, on_exit_, job);
	if (!job->ev_exit || event_add(job->ev_exit, NULL) < 0)
		goto fail;
	return job;
fail:;
	int e = errno ? errno : ENOMEM;
	job_free(job);
	errno = e;
	return NULL;
}

struct job *job_watch(struct event_base *base, pid_t pid, job_done_fn done, void *arg)
{
	return job_alloc(base, pid, done, arg);
}

static void child_exec(const struct job_spec *spec, int out_w)
{
	/* Only async-signal-safe calls from here on. */
	int devnull = open("/dev/null", O_RDWR);
	if (devnull < 0)
		_exit(126);
	int out = spec->stdout_fd >= 0 ? spec->stdout_fd : out_w;
	int err = spec->stderr_fd >= 0 ? spec->stderr_fd : out_w;
	if (spec->stderr_fd == -2)
		err = out;
	if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(126);
	/*
	 * Signals are blocked across fork (see job_run): reset every handler
	 * before unblocking. An inherited libevent handler would otherwise
	 * forward a signal meant for this child (say SIGTERM right after a
	 * start) to the parent's loop, as if the parent had received it.
	 */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (spec->new_session && setsid() < 0)
		_exit(126);
	umask(077); /* sockets, logs and disks a child creates are private */
	if (spec->gid && (setgroups(0, NULL) < 0 || setgid(spec->gid) < 0))
		_exit(126);
	if (spec->uid && setuid(spec->uid) < 0)
		_exit(126);
	syscall(SYS_close_range, 3U, ~0U, 0U);
	execv(spec->argv[0], (char *const *)spec->argv);
	static const char msg[] = "exec failed\n";
	ssize_t ignored = write(2, msg, sizeof(msg) - 1);
	(void)ignored;
	_exit(127);
}

struct job *job_run(struct event_base *base, const struct job_spec *spec, job_done_fn done,
		    void *arg)
{
	int pipefd[2] = {-1, -1};
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return NULL;
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid_t pid = fork();
	if (pid == 0)
		child_exec(spec, pipefd[1]);
	int fork_errno = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		errno = fork_errno;
		return NULL;
	}
	close(pipefd[1]);
	struct job *job = job_alloc(base, pid, done, arg);
	if (!job) {
		int e = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0); /* just killed: returns at once */
		close(pipefd[0]);
		errno = e;
		return NULL;
	}
	job->own_child = true;
	job->out_fd = pipefd[0];
	fcntl(job->out_fd, F_SETFL, O_NONBLOCK);
	job->ev_out = event_new(base, job->out_fd, EV_READ | EV_PERSIST, on_output, job);
	if (!job->ev_out || event_add(job->ev_out, NULL) < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		job_free(job);
		errno = ENOMEM;
		return NULL;
	}
	return job;
}

pid_t job_pid(const struct job *job)
{
	return job->pid;
}

const char *job_output(const struct job *job)
{
	return job->out;
}

int job_signal(struct job *job, int sig)
{
	if (job->exited)
		return -ESRCH;
	/* pidfd_send_signal cannot hit a recycled pid. */
	if (syscall(SYS_pidfd_send_signal, job->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

void job_destroy(struct job *job)
{
	if (!job)
		return;
	if (job->in_cb) {
		job->doomed = true;
		return;
	}
	job_free(job);
}

void job_status_str(int status, char *buf, unsigned len)
{
	if (status == -1)
		snprintf(buf, len, "exited (status unknown)");
	else if (WIFEXITED(status))
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "status 0x%x", status);
}
