/*
 * A certificate's fingerprint as hosts pin it: the SHA-256 of its DER
 * encoding, as "AB:CD:..." (what `openssl x509 -fingerprint -sha256`
 * prints, so an admin can compare by eye).
 */
#ifndef NESTOR_CERTFP_H
#define NESTOR_CERTFP_H

#include <stdbool.h>
#include <stddef.h>

#define CERTFP_LEN 96 /* 32 bytes as hex pairs and colons, and the NUL */

/* The first certificate in PEM (LEN bytes); 0, or -EINVAL if there is none. */
int certfp_pem(const char *pem, size_t len, char out[CERTFP_LEN]);
/* The same from a PEM file; a negative errno if it cannot be read. */
int certfp_file(const char *path, char out[CERTFP_LEN]);
/* Two fingerprints are the same (case and colons aside; "" never matches). */
bool certfp_equal(const char *a, const char *b);

#endif
