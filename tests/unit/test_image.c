/* Table tests for the qemu-img info parser (images/image.c, pure part). */
#include "check.h"
#include "image.h"

int main(void)
{
	static const struct {
		const char *json;
		int ok;
		const char *err; /* in the message when refused */
	} t[] = {
	    {"{\"virtual-size\": 67108864, \"filename\": \"b.qcow2\", \"format\": \"qcow2\"}", 1,
	     NULL},
	    {"{\"virtual-size\": 1, \"format\": \"qcow2\", \"backing-filename\": \"/x/base\"}", 1,
	     NULL},
	    {"{\"virtual-size\": 1, \"format\": \"raw\"}", 0, "must be qcow2"},
	    {"{\"virtual-size\": 0, \"format\": \"qcow2\"}", 0, "virtual size"},
	    {"{\"format\": \"qcow2\"}", 0, "virtual size"},
	    {"{\"virtual-size\": 1, \"format\": \"qcow2\", \"encrypted\": true}", 0, "encrypted"},
	    {"[]", 0, "no JSON object"},
	    {"garbage", 0, "no JSON object"},
	    {"", 0, "no JSON object"},
	    {"{\"virtual-size\": 1}", 0, "no format"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct img_info info;
		char err[256] = "";
		int r = img_info_parse(t[i].json, &info, err, sizeof(err));
		CHECK_MSG((r == 0) == t[i].ok, "case %zu: r=%d err=%s", i, r, err);
		if (!t[i].ok)
			CHECK_MSG(strstr(err, t[i].err) != NULL, "case %zu: '%s' lacks '%s'", i,
				  err, t[i].err);
	}
	struct img_info info;
	char err[256];
	CHECK(img_info_parse("{\"virtual-size\": 67108864, \"format\": \"qcow2\", "
			     "\"full-backing-filename\": \"/store/b.qcow2\"}",
			     &info, err, sizeof(err)) == 0);
	CHECK(info.virtual_size == 67108864 && info.has_backing);
	CHECK_STR(info.backing, "/store/b.qcow2");
	return check_done("test_image");
}
