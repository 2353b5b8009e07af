/*
 * Start-up after an earlier nestord: live session rows reattached or put
 * back in line, warm guests reattached, interrupted template builds run
 * again, and what no row owns (overlays, guest dirs, orphaned QEMUs,
 * unused templates) swept. Runs once, on the loop, before the API serves.
 */
#ifndef NESTOR_BRK_RESTORE_H
#define NESTOR_BRK_RESTORE_H

#include "host.h"

struct sessions;
struct warm_pool;
struct templates;

void restore_all(struct host *h, struct sessions *ss, struct warm_pool *wp, struct templates *tpl);

#endif
