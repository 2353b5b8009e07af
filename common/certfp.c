#include "certfp.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

static int fingerprint(X509 *x, char out[CERTFP_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	if (!x || !X509_digest(x, EVP_sha256(), md, &n) || n != 32)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		snprintf(out + 3 * i, CERTFP_LEN - 3 * i, i + 1 < n ? "%02X:" : "%02X", md[i]);
	return 0;
}

int certfp_pem(const char *pem, size_t len, char out[CERTFP_LEN])
{
	out[0] = '\0';
	if (len > 1 << 20)
		return -EINVAL;
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	int r = fingerprint(x, out);
	X509_free(x);
	BIO_free(b);
	return r;
}

int certfp_file(const char *path, char out[CERTFP_LEN])
{
	out[0] = '\0';
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	int r = fingerprint(x, out);
	X509_free(x);
	return r;
}

bool certfp_equal(const char *a, const char *b)
{
	size_t n = 0;
	for (;; a++, b++) {
		while (*a == ':')
			a++;
		while (*b == ':')
			b++;
		if (!*a || !*b)
			return !*a && !*b && n > 0;
		if (toupper((unsigned char)*a) != toupper((unsigned char)*b))
			return false;
		n++;
	}
}
