/*
 * Fuzz target for what nestor-portal reads (portal/pages.c): the first
 * byte picks the reader, the rest is its input: 'm' nestord's /v1/me answer
 * (then every page, .rdp file and the feed written from it), 'b' an
 * Authorization header, 'c' a Cookie header, 'h' a Host header. Built for
 * libFuzzer with -Dfuzz=true (clang), and replayed over corpus/portal by
 * replay.c in every test run.
 */
#include "pages.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 20)
		return 0;
	char *s = malloc(size);
	if (!s)
		abort();
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	static struct pt_me me;
	char a[300], b[300], tok[65];
	switch (data[0]) {
	case 'm':
		if (pt_me_parse(s, size - 1, &me) == 0) {
			struct evbuffer *out = evbuffer_new();
			pt_page_apps(out, "t", &me, "csrf", "https://h/RDWeb/Feed/webfeed.aspx",
				     true);
			for (unsigned i = 0; i < me.n; i++)
				pt_rdp_file(out, &me.apps[i], "h:3389", me.user);
			pt_feed(out, "t", "h", &me, 0, 0);
			evbuffer_free(out);
		}
		break;
	case 'b':
		pt_basic_parse(s, a, 65, b, 257);
		break;
	case 'c':
		pt_cookie_token(s, tok);
		break;
	case 'h':
		pt_host_name(s, a, sizeof(a));
		pt_rdp_address("", s, "127.0.0.1", 3390, b, sizeof(b));
		break;
	default:
		break;
	}
	free(s);
	return 0;
}
