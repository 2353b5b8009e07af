/*
 * Fuzz target for the QMP wire parser: arbitrary bytes are framed into
 * lines and each line parsed, exactly as qmp_client.c does with QEMU's bytes.
 * Built for libFuzzer with -Dfuzz=true (clang), and replayed over the corpus
 * by replay.c in every test run.
 */
#include "qmp.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t left = size;
	while (left > 0) {
		size_t len;
		int r = qmp_frame_next(p, left, 4096, &len);
		if (r <= 0)
			len = left; /* the client closes here; parse the rest anyway */
		struct qmp_msg m;
		const char *why;
		if (qmp_msg_parse(p, len, &m, &why) == 0) {
			if (m.kind == QMP_MSG_EVENT && !m.event)
				__builtin_trap();
			if (m.kind == QMP_MSG_ERROR && (!m.err_class || !m.err_desc))
				__builtin_trap();
			qmp_msg_finish(&m);
		} else if (!why) {
			__builtin_trap();
		}
		p += len;
		left -= len;
	}
	return 0;
}
