/*
 * Base images: what qemu-img says about a file (pure parser), an
 * asynchronous inspection (qemu-img info + sha256sum as children of the
 * loop), and the cheap size+mtime check made before every start.
 *
 * int functions return 0 or a negative errno; ERR gets the reason.
 */
#ifndef NESTOR_IMG_IMAGE_H
#define NESTOR_IMG_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

struct img_info {
	char format[16];
	uint64_t virtual_size;
	bool has_backing;
	char backing[4096]; /* as recorded in the image */
	bool encrypted;
};

/* Parse `qemu-img info --output=json`. Refuses what a base cannot be. */
int img_info_parse(const char *json, struct img_info *out, char *err, size_t errlen);

struct img_facts {
	struct img_info info;
	char sha256[65];
	uint64_t size;
	int64_t mtime_ns;
};

typedef void (*img_inspect_fn)(int err, const struct img_facts *facts, const char *msg, void *arg);

/*
 * Inspect PATH through the loop: qemu-img info, then sha256sum; CB runs once
 * from the loop. A backing chain is refused unless its file is under
 * ALLOW_DIR (NULL: no backing allowed). Returns 0 or a negative errno.
 */
int img_inspect(struct event_base *base, const char *qemu_img, const char *path,
		const char *allow_dir, img_inspect_fn cb, void *arg);

/* Stat PATH and compare with the recorded size and mtime. */
int img_verify_unchanged(const char *path, uint64_t size, int64_t mtime_ns, char *err,
			 size_t errlen);

#endif
