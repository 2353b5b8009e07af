/*
 * The channel policy (rdp-gateway/chanpolicy.c): each cliprdr and rdpdr rule
 * in both directions, long and short format names, malformed PDUs, and a
 * deterministic fuzz over every truncation and bit flip of valid PDUs with
 * exact-size heap buffers, so that the sanitizer build sees any stray read
 * or write. The wire constants are restated here from MS-RDPECLIP and
 * MS-RDPEFS rather than shared with the module.
 */
#include "chanpolicy.h"
#include "check.h"

#include <stdint.h>

enum {
	CB_MONITOR_READY = 0x0001,
	CB_FORMAT_LIST = 0x0002,
	CB_FORMAT_LIST_RESPONSE = 0x0003,
	CB_FORMAT_DATA_REQUEST = 0x0004,
	CB_FORMAT_DATA_RESPONSE = 0x0005,
	CB_TEMP_DIRECTORY = 0x0006,
	CB_CLIP_CAPS = 0x0007,
	CB_FILECONTENTS_REQUEST = 0x0008,
	CB_FILECONTENTS_RESPONSE = 0x0009,
	CB_LOCK_CLIPDATA = 0x000A,
	CB_UNLOCK_CLIPDATA = 0x000B,
	CB_RESPONSE_OK = 0x0001,
	CB_RESPONSE_FAIL = 0x0002,
	CB_ASCII_NAMES = 0x0004,
	CB_USE_LONG_FORMAT_NAMES = 0x0002,
	CB_STREAM_FILECLIP_ENABLED = 0x0004,
	CF_TEXT = 1,
	CF_BITMAP = 2,
	CF_OEMTEXT = 7,
	CF_DIB = 8,
	CF_UNICODETEXT = 13,
	CF_HDROP = 15,
	CF_LOCALE = 16,
};

enum {
	RDPDR_CTYP_CORE = 0x4472,
	RDPDR_CTYP_PRN = 0x5052,
	PAKID_CORE_SERVER_ANNOUNCE = 0x496E,
	PAKID_CORE_CLIENT_NAME = 0x434E,
	PAKID_CORE_DEVICELIST_ANNOUNCE = 0x4441,
	PAKID_CORE_DEVICELIST_REMOVE = 0x444D,
	PAKID_CORE_DEVICE_REPLY = 0x6472,
	PAKID_CORE_DEVICE_IOREQUEST = 0x4952,
	PAKID_CORE_DEVICE_IOCOMPLETION = 0x4943,
	PAKID_PRN_CACHE_DATA = 0x5043,
	RDPDR_DTYP_SERIAL = 0x01,
	RDPDR_DTYP_PARALLEL = 0x02,
	RDPDR_DTYP_PRINT = 0x04,
	RDPDR_DTYP_FILESYSTEM = 0x08,
	RDPDR_DTYP_SMARTCARD = 0x20,
};

#define TO_GUEST GW_CHAN_TO_GUEST
#define TO_USER GW_CHAN_TO_USER
#define PASS GW_CHAN_PASS
#define DROP GW_CHAN_DROP
#define REPLACE GW_CHAN_REPLACE
#define REPLY GW_CHAN_REPLY
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* --- building PDUs --- */

struct pdu {
	uint8_t b[2048];
	size_t n;
};

static void u8s(struct pdu *p, const void *s, size_t n)
{
	if (p->n + n > sizeof(p->b)) {
		fprintf(stderr, "test PDU too large\n");
		abort();
	}
	memcpy(p->b + p->n, s, n);
	p->n += n;
}

static void u16(struct pdu *p, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	u8s(p, b, 2);
}

static void u32(struct pdu *p, uint32_t v)
{
	u16(p, (uint16_t)v);
	u16(p, (uint16_t)(v >> 16));
}

static void zeros(struct pdu *p, size_t n)
{
	if (p->n + n > sizeof(p->b)) {
		fprintf(stderr, "test PDU too large\n");
		abort();
	}
	memset(p->b + p->n, 0, n);
	p->n += n;
}

static uint16_t get16(const uint8_t *b)
{
	return (uint16_t)(b[0] | b[1] << 8);
}

static uint32_t get32(const uint8_t *b)
{
	return (uint32_t)get16(b) | (uint32_t)get16(b + 2) << 16;
}

/* A cliprdr header; clip_end fills in dataLen. */
static struct pdu clip(uint16_t type, uint16_t flags)
{
	struct pdu p = {.n = 0};
	u16(&p, type);
	u16(&p, flags);
	u32(&p, 0);
	return p;
}

static struct pdu clip_end(struct pdu p)
{
	uint32_t n = (uint32_t)(p.n - 8);
	for (int i = 0; i < 4; i++)
		p.b[4 + i] = (uint8_t)(n >> 8 * i);
	return p;
}

static struct pdu clip_u32(uint16_t type, uint16_t flags, uint32_t v)
{
	struct pdu p = clip(type, flags);
	u32(&p, v);
	return clip_end(p);
}

static struct pdu caps(uint32_t general_flags)
{
	struct pdu p = clip(CB_CLIP_CAPS, 0);
	u16(&p, 1); /* cCapabilitiesSets */
	u16(&p, 0);
	u16(&p, 1); /* CB_CAPSTYPE_GENERAL */
	u16(&p, 12);
	u32(&p, 2); /* CB_CAPS_VERSION_2 */
	u32(&p, general_flags);
	return clip_end(p);
}

/* A long format name entry: id, NUL-terminated UTF-16LE (ASCII here). */
static void long_name(struct pdu *p, uint32_t id, const char *name)
{
	u32(p, id);
	for (; *name; name++)
		u16(p, (uint8_t)*name);
	u16(p, 0);
}

/* A short format name entry: id, 32 bytes of name (ASCII, NUL padded). */
static void short_name(struct pdu *p, uint32_t id, const char *name)
{
	uint8_t b[32] = {0};
	memcpy(b, name, strlen(name) < 31 ? strlen(name) : 31);
	u32(p, id);
	u8s(p, b, 32);
}

/* What a Windows client offers after copying a file and some rich text. */
static const struct {
	uint32_t id;
	const char *name;
} offer[] = {
    {CF_UNICODETEXT, ""}, {0xC004, "HTML Format"}, {CF_TEXT, ""},  {49161, "FileGroupDescriptorW"},
    {CF_LOCALE, ""},	  {CF_BITMAP, ""},	   {CF_HDROP, ""}, {CF_DIB, ""},
    {CF_OEMTEXT, "OEM"},  {CF_TEXT, ""}, /* twice: kept once */
};
static const uint32_t offer_kept[] = {CF_UNICODETEXT, CF_TEXT, CF_LOCALE, CF_OEMTEXT};

static struct pdu format_list(bool long_names, uint16_t flags)
{
	struct pdu p = clip(CB_FORMAT_LIST, flags);
	for (size_t i = 0; i < N(offer); i++)
		if (long_names)
			long_name(&p, offer[i].id, offer[i].name);
		else
			short_name(&p, offer[i].id, offer[i].name);
	return clip_end(p);
}

static struct pdu temp_directory(void)
{
	struct pdu p = clip(CB_TEMP_DIRECTORY, 0);
	long_name(&p, 'C' | ':' << 16, "\\Temp"); /* any UTF-16 text */
	zeros(&p, 520 - (p.n - 8));
	return clip_end(p);
}

static struct pdu contents_request(uint32_t stream_id, uint32_t data_len)
{
	struct pdu p = clip(CB_FILECONTENTS_REQUEST, 0);
	u32(&p, stream_id);
	zeros(&p, data_len - 4);
	return clip_end(p);
}

static struct pdu contents_response(uint32_t stream_id, size_t bytes)
{
	struct pdu p = clip(CB_FILECONTENTS_RESPONSE, CB_RESPONSE_OK);
	u32(&p, stream_id);
	zeros(&p, bytes);
	return clip_end(p);
}

static struct pdu data_response(size_t bytes)
{
	struct pdu p = clip(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_OK);
	zeros(&p, bytes);
	return clip_end(p);
}

static struct pdu dr(uint16_t component, uint16_t packet)
{
	struct pdu p = {.n = 0};
	u16(&p, component);
	u16(&p, packet);
	return p;
}

static void device(struct pdu *p, uint32_t type, uint32_t id, const char *dos, const char *data)
{
	uint8_t name[8] = {0};
	memcpy(name, dos, strlen(dos) < 7 ? strlen(dos) : 7);
	u32(p, type);
	u32(p, id);
	u8s(p, name, 8);
	u32(p, (uint32_t)strlen(data));
	u8s(p, data, strlen(data));
}

static struct pdu dr_u32(uint16_t packet, uint32_t id, size_t extra)
{
	struct pdu p = dr(RDPDR_CTYP_CORE, packet);
	u32(&p, id);
	zeros(&p, extra);
	return p;
}

static struct pdu io_request(uint32_t id)
{
	return dr_u32(PAKID_CORE_DEVICE_IOREQUEST, id, 20); /* FileId .. MinorFunction, then 4 */
}

static struct pdu device_reply(uint32_t id)
{
	return dr_u32(PAKID_CORE_DEVICE_REPLY, id, 4); /* ResultCode */
}

static struct pdu remove_list(const uint32_t *ids, uint32_t n)
{
	struct pdu p = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_REMOVE);
	u32(&p, n);
	for (uint32_t i = 0; i < n; i++)
		u32(&p, ids[i]);
	return p;
}

/* --- running the filters --- */

static const struct gw_chan_policy open_pol = {.text_only = false, .max_bytes = 0};
static const struct gw_chan_policy text_pol = {.text_only = true, .max_bytes = 64};

struct result {
	enum gw_chan_verdict v;
	uint8_t out[2048];
	size_t n;
};

static struct result clipf(struct gw_cliprdr_state *st, const struct gw_chan_policy *pol,
			   enum gw_chan_dir dir, struct pdu p)
{
	struct result r;
	memset(r.out, 0xa5, sizeof(r.out));
	r.v = gw_cliprdr_filter(st, pol, dir, p.b, p.n, r.out, sizeof(r.out), &r.n);
	return r;
}

static struct result drf(struct gw_rdpdr_state *st, enum gw_chan_dir dir, struct pdu p)
{
	struct result r;
	memset(r.out, 0xa5, sizeof(r.out));
	r.v = gw_rdpdr_filter(st, dir, p.b, p.n, r.out, sizeof(r.out), &r.n);
	return r;
}

/* A failed response of TYPE, with STREAM_ID when HAS_STREAM. */
static bool is_fail(const struct result *r, uint16_t type, bool has_stream, uint32_t stream_id)
{
	size_t n = has_stream ? 12 : 8;
	return r->n == n && get16(r->out) == type && get16(r->out + 2) == CB_RESPONSE_FAIL &&
	       get32(r->out + 4) == n - 8 && (!has_stream || get32(r->out + 8) == stream_id);
}

/* A state whose sides both said long names (or neither). */
static struct gw_cliprdr_state negotiated(bool long_names)
{
	struct gw_cliprdr_state st;
	gw_cliprdr_init(&st);
	uint32_t f = long_names ? CB_USE_LONG_FORMAT_NAMES : 0;
	CHECK(clipf(&st, &open_pol, TO_USER, caps(f | CB_STREAM_FILECLIP_ENABLED)).v == PASS);
	CHECK(clipf(&st, &open_pol, TO_GUEST, caps(f)).v == PASS);
	return st;
}

/* --- cliprdr --- */

static void test_caps(void)
{
	/* MS-RDPECLIP's default: short names until both sides said long */
	struct gw_cliprdr_state st;
	gw_cliprdr_init(&st);
	CHECK(clipf(&st, &open_pol, TO_GUEST, format_list(false, 0)).v == PASS);
	CHECK(clipf(&st, &open_pol, TO_GUEST, format_list(true, 0)).v == DROP);
	CHECK(clipf(&st, &open_pol, TO_USER, caps(CB_USE_LONG_FORMAT_NAMES)).v == PASS);
	CHECK(clipf(&st, &open_pol, TO_USER, format_list(true, 0)).v == DROP); /* one side only */
	CHECK(clipf(&st, &open_pol, TO_USER, format_list(false, 0)).v == PASS);
	CHECK(clipf(&st, &open_pol, TO_GUEST, caps(CB_USE_LONG_FORMAT_NAMES)).v == PASS);
	CHECK(clipf(&st, &open_pol, TO_USER, format_list(true, 0)).v == PASS);
	CHECK(clipf(&st, &open_pol, TO_GUEST, format_list(true, 0)).v == PASS);
	/* either side withdrawing it (later capabilities win) goes back to short */
	CHECK(clipf(&st, &open_pol, TO_GUEST, caps(0)).v == PASS);
	CHECK(clipf(&st, &open_pol, TO_USER, format_list(false, 0)).v == PASS);
	CHECK(clipf(&st, &open_pol, TO_USER, format_list(true, 0)).v == DROP);

	/* a capability set other than general, and none at all */
	st = negotiated(true);
	struct pdu p = clip(CB_CLIP_CAPS, 0);
	u16(&p, 2);
	u16(&p, 0);
	u16(&p, 0x7777); /* unknown set: skipped by its length */
	u16(&p, 6);
	u16(&p, 0);
	u16(&p, 1);
	u16(&p, 12);
	u32(&p, 2);
	u32(&p, CB_USE_LONG_FORMAT_NAMES);
	CHECK(clipf(&st, &open_pol, TO_GUEST, clip_end(p)).v == PASS && st.long_names[TO_GUEST]);
	p = clip(CB_CLIP_CAPS, 0);
	u32(&p, 0);
	CHECK(clipf(&st, &open_pol, TO_GUEST, clip_end(p)).v == PASS && !st.long_names[TO_GUEST]);
}

/* The ids of a rewritten list, read as long (LONG) or short names. */
static size_t list_ids(const struct result *r, bool long_names, uint32_t *ids, size_t max)
{
	size_t k = 0, n = get32(r->out + 4);
	const uint8_t *d = r->out + 8;
	for (size_t off = 0; off + 4 <= n && k < max;) {
		ids[k++] = get32(d + off);
		if (!long_names) {
			off += 36;
			continue;
		}
		off += 4;
		while (off + 2 <= n && get16(d + off))
			off += 2;
		off += 2;
	}
	return k;
}

static void test_format_list(void)
{
	for (int lng = 0; lng < 2; lng++) {
		for (int d = 0; d < 2; d++) {
			enum gw_chan_dir dir = d ? TO_USER : TO_GUEST;
			struct gw_cliprdr_state st = negotiated(lng);
			/* unfiltered: passes as it is */
			CHECK(clipf(&st, &open_pol, dir, format_list(lng, 0)).v == PASS);
			/* text only: the four text formats, once each, names emptied */
			struct result r =
			    clipf(&st, &text_pol, dir, format_list(lng, CB_ASCII_NAMES));
			size_t entry = lng ? 6 : 36;
			CHECK_MSG(r.v == REPLACE, "long %d dir %d", lng, d);
			CHECK(r.n == 8 + N(offer_kept) * entry);
			CHECK(get16(r.out) == CB_FORMAT_LIST && get32(r.out + 4) == r.n - 8);
			CHECK(get16(r.out + 2) == CB_ASCII_NAMES);
			for (size_t i = 0; i < N(offer_kept); i++) {
				const uint8_t *e = r.out + 8 + i * entry;
				CHECK(get32(e) == offer_kept[i]);
				for (size_t j = 4; j < entry; j++)
					CHECK(e[j] == 0);
			}
			/* and it reads as text formats (or 0) either way */
			for (int as = 0; as < 2; as++) {
				uint32_t ids[64];
				size_t k = list_ids(&r, as, ids, N(ids));
				for (size_t i = 0; i < k; i++)
					CHECK(ids[i] == 0 || ids[i] == CF_TEXT ||
					      ids[i] == CF_OEMTEXT || ids[i] == CF_UNICODETEXT ||
					      ids[i] == CF_LOCALE);
			}
			/* nothing left: still an (empty) list */
			struct pdu p = clip(CB_FORMAT_LIST, 0);
			if (lng)
				long_name(&p, 0xC0FF, "FileGroupDescriptorW");
			else
				short_name(&p, 0xC0FF, "FileGroupDescriptorW");
			r = clipf(&st, &text_pol, dir, clip_end(p));
			CHECK(r.v == REPLACE && r.n == 8 && get32(r.out + 4) == 0);
			/* an empty list is well formed */
			r = clipf(&st, &text_pol, dir, clip_end(clip(CB_FORMAT_LIST, 0)));
			CHECK(r.v == REPLACE && r.n == 8);
			CHECK(clipf(&st, &open_pol, dir, clip_end(clip(CB_FORMAT_LIST, 0))).v ==
			      PASS);
		}
	}
	/* bytes after dataLen (padding) are ignored, and left out of a rewrite */
	struct gw_cliprdr_state st = negotiated(true);
	struct pdu p = format_list(true, 0);
	zeros(&p, 4);
	struct result r = clipf(&st, &text_pol, TO_GUEST, p);
	CHECK(r.v == REPLACE && r.n == 8 + N(offer_kept) * 6);
	CHECK(clipf(&st, &open_pol, TO_GUEST, p).v == PASS);
	/* too little room for the rewrite: dropped, never overrun */
	size_t outlen = 99;
	uint8_t out[8 + 4 * 6];
	p = format_list(true, 0);
	CHECK(gw_cliprdr_filter(&st, &text_pol, TO_GUEST, p.b, p.n, out, sizeof(out) - 1,
				&outlen) == DROP &&
	      outlen == 0);
	CHECK(gw_cliprdr_filter(&st, &text_pol, TO_GUEST, p.b, p.n, out, sizeof(out), &outlen) ==
		  REPLACE &&
	      outlen == sizeof(out));
}

static void test_data_request(void)
{
	struct gw_cliprdr_state st = negotiated(true);
	/* before any list, nothing was offered */
	struct result r = clipf(&st, &text_pol, TO_USER, clip_u32(CB_FORMAT_DATA_REQUEST, 0, 13));
	CHECK(r.v == REPLY && is_fail(&r, CB_FORMAT_DATA_RESPONSE, false, 0));
	/* the user offers text and HTML to the guest; the guest may ask for text only */
	struct pdu p = clip(CB_FORMAT_LIST, 0);
	long_name(&p, CF_UNICODETEXT, "");
	long_name(&p, 0xC004, "HTML Format");
	CHECK(clipf(&st, &text_pol, TO_GUEST, clip_end(p)).v == REPLACE);
	static const struct {
		enum gw_chan_dir dir;
		uint32_t format;
		enum gw_chan_verdict want;
	} cases[] = {
	    {TO_USER, CF_UNICODETEXT, PASS},
	    {TO_USER, 0xC004, REPLY},  /* filtered out of the list */
	    {TO_USER, CF_TEXT, REPLY}, /* a text format, but not offered */
	    {TO_USER, CF_HDROP, REPLY},
	    {TO_GUEST, CF_UNICODETEXT, REPLY}, /* the guest offered nothing */
	};
	for (size_t i = 0; i < N(cases); i++) {
		r = clipf(&st, &text_pol, cases[i].dir,
			  clip_u32(CB_FORMAT_DATA_REQUEST, 0, cases[i].format));
		CHECK_MSG(r.v == cases[i].want, "case %zu: %d", i, r.v);
		if (r.v == REPLY)
			CHECK(is_fail(&r, CB_FORMAT_DATA_RESPONSE, false, 0));
		else
			CHECK(r.n == 0);
		/* unfiltered, any request passes */
		CHECK(clipf(&st, &open_pol, cases[i].dir,
			    clip_u32(CB_FORMAT_DATA_REQUEST, 0, cases[i].format))
			  .v == PASS);
	}
	/* the guest offers CF_TEXT: the user may ask for it, and the user's own
	 * offer is untouched */
	p = clip(CB_FORMAT_LIST, 0);
	long_name(&p, CF_TEXT, "");
	CHECK(clipf(&st, &text_pol, TO_USER, clip_end(p)).v == REPLACE);
	CHECK(clipf(&st, &text_pol, TO_GUEST, clip_u32(CB_FORMAT_DATA_REQUEST, 0, CF_TEXT)).v ==
	      PASS);
	CHECK(
	    clipf(&st, &text_pol, TO_USER, clip_u32(CB_FORMAT_DATA_REQUEST, 0, CF_UNICODETEXT)).v ==
	    PASS);
	/* a new list replaces the old one */
	p = clip(CB_FORMAT_LIST, 0);
	long_name(&p, CF_LOCALE, "");
	CHECK(clipf(&st, &text_pol, TO_GUEST, clip_end(p)).v == REPLACE);
	CHECK(
	    clipf(&st, &text_pol, TO_USER, clip_u32(CB_FORMAT_DATA_REQUEST, 0, CF_UNICODETEXT)).v ==
	    REPLY);
	CHECK(clipf(&st, &text_pol, TO_USER, clip_u32(CB_FORMAT_DATA_REQUEST, 0, CF_LOCALE)).v ==
	      PASS);
	/* a malformed list changes nothing */
	p = clip(CB_FORMAT_LIST, 0);
	long_name(&p, CF_UNICODETEXT, "");
	u32(&p, CF_TEXT); /* then a name without its NUL */
	u16(&p, 'x');
	CHECK(clipf(&st, &text_pol, TO_GUEST, clip_end(p)).v == DROP);
	CHECK(clipf(&st, &text_pol, TO_USER, clip_u32(CB_FORMAT_DATA_REQUEST, 0, CF_LOCALE)).v ==
	      PASS);
	/* the reply fits in the request's own size */
	size_t outlen;
	uint8_t out[12];
	p = clip_u32(CB_FORMAT_DATA_REQUEST, 0, 0xC004);
	CHECK(gw_cliprdr_filter(&st, &text_pol, TO_USER, p.b, p.n, out, 7, &outlen) == DROP);
	CHECK(gw_cliprdr_filter(&st, &text_pol, TO_USER, p.b, p.n, out, 8, &outlen) == REPLY &&
	      outlen == 8);
}

static void test_files_and_limits(void)
{
	for (int d = 0; d < 2; d++) {
		enum gw_chan_dir dir = d ? TO_USER : TO_GUEST;
		struct gw_cliprdr_state st = negotiated(true);
		/* file contents: refused under text_only, with the request's streamId */
		for (uint32_t len = 24; len <= 28; len += 4) {
			struct result r =
			    clipf(&st, &text_pol, dir, contents_request(0xabcd0001, len));
			CHECK(r.v == REPLY &&
			      is_fail(&r, CB_FILECONTENTS_RESPONSE, true, 0xabcd0001));
			CHECK(clipf(&st, &open_pol, dir, contents_request(7, len)).v == PASS);
		}
		CHECK(clipf(&st, &open_pol, dir, contents_request(7, 20)).v == DROP);
		CHECK(clipf(&st, &text_pol, dir, contents_response(7, 8)).v == DROP);
		/* locks: dropped under text_only */
		for (uint16_t t = CB_LOCK_CLIPDATA; t <= CB_UNLOCK_CLIPDATA; t++) {
			CHECK(clipf(&st, &text_pol, dir, clip_u32(t, 0, 3)).v == DROP);
			CHECK(clipf(&st, &open_pol, dir, clip_u32(t, 0, 3)).v == PASS);
			CHECK(clipf(&st, &open_pol, dir, clip_end(clip(t, 0))).v == DROP);
		}
		/* max_bytes: a failed response instead of the data */
		static const struct {
			uint32_t max;
			size_t bytes;
			enum gw_chan_verdict want;
		} limits[] = {
		    {64, 64, PASS},  {64, 65, REPLACE}, {64, 0, PASS},
		    {0, 1500, PASS}, {1, 2, REPLACE},
		};
		for (size_t i = 0; i < N(limits); i++) {
			struct gw_chan_policy pol = {.text_only = false,
						     .max_bytes = limits[i].max};
			struct result r = clipf(&st, &pol, dir, data_response(limits[i].bytes));
			CHECK_MSG(r.v == limits[i].want, "case %zu", i);
			if (r.v == REPLACE)
				CHECK(is_fail(&r, CB_FORMAT_DATA_RESPONSE, false, 0));
			r = clipf(&st, &pol, dir, contents_response(0x55, limits[i].bytes));
			CHECK_MSG(r.v == limits[i].want, "case %zu", i);
			if (r.v == REPLACE)
				CHECK(is_fail(&r, CB_FILECONTENTS_RESPONSE, true, 0x55));
			pol.text_only = true;
			r = clipf(&st, &pol, dir, data_response(limits[i].bytes));
			CHECK_MSG(r.v == limits[i].want, "case %zu (text only)", i);
		}
		CHECK(clipf(&st, &open_pol, dir, clip_end(clip(CB_FILECONTENTS_RESPONSE, 0))).v ==
		      DROP);
	}
}

/* Messages with nothing to filter: well formed, and in their direction. */
static void test_other_messages(void)
{
	struct {
		struct pdu p;
		enum gw_chan_dir dir;
		enum gw_chan_verdict want;
	} cases[] = {
	    {clip_end(clip(CB_MONITOR_READY, 0)), TO_USER, PASS},
	    {clip_end(clip(CB_MONITOR_READY, 0)), TO_GUEST, DROP}, /* the server's */
	    {clip_end(clip(CB_FORMAT_LIST_RESPONSE, CB_RESPONSE_OK)), TO_USER, PASS},
	    {clip_end(clip(CB_FORMAT_LIST_RESPONSE, CB_RESPONSE_FAIL)), TO_GUEST, PASS},
	    {temp_directory(), TO_GUEST, PASS},
	    {temp_directory(), TO_USER, DROP},			 /* the client's */
	    {clip_u32(CB_TEMP_DIRECTORY, 0, 0), TO_GUEST, DROP}, /* shorter than 520 */
	    {caps(0), TO_USER, PASS},
	    {clip_end(clip(0x0000, 0)), TO_USER, DROP}, /* unknown types */
	    {clip_end(clip(0x000C, 0)), TO_GUEST, DROP},
	    {clip_end(clip(0xFFFF, 0)), TO_USER, DROP},
	};
	for (size_t i = 0; i < N(cases); i++) {
		for (int t = 0; t < 2; t++) {
			struct gw_cliprdr_state st = negotiated(false);
			struct result r =
			    clipf(&st, t ? &text_pol : &open_pol, cases[i].dir, cases[i].p);
			CHECK_MSG(r.v == cases[i].want && r.n == 0, "case %zu: %d", i, r.v);
		}
	}
	/* padding after the data */
	struct gw_cliprdr_state st = negotiated(false);
	struct pdu p = clip_end(clip(CB_MONITOR_READY, 0));
	zeros(&p, 4);
	CHECK(clipf(&st, &text_pol, TO_USER, p).v == PASS);
	/* a direction that is neither */
	CHECK(clipf(&st, &open_pol, (enum gw_chan_dir)2, p).v == DROP);
}

static void test_clip_malformed(void)
{
	static const uint8_t short_hdr[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
	struct pdu hdr7 = {.n = 0};
	u8s(&hdr7, short_hdr, sizeof(short_hdr));
	struct pdu cut = data_response(10);
	cut.n -= 3;
	struct pdu big = clip_u32(CB_FORMAT_DATA_RESPONSE, 0, 0);
	big.b[4] = 5; /* dataLen 5, 4 bytes there */
	struct pdu huge = clip_end(clip(CB_FORMAT_DATA_RESPONSE, 0));
	memset(huge.b + 4, 0xff, 4);
	struct pdu no_nul = clip(CB_FORMAT_LIST, 0);
	u32(&no_nul, CF_TEXT);
	u16(&no_nul, 'A');
	u16(&no_nul, 'B');
	struct pdu odd = clip(CB_FORMAT_LIST, 0);
	long_name(&odd, CF_TEXT, "");
	u32(&odd, CF_UNICODETEXT);
	u8s(&odd, "\0", 1); /* half a NUL */
	struct pdu id_only = clip(CB_FORMAT_LIST, 0);
	u32(&id_only, CF_TEXT);
	struct pdu short_odd = clip(CB_FORMAT_LIST, 0);
	short_name(&short_odd, CF_TEXT, "");
	u32(&short_odd, CF_UNICODETEXT); /* a partial entry */
	struct pdu caps_count = clip(CB_CLIP_CAPS, 0);
	u16(&caps_count, 0xFFFF);
	u16(&caps_count, 0);
	u16(&caps_count, 1);
	u16(&caps_count, 12);
	u32(&caps_count, 2);
	u32(&caps_count, 2);
	struct pdu caps_past = caps(CB_USE_LONG_FORMAT_NAMES);
	caps_past.b[14] = 13; /* lengthCapability one byte past the end */
	struct pdu caps_small = caps(CB_USE_LONG_FORMAT_NAMES);
	caps_small.b[14] = 3; /* lengthCapability smaller than its own header */
	struct pdu caps_tiny = clip(CB_CLIP_CAPS, 0);
	u16(&caps_tiny, 1);
	u16(&caps_tiny, 0);
	u16(&caps_tiny, 0x7777); /* an unknown set whose length is less than its header */
	u16(&caps_tiny, 2);
	u32(&caps_tiny, 0);
	struct pdu caps_general = caps(CB_USE_LONG_FORMAT_NAMES);
	caps_general.b[14] = 8; /* a general set without its flags */
	struct {
		const char *what;
		struct pdu p;
		bool long_names;
	} cases[] = {
	    {"empty", {.n = 0}, false},
	    {"7-byte header", hdr7, false},
	    {"dataLen past the end", cut, false},
	    {"dataLen past the end by one", big, false},
	    {"dataLen 4 GiB", huge, false},
	    {"name without NUL", clip_end(no_nul), true},
	    {"name with half a NUL", clip_end(odd), true},
	    {"id without a name", clip_end(id_only), true},
	    {"partial short entry", clip_end(short_odd), false},
	    {"long names when short", format_list(true, 0), false},
	    {"capability count past the end", clip_end(caps_count), false},
	    {"capability past the end", caps_past, false},
	    {"capability length 3", caps_small, false},
	    {"unknown capability of 2 bytes", clip_end(caps_tiny), false},
	    {"general capability of 8 bytes", caps_general, false},
	    {"capabilities without a count", clip_end(clip(CB_CLIP_CAPS, 0)), false},
	    {"data request without an id", clip_end(clip(CB_FORMAT_DATA_REQUEST, 0)), false},
	};
	for (size_t i = 0; i < N(cases); i++) {
		for (int d = 0; d < 2; d++) {
			for (int t = 0; t < 2; t++) {
				struct gw_cliprdr_state st = negotiated(cases[i].long_names);
				struct gw_cliprdr_state before = st;
				struct result r = clipf(&st, t ? &text_pol : &open_pol,
							d ? TO_USER : TO_GUEST, cases[i].p);
				CHECK_MSG(r.v == DROP && r.n == 0, "%s: %d", cases[i].what, r.v);
				CHECK_MSG(!memcmp(&st, &before, sizeof(st)), "%s: state changed",
					  cases[i].what);
			}
		}
	}
	/* the "dataLen past the end by one" case is the right size once fixed */
	struct gw_cliprdr_state st = negotiated(false);
	big.b[4] = 4;
	CHECK(clipf(&st, &open_pol, TO_USER, big).v == PASS);
}

/* --- rdpdr --- */

static struct pdu announce(void)
{
	struct pdu p = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&p, 6);
	device(&p, RDPDR_DTYP_PRINT, 1, "PRN1", "printer driver data");
	device(&p, RDPDR_DTYP_FILESYSTEM, 2, "HOME", "home");
	device(&p, RDPDR_DTYP_SMARTCARD, 3, "SCARD", "");
	device(&p, RDPDR_DTYP_SERIAL, 4, "COM1", "");
	device(&p, RDPDR_DTYP_PARALLEL, 5, "LPT1", "");
	device(&p, RDPDR_DTYP_FILESYSTEM, 6, "MEDIA", "");
	return p;
}

static void test_rdpdr_devices(void)
{
	struct gw_rdpdr_state st;
	gw_rdpdr_init(&st);
	/* before any announce, no device is reachable */
	CHECK(drf(&st, TO_USER, io_request(2)).v == DROP);
	struct result r = drf(&st, TO_GUEST, announce());
	CHECK(r.v == REPLACE);
	struct pdu want = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&want, 2);
	device(&want, RDPDR_DTYP_FILESYSTEM, 2, "HOME", "home");
	device(&want, RDPDR_DTYP_FILESYSTEM, 6, "MEDIA", "");
	CHECK(r.n == want.n && !memcmp(r.out, want.b, want.n));
	static const struct {
		uint32_t id;
		enum gw_chan_verdict want;
	} ids[] = {
	    {1, DROP}, {2, PASS}, {3, DROP}, {4, DROP}, {5, DROP}, {6, PASS}, {99, DROP},
	};
	for (size_t i = 0; i < N(ids); i++) {
		CHECK_MSG(drf(&st, TO_USER, io_request(ids[i].id)).v == ids[i].want, "io %u",
			  ids[i].id);
		CHECK_MSG(drf(&st, TO_USER, device_reply(ids[i].id)).v == ids[i].want, "reply %u",
			  ids[i].id);
		/* the user's own completions and replies are not filtered */
		CHECK(drf(&st, TO_GUEST, dr_u32(PAKID_CORE_DEVICE_IOCOMPLETION, ids[i].id, 8)).v ==
		      PASS);
	}
	/* an I/O request with a write's data after it */
	struct pdu w = io_request(2);
	zeros(&w, 32 + 100);
	CHECK(drf(&st, TO_USER, w).v == PASS);
	/* truncated requests and replies */
	struct pdu t = io_request(2);
	t.n = 23;
	CHECK(drf(&st, TO_USER, t).v == DROP);
	t = device_reply(2);
	t.n = 11;
	CHECK(drf(&st, TO_USER, t).v == DROP);

	/* only printers: an empty list still goes (the count fixed) */
	struct pdu p = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&p, 1);
	device(&p, RDPDR_DTYP_PRINT, 7, "PRN2", "x");
	r = drf(&st, TO_GUEST, p);
	CHECK(r.v == REPLACE && r.n == 8 && get32(r.out + 4) == 0 &&
	      get16(r.out + 2) == PAKID_CORE_DEVICELIST_ANNOUNCE);
	CHECK(drf(&st, TO_USER, io_request(7)).v == DROP);
	/* a device of another type announced with a drive's id takes it away */
	p = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&p, 1);
	device(&p, RDPDR_DTYP_SMARTCARD, 6, "SCARD", "");
	r = drf(&st, TO_GUEST, p);
	CHECK(r.v == REPLACE && get32(r.out + 4) == 0);
	CHECK(drf(&st, TO_USER, io_request(6)).v == DROP);
	CHECK(drf(&st, TO_USER, io_request(2)).v == PASS);
	/* removal passes and forgets */
	uint32_t gone[] = {2, 1234};
	CHECK(drf(&st, TO_GUEST, remove_list(gone, 2)).v == PASS);
	CHECK(drf(&st, TO_USER, io_request(2)).v == DROP && st.n == 0);

	/* the table's size: the 33rd drive is not announced */
	p = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&p, GW_RDPDR_DEVICES_MAX + 8);
	for (uint32_t i = 0; i < GW_RDPDR_DEVICES_MAX + 8; i++)
		device(&p, RDPDR_DTYP_FILESYSTEM, 100 + i, "D", "d");
	r = drf(&st, TO_GUEST, p);
	CHECK(r.v == REPLACE && get32(r.out + 4) == GW_RDPDR_DEVICES_MAX);
	CHECK(r.n == 8 + GW_RDPDR_DEVICES_MAX * (20 + 1));
	CHECK(drf(&st, TO_USER, io_request(100 + GW_RDPDR_DEVICES_MAX - 1)).v == PASS);
	CHECK(drf(&st, TO_USER, io_request(100 + GW_RDPDR_DEVICES_MAX)).v == DROP);
	/* announcing a known drive again takes no room; after a removal one fits */
	p = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&p, 2);
	device(&p, RDPDR_DTYP_FILESYSTEM, 100, "D", "d");
	device(&p, RDPDR_DTYP_FILESYSTEM, 500, "E", "e");
	r = drf(&st, TO_GUEST, p);
	CHECK(r.v == REPLACE && get32(r.out + 4) == 1 && get32(r.out + 12) == 100);
	uint32_t one[] = {101};
	CHECK(drf(&st, TO_GUEST, remove_list(one, 1)).v == PASS);
	r = drf(&st, TO_GUEST, p);
	CHECK(r.v == REPLACE && get32(r.out + 4) == 2);
	CHECK(drf(&st, TO_USER, io_request(500)).v == PASS);
	CHECK(drf(&st, TO_USER, io_request(101)).v == DROP);
}

static void test_rdpdr_other(void)
{
	struct pdu name = dr(RDPDR_CTYP_CORE, PAKID_CORE_CLIENT_NAME);
	u32(&name, 0);
	struct pdu prn = dr(RDPDR_CTYP_PRN, PAKID_PRN_CACHE_DATA);
	u32(&prn, 1);
	struct pdu three = {.n = 3, .b = {0x72, 0x44, 0x6e}};
	struct pdu bad_len = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&bad_len, 1);
	device(&bad_len, RDPDR_DTYP_FILESYSTEM, 2, "C", "abcd");
	bad_len.n--; /* deviceDataLength one past the end */
	struct pdu half = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&half, 2);
	device(&half, RDPDR_DTYP_FILESYSTEM, 2, "C", "abcd");
	u32(&half, RDPDR_DTYP_FILESYSTEM); /* a second device's header, cut short */
	struct pdu huge = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&huge, 0xFFFFFFFF);
	device(&huge, RDPDR_DTYP_FILESYSTEM, 2, "C", "");
	struct pdu huge_data = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE);
	u32(&huge_data, 1);
	device(&huge_data, RDPDR_DTYP_FILESYSTEM, 2, "C", "");
	memset(huge_data.b + huge_data.n - 4, 0xff, 4);
	struct pdu huge_remove = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_REMOVE);
	u32(&huge_remove, 0x40000001);
	u32(&huge_remove, 9);
	struct {
		const char *what;
		struct pdu p;
		enum gw_chan_dir dir;
		enum gw_chan_verdict want;
	} cases[] = {
	    {"server announce", dr_u32(PAKID_CORE_SERVER_ANNOUNCE, 0x000c0001, 4), TO_USER, PASS},
	    {"client name", name, TO_GUEST, PASS},
	    {"a bare core header", dr(RDPDR_CTYP_CORE, 0x1234), TO_USER, PASS},
	    {"an I/O request the other way", io_request(77), TO_GUEST, PASS},
	    {"printer component to the guest", prn, TO_GUEST, DROP},
	    {"printer component to the user", prn, TO_USER, DROP},
	    {"unknown component", dr(0x1111, PAKID_CORE_DEVICE_IOREQUEST), TO_USER, DROP},
	    {"3 bytes", three, TO_USER, DROP},
	    {"empty", {.n = 0}, TO_GUEST, DROP},
	    {"announce without a count", dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_ANNOUNCE),
	     TO_GUEST, DROP},
	    {"deviceDataLength past the end", bad_len, TO_GUEST, DROP},
	    {"a device cut short", half, TO_GUEST, DROP},
	    {"count 2^32-1", huge, TO_GUEST, DROP},
	    {"deviceDataLength 2^32-1", huge_data, TO_GUEST, DROP},
	    {"remove count past the end", huge_remove, TO_GUEST, DROP},
	    {"remove without a count", dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_REMOVE), TO_GUEST,
	     DROP},
	    {"a direction that is neither", name, (enum gw_chan_dir)7, DROP},
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct gw_rdpdr_state st;
		gw_rdpdr_init(&st);
		struct result r = drf(&st, cases[i].dir, cases[i].p);
		CHECK_MSG(r.v == cases[i].want && r.n == 0, "%s: %d", cases[i].what, r.v);
		/* a malformed announce remembers nothing, even the drive before the fault */
		CHECK_MSG(st.n == 0, "%s: %u devices", cases[i].what, st.n);
	}
}

/* --- fuzz --- */

static unsigned long fuzz_runs;

/*
 * Run both filters on exactly LEN bytes of heap (and an output of exactly
 * LEN bytes) under each policy and direction; check the outputs' bounds, and
 * that a rewrite is stable: filtering it again passes it or rewrites it to
 * itself.
 */
static void fuzz_one(const struct gw_cliprdr_state *cst, const struct gw_rdpdr_state *dst,
		     const uint8_t *b, size_t len)
{
	uint8_t *in = malloc(len ? len : 1), *out = malloc(len ? len : 1);
	uint8_t *again = malloc(len ? len : 1);
	if (!in || !out || !again)
		abort();
	if (len)
		memcpy(in, b, len);
	const struct gw_chan_policy *pols[] = {&open_pol, &text_pol};
	for (int d = 0; d < 2; d++) {
		enum gw_chan_dir dir = d ? TO_USER : TO_GUEST;
		for (size_t k = 0; k < N(pols); k++) {
			struct gw_cliprdr_state c = *cst;
			size_t n = 12345, n2;
			enum gw_chan_verdict v =
			    gw_cliprdr_filter(&c, pols[k], dir, in, len, out, len, &n);
			fuzz_runs++;
			CHECK(v == PASS || v == DROP || v == REPLACE || v == REPLY);
			CHECK(v == REPLACE || v == REPLY ? n >= 8 && n <= len : n == 0);
			CHECK(c.offered[0] < 16 && c.offered[1] < 16); /* four text formats */
			CHECK(v != DROP || !memcmp(&c, cst, sizeof(c)));
			if (v == REPLACE) {
				CHECK(get32(out + 4) == n - 8);
				struct gw_cliprdr_state c2 = c;
				enum gw_chan_verdict v2 =
				    gw_cliprdr_filter(&c2, pols[k], dir, out, n, again, n, &n2);
				CHECK(v2 == PASS ||
				      (v2 == REPLACE && n2 == n && !memcmp(again, out, n)));
			}
		}
		struct gw_rdpdr_state s = *dst;
		size_t n = 12345, n2;
		enum gw_chan_verdict v = gw_rdpdr_filter(&s, dir, in, len, out, len, &n);
		fuzz_runs++;
		CHECK(v == PASS || v == DROP || v == REPLACE);
		CHECK(v == REPLACE ? n >= 8 && n <= len : n == 0);
		CHECK(s.n <= GW_RDPDR_DEVICES_MAX);
		CHECK(v != DROP || !memcmp(&s, dst, sizeof(s)));
		if (v == REPLACE) {
			struct gw_rdpdr_state s2 = s;
			enum gw_chan_verdict v2 = gw_rdpdr_filter(&s2, dir, out, n, again, n, &n2);
			CHECK(v2 == REPLACE && n2 == n && !memcmp(again, out, n));
		}
		/* half the room an output could need: what does not fit is dropped */
		size_t cap = len / 2;
		uint8_t *small = malloc(cap ? cap : 1);
		if (!small)
			abort();
		struct gw_cliprdr_state c = *cst;
		v = gw_cliprdr_filter(&c, &text_pol, dir, in, len, small, cap, &n);
		CHECK(v == REPLACE || v == REPLY ? n >= 8 && n <= cap : n == 0);
		CHECK(v != DROP || !memcmp(&c, cst, sizeof(c)));
		s = *dst;
		v = gw_rdpdr_filter(&s, dir, in, len, small, cap, &n);
		CHECK(v == REPLACE ? n >= 8 && n <= cap : n == 0);
		CHECK(v != DROP || !memcmp(&s, dst, sizeof(s)));
		fuzz_runs += 2;
		free(small);
	}
	free(in);
	free(out);
	free(again);
}

static uint32_t lcg(uint32_t *x)
{
	*x = *x * 1103515245u + 12345u;
	return *x >> 8;
}

static void test_fuzz(void)
{
	struct pdu rdpdr_list = dr(RDPDR_CTYP_CORE, PAKID_CORE_DEVICELIST_REMOVE);
	u32(&rdpdr_list, 2);
	u32(&rdpdr_list, 2);
	u32(&rdpdr_list, 6);
	struct pdu mixed = clip(CB_FORMAT_LIST, 0);
	long_name(&mixed, CF_TEXT, "");
	short_name(&mixed, CF_UNICODETEXT, "x");
	struct pdu valid[] = {
	    caps(CB_USE_LONG_FORMAT_NAMES),
	    format_list(true, 0),
	    format_list(false, CB_ASCII_NAMES),
	    clip_end(mixed),
	    clip_u32(CB_FORMAT_DATA_REQUEST, 0, CF_UNICODETEXT),
	    data_response(80),
	    contents_request(3, 28),
	    contents_response(3, 70),
	    clip_u32(CB_LOCK_CLIPDATA, 0, 1),
	    clip_end(clip(CB_MONITOR_READY, 0)),
	    temp_directory(),
	    announce(),
	    rdpdr_list,
	    io_request(2),
	    device_reply(6),
	};
	/* states to start from: fresh, and with both sides on long names, text
	 * offered both ways and drives 2 and 6 known */
	struct gw_cliprdr_state cfresh, clong = negotiated(true);
	gw_cliprdr_init(&cfresh);
	clong.offered[0] = clong.offered[1] = 0x0f;
	struct gw_rdpdr_state dfresh, dknown;
	gw_rdpdr_init(&dfresh);
	gw_rdpdr_init(&dknown);
	drf(&dknown, TO_GUEST, announce());
	CHECK(dknown.n == 2);

	for (size_t i = 0; i < N(valid); i++) {
		const struct pdu *p = &valid[i];
		/* every truncation */
		for (size_t len = 0; len <= p->n; len++) {
			fuzz_one(&cfresh, &dfresh, p->b, len);
			fuzz_one(&clong, &dknown, p->b, len);
			/* a cliprdr PDU cut anywhere has dataLen past its end */
			if (len < p->n && get16(p->b) != RDPDR_CTYP_CORE) {
				struct gw_cliprdr_state c = clong;
				size_t n;
				uint8_t out[2048];
				CHECK_MSG(gw_cliprdr_filter(&c, &open_pol, TO_USER, p->b, len, out,
							    sizeof(out), &n) == DROP,
					  "pdu %zu cut at %zu", i, len);
			}
		}
		/* every single bit flipped */
		struct pdu q = *p;
		for (size_t bit = 0; bit < q.n * 8; bit++) {
			q.b[bit / 8] ^= (uint8_t)(1u << bit % 8);
			fuzz_one(&cfresh, &dfresh, q.b, q.n);
			fuzz_one(&clong, &dknown, q.b, q.n);
			q.b[bit / 8] ^= (uint8_t)(1u << bit % 8);
		}
	}
	/* several bytes at once, deterministically: lengths and counts get hit
	 * with large values too */
	uint32_t x = 20240601;
	for (int round = 0; round < 20000; round++) {
		struct pdu q = valid[lcg(&x) % N(valid)];
		unsigned edits = 1 + lcg(&x) % 4;
		for (unsigned e = 0; e < edits; e++) {
			size_t at = lcg(&x) % q.n;
			switch (lcg(&x) % 3) {
			case 0:
				q.b[at] = (uint8_t)lcg(&x);
				break;
			case 1:
				q.b[at] = (uint8_t)(lcg(&x) % 2 ? 0xff : 0x00);
				break;
			default:
				q.n = at + 1;
				break;
			}
		}
		fuzz_one(round % 2 ? &clong : &cfresh, round % 2 ? &dknown : &dfresh, q.b, q.n);
	}
	fprintf(stderr, "fuzz: %lu filter runs\n", fuzz_runs);
}

int main(void)
{
	test_caps();
	test_format_list();
	test_data_request();
	test_files_and_limits();
	test_other_messages();
	test_clip_malformed();
	test_rdpdr_devices();
	test_rdpdr_other();
	test_fuzz();
	return check_done("test_chanpolicy");
}
