/*
 * The cliprdr and rdpdr channel policy (see chanpolicy.h). Each relayed PDU
 * is read by hand, little-endian, every length checked against the bytes
 * actually there; a message is looked up in a table by type, and its handler
 * decides what crosses. State changes only once a PDU is known to be well
 * formed. Pure; never blocks.
 */
#include "chanpolicy.h"

#include <string.h>

/* MS-RDPECLIP 2.2.1: msgType u16, msgFlags u16, dataLen u32, then the data. */
#define CLIP_HDR 8
#define CB_MONITOR_READY 0x0001
#define CB_FORMAT_LIST 0x0002
#define CB_FORMAT_LIST_RESPONSE 0x0003
#define CB_FORMAT_DATA_REQUEST 0x0004
#define CB_FORMAT_DATA_RESPONSE 0x0005
#define CB_TEMP_DIRECTORY 0x0006
#define CB_CLIP_CAPS 0x0007
#define CB_FILECONTENTS_REQUEST 0x0008
#define CB_FILECONTENTS_RESPONSE 0x0009
#define CB_LOCK_CLIPDATA 0x000A
#define CB_UNLOCK_CLIPDATA 0x000B
#define CB_RESPONSE_FAIL 0x0002
#define CB_ASCII_NAMES 0x0004
#define CB_CAPSTYPE_GENERAL 0x0001
#define CB_CAPSTYPE_GENERAL_LEN 12 /* type, length, version, generalFlags */
#define CB_USE_LONG_FORMAT_NAMES 0x00000002
#define SHORT_NAME_ENTRY 36	    /* formatId u32, formatName 32 bytes */
#define LONG_NAME_EMPTY 6	    /* formatId u32, an empty UTF-16 name */
#define TEMP_DIRECTORY_LEN 520	    /* wszTempDir: 260 UTF-16 characters */
#define FILECONTENTS_REQUEST_LEN 24 /* without the optional clipDataId */

/* MS-RDPEFS 2.2.1.1: Component u16, PacketId u16. */
#define RDPDR_HDR 4
#define RDPDR_CTYP_CORE 0x4472
#define PAKID_CORE_DEVICELIST_ANNOUNCE 0x4441
#define PAKID_CORE_DEVICELIST_REMOVE 0x444D
#define PAKID_CORE_DEVICE_IOREQUEST 0x4952
#define PAKID_CORE_DEVICE_REPLY 0x6472
#define RDPDR_DTYP_FILESYSTEM 0x00000008
#define DEVICE_ANNOUNCE_HDR 20	/* DeviceType, DeviceId, PreferredDosName[8], DeviceDataLength */
#define DEVICE_IOREQUEST_LEN 24 /* header, DeviceId, FileId, CompletionId, Major, Minor */
#define DEVICE_REPLY_LEN 12	/* header, DeviceId, ResultCode */

#define DIR_BIT(d) (1u << (d))
#define BOTH_DIRS (DIR_BIT(GW_CHAN_TO_GUEST) | DIR_BIT(GW_CHAN_TO_USER))

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static bool dir_ok(enum gw_chan_dir dir)
{
	return dir == GW_CHAN_TO_GUEST || dir == GW_CHAN_TO_USER;
}

static enum gw_chan_dir other(enum gw_chan_dir dir)
{
	return dir == GW_CHAN_TO_GUEST ? GW_CHAN_TO_USER : GW_CHAN_TO_GUEST;
}

/* --- cliprdr --- */

/* What text_only lets through, one bit each in gw_cliprdr_state.offered. */
static const uint32_t text_formats[] = {
    1,	/* CF_TEXT */
    7,	/* CF_OEMTEXT */
    13, /* CF_UNICODETEXT */
    16, /* CF_LOCALE */
};

static uint8_t text_bit(uint32_t id)
{
	for (unsigned i = 0; i < sizeof(text_formats) / sizeof(text_formats[0]); i++)
		if (text_formats[i] == id)
			return (uint8_t)(1u << i);
	return 0;
}

void gw_cliprdr_init(struct gw_cliprdr_state *st)
{
	memset(st, 0, sizeof(*st));
}

struct clip_msg {
	struct gw_cliprdr_state *st;
	const struct gw_chan_policy *pol;
	enum gw_chan_dir dir;
	uint16_t flags;
	const uint8_t *data; /* the dataLen bytes after the header */
	uint32_t n;
	uint8_t *out;
	size_t outcap, *outlen;
};

/*
 * A failed response of TYPE as verdict V: no data, or only the 4-byte
 * streamId at STREAM_ID when there is one.
 */
static enum gw_chan_verdict clip_fail(struct clip_msg *m, enum gw_chan_verdict v, uint16_t type,
				      const uint8_t *stream_id)
{
	uint32_t n = stream_id ? 4 : 0;
	if (m->outcap < CLIP_HDR + n)
		return GW_CHAN_DROP;
	wr16(m->out, type);
	wr16(m->out + 2, CB_RESPONSE_FAIL);
	wr32(m->out + 4, n);
	if (stream_id)
		memcpy(m->out + CLIP_HDR, stream_id, 4);
	*m->outlen = CLIP_HDR + n;
	return v;
}

static enum gw_chan_verdict clip_pass(struct clip_msg *m)
{
	return GW_CHAN_PASS;
}

/* Capability sets: cCapabilitiesSets u16, pad u16, then type u16, length u16, body. */
static enum gw_chan_verdict clip_caps(struct clip_msg *m)
{
	unsigned count = rd16(m->data);
	uint32_t off = 4;
	bool long_names = false;
	for (unsigned i = 0; i < count; i++) {
		if (m->n - off < 4)
			return GW_CHAN_DROP;
		uint16_t type = rd16(m->data + off), clen = rd16(m->data + off + 2);
		if (clen < 4 || clen > m->n - off)
			return GW_CHAN_DROP;
		if (type == CB_CAPSTYPE_GENERAL) {
			if (clen < CB_CAPSTYPE_GENERAL_LEN)
				return GW_CHAN_DROP;
			long_names = rd32(m->data + off + 8) & CB_USE_LONG_FORMAT_NAMES;
		}
		off += clen;
	}
	m->st->long_names[m->dir] = long_names;
	return GW_CHAN_PASS;
}

/*
 * Under text_only the list is rewritten with empty names: the kept ids are
 * predefined formats, which need none, and the result then reads as the
 * same ids (or 0) whether the receiver takes it for long or short names.
 */
static enum gw_chan_verdict clip_format_list(struct clip_msg *m)
{
	bool long_names = m->st->long_names[0] && m->st->long_names[1];
	bool rewrite = m->pol->text_only;
	size_t w = CLIP_HDR;
	uint8_t offered = 0;
	if (!long_names && m->n % SHORT_NAME_ENTRY)
		return GW_CHAN_DROP;
	if (rewrite && m->outcap < CLIP_HDR)
		return GW_CHAN_DROP;
	for (uint32_t off = 0; off < m->n;) {
		uint32_t id, end;
		if (long_names) {
			if (m->n - off < LONG_NAME_EMPTY)
				return GW_CHAN_DROP;
			id = rd32(m->data + off);
			end = off + 4;
			while (m->n - end >= 2 && rd16(m->data + end) != 0)
				end += 2;
			if (m->n - end < 2)
				return GW_CHAN_DROP; /* no NUL */
			end += 2;
		} else {
			id = rd32(m->data + off);
			end = off + SHORT_NAME_ENTRY;
		}
		off = end;
		uint8_t bit = text_bit(id);
		if (!rewrite || !bit || (offered & bit))
			continue;
		size_t entry = long_names ? LONG_NAME_EMPTY : SHORT_NAME_ENTRY;
		if (m->outcap - w < entry)
			return GW_CHAN_DROP;
		wr32(m->out + w, id);
		memset(m->out + w + 4, 0, entry - 4);
		w += entry;
		offered |= bit;
	}
	if (!rewrite)
		return GW_CHAN_PASS;
	wr16(m->out, CB_FORMAT_LIST);
	wr16(m->out + 2, m->flags & CB_ASCII_NAMES);
	wr32(m->out + 4, (uint32_t)(w - CLIP_HDR));
	m->st->offered[m->dir] = offered;
	*m->outlen = w;
	return GW_CHAN_REPLACE;
}

/* requestedFormatId u32: under text_only, only a text format the other side offered. */
static enum gw_chan_verdict clip_data_request(struct clip_msg *m)
{
	if (!m->pol->text_only)
		return GW_CHAN_PASS;
	uint8_t bit = text_bit(rd32(m->data));
	if (bit && (m->st->offered[other(m->dir)] & bit))
		return GW_CHAN_PASS;
	return clip_fail(m, GW_CHAN_REPLY, CB_FORMAT_DATA_RESPONSE, NULL);
}

static enum gw_chan_verdict clip_data_response(struct clip_msg *m)
{
	if (m->pol->max_bytes && m->n > m->pol->max_bytes)
		return clip_fail(m, GW_CHAN_REPLACE, CB_FORMAT_DATA_RESPONSE, NULL);
	return GW_CHAN_PASS;
}

/* streamId u32 first, in both the request and the response. */
static enum gw_chan_verdict clip_contents_request(struct clip_msg *m)
{
	if (!m->pol->text_only)
		return GW_CHAN_PASS;
	return clip_fail(m, GW_CHAN_REPLY, CB_FILECONTENTS_RESPONSE, m->data);
}

static enum gw_chan_verdict clip_contents_response(struct clip_msg *m)
{
	if (m->pol->text_only)
		return GW_CHAN_DROP; /* no request was ever forwarded */
	if (m->pol->max_bytes && m->n - 4 > m->pol->max_bytes)
		return clip_fail(m, GW_CHAN_REPLACE, CB_FILECONTENTS_RESPONSE, m->data);
	return GW_CHAN_PASS;
}

static enum gw_chan_verdict clip_lock(struct clip_msg *m)
{
	return m->pol->text_only ? GW_CHAN_DROP : GW_CHAN_PASS;
}

/* By msgType: which ways it may travel, its smallest dataLen, its handler. */
static const struct clip_rule {
	unsigned dirs;
	uint32_t min;
	enum gw_chan_verdict (*handle)(struct clip_msg *m);
} clip_rules[] = {
    [CB_MONITOR_READY] = {DIR_BIT(GW_CHAN_TO_USER), 0, clip_pass},
    [CB_FORMAT_LIST] = {BOTH_DIRS, 0, clip_format_list},
    [CB_FORMAT_LIST_RESPONSE] = {BOTH_DIRS, 0, clip_pass},
    [CB_FORMAT_DATA_REQUEST] = {BOTH_DIRS, 4, clip_data_request},
    [CB_FORMAT_DATA_RESPONSE] = {BOTH_DIRS, 0, clip_data_response},
    [CB_TEMP_DIRECTORY] = {DIR_BIT(GW_CHAN_TO_GUEST), TEMP_DIRECTORY_LEN, clip_pass},
    [CB_CLIP_CAPS] = {BOTH_DIRS, 4, clip_caps},
    [CB_FILECONTENTS_REQUEST] = {BOTH_DIRS, FILECONTENTS_REQUEST_LEN, clip_contents_request},
    [CB_FILECONTENTS_RESPONSE] = {BOTH_DIRS, 4, clip_contents_response},
    [CB_LOCK_CLIPDATA] = {BOTH_DIRS, 4, clip_lock},
    [CB_UNLOCK_CLIPDATA] = {BOTH_DIRS, 4, clip_lock},
};

enum gw_chan_verdict gw_cliprdr_filter(struct gw_cliprdr_state *st,
				       const struct gw_chan_policy *pol, enum gw_chan_dir dir,
				       const uint8_t *pdu, size_t len, uint8_t *out, size_t outcap,
				       size_t *outlen)
{
	*outlen = 0;
	if (!dir_ok(dir) || len < CLIP_HDR)
		return GW_CHAN_DROP;
	uint16_t type = rd16(pdu);
	uint32_t n = rd32(pdu + 4);
	/* bytes past dataLen (some clients pad) are ignored */
	if (n > len - CLIP_HDR)
		return GW_CHAN_DROP;
	if (type >= sizeof(clip_rules) / sizeof(clip_rules[0]) || !clip_rules[type].handle)
		return GW_CHAN_DROP;
	const struct clip_rule *r = &clip_rules[type];
	if (!(r->dirs & DIR_BIT(dir)) || n < r->min)
		return GW_CHAN_DROP;
	struct clip_msg m = {
	    .st = st,
	    .pol = pol,
	    .dir = dir,
	    .flags = rd16(pdu + 2),
	    .data = pdu + CLIP_HDR,
	    .n = n,
	    .out = out,
	    .outcap = outcap,
	    .outlen = outlen,
	};
	return r->handle(&m);
}

/* --- rdpdr --- */

void gw_rdpdr_init(struct gw_rdpdr_state *st)
{
	memset(st, 0, sizeof(*st));
}

static int find_device(const struct gw_rdpdr_state *st, uint32_t id)
{
	for (unsigned i = 0; i < st->n; i++)
		if (st->id[i] == id)
			return (int)i;
	return -1;
}

/* Whether drive ID may be announced: known already, or room for it. */
static bool allow_device(struct gw_rdpdr_state *st, uint32_t id)
{
	if (find_device(st, id) >= 0)
		return true;
	if (st->n == GW_RDPDR_DEVICES_MAX)
		return false;
	st->id[st->n++] = id;
	return true;
}

static void forget_device(struct gw_rdpdr_state *st, uint32_t id)
{
	int at = find_device(st, id);
	if (at >= 0)
		st->id[at] = st->id[--st->n];
}

struct dr_msg {
	struct gw_rdpdr_state *st;
	const uint8_t *pdu;
	size_t len;
	uint8_t *out;
	size_t outcap, *outlen;
};

/*
 * DeviceCount u32, then the devices. Another device type announced with a
 * drive's id takes that id away from the drive.
 */
static enum gw_chan_verdict dr_announce(struct dr_msg *m)
{
	struct gw_rdpdr_state next = *m->st;
	uint32_t count = rd32(m->pdu + RDPDR_HDR), kept = 0;
	size_t off = RDPDR_HDR + 4, w = RDPDR_HDR + 4;
	if (count > (m->len - off) / DEVICE_ANNOUNCE_HDR || m->outcap < w)
		return GW_CHAN_DROP;
	for (uint32_t i = 0; i < count; i++) {
		if (m->len - off < DEVICE_ANNOUNCE_HDR)
			return GW_CHAN_DROP;
		const uint8_t *d = m->pdu + off;
		uint32_t type = rd32(d), id = rd32(d + 4), dlen = rd32(d + 16);
		if (dlen > m->len - off - DEVICE_ANNOUNCE_HDR)
			return GW_CHAN_DROP;
		size_t size = DEVICE_ANNOUNCE_HDR + (size_t)dlen;
		off += size;
		if (type != RDPDR_DTYP_FILESYSTEM) {
			forget_device(&next, id);
			continue;
		}
		if (!allow_device(&next, id))
			continue;
		if (m->outcap - w < size)
			return GW_CHAN_DROP;
		memcpy(m->out + w, d, size);
		w += size;
		kept++;
	}
	memcpy(m->out, m->pdu, RDPDR_HDR);
	wr32(m->out + RDPDR_HDR, kept);
	*m->st = next;
	*m->outlen = w;
	return GW_CHAN_REPLACE;
}

/* DeviceCount u32, then as many DeviceIds. */
static enum gw_chan_verdict dr_remove(struct dr_msg *m)
{
	uint32_t count = rd32(m->pdu + RDPDR_HDR);
	if (count > (m->len - RDPDR_HDR - 4) / 4)
		return GW_CHAN_DROP;
	for (uint32_t i = 0; i < count; i++)
		forget_device(m->st, rd32(m->pdu + RDPDR_HDR + 4 + 4 * (size_t)i));
	return GW_CHAN_PASS;
}

/* DeviceId u32 right after the header. */
static enum gw_chan_verdict dr_known_device(struct dr_msg *m)
{
	return find_device(m->st, rd32(m->pdu + RDPDR_HDR)) >= 0 ? GW_CHAN_PASS : GW_CHAN_DROP;
}

/* Core packets with a rule; any other core packet passes. */
static const struct dr_rule {
	uint16_t packet;
	enum gw_chan_dir dir;
	size_t min; /* smallest PDU, header included */
	enum gw_chan_verdict (*handle)(struct dr_msg *m);
} dr_rules[] = {
    {PAKID_CORE_DEVICELIST_ANNOUNCE, GW_CHAN_TO_GUEST, RDPDR_HDR + 4, dr_announce},
    {PAKID_CORE_DEVICELIST_REMOVE, GW_CHAN_TO_GUEST, RDPDR_HDR + 4, dr_remove},
    {PAKID_CORE_DEVICE_IOREQUEST, GW_CHAN_TO_USER, DEVICE_IOREQUEST_LEN, dr_known_device},
    {PAKID_CORE_DEVICE_REPLY, GW_CHAN_TO_USER, DEVICE_REPLY_LEN, dr_known_device},
};

enum gw_chan_verdict gw_rdpdr_filter(struct gw_rdpdr_state *st, enum gw_chan_dir dir,
				     const uint8_t *pdu, size_t len, uint8_t *out, size_t outcap,
				     size_t *outlen)
{
	*outlen = 0;
	/* printers (RDPDR_CTYP_PRN) are never announced: nothing of theirs crosses */
	if (!dir_ok(dir) || len < RDPDR_HDR || rd16(pdu) != RDPDR_CTYP_CORE)
		return GW_CHAN_DROP;
	uint16_t packet = rd16(pdu + 2);
	for (unsigned i = 0; i < sizeof(dr_rules) / sizeof(dr_rules[0]); i++) {
		const struct dr_rule *r = &dr_rules[i];
		if (r->packet != packet || r->dir != dir)
			continue;
		if (len < r->min)
			return GW_CHAN_DROP;
		struct dr_msg m = {st, pdu, len, out, outcap, outlen};
		return r->handle(&m);
	}
	return GW_CHAN_PASS;
}
