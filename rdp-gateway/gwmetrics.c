/*
 * nestor-gateway's metrics in shared memory, and their exposition
 * (gwmetrics.h). The mapping is plain counters and a slot table; every
 * update is one relaxed atomic, so a worker that crashes halfway leaves no
 * lock behind and a scrape never sees a torn value. Never blocks: beyond
 * making the mapping, the one system call here is getsockopt(TCP_INFO) on
 * a worker's own socket.
 */
#include "gwmetrics.h"
#include "prom.h"

#include <errno.h>
#include <event2/buffer.h>
#include <linux/tcp.h> /* tcpi_bytes_received, which glibc's netinet/tcp.h lacks */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* What every process shares: the mapping. */
struct shared {
	uint64_t accepted, crashed;
	uint64_t refused[GW_M_REFUSALS];
	uint64_t signins[GW_M_SIGNINS];
	uint64_t received[GW_M_BACKENDS], sent[GW_M_BACKENDS];
	struct prom_hist handshake;
	struct prom_hist first_frame[GW_M_BACKENDS]; /* GW_M_NONE's unused */
	uint32_t slot[];			     /* 0: free; else 1 + phase | backend << 8 */
};

/*
 * The handle, in each process's own memory (copied by fork): a worker that
 * scribbles over the mapping cannot make a scrape read past its end.
 */
struct gw_metrics {
	size_t size; /* of the mapping */
	unsigned slots;
	struct shared *sh;
};

static const char *const phase_names[GW_M_PHASES] = {"handshake", "login", "wait", "guest", "fail"};
static const char *const backend_names[GW_M_BACKENDS] = {"none", "console", "rdp"};
static const char *const refusal_names[GW_M_REFUSALS] = {"limit", "per_address", "rate", "error"};
static const char *const signin_names[GW_M_SIGNINS] = {"ok", "denied", "refused", "error"};

size_t gw_metrics_size(unsigned slots)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t bytes = offsetof(struct shared, slot) + (size_t)slots * sizeof(uint32_t);
	return (bytes + page - 1) / page * page;
}

struct gw_metrics *gw_metrics_create(unsigned slots)
{
	struct gw_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->size = gw_metrics_size(slots);
	m->slots = slots;
	/* anonymous: zeroed, and shared with every process forked after this */
	void *p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		free(m);
		errno = e;
		return NULL;
	}
	m->sh = p;
	return m;
}

void gw_metrics_destroy(struct gw_metrics *m)
{
	if (!m)
		return;
	munmap(m->sh, m->size);
	free(m);
}

int gw_metrics_protect(struct gw_metrics *m)
{
	if (m && mprotect(m->sh, m->size, PROT_READ) < 0)
		return -errno;
	return 0;
}

void gw_metrics_slot_set(struct gw_metrics *m, unsigned slot, enum gw_m_phase phase,
			 enum gw_m_backend backend)
{
	if (!m || slot >= m->slots || phase >= GW_M_PHASES || backend >= GW_M_BACKENDS)
		return;
	__atomic_store_n(&m->sh->slot[slot], (uint32_t)(1 + phase) | (uint32_t)backend << 8,
			 __ATOMIC_RELAXED);
}

void gw_metrics_slot_clear(struct gw_metrics *m, unsigned slot)
{
	if (m && slot < m->slots)
		__atomic_store_n(&m->sh->slot[slot], 0, __ATOMIC_RELAXED);
}

void gw_metrics_accepted(struct gw_metrics *m)
{
	if (m)
		prom_add(&m->sh->accepted, 1);
}

void gw_metrics_refused(struct gw_metrics *m, enum gw_m_refusal why)
{
	if (m && why < GW_M_REFUSALS)
		prom_add(&m->sh->refused[why], 1);
}

void gw_metrics_crashed(struct gw_metrics *m)
{
	if (m)
		prom_add(&m->sh->crashed, 1);
}

void gw_metrics_signin(struct gw_metrics *m, enum gw_m_signin result)
{
	if (m && result < GW_M_SIGNINS)
		prom_add(&m->sh->signins[result], 1);
}

void gw_metrics_handshake(struct gw_metrics *m, double seconds)
{
	if (m)
		prom_observe(&m->sh->handshake, &prom_fast, seconds);
}

void gw_metrics_first_frame(struct gw_metrics *m, enum gw_m_backend backend, double seconds)
{
	/* a queue and a cold boot may come first: minutes, not milliseconds */
	if (m && backend != GW_M_NONE && backend < GW_M_BACKENDS)
		prom_observe(&m->sh->first_frame[backend], &prom_slow, seconds);
}

enum gw_m_backend gw_metrics_backend(const char *name)
{
	for (unsigned b = GW_M_NONE + 1; b < GW_M_BACKENDS; b++)
		if (!strcmp(backend_names[b], name))
			return (enum gw_m_backend)b;
	return GW_M_NONE;
}

void gw_metrics_tcp_account(struct gw_metrics *m, struct gw_metrics_tcp *t, int fd,
			    enum gw_m_backend backend)
{
	if (!m || fd < 0 || backend >= GW_M_BACKENDS)
		return;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
		return; /* not TCP, or a kernel older than 4.1 */
	if (ti.tcpi_bytes_received > t->received) {
		prom_add(&m->sh->received[backend], ti.tcpi_bytes_received - t->received);
		t->received = ti.tcpi_bytes_received;
	}
	if (ti.tcpi_bytes_acked > t->acked) {
		prom_add(&m->sh->sent[backend], ti.tcpi_bytes_acked - t->acked);
		t->acked = ti.tcpi_bytes_acked;
	}
}

/* A phase and backend a connection can be in (the gauge's series, zeros included). */
static bool possible(unsigned phase, unsigned backend)
{
	return backend == GW_M_NONE ? phase != GW_M_GUEST : phase >= GW_M_GUEST;
}

static void label1(char *dst, size_t n, const char *key, const char *value)
{
	dst[0] = '\0';
	prom_label(dst, n, key, value);
}

void gw_metrics_render(struct evbuffer *out, void *arg)
{
	const struct gw_metrics *m = arg;
	unsigned n[GW_M_PHASES][GW_M_BACKENDS] = {{0}};
	for (unsigned i = 0; i < m->slots; i++) {
		uint32_t v = __atomic_load_n(&m->sh->slot[i], __ATOMIC_RELAXED);
		unsigned phase = (v & 0xff) - 1, backend = v >> 8 & 0xff;
		if (v && phase < GW_M_PHASES && backend < GW_M_BACKENDS)
			n[phase][backend]++;
	}
	char l[64];
	prom_family(out, "nestor_gateway_connections", "gauge",
		    "Connections now, by phase and by the backend of the guest they have shown "
		    "(none before the guest).");
	for (unsigned ph = 0; ph < GW_M_PHASES; ph++) {
		for (unsigned b = 0; b < GW_M_BACKENDS; b++) {
			if (!possible(ph, b) && !n[ph][b])
				continue;
			label1(l, sizeof(l), "phase", phase_names[ph]);
			prom_label(l, sizeof(l), "backend", backend_names[b]);
			prom_sample(out, "nestor_gateway_connections", l, n[ph][b]);
		}
	}
	prom_scalar(out, "nestor_gateway_connections_accepted_total", "counter",
		    "Connections accepted and given a worker process.",
		    (double)prom_get(&m->sh->accepted));
	prom_by_label(
	    out, "nestor_gateway_connections_refused_total", "counter",
	    "Connections refused by the listener: max_connections (limit), max_per_address, "
	    "rate_per_address (rate), or no worker could be started (error).",
	    "reason", refusal_names, m->sh->refused, GW_M_REFUSALS);
	prom_scalar(out, "nestor_gateway_worker_crashes_total", "counter",
		    "Workers that ended by a signal other than SIGTERM (one connection each).",
		    (double)prom_get(&m->sh->crashed));
	prom_by_label(out, "nestor_gateway_sign_ins_total", "counter",
		      "Sign-ins answered by nestord: a session (ok), wrong credentials (denied), a "
		      "refusal (refused: throttled, not allowed, unknown app) or none (error).",
		      "result", signin_names, m->sh->signins, GW_M_SIGNINS);
	prom_family(out, "nestor_gateway_handshake_seconds", "histogram",
		    "From the accept to the client's activation (the gateway can draw).");
	prom_hist_write(out, "nestor_gateway_handshake_seconds", NULL, &prom_fast,
			&m->sh->handshake);
	prom_family(out, "nestor_gateway_first_frame_seconds", "histogram",
		    "From the accept (or the sign-in on the login screen) to the first frame of "
		    "the guest sent to the client, by backend.");
	for (unsigned b = GW_M_NONE + 1; b < GW_M_BACKENDS; b++) {
		label1(l, sizeof(l), "backend", backend_names[b]);
		prom_hist_write(out, "nestor_gateway_first_frame_seconds", l, &prom_slow,
				&m->sh->first_frame[b]);
	}
	prom_by_label(
	    out, "nestor_gateway_received_bytes_total", "counter",
	    "Bytes received on clients' TCP connections, by the backend of the guest shown "
	    "(none before the guest).",
	    "backend", backend_names, m->sh->received, GW_M_BACKENDS);
	prom_by_label(
	    out, "nestor_gateway_sent_bytes_total", "counter",
	    "Bytes sent on clients' TCP connections and acknowledged by the client, by the "
	    "backend of the guest shown (none before the guest).",
	    "backend", backend_names, m->sh->sent, GW_M_BACKENDS);
}
