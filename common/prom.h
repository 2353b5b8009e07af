/*
 * Prometheus metrics: the text exposition format (0.0.4) and a /metrics
 * server on libevent's evhttp. A program keeps its own counters; at each
 * scrape its render callback writes them with these helpers.
 *
 * A histogram is plain counters, so it can live in memory shared by several
 * processes (the gateway's workers): prom_observe updates it with relaxed
 * atomics, and a scrape may see one observation half-counted, never a torn
 * value. Histograms here measure durations, in seconds.
 */
#ifndef NESTOR_PROM_H
#define NESTOR_PROM_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;

#define PROM_BUCKETS_MAX 14

struct prom_hist {
	uint64_t bucket[PROM_BUCKETS_MAX + 1]; /* per bucket, not cumulative; the last is +Inf */
	uint64_t count;
	uint64_t sum_us; /* microseconds */
};

/* Upper bounds in seconds, ascending, at most PROM_BUCKETS_MAX. */
struct prom_bounds {
	unsigned n;
	double le[PROM_BUCKETS_MAX];
};

/* 5 ms .. 60 s: connects, first frames, template and warm starts */
extern const struct prom_bounds prom_fast;
/* 100 ms .. 30 min: queue waits and cold boots */
extern const struct prom_bounds prom_slow;

void prom_observe(struct prom_hist *h, const struct prom_bounds *b, double seconds);
/* A relaxed atomic add, for counters in shared memory. */
void prom_add(uint64_t *counter, uint64_t n);
uint64_t prom_get(const uint64_t *counter);

/* # HELP and # TYPE lines; TYPE is counter, gauge or histogram. */
void prom_family(struct evbuffer *out, const char *name, const char *type, const char *help);
/* One sample; LABELS is NULL or preformatted (prom_label), e.g. state="queued". */
void prom_sample(struct evbuffer *out, const char *name, const char *labels, double v);
/* A family of one sample: its # HELP and # TYPE lines and V. */
void prom_scalar(struct evbuffer *out, const char *name, const char *type, const char *help,
		 double v);
/* A family of one label KEY: a sample per NAMES[i] with the value V[i] (read atomically). */
void prom_by_label(struct evbuffer *out, const char *name, const char *type, const char *help,
		   const char *key, const char *const *names, const uint64_t *v, unsigned n);
void prom_hist_write(struct evbuffer *out, const char *name, const char *labels,
		     const struct prom_bounds *b, const struct prom_hist *h);
/*
 * Append KEY="VALUE" (escaped, comma-separated after the first) to DST, a
 * NUL-terminated buffer of N bytes. Returns -ENOSPC when it does not fit
 * (DST is left as it was).
 */
int prom_label(char *dst, size_t n, const char *key, const char *value);

typedef void (*prom_render_fn)(struct evbuffer *out, void *arg);
struct prom_server;
/*
 * Serve GET /metrics on LISTEN (HOST:PORT or [V6]:PORT); another path is
 * answered 404, another method 501. Requests are bounded (headers 8 KiB, no body, 10 s).
 * Returns NULL with ERR set when the address is bad or cannot be bound.
 */
struct prom_server *prom_serve(struct event_base *base, const char *listen, prom_render_fn render,
			       void *arg, char *err, size_t errlen);
void prom_server_free(struct prom_server *ps);

#endif
