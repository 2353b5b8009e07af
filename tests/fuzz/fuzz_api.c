/*
 * Fuzz target for the API's request parser (broker/api_parse.c): a raw HTTP
 * request (request line, headers, blank line, body, as the files of
 * corpus/api) is split minimally, as evhttp would hand it over, and parsed.
 * Built for libFuzzer with -Dfuzz=true (clang), and replayed over the corpus
 * by replay.c in every test run.
 */
#include "api_parse.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated copy of LEN bytes of P. */
static char *dup_bytes(const char *p, size_t len)
{
	char *s = malloc(len + 1);
	if (!s)
		abort();
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

static const char *find(const char *p, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(p + i, needle, n) == 0)
			return p + i;
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	/* the request line: METHOD SP URI [SP VERSION] up to the first line end */
	size_t line = 0;
	while (line < size && in[line] != '\r' && in[line] != '\n')
		line++;
	size_t m = 0;
	while (m < line && in[m] != ' ')
		m++;
	size_t u = m < line ? m + 1 : line, ue = u;
	while (ue < line && in[ue] != ' ')
		ue++;
	/* the body: whatever follows the first blank line */
	const char *crlf = find(in, size, "\r\n\r\n"), *lf = find(in, size, "\n\n");
	const char *body = crlf && (!lf || crlf < lf) ? crlf + 4 : lf ? lf + 2 : in + size;
	size_t blen = (size_t)(in + size - body);

	char *method = dup_bytes(in, m), *uri = dup_bytes(in + u, ue - u);
	struct api_req r;
	char err[512] = "";
	int st = api_parse(method, uri, body, blen, &r, err, sizeof(err));
	if (st == 0) {
		if (r.route < 0 || r.route >= API_ROUTE_COUNT)
			abort();
		if (strcmp(api_route_method(r.route), method) != 0)
			abort();
		if (api_route_has_body(r.route) != (r.body != NULL))
			abort();
		if (r.body && !json_object_is_type(r.body, json_type_object))
			abort();
		if ((r.param != API_P_NONE) != (r.name[0] != '\0'))
			abort();
		if (r.name[0] && !util_name_valid(r.name))
			abort();
		if (r.ended > 1000 || r.limit > 10000 || r.timeout > API_WAIT_MAX_S)
			abort();
	} else {
		if (st < 400 || st > 499 || !err[0] || r.body)
			abort();
	}
	api_req_free(&r);
	if (r.body)
		abort();
	free(method);
	free(uri);
	return 0;
}
