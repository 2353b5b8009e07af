/* Start-up after an earlier nestord (see restore.h). */
#include "restore.h"
#include "log.h"
#include "sessions.h"
#include "store.h"
#include "templates.h"
#include "util.h"
#include "warm.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct restore {
	struct host *h;
	struct sessions *ss;
	struct warm_pool *wp;
};

/* Kill a QEMU left running from guest dir DIR (nobody can reattach it). */
static void kill_orphan(const char *dir)
{
	char needle[BRK_PATH_MAX + 32];
	pid_t pids[16];
	snprintf(needle, sizeof(needle), "%.4000s/qmp.sock", dir);
	size_t n = util_procs_with_arg(NULL, needle, pids, 16);
	for (size_t i = 0; i < n && i < 16; i++) {
		log_warn("sweep: killing orphaned QEMU pid %d (%s)", (int)pids[i], dir);
		kill(pids[i], SIGKILL);
	}
}

/*
 * A guest that was still being restored or resumed when nestord went away
 * cannot be trusted half-way: its QEMU and files go, and the session goes
 * back in line where it arrived (it only costs one more template start). A
 * cold boot is reattached and probed again instead: that may be minutes of
 * work.
 */
static bool restart_instead(const struct db_session *rec)
{
	return !strcmp(rec->state, "starting") &&
	       (rec->pid <= 0 || strcmp(rec->start_path, "cold") != 0);
}

static void restore_session(const struct db_session *rec, void *arg)
{
	struct restore *r = arg;
	bool restart = restart_instead(rec);
	if (restart) {
		char dir[BRK_PATH_MAX + 40];
		snprintf(dir, sizeof(dir), "%.4000s/%s", r->h->vm_dir, rec->id);
		kill_orphan(dir);
		util_rmdir_flat(dir);
		if (rec->overlay[0])
			unlink(rec->overlay);
	}
	sess_restore(r->ss, rec, restart);
}

static void restore_warm(const struct db_warm *row, void *arg)
{
	struct restore *r = arg;
	if (sess_find(r->ss, row->id)) {
		/* handed out: the session has it */
		store_warm_del(r->h->store, row->id);
		return;
	}
	warm_restore(r->wp, row);
}

/* Overlays and guest dirs that belong to no live session are leftovers of a crash. */
static void sweep(struct restore *r)
{
	const char *dirs[] = {r->h->cfg.overlay_dir, r->h->vm_dir};
	for (unsigned k = 0; k < 2; k++) {
		DIR *d = opendir(dirs[k]);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char id[64];
			snprintf(id, sizeof(id), "%.63s", e->d_name);
			char *dot = strchr(id, '.');
			if (dot)
				*dot = '\0';
			if (sess_owns(r->ss, id) || warm_owns(r->wp, id))
				continue;
			char path[BRK_PATH_MAX + 80];
			snprintf(path, sizeof(path), "%s/%s", dirs[k], e->d_name);
			log_info("sweep: removing leftover %s", path);
			if (k == 0) {
				unlink(path);
			} else {
				kill_orphan(path);
				util_rmdir_flat(path);
			}
		}
		closedir(d);
	}
}

void restore_all(struct host *h, struct sessions *ss, struct warm_pool *wp, struct templates *tpl)
{
	struct restore r = {h, ss, wp};
	store_sessions_live(h->store, restore_session, &r);
	store_warms(h->store, restore_warm, &r);
	tpl_restore(tpl);
	sweep(&r);
	tpl_sweep(tpl);
}
