/*
 * The floor of an RDP connect: an X.224 connection request asking for TLS,
 * its confirm, and the TLS handshake, against HOST PORT, COUNT times in a
 * row; prints the median and the slowest in milliseconds. A benchmark
 * (docs/performance.md), not a test.
 *
 * usage: tls_ping HOST PORT [COUNT]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One handshake: its time in ms, or -1. */
static double once(SSL_CTX *ctx, const struct sockaddr_in *sa)
{
	static const unsigned char cr[] = {0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00,
					   0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08,
					   0x00, 0x01, 0x00, 0x00, 0x00};
	unsigned char cc[19];
	double t0 = now_ms(), took = -1;
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (s < 0 || connect(s, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ||
	    write(s, cr, sizeof(cr)) != (ssize_t)sizeof(cr))
		goto out;
	size_t got = 0;
	while (got < sizeof(cc)) {
		ssize_t r = read(s, cc + got, sizeof(cc) - got);
		if (r <= 0)
			goto out;
		got += (size_t)r;
	}
	SSL *ssl = SSL_new(ctx);
	if (ssl && SSL_set_fd(ssl, s) == 1 && SSL_connect(ssl) == 1)
		took = now_ms() - t0;
	SSL_free(ssl);
	ERR_clear_error();
out:
	if (s >= 0)
		close(s);
	return took;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: tls_ping HOST PORT [COUNT]\n");
		return 2;
	}
	int n = argc > 3 ? atoi(argv[3]) : 20;
	if (n < 1 || n > 1000)
		n = 20;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "tls_ping: %s is not an IPv4 address\n", argv[1]);
		return 2;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	double *t = calloc((size_t)n, sizeof(*t));
	int ok = 0;
	for (int i = 0; ctx && t && i < n; i++) {
		double ms = once(ctx, &sa);
		if (ms >= 0)
			t[ok++] = ms;
	}
	if (!ok) {
		fprintf(stderr, "tls_ping: no handshake completed\n");
		return 1;
	}
	qsort(t, (size_t)ok, sizeof(*t), cmp);
	printf("x224+tls handshake ms: n %d p50 %.1f max %.1f\n", ok, t[ok / 2], t[ok - 1]);
	free(t);
	SSL_CTX_free(ctx);
	return 0;
}
